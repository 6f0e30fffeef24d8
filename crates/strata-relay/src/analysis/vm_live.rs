//! The live VM view of a host: the agent's VM hints (QEMU `-name`,
//! `-uuid`, vCPU threads) turned into the VM model's hints, and guest
//! hosts (agents whose Hello carries a `vm_uuid`) paired with their VM for
//! the fused view.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use strata_analysis::vm::hints::{VcpuHint, VmHint};
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
    /// Switches dropped because the queue was full.
    pub dropped: AtomicU64,
}

impl GuestFeed {
    /// A feed for the guest host `label`.
    pub fn new(label: &str) -> GuestFeed {
        GuestFeed {
            label: label.to_string(),
            paired: AtomicBool::new(false),
            queue: Mutex::new(VecDeque::new()),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues one guest event if a host consumes the feed and it is a
    /// switch (the only guest event the fused view reads).
    #[inline]
    pub fn offer(&self, ev: &LiveEvent) {
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
}

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
}
