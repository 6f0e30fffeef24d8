//! `TraceWriter::push_page` against `push_record`: the same records, given
//! a page at a time or one by one, make byte-identical trace directories;
//! and a page that stops decoding keeps its good records and says why.

mod common;

use std::path::Path;

use common::{clock, fixtures, format_of, host};
use strata_ctf::write::Uuid;
use strata_ftrace::encode::{pack_pages, RecordBuilder};
use strata_ftrace::format::EventFormat;
use strata_ftrace::{Page, PageError, PageLayout};
use strata_store::{StoreOptions, TraceWriter};

const T0: u64 = 1_000_000_000;

/// The records of a small busy host: syscalls known and unknown, with and
/// without named arguments, a switch, a wakeup, a process exec (a string,
/// so the per-field path) and a short record.
fn records(events: &[EventFormat]) -> Vec<Vec<u8>> {
    let enter = format_of(events, "sys_enter");
    let exit = format_of(events, "sys_exit");
    let switch = format_of(events, "sched_switch");
    let wakeup = format_of(events, "sched_wakeup");
    let exec = format_of(events, "sched_process_exec");
    let mut out = Vec::new();
    for i in 0..300i64 {
        let nr = [0, 1, 110, 257, 3, 999, -1][i as usize % 7];
        out.push(
            RecordBuilder::new(enter, 40 + i as i32)
                .int("id", nr)
                .elem("args", 0, 3 + i as u64)
                .elem("args", 1, 0xdead_0000 + i as u64)
                .elem("args", 2, u64::MAX - i as u64)
                .finish(),
        );
        out.push(
            RecordBuilder::new(exit, 40 + i as i32)
                .int("id", nr)
                .int("ret", i - 5)
                .finish(),
        );
        if i % 25 == 0 {
            out.push(
                RecordBuilder::new(switch, 7)
                    .str("prev_comm", "bash")
                    .int("prev_pid", 7)
                    .int("prev_prio", 120)
                    .str("next_comm", "kworker/0:1")
                    .int("next_pid", 40 + i)
                    .int("next_prio", 100)
                    .finish(),
            );
            out.push(
                RecordBuilder::new(wakeup, 7)
                    .str("comm", "sleeper")
                    .int("pid", 9)
                    .int("prio", 139)
                    .finish(),
            );
            out.push(
                RecordBuilder::new(exec, 9)
                    .str("filename", "/usr/bin/true")
                    .int("pid", 9)
                    .finish(),
            );
            let mut short = RecordBuilder::new(wakeup, 7).finish();
            short.truncate(12);
            out.push(short);
        }
    }
    out
}

/// The records 250 ns apart, packed into kernel-layout sub-buffers.
fn pages(records: &[Vec<u8>], size: usize) -> Vec<Vec<u8>> {
    let timed: Vec<(u64, Vec<u8>)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (T0 + 250 * i as u64, r.clone()))
        .collect();
    pack_pages(&timed, size)
}

fn writer(dir: &Path, events: &[EventFormat], syscalls: &[EventFormat]) -> TraceWriter {
    let opts = StoreOptions {
        trace_uuid: Some(Uuid([9; 16])),
        // Small packets, so pages straddle packet boundaries.
        packet_capacity: 4096,
        ..StoreOptions::default()
    };
    TraceWriter::create(dir, &host(2), &clock(), events, syscalls, opts).unwrap()
}

/// Every file under `dir`, by relative path, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "index"] {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            let rel = Path::new(sub).join(&n);
            out.push((
                rel.to_string_lossy().into_owned(),
                std::fs::read(dir.join(&rel)).unwrap(),
            ));
        }
    }
    out
}

#[test]
fn pages_and_records_make_the_same_trace() {
    let (events, syscalls) = fixtures();
    let recs = records(&events);
    let layout = PageLayout {
        data_size: 8192 - 16,
        ..PageLayout::default_x86_64()
    };
    let pages = pages(&recs, 8192);
    assert!(pages.len() > 3, "the test needs several pages");
    let tmp = tempfile::tempdir().unwrap();
    let (by_page, by_record) = (tmp.path().join("page"), tmp.path().join("record"));
    let mut a = writer(&by_page, &events, &syscalls);
    let mut b = writer(&by_record, &events, &syscalls);
    for (i, bytes) in pages.iter().enumerate() {
        let cpu = (i % 2) as u32;
        let page = Page::parse(&layout, bytes).unwrap();
        assert_eq!(a.push_page(cpu, &page).unwrap(), None);
        for r in page.records() {
            let r = r.unwrap();
            b.push_record(cpu, r.ts, r.data).unwrap();
        }
    }
    let (sa, sb) = (a.finish().unwrap(), b.finish().unwrap());
    assert_eq!(sa, sb);
    assert_eq!(
        sa.truncated, 12,
        "the short wakeups are counted, not written"
    );
    assert_eq!(sa.events() + sa.truncated, recs.len() as u64);
    assert!(sa.count("syscall_entry_unknown") > 0 && sa.count("sched_process_exec") > 0);
    let (fa, fb) = (files(&by_page), files(&by_record));
    assert_eq!(
        fa.iter().map(|f| &f.0).collect::<Vec<_>>(),
        fb.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(x == y, "{name} differs between push_page and push_record");
    }
}

#[test]
fn a_corrupt_page_keeps_its_good_records_and_reports_the_fault() {
    let (events, syscalls) = fixtures();
    let recs = records(&events);
    let mut bytes = pages(&recs[..10], 4096).remove(0);
    // Cut the commit so the last event's payload runs past the data.
    let commit = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) - 4;
    bytes[8..16].copy_from_slice(&commit.to_le_bytes());
    let page = Page::parse(&PageLayout::default_x86_64(), &bytes).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut w = writer(&tmp.path().join("t"), &events, &syscalls);
    let fault = w.push_page(1, &page).unwrap();
    assert!(
        matches!(fault, Some(PageError::Corrupt { .. })),
        "{fault:?}"
    );
    // Ten records: the last is cut off, the short wakeup is not written.
    assert_eq!(w.stats().events(), 8);
    assert_eq!(w.stats().truncated, 1);
    assert!(w.push_page(5, &page).is_err(), "no CPU 5 in a 2-CPU trace");
    w.finish().unwrap();
    assert!(w.push_page(0, &page).is_err(), "finished");
}
