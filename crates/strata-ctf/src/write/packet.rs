//! Packet building: the bytes of one CTF packet of the stream class that
//! [`super::tsdl`] declares, and its index entry.
//!
//! A [`PacketBuilder`] owns one buffer of fixed capacity, allocated once and
//! reused for every packet, so appending events never allocates. Events are
//! written through an [`EventEncoder`] with little-endian writes; an event that
//! does not fit is rolled back whole and reported as [`PacketError::Full`], so
//! the caller flushes the packet and appends the event to the next one.

use thiserror::Error;

use super::model::{HeaderKind, Uuid};
use super::tsdl::STREAM_ID;
use crate::index::IndexEntry;

/// The magic number opening every packet.
pub const PACKET_MAGIC: u32 = 0xC1FC_1FC1;
/// Bytes of the packet header (`magic, uuid[16], stream_id, stream_instance_id`).
pub const HEADER_LEN: usize = 32;
/// Bytes of header and packet context together: where the first event starts.
pub const CONTEXT_END: usize = 84;
/// The default packet capacity: 256 KiB.
pub const DEFAULT_CAPACITY: usize = 256 * 1024;
/// The smallest capacity accepted: room for the headers and a few events.
pub const MIN_CAPACITY: usize = 512;
/// The largest capacity accepted; content sizes are counted in bits in a u64,
/// but a packet is also held in memory per CPU, so keep it sane.
pub const MAX_CAPACITY: usize = 64 * 1024 * 1024;
/// Packets are padded to a multiple of this many bytes, so every packet
/// header in a stream file starts 8-byte aligned.
const PACKET_ALIGN: usize = 8;

// Byte offsets of the packet context fields patched when a packet closes.
const OFF_TS_BEGIN: usize = 32;
const OFF_TS_END: usize = 40;
const OFF_CONTENT_SIZE: usize = 48;
const OFF_PACKET_SIZE: usize = 56;
const OFF_SEQ: usize = 64;
const OFF_DISCARDED: usize = 72;
const OFF_CPU_ID: usize = 80;

/// Why an event or packet could not be built.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// The event does not fit in what is left of the packet: finish this
    /// packet, begin the next, and append the event again.
    #[error("the packet is full; finish it and append the event to a new packet")]
    Full,
    /// The event does not fit even in an empty packet.
    #[error("an event of at least {size} bytes does not fit in an empty packet of {capacity} bytes; raise the packet capacity")]
    TooLarge {
        /// Bytes the event needed, at least.
        size: usize,
        /// The packet capacity.
        capacity: usize,
    },
    /// No packet is open: call [`PacketBuilder::begin`] first.
    #[error("no packet is open; begin a packet before appending events")]
    NotOpen,
    /// The requested capacity is outside the accepted range.
    #[error("packet capacity {0} is outside {MIN_CAPACITY}..={MAX_CAPACITY} bytes")]
    BadCapacity(usize),
}

/// What the packets of one stream share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketConfig {
    /// The trace UUID copied into each packet header.
    pub trace_uuid: Uuid,
    /// The event header layout the metadata declares.
    pub header: HeaderKind,
    /// Packet capacity in bytes, headers included.
    pub capacity: usize,
}

/// The values a packet is opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketStart {
    /// The stream instance (LTTng uses the CPU number).
    pub stream_instance_id: u64,
    /// The `cpu_id` packet context field.
    pub cpu_id: u32,
    /// The packet's sequence number within its stream.
    pub seq: u64,
    /// The packet's start time; no event of the packet may be earlier.
    pub ts_begin: u64,
}

/// A closed packet: its bytes and index entry.
#[derive(Debug)]
pub struct FinishedPacket<'a> {
    /// The whole packet, padding included.
    pub bytes: &'a [u8],
    /// The entry for `index/<stream>.idx`.
    pub index: IndexEntry,
}

/// Builds the packets of one stream in a reused buffer.
#[derive(Debug)]
pub struct PacketBuilder {
    buf: Box<[u8]>,
    pos: usize,
    header: HeaderKind,
    trace_uuid: Uuid,
    open: Option<PacketStart>,
    events: u64,
    last_ts: u64,
    clamped: u64,
}

impl PacketBuilder {
    /// A builder with its buffer allocated once, `config.capacity` bytes.
    pub fn new(config: PacketConfig) -> Result<PacketBuilder, PacketError> {
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&config.capacity) {
            return Err(PacketError::BadCapacity(config.capacity));
        }
        Ok(PacketBuilder {
            buf: vec![0u8; config.capacity].into_boxed_slice(),
            pos: 0,
            header: config.header,
            trace_uuid: config.trace_uuid,
            open: None,
            events: 0,
            last_ts: 0,
            clamped: 0,
        })
    }

    /// The packet capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Whether a packet is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Events in the open packet.
    pub fn event_count(&self) -> u64 {
        self.events
    }

    /// Bytes used in the open packet, headers included.
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Whether the open packet holds no event (or no packet is open).
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The timestamp of the last event written (or the open packet's start).
    pub fn last_timestamp(&self) -> u64 {
        self.last_ts
    }

    /// How many events so far had a timestamp earlier than the one before and
    /// were written with the earlier one's instead, to keep the stream ordered.
    pub fn clamped_events(&self) -> u64 {
        self.clamped
    }

    /// Opens a packet, discarding any unfinished one, and writes its header
    /// and context (sizes are filled in by [`PacketBuilder::finish`]).
    pub fn begin(&mut self, start: PacketStart) {
        let b = &mut self.buf;
        b[..CONTEXT_END].fill(0);
        b[0..4].copy_from_slice(&PACKET_MAGIC.to_le_bytes());
        b[4..20].copy_from_slice(&self.trace_uuid.0);
        b[20..24].copy_from_slice(&STREAM_ID.to_le_bytes());
        b[24..32].copy_from_slice(&start.stream_instance_id.to_le_bytes());
        b[OFF_TS_BEGIN..OFF_TS_BEGIN + 8].copy_from_slice(&start.ts_begin.to_le_bytes());
        b[OFF_SEQ..OFF_SEQ + 8].copy_from_slice(&start.seq.to_le_bytes());
        b[OFF_CPU_ID..OFF_CPU_ID + 4].copy_from_slice(&start.cpu_id.to_le_bytes());
        self.pos = CONTEXT_END;
        self.events = 0;
        self.last_ts = start.ts_begin;
        self.open = Some(start);
    }

    /// Starts an event of class `id` at time `ts` and writes its header. Write
    /// the context and payload through the encoder, then
    /// [`EventEncoder::commit`] it; dropping it uncommitted rolls it back.
    ///
    /// A `ts` earlier than the previous event's is written as the previous
    /// one's, since readers require time to move forward within a stream.
    pub fn event(&mut self, id: u32, ts: u64) -> EventEncoder<'_> {
        let start = self.pos;
        let saved_ts = self.last_ts;
        let mut enc = EventEncoder {
            overflow: false,
            start,
            saved_ts,
            committed: false,
            b: self,
        };
        if enc.b.open.is_none() {
            enc.overflow = true;
            return enc;
        }
        let ts = if ts < saved_ts {
            enc.b.clamped += 1;
            saved_ts
        } else {
            ts
        };
        let kind = enc.b.header;
        let bits = kind.short_ts_bits();
        // A short timestamp holds the low bits only; a reader rebuilds the
        // full value from the previous one assuming at most one wrap, which
        // is right exactly when the delta is below 2^bits. The first event of
        // a packet is always full so no reader has to rely on the packet
        // context for the base.
        let short = enc.b.events > 0 && id < kind.extended_id() && ts - saved_ts < (1u64 << bits);
        match (kind, short) {
            (HeaderKind::Compact, true) => {
                let low = (ts & ((1 << 27) - 1)) as u32;
                enc.u32(id | (low << 5));
            }
            (HeaderKind::Compact, false) => {
                enc.u8(31);
                enc.u32(id);
                enc.u64(ts);
            }
            (HeaderKind::Large, true) => {
                enc.u16(id as u16);
                enc.u32(ts as u32);
            }
            (HeaderKind::Large, false) => {
                enc.u16(65535);
                enc.u32(id);
                enc.u64(ts);
            }
        }
        enc.b.last_ts = ts;
        enc
    }

    /// Appends an event of class `id` at time `ts` whose payload (context
    /// and fields) takes exactly `payload_len` bytes: writes its header and
    /// returns the payload area for the caller to fill. Every byte of it must
    /// be written, since the buffer is reused between packets.
    ///
    /// This is the fast path for event classes of fixed size: one capacity
    /// check for the whole event instead of one per field. The header and
    /// the timestamp rules are those of [`PacketBuilder::event`]. On error
    /// nothing is written.
    #[inline(always)]
    pub fn append(
        &mut self,
        id: u32,
        ts: u64,
        payload_len: usize,
    ) -> Result<&mut [u8], PacketError> {
        if self.open.is_none() {
            return Err(PacketError::NotOpen);
        }
        let last = self.last_ts;
        let clamped = ts < last;
        let ts = ts.max(last);
        let kind = self.header;
        let short = self.events > 0
            && id < kind.extended_id()
            && ts - last < (1u64 << kind.short_ts_bits());
        let header_len = match (kind, short) {
            (HeaderKind::Compact, true) => 4,
            (HeaderKind::Compact, false) => 13,
            (HeaderKind::Large, true) => 6,
            (HeaderKind::Large, false) => 14,
        };
        let start = self.pos;
        let end = start + header_len + payload_len;
        let capacity = self.buf.len();
        let Some(event) = self.buf.get_mut(start..end) else {
            return Err(if self.events == 0 {
                PacketError::TooLarge {
                    size: header_len + payload_len,
                    capacity,
                }
            } else {
                PacketError::Full
            });
        };
        let (header, payload) = event.split_at_mut(header_len);
        match (kind, short) {
            (HeaderKind::Compact, true) => {
                let low = (ts & ((1 << 27) - 1)) as u32;
                header.copy_from_slice(&(id | (low << 5)).to_le_bytes());
            }
            (HeaderKind::Compact, false) => {
                header[0] = 31;
                header[1..5].copy_from_slice(&id.to_le_bytes());
                header[5..13].copy_from_slice(&ts.to_le_bytes());
            }
            (HeaderKind::Large, true) => {
                header[0..2].copy_from_slice(&(id as u16).to_le_bytes());
                header[2..6].copy_from_slice(&(ts as u32).to_le_bytes());
            }
            (HeaderKind::Large, false) => {
                header[0..2].copy_from_slice(&u16::MAX.to_le_bytes());
                header[2..6].copy_from_slice(&id.to_le_bytes());
                header[6..14].copy_from_slice(&ts.to_le_bytes());
            }
        }
        self.pos = end;
        self.events += 1;
        self.last_ts = ts;
        self.clamped += clamped as u64;
        Ok(payload)
    }

    /// Closes the open packet: fills in `timestamp_end` (at least the last
    /// event's time), the running `events_discarded`, the content and packet
    /// sizes, pads it, and returns its bytes and index entry. `offset` is where
    /// the packet will start in its stream file. Returns `None` when no packet
    /// is open.
    pub fn finish(
        &mut self,
        ts_end: u64,
        events_discarded: u64,
        offset: u64,
    ) -> Option<FinishedPacket<'_>> {
        let start = self.open.take()?;
        let ts_end = ts_end.max(self.last_ts);
        let content = self.pos;
        let size = content.div_ceil(PACKET_ALIGN) * PACKET_ALIGN;
        let size = size.min(self.buf.len());
        self.buf[content..size].fill(0);
        let b = &mut self.buf;
        b[OFF_TS_END..OFF_TS_END + 8].copy_from_slice(&ts_end.to_le_bytes());
        b[OFF_CONTENT_SIZE..OFF_CONTENT_SIZE + 8]
            .copy_from_slice(&(content as u64 * 8).to_le_bytes());
        b[OFF_PACKET_SIZE..OFF_PACKET_SIZE + 8].copy_from_slice(&(size as u64 * 8).to_le_bytes());
        b[OFF_DISCARDED..OFF_DISCARDED + 8].copy_from_slice(&events_discarded.to_le_bytes());
        let index = IndexEntry {
            offset,
            packet_size: size as u64 * 8,
            content_size: content as u64 * 8,
            timestamp_begin: start.ts_begin,
            timestamp_end: ts_end,
            events_discarded,
            stream_id: STREAM_ID as u64,
            stream_instance_id: start.stream_instance_id,
            packet_seq_num: start.seq,
        };
        self.pos = 0;
        self.events = 0;
        Some(FinishedPacket {
            bytes: &self.buf[..size],
            index,
        })
    }
}

/// Writes one event's fields into the open packet. Every write is
/// little-endian and bounds-checked; on overflow later writes are skipped and
/// [`EventEncoder::commit`] reports it.
#[derive(Debug)]
pub struct EventEncoder<'a> {
    b: &'a mut PacketBuilder,
    start: usize,
    saved_ts: u64,
    overflow: bool,
    committed: bool,
}

impl EventEncoder<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        let end = self.b.pos + bytes.len();
        match self.b.buf.get_mut(self.b.pos..end) {
            Some(dst) if !self.overflow => {
                dst.copy_from_slice(bytes);
                self.b.pos = end;
            }
            _ => self.overflow = true,
        }
    }

    /// Pads with zeros to a multiple of `bytes` from the packet start.
    #[inline]
    pub fn align(&mut self, bytes: usize) {
        if bytes > 1 {
            let pad = self.b.pos.next_multiple_of(bytes) - self.b.pos;
            self.zeros(pad);
        }
    }

    /// Writes `n` zero bytes.
    #[inline]
    pub fn zeros(&mut self, n: usize) {
        let end = self.b.pos + n;
        match self.b.buf.get_mut(self.b.pos..end) {
            Some(dst) if !self.overflow => {
                dst.fill(0);
                self.b.pos = end;
            }
            _ => self.overflow = true,
        }
    }

    /// Writes a u8.
    #[inline]
    pub fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }
    /// Writes a u16.
    #[inline]
    pub fn u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }
    /// Writes a u32.
    #[inline]
    pub fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }
    /// Writes a u64.
    #[inline]
    pub fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
    /// Writes an i32.
    #[inline]
    pub fn i32(&mut self, v: i32) {
        self.put(&v.to_le_bytes());
    }
    /// Writes an i64.
    #[inline]
    pub fn i64(&mut self, v: i64) {
        self.put(&v.to_le_bytes());
    }

    /// Writes the low `bytes` bytes (1, 2, 4 or 8) of `v`, which is how an
    /// integer of that width holds a (sign- or zero-extended) value.
    #[inline]
    pub fn int(&mut self, bytes: usize, v: u64) {
        let all = v.to_le_bytes();
        match all.get(..bytes) {
            Some(low) => self.put(low),
            None => self.overflow = true,
        }
    }

    /// Writes raw bytes.
    #[inline]
    pub fn bytes(&mut self, b: &[u8]) {
        self.put(b);
    }

    /// Writes a NUL-terminated string: `s` up to its first NUL, then a NUL.
    #[inline]
    pub fn string(&mut self, s: &[u8]) {
        let s = match memchr::memchr(0, s) {
            Some(n) => &s[..n],
            None => s,
        };
        self.put(s);
        self.put(&[0]);
    }

    /// Writes a fixed `char[len]` text field: `s` up to its first NUL, cut to
    /// `len` bytes and padded with NULs.
    #[inline]
    pub fn text_array(&mut self, s: &[u8], len: usize) {
        let s = match memchr::memchr(0, s) {
            Some(n) => &s[..n],
            None => s,
        };
        let n = s.len().min(len);
        self.put(&s[..n]);
        self.zeros(len - n);
    }

    /// Bytes this event takes so far, header included.
    pub fn len(&self) -> usize {
        self.b.pos - self.start
    }

    /// Whether nothing was written (only possible when no packet is open).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the event. On overflow the event is rolled back and the error
    /// says whether a fresh packet would hold it.
    pub fn commit(mut self) -> Result<(), PacketError> {
        if self.b.open.is_none() {
            return Err(PacketError::NotOpen);
        }
        if self.overflow {
            let capacity = self.b.buf.len();
            return Err(if self.b.events == 0 {
                PacketError::TooLarge {
                    size: capacity - self.start + 1,
                    capacity,
                }
            } else {
                PacketError::Full
            });
        }
        self.committed = true;
        self.b.events += 1;
        Ok(())
    }
}

impl Drop for EventEncoder<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.b.pos = self.start;
            self.b.last_ts = self.saved_ts;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(kind: HeaderKind, cap: usize) -> PacketBuilder {
        PacketBuilder::new(PacketConfig {
            trace_uuid: Uuid([7; 16]),
            header: kind,
            capacity: cap,
        })
        .unwrap()
    }

    fn le64(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn packet_bytes_and_index() {
        let mut p = builder(HeaderKind::Large, 4096);
        p.begin(PacketStart {
            stream_instance_id: 3,
            cpu_id: 3,
            seq: 9,
            ts_begin: 1000,
        });
        let mut e = p.event(5, 1000);
        e.i32(-2);
        e.text_array(b"bash\0junk", 16);
        e.string(b"x");
        e.commit().unwrap();
        let mut e = p.event(6, 1010);
        e.u64(42);
        e.commit().unwrap();
        let done = p.finish(1020, 4, 8192).unwrap();
        let b = done.bytes;
        assert_eq!(&b[0..4], &PACKET_MAGIC.to_le_bytes());
        assert_eq!(&b[4..20], &[7; 16]);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 0);
        assert_eq!(le64(b, 24), 3);
        assert_eq!(le64(b, OFF_TS_BEGIN), 1000);
        assert_eq!(le64(b, OFF_TS_END), 1020);
        assert_eq!(le64(b, OFF_SEQ), 9);
        assert_eq!(le64(b, OFF_DISCARDED), 4);
        // First event: extended large header (2 + 4 + 8) then 4 + 16 + 2.
        let ev1 = CONTEXT_END;
        assert_eq!(&b[ev1..ev1 + 2], &[0xff, 0xff]);
        assert_eq!(
            u32::from_le_bytes(b[ev1 + 2..ev1 + 6].try_into().unwrap()),
            5
        );
        assert_eq!(le64(b, ev1 + 6), 1000);
        assert_eq!(
            i32::from_le_bytes(b[ev1 + 14..ev1 + 18].try_into().unwrap()),
            -2
        );
        assert_eq!(&b[ev1 + 18..ev1 + 34], b"bash\0\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(&b[ev1 + 34..ev1 + 36], b"x\0");
        // Second event: compact large header, id then the 32-bit timestamp.
        let ev2 = ev1 + 36;
        assert_eq!(u16::from_le_bytes(b[ev2..ev2 + 2].try_into().unwrap()), 6);
        assert_eq!(
            u32::from_le_bytes(b[ev2 + 2..ev2 + 6].try_into().unwrap()),
            1010
        );
        let content = ev2 + 6 + 8;
        assert_eq!(le64(b, OFF_CONTENT_SIZE), content as u64 * 8);
        assert_eq!(b.len() % 8, 0);
        assert_eq!(le64(b, OFF_PACKET_SIZE), b.len() as u64 * 8);
        let i = done.index;
        assert_eq!(
            (
                i.offset,
                i.content_size,
                i.packet_size,
                i.timestamp_begin,
                i.timestamp_end
            ),
            (8192, content as u64 * 8, b.len() as u64 * 8, 1000, 1020)
        );
        assert_eq!(
            (i.events_discarded, i.stream_instance_id, i.packet_seq_num),
            (4, 3, 9)
        );
    }

    #[test]
    fn compact_header_switches_to_extended_across_a_long_gap() {
        let mut p = builder(HeaderKind::Compact, 4096);
        p.begin(PacketStart::default());
        for (id, ts) in [
            (1, 10u64),
            (2, 20),
            (3, 20 + (1 << 27) - 1),
            (4, 20 + (1 << 27) - 1 + (1 << 27)),
        ] {
            p.event(id, ts).commit().unwrap();
        }
        // An id past 30 needs the extended form even with a small delta.
        p.event(40, 20 + (2 << 27)).commit().unwrap();
        let done = p.finish(0, 0, 0).unwrap();
        let b = &done.bytes[CONTEXT_END..];
        // 1: extended (first in packet) = 13 bytes.
        assert_eq!(b[0], 31);
        assert_eq!(le64(b, 5), 10);
        // 2: compact, delta 10.
        let w = u32::from_le_bytes(b[13..17].try_into().unwrap());
        assert_eq!((w & 31, w >> 5), (2, 20));
        // 3: compact, delta 2^27 - 1 (still representable).
        let w = u32::from_le_bytes(b[17..21].try_into().unwrap());
        assert_eq!(
            (w & 31, (w >> 5) as u64),
            (3, (20 + (1u64 << 27) - 1) & ((1 << 27) - 1))
        );
        // 4: delta exactly 2^27: extended.
        assert_eq!(b[21], 31);
        assert_eq!(u32::from_le_bytes(b[22..26].try_into().unwrap()), 4);
        assert_eq!(le64(b, 26), 20 + (1 << 27) - 1 + (1 << 27));
        // 5: id 40 with a small delta: extended.
        assert_eq!(b[34], 31);
        assert_eq!(u32::from_le_bytes(b[35..39].try_into().unwrap()), 40);
    }

    #[test]
    fn large_header_goes_extended_after_four_seconds() {
        let mut p = builder(HeaderKind::Large, 4096);
        p.begin(PacketStart::default());
        p.event(1, 0).commit().unwrap();
        p.event(1, 4_000_000_000).commit().unwrap(); // < 2^32 ns
        p.event(1, 4_000_000_000 + 4_400_000_000).commit().unwrap(); // > 2^32 ns gap
        let done = p.finish(0, 0, 0).unwrap();
        let b = &done.bytes[CONTEXT_END..];
        assert_eq!(&b[0..2], &[0xff, 0xff]);
        assert_eq!(u16::from_le_bytes(b[14..16].try_into().unwrap()), 1);
        assert_eq!(&b[20..22], &[0xff, 0xff]);
        assert_eq!(le64(b, 26), 8_400_000_000);
    }

    #[test]
    fn full_packets_roll_back_whole_events() {
        let mut p = builder(HeaderKind::Large, MIN_CAPACITY);
        p.begin(PacketStart::default());
        let mut n = 0;
        loop {
            let mut e = p.event(1, n);
            e.bytes(&[0xab; 40]);
            match e.commit() {
                Ok(()) => n += 1,
                Err(err) => {
                    assert_eq!(err, PacketError::Full);
                    break;
                }
            }
        }
        let used = p.len();
        assert!(
            used <= MIN_CAPACITY && used + 46 > MIN_CAPACITY,
            "used {used}"
        );
        assert_eq!(p.event_count(), n);
        assert_eq!(p.last_timestamp(), n - 1);
        // An event bigger than any packet says so.
        let done = p.finish(0, 0, 0).unwrap();
        assert_eq!(done.bytes.len() % 8, 0);
        p.begin(PacketStart::default());
        let mut e = p.event(1, 0);
        e.bytes(&[0; MIN_CAPACITY]);
        assert!(matches!(e.commit(), Err(PacketError::TooLarge { .. })));
        // Dropped without commit: rolled back.
        let mut e = p.event(1, 0);
        e.u64(1);
        drop(e);
        assert_eq!(p.len(), CONTEXT_END);
    }

    #[test]
    fn no_open_packet_and_time_going_back() {
        let mut p = builder(HeaderKind::Large, 4096);
        assert_eq!(p.event(1, 0).commit(), Err(PacketError::NotOpen));
        assert!(p.finish(0, 0, 0).is_none());
        p.begin(PacketStart {
            ts_begin: 100,
            ..PacketStart::default()
        });
        p.event(1, 50).commit().unwrap();
        assert_eq!(p.clamped_events(), 1);
        assert_eq!(p.last_timestamp(), 100);
        assert!(PacketBuilder::new(PacketConfig {
            trace_uuid: Uuid::default(),
            header: HeaderKind::Large,
            capacity: 10,
        })
        .is_err());
    }
}
