//! The common shapes of walked payloads, located by straight-line code.
//!
//! Most payloads the fast path must walk have one variable-length member
//! between fixed ones: a string (`syscall_entry_open`'s file name) or a
//! sequence whose length the fixed part before it holds
//! (`sched_process_fork`'s `vtids`). Their flat program (see
//! `Scope::flat_ops`) is reduced once per class to a `FlatShape`, which
//! the decoder walks without the program's loop and per-step dispatch.

use super::bits::read_bits;
use super::plan::{FlatKind, IntSpec, Scope};
use super::walk::nul;

/// No mark to set.
const NO_MARK: u32 = u32::MAX;

/// A payload of whole bytes aligned to bytes at most: a fixed part, a
/// string or sequence, a fixed part (either fixed part may be empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FlatShape {
    /// Size of the first fixed part in bits, and the mark slot (in the
    /// cursor's mark array) set to its start, or `NO_MARK` without one.
    pre_bits: u64,
    pre_mark: u32,
    /// The integer the first part loads into a register, if any: its bit
    /// offset in the part, its type and the register.
    load: Option<(u32, IntSpec, u16)>,
    var: Var,
    var_mark: u32,
    /// The last fixed part.
    post_bits: u64,
    post_mark: u32,
}

/// The variable-length member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Var {
    Str,
    /// Elements `stride` bits apart, the last one `elem_bits` long, their
    /// number in register `len_reg`.
    Seq {
        stride: u64,
        elem_bits: u64,
        len_reg: u16,
    },
}

impl FlatShape {
    /// The shape of `scope`'s flat program, whose marks start at slot
    /// `base`; `None` when it has another shape (the generic flat walk then
    /// reads it). Every step must be aligned to a byte at most and be whole
    /// bytes, so that starting at a whole byte needs no aligning.
    pub(crate) fn of(scope: &Scope, base: u32) -> Option<FlatShape> {
        if !scope.flat || scope.flat_align > 8 {
            return None;
        }
        let slot = |m: Option<u16>| m.map_or(Some(NO_MARK), |m| base.checked_add(m as u32));
        let mut ops = scope.flat_ops.iter().peekable();
        let byte_aligned = |align: u32| align <= 8;
        let mut shape = FlatShape {
            pre_bits: 0,
            pre_mark: NO_MARK,
            load: None,
            var: Var::Str,
            var_mark: NO_MARK,
            post_bits: 0,
            post_mark: NO_MARK,
        };
        if let Some(op) = ops.next_if(|op| op.kind == FlatKind::Fixed) {
            let loads = scope
                .flat_loads
                .get(op.loads.0 as usize..op.loads.1 as usize)?;
            if !byte_aligned(op.align) || !op.bits.is_multiple_of(8) || loads.len() > 1 {
                return None;
            }
            shape.pre_bits = op.bits;
            shape.pre_mark = slot(op.mark)?;
            if let Some(l) = loads.first() {
                // Only a register matters in a payload (its event id and
                // clock actions are not applied there).
                shape.load = Some((l.rel, l.spec, l.reg?));
            }
        }
        let op = ops.next()?;
        if !byte_aligned(op.align) {
            return None;
        }
        shape.var_mark = slot(op.mark)?;
        shape.var = match op.kind {
            FlatKind::Str => Var::Str,
            FlatKind::Seq if op.bits.is_multiple_of(8) && op.elem_bits.is_multiple_of(8) => {
                Var::Seq {
                    stride: op.bits,
                    elem_bits: op.elem_bits,
                    len_reg: op.len_reg,
                }
            }
            _ => return None,
        };
        if let Some(op) = ops.next() {
            let no_loads = op.loads.0 == op.loads.1;
            if op.kind != FlatKind::Fixed
                || !byte_aligned(op.align)
                || !op.bits.is_multiple_of(8)
                || !no_loads
            {
                return None;
            }
            shape.post_bits = op.bits;
            shape.post_mark = slot(op.mark)?;
        }
        if ops.next().is_some() {
            return None;
        }
        Some(shape)
    }

    /// Walks the payload from bit `pos` (a whole byte) of `data`, whose
    /// content ends at bit `end`: sets its marks and the register it loads,
    /// and returns where it ends. `None` exactly where the generic flat
    /// walk fails, for the general decoder to describe the problem.
    #[inline(always)]
    pub(crate) fn walk(
        &self,
        data: &[u8],
        end: u64,
        marks: &mut [u64],
        regs: &mut [u64],
        mut pos: u64,
    ) -> Option<u64> {
        let mut mark = |slot: u32, at: u64| -> Option<()> {
            if slot != NO_MARK {
                *marks.get_mut(slot as usize)? = at;
            }
            Some(())
        };
        mark(self.pre_mark, pos)?;
        if let Some((rel, spec, reg)) = self.load {
            let v = read_bits(data, pos + rel as u64, spec)?;
            if let Some(r) = regs.get_mut(reg as usize) {
                *r = v;
            }
        }
        if self.pre_bits > end.checked_sub(pos)? {
            return None;
        }
        pos += self.pre_bits;
        mark(self.var_mark, pos)?;
        let bits = match self.var {
            Var::Str => {
                let hay = data.get((pos / 8) as usize..(end / 8) as usize)?;
                (nul(hay)? as u64 + 1) * 8
            }
            Var::Seq {
                stride,
                elem_bits,
                len_reg,
            } => match *regs.get(len_reg as usize)? {
                0 => 0,
                len => stride.checked_mul(len - 1)?.checked_add(elem_bits)?,
            },
        };
        if bits > end - pos {
            return None;
        }
        pos += bits;
        mark(self.post_mark, pos)?;
        if self.post_bits > end - pos {
            return None;
        }
        Some(pos + self.post_bits)
    }
}
