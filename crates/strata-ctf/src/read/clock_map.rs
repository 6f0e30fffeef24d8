//! A per-trace correction of timestamps, for merging traces whose clocks
//! disagree (a guest's trace with its host's).

/// Maps a trace's own Unix-nanosecond timestamps to another clock's:
/// `t' = t + offset_ns + (t - anchor_ns) · drift_ppb / 10⁹`.
///
/// Set with [`super::TraceSet::set_clock_map`]; the merge then orders the
/// trace's events by `t'`, and [`super::Event::ts`] returns `t'`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockMap {
    /// Where the drift is measured from, in the trace's own ns.
    pub anchor_ns: i64,
    /// Target minus own time at the anchor, ns.
    pub offset_ns: i64,
    /// Rate difference, parts per billion (target runs faster when > 0).
    pub drift_ppb: i64,
}

impl ClockMap {
    /// The target-clock time of own time `t` (saturating).
    #[inline]
    pub fn apply(&self, t: i64) -> i64 {
        let drift = if self.drift_ppb == 0 {
            0
        } else {
            // i128: (t - anchor) · ppb overflows i64 past 9 s at 1 ppm.
            let d = (i128::from(t) - i128::from(self.anchor_ns)) * i128::from(self.drift_ppb)
                / 1_000_000_000;
            d.clamp(i64::MIN.into(), i64::MAX.into()) as i64
        };
        t.saturating_add(self.offset_ns).saturating_add(drift)
    }
}

#[cfg(test)]
mod tests {
    use super::ClockMap;

    #[test]
    fn offset_and_drift() {
        let m = ClockMap {
            anchor_ns: 1_000_000_000,
            offset_ns: -500,
            drift_ppb: 2_000,
        };
        assert_eq!(m.apply(1_000_000_000), 999_999_500);
        // 10 s after the anchor, 2 ppm adds 20 µs.
        assert_eq!(m.apply(11_000_000_000), 11_000_000_000 - 500 + 20_000);
        // Before the anchor the drift subtracts.
        assert_eq!(m.apply(0), -500 - 2_000);
        assert_eq!(ClockMap::default().apply(42), 42);
        let far = ClockMap {
            offset_ns: i64::MAX,
            ..ClockMap::default()
        };
        assert_eq!(far.apply(10), i64::MAX);
    }
}
