//! A small log-linear histogram of durations in nanoseconds: 8 linear
//! sub-buckets per power of two (at most 12.5 % relative error), values
//! up to 2^40 ns (about 18 minutes), about 2.5 KiB. Small enough to keep
//! one per syscall per host; exact counts at decade boundaries are kept
//! beside it for Prometheus buckets.

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Largest exponent tracked; larger values land in the last bucket.
const MAX_EXP: u32 = 40;
const BUCKETS: usize = SUB + (MAX_EXP - SUB_BITS + 1) as usize * SUB;

/// Upper bounds (inclusive, ns) of the Prometheus buckets: 1 µs to 10 s.
pub const DECADES_NS: [u64; 8] = [
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
];

/// A log-linear histogram; see the module docs.
#[derive(Debug, Clone)]
pub struct LogHist {
    counts: Box<[u64; BUCKETS]>,
    decades: [u64; DECADES_NS.len()],
    n: u64,
    sum: u128,
    max: u64,
}

impl Default for LogHist {
    fn default() -> Self {
        LogHist {
            counts: Box::new([0; BUCKETS]),
            decades: [0; DECADES_NS.len()],
            n: 0,
            sum: 0,
            max: 0,
        }
    }
}

#[inline]
fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    if e > MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = ((v >> (e - SUB_BITS)) as usize) & (SUB - 1);
    SUB + (e - SUB_BITS) as usize * SUB + sub
}

/// The largest value of bucket `i`.
fn upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let e = (i - SUB) / SUB + SUB_BITS as usize;
    let sub = ((i - SUB) % SUB) as u64;
    let lo = (1u64 << e) + (sub << (e - SUB_BITS as usize));
    lo + (1u64 << (e - SUB_BITS as usize)) - 1
}

impl LogHist {
    /// Counts one value.
    #[inline]
    pub fn add(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        // Prometheus buckets are cumulative; only the first matching
        // decade is counted here and the sum is taken when exporting.
        if let Some(d) = DECADES_NS.iter().position(|&b| v <= b) {
            self.decades[d] += 1;
        }
        self.n += 1;
        self.sum += v as u128;
        self.max = self.max.max(v);
    }

    /// Adds every count of `o`.
    pub fn merge(&mut self, o: &LogHist) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += b;
        }
        for (a, b) in self.decades.iter_mut().zip(o.decades.iter()) {
            *a += b;
        }
        self.n += o.n;
        self.sum += o.sum;
        self.max = self.max.max(o.max);
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.decades = [0; DECADES_NS.len()];
        self.n = 0;
        self.sum = 0;
        self.max = 0;
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Sum of the values.
    pub fn sum(&self) -> u128 {
        self.sum
    }

    /// The largest value counted.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the upper bound of its bucket,
    /// capped at the largest value seen. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max);
            }
        }
        self.max
    }

    /// Cumulative counts at each of [`DECADES_NS`] (values ≤ bound).
    pub fn cumulative_decades(&self) -> [u64; DECADES_NS.len()] {
        let mut out = self.decades;
        for i in 1..out.len() {
            out[i] += out[i - 1];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_tile_the_range() {
        for i in 0..BUCKETS - 1 {
            assert_eq!(index(upper(i)), i, "bucket {i}");
            assert_eq!(index(upper(i) + 1), i + 1, "bucket {i}");
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    proptest! {
        /// Quantiles are within 12.5 % of the exact order statistic.
        #[test]
        fn quantiles_are_close(mut v in proptest::collection::vec(1u64..(1 << 36), 1..300), q in 0.0f64..=1.0) {
            let mut h = LogHist::default();
            for &x in &v { h.add(x); }
            v.sort();
            let rank = ((q * v.len() as f64).ceil() as usize).max(1);
            let exact = v[rank - 1];
            let got = h.quantile(q);
            prop_assert!(got >= exact, "{} < {}", got, exact);
            prop_assert!(got as f64 <= exact as f64 * 1.125 + 1.0, "{} vs {}", got, exact);
            let d = h.cumulative_decades();
            for (i, &b) in DECADES_NS.iter().enumerate() {
                prop_assert_eq!(d[i], v.iter().filter(|&&x| x <= b).count() as u64);
            }
        }
    }
}
