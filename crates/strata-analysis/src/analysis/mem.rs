//! `mem`: pages allocated and freed (`1 << order` per event) and page faults,
//! per thread and per process, attributed to the thread running on the CPU.

use serde::Serialize;

use super::common::{by_process, cut, ThreadName};
use crate::filter::Filter;
use crate::state::{Idents, Machine, Serial};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Row {
    alloc: u64,
    free: u64,
    user_faults: u64,
    kernel_faults: u64,
}

/// The mem accumulator.
#[derive(Debug, Clone)]
pub struct Mem {
    filter: Filter,
    rows: Vec<Row>,
}

/// Memory figures of a thread or process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MemCounts {
    /// Pages allocated.
    pub pages_allocated: u64,
    /// Pages freed.
    pub pages_freed: u64,
    /// Page faults in user mode.
    pub user_faults: u64,
    /// Page faults in kernel mode.
    pub kernel_faults: u64,
}

/// One thread's memory figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadMem {
    /// Who.
    #[serde(flatten)]
    pub thread: ThreadName,
    /// Counts.
    #[serde(flatten)]
    pub counts: MemCounts,
}

/// One process's memory figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessMem {
    /// Process id.
    pub pid: i32,
    /// Its name.
    pub name: String,
    /// Threads counted.
    pub threads: u32,
    /// Counts.
    #[serde(flatten)]
    pub counts: MemCounts,
}

/// What `mem` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemReport {
    /// Over all selected threads.
    pub total: MemCounts,
    /// Per process, most pages allocated first (cut to `--top`).
    pub processes: Vec<ProcessMem>,
    /// Per thread, most pages allocated first (cut to `--top`).
    pub threads: Vec<ThreadMem>,
}

fn counts(r: &Row) -> MemCounts {
    MemCounts {
        pages_allocated: r.alloc,
        pages_freed: r.free,
        user_faults: r.user_faults,
        kernel_faults: r.kernel_faults,
    }
}

fn weight(r: &Row) -> u64 {
    r.alloc
        .saturating_add(r.free)
        .saturating_add(r.user_faults)
        .saturating_add(r.kernel_faults)
}

impl Mem {
    /// An accumulator counting what `filter` selects.
    pub fn new(filter: Filter) -> Mem {
        Mem {
            filter,
            rows: Vec::new(),
        }
    }

    fn row(&mut self, ids: &Idents, cpu: u32, s: Serial) -> Option<&mut Row> {
        if !self.filter.cpu_ok(cpu) || !self.filter.thread_ok(ids, s) {
            return None;
        }
        let i = s as usize;
        if self.rows.len() <= i {
            self.rows.resize(i + 1, Row::default());
        }
        Some(&mut self.rows[i])
    }

    /// Counts pages allocated or freed.
    pub fn pages(&mut self, ids: &Idents, cpu: u32, s: Serial, alloc: bool, n: u64) {
        if let Some(r) = self.row(ids, cpu, s) {
            if alloc {
                r.alloc = r.alloc.saturating_add(n);
            } else {
                r.free = r.free.saturating_add(n);
            }
        }
    }

    /// Counts a page fault.
    pub fn fault(&mut self, ids: &Idents, cpu: u32, s: Serial, user: bool) {
        if let Some(r) = self.row(ids, cpu, s) {
            if user {
                r.user_faults += 1;
            } else {
                r.kernel_faults += 1;
            }
        }
    }

    /// The report.
    pub fn report(&self, m: &Machine, top: usize) -> MemReport {
        let ids = m.idents();
        let mut rows: Vec<(Serial, Row)> = self
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| weight(r) > 0)
            .map(|(i, r)| (i as Serial, *r))
            .collect();
        rows.sort_by(|a, b| {
            (b.1.alloc, weight(&b.1))
                .cmp(&(a.1.alloc, weight(&a.1)))
                .then(ids.tid(a.0).cmp(&ids.tid(b.0)))
        });
        let mut total = Row::default();
        let add = |a: &mut Row, b: &Row| {
            a.alloc = a.alloc.saturating_add(b.alloc);
            a.free = a.free.saturating_add(b.free);
            a.user_faults += b.user_faults;
            a.kernel_faults += b.kernel_faults;
        };
        rows.iter().for_each(|(_, r)| add(&mut total, r));
        let mut processes = by_process(ids, rows.iter().copied(), add);
        processes.sort_by_key(|p| std::cmp::Reverse((p.3.alloc, weight(&p.3))));
        MemReport {
            total: counts(&total),
            processes: cut(processes, top)
                .into_iter()
                .map(|(pid, name, n, r)| ProcessMem {
                    pid,
                    name,
                    threads: n,
                    counts: counts(&r),
                })
                .collect(),
            threads: cut(rows, top)
                .into_iter()
                .map(|(s, r)| ThreadMem {
                    thread: ThreadName::of(ids, s),
                    counts: counts(&r),
                })
                .collect(),
        }
    }
}
