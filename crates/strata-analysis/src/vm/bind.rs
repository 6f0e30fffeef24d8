//! Matches CTF event classes, once, to the [`VmEvent`] they carry: LTTng's
//! names (`kvm_x86_entry`, `kvm_x86_exit`, `kvm_x86_pio`) and ftrace's
//! (`kvm_entry`, `kvm_exit`, `kvm_pio`), plus the scheduler and process
//! events the vCPU model follows. Per event: one table lookup and direct
//! field reads.

use crate::bind::{context_tid, text, tid as i32_of};
use strata_ctf::read::{Event, EventClass, FieldRef, TraceSet};

use super::event::VmEvent;

#[derive(Debug, Clone, Copy)]
enum Binding {
    Ignore,
    Switch {
        prev_tid: FieldRef,
        prev_comm: Option<FieldRef>,
        prev_state: Option<FieldRef>,
        next_tid: FieldRef,
        next_comm: Option<FieldRef>,
    },
    Wakeup {
        tid: FieldRef,
        target_cpu: Option<FieldRef>,
    },
    Migrate {
        tid: FieldRef,
        dest_cpu: FieldRef,
    },
    Fork {
        parent_tid: FieldRef,
        child_tid: FieldRef,
        child_pid: Option<FieldRef>,
        child_comm: Option<FieldRef>,
    },
    Exec {
        tid: FieldRef,
        filename: FieldRef,
    },
    Rename {
        tid: FieldRef,
        comm: FieldRef,
    },
    Thread {
        tid: FieldRef,
        pid: FieldRef,
        name: Option<FieldRef>,
    },
    ThreadExit {
        tid: FieldRef,
    },
    Entry {
        vcpu_id: Option<FieldRef>,
    },
    Exit {
        reason: FieldRef,
        isa: Option<FieldRef>,
        vcpu_id: Option<FieldRef>,
    },
    UserExit {
        reason: FieldRef,
        errno: Option<FieldRef>,
    },
    Pio {
        rw: Option<FieldRef>,
        port: FieldRef,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bound {
    binding: Binding,
    ctx_tid: Option<FieldRef>,
}

/// The VM bindings of every class of a trace set.
#[derive(Debug, Clone)]
pub struct VmBinder {
    bound: Vec<Bound>,
}

fn bind(c: &EventClass) -> Option<Binding> {
    let f = |n: &str| c.field(n);
    Some(match c.name() {
        "sched_switch" => Binding::Switch {
            prev_tid: f("prev_tid").or_else(|| f("prev_pid"))?,
            prev_comm: f("prev_comm"),
            prev_state: f("prev_state"),
            next_tid: f("next_tid").or_else(|| f("next_pid"))?,
            next_comm: f("next_comm"),
        },
        "sched_wakeup" | "sched_waking" | "sched_wakeup_new" => Binding::Wakeup {
            tid: f("tid").or_else(|| f("pid"))?,
            target_cpu: f("target_cpu"),
        },
        "sched_migrate_task" => Binding::Migrate {
            tid: f("tid").or_else(|| f("pid"))?,
            dest_cpu: f("dest_cpu")?,
        },
        "sched_process_fork" => Binding::Fork {
            parent_tid: f("parent_tid").or_else(|| f("parent_pid"))?,
            child_tid: f("child_tid").or_else(|| f("child_pid"))?,
            child_pid: f("child_tid").and(f("child_pid")),
            child_comm: f("child_comm"),
        },
        "sched_process_exec" => Binding::Exec {
            tid: f("tid").or_else(|| f("pid"))?,
            filename: f("filename")?,
        },
        "task_rename" => Binding::Rename {
            tid: f("pid").or_else(|| f("tid"))?,
            comm: f("newcomm")?,
        },
        "lttng_statedump_process_state" => Binding::Thread {
            tid: f("tid")?,
            pid: f("pid")?,
            name: f("name"),
        },
        "sched_process_exit" => Binding::ThreadExit {
            tid: f("tid").or_else(|| f("pid"))?,
        },
        "kvm_x86_entry" | "kvm_entry" => Binding::Entry {
            vcpu_id: f("vcpu_id"),
        },
        "kvm_x86_exit" | "kvm_exit" => Binding::Exit {
            reason: f("exit_reason")?,
            isa: f("isa"),
            vcpu_id: f("vcpu_id"),
        },
        "kvm_userspace_exit" => Binding::UserExit {
            reason: f("reason")?,
            errno: f("errno"),
        },
        "kvm_x86_pio" | "kvm_pio" => Binding::Pio {
            rw: f("rw"),
            port: f("port")?,
        },
        _ => return None,
    })
}

const NAMES: &[&str] = &[
    "sched_switch",
    "sched_wakeup",
    "sched_waking",
    "sched_wakeup_new",
    "sched_migrate_task",
    "sched_process_fork",
    "sched_process_exec",
    "task_rename",
    "lttng_statedump_process_state",
    "sched_process_exit",
    "kvm_x86_entry",
    "kvm_entry",
    "kvm_x86_exit",
    "kvm_exit",
    "kvm_userspace_exit",
    "kvm_x86_pio",
    "kvm_pio",
];

impl VmBinder {
    /// Binds the classes of `set` the VM model reads; the others (and any
    /// class lacking a required field) are ignored.
    pub fn new(set: &TraceSet) -> VmBinder {
        let mut bound = vec![
            Bound {
                binding: Binding::Ignore,
                ctx_tid: None,
            };
            set.class_count()
        ];
        for c in set.event_classes() {
            if !NAMES.contains(&c.name()) {
                continue;
            }
            if let (Some(slot), Some(b)) = (bound.get_mut(c.index()), bind(c)) {
                *slot = Bound {
                    binding: b,
                    ctx_tid: context_tid(c),
                };
            }
        }
        VmBinder { bound }
    }

    /// Whether any class of the set carries KVM events.
    pub fn has_kvm(&self) -> bool {
        self.bound.iter().any(|b| {
            matches!(
                b.binding,
                Binding::Entry { .. }
                    | Binding::Exit { .. }
                    | Binding::UserExit { .. }
                    | Binding::Pio { .. }
            )
        })
    }

    /// The event as the VM model sees it, and the thread that emitted it
    /// (when the trace has a `tid` context).
    #[inline]
    pub fn decode<'e>(&self, ev: &Event<'e>) -> (VmEvent<'e>, Option<i32>) {
        let Some(b) = self.bound.get(ev.class_index()) else {
            return (VmEvent::Other, None);
        };
        if let Binding::Ignore = b.binding {
            return (VmEvent::Other, None);
        }
        let ctx = b
            .ctx_tid
            .and_then(|f| ev.i64(f))
            .and_then(|t| i32::try_from(t).ok());
        (decode(&b.binding, ev).unwrap_or(VmEvent::Other), ctx)
    }
}

#[inline]
fn u32_of(ev: &Event<'_>, f: FieldRef) -> Option<u32> {
    u32::try_from(ev.i64(f)?).ok()
}

#[inline]
fn decode<'e>(b: &Binding, ev: &Event<'e>) -> Option<VmEvent<'e>> {
    Some(match *b {
        Binding::Ignore => VmEvent::Other,
        Binding::Switch {
            prev_tid,
            prev_comm,
            prev_state,
            next_tid,
            next_comm,
        } => VmEvent::Switch {
            prev_tid: i32_of(ev, prev_tid)?,
            prev_comm: text(ev, prev_comm),
            prev_state: prev_state.and_then(|f| ev.i64(f)).unwrap_or(1),
            next_tid: i32_of(ev, next_tid)?,
            next_comm: text(ev, next_comm),
        },
        Binding::Wakeup { tid, target_cpu } => VmEvent::Wakeup {
            tid: i32_of(ev, tid)?,
            target_cpu: target_cpu.and_then(|f| u32_of(ev, f)),
        },
        Binding::Migrate { tid, dest_cpu } => VmEvent::Migrate {
            tid: i32_of(ev, tid)?,
            dest_cpu: u32_of(ev, dest_cpu)?,
        },
        Binding::Fork {
            parent_tid,
            child_tid,
            child_pid,
            child_comm,
        } => VmEvent::Fork {
            parent_tid: i32_of(ev, parent_tid)?,
            child_tid: i32_of(ev, child_tid)?,
            child_pid: child_pid.and_then(|f| i32_of(ev, f)),
            child_comm: text(ev, child_comm),
        },
        Binding::Exec { tid, filename } => VmEvent::Exec {
            tid: i32_of(ev, tid)?,
            filename: ev.str(filename)?,
        },
        Binding::Rename { tid, comm } => VmEvent::Rename {
            tid: i32_of(ev, tid)?,
            comm: ev.str(comm)?,
        },
        Binding::Thread { tid, pid, name } => VmEvent::Thread {
            tid: i32_of(ev, tid)?,
            pid: i32_of(ev, pid)?,
            name: text(ev, name),
        },
        Binding::ThreadExit { tid } => VmEvent::ThreadExit {
            tid: i32_of(ev, tid)?,
        },
        Binding::Entry { vcpu_id } => VmEvent::KvmEntry {
            vcpu_id: vcpu_id.and_then(|f| u32_of(ev, f)),
        },
        Binding::Exit {
            reason,
            isa,
            vcpu_id,
        } => VmEvent::KvmExit {
            reason: u32_of(ev, reason)?,
            isa: isa.and_then(|f| u32_of(ev, f)),
            vcpu_id: vcpu_id.and_then(|f| u32_of(ev, f)),
        },
        Binding::UserExit { reason, errno } => VmEvent::UserspaceExit {
            reason: u32_of(ev, reason)?,
            errno: errno.and_then(|f| i32_of(ev, f)).unwrap_or(0),
        },
        Binding::Pio { rw, port } => VmEvent::Pio {
            write: rw.and_then(|f| ev.i64(f)).is_some_and(|v| v != 0),
            port: u32_of(ev, port)?,
        },
    })
}
