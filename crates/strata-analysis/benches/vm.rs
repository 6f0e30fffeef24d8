//! Throughput of the VM analysis, one core.
//!
//! 1. The model alone: 100 M host events (`STRATA_BENCH_VM_EVENTS`) fed to
//!    `VmModel::handle`, from a 1 M-event block of a busy host (4 CPUs,
//!    8 VMs of 2 vCPUs, host threads; kvm entries and exits, switches,
//!    wakeups, port I/O) replayed with shifted timestamps, so nothing of
//!    the 100 M is stored. Target: at least 20 M events/s.
//! 2. End to end: a CTF trace of 4 M such events (`STRATA_BENCH_VM_CTF_EVENTS`)
//!    written through strata-store's page path into a temporary directory,
//!    then read, decoded and analysed by `vm::driver::run` (what
//!    `strata vm report` does), against `babeltrace2 -o dummy` reading the
//!    same trace, when installed (a read-only floor, not a VM analysis).
//!
//! `cargo bench -p strata-analysis --bench vm`
//! Times are CPU seconds of this process (or of the child), wall in brackets.

#[path = "../tests/vmgen/mod.rs"]
mod vmgen;

use std::process::Command;
use std::time::Instant;

use strata_analysis::vm::driver::{self, VmOptions};
use strata_analysis::vm::{VmEvent, VmModel};
use strata_ctf::read::{OpenOptions, TraceSet};

const CPUS: usize = 4;
const VMS: usize = 8;
const VCPUS_PER_VM: usize = 2;
const HOST_THREADS: i32 = 4;
const REASONS: [u32; 6] = [1, 30, 48, 32, 12, 10];
const NAMES: [&str; 2] = ["CPU 0/KVM", "CPU 1/KVM"];

fn cpu_secs(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the zeroed plain-data struct it is given.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut r) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(r.ru_utime) + tv(r.ru_stime)
}

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// A deterministic pseudo-random sequence.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// One step of the busy host: what happens next on which CPU.
#[derive(Clone, Copy)]
enum Step {
    Entry(i32, u32),
    Exit(i32, u32, u32),
    Switch(i32, i32, i64),
    Wakeup(i32, u32),
    Pio(i32),
}

fn vcpu_tid(i: usize) -> i32 {
    1000 + i as i32
}

fn comm_of(tid: i32) -> &'static str {
    if tid >= 1000 {
        NAMES[(tid as usize - 1000) % VCPUS_PER_VM]
    } else if tid == 0 {
        "swapper"
    } else {
        "worker"
    }
}

/// The busy host's script: `n` steps, one every 50 ns.
fn script(n: usize, mut each: impl FnMut(u64, usize, Step)) {
    let mut rng = Lcg(42);
    let nv = VMS * VCPUS_PER_VM;
    let mut cur: Vec<i32> = (0..CPUS).map(vcpu_tid).collect();
    let mut in_guest = [false; CPUS];
    for i in 0..n {
        let ts = 50 * i as u64;
        let cpu = i % CPUS;
        let r = rng.next() % 100;
        let t = cur[cpu];
        let step = if t >= 1000 && r < 90 {
            let id = ((t - 1000) as usize % VCPUS_PER_VM) as u32;
            in_guest[cpu] = !in_guest[cpu];
            if in_guest[cpu] {
                Step::Entry(t, id)
            } else {
                Step::Exit(t, id, REASONS[rng.next() as usize % REASONS.len()])
            }
        } else if r < 96 {
            let next = if rng.next().is_multiple_of(4) {
                100 + (rng.next() % HOST_THREADS as u64) as i32
            } else {
                vcpu_tid(rng.next() as usize % nv)
            };
            if cur.contains(&next) {
                Step::Wakeup(next, cpu as u32)
            } else {
                let state = (rng.next() % 2) as i64;
                cur[cpu] = next;
                in_guest[cpu] = false;
                Step::Switch(t, next, state)
            }
        } else if r < 98 || t < 1000 {
            Step::Wakeup(vcpu_tid(rng.next() as usize % nv), cpu as u32)
        } else {
            Step::Pio(t)
        };
        each(ts, cpu, step);
    }
}

fn as_event(s: Step) -> (Option<i32>, VmEvent<'static>) {
    match s {
        Step::Entry(t, id) => (Some(t), VmEvent::KvmEntry { vcpu_id: Some(id) }),
        Step::Exit(t, id, reason) => (
            Some(t),
            VmEvent::KvmExit {
                reason,
                isa: Some(1),
                vcpu_id: Some(id),
            },
        ),
        Step::Switch(prev, next, state) => (
            Some(prev),
            VmEvent::Switch {
                prev_tid: prev,
                prev_comm: comm_of(prev).as_bytes(),
                prev_state: state,
                next_tid: next,
                next_comm: comm_of(next).as_bytes(),
            },
        ),
        Step::Wakeup(t, cpu) => (
            None,
            VmEvent::Wakeup {
                tid: t,
                target_cpu: Some(cpu),
            },
        ),
        Step::Pio(t) => (
            Some(t),
            VmEvent::Pio {
                write: true,
                port: 0x3f0,
            },
        ),
    }
}

fn model_only(total: u64) {
    const BLOCK: usize = 1 << 20;
    let mut block: Vec<(i64, u32, Option<i32>, VmEvent<'static>)> = Vec::with_capacity(BLOCK);
    script(BLOCK, |ts, cpu, s| {
        let (ctx, ev) = as_event(s);
        block.push((ts as i64, cpu as u32, ctx, ev));
    });
    let span = 50 * BLOCK as i64;
    let mut best = f64::MAX;
    let mut wall_best = f64::MAX;
    let mut vms = 0;
    for _ in 0..3 {
        let mut m = VmModel::new();
        let (c0, w0) = (cpu_secs(libc::RUSAGE_SELF), Instant::now());
        let mut fed = 0u64;
        let mut k = 0i64;
        while fed < total {
            let shift = k * span;
            for &(ts, cpu, ctx, ref ev) in &block {
                m.handle(ts + shift, cpu, ctx, ev);
            }
            fed += BLOCK as u64;
            k += 1;
        }
        m.flush(k * span);
        let (c, w) = (cpu_secs(libc::RUSAGE_SELF) - c0, w0.elapsed().as_secs_f64());
        best = best.min(c);
        wall_best = wall_best.min(w);
        vms = m.vms().len();
        std::hint::black_box(&m);
        println!(
            "  run: {fed} events in {c:.2} s CPU ({w:.2} s wall): {:.1} M events/s",
            fed as f64 / c / 1e6
        );
        if total > 20_000_000 {
            // One run is enough at full size on a shared machine.
            break;
        }
    }
    let fed = total.div_ceil(BLOCK as u64) * BLOCK as u64;
    println!(
        "model alone: {fed} events, {vms} VMs: best {best:.2} s CPU ({wall_best:.2} s wall) = {:.1} M events/s (target >= 20)",
        fed as f64 / best / 1e6
    );
}

fn end_to_end(n: usize) {
    let dir = std::env::temp_dir().join(format!("strata-bench-vm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut g = vmgen::Gen::new(CPUS);
    let mut w = g.writer(&dir, "bench-host");
    let mut steps = Vec::new();
    script(n, |ts, cpu, s| steps.push((ts, cpu, s)));
    for (i, (ts, cpu, s)) in steps.iter().enumerate() {
        match *s {
            Step::Entry(t, id) => g.entry(*cpu, *ts, t, id),
            Step::Exit(t, id, r) => g.exit(*cpu, *ts, t, id, r),
            Step::Switch(p, nx, st) => g.switch(
                *cpu,
                *ts,
                vmgen::T(p, comm_of(p)),
                st,
                vmgen::T(nx, comm_of(nx)),
            ),
            Step::Wakeup(t, c) => g.wakeup(*cpu, *ts, 0, vmgen::T(t, comm_of(t)), c),
            Step::Pio(t) => g.pio(*cpu, *ts, t, 0x3f0, 1),
        }
        if i % 200_000 == 199_999 {
            g.flush_into(&mut w);
        }
    }
    drop(steps);
    g.flush_into(&mut w);
    w.finish().unwrap();
    let bytes: u64 = walk_size(&dir);
    println!(
        "CTF trace: {n} events, {:.1} MB, in {}",
        bytes as f64 / 1e6,
        dir.display()
    );
    let mut best = f64::MAX;
    for _ in 0..3 {
        let (c0, w0) = (cpu_secs(libc::RUSAGE_SELF), Instant::now());
        let set = TraceSet::open(&dir, &OpenOptions::default()).unwrap();
        let a = driver::run(&set, &VmOptions::default()).unwrap();
        let (c, wl) = (cpu_secs(libc::RUSAGE_SELF) - c0, w0.elapsed().as_secs_f64());
        assert_eq!(a.reports[0].vms.len(), VMS * VCPUS_PER_VM);
        best = best.min(c);
        println!(
            "  run: {c:.2} s CPU ({wl:.2} s wall): {:.1} M events/s",
            n as f64 / c / 1e6
        );
    }
    println!(
        "strata vm driver (read + decode + model): best {best:.2} s CPU = {:.1} M events/s",
        n as f64 / best / 1e6
    );
    let bt = Command::new("babeltrace2").arg("--version").output();
    if bt.is_ok_and(|o| o.status.success()) {
        let (c0, w0) = (cpu_secs(libc::RUSAGE_CHILDREN), Instant::now());
        let st = Command::new("babeltrace2")
            .args(["-o", "dummy"])
            .arg(&dir)
            .status()
            .unwrap();
        let (c, wl) = (
            cpu_secs(libc::RUSAGE_CHILDREN) - c0,
            w0.elapsed().as_secs_f64(),
        );
        assert!(st.success());
        println!(
            "babeltrace2 -o dummy (read only): {c:.2} s CPU ({wl:.2} s wall) = {:.1} M events/s",
            n as f64 / c / 1e6
        );
    } else {
        println!("babeltrace2: not installed, no peer figure");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk_size(p: &std::path::Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                n += walk_size(&path);
            } else if let Ok(m) = e.metadata() {
                n += m.len();
            }
        }
    }
    n
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    model_only(env_u64("STRATA_BENCH_VM_EVENTS", 100_000_000));
    end_to_end(env_u64("STRATA_BENCH_VM_CTF_EVENTS", 4_000_000) as usize);
}
