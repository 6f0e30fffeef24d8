//! LTTng packet index files (`index/<stream>.idx`).
//!
//! An index lists every packet of one stream file: where it starts, its sizes
//! and its time range. Readers use it to seek by time without scanning; live
//! viewers get the same entries over the network. All integers are big-endian
//! whatever the trace's byte order.

use thiserror::Error;

/// The magic number that opens an index file.
pub const INDEX_MAGIC: u32 = 0xC1F1_DCC1;
/// The index format version Strata writes (1.1, with instance id and sequence).
pub const INDEX_VERSION: (u32, u32) = (1, 1);
/// Size of the file header in bytes.
pub const HEADER_LEN: usize = 16;
/// Size of a version 1.0 entry (7 fields).
const ENTRY_LEN_1_0: usize = 56;
/// Size of a version 1.1 entry (9 fields).
pub const ENTRY_LEN: usize = 72;

/// Why an index file could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IndexError {
    /// The file is shorter than its header.
    #[error("index is {0} bytes, shorter than its 16-byte header")]
    Truncated(usize),
    /// The magic number is wrong.
    #[error("index magic is {0:#010x}, expected {INDEX_MAGIC:#010x}: not an LTTng index file")]
    BadMagic(u32),
    /// The declared entry length is smaller than a version 1.0 entry.
    #[error("index entries are {0} bytes, smaller than the 56 bytes of format 1.0")]
    BadEntryLen(u32),
}

/// One packet of a stream, as the index describes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexEntry {
    /// Byte offset of the packet in the stream file.
    pub offset: u64,
    /// Packet size in bits, headers and padding included.
    pub packet_size: u64,
    /// Size of the meaningful content in bits, headers included.
    pub content_size: u64,
    /// Raw clock value at the start of the packet.
    pub timestamp_begin: u64,
    /// Raw clock value at the end of the packet.
    pub timestamp_end: u64,
    /// Running count of events discarded by the tracer up to this packet.
    pub events_discarded: u64,
    /// The CTF stream class id.
    pub stream_id: u64,
    /// The stream instance id (the CPU, for kernel traces). 0 in format 1.0.
    pub stream_instance_id: u64,
    /// Packet sequence number in the stream. 0 in format 1.0.
    pub packet_seq_num: u64,
}

impl IndexEntry {
    /// Appends the big-endian 1.1 encoding of this entry to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for v in [
            self.offset,
            self.packet_size,
            self.content_size,
            self.timestamp_begin,
            self.timestamp_end,
            self.events_discarded,
            self.stream_id,
            self.stream_instance_id,
            self.packet_seq_num,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// The header that opens every index file Strata writes.
pub fn encode_header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&INDEX_MAGIC.to_be_bytes());
    h[4..8].copy_from_slice(&INDEX_VERSION.0.to_be_bytes());
    h[8..12].copy_from_slice(&INDEX_VERSION.1.to_be_bytes());
    h[12..16].copy_from_slice(&(ENTRY_LEN as u32).to_be_bytes());
    h
}

/// Parses a whole index file. A trailing partial entry (an index being written)
/// is ignored.
pub fn parse(bytes: &[u8]) -> Result<Vec<IndexEntry>, IndexError> {
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or(IndexError::Truncated(bytes.len()))?;
    let be32 =
        |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    if be32(0) != INDEX_MAGIC {
        return Err(IndexError::BadMagic(be32(0)));
    }
    let entry_len = be32(12);
    if (entry_len as usize) < ENTRY_LEN_1_0 {
        return Err(IndexError::BadEntryLen(entry_len));
    }
    let fields = (entry_len as usize / 8).min(9);
    Ok(bytes[HEADER_LEN..]
        .chunks_exact(entry_len as usize)
        .map(|chunk| {
            let mut v = [0u64; 9];
            for (i, slot) in v.iter_mut().enumerate().take(fields) {
                let b: [u8; 8] = chunk[i * 8..i * 8 + 8].try_into().unwrap_or_default();
                *slot = u64::from_be_bytes(b);
            }
            IndexEntry {
                offset: v[0],
                packet_size: v[1],
                content_size: v[2],
                timestamp_begin: v[3],
                timestamp_end: v[4],
                events_discarded: v[5],
                stream_id: v[6],
                stream_instance_id: v[7],
                packet_seq_num: v[8],
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = IndexEntry {
            offset: 4096,
            packet_size: 8 * 4096,
            content_size: 8 * 1000,
            timestamp_begin: 10,
            timestamp_end: 20,
            events_discarded: 3,
            stream_id: 0,
            stream_instance_id: 2,
            packet_seq_num: 1,
        };
        let mut bytes = encode_header().to_vec();
        e.encode(&mut bytes);
        e.encode(&mut bytes);
        bytes.extend_from_slice(&[1, 2, 3]); // a partial entry being written
        assert_eq!(parse(&bytes).unwrap(), vec![e, e]);
    }

    #[test]
    fn reads_version_1_0_entries() {
        let mut bytes = vec![0xc1, 0xf1, 0xdc, 0xc1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 56];
        for v in 1u64..=7 {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        let e = parse(&bytes).unwrap()[0];
        assert_eq!((e.offset, e.stream_id, e.packet_seq_num), (1, 7, 0));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse(&[1, 2]), Err(IndexError::Truncated(2)));
        assert_eq!(parse(&[0; 16]), Err(IndexError::BadMagic(0)));
        let mut h = encode_header();
        h[15] = 8;
        assert_eq!(parse(&h), Err(IndexError::BadEntryLen(8)));
    }
}
