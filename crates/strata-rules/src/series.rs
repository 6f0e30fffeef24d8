//! A sliding window over event time: a ring of buckets, each with a count,
//! a second count, a sum and (for durations) an HDR histogram, plus running
//! totals so that a query never walks the buckets. Memory is fixed per
//! series: `BUCKETS + 1` buckets whatever the event rate.

use hdrhistogram::Histogram;

/// Buckets a window is cut into (one more is kept for the partial one).
pub const BUCKETS: usize = 10;

/// Durations above this are recorded as this (1 h), ns.
const MAX_VALUE: u64 = 3_600_000_000_000;

fn histogram() -> Histogram<u64> {
    // 1 µs resolution is ample for latencies that rules watch; 2
    // significant digits keep each histogram a few kB.
    Histogram::new_with_bounds(1_000, MAX_VALUE, 2).expect("constant bounds hdrhistogram accepts")
}

#[derive(Debug, Clone)]
struct Slot {
    key: i64,
    n: u64,
    aux: u64,
    sum: u64,
    hist: Option<Histogram<u64>>,
}

/// Totals over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Values recorded.
    pub n: u64,
    /// The second count (errors, for syscall errors).
    pub aux: u64,
    /// Sum of values, ns.
    pub sum: u64,
}

/// One sliding-window series.
#[derive(Debug, Clone)]
pub struct Series {
    width: i64,
    slots: Vec<Slot>,
    newest: i64,
    totals: Totals,
    hist: Option<Histogram<u64>>,
}

impl Series {
    /// A series over `window_ns`, with histograms when `durations`.
    pub fn new(window_ns: u64, durations: bool) -> Series {
        let width = (window_ns / BUCKETS as u64).max(1) as i64;
        Series {
            width,
            slots: (0..=BUCKETS)
                .map(|_| Slot {
                    key: i64::MIN,
                    n: 0,
                    aux: 0,
                    sum: 0,
                    hist: durations.then(histogram),
                })
                .collect(),
            newest: i64::MIN,
            totals: Totals::default(),
            hist: durations.then(histogram),
        }
    }

    /// The window actually covered: the full buckets plus the current one.
    pub fn span_ns(&self) -> i64 {
        self.width * BUCKETS as i64
    }

    fn expire(totals: &mut Totals, hist: &mut Option<Histogram<u64>>, s: &mut Slot) {
        totals.n -= s.n;
        totals.aux -= s.aux;
        totals.sum -= s.sum;
        if let (Some(h), Some(sh)) = (hist.as_mut(), s.hist.as_mut()) {
            if !sh.is_empty() {
                // Same bounds on both sides, and every count of `sh` was
                // added to `h`: subtraction cannot fail.
                let _ = h.subtract(&*sh);
                sh.reset();
            }
        }
        s.n = 0;
        s.aux = 0;
        s.sum = 0;
        s.key = i64::MIN;
    }

    /// Moves the window so that it ends at event time `now`, dropping
    /// buckets older than the window.
    pub fn advance(&mut self, now: i64) {
        let key = now.div_euclid(self.width);
        if key <= self.newest {
            return;
        }
        self.newest = key;
        let oldest = key - BUCKETS as i64;
        for s in &mut self.slots {
            if s.key != i64::MIN && s.key < oldest {
                Series::expire(&mut self.totals, &mut self.hist, s);
            }
        }
    }

    /// Adds one value at event time `ts`: `value` (ns) to the sum and
    /// histogram, `aux` to the second count. Values older than the window
    /// are dropped.
    #[inline]
    pub fn record(&mut self, ts: i64, value: u64, aux: u64) {
        let key = ts.div_euclid(self.width);
        if key > self.newest {
            self.advance(ts);
        } else if key < self.newest - BUCKETS as i64 {
            return;
        }
        let idx = key.rem_euclid(self.slots.len() as i64) as usize;
        let s = &mut self.slots[idx];
        if s.key != key {
            Series::expire(&mut self.totals, &mut self.hist, s);
            s.key = key;
        }
        let v = value.min(MAX_VALUE);
        s.n += 1;
        s.aux += aux;
        s.sum += v;
        self.totals.n += 1;
        self.totals.aux += aux;
        self.totals.sum += v;
        if let (Some(h), Some(sh)) = (self.hist.as_mut(), s.hist.as_mut()) {
            sh.saturating_record(v);
            h.saturating_record(v);
        }
    }

    /// Counts and sum over the window.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// The value at quantile `q` (0..=1) over the window, ns; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        match &self.hist {
            Some(h) if !h.is_empty() => h.highest_equivalent(h.value_at_quantile(q)).min(MAX_VALUE),
            _ => 0,
        }
    }

    /// The largest value over the window, ns; 0 when empty.
    pub fn max(&self) -> u64 {
        match &self.hist {
            Some(h) if !h.is_empty() => h.max(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn slides_and_forgets() {
        let mut s = Series::new(1_000 * MS as u64, true);
        for i in 0..100 {
            s.record(i * 10 * MS, 1_000_000, (i % 10 == 0) as u64);
        }
        assert_eq!(s.totals().n, 100);
        assert_eq!(s.totals().aux, 10);
        let p = s.quantile(0.99);
        assert!((990_000..=1_010_000).contains(&p), "{p}");
        s.record(990 * MS, 50_000_000, 0);
        assert!(s.max() >= 49_000_000);
        // 1.5 s later only buckets after 0.5 s remain.
        s.advance(1_500 * MS);
        let n = s.totals().n;
        assert!((40..=60).contains(&n), "{n}");
        // Much later: empty, and the histogram too.
        s.advance(10_000 * MS);
        assert_eq!(s.totals(), Totals::default());
        assert_eq!(s.quantile(0.5), 0);
        // Too old to count.
        s.record(0, 5, 0);
        assert_eq!(s.totals().n, 0);
    }
}
