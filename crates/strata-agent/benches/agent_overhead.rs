//! The agent's CPU cost while streaming, side by side with `trace-cmd
//! record` writing to local disk, on the same syscall-heavy workload (the
//! one of `strata`'s `record_overhead` bench: a child making CALLS getppid
//! system calls), with the same events (raw_syscalls and
//! sched:sched_switch) and buffer size, in one run.
//!
//! The agent runs in a child process (this binary re-executed with
//! `--child-agent`) streaming over loopback TCP to the codec-built test
//! relay in this process, which counts the events it receives; its CPU is
//! not the agent's and is not counted. Reported per recorder: CPU seconds
//! (the child's user + system time), events delivered, events lost, CPU
//! seconds per million events, and the workload's slowdown. Rounds
//! alternate between recorders.
//!
//! Two more figures follow: an idle agent's CPU per second of wall time
//! (the default events on a quiet host, with the 100 ms flush), and a replay
//! agent's throughput and CPU per million events at an unlimited rate (what
//! one simulated host costs in the relay benchmarks).
//!
//! `--flight` adds the same agent in flight-recorder mode (pages kept in
//! memory, nothing shipped) beside the streaming one, and in flight mode
//! with its light live feed (`sched,syscalls` streamed, 20 ms flush).
//!
//! Run as root: `cargo bench -p strata-agent --bench agent_overhead [-- ROUNDS CALLS] [--flight]`

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_agent::testkit::{TestRelay, TestRelayOptions};
use strata_agent::{AgentConfig, LiveOptions, SourceConfig};
use strata_core::HostInfo;
use strata_wire::{Compression, LossCause};

#[path = "../../strata/benches/support/overhead.rs"]
mod overhead;
use overhead::{median, trace_cmd, wait_cpu, workload, Run};

const BUFFER: u64 = 8 << 20;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_stop() -> Arc<AtomicBool> {
    // SAFETY: installs a handler that only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t) };
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    std::thread::spawn(move || loop {
        if STOP.load(Ordering::SeqCst) {
            s.store(true, Ordering::SeqCst);
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    });
    stop
}

/// The child: a replay agent sending `trace` `loops` times, unpaced.
fn child_replay(addr: &str, trace: &str, loops: u32) {
    let stop = install_stop();
    let mut c = AgentConfig::new(addr, HostInfo::default());
    c.quiet = true;
    c.host_id = "replay-bench".into();
    let source = SourceConfig::Replay(strata_agent::ReplayOptions {
        trace: trace.into(),
        rate: 0.0,
        loops,
        ..strata_agent::ReplayOptions::default()
    });
    if let Err(e) = strata_agent::run(c, source, stop) {
        eprintln!("replay agent failed: {e}");
        std::process::exit(1);
    }
}

/// The child: one agent streaming this host to `addr` until SIGINT.
fn child_agent(addr: &str, compression: &str, events: &str) {
    let stop = install_stop();
    // "flight": flight-recorder mode, nothing shipped; "flight-feed": the
    // same with the light live feed a `--mode flight` agent streams.
    let feed = compression == "flight-feed";
    let flight = (compression == "flight" || feed).then(strata_agent::FlightOptions::default);
    let compression = if feed { "lz4" } else { compression };
    let compression: Compression = compression.parse().unwrap_or_default();
    let mut c = AgentConfig::new(
        addr,
        HostInfo {
            hostname: "bench".into(),
            ..HostInfo::default()
        },
    );
    c.quiet = true;
    c.compression = compression;
    let source = SourceConfig::Live(LiveOptions {
        events: events
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect(),
        buffer_size: BUFFER,
        statedump: false,
        compression,
        flight,
        live_events: feed.then(|| {
            strata_agent::feed::DEFAULT_FEED
                .iter()
                .map(|s| s.to_string())
                .collect()
        }),
        flush_interval: if feed {
            Duration::from_millis(20)
        } else {
            LiveOptions::default().flush_interval
        },
        ..LiveOptions::default()
    });
    if let Err(e) = strata_agent::run(c, source, stop) {
        eprintln!("agent failed: {e}");
        std::process::exit(1);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child-agent") {
        child_agent(&args[i + 1], &args[i + 2], &args[i + 3]);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--child-replay") {
        child_replay(&args[i + 1], &args[i + 2], args[i + 3].parse().unwrap_or(1));
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP: tracing needs root");
        return;
    }
    let nums: Vec<String> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .collect();
    let rounds: usize = nums.first().and_then(|a| a.parse().ok()).unwrap_or(3);
    let calls: u64 = nums
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3_000_000);
    let have_tc = Command::new("trace-cmd").arg("-h").output().is_ok();
    if !have_tc {
        println!("trace-cmd is not installed (apt-get install trace-cmd): agent figures only");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let baseline = median((0..rounds).map(|_| workload(calls)).collect());
    println!(
        "workload: {calls} getppid calls ({} syscall events), untraced {baseline:.3} s",
        2 * calls
    );
    let relay = TestRelay::start("127.0.0.1:0", TestRelayOptions::default()).expect("test relay");
    let mut names = vec!["strata agent (lz4)", "strata agent (no compression)"];
    if have_tc {
        names.push("trace-cmd record");
        names.push("trace-cmd record --compression none");
    }
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); names.len()];
    for round in 0..rounds {
        for (i, name) in names.iter().enumerate() {
            let run = match i {
                0 => agent(&relay, "lz4", calls),
                1 => agent(&relay, "none", calls),
                _ => trace_cmd(
                    "agentbench",
                    BUFFER / 1024,
                    &dir.path().join(format!("r{round}.dat")),
                    calls,
                    i == 3,
                ),
            };
            println!(
                "round {round}: {name}: {:.3} CPU s, {} events, {} lost",
                run.cpu_s, run.events, run.lost
            );
            results[i].push(run);
        }
    }
    println!(
        "\n{:<38} {:>10} {:>10} {:>10} {:>14} {:>10}",
        "recorder (median of rounds)", "events", "CPU s", "lost", "CPU s/M events", "slowdown"
    );
    let mut per_m = Vec::new();
    for (name, runs) in names.iter().zip(&results) {
        let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        let cpm = m(|r| r.cpu_s / (r.events.max(1) as f64 / 1e6));
        per_m.push(cpm);
        println!(
            "{:<38} {:>10.0} {:>10.3} {:>10.0} {:>14.4} {:>9.2}x",
            name,
            m(|r| r.events as f64),
            m(|r| r.cpu_s),
            m(|r| r.lost as f64),
            cpm,
            m(|r| r.workload_s) / baseline
        );
    }
    if per_m.len() == 4 {
        println!(
            "\nagent (lz4) CPU per event / trace-cmd's: {:.2} (default trace-cmd), {:.2} (uncompressed); agent uncompressed / trace-cmd uncompressed: {:.2}",
            per_m[0] / per_m[2],
            per_m[0] / per_m[3],
            per_m[1] / per_m[3]
        );
    }
    idle(&relay);
    replay(&relay);
    if std::env::args().any(|a| a == "--flight") {
        let live = median(results[0].iter().map(|r| r.cpu_s).collect());
        let runs: Vec<Run> = (0..rounds)
            .map(|_| agent(&relay, "flight", calls))
            .collect();
        let cpu = median(runs.iter().map(|r| r.cpu_s).collect());
        println!(
            "\nflight mode (30 s / 64 MiB ring, nothing shipped), same workload: {cpu:.3} CPU s (median of {rounds}), {} events shipped; streaming (lz4): {live:.3} CPU s; ratio {:.2}; slowdown {:.2}x",
            runs.iter().map(|r| r.events).sum::<u64>(),
            cpu / live.max(1e-9),
            median(runs.iter().map(|r| r.workload_s).collect()) / baseline
        );
        let runs: Vec<Run> = (0..rounds)
            .map(|_| agent(&relay, "flight-feed", calls))
            .collect();
        let cpu = median(runs.iter().map(|r| r.cpu_s).collect());
        println!(
            "flight mode with its live feed (sched,syscalls, lz4, 20 ms flush), same workload: {cpu:.3} CPU s (median of {rounds}), {} events shipped; streaming (lz4): {live:.3} CPU s; ratio {:.2}; slowdown {:.2}x",
            runs.iter().map(|r| r.events).sum::<u64>(),
            cpu / live.max(1e-9),
            median(runs.iter().map(|r| r.workload_s).collect()) / baseline
        );
    }
}

/// An agent with the default events on this host, with no workload of
/// its own, for 10 s.
fn idle(relay: &TestRelay) {
    let before: std::collections::HashSet<u64> = relay
        .shared
        .lock()
        .map(|g| g.instances.keys().copied().collect())
        .unwrap_or_default();
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .args(["--child-agent", &relay.addr, "lz4", ""])
        .spawn()
        .expect("agent child starts");
    std::thread::sleep(Duration::from_secs(10));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let cpu = wait_cpu(&mut child);
    let events: u64 = relay
        .shared
        .lock()
        .map(|g| {
            g.instances
                .iter()
                .filter(|(k, _)| !before.contains(k))
                .map(|(_, r)| r.events.values().sum::<u64>())
                .sum()
        })
        .unwrap_or(0);
    println!(
        "\nno workload (sched,syscalls,irq; 100 ms flush) for 10 s: {cpu:.3} CPU s = {:.2}% of one core, {events} events ({:.0}/s) from the rest of this machine = {:.4} CPU s/M events",
        cpu / 10.0 * 100.0,
        events as f64 / 10.0,
        cpu / (events.max(1) as f64 / 1e6)
    );
}

/// A replay agent sending tc-many-threads 20 times as fast as it can.
fn replay(relay: &TestRelay) {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(trace) = [
        manifest.join("../../../shared/traces/tc-many-threads"),
        "/work/shared/traces/tc-many-threads".into(),
    ]
    .into_iter()
    .find(|p| p.join("metadata").is_file()) else {
        println!("shared traces not found: no replay figure");
        return;
    };
    let before: u64 = relay
        .shared
        .lock()
        .map(|g| g.instances.values().map(|r| r.packet_events).sum())
        .unwrap_or(0);
    let exe = std::env::current_exe().expect("own path");
    let start = Instant::now();
    let mut child = Command::new(exe)
        .args(["--child-replay", &relay.addr])
        .arg(&trace)
        .arg("20")
        .spawn()
        .expect("replay child starts");
    let cpu = wait_cpu(&mut child);
    let wall = start.elapsed().as_secs_f64();
    let events = relay
        .shared
        .lock()
        .map(|g| g.instances.values().map(|r| r.packet_events).sum::<u64>())
        .unwrap_or(0)
        - before;
    println!(
        "replay agent, tc-many-threads x20 unpaced: {events} events in {wall:.2} s = {:.2} M events/s; {cpu:.3} CPU s = {:.4} CPU s/M events (startup scan included)",
        events as f64 / wall / 1e6,
        cpu / (events.max(1) as f64 / 1e6)
    );
}

fn agent(relay: &TestRelay, compression: &str, calls: u64) -> Run {
    let before: std::collections::HashSet<u64> = relay
        .shared
        .lock()
        .map(|g| g.instances.keys().copied().collect())
        .unwrap_or_default();
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .args([
            "--child-agent",
            &relay.addr,
            compression,
            "syscalls,sched:sched_switch",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent child starts");
    // Streaming once the new instance's metadata arrived.
    let deadline = Instant::now() + Duration::from_secs(30);
    let instance = loop {
        let found = relay.shared.lock().ok().and_then(|g| {
            g.instances
                .iter()
                .find(|(k, r)| !before.contains(k) && r.layout.is_some())
                .map(|(k, _)| *k)
        });
        if let Some(k) = found {
            break k;
        }
        assert!(Instant::now() < deadline, "the agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(300));
    let workload_s = workload(calls);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let cpu_s = wait_cpu(&mut child);
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    // Cleaning up another tool's dead instance is a note, not a failure.
    let unexpected: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("removed stale tracefs instance"))
        .collect();
    assert!(unexpected.is_empty(), "agent: {err}");
    let g = relay.shared.lock().expect("relay state");
    let r = &g.instances[&instance];
    Run {
        cpu_s,
        events: r.events.values().sum(),
        lost: r
            .lost
            .iter()
            .filter(|l| l.cause == LossCause::KernelBuffer)
            .map(|l| l.events)
            .sum(),
        workload_s,
    }
}
