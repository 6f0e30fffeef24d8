//! Per-thread tables stay bounded by the live threads: a freed thread's row
//! is kept among the largest dead ones, or folded into its process. The top
//! rows and the per-process totals must not change for it.

mod support;

use strata_analysis::analysis::{analyze, Options, Selection};
use strata_ctf::read::{OpenOptions, TraceSet};
use support::*;

#[test]
fn top_rows_and_process_totals_survive_folding() {
    let Some(root) = traces("top_rows_and_process_totals_survive_folding") else {
        return;
    };
    let trace = root.join("tc-many-threads");
    let set = TraceSet::open(&trace, &OpenOptions::default()).unwrap();
    let run = |top| {
        let opts = Options {
            selection: Selection::all(),
            top,
            ..Options::default()
        };
        analyze(&set, opts, |_| {}).unwrap()
    };
    // 8,000 short-lived threads die in this trace: with --top 10, at most
    // 1,000 dead rows are kept and the rest are folded.
    let all = run(0);
    let top = run(10);
    let (a, t) = (host(&all), host(&top));
    let (ca, ct) = (a.cputop.as_ref().unwrap(), t.cputop.as_ref().unwrap());
    assert_eq!(ct.threads, ca.threads[..10]);
    assert_eq!(ct.processes, ca.processes[..10]);
    assert_eq!(ct.cpus, ca.cpus);
    let (sa, st) = (a.syscalls.as_ref().unwrap(), t.syscalls.as_ref().unwrap());
    assert_eq!(st.total, 70_056);
    assert_eq!(st.thread_count, sa.thread_count);
    assert_eq!(st.threads, sa.threads[..10]);
    assert_eq!(st.processes, sa.processes[..st.processes.len()]);
    let (ha, ht) = (a.sched.as_ref().unwrap(), t.sched.as_ref().unwrap());
    assert_eq!(ht.threads, ha.threads[..10]);
    assert_eq!(ht.total, ha.total);
    let (ma, mt) = (a.summary.as_ref().unwrap(), t.summary.as_ref().unwrap());
    assert_eq!(mt.top_threads, ma.top_threads[..10]);
    assert!(ma.threads_seen > 8000);
}
