//! Cost of VM rules: a live VM model with 64 VMs of 4 vCPUs each (256
//! vCPU threads taking turns on 16 host CPUs), and 20 VM rules (every VM
//! family, with and without `vm=`, over 4 windows and one `vcpu=`).
//! Measures one evaluation tick: sampling the model's vCPU state times
//! into the windows, then evaluating the rules. Nothing is done per event.
//!
//! `cargo bench -p strata-rules --bench vm_rules`

use std::sync::Arc;
use std::time::Instant;

use strata_analysis::vm::{VmEvent, VmModel};
use strata_rules::{Engine, LoadContext, RuleSet};

const VMS: i32 = 64;
const VCPUS: i32 = 4;
const CPUS: u32 = 16;
const MS: i64 = 1_000_000;
const T0: i64 = 1_700_000_000_000_000_000;

fn rules() -> String {
    let mut t = String::new();
    let fams = [
        "vcpu.preempted",
        "vcpu.running",
        "vcpu.hypervisor",
        "vcpu.idle",
        "vm.steal",
    ];
    let args = [
        "window='1s'",
        "vm='pid 1000', window='10s'",
        "vm='pid 5000', vcpu='2', window='30s'",
        "window='1m'",
    ];
    for (i, f) in fams.iter().enumerate() {
        for (j, a) in args.iter().enumerate() {
            t.push_str(&format!(
                "[[rule]]\nname = \"r{i}-{j}\"\nwhen = \"{f}.ratio({a}) > 2.0\"\nthen = [ {{ alert = {{}} }} ]\n\n"
            ));
        }
    }
    t
}

fn main() {
    let set = Arc::new(RuleSet::parse(&rules(), "vm.toml", &LoadContext::default()).unwrap());
    let mut engine = Engine::new(Arc::clone(&set));
    let mut hm = engine.host_metrics(&[]);
    let mut m = VmModel::new();
    let name = |v: i32| format!("CPU {v}/KVM");
    for vm in 0..VMS {
        let pid = 1000 + vm * 100;
        for v in 0..VCPUS {
            let n = name(v);
            m.handle(
                T0,
                0,
                Some(pid),
                &VmEvent::Fork {
                    parent_tid: pid,
                    child_tid: pid + 1 + v,
                    child_pid: Some(pid),
                    child_comm: n.as_bytes(),
                },
            );
        }
    }
    let threads: Vec<(i32, String)> = (0..VMS)
        .flat_map(|vm| (0..VCPUS).map(move |v| (1000 + vm * 100 + 1 + v, name(v))))
        .collect();
    let mut on: Vec<(i32, String)> = vec![(0, "swapper".into()); CPUS as usize];
    let mut ts = T0;
    let mut k = 0usize;
    let mut ticks = Vec::new();
    // 120 s of event time: a switch per CPU every ms, a tick every 100 ms.
    for step in 0..120_000i64 {
        ts = T0 + step * MS;
        for cpu in 0..CPUS {
            let next = &threads[k % threads.len()];
            k += 1;
            let prev = &on[cpu as usize];
            m.handle(
                ts,
                cpu,
                Some(prev.0),
                &VmEvent::Switch {
                    prev_tid: prev.0,
                    prev_comm: prev.1.as_bytes(),
                    prev_state: 0,
                    next_tid: next.0,
                    next_comm: next.1.as_bytes(),
                },
            );
            m.handle(ts, cpu, Some(next.0), &VmEvent::KvmEntry { vcpu_id: None });
            on[cpu as usize] = next.clone();
        }
        if step % 100 == 0 {
            let t = Instant::now();
            hm.advance(ts);
            hm.sample_vms(&m, ts);
            let f = engine.evaluate("bench", &mut hm, None, ts, false);
            ticks.push(t.elapsed().as_nanos() as u64);
            assert!(f.is_empty());
        }
    }
    let st = engine.statuses();
    println!(
        "vm rules bench: {} VMs x {} vCPUs on {} CPUs, {} VM rules, {} ticks over {} s of event time",
        VMS,
        VCPUS,
        CPUS,
        set.rules.len(),
        ticks.len(),
        (ts - T0) / 1_000_000_000
    );
    println!("  example: {}", st[0].last_values[0]);
    ticks.sort_unstable();
    let q = |p: f64| ticks[((ticks.len() - 1) as f64 * p) as usize] as f64 / 1e3;
    println!(
        "  one tick (sample the model + evaluate the VM rules): p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        q(0.5),
        q(0.99),
        q(1.0)
    );
}
