//! The conversion of real tracefs formats (this kernel's, in fixtures) to
//! LTTng's event names, fields and value conventions, checked byte by byte.

mod common;

use common::{fixtures, format_of};
use proptest::prelude::*;
use strata_ctf::write::{
    EventClassDesc, FieldType, HeaderKind, IntType, PacketBuilder, PacketConfig, PacketStart, Uuid,
};
use strata_ftrace::encode::RecordBuilder;
use strata_store::convert::{ConvertOptions, Converter, Outcome, TidContext};

/// Bytes of the header and context before the first event, and of an
/// extended large event header (the first event of a packet is extended).
const FIRST_PAYLOAD: usize = 84 + 14;

/// Payload offsets below are those of events without the `_tid` context.
const NO_TID: ConvertOptions = ConvertOptions {
    tid_context: TidContext::Auto,
};

fn converter() -> Converter {
    let (events, syscalls) = fixtures();
    Converter::new(&events, &syscalls, NO_TID)
}

/// Converts one record alone in a packet; returns its class and payload.
fn convert_one(c: &Converter, rec: &[u8]) -> (u32, Vec<u8>) {
    let mut b = PacketBuilder::new(PacketConfig {
        trace_uuid: Uuid::default(),
        header: HeaderKind::Large,
        capacity: 4096,
    })
    .unwrap();
    b.begin(PacketStart::default());
    let Outcome::Written(class) = c.write(&mut b, 5, rec).unwrap() else {
        panic!("record not written")
    };
    let done = b.finish(5, 0, 0).unwrap();
    let content = u64::from_le_bytes(done.bytes[48..56].try_into().unwrap()) as usize / 8;
    (class, done.bytes[FIRST_PAYLOAD..content].to_vec())
}

fn class<'a>(c: &'a Converter, name: &str) -> &'a EventClassDesc {
    c.classes()
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no class {name}"))
}

fn field_names(e: &EventClassDesc) -> Vec<&str> {
    e.fields.iter().map(|f| f.name.as_str()).collect()
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn sched_switch_takes_lttng_names_and_prio_minus_100() {
    let (events, _) = fixtures();
    let c = converter();
    assert!(
        !c.has_tid_context(),
        "sched_switch is recorded: no tid context"
    );
    let sw = class(&c, "sched_switch");
    assert_eq!(
        field_names(sw),
        [
            "prev_comm",
            "prev_tid",
            "prev_prio",
            "prev_state",
            "next_comm",
            "next_tid",
            "next_prio"
        ]
    );
    assert_eq!(sw.fields[3].ty, FieldType::Int(IntType::new(64, true)));
    let f = format_of(&events, "sched_switch");
    let rec = RecordBuilder::new(f, 41)
        .str("prev_comm", "bash")
        .int("prev_pid", 41)
        .int("prev_prio", 120)
        .int("prev_state", 1)
        .str("next_comm", "kworker/0:1")
        .int("next_pid", 7)
        .int("next_prio", 98)
        .finish();
    let (id, p) = convert_one(&c, &rec);
    assert_eq!(id, sw.id);
    assert_eq!(&p[0..5], b"bash\0");
    assert_eq!(i32_at(&p, 16), 41);
    assert_eq!(i32_at(&p, 20), 20, "prio 120 is written as 20");
    assert_eq!(u64_at(&p, 24), 1);
    assert_eq!(&p[32..44], b"kworker/0:1\0");
    assert_eq!(i32_at(&p, 48), 7);
    assert_eq!(i32_at(&p, 52), -2, "an RT prio 98 is written as -2");
    assert_eq!(p.len(), 56);
}

#[test]
fn data_loc_comms_become_lttng_char16() {
    let (events, _) = fixtures();
    let c = converter();
    // On 6.18 sched_process_fork's comms are __data_loc strings.
    let fork = class(&c, "sched_process_fork");
    assert_eq!(
        field_names(fork),
        [
            "parent_comm",
            "parent_tid",
            "parent_pid",
            "child_comm",
            "child_tid",
            "child_pid"
        ]
    );
    let f = format_of(&events, "sched_process_fork");
    let rec = RecordBuilder::new(f, 10)
        .str("parent_comm", "a-very-long-parent-name")
        .int("parent_pid", 10)
        .str("child_comm", "kid")
        .int("child_pid", 11)
        .finish();
    let (_, p) = convert_one(&c, &rec);
    assert_eq!(&p[0..16], b"a-very-long-pare");
    assert_eq!((i32_at(&p, 16), i32_at(&p, 20)), (10, 10));
    assert_eq!(&p[24..28], b"kid\0");
    assert_eq!((i32_at(&p, 40), i32_at(&p, 44)), (11, 11));
    // sched_process_exec's filename stays a string; pid -> tid.
    let exec = class(&c, "sched_process_exec");
    assert_eq!(field_names(exec), ["filename", "tid", "old_tid"]);
    let f = format_of(&events, "sched_process_exec");
    let rec = RecordBuilder::new(f, 11)
        .str("filename", "/bin/true")
        .int("pid", 11)
        .int("old_pid", 11)
        .finish();
    let (_, p) = convert_one(&c, &rec);
    assert_eq!(&p[..10], b"/bin/true\0");
    assert_eq!(i32_at(&p, 10), 11);
}

#[test]
fn syscalls_are_named_and_typed_from_their_formats() {
    let (events, _) = fixtures();
    let c = converter();
    let openat = class(&c, "syscall_entry_openat");
    assert_eq!(field_names(openat), ["dfd", "filename", "flags", "mode"]);
    assert_eq!(openat.fields[0].ty, FieldType::Int(IntType::new(32, true)));
    assert_eq!(openat.fields[1].ty, FieldType::Int(IntType::hex(64)));
    assert_eq!(openat.fields[3].ty, FieldType::Int(IntType::new(16, false)));
    // A call without a format in the fixtures gets generic arguments.
    assert_eq!(field_names(class(&c, "syscall_entry_getpid")).len(), 6);
    assert_eq!(field_names(class(&c, "syscall_exit_openat")), ["ret"]);
    // Every call of the table is declared up front, as LTTng does.
    let declared = c
        .classes()
        .iter()
        .filter(|e| e.name.starts_with("syscall_entry_"))
        .count();
    assert_eq!(declared, strata_core::syscalls::x86_64_all().count() + 1);

    let enter = format_of(&events, "sys_enter");
    let rec = RecordBuilder::new(enter, 99)
        .int("id", 257)
        .elem("args", 0, (-100i64) as u64)
        .elem("args", 1, 0x7fff_0000_1234)
        .elem("args", 2, 0o2000000)
        .elem("args", 3, 0o644)
        .finish();
    let (id, p) = convert_one(&c, &rec);
    assert_eq!(id, openat.id);
    assert_eq!(i32_at(&p, 0), -100, "AT_FDCWD as a signed int");
    assert_eq!(u64_at(&p, 4), 0x7fff_0000_1234);
    assert_eq!(i32_at(&p, 12), 0o2000000);
    assert_eq!(u16::from_le_bytes([p[16], p[17]]), 0o644);
    assert_eq!(p.len(), 18);

    let exit = format_of(&events, "sys_exit");
    let rec = RecordBuilder::new(exit, 99)
        .int("id", 0)
        .int("ret", -11)
        .finish();
    let (id, p) = convert_one(&c, &rec);
    assert_eq!(c.class_name(id), Some("syscall_exit_read"));
    assert_eq!(p, (-11i64).to_le_bytes());
}

#[test]
fn unknown_syscalls_keep_their_number_and_arguments() {
    let (events, _) = fixtures();
    let c = converter();
    let enter = format_of(&events, "sys_enter");
    let rec = RecordBuilder::new(enter, 1)
        .int("id", 4000)
        .elem("args", 0, 1)
        .elem("args", 5, 6)
        .finish();
    let (id, p) = convert_one(&c, &rec);
    assert_eq!(c.class_name(id), Some("syscall_entry_unknown"));
    assert_eq!(i32_at(&p, 0), 4000);
    assert_eq!((u64_at(&p, 4), u64_at(&p, 44)), (1, 6));
    let exit = format_of(&events, "sys_exit");
    let rec = RecordBuilder::new(exit, 1)
        .int("id", -1)
        .int("ret", -38)
        .finish();
    let (id, p) = convert_one(&c, &rec);
    assert_eq!(c.class_name(id), Some("syscall_exit_unknown"));
    assert_eq!(
        field_names(class(&c, "syscall_exit_unknown")),
        ["id", "ret", "args"]
    );
    assert_eq!((i32_at(&p, 0), u64_at(&p, 4) as i64), (-1, -38));
    assert_eq!(p.len(), 4 + 8 + 48);
}

#[test]
fn other_mappings_and_generic_events() {
    let (events, _) = fixtures();
    let c = converter();
    assert_eq!(field_names(class(&c, "irq_softirq_entry")), ["vec"]);
    assert_eq!(field_names(class(&c, "irq_handler_entry")), ["irq", "name"]);
    assert_eq!(
        field_names(class(&c, "power_cpu_idle")),
        ["state", "cpu_id"]
    );
    assert_eq!(
        field_names(class(&c, "x86_exceptions_page_fault_user")),
        ["address", "ip", "error_code"]
    );
    let exit = class(&c, "kvm_x86_exit");
    assert_eq!(
        &field_names(exit)[..8],
        [
            "exit_reason",
            "guest_rip",
            "isa",
            "info1",
            "info2",
            "intr_info",
            "error_code",
            "vcpu_id"
        ]
    );
    assert_eq!(
        field_names(exit)[8..],
        ["requests"],
        "extra ftrace fields are kept after LTTng's"
    );
    assert!(c.classes().iter().any(|e| e.name == "kvm_x86_pio"));
    // block: LTTng's fields first, rwbs as LTTng's bit mask, the task's tid.
    let rq = class(&c, "block_rq_issue");
    assert_eq!(
        &field_names(rq)[..7],
        ["dev", "sector", "nr_sector", "bytes", "tid", "rwbs", "comm"]
    );
    let f = format_of(&events, "block_rq_issue");
    let rec = RecordBuilder::new(f, 321)
        .int("dev", 8 << 20)
        .int("sector", 2048)
        .int("nr_sector", 8)
        .int("bytes", 4096)
        .str("rwbs", "WS")
        .str("comm", "dd")
        .finish();
    let (_, p) = convert_one(&c, &rec);
    assert_eq!(i32_at(&p, 0), 8 << 20);
    assert_eq!(u64_at(&p, 4), 2048);
    assert_eq!(i32_at(&p, 20), 321, "tid from common_pid");
    assert_eq!(i32_at(&p, 24), 1 | 32, "W|S");
    assert_eq!(&p[28..31], b"dd\0");
    // An event LTTng does not know keeps its ftrace name and fields.
    let wq = class(&c, "workqueue_execute_start");
    assert_eq!(field_names(wq), ["work", "function"]);
    assert_eq!(wq.fields[0].ty, FieldType::Int(IntType::hex(64)));
    // Dynamic integer arrays become sequences with a length field.
    let dma = class(&c, "dma_map_sg");
    let names = field_names(dma);
    let at = names.iter().position(|n| *n == "phys_addrs").unwrap();
    assert_eq!(names[at - 1], "_phys_addrs_length");
    let f = format_of(&events, "dma_map_sg");
    let mut addrs = Vec::new();
    for v in [0x1000u64, 0x2000] {
        addrs.extend_from_slice(&v.to_le_bytes());
    }
    let rec = RecordBuilder::new(f, 1)
        .str("device", "nvme0")
        .dyn_bytes("phys_addrs", &addrs)
        .finish();
    let (_, p) = convert_one(&c, &rec);
    assert_eq!(&p[..6], b"nvme0\0");
    // full_nents (4), full_ents (4), truncated (1), then the sequence.
    let seq = 6 + 4 + 4 + 1;
    assert_eq!(i32_at(&p, seq), 2);
    assert_eq!(
        (u64_at(&p, seq + 4), u64_at(&p, seq + 12)),
        (0x1000, 0x2000)
    );
    assert_eq!(i32_at(&p, seq + 20), 0, "empty dma_addrs");
}

#[test]
fn tid_context_when_asked_or_without_sched_switch() {
    let (events, syscalls) = fixtures();
    let no_switch: Vec<_> = events
        .iter()
        .filter(|f| f.name != "sched_switch")
        .cloned()
        .collect();
    let c = Converter::new(&no_switch, &syscalls, NO_TID);
    assert!(c.has_tid_context());
    // The default keeps it even with sched_switch, which kernels may not
    // emit for every switch.
    let c = Converter::new(&events, &syscalls, ConvertOptions::default());
    assert!(c.has_tid_context());
    let f = format_of(&events, "softirq_entry");
    let rec = RecordBuilder::new(f, 4242).int("vec", 3).finish();
    let (_, p) = convert_one(&c, &rec);
    assert_eq!((i32_at(&p, 0), i32_at(&p, 4)), (4242, 3));
}

#[test]
fn live_tracefs_formats_convert_too() {
    let root = std::path::Path::new("/sys/kernel/tracing/events");
    let Ok(text) = std::fs::read_to_string(root.join("sched/sched_switch/format")) else {
        println!("skipping: tracefs is not mounted at /sys/kernel/tracing");
        return;
    };
    let f = strata_ftrace::format::parse("sched", &text).unwrap();
    let c = Converter::new(std::slice::from_ref(&f), &[], NO_TID);
    let rec = RecordBuilder::new(&f, 1)
        .int("prev_prio", 139)
        .int("next_pid", 5)
        .finish();
    let (_, p) = convert_one(&c, &rec);
    assert_eq!(i32_at(&p, 20), 39);
    assert_eq!(i32_at(&p, 48), 5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random and mutated records never panic and never write past the packet.
    #[test]
    fn random_records_never_panic(
        pick in 0usize..64,
        len in 0usize..200,
        flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..16),
        seed in proptest::collection::vec(any::<u8>(), 200),
    ) {
        let (events, syscalls) = fixtures();
        let c = Converter::new(&events, &syscalls, ConvertOptions::default());
        let f = &events[pick % events.len()];
        let mut rec = RecordBuilder::new(f, 1).finish();
        rec.extend_from_slice(&seed);
        rec.truncate(len.max(2));
        rec[0..2].copy_from_slice(&f.id.to_le_bytes());
        for (at, v) in flips {
            if let Some(b) = rec.get_mut(at) {
                *b = v;
            }
        }
        let mut b = PacketBuilder::new(PacketConfig {
            trace_uuid: Uuid::default(),
            header: HeaderKind::Large,
            capacity: 512,
        }).unwrap();
        b.begin(PacketStart::default());
        for _ in 0..8 {
            let _ = c.write(&mut b, 1, &rec);
        }
        prop_assert!(b.len() <= 512);
    }
}
