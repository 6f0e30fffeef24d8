//! A lazy parse of packetized metadata read where its packet bodies lie,
//! without putting the whole text together: the declarations before the
//! first event block (a few KB) are copied and parsed as usual, and the
//! event blocks LTTng writes after them (over a thousand, most of the
//! text) are read by the byte scans of [`super::skip`] in the bodies
//! themselves, or in a small window put together where a block crosses a
//! seam between packets. The few blocks the scans leave (arrays,
//! sequences, comments) are parsed alone, from a window that ends where
//! the block does, by the parser. Positions and lines are those of the
//! whole text, so the deferred types are read from the bodies later.
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

/// How LTTng ends an event block.
const BLOCK_END: &[u8] = b"\n};";
/// Length of `event {`, the end of [`NEXT_EVENT`].
const EVENT_BRACE: usize = NEXT_EVENT.len() - 2;

/// A packet body's text, and its offset in the whole text.
#[derive(Clone, Copy)]
struct Body<'a> {
    text: &'a str,
    virt: usize,
}

/// What reading event blocks in place needs: the text, its bodies, the
/// searchers (built once) and a buffer for windows across seams.
struct Reader<'s> {
    split: &'s Split,
    bodies: Vec<Body<'s>>,
    next_event: Finder<'static>,
    block_end: Finder<'static>,
    scratch: Vec<u8>,
}

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
    let bodies: Vec<Body> = (0..split.piece_count())
        .map(|i| {
            let (b, virt) = split.piece(i);
            Some(Body {
                text: std::str::from_utf8(b).ok()?,
                virt,
            })
        })
        .collect::<Option<_>>()?;
    let mut r = Reader {
        split,
        bodies,
        next_event: Finder::new(NEXT_EVENT),
        block_end: Finder::new(BLOCK_END),
        scratch: Vec::new(),
    };
    let m = split.find_from(&r.next_event, 0, &mut r.scratch)?;
    let head = split.text(0..m)?;
    let mut p = Parser::new(&head);
    p.start_lazy(total);
    // A head that does not parse (one cut inside a comment, a string or a
    // block) is left to the whole parse.
    p.parse_all().ok()?;
    let mut line = 1 + memchr_iter(b'\n', head.as_bytes()).count() as u32 + 2;
    let mut pos = m + NEXT_EVENT.len();
    // The body that holds `pos`: blocks come in order.
    let mut i = split.locate(pos);
    loop {
        while r.bodies.get(i + 1).is_some_and(|b| b.virt <= pos) {
            i += 1;
        }
        let (end, end_line) = r.read_block(i, &mut p, pos, line)?;
        let body = r.bodies[i];
        let next = match body.text.as_bytes().get(end.wrapping_sub(body.virt)..) {
            Some(rest) if rest.len() >= NEXT_EVENT.len() => rest.starts_with(NEXT_EVENT),
            _ => split.starts_with(end, NEXT_EVENT),
        };
        if next {
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
        |f, hit| split.find_all(f, &mut r.scratch, hit),
        |pos, end| {
            let text = split.text(pos as usize..end as usize + 1)?;
            Some((text, pos))
        },
    )
    .ok()
}

impl Reader<'_> {
    /// Reads the event block whose text starts at `pos` (after its `{`, on
    /// `line`) into `p`: in body `i`, which holds `pos`, when LTTng's layout scan
    /// takes the block there, else in a window from its `event` to the next
    /// `\n};` (how LTTng ends its blocks), with the scans or else the parser,
    /// and failing that in a window up to the next blank line and `event {`.
    /// Returns the offset after the block and the line there; `None` when the
    /// block does not parse alone.
    fn read_block(
        &mut self,
        i: usize,
        p: &mut Parser<'_>,
        pos: usize,
        line: u32,
    ) -> Option<(usize, u32)> {
        let split = self.split;
        // A scan that takes a block read nothing past its end, so it reads the
        // same from a text cut there; one that does not take a block does not
        // take it from a shorter text either.
        let Body { text: body, virt } = *self.bodies.get(i)?;
        if pos < split.len() {
            if let Some(ev) = skip::lttng_event_block(body, pos - virt, line) {
                p.add_fast_event(&ev, line, u32::try_from(virt).ok()?)
                    .ok()?;
                return Some((virt + ev.end, ev.end_line));
            }
        }
        let kw = pos.checked_sub(EVENT_BRACE)?;
        let shift = u32::try_from(kw).ok()?;
        let body_end = virt + body.len();
        let lttng_end = split
            .find_from(&self.block_end, pos, &mut self.scratch)
            .map(|e| e + BLOCK_END.len());
        // The window to LTTng's block end, then (if that one does not hold the
        // block alone) the one to the next block.
        let mut window_end = lttng_end;
        loop {
            let end = match window_end {
                Some(e) => e,
                None => split
                    .find_from(&self.next_event, pos, &mut self.scratch)
                    .unwrap_or(split.len()),
            };
            let text = if kw >= virt && end <= body_end {
                let text = body.get(kw - virt..end - virt)?;
                // LTTng's layout scan failed on the whole body, so on this
                // text too.
                if let Some(ev) = skip::event_block(text, EVENT_BRACE, line) {
                    p.add_fast_event(&ev, line, shift).ok()?;
                    return Some((kw + ev.end, ev.end_line));
                }
                text
            } else {
                self.scratch.clear();
                split.copy_into(kw..end, &mut self.scratch);
                let text = std::str::from_utf8(&self.scratch).ok()?;
                let scan = skip::lttng_event_block(text, EVENT_BRACE, line)
                    .or_else(|| skip::event_block(text, EVENT_BRACE, line));
                if let Some(ev) = scan {
                    p.add_fast_event(&ev, line, shift).ok()?;
                    return Some((kw + ev.end, ev.end_line));
                }
                text
            };
            if let Some(end_line) = p.add_event_block(text, line, shift) {
                return Some((end, end_line));
            }
            window_end = match window_end {
                Some(_) => None,
                None => return None,
            };
        }
    }
}
