//! The vector pass behind [`super::skip::type_span`]: it reads a type's text
//! 64 bytes at a time, turns each block into one bit mask per kind of byte
//! that matters, and then only visits the braces and `;` among them.
//! Metadata with a thousand event classes is ~300 KB of text, and reading
//! it byte by byte (or with one search per brace) costs more than decoding
//! the events of a small trace.
//!
//! It leaves the rare types with a quote, apostrophe, slash or backslash
//! to the byte-by-byte reader ([`Scan::Unsure`]), which knows strings.

use super::skip::TypeSpan;

/// What [`scan`] decided about a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scan {
    /// The type ends here, exactly where the byte-by-byte reader says.
    Span(TypeSpan),
    /// The byte-by-byte reader would find no end either: the text ends, or
    /// a `}` closes more than the type opened.
    NoSpan,
    /// A quote, apostrophe, slash or backslash comes before the end: only
    /// the byte-by-byte reader can say what it means.
    Unsure,
}

/// Bytes per block: two AVX2 registers, and the width of the masks.
const BLOCK: usize = 64;

/// One bit per byte of a block (bit `i` for byte `i`) for each kind of
/// byte the scan looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Masks {
    open: u64,
    close: u64,
    semi: u64,
    newline: u64,
    /// `"`, `'`, `/` and `\`: strings, character literals, comments and
    /// escapes, which the scan leaves to the byte-by-byte reader.
    odd: u64,
    /// `[`, `<` and `v`: a sequence, an array, a variant tag or perhaps the
    /// word `variant`.
    refer: u64,
}

/// The [`Masks`] of a block, from `$bits`, a classifier's macro that
/// gives the mask of the bytes equal to any of its arguments: which bytes
/// go in which mask, written once for the vector classifiers.
#[cfg(target_arch = "x86_64")]
macro_rules! masks {
    ($bits:ident) => {
        Masks {
            open: $bits!(b'{'),
            close: $bits!(b'}'),
            semi: $bits!(b';'),
            newline: $bits!(b'\n'),
            odd: $bits!(b'"', b'\'', b'/', b'\\'),
            refer: $bits!(b'[', b'<', b'v'),
        }
    };
}

/// Turns a block of text into [`Masks`].
trait Classify {
    /// # Safety
    /// The CPU must have the features the implementation is compiled for.
    unsafe fn classify(block: &[u8; BLOCK]) -> Masks;
}

/// Where the type that starts at byte `start` of `text` ends, and what the
/// byte-by-byte reader would also count on the way: the same contract as
/// [`super::skip::type_span`], or [`Scan::Unsure`].
#[inline]
pub(super) fn scan(text: &[u8], start: usize) -> Scan {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_avx2() {
            // SAFETY: the CPU has AVX2, POPCNT and BMI1, checked just above.
            return unsafe { x86::scan_avx2(text, start) };
        }
        // SAFETY: every x86_64 CPU has SSE2.
        unsafe { scan_with::<x86::Sse2>(text, start) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: the portable classifier needs no CPU feature.
        unsafe { scan_with::<Portable>(text, start) }
    }
}

/// [`scan`] with the classifier `C`.
///
/// # Safety
/// The CPU must have the features `C` is compiled for.
#[inline(always)]
unsafe fn scan_with<C: Classify>(text: &[u8], start: usize) -> Scan {
    let Some(mut rest) = text.get(start..) else {
        return Scan::NoSpan;
    };
    let mut walk = Walk::default();
    let mut at = start;
    while let Some((block, tail)) = rest.split_first_chunk::<BLOCK>() {
        // SAFETY: passed on from the caller.
        let masks = unsafe { C::classify(block) };
        if let Some(done) = walk.block(masks, text, at) {
            return done;
        }
        rest = tail;
        at += BLOCK;
    }
    // Zeros match no kind of byte: the padding changes nothing.
    let mut last = [0u8; BLOCK];
    last[..rest.len()].copy_from_slice(rest);
    // SAFETY: passed on from the caller.
    let masks = unsafe { C::classify(&last) };
    walk.block(masks, text, at).unwrap_or(Scan::NoSpan)
}

/// What the scan carries from one block to the next.
#[derive(Default)]
struct Walk {
    depth: usize,
    lines: u32,
    refers: bool,
}

impl Walk {
    /// Reads the masks of the block at byte `at` of `text`: the outcome
    /// when the scan is over, `None` when it goes on with the next block.
    #[inline(always)]
    fn block(&mut self, m: Masks, text: &[u8], at: usize) -> Option<Scan> {
        let end = match self.depth_zero(m) {
            Ok(end) => end,
            // A `}` closes what the type did not open, unless an odd byte
            // (a quote, say) changed the meaning of what came before.
            Err(()) if m.odd != 0 => return Some(Scan::Unsure),
            Err(()) => return Some(Scan::NoSpan),
        };
        let before = end.map_or(u64::MAX, |e| (1u64 << e) - 1);
        if m.odd & before != 0 {
            return Some(Scan::Unsure);
        }
        self.lines += (m.newline & before).count_ones();
        let mut refer = if self.refers { 0 } else { m.refer & before };
        while refer != 0 {
            let p = at + refer.trailing_zeros() as usize;
            // Bits are set only for bytes of `text`, never for padding.
            if super::skip::refers_at(text, p) {
                self.refers = true;
                break;
            }
            refer &= refer - 1;
        }
        end.map(|e| {
            Scan::Span(TypeSpan {
                end: at + e as usize,
                lines: self.lines,
                refers: self.refers,
            })
        })
    }
}

impl Walk {
    /// The bit of the first `;` at depth 0 in the block, if any, updating
    /// the depth otherwise; `Err` when a `}` takes the depth below 0.
    ///
    /// Only a `}` brings the depth back to 0, so only the `}` are visited,
    /// each with the depth after it counted from the block's start. Where
    /// it is 0, the type ends at a `;` before the next `{`.
    #[inline(always)]
    fn depth_zero(&mut self, m: Masks) -> Result<Option<u32>, ()> {
        // Bits from which the depth is 0 up to the next `{` (none or all).
        let zero_window = |after: u64| -> Result<Option<u32>, ()> {
            let opens = m.open & after;
            let window = after & opens.wrapping_sub(1) & !opens;
            let semis = m.semi & window;
            if semis != 0 {
                // A `}` before this `;` would have ended the type first.
                let first = semis & semis.wrapping_neg();
                if m.close & window & (first - 1) != 0 {
                    return Err(());
                }
                return Ok(Some(semis.trailing_zeros()));
            }
            if m.close & window != 0 {
                return Err(());
            }
            Ok(None)
        };
        if self.depth == 0 {
            if let Some(end) = zero_window(u64::MAX)? {
                return Ok(Some(end));
            }
        }
        let mut closes = m.close;
        while closes != 0 {
            let close = closes & closes.wrapping_neg();
            closes ^= close;
            let upto = close ^ close.wrapping_sub(1);
            let opened = self.depth + (m.open & upto).count_ones() as usize;
            if opened == (m.close & upto).count_ones() as usize {
                if let Some(end) = zero_window(!upto)? {
                    return Ok(Some(end));
                }
            }
        }
        // No `}` went below 0, so there are no more `}` than depth and `{`.
        self.depth = self.depth + m.open.count_ones() as usize - m.close.count_ones() as usize;
        Ok(None)
    }
}

/// The classifier for any CPU, a byte at a time.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
struct Portable;

impl Classify for Portable {
    unsafe fn classify(block: &[u8; BLOCK]) -> Masks {
        let mut m = Masks::default();
        for (i, &c) in block.iter().enumerate() {
            let bit = 1u64 << i;
            match c {
                b'{' => m.open |= bit,
                b'}' => m.close |= bit,
                b';' => m.semi |= bit,
                b'\n' => m.newline |= bit,
                b'"' | b'\'' | b'/' | b'\\' => m.odd |= bit,
                b'[' | b'<' | b'v' => m.refer |= bit,
                _ => {}
            }
        }
        m
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{scan_with, Classify, Masks, Scan, BLOCK};
    use std::arch::x86_64::*;

    /// Whether the CPU can run [`scan_avx2`].
    pub(super) fn has_avx2() -> bool {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("popcnt")
            && std::is_x86_feature_detected!("bmi1")
    }

    /// [`super::scan`] compiled for AVX2, so that the classifier inlines,
    /// and with the instructions that count bits and pick the lowest one.
    ///
    /// # Safety
    /// The CPU must have AVX2, POPCNT and BMI1 ([`has_avx2`]).
    #[target_feature(enable = "avx2,popcnt,bmi1")]
    pub(super) unsafe fn scan_avx2(text: &[u8], start: usize) -> Scan {
        // SAFETY: passed on from the caller.
        unsafe { scan_with::<Avx2>(text, start) }
    }

    /// The classifier with one 32-byte AVX2 register per block.
    pub(super) struct Avx2;

    impl Classify for Avx2 {
        #[target_feature(enable = "avx2")]
        #[inline]
        unsafe fn classify(block: &[u8; BLOCK]) -> Masks {
            // SAFETY: `block` is 64 readable bytes, two unaligned loads of
            // 32.
            let (lo, hi) = unsafe {
                (
                    _mm256_loadu_si256(block.as_ptr().cast()),
                    _mm256_loadu_si256(block.as_ptr().add(32).cast()),
                )
            };
            macro_rules! bits {
                ($($c:expr),+) => {{
                    let mut l = _mm256_setzero_si256();
                    let mut h = _mm256_setzero_si256();
                    $(
                        l = _mm256_or_si256(l, _mm256_cmpeq_epi8(lo, _mm256_set1_epi8($c as i8)));
                        h = _mm256_or_si256(h, _mm256_cmpeq_epi8(hi, _mm256_set1_epi8($c as i8)));
                    )+
                    _mm256_movemask_epi8(l) as u32 as u64
                        | (_mm256_movemask_epi8(h) as u32 as u64) << 32
                }};
            }
            masks!(bits)
        }
    }

    /// The classifier with two 16-byte SSE2 registers per block, for
    /// x86_64 CPUs without AVX2.
    pub(super) struct Sse2;

    impl Classify for Sse2 {
        #[inline(always)]
        unsafe fn classify(block: &[u8; BLOCK]) -> Masks {
            // SAFETY: `block` is 64 readable bytes, four unaligned loads of
            // 16; x86_64 always has SSE2.
            let v: [__m128i; 4] = std::array::from_fn(|k| unsafe {
                _mm_loadu_si128(block.as_ptr().add(16 * k).cast())
            });
            macro_rules! bits {
                ($($c:expr),+) => {{
                    let mut m = 0u64;
                    for (k, &v) in v.iter().enumerate() {
                        let mut any = _mm_setzero_si128();
                        $(any = _mm_or_si128(any, _mm_cmpeq_epi8(v, _mm_set1_epi8($c as i8)));)+
                        m |= (_mm_movemask_epi8(any) as u32 as u64) << (16 * k);
                    }
                    m
                }};
            }
            masks!(bits)
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The scan with every classifier this CPU can run.
    pub(in super::super) fn scan_all(text: &[u8], start: usize) -> Vec<Scan> {
        // SAFETY: the portable classifier needs no CPU feature.
        let mut all = vec![unsafe { scan_with::<Portable>(text, start) }];
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: every x86_64 CPU has SSE2.
            all.push(unsafe { scan_with::<x86::Sse2>(text, start) });
            if x86::has_avx2() {
                // SAFETY: the CPU has AVX2, POPCNT and BMI1, checked just above.
                all.push(unsafe { x86::scan_avx2(text, start) });
            }
        }
        all
    }

    #[test]
    fn classifiers_agree_on_every_byte_value() {
        let block: Vec<u8> = (0..=255u8).collect();
        for chunk in block.chunks(BLOCK) {
            let b: &[u8; BLOCK] = chunk.try_into().unwrap();
            // SAFETY: no CPU feature needed.
            let portable = unsafe { Portable::classify(b) };
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: every x86_64 CPU has SSE2.
                assert_eq!(unsafe { x86::Sse2::classify(b) }, portable);
                if x86::has_avx2() {
                    // SAFETY: the CPU has AVX2, checked just above.
                    assert_eq!(unsafe { x86::Avx2::classify(b) }, portable);
                }
            }
            let set = portable.open
                | portable.close
                | portable.semi
                | portable.newline
                | portable.odd
                | portable.refer;
            let expected = chunk
                .iter()
                .filter(|c| b"{};\n\"'/\\[<v".contains(c))
                .count();
            assert_eq!(set.count_ones() as usize, expected);
        }
    }
}
