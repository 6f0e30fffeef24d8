//! Relay benchmarks, with real processes on loopback.
//!
//! 1. **Ingest**: 1, 10 and 100 replay agents (`strata agent --replay
//!    tc-many-threads --rate 0 --compress none`) stream to one relay pinned
//!    to one core (`taskset -c 0`); the agents run on the other core, each
//!    with room to hold its whole replay unacknowledged. The
//!    relay stores every packet and runs the live analyses on every event.
//!    Reported: events/s and MB/s (stored bytes) while all agents stream,
//!    events per CPU-second of the relay, and its peak RSS. babeltrace2
//!    decoding the same trace to nothing (`-o dummy`) runs in the same run as
//!    a reference for the decoding alone.
//! 2. **Live latency** (root, tracefs): a real tracefs agent on this host
//!    while a paced getppid loop makes about 100 k and 1 M events/s; the
//!    relay's histogram of event timestamp to analysis gives p50/p99/p999.
//!
//! Needs the release `strata` binary: `cargo build --release -p strata`,
//! then `cargo bench -p strata-relay --bench relay [-- ingest|latency]`.
//! `STRATA_BIN` overrides where the binary is looked up.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TRACE: &str = "/work/shared/traces/tc-many-threads";
const TRACE_EVENTS: u64 = 240_644;

fn strata_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STRATA_BIN") {
        return Some(PathBuf::from(p));
    }
    // target/release/deps/relay-HASH -> target/release/strata
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("strata");
    p.is_file().then_some(p)
}

struct Relay {
    child: Child,
    http: SocketAddr,
    ingest: SocketAddr,
    _log: Arc<Mutex<String>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The child is waited for by `Relay`'s Drop.
#[allow(clippy::zombie_processes)]
fn start_relay(bin: &Path, dir: &Path, pin: Option<&str>) -> Relay {
    std::fs::write(dir.join("tokens"), "* tok\n").unwrap();
    std::fs::write(dir.join("agent-token"), "tok\n").unwrap();
    let mut cmd = match pin {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .args([
            "relay",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--no-live",
            "--insecure",
        ])
        .arg("--data")
        .arg(dir.join("data"))
        .arg("--token-file")
        .arg(dir.join("tokens"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the relay starts");
    let log = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().unwrap();
    let l2 = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok(n) = err.read(&mut b) {
            if n == 0 {
                break;
            }
            l2.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&b[..n]));
        }
    });
    let t0 = Instant::now();
    loop {
        let text = log.lock().unwrap().clone();
        let addr = |m: &str| -> Option<SocketAddr> {
            let at = text.find(m)? + m.len();
            let rest = &text[at..];
            rest[..rest.find([' ', ',', ';'])?].parse().ok()
        };
        if let (Some(ingest), Some(http)) = (addr("listening for agents on "), addr("HTTP on ")) {
            return Relay {
                child,
                http,
                ingest,
                _log: log,
            };
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("relay did not start: {text}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map_or(String::new(), |x| x.1.to_string())
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// (utime + stime) seconds and peak RSS (KiB) of a process.
fn cpu_and_rss(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (ticks(11) + ticks(12)) / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (cpu, hwm)
}

fn ingest(bin: &Path) {
    if !Path::new(TRACE).join("metadata").is_file() {
        println!("SKIP ingest: {TRACE} is absent");
        return;
    }
    // babeltrace2 decoding the same trace, as a reference.
    let t = Instant::now();
    let bt = Command::new("babeltrace2")
        .arg(TRACE)
        .args(["-o", "dummy"])
        .status();
    if bt.is_ok_and(|s| s.success()) {
        let s = t.elapsed().as_secs_f64();
        println!(
            "reference: babeltrace2 {TRACE} -o dummy: {TRACE_EVENTS} events in {s:.3} s = {:.2} M events/s (decode only, one core)",
            TRACE_EVENTS as f64 / s / 1e6
        );
    }
    println!("ingest: relay pinned to CPU 0, agents on CPU 1, replay of tc-many-threads, --rate 0 --compress none");
    println!(
        "{:>7} {:>10} {:>9} {:>10} {:>9} {:>12} {:>9}",
        "agents", "events", "wall s", "M ev/s", "MB/s", "M ev/cpu-s", "RSS MiB"
    );
    for agents in [1usize, 10, 100] {
        let loops = (40 / agents).max(1);
        let dir = tempfile::tempdir().unwrap();
        let relay = start_relay(bin, dir.path(), Some("0"));
        let (cpu0, _) = cpu_and_rss(relay.child.id());
        let want = TRACE_EVENTS * (agents * loops) as u64;
        let t0 = Instant::now();
        let mut kids: Vec<Child> = (0..agents)
            .map(|i| {
                Command::new("taskset")
                    .args(["-c", "1"])
                    .arg(bin)
                    .args([
                        "agent",
                        "--insecure",
                        "-q",
                        "--rate",
                        "0",
                        "--compress",
                        "none",
                    ])
                    // The whole replay may wait unacknowledged in memory:
                    // nothing is dropped when the relay is the bottleneck.
                    .args(["--memory-max", "2G"])
                    .arg("--relay")
                    .arg(relay.ingest.to_string())
                    .arg("--token-file")
                    .arg(dir.path().join("agent-token"))
                    .arg("--replay")
                    .arg(TRACE)
                    .args(["--loop", &loops.to_string(), "--host-id", &format!("h{i}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("agent starts")
            })
            .collect();
        // Sample the counters until every event is in.
        let mut samples: Vec<(f64, f64, f64)> = Vec::new();
        loop {
            let m = http_get(relay.http, "/metrics");
            let ev = metric(&m, "strata_relay_events_total");
            let by = metric(&m, "strata_relay_stored_bytes_total");
            samples.push((t0.elapsed().as_secs_f64(), ev, by));
            if ev as u64 >= want || t0.elapsed() > Duration::from_secs(600) {
                break;
            }
            // As often as a demanding Prometheus would scrape, no more:
            // /metrics reports on every host.
            std::thread::sleep(Duration::from_millis(500));
        }
        for k in &mut kids {
            let _ = k.wait();
        }
        let (cpu1, hwm) = cpu_and_rss(relay.child.id());
        // The rate between 10 % and 90 % of the events: agents starting and
        // finishing do not count.
        let at = |frac: f64| {
            samples
                .iter()
                .find(|s| s.1 >= frac * want as f64)
                .copied()
                .unwrap_or((0.0, 0.0, 0.0))
        };
        let (a, b) = (at(0.1), at(0.9));
        let dt = (b.0 - a.0).max(1e-3);
        let last = samples.last().copied().unwrap_or_default();
        println!(
            "{agents:>7} {:>10} {:>9.2} {:>10.2} {:>9.1} {:>12.2} {:>9.1}",
            last.1 as u64,
            last.0,
            (b.1 - a.1) / dt / 1e6,
            (b.2 - a.2) / dt / 1e6,
            last.1 / (cpu1 - cpu0).max(1e-3) / 1e6,
            hwm as f64 / 1024.0
        );
        if (last.1 as u64) < want {
            println!("        (only {} of {want} events arrived)", last.1 as u64);
        }
    }
}

/// Calls getppid about `rate` times a second for `secs` seconds.
fn paced_syscalls(rate: u64, secs: f64) {
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while done < due {
            // SAFETY: getppid has no preconditions.
            unsafe { libc::getppid() };
            done += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn latency(bin: &Path) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/sys/kernel/tracing/instances").is_dir() {
        println!("SKIP latency: needs root and tracefs for a live agent");
        return;
    }
    println!("live latency: tracefs agent (--events syscalls), paced getppid loop, relay pinned to CPU 0");
    println!(
        "{:>10} {:>14} {:>10} {:>9} {:>9} {:>9} {:>10}",
        "target/s", "flush", "events", "p50 ms", "p99 ms", "p999 ms", "lost"
    );
    for flush in ["100ms", "10ms"] {
        for rate in [100_000u64, 1_000_000] {
            let dir = tempfile::tempdir().unwrap();
            let relay = start_relay(bin, dir.path(), Some("0"));
            let mut agent = Command::new(bin)
                .args([
                    "agent",
                    "--insecure",
                    "-q",
                    "--events",
                    "raw_syscalls",
                    "--flush-interval",
                    flush,
                    "--host-id",
                    "lat",
                    "--no-statedump",
                ])
                .arg("--relay")
                .arg(relay.ingest.to_string())
                .arg("--token-file")
                .arg(dir.path().join("agent-token"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("agent starts");
            std::thread::sleep(Duration::from_secs(2));
            // Two events (entry, exit) per call.
            paced_syscalls(rate / 2, 8.0);
            std::thread::sleep(Duration::from_millis(500));
            let hosts = http_get(relay.http, "/api/hosts");
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
            let _ = agent.wait();
            let v: serde_json::Value = serde_json::from_str(&hosts).unwrap_or_default();
            let h = &v["hosts"][0];
            let l = &h["live_latency"];
            println!(
                "{rate:>10} {flush:>14} {:>10} {:>9.1} {:>9.1} {:>9.1} {:>10}",
                h["events_applied"],
                l["p50_ms"].as_f64().unwrap_or(f64::NAN),
                l["p99_ms"].as_f64().unwrap_or(f64::NAN),
                l["p999_ms"].as_f64().unwrap_or(f64::NAN),
                h["lost_events"]
            );
        }
    }
}

fn main() {
    let Some(bin) = strata_bin() else {
        println!("SKIP: no release strata binary; run `cargo build --release -p strata` first (or set STRATA_BIN)");
        return;
    };
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = which.is_empty();
    if all || which.iter().any(|w| w == "ingest") {
        ingest(&bin);
    }
    if all || which.iter().any(|w| w == "latency") {
        latency(&bin);
    }
}
