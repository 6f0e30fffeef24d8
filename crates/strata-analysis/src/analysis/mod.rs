//! The analyses and the driver that runs them over a trace set: one pass,
//! one state system per host, every selected analysis fed from it.

pub mod common;
pub mod cputop;
pub mod io;
pub mod irq;
pub mod mem;
pub mod sched;
pub mod summary;
pub mod syscalls;

use std::ops::ControlFlow;

use serde::Serialize;
use strata_ctf::read::{Event, ReadError, SkipStats, TraceSet};

use crate::bind::Binder;
use crate::filter::Filter;
use crate::observer::{
    BlockDone, IrqDone, Nobody, Observer, RunSlice, SoftirqDone, SyscallDone, WakeupDone,
};
use crate::state::{Idents, Machine, Serial};

pub use cputop::{Cputop, CputopReport};
pub use io::{Io, IoReport};
pub use irq::{IrqReport, Irqs};
pub use mem::{Mem, MemReport};
pub use sched::{Sched, SchedReport};
pub use summary::{EventCount, LostEvents, Summary, SummaryReport};
pub use syscalls::{Syscalls, SyscallsReport};

/// Which analyses to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Selection {
    /// CPU usage per thread, process and CPU.
    pub cputop: bool,
    /// Syscall counts, durations and return values.
    pub syscalls: bool,
    /// Wakeup-to-run latency.
    pub sched: bool,
    /// Hard IRQ and softirq durations and rates.
    pub irq: bool,
    /// Read/write and block I/O.
    pub io: bool,
    /// Pages and page faults.
    pub mem: bool,
    /// What the trace holds.
    pub summary: bool,
}

impl Selection {
    /// Every analysis.
    pub fn all() -> Selection {
        Selection {
            cputop: true,
            syscalls: true,
            sched: true,
            irq: true,
            io: true,
            mem: true,
            summary: true,
        }
    }
}

/// What to analyse and how.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The analyses to run.
    pub selection: Selection,
    /// Start of the period: the first event at or after it opens it (ns
    /// since the epoch). The state system still sees every earlier event.
    pub begin: Option<i64>,
    /// End of the period: events after it are not read.
    pub end: Option<i64>,
    /// Threads and CPUs counted.
    pub filter: Filter,
    /// Rows per table (0 = all).
    pub top: usize,
}

/// The analyses of one host, fed by its state system.
#[derive(Debug, Clone, Default)]
pub struct Accumulators {
    /// `cputop`, when selected.
    pub cputop: Option<Cputop>,
    /// `syscalls`, when selected.
    pub syscalls: Option<Syscalls>,
    /// `sched`, when selected.
    pub sched: Option<Sched>,
    /// `irq`, when selected.
    pub irq: Option<Irqs>,
    /// `io`, when selected.
    pub io: Option<Io>,
    /// `mem`, when selected.
    pub mem: Option<Mem>,
    /// `summary`, when selected.
    pub summary: Option<Summary>,
}

impl Accumulators {
    /// The accumulators `opts` selects.
    pub fn new(opts: &Options) -> Accumulators {
        let s = opts.selection;
        let f = &opts.filter;
        let keep = common::keep_for(opts.top);
        Accumulators {
            cputop: s.cputop.then(|| Cputop::new(f.clone(), keep)),
            syscalls: s.syscalls.then(|| Syscalls::new(f.clone(), keep)),
            sched: s.sched.then(|| Sched::new(f.clone(), opts.top, keep)),
            irq: s.irq.then(|| Irqs::new(f.clone())),
            io: s.io.then(|| Io::new(f.clone(), keep)),
            mem: s.mem.then(|| Mem::new(f.clone(), keep)),
            summary: s.summary.then(|| Summary::new(keep)),
        }
    }

    /// The period opens at `ts`.
    pub fn begin(&mut self, ts: i64) {
        if let Some(a) = &mut self.cputop {
            a.begin(ts);
        }
        if let Some(a) = &mut self.io {
            a.begin(ts);
        }
        if let Some(a) = &mut self.summary {
            a.begin(ts);
        }
    }
}

impl Observer for Accumulators {
    #[inline]
    fn run(&mut self, ids: &Idents, s: &RunSlice) {
        if let Some(a) = &mut self.cputop {
            a.run(ids, s);
        }
        if let Some(a) = &mut self.summary {
            a.run(ids, s);
        }
    }
    fn migrate(&mut self, ids: &Idents, _ts: i64, cpu: u32, thread: Serial) {
        if let Some(a) = &mut self.cputop {
            a.migrate(ids, cpu, thread);
        }
    }
    fn syscall_entry(&mut self, _ids: &Idents, _ts: i64, thread: Serial, path: Option<&[u8]>) {
        if let (Some(a), Some(p)) = (&mut self.io, path) {
            a.syscall_entry(thread, p);
        }
    }
    #[inline]
    fn syscall(&mut self, ids: &Idents, d: &SyscallDone) {
        if let Some(a) = &mut self.syscalls {
            a.syscall(ids, d);
        }
        if let Some(a) = &mut self.io {
            a.syscall(ids, d);
        }
        if let Some(a) = &mut self.summary {
            a.syscall(d);
        }
    }
    fn irq(&mut self, d: &IrqDone) {
        if let Some(a) = &mut self.irq {
            a.irq(d);
        }
    }
    fn softirq(&mut self, d: &SoftirqDone) {
        if let Some(a) = &mut self.irq {
            a.softirq(d);
        }
    }
    fn wakeup(&mut self, ids: &Idents, d: &WakeupDone) {
        if let Some(a) = &mut self.sched {
            a.wakeup(ids, d);
        }
    }
    fn pages(&mut self, ids: &Idents, cpu: u32, thread: Serial, alloc: bool, pages: u64) {
        if let Some(a) = &mut self.mem {
            a.pages(ids, cpu, thread, alloc, pages);
        }
    }
    fn fault(&mut self, ids: &Idents, cpu: u32, thread: Serial, user: bool) {
        if let Some(a) = &mut self.mem {
            a.fault(ids, cpu, thread, user);
        }
    }
    fn block(&mut self, ids: &Idents, d: &BlockDone) {
        if let Some(a) = &mut self.io {
            a.block(ids, d);
        }
    }
    fn statedump_fd(&mut self, pid: i32, fd: i64, path: &[u8]) {
        if let Some(a) = &mut self.io {
            a.statedump_fd(pid, fd, path);
        }
    }
    fn thread_freed(&mut self, ids: &Idents, s: Serial) {
        if let Some(a) = &mut self.cputop {
            a.thread_freed(ids, s);
        }
        if let Some(a) = &mut self.syscalls {
            a.thread_freed(ids, s);
        }
        if let Some(a) = &mut self.sched {
            a.thread_freed(ids, s);
        }
        if let Some(a) = &mut self.io {
            a.thread_freed(ids, s);
        }
        if let Some(a) = &mut self.mem {
            a.thread_freed(ids, s);
        }
        if let Some(a) = &mut self.summary {
            a.thread_freed(ids, s);
        }
    }
}

/// One host: its state system and analyses.
#[derive(Debug, Clone)]
pub struct Host {
    /// `env.hostname` of its traces (or the trace directory when unset).
    pub name: String,
    /// Its kernel state.
    pub machine: Machine,
    /// Its analyses.
    pub acc: Accumulators,
    lost: Vec<u64>,
}

/// Whether to keep reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Feed the next event.
    Continue,
    /// The period is over: stop reading.
    Stop,
}

/// Runs the selected analyses over the events of a trace set, in one pass.
///
/// Traces with the same hostname share a state system (LTTng writes one
/// trace per session and domain); different hosts get their own, since
/// their tids and CPUs are unrelated.
#[derive(Debug, Clone)]
pub struct Analyzer {
    binder: Binder,
    opts: Options,
    host_of_trace: Vec<usize>,
    hosts: Vec<Host>,
    class_counts: Vec<u64>,
    class_names: Vec<(String, usize)>,
    period: Option<(i64, i64)>,
}

/// The analysed period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    /// First event of the period, ns since the epoch.
    pub begin_ns: i64,
    /// Last event of the period, ns since the epoch.
    pub end_ns: i64,
    /// `end_ns - begin_ns`.
    pub duration_ns: i64,
}

/// The reports of one host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostReport {
    /// Host name.
    pub hostname: String,
    /// CPUs that had events.
    pub cpus: usize,
    /// `cputop`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cputop: Option<CputopReport>,
    /// `syscalls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<SyscallsReport>,
    /// `sched`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sched: Option<SchedReport>,
    /// `irq`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irq: Option<IrqReport>,
    /// `io`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io: Option<IoReport>,
    /// `mem`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem: Option<MemReport>,
    /// `summary`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<SummaryReport>,
}

/// Everything the analyses found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The analysed period; `None` when no event fell in it.
    pub period: Option<Period>,
    /// Per host, in trace order.
    pub hosts: Vec<HostReport>,
}

impl Analyzer {
    /// An analyzer for the traces of `set`.
    pub fn new(set: &TraceSet, opts: Options) -> Analyzer {
        let binder = Binder::new(set);
        let mut hosts: Vec<Host> = Vec::new();
        let mut host_of_trace = Vec::new();
        for t in set.traces() {
            let name = t
                .hostname()
                .map(str::to_string)
                .unwrap_or_else(|| t.path().display().to_string());
            let i = match hosts.iter().position(|h| h.name == name) {
                Some(i) => i,
                None => {
                    hosts.push(Host {
                        name,
                        machine: Machine::new(),
                        acc: Accumulators::new(&opts),
                        lost: Vec::new(),
                    });
                    hosts.len() - 1
                }
            };
            host_of_trace.push(i);
        }
        let class_names = set
            .event_classes()
            .map(|c| {
                let host = host_of_trace.get(c.trace()).copied().unwrap_or(0);
                (c.name().to_string(), host)
            })
            .collect();
        Analyzer {
            binder,
            opts,
            host_of_trace,
            hosts,
            class_counts: vec![0; set.class_count()],
            class_names,
            period: None,
        }
    }

    /// The class bindings (syscall names, classes that could not be bound).
    pub fn binder(&self) -> &Binder {
        &self.binder
    }

    /// The hosts, with their state.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Feeds one event (events must come in time order).
    #[inline]
    pub fn feed(&mut self, ev: &Event<'_>) -> Flow {
        let ts = ev.ts();
        if self.opts.end.is_some_and(|e| ts > e) {
            return Flow::Stop;
        }
        let Some(&hi) = self.host_of_trace.get(ev.trace()) else {
            return Flow::Continue;
        };
        let kev = self.binder.decode(ev);
        let cpu = ev.cpu();
        match &mut self.period {
            Some(p) => p.1 = ts,
            None if self.opts.begin.is_none_or(|b| ts >= b) => {
                self.period = Some((ts, ts));
                for h in &mut self.hosts {
                    h.acc.begin(ts);
                }
            }
            None => {
                if let Some(host) = self.hosts.get_mut(hi) {
                    if let Some(tid) = self.binder.context_tid(ev) {
                        host.machine.running(ts, cpu, tid, &mut Nobody);
                    }
                    host.machine.handle(ts, cpu, &kev, &mut Nobody);
                }
                return Flow::Continue;
            }
        }
        let Some(host) = self.hosts.get_mut(hi) else {
            return Flow::Continue;
        };
        if let Some(c) = self.class_counts.get_mut(ev.class_index()) {
            *c += 1;
        }
        let lost = ev.lost_before();
        if lost > 0 {
            let i = cpu as usize;
            if i < crate::state::MAX_CPUS as usize {
                if host.lost.len() <= i {
                    host.lost.resize(i + 1, 0);
                }
                host.lost[i] += lost;
            }
        }
        if let Some(tid) = self.binder.context_tid(ev) {
            host.machine.running(ts, cpu, tid, &mut host.acc);
        }
        host.machine.handle(ts, cpu, &kev, &mut host.acc);
        Flow::Continue
    }

    /// Feeds every event of `set` (the set this analyzer was made for),
    /// calling `progress(bytes_done)` now and then. Returns what
    /// `skip_corrupt` skipped; without it, the first damaged packet is an
    /// error naming its file and byte offset.
    pub fn run(
        &mut self,
        set: &TraceSet,
        mut progress: impl FnMut(u64),
    ) -> Result<SkipStats, ReadError> {
        let mut events = set.events();
        // Internal iteration (see `Events::try_for_each`: faster than
        // `next` in a loop), paused every 65536 events to report progress.
        loop {
            let mut n = 0u32;
            let paused = events.try_for_each(|ev| {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => return ControlFlow::Break(Pause::Failed(e)),
                };
                if self.feed(&ev) == Flow::Stop {
                    return ControlFlow::Break(Pause::Stop);
                }
                n += 1;
                if n == 65536 {
                    return ControlFlow::Break(Pause::Progress);
                }
                ControlFlow::Continue(())
            });
            match paused {
                ControlFlow::Break(Pause::Progress) => progress(events.bytes_done()),
                ControlFlow::Break(Pause::Failed(e)) => return Err(e),
                ControlFlow::Break(Pause::Stop) | ControlFlow::Continue(()) => break,
            }
        }
        progress(events.bytes_done());
        Ok(events.skipped())
    }

    /// Ends the period at the last event fed and builds the reports.
    pub fn finish(mut self) -> Report {
        let Some((begin, end)) = self.period else {
            return Report {
                period: None,
                hosts: Vec::new(),
            };
        };
        let duration = end.saturating_sub(begin);
        let top = self.opts.top;
        let names = self.binder.syscall_names().to_vec();
        let mut out = Vec::new();
        for (hi, h) in self.hosts.iter_mut().enumerate() {
            h.machine.flush(end, &mut h.acc);
            let m = &h.machine;
            let a = &h.acc;
            let mut counts: Vec<EventCount> = Vec::new();
            for (i, (name, host)) in self.class_names.iter().enumerate() {
                let n = self.class_counts.get(i).copied().unwrap_or(0);
                if *host != hi || n == 0 {
                    continue;
                }
                match counts.iter_mut().find(|c| c.name == *name) {
                    Some(c) => c.count += n,
                    None => counts.push(EventCount {
                        name: name.clone(),
                        count: n,
                    }),
                }
            }
            counts.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
            let lost = h
                .lost
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(c, &n)| LostEvents {
                    cpu: c as u32,
                    lost: n,
                })
                .collect();
            out.push(HostReport {
                hostname: h.name.clone(),
                cpus: m.cpu_count(),
                cputop: a.cputop.as_ref().map(|x| x.report(m, duration, top)),
                syscalls: a.syscalls.as_ref().map(|x| x.report(m, &names, top)),
                sched: a.sched.as_ref().map(|x| x.report(m, top)),
                irq: a.irq.as_ref().map(|x| x.report(m, duration)),
                io: a.io.as_ref().map(|x| x.report(m, duration, top)),
                mem: a.mem.as_ref().map(|x| x.report(m, top)),
                summary: a
                    .summary
                    .as_ref()
                    .map(|x| x.report(m, duration, counts, lost, top)),
            });
        }
        Report {
            period: Some(Period {
                begin_ns: begin,
                end_ns: end,
                duration_ns: duration,
            }),
            hosts: out,
        }
    }
}

/// Opens nothing, reads `set` once and returns the reports.
pub fn analyze(
    set: &TraceSet,
    opts: Options,
    progress: impl FnMut(u64),
) -> Result<Report, ReadError> {
    let mut a = Analyzer::new(set, opts);
    a.run(set, progress)?;
    Ok(a.finish())
}

/// Why `Analyzer::run` paused its iteration over the events.
enum Pause {
    /// To report progress; it goes on.
    Progress,
    /// An analysis asked to stop.
    Stop,
    /// A stream failed.
    Failed(ReadError),
}
