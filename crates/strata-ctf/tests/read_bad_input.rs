//! Bad input gives a clear error naming the file and byte offset, and
//! `skip_corrupt` reads past bad packets, counting what it skipped.

#[path = "support/same_items.rs"]
mod same_items;

use std::path::{Path, PathBuf};

use strata_ctf::read::{OpenOptions, ReadError, TraceSet};

const METADATA: &str = r#"/* CTF 1.8 */
typealias integer { size = 8; align = 8; signed = false; } := uint8_t;
typealias integer { size = 32; align = 8; signed = false; } := uint32_t;
typealias integer { size = 64; align = 8; signed = false; } := uint64_t;
typealias integer { size = 5; align = 1; signed = false; } := uint5_t;
typealias integer { size = 27; align = 1; signed = false; map = clock.c.value; } := uint27_clock_t;
typealias integer { size = 64; align = 8; signed = false; map = clock.c.value; } := uint64_clock_t;
trace {
	major = 1; minor = 8; byte_order = le; uuid = "00112233-4455-6677-8899-aabbccddeeff";
	packet.header := struct { uint32_t magic; uint8_t uuid[16]; uint32_t stream_id; };
};
clock { name = c; freq = 1000000000; };
stream {
	id = 0;
	packet.context := struct {
		uint64_clock_t timestamp_begin; uint64_clock_t timestamp_end;
		uint64_t content_size; uint64_t packet_size; uint64_t events_discarded; uint32_t cpu_id;
	};
	event.header := struct {
		enum : uint5_t { compact = 0 ... 30, extended = 31 } id;
		variant <id> {
			struct { uint27_clock_t timestamp; } compact;
			struct { uint32_t id; uint64_clock_t timestamp; } extended;
		} v;
	} align(8);
};
event { name = ev; id = 0; stream_id = 0; fields := struct { uint32_t _x; string _s; }; };
"#;

const UUID: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];
/// Byte offsets of packet fields.
const CONTENT: usize = 40;
const PACKET: usize = 48;
/// Size of every packet written.
const PKT: usize = 256;
/// Events per packet.
const EVENTS: u32 = 4;

/// A packet of `EVENTS` events `{x, "s<x>"}` starting at `first`.
fn packet(first: u32) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&0xC1FC1FC1u32.to_le_bytes());
    p.extend_from_slice(&UUID);
    p.extend_from_slice(&0u32.to_le_bytes());
    let ts = first as u64 * 100;
    p.extend_from_slice(&ts.to_le_bytes());
    p.extend_from_slice(&(ts + 400).to_le_bytes());
    p.extend_from_slice(&[0; 16]); // sizes, set below
    p.extend_from_slice(&0u64.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    for i in 0..EVENTS {
        let x = first + i;
        p.extend_from_slice(&(((x as u64 * 100) << 5) as u32).to_le_bytes()); // id 0
        p.extend_from_slice(&x.to_le_bytes());
        p.extend_from_slice(format!("s{x}\0").as_bytes());
    }
    let content = p.len() as u64 * 8;
    p.resize(PKT, 0);
    p[CONTENT..CONTENT + 8].copy_from_slice(&content.to_le_bytes());
    p[PACKET..PACKET + 8].copy_from_slice(&(PKT as u64 * 8).to_le_bytes());
    p
}

/// A test's trace directory, removed when the test ends (passed or not).
struct TraceDir(PathBuf);

impl TraceDir {
    fn new(name: &str) -> TraceDir {
        let d =
            std::env::temp_dir().join(format!("strata-ctfread-bad-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TraceDir(d)
    }
}

impl std::ops::Deref for TraceDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TraceDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn trace(name: &str, packets: usize) -> (TraceDir, Vec<u8>) {
    let d = TraceDir::new(name);
    std::fs::write(d.join("metadata"), METADATA).unwrap();
    let data: Vec<u8> = (0..packets)
        .flat_map(|i| packet(i as u32 * EVENTS))
        .collect();
    (d, data)
}

fn write(d: &Path, data: &[u8]) -> PathBuf {
    let p = d.join("chan_0");
    std::fs::write(&p, data).unwrap();
    p
}

fn set64(data: &mut [u8], at: usize, v: u64) {
    data[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Reads everything; returns the `x` values and the errors.
/// Also checks that `try_for_each` hands out the same events and errors as
/// `next`.
fn read_all(d: &Path, skip: bool) -> (Vec<u64>, Vec<ReadError>, strata_ctf::read::SkipStats) {
    same_items::assert_same_items(d).expect("the trace opens");
    let set = TraceSet::open(d, &OpenOptions { skip_corrupt: skip }).unwrap();
    let mut events = set.events();
    let (mut xs, mut errs) = (Vec::new(), Vec::new());
    while let Some(e) = events.next() {
        match e {
            Ok(e) => xs.push(e.u64(e.class().field("x").unwrap()).unwrap()),
            Err(err) => errs.push(err),
        }
    }
    (xs, errs, events.skipped())
}

fn corrupt_at(e: &ReadError, file: &Path, offset: u64, needle: &str) {
    match e {
        ReadError::Corrupt {
            path,
            offset: o,
            msg,
        } => {
            assert_eq!(path, file, "{e}");
            assert_eq!(*o, offset, "{e}");
            assert!(msg.contains(needle), "{e}");
            let shown = e.to_string();
            assert!(
                shown.contains("chan_0") && shown.contains(&format!("byte {offset}")),
                "{shown}"
            );
        }
        other => panic!("expected a corrupt-data error, got {other}"),
    }
}

#[test]
fn a_valid_trace_reads() {
    let (d, data) = trace("valid", 3);
    write(&d, &data);
    let (xs, errs, skipped) = read_all(&d, false);
    assert!(errs.is_empty());
    assert_eq!(xs, (0..12).collect::<Vec<u64>>());
    assert!(skipped.is_empty());
}

#[test]
fn missing_metadata() {
    let d = TraceDir::new("nometa");
    std::fs::write(d.join("chan_0"), packet(0)).unwrap();
    let Err(e) = TraceSet::open(&d, &OpenOptions::default()) else {
        panic!("opened a trace without metadata")
    };
    assert!(matches!(e, ReadError::NoTrace { .. }), "{e}");
    assert!(e.to_string().contains("metadata"), "{e}");
    let Err(e) = TraceSet::open(&d.join("absent"), &OpenOptions::default()) else {
        panic!()
    };
    assert!(matches!(e, ReadError::Io { .. }), "{e}");
}

#[test]
fn corrupt_and_unsupported_metadata() {
    let (d, data) = trace("badmeta", 1);
    write(&d, &data);
    std::fs::write(
        d.join("metadata"),
        METADATA.replace("stream_id = 0; fields", "stream_id = 0 fields"),
    )
    .unwrap();
    let Err(e) = TraceSet::open(&d, &OpenOptions { skip_corrupt: true }) else {
        panic!()
    };
    let s = e.to_string();
    let line = METADATA
        .lines()
        .position(|l| l.starts_with("event {"))
        .unwrap()
        + 1;
    assert!(
        s.contains("metadata")
            && s.contains(&format!("line {line}:"))
            && s.contains("expected `;`"),
        "{s}"
    );
    std::fs::write(
        d.join("metadata"),
        METADATA.replace("major = 1", "major = 2"),
    )
    .unwrap();
    let Err(e) = TraceSet::open(&d, &OpenOptions::default()) else {
        panic!()
    };
    assert!(e.to_string().contains("only CTF 1.8"), "{e}");
    std::fs::write(
        d.join("metadata"),
        METADATA.replace("string _s", "uint32_t _x"),
    )
    .unwrap();
    assert!(
        TraceSet::open(&d, &OpenOptions::default()).is_ok(),
        "a duplicate field name is tolerated"
    );
    std::fs::write(
        d.join("metadata"),
        METADATA.replace("_x; string _s", "_x; uint8_t _s[_nope]"),
    )
    .unwrap();
    // A sequence refers to another field: its class is compiled when the
    // trace is opened, and a bad reference fails the opening.
    let Err(e) = TraceSet::open(&d, &OpenOptions::default()) else {
        panic!()
    };
    assert!(e.to_string().contains("`_nope`"), "{e}");
    // Other event types are parsed and compiled at the class's first
    // event: a syntax error inside one lets the trace open, fails its first
    // event naming the metadata file, with the error and line that parsing
    // the whole metadata gives, and fails the full check.
    let bad = METADATA.replace("uint32_t _x; string _s", "uint32_t _x; strin _s");
    std::fs::write(d.join("metadata"), &bad).unwrap();
    let want = strata_ctf::read::tsdl::parse_text(&bad)
        .unwrap_err()
        .to_string();
    assert!(want.contains(&format!("line {line}:")), "{want}");
    let set = TraceSet::open(&d, &OpenOptions::default()).unwrap();
    let e = set.events().next().unwrap().err().unwrap().to_string();
    assert!(e.contains(&want) && e.contains("metadata:"), "{e}");
    let e = set.check_metadata().unwrap_err();
    assert!(
        matches!(&e, ReadError::Metadata { path, .. } if path.ends_with("metadata"))
            && e.to_string().contains(&want),
        "{e}"
    );
}

#[test]
fn wrong_packet_magic() {
    let (d, mut data) = trace("magic", 3);
    data[PKT] ^= 0xff;
    let f = write(&d, &data);
    let (xs, errs, _) = read_all(&d, false);
    assert_eq!(xs, (0..4).collect::<Vec<u64>>());
    corrupt_at(&errs[0], &f, PKT as u64, "magic");
    // Skipping: the declared size of a packet with a bad magic is not
    // trusted, so the rest of the file goes.
    let (xs, errs, s) = read_all(&d, true);
    assert!(errs.is_empty());
    assert_eq!(xs, (0..4).collect::<Vec<u64>>());
    assert_eq!((s.packets, s.bytes, s.streams), (1, 2 * PKT as u64, 1));
}

#[test]
fn wrong_uuid() {
    let (d, mut data) = trace("uuid", 2);
    data[PKT + 4] ^= 1;
    let f = write(&d, &data);
    let (_, errs, _) = read_all(&d, false);
    corrupt_at(&errs[0], &f, PKT as u64 + 4, "UUID");
}

#[test]
fn packet_size_larger_than_the_file() {
    let (d, mut data) = trace("toolarge", 2);
    set64(&mut data, PKT + PACKET, 1 << 40);
    let f = write(&d, &data);
    let (xs, errs, _) = read_all(&d, false);
    assert_eq!(xs.len(), 4);
    corrupt_at(&errs[0], &f, PKT as u64, "past the end of the file");
}

#[test]
fn content_larger_than_packet_is_skipped_whole() {
    let (d, mut data) = trace("content", 3);
    set64(&mut data, PKT + CONTENT, PKT as u64 * 8 + 8);
    let f = write(&d, &data);
    let (_, errs, _) = read_all(&d, false);
    corrupt_at(&errs[0], &f, PKT as u64, "larger than the packet size");
    let (xs, errs, s) = read_all(&d, true);
    assert!(errs.is_empty());
    let want: Vec<u64> = (0..4).chain(8..12).collect();
    assert_eq!(
        xs, want,
        "the packet's declared size is credible: reading resumes after it"
    );
    assert_eq!((s.packets, s.bytes, s.streams), (1, PKT as u64, 1));
}

#[test]
fn packet_size_not_whole_bytes() {
    let (d, mut data) = trace("bits", 2);
    set64(&mut data, PKT + PACKET, PKT as u64 * 8 - 3);
    let f = write(&d, &data);
    let (_, errs, _) = read_all(&d, false);
    corrupt_at(&errs[0], &f, PKT as u64, "whole number of bytes");
}

#[test]
fn truncated_stream_file() {
    let (d, data) = trace("trunc", 3);
    let f = write(&d, &data[..2 * PKT + 100]);
    let (xs, errs, _) = read_all(&d, false);
    assert_eq!(xs.len(), 8);
    corrupt_at(&errs[0], &f, 2 * PKT as u64, "truncated");
    let (xs, errs, s) = read_all(&d, true);
    assert!(errs.is_empty());
    assert_eq!(xs.len(), 8);
    assert_eq!((s.packets, s.bytes), (1, 100));
    // Cut inside the first packet header: open() already fails, naming it.
    write(&d, &data[..10]);
    let Err(e) = TraceSet::open(&d, &OpenOptions::default()) else {
        panic!()
    };
    corrupt_at(&e, &f, 0, "packet header");
}

#[test]
fn event_running_past_the_content() {
    let (d, mut data) = trace("event", 2);
    // Content ends inside the third event's string.
    let third = 68 + 2 * (4 + 4 + 3);
    set64(&mut data, PKT + CONTENT, (third as u64 + 10) * 8);
    let f = write(&d, &data);
    let (xs, errs, _) = read_all(&d, false);
    assert_eq!(xs, vec![0, 1, 2, 3, 4, 5]);
    corrupt_at(&errs[0], &f, (PKT + third + 8) as u64, "NUL");
    let (xs, errs, s) = read_all(&d, true);
    assert!(errs.is_empty());
    assert_eq!(xs, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(s.packets, 1);
}

#[test]
fn unknown_event_id() {
    let (d, mut data) = trace("id", 1);
    data[68 + 11] |= 3; // second event: id 3, not declared
    let f = write(&d, &data);
    let (xs, errs, _) = read_all(&d, false);
    assert_eq!(xs, vec![0]);
    corrupt_at(&errs[0], &f, 68 + 11, "event id 3");
}

#[test]
fn one_bad_stream_does_not_stop_the_others() {
    let (d, data) = trace("others", 2);
    write(&d, &data);
    let mut bad = packet(100);
    bad[0] = 0;
    std::fs::write(d.join("chan_1"), [data.clone(), bad].concat()).unwrap();
    let (xs, errs, _) = read_all(&d, false);
    assert_eq!(errs.len(), 1);
    assert_eq!(xs.len(), 16, "both streams' 8 good events");
}

/// The same decoding from bytes in memory, as a live relay would use it.
#[test]
fn in_memory_stream() {
    use strata_ctf::read::TraceClass;
    let tc = TraceClass::from_metadata(METADATA.as_bytes()).unwrap();
    assert_eq!(tc.event_classes()[0].name(), "ev");
    let mut data: Vec<u8> = (0..2).flat_map(|i| packet(i * EVENTS)).collect();
    let name = Path::new("relay/chan_0");
    let mut r = tc.stream(name, &data, false);
    let mut xs = Vec::new();
    while let Some(e) = r.next() {
        let e = e.unwrap();
        xs.push(e.u64(e.class().field("x").unwrap()).unwrap());
        assert_eq!(e.position(), (name, e.position().1));
    }
    assert_eq!(xs, (0..8).collect::<Vec<u64>>());
    data[PKT] = 0;
    let mut r = tc.stream(name, &data, false);
    let mut n = 0;
    let err = loop {
        match r.next() {
            Some(Ok(_)) => n += 1,
            Some(Err(e)) => break e,
            None => panic!("no error"),
        }
    };
    assert_eq!(n, 4);
    corrupt_at(&err, name, PKT as u64, "magic");
    let mut r = tc.stream(name, &data, true);
    let mut n = 0;
    while let Some(e) = r.next() {
        e.unwrap();
        n += 1;
    }
    assert_eq!((n, r.skipped().packets), (4, 1));
}
