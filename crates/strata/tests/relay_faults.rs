//! Faults against a real relay on loopback: a relay killed mid-stream and
//! restarted, a connection cut under an agent, and clients that break the
//! rules (garbage, a wrong token, an oversized frame, slow-loris, path
//! names) while a good agent keeps streaming. Every stored trace must equal
//! its source, with nothing lost or duplicated.

mod relay_support;

use relay_support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_wire::{Message, RefuseCode, Source};

/// Asserts that the stored trace of `host` is the source trace, stream
/// file by stream file, and that babeltrace2 reads it.
fn assert_same_trace(data: &Path, host: &str, src: &Path) {
    let dst = stored(data, host);
    let want = stream_files(src);
    let got = stream_files(&dst);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{host}"
    );
    for (name, bytes) in &want {
        let g = &got[name];
        assert_eq!(
            g.len(),
            bytes.len(),
            "{host}: {name} length (lost or duplicated packets)"
        );
        assert!(g == bytes, "{host}: {name} differs from the source");
    }
    if have_babeltrace() {
        let n: u64 = babeltrace_cpu_counts(&dst).unwrap().values().sum();
        let m: u64 = babeltrace_cpu_counts(src).unwrap().values().sum();
        assert_eq!(n, m, "{host}: babeltrace2 event count");
    }
}

fn events_stored(relay: &Relay, host: &str) -> u64 {
    let (code, body) = relay.get("/api/hosts");
    if code != 200 {
        return 0;
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["hosts"]
        .as_array()
        .and_then(|a| a.iter().find(|h| h["host"] == host))
        .and_then(|h| h["events"].as_u64())
        .unwrap_or(0)
}

#[test]
fn relay_killed_mid_stream_resumes_without_loss_or_duplicates() {
    let Some(src) = shared_trace("tc-many-threads") else {
        return;
    };
    let s = Setup::new();
    let mut relay = Relay::start(&s, &[]);
    let (ingest, http, live) = (relay.ingest, relay.http, relay.live.unwrap());
    let mut agent = Agent::replay(ingest, &s, &src, "r1", 60_000, &[]);
    let t0 = Instant::now();
    while events_stored(&relay, "r1") < 50_000 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no data stored: {}",
            relay.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    relay.kill();
    std::thread::sleep(Duration::from_millis(800));
    let relay = Relay::start_on(
        &s,
        &ingest.to_string(),
        &http.to_string(),
        &live.to_string(),
        &[],
    );
    assert!(agent.wait(Duration::from_secs(120)), "{}", agent.log());
    let log = relay.log();
    let after: u64 = log
        .split("resuming after ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .expect("the restarted relay logs its resume point");
    assert!(
        after > 0,
        "the restarted relay resumed from its checkpoint: {log}"
    );
    assert_same_trace(&relay.data, "r1", &src);
    assert!(events_stored(&relay, "r1") > 0);
}

/// A TCP proxy that can cut its connections and refuse new ones for a while.
struct Proxy {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(to: SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (d, c) = (Arc::clone(&down), Arc::clone(&conns));
        std::thread::spawn(move || {
            for a in l.incoming() {
                let Ok(a) = a else { continue };
                if d.load(Ordering::SeqCst) {
                    drop(a);
                    continue;
                }
                let Ok(b) = TcpStream::connect(to) else {
                    continue;
                };
                c.lock()
                    .unwrap()
                    .extend([a.try_clone().unwrap(), b.try_clone().unwrap()]);
                for (mut x, mut y) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 65536];
                        while let Ok(n) = x.read(&mut buf) {
                            if n == 0 || y.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = y.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { addr, down, conns }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

#[test]
fn cut_connection_makes_the_agent_spool_and_replay() {
    let Some(src) = shared_trace("tc-many-threads") else {
        return;
    };
    let s = Setup::new();
    let relay = Relay::start(&s, &[]);
    let proxy = Proxy::start(relay.ingest);
    let spool = s.dir.path().join("spool");
    let spool_arg = spool.display().to_string();
    let mut agent = Agent::replay(
        proxy.addr,
        &s,
        &src,
        "cut1",
        60_000,
        &["--spool-dir", &spool_arg, "--memory-max", "64K"],
    );
    let t0 = Instant::now();
    while events_stored(&relay, "cut1") < 30_000 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no data stored: {}",
            relay.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy.cut();
    let before = events_stored(&relay, "cut1");
    std::thread::sleep(Duration::from_millis(1500));
    // While cut, the agent keeps reading its trace into the spool.
    let spooled: u64 = std::fs::read_dir(&spool)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    assert!(
        spooled > 0,
        "the agent spooled nothing while cut off: {}",
        agent.log()
    );
    assert_eq!(
        events_stored(&relay, "cut1"),
        before,
        "nothing arrives while cut"
    );
    proxy.restore();
    assert!(agent.wait(Duration::from_secs(120)), "{}", agent.log());
    assert!(relay.wait_log("connection ended (goodbye)", Duration::from_secs(10)));
    let hosts = relay.json("/api/hosts");
    let h = &hosts["hosts"][0];
    assert!(h["connections"].as_u64().unwrap() >= 2, "{h}");
    assert_same_trace(&relay.data, "cut1", &src);
}

fn refused(c: &mut RawClient) -> Option<(RefuseCode, String)> {
    match c.recv()? {
        Message::Refused(r) => Some((r.code, r.message)),
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[test]
fn bad_clients_are_dropped_with_a_reason_while_a_good_agent_streams() {
    let Some(src) = shared_trace("tc-many-threads") else {
        return;
    };
    let s = Setup::new();
    let relay = Relay::start(&s, &["--frame-timeout", "2s", "--max-frame", "1M"]);
    let mut good = Agent::replay(relay.ingest, &s, &src, "good", 60_000, &[]);

    // Garbage that is not our protocol (an HTTP request).
    let mut c = RawClient::connect(relay.ingest);
    c.sock
        .write_all(b"GET / HTTP/1.1\r\nHost: relay\r\nUser-Agent: curl\r\n\r\n")
        .unwrap();
    assert!(
        c.closed_within(Duration::from_secs(10)),
        "garbage was not dropped"
    );

    // A wrong token.
    let mut c = RawClient::connect(relay.ingest);
    c.send(
        &Message::Hello(hello("web1", "strata", "tok-wrong", Source::Live)),
        0,
    );
    let (code, msg) = refused(&mut c).expect("a Refused for a wrong token");
    assert_eq!(code, RefuseCode::BadToken, "{msg}");
    assert!(c.closed_within(Duration::from_secs(10)));
    // A token valid for another host only.
    let mut c = RawClient::connect(relay.ingest);
    c.send(
        &Message::Hello(hello("web2", "strata", "web1-secret", Source::Live)),
        0,
    );
    assert_eq!(refused(&mut c).unwrap().0, RefuseCode::BadToken);

    // Names that would escape the data directory, or are not names.
    for (host, session) in [
        ("../../etc", "strata"),
        ("h", "/abs"),
        ("/abs", "strata"),
        ("h", ".."),
        ("", "s"),
        ("a\0b", "s"),
    ] {
        let mut c = RawClient::connect(relay.ingest);
        c.send(
            &Message::Hello(hello(host, session, "tok", Source::Live)),
            0,
        );
        let (code, msg) =
            refused(&mut c).unwrap_or_else(|| panic!("{host:?}/{session:?} was not refused"));
        assert_eq!(code, RefuseCode::BadName, "{host:?}/{session:?}: {msg}");
    }
    let outside: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !s.dir.path().join("etc").exists() && !Path::new("/abs").exists(),
        "{outside:?}"
    );

    // An oversized frame: a header declaring a 100 MiB body.
    let mut c = RawClient::connect(relay.ingest);
    let mut frame = Message::Hello(hello("big", "strata", "tok", Source::Live))
        .encode(0, strata_wire::Compression::None)
        .unwrap();
    frame[8..12].copy_from_slice(&(100u32 << 20).to_le_bytes());
    frame[12..16].copy_from_slice(&(100u32 << 20).to_le_bytes());
    c.sock.write_all(&frame[..32]).unwrap();
    assert!(
        c.closed_within(Duration::from_secs(10)),
        "an oversized frame was not dropped"
    );

    // Slow-loris after the handshake: a frame trickling in a byte at a time.
    let mut c = RawClient::connect(relay.ingest);
    c.send(
        &Message::Hello(hello("slow1", "strata", "tok", Source::Replay)),
        0,
    );
    assert!(matches!(c.recv(), Some(Message::Welcome(_))));
    let hb = Message::Heartbeat(strata_wire::Heartbeat {
        unix_ns: 1,
        last_seq: 0,
    })
    .encode(0, strata_wire::Compression::None)
    .unwrap();
    let t0 = Instant::now();
    let mut dropped = false;
    for b in &hb[..hb.len() - 1] {
        if c.sock.write_all(std::slice::from_ref(b)).is_err() {
            dropped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(400));
        if t0.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    assert!(
        dropped || c.closed_within(Duration::from_secs(5)),
        "a slow-loris client was not dropped"
    );
    // Slow-loris before the handshake: nothing whole within the deadline.
    let mut c = RawClient::connect(relay.ingest);
    c.sock.write_all(b"STR").unwrap();
    assert!(
        c.closed_within(Duration::from_secs(10)),
        "a silent client was not dropped"
    );

    assert!(good.wait(Duration::from_secs(120)), "{}", good.log());
    for label in [
        "(malformed)",
        "(bad_token)",
        "(bad_name)",
        "(oversized)",
        "(slow)",
        "(handshake_timeout)",
    ] {
        // The line follows the close by a moment.
        assert!(
            relay.wait_log(label, Duration::from_secs(5)),
            "no {label} drop logged: {}",
            relay.log()
        );
    }
    let log = relay.log();
    assert!(
        log.contains("../../etc"),
        "the refused name is logged: {log}"
    );
    let (_, metrics) = relay.get("/metrics");
    for reason in [
        "malformed",
        "bad_token",
        "bad_name",
        "oversized",
        "slow",
        "handshake_timeout",
        "goodbye",
    ] {
        assert!(
            metrics.contains(&format!(
                "strata_relay_connections_ended_total{{reason=\"{reason}\"}}"
            )),
            "{reason} not counted: {metrics}"
        );
    }
    assert_same_trace(&relay.data, "good", &src);
}
