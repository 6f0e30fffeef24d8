//! Little-endian field primitives for message bodies: a bounds-checked
//! reader that names the field and offset of every failure, and the
//! matching writers.
//!
//! Strings and byte strings are a u32 length then the bytes; lists are a
//! u32 count then the items. A count is checked against the bytes left
//! (every item takes at least one byte) before anything is allocated.

use crate::error::WireError;

/// Reads fields from one message body.
pub(crate) struct BodyReader<'a> {
    kind: &'static str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BodyReader<'a> {
    pub(crate) fn new(kind: &'static str, bytes: &'a [u8]) -> Self {
        BodyReader {
            kind,
            bytes,
            pos: 0,
        }
    }

    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub(crate) fn bad(&self, field: &'static str, offset: usize, reason: String) -> WireError {
        WireError::BadField {
            kind: self.kind,
            field,
            offset,
            reason,
        }
    }

    pub(crate) fn take(&mut self, field: &'static str, n: u64) -> Result<&'a [u8], WireError> {
        let have = self.remaining();
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&e| e <= self.bytes.len())
            .ok_or(WireError::Truncated {
                kind: self.kind,
                field,
                offset: self.pos,
                need: n,
                have,
            })?;
        let s = self.bytes.get(self.pos..end).ok_or(WireError::Truncated {
            kind: self.kind,
            field,
            offset: self.pos,
            need: n,
            have,
        })?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let s = self.take(field, N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, WireError> {
        Ok(i32::from_le_bytes(self.array(field)?))
    }
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, WireError> {
        Ok(i64::from_le_bytes(self.array(field)?))
    }
    pub(crate) fn bytes16(&mut self, field: &'static str) -> Result<[u8; 16], WireError> {
        self.array(field)
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, WireError> {
        let at = self.pos;
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.bad(field, at, format!("{v} is not a boolean (0 or 1)"))),
        }
    }

    /// A length-prefixed byte string, borrowed.
    pub(crate) fn byte_str(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let len = self.u32(field)?;
        self.take(field, len as u64)
    }

    /// A length-prefixed UTF-8 string, borrowed.
    pub(crate) fn str(&mut self, field: &'static str) -> Result<&'a str, WireError> {
        let at = self.pos;
        let b = self.byte_str(field)?;
        std::str::from_utf8(b).map_err(|e| self.bad(field, at, format!("not UTF-8 ({e})")))
    }

    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, WireError> {
        self.str(field).map(str::to_string)
    }

    /// A list count, checked so that `count * min_item` bytes are left.
    pub(crate) fn count(
        &mut self,
        field: &'static str,
        min_item: usize,
    ) -> Result<usize, WireError> {
        let at = self.pos;
        let n = self.u32(field)? as usize;
        let need = n.saturating_mul(min_item.max(1));
        if need > self.remaining() {
            return Err(self.bad(
                field,
                at,
                format!(
                    "count {n} needs at least {need} bytes but only {} are left",
                    self.remaining()
                ),
            ));
        }
        Ok(n)
    }

    /// The `len` bytes just before the current position.
    pub(crate) fn span_before(&self, len: usize) -> &'a [u8] {
        let start = self.pos.saturating_sub(len);
        self.bytes.get(start..self.pos).unwrap_or(&[])
    }

    /// Trailing bytes are fields a newer minor version appended; they are
    /// skipped so that old decoders keep working.
    pub(crate) fn finish(self) {}
}

/// Appends fields to a message body.
pub(crate) struct BodyWriter<'o> {
    pub(crate) out: &'o mut Vec<u8>,
}

impl BodyWriter<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i32(&mut self, v: i32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bool(&mut self, v: bool) {
        self.out.push(v as u8);
    }
    pub(crate) fn raw(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }
    pub(crate) fn len(&mut self, what: &'static str, n: usize) -> Result<(), WireError> {
        let n = u32::try_from(n).map_err(|_| WireError::Encode {
            what,
            reason: format!("{n} does not fit a u32 length"),
        })?;
        self.u32(n);
        Ok(())
    }
    pub(crate) fn byte_str(&mut self, what: &'static str, b: &[u8]) -> Result<(), WireError> {
        self.len(what, b.len())?;
        self.raw(b);
        Ok(())
    }
    pub(crate) fn str(&mut self, what: &'static str, s: &str) -> Result<(), WireError> {
        self.byte_str(what, s.as_bytes())
    }
}
