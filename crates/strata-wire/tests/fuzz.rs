//! Property tests: random messages round-trip; random and mutated bytes
//! never panic the decoder, and it never holds more than one frame's worth.

use proptest::prelude::*;
use strata_core::{ClockDesc, HostInfo};
use strata_wire::*;

fn arb_string() -> impl Strategy<Value = String> {
    prop::string::string_regex("[a-z0-9_ ./-]{0,24}").unwrap()
}

fn arb_message() -> impl Strategy<Value = (Message<'static>, u64)> {
    prop_oneof![
        (
            arb_string(),
            arb_string(),
            arb_string(),
            any::<u64>(),
            any::<u64>(),
            1u64..u64::MAX,
            any::<u32>()
        )
            .prop_map(|(a, b, c, inst, acked, next, cpus)| (
                Message::Hello(Hello {
                    min_version: 1,
                    max_version: 1,
                    software: a.clone(),
                    host_id: b,
                    host: HostInfo {
                        hostname: c,
                        cpu_count: cpus,
                        vm_uuid: None,
                        ..HostInfo::default()
                    },
                    token: a,
                    session: "s".into(),
                    source: Source::Replay,
                    instance: inst,
                    acked,
                    oldest: next,
                    next_seq: next,
                }),
                0
            )),
        (arb_string(), any::<i64>(), any::<i64>(), any::<u64>()).prop_map(|(n, s, o, f)| (
            Message::Clock(Clock {
                trace_clock: n.clone(),
                desc: ClockDesc {
                    name: n,
                    description: String::new(),
                    freq: f,
                    offset_s: s,
                    offset: o
                },
            }),
            0
        )),
        prop::collection::vec((arb_string(), arb_string(), arb_string()), 0..5).prop_map(|v| (
            Message::Formats(Formats {
                purpose: FormatPurpose::Recorded,
                formats: v
                    .into_iter()
                    .map(|(system, name, text)| FormatText { system, name, text })
                    .collect(),
            }),
            0
        )),
        (
            any::<u32>(),
            0u8..3,
            any::<u64>(),
            any::<u64>(),
            1u64..u64::MAX
        )
            .prop_map(|(cpu, c, e, p, seq)| (
                Message::Lost(Lost {
                    cpu,
                    cause: [
                        LossCause::KernelBuffer,
                        LossCause::SpoolFull,
                        LossCause::CorruptPage
                    ][c as usize],
                    events: e,
                    pages: p,
                    first_seq: e,
                    last_seq: p,
                }),
                seq
            )),
        (
            any::<u64>(),
            prop::collection::vec((any::<i32>(), any::<[u8; 16]>(), any::<bool>()), 0..8)
        )
            .prop_map(|(ts, rows)| (
                Message::Statedump(Statedump {
                    ts,
                    part: 0,
                    last: true,
                    threads: rows
                        .into_iter()
                        .map(|(tid, name, k)| ThreadRow {
                            tid,
                            name,
                            kernel_thread: k,
                            ..ThreadRow::default()
                        })
                        .collect(),
                }),
                1
            )),
        (
            any::<u64>(),
            any::<u64>(),
            arb_string(),
            any::<Option<i64>>()
        )
            .prop_map(|(b, a, n, at)| (
                Message::Control(Control {
                    request: b,
                    command: ControlCommand::Snapshot {
                        before_ns: b,
                        after_ns: a,
                        name: n,
                        at_ns: at,
                    },
                }),
                0
            )),
        prop::collection::vec(arb_string(), 0..6).prop_map(|specs| (
            Message::Control(Control {
                request: 1,
                command: ControlCommand::SetEvents(specs)
            }),
            0
        )),
        any::<u64>().prop_map(|s| (Message::Ack(Ack { seq: s }), 0)),
        prop::collection::vec(
            (
                arb_string(),
                prop::string::string_regex("[A-Za-z0-9-]{0,40}").unwrap(),
                any::<i32>(),
                prop::collection::vec((any::<u32>(), any::<i32>()), 0..8)
            ),
            0..5
        )
        .prop_map(|vms| (
            Message::VmHints(VmHints {
                vms: vms
                    .into_iter()
                    .map(|(name, uuid, qemu_pid, v)| VmHintEntry {
                        name,
                        uuid,
                        qemu_pid,
                        vcpus: v
                            .into_iter()
                            .map(|(id, tid)| VcpuThread { id, tid })
                            .collect(),
                    })
                    .collect(),
            }),
            0
        )),
        (any::<i64>(), any::<u64>()).prop_map(|(t, s)| (
            Message::Heartbeat(Heartbeat {
                unix_ns: t,
                last_seq: s
            }),
            0
        )),
    ]
}

fn comp(i: u8) -> Compression {
    [Compression::None, Compression::Lz4, Compression::Zstd][i as usize % 3]
}

/// Feeds `bytes` in chunks and decodes until an error or the end; returns
/// the messages decoded. Never panics, whatever the bytes.
fn drain(bytes: &[u8], chunk: usize, max_body: u32) -> Vec<u8> {
    let mut dec = FrameDecoder::new(max_body);
    let mut kinds = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        dec.feed(piece);
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => {
                    if let Ok(m) = f.message() {
                        kinds.push(m.kind());
                        if let Message::Pages(p) = &m {
                            let _ = p.pages.iter().count();
                        }
                        if let Message::Packets(p) = &m {
                            let _ = p.packets.iter().count();
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => return kinds,
            }
        }
        assert!(dec.buffered() <= HEADER_LEN + max_body as usize + chunk);
    }
    kinds
}

proptest! {
    #[test]
    fn random_messages_round_trip((msg, seq) in arb_message(), c in 0u8..3, chunk in 1usize..64) {
        let bytes = msg.encode(seq, comp(c)).unwrap();
        let mut dec = FrameDecoder::new(DEFAULT_MAX_BODY);
        let mut got = None;
        for piece in bytes.chunks(chunk) {
            dec.feed(piece);
            if let Some(f) = dec.next_frame().unwrap() {
                prop_assert_eq!(f.header.seq, seq);
                got = Some(f.message().unwrap().encode(seq, comp(c)).unwrap());
            }
        }
        prop_assert_eq!(got, Some(bytes));
    }

    #[test]
    fn random_page_batches_round_trip(pages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..10), cpu in any::<u32>(), c in 0u8..3) {
        let mut b = PageBatch::new(cpu);
        for p in &pages { b.push(p).unwrap(); }
        let bytes = b.message().encode(1, comp(c)).unwrap();
        let mut dec = FrameDecoder::new(DEFAULT_MAX_BODY);
        dec.feed(&bytes);
        let f = dec.next_frame().unwrap().unwrap();
        let Message::Pages(p) = f.message().unwrap() else { panic!("not pages") };
        prop_assert_eq!(p.cpu, cpu);
        let back: Vec<Vec<u8>> = p.pages.iter().map(|s| s.to_vec()).collect();
        prop_assert_eq!(back, pages);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..300) {
        drain(&bytes, chunk, DEFAULT_MAX_BODY);
        // Random bytes behind a valid magic reach the deeper checks.
        let mut b = MAGIC.to_vec();
        b.push(FRAME_VERSION);
        b.extend_from_slice(&bytes);
        drain(&b, chunk, 4096);
    }

    #[test]
    fn mutated_frames_never_panic((msg, seq) in arb_message(), c in 0u8..3, flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), chunk in 1usize..100) {
        let mut bytes = msg.encode(seq, comp(c)).unwrap();
        for (i, v) in flips {
            let at = i.index(bytes.len());
            bytes[at] = v;
        }
        drain(&bytes, chunk, DEFAULT_MAX_BODY);
    }

    /// Bodies that pass the checksum but hold random fields: every decoder
    /// path sees hostile lengths and counts.
    #[test]
    fn random_bodies_with_valid_frames_never_panic(kind_byte in any::<u8>(), body in prop::collection::vec(any::<u8>(), 0..512), seq in 0u64..3, c in 0u8..3) {
        let mut out = Vec::new();
        encode_frame(kind_byte, false, seq, comp(c), &body, &mut out).unwrap();
        drain(&out, 17, DEFAULT_MAX_BODY);
        let mut dec = FrameDecoder::new(DEFAULT_MAX_BODY);
        dec.feed(&out);
        if let Ok(Some(f)) = dec.next_frame() {
            let _ = f.message();
        }
    }

    /// Compressed bodies that lie about their size fail cleanly.
    #[test]
    fn lying_compressed_bodies_fail_cleanly(body in prop::collection::vec(any::<u8>(), 0..512), raw in 0u32..100_000, c in 1u8..3) {
        let mut out = Vec::new();
        encode_frame(kind::ACK, false, 0, Compression::None, &body, &mut out).unwrap();
        out[6] = c;
        out[12..16].copy_from_slice(&raw.to_le_bytes());
        // Recompute the checksum so that the lie reaches the decompressor.
        let crc = crc32_reference(&out);
        out[24..28].copy_from_slice(&crc.to_le_bytes());
        drain(&out, 64, DEFAULT_MAX_BODY);
    }
}

/// CRC-32 (IEEE) as the frame header defines it, computed bit by bit so the
/// test does not trust the crate's own code.
fn crc32_reference(frame: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in frame[..24].iter().chain(&frame[HEADER_LEN..]) {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
