//! The layout of an event's payload read straight from its deferred text,
//! when LTTng writes it the most common way: a struct of integers (and
//! fixed arrays of them) whose bodies the integer cache already knows.
//!
//! Locating such an event needs only its payload's size and alignment.
//! Reading them here, at the class's first event, spares the parse into
//! types and the compile of field accessors that no reader may ever ask
//! for (a decode that reads timestamps and class names asks for none).

use super::lexer::{CLASS, WORD};
use super::parser::{lttng_member, SharedInts};

/// A payload of fixed layout: its alignment and size, in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedFields {
    pub align: u32,
    pub bits: u64,
}

/// Longest fixed array taken: the parser's own bound on array lengths is
/// far larger, and a huge one is left to it (its size may not fit).
const MAX_LEN: u64 = 1 << 16;

/// The layout of `text`, a `fields` type as written after `:=` (up to its
/// `;`), if it is a non-empty `struct { ... }` of `integer { BODY } _name;`
/// and `integer { BODY } _name[N];` members only, each written as the
/// parser reads by bytes (`parser::lttng_member`) with `BODY` in `ints`,
/// and blanks between them. `None` for anything else, which the parser
/// then reads: never a different layout than the parse and compile would
/// give.
pub(crate) fn fixed_fields(text: &[u8], ints: &SharedInts) -> Option<FixedFields> {
    let text = std::str::from_utf8(text).ok()?;
    let b = text.as_bytes();
    let blanks = |i: usize| {
        i + b[i..]
            .iter()
            .take_while(|&&c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
            .count()
    };
    let word_end = |i: usize| i + b[i..].iter().take_while(|&&c| is_word(c)).count();
    let mut i = blanks(0);
    let end = word_end(i);
    if &text[i..end] != "struct" {
        return None;
    }
    i = blanks(end);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let (mut align, mut bits, mut members) = (1u32, 0u64, 0usize);
    loop {
        i = blanks(i);
        if b.get(i) == Some(&b'}') {
            i += 1;
            break;
        }
        let kw_end = word_end(i);
        let m = lttng_member(text, &text[i..kw_end], kw_end)?;
        let (int, _) = ints.get(m.int_body?)?;
        let a = int.align.max(1);
        let size = u64::from(int.size);
        let field = match m.len {
            None => size,
            Some(0) => 0,
            Some(n) if n > MAX_LEN => return None,
            Some(n) => align_up(size, a)?.checked_mul(n - 1)?.checked_add(size)?,
        };
        bits = align_up(bits, a)?.checked_add(field)?;
        align = align.max(a);
        members += 1;
        i = m.end;
    }
    (blanks(i) == text.len() && members > 0).then_some(FixedFields { align, bits })
}

/// `v` rounded up to a multiple of `a`, a power of two (`plan::align_up`,
/// checked).
fn align_up(v: u64, a: u32) -> Option<u64> {
    let m = u64::from(a) - 1;
    Some(v.checked_add(m)? & !m)
}

/// Whether the lexer reads `c` as part of a word.
fn is_word(c: u8) -> bool {
    CLASS[c as usize] == WORD
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::tsdl::model::{ByteOrder, Encoding, IntType};
    use proptest::prelude::*;

    const B32: &str = " size = 32; align = 8; signed = 1; encoding = none; base = 10; ";
    const B64: &str = " size = 64; align = 64; signed = 0; encoding = none; base = 16; ";

    fn ints() -> SharedInts {
        let int = |size, align| IntType {
            size,
            align,
            signed: false,
            byte_order: ByteOrder::Native,
            base: 10,
            encoding: Encoding::None,
            map: None,
        };
        let mut m = SharedInts::default();
        m.insert(B32.into(), (int(32, 8), 0));
        m.insert(B64.into(), (int(64, 64), 0));
        m
    }

    fn layout(text: &str) -> Option<(u32, u64)> {
        fixed_fields(text.as_bytes(), &ints()).map(|f| (f.align, f.bits))
    }

    #[test]
    fn lttng_structs_of_known_integers_are_laid_out() {
        let t = format!(
            " struct {{\n\t\tinteger {{{B32}}} _fd;\n\t\tinteger {{{B64}}} _buf;\n\t\tinteger {{{B32}}} _v[3];\n\t}}"
        );
        // 32 bits, padded to 64, 64 bits, then 3 x 32.
        assert_eq!(layout(&t), Some((64, 64 + 64 + 96)));
        assert_eq!(
            layout(&format!("struct {{ integer {{{B32}}} _x[0]; }}")),
            Some((8, 0))
        );
    }

    #[test]
    fn anything_else_is_left_to_the_parser() {
        for t in [
            "struct { }".to_string(),
            format!("struct {{ integer {{{B32}}} _a; string _s; }}"),
            "struct { integer { size = 16; align = 8; } _a; }".to_string(),
            format!("struct {{ integer {{{B32}}} a; }}"),
            format!("struct {{ integer {{{B32}}} _a[03]; }}"),
            format!("struct {{ integer {{{B32}}} _a [3]; }}"),
            format!("struct {{ integer {{{B32}}} _a[_n]; }}"),
            format!("struct {{ integer {{{B32}}} _a[65537]; }}"),
            format!("struct {{ integer {{{B32}}} _a; }} align(64)"),
            format!("struct {{ /* c */ integer {{{B32}}} _a; }}"),
            format!("structx {{ integer {{{B32}}} _a; }}"),
            format!("struct {{ integer {{{B32}}} _a; "),
            format!("struct {{ integer {{{B32}}} _a }}"),
        ] {
            assert_eq!(layout(&t), None, "{t}");
        }
    }

    proptest! {
        /// Any text, or a valid one cut or with a byte changed anywhere,
        /// is read without a panic; a change it still takes keeps a layout
        /// the arithmetic allows.
        #[test]
        fn any_text_is_read_without_a_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..200),
            cut in 0usize..120,
            at in 0usize..120,
            byte in any::<u8>(),
        ) {
            let _ = fixed_fields(&bytes, &ints());
            let mut t = format!("struct {{ integer {{{B32}}} _a[4]; integer {{{B64}}} _b; }}").into_bytes();
            t.truncate(cut.max(1));
            let _ = fixed_fields(&t, &ints());
            let mut t = format!("struct {{ integer {{{B32}}} _a[4]; integer {{{B64}}} _b; }}").into_bytes();
            let i = at % t.len();
            t[i] = byte;
            if let Some(f) = fixed_fields(&t, &ints()) {
                prop_assert!(f.bits <= 64 * 4 + 64 + 64 * 10 && f.align <= 64);
            }
        }
    }
}
