//! Decodes a packet's header and context: which stream class it belongs to,
//! where its events start and end, and its timestamps and counters. Pure
//! over the bytes from the packet start to the end of the file.

use super::bits::read_bits;
use super::class::{Role, TracePlan};
use super::walk::{DecodeError, Walker};

/// The magic number at the start of every CTF packet header.
pub const PACKET_MAGIC: u32 = 0xC1FC_1FC1;

/// What a packet's header and context say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PacketInfo {
    /// Index of the stream class in the trace plan.
    pub stream: usize,
    /// Packet size in bytes (where the next packet starts).
    pub size: u64,
    /// Content size in bits: events end there.
    pub content_bits: u64,
    /// Bit where the first event starts.
    pub events_bit: u64,
    pub ts_begin: Option<u64>,
    pub ts_end: Option<u64>,
    /// Running count of discarded events and the width of its field.
    pub discarded: Option<(u64, u8)>,
    pub cpu_id: Option<u64>,
    pub instance: Option<u64>,
    pub seq_num: Option<u64>,
}

/// A packet that could not be decoded, and how far a reader skipping bad
/// packets can jump (the declared packet size, when it is credible).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PacketError {
    pub err: DecodeError,
    pub skip_to: Option<u64>,
}

fn bad(bit: u64, msg: String, skip_to: Option<u64>) -> PacketError {
    PacketError {
        err: DecodeError { bit, msg },
        skip_to,
    }
}

fn get(data: &[u8], marks: &[u64], r: &Option<Role>) -> Option<u64> {
    let r = r.as_ref()?;
    let base = *marks.get(r.mark as usize)?;
    read_bits(data, base + r.rel as u64, r.spec)
}

/// Decodes the packet that starts at `data[0]`. `regs` and the two mark
/// arrays receive what the walks record.
pub(crate) fn decode_packet(
    plan: &TracePlan,
    data: &[u8],
    regs: &mut [u64],
    ph_marks: &mut [u64],
    pc_marks: &mut [u64],
) -> Result<PacketInfo, PacketError> {
    let avail = data.len() as u64 * 8;
    let mut pos = 0u64;
    if let Some(ph) = plan.packet_header {
        let scope = plan.scope(ph);
        let mut w = Walker {
            data,
            end: avail,
            regs: &mut *regs,
            marks: &mut *ph_marks,
            id: None,
            clock: 0,
        };
        pos = w.walk(scope, scope.root, 0).map_err(|e| PacketError {
            err: DecodeError {
                bit: e.bit,
                msg: format!("packet header: {}", e.msg),
            },
            skip_to: None,
        })?;
        let r = &plan.header_roles;
        if let Some(m) = get(data, ph_marks, &r.magic) {
            if m != PACKET_MAGIC as u64 {
                return Err(bad(
                    0,
                    format!("packet magic is {m:#010x}, expected {PACKET_MAGIC:#010x}: not a CTF packet"),
                    None,
                ));
            }
        }
        if let (Some((mark, rel)), Some(want)) = (r.uuid, plan.uuid) {
            let at = ph_marks.get(mark as usize).copied().unwrap_or(0) + rel as u64;
            if at.is_multiple_of(8) {
                let b = (at / 8) as usize;
                if let Some(got) = data.get(b..b + 16) {
                    if got != want {
                        return Err(bad(at, "packet UUID differs from the trace UUID in the metadata: this stream file belongs to another trace".into(), None));
                    }
                }
            }
        }
    }
    let r = &plan.header_roles;
    let stream = match get(data, ph_marks, &r.stream_id) {
        Some(id) => plan.streams.iter().position(|s| s.id == id).ok_or_else(|| {
            bad(0, format!("packet header names stream class {id}, which the metadata does not declare"), None)
        })?,
        None if plan.streams.len() == 1 => 0,
        None => {
            return Err(bad(
                0,
                "packet header has no stream_id and the metadata declares several stream classes".into(),
                None,
            ))
        }
    };
    let instance = get(data, ph_marks, &r.stream_instance_id);
    let sp = &plan.streams[stream];
    if let Some(pc) = sp.packet_context {
        let scope = plan.scope(pc);
        let mut w = Walker {
            data,
            end: avail,
            regs: &mut *regs,
            marks: &mut *pc_marks,
            id: None,
            clock: 0,
        };
        pos = w.walk(scope, scope.root, pos).map_err(|e| PacketError {
            err: DecodeError {
                bit: e.bit,
                msg: format!("packet context: {}", e.msg),
            },
            skip_to: None,
        })?;
    }
    let roles = &sp.roles;
    let packet_bits = get(data, pc_marks, &roles.packet_size);
    let content_bits = get(data, pc_marks, &roles.content_size);
    let (packet_bits, content_bits) = match (packet_bits, content_bits) {
        (Some(p), Some(c)) => (p, c),
        (Some(p), None) => (p, p),
        (None, Some(c)) => (avail, c),
        (None, None) => (avail, avail),
    };
    let credible = (packet_bits.is_multiple_of(8) && packet_bits > 0 && packet_bits <= avail)
        .then_some(packet_bits / 8);
    if !packet_bits.is_multiple_of(8) {
        return Err(bad(
            0,
            format!("packet size {packet_bits} bits is not a whole number of bytes"),
            None,
        ));
    }
    if packet_bits > avail {
        return Err(bad(
            0,
            format!(
                "packet size {} bytes runs past the end of the file ({} bytes left): the stream file is truncated or the packet is corrupt",
                packet_bits / 8,
                avail / 8
            ),
            None,
        ));
    }
    if content_bits > packet_bits {
        return Err(bad(
            0,
            format!("content size {content_bits} bits is larger than the packet size {packet_bits} bits"),
            credible,
        ));
    }
    if pos > content_bits || packet_bits == 0 {
        return Err(bad(
            0,
            format!("packet header and context take {pos} bits, more than the content size {content_bits} bits"),
            credible,
        ));
    }
    Ok(PacketInfo {
        stream,
        size: packet_bits / 8,
        content_bits,
        events_bit: pos,
        ts_begin: get(data, pc_marks, &roles.ts_begin),
        ts_end: get(data, pc_marks, &roles.ts_end),
        discarded: get(data, pc_marks, &roles.discarded)
            .map(|v| (v, roles.discarded.map_or(64, |r| r.spec.bits))),
        cpu_id: get(data, pc_marks, &roles.cpu_id),
        instance,
        seq_num: get(data, pc_marks, &roles.seq_num),
    })
}
