//! The shared real LTTng kernel traces read fully and identically to
//! babeltrace2: event counts, order, timestamps and every printed field
//! value, plus the typed accessors on a sample of fields, and babeltrace's
//! own golden output for the tracefile-rotation trace.

#[path = "../../../tests-support/shared_traces.rs"]
mod shared_traces;
use shared_traces::shared_traces;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_ctf::read::{text, Event, OpenOptions, TraceSet, Value};

fn traces() -> Option<PathBuf> {
    shared_traces("read_real_traces")
}

fn has_babeltrace2() -> bool {
    let ok = Command::new("babeltrace2")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("babeltrace2 not installed: skipping the comparison");
    }
    ok
}

/// babeltrace2's text output. `no_muxer` reads the one stream of a trace in
/// file order, which babeltrace2's muxer refuses on tc-synctraces.
fn babeltrace2(dir: &Path, no_muxer: bool) -> Vec<String> {
    let mut cmd = Command::new("babeltrace2");
    cmd.env("TZ", "UTC");
    if no_muxer {
        let inputs = format!("inputs=[\"{}\"]", dir.display());
        cmd.args([
            "run",
            "-c",
            "src:source.ctf.fs",
            "-p",
            &inputs,
            "-c",
            "sink:sink.text.pretty",
            "--connect",
            "src:sink",
        ]);
    } else {
        cmd.arg(dir);
    }
    let out = cmd.output().expect("babeltrace2 runs");
    assert!(
        out.status.success(),
        "babeltrace2 failed on {}",
        dir.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn ours(dir: &Path) -> Vec<String> {
    let set = TraceSet::open(dir, &OpenOptions::default()).unwrap();
    let host = set.traces()[0].hostname().map(str::to_string);
    let mut events = set.events();
    let (mut out, mut prev) = (Vec::new(), None);
    while let Some(e) = events.next() {
        let e = e.unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
        let mut line = String::new();
        text::format_event(&mut line, &e, prev, host.as_deref());
        prev = Some(e.ts());
        out.push(line);
    }
    assert!(events.skipped().is_empty());
    assert_eq!(events.bytes_done(), set.total_bytes());
    out
}

/// babeltrace2 2.0 shows an empty string field with the value the same
/// field had in the previous event of its class (efficios/babeltrace#116,
/// fixed after 2.0.4). Such lines are equal once that string is blanked.
fn same_but_stale_empty_string(ours: &str, theirs: &str) -> bool {
    if !ours.contains("= \"\"") {
        return false;
    }
    let blank = |s: &str| {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find("= \"") {
            out.push_str(&rest[..i + 3]);
            rest = &rest[i + 3..];
            let end = rest.find('"').unwrap_or(rest.len());
            rest = &rest[end..];
        }
        out.push_str(rest);
        out
    };
    blank(ours) == blank(theirs)
}

fn compare(name: &str, no_muxer: bool) {
    let Some(root) = traces() else { return };
    if !has_babeltrace2() {
        return;
    }
    let dir = root.join(name);
    let theirs = babeltrace2(&dir, no_muxer);
    let ours = ours(&dir);
    assert_eq!(ours.len(), theirs.len(), "{name}: event count");
    assert!(!ours.is_empty());
    assert_eq!(ours.first(), theirs.first(), "{name}: first event");
    assert_eq!(ours.last(), theirs.last(), "{name}: last event");
    let mut stale = 0;
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        if a != b {
            assert!(
                same_but_stale_empty_string(a, b),
                "{name}: line {} differs:\n ours: {a}\n bt2:  {b}",
                i + 1
            );
            stale += 1;
        }
    }
    assert!(stale <= 2, "{name}: {stale} lines differ by stale strings");
}

#[test]
fn tc_many_threads_matches_babeltrace2() {
    compare("tc-many-threads", false);
}

#[test]
fn tracefile_rotation_matches_babeltrace2() {
    compare("bt-lttng-tracefile-rotation", false);
}

#[test]
fn synctraces_match_babeltrace2_without_its_muxer() {
    compare("tc-synctraces/scp_src", true);
    compare("tc-synctraces/scp_dest", true);
}

/// Parses babeltrace2's text line into (name, field -> value text).
fn parse_line(line: &str) -> (String, HashMap<String, String>) {
    let after_host = line.splitn(4, ' ').nth(3).unwrap_or("");
    let (name, rest) = after_host.split_once(": ").unwrap_or((after_host, ""));
    let mut fields = HashMap::new();
    for part in rest.split(", ") {
        let part = part.trim_start_matches("{ ").trim_end_matches(" }");
        if let Some((k, v)) = part.split_once(" = ") {
            fields.insert(k.to_string(), v.trim_matches('"').to_string());
        }
    }
    (name.to_string(), fields)
}

/// The typed accessors agree with babeltrace2 on sched_switch and syscall
/// exit fields, event by event.
#[test]
fn typed_fields_match_babeltrace2() {
    let Some(root) = traces() else { return };
    if !has_babeltrace2() {
        return;
    }
    let dir = root.join("tc-many-threads");
    let theirs = babeltrace2(&dir, false);
    let set = TraceSet::open(&dir, &OpenOptions::default()).unwrap();
    let mut events = set.events();
    let (mut switches, mut exits, mut i) = (0, 0, 0);
    while let Some(e) = events.next() {
        let e: Event<'_> = e.unwrap();
        let (name, fields) = parse_line(&theirs[i]);
        i += 1;
        assert_eq!(e.class().name(), name);
        assert_eq!(
            e.u64(e.class().field("cpu_id").unwrap())
                .map(|c| c.to_string())
                .as_deref(),
            fields.get("cpu_id").map(String::as_str)
        );
        let c = e.class();
        if name == "sched_switch" {
            switches += 1;
            let prev_tid = e.i64(c.field("prev_tid").unwrap()).unwrap();
            let next_comm = e.str(c.field("next_comm").unwrap()).unwrap();
            let prio = e.i64(c.field("next_prio").unwrap()).unwrap();
            assert_eq!(prev_tid.to_string(), fields["prev_tid"]);
            assert_eq!(String::from_utf8_lossy(next_comm), fields["next_comm"]);
            assert_eq!(prio.to_string(), fields["next_prio"]);
        } else if name.starts_with("syscall_exit_") {
            if let Some(ret) = c.field("ret") {
                exits += 1;
                assert_eq!(e.i64(ret).unwrap().to_string(), fields["ret"], "line {i}");
            }
        }
    }
    assert_eq!(i, theirs.len());
    assert!(
        switches > 1000 && exits > 1000,
        "{switches} switches, {exits} exits"
    );
}

/// babeltrace's own expected output for this trace (`sink.text.details`):
/// raw clock values, nanoseconds from origin, names and payload values.
#[test]
fn tracefile_rotation_matches_babeltrace_golden_output() {
    let Some(root) = traces() else { return };
    let root = root.join("bt-lttng-tracefile-rotation");
    let golden = std::fs::read_to_string(root.join("golden/sink.text.details.expect")).unwrap();
    let num = |s: &str| s.replace(',', "");
    struct G {
        cycles: String,
        ns: String,
        name: String,
        fields: Vec<(String, String)>,
    }
    let mut expected: Vec<G> = Vec::new();
    let mut stamp: Option<(String, String)> = None;
    let mut in_payload = false;
    for line in golden.lines() {
        if let Some(rest) = line.strip_prefix('[') {
            let mut parts = rest.split(' ');
            let cycles = num(parts.next().unwrap_or(""));
            let ns = num(parts.nth(1).unwrap_or(""));
            stamp = Some((cycles, ns));
            in_payload = false;
        } else if let Some(rest) = line.strip_prefix("Event `") {
            let name = rest.split('`').next().unwrap_or("").to_string();
            let (cycles, ns) = stamp.clone().unwrap();
            expected.push(G {
                cycles,
                ns,
                name,
                fields: Vec::new(),
            });
        } else if line == "  Payload:" {
            in_payload = true;
        } else if line.is_empty() {
            in_payload = false;
        } else if in_payload {
            if let (Some(g), Some((k, v))) = (expected.last_mut(), line.trim().split_once(": ")) {
                g.fields.push((k.to_string(), v.to_string()));
            }
        }
    }
    assert_eq!(expected.len(), golden.matches("\nEvent `").count());
    let set = TraceSet::open(&root.join("kernel"), &OpenOptions::default()).unwrap();
    let t = &set.traces()[0];
    assert_eq!(t.streams().len(), 4, "12 tracefiles make 4 streams");
    for s in t.streams() {
        let names: Vec<String> = s
            .files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let cpu = s.cpu.unwrap();
        let want: Vec<String> = (0..names.len())
            .map(|m| format!("mychan_{cpu}_{m}"))
            .collect();
        assert_eq!(names, want, "rotated files of CPU {cpu} in order");
    }
    let mut events = set.events();
    let mut n = 0;
    while let Some(e) = events.next() {
        let e = e.unwrap();
        let g = &expected[n];
        n += 1;
        assert_eq!(e.cycles().to_string(), g.cycles, "event {n}");
        assert_eq!(e.ts().to_string(), g.ns, "event {n}");
        assert_eq!(e.class().name(), g.name, "event {n}");
        // The details sink prints arrays as `name: Length N:` then `[i]: v`.
        let mut ours: Vec<(String, String)> = Vec::new();
        let show = |v: &Value<'_>| {
            let mut line = String::new();
            text::write_value(&mut line, v);
            line.trim_matches('"').to_string()
        };
        for (k, v) in e.fields() {
            match &v {
                Value::Array(items) => {
                    ours.push((k.to_string(), format!("Length {}:", items.len())));
                    for (i, it) in items.iter().enumerate() {
                        ours.push((format!("[{i}]"), show(it)));
                    }
                }
                _ => ours.push((k.to_string(), show(&v))),
            }
        }
        let theirs: Vec<(String, String)> = g
            .fields
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if v.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
                        num(v)
                    } else {
                        v.clone()
                    },
                )
            })
            .collect();
        assert_eq!(ours, theirs, "event {n} payload");
    }
    assert_eq!(n, expected.len());
}

/// The LTTng index files agree with the packets where they exist.
#[test]
fn index_files_agree_with_the_packets() {
    let Some(root) = traces() else { return };
    for (name, want) in [
        ("tc-many-threads", Some(true)),
        ("bt-lttng-tracefile-rotation/kernel", Some(true)),
        ("tc-synctraces/scp_src", None),
    ] {
        let set = TraceSet::open(&root.join(name), &OpenOptions::default()).unwrap();
        let t = &set.traces()[0];
        for (i, s) in t.streams().iter().enumerate() {
            assert_eq!(t.index_consistent(i), want, "{name}: {:?}", s.files);
        }
    }
}

/// A directory of several traces: each found, classes indexed densely
/// across them, events merged in time order with ties by trace.
#[test]
fn several_traces_merge_in_time_order() {
    let Some(root) = traces() else { return };
    let dir = root.join("tc-synctraces");
    let set = TraceSet::open(&dir, &OpenOptions::default()).unwrap();
    let t = set.traces();
    assert_eq!(t.len(), 2);
    assert!(t[0].path().ends_with("scp_dest") && t[1].path().ends_with("scp_src"));
    assert_ne!(t[0].hostname(), t[1].hostname());
    let per_trace: Vec<usize> = t.iter().map(|t| t.event_classes().len()).collect();
    assert_eq!(set.class_count(), per_trace.iter().sum::<usize>());
    let idx: Vec<usize> = set.event_classes().map(|c| c.index()).collect();
    assert_eq!(idx, (0..set.class_count()).collect::<Vec<_>>());
    let singles: Vec<u64> = t
        .iter()
        .map(|tr| {
            let one = TraceSet::open(tr.path(), &OpenOptions::default()).unwrap();
            let mut ev = one.events();
            let mut n = 0;
            while let Some(e) = ev.next() {
                e.unwrap();
                n += 1;
            }
            n
        })
        .collect();
    let mut events = set.events();
    let (mut n, mut counts, mut prev) = (0u64, [0u64; 2], (i64::MIN, 0usize));
    while let Some(e) = events.next() {
        let e = e.unwrap();
        n += 1;
        counts[e.trace()] += 1;
        assert_eq!(e.class().trace(), e.trace());
        assert_eq!(e.class_index(), e.class().index());
        let key = (e.ts(), e.trace());
        assert!(
            key >= prev,
            "event {n} out of order: {key:?} after {prev:?}"
        );
        prev = key;
    }
    assert_eq!(counts.to_vec(), singles);
    assert_eq!(events.bytes_done(), set.total_bytes());
}

/// Every integer and enum field of every event, read through the typed
/// accessors (`u64`, `i64`: the byte-aligned fast path where the layout
/// allows, the bit reader otherwise), equals the generic decoder's value.
#[test]
fn integer_accessors_match_the_generic_decoder() {
    let Some(root) = traces() else { return };
    let mut checked = 0u64;
    for name in [
        "tc-many-threads",
        "tc-synctraces",
        "bt-lttng-tracefile-rotation",
    ] {
        let set = TraceSet::open(&root.join(name), &OpenOptions::default()).expect("opens");
        let mut events = set.events();
        while let Some(e) = events.next() {
            let e = e.expect("valid trace");
            for (fname, f, k) in e.class().fields() {
                use strata_ctf::read::FieldKind;
                if !matches!(k, FieldKind::Int(_) | FieldKind::Enum) {
                    continue;
                }
                let want = match e.value(f) {
                    Some(Value::U64(v)) | Some(Value::Based(v, _)) => v as i64,
                    Some(Value::I64(v)) | Some(Value::Enum(v, _)) => v,
                    other => panic!("{name}: {fname}: unexpected generic value {other:?}"),
                };
                let signed = e.i64(f).expect("integer reads");
                assert_eq!(signed, want, "{name}: {fname} as i64");
                assert_eq!(e.u64(f), Some(signed as u64), "{name}: {fname} as u64");
                checked += 1;
            }
        }
    }
    assert!(checked > 1_000_000, "only {checked} integer fields checked");
}
