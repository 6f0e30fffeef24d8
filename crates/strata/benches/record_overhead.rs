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
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");
const BUFFER_KB: u64 = 8192;
const TC_INSTANCE: &str = "/sys/kernel/tracing/instances/tcbench";

/// One recorder run.
#[derive(Debug, Default, Clone, Copy)]
struct Run {
    cpu_s: f64,
    events: u64,
    lost: u64,
    workload_s: f64,
}

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
                "trace-cmd record" => trace_cmd(&out, calls, false),
                _ => trace_cmd(&out, calls, true),
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs the workload in a child process; returns its wall time in seconds.
fn workload(calls: u64) -> f64 {
    let start = Instant::now();
    // SAFETY: the child makes raw system calls only and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe {
            for _ in 0..calls {
                libc::syscall(libc::SYS_getppid);
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    start.elapsed().as_secs_f64()
}

/// CPU seconds of every child reaped so far (and of their reaped children).
fn children_cpu() -> f64 {
    // SAFETY: rusage is plain data that getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// Waits for `child` and returns its CPU time, children included. Every
/// other child is already reaped, so the growth of the children's total is
/// this one's.
fn wait_cpu(child: &mut Child) -> f64 {
    let before = children_cpu();
    let _ = child.wait();
    children_cpu() - before
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

fn trace_cmd(out: &std::path::Path, calls: u64, uncompressed: bool) -> Run {
    let file = out.with_extension("dat");
    let mut cmd = Command::new("trace-cmd");
    cmd.args(["record", "-d", "--no-filter", "-B", "tcbench", "-C", "mono"])
        .args([
            "-b",
            &BUFFER_KB.to_string(),
            "-e",
            "raw_syscalls",
            "-e",
            "sched:sched_switch",
        ]);
    if uncompressed {
        cmd.args(["--compression", "none"]);
    }
    let mut child = cmd
        .arg("-o")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("trace-cmd runs");
    let drain = |stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stream).read_to_string(&mut s);
            s
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    // trace-cmd's "Hit Ctrl^C" line sits in its stdout buffer until it
    // exits, so readiness is read from its instance instead.
    let tracing_on = format!("{TC_INSTANCE}/tracing_on");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&tracing_on).map_or(true, |s| s.trim() != "1") {
        assert!(Instant::now() < deadline, "trace-cmd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its per-CPU recorder processes start right after.
    std::thread::sleep(Duration::from_millis(500));
    let workload_s = workload(calls);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let cpu_s = wait_cpu(&mut child);
    let _ = (stdout.join(), stderr.join());
    // trace-cmd leaves its instance behind when it cannot write the
    // function-tracer files of this locked-down kernel.
    let _ = std::fs::remove_dir(TC_INSTANCE);
    // The events that made it into the file, and the kernel's per-CPU
    // statistics that trace-cmd stores in it.
    let report = |extra: &[&str]| -> String {
        Command::new("trace-cmd")
            .args(["report", "-i"])
            .arg(&file)
            .args(extra)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let events = report(&[])
        .lines()
        .filter(|l| l.contains(": sys_") || l.contains(": sched_switch:"))
        .count() as u64;
    let stats = report(&["--stat"]);
    let sum = |key: &str| -> u64 {
        stats
            .lines()
            .filter_map(|l| l.trim().strip_prefix(key)?.trim().parse::<u64>().ok())
            .sum()
    };
    Run {
        cpu_s,
        events,
        lost: sum("overrun:") + sum("commit overrun:") + sum("dropped events:"),
        workload_s,
    }
}
