//! Unit tests of the pure decoding layer: metadata compiled into plans, and
//! cursors over in-memory bytes.

use std::ops::ControlFlow;
use std::path::Path;

use super::class::{compile, HeaderFast};
use super::cursor::{Cursor, Source};
use super::event::{Event, Value};
use super::tsdl::parse_text;

const HEAD: &str = r#"
typealias integer { size = 8; align = 8; signed = false; } := uint8_t;
typealias integer { size = 16; align = 8; signed = false; } := uint16_t;
typealias integer { size = 32; align = 8; signed = false; } := uint32_t;
typealias integer { size = 64; align = 8; signed = false; } := uint64_t;
typealias integer { size = 5; align = 1; signed = false; } := uint5_t;
typealias integer { size = 27; align = 1; signed = false; map = clock.c.value; } := uint27_t;
typealias integer { size = 64; align = 8; signed = false; map = clock.c.value; } := uint64_clock_t;
clock { name = c; freq = 1000000000; };
"#;

const COMPACT: &str = r#"
struct event_header_compact {
	enum : uint5_t { compact = 0 ... 30, extended = 31 } id;
	variant <id> {
		struct { uint27_t timestamp; } compact;
		struct { uint32_t id; uint64_clock_t timestamp; } extended;
	} v;
} align(8);
"#;

/// A cursor over one in-memory stream (key `key`, CPU `key`), with its
/// own id tables.
fn mem_cursor<'a>(
    plan: &'a super::class::TracePlan,
    classes: &'a [super::class::EventClass],
    data: &'a [u8],
    key: u32,
) -> Cursor<'a> {
    mem_cursor_shared(plan, classes, data, key, Default::default())
}

/// [`mem_cursor`] sharing the id tables `tables` with other cursors.
fn mem_cursor_shared<'a>(
    plan: &'a super::class::TracePlan,
    classes: &'a [super::class::EventClass],
    data: &'a [u8],
    key: u32,
    tables: std::rc::Rc<super::cursor::IdTables>,
) -> Cursor<'a> {
    let src = Source {
        release: None,
        path: Path::new("mem"),
        data,
    };
    Cursor::new(plan, classes, 0, key, key, vec![src], false, tables)
}

/// Reads every event of one stream held in memory.
fn each_event(md: &str, data: &[u8], force_generic: bool, mut f: impl FnMut(Event<'_>)) {
    let md = parse_text(md).unwrap();
    let (mut plan, classes, _) = compile(md, 0, 0, 0).unwrap();
    if force_generic {
        for s in &mut plan.streams {
            s.header_fast = HeaderFast::Generic;
        }
    }
    let mut c = mem_cursor(&plan, &classes, data, 0);
    while c.advance().unwrap() {
        f(Event { c: &c });
    }
}

#[test]
fn references_across_scopes() {
    // A payload sequence whose length is in the packet context (absolute
    // path) and a variant tagged by the stream event context (relative
    // path, found in an earlier scope).
    let md = format!(
        "{HEAD} trace {{ major = 1; minor = 8; byte_order = le; }};
        stream {{
            packet.context := struct {{ uint64_t content_size; uint8_t n; }};
            event.context := struct {{ enum : uint8_t {{ A = 0, B = 1 }} kind; }};
        }};
        event {{ name = e; fields := struct {{
            uint16_t s[stream.packet.context.n];
            variant <kind> {{ uint8_t A; string B; }} v;
        }}; }};"
    );
    let mut data = Vec::new();
    data.extend_from_slice(&0u64.to_le_bytes());
    data.push(2); // n
    data.extend_from_slice(&[0, 7, 0, 8, 0, 42]); // kind A, s = [7, 8], v = 42
    data.extend_from_slice(&[1, 9, 0, 10, 0, b'h', b'i', 0]); // kind B, s = [9, 10], v = "hi"
    let content = (data.len() * 8) as u64;
    data[..8].copy_from_slice(&content.to_le_bytes());
    let mut seen = Vec::new();
    each_event(&md, &data, false, |e| {
        let c = e.class();
        let s = c.field("s").unwrap();
        let v = c.field("v").unwrap();
        seen.push((
            e.len(s),
            e.element(s, 0),
            e.element(s, 1),
            format!("{:?}", e.value(v)),
        ));
    });
    assert_eq!(
        seen,
        vec![
            (
                Some(2),
                Some(7),
                Some(8),
                format!("{:?}", Some(Value::Variant("A", Box::new(Value::U64(42))))),
            ),
            (
                Some(2),
                Some(9),
                Some(10),
                format!(
                    "{:?}",
                    Some(Value::Variant("B", Box::new(Value::Str(b"hi"))))
                ),
            ),
        ]
    );
}

fn lttng_like(be: bool) -> String {
    let bo = if be { "be" } else { "le" };
    format!(
        "{HEAD} trace {{ major = 1; minor = 8; byte_order = {bo}; }}; {COMPACT}
        stream {{ event.header := struct event_header_compact; packet.context := struct {{ uint64_t content_size; uint64_clock_t timestamp_begin; }}; }};
        event {{ name = a; id = 3; fields := struct {{ uint32_t x; }}; }};
        event {{ name = b; id = 44; fields := struct {{ uint8_t y; }}; }};"
    )
}

#[test]
fn lttng_headers_get_the_fast_path_only_when_little_endian() {
    for (be, want) in [(false, HeaderFast::Compact), (true, HeaderFast::Generic)] {
        let md = parse_text(&lttng_like(be)).unwrap();
        let (plan, _, _) = compile(md, 0, 0, 0).unwrap();
        assert_eq!(plan.streams[0].header_fast, want);
    }
}

#[test]
fn fast_and_generic_headers_agree() {
    // begin near a 27-bit wrap; compact events cross it; an extended one
    // (id 44) jumps ahead.
    let begin: u64 = (1 << 27) - 5;
    let mut data = Vec::new();
    data.extend_from_slice(&0u64.to_le_bytes());
    data.extend_from_slice(&begin.to_le_bytes());
    let mut ts = begin;
    for i in 0..40u64 {
        ts += 3 + i * 1_000_000;
        if i % 7 == 6 {
            data.push(31);
            data.extend_from_slice(&44u32.to_le_bytes());
            data.extend_from_slice(&ts.to_le_bytes());
            data.push(i as u8);
        } else {
            let w = 3u32 | (((ts & ((1 << 27) - 1)) as u32) << 5);
            data.extend_from_slice(&w.to_le_bytes());
            data.extend_from_slice(&(i as u32).to_le_bytes());
        }
    }
    let content = (data.len() * 8) as u64;
    data[..8].copy_from_slice(&content.to_le_bytes());
    let md = lttng_like(false);
    let collect = |generic: bool| {
        let mut out = Vec::new();
        each_event(&md, &data, generic, |e| {
            let f = e.class().payload_fields().next().unwrap().1;
            out.push((e.class().id(), e.cycles(), e.u64(f)))
        });
        out
    };
    let fast = collect(false);
    assert_eq!(fast.len(), 40);
    assert_eq!(
        fast.last().unwrap().1,
        ts,
        "timestamps reconstructed across the wrap"
    );
    assert!(fast.windows(2).all(|w| w[0].1 < w[1].1));
    assert_eq!(fast, collect(true));
}

#[test]
fn classes_compile_on_first_use_unless_they_refer_to_fields() {
    // `a` and `b` are simple; `c` has a sequence, so it is compiled up
    // front (its reference is checked when the trace opens). Only `a`
    // occurs; its string makes it need more marks than the cursor starts
    // with.
    let md = format!(
        "{HEAD} trace {{ major = 1; minor = 8; byte_order = le; }};
        stream {{ packet.context := struct {{ uint64_t content_size; }};
                 event.header := struct {{ uint8_t id; }}; }};
        event {{ name = a; id = 0; fields := struct {{ string s; uint8_t t; string u; uint16_t v; }}; }};
        event {{ name = b; id = 1; fields := struct {{ uint32_t x; }}; }};
        event {{ name = c; id = 2; fields := struct {{ uint8_t n; uint8_t xs[n]; }}; }};"
    );
    let (plan, classes, _) = compile(parse_text(&md).unwrap(), 0, 0, 0).unwrap();
    let compiled = |classes: &[super::EventClass]| -> Vec<bool> {
        classes.iter().map(|c| c.plan.get().is_some()).collect()
    };
    assert_eq!(compiled(&classes), [false, false, true]);
    assert!(plan.mark_total < classes[0].plan().marks_end);
    let mut data = Vec::new();
    data.extend_from_slice(&0u64.to_le_bytes());
    for (s, t, u, v) in [("hi", 7u8, "x", 300u16), ("", 9, "yz", 2)] {
        data.push(0);
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        data.push(t);
        data.extend_from_slice(u.as_bytes());
        data.push(0);
        data.extend_from_slice(&v.to_le_bytes());
    }
    let content = (data.len() * 8) as u64;
    data[..8].copy_from_slice(&content.to_le_bytes());
    let (plan, classes, _) = compile(parse_text(&md).unwrap(), 0, 0, 0).unwrap();
    let mut c = mem_cursor(&plan, &classes, &data, 0);
    let mut seen = Vec::new();
    while c.advance().unwrap() {
        let e = Event { c: &c };
        let k = e.class();
        let f = |n: &str| k.field(n).unwrap();
        seen.push((
            e.str(f("s")).unwrap().to_vec(),
            e.u64(f("t")),
            e.str(f("u")).unwrap().to_vec(),
            e.u64(f("v")),
        ));
    }
    assert_eq!(
        seen,
        [
            (b"hi".to_vec(), Some(7), b"x".to_vec(), Some(300)),
            (b"".to_vec(), Some(9), b"yz".to_vec(), Some(2)),
        ]
    );
    assert_eq!(compiled(&classes), [true, false, true]);
}

/// One stream of one packet whose events carry the given full timestamps
/// (in file order, not necessarily sorted) and their own ordinal.
fn stream_bytes(ts: &[u64]) -> Vec<u8> {
    let mut data = Vec::new();
    data.extend_from_slice(&0u64.to_le_bytes());
    for (i, t) in ts.iter().enumerate() {
        data.extend_from_slice(&t.to_le_bytes());
        data.extend_from_slice(&(i as u32).to_le_bytes());
    }
    let content = (data.len() * 8) as u64;
    data[..8].copy_from_slice(&content.to_le_bytes());
    data
}

/// The metadata of the streams `stream_bytes` builds: one event class
/// with a `u32` field `i`, a 64-bit timestamp per event.
fn one_field_metadata() -> String {
    format!(
        "{HEAD} trace {{ major = 1; minor = 8; byte_order = le; }};
        stream {{ packet.context := struct {{ uint64_t content_size; }};
                 event.header := struct {{ uint64_clock_t timestamp; }}; }};
        event {{ name = e; fields := struct {{ uint32_t i; }}; }};"
    )
}

#[test]
fn merge_orders_by_time_then_stream_with_few_and_many_streams() {
    let md = one_field_metadata();
    // Up to 16 streams are merged with a sorted list, more with a loser
    // tree: both sides of the limit. With `far`, some events jump ahead
    // or back by more than the list's keys can span, so the tree takes
    // over mid-merge.
    for (streams, far) in [
        (3usize, false),
        (5, false),
        (16, false),
        (17, false),
        (40, false),
        (4, true),
        (16, true),
    ] {
        let mut seed = 0x2545_f491_4f6c_dd1du64 ^ streams as u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Coarse times so that streams tie often; some go back in time.
        let all: Vec<Vec<u64>> = (0..streams)
            .map(|_| {
                let n = (rand() % 150) as usize;
                let mut t = if far { 1 << 45 } else { 100u64 };
                (0..n)
                    .map(|_| {
                        t = (t + rand() % 4).saturating_sub(if rand() % 9 == 0 { 3 } else { 0 });
                        // Far ahead, or from there back to before the
                        // first events.
                        if far && rand() % 40 == 0 {
                            t = if t > 1 << 61 { 7 } else { t + (1 << 61) };
                        }
                        t
                    })
                    .collect()
            })
            .collect();
        // The expected order: repeatedly the stream whose next event is
        // earliest, the lowest stream on ties.
        let mut heads = vec![0usize; streams];
        let mut want = Vec::new();
        while let Some(s) = (0..streams)
            .filter(|&s| heads[s] < all[s].len())
            .min_by_key(|&s| (all[s][heads[s]], s))
        {
            want.push((s, heads[s], all[s][heads[s]]));
            heads[s] += 1;
        }
        let bytes: Vec<Vec<u8>> = all.iter().map(|t| stream_bytes(t)).collect();
        let (plan, classes, _) = compile(parse_text(&md).unwrap(), 0, 0, 0).unwrap();
        let f = classes[0].field("i").unwrap();
        let events = || {
            let cursors = bytes
                .iter()
                .enumerate()
                .map(|(k, b)| mem_cursor(&plan, &classes, b, k as u32))
                .collect();
            super::Events::new(cursors)
        };
        // `next` and `try_for_each` (the vector path where the CPU has it).
        let mut got = Vec::new();
        let mut by_next = events();
        while let Some(e) = by_next.next() {
            let e = e.unwrap();
            got.push((e.stream(), e.u64(f).unwrap() as usize, e.cycles()));
        }
        assert_eq!(got, want, "{streams} streams, next");
        got.clear();
        let _ = events().try_for_each(|e| {
            let e = e.unwrap();
            got.push((e.stream(), e.u64(f).unwrap() as usize, e.cycles()));
            ControlFlow::<()>::Continue(())
        });
        assert_eq!(got, want, "{streams} streams, try_for_each");
    }
}

#[test]
fn a_clock_map_moves_one_stream_in_the_merge() {
    let md = one_field_metadata();
    // Stream 0 is a "host" at 100, 200, 300; stream 1 a "guest" whose clock
    // runs 150 behind, so its 10, 60 are host times 160, 210.
    let host = stream_bytes(&[100, 200, 300]);
    let guest = stream_bytes(&[10, 60]);
    let (plan, classes, _) = compile(parse_text(&md).unwrap(), 0, 0, 0).unwrap();
    let order = |map: Option<super::ClockMap>| {
        let cursors = [&host, &guest]
            .iter()
            .enumerate()
            .map(|(k, b)| {
                let mut c = mem_cursor(&plan, &classes, b, k as u32);
                if k == 1 {
                    c.map = map;
                }
                c
            })
            .collect();
        let mut events = super::Events::new(cursors);
        let mut got = Vec::new();
        while let Some(e) = events.next() {
            let e = e.unwrap();
            got.push((e.stream(), e.ts(), e.cycles()));
        }
        got
    };
    assert_eq!(
        order(None),
        [
            (1, 10, 10),
            (1, 60, 60),
            (0, 100, 100),
            (0, 200, 200),
            (0, 300, 300)
        ]
    );
    let shift = super::ClockMap {
        anchor_ns: 0,
        offset_ns: 150,
        drift_ppb: 0,
    };
    assert_eq!(
        order(Some(shift)),
        [
            (0, 100, 100),
            (1, 160, 10),
            (0, 200, 200),
            (1, 210, 60),
            (0, 300, 300)
        ]
    );
}

/// Little-endian bit writer for hand-built packets.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    bit: usize,
}

impl Bits {
    fn put(&mut self, v: u64, n: usize) {
        for i in 0..n {
            if self.bit / 8 >= self.bytes.len() {
                self.bytes.push(0);
            }
            self.bytes[self.bit / 8] |= (((v >> i) & 1) as u8) << (self.bit % 8);
            self.bit += 1;
        }
    }
    fn align(&mut self, a: usize) {
        while !self.bit.is_multiple_of(a) {
            self.put(0, 1);
        }
    }
}

#[test]
fn fast_path_payload_kinds_agree_with_the_general_path() {
    // Payloads of each kind the fast path tells apart: whole bytes (read
    // by arithmetic), bit-packed (10 bits, so the next header is realigned),
    // aligned beyond a byte, and walked (a string; a sequence whose length
    // precedes it). Every field and every timestamp must read the same
    // through the general decoder.
    let md = format!(
        "{HEAD} typealias integer {{ size = 64; align = 64; signed = false; }} := uint64a_t;
        trace {{ major = 1; minor = 8; byte_order = le; }}; {COMPACT}
        stream {{ event.header := struct event_header_compact; packet.context := struct {{ uint64_t content_size; uint64_clock_t timestamp_begin; }}; }};
        event {{ name = bytes; id = 3; fields := struct {{ uint32_t x; }}; }};
        event {{ name = packed; id = 4; fields := struct {{ uint5_t p; uint5_t q; }}; }};
        event {{ name = wide; id = 5; fields := struct {{ uint64a_t v; }}; }};
        event {{ name = text; id = 6; fields := struct {{ string s; uint8_t t; }}; }};
        event {{ name = seq; id = 7; fields := struct {{ uint16_t a; uint8_t n; uint16_t v[n]; uint8_t w; }}; }};"
    );
    let mut b = Bits::default();
    b.put(0, 64);
    b.put(1000, 64);
    let mut ts = 1000u64;
    for i in 0..64u64 {
        ts += 7 + i * 3;
        b.align(8);
        let id = 3 + i % 5;
        b.put(id, 5);
        b.put(ts & ((1 << 27) - 1), 27);
        match id {
            3 => b.put(i * 1_000_003, 32),
            4 => {
                b.put(i % 32, 5);
                b.put((i * 7) % 32, 5);
            }
            5 => {
                b.align(64);
                b.put(i << 40 | i, 64);
            }
            7 => {
                b.put(i, 16);
                b.put(i % 4, 8);
                for k in 0..i % 4 {
                    b.put(k * 100 + i, 16);
                }
                b.put(i + 1, 8);
            }
            _ => {
                for c in format!("s{i}").bytes() {
                    b.put(c as u64, 8);
                }
                b.put(0, 8);
                b.put(i, 8);
            }
        }
    }
    let content = b.bit as u64;
    let mut data = b.bytes;
    data[..8].copy_from_slice(&content.to_le_bytes());
    let collect = |generic: bool| {
        let mut out = Vec::new();
        each_event(&md, &data, generic, |e| {
            let values: Vec<_> = e
                .class()
                .payload_fields()
                .map(|(_, f)| format!("{:?} {:?}", e.value(f), e.u64(f)))
                .collect();
            out.push((e.class().id(), e.cycles(), e.ts(), values));
        });
        out
    };
    let fast = collect(false);
    assert_eq!(fast.len(), 64);
    assert_eq!(fast.last().unwrap().1, ts);
    assert_eq!(
        fast[6].3,
        ["Some(U64(6)) Some(6)", "Some(U64(10)) Some(10)"]
    );
    assert_eq!(fast[7].3, ["Some(U64(7696581394439)) Some(7696581394439)"]);
    assert_eq!(fast[9].3[3], "Some(U64(10)) Some(10)", "after a sequence");
    assert_eq!(fast, collect(true));
}

/// Records what a cursor releases of one file.
#[derive(Default)]
struct Released(std::cell::RefCell<Vec<(u64, u64)>>);

impl super::cursor::Release for Released {
    fn release(&self, off: u64, len: u64) {
        self.0.borrow_mut().push((off, len));
    }
}

#[test]
fn read_files_are_released_by_the_chunk_and_the_last_tail_is_kept() {
    let md = format!(
        "{HEAD} trace {{ major = 1; minor = 8; byte_order = le; }};
        stream {{ packet.context := struct {{ uint64_t content_size; uint64_t packet_size; }};
                 event.header := struct {{ uint64_clock_t timestamp; }}; }};
        event {{ name = e; fields := struct {{ uint32_t i; }}; }};"
    );
    const PACKET: usize = 64 << 10;
    // Packets of 64 KiB with three events each, timestamps rising.
    let file = |packets: usize, t0: u64| {
        let mut data = Vec::new();
        for p in 0..packets {
            let start = data.len();
            data.extend_from_slice(&[0; 16]);
            for i in 0..3u64 {
                data.extend_from_slice(&(t0 + p as u64 * 10 + i).to_le_bytes());
                data.extend_from_slice(&(i as u32).to_le_bytes());
            }
            let content = ((data.len() - start) * 8) as u64;
            data[start..start + 8].copy_from_slice(&content.to_le_bytes());
            data[start + 8..start + 16].copy_from_slice(&((PACKET * 8) as u64).to_le_bytes());
            data.resize(start + PACKET, 0);
        }
        data
    };
    // A rotated stream: 2.5 release chunks, then 1.25.
    let chunk = super::cursor::RELEASE_CHUNK as usize;
    let per_chunk = chunk / PACKET;
    let (first, last) = (file(per_chunk * 5 / 2, 0), file(per_chunk * 5 / 4, 1_000));
    let (rel_first, rel_last) = (Released::default(), Released::default());
    let (plan, classes, _) = compile(parse_text(&md).unwrap(), 0, 0, 0).unwrap();
    let sources = [(&first, &rel_first), (&last, &rel_last)]
        .into_iter()
        .map(|(data, rel)| Source {
            release: Some(rel as &dyn super::cursor::Release),
            path: Path::new("mem"),
            data,
        })
        .collect();
    let mut c = Cursor::new(&plan, &classes, 0, 0, 0, sources, false, Default::default());
    let mut n = 0;
    while c.advance().unwrap() {
        n += 1;
    }
    assert_eq!(n, 3 * (first.len() + last.len()) / PACKET);
    // Each file is released from its start, in pieces of at least a chunk
    // but for the end of a file another follows.
    let check = |rel: &Released, len: usize, whole: bool| {
        let got = rel.0.borrow().clone();
        let mut at = 0;
        for (i, &(off, n)) in got.iter().enumerate() {
            assert_eq!(off, at, "{got:?}");
            let end_of_file = whole && i == got.len() - 1;
            assert!(n >= chunk as u64 || end_of_file, "{got:?}");
            at += n;
        }
        if whole {
            assert_eq!(at, len as u64, "{got:?}");
        } else {
            // The last file's tail is left for the unmapping at the end.
            assert!(
                at > 0 && at < len as u64 && len as u64 - at < chunk as u64,
                "{got:?}"
            );
        }
    };
    check(&rel_first, first.len(), true);
    check(&rel_last, last.len(), false);
}

#[test]
fn classes_with_the_same_types_share_one_plan_but_not_their_fields() {
    // Laid out as LTTng writes events, so that their types are deferred.
    let ev = |name: &str, id: u32, fields: &str| {
        format!(
            "\n\nevent {{\n\tname = \"{name}\";\n\tid = {id};\n\tstream_id = 0;\n\tfields := struct {{\n{fields}\n\t}};\n}};"
        )
    };
    let two = "\t\tuint32_t _fd;\n\t\tuint64_t _count;";
    let md = format!(
        "{HEAD} trace {{ major = 1; minor = 8; byte_order = le; }}; {COMPACT}
        stream {{ id = 0; event.header := struct event_header_compact;
                 packet.context := struct {{ uint64_t content_size; uint64_clock_t timestamp_begin; }}; }};{}{}{}",
        ev("a", 1, two),
        ev("b", 2, two),
        ev("c", 3, "\t\tuint8_t _fd;"),
    );
    let (md, lazy) = super::tsdl::parse_lazy(md.into_bytes()).unwrap();
    assert!((0..3).all(|e| lazy.is_deferred(e)));
    let (plan, classes, _) = super::class::compile_lazy(md, Some(lazy), None, 0, 0, 0).unwrap();
    let (a, b, c) = (&classes[0], &classes[1], &classes[2]);
    assert!(std::ptr::eq(b.plan(), a.plan()));
    assert!(!std::ptr::eq(c.plan(), a.plan()));
    // Each class's field references are its own.
    let (fa, fb) = (a.field("fd").unwrap(), b.field("fd").unwrap());
    assert_ne!(fa, fb);
    assert_eq!(
        b.payload_fields().map(|(n, _)| n).collect::<Vec<_>>(),
        ["fd", "count"]
    );

    // A packet with one event of `a` and one of `b`, compact headers.
    let mut data = Vec::new();
    data.extend_from_slice(&[0; 16]);
    for (id, fd, count) in [(1u32, 7u32, 70u64), (2, 9, 90)] {
        data.extend_from_slice(&(id | 5 << 5).to_le_bytes());
        data.extend_from_slice(&fd.to_le_bytes());
        data.extend_from_slice(&count.to_le_bytes());
    }
    let content = (data.len() * 8) as u64;
    data[..8].copy_from_slice(&content.to_le_bytes());
    let mut cur = mem_cursor(&plan, &classes, &data, 0);
    let mut got = Vec::new();
    while cur.advance().unwrap() {
        let e = Event { c: &cur };
        let class = e.class();
        let (fd, count) = (class.field("fd").unwrap(), class.field("count").unwrap());
        got.push((class.name().to_string(), e.u64(fd), e.u64(count), e.u64(fa)));
    }
    assert_eq!(
        got,
        [
            ("a".to_string(), Some(7), Some(70), Some(7)),
            // `a`'s reference does not read `b`'s event.
            ("b".to_string(), Some(9), Some(90), None),
        ]
    );
}

#[test]
fn the_streams_of_a_trace_share_one_id_table_and_each_sizes_its_marks() {
    // Laid out as LTTng writes events, so that their classes compile on
    // first use, after the cursors are made (their marks are then short).
    let ev = |name: &str, id: u32, fields: &str| {
        format!(
            "\n\nevent {{\n\tname = \"{name}\";\n\tid = {id};\n\tstream_id = 0;\n\tfields := struct {{\n{fields}\n\t}};\n}};"
        )
    };
    let md = format!(
        "{HEAD} trace {{ major = 1; minor = 8; byte_order = le; }}; {COMPACT}
        stream {{ id = 0; event.header := struct event_header_compact;
                 packet.context := struct {{ uint64_t content_size; uint64_clock_t timestamp_begin; }}; }};{}{}{}",
        ev("fixed", 1, "\t\tuint32_t _fd;\n\t\tuint64_t _count;"),
        ev("flat", 2, "\t\tstring _name;\n\t\tuint32_t _n;"),
        ev("none", 3, ""),
    );
    let (md, lazy) = super::tsdl::parse_lazy(md.into_bytes()).unwrap();
    let (plan, classes, _) = super::class::compile_lazy(md, Some(lazy), None, 0, 0, 0).unwrap();
    // One packet per stream, events of the classes in `order`.
    let packet = |order: [u32; 3], fd: u32, count: u64, name: &str, n: u32| {
        let mut data = vec![0; 16];
        for id in order {
            data.extend_from_slice(&(id | 5 << 5).to_le_bytes());
            match id {
                1 => {
                    data.extend_from_slice(&fd.to_le_bytes());
                    data.extend_from_slice(&count.to_le_bytes());
                }
                2 => {
                    data.extend_from_slice(name.as_bytes());
                    data.push(0);
                    data.extend_from_slice(&n.to_le_bytes());
                }
                _ => {}
            }
        }
        let content = (data.len() * 8) as u64;
        data[..8].copy_from_slice(&content.to_le_bytes());
        data
    };
    // The second stream starts with the class that needs no mark: its
    // `fixed` event is then decoded by the fast path, with marks still
    // too short for it.
    let one = packet([1, 2, 3], 7, 70, "x", 5);
    let two = packet([3, 1, 2], 9, 90, "yy", 6);
    let tables = std::rc::Rc::new(super::cursor::IdTables::default());
    let mut cursors: Vec<Cursor<'_>> = [&one, &two]
        .iter()
        .enumerate()
        .map(|(k, data)| mem_cursor_shared(&plan, &classes, data, k as u32, tables.clone()))
        .collect();
    let read = |c: &mut Cursor<'_>, resolved: &mut Vec<usize>| {
        let mut got = Vec::new();
        while c.advance().unwrap() {
            resolved.push(c.resolved_ids());
            let e = Event { c };
            let class = e.class();
            let f = |n: &str| class.field(n).unwrap();
            got.push(match class.name() {
                "fixed" => format!("{:?} {:?}", e.u64(f("fd")), e.u64(f("count"))),
                "none" => "none".to_string(),
                _ => {
                    let name = e.str(f("name")).map(String::from_utf8_lossy);
                    format!("{name:?} {:?}", e.u64(f("n")))
                }
            });
        }
        got
    };
    let (mut first, mut second) = (Vec::new(), Vec::new());
    assert_eq!(
        read(&mut cursors[0], &mut first),
        ["Some(7) Some(70)", "Some(\"x\") Some(5)", "none"]
    );
    // The second stream's first event already sees the classes resolved
    // by the first stream, and reads its own values through them.
    assert_eq!(
        read(&mut cursors[1], &mut second),
        ["none", "Some(9) Some(90)", "Some(\"yy\") Some(6)"]
    );
    assert_eq!((first, second), (vec![1, 2, 3], vec![3, 3, 3]));
}

#[test]
fn a_class_of_integers_decodes_before_its_plan_and_reads_its_fields_after() {
    // LTTng's way, with the integer bodies of the head's type aliases
    // (cached at open): `ints` is located from its text alone.
    let md = format!(
        "{HEAD} trace {{ major = 1; minor = 8; byte_order = le; }}; {COMPACT}
        stream {{ id = 0; event.header := struct event_header_compact;
                 packet.context := struct {{ uint64_t content_size; uint64_clock_t timestamp_begin; }}; }};

event {{
\tname = \"ints\";
\tid = 1;
\tstream_id = 0;
\tfields := struct {{
\t\tinteger {{ size = 8; align = 8; signed = false; }} _tag[3];
\t\tinteger {{ size = 32; align = 8; signed = false; }} _fd;
\t\tinteger {{ size = 64; align = 8; signed = false; }} _count;
\t}};
}};"
    );
    let (md, lazy) = super::tsdl::parse_lazy(md.into_bytes()).unwrap();
    let (plan, classes, _) = super::class::compile_lazy(md, Some(lazy), None, 0, 0, 0).unwrap();
    let packet = |events: &[(u32, u64)]| {
        let mut data = vec![0; 16];
        for &(fd, count) in events {
            data.extend_from_slice(&(1u32 | 5 << 5).to_le_bytes());
            data.extend_from_slice(b"abc");
            data.extend_from_slice(&fd.to_le_bytes());
            data.extend_from_slice(&count.to_le_bytes());
        }
        let content = (data.len() * 8) as u64;
        data[..8].copy_from_slice(&content.to_le_bytes());
        data
    };
    let (one, two) = (packet(&[(7, 70), (8, 80)]), packet(&[(9, 90)]));
    let tables = std::rc::Rc::new(super::cursor::IdTables::default());
    let mut a = mem_cursor_shared(&plan, &classes, &one, 0, tables.clone());
    let mut b = mem_cursor_shared(&plan, &classes, &two, 1, tables);
    // Both streams' first events: the first resolves the class without
    // compiling it, the second finds it in the shared table.
    assert!(a.advance().unwrap() && b.advance().unwrap());
    assert!(classes[0].compiled().is_none(), "located without its plan");
    // Fields asked for now compile the class and read the events
    // already decoded, and the next.
    let class = &classes[0];
    let (fd, count, tag) = (
        class.field("fd").unwrap(),
        class.field("count").unwrap(),
        class.field("tag").unwrap(),
    );
    let read = |c: &Cursor<'_>| {
        let e = Event { c };
        (e.u64(fd), e.u64(count), e.element(tag, 2))
    };
    assert_eq!(read(&b), (Some(9), Some(90), Some(i64::from(b'c'))));
    assert_eq!(read(&a), (Some(7), Some(70), Some(i64::from(b'c'))));
    assert!(a.advance().unwrap());
    assert_eq!(read(&a), (Some(8), Some(80), Some(i64::from(b'c'))));
    assert!(!a.advance().unwrap() && !b.advance().unwrap());
}

/// What `fixed_layout` says of every class of `md` (LTTng-style metadata)
/// that `warm` does not name, once the classes `warm` names are compiled
/// (filling the integer cache), checked against the compiled plan. Returns
/// how many classes it described.
fn fixed_layouts_match_plans(md: Vec<u8>, warm: &[&str]) -> usize {
    let (md, lazy) = super::tsdl::parse_lazy(md).unwrap();
    let (_, classes, _) = super::class::compile_lazy(md, Some(lazy), None, 0, 0, 0).unwrap();
    for c in classes.iter().filter(|c| warm.contains(&c.name())) {
        c.plan();
    }
    let mut described = 0;
    for c in classes.iter().filter(|c| !warm.contains(&c.name())) {
        let layout = c.fixed_layout();
        let p = c.plan();
        let Some(l) = layout else { continue };
        described += 1;
        let name = c.name();
        assert!(p.failure.is_none() && p.context.is_none(), "{name}");
        let fast = p
            .pay_fast
            .unwrap_or_else(|| panic!("{name}: no fixed payload"));
        assert_eq!((fast.align, fast.bits), (l.align, l.bits), "{name}");
        assert_eq!(
            (p.pay_slot, p.marks_end),
            (l.pay_slot, l.marks_end()),
            "{name}"
        );
        // Once compiled, the plan answers.
        assert!(c.fixed_layout().is_none());
    }
    described
}

#[test]
fn classes_of_integers_are_located_without_their_plan_as_their_plan_would() {
    // Classes compile in the order a trace meets them; here none is
    // compiled first, so the integer bodies of the first few are not cached
    // yet and their classes compile.
    let described: Vec<usize> = super::tsdl::shared_metadata("fixed layouts")
        .into_iter()
        .map(|md| fixed_layouts_match_plans(md, &[]))
        .collect();
    assert!(
        described.iter().all(|&n| n > 0),
        "{described:?} classes described"
    );
}

proptest::proptest! {
    /// Structs of integers of any size and alignment, and fixed arrays of
    /// them, as LTTng writes them: the layout read from the text is the
    /// compiled plan's. Other members (strings, sequences) are left to the
    /// plan.
    #[test]
    fn fixed_layouts_are_those_of_the_plans(
        fields in proptest::collection::vec(
            (0usize..7, proptest::option::of(0u64..4), 0u8..12),
            0..8,
        ),
    ) {
        let bodies = [
            "size = 8; align = 8; signed = 0; encoding = none; base = 10;",
            "size = 32; align = 8; signed = 1; encoding = none; base = 10;",
            "size = 64; align = 64; signed = 0; encoding = none; base = 16;",
            "size = 3; align = 1; signed = 0; encoding = none; base = 10;",
            "size = 16; align = 16; signed = 0; encoding = none; base = 10;",
            "size = 8; align = 8; signed = 0; encoding = UTF8; base = 10;",
            // Not a multiple of its alignment: array elements are padded.
            "size = 5; align = 8; signed = 0; encoding = none; base = 10;",
        ];
        let ev = |name: &str, id: usize, fields: &str| {
            format!(
                "\n\nevent {{\n\tname = \"{name}\";\n\tid = {id};\n\tstream_id = 0;\n\tfields := struct {{\n{fields}\n\t}};\n}};"
            )
        };
        // `warm` has every body, so the cache knows them all.
        let warm: String = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| format!("\t\tinteger {{ {b} }} _w{i};\n"))
            .collect();
        let mut body = String::new();
        for (i, &(b, len, other)) in fields.iter().enumerate() {
            match other {
                0 => body.push_str(&format!("\t\tstring _s{i};\n")),
                1 => body.push_str(&format!(
                    "\t\tinteger {{ {} }} _n{i};\n\t\tinteger {{ {} }} _q{i}[ _n{i} ];\n",
                    bodies[0], bodies[b]
                )),
                _ => {
                    let dim = len.map_or(String::new(), |n| format!("[{n}]"));
                    body.push_str(&format!("\t\tinteger {{ {} }} _f{i}{dim};\n", bodies[b]));
                }
            }
        }
        let md = format!(
            "{HEAD} trace {{ major = 1; minor = 8; byte_order = le; }}; {COMPACT}
            stream {{ id = 0; event.header := struct event_header_compact;
                     packet.context := struct {{ uint64_t content_size; uint64_clock_t timestamp_begin; }}; }};{}{}",
            ev("warm", 1, &warm),
            ev("e", 2, &body),
        );
        let all_ints = fields.iter().all(|f| f.2 >= 2);
        let described = fixed_layouts_match_plans(md.into_bytes(), &["warm"]);
        proptest::prop_assert_eq!(described, usize::from(all_ints && !fields.is_empty()));
    }
}
