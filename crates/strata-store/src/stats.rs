//! Counters of a recording: live ones for a status line, and the final
//! summary `finish` returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counters updated while recording and readable from any thread.
#[derive(Debug)]
pub struct LiveStats {
    started: Instant,
    events: AtomicU64,
    bytes: AtomicU64,
    lost: AtomicU64,
    dropped: AtomicU64,
}

/// One reading of [`LiveStats`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveSnapshot {
    /// Time since the writer was created.
    pub elapsed: Duration,
    /// Events written (statedump included).
    pub events: u64,
    /// Bytes written to stream and index files.
    pub bytes: u64,
    /// Events the kernel reported lost (unknown counts taken as 1).
    pub lost: u64,
    /// Records the writer could not convert (unknown type, truncated).
    pub dropped: u64,
}

impl LiveSnapshot {
    /// Average events per second since the start.
    pub fn events_per_sec(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.events as f64 / s
        } else {
            0.0
        }
    }
}

impl Default for LiveStats {
    fn default() -> Self {
        LiveStats {
            started: Instant::now(),
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

impl LiveStats {
    /// Reads the counters.
    pub fn snapshot(&self) -> LiveSnapshot {
        LiveSnapshot {
            elapsed: self.started.elapsed(),
            events: self.events.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add_events(&self, n: u64) {
        self.events.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_lost(&self, n: u64) {
        self.lost.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }
}

/// The summary of a finished trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceStats {
    /// Events written per event name, sorted by name; names with no event
    /// are left out.
    pub events_by_name: Vec<(String, u64)>,
    /// Events lost per CPU as the kernel reported them (an unknown count
    /// counts as 1).
    pub lost_per_cpu: Vec<u64>,
    /// Per CPU, how many losses had an unknown count.
    pub unknown_losses_per_cpu: Vec<u64>,
    /// Records dropped because no format described their type.
    pub unknown_type: u64,
    /// Records dropped because they were shorter than their format.
    pub truncated: u64,
    /// Events whose timestamp went backwards and were written with the
    /// previous one's.
    pub clamped: u64,
    /// Packets written.
    pub packets: u64,
    /// Bytes written: metadata, streams and indexes.
    pub bytes: u64,
}

impl TraceStats {
    /// Total events written.
    pub fn events(&self) -> u64 {
        self.events_by_name.iter().map(|(_, n)| n).sum()
    }

    /// Events written named `name`.
    pub fn count(&self, name: &str) -> u64 {
        self.events_by_name
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, c)| *c)
    }
}
