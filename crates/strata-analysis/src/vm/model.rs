//! The vCPU state machine, fed one host event at a time (and, for the
//! fused view, the events of guest traces). Memory grows with VMs, vCPUs,
//! host CPUs and the threads named in statedumps and forks, never with the
//! number of events.
//!
//! Per vCPU thread the model tracks where it is (on a host CPU, runnable
//! but switched out, blocked, or not known yet) and, once `kvm_entry` has
//! been seen for it, whether it runs guest code or the hypervisor. The two
//! give one exclusive [`VcpuState`] at any instant, whose durations add up
//! to the analysed period.

use serde::Serialize;

use crate::event::{Comm, Tid};
use crate::hash::{int_map, IntMap};
use crate::state::MAX_CPUS;
use crate::stats::{Hist, Stats};

use super::event::VmEvent;
use super::fused::{ClockTransform, GuestView};
use super::hints::VmHint;

mod lifetime;

/// A vCPU's state at an instant. The states are exclusive; their times add
/// up to the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VcpuState {
    /// Nothing says yet where the vCPU thread is.
    Unknown = 0,
    /// On a host CPU, in guest mode (after `kvm_entry`).
    Running = 1,
    /// On a host CPU, in the kernel's hypervisor (after `kvm_exit`).
    Vmm = 2,
    /// On a host CPU, in the VMM process after `kvm_userspace_exit`.
    VmmUser = 3,
    /// On a host CPU, but guest and hypervisor time cannot be told apart:
    /// no `kvm_entry` seen for it (QEMU TCG, or before the first entry).
    OnCpu = 4,
    /// Runnable but switched out: waiting for a host CPU (steal).
    Preempted = 5,
    /// Blocked: the guest halted or the thread sleeps.
    Idle = 6,
}

/// Number of [`VcpuState`]s.
pub const STATES: usize = 7;

impl VcpuState {
    /// Every state, in index order.
    pub const ALL: [VcpuState; STATES] = [
        VcpuState::Unknown,
        VcpuState::Running,
        VcpuState::Vmm,
        VcpuState::VmmUser,
        VcpuState::OnCpu,
        VcpuState::Preempted,
        VcpuState::Idle,
    ];
}

/// Why a vCPU is in the hypervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ExitCause {
    /// An in-kernel exit (`kvm_exit`).
    Kernel {
        /// 1 = VMX, 2 = SVM, when known.
        isa: Option<u32>,
        /// The raw exit reason.
        reason: u32,
    },
    /// A return to the VMM process (`kvm_userspace_exit`).
    User {
        /// `KVM_EXIT_*`.
        reason: u32,
        /// Negative when `KVM_RUN` failed.
        errno: i32,
    },
}

impl ExitCause {
    /// Its name (VMX table or `KVM_EXIT_*`).
    pub fn name(&self) -> String {
        match *self {
            ExitCause::Kernel { isa, reason } => super::reasons::exit_name(isa, reason),
            ExitCause::User { reason, errno } => {
                format!(
                    "user:{}",
                    super::reasons::userspace_exit_name(reason, errno)
                )
            }
        }
    }
}

/// Who ran on a vCPU's host CPU while it waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preempter {
    /// Another vCPU (index into the model's vCPUs).
    Vcpu(usize),
    /// A host thread.
    Thread(Tid),
    /// The idle task: the vCPU waited on an idle CPU (wakeup latency).
    Idle,
    /// The CPU's current thread was not known.
    Unknown,
}

/// One interval of a vCPU's state, for tests and timelines (recorded only
/// when asked, see [`VmModel::record_intervals`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuInterval {
    /// The vCPU (index into [`VmModel::vcpus`]).
    pub vcpu: usize,
    /// Its state.
    pub state: VcpuState,
    /// Start, ns.
    pub start: i64,
    /// End, ns.
    pub end: i64,
    /// For hypervisor states: why.
    pub cause: Option<ExitCause>,
    /// The host CPU it ran on, or waited for.
    pub cpu: Option<u32>,
}

/// Where a vCPU thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    Unknown,
    On(u32),
    Ready(Option<u32>),
    Blocked,
}

/// What a vCPU thread does while on a CPU, as far as KVM events say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Unknown,
    Guest,
    Vmm(ExitCause),
}

/// A vCPU and its accumulated times.
#[derive(Debug, Clone)]
pub struct Vcpu {
    /// Its VM (index into [`VmModel::vms`]).
    pub vm: usize,
    /// Its index inside the VM (`kvm_entry` vcpu_id, or `CPU n/` name).
    pub id: u32,
    /// Its host thread.
    pub tid: Tid,
    /// The thread's name.
    pub comm: Comm,
    /// Whether `kvm_entry` was seen for it (its hypervisor time is visible).
    pub entries_seen: bool,
    /// Whether its thread exited (its later time is unknown).
    pub gone: bool,
    loc: Loc,
    mode: Mode,
    since: i64,
    /// Time per state, ns (up to the last transition).
    pub(super) acc: [i64; STATES],
    /// In-kernel exit being served: when and why.
    exit_at: Option<(i64, ExitCause)>,
    /// Since when waiting time was last credited to a preempter.
    by_since: i64,
    /// Waiting time per preempter, with the preempter's name.
    pub(super) preempted_by: Vec<(Preempter, i64, Comm)>,
}

impl Vcpu {
    /// Its state now.
    pub fn state(&self) -> VcpuState {
        match self.loc {
            Loc::Unknown => VcpuState::Unknown,
            Loc::Blocked => VcpuState::Idle,
            Loc::Ready(_) => VcpuState::Preempted,
            Loc::On(_) => match self.mode {
                Mode::Guest => VcpuState::Running,
                Mode::Vmm(ExitCause::Kernel { .. }) => VcpuState::Vmm,
                Mode::Vmm(ExitCause::User { .. }) => VcpuState::VmmUser,
                Mode::Unknown => VcpuState::OnCpu,
            },
        }
    }

    fn detail(&self) -> (VcpuState, Option<ExitCause>, Option<u32>) {
        let s = self.state();
        let cause = match (s, self.mode) {
            (VcpuState::Vmm | VcpuState::VmmUser, Mode::Vmm(c)) => Some(c),
            _ => None,
        };
        let cpu = match self.loc {
            Loc::On(c) => Some(c),
            Loc::Ready(c) => c,
            _ => None,
        };
        (s, cause, cpu)
    }

    /// Time in each state up to the last transition, ns.
    pub fn times(&self) -> &[i64; STATES] {
        &self.acc
    }

    /// Time in each state up to event time `now`, the current state's
    /// open interval included: live sampling without a flush or a clone.
    pub fn times_at(&self, now: i64) -> [i64; STATES] {
        let mut t = self.acc;
        t[self.state() as usize] += now.saturating_sub(self.since).max(0);
        t
    }

    fn demands(&self) -> bool {
        matches!(self.loc, Loc::On(_) | Loc::Ready(_))
    }
}

/// How a VM is emulated, as far as the trace shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM: threads named `CPU n/KVM`, or KVM events seen.
    Kvm,
    /// QEMU TCG: threads named `CPU n/TCG`.
    Tcg,
    /// Not told.
    Unknown,
}

/// Per exit reason: count and exit-to-entry latency.
#[derive(Debug, Clone, Default)]
pub(super) struct ExitAcc {
    pub(super) cause: Option<ExitCause>,
    pub(super) count: u64,
    pub(super) latency: Stats,
}

/// A VM and its VM-wide counters.
#[derive(Debug, Clone)]
pub struct Vm {
    /// Its name: from the hints, or `pid N`.
    pub name: String,
    /// Its UUID, from the hints.
    pub uuid: Option<String>,
    /// The VMM process, when known.
    pub pid: Option<Tid>,
    /// The VMM process's name, when known.
    pub process: Option<Comm>,
    /// Its vCPUs (indices into [`VmModel::vcpus`]).
    pub vcpus: Vec<usize>,
    /// How it is emulated.
    pub accel: Accel,
    pub(super) exits: IntMap<u64, ExitAcc>,
    pub(super) user_exits: IntMap<u64, ExitAcc>,
    pub(super) vmm_latency: Hist,
    pub(super) pio: u64,
    pub(super) pio_ports: Vec<(u32, u64)>,
    pub(super) guest: Option<GuestView>,
    /// When its VMM process exited (or its hint disappeared): a live view
    /// drops it a grace period later ([`VmModel::drop_gone`]).
    pub gone_at: Option<i64>,
}

impl Vm {
    /// Whether a guest trace is attached.
    pub fn guest_attached(&self) -> bool {
        self.guest.is_some()
    }
}

/// The most distinct ports counted per VM (others are summed under none).
const MAX_PORTS: usize = 64;
/// The most preempters named per vCPU (others count as unknown).
const MAX_PREEMPTERS: usize = 256;

/// Intervals where more vCPUs wanted a CPU than the host has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Overcommit {
    /// Host CPUs compared against.
    pub physical_cpus: u32,
    /// Number of overcommitted intervals.
    pub intervals: u64,
    /// Their total length, ns.
    pub total_ns: i64,
    /// The longest one: (start, end) ns.
    pub longest: Option<(i64, i64)>,
    /// Most vCPUs runnable at once.
    pub max_runnable: u32,
    #[serde(skip)]
    open: Option<i64>,
}

/// A host CPU: what runs on it, and which vCPUs wait for it.
#[derive(Debug, Clone, Default)]
struct CpuSlot {
    cur: Option<(Tid, Comm)>,
    waiting: Vec<usize>,
}

/// What the statedump and forks say of a thread.
#[derive(Debug, Clone, Copy, Default)]
struct ThreadInfo {
    pid: Option<Tid>,
    parent: Option<Tid>,
    comm: Comm,
}

/// The VM model of one host.
#[derive(Debug, Clone, Default)]
pub struct VmModel {
    cpus: Vec<CpuSlot>,
    threads: IntMap<Tid, ThreadInfo>,
    vcpu_of: IntMap<Tid, usize>,
    vcpus: Vec<Vcpu>,
    vms: Vec<Vm>,
    hints: Vec<VmHint>,
    begin: Option<i64>,
    physical_cpus: Option<u32>,
    demand: u32,
    over: Overcommit,
    intervals: Option<Vec<VcpuInterval>>,
}

/// The `n` of a QEMU vCPU thread name `CPU n/KVM` or `CPU n/TCG`, and
/// whether it says KVM. Single-threaded TCG's one thread for every vCPU,
/// `ALL CPUs/TCG`, counts as vCPU 0.
pub fn parse_vcpu_thread_name(comm: &[u8]) -> Option<(u32, Accel)> {
    if comm == b"ALL CPUs/TCG" {
        return Some((0, Accel::Tcg));
    }
    let rest = comm.strip_prefix(b"CPU ")?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    let n = std::str::from_utf8(&rest[..slash]).ok()?.parse().ok()?;
    let accel = match &rest[slash + 1..] {
        b"KVM" => Accel::Kvm,
        b"TCG" => Accel::Tcg,
        _ => return None,
    };
    Some((n, accel))
}

impl VmModel {
    /// An empty model.
    pub fn new() -> VmModel {
        VmModel::default()
    }

    /// Adds what the host knew of its VMs (names, UUIDs, vCPU threads).
    pub fn add_hints(&mut self, hints: impl IntoIterator<Item = VmHint>) {
        self.hints.extend(hints);
    }

    /// Sets the host's CPU count for overcommit detection (default: the
    /// highest CPU number seen, plus one).
    pub fn set_physical_cpus(&mut self, n: u32) {
        self.physical_cpus = Some(n.max(1));
    }

    /// Keeps every vCPU interval (memory grows with events: for tests and
    /// short timelines only).
    pub fn record_intervals(&mut self) {
        self.intervals.get_or_insert_with(Vec::new);
    }

    /// The intervals recorded so far (see [`VmModel::record_intervals`]).
    pub fn intervals(&self) -> &[VcpuInterval] {
        self.intervals.as_deref().unwrap_or(&[])
    }

    /// The VMs found so far.
    pub fn vms(&self) -> &[Vm] {
        &self.vms
    }

    /// The vCPUs found so far.
    pub fn vcpus(&self) -> &[Vcpu] {
        &self.vcpus
    }

    /// The first event's time, if any.
    pub fn begin(&self) -> Option<i64> {
        self.begin
    }

    /// The overcommit summary so far.
    pub fn overcommit(&self) -> Overcommit {
        let mut o = self.over;
        o.physical_cpus = self.cpu_count();
        o
    }

    fn cpu_count(&self) -> u32 {
        self.physical_cpus.unwrap_or(self.cpus.len().max(1) as u32)
    }

    /// Feeds one host event emitted on `cpu` at `ts` (ns), by thread
    /// `ctx_tid` when the trace says. Events must come in time order.
    #[inline]
    pub fn handle(&mut self, ts: i64, cpu: u32, ctx_tid: Option<Tid>, ev: &VmEvent<'_>) {
        if cpu >= MAX_CPUS {
            return;
        }
        if self.begin.is_none() {
            self.begin = Some(ts);
        }
        let c = cpu as usize;
        if c >= self.cpus.len() {
            self.cpus.resize_with(c + 1, CpuSlot::default);
        }
        match *ev {
            VmEvent::Switch {
                prev_tid,
                prev_comm,
                prev_state,
                next_tid,
                next_comm,
            } => self.switch(
                ts, cpu, prev_tid, prev_comm, prev_state, next_tid, next_comm,
            ),
            VmEvent::Wakeup { tid, target_cpu } => {
                if let Some(&v) = self.vcpu_of.get(&tid) {
                    let vc = &self.vcpus[v];
                    if !vc.gone && !matches!(vc.loc, Loc::On(_) | Loc::Ready(_)) {
                        let home = target_cpu.filter(|&c| c < MAX_CPUS).or(Some(cpu));
                        self.set_loc(v, ts, Loc::Ready(home));
                    }
                }
            }
            VmEvent::Migrate { tid, dest_cpu } => {
                if let Some(&v) = self.vcpu_of.get(&tid) {
                    if matches!(self.vcpus[v].loc, Loc::Ready(_))
                        && !self.vcpus[v].gone
                        && dest_cpu < MAX_CPUS
                    {
                        self.set_loc(v, ts, Loc::Ready(Some(dest_cpu)));
                    }
                }
            }
            VmEvent::Fork {
                parent_tid,
                child_tid,
                child_pid,
                child_comm,
            } => {
                // A reused tid is a new thread, not the vCPU that had it.
                if self
                    .vcpu_of
                    .get(&child_tid)
                    .is_some_and(|&v| self.vcpus[v].gone)
                {
                    self.vcpu_of.remove(&child_tid);
                }
                self.threads.insert(
                    child_tid,
                    ThreadInfo {
                        pid: child_pid.filter(|&p| p != child_tid),
                        parent: Some(parent_tid),
                        comm: Comm::new(child_comm),
                    },
                );
                self.learn_process(child_tid);
            }
            VmEvent::Exec { tid, filename } => {
                let t = self.threads.entry(tid).or_default();
                t.comm = Comm::from_exec_path(filename);
                t.pid.get_or_insert(tid);
            }
            VmEvent::Rename { tid, comm } => {
                self.threads.entry(tid).or_default().comm = Comm::new(comm);
                if !self.vcpu_of.contains_key(&tid) {
                    if let Some((n, accel)) = parse_vcpu_thread_name(comm) {
                        self.register(ts, tid, Comm::new(comm), Some(n), accel);
                    }
                }
            }
            VmEvent::Thread { tid, pid, name } => {
                self.threads.insert(
                    tid,
                    ThreadInfo {
                        pid: Some(pid),
                        parent: None,
                        comm: Comm::new(name),
                    },
                );
                if let Some((n, accel)) = parse_vcpu_thread_name(name) {
                    if !self.vcpu_of.contains_key(&tid) {
                        self.register(ts, tid, Comm::new(name), Some(n), accel);
                    }
                }
            }
            VmEvent::ThreadExit { tid } => {
                // Keep what names a VM's process; forget other threads, so
                // a live model stays bounded by the threads alive.
                if !self.vms.iter().any(|vm| vm.pid == Some(tid)) {
                    self.threads.remove(&tid);
                }
                // Its time from now on is not the vCPU's: unknown, not
                // idle; and its tid may be reused by an unrelated thread.
                if let Some(&v) = self.vcpu_of.get(&tid) {
                    self.vcpus[v].gone = true;
                    self.set_loc(v, ts, Loc::Unknown);
                    self.transition(v, ts, |vc| {
                        vc.mode = Mode::Unknown;
                        vc.exit_at = None;
                    });
                }
                self.note_exit(ts, tid);
            }
            VmEvent::KvmEntry { vcpu_id } => {
                if let Some(v) = self.kvm_thread(ts, cpu, ctx_tid, vcpu_id) {
                    self.entry(ts, v);
                }
            }
            VmEvent::KvmExit {
                reason,
                isa,
                vcpu_id,
            } => {
                if let Some(v) = self.kvm_thread(ts, cpu, ctx_tid, vcpu_id) {
                    self.exit(ts, v, ExitCause::Kernel { isa, reason });
                }
            }
            VmEvent::UserspaceExit { reason, errno } => {
                if let Some(v) = self.kvm_thread(ts, cpu, ctx_tid, None) {
                    self.user_exit(ts, v, ExitCause::User { reason, errno });
                }
            }
            VmEvent::Pio { port, .. } => {
                if let Some(v) = self.kvm_thread(ts, cpu, ctx_tid, None) {
                    let vm = &mut self.vms[self.vcpus[v].vm];
                    vm.pio += 1;
                    let n = vm.pio_ports.len();
                    match vm.pio_ports.iter_mut().find(|p| p.0 == port) {
                        Some(p) => p.1 += 1,
                        None if n < MAX_PORTS => vm.pio_ports.push((port, 1)),
                        None => {}
                    }
                }
            }
            VmEvent::Other => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn switch(
        &mut self,
        ts: i64,
        cpu: u32,
        prev_tid: Tid,
        prev_comm: &[u8],
        prev_state: i64,
        next_tid: Tid,
        next_comm: &[u8],
    ) {
        let c = cpu as usize;
        if !self.cpus[c].waiting.is_empty() {
            self.credit_waiting(c, ts);
        }
        let prev = match self.vcpu_of.get(&prev_tid) {
            Some(&v) => Some(v).filter(|&v| !self.vcpus[v].gone),
            None => self.maybe_vcpu_by_name(ts, prev_tid, prev_comm),
        };
        if let Some(v) = prev {
            // The low byte is the task state; 0 (with or without the
            // "preempted" report bit) means still runnable.
            let loc = if prev_state & 0xff == 0 {
                Loc::Ready(Some(cpu))
            } else {
                Loc::Blocked
            };
            self.set_loc(v, ts, loc);
        }
        let next = match self.vcpu_of.get(&next_tid) {
            Some(&v) => Some(v).filter(|&v| !self.vcpus[v].gone),
            None => self.maybe_vcpu_by_name(ts, next_tid, next_comm),
        };
        if let Some(v) = next {
            self.set_loc(v, ts, Loc::On(cpu));
        }
        self.cpus[c].cur = Some((next_tid, Comm::new(next_comm)));
    }

    #[inline]
    fn maybe_vcpu_by_name(&mut self, ts: i64, tid: Tid, comm: &[u8]) -> Option<usize> {
        if tid == 0 || !(comm.starts_with(b"CPU ") || comm.starts_with(b"ALL CPUs/")) {
            return None;
        }
        let (n, accel) = parse_vcpu_thread_name(comm)?;
        Some(self.register(ts, tid, Comm::new(comm), Some(n), accel))
    }

    /// The vCPU a KVM event belongs to: the event's thread (context, else
    /// the CPU's current thread), registered on first sight. Puts it on
    /// this CPU if the model had it elsewhere (a missed switch).
    fn kvm_thread(
        &mut self,
        ts: i64,
        cpu: u32,
        ctx_tid: Option<Tid>,
        vcpu_id: Option<u32>,
    ) -> Option<usize> {
        let c = cpu as usize;
        let tid = ctx_tid.or_else(|| self.cpus[c].cur.map(|x| x.0))?;
        if tid <= 0 {
            return None;
        }
        let v = match self.vcpu_of.get(&tid) {
            Some(&v) if self.vcpus[v].gone => return None,
            Some(&v) => v,
            None => {
                let comm = self
                    .threads
                    .get(&tid)
                    .map(|t| t.comm)
                    .or_else(|| self.cpus[c].cur.filter(|x| x.0 == tid).map(|x| x.1))
                    .unwrap_or_default();
                let by_name = parse_vcpu_thread_name(comm.as_bytes()).map(|x| x.0);
                self.register(ts, tid, comm, vcpu_id.or(by_name), Accel::Kvm)
            }
        };
        if let Some(id) = vcpu_id {
            self.vcpus[v].id = id;
        }
        let vm = self.vcpus[v].vm;
        if self.vms[vm].accel == Accel::Unknown {
            self.vms[vm].accel = Accel::Kvm;
        }
        if self.vcpus[v].loc != Loc::On(cpu) {
            if let Some(&(cur, _)) = self.cpus[c].cur.as_ref() {
                if cur != tid {
                    self.credit_waiting(c, ts);
                    if let Some(&o) = self.vcpu_of.get(&cur) {
                        if self.vcpus[o].loc == Loc::On(cpu) {
                            self.set_loc(o, ts, Loc::Unknown);
                        }
                    }
                }
            }
            let comm = self.vcpus[v].comm;
            self.cpus[c].cur = Some((tid, comm));
            self.set_loc(v, ts, Loc::On(cpu));
        }
        Some(v)
    }

    fn entry(&mut self, ts: i64, v: usize) {
        let vc = &mut self.vcpus[v];
        vc.entries_seen = true;
        if let Some((at, cause)) = vc.exit_at.take() {
            let vm = &mut self.vms[vc.vm];
            let lat = ts - at;
            vm.vmm_latency.add(lat);
            if let Some(e) = vm.exits.get_mut(&cause_key(cause)) {
                e.latency.add(lat);
            }
        }
        self.set_mode(v, ts, Mode::Guest);
    }

    fn exit(&mut self, ts: i64, v: usize, cause: ExitCause) {
        let vc = &mut self.vcpus[v];
        vc.exit_at = Some((ts, cause));
        let e = self.vms[vc.vm].exits.entry(cause_key(cause)).or_default();
        e.cause = Some(cause);
        e.count += 1;
        self.set_mode(v, ts, Mode::Vmm(cause));
    }

    fn user_exit(&mut self, ts: i64, v: usize, cause: ExitCause) {
        let vc = &self.vcpus[v];
        let e = self.vms[vc.vm]
            .user_exits
            .entry(cause_key(cause))
            .or_default();
        e.cause = Some(cause);
        e.count += 1;
        // Without entries, nothing tells when the vCPU goes back to the
        // guest: leave the mode unknown rather than invent VMM time.
        if vc.entries_seen {
            self.set_mode(v, ts, Mode::Vmm(cause));
        }
    }

    /// Makes thread `tid` a vCPU, in the VM its hints or process say.
    fn register(&mut self, ts: i64, tid: Tid, comm: Comm, id: Option<u32>, accel: Accel) -> usize {
        let begin = self.begin.unwrap_or(ts);
        let hinted = self.hints.iter().position(|h| {
            h.vcpus.iter().any(|x| x.tid == tid)
                || h.qemu_pid.is_some() && h.qemu_pid == self.pid_of(tid)
        });
        let pid = hinted
            .and_then(|h| self.hints[h].qemu_pid)
            .or_else(|| self.pid_of(tid));
        let hint_id = hinted.and_then(|h| {
            self.hints[h]
                .vcpus
                .iter()
                .find(|x| x.tid == tid)
                .map(|x| x.id)
        });
        let vm = match self
            .vms
            .iter()
            .position(|vm| pid.is_some() && vm.pid == pid)
        {
            Some(i) => i,
            None => {
                let h = hinted.map(|h| self.hints[h].clone()).unwrap_or_default();
                let process = pid.and_then(|p| self.threads.get(&p)).map(|t| t.comm);
                let name = h.name.unwrap_or_else(|| match pid {
                    Some(p) => format!("pid {p}"),
                    None => format!("tid {tid}"),
                });
                self.vms.push(Vm {
                    name,
                    uuid: h.uuid,
                    pid,
                    process,
                    vcpus: Vec::new(),
                    accel,
                    exits: int_map(),
                    user_exits: int_map(),
                    vmm_latency: Hist::new(),
                    pio: 0,
                    pio_ports: Vec::new(),
                    guest: None,
                    gone_at: None,
                });
                self.vms.len() - 1
            }
        };
        let n = self.vms[vm].vcpus.len() as u32;
        if self.vms[vm].accel == Accel::Unknown {
            self.vms[vm].accel = accel;
        }
        let i = self.vcpus.len();
        self.vcpus.push(Vcpu {
            vm,
            id: id.or(hint_id).unwrap_or(n),
            tid,
            comm,
            entries_seen: false,
            gone: false,
            loc: Loc::Unknown,
            mode: Mode::Unknown,
            since: begin,
            acc: [0; STATES],
            exit_at: None,
            by_since: begin,
            preempted_by: Vec::new(),
        });
        self.vms[vm].vcpus.push(i);
        self.vcpu_of.insert(tid, i);
        i
    }

    /// The process of `tid`: its own record, else its creator's.
    fn pid_of(&self, tid: Tid) -> Option<Tid> {
        let t = self.threads.get(&tid)?;
        if let Some(p) = t.pid {
            return Some(p);
        }
        let parent = t.parent?;
        Some(
            self.threads
                .get(&parent)
                .and_then(|p| p.pid)
                .unwrap_or(parent),
        )
    }

    /// Credits the waiting time of every vCPU waiting for CPU `c` to the
    /// thread running there, up to `ts`.
    fn credit_waiting(&mut self, c: usize, ts: i64) {
        let cur = self.cpus[c].cur;
        let who = match cur {
            None => (Preempter::Unknown, Comm::default()),
            Some((0, comm)) => (Preempter::Idle, comm),
            Some((t, comm)) => match self.vcpu_of.get(&t) {
                Some(&o) => (Preempter::Vcpu(o), comm),
                None => (Preempter::Thread(t), comm),
            },
        };
        for k in 0..self.cpus[c].waiting.len() {
            let v = self.cpus[c].waiting[k];
            credit(&mut self.vcpus[v], ts, who);
        }
    }

    fn set_mode(&mut self, v: usize, ts: i64, mode: Mode) {
        self.transition(v, ts, |vc| vc.mode = mode);
    }

    fn set_loc(&mut self, v: usize, ts: i64, loc: Loc) {
        let old = self.vcpus[v].loc;
        if old == loc {
            return;
        }
        if let Loc::Ready(Some(h)) = old {
            let h = h as usize;
            if h < self.cpus.len() {
                self.credit_waiting(h, ts);
                self.cpus[h].waiting.retain(|&w| w != v);
            }
        }
        if let Loc::Ready(Some(h)) = loc {
            let h = h as usize;
            if h >= self.cpus.len() {
                self.cpus.resize_with(h + 1, CpuSlot::default);
            }
            self.cpus[h].waiting.push(v);
            self.vcpus[v].by_since = ts;
        }
        let was = self.vcpus[v].demands();
        self.transition(v, ts, |vc| vc.loc = loc);
        let now = self.vcpus[v].demands();
        if was != now {
            self.demand_changed(ts, now);
        }
    }

    /// Applies `change` to vCPU `v` at `ts`, closing its current interval
    /// when its state (or cause, or CPU) changes.
    fn transition(&mut self, v: usize, ts: i64, change: impl FnOnce(&mut Vcpu)) {
        let vc = &mut self.vcpus[v];
        let before = vc.detail();
        change(vc);
        let after = vc.detail();
        if before == after {
            return;
        }
        let start = vc.since;
        let end = ts.max(start);
        vc.acc[before.0 as usize] += end - start;
        vc.since = end;
        let (vm, id) = (vc.vm, vc.id);
        if let Some(g) = self.vms[vm].guest.as_mut() {
            g.host_changed(id, end, before.0, after.0);
        }
        if let Some(iv) = self.intervals.as_mut() {
            if end > start {
                iv.push(VcpuInterval {
                    vcpu: v,
                    state: before.0,
                    start,
                    end,
                    cause: before.1,
                    cpu: before.2,
                });
            }
        }
    }

    fn demand_changed(&mut self, ts: i64, up: bool) {
        if up {
            self.demand += 1;
        } else {
            self.demand = self.demand.saturating_sub(1);
        }
        let cpus = self.cpu_count();
        let o = &mut self.over;
        o.max_runnable = o.max_runnable.max(self.demand);
        match (o.open, self.demand > cpus) {
            (None, true) => o.open = Some(ts),
            (Some(at), false) => close_overcommit(o, at, ts),
            _ => {}
        }
    }

    /// Closes every open interval at `end` (the end of the period), so that
    /// the times add up; the model can go on being fed afterwards.
    pub fn flush(&mut self, end: i64) {
        for c in 0..self.cpus.len() {
            if !self.cpus[c].waiting.is_empty() {
                self.credit_waiting(c, end);
            }
        }
        for v in 0..self.vcpus.len() {
            let vc = &mut self.vcpus[v];
            let start = vc.since;
            let end = end.max(start);
            let d = vc.detail();
            vc.acc[d.0 as usize] += end - start;
            vc.since = end;
            let (vm, id) = (vc.vm, vc.id);
            if let Some(g) = self.vms[vm].guest.as_mut() {
                g.host_changed(id, end, d.0, d.0);
            }
            if let Some(iv) = self.intervals.as_mut() {
                if end > start {
                    iv.push(VcpuInterval {
                        vcpu: v,
                        state: d.0,
                        start,
                        end,
                        cause: d.1,
                        cpu: d.2,
                    });
                }
            }
        }
        if let Some(at) = self.over.open {
            close_overcommit(&mut self.over, at, end);
            self.over.open = Some(end);
        }
        for g in self.vms.iter_mut().filter_map(|vm| vm.guest.as_mut()) {
            g.flush(end);
        }
    }

    /// The report up to `now` without changing the model (for live
    /// snapshots: the model is cloned, which costs O(VMs + vCPUs + threads)).
    pub fn snapshot(&self, hostname: &str, now: i64, top: usize) -> super::VmHostReport {
        let mut m = self.clone();
        m.intervals = None;
        m.flush(now);
        m.report(hostname, now, &[], top)
    }

    /// The VM whose name or UUID is `key` (UUIDs compare case-blind).
    pub fn find_vm(&self, key: &str) -> Option<usize> {
        self.vms.iter().position(|vm| {
            vm.name == key
                || vm
                    .uuid
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(key))
        })
    }

    /// Attaches a guest trace to VM `vm`, for the fused view, with the
    /// transform from the guest's clock to the host's (identity until
    /// strata-sync gives a better one).
    pub fn attach_guest(&mut self, vm: usize, label: &str) {
        if let Some(v) = self.vms.get_mut(vm) {
            v.guest = Some(GuestView::new(label));
        }
    }

    /// The vCPU whose host thread is `tid`, if it is one.
    pub fn vcpu_of_thread(&self, tid: Tid) -> Option<&Vcpu> {
        self.vcpu_of.get(&tid).and_then(|&i| self.vcpus.get(i))
    }

    /// VM `vm`'s guest view, when a guest trace is attached.
    pub fn guest_mut(&mut self, vm: usize) -> Option<&mut GuestView> {
        self.vms.get_mut(vm).and_then(|v| v.guest.as_mut())
    }

    /// Sets the guest-to-host clock transform of VM `vm`'s guest trace.
    pub fn set_guest_clock(&mut self, vm: usize, t: ClockTransform) {
        if let Some(g) = self.vms.get_mut(vm).and_then(|v| v.guest.as_mut()) {
            g.clock = t;
        }
    }

    /// Feeds one event of VM `vm`'s guest trace (guest CPU `cpu` = vCPU
    /// id), at guest time `ts`.
    pub fn handle_guest(&mut self, vm: usize, ts: i64, cpu: u32, ev: &VmEvent<'_>) {
        let VmEvent::Switch {
            next_tid,
            next_comm,
            ..
        } = *ev
        else {
            return;
        };
        let Some(v) = self.vms.get(vm) else {
            return;
        };
        let state = v
            .vcpus
            .iter()
            .map(|&i| &self.vcpus[i])
            .find(|x| x.id == cpu)
            .map_or(VcpuState::Unknown, Vcpu::state);
        if let Some(g) = self.vms[vm].guest.as_mut() {
            let host_ts = g.clock.apply(ts);
            g.switch(cpu, host_ts, state, next_tid, next_comm);
        }
    }
}

fn credit(vc: &mut Vcpu, ts: i64, who: (Preempter, Comm)) {
    let d = ts - vc.by_since;
    vc.by_since = ts;
    if d <= 0 {
        return;
    }
    let key = if vc.preempted_by.len() >= MAX_PREEMPTERS
        && !vc.preempted_by.iter().any(|p| p.0 == who.0)
    {
        Preempter::Unknown
    } else {
        who.0
    };
    match vc.preempted_by.iter_mut().find(|p| p.0 == key) {
        Some(p) => {
            p.1 += d;
            p.2 = who.1;
        }
        None => vc.preempted_by.push((key, d, who.1)),
    }
}

fn close_overcommit(o: &mut Overcommit, at: i64, ts: i64) {
    o.open = None;
    let d = ts - at;
    if d <= 0 {
        return;
    }
    o.intervals += 1;
    o.total_ns += d;
    if o.longest.is_none_or(|(a, b)| b - a < d) {
        o.longest = Some((at, ts));
    }
}

/// A map key for an exit cause.
fn cause_key(c: ExitCause) -> u64 {
    match c {
        ExitCause::Kernel { isa, reason } => {
            (u64::from(isa.unwrap_or(0)) << 32) | u64::from(reason)
        }
        ExitCause::User { reason, errno } => {
            (1 << 63) | (u64::from(errno as u32) << 32) | u64::from(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_thread_names() {
        assert_eq!(parse_vcpu_thread_name(b"CPU 3/KVM"), Some((3, Accel::Kvm)));
        assert_eq!(
            parse_vcpu_thread_name(b"CPU 12/TCG"),
            Some((12, Accel::Tcg))
        );
        assert_eq!(parse_vcpu_thread_name(b"CPU x/KVM"), None);
        assert_eq!(parse_vcpu_thread_name(b"CPU 1/XYZ"), None);
        assert_eq!(parse_vcpu_thread_name(b"bash"), None);
        assert_eq!(
            parse_vcpu_thread_name(b"ALL CPUs/TCG"),
            Some((0, Accel::Tcg))
        );
    }
}
