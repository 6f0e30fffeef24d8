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
        Split {
            owner,
            pieces,
            len: virt,
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
        self.pieces
            .partition_point(|p| p.virt <= v)
            .saturating_sub(1)
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
        let end = r.end.min(self.len);
        let mut v = r.start;
        while v < end {
            let (b, virt) = self.piece(self.locate(v));
            let take = (end - virt).min(b.len());
            out.extend_from_slice(&b[v - virt..take]);
            v = virt + take;
        }
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
    /// after offset `from`, in order, until it returns `false`. A match
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
            for p in finder.find_iter(&b[skip..]) {
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
            let start = (virt + skip).max(seam - (n - 1));
            if start >= seam {
                continue;
            }
            scratch.clear();
            self.copy_into(start..seam + n - 1, scratch);
            for p in finder.find_iter(scratch) {
                if start + p < seam && !f(start + p) {
                    return;
                }
            }
        }
    }

    /// Whether every byte of text range `r` satisfies `ok`.
    pub(crate) fn all(&self, r: Range<usize>, ok: impl Fn(u8) -> bool) -> bool {
        let end = r.end.min(self.len);
        let mut v = r.start;
        while v < end {
            let (b, virt) = self.piece(self.locate(v));
            let take = (end - virt).min(b.len());
            if !b[v - virt..take].iter().all(|&c| ok(c)) {
                return false;
            }
            v = virt + take;
        }
        true
    }
}
