//! Finding where a type ends in TSDL text without parsing it, so that the
//! types of an event can wait until its class is first used: LTTng kernel
//! metadata declares over a thousand events and a trace uses a few dozen.

use super::lexer::{BLANK, CLASS as LEX, WORD};
use super::span_scan::{self, Scan};
use memchr::{memchr, memchr2, memchr3, memchr_iter};

/// What [`type_span`] found of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TypeSpan {
    /// Index of the `;` that closes the type (the first outside braces).
    pub end: usize,
    /// Newlines before it.
    pub lines: u32,
    /// Whether the type may refer to another field: it has a `[` not
    /// followed by a number (a sequence), a `<` (variant tag) or the word
    /// `variant`.
    pub refers: bool,
}

/// Whether the byte at `p` of `text`, a `[`, `<` or `v`, may start a
/// reference to another field: a sequence length (`[` and a name, unlike a
/// fixed array's `[16]`, which LTTng's `char` arrays have), a variant tag,
/// or the word `variant`.
#[inline]
pub(super) fn refers_at(text: &[u8], p: usize) -> bool {
    match text.get(p) {
        Some(b'v') => text[p..].starts_with(b"variant"),
        Some(b'[') => !text[p + 1..]
            .iter()
            .find(|c| !c.is_ascii_whitespace())
            .is_some_and(u8::is_ascii_digit),
        _ => true,
    }
}

/// Byte classes for [`type_span`]; 0 for bytes it steps over.
const LBRACE: u8 = 1;
const RBRACE: u8 = 2;
const SEMI: u8 = 3;
const NEWLINE: u8 = 4;
const QUOTE: u8 = 5;
const DOUBT: u8 = 6;
const REFER: u8 = 7;
const V: u8 = 8;
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'{' as usize] = LBRACE;
    t[b'}' as usize] = RBRACE;
    t[b';' as usize] = SEMI;
    t[b'\n' as usize] = NEWLINE;
    t[b'"' as usize] = QUOTE;
    t[b'\'' as usize] = DOUBT;
    t[b'/' as usize] = DOUBT;
    t[b'\\' as usize] = DOUBT;
    t[b'[' as usize] = REFER;
    t[b'<' as usize] = REFER;
    t[b'v' as usize] = V;
    t
};

/// Where the type that starts at byte `start` of `text` ends, without the
/// lexer. `None` when the scan cannot be sure the lexer would find the same
/// `;`: a comment, a character literal, a backslash, a `}` closing more
/// than the type opened, or the end of the text. String literals are
/// stepped over the way the lexer reads them (to the next quote, when no
/// backslash comes before it). The caller then parses the type at once, as
/// if nothing was deferred.
#[inline]
pub(crate) fn type_span(text: &[u8], start: usize) -> Option<TypeSpan> {
    // Most types have no quote, apostrophe, slash or backslash: a vector
    // pass then settles them, and the rest go byte by byte.
    match span_scan::scan(text, start) {
        Scan::Span(span) => Some(span),
        Scan::NoSpan => None,
        Scan::Unsure => careful_span(text, start),
    }
}

/// [`type_span`] byte by byte, for types with strings (or doubtful bytes).
pub(super) fn careful_span(text: &[u8], start: usize) -> Option<TypeSpan> {
    let mut depth = 0u32;
    let mut lines = 0u32;
    let mut refers = false;
    let mut i = start;
    loop {
        i += text
            .get(i..)?
            .iter()
            .position(|&c| CLASS[c as usize] != 0)?;
        let c = text[i];
        match CLASS[c as usize] {
            LBRACE => depth += 1,
            RBRACE => depth = depth.checked_sub(1)?,
            SEMI if depth == 0 => {
                return Some(TypeSpan {
                    end: i,
                    lines,
                    refers,
                })
            }
            NEWLINE => lines += 1,
            QUOTE => {
                let body = text.get(i + 1..)?;
                let close = memchr(b'"', body)?;
                if memchr(b'\\', &body[..close]).is_some() {
                    return None;
                }
                lines += memchr_iter(b'\n', &body[..close]).count() as u32;
                i += close + 1;
            }
            DOUBT => return None,
            REFER | V => refers |= refers_at(text, i),
            _ => {}
        }
        i += 1;
    }
}

/// An `event` block read by [`event_block`].
#[derive(Debug, Default, PartialEq)]
pub(crate) struct FastEvent<'a> {
    pub name: &'a str,
    pub id: Option<u64>,
    pub stream_id: Option<u64>,
    pub loglevel: Option<i64>,
    /// Its `key := type;` entries (`types[..ntypes]`): key, byte offset
    /// right after `:=`, the line there, and the offset of its `;`.
    pub types: [(&'a str, u32, u32, u32); 2],
    pub ntypes: usize,
    /// Byte offset after the block's final `;`, and the line there.
    pub end: usize,
    pub end_line: u32,
}

/// Reads an `event` block laid out exactly as LTTng's kernel tracer writes
/// them, from byte `pos` (just after its `{`, on `line`): a name, an id, a
/// stream id and fields, one per line, tab-indented. Byte comparisons
/// only; `None` for any other layout ([`event_block`] then tries).
pub(crate) fn lttng_event_block(text: &str, pos: usize, line: u32) -> Option<FastEvent<'_>> {
    let b = text.as_bytes();
    let mut i = pos;
    let expect = |i: &mut usize, lit: &[u8]| -> Option<()> {
        b.get(*i..)?.starts_with(lit).then(|| *i += lit.len())
    };
    expect(&mut i, b"\n\tname = \"")?;
    // One search: the name ends at a quote with no backslash or newline
    // before it.
    let close = memchr3(b'"', b'\\', b'\n', b.get(i..)?)?;
    if b[i + close] != b'"' {
        return None;
    }
    let name = text.get(i..i + close)?;
    i += close;
    expect(&mut i, b"\";\n\tid = ")?;
    let id = plain_decimal(b, &mut i)?;
    expect(&mut i, b";\n\tstream_id = ")?;
    let stream_id = plain_decimal(b, &mut i)?;
    expect(&mut i, b";\n\tfields :=")?;
    let at = i;
    let span = type_span(b, at)?;
    if span.refers {
        return None;
    }
    i = span.end;
    expect(&mut i, b";\n};")?;
    let fields_line = line + 4;
    Some(FastEvent {
        name,
        id: Some(id),
        stream_id: Some(stream_id),
        loglevel: None,
        types: [
            (
                "fields",
                u32::try_from(at).ok()?,
                fields_line,
                u32::try_from(span.end).ok()?,
            ),
            ("", 0, 0, 0),
        ],
        ntypes: 1,
        end: i,
        end_line: fields_line + span.lines + 1,
    })
}

/// A decimal integer literal at `*i` the way the lexer reads plain ones
/// (digits only, no leading zero, no suffix), that fits 64 bits; `*i` moves
/// past it.
fn plain_decimal(b: &[u8], i: &mut usize) -> Option<u64> {
    let rest = b.get(*i..)?;
    // Digits, then a byte that cannot continue the word: a word with other
    // characters is no plain number.
    let mut value = 0u64;
    let mut n = 0;
    while let Some(&d) = rest.get(n).filter(|d| d.is_ascii_digit()) {
        value = value.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
        n += 1;
    }
    let plain = matches!(n, 1..=18)
        && rest.get(n).is_none_or(|&c| LEX[c as usize] != WORD)
        && (n == 1 || rest[0] != b'0');
    if !plain {
        return None;
    }
    *i += n;
    Some(value)
}

/// Reads an `event` block the way LTTng writes them, from byte `pos` (just
/// after its `{`, on `line`) without the lexer: `name = "..."`, `id`,
/// `stream_id` and `loglevel` with plain decimal values, and up to two
/// types that [`type_span`] delimits and finds referring to no other field
/// by themselves, between blanks. `None` for anything else (comments, escapes, other keys, other
/// spellings): the parser then reads the block itself, with the same
/// result.
pub(crate) fn event_block<'a>(text: &'a str, pos: usize, line: u32) -> Option<FastEvent<'a>> {
    let b = text.as_bytes();
    let mut ev = FastEvent {
        end_line: line,
        ..FastEvent::default()
    };
    let mut named = false;
    let mut i = pos;
    // Steps over blanks and newlines, counting these.
    let blanks = |i: &mut usize, line: &mut u32| {
        let rest = b.get(*i..).unwrap_or(&[]);
        let n = rest
            .iter()
            .position(|&c| LEX[c as usize] != BLANK && c != b'\n')
            .unwrap_or(rest.len());
        *line += rest[..n].iter().filter(|&&c| c == b'\n').count() as u32;
        *i += n;
    };
    loop {
        blanks(&mut i, &mut ev.end_line);
        let start = i;
        let rest = b.get(i..)?;
        let n = rest
            .iter()
            .position(|&c| LEX[c as usize] != WORD)
            .unwrap_or(rest.len());
        i += n;
        if n == 0 {
            // Not a key: the block's end, or something for the parser.
            if rest.first() != Some(&b'}') {
                return None;
            }
            i += 1;
            blanks(&mut i, &mut ev.end_line);
            if b.get(i) != Some(&b';') || !named {
                return None;
            }
            ev.end = i + 1;
            return Some(ev);
        }
        let key = &rest[..n];
        if key[0].is_ascii_digit() {
            return None;
        }
        blanks(&mut i, &mut ev.end_line);
        match b.get(i) {
            Some(b'=') => {
                i += 1;
                blanks(&mut i, &mut ev.end_line);
                if key == b"name" {
                    if b.get(i) != Some(&b'"') {
                        return None;
                    }
                    let body = b.get(i + 1..)?;
                    let close = memchr(b'"', body)?;
                    if memchr2(b'\\', b'\n', &body[..close]).is_some() {
                        return None;
                    }
                    ev.name = text.get(i + 1..i + 1 + close)?;
                    named = true;
                    i += close + 2;
                } else {
                    let v = plain_decimal(b, &mut i)?;
                    match key {
                        b"id" => ev.id = Some(v),
                        b"stream_id" => ev.stream_id = Some(v),
                        b"loglevel" => ev.loglevel = Some(v as i64),
                        _ => return None,
                    }
                }
            }
            Some(b':') if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                let span = type_span(b, i)?;
                if span.refers || ev.ntypes == ev.types.len() {
                    return None;
                }
                let key = text.get(start..start + key.len())?;
                ev.types[ev.ntypes] = (
                    key,
                    u32::try_from(i).ok()?,
                    ev.end_line,
                    u32::try_from(span.end).ok()?,
                );
                ev.ntypes += 1;
                ev.end_line += span.lines;
                i = span.end;
            }
            _ => return None,
        }
        blanks(&mut i, &mut ev.end_line);
        if b.get(i) != Some(&b';') {
            return None;
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::type_span;

    use super::super::span_scan::{tests::scan_all, Scan};
    use super::{careful_span, TypeSpan};
    use memchr::{memchr, memchr2, memchr3, memchr_iter};
    use proptest::prelude::*;

    /// `type_span` as it was before the vector scan (memchr per brace,
    /// then a pass per doubtful kind of byte): the oracle the scan must
    /// agree with.
    fn old_type_span(text: &[u8], start: usize) -> Option<TypeSpan> {
        // Most types have no quote, apostrophe, slash or backslash: then only
        // their braces and `;` need a look, and vector searches find them.
        if let Some(end) = braces_end(text, start) {
            let span = &text[start..end];
            if memchr3(b'"', b'\'', b'/', span).is_none() {
                // A `[` followed by a number is a fixed array, which
                // refers to nothing.
                let sequence = |i: usize| {
                    let next = span[i + 1..].iter().find(|c| !b" \t\n\r\x0c".contains(c));
                    !next.is_some_and(|c| c.is_ascii_digit())
                };
                let refers = match memchr3(b'\\', b'[', b'<', span) {
                    Some(p) if span[p] == b'\\' => None,
                    Some(_) if memchr(b'\\', span).is_some() => None,
                    _ => Some(
                        memchr(b'<', span).is_some()
                            || memchr_iter(b'[', span).any(sequence)
                            || memchr_iter(b'v', span).any(|i| span[i..].starts_with(b"variant")),
                    ),
                };
                if let Some(refers) = refers {
                    return Some(TypeSpan {
                        end,
                        lines: memchr_iter(b'\n', span).count() as u32,
                        refers,
                    });
                }
            }
        }
        super::careful_span(text, start)
    }

    /// The first `;` outside braces, looking only at braces and `;`: right when
    /// the type has no quote, apostrophe, slash or backslash before it.
    fn braces_end(text: &[u8], start: usize) -> Option<usize> {
        let mut depth = 0u32;
        let mut i = start;
        loop {
            let rest = text.get(i..)?;
            // Inside braces a `;` ends a field, not the type.
            let j = if depth == 0 {
                memchr3(b'{', b'}', b';', rest)?
            } else {
                memchr2(b'{', b'}', rest)?
            };
            let at = i + j;
            match text[at] {
                b'{' => depth += 1,
                b'}' => depth = depth.checked_sub(1)?,
                _ => return Some(at),
            }
            i = at + 1;
        }
    }

    /// Checks every scan (each classifier, and [`type_span`]) against the
    /// oracle at byte `start` of `text`; returns the scans' answer.
    fn agrees(text: &[u8], start: usize) -> Scan {
        let want = old_type_span(text, start);
        assert_eq!(type_span(text, start), want, "type_span at {start}");
        assert_eq!(careful_span(text, start), want, "careful_span at {start}");
        let all = scan_all(text, start);
        for s in &all {
            match *s {
                Scan::Span(span) => assert_eq!(Some(span), want, "scan at {start}"),
                Scan::NoSpan => assert_eq!(want, None, "scan at {start}"),
                Scan::Unsure => {
                    // Only a byte it leaves to the careful reader, before the
                    // end, makes the scan unsure.
                    let stop = want.map_or(text.len(), |w| w.end);
                    assert!(
                        memchr2(b'"', b'\'', &text[start..stop]).is_some()
                            || memchr2(b'/', b'\\', &text[start..stop]).is_some()
                            || want.is_none(),
                        "unsure at {start} without cause"
                    );
                }
            }
        }
        assert!(
            all.windows(2).all(|w| w[0] == w[1]),
            "classifiers differ at {start}"
        );
        all[0]
    }

    /// Pieces of TSDL-like text, the doubtful ones rarer so that many
    /// inputs reach their end.
    fn piece() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            6 => prop::sample::select(vec![
                "{", "}", ";", "\n", " ", "\t", "[", "<", "v", "x", "_ab", "variant",
                "vari", "va\nriant", "integer { size = 8; align = 8; }", "struct {",
                "} _f;\n", "abcdefghijklmnopqrstuvwxyz0123456789_", "\n\t\t",
            ]),
            1 => prop::sample::select(vec![
                "\"", "\"a;}{\"", "\"x\n[v\"", "\"e\\\"\"", "'", "/", "/* } */", "// ;\n",
                "\\",
            ]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
        /// At every offset of random TSDL-like text (so around every block
        /// boundary), the scans agree with the oracle.
        #[test]
        fn scan_agrees_with_the_byte_by_byte_oracle(
            pieces in prop::collection::vec(piece(), 0..48),
            pad in 0usize..40,
        ) {
            let text = format!("{}{}", " ".repeat(pad), pieces.concat());
            for start in 0..=text.len() + 1 {
                agrees(text.as_bytes(), start);
            }
        }
    }

    /// Every type after a `:=` in the shared real traces' metadata, and
    /// every 13th offset, give the same answer as the oracle; the types of
    /// events are settled by the vector scan itself.
    #[test]
    fn scan_agrees_on_real_metadata() {
        let texts: Vec<String> = super::super::shared_metadata("scan_agrees_on_real_metadata")
            .iter()
            .map(|b| super::super::metadata_text(b).unwrap())
            .collect();
        if texts.is_empty() {
            return;
        }
        let mut spans = 0;
        for text in &texts {
            let b = text.as_bytes();
            for at in memchr::memmem::find_iter(b, b":=") {
                if let Scan::Span(_) = agrees(b, at + 2) {
                    spans += 1;
                }
            }
            for start in (0..b.len()).step_by(13) {
                agrees(b, start);
            }
        }
        // tc-many-threads alone declares 1 181 events.
        assert!(spans > 1181, "only {spans} types settled by the scan");
    }

    fn end(s: &str) -> Option<(usize, u32)> {
        type_span(s.as_bytes(), 0).map(|t| (t.end, t.lines))
    }

    #[test]
    fn reads_lttng_event_blocks_and_leaves_the_rest() {
        let text = "event {\n\tname = \"sched_switch\";\n\tid = 3;\n\tstream_id = 0;\n\tfields := struct {\n\t\tinteger { size = 8; } _a;\n\t};\n};\nrest";
        let pos = text.find('{').unwrap() + 1;
        let ev = super::event_block(text, pos, 1).unwrap();
        assert_eq!(
            super::lttng_event_block(text, pos, 1),
            Some(super::event_block(text, pos, 1).unwrap())
        );
        let other_layout = text.replace("\tid", "  id");
        assert!(super::lttng_event_block(&other_layout, pos, 1).is_none());
        assert!(super::event_block(&other_layout, pos, 1).is_some());
        assert_eq!(
            (ev.name, ev.id, ev.stream_id, ev.loglevel),
            ("sched_switch", Some(3), Some(0), None)
        );
        assert_eq!(ev.ntypes, 1);
        let (key, at, line, end) = ev.types[0];
        assert_eq!(&text[end as usize..end as usize + 2], ";\n");
        assert_eq!((key, line), ("fields", 5));
        assert!(text[at as usize..].starts_with(" struct {"));
        assert_eq!((&text[ev.end..], ev.end_line), ("\nrest", 8));
        for other in [
            "event { name = \"a\\\"\"; id = 1; };",
            "event { name = a; id = 1; };",
            "event { name = \"a\"; id = 0x1; };",
            "event { name = \"a\"; id = 01; };",
            "event { name = \"a\"; id = 1; /* c */ };",
            "event { name = \"a\"; model.emf.uri = \"x\"; };",
            "event { id = 1; };",
            "event { name = \"a\"; id = 1; }",
            "event { name = \"a\"; loglevel = -1; };",
        ] {
            let pos = other.find('{').unwrap() + 1;
            assert!(super::event_block(other, pos, 1).is_none(), "{other}");
        }
    }

    #[test]
    fn plain_decimals_are_digits_without_a_leading_zero_or_suffix() {
        let read = |s: &str| {
            let mut i = 0;
            super::plain_decimal(s.as_bytes(), &mut i).map(|v| (v, i))
        };
        assert_eq!(read("0;"), Some((0, 1)));
        assert_eq!(read("4071 "), Some((4071, 4)));
        assert_eq!(read("123456789012345678"), Some((123456789012345678, 18)));
        for bad in [
            "",
            ";",
            "01",
            "0x1",
            "12u",
            "1_",
            "1234567890123456789",
            "-1",
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
    }

    #[test]
    fn finds_the_semicolon_outside_braces() {
        let s = " struct {\n integer { size = 8; } _a;\n struct { x_t b; } _c;\n}; next";
        let (e, lines) = end(s).unwrap();
        assert_eq!(&s[e..], "; next");
        assert_eq!(lines, 3);
        assert_eq!(end(" uint32_t; x"), Some((9, 0)));
        let refers = |s: &str| type_span(s.as_bytes(), 0).unwrap().refers;
        assert!(!refers(" struct { vint_t a; string v; };"));
        assert!(!refers(" struct { t a[2]; t b[ 0x10 ]; };"));
        for s in [
            " struct { t a[2]; t n; t s[n]; };",
            " struct { t n; t s[ n ]; };",
            " struct { variant v x; };",
            " variant <t> { t a; };",
        ] {
            assert!(refers(s), "{s}");
        }
    }

    #[test]
    fn strings_are_skipped_and_doubtful_text_gives_up() {
        let s = " enum : x { \"a;}\" = 1, b } ; y";
        let (e, _) = end(s).unwrap();
        assert_eq!(&s[e..], "; y");
        for doubtful in [
            " struct { /* } */ x a; };",
            " struct { x a; } // ;\n;",
            " enum : x { \"a\\\";\" = 1 };",
            " enum : x { a = ';' };",
            " struct { x a; }} ;",
            " struct { x a; ",
            " x",
        ] {
            assert_eq!(end(doubtful), None, "{doubtful}");
        }
    }
}
