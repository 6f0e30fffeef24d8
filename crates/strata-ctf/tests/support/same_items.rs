//! Checks that `Events::try_for_each` hands out the same items (events and
//! errors, in the same order) as `Events::next`, including when it is
//! stopped and resumed: shared by the reader's tests.

use std::ops::ControlFlow;
use std::path::Path;

use strata_ctf::read::{ContextKind, Event, Events, OpenOptions, ReadError, TraceSet};

/// One item as a line to compare: everything the accessors show of an
/// event (every context and payload field included), or the error.
pub fn line(item: Result<Event<'_>, ReadError>) -> String {
    match item {
        Ok(e) => {
            let (file, off) = e.position();
            format!(
                "{} {} {} t{} s{} c{} p{} l{} {}:{} {:?} {:?} {:?} {:?}",
                e.ts(),
                e.cycles(),
                e.class().name(),
                e.trace(),
                e.stream(),
                e.cpu(),
                e.packet_number(),
                e.lost_before(),
                file.display(),
                off,
                e.context_fields(ContextKind::Packet),
                e.context_fields(ContextKind::Stream),
                e.context_fields(ContextKind::Event),
                e.fields().collect::<Vec<_>>(),
            )
        }
        Err(err) => format!("error: {err}"),
    }
}

/// Every item through `next`.
pub fn by_next(events: &mut Events<'_>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(item) = events.next() {
        out.push(line(item));
    }
    out
}

/// Every item through `try_for_each`, stopped after every `stop` items
/// (never with `stop == 0`) and resumed, alternately by `try_for_each`
/// and by one call to `next`.
pub fn by_for_each(events: &mut Events<'_>, stop: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut resume_by_next = false;
    loop {
        let mut seen = 0usize;
        let end = events.try_for_each(|item| {
            out.push(line(item));
            seen += 1;
            if stop > 0 && seen == stop {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if end.is_continue() {
            return out;
        }
        if resume_by_next {
            match events.next() {
                Some(item) => out.push(line(item)),
                None => return out,
            }
        }
        resume_by_next = !resume_by_next;
    }
}

/// Reads the trace at `dir` (both modes of `skip_corrupt`) through `next`
/// and through `try_for_each` (whole, and stopped every 1 and 7 items),
/// and asserts the same items come out, and the same skip statistics and
/// bytes done. Returns the number of items and of errors without
/// `skip_corrupt`, or None if the trace does not open.
pub fn assert_same_items(dir: &Path) -> Option<(usize, usize)> {
    let mut count = None;
    for skip in [false, true] {
        let set = TraceSet::open(dir, &OpenOptions { skip_corrupt: skip }).ok()?;
        let mut a = set.events();
        let want = by_next(&mut a);
        for stop in [0, 1, 7] {
            let mut b = set.events();
            let got = by_for_each(&mut b, stop);
            if got != want {
                let at = want.iter().zip(&got).position(|(x, y)| x != y);
                panic!(
                    "try_for_each (stopped every {stop}, skip_corrupt {skip}) differs from next on {}: {} items against {}, first difference at {at:?}: {:?} against {:?}",
                    dir.display(),
                    got.len(),
                    want.len(),
                    at.and_then(|i| got.get(i)),
                    at.and_then(|i| want.get(i)),
                );
            }
            assert_eq!(
                a.bytes_done(),
                b.bytes_done(),
                "bytes done on {}",
                dir.display()
            );
            assert_eq!(
                format!("{:?}", a.skipped()),
                format!("{:?}", b.skipped()),
                "skip statistics on {}",
                dir.display()
            );
        }
        if !skip {
            let errors = want.iter().filter(|l| l.starts_with("error: ")).count();
            count = Some((want.len(), errors));
        }
    }
    count
}
