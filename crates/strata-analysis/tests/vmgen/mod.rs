//! Writes host traces the way `strata record` does, from scripted events:
//! records laid out by this kernel's real `format` files (copied under
//! `fixtures/vm-formats`), packed into ring-buffer pages in the kernel's
//! binary layout, and stored through strata-store's `TraceWriter` page path.

#![allow(dead_code)]

use std::path::Path;

use strata_ftrace::encode::{pack_pages, RecordBuilder};
use strata_ftrace::format::{self, EventFormat};
use strata_ftrace::{Page, PageLayout};
use strata_store::{StoreOptions, TraceWriter};

/// Time of the first scripted event, ns (offsets in scripts are added to it).
pub const T0: u64 = 5_000_000_000;

/// The fixture formats.
pub fn formats() -> Vec<EventFormat> {
    // Found from strata-analysis's tests and benches, and from other
    // crates' tests that include this file.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = [
        manifest.join("tests/fixtures/vm-formats"),
        manifest.join("../strata-analysis/tests/fixtures/vm-formats"),
    ]
    .into_iter()
    .find(|p| p.is_dir())
    .expect("the vm-formats fixtures");
    let mut out = Vec::new();
    for sys in ["kvm", "sched"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(sys))
            .unwrap()
            .flatten()
            .collect();
        files.sort_by_key(|e| e.file_name());
        for f in files {
            let text = std::fs::read_to_string(f.path()).unwrap();
            out.push(format::parse(sys, &text).unwrap());
        }
    }
    out
}

/// A scripted host: per CPU, records in time order.
pub struct Gen {
    fmts: Vec<EventFormat>,
    cpus: Vec<Vec<(u64, Vec<u8>)>>,
}

/// A thread as the script names it.
#[derive(Clone, Copy)]
pub struct T(pub i32, pub &'static str);

/// `prev_state` of a switch: still runnable (preempted).
pub const RUNNABLE: i64 = 0;
/// `prev_state` of a switch: sleeping.
pub const SLEEPING: i64 = 1;

impl Gen {
    /// A host with `cpus` CPUs.
    pub fn new(cpus: usize) -> Gen {
        Gen {
            fmts: formats(),
            cpus: vec![Vec::new(); cpus],
        }
    }

    fn fmt(&self, name: &str) -> &EventFormat {
        self.fmts.iter().find(|f| f.name == name).unwrap()
    }

    fn push(&mut self, cpu: usize, t: u64, rec: Vec<u8>) {
        let ts = T0 + t;
        let list = &mut self.cpus[cpu];
        assert!(list.last().is_none_or(|l| l.0 <= ts), "script out of order");
        list.push((ts, rec));
    }

    /// `sched_switch` on `cpu` at `t`.
    pub fn switch(&mut self, cpu: usize, t: u64, prev: T, prev_state: i64, next: T) {
        let r = RecordBuilder::new(self.fmt("sched_switch"), prev.0)
            .str("prev_comm", prev.1)
            .int("prev_pid", prev.0 as i64)
            .int("prev_prio", 120)
            .int("prev_state", prev_state)
            .str("next_comm", next.1)
            .int("next_pid", next.0 as i64)
            .int("next_prio", 120)
            .finish();
        self.push(cpu, t, r);
    }

    /// `sched_wakeup` of `woken` by `waker`, to run on `target`.
    pub fn wakeup(&mut self, cpu: usize, t: u64, waker: i32, woken: T, target: u32) {
        let r = RecordBuilder::new(self.fmt("sched_wakeup"), waker)
            .str("comm", woken.1)
            .int("pid", woken.0 as i64)
            .int("prio", 120)
            .int("target_cpu", target as i64)
            .finish();
        self.push(cpu, t, r);
    }

    /// `sched_process_fork`: `parent` creates `child`.
    pub fn fork(&mut self, cpu: usize, t: u64, parent: T, child: T) {
        let r = RecordBuilder::new(self.fmt("sched_process_fork"), parent.0)
            .str("parent_comm", parent.1)
            .int("parent_pid", parent.0 as i64)
            .str("child_comm", child.1)
            .int("child_pid", child.0 as i64)
            .finish();
        self.push(cpu, t, r);
    }

    /// `sched_process_exit` of thread `t`, by itself.
    pub fn thread_exit(&mut self, cpu: usize, t: u64, th: T) {
        let r = RecordBuilder::new(self.fmt("sched_process_exit"), th.0)
            .str("comm", th.1)
            .int("pid", th.0 as i64)
            .int("prio", 120)
            .finish();
        self.push(cpu, t, r);
    }

    /// `kvm_entry` by vCPU thread `tid`.
    pub fn entry(&mut self, cpu: usize, t: u64, tid: i32, vcpu: u32) {
        let r = RecordBuilder::new(self.fmt("kvm_entry"), tid)
            .int("vcpu_id", vcpu as i64)
            .int("rip", 0xfff0)
            .finish();
        self.push(cpu, t, r);
    }

    /// `kvm_exit` (VMX) by vCPU thread `tid`.
    pub fn exit(&mut self, cpu: usize, t: u64, tid: i32, vcpu: u32, reason: u32) {
        let r = RecordBuilder::new(self.fmt("kvm_exit"), tid)
            .int("exit_reason", reason as i64)
            .int("guest_rip", 0x1000)
            .int("isa", 1)
            .int("vcpu_id", vcpu as i64)
            .finish();
        self.push(cpu, t, r);
    }

    /// `kvm_userspace_exit` by vCPU thread `tid`.
    pub fn user_exit(&mut self, cpu: usize, t: u64, tid: i32, reason: u32) {
        let r = RecordBuilder::new(self.fmt("kvm_userspace_exit"), tid)
            .int("reason", reason as i64)
            .finish();
        self.push(cpu, t, r);
    }

    /// `kvm_pio` (a write) by vCPU thread `tid`.
    pub fn pio(&mut self, cpu: usize, t: u64, tid: i32, port: u32, val: u32) {
        let r = RecordBuilder::new(self.fmt("kvm_pio"), tid)
            .int("rw", 1)
            .int("port", port as i64)
            .int("size", 1)
            .int("count", 1)
            .int("val", val as i64)
            .finish();
        self.push(cpu, t, r);
    }

    /// Writes the trace into `dir`, as host `hostname`, a page at a time.
    /// Returns the number of pages written.
    pub fn write(&mut self, dir: &Path, hostname: &str) -> usize {
        let mut w = self.writer(dir, hostname);
        let n = self.flush_into(&mut w);
        w.finish().unwrap();
        n
    }

    /// Records buffered, all CPUs.
    pub fn buffered(&self) -> usize {
        self.cpus.iter().map(Vec::len).sum()
    }

    /// A trace writer for this host's events.
    pub fn writer(&self, dir: &Path, hostname: &str) -> TraceWriter {
        let host = strata_core::HostInfo {
            hostname: hostname.into(),
            sysname: "Linux".into(),
            kernel_release: "6.18.0-test".into(),
            kernel_version: "#1 SMP".into(),
            machine_id: String::new(),
            boot_id: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
            cpu_count: self.cpus.len() as u32,
            vm_uuid: None,
        };
        let clock = strata_core::ClockDesc::nanoseconds(
            "monotonic",
            "Monotonic Clock",
            1_700_000_000_000_000_000,
        );
        let opts = StoreOptions {
            packet_capacity: 4096,
            start_ts: Some(T0),
            ..StoreOptions::default()
        };
        TraceWriter::create(dir, &host, &clock, &self.fmts, &[], opts).unwrap()
    }

    /// Packs the buffered records into pages, pushes them to `w` and
    /// forgets them (so long traces stream through a bounded buffer).
    /// Returns the number of pages pushed.
    pub fn flush_into(&mut self, w: &mut TraceWriter) -> usize {
        let layout = PageLayout::default_x86_64();
        let mut n = 0;
        for (cpu, recs) in self.cpus.iter_mut().enumerate() {
            for bytes in pack_pages(recs, 4096) {
                let page = Page::parse(&layout, &bytes).unwrap();
                assert_eq!(w.push_page(cpu as u32, &page).unwrap(), None);
                n += 1;
            }
            recs.clear();
        }
        n
    }
}
