//! What the state system tells the analyses: transitions and completed
//! intervals, each a small value, so that every analysis is an accumulator.

use crate::event::{IoOp, SyscallId};
use crate::state::{Idents, Serial};

/// A thread ran on a CPU from `from` to `to` (ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSlice {
    /// The CPU.
    pub cpu: u32,
    /// The thread.
    pub thread: Serial,
    /// Start, ns. When a `sched_switch` revealed a thread that was already
    /// running on a CPU whose state was unknown, this is the earliest time it
    /// can have started there: the later of the moment the CPU's state became
    /// unknown (the host's first event, at first) and its last switch-out.
    pub from: i64,
    /// End, ns.
    pub to: i64,
    /// Its priority while it ran (LTTng's: kernel prio - 100), if known.
    pub prio: Option<i32>,
}

/// A syscall returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallDone {
    /// CPU of the exit.
    pub cpu: u32,
    /// The thread.
    pub thread: Serial,
    /// Which syscall.
    pub id: SyscallId,
    /// Entry time, ns.
    pub entry: i64,
    /// Exit time, ns.
    pub exit: i64,
    /// Return value, if the exit event has one.
    pub ret: Option<i64>,
    /// For I/O syscalls: what it did and on which fd.
    pub io: Option<(IoOp, Option<i64>)>,
}

/// A hard IRQ handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqDone {
    /// The CPU.
    pub cpu: u32,
    /// IRQ number.
    pub irq: i64,
    /// Handler entry, ns.
    pub entry: i64,
    /// Handler exit, ns.
    pub exit: i64,
}

/// A softirq handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftirqDone {
    /// The CPU.
    pub cpu: u32,
    /// Vector (0 = HI ... 9 = RCU).
    pub vec: u32,
    /// When it was raised, if the raise was seen.
    pub raise: Option<i64>,
    /// Handler entry, ns.
    pub entry: i64,
    /// Handler exit, ns.
    pub exit: i64,
}

/// A woken thread got a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WakeupDone {
    /// The CPU it was switched in on.
    pub cpu: u32,
    /// The woken thread.
    pub thread: Serial,
    /// The thread that was running on the waking CPU, if any.
    pub waker: Option<Serial>,
    /// Its first wakeup (`sched_waking`/`sched_wakeup`) since it last ran, ns.
    pub wakeup: i64,
    /// When it was switched in, ns.
    pub switched_in: i64,
    /// Its priority when switched in.
    pub prio: Option<i32>,
}

/// A block request completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockDone {
    /// Device number.
    pub dev: u64,
    /// Sectors (512 bytes).
    pub nr_sector: u64,
    /// Whether it wrote.
    pub write: bool,
    /// The issuing thread, if known.
    pub thread: Option<Serial>,
    /// Issue time, ns.
    pub issue: i64,
    /// Completion time, ns.
    pub complete: i64,
}

/// Receives the state system's notifications. Every method has an empty
/// default, so an analysis implements only what it needs.
#[allow(unused_variables)]
pub trait Observer {
    /// A thread ran on a CPU.
    fn run(&mut self, ids: &Idents, s: &RunSlice) {}
    /// A thread was migrated (`sched_migrate_task`, emitted on `cpu`).
    fn migrate(&mut self, ids: &Idents, ts: i64, cpu: u32, thread: Serial) {}
    /// A thread entered a syscall (for analyses that keep its arguments).
    fn syscall_entry(&mut self, ids: &Idents, ts: i64, thread: Serial, path: Option<&[u8]>) {}
    /// A syscall returned.
    fn syscall(&mut self, ids: &Idents, d: &SyscallDone) {}
    /// A hard IRQ handler ran.
    fn irq(&mut self, d: &IrqDone) {}
    /// A softirq handler ran.
    fn softirq(&mut self, d: &SoftirqDone) {}
    /// A woken thread got a CPU.
    fn wakeup(&mut self, ids: &Idents, d: &WakeupDone) {}
    /// Pages were allocated (`alloc`) or freed in a thread's context.
    fn pages(&mut self, ids: &Idents, cpu: u32, thread: Serial, alloc: bool, pages: u64) {}
    /// A page fault in a thread.
    fn fault(&mut self, ids: &Idents, cpu: u32, thread: Serial, user: bool) {}
    /// A block request completed.
    fn block(&mut self, ids: &Idents, d: &BlockDone) {}
    /// The statedump named an fd open before tracing began.
    fn statedump_fd(&mut self, pid: i32, fd: i64, path: &[u8]) {}
    /// A thread is gone (`sched_process_free`, or its tid was reused): its
    /// identity is still in `ids` now, and its serial may be reused after.
    fn thread_freed(&mut self, ids: &Idents, thread: Serial) {}
}

/// An observer that ignores everything: the state before the analysed period.
#[derive(Debug, Default, Clone, Copy)]
pub struct Nobody;

impl Observer for Nobody {}
