//! Decoder for one ftrace ring-buffer sub-buffer ("page"), exactly as a read of
//! `per_cpu/cpuN/trace_pipe_raw` returns it. This is the hot path: it borrows
//! the page bytes, allocates nothing and reads every header with a bounds check.
//!
//! Layout (from `events/header_page`, see [`PageLayout`]): a u64 timestamp, a
//! commit word, then the events. The commit word's low 27 bits are the number
//! of data bytes; bit 31 says events were lost before this page; bit 30 says
//! the number lost is stored as a `long` just after the data.
//!
//! Each event starts with a u32: `type_len` in bits 0..5 and `time_delta` in
//! bits 5..32. The rules below follow the kernel's `kernel/trace/ring_buffer.c`
//! (`rb_event_length`, `rb_update_read_stamp`, `rb_fix_abs_ts`):
//!
//! | type_len | meaning | size |
//! |---|---|---|
//! | 1..=28 | data, `type_len * 4` payload bytes follow | 4 + payload |
//! | 0 | data, the next u32 is the length counting itself, then the payload | 4 + that length |
//! | 29, delta 0 | padding: nothing more on this page | - |
//! | 29, delta != 0 | a discarded event; the next u32 is its length after the header | 4 + that length |
//! | 30 | time extend: `(next u32 << 27) + time_delta` is added to the time | 8 |
//! | 31 | absolute stamp: the same 59-bit value replaces the time | 8 |
//!
//! Data events add their `time_delta` to the running time; padding does not.
//! The absolute stamp carries only 59 bits: the kernel keeps the top five bits
//! of the clock aside, and a reader takes them from the page timestamp.

use crate::header::PageLayout;
use thiserror::Error;

/// Mask of the data length in the commit word.
const COMMIT_LEN_MASK: u64 = (1 << 27) - 1;
/// Commit bit: events were lost between the previous page and this one.
const MISSED_EVENTS: u64 = 1 << 31;
/// Commit bit: the number lost is stored right after the data.
const MISSED_STORED: u64 = 1 << 30;

const TYPE_PADDING: u32 = 29;
const TYPE_TIME_EXTEND: u32 = 30;
/// Bits of the time delta in an event header; also the shift of the high part
/// of an extended time.
const TS_SHIFT: u32 = 27;
/// The top five clock bits that an absolute stamp does not carry.
const TS_MSB: u64 = 0xf8 << 56;

/// Why a page, or an event in it, could not be decoded. Offsets count from the
/// start of the page (so they include the page header).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PageError {
    /// The bytes cannot even hold the page header.
    #[error("page is {len} bytes, shorter than its {need}-byte header")]
    TooShort {
        /// Bytes given.
        len: usize,
        /// Bytes the header needs.
        need: usize,
    },
    /// The commit word claims more data than the page holds.
    #[error(
        "page commit says {data_len} data bytes but only {available} fit; the page is corrupt or was read with the wrong header_page layout"
    )]
    CommitTooLarge {
        /// Data length from the commit word.
        data_len: usize,
        /// Bytes available after the header.
        available: usize,
    },
    /// The missed-events count is flagged as stored but lies outside the page.
    #[error("page flags a stored missed-events count at offset {offset}, past the page end")]
    MissedCountOutside {
        /// Where the count should be.
        offset: usize,
    },
    /// An event header or payload runs past the committed data.
    #[error("corrupt event at page offset {offset}: {reason}; the rest of this page is skipped")]
    Corrupt {
        /// Offset of the event header in the page.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// What a page says about events lost before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// Nothing was lost.
    None,
    /// Events were lost, but the kernel had no room to store how many.
    Unknown,
    /// This many events were lost.
    Count(u64),
}

/// One ring-buffer sub-buffer, borrowed from the bytes it was read into.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    timestamp: u64,
    commit: u64,
    /// The committed event bytes only.
    data: &'a [u8],
    data_offset: usize,
    missed: Missed,
}

/// One data event: its absolute time in trace-clock units and its payload,
/// which starts with the `common_type` u16. The payload length is rounded up to
/// 4 bytes by the kernel, so it may end with padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Timestamp in the instance's trace clock.
    pub ts: u64,
    /// The event payload.
    pub data: &'a [u8],
}

impl<'a> Page<'a> {
    /// Checks the page header and the committed length against the buffer.
    /// `bytes` may be the whole sub-buffer or longer; the committed data must
    /// lie inside both `bytes` and the layout's data area.
    pub fn parse(layout: &PageLayout, bytes: &'a [u8]) -> Result<Page<'a>, PageError> {
        let need = layout.data_offset;
        let too_short = PageError::TooShort {
            len: bytes.len(),
            need,
        };
        let timestamp = read_uint(bytes, layout.timestamp_offset, 8).ok_or(too_short.clone())?;
        let commit =
            read_uint(bytes, layout.commit_offset, layout.commit_size).ok_or(too_short.clone())?;
        let body = bytes.get(need..).ok_or(too_short)?;
        let data_len = (commit & COMMIT_LEN_MASK) as usize;
        let available = body.len().min(layout.data_size);
        let data = body
            .get(..data_len)
            .filter(|_| data_len <= available)
            .ok_or(PageError::CommitTooLarge {
                data_len,
                available,
            })?;
        let missed = if commit & MISSED_EVENTS == 0 {
            Missed::None
        } else if commit & MISSED_STORED == 0 {
            Missed::Unknown
        } else {
            let at = need + data_len;
            let count = (data_len + layout.commit_size <= layout.data_size)
                .then(|| read_uint(bytes, at, layout.commit_size))
                .flatten()
                .ok_or(PageError::MissedCountOutside { offset: at })?;
            Missed::Count(count)
        };
        Ok(Page {
            timestamp,
            commit,
            data,
            data_offset: need,
            missed,
        })
    }

    /// The page timestamp: the time of the first event before its delta.
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// Bytes of committed event data.
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    /// The raw commit word, flags included.
    pub fn commit_raw(&self) -> u64 {
        self.commit
    }

    /// Events lost before this page.
    pub fn missed(&self) -> Missed {
        self.missed
    }

    /// The data events of this page, in order, with absolute timestamps.
    pub fn records(&self) -> Records<'a> {
        Records {
            data: self.data,
            pos: 0,
            base: self.data_offset,
            ts: self.timestamp,
            page_ts: self.timestamp,
            done: false,
        }
    }
}

/// Iterator over the data events of a [`Page`]. After an error it yields
/// nothing more: the rest of a corrupt page cannot be trusted.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of `data` in the page, for error messages.
    base: usize,
    ts: u64,
    page_ts: u64,
    done: bool,
}

impl<'a> Records<'a> {
    /// The running timestamp: after the iterator ends, the time of the last
    /// event or time stamp seen on the page.
    pub fn current_ts(&self) -> u64 {
        self.ts
    }

    #[inline]
    fn word(&self, at: usize) -> Option<u32> {
        let b = self.data.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[cold]
    fn fail(&mut self, reason: &'static str) -> Option<Result<Record<'a>, PageError>> {
        self.done = true;
        Some(Err(PageError::Corrupt {
            offset: self.base + self.pos,
            reason,
        }))
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, PageError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let pos = self.pos;
            let Some(header) = self.word(pos) else {
                self.done = true;
                if pos == self.data.len() {
                    return None;
                }
                return self.fail("an event header is cut off by the end of the data");
            };
            let type_len = header & 0x1f;
            let delta = (header >> 5) as u64;
            match type_len {
                1..=28 => {
                    let end = pos + 4 + type_len as usize * 4;
                    let Some(data) = self.data.get(pos + 4..end) else {
                        return self.fail("an event's payload runs past the committed data");
                    };
                    self.pos = end;
                    self.ts = self.ts.wrapping_add(delta);
                    return Some(Ok(Record { ts: self.ts, data }));
                }
                0 => {
                    let Some(len) = self.word(pos + 4) else {
                        return self.fail("a long event's length word is cut off");
                    };
                    // The length counts its own 4 bytes, then the payload.
                    let Some(payload) = (len as usize).checked_sub(4) else {
                        return self.fail("a long event's length is below 4");
                    };
                    let start = pos + 8;
                    let Some(data) = start
                        .checked_add(payload)
                        .and_then(|end| self.data.get(start..end))
                    else {
                        return self.fail("a long event's payload runs past the committed data");
                    };
                    self.pos = start + payload;
                    self.ts = self.ts.wrapping_add(delta);
                    return Some(Ok(Record { ts: self.ts, data }));
                }
                TYPE_PADDING => {
                    if delta == 0 {
                        // The rest of the page is empty.
                        self.done = true;
                        return None;
                    }
                    let Some(len) = self.word(pos + 4) else {
                        return self.fail("a discarded event's length word is cut off");
                    };
                    let Some(end) = (pos + 4)
                        .checked_add(len as usize)
                        .filter(|&e| e <= self.data.len() && e >= pos + 8)
                    else {
                        return self
                            .fail("a discarded event's length runs past the committed data");
                    };
                    self.pos = end;
                }
                // TYPE_TIME_EXTEND or TYPE_TIME_STAMP: type_len has five bits.
                _ => {
                    let Some(high) = self.word(pos + 4) else {
                        return self.fail("a time extend or stamp is cut off");
                    };
                    let value = ((high as u64) << TS_SHIFT) | delta;
                    self.ts = if type_len == TYPE_TIME_EXTEND {
                        // type_len 31 (absolute stamp) otherwise.
                        self.ts.wrapping_add(value)
                    } else {
                        fix_abs_ts(value, self.page_ts)
                    };
                    self.pos = pos + 8;
                }
            }
        }
        None
    }
}

/// Puts back the top clock bits an absolute stamp lost, from a nearby full
/// timestamp, and carries into bit 59 if the low part wrapped since then.
fn fix_abs_ts(abs: u64, near: u64) -> u64 {
    if near & TS_MSB == 0 {
        return abs;
    }
    let full = abs | (near & TS_MSB);
    if full < near {
        full.wrapping_add(1 << 59)
    } else {
        full
    }
}

/// Reads a little-endian unsigned integer of 4 or 8 bytes.
fn read_uint(bytes: &[u8], at: usize, size: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(size)?)?;
    match size {
        4 => Some(u32::from_le_bytes(b.try_into().ok()?) as u64),
        8 => Some(u64::from_le_bytes(b.try_into().ok()?)),
        _ => None,
    }
}
