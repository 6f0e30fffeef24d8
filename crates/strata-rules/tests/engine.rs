//! The engine end to end on the real state system: events in, firings out.

use std::sync::Arc;

use proptest::prelude::*;
use strata_analysis::event::KernelEvent;
use strata_analysis::state::Machine;
use strata_rules::config::{ActionSpec, LoadContext, RuleSet};
use strata_rules::engine::{decide, Governor, RuleStatus};
use strata_rules::{Engine, HostMetrics};

const MS: i64 = 1_000_000;
const T0: i64 = 1_700_000_000_000_000_000;

fn set(text: &str) -> Arc<RuleSet> {
    Arc::new(RuleSet::parse(text, "test.toml", &LoadContext::default()).unwrap())
}

/// A host where `comm` (tid 42) runs on CPU 0 and makes syscalls.
struct Host {
    m: Machine,
    hm: HostMetrics,
}

impl Host {
    fn new(e: &Engine, comm: &[u8]) -> Host {
        let names: Vec<Box<str>> = vec!["read".into(), "nanosleep".into()];
        let mut h = Host {
            m: Machine::new(),
            hm: e.host_metrics(&names),
        };
        h.m.handle(
            T0,
            0,
            &KernelEvent::Switch {
                prev_tid: 0,
                prev_comm: b"swapper/0",
                prev_prio: Some(20),
                prev_state: 0,
                next_tid: 42,
                next_comm: comm,
                next_prio: Some(20),
            },
            &mut h.hm,
        );
        h
    }

    fn syscall(&mut self, at: i64, id: u16, dur: i64) {
        self.m.handle(
            at,
            0,
            &KernelEvent::SyscallEntry { id, io: None },
            &mut self.hm,
        );
        self.m.handle(
            at + dur,
            0,
            &KernelEvent::SyscallExit { ret: Some(0) },
            &mut self.hm,
        );
    }
}

const LATENCY_RULE: &str = r#"
[[rule]]
name = "slow"
when = "syscall.latency.p99(proc='pg', window='1s') > duration('10ms')"
for = "300ms"
cooldown = "1m"
then = [ { alert = {} } ]
"#;

#[test]
fn a_normal_run_fires_nothing() {
    let mut e = Engine::new(set(LATENCY_RULE));
    let mut h = Host::new(&e, b"pg");
    let mut fires = 0;
    // 10 s of 1 ms reads every 5 ms, evaluated every 100 ms.
    for step in 0..100 {
        for k in 0..20 {
            h.syscall(T0 + step * 100 * MS + k * 5 * MS, 0, MS);
        }
        fires += e
            .evaluate(
                "h",
                &mut h.hm,
                Some(&h.m),
                T0 + (step + 1) * 100 * MS,
                false,
            )
            .len();
    }
    assert_eq!(fires, 0);
    let st = e.statuses();
    assert_eq!(st.len(), 1);
    assert!(st[0].evaluations >= 100 && !st[0].holding && st[0].last_error.is_none());
    assert!(
        st[0].last_values[0].contains("= 1."),
        "{:?}",
        st[0].last_values
    );
}

#[test]
fn a_latency_rule_fires_after_its_debounce_and_once_per_cooldown() {
    let mut e = Engine::new(set(LATENCY_RULE));
    let mut h = Host::new(&e, b"pg");
    let mut fired = Vec::new();
    for step in 0..30 {
        // Every call takes 20 ms from step 5 on.
        let dur = if step >= 5 { 20 * MS } else { MS };
        h.syscall(T0 + step * 100 * MS, 1, dur);
        let now = T0 + step * 100 * MS + 50 * MS;
        for f in e.evaluate("h", &mut h.hm, Some(&h.m), now, false) {
            fired.push((step, f));
        }
    }
    assert_eq!(fired.len(), 1, "{fired:?}");
    let (step, f) = &fired[0];
    // True from step 5, held 300 ms: fires at step 8.
    assert_eq!(*step, 8);
    assert_eq!(f.process.as_deref(), Some("pg"));
    assert_eq!(f.rule, "slow");
    // Another process making slow calls is not "pg".
    let mut e2 = Engine::new(set(LATENCY_RULE));
    let mut other = Host::new(&e2, b"nginx");
    for step in 0..30 {
        other.syscall(T0 + step * 100 * MS, 1, 20 * MS);
        assert!(e2
            .evaluate(
                "h",
                &mut other.hm,
                Some(&other.m),
                T0 + step * 100 * MS + 50 * MS,
                false
            )
            .is_empty());
    }
}

#[test]
fn a_pattern_rule_fires_once_with_the_thread_and_exit_time() {
    let text = r#"
[[rule]]
name = "stall"
when = "pattern.syscall.count(proc='stall50', longer='40ms', window='10s') > 0"
cooldown = "10m"
then = [ { alert = { webhook = "http://127.0.0.1:1/x" } } ]
"#;
    let mut e = Engine::new(set(text));
    let mut h = Host::new(&e, b"stall50");
    let mut fired = Vec::new();
    for step in 0..50 {
        let dur = if step == 10 { 50 * MS } else { MS };
        h.syscall(T0 + step * 100 * MS, 1, dur);
        // Pattern rules only: what the relay runs when a pattern matched.
        fired.extend(e.evaluate(
            "h",
            &mut h.hm,
            Some(&h.m),
            T0 + step * 100 * MS + 60 * MS,
            true,
        ));
    }
    assert_eq!(fired.len(), 1);
    let f = &fired[0];
    assert_eq!(f.tid, Some(42));
    assert_eq!(f.process.as_deref(), Some("stall50"));
    assert_eq!(f.condition_ts, T0 + 1000 * MS + 50 * MS);
    assert_eq!(f.reaction_ns(), 10 * MS as u64);
    assert!(matches!(f.actions[0], ActionSpec::Alert { .. }));
}

#[test]
fn state_queries_count_threads() {
    let text = r#"
[[rule]]
name = "busy"
when = "state.threads.count(proc='pg', state='running') == 1 && state.runqueue.length() == 0"
then = [ { alert = {} } ]
"#;
    let mut e = Engine::new(set(text));
    let mut h = Host::new(&e, b"pg");
    h.syscall(T0 + MS, 0, MS);
    let f = e.evaluate("h", &mut h.hm, Some(&h.m), T0 + 10 * MS, false);
    assert_eq!(f.len(), 1, "{:?}", e.statuses());
}

#[test]
fn an_always_true_rule_fires_within_cooldown_and_limits_only() {
    let text = r#"
[limits]
actions_per_minute = 5
snapshots_per_minute = 2
max_concurrent_snapshots = 1

[[rule]]
name = "always"
when = "true || syscall.latency.count() >= 0"
cooldown = "1s"
then = [ { snapshot = { before = "10s", after = "2s" } }, { alert = {} } ]
"#;
    let mut e = Engine::new(set(text));
    let mut h = Host::new(&e, b"pg");
    let mut snaps = Vec::new();
    let mut actions = Vec::new();
    // 10 minutes of evaluations every 100 ms on two hosts.
    let mut h2 = Host::new(&e, b"pg");
    for step in 0..6000i64 {
        let now = T0 + step * 100 * MS;
        for (name, host) in [("a", &mut h), ("b", &mut h2)] {
            for f in e.evaluate(name, &mut host.hm, Some(&host.m), now, false) {
                for a in &f.actions {
                    actions.push(now);
                    if matches!(a, ActionSpec::Snapshot { .. }) {
                        snaps.push(now);
                    }
                }
            }
        }
    }
    for (i, &t) in snaps.iter().enumerate() {
        let in_minute = snaps[i..]
            .iter()
            .take_while(|&&x| x < t + 60_000 * MS)
            .count();
        assert!(in_minute <= 2, "{in_minute} snapshots in a minute");
        if i > 0 {
            // One at a time: each lasts `after` + grace, 7 s.
            assert!(t - snaps[i - 1] >= 7_000 * MS);
        }
    }
    for (i, &t) in actions.iter().enumerate() {
        let in_minute = actions[i..]
            .iter()
            .take_while(|&&x| x < t + 60_000 * MS)
            .count();
        assert!(in_minute <= 5, "{in_minute} actions in a minute");
    }
    // The limits are used, not starved: 10 minutes allow 20 snapshots.
    assert!(snaps.len() >= 10, "{}", snaps.len());
    assert!(e.statuses().iter().map(|s| s.refused).sum::<u64>() > 0);
}

#[test]
fn a_reload_keeps_the_cooldown() {
    let text = r#"
[[rule]]
name = "always"
when = "syscall.latency.count() >= 0"
cooldown = "1h"
then = [ { alert = {} } ]
"#;
    let mut e = Engine::new(set(text));
    let mut h = Host::new(&e, b"pg");
    assert_eq!(e.evaluate("a", &mut h.hm, None, T0, false).len(), 1);
    e.replace(set(text));
    // Metrics built for the old rules are not used.
    assert!(e.evaluate("a", &mut h.hm, None, T0 + MS, false).is_empty());
    let mut h = Host::new(&e, b"pg");
    assert!(e
        .evaluate("a", &mut h.hm, None, T0 + 2 * MS, false)
        .is_empty());
    assert_eq!(e.statuses()[0].fires, 1);
}

fn storm_rules(n: usize, cooldown_ms: u64, for_ms: u64) -> Arc<RuleSet> {
    let mut t = String::from(
        "[limits]\nactions_per_minute = 20\nsnapshots_per_minute = 3\nmax_concurrent_snapshots = 1\n",
    );
    for i in 0..n {
        t.push_str(&format!(
            "[[rule]]\nname = \"r{i}\"\nwhen = \"syscall.latency.count() >= 0\"\nfor = \"{for_ms}ms\"\n\
             cooldown = \"{cooldown_ms}ms\"\nthen = [ {{ snapshot = {{ before = \"1s\", after = \"0s\" }} }}, {{ alert = {{}} }} ]\n"
        ));
    }
    set(&t)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever the rules, their cooldowns and when their conditions hold,
    /// snapshots never exceed the global limits and no rule fires inside
    /// its cooldown.
    #[test]
    fn no_snapshot_storm(
        n in 1usize..20,
        cooldown_ms in 0u64..5000,
        for_ms in 0u64..1000,
        steps in proptest::collection::vec((any::<u32>(), 1i64..2000), 1..400),
    ) {
        let set = storm_rules(n, cooldown_ms, for_ms);
        let mut gov = Governor::new(set.limits.clone());
        let mut st: Vec<RuleStatus> = (0..n).map(|_| RuleStatus::default()).collect();
        let mut now = T0;
        let mut snaps: Vec<i64> = Vec::new();
        let mut last: Vec<Option<i64>> = vec![None; n];
        for (truth, dt) in steps {
            now += dt * MS;
            for (i, r) in set.rules.iter().enumerate() {
                let holds = truth & (1 << (i % 32)) != 0;
                if let Some(f) = decide(&mut gov, r, &mut st[i], holds, now, now) {
                    if let Some(p) = last[i] {
                        prop_assert!(now - p >= cooldown_ms as i64 * MS);
                    }
                    last[i] = Some(now);
                    for a in &f.actions {
                        if matches!(a, ActionSpec::Snapshot { .. }) {
                            snaps.push(now);
                        }
                    }
                }
            }
        }
        for (i, &t) in snaps.iter().enumerate() {
            let in_minute = snaps[i..].iter().take_while(|&&x| x < t + 60_000 * MS).count();
            prop_assert!(in_minute <= 3);
            if i > 0 {
                // At most one in progress: after (0 s) + 5 s grace.
                prop_assert!(t - snaps[i - 1] >= 5_000 * MS);
            }
        }
    }
}
