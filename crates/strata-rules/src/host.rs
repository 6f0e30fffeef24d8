//! The per-host metrics that rules need, fed by the state system's
//! notifications: only the series some rule references exist, and each
//! event updates only the series whose process filter matches.

use std::sync::Arc;

use strata_analysis::event::Comm;
use strata_analysis::hash::{int_map, IntMap};
use strata_analysis::observer::{Observer, RunSlice, SyscallDone, WakeupDone};
use strata_analysis::state::{Idents, Machine, Serial, ThreadState};

use strata_analysis::vm::VmModel;

use crate::catalog::{Family, SeriesKey, StateQuery, VmQuery, VmTrackKey};
use crate::series::Series;
use crate::vmstate::VmTracks;

/// The latest begin/end pair a pattern matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatternMatch {
    /// When it ended (exit or switch-in), ns.
    pub ts: i64,
    /// How long it lasted, ns.
    pub duration_ns: u64,
    /// The thread.
    pub tid: i32,
    /// Its process name.
    pub process: Comm,
}

#[derive(Debug)]
struct Tracked {
    key: SeriesKey,
    series: Series,
    /// The syscall id of `key.syscall` under the current names (`None`:
    /// any, or not known to this host: then nothing matches).
    syscall_id: Option<u32>,
    /// The first match not yet seen by the engine, and the latest.
    pending: Option<i64>,
    last: Option<PatternMatch>,
}

/// Called when a pattern matched, so the engine evaluates now rather than
/// at its next tick.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// The series of one host. An [`Observer`]: chain it after the live
/// analyses' own observer.
pub struct HostMetrics {
    tracked: Vec<Tracked>,
    /// Series indices per family, split by process filter.
    any: [Vec<usize>; 5],
    by_proc: [IntMap<Comm, Vec<usize>>; 5],
    generation: u64,
    newest: i64,
    waker: Option<Waker>,
    vms: VmTracks,
}

impl std::fmt::Debug for HostMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostMetrics")
            .field("series", &self.tracked.len())
            .field("generation", &self.generation)
            .finish()
    }
}

fn slot(f: Family) -> Option<usize> {
    Some(match f {
        Family::SyscallLatency | Family::SyscallErrors | Family::PatternSyscall => 0,
        Family::Wakeup | Family::PatternWakeup => 1,
        Family::CpuUsage => 2,
        _ => return None,
    })
}

impl HostMetrics {
    /// Series for `keys` (a rule set's), tagged with the rule set's
    /// `generation`; `syscall_names` name the host's syscall ids.
    pub fn new(keys: &[SeriesKey], generation: u64, syscall_names: &[Box<str>]) -> HostMetrics {
        let mut m = HostMetrics {
            tracked: Vec::with_capacity(keys.len()),
            any: Default::default(),
            by_proc: std::array::from_fn(|_| int_map()),
            generation,
            newest: i64::MIN,
            waker: None,
            vms: VmTracks::default(),
        };
        for (i, k) in keys.iter().enumerate() {
            let durations = matches!(k.family, Family::SyscallLatency | Family::Wakeup);
            m.tracked.push(Tracked {
                key: k.clone(),
                series: Series::new(k.window_ns, durations),
                syscall_id: None,
                pending: None,
                last: None,
            });
            let Some(s) = slot(k.family) else { continue };
            match k.proc {
                None => m.any[s].push(i),
                Some(p) => m.by_proc[s].entry(p).or_default().push(i),
            }
        }
        m.set_syscall_names(syscall_names);
        m
    }

    /// Adds the VM windows `keys` (a rule set's [`crate::RuleSet::vm_keys`]).
    pub fn with_vm_tracks(mut self, keys: &[VmTrackKey]) -> HostMetrics {
        self.vms = VmTracks::new(keys);
        self
    }

    /// Whether some rule uses a VM metric (then [`HostMetrics::sample_vms`]
    /// must be called before each evaluation).
    pub fn wants_vms(&self) -> bool {
        !self.vms.is_empty()
    }

    /// Samples the VM model's vCPU state times at event time `now`, for the
    /// VM metrics' windows.
    pub fn sample_vms(&mut self, model: &VmModel, now: i64) {
        if !self.vms.is_empty() {
            self.vms.sample(model, now);
        }
    }

    /// The VM windows, to sample synthetic observations in tests.
    pub fn vm_tracks_mut(&mut self) -> &mut VmTracks {
        &mut self.vms
    }

    /// The value of a VM metric and the VM it is about.
    pub fn vm_value(&self, q: &VmQuery) -> (f64, Option<&str>) {
        self.vms.value(q)
    }

    /// Resolves syscall filters against new syscall names.
    pub fn set_syscall_names(&mut self, names: &[Box<str>]) {
        for t in &mut self.tracked {
            t.syscall_id = t.key.syscall.as_ref().map(|want| {
                names
                    .iter()
                    .position(|n| n.strip_prefix("sys_").unwrap_or(n) == want.as_str())
                    .map_or(u32::MAX, |p| p as u32)
            });
        }
    }

    /// Calls `w` whenever a pattern matches.
    pub fn set_waker(&mut self, w: Option<Waker>) {
        self.waker = w;
    }

    /// The rule set generation these series were built for.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Series kept.
    pub fn len(&self) -> usize {
        self.tracked.len()
    }

    /// Whether no series is kept.
    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    /// The newest event time seen, ns.
    pub fn newest(&self) -> i64 {
        self.newest
    }

    /// Moves every window to end at event time `now`.
    pub fn advance(&mut self, now: i64) {
        self.newest = self.newest.max(now);
        for t in &mut self.tracked {
            t.series.advance(self.newest);
        }
    }

    /// The series of key index `i`.
    pub fn series(&self, i: usize) -> &Series {
        &self.tracked[i].series
    }

    /// The time of the first pattern match on series `i` since the last
    /// [`HostMetrics::clear_pending`], with the latest match.
    pub fn pending_match(&self, i: usize) -> Option<(i64, PatternMatch)> {
        let t = &self.tracked[i];
        Some((t.pending?, t.last?))
    }

    /// Forgets the pending matches (after an evaluation saw them).
    pub fn clear_pending(&mut self) {
        for t in &mut self.tracked {
            t.pending = None;
        }
    }

    /// The process name of a thread, looked up per event rather than
    /// cached: a thread's name changes at exec.
    #[inline]
    fn proc_of(ids: &Idents, t: Serial) -> Comm {
        ids.process_comm(t)
            .copied()
            .or_else(|| ids.get(t).map(|i| i.comm))
            .unwrap_or_default()
    }

    #[inline]
    fn each(&mut self, s: usize, proc: Comm, mut f: impl FnMut(&mut Tracked)) {
        for &i in &self.any[s] {
            f(&mut self.tracked[i]);
        }
        if let Some(v) = self.by_proc[s].get(&proc) {
            for &i in v {
                f(&mut self.tracked[i]);
            }
        }
    }
}

fn pattern_hit(t: &mut Tracked, m: PatternMatch, waker: &Option<Waker>) {
    t.series.record(m.ts, m.duration_ns, 0);
    if t.pending.is_none() {
        t.pending = Some(m.ts);
    }
    t.last = Some(m);
    if let Some(w) = waker {
        w();
    }
}

impl Observer for HostMetrics {
    #[inline]
    fn syscall(&mut self, ids: &Idents, d: &SyscallDone) {
        if self.any[0].is_empty() && self.by_proc[0].is_empty() {
            return;
        }
        self.newest = self.newest.max(d.exit);
        let proc = HostMetrics::proc_of(ids, d.thread);
        let dur = d.exit.saturating_sub(d.entry).max(0) as u64;
        let err = d.ret.is_some_and(|r| r < 0) as u64;
        let id = d.id as u32;
        let waker = self.waker.clone();
        let tid = ids.tid(d.thread);
        self.each(0, proc, |t| {
            if t.syscall_id.is_some_and(|s| s != id) {
                return;
            }
            match t.key.family {
                Family::PatternSyscall => {
                    if dur > t.key.longer_ns {
                        let m = PatternMatch {
                            ts: d.exit,
                            duration_ns: dur,
                            tid,
                            process: proc,
                        };
                        pattern_hit(t, m, &waker);
                    }
                }
                _ => t.series.record(d.exit, dur, err),
            }
        });
    }

    #[inline]
    fn wakeup(&mut self, ids: &Idents, d: &WakeupDone) {
        if self.any[1].is_empty() && self.by_proc[1].is_empty() {
            return;
        }
        self.newest = self.newest.max(d.switched_in);
        let proc = HostMetrics::proc_of(ids, d.thread);
        let dur = d.switched_in.saturating_sub(d.wakeup).max(0) as u64;
        let waker = self.waker.clone();
        let tid = ids.tid(d.thread);
        self.each(1, proc, |t| match t.key.family {
            Family::PatternWakeup => {
                if dur > t.key.longer_ns {
                    let m = PatternMatch {
                        ts: d.switched_in,
                        duration_ns: dur,
                        tid,
                        process: proc,
                    };
                    pattern_hit(t, m, &waker);
                }
            }
            _ => t.series.record(d.switched_in, dur, 0),
        });
    }

    #[inline]
    fn run(&mut self, ids: &Idents, s: &RunSlice) {
        if self.any[2].is_empty() && self.by_proc[2].is_empty() {
            return;
        }
        if ids.tid(s.thread) <= 0 {
            return;
        }
        self.newest = self.newest.max(s.to);
        let proc = HostMetrics::proc_of(ids, s.thread);
        let dur = s.to.saturating_sub(s.from).max(0) as u64;
        self.each(2, proc, |t| t.series.record(s.to, dur, 0));
    }
}

/// Answers a state query from the thread states now.
pub fn state_count(machine: &Machine, q: &StateQuery) -> i64 {
    let ids = machine.idents();
    let want = match q.family {
        Family::Runqueue => ThreadState::Ready,
        _ => q.state.unwrap_or(ThreadState::Running),
    };
    let mut n = 0i64;
    for (serial, id) in ids.iter() {
        if !id.alive || id.tid <= 0 {
            continue;
        }
        let Some((s, st, _)) = machine.thread(id.tid) else {
            continue;
        };
        if s != serial || st != want {
            continue;
        }
        if let Some(p) = &q.proc {
            let c = ids.process_comm(serial).copied().unwrap_or(id.comm);
            if c != *p {
                continue;
            }
        }
        n += 1;
    }
    n
}
