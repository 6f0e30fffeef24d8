//! `summary`: what a trace holds: time range, hosts, CPUs, event counts per
//! type, lost events per CPU, the busiest threads, and what the state
//! system could not attribute.

use serde::Serialize;

use super::common::{cut, pct, ThreadName};
use crate::observer::{RunSlice, SyscallDone};
use crate::state::{Anomalies, Idents, Machine, Serial};

/// The summary accumulator (per host).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    begin: i64,
    rows: Vec<(i64, u64)>,
    syscalls: u64,
}

/// Events of one type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventCount {
    /// Event name.
    pub name: String,
    /// Events in the period.
    pub count: u64,
}

/// Events lost on one CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostEvents {
    /// The CPU.
    pub cpu: u32,
    /// Events the tracer discarded there during the period.
    pub lost: u64,
}

/// A busy thread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusyThread {
    /// Who.
    #[serde(flatten)]
    pub thread: ThreadName,
    /// CPU time, ns.
    pub cpu_ns: i64,
    /// CPU time over the period, percent of one CPU.
    pub usage_pct: f64,
    /// Syscalls it made.
    pub syscalls: u64,
}

/// What `summary` reports for one host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryReport {
    /// CPUs that had events.
    pub cpus: usize,
    /// Thread instances seen (a reused tid counts again).
    pub threads_seen: usize,
    /// Events in the period.
    pub events: u64,
    /// Per event type, most frequent first.
    pub event_counts: Vec<EventCount>,
    /// Lost events per CPU (only CPUs that lost some).
    pub lost: Vec<LostEvents>,
    /// Completed syscalls.
    pub syscalls: u64,
    /// Threads by CPU time (cut to `--top`).
    pub top_threads: Vec<BusyThread>,
    /// What could not be attributed.
    pub anomalies: Anomalies,
}

impl Summary {
    /// An empty summary.
    pub fn new() -> Summary {
        Summary::default()
    }

    /// The analysed period begins at `ts`.
    pub fn begin(&mut self, ts: i64) {
        self.begin = ts;
    }

    fn row(&mut self, s: Serial) -> &mut (i64, u64) {
        let i = s as usize;
        if self.rows.len() <= i {
            self.rows.resize(i + 1, (0, 0));
        }
        &mut self.rows[i]
    }

    /// Counts a run slice.
    pub fn run(&mut self, ids: &Idents, s: &RunSlice) {
        let from = s.from.max(self.begin);
        if s.to > from && ids.tid(s.thread) != 0 {
            self.row(s.thread).0 += s.to.saturating_sub(from);
        }
    }

    /// Counts a syscall.
    pub fn syscall(&mut self, d: &SyscallDone) {
        self.row(d.thread).1 += 1;
        self.syscalls += 1;
    }

    /// The report; `counts` and `lost` come from the reader.
    pub fn report(
        &self,
        m: &Machine,
        duration: i64,
        counts: Vec<EventCount>,
        lost: Vec<LostEvents>,
        top: usize,
    ) -> SummaryReport {
        let ids = m.idents();
        let mut rows: Vec<(Serial, (i64, u64))> = self
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.0 > 0 || r.1 > 0)
            .map(|(i, r)| (i as Serial, *r))
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(ids.tid(a.0).cmp(&ids.tid(b.0))));
        SummaryReport {
            cpus: m.cpu_count(),
            threads_seen: ids.len(),
            events: counts.iter().map(|c| c.count).sum(),
            event_counts: counts,
            lost,
            syscalls: self.syscalls,
            top_threads: cut(rows, if top == 0 { 10 } else { top })
                .into_iter()
                .map(|(s, (ns, sc))| BusyThread {
                    thread: ThreadName::of(ids, s),
                    cpu_ns: ns,
                    usage_pct: pct(ns as f64, duration as f64),
                    syscalls: sc,
                })
                .collect(),
            anomalies: m.anomalies(),
        }
    }
}
