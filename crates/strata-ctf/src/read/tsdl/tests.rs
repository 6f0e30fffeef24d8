use super::*;

const LTTNG_LIKE: &str = r#"/* CTF 1.8 */
typealias integer { size = 8; align = 8; signed = false; } := uint8_t;
typealias integer { size = 32; align = 8; signed = false; } := uint32_t;
typealias integer { size = 64; align = 8; signed = false; } := unsigned long;
typealias integer { size = 5; align = 1; signed = false; } := uint5_t;
trace {
	major = 1; minor = 8;
	uuid = "2a6422d0-6cee-11e0-8c08-cb07d7b3a564";
	byte_order = be;
	packet.header := struct { uint32_t magic; uint8_t uuid[16]; uint32_t stream_id; };
};
env { hostname = "h"; tracer_major = 2; };
clock { name = monotonic; freq = 1000000000; offset_s = -3; offset = 12; };
typealias integer { size = 27; align = 1; signed = false; map = clock.monotonic.value; } := uint27_clock_monotonic_t;
struct hdr {
	enum : uint5_t { compact = 0 ... 30, extended = 31 } id;
	variant <id> {
		struct { uint27_clock_monotonic_t timestamp; } compact;
		struct { uint32_t id; unsigned long timestamp; } extended;
	} v;
} align(8);
stream { id = 0; event.header := struct hdr; packet.context := struct { unsigned long content_size; }; };
event {
	name = "sched_switch"; id = 3; stream_id = 0; loglevel = -1;
	fields := struct {
		integer { size = 8; align = 8; signed = 0; encoding = UTF8; base = 10; } _prev_comm[16];
		uint32_t __len;
		integer { size = 16; byte_order = le; base = hex; } _seq[ __len ];
		string _s;
		floating_point { exp_dig = 11; mant_dig = 53; byte_order = le; align = 64; } _d;
	};
};
callsite { name = "x"; func = "f"; ip = 0x1; file = "a.c"; line = 3; };
"#;

#[test]
fn parses_an_lttng_like_trace() {
    let md = parse_text(LTTNG_LIKE).unwrap();
    assert_eq!(md.byte_order, Some(ByteOrder::Be));
    assert_eq!(md.uuid.unwrap()[0], 0x2a);
    assert_eq!(md.env("hostname"), Some(&EnvValue::Str("h".into())));
    assert_eq!(md.env("tracer_major"), Some(&EnvValue::Int(2)));
    assert_eq!(md.clocks[0].desc.offset_s, -3);
    assert_eq!(md.clocks[0].desc.offset, 12);
    let s = &md.streams[0];
    let Some(Type::Struct(h)) = &s.event_header else {
        panic!()
    };
    assert_eq!(h.min_align, 8);
    let Type::Enum(e) = &h.fields[0].1 else {
        panic!()
    };
    assert_eq!(e.int.size, 5);
    assert_eq!((e.mappings[1].lo, e.mappings[1].hi), (31, 31));
    let Type::Variant(v) = &h.fields[1].1 else {
        panic!()
    };
    assert_eq!(v.tag.as_deref(), Some("id"));
    let Type::Struct(c) = &v.options[0].1 else {
        panic!()
    };
    let Type::Int(ts) = &c.fields[0].1 else {
        panic!()
    };
    assert_eq!(ts.map.as_deref(), Some("monotonic"));
    assert_eq!(ts.size, 27);
    let ev = &md.events[0];
    assert_eq!(
        (md.name_of(ev), ev.id, ev.stream_id, ev.loglevel),
        ("sched_switch", Some(3), Some(0), Some(-1))
    );
    let Some(Type::Struct(f)) = ev.fields.as_deref() else {
        panic!()
    };
    let names: Vec<&str> = f.fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["_prev_comm", "__len", "_seq", "_s", "_d"]);
    assert!(matches!(&f.fields[0].1, Type::Array { len: 16, .. }));
    let Type::Sequence { elem, length } = &f.fields[2].1 else {
        panic!()
    };
    assert_eq!(length, "__len");
    let Type::Int(i) = elem.as_ref() else {
        panic!()
    };
    assert_eq!(
        (i.size, i.align, i.base, i.byte_order),
        (16, 8, 16, ByteOrder::Le)
    );
    assert!(matches!(
        &f.fields[4].1,
        Type::Float(FloatType { align: 64, .. })
    ));
}

#[test]
fn typedef_named_variants_and_scoping() {
    let md = parse_text(
        r#"
        typealias integer { size = 8; } := u8;
        typedef u8 pair[2];
        enum e : u8 { A, B = 5, "C D", E = 7 ... 9 };
        variant var { u8 A; string B; };
        trace { byte_order = le; };
        event { name = x; fields := struct {
            enum e tag; pair p; variant var <tag> v;
            struct { typealias integer { size = 3; } := u3; u3 a; u3 b; } inner;
        }; };
    "#,
    )
    .unwrap();
    let Some(Type::Struct(f)) = md.events[0].fields.as_deref() else {
        panic!()
    };
    let Type::Enum(e) = &f.fields[0].1 else {
        panic!()
    };
    let v: Vec<_> = e
        .mappings
        .iter()
        .map(|m| (m.label.as_str(), m.lo, m.hi))
        .collect();
    assert_eq!(v, [("A", 0, 0), ("B", 5, 5), ("C D", 6, 6), ("E", 7, 9)]);
    assert!(matches!(&f.fields[1].1, Type::Array { len: 2, .. }));
    let Type::Variant(var) = &f.fields[2].1 else {
        panic!()
    };
    assert_eq!(var.tag.as_deref(), Some("tag"));
    assert_eq!(var.options.len(), 2);
    let Type::Struct(inner) = &f.fields[3].1 else {
        panic!()
    };
    let Type::Int(a) = &inner.fields[0].1 else {
        panic!()
    };
    assert_eq!((a.size, a.align), (3, 1));
    // The alias declared inside the struct is not visible outside it.
    let e = parse_text(
        "struct s { typealias integer { size = 3; } := u3; u3 a; }; event { name = x; fields := struct { u3 b; }; };",
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown type `u3`"), "{e}");
}

#[test]
fn errors_give_line_and_expectation() {
    let e = parse_text("trace {\n major = 1;\n byte_order le;\n};").unwrap_err();
    assert_eq!(
        e,
        MetadataError::Syntax {
            line: 3,
            msg: "expected `=` or `:=` after `byte_order`, found `le`".into()
        }
    );
    let e = parse_text("event {\n name = x;\n fields := struct { uint32_t a; };\n};").unwrap_err();
    assert!(matches!(e, MetadataError::Syntax { line: 3, .. }), "{e}");
    let e = parse_text("typealias integer { size = 8; align = 3; } := x;").unwrap_err();
    assert!(e.to_string().contains("power of two"), "{e}");
    let e = parse_text("trace { major = 2; };").unwrap_err();
    assert!(matches!(e, MetadataError::Unsupported(_)), "{e}");
    let e = parse_text("trace { major = 1 }").unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
}

#[test]
fn packetized_metadata_is_unwrapped() {
    let text = "/* CTF 1.8 */ trace { major = 1; minor = 8; byte_order = le; };";
    // Two packets, of 20 bytes of text and the rest.
    let bytes = super::in_place_tests::packetize(text.as_bytes(), &[20, text.len() - 20]);
    assert_eq!(metadata_text(&bytes).unwrap(), text);
    assert_eq!(parse(&bytes).unwrap().byte_order, Some(ByteOrder::Le));
    let e = metadata_text(&bytes[..50]).unwrap_err();
    assert!(matches!(e, MetadataError::Packet { offset: 0, .. }), "{e}");
    let mut bad = bytes.clone();
    let second = 37 + 20 + 3;
    bad[second] ^= 1;
    let e = metadata_text(&bad).unwrap_err();
    assert_eq!(
        e.to_string().split(':').next(),
        Some(format!("metadata packet at byte {second}").as_str())
    );
}

#[test]
fn repeated_integer_bodies_parse_alike_and_keep_line_numbers() {
    // The second and third bodies are the first's text again (served from
    // the parser's cache), spread over lines; the error after them must
    // still name its own line.
    let text = "typealias integer { size = 8;\n align = 8; signed = false; } := u8;\n\
        typealias integer { size = 8;\n align = 8; signed = false; } := u8b;\n\
        event { name = e; fields := struct {\n\
        integer { size = 8;\n align = 8; signed = false; } a;\n\
        integer { size = 8; align = 8; signed = true; } b;\n\
        integer { size = 8;\n align = 8; signed = false; } c;\n\
        }; };\n\
        trace { major = 1 };";
    let e = parse_text(text).unwrap_err();
    let line = text.lines().position(|l| l.contains("major")).unwrap() as u32 + 1;
    assert_eq!(line, 12);
    assert_eq!(
        e,
        MetadataError::Syntax {
            line,
            msg: "expected `;` after the value of `major`, found `}`".into()
        }
    );
    let ok = text.replace("major = 1 }", "major = 1; }");
    let md = parse_text(&ok).unwrap();
    let Some(Type::Struct(s)) = md.events[0].fields.as_deref() else {
        panic!()
    };
    let ints: Vec<(u32, bool)> = s
        .fields
        .iter()
        .map(|(_, t)| match t {
            Type::Int(i) => (i.size, i.signed),
            _ => panic!("{t:?}"),
        })
        .collect();
    assert_eq!(ints, [(8, false), (8, true), (8, false)]);
}

/// Metadata parsed lazily, with every deferred type then parsed into its
/// event: what [`parse`] gives, when nothing is wrong.
fn lazy_then_filled(bytes: &[u8]) -> Result<Metadata, MetadataError> {
    let (mut md, lazy) = parse_lazy(bytes.to_vec())?;
    for (i, e) in md.events.iter_mut().enumerate() {
        if lazy.is_deferred(i) {
            assert!(e.context.is_none() && e.fields.is_none());
            let (context, fields) = lazy.event_types(i)?;
            (e.context, e.fields) = (context.map(Box::new), fields.map(Box::new));
        }
    }
    Ok(md)
}

/// Texts where deferring must not change the result: a typealias after
/// events (they must keep the old meaning), declarations and named
/// structs inside event blocks, strings and comments in types, sequences
/// and variants (parsed at once), a top-level alias with a sequence.
const LAZY_CASES: &[&str] = &[
    LTTNG_LIKE,
    r#"typealias integer { size = 8; } := t;
event { name = a; id = 0; fields := struct { t x; }; };
typealias integer { size = 16; } := t;
event { name = b; id = 1; fields := struct { t x; }; context := struct { t c; }; };"#,
    r#"typealias integer { size = 8; } := t;
event { name = a; id = 0; context := struct s { t x; }; fields := struct s; };
event { name = b; id = 1; fields := struct { t x; }; typealias integer { size = 32; } := u; context := struct { u y; }; };
event { name = c; id = 2; fields := enum : t { "a;}" = 1, /* } */ b }; extra := struct { t z; }; };"#,
    r#"typealias integer { size = 8; } := t;
event { name = a; id = 0; fields := struct { t n; t s[n]; }; };
event { name = b; id = 1; fields := struct { t v; variant <v> { t a; t b; } w; }; };
typealias integer { size = 8; } := q[n];
typedef struct { t n; t s[n]; } seq_t;
event { name = c; id = 2; fields := struct { seq_t x; }; };
event { name = d; id = 3; fields := struct { t n; q y; }; };
typealias integer { size = 8; } := a4[4];
event { name = e; id = 4; fields := struct { a4 y; }; };"#,
];

#[test]
fn lazy_parse_gives_the_same_metadata() {
    for text in LAZY_CASES {
        let eager = parse_text(text).unwrap();
        assert_eq!(lazy_then_filled(text.as_bytes()).unwrap(), eager, "{text}");
    }
    let (_, lazy) = parse_lazy(LAZY_CASES[1].as_bytes().to_vec()).unwrap();
    assert!(lazy.is_deferred(1), "the last event waits");
    let (_, lazy) = parse_lazy(LAZY_CASES[3].as_bytes().to_vec()).unwrap();
    assert!(
        (0..4).all(|i| !lazy.is_deferred(i)),
        "fields referring to others are parsed at once"
    );
    assert!(lazy.is_deferred(4), "an array alias refers to nothing");
}

/// On the shared real traces' metadata and copies of it with one byte
/// changed: when the whole parse succeeds, the lazy one gives the same
/// metadata; when it fails on an event's type, either the lazy parse fails
/// too (further on) or that type fails with the same error.
#[test]
fn lazy_parse_agrees_on_real_and_damaged_metadata() {
    let files = shared_metadata("lazy_parse_agrees_on_real_and_damaged_metadata");
    if files.is_empty() {
        return;
    }
    let mut deferred_seen = 0;
    let mut checked = 0;
    for bytes in &files {
        let text = metadata_text(bytes).unwrap();
        let eager = parse_text(&text).unwrap();
        // Packetized, as in the file: unwrapped in place, same result.
        assert_eq!(lazy_then_filled(bytes).unwrap(), eager);
        let (_, lazy) = parse_lazy(text.as_bytes().to_vec()).unwrap();
        deferred_seen += (0..eager.events.len())
            .filter(|&i| lazy.is_deferred(i))
            .count();
        assert_eq!(lazy_then_filled(text.as_bytes()).unwrap(), eager);
        // One byte in 97 of the text, each replaced by characters that
        // break the syntax in different ways.
        let step = 97;
        for (n, at) in (0..text.len()).step_by(step).enumerate() {
            if !text.is_char_boundary(at) || !text.is_char_boundary(at + 1) {
                continue;
            }
            let with = ["}", ";", "@", "\"", "x"][n % 5];
            let damaged = format!("{}{}{}", &text[..at], with, &text[at + 1..]);
            checked += 1;
            match (parse_text(&damaged), lazy_then_filled(damaged.as_bytes())) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "byte {at} as {with:?}"),
                (Ok(_), Err(e)) => panic!("byte {at} as {with:?}: only the lazy parse fails: {e}"),
                // The lazy parse may pass over an error in a deferred type
                // and fail further on (maybe on the same line); never
                // before.
                (
                    Err(MetadataError::Syntax { line: a, msg: m }),
                    Err(MetadataError::Syntax { line: b, msg: n }),
                ) => {
                    assert!(
                        b >= a,
                        "byte {at} as {with:?}: line {b}: {n}, before line {a}: {m}"
                    );
                }
                (Err(_), Err(_)) => {}
                (Err(e), Ok(_)) => {
                    panic!("byte {at} as {with:?}: only the whole parse fails: {e}")
                }
            }
        }
    }
    assert!(
        deferred_seen > 1000,
        "LTTng kernel event types are deferred"
    );
    assert!(checked > 1000);
}

/// An event block after LTTng-laid-out ones that the byte scan does not
/// take is parsed from its start, with the right lines.
#[test]
fn lazy_parse_hands_odd_blocks_back_with_their_lines() {
    let block = |name: &str, id: &str| {
        format!("event {{\n\tname = \"{name}\";\n\tid = {id};\n\tstream_id = 0;\n\tfields := struct {{\n\t\tinteger {{ size = 8; }} _a;\n\t}};\n}};\n\n")
    };
    let good = format!("{}{}", block("a", "0"), block("b", "1"));
    for odd in [block("c", "x"), block("c", "0x2").replace("_a;", "_a")] {
        let text = format!("{good}{odd}");
        let eager = parse_text(&text).unwrap_err();
        assert!(
            matches!(eager, MetadataError::Syntax { line, .. } if line > 16),
            "{eager}"
        );
        match parse_lazy(text.as_bytes().to_vec()) {
            Err(lazy) => assert_eq!(lazy, eager),
            // The error is inside the deferred fields: it comes at first use.
            Ok((_, lazy)) => assert_eq!(lazy.event_types(2).unwrap_err(), eager),
        }
    }
}

/// Field declarations spelled as LTTng does and as it does not, for the
/// byte reader of fields ([`parser::parse_text_by_tokens`] is the oracle).
mod byte_fields {
    use super::super::parser::parse_text_by_tokens;
    use super::super::{metadata_text, parse_text, shared_metadata};
    use proptest::prelude::*;

    fn pick(options: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
        prop::sample::select(options)
    }

    /// A field declaration: mostly LTTng's spellings, with odd spacing,
    /// names, lengths and ends mixed in (most of which must fail the same
    /// way both ways, on the same line).
    fn field() -> impl Strategy<Value = String> {
        (
            pick(&[
                "integer { size = 32; align = 8; signed = 1; encoding = none; base = 10; }",
                "integer { size = 8; align = 8; signed = 0; encoding = UTF8; base = 10; }",
                "integer {\n size = 64; align = 8;\n signed = 0; base = 16; }",
                "integer { size = 7; align = 1; /* odd */ }",
                "integer{size=8;}",
                "integer",
                "string",
                "string { encoding = ASCII; }",
                "uint32_t",
            ]),
            pick(&[" ", " ", "  ", "\t", "\n", "/* c */", ""]),
            pick(&["_a", "_a", "_b1", "_x_y", "a", "_x$", "_", "integer"]),
            pick(&[
                "",
                "",
                "",
                "[16]",
                "[0]",
                "[016]",
                "[0x10]",
                "[ 4 ]",
                "[4294967297]",
                "[99999999999]",
                "[ _a ]",
                "[_a]",
                "[16",
            ]),
            pick(&["", "", " ", "\n", "\t"]),
            pick(&[";", ";", ";", ",", "", "}"]),
        )
            .prop_map(|(t, s1, n, d, s2, end)| format!("{t}{s1}{n}{d}{s2}{end}"))
    }

    /// One event whose `fields` struct holds `body`.
    fn metadata(body: &str) -> String {
        format!(
            "typealias integer {{ size = 32; align = 8; signed = false; }} := uint32_t;\n\
             trace {{ major = 1; minor = 8; byte_order = le; }};\n\
             event {{\n\tname = \"e\";\n\tfields := struct {{\n\t\t\
             integer {{ size = 32; align = 8; signed = 1; encoding = none; base = 10; }} _first;\n\t\t\
             integer {{ size = 32; align = 8; signed = 1; encoding = none; base = 10; }} _second;\n\t\t\
             {body}\n\t}};\n}};\n"
        )
    }

    #[test]
    fn real_metadata_reads_the_same_by_bytes_and_by_tokens() {
        for bytes in shared_metadata("real_metadata_reads_the_same_by_bytes_and_by_tokens") {
            let text = metadata_text(&bytes).unwrap();
            assert_eq!(parse_text(&text), parse_text_by_tokens(&text));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]
        /// Whatever the declarations (most of them wrong), reading them by
        /// bytes gives the lexer's metadata, or its error on the same line.
        #[test]
        fn fields_read_the_same_by_bytes_and_by_tokens(
            fields in prop::collection::vec(field(), 1..8),
        ) {
            let body = fields.join("\n\t\t");
            let text = metadata(&body);
            prop_assert_eq!(parse_text(&text), parse_text_by_tokens(&text), "{}", text);
        }
    }

    #[test]
    fn lttng_fields_parse() {
        // The common spellings parse (the property test above mostly makes
        // errors): both ways agree on them too.
        let text = metadata(
            "integer { size = 8; align = 8; signed = 0; encoding = UTF8; base = 10; } _comm[16];\n\t\t\
             string _name;\n\t\tinteger { size = 32; align = 8; signed = 1; encoding = none; base = 10; } _tid;",
        );
        let md = parse_text(&text).unwrap();
        assert_eq!(Ok(md.clone()), parse_text_by_tokens(&text));
        let fields = match md.events[0].fields.as_deref() {
            Some(super::super::Type::Struct(s)) => {
                s.fields.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
            }
            t => panic!("{t:?}"),
        };
        assert_eq!(fields, ["_first", "_second", "_comm", "_name", "_tid"]);
    }
}
