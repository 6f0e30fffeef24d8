//! End to end: traces written by `TraceWriter` from crafted records (with a
//! state dump), read back by the real babeltrace2.

mod common;

use std::path::Path;
use std::process::Command;

use common::{babeltrace2, clock, fixtures, format_of, host, run_babeltrace};
use strata_ftrace::encode::RecordBuilder;
use strata_ftrace::format::EventFormat;
use strata_store::{StoreError, StoreOptions, ThreadState, TraceWriter};

const T0: u64 = 1_000_000_000;

fn thread(tid: i32, pid: i32, name: &str, kernel: bool) -> ThreadState {
    let mut n = [0u8; 16];
    n[..name.len()].copy_from_slice(name.as_bytes());
    ThreadState {
        tid,
        pid,
        ppid: 1,
        name: n,
        kernel_thread: kernel,
        status: 5,
        cpu: 1,
        vtid: tid,
        vpid: pid,
        vppid: 1,
        ns_level: 0,
        ns_inum: 4026531836,
    }
}

fn switch(events: &[EventFormat], prev: i32, next: i32, next_comm: &str) -> Vec<u8> {
    RecordBuilder::new(format_of(events, "sched_switch"), prev)
        .str("prev_comm", "bash")
        .int("prev_pid", prev as i64)
        .int("prev_prio", 120)
        .int("prev_state", 1)
        .str("next_comm", next_comm)
        .int("next_pid", next as i64)
        .int("next_prio", 120)
        .finish()
}

/// Lines of babeltrace2's output whose event name is `name`.
fn lines_named<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let pat = format!(" {name}: ");
    text.lines().filter(|l| l.contains(&pat)).collect()
}

#[test]
fn crafted_trace_reads_back_in_babeltrace2() {
    let Some(_) = babeltrace2() else {
        println!("skipping: babeltrace2 is not installed");
        return;
    };
    let (events, syscalls) = fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trace");
    // Three CPUs; CPU 2 records nothing.
    let mut w = TraceWriter::create(
        &dir,
        &host(3),
        &clock(),
        &events,
        &syscalls,
        StoreOptions::default(),
    )
    .unwrap();
    w.write_statedump(
        T0 - 1000,
        &[
            thread(1, 1, "init", false),
            thread(2, 2, "kthreadd", true),
            thread(77, 70, "worker", false),
        ],
    )
    .unwrap();
    let enter = format_of(&events, "sys_enter");
    let exit = format_of(&events, "sys_exit");
    w.push_record(0, T0, &switch(&events, 41, 7, "kworker/0:1"))
        .unwrap();
    let openat = RecordBuilder::new(enter, 7)
        .int("id", 257)
        .elem("args", 0, (-100i64) as u64)
        .elem("args", 1, 0x1000)
        .elem("args", 2, 0)
        .elem("args", 3, 0o644)
        .finish();
    w.push_record(0, T0 + 10, &openat).unwrap();
    w.push_record(
        0,
        T0 + 20,
        &RecordBuilder::new(exit, 7)
            .int("id", 257)
            .int("ret", -11)
            .finish(),
    )
    .unwrap();
    w.push_record(
        1,
        T0 + 5,
        &RecordBuilder::new(enter, 9)
            .int("id", 999)
            .elem("args", 0, 5)
            .finish(),
    )
    .unwrap();
    // Loss on CPU 1 between its first and second event.
    w.note_lost(1, 5).unwrap();
    w.push_record(1, T0 + 30, &switch(&events, 9, 0, "swapper/1"))
        .unwrap();
    let softirq = RecordBuilder::new(format_of(&events, "softirq_entry"), 0)
        .int("vec", 9)
        .finish();
    w.push_record(1, T0 + 40, &softirq).unwrap();
    // A record of a type no format describes is dropped and counted.
    w.push_record(1, T0 + 41, &[0xff, 0xff, 0, 0, 0, 0, 0, 0])
        .unwrap();
    let live = w.live_stats().snapshot();
    assert_eq!(live.lost, 5);
    assert_eq!(live.dropped, 1);
    let stats = w.finish().unwrap();
    assert_eq!(stats.count("sched_switch"), 2);
    assert_eq!(stats.count("syscall_entry_openat"), 1);
    assert_eq!(stats.count("syscall_exit_openat"), 1);
    assert_eq!(stats.count("syscall_entry_unknown"), 1);
    assert_eq!(stats.count("lttng_statedump_process_state"), 3);
    assert_eq!(stats.count("lttng_statedump_process_pid_ns"), 3);
    assert_eq!(stats.lost_per_cpu, vec![0, 5, 0]);
    assert_eq!(stats.unknown_type, 1);

    let (ok, text, err) = run_babeltrace(&dir, &[]);
    assert!(ok, "babeltrace2 failed: {err}");
    assert_eq!(text.lines().count() as u64, stats.events(), "{text}");
    let sw = lines_named(&text, "sched_switch");
    assert_eq!(sw.len(), 2);
    assert!(sw[0].contains("prev_tid = 41"), "{}", sw[0]);
    assert!(sw[0].contains("prev_prio = 20"), "{}", sw[0]);
    assert!(sw[0].contains("next_comm = \"kworker/0:1\""), "{}", sw[0]);
    assert!(sw[0].contains("cpu_id = 0"), "{}", sw[0]);
    assert!(sw[1].contains("next_comm = \"swapper/1\""), "{}", sw[1]);
    let open = lines_named(&text, "syscall_entry_openat");
    assert!(
        open[0].contains("dfd = -100") && open[0].contains("mode = 420"),
        "{}",
        open[0]
    );
    let ret = lines_named(&text, "syscall_exit_openat");
    assert!(ret[0].contains("ret = -11"), "{}", ret[0]);
    let unk = lines_named(&text, "syscall_entry_unknown");
    assert!(unk[0].contains("id = 999"), "{}", unk[0]);
    assert!(lines_named(&text, "irq_softirq_entry")[0].contains("vec = 9"));
    let sd = lines_named(&text, "lttng_statedump_process_state");
    assert!(sd.iter().any(|l| l.contains("tid = 77")
        && l.contains("pid = 70")
        && l.contains("name = \"worker\"")));
    assert!(sd
        .iter()
        .any(|l| l.contains("name = \"kthreadd\"") && l.contains("type = 1")));
    // The statedump comes first: it is the earliest.
    assert!(text
        .lines()
        .next()
        .unwrap()
        .contains("lttng_statedump_start"));
    assert!(err.contains("Tracer discarded 5 events"), "stderr: {err}");

    // The empty CPU has a stream with one empty packet and its index.
    let idx = std::fs::read(dir.join("index/channel0_2.idx")).unwrap();
    let entries = strata_ctf::index::parse(&idx).unwrap();
    assert_eq!(entries.len(), 1);
    // Every stream spans the whole trace (lttng-analyses intersects them).
    let first: Vec<u64> = ["channel0_0", "channel0_1", "channel0_2", "statedump_0"]
        .iter()
        .map(|s| {
            let idx = std::fs::read(dir.join(format!("index/{s}.idx"))).unwrap();
            strata_ctf::index::parse(&idx).unwrap()[0].timestamp_begin
        })
        .collect();
    assert_eq!(first, vec![T0 - 1000; 4]);
}

#[test]
fn events_more_than_four_seconds_apart_keep_their_timestamps() {
    let Some(_) = babeltrace2() else {
        println!("skipping: babeltrace2 is not installed");
        return;
    };
    let (events, syscalls) = fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t");
    let mut w = TraceWriter::create(
        &dir,
        &host(1),
        &clock(),
        &events,
        &syscalls,
        StoreOptions::default(),
    )
    .unwrap();
    let times = [
        T0,
        T0 + 1,
        T0 + (1 << 32) + 7,
        T0 + (1 << 33),
        T0 + (1 << 33) + 5,
    ];
    for (i, &t) in times.iter().enumerate() {
        w.push_record(0, t, &switch(&events, i as i32, i as i32 + 1, "x"))
            .unwrap();
    }
    w.finish().unwrap();
    let (ok, text, err) = run_babeltrace(&dir, &["--clock-cycles"]);
    assert!(ok, "{err}");
    let got: Vec<u64> = text.lines().map(|l| l[1..21].parse().unwrap()).collect();
    assert_eq!(got, times);
}

#[test]
fn statedump_of_this_machine_reads_back() {
    let Some(_) = babeltrace2() else {
        println!("skipping: babeltrace2 is not installed");
        return;
    };
    let (events, syscalls) = fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t");
    let mut w = TraceWriter::create(
        &dir,
        &host(2),
        &clock(),
        &events,
        &syscalls,
        StoreOptions::default(),
    )
    .unwrap();
    let n = w.statedump_from_proc(T0).unwrap();
    if n == 0 {
        println!("skipping: /proc is not readable");
        return;
    }
    w.push_record(0, T0 + 1, &switch(&events, 1, 2, "a"))
        .unwrap();
    let stats = w.finish().unwrap();
    assert_eq!(stats.count("lttng_statedump_process_state") as usize, n);
    let (ok, text, err) = run_babeltrace(&dir, &[]);
    assert!(ok, "{err}");
    let me = format!("tid = {}, pid = {}", std::process::id(), std::process::id());
    assert!(lines_named(&text, "lttng_statedump_process_state")
        .iter()
        .any(|l| l.contains(&me)));
}

#[test]
fn a_non_empty_directory_is_refused() {
    let (events, syscalls) = fixtures();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("keep.txt"), b"x").unwrap();
    let err = TraceWriter::create(
        tmp.path(),
        &host(1),
        &clock(),
        &events,
        &syscalls,
        StoreOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::NotEmpty(_)), "{err}");
    assert!(err.to_string().contains("is not empty"));
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "nothing was written"
    );
    // An existing empty directory is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(TraceWriter::create(
        &empty,
        &host(1),
        &clock(),
        &events,
        &syscalls,
        StoreOptions::default()
    )
    .is_ok());
}

/// Unmounts the tmpfs when the test ends, whatever happens.
struct Mount<'a>(&'a Path);
impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn a_full_disk_stops_cleanly_and_leaves_a_readable_trace() {
    let Some(_) = babeltrace2() else {
        println!("skipping: babeltrace2 is not installed");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "strata-test"])
        .arg(&mnt)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !mounted {
        println!("skipping: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _guard = Mount(&mnt);
    let (events, syscalls) = fixtures();
    let dir = mnt.join("trace");
    let opts = StoreOptions {
        packet_capacity: 16 * 1024,
        ..StoreOptions::default()
    };
    let mut w = TraceWriter::create(&dir, &host(2), &clock(), &events, &syscalls, opts).unwrap();
    let mut error = None;
    for i in 0..200_000u64 {
        let cpu = (i % 2) as u32;
        if let Err(e) = w.push_record(cpu, T0 + i * 100, &switch(&events, i as i32, 1, "filler")) {
            error = Some(e);
            break;
        }
    }
    let error = error.expect("a 256 KiB tmpfs fills up");
    let msg = error.to_string();
    assert!(matches!(error, StoreError::Write { .. }), "{msg}");
    assert!(
        msg.contains("channel0_") && msg.contains("at byte"),
        "{msg}"
    );
    assert!(msg.contains("No space left on device"), "{msg}");
    // Later calls say the writer stopped, and why.
    let again = w
        .push_record(0, T0, &switch(&events, 1, 2, "x"))
        .unwrap_err();
    assert!(
        again.to_string().contains("stopped after an earlier error"),
        "{again}"
    );
    assert!(w.finish().is_err());
    // Whatever was written is a valid trace.
    let (ok, text, err) = run_babeltrace(&dir, &[]);
    assert!(ok, "babeltrace2 rejects the cut trace: {err}");
    let n = text.lines().count();
    assert!(n > 100, "only {n} events survived");
    for s in ["channel0_0", "channel0_1"] {
        let len = std::fs::metadata(dir.join(s)).unwrap().len();
        let idx =
            strata_ctf::index::parse(&std::fs::read(dir.join(format!("index/{s}.idx"))).unwrap())
                .unwrap();
        let indexed: u64 = idx.iter().map(|e| e.packet_size / 8).sum();
        assert_eq!(len, indexed, "{s}: stream and index agree on whole packets");
    }
}
