//! The VM model's input: host (or guest) kernel events reduced to the values
//! the vCPU model reads, whatever their source (a CTF trace through
//! [`super::bind`], or a live ftrace stream in the relay).

use crate::event::Tid;

/// One event as the VM model sees it. Strings borrow from the source event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmEvent<'a> {
    /// `sched_switch`.
    Switch {
        /// Thread switched out (0 is the idle task).
        prev_tid: Tid,
        /// Its name.
        prev_comm: &'a [u8],
        /// Its task state: low byte 0 means still runnable (preempted).
        prev_state: i64,
        /// Thread switched in.
        next_tid: Tid,
        /// Its name.
        next_comm: &'a [u8],
    },
    /// `sched_wakeup` / `sched_waking` / `sched_wakeup_new`.
    Wakeup {
        /// The woken thread.
        tid: Tid,
        /// Where it will run, when the event says.
        target_cpu: Option<u32>,
    },
    /// `sched_migrate_task`.
    Migrate {
        /// The moved thread.
        tid: Tid,
        /// Its new CPU.
        dest_cpu: u32,
    },
    /// `sched_process_fork` (a new process or thread).
    Fork {
        /// The thread that forked.
        parent_tid: Tid,
        /// The new thread.
        child_tid: Tid,
        /// Its process, when the event says (Strata's ftrace-made traces
        /// repeat the tid here: then the creator's process is used).
        child_pid: Option<Tid>,
        /// Its name.
        child_comm: &'a [u8],
    },
    /// `sched_process_exec`.
    Exec {
        /// The thread.
        tid: Tid,
        /// The program's path.
        filename: &'a [u8],
    },
    /// `task_rename` (QEMU names its vCPU threads this way).
    Rename {
        /// The thread.
        tid: Tid,
        /// Its new name.
        comm: &'a [u8],
    },
    /// `lttng_statedump_process_state`: a thread alive when tracing began.
    Thread {
        /// Thread id.
        tid: Tid,
        /// Process id.
        pid: Tid,
        /// Name.
        name: &'a [u8],
    },
    /// `sched_process_exit`: the thread ends.
    ThreadExit {
        /// The thread.
        tid: Tid,
    },
    /// `kvm_entry` / `kvm_x86_entry`: the vCPU thread enters guest mode.
    KvmEntry {
        /// The vCPU index inside its VM.
        vcpu_id: Option<u32>,
    },
    /// `kvm_exit` / `kvm_x86_exit`: the guest left to the hypervisor.
    KvmExit {
        /// The raw exit reason.
        reason: u32,
        /// 1 = VMX, 2 = SVM, when the event says.
        isa: Option<u32>,
        /// The vCPU index inside its VM.
        vcpu_id: Option<u32>,
    },
    /// `kvm_userspace_exit`: `KVM_RUN` returned to the VMM process.
    UserspaceExit {
        /// `KVM_EXIT_*` reason.
        reason: u32,
        /// Negative when the ioctl failed (-4 = interrupted).
        errno: i32,
    },
    /// `kvm_pio` / `kvm_x86_pio`: a port I/O exit.
    Pio {
        /// Whether the guest wrote.
        write: bool,
        /// The port.
        port: u32,
    },
    /// Anything the model does not use.
    Other,
}
