//! Faults between `strata agent` and a relay, on the real kernel and real
//! TCP: a relay that becomes unreachable makes the agent spool and then
//! resend with no gap and no duplicate; a spool that overflows drops its
//! oldest data and reports the exact number of events lost.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata_agent::testkit::{Received, TestRelay, TestRelayOptions};
use strata_wire::LossCause;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn start_agent(relay: &TestRelay, spool: &std::path::Path, extra: &[&str]) -> Child {
    Command::new(STRATA)
        .args([
            "agent",
            "--relay",
            &relay.addr,
            "--insecure",
            "--events",
            "syscalls",
        ])
        .args([
            "--no-statedump",
            "--count-events",
            "--memory-max",
            "64K",
            "--final-wait",
            "20s",
            "--spool-dir",
        ])
        .arg(spool)
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata agent starts")
}

/// Stops the agent with SIGTERM; returns its stderr. Panics if it failed.
fn stop_agent(mut agent: Child) -> String {
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let status = agent.wait().expect("agent exits");
    let mut err = String::new();
    if let Some(mut e) = agent.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "agent failed: {err}");
    err
}

/// A number from the agent's summary: the word after `prefix`.
fn summary_number(stderr: &str, prefix: &str) -> u64 {
    stderr
        .split(prefix)
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{prefix}` in: {stderr}"))
}

/// Events the agent sent (it counted them), checked against the kernel's
/// own count of events read whenever the kernel lost none (after overruns
/// the kernel's read counter can fall behind what readers got).
fn events_sent(stderr: &str) -> u64 {
    let sent = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("strata agent: ")?
                .strip_suffix(" events sent")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no events sent line in: {stderr}"));
    let kernel_read = summary_number(stderr, "the kernel counted ");
    let kernel_lost = summary_number(stderr, "events read and ");
    if kernel_lost == 0 {
        assert_eq!(
            sent, kernel_read,
            "the agent's count differs from the kernel's: {stderr}"
        );
    } else {
        println!("the kernel lost {kernel_lost} events (a busy machine): its read counter is not compared");
    }
    sent
}

fn total_events(r: &Received) -> u64 {
    r.events.values().sum()
}

fn dd(count: u32) {
    let st = Command::new("dd")
        .args([
            "if=/dev/zero",
            "of=/dev/null",
            "bs=1",
            &format!("count={count}"),
        ])
        .stderr(Stdio::null())
        .status()
        .expect("dd runs");
    assert!(st.success());
}

fn spool_segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn an_unreachable_relay_makes_the_agent_spool_then_resend_without_gap_or_duplicate() {
    if !common::skip_unless_root_with_tracefs() {
        return;
    }
    let relay = TestRelay::start("127.0.0.1:0", TestRelayOptions::default()).expect("relay");
    let spool = tempfile::tempdir().expect("temp dir");
    let agent = start_agent(&relay, spool.path(), &[]);
    assert!(
        wait_until(Duration::from_secs(10), || relay
            .received()
            .layout
            .is_some()),
        "no metadata"
    );
    relay.set_unreachable(true);
    std::thread::sleep(Duration::from_millis(300));
    let before = relay.received().seqs.len();
    dd(20_000);
    assert!(
        wait_until(Duration::from_secs(5), || spool_segments(spool.path()) > 0),
        "the agent did not spool while the relay was unreachable"
    );
    assert!(
        relay.received().seqs.len() <= before + 2,
        "frames arrived while the relay was cut"
    );
    relay.set_unreachable(false);
    assert!(
        wait_until(Duration::from_secs(20), || relay.connections() >= 2
            && spool_segments(spool.path()) == 0),
        "the agent did not reconnect and drain its spool"
    );
    let err = stop_agent(agent);
    let r = relay.received();
    assert_eq!(r.duplicates, 0, "duplicates after resume");
    let want: Vec<u64> = (1..=r.seqs.len() as u64).collect();
    assert_eq!(r.seqs, want, "a gap in sequence numbers");
    assert!(
        r.lost.iter().all(|l| l.cause != LossCause::SpoolFull),
        "unexpected loss: {:?}",
        r.lost
    );
    let kernel_lost: u64 = r
        .lost
        .iter()
        .filter(|l| l.cause == LossCause::KernelBuffer)
        .map(|l| l.events)
        .sum();
    // Every event the agent took from the kernel reached the relay once.
    assert_eq!(total_events(&r), events_sent(&err), "{err}");
    assert!(r.goodbye);
    println!(
        "resume: {} frames, {} events, {} connections, {kernel_lost} lost in the kernel",
        r.seqs.len(),
        total_events(&r),
        relay.connections()
    );
}

#[test]
fn a_full_spool_drops_the_oldest_data_and_reports_the_exact_loss() {
    if !common::skip_unless_root_with_tracefs() {
        return;
    }
    let relay = TestRelay::start("127.0.0.1:0", TestRelayOptions::default()).expect("relay");
    relay.set_unreachable(true);
    let spool = tempfile::tempdir().expect("temp dir");
    let agent = start_agent(&relay, spool.path(), &["--spool-max", "512K"]);
    std::thread::sleep(Duration::from_millis(500));
    dd(50_000);
    std::thread::sleep(Duration::from_millis(500));
    relay.set_unreachable(false);
    assert!(
        wait_until(Duration::from_secs(20), || relay.connections() >= 1
            && spool_segments(spool.path()) == 0),
        "the agent did not drain its spool"
    );
    let err = stop_agent(agent);
    let r = relay.received();
    let dropped: u64 = r
        .lost
        .iter()
        .filter(|l| l.cause == LossCause::SpoolFull)
        .map(|l| l.events)
        .sum();
    assert!(dropped > 0, "the spool did not overflow: {err}");
    assert!(err.contains("the spool overflowed"), "{err}");
    // What arrived plus what was reported lost is exactly what the agent
    // read from the kernel.
    assert_eq!(total_events(&r) + dropped, events_sent(&err), "{err}");
    assert_eq!(r.duplicates, 0);
    // Every missing sequence number is inside a reported dropped range.
    let max = r.seqs.iter().copied().max().unwrap_or(0);
    let have: std::collections::HashSet<u64> = r.seqs.iter().copied().collect();
    for s in 1..=max {
        if !have.contains(&s) {
            assert!(
                r.lost
                    .iter()
                    .any(|l| l.cause == LossCause::SpoolFull
                        && (l.first_seq..=l.last_seq).contains(&s)),
                "seq {s} is missing and not reported"
            );
        }
    }
    println!(
        "spool overflow: {dropped} events reported lost, {} received",
        total_events(&r)
    );
}
