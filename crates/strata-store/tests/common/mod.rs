//! Helpers shared by the store's integration tests: real tracefs formats
//! (fixtures copied from this kernel), crafted records, babeltrace2.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use strata_ftrace::format::{self, EventFormat, FieldKind};

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

/// Builds a record of one event type field by field.
pub struct Rec<'a> {
    pub fmt: &'a EventFormat,
    pub bytes: Vec<u8>,
}

impl<'a> Rec<'a> {
    pub fn new(fmt: &'a EventFormat, common_pid: i32) -> Rec<'a> {
        let mut bytes = vec![0u8; fmt.min_record_len() as usize];
        bytes[0..2].copy_from_slice(&fmt.id.to_le_bytes());
        bytes[4..8].copy_from_slice(&common_pid.to_le_bytes());
        Rec { fmt, bytes }
    }

    fn field(&self, name: &str) -> &strata_ftrace::format::Field {
        self.fmt
            .field(name)
            .unwrap_or_else(|| panic!("{} has no field {name}", self.fmt.name))
    }

    pub fn int(mut self, name: &str, v: i64) -> Self {
        let f = self.field(name).clone();
        let o = f.offset as usize;
        self.bytes[o..o + f.size as usize].copy_from_slice(&v.to_le_bytes()[..f.size as usize]);
        self
    }

    pub fn elem(mut self, name: &str, i: usize, v: u64) -> Self {
        let f = self.field(name).clone();
        let FieldKind::Array { elem_size } = f.kind else {
            panic!("{name} is not an array")
        };
        let o = f.offset as usize + i * elem_size as usize;
        self.bytes[o..o + elem_size as usize]
            .copy_from_slice(&v.to_le_bytes()[..elem_size as usize]);
        self
    }

    /// Sets a string field, fixed (`char[N]`) or dynamic (`__data_loc`).
    pub fn str(mut self, name: &str, s: &str) -> Self {
        let f = self.field(name).clone();
        let o = f.offset as usize;
        match f.kind {
            FieldKind::CharArray => {
                let n = s.len().min(f.size as usize - 1);
                self.bytes[o..o + n].copy_from_slice(&s.as_bytes()[..n]);
            }
            FieldKind::DataLoc { .. } => {
                let at = self.bytes.len();
                self.bytes.extend_from_slice(s.as_bytes());
                self.bytes.push(0);
                let loc = (((s.len() + 1) as u32) << 16) | at as u32;
                self.bytes[o..o + 4].copy_from_slice(&loc.to_le_bytes());
            }
            k => panic!("{name} is {k:?}, not a string"),
        }
        self
    }

    /// Sets a `__data_loc` array field to raw bytes.
    pub fn dyn_bytes(mut self, name: &str, data: &[u8]) -> Self {
        let f = self.field(name).clone();
        let o = f.offset as usize;
        let at = self.bytes.len();
        self.bytes.extend_from_slice(data);
        let loc = ((data.len() as u32) << 16) | at as u32;
        self.bytes[o..o + 4].copy_from_slice(&loc.to_le_bytes());
        self
    }

    pub fn done(self) -> Vec<u8> {
        self.bytes
    }
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
