//! Batches of pages or packets: borrowed views of a received body, which
//! hand out each item without copying, and builders for senders.
//!
//! A page entry is a u32 length then the page bytes. A packet entry is the
//! 72-byte [`PacketInfo`], a u32 length, then the packet bytes.

use crate::body::BodyReader;
use crate::error::WireError;
use crate::frame::{encode_frame, seal_header, Compression, HEADER_LEN, MAX_BODY};
use crate::message::{kind, Message, PacketInfo, Packets, Pages};

/// Encoded size of a [`PacketInfo`].
pub const PACKET_INFO_LEN: usize = 72;

/// The pages of a [`Pages`] message, validated once when decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageEntries<'a> {
    count: u32,
    bytes: &'a [u8],
}

impl<'a> PageEntries<'a> {
    pub(crate) fn read(r: &mut BodyReader<'a>) -> Result<Self, WireError> {
        let count = r.count("pages", 4)?;
        let mut len = 0usize;
        for _ in 0..count {
            let page = r.byte_str("page")?;
            len += 4 + page.len();
        }
        // Re-borrow the span just walked: it is `len` bytes before the
        // reader's position.
        let bytes = r.span_before(len);
        Ok(PageEntries {
            count: count as u32,
            bytes,
        })
    }

    /// Number of pages.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The encoded entries.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The pages, in order.
    pub fn iter(&self) -> PageIter<'a> {
        PageIter { rest: self.bytes }
    }
}

/// Iterator over the pages of a [`PageEntries`].
#[derive(Debug, Clone)]
pub struct PageIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for PageIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let len = self.rest.get(..4)?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let page = self.rest.get(4..4 + len)?;
        self.rest = self.rest.get(4 + len..)?;
        Some(page)
    }
}

/// The packets of a [`Packets`] message, validated once when decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketEntries<'a> {
    count: u32,
    bytes: &'a [u8],
}

fn info_from(b: &[u8]) -> Option<PacketInfo> {
    let u = |i: usize| -> Option<u64> {
        let s = b.get(i * 8..i * 8 + 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Some(u64::from_le_bytes(a))
    };
    let u32_at = |at: usize| -> Option<u32> {
        let s = b.get(at..at + 4)?;
        Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    Some(PacketInfo {
        packet_size_bits: u(0)?,
        content_size_bits: u(1)?,
        ts_begin: u(2)?,
        ts_end: u(3)?,
        events_discarded: u(4)?,
        stream_class: u(5)?,
        stream_instance: u(6)?,
        packet_seq: u(7)?,
        events: u32_at(64)?,
        cpu: u32_at(68)?,
    })
}

fn info_bytes(i: &PacketInfo, out: &mut Vec<u8>) {
    for v in [
        i.packet_size_bits,
        i.content_size_bits,
        i.ts_begin,
        i.ts_end,
        i.events_discarded,
        i.stream_class,
        i.stream_instance,
        i.packet_seq,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&i.events.to_le_bytes());
    out.extend_from_slice(&i.cpu.to_le_bytes());
}

impl<'a> PacketEntries<'a> {
    pub(crate) fn read(r: &mut BodyReader<'a>) -> Result<Self, WireError> {
        let count = r.count("packets", PACKET_INFO_LEN + 4)?;
        let mut len = 0usize;
        for _ in 0..count {
            let at = r.offset();
            let info = r.take("packet info", PACKET_INFO_LEN as u64)?;
            let packet = r.byte_str("packet")?;
            let Some(info) = info_from(info) else {
                return Err(r.bad("packet info", at, "unreadable".into()));
            };
            // The sizes must describe the bytes sent, or a relay would
            // index a packet that is not there.
            if info.packet_size_bits != packet.len() as u64 * 8
                || info.content_size_bits > info.packet_size_bits
            {
                return Err(r.bad(
                    "packet info",
                    at,
                    format!(
                        "packet_size {} bits and content_size {} bits do not fit the {} bytes sent",
                        info.packet_size_bits,
                        info.content_size_bits,
                        packet.len()
                    ),
                ));
            }
            len += PACKET_INFO_LEN + 4 + packet.len();
        }
        let bytes = r.span_before(len);
        Ok(PacketEntries {
            count: count as u32,
            bytes,
        })
    }

    /// Number of packets.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The encoded entries.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The packets with their index facts, in order.
    pub fn iter(&self) -> PacketIter<'a> {
        PacketIter { rest: self.bytes }
    }
}

/// Iterator over the packets of a [`PacketEntries`].
#[derive(Debug, Clone)]
pub struct PacketIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for PacketIter<'a> {
    type Item = (PacketInfo, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let info = info_from(self.rest.get(..PACKET_INFO_LEN)?)?;
        let l = self.rest.get(PACKET_INFO_LEN..PACKET_INFO_LEN + 4)?;
        let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
        let start = PACKET_INFO_LEN + 4;
        let packet = self.rest.get(start..start + len)?;
        self.rest = self.rest.get(start + len..)?;
        Some((info, packet))
    }
}

fn len32(what: &'static str, n: usize) -> Result<u32, WireError> {
    u32::try_from(n).map_err(|_| WireError::Encode {
        what,
        reason: format!("{n} bytes do not fit a u32 length"),
    })
}

/// Collects pages of one CPU for one [`Pages`] frame.
///
/// The pages are appended once, right behind room for the frame header, so
/// that [`PageBatch::seal`] turns the buffer into an uncompressed frame
/// without copying the pages again.
#[derive(Debug, Clone)]
pub struct PageBatch {
    cpu: u32,
    count: u32,
    /// Frame header room, then `cpu` and `count`, then the entries.
    buf: Vec<u8>,
}

/// Bytes before the first entry: the frame header, `cpu` and `count`.
const PAGES_PREFIX: usize = HEADER_LEN + 8;

impl Default for PageBatch {
    fn default() -> Self {
        PageBatch::new(0)
    }
}

impl PageBatch {
    /// An empty batch for `cpu`.
    pub fn new(cpu: u32) -> PageBatch {
        PageBatch {
            cpu,
            count: 0,
            buf: vec![0; PAGES_PREFIX],
        }
    }

    /// The CPU.
    pub fn cpu(&self) -> u32 {
        self.cpu
    }

    fn entries(&self) -> &[u8] {
        self.buf.get(PAGES_PREFIX..).unwrap_or(&[])
    }

    /// Adds one page.
    pub fn push(&mut self, page: &[u8]) -> Result<(), WireError> {
        let len = len32("page", page.len())?;
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(page);
        self.count += 1;
        Ok(())
    }

    /// Pages in the batch.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether it holds no page.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The body size the batch would encode to.
    pub fn body_len(&self) -> usize {
        self.buf.len() - HEADER_LEN
    }

    /// Empties the batch (keeping its memory) for `cpu`.
    pub fn reset(&mut self, cpu: u32) {
        self.cpu = cpu;
        self.count = 0;
        self.buf.truncate(PAGES_PREFIX);
    }

    /// The batch as a message to encode.
    pub fn message(&self) -> Message<'_> {
        Message::Pages(Pages {
            cpu: self.cpu,
            pages: PageEntries {
                count: self.count,
                bytes: self.entries(),
            },
        })
    }

    /// Turns the batch into a whole `Pages` frame with sequence number `seq`
    /// (at least 1) and empties it. Uncompressed, the frame is the batch's
    /// own buffer, with no copy; compressed, the body is compressed from it.
    pub fn seal(&mut self, seq: u64, compression: Compression) -> Result<Vec<u8>, WireError> {
        if seq == 0 {
            return Err(WireError::BadSequence {
                kind: "Pages",
                seq,
                rule: "sequenced messages start at 1",
            });
        }
        let body_len = self.body_len();
        if body_len > MAX_BODY as usize {
            return Err(WireError::TooLarge {
                what: "frame body to encode",
                len: body_len as u64,
                max: MAX_BODY as u64,
            });
        }
        let (cpu, count) = (self.cpu, self.count);
        if let Some(b) = self.buf.get_mut(HEADER_LEN..PAGES_PREFIX) {
            b[..4].copy_from_slice(&cpu.to_le_bytes());
            b[4..].copy_from_slice(&count.to_le_bytes());
        }
        let frame = if compression == Compression::None {
            let capacity = self.buf.capacity();
            let mut frame = std::mem::replace(&mut self.buf, Vec::with_capacity(capacity));
            seal_header(
                &mut frame,
                kind::PAGES,
                0,
                body_len as u32,
                body_len as u32,
                seq,
            );
            self.buf.resize(PAGES_PREFIX, 0);
            frame
        } else {
            let mut out = Vec::with_capacity(body_len / 2 + HEADER_LEN);
            encode_frame(
                kind::PAGES,
                false,
                seq,
                compression,
                self.entries_with_prefix(),
                &mut out,
            )?;
            out
        };
        self.reset(cpu);
        Ok(frame)
    }

    fn entries_with_prefix(&self) -> &[u8] {
        self.buf.get(HEADER_LEN..).unwrap_or(&[])
    }
}

/// Collects packets of one stream for one [`Packets`] frame.
#[derive(Debug, Clone, Default)]
pub struct PacketBatch {
    stream: String,
    count: u32,
    entries: Vec<u8>,
}

impl PacketBatch {
    /// An empty batch for the stream named `stream`.
    pub fn new(stream: &str) -> PacketBatch {
        PacketBatch {
            stream: stream.to_string(),
            count: 0,
            entries: Vec::new(),
        }
    }

    /// Adds one packet. `info.packet_size_bits` must equal the packet's
    /// length in bits and `content_size_bits` must not exceed it.
    pub fn push(&mut self, info: &PacketInfo, packet: &[u8]) -> Result<(), WireError> {
        let len = len32("packet", packet.len())?;
        if info.packet_size_bits != packet.len() as u64 * 8
            || info.content_size_bits > info.packet_size_bits
        {
            return Err(WireError::Encode {
                what: "packet",
                reason: format!(
                    "packet_size {} bits and content_size {} bits do not fit its {} bytes",
                    info.packet_size_bits,
                    info.content_size_bits,
                    packet.len()
                ),
            });
        }
        info_bytes(info, &mut self.entries);
        self.entries.extend_from_slice(&len.to_le_bytes());
        self.entries.extend_from_slice(packet);
        self.count += 1;
        Ok(())
    }

    /// Packets in the batch.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether it holds no packet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The body size the batch would encode to.
    pub fn body_len(&self) -> usize {
        8 + self.stream.len() + self.entries.len()
    }

    /// Empties the batch (keeping its memory) for the stream `stream`.
    pub fn reset(&mut self, stream: &str) {
        self.stream.clear();
        self.stream.push_str(stream);
        self.count = 0;
        self.entries.clear();
    }

    /// The batch as a message to encode.
    pub fn message(&self) -> Message<'_> {
        Message::Packets(Packets {
            stream: &self.stream,
            packets: PacketEntries {
                count: self.count,
                bytes: &self.entries,
            },
        })
    }
}
