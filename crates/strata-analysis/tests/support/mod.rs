//! Helpers shared by the tests that compare Strata with lttng-analyses'
//! recorded outputs: where the traces and fixtures are, how to read the
//! peer's JSON, and small independent scans of a trace with the CTF reader.

#![allow(dead_code)]

#[path = "../../../../tests-support/shared_traces.rs"]
mod shared_traces;
/// The shared real traces, or `None` (with one line saying so) when absent.
pub use shared_traces::shared_traces as traces;
use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use strata_analysis::analysis::{analyze, HostReport, Options, Report, Selection};
use strata_analysis::filter::Filter;
use strata_ctf::read::{OpenOptions, TraceSet};

/// tc-many-threads' `--begin 17:46:22.900000000 --end 17:46:23.100000000`.
pub const BEGIN: i64 = 1_457_113_582_900_000_000;
/// See [`BEGIN`].
pub const END: i64 = 1_457_113_583_100_000_000;

/// The `results` tables of a peer fixture, by class (the per-tid syscall
/// tables, which share a class, are in order under `per-tid`).
pub fn peer(fixture: &str) -> BTreeMap<String, Vec<Value>> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lttng-analyses")
        .join(fixture);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let v: Value = serde_json::from_str(&text).expect("fixture is JSON");
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for t in v["results"].as_array().expect("results") {
        let class = match &t["class"] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o["inherit"].as_str().unwrap_or("?").to_string(),
            _ => "?".into(),
        };
        out.entry(class).or_default().push(t.clone());
    }
    out
}

/// The time range of a peer table.
pub fn peer_range(table: &Value) -> (i64, i64) {
    let r = &table["time-range"];
    (
        r["begin"]["value"].as_i64().expect("begin"),
        r["end"]["value"].as_i64().expect("end"),
    )
}

/// Runs Strata's analyses on `trace`.
pub fn run(trace: &Path, begin: Option<i64>, end: Option<i64>, filter: Filter) -> Report {
    let set = TraceSet::open(trace, &OpenOptions::default()).expect("trace opens");
    let opts = Options {
        selection: Selection::all(),
        begin,
        end,
        filter,
        top: 0,
    };
    analyze(&set, opts, |_| {}).expect("trace reads")
}

/// The only host of a report.
pub fn host(r: &Report) -> &HostReport {
    assert_eq!(r.hosts.len(), 1, "one host expected");
    &r.hosts[0]
}

/// For each CPU with a `sched_switch` in the period: the time from the
/// period's first event to that CPU's first switch, and the thread that was
/// running there when the period began (the `next` of its last switch
/// before the period, else the `prev` of its first switch). Read straight
/// from the trace, independently of the state system.
pub fn first_switches(
    trace: &Path,
    begin: Option<i64>,
    end: Option<i64>,
) -> BTreeMap<u32, (i64, i32)> {
    let set = TraceSet::open(trace, &OpenOptions::default()).expect("trace opens");
    let mut before: BTreeMap<u32, i32> = BTreeMap::new();
    let mut out = BTreeMap::new();
    let mut period_begin = None;
    let mut events = set.events();
    while let Some(e) = events.next() {
        let e = e.expect("valid trace");
        let ts = e.ts();
        if end.is_some_and(|x| ts > x) {
            break;
        }
        let in_period = begin.is_none_or(|b| ts >= b);
        if in_period && period_begin.is_none() {
            period_begin = Some(ts);
        }
        if e.class().name() != "sched_switch" {
            continue;
        }
        let c = e.class();
        let prev = e.i64(c.field("prev_tid").unwrap()).unwrap() as i32;
        let next = e.i64(c.field("next_tid").unwrap()).unwrap() as i32;
        let cpu = e.cpu();
        if !in_period {
            before.insert(cpu, next);
            continue;
        }
        let pb = period_begin.unwrap();
        out.entry(cpu)
            .or_insert_with(|| (ts - pb, before.get(&cpu).copied().unwrap_or(prev)));
    }
    out
}

/// Counts of a peer return-value dict printed by Python (`{'success': 8005,
/// 'EAGAIN': 58}`), by return value (0 for success).
pub fn peer_returns(text: &str) -> BTreeMap<i64, u64> {
    let mut out = BTreeMap::new();
    let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
    for part in inner.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part.split_once(':').expect("key: value");
        let k = k.trim().trim_matches('\'');
        let v: u64 = v.trim().parse().expect("count");
        let ret = if k == "success" {
            0
        } else if let Ok(n) = k.parse::<i64>() {
            n
        } else {
            // Python's errno.errorcode picks these aliases.
            let alias = match k {
                "EDEADLOCK" => "EDEADLK",
                "ENOTSUP" => "EOPNOTSUPP",
                "EWOULDBLOCK" => "EAGAIN",
                k => k,
            };
            -(1..600)
                .find(|&n| strata_analysis::errno::name(n) == Some(alias))
                .unwrap_or_else(|| panic!("unknown errno {k}"))
        };
        out.insert(ret, v);
    }
    out
}

/// Whether `a` and `b` agree to a relative `tol`.
pub fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * a.abs().max(b.abs()).max(1.0)
}
