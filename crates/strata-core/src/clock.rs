//! Trace clocks and their mapping to wall-clock time.

use serde::{Deserialize, Serialize};

/// Nanoseconds in one second.
pub const NS_PER_S: u64 = 1_000_000_000;

/// A named clock that timestamps a stream, and where its zero lies on the Unix
/// epoch.
///
/// This is the CTF 1.8 clock model: a raw timestamp `t` (in cycles of `freq`
/// Hz) means `offset_s` seconds plus `offset` cycles plus `t` cycles after the
/// Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockDesc {
    /// The clock's name as the trace records it (`monotonic`, `x86-tsc`, ...).
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// Cycles per second.
    pub freq: u64,
    /// Whole seconds from the Unix epoch to the clock's zero.
    pub offset_s: i64,
    /// Extra cycles from the Unix epoch to the clock's zero, on top of `offset_s`.
    pub offset: i64,
}

impl ClockDesc {
    /// A 1 GHz clock whose zero is `zero_unix_ns` nanoseconds after the Unix epoch.
    pub fn nanoseconds(name: &str, description: &str, zero_unix_ns: i64) -> Self {
        ClockDesc {
            name: name.to_string(),
            description: description.to_string(),
            freq: NS_PER_S,
            offset_s: zero_unix_ns.div_euclid(NS_PER_S as i64),
            offset: zero_unix_ns.rem_euclid(NS_PER_S as i64),
        }
    }

    /// Converts a raw timestamp of this clock to nanoseconds since the Unix epoch.
    ///
    /// Saturates instead of overflowing on absurd values from corrupt traces.
    pub fn to_unix_ns(&self, cycles: u64) -> i64 {
        let total = self.offset as i128 + cycles as i128;
        let ns = if self.freq == NS_PER_S || self.freq == 0 {
            total
        } else {
            total * NS_PER_S as i128 / self.freq as i128
        };
        let ns = ns + self.offset_s as i128 * NS_PER_S as i128;
        ns.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// The raw value of this clock at `unix_ns` nanoseconds since the Unix
    /// epoch (the inverse of [`ClockDesc::to_unix_ns`], to the cycle);
    /// 0 before the clock's zero.
    pub fn from_unix_ns(&self, unix_ns: i64) -> u64 {
        let ns = unix_ns as i128 - self.offset_s as i128 * NS_PER_S as i128;
        let total = if self.freq == NS_PER_S || self.freq == 0 {
            ns
        } else {
            ns * self.freq as i128 / NS_PER_S as i128
        };
        (total - self.offset as i128).clamp(0, u64::MAX as i128) as u64
    }

    /// `ns` nanoseconds in cycles of this clock.
    pub fn cycles_in(&self, ns: u64) -> u64 {
        if self.freq == NS_PER_S || self.freq == 0 {
            return ns;
        }
        (ns as u128 * self.freq as u128 / NS_PER_S as u128).min(u64::MAX as u128) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanosecond_clock_round_trips_its_zero() {
        let c = ClockDesc::nanoseconds("monotonic", "", 1_700_000_000_123_456_789);
        assert_eq!(c.offset_s, 1_700_000_000);
        assert_eq!(c.offset, 123_456_789);
        assert_eq!(c.to_unix_ns(1), 1_700_000_000_123_456_790);
    }

    #[test]
    fn non_nanosecond_clock_scales() {
        let c = ClockDesc {
            name: "x".into(),
            description: String::new(),
            freq: 2 * NS_PER_S,
            offset_s: 10,
            offset: 2,
        };
        assert_eq!(c.to_unix_ns(4), 10 * NS_PER_S as i64 + 3);
    }

    #[test]
    fn unix_ns_converts_back_to_raw() {
        let c = ClockDesc {
            name: "x86-tsc".into(),
            description: String::new(),
            freq: 2_900_000_000,
            offset_s: 1_795_700_000,
            offset: 1_234_567,
        };
        for raw in [0u64, 1, 987_654_321_000, 94_149_005_951_883] {
            let back = c.from_unix_ns(c.to_unix_ns(raw));
            // One ns is 2.9 cycles: the round trip is good to 3 cycles.
            assert!(back.abs_diff(raw) <= 3, "{raw} -> {back}");
        }
        assert_eq!(c.from_unix_ns(0), 0);
        assert_eq!(c.cycles_in(1_000), 2_900);
        let n = ClockDesc::nanoseconds("monotonic", "", 1_700_000_000_123_456_789);
        assert_eq!(n.from_unix_ns(1_700_000_001_123_456_789), 1_000_000_000);
        assert_eq!(n.cycles_in(5), 5);
    }

    #[test]
    fn negative_zero_is_split_euclidean() {
        let c = ClockDesc::nanoseconds("m", "", -1);
        assert_eq!((c.offset_s, c.offset), (-1, 999_999_999));
        assert_eq!(c.to_unix_ns(0), -1);
    }
}
