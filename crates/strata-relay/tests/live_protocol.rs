//! The live server spoken to directly: a whole trace read back through the
//! protocol, one viewer per session, and malformed requests, each of which
//! closes only its own connection.

#[path = "live_util.rs"]
mod util;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use strata_ctf::index;
use strata_relay::live::proto::{encode_request, IndexStatus, Request, Seek};
use strata_relay::live::{FsCatalog, LiveConfig};
use util::{Client, Server};

const SHARED: &str = "/work/shared/traces/tc-many-threads";

/// Copies an LTTng kernel trace to `data/s/h/kernel` (no progress file: a
/// finished trace). `None` when the shared trace is missing.
fn copy_shared_trace(data: &Path) -> Option<std::path::PathBuf> {
    let src = Path::new(SHARED);
    if !src.join("metadata").is_file() {
        return None;
    }
    let dst = data.join("s").join("h").join("kernel");
    std::fs::create_dir_all(dst.join("index")).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
    for e in std::fs::read_dir(src.join("index")).unwrap().flatten() {
        std::fs::copy(e.path(), dst.join("index").join(e.file_name())).unwrap();
    }
    Some(dst)
}

fn quick_config() -> LiveConfig {
    LiveConfig {
        request_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(30),
        max_hold: Duration::from_millis(50),
        ..LiveConfig::default()
    }
}

#[test]
fn a_viewer_reads_a_whole_lttng_trace_back_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(dir) = copy_shared_trace(tmp.path()) else {
        println!("skipping: {SHARED} is not here");
        return;
    };
    let server = Server::over(tmp.path());
    let mut c = Client::connect(server.port);
    c.handshake();
    let list = c.list();
    assert_eq!(list.len(), 1);
    let (id, timer, clients, streams, host, name) = list[0].clone();
    assert_eq!(
        (host.as_str(), name.as_str(), clients, streams),
        ("h", "s", 0, 9)
    );
    assert!(timer > 0);

    let (status, streams) = c.attach(id, Seek::Beginning);
    assert_eq!(status, 1);
    assert_eq!(streams.len(), 9);
    assert_eq!(streams.iter().filter(|s| s.2).count(), 1);
    assert!(streams.iter().all(|s| s.1 == streams[0].1), "one trace id");
    assert_eq!(c.list()[0].2, 1, "the session now has a client");

    // Metadata: all of it, then "no new".
    let meta_id = streams.iter().find(|s| s.2).unwrap().0;
    let mut meta = Vec::new();
    loop {
        let (st, b) = c.metadata(meta_id);
        match st {
            1 => meta.extend(b),
            2 => break,
            s => panic!("metadata status {s}"),
        }
    }
    assert_eq!(meta, std::fs::read(dir.join("metadata")).unwrap());

    // Every packet of every stream, in index order, then HUP.
    for (sid, _, _, name) in streams.iter().filter(|s| !s.2) {
        let file = std::fs::read(dir.join(name)).unwrap();
        let entries =
            index::parse(&std::fs::read(dir.join("index").join(format!("{name}.idx"))).unwrap())
                .unwrap();
        let mut got = 0;
        loop {
            let r = c.next_index(*sid);
            if r.status == IndexStatus::Hup as u32 {
                break;
            }
            assert_eq!(r.status, IndexStatus::Ok as u32, "stream {name}");
            let e = entries[got];
            assert_eq!(
                (
                    r.offset,
                    r.packet_size,
                    r.content_size,
                    r.timestamp_begin,
                    r.timestamp_end,
                    r.stream_id
                ),
                (
                    e.offset,
                    e.packet_size,
                    e.content_size,
                    e.timestamp_begin,
                    e.timestamp_end,
                    e.stream_id
                )
            );
            // Read it in 64 KiB pieces, as babeltrace2 does with its buffer.
            let len = r.packet_size / 8;
            let mut at = 0;
            while at < len {
                let n = (len - at).min(64 << 10) as u32;
                let (st, b) = c.packet(*sid, r.offset + at, n);
                assert_eq!(st, 1);
                assert_eq!(
                    b[..],
                    file[(r.offset + at) as usize..(r.offset + at) as usize + n as usize]
                );
                at += u64::from(n);
            }
            got += 1;
        }
        assert_eq!(got, entries.len(), "stream {name}");
        // Past the end: still HUP.
        assert_eq!(c.next_index(*sid).status, IndexStatus::Hup as u32);
    }
    c.send(&Request::GetNewStreams { session_id: id });
    assert_eq!(Client::u32_at(&c.read(8), 0), 4, "new streams: HUP");
    c.send(&Request::Detach { session_id: id });
    assert_eq!(Client::u32_at(&c.read(4), 0), 1);
    assert_eq!(c.list()[0].2, 0);
}

#[test]
fn one_viewer_per_session() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s/h/kernel");
    std::fs::create_dir_all(dir.join("index")).unwrap();
    std::fs::write(
        dir.join("metadata"),
        "/* CTF 1.8 */\ntrace { major = 1; minor = 8; };\n",
    )
    .unwrap();
    let server = Server::over(tmp.path());
    let mut a = Client::connect(server.port);
    a.handshake();
    let id = a.list()[0].0;
    assert_eq!(a.attach(id, Seek::Last).0, 1);
    assert_eq!(a.attach(id, Seek::Last).0, 2, "the same viewer twice");
    let mut b = Client::connect(server.port);
    b.handshake();
    assert_eq!(b.attach(id, Seek::Last).0, 2, "a second viewer");
    assert_eq!(b.attach(id + 100, Seek::Last).0, 3, "unknown session");
    assert_eq!(b.attach(id, Seek::Other(7)).0, 5, "bad seek");
    drop(a);
    assert!(util::wait_for(Duration::from_secs(5), || {
        let mut c = Client::connect(server.port);
        c.handshake();
        c.list()[0].2 == 0
    }));
    assert_eq!(b.attach(id, Seek::Last).0, 1);
    // Attaching without CREATE_SESSION first.
    let mut d = Client::connect(server.port);
    d.send(&Request::Connect {
        viewer_session_id: 0,
        major: 2,
        minor: 9,
        conn_type: 1,
    });
    let r = d.read(20);
    assert_eq!(Client::u32_at(&r, 12), 4, "minor is the smaller of both");
    assert_eq!(d.attach(id, Seek::Last).0, 6);
}

/// Bytes of one request.
fn req(r: &Request) -> Vec<u8> {
    let mut b = Vec::new();
    encode_request(r, &mut b);
    b
}

fn header(data_size: u64, cmd: u32) -> Vec<u8> {
    let mut h = data_size.to_be_bytes().to_vec();
    h.extend(cmd.to_be_bytes());
    h.extend(0u32.to_be_bytes());
    h
}

#[test]
fn malformed_requests_close_only_their_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(_) = copy_shared_trace(tmp.path()) else {
        println!("skipping: {SHARED} is not here");
        return;
    };
    let server = Server::start(Arc::new(FsCatalog::new(tmp.path())), quick_config());
    // A viewer that behaves, attached before and used after the attacks.
    let mut good = Client::connect(server.port);
    good.handshake();
    let id = good.list()[0].0;
    let (_, streams) = good.attach(id, Seek::Beginning);
    let data = streams.iter().find(|s| !s.2).unwrap().0;
    assert_eq!(good.next_index(data).status, IndexStatus::Ok as u32);

    let connect = req(&Request::Connect {
        viewer_session_id: 0,
        major: 2,
        minor: 4,
        conn_type: 1,
    });
    let after_connect = |extra: &[u8]| {
        let mut b = connect.clone();
        b.extend_from_slice(extra);
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown command", after_connect(&header(0, 77))),
        ("command 0", after_connect(&header(0, 0))),
        ("absurd data size", after_connect(&header(u64::MAX, 2))),
        ("payload size off by one", after_connect(&header(9, 4))),
        ("request before CONNECT", req(&Request::ListSessions)),
        ("second CONNECT", after_connect(&connect)),
        (
            "wrong major",
            req(&Request::Connect {
                viewer_session_id: 0,
                major: 3,
                minor: 0,
                conn_type: 1,
            }),
        ),
        (
            "bad connection type",
            req(&Request::Connect {
                viewer_session_id: 0,
                major: 2,
                minor: 4,
                conn_type: 9,
            }),
        ),
        (
            "half a header, then silence",
            after_connect(&header(0, 2)[..7]),
        ),
        (
            "header, then half a payload",
            after_connect(
                &header(20, 5)[..16]
                    .iter()
                    .chain(&[1, 2, 3])
                    .copied()
                    .collect::<Vec<_>>(),
            ),
        ),
    ];
    let before = server.stats.snapshot().malformed;
    for (what, bytes) in &cases {
        let mut c = Client::connect(server.port);
        c.send_raw(bytes).unwrap();
        assert!(
            c.closed_by_server(Duration::from_secs(5)),
            "{what}: connection left open"
        );
    }
    // An absurd GET_PACKET length on an attached connection.
    let mut c = Client::connect(server.port);
    c.handshake();
    let id2 = c.list()[0].0;
    assert_eq!(
        c.attach(id2, Seek::Last).0,
        2,
        "already attached by the good viewer"
    );
    c.send(&Request::GetPacket {
        stream_id: data,
        offset: 0,
        len: u32::MAX,
    });
    assert!(
        c.closed_by_server(Duration::from_secs(5)),
        "absurd packet length"
    );
    assert_eq!(
        server.stats.snapshot().malformed - before,
        cases.len() as u64 + 1
    );

    // Well-formed but wrong requests get error statuses, not a close.
    let bad_stream = good.next_index(999_999);
    assert_eq!(bad_stream.status, IndexStatus::Error as u32);
    assert_eq!(
        good.packet(data, 1 << 40, 16).0,
        3,
        "bytes beyond what was served"
    );
    assert_eq!(good.packet(999_999, 0, 16).0, 3, "unknown stream");
    assert_eq!(good.metadata(data).0, 3, "metadata of a data stream");
    good.send(&Request::GetNewStreams { session_id: 12345 });
    assert_eq!(Client::u32_at(&good.read(8), 0), 3);

    // The good viewer goes on reading.
    let r = good.next_index(data);
    assert_eq!(r.status, IndexStatus::Ok as u32);
    let (st, b) = good.packet(data, r.offset, 4096);
    assert_eq!((st, b.len()), (1, 4096));
    assert_eq!(
        &b[..4],
        &0xC1FC_1FC1u32.to_le_bytes(),
        "a CTF packet header"
    );
    // And new viewers are served.
    let mut fresh = Client::connect(server.port);
    fresh.handshake();
    assert_eq!(fresh.list().len(), 1);
}

#[test]
fn random_bytes_never_take_the_server_down() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(_) = copy_shared_trace(tmp.path()) else {
        println!("skipping: {SHARED} is not here");
        return;
    };
    let server = Server::start(Arc::new(FsCatalog::new(tmp.path())), quick_config());
    // A small deterministic generator: the same garbage on every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let connect = req(&Request::Connect {
        viewer_session_id: 0,
        major: 2,
        minor: 4,
        conn_type: 1,
    });
    for round in 0..40 {
        let mut c = Client::connect(server.port);
        let mut bytes = if round % 2 == 0 {
            connect.clone()
        } else {
            Vec::new()
        };
        // Requests with valid commands and random fields, then raw noise.
        for _ in 0..(next() % 6) {
            let cmd = (next() % 10) as u32;
            let size = [0u64, 8, 20][(next() % 3) as usize];
            bytes.extend(header(size, cmd));
            bytes.extend((0..size).map(|_| next() as u8));
        }
        bytes.extend((0..next() % 40).map(|_| next() as u8));
        let _ = c.send_raw(&bytes);
        c.closed_by_server(Duration::from_secs(3));
    }
    let mut fresh = Client::connect(server.port);
    fresh.handshake();
    assert_eq!(fresh.list().len(), 1, "still serving");
}

#[test]
fn connections_beyond_the_limit_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LiveConfig {
        max_connections: 2,
        ..quick_config()
    };
    let server = Server::start(Arc::new(FsCatalog::new(tmp.path())), config);
    let mut a = Client::connect(server.port);
    a.handshake();
    let mut b = Client::connect(server.port);
    b.handshake();
    let mut c = Client::connect(server.port);
    let _ = c.send_raw(&req(&Request::ListSessions));
    assert!(c.closed_by_server(Duration::from_secs(5)));
    assert_eq!(server.stats.snapshot().refused, 1);
    drop(a);
    assert!(util::wait_for(Duration::from_secs(5), || {
        let mut d = Client::connect(server.port);
        d.send(&Request::Connect {
            viewer_session_id: 0,
            major: 2,
            minor: 4,
            conn_type: 1,
        });
        d.sock
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut r = [0u8; 20];
        std::io::Read::read_exact(&mut d.sock, &mut r).is_ok()
    }));
    assert!(b.list().is_empty());
}

#[test]
fn silent_connections_are_closed_after_the_idle_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LiveConfig {
        idle_timeout: Duration::from_millis(300),
        ..quick_config()
    };
    let server = Server::start(Arc::new(FsCatalog::new(tmp.path())), config);
    let mut c = Client::connect(server.port);
    c.handshake();
    let t = std::time::Instant::now();
    assert!(c.closed_by_server(Duration::from_secs(5)));
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "closed after {:?}",
        t.elapsed()
    );
    assert_eq!(server.stats.snapshot().malformed, 1);
}
