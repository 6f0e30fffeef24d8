//! Report pieces shared by the analyses: how a thread and a process are
//! named, and the grouping of per-thread rows into processes.

use serde::Serialize;

use crate::event::{Comm, Tid};
use crate::hash::{int_map, IntMap};
use crate::state::{Idents, Serial};

/// A thread as reports show it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ThreadName {
    /// Thread id.
    pub tid: Tid,
    /// Process id; the tid when the trace never said.
    pub pid: Tid,
    /// The thread's latest name.
    pub name: String,
    /// Its process's name (the main thread's).
    pub process: String,
}

impl ThreadName {
    /// The name of thread `s`.
    pub fn of(ids: &Idents, s: Serial) -> ThreadName {
        match ids.get(s) {
            Some(id) => ThreadName {
                tid: id.tid,
                pid: id.pid.unwrap_or(id.tid),
                name: id.comm.to_string_lossy(),
                process: ids
                    .process_comm(s)
                    .map(|c| c.to_string_lossy())
                    .unwrap_or_default(),
            },
            None => ThreadName {
                tid: -1,
                pid: -1,
                name: String::new(),
                process: String::new(),
            },
        }
    }
}

/// A thread's name kept without allocating, for rows of dead threads.
#[derive(Debug, Clone, Copy)]
struct DeadName {
    tid: Tid,
    pid: Tid,
    comm: Comm,
    process: Comm,
}

impl DeadName {
    fn of(ids: &Idents, s: Serial) -> DeadName {
        let (tid, pid, comm) = ids.get(s).map_or((-1, -1, Comm::default()), |i| {
            (i.tid, i.pid.unwrap_or(i.tid), i.comm)
        });
        DeadName {
            tid,
            pid,
            comm,
            process: ids.process_comm(s).copied().unwrap_or(comm),
        }
    }

    fn name(&self) -> ThreadName {
        ThreadName {
            tid: self.tid,
            pid: self.pid,
            name: self.comm.to_string_lossy(),
            process: self.process.to_string_lossy(),
        }
    }
}

/// Percent of `part` in `whole`, 0 when `whole` is 0.
pub fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part * 100.0 / whole
    } else {
        0.0
    }
}

/// Keeps the first `top` items (all when `top` is 0).
pub fn cut<T>(mut v: Vec<T>, top: usize) -> Vec<T> {
    if top > 0 {
        v.truncate(top);
    }
    v
}

/// A per-thread accumulator row.
pub trait Row: Default + Clone {
    /// The ranking key, largest first.
    fn score(&self) -> u64;
    /// Whether nothing was counted.
    fn is_empty(&self) -> bool;
    /// Adds another row (for per-process totals).
    fn merge(&mut self, o: &Self);
}

/// Dead threads kept by default, whatever `--top` asks.
pub const DEAD_KEPT: usize = 1000;

/// How many dead threads' rows to keep for `--top top`: all of them when
/// every row is asked for, else enough that the top rows stay exact.
pub fn keep_for(top: usize) -> usize {
    if top == 0 {
        usize::MAX
    } else {
        top.max(DEAD_KEPT)
    }
}

/// Per-thread rows in memory bounded by the live threads: live threads by
/// serial; a freed thread's row, named then, joins the `keep` largest dead
/// rows, and rows pushed out of those are folded into their process.
///
/// Keeping at least `--top` dead rows keeps the top of each table exact: a
/// dead row in the overall top is in the dead top too, and it no longer
/// changes.
#[derive(Debug, Clone)]
pub struct Rows<R: Row> {
    live: Vec<R>,
    dead: Vec<(DeadName, R)>,
    keep: usize,
    folded: Vec<(Tid, Comm, u32, R)>,
    folded_index: IntMap<Tid, usize>,
}

impl<R: Row> Rows<R> {
    /// Rows keeping `keep` dead threads.
    pub fn new(keep: usize) -> Rows<R> {
        Rows {
            live: Vec::new(),
            dead: Vec::new(),
            keep,
            folded: Vec::new(),
            folded_index: int_map(),
        }
    }

    /// The row of live thread `s`.
    #[inline]
    pub fn get(&mut self, s: Serial) -> &mut R {
        let i = s as usize;
        if self.live.len() <= i {
            self.live.resize(i + 1, R::default());
        }
        &mut self.live[i]
    }

    /// Thread `s` is gone: keeps its row under its name as of now.
    pub fn freed(&mut self, ids: &Idents, s: Serial) {
        let Some(slot) = self.live.get_mut(s as usize) else {
            return;
        };
        if slot.is_empty() {
            return;
        }
        let row = std::mem::take(slot);
        self.dead.push((DeadName::of(ids, s), row));
        if self.keep != usize::MAX && self.dead.len() >= self.keep.saturating_mul(2).max(16) {
            // The kept rows need not be sorted, only separated from the rest.
            self.dead.select_nth_unstable_by(self.keep, |a, b| {
                b.1.score().cmp(&a.1.score()).then(a.0.tid.cmp(&b.0.tid))
            });
            for (name, row) in self.dead.drain(self.keep..) {
                let i = *self.folded_index.entry(name.pid).or_insert_with(|| {
                    self.folded.push((name.pid, name.process, 0, R::default()));
                    self.folded.len() - 1
                });
                let f = &mut self.folded[i];
                f.2 += 1;
                f.3.merge(&row);
            }
        }
    }

    /// Every kept row with its thread's name, largest score first (ties by tid).
    pub fn rows(&self, ids: &Idents) -> Vec<(ThreadName, &R)> {
        let mut out: Vec<(ThreadName, &R)> = self
            .live
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.is_empty())
            .map(|(i, r)| (ThreadName::of(ids, i as Serial), r))
            .chain(self.dead.iter().map(|(n, r)| (n.name(), r)))
            .collect();
        out.sort_by(|a, b| b.1.score().cmp(&a.1.score()).then(a.0.tid.cmp(&b.0.tid)));
        out
    }

    /// Per-process totals over every row, folded ones included, largest first.
    pub fn processes(&self, ids: &Idents) -> Vec<(Tid, String, u32, R)> {
        let mut index: IntMap<Tid, usize> = int_map();
        let mut out: Vec<(Tid, String, u32, R)> = Vec::new();
        let mut add = |pid: Tid, name: &str, n: u32, r: &R| {
            let i = *index.entry(pid).or_insert_with(|| {
                out.push((pid, name.to_string(), 0, R::default()));
                out.len() - 1
            });
            out[i].2 += n;
            out[i].3.merge(r);
        };
        for (name, r) in self.rows(ids) {
            add(name.pid, &name.process, 1, r);
        }
        for (pid, name, n, r) in &self.folded {
            add(*pid, &name.to_string_lossy(), *n, r);
        }
        out.sort_by(|a, b| b.3.score().cmp(&a.3.score()).then(a.0.cmp(&b.0)));
        out
    }

    /// Threads counted, kept or folded.
    pub fn thread_count(&self) -> usize {
        self.live.iter().filter(|r| !r.is_empty()).count()
            + self.dead.len()
            + self.folded.iter().map(|f| f.2 as usize).sum::<usize>()
    }

    /// The merged total of every row.
    pub fn total(&self) -> R {
        let mut t = R::default();
        for r in self.live.iter().chain(self.dead.iter().map(|d| &d.1)) {
            t.merge(r);
        }
        for f in &self.folded {
            t.merge(&f.3);
        }
        t
    }
}
