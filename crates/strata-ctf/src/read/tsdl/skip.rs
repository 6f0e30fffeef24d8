//! Finding where a type ends in TSDL text without parsing it, so that the
//! types of an event can wait until its class is first used: LTTng kernel
//! metadata declares over a thousand events and a trace uses a few dozen.

use memchr::{memchr, memchr2, memchr_iter};

/// What [`type_span`] found of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TypeSpan {
    /// Index of the `;` that closes the type (the first outside braces).
    pub end: usize,
    /// Newlines before it.
    pub lines: u32,
    /// Whether the type may refer to another field: it has a `[` (sequence
    /// or array), a `<` (variant tag) or the word `variant`.
    pub refers: bool,
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

/// Where the type that starts at byte `start` of `text` ends, in one pass
/// over its bytes without the lexer. `None` when the scan cannot be sure
/// the lexer would find the same `;`: a comment, a character literal, a
/// backslash, a `}` closing more than the type opened, or the end of the
/// text. String literals are stepped over the way the lexer reads them (to
/// the next quote, when no backslash comes before it). The caller then
/// parses the type at once, as if nothing was deferred.
pub(crate) fn type_span(text: &[u8], start: usize) -> Option<TypeSpan> {
    let mut depth = 0u32;
    let mut lines = 0u32;
    let mut refers = false;
    let mut i = start;
    loop {
        while text.get(i).is_some_and(|&c| CLASS[c as usize] == 0) {
            i += 1;
        }
        let c = *text.get(i)?;
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
            REFER => refers = true,
            V => refers |= text[i..].starts_with(b"variant"),
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
    /// Its `key := type;` entries: key, byte offset right after `:=`, and
    /// the line there.
    pub types: Vec<(&'a str, u32, u32)>,
    /// Byte offset after the block's final `;`, and the line there.
    pub end: usize,
    pub end_line: u32,
}

/// Reads an `event` block the way LTTng writes them, from byte `pos` (just
/// after its `{`, on `line`) without the lexer: `name = "..."`, `id`,
/// `stream_id` and `loglevel` with plain decimal values, and types that
/// [`type_span`] delimits, that refer to no other field and that `defer`
/// accepts (it checks for type names that may), between blanks. `None` for
/// anything else (comments, escapes, other keys, other spellings): the
/// parser then reads the block itself, with the same result.
pub(crate) fn event_block<'a>(
    text: &'a str,
    pos: usize,
    line: u32,
    defer: impl Fn(&[u8]) -> bool,
) -> Option<FastEvent<'a>> {
    let b = text.as_bytes();
    let mut ev = FastEvent {
        end_line: line,
        ..FastEvent::default()
    };
    let mut named = false;
    let mut i = pos;
    let blanks = |i: &mut usize, line: &mut u32| {
        while let Some(&c) = b.get(*i) {
            match c {
                b' ' | b'\t' | b'\r' | 0x0b | 0x0c | 0 => {}
                b'\n' => *line += 1,
                _ => return,
            }
            *i += 1;
        }
    };
    loop {
        blanks(&mut i, &mut ev.end_line);
        let start = i;
        while b
            .get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            i += 1;
        }
        if i == start {
            // Not a key: the block's end, or something for the parser.
            if b.get(i) != Some(&b'}') {
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
        if b[start].is_ascii_digit() {
            return None;
        }
        let key = text.get(start..i)?;
        blanks(&mut i, &mut ev.end_line);
        match b.get(i) {
            Some(b'=') => {
                i += 1;
                blanks(&mut i, &mut ev.end_line);
                if key == "name" {
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
                    let d = i;
                    while b.get(i).is_some_and(u8::is_ascii_digit) {
                        i += 1;
                    }
                    let digits = text.get(d..i)?;
                    let plain = !digits.is_empty()
                        && digits.len() <= 18
                        && (digits == "0" || !digits.starts_with('0'))
                        && !b
                            .get(i)
                            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
                    if !plain {
                        return None;
                    }
                    let v: u64 = digits.parse().ok()?;
                    match key {
                        "id" => ev.id = Some(v),
                        "stream_id" => ev.stream_id = Some(v),
                        "loglevel" => ev.loglevel = Some(v as i64),
                        _ => return None,
                    }
                }
            }
            Some(b':') if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                let span = type_span(b, i)?;
                if span.refers || !defer(b.get(i..span.end)?) {
                    return None;
                }
                ev.types.push((key, u32::try_from(i).ok()?, ev.end_line));
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

    fn end(s: &str) -> Option<(usize, u32)> {
        type_span(s.as_bytes(), 0).map(|t| (t.end, t.lines))
    }

    #[test]
    fn reads_lttng_event_blocks_and_leaves_the_rest() {
        let text = "event {\n\tname = \"sched_switch\";\n\tid = 3;\n\tstream_id = 0;\n\tfields := struct {\n\t\tinteger { size = 8; } _a;\n\t};\n};\nrest";
        let pos = text.find('{').unwrap() + 1;
        let ev = super::event_block(text, pos, 1, |_| true).unwrap();
        assert_eq!(
            (ev.name, ev.id, ev.stream_id, ev.loglevel),
            ("sched_switch", Some(3), Some(0), None)
        );
        assert_eq!(ev.types.len(), 1);
        let (key, at, line) = ev.types[0];
        assert_eq!((key, line), ("fields", 5));
        assert!(text[at as usize..].starts_with(" struct {"));
        assert_eq!((&text[ev.end..], ev.end_line), ("\nrest", 8));
        assert!(super::event_block(text, pos, 1, |_| false).is_none());
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
            assert!(
                super::event_block(other, pos, 1, |_| true).is_none(),
                "{other}"
            );
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
        for s in [
            " struct { t a[2]; };",
            " struct { t n; t s[n]; };",
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
