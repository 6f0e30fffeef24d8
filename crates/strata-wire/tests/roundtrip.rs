//! Every message survives encode then decode, with each compression, fed
//! to the streaming decoder whole and byte by byte.

use strata_core::{ClockDesc, HostInfo};
use strata_wire::*;

fn host() -> HostInfo {
    HostInfo {
        hostname: "web1".into(),
        sysname: "Linux".into(),
        kernel_release: "6.18.0".into(),
        kernel_version: "#1 SMP".into(),
        machine_id: "0123456789abcdef0123456789abcdef".into(),
        boot_id: "b0b0b0b0-1111-2222-3333-444444444444".into(),
        cpu_count: 8,
        vm_uuid: None,
    }
}

fn page(fill: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add((i % 7) as u8)).collect()
}

/// One of each message, and the sequence number it travels with.
fn samples() -> Vec<(Message<'static>, u64)> {
    vec![
        (
            Message::Hello(Hello {
                min_version: 1,
                max_version: 3,
                software: "strata-agent 0.1.0".into(),
                host_id: "web1".into(),
                host: host(),
                token: "s3cr3t".into(),
                session: "prod".into(),
                source: Source::Live,
                instance: 0xdead_beef_1234,
                acked: 41,
                oldest: 42,
                next_seq: 99,
            }),
            0,
        ),
        (
            Message::PageLayout(PageLayout {
                header_page: "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n".into(),
                header_event: "# compressed entry header\n".into(),
            }),
            0,
        ),
        (
            Message::Clock(Clock {
                trace_clock: "mono".into(),
                desc: ClockDesc::nanoseconds(
                    "monotonic",
                    "Monotonic Clock",
                    1_700_000_000_123_456_789,
                ),
            }),
            0,
        ),
        (
            Message::Formats(Formats {
                purpose: FormatPurpose::ArgumentNames,
                formats: vec![
                    FormatText {
                        system: "sched".into(),
                        name: "sched_switch".into(),
                        text: "name: sched_switch\nID: 316\nformat:\n".into(),
                    },
                    FormatText {
                        system: "raw_syscalls".into(),
                        name: "sys_enter".into(),
                        text: String::new(),
                    },
                ],
            }),
            0,
        ),
        (
            Message::CtfMetadata(CtfMetadata {
                tsdl: "/* CTF 1.8 */\ntrace { major = 1; };\n".into(),
            }),
            0,
        ),
        (
            Message::MetadataDone(MetadataDone {
                generation: 2,
                cpus: vec![0, 1, 5],
            }),
            0,
        ),
        (
            Message::Lost(Lost {
                cpu: 3,
                cause: LossCause::SpoolFull,
                events: 12_345,
                pages: 17,
                first_seq: 100,
                last_seq: 116,
            }),
            7,
        ),
        (
            Message::Statedump(Statedump {
                ts: 123_456_789,
                part: 1,
                last: true,
                threads: vec![
                    ThreadRow {
                        tid: 1,
                        pid: 1,
                        ppid: 0,
                        name: *b"systemd\0\0\0\0\0\0\0\0\0",
                        kernel_thread: false,
                        status: 5,
                        cpu: 1,
                        vtid: 1,
                        vpid: 1,
                        vppid: 0,
                        ns_level: 0,
                        ns_inum: 4026531836,
                    },
                    ThreadRow {
                        tid: -1,
                        kernel_thread: true,
                        ..ThreadRow::default()
                    },
                ],
            }),
            u64::MAX,
        ),
        (
            Message::ControlResult(ControlResult {
                request: 9,
                ok: false,
                message: "unknown event 'nope'".into(),
            }),
            0,
        ),
        (
            Message::Goodbye(Goodbye {
                last_seq: 1000,
                reason: "SIGTERM".into(),
            }),
            0,
        ),
        (
            Message::Heartbeat(Heartbeat {
                unix_ns: -5,
                last_seq: 77,
            }),
            0,
        ),
        (
            Message::Welcome(Welcome {
                version: 1,
                relay: "strata-relay 0.1.0".into(),
                known: true,
                resume_after: 55,
                heartbeat_ms: 2000,
                max_body: DEFAULT_MAX_BODY,
            }),
            0,
        ),
        (
            Message::Refused(Refused {
                code: RefuseCode::BadToken,
                message: "wrong token for host web1".into(),
            }),
            0,
        ),
        (
            Message::Refused(Refused {
                code: RefuseCode::Other(999),
                message: String::new(),
            }),
            0,
        ),
        (Message::Ack(Ack { seq: 12 }), 0),
        (
            Message::Control(Control {
                request: 1,
                command: ControlCommand::SetEvents(vec![
                    "sched".into(),
                    "-sched:sched_waking".into(),
                ]),
            }),
            0,
        ),
        (
            Message::Control(Control {
                request: 2,
                command: ControlCommand::Start,
            }),
            0,
        ),
        (
            Message::Control(Control {
                request: 3,
                command: ControlCommand::Stop,
            }),
            0,
        ),
        (
            Message::Control(Control {
                request: 4,
                command: ControlCommand::Snapshot {
                    before_ns: 5_000_000_000,
                    after_ns: 1_000_000_000,
                    name: "incident-42".into(),
                    at_ns: None,
                },
            }),
            0,
        ),
        (
            Message::Control(Control {
                request: 5,
                command: ControlCommand::Snapshot {
                    before_ns: 2_000_000_000,
                    after_ns: 0,
                    name: "aligned".into(),
                    at_ns: Some(1_795_710_537_123_456_789),
                },
            }),
            0,
        ),
    ]
}

fn batches() -> (PageBatch, PacketBatch) {
    let mut pages = PageBatch::new(1);
    pages.push(&page(1, 4096)).unwrap();
    pages.push(&page(9, 100)).unwrap();
    pages.push(&[]).unwrap();
    let mut packets = PacketBatch::new("channel0_1");
    let p = page(3, 512);
    let info = PacketInfo {
        packet_size_bits: 512 * 8,
        content_size_bits: 500 * 8,
        ts_begin: 10,
        ts_end: 20,
        events_discarded: 3,
        stream_class: 0,
        stream_instance: 1,
        packet_seq: 4,
        events: 17,
        cpu: 1,
    };
    packets.push(&info, &p).unwrap();
    packets
        .push(
            &PacketInfo {
                packet_size_bits: 64,
                content_size_bits: 64,
                ..info
            },
            &p[..8],
        )
        .unwrap();
    (pages, packets)
}

fn all_messages<'a>(pages: &'a PageBatch, packets: &'a PacketBatch) -> Vec<(Message<'a>, u64)> {
    let mut v: Vec<(Message<'a>, u64)> = samples();
    v.push((pages.message(), 1));
    v.push((packets.message(), 2));
    v
}

#[test]
fn every_message_round_trips_with_every_compression() {
    let (pages, packets) = batches();
    for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
        for (msg, seq) in all_messages(&pages, &packets) {
            let bytes = msg.encode(seq, compression).unwrap();
            let Split::Frame {
                header,
                wire_body,
                len,
            } = split_frame(&bytes, MAX_BODY).unwrap()
            else {
                panic!("{} did not split as a whole frame", msg.name());
            };
            assert_eq!(len, bytes.len());
            assert_eq!(header.seq, seq);
            assert_eq!(header.kind, msg.kind());
            let mut scratch = Vec::new();
            let body = decompress(&header, wire_body, &mut scratch).unwrap();
            let back = Message::decode(&header, body).unwrap();
            assert_eq!(back, msg, "{} with {compression:?}", msg.name());
            // Re-encoding the decoded message gives the same bytes.
            assert_eq!(back.encode(seq, compression).unwrap(), bytes);
        }
    }
}

#[test]
fn page_and_packet_batches_hand_back_their_items() {
    let (pages, packets) = batches();
    let bytes = pages.message().encode(5, Compression::Lz4).unwrap();
    let mut dec = FrameDecoder::new(DEFAULT_MAX_BODY);
    dec.feed(&bytes);
    let frame = dec.next_frame().unwrap().unwrap();
    let Message::Pages(p) = frame.message().unwrap() else {
        panic!("not Pages")
    };
    assert_eq!(p.cpu, 1);
    let got: Vec<&[u8]> = p.pages.iter().collect();
    assert_eq!(got, vec![&page(1, 4096)[..], &page(9, 100)[..], &[][..]]);

    let bytes = packets.message().encode(6, Compression::None).unwrap();
    dec.feed(&bytes);
    let frame = dec.next_frame().unwrap().unwrap();
    let Message::Packets(p) = frame.message().unwrap() else {
        panic!("not Packets")
    };
    assert_eq!(p.stream, "channel0_1");
    let got: Vec<_> = p.packets.iter().collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0.events, 17);
    assert_eq!(got[0].1, &page(3, 512)[..]);
    assert_eq!(got[1].1.len(), 8);
}

#[test]
fn streaming_decoder_takes_bytes_one_at_a_time() {
    let (pages, packets) = batches();
    let msgs = all_messages(&pages, &packets);
    let mut stream = Vec::new();
    for (m, seq) in &msgs {
        stream.extend(m.encode(*seq, Compression::Lz4).unwrap());
    }
    let mut dec = FrameDecoder::new(DEFAULT_MAX_BODY);
    let mut got = Vec::new();
    for b in &stream {
        let need = dec.needed().unwrap();
        assert!(need >= 1, "a frame was left undelivered");
        dec.feed(std::slice::from_ref(b));
        if let Some(f) = dec.next_frame().unwrap() {
            got.push((f.message().unwrap().name(), f.header.seq));
        }
    }
    let want: Vec<_> = msgs.iter().map(|(m, s)| (m.name(), *s)).collect();
    assert_eq!(got, want);
    assert_eq!(dec.buffered(), 0);
}

#[test]
fn spare_and_commit_read_straight_into_the_buffer() {
    let bytes = Message::Ack(Ack { seq: 3 })
        .encode(0, Compression::None)
        .unwrap();
    let mut dec = FrameDecoder::new(DEFAULT_MAX_BODY);
    let mut off = 0;
    while off < bytes.len() {
        let want = dec.needed().unwrap();
        let area = dec.spare(want + 100);
        let n = (bytes.len() - off).min(5).min(area.len());
        area[..n].copy_from_slice(&bytes[off..off + n]);
        dec.commit(n);
        off += n;
    }
    let f = dec.next_frame().unwrap().unwrap();
    assert_eq!(f.message().unwrap(), Message::Ack(Ack { seq: 3 }));
}

#[test]
fn truncated_input_asks_for_exactly_the_missing_bytes() {
    let (pages, _) = batches();
    let bytes = pages.message().encode(1, Compression::None).unwrap();
    for cut in 0..bytes.len() {
        match split_frame(&bytes[..cut], MAX_BODY).unwrap() {
            Split::NeedMore(n) if cut < HEADER_LEN => assert_eq!(n, HEADER_LEN - cut),
            Split::NeedMore(n) => assert_eq!(n, bytes.len() - cut),
            Split::Frame { .. } => panic!("a frame cut at {cut} was accepted"),
        }
    }
}

#[test]
fn oversized_lengths_are_refused_from_the_header_alone() {
    let bytes = Message::Ack(Ack { seq: 3 })
        .encode(0, Compression::None)
        .unwrap();
    let mut h = bytes[..HEADER_LEN].to_vec();
    h[8..12].copy_from_slice(&(MAX_BODY + 1).to_le_bytes());
    h[12..16].copy_from_slice(&(MAX_BODY + 1).to_le_bytes());
    // Only the header: the decoder must refuse without waiting for (or
    // allocating) the body.
    let err = split_frame(&h, u32::MAX).unwrap_err();
    assert!(
        matches!(err, WireError::TooLarge { max, .. } if max == MAX_BODY as u64),
        "{err}"
    );
    // A receiver's own smaller limit applies too.
    let mut small = bytes.clone();
    small[8..12].copy_from_slice(&1000u32.to_le_bytes());
    small[12..16].copy_from_slice(&1000u32.to_le_bytes());
    let err = split_frame(&small[..HEADER_LEN], 999).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::TooLarge {
                len: 1000,
                max: 999,
                ..
            }
        ),
        "{err}"
    );
    let mut dec = FrameDecoder::new(999);
    dec.feed(&small[..HEADER_LEN]);
    assert!(dec.next_frame().is_err());
    // A decompressed size above the limit is refused too.
    let mut raw = bytes.clone();
    raw[6] = 1; // lz4
    raw[12..16].copy_from_slice(&(64u32 << 20).to_le_bytes());
    assert!(matches!(
        split_frame(&raw, MAX_BODY),
        Err(WireError::TooLarge { .. })
    ));
}

#[test]
fn bad_headers_are_named() {
    let bytes = Message::Ack(Ack { seq: 3 })
        .encode(0, Compression::None)
        .unwrap();
    let mut b = bytes.clone();
    b[0] = b'X';
    assert!(matches!(
        split_frame(&b, MAX_BODY),
        Err(WireError::BadMagic { .. })
    ));
    // Garbage is refused from its first byte, before a whole header arrives.
    assert!(matches!(
        split_frame(b"\x16\x03", MAX_BODY),
        Err(WireError::BadMagic { .. })
    ));
    let mut b = bytes.clone();
    b[4] = 9;
    assert_eq!(
        split_frame(&b, MAX_BODY),
        Err(WireError::UnsupportedFrameVersion(9))
    );
    let mut b = bytes.clone();
    b[6] = 0x80;
    assert!(matches!(
        split_frame(&b, MAX_BODY),
        Err(WireError::Reserved { .. })
    ));
    let mut b = bytes.clone();
    b[6] = 3;
    assert_eq!(
        split_frame(&b, MAX_BODY),
        Err(WireError::UnknownCompression(3))
    );
    let mut b = bytes.clone();
    let last = b.len() - 1;
    b[last] ^= 1;
    assert!(matches!(
        split_frame(&b, MAX_BODY),
        Err(WireError::Checksum { .. })
    ));
}

#[test]
fn sequence_rules_are_enforced_both_ways() {
    assert!(Message::Ack(Ack { seq: 1 })
        .encode(5, Compression::None)
        .is_err());
    let (pages, _) = batches();
    assert!(pages.message().encode(0, Compression::None).is_err());
    // A hand-made Pages frame with seq 0 is refused by the decoder.
    let mut body = Vec::new();
    pages.message().encode_body(&mut body).unwrap();
    let mut out = Vec::new();
    encode_frame(kind::PAGES, false, 0, Compression::None, &body, &mut out).unwrap();
    let mut dec = FrameDecoder::new(DEFAULT_MAX_BODY);
    dec.feed(&out);
    let f = dec.next_frame().unwrap().unwrap();
    assert!(matches!(f.message(), Err(WireError::BadSequence { .. })));
}

#[test]
fn unknown_kinds_are_skipped_only_when_ignorable() {
    let mut out = Vec::new();
    encode_frame(0x7e, true, 0, Compression::None, b"future", &mut out).unwrap();
    encode_frame(0x7d, false, 0, Compression::None, b"future", &mut out).unwrap();
    let mut dec = FrameDecoder::new(DEFAULT_MAX_BODY);
    dec.feed(&out);
    let f = dec.next_frame().unwrap().unwrap();
    assert_eq!(f.message().unwrap(), Message::Unknown { kind: 0x7e });
    let f = dec.next_frame().unwrap().unwrap();
    assert_eq!(f.message(), Err(WireError::UnknownKind(0x7d)));
}

fn decode_body(kind: u8, body: &[u8]) -> Result<Message<'static>, WireError> {
    let mut out = Vec::new();
    encode_frame(kind, false, 0, Compression::None, body, &mut out).unwrap();
    let mut dec = FrameDecoder::new(DEFAULT_MAX_BODY);
    dec.feed(&out);
    let frame = dec.next_frame().unwrap().unwrap();
    frame.message().map(|m| match m {
        Message::Hello(h) => Message::Hello(h),
        other => panic!("not a Hello: {other:?}"),
    })
}

#[test]
fn a_hello_carries_the_vm_uuid_and_older_hellos_have_none() {
    let Message::Hello(mut hello) = samples().remove(0).0 else {
        panic!("the first sample is a Hello")
    };
    let mut without = Vec::new();
    Message::Hello(hello.clone())
        .encode_body(&mut without)
        .unwrap();
    hello.host.vm_uuid = Some("0d2721fa-90eb-49fa-876e-c79f2a39c8b9".into());
    let mut with = Vec::new();
    Message::Hello(hello.clone())
        .encode_body(&mut with)
        .unwrap();
    assert_eq!(
        decode_body(kind::HELLO, &with).unwrap(),
        Message::Hello(hello.clone())
    );

    // An agent from before the field ends its Hello at next_seq, the last
    // field: where the bodies of two Hellos differing only there stop
    // differing.
    let mut other = Vec::new();
    Message::Hello(Hello {
        next_seq: !hello.next_seq,
        ..hello.clone()
    })
    .encode_body(&mut other)
    .unwrap();
    let end = (0..with.len()).rfind(|&i| with[i] != other[i]).unwrap() + 1;
    let old = &with[..end];
    assert!(old.len() < without.len());
    hello.host.vm_uuid = None;
    assert_eq!(
        decode_body(kind::HELLO, old).unwrap(),
        Message::Hello(hello.clone())
    );

    // A vm_uuid that could not be a UUID is refused, not written to a trace.
    let mut bad = old.to_vec();
    let junk = "x\ny".repeat(50);
    let mut tail = Vec::new();
    hello.host.vm_uuid = Some(junk.clone());
    Message::Hello(hello).encode_body(&mut tail).unwrap();
    bad.extend_from_slice(&tail[old.len()..]);
    assert!(decode_body(kind::HELLO, &bad).is_err());
}

#[test]
fn appended_fields_of_a_newer_minor_version_are_skipped() {
    let msg = Message::Ack(Ack { seq: 8 });
    let mut body = Vec::new();
    msg.encode_body(&mut body).unwrap();
    body.extend_from_slice(b"new field");
    let mut out = Vec::new();
    encode_frame(kind::ACK, false, 0, Compression::None, &body, &mut out).unwrap();
    let mut dec = FrameDecoder::new(DEFAULT_MAX_BODY);
    dec.feed(&out);
    assert_eq!(dec.next_frame().unwrap().unwrap().message().unwrap(), msg);
}

#[test]
fn packet_sizes_must_match_the_bytes() {
    let mut b = PacketBatch::new("s");
    let info = PacketInfo {
        packet_size_bits: 8 * 9,
        content_size_bits: 8,
        ..PacketInfo::default()
    };
    assert!(b.push(&info, &[0; 8]).is_err());
    assert!(b
        .push(
            &PacketInfo {
                packet_size_bits: 64,
                content_size_bits: 72,
                ..info
            },
            &[0; 8]
        )
        .is_err());
    assert!(b.is_empty());
}

#[test]
fn compression_shrinks_pages_and_falls_back_when_useless() {
    let mut pages = PageBatch::new(0);
    for i in 0..16u8 {
        pages.push(&page(i, 4096)).unwrap();
    }
    let plain = pages.message().encode(1, Compression::None).unwrap();
    for c in [Compression::Lz4, Compression::Zstd] {
        let small = pages.message().encode(1, c).unwrap();
        assert!(
            small.len() * 4 < plain.len(),
            "{c:?}: {} vs {}",
            small.len(),
            plain.len()
        );
        assert_eq!(small[6] & 3, c.code());
    }
    // Incompressible bytes go uncompressed, flagged so.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let mut b = PageBatch::new(0);
    b.push(&noise).unwrap();
    let bytes = b.message().encode(1, Compression::Lz4).unwrap();
    assert_eq!(bytes[6] & 3, 0);
}

#[test]
fn sealed_page_batches_equal_encoded_messages() {
    for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let mut b = PageBatch::new(3);
        for i in 0..5u8 {
            b.push(&page(i, 4096 - i as usize * 100)).unwrap();
        }
        let want = b.message().encode(9, c).unwrap();
        let got = b.seal(9, c).unwrap();
        assert_eq!(got, want, "{c:?}");
        assert!(b.is_empty());
        assert_eq!(b.cpu(), 3);
        // The emptied batch is reusable.
        b.push(&page(1, 10)).unwrap();
        let again = b.seal(10, c).unwrap();
        assert_eq!(again, {
            let mut e = PageBatch::new(3);
            e.push(&page(1, 10)).unwrap();
            e.message().encode(10, c).unwrap()
        });
    }
    assert!(PageBatch::new(0).seal(0, Compression::None).is_err());
}

fn sample_hints() -> VmHints {
    VmHints {
        vms: vec![
            VmHintEntry {
                name: "web1".into(),
                uuid: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
                qemu_pid: 4242,
                vcpus: vec![
                    VcpuThread { id: 0, tid: 4250 },
                    VcpuThread { id: 1, tid: 4251 },
                ],
            },
            VmHintEntry {
                qemu_pid: 77,
                ..VmHintEntry::default()
            },
        ],
    }
}

#[test]
fn vm_hints_round_trip_and_are_ignorable_for_older_relays() {
    let msg = Message::VmHints(sample_hints());
    let bytes = msg.encode(0, Compression::Lz4).unwrap();
    let mut dec = FrameDecoder::new(DEFAULT_MAX_BODY);
    dec.feed(&bytes);
    let f = dec.next_frame().unwrap().unwrap();
    // A relay that predates the kind skips the frame instead of failing.
    assert!(f.header.ignorable);
    assert_eq!(f.header.kind, kind::VM_HINTS);
    assert_eq!(f.message().unwrap(), msg);
    // A sequence number is refused: hints are metadata.
    assert!(msg.encode(3, Compression::None).is_err());
}

#[test]
fn vm_hints_bounds_are_checked_before_allocating() {
    let mut body = Vec::new();
    Message::VmHints(sample_hints())
        .encode_body(&mut body)
        .unwrap();
    let decode = |body: &[u8]| {
        let mut out = Vec::new();
        encode_frame(kind::VM_HINTS, true, 0, Compression::None, body, &mut out).unwrap();
        let mut dec = FrameDecoder::new(DEFAULT_MAX_BODY);
        dec.feed(&out);
        let f = dec.next_frame().unwrap().unwrap();
        f.message().map(|m| format!("{m:?}"))
    };
    assert!(decode(&body).is_ok());
    // A count larger than the body could hold.
    let mut lying = body.clone();
    lying[..4].copy_from_slice(&1_000_000u32.to_le_bytes());
    assert!(decode(&lying).is_err());
    // More VMs than allowed, even if the bytes were there.
    let mut many = Vec::new();
    many.extend_from_slice(&((MAX_VM_HINTS + 1) as u32).to_le_bytes());
    many.resize(4 + 16 * (MAX_VM_HINTS + 1), 0);
    let err = decode(&many).unwrap_err().to_string();
    assert!(err.contains("at most"), "{err}");
    // Every truncation fails cleanly.
    for n in 0..body.len() {
        assert!(decode(&body[..n]).is_err(), "truncated at {n} decoded");
    }
    // A UUID with a control character is refused.
    let mut bad = sample_hints();
    bad.vms[0].uuid = "a\u{7}b".into();
    let mut body = Vec::new();
    Message::VmHints(bad).encode_body(&mut body).unwrap();
    assert!(decode(&body).is_err());
    // The encoder refuses what the decoder would.
    let mut big = sample_hints();
    big.vms[0].vcpus = vec![VcpuThread { id: 0, tid: 1 }; MAX_VM_HINT_VCPUS + 1];
    assert!(Message::VmHints(big).encode(0, Compression::None).is_err());
}
