//! The tokio side of the live server: accepting viewers, reading requests
//! within bounds and deadlines, running each request on the blocking pool,
//! and holding a GET_NEXT_INDEX that has nothing new.
//!
//! Why hold: babeltrace2 answers "nothing new" (RETRY, or a beacon it
//! already has) by sleeping 100 ms before it asks again, which is most of
//! lttng-relayd's live latency. Held until the stream's next packet or
//! beacon exists (at most [`LiveConfig::max_hold`]), the request returns as
//! soon as there is news. The cost: babeltrace2 hands events to its printer
//! in batches, and a batch waits while a request is held, so the last
//! events before a pause are printed with the next news, one writer timer
//! period later at most. Measured with babeltrace2 2.0.4, holding halves
//! the median latency and removes the 100 ms steps (see the live tests).
//!
//! A malformed request (unknown command, wrong payload size, a request left
//! half-sent, a request before CONNECT, an absurd packet length) closes that
//! connection with a logged reason; every other connection goes on.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::catalog::Catalog;
use super::proto::{self, Request, HEADER_LEN};
use super::viewer::{Limits, Registry, Step, Viewer};

/// The port LTTng viewers connect to by default.
pub const DEFAULT_PORT: u16 = 5344;

/// Server settings. The defaults suit babeltrace2 2.0.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Longest a GET_NEXT_INDEX with nothing new is held before answering.
    pub max_hold: Duration,
    /// How often a held GET_NEXT_INDEX looks again.
    pub poll_interval: Duration,
    /// Time allowed to send the rest of a request once it has started.
    pub request_timeout: Duration,
    /// Time a connection may stay silent between requests.
    pub idle_timeout: Duration,
    /// Time allowed for the viewer to take a reply.
    pub write_timeout: Duration,
    /// Concurrent connections; more are closed on accept.
    pub max_connections: usize,
    /// Per-connection limits.
    pub limits: Limits,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            max_hold: Duration::from_millis(500),
            poll_interval: Duration::from_millis(5),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            write_timeout: Duration::from_secs(30),
            max_connections: 256,
            limits: Limits {
                max_packet_len: 64 << 20,
                max_metadata_reply: 4 << 20,
                max_metadata_file: 256 << 20,
                max_attached: 16,
                max_streams: 8192,
                rescan: Duration::from_millis(200),
            },
        }
    }
}

/// Counters of the live server, readable while it runs.
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections closed at accept because of the connection limit.
    pub refused: AtomicU64,
    /// Connections closed because of a malformed request or a timeout.
    pub malformed: AtomicU64,
    /// Successful attaches.
    pub attaches: AtomicU64,
    /// Packet indexes sent.
    pub indexes_sent: AtomicU64,
    /// Inactivity beacons sent.
    pub beacons_sent: AtomicU64,
    /// Packet bytes sent.
    pub packet_bytes: AtomicU64,
    /// Metadata bytes sent.
    pub metadata_bytes: AtomicU64,
    /// Packets skipped because they started before a beacon already sent.
    pub late_packets_skipped: AtomicU64,
}

/// A copy of [`LiveStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`LiveStats::connections`].
    pub connections: u64,
    /// See [`LiveStats::refused`].
    pub refused: u64,
    /// See [`LiveStats::malformed`].
    pub malformed: u64,
    /// See [`LiveStats::attaches`].
    pub attaches: u64,
    /// See [`LiveStats::indexes_sent`].
    pub indexes_sent: u64,
    /// See [`LiveStats::beacons_sent`].
    pub beacons_sent: u64,
    /// See [`LiveStats::packet_bytes`].
    pub packet_bytes: u64,
    /// See [`LiveStats::metadata_bytes`].
    pub metadata_bytes: u64,
    /// See [`LiveStats::late_packets_skipped`].
    pub late_packets_skipped: u64,
}

impl LiveStats {
    /// Adds `n` to one counter.
    pub fn add(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            connections: g(&self.connections),
            refused: g(&self.refused),
            malformed: g(&self.malformed),
            attaches: g(&self.attaches),
            indexes_sent: g(&self.indexes_sent),
            beacons_sent: g(&self.beacons_sent),
            packet_bytes: g(&self.packet_bytes),
            metadata_bytes: g(&self.metadata_bytes),
            late_packets_skipped: g(&self.late_packets_skipped),
        }
    }
}

/// The live viewer server.
pub struct LiveServer {
    catalog: Arc<dyn Catalog>,
    config: LiveConfig,
    stats: Arc<LiveStats>,
    registry: Arc<Registry>,
}

/// Serves viewers on `listener` from `catalog` with the default settings,
/// until the listener fails for good.
pub async fn serve(listener: TcpListener, catalog: Arc<dyn Catalog>) -> io::Result<()> {
    LiveServer::new(catalog, LiveConfig::default())
        .run(listener)
        .await
}

impl LiveServer {
    /// A server over `catalog`.
    pub fn new(catalog: Arc<dyn Catalog>, config: LiveConfig) -> LiveServer {
        LiveServer {
            catalog,
            config,
            stats: Arc::new(LiveStats::default()),
            registry: Arc::new(Registry::default()),
        }
    }

    /// The server's counters.
    pub fn stats(&self) -> Arc<LiveStats> {
        Arc::clone(&self.stats)
    }

    /// Serves until the task is dropped.
    pub async fn run(self, listener: TcpListener) -> io::Result<()> {
        self.run_until(listener, std::future::pending()).await
    }

    /// Serves until `shutdown` completes; open connections are then closed.
    pub async fn run_until(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let slots = Arc::new(Semaphore::new(self.config.max_connections));
        let mut conns = tokio::task::JoinSet::new();
        let mut next_viewer_id: u64 = 0;
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                a = listener.accept() => a,
                // Reap finished connection tasks so the set stays small.
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            };
            let (sock, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    eprintln!("strata live: accept failed: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                self.stats.add(&self.stats.refused, 1);
                eprintln!(
                    "strata live: viewer {peer}: refused, {} connections open already",
                    self.config.max_connections
                );
                drop(sock);
                continue;
            };
            self.stats.add(&self.stats.connections, 1);
            next_viewer_id += 1;
            let viewer = Viewer::new(
                Arc::clone(&self.catalog),
                Arc::clone(&self.registry),
                Arc::clone(&self.stats),
                self.config.limits,
                peer.to_string(),
                next_viewer_id,
            );
            let cfg = self.config.clone();
            let stats = Arc::clone(&self.stats);
            conns.spawn(async move {
                let mut sock = sock;
                if let Err(reason) = connection(&mut sock, peer, viewer, &cfg).await {
                    stats.add(&stats.malformed, 1);
                    eprintln!("strata live: viewer {peer}: closing: {reason}");
                }
                // Closed only now, so the counters are right when the
                // viewer sees the end of the connection.
                drop(sock);
                drop(permit);
            });
        }
        conns.shutdown().await;
        Ok(())
    }
}

/// Why a connection ended early; `Ok` is a clean close by the viewer.
type Closed = Result<(), String>;

async fn connection(
    sock: &mut TcpStream,
    peer: SocketAddr,
    viewer: Viewer,
    cfg: &LiveConfig,
) -> Closed {
    // Replies are written whole; the viewer waits for each one.
    let _ = sock.set_nodelay(true);
    let mut viewer = Some(viewer);
    let mut out = Vec::new();
    loop {
        let Some(req) = read_request(sock, cfg).await? else {
            return Ok(());
        };
        // The whole request, holding included, runs on one blocking-pool
        // thread: a held request then costs a sleep per look, not a trip
        // between the runtime and the pool.
        let (max_hold, poll) = (cfg.max_hold, cfg.poll_interval);
        let mut v = viewer.take().ok_or("viewer state lost")?;
        let mut buf = std::mem::take(&mut out);
        let (v, buf, step) = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + max_hold;
            loop {
                let may_wait = std::time::Instant::now() < deadline;
                match v.handle(&req, may_wait, &mut buf) {
                    Step::Wait => std::thread::sleep(poll),
                    step => return (v, buf, step),
                }
            }
        })
        .await
        .map_err(|e| format!("request handler failed: {e}"))?;
        viewer = Some(v);
        out = buf;
        if !out.is_empty() {
            match timeout(cfg.write_timeout, sock.write_all(&out)).await {
                Ok(Ok(())) => {}
                // The viewer went away (Ctrl-C): not the protocol's fault.
                Ok(Err(e)) => {
                    eprintln!("strata live: viewer {peer}: write failed: {e}");
                    return Ok(());
                }
                Err(_) => return Err(format!("viewer took no reply for {:?}", cfg.write_timeout)),
            }
        }
        if let Step::Close(reason) = step {
            return Err(reason);
        }
    }
}

/// Reads one request: `Ok(None)` when the viewer closed between requests.
async fn read_request(sock: &mut TcpStream, cfg: &LiveConfig) -> Result<Option<Request>, String> {
    let mut h = [0u8; HEADER_LEN];
    let first = match timeout(cfg.idle_timeout, sock.read(&mut h)).await {
        Err(_) => return Err(format!("no request for {:?}", cfg.idle_timeout)),
        Ok(Err(e)) => {
            // A reset between requests is a viewer leaving, not an attack.
            eprintln!("strata live: read failed: {e}");
            return Ok(None);
        }
        Ok(Ok(0)) => return Ok(None),
        Ok(Ok(n)) => n,
    };
    read_rest(sock, &mut h[first..], cfg, "request header").await?;
    let header = proto::parse_header(&h);
    let cmd = proto::check_header(&header).map_err(|e| e.to_string())?;
    let mut payload = [0u8; 24];
    let p = payload
        .get_mut(..cmd.payload_len())
        .ok_or("payload larger than any command's")?;
    read_rest(sock, p, cfg, "request payload").await?;
    proto::parse_request(cmd, p)
        .map(Some)
        .map_err(|e| e.to_string())
}

async fn read_rest(
    sock: &mut TcpStream,
    buf: &mut [u8],
    cfg: &LiveConfig,
    what: &str,
) -> Result<(), String> {
    if buf.is_empty() {
        return Ok(());
    }
    match timeout(cfg.request_timeout, sock.read_exact(buf)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Err(format!("connection closed in the middle of a {what}"))
        }
        Ok(Err(e)) => Err(format!("reading {what}: {e}")),
        Err(_) => Err(format!(
            "{what} not completed within {:?}",
            cfg.request_timeout
        )),
    }
}
