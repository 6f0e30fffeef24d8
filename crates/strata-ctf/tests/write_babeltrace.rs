//! The writer's output read back by the real babeltrace2: metadata text,
//! packets with both event header layouts, extended timestamps across long
//! gaps, strings, arrays, sequences and discarded-event counts.

use std::path::{Path, PathBuf};
use std::process::Command;

use strata_core::{ClockDesc, HostInfo};
use strata_ctf::index;
use strata_ctf::write::*;

fn babeltrace2() -> Option<PathBuf> {
    let ok = Command::new("babeltrace2")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then(|| PathBuf::from("babeltrace2"))
}

/// A fresh, empty directory under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "strata-ctf-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("index")).unwrap();
    dir
}

fn trace_desc(n_classes: u32) -> TraceDesc {
    let host = HostInfo {
        hostname: "writer-test".into(),
        sysname: "Linux".into(),
        kernel_release: "6.18.0".into(),
        kernel_version: "#1".into(),
        ..HostInfo::default()
    };
    let clock = ClockDesc::nanoseconds("monotonic", "Monotonic Clock", 1_700_000_000_000_000_000);
    let mut events = vec![
        EventClassDesc {
            id: 0,
            name: "sched_switch".into(),
            fields: vec![
                FieldDesc::text("prev_comm", 16),
                FieldDesc::int("prev_tid", IntType::new(32, true)),
                FieldDesc::int("prev_prio", IntType::new(32, true)),
                FieldDesc::int("prev_state", IntType::new(64, true)),
                FieldDesc::text("next_comm", 16),
                FieldDesc::int("next_tid", IntType::new(32, true)),
                FieldDesc::int("next_prio", IntType::new(32, true)),
            ],
        },
        EventClassDesc {
            id: 1,
            name: "demo".into(),
            fields: vec![
                FieldDesc::string("name"),
                FieldDesc::int("n", IntType::new(8, false)),
                FieldDesc::new(
                    "vals",
                    FieldType::Sequence {
                        elem: IntType::new(16, false),
                        length_field: "n".into(),
                    },
                ),
                FieldDesc::new(
                    "arr",
                    FieldType::Array {
                        elem: IntType::hex(64),
                        len: 2,
                    },
                ),
                FieldDesc::new(
                    "state",
                    FieldType::Enum {
                        int: IntType::new(32, false),
                        mappings: vec![("RUN".into(), 0, 0), ("WAIT".into(), 1, 5)],
                    },
                ),
            ],
        },
    ];
    for id in 2..n_classes {
        events.push(EventClassDesc {
            id,
            name: format!("filler_{id}"),
            fields: vec![],
        });
    }
    let max = events.iter().map(|e| e.id).max().unwrap_or(0);
    TraceDesc {
        uuid: Uuid::derive(b"write-babeltrace"),
        clock: ClockParams::for_host(&clock, &host),
        host,
        tracer: TracerIdentity {
            name: "lttng-modules".into(),
            major: 2,
            minor: 13,
            patchlevel: 0,
        },
        extra_env: vec![],
        header: HeaderKind::for_max_id(max),
        event_context: vec![],
        events,
    }
}

fn switch(p: &mut PacketBuilder, ts: u64, prev: i32, next_comm: &[u8]) {
    let mut e = p.event(0, ts);
    e.text_array(b"prev", 16);
    e.i32(prev);
    e.i32(20);
    e.i64(1);
    e.text_array(next_comm, 16);
    e.i32(prev + 1);
    e.i32(-100);
    e.commit().unwrap();
}

fn demo(p: &mut PacketBuilder, ts: u64) {
    let mut e = p.event(1, ts);
    e.string(b"hello");
    e.u8(3);
    for v in [7u16, 8, 9] {
        e.u16(v);
    }
    e.u64(0xdead);
    e.u64(0xbeef);
    e.u32(2);
    e.commit().unwrap();
}

/// Writes a trace with two packets on one CPU and returns babeltrace2's text.
fn write_and_read(dir: &Path, desc: &TraceDesc, bt: &Path) -> (String, String) {
    std::fs::write(dir.join("metadata"), metadata_text(desc)).unwrap();
    let mut p = PacketBuilder::new(PacketConfig {
        trace_uuid: desc.uuid,
        header: desc.header,
        capacity: 4096,
    })
    .unwrap();
    let mut stream = Vec::new();
    let mut idx = index::encode_header().to_vec();
    let base = 1_000_000u64;
    p.begin(PacketStart {
        stream_instance_id: 0,
        cpu_id: 0,
        seq: 0,
        ts_begin: base,
    });
    switch(&mut p, base + 10, 41, b"next-task");
    demo(&mut p, base + 20);
    // Longer than both 2^27 and 2^32 ns: both header kinds need extended.
    switch(&mut p, base + 5_000_000_000, 43, b"late");
    let done = p.finish(base + 5_000_000_000, 0, 0).unwrap();
    stream.extend_from_slice(done.bytes);
    done.index.encode(&mut idx);
    p.begin(PacketStart {
        stream_instance_id: 0,
        cpu_id: 0,
        seq: 1,
        ts_begin: base + 6_000_000_000,
    });
    switch(&mut p, base + 6_000_000_001, 45, b"after-loss");
    let done = p
        .finish(base + 6_000_000_002, 7, stream.len() as u64)
        .unwrap();
    stream.extend_from_slice(done.bytes);
    done.index.encode(&mut idx);
    std::fs::write(dir.join("channel0_0"), &stream).unwrap();
    std::fs::write(dir.join("index/channel0_0.idx"), &idx).unwrap();

    let out = Command::new(bt)
        .args(["--clock-cycles"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "babeltrace2 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check(desc: TraceDesc, tag: &str) {
    let Some(bt) = babeltrace2() else {
        println!("skipping: babeltrace2 is not installed");
        return;
    };
    let dir = temp_dir(tag);
    let (text, err) = write_and_read(&dir, &desc, &bt);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("[00000000000001000010]"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("sched_switch"));
    assert!(lines[0].contains("prev_tid = 41"));
    assert!(lines[0].contains("next_comm = \"next-task\""));
    assert!(lines[0].contains("next_prio = -100"));
    assert!(lines[1].contains("demo"));
    assert!(lines[1].contains("name = \"hello\""));
    assert!(
        lines[1].contains("vals = [ [0] = 7, [1] = 8, [2] = 9 ]"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("arr = [ [0] = 0xDEAD, [1] = 0xBEEF ]"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("state = ( \"WAIT\" : container = 2 )"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("[00000000005001000000]"),
        "{}",
        lines[2]
    );
    assert!(lines[3].contains("next_comm = \"after-loss\""));
    // The second packet's running count of 7 shows as discarded events.
    assert!(err.contains("Tracer discarded 7 events"), "stderr: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compact_header_trace_reads_back() {
    let desc = trace_desc(2);
    assert_eq!(desc.header, HeaderKind::Compact);
    check(desc, "compact");
}

#[test]
fn large_header_trace_reads_back() {
    let desc = trace_desc(40);
    assert_eq!(desc.header, HeaderKind::Large);
    check(desc, "large");
}
