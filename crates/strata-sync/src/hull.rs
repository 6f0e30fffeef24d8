//! The online convex-hull estimator.
//!
//! Coordinates: `x` is guest time, `y` is host time, both in integer units
//! of their clocks, stored relative to the first pair seen so that `f64`
//! arithmetic stays exact over long runs of 64-bit TSC values.

use crate::ClockTransform;
use thiserror::Error;

/// Why no transform can be given yet, or at all.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SyncError {
    /// Messages of one direction only, or too few, bound the transform on
    /// one side only.
    #[error(
        "not enough message pairs to bound the clock transform ({guest_to_host} guest→host, \
         {host_to_guest} host→guest): both directions are needed, at two or more distinct times"
    )]
    Underdetermined {
        /// Guest→host pairs seen.
        guest_to_host: u64,
        /// Host→guest pairs seen.
        host_to_guest: u64,
    },
    /// No line satisfies every pair: a pair was mismatched, or the clocks are
    /// not linearly related over the span (a clock jump, a VM migration).
    #[error(
        "the {pairs} message pairs are inconsistent: no linear clock transform satisfies all of them \
         (mismatched probes, or a clock jump)"
    )]
    Inconsistent {
        /// Pairs seen in total.
        pairs: u64,
    },
}

/// The current estimate and how far it can be off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncEstimate {
    /// Guest time to host time.
    pub transform: ClockTransform,
    /// Largest error of `transform` over the span of guest times seen, in
    /// host clock units: the true host time of any guest instant in that
    /// span is within ± this of the estimate.
    pub bound: f64,
    /// Smallest and largest feasible slopes.
    pub slope_range: (f64, f64),
    /// Pairs the estimate rests on.
    pub pairs: u64,
    /// The same transform around a reference pair, exact for large clock
    /// values (an `f64` offset near 2^60 ns loses hundreds of ns):
    /// `host = anchor.1 + anchor_offset + slope · (guest - anchor.0)`.
    pub anchor: (u64, u64),
    /// See `anchor`.
    pub anchor_offset: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Pt {
    x: f64,
    y: f64,
}

fn cross(o: Pt, a: Pt, b: Pt) -> f64 {
    (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x)
}

/// One side's hull, kept as a monotone chain by increasing x. `lower`
/// keeps the lower hull (points the transform must pass under), otherwise
/// the upper hull (points it must pass over). Only hull points are kept,
/// so memory stays small however long the run.
#[derive(Debug, Clone, Default)]
struct Chain {
    pts: Vec<Pt>,
    lower: bool,
}

impl Chain {
    fn keeps_turn(&self, o: Pt, a: Pt, b: Pt) -> bool {
        let c = cross(o, a, b);
        if self.lower {
            c > 0.0
        } else {
            c < 0.0
        }
    }

    fn push(&mut self, p: Pt) {
        if self.pts.last().is_some_and(|l| p.x < l.x) {
            // Out of order (rare: pairs of one side normally come in time
            // order): rebuild from the hull points plus the new one.
            let mut all = std::mem::take(&mut self.pts);
            all.push(p);
            all.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
            for q in all {
                self.push_sorted(q);
            }
            return;
        }
        self.push_sorted(p);
    }

    fn push_sorted(&mut self, p: Pt) {
        if let Some(l) = self.pts.last_mut() {
            if l.x == p.x {
                // Same x: only the tighter point matters.
                let tighter = if self.lower { p.y < l.y } else { p.y > l.y };
                if !tighter {
                    return;
                }
                self.pts.pop();
            }
        }
        while self.pts.len() >= 2 {
            let n = self.pts.len();
            if self.keeps_turn(self.pts[n - 2], self.pts[n - 1], p) {
                break;
            }
            self.pts.pop();
        }
        self.pts.push(p);
    }
}

/// Online convex-hull synchronisation of a guest clock to its host clock.
///
/// Feed it message pairs as they are matched; ask for [`estimate`] at any
/// time. Cost per pair is amortised O(1); an estimate costs O(h³) in the
/// number of hull points h, which stays in the tens for real probes.
///
/// [`estimate`]: ConvexHullSync::estimate
#[derive(Debug, Clone)]
pub struct ConvexHullSync {
    origin: Option<(u64, u64)>,
    /// Guest→host pairs: the host saw it after the guest sent it, so the
    /// transform passes under these points.
    above: Chain,
    /// Host→guest pairs: the guest saw it after the host sent it, so the
    /// transform passes over these points.
    below: Chain,
    n_g2h: u64,
    n_h2g: u64,
    x_span: (f64, f64),
}

impl Default for ConvexHullSync {
    fn default() -> Self {
        ConvexHullSync::new()
    }
}

impl ConvexHullSync {
    /// An estimator with no pairs yet.
    pub fn new() -> ConvexHullSync {
        ConvexHullSync {
            origin: None,
            above: Chain {
                pts: Vec::new(),
                lower: true,
            },
            below: Chain {
                pts: Vec::new(),
                lower: false,
            },
            n_g2h: 0,
            n_h2g: 0,
            x_span: (f64::INFINITY, f64::NEG_INFINITY),
        }
    }

    fn rel(&mut self, guest: u64, host: u64) -> Pt {
        let (gx, hy) = *self.origin.get_or_insert((guest, host));
        // Differences are taken in integers first: exact up to 2^63.
        let x = (guest as i128 - gx as i128) as f64;
        let y = (host as i128 - hy as i128) as f64;
        self.x_span = (self.x_span.0.min(x), self.x_span.1.max(x));
        Pt { x, y }
    }

    /// A message the guest sent at `guest_sent` (guest clock) and the host
    /// received at `host_received` (host clock).
    pub fn add_guest_to_host(&mut self, guest_sent: u64, host_received: u64) {
        let p = self.rel(guest_sent, host_received);
        self.above.push(p);
        self.n_g2h += 1;
    }

    /// A message the host sent at `host_sent` and the guest received at
    /// `guest_received`. A probe the guest timestamps after its I/O write
    /// returns is one too: the host handled the write before that.
    pub fn add_host_to_guest(&mut self, host_sent: u64, guest_received: u64) {
        let p = self.rel(guest_received, host_sent);
        self.below.push(p);
        self.n_h2g += 1;
    }

    /// Pairs fed so far.
    pub fn pairs(&self) -> u64 {
        self.n_g2h + self.n_h2g
    }

    /// The feasible region's vertices in (slope, intercept) space.
    fn vertices(&self) -> Vec<(f64, f64)> {
        // Each hull point is a line in (a, b) space: b = y - a·x, with the
        // feasible side b ≤ (above) or b ≥ (below) it.
        let lines: Vec<(Pt, bool)> = self
            .above
            .pts
            .iter()
            .map(|&p| (p, true))
            .chain(self.below.pts.iter().map(|&p| (p, false)))
            .collect();
        let scale = lines
            .iter()
            .map(|(p, _)| p.x.abs().max(p.y.abs()))
            .fold(1.0, f64::max);
        let eps = scale * 1e-12 + 1e-6;
        let feasible = |a: f64, b: f64| {
            lines.iter().all(|&(p, upper)| {
                let lim = p.y - a * p.x;
                if upper {
                    b <= lim + eps
                } else {
                    b >= lim - eps
                }
            })
        };
        let mut out = Vec::new();
        for i in 0..lines.len() {
            for j in i + 1..lines.len() {
                let (p, q) = (lines[i].0, lines[j].0);
                if p.x == q.x {
                    continue;
                }
                let a = (p.y - q.y) / (p.x - q.x);
                let b = p.y - a * p.x;
                if feasible(a, b) {
                    out.push((a, b));
                }
            }
        }
        out
    }

    /// The current transform and its accuracy bound.
    pub fn estimate(&self) -> Result<SyncEstimate, SyncError> {
        let under = SyncError::Underdetermined {
            guest_to_host: self.n_g2h,
            host_to_guest: self.n_h2g,
        };
        let Some((gx, hy)) = self.origin else {
            return Err(under);
        };
        if self.above.pts.is_empty() || self.below.pts.is_empty() || self.x_span.0 == self.x_span.1
        {
            return Err(under);
        }
        let verts = self.vertices();
        if verts.is_empty() {
            return Err(SyncError::Inconsistent {
                pairs: self.pairs(),
            });
        }
        let amin = verts.iter().map(|v| v.0).fold(f64::INFINITY, f64::min);
        let amax = verts.iter().map(|v| v.0).fold(f64::NEG_INFINITY, f64::max);
        // An unbounded region shows up as slopes no clock pair can have.
        if !(amin > 0.0 && amax < 2.0) {
            return Err(under);
        }
        // Host-time range of the feasible lines at guest time x; the
        // estimate takes its middle at both ends of the span, which is the
        // line of least worst-case error over the span.
        let range_at = |x: f64| {
            verts
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(a, b)| {
                    let y = a * x + b;
                    (lo.min(y), hi.max(y))
                })
        };
        let (x0, x1) = self.x_span;
        let (lo0, hi0) = range_at(x0);
        let (lo1, hi1) = range_at(x1);
        let (m0, m1) = ((lo0 + hi0) / 2.0, (lo1 + hi1) / 2.0);
        let slope = (m1 - m0) / (x1 - x0);
        let b_rel = m0 - slope * x0;
        let bound = ((hi0 - lo0) / 2.0).max((hi1 - lo1) / 2.0);
        // Back to absolute clocks: host = slope·(guest - gx) + b_rel + hy.
        let offset = hy as f64 + b_rel - slope * gx as f64;
        Ok(SyncEstimate {
            transform: ClockTransform { slope, offset },
            bound,
            slope_range: (amin, amax),
            pairs: self.pairs(),
            anchor: (gx, hy),
            anchor_offset: b_rel,
        })
    }
}
