//! The real babeltrace2 (2.0.4) against the live server: it lists the
//! sessions, attaches to one being written, prints events as their packets
//! reach the disk while one CPU stays quiet, and exits when the writer
//! finishes. Also measures the latency from a packet being written to
//! babeltrace2 printing its events.

#[path = "live_util.rs"]
mod util;

use std::process::Command;
use std::time::{Duration, Instant};

use util::{missing_tools, summary, wait_for, LiveTrace, Server, Viewer};

/// How long the live phase writes, and the period of one CPU's events.
const LIVE_FOR: Duration = Duration::from_secs(4);
const EVENT_EVERY: Duration = Duration::from_millis(1);
/// How often the writer publishes its watermarks (its live timer).
const PUBLISH_EVERY: Duration = Duration::from_millis(10);

#[test]
fn babeltrace_follows_a_trace_being_written_and_exits_at_its_end() {
    if let Some(why) = missing_tools() {
        println!("skipping: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    // 3 CPUs, packets of 1 KiB (about 14 sched_switch events each). CPU 2
    // records nothing at all: only its beacons let the others through.
    let mut trace = LiveTrace::create(data, "strata", "web1", 3, 1024);
    let server = Server::over(data);
    let base = format!("net://127.0.0.1:{}", server.port);

    // Packets written before anyone attaches.
    for i in 0..200 {
        trace.push((i % 2) as u32, 1 + i);
    }
    trace.publish(false);

    // The session list names the session with babeltrace2's URL form.
    let list = Command::new("babeltrace2")
        .args(["--input-format=lttng-live", &base])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success(),
        "list failed: {}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(
        text.contains(&format!("{base}/host/web1/strata")),
        "session list: {text}"
    );

    let mut viewer = Viewer::follow(&format!("{base}/host/web1/strata"));
    assert!(
        wait_for(Duration::from_secs(10), || server.stats.snapshot().attaches
            == 1),
        "babeltrace2 did not attach: {}",
        viewer.stderr()
    );
    let attached_at = Instant::now();
    let first_live = trace.pushed.len();

    // The live phase: CPUs 0 and 1 switch every millisecond, CPU 2 never.
    let mut marker = 100_000;
    let mut last_publish = Instant::now();
    while attached_at.elapsed() < LIVE_FOR {
        for cpu in 0..2 {
            trace.push(cpu, marker);
            marker += 1;
        }
        if last_publish.elapsed() >= PUBLISH_EVERY {
            trace.publish(false);
            last_publish = Instant::now();
        }
        std::thread::sleep(EVENT_EVERY);
    }
    let finished_at = Instant::now();
    let printed_while_live = viewer.markers().len();
    trace.finish();

    let ok = viewer.wait(Duration::from_secs(30));
    let stderr = viewer.stderr();
    assert_eq!(
        ok,
        Some(true),
        "babeltrace2 did not exit cleanly after the trace completed: {stderr}"
    );

    // Every event written after the attach was printed, once, in order of
    // its time; nothing was printed that was not written.
    let printed = viewer.markers();
    let live: Vec<(u32, i32, u64)> = trace.pushed[first_live..].to_vec();
    let mut seen = std::collections::HashMap::new();
    for &(_, m) in &printed {
        *seen.entry(m).or_insert(0u32) += 1;
    }
    for &(cpu, m, _) in &live {
        assert_eq!(
            seen.get(&m),
            Some(&1),
            "event {m} of CPU {cpu} written after the attach was printed {:?} times",
            seen.get(&m)
        );
    }
    let all: std::collections::HashSet<i32> = trace.pushed.iter().map(|p| p.1).collect();
    assert!(printed.iter().all(|(_, m)| all.contains(m)));
    let ts_of: std::collections::HashMap<i32, u64> =
        trace.pushed.iter().map(|p| (p.1, p.2)).collect();
    let times: Vec<u64> = printed.iter().map(|(_, m)| ts_of[m]).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "events printed out of time order"
    );

    // The quiet CPU did not hold the others back: most of the events were
    // printed while the trace was still being written.
    assert!(
        printed_while_live * 10 >= live.len() * 9,
        "only {printed_while_live} of {} events were printed before the writer finished",
        live.len()
    );
    assert!(server.stats.snapshot().beacons_sent > 0);

    // Latency from a packet reaching the disk to babeltrace2 printing its
    // last event, for packets written during the live phase.
    let arrival: std::collections::HashMap<i32, Instant> =
        printed.iter().map(|&(t, m)| (m, t)).collect();
    let mut flush_lat: Vec<f64> = trace
        .flushed
        .iter()
        .filter(|f| f.at > attached_at && f.at < finished_at && !f.markers.is_empty())
        .filter(|f| f.markers.iter().all(|m| *m >= 100_000))
        .filter_map(|f| {
            let last = f.markers.last()?;
            Some(
                arrival
                    .get(last)?
                    .saturating_duration_since(f.at)
                    .as_secs_f64()
                    * 1e3,
            )
        })
        .collect();
    let mut event_lat: Vec<f64> = live
        .iter()
        .filter(|p| trace.clock.instant_of(p.2) < finished_at)
        .filter_map(|p| {
            let at = arrival.get(&p.1)?;
            Some(
                at.saturating_duration_since(trace.clock.instant_of(p.2))
                    .as_secs_f64()
                    * 1e3,
            )
        })
        .collect();
    assert!(
        flush_lat.len() > 100,
        "only {} packets measured",
        flush_lat.len()
    );
    let (min, med, p90, max) = summary(&mut flush_lat);
    println!(
        "packet written -> printed by babeltrace2: {} packets, min {min:.2} ms, median {med:.2} ms, p90 {p90:.2} ms, max {max:.2} ms",
        flush_lat.len()
    );
    let (emin, emed, ep90, emax) = summary(&mut event_lat);
    println!(
        "event time -> printed (includes filling 1 KiB packets at 1 event/ms per CPU): {} events, min {emin:.2} ms, median {emed:.2} ms, p90 {ep90:.2} ms, max {emax:.2} ms",
        event_lat.len()
    );
    println!("server: {:?}", server.stats.snapshot());
    assert!(med < 250.0, "median packet-to-print latency {med:.1} ms");
}

#[test]
fn a_finished_session_ends_the_viewer_at_once() {
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
