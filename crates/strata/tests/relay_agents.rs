//! Several agents stream to one real relay on loopback: two replay agents
//! (recorded LTTng traces) and, as root, one agent on this host's tracefs.
//! The stored traces hold what the agents sent, CPU by CPU, and babeltrace2
//! reads them; the HTTP API reports every host.

mod relay_support;

use relay_support::*;
use std::time::Duration;

/// Whether tracefs is usable (root, mounted); prints why not.
fn tracefs_usable() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP (live agent part): needs root for tracefs");
        return false;
    }
    if !std::path::Path::new("/sys/kernel/tracing/instances").is_dir() {
        let _ = std::process::Command::new("mount")
            .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
            .status();
    }
    let ok = std::path::Path::new("/sys/kernel/tracing/instances").is_dir();
    if !ok {
        println!("SKIP (live agent part): no tracefs at /sys/kernel/tracing");
    }
    ok
}

/// The number after `marker` in `text`.
fn number_after(text: &str, marker: &str) -> Option<u64> {
    let at = text.find(marker)? + marker.len();
    let rest = &text[at..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[test]
fn replay_and_live_agents_store_what_they_sent() {
    if !have_babeltrace() {
        return;
    }
    let (Some(many), Some(rot)) = (
        shared_trace("tc-many-threads"),
        shared_trace("bt-lttng-tracefile-rotation/kernel"),
    ) else {
        return;
    };
    let s = Setup::new();
    let relay = Relay::start(&s, &[]);
    let live = tracefs_usable();
    let mut a1 = Agent::replay(relay.ingest, &s, &many, "r1", 0, &[]);
    let mut a2 = Agent::replay(relay.ingest, &s, &rot, "r2", 20_000, &[]);
    let mut a3 = live.then(|| {
        Agent::start(
            relay.ingest,
            &s,
            &[
                "--insecure",
                "--host-id",
                "here",
                "--events",
                "sched,syscalls",
                "-d",
                "3s",
            ],
        )
    });
    if a3.is_some() {
        // Some syscalls while the live agent records.
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_millis(1500) {
            let _ = std::fs::metadata("/proc/self");
        }
    }
    assert!(a1.wait(Duration::from_secs(120)), "{}", a1.log());
    assert!(a2.wait(Duration::from_secs(120)), "{}", a2.log());
    if let Some(a) = a3.as_mut() {
        assert!(a.wait(Duration::from_secs(60)), "{}", a.log());
    }

    // Replayed traces: babeltrace2's per-CPU counts of the stored trace
    // equal the source's; without rotation, every stream file is the
    // source's byte for byte (rotated files become one stream file each).
    let want = stream_files(&many);
    let got = stream_files(&stored(&relay.data, "r1"));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &want {
        assert!(
            got[name] == *bytes,
            "r1: stream {name} differs from the source"
        );
    }
    let rotated: usize = stream_files(&rot).values().map(Vec::len).sum();
    let joined: usize = stream_files(&stored(&relay.data, "r2"))
        .values()
        .map(Vec::len)
        .sum();
    assert_eq!(joined, rotated, "r2: bytes of all packets");
    for (host, src) in [("r1", &many), ("r2", &rot)] {
        let dst = stored(&relay.data, host);
        let src_counts = babeltrace_cpu_counts(src).unwrap();
        let dst_counts = babeltrace_cpu_counts(&dst).unwrap();
        assert!(!src_counts.is_empty());
        assert_eq!(dst_counts, src_counts, "{host}: per-CPU event counts");
    }
    let total: u64 = babeltrace_cpu_counts(&stored(&relay.data, "r1"))
        .unwrap()
        .values()
        .sum();
    assert_eq!(total, 240_644, "the known event count of tc-many-threads");

    let hosts = relay.json("/api/hosts");
    let find = |h: &str| {
        hosts["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["host"] == h)
            .cloned()
            .unwrap_or_else(|| panic!("{h} missing from /api/hosts: {hosts}"))
    };
    assert_eq!(find("r1")["events"], 240_644);
    assert_eq!(find("r1")["events_applied"], 240_644);
    assert_eq!(find("r1")["source"], "replay");
    assert_eq!(find("r2")["events"], 12_305);

    // The live agent: the stored trace holds the events the kernel said
    // were read from its ring buffers (the state dump aside), per CPU.
    if let Some(a) = a3 {
        let log = a.log();
        let read =
            number_after(&log, "the kernel counted ").expect("the agent reports its read count");
        let dst = stored(&relay.data, "here");
        let counts = babeltrace_cpu_counts(&dst).unwrap();
        let statedump = count_statedump(&dst);
        let stored_events: u64 = counts.values().sum::<u64>() - statedump;
        assert!(read > 0);
        assert_eq!(stored_events, read, "per CPU {counts:?}, agent: {log}");
        assert_eq!(find("here")["events"], read);
        assert_eq!(find("here")["source"], "live");
        let threads = relay.json("/api/hosts/here/threads?limit=5");
        assert!(
            !threads["threads"].as_array().unwrap().is_empty(),
            "{threads}"
        );
        let sys = relay.json("/api/hosts/here/syscalls");
        assert!(
            sys["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["total_count"].as_u64() > Some(0)),
            "{sys}"
        );
        let cpus = relay.json("/api/hosts/here/cpus");
        assert!(!cpus["cpus"].as_array().unwrap().is_empty(), "{cpus}");
    }
}

/// State dump events in a trace (they are not ring-buffer events).
fn count_statedump(dir: &std::path::Path) -> u64 {
    let out = std::process::Command::new("babeltrace2")
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" lttng_statedump_"))
        .count() as u64
}
