//! `sched`: wakeup-to-run latency (from a thread's first `sched_waking` or
//! `sched_wakeup` since it last ran, to its `sched_switch` in) per thread,
//! per process, per priority and in total, with histograms, and the largest
//! single latencies.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use serde::Serialize;

use super::common::{cut, Row, Rows, ThreadName};
use crate::filter::Filter;
use crate::observer::WakeupDone;
use crate::state::{Idents, Machine, Serial};
use crate::stats::{Bucket, Hist, Percentiles, Stats, StatsSummary};

/// (latency, wakeup time, cpu, prio, wakee, waker), ordered by latency.
type Worst = (i64, i64, u32, Option<i32>, ThreadName, Option<ThreadName>);

/// One thread's latencies, ranked by their maximum.
#[derive(Debug, Clone, Copy, Default)]
struct Lat(Stats);

impl Row for Lat {
    fn score(&self) -> u64 {
        self.0.max.max(0) as u64
    }
    fn is_empty(&self) -> bool {
        self.0.count == 0
    }
    fn merge(&mut self, o: &Self) {
        self.0.merge(&o.0);
    }
}

#[derive(Debug, Clone, Default)]
struct Series {
    stats: Stats,
    hist: Hist,
}

impl Series {
    fn add(&mut self, v: i64) {
        self.stats.add(v);
        self.hist.add(v);
    }
}

/// The sched accumulator.
#[derive(Debug, Clone)]
pub struct Sched {
    filter: Filter,
    top: usize,
    threads: Rows<Lat>,
    prios: BTreeMap<i32, Series>,
    total: Series,
    worst: BinaryHeap<Reverse<Worst>>,
}

/// Latency of one thread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadLatency {
    /// Who.
    #[serde(flatten)]
    pub thread: ThreadName,
    /// Latencies, ns.
    #[serde(flatten)]
    pub stats: StatsSummary,
}

/// Latency of one process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessLatency {
    /// Process id.
    pub pid: i32,
    /// Its name.
    pub name: String,
    /// Threads with samples.
    pub threads: u32,
    /// Latencies, ns.
    #[serde(flatten)]
    pub stats: StatsSummary,
}

/// Latency at one priority.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrioLatency {
    /// Priority (LTTng's: kernel prio - 100; 20 is nice 0, negative is real-time).
    pub prio: i32,
    /// Latencies, ns.
    #[serde(flatten)]
    pub stats: StatsSummary,
    /// Percentiles.
    pub percentiles: Option<Percentiles>,
}

/// One wakeup with a large latency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Wakeup {
    /// Wakeup time, ns since the epoch.
    pub wakeup_ns: i64,
    /// Switch-in time, ns since the epoch.
    pub switch_ns: i64,
    /// Latency, ns.
    pub latency_ns: i64,
    /// CPU it was switched in on.
    pub cpu: u32,
    /// Priority.
    pub prio: Option<i32>,
    /// The woken thread.
    pub wakee: ThreadName,
    /// The thread running where the wakeup happened, if any.
    pub waker: Option<ThreadName>,
}

/// What `sched` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchedReport {
    /// All samples, ns.
    pub total: StatsSummary,
    /// Percentiles of all samples.
    pub percentiles: Option<Percentiles>,
    /// Distribution of all samples, power-of-two buckets.
    pub histogram: Vec<Bucket>,
    /// Per priority.
    pub prios: Vec<PrioLatency>,
    /// Per process, largest maximum first (cut to `--top`).
    pub processes: Vec<ProcessLatency>,
    /// Per thread, largest maximum first (cut to `--top`).
    pub threads: Vec<ThreadLatency>,
    /// The largest single latencies (`--top` of them).
    pub worst: Vec<Wakeup>,
}

impl Sched {
    /// An accumulator counting what `filter` selects, keeping the `top`
    /// largest latencies (10 when 0) and `keep` dead threads' rows
    /// ([`super::common::keep_for`]).
    pub fn new(filter: Filter, top: usize, keep: usize) -> Sched {
        Sched {
            filter,
            top: if top == 0 { 10 } else { top },
            threads: Rows::new(keep),
            prios: BTreeMap::new(),
            total: Series::default(),
            worst: BinaryHeap::new(),
        }
    }

    /// Counts one wakeup-to-run latency.
    pub fn wakeup(&mut self, ids: &Idents, d: &WakeupDone) {
        if !self.filter.cpu_ok(d.cpu) || !self.filter.thread_ok(ids, d.thread) {
            return;
        }
        let lat = d.switched_in.saturating_sub(d.wakeup);
        self.threads.get(d.thread).0.add(lat);
        if let Some(p) = d.prio {
            self.prios.entry(p).or_default().add(lat);
        }
        self.total.add(lat);
        // Named now: the serials may belong to other threads by the end.
        let item = || {
            Reverse((
                lat,
                d.wakeup,
                d.cpu,
                d.prio,
                ThreadName::of(ids, d.thread),
                d.waker.map(|w| ThreadName::of(ids, w)),
            ))
        };
        if self.worst.len() < self.top {
            self.worst.push(item());
        } else if self.worst.peek().is_some_and(|w| w.0 .0 < lat) {
            self.worst.pop();
            self.worst.push(item());
        }
    }

    /// A thread is gone.
    pub fn thread_freed(&mut self, ids: &Idents, s: Serial) {
        self.threads.freed(ids, s);
    }

    /// The report.
    pub fn report(&self, m: &Machine, top: usize) -> SchedReport {
        let ids = m.idents();
        let threads = self.threads.rows(ids);
        let processes = self.threads.processes(ids);
        let mut worst: Vec<_> = self.worst.iter().map(|r| r.0.clone()).collect();
        worst.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        SchedReport {
            total: self.total.stats.summary(),
            percentiles: self.total.hist.percentiles(),
            histogram: self.total.hist.log2_buckets(),
            prios: self
                .prios
                .iter()
                .map(|(&prio, s)| PrioLatency {
                    prio,
                    stats: s.stats.summary(),
                    percentiles: s.hist.percentiles(),
                })
                .collect(),
            processes: cut(processes, top)
                .into_iter()
                .map(|(pid, name, n, st)| ProcessLatency {
                    pid,
                    name,
                    threads: n,
                    stats: st.0.summary(),
                })
                .collect(),
            threads: cut(threads, top)
                .into_iter()
                .map(|(name, st)| ThreadLatency {
                    thread: name,
                    stats: st.0.summary(),
                })
                .collect(),
            worst: worst
                .into_iter()
                .map(|(lat, wakeup, cpu, prio, wakee, waker)| Wakeup {
                    wakeup_ns: wakeup,
                    switch_ns: wakeup.saturating_add(lat),
                    latency_ns: lat,
                    cpu,
                    prio,
                    wakee,
                    waker,
                })
                .collect(),
        }
    }
}
