//! A lazy parse of packetized metadata read where its packet bodies lie,
//! without putting the whole text together: the declarations before the
//! first event block (a few KB) are copied and parsed as usual, and the
//! event blocks LTTng writes after them (over a thousand, most of the
//! text) are read by the byte scans of [`super::skip`] in the bodies
//! themselves, or in a small window put together where a block crosses a
//! seam between packets.
//!
//! It gives up (`None`) on whatever it does not handle the same way as
//! the parse of the whole text: the caller then does that parse, so
//! results and errors never depend on which way was taken.

use memchr::memchr_iter;
use memchr::memmem::Finder;

use super::lexer::{BLANK, CLASS};
use super::parser::{Lazy, Parser, NEXT_EVENT};
use super::skip;
use super::split::Split;

/// Length of `event {`, the end of [`NEXT_EVENT`].
const EVENT_BRACE: usize = NEXT_EVENT.len() - 2;

/// Parses `split` lazily as [`Parser::parse_lazy`] would parse the whole
/// text, or `None` when the text is not laid out as this reads it (or is
/// wrong: the whole parse then tells what and where).
pub(super) fn parse_lazy(split: &Split) -> Option<Lazy> {
    let total = split.len();
    if total >= u32::MAX as usize {
        return None;
    }
    // The scans read text: each body must be UTF-8 on its own (cut between
    // characters), so that their concatenation is too, at the same offsets.
    let bodies: Vec<&str> = (0..split.piece_count())
        .map(|i| std::str::from_utf8(split.piece(i).0).ok())
        .collect::<Option<_>>()?;
    let mut scratch = Vec::new();
    let mut first = None;
    let next_event = Finder::new(NEXT_EVENT);
    split.find_each(&next_event, 0, &mut scratch, |p| {
        first = Some(p);
        false
    });
    let m = first?;
    let head = split.text(0..m)?;
    let mut p = Parser::new(&head);
    p.start_lazy(total);
    // A head that does not parse (one cut inside a comment, a string or a
    // block) is left to the whole parse.
    p.parse_all().ok()?;
    let mut line = 1 + memchr_iter(b'\n', head.as_bytes()).count() as u32 + 2;
    let mut pos = m + NEXT_EVENT.len();
    loop {
        let (end, end_line) =
            read_block(split, &bodies, &next_event, &mut scratch, &mut p, pos, line)?;
        if split.starts_with(end, NEXT_EVENT) {
            pos = end + NEXT_EVENT.len();
            line = end_line + 2;
            continue;
        }
        // Only blanks may follow the last block: anything else (another
        // block, a declaration, a comment) is for the whole parse.
        if !split.all(end..total, |c| c == b'\n' || CLASS[c as usize] == BLANK) {
            return None;
        }
        break;
    }
    p.finish_lazy(
        |f, hit| {
            split.find_each(f, 0, &mut scratch, |v| {
                hit(v);
                true
            })
        },
        |pos, end| {
            let text = split.text(pos as usize..end as usize + 1)?;
            Some((text, pos))
        },
    )
    .ok()
}

/// Reads the event block whose text starts at `pos` (after its `{`, on
/// `line`) into `p`: in the body that holds `pos` when a byte scan takes
/// the block there, else in a window from its `event` to the next blank
/// line and `event {` (or the end), with the scans or else the parser.
/// Returns the offset after the block and the line there; `None` when the
/// window holds more than the block or the block does not parse.
fn read_block(
    split: &Split,
    bodies: &[&str],
    next_event: &Finder<'_>,
    scratch: &mut Vec<u8>,
    p: &mut Parser<'_>,
    pos: usize,
    line: u32,
) -> Option<(usize, u32)> {
    fn scan(text: &str, at: usize, line: u32) -> Option<skip::FastEvent<'_>> {
        skip::lttng_event_block(text, at, line).or_else(|| skip::event_block(text, at, line))
    }
    // A scan that takes a block read nothing past its end, so it reads the
    // same from a text cut there.
    if pos < split.len() {
        let i = split.locate(pos);
        let (_, virt) = split.piece(i);
        if let Some(ev) = scan(bodies.get(i)?, pos - virt, line) {
            p.add_fast_event(&ev, line, u32::try_from(virt).ok()?)
                .ok()?;
            return Some((virt + ev.end, ev.end_line));
        }
    }
    let mut end = split.len();
    split.find_each(next_event, pos, scratch, |q| {
        end = q;
        false
    });
    let kw = pos.checked_sub(EVENT_BRACE)?;
    scratch.clear();
    split.copy_into(kw..end, scratch);
    let text = std::str::from_utf8(scratch).ok()?;
    let shift = u32::try_from(kw).ok()?;
    if let Some(ev) = scan(text, EVENT_BRACE, line) {
        p.add_fast_event(&ev, line, shift).ok()?;
        return Some((kw + ev.end, ev.end_line));
    }
    let end_line = p.add_event_block(text, line, shift)?;
    Some((end, end_line))
}
