//! The metrics a condition may call, their statistics and arguments, and
//! how a call with its arguments becomes a [`MetricCall`].

use std::fmt;

use strata_analysis::event::Comm;
use strata_analysis::state::ThreadState;

use crate::duration::parse_ns;

/// What a family of metrics measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Syscall durations (entry to exit).
    SyscallLatency,
    /// Syscalls that returned an error, against all calls.
    SyscallErrors,
    /// Wakeup to switch-in latency (scheduling latency).
    Wakeup,
    /// CPU time used, per second of window.
    CpuUsage,
    /// Syscalls longer than a threshold (a begin/end pattern).
    PatternSyscall,
    /// Wakeups that waited longer than a threshold for a CPU.
    PatternWakeup,
    /// Threads runnable and waiting for a CPU, now.
    Runqueue,
    /// Threads in a given state, now.
    Threads,
    /// vCPU preempted ratio: needs the VM analysis (an extension point).
    VcpuPreempted,
}

impl Family {
    /// The event groups (as `--events` takes them) an agent must stream
    /// for this family's values: every family needs `sched`, which names
    /// threads and processes; syscall families also need `syscalls`.
    pub fn event_groups(self) -> &'static [&'static str] {
        match self {
            Family::SyscallLatency | Family::SyscallErrors | Family::PatternSyscall => {
                &["sched", "syscalls"]
            }
            Family::Wakeup
            | Family::CpuUsage
            | Family::PatternWakeup
            | Family::Runqueue
            | Family::Threads => &["sched"],
            // The VM analysis reads the host's KVM events.
            Family::VcpuPreempted => &["sched", "kvm"],
        }
    }
}

/// The statistic a call asks of its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// Median (a duration).
    P50,
    /// 90th percentile (a duration).
    P90,
    /// 99th percentile (a duration).
    P99,
    /// 99.9th percentile (a duration).
    P999,
    /// Largest (a duration).
    Max,
    /// Mean (a duration).
    Mean,
    /// How many in the window (an int).
    Count,
    /// How many per second over the window (a double).
    Rate,
    /// A fraction (a double).
    Ratio,
    /// An instantaneous length or count (an int).
    Length,
}

struct FamilyDef {
    path: &'static str,
    family: Family,
    stats: &'static [(&'static str, Stat)],
    args: &'static [&'static str],
    required: &'static [&'static str],
}

const LATENCY_STATS: &[(&str, Stat)] = &[
    ("p50", Stat::P50),
    ("p90", Stat::P90),
    ("p99", Stat::P99),
    ("p999", Stat::P999),
    ("max", Stat::Max),
    ("mean", Stat::Mean),
    ("count", Stat::Count),
    ("rate", Stat::Rate),
];

const FAMILIES: &[FamilyDef] = &[
    FamilyDef {
        path: "syscall.latency",
        family: Family::SyscallLatency,
        stats: LATENCY_STATS,
        args: &["proc", "syscall", "window"],
        required: &[],
    },
    FamilyDef {
        path: "syscall.errors",
        family: Family::SyscallErrors,
        stats: &[
            ("count", Stat::Count),
            ("rate", Stat::Rate),
            ("ratio", Stat::Ratio),
        ],
        args: &["proc", "syscall", "window"],
        required: &[],
    },
    FamilyDef {
        path: "sched.wakeup",
        family: Family::Wakeup,
        stats: LATENCY_STATS,
        args: &["proc", "window"],
        required: &[],
    },
    FamilyDef {
        path: "cpu.usage",
        family: Family::CpuUsage,
        stats: &[("ratio", Stat::Ratio)],
        args: &["proc", "window"],
        required: &[],
    },
    FamilyDef {
        path: "pattern.syscall",
        family: Family::PatternSyscall,
        stats: &[("count", Stat::Count)],
        args: &["proc", "syscall", "longer", "window"],
        required: &["longer"],
    },
    FamilyDef {
        path: "pattern.wakeup",
        family: Family::PatternWakeup,
        stats: &[("count", Stat::Count)],
        args: &["proc", "longer", "window"],
        required: &["longer"],
    },
    FamilyDef {
        path: "state.runqueue",
        family: Family::Runqueue,
        stats: &[("length", Stat::Length)],
        args: &["proc"],
        required: &[],
    },
    FamilyDef {
        path: "state.threads",
        family: Family::Threads,
        stats: &[("count", Stat::Length)],
        args: &["proc", "state"],
        required: &["state"],
    },
    FamilyDef {
        path: "vcpu.preempted",
        family: Family::VcpuPreempted,
        stats: &[("ratio", Stat::Ratio)],
        args: &["vm", "window"],
        required: &[],
    },
];

/// The first names of metric paths: an identifier path starting with one
/// of these and followed by `(` is a metric call.
pub const ROOTS: &[&str] = &["syscall", "sched", "cpu", "pattern", "state", "vcpu"];

/// Every `family.stat` name, for error messages.
pub fn known_metrics() -> String {
    let mut v = Vec::new();
    for f in FAMILIES {
        for (s, _) in f.stats {
            v.push(format!("{}.{s}", f.path));
        }
    }
    v.join(", ")
}

/// The default window when a call names none.
pub const DEFAULT_WINDOW_NS: u64 = 1_000_000_000;
/// The shortest and longest windows accepted (memory is bounded by the
/// bucket count, not the window, but very long windows make stale alerts).
pub const MIN_WINDOW_NS: u64 = 10_000_000;
/// See [`MIN_WINDOW_NS`].
pub const MAX_WINDOW_NS: u64 = 3_600_000_000_000;

/// What a series accumulates: one per distinct key across all rules, so
/// `p50` and `p99` of the same syscalls share one series.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    /// What it measures.
    pub family: Family,
    /// Only threads of processes with this name.
    pub proc: Option<Comm>,
    /// Only this syscall (its name without `sys_`).
    pub syscall: Option<String>,
    /// For patterns: the threshold, ns.
    pub longer_ns: u64,
    /// The window, ns.
    pub window_ns: u64,
}

/// A state query, answered from the thread states at evaluation time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateQuery {
    /// What is counted.
    pub family: Family,
    /// Only threads of processes with this name.
    pub proc: Option<Comm>,
    /// For `state.threads`: which state.
    pub state: Option<ThreadState>,
}

/// One metric call of a condition, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricCall {
    /// The call as written, for reports.
    pub text: String,
    /// The statistic asked.
    pub stat: Stat,
    /// A windowed series, or...
    pub series: Option<SeriesKey>,
    /// ...an instantaneous state query.
    pub state: Option<StateQuery>,
}

impl MetricCall {
    /// The process the call is about, if it names one.
    pub fn proc(&self) -> Option<&Comm> {
        self.series
            .as_ref()
            .and_then(|s| s.proc.as_ref())
            .or_else(|| self.state.as_ref().and_then(|s| s.proc.as_ref()))
    }
}

impl fmt::Display for MetricCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_state(s: &str) -> Result<ThreadState, String> {
    Ok(match s {
        "running" => ThreadState::Running,
        "ready" | "runnable" => ThreadState::Ready,
        "blocked" => ThreadState::Blocked,
        "blocked_io" | "io" => ThreadState::BlockedIo,
        _ => {
            return Err(format!(
                "unknown thread state {s:?}; use running, ready, blocked or blocked_io"
            ))
        }
    })
}

/// Checks a call of `path` (e.g. `syscall.latency.p99`) with named
/// arguments, and builds what evaluation needs. `text` is the call as written.
pub fn resolve(path: &str, args: &[(String, String)], text: &str) -> Result<MetricCall, String> {
    let (fam_path, stat_name) = path
        .rsplit_once('.')
        .ok_or_else(|| format!("unknown metric {path:?}"))?;
    let Some(def) = FAMILIES.iter().find(|f| f.path == fam_path) else {
        return Err(format!(
            "unknown metric {path:?}; known metrics: {}",
            known_metrics()
        ));
    };
    let Some(&(_, stat)) = def.stats.iter().find(|(n, _)| *n == stat_name) else {
        return Err(format!(
            "unknown metric {path:?}: {} has {}",
            def.path,
            def.stats
                .iter()
                .map(|(n, _)| format!(".{n}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    };
    if def.family == Family::VcpuPreempted {
        return Err(format!(
            "{path} needs the VM analysis (vCPU states), which the relay's live analysis does \
             not have yet; see docs/rules.md, \"Extension points\""
        ));
    }
    let mut proc = None;
    let mut syscall = None;
    let mut longer = None;
    let mut window = DEFAULT_WINDOW_NS;
    let mut state = None;
    for (k, v) in args {
        if !def.args.contains(&k.as_str()) {
            return Err(format!(
                "{path} has no argument {k:?}; it takes {}",
                def.args.join(", ")
            ));
        }
        match k.as_str() {
            "proc" => {
                if v.is_empty() || v.len() > 15 {
                    return Err(format!(
                        "proc={v:?}: a process name is 1 to 15 bytes (the kernel's comm)"
                    ));
                }
                proc = Some(Comm::new(v.as_bytes()));
            }
            "syscall" => {
                let s = v.strip_prefix("sys_").unwrap_or(v);
                if s.is_empty()
                    || s.len() > 64
                    || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(format!("syscall={v:?} is not a syscall name"));
                }
                syscall = Some(s.to_string());
            }
            "longer" => longer = Some(parse_ns(v)?),
            "window" => {
                window = parse_ns(v)?;
                if !(MIN_WINDOW_NS..=MAX_WINDOW_NS).contains(&window) {
                    return Err(format!("window={v:?} must be between 10ms and 1h"));
                }
            }
            "state" => state = Some(parse_state(v)?),
            _ => {}
        }
    }
    for r in def.required {
        if !args.iter().any(|(k, _)| k == r) {
            return Err(format!("{path} needs the argument {r}=..."));
        }
    }
    let (series, stateq) = match def.family {
        Family::Runqueue | Family::Threads => (
            None,
            Some(StateQuery {
                family: def.family,
                proc,
                state,
            }),
        ),
        fam => (
            Some(SeriesKey {
                family: fam,
                proc,
                syscall,
                longer_ns: longer.unwrap_or(0),
                window_ns: window,
            }),
            None,
        ),
    };
    Ok(MetricCall {
        text: text.to_string(),
        stat,
        series,
        state: stateq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn resolves_and_rejects() {
        let c = resolve(
            "syscall.latency.p99",
            &[a("proc", "postgres"), a("window", "1s")],
            "x",
        )
        .unwrap();
        assert_eq!(c.stat, Stat::P99);
        let k = c.series.unwrap();
        assert_eq!(k.window_ns, 1_000_000_000);
        assert_eq!(k.proc.unwrap().as_bytes(), b"postgres");
        assert!(resolve("syscall.latency.p42", &[], "x")
            .unwrap_err()
            .contains(".p99"));
        assert!(resolve("syscall.lateness.p99", &[], "x")
            .unwrap_err()
            .contains("unknown metric"));
        assert!(resolve("pattern.syscall.count", &[], "x")
            .unwrap_err()
            .contains("longer"));
        assert!(resolve("syscall.latency.max", &[a("color", "red")], "x")
            .unwrap_err()
            .contains("no argument"));
        assert!(resolve("vcpu.preempted.ratio", &[], "x")
            .unwrap_err()
            .contains("VM analysis"));
        let s = resolve("state.threads.count", &[a("state", "ready")], "x").unwrap();
        assert_eq!(s.state.unwrap().state, Some(ThreadState::Ready));
    }
}
