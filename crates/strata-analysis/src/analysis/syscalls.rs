//! `syscalls`: syscall counts, durations and return values per thread, per
//! process and per syscall.

use serde::Serialize;

use super::common::{cut, Row, Rows, ThreadName};
use crate::errno;
use crate::event::SyscallId;
use crate::filter::Filter;
use crate::observer::SyscallDone;
use crate::state::{Idents, Machine, Serial};
use crate::stats::{Hist, Percentiles, Stats, StatsSummary};

/// Return values of one syscall: successes and each errno.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rets {
    success: u64,
    /// `ret` without a value in the exit event.
    unknown: u64,
    errors: Vec<(i64, u64)>,
}

impl Rets {
    #[inline]
    fn add(&mut self, ret: Option<i64>) {
        match ret {
            Some(r) if r >= 0 => self.success += 1,
            Some(r) => match self.errors.iter_mut().find(|(e, _)| *e == r) {
                Some(e) => e.1 += 1,
                None => self.errors.push((r, 1)),
            },
            None => self.unknown += 1,
        }
    }

    fn merge(&mut self, o: &Rets) {
        self.success += o.success;
        self.unknown += o.unknown;
        for &(r, n) in &o.errors {
            match self.errors.iter_mut().find(|(e, _)| *e == r) {
                Some(e) => e.1 += n,
                None => self.errors.push((r, n)),
            }
        }
    }

    fn report(&self) -> ReturnValues {
        let mut errors: Vec<ErrorCount> = self
            .errors
            .iter()
            .map(|&(r, n)| ErrorCount {
                ret: r,
                name: errno::label(r),
                count: n,
            })
            .collect();
        errors.sort_by(|a, b| b.count.cmp(&a.count).then(a.ret.cmp(&b.ret)));
        ReturnValues {
            success: self.success,
            errors,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Entry {
    id: SyscallId,
    stats: Stats,
    rets: Rets,
}

/// One thread's syscalls.
#[derive(Debug, Clone, Default)]
struct Calls(Vec<Entry>);

impl Calls {
    fn count(&self) -> u64 {
        self.0.iter().map(|e| e.stats.count).sum()
    }
    fn errors(&self) -> u64 {
        self.0
            .iter()
            .map(|e| e.rets.errors.iter().map(|x| x.1).sum::<u64>())
            .sum()
    }
}

impl Row for Calls {
    fn score(&self) -> u64 {
        self.count()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn merge(&mut self, o: &Self) {
        for e in &o.0 {
            match self.0.iter_mut().find(|x| x.id == e.id) {
                Some(x) => {
                    x.stats.merge(&e.stats);
                    x.rets.merge(&e.rets);
                }
                None => self.0.push(e.clone()),
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Global {
    stats: Stats,
    hist: Hist,
    rets: Rets,
}

/// The syscalls accumulator.
#[derive(Debug, Clone)]
pub struct Syscalls {
    filter: Filter,
    threads: Rows<Calls>,
    global: Vec<Option<Box<Global>>>,
}

/// How often a syscall failed with one error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorCount {
    /// The return value.
    pub ret: i64,
    /// Its errno name (`ENOENT`), or the number.
    pub name: String,
    /// How many times.
    pub count: u64,
}

/// Return values of a syscall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReturnValues {
    /// Calls that returned 0 or more.
    pub success: u64,
    /// Calls that failed, per error, most frequent first.
    pub errors: Vec<ErrorCount>,
}

/// One syscall's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyscallRow {
    /// The syscall name.
    pub name: String,
    /// Count and durations, ns.
    #[serde(flatten)]
    pub stats: StatsSummary,
    /// Duration percentiles (only in the per-syscall table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentiles: Option<Percentiles>,
    /// Return values.
    pub returns: ReturnValues,
}

/// The syscalls of one thread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadSyscalls {
    /// Who.
    #[serde(flatten)]
    pub thread: ThreadName,
    /// Syscalls counted.
    pub count: u64,
    /// Per syscall, most frequent first.
    pub syscalls: Vec<SyscallRow>,
}

/// The syscalls of one process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessSyscalls {
    /// Process id.
    pub pid: i32,
    /// Its name.
    pub name: String,
    /// Threads of it that made syscalls.
    pub threads: u32,
    /// Syscalls counted.
    pub count: u64,
    /// Calls that failed.
    pub errors: u64,
}

/// What `syscalls` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyscallsReport {
    /// Syscalls counted.
    pub total: u64,
    /// Threads that made any.
    pub thread_count: usize,
    /// Per syscall over all selected threads, most frequent first.
    pub syscalls: Vec<SyscallRow>,
    /// Per process, most calls first (cut to `--top`).
    pub processes: Vec<ProcessSyscalls>,
    /// Per thread, most calls first (cut to `--top`).
    pub threads: Vec<ThreadSyscalls>,
}

impl Syscalls {
    /// An accumulator counting what `filter` selects, keeping `keep` dead
    /// threads' rows ([`super::common::keep_for`]).
    pub fn new(filter: Filter, keep: usize) -> Syscalls {
        Syscalls {
            filter,
            threads: Rows::new(keep),
            global: Vec::new(),
        }
    }

    /// A thread is gone.
    pub fn thread_freed(&mut self, ids: &Idents, s: Serial) {
        self.threads.freed(ids, s);
    }

    /// Counts a completed syscall.
    #[inline]
    pub fn syscall(&mut self, ids: &Idents, d: &SyscallDone) {
        if !self.filter.cpu_ok(d.cpu) || !self.filter.thread_ok(ids, d.thread) {
            return;
        }
        let dur = d.exit.saturating_sub(d.entry);
        let list = &mut self.threads.get(d.thread).0;
        let e = match list.iter().position(|e| e.id == d.id) {
            Some(p) => &mut list[p],
            None => {
                list.push(Entry {
                    id: d.id,
                    ..Entry::default()
                });
                list.last_mut().expect("just pushed")
            }
        };
        e.stats.add(dur);
        e.rets.add(d.ret);
        let g = d.id as usize;
        if self.global.len() <= g {
            self.global.resize_with(g + 1, || None);
        }
        let g = self.global[g].get_or_insert_with(Box::default);
        g.stats.add(dur);
        g.hist.add(dur);
        g.rets.add(d.ret);
    }

    /// The report; syscall names come from `names`.
    pub fn report(&self, m: &Machine, names: &[Box<str>], top: usize) -> SyscallsReport {
        let ids = m.idents();
        let name = |id: SyscallId| names.get(id as usize).map_or("?".into(), |s| s.to_string());
        let mut global: Vec<SyscallRow> = self
            .global
            .iter()
            .enumerate()
            .filter_map(|(id, g)| {
                let g = g.as_ref()?;
                Some(SyscallRow {
                    name: name(id as SyscallId),
                    stats: g.stats.summary(),
                    percentiles: g.hist.percentiles(),
                    returns: g.rets.report(),
                })
            })
            .collect();
        global.sort_by(|a, b| b.stats.count.cmp(&a.stats.count).then(a.name.cmp(&b.name)));
        let rows = self.threads.rows(ids);
        let processes = self.threads.processes(ids);
        let thread_count = self.threads.thread_count();
        let total = self.threads.total().count();
        let threads = cut(rows, top)
            .into_iter()
            .map(|(name, calls)| {
                let mut rows: Vec<SyscallRow> = calls
                    .0
                    .iter()
                    .map(|e| SyscallRow {
                        name: names
                            .get(e.id as usize)
                            .map_or("?".into(), |s| s.to_string()),
                        stats: e.stats.summary(),
                        percentiles: None,
                        returns: e.rets.report(),
                    })
                    .collect();
                rows.sort_by(|a, b| b.stats.count.cmp(&a.stats.count).then(a.name.cmp(&b.name)));
                ThreadSyscalls {
                    thread: name,
                    count: calls.count(),
                    syscalls: rows,
                }
            })
            .collect();
        SyscallsReport {
            total,
            thread_count,
            syscalls: global,
            processes: cut(processes, top)
                .into_iter()
                .map(|(pid, name, n, calls)| ProcessSyscalls {
                    pid,
                    name,
                    threads: n,
                    count: calls.count(),
                    errors: calls.errors(),
                })
                .collect(),
            threads,
        }
    }

    /// Merged return values over everything counted (for tests and summaries).
    pub fn total_errors(&self) -> u64 {
        let mut r = Rets::default();
        for g in self.global.iter().flatten() {
            r.merge(&g.rets);
        }
        r.errors.iter().map(|x| x.1).sum()
    }
}
