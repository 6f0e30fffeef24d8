//! The recording hot path after the read: ftrace ring-buffer pages decoded
//! and converted into a trace directory, per event, as `strata record`
//! runs it ([`TraceWriter::push_page`]), and record by record
//! ([`TraceWriter::push_record`]) for comparison.
//!
//! The pages are built here from the fixture formats, in the kernel's
//! layout (64 KiB sub-buffers, 4-byte event headers with time deltas), with
//! two mixes: the `record_overhead` workload (getppid entry and exit) and a
//! busier one (read, write, openat, close with their arguments and a
//! `sched_switch` every ten calls).
//!
//! It reports the CPU time of the loop (user and system, so the writes into
//! the page cache count); wall time on a shared machine mostly measures the
//! neighbours. Instruction counts are steadier still: run it under
//! callgrind, counting only the hot path:
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*push_page*' BENCH page`
//! (or `'*push_record*' ... record`).
//!
//! Run: `cargo bench -p strata-store --bench page_path [-- page|record [EVENTS [getppid|busy]]]`

use std::path::Path;

use strata_ftrace::encode::{pack_pages, RecordBuilder};
use strata_ftrace::format::{self, EventFormat};
use strata_ftrace::{Page, PageLayout};
use strata_store::{StoreOptions, TraceWriter};

const SUBBUF: usize = 64 * 1024;

fn load(system: &str, name: &str) -> EventFormat {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/events")
        .join(system)
        .join(format!("{name}.format"));
    let text = std::fs::read_to_string(&p).expect("fixture format");
    format::parse(system, &text).expect("fixture parses")
}

fn sys(f: &EventFormat, nr: i64, value_field: &str, value: i64) -> Vec<u8> {
    let r = RecordBuilder::new(f, 4242).int("id", nr);
    if value_field == "args" {
        (0..6)
            .fold(r, |r, i| r.elem("args", i, (value + i as i64) as u64))
            .finish()
    } else {
        r.int(value_field, value).finish()
    }
}

/// One cycle of each mix.
fn mixes(sw: &EventFormat, enter: &EventFormat, exit: &EventFormat) -> [Vec<Vec<u8>>; 2] {
    let getppid = vec![sys(enter, 110, "args", 0), sys(exit, 110, "ret", 1)];
    let mut busy = Vec::new();
    for i in 0..10i64 {
        for nr in [0i64, 1, 257, 3] {
            busy.push(sys(enter, nr, "args", 3 + i));
            busy.push(sys(exit, nr, "ret", 4096));
        }
        if i == 9 {
            busy.push(
                RecordBuilder::new(sw, 0)
                    .str("prev_comm", "bash")
                    .int("prev_pid", 100)
                    .int("prev_prio", 120)
                    .int("next_pid", 200)
                    .int("next_prio", 120)
                    .str("next_comm", "worker")
                    .finish(),
            );
        }
    }
    [getppid, busy]
}

/// `events` records cycling through `mix`, 300 ns apart, packed into
/// sub-buffers the way the kernel writes them.
fn pages(mix: &[Vec<u8>], events: usize) -> Vec<Vec<u8>> {
    let timed: Vec<(u64, Vec<u8>)> = mix
        .iter()
        .cycle()
        .take(events)
        .enumerate()
        .map(|(i, r)| (1_000_000 + 300 * i as u64, r.clone()))
        .collect();
    pack_pages(&timed, SUBBUF)
}

fn cpu_seconds() -> f64 {
    // SAFETY: rusage is plain data that getrusage fills.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let modes: Vec<&str> = match args.first().map(String::as_str) {
        Some(m @ ("page" | "record")) => vec![m],
        _ => vec!["page", "record"],
    };
    let events: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3_000_000);
    let sw = load("sched", "sched_switch");
    let enter = load("raw_syscalls", "sys_enter");
    let exit = load("raw_syscalls", "sys_exit");
    let syscalls: Vec<EventFormat> = ["read", "write", "openat", "close", "getppid"]
        .iter()
        .filter_map(|n| {
            let p = format!("sys_enter_{n}");
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/events/syscalls")
                .join(format!("{p}.format"))
                .exists()
                .then(|| load("syscalls", &p))
        })
        .collect();
    let formats = [sw.clone(), enter.clone(), exit.clone()];
    let layout = PageLayout {
        data_size: SUBBUF - 16,
        ..PageLayout::default_x86_64()
    };
    let host = strata_core::HostInfo {
        hostname: "bench".into(),
        sysname: "Linux".into(),
        cpu_count: 1,
        vm_uuid: None,
        ..Default::default()
    };
    let clock = strata_core::ClockDesc::nanoseconds("monotonic", "", 0);
    let only = args.get(2).map(String::as_str);
    for (name, mix) in ["getppid", "busy"]
        .into_iter()
        .zip(mixes(&sw, &enter, &exit))
        .filter(|(name, _)| only.is_none_or(|o| o == *name))
    {
        let pages = pages(&mix, events);
        for mode in &modes {
            let dir = tempfile::tempdir().expect("temp dir");
            let out = dir.path().join("trace");
            let mut w = TraceWriter::create(
                &out,
                &host,
                &clock,
                &formats,
                &syscalls,
                StoreOptions::default(),
            )
            .expect("trace dir");
            let t = cpu_seconds();
            for bytes in &pages {
                let page = Page::parse(&layout, bytes).expect("page");
                if *mode == "page" {
                    assert!(w.push_page(0, &page).expect("push").is_none());
                } else {
                    for r in page.records() {
                        let r = r.expect("record");
                        w.push_record(0, r.ts, r.data).expect("push");
                    }
                }
            }
            let dt = cpu_seconds() - t;
            let stats = w.finish().expect("finish");
            assert_eq!(stats.events(), events as u64);
            println!(
                "{name:8} push_{mode:6}: {events} events in {} pages, {dt:.3} CPU s = {:.1} ns/event ({:.1} B of CTF per event)",
                pages.len(),
                dt * 1e9 / events as f64,
                stats.bytes as f64 / events as f64
            );
        }
    }
}
