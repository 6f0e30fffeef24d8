//! `mem`: pages allocated and freed (`1 << order` per event) and page faults,
//! per thread and per process, attributed to the thread running on the CPU.

use serde::Serialize;

use super::common::{cut, Row as RowTrait, Rows, ThreadName};
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
    rows: Rows<Row>,
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
    /// Per process, most pages and faults first (cut to `--top`).
    pub processes: Vec<ProcessMem>,
    /// Per thread, most pages and faults first (cut to `--top`).
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

impl RowTrait for Row {
    fn score(&self) -> u64 {
        weight(self)
    }
    fn is_empty(&self) -> bool {
        weight(self) == 0
    }
    fn merge(&mut self, b: &Self) {
        self.alloc = self.alloc.saturating_add(b.alloc);
        self.free = self.free.saturating_add(b.free);
        self.user_faults += b.user_faults;
        self.kernel_faults += b.kernel_faults;
    }
}

fn weight(r: &Row) -> u64 {
    r.alloc
        .saturating_add(r.free)
        .saturating_add(r.user_faults)
        .saturating_add(r.kernel_faults)
}

impl Mem {
    /// An accumulator counting what `filter` selects, keeping `keep` dead
    /// threads' rows ([`super::common::keep_for`]).
    pub fn new(filter: Filter, keep: usize) -> Mem {
        Mem {
            filter,
            rows: Rows::new(keep),
        }
    }

    /// A thread is gone.
    pub fn thread_freed(&mut self, ids: &Idents, s: Serial) {
        self.rows.freed(ids, s);
    }

    fn row(&mut self, ids: &Idents, cpu: u32, s: Serial) -> Option<&mut Row> {
        if !self.filter.cpu_ok(cpu) || !self.filter.thread_ok(ids, s) {
            return None;
        }
        Some(self.rows.get(s))
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
        let rows = self.rows.rows(ids);
        let processes = self.rows.processes(ids);
        let total = self.rows.total();
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
                .map(|(name, r)| ThreadMem {
                    thread: name,
                    counts: counts(r),
                })
                .collect(),
        }
    }
}
