//! The agent against the codec-built test relay over real TCP on loopback,
//! replaying a real LTTng trace: TLS with a certificate made here, a wrong
//! CA refused with a clear error, a wrong token refused, loops and
//! compression.

#[path = "../../../tests-support/shared_traces.rs"]
mod shared_traces;
use shared_traces::shared_trace;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use strata_agent::testkit::{TestRelay, TestRelayOptions};
use strata_agent::{AgentConfig, AgentError, ReplayOptions, Security, SourceConfig};
use strata_core::HostInfo;
use strata_wire::{Compression, RefuseCode};

/// Events in tc-many-threads, as babeltrace2 counts them.
const MANY_THREADS_EVENTS: u64 = 240_644;

fn trace() -> Option<PathBuf> {
    shared_trace("agent net tests", "tc-many-threads")
}

fn config(relay: &TestRelay, security: Security, token: &str) -> AgentConfig {
    let mut c = AgentConfig::new(
        &relay.addr,
        HostInfo {
            hostname: "sim".into(),
            cpu_count: 8,
            vm_uuid: None,
            ..HostInfo::default()
        },
    );
    c.security = security;
    c.token = token.into();
    c.host_id = "sim-1".into();
    c.quiet = true;
    c.max_backoff = Duration::from_millis(500);
    c
}

fn replay(trace: &Path, loops: u32, compression: Compression) -> SourceConfig {
    SourceConfig::Replay(ReplayOptions {
        trace: trace.to_path_buf(),
        rate: 0.0,
        loops,
        compression,
        ..ReplayOptions::default()
    })
}

fn run(c: AgentConfig, s: SourceConfig) -> Result<strata_agent::AgentReport, AgentError> {
    strata_agent::run(c, s, Arc::new(AtomicBool::new(false)))
}

struct Certs {
    dir: tempfile::TempDir,
    cert_pem: String,
    key_pem: String,
}

fn self_signed() -> Certs {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let c = Certs {
        cert_pem: ck.cert.pem(),
        key_pem: ck.key_pair.serialize_pem(),
        dir,
    };
    std::fs::write(c.dir.path().join("cert.pem"), &c.cert_pem).unwrap();
    c
}

fn tls(ca: &Path) -> Security {
    Security::Tls {
        ca: ca.to_path_buf(),
        client: None,
        server_name: Some("localhost".into()),
    }
}

#[test]
fn tls_replay_delivers_every_event_once() {
    let Some(trace) = trace() else { return };
    let certs = self_signed();
    let relay = TestRelay::start(
        "127.0.0.1:0",
        TestRelayOptions {
            tls: Some((
                certs.cert_pem.clone().into_bytes(),
                certs.key_pem.clone().into_bytes(),
            )),
            ..TestRelayOptions::default()
        },
    )
    .unwrap();
    let report = run(
        config(&relay, tls(&certs.dir.path().join("cert.pem")), ""),
        replay(&trace, 1, Compression::Lz4),
    )
    .expect("the agent streams over TLS");
    let r = relay.received();
    assert_eq!(r.packet_events, MANY_THREADS_EVENTS);
    assert_eq!(
        report.replay.as_ref().map(|r| r.events),
        Some(MANY_THREADS_EVENTS)
    );
    assert_eq!(r.seqs, (1..=r.seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(r.duplicates, 0);
    assert!(r.goodbye);
    assert_eq!(r.host_id, "sim-1");
    // The clock was moved so that the trace starts now.
    let tsdl = r.tsdl.expect("metadata sent");
    let class =
        strata_ctf::read::TraceClass::from_metadata(tsdl.as_bytes()).expect("shifted TSDL parses");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let first = class.metadata().clocks[0]
        .desc
        .to_unix_ns(r.first_packet_ts.expect("packets"));
    assert!(
        (now - 60_000_000_000..=now).contains(&first),
        "the trace starts at {first} ns, not shortly before now ({now} ns)"
    );
}

#[test]
fn a_wrong_ca_is_refused_with_a_clear_error() {
    let Some(trace) = trace() else { return };
    let certs = self_signed();
    let other = self_signed();
    let relay = TestRelay::start(
        "127.0.0.1:0",
        TestRelayOptions {
            tls: Some((certs.cert_pem.into_bytes(), certs.key_pem.into_bytes())),
            ..TestRelayOptions::default()
        },
    )
    .unwrap();
    let err = run(
        config(&relay, tls(&other.dir.path().join("cert.pem")), ""),
        replay(&trace, 1, Compression::None),
    )
    .expect_err("a certificate from another CA must be refused");
    let text = err.to_string();
    assert!(matches!(err, AgentError::Link(_)), "{text}");
    assert!(
        text.contains("TLS handshake") && text.contains("--ca"),
        "{text}"
    );
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert!(relay.received().seqs.is_empty());
}

#[test]
fn plaintext_against_a_tls_relay_fails_clearly() {
    let Some(trace) = trace() else { return };
    let certs = self_signed();
    let relay = TestRelay::start(
        "127.0.0.1:0",
        TestRelayOptions {
            tls: Some((certs.cert_pem.into_bytes(), certs.key_pem.into_bytes())),
            ..TestRelayOptions::default()
        },
    )
    .unwrap();
    let mut c = config(&relay, Security::Plaintext, "");
    c.final_ack_wait = Duration::from_secs(1);
    // A plaintext agent never gets a Welcome; it keeps retrying, and gives
    // up when its source is done and the final wait has passed.
    let report = run(c, replay(&trace, 1, Compression::None)).expect("no fatal error");
    assert_eq!(report.sender.sessions, 0);
    assert!(report.unacked_frames > 0);
    let why = report.sender.last_error.unwrap_or_default();
    assert!(why.contains("handshake") || why.contains("closed"), "{why}");
}

#[test]
fn a_wrong_token_is_refused() {
    let Some(trace) = trace() else { return };
    let relay = TestRelay::start(
        "127.0.0.1:0",
        TestRelayOptions {
            tokens: vec!["the-right-token".into()],
            ..TestRelayOptions::default()
        },
    )
    .unwrap();
    let err = run(
        config(&relay, Security::Plaintext, "a-wrong-token"),
        replay(&trace, 1, Compression::None),
    )
    .expect_err("a wrong token must be refused");
    assert!(
        matches!(&err, AgentError::Refused { code: RefuseCode::BadToken, message } if message.contains("wrong token")),
        "{err}"
    );
    assert!(relay.received().seqs.is_empty());
    // The right token works.
    run(
        config(&relay, Security::Plaintext, "the-right-token"),
        replay(&trace, 1, Compression::None),
    )
    .expect("accepted");
}

#[test]
fn loops_shift_time_and_repeat_every_event() {
    let Some(trace) = trace() else { return };
    let relay = TestRelay::start("127.0.0.1:0", TestRelayOptions::default()).unwrap();
    let report = run(
        config(&relay, Security::Plaintext, ""),
        replay(&trace, 3, Compression::Zstd),
    )
    .expect("replay");
    assert_eq!(relay.received().packet_events, 3 * MANY_THREADS_EVENTS);
    assert_eq!(report.replay.map(|r| r.loops), Some(3));
}

#[test]
fn every_shared_trace_replays_with_babeltraces_event_count() {
    let Some(many) = trace() else { return };
    let root = many.parent().expect("traces directory").to_path_buf();
    // Counts from babeltrace2 (PEERS.md): LTTng 2.x with rotated tracefiles,
    // and lttng-modules 2.1 traces without index files.
    for (dir, events) in [
        ("bt-lttng-tracefile-rotation/kernel", 12_305u64),
        ("tc-synctraces/scp_src", 110_771),
        ("tc-synctraces/scp_dest", 85_729),
    ] {
        let relay = TestRelay::start("127.0.0.1:0", TestRelayOptions::default()).unwrap();
        run(
            config(&relay, Security::Plaintext, ""),
            replay(&root.join(dir), 1, Compression::Lz4),
        )
        .unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(relay.received().packet_events, events, "{dir}");
    }
}

#[test]
fn pacing_holds_the_rate() {
    let Some(trace) = trace() else { return };
    let relay = TestRelay::start("127.0.0.1:0", TestRelayOptions::default()).unwrap();
    let start = std::time::Instant::now();
    let source = SourceConfig::Replay(ReplayOptions {
        trace: trace.clone(),
        rate: 400_000.0,
        ..ReplayOptions::default()
    });
    run(config(&relay, Security::Plaintext, ""), source).expect("replay");
    let secs = start.elapsed().as_secs_f64();
    // 240,644 events at 400 k/s take 0.6 s; packets go whole, so the last
    // one may leave a little early.
    assert!(
        secs > 0.45,
        "the replay took {secs:.2} s, faster than its rate"
    );
    assert_eq!(relay.received().packet_events, MANY_THREADS_EVENTS);
}

#[test]
fn mutual_tls_presents_the_client_certificate() {
    let Some(trace) = trace() else { return };
    let server = self_signed();
    let client = self_signed();
    std::fs::write(client.dir.path().join("key.pem"), &client.key_pem).unwrap();
    let opts = |ca: Option<Vec<u8>>| TestRelayOptions {
        tls: Some((
            server.cert_pem.clone().into_bytes(),
            server.key_pem.clone().into_bytes(),
        )),
        client_ca: ca,
        ..TestRelayOptions::default()
    };
    let relay = TestRelay::start(
        "127.0.0.1:0",
        opts(Some(client.cert_pem.clone().into_bytes())),
    )
    .unwrap();
    let with_cert = Security::Tls {
        ca: server.dir.path().join("cert.pem"),
        client: Some((
            client.dir.path().join("cert.pem"),
            client.dir.path().join("key.pem"),
        )),
        server_name: Some("localhost".into()),
    };
    run(
        config(&relay, with_cert, ""),
        replay(&trace, 1, Compression::None),
    )
    .expect("mutual TLS works");
    assert_eq!(relay.received().packet_events, MANY_THREADS_EVENTS);
    // Without a client certificate the relay refuses the connection; the
    // agent keeps retrying until its final wait is over.
    let strict = TestRelay::start(
        "127.0.0.1:0",
        opts(Some(client.cert_pem.clone().into_bytes())),
    )
    .unwrap();
    let mut c = config(&strict, tls(&server.dir.path().join("cert.pem")), "");
    c.final_ack_wait = Duration::from_secs(1);
    let report = run(c, replay(&trace, 1, Compression::None));
    match report {
        Ok(r) => assert_eq!(
            r.sender.sessions, 0,
            "a session without a client certificate"
        ),
        Err(e) => assert!(e.to_string().contains("TLS"), "{e}"),
    }
    assert!(strict.received().seqs.is_empty());
}

#[test]
fn a_silent_relay_is_dropped_after_three_heartbeats_and_reconnected() {
    let Some(trace) = trace() else { return };
    let relay = TestRelay::start(
        "127.0.0.1:0",
        TestRelayOptions {
            silent: true,
            heartbeat_ms: 200,
            ..TestRelayOptions::default()
        },
    )
    .unwrap();
    let mut c = config(&relay, Security::Plaintext, "");
    c.final_ack_wait = Duration::from_secs(2);
    let report = run(c, replay(&trace, 1, Compression::None)).expect("no fatal error");
    assert!(
        relay.connections() >= 2,
        "the agent did not give up on the silent relay"
    );
    let why = report.sender.last_error.unwrap_or_default();
    assert!(why.contains("sent nothing"), "{why}");
}

#[test]
fn an_unpaced_replay_waits_for_the_relay_instead_of_dropping() {
    let Some(trace) = trace() else { return };
    let relay = TestRelay::start("127.0.0.1:0", TestRelayOptions::default()).unwrap();
    let mut c = config(&relay, Security::Plaintext, "");
    // Memory for a few frames only: 12 loops of 2.7 MB each must wait.
    c.memory_max = 2 << 20;
    let report = run(c, replay(&trace, 12, Compression::None)).expect("replay");
    let r = relay.received();
    assert_eq!(r.packet_events, 12 * MANY_THREADS_EVENTS);
    assert!(r.lost.is_empty(), "{:?}", r.lost);
    assert_eq!(report.outbox.dropped_frames, 0);
}

#[test]
fn a_slow_relay_that_keeps_acking_gets_everything_despite_a_short_final_wait() {
    let Some(trace) = trace() else { return };
    // The relay handles one frame (about 0.7 MB here) per 0.4 s, and is
    // unreachable for the first second: the replay is all in memory before
    // the connection is up, and the relay then needs seconds more than the
    // 2 s final wait to take it, but it acks all along.
    let relay = TestRelay::start(
        "127.0.0.1:0",
        TestRelayOptions {
            frame_pause: Duration::from_millis(400),
            ..TestRelayOptions::default()
        },
    )
    .unwrap();
    relay.set_unreachable(true);
    let cut = Arc::clone(&relay.cut);
    let reopen = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        cut.store(false, std::sync::atomic::Ordering::SeqCst);
    });
    let mut c = config(&relay, Security::Plaintext, "");
    c.final_ack_wait = Duration::from_secs(2);
    c.max_backoff = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let report = run(c, replay(&trace, 1, Compression::None)).expect("the run succeeds");
    let took = started.elapsed();
    reopen.join().unwrap();
    assert_eq!(
        report.unacked,
        strata_agent::Unacked::default(),
        "after {took:?}"
    );
    assert_eq!(report.unacked_frames, 0);
    let got = relay
        .shared
        .lock()
        .unwrap()
        .instances
        .values()
        .map(|r| r.packet_events)
        .sum::<u64>();
    assert_eq!(got, MANY_THREADS_EVENTS);
    // The waiting was real: well past the source's end plus the final wait.
    assert!(took > Duration::from_secs(4), "took {took:?}");
}

#[test]
fn a_relay_that_never_acks_leaves_an_exact_unacked_count() {
    let Some(trace) = trace() else { return };
    let relay = TestRelay::start(
        "127.0.0.1:0",
        TestRelayOptions {
            no_acks: true,
            ..TestRelayOptions::default()
        },
    )
    .unwrap();
    let mut c = config(&relay, Security::Plaintext, "");
    c.final_ack_wait = Duration::from_millis(500);
    let report = run(c, replay(&trace, 1, Compression::None)).expect("no fatal error");
    let u = report.unacked;
    assert_eq!(u.events, MANY_THREADS_EVENTS);
    assert_eq!(u.frames, report.outbox.frames);
    assert_eq!(u.bytes, report.outbox.bytes);
    let received = relay.received();
    assert_eq!(u.pages, received.packets);
    assert_eq!(report.unacked_frames, u.frames);
}
