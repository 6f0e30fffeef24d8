//! The live accumulators of one host: CPU time per thread and per CPU, and
//! syscall counts, over a sliding window of event time cut into buckets;
//! syscall latency histograms since the start and over the recent window.
//! Memory is bounded by (threads active in the window + CPUs + syscalls) ×
//! buckets.

use strata_analysis::event::{Comm, SyscallId, Tid};
use strata_analysis::hash::{int_map, IntMap};
use strata_analysis::observer::{Observer, RunSlice, SyscallDone};
use strata_analysis::state::Idents;

use super::hist::LogHist;

/// Who a thread is, as the window remembers it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Who {
    /// Process id, if known.
    pub pid: Option<Tid>,
    /// Thread name.
    pub comm: Comm,
    /// Process name.
    pub process: Comm,
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Bucket number (start time / width); `i64::MIN` when unused.
    key: i64,
    per_tid: IntMap<Tid, u64>,
    per_cpu: Vec<u64>,
    syscalls: Vec<u64>,
}

impl Bucket {
    fn reset(&mut self, key: i64) {
        self.key = key;
        self.per_tid.clear();
        self.per_cpu.iter_mut().for_each(|x| *x = 0);
        self.syscalls.iter_mut().for_each(|x| *x = 0);
    }
}

/// Per syscall, what is kept beyond the window counts.
#[derive(Debug, Clone, Default)]
pub struct SyscallStats {
    /// Calls completed since the start.
    pub count: u64,
    /// Of which returned an error (negative value).
    pub errors: u64,
    /// Durations since the start.
    pub total: LogHist,
    /// Durations of the current and previous half-window.
    pub recent: [LogHist; 2],
}

/// The sliding-window accumulators; an [`Observer`] of the state system.
#[derive(Debug, Clone)]
pub struct Window {
    width: i64,
    buckets: Vec<Bucket>,
    names: IntMap<Tid, Who>,
    syscalls: Vec<Option<Box<SyscallStats>>>,
    /// Which `recent` histogram takes new values, and the half-window it is for.
    recent_key: i64,
    /// Where the half-window of `recent_key` ends, ns.
    recent_end: i64,
    /// Time of the newest event applied, ns.
    pub now: i64,
    /// Time of the first event applied, ns.
    pub first: Option<i64>,
}

/// The most distinct syscall ids tracked (ids are syscall numbers or
/// binder indices; both are small).
const MAX_SYSCALL_ID: usize = 4096;

impl Window {
    /// A window of `window_ns` cut into `buckets` buckets.
    pub fn new(window_ns: i64, buckets: usize) -> Window {
        let n = buckets.clamp(1, 1000);
        let width = (window_ns / n as i64).max(1);
        Window {
            width,
            // One more than the window holds: the current one is partial.
            buckets: vec![
                Bucket {
                    key: i64::MIN,
                    ..Bucket::default()
                };
                n + 1
            ],
            names: int_map(),
            syscalls: Vec::new(),
            recent_key: i64::MIN,
            recent_end: i64::MIN,
            now: i64::MIN,
            first: None,
        }
    }

    /// The window length, ns.
    pub fn length(&self) -> i64 {
        self.width * (self.buckets.len() as i64 - 1)
    }

    /// Notes the time of an event about to be applied.
    #[inline]
    pub fn tick(&mut self, ts: i64) {
        if ts > self.now {
            self.now = ts;
        }
        if self.first.is_none() {
            self.first = Some(ts);
        }
        // A division only when a new half-window starts.
        if ts >= self.recent_end {
            self.rotate_recent(ts);
        }
    }

    fn rotate_recent(&mut self, ts: i64) {
        let len = (self.length() / 2).max(1);
        let half = ts.div_euclid(len);
        self.recent_end = half.saturating_add(1).saturating_mul(len);
        // Only forward: an event a little late does not empty the window.
        if half > self.recent_key {
            // Rotate: the older half-window is dropped.
            for s in self.syscalls.iter_mut().flatten() {
                if half == self.recent_key.saturating_add(1) {
                    s.recent.swap(0, 1);
                    s.recent[0].clear();
                } else {
                    s.recent[0].clear();
                    s.recent[1].clear();
                }
            }
            self.recent_key = half;
        }
    }

    /// The bucket for time `ts`, reset if it held an older period; `None`
    /// when `ts` is older than the window.
    fn bucket(&mut self, ts: i64) -> Option<&mut Bucket> {
        let key = ts.div_euclid(self.width);
        let newest = self.now.div_euclid(self.width);
        if key <= newest - self.buckets.len() as i64 {
            return None;
        }
        let n = self.buckets.len() as i64;
        let b = &mut self.buckets[key.rem_euclid(n) as usize];
        if b.key != key {
            if b.key > key {
                return None;
            }
            b.reset(key);
        }
        Some(b)
    }

    fn add_run(&mut self, cpu: u32, tid: Tid, from: i64, to: i64) {
        let mut t = from.max(self.now.saturating_sub(self.length() + self.width));
        while t < to {
            let end = ((t.div_euclid(self.width) + 1) * self.width).min(to);
            let d = (end - t) as u64;
            if let Some(b) = self.bucket(t) {
                *b.per_tid.entry(tid).or_insert(0) += d;
                let c = cpu as usize;
                if c < strata_analysis::state::MAX_CPUS as usize {
                    if b.per_cpu.len() <= c {
                        b.per_cpu.resize(c + 1, 0);
                    }
                    b.per_cpu[c] += d;
                }
            }
            t = end;
        }
    }

    /// The buckets inside the window ending at the newest event, and the
    /// time their span starts.
    fn live_buckets(&self) -> (i64, impl Iterator<Item = &Bucket>) {
        let newest = self.now.div_euclid(self.width);
        let oldest = newest - (self.buckets.len() as i64 - 1);
        let begin = (oldest * self.width).max(self.first.unwrap_or(i64::MIN));
        (
            begin,
            self.buckets
                .iter()
                .filter(move |b| b.key >= oldest && b.key <= newest),
        )
    }

    /// CPU time per thread in the window (plus `extra`, the running
    /// slices not finished yet), per CPU, and the window's start.
    pub fn cpu_time(&self, extra: &[RunSlice], ids: &Idents) -> CpuTime {
        let (begin, buckets) = self.live_buckets();
        let mut per_tid: IntMap<Tid, u64> = int_map();
        let mut per_cpu: Vec<u64> = Vec::new();
        for b in buckets {
            for (&t, &d) in &b.per_tid {
                *per_tid.entry(t).or_insert(0) += d;
            }
            if per_cpu.len() < b.per_cpu.len() {
                per_cpu.resize(b.per_cpu.len(), 0);
            }
            for (a, &d) in per_cpu.iter_mut().zip(&b.per_cpu) {
                *a += d;
            }
        }
        let mut names = Vec::new();
        for s in extra {
            let tid = ids.tid(s.thread);
            if tid <= 0 {
                continue;
            }
            let from = s.from.max(begin);
            if s.to <= from {
                continue;
            }
            let d = (s.to - from) as u64;
            *per_tid.entry(tid).or_insert(0) += d;
            let c = s.cpu as usize;
            if c < strata_analysis::state::MAX_CPUS as usize {
                if per_cpu.len() <= c {
                    per_cpu.resize(c + 1, 0);
                }
                per_cpu[c] += d;
            }
            names.push((tid, who(ids, s.thread)));
        }
        let threads: Vec<(Tid, u64, Who)> = per_tid
            .into_iter()
            .map(|(t, d)| {
                let w = names
                    .iter()
                    .find(|(x, _)| *x == t)
                    .map(|(_, w)| *w)
                    .or_else(|| self.names.get(&t).copied())
                    .unwrap_or_default();
                (t, d, w)
            })
            .collect();
        CpuTime {
            begin,
            end: self.now,
            threads,
            per_cpu,
        }
    }

    /// Calls per syscall id in the window, and the window's start.
    pub fn syscall_counts(&self) -> (i64, Vec<u64>) {
        let (begin, buckets) = self.live_buckets();
        let mut out: Vec<u64> = Vec::new();
        for b in buckets {
            if out.len() < b.syscalls.len() {
                out.resize(b.syscalls.len(), 0);
            }
            for (a, &n) in out.iter_mut().zip(&b.syscalls) {
                *a += n;
            }
        }
        (begin, out)
    }

    /// Per syscall id, the statistics kept since the start.
    pub fn syscall_stats(&self) -> impl Iterator<Item = (SyscallId, &SyscallStats)> {
        self.syscalls
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i as SyscallId, s.as_deref()?)))
    }

    /// Threads remembered by name (bounded by the threads in the window).
    pub fn remembered(&self) -> usize {
        self.names.len()
    }

    /// Forgets the names of threads no longer in any bucket.
    pub fn prune(&mut self) {
        let mut keep: IntMap<Tid, ()> = int_map();
        for b in self.live_buckets().1 {
            keep.extend(b.per_tid.keys().map(|&t| (t, ())));
        }
        self.names.retain(|t, _| keep.contains_key(t));
    }
}

/// CPU time in the window.
#[derive(Debug, Clone, Default)]
pub struct CpuTime {
    /// Window start, ns.
    pub begin: i64,
    /// Window end (newest event), ns.
    pub end: i64,
    /// `(tid, ns, who)`, in no particular order.
    pub threads: Vec<(Tid, u64, Who)>,
    /// Busy ns per CPU.
    pub per_cpu: Vec<u64>,
}

fn who(ids: &Idents, s: strata_analysis::state::Serial) -> Who {
    let Some(id) = ids.get(s) else {
        return Who::default();
    };
    Who {
        pid: id.pid,
        comm: id.comm,
        process: ids.process_comm(s).copied().unwrap_or(id.comm),
    }
}

impl Observer for Window {
    #[inline]
    fn run(&mut self, ids: &Idents, s: &RunSlice) {
        let tid = ids.tid(s.thread);
        if tid <= 0 {
            return;
        }
        self.names.insert(tid, who(ids, s.thread));
        self.add_run(s.cpu, tid, s.from, s.to);
    }

    #[inline]
    fn syscall(&mut self, _ids: &Idents, d: &SyscallDone) {
        let id = d.id as usize;
        if id >= MAX_SYSCALL_ID {
            return;
        }
        if let Some(b) = self.bucket(d.exit) {
            if b.syscalls.len() <= id {
                b.syscalls.resize(id + 1, 0);
            }
            b.syscalls[id] += 1;
        }
        if self.syscalls.len() <= id {
            self.syscalls.resize_with(id + 1, || None);
        }
        let s = self.syscalls[id].get_or_insert_with(Box::default);
        s.count += 1;
        if d.ret.is_some_and(|r| r < 0) {
            s.errors += 1;
        }
        let dur = d.exit.saturating_sub(d.entry).max(0) as u64;
        s.total.add(dur);
        s.recent[0].add(dur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_analysis::event::KernelEvent;
    use strata_analysis::state::Machine;

    const MS: i64 = 1_000_000;

    fn switch(m: &mut Machine, w: &mut Window, ts: i64, cpu: u32, prev: Tid, next: Tid) {
        w.tick(ts);
        m.handle(
            ts,
            cpu,
            &KernelEvent::Switch {
                prev_tid: prev,
                prev_comm: b"p",
                prev_prio: Some(20),
                prev_state: 1,
                next_tid: next,
                next_comm: if next == 7 { b"seven" } else { b"other" },
                next_prio: Some(20),
            },
            w,
        );
    }

    #[test]
    fn cpu_time_slides_with_event_time() {
        let mut m = Machine::new();
        let mut w = Window::new(1000 * MS, 10);
        // Thread 7 runs 0..300 ms on CPU 0, thread 8 300..400 ms.
        switch(&mut m, &mut w, 0, 0, 0, 7);
        switch(&mut m, &mut w, 300 * MS, 0, 7, 8);
        switch(&mut m, &mut w, 400 * MS, 0, 8, 0);
        let mut t = w.cpu_time(&[], m.idents());
        t.threads.sort_by_key(|x| std::cmp::Reverse(x.1));
        assert_eq!(t.threads[0].0, 7);
        assert_eq!(t.threads[0].1, 300 * MS as u64);
        assert_eq!(t.threads[0].2.comm.as_bytes(), b"seven");
        assert_eq!(t.threads[1], (8, 100 * MS as u64, t.threads[1].2));
        assert_eq!(t.per_cpu, vec![400 * MS as u64]);
        // 2.5 s later the window holds none of it.
        switch(&mut m, &mut w, 2500 * MS, 0, 0, 7);
        let mut running = Vec::new();
        struct Grab<'a>(&'a mut Vec<RunSlice>);
        impl Observer for Grab<'_> {
            fn run(&mut self, _: &Idents, s: &RunSlice) {
                self.0.push(*s);
            }
        }
        w.tick(2600 * MS);
        m.flush(2600 * MS, &mut Grab(&mut running));
        let t = w.cpu_time(&running, m.idents());
        // Only the running slice of 7 since 2500 ms.
        assert_eq!(t.threads.len(), 1);
        assert_eq!(t.threads[0].1, 100 * MS as u64);
        assert!(t.begin >= 1500 * MS && t.begin <= 1600 * MS, "{}", t.begin);
        w.prune();
        assert!(w.remembered() <= 2);
    }

    #[test]
    fn syscalls_count_in_window_and_histograms() {
        let mut m = Machine::new();
        let mut w = Window::new(1000 * MS, 10);
        switch(&mut m, &mut w, 0, 0, 0, 7);
        for i in 0..10 {
            let t = (i * 10 + 1) * MS;
            w.tick(t);
            m.handle(t, 0, &KernelEvent::SyscallEntry { id: 3, io: None }, &mut w);
            w.tick(t + 1000);
            m.handle(
                t + 1000,
                0,
                &KernelEvent::SyscallExit { ret: Some(-1) },
                &mut w,
            );
        }
        let (_, counts) = w.syscall_counts();
        assert_eq!(counts.get(3), Some(&10));
        let (id, s) = w.syscall_stats().next().unwrap();
        assert_eq!((id, s.count, s.errors), (3, 10, 10));
        assert!((1000..=1125).contains(&s.total.quantile(0.5)));
    }
}
