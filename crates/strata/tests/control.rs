//! Control end to end on the real kernel: a flight-mode agent's snapshot
//! taken with `strata ctl snapshot` holds a 50 ms sleep's syscall entry and
//! exit; `strata ctl events --enable syscalls --for 2s` turns syscalls on
//! for two seconds; `ctl` without a token is refused.

mod common;
mod relay_support;

use relay_support::{http_post, Agent, Relay, Setup, STRATA};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A relay whose control API needs a token, and that token's file.
fn relay_with_api_token() -> (Setup, PathBuf, Relay) {
    let s = Setup::new();
    let token = s.dir.path().join("api-token");
    std::fs::write(&token, "# ctl token\napi-secret-42\n").unwrap();
    let relay = Relay::start(&s, &["--api-token-file", token.to_str().unwrap()]);
    (s, token, relay)
}

fn ctl(relay: &Relay, token: Option<&Path>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(STRATA);
    cmd.arg("ctl")
        .arg("--relay")
        .arg(format!("http://{}", relay.http));
    if let Some(t) = token {
        cmd.arg("--token-file").arg(t);
    }
    let out = cmd.args(args).output().expect("strata ctl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_connected(relay: &Relay, host: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let doc = relay.json("/api/hosts");
        let up = doc["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|h| h["host"] == host && h["state"] == "connected" && h["trace_dir"] != "");
        if up {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "host {host} never connected: {doc}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops an agent with SIGTERM so it flushes and says goodbye.
fn stop_agent(agent: &mut Agent) {
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGTERM) };
    agent.wait(Duration::from_secs(30));
}

#[test]
fn ctl_without_token_is_refused() {
    let (_s, token, relay) = relay_with_api_token();
    let (ok, _, err) = ctl(&relay, None, &["hosts"]);
    assert!(!ok);
    assert!(err.contains("--token-file"), "{err}");
    // The API itself refuses control requests without or with a bad token.
    let body = r#"{"hosts":[],"before_ms":1000}"#;
    let (code, text) = http_post(relay.http, "/api/control/snapshot", None, body);
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("Authorization"), "{text}");
    let (code, text) = http_post(relay.http, "/api/control/snapshot", Some("nope"), body);
    assert_eq!(code, 401, "{text}");
    // With the token the request gets through (and fails for a good reason).
    let (code, text) = http_post(
        relay.http,
        "/api/control/snapshot",
        Some("api-secret-42"),
        body,
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("no agent is connected"), "{text}");
    // Without --rules, the rules endpoints say how to load some.
    let (ok, _, err) = ctl(&relay, Some(&token), &["rules", "list"]);
    assert!(!ok);
    assert!(err.contains("start the relay with --rules"), "{err}");
}

#[test]
fn flight_snapshot_holds_a_50ms_sleep() {
    if !common::skip_unless_root_with_tracefs() || !common::have_babeltrace() {
        return;
    }
    let (s, token, relay) = relay_with_api_token();
    let mut agent = Agent::start(
        relay.ingest,
        &s,
        &[
            "--insecure",
            "--mode",
            "flight",
            "--keep",
            "20s",
            "--host-id",
            "flight1",
            "--events",
            "syscalls,sched",
            // No light live feed: nothing but snapshots leaves this agent.
            "--live-events",
            "none",
            "--buffer-size",
            "4M",
        ],
    );
    // A second host in flight mode, on a cycle clock: one snapshot id and
    // one instant cover both, each window taken in its own clock.
    let mut agent2 = Agent::start(
        relay.ingest,
        &s,
        &[
            "--insecure",
            "--mode",
            "flight",
            "--keep",
            "5s",
            "--host-id",
            "flight2",
            "--events",
            "sched",
            "--buffer-size",
            "1M",
            "--clock",
            "x86-tsc",
        ],
    );
    wait_connected(&relay, "flight1");
    wait_connected(&relay, "flight2");
    std::thread::sleep(Duration::from_millis(300));
    // One process that sleeps 50 ms inside clock_nanosleep.
    let sleeper = Command::new("sleep")
        .arg("0.05")
        .spawn()
        .expect("sleep runs");
    let tid = sleeper.id() as i64;
    let out = sleeper.wait_with_output().unwrap();
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(200));
    let (ok, hosts, err) = ctl(&relay, Some(&token), &["hosts"]);
    assert!(
        ok && hosts.contains("flight1") && hosts.contains("flight2"),
        "{hosts}{err}"
    );
    let asked_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let (ok, stdout, err) = ctl(
        &relay,
        Some(&token),
        &[
            "--json",
            "snapshot",
            "--host",
            "flight1,flight2",
            "--before",
            "5s",
            "--after",
            "500ms",
        ],
    );
    assert!(ok, "ctl snapshot failed: {err}\nagent: {}", agent.log());
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("snapshot JSON");
    let parts = report["hosts"].as_array().expect("hosts");
    assert_eq!(parts.len(), 2, "{stdout}");
    let paths: Vec<PathBuf> = parts
        .iter()
        .map(|h| PathBuf::from(h["path"].as_str().unwrap_or_else(|| panic!("{h}"))))
        .collect();
    // One instant for both hosts, taken by the relay when asked (neither
    // is a VM: no guest clock converts it).
    let at = parts[0]["at_ns"].as_i64().expect("at_ns");
    assert_eq!(parts[1]["at_ns"].as_i64(), Some(at), "{stdout}");
    assert!(
        (asked_ns..asked_ns + 5_000_000_000).contains(&at),
        "the snapshot's instant is {} ms after ctl ran",
        (at - asked_ns) / 1_000_000
    );
    assert_eq!(
        paths[0].parent().and_then(Path::parent),
        paths[1].parent().and_then(Path::parent),
        "one snapshot id for both hosts"
    );
    // The host's live view stays its live session's, not the snapshot's
    // (history, connected later).
    let cpus = relay.json("/api/hosts/flight2/cpus");
    assert!(
        !cpus["session"]
            .as_str()
            .unwrap_or("snap-")
            .starts_with("snap-"),
        "the live view shows {}",
        cpus["session"]
    );
    let (ok, sessions, err) = ctl(&relay, Some(&token), &["sessions"]);
    assert!(ok, "{err}");
    assert!(
        sessions
            .lines()
            .any(|l| l.starts_with("snap-") && l.ends_with("(snapshot)")),
        "{sessions}"
    );
    let other = common::babeltrace_events(&paths[1]);
    assert!(
        other.iter().any(|e| e.name == "sched_switch"),
        "flight2's part holds no sched_switch"
    );
    // flight2's window, cut in TSC cycles from the same instant, covers
    // it on both sides like flight1's (an instant or a window taken in the
    // wrong unit would miss it by a factor of the TSC's GHz).
    let times2: Vec<i64> = timed_events(&paths[1])
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let (first2, last2) = (
        *times2.iter().min().expect("events"),
        *times2.iter().max().expect("events"),
    );
    assert!(
        first2 < at - 400_000_000 && last2 > at + 300_000_000 && last2 < at + 3_000_000_000,
        "flight2 (x86-tsc) holds {} ms before the instant to {} ms after",
        (at - first2) / 1_000_000,
        (last2 - at) / 1_000_000
    );
    let path = paths[0].clone();
    // The window reaches back before the request and on past it by
    // --after: pages produced while the agent waited are in.
    let times: Vec<i64> = timed_events(&path).into_iter().map(|(t, _)| t).collect();
    let (first, last) = (
        *times.iter().min().expect("events"),
        *times.iter().max().expect("events"),
    );
    assert!(
        first < at - 400_000_000,
        "history starts {} ms before the instant",
        (at - first) / 1_000_000
    );
    assert!(
        last > at + 300_000_000,
        "the snapshot ends {} ms after the instant, not about 500",
        (last - at) / 1_000_000
    );
    assert!(
        path.starts_with(relay.data.join("snapshots")) && path.ends_with("flight1/kernel"),
        "{}",
        path.display()
    );
    // Nothing but the snapshot went out: the main trace holds no events.
    let main = relay_support::stored(&relay.data, "flight1");
    let main_events = common::try_babeltrace_events(&main).unwrap_or_default();
    assert!(
        main_events.is_empty(),
        "{} events shipped outside the snapshot",
        main_events.len()
    );

    let events = common::babeltrace_events(&path);
    let of_tid: Vec<_> = events
        .iter()
        .filter(|e| e.ctx("tid") == Some(tid) && e.name.contains("nanosleep"))
        .collect();
    assert!(
        of_tid.iter().any(|e| e.name.starts_with("syscall_entry")),
        "no nanosleep entry for tid {tid} in {} events",
        events.len()
    );
    assert!(
        of_tid.iter().any(|e| e.name.starts_with("syscall_exit")),
        "no nanosleep exit for tid {tid}"
    );
    let out = Command::new(STRATA)
        .args(["analyze", "syscalls"])
        .arg(&path)
        .args(["--json", "--tid", &tid.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let doc: serde_json::Value = serde_json::from_str(&text).expect("analyze JSON");
    let max_ns = find_nanosleep_max(&doc)
        .unwrap_or_else(|| panic!("no nanosleep in the syscalls report: {text}"));
    assert!(
        (45_000_000..2_000_000_000).contains(&max_ns),
        "the longest nanosleep took {max_ns} ns: {text}"
    );
    stop_agent(&mut agent);
    stop_agent(&mut agent2);
}

/// The longest duration, ns, of a `*nanosleep` row of an analyze document.
fn find_nanosleep_max(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Object(m) => {
            let named = m
                .values()
                .any(|x| x.as_str().is_some_and(|s| s.contains("nanosleep")));
            if named {
                for (k, x) in m {
                    if k.starts_with("max") {
                        if let Some(n) = x.as_i64() {
                            return Some(if k.ends_with("_ms") { n * 1_000_000 } else { n });
                        }
                        if let Some(f) = x.as_f64() {
                            let ns = if k.ends_with("_ms") {
                                f * 1e6
                            } else if k.ends_with("_us") {
                                f * 1e3
                            } else {
                                f
                            };
                            return Some(ns as i64);
                        }
                    }
                }
            }
            m.values().find_map(find_nanosleep_max)
        }
        serde_json::Value::Array(a) => a.iter().find_map(find_nanosleep_max),
        _ => None,
    }
}

/// A flight agent stopped while a snapshot waits for its window to close
/// sends what it holds instead of leaving the relay without an answer.
#[test]
fn a_stopping_agent_sends_its_waiting_snapshot() {
    if !common::skip_unless_root_with_tracefs() || !common::have_babeltrace() {
        return;
    }
    let (s, token, relay) = relay_with_api_token();
    let mut agent = Agent::start(
        relay.ingest,
        &s,
        &[
            "--insecure",
            "--mode",
            "flight",
            "--keep",
            "5s",
            "--host-id",
            "stopping1",
            "--events",
            "sched",
            "--buffer-size",
            "1M",
        ],
    );
    wait_connected(&relay, "stopping1");
    std::thread::sleep(Duration::from_millis(500));
    let ctl_snapshot = Command::new(STRATA)
        .args(["ctl", "--relay", &format!("http://{}", relay.http)])
        .arg("--token-file")
        .arg(&token)
        .args(["--json", "snapshot", "--host", "stopping1"])
        .args(["--before", "2s", "--after", "40s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("strata ctl runs");
    // Long before its window closes, the agent is told to stop.
    std::thread::sleep(Duration::from_millis(1500));
    let stopped = Instant::now();
    stop_agent(&mut agent);
    let out = ctl_snapshot.wait_with_output().expect("strata ctl ends");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "ctl snapshot failed: {stderr}\nagent: {}",
        agent.log()
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "the answer came {:?} after the agent stopped",
        stopped.elapsed()
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("snapshot JSON");
    let part = &report["hosts"][0];
    assert_eq!(part["ok"], true, "{stdout}");
    let path = PathBuf::from(part["path"].as_str().expect("path"));
    let events = common::babeltrace_events(&path);
    assert!(
        events.iter().any(|e| e.name == "sched_switch"),
        "the snapshot holds no sched_switch ({} events)",
        events.len()
    );
}

#[test]
fn events_enabled_for_two_seconds_then_revert() {
    if !common::skip_unless_root_with_tracefs() || !common::have_babeltrace() {
        return;
    }
    let (s, token, relay) = relay_with_api_token();
    let mut agent = Agent::start(
        relay.ingest,
        &s,
        &[
            "--insecure",
            "--host-id",
            "ev1",
            "--events",
            "sched",
            "--buffer-size",
            "2M",
            "--no-statedump",
        ],
    );
    wait_connected(&relay, "ev1");
    let (ok, stdout, err) = ctl(
        &relay,
        Some(&token),
        &[
            "events", "--host", "ev1", "--enable", "syscalls", "--for", "2s",
        ],
    );
    assert!(ok, "ctl events failed: {err}");
    assert!(stdout.contains("reverts in"), "{stdout}");
    let (ok, _, err) = ctl(
        &relay,
        Some(&token),
        &["events", "--host", "nosuch", "--enable", "syscalls"],
    );
    assert!(!ok && err.contains("no agent connected"), "{err}");
    // Keep the host busy with syscalls and switches for 4.5 s.
    let until = Instant::now() + Duration::from_millis(4500);
    while Instant::now() < until {
        let _ = std::fs::metadata("/proc/self");
        std::thread::sleep(Duration::from_millis(2));
    }
    stop_agent(&mut agent);
    // The change started a new trace directory (new metadata).
    let host_dir = relay.data.join("strata").join("ev1");
    let mut syscall_ts = Vec::new();
    let mut last_ts = 0i64;
    for entry in std::fs::read_dir(&host_dir).unwrap().flatten() {
        let p = entry.path();
        if !p.join("metadata").is_file() {
            continue;
        }
        for (t, name) in timed_events(&p) {
            last_ts = last_ts.max(t);
            if name.starts_with("syscall_") {
                syscall_ts.push(t);
            }
        }
    }
    assert!(!syscall_ts.is_empty(), "no syscall event stored");
    let first = *syscall_ts.iter().min().unwrap();
    let last = *syscall_ts.iter().max().unwrap();
    let span = (last - first) as f64 / 1e9;
    assert!(
        (1.5..3.5).contains(&span),
        "syscalls were traced for {span:.2} s, not about 2 s"
    );
    assert!(
        last_ts - last > 1_000_000_000,
        "the trace should go on without syscalls after the revert ({} ns)",
        last_ts - last
    );
}

/// Every event's time (ns) and name, as `babeltrace2 --clock-seconds`
/// prints them.
fn timed_events(dir: &Path) -> Vec<(i64, String)> {
    let out = Command::new("babeltrace2")
        .arg("--clock-seconds")
        .arg(dir)
        .output()
        .expect("babeltrace2 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (ts, rest) = l.strip_prefix('[')?.split_once(']')?;
            let (s, frac) = ts.split_once('.')?;
            let ns = s.parse::<i64>().ok()? * 1_000_000_000
                + format!("{frac:0<9}")[..9].parse::<i64>().ok()?;
            let head = rest.split_once(": ")?.0;
            Some((ns, head.rsplit(' ').next()?.to_string()))
        })
        .collect()
}

#[test]
fn events_disabled_for_two_seconds_then_back() {
    if !common::skip_unless_root_with_tracefs() || !common::have_babeltrace() {
        return;
    }
    let (s, token, relay) = relay_with_api_token();
    let mut agent = Agent::start(
        relay.ingest,
        &s,
        &[
            "--insecure",
            "--host-id",
            "ev2",
            "--events",
            "sched,syscalls",
            "--buffer-size",
            "2M",
            "--no-statedump",
        ],
    );
    wait_connected(&relay, "ev2");
    let busy_until = |d: Duration| {
        let until = Instant::now() + d;
        while Instant::now() < until {
            let _ = std::fs::metadata("/proc/self");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    busy_until(Duration::from_millis(800));
    let (ok, _, err) = ctl(
        &relay,
        Some(&token),
        &[
            "events",
            "--host",
            "ev2",
            "--disable",
            "syscalls",
            "--for",
            "2s",
        ],
    );
    assert!(ok, "ctl events --disable failed: {err}");
    busy_until(Duration::from_millis(3500));
    stop_agent(&mut agent);
    let mut syscall_ts = Vec::new();
    for entry in std::fs::read_dir(relay.data.join("strata").join("ev2"))
        .unwrap()
        .flatten()
    {
        if entry.path().join("metadata").is_file() {
            syscall_ts.extend(
                timed_events(&entry.path())
                    .into_iter()
                    .filter(|(_, n)| n.starts_with("syscall_"))
                    .map(|(t, _)| t),
            );
        }
    }
    syscall_ts.sort_unstable();
    let gap = syscall_ts
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(0) as f64
        / 1e9;
    assert!(
        (1.5..3.5).contains(&gap),
        "the longest stretch without syscalls is {gap:.2} s, not about 2 s ({} syscall events)",
        syscall_ts.len()
    );
}
