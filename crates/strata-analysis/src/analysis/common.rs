//! Report pieces shared by the analyses: how a thread and a process are
//! named, and the grouping of per-thread rows into processes.

use serde::Serialize;

use crate::event::Tid;
use crate::hash::{int_map, IntMap};
use crate::state::{Idents, Serial};

/// A thread as reports show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// The process of thread `s`: its pid (the tid when unknown) and name.
pub fn process_of(ids: &Idents, s: Serial) -> (Tid, String) {
    let n = ThreadName::of(ids, s);
    (n.pid, n.process)
}

/// Groups per-thread values into per-process ones, keyed by pid, keeping
/// the order of first appearance.
pub fn by_process<T, F>(
    ids: &Idents,
    rows: impl Iterator<Item = (Serial, T)>,
    mut add: F,
) -> Vec<(Tid, String, u32, T)>
where
    T: Default,
    F: FnMut(&mut T, &T),
{
    let mut index: IntMap<Tid, usize> = int_map();
    let mut out: Vec<(Tid, String, u32, T)> = Vec::new();
    for (s, v) in rows {
        let (pid, name) = process_of(ids, s);
        let i = *index.entry(pid).or_insert_with(|| {
            out.push((pid, name, 0, T::default()));
            out.len() - 1
        });
        let e = &mut out[i];
        e.2 += 1;
        add(&mut e.3, &v);
    }
    out
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
