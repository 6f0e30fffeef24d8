//! The frame envelope: a fixed 32-byte header, then the body.
//!
//! ```text
//! offset size field
//!  0     4    magic "STRW"
//!  4     1    frame layout version (1)
//!  5     1    message kind
//!  6     1    flags: bits 0-1 compression (0 none, 1 lz4, 2 zstd),
//!                    bit 2 ignorable (a receiver that does not know the kind skips it),
//!                    bits 3-7 zero
//!  7     1    zero
//!  8     4    body length on the wire (after compression)
//! 12     4    body length after decompression (equal to the above when not compressed)
//! 16     8    sequence number (sequenced kinds: >= 1; all others: 0)
//! 24     4    CRC-32 (IEEE) of header bytes 0..24 followed by the wire body
//! 28     4    zero
//! ```
//!
//! All integers are little-endian. Both lengths are checked against the
//! receiver's limit (at most [`MAX_BODY`]) as soon as the header is in, before
//! any buffer is sized for the body.

use crate::error::WireError;
use crate::message::Message;

/// The four bytes that open every frame.
pub const MAGIC: [u8; 4] = *b"STRW";
/// The frame layout version this crate reads and writes.
pub const FRAME_VERSION: u8 = 1;
/// Size of the frame header.
pub const HEADER_LEN: usize = 32;
/// The hard ceiling on a body, compressed or not: no decoder accepts more,
/// whatever limit it is given.
pub const MAX_BODY: u32 = 16 << 20;
/// A sensible default limit for receivers.
pub const DEFAULT_MAX_BODY: u32 = 4 << 20;

const FLAG_COMPRESSION_MASK: u8 = 0b11;
const FLAG_IGNORABLE: u8 = 0b100;
const FLAG_RESERVED: u8 = !(FLAG_COMPRESSION_MASK | FLAG_IGNORABLE);

/// How a frame body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Compression {
    /// Sent as it is.
    #[default]
    None,
    /// LZ4 block format (`lz4_flex`), the decompressed size from the header.
    Lz4,
    /// A zstd frame (level 1 when encoding).
    Zstd,
}

impl Compression {
    /// The code in the frame flags.
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd => 2,
        }
    }

    /// The compression a flags code names.
    pub fn from_code(code: u8) -> Result<Compression, WireError> {
        match code {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Lz4),
            2 => Ok(Compression::Zstd),
            c => Err(WireError::UnknownCompression(c)),
        }
    }

    /// The name users type: `none`, `lz4`, `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "off" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!(
                "unknown compression '{other}': use none, lz4 or zstd"
            )),
        }
    }
}

/// The decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The message kind byte.
    pub kind: u8,
    /// How the body is compressed.
    pub compression: Compression,
    /// Whether a receiver that does not know `kind` may skip the frame.
    pub ignorable: bool,
    /// Body bytes on the wire.
    pub body_len: u32,
    /// Body bytes after decompression.
    pub raw_len: u32,
    /// The sequence number (0 for unsequenced kinds).
    pub seq: u64,
    /// The CRC-32 in the header.
    pub crc: u32,
}

impl FrameHeader {
    /// Total frame size on the wire.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize
    }
}

/// Parses and checks a header against `max_body` (clamped to [`MAX_BODY`]).
/// No allocation depends on the lengths before this returns `Ok`.
pub fn parse_header(bytes: &[u8; HEADER_LEN], max_body: u32) -> Result<FrameHeader, WireError> {
    let max = max_body.min(MAX_BODY);
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if magic != MAGIC {
        return Err(WireError::BadMagic { found: magic });
    }
    if bytes[4] != FRAME_VERSION {
        return Err(WireError::UnsupportedFrameVersion(bytes[4]));
    }
    let flags = bytes[6];
    if flags & FLAG_RESERVED != 0 {
        return Err(WireError::Reserved {
            what: "flags",
            value: flags as u64,
        });
    }
    if bytes[7] != 0 {
        return Err(WireError::Reserved {
            what: "header byte 7",
            value: bytes[7] as u64,
        });
    }
    let le32 =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let reserved = le32(28);
    if reserved != 0 {
        return Err(WireError::Reserved {
            what: "header bytes 28..32",
            value: reserved as u64,
        });
    }
    let compression = Compression::from_code(flags & FLAG_COMPRESSION_MASK)?;
    let body_len = le32(8);
    let raw_len = le32(12);
    for (what, len) in [
        ("frame body", body_len),
        ("decompressed frame body", raw_len),
    ] {
        if len > max {
            return Err(WireError::TooLarge {
                what,
                len: len as u64,
                max: max as u64,
            });
        }
    }
    if compression == Compression::None && raw_len != body_len {
        return Err(WireError::BadField {
            kind: "frame header",
            field: "raw_len",
            offset: 12,
            reason: format!(
                "an uncompressed body must declare equal lengths, got {body_len} and {raw_len}"
            ),
        });
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[16..24]);
    Ok(FrameHeader {
        kind: bytes[5],
        compression,
        ignorable: flags & FLAG_IGNORABLE != 0,
        body_len,
        raw_len,
        seq: u64::from_le_bytes(seq),
        crc: le32(24),
    })
}

fn checksum(header: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header.get(..24).unwrap_or(header));
    h.update(body);
    h.finalize()
}

/// What [`split_frame`] found at the start of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split<'a> {
    /// The input holds no whole frame yet: at least this many more bytes are
    /// needed (the rest of the header, or the rest of the body once the
    /// header is in).
    NeedMore(usize),
    /// A whole, checksummed frame.
    Frame {
        /// Its header.
        header: FrameHeader,
        /// Its body as sent (still compressed).
        wire_body: &'a [u8],
        /// Bytes of input it takes, header included.
        len: usize,
    },
}

/// Finds the frame at the start of `input`, which may hold a partial frame,
/// exactly one, or more. Garbage is refused as soon as the magic bytes
/// received so far differ.
pub fn split_frame(input: &[u8], max_body: u32) -> Result<Split<'_>, WireError> {
    let Some(head) = input.get(..HEADER_LEN) else {
        let have = input.len().min(MAGIC.len());
        if input.get(..have) != MAGIC.get(..have) {
            let mut found = [0u8; 4];
            found[..have].copy_from_slice(&input[..have]);
            return Err(WireError::BadMagic { found });
        }
        return Ok(Split::NeedMore(HEADER_LEN - input.len()));
    };
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(head);
    let header = parse_header(&h, max_body)?;
    let len = header.frame_len();
    let Some(wire_body) = input.get(HEADER_LEN..len) else {
        return Ok(Split::NeedMore(len - input.len()));
    };
    let computed = checksum(head, wire_body);
    if computed != header.crc {
        return Err(WireError::Checksum {
            expected: header.crc,
            computed,
        });
    }
    Ok(Split::Frame {
        header,
        wire_body,
        len,
    })
}

/// Returns the decompressed body: `wire_body` itself when it is not
/// compressed, otherwise the bytes decompressed into `scratch`, which must
/// come out exactly `header.raw_len` long.
pub fn decompress<'a>(
    header: &FrameHeader,
    wire_body: &'a [u8],
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], WireError> {
    let raw = header.raw_len as usize;
    match header.compression {
        Compression::None => Ok(wire_body),
        Compression::Lz4 => {
            scratch.clear();
            scratch.resize(raw, 0);
            let n = lz4_flex::block::decompress_into(wire_body, scratch).map_err(|e| {
                WireError::Decompress {
                    codec: "lz4",
                    reason: e.to_string(),
                }
            })?;
            if n != raw {
                return Err(WireError::Decompress {
                    codec: "lz4",
                    reason: format!("got {n} bytes, the header declares {raw}"),
                });
            }
            Ok(scratch.as_slice())
        }
        Compression::Zstd => {
            scratch.clear();
            // `raw` was checked against the limit: the output can never
            // grow past it, whatever the compressed bytes claim.
            let mut d = zstd::bulk::Decompressor::new().map_err(|e| WireError::Decompress {
                codec: "zstd",
                reason: e.to_string(),
            })?;
            scratch.reserve(raw);
            let n =
                d.decompress_to_buffer(wire_body, scratch)
                    .map_err(|e| WireError::Decompress {
                        codec: "zstd",
                        reason: e.to_string(),
                    })?;
            if n != raw {
                return Err(WireError::Decompress {
                    codec: "zstd",
                    reason: format!("got {n} bytes, the header declares {raw}"),
                });
            }
            Ok(scratch.as_slice())
        }
    }
}

/// Appends one frame to `out`: the header, then `body` compressed with
/// `compression` (sent uncompressed instead when compressing does not make
/// it smaller). `body` must be at most [`MAX_BODY`] bytes.
pub fn encode_frame(
    kind: u8,
    ignorable: bool,
    seq: u64,
    compression: Compression,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    if body.len() > MAX_BODY as usize {
        return Err(WireError::TooLarge {
            what: "frame body to encode",
            len: body.len() as u64,
            max: MAX_BODY as u64,
        });
    }
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    let mut used = Compression::None;
    if compression != Compression::None && body.len() >= 64 {
        let at = out.len();
        match compression {
            Compression::Lz4 => {
                out.resize(at + lz4_flex::block::get_maximum_output_size(body.len()), 0);
                match lz4_flex::block::compress_into(body, &mut out[at..]) {
                    Ok(n) if n < body.len() => {
                        out.truncate(at + n);
                        used = Compression::Lz4;
                    }
                    _ => out.truncate(at),
                }
            }
            Compression::Zstd => {
                // Level 1: the fastest; pages compress well even so.
                if let Ok(c) = zstd::bulk::compress(body, 1) {
                    if c.len() < body.len() {
                        out.extend_from_slice(&c);
                        used = Compression::Zstd;
                    }
                }
            }
            Compression::None => {}
        }
    }
    if used == Compression::None {
        out.extend_from_slice(body);
    }
    let body_len = (out.len() - start - HEADER_LEN) as u32;
    let flags = used.code() | if ignorable { FLAG_IGNORABLE } else { 0 };
    seal_header(
        &mut out[start..],
        kind,
        flags,
        body_len,
        body.len() as u32,
        seq,
    );
    Ok(())
}

/// Writes the header into the first [`HEADER_LEN`] bytes of `frame`, whose
/// body (already in place after them) is `body_len` bytes, and its CRC.
pub(crate) fn seal_header(
    frame: &mut [u8],
    kind: u8,
    flags: u8,
    body_len: u32,
    raw_len: u32,
    seq: u64,
) {
    let Some(h) = frame.get_mut(..HEADER_LEN) else {
        return;
    };
    h[0..4].copy_from_slice(&MAGIC);
    h[4] = FRAME_VERSION;
    h[5] = kind;
    h[6] = flags;
    h[7] = 0;
    h[8..12].copy_from_slice(&body_len.to_le_bytes());
    h[12..16].copy_from_slice(&raw_len.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    h[24..32].copy_from_slice(&[0; 8]);
    let end = (HEADER_LEN + body_len as usize).min(frame.len());
    let crc = checksum(&frame[..24], &frame[HEADER_LEN..end]);
    frame[24..28].copy_from_slice(&crc.to_le_bytes());
}

/// One decoded frame: its header and its decompressed body.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The header.
    pub header: FrameHeader,
    /// The body after decompression.
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Decodes the body into a message, checking its sequence-number rule.
    pub fn message(&self) -> Result<Message<'a>, WireError> {
        Message::decode(&self.header, self.body)
    }
}

/// A streaming decoder: bytes go in as they arrive, in pieces of any size,
/// and whole frames come out.
///
/// Memory is bounded by one frame (header plus the body limit) plus what was
/// fed at once: a length is checked before the buffer grows for it.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    /// Bytes of the frame returned last, dropped at the next call.
    consumed: usize,
    max_body: u32,
    scratch: Vec<u8>,
    /// Length of the area handed out by `spare` and not committed yet.
    spare: usize,
}

impl FrameDecoder {
    /// A decoder that refuses bodies above `max_body` (clamped to
    /// [`MAX_BODY`]).
    pub fn new(max_body: u32) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            consumed: 0,
            max_body: max_body.min(MAX_BODY),
            scratch: Vec::new(),
            spare: 0,
        }
    }

    /// The body limit in force.
    pub fn max_body(&self) -> u32 {
        self.max_body
    }

    fn pending(&self) -> &[u8] {
        let end = self.buf.len() - self.spare;
        self.buf.get(self.start + self.consumed..end).unwrap_or(&[])
    }

    fn compact(&mut self) {
        self.start += self.consumed;
        self.consumed = 0;
        if self.start > 0 && (self.start == self.buf.len() || self.start >= self.buf.len() / 2) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Gives back buffer memory beyond what the bytes held need (and
    /// `keep`), e.g. once a burst of large frames is over, so that an idle
    /// connection does not keep its largest frame's worth of memory.
    pub fn shrink(&mut self, keep: usize) {
        self.commit(0);
        self.compact();
        if self.start == 0 && self.buf.capacity() > 2 * keep.max(self.buf.len()) {
            self.buf.shrink_to(keep.max(self.buf.len()));
        }
        if self.scratch.capacity() > 2 * keep {
            self.scratch = Vec::new();
        }
    }

    /// Bytes held that are not part of a frame returned yet.
    pub fn buffered(&self) -> usize {
        self.pending().len()
    }

    /// How many more bytes the next frame needs at least: the rest of the
    /// header, or once the header is in, the rest of the frame. Returns 0
    /// when a whole frame is already buffered, and an error when the
    /// buffered header is invalid.
    pub fn needed(&self) -> Result<usize, WireError> {
        match split_frame(self.pending(), self.max_body)? {
            Split::NeedMore(n) => Ok(n),
            Split::Frame { .. } => Ok(0),
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.commit(0);
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// A writable area of exactly `len` bytes at the end of the buffer, for
    /// a caller that reads from a socket straight into it; then call
    /// [`FrameDecoder::commit`] with the count read. Ask for about
    /// [`FrameDecoder::needed`] bytes or a fixed chunk: the area is zeroed
    /// memory, so asking for much more than that costs time.
    pub fn spare(&mut self, len: usize) -> &mut [u8] {
        self.commit(0);
        self.compact();
        let at = self.buf.len();
        self.buf.resize(at + len, 0);
        self.spare = len;
        &mut self.buf[at..]
    }

    /// Marks the first `n` bytes of the last [`FrameDecoder::spare`] area as
    /// received and gives the rest back.
    pub fn commit(&mut self, n: usize) {
        let unused = self.spare - n.min(self.spare);
        self.buf.truncate(self.buf.len() - unused);
        self.spare = 0;
    }

    /// The next whole frame, or `None` when more bytes are needed (see
    /// [`FrameDecoder::needed`]). After an error the connection should be
    /// dropped: the stream is out of step.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, WireError> {
        self.commit(0);
        self.compact();
        let split = split_frame(self.pending(), self.max_body)?;
        let Split::Frame { header, len, .. } = split else {
            return Ok(None);
        };
        self.consumed = len;
        let at = self.start;
        let wire_body = self.buf.get(at + HEADER_LEN..at + len).unwrap_or(&[]);
        let body = decompress(&header, wire_body, &mut self.scratch)?;
        Ok(Some(Frame { header, body }))
    }
}
