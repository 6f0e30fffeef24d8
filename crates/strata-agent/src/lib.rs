//! The host daemon as a library: a source (tracefs raw pages, or a recorded
//! CTF trace replayed), the outbox of sequenced frames with its memory
//! buffer and on-disk spool, and the sender that keeps a connection to the
//! relay, resends after reconnects, and applies the relay's commands.
//!
//! [`run`] is the whole agent: it sets the source up, starts the sender
//! thread, streams until `stop` is set (or the replay ends), then waits a
//! bounded time for the relay to acknowledge everything.
//!
//! The protocol is `strata-wire`'s, specified in `docs/protocol.md`.

#![warn(missing_docs)]

pub mod error;
pub mod feed;
pub mod flight;
pub mod link;
pub mod live;
pub mod metadata;
pub mod outbox;
pub mod replay;
pub mod sender;
mod spool;
pub mod testkit;
mod tsc_clock;
mod waker;

pub use error::AgentError;
pub use flight::{FlightOptions, FlightRing};
pub use link::{
    client_config, host_of, start_stdio_bridge, stdio_closed, Link, LinkError, Security,
    STDIO_RELAY,
};
pub use live::{LiveOptions, LiveReport, LiveSource};
pub use metadata::MetadataState;
pub use outbox::{Outbox, OutboxStats, Unacked};
pub use replay::{ReplayOptions, ReplayReport, ReplaySource};
pub use sender::{SenderConfig, SenderStats};
pub use spool::Spool;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use strata_core::HostInfo;
use strata_store::ThreadState;
use strata_wire::{Compression, Source, ThreadRow};

/// What the agent streams.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// This host's kernel, through a private tracefs instance.
    Live(LiveOptions),
    /// A recorded CTF trace, paced as if live.
    Replay(ReplayOptions),
}

/// Everything the agent needs besides its source.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `host:port` of the relay.
    pub relay: String,
    /// TLS or plaintext.
    pub security: Security,
    /// The token sent in the handshake.
    pub token: String,
    /// The session name.
    pub session: String,
    /// The name the relay files this host under.
    pub host_id: String,
    /// This host's identity.
    pub host: HostInfo,
    /// Unacknowledged frames kept in memory, in bytes.
    pub memory_max: usize,
    /// The on-disk spool directory and its size limit.
    pub spool: Option<(PathBuf, u64)>,
    /// Frame compression.
    pub compression: Compression,
    /// Heartbeat interval (the relay's Welcome may override it).
    pub heartbeat: Duration,
    /// How long to wait for the final acks when stopping.
    pub final_ack_wait: Duration,
    /// Longest pause between reconnection attempts.
    pub max_backoff: Duration,
    /// No progress messages on stderr.
    pub quiet: bool,
    /// Flight mode: where snapshots go, each on a connection of its own
    /// (`None`: `relay`). A VM whose only link to the relay is a serial
    /// port, held by the main connection, gives a second port here.
    pub snapshot_relay: Option<String>,
}

impl AgentConfig {
    /// A configuration with the defaults for everything but the relay
    /// address and the host.
    pub fn new(relay: &str, host: HostInfo) -> AgentConfig {
        AgentConfig {
            relay: relay.to_string(),
            security: Security::Plaintext,
            token: String::new(),
            session: "strata".into(),
            host_id: host.hostname.clone(),
            host,
            memory_max: 16 << 20,
            spool: None,
            compression: Compression::None,
            heartbeat: Duration::from_secs(2),
            final_ack_wait: Duration::from_secs(5),
            max_backoff: Duration::from_secs(10),
            quiet: false,
            snapshot_relay: None,
        }
    }
}

/// What a finished agent run did.
#[derive(Debug, Clone, Default)]
pub struct AgentReport {
    /// The live source's report.
    pub live: Option<LiveReport>,
    /// The replay source's report.
    pub replay: Option<ReplayReport>,
    /// The outbox counters at the end.
    pub outbox: OutboxStats,
    /// The sender counters at the end.
    pub sender: SenderStats,
    /// Frames never acknowledged (the relay was unreachable, or made no
    /// progress for the final wait, at the end).
    pub unacked_frames: u64,
    /// Exactly what was never acknowledged: frames, bytes, events, pages.
    /// Not zero means the relay may not have stored that data.
    pub unacked: Unacked,
}

/// The wire form of a state dump row.
pub fn thread_row(t: &ThreadState) -> ThreadRow {
    ThreadRow {
        tid: t.tid,
        pid: t.pid,
        ppid: t.ppid,
        name: t.name,
        kernel_thread: t.kernel_thread,
        status: t.status,
        cpu: t.cpu,
        vtid: t.vtid,
        vpid: t.vpid,
        vppid: t.vppid,
        ns_level: t.ns_level,
        ns_inum: t.ns_inum,
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        if f.read_exact(&mut b).is_ok() {
            return u64::from_le_bytes(b);
        }
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ ((std::process::id() as u64) << 32)
}

/// Runs the agent until `stop` is set (live) or the replay ends, then waits
/// for the relay to acknowledge everything, for as long as the relay makes
/// progress and at most `final_ack_wait` without any. What is still not
/// acknowledged then is counted in [`AgentReport::unacked`].
pub fn run(
    config: AgentConfig,
    source: SourceConfig,
    stop: Arc<AtomicBool>,
) -> Result<AgentReport, AgentError> {
    let instance = random_u64();
    let spool = match &config.spool {
        Some((dir, max)) => {
            Some(
                Spool::open(dir, instance, *max).map_err(|source| AgentError::Io {
                    what: "cannot open the spool directory",
                    path: dir.clone(),
                    source,
                })?,
            )
        }
        None => None,
    };
    let outbox = Outbox::new(config.memory_max, spool).map_err(|source| AgentError::Io {
        what: "cannot create an eventfd for",
        path: PathBuf::from("the sender"),
        source,
    })?;
    let tls = match &config.security {
        Security::Plaintext => None,
        Security::Tls {
            ca,
            client,
            server_name,
        } => {
            let cfg = client_config(ca, client.as_ref().map(|(c, k)| (c.as_path(), k.as_path())))?;
            let name = server_name
                .clone()
                .unwrap_or_else(|| host_of(&config.relay).to_string());
            Some((cfg, name))
        }
    };
    let mut metadata = MetadataState::default();
    enum Prepared {
        Live(Box<LiveSource>),
        Replay(Box<ReplaySource>),
    }
    let (mut prepared, wire_source) = match source {
        SourceConfig::Live(opts) => (
            Prepared::Live(Box::new(LiveSource::setup(opts, &mut metadata)?)),
            Source::Live,
        ),
        SourceConfig::Replay(opts) => (
            Prepared::Replay(Box::new(ReplaySource::open(opts, &mut metadata)?)),
            Source::Replay,
        ),
    };
    let mut host = config.host.clone();
    if matches!(prepared, Prepared::Replay(_)) {
        // A replayed trace keeps its own CPUs; this machine's count would
        // misdescribe it to the relay and its viewers.
        if let Some(max) = metadata.cpus.iter().max() {
            host.cpu_count = max + 1;
        }
    }
    let metadata = Arc::new(Mutex::new(metadata));
    let sender_cfg = SenderConfig {
        relay: config.relay.clone(),
        tls,
        host_id: config.host_id.clone(),
        host,
        token: config.token.clone(),
        session: config.session.clone(),
        source: wire_source,
        instance,
        compression: config.compression,
        heartbeat: config.heartbeat,
        connect_timeout: Duration::from_secs(5),
        max_backoff: config.max_backoff,
        final_ack_wait: config.final_ack_wait,
        quiet: config.quiet,
    };
    if let Prepared::Live(src) = &mut prepared {
        let mut link = sender_cfg.clone();
        if let Some(r) = &config.snapshot_relay {
            link.relay = r.clone();
        }
        src.set_snapshot_link(link);
    }
    let (ctl_tx, ctl_rx) = mpsc::channel();
    let stats = Arc::new(Mutex::new(SenderStats::default()));
    let abort = Arc::new(AtomicBool::new(false));
    outbox.add_cancel(Arc::clone(&stop));
    outbox.add_cancel(Arc::clone(&abort));
    let sender = {
        let outbox = outbox.clone();
        let metadata = Arc::clone(&metadata);
        let stats = Arc::clone(&stats);
        let abort = Arc::clone(&abort);
        std::thread::Builder::new()
            .name("strata-sender".into())
            .spawn(move || sender::run(sender_cfg, outbox, metadata, ctl_tx, stats, abort))
            .map_err(|source| AgentError::Io {
                what: "cannot start the sender thread for",
                path: PathBuf::from(&config.relay),
                source,
            })?
    };
    let mut report = AgentReport::default();
    let source_result = match prepared {
        Prepared::Live(src) => src
            .run(&outbox, &metadata, &ctl_rx, &stop, &abort)
            .map(|r| report.live = Some(r)),
        Prepared::Replay(src) => src
            .run(&outbox, &ctl_rx, &stop, &abort)
            .map(|r| report.replay = Some(r)),
    };
    outbox.close();
    let sender_result = sender
        .join()
        .unwrap_or_else(|_| Err(AgentError::Config("the sender thread panicked".into())));
    report.outbox = outbox.stats();
    report.sender = stats.lock().map(|s| s.clone()).unwrap_or_default();
    report.unacked = outbox.unacked();
    report.unacked_frames = report.unacked.frames;
    let _ = stop.load(Ordering::Relaxed);
    sender_result?;
    source_result?;
    Ok(report)
}
