//! The `format` parser on real format files captured from Linux 6.18
//! (`tests/fixtures/formats/<group>/<event>`), and on every format of the
//! running kernel.

use std::fs;
use std::path::{Path, PathBuf};
use strata_ftrace::format::{self, FieldKind};
use strata_ftrace::{EventFormat, Tracefs};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats")
}

fn fixture(group: &str, event: &str) -> (String, EventFormat) {
    let text = fs::read_to_string(fixtures().join(group).join(event)).unwrap();
    let f = format::parse(group, &text).unwrap();
    (text, f)
}

/// Checks a parsed format against its own text, line by line, independently
/// of the parser: every `field:` line is a field with the same offset and size.
fn consistent_with_text(text: &str, f: &EventFormat) {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("field"))
        .collect();
    let all: Vec<_> = f.common.iter().chain(f.fields.iter()).collect();
    assert_eq!(lines.len(), all.len(), "{}: field count", f.name);
    for line in lines {
        let name_ok = all.iter().any(|fl| {
            line.contains(&format!(" {};", fl.name))
                || line.contains(&format!(" {}[", fl.name))
                || line.contains(&format!("*{};", fl.name))
        });
        assert!(name_ok, "{}: no field parsed for `{line}`", f.name);
    }
    for fl in &all {
        assert!(
            text.contains(&format!("offset:{};\tsize:{};", fl.offset, fl.size)),
            "{}: {} offset/size not in text",
            f.name,
            fl.name
        );
    }
    let id_line = text.lines().find_map(|l| l.strip_prefix("ID: ")).unwrap();
    assert_eq!(f.id.to_string(), id_line.trim());
    assert_eq!(
        f.common.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        [
            "common_type",
            "common_flags",
            "common_preempt_count",
            "common_pid"
        ]
    );
}

#[test]
fn every_fixture_parses_and_matches_its_text() {
    let mut n = 0;
    for group in fs::read_dir(fixtures()).unwrap() {
        let group = group.unwrap();
        for event in fs::read_dir(group.path()).unwrap() {
            let event = event.unwrap();
            let g = group.file_name().into_string().unwrap();
            let e = event.file_name().into_string().unwrap();
            let (text, f) = fixture(&g, &e);
            assert_eq!(f.name, e);
            assert_eq!(f.system, g);
            consistent_with_text(&text, &f);
            n += 1;
        }
    }
    assert!(n >= 40, "only {n} fixtures found");
}

#[test]
fn sched_switch_fields() {
    let (_, f) = fixture("sched", "sched_switch");
    let comm = f.field("prev_comm").unwrap();
    assert_eq!(comm.kind, FieldKind::CharArray);
    assert_eq!(comm.array_len(), Some(16));
    let pid = f.field("next_pid").unwrap();
    assert_eq!((pid.kind, pid.size, pid.signed), (FieldKind::Int, 4, true));
    let state = f.field("prev_state").unwrap();
    assert_eq!(state.size, 8);
}

#[test]
fn raw_syscalls_args_array() {
    let (_, f) = fixture("raw_syscalls", "sys_enter");
    let id = f.field("id").unwrap();
    assert_eq!((id.size, id.signed), (8, true));
    let args = f.field("args").unwrap();
    assert_eq!(args.kind, FieldKind::Array { elem_size: 8 });
    assert_eq!(args.array_len(), Some(6));
    let (_, exit) = fixture("raw_syscalls", "sys_exit");
    assert!(exit.field("ret").unwrap().signed);
}

#[test]
fn data_loc_strings() {
    for (g, e, field) in [
        ("block", "block_rq_issue", "cmd"),
        ("irq", "irq_handler_entry", "name"),
        ("sched", "sched_process_exec", "filename"),
    ] {
        let (_, f) = fixture(g, e);
        let fl = f.field(field).unwrap_or_else(|| panic!("{e}.{field}"));
        assert_eq!(
            fl.kind,
            FieldKind::DataLoc {
                elem_size: 1,
                is_char: true
            },
            "{e}.{field}"
        );
        assert_eq!(fl.size, 4);
    }
}

#[test]
fn ftrace_flexible_arrays() {
    let (_, print) = fixture("ftrace", "print");
    assert_eq!(
        print.field("buf").unwrap().kind,
        FieldKind::Flexible { elem_size: 1 }
    );
    let (_, stack) = fixture("ftrace", "kernel_stack");
    assert_eq!(
        stack.field("caller").unwrap().kind,
        FieldKind::Array { elem_size: 8 }
    );
}

#[test]
fn syscall_specific_formats() {
    let (_, f) = fixture("syscalls", "sys_enter_openat");
    assert!(f.field("__syscall_nr").is_some());
    let filename = f.field("filename").unwrap();
    assert_eq!(filename.size, 8);
    let (_, getppid) = fixture("syscalls", "sys_enter_getppid");
    assert_eq!(getppid.fields.len(), 1);
}

#[test]
fn every_format_on_this_kernel_parses() {
    let Ok(tracefs) = Tracefs::find_or_mount() else {
        println!("skipped: no tracefs here (needs root and a kernel with tracing)");
        return;
    };
    let events_dir = tracefs.root().join("events");
    let Ok(groups) = fs::read_dir(&events_dir) else {
        println!("skipped: cannot list {}", events_dir.display());
        return;
    };
    let mut parsed = 0;
    let mut failures = Vec::new();
    for group in groups.flatten() {
        if !group.path().is_dir() {
            continue;
        }
        let g = group.file_name().into_string().unwrap();
        for event in fs::read_dir(group.path()).unwrap().flatten() {
            let path = event.path().join("format");
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            match format::parse(&g, &text) {
                Ok(f) => {
                    consistent_with_text(&text, &f);
                    parsed += 1;
                }
                Err(e) => failures.push(format!("{}: {e}", path.display())),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(parsed > 100, "only {parsed} formats found");
    println!("parsed {parsed} live formats");
}
