//! `strata analyze` end to end: the binary on the shared real traces, its
//! JSON document, its time arguments and its errors on bad input.

#[path = "../../../tests-support/shared_traces.rs"]
mod shared_traces;
use shared_traces::shared_traces as traces;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("analyze")
        .args(args)
        .output()
        .expect("strata runs")
}

fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = strata(&a);
    assert!(
        out.status.success(),
        "strata analyze {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn json_document_carries_every_report() {
    let Some(root) = traces("json_document_carries_every_report") else {
        return;
    };
    let trace = root.join("tc-many-threads");
    let doc = json(&["all", trace.to_str().unwrap(), "--top", "3"]);
    assert_eq!(doc["schema"], "strata-analyze/1");
    assert_eq!(
        doc["reports"],
        serde_json::json!(["cputop", "syscalls", "sched", "irq", "io", "mem", "summary"])
    );
    assert_eq!(doc["period"]["begin_ns"], 1_457_113_582_794_565_804i64);
    assert_eq!(doc["period"]["end_ns"], 1_457_113_583_227_228_162i64);
    let h = &doc["hosts"][0];
    assert_eq!(h["hostname"], "wilbrod");
    assert_eq!(h["cpus"], 8);
    let total = h["cputop"]["total_pct"].as_f64().unwrap();
    assert!((total - 54.18).abs() < 0.1, "{total}");
    assert_eq!(h["cputop"]["threads"].as_array().unwrap().len(), 3);
    assert_eq!(h["cputop"]["threads"][0]["tid"], 2673);
    assert_eq!(h["syscalls"]["total"], 70_056);
    assert_eq!(h["summary"]["events"], 240_644);
    assert_eq!(h["irq"]["hard"].as_array().unwrap().len(), 3);
    assert!(h["sched"]["percentiles"]["p99_ns"].as_u64().unwrap() > 0);
    assert!(doc.get("skipped").is_none());
}

#[test]
fn short_fractions_and_filters() {
    let Some(root) = traces("short_fractions_and_filters") else {
        return;
    };
    let trace = root.join("tc-many-threads");
    let t = trace.to_str().unwrap();
    // lttng-analyses refuses `17:46:22.9` (fixture cputop--short-fraction);
    // it means 17:46:22.900000000, the period of the peer's begin-end run.
    let doc = json(&[
        "cputop,syscalls",
        t,
        "--begin",
        "17:46:22.9",
        "--end",
        "17:46:23.1",
    ]);
    assert_eq!(doc["filters"]["begin_ns"], 1_457_113_582_900_000_000i64);
    assert_eq!(doc["period"]["begin_ns"], 1_457_113_582_900_099_762i64);
    assert_eq!(doc["period"]["end_ns"], 1_457_113_583_099_978_751i64);
    assert_eq!(doc["hosts"][0]["syscalls"]["total"], 32_955);
    // The same with full dates and with nanoseconds.
    let full = json(&[
        "syscalls",
        t,
        "--begin",
        "2016-03-04 17:46:22.9",
        "--end",
        "1457113583100000000",
    ]);
    assert_eq!(full["period"], doc["period"]);
    // Filters.
    let f = json(&["cputop,syscalls", t, "--tid", "2673", "--cpu", "0,3"]);
    let h = &f["hosts"][0];
    let cpus: Vec<u64> = h["cputop"]["cpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cpu"].as_u64().unwrap())
        .collect();
    assert_eq!(cpus, [0, 3]);
    assert!(h["cputop"]["threads"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["tid"] == 2673));
    assert_eq!(f["filters"]["tids"], serde_json::json!([2673]));
    let p = json(&["syscalls", t, "--proc", "vlc", "--top", "0"]);
    for th in p["hosts"][0]["syscalls"]["threads"].as_array().unwrap() {
        assert!(th["name"] == "vlc" || th["process"] == "vlc", "{th}");
    }
}

#[test]
fn tables_are_aligned() {
    let Some(root) = traces("tables_are_aligned") else {
        return;
    };
    let out = strata(&[
        "cputop",
        root.join("tc-many-threads").to_str().unwrap(),
        "--top",
        "5",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Period 2016-03-04 17:46:22.794565804 to 17:46:23.227228162 UTC"));
    let lines: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("CPU usage per thread"))
        .skip(1)
        .take(6)
        .collect();
    // Every row ends its CPU % column where the header does.
    let col = lines[0].find("CPU %").unwrap() + "CPU %".len();
    for l in &lines[1..] {
        assert_eq!(
            &l[col - 1..col],
            l[..col].trim_end().chars().last().unwrap().to_string()
        );
        assert!(l[..col].ends_with(|c: char| c.is_ascii_digit()), "{l}");
    }
    assert!(lines[1].contains("2673") && lines[1].contains("29.70"));
}

#[test]
fn two_hosts_get_two_sections() {
    let Some(root) = traces("two_hosts_get_two_sections") else {
        return;
    };
    let out = strata(&["summary", root.join("tc-synctraces").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("host VM3, 1 CPU\n"));
    assert!(text.contains("host VM1, 1 CPU\n"));
    assert!(text.contains("85729 events"));
    assert!(text.contains("110771 events"));
}

#[test]
fn bad_arguments_are_explained() {
    let Some(root) = traces("bad_arguments_are_explained") else {
        return;
    };
    let t = root.join("tc-many-threads");
    let t = t.to_str().unwrap();
    for (args, want) in [
        (vec!["bogus", t], "unknown report `bogus`"),
        (vec!["cputop", "/nonexistent/trace"], "/nonexistent/trace"),
        (vec!["cputop", t, "--begin", "noon"], "HH:MM:SS"),
        (
            vec!["cputop", t, "--begin", "25:00:00"],
            "hour is out of range",
        ),
        (
            vec!["cputop", t, "--begin", "17:46:23", "--end", "17:46:22"],
            "is before --begin",
        ),
        (
            vec!["cputop", t, "--end", "2016-03-04 10:00:00"],
            "before the trace's first event",
        ),
    ] {
        let out = strata(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let e = stderr(&out);
        assert!(e.contains(want), "{args:?}: {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
    let empty = std::env::temp_dir().join(format!("strata-analyze-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = strata(&["cputop", empty.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&empty);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no CTF trace"), "{}", stderr(&out));
}

#[test]
fn damaged_packets_are_named_or_skipped() {
    let Some(root) = traces("damaged_packets_are_named_or_skipped") else {
        return;
    };
    let src = root.join("tc-many-threads");
    let dir = std::env::temp_dir().join(format!("strata-analyze-corrupt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("metadata"), dir.join("metadata")).unwrap();
    for i in 0..8 {
        let name = format!("channel0_{i}");
        let mut bytes = std::fs::read(src.join(&name)).unwrap();
        if i == 3 {
            // Break the magic of the second packet.
            let size = u64::from_le_bytes(bytes[56..64].try_into().unwrap()) as usize / 8;
            bytes[size..size + 4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        }
        std::fs::write(dir.join(&name), bytes).unwrap();
    }
    let d = dir.to_str().unwrap();
    let out = strata(&["cputop", d]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("channel0_3") && e.contains("byte"), "{e}");
    assert!(e.contains("--skip-corrupt"), "{e}");
    let out = strata(&["cputop", d, "--skip-corrupt", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("skipped"), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["skipped"]["packets"].as_u64().unwrap() >= 1);
    assert!(doc["hosts"][0]["cputop"]["total_pct"].as_f64().unwrap() > 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `strata record` then `strata analyze` on its trace: Strata's own event
/// names and its `tid` context feed the analyses end to end.
#[test]
fn analyses_read_what_strata_records() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/sys/kernel/tracing/events").is_dir() {
        println!("analyses_read_what_strata_records: skipped: needs root and tracefs");
        return;
    }
    let dir = std::env::temp_dir().join(format!("strata-analyze-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rec = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["record", "-q", "-d", "1s", "-e", "sched,syscalls,irq", "-o"])
        .arg(&dir)
        .output()
        .expect("strata record runs");
    assert!(rec.status.success(), "record failed: {}", stderr(&rec));
    let doc = json(&["all", dir.to_str().unwrap(), "--top", "0"]);
    let _ = std::fs::remove_dir_all(&dir);
    let h = &doc["hosts"][0];
    let s = &h["summary"];
    assert!(s["syscalls"].as_u64().unwrap() > 0, "{s}");
    // The tid context names every event's thread: nothing is left
    // unattributed, and the state never contradicts a switch.
    assert_eq!(s["anomalies"]["syscalls_unattributed"], 0, "{s}");
    assert_eq!(s["anomalies"]["switch_mismatches"], 0, "{s}");
    assert!(h["syscalls"]["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["name"] == "write" || x["name"] == "read"));
    let cpu_ns: i64 = h["cputop"]["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["cpu_ns"].as_i64().unwrap())
        .sum();
    let busy: i64 = h["cputop"]["cpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["busy_ns"].as_i64().unwrap())
        .sum();
    assert_eq!(cpu_ns, busy);
}
