//! What the recording and agent overhead benchmarks share: the syscall
//! workload, per-child CPU accounting, and the trace-cmd run they are both
//! compared against. Included by path from both benches so that the peer is
//! measured the same way in each.

use std::io::{BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One recorder run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Run {
    /// CPU seconds of the recorder, its children included.
    pub cpu_s: f64,
    /// Events that reached its output.
    pub events: u64,
    /// Events the kernel dropped.
    pub lost: u64,
    /// Wall seconds of the workload while it recorded.
    pub workload_s: f64,
}

/// The middle value (0 when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `calls` getppid syscalls in a child process; returns its wall time
/// in seconds.
pub fn workload(calls: u64) -> f64 {
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
pub fn wait_cpu(child: &mut Child) -> f64 {
    let before = children_cpu();
    let _ = child.wait();
    children_cpu() - before
}

/// Records syscalls and switches with trace-cmd in instance `instance`
/// (`buffer_kb` per CPU) into `file` while the workload runs, then reads
/// back how many events the file holds and what the kernel dropped.
pub fn trace_cmd(
    instance: &str,
    buffer_kb: u64,
    file: &Path,
    calls: u64,
    uncompressed: bool,
) -> Run {
    let mut cmd = Command::new("trace-cmd");
    cmd.args(["record", "-d", "--no-filter", "-B", instance, "-C", "mono"])
        .args([
            "-b",
            &buffer_kb.to_string(),
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
        .arg(file)
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
    let instance_dir = format!("/sys/kernel/tracing/instances/{instance}");
    let tracing_on = format!("{instance_dir}/tracing_on");
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
    let _ = std::fs::remove_dir(&instance_dir);
    // The events that made it into the file, and the kernel's per-CPU
    // statistics that trace-cmd stores in it.
    let report = |extra: &[&str]| -> String {
        Command::new("trace-cmd")
            .args(["report", "-i"])
            .arg(file)
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
    let _ = std::fs::remove_file(file);
    Run {
        cpu_s,
        events,
        lost: sum("overrun:") + sum("commit overrun:") + sum("dropped events:"),
        workload_s,
    }
}
