//! Helpers for the live server's integration tests: a server on a loopback
//! port, a trace written live with `strata_store::TraceWriter` from records
//! built with the real tracefs `sched_switch` format, its progress file,
//! and babeltrace2 followed line by line. Included by the `live_*` tests
//! with `#[path]`; built alone it holds no test.

#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_ftrace::format::EventFormat;
use strata_relay::live::progress::{self, Progress};
use strata_relay::live::{Catalog, FsCatalog, LiveConfig, LiveServer, LiveStats};
use strata_store::{StoreOptions, TraceWriter};

/// A live server on 127.0.0.1, stopped on drop.
pub struct Server {
    pub port: u16,
    pub stats: Arc<LiveStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(catalog: Arc<dyn Catalog>, config: LiveConfig) -> Server {
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = LiveServer::new(catalog, config);
        let stats = server.stats();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                port_tx.send(l.local_addr().unwrap().port()).unwrap();
                server
                    .run_until(l, async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let port = port_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Server {
            port,
            stats,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn over(data: &Path) -> Server {
        Server::start(Arc::new(FsCatalog::new(data)), LiveConfig::default())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether babeltrace2 runs here.
pub fn have_babeltrace2() -> bool {
    Command::new("babeltrace2")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The real `sched:sched_switch` format from tracefs, if mounted.
pub fn sched_switch_format() -> Option<EventFormat> {
    let text =
        std::fs::read_to_string("/sys/kernel/tracing/events/sched/sched_switch/format").ok()?;
    strata_ftrace::format::parse("sched", &text).ok()
}

/// Why a test that needs babeltrace2 and tracefs cannot run, if it cannot.
pub fn missing_tools() -> Option<&'static str> {
    if !have_babeltrace2() {
        return Some("babeltrace2 is not installed");
    }
    if sched_switch_format().is_none() {
        return Some("tracefs is not mounted at /sys/kernel/tracing");
    }
    None
}

/// A `sched_switch` record whose `next_pid` carries `marker`.
pub fn switch_record(fmt: &EventFormat, marker: i32) -> Vec<u8> {
    let mut r = vec![0u8; fmt.min_record_len() as usize];
    r[0..2].copy_from_slice(&fmt.id.to_le_bytes());
    r[4..8].copy_from_slice(&1234i32.to_le_bytes());
    let mut put = |name: &str, bytes: &[u8]| {
        let f = fmt
            .field(name)
            .unwrap_or_else(|| panic!("sched_switch has no {name}"));
        let o = f.offset as usize;
        let n = bytes.len().min(f.size as usize);
        r[o..o + n].copy_from_slice(&bytes[..n]);
    };
    put("prev_comm", b"live-test\0");
    put("prev_pid", &1234i32.to_le_bytes());
    put("prev_prio", &120i32.to_le_bytes());
    put("prev_state", &1i64.to_le_bytes());
    put("next_comm", b"worker\0");
    put("next_pid", &marker.to_le_bytes());
    put("next_prio", &120i32.to_le_bytes());
    r
}

/// The test's trace clock: nanoseconds since `start`, plus a base so that
/// values look like a monotonic clock; mapped to Unix time in the metadata.
pub struct TestClock {
    start: Instant,
    base: u64,
    unix_at_base: i64,
}

impl Default for TestClock {
    fn default() -> Self {
        TestClock::new()
    }
}

impl TestClock {
    pub fn new() -> TestClock {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        let base = 1_000_000_000_000u64;
        TestClock {
            start: Instant::now(),
            base,
            unix_at_base: unix,
        }
    }

    pub fn now(&self) -> u64 {
        self.base + self.start.elapsed().as_nanos() as u64
    }

    pub fn desc(&self) -> strata_core::ClockDesc {
        strata_core::ClockDesc::nanoseconds(
            "monotonic",
            "Monotonic Clock",
            self.unix_at_base - self.base as i64,
        )
    }

    /// The `Instant` at which the clock read `ts`.
    pub fn instant_of(&self, ts: u64) -> Instant {
        self.start + Duration::from_nanos(ts - self.base)
    }
}

/// One flushed packet: when it reached the disk and the markers it holds.
#[derive(Debug, Clone)]
pub struct Flushed {
    pub cpu: u32,
    pub at: Instant,
    pub markers: Vec<i32>,
}

/// A trace written live, as the relay would: records pushed through
/// `TraceWriter`, packets detected as they reach the disk, and the
/// progress file with each stream's watermark.
pub struct LiveTrace {
    pub dir: PathBuf,
    pub clock: TestClock,
    writer: TraceWriter,
    fmt: EventFormat,
    cpus: u32,
    /// Per CPU: markers in the open packet, and the time of its first event.
    open: Vec<(Vec<i32>, Option<u64>)>,
    index_len: Vec<u64>,
    pub flushed: Vec<Flushed>,
    pub pushed: Vec<(u32, i32, u64)>,
}

impl LiveTrace {
    /// Creates `data/session/host/kernel` with `cpus` streams and packets of
    /// `packet_capacity` bytes.
    pub fn create(
        data: &Path,
        session: &str,
        host: &str,
        cpus: u32,
        packet_capacity: usize,
    ) -> LiveTrace {
        let fmt = sched_switch_format().expect("tracefs sched_switch format");
        let dir = data.join(session).join(host).join("kernel");
        let clock = TestClock::new();
        let info = strata_core::HostInfo {
            hostname: host.into(),
            sysname: "Linux".into(),
            kernel_release: "6.18.0-live-test".into(),
            kernel_version: "#1 SMP".into(),
            machine_id: String::new(),
            boot_id: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
            cpu_count: cpus,
            vm_uuid: None,
        };
        let opts = StoreOptions {
            packet_capacity,
            ..StoreOptions::default()
        };
        let writer = TraceWriter::create(
            &dir,
            &info,
            &clock.desc(),
            std::slice::from_ref(&fmt),
            &[],
            opts,
        )
        .unwrap();
        let t = LiveTrace {
            dir,
            clock,
            writer,
            fmt,
            cpus,
            open: vec![(Vec::new(), None); cpus as usize],
            index_len: vec![16; cpus as usize],
            flushed: Vec::new(),
            pushed: Vec::new(),
        };
        t.publish(false);
        t
    }

    /// Pushes one `sched_switch` on `cpu` at the current time.
    pub fn push(&mut self, cpu: u32, marker: i32) {
        let ts = self.clock.now();
        let rec = switch_record(&self.fmt, marker);
        self.writer.push_record(cpu, ts, &rec).unwrap();
        self.pushed.push((cpu, marker, ts));
        let idx = self.dir.join("index").join(format!("channel0_{cpu}.idx"));
        let len = std::fs::metadata(&idx).unwrap().len();
        let c = cpu as usize;
        if len > self.index_len[c] {
            // The record did not fit: the packet holding the previous ones
            // was written, and this record opened the next.
            self.index_len[c] = len;
            let markers = std::mem::take(&mut self.open[c].0);
            self.flushed.push(Flushed {
                cpu,
                at: Instant::now(),
                markers,
            });
            self.open[c] = (vec![marker], Some(ts));
        } else {
            self.open[c].0.push(marker);
            self.open[c].1.get_or_insert(ts);
        }
    }

    /// Writes the progress file: each CPU's watermark is the start of its
    /// open packet, or now when it has none.
    pub fn publish(&self, complete: bool) {
        let now = self.clock.now();
        let p = Progress {
            complete,
            live_timer_us: Some(10_000),
            watermark: None,
            streams: (0..self.cpus)
                .map(|c| {
                    (
                        format!("channel0_{c}"),
                        self.open[c as usize].1.unwrap_or(now),
                    )
                })
                .collect(),
        };
        progress::write(&self.dir, &p).unwrap();
    }

    /// Writes the last packets and says the trace is complete.
    pub fn finish(&mut self) {
        self.writer.finish().unwrap();
        let at = Instant::now();
        for c in 0..self.cpus as usize {
            let markers = std::mem::take(&mut self.open[c].0);
            if !markers.is_empty() {
                self.flushed.push(Flushed {
                    cpu: c as u32,
                    at,
                    markers,
                });
            }
            self.open[c].1 = None;
        }
        self.publish(true);
    }
}

/// babeltrace2 following a live session; every output line is kept with
/// the moment it arrived.
pub struct Viewer {
    child: Child,
    pub lines: Arc<Mutex<Vec<(Instant, String)>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: Arc<Mutex<String>>,
}

impl Viewer {
    /// `babeltrace2 --input-format=lttng-live URL`, line-buffered.
    pub fn follow(url: &str) -> Viewer {
        let mut child = Command::new("stdbuf")
            .args(["-oL", "babeltrace2", "--input-format=lttng-live", url])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn babeltrace2");
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                l2.lock().unwrap().push((Instant::now(), line));
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let e2 = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(err), &mut s);
            *e2.lock().unwrap() = s;
        });
        Viewer {
            child,
            lines,
            reader: Some(reader),
            stderr,
        }
    }

    /// Waits up to `limit` for babeltrace2 to exit; its success, or `None`
    /// if it is still running (it is then killed).
    pub fn wait(&mut self, limit: Duration) -> Option<bool> {
        let t = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return Some(st.success());
            }
            if t.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id of babeltrace2 (its `stdbuf` wrapper execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The markers (`next_tid` values) printed so far, with their arrival.
    pub fn markers(&self) -> Vec<(Instant, i32)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(t, l)| {
                let v = l.split("next_tid = ").nth(1)?;
                let n: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
                Some((*t, n.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `cond` holds, up to `limit`.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Min, median, 90th percentile and max of `v` (sorted in place).
pub fn summary(v: &mut [f64]) -> (f64, f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.0), at(0.5), at(0.9), at(1.0))
}

/// A viewer speaking the protocol directly, for the protocol tests.
pub struct Client {
    pub sock: std::net::TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        sock.set_nodelay(true).unwrap();
        Client { sock }
    }

    pub fn send(&mut self, req: &strata_relay::live::proto::Request) {
        let mut b = Vec::new();
        strata_relay::live::proto::encode_request(req, &mut b);
        std::io::Write::write_all(&mut self.sock, &b).unwrap();
    }

    pub fn send_raw(&mut self, b: &[u8]) -> std::io::Result<()> {
        std::io::Write::write_all(&mut self.sock, b)
    }

    pub fn read(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        std::io::Read::read_exact(&mut self.sock, &mut b).unwrap();
        b
    }

    pub fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    pub fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// Whether the server closed the connection (EOF within the timeout).
    pub fn closed_by_server(&mut self, within: Duration) -> bool {
        self.sock.set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 4096];
        loop {
            match std::io::Read::read(&mut self.sock, &mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    /// CONNECT, then CREATE_SESSION.
    pub fn handshake(&mut self) {
        use strata_relay::live::proto::Request;
        self.send(&Request::Connect {
            viewer_session_id: u64::MAX,
            major: 2,
            minor: 4,
            conn_type: 1,
        });
        let r = self.read(20);
        assert_eq!((Self::u32_at(&r, 8), Self::u32_at(&r, 12)), (2, 4));
        self.send(&Request::CreateSession);
        assert_eq!(Self::u32_at(&self.read(4), 0), 1);
    }

    /// LIST_SESSIONS: (id, live_timer, clients, streams, hostname, name).
    pub fn list(&mut self) -> Vec<(u64, u32, u32, u32, String, String)> {
        use strata_relay::live::proto::{Request, SESSION_ENTRY_LEN};
        self.send(&Request::ListSessions);
        let n = Self::u32_at(&self.read(4), 0);
        (0..n)
            .map(|_| {
                let e = self.read(SESSION_ENTRY_LEN);
                let s = |b: &[u8]| {
                    String::from_utf8_lossy(b.split(|&c| c == 0).next().unwrap()).into_owned()
                };
                (
                    Self::u64_at(&e, 0),
                    Self::u32_at(&e, 8),
                    Self::u32_at(&e, 12),
                    Self::u32_at(&e, 16),
                    s(&e[20..84]),
                    s(&e[84..]),
                )
            })
            .collect()
    }

    /// ATTACH_SESSION: (status, streams as (id, trace id, is metadata, channel)).
    pub fn attach(
        &mut self,
        id: u64,
        seek: strata_relay::live::proto::Seek,
    ) -> (u32, Vec<(u64, u64, bool, String)>) {
        use strata_relay::live::proto::Request;
        self.send(&Request::Attach {
            session_id: id,
            offset: 0,
            seek,
        });
        let h = self.read(8);
        let streams = self.streams(Self::u32_at(&h, 4));
        (Self::u32_at(&h, 0), streams)
    }

    pub fn streams(&mut self, n: u32) -> Vec<(u64, u64, bool, String)> {
        use strata_relay::live::proto::STREAM_ENTRY_LEN;
        (0..n)
            .map(|_| {
                let e = self.read(STREAM_ENTRY_LEN);
                let ch = &e[20 + 4096..];
                (
                    Self::u64_at(&e, 0),
                    Self::u64_at(&e, 8),
                    Self::u32_at(&e, 16) != 0,
                    String::from_utf8_lossy(ch.split(|&c| c == 0).next().unwrap()).into_owned(),
                )
            })
            .collect()
    }

    pub fn next_index(&mut self, stream_id: u64) -> strata_relay::live::proto::IndexReply {
        use strata_relay::live::proto::{parse_index, Request, INDEX_REPLY_LEN};
        self.send(&Request::GetNextIndex { stream_id });
        let b = self.read(INDEX_REPLY_LEN);
        parse_index(&b.try_into().unwrap())
    }

    /// GET_PACKET: (status, data).
    pub fn packet(&mut self, stream_id: u64, offset: u64, len: u32) -> (u32, Vec<u8>) {
        use strata_relay::live::proto::Request;
        self.send(&Request::GetPacket {
            stream_id,
            offset,
            len,
        });
        let h = self.read(12);
        let n = Self::u32_at(&h, 4) as usize;
        let data = if Self::u32_at(&h, 0) == 1 {
            self.read(n)
        } else {
            Vec::new()
        };
        (Self::u32_at(&h, 0), data)
    }

    /// GET_METADATA: (status, data).
    pub fn metadata(&mut self, stream_id: u64) -> (u32, Vec<u8>) {
        use strata_relay::live::proto::Request;
        self.send(&Request::GetMetadata { stream_id });
        let h = self.read(12);
        let n = Self::u64_at(&h, 0) as usize;
        (Self::u32_at(&h, 8), self.read(n))
    }
}

/// How long the live phase writes, and the period of one CPU's events.
pub const LIVE_FOR: Duration = Duration::from_secs(4);
pub const EVENT_EVERY: Duration = Duration::from_millis(1);

/// What one live run measured.
pub struct Run {
    /// Packet written -> its last event printed, ms, per packet.
    pub flush_ms: Vec<f64>,
    /// Event time -> printed, ms, per event.
    pub event_ms: Vec<f64>,
}

/// Writes a 3-CPU trace live for [`LIVE_FOR`] with `active` CPUs switching
/// every millisecond (the others record nothing) into packets of
/// `packet_capacity` bytes, publishing watermarks every `publish_every`,
/// while babeltrace2 follows it through a server with `config`; checks what
/// it printed and returns the latencies.
pub fn follow_live(
    active: u32,
    publish_every: Duration,
    packet_capacity: usize,
    config: LiveConfig,
) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let mut trace = LiveTrace::create(data, "strata", "web1", 3, packet_capacity);
    let server = Server::start(Arc::new(FsCatalog::new(data)), config);
    let base = format!("net://127.0.0.1:{}", server.port);

    // Packets written before anyone attaches. Only busy CPUs get events: a
    // CPU with a half-filled packet that never fills holds its watermark,
    // and so the viewer, at that packet's start (TraceWriter flushes full
    // packets only; a relay flushes them on its timer).
    for i in 0..200 {
        trace.push(i as u32 % active, 1 + i);
    }
    trace.publish(false);

    // The session list names the session with babeltrace2's URL form.
    let list = Command::new("babeltrace2")
        .args(["--input-format=lttng-live", &base])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success(),
        "list failed: {}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(
        text.contains(&format!("{base}/host/web1/strata")),
        "session list: {text}"
    );

    let mut viewer = Viewer::follow(&format!("{base}/host/web1/strata"));
    assert!(
        wait_for(Duration::from_secs(10), || server.stats.snapshot().attaches
            == 1),
        "babeltrace2 did not attach: {}",
        viewer.stderr()
    );
    let attached_at = Instant::now();
    let first_live = trace.pushed.len();

    let mut marker = 100_000;
    let mut last_publish = Instant::now();
    while attached_at.elapsed() < LIVE_FOR {
        for cpu in 0..active {
            trace.push(cpu, marker);
            marker += 1;
        }
        if last_publish.elapsed() >= publish_every {
            trace.publish(false);
            last_publish = Instant::now();
        }
        std::thread::sleep(EVENT_EVERY);
    }
    let finished_at = Instant::now();
    let printed_while_live = viewer.markers().len();
    trace.finish();

    let ok = viewer.wait(Duration::from_secs(30));
    let stderr = viewer.stderr();
    assert_eq!(
        ok,
        Some(true),
        "babeltrace2 did not exit cleanly after the trace completed: {stderr}"
    );

    // Every event written after the attach was printed, once, in order of
    // its time; nothing was printed that was not written.
    let printed = viewer.markers();
    let live: Vec<(u32, i32, u64)> = trace.pushed[first_live..].to_vec();
    let mut seen = std::collections::HashMap::new();
    for &(_, m) in &printed {
        *seen.entry(m).or_insert(0u32) += 1;
    }
    for &(cpu, m, _) in &live {
        assert_eq!(
            seen.get(&m),
            Some(&1),
            "event {m} of CPU {cpu} written after the attach was printed {:?} times",
            seen.get(&m)
        );
    }
    let all: std::collections::HashSet<i32> = trace.pushed.iter().map(|p| p.1).collect();
    assert!(printed.iter().all(|(_, m)| all.contains(m)));
    let ts_of: std::collections::HashMap<i32, u64> =
        trace.pushed.iter().map(|p| (p.1, p.2)).collect();
    let times: Vec<u64> = printed.iter().map(|(_, m)| ts_of[m]).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "events printed out of time order"
    );

    // The quiet CPUs did not hold the others back: most of the events were
    // printed while the trace was still being written.
    assert!(
        printed_while_live * 10 >= live.len() * 9,
        "only {printed_while_live} of {} events were printed before the writer finished",
        live.len()
    );
    assert!(server.stats.snapshot().beacons_sent > 0);

    let arrival: std::collections::HashMap<i32, Instant> =
        printed.iter().map(|&(t, m)| (m, t)).collect();
    let flush_ms: Vec<f64> = trace
        .flushed
        .iter()
        .filter(|f| f.at > attached_at && f.at < finished_at && !f.markers.is_empty())
        .filter(|f| f.markers.iter().all(|m| *m >= 100_000))
        .filter_map(|f| {
            let last = f.markers.last()?;
            Some(
                arrival
                    .get(last)?
                    .saturating_duration_since(f.at)
                    .as_secs_f64()
                    * 1e3,
            )
        })
        .collect();
    let event_ms: Vec<f64> = live
        .iter()
        .filter(|p| trace.clock.instant_of(p.2) < finished_at)
        .filter_map(|p| {
            let at = arrival.get(&p.1)?;
            Some(
                at.saturating_duration_since(trace.clock.instant_of(p.2))
                    .as_secs_f64()
                    * 1e3,
            )
        })
        .collect();
    println!("server: {:?}", server.stats.snapshot());
    Run { flush_ms, event_ms }
}

pub fn report(what: &str, run: &mut Run) -> f64 {
    let (min, med, p90, max) = summary(&mut run.flush_ms);
    println!(
        "{what}: packet written -> printed by babeltrace2: {} packets, min {min:.2} ms, median {med:.2} ms, p90 {p90:.2} ms, max {max:.2} ms",
        run.flush_ms.len()
    );
    let (min, emed, p90, max) = summary(&mut run.event_ms);
    println!(
        "{what}: event time -> printed: {} events, min {min:.2} ms, median {emed:.2} ms, p90 {p90:.2} ms, max {max:.2} ms",
        run.event_ms.len()
    );
    med
}
