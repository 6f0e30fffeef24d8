//! Helpers shared by the store's integration tests: real tracefs formats
//! (fixtures copied from this kernel), crafted records, babeltrace2.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use strata_ftrace::format::{self, EventFormat};

/// Every fixture format, split into recorded events and `syscalls:*`.
pub fn fixtures() -> (Vec<EventFormat>, Vec<EventFormat>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events");
    let mut events = Vec::new();
    let mut syscalls = Vec::new();
    let mut systems: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().collect();
    systems.sort_by_key(|e| e.file_name());
    for sys in systems {
        if !sys.path().is_dir() {
            continue;
        }
        let system = sys.file_name().to_string_lossy().into_owned();
        let mut files: Vec<_> = std::fs::read_dir(sys.path()).unwrap().flatten().collect();
        files.sort_by_key(|e| e.file_name());
        for f in files {
            let text = std::fs::read_to_string(f.path()).unwrap();
            let fmt = format::parse(&system, &text).unwrap();
            if system == "syscalls" {
                syscalls.push(fmt);
            } else {
                events.push(fmt);
            }
        }
    }
    (events, syscalls)
}

/// The fixture format `system:name`.
pub fn format_of<'a>(all: &'a [EventFormat], name: &str) -> &'a EventFormat {
    all.iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

/// `babeltrace2` if it runs here.
pub fn babeltrace2() -> Option<PathBuf> {
    let ok = Command::new("babeltrace2")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then(|| PathBuf::from("babeltrace2"))
}

/// Runs `babeltrace2 [args] DIR`: (exit ok, stdout, stderr).
pub fn run_babeltrace(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("babeltrace2")
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A host description for tests.
pub fn host(cpus: u32) -> strata_core::HostInfo {
    strata_core::HostInfo {
        hostname: "store-test".into(),
        sysname: "Linux".into(),
        kernel_release: "6.18.0-test".into(),
        kernel_version: "#1 SMP".into(),
        machine_id: String::new(),
        boot_id: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
        cpu_count: cpus,
        vm_uuid: None,
    }
}

/// The monotonic clock of tests.
pub fn clock() -> strata_core::ClockDesc {
    strata_core::ClockDesc::nanoseconds("monotonic", "Monotonic Clock", 1_700_000_000_000_000_000)
}
