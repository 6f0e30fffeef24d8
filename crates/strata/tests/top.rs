//! `strata top` against a real relay fed by a replay agent: one screen as
//! text, and the interactive viewer driven by keys in a real terminal (tmux).

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");
const TRACE: &str = "/work/shared/traces/tc-many-threads";

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Kills its child on drop, so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A relay with one replay agent streaming tc-many-threads as host
/// `replay1`; returns the processes and the relay's HTTP address.
fn relay_with_replay_agent(dir: &Path) -> (Running, Running, String) {
    let (agents, http) = (free_port(), free_port());
    std::fs::write(dir.join("tokens"), "replay1 secret\n").unwrap();
    std::fs::write(dir.join("token"), "secret\n").unwrap();
    let relay = Running(
        Command::new(STRATA)
            .args(["relay", "--insecure", "--no-live"])
            .args(["--listen", &format!("127.0.0.1:{agents}")])
            .args(["--http", &format!("127.0.0.1:{http}")])
            .arg("--data")
            .arg(dir.join("data"))
            .arg("--token-file")
            .arg(dir.join("tokens"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("strata relay runs"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let agent = Running(
        Command::new(STRATA)
            .args(["agent", "--insecure", "--host-id", "replay1"])
            .args(["--relay", &format!("127.0.0.1:{agents}")])
            .arg("--token-file")
            .arg(dir.join("token"))
            .args(["--replay", TRACE, "--rate", "200000", "--loop", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("strata agent runs"),
    );
    (relay, agent, format!("127.0.0.1:{http}"))
}

/// `strata top --once` output once it shows `needle`, or the last output.
fn screen_showing(http: &str, extra: &[&str], needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(STRATA)
            .args(["top", "--once", "--relay", http])
            .args(extra)
            .output()
            .expect("strata top runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn one_screen_shows_hosts_threads_and_syscalls() {
    if !Path::new(TRACE).is_dir() {
        println!("SKIP: {TRACE} is not here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_relay, _agent, http) = relay_with_replay_agent(dir.path());

    let cpu = screen_showing(&http, &["--size", "130x40"], "lttng-sessiond");
    assert!(cpu.contains("replay1"), "{cpu}");
    assert!(cpu.contains("Threads (by CPU)"), "{cpu}");
    assert!(
        cpu.contains("lttng-sessiond"),
        "a thread of the trace shows: {cpu}"
    );

    let sys = screen_showing(
        &http,
        &["--view", "syscalls", "--host", "replay1"],
        "Calls/s",
    );
    assert!(sys.contains("Syscalls"), "{sys}");
    let health = screen_showing(&http, &["--view", "health"], "connected");
    assert!(
        health.contains("replay1") && health.contains("connected"),
        "{health}"
    );
}

#[test]
fn an_unreachable_relay_is_a_clear_error() {
    let out = Command::new(STRATA)
        .args([
            "top",
            "--once",
            "--relay",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the relay"), "{err}");
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn keys_drive_the_interactive_view_in_a_real_terminal() {
    if Command::new("tmux").arg("-V").output().is_err() {
        println!("SKIP: tmux is not installed (apt-get install tmux)");
        return;
    }
    if !Path::new(TRACE).is_dir() {
        println!("SKIP: {TRACE} is not here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_relay, _agent, http) = relay_with_replay_agent(dir.path());
    let session = format!("strata-top-test-{}", std::process::id());
    let socket = dir.path().join("tmux.sock");
    let sock = socket.to_str().unwrap();
    let cmd = format!("{STRATA} top --relay {http} --interval 500ms");
    let started = Command::new("tmux")
        .args([
            "-S",
            sock,
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "120",
            "-y",
            "40",
            &cmd,
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(started, "tmux starts strata top");
    let t = |args: &[&str]| {
        let mut all = vec!["-S", sock];
        all.extend_from_slice(args);
        tmux(&all)
    };
    let capture = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = t(&["capture-pane", "-p", "-t", &session]);
            if text.contains(needle) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let first = capture("lttng-sessiond");
    assert!(first.contains("Threads (by CPU)"), "{first}");
    t(&["send-keys", "-t", &session, "Tab"]);
    let sys = capture("Calls/s");
    assert!(
        sys.contains("Syscalls"),
        "Tab shows the syscalls view: {sys}"
    );
    t(&["send-keys", "-t", &session, "s"]);
    let sorted = capture("by p99 latency");
    assert!(
        sorted.contains("by p99 latency"),
        "s changes the order: {sorted}"
    );
    t(&["send-keys", "-t", &session, "3"]);
    let health = capture("live latency");
    assert!(health.contains("replay1"), "{health}");
    t(&["send-keys", "-t", &session, "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while t(&["list-sessions"]).contains(&session) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = t(&["list-sessions"]).contains(&session);
    let _ = t(&["kill-server"]);
    assert!(!left, "q quits strata top");
}

#[test]
fn without_a_relay_it_watches_this_host_through_its_own_agent_and_relay() {
    if !common::skip_unless_root_with_tracefs() {
        return;
    }
    let child = Command::new(STRATA)
        .args(["top", "--once", "--size", "120x30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata top runs");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(text.contains("embedded"), "{text}");
    assert!(
        text.contains(host.trim()),
        "the host's own name shows: {text}"
    );
    assert!(text.contains("CPUs — total"), "{text}");
    let scratch = std::env::temp_dir().join(format!("strata-top-{pid}"));
    assert!(
        !scratch.exists(),
        "scratch directory {} removed",
        scratch.display()
    );
    let left = std::fs::read_dir("/sys/kernel/tracing/instances")
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("strata-{pid}-"))
        });
    assert!(!left, "the embedded agent removed its tracefs instance");
}
