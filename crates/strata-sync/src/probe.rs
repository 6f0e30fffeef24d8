//! Pairs a guest's sync probes with what the host saw of them, online, and
//! keeps a [`ConvexHullSync`] of the pairs.
//!
//! A probe is a guest clock reading, an I/O port write, and a second
//! reading. The host sees the write (under KVM a `kvm_pio` event, under QEMU
//! TCG the vCPU thread's `write` to the debug console's file) at one host
//! time, which lies between the two guest readings: one message each way.
//! Neither side carries an identifier the other can see (TCG gives the host
//! no written value), so probes are paired by time: once the clocks'
//! offset is known to within `window`, the host event nearest a probe is
//! its own, provided probes are more than two windows apart.

use std::collections::VecDeque;

use crate::{ConvexHullSync, SyncError, SyncEstimate};

/// One guest probe, in guest clock units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestProbe {
    /// The guest clock just before the port write.
    pub before: u64,
    /// The guest clock just after it.
    pub after: u64,
}

impl GuestProbe {
    fn mid(&self) -> i128 {
        (i128::from(self.before) + i128::from(self.after)) / 2
    }
}

/// Counts of what a [`ProbeSync`] was fed and paired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeStats {
    /// Guest probes fed.
    pub guest: u64,
    /// Host probe events fed.
    pub host: u64,
    /// Pairs made.
    pub paired: u64,
}

/// Unpaired events kept per side: enough for the two traces to be read
/// seconds apart in time order before their clocks are synced.
const PENDING_MAX: usize = 1024;
/// Events of a side waited for before guessing the clocks' offset.
const LOCK_AFTER: usize = 8;
/// Pairs the guessed offset must make to be believed.
const LOCK_MIN_PAIRS: usize = 4;
/// Earliest host events tried as the first pair (each against every
/// pending probe: the host side may start late, after probes it missed).
const CANDIDATES: usize = 8;
/// Host events allowed beyond two per guest probe before the source is
/// taken for something else (a serial port's byte stream, not probes); the
/// slack covers a host trace read seconds ahead of the guest's.
const HOST_SLACK: u64 = 512;

/// Online probe pairing and clock sync for one guest and one host source.
///
/// Feed [`guest_probe`] and [`host_probe`] in each side's time order (the
/// two sides may interleave in any way, seconds apart); ask [`estimate`] at
/// any time. Memory is bounded: the hull's points plus at most
/// `PENDING_MAX` unpaired events per side. Pure arithmetic, no I/O.
///
/// [`guest_probe`]: ProbeSync::guest_probe
/// [`host_probe`]: ProbeSync::host_probe
/// [`estimate`]: ProbeSync::estimate
#[derive(Debug, Clone)]
pub struct ProbeSync {
    window: u64,
    /// Host minus guest (probe middle) at the latest pair, once locked.
    offset: Option<i128>,
    guest: VecDeque<GuestProbe>,
    host: VecDeque<u64>,
    hull: ConvexHullSync,
    stats: ProbeStats,
    /// Too many host events for probes: this source is not the probes'.
    dead: bool,
    /// Pairs made since the caller last took them.
    fresh: Vec<(GuestProbe, u64)>,
}

impl ProbeSync {
    /// A matcher that pairs a host event with a probe when they are at most
    /// `window` apart (host clock units) once the offset is known. Probes
    /// must be more than `2 · window` apart, and the clocks must drift less
    /// than `window` between two pairs.
    pub fn new(window: u64) -> ProbeSync {
        ProbeSync {
            window: window.max(1),
            offset: None,
            guest: VecDeque::new(),
            host: VecDeque::new(),
            hull: ConvexHullSync::new(),
            stats: ProbeStats::default(),
            dead: false,
            fresh: Vec::new(),
        }
    }

    /// What was fed and paired so far.
    pub fn stats(&self) -> ProbeStats {
        self.stats
    }

    /// Whether the host events look like something other than probes
    /// (far more of them than probes): the matcher then ignores them.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// The current transform (guest to host) and its accuracy bound.
    pub fn estimate(&self) -> Result<SyncEstimate, SyncError> {
        self.hull.estimate()
    }

    /// A guest probe: the guest clock `before` and `after` its port write.
    /// A probe whose `after` precedes `before` is ignored.
    pub fn guest_probe(&mut self, before: u64, after: u64) {
        if after < before || self.dead {
            return;
        }
        self.stats.guest += 1;
        let g = GuestProbe { before, after };
        if let Some(off) = self.offset {
            let want = g.mid() + off;
            if let Some(i) = nearest(self.host.iter().map(|&t| i128::from(t)), want, self.window) {
                let t = self.host.remove(i).unwrap_or_default();
                self.pair(g, t);
                return;
            }
        }
        push_bounded(&mut self.guest, g);
        if self.offset.is_none() {
            let n = self.guest.len();
            // Retried at 8, 16, 32, ... pending probes, then every 256: a
            // guess costs O(CANDIDATES · pending²).
            if n >= LOCK_AFTER && (n.is_power_of_two() || n.is_multiple_of(256)) {
                self.try_lock();
            }
        }
    }

    /// A host probe event (the port write as the host saw it), host clock.
    pub fn host_probe(&mut self, t: u64) {
        if self.dead {
            return;
        }
        self.stats.host += 1;
        if self.stats.host > 2 * self.stats.guest + HOST_SLACK {
            self.dead = true;
            self.guest = VecDeque::new();
            self.host = VecDeque::new();
            return;
        }
        if let Some(off) = self.offset {
            let at = i128::from(t) - off;
            if let Some(i) = nearest(self.guest.iter().map(GuestProbe::mid), at, self.window) {
                let g = self.guest.remove(i).unwrap_or(GuestProbe {
                    before: 0,
                    after: 0,
                });
                self.pair(g, t);
                return;
            }
        }
        push_bounded(&mut self.host, t);
        if self.offset.is_none() {
            // The host side may come last (a guest clock read ahead).
            let n = self.host.len();
            if n >= LOCK_AFTER && (n.is_power_of_two() || n.is_multiple_of(256)) {
                self.try_lock();
            }
        }
    }

    /// The pairs made since the last call (at most `PENDING_MAX` are kept
    /// in between), for a caller that also fits them another way.
    pub fn take_pairs(&mut self) -> std::vec::Drain<'_, (GuestProbe, u64)> {
        self.fresh.drain(..)
    }

    fn pair(&mut self, g: GuestProbe, t: u64) {
        if self.fresh.len() >= PENDING_MAX {
            self.fresh.remove(0);
        }
        self.fresh.push((g, t));
        self.hull.add_guest_to_host(g.before, t);
        self.hull.add_host_to_guest(t, g.after);
        self.stats.paired += 1;
        // Follow the latest pair, so that drift never outruns the window.
        self.offset = Some(i128::from(t) - g.mid());
    }

    /// Guesses the offset: each of the earliest pending host events against
    /// every pending probe. The guess that pairs the most pending events
    /// wins, then the one whose pairs sit tightest (a guess one probe
    /// period off pairs almost as many, each off by the period's jitter).
    /// It must pair at least half of the smaller side, so that chance
    /// coincidences of a wrong guess are not believed. Then pairs what it
    /// can.
    fn try_lock(&mut self) {
        let mut best: Option<((usize, std::cmp::Reverse<u128>), i128)> = None;
        for &h in self.host.iter().take(CANDIDATES) {
            for g in &self.guest {
                let off = i128::from(h) - g.mid();
                let (n, spread) = count_pairs(&self.guest, &self.host, off, self.window);
                let score = (n, std::cmp::Reverse(spread));
                if best.as_ref().is_none_or(|(b, _)| score > *b) {
                    best = Some((score, off));
                }
            }
        }
        let Some(((n, _), off)) = best else {
            return;
        };
        if n < LOCK_MIN_PAIRS.max(self.guest.len().min(self.host.len()) / 2) {
            return;
        }
        self.offset = Some(off);
        let guest = std::mem::take(&mut self.guest);
        for g in guest {
            let want = g.mid() + self.offset.unwrap_or(off);
            match nearest(self.host.iter().map(|&t| i128::from(t)), want, self.window) {
                Some(i) => {
                    let t = self.host.remove(i).unwrap_or_default();
                    self.pair(g, t);
                }
                None => push_bounded(&mut self.guest, g),
            }
        }
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() >= PENDING_MAX {
        q.pop_front();
    }
    q.push_back(v);
}

/// The index of the value nearest `want`, if within `window`.
fn nearest(it: impl Iterator<Item = i128>, want: i128, window: u64) -> Option<usize> {
    it.enumerate()
        .map(|(i, v)| (i, (v - want).unsigned_abs()))
        .filter(|&(_, d)| d <= u128::from(window))
        .min_by_key(|&(_, d)| d)
        .map(|(i, _)| i)
}

/// How many guest probes find a host event within `window` of them with
/// the clocks `off` apart, and the sum of their distances. Both sides are
/// in time order, so one forward sweep does.
fn count_pairs(
    guest: &VecDeque<GuestProbe>,
    host: &VecDeque<u64>,
    off: i128,
    window: u64,
) -> (usize, u128) {
    let (mut n, mut spread, mut j) = (0, 0u128, 0usize);
    let w = i128::from(window);
    for g in guest {
        let want = g.mid() + off;
        while j < host.len() && i128::from(host[j]) < want - w {
            j += 1;
        }
        let best = (j..host.len().min(j + 2))
            .map(|k| (i128::from(host[k]) - want).unsigned_abs())
            .filter(|&d| d <= u128::from(window))
            .min();
        if let Some(d) = best {
            n += 1;
            spread += d;
        }
    }
    (n, spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probes every 20 ms of guest time with a jittered period and a span of
    /// 5-30 µs; the host sees each write `lag` after BEFORE, on a clock
    /// `host = guest · (1 + ppm·1e-6) + offset`.
    fn scenario(n: u64, offset: i64, ppm: f64) -> Vec<(GuestProbe, u64)> {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        let mut t = 5_000_000_000u64;
        (0..n)
            .map(|_| {
                t += 20_000_000 + rand(400_000);
                let span = 5_000 + rand(25_000);
                let lag = 1 + rand(span - 1);
                let g = GuestProbe {
                    before: t,
                    after: t + span,
                };
                let host_g = (t + lag) as f64;
                let h = (host_g + host_g * ppm * 1e-6) as i64 + offset;
                (g, h as u64)
            })
            .collect()
    }

    fn truth(g: u64, offset: i64, ppm: f64) -> f64 {
        g as f64 * (1.0 + ppm * 1e-6) + offset as f64
    }

    #[test]
    fn pairs_everything_and_bounds_the_true_transform() {
        // Host 1.3 s ahead of the guest, 3 ppm faster.
        let (offset, ppm) = (1_300_000_000i64, 3.0);
        let pairs = scenario(300, offset, ppm);
        let mut s = ProbeSync::new(2_000_000);
        // The host's events come first, as a merge by raw time would give
        // them: each side in its own order, the host 1.3 s early.
        let mut host = pairs.iter().map(|p| p.1).peekable();
        for (g, _) in &pairs {
            while host
                .peek()
                .is_some_and(|&h| (h as i64 - offset) < g.before as i64)
            {
                s.host_probe(host.next().unwrap());
            }
            s.guest_probe(g.before, g.after);
        }
        host.for_each(|h| s.host_probe(h));
        assert_eq!(s.stats().paired, 300, "{:?}", s.stats());
        let e = s.estimate().unwrap();
        for (g, _) in pairs.iter().step_by(17) {
            let est = e.anchor.1 as f64
                + e.anchor_offset
                + e.transform.slope * (g.before as f64 - e.anchor.0 as f64);
            let err = (est - truth(g.before, offset, ppm)).abs();
            assert!(err <= e.bound + 1.0, "error {err} > bound {}", e.bound);
        }
        assert!((e.transform.slope - 1.000003).abs() < 1e-7, "{e:?}");
        // The bound follows the tightest probes (spans from 5 µs).
        assert!(e.bound < 5_000.0, "{e:?}");
    }

    #[test]
    fn lost_events_on_either_side_lose_only_their_pair() {
        let pairs = scenario(120, -40_000_000, 0.0);
        let mut s = ProbeSync::new(2_000_000);
        for (i, (g, h)) in pairs.iter().enumerate() {
            // The guest lost probe 10's record, the host probe 30's write,
            // and an unrelated host write lands between two probes.
            if i != 10 {
                s.guest_probe(g.before, g.after);
            }
            if i != 30 {
                s.host_probe(*h);
            }
            if i == 50 {
                s.host_probe(h + 9_000_000);
            }
        }
        assert_eq!(s.stats().paired, 118);
        let e = s.estimate().unwrap();
        let mid = pairs[60].0.before;
        let est = e.anchor.1 as f64
            + e.anchor_offset
            + e.transform.slope * (mid as f64 - e.anchor.0 as f64);
        assert!((est - truth(mid, -40_000_000, 0.0)).abs() <= e.bound + 1.0);
    }

    #[test]
    fn a_dense_stream_is_not_taken_for_probes() {
        let mut s = ProbeSync::new(2_000_000);
        for i in 0..20_000u64 {
            s.host_probe(1_000_000_000 + i * 10_000);
            if i % 2_000 == 0 {
                s.guest_probe(
                    1_000_000_000 + i * 10_000,
                    1_000_000_000 + i * 10_000 + 5_000,
                );
            }
        }
        assert!(s.is_dead());
        assert!(s.estimate().is_err());
    }

    #[test]
    fn too_few_probes_give_no_estimate() {
        let mut s = ProbeSync::new(2_000_000);
        for (g, h) in scenario(3, 0, 0.0) {
            s.guest_probe(g.before, g.after);
            s.host_probe(h);
        }
        assert_eq!(s.stats().paired, 0);
        assert!(s.estimate().is_err());
        // Reversed readings are not probes.
        s.guest_probe(10, 5);
        assert_eq!(s.stats().guest, 3);
    }
}
