//! The real babeltrace2 (2.0.4) against the live server: it lists the
//! sessions, attaches to one being written, prints events as their packets
//! reach the disk while one CPU stays quiet, and exits when the writer
//! finishes. Also measures the latency from a packet being written to
//! babeltrace2 printing its events.

#[path = "live_util.rs"]
mod util;

use std::time::{Duration, Instant};

use strata_relay::live::LiveConfig;
use util::{follow_live, missing_tools, report, LiveTrace, Server, Viewer};

/// One test at a time: the idle-cost test measures this whole process, so
/// no other test's server may run beside it.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn babeltrace_follows_a_trace_being_written_and_exits_at_its_end() {
    let _serial = serial();
    if let Some(why) = missing_tools() {
        println!("skipping: {why}");
        return;
    }
    // CPUs 0 and 1 switch every millisecond; CPU 2 records nothing at all,
    // so only its beacons let the others through. Watermarks every 10 ms.
    // Packets of 1 KiB: about 14 sched_switch events each.
    let mut run = follow_live(2, Duration::from_millis(10), 1024, LiveConfig::default());
    assert!(
        run.flush_ms.len() > 100,
        "only {} packets measured",
        run.flush_ms.len()
    );
    let med = report("2 busy CPUs + 1 quiet, 10 ms timer", &mut run);
    assert!(med < 250.0, "median packet-to-print latency {med:.1} ms");
}

#[test]
fn latency_with_one_busy_cpu_and_two_quiet_ones() {
    let _serial = serial();
    if let Some(why) = missing_tools() {
        println!("skipping: {why}");
        return;
    }
    // Here a packet waits for nothing but the quiet CPUs' next beacons, so
    // this measures the server's path under the writer's timer.
    for timer_ms in [10, 100] {
        let mut run = follow_live(
            1,
            Duration::from_millis(timer_ms),
            1024,
            LiveConfig::default(),
        );
        assert!(
            run.flush_ms.len() > 50,
            "only {} packets measured",
            run.flush_ms.len()
        );
        let med = report(
            &format!("1 busy CPU + 2 quiet, {timer_ms} ms timer"),
            &mut run,
        );
        // A packet can be printed once every quiet CPU's beacon passed its
        // last event: one timer period at most, plus the server's polling.
        assert!(
            med < timer_ms as f64 + 100.0,
            "median {med:.1} ms with a {timer_ms} ms timer"
        );
    }
}

#[test]
fn a_finished_session_ends_the_viewer_at_once() {
    let _serial = serial();
    if let Some(why) = missing_tools() {
        println!("skipping: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut trace = LiveTrace::create(tmp.path(), "done", "db1", 2, 1024);
    for i in 0..100 {
        trace.push((i % 2) as u32, i);
    }
    trace.finish();
    let server = Server::over(tmp.path());
    let mut viewer = Viewer::follow(&format!("net://127.0.0.1:{}/host/db1/done", server.port));
    let t = Instant::now();
    let ok = viewer.wait(Duration::from_secs(20));
    assert_eq!(ok, Some(true), "babeltrace2: {}", viewer.stderr());
    // It attached at the end (seek = last), so there is nothing to print.
    assert!(viewer.markers().is_empty());
    assert_eq!(server.stats.snapshot().attaches, 1);
    println!(
        "viewer of a finished session exited after {:?}",
        t.elapsed()
    );
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

#[test]
fn a_waiting_viewer_costs_little_cpu() {
    let _serial = serial();
    if let Some(why) = missing_tools() {
        println!("skipping: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut trace = LiveTrace::create(tmp.path(), "idle", "web1", 4, 1024);
    for i in 0..50 {
        trace.push(0, i);
    }
    trace.publish(false);
    let server = Server::over(tmp.path());
    let mut viewer = Viewer::follow(&format!("net://127.0.0.1:{}/host/web1/idle", server.port));
    assert!(util::wait_for(Duration::from_secs(10), || server
        .stats
        .snapshot()
        .attaches
        == 1));
    std::thread::sleep(Duration::from_millis(500));
    // Nothing is written and no watermark moves for 3 s: the viewer waits
    // on held requests.
    let me = std::process::id().to_string();
    let bt = viewer.pid().to_string();
    let (s0, b0, t) = (cpu_seconds(&me), cpu_seconds(&bt), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let secs = t.elapsed().as_secs_f64();
    let server_cpu = (cpu_seconds(&me) - s0) / secs * 100.0;
    let viewer_cpu = (cpu_seconds(&bt) - b0) / secs * 100.0;
    println!(
        "one viewer waiting on a quiet 4-CPU session: server (this test process) {server_cpu:.1}% of a core, babeltrace2 {viewer_cpu:.1}%"
    );
    assert!(server_cpu < 15.0, "server used {server_cpu:.1}% of a core");
    trace.finish();
    assert_eq!(viewer.wait(Duration::from_secs(20)), Some(true));
}
