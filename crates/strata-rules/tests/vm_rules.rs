//! VM metrics in rules: exact window ratios on synthetic cumulative vCPU
//! times, then the real VM model (two VMs sharing a CPU) driving a rule
//! that fires and names the VM.

use std::sync::Arc;

use strata_analysis::vm::hints::VmHint;
use strata_analysis::vm::model::{VcpuState, STATES};
use strata_analysis::vm::{VmEvent, VmModel};
use strata_rules::catalog::{Family, VmQuery, VmTrackKey};
use strata_rules::config::{LoadContext, RuleSet};
use strata_rules::vmstate::{ratio, StateSum, VmId, VmObservation, VmTracks};
use strata_rules::Engine;

const MS: i64 = 1_000_000;

fn sum(parts: &[(VcpuState, i64)], vmm_visible: bool) -> StateSum {
    let mut ns = [0i64; STATES];
    for &(s, t) in parts {
        ns[s as usize] += t;
    }
    StateSum { ns, vmm_visible }
}

fn obs(pid: i32, name: &str, uuid: Option<&str>, s: StateSum) -> VmObservation {
    VmObservation {
        id: VmId::Pid(pid),
        name: name.into(),
        uuid: uuid.map(str::to_string),
        sum: s,
    }
}

fn q(family: Family, vm: Option<&str>, vcpu: Option<u32>, window_ms: i64) -> VmQuery {
    VmQuery {
        family,
        vm: vm.map(str::to_string),
        track: VmTrackKey {
            vcpu,
            window_ns: (window_ms * MS) as u64,
        },
    }
}

#[test]
fn ratio_of_state_times() {
    use VcpuState::*;
    let kvm = sum(
        &[
            (Running, 300),
            (Vmm, 60),
            (VmmUser, 40),
            (Preempted, 500),
            (Idle, 100),
            (Unknown, 7777),
        ],
        true,
    );
    // Unknown time is not vCPU time the model knows: 1000 ns in all.
    assert_eq!(ratio(Family::VcpuPreempted, &kvm), 0.5);
    assert_eq!(ratio(Family::VcpuRunning, &kvm), 0.3);
    assert_eq!(ratio(Family::VcpuHypervisor, &kvm), 0.1);
    assert_eq!(ratio(Family::VcpuIdle, &kvm), 0.1);
    assert_eq!(ratio(Family::VmSteal, &kvm), 500.0 / 900.0);
    // TCG: time on a CPU is running (guest and emulator alike).
    let tcg = sum(&[(OnCpu, 250), (Preempted, 750)], false);
    assert_eq!(ratio(Family::VcpuRunning, &tcg), 0.25);
    assert_eq!(ratio(Family::VcpuHypervisor, &tcg), 0.0);
    assert_eq!(ratio(Family::VmSteal, &tcg), 0.75);
    // With hypervisor time visible, time on a CPU before the first entry
    // is neither guest nor hypervisor.
    let early = sum(&[(OnCpu, 500), (Running, 500)], true);
    assert_eq!(ratio(Family::VcpuRunning, &early), 0.5);
    assert_eq!(ratio(Family::VcpuPreempted, &StateSum::default()), 0.0);
}

/// VM `a` (pid 1, UUID AAAA) is preempted half its time for 2 s, then
/// runs; VM `b` (pid 2) idles. Sampled every 100 ms.
fn feed(t: &mut VmTracks, until_ms: i64) {
    use VcpuState::*;
    for step in 0..=until_ms / 100 {
        let now = step * 100 * MS;
        let (pre, run) = if now <= 2000 * MS {
            (now / 2, now / 2)
        } else {
            (1000 * MS, now - 1000 * MS)
        };
        let a = sum(&[(Preempted, pre), (Running, run)], true);
        let b = sum(&[(Idle, now * 3 / 4), (Running, now / 4)], true);
        t.sample_with(now, |vcpu, out| {
            assert_eq!(vcpu, None);
            out.push(obs(1, "a", Some("AAAA-1"), a));
            out.push(obs(2, "b", None, b));
        });
    }
}

#[test]
fn windows_are_exact_on_synthetic_samples() {
    let key = VmTrackKey {
        vcpu: None,
        window_ns: (1000 * MS) as u64,
    };
    let mut t = VmTracks::new(&[key, key]);
    feed(&mut t, 1500);
    fn pre<'a>(t: &'a VmTracks, vm: Option<&str>) -> (f64, Option<&'a str>) {
        t.value(&q(Family::VcpuPreempted, vm, None, 1000))
    }
    assert_eq!(pre(&t, Some("a")), (0.5, Some("a")));
    // By UUID, case-blind.
    assert_eq!(pre(&t, Some("aaaa-1")), (0.5, Some("a")));
    assert_eq!(pre(&t, Some("b")), (0.0, Some("b")));
    assert_eq!(pre(&t, Some("nosuch")), (0.0, None));
    // Any VM: the largest, named.
    assert_eq!(pre(&t, None), (0.5, Some("a")));
    assert_eq!(
        t.value(&q(Family::VcpuIdle, None, None, 1000)),
        (0.75, Some("b"))
    );
    // A window nobody samples for answers zero.
    assert_eq!(
        t.value(&q(Family::VcpuPreempted, Some("a"), None, 2000)),
        (0.0, None)
    );

    // From 2 s on, `a` runs: at 2.5 s the window [1.5 s, 2.5 s] holds
    // 250 ms preempted of 1 s; at 3 s, none.
    let mut t = VmTracks::new(&[key]);
    feed(&mut t, 2500);
    assert_eq!(pre(&t, Some("a")), (0.25, Some("a")));
    assert_eq!(
        t.value(&q(Family::VcpuRunning, Some("a"), None, 1000)).0,
        0.75
    );
    let mut t = VmTracks::new(&[key]);
    feed(&mut t, 3000);
    assert_eq!(pre(&t, Some("a")), (0.0, Some("a")));
    // Now `b` is the VM with the most idle time, and the only preempted
    // candidate ties at zero with `a`.
    assert_eq!(pre(&t, None).0, 0.0);
}

#[test]
fn early_windows_forgotten_vms_and_restarts() {
    use VcpuState::*;
    let key = VmTrackKey {
        vcpu: Some(1),
        window_ns: (10_000 * MS) as u64,
    };
    let mut t = VmTracks::new(&[key]);
    let sample = |t: &mut VmTracks, now: i64, vms: Vec<VmObservation>| {
        t.sample_with(now, |vcpu, out| {
            assert_eq!(vcpu, Some(1));
            out.extend(vms.iter().cloned());
        })
    };
    let qa = q(Family::VcpuPreempted, Some("a"), Some(1), 10_000);
    // Shorter history than the window: the ratio over what was seen.
    sample(&mut t, 0, vec![obs(1, "a", None, sum(&[], false))]);
    assert_eq!(t.value(&qa), (0.0, Some("a")));
    let s = sum(&[(Preempted, 100 * MS), (OnCpu, 300 * MS)], false);
    sample(&mut t, 400 * MS, vec![obs(1, "a", None, s)]);
    assert_eq!(t.value(&qa), (0.25, Some("a")));
    // Renamed (hints came): the same VM by its process.
    let s = sum(&[(Preempted, 100 * MS), (OnCpu, 700 * MS)], false);
    sample(&mut t, 800 * MS, vec![obs(1, "vm-a", None, s)]);
    assert_eq!(t.value(&qa).1, None);
    let qr = q(Family::VcpuPreempted, Some("vm-a"), Some(1), 10_000);
    assert_eq!(t.value(&qr), (100.0 / 800.0, Some("vm-a")));
    // Its times went down (a vCPU forgotten): history restarts.
    let s2 = sum(&[(Preempted, 50 * MS)], false);
    sample(&mut t, 900 * MS, vec![obs(1, "vm-a", None, s2)]);
    assert_eq!(t.value(&qr), (0.0, Some("vm-a")));
    // Gone from the model: forgotten.
    sample(&mut t, 1000 * MS, vec![]);
    assert_eq!(t.value(&qr), (0.0, None));
}

/// Two KVM VMs whose vCPU threads share host CPU 0, switching every 10 ms
/// (each preempted while the other runs), for `ms` ms. Each slice: guest
/// 2 ms, an exit served for 1 ms, guest 7 ms. `each` runs every 100 ms.
fn two_vms_on_one_cpu(m: &mut VmModel, t0: i64, ms: i64, mut each: impl FnMut(&VmModel, i64)) {
    m.add_hints([
        VmHint {
            name: Some("vm-a".into()),
            uuid: Some("aaaa-1".into()),
            qemu_pid: Some(100),
            vcpus: vec![],
        },
        VmHint {
            name: Some("vm-b".into()),
            uuid: None,
            qemu_pid: Some(200),
            vcpus: vec![],
        },
    ]);
    let fork = |m: &mut VmModel, parent: i32, child: i32| {
        m.handle(
            t0,
            0,
            Some(parent),
            &VmEvent::Fork {
                parent_tid: parent,
                child_tid: child,
                child_pid: Some(parent),
                child_comm: b"CPU 0/KVM",
            },
        )
    };
    fork(m, 100, 101);
    fork(m, 200, 201);
    let mut on = (0, b"swapper/0".as_slice());
    for k in 0..ms / 10 {
        let ts = t0 + k * 10 * MS;
        let next = if k % 2 == 0 { 101 } else { 201 };
        m.handle(
            ts,
            0,
            Some(on.0),
            &VmEvent::Switch {
                prev_tid: on.0,
                prev_comm: on.1,
                prev_state: 0,
                next_tid: next,
                next_comm: b"CPU 0/KVM",
            },
        );
        m.handle(ts, 0, Some(next), &VmEvent::KvmEntry { vcpu_id: Some(0) });
        on = (next, b"CPU 0/KVM");
        if k % 10 == 0 {
            each(m, ts);
        }
        let exit = VmEvent::KvmExit {
            reason: 1,
            isa: Some(1),
            vcpu_id: Some(0),
        };
        m.handle(ts + 2 * MS, 0, Some(next), &exit);
        m.handle(
            ts + 3 * MS,
            0,
            Some(next),
            &VmEvent::KvmEntry { vcpu_id: Some(0) },
        );
    }
}

#[test]
fn a_rule_on_the_vm_model_fires_and_names_the_vm() {
    let text = r#"
[[rule]]
name = "vm-a starved"
when = "vcpu.preempted.ratio(vm='vm-a', window='2s') > 0.3"
cooldown = "1h"
then = [ { alert = {} } ]

[[rule]]
name = "any VM starved"
when = "vcpu.preempted.ratio(window='2s') > 0.3 && vm.steal.ratio(window='2s') > 0.3"
cooldown = "1h"
then = [ { alert = {} } ]

[[rule]]
name = "idle or in the hypervisor"
when = "vcpu.idle.ratio(window='2s') > 0.1 || vcpu.hypervisor.ratio(vcpu='0') > 0.2"
then = [ { alert = {} } ]
"#;
    let set = Arc::new(RuleSet::parse(text, "vm.toml", &LoadContext::default()).unwrap());
    assert_eq!(set.event_needs(), ["kvm", "sched"]);
    assert_eq!(set.vm_keys().len(), 2);
    let mut e = Engine::new(set);
    let mut hm = e.host_metrics(&[]);
    assert!(hm.wants_vms());
    let t0 = 1_700_000_000_000_000_000i64;
    let mut fires = Vec::new();
    let mut m = VmModel::new();
    let mut last = Vec::new();
    two_vms_on_one_cpu(&mut m, t0, 4000, |m, now| {
        hm.advance(now);
        hm.sample_vms(m, now);
        fires.extend(e.evaluate("hv1", &mut hm, None, now, false));
        // The model's own values over the last 2 s, exactly: each vCPU
        // waits half the time, and of its half on the CPU spends a tenth
        // in the hypervisor.
        last = [
            Family::VcpuPreempted,
            Family::VcpuRunning,
            Family::VcpuHypervisor,
            Family::VcpuIdle,
            Family::VmSteal,
        ]
        .iter()
        .map(|&f| {
            let (v, n) = hm.vm_value(&q(f, Some("aaaa-1"), None, 2000));
            (v, n.map(str::to_string))
        })
        .collect();
    });
    let a = Some("vm-a".to_string());
    assert_eq!(
        last,
        [
            (0.5, a.clone()),
            (0.45, a.clone()),
            (0.05, a.clone()),
            (0.0, a.clone()),
            (0.5, a)
        ]
    );
    let names: Vec<(&str, Option<&str>)> = fires
        .iter()
        .map(|f| (f.rule.as_str(), f.vm.as_deref()))
        .collect();
    assert_eq!(names.len(), 2, "{fires:#?}");
    assert_eq!(names[0], ("vm-a starved", Some("vm-a")));
    assert_eq!(names[1].0, "any VM starved");
    assert!(matches!(names[1].1, Some("vm-a" | "vm-b")), "{names:?}");
    assert!(
        fires[0].values[0].ends_with("(VM vm-a)"),
        "{:?}",
        fires[0].values
    );
    // The value is the model's: each vCPU waits exactly half the time.
    let st = e.statuses();
    let a = st.iter().find(|s| s.rule == "vm-a starved").unwrap();
    assert!(a.last_values[0].contains("= 0.5000"), "{:?}", a.last_values);
    let quiet = st
        .iter()
        .find(|s| s.rule == "idle or in the hypervisor")
        .unwrap();
    assert_eq!(quiet.fires, 0, "{quiet:?}");
    assert!(
        quiet.last_values[0].starts_with("vcpu.idle.ratio(window='2s') = 0.0000"),
        "{:?}",
        quiet.last_values
    );
}

#[test]
fn bad_vm_metric_calls_are_refused_with_their_line() {
    for (when, want) in [
        (
            "vcpu.preempted.ratio(vm='a', core='1') > 0.5",
            "no argument",
        ),
        ("vcpu.preempted.ratio(vcpu='one') > 0.5", "vCPU number"),
        ("vcpu.preempted.ratio(window='1d') > 0.5", "duration"),
        ("vcpu.preempted.ratio(window='10h') > 0.5", "between"),
        ("vcpu.stolen.ratio() > 0.5", "unknown metric"),
        ("vm.steal.p99() > 0.5", ".ratio"),
        ("vm.steal.ratio() > duration('1s')", "cannot be evaluated"),
    ] {
        let text =
            format!("[[rule]]\nname = \"x\"\nwhen = \"{when}\"\nthen = [ {{ alert = {{}} }} ]\n");
        let err = RuleSet::parse(&text, "r.toml", &LoadContext::default()).unwrap_err();
        assert_eq!(err.line(), Some(3), "{when}: {err}");
        assert!(err.to_string().contains(want), "{when}: {err}");
    }
}
