//! The QEMU testbed on real TCG guests: two guests whose vCPU threads are
//! pinned to one host CPU, each running a CPU hog, must share that CPU
//! about evenly in the host trace; every trace must be readable, each guest
//! trace must name its VM (env `vm_uuid`), and each guest clock must sync,
//! in `strata vm report` from the traces alone, to the constant between the
//! guest and host TSCs. Unpinned guests must not preempt each other.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// The testbed runs one at a time: guests of two runs would compete for
/// the CPUs and spoil both runs' figures.
static ONE_TESTBED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Skips (with one line) unless everything a testbed run needs is here.
fn testbed_ready() -> bool {
    if !common::skip_unless_root_with_tracefs() || !common::have_babeltrace() {
        return false;
    }
    for tool in ["qemu-system-x86_64", "busybox", "cpio", "apt-get"] {
        if !have(tool) {
            println!("SKIP: {tool} is missing (scripts/install-deps installs it)");
            return false;
        }
    }
    true
}

/// Runs `strata vm testbed` with `args` into `dir`, CPU hogs in small
/// guests, the host recording what the checks need and little more:
/// scheduling for cputop, and the write syscalls that carry the sync
/// probes. `None` (after one line saying why) when the guest kernel cannot
/// be downloaded here.
fn testbed(args: &[&str], dir: &Path) -> Option<serde_json::Value> {
    let out = Command::new(STRATA)
        .args(["vm", "testbed", "--workload", "cpu", "--memory", "192"])
        .args([
            "--host-events",
            "sched,syscalls:sys_enter_write,syscalls:sys_enter_writev",
        ])
        .args(args)
        .arg("-o")
        .arg(dir)
        .output()
        .expect("strata testbed runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("apt-get download") && stderr.contains("failed") {
        println!("SKIP: the guest kernel cannot be downloaded here: {stderr}");
        return None;
    }
    assert!(out.status.success(), "testbed failed: {stderr}");
    for l in stderr.lines().filter(|l| l.starts_with("testbed:")) {
        eprintln!("{l}");
    }
    Some(serde_json::from_str(&std::fs::read_to_string(dir.join("testbed.json")).unwrap()).unwrap())
}

/// `strata vm report --json DIR`, VMs of every host.
fn vm_report(dir: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(STRATA)
        .args(["vm", "report", "--json"])
        .arg(dir)
        .output()
        .expect("strata vm report runs");
    assert!(
        out.status.success(),
        "vm report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| h["vms"].as_array().unwrap().iter().cloned())
        .collect()
}

/// Checks each VM's clock sync in the report against the testbed's
/// console-derived TSC constant, and its bound against `max_bound_ns`.
fn check_sync(vms: &[serde_json::Value], guests: &[serde_json::Value], max_bound_ns: Option<f64>) {
    // The report synced each guest's clock from the probes in the two
    // traces (trace_marker lines in the guest's, the vCPU thread's debugcon
    // writes in the host's). Both traces use x86-tsc and, under TCG, guest
    // TSC = host TSC + C exactly. The testbed finds the range of C its own
    // console probe lines allow (raw cycles, rates taken as equal): the
    // report's C must be within its bound of that range, both the chosen
    // method's (`tsc`: C from every pair at once) and the slope-free convex
    // hull's, found over ns timestamps with each trace's clock conversion.
    for vm in vms {
        let name = vm["name"].as_str().unwrap();
        let sync = &vm["guest"]["sync"];
        let paired = sync["paired"].as_u64().unwrap_or(0);
        assert!(paired >= 40, "{name}: {paired} probes paired: {sync}");
        assert_eq!(sync["method"], "tsc", "{name}: {sync}");
        let bound_ns = sync["bound_ns"].as_f64().unwrap();
        if let Some(max) = max_bound_ns {
            assert!(
                bound_ns <= max,
                "{name}: sync bound {bound_ns:.0} ns > {max} ns: {sync}"
            );
        }
        let g = guests.iter().find(|g| g["name"] == name).unwrap();
        let range = g["sync"]["tsc_constant"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no TSC constant from the console: {}", g["sync"]));
        let (lo, hi) = (range[0].as_f64().unwrap(), range[1].as_f64().unwrap());
        let outside = |c: f64| (lo - c).max(c - hi).max(0.0);
        let c = sync["tsc_offset_cycles"]
            .as_f64()
            .expect("both traces on x86-tsc");
        let bound = sync["bound_cycles"].as_f64().unwrap();
        assert!(
            outside(c) <= bound,
            "{name}: synced C {c:.0} is {:.0} cycles outside [{lo}, {hi}], bound {bound:.0}",
            outside(c)
        );
        let hull_c = sync["hull"]["tsc_offset_cycles"].as_f64().unwrap();
        let hull_bound = bound * sync["hull"]["bound_ns"].as_f64().unwrap() / bound_ns;
        assert!(
            outside(hull_c) <= hull_bound,
            "{name}: the hull's C {hull_c:.0} is {:.0} cycles outside [{lo}, {hi}], bound {hull_bound:.0}",
            outside(hull_c)
        );
        eprintln!(
            "{name}: {paired} probes, bound {bound_ns:.0} ns ({bound:.0} cycles; hull {:.0} ns), \
             C {c:.0} (hull {hull_c:.0}) vs console [{lo}, {hi}]",
            sync["hull"]["bound_ns"].as_f64().unwrap()
        );
        check_live_sync(name, sync, g);
    }
}

/// The relay's live sync (from the events as they streamed) and the
/// report's (from the stored traces) must give the same host time for the
/// guest instant the live one is anchored at, within the sum of their
/// bounds.
fn check_live_sync(name: &str, offline: &serde_json::Value, guest: &serde_json::Value) {
    let live = &guest["live_sync"];
    assert!(
        !live.is_null(),
        "{name}: the relay had no live sync of this guest; its probe matchers as last seen: {}",
        guest["live_sync_sources"]
    );
    let paired = live["paired"].as_u64().unwrap_or(0);
    assert!(paired >= 20, "{name}: live sync paired {paired}: {live}");
    let at = live["anchor_ns"].as_i64().unwrap();
    let live_offset = live["offset_ns"].as_i64().unwrap() as f64;
    let o_anchor = offline["anchor_ns"].as_i64().unwrap();
    let o_offset = offline["offset_ns"].as_i64().unwrap() as f64;
    let o_slope = offline["slope"].as_f64().unwrap();
    // Both transforms give host minus guest; the offline one drifts from
    // its own anchor.
    let offline_at = o_offset + (at - o_anchor) as f64 * (o_slope - 1.0);
    let diff = (live_offset - offline_at).abs();
    let bounds = live["bound_ns"].as_f64().unwrap() + offline["bound_ns"].as_f64().unwrap();
    assert!(
        diff <= bounds + 1.0,
        "{name}: live and offline syncs differ by {diff:.0} ns at the live anchor, \
         more than their bounds' sum {bounds:.0} ns: live {live}, offline {offline}"
    );
    eprintln!(
        "{name}: live sync {paired} pairs, bound {:.0} ns, {diff:.0} ns from the report's",
        live["bound_ns"].as_f64().unwrap()
    );
}

/// Asserts that no QEMU of the run is left.
fn no_qemu_left(guests: &[serde_json::Value]) {
    for g in guests {
        let pid = g["qemu_pid"].as_u64().unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "QEMU {pid} still runs"
        );
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

/// Streams babeltrace2's text output and counts the events, so that a big
/// host trace is not held in memory.
fn babeltrace_count(trace: &Path) -> usize {
    let mut child = Command::new("babeltrace2")
        .arg(trace)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("babeltrace2 runs");
    let n = BufReader::new(child.stdout.take().unwrap()).lines().count();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "babeltrace2 cannot read {}: {}",
        trace.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    n
}

/// `strata analyze cputop` for one thread over [begin, end]: its CPU use in
/// percent of one CPU, and the CPUs it ran on.
fn thread_cpu(trace: &Path, tid: u64, begin_ns: u64, end_ns: u64) -> (f64, Vec<u64>) {
    let out = Command::new(STRATA)
        .args(["analyze", "--json", "--tid", &tid.to_string()])
        .args(["--begin", &begin_ns.to_string()])
        .args(["--end", &end_ns.to_string()])
        .arg("cputop")
        .arg(trace)
        .output()
        .expect("strata analyze runs");
    assert!(
        out.status.success(),
        "strata analyze cputop on {} failed: {}",
        trace.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let top = &v["hosts"][0]["cputop"];
    let pct = top["threads"]
        .as_array()
        .and_then(|t| t.iter().find(|r| r["tid"].as_u64() == Some(tid)))
        .and_then(|r| r["usage_pct"].as_f64())
        .unwrap_or(0.0);
    let cpus = top["cpus"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter(|r| r["busy_ns"].as_u64().unwrap_or(0) > 0)
                .filter_map(|r| r["cpu"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    (pct, cpus)
}

/// The `vm_uuid` of a trace's CTF env, if any.
fn env_vm_uuid(trace: &Path) -> Option<String> {
    let meta = std::fs::read_to_string(trace.join("metadata")).unwrap();
    let line = meta
        .lines()
        .find(|l| l.trim_start().starts_with("vm_uuid = "))?;
    Some(line.split('"').nth(1)?.to_string())
}

#[test]
fn two_pinned_guests_share_one_cpu() {
    if !testbed_ready() {
        return;
    }
    let _one = ONE_TESTBED.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let Some(manifest) = testbed(
        &["--guests", "2", "--pin", "0", "--duration", "6s"],
        dir.path(),
    ) else {
        return;
    };
    eprintln!("testbed ran in {:.1} s", t0.elapsed().as_secs_f64());
    let host_trace = Path::new(manifest["host_trace"].as_str().unwrap()).to_path_buf();
    let guests = manifest["guests"].as_array().unwrap();
    assert_eq!(guests.len(), 2);

    // Every trace exists and babeltrace2 reads it.
    let mut traces = vec![host_trace.clone()];
    traces.extend(guests.iter().map(|g| g["trace"].as_str().unwrap().into()));
    for t in &traces {
        assert!(t.join("metadata").is_file(), "no trace at {}", t.display());
        let n = babeltrace_count(t);
        assert!(n > 100, "{} holds {n} events", t.display());
    }

    // Each guest trace names its VM as QEMU's -uuid; the host's names none.
    assert_eq!(env_vm_uuid(&host_trace), None);
    for g in guests {
        let trace = Path::new(g["trace"].as_str().unwrap());
        assert_eq!(
            env_vm_uuid(trace).as_deref(),
            g["uuid"].as_str(),
            "vm_uuid in {}",
            trace.display()
        );
    }

    // The period when both hogs ran, from the guests' consoles (host
    // clock), with a margin for the console polling.
    let margin = 300_000_000;
    let begin = guests
        .iter()
        .map(|g| {
            g["workload"]["begin_ns"]
                .as_u64()
                .expect("workload start seen")
        })
        .max()
        .unwrap()
        + margin;
    let end = guests
        .iter()
        .map(|g| {
            g["workload"]["end_ns"]
                .as_u64()
                .expect("workload stop seen")
        })
        .min()
        .unwrap()
        - margin;
    assert!(
        end > begin + 2_000_000_000,
        "the hogs overlapped for less than 2 s ({begin}..{end})"
    );

    // Each vCPU thread ran only on CPU 0, and the two shared it evenly.
    // Other engineers' processes also run on CPU 0 of this shared machine,
    // so the split is judged on the time the two vCPU threads got together,
    // and each must still have had a large part of the CPU.
    let mut usage = Vec::new();
    for g in guests {
        let tid = g["vcpus"][0]["tid"].as_u64().unwrap();
        let (pct, cpus) = thread_cpu(&host_trace, tid, begin, end);
        assert_eq!(cpus, vec![0], "vCPU thread {tid} ran on CPUs {cpus:?}");
        usage.push((tid, pct));
    }
    let both: f64 = usage.iter().map(|u| u.1).sum();
    eprintln!("vCPU threads' use of CPU 0 (% of one CPU): {usage:?}, together {both:.1}");
    assert!(
        (40.0..=105.0).contains(&both),
        "the two vCPU threads together ran {both:.1}% of CPU 0 ({usage:?})"
    );
    for (tid, pct) in &usage {
        let share = 100.0 * pct / both;
        assert!(
            (35.0..=65.0).contains(&share),
            "vCPU thread {tid} got {share:.1}% of the pair's time on CPU 0 (want 50 ± 15; {usage:?})"
        );
        assert!(
            *pct <= 65.0,
            "vCPU thread {tid} ran {pct:.1}% of CPU 0: not sharing it"
        );
    }

    // Each guest clock synced from its probes, at the same rate as the host's.
    for g in guests {
        let s = &g["sync"];
        assert!(
            s["paired"].as_u64().unwrap_or(0) >= 20,
            "{}: too few sync probes paired: {s}",
            g["name"]
        );
        let slope = s["slope"].as_f64().unwrap();
        assert!((slope - 1.0).abs() < 1e-3, "{}: slope {slope}", g["name"]);
        eprintln!("{}: sync bound {} ns", g["name"], s["bound_ns"]);
    }

    // `strata vm report DIR`: both VMs named (from the testbed's hints),
    // their guest traces paired by UUID, and each mostly preempted by the
    // other VM's vCPU, since both are pinned to CPU 0.
    let vms = vm_report(dir.path());
    assert_eq!(vms.len(), 2, "{vms:?}");
    for vm in &vms {
        let name = vm["name"].as_str().unwrap();
        let other = if name == "strata-g0" {
            "strata-g1"
        } else {
            "strata-g0"
        };
        assert_eq!(vm["guest"]["paired_by"], "uuid", "{name}");
        let preempted = vm["times"]["pct"]["preempted"].as_f64().unwrap();
        assert!(
            (20.0..=80.0).contains(&preempted),
            "{name}: preempted {preempted:.1}% of the time, expected about half"
        );
        let by_vm = vm["preempted_by"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["kind"] == "vcpu")
            .unwrap_or_else(|| panic!("{name}: no vCPU preempted it: {vm}"));
        assert_eq!(by_vm["vm"], other, "{name}");
        eprintln!(
            "{name}: preempted {preempted:.1}%, {:.1}% of it by {other}",
            by_vm["pct"].as_f64().unwrap()
        );
    }

    // Each guest's clock synced from the probes in the traces, offline and
    // live. Starved guests probe at nearly regular gaps (their sleeps end
    // on the host's timer ticks), which once made the offset guess lock a
    // gap off; the spans stretch, so the bound is not held to 5 µs here.
    check_sync(&vms, guests, None);

    no_qemu_left(guests);
    eprintln!("test body took {:.1} s", t0.elapsed().as_secs_f64());
}

/// Unpinned CPU-hog guests, as many as the host has CPUs, run in parallel:
/// neither VM should wait behind the other's vCPU for long. The absolute
/// "preemption near 0" needs an otherwise idle host: other processes'
/// CPU time is measured in the same host trace, and the check made only
/// when they left the CPUs idle enough.
#[test]
fn unpinned_guests_barely_preempt_each_other() {
    if !testbed_ready() {
        return;
    }
    let _one = ONE_TESTBED.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let Some(manifest) = testbed(&["--guests", "2", "--duration", "6s"], dir.path()) else {
        return;
    };
    let guests = manifest["guests"].as_array().unwrap();
    let host_trace = Path::new(manifest["host_trace"].as_str().unwrap()).to_path_buf();
    let begin = guests
        .iter()
        .map(|g| g["workload"]["begin_ns"].as_u64().expect("workload start"))
        .max()
        .unwrap()
        + 300_000_000;
    let end = guests
        .iter()
        .map(|g| g["workload"]["end_ns"].as_u64().expect("workload stop"))
        .min()
        .unwrap()
        - 300_000_000;
    assert!(
        end > begin + 1_000_000_000,
        "the hogs overlapped for less than 1 s ({begin}..{end})"
    );
    // Everything else that ran meanwhile, in % of one CPU.
    let out = Command::new(STRATA)
        .args(["analyze", "--json"])
        .args(["--begin", &begin.to_string(), "--end", &end.to_string()])
        .arg("cputop")
        .arg(&host_trace)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vcpu_tids: Vec<u64> = guests
        .iter()
        .flat_map(|g| g["vcpus"].as_array().unwrap().iter())
        .filter_map(|v| v["tid"].as_u64())
        .collect();
    let others: f64 = v["hosts"][0]["cputop"]["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !t["tid"].as_u64().is_some_and(|t| vcpu_tids.contains(&t)))
        .filter_map(|t| t["usage_pct"].as_f64())
        .sum();

    let vms = vm_report(dir.path());
    assert_eq!(vms.len(), 2);
    for vm in &vms {
        let name = vm["name"].as_str().unwrap();
        let demand = vm["times"]["demand_ns"].as_f64().unwrap();
        let by_vm: f64 = vm["preempted_by"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["kind"] == "vcpu")
            .filter_map(|p| p["ns"].as_f64())
            .sum();
        let preempted = vm["times"]["pct"]["preempted"].as_f64().unwrap();
        eprintln!(
            "{name}: preempted {preempted:.1}% of the period, {:.1}% of its demand by the other VM; \
             other processes used {others:.0}% of one CPU",
            100.0 * by_vm / demand
        );
        // Only an idle host shows what the issue asks ("unpinned on an
        // idle host, preemption near 0"): other processes of this shared
        // machine take CPUs the two hogs then share. Two CPUs, two vCPUs:
        // with others under a quarter of one CPU, the scheduler keeps the
        // vCPUs apart (at most 10% of the demand spent behind the other
        // VM); under 10% of one CPU, nothing waits (under 10% of the
        // period preempted).
        if others < 25.0 {
            assert!(
                by_vm <= 0.10 * demand,
                "{name}: the other VM preempted it {:.1}% of its demand",
                100.0 * by_vm / demand
            );
        } else {
            println!(
                "SKIP (preempted-by-VM check): other processes used {others:.0}% of one CPU \
                 during the run, the host was not idle"
            );
        }
        if others < 10.0 {
            assert!(
                preempted < 10.0,
                "{name}: preempted {preempted:.1}% on an idle host"
            );
        } else {
            println!(
                "SKIP (idle-host check): other processes used {others:.0}% of one CPU \
                 during the run, the host was not idle"
            );
        }
    }
    // Each vCPU on its own CPU: the probes' spans are short, and on an
    // idle enough host the target holds, a bound of at most 5 µs.
    // Other load stretches the spans (measured here: 3.1-5.1 µs with others
    // at 35-50% of one CPU); then the bound is held to 10 µs.
    let max = if others < 25.0 {
        5_000.0
    } else {
        println!(
            "SKIP (5 µs sync bound; 10 µs checked): other processes used {others:.0}% of one \
             CPU during the run"
        );
        10_000.0
    };
    check_sync(&vms, guests, Some(max));
    no_qemu_left(guests);
    eprintln!("test body took {:.1} s", t0.elapsed().as_secs_f64());
}

/// Flight recorders on the host and in a guest: one snapshot of both,
/// asked of the relay while the guest's workload runs, covers the same
/// instant. The relay converts its instant through the guest's live clock
/// sync; `strata vm report` on the snapshot alone syncs the guest again,
/// from the probes inside the two snapshot traces, and maps the guest's
/// instant back onto the host's within the two syncs' bounds.
#[test]
fn a_guest_and_its_host_snapshot_the_same_instant() {
    if !testbed_ready() {
        return;
    }
    let _one = ONE_TESTBED.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let Some(manifest) = testbed(
        &[
            "--guests",
            "1",
            "--duration",
            "12s",
            "--flight",
            "--snapshot-after",
            "3s",
        ],
        dir.path(),
    ) else {
        return;
    };
    let snap = &manifest["snapshot"];
    let parts = snap["hosts"]
        .as_array()
        .unwrap_or_else(|| panic!("no snapshot: {snap}"));
    let part = |name: &str| {
        parts
            .iter()
            .find(|p| p["host"] == name)
            .unwrap_or_else(|| panic!("no part of {name}: {snap}"))
    };
    let (host, guest) = (part("host"), part("strata-g0"));
    for p in [host, guest] {
        assert_eq!(p["ok"], true, "{p}");
    }
    assert_eq!(host["guest_synced"], false, "{host}");
    assert_eq!(guest["guest_synced"], true, "{guest}");
    let at_host = host["at_ns"].as_i64().unwrap();
    let at_guest = guest["at_ns"].as_i64().unwrap();

    let snap_dir = Path::new(host["path"].as_str().unwrap())
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    let vms = vm_report(&snap_dir);
    assert_eq!(vms.len(), 1, "{vms:?}");
    let sync = &vms[0]["guest"]["sync"];
    assert!(
        sync["paired"].as_u64().unwrap_or(0) >= 20,
        "the snapshot's own probes do not sync the guest: {sync}"
    );
    let anchor = sync["anchor_ns"].as_i64().unwrap();
    let offset = sync["offset_ns"].as_i64().unwrap();
    let slope = sync["slope"].as_f64().unwrap();
    let mapped = at_guest + offset + ((at_guest - anchor) as f64 * (slope - 1.0)).round() as i64;
    let live = &manifest["guests"][0]["live_sync"];
    let live_bound = live["bound_ns"]
        .as_f64()
        .unwrap_or_else(|| panic!("no live sync: {}", manifest["guests"][0]));
    // The live sync (the testbed's last look at the live session) went on
    // past the snapshot, pairing more probes than the snapshot holds.
    assert!(
        live["paired"].as_u64().unwrap_or(0) > sync["guest_probes"].as_u64().unwrap_or(0),
        "the live sync paired fewer probes than the snapshot holds: {live}"
    );
    let bounds = sync["bound_ns"].as_f64().unwrap() + live_bound;
    let diff = (mapped - at_host).abs();
    assert!(
        diff as f64 <= bounds + 1_000.0,
        "the guest's instant maps {diff} ns from the host's, more than the bounds {bounds:.0} ns: {sync}"
    );
    eprintln!(
        "snapshot instants: guest {at_guest} maps to {diff} ns from the host's ({bounds:.0} ns bounds)"
    );
    no_qemu_left(manifest["guests"].as_array().unwrap());
}
