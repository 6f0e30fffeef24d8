//! Text that lies in pieces of a larger buffer: the packet bodies of
//! packetized metadata, read where they are rather than copied end to end.
//! Offsets here are "virtual": offsets in the text the pieces make when
//! put together, which is what the parser's positions are.

use std::borrow::Cow;
use std::ops::Range;

use memchr::memmem::Finder;

/// The bytes a parse keeps alive to read its text from later: the mapped
/// metadata file, or a buffer.
pub(crate) type Owner = Box<dyn AsRef<[u8]> + Send + Sync>;

/// Where one piece of the text lies.
#[derive(Debug, Clone, Copy)]
struct Piece {
    /// Offset of its first byte in the text.
    virt: usize,
    /// Offset of its first byte in the owner's bytes.
    file: usize,
    len: usize,
}

/// A text made of pieces of an owner's bytes, in order.
pub(crate) struct Split {
    owner: Owner,
    /// Non-empty pieces only, so that each text offset is in exactly one.
    pieces: Vec<Piece>,
    len: usize,
    /// The piece that holds text offset `g << grain`, for each `g`: a
    /// lookup and a step or two find a piece, where a binary search took
    /// a dozen branches for each of the thousands of event types.
    index: Vec<u32>,
    grain: u32,
}

impl std::fmt::Debug for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Split")
            .field("len", &self.len)
            .field("pieces", &self.pieces.len())
            .finish()
    }
}

impl Split {
    /// The text made of `ranges` of `owner`'s bytes, in order. Ranges past
    /// the end of the bytes are cut to it.
    pub(crate) fn new(owner: Owner, ranges: &[Range<usize>]) -> Self {
        let total = (*owner).as_ref().len();
        let mut pieces = Vec::with_capacity(ranges.len());
        let mut virt = 0;
        for r in ranges {
            let (start, end) = (r.start.min(total), r.end.min(total));
            if start < end {
                pieces.push(Piece {
                    virt,
                    file: start,
                    len: end - start,
                });
                virt += end - start;
            }
        }
        // Grains the size of an average piece (a power of two), so that
        // few pieces start in each.
        let avg = virt / pieces.len().max(1);
        let grain = avg.max(1).ilog2();
        let mut index = Vec::with_capacity((virt >> grain) + 1);
        let mut i = 0;
        for g in 0..=(virt >> grain) {
            let v = g << grain;
            while i + 1 < pieces.len() && pieces[i + 1].virt <= v {
                i += 1;
            }
            index.push(i as u32);
        }
        Split {
            owner,
            pieces,
            len: virt,
            index,
            grain,
        }
    }

    /// Length of the text.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Number of pieces.
    pub(crate) fn piece_count(&self) -> usize {
        self.pieces.len()
    }

    /// Piece `i`'s bytes and its text offset.
    pub(crate) fn piece(&self, i: usize) -> (&[u8], usize) {
        let p = self.pieces[i];
        (&(*self.owner).as_ref()[p.file..p.file + p.len], p.virt)
    }

    /// Index of the piece that holds text offset `v` (the last one when
    /// `v` is at or past the end).
    pub(crate) fn locate(&self, v: usize) -> usize {
        let g = (v >> self.grain).min(self.index.len().saturating_sub(1));
        let mut i = self.index.get(g).map_or(0, |&i| i as usize);
        while i + 1 < self.pieces.len() && self.pieces[i + 1].virt <= v {
            i += 1;
        }
        i
    }

    /// The bytes of text range `r`, borrowed when one piece holds them.
    pub(crate) fn bytes(&self, r: Range<usize>) -> Cow<'_, [u8]> {
        let r = r.start.min(self.len)..r.end.min(self.len);
        if r.is_empty() {
            return Cow::Borrowed(&[]);
        }
        let i = self.locate(r.start);
        let (b, virt) = self.piece(i);
        if r.end - virt <= b.len() {
            return Cow::Borrowed(&b[r.start - virt..r.end - virt]);
        }
        let mut out = Vec::with_capacity(r.len());
        self.copy_into(r, &mut out);
        Cow::Owned(out)
    }

    /// The text of range `r`; `None` when it is not UTF-8 (a cut through
    /// a character).
    pub(crate) fn text(&self, r: Range<usize>) -> Option<Cow<'_, str>> {
        match self.bytes(r) {
            Cow::Borrowed(b) => std::str::from_utf8(b).ok().map(Cow::Borrowed),
            Cow::Owned(v) => String::from_utf8(v).ok().map(Cow::Owned),
        }
    }

    /// Appends the bytes of text range `r` to `out`.
    pub(crate) fn copy_into(&self, r: Range<usize>, out: &mut Vec<u8>) {
        self.each_part(r, |part| {
            out.extend_from_slice(part);
            true
        });
    }

    /// Calls `f` with the parts of text range `r` in each piece, in order,
    /// until it returns `false`; returns whether it never did.
    fn each_part(&self, r: Range<usize>, mut f: impl FnMut(&[u8]) -> bool) -> bool {
        let end = r.end.min(self.len);
        let mut v = r.start;
        let mut i = self.locate(v);
        while v < end {
            let (b, virt) = self.piece(i);
            let take = (end - virt).min(b.len());
            if !f(&b[v - virt..take]) {
                return false;
            }
            v = virt + take;
            i += 1;
        }
        true
    }

    /// The whole text, put together.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        self.copy_into(0..self.len, &mut out);
        out
    }

    /// Whether the text at offset `v` starts with `pat`.
    pub(crate) fn starts_with(&self, v: usize, pat: &[u8]) -> bool {
        v.checked_add(pat.len()).is_some_and(|e| e <= self.len)
            && *self.bytes(v..v + pat.len()) == *pat
    }

    /// Calls `f` with the text offset of each match of `finder` at or
    /// after offset `from` (overlapping ones too), in order, until it returns `false`. A match
    /// across pieces is found in a small window put together around their
    /// seam (`scratch`, reused).
    pub(crate) fn find_each(
        &self,
        finder: &Finder<'_>,
        from: usize,
        scratch: &mut Vec<u8>,
        mut f: impl FnMut(usize) -> bool,
    ) {
        let n = finder.needle().len();
        if n == 0 || from >= self.len {
            return;
        }
        for i in self.locate(from)..self.pieces.len() {
            let (b, virt) = self.piece(i);
            let skip = from.saturating_sub(virt);
            for p in overlapping(finder, &b[skip..]) {
                if !f(virt + skip + p) {
                    return;
                }
            }
            // Matches that start in this piece and end past it: they all
            // come after those inside it.
            let seam = virt + b.len();
            if seam >= self.len || n == 1 {
                continue;
            }
            let start = (virt + skip).max(seam.saturating_sub(n - 1));
            if start >= seam {
                continue;
            }
            scratch.clear();
            self.copy_into(start..seam + n - 1, scratch);
            for p in overlapping(finder, scratch) {
                if start + p < seam && !f(start + p) {
                    return;
                }
            }
        }
    }

    /// Calls `f` with the text offset of every match of `finder`
    /// (overlapping ones too), in no particular order. The matches across seams are looked for in one
    /// search of the windows around all seams put end to end (`scratch`),
    /// rather than one search per seam.
    pub(crate) fn find_all(
        &self,
        finder: &Finder<'_>,
        scratch: &mut Vec<u8>,
        mut f: impl FnMut(usize),
    ) {
        let n = finder.needle().len();
        if n == 0 {
            return;
        }
        for i in 0..self.pieces.len() {
            let (b, virt) = self.piece(i);
            for p in overlapping(finder, b) {
                f(virt + p);
            }
        }
        if n == 1 {
            return;
        }
        // Each window: up to n - 1 bytes on each side of a seam; where it
        // starts in the text and in `scratch`.
        let mut windows: Vec<(usize, usize)> = Vec::with_capacity(self.pieces.len());
        scratch.clear();
        for w in self.pieces.windows(2) {
            let seam = w[1].virt;
            let start = w[0].virt.max(seam.saturating_sub(n - 1));
            windows.push((start, scratch.len()));
            self.copy_into(start..seam + n - 1, scratch);
        }
        for p in overlapping(finder, scratch) {
            // The window the match starts in; it must end in it too, and
            // cross its seam.
            let k = windows.partition_point(|&(_, at)| at <= p) - 1;
            let (start, at) = windows[k];
            let end_at = windows.get(k + 1).map_or(scratch.len(), |&(_, a)| a);
            let v = start + (p - at);
            let seam = self.pieces[k + 1].virt;
            if p + n <= end_at && v < seam {
                f(v);
            }
        }
    }

    /// Whether every byte of text range `r` satisfies `ok`.
    pub(crate) fn all(&self, r: Range<usize>, ok: impl Fn(u8) -> bool) -> bool {
        self.each_part(r, |part| part.iter().all(|&c| ok(c)))
    }

    /// Offset of the first match of `finder` at or after offset `from`.
    pub(crate) fn find_from(
        &self,
        finder: &Finder<'_>,
        from: usize,
        scratch: &mut Vec<u8>,
    ) -> Option<usize> {
        let mut found = None;
        self.find_each(finder, from, scratch, |p| {
            found = Some(p);
            false
        });
        found
    }
}

/// The offsets of every match of `finder` in `hay`, overlapping ones
/// too: a match that ends past a seam window must not hide one inside it.
fn overlapping<'h>(finder: &'h Finder<'_>, hay: &'h [u8]) -> impl Iterator<Item = usize> + 'h {
    let mut from = 0;
    std::iter::from_fn(move || {
        let p = from + finder.find(hay.get(from..)?)?;
        from = p + 1;
        Some(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `text` cut into pieces of `lens` (cycled), each put between bytes
    /// that are not part of the text, as packet headers are.
    fn split_of(text: &[u8], lens: &[usize]) -> Split {
        let (mut bytes, mut ranges) = (Vec::new(), Vec::new());
        let (mut at, mut k) = (0, 0);
        while at < text.len() {
            let n = lens[k % lens.len()].clamp(1, text.len() - at);
            k += 1;
            bytes.extend_from_slice(b"##");
            ranges.push(bytes.len()..bytes.len() + n);
            bytes.extend_from_slice(&text[at..at + n]);
            at += n;
        }
        Split::new(Box::new(bytes), &ranges)
    }

    fn naive(text: &[u8], needle: &[u8]) -> Vec<usize> {
        (0..text.len())
            .filter(|&i| text[i..].starts_with(needle))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        /// Searches, ranges and lookups across seams give what they give
        /// on the text in one piece.
        #[test]
        fn split_text_reads_as_the_whole(
            text in prop::collection::vec(prop::sample::select(b"ab\n".to_vec()), 0..200),
            lens in prop::collection::vec(1usize..12, 1..5),
            needle in prop::collection::vec(prop::sample::select(b"ab\n".to_vec()), 1..7),
            from in 0usize..210,
            r in (0usize..210, 0usize..210),
        ) {
            let s = split_of(&text, &lens);
            prop_assert_eq!(s.len(), text.len());
            prop_assert_eq!(s.to_vec(), text.clone());
            let want = naive(&text, &needle);
            let finder = Finder::new(&needle);
            let mut scratch = Vec::new();
            let mut all = Vec::new();
            s.find_all(&finder, &mut scratch, |p| all.push(p));
            all.sort_unstable();
            prop_assert_eq!(&all, &want);
            let mut each = Vec::new();
            s.find_each(&finder, from, &mut scratch, |p| {
                each.push(p);
                true
            });
            let after: Vec<usize> = want.iter().copied().filter(|&p| p >= from).collect();
            prop_assert_eq!(&each, &after);
            prop_assert_eq!(s.find_from(&finder, from, &mut scratch), after.first().copied());
            let (a, b) = (r.0.min(r.1), r.0.max(r.1));
            let clip = |v: usize| v.min(text.len());
            prop_assert_eq!(&*s.bytes(a..b), &text[clip(a)..clip(b)]);
            prop_assert_eq!(s.starts_with(a, &needle), text.get(a..).is_some_and(|t| t.starts_with(&needle)));
            prop_assert_eq!(s.all(a..b, |c| c != b'\n'), !text[clip(a)..clip(b)].contains(&b'\n'));
            if a < text.len() {
                let (piece, virt) = s.piece(s.locate(a));
                prop_assert!(virt <= a && a < virt + piece.len());
            }
        }
    }
}
