//! One decoded event as a view over its packet's bytes, and typed access to
//! its fields.

use memchr::memchr;

use super::bits::{read_bits, read_int, to_i64};
use super::class::{EventClass, FieldRef, Shape};
use super::cursor::Cursor;
use super::plan::{align_up, IntSpec, Kind, NodeId, Scope, ScopeKind};

/// The current event of a stream. Borrowed from [`super::Events`]; valid
/// until the next call to `next`.
#[derive(Clone, Copy)]
pub struct Event<'a> {
    pub(crate) c: &'a Cursor<'a>,
}

/// A field value, generic, for printing and dumping.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// Unsigned integer.
    U64(u64),
    /// Signed integer.
    I64(i64),
    /// Integer the metadata asks to display in base 2, 8 or 16: raw bits
    /// (masked to the field's width) and the base.
    Based(u64, u8),
    /// Floating point.
    F64(f64),
    /// String bytes (up to the NUL), or a text char array.
    Str(&'a [u8]),
    /// Enumeration value and its label, if one covers it.
    Enum(i64, Option<&'a str>),
    /// Array or sequence elements.
    Array(Vec<Value<'a>>),
    /// Struct members.
    Struct(Vec<(&'a str, Value<'a>)>),
    /// Variant: the selected option's name and value.
    Variant(&'a str, Box<Value<'a>>),
}

impl<'a> Event<'a> {
    /// The event's class.
    #[inline]
    pub fn class(&self) -> &'a EventClass {
        &self.c.classes[self.c.cur.class as usize]
    }
    /// The class's dense global index, as `class().index()`, without
    /// touching the class: for dispatch tables in hot loops.
    #[inline]
    pub fn class_index(&self) -> usize {
        self.c.cur.index as usize
    }
    /// Nanoseconds since the Unix epoch, clock offset applied.
    #[inline]
    pub fn ts(&self) -> i64 {
        self.c.cur.ts
    }
    /// The raw clock value.
    #[inline]
    pub fn cycles(&self) -> u64 {
        self.c.clock()
    }
    /// Index of the trace in the set.
    #[inline]
    pub fn trace(&self) -> usize {
        self.c.trace as usize
    }
    /// CPU: the packet context's `cpu_id`, else the stream's order in its trace.
    #[inline]
    pub fn cpu(&self) -> u32 {
        self.c.cpu
    }
    /// Global index of the stream this event comes from.
    #[inline]
    pub fn stream(&self) -> usize {
        self.c.key as usize
    }
    /// The stream file holding this event and the byte offset of its header,
    /// for error reports and tools that patch or cut traces.
    pub fn position(&self) -> (&'a std::path::Path, u64) {
        self.c.position()
    }
    /// Ordinal of the event's packet in its stream, from 1: it changes
    /// exactly when the stream moves to another packet, so per-packet work
    /// (reading the packet context) can be done once per packet.
    #[inline]
    pub fn packet_number(&self) -> u64 {
        self.c.packet_number
    }
    /// Events the tracer discarded in this stream since the previous packet,
    /// reported on the first event after the loss.
    #[inline]
    pub fn lost_before(&self) -> u64 {
        self.c.lost_before()
    }

    #[inline(always)]
    fn owner_ok(&self, f: FieldRef) -> bool {
        // Selected without a branch: which scope a field is in varies from
        // field to field.
        let event_scope = matches!(f.scope, ScopeKind::Payload | ScopeKind::EventContext);
        let owner = if event_scope {
            self.c.cur.index
        } else {
            self.c.stream_global
        };
        f.owner == owner
    }

    /// Bit position of a field in the current packet.
    #[inline(always)]
    fn start(&self, f: FieldRef) -> Option<u64> {
        if !self.owner_ok(f) {
            return None;
        }
        Some(*self.c.marks.get(f.slot as usize)? + f.rel as u64)
    }

    /// An integer or enum field as unsigned. Signed values are sign-extended
    /// then reinterpreted (two's complement).
    #[inline]
    pub fn u64(&self, f: FieldRef) -> Option<u64> {
        self.i64(f).map(|v| v as u64)
    }

    /// An integer or enum field as signed. Unsigned 64-bit values above
    /// `i64::MAX` wrap.
    #[inline]
    pub fn i64(&self, f: FieldRef) -> Option<i64> {
        match f.shape {
            Shape::ByteInt { down, signed } => {
                let pos = self.start(f)?;
                let data: &'a [u8] = self.c.pkt;
                let byte = (pos >> 3) as usize;
                // The field's alignment puts it on a byte (pos & 7 == 0):
                // the value is the low bytes of one little-endian load.
                if let Some(w) = data.get(byte..byte.wrapping_add(8)) {
                    let w = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
                    let top = w << down;
                    return Some(if signed {
                        (top as i64) >> down
                    } else {
                        (top >> down) as i64
                    });
                }
                let spec = IntSpec {
                    bits: 64 - down,
                    signed,
                    be: false,
                };
                read_int(data, pos, &spec)
            }
            Shape::Int(spec) => read_int(self.c.pkt, self.start(f)?, &spec),
            _ => None,
        }
    }

    fn scope_of(&self, f: FieldRef) -> Option<&'a Scope> {
        if !self.owner_ok(f) {
            return None;
        }
        let plan = self.c.plan;
        let sp = &plan.streams[self.c.sp];
        let s = match f.scope {
            ScopeKind::Payload => return self.class().plan().payload.as_ref(),
            ScopeKind::EventContext => return self.class().plan().context.as_ref(),
            ScopeKind::StreamEventContext => sp.event_context,
            ScopeKind::PacketContext => sp.packet_context,
            ScopeKind::EventHeader => sp.event_header,
            ScopeKind::PacketHeader => plan.packet_header,
        }?;
        Some(plan.scope(s))
    }

    /// A string field, or an array/sequence of 8-bit integers (a char
    /// array), up to its first NUL.
    #[inline]
    pub fn str(&self, f: FieldRef) -> Option<&'a [u8]> {
        let data: &'a [u8] = self.c.pkt;
        let (len, elem) = match f.shape {
            Shape::Str => {
                let rest = data.get((self.start(f)? / 8) as usize..)?;
                return memchr(0, rest).map(|i| &rest[..i]);
            }
            Shape::Array { elem, len, .. } => (len as usize, elem),
            Shape::Seq { elem, len_reg, .. } => (
                usize::try_from(*self.c.regs.get(len_reg as usize)?).ok()?,
                elem,
            ),
            _ => return None,
        };
        let pos = self.start(f)?;
        if elem.bits != 8 || !pos.is_multiple_of(8) {
            return None;
        }
        let b = (pos / 8) as usize;
        let bytes = data.get(b..b.checked_add(len)?)?;
        Some(match short_nul(bytes) {
            Some(i) => &bytes[..i],
            None => bytes,
        })
    }

    /// Number of elements of an array or sequence field.
    #[inline]
    pub fn len(&self, f: FieldRef) -> Option<usize> {
        if !self.owner_ok(f) {
            return None;
        }
        match f.shape {
            Shape::Array { len, .. } => Some(len as usize),
            Shape::Seq { len_reg, .. } => usize::try_from(*self.c.regs.get(len_reg as usize)?).ok(),
            _ => {
                let scope = self.scope_of(f)?;
                match &scope.node(f.node)?.kind {
                    Kind::Array { len, .. } => usize::try_from(*len).ok(),
                    Kind::Seq { len_reg, .. } => {
                        usize::try_from(*self.c.regs.get(*len_reg as usize)?).ok()
                    }
                    _ => None,
                }
            }
        }
    }

    /// Element `i` of an integer array or sequence field.
    #[inline]
    pub fn element(&self, f: FieldRef, i: usize) -> Option<i64> {
        let (elem, stride, len) = match f.shape {
            Shape::Array { elem, stride, len } => (elem, stride, len as u64),
            Shape::Seq {
                elem,
                stride,
                len_reg,
            } => (elem, stride, *self.c.regs.get(len_reg as usize)?),
            _ => return None,
        };
        if i as u64 >= len {
            return None;
        }
        let pos = self
            .start(f)?
            .checked_add((stride as u64).checked_mul(i as u64)?)?;
        if pos.saturating_add(elem.bits as u64) > self.c.content_end() {
            return None;
        }
        read_int(self.c.pkt, pos, &elem)
    }

    /// Any field as a generic value (nested structs, variants, floats, enum
    /// labels). Allocates for compound values: meant for printing.
    pub fn value(&self, f: FieldRef) -> Option<Value<'a>> {
        let scope = self.scope_of(f)?;
        let pos = self.start(f)?;
        let mut regs = self.c.regs.clone();
        let mut d = Decoder {
            data: self.c.pkt,
            end: self.c.content_end(),
            regs: &mut regs,
        };
        d.value(scope, f.node, pos).map(|(v, _)| v)
    }

    /// All payload fields, in declaration order, as generic values.
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, Value<'a>)> + 'a {
        let ev = *self;
        self.class()
            .payload_fields()
            .filter_map(move |(name, f)| Some((name, ev.value(f)?)))
    }

    /// The packet-context and context fields (stream event context, event
    /// context) as generic values, for printing.
    pub fn context_fields(&self, kind: ContextKind) -> Vec<(&'a str, Value<'a>)> {
        let scope = match kind {
            ContextKind::Packet => ScopeKind::PacketContext,
            ContextKind::Stream => ScopeKind::StreamEventContext,
            ContextKind::Event => ScopeKind::EventContext,
        };
        let class = self.class();
        class
            .lookup()
            .filter(|(name, _, f, _)| f.scope == scope && !name.contains('.'))
            .filter_map(|(name, _, f, _)| Some((name, self.value(f)?)))
            .collect()
    }
}

/// Which context [`Event::context_fields`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextKind {
    /// `stream.packet.context`.
    Packet,
    /// `stream.event.context`.
    Stream,
    /// `event.context`.
    Event,
}

/// Generic decoding of a node into a [`Value`], with its own registers so
/// nested sequences and variants resolve as they did during the walk.
struct Decoder<'a, 'r> {
    data: &'a [u8],
    end: u64,
    regs: &'r mut Vec<u64>,
}

impl<'a> Decoder<'a, '_> {
    fn value(&mut self, scope: &'a Scope, id: NodeId, pos: u64) -> Option<(Value<'a>, u64)> {
        let n = scope.node(id)?;
        let pos = align_up(pos, n.align);
        match &n.kind {
            Kind::Int {
                spec, labels, base, ..
            } => {
                let raw = read_bits(self.data, pos, *spec)?;
                if let Some(r) = n.reg {
                    if let Some(s) = self.regs.get_mut(r as usize) {
                        *s = raw;
                    }
                }
                let v = to_i64(raw, *spec);
                let val = match labels {
                    Some(ls) => {
                        let x = if spec.signed { v as i128 } else { raw as i128 };
                        let label = ls
                            .iter()
                            .find(|m| m.lo <= x && x <= m.hi)
                            .map(|m| m.label.as_str());
                        Value::Enum(v, label)
                    }
                    None if *base != 10 => Value::Based(raw, *base),
                    None if spec.signed => Value::I64(v),
                    None => Value::U64(raw),
                };
                Some((val, pos + spec.bits as u64))
            }
            Kind::Float { spec } => {
                let raw = read_bits(self.data, pos, *spec)?;
                let f = if spec.bits == 32 {
                    f32::from_bits(raw as u32) as f64
                } else {
                    f64::from_bits(raw)
                };
                Some((Value::F64(f), pos + spec.bits as u64))
            }
            Kind::Str => {
                let b = (pos / 8) as usize;
                let rest = self.data.get(b..(self.end / 8) as usize)?;
                let i = memchr(0, rest)?;
                Some((Value::Str(&rest[..i]), pos + (i as u64 + 1) * 8))
            }
            Kind::Struct { members, .. } => {
                let mut out = Vec::with_capacity(members.len());
                let mut p = pos;
                for &m in members {
                    let (v, np) = self.value(scope, m, p)?;
                    let name = scope.node(m).map_or("", |mn| super::plan::strip(&mn.name));
                    out.push((name, v));
                    p = np;
                }
                Some((Value::Struct(out), p))
            }
            Kind::Array { elem, len } => self.elements(scope, *elem, *len, pos),
            Kind::Seq { elem, len_reg } => {
                let len = *self.regs.get(*len_reg as usize)?;
                self.elements(scope, *elem, len, pos)
            }
            Kind::Variant {
                tag_reg,
                tag_spec,
                options,
                select,
            } => {
                let raw = *self.regs.get(*tag_reg as usize)?;
                let tag = super::bits::to_i128(raw, *tag_spec);
                let &(_, _, opt) = select.iter().find(|(lo, hi, _)| *lo <= tag && tag <= *hi)?;
                let o = *options.get(opt as usize)?;
                let (v, np) = self.value(scope, o, pos)?;
                let name = scope.node(o).map_or("", |on| super::plan::strip(&on.name));
                Some((Value::Variant(name, Box::new(v)), np))
            }
        }
    }

    fn elements(
        &mut self,
        scope: &'a Scope,
        elem: NodeId,
        len: u64,
        pos: u64,
    ) -> Option<(Value<'a>, u64)> {
        let e = scope.node(elem)?;
        if let Kind::Int {
            spec, text: true, ..
        } = e.kind
        {
            if spec.bits == 8 && pos.is_multiple_of(8) {
                let b = (pos / 8) as usize;
                let bytes = self
                    .data
                    .get(b..b.checked_add(usize::try_from(len).ok()?)?)?;
                let s = memchr(0, bytes).map_or(bytes, |i| &bytes[..i]);
                return Some((Value::Str(s), pos + len * 8));
            }
        }
        // Bounded by the bytes left, so corrupt lengths cannot allocate much.
        let room = self.end.saturating_sub(pos);
        if e.min_bits > 0 && len > room / e.min_bits || e.min_bits == 0 && len > 1 << 16 {
            return None;
        }
        let mut out = Vec::with_capacity(len.min(4096) as usize);
        let mut p = pos;
        for _ in 0..len {
            let (v, np) = self.value(scope, elem, p)?;
            out.push(v);
            p = np;
        }
        Some((Value::Array(out), p))
    }
}

/// Position of the first NUL: for the short char arrays of kernel events
/// (`comm[16]`), eight bytes at a time in a register, where calling
/// `memchr` or testing byte by byte costs more.
#[inline(always)]
fn short_nul(bytes: &[u8]) -> Option<usize> {
    if bytes.len() > 32 {
        return memchr(0, bytes);
    }
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // The lowest byte that is zero sets the lowest flagged bit (bytes
        // above it may be flagged wrongly, which does not matter).
        let z = w.wrapping_sub(LO) & !w & HI;
        if z != 0 {
            return Some(at + (z.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == 0)
        .map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::short_nul;

    #[test]
    fn short_nul_finds_the_first_nul() {
        for len in 0..=40usize {
            for nul in 0..=len {
                let mut v: Vec<u8> = (0..len).map(|i| 0x80 | ((i as u8 % 0x7f) + 1)).collect();
                if nul < len {
                    v[nul] = 0;
                    // Bytes after the NUL, zero or 0x01 (the borrow case),
                    // must not matter.
                    for b in v.iter_mut().skip(nul + 1).step_by(2) {
                        *b = 1;
                    }
                }
                let want = v.iter().position(|&b| b == 0);
                assert_eq!(short_nul(&v), want, "len {len} nul {nul}");
            }
        }
    }
}
