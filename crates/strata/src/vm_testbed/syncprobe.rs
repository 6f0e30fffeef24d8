//! Matches a guest's sync probes with what its vCPU thread did on the host,
//! and feeds the pairs to `strata-sync`.
//!
//! Guest side: `strata-sync SEQ BEFORE AFTER` console lines (guest TSC).
//! Host side: under TCG, each probe's `outb` makes the vCPU thread write
//! the byte to the isa-debugcon chardev file, so the k-th write(v) syscall
//! of a vCPU thread on that descriptor is the k-th probe. Its entry
//! timestamp lies between BEFORE and AFTER: one pair in each direction.

use anyhow::Context;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use strata_ctf::read::{OpenOptions, TraceSet};
use strata_sync::{ConvexHullSync, SyncEstimate};

/// One guest probe as the guest timestamped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestProbe {
    /// Sequence number (from 1).
    pub seq: u64,
    /// Guest TSC just before the port write.
    pub before: u64,
    /// Guest TSC just after.
    pub after: u64,
}

/// Reads the probes from a guest console log; other lines are ignored.
pub fn parse_console(text: &str) -> Vec<GuestProbe> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.trim().strip_prefix("strata-sync ")?.split_whitespace();
            let seq = it.next()?.parse().ok()?;
            let before = it.next()?.parse().ok()?;
            let after = it.next()?.parse().ok()?;
            (after >= before).then_some(GuestProbe { seq, before, after })
        })
        .collect()
}

/// Host-side probe timestamps (raw clock values of the host trace), per
/// descriptor watched, in time order.
pub fn host_writes(
    host_trace: &Path,
    vcpu_tids: &HashSet<u32>,
    fd: i64,
) -> anyhow::Result<Vec<u64>> {
    let set = TraceSet::open(host_trace, &OpenOptions { skip_corrupt: true })
        .with_context(|| format!("cannot open the host trace {}", host_trace.display()))?;
    // Resolve the fields once per class.
    #[derive(Clone, Copy)]
    enum Kind {
        Switch(strata_ctf::read::FieldRef),
        Write(strata_ctf::read::FieldRef),
        Other,
    }
    let kinds: Vec<Kind> = set
        .event_classes()
        .map(|c| match c.name() {
            "sched_switch" => c.field("next_tid").map_or(Kind::Other, Kind::Switch),
            "syscall_entry_write" | "syscall_entry_writev" | "syscall_entry_pwritev"
            // The tracefs names, when single syscalls were asked for.
            | "sys_enter_write" | "sys_enter_writev" | "sys_enter_pwritev" => {
                c.field("fd").map_or(Kind::Other, Kind::Write)
            }
            _ => Kind::Other,
        })
        .collect();
    let mut current: HashMap<u32, u32> = HashMap::new();
    let mut out = Vec::new();
    let mut events = set.events();
    while let Some(ev) = events.next() {
        let Ok(ev) = ev else { continue };
        match kinds.get(ev.class_index()).copied().unwrap_or(Kind::Other) {
            Kind::Switch(f) => {
                if let Some(t) = ev.i64(f) {
                    current.insert(ev.cpu(), t as u32);
                }
            }
            Kind::Write(f) => {
                let on_vcpu = current
                    .get(&ev.cpu())
                    .is_some_and(|t| vcpu_tids.contains(t));
                if on_vcpu && ev.i64(f) == Some(fd) {
                    out.push(ev.cycles());
                }
            }
            Kind::Other => {}
        }
    }
    Ok(out)
}

/// The result of syncing one guest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncReport {
    /// Probes the guest made.
    pub guest_probes: usize,
    /// Probe writes seen on the host.
    pub host_writes: usize,
    /// Probes paired with a host write.
    pub paired: usize,
    /// host = slope · guest + offset (raw clock units).
    pub slope: f64,
    /// The transform's offset (raw clock units).
    pub offset: f64,
    /// The offset at the first paired probe, host minus guest (raw units):
    /// for two TSCs at the same rate, the constant between them.
    pub offset_at_start: f64,
    /// Accuracy bound (raw host clock units).
    pub bound: f64,
    /// The same in nanoseconds, when the clock rate is known.
    pub bound_ns: Option<f64>,
    /// Guest minus host clock values (`guest_tsc = host_tsc + C`) that
    /// every pair allows when the two clocks tick at exactly the same rate,
    /// as under TCG: `[max(BEFORE - host), min(AFTER - host)]`. A check of
    /// the transform from independent means; `None` when the pairs leave
    /// no such constant (the rates differ).
    pub tsc_constant: Option<[i64; 2]>,
}

/// The range of constants `C` with `BEFORE ≤ host + C ≤ AFTER` for every
/// pair.
fn constant_range(pairs: &[(GuestProbe, u64)]) -> Option<[i64; 2]> {
    let lo = pairs
        .iter()
        .map(|(g, h)| i128::from(g.before) - i128::from(*h))
        .max()?;
    let hi = pairs
        .iter()
        .map(|(g, h)| i128::from(g.after) - i128::from(*h))
        .min()?;
    (lo <= hi).then_some([i64::try_from(lo).ok()?, i64::try_from(hi).ok()?])
}

fn fit(pairs: &[(GuestProbe, u64)]) -> Option<SyncEstimate> {
    let mut s = ConvexHullSync::new();
    for (g, h) in pairs {
        s.add_guest_to_host(g.before, *h);
        s.add_host_to_guest(*h, g.after);
    }
    s.estimate().ok()
}

/// Pairs each host write with the guest probe that, with the clocks `offset`
/// apart (host − guest), was made at most `window` from it. Either side may
/// miss some: a console line the guest's other output garbled, a host event
/// the ring buffer dropped.
fn match_by_time(
    guest: &[GuestProbe],
    host: &[u64],
    offset: i128,
    window: i128,
) -> Vec<(GuestProbe, u64)> {
    let mut out: Vec<(GuestProbe, u64)> = Vec::new();
    let mut j = 0;
    for &h in host {
        let t = h as i128 - offset;
        while j + 1 < guest.len() && (guest[j + 1].before as i128) <= t {
            j += 1;
        }
        let nearest = [j, j + 1]
            .into_iter()
            .filter(|&k| k < guest.len())
            .min_by_key(|&k| (guest[k].before as i128 - t).abs());
        let Some(k) = nearest.filter(|&k| (guest[k].before as i128 - t).abs() <= window) else {
            continue;
        };
        // Two writes near one probe: keep the nearer.
        let dist = |h: u64| (guest[k].before as i128 - (h as i128 - offset)).abs();
        match out.last_mut() {
            Some((g, prev)) if g.seq == guest[k].seq => {
                if dist(h) < dist(*prev) {
                    *prev = h;
                }
            }
            _ => out.push((guest[k], h)),
        }
    }
    out
}

/// Pairs the two sides by time and estimates the transform. The clocks'
/// offset is first guessed from the earliest writes and probes (the one that
/// pairs the most), assuming both clocks run at about the same rate (both
/// `x86-tsc`); probes are 100 ms apart and a TCG exit takes well under a
/// millisecond, so a few milliseconds of window cannot pair the wrong ones.
pub fn sync(guest: &[GuestProbe], host: &[u64], freq: Option<u64>) -> Option<SyncReport> {
    // 1 ms of host clock (1e6 units if its rate is unknown): probes are
    // 5 ms or more apart.
    let window = freq.filter(|&f| f > 0).map_or(1_000_000, |f| f / 1000) as i128;
    // The most pairs wins; among equals, the tightest (an unrelated early
    // write can pair as many, each a little farther off).
    let mut best: Option<((usize, std::cmp::Reverse<i128>), i128)> = None;
    // Every try of the probe writes, but only the tightest of each period
    // is printed: the host's first printed probe is among its first
    // writes, tries-per-period times as many as the printed lines.
    for &h in host.iter().take(400) {
        for g in guest.iter().take(10) {
            let offset = h as i128 - g.before as i128;
            let pairs = match_by_time(guest, host, offset, window);
            let spread: i128 = pairs
                .iter()
                .map(|(g, h)| (*h as i128 - offset - g.before as i128).abs())
                .sum();
            let score = (pairs.len(), std::cmp::Reverse(spread));
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((score, offset));
            }
        }
    }
    let pairs = match_by_time(guest, host, best?.1, window);
    let est = fit(&pairs)?;
    let first_guest = pairs.first()?.0;
    Some(SyncReport {
        guest_probes: guest.len(),
        host_writes: host.len(),
        paired: pairs.len(),
        slope: est.transform.slope,
        offset: est.transform.offset,
        offset_at_start: est.transform.apply(first_guest.before) - first_guest.before as f64,
        bound: est.bound,
        bound_ns: freq.filter(|&f| f > 0).map(|f| est.bound * 1e9 / f as f64),
        tsc_constant: constant_range(&pairs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines() {
        let text = "boot\r\nstrata-sync 1 100 200\r\nnoise strata-sync 2 3 4\nstrata-sync 2 300 250\nstrata-sync 3 400 450\n";
        let p = parse_console(text);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[1],
            GuestProbe {
                seq: 3,
                before: 400,
                after: 450
            }
        );
    }

    #[test]
    fn alignment_skips_an_early_host_write() {
        // Host = guest + 1000; the host saw one unrelated write first.
        let guest: Vec<GuestProbe> = (0..50u64)
            .map(|i| GuestProbe {
                seq: i + 1,
                before: 10_000 + i * 100_000_000,
                after: 10_000 + i * 100_000_000 + 40,
            })
            .collect();
        let mut host = vec![5u64];
        host.extend(guest.iter().map(|g| g.before + 1000 + 20));
        let r = sync(&guest, &host, Some(1_000_000_000)).unwrap();
        assert_eq!(r.paired, 50);
        // Host = guest + 1020 exactly, so guest = host - 1020, and each
        // probe's span [before, before + 40] allows C in [-1020, -980].
        assert_eq!(r.tsc_constant, Some([-1020, -980]));
        assert!((r.offset_at_start - 1000.0).abs() <= r.bound + 1.0);
        assert!(r.bound <= 40.0);
    }

    #[test]
    fn pairing_survives_gaps_on_both_sides() {
        // Host = guest + 7_000_000 (7 ms at 1 GHz); the guest console lost
        // probe 10, the host trace lost the write of probe 30.
        let all: Vec<GuestProbe> = (0..60u64)
            .map(|i| GuestProbe {
                seq: i + 1,
                before: 1_000_000 + i * 100_000_000 + (i % 3) * 777,
                after: 1_000_000 + i * 100_000_000 + (i % 3) * 777 + 50_000,
            })
            .collect();
        let host: Vec<u64> = all
            .iter()
            .filter(|g| g.seq != 30)
            .map(|g| g.before + 7_000_000 + 10_000 + g.seq % 7 * 1000)
            .collect();
        let guest: Vec<GuestProbe> = all.into_iter().filter(|g| g.seq != 10).collect();
        let r = sync(&guest, &host, Some(1_000_000_000)).unwrap();
        assert_eq!(r.paired, 58);
        assert!(
            (r.offset_at_start - 7_000_000.0).abs() <= r.bound + 1.0,
            "{r:?}"
        );
        assert!(r.bound <= 50_000.0, "{r:?}");
    }
}
