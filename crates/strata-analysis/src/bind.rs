//! The binding layer: each CTF event class is matched once, by name, to the
//! kernel event it carries and the fields the state system reads from it.
//! Per event there is one table lookup by class index and a few direct field
//! reads; no name is compared and nothing is allocated.
//!
//! Classes are matched by name when the binder is made, but their fields
//! are looked up when their first event comes: looking a field up compiles
//! the class, and LTTng metadata declares a thousand classes of which a
//! trace uses a few dozen. Classes whose fields the analyses require (all
//! but syscalls and page allocations, whose fields are all optional) are
//! bound up front, so [`Binder::unbound`] is complete from the start.
//!
//! Names understood: LTTng's current ones (`syscall_entry_*`, `irq_softirq_*`,
//! `kmem_mm_page_*`, `x86_exceptions_page_fault_*`), the older ones
//! (`sys_*`/`exit_syscall`, `softirq_*`, `mm_page_*`), the 32-bit
//! `compat_syscall_*` ones, and Strata's own, which follow LTTng's.

use std::sync::OnceLock;

use strata_ctf::read::{Event, EventClass, FieldRef, Trace, TraceSet};

use crate::event::{IoEntry, IoOp, KernelEvent, SoftirqPhase, SyscallId};

/// How to decode one event class.
#[derive(Debug, Clone, Copy)]
enum Binding {
    Ignore,
    Switch {
        prev_tid: FieldRef,
        prev_comm: Option<FieldRef>,
        prev_prio: Option<FieldRef>,
        prev_state: Option<FieldRef>,
        next_tid: FieldRef,
        next_comm: Option<FieldRef>,
        next_prio: Option<FieldRef>,
    },
    Wakeup {
        tid: FieldRef,
        prio: Option<FieldRef>,
        target_cpu: Option<FieldRef>,
        new: bool,
        /// Subtracted from `prio`: 100 for lttng-modules before 2.7.1, which
        /// wrote the kernel's raw priority in wakeups only.
        prio_offset: i32,
    },
    Migrate {
        tid: FieldRef,
        comm: Option<FieldRef>,
        prio: Option<FieldRef>,
        dest_cpu: Option<FieldRef>,
    },
    Fork {
        parent_tid: FieldRef,
        parent_pid: Option<FieldRef>,
        parent_comm: Option<FieldRef>,
        child_tid: FieldRef,
        child_pid: Option<FieldRef>,
        child_comm: Option<FieldRef>,
    },
    NewTask {
        tid: FieldRef,
        clone_flags: FieldRef,
    },
    Exec {
        tid: FieldRef,
        filename: FieldRef,
    },
    Rename {
        tid: FieldRef,
        comm: FieldRef,
    },
    Exit {
        tid: FieldRef,
    },
    Free {
        tid: FieldRef,
    },
    SetPrio {
        tid: FieldRef,
        prio: FieldRef,
    },
    StatedumpThread {
        tid: FieldRef,
        pid: FieldRef,
        ppid: Option<FieldRef>,
        name: Option<FieldRef>,
        status: Option<FieldRef>,
    },
    StatedumpFd {
        pid: FieldRef,
        fd: FieldRef,
        filename: FieldRef,
    },
    StatedumpDisk {
        dev: FieldRef,
        name: FieldRef,
    },
    SyscallEntry {
        id: SyscallId,
        io: Option<(IoOp, Option<FieldRef>, Option<FieldRef>)>,
    },
    SyscallExit {
        ret: Option<FieldRef>,
    },
    IrqEntry {
        irq: FieldRef,
        name: Option<FieldRef>,
    },
    IrqExit {
        irq: FieldRef,
    },
    Softirq {
        phase: SoftirqPhase,
        vec: FieldRef,
    },
    PageAlloc {
        order: Option<FieldRef>,
    },
    PageFree {
        order: Option<FieldRef>,
    },
    PageFault {
        user: bool,
    },
    BlockIssue {
        dev: FieldRef,
        sector: FieldRef,
        nr_sector: FieldRef,
        rwbs: Option<FieldRef>,
        tid: Option<FieldRef>,
    },
    BlockComplete {
        dev: FieldRef,
        sector: FieldRef,
        nr_sector: FieldRef,
    },
}

/// A class the analyses would use but whose fields did not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unbound {
    /// The event class name.
    pub class: String,
    /// The first missing field.
    pub missing: &'static str,
}

/// The bindings of every event class of a trace set.
#[derive(Debug, Clone)]
pub struct Binder {
    /// Per class index, what its name says, decided up front.
    plans: Vec<Plan>,
    /// Per class index, its binding and its `tid` context field, set up
    /// front or on the class's first event.
    bound: Vec<OnceLock<Bound>>,
    syscall_names: Vec<Box<str>>,
    unbound: Vec<Unbound>,
}

/// What binding a class needs, from its name.
#[derive(Debug, Clone, Copy, Default)]
struct Plan {
    /// A kind the analyses use (its fields are looked up).
    used: bool,
    /// Subtracted from wakeup priorities (see [`Binding::Wakeup`]).
    prio_offset: i32,
    /// For a syscall entry, its id.
    syscall: Option<SyscallId>,
    /// The trace's fork events carry thread ids where LTTng has process
    /// ids (Strata's recordings: ftrace records no thread group).
    fork_pids_are_tids: bool,
}

/// A class's resolved binding.
#[derive(Debug, Clone, Copy)]
struct Bound {
    binding: Binding,
    /// The `tid` context field (LTTng `add-context -t tid`, Strata's
    /// traces), when the trace has one.
    ctx_tid: Option<FieldRef>,
}

/// The kernel event class an event name denotes, before fields are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind<'n> {
    Switch,
    Wakeup { new: bool },
    Migrate,
    Fork,
    NewTask,
    Exec,
    Rename,
    Exit,
    Free,
    SetPrio,
    StatedumpThread,
    StatedumpFd,
    StatedumpDisk,
    SyscallEntry(std::borrow::Cow<'n, str>),
    SyscallExit,
    IrqEntry,
    IrqExit,
    Softirq(SoftirqPhase),
    PageAlloc,
    PageFree,
    PageFault { user: bool },
    BlockIssue,
    BlockComplete,
}

fn kind_of(name: &str) -> Option<Kind<'_>> {
    use std::borrow::Cow;
    Some(match name {
        "sched_switch" => Kind::Switch,
        "sched_wakeup" | "sched_waking" => Kind::Wakeup { new: false },
        "sched_wakeup_new" => Kind::Wakeup { new: true },
        "sched_migrate_task" => Kind::Migrate,
        "sched_process_fork" => Kind::Fork,
        "sched_process_exec" => Kind::Exec,
        "task_newtask" => Kind::NewTask,
        "task_rename" => Kind::Rename,
        "sched_process_exit" => Kind::Exit,
        "sched_process_free" => Kind::Free,
        "sched_pi_setprio" => Kind::SetPrio,
        "lttng_statedump_process_state" => Kind::StatedumpThread,
        "lttng_statedump_file_descriptor" => Kind::StatedumpFd,
        "lttng_statedump_block_device" => Kind::StatedumpDisk,
        "exit_syscall" => Kind::SyscallExit,
        "irq_handler_entry" => Kind::IrqEntry,
        "irq_handler_exit" => Kind::IrqExit,
        "softirq_raise" | "irq_softirq_raise" => Kind::Softirq(SoftirqPhase::Raise),
        "softirq_entry" | "irq_softirq_entry" => Kind::Softirq(SoftirqPhase::Entry),
        "softirq_exit" | "irq_softirq_exit" => Kind::Softirq(SoftirqPhase::Exit),
        "kmem_mm_page_alloc" | "mm_page_alloc" => Kind::PageAlloc,
        "kmem_mm_page_free"
        | "mm_page_free"
        | "kmem_mm_page_free_batched"
        | "mm_page_free_batched" => Kind::PageFree,
        "x86_exceptions_page_fault_user" | "page_fault_user" => Kind::PageFault { user: true },
        "x86_exceptions_page_fault_kernel" | "page_fault_kernel" => Kind::PageFault { user: false },
        "block_rq_issue" => Kind::BlockIssue,
        "block_rq_complete" => Kind::BlockComplete,
        _ => {
            if let Some(s) = name.strip_prefix("syscall_entry_") {
                Kind::SyscallEntry(Cow::Borrowed(s))
            } else if let Some(s) = name.strip_prefix("compat_syscall_entry_") {
                Kind::SyscallEntry(Cow::Owned(format!("compat_{s}")))
            } else if name.starts_with("syscall_exit_") || name.starts_with("compat_syscall_exit_")
            {
                Kind::SyscallExit
            } else if let Some(s) = name.strip_prefix("sys_") {
                Kind::SyscallEntry(Cow::Borrowed(s))
            } else {
                return None;
            }
        }
    })
}

/// What an I/O syscall does, by name, and the names of its fd argument.
fn io_op(name: &str) -> Option<(IoOp, &'static [&'static str])> {
    const FD: &[&str] = &["fd"];
    Some(match name {
        "read" | "pread64" | "readv" | "preadv" | "preadv2" | "recvfrom" | "recvmsg" => {
            (IoOp::Read, FD)
        }
        "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" | "sendto" | "sendmsg" => {
            (IoOp::Write, FD)
        }
        // Data moved between two fds counts as written to the destination.
        "splice" | "sendfile" | "sendfile64" | "copy_file_range" => {
            (IoOp::Write, &["fd_out", "out_fd"])
        }
        "open" | "openat" | "openat2" | "creat" => (IoOp::Open, &[]),
        "close" => (IoOp::Close, FD),
        "dup" | "dup2" | "dup3" => (IoOp::Dup, &["oldfd", "fildes"]),
        "sync" | "syncfs" | "fsync" | "fdatasync" | "sync_file_range" => (IoOp::Sync, FD),
        _ => return None,
    })
}

/// The class's `tid` context field: a field named `tid` that is not one of
/// its payload fields (`sched_wakeup` has a payload `tid` of the wakee).
pub(crate) fn context_tid(c: &EventClass) -> Option<FieldRef> {
    let payload: Vec<FieldRef> = c.payload_fields().map(|(_, f)| f).collect();
    c.fields()
        .find(|(name, f, _)| *name == "tid" && !payload.contains(f))
        .map(|(_, f, _)| f)
}

/// Whether the trace's tracer is lttng-modules older than 2.7.1.
fn old_wakeup_prio(t: &Trace) -> bool {
    let num = |k: &str| t.env(k).and_then(|v| v.as_i64());
    let is_lttng = t
        .env("tracer_name")
        .and_then(|v| v.as_str())
        .is_some_and(|n| n.starts_with("lttng"));
    match (
        num("tracer_major"),
        num("tracer_minor"),
        num("tracer_patchlevel"),
    ) {
        (Some(ma), Some(mi), pl) if is_lttng => (ma, mi, pl.unwrap_or(0)) < (2, 7, 1),
        _ => false,
    }
}

impl Binder {
    /// Binds every event class of `set`.
    pub fn new(set: &TraceSet) -> Binder {
        let n = set.class_count();
        let mut b = Binder {
            plans: vec![Plan::default(); n],
            bound: (0..n).map(|_| OnceLock::new()).collect(),
            syscall_names: Vec::new(),
            unbound: Vec::new(),
        };
        let old: Vec<bool> = set.traces().iter().map(old_wakeup_prio).collect();
        let strata: Vec<bool> = set
            .traces()
            .iter()
            .map(|t| t.env("strata_version").is_some())
            .collect();
        for class in set.event_classes() {
            let Some(kind) = kind_of(class.name()) else {
                continue;
            };
            let syscall = match &kind {
                Kind::SyscallEntry(name) => match b.syscall_id(name) {
                    Some(id) => Some(id),
                    None => {
                        b.unbound.push(Unbound {
                            class: class.name().to_string(),
                            missing: "a syscall number below 65536",
                        });
                        continue;
                    }
                },
                _ => None,
            };
            let plan = Plan {
                used: true,
                prio_offset: if old.get(class.trace()).copied().unwrap_or(false) {
                    100
                } else {
                    0
                },
                syscall,
                fork_pids_are_tids: strata.get(class.trace()).copied().unwrap_or(false),
            };
            if let Some(p) = b.plans.get_mut(class.index()) {
                *p = plan;
            }
            // Those with required fields are bound now, to list what is
            // missing before reading.
            let optional_only = matches!(
                kind,
                Kind::SyscallEntry(_)
                    | Kind::SyscallExit
                    | Kind::PageAlloc
                    | Kind::PageFree
                    | Kind::PageFault { .. }
            );
            if !optional_only {
                let bound = b.resolve(class);
                if let Some(cell) = b.bound.get(class.index()) {
                    let _ = cell.set(bound);
                }
            }
        }
        b
    }

    /// Binds `class` by its fields: what its plan says, or `Ignore` (noted
    /// in `unbound` when a required field is missing).
    fn resolve(&mut self, class: &EventClass) -> Bound {
        let binding = match self.bind_fields(class) {
            Ok(x) => x,
            Err(missing) => {
                self.unbound.push(Unbound {
                    class: class.name().to_string(),
                    missing,
                });
                Binding::Ignore
            }
        };
        Bound {
            binding,
            ctx_tid: context_tid(class),
        }
    }

    /// The binding of the class of `ev`, resolved on its first event.
    #[inline]
    fn bound(&self, ev: &Event<'_>) -> Option<&Bound> {
        let cell = self.bound.get(ev.class_index())?;
        match cell.get() {
            Some(b) => Some(b),
            None => Some(cell.get_or_init(|| self.resolve_late(ev.class()))),
        }
    }

    /// Binds a class on its first event. Only classes whose fields are all
    /// optional wait for it, so nothing can be missing.
    #[cold]
    fn resolve_late(&self, class: &EventClass) -> Bound {
        let plan = self.plans.get(class.index()).copied().unwrap_or_default();
        let binding = if plan.used {
            bind(class, plan).unwrap_or(Binding::Ignore)
        } else {
            Binding::Ignore
        };
        Bound {
            binding,
            ctx_tid: context_tid(class),
        }
    }

    fn syscall_id(&mut self, name: &str) -> Option<SyscallId> {
        if let Some(i) = self.syscall_names.iter().position(|n| &**n == name) {
            return Some(i as SyscallId);
        }
        let id = SyscallId::try_from(self.syscall_names.len()).ok()?;
        self.syscall_names.push(name.into());
        Some(id)
    }

    fn bind_fields(&self, c: &EventClass) -> Result<Binding, &'static str> {
        let plan = self.plans.get(c.index()).copied().unwrap_or_default();
        bind(c, plan)
    }

    /// The syscall names, indexed by [`SyscallId`].
    pub fn syscall_names(&self) -> &[Box<str>] {
        &self.syscall_names
    }

    /// The name of syscall `id`.
    pub fn syscall_name(&self, id: SyscallId) -> &str {
        self.syscall_names.get(id as usize).map_or("?", |s| s)
    }

    /// The thread the event's `tid` context names: the thread that was
    /// running when it was emitted.
    #[inline]
    pub fn context_tid(&self, ev: &Event<'_>) -> Option<i32> {
        let f = self.bound(ev)?.ctx_tid?;
        i32::try_from(ev.i64(f)?).ok()
    }

    /// Classes the analyses would have used but could not, for lack of a field.
    pub fn unbound(&self) -> &[Unbound] {
        &self.unbound
    }

    /// Whether the class with this index feeds the state system (for a
    /// class whose fields are all optional, as soon as its name says so).
    pub fn is_bound(&self, class_index: usize) -> bool {
        match self.bound.get(class_index).and_then(OnceLock::get) {
            Some(b) => !matches!(b.binding, Binding::Ignore),
            None => self.plans.get(class_index).is_some_and(|p| p.used),
        }
    }

    /// Decodes `ev` into the state system's terms. Events of classes the
    /// analyses do not use, or missing a required value, give
    /// [`KernelEvent::Other`].
    #[inline]
    pub fn decode<'e>(&self, ev: &Event<'e>) -> KernelEvent<'e> {
        match self.bound(ev).map(|b| &b.binding) {
            None | Some(Binding::Ignore) => KernelEvent::Other,
            Some(b) => decode(b, ev).unwrap_or(KernelEvent::Other),
        }
    }
}

/// Looks up the fields of `c` for the binding its name calls for.
fn bind(c: &EventClass, plan: Plan) -> Result<Binding, &'static str> {
    let Some(kind) = kind_of(c.name()) else {
        return Ok(Binding::Ignore);
    };
    let need = |n: &'static str| c.field(n).ok_or(n);
    let opt = |n: &str| c.field(n);
    let either = |a: &'static str, b: &str| c.field(a).or_else(|| c.field(b)).ok_or(a);
    Ok(match kind {
        Kind::Switch => Binding::Switch {
            prev_tid: either("prev_tid", "prev_pid")?,
            prev_comm: opt("prev_comm"),
            prev_prio: opt("prev_prio"),
            prev_state: opt("prev_state"),
            next_tid: either("next_tid", "next_pid")?,
            next_comm: opt("next_comm"),
            next_prio: opt("next_prio"),
        },
        Kind::Wakeup { new } => Binding::Wakeup {
            tid: either("tid", "pid")?,
            prio: opt("prio"),
            target_cpu: opt("target_cpu"),
            new,
            prio_offset: plan.prio_offset,
        },
        Kind::Migrate => Binding::Migrate {
            tid: either("tid", "pid")?,
            comm: opt("comm"),
            prio: opt("prio"),
            dest_cpu: opt("dest_cpu"),
        },
        Kind::Fork => Binding::Fork {
            parent_tid: either("parent_tid", "parent_pid")?,
            parent_pid: opt("parent_pid")
                .filter(|_| c.field("parent_tid").is_some() && !plan.fork_pids_are_tids),
            parent_comm: opt("parent_comm"),
            child_tid: either("child_tid", "child_pid")?,
            child_pid: opt("child_pid")
                .filter(|_| c.field("child_tid").is_some() && !plan.fork_pids_are_tids),
            child_comm: opt("child_comm"),
        },
        Kind::NewTask => Binding::NewTask {
            tid: either("pid", "tid")?,
            clone_flags: need("clone_flags")?,
        },
        Kind::Exec => Binding::Exec {
            tid: either("tid", "pid")?,
            filename: need("filename")?,
        },
        Kind::Rename => Binding::Rename {
            tid: either("pid", "tid")?,
            comm: need("newcomm")?,
        },
        Kind::Exit => Binding::Exit {
            tid: either("tid", "pid")?,
        },
        Kind::Free => Binding::Free {
            tid: either("tid", "pid")?,
        },
        Kind::SetPrio => Binding::SetPrio {
            tid: either("tid", "pid")?,
            prio: need("newprio")?,
        },
        Kind::StatedumpThread => Binding::StatedumpThread {
            tid: need("tid")?,
            pid: need("pid")?,
            ppid: opt("ppid"),
            name: opt("name"),
            status: opt("status"),
        },
        Kind::StatedumpFd => Binding::StatedumpFd {
            pid: need("pid")?,
            fd: need("fd")?,
            filename: need("filename")?,
        },
        Kind::StatedumpDisk => Binding::StatedumpDisk {
            dev: need("dev")?,
            name: need("diskname")?,
        },
        Kind::SyscallEntry(name) => {
            let Some(id) = plan.syscall else {
                return Err("a syscall number below 65536");
            };
            let io = io_op(&name).map(|(op, fds)| {
                let fd = fds.iter().find_map(|n| c.field(n));
                let path = (op == IoOp::Open).then(|| c.field("filename")).flatten();
                (op, fd, path)
            });
            Binding::SyscallEntry { id, io }
        }
        Kind::SyscallExit => Binding::SyscallExit { ret: opt("ret") },
        Kind::IrqEntry => Binding::IrqEntry {
            irq: need("irq")?,
            name: opt("name"),
        },
        Kind::IrqExit => Binding::IrqExit { irq: need("irq")? },
        Kind::Softirq(phase) => Binding::Softirq {
            phase,
            vec: need("vec")?,
        },
        Kind::PageAlloc => Binding::PageAlloc {
            order: opt("order"),
        },
        Kind::PageFree => Binding::PageFree {
            order: opt("order"),
        },
        Kind::PageFault { user } => Binding::PageFault { user },
        Kind::BlockIssue => Binding::BlockIssue {
            dev: need("dev")?,
            sector: need("sector")?,
            nr_sector: need("nr_sector")?,
            rwbs: opt("rwbs"),
            tid: opt("tid"),
        },
        Kind::BlockComplete => Binding::BlockComplete {
            dev: need("dev")?,
            sector: need("sector")?,
            nr_sector: need("nr_sector")?,
        },
    })
}

#[inline]
fn int(ev: &Event<'_>, f: FieldRef) -> Option<i64> {
    ev.i64(f)
}

/// An `i32` field (a tid, a pid), `None` when absent or out of range.
#[inline]
pub(crate) fn tid(ev: &Event<'_>, f: FieldRef) -> Option<i32> {
    i32::try_from(ev.i64(f)?).ok()
}

#[inline]
fn opt_i32(ev: &Event<'_>, f: Option<FieldRef>) -> Option<i32> {
    f.and_then(|f| i32::try_from(ev.i64(f)?).ok())
}

#[inline]
fn opt_u32(ev: &Event<'_>, f: Option<FieldRef>) -> Option<u32> {
    f.and_then(|f| u32::try_from(ev.i64(f)?).ok())
}

/// A string field's bytes, empty when the field is absent.
#[inline]
pub(crate) fn text<'e>(ev: &Event<'e>, f: Option<FieldRef>) -> &'e [u8] {
    f.and_then(|f| ev.str(f)).unwrap_or(b"")
}

#[inline]
fn decode<'e>(b: &Binding, ev: &Event<'e>) -> Option<KernelEvent<'e>> {
    Some(match *b {
        Binding::Ignore => KernelEvent::Other,
        Binding::SyscallEntry { id, io } => KernelEvent::SyscallEntry {
            id,
            io: io.map(|(op, fd, path)| IoEntry {
                op,
                fd: fd.and_then(|f| ev.i64(f)),
                path: path.and_then(|f| ev.str(f)),
            }),
        },
        Binding::SyscallExit { ret } => KernelEvent::SyscallExit {
            ret: ret.and_then(|f| ev.i64(f)),
        },
        Binding::Switch {
            prev_tid,
            prev_comm,
            prev_prio,
            prev_state,
            next_tid,
            next_comm,
            next_prio,
        } => KernelEvent::Switch {
            prev_tid: tid(ev, prev_tid)?,
            prev_comm: text(ev, prev_comm),
            prev_prio: opt_i32(ev, prev_prio),
            prev_state: prev_state.and_then(|f| ev.i64(f)).unwrap_or(0),
            next_tid: tid(ev, next_tid)?,
            next_comm: text(ev, next_comm),
            next_prio: opt_i32(ev, next_prio),
        },
        Binding::Wakeup {
            tid: t,
            prio,
            target_cpu,
            new,
            prio_offset,
        } => KernelEvent::Wakeup {
            tid: tid(ev, t)?,
            prio: opt_i32(ev, prio).map(|p| p.saturating_sub(prio_offset)),
            target_cpu: opt_u32(ev, target_cpu),
            new,
        },
        Binding::Migrate {
            tid: t,
            comm,
            prio,
            dest_cpu,
        } => KernelEvent::Migrate {
            tid: tid(ev, t)?,
            comm: text(ev, comm),
            prio: opt_i32(ev, prio),
            dest_cpu: opt_u32(ev, dest_cpu),
        },
        Binding::Fork {
            parent_tid,
            parent_pid,
            parent_comm,
            child_tid,
            child_pid,
            child_comm,
        } => KernelEvent::Fork {
            parent_tid: tid(ev, parent_tid)?,
            parent_pid: opt_i32(ev, parent_pid),
            parent_comm: text(ev, parent_comm),
            child_tid: tid(ev, child_tid)?,
            child_pid: opt_i32(ev, child_pid),
            child_comm: text(ev, child_comm),
        },
        Binding::NewTask {
            tid: t,
            clone_flags,
        } => KernelEvent::NewTask {
            tid: tid(ev, t)?,
            clone_flags: ev.u64(clone_flags)?,
        },
        Binding::Exec { tid: t, filename } => KernelEvent::Exec {
            tid: tid(ev, t)?,
            filename: ev.str(filename)?,
        },
        Binding::Rename { tid: t, comm } => KernelEvent::Rename {
            tid: tid(ev, t)?,
            comm: ev.str(comm)?,
        },
        Binding::Exit { tid: t } => KernelEvent::Exit { tid: tid(ev, t)? },
        Binding::Free { tid: t } => KernelEvent::Free { tid: tid(ev, t)? },
        Binding::SetPrio { tid: t, prio } => KernelEvent::SetPrio {
            tid: tid(ev, t)?,
            prio: i32::try_from(int(ev, prio)?).ok()?,
        },
        Binding::StatedumpThread {
            tid: t,
            pid,
            ppid,
            name,
            status,
        } => KernelEvent::StatedumpThread {
            tid: tid(ev, t)?,
            pid: tid(ev, pid)?,
            ppid: opt_i32(ev, ppid),
            name: text(ev, name),
            status: status.and_then(|f| ev.i64(f)),
        },
        Binding::StatedumpFd { pid, fd, filename } => KernelEvent::StatedumpFd {
            pid: tid(ev, pid)?,
            fd: int(ev, fd)?,
            filename: ev.str(filename)?,
        },
        Binding::StatedumpDisk { dev, name } => KernelEvent::StatedumpDisk {
            dev: ev.u64(dev)?,
            name: ev.str(name)?,
        },
        Binding::IrqEntry { irq, name } => KernelEvent::IrqEntry {
            irq: int(ev, irq)?,
            name: text(ev, name),
        },
        Binding::IrqExit { irq } => KernelEvent::IrqExit { irq: int(ev, irq)? },
        Binding::Softirq { phase, vec } => KernelEvent::Softirq {
            phase,
            vec: u32::try_from(int(ev, vec)?).ok()?,
        },
        Binding::PageAlloc { order } => KernelEvent::PageAlloc {
            order: opt_u32(ev, order).unwrap_or(0),
        },
        Binding::PageFree { order } => KernelEvent::PageFree {
            order: opt_u32(ev, order).unwrap_or(0),
        },
        Binding::PageFault { user } => KernelEvent::PageFault { user },
        Binding::BlockIssue {
            dev,
            sector,
            nr_sector,
            rwbs,
            tid: t,
        } => KernelEvent::BlockIssue {
            dev: ev.u64(dev)?,
            sector: ev.u64(sector)?,
            nr_sector: ev.u64(nr_sector)?,
            write: rwbs.and_then(|f| ev.u64(f)).is_some_and(|r| r & 1 == 1),
            tid: opt_i32(ev, t),
        },
        Binding::BlockComplete {
            dev,
            sector,
            nr_sector,
        } => KernelEvent::BlockComplete {
            dev: ev.u64(dev)?,
            sector: ev.u64(sector)?,
            nr_sector: ev.u64(nr_sector)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_kinds() {
        assert_eq!(kind_of("sched_switch"), Some(Kind::Switch));
        assert_eq!(
            kind_of("irq_softirq_entry"),
            Some(Kind::Softirq(SoftirqPhase::Entry))
        );
        assert_eq!(
            kind_of("softirq_exit"),
            Some(Kind::Softirq(SoftirqPhase::Exit))
        );
        assert_eq!(
            kind_of("syscall_entry_openat"),
            Some(Kind::SyscallEntry("openat".into()))
        );
        assert_eq!(kind_of("sys_open"), Some(Kind::SyscallEntry("open".into())));
        assert_eq!(
            kind_of("compat_syscall_entry_read"),
            Some(Kind::SyscallEntry("compat_read".into()))
        );
        assert_eq!(kind_of("exit_syscall"), Some(Kind::SyscallExit));
        assert_eq!(kind_of("syscall_exit_unknown"), Some(Kind::SyscallExit));
        assert_eq!(kind_of("compat_syscall_exit_read"), Some(Kind::SyscallExit));
        assert_eq!(kind_of("kmem_mm_page_alloc"), Some(Kind::PageAlloc));
        assert_eq!(kind_of("timer_start"), None);
        assert_eq!(io_op("pread64").map(|x| x.0), Some(IoOp::Read));
        assert_eq!(io_op("dup2").map(|x| x.0), Some(IoOp::Dup));
        assert_eq!(io_op("futex"), None);
    }
}
