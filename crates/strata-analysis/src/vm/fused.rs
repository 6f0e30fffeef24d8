//! The fused view: each guest thread's time on its vCPU, split by what the
//! vCPU really did on the host meanwhile. A guest thread the guest thinks is
//! running is only really running while its vCPU runs guest code; the rest
//! of that time the host preempted the vCPU or served an exit.

use serde::Serialize;

use crate::event::{Comm, Tid};
use crate::hash::{int_map, IntMap};

use super::model::{VcpuState, STATES};

/// Guest time to host time: `host = guest + offset_ns + (guest - anchor_ns)
/// * drift_ppb / 1e9`. The identity until strata-sync provides one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClockTransform {
    /// Where the drift is measured from, guest ns.
    pub anchor_ns: i64,
    /// Host minus guest at the anchor, ns.
    pub offset_ns: i64,
    /// Rate difference, parts per billion.
    pub drift_ppb: i64,
}

impl ClockTransform {
    /// The host time of guest time `t`.
    #[inline]
    pub fn apply(&self, t: i64) -> i64 {
        let drift = (i128::from(t - self.anchor_ns) * i128::from(self.drift_ppb)) / 1_000_000_000;
        t.saturating_add(self.offset_ns)
            .saturating_add(drift as i64)
    }

    /// The guest time of host time `h` (the inverse of [`apply`], to a ns
    /// for any drift a clock can have).
    ///
    /// [`apply`]: ClockTransform::apply
    pub fn invert(&self, h: i64) -> i64 {
        let mut g = h.saturating_sub(self.offset_ns);
        // Each correction shrinks the error by the drift rate (ppm): two
        // leave well under a ns.
        for _ in 0..2 {
            g = g.saturating_sub(self.apply(g).saturating_sub(h));
        }
        g
    }
}

#[cfg(test)]
mod transform_tests {
    use super::ClockTransform;

    #[test]
    fn invert_undoes_apply() {
        let t = ClockTransform {
            anchor_ns: 1_795_710_000_000_000_000,
            offset_ns: 346_621_109,
            drift_ppb: -7_319,
        };
        for g in [
            t.anchor_ns,
            t.anchor_ns + 30_000_000_000,
            t.anchor_ns - 5_000_000_000,
        ] {
            assert!((t.invert(t.apply(g)) - g).abs() <= 1, "{g}");
        }
        assert_eq!(ClockTransform::default().invert(42), 42);
    }
}

/// The most guest threads kept per guest (others are summed under tid -1).
const MAX_GUEST_THREADS: usize = 65536;

#[derive(Debug, Clone, Copy)]
struct GuestCpu {
    id: u32,
    cur: Option<Tid>,
    since: i64,
    /// The host state of this vCPU since `since`.
    host: VcpuState,
}

/// A guest thread's time, by its vCPU's host state.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct GuestThread {
    pub(super) comm: Comm,
    pub(super) acc: [i64; STATES],
}

/// One guest trace attached to its VM.
#[derive(Debug, Clone)]
pub struct GuestView {
    /// What the guest trace was called (its path or `--guest` name).
    pub label: String,
    /// Guest-to-host clock.
    pub clock: ClockTransform,
    cpus: Vec<GuestCpu>,
    pub(super) threads: IntMap<Tid, GuestThread>,
    /// Guest switches applied.
    pub switches: u64,
    /// How the guest's clock was synced to the host's, when it was: the
    /// driver then has the reader map the guest's timestamps (`clock` stays
    /// the identity so that the map is not applied twice).
    pub sync: Option<super::sync::GuestSyncReport>,
    /// The probe matchers that looked for that sync, when it was not found.
    pub sync_sources: Vec<super::sync::SyncSourceStatus>,
}

impl GuestView {
    /// A view with no event yet.
    pub fn new(label: &str) -> GuestView {
        GuestView {
            label: label.to_string(),
            clock: ClockTransform::default(),
            cpus: Vec::new(),
            threads: int_map(),
            switches: 0,
            sync: None,
            sync_sources: Vec::new(),
        }
    }

    fn cpu(&mut self, id: u32) -> Option<usize> {
        if let Some(i) = self.cpus.iter().position(|c| c.id == id) {
            return Some(i);
        }
        if self.cpus.len() >= 4096 {
            return None;
        }
        self.cpus.push(GuestCpu {
            id,
            cur: None,
            since: i64::MIN,
            host: VcpuState::Unknown,
        });
        Some(self.cpus.len() - 1)
    }

    fn credit(&mut self, i: usize, ts: i64) {
        let c = self.cpus[i];
        let Some(tid) = c.cur else {
            self.cpus[i].since = ts.max(c.since);
            return;
        };
        let d = ts - c.since;
        if d > 0 && c.since != i64::MIN {
            let key = if self.threads.len() >= MAX_GUEST_THREADS && !self.threads.contains_key(&tid)
            {
                -1
            } else {
                tid
            };
            self.threads.entry(key).or_default().acc[c.host as usize] += d;
        }
        self.cpus[i].since = ts.max(c.since);
    }

    /// vCPU `id` was in host state `old` until `ts`, and is in `new` from then.
    pub(super) fn host_changed(&mut self, id: u32, ts: i64, old: VcpuState, new: VcpuState) {
        let Some(i) = self.cpu(id) else {
            return;
        };
        self.cpus[i].host = old;
        self.credit(i, ts);
        self.cpus[i].host = new;
    }

    /// The guest switched to `next` on its CPU `id` at host time `ts`,
    /// while the vCPU is in host state `host`.
    pub(super) fn switch(&mut self, id: u32, ts: i64, host: VcpuState, next: Tid, comm: &[u8]) {
        let Some(i) = self.cpu(id) else {
            return;
        };
        self.credit(i, ts);
        self.cpus[i].cur = Some(next);
        self.cpus[i].host = host;
        self.switches += 1;
        let t = self.threads.entry(next).or_default();
        if !comm.is_empty() {
            t.comm = Comm::new(comm);
        }
    }

    /// Credits every guest CPU's current thread up to `ts`.
    pub(super) fn flush(&mut self, ts: i64) {
        for i in 0..self.cpus.len() {
            self.credit(i, ts);
        }
    }
}
