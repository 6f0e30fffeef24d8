//! `cputop`: CPU time per thread, per process and per CPU, from the run
//! slices of the state system. IRQ and softirq time counts as the
//! interrupted thread's, as in lttng-analyses and `top`.

use serde::Serialize;

use super::common::{cut, pct, Row, Rows, ThreadName};
use crate::filter::Filter;
use crate::observer::RunSlice;
use crate::state::{Idents, Machine, Serial};

/// Distinct priorities kept per thread.
const MAX_PRIOS: usize = 4;

#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    ns: i64,
    migrations: u32,
    prios: [i32; MAX_PRIOS],
    nprios: u8,
}

impl Row for Usage {
    fn score(&self) -> u64 {
        self.ns.max(0) as u64
    }
    fn is_empty(&self) -> bool {
        self.ns == 0 && self.migrations == 0
    }
    fn merge(&mut self, o: &Self) {
        self.ns = self.ns.saturating_add(o.ns);
        self.migrations = self.migrations.saturating_add(o.migrations);
    }
}

/// The cputop accumulator.
#[derive(Debug, Clone)]
pub struct Cputop {
    filter: Filter,
    begin: i64,
    cpus: Vec<i64>,
    rows: Rows<Usage>,
}

/// CPU usage of one CPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuUsage {
    /// The CPU.
    pub cpu: u32,
    /// Time it ran selected threads, ns.
    pub busy_ns: i64,
    /// `busy_ns` over the period, percent.
    pub usage_pct: f64,
}

/// CPU usage of one thread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadUsage {
    /// Who.
    #[serde(flatten)]
    pub thread: ThreadName,
    /// CPU time, ns.
    pub cpu_ns: i64,
    /// CPU time over the period, percent of one CPU.
    pub usage_pct: f64,
    /// `sched_migrate_task` events for it.
    pub migrations: u32,
    /// Priorities it ran with (LTTng's: kernel prio - 100; 20 is nice 0).
    pub prios: Vec<i32>,
}

/// CPU usage of one process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessUsage {
    /// Process id.
    pub pid: i32,
    /// Its name.
    pub name: String,
    /// Threads of it that ran.
    pub threads: u32,
    /// CPU time, ns.
    pub cpu_ns: i64,
    /// CPU time over the period, percent of one CPU.
    pub usage_pct: f64,
}

/// What `cputop` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CputopReport {
    /// Threads by CPU time, descending (cut to `--top`).
    pub threads: Vec<ThreadUsage>,
    /// Processes by CPU time, descending (cut to `--top`).
    pub processes: Vec<ProcessUsage>,
    /// Every selected CPU, by number.
    pub cpus: Vec<CpuUsage>,
    /// Mean usage of the listed CPUs, percent.
    pub total_pct: f64,
}

impl Cputop {
    /// An accumulator counting what `filter` selects, keeping `keep` dead
    /// threads' rows ([`super::common::keep_for`]).
    pub fn new(filter: Filter, keep: usize) -> Cputop {
        Cputop {
            filter,
            begin: i64::MIN,
            cpus: Vec::new(),
            rows: Rows::new(keep),
        }
    }

    /// The analysed period begins at `ts`: earlier time is not counted.
    pub fn begin(&mut self, ts: i64) {
        self.begin = ts;
    }

    /// A thread is gone.
    pub fn thread_freed(&mut self, ids: &Idents, s: Serial) {
        self.rows.freed(ids, s);
    }

    /// Counts a run slice.
    #[inline]
    pub fn run(&mut self, ids: &Idents, s: &RunSlice) {
        let from = s.from.max(self.begin);
        if s.to <= from || !self.filter.cpu_ok(s.cpu) || !self.filter.thread_ok(ids, s.thread) {
            return;
        }
        let d = s.to.saturating_sub(from);
        let c = s.cpu as usize;
        if self.cpus.len() <= c {
            self.cpus.resize(c + 1, 0);
        }
        self.cpus[c] = self.cpus[c].saturating_add(d);
        let r = self.rows.get(s.thread);
        r.ns = r.ns.saturating_add(d);
        if let Some(p) = s.prio {
            let n = r.nprios as usize;
            if !r.prios[..n].contains(&p) && n < MAX_PRIOS {
                r.prios[n] = p;
                r.nprios += 1;
            }
        }
    }

    /// Counts a migration.
    pub fn migrate(&mut self, ids: &Idents, cpu: u32, thread: Serial) {
        if self.filter.cpu_ok(cpu) && self.filter.thread_ok(ids, thread) {
            self.rows.get(thread).migrations += 1;
        }
    }

    /// The report over a period of `duration` ns.
    pub fn report(&self, m: &Machine, duration: i64, top: usize) -> CputopReport {
        let ids = m.idents();
        let dur = duration as f64;
        let threads = self.rows.rows(ids);
        let processes = self.rows.processes(ids);
        let cpus: Vec<CpuUsage> = m
            .cpus()
            .filter(|&c| self.filter.cpu_ok(c))
            .map(|c| {
                let busy = self.cpus.get(c as usize).copied().unwrap_or(0);
                CpuUsage {
                    cpu: c,
                    busy_ns: busy,
                    usage_pct: pct(busy as f64, dur),
                }
            })
            .collect();
        let total_busy: i64 = cpus.iter().map(|c| c.busy_ns).sum();
        let total_pct = pct(total_busy as f64, dur * cpus.len() as f64);
        let threads = cut(threads, top)
            .into_iter()
            .map(|(name, r)| {
                let mut prios = r.prios[..r.nprios as usize].to_vec();
                prios.sort_unstable();
                ThreadUsage {
                    thread: name,
                    cpu_ns: r.ns,
                    usage_pct: pct(r.ns as f64, dur),
                    migrations: r.migrations,
                    prios,
                }
            })
            .collect();
        let processes = cut(processes, top)
            .into_iter()
            .map(|(pid, name, n, r)| ProcessUsage {
                pid,
                name,
                threads: n,
                cpu_ns: r.ns,
                usage_pct: pct(r.ns as f64, dur),
            })
            .collect();
        CputopReport {
            threads,
            processes,
            cpus,
            total_pct,
        }
    }
}
