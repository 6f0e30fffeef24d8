//! Property tests: the state system and every analysis take any sequence of
//! events (random tids, CPUs, orders, missing entries and exits) without
//! panicking, and their accounting stays consistent. Time arguments of any
//! shape never panic the parser.

use proptest::prelude::*;
use strata_analysis::analysis::{Accumulators, Options, Selection};
use strata_analysis::event::{IoEntry, IoOp, KernelEvent, SoftirqPhase};
use strata_analysis::state::Machine;
use strata_analysis::timespec;

const NAMES: [&[u8]; 4] = [b"bash", b"", b"a-very-long-thread-name-indeed", b"x\0y"];

fn event(k: u8, a: i32, b: i32, c: i64) -> KernelEvent<'static> {
    let name = NAMES[(a.unsigned_abs() % 4) as usize];
    match k % 20 {
        0..=2 => KernelEvent::Switch {
            prev_tid: a,
            prev_comm: name,
            prev_prio: Some(b % 140 - 100),
            prev_state: c,
            next_tid: b,
            next_comm: name,
            next_prio: Some(20),
        },
        3 => KernelEvent::Wakeup {
            tid: a,
            prio: Some(b),
            target_cpu: Some(b as u32),
            new: c & 1 == 0,
        },
        4 => KernelEvent::Migrate {
            tid: a,
            comm: name,
            prio: None,
            dest_cpu: Some(b as u32),
        },
        5 => KernelEvent::Fork {
            parent_tid: a,
            parent_pid: Some(a),
            parent_comm: name,
            child_tid: b,
            child_pid: (c & 1 == 0).then_some(b),
            child_comm: name,
        },
        6 => KernelEvent::Exec {
            tid: a,
            filename: b"/usr/bin/some-program-with-a-long-name",
        },
        7 => KernelEvent::Exit { tid: a },
        8 => KernelEvent::Free { tid: a },
        9 => KernelEvent::StatedumpThread {
            tid: a,
            pid: b,
            ppid: Some(1),
            name,
            status: Some(c % 8),
        },
        10..=12 => KernelEvent::SyscallEntry {
            id: (b.unsigned_abs() % 5) as u16,
            io: match c % 5 {
                0 => None,
                1 => Some(IoEntry {
                    op: IoOp::Open,
                    fd: None,
                    path: Some(b"/etc/passwd"),
                }),
                2 => Some(IoEntry {
                    op: IoOp::Read,
                    fd: Some(c % 7),
                    path: None,
                }),
                3 => Some(IoEntry {
                    op: IoOp::Dup,
                    fd: Some(c % 7),
                    path: None,
                }),
                _ => Some(IoEntry {
                    op: IoOp::Close,
                    fd: Some(c % 7),
                    path: None,
                }),
            },
        },
        13 | 14 => KernelEvent::SyscallExit {
            ret: (c % 3 != 0).then_some(c % 9 - 4),
        },
        15 => KernelEvent::IrqEntry { irq: c % 4, name },
        16 => KernelEvent::IrqExit { irq: c % 4 },
        17 => KernelEvent::Softirq {
            phase: [SoftirqPhase::Raise, SoftirqPhase::Entry, SoftirqPhase::Exit]
                [(c.unsigned_abs() % 3) as usize],
            vec: b as u32,
        },
        18 => {
            if c & 1 == 0 {
                KernelEvent::PageAlloc { order: b as u32 }
            } else {
                KernelEvent::PageFault { user: b & 1 == 0 }
            }
        }
        _ => {
            if c & 1 == 0 {
                KernelEvent::BlockIssue {
                    dev: 8,
                    sector: (a % 4) as u64,
                    nr_sector: (b % 3) as u64,
                    write: c & 2 == 0,
                    tid: (c & 4 == 0).then_some(a),
                }
            } else {
                KernelEvent::BlockComplete {
                    dev: 8,
                    sector: (a % 4) as u64,
                    nr_sector: (b % 3) as u64,
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_event_sequence_is_accepted(
        evs in prop::collection::vec(
            (any::<u8>(), -2i32..12, -2i32..12, any::<i64>(), 0u32..6, 0i64..1000),
            0..400,
        ),
        wild_cpu in prop::option::of(any::<u32>()),
    ) {
        let mut m = Machine::new();
        let opts = Options { selection: Selection::all(), ..Options::default() };
        let mut acc = Accumulators::new(&opts);
        acc.begin(0);
        let mut ts = 0i64;
        for (i, (k, a, b, c, cpu, dt)) in evs.iter().enumerate() {
            ts += dt;
            let cpu = if i == 7 { wild_cpu.unwrap_or(*cpu) } else { *cpu };
            if c & 8 != 0 {
                // A `tid` context: the thread running when the event fired.
                m.running(ts, cpu, *b, &mut acc);
            }
            m.handle(ts, cpu, &event(*k, *a, *b, *c), &mut acc);
        }
        m.flush(ts, &mut acc);
        let dur = ts.max(1);
        let c = acc.cputop.as_ref().unwrap().report(&m, dur, 0);
        let threads: i64 = c.threads.iter().map(|t| t.cpu_ns).sum();
        let cpus: i64 = c.cpus.iter().map(|x| x.busy_ns).sum();
        prop_assert_eq!(threads, cpus);
        for x in &c.cpus {
            prop_assert!(x.busy_ns <= dur, "a CPU busier than the period");
        }
        let names: Vec<Box<str>> = (0..5).map(|i| format!("sys{i}").into()).collect();
        let s = acc.syscalls.as_ref().unwrap().report(&m, &names, 3);
        prop_assert_eq!(s.total, s.syscalls.iter().map(|x| x.stats.count).sum::<u64>());
        let _ = acc.sched.as_ref().unwrap().report(&m, 3);
        let _ = acc.irq.as_ref().unwrap().report(&m, dur);
        let _ = acc.io.as_ref().unwrap().report(&m, dur, 3);
        let _ = acc.mem.as_ref().unwrap().report(&m, 3);
        let _ = acc.summary.as_ref().unwrap().report(&m, dur, Vec::new(), Vec::new(), 3);
        prop_assert!(m.live_threads() <= m.idents().len());
    }

    #[test]
    fn time_arguments_never_panic(s in ".{0,40}") {
        if let Ok(t) = timespec::parse(&s) {
            let _ = t.resolve(1_457_113_582_794_565_804);
        }
    }

    #[test]
    fn clock_times_parse_back(h in 0u32..24, m in 0u32..60, sec in 0u32..60, ns in 0u32..1_000_000_000) {
        let text = format!("{h:02}:{m:02}:{sec:02}.{ns:09}");
        let t = timespec::parse(&text).unwrap().resolve(0);
        prop_assert_eq!(timespec::format_time_of_day(t), text);
    }
}
