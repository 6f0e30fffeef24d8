//! The agent-facing server: accepts connections (TLS unless insecure),
//! runs the handshake of `docs/protocol.md` (version, token, names, one
//! connection per host and session), then hands each frame to the host's
//! [`host::HostIngest`] and sends acks, heartbeats and goodbyes.
//!
//! A connection that breaks the rules is dropped with a logged reason and
//! counted by reason; the others are not affected: malformed or oversized
//! frames, a wrong token, a first frame that is not Hello, nothing for
//! three heartbeat intervals, or a frame still incomplete after
//! `frame_timeout` (a slow-loris client).

pub mod conn;
pub mod host;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::registry::Registry;
use crate::tokens::Tokens;
pub use host::{HostIngest, IngestError, StoreConfig};

/// How the ingest server behaves.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Storage and live analysis.
    pub store: Arc<StoreConfig>,
    /// Who may send as which host.
    pub tokens: Tokens,
    /// TLS, unless the relay runs `--insecure`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The largest frame body accepted.
    pub max_body: u32,
    /// The heartbeat interval announced to agents; three without a byte
    /// drop the connection.
    pub heartbeat: Duration,
    /// Time from connect to a complete Hello (TLS included).
    pub handshake_timeout: Duration,
    /// Time from a frame's first byte to its last.
    pub frame_timeout: Duration,
    /// How often stored data is committed and acknowledged.
    pub commit_interval: Duration,
    /// Bytes stored that force a commit before the interval.
    pub commit_bytes: u64,
    /// How often the reorder buffer is drained without new data.
    pub tick: Duration,
}

impl IngestConfig {
    /// Defaults around a store configuration and tokens.
    pub fn new(
        store: Arc<StoreConfig>,
        tokens: Tokens,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> IngestConfig {
        IngestConfig {
            store,
            tokens,
            tls,
            max_body: strata_wire::DEFAULT_MAX_BODY,
            heartbeat: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(10),
            commit_interval: Duration::from_millis(100),
            commit_bytes: 4 << 20,
            tick: Duration::from_millis(10),
        }
    }
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Silences [`log`] for the whole process: an embedded relay under a
/// full-screen viewer must not write over its screen.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Logs one line on stderr with the wall-clock time.
pub fn log(msg: std::fmt::Arguments<'_>) {
    if QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let ms = crate::registry::unix_ms();
    eprintln!("strata relay: [{}.{:03}] {msg}", ms / 1000, ms % 1000);
}

/// Accepts agents on `listener` until `shutdown` turns true; each
/// connection runs in its own task.
pub async fn serve(
    listener: TcpListener,
    cfg: Arc<IngestConfig>,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let acceptor = cfg.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (sock, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, go on.
                        log(format_args!("accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = sock.set_nodelay(true);
                let cfg = Arc::clone(&cfg);
                let registry = Arc::clone(&registry);
                let acceptor = acceptor.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    conn::run(sock, peer.to_string(), acceptor, cfg, registry, shutdown).await;
                });
            }
            r = shutdown.changed() => {
                // A dropped sender is a shutdown too: `changed` would
                // otherwise return at once forever and spin this loop.
                if r.is_err() || *shutdown.borrow() {
                    return Ok(());
                }
            }
        }
    }
}
