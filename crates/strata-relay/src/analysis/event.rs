//! An owned, fixed-size copy of what the state system needs from one event,
//! so that events of several CPUs can wait in the reorder buffer after the
//! bytes they came from are gone. Strings are cut to short inline buffers:
//! task names are at most 16 bytes, and an `exec` keeps only the program's
//! base name, which is all the state system derives from the path.

use strata_analysis::event::{Comm, KernelEvent, SoftirqPhase, SyscallId, Tid};
use strata_analysis::vm::VmEvent;

/// Bytes kept of an IRQ handler name.
const NAME_LEN: usize = 24;

/// A short name held inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name {
    bytes: [u8; NAME_LEN],
    len: u8,
}

impl Name {
    /// The first bytes of `b` up to its first NUL.
    pub fn new(b: &[u8]) -> Name {
        let b = b.split(|&c| c == 0).next().unwrap_or(&[]);
        let n = b.len().min(NAME_LEN);
        let mut bytes = [0u8; NAME_LEN];
        bytes[..n].copy_from_slice(&b[..n]);
        Name {
            bytes,
            len: n as u8,
        }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// What happened, in the state system's terms (see [`KernelEvent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum LiveKind {
    Switch {
        prev_tid: Tid,
        prev_comm: Comm,
        prev_prio: Option<i32>,
        prev_state: i64,
        next_tid: Tid,
        next_comm: Comm,
        next_prio: Option<i32>,
    },
    Wakeup {
        tid: Tid,
        prio: Option<i32>,
        target_cpu: Option<u32>,
        new: bool,
    },
    Migrate {
        tid: Tid,
        comm: Comm,
        prio: Option<i32>,
        dest_cpu: Option<u32>,
    },
    Fork {
        parent_tid: Tid,
        parent_pid: Option<Tid>,
        parent_comm: Comm,
        child_tid: Tid,
        child_pid: Option<Tid>,
        child_comm: Comm,
    },
    NewTask {
        tid: Tid,
        clone_flags: u64,
    },
    /// `exec`: the program's base name, as the kernel names the task.
    Exec {
        tid: Tid,
        comm: Comm,
    },
    Rename {
        tid: Tid,
        comm: Comm,
    },
    Exit {
        tid: Tid,
    },
    Free {
        tid: Tid,
    },
    SetPrio {
        tid: Tid,
        prio: i32,
    },
    StatedumpThread {
        tid: Tid,
        pid: Tid,
        ppid: Option<Tid>,
        name: Comm,
        status: Option<i64>,
    },
    SyscallEntry {
        id: SyscallId,
    },
    SyscallExit {
        ret: Option<i64>,
    },
    IrqEntry {
        irq: i64,
        name: Name,
    },
    IrqExit {
        irq: i64,
    },
    Softirq {
        phase: SoftirqPhase,
        vec: u32,
    },
    PageAlloc {
        order: u32,
    },
    PageFree {
        order: u32,
    },
    PageFault {
        user: bool,
    },
    /// `kvm_entry`: a vCPU thread enters guest mode (the VM model's).
    KvmEntry {
        vcpu_id: Option<u32>,
    },
    /// `kvm_exit`: the guest exits to the hypervisor.
    KvmExit {
        reason: u32,
        isa: Option<u32>,
        vcpu_id: Option<u32>,
    },
    /// `kvm_userspace_exit`: `KVM_RUN` returns to the VMM process.
    KvmUserExit {
        reason: u32,
        errno: i32,
    },
    /// `kvm_pio`: a port I/O exit.
    KvmPio {
        write: bool,
        port: u32,
    },
    /// A write system call entry (`write`, `writev`, `pwritev`) and its
    /// descriptor: a guest sync probe's port write under QEMU TCG, when a
    /// vCPU thread makes it. The state system sees a `SyscallEntry`.
    WriteEntry {
        id: SyscallId,
        fd: i64,
    },
    /// A guest's sync probe marker (`strata-sync SEQ BEFORE AFTER` written
    /// to `trace_marker`): its two clock readings. Raw clock values as
    /// decoded; ns since the epoch once [`LiveKind::sync_marker_in_ns`]
    /// converted them.
    SyncMarker {
        before: u64,
        after: u64,
    },
    /// An event the analyses do not use; only its thread context counts.
    Other,
}

/// One event waiting to be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveEvent {
    /// Nanoseconds since the Unix epoch.
    pub ts: i64,
    /// When the relay received it (ns since the Unix epoch).
    pub arrived: i64,
    /// The CPU it was emitted on.
    pub cpu: u32,
    /// The thread that was running (ftrace `common_pid`, LTTng `tid`
    /// context), or -1 when unknown.
    pub tid: Tid,
    /// What happened.
    pub kind: LiveKind,
}

impl LiveKind {
    /// The owned copy of `ev`.
    pub fn from_kernel(ev: &KernelEvent<'_>) -> LiveKind {
        match *ev {
            KernelEvent::Switch {
                prev_tid,
                prev_comm,
                prev_prio,
                prev_state,
                next_tid,
                next_comm,
                next_prio,
            } => LiveKind::Switch {
                prev_tid,
                prev_comm: Comm::new(prev_comm),
                prev_prio,
                prev_state,
                next_tid,
                next_comm: Comm::new(next_comm),
                next_prio,
            },
            KernelEvent::Wakeup {
                tid,
                prio,
                target_cpu,
                new,
            } => LiveKind::Wakeup {
                tid,
                prio,
                target_cpu,
                new,
            },
            KernelEvent::Migrate {
                tid,
                comm,
                prio,
                dest_cpu,
            } => LiveKind::Migrate {
                tid,
                comm: Comm::new(comm),
                prio,
                dest_cpu,
            },
            KernelEvent::Fork {
                parent_tid,
                parent_pid,
                parent_comm,
                child_tid,
                child_pid,
                child_comm,
            } => LiveKind::Fork {
                parent_tid,
                parent_pid,
                parent_comm: Comm::new(parent_comm),
                child_tid,
                child_pid,
                child_comm: Comm::new(child_comm),
            },
            KernelEvent::NewTask { tid, clone_flags } => LiveKind::NewTask { tid, clone_flags },
            KernelEvent::Exec { tid, filename } => LiveKind::Exec {
                tid,
                comm: Comm::from_exec_path(filename),
            },
            KernelEvent::Rename { tid, comm } => LiveKind::Rename {
                tid,
                comm: Comm::new(comm),
            },
            KernelEvent::Exit { tid } => LiveKind::Exit { tid },
            KernelEvent::Free { tid } => LiveKind::Free { tid },
            KernelEvent::SetPrio { tid, prio } => LiveKind::SetPrio { tid, prio },
            KernelEvent::StatedumpThread {
                tid,
                pid,
                ppid,
                name,
                status,
            } => LiveKind::StatedumpThread {
                tid,
                pid,
                ppid,
                name: Comm::new(name),
                status,
            },
            KernelEvent::SyscallEntry { id, .. } => LiveKind::SyscallEntry { id },
            KernelEvent::SyscallExit { ret } => LiveKind::SyscallExit { ret },
            KernelEvent::IrqEntry { irq, name } => LiveKind::IrqEntry {
                irq,
                name: Name::new(name),
            },
            KernelEvent::IrqExit { irq } => LiveKind::IrqExit { irq },
            KernelEvent::Softirq { phase, vec } => LiveKind::Softirq { phase, vec },
            KernelEvent::PageAlloc { order } => LiveKind::PageAlloc { order },
            KernelEvent::PageFree { order } => LiveKind::PageFree { order },
            KernelEvent::PageFault { user } => LiveKind::PageFault { user },
            _ => LiveKind::Other,
        }
    }

    /// The borrowed view the state system takes.
    pub fn to_kernel(&self) -> KernelEvent<'_> {
        match self {
            LiveKind::Switch {
                prev_tid,
                prev_comm,
                prev_prio,
                prev_state,
                next_tid,
                next_comm,
                next_prio,
            } => KernelEvent::Switch {
                prev_tid: *prev_tid,
                prev_comm: prev_comm.as_bytes(),
                prev_prio: *prev_prio,
                prev_state: *prev_state,
                next_tid: *next_tid,
                next_comm: next_comm.as_bytes(),
                next_prio: *next_prio,
            },
            LiveKind::Wakeup {
                tid,
                prio,
                target_cpu,
                new,
            } => KernelEvent::Wakeup {
                tid: *tid,
                prio: *prio,
                target_cpu: *target_cpu,
                new: *new,
            },
            LiveKind::Migrate {
                tid,
                comm,
                prio,
                dest_cpu,
            } => KernelEvent::Migrate {
                tid: *tid,
                comm: comm.as_bytes(),
                prio: *prio,
                dest_cpu: *dest_cpu,
            },
            LiveKind::Fork {
                parent_tid,
                parent_pid,
                parent_comm,
                child_tid,
                child_pid,
                child_comm,
            } => KernelEvent::Fork {
                parent_tid: *parent_tid,
                parent_pid: *parent_pid,
                parent_comm: parent_comm.as_bytes(),
                child_tid: *child_tid,
                child_pid: *child_pid,
                child_comm: child_comm.as_bytes(),
            },
            LiveKind::Exec { tid, comm } => KernelEvent::Exec {
                tid: *tid,
                filename: comm.as_bytes(),
            },
            LiveKind::NewTask { tid, clone_flags } => KernelEvent::NewTask {
                tid: *tid,
                clone_flags: *clone_flags,
            },
            LiveKind::Rename { tid, comm } => KernelEvent::Rename {
                tid: *tid,
                comm: comm.as_bytes(),
            },
            LiveKind::Exit { tid } => KernelEvent::Exit { tid: *tid },
            LiveKind::Free { tid } => KernelEvent::Free { tid: *tid },
            LiveKind::SetPrio { tid, prio } => KernelEvent::SetPrio {
                tid: *tid,
                prio: *prio,
            },
            LiveKind::StatedumpThread {
                tid,
                pid,
                ppid,
                name,
                status,
            } => KernelEvent::StatedumpThread {
                tid: *tid,
                pid: *pid,
                ppid: *ppid,
                name: name.as_bytes(),
                status: *status,
            },
            LiveKind::SyscallEntry { id } | LiveKind::WriteEntry { id, .. } => {
                KernelEvent::SyscallEntry { id: *id, io: None }
            }
            LiveKind::SyscallExit { ret } => KernelEvent::SyscallExit { ret: *ret },
            LiveKind::IrqEntry { irq, name } => KernelEvent::IrqEntry {
                irq: *irq,
                name: name.as_bytes(),
            },
            LiveKind::IrqExit { irq } => KernelEvent::IrqExit { irq: *irq },
            LiveKind::Softirq { phase, vec } => KernelEvent::Softirq {
                phase: *phase,
                vec: *vec,
            },
            LiveKind::PageAlloc { order } => KernelEvent::PageAlloc { order: *order },
            LiveKind::PageFree { order } => KernelEvent::PageFree { order: *order },
            LiveKind::PageFault { user } => KernelEvent::PageFault { user: *user },
            LiveKind::KvmEntry { .. }
            | LiveKind::KvmExit { .. }
            | LiveKind::KvmUserExit { .. }
            | LiveKind::KvmPio { .. }
            | LiveKind::SyncMarker { .. }
            | LiveKind::Other => KernelEvent::Other,
        }
    }

    /// A sync marker's readings converted to ns since the epoch with
    /// `to_ns`, the trace clock's conversion: the probe reads the TSC, so
    /// its values are the trace's own only on a cycle clock (`x86-tsc`,
    /// `cycle_clock`); on another clock the marker cannot be used and
    /// becomes `Other`. Other events are returned as they are.
    #[inline]
    pub fn sync_marker_in_ns(self, cycle_clock: bool, to_ns: impl Fn(u64) -> i64) -> LiveKind {
        match self {
            LiveKind::SyncMarker { before, after } => {
                if !cycle_clock {
                    return LiveKind::Other;
                }
                match (u64::try_from(to_ns(before)), u64::try_from(to_ns(after))) {
                    (Ok(before), Ok(after)) if before <= after => {
                        LiveKind::SyncMarker { before, after }
                    }
                    _ => LiveKind::Other,
                }
            }
            k => k,
        }
    }

    /// The VM model's view of this event.
    pub fn to_vm(&self) -> VmEvent<'_> {
        match self {
            LiveKind::Switch {
                prev_tid,
                prev_comm,
                prev_state,
                next_tid,
                next_comm,
                ..
            } => VmEvent::Switch {
                prev_tid: *prev_tid,
                prev_comm: prev_comm.as_bytes(),
                prev_state: *prev_state,
                next_tid: *next_tid,
                next_comm: next_comm.as_bytes(),
            },
            LiveKind::Wakeup {
                tid, target_cpu, ..
            } => VmEvent::Wakeup {
                tid: *tid,
                target_cpu: *target_cpu,
            },
            LiveKind::Migrate {
                tid,
                dest_cpu: Some(d),
                ..
            } => VmEvent::Migrate {
                tid: *tid,
                dest_cpu: *d,
            },
            LiveKind::Fork {
                parent_tid,
                child_tid,
                child_pid,
                child_comm,
                ..
            } => VmEvent::Fork {
                parent_tid: *parent_tid,
                child_tid: *child_tid,
                child_pid: *child_pid,
                child_comm: child_comm.as_bytes(),
            },
            LiveKind::Exec { tid, comm } => VmEvent::Exec {
                tid: *tid,
                filename: comm.as_bytes(),
            },
            LiveKind::Rename { tid, comm } => VmEvent::Rename {
                tid: *tid,
                comm: comm.as_bytes(),
            },
            LiveKind::Exit { tid } => VmEvent::ThreadExit { tid: *tid },
            LiveKind::StatedumpThread { tid, pid, name, .. } => VmEvent::Thread {
                tid: *tid,
                pid: *pid,
                name: name.as_bytes(),
            },
            LiveKind::KvmEntry { vcpu_id } => VmEvent::KvmEntry { vcpu_id: *vcpu_id },
            LiveKind::KvmExit {
                reason,
                isa,
                vcpu_id,
            } => VmEvent::KvmExit {
                reason: *reason,
                isa: *isa,
                vcpu_id: *vcpu_id,
            },
            LiveKind::KvmUserExit { reason, errno } => VmEvent::UserspaceExit {
                reason: *reason,
                errno: *errno,
            },
            LiveKind::KvmPio { write, port } => VmEvent::Pio {
                write: *write,
                port: *port,
            },
            _ => VmEvent::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_kernel_view() {
        let ev = KernelEvent::Switch {
            prev_tid: 10,
            prev_comm: b"bash\0\0\0",
            prev_prio: Some(20),
            prev_state: 1,
            next_tid: 0,
            next_comm: b"swapper/0",
            next_prio: Some(20),
        };
        let owned = LiveKind::from_kernel(&ev);
        assert_eq!(
            owned.to_kernel(),
            KernelEvent::Switch {
                prev_tid: 10,
                prev_comm: b"bash",
                prev_prio: Some(20),
                prev_state: 1,
                next_tid: 0,
                next_comm: b"swapper/0",
                next_prio: Some(20),
            }
        );
        let exec = LiveKind::from_kernel(&KernelEvent::Exec {
            tid: 5,
            filename: b"/usr/bin/a-very-long-program-name",
        });
        // The kernel keeps 15 bytes of the base name.
        assert_eq!(
            exec.to_kernel(),
            KernelEvent::Exec {
                tid: 5,
                filename: b"a-very-long-pro"
            }
        );
        assert!(
            std::mem::size_of::<LiveEvent>() <= 96,
            "{}",
            std::mem::size_of::<LiveEvent>()
        );
    }
}
