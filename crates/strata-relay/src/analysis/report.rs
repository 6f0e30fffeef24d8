//! What the HTTP API returns about one host's live analyses (the JSON
//! schema of `docs/api.md`), built on demand from a [`LiveHost`].

use serde::Serialize;
use strata_analysis::hash::{int_map, IntMap};
use strata_analysis::state::{CpuMode, Idents};

use super::hist::LogHist;
use super::LiveHost;

/// Live-latency percentiles, ms.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Events measured.
    pub count: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

impl LatencySummary {
    /// The summary of an hdrhistogram of nanoseconds.
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> LatencySummary {
        let ms = |ns: u64| ns as f64 / 1e6;
        LatencySummary {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// One CPU now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CpuNow {
    /// CPU number.
    pub cpu: u32,
    /// `unknown`, `idle`, `user`, `syscall`, `irq` or `softirq`.
    pub mode: CpuMode,
    /// The thread running, if known and not idle.
    pub tid: Option<i32>,
    /// Its process id, if known.
    pub pid: Option<i32>,
    /// Its name.
    pub comm: Option<String>,
    /// Busy share of the CPU over the window, percent.
    pub usage_pct: f64,
}

/// `/api/hosts/<host>/cpus`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CpusReport {
    /// The newest event applied, ns since the epoch.
    pub time_ns: i64,
    /// The window the usage is over, ns.
    pub window_ns: i64,
    /// Per CPU that had events, in order.
    pub cpus: Vec<CpuNow>,
}

/// One thread's CPU use in the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ThreadRow {
    /// Thread id.
    pub tid: i32,
    /// Process id, if known.
    pub pid: Option<i32>,
    /// Thread name.
    pub comm: String,
    /// Process name.
    pub process: String,
    /// CPU time in the window, ns.
    pub cpu_ns: u64,
    /// Percent of one CPU over the window.
    pub cpu_pct: f64,
}

/// One process's CPU use in the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcessRow {
    /// Process id (the thread id when unknown).
    pub pid: i32,
    /// Process name.
    pub comm: String,
    /// Threads that ran in the window.
    pub threads: u32,
    /// CPU time, ns.
    pub cpu_ns: u64,
    /// Percent of one CPU.
    pub cpu_pct: f64,
}

/// `/api/hosts/<host>/threads`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ThreadsReport {
    /// Window start, ns since the epoch.
    pub begin_ns: i64,
    /// Window end (the newest event), ns since the epoch.
    pub end_ns: i64,
    /// Busy share of all CPUs, percent of the CPUs that had events.
    pub total_pct: f64,
    /// Top threads, most CPU first.
    pub threads: Vec<ThreadRow>,
    /// Top processes, most CPU first.
    pub processes: Vec<ProcessRow>,
}

/// Percentiles of a duration histogram, µs.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct DurationSummary {
    /// Durations counted.
    pub count: u64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Largest, µs.
    pub max_us: f64,
}

impl DurationSummary {
    /// The summary of `h` (ns).
    pub fn of(h: &LogHist) -> DurationSummary {
        let us = |ns: u64| ns as f64 / 1e3;
        DurationSummary {
            count: h.count(),
            mean_us: if h.count() == 0 {
                0.0
            } else {
                h.sum() as f64 / h.count() as f64 / 1e3
            },
            p50_us: us(h.quantile(0.5)),
            p99_us: us(h.quantile(0.99)),
            p999_us: us(h.quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// One syscall's rate and latency.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SyscallRow {
    /// Syscall name.
    pub name: String,
    /// Calls completed in the window.
    pub window_count: u64,
    /// Calls per second over the window.
    pub rate_per_s: f64,
    /// Calls completed since the host connected.
    pub total_count: u64,
    /// Of which failed (negative return value).
    pub total_errors: u64,
    /// Durations of the recent calls (the last half to whole window).
    pub recent: DurationSummary,
    /// Durations since the host connected.
    pub total: DurationSummary,
}

/// `/api/hosts/<host>/syscalls`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SyscallsReport {
    /// Window start, ns since the epoch.
    pub begin_ns: i64,
    /// Window end, ns since the epoch.
    pub end_ns: i64,
    /// Calls per second over the window, all syscalls.
    pub rate_per_s: f64,
    /// Per syscall, busiest first.
    pub syscalls: Vec<SyscallRow>,
}

/// `/api/hosts/<host>/lost`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LostReport {
    /// Events lost in all (kernel ring buffer, agent spool, corrupt pages).
    pub total: u64,
    /// Per CPU with losses.
    pub per_cpu: Vec<CpuLost>,
    /// Events applied after a later one (their CPU's data came late).
    pub late_events: u64,
    /// Events on CPU numbers the state system refuses.
    pub bad_cpu_events: u64,
}

/// Losses of one CPU.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct CpuLost {
    /// CPU number.
    pub cpu: u32,
    /// Events lost.
    pub lost: u64,
}

/// Keeps the first `n` of `v` in `cmp` order, sorted, without sorting the rest.
fn top<T>(v: &mut Vec<T>, n: usize, cmp: impl Fn(&T, &T) -> std::cmp::Ordering) {
    if n == 0 {
        v.clear();
        return;
    }
    if v.len() > n {
        v.select_nth_unstable_by(n - 1, &cmp);
        v.truncate(n);
    }
    v.sort_by(cmp);
}

fn span_ns(begin: i64, end: i64) -> f64 {
    (end.saturating_sub(begin)).max(1) as f64
}

fn comm_of(ids: &Idents, s: u32) -> String {
    ids.get(s)
        .map(|i| i.comm.to_string_lossy())
        .unwrap_or_default()
}

impl LiveHost {
    /// The CPUs now (`/api/hosts/<host>/cpus`).
    pub fn cpus_report(&self) -> CpusReport {
        let m = self.machine();
        let ids = m.idents();
        let t = self.window().cpu_time(&self.running_slices(), ids);
        let span = span_ns(t.begin, t.end);
        let cpus = m
            .cpus()
            .map(|cpu| {
                let cur = m.current(cpu);
                CpuNow {
                    cpu,
                    mode: m.cpu_mode(cpu),
                    tid: cur.map(|s| ids.tid(s)),
                    pid: cur.and_then(|s| ids.get(s)).and_then(|i| i.pid),
                    comm: cur.map(|s| comm_of(ids, s)),
                    usage_pct: t
                        .per_cpu
                        .get(cpu as usize)
                        .map_or(0.0, |&b| (b as f64 * 100.0 / span).min(100.0)),
                }
            })
            .collect();
        CpusReport {
            time_ns: self.newest().unwrap_or(0),
            window_ns: t.end.saturating_sub(t.begin),
            cpus,
        }
    }

    /// The top `limit` threads and processes (`/api/hosts/<host>/threads`).
    pub fn threads_report(&self, limit: usize) -> ThreadsReport {
        let m = self.machine();
        let t = self.window().cpu_time(&self.running_slices(), m.idents());
        let span = span_ns(t.begin, t.end);
        let pct = |ns: u64| ns as f64 * 100.0 / span;
        // Processes by pid through a map: a host may run thousands of
        // threads, and /metrics asks for every host.
        let mut by_pid: IntMap<i32, ProcessRow> = int_map();
        for (tid, ns, who) in &t.threads {
            let pid = who.pid.unwrap_or(*tid);
            let p = by_pid.entry(pid).or_insert_with(|| ProcessRow {
                pid,
                comm: who.process.to_string_lossy(),
                threads: 0,
                cpu_ns: 0,
                cpu_pct: 0.0,
            });
            p.threads += 1;
            p.cpu_ns += ns;
        }
        let mut procs: Vec<ProcessRow> = by_pid.into_values().collect();
        top(&mut procs, limit, |a, b| {
            b.cpu_ns.cmp(&a.cpu_ns).then(a.pid.cmp(&b.pid))
        });
        for p in &mut procs {
            p.cpu_pct = pct(p.cpu_ns);
        }
        let mut threads = t.threads.clone();
        top(&mut threads, limit, |a, b| {
            b.1.cmp(&a.1).then(a.0.cmp(&b.0))
        });
        let busy: u64 = t.per_cpu.iter().sum();
        let ncpu = m.cpu_count().max(1) as f64;
        ThreadsReport {
            begin_ns: t.begin,
            end_ns: t.end,
            total_pct: busy as f64 * 100.0 / span / ncpu,
            threads: threads
                .iter()
                .map(|(tid, ns, who)| ThreadRow {
                    tid: *tid,
                    pid: who.pid,
                    comm: who.comm.to_string_lossy(),
                    process: who.process.to_string_lossy(),
                    cpu_ns: *ns,
                    cpu_pct: pct(*ns),
                })
                .collect(),
            processes: procs,
        }
    }

    /// Syscall rates and latencies (`/api/hosts/<host>/syscalls`).
    pub fn syscalls_report(&self, limit: usize) -> SyscallsReport {
        let w = self.window();
        let (begin, counts) = w.syscall_counts();
        let secs = span_ns(begin, w.now) / 1e9;
        let mut rows: Vec<SyscallRow> = w
            .syscall_stats()
            .map(|(id, s)| {
                let n = counts.get(id as usize).copied().unwrap_or(0);
                let mut recent = s.recent[0].clone();
                recent.merge(&s.recent[1]);
                SyscallRow {
                    name: self.syscall_name(id).to_string(),
                    window_count: n,
                    rate_per_s: n as f64 / secs,
                    total_count: s.count,
                    total_errors: s.errors,
                    recent: DurationSummary::of(&recent),
                    total: DurationSummary::of(&s.total),
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.window_count
                .cmp(&a.window_count)
                .then(b.total_count.cmp(&a.total_count))
                .then(a.name.cmp(&b.name))
        });
        let all: u64 = counts.iter().sum();
        rows.truncate(limit);
        SyscallsReport {
            begin_ns: begin,
            end_ns: w.now,
            rate_per_s: all as f64 / secs,
            syscalls: rows,
        }
    }

    /// Losses (`/api/hosts/<host>/lost`).
    pub fn lost_report(&self) -> LostReport {
        let (late, bad) = self.anomalies();
        LostReport {
            total: self.lost().iter().sum(),
            per_cpu: self
                .lost()
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(c, &n)| CpuLost {
                    cpu: c as u32,
                    lost: n,
                })
                .collect(),
            late_events: late,
            bad_cpu_events: bad,
        }
    }
}
