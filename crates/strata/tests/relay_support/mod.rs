//! Helpers of the relay tests: a real `strata relay` process on loopback
//! ports, agents, raw protocol clients, HTTP reads, and per-CPU event
//! counts of traces as babeltrace2 reads them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const STRATA: &str = env!("CARGO_BIN_EXE_strata");
/// The shared LTTng traces.
pub const TRACES: &str = "/work/shared/traces";

/// A `strata relay` child process; killed when dropped.
pub struct Relay {
    child: Child,
    pub data: PathBuf,
    pub ingest: SocketAddr,
    pub http: SocketAddr,
    pub live: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
}

/// Files a test relay needs: a token file admitting every host with
/// `tok`, and the agent's token file.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub tokens: PathBuf,
    pub agent_token: PathBuf,
}

impl Setup {
    pub fn new() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, "# test relay\nweb1 web1-secret\n* tok\n").unwrap();
        let agent_token = dir.path().join("agent-token");
        std::fs::write(&agent_token, "tok\n").unwrap();
        Setup {
            dir,
            tokens,
            agent_token,
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

fn capture(mut r: impl Read + Send + 'static, log: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            let s = String::from_utf8_lossy(&buf[..n]).into_owned();
            eprint!("{s}");
            log.lock().unwrap().push_str(&s);
        }
    });
}

fn addr_after(log: &str, marker: &str) -> Option<SocketAddr> {
    let at = log.find(marker)? + marker.len();
    let rest = &log[at..];
    let end = rest.find([' ', ',', ';']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl Relay {
    /// Starts a relay on free loopback ports (`--insecure` unless `extra`
    /// brings TLS options).
    pub fn start(s: &Setup, extra: &[&str]) -> Relay {
        Relay::start_on(s, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", extra)
    }

    /// Starts a relay on the given addresses.
    pub fn start_on(s: &Setup, listen: &str, http: &str, live: &str, extra: &[&str]) -> Relay {
        let data = s.data();
        let mut args: Vec<String> = vec![
            "relay".into(),
            "--listen".into(),
            listen.into(),
            "--http".into(),
            http.into(),
            "--live".into(),
            live.into(),
            "--data".into(),
            data.display().to_string(),
            "--token-file".into(),
            s.tokens.display().to_string(),
        ];
        if !extra.iter().any(|a| a.starts_with("--tls")) {
            args.push("--insecure".into());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut child = Command::new(STRATA)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strata relay starts");
        let log = Arc::new(Mutex::new(String::new()));
        capture(child.stderr.take().unwrap(), Arc::clone(&log));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = log.lock().unwrap().clone();
            if let (Some(ingest), Some(http)) = (
                addr_after(&text, "listening for agents on "),
                addr_after(&text, "HTTP on "),
            ) {
                let live = addr_after(&text, "LTTng-live on ");
                return Relay {
                    child,
                    data,
                    ingest,
                    http,
                    live,
                    log,
                };
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("the relay exited with {st}: {text}");
            }
            assert!(Instant::now() < deadline, "the relay did not start: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the relay logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log holds `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// `GET path` on the HTTP API: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path)
    }

    /// `GET path` parsed as JSON (status 200 expected).
    pub fn json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.get(path);
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Kills the relay at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the relay with SIGTERM and waits; returns whether it exited 0.
    pub fn stop(&mut self) -> bool {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (code, body)
}

/// An agent child process with its stderr captured.
pub struct Agent {
    pub child: Child,
    log: Arc<Mutex<String>>,
}

impl Agent {
    /// `strata agent --relay ADDR --insecure --token-file T ARGS`.
    pub fn start(relay: SocketAddr, s: &Setup, args: &[&str]) -> Agent {
        let mut child = Command::new(STRATA)
            .arg("agent")
            .arg("--relay")
            .arg(relay.to_string())
            .arg("--token-file")
            .arg(&s.agent_token)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strata agent starts");
        let log = Arc::new(Mutex::new(String::new()));
        capture(child.stderr.take().unwrap(), Arc::clone(&log));
        Agent { child, log }
    }

    /// A replay agent streaming `trace` as `host` at `rate` events/s.
    pub fn replay(
        relay: SocketAddr,
        s: &Setup,
        trace: &Path,
        host: &str,
        rate: u64,
        extra: &[&str],
    ) -> Agent {
        let mut args = vec![
            "--insecure".to_string(),
            "--replay".into(),
            trace.display().to_string(),
            "--host-id".into(),
            host.into(),
            "--rate".into(),
            rate.to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Agent::start(relay, s, &refs)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits for the agent to exit; panics after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the agent did not finish in {timeout:?}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    /// SIGTERM first, so a live agent removes its tracefs instance even
    /// when the test failed; SIGKILL only if it has not exited in 5 s.
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Events per CPU (`cpu_id` of the packet context) and in all, as
/// babeltrace2 prints them; `None` when babeltrace2 fails. Uses the
/// muxer-free graph, which reads every packet even where a packet's
/// `timestamp_begin` is later than its first event.
pub fn babeltrace_cpu_counts(dir: &Path) -> Result<BTreeMap<u32, u64>, String> {
    let out = Command::new("babeltrace2")
        .arg(dir)
        .output()
        .map_err(|e| format!("babeltrace2 did not run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "babeltrace2 {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(at) = line.find("cpu_id = ") else {
            continue;
        };
        let rest = &line[at + 9..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if let Ok(cpu) = rest[..end].parse() {
            *counts.entry(cpu).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// True when babeltrace2 runs; otherwise prints why the test skips.
pub fn have_babeltrace() -> bool {
    let ok = Command::new("babeltrace2")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("SKIP: babeltrace2 is not installed (scripts/install-deps)");
    }
    ok
}

/// The shared trace `name`, or `None` (with a printed reason) when absent.
pub fn shared_trace(name: &str) -> Option<PathBuf> {
    let p = Path::new(TRACES).join(name);
    if p.join("metadata").is_file() || p.is_dir() {
        Some(p)
    } else {
        println!("SKIP: the shared trace {} is absent", p.display());
        None
    }
}

/// The stored trace of `host` in session `strata`.
pub fn stored(data: &Path, host: &str) -> PathBuf {
    data.join("strata").join(host).join("kernel")
}

/// The stream files of a trace directory, by name, with their bytes.
pub fn stream_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "metadata" || name.starts_with('.') || !e.path().is_file() {
            continue;
        }
        out.insert(name, std::fs::read(e.path()).unwrap());
    }
    out
}

/// A raw protocol client: a TCP connection speaking strata-wire.
pub struct RawClient {
    pub sock: TcpStream,
    dec: strata_wire::FrameDecoder,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let sock = TcpStream::connect(addr).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        RawClient {
            sock,
            dec: strata_wire::FrameDecoder::new(strata_wire::MAX_BODY),
        }
    }

    pub fn send(&mut self, msg: &strata_wire::Message<'_>, seq: u64) {
        let b = msg.encode(seq, strata_wire::Compression::None).unwrap();
        self.sock.write_all(&b).unwrap();
    }

    /// The next message from the relay, as an owned debug string and kind,
    /// or `None` when the relay closed the connection.
    pub fn recv(&mut self) -> Option<strata_wire::Message<'static>> {
        let mut buf = [0u8; 65536];
        loop {
            if let Some(f) = self.dec.next_frame().ok().flatten() {
                return f.message().ok().map(own);
            }
            match self.sock.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.dec.feed(&buf[..n]),
            }
        }
    }

    /// Whether the relay closes the connection within `timeout`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.sock.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
        false
    }
}

/// The owned messages the relay sends (they borrow nothing).
fn own(m: strata_wire::Message<'_>) -> strata_wire::Message<'static> {
    use strata_wire::Message as M;
    match m {
        M::Welcome(w) => M::Welcome(w),
        M::Refused(r) => M::Refused(r),
        M::Ack(a) => M::Ack(a),
        M::Heartbeat(h) => M::Heartbeat(h),
        M::Goodbye(g) => M::Goodbye(g),
        M::Control(c) => M::Control(c),
        other => M::Goodbye(strata_wire::Goodbye {
            last_seq: 0,
            reason: format!("unexpected {}", other.name()),
        }),
    }
}

/// A Hello as the agent would send it.
pub fn hello(
    host_id: &str,
    session: &str,
    token: &str,
    source: strata_wire::Source,
) -> strata_wire::Hello {
    strata_wire::Hello {
        min_version: strata_wire::MIN_PROTOCOL_VERSION,
        max_version: strata_wire::PROTOCOL_VERSION,
        software: "relay-test".into(),
        host_id: host_id.into(),
        host: strata_core::HostInfo {
            hostname: host_id.into(),
            sysname: "Linux".into(),
            kernel_release: "6.0".into(),
            kernel_version: "#1".into(),
            machine_id: String::new(),
            boot_id: String::new(),
            cpu_count: 2,
            vm_uuid: None,
        },
        token: token.into(),
        session: session.into(),
        source,
        instance: 42,
        acked: 0,
        oldest: 1,
        next_seq: 1,
    }
}
