//! VM metrics over sliding windows, from the VM analysis' vCPU states.
//!
//! The VM model already keeps, per vCPU, the cumulative time spent in each
//! state. At every evaluation those cumulative times are sampled, summed per
//! VM, into a small ring per VM and window; a window's value is the
//! difference between the newest sample and the newest one at least a
//! window old. This costs nothing per event (the model is not touched on
//! its hot path) and memory is O(VMs × windows × [`RING`]).

use std::collections::BTreeMap;
use std::collections::VecDeque;

use strata_analysis::vm::model::{VcpuState, VmModel, STATES};

use crate::catalog::{Family, VmQuery, VmTrackKey};
use crate::series::BUCKETS;

/// Samples kept per VM and window: one per tenth of the window, and one
/// older than the window.
pub const RING: usize = BUCKETS + 2;
/// The most VMs followed per window; more are not measured.
pub const MAX_VMS: usize = 1024;

/// Cumulative vCPU time per [`VcpuState`], summed over the chosen vCPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSum {
    /// ns per state, indexed by `VcpuState as usize`.
    pub ns: [i64; STATES],
    /// Whether hypervisor time is visible: some vCPU of the sum had a
    /// `kvm_entry`. Otherwise (QEMU TCG) time on a CPU counts as running.
    pub vmm_visible: bool,
}

/// What identifies a VM from one sample to the next: its VMM process, or
/// its name when the process is not known. Names may change (hints arrive
/// later), so they are kept apart from the identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum VmId {
    /// The VMM's process id.
    Pid(i32),
    /// Its name.
    Name(String),
}

/// One VM at one sampling instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmObservation {
    /// Its identity.
    pub id: VmId,
    /// Its name now.
    pub name: String,
    /// Its UUID, when known.
    pub uuid: Option<String>,
    /// Its cumulative vCPU times now.
    pub sum: StateSum,
}

/// The value of a VM family over the state times `d` (a window's
/// difference), `0.0` when the denominator is empty.
///
/// Ratios are against the vCPU time the model knows (every state but
/// `Unknown`: before a vCPU is first seen, after its thread exited), except
/// steal, which is against demand (on a CPU, or waiting for one).
pub fn ratio(family: Family, d: &StateSum) -> f64 {
    let s = |x: VcpuState| d.ns[x as usize].max(0) as f64;
    let on_cpu =
        s(VcpuState::Running) + s(VcpuState::Vmm) + s(VcpuState::VmmUser) + s(VcpuState::OnCpu);
    let preempted = s(VcpuState::Preempted);
    let known = on_cpu + preempted + s(VcpuState::Idle);
    let (num, den) = match family {
        Family::VcpuPreempted => (preempted, known),
        Family::VcpuRunning if d.vmm_visible => (s(VcpuState::Running), known),
        // Under TCG guest and emulator time cannot be told apart.
        Family::VcpuRunning => (s(VcpuState::Running) + s(VcpuState::OnCpu), known),
        Family::VcpuHypervisor => (s(VcpuState::Vmm) + s(VcpuState::VmmUser), known),
        Family::VcpuIdle => (s(VcpuState::Idle), known),
        Family::VmSteal => (preempted, on_cpu + preempted),
        _ => (0.0, 0.0),
    };
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

#[derive(Debug, Clone)]
struct VmRing {
    name: String,
    uuid: Option<String>,
    /// Past samples, oldest first, at least `width` apart.
    samples: VecDeque<(i64, [i64; STATES])>,
    current: (i64, StateSum),
    seen: u64,
}

impl VmRing {
    /// The state times over the window ending at the newest sample.
    fn window(&self, window_ns: i64) -> StateSum {
        let (now, cur) = self.current;
        let base = self
            .samples
            .iter()
            .rev()
            .find(|(t, _)| *t <= now.saturating_sub(window_ns))
            .or(self.samples.front());
        let mut d = StateSum {
            ns: [0; STATES],
            vmm_visible: cur.vmm_visible,
        };
        if let Some((_, b)) = base {
            for (x, (c, b)) in d.ns.iter_mut().zip(cur.ns.iter().zip(b)) {
                *x = c.saturating_sub(*b).max(0);
            }
        }
        d
    }

    fn matches(&self, key: &str) -> bool {
        self.name == key
            || self
                .uuid
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(key))
    }
}

#[derive(Debug, Clone)]
struct Track {
    key: VmTrackKey,
    width: i64,
    vms: BTreeMap<VmId, VmRing>,
}

impl Track {
    fn sample(&mut self, now: i64, tick: u64, obs: &[VmObservation]) {
        for o in obs {
            if !self.vms.contains_key(&o.id) && self.vms.len() >= MAX_VMS {
                continue;
            }
            let r = self.vms.entry(o.id.clone()).or_insert_with(|| VmRing {
                name: String::new(),
                uuid: None,
                samples: VecDeque::with_capacity(RING + 1),
                current: (now, o.sum),
                seen: tick,
            });
            if r.name != o.name {
                r.name.clone_from(&o.name);
            }
            if r.uuid != o.uuid {
                r.uuid.clone_from(&o.uuid);
            }
            // Cumulative times only grow; a drop means the VM's vCPUs
            // changed (one forgotten), so its history no longer compares.
            if now < r.current.0 || o.sum.ns.iter().zip(&r.current.1.ns).any(|(n, p)| n < p) {
                r.samples.clear();
            }
            r.current = (now, o.sum);
            r.seen = tick;
            if r.samples
                .back()
                .is_none_or(|(t, _)| now.saturating_sub(*t) >= self.width)
            {
                r.samples.push_back((now, o.sum.ns));
                if r.samples.len() > RING {
                    r.samples.pop_front();
                }
            }
        }
        // VMs the model no longer has are forgotten with their history.
        self.vms.retain(|_, r| r.seen == tick);
    }
}

/// The VM windows of one host: one track per distinct (vCPU choice,
/// window) that some rule uses.
#[derive(Debug, Clone, Default)]
pub struct VmTracks {
    tracks: Vec<Track>,
    tick: u64,
    scratch: Vec<VmObservation>,
}

impl VmTracks {
    /// Tracks for `keys` (repeats are merged).
    pub fn new(keys: &[VmTrackKey]) -> VmTracks {
        let mut tracks: Vec<Track> = Vec::new();
        for k in keys {
            if tracks.iter().any(|t| t.key == *k) {
                continue;
            }
            tracks.push(Track {
                key: *k,
                width: (k.window_ns / BUCKETS as u64).clamp(1, i64::MAX as u64) as i64,
                vms: BTreeMap::new(),
            });
        }
        VmTracks {
            tracks,
            tick: 0,
            scratch: Vec::new(),
        }
    }

    /// Whether no rule uses a VM metric.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Records the VMs as they are at event time `now`, for the tracks
    /// that choose `vcpu`, from observations made by `observe`.
    pub fn sample_with(
        &mut self,
        now: i64,
        mut observe: impl FnMut(Option<u32>, &mut Vec<VmObservation>),
    ) {
        self.tick += 1;
        for t in &mut self.tracks {
            self.scratch.clear();
            observe(t.key.vcpu, &mut self.scratch);
            t.sample(now, self.tick, &self.scratch);
        }
    }

    /// Records the VMs of `model` as they are at event time `now`.
    pub fn sample(&mut self, model: &VmModel, now: i64) {
        self.sample_with(now, |vcpu, out| observe(model, now, vcpu, out));
    }

    /// The value of `q`, and the VM it is about: the named VM, or with no
    /// `vm=` the VM with the largest value. `(0.0, None)` when no VM matches.
    pub fn value(&self, q: &VmQuery) -> (f64, Option<&str>) {
        let Some(t) = self.tracks.iter().find(|t| t.key == q.track) else {
            return (0.0, None);
        };
        let window = q.track.window_ns.min(i64::MAX as u64) as i64;
        let mut best: Option<(f64, &str)> = None;
        for r in t.vms.values() {
            if q.vm.as_deref().is_some_and(|k| !r.matches(k)) {
                continue;
            }
            let v = ratio(q.family, &r.window(window));
            if best.is_none_or(|(b, _)| v > b) {
                best = Some((v, &r.name));
            }
        }
        best.map_or((0.0, None), |(v, n)| (v, Some(n)))
    }
}

/// Each VM of `model` with its vCPU times at `now`, summed over all its
/// vCPUs or only vCPU `vcpu`, appended to `out`.
pub fn observe(model: &VmModel, now: i64, vcpu: Option<u32>, out: &mut Vec<VmObservation>) {
    let vcpus = model.vcpus();
    for vm in model.vms() {
        let mut sum = StateSum::default();
        for vc in vm.vcpus.iter().filter_map(|&i| vcpus.get(i)) {
            if vcpu.is_some_and(|n| n != vc.id) {
                continue;
            }
            for (s, t) in sum.ns.iter_mut().zip(vc.times_at(now)) {
                *s = s.saturating_add(t);
            }
            sum.vmm_visible |= vc.entries_seen;
        }
        out.push(VmObservation {
            id: vm
                .pid
                .map_or_else(|| VmId::Name(vm.name.clone()), VmId::Pid),
            name: vm.name.clone(),
            uuid: vm.uuid.clone(),
            sum,
        });
    }
}
