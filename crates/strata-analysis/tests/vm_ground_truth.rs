//! The VM model against scripted ground truth: host traces written in the
//! kernel's ring-buffer page layout with this kernel's real `kvm_entry`,
//! `kvm_exit`, `kvm_userspace_exit`, `kvm_pio`, `sched_switch`,
//! `sched_wakeup` and `sched_process_fork` formats, stored through
//! strata-store's page path as `strata record` does, read back by the CTF
//! reader, and run through the VM driver. Every interval and metric is
//! compared with what the script says, exactly.

mod vmgen;

use std::path::Path;

use strata_analysis::vm::driver::{self, VmAnalysis, VmOptions};
use strata_analysis::vm::hints::VmHint;
use strata_analysis::vm::report::{VmHostReport, VmReport};
use strata_analysis::vm::VcpuState::{self, *};
use strata_ctf::read::{OpenOptions, TraceSet};
use vmgen::{Gen, RUNNABLE, SLEEPING, T, T0};

const QEMU_A: T = T(100, "qemu-system-x86");
const VCPU_A: T = T(101, "CPU 0/KVM");
const QEMU_B: T = T(200, "qemu-system-x86");
const VCPU_B: T = T(201, "CPU 0/KVM");
const IDLE: T = T(0, "swapper/0");

const EXTERNAL_INTERRUPT: u32 = 1;
const HLT: u32 = 12;
const IO_INSTRUCTION: u32 = 30;
const MSR_WRITE: u32 = 32;
const EPT_VIOLATION: u32 = 48;

/// An interval relative to the first event: (tid, state, start, end,
/// cause name, cpu).
type Iv = (i32, VcpuState, i64, i64, String, Option<u32>);

fn iv(tid: i32, s: VcpuState, a: i64, b: i64, cause: &str, cpu: Option<u32>) -> Iv {
    (tid, s, a, b, cause.to_string(), cpu)
}

fn analyse(dir: &Path, opts: &VmOptions) -> VmAnalysis {
    let set = TraceSet::open(dir, &OpenOptions::default()).expect("the trace opens");
    driver::run(&set, opts).expect("the trace reads")
}

/// The recorded intervals of host 0, relative to its first event, by tid
/// then start.
fn intervals(a: &VmAnalysis) -> Vec<Iv> {
    let m = &a.models[0].model;
    let begin = m.begin().unwrap();
    let mut out: Vec<Iv> = m
        .intervals()
        .iter()
        .map(|i| {
            (
                m.vcpus()[i.vcpu].tid,
                i.state,
                i.start - begin,
                i.end - begin,
                i.cause.map_or(String::new(), |c| c.name()),
                i.cpu,
            )
        })
        .collect();
    out.sort_by_key(|x| (x.0, x.2));
    out
}

fn vm<'a>(r: &'a VmHostReport, name: &str) -> &'a VmReport {
    r.vms.iter().find(|v| v.name == name).unwrap_or_else(|| {
        panic!(
            "no VM {name} in {:?}",
            r.vms.iter().map(|v| &v.name).collect::<Vec<_>>()
        )
    })
}

fn opts_with(hints: Vec<VmHint>) -> VmOptions {
    VmOptions {
        hints,
        record_intervals: true,
        ..VmOptions::default()
    }
}

/// Two KVM VMs take turns on one host CPU: each is preempted by the other.
fn two_vms_one_cpu() -> Gen {
    let mut g = Gen::new(1);
    g.fork(0, 0, QEMU_A, VCPU_A);
    g.fork(0, 0, QEMU_B, VCPU_B);
    g.switch(0, 0, IDLE, SLEEPING, VCPU_A);
    g.entry(0, 100, 101, 0);
    g.exit(0, 1000, 101, 0, EXTERNAL_INTERRUPT);
    g.switch(0, 1100, VCPU_A, RUNNABLE, VCPU_B);
    g.entry(0, 1200, 201, 0);
    g.exit(0, 2000, 201, 0, HLT);
    g.switch(0, 2100, VCPU_B, SLEEPING, VCPU_A);
    g.entry(0, 2200, 101, 0);
    g.exit(0, 3000, 101, 0, MSR_WRITE);
    g.entry(0, 3050, 101, 0);
    g.wakeup(0, 3100, 101, VCPU_B, 0);
    g.exit(0, 3500, 101, 0, EXTERNAL_INTERRUPT);
    g.switch(0, 3600, VCPU_A, RUNNABLE, VCPU_B);
    g.entry(0, 3700, 201, 0);
    g.exit(0, 4000, 201, 0, IO_INSTRUCTION);
    g
}

fn hints_ab() -> Vec<VmHint> {
    vec![
        VmHint {
            name: Some("vm-a".into()),
            uuid: Some("aaaaaaaa-0000-0000-0000-000000000001".into()),
            qemu_pid: Some(100),
            vcpus: vec![],
        },
        VmHint {
            name: Some("vm-b".into()),
            uuid: None,
            qemu_pid: Some(200),
            vcpus: vec![],
        },
    ]
}

#[test]
fn two_vms_sharing_a_cpu_preempt_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    two_vms_one_cpu().write(tmp.path(), "host");
    let a = analyse(tmp.path(), &opts_with(hints_ab()));
    let c0 = Some(0);
    let expected = vec![
        iv(101, OnCpu, 0, 100, "", c0),
        iv(101, Running, 100, 1000, "", c0),
        iv(101, Vmm, 1000, 1100, "EXTERNAL_INTERRUPT", c0),
        iv(101, Preempted, 1100, 2100, "", c0),
        iv(101, Vmm, 2100, 2200, "EXTERNAL_INTERRUPT", c0),
        iv(101, Running, 2200, 3000, "", c0),
        iv(101, Vmm, 3000, 3050, "MSR_WRITE", c0),
        iv(101, Running, 3050, 3500, "", c0),
        iv(101, Vmm, 3500, 3600, "EXTERNAL_INTERRUPT", c0),
        iv(101, Preempted, 3600, 4000, "", c0),
        iv(201, Unknown, 0, 1100, "", None),
        iv(201, OnCpu, 1100, 1200, "", c0),
        iv(201, Running, 1200, 2000, "", c0),
        iv(201, Vmm, 2000, 2100, "HLT", c0),
        iv(201, Idle, 2100, 3100, "", None),
        iv(201, Preempted, 3100, 3600, "", c0),
        iv(201, Vmm, 3600, 3700, "HLT", c0),
        iv(201, Running, 3700, 4000, "", c0),
    ];
    assert_eq!(intervals(&a), expected);

    let r = &a.reports[0];
    assert_eq!(r.duration_ns, 4000);
    assert_eq!(r.vms.len(), 2);
    let va = vm(r, "vm-a");
    assert_eq!(va.pid, Some(100));
    assert_eq!(
        va.uuid.as_deref(),
        Some("aaaaaaaa-0000-0000-0000-000000000001")
    );
    assert!(va.vmm_visible);
    let t = &va.times;
    assert_eq!(
        (
            t.running_ns,
            t.vmm_ns,
            t.preempted_ns,
            t.idle_ns,
            t.unknown_ns
        ),
        (2150, Some(350), 1400, 0, 100)
    );
    assert_eq!((t.demand_ns, t.granted_ns), (3900, 2500));
    assert_eq!(t.steal_pct, Some(100.0 * 1400.0 / 3900.0));
    assert_eq!(va.vcpus.len(), 1);
    assert_eq!(va.vcpus[0].times, va.times);
    let vb = vm(r, "vm-b");
    let t = &vb.times;
    assert_eq!(
        (
            t.running_ns,
            t.vmm_ns,
            t.preempted_ns,
            t.idle_ns,
            t.unknown_ns
        ),
        (1100, Some(200), 500, 1000, 1200)
    );
    // The preempted-by matrix names the other VM, for all the time.
    assert_eq!(va.preempted_by.len(), 1);
    let p = &va.preempted_by[0];
    assert_eq!(
        (p.kind, p.vm.as_deref(), p.vcpu, p.ns),
        ("vcpu", Some("vm-b"), Some(0), 1400)
    );
    assert_eq!(vb.preempted_by.len(), 1);
    let p = &vb.preempted_by[0];
    assert_eq!((p.kind, p.vm.as_deref(), p.ns), ("vcpu", Some("vm-a"), 500));
    // Exit reasons and exit-to-entry latency.
    let exits: Vec<_> = va
        .exits
        .iter()
        .map(|e| {
            (
                e.reason.as_str(),
                e.count,
                e.latency.count,
                e.latency.total_ns,
            )
        })
        .collect();
    assert_eq!(
        exits,
        vec![("EXTERNAL_INTERRUPT", 2, 1, 1200), ("MSR_WRITE", 1, 1, 50)]
    );
    let exits: Vec<_> = vb
        .exits
        .iter()
        .map(|e| {
            (
                e.reason.as_str(),
                e.count,
                e.latency.count,
                e.latency.total_ns,
            )
        })
        .collect();
    assert_eq!(
        exits,
        vec![("HLT", 1, 1, 1700), ("IO_INSTRUCTION", 1, 0, 0)]
    );
    // Both wanted the single CPU from 1100 to 2100 and from 3100 on.
    let o = r.overcommit;
    assert_eq!(
        (o.physical_cpus, o.intervals, o.total_ns, o.max_runnable),
        (1, 2, 1900, 2)
    );
    let begin = T0 as i64 + 1_700_000_000_000_000_000;
    assert_eq!(o.longest, Some((begin + 1100, begin + 2100)));
}

#[test]
fn an_exit_storm_is_counted_exactly_across_pages() {
    const N: u64 = 20_000;
    let reasons = [EXTERNAL_INTERRUPT, IO_INSTRUCTION, EPT_VIOLATION, MSR_WRITE];
    let names = [
        "EXTERNAL_INTERRUPT",
        "IO_INSTRUCTION",
        "EPT_VIOLATION",
        "MSR_WRITE",
    ];
    let vcpu = T(301, "CPU 0/KVM");
    let mut g = Gen::new(2);
    g.switch(0, 0, IDLE, SLEEPING, vcpu);
    g.switch(1, 0, T(0, "swapper/1"), SLEEPING, T(900, "bash"));
    let mut expected = vec![iv(301, OnCpu, 0, 100, "", Some(0))];
    let mut running = 0i64;
    let mut lat: [(u64, i64, i64, i64); 4] = [(0, 0, i64::MAX, 0); 4];
    for i in 0..N {
        let e = 1000 * i + 100;
        let x = e + 600 + (i % 7) * 10;
        let next = 1000 * (i + 1) + 100;
        let k = (i % 4) as usize;
        g.entry(0, e, 301, 0);
        g.exit(0, x, 301, 0, reasons[k]);
        expected.push(iv(301, Running, e as i64, x as i64, "", Some(0)));
        expected.push(iv(301, Vmm, x as i64, next as i64, names[k], Some(0)));
        running += (x - e) as i64;
        let l = (next - x) as i64;
        let s = &mut lat[k];
        *s = (s.0 + 1, s.1 + l, s.2.min(l), s.3.max(l));
    }
    g.entry(0, 1000 * N + 100, 301, 0);
    let tmp = tempfile::tempdir().unwrap();
    let pages = g.write(tmp.path(), "host");
    assert!(pages > 100, "the storm spans many pages ({pages})");
    let a = analyse(tmp.path(), &opts_with(vec![]));
    let got = intervals(&a);
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "intervals differ from the script");
    let r = &a.reports[0];
    assert_eq!(r.vms.len(), 1);
    let v = &r.vms[0];
    assert_eq!(
        v.name, "tid 301",
        "with no process known, the VM is named by its thread"
    );
    let span = (1000 * N + 100) as i64;
    assert_eq!(v.times.running_ns, running);
    assert_eq!(v.times.vmm_ns, Some(span - 100 - running));
    assert_eq!(v.times.unknown_ns, 100);
    for (k, name) in names.iter().enumerate() {
        let e = v.exits.iter().find(|e| e.reason == *name).unwrap();
        assert_eq!(e.count, N / 4);
        let (n, total, min, max) = lat[k];
        assert_eq!(
            (
                e.latency.count,
                e.latency.total_ns,
                e.latency.min_ns,
                e.latency.max_ns
            ),
            (n, total, Some(min), Some(max)),
            "{name}"
        );
    }
    assert_eq!(r.overcommit.physical_cpus, 2);
    assert_eq!(r.overcommit.intervals, 0);
}

#[test]
fn an_idle_guest_and_a_preempting_host_thread() {
    let qemu = T(400, "qemu-system-x86");
    let vcpu = T(401, "CPU 0/KVM");
    let stress = T(500, "stress");
    let idle1 = T(0, "swapper/1");
    let mut g = Gen::new(2);
    g.switch(0, 0, IDLE, SLEEPING, T(900, "bash"));
    g.fork(1, 0, qemu, vcpu);
    g.switch(1, 0, idle1, SLEEPING, vcpu);
    g.entry(1, 10, 401, 0);
    g.exit(1, 500, 401, 0, IO_INSTRUCTION);
    g.pio(1, 520, 401, 0x3f8, 7);
    g.user_exit(1, 540, 401, 2);
    g.entry(1, 600, 401, 0);
    g.exit(1, 900, 401, 0, HLT);
    g.switch(1, 950, vcpu, SLEEPING, idle1);
    g.wakeup(1, 5000, 0, vcpu, 1);
    g.switch(1, 5100, idle1, SLEEPING, vcpu);
    g.entry(1, 5150, 401, 0);
    g.switch(1, 6000, vcpu, RUNNABLE, stress);
    g.switch(1, 8000, stress, SLEEPING, vcpu);
    g.exit(1, 9000, 401, 0, EXTERNAL_INTERRUPT);
    let tmp = tempfile::tempdir().unwrap();
    g.write(tmp.path(), "host");
    let a = analyse(tmp.path(), &opts_with(vec![]));
    let c1 = Some(1);
    assert_eq!(
        intervals(&a),
        vec![
            iv(401, OnCpu, 0, 10, "", c1),
            iv(401, Running, 10, 500, "", c1),
            iv(401, Vmm, 500, 540, "IO_INSTRUCTION", c1),
            iv(401, VmmUser, 540, 600, "user:IO", c1),
            iv(401, Running, 600, 900, "", c1),
            iv(401, Vmm, 900, 950, "HLT", c1),
            iv(401, Idle, 950, 5000, "", None),
            iv(401, Preempted, 5000, 5100, "", c1),
            iv(401, Vmm, 5100, 5150, "HLT", c1),
            iv(401, Running, 5150, 6000, "", c1),
            iv(401, Preempted, 6000, 8000, "", c1),
            iv(401, Running, 8000, 9000, "", c1),
        ]
    );
    let r = &a.reports[0];
    let v = vm(r, "pid 400");
    assert_eq!(v.pid, Some(400), "the vCPU's process is its creator's");
    let t = &v.times;
    assert_eq!(
        (
            t.running_ns,
            t.vmm_ns,
            t.vmm_user_ns,
            t.preempted_ns,
            t.idle_ns,
            t.unknown_ns
        ),
        (2640, Some(200), Some(60), 2100, 4050, 10)
    );
    let by: Vec<_> = v
        .preempted_by
        .iter()
        .map(|p| (p.kind, p.tid, p.comm.as_str(), p.ns))
        .collect();
    assert_eq!(
        by,
        vec![
            ("thread", Some(500), "stress", 2000),
            ("idle", Some(0), "swapper/1", 100)
        ]
    );
    assert_eq!(v.pio.count, 1);
    assert_eq!(v.pio.ports, vec![(0x3f8, 1)]);
    let user: Vec<_> = v
        .userspace_exits
        .iter()
        .map(|e| (e.reason.as_str(), e.count))
        .collect();
    assert_eq!(user, vec![("user:IO", 1)]);
    let hlt = v.exits.iter().find(|e| e.reason == "HLT").unwrap();
    assert_eq!((hlt.count, hlt.latency.total_ns), (1, 4250));
}

#[test]
fn a_tcg_guest_shows_no_hypervisor_time() {
    let tcg = T(601, "CPU 0/TCG");
    let other = T(700, "make");
    let mut g = Gen::new(1);
    g.switch(0, 0, IDLE, SLEEPING, tcg);
    g.switch(0, 3000, tcg, RUNNABLE, other);
    g.switch(0, 4000, other, SLEEPING, tcg);
    g.switch(0, 6000, tcg, SLEEPING, IDLE);
    g.wakeup(0, 8000, 0, tcg, 0);
    g.switch(0, 8200, IDLE, SLEEPING, tcg);
    g.switch(0, 9000, tcg, RUNNABLE, other);
    let tmp = tempfile::tempdir().unwrap();
    g.write(tmp.path(), "host");
    let a = analyse(tmp.path(), &opts_with(vec![]));
    let v = &a.reports[0].vms[0];
    assert_eq!(format!("{:?}", v.accel), "Tcg");
    assert!(!v.vmm_visible);
    let t = &v.times;
    assert_eq!(
        (
            t.running_ns,
            t.vmm_ns,
            t.preempted_ns,
            t.idle_ns,
            t.unknown_ns
        ),
        (5800, None, 1200, 2000, 0)
    );
    assert_eq!(t.pct.vmm, None);
}

#[test]
fn an_exited_vcpu_thread_is_unknown_afterwards_and_its_tid_reusable() {
    let vcpu = T(601, "CPU 0/TCG");
    let mut g = Gen::new(1);
    g.switch(0, 0, IDLE, SLEEPING, vcpu);
    g.thread_exit(0, 1000, vcpu);
    // TASK_DEAD's switch-out does not bring it back.
    g.switch(0, 1010, vcpu, 0x80, IDLE);
    g.fork(0, 1500, T(1, "systemd"), T(601, "worker"));
    g.switch(0, 1600, IDLE, SLEEPING, T(601, "CPU 0/TCG"));
    g.switch(0, 2000, T(601, "CPU 0/TCG"), SLEEPING, IDLE);
    let tmp = tempfile::tempdir().unwrap();
    g.write(tmp.path(), "host");
    let a = analyse(tmp.path(), &opts_with(vec![]));
    let c0 = Some(0);
    assert_eq!(
        intervals(&a),
        vec![
            iv(601, OnCpu, 0, 1000, "", c0),
            iv(601, Unknown, 0, 1600, "", None),
            iv(601, Unknown, 1000, 2000, "", None),
            iv(601, OnCpu, 1600, 2000, "", c0),
        ]
    );
    assert_eq!(a.reports[0].vms.len(), 2, "the reused tid is another vCPU");
}

#[test]
fn the_fused_view_splits_guest_threads_by_their_vcpu_state() {
    let tmp = tempfile::tempdir().unwrap();
    two_vms_one_cpu().write(&tmp.path().join("0-host"), "host");
    let mut guest = Gen::new(1);
    guest.switch(0, 0, IDLE, SLEEPING, T(1234, "hog"));
    guest.switch(0, 3300, T(1234, "hog"), RUNNABLE, T(1300, "sh"));
    let gdir = tmp.path().join("1-guest");
    guest.write(&gdir, "vm-a");
    let mut opts = opts_with(hints_ab());
    opts.guests = vec![(gdir.clone(), None)];
    let a = analyse(tmp.path(), &opts);
    assert!(a.unpaired_guests.is_empty());
    let va = vm(&a.reports[0], "vm-a");
    let g = va.guest.as_ref().expect("the guest trace is paired");
    assert_eq!(g.paired_by, "hostname");
    let rows: Vec<_> = g
        .threads
        .iter()
        .map(|t| {
            (
                t.comm.as_str(),
                t.guest_running_ns,
                t.really_running_ns,
                t.vmm_ns,
                t.preempted_ns,
                t.other_ns,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("hog", 3300, 1950, Some(250), 1000, 100),
            ("sh", 700, 200, Some(100), 400, 0),
        ]
    );
    assert!(vm(&a.reports[0], "vm-b").guest.is_none());
}

#[test]
fn the_vmx_names_are_the_kernels() {
    // The `kvm_exit` format prints VMX reasons with
    // `__print_symbolic(REC->exit_reason & 0xffff, { 0, "EXCEPTION_NMI" }, ...)`
    // before the SVM table: read that list from this kernel's format.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vm-formats/kvm/kvm_exit");
    let text = std::fs::read_to_string(path).unwrap();
    let vmx = text
        .split("exit_reason & 0xffff,")
        .nth(1)
        .and_then(|s| s.split(") :").next())
        .expect("the VMX table of kvm_exit's print fmt");
    let mut kernel = Vec::new();
    for entry in vmx.split('{').skip(1) {
        let (num, rest) = entry.split_once(',').unwrap();
        let name = rest.split('"').nth(1).unwrap();
        kernel.push((num.trim().parse::<u32>().unwrap(), name.to_string()));
    }
    assert!(kernel.len() > 50, "parsed {} VMX reasons", kernel.len());
    let ours: Vec<(u32, String)> = strata_analysis::vm::reasons::vmx_table()
        .iter()
        .map(|&(n, s)| (n, s.to_string()))
        .collect();
    assert_eq!(ours, kernel);
}
