//! The time-ordered merge of every stream of every trace of a set.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::cursor::Cursor;
use super::error::{ReadError, SkipStats};
use super::event::Event;

/// All events of a [`super::TraceSet`] in time order: a lending iterator.
///
/// Events are ordered by Unix-nanosecond timestamp; ties go to the earlier
/// trace, then the earlier stream. Within a stream, events keep their file
/// order even where packet bounds overlap. A stream that fails (without
/// `skip_corrupt`) yields its error once and is dropped; the other streams
/// go on.
pub struct Events<'s> {
    cursors: Vec<Cursor<'s>>,
    heap: BinaryHeap<Reverse<(u128, u32)>>,
    current: Option<u32>,
    primed: usize,
    bytes_done: u64,
}

#[inline(always)]
fn key(c: &Cursor<'_>) -> u128 {
    ((((c.cur.ts as u64) ^ (1 << 63)) as u128) << 32) | c.key as u128
}

impl<'s> Events<'s> {
    pub(crate) fn new(cursors: Vec<Cursor<'s>>) -> Self {
        let n = cursors.len();
        Events {
            cursors,
            heap: BinaryHeap::with_capacity(n),
            current: None,
            primed: 0,
            bytes_done: 0,
        }
    }

    /// The next event in time order, `None` when every stream is done.
    #[allow(clippy::should_implement_trait)]
    #[inline]
    pub fn next(&mut self) -> Option<Result<Event<'_>, ReadError>> {
        while self.primed < self.cursors.len() {
            let i = self.primed;
            self.primed += 1;
            let c = &mut self.cursors[i];
            let r = c.advance();
            self.bytes_done += std::mem::take(&mut c.done_bytes);
            match r {
                Ok(true) => self.heap.push(Reverse((key(c), i as u32))),
                Ok(false) => {}
                Err(e) => return Some(Err(e)),
            }
        }
        if let Some(ci) = self.current.take() {
            let c = &mut self.cursors[ci as usize];
            let r = c.advance();
            self.bytes_done += std::mem::take(&mut c.done_bytes);
            match r {
                Ok(true) => {
                    let k = key(c);
                    match self.heap.peek_mut() {
                        Some(mut top) if top.0 .0 < k => {
                            let next = top.0 .1;
                            *top = Reverse((k, ci));
                            self.current = Some(next);
                        }
                        _ => self.current = Some(ci),
                    }
                }
                Ok(false) => {}
                Err(e) => return Some(Err(e)),
            }
        }
        if self.current.is_none() {
            self.current = Some(self.heap.pop()?.0 .1);
        }
        let ci = self.current? as usize;
        Some(Ok(Event {
            c: &self.cursors[ci],
        }))
    }

    /// Bytes of stream files whose packets are fully read.
    pub fn bytes_done(&self) -> u64 {
        self.bytes_done
    }

    /// What `skip_corrupt` skipped so far.
    pub fn skipped(&self) -> SkipStats {
        let mut s = SkipStats::default();
        for c in &self.cursors {
            s.add(&c.stats);
        }
        s
    }
}
