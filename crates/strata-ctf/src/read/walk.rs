//! Walks the bytes of one dynamic scope following its compiled steps: finds
//! where it ends, records marks, fills registers, sets the event id and
//! updates the clock. Pure over a byte slice.

use memchr::memchr;

use super::bits::{read_bits, to_i128};
use super::plan::{align_up, Action, FlatKind, IntSpec, Kind, NodeId, Scope, Step};

/// A decoding failure at a bit offset of the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    /// Bit offset from the start of the packet.
    pub bit: u64,
    pub msg: String,
}

/// A field of `bits` bits at bit `at` that does not fit before `end`.
fn overrun(at: u64, bits: u64, what: &str, end: u64) -> DecodeError {
    DecodeError {
        bit: at,
        msg: format!(
            "{what} ({bits} bits at bit {at}) runs past the end of the packet content at bit {end}"
        ),
    }
}

fn field_name(scope: &Scope, id: NodeId) -> String {
    scope
        .node(id)
        .map_or_else(|| "a field".to_string(), |n| format!("field `{}`", n.name))
}

/// Applies a new value of an N-bit clock field: replaces the low N bits of
/// the running clock, adding 2^N when the result went backwards.
#[inline(always)]
pub(crate) fn update_clock(clock: u64, v: u64, bits: u8) -> u64 {
    if bits >= 64 {
        return v;
    }
    let mask = (1u64 << bits) - 1;
    // The distance forward from the clock's low bits to `v`, modulo 2^N:
    // adding it replaces those bits and carries when they wrapped. Three
    // operations, no comparison: this is on the fast path's chain from an
    // event's header to its timestamp.
    clock.wrapping_add(v.wrapping_sub(clock) & mask)
}

/// Mutable state of a walk.
pub(crate) struct Walker<'a> {
    pub data: &'a [u8],
    /// Content end in bits.
    pub end: u64,
    pub regs: &'a mut [u64],
    pub marks: &'a mut [u64],
    pub id: Option<u64>,
    pub clock: u64,
}

/// Largest element count walked one by one for elements that may be empty.
const MAX_EMPTY_ELEMS: u64 = 1 << 16;

impl Walker<'_> {
    #[inline(always)]
    fn apply(&mut self, v: u64, spec: IntSpec, reg: Option<u16>, action: Action) {
        if let Some(r) = reg {
            if let Some(slot) = self.regs.get_mut(r as usize) {
                *slot = v;
            }
        }
        match action {
            Action::None => {}
            Action::EventId => self.id = Some(v),
            Action::Clock => self.clock = update_clock(self.clock, v, spec.bits),
        }
    }

    /// Walks a scope whose `flat` flag is set, from bit `pos`: its flat
    /// program in one loop, strings and sequences inline. `None` on any
    /// problem, for the generic walk to find and describe it (registers
    /// and marks it set are then set again).
    #[inline(always)]
    pub(crate) fn walk_flat(&mut self, scope: &Scope, pos: u64) -> Option<u64> {
        if !scope.flat {
            return None;
        }
        let end = self.end;
        let mut pos = align_up(pos, scope.flat_align);
        for op in &scope.flat_ops {
            pos = align_up(pos, op.align);
            if let Some(m) = op.mark {
                *self.marks.get_mut(m as usize)? = pos;
            }
            let bits = match op.kind {
                FlatKind::Fixed => {
                    let (a, b) = op.loads;
                    for l in scope.flat_loads.get(a as usize..b as usize)? {
                        let v = read_bits(self.data, pos + l.rel as u64, l.spec)?;
                        self.apply(v, l.spec, l.reg, l.action);
                    }
                    op.bits
                }
                FlatKind::Skip => op.bits,
                FlatKind::Str => {
                    let hay = self.data.get((pos / 8) as usize..(end / 8) as usize)?;
                    (nul(hay)? as u64 + 1) * 8
                }
                FlatKind::Seq => match *self.regs.get(op.len_reg as usize)? {
                    0 => 0,
                    len => op.bits.checked_mul(len - 1)?.checked_add(op.elem_bits)?,
                },
            };
            if bits > end.checked_sub(pos)? {
                return None;
            }
            pos += bits;
        }
        Some(pos)
    }

    /// Walks node `id` of `scope` starting at bit `pos`; returns the bit
    /// where it ends.
    pub(crate) fn walk(&mut self, scope: &Scope, id: NodeId, pos: u64) -> Result<u64, DecodeError> {
        let Some(n) = scope.node(id) else {
            return Ok(pos);
        };
        let start = align_up(pos, n.align);
        match &n.kind {
            Kind::Struct { steps, .. } => {
                let mut pos = start;
                for step in steps {
                    match step {
                        Step::Fixed {
                            align,
                            bits,
                            mark,
                            loads,
                            first,
                        } => {
                            pos = align_up(pos, *align);
                            let end = pos + bits;
                            if end > self.end {
                                let what = field_name(scope, *first);
                                return Err(overrun(pos, *bits, &what, self.end));
                            }
                            if let Some(m) = mark {
                                if let Some(slot) = self.marks.get_mut(*m as usize) {
                                    *slot = pos;
                                }
                            }
                            for l in loads {
                                let v = read_bits(self.data, pos + l.rel as u64, l.spec)
                                    .ok_or_else(|| overrun(pos, *bits, "an integer", self.end))?;
                                self.apply(v, l.spec, l.reg, l.action);
                            }
                            pos = end;
                        }
                        Step::Var { member, mark } => {
                            let m_align = scope.node(*member).map_or(1, |m| m.align);
                            pos = align_up(pos, m_align);
                            if let Some(m) = mark {
                                if let Some(slot) = self.marks.get_mut(*m as usize) {
                                    *slot = pos;
                                }
                            }
                            pos = self.walk(scope, *member, pos)?;
                        }
                    }
                }
                Ok(pos)
            }
            Kind::Int { spec, .. } => {
                let end = start + spec.bits as u64;
                if end > self.end {
                    return Err(overrun(
                        start,
                        spec.bits as u64,
                        &format!("integer `{}`", n.name),
                        self.end,
                    ));
                }
                if n.reg.is_some() || n.action != Action::None {
                    let v = read_bits(self.data, start, *spec)
                        .ok_or_else(|| overrun(start, spec.bits as u64, "an integer", self.end))?;
                    self.apply(v, *spec, n.reg, n.action);
                }
                Ok(end)
            }
            Kind::Float { spec } => {
                let end = start + spec.bits as u64;
                if end > self.end {
                    return Err(overrun(
                        start,
                        spec.bits as u64,
                        &format!("float `{}`", n.name),
                        self.end,
                    ));
                }
                Ok(end)
            }
            Kind::Str => {
                let from = (start / 8) as usize;
                let to = (self.end / 8) as usize;
                let hay = self.data.get(from..to).unwrap_or(&[]);
                match memchr(0, hay) {
                    Some(i) => Ok(start + (i as u64 + 1) * 8),
                    None => Err(DecodeError {
                        bit: start,
                        msg: format!(
                            "string `{}` has no terminating NUL before the end of the packet content",
                            n.name
                        ),
                    }),
                }
            }
            Kind::Array { elem, len } => self.elements(scope, n.fixed, *elem, *len, start, &n.name),
            Kind::Seq { elem, len_reg } => {
                let len = self.regs.get(*len_reg as usize).copied().unwrap_or(0);
                self.elements(scope, None, *elem, len, start, &n.name)
            }
            Kind::Variant {
                tag_reg,
                tag_spec,
                options,
                select,
            } => {
                let raw = self.regs.get(*tag_reg as usize).copied().unwrap_or(0);
                let tag = to_i128(raw, *tag_spec);
                let Some(&(_, _, opt)) = select.iter().find(|(lo, hi, _)| *lo <= tag && tag <= *hi)
                else {
                    return Err(DecodeError {
                        bit: start,
                        msg: format!("variant `{}`: tag value {tag} selects no option", n.name),
                    });
                };
                let o = options.get(opt as usize).copied().unwrap_or(0);
                self.walk(scope, o, start)
            }
        }
    }

    fn elements(
        &mut self,
        scope: &Scope,
        fixed: Option<u64>,
        elem: NodeId,
        len: u64,
        start: u64,
        name: &str,
    ) -> Result<u64, DecodeError> {
        if let Some(f) = fixed {
            let end = start + f;
            if end > self.end {
                return Err(overrun(start, f, &format!("array `{name}`"), self.end));
            }
            return Ok(end);
        }
        if len == 0 {
            return Ok(start);
        }
        let Some(e) = scope.node(elem) else {
            return Ok(start);
        };
        let room = self.end.saturating_sub(start);
        if let Some(ef) = e.fixed {
            if e.reg.is_none() && e.action == Action::None && !matches!(e.kind, Kind::Struct { .. })
            {
                let stride = align_up(ef, e.align);
                let total = stride
                    .checked_mul(len - 1)
                    .and_then(|v| v.checked_add(ef))
                    .filter(|t| *t <= room)
                    .ok_or_else(|| DecodeError {
                        bit: start,
                        msg: format!(
                            "sequence `{name}` of {len} elements of {ef} bits runs past the end of the packet content"
                        ),
                    })?;
                return Ok(start + total);
            }
        }
        let cap = room.checked_div(e.min_bits).unwrap_or(MAX_EMPTY_ELEMS);
        if len > cap {
            return Err(DecodeError {
                bit: start,
                msg: format!(
                    "sequence `{name}` claims {len} elements, more than the {room} bits left in the packet can hold"
                ),
            });
        }
        let mut pos = start;
        for _ in 0..len {
            pos = self.walk(scope, elem, pos)?;
        }
        Ok(pos)
    }
}

/// Position of the first NUL of `hay`: short strings (most of those in
/// kernel events) eight bytes at a time in a register, longer ones with
/// `memchr`.
#[inline(always)]
pub(crate) fn nul(hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while let Some(c) = hay.get(at..).and_then(|h| h.first_chunk::<8>()) {
        if at >= 32 {
            break;
        }
        let w = u64::from_le_bytes(*c);
        // The lowest zero byte sets the lowest flagged bit.
        let z = w.wrapping_sub(LO) & !w & HI;
        if z != 0 {
            return Some(at + (z.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    memchr(0, hay.get(at..)?).map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_wraps_forward() {
        assert_eq!(update_clock(0x1234_5678, 0x10, 8), 0x1234_5710);
        assert_eq!(update_clock(0x1234_5678, 0x80, 8), 0x1234_5680);
        assert_eq!(update_clock(0x1234_5678, 0x78, 8), 0x1234_5678);
        assert_eq!(update_clock((1 << 27) - 1, 0, 27), 1 << 27);
        assert_eq!(update_clock(5, 3, 64), 3);
        // Against the definition: replace the low bits, add 2^N when the
        // result went backwards (pseudo-random values, every width).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bits = (x % 63) as u8 + 1;
            let mask = (1u64 << bits) - 1;
            let (clock, v) = (x.rotate_left(23) >> 1, x & mask);
            let t = (clock & !mask) | v;
            let want = if t < clock {
                t.wrapping_add(1 << bits)
            } else {
                t
            };
            assert_eq!(
                update_clock(clock, v, bits),
                want,
                "{clock:#x} {v:#x} {bits}"
            );
        }
    }

    #[test]
    fn nul_finds_the_first_nul() {
        for len in 0..=50usize {
            for at in 0..=len {
                let mut v: Vec<u8> = (0..len).map(|i| 0x80 | (i as u8 % 0x7f + 1)).collect();
                if at < len {
                    v[at] = 0;
                    for b in v.iter_mut().skip(at + 1).step_by(2) {
                        *b = 1;
                    }
                }
                assert_eq!(
                    nul(&v),
                    v.iter().position(|&b| b == 0),
                    "len {len} nul {at}"
                );
            }
        }
    }
}
