//! Helpers shared by the integration tests: skips, running strata, and
//! reading traces through the real babeltrace2.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// True when the test can use tracefs as root; otherwise prints why not.
pub fn skip_unless_root_with_tracefs() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP: needs root to use tracefs");
        return false;
    }
    let mounted = std::fs::read_to_string("/proc/mounts").is_ok_and(|m| m.contains(" tracefs "));
    if !mounted {
        let _ = Command::new("mount")
            .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
            .status();
    }
    if !Path::new("/sys/kernel/tracing/instances").is_dir() {
        println!("SKIP: no tracefs at /sys/kernel/tracing");
        return false;
    }
    true
}

/// True when babeltrace2 runs; otherwise prints why the test skips.
pub fn have_babeltrace() -> bool {
    let ok = Command::new("babeltrace2")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("SKIP: babeltrace2 is not installed (apt-get install babeltrace2)");
    }
    ok
}

/// Runs `strata ARGS` and returns (success, stdout, stderr).
pub fn run_strata(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(STRATA)
        .args(args)
        .output()
        .expect("strata runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The name the calling thread has in the kernel (`comm`).
pub fn own_comm() -> String {
    std::fs::read_to_string("/proc/thread-self/comm")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// One event as babeltrace2 prints it: its name, the top-level fields of
/// its contexts and of its payload, values as printed.
#[derive(Debug, Clone)]
pub struct BtEvent {
    /// The event name.
    pub name: String,
    /// Context fields (packet, stream event, event contexts).
    pub context: HashMap<String, String>,
    /// Payload field name to printed value (strings without their quotes).
    pub fields: HashMap<String, String>,
}

fn parse_int(v: &str) -> Option<i64> {
    match v.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

impl BtEvent {
    /// An integer payload field.
    pub fn int(&self, key: &str) -> Option<i64> {
        parse_int(self.fields.get(key)?)
    }

    /// An integer context field (`cpu_id`, `tid`).
    pub fn ctx(&self, key: &str) -> Option<i64> {
        parse_int(self.context.get(key)?)
    }

    /// A string payload field.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
}

/// Every event of the trace at `dir`, read by babeltrace2; panics with its
/// stderr when babeltrace2 fails.
pub fn babeltrace_events(dir: &Path) -> Vec<BtEvent> {
    try_babeltrace_events(dir).unwrap_or_else(|e| panic!("{e}"))
}

/// Every event of the trace at `dir`, read by babeltrace2.
pub fn try_babeltrace_events(dir: &Path) -> Result<Vec<BtEvent>, String> {
    let out = Command::new("babeltrace2")
        .arg(dir)
        .output()
        .map_err(|e| format!("babeltrace2 does not run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "babeltrace2 failed on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(parse_line)
        .collect())
}

/// Parses `[ts] (+delta) host name: { a = 1 }, { b = "x", c = 2 }`.
fn parse_line(line: &str) -> Option<BtEvent> {
    let rest = line.split_once("] ")?.1;
    let rest = rest.split_once(") ").map_or(rest, |(_, r)| r);
    let (head, body) = rest.split_once(": ")?;
    let name = head.rsplit(' ').next()?.to_string();
    let mut groups = top_level_groups(body);
    let fields = groups.pop().unwrap_or_default().into_iter().collect();
    let context = groups.into_iter().flatten().collect();
    Some(BtEvent {
        name,
        context,
        fields,
    })
}

/// Splits the `{ k = v, ... }` groups into lists of (k, v) pairs at brace
/// depth 1, respecting quotes and nested braces or brackets.
fn top_level_groups(body: &str) -> Vec<Vec<(String, String)>> {
    let mut groups = Vec::new();
    let mut pairs = Vec::new();
    let mut depth = 0;
    let mut in_str = false;
    let mut escaped = false;
    let mut item = String::new();
    let flush = |item: &mut String, pairs: &mut Vec<(String, String)>| {
        if let Some((k, v)) = item.split_once(" = ") {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .unwrap_or(v);
            pairs.push((k.trim().to_string(), v.to_string()));
        }
        item.clear();
    };
    for c in body.chars() {
        if in_str {
            item.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                item.push(c);
            }
            '{' | '[' => {
                depth += 1;
                if depth > 1 {
                    item.push(c);
                }
            }
            '}' | ']' => {
                if depth == 1 {
                    flush(&mut item, &mut pairs);
                    groups.push(std::mem::take(&mut pairs));
                } else {
                    item.push(c);
                }
                depth -= 1;
            }
            ',' if depth == 1 => flush(&mut item, &mut pairs),
            _ if depth >= 1 => item.push(c),
            _ => {}
        }
    }
    groups
}

#[test]
fn parses_babeltrace_lines() {
    let e = parse_line(r#"[06:55:27.737425804] (+0.000000000) vm sched_switch: { cpu_id = 1 }, { tid = 3 }, { prev_comm = "a, {b}", prev_tid = 7, arr = [ [0] = 1, [1] = 2 ], next_tid = 0x10 }"#).unwrap();
    assert_eq!(e.name, "sched_switch");
    assert_eq!(e.ctx("cpu_id"), Some(1));
    assert_eq!(e.ctx("tid"), Some(3));
    assert_eq!(e.int("tid"), None);
    assert_eq!(e.str("prev_comm"), Some("a, {b}"));
    assert_eq!(e.int("prev_tid"), Some(7));
    assert_eq!(e.int("next_tid"), Some(16));
    assert!(e.fields.contains_key("arr"));
    let empty = parse_line("[0] (+?) h lttng_statedump_start: { cpu_id = 0 }, { }").unwrap();
    assert!(empty.fields.is_empty());
    assert_eq!(empty.ctx("cpu_id"), Some(0));
}
