//! `strata record` on the real kernel, checked with the real babeltrace2.
//!
//! These tests need root, tracefs and babeltrace2; without them each prints
//! one line saying what is missing and returns.

mod common;

use common::{
    babeltrace_events, have_babeltrace, run_strata, skip_unless_root_with_tracefs, BtEvent,
};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// A running `strata record` and the rest of its stderr.
struct Recording {
    child: Child,
    stderr: std::thread::JoinHandle<String>,
}

impl Recording {
    /// Waits for the recorder; returns (success, stdout, stderr).
    fn wait(self) -> (bool, String, String) {
        let out = self.child.wait_with_output().expect("strata record ends");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            self.stderr.join().unwrap_or_default(),
        )
    }
}

/// Starts `strata record` and returns once tracing is on.
fn start_recording(out: &Path, extra: &[&str]) -> Recording {
    let mut child = Command::new(STRATA)
        .arg("record")
        .arg("-o")
        .arg(out)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata runs");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("recording") => break,
            Some(Ok(_)) => {}
            _ => panic!("strata record did not start"),
        }
        assert!(
            Instant::now() < deadline,
            "strata record took too long to start"
        );
    }
    // Keep draining stderr so the recorder never blocks on a full pipe.
    let stderr =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    Recording { child, stderr }
}

/// Forks a child that makes exactly `calls` getppid system calls and
/// `sleeps` 20 ms sleeps, and returns its pid once it has exited.
fn known_workload(calls: usize, sleeps: usize) -> i32 {
    // SAFETY: the child only makes async-signal-safe system calls and leaves
    // with _exit, so forking from a multi-threaded test is sound.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe {
            for _ in 0..calls {
                libc::syscall(libc::SYS_getppid);
            }
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 20_000_000,
            };
            for _ in 0..sleeps {
                libc::syscall(
                    libc::SYS_nanosleep,
                    &ts,
                    std::ptr::null_mut::<libc::timespec>(),
                );
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    pid
}

/// The "Recorded N events" count from strata's summary.
fn recorded_count(stdout: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Recorded "))
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

/// The thread of each event: its `tid` context, or else the CPU's current
/// thread replayed from sched_switch.
fn attribute_to_threads(events: &[BtEvent]) -> Vec<Option<i64>> {
    let mut current: HashMap<i64, i64> = HashMap::new();
    events
        .iter()
        .map(|e| {
            let cpu = e.ctx("cpu_id");
            let tid = e
                .ctx("tid")
                .or_else(|| cpu.and_then(|c| current.get(&c).copied()));
            if e.name == "sched_switch" {
                if let (Some(c), Some(next)) = (cpu, e.int("next_tid")) {
                    current.insert(c, next);
                }
            }
            tid
        })
        .collect()
}

#[test]
fn records_a_known_workload_that_babeltrace_reads() {
    if !skip_unless_root_with_tracefs() || !have_babeltrace() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("trace");
    let recorder = start_recording(
        &out,
        &["--events", "sched,syscalls", "--duration", "3s", "-q"],
    );
    let calls = 2000;
    let sleeps = 5;
    let child = known_workload(calls, sleeps) as i64;
    let me = std::process::id() as i64;
    let (ok, stdout, stderr) = recorder.wait();
    assert!(ok, "strata record failed: {stdout}{stderr}");

    let events = babeltrace_events(&out);
    assert_eq!(
        events.len() as u64,
        recorded_count(&stdout),
        "babeltrace2 reads as many events as strata wrote"
    );

    let tids = attribute_to_threads(&events);
    let of_child = |name: &str| {
        events
            .iter()
            .zip(&tids)
            .filter(|(e, t)| e.name == name && **t == Some(child))
            .map(|(e, _)| e)
            .collect::<Vec<_>>()
    };
    assert_eq!(of_child("syscall_entry_getppid").len(), calls);
    let exits = of_child("syscall_exit_getppid");
    assert_eq!(exits.len(), calls);
    assert!(
        exits.iter().all(|e| e.int("ret") == Some(me)),
        "getppid returns the test's pid {me}"
    );
    assert_eq!(of_child("syscall_entry_nanosleep").len(), sleeps);

    // Each sleep switches the child out blocked, and back in by name.
    let out_blocked = events
        .iter()
        .filter(|e| {
            e.name == "sched_switch"
                && e.int("prev_tid") == Some(child)
                && e.int("prev_state") != Some(0)
        })
        .count();
    assert!(
        out_blocked >= sleeps,
        "{out_blocked} blocked switches for {sleeps} sleeps"
    );
    // The child inherits the name of the test thread that forked it.
    let comm = common::own_comm();
    assert!(events.iter().any(|e| e.name == "sched_switch"
        && e.int("prev_tid") == Some(child)
        && e.str("prev_comm") == Some(&comm)));

    // The state dump names this test's own thread.
    assert!(events
        .iter()
        .any(|e| e.name == "lttng_statedump_process_state"
            && e.int("tid") == Some(me)
            && e.int("pid") == Some(me)));
    assert_no_instance_left();
}

fn assert_no_instance_left() {
    let mine = "strata-";
    let left: Vec<String> = std::fs::read_dir("/sys/kernel/tracing/instances")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(mine))
                .filter(|n| {
                    // Only instances of processes that are gone are ours to judge.
                    n.split('-')
                        .nth(1)
                        .and_then(|p| p.parse::<u32>().ok())
                        .is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists())
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "instances left behind: {left:?}");
}

#[test]
fn sigterm_and_sigint_stop_cleanly_with_a_valid_trace() {
    if !skip_unless_root_with_tracefs() || !have_babeltrace() {
        return;
    }
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("trace");
        let recorder = start_recording(&out, &["-q"]);
        known_workload(100, 1);
        let pid = recorder.child.id();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, signal) };
        let (ok, stdout, stderr) = recorder.wait();
        assert!(ok, "signal {signal}: {stdout}{stderr}");
        let n = recorded_count(&stdout);
        assert!(n > 0);
        assert_eq!(babeltrace_events(&out).len() as u64, n);
        let left = std::fs::read_dir("/sys/kernel/tracing/instances")
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("strata-{pid}-"))
            });
        assert!(
            !left,
            "the recorder's instance is removed after signal {signal}"
        );
    }
}

#[test]
fn bad_requests_get_clear_errors() {
    if !skip_unless_root_with_tracefs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("something"), b"x").unwrap();
    let (ok, _, err) = run_strata(&[
        "record",
        "-o",
        dir.path().to_str().unwrap(),
        "--duration",
        "1s",
    ]);
    assert!(!ok);
    assert!(err.contains("not empty"), "{err}");

    let out = dir.path().join("t2");
    let (ok, _, err) = run_strata(&[
        "record",
        "-o",
        out.to_str().unwrap(),
        "--events",
        "sched_swich",
    ]);
    assert!(!ok);
    assert!(
        err.contains("sched:sched_switch"),
        "suggests the close name: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists(), "nothing is written for a bad request");

    let (ok, _, err) = run_strata(&[
        "record",
        "-o",
        out.to_str().unwrap(),
        "--buffer-size",
        "lots",
    ]);
    assert!(!ok);
    assert!(err.contains("lots"), "{err}");
}

#[test]
fn refuses_to_run_without_root() {
    if !skip_unless_root_with_tracefs() {
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        println!("SKIP: setpriv (util-linux) is needed to drop root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t");
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            STRATA,
            "record",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("needs root"), "{err}");
}

#[test]
fn a_full_disk_stops_with_an_error_and_keeps_a_valid_trace() {
    if !skip_unless_root_with_tracefs() || !have_babeltrace() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=640k", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        println!("SKIP: cannot mount a small tmpfs to fill");
        return;
    }
    let out = mnt.join("trace");
    let recorder = start_recording(&out, &["--events", "syscalls", "--duration", "10s", "-q"]);
    // Far more than 640 KiB of events.
    known_workload(200_000, 0);
    let (ok, _, err) = recorder.wait();
    let read_back = common::try_babeltrace_events(&out);
    let _ = Command::new("umount").arg(&mnt).status();
    assert!(!ok, "a full disk is an error");
    assert!(err.contains("No space left"), "{err}");
    assert!(
        err.contains("valid trace") || err.contains("cut back"),
        "{err}"
    );
    let events = read_back.expect("babeltrace2 reads what was written before the disk filled");
    assert!(!events.is_empty());
}
