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
    /// Probes paired (the first `paired` of each side, after `shift`).
    pub paired: usize,
    /// Host writes skipped at the start to align the two sides.
    pub shift: i64,
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
}

fn fit(guest: &[GuestProbe], host: &[u64]) -> Option<SyncEstimate> {
    let mut s = ConvexHullSync::new();
    for (g, &h) in guest.iter().zip(host) {
        s.add_guest_to_host(g.before, h);
        s.add_host_to_guest(h, g.after);
    }
    s.estimate().ok()
}

/// Pairs the two sides and estimates the transform. A few host writes may
/// be missing at either end (the host trace started late or lost events):
/// the alignment with a consistent, tightest fit wins.
pub fn sync(guest: &[GuestProbe], host: &[u64], freq: Option<u64>) -> Option<SyncReport> {
    let mut best: Option<(i64, SyncEstimate, usize)> = None;
    for shift in -5i64..=5 {
        let (g, h) = if shift >= 0 {
            (guest, host.get(shift as usize..)?)
        } else {
            (guest.get((-shift) as usize..)?, host)
        };
        let n = g.len().min(h.len());
        if n < 2 {
            continue;
        }
        if let Some(est) = fit(&g[..n], &h[..n]) {
            if best.as_ref().is_none_or(|b| est.bound < b.1.bound) {
                best = Some((shift, est, n));
            }
        }
    }
    let (shift, est, n) = best?;
    let first_guest = if shift >= 0 {
        guest[0]
    } else {
        guest[(-shift) as usize]
    };
    Some(SyncReport {
        guest_probes: guest.len(),
        host_writes: host.len(),
        paired: n,
        shift,
        slope: est.transform.slope,
        offset: est.transform.offset,
        offset_at_start: est.transform.apply(first_guest.before) - first_guest.before as f64,
        bound: est.bound,
        bound_ns: freq.filter(|&f| f > 0).map(|f| est.bound * 1e9 / f as f64),
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
                before: 10_000 + i * 5000,
                after: 10_000 + i * 5000 + 40,
            })
            .collect();
        let mut host = vec![5u64];
        host.extend(guest.iter().map(|g| g.before + 1000 + 20));
        let r = sync(&guest, &host, Some(1_000_000_000)).unwrap();
        assert_eq!(r.shift, 1);
        assert!((r.offset_at_start - 1000.0).abs() <= r.bound + 1.0);
        assert!(r.bound <= 40.0);
    }
}
