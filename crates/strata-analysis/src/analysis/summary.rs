//! `summary`: what a trace holds: time range, hosts, CPUs, event counts per
//! type, lost events per CPU, the busiest threads, and what the state
//! system could not attribute.

use serde::Serialize;

use super::common::{cut, pct, Row, Rows, ThreadName};
use crate::observer::{RunSlice, SyscallDone};
use crate::state::{Anomalies, Idents, Machine, Serial};

/// CPU time and syscalls of one thread.
#[derive(Debug, Clone, Copy, Default)]
struct Busy(i64, u64);

impl Row for Busy {
    fn score(&self) -> u64 {
        self.0.max(0) as u64
    }
    fn is_empty(&self) -> bool {
        self.0 == 0 && self.1 == 0
    }
    fn merge(&mut self, o: &Self) {
        self.0 = self.0.saturating_add(o.0);
        self.1 += o.1;
    }
}

/// The summary accumulator (per host).
#[derive(Debug, Clone)]
pub struct Summary {
    begin: i64,
    rows: Rows<Busy>,
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
    pub threads_seen: u64,
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
    /// An empty summary keeping `keep` dead threads' rows.
    pub fn new(keep: usize) -> Summary {
        Summary {
            begin: i64::MIN,
            rows: Rows::new(keep),
            syscalls: 0,
        }
    }

    /// A thread is gone.
    pub fn thread_freed(&mut self, ids: &Idents, s: Serial) {
        self.rows.freed(ids, s);
    }

    /// The analysed period begins at `ts`.
    pub fn begin(&mut self, ts: i64) {
        self.begin = ts;
    }

    /// Counts a run slice.
    pub fn run(&mut self, ids: &Idents, s: &RunSlice) {
        let from = s.from.max(self.begin);
        if s.to > from && ids.tid(s.thread) != 0 {
            let r = self.rows.get(s.thread);
            r.0 = r.0.saturating_add(s.to.saturating_sub(from));
        }
    }

    /// Counts a syscall.
    pub fn syscall(&mut self, d: &SyscallDone) {
        self.rows.get(d.thread).1 += 1;
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
        let rows = self.rows.rows(m.idents());
        SummaryReport {
            cpus: m.cpu_count(),
            threads_seen: m.threads_seen(),
            events: counts.iter().map(|c| c.count).sum(),
            event_counts: counts,
            lost,
            syscalls: self.syscalls,
            top_threads: cut(rows, if top == 0 { 10 } else { top })
                .into_iter()
                .map(|(thread, b)| BusyThread {
                    thread,
                    cpu_ns: b.0,
                    usage_pct: pct(b.0 as f64, duration as f64),
                    syscalls: b.1,
                })
                .collect(),
            anomalies: m.anomalies(),
        }
    }
}
