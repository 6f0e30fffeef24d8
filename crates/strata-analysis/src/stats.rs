//! Duration statistics: exact count, min, mean, max and sample standard
//! deviation in constant memory, and HDR histograms for percentiles.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Exact running statistics of a series of durations (ns), constant size.
///
/// Sums are kept as integers (the squares in 128 bits), so the standard
/// deviation is computed exactly, without the cancellation of a floating
/// point sum of squares, and adding a sample costs no division.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// Number of samples.
    pub count: u64,
    /// Smallest sample.
    pub min: i64,
    /// Largest sample.
    pub max: i64,
    /// Sum of the samples.
    pub total: i128,
    /// Sum of the squares, saturating.
    sumsq: u128,
}

impl Stats {
    /// Adds one sample.
    #[inline]
    pub fn add(&mut self, v: i64) {
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.total += v as i128;
        let sq = (v as i128 * v as i128) as u128;
        self.sumsq = self.sumsq.saturating_add(sq);
    }

    /// Merges another series into this one.
    pub fn merge(&mut self, o: &Stats) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *o;
            return;
        }
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.count += o.count;
        self.total += o.total;
        self.sumsq = self.sumsq.saturating_add(o.sumsq);
    }

    /// The mean, `None` without samples.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.total as f64 / self.count as f64)
    }

    /// The sample standard deviation (n - 1), `None` under two samples.
    pub fn stdev(&self) -> Option<f64> {
        if self.count < 2 {
            return None;
        }
        let n = self.count as i128;
        // n * sum(x^2) - (sum x)^2, exactly when it fits in 128 bits.
        let exact = (n as u128)
            .checked_mul(self.sumsq)
            .zip(self.total.checked_mul(self.total))
            .and_then(|(a, b)| a.checked_sub(b as u128));
        let var = match exact {
            Some(num) => num as f64 / (n * (n - 1)) as f64,
            None => {
                let (nf, s) = (n as f64, self.total as f64);
                (self.sumsq as f64 - s * s / nf) / (nf - 1.0)
            }
        };
        Some(var.max(0.0).sqrt())
    }

    /// The summary for reports.
    pub fn summary(&self) -> StatsSummary {
        StatsSummary {
            count: self.count,
            min_ns: (self.count > 0).then_some(self.min),
            avg_ns: self.mean(),
            max_ns: (self.count > 0).then_some(self.max),
            stdev_ns: self.stdev(),
            total_ns: self.total.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        }
    }
}

/// Statistics as reports print them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StatsSummary {
    /// Number of samples.
    pub count: u64,
    /// Smallest, ns.
    pub min_ns: Option<i64>,
    /// Mean, ns.
    pub avg_ns: Option<f64>,
    /// Largest, ns.
    pub max_ns: Option<i64>,
    /// Sample standard deviation, ns (`None` under two samples).
    pub stdev_ns: Option<f64>,
    /// Sum, ns.
    pub total_ns: i64,
}

/// Significant decimal digits the histograms keep: values are exact to 1%.
pub const HIST_SIGFIG: u8 = 2;

/// A latency histogram: HDR, 2 significant digits, growing to the largest
/// value seen (a few KiB for microsecond-to-second latencies). The exact
/// smallest and largest values are kept beside it, so that a percentile,
/// which HDR gives as its bucket's upper end, never reads above the maximum
/// (a single 50.1 ms call must not have a p99 of 50.3 ms).
#[derive(Debug, Clone)]
pub struct Hist {
    h: Histogram<u64>,
    min: u64,
    max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist::new()
    }
}

impl Hist {
    /// An empty histogram.
    pub fn new() -> Hist {
        let mut h = Histogram::new(HIST_SIGFIG).expect("2 significant digits is a valid precision");
        h.auto(true);
        Hist {
            h,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Records one duration (ns); zero and negative values count as 1 ns.
    #[inline]
    pub fn add(&mut self, v: i64) {
        let v = v.max(1) as u64;
        // Recording only fails past u64::MAX / 2, which a positive i64 never reaches.
        let _ = self.h.record(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, o: &Hist) {
        let _ = self.h.add(&o.h);
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    /// Number of values recorded.
    pub fn len(&self) -> u64 {
        self.h.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }

    /// The value at percentile `p` (0..=100), ns.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.is_empty() {
            return 0;
        }
        self.h.value_at_percentile(p).clamp(self.min, self.max)
    }

    /// The usual percentiles, `None` when empty.
    pub fn percentiles(&self) -> Option<Percentiles> {
        (!self.is_empty()).then(|| Percentiles {
            p50_ns: self.percentile(50.0),
            p90_ns: self.percentile(90.0),
            p99_ns: self.percentile(99.0),
            p999_ns: self.percentile(99.9),
        })
    }

    /// Counts per power-of-two bucket: `(upper bound ns, count)` for each
    /// bucket from the smallest to the largest non-empty one.
    pub fn log2_buckets(&self) -> Vec<Bucket> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<Bucket> = Vec::new();
        for v in self.h.iter_recorded() {
            let x = v.value_iterated_to().max(1);
            let le = x.next_power_of_two();
            match out.last_mut() {
                Some(b) if b.le_ns == le => b.count += v.count_at_value(),
                _ => out.push(Bucket {
                    le_ns: le,
                    count: v.count_at_value(),
                }),
            }
        }
        // Fill the gaps so a printed histogram shows empty buckets too.
        let mut filled = Vec::with_capacity(out.len() * 2);
        for b in out {
            while let Some(last) = filled.last().map(|x: &Bucket| x.le_ns) {
                if last * 2 >= b.le_ns {
                    break;
                }
                filled.push(Bucket {
                    le_ns: last * 2,
                    count: 0,
                });
            }
            filled.push(b);
        }
        filled
    }
}

/// Percentiles from a histogram, ns, exact to 1%.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
}

/// One histogram bucket: values up to `le_ns` (and above the previous bucket's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// Upper bound, ns.
    pub le_ns: u64,
    /// Values in the bucket.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_stdev(v: &[i64]) -> f64 {
        let n = v.len() as f64;
        let m = v.iter().sum::<i64>() as f64 / n;
        (v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    }

    #[test]
    fn stats_match_the_textbook_formulas() {
        let v = [106i64, 204, 8303, 1459, 3987, 71586, 1787, 1, 0, 5];
        let mut s = Stats::default();
        v.iter().for_each(|&x| s.add(x));
        assert_eq!(s.count, 10);
        assert_eq!(s.min, 0);
        assert_eq!(s.max, 71586);
        assert_eq!(s.total, v.iter().sum::<i64>() as i128);
        assert!((s.stdev().unwrap() - naive_stdev(&v)).abs() < 1e-6);
        let mut a = Stats::default();
        let mut b = Stats::default();
        v[..4].iter().for_each(|&x| a.add(x));
        v[4..].iter().for_each(|&x| b.add(x));
        a.merge(&b);
        assert!((a.stdev().unwrap() - naive_stdev(&v)).abs() < 1e-6);
        assert_eq!((a.min, a.max, a.count), (0, 71586, 10));
    }

    #[test]
    fn stdev_needs_two_samples() {
        let mut s = Stats::default();
        assert_eq!(s.stdev(), None);
        s.add(5);
        assert_eq!(s.stdev(), None);
        s.add(7);
        assert!((s.stdev().unwrap() - std::f64::consts::SQRT_2).abs() < 1e-12);
    }

    #[test]
    fn histogram_percentiles_are_within_one_percent() {
        let mut h = Hist::new();
        for v in 1..=100_000i64 {
            h.add(v * 10);
        }
        let p = h.percentiles().unwrap();
        assert!((p.p50_ns as f64 / 500_000.0 - 1.0).abs() < 0.01, "{p:?}");
        assert!((p.p99_ns as f64 / 990_000.0 - 1.0).abs() < 0.01, "{p:?}");
        let buckets = h.log2_buckets();
        assert_eq!(buckets.iter().map(|b| b.count).sum::<u64>(), 100_000);
        assert!(buckets.windows(2).all(|w| w[1].le_ns == w[0].le_ns * 2));
    }

    #[test]
    fn percentiles_stay_within_the_values_seen() {
        let mut one = Hist::new();
        one.add(50_109_888);
        let p = one.percentiles().unwrap();
        assert_eq!(
            (p.p50_ns, p.p99_ns, p.p999_ns),
            (50_109_888, 50_109_888, 50_109_888)
        );
        let mut two = Hist::new();
        two.add(1_000);
        two.merge(&one);
        assert_eq!(two.percentile(99.9), 50_109_888);
        assert_eq!(two.percentile(0.0), 1_000);
        assert_eq!(Hist::new().percentile(50.0), 0);
    }
}
