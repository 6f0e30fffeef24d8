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
/// are its own, ns. The testbed probe writes every 5 ms (or later).
pub const PAIR_WINDOW_NS: u64 = 1_000_000;

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
    /// `tsc`: both traces on one TSC (`x86-tsc`, guest TSC = host TSC + C,
    /// as under TCG), C measured by the probes: every pair bounds C from
    /// both sides, and the pairs agree (a rate difference would leave no
    /// common C). `hull`: the convex hull over the pairs, slope free.
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
    /// The convex hull's own estimate (slope free), whatever the method:
    /// slope, bound (ns), and with cycle clocks the C it implies.
    pub hull: HullFit,
}

/// The convex hull's fit of the pairs, slope free.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HullFit {
    /// Host ns per guest ns.
    pub slope: f64,
    /// Host minus guest time at the anchor, ns.
    pub offset_ns: i64,
    /// Largest error over the probes' span, ns.
    pub bound_ns: f64,
    /// Guest clock minus host clock at the anchor, cycles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsc_offset_cycles: Option<f64>,
}

/// The range of C (guest cycles minus host cycles) every pair allows.
#[derive(Debug, Clone, Copy)]
struct TscRange {
    lo: f64,
    hi: f64,
    n: u64,
}

/// Cycles the ns round trip of a raw value may be off by.
const ROUND_TRIP_CYCLES: f64 = 4.0;

/// What the probe matcher of one host source was fed and made: a guest
/// with no sync shows here why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncSourceStatus {
    /// The host events followed (`fd 12`, `port 0x4e8`).
    pub source: String,
    /// Guest probes fed.
    pub guest_probes: u64,
    /// Host events of this source fed.
    pub host_events: u64,
    /// Pairs made (since the last reset).
    pub paired: u64,
    /// Pairs refused as contradicting the earlier ones.
    pub rejected: u64,
    /// Times the offset guess was found wrong and dropped.
    pub resets: u64,
    /// Offset guesses made.
    pub guesses: u64,
    /// Given up on: far more host events than probes (a byte stream, not
    /// probes).
    pub given_up: bool,
}

/// One host source followed for a guest.
#[derive(Debug, Clone)]
struct Source {
    key: HostSource,
    sync: ProbeSync,
    tsc: Option<TscRange>,
    /// The matcher's resets the range above has seen: a reset drops the
    /// pairs it was narrowed by.
    resets: u64,
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
    sources: Vec<Source>,
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
        for i in 0..self.sources.len() {
            self.sources[i].sync.guest_probe(before_ns, after_ns);
            self.absorb(i);
        }
    }

    /// Every probe and host event was fed: each source still unsynced
    /// guesses once more from what it holds (see `ProbeSync::finish`).
    pub fn finish(&mut self) {
        for i in 0..self.sources.len() {
            self.sources[i].sync.finish();
            self.absorb(i);
        }
    }

    /// Both clocks count cycles (not ns): the TSC method may apply.
    fn cycle_refs(&self) -> Option<(ClockRef, ClockRef)> {
        let (g, h) = (self.guest_ref?, self.host_ref?);
        (g.freq != 1_000_000_000 && h.freq != 1_000_000_000).then_some((g, h))
    }

    /// Narrows source `i`'s range of C with its new pairs.
    fn absorb(&mut self, i: usize) {
        let refs = self.cycle_refs();
        let src = &mut self.sources[i];
        let resets = src.sync.stats().resets;
        if resets != src.resets {
            src.resets = resets;
            src.tsc = None;
        }
        for (g, t) in src.sync.take_pairs() {
            let Some((gr, hr)) = refs else { continue };
            let Ok(t) = i64::try_from(t) else { continue };
            let (Ok(b), Ok(a)) = (i64::try_from(g.before), i64::try_from(g.after)) else {
                continue;
            };
            let h = hr.cycles_at(t, 0.0);
            let lo = gr.cycles_at(b, 0.0) - h - ROUND_TRIP_CYCLES;
            let hi = gr.cycles_at(a, 0.0) - h + ROUND_TRIP_CYCLES;
            let r = src.tsc.get_or_insert(TscRange {
                lo: f64::NEG_INFINITY,
                hi: f64::INFINITY,
                n: 0,
            });
            r.lo = r.lo.max(lo);
            r.hi = r.hi.min(hi);
            r.n += 1;
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
        if freq > 0 {
            self.host_ref = Some(ClockRef {
                cycles,
                ns: ts_ns,
                freq,
            });
        }
        let i = match self.sources.iter().position(|s| s.key == source) {
            Some(i) => i,
            None => {
                if self.sources.len() >= MAX_SOURCES {
                    return;
                }
                let mut s = ProbeSync::new(PAIR_WINDOW_NS);
                for g in &self.recent {
                    s.guest_probe(g.before, g.after);
                }
                self.sources.push(Source {
                    key: source,
                    sync: s,
                    tsc: None,
                    resets: 0,
                });
                self.sources.len() - 1
            }
        };
        self.sources[i].sync.host_probe(t);
        self.absorb(i);
    }

    /// Per host source followed: what its probe matcher was fed and made.
    pub fn sources(&self) -> Vec<SyncSourceStatus> {
        self.sources
            .iter()
            .map(|s| {
                let st = s.sync.stats();
                SyncSourceStatus {
                    source: s.key.to_string(),
                    guest_probes: st.guest,
                    host_events: st.host,
                    paired: st.paired,
                    rejected: st.rejected,
                    resets: st.resets,
                    guesses: st.guesses,
                    given_up: s.sync.is_dead(),
                }
            })
            .collect()
    }

    /// Guest probes read so far.
    pub fn probes(&self) -> u64 {
        self.probes
    }

    /// The best source's transform and bound: the most pairs, among those
    /// that give an estimate. With both traces on cycle clocks and pairs
    /// that agree on one C, the TSC method; else the slope-free hull.
    pub fn report(&self) -> Option<GuestSyncReport> {
        let (src, e): (&Source, SyncEstimate) = self
            .sources
            .iter()
            .filter(|s| !s.sync.is_dead())
            .filter_map(|s| Some((s, s.sync.estimate().ok()?)))
            .max_by_key(|(s, _)| s.sync.stats().paired)?;
        let st = src.sync.stats();
        let (g0, h0) = e.anchor;
        let anchor_ns = i64::try_from(g0).ok()?;
        // Differences first: the clocks' values near 2^60 ns do not fit
        // an f64 to the ns.
        let hull_offset = (i128::from(h0) - i128::from(g0)) as f64 + e.anchor_offset;
        let refs = self.cycle_refs();
        let hull_tsc =
            refs.map(|(g, h)| g.cycles_at(anchor_ns, 0.0) - h.cycles_at(anchor_ns, hull_offset));
        let hull = HullFit {
            slope: e.transform.slope,
            offset_ns: hull_offset.round() as i64,
            bound_ns: e.bound,
            tsc_offset_cycles: hull_tsc,
        };
        let tsc = src.tsc.filter(|r| r.n >= 2 && r.lo <= r.hi).zip(refs);
        let base = GuestSyncReport {
            method: "hull",
            source: src.key.to_string(),
            guest_probes: self.probes,
            host_events: st.host,
            paired: st.paired,
            offset_ns: hull.offset_ns,
            anchor_ns,
            slope: hull.slope,
            drift_ppm: (hull.slope - 1.0) * 1e6,
            bound_ns: hull.bound_ns,
            tsc_offset_cycles: hull_tsc,
            bound_cycles: refs.map(|(_, h)| e.bound * h.freq as f64 / 1e9),
            hull,
        };
        let Some((r, (g, h))) = tsc else {
            return Some(base);
        };
        // guest ns -> guest cycles -> host cycles (minus C) -> host ns.
        let c = (r.lo + r.hi) / 2.0;
        let bound_cycles = (r.hi - r.lo) / 2.0;
        let host_cycles = g.cycles_at(anchor_ns, 0.0) - c;
        let offset = (i128::from(h.ns) - i128::from(anchor_ns)) as f64
            + (host_cycles - h.cycles as f64) * 1e9 / h.freq as f64;
        let slope = g.freq as f64 / h.freq as f64;
        Some(GuestSyncReport {
            method: "tsc",
            offset_ns: offset.round() as i64,
            slope,
            drift_ppm: (slope - 1.0) * 1e6,
            bound_ns: bound_cycles * 1e9 / h.freq as f64,
            tsc_offset_cycles: Some(c),
            bound_cycles: Some(bound_cycles),
            ..base
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
        assert_eq!(r.method, "tsc", "{r:?}");
        assert_eq!(r.source, "fd 9");
        // The slope-free hull agrees, within its own (wider) bound.
        let hull_c = r.hull.tsc_offset_cycles.unwrap();
        let hull_bound = r.hull.bound_ns * 2.0;
        assert!((hull_c - c as f64).abs() <= hull_bound + 2.0, "{r:?}");
        assert!(r.bound_ns <= r.hull.bound_ns + 1.0, "{r:?}");
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

    /// Guest and host TSCs at different rates (not one TSC): no single C
    /// fits every pair, so the slope-free hull is used. The probes come at
    /// irregular gaps, as the testbed's do: from a regular comb no guess
    /// of the offset stands out from the guesses whole gaps off.
    #[test]
    fn different_rates_fall_back_to_the_hull() {
        let f = 1_000_000_000u64 + 7;
        let mut s = GuestSync::new();
        let host_ns = |cyc: u64| 1_000_000_000_000i64 + cyc as i64;
        let mut h = 5_000_000_000u64;
        for i in 0..300u64 {
            h += 20_000_000 + (i * 7_919_000) % 20_000_000;
            // The guest counts 100 ppm faster.
            let g = h + h / 10_000 + 77_000;
            let (before, after) = (g - 2_000, g + 3_000);
            s.host_event(HostSource::Port(0x4e8), host_ns(h), h, f);
            s.guest_marker(host_ns(after + 500), after + 500, f, before, after);
        }
        let r = s.report().expect("synced");
        assert_eq!(r.method, "hull", "{r:?}");
        assert_eq!(r.source, "port 0x4e8");
        assert!((r.slope - 1.0 / 1.0001).abs() < 1e-6, "{r:?}");
    }
}
