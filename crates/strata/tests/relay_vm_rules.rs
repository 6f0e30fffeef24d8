//! VM rules in a real `strata relay`: a replay agent streams a generated
//! host trace (the VM ground-truth generator) in which the vCPU threads of
//! two QEMU VMs share one host CPU, each preempted half the time. A
//! `vcpu.preempted.ratio` rule on one VM fires once and its alert names
//! that VM; an idle-ratio rule over any VM stays quiet.

mod relay_support;
#[path = "../../strata-analysis/tests/vmgen/mod.rs"]
mod vmgen;

use std::path::Path;
use std::time::Duration;

use relay_support::*;
use vmgen::{Gen, RUNNABLE, SLEEPING, T};

/// Trace length and the time each vCPU thread runs before the other
/// takes the CPU, ms.
const TRACE_MS: u64 = 5_000;
const SLICE_MS: u64 = 5;

/// Two TCG VMs (QEMU pids 100 and 200, one vCPU thread each) that take
/// turns on CPU 0 of a one-CPU host: each is runnable all along, so it is
/// preempted whenever the other runs. Returns the events written.
fn write_trace(dir: &Path) -> u64 {
    let (qa, va) = (T(100, "qemu-system-x86"), T(101, "CPU 0/TCG"));
    let (qb, vb) = (T(200, "qemu-system-x86"), T(201, "CPU 0/TCG"));
    let mut g = Gen::new(1);
    g.fork(0, 0, qa, va);
    g.fork(0, 0, qb, vb);
    g.switch(0, 0, T(0, "swapper/0"), SLEEPING, va);
    let mut on = va;
    let mut n = 3;
    for k in 1..TRACE_MS / SLICE_MS {
        let next = if k % 2 == 0 { va } else { vb };
        g.switch(0, k * SLICE_MS * 1_000_000, on, RUNNABLE, next);
        on = next;
        n += 1;
    }
    g.write(dir, "hv1");
    n
}

const RULES: &str = r#"
[[rule]]
name = "vm starved"
when = "vcpu.preempted.ratio(vm='pid 100', window='2s') > 0.3"
cooldown = "1h"
then = [ { alert = {} } ]

[[rule]]
name = "a VM idles"
when = "vcpu.idle.ratio(window='2s') > 0.2"
then = [ { alert = {} } ]
"#;

#[test]
fn a_vcpu_preempted_rule_fires_on_a_replayed_host_and_names_the_vm() {
    let s = Setup::new();
    let trace = s.dir.path().join("host-trace");
    let events = write_trace(&trace);
    let rules = s.dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let relay = Relay::start(&s, &["--rules", &rules.display().to_string()]);
    // Paced so that the 5 s trace takes about 5 s: windows are in event
    // time, and the rules sample the VM model on their wall-clock timer.
    let rate = events * 1000 / TRACE_MS;
    let mut agent = Agent::replay(relay.ingest, &s, &trace, "hv1", rate, &[]);
    let fired = relay.wait_log(
        "ALERT rule \"vm starved\" on host hv1 VM \"pid 100\"",
        Duration::from_secs(40),
    );
    assert!(
        fired,
        "no alert naming the VM; relay log:\n{}\nagent log:\n{}",
        relay.log(),
        agent.log()
    );
    assert!(agent.wait(Duration::from_secs(40)), "{}", agent.log());

    let doc = relay.json("/api/rules");
    let state = |rule: &str| {
        doc["states"]
            .as_array()
            .unwrap()
            .iter()
            .find(|st| st["rule"] == rule && st["host"] == "hv1")
            .unwrap_or_else(|| panic!("no state for {rule}: {doc}"))
            .clone()
    };
    let starved = state("vm starved");
    assert_eq!(starved["fires"], 1, "{starved}");
    let v = starved["last_values"][0].as_str().unwrap();
    assert!(v.ends_with("(VM pid 100)"), "{v}");
    // Each vCPU waits half the time; the window holds whole slices but
    // its ends fall where the samples were taken.
    let ratio: f64 = v
        .split(" = ")
        .nth(1)
        .and_then(|x| x.split(' ').next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no value in {v}"));
    assert!((0.45..=0.55).contains(&ratio), "{v}");
    let idle = state("a VM idles");
    assert_eq!(idle["fires"], 0, "{idle}");
    assert!(idle["evaluations"].as_u64().unwrap() > 10, "{idle}");
    assert!(!relay.log().contains("ALERT rule \"a VM idles\""));

    // The same VM in the relay's VM view.
    let vms = relay.json("/api/hosts/hv1/vms");
    let names: Vec<&str> = vms["vms"]
        .as_array()
        .unwrap_or_else(|| panic!("{vms}"))
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        names.contains(&"pid 100") && names.contains(&"pid 200"),
        "{vms}"
    );
}
