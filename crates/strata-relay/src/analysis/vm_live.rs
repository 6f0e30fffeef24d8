//! The live VM view of a host: the agent's VM hints (QEMU `-name`,
//! `-uuid`, vCPU threads) turned into the VM model's hints, and guest
//! hosts (agents whose Hello carries a `vm_uuid`) paired with their VM for
//! the fused view.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use strata_analysis::vm::hints::{VcpuHint, VmHint};
use strata_analysis::vm::sync::{GuestSync, GuestSyncReport, HostSource};
use strata_analysis::vm::ClockTransform;
use strata_wire::VmHints;

use super::event::{LiveEvent, LiveKind};
use crate::registry::lock;

/// The model's hints from a `VmHints` message (empty strings and pid 0
/// mean "not known").
pub fn hints_from_wire(h: &VmHints) -> Vec<VmHint> {
    h.vms
        .iter()
        .map(|vm| VmHint {
            name: (!vm.name.is_empty()).then(|| vm.name.clone()),
            uuid: (!vm.uuid.is_empty()).then(|| vm.uuid.to_ascii_lowercase()),
            qemu_pid: (vm.qemu_pid > 0).then_some(vm.qemu_pid),
            vcpus: vm
                .vcpus
                .iter()
                .filter(|v| v.tid > 0)
                .map(|v| VcpuHint {
                    id: v.id,
                    tid: v.tid,
                })
                .collect(),
        })
        .collect()
}

/// The most guest switches waiting for their host's model, per guest
/// (older ones are dropped and counted): memory stays bounded when the
/// host's analysis falls behind.
pub const GUEST_QUEUE_CAP: usize = 1 << 16;

/// A guest host's `sched_switch` events on their way to the VM model of
/// the host that runs it (paired by the UUID the guest agent sent in its
/// Hello). The guest's analysis pushes them while a host has paired it;
/// the host's analysis takes them at its next drain.
#[derive(Debug)]
pub struct GuestFeed {
    /// The guest's host id, for the report.
    pub label: String,
    /// Set while a host's VM model consumes the feed.
    pub paired: AtomicBool,
    queue: Mutex<VecDeque<LiveEvent>>,
    /// Sync probe readings (guest ns before, after) for the host's clock
    /// sync, in the guest's time order.
    markers: Mutex<VecDeque<(u64, u64)>>,
    /// Switches dropped because the queue was full.
    pub dropped: AtomicU64,
    /// The guest-to-host clock its host's sync last set (`None` before):
    /// snapshots convert their instant through it.
    pub clock: Mutex<Option<ClockTransform>>,
}

impl GuestFeed {
    /// A feed for the guest host `label`.
    pub fn new(label: &str) -> GuestFeed {
        GuestFeed {
            label: label.to_string(),
            paired: AtomicBool::new(false),
            queue: Mutex::new(VecDeque::new()),
            markers: Mutex::new(VecDeque::new()),
            dropped: AtomicU64::new(0),
            clock: Mutex::new(None),
        }
    }

    /// Queues one guest event if a host consumes the feed and it is a
    /// switch (the only guest event the fused view reads) or a sync probe
    /// marker (for the host's clock sync).
    #[inline]
    pub fn offer(&self, ev: &LiveEvent) {
        if let LiveKind::SyncMarker { before, after } = ev.kind {
            if self.paired.load(Ordering::Relaxed) {
                let mut q = lock(&self.markers);
                if q.len() >= MARKER_QUEUE_CAP {
                    q.pop_front();
                }
                q.push_back((before, after));
            }
            return;
        }
        if !matches!(ev.kind, LiveKind::Switch { .. }) || !self.paired.load(Ordering::Relaxed) {
            return;
        }
        let mut q = lock(&self.queue);
        if q.len() >= GUEST_QUEUE_CAP {
            q.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(*ev);
    }

    /// Moves every queued event into `out`.
    pub fn take_into(&self, out: &mut VecDeque<LiveEvent>) {
        let mut q = lock(&self.queue);
        out.extend(q.drain(..));
        while out.len() > GUEST_QUEUE_CAP {
            out.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands every queued sync marker to `f`, oldest first.
    pub fn take_markers(&self, mut f: impl FnMut(u64, u64)) {
        let mut q = lock(&self.markers);
        for (b, a) in q.drain(..) {
            f(b, a);
        }
    }
}

/// The most sync markers waiting per guest: probes come every few ms at
/// most, and the host takes them at every drain.
pub const MARKER_QUEUE_CAP: usize = 4096;

/// The guests that stream to this relay, by VM UUID (lowercase).
pub type GuestFeeds = Mutex<HashMap<String, Arc<GuestFeed>>>;

/// A guest paired with one of a host's VMs.
#[derive(Debug)]
pub struct GuestLink {
    /// The VM's UUID.
    pub uuid: String,
    /// Where its switches come from.
    pub feed: Arc<GuestFeed>,
    /// Guest to host time; the identity until clock sync sets one
    /// ([`crate::analysis::LiveHost::set_guest_clock`]).
    pub clock: ClockTransform,
    /// Taken from the feed, not yet applied (later than the host's events).
    pub pending: VecDeque<LiveEvent>,
    /// Switches applied after host events of a later time (their vCPU
    /// state is the one at arrival, not at their time).
    pub late: u64,
    /// The clock sync from the guest's probe markers and the host events
    /// of its vCPU threads that may carry them.
    pub sync: GuestSync,
    /// New probes or host events since the last report.
    pub sync_dirty: bool,
    /// Host events that may carry probes, held until the guest's markers
    /// of about their time arrived (see [`release_host_sync`]).
    pub host_sync: VecDeque<(HostSource, i64)>,
    /// The newest probe reading of the guest (its ns), `i64::MIN` before.
    pub guest_sync_ns: i64,
    /// The latest sync, whose transform `clock` is.
    pub sync_report: Option<GuestSyncReport>,
}

/// The host event a guest's sync probe may show up as: a write by one of
/// its vCPU threads (TCG's debug console) or a port write exit (KVM).
#[inline]
pub fn host_sync_source(kind: &LiveKind) -> Option<HostSource> {
    match *kind {
        LiveKind::WriteEntry { fd, .. } => Some(HostSource::Fd(fd)),
        LiveKind::KvmPio { write: true, port } => Some(HostSource::Port(port)),
        _ => None,
    }
}

/// Host events that may carry sync probes of VMs (by UUID) no guest is
/// paired with yet: a guest's stream can lag its host's by seconds, so
/// its probes' host events come before the guest pairs.
pub type UnpairedSync = Vec<(String, VecDeque<(HostSource, i64)>)>;

/// Queues a host event that may carry a sync probe (`src`) for the guest
/// paired with the VM whose vCPU thread made it, or for the guest of that
/// VM's UUID still to pair (`unpaired`).
#[inline]
pub fn feed_host_sync(
    model: &strata_analysis::vm::VmModel,
    guests: &mut [GuestLink],
    unpaired: &mut UnpairedSync,
    ev: &LiveEvent,
    src: HostSource,
) {
    let Some(vm) = model.vcpu_of_thread(ev.tid).map(|v| v.vm) else {
        return;
    };
    let q = match guests
        .iter_mut()
        .find(|g| model.find_vm(&g.uuid) == Some(vm))
    {
        Some(g) => &mut g.host_sync,
        None => {
            let Some(uuid) = model.vms().get(vm).and_then(|v| v.uuid.as_deref()) else {
                return;
            };
            let i = match unpaired.iter().position(|(u, _)| u == uuid) {
                Some(i) => i,
                None => {
                    unpaired.push((uuid.to_string(), VecDeque::new()));
                    unpaired.len() - 1
                }
            };
            &mut unpaired[i].1
        }
    };
    if q.len() >= HOST_SYNC_QUEUE_CAP {
        q.pop_front();
    }
    q.push_back((src, ev.ts));
}

/// Host events held per guest for its sync, at most.
pub const HOST_SYNC_QUEUE_CAP: usize = 8192;

/// How far (ns) host events may run ahead of the guest's newest probe when
/// fed to its sync. The matcher gives up on a source with hundreds more
/// host events than probes, and a guest's stream (over a serial line, say)
/// can lag its host's by seconds: held back, the two sides reach the
/// matcher about in time order, as `vm report`'s merge by time feeds it.
/// Both sides' times are their own Unix ns, about a second apart under
/// QEMU TCG; a guest clock more than this behind its host's (before the
/// first estimate) does not sync live.
pub const HOST_SYNC_LEAD_NS: i64 = 2_000_000_000;

/// Feeds guest `g`'s sync the held host events no later than its newest
/// probe (in host time, once synced) plus [`HOST_SYNC_LEAD_NS`]. Held
/// events beyond [`HOST_SYNC_QUEUE_CAP`] were dropped, oldest first: fed
/// all at once they would run too far ahead of the probes for the matcher.
pub fn release_host_sync(g: &mut GuestLink) {
    let limit = if g.guest_sync_ns == i64::MIN {
        i64::MIN
    } else {
        g.clock
            .apply(g.guest_sync_ns)
            .saturating_add(HOST_SYNC_LEAD_NS)
    };
    while let Some(&(src, ts)) = g.host_sync.front() {
        if ts > limit {
            break;
        }
        g.host_sync.pop_front();
        // The host's raw clock is not kept per event: the slope-free hull
        // applies, not the TSC method.
        g.sync.host_event(src, ts, 0, 0);
        g.sync_dirty = true;
    }
}

/// Sets guest `g`'s guest-to-host clock: for its switches, for its VM's
/// fused view in `model`, and on its feed, for snapshots.
pub fn set_clock(model: &mut strata_analysis::vm::VmModel, g: &mut GuestLink, t: ClockTransform) {
    g.clock = t;
    *lock(&g.feed.clock) = Some(t);
    if let Some(i) = model.find_vm(&g.uuid) {
        model.set_guest_clock(i, t);
    }
}

/// Applies one guest switch to the fused view of its VM in `model`.
pub fn apply_guest(model: &mut strata_analysis::vm::VmModel, g: &GuestLink, ev: &LiveEvent) {
    if let Some(vm) = model.find_vm(&g.uuid) {
        model.handle_guest(vm, ev.ts, ev.cpu, &ev.kind.to_vm());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{LiveConfig, LiveHost};
    use strata_analysis::event::Comm;

    fn switch(ts: i64, prev: (i32, &[u8], i64), next: (i32, &[u8])) -> LiveEvent {
        LiveEvent {
            ts,
            arrived: ts,
            cpu: 0,
            tid: prev.0,
            kind: LiveKind::Switch {
                prev_tid: prev.0,
                prev_comm: Comm::new(prev.1),
                prev_prio: None,
                prev_state: prev.2,
                next_tid: next.0,
                next_comm: Comm::new(next.1),
                next_prio: None,
            },
        }
    }

    fn feed_and_drain(h: &mut LiveHost, evs: &[LiveEvent]) {
        for e in evs {
            h.push(*e);
        }
        h.drain(i64::MAX, true, None);
    }

    /// A guest streaming with its VM's UUID is paired by the hints' UUID;
    /// its thread's time on the vCPU is split by the vCPU's host state,
    /// in time order even though the guest's events arrive after the
    /// host's of the same time.
    #[test]
    fn a_guest_is_paired_by_uuid_and_fused_live() {
        let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let feeds: GuestFeeds = Default::default();
        let feed = Arc::new(GuestFeed::new("guest1"));
        lock(&feeds).insert(uuid.into(), Arc::clone(&feed));
        let mut host = LiveHost::new(LiveConfig::default(), Vec::new());
        let mut guest = LiveHost::new(LiveConfig::default(), Vec::new());
        guest.set_guest_feed(Arc::clone(&feed));
        const VCPU: &[u8] = b"CPU 0/TCG";
        feed_and_drain(
            &mut host,
            &[switch(1000, (0, b"swapper/0", 0), (101, VCPU))],
        );
        // Not paired yet: the guest's switches are not kept.
        feed_and_drain(
            &mut guest,
            &[switch(900, (0, b"swapper/0", 0), (5, b"early"))],
        );
        assert!(!feed.paired.load(Ordering::Relaxed));
        host.set_vm_hints(hints_from_wire(&VmHints {
            vms: vec![strata_wire::VmHintEntry {
                name: "web1".into(),
                uuid: uuid.to_ascii_uppercase(),
                qemu_pid: 0,
                vcpus: vec![strata_wire::VcpuThread { id: 0, tid: 101 }],
            }],
        }));
        host.pair_guests(&feeds);
        assert!(feed.paired.load(Ordering::Relaxed));
        // The guest runs its thread 7 from 1500; the host preempts the
        // vCPU 2000..3000 with a host thread.
        feed_and_drain(
            &mut guest,
            &[switch(1500, (0, b"swapper/0", 0), (7, b"work"))],
        );
        feed_and_drain(
            &mut host,
            &[
                switch(2000, (101, VCPU, 0), (300, b"hog")),
                switch(3000, (300, b"hog", 0), (101, VCPU)),
                switch(4000, (101, VCPU, 1), (0, b"swapper/0")),
            ],
        );
        let r = host.vms_report("hv", 10);
        let vm = &r.vms[0];
        assert_eq!(vm.name, "web1");
        let g = vm.guest.as_ref().expect("a fused view");
        assert_eq!(g.trace, "host guest1");
        assert_eq!(g.paired_by, "uuid");
        let t = g
            .threads
            .iter()
            .find(|t| t.tid == 7)
            .expect("guest thread 7");
        assert_eq!(t.guest_running_ns, 4000 - 1500);
        assert_eq!(t.really_running_ns, 500 + 1000);
        assert_eq!(t.preempted_ns, 1000);
        assert!(g.threads.iter().all(|t| t.tid != 5), "unpaired switch kept");
        assert_eq!(host.guest_pairs()[0].2, 0, "nothing was late");
        // A switch older than the host's newest event is applied late.
        feed_and_drain(&mut guest, &[switch(3500, (7, b"work", 1), (8, b"late"))]);
        feed_and_drain(
            &mut host,
            &[switch(5000, (0, b"swapper/0", 0), (101, VCPU))],
        );
        assert_eq!(host.guest_pairs()[0].2, 1);
        // The clock hook shifts later guest times.
        assert!(host.set_guest_clock(
            uuid,
            ClockTransform {
                offset_ns: 7,
                ..ClockTransform::default()
            }
        ));
        let r = host.vms_report("hv", 10);
        assert_eq!(r.vms[0].guest.as_ref().unwrap().clock_offset_ns, 7);
    }

    /// The relay syncs a paired guest's clock live from its probe markers
    /// and its vCPU thread's debug console writes: a known offset and
    /// drift are recovered within the bound the sync reports, the guest
    /// clock is set from it, and a busier descriptor of the same thread
    /// is not taken for the probes'.
    #[test]
    fn a_paired_guest_clock_is_synced_live_from_its_probes() {
        let uuid = "6c1b4c3e-8a3f-4f0e-9d2a-1b2c3d4e5f60";
        let feeds: GuestFeeds = Default::default();
        let feed = Arc::new(GuestFeed::new("g1"));
        lock(&feeds).insert(uuid.into(), Arc::clone(&feed));
        let mut host = LiveHost::new(LiveConfig::default(), Vec::new());
        let mut guest = LiveHost::new(LiveConfig::default(), Vec::new());
        guest.set_guest_feed(Arc::clone(&feed));
        const VCPU: &[u8] = b"CPU 0/TCG";
        let h0: i64 = 1_760_000_000_000_000_000;
        feed_and_drain(&mut host, &[switch(h0, (0, b"swapper/0", 0), (101, VCPU))]);
        host.set_vm_hints(hints_from_wire(&VmHints {
            vms: vec![strata_wire::VmHintEntry {
                name: "g1vm".into(),
                uuid: uuid.into(),
                qemu_pid: 0,
                vcpus: vec![strata_wire::VcpuThread { id: 0, tid: 101 }],
            }],
        }));
        host.pair_guests(&feeds);
        assert!(feed.paired.load(Ordering::Relaxed));
        // Guest clock behind by ~1.2 s and slower by 40 ppm.
        let g0: i64 = h0 - 1_200_000_123;
        let true_host = |g: i64| h0 + 1_000_000 + (g - g0) + (g - g0) * 40 / 1_000_000;
        let ev = |ts: i64, tid: i32, kind: LiveKind| LiveEvent {
            ts,
            arrived: ts,
            cpu: 0,
            tid,
            kind,
        };
        let probe_at = |k: i64| g0 + k * 6_500_000 + (k * k * 7919 % 3_000_000) - 1_500_000;
        const PROBES: i64 = 240;
        const WIDTH: i64 = 3_000;
        let mut rng = 0x5eed_u64;
        for chunk in 0..4 {
            let (mut gev, mut hev) = (Vec::new(), Vec::new());
            for k in chunk * PROBES / 4..(chunk + 1) * PROBES / 4 {
                // Probes 3.5 to 9.5 ms apart (periodic ones would pair as well
                // shifted by whole periods); the write lands at a varying
                // point between the two readings.
                let g = probe_at(k);
                let before = g as u64;
                let after = (g + WIDTH) as u64;
                gev.push(ev(g, 50, LiveKind::SyncMarker { before, after }));
                let at = g + 200 + (k * 104_729 % (WIDTH - 400));
                hev.push(ev(
                    true_host(at),
                    101,
                    LiveKind::WriteEntry { id: 1, fd: 12 },
                ));
                // The same thread writes another file as often, at times
                // unrelated to the probes (a pseudo-random sequence).
                for _ in 0..2 {
                    rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let t = true_host(g) + (rng >> 33) as i64 % 5_000_000;
                    hev.push(ev(t, 101, LiveKind::WriteEntry { id: 20, fd: 7 }));
                }
                // Writes of threads that are no vCPU are no probes.
                hev.push(ev(
                    true_host(at) + 10,
                    300,
                    LiveKind::WriteEntry { id: 1, fd: 12 },
                ));
            }
            hev.sort_by_key(|e| e.ts);
            feed_and_drain(&mut guest, &gev);
            feed_and_drain(&mut host, &hev);
        }
        let r = host.vms_report("hv", 10);
        let g = r.vms[0].guest.as_ref().expect("a fused view");
        let sync = g.sync.as_ref().expect("a live sync");
        assert_eq!(sync.source, "fd 12");
        assert_eq!(sync.guest_probes, PROBES as u64);
        assert!(sync.paired >= PROBES as u64 - 10, "{sync:?}");
        assert!(
            sync.bound_ns > 0.0 && sync.bound_ns < WIDTH as f64,
            "{sync:?}"
        );
        assert!((sync.drift_ppm - 40.0).abs() < 1.0, "{sync:?}");
        assert_eq!(g.clock_offset_ns, sync.offset_ns);
        let t = sync.transform();
        for k in [0, PROBES / 3, PROBES - 1] {
            let gt = probe_at(k) + 1_234;
            let err = (t.apply(gt) - true_host(gt)).abs() as f64;
            assert!(
                err <= sync.bound_ns + 1.0,
                "error {err} ns at probe {k}: {sync:?}"
            );
        }
    }
}
