//! `strata agent --replay` from the command line: several simulated hosts
//! stream a recorded LTTng trace to one relay, and bad settings fail with
//! clear messages.

#[path = "../../../tests-support/shared_traces.rs"]
mod shared_traces;
use shared_traces::shared_trace;
use std::path::PathBuf;
use std::process::Command;
use strata_agent::testkit::{TestRelay, TestRelayOptions};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn trace() -> Option<PathBuf> {
    shared_trace("agent replay tests", "tc-many-threads")
}

#[test]
fn three_simulated_hosts_stream_to_one_relay() {
    let Some(trace) = trace() else { return };
    let relay = TestRelay::start(
        "127.0.0.1:0",
        TestRelayOptions {
            tokens: vec!["t0k3n".into()],
            ..TestRelayOptions::default()
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0k3n\n").unwrap();
    let agents: Vec<_> = (0..3)
        .map(|i| {
            Command::new(STRATA)
                .args([
                    "agent",
                    "--relay",
                    &relay.addr,
                    "--insecure",
                    "--rate",
                    "0",
                    "--quiet",
                ])
                .args(["--host-id", &format!("sim-{i}"), "--token-file"])
                .arg(&token)
                .arg("--replay")
                .arg(&trace)
                .spawn()
                .expect("agent starts")
        })
        .collect();
    for mut a in agents {
        assert!(a.wait().unwrap().success());
    }
    let g = relay.shared.lock().unwrap();
    let mut hosts: Vec<_> = g
        .instances
        .values()
        .map(|r| (r.host_id.clone(), r.packet_events))
        .collect();
    hosts.sort();
    assert_eq!(
        hosts,
        (0..3)
            .map(|i| (format!("sim-{i}"), 240_644))
            .collect::<Vec<_>>()
    );
}

#[test]
fn bad_settings_fail_with_clear_messages() {
    let Some(trace) = trace() else { return };
    let relay = TestRelay::start(
        "127.0.0.1:0",
        TestRelayOptions {
            tokens: vec!["right".into()],
            ..TestRelayOptions::default()
        },
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(STRATA)
            .args(["agent", "--relay", &relay.addr, "--replay"])
            .arg(&trace)
            .args(args)
            .output()
            .expect("strata runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&[]);
    assert!(
        !ok && err.contains("--ca") && err.contains("--insecure"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "wrong").unwrap();
    let (ok, err) = run(&["--insecure", "--token-file", token.to_str().unwrap()]);
    assert!(
        !ok && err.contains("refused") && err.contains("wrong token"),
        "{err}"
    );
    let (ok, err) = run(&["--insecure", "--token-file", "/nonexistent/token"]);
    assert!(!ok && err.contains("/nonexistent/token"), "{err}");
    let (ok, err) = run(&["--insecure", "--compress", "brotli"]);
    assert!(!ok && err.contains("brotli"), "{err}");
    let out = Command::new(STRATA)
        .args([
            "agent",
            "--relay",
            &relay.addr,
            "--insecure",
            "--replay",
            "/nonexistent/trace",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot replay /nonexistent/trace"),
        "{err}"
    );
}
