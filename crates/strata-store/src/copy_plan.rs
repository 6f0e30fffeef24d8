//! Precompiled copy plans: the fast path of [`crate::convert::Converter`]
//! for event classes whose CTF payload has a fixed size.
//!
//! Most fields need no conversion at all: a little-endian integer of the
//! same width, packed, has the same bytes in the ftrace record and in the
//! CTF event. A plan lists the steps of one class once, with neighbouring
//! identical fields merged into one copy, and knows the payload size up
//! front, so an event costs one capacity check
//! ([`strata_ctf::write::PacketBuilder::append`]) and a few copies instead
//! of a bounds-checked write per field.
//!
//! A plan writes exactly the bytes the per-field path of the converter
//! writes; the converter's tests check that on every format of the running
//! kernel. Classes with strings or sequences (variable size) have no plan.

use strata_ftrace::format::{FieldAccessor, FieldKind};

use crate::lttng;

/// One step of a plan; each writes a fixed number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// `len` bytes of the record from `src`, as they are.
    Copy { src: u32, len: u32 },
    /// An integer of `size` bytes at `src` (1, 2, 4 or 8), extended per
    /// `signed`, plus `add`, written in its low `bytes` bytes.
    Int {
        src: u32,
        size: u8,
        signed: bool,
        bytes: u8,
        add: i64,
    },
    /// The low `bytes` bytes of a constant (a field the record cannot hold).
    Const { value: u64, bytes: u8 },
    /// A `char[len]` text array from a string field.
    Text { acc: FieldAccessor, len: u32 },
    /// `count` integers of `bytes` bytes from the elements of an array.
    Elements {
        acc: FieldAccessor,
        count: u32,
        bytes: u8,
    },
    /// The block `rwbs` text as LTTng's u32 mask.
    Rwbs { acc: FieldAccessor },
}

impl Step {
    /// Bytes the step writes.
    fn out_len(&self) -> usize {
        match *self {
            Step::Copy { len, .. } => len as usize,
            Step::Int { bytes, .. } | Step::Const { bytes, .. } => bytes as usize,
            Step::Text { len, .. } => len as usize,
            Step::Elements { count, bytes, .. } => count as usize * bytes as usize,
            Step::Rwbs { .. } => 4,
        }
    }

    /// The last record byte a fixed-offset step reads, plus one.
    fn src_end(&self) -> usize {
        match *self {
            Step::Copy { src, len } => src as usize + len as usize,
            Step::Int { src, size, .. } => src as usize + size as usize,
            _ => 0,
        }
    }
}

/// The steps of one event class and the sizes they imply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyPlan {
    steps: Box<[Step]>,
    payload_len: usize,
    min_len: usize,
}

/// Collects steps, merging each copy into the previous one when they are
/// contiguous in the record.
#[derive(Debug, Default)]
pub(crate) struct PlanBuilder {
    steps: Vec<Step>,
}

impl PlanBuilder {
    /// Adds a step.
    pub(crate) fn push(&mut self, step: Step) {
        if let (
            Some(Step::Copy { src, len }),
            Step::Copy {
                src: next,
                len: more,
            },
        ) = (self.steps.last_mut(), step)
        {
            if *src + *len == next {
                *len += more;
                return;
            }
        }
        self.steps.push(step);
    }

    /// An integer field: a plain copy when the widths agree and nothing is
    /// added, a conversion otherwise. `acc` must be the accessor of a field
    /// at `src`.
    pub(crate) fn int(&mut self, acc: FieldAccessor, src: u32, bytes: u8, add: i64) {
        let size = acc.size();
        let readable = acc.kind() == FieldKind::Int && matches!(size, 1 | 2 | 4 | 8);
        if !readable {
            // The per-field path reads nothing there and writes `0 + add`.
            self.push(Step::Const {
                value: add as u64,
                bytes,
            });
        } else if add == 0 && size == bytes as u32 {
            self.push(Step::Copy { src, len: size });
        } else {
            self.push(Step::Int {
                src,
                size: size as u8,
                signed: acc.signed(),
                bytes,
                add,
            });
        }
    }

    /// The plan. It applies to records of at least `min_len` bytes that
    /// also hold every fixed-offset field a step reads.
    pub(crate) fn finish(self, min_len: usize) -> CopyPlan {
        let reach = self.steps.iter().map(Step::src_end).max().unwrap_or(0);
        CopyPlan {
            payload_len: self.steps.iter().map(Step::out_len).sum(),
            min_len: min_len.max(reach),
            steps: self.steps.into_boxed_slice(),
        }
    }
}

impl CopyPlan {
    /// Bytes of CTF payload (context included) each event takes.
    #[inline]
    pub(crate) fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// Whether `rec` is long enough for the plan; shorter records take the
    /// per-field path.
    #[inline]
    pub(crate) fn fits(&self, rec: &[u8]) -> bool {
        rec.len() >= self.min_len
    }

    /// Writes the payload of `rec` into `out`, which is
    /// [`CopyPlan::payload_len`] bytes. A record that [`CopyPlan::fits`]
    /// holds every byte a step reads; anything else reads as zeros.
    #[inline]
    pub(crate) fn fill(&self, rec: &[u8], out: &mut [u8]) {
        let mut at = 0;
        for step in self.steps.iter() {
            let n = step.out_len();
            let Some(dst) = out.get_mut(at..at + n) else {
                return;
            };
            at += n;
            match *step {
                Step::Copy { src, len } => copy(dst, rec, src as usize, len as usize),
                Step::Int {
                    src,
                    size,
                    signed,
                    bytes: _,
                    add,
                } => {
                    let v = read_int(rec, src as usize, size, signed).wrapping_add(add);
                    dst.copy_from_slice(&v.to_le_bytes()[..n]);
                }
                Step::Const { value, .. } => dst.copy_from_slice(&value.to_le_bytes()[..n]),
                Step::Text { acc, .. } => text(dst, acc.str(rec).unwrap_or(&[])),
                Step::Elements { acc, bytes, .. } => {
                    let b = (bytes as usize).max(1);
                    for (i, d) in dst.chunks_exact_mut(b).enumerate() {
                        let v = acc.element(rec, i).unwrap_or(0);
                        d.copy_from_slice(&v.to_le_bytes()[..b]);
                    }
                }
                Step::Rwbs { acc } => dst.copy_from_slice(
                    &lttng::rwbs_mask(acc.bytes(rec).unwrap_or(&[])).to_le_bytes(),
                ),
            }
        }
    }
}

/// Copies `len` record bytes from `src` into `dst` (`len` bytes), zeros when
/// the record is shorter.
#[inline(always)]
pub(crate) fn copy(dst: &mut [u8], rec: &[u8], src: usize, len: usize) {
    match rec.get(src..src + len) {
        Some(s) => dst.copy_from_slice(s),
        None => dst.fill(0),
    }
}

/// A little-endian integer of `size` bytes at `at`, extended to 64 bits;
/// 0 when the record is shorter.
#[inline(always)]
fn read_int(rec: &[u8], at: usize, size: u8, signed: bool) -> i64 {
    let Some(b) = rec.get(at..at + size as usize) else {
        return 0;
    };
    let mut raw = [0u8; 8];
    raw[..b.len()].copy_from_slice(b);
    let v = u64::from_le_bytes(raw);
    if signed && size < 8 {
        let shift = 64 - 8 * size as u32;
        ((v << shift) as i64) >> shift
    } else {
        v as i64
    }
}

/// A `char[N]` text array: `s` up to its first NUL, cut to the field and
/// padded with NULs.
#[inline]
fn text(dst: &mut [u8], s: &[u8]) {
    let s = match memchr::memchr(0, s) {
        Some(n) => &s[..n],
        None => s,
    };
    let n = s.len().min(dst.len());
    let (head, tail) = dst.split_at_mut(n);
    head.copy_from_slice(&s[..n]);
    tail.fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_ftrace::format::Field;

    fn acc(offset: u32, size: u32, signed: bool) -> FieldAccessor {
        Field {
            name: "f".into(),
            c_type: "int".into(),
            offset,
            size,
            signed,
            kind: FieldKind::Int,
        }
        .accessor()
    }

    #[test]
    fn contiguous_copies_merge_and_conversions_do_not() {
        let mut p = PlanBuilder::default();
        p.int(acc(4, 4, true), 4, 4, 0);
        p.int(acc(8, 4, true), 8, 4, 0);
        p.int(acc(12, 4, true), 12, 4, -100);
        p.int(acc(16, 2, true), 16, 8, 0);
        let plan = p.finish(18);
        assert_eq!(plan.steps.len(), 3);
        assert_eq!(plan.steps[0], Step::Copy { src: 4, len: 8 });
        assert_eq!(plan.payload_len(), 8 + 4 + 8);
        let mut rec = vec![0u8; 18];
        rec[4..8].copy_from_slice(&7i32.to_le_bytes());
        rec[8..12].copy_from_slice(&(-9i32).to_le_bytes());
        rec[12..16].copy_from_slice(&120i32.to_le_bytes());
        rec[16..18].copy_from_slice(&(-2i16).to_le_bytes());
        let mut out = vec![0xaa; plan.payload_len()];
        plan.fill(&rec, &mut out);
        assert_eq!(&out[0..4], &7i32.to_le_bytes());
        assert_eq!(&out[4..8], &(-9i32).to_le_bytes());
        assert_eq!(&out[8..12], &20i32.to_le_bytes());
        assert_eq!(&out[12..20], &(-2i64).to_le_bytes());
        assert!(plan.fits(&rec));
        assert!(!plan.fits(&rec[..17]));
    }

    #[test]
    fn short_records_read_as_zeros_and_text_is_padded() {
        let mut dst = [0xffu8; 6];
        copy(&mut dst, &[1, 2, 3], 1, 6);
        assert_eq!(dst, [0; 6]);
        assert_eq!(read_int(&[0xfe], 0, 1, true), -2);
        assert_eq!(read_int(&[0xfe], 0, 1, false), 254);
        assert_eq!(read_int(&[0xfe], 0, 2, true), 0);
        let mut t = [0xffu8; 6];
        text(&mut t, b"ab\0cd");
        assert_eq!(&t, b"ab\0\0\0\0");
        text(&mut t, b"abcdefgh");
        assert_eq!(&t, b"abcdef");
    }
}
