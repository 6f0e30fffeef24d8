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

fn put(rec: &mut [u8], f: &EventFormat, field: &str, v: i64) {
    let x = f.field(field).expect("field");
    let o = x.offset as usize;
    rec[o..o + x.size as usize].copy_from_slice(&v.to_le_bytes()[..x.size as usize]);
}

fn sys(f: &EventFormat, nr: i64, value_field: &str, value: i64) -> Vec<u8> {
    let mut r = vec![0u8; f.min_record_len() as usize];
    r[0..2].copy_from_slice(&f.id.to_le_bytes());
    put(&mut r, f, "common_pid", 4242);
    put(&mut r, f, "id", nr);
    if value_field == "args" {
        let args = f.field("args").expect("args").offset as usize;
        for i in 0..6 {
            let v = value + i as i64;
            r[args + 8 * i..args + 8 * i + 8].copy_from_slice(&v.to_le_bytes());
        }
    } else {
        put(&mut r, f, value_field, value);
    }
    r
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
            let mut r = vec![0u8; sw.min_record_len() as usize];
            r[0..2].copy_from_slice(&sw.id.to_le_bytes());
            r[8..12].copy_from_slice(b"bash");
            put(&mut r, sw, "prev_pid", 100);
            put(&mut r, sw, "prev_prio", 120);
            put(&mut r, sw, "next_pid", 200);
            put(&mut r, sw, "next_prio", 120);
            r[40..46].copy_from_slice(b"worker");
            busy.push(r);
        }
    }
    [getppid, busy]
}

/// `events` records cycling through `mix`, 300 ns apart, packed into
/// sub-buffers the way the kernel writes them.
fn pages(mix: &[Vec<u8>], events: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut page = Vec::with_capacity(SUBBUF);
    let mut ts = 1_000_000u64;
    let mut first = ts;
    let mut prev = ts;
    for rec in mix.iter().cycle().take(events) {
        let len = rec.len().div_ceil(4) * 4;
        if page.is_empty() || page.len() + 4 + len > SUBBUF - 16 {
            if !page.is_empty() {
                out.push(seal(first, &page));
                page.clear();
            }
            first = ts;
            prev = ts;
        }
        let delta = (ts - prev) as u32;
        prev = ts;
        page.extend_from_slice(&(((len / 4) as u32) | (delta << 5)).to_le_bytes());
        page.extend_from_slice(rec);
        page.resize(page.len() + len - rec.len(), 0);
        ts += 300;
    }
    if !page.is_empty() {
        out.push(seal(first, &page));
    }
    out
}

/// A sub-buffer: the page timestamp, the commit word, the data, padding.
fn seal(first_ts: u64, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(SUBBUF);
    // The first event's delta counts from the page timestamp.
    p.extend_from_slice(&first_ts.to_le_bytes());
    p.extend_from_slice(&(data.len() as u64).to_le_bytes());
    p.extend_from_slice(data);
    p.resize(SUBBUF, 0);
    p
}

/// User and system CPU seconds this process used so far.
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
