//! Why bytes could not be decoded or a message could not be encoded.

use thiserror::Error;

/// A decoding or encoding failure. Every variant says what was wrong and
/// where; none of them is raised by a panic, whatever the input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The frame does not start with the protocol's magic bytes.
    #[error("frame magic is {found:02x?}, expected \"STRW\": the peer does not speak the Strata wire protocol (plaintext against TLS, or the wrong port?)")]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The frame layout version is not one this decoder knows.
    #[error("frame layout version {0} is not supported (this build knows version {v}); upgrade the older side", v = crate::FRAME_VERSION)]
    UnsupportedFrameVersion(u8),
    /// Reserved header bits or bytes are set.
    #[error("frame header has reserved bits set ({what} = {value:#x}); the peer is newer or the stream is corrupt")]
    Reserved {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// A declared length is above the limit; nothing was allocated for it.
    #[error("{what} of {len} bytes is above the {max}-byte limit; the frame is refused before reading it")]
    TooLarge {
        /// Which length.
        what: &'static str,
        /// The declared length.
        len: u64,
        /// The limit in force.
        max: u64,
    },
    /// The checksum over the header and body does not match.
    #[error("frame checksum mismatch (header says {expected:#010x}, computed {computed:#010x}): the frame was corrupted")]
    Checksum {
        /// The CRC in the header.
        expected: u32,
        /// The CRC of the bytes received.
        computed: u32,
    },
    /// The compression code in the flags is unknown.
    #[error("unknown compression code {0} in the frame flags")]
    UnknownCompression(u8),
    /// Decompression failed or did not give the declared size.
    #[error("{codec} decompression failed: {reason}")]
    Decompress {
        /// `lz4` or `zstd`.
        codec: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// Compression failed.
    #[error("{codec} compression failed: {reason}")]
    Compress {
        /// `lz4` or `zstd`.
        codec: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The message kind byte names no known message and the frame is not
    /// marked ignorable.
    #[error(
        "unknown message kind {0:#04x} (not marked ignorable); the peer speaks a newer protocol"
    )]
    UnknownKind(u8),
    /// A sequenced message came without a sequence number, or an
    /// unsequenced one with one.
    #[error("{kind} frame has sequence number {seq}, but {rule}")]
    BadSequence {
        /// The message kind's name.
        kind: &'static str,
        /// The sequence number in the header.
        seq: u64,
        /// The rule broken.
        rule: &'static str,
    },
    /// The body ended inside a field.
    #[error("{kind} body is truncated: field `{field}` at body offset {offset} needs {need} bytes, {have} left")]
    Truncated {
        /// The message kind's name.
        kind: &'static str,
        /// The field being read.
        field: &'static str,
        /// Its offset in the (decompressed) body.
        offset: usize,
        /// Bytes it needs.
        need: u64,
        /// Bytes left.
        have: usize,
    },
    /// A field holds a value that is not allowed.
    #[error("{kind} body: field `{field}` at body offset {offset} is invalid: {reason}")]
    BadField {
        /// The message kind's name.
        kind: &'static str,
        /// The field.
        field: &'static str,
        /// Its offset in the (decompressed) body.
        offset: usize,
        /// Why it is refused.
        reason: String,
    },
    /// A value to encode does not fit the protocol's limits.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why not.
        reason: String,
    },
}
