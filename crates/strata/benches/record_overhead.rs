//! Recording overhead, side by side: `strata record` against `trace-cmd
//! record` on the same syscall-heavy workload, with the same events and
//! buffer size, in one run.
//!
//! For each recorder it reports the recorder's CPU seconds per million
//! events recorded, the events lost, and how much slower the workload ran
//! than without tracing. Rounds alternate between recorders so that drift
//! on these noisy 2-core machines hits both alike.
//!
//! Run as root: `cargo bench -p strata --bench record_overhead [-- ROUNDS CALLS]`

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support {
    pub mod overhead;
}
use support::overhead::{median, trace_cmd, wait_cpu, workload, Run};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");
const BUFFER_KB: u64 = 8192;

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP: recording needs root");
        return;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(3);
    let calls: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3_000_000);
    if Command::new("trace-cmd").arg("-h").output().is_err() {
        println!("SKIP: trace-cmd is not installed (apt-get install trace-cmd)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let baseline = median((0..rounds).map(|_| workload(calls)).collect());
    println!(
        "workload: {calls} getppid calls ({} events with raw_syscalls), untraced {baseline:.3} s",
        2 * calls
    );

    let mut results: Vec<(&str, Vec<Run>)> = vec![
        ("strata record", Vec::new()),
        ("trace-cmd record", Vec::new()),
        ("trace-cmd record --compression none", Vec::new()),
    ];
    for round in 0..rounds {
        for (name, runs) in results.iter_mut() {
            let out = dir.path().join(format!("r{round}-{}", runs.len()));
            let run = match *name {
                "strata record" => strata(&out, calls),
                "trace-cmd record" => trace_cmd(
                    "tcbench",
                    BUFFER_KB,
                    &out.with_extension("dat"),
                    calls,
                    false,
                ),
                _ => trace_cmd(
                    "tcbench",
                    BUFFER_KB,
                    &out.with_extension("dat"),
                    calls,
                    true,
                ),
            };
            let _ = std::fs::remove_dir_all(&out);
            let _ = std::fs::remove_file(out.with_extension("dat"));
            runs.push(run);
        }
    }

    println!(
        "\n{:<38} {:>10} {:>12} {:>10} {:>14} {:>10}",
        "recorder (median of rounds)", "events", "CPU s", "lost", "CPU s/M events", "slowdown"
    );
    let mut per_million = Vec::new();
    for (name, runs) in &results {
        let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        let cpm = m(|r| r.cpu_s / (r.events.max(1) as f64 / 1e6));
        per_million.push(cpm);
        println!(
            "{:<38} {:>10.0} {:>12.3} {:>10.0} {:>14.4} {:>9.2}x",
            name,
            m(|r| r.events as f64),
            m(|r| r.cpu_s),
            m(|r| r.lost as f64),
            cpm,
            m(|r| r.workload_s) / baseline
        );
    }
    println!(
        "\nstrata CPU per event / trace-cmd's: {:.2} (default trace-cmd), {:.2} (uncompressed)",
        per_million[0] / per_million[1],
        per_million[0] / per_million[2]
    );
}

/// Reads lines of `stream` until one contains `marker`, then drains the rest
/// in a thread and returns what it read.
fn wait_for(stream: impl Read + Send + 'static, marker: &str) -> std::thread::JoinHandle<String> {
    let mut lines = BufReader::new(stream).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap_or_default();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(marker) {
            break;
        }
        assert!(Instant::now() < deadline, "recorder did not start: {seen}");
    }
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    })
}

fn strata(out: &std::path::Path, calls: u64) -> Run {
    let mut child = Command::new(STRATA)
        .args(["record", "-q", "--events", "syscalls,sched:sched_switch"])
        .args(["--buffer-size", &format!("{BUFFER_KB}K"), "-o"])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata runs");
    let stdout = child.stdout.take().expect("piped");
    let err = wait_for(child.stderr.take().expect("piped"), "recording");
    let workload_s = workload(calls);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut text = String::new();
    let _ = BufReader::new(stdout).read_to_string(&mut text);
    let cpu_s = wait_cpu(&mut child);
    let _ = err.join();
    let events = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("Recorded ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    // The per-CPU table after the `cpu  lost events` header.
    let lost = text
        .lines()
        .skip_while(|l| !l.contains("lost events"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    Run {
        cpu_s,
        events,
        lost,
        workload_s,
    }
}
