//! The convex-hull estimator on synthetic probes with a known transform.

use proptest::prelude::*;
use strata_sync::{tsc_offset_transform, ConvexHullSync, SyncError, TscOffset};

/// Probes like the testbed's: the guest reads its clock, does an I/O write
/// the host timestamps `delay_in` later, and reads its clock again
/// `delay_out` after the host's timestamp. Returns the estimator fed with
/// both pairs of every probe.
fn probes(
    slope: f64,
    offset: f64,
    start: u64,
    period: u64,
    delays: &[(u64, u64)],
) -> ConvexHullSync {
    let mut s = ConvexHullSync::new();
    // Guest time from true host time: inverse of host = slope·g + offset.
    let guest_at = |h: f64| ((h - offset) / slope).floor() as u64;
    for (i, &(d_in, d_out)) in delays.iter().enumerate() {
        let g_sent = start + i as u64 * period;
        let h_seen = (slope * g_sent as f64 + offset).ceil() as u64 + d_in;
        let g_back = guest_at(h_seen as f64 + d_out as f64) + 1;
        s.add_guest_to_host(g_sent, h_seen);
        s.add_host_to_guest(h_seen, g_back);
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The true transform lies within the reported bound everywhere in the
    /// span, whatever the offset, drift and jitter.
    #[test]
    fn truth_is_within_the_bound(
        offset in -1.0e12f64..1.0e12,
        drift_ppm in -200.0f64..200.0,
        start in 1_000_000_000_000u64..4_000_000_000_000_000,
        delays in prop::collection::vec((0u64..50_000, 0u64..50_000), 8..300),
    ) {
        let slope = 1.0 + drift_ppm * 1e-6;
        let period = 300_000_000u64;
        let s = probes(slope, offset, start, period, &delays);
        let est = s.estimate().expect("both directions over many probes");
        let end = start + period * (delays.len() as u64 - 1);
        for k in 0..=10u64 {
            let g = start + (end - start) * k / 10;
            let truth = slope * g as f64 + offset;
            let err = (est.transform.apply(g) - truth).abs();
            // 2 units of slack: the synthetic probes round to whole ticks.
            prop_assert!(err <= est.bound + 2.0, "error {err} above bound {} at {g}", est.bound);
        }
        prop_assert!(est.slope_range.0 <= slope + 1e-9 && slope - 1e-9 <= est.slope_range.1);
    }

    /// With a few tight probes at both ends, the bound is as small as the
    /// tightest delays, however noisy the others are.
    #[test]
    fn tight_probes_give_a_tight_bound(
        offset in -1.0e12f64..1.0e12,
        noisy in prop::collection::vec((1_000u64..100_000, 1_000u64..100_000), 20..200),
    ) {
        let mut delays = noisy.clone();
        delays[0] = (10, 10);
        delays[1] = (10, 10);
        let n = delays.len();
        delays[n - 1] = (10, 10);
        delays[n - 2] = (10, 10);
        let s = probes(1.0, offset, 5_000_000_000_000, 100_000_000, &delays);
        let est = s.estimate().unwrap();
        prop_assert!(est.bound <= 40.0, "bound {} with 10-tick probes at both ends", est.bound);
    }
}

#[test]
fn one_direction_is_not_enough() {
    let mut s = ConvexHullSync::new();
    for i in 0..100u64 {
        s.add_guest_to_host(i * 1000, i * 1000 + 500);
    }
    assert!(matches!(
        s.estimate(),
        Err(SyncError::Underdetermined {
            guest_to_host: 100,
            host_to_guest: 0
        })
    ));
}

#[test]
fn contradicting_pairs_are_reported() {
    let mut s = ConvexHullSync::new();
    // The host sees the message before the guest sent it and answers after
    // the guest got the answer: no line fits.
    s.add_guest_to_host(1000, 1000);
    s.add_guest_to_host(2000, 2000);
    s.add_host_to_guest(1500, 1400);
    s.add_host_to_guest(2500, 2400);
    s.add_host_to_guest(1200, 1000);
    assert!(matches!(s.estimate(), Err(SyncError::Inconsistent { .. })));
}

#[test]
fn exact_offset_with_symmetric_delays() {
    let s = probes(1.0, 12_345_678.0, 1 << 40, 1_000_000, &[(100, 100); 50]);
    let est = s.estimate().unwrap();
    let g = (1u64 << 40) + 10_000_000;
    let err = est.transform.apply(g) - (g as f64 + 12_345_678.0);
    assert!(err.abs() <= est.bound + 2.0);
    assert!(est.bound <= 110.0, "bound {}", est.bound);
}

#[test]
fn memory_stays_small_on_long_runs() {
    // 100 000 probes with random-ish delays: the hulls keep few points, so an
    // estimate stays cheap.
    let delays: Vec<(u64, u64)> = (0..100_000u64)
        .map(|i| (100 + (i * 7919) % 5000, 100 + (i * 104_729) % 5000))
        .collect();
    let s = probes(1.000_01, -5e9, 1 << 42, 100_000_000, &delays);
    let t = std::time::Instant::now();
    let est = s.estimate().unwrap();
    assert!(t.elapsed().as_secs() < 5);
    assert!(est.bound < 5000.0);
}

#[test]
fn tsc_offset_maps_guest_to_host() {
    let t = tsc_offset_transform(TscOffset(-1_000_000));
    assert_eq!(t.apply_u64(5_000_000), 6_000_000);
    assert_eq!(t.inverse().unwrap().apply_u64(6_000_000), 5_000_000);
}
