//! Guest-to-host clock sync from the traces themselves.
//!
//! The guest's probe (`strata testbed-probe`) reads the TSC, writes to an
//! I/O port, reads the TSC again, and writes both readings into the guest
//! trace as a `trace_marker` line, `strata-sync SEQ BEFORE AFTER` (an
//! `ftrace:print` event). The host trace shows the port write as the vCPU
//! thread's `write`/`writev` on the debug console's file (QEMU TCG) or as
//! `kvm_pio` on the port (KVM). [`GuestSync`] takes both sides one event at
//! a time and keeps a [`ProbeSync`] per host source (descriptor or port) of
//! the VM's vCPU threads; the source whose events pair with the probes is
//! the probes' one. Pure arithmetic on timestamps: the relay can feed it
//! live, `vm report` feeds it from files.

use std::collections::VecDeque;

use serde::Serialize;
use strata_sync::{GuestProbe, ProbeSync, SyncEstimate};

use super::fused::ClockTransform;

/// Host events at most this far from a probe (after the offset is known)
/// are its own, ns. The probe makes one write per 20 ms.
pub const PAIR_WINDOW_NS: u64 = 2_000_000;

/// Host sources (descriptors, ports) followed per guest.
const MAX_SOURCES: usize = 16;
/// Recent guest probes replayed into a source seen late: enough for the
/// host trace to lag the guest's by seconds in a merge by raw time.
const RECENT: usize = 512;

/// A host event that may be a probe's port write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostSource {
    /// A `write`/`writev`/`pwritev` on this descriptor (QEMU TCG's
    /// isa-debugcon writes each byte to its chardev).
    Fd(i64),
    /// A `kvm_pio` write to this port (KVM).
    Port(u32),
}

impl std::fmt::Display for HostSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostSource::Fd(fd) => write!(f, "fd {fd}"),
            HostSource::Port(p) => write!(f, "port 0x{p:x}"),
        }
    }
}

/// Reads a probe marker, `strata-sync SEQ BEFORE AFTER` (trailing newline
/// or NUL allowed): the guest clock values before and after the write.
pub fn parse_marker(buf: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(buf).ok()?;
    let mut it = text
        .trim_end_matches(['\n', '\0'])
        .strip_prefix("strata-sync ")?
        .split(' ');
    let _seq: u64 = it.next()?.parse().ok()?;
    let before: u64 = it.next()?.parse().ok()?;
    let after: u64 = it.next()?.parse().ok()?;
    if it.next().is_some() || after < before {
        return None;
    }
    Some((before, after))
}

/// The sync of one guest with its host, as the report gives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuestSyncReport {
    /// `probes`: the convex hull over the probe pairs.
    pub method: &'static str,
    /// The host events that carried the probes (`fd 12`, `port 0x4e8`).
    pub source: String,
    /// Guest probes read.
    pub guest_probes: u64,
    /// Host events of that source read.
    pub host_events: u64,
    /// Probes paired with a host event.
    pub paired: u64,
    /// Host minus guest time at `anchor_ns`, ns.
    pub offset_ns: i64,
    /// Guest time (ns, its own clock) the offset is given at: the first pair.
    pub anchor_ns: i64,
    /// Host ns per guest ns.
    pub slope: f64,
    /// `(slope - 1) · 10⁶`.
    pub drift_ppm: f64,
    /// The true host time of any guest instant within the probes' span is
    /// within ± this of the transform's, ns.
    pub bound_ns: f64,
    /// With both traces on cycle clocks (`x86-tsc`): guest clock minus
    /// host clock at the anchor, in cycles (`guest_tsc = host_tsc + this`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsc_offset_cycles: Option<f64>,
    /// `bound_ns` in host cycles, with `tsc_offset_cycles`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_cycles: Option<f64>,
}

impl GuestSyncReport {
    /// The transform as the fused view and the trace merge apply it.
    pub fn transform(&self) -> ClockTransform {
        ClockTransform {
            anchor_ns: self.anchor_ns,
            offset_ns: self.offset_ns,
            drift_ppb: ((self.slope - 1.0) * 1e9).round() as i64,
        }
    }
}

/// A raw clock value and the ns the trace gives it: to convert others.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockRef {
    /// Raw value.
    pub cycles: u64,
    /// Its Unix ns.
    pub ns: i64,
    /// Clock rate, Hz.
    pub freq: u64,
}

impl ClockRef {
    /// The ns of raw value `c` on this clock.
    pub fn ns_of(&self, c: u64) -> i64 {
        let d = (i128::from(c) - i128::from(self.cycles)) * 1_000_000_000 / i128::from(self.freq);
        (i128::from(self.ns) + d).clamp(i64::MIN.into(), i64::MAX.into()) as i64
    }
    /// The raw value at `ns + frac` ns (fractional; exact for large `ns`).
    pub fn cycles_at(&self, ns: i64, frac: f64) -> f64 {
        let d = (i128::from(ns) - i128::from(self.ns)) as f64 + frac;
        self.cycles as f64 + d * self.freq as f64 / 1e9
    }
}

/// One guest's probes and the host sources they may pair with.
#[derive(Debug, Clone, Default)]
pub struct GuestSync {
    sources: Vec<(HostSource, ProbeSync)>,
    recent: VecDeque<GuestProbe>,
    probes: u64,
    guest_ref: Option<ClockRef>,
    host_ref: Option<ClockRef>,
}

impl GuestSync {
    /// No probe yet.
    pub fn new() -> GuestSync {
        GuestSync::default()
    }

    /// A guest probe, its readings already in guest ns.
    pub fn guest_probe(&mut self, before_ns: u64, after_ns: u64) {
        if after_ns < before_ns {
            return;
        }
        self.probes += 1;
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(GuestProbe {
            before: before_ns,
            after: after_ns,
        });
        for (_, s) in &mut self.sources {
            s.guest_probe(before_ns, after_ns);
        }
    }

    /// A guest probe marker at trace time `ts_ns`, raw clock `cycles`, on a
    /// clock of `freq` Hz, carrying raw readings `before`, `after`: the
    /// readings are converted with the event's own (raw, ns) pair.
    pub fn guest_marker(&mut self, ts_ns: i64, cycles: u64, freq: u64, before: u64, after: u64) {
        if freq == 0 {
            return;
        }
        let r = ClockRef {
            cycles,
            ns: ts_ns,
            freq,
        };
        self.guest_ref = Some(r);
        let (b, a) = (r.ns_of(before), r.ns_of(after));
        if let (Ok(b), Ok(a)) = (u64::try_from(b), u64::try_from(a)) {
            self.guest_probe(b, a);
        }
    }

    /// A host event of `source` by one of this guest's vCPU threads, at
    /// host time `ts_ns` (raw value `cycles` of a `freq` Hz clock, for the
    /// TSC offset; `freq` 0 when unknown).
    pub fn host_event(&mut self, source: HostSource, ts_ns: i64, cycles: u64, freq: u64) {
        let Ok(t) = u64::try_from(ts_ns) else {
            return;
        };
        let i = match self.sources.iter().position(|(k, _)| *k == source) {
            Some(i) => i,
            None => {
                if self.sources.len() >= MAX_SOURCES {
                    return;
                }
                let mut s = ProbeSync::new(PAIR_WINDOW_NS);
                for g in &self.recent {
                    s.guest_probe(g.before, g.after);
                }
                self.sources.push((source, s));
                self.sources.len() - 1
            }
        };
        self.sources[i].1.host_probe(t);
        if freq > 0 {
            self.host_ref = Some(ClockRef {
                cycles,
                ns: ts_ns,
                freq,
            });
        }
    }

    /// Guest probes read so far.
    pub fn probes(&self) -> u64 {
        self.probes
    }

    /// The best source's transform and bound: the most pairs, among those
    /// that give an estimate.
    pub fn report(&self) -> Option<GuestSyncReport> {
        let (src, s, e): (&HostSource, &ProbeSync, SyncEstimate) = self
            .sources
            .iter()
            .filter(|(_, s)| !s.is_dead())
            .filter_map(|(k, s)| Some((k, s, s.estimate().ok()?)))
            .max_by_key(|(_, s, _)| s.stats().paired)?;
        let st = s.stats();
        let (g0, h0) = e.anchor;
        let anchor_ns = i64::try_from(g0).ok()?;
        // Differences first: the clocks' values near 2^60 ns do not fit
        // an f64 to the ns.
        let offset = (i128::from(h0) - i128::from(g0)) as f64 + e.anchor_offset;
        let slope = e.transform.slope;
        let tsc = match (self.guest_ref, self.host_ref) {
            (Some(g), Some(h)) if g.freq != 1_000_000_000 && h.freq != 1_000_000_000 => {
                let gc = g.cycles_at(anchor_ns, 0.0);
                let hc = h.cycles_at(anchor_ns, offset);
                Some((gc - hc, e.bound * h.freq as f64 / 1e9))
            }
            _ => None,
        };
        Some(GuestSyncReport {
            method: "probes",
            source: src.to_string(),
            guest_probes: self.probes,
            host_events: st.host,
            paired: st.paired,
            offset_ns: offset.round() as i64,
            anchor_ns,
            slope,
            drift_ppm: (slope - 1.0) * 1e6,
            bound_ns: e.bound,
            tsc_offset_cycles: tsc.map(|t| t.0),
            bound_cycles: tsc.map(|t| t.1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        assert_eq!(parse_marker(b"strata-sync 3 100 250\n"), Some((100, 250)));
        assert_eq!(parse_marker(b"strata-sync 3 100 250\n\0"), Some((100, 250)));
        assert_eq!(parse_marker(b"strata-sync 3 300 250\n"), None);
        assert_eq!(parse_marker(b"strata-sync 3 100\n"), None);
        assert_eq!(parse_marker(b"strata-sync 3 100 250 7\n"), None);
        assert_eq!(parse_marker(b"hello 3 100 250\n"), None);
        assert_eq!(parse_marker(&[0xff, 0xfe]), None);
    }

    #[test]
    fn clock_refs_convert_both_ways() {
        let r = ClockRef {
            cycles: 1_000_000,
            ns: 5_000_000_000,
            freq: 2_000_000_000,
        };
        assert_eq!(r.ns_of(3_000_000), 5_001_000_000);
        assert_eq!(r.ns_of(0), 4_999_500_000);
        assert_eq!(r.cycles_at(5_001_000_000, 0.5), 3_000_001.0);
    }

    /// A TCG-like guest: guest TSC = host TSC + C, both at 2 GHz, each
    /// trace converting with its own clock offset; the host sees the probe
    /// writes on fd 9 and a busy serial stream on fd 7.
    #[test]
    fn finds_the_probe_source_and_the_tsc_constant() {
        let c: i64 = -3_000_000_000_000;
        let f = 2_000_000_000u64;
        let host_ns = |cyc: u64| 1_700_000_000_000_000_000i64 + (cyc / 2) as i64;
        let guest_ns = |cyc: u64| 1_700_000_000_400_000_000i64 + (cyc / 2) as i64;
        let mut s = GuestSync::new();
        let mut seed = 7u64;
        let mut rand = move |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        let mut h = 10_000_000_000_000u64;
        for _ in 0..200 {
            h += 40_000_000 + rand(1_000_000);
            // The serial stream: a write every 20 µs around the probe.
            for k in 0..100 {
                let t = h - 1_000_000 + k * 40_000;
                s.host_event(HostSource::Fd(7), host_ns(t), t, f);
            }
            let span = 10_000 + rand(50_000);
            let lag = 1 + rand(span - 1);
            let before = (h as i64 - lag as i64 + c) as u64;
            let after = before + span;
            s.host_event(HostSource::Fd(9), host_ns(h), h, f);
            let marker_cyc = after + 3_000;
            s.guest_marker(guest_ns(marker_cyc), marker_cyc, f, before, after);
        }
        let r = s.report().expect("synced");
        assert_eq!(r.source, "fd 9");
        assert_eq!(r.paired, 200);
        let got = r.tsc_offset_cycles.unwrap();
        assert!(
            (got - c as f64).abs() <= r.bound_cycles.unwrap() + 2.0,
            "{r:?}"
        );
        assert!(r.bound_ns < 10_000.0, "{r:?}");
        // host ns = guest ns - 400 ms + C/2 ns.
        let want_off = -400_000_000 - c / 2;
        assert!(
            ((r.offset_ns - want_off) as f64).abs() <= r.bound_ns + 2.0,
            "{r:?}"
        );
        assert!(r.drift_ppm.abs() < 1.0, "{r:?}");
    }
}
