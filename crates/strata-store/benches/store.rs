//! Throughput of the store: ftrace records converted to LTTng-layout CTF,
//! in memory and to a trace directory, with babeltrace2 on the same trace
//! in the same run as the peer figure (decoding it, and re-writing it as
//! CTF with `sink.ctf.fs`). Also counts heap allocations in the steady
//! state of the conversion loop, which must be zero.
//!
//! Run: `cargo bench -p strata-store --bench store`

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use strata_ctf::write::{HeaderKind, PacketBuilder, PacketConfig, PacketError, PacketStart, Uuid};
use strata_ftrace::format::{self, EventFormat};
use strata_store::{ConvertOptions, Converter, StoreOptions, TraceWriter};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

const N: u64 = 3_000_000;

fn load(system: &str, name: &str) -> EventFormat {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/events")
        .join(system)
        .join(format!("{name}.format"));
    format::parse(system, &std::fs::read_to_string(p).unwrap()).unwrap()
}

fn put(rec: &mut [u8], f: &EventFormat, field: &str, v: i64) {
    let x = f.field(field).unwrap();
    let o = x.offset as usize;
    rec[o..o + x.size as usize].copy_from_slice(&v.to_le_bytes()[..x.size as usize]);
}

/// A mix like a busy host: one sched_switch per 4 syscall pairs... cycled.
fn records(fmts: &[EventFormat]) -> Vec<Vec<u8>> {
    let [sw, enter, exit] = [&fmts[0], &fmts[1], &fmts[2]];
    let mut out = Vec::new();
    for i in 0..10i64 {
        let mut r = vec![0u8; sw.min_record_len() as usize];
        r[0..2].copy_from_slice(&sw.id.to_le_bytes());
        r[8..12].copy_from_slice(b"bash");
        put(&mut r, sw, "prev_pid", 100 + i);
        put(&mut r, sw, "prev_prio", 120);
        put(&mut r, sw, "next_pid", 200 + i);
        put(&mut r, sw, "next_prio", 120);
        r[40..46].copy_from_slice(b"worker");
        out.push(r);
        for nr in [0i64, 1, 257, 3] {
            let mut r = vec![0u8; enter.min_record_len() as usize];
            r[0..2].copy_from_slice(&enter.id.to_le_bytes());
            put(&mut r, enter, "id", nr);
            out.push(r);
            let mut r = vec![0u8; exit.min_record_len() as usize];
            r[0..2].copy_from_slice(&exit.id.to_le_bytes());
            put(&mut r, exit, "id", nr);
            put(&mut r, exit, "ret", 4096);
            out.push(r);
        }
    }
    out
}

fn main() {
    let fmts = vec![
        load("sched", "sched_switch"),
        load("raw_syscalls", "sys_enter"),
        load("raw_syscalls", "sys_exit"),
    ];
    let sys: Vec<EventFormat> = [
        "sys_enter_read",
        "sys_enter_write",
        "sys_enter_openat",
        "sys_enter_close",
    ]
    .iter()
    .map(|n| load("syscalls", n))
    .collect();
    let recs = records(&fmts);
    let rec_bytes: u64 = recs.iter().map(|r| r.len() as u64).sum::<u64>() / recs.len() as u64;

    // 1. In memory: convert into a reused packet buffer, dropping full packets.
    let conv = Converter::new(&fmts, &sys, ConvertOptions::default());
    let mut b = PacketBuilder::new(PacketConfig {
        trace_uuid: Uuid::default(),
        header: HeaderKind::Large,
        capacity: 256 * 1024,
    })
    .unwrap();
    b.begin(PacketStart::default());
    let mut out_bytes = 0u64;
    let allocs_before = ALLOCS.load(Ordering::Relaxed);
    let t = Instant::now();
    for i in 0..N {
        let r = &recs[(i % recs.len() as u64) as usize];
        if conv.write(&mut b, i * 50, r) == Err(PacketError::Full) {
            out_bytes += b.finish(i * 50, 0, 0).map_or(0, |p| p.bytes.len() as u64);
            b.begin(PacketStart {
                ts_begin: i * 50,
                ..PacketStart::default()
            });
            let _ = conv.write(&mut b, i * 50, r);
        }
    }
    let dt = t.elapsed().as_secs_f64();
    let allocs = ALLOCS.load(Ordering::Relaxed) - allocs_before;
    println!(
        "convert in memory: {N} records ({rec_bytes} B avg) in {dt:.3} s = {:.1} M events/s, {:.0} MB/s of CTF out; heap allocations in the loop: {allocs}",
        N as f64 / dt / 1e6,
        out_bytes as f64 / dt / 1e6
    );

    // 2. To a trace directory on disk (2 CPUs), with finish (fsync).
    let tmp = std::env::temp_dir().join(format!("strata-store-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let host = strata_core::HostInfo {
        hostname: "bench".into(),
        sysname: "Linux".into(),
        cpu_count: 2,
        vm_uuid: None,
        ..Default::default()
    };
    let clock = strata_core::ClockDesc::nanoseconds("monotonic", "", 0);
    let t = Instant::now();
    let mut w =
        TraceWriter::create(&tmp, &host, &clock, &fmts, &sys, StoreOptions::default()).unwrap();
    for i in 0..N {
        let r = &recs[(i % recs.len() as u64) as usize];
        w.push_record((i % 2) as u32, 1_000 + i * 50, r).unwrap();
    }
    let stats = w.finish().unwrap();
    let dt = t.elapsed().as_secs_f64();
    println!(
        "write trace dir:   {} events, {} bytes in {dt:.3} s = {:.1} M events/s, {:.0} MB/s",
        stats.events(),
        stats.bytes,
        stats.events() as f64 / dt / 1e6,
        stats.bytes as f64 / dt / 1e6
    );
    let meta = std::fs::metadata(tmp.join("metadata"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "metadata size: {meta} bytes ({} event classes)",
        conv.classes().len()
    );

    // 3. The peer on the same trace.
    let bt = |args: &[&str]| -> Option<f64> {
        let t = Instant::now();
        let ok = Command::new("babeltrace2")
            .args(args)
            .output()
            .ok()?
            .status
            .success();
        ok.then(|| t.elapsed().as_secs_f64())
    };
    let dir = tmp.to_string_lossy().into_owned();
    match bt(&[&dir, "-o", "dummy"]) {
        Some(s) => println!(
            "babeltrace2 {dir} -o dummy: {s:.3} s = {:.2} M events/s (decode only)",
            stats.events() as f64 / s / 1e6
        ),
        None => println!("babeltrace2 not available: no peer figure"),
    }
    let out = format!("{dir}-bt-ctf");
    let path = format!("path=\"{out}\"");
    if let Some(s) = bt(&[&dir, "-c", "sink.ctf.fs", "-p", &path]) {
        println!(
            "babeltrace2 {dir} -c sink.ctf.fs: {s:.3} s = {:.2} M events/s (decode + CTF write)",
            stats.events() as f64 / s / 1e6
        );
    }
    let _ = std::fs::remove_dir_all(&out);
    // STRATA_BENCH_KEEP=1 keeps the trace, e.g. to run lttng-analyses on it.
    if std::env::var_os("STRATA_BENCH_KEEP").is_some() {
        println!("kept {dir}");
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
