//! The hosts the relay knows, their connection state and live analyses,
//! and the relay-wide counters; shared by the ingest connections (writers)
//! and the HTTP API (readers).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::analysis::report::LatencySummary;
use crate::analysis::{latency_histogram, LiveHost};

/// Locks a mutex, taking the data of a poisoned one (a panicked holder
/// leaves counters, not broken invariants).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> i64 {
    crate::analysis::unix_now_ns() / 1_000_000
}

/// What the API says about a host's connection.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HostStatus {
    /// `connected` or `disconnected`.
    pub state: &'static str,
    /// The session.
    pub session: String,
    /// The host id the agent sent.
    pub host: String,
    /// The kernel's host name.
    pub hostname: String,
    /// The agent software and version.
    pub agent_version: String,
    /// `live` (ftrace pages) or `replay` (CTF packets).
    pub source: &'static str,
    /// The agent's address.
    pub peer: String,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// When the current (or last) connection was accepted, ms since the epoch.
    pub connected_since_ms: i64,
    /// When the relay last heard from the agent, ms since the epoch.
    pub last_seen_ms: i64,
    /// Why the last connection ended, when it did.
    pub disconnect_reason: Option<String>,
    /// The agent run sending now.
    pub instance: u64,
    /// The last sequence number stored.
    pub last_seq: u64,
    /// CPUs the host declares.
    pub cpus: u32,
    /// The trace directory being written.
    pub trace_dir: String,
    /// Events stored in the current trace directory.
    pub events: u64,
    /// Bytes received from the agent (frames, as sent).
    pub wire_bytes: u64,
    /// Connections accepted for this host since the relay started.
    pub connections: u64,
}

/// One host of one session.
#[derive(Debug)]
pub struct HostEntry {
    /// Connection state and counters.
    pub status: Mutex<HostStatus>,
    /// The live analyses, once metadata arrived.
    pub live: Mutex<Option<LiveHost>>,
    /// The connection asked to give up the host (0: none): a newer
    /// connection of the same agent run takes over.
    pub kick_request: AtomicU64,
    /// The connection that holds the host (0: none).
    pub holder: AtomicU64,
}

/// Relay-wide counters.
#[derive(Debug, Default)]
pub struct Totals {
    /// Events decoded and stored.
    pub events: AtomicU64,
    /// Bytes received in frames.
    pub wire_bytes: AtomicU64,
    /// Bytes written to trace files.
    pub stored_bytes: AtomicU64,
    /// Data frames stored.
    pub frames: AtomicU64,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections refused at the handshake, and dropped later.
    pub dropped: Mutex<BTreeMap<&'static str, u64>>,
}

impl Totals {
    /// Counts a connection that ended for `reason` (a short label).
    pub fn drop_reason(&self, reason: &'static str) {
        *lock(&self.dropped).entry(reason).or_insert(0) += 1;
    }
}

/// Everything the relay knows about its hosts.
#[derive(Debug)]
pub struct Registry {
    hosts: Mutex<BTreeMap<(String, String), Arc<HostEntry>>>,
    /// Relay-wide counters.
    pub totals: Totals,
    /// Live latency of every event applied, all hosts.
    pub latency: Mutex<Histogram<u64>>,
    next_conn: AtomicU64,
    /// Command channels to the agents, snapshots, event changes.
    pub control_state: crate::control::ControlState,
    /// The rules, when the relay runs with `--rules`.
    pub rules: OnceLock<Arc<crate::rules::RulesRuntime>>,
    /// Guest hosts (agents that said they are a VM), by VM UUID.
    pub guest_feeds: crate::analysis::vm_live::GuestFeeds,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry {
            hosts: Mutex::new(BTreeMap::new()),
            totals: Totals::default(),
            latency: Mutex::new(latency_histogram()),
            next_conn: AtomicU64::new(1),
            control_state: Default::default(),
            rules: OnceLock::new(),
            guest_feeds: Default::default(),
        }
    }

    /// A fresh connection number (never 0).
    pub fn connection_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The entry of `host` in `session`, created when new.
    pub fn entry(&self, session: &str, host: &str) -> Arc<HostEntry> {
        let mut hosts = lock(&self.hosts);
        Arc::clone(
            hosts
                .entry((session.to_string(), host.to_string()))
                .or_insert_with(|| {
                    Arc::new(HostEntry {
                        status: Mutex::new(HostStatus {
                            state: "disconnected",
                            session: session.to_string(),
                            host: host.to_string(),
                            ..HostStatus::default()
                        }),
                        live: Mutex::new(None),
                        kick_request: AtomicU64::new(0),
                        holder: AtomicU64::new(0),
                    })
                }),
        )
    }

    /// Every host, ordered by session then host.
    pub fn hosts(&self) -> Vec<Arc<HostEntry>> {
        lock(&self.hosts).values().cloned().collect()
    }

    /// The hosts named `host` (in any session, or in `session` when given).
    pub fn find(&self, host: &str, session: Option<&str>) -> Vec<Arc<HostEntry>> {
        lock(&self.hosts)
            .iter()
            .filter(|((s, h), _)| h == host && session.is_none_or(|x| x == s))
            .map(|(_, e)| Arc::clone(e))
            .collect()
    }

    /// The relay-wide live-latency summary.
    pub fn latency_summary(&self) -> LatencySummary {
        LatencySummary::of(&lock(&self.latency))
    }
}
