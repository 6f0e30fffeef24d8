//! One stream's events in order: walks the packets of its files (rotated
//! tracefiles in order), decodes each event header, contexts and payload,
//! and keeps the state field accessors need (marks, registers, clock).

use std::path::Path;

use super::class::{EventClass, HeaderFast, TracePlan};
use super::error::{ReadError, SkipStats};
use super::packet::{decode_packet, PacketInfo};
use super::plan::{Scope, ScopeKind};
use super::walk::{update_clock, DecodeError, Walker};

/// Lets a cursor hand back the memory of packets it has finished, so a
/// mapped file's resident size stays bounded however large it is.
pub(crate) trait Release {
    /// Bytes `[off, off + len)` of the file will not be read again.
    fn release(&self, off: u64, len: u64);
}

/// One file of a stream, mapped.
#[derive(Clone, Copy)]
pub(crate) struct Source<'s> {
    pub path: &'s Path,
    pub data: &'s [u8],
    pub release: Option<&'s dyn Release>,
}

/// Granularity of released ranges.
const PAGE: u64 = 4096;

/// Reads one stream.
pub(crate) struct Cursor<'s> {
    pub plan: &'s TracePlan,
    pub classes: &'s [EventClass],
    pub trace: u32,
    /// Global stream index: the merge's tie-breaker.
    pub key: u32,
    files: Vec<Source<'s>>,
    file_i: usize,
    /// Offset in the current file of the next packet.
    next_off: u64,
    /// Bytes of the current file already released.
    released_to: u64,
    /// Bit offset in the packet where the current event starts.
    ev_start: u64,
    /// The current packet's bytes.
    pub pkt: &'s [u8],
    pkt_off: u64,
    pkt_size: u64,
    content_end: u64,
    pos: u64,
    /// Index of the current packet's stream class.
    pub sp: usize,
    pub regs: Vec<u64>,
    /// Marks of every scope kind, at the plan's `mark_base` offsets.
    pub marks: Vec<u64>,
    /// Global index of the current event's class.
    pub class_index: u32,
    /// Global index of the current packet's stream class.
    pub stream_global: u32,
    clock: u64,
    /// The current event.
    pub cycles: u64,
    pub ts: i64,
    pub class: u32,
    pub cpu: u32,
    default_cpu: u32,
    pub lost_before: u64,
    pending_lost: u64,
    prev_discarded: Option<u64>,
    skip: bool,
    pub stats: SkipStats,
    /// Bytes of packets finished since the merge last collected them.
    pub done_bytes: u64,
    /// Packets entered so far: the current packet's ordinal, from 1.
    pub packet_number: u64,
}

impl<'s> Cursor<'s> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        plan: &'s TracePlan,
        classes: &'s [EventClass],
        trace: u32,
        key: u32,
        default_cpu: u32,
        files: Vec<Source<'s>>,
        skip: bool,
    ) -> Self {
        Cursor {
            plan,
            classes,
            trace,
            key,
            files,
            file_i: 0,
            next_off: 0,
            released_to: 0,
            ev_start: 0,
            pkt: &[],
            pkt_off: 0,
            pkt_size: 0,
            content_end: 0,
            pos: 0,
            sp: 0,
            regs: vec![0; plan.regs],
            marks: vec![0; plan.mark_total],
            class_index: u32::MAX,
            stream_global: u32::MAX,
            clock: 0,
            cycles: 0,
            ts: 0,
            class: 0,
            cpu: default_cpu,
            default_cpu,
            lost_before: 0,
            pending_lost: 0,
            prev_discarded: None,
            skip,
            stats: SkipStats::default(),
            done_bytes: 0,
            packet_number: 0,
        }
    }

    fn path(&self) -> &'s Path {
        self.files
            .get(self.file_i)
            .map_or(Path::new(""), |f| f.path)
    }

    fn corrupt(&self, base: u64, e: DecodeError) -> ReadError {
        ReadError::Corrupt {
            path: self.path().to_path_buf(),
            offset: base + e.bit / 8,
            msg: e.msg,
        }
    }

    fn note_skip(&mut self, bytes: u64) {
        if self.stats.packets == 0 {
            self.stats.streams = 1;
        }
        self.stats.packets += 1;
        self.stats.bytes += bytes;
    }

    /// Moves to the next event. `Ok(false)` at the end of the stream. After an
    /// error (without `skip_corrupt`) the stream is finished.
    pub(crate) fn advance(&mut self) -> Result<bool, ReadError> {
        loop {
            if self.pos < self.content_end {
                match self.decode_event() {
                    Ok(()) => return Ok(true),
                    Err(e) => {
                        let err = self.corrupt(self.pkt_off, e);
                        let left = (self.content_end - self.pos.min(self.content_end)) / 8;
                        self.pos = self.content_end;
                        if self.skip {
                            self.note_skip(left);
                            continue;
                        }
                        self.finish();
                        return Err(err);
                    }
                }
            }
            self.done_bytes += self.pkt_size;
            self.pkt_size = 0;
            self.release_to(self.next_off & !(PAGE - 1));
            if !self.next_packet()? {
                return Ok(false);
            }
        }
    }

    /// Releases the current file's bytes up to `to`.
    fn release_to(&mut self, to: u64) {
        if to > self.released_to {
            if let Some(r) = self.files.get(self.file_i).and_then(|f| f.release) {
                r.release(self.released_to, to - self.released_to);
            }
            self.released_to = to;
        }
    }

    /// The current event's file and byte offset.
    pub(crate) fn position(&self) -> (&'s Path, u64) {
        (self.path(), self.pkt_off + self.ev_start / 8)
    }

    fn finish(&mut self) {
        self.file_i = self.files.len();
        self.content_end = 0;
        self.pos = 0;
    }

    /// Loads the next packet that has a header we can read.
    fn next_packet(&mut self) -> Result<bool, ReadError> {
        loop {
            let Some(file) = self.files.get(self.file_i).copied() else {
                self.finish();
                return Ok(false);
            };
            let len = file.data.len() as u64;
            if self.next_off >= len {
                self.release_to(len);
                self.file_i += 1;
                self.next_off = 0;
                self.released_to = 0;
                continue;
            }
            let off = self.next_off;
            let data = file.data.get(off as usize..).unwrap_or(&[]);
            let (ph, rest) = self.marks.split_at_mut(self.plan.marks[0]);
            let pc = rest.get_mut(..self.plan.marks[1]).unwrap_or(&mut []);
            match decode_packet(self.plan, data, &mut self.regs, ph, pc) {
                Ok(info) => {
                    self.start_packet(file.data, off, info);
                    return Ok(true);
                }
                Err(pe) => {
                    let err = self.corrupt(off, pe.err);
                    if !self.skip {
                        self.finish();
                        return Err(err);
                    }
                    let jump = pe.skip_to.unwrap_or(len - off);
                    self.note_skip(jump);
                    self.next_off = off + jump;
                }
            }
        }
    }

    fn start_packet(&mut self, file: &'s [u8], off: u64, info: PacketInfo) {
        self.pkt = file
            .get(off as usize..(off + info.size) as usize)
            .unwrap_or(&[]);
        self.pkt_off = off;
        self.packet_number += 1;
        self.pkt_size = info.size;
        self.next_off = off + info.size;
        self.content_end = info.content_bits;
        self.pos = info.events_bit;
        self.sp = info.stream;
        self.stream_global = self
            .plan
            .streams
            .get(info.stream)
            .map_or(u32::MAX, |s| s.global);
        if let Some(t) = info.ts_begin {
            self.clock = t;
        }
        self.cpu = info.cpu_id.map_or(self.default_cpu, |c| c as u32);
        if let Some((d, bits)) = info.discarded {
            let mask = if bits >= 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            // LTTng's counter starts at 0 in every stream, so a first packet
            // with a non-zero count reports real losses (babeltrace2 flags
            // them too, without a count).
            let prev = self.prev_discarded.unwrap_or(0);
            self.pending_lost += d.wrapping_sub(prev) & mask;
            self.prev_discarded = Some(d);
        }
    }

    /// Decodes the event at `pos`.
    #[inline]
    fn decode_event(&mut self) -> Result<(), DecodeError> {
        let plan = self.plan;
        let sp = &plan.streams[self.sp];
        let data = self.pkt;
        let end = self.content_end;
        let mut pos = self.pos;
        self.ev_start = pos;
        let id: Option<u64>;
        match sp.header_fast {
            HeaderFast::Compact => {
                pos = (pos + 7) & !7;
                let b = (pos >> 3) as usize;
                let w = match data.get(b..b + 4) {
                    Some(s) if pos + 32 <= end => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
                    _ => return Err(short(pos, end)),
                };
                let small = w & 31;
                if small < 31 {
                    id = Some(small as u64);
                    self.clock = update_clock(self.clock, (w >> 5) as u64, 27);
                    pos += 32;
                } else {
                    match data.get(b + 1..b + 13) {
                        Some(s) if pos + 104 <= end => {
                            id = Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64);
                            self.clock = u64::from_le_bytes([
                                s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11],
                            ]);
                        }
                        _ => return Err(short(pos, end)),
                    }
                    pos += 104;
                }
            }
            HeaderFast::Large => {
                pos = (pos + 7) & !7;
                let b = (pos >> 3) as usize;
                let small = match data.get(b..b + 2) {
                    Some(s) if pos + 48 <= end => u16::from_le_bytes([s[0], s[1]]),
                    _ => return Err(short(pos, end)),
                };
                if small < 65535 {
                    let s = data.get(b + 2..b + 6).ok_or_else(|| short(pos, end))?;
                    id = Some(small as u64);
                    self.clock = update_clock(
                        self.clock,
                        u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64,
                        32,
                    );
                    pos += 48;
                } else {
                    match data.get(b + 2..b + 14) {
                        Some(s) if pos + 112 <= end => {
                            id = Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64);
                            self.clock = u64::from_le_bytes([
                                s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11],
                            ]);
                        }
                        _ => return Err(short(pos, end)),
                    }
                    pos += 112;
                }
            }
            HeaderFast::Generic => match sp.event_header {
                Some(h) => {
                    let scope = plan.scope(h);
                    let k = ScopeKind::EventHeader as usize;
                    let b = plan.mark_base[k];
                    let mut w = Walker {
                        data,
                        end,
                        regs: &mut self.regs,
                        marks: self.marks.get_mut(b..b + plan.marks[k]).unwrap_or(&mut []),
                        id: None,
                        clock: self.clock,
                    };
                    pos = w
                        .walk(scope, scope.root, pos)
                        .map_err(|e| in_scope(e, "event header"))?;
                    id = w.id;
                    self.clock = w.clock;
                }
                None => id = None,
            },
        }
        let local = match id {
            Some(i) => sp.classes.get(i).or(sp.only_class),
            None => sp.only_class.or_else(|| sp.classes.get(0)),
        };
        let classes: &'s [EventClass] = self.classes;
        let Some(ec) = local.and_then(|l| classes.get(l as usize)) else {
            return Err(DecodeError {
                bit: self.pos,
                msg: format!(
                    "event id {} is not declared for stream class {} in the metadata",
                    id.unwrap_or(0),
                    sp.id
                ),
            });
        };
        let cp = ec.plan();
        if let Some(e) = &cp.error {
            return Err(DecodeError {
                bit: self.pos,
                msg: e.clone(),
            });
        }
        if self.marks.len() < cp.marks_end {
            // A class compiled after this cursor was made may need more.
            self.marks.resize(cp.marks_end, 0);
        }
        if let Some(s) = sp.event_context {
            let k = ScopeKind::StreamEventContext as usize;
            pos = self.walk_scope(
                plan.scope(s),
                plan.mark_base[k],
                plan.marks[k],
                pos,
                "stream event context",
            )?;
        }
        if let Some(s) = &cp.context {
            pos = self.walk_scope(s, cp.ctx_base, s.marks as usize, pos, "event context")?;
        }
        if let Some(f) = cp.pay_fast {
            let start = super::plan::align_up(pos, f.align);
            let end = start + f.bits;
            if end > self.content_end {
                return Err(DecodeError {
                    bit: start,
                    msg: format!(
                        "event payload ({} bits at bit {start}) runs past the end of the packet content at bit {}",
                        f.bits, self.content_end
                    ),
                });
            }
            if let Some(m) = f.mark {
                if let Some(slot) = self.marks.get_mut(cp.pay_base + m as usize) {
                    *slot = start;
                }
            }
            pos = end;
        } else if let Some(s) = &cp.payload {
            pos = self.walk_scope(s, cp.pay_base, s.marks as usize, pos, "event payload")?;
        }
        self.class_index = ec.index;
        self.pos = pos;
        self.class = local.unwrap_or(0);
        self.cycles = self.clock;
        self.ts = sp.clock.to_ns(self.clock);
        self.lost_before = std::mem::take(&mut self.pending_lost);
        Ok(())
    }

    /// Walks one scope whose marks start at `base` in the flat array.
    #[inline(always)]
    fn walk_scope(
        &mut self,
        scope: &Scope,
        base: usize,
        nmarks: usize,
        pos: u64,
        what: &str,
    ) -> Result<u64, DecodeError> {
        if let Some(f) = scope.fast {
            let start = super::plan::align_up(pos, f.align);
            let end = start + f.bits;
            if end > self.content_end {
                return Err(DecodeError {
                    bit: start,
                    msg: format!(
                        "{what} ({} bits at bit {start}) runs past the end of the packet content at bit {}",
                        f.bits, self.content_end
                    ),
                });
            }
            if let Some(m) = f.mark {
                if let Some(slot) = self.marks.get_mut(base + m as usize) {
                    *slot = start;
                }
            }
            return Ok(end);
        }
        let mut w = Walker {
            data: self.pkt,
            end: self.content_end,
            regs: &mut self.regs,
            marks: self.marks.get_mut(base..base + nmarks).unwrap_or(&mut []),
            id: None,
            clock: self.clock,
        };
        w.walk(scope, scope.root, pos)
            .map_err(|e| in_scope(e, what))
    }

    /// The content end of the current packet, in bits.
    pub(crate) fn content_end(&self) -> u64 {
        self.content_end
    }
}

fn short(pos: u64, end: u64) -> DecodeError {
    DecodeError {
        bit: pos,
        msg: format!(
            "event header runs past the end of the packet content (content ends at bit {end})"
        ),
    }
}

fn in_scope(e: DecodeError, what: &str) -> DecodeError {
    DecodeError {
        bit: e.bit,
        msg: format!("{what}: {}", e.msg),
    }
}
