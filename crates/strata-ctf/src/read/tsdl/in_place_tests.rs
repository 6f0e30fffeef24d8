//! The lazy parse of packetized metadata read in place must give what the
//! parse of the unwrapped text gives: same metadata, deferred entries,
//! event types, hashes and errors, wherever the packets are cut.

use super::*;
use proptest::prelude::*;

/// `text` as packetized metadata: packets whose bodies have the lengths
/// `lens` (cycled; at least one byte each), little-endian headers, and a
/// few bytes of padding after each content.
pub(super) fn packetize(text: &[u8], lens: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut at, mut k) = (0, 0);
    while at < text.len() || out.is_empty() {
        let n = lens[k % lens.len()].max(1).min(text.len() - at);
        k += 1;
        let content_bits = ((METADATA_HEADER_LEN + n) * 8) as u32;
        let packet_bits = content_bits + 3 * 8;
        out.extend_from_slice(&METADATA_PACKET_MAGIC.to_le_bytes());
        out.extend_from_slice(&[7; 16]);
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&content_bits.to_le_bytes());
        out.extend_from_slice(&packet_bits.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 1, 8]);
        out.extend_from_slice(&text[at..at + n]);
        out.extend_from_slice(&[0, 0, 0]);
        at += n;
    }
    out
}

/// Everything a lazy parse gives its users.
#[derive(Debug, PartialEq)]
struct Outcome {
    md: Metadata,
    deferred: Vec<parser::Deferred>,
    other_keys: Vec<Box<str>>,
    types: Vec<Result<EventTypes, MetadataError>>,
    hashes: Vec<u64>,
    /// Whether each event has the same types as the next one.
    same_next: Vec<bool>,
    /// For each event, the first one with the same types.
    same_first: Vec<usize>,
}

/// Whether the lazy types' text had to be put together in one string.
fn put_together(lazy: &LazyTypes) -> bool {
    match &lazy.text {
        LazyText::Whole(_) => true,
        LazyText::Split { whole, .. } => whole.get().is_some(),
    }
}

/// The outcome of [`parse_lazy`] on `bytes`, and the way it read them.
fn outcome(bytes: Vec<u8>) -> (Result<Outcome, MetadataError>, Option<ReadPath>) {
    let (md, lazy) = match parse_lazy(bytes) {
        Ok(r) => r,
        Err(e) => return (Err(e), None),
    };
    let n = md.events.len();
    let types: Vec<_> = (0..n).map(|i| lazy.event_types(i)).collect();
    let hashes: Vec<u64> = (0..n).map(|i| lazy.types_hash(i)).collect();
    // The hash is that of the (key, text) string pairs.
    for (i, &hash) in hashes.iter().enumerate() {
        use std::hash::{Hash, Hasher};
        let mut h = parser::WordHash::default();
        for (key, text) in lazy.texts(i) {
            (key, std::str::from_utf8(&text).unwrap()).hash(&mut h);
        }
        assert_eq!(h.finish(), hash);
    }
    let same_next = (1..n).map(|i| lazy.same_types(i - 1, i)).collect();
    let same_first = (0..n)
        .map(|i| {
            (0..i)
                .find(|&j| hashes[j] == hashes[i] && lazy.same_types(j, i))
                .unwrap_or(i)
        })
        .collect();
    let path = lazy.path;
    // Types that parse are read from their own text.
    if path != ReadPath::Unwrapped && types.iter().all(Result::is_ok) {
        assert!(!put_together(&lazy), "{path:?}");
    }
    let o = Outcome {
        md,
        deferred: lazy.deferred.clone(),
        other_keys: lazy.other_keys.clone(),
        types,
        hashes,
        same_next,
        same_first,
    };
    (Ok(o), Some(path))
}

/// Checks that `text`, packetized with body lengths `lens`, parses as the
/// plain text does; returns the way the packets were read.
fn agrees(text: &str, lens: &[usize]) -> Option<ReadPath> {
    let (want, plain) = outcome(text.as_bytes().to_vec());
    if want.is_ok() {
        assert_eq!(plain, Some(ReadPath::Plain));
    }
    let (got, path) = outcome(packetize(text.as_bytes(), lens));
    assert_eq!(got, want, "bodies of {lens:?} bytes, read {path:?}");
    path
}

/// Top-level declarations as LTTng writes them before its event blocks,
/// with a struct that has a variant (event types naming it are parsed at
/// once, after a search of the text).
const HEAD: &str = r#"/* CTF 1.8 */

typealias integer { size = 8; align = 8; signed = false; } := uint8_t;
typealias integer { size = 32; align = 8; signed = false; } := uint32_t;
typealias integer { size = 64; align = 8; signed = false; } := uint64_t;

trace {
	major = 1;
	minor = 8;
	uuid = "2a6422d0-6cee-11e0-8c08-cb07d7b3a564";
	byte_order = le;
	packet.header := struct {
		uint32_t magic;
		uint8_t  uuid[16];
		uint32_t stream_id;
	} align(8);
};

env {
	hostname = "HOST";
	domain = "kernel";
};

clock {
	name = "monotonic";
	freq = 1000000000; /* Frequency, in Hz */
	offset = 1764208279000000000;
};

typealias integer {
	size = 27; align = 1; signed = false;
	map = clock.monotonic.value;
} := uint27_clock_monotonic_t;

struct event_header_compact {
	enum : uint8_t { compact = 0 ... 30, extended = 31 } id;
	variant <id> {
		struct { uint27_clock_monotonic_t timestamp; } compact;
		struct { uint32_t id; uint64_t timestamp; } extended;
	} v;
} align(1);

stream {
	id = 0;
	event.header := struct event_header_compact;
	packet.context := struct {
		uint64_t content_size;
		uint64_t packet_size;
	} align(8);
};"#;

/// One field of an event, LTTng-style, most often a plain integer.
fn field() -> impl Strategy<Value = String> {
    let name = "_[a-z][a-z0-9_]{0,24}";
    prop_oneof![
        6 => (name, prop::sample::select(vec![8u32, 16, 32, 64]), any::<bool>()).prop_map(
            |(n, size, signed)| format!(
                "\t\tinteger {{ size = {size}; align = 8; signed = {}; encoding = none; base = 10; }} {n};\n",
                u8::from(signed)
            )
        ),
        2 => name.prop_map(|n| format!("\t\tstring {n};\n")),
        1 => name.prop_map(|n| format!(
            "\t\tenum : uint8_t {{ \"a;}}\" = 1, \"b{{\" = 2, C = 3 ... 7 }} {n};\n"
        )),
        // Arrays and sequences: blocks the byte scans leave to the parser.
        1 => name.prop_map(|n| format!(
            "\t\tinteger {{ size = 8; align = 8; signed = 0; encoding = UTF8; base = 10; }} {n}[16];\n"
        )),
        1 => name.prop_map(|n| format!("\t\tuint32_t {n}_len;\n\t\tuint8_t {n}[ {n}_len ];\n")),
        // Names the top-level struct with a variant.
        1 => name.prop_map(|n| format!("\t\tstruct event_header_compact {n};\n")),
        1 => Just("\t\t/* a comment\n\n */ uint8_t _c;\n".to_string()),
    ]
}

/// One event block: LTTng's layout most often, else spaced out, with a
/// loglevel and a context, or with a comment.
fn event_block() -> impl Strategy<Value = String> {
    (
        "[a-z_][a-z0-9_]{0,40}",
        prop_oneof![4 => 0u64..5000, 1 => any::<u64>()],
        prop::collection::vec(field(), 0..6),
        0u8..6,
    )
        .prop_map(|(name, id, fields, layout)| {
            let fields = fields.concat();
            match layout {
                0..=2 => format!(
                    "event {{\n\tname = \"{name}\";\n\tid = {id};\n\tstream_id = 0;\n\tfields := struct {{\n{fields}\t}};\n}};"
                ),
                3 => format!(
                    "event {{ name = \"{name}\"; id = {id}; stream_id = 0; loglevel = 13;\n  context := struct {{ uint32_t _ctx; }};\n  fields := struct {{\n{fields}}}; }};"
                ),
                4 => format!(
                    "event {{\n\tname = \"{name}\"; // {id}\n\tid = {id};\n\tfields := struct {{\n{fields}\t}};\n}};"
                ),
                _ => format!(
                    "event {{\n\tname = {name};\n\tid = {id};\n\tstream_id = 0;\n\tmodel.emf.uri = \"x\";\n\tfields := struct {{\n{fields}\t}};\n}};"
                ),
            }
        })
}

/// LTTng-style metadata: the head, event blocks one blank line apart and
/// what may follow them.
fn lttng_text() -> impl Strategy<Value = String> {
    (
        prop_oneof![4 => Just("h"), 1 => Just("h\u{e9}\u{1F600}")],
        prop::collection::vec(event_block(), 0..24),
        prop::sample::select(vec![
            "\n\n",
            "",
            "\n\n\0\0",
            "\n\ntypealias integer { size = 16; } := late_t;\n",
            "\nevent {\n\tname = \"late\";\n\tid = 99999;\n\tfields := struct { uint8_t _x; };\n};",
            "\n/* the end */\n",
        ]),
    )
        .prop_map(|(host, events, tail)| {
            let mut t = HEAD.replace("HOST", host);
            for e in events {
                t.push_str("\n\n");
                t.push_str(&e);
            }
            t.push_str(tail);
            t
        })
}

/// Body lengths from 1 byte to 4 KiB, the small ones as likely as the
/// large ones.
fn body_lens() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1usize..16, 16usize..300, 300usize..=4096], 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    /// Generated LTTng-style metadata, whole or with one byte replaced,
    /// cut into packets anywhere.
    #[test]
    fn in_place_parse_agrees_on_lttng_like_metadata(
        text in lttng_text(),
        lens in body_lens(),
        damage in prop::option::weighted(0.3, (any::<prop::sample::Index>(), prop::sample::select(vec!["}", ";", "@", "\"", "x", "[", "/*"]))),
    ) {
        let text = match damage {
            Some((at, with)) => {
                let mut at = at.index(text.len());
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                let next = text[at..].chars().next().map_or(at, |c| at + c.len_utf8());
                format!("{}{with}{}", &text[..at], &text[next..])
            }
            None => text,
        };
        agrees(&text, &lens);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    /// The shared real traces' metadata, cut into other packets: read in
    /// place, with the same outcome.
    #[test]
    fn in_place_parse_agrees_on_real_metadata(lens in body_lens()) {
        for bytes in shared_metadata("in_place_parse_agrees_on_real_metadata") {
            let text = metadata_text(&bytes).unwrap();
            prop_assert_eq!(agrees(&text, &lens), Some(ReadPath::InPlace));
        }
    }
}

/// The files as they are take the in-place path, with the same outcome
/// as their unwrapped text.
#[test]
fn real_metadata_files_are_read_in_place() {
    let files = shared_metadata("real_metadata_files_are_read_in_place");
    let mut deferred = 0;
    for bytes in files {
        let text = metadata_text(&bytes).unwrap();
        let (want, _) = outcome(text.into_bytes());
        let (got, path) = outcome(bytes);
        assert_eq!(path, Some(ReadPath::InPlace));
        let (got, want) = (got.unwrap(), want.unwrap());
        deferred += got.deferred.len();
        assert_eq!(got, want);
    }
    // tc-many-threads alone defers over a thousand.
    assert!(deferred > 1000, "only {deferred} event types deferred");
}

/// What the in-place path takes, and what it leaves to the whole parse.
#[test]
fn in_place_path_is_taken_for_lttng_layouts_only() {
    let block = |name: &str, fields: &str| {
        format!("\n\nevent {{\n\tname = \"{name}\";\n\tid = 1;\n\tstream_id = 0;\n\tfields := struct {{\n{fields}\t}};\n}};")
    };
    let plain = "\t\tuint32_t _a;\n";
    let array = "\t\tuint8_t _comm[16];\n";
    let lttng = format!(
        "{HEAD}{}{}{}\n\n",
        block("a", plain),
        block("b", array),
        block("c", plain)
    );
    for lens in [vec![4096], vec![1], vec![7, 300, 13]] {
        assert_eq!(agrees(&lttng, &lens), Some(ReadPath::InPlace), "{lens:?}");
    }
    // Anything but event blocks after the first one.
    let late_stream = format!("{lttng}stream {{ id = 1; }};");
    assert_eq!(agrees(&late_stream, &[100]), Some(ReadPath::Unwrapped));
    // A blank line and `event {` inside a comment: the block is read up to
    // LTTng's block end, by the parser.
    let comment = lttng.replacen("_a;", "_a; /*\n\nevent { */", 1);
    assert_eq!(agrees(&comment, &[100]), Some(ReadPath::InPlace));
    // That end too: neither window holds the block.
    let comment = lttng.replacen("_a;", "_a; /*\n};\n\nevent { */", 1);
    assert_eq!(agrees(&comment, &[100]), Some(ReadPath::Unwrapped));
    // No LTTng-style event block at all.
    let spaced = lttng.replace("\n\nevent {", "\nevent {");
    assert_eq!(agrees(&spaced, &[100]), Some(ReadPath::Unwrapped));
    // A character cut between two packets; whole in one, it is read in
    // place.
    let accent = lttng.replacen("\"a\"", "\"\u{e9}\"", 1);
    let at = accent.find('\u{e9}').unwrap();
    assert_eq!(agrees(&accent, &[at + 1, 4096]), Some(ReadPath::Unwrapped));
    assert_eq!(agrees(&accent, &[at + 2, 4096]), Some(ReadPath::InPlace));
    // Plain text: the whole parse, on the bytes as given.
    assert_eq!(outcome(lttng.into_bytes()).1, Some(ReadPath::Plain));
}

/// An error in an event's types that crosses a seam is the one the whole
/// text gives, with its line.
#[test]
fn errors_in_deferred_types_keep_their_line_across_seams() {
    let text = format!(
        "{HEAD}\n\nevent {{\n\tname = \"a\";\n\tid = 1;\n\tstream_id = 0;\n\tfields := struct {{\n\t\tuint32_t _a;\n\t\tno_such_t _b;\n\t}};\n}};\n\n"
    );
    let line = text.lines().position(|l| l.contains("no_such_t")).unwrap() as u32 + 1;
    let at = text.find("no_such_t").unwrap();
    for lens in [vec![at + 3, 4096], vec![1], vec![at - 40, 30, 4096]] {
        let (md, lazy) = parse_lazy(packetize(text.as_bytes(), &lens)).unwrap();
        assert_eq!(lazy.path, ReadPath::InPlace);
        assert_eq!(md.events.len(), 1);
        match lazy.event_types(0) {
            Err(MetadataError::Syntax { line: l, msg }) => {
                assert_eq!(l, line, "{msg}");
                assert!(msg.contains("no_such_t"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn events_naming_a_referring_type_are_parsed_at_once_whatever_names_share() {
    // Two top-level structs with a variant, whose names start alike: they
    // are searched by their common start; an event naming either is parsed
    // at once, one with only that start in a field name waits.
    let ev = |name: &str, id: u32, fields: &str| {
        format!(
            "\n\nevent {{\n\tname = \"{name}\";\n\tid = {id};\n\tstream_id = 0;\n\tfields := struct {{\n{fields}\n\t}};\n}};"
        )
    };
    let head = "typealias integer { size = 8; align = 8; signed = false; } := uint8_t;\n\
        trace { major = 1; minor = 8; byte_order = le; };\n\
        struct header_kind_alpha { uint8_t id; variant <id> { uint8_t a; uint8_t b; } v; };\n\
        struct header_kind_beta { uint8_t id; variant <id> { uint8_t a; uint8_t b; } v; };\n\
        stream { id = 0; };";
    let text = format!(
        "{head}{}{}{}{}",
        ev("names_beta", 1, "\t\tstruct header_kind_beta _h;"),
        ev("field_starts_alike", 2, "\t\tuint8_t _header_kind_gamma;"),
        ev("plain", 3, "\t\tuint8_t _x;"),
        ev(
            "names_alpha_across_a_cut",
            4,
            "\t\tstruct header_kind_alpha _h;"
        ),
    );
    let at_once = [true, false, false, true];
    // The name in the last event cut across two packets.
    let cut = text.rfind("kind_alpha").unwrap() + 3;
    for (bytes, path) in [
        (text.clone().into_bytes(), ReadPath::Plain),
        (packetize(text.as_bytes(), &[cut, 4096]), ReadPath::InPlace),
    ] {
        let (md, lazy) = parse_lazy(bytes).unwrap();
        assert_eq!(lazy.path, path);
        assert_eq!(md.events.len(), 4);
        for (e, &now) in at_once.iter().enumerate() {
            assert_eq!(!lazy.is_deferred(e), now, "event {e}, {path:?}");
        }
    }
}
