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
    /// vCPU time runnable but waiting for a host CPU (the VM analysis).
    VcpuPreempted,
    /// vCPU time running guest code (under TCG: all its time on a CPU).
    VcpuRunning,
    /// vCPU time in the hypervisor (kernel exits and the VMM process).
    VcpuHypervisor,
    /// vCPU time blocked (halted guest).
    VcpuIdle,
    /// Preempted time against demand (on a CPU or waiting for one).
    VmSteal,
}

impl Family {
    /// Whether the family is computed from the VM analysis' vCPU states.
    pub fn is_vm(self) -> bool {
        matches!(
            self,
            Family::VcpuPreempted
                | Family::VcpuRunning
                | Family::VcpuHypervisor
                | Family::VcpuIdle
                | Family::VmSteal
        )
    }
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
            Family::VcpuPreempted
            | Family::VcpuRunning
            | Family::VcpuHypervisor
            | Family::VcpuIdle
            | Family::VmSteal => &["sched", "kvm"],
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
        args: VM_ARGS,
        required: &[],
    },
    FamilyDef {
        path: "vcpu.running",
        family: Family::VcpuRunning,
        stats: &[("ratio", Stat::Ratio)],
        args: VM_ARGS,
        required: &[],
    },
    FamilyDef {
        path: "vcpu.hypervisor",
        family: Family::VcpuHypervisor,
        stats: &[("ratio", Stat::Ratio)],
        args: VM_ARGS,
        required: &[],
    },
    FamilyDef {
        path: "vcpu.idle",
        family: Family::VcpuIdle,
        stats: &[("ratio", Stat::Ratio)],
        args: VM_ARGS,
        required: &[],
    },
    FamilyDef {
        path: "vm.steal",
        family: Family::VmSteal,
        stats: &[("ratio", Stat::Ratio)],
        args: VM_ARGS,
        required: &[],
    },
];

const VM_ARGS: &[&str] = &["vm", "vcpu", "window"];

/// The first names of metric paths: an identifier path starting with one
/// of these and followed by `(` is a metric call.
pub const ROOTS: &[&str] = &["syscall", "sched", "cpu", "pattern", "state", "vcpu", "vm"];

/// The longest VM name or UUID a condition may name, bytes.
pub const MAX_VM_NAME: usize = 256;
/// The highest vCPU number a condition may name.
pub const MAX_VCPU_ID: u32 = 4095;

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

/// What a VM metric's sliding window samples: the same ring serves every
/// VM family and every `vm=` of one window and vCPU choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VmTrackKey {
    /// Only this vCPU of each VM (`None`: all its vCPUs).
    pub vcpu: Option<u32>,
    /// The window, ns.
    pub window_ns: u64,
}

/// A VM metric call, answered from the VM analysis' vCPU state times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmQuery {
    /// Which state (or steal) is measured.
    pub family: Family,
    /// The VM by name or UUID (`None`: every VM, the largest value counts).
    pub vm: Option<String>,
    /// The window and vCPU choice.
    pub track: VmTrackKey,
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
    /// ...an instantaneous state query, or...
    pub state: Option<StateQuery>,
    /// ...a VM state ratio.
    pub vm: Option<VmQuery>,
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
    let mut proc = None;
    let mut syscall = None;
    let mut longer = None;
    let mut window = DEFAULT_WINDOW_NS;
    let mut state = None;
    let mut vm = None;
    let mut vcpu = None;
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
            "vm" => {
                if v.is_empty() || v.len() > MAX_VM_NAME || v.chars().any(char::is_control) {
                    return Err(format!(
                        "vm={v:?}: name a VM by its name or UUID (1 to {MAX_VM_NAME} bytes), \
                         or leave vm out for any VM"
                    ));
                }
                vm = Some(v.clone());
            }
            "vcpu" => {
                vcpu = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|&n| n <= MAX_VCPU_ID)
                        .ok_or_else(|| {
                            format!("vcpu={v:?} is not a vCPU number (0 to {MAX_VCPU_ID})")
                        })?,
                );
            }
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
        fam if fam.is_vm() => (None, None),
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
    let vm = def.family.is_vm().then_some(VmQuery {
        family: def.family,
        vm,
        track: VmTrackKey {
            vcpu,
            window_ns: window,
        },
    });
    Ok(MetricCall {
        text: text.to_string(),
        stat,
        series,
        state: stateq,
        vm,
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
        let v = resolve(
            "vcpu.preempted.ratio",
            &[a("vm", "vm-a"), a("vcpu", "1"), a("window", "10s")],
            "x",
        )
        .unwrap();
        let q = v.vm.unwrap();
        assert_eq!(q.family, Family::VcpuPreempted);
        assert_eq!(q.vm.as_deref(), Some("vm-a"));
        assert_eq!(q.track.vcpu, Some(1));
        assert_eq!(q.track.window_ns, 10_000_000_000);
        assert!(v.series.is_none() && v.state.is_none());
        let any = resolve("vm.steal.ratio", &[], "x").unwrap().vm.unwrap();
        assert_eq!((any.vm, any.track.vcpu), (None, None));
        assert_eq!(any.track.window_ns, DEFAULT_WINDOW_NS);
        for bad in [
            a("vcpu", "-1"),
            a("vcpu", "x"),
            a("vcpu", "99999"),
            a("vm", ""),
        ] {
            assert!(
                resolve("vcpu.idle.ratio", std::slice::from_ref(&bad), "x").is_err(),
                "{bad:?}"
            );
        }
        assert!(resolve("vcpu.idle.ratio", &[a("proc", "x")], "x")
            .unwrap_err()
            .contains("no argument"));
        assert!(resolve("vcpu.preempted.p99", &[], "x")
            .unwrap_err()
            .contains(".ratio"));
        let s = resolve("state.threads.count", &[a("state", "ready")], "x").unwrap();
        assert_eq!(s.state.unwrap().state, Some(ThreadState::Ready));
    }
}
