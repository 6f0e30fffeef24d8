//! The live analyses of one host: events are decoded as they arrive
//! ([`ftrace_bind`] for raw pages, [`ctf_bind`] for replayed packets),
//! merged across CPUs by time ([`merge`]), and applied one at a time to the
//! kernel state system of strata-analysis, whose notifications feed the
//! sliding-window accumulators ([`window`]). Reports are built on demand
//! for the HTTP API and `/metrics` ([`report`]).

pub mod ctf_bind;
pub mod event;
pub mod ftrace_bind;
pub mod hist;
pub mod merge;
pub mod report;
pub mod vm_live;
pub mod window;

use hdrhistogram::Histogram;
use strata_analysis::observer::{Observer, RunSlice, SyscallDone, WakeupDone};
use strata_analysis::state::{Idents, Machine, MAX_CPUS};
use strata_analysis::vm::{VmHostReport, VmModel};
use strata_rules::HostMetrics;

use event::{LiveEvent, LiveKind};
use merge::Merger;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use vm_live::{GuestFeed, GuestFeeds, GuestLink};
use window::Window;

/// Choices for the live analyses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveConfig {
    /// The sliding window for CPU usage and syscall rates, ns.
    pub window_ns: i64,
    /// Buckets the window is cut into.
    pub buckets: usize,
    /// How long an event may wait for other CPUs' events (wall time), ns.
    pub hold_ns: i64,
    /// The most events waiting in the reorder buffer. Each takes about
    /// 100 bytes, and the buffer is per host: the default keeps a host's
    /// buffer under about 7 MiB. A quarter of that made draining twice as
    /// frequent and the relay's ingest 30% slower per event.
    pub merge_cap: usize,
    /// How long a VM whose QEMU exited stays in the live view, ns.
    pub vm_grace_ns: i64,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            window_ns: 5_000_000_000,
            buckets: 10,
            hold_ns: 20_000_000,
            merge_cap: 1 << 16,
            vm_grace_ns: 10_000_000_000,
        }
    }
}

/// The highest live latency recorded, ns (larger values are clamped).
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// A new live-latency histogram: 1 ns to 1 h, 2 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 2).expect("constant bounds hdrhistogram accepts")
}

fn registry_lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    crate::registry::lock(m)
}

/// Nanoseconds since the Unix epoch, now.
#[inline]
pub fn unix_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The live state and analyses of one host.
#[derive(Debug)]
pub struct LiveHost {
    machine: Machine,
    vm: VmModel,
    window: Window,
    merger: Merger,
    syscall_names: Vec<Box<str>>,
    latency: Histogram<u64>,
    lost: Vec<u64>,
    applied: u64,
    bad_cpu: u64,
    /// The series the rules watch, when rules are loaded.
    rules: Option<HostMetrics>,
    vm_grace_ns: i64,
    /// This host is a VM: where its switches go for its host's fused view.
    guest_feed: Option<Arc<GuestFeed>>,
    /// Guests paired with this host's VMs.
    guests: Vec<GuestLink>,
    /// When (wall ns) the guests' clocks were last set from their syncs.
    guest_sync_at: i64,
    /// Host events for the sync of guests not paired yet, by VM UUID.
    unpaired_sync: vm_live::UnpairedSync,
}

/// How often (wall time) paired guests' clocks are re-estimated from their
/// probes: the hull fit costs the cube of its few tens of points, too much
/// for every packet's drain, and probes come every few ms.
const GUEST_SYNC_INTERVAL_NS: i64 = 250_000_000;

/// Feeds the window and the rules' series from one pass of the state system.
struct Tee<'a>(&'a mut Window, &'a mut HostMetrics);

impl Observer for Tee<'_> {
    #[inline]
    fn run(&mut self, ids: &Idents, s: &RunSlice) {
        self.0.run(ids, s);
        self.1.run(ids, s);
    }
    #[inline]
    fn syscall(&mut self, ids: &Idents, d: &SyscallDone) {
        self.0.syscall(ids, d);
        self.1.syscall(ids, d);
    }
    #[inline]
    fn wakeup(&mut self, ids: &Idents, d: &WakeupDone) {
        self.0.wakeup(ids, d);
        self.1.wakeup(ids, d);
    }
}

/// Collects the slices of threads still running, for reports.
struct Running<'a>(&'a mut Vec<RunSlice>);

impl Observer for Running<'_> {
    fn run(&mut self, _: &Idents, s: &RunSlice) {
        self.0.push(*s);
    }
}

impl LiveHost {
    /// A host that knows nothing yet; `syscall_names` name the syscall ids
    /// its events carry.
    pub fn new(cfg: LiveConfig, syscall_names: Vec<Box<str>>) -> LiveHost {
        LiveHost {
            machine: Machine::new(),
            vm: VmModel::new(),
            window: Window::new(cfg.window_ns, cfg.buckets),
            merger: Merger::new(cfg.hold_ns, cfg.merge_cap),
            syscall_names,
            latency: latency_histogram(),
            lost: Vec::new(),
            applied: 0,
            bad_cpu: 0,
            rules: None,
            vm_grace_ns: cfg.vm_grace_ns,
            guest_feed: None,
            guests: Vec::new(),
            guest_sync_at: 0,
            unpaired_sync: Vec::new(),
        }
    }

    /// Replaces the syscall names (new metadata from the agent).
    pub fn set_syscall_names(&mut self, names: Vec<Box<str>>) {
        if let Some(r) = self.rules.as_mut() {
            r.set_syscall_names(&names);
        }
        self.syscall_names = names;
    }

    /// The syscall names, by id.
    pub fn syscall_names(&self) -> &[Box<str>] {
        &self.syscall_names
    }

    /// Installs (or removes) the series the rules watch.
    pub fn set_rules(&mut self, rules: Option<HostMetrics>) {
        self.rules = rules;
    }

    /// The rules' series and the state system, for evaluation.
    pub fn rules_and_machine(&mut self) -> (Option<&mut HostMetrics>, &Machine) {
        (self.rules.as_mut(), &self.machine)
    }

    /// [`LiveHost::rules_and_machine`] with the VM model, for VM rules.
    pub fn rules_machine_vms(&mut self) -> (Option<&mut HostMetrics>, &Machine, &VmModel) {
        (self.rules.as_mut(), &self.machine, &self.vm)
    }

    /// Queues one decoded event.
    #[inline]
    pub fn push(&mut self, ev: LiveEvent) {
        if ev.cpu >= MAX_CPUS {
            self.bad_cpu += 1;
            return;
        }
        self.merger.push(ev);
    }

    /// [`LiveHost::push`], then, when the reorder buffer is over its cap,
    /// applies what it releases (recording live latencies into `global`
    /// too): a packet of many events never makes the buffer grow past the
    /// cap, whatever the batch size.
    #[inline]
    pub fn push_bounded(&mut self, ev: LiveEvent, global: &std::sync::Mutex<Histogram<u64>>) {
        let now = ev.arrived;
        self.push(ev);
        if self.merger.is_full() {
            let mut g = global.lock().unwrap_or_else(|p| p.into_inner());
            self.drain(now, false, Some(&mut g));
        }
    }

    /// Applies every event the reorder buffer releases at wall time `now`
    /// (all of them with `all`), recording each one's live latency: the
    /// time from its timestamp to the moment it was applied. Into `global`
    /// too, when given. Returns the events applied.
    pub fn drain(&mut self, now: i64, all: bool, mut global: Option<&mut Histogram<u64>>) -> u64 {
        let host_now = self.newest();
        let machine = &mut self.machine;
        let vm = &mut self.vm;
        let window = &mut self.window;
        let latency = &mut self.latency;
        let mut rules = self.rules.as_mut();
        let guest_feed = self.guest_feed.as_deref();
        let guests = &mut self.guests;
        let unpaired_sync = &mut self.unpaired_sync;
        for g in guests.iter_mut() {
            let sync = &mut g.sync;
            let dirty = &mut g.sync_dirty;
            let newest = &mut g.guest_sync_ns;
            g.feed.take_markers(|before, after| {
                sync.guest_probe(before, after);
                *newest = (*newest).max(i64::try_from(before).unwrap_or(i64::MAX));
                *dirty = true;
            });
            g.feed.take_into(&mut g.pending);
            // Switches older than the host's newest event can no longer be
            // merged in time order: apply them now.
            if let Some(now) = host_now {
                while let Some(e) = g.pending.front().copied() {
                    if g.clock.apply(e.ts) > now {
                        break;
                    }
                    g.pending.pop_front();
                    g.late += 1;
                    vm_live::apply_guest(vm, g, &e);
                }
            }
        }
        let mut applied = 0u64;
        // The clock is read every 256 events: the latency then includes
        // the time spent on the events before it in the batch.
        let mut clock = unix_now_ns();
        self.merger.drain(now, all, |ev| {
            window.tick(ev.ts);
            let running = ev.tid >= 0 && !matches!(ev.kind, LiveKind::StatedumpThread { .. });
            match rules.as_deref_mut() {
                None => {
                    if running {
                        machine.running(ev.ts, ev.cpu, ev.tid, window);
                    }
                    machine.handle(ev.ts, ev.cpu, &ev.kind.to_kernel(), window);
                }
                Some(r) => {
                    let mut tee = Tee(window, r);
                    if running {
                        machine.running(ev.ts, ev.cpu, ev.tid, &mut tee);
                    }
                    machine.handle(ev.ts, ev.cpu, &ev.kind.to_kernel(), &mut tee);
                }
            }
            for g in guests.iter_mut() {
                while let Some(e) = g.pending.front().copied() {
                    if g.clock.apply(e.ts) > ev.ts {
                        break;
                    }
                    g.pending.pop_front();
                    vm_live::apply_guest(vm, g, &e);
                }
            }
            if let Some(src) = vm_live::host_sync_source(&ev.kind) {
                vm_live::feed_host_sync(vm, guests, unpaired_sync, ev, src);
            }
            vm.handle(
                ev.ts,
                ev.cpu,
                (ev.tid >= 0).then_some(ev.tid),
                &ev.kind.to_vm(),
            );
            if let Some(f) = guest_feed {
                f.offer(ev);
            }
            applied += 1;
            if applied.is_multiple_of(256) {
                clock = unix_now_ns();
            }
            let l = clock.saturating_sub(ev.ts).clamp(1, MAX_LATENCY_NS as i64) as u64;
            latency.saturating_record(l);
            if let Some(g) = global.as_deref_mut() {
                g.saturating_record(l);
            }
        });
        self.applied += applied;
        self.guests.iter_mut().for_each(vm_live::release_host_sync);
        if !self.guests.is_empty() {
            let wall = unix_now_ns();
            if all || wall.saturating_sub(self.guest_sync_at) >= GUEST_SYNC_INTERVAL_NS {
                self.guest_sync_at = wall;
                self.update_guest_clocks();
            }
        }
        applied
    }

    /// Sets each paired guest's clock from its probes' sync, when new
    /// probes or host events came since the last time and the sync gives
    /// an estimate.
    fn update_guest_clocks(&mut self) {
        for g in self.guests.iter_mut().filter(|g| g.sync_dirty) {
            g.sync_dirty = false;
            let Some(r) = g.sync.report() else { continue };
            vm_live::set_clock(&mut self.vm, g, r.transform());
            g.sync_report = Some(r);
        }
    }

    /// Applies one event now, bypassing the reorder buffer: for the state
    /// dump, whose threads existed before any traced event.
    pub fn apply_direct(&mut self, ev: &LiveEvent) {
        if ev.cpu >= MAX_CPUS {
            self.bad_cpu += 1;
            return;
        }
        self.machine
            .handle(ev.ts, ev.cpu, &ev.kind.to_kernel(), &mut self.window);
        self.vm.handle(ev.ts, ev.cpu, None, &ev.kind.to_vm());
    }

    /// Whether the VM model found any VM on this host.
    pub fn has_vms(&self) -> bool {
        !self.vm.vms().is_empty()
    }

    /// The VMs of this host so far (`strata vm report`'s model, fed live),
    /// up to the newest event; `top` bounds the preempter rows.
    pub fn vms_report(&self, hostname: &str, top: usize) -> VmHostReport {
        let now = self.newest().or(self.vm.begin()).unwrap_or(0);
        if self.guests.is_empty() {
            return self.vm.snapshot(hostname, now, top);
        }
        let paired: Vec<(usize, String)> = self
            .guests
            .iter()
            .filter_map(|g| Some((self.vm.find_vm(&g.uuid)?, "uuid".to_string())))
            .collect();
        let mut m = self.vm.clone();
        m.flush(now);
        let mut r = m.report(hostname, now, &paired, top);
        for g in &self.guests {
            if let Some(vm) = r
                .vms
                .iter_mut()
                .find(|v| v.uuid.as_deref() == Some(&g.uuid))
            {
                if let Some(gr) = vm.guest.as_mut() {
                    gr.clock_offset_ns = g.clock.offset_ns;
                    gr.sync = g.sync_report.clone();
                    if gr.sync.is_none() {
                        gr.sync_sources = g.sync.sources();
                    }
                }
            }
        }
        r
    }

    /// Makes this host a guest whose switches feed `feed` (its agent said
    /// it is a VM, by UUID).
    pub fn set_guest_feed(&mut self, feed: Arc<GuestFeed>) {
        self.guest_feed = Some(feed);
    }

    /// Pairs this host's VMs that have a UUID with the guests of that UUID
    /// streaming to the relay, and unpairs guests whose VM is gone. Call
    /// it now and then (the hints that give UUIDs arrive over time).
    pub fn pair_guests(&mut self, feeds: &GuestFeeds) {
        let vm = &self.vm;
        self.guests.retain(|g| {
            let keep = vm.find_vm(&g.uuid).is_some();
            if !keep {
                g.feed.paired.store(false, Ordering::Relaxed);
            }
            keep
        });
        self.unpaired_sync
            .retain(|(uuid, _)| vm.find_vm(uuid).is_some());
        let feeds = registry_lock(feeds);
        for i in 0..self.vm.vms().len() {
            let Some(uuid) = self.vm.vms()[i].uuid.clone() else {
                continue;
            };
            let Some(feed) = feeds.get(&uuid.to_ascii_lowercase()) else {
                continue;
            };
            match self.guests.iter_mut().find(|g| g.uuid == uuid) {
                // The guest reconnected: a new feed, the same fused view.
                Some(g) if !Arc::ptr_eq(&g.feed, feed) => {
                    g.feed.paired.store(false, Ordering::Relaxed);
                    g.feed = Arc::clone(feed);
                    g.pending.clear();
                    feed.paired.store(true, Ordering::Relaxed);
                }
                Some(_) => {}
                None => {
                    if !self.vm.vms()[i].guest_attached() {
                        self.vm.attach_guest(i, &format!("host {}", feed.label));
                    }
                    feed.paired.store(true, Ordering::Relaxed);
                    let host_sync = self
                        .unpaired_sync
                        .iter()
                        .position(|(u, _)| *u == uuid)
                        .map(|i| self.unpaired_sync.swap_remove(i).1)
                        .unwrap_or_default();
                    self.guests.push(GuestLink {
                        uuid,
                        feed: Arc::clone(feed),
                        clock: strata_analysis::vm::ClockTransform::default(),
                        pending: std::collections::VecDeque::new(),
                        late: 0,
                        sync: strata_analysis::vm::sync::GuestSync::new(),
                        sync_dirty: false,
                        host_sync,
                        guest_sync_ns: i64::MIN,
                        sync_report: None,
                    });
                }
            }
        }
    }

    /// Sets the guest-to-host clock of the guest paired with the VM of
    /// UUID `uuid` (the hook for clock sync; the identity until then).
    /// Returns whether such a guest is paired.
    pub fn set_guest_clock(&mut self, uuid: &str, t: strata_analysis::vm::ClockTransform) -> bool {
        let Some(g) = self
            .guests
            .iter_mut()
            .find(|g| g.uuid.eq_ignore_ascii_case(uuid))
        else {
            return false;
        };
        vm_live::set_clock(&mut self.vm, g, t);
        true
    }

    /// Paired guests: (VM UUID, guest host, switches applied late,
    /// switches dropped).
    pub fn guest_pairs(&self) -> Vec<(String, String, u64, u64)> {
        self.guests
            .iter()
            .map(|g| {
                (
                    g.uuid.clone(),
                    g.feed.label.clone(),
                    g.late,
                    g.feed.dropped.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Adds `n` lost events on `cpu`.
    pub fn note_lost(&mut self, cpu: u32, n: u64) {
        let c = cpu as usize;
        if cpu >= MAX_CPUS {
            self.bad_cpu += 1;
            return;
        }
        if self.lost.len() <= c {
            self.lost.resize(c + 1, 0);
        }
        self.lost[c] = self.lost[c].saturating_add(n);
    }

    /// Forgets thread names no longer in the window, and VMs gone for
    /// longer than the grace period (call it now and then).
    pub fn prune(&mut self) {
        self.window.prune();
        if let Some(now) = self.newest() {
            self.vm.drop_gone(now.saturating_sub(self.vm_grace_ns));
        }
    }

    /// Replaces what the agent says of its VMs (names, UUIDs, vCPU
    /// threads): VMs found already are renamed, and a VM no longer listed
    /// is marked gone.
    pub fn set_vm_hints(&mut self, hints: Vec<strata_analysis::vm::VmHint>) {
        let now = self.newest().or(self.vm.begin()).unwrap_or(0);
        self.vm.set_hints(hints, now);
    }

    /// Events applied so far.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Events waiting in the reorder buffer.
    pub fn waiting(&self) -> usize {
        self.merger.len()
    }

    /// Time of the newest event applied (ns since the epoch), if any.
    pub fn newest(&self) -> Option<i64> {
        self.window.first.map(|_| self.window.now)
    }

    /// The live-latency histogram of this host.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    /// The state system.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// The accumulators.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// The name of syscall id `id`.
    pub fn syscall_name(&self, id: u16) -> &str {
        self.syscall_names.get(id as usize).map_or("unknown", |s| s)
    }

    /// Lost events per CPU.
    pub fn lost(&self) -> &[u64] {
        &self.lost
    }

    /// Events applied out of time order, and events on impossible CPUs.
    pub fn anomalies(&self) -> (u64, u64) {
        (self.merger.late(), self.bad_cpu)
    }

    /// The slices of the threads running now, up to the newest event.
    pub fn running_slices(&self) -> Vec<RunSlice> {
        let mut v = Vec::new();
        if self.window.first.is_some() {
            self.machine.flush(self.window.now, &mut Running(&mut v));
        }
        v
    }
}
