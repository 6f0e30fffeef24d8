//! Cost of rules on the live analysis: the real state system fed a
//! synthetic kernel event stream (syscalls, switches, wakeups on 2 CPUs,
//! 1 µs of event time per event, i.e. 1 M events/s), without rules and
//! with 100 rules (their series fed per event, all rules evaluated every
//! 100 ms of event time). Also the time from a pattern's matching event
//! being applied to the firing being returned, with 100 rules loaded.
//!
//! `cargo bench -p strata-rules --bench rules`

use std::sync::Arc;
use std::time::Instant;

use strata_analysis::event::KernelEvent;
use strata_analysis::observer::Nobody;
use strata_analysis::state::Machine;
use strata_rules::{Engine, LoadContext, RuleSet};

const T0: i64 = 1_700_000_000_000_000_000;
const EVENTS: usize = 3_000_000;
const US: i64 = 1_000;

fn rules() -> String {
    let mut t = String::from("[limits]\nactions_per_minute = 100000\n");
    let mut add = |i: usize, when: String| {
        t.push_str(&format!(
            "[[rule]]\nname = \"r{i}\"\nwhen = \"{when}\"\ncooldown = \"0s\"\nthen = [ {{ alert = {{}} }} ]\n"
        ));
    };
    for i in 0..40 {
        add(
            i,
            format!(
                "syscall.latency.p99(proc='proc{:02}', window='1s') > duration('10ms')",
                i % 50
            ),
        );
    }
    for i in 40..60 {
        add(
            i,
            format!(
                "syscall.errors.ratio(proc='proc{:02}', window='5s') > 0.5",
                i % 50
            ),
        );
    }
    for i in 60..80 {
        add(
            i,
            format!(
                "sched.wakeup.p99(proc='proc{:02}', window='1s') > duration('50ms')",
                i % 50
            ),
        );
    }
    for i in 80..90 {
        add(
            i,
            format!(
                "pattern.syscall.count(proc='stall', longer='{}ms', window='10s') > 0",
                i - 40
            ),
        );
    }
    for i in 90..95 {
        add(
            i,
            format!(
                "cpu.usage.ratio(proc='proc{:02}', window='1s') > 0.99",
                i % 50
            ),
        );
    }
    for i in 95..100 {
        add(
            i,
            "state.runqueue.length() > 1000 || syscall.latency.rate(window='1s') > 1e9".into(),
        );
    }
    t
}

/// Feeds `n` events; calls `tick` every 100 ms of event time.
fn run(
    n: usize,
    m: &mut Machine,
    obs: &mut dyn FnMut(&mut Machine, i64, u32, &KernelEvent<'_>),
    mut tick: impl FnMut(&mut Machine, i64),
) {
    let names: Vec<Vec<u8>> = (0..64)
        .map(|i| format!("proc{:02}", i % 50).into_bytes())
        .collect();
    let mut cur = [1i32, 2];
    let mut ts = T0;
    let mut next_tick = T0 + 100_000 * US;
    let mut i = 0usize;
    while i < n {
        let cpu = (i & 1) as u32;
        let phase = (i / 2) % 24;
        let tid = cur[cpu as usize];
        ts += US;
        match phase {
            0 => {
                let next = 1 + ((i / 48) * 7 + cpu as usize) as i32 % 64;
                let ev = KernelEvent::Switch {
                    prev_tid: tid,
                    prev_comm: &names[(tid as usize - 1) % 64],
                    prev_prio: Some(20),
                    prev_state: 1,
                    next_tid: next,
                    next_comm: &names[(next as usize - 1) % 64],
                    next_prio: Some(20),
                };
                obs(m, ts, cpu, &ev);
                cur[cpu as usize] = next;
            }
            1 => {
                let w = 1 + ((i / 48) * 7 + 3) as i32 % 64;
                obs(
                    m,
                    ts,
                    cpu,
                    &KernelEvent::Wakeup {
                        tid: w,
                        prio: Some(20),
                        target_cpu: Some(cpu),
                        new: false,
                    },
                );
            }
            p if p % 2 == 0 => obs(
                m,
                ts,
                cpu,
                &KernelEvent::SyscallEntry {
                    id: (i % 300) as u16,
                    io: None,
                },
            ),
            _ => obs(
                m,
                ts,
                cpu,
                &KernelEvent::SyscallExit {
                    ret: Some(if i.is_multiple_of(97) { -11 } else { 0 }),
                },
            ),
        }
        if ts >= next_tick {
            tick(m, ts);
            next_tick += 100_000 * US;
        }
        i += 1;
    }
}

fn main() {
    let set = Arc::new(
        RuleSet::parse(&rules(), "bench.toml", &LoadContext::default()).expect("bench rules load"),
    );
    assert_eq!(set.rules.len(), 100);
    let names: Vec<Box<str>> = (0..300).map(|i| format!("sys{i}").into()).collect();

    // Without rules: the state system alone.
    let mut best_base = f64::MAX;
    for _ in 0..3 {
        let mut m = Machine::new();
        let t = Instant::now();
        run(
            EVENTS,
            &mut m,
            &mut |m, ts, cpu, ev| m.handle(ts, cpu, ev, &mut Nobody),
            |_, _| {},
        );
        best_base = best_base.min(t.elapsed().as_secs_f64());
    }

    // With 100 rules.
    let mut best_rules = f64::MAX;
    let mut evals = 0u64;
    let mut eval_time = 0f64;
    let mut series = 0;
    for _ in 0..3 {
        let mut engine = Engine::new(Arc::clone(&set));
        let mut hm = engine.host_metrics(&names);
        series = hm.len();
        let hm_ptr: *mut _ = &mut hm;
        let t = Instant::now();
        let mut e_time = 0f64;
        let mut n_eval = 0u64;
        run(
            EVENTS,
            &mut Machine::new(),
            // SAFETY: the two closures never run at the same time; both
            // borrow `hm` only for the duration of one call.
            &mut |m, ts, cpu, ev| m.handle(ts, cpu, ev, unsafe { &mut *hm_ptr }),
            |m, ts| {
                let e = Instant::now();
                let hm = unsafe { &mut *hm_ptr };
                hm.advance(ts);
                let f = engine.evaluate("bench", hm, Some(m), ts, false);
                std::hint::black_box(f);
                e_time += e.elapsed().as_secs_f64();
                n_eval += 1;
            },
        );
        let el = t.elapsed().as_secs_f64();
        if el < best_rules {
            best_rules = el;
            evals = n_eval;
            eval_time = e_time;
        }
    }
    let per_m = |s: f64| s / (EVENTS as f64 / 1e6);
    println!(
        "rules bench: {EVENTS} events (1 us apart: 1 M events/s of event time), 2 CPUs, 64 threads"
    );
    println!(
        "  without rules:   {:.1} ns/event, {:.1} % of one CPU at 1 M events/s",
        best_base * 1e9 / EVENTS as f64,
        per_m(best_base) * 100.0
    );
    println!(
        "  with 100 rules:  {:.1} ns/event, {:.1} % of one CPU at 1 M events/s ({} series; {} evaluations of all rules, {:.2} ms each)",
        best_rules * 1e9 / EVENTS as f64,
        per_m(best_rules) * 100.0,
        series,
        evals,
        eval_time * 1e3 / evals.max(1) as f64
    );
    println!(
        "  rules add:       {:.1} % of one CPU at 1 M events/s",
        (per_m(best_rules) - per_m(best_base)) * 100.0
    );

    // Reaction: a 50 ms syscall of `stall` ends; the pattern rules are
    // evaluated at once (as the relay does on a match) with all 100 rules
    // loaded; time from applying the exit event to the firing returned.
    let mut engine = Engine::new(Arc::clone(&set));
    let mut hm = engine.host_metrics(&names);
    let mut m = Machine::new();
    run(
        200_000,
        &mut m,
        &mut |m, ts, cpu, ev| m.handle(ts, cpu, ev, &mut hm),
        |_, _| {},
    );
    let mut lat = Vec::new();
    let mut ts = T0 + 1_000_000_000;
    for k in 0..200 {
        ts += 1_000_000_000;
        let tid = 5000 + k;
        m.handle(
            ts,
            0,
            &KernelEvent::Switch {
                prev_tid: 0,
                prev_comm: b"swapper/0",
                prev_prio: Some(20),
                prev_state: 0,
                next_tid: tid,
                next_comm: b"stall",
                next_prio: Some(20),
            },
            &mut hm,
        );
        m.handle(
            ts + 1000,
            0,
            &KernelEvent::SyscallEntry { id: 35, io: None },
            &mut hm,
        );
        let t = Instant::now();
        m.handle(
            ts + 50_000_000,
            0,
            &KernelEvent::SyscallExit { ret: Some(0) },
            &mut hm,
        );
        let f = engine.evaluate("bench", &mut hm, Some(&m), ts + 50_000_000, true);
        lat.push(t.elapsed().as_nanos() as u64);
        assert!(!f.is_empty());
        m.handle(
            ts + 50_001_000,
            0,
            &KernelEvent::Switch {
                prev_tid: tid,
                prev_comm: b"stall",
                prev_prio: Some(20),
                prev_state: 0,
                next_tid: 0,
                next_comm: b"swapper/0",
                next_prio: Some(20),
            },
            &mut hm,
        );
    }
    lat.sort_unstable();
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1e3;
    println!(
        "  reaction in the engine (event applied -> firing returned, 100 rules loaded): p50 {:.1} us, p99 {:.1} us",
        q(0.5),
        q(0.99)
    );
}
