//! `cputop` against lttng-analyses 0.6.1's recorded outputs.
//!
//! Strata agrees with the peer except where the peer is wrong, and each
//! difference is asserted exactly (see docs/analyses.md):
//! - per CPU, the peer counts a CPU as busy from the period's start to its
//!   first `sched_switch` whatever ran; Strata counts that time only when
//!   the thread running then is one the analysis selects (never swapper);
//! - under `--cpu`, the peer divides the total by every CPU of the trace;
//! - under `--tid`/`--procname`, the peer's per-thread table lists unrelated
//!   threads; Strata's lists the selected ones;
//! - names: the peer freezes a thread's name at its first row, or leaves it
//!   empty when the row came from `sched_migrate_task`; Strata shows the
//!   latest name.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use strata_analysis::analysis::CputopReport;
use strata_analysis::filter::Filter;
use support::*;

struct PeerCputop {
    range: (i64, i64),
    cpus: BTreeMap<u32, f64>,
    total: f64,
    /// (tid, name, usage %, migrations)
    tids: Vec<(i32, String, f64, u64)>,
}

fn peer_cputop(fixture: &str) -> PeerCputop {
    let t = peer(fixture);
    let per_cpu = &t["per-cpu"][0];
    let per_tid = &t["per-process"][0];
    PeerCputop {
        range: peer_range(per_cpu),
        cpus: per_cpu["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r[0]["id"].as_u64().unwrap() as u32,
                    r[1]["value"].as_f64().unwrap() * 100.0,
                )
            })
            .collect(),
        total: t["total"][0]["data"][0][0]["value"].as_f64().unwrap() * 100.0,
        tids: per_tid["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r[0]["tid"].as_i64().unwrap() as i32,
                    r[0]["name"].as_str().unwrap().to_string(),
                    r[3]["value"].as_f64().unwrap() * 100.0,
                    r[1]["value"].as_u64().unwrap(),
                )
            })
            .collect(),
    }
}

/// Checks the per-CPU figures: Strata = peer - the peer's idle-as-busy time
/// before each CPU's first switch, when the thread running then is not
/// selected.
fn check_cpus(
    trace: &Path,
    ours: &CputopReport,
    p: &PeerCputop,
    begin: Option<i64>,
    end: Option<i64>,
    selected: impl Fn(i32) -> bool,
) -> f64 {
    let dur = (p.range.1 - p.range.0) as f64;
    let first = first_switches(trace, begin, end);
    let mut max_gap: f64 = 0.0;
    for (&cpu, &peer_pct) in &p.cpus {
        let o = ours
            .cpus
            .iter()
            .find(|c| c.cpu == cpu)
            .unwrap_or_else(|| panic!("cpu {cpu} missing"));
        let (to_first, running) = first[&cpu];
        let quirk = if selected(running) {
            0.0
        } else {
            to_first as f64 * 100.0 / dur
        };
        assert!(
            (o.usage_pct - (peer_pct - quirk)).abs() < 1e-9,
            "cpu {cpu}: ours {} peer {peer_pct} quirk {quirk}",
            o.usage_pct
        );
        max_gap = max_gap.max(peer_pct - o.usage_pct);
    }
    max_gap
}

fn check_tids(ours: &CputopReport, p: &PeerCputop) {
    for (tid, name, pct, migrations) in &p.tids {
        let o = ours
            .threads
            .iter()
            .find(|t| t.thread.tid == *tid)
            .unwrap_or_else(|| panic!("tid {tid} missing"));
        assert!(
            (o.usage_pct - pct).abs() < 1e-9,
            "tid {tid}: ours {} peer {pct}",
            o.usage_pct
        );
        assert_eq!(o.migrations as u64, *migrations, "tid {tid} migrations");
        // The peer's name is the first one it saw, or empty for a row a
        // migration created; ours is the thread's latest.
        assert!(!o.thread.name.is_empty(), "tid {tid} has a name");
        if !name.is_empty() && o.thread.name != *name {
            println!("tid {tid}: renamed {name} -> {}", o.thread.name);
        }
    }
    // Same order: the peer's top rows are ours.
    let ours_top: Vec<i32> = ours
        .threads
        .iter()
        .take(p.tids.len())
        .map(|t| t.thread.tid)
        .collect();
    let peer_top: Vec<i32> = p.tids.iter().map(|t| t.0).collect();
    assert_eq!(ours_top, peer_top);
}

#[test]
fn tc_many_threads_whole_trace() {
    let Some(root) = traces("tc_many_threads_whole_trace") else {
        return;
    };
    let trace = root.join("tc-many-threads");
    let p = peer_cputop("tc-many-threads/cputop.json");
    let r = run(&trace, None, None, Filter::default());
    let period = r.period.unwrap();
    assert_eq!((period.begin_ns, period.end_ns), p.range);
    let c = host(&r).cputop.as_ref().unwrap();
    let gap = check_cpus(&trace, c, &p, None, None, |t| t != 0);
    assert!(gap < 0.1, "per-CPU within 0.1 point: {gap}");
    check_tids(c, &p);
    // The totals: both are the mean over the 8 CPUs.
    let mean = c.cpus.iter().map(|x| x.usage_pct).sum::<f64>() / 8.0;
    assert!((c.total_pct - mean).abs() < 1e-9);
    let peer_mean = p.cpus.values().sum::<f64>() / 8.0;
    assert!((p.total - peer_mean).abs() < 1e-9);
    assert!((p.total - c.total_pct).abs() < 0.1);
    // 2673 was renamed by its exec: the peer keeps its first name.
    let t = c.threads.iter().find(|t| t.thread.tid == 2673).unwrap();
    assert_eq!(t.thread.name, "multithread");
}

#[test]
fn tc_many_threads_begin_end() {
    let Some(root) = traces("tc_many_threads_begin_end") else {
        return;
    };
    let trace = root.join("tc-many-threads");
    let p = peer_cputop("tc-many-threads/cputop--begin-end.json");
    let r = run(&trace, Some(BEGIN), Some(END), Filter::default());
    let period = r.period.unwrap();
    assert_eq!((period.begin_ns, period.end_ns), p.range);
    let c = host(&r).cputop.as_ref().unwrap();
    check_cpus(&trace, c, &p, Some(BEGIN), Some(END), |t| t != 0);
    check_tids(c, &p);
    assert!((p.total - c.total_pct).abs() < 0.1);
}

#[test]
fn tc_many_threads_cpu_filter() {
    let Some(root) = traces("tc_many_threads_cpu_filter") else {
        return;
    };
    let trace = root.join("tc-many-threads");
    let p = peer_cputop("tc-many-threads/cputop--cpu-0-3.json");
    let f = Filter {
        cpus: vec![0, 3],
        ..Filter::default()
    };
    let r = run(&trace, None, None, f);
    let c = host(&r).cputop.as_ref().unwrap();
    assert_eq!(c.cpus.iter().map(|x| x.cpu).collect::<Vec<_>>(), vec![0, 3]);
    check_cpus(&trace, c, &p, None, None, |t| t != 0);
    check_tids(c, &p);
    // The peer divides by all 8 CPUs; Strata reports the mean of the two.
    let peer_sum: f64 = p.cpus.values().sum();
    assert!((p.total - peer_sum / 8.0).abs() < 1e-9);
    let ours_sum: f64 = c.cpus.iter().map(|x| x.usage_pct).sum();
    assert!((c.total_pct - ours_sum / 2.0).abs() < 1e-9);
}

#[test]
fn tc_many_threads_tid_filter() {
    let Some(root) = traces("tc_many_threads_tid_filter") else {
        return;
    };
    let trace = root.join("tc-many-threads");
    let p = peer_cputop("tc-many-threads/cputop--tid-2673.json");
    let f = Filter {
        tids: vec![2673],
        ..Filter::default()
    };
    let r = run(&trace, None, None, f);
    let c = host(&r).cputop.as_ref().unwrap();
    check_cpus(&trace, c, &p, None, None, |t| t == 2673);
    // The peer's per-thread table is broken under --tid: it lists threads
    // that were not asked for, charged from the period start.
    assert!(p.tids.iter().all(|t| t.0 != 2673));
    assert_eq!(p.tids[0].0, 10705);
    assert_eq!(c.threads.len(), 1);
    assert_eq!(c.threads[0].thread.tid, 2673);
    let all = run(&trace, None, None, Filter::default());
    let whole = all.hosts[0].cputop.as_ref().unwrap();
    let t = whole.threads.iter().find(|t| t.thread.tid == 2673).unwrap();
    assert!((c.threads[0].usage_pct - t.usage_pct).abs() < 1e-12);
    // Per CPU, the selected thread's time adds up to its own total.
    let sum: f64 = c.cpus.iter().map(|x| x.usage_pct).sum();
    assert!((sum - t.usage_pct).abs() < 1e-9);
}

#[test]
fn tc_many_threads_proc_filter() {
    let Some(root) = traces("tc_many_threads_proc_filter") else {
        return;
    };
    let trace = root.join("tc-many-threads");
    let p = peer_cputop("tc-many-threads/cputop--procname-vlc.json");
    let f = Filter {
        procs: vec!["vlc".into()],
        ..Filter::default()
    };
    let r = run(&trace, None, None, f);
    let c = host(&r).cputop.as_ref().unwrap();
    // Strata's --proc takes a thread's own name or its process's: every
    // thread of process vlc (1365), whatever each is called.
    assert!(c
        .threads
        .iter()
        .all(|t| t.thread.name == "vlc" || t.thread.process == "vlc"));
    assert!(c.threads.iter().any(|t| t.thread.name != "vlc"));
    // The peer matches thread names only: with the threads named vlc, the
    // per-CPU figures are the peer's less its quirk.
    let named: Vec<i32> = c
        .threads
        .iter()
        .filter(|t| t.thread.name == "vlc")
        .map(|t| t.thread.tid)
        .collect();
    let r2 = run(
        &trace,
        None,
        None,
        Filter {
            tids: named.clone(),
            ..Filter::default()
        },
    );
    let c2 = host(&r2).cputop.as_ref().unwrap();
    check_cpus(&trace, c2, &p, None, None, |t| named.contains(&t));
    for (a, b) in c.cpus.iter().zip(&c2.cpus) {
        assert!(a.busy_ns >= b.busy_ns);
    }
}

#[test]
fn tracefile_rotation() {
    let Some(root) = traces("tracefile_rotation") else {
        return;
    };
    let trace = root.join("bt-lttng-tracefile-rotation/kernel");
    let p = peer_cputop("bt-lttng-tracefile-rotation/cputop.json");
    let r = run(&trace, None, None, Filter::default());
    let period = r.period.unwrap();
    assert_eq!((period.begin_ns, period.end_ns), p.range);
    let c = host(&r).cputop.as_ref().unwrap();
    let gap = check_cpus(&trace, c, &p, None, None, |t| t != 0);
    assert!(gap < 0.1, "per-CPU within 0.1 point: {gap}");
    check_tids(c, &p);
    // Rows the peer created from sched_migrate_task have no name there.
    let unnamed: Vec<i32> = p
        .tids
        .iter()
        .filter(|t| t.1.is_empty())
        .map(|t| t.0)
        .collect();
    assert_eq!(unnamed, vec![1668, 31917, 2892, 4909]);
    let name = |tid| {
        c.threads
            .iter()
            .find(|t| t.thread.tid == tid)
            .unwrap()
            .thread
            .name
            .clone()
    };
    assert_eq!(name(1668), "Xorg");
    assert_eq!(name(2892), "xfwm4");
}
