//! The page decoder in reverse: record payloads laid out by a `format`
//! description, and ring-buffer sub-buffers packed from timestamped records
//! the way the kernel writes them. Tests, benchmarks and trace generators use
//! it to make exact inputs; the recording path never encodes.
//!
//! The builder is for trusted callers that know their formats: naming a
//! field the format lacks, or writing a string into an integer, is a bug in
//! the caller and panics with the names involved.

use crate::format::{EventFormat, Field, FieldKind};

/// The largest record length a 4-byte record header can say (28 words).
const MAX_SHORT_RECORD: usize = 28 * 4;
/// The page header: the page timestamp, then the commit word.
const PAGE_HEADER: usize = 16;

/// Builds one record of an event type, field by field, starting from zeros
/// with `common_type` and `common_pid` set.
#[derive(Debug, Clone)]
pub struct RecordBuilder<'f> {
    fmt: &'f EventFormat,
    bytes: Vec<u8>,
}

impl<'f> RecordBuilder<'f> {
    /// A record of `fmt` written by thread `common_pid`.
    pub fn new(fmt: &'f EventFormat, common_pid: i32) -> RecordBuilder<'f> {
        let mut b = RecordBuilder {
            fmt,
            bytes: vec![0u8; fmt.min_record_len() as usize],
        };
        if let Some(f) = fmt.field("common_type").cloned() {
            b.put(&f, 0, i64::from(fmt.id));
        }
        if let Some(f) = fmt.field("common_pid").cloned() {
            b.put(&f, 0, i64::from(common_pid));
        }
        b
    }

    fn field(&self, name: &str) -> Field {
        self.fmt
            .field(name)
            .unwrap_or_else(|| panic!("{} has no field {name}", self.fmt.name))
            .clone()
    }

    fn put(&mut self, f: &Field, at: usize, v: i64) {
        let n = (f.size as usize).min(8);
        let o = f.offset as usize + at;
        self.bytes[o..o + n].copy_from_slice(&v.to_le_bytes()[..n]);
    }

    /// Sets an integer field (truncated to the field's size).
    pub fn int(mut self, name: &str, v: i64) -> Self {
        let f = self.field(name);
        self.put(&f, 0, v);
        self
    }

    /// Sets element `i` of a fixed array field.
    pub fn elem(mut self, name: &str, i: usize, v: u64) -> Self {
        let f = self.field(name);
        let FieldKind::Array { elem_size } = f.kind else {
            panic!("{}: {name} is not an array", self.fmt.name)
        };
        let n = elem_size as usize;
        let o = f.offset as usize + i * n;
        self.bytes[o..o + n].copy_from_slice(&v.to_le_bytes()[..n]);
        self
    }

    /// Sets a string field, fixed (`char[N]`, cut to fit with its NUL) or
    /// dynamic (`__data_loc`, appended with its NUL).
    pub fn str(self, name: &str, s: &str) -> Self {
        let f = self.field(name);
        match f.kind {
            FieldKind::CharArray => {
                let mut b = self;
                let n = s.len().min(f.size as usize - 1);
                let o = f.offset as usize;
                b.bytes[o..o + n].copy_from_slice(&s.as_bytes()[..n]);
                b
            }
            FieldKind::DataLoc { .. } => {
                let mut with_nul = s.as_bytes().to_vec();
                with_nul.push(0);
                self.dyn_bytes(name, &with_nul)
            }
            k => panic!("{}: {name} is {k:?}, not a string", self.fmt.name),
        }
    }

    /// Sets a `__data_loc` field to `data`, appended after the fixed part.
    pub fn dyn_bytes(mut self, name: &str, data: &[u8]) -> Self {
        let f = self.field(name);
        let at = self.bytes.len();
        self.bytes.extend_from_slice(data);
        let loc = ((data.len() as u32) << 16) | at as u32;
        let o = f.offset as usize;
        self.bytes[o..o + 4].copy_from_slice(&loc.to_le_bytes());
        self
    }

    /// The record's bytes.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Packs time-ordered `(timestamp, record)` pairs into sub-buffers of `size`
/// bytes: a page header (timestamp, commit), then each record behind a
/// 4-byte header holding its length in words and its time delta, or an
/// 8-byte one (type_len 0, then the length) when it is long. A delta too
/// large for 27 bits starts a new page, so no time-extend record is needed.
pub fn pack_pages(records: &[(u64, Vec<u8>)], size: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let (mut first, mut prev) = (0u64, 0u64);
    for (ts, rec) in records {
        let len = rec.len().div_ceil(4) * 4;
        let header = if len <= MAX_SHORT_RECORD { 4 } else { 8 };
        let full = data.len() + header + len > size - PAGE_HEADER;
        if !data.is_empty() && (full || ts - prev >= 1 << 27) {
            out.push(seal(first, &data, size));
            data.clear();
        }
        if data.is_empty() {
            first = *ts;
            prev = *ts;
        }
        let delta = ((ts - prev) as u32) << 5;
        prev = *ts;
        if header == 4 {
            data.extend_from_slice(&((len / 4) as u32 | delta).to_le_bytes());
        } else {
            data.extend_from_slice(&delta.to_le_bytes());
            data.extend_from_slice(&((len + 4) as u32).to_le_bytes());
        }
        data.extend_from_slice(rec);
        data.resize(data.len() + len - rec.len(), 0);
    }
    if !data.is_empty() {
        out.push(seal(first, &data, size));
    }
    out
}

/// One sub-buffer: the first record's timestamp, the commit, the data, zeros.
fn seal(first_ts: u64, data: &[u8], size: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(size);
    p.extend_from_slice(&first_ts.to_le_bytes());
    p.extend_from_slice(&(data.len() as u64).to_le_bytes());
    p.extend_from_slice(data);
    p.resize(size, 0);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format;
    use crate::header::PageLayout;
    use crate::page::Page;

    /// This kernel's own sched_switch format.
    const SWITCH: &str = include_str!("../tests/fixtures/formats/sched/sched_switch");

    #[test]
    fn packed_records_decode_back() {
        let fmt = format::parse("sched", SWITCH).unwrap();
        let recs: Vec<(u64, Vec<u8>)> = (0..300u64)
            .map(|i| {
                let r = RecordBuilder::new(&fmt, 7)
                    .str("next_comm", "worker")
                    .int("next_pid", i as i64)
                    .finish();
                // One gap longer than 27 bits of delta.
                (1_000 + i * 500 + if i >= 200 { 1 << 28 } else { 0 }, r)
            })
            .collect();
        let pages = pack_pages(&recs, 4096);
        assert!(pages.len() >= 2);
        let layout = PageLayout {
            data_size: 4096 - PAGE_HEADER,
            ..PageLayout::default_x86_64()
        };
        let mut seen = Vec::new();
        for p in &pages {
            let page = Page::parse(&layout, p).unwrap();
            for r in page.records() {
                let r = r.unwrap();
                let pid = fmt.field("next_pid").unwrap();
                let o = pid.offset as usize;
                let v = i32::from_le_bytes(r.data[o..o + 4].try_into().unwrap());
                seen.push((r.ts, v as u64));
            }
        }
        let want: Vec<(u64, u64)> = recs
            .iter()
            .enumerate()
            .map(|(i, (t, _))| (*t, i as u64))
            .collect();
        assert_eq!(seen, want);
    }
}
