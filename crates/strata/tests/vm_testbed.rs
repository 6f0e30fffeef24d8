//! The QEMU testbed on real TCG guests: two guests whose vCPU threads are
//! pinned to one host CPU, each running a CPU hog, must each get about half
//! of that CPU in the host trace, and every trace must be readable.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

fn cpu_usage(trace: &Path, tid: u64, begin_ns: u128, end_ns: u128) -> f64 {
    let out = Command::new(STRATA)
        .args(["analyze", "--json", "--tid", &tid.to_string()])
        .args([
            "--begin",
            &begin_ns.to_string(),
            "--end",
            &end_ns.to_string(),
        ])
        .arg("cputop")
        .arg(trace)
        .output()
        .expect("strata analyze runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let threads = &v["hosts"][0]["cputop"]["threads"];
    threads
        .as_array()
        .and_then(|t| t.iter().find(|r| r["tid"].as_u64() == Some(tid)))
        .and_then(|r| r["usage_pct"].as_f64())
        .unwrap_or(0.0)
}

#[test]
fn two_pinned_guests_share_one_cpu() {
    if !common::skip_unless_root_with_tracefs() || !common::have_babeltrace() {
        return;
    }
    for tool in ["qemu-system-x86_64", "busybox", "cpio", "apt-get"] {
        if !have(tool) {
            println!("SKIP: {tool} is missing (scripts/install-deps installs it)");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let start_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let out = Command::new(STRATA)
        .args([
            "testbed",
            "--guests",
            "2",
            "--pin",
            "0",
            "--workload",
            "cpu",
        ])
        .args(["--duration", "16s", "--memory", "192", "-o"])
        .arg(dir.path())
        .output()
        .expect("strata testbed runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("apt-get download") && stderr.contains("failed") {
        println!("SKIP: the guest kernel cannot be downloaded here: {stderr}");
        return;
    }
    assert!(out.status.success(), "testbed failed: {stderr}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("testbed.json")).unwrap())
            .unwrap();
    let host_trace = Path::new(manifest["host_trace"].as_str().unwrap()).to_path_buf();
    let guests = manifest["guests"].as_array().unwrap();
    assert_eq!(guests.len(), 2);

    // Every trace exists and babeltrace2 reads it.
    let mut traces = vec![host_trace.clone()];
    traces.extend(guests.iter().map(|g| g["trace"].as_str().unwrap().into()));
    for t in &traces {
        assert!(t.join("metadata").is_file(), "no trace at {}", t.display());
        let events = common::try_babeltrace_events(t)
            .unwrap_or_else(|e| panic!("babeltrace2 cannot read {}: {e}", t.display()));
        assert!(
            events.len() > 100,
            "{} holds {} events",
            t.display(),
            events.len()
        );
    }

    // Mid-workload (boots share the CPU too, so they take ~10 s), each
    // vCPU thread gets about half of CPU 0.
    let begin = start_ns + 14_000_000_000;
    let end = begin + 4_000_000_000;
    for g in guests {
        let tid = g["vcpus"][0]["tid"].as_u64().unwrap();
        let pct = cpu_usage(&host_trace, tid, begin, end);
        // cputop's percentage is of all host CPUs: half of one CPU out of n.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let of_one_cpu = pct * cpus;
        assert!(
            (40.0..=60.0).contains(&of_one_cpu),
            "vCPU thread {tid} of {} ran {of_one_cpu:.1}% of CPU 0 (want 50 ± 10)",
            g["name"]
        );
    }
    // No QEMU is left behind.
    for g in guests {
        let pid = g["qemu_pid"].as_u64().unwrap();
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists() || {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                stat.contains(") Z")
            }
        );
    }
}
