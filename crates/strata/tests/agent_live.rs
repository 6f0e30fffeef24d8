//! `strata agent` on the real kernel, streaming over real TCP on loopback
//! to the codec-built test relay: the pages decode to the events of a
//! known workload, and sequence numbers have no gap and no duplicate.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use strata_agent::testkit::{Received, TestRelay, TestRelayOptions};
use strata_ftrace::format;
use strata_ftrace::Page;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Counts `raw_syscalls:sys_enter` records of `pid` with syscall number
/// `nr` in the pages received.
fn count_syscalls(r: &Received, pid: i32, nr: i64) -> u64 {
    let text = r
        .formats
        .get("raw_syscalls:sys_enter")
        .expect("sys_enter format sent");
    let fmt = format::parse("raw_syscalls", text).expect("format parses");
    let id_field = fmt.field("id").expect("sys_enter has id").accessor();
    let pid_field = fmt.field("common_pid").expect("common_pid").accessor();
    let layout = r.layout.expect("layout sent");
    let mut n = 0;
    for pages in r.page_bytes.values() {
        for page in pages {
            let pg = Page::parse(&layout, page).expect("page parses");
            for rec in pg.records().flatten() {
                let Some(ty) = rec.data.get(..2) else {
                    continue;
                };
                if u16::from_le_bytes([ty[0], ty[1]]) != fmt.id {
                    continue;
                }
                if pid_field.i64(rec.data) == Some(pid as i64) && id_field.i64(rec.data) == Some(nr)
                {
                    n += 1;
                }
            }
        }
    }
    n
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

#[test]
fn streams_pages_that_decode_to_the_workload() {
    if !common::skip_unless_root_with_tracefs() {
        return;
    }
    let relay = TestRelay::start(
        "127.0.0.1:0",
        TestRelayOptions {
            keep_pages: true,
            ..TestRelayOptions::default()
        },
    )
    .expect("test relay starts");
    let mut agent = Command::new(STRATA)
        .args([
            "agent",
            "--relay",
            &relay.addr,
            "--insecure",
            "--events",
            "syscalls,sched:sched_switch",
            "--host-id",
            "agent-live-test",
            "--compress",
            "lz4",
            "--buffer-size",
            "32M",
            "--quiet",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata agent starts");
    // Wait for the metadata, so the workload runs while tracing is on.
    assert!(
        wait_until(Duration::from_secs(10), || relay
            .received()
            .layout
            .is_some()),
        "the agent sent no metadata"
    );
    std::thread::sleep(Duration::from_millis(300));
    let dd = Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", "bs=1", "count=20000"])
        .stderr(Stdio::null())
        .spawn()
        .expect("dd runs");
    let pid = dd.id() as i32;
    let out = dd.wait_with_output().expect("dd finishes");
    assert!(out.status.success());
    // The events arrive while the agent runs: the periodic flush sends
    // the last, partly filled pages too.
    let arrived = wait_until(Duration::from_secs(5), || {
        count_syscalls(&relay.received(), pid, 0) >= 20_000
    });
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let status = agent.wait().expect("agent exits");
    let mut err = String::new();
    if let Some(mut e) = agent.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "agent failed: {err}");
    let r = relay.received();
    let reads = count_syscalls(&r, pid, 0);
    let writes = count_syscalls(&r, pid, 1);
    // dd makes exactly 20000 one-byte reads and writes, plus a few reads
    // while loading its libraries. Only a kernel overrun (another heavy
    // tracer load on this machine) may hide some, and it is then reported.
    let kernel_lost: u64 = r
        .lost
        .iter()
        .filter(|l| l.cause == strata_wire::LossCause::KernelBuffer)
        .map(|l| l.events)
        .sum();
    if kernel_lost == 0 {
        assert!(
            arrived,
            "dd's reads did not arrive before the agent stopped"
        );
        assert!((20_000..20_100).contains(&reads), "reads {reads}");
        assert!((20_000..20_100).contains(&writes), "writes {writes}");
    } else {
        println!("the kernel lost {kernel_lost} events on this busy machine; checking bounds only");
        assert!(
            reads < 20_100 && reads + kernel_lost >= 20_000,
            "reads {reads}"
        );
        assert!(
            writes < 20_100 && writes + kernel_lost >= 20_000,
            "writes {writes}"
        );
    }
    assert!(r.goodbye, "no goodbye");
    assert_eq!(r.duplicates, 0);
    let want: Vec<u64> = (1..=r.seqs.len() as u64).collect();
    assert_eq!(r.seqs, want, "sequence numbers have a gap");
    assert!(
        r.statedump_rows > 10,
        "state dump rows {}",
        r.statedump_rows
    );
    assert!(r.formats.contains_key("sched:sched_switch"));
    assert_eq!(r.host_id, "agent-live-test");
    // The instance is gone once the agent exited.
    let left: Vec<_> = std::fs::read_dir("/sys/kernel/tracing/instances")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("strata-{}-", agent.id()))
        })
        .collect();
    assert!(left.is_empty(), "the agent left its instance behind");
}

#[test]
fn control_commands_change_the_event_set_with_formats_first() {
    if !common::skip_unless_root_with_tracefs() {
        return;
    }
    let relay =
        TestRelay::start("127.0.0.1:0", TestRelayOptions::default()).expect("test relay starts");
    let mut agent = Command::new(STRATA)
        .args([
            "agent",
            "--relay",
            &relay.addr,
            "--insecure",
            "--quiet",
            "--no-statedump",
        ])
        .args(["--events", "sched:sched_switch"])
        .spawn()
        .expect("strata agent starts");
    assert!(wait_until(Duration::from_secs(10), || relay
        .received()
        .layout
        .is_some()));
    assert!(!relay
        .received()
        .formats
        .contains_key("raw_syscalls:sys_enter"));
    assert_eq!(relay.received().argument_names, 0);
    relay.send_control(strata_wire::Control {
        request: 7,
        command: strata_wire::ControlCommand::SetEvents(vec![
            "sched:sched_switch".into(),
            "syscalls".into(),
        ]),
    });
    relay.send_control(strata_wire::Control {
        request: 8,
        command: strata_wire::ControlCommand::Snapshot {
            before_ns: 1,
            after_ns: 1,
            name: "s".into(),
            at_ns: None,
        },
    });
    assert!(
        wait_until(Duration::from_secs(10), || relay
            .received()
            .control_results
            .len()
            >= 2),
        "no control results"
    );
    let r = relay.received();
    let (req, ok, msg) = &r.control_results[0];
    assert_eq!((*req, *ok), (7, true), "{msg}");
    assert!(msg.contains("2 added"), "{msg}");
    assert_eq!(r.control_results[1].0, 8);
    assert!(
        !r.control_results[1].1,
        "snapshots are not implemented yet and must say so"
    );
    // The new formats came first, with the syscall argument names.
    let text = r
        .formats
        .get("raw_syscalls:sys_enter")
        .expect("the new format came first")
        .clone();
    assert!(
        r.argument_names > 100,
        "{} argument-name formats",
        r.argument_names
    );
    let id = format::parse("raw_syscalls", &text)
        .expect("format parses")
        .id;
    // System calls (the polling below makes plenty) now arrive as events of
    // the new id.
    assert!(
        wait_until(Duration::from_secs(5), || relay
            .received()
            .events_by_id
            .get(&id)
            .copied()
            .unwrap_or(0)
            > 0),
        "no sys_enter events after the change"
    );
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    assert!(agent.wait().expect("agent exits").success());
}
