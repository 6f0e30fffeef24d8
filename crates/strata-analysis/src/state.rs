//! The kernel state system: per CPU the current thread and mode, per thread
//! its identity, state and current syscall. Fed one event at a time, it
//! reports transitions to an [`Observer`].
//!
//! Memory is bounded by the live threads and the CPUs: a thread's state is
//! dropped at `sched_process_free`. What outlives it is its [`Identity`]
//! (about 50 bytes), which reports need to name it.

use crate::event::{Comm, IoEntry, IoOp, KernelEvent, SoftirqPhase, SyscallId, Tid};
use crate::hash::{int_map, IntMap};
use crate::observer::{
    BlockDone, IrqDone, Observer, RunSlice, SoftirqDone, SyscallDone, WakeupDone,
};

/// Number of a live thread instance: a tid reused by a new thread gets a new
/// serial. Index into [`Idents`]. Serials of freed threads are reused once
/// observers were told ([`Observer::thread_freed`]), which bounds every
/// per-thread table by the threads alive at once.
pub type Serial = u32;

/// CPUs numbered at or above this are ignored (and counted), which bounds
/// the per-CPU tables against corrupt `cpu_id` values.
pub const MAX_CPUS: u32 = 4096;

/// Softirq vectors tracked per CPU (Linux has 10).
const SOFTIRQ_VECS: usize = 16;

/// Outstanding block requests kept before the oldest are forgotten.
const MAX_PENDING_BLOCK: usize = 1 << 16;

/// Names kept per IRQ line (shared lines have several handlers).
const MAX_IRQ_NAMES: usize = 8;

/// Who a thread is: what reports print.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// Thread id.
    pub tid: Tid,
    /// Process id (thread group), when known.
    pub pid: Option<Tid>,
    /// Parent process id, when known.
    pub ppid: Option<Tid>,
    /// Its latest name: follows `exec`, renames and what scheduling events show.
    pub comm: Comm,
    /// Whether the thread still exists at the end of what was read.
    pub alive: bool,
}

/// The identities of the threads, by [`Serial`], and the live ones by tid.
#[derive(Debug, Default, Clone)]
pub struct Idents {
    list: Vec<Identity>,
    by_tid: IntMap<Tid, Serial>,
}

impl Idents {
    /// The identity of `s`.
    #[inline]
    pub fn get(&self, s: Serial) -> Option<&Identity> {
        self.list.get(s as usize)
    }
    /// The thread's tid, or -1 for an unknown serial.
    #[inline]
    pub fn tid(&self, s: Serial) -> Tid {
        self.get(s).map_or(-1, |i| i.tid)
    }
    /// The name of the thread's process: its live main thread's name, else
    /// its own.
    pub fn process_comm(&self, s: Serial) -> Option<&Comm> {
        let id = self.get(s)?;
        let leader = id
            .pid
            .filter(|&p| p != id.tid)
            .and_then(|p| self.by_tid.get(&p))
            .and_then(|&l| self.get(l));
        match leader {
            Some(l) if !l.comm.is_empty() => Some(&l.comm),
            _ => Some(&id.comm),
        }
    }
    /// The serial of live thread `tid`.
    pub fn serial_of(&self, tid: Tid) -> Option<Serial> {
        self.by_tid.get(&tid).copied()
    }
    /// Number of serials in use or freed (every live serial is below it).
    pub fn len(&self) -> usize {
        self.list.len()
    }
    /// Whether no thread was seen.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
    /// All identities with their serials (freed ones included until reused).
    pub fn iter(&self) -> impl Iterator<Item = (Serial, &Identity)> {
        self.list.iter().enumerate().map(|(i, x)| (i as Serial, x))
    }
}

/// What a thread is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadState {
    /// Nothing seen yet.
    Unknown,
    /// On a CPU.
    Running,
    /// Runnable, waiting for a CPU (preempted or woken).
    Ready,
    /// Sleeping (interruptible).
    Blocked,
    /// Sleeping uninterruptibly, usually for I/O.
    BlockedIo,
    /// Exited.
    Exited,
}

/// What a CPU is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuMode {
    /// No `sched_switch` seen on it yet.
    Unknown,
    /// Running the idle task.
    Idle,
    /// Running a thread in user space.
    User,
    /// Running a thread in a syscall.
    Syscall,
    /// In a hard IRQ handler.
    Irq,
    /// In a softirq handler.
    Softirq,
}

/// An issued block request: issue time, issuer, sectors, write.
type PendingBlock = (i64, Option<Serial>, u64, bool);

#[derive(Debug, Clone, Copy)]
struct PendingSyscall {
    id: SyscallId,
    entry: i64,
    io: Option<(IoOp, Option<i64>)>,
}

#[derive(Debug, Clone)]
struct Thread {
    serial: Serial,
    prio: Option<i32>,
    state: ThreadState,
    since: i64,
    on_cpu: Option<u32>,
    syscall: Option<PendingSyscall>,
    /// First wakeup since it last ran, and the thread running on the waking CPU.
    wakeup: Option<(i64, Option<Serial>)>,
    /// Its last switch-out, `i64::MIN` if none seen.
    last_off: i64,
    freed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    Unknown,
    Idle,
    Thread(u32),
}

#[derive(Debug, Clone, Copy, Default)]
struct SoftirqSlot {
    raise: Option<i64>,
    entry: Option<i64>,
    /// Raised again while running.
    reraise: Option<i64>,
}

#[derive(Debug, Clone)]
struct Cpu {
    current: Current,
    /// When `current` started running; for `Unknown`, since when it is unknown.
    since: i64,
    hardirq: Option<(i64, i64)>,
    softirqs: [SoftirqSlot; SOFTIRQ_VECS],
    in_softirq: u32,
}

impl Cpu {
    fn new(since: i64) -> Cpu {
        Cpu {
            current: Current::Unknown,
            since,
            hardirq: None,
            softirqs: [SoftirqSlot::default(); SOFTIRQ_VECS],
            in_softirq: 0,
        }
    }
}

/// Things the state system could not make sense of, for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Anomalies {
    /// Syscall entries on a CPU whose current thread was not known yet.
    pub syscalls_unattributed: u64,
    /// Syscall exits with no entry (entered before the trace, or the child's
    /// return from `clone`).
    pub syscall_exits_unpaired: u64,
    /// `sched_switch` whose `prev` was not the thread the state had on that CPU.
    pub switch_mismatches: u64,
    /// Events on CPUs numbered `MAX_CPUS` or more.
    pub bad_cpu: u64,
    /// IRQ exits with no matching entry on their CPU.
    pub irq_exits_unpaired: u64,
    /// Events whose `tid` context contradicted the thread the state had on
    /// their CPU (a switch was not traced): the state follows the context.
    pub context_corrections: u64,
}

/// The kernel state of one host.
#[derive(Debug, Clone)]
pub struct Machine {
    cpus: Vec<Option<Cpu>>,
    threads: Vec<Thread>,
    free_slots: Vec<u32>,
    /// Retired this event: observers hear of them before the slots are reused.
    dying: Vec<u32>,
    idents: Idents,
    threads_seen: u64,
    start: Option<i64>,
    last: i64,
    irq_names: IntMap<i64, Vec<Box<str>>>,
    disks: IntMap<u64, Box<str>>,
    block: IntMap<(u64, u64), PendingBlock>,
    anomalies: Anomalies,
    /// Tasks announced by `task_newtask` whose fork event has not come yet,
    /// with whether each is a thread of its parent's process.
    clones: Vec<(Tid, bool)>,
}

/// `CLONE_THREAD`: the new task joins its parent's thread group.
const CLONE_THREAD: u64 = 0x0001_0000;

/// The most `task_newtask` announcements kept waiting for their fork event,
/// which follows on the same CPU at once: a bound, not a working set.
const MAX_PENDING_CLONES: usize = 64;

impl Default for Machine {
    fn default() -> Self {
        Machine::new()
    }
}

impl Machine {
    /// A machine that knows nothing yet.
    pub fn new() -> Machine {
        Machine {
            cpus: Vec::new(),
            threads: Vec::new(),
            free_slots: Vec::new(),
            dying: Vec::new(),
            idents: Idents::default(),
            threads_seen: 0,
            start: None,
            last: i64::MIN,
            irq_names: int_map(),
            disks: int_map(),
            block: int_map(),
            anomalies: Anomalies::default(),
            clones: Vec::new(),
        }
    }

    /// Every thread instance seen.
    pub fn idents(&self) -> &Idents {
        &self.idents
    }

    /// Time of the first event fed, ns.
    pub fn start(&self) -> Option<i64> {
        self.start
    }

    /// The CPUs that had events, in order.
    pub fn cpus(&self) -> impl Iterator<Item = u32> + '_ {
        self.cpus
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(i, _)| i as u32)
    }

    /// Number of CPUs that had events.
    pub fn cpu_count(&self) -> usize {
        self.cpus.iter().filter(|c| c.is_some()).count()
    }

    /// What `cpu` is doing now.
    pub fn cpu_mode(&self, cpu: u32) -> CpuMode {
        let Some(Some(c)) = self.cpus.get(cpu as usize) else {
            return CpuMode::Unknown;
        };
        if c.hardirq.is_some() {
            return CpuMode::Irq;
        }
        if c.in_softirq > 0 {
            return CpuMode::Softirq;
        }
        match c.current {
            Current::Unknown => CpuMode::Unknown,
            Current::Idle => CpuMode::Idle,
            Current::Thread(s) => match self.threads.get(s as usize) {
                Some(t) if t.syscall.is_some() => CpuMode::Syscall,
                _ => CpuMode::User,
            },
        }
    }

    /// The thread running on `cpu`, if known and not idle.
    pub fn current(&self, cpu: u32) -> Option<Serial> {
        match self.cpus.get(cpu as usize)?.as_ref()?.current {
            Current::Thread(s) => self.threads.get(s as usize).map(|t| t.serial),
            _ => None,
        }
    }

    /// The live thread with id `tid`: its serial, state and the time it entered it.
    pub fn thread(&self, tid: Tid) -> Option<(Serial, ThreadState, i64)> {
        let t = self.threads.get(*self.idents.by_tid.get(&tid)? as usize)?;
        Some((t.serial, t.state, t.since))
    }

    /// Number of live threads the state holds.
    pub fn live_threads(&self) -> usize {
        self.idents.by_tid.len()
    }

    /// Number of thread instances seen (a reused tid counts again).
    pub fn threads_seen(&self) -> u64 {
        self.threads_seen
    }

    /// The names seen for IRQ `irq`, in order.
    pub fn irq_names(&self, irq: i64) -> &[Box<str>] {
        self.irq_names.get(&irq).map_or(&[], |v| v)
    }

    /// The name of disk `dev`: from the statedump, else `major,minor`.
    pub fn disk_name(&self, dev: u64) -> String {
        match self.disks.get(&dev) {
            Some(n) => n.to_string(),
            None => format!("({},{})", dev >> 20, dev & ((1 << 20) - 1)),
        }
    }

    /// What could not be made sense of.
    pub fn anomalies(&self) -> Anomalies {
        self.anomalies
    }

    fn cpu(&mut self, cpu: u32) -> Option<&mut Cpu> {
        if cpu >= MAX_CPUS {
            self.anomalies.bad_cpu += 1;
            return None;
        }
        let i = cpu as usize;
        if self.cpus.len() <= i {
            self.cpus.resize(i + 1, None);
        }
        let start = self.start.unwrap_or(0);
        Some(self.cpus[i].get_or_insert_with(|| Cpu::new(start)))
    }

    fn new_thread(&mut self, tid: Tid, ts: i64) -> u32 {
        self.threads_seen += 1;
        let slot = self.free_slots.pop().unwrap_or(self.threads.len() as u32);
        let id = Identity {
            tid,
            pid: None,
            ppid: None,
            comm: Comm::default(),
            alive: true,
        };
        let t = Thread {
            serial: slot,
            prio: None,
            state: ThreadState::Unknown,
            since: ts,
            on_cpu: None,
            syscall: None,
            wakeup: None,
            last_off: i64::MIN,
            freed: false,
        };
        if slot as usize == self.threads.len() {
            self.threads.push(t);
            self.idents.list.push(id);
        } else {
            self.threads[slot as usize] = t;
            self.idents.list[slot as usize] = id;
        }
        if let Some(old) = self.idents.by_tid.insert(tid, slot) {
            self.retire(old, ts);
        }
        slot
    }

    /// Drops the state of a thread slot (its identity stays).
    fn retire(&mut self, slot: u32, ts: i64) {
        let Some(t) = self.threads.get(slot as usize) else {
            return;
        };
        if let Some(id) = self.idents.list.get_mut(t.serial as usize) {
            id.alive = false;
        }
        if let Some(cpu) = t.on_cpu {
            if let Some(Some(c)) = self.cpus.get_mut(cpu as usize) {
                if c.current == Current::Thread(slot) {
                    c.current = Current::Unknown;
                    c.since = ts;
                }
            }
        }
        self.dying.push(slot);
    }

    /// Tells observers about the threads retired by the previous event, then
    /// lets their slots be reused.
    fn reap<O: Observer>(&mut self, obs: &mut O) {
        for s in std::mem::take(&mut self.dying) {
            obs.thread_freed(&self.idents, s);
            self.free_slots.push(s);
        }
    }

    /// The slot of live thread `tid`, created if unknown.
    #[inline]
    fn slot(&mut self, tid: Tid, ts: i64) -> u32 {
        match self.idents.by_tid.get(&tid) {
            Some(&s) => s,
            None => self.new_thread(tid, ts),
        }
    }

    fn set_comm(&mut self, slot: u32, comm: &[u8]) {
        if comm.is_empty() {
            return;
        }
        let serial = self.threads[slot as usize].serial;
        if let Some(id) = self.idents.list.get_mut(serial as usize) {
            if id.comm.as_bytes() != comm.split(|&c| c == 0).next().unwrap_or(&[]) {
                id.comm = Comm::new(comm);
            }
        }
    }

    fn set_pid(&mut self, slot: u32, pid: Tid, ppid: Option<Tid>) {
        if let Some(id) = self.idents.list.get_mut(slot as usize) {
            id.pid = Some(pid);
            if ppid.is_some() {
                id.ppid = ppid;
            }
        }
    }

    fn set_state(&mut self, slot: u32, state: ThreadState, ts: i64) {
        let t = &mut self.threads[slot as usize];
        if t.state != state {
            t.state = state;
            t.since = ts;
        }
    }

    /// Feeds one event: `ts` in ns, emitted on `cpu`.
    #[inline]
    pub fn handle<O: Observer>(&mut self, ts: i64, cpu: u32, ev: &KernelEvent<'_>, obs: &mut O) {
        if self.start.is_none() {
            self.start = Some(ts);
        }
        self.last = ts;
        if !self.dying.is_empty() {
            self.reap(obs);
        }
        match *ev {
            KernelEvent::SyscallEntry { id, io } => self.syscall_entry(ts, cpu, id, io, obs),
            KernelEvent::SyscallExit { ret } => self.syscall_exit(ts, cpu, ret, obs),
            KernelEvent::Switch {
                prev_tid,
                prev_comm,
                prev_prio,
                prev_state,
                next_tid,
                next_comm,
                next_prio,
            } => self.switch(
                ts, cpu, prev_tid, prev_comm, prev_prio, prev_state, next_tid, next_comm,
                next_prio, obs,
            ),
            KernelEvent::Wakeup {
                tid,
                prio,
                target_cpu,
                ..
            } => self.wakeup(ts, cpu, tid, prio, target_cpu),
            KernelEvent::Migrate {
                tid, comm, prio, ..
            } => {
                if self.cpu(cpu).is_none() {
                    return;
                }
                let s = self.slot(tid, ts);
                self.set_comm(s, comm);
                if prio.is_some() {
                    self.threads[s as usize].prio = prio;
                }
                obs.migrate(&self.idents, ts, cpu, self.threads[s as usize].serial);
            }
            KernelEvent::Fork {
                parent_tid,
                parent_pid,
                parent_comm,
                child_tid,
                child_pid,
                child_comm,
            } => self.fork(
                ts,
                parent_tid,
                parent_pid,
                parent_comm,
                child_tid,
                child_pid,
                child_comm,
            ),
            KernelEvent::NewTask { tid, clone_flags } => {
                if self.clones.len() == MAX_PENDING_CLONES {
                    self.clones.remove(0);
                }
                self.clones.push((tid, clone_flags & CLONE_THREAD != 0));
            }
            KernelEvent::Exec { tid, filename } => {
                let s = self.slot(tid, ts);
                let c = Comm::from_exec_path(filename);
                self.set_comm(s, c.as_bytes());
            }
            KernelEvent::Rename { tid, comm } => {
                let s = self.slot(tid, ts);
                self.set_comm(s, comm);
            }
            KernelEvent::Exit { tid } => {
                let s = self.slot(tid, ts);
                self.threads[s as usize].syscall = None;
                self.set_state(s, ThreadState::Exited, ts);
            }
            KernelEvent::Free { tid } => {
                if let Some(&s) = self.idents.by_tid.get(&tid) {
                    if self.threads[s as usize].on_cpu.is_some() {
                        self.threads[s as usize].freed = true;
                    } else {
                        self.idents.by_tid.remove(&tid);
                        self.retire(s, ts);
                    }
                }
            }
            KernelEvent::SetPrio { tid, prio } => {
                let s = self.slot(tid, ts);
                self.threads[s as usize].prio = Some(prio);
            }
            KernelEvent::StatedumpThread {
                tid,
                pid,
                ppid,
                name,
                status,
            } => self.statedump_thread(ts, tid, pid, ppid, name, status),
            KernelEvent::StatedumpFd { pid, fd, filename } => {
                obs.statedump_fd(pid, fd, filename);
            }
            KernelEvent::StatedumpDisk { dev, name } => {
                let n = String::from_utf8_lossy(name);
                self.disks.insert(dev, n.into());
            }
            KernelEvent::IrqEntry { irq, name } => {
                let Some(c) = self.cpu(cpu) else { return };
                c.hardirq = Some((irq, ts));
                let names = self.irq_names.entry(irq).or_default();
                if !name.is_empty()
                    && names.len() < MAX_IRQ_NAMES
                    && !names.iter().any(|n| n.as_bytes() == name)
                {
                    names.push(String::from_utf8_lossy(name).into());
                }
            }
            KernelEvent::IrqExit { irq } => {
                let Some(c) = self.cpu(cpu) else { return };
                match c.hardirq.take() {
                    Some((i, entry)) if i == irq => obs.irq(&IrqDone {
                        cpu,
                        irq,
                        entry,
                        exit: ts,
                    }),
                    _ => self.anomalies.irq_exits_unpaired += 1,
                }
            }
            KernelEvent::Softirq { phase, vec } => {
                let Some(c) = self.cpu(cpu) else { return };
                let Some(slot) = c.softirqs.get_mut(vec as usize) else {
                    return;
                };
                match phase {
                    SoftirqPhase::Raise => {
                        if slot.entry.is_some() {
                            slot.reraise.get_or_insert(ts);
                        } else {
                            slot.raise.get_or_insert(ts);
                        }
                    }
                    SoftirqPhase::Entry => {
                        if slot.entry.is_none() {
                            c.in_softirq += 1;
                        }
                        slot.entry = Some(ts);
                    }
                    SoftirqPhase::Exit => {
                        if let Some(entry) = slot.entry.take() {
                            let raise = slot.raise.take();
                            slot.raise = slot.reraise.take();
                            c.in_softirq = c.in_softirq.saturating_sub(1);
                            obs.softirq(&SoftirqDone {
                                cpu,
                                vec,
                                raise,
                                entry,
                                exit: ts,
                            });
                        }
                    }
                }
            }
            KernelEvent::PageAlloc { order } | KernelEvent::PageFree { order } => {
                if let Some(s) = self.current_serial(cpu) {
                    let alloc = matches!(ev, KernelEvent::PageAlloc { .. });
                    obs.pages(&self.idents, cpu, s, alloc, 1u64 << order.min(30));
                }
            }
            KernelEvent::PageFault { user } => {
                if let Some(s) = self.current_serial(cpu) {
                    obs.fault(&self.idents, cpu, s, user);
                }
            }
            KernelEvent::BlockIssue {
                dev,
                sector,
                nr_sector,
                write,
                tid,
            } => {
                if nr_sector == 0 {
                    return;
                }
                // The kernel counts sectors in 32 bits.
                let nr_sector = nr_sector.min(u32::MAX as u64);
                let who = match tid {
                    Some(t) => self.idents.by_tid.get(&t).copied(),
                    None => self.current_serial(cpu),
                };
                if self.block.len() >= MAX_PENDING_BLOCK {
                    self.block.clear();
                }
                self.block
                    .insert((dev, sector), (ts, who, nr_sector, write));
            }
            KernelEvent::BlockComplete {
                dev,
                sector,
                nr_sector,
            } => {
                if let Some((issue, thread, nr, write)) = self.block.remove(&(dev, sector)) {
                    if nr == nr_sector.min(u32::MAX as u64) || nr_sector == 0 {
                        obs.block(
                            &self.idents,
                            &BlockDone {
                                dev,
                                nr_sector: nr,
                                write,
                                thread,
                                issue,
                                complete: ts,
                            },
                        );
                    }
                }
            }
            // Unused events say nothing about the CPU: a statedump stream's
            // events carry no real CPU number.
            KernelEvent::Other => {}
        }
    }

    /// Takes an event's `tid` context into account before the event itself:
    /// the thread `tid` (0: idle) was running on `cpu` at `ts`. A CPU whose
    /// thread was unknown now knows it; one whose thread differs missed a
    /// switch, which is applied at `ts`.
    #[inline]
    pub fn running<O: Observer>(&mut self, ts: i64, cpu: u32, tid: Tid, obs: &mut O) {
        if self.start.is_none() {
            self.start = Some(ts);
        }
        let Some(c) = self.cpu(cpu) else { return };
        let (current, since) = (c.current, c.since);
        match current {
            Current::Thread(s) if self.idents.tid(s) == tid => return,
            Current::Idle if tid == 0 => return,
            Current::Unknown => {
                let (next, from) = if tid == 0 {
                    (Current::Idle, ts)
                } else {
                    let n = self.slot(tid, ts);
                    let t = &mut self.threads[n as usize];
                    if t.on_cpu.is_some() {
                        return;
                    }
                    t.on_cpu = Some(cpu);
                    let from = since.max(t.last_off);
                    self.set_state(n, ThreadState::Running, ts);
                    (Current::Thread(n), from)
                };
                if let Some(Some(c)) = self.cpus.get_mut(cpu as usize) {
                    c.current = next;
                    c.since = from;
                }
                return;
            }
            Current::Thread(s) => {
                let t = &self.threads[s as usize];
                obs.run(
                    &self.idents,
                    &RunSlice {
                        cpu,
                        thread: t.serial,
                        from: since,
                        to: ts,
                        prio: t.prio,
                    },
                );
                self.switched_out(s, ts, 0);
            }
            Current::Idle => {}
        }
        self.anomalies.context_corrections += 1;
        let next = if tid == 0 {
            Current::Idle
        } else {
            let n = self.slot(tid, ts);
            let t = &mut self.threads[n as usize];
            if let Some(other) = t.on_cpu.filter(|&o| o != cpu) {
                if let Some(Some(oc)) = self.cpus.get_mut(other as usize) {
                    if oc.current == Current::Thread(n) {
                        oc.current = Current::Unknown;
                        oc.since = ts;
                    }
                }
            }
            self.threads[n as usize].on_cpu = Some(cpu);
            self.set_state(n, ThreadState::Running, ts);
            Current::Thread(n)
        };
        if let Some(Some(c)) = self.cpus.get_mut(cpu as usize) {
            c.current = next;
            c.since = ts;
        }
    }

    #[inline]
    fn current_serial(&mut self, cpu: u32) -> Option<Serial> {
        match self.cpu(cpu)?.current {
            Current::Thread(s) => Some(self.threads[s as usize].serial),
            _ => None,
        }
    }

    #[inline]
    fn syscall_entry<O: Observer>(
        &mut self,
        ts: i64,
        cpu: u32,
        id: SyscallId,
        io: Option<IoEntry<'_>>,
        obs: &mut O,
    ) {
        let Some(c) = self.cpu(cpu) else { return };
        let Current::Thread(s) = c.current else {
            self.anomalies.syscalls_unattributed += 1;
            return;
        };
        let t = &mut self.threads[s as usize];
        t.syscall = Some(PendingSyscall {
            id,
            entry: ts,
            io: io.map(|x| (x.op, x.fd)),
        });
        if let Some(IoEntry {
            path: Some(path), ..
        }) = io
        {
            obs.syscall_entry(&self.idents, ts, t.serial, Some(path));
        }
    }

    #[inline]
    fn syscall_exit<O: Observer>(&mut self, ts: i64, cpu: u32, ret: Option<i64>, obs: &mut O) {
        let Some(c) = self.cpu(cpu) else { return };
        let Current::Thread(s) = c.current else {
            return;
        };
        let t = &mut self.threads[s as usize];
        match t.syscall.take() {
            Some(p) => obs.syscall(
                &self.idents,
                &SyscallDone {
                    cpu,
                    thread: t.serial,
                    id: p.id,
                    entry: p.entry,
                    exit: ts,
                    ret,
                    io: p.io,
                },
            ),
            None => self.anomalies.syscall_exits_unpaired += 1,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn switch<O: Observer>(
        &mut self,
        ts: i64,
        cpu: u32,
        prev_tid: Tid,
        prev_comm: &[u8],
        prev_prio: Option<i32>,
        prev_state: i64,
        next_tid: Tid,
        next_comm: &[u8],
        next_prio: Option<i32>,
        obs: &mut O,
    ) {
        let Some(c) = self.cpu(cpu) else { return };
        let (current, since) = (c.current, c.since);
        // Close what ran until now.
        let prev_slot = if prev_tid != 0 {
            Some(self.slot(prev_tid, ts))
        } else {
            None
        };
        match current {
            Current::Thread(s) => {
                let t = &self.threads[s as usize];
                obs.run(
                    &self.idents,
                    &RunSlice {
                        cpu,
                        thread: t.serial,
                        from: since,
                        to: ts,
                        prio: t.prio,
                    },
                );
                if Some(s) != prev_slot {
                    self.anomalies.switch_mismatches += 1;
                    self.switched_out(s, ts, 0);
                }
            }
            Current::Idle => {
                if prev_tid != 0 {
                    self.anomalies.switch_mismatches += 1;
                }
            }
            Current::Unknown => {
                // The first switch on this CPU shows what ran before it: the
                // thread ran since the CPU's state became unknown (the host's
                // first event, at first), unless it was seen switched out
                // elsewhere later than that.
                if let Some(p) = prev_slot {
                    let t = &self.threads[p as usize];
                    if t.on_cpu.is_none() {
                        obs.run(
                            &self.idents,
                            &RunSlice {
                                cpu,
                                thread: t.serial,
                                from: since.max(t.last_off),
                                to: ts,
                                prio: prev_prio.or(t.prio),
                            },
                        );
                    }
                }
            }
        }
        if let Some(p) = prev_slot {
            self.set_comm(p, prev_comm);
            if prev_prio.is_some() {
                self.threads[p as usize].prio = prev_prio;
            }
            if self.threads[p as usize].on_cpu.is_none_or(|c| c == cpu) {
                self.switched_out(p, ts, prev_state);
            }
        }
        let next = if next_tid == 0 {
            Current::Idle
        } else {
            let n = self.slot(next_tid, ts);
            self.set_comm(n, next_comm);
            let t = &mut self.threads[n as usize];
            if next_prio.is_some() {
                t.prio = next_prio;
            }
            if let Some(other) = t.on_cpu.filter(|&o| o != cpu) {
                // Shown running on two CPUs: events were lost on the other.
                if let Some(Some(oc)) = self.cpus.get_mut(other as usize) {
                    if oc.current == Current::Thread(n) {
                        oc.current = Current::Unknown;
                        oc.since = ts;
                    }
                }
            }
            let t = &mut self.threads[n as usize];
            t.on_cpu = Some(cpu);
            if let Some((wakeup, waker)) = t.wakeup.take() {
                let d = WakeupDone {
                    cpu,
                    thread: t.serial,
                    waker,
                    wakeup,
                    switched_in: ts,
                    prio: t.prio,
                };
                obs.wakeup(&self.idents, &d);
            }
            self.set_state(n, ThreadState::Running, ts);
            Current::Thread(n)
        };
        if let Some(Some(c)) = self.cpus.get_mut(cpu as usize) {
            c.current = next;
            c.since = ts;
        }
    }

    fn switched_out(&mut self, slot: u32, ts: i64, prev_state: i64) {
        let t = &mut self.threads[slot as usize];
        t.on_cpu = None;
        t.last_off = ts;
        // Task state bits: 0 (or only TASK_REPORT_MAX, "R+") means preempted.
        let state = match prev_state & 0x7f {
            0 => ThreadState::Ready,
            s if s & 0x30 != 0 || s & 0x40 != 0 => ThreadState::Exited,
            s if s & 2 != 0 => ThreadState::BlockedIo,
            _ => ThreadState::Blocked,
        };
        let freed = t.freed;
        self.set_state(slot, state, ts);
        if freed {
            let tid = self.idents.tid(self.threads[slot as usize].serial);
            if self.idents.by_tid.get(&tid) == Some(&slot) {
                self.idents.by_tid.remove(&tid);
            }
            self.retire(slot, ts);
        }
    }

    fn wakeup(&mut self, ts: i64, cpu: u32, tid: Tid, prio: Option<i32>, target: Option<u32>) {
        if let Some(t) = target {
            self.cpu(t);
        }
        let waker = self.current_serial(cpu);
        let s = self.slot(tid, ts);
        let t = &mut self.threads[s as usize];
        if prio.is_some() {
            t.prio = prio;
        }
        if t.on_cpu.is_some() {
            return;
        }
        if t.wakeup.is_none() {
            t.wakeup = Some((ts, waker));
        }
        self.set_state(s, ThreadState::Ready, ts);
    }

    #[allow(clippy::too_many_arguments)]
    fn fork(
        &mut self,
        ts: i64,
        parent_tid: Tid,
        parent_pid: Option<Tid>,
        parent_comm: &[u8],
        child_tid: Tid,
        child_pid: Option<Tid>,
        child_comm: &[u8],
    ) {
        let p = self.slot(parent_tid, ts);
        self.set_comm(p, parent_comm);
        if let Some(pid) = parent_pid {
            self.set_pid(p, pid, None);
        }
        let pserial = self.threads[p as usize].serial;
        let (ppid_of_parent, pprio) = (
            self.idents.get(pserial).and_then(|i| i.ppid),
            self.threads[p as usize].prio,
        );
        // A new thread: whatever had this tid before is gone.
        let c = self.new_thread(child_tid, ts);
        self.set_comm(c, child_comm);
        self.threads[c as usize].prio = pprio;
        // Without process ids in the event (ftrace), `task_newtask`'s clone
        // flags tell a new thread of the parent's process from a new process.
        let clone = self.clones.iter().rposition(|&(t, _)| t == child_tid);
        let is_thread = clone.map(|i| self.clones.remove(i).1);
        let parent_pid = parent_pid.or_else(|| self.idents.get(pserial).and_then(|i| i.pid));
        let child_pid = child_pid.or(match is_thread {
            Some(true) => parent_pid,
            Some(false) => Some(child_tid),
            None => None,
        });
        if let Some(cpid) = child_pid {
            let ppid = if Some(cpid) == parent_pid {
                ppid_of_parent
            } else {
                parent_pid
            };
            self.set_pid(c, cpid, ppid);
        }
        self.set_state(c, ThreadState::Ready, ts);
    }

    fn statedump_thread(
        &mut self,
        ts: i64,
        tid: Tid,
        pid: Tid,
        ppid: Option<Tid>,
        name: &[u8],
        status: Option<i64>,
    ) {
        if pid != tid && !self.idents.by_tid.contains_key(&pid) {
            let l = self.new_thread(pid, ts);
            self.set_comm(l, name);
            self.set_pid(l, pid, ppid);
        }
        let s = self.slot(tid, ts);
        self.set_comm(s, name);
        self.set_pid(s, pid, ppid);
        if self.threads[s as usize].state == ThreadState::Unknown {
            // LTTng statuses: 2 waiting for a CPU, 4 zombie, 5 waiting, 6 running.
            let st = match status {
                Some(2) | Some(6) => ThreadState::Ready,
                Some(4) | Some(3) | Some(7) => ThreadState::Exited,
                Some(5) => ThreadState::Blocked,
                _ => ThreadState::Unknown,
            };
            self.set_state(s, st, ts);
        }
    }

    /// Reports what is still running at `ts` (the end of the analysed
    /// period) as run slices ending there. The state is left as it was.
    pub fn flush<O: Observer>(&self, ts: i64, obs: &mut O) {
        for (i, c) in self.cpus.iter().enumerate() {
            let Some(c) = c else { continue };
            if let Current::Thread(s) = c.current {
                let t = &self.threads[s as usize];
                if ts > c.since {
                    obs.run(
                        &self.idents,
                        &RunSlice {
                            cpu: i as u32,
                            thread: t.serial,
                            from: c.since,
                            to: ts,
                            prio: t.prio,
                        },
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::Nobody;

    fn ident(m: &Machine, tid: Tid) -> (Option<Tid>, Option<Tid>) {
        let s = m.idents().serial_of(tid).expect("thread known");
        let id = m.idents().get(s).expect("identity");
        (id.pid, id.ppid)
    }

    fn fork(m: &mut Machine, ts: i64, parent: Tid, child: Tid, flags: Option<u64>) {
        if let Some(clone_flags) = flags {
            let ev = KernelEvent::NewTask {
                tid: child,
                clone_flags,
            };
            m.handle(ts, 0, &ev, &mut Nobody);
        }
        let ev = KernelEvent::Fork {
            parent_tid: parent,
            parent_pid: None,
            parent_comm: b"srv",
            child_tid: child,
            child_pid: None,
            child_comm: b"srv",
        };
        m.handle(ts + 1, 0, &ev, &mut Nobody);
    }

    #[test]
    fn clone_flags_tell_threads_from_processes_when_fork_has_no_pids() {
        let mut m = Machine::new();
        let dump = |tid, pid| KernelEvent::StatedumpThread {
            tid,
            pid,
            ppid: Some(1),
            name: b"srv",
            status: Some(5),
        };
        m.handle(10, 0, &dump(100, 100), &mut Nobody);
        m.handle(11, 0, &dump(101, 100), &mut Nobody);
        // A worker thread (101) starts another thread, then a process.
        fork(&mut m, 20, 101, 102, Some(CLONE_THREAD | 0x100));
        fork(&mut m, 30, 101, 103, Some(0x11));
        assert_eq!(ident(&m, 102), (Some(100), Some(1)));
        assert_eq!(ident(&m, 103), (Some(103), Some(100)));
        // The forking worker keeps its process.
        assert_eq!(ident(&m, 101), (Some(100), Some(1)));
        // Without task_newtask the child's process stays unknown.
        fork(&mut m, 40, 101, 104, None);
        assert_eq!(ident(&m, 104).0, None);
        assert!(m.clones.is_empty());
    }
}
