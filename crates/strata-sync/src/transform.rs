//! A linear map from one clock to another.

/// `to = slope · from + offset`, in the units of the two clocks (cycles or
/// nanoseconds). Slope is close to 1 for two clocks of the same rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockTransform {
    /// Rate of the target clock per unit of the source clock.
    pub slope: f64,
    /// Target time at source time 0.
    pub offset: f64,
}

impl ClockTransform {
    /// The identity: both clocks already agree.
    pub const IDENTITY: ClockTransform = ClockTransform {
        slope: 1.0,
        offset: 0.0,
    };

    /// A pure shift: `to = from + offset`.
    pub fn shift(offset: f64) -> ClockTransform {
        ClockTransform { slope: 1.0, offset }
    }

    /// Maps a source timestamp to the target clock. Computed around a
    /// reference point so that large timestamps (TSC values near 2^50)
    /// keep sub-cycle precision in `f64`.
    pub fn apply(&self, t: u64) -> f64 {
        // slope·t is exact enough when slope ≈ 1: write it as t + (slope-1)·t.
        t as f64 + (self.slope - 1.0) * t as f64 + self.offset
    }

    /// Maps a source timestamp and rounds to the nearest integer of the
    /// target clock, saturating at the ends of `u64`.
    pub fn apply_u64(&self, t: u64) -> u64 {
        let v = self.apply(t).round();
        if v <= 0.0 {
            0
        } else if v >= u64::MAX as f64 {
            u64::MAX
        } else {
            v as u64
        }
    }

    /// The inverse map (target to source). `None` when the slope is 0.
    pub fn inverse(&self) -> Option<ClockTransform> {
        (self.slope != 0.0).then(|| ClockTransform {
            slope: 1.0 / self.slope,
            offset: -self.offset / self.slope,
        })
    }
}
