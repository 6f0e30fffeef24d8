//! Reads what an LTTng index entry needs (sizes, timestamps, counters) from
//! the header and context of a CTF packet received whole, using the field
//! layout the trace's TSDL metadata declares. Pure: bytes in, numbers out.
//!
//! Only the fixed-layout prefix of the packet header and context is used
//! (byte-aligned integers, enumerations, integer arrays, nested structs):
//! that is where every LTTng tracer puts these fields. A field after a
//! string, sequence or variant cannot be located and is reported missing.

use strata_ctf::index::IndexEntry;
use strata_ctf::read::tsdl::{ByteOrder, Metadata, StructType, Type};
use thiserror::Error;

/// Why a packet's index entry could not be derived.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PacketInfoError {
    /// The packet is shorter than its header and context.
    #[error("packet of {len} bytes is shorter than its header and context ({need} bytes)")]
    Short {
        /// Bytes received.
        len: usize,
        /// Bytes the layout needs.
        need: usize,
    },
    /// The magic number is wrong.
    #[error("packet magic is {0:#x}, not 0xc1fc1fc1")]
    Magic(u64),
    /// The stream class id is not declared by the metadata.
    #[error("packet names stream class {0}, which the metadata does not declare")]
    UnknownStream(u64),
    /// `packet_size`/`content_size` disagree with the bytes.
    #[error("packet says packet_size {packet_bits} bits and content_size {content_bits} bits, but {len} bytes were received")]
    Sizes {
        /// Declared packet size in bits.
        packet_bits: u64,
        /// Declared content size in bits.
        content_bits: u64,
        /// Bytes received.
        len: usize,
    },
}

/// Where one integer sits in a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    /// Byte offset from the packet start.
    offset: usize,
    /// Bytes: 1, 2, 4 or 8.
    bytes: usize,
    big_endian: bool,
}

impl Slot {
    fn read(&self, p: &[u8]) -> Option<u64> {
        let b = p.get(self.offset..self.offset + self.bytes)?;
        let mut v = 0u64;
        if self.big_endian {
            for &x in b {
                v = (v << 8) | x as u64;
            }
        } else {
            for &x in b.iter().rev() {
                v = (v << 8) | x as u64;
            }
        }
        Some(v)
    }
}

/// The located fields of one layout walk.
#[derive(Debug, Clone, Default)]
struct Fields {
    found: Vec<(String, Slot)>,
    /// Bytes of the fixed prefix that was walked.
    end: usize,
}

impl Fields {
    fn get(&self, name: &str) -> Option<Slot> {
        self.found
            .iter()
            .find(|(n, _)| n.trim_start_matches('_') == name)
            .map(|(_, s)| *s)
    }
}

/// Walks a struct's fixed-layout prefix starting at byte `at`. Returns
/// false once a field of unknown size is met (the walk stops there).
fn walk(st: &StructType, at: &mut usize, big: bool, out: &mut Fields, prefix: &str) -> bool {
    *at = align(*at, (st.min_align / 8).max(1) as usize);
    for (name, ty) in &st.fields {
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match ty {
            Type::Int(i) | Type::Enum(strata_ctf::read::tsdl::EnumType { int: i, .. }) => {
                if i.size % 8 != 0 || i.align % 8 != 0 || i.size == 0 || i.size > 64 {
                    return false;
                }
                *at = align(*at, (i.align / 8) as usize);
                let be = match i.byte_order {
                    ByteOrder::Be => true,
                    ByteOrder::Le => false,
                    ByteOrder::Native => big,
                };
                out.found.push((
                    full,
                    Slot {
                        offset: *at,
                        bytes: (i.size / 8) as usize,
                        big_endian: be,
                    },
                ));
                *at += (i.size / 8) as usize;
            }
            Type::Array { elem, len } => {
                let Type::Int(i) = &**elem else {
                    return false;
                };
                if i.size % 8 != 0 || i.align % 8 != 0 || *len > 4096 {
                    return false;
                }
                *at = align(*at, (i.align / 8).max(1) as usize);
                *at += (i.size / 8) as usize * *len as usize;
            }
            Type::Struct(s) => {
                if !walk(s, at, big, out, &full) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    out.end = *at;
    true
}

fn align(at: usize, to: usize) -> usize {
    at.div_ceil(to.max(1)) * to.max(1)
}

/// The packet layout of one trace: where the header fields are, and the
/// context fields of each stream class.
#[derive(Debug, Clone)]
pub struct PacketLayout {
    header: Fields,
    /// Per stream class id: the context fields (offsets from packet start).
    contexts: Vec<(u64, Fields)>,
}

impl PacketLayout {
    /// Computes the layout from parsed metadata.
    pub fn new(m: &Metadata) -> PacketLayout {
        let big = m.byte_order == Some(ByteOrder::Be);
        let mut header = Fields::default();
        let mut at = 0usize;
        if let Some(Type::Struct(st)) = &m.packet_header {
            walk(st, &mut at, big, &mut header, "");
        }
        let header_end = header.end;
        let contexts = m
            .streams
            .iter()
            .map(|s| {
                let mut f = Fields {
                    end: header_end,
                    ..Fields::default()
                };
                let mut at = header_end;
                if let Some(Type::Struct(st)) = &s.packet_context {
                    walk(st, &mut at, big, &mut f, "");
                }
                (s.id.unwrap_or(0), f)
            })
            .collect();
        PacketLayout { header, contexts }
    }

    /// The index entry of the packet in `p` (one whole packet), to be
    /// written at byte `offset` of its stream file.
    pub fn entry(&self, p: &[u8], offset: u64) -> Result<IndexEntry, PacketInfoError> {
        if p.len() < self.header.end {
            return Err(PacketInfoError::Short {
                len: p.len(),
                need: self.header.end,
            });
        }
        let h = |n: &str| self.header.get(n).and_then(|s| s.read(p));
        if let Some(magic) = h("magic") {
            if magic != 0xC1FC_1FC1 {
                return Err(PacketInfoError::Magic(magic));
            }
        }
        let stream_id = h("stream_id").unwrap_or(0);
        let ctx = self
            .contexts
            .iter()
            .find(|(id, _)| *id == stream_id)
            .map(|(_, f)| f)
            .or(if self.contexts.len() <= 1 && h("stream_id").is_none() {
                self.contexts.first().map(|(_, f)| f)
            } else {
                None
            })
            .ok_or(PacketInfoError::UnknownStream(stream_id))?;
        if p.len() < ctx.end {
            return Err(PacketInfoError::Short {
                len: p.len(),
                need: ctx.end,
            });
        }
        let c = |n: &str| ctx.get(n).and_then(|s| s.read(p));
        let len_bits = p.len() as u64 * 8;
        let packet_bits = c("packet_size").unwrap_or(len_bits);
        let content_bits = c("content_size").unwrap_or(packet_bits);
        if packet_bits != len_bits || content_bits > packet_bits {
            return Err(PacketInfoError::Sizes {
                packet_bits,
                content_bits,
                len: p.len(),
            });
        }
        Ok(IndexEntry {
            offset,
            packet_size: packet_bits,
            content_size: content_bits,
            timestamp_begin: c("timestamp_begin").unwrap_or(0),
            timestamp_end: c("timestamp_end").unwrap_or(0),
            events_discarded: c("events_discarded").unwrap_or(0),
            stream_id,
            stream_instance_id: h("stream_instance_id").unwrap_or(0),
            packet_seq_num: c("packet_seq_num").unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every packet of a real LTTng trace yields the entry its `.idx` file
    /// holds.
    #[test]
    fn entries_match_lttng_index_files() {
        let dir = Path::new("/work/shared/traces/tc-many-threads");
        let Ok(meta) = std::fs::read(dir.join("metadata")) else {
            eprintln!(
                "skipped: the shared LTTng trace {} is absent",
                dir.display()
            );
            return;
        };
        let m = strata_ctf::read::tsdl::parse(&meta).unwrap();
        let layout = PacketLayout::new(&m);
        let mut checked = 0;
        for cpu in 0..8 {
            let data = std::fs::read(dir.join(format!("channel0_{cpu}"))).unwrap();
            let idx = std::fs::read(dir.join(format!("index/channel0_{cpu}.idx"))).unwrap();
            let entries = strata_ctf::index::parse(&idx).unwrap();
            for (i, want) in entries.into_iter().enumerate() {
                let start = want.offset as usize;
                let end = start + (want.packet_size / 8) as usize;
                let got = layout.entry(&data[start..end], want.offset).unwrap();
                // This trace's index files are version 1.0, without
                // `stream_instance_id` and `packet_seq_num`; the packets
                // have them.
                assert_eq!(got.packet_seq_num, i as u64);
                assert_eq!(got.stream_instance_id, cpu);
                let older = IndexEntry {
                    packet_seq_num: want.packet_seq_num,
                    stream_instance_id: want.stream_instance_id,
                    ..got
                };
                assert_eq!(older, want);
                checked += 1;
            }
        }
        assert!(checked > 8, "only {checked} packets checked");
    }

    #[test]
    fn bad_packets_are_refused_not_panicked_on() {
        let dir = Path::new("/work/shared/traces/tc-many-threads");
        let Ok(meta) = std::fs::read(dir.join("metadata")) else {
            eprintln!(
                "skipped: the shared LTTng trace {} is absent",
                dir.display()
            );
            return;
        };
        let m = strata_ctf::read::tsdl::parse(&meta).unwrap();
        let layout = PacketLayout::new(&m);
        assert!(matches!(
            layout.entry(&[0; 10], 0),
            Err(PacketInfoError::Short { .. })
        ));
        assert!(matches!(
            layout.entry(&[0; 200], 0),
            Err(PacketInfoError::Magic(0))
        ));
        let data = std::fs::read(dir.join("channel0_0")).unwrap();
        let idx =
            strata_ctf::index::parse(&std::fs::read(dir.join("index/channel0_0.idx")).unwrap())
                .unwrap();
        let first = (idx[0].packet_size / 8) as usize;
        // One byte short of the declared size.
        assert!(matches!(
            layout.entry(&data[..first - 1], 0),
            Err(PacketInfoError::Sizes { .. })
        ));
    }
}
