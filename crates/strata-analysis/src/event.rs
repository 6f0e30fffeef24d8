//! The state system's input: kernel events reduced to the few values the
//! analyses need, independent of where they came from (a CTF trace through
//! [`crate::bind`], or later a live ftrace stream).
//!
//! A [`KernelEvent`] borrows its strings from the source event, so building
//! one never allocates.

use std::fmt;

/// A thread id as the kernel numbers it (LTTng's `tid`, ftrace's `pid`).
pub type Tid = i32;

/// Bytes of a kernel task name (`TASK_COMM_LEN`, NUL included).
pub const COMM_LEN: usize = 16;

/// A task name (`comm`), stored inline: at most 16 bytes, no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Comm {
    bytes: [u8; COMM_LEN],
    len: u8,
}

impl Comm {
    /// The name in `b` up to its first NUL, cut to 16 bytes.
    pub fn new(b: &[u8]) -> Comm {
        let b = b.split(|&c| c == 0).next().unwrap_or(&[]);
        let n = b.len().min(COMM_LEN);
        let mut bytes = [0u8; COMM_LEN];
        bytes[..n].copy_from_slice(&b[..n]);
        Comm {
            bytes,
            len: n as u8,
        }
    }

    /// The name the kernel gives a task after `exec(path)`: the last path
    /// component, cut to 15 bytes as `__set_task_comm` does.
    pub fn from_exec_path(path: &[u8]) -> Comm {
        let base = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
        Comm::new(&base[..base.len().min(COMM_LEN - 1)])
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Whether no name is known.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The name as text, with invalid UTF-8 replaced.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Dense number of a syscall name, given by [`crate::bind::Binder`]; the names
/// are in [`crate::bind::Binder::syscall_names`].
pub type SyscallId = u16;

/// What an I/O syscall does, decided once per syscall name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// Reads from `fd`.
    Read,
    /// Writes to `fd`.
    Write,
    /// Opens a file by name; the return value is the new fd.
    Open,
    /// Closes `fd`.
    Close,
    /// Duplicates `fd`; the return value is the new fd.
    Dup,
    /// Flushes `fd` (or everything).
    Sync,
}

/// The I/O facts of a syscall entry, when the syscall is an I/O one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoEntry<'a> {
    /// What the syscall does.
    pub op: IoOp,
    /// The file descriptor it works on (`fd`, `fd_in`, `oldfd`, ...), if any.
    pub fd: Option<i64>,
    /// The path it opens (`filename`), for [`IoOp::Open`].
    pub path: Option<&'a [u8]>,
}

/// Softirq phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftirqPhase {
    /// `softirq_raise`: the softirq is marked pending.
    Raise,
    /// `softirq_entry`: its handler starts.
    Entry,
    /// `softirq_exit`: its handler ends.
    Exit,
}

/// One kernel event, as the state system sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelEvent<'a> {
    /// `sched_switch`: the CPU stops running `prev` and runs `next`.
    Switch {
        /// Thread switched out (0 is the idle task).
        prev_tid: Tid,
        /// Its name.
        prev_comm: &'a [u8],
        /// Its priority (LTTng's: kernel prio - 100).
        prev_prio: Option<i32>,
        /// Its task state (0 = still runnable, i.e. preempted).
        prev_state: i64,
        /// Thread switched in (0 is the idle task).
        next_tid: Tid,
        /// Its name.
        next_comm: &'a [u8],
        /// Its priority.
        next_prio: Option<i32>,
    },
    /// `sched_waking`, `sched_wakeup` or `sched_wakeup_new`.
    Wakeup {
        /// The thread woken.
        tid: Tid,
        /// Its priority (already in LTTng's convention).
        prio: Option<i32>,
        /// The CPU it will run on.
        target_cpu: Option<u32>,
        /// `sched_wakeup_new`: the first wakeup of a new thread.
        new: bool,
    },
    /// `sched_migrate_task`.
    Migrate {
        /// The thread moved.
        tid: Tid,
        /// Its name.
        comm: &'a [u8],
        /// Its priority.
        prio: Option<i32>,
        /// Where it goes.
        dest_cpu: Option<u32>,
    },
    /// `sched_process_fork`.
    Fork {
        /// The forking thread.
        parent_tid: Tid,
        /// Its process, when the event says.
        parent_pid: Option<Tid>,
        /// Its name.
        parent_comm: &'a [u8],
        /// The new thread.
        child_tid: Tid,
        /// Its process, when the event says.
        child_pid: Option<Tid>,
        /// Its name.
        child_comm: &'a [u8],
    },
    /// `task_newtask`: a task is being created, just before its
    /// `sched_process_fork`; its clone flags say whether it is a thread of
    /// the parent's process, which ftrace's fork event does not say.
    NewTask {
        /// The new thread.
        tid: Tid,
        /// The `clone` flags it was created with.
        clone_flags: u64,
    },
    /// `sched_process_exec`: the thread runs a new program.
    Exec {
        /// The thread.
        tid: Tid,
        /// The program's path.
        filename: &'a [u8],
    },
    /// `task_rename` (prctl `PR_SET_NAME`, writes to `/proc/.../comm`).
    Rename {
        /// The thread.
        tid: Tid,
        /// Its new name.
        comm: &'a [u8],
    },
    /// `sched_process_exit`: the thread exits (it is not freed yet).
    Exit {
        /// The thread.
        tid: Tid,
    },
    /// `sched_process_free`: the thread's last trace is gone; its tid may be reused.
    Free {
        /// The thread.
        tid: Tid,
    },
    /// `sched_pi_setprio`: priority inheritance changed a priority.
    SetPrio {
        /// The thread.
        tid: Tid,
        /// Its new priority.
        prio: i32,
    },
    /// `lttng_statedump_process_state`: a thread that existed when tracing began.
    StatedumpThread {
        /// Thread id.
        tid: Tid,
        /// Process id.
        pid: Tid,
        /// Parent process id.
        ppid: Option<Tid>,
        /// Name.
        name: &'a [u8],
        /// LTTng status (5 = waiting, 2 = waiting for a CPU, 6 = running, ...).
        status: Option<i64>,
    },
    /// `lttng_statedump_file_descriptor`: an fd open when tracing began.
    StatedumpFd {
        /// The process.
        pid: Tid,
        /// The descriptor.
        fd: i64,
        /// Its path.
        filename: &'a [u8],
    },
    /// `lttng_statedump_block_device`: a disk's name.
    StatedumpDisk {
        /// Device number.
        dev: u64,
        /// Disk name (`sda`).
        name: &'a [u8],
    },
    /// A syscall entry.
    SyscallEntry {
        /// Which syscall.
        id: SyscallId,
        /// The I/O facts, for I/O syscalls.
        io: Option<IoEntry<'a>>,
    },
    /// A syscall exit.
    SyscallExit {
        /// The return value, when the event has one.
        ret: Option<i64>,
    },
    /// `irq_handler_entry`.
    IrqEntry {
        /// IRQ number.
        irq: i64,
        /// Handler name.
        name: &'a [u8],
    },
    /// `irq_handler_exit`.
    IrqExit {
        /// IRQ number.
        irq: i64,
    },
    /// `softirq_*` or `irq_softirq_*`.
    Softirq {
        /// Which phase.
        phase: SoftirqPhase,
        /// Softirq vector (0 = HI ... 9 = RCU).
        vec: u32,
    },
    /// `kmem_mm_page_alloc` / `mm_page_alloc`: `1 << order` pages allocated.
    PageAlloc {
        /// Allocation order.
        order: u32,
    },
    /// `kmem_mm_page_free` / `mm_page_free`: `1 << order` pages freed.
    PageFree {
        /// Allocation order.
        order: u32,
    },
    /// A page fault (`x86_exceptions_page_fault_user`/`_kernel`).
    PageFault {
        /// Whether it happened in user mode.
        user: bool,
    },
    /// `block_rq_issue`: a request goes to the device.
    BlockIssue {
        /// Device number.
        dev: u64,
        /// First sector.
        sector: u64,
        /// Sectors (512 bytes).
        nr_sector: u64,
        /// Whether it writes (LTTng `rwbs` bit 0).
        write: bool,
        /// The issuing thread, when the event says.
        tid: Option<Tid>,
    },
    /// `block_rq_complete`: the device finished a request.
    BlockComplete {
        /// Device number.
        dev: u64,
        /// First sector.
        sector: u64,
        /// Sectors.
        nr_sector: u64,
    },
    /// Anything the analyses do not use.
    Other,
}
