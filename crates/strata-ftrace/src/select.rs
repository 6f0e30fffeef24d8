//! Turns what a user types (`sched`, `sched:sched_switch`, `sched_switch`,
//! `block:*`, `-sched:sched_waking`) into the exact `(system, event)` pairs to
//! enable, checked against the list of events the kernel offers.
//!
//! Pure: the caller passes the available events (from
//! [`crate::Tracefs::available_events`]).
//!
//! Spec forms, applied in order:
//! - a preset name (see [`PRESETS`]): its events that exist on this kernel;
//! - `group:name`: that event; either part may be a glob with `*` and `?`;
//! - `name`: the event of that name in whatever group, if only one group has it;
//!   a bare glob (`sched_wak*`) matches event names in every group;
//! - `group` alone, when no event has that name: every event of the group;
//! - a leading `-` removes what the rest of the spec selects, from what the
//!   specs before it selected.

use std::collections::HashSet;
use thiserror::Error;

/// A named group of events for a purpose.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// What the user types.
    pub name: &'static str,
    /// What it is for.
    pub about: &'static str,
    /// The events, as `(system, event)`.
    pub events: &'static [(&'static str, &'static str)],
}

/// The presets.
///
/// - `sched`: what a thread/CPU state system needs: `sched_switch`,
///   `sched_wakeup`, `sched_wakeup_new`, `sched_waking`, `sched_process_fork`,
///   `sched_process_exec`, `sched_process_exit`, `sched_process_free`,
///   `sched_migrate_task`, and `task:task_newtask`, `task:task_rename`.
/// - `syscalls`: `raw_syscalls:sys_enter` and `sys_exit` (every system call
///   with its number and raw arguments, cheaper than the 700 `syscalls:*`).
/// - `irq`: `irq:irq_handler_entry`/`exit`, `irq:softirq_entry`/`exit`/`raise`.
/// - `faults`: `exceptions:page_fault_user` and `page_fault_kernel`.
/// - `kvm`: `kvm:kvm_entry`, `kvm_exit`, `kvm_pio`, `kvm_mmio`,
///   `kvm_userspace_exit`, `kvm_emulate_insn`, `kvm_msr`, `kvm_hypercall`,
///   `kvm_inj_virq`, `kvm_vcpu_wakeup`: vCPU runs, exits and their causes.
/// - `block`: `block:block_rq_insert`, `block_rq_issue`, `block_rq_complete`,
///   `block_rq_requeue`, `block_bio_queue`, `block_bio_remap`,
///   `block_bio_backmerge`, `block_bio_frontmerge`: request latency and merges.
/// - `net`: `net:net_dev_queue`, `net_dev_xmit`, `netif_receive_skb`,
///   `netif_rx`: packets sent and received per device.
/// - `power`: `power:cpu_idle`, `power:cpu_frequency`.
/// - `mem`: `kmem:mm_page_alloc`, `kmem:mm_page_free`: page allocations per
///   thread, as lttng-analyses' memtop counts them.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "sched",
        about: "scheduling, wake-ups, process life cycle and migrations",
        events: &[
            ("sched", "sched_switch"),
            ("sched", "sched_wakeup"),
            ("sched", "sched_wakeup_new"),
            ("sched", "sched_waking"),
            ("sched", "sched_process_fork"),
            ("sched", "sched_process_exec"),
            ("sched", "sched_process_exit"),
            ("sched", "sched_process_free"),
            ("sched", "sched_migrate_task"),
            ("task", "task_newtask"),
            ("task", "task_rename"),
        ],
    },
    Preset {
        name: "syscalls",
        about: "every system call entry and exit",
        events: &[("raw_syscalls", "sys_enter"), ("raw_syscalls", "sys_exit")],
    },
    Preset {
        name: "irq",
        about: "hard and soft interrupts",
        events: &[
            ("irq", "irq_handler_entry"),
            ("irq", "irq_handler_exit"),
            ("irq", "softirq_entry"),
            ("irq", "softirq_exit"),
            ("irq", "softirq_raise"),
        ],
    },
    Preset {
        name: "faults",
        about: "page faults in user and kernel mode",
        events: &[
            ("exceptions", "page_fault_user"),
            ("exceptions", "page_fault_kernel"),
        ],
    },
    Preset {
        name: "kvm",
        about: "vCPU entries, exits and their causes",
        events: &[
            ("kvm", "kvm_entry"),
            ("kvm", "kvm_exit"),
            ("kvm", "kvm_pio"),
            ("kvm", "kvm_mmio"),
            ("kvm", "kvm_userspace_exit"),
            ("kvm", "kvm_emulate_insn"),
            ("kvm", "kvm_msr"),
            ("kvm", "kvm_hypercall"),
            ("kvm", "kvm_inj_virq"),
            ("kvm", "kvm_vcpu_wakeup"),
        ],
    },
    Preset {
        name: "block",
        about: "block requests from queueing to completion",
        events: &[
            ("block", "block_rq_insert"),
            ("block", "block_rq_issue"),
            ("block", "block_rq_complete"),
            ("block", "block_rq_requeue"),
            ("block", "block_bio_queue"),
            ("block", "block_bio_remap"),
            ("block", "block_bio_backmerge"),
            ("block", "block_bio_frontmerge"),
        ],
    },
    Preset {
        name: "net",
        about: "packets queued, sent and received per device",
        events: &[
            ("net", "net_dev_queue"),
            ("net", "net_dev_xmit"),
            ("net", "netif_receive_skb"),
            ("net", "netif_rx"),
        ],
    },
    Preset {
        name: "power",
        about: "CPU idle states and frequency changes",
        events: &[("power", "cpu_idle"), ("power", "cpu_frequency")],
    },
    Preset {
        name: "mem",
        about: "page allocations and frees",
        events: &[("kmem", "mm_page_alloc"), ("kmem", "mm_page_free")],
    },
];

/// What Strata records when the user names no events: enough for CPU, thread,
/// syscall and interrupt analyses, at a rate a busy host can afford.
pub const DEFAULT_SPECS: &[&str] = &["sched", "syscalls", "irq"];

/// How many close names an unknown-event error suggests.
const MAX_SUGGESTIONS: usize = 5;

/// Why a selection could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectError {
    /// No event has this name.
    #[error("unknown event '{spec}'; {}", suggest(.suggestions))]
    Unknown {
        /// What the user typed.
        spec: String,
        /// Up to five close `group:name`s.
        suggestions: Vec<String>,
    },
    /// A bare name exists in several groups.
    #[error("event name '{spec}' is in several groups: {}; write group:name", .matches.join(", "))]
    Ambiguous {
        /// What the user typed.
        spec: String,
        /// Every `group:name` it could mean.
        matches: Vec<String>,
    },
    /// A glob matched nothing.
    #[error("'{spec}' matches no event on this kernel")]
    NoMatch {
        /// What the user typed.
        spec: String,
    },
    /// None of a preset's events exist on this kernel.
    #[error("preset '{preset}' has none of its events on this kernel (wanted {})", .wanted.join(", "))]
    EmptyPreset {
        /// The preset.
        preset: String,
        /// Its events.
        wanted: Vec<String>,
    },
    /// A spec is not of any accepted form.
    #[error("bad event spec '{spec}': {reason}")]
    BadSpec {
        /// What the user typed.
        spec: String,
        /// Why.
        reason: &'static str,
    },
    /// Everything selected was removed again.
    #[error("the event selection is empty")]
    Empty,
}

fn suggest(s: &[String]) -> String {
    if s.is_empty() {
        "nothing close; list them with `strata list-events` or read available_events".into()
    } else {
        format!("did you mean {}?", s.join(", "))
    }
}

/// The preset called `name`.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// Resolves `specs` against `available` (every `(system, event)` of the
/// kernel). An empty `specs` means [`DEFAULT_SPECS`]. The result has no
/// duplicates and keeps the order in which events were first selected.
pub fn resolve<S: AsRef<str>>(
    specs: &[S],
    available: &[(String, String)],
) -> Result<Vec<(String, String)>, SelectError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let defaults: Vec<&str> = DEFAULT_SPECS.to_vec();
    let specs: Vec<&str> = if specs.is_empty() {
        defaults
    } else {
        specs.iter().map(AsRef::as_ref).collect()
    };
    for raw in specs {
        let spec = raw.trim();
        let (remove, body) = match spec.strip_prefix('-') {
            Some(rest) => (true, rest.trim()),
            None => (false, spec),
        };
        if body.is_empty() {
            return Err(SelectError::BadSpec {
                spec: spec.to_string(),
                reason: "it is empty",
            });
        }
        let picked = resolve_one(body, available)?;
        if remove {
            let gone: HashSet<&(String, String)> = picked.iter().collect();
            out.retain(|e| !gone.contains(e));
            seen.retain(|e| !gone.contains(e));
        } else {
            for e in picked {
                if seen.insert(e.clone()) {
                    out.push(e);
                }
            }
        }
    }
    if out.is_empty() {
        return Err(SelectError::Empty);
    }
    Ok(out)
}

fn resolve_one(
    spec: &str,
    available: &[(String, String)],
) -> Result<Vec<(String, String)>, SelectError> {
    let owned = |(s, n): &(String, String)| (s.clone(), n.clone());
    if let Some(p) = preset(spec) {
        let got: Vec<_> = p
            .events
            .iter()
            .filter(|(s, n)| available.iter().any(|(a, b)| a == s && b == n))
            .map(|(s, n)| (s.to_string(), n.to_string()))
            .collect();
        if got.is_empty() {
            return Err(SelectError::EmptyPreset {
                preset: p.name.to_string(),
                wanted: p.events.iter().map(|(s, n)| format!("{s}:{n}")).collect(),
            });
        }
        return Ok(got);
    }
    if spec.matches(':').count() > 1 {
        return Err(SelectError::BadSpec {
            spec: spec.to_string(),
            reason: "use group:name with a single `:`",
        });
    }
    let is_glob = spec.contains(['*', '?']);
    if let Some((group, name)) = spec.split_once(':') {
        let name = if name.is_empty() { "*" } else { name };
        let got: Vec<_> = available
            .iter()
            .filter(|(s, n)| glob(group, s) && glob(name, n))
            .map(owned)
            .collect();
        if !got.is_empty() {
            return Ok(got);
        }
        return Err(if is_glob || name == "*" {
            SelectError::NoMatch {
                spec: spec.to_string(),
            }
        } else {
            unknown(spec, available)
        });
    }
    let got: Vec<_> = available
        .iter()
        .filter(|(_, n)| glob(spec, n))
        .map(owned)
        .collect();
    if is_glob {
        if got.is_empty() {
            return Err(SelectError::NoMatch {
                spec: spec.to_string(),
            });
        }
        return Ok(got);
    }
    match got.len() {
        1 => Ok(got),
        0 => {
            let group: Vec<_> = available
                .iter()
                .filter(|(s, _)| s == spec)
                .map(owned)
                .collect();
            if group.is_empty() {
                Err(unknown(spec, available))
            } else {
                Ok(group)
            }
        }
        _ => Err(SelectError::Ambiguous {
            spec: spec.to_string(),
            matches: got.iter().map(|(s, n)| format!("{s}:{n}")).collect(),
        }),
    }
}

fn unknown(spec: &str, available: &[(String, String)]) -> SelectError {
    let qualified = spec.contains(':');
    // Allow about one typo per three characters, and at least two.
    let limit = (spec.len() / 3).max(2);
    let mut scored: Vec<(usize, String)> = available
        .iter()
        .filter_map(|(s, n)| {
            let full = format!("{s}:{n}");
            let d = if qualified {
                edit_distance(spec, &full)
            } else {
                edit_distance(spec, n)
            };
            (d <= limit).then_some((d, full))
        })
        .collect();
    scored.sort();
    SelectError::Unknown {
        spec: spec.to_string(),
        suggestions: scored
            .into_iter()
            .take(MAX_SUGGESTIONS)
            .map(|(_, n)| n)
            .collect(),
    }
}

/// Levenshtein distance over bytes, with one row of memory.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diag + usize::from(ca != cb));
            diag = above;
        }
    }
    row[b.len()]
}

/// Matches `*` (any run) and `?` (any one byte); everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel() -> Vec<(String, String)> {
        [
            "sched:sched_switch",
            "sched:sched_wakeup",
            "sched:sched_wakeup_new",
            "sched:sched_waking",
            "sched:sched_process_fork",
            "sched:sched_process_exit",
            "sched:sched_stat_runtime",
            "task:task_newtask",
            "raw_syscalls:sys_enter",
            "raw_syscalls:sys_exit",
            "irq:irq_handler_entry",
            "irq:irq_handler_exit",
            "block:block_rq_issue",
            "block:block_rq_complete",
            "foo:dup",
            "bar:dup",
        ]
        .iter()
        .map(|s| {
            let (a, b) = s.split_once(':').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect()
    }

    fn pairs(v: &[(String, String)]) -> Vec<String> {
        v.iter().map(|(s, n)| format!("{s}:{n}")).collect()
    }

    #[test]
    fn exact_bare_and_glob() {
        let k = kernel();
        assert_eq!(
            pairs(&resolve(&["sched:sched_switch", "sys_enter"], &k).unwrap()),
            ["sched:sched_switch", "raw_syscalls:sys_enter"]
        );
        assert_eq!(
            pairs(&resolve(&["block:*"], &k).unwrap()),
            ["block:block_rq_issue", "block:block_rq_complete"]
        );
        assert_eq!(
            pairs(&resolve(&["sched_wak*"], &k).unwrap()),
            [
                "sched:sched_wakeup",
                "sched:sched_wakeup_new",
                "sched:sched_waking"
            ]
        );
        assert_eq!(
            pairs(&resolve(&["raw_syscalls"], &k).unwrap()),
            ["raw_syscalls:sys_enter", "raw_syscalls:sys_exit"]
        );
        assert_eq!(resolve(&["irq:"], &k).unwrap().len(), 2);
    }

    #[test]
    fn presets_keep_only_existing_events() {
        let k = kernel();
        let sched = pairs(&resolve(&["sched"], &k).unwrap());
        assert!(sched.contains(&"task:task_newtask".to_string()));
        assert!(!sched.contains(&"sched:sched_stat_runtime".to_string()));
        assert!(!sched.iter().any(|e| e.contains("exec")));
        assert_eq!(
            resolve(&["kvm"], &k).unwrap_err(),
            SelectError::EmptyPreset {
                preset: "kvm".into(),
                wanted: preset("kvm")
                    .unwrap()
                    .events
                    .iter()
                    .map(|(s, n)| format!("{s}:{n}"))
                    .collect()
            }
        );
    }

    #[test]
    fn defaults_dedup_and_removal() {
        let k = kernel();
        let none: [&str; 0] = [];
        let d = pairs(&resolve(&none, &k).unwrap());
        assert!(d.contains(&"sched:sched_switch".to_string()));
        assert!(d.contains(&"raw_syscalls:sys_exit".to_string()));
        assert!(d.contains(&"irq:irq_handler_entry".to_string()));
        let unique: HashSet<_> = d.iter().collect();
        assert_eq!(unique.len(), d.len());

        let r = pairs(&resolve(&["sched", "sched_switch", "-sched:sched_wak*"], &k).unwrap());
        assert!(!r.iter().any(|e| e.contains("wak")));
        assert_eq!(r.iter().filter(|e| *e == "sched:sched_switch").count(), 1);
        assert_eq!(
            resolve(&["syscalls", "-raw_syscalls:*"], &k).unwrap_err(),
            SelectError::Empty
        );
    }

    #[test]
    fn errors_explain() {
        let k = kernel();
        let e = resolve(&["sched_swich"], &k).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown event 'sched_swich'; did you mean sched:sched_switch?"
        );
        let e = resolve(&["sched:sched_wakup"], &k).unwrap_err();
        match e {
            SelectError::Unknown { suggestions, .. } => {
                assert_eq!(suggestions[0], "sched:sched_wakeup");
                assert!(suggestions.len() <= MAX_SUGGESTIONS);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resolve(&["dup"], &k).unwrap_err(),
            SelectError::Ambiguous { .. }
        ));
        assert!(matches!(
            resolve(&["nothing:*"], &k).unwrap_err(),
            SelectError::NoMatch { .. }
        ));
        assert!(matches!(
            resolve(&["a:b:c"], &k).unwrap_err(),
            SelectError::BadSpec { .. }
        ));
        assert!(matches!(
            resolve(&["zzzzzzzzzzzzzzzzzzzz"], &k).unwrap_err(),
            SelectError::Unknown { ref suggestions, .. } if suggestions.is_empty()
        ));
    }

    #[test]
    fn glob_and_distance() {
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*_entry", "irq_handler_entry"));
        assert!(!glob("*_entry", "irq_handler_exit"));
        assert_eq!(edit_distance("sched_swich", "sched_switch"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
