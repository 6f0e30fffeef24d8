//! One stream's events in order: walks the packets of its files (rotated
//! tracefiles in order), decodes each event header, contexts and payload,
//! and keeps the state field accessors need (marks, registers, clock).

use std::path::Path;

use super::bits::read_bits;
use super::class::{EventClass, HeaderFast, TracePlan};
use super::error::{ReadError, SkipStats};
use super::packet::{decode_packet, PacketInfo};
use super::plan::ScopeKind;
use super::walk::{update_clock, DecodeError, Walker};

/// One file of a stream, mapped.
#[derive(Clone, Copy)]
pub(crate) struct Source<'s> {
    pub path: &'s Path,
    pub data: &'s [u8],
}

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
    /// The current packet's bytes.
    pub pkt: &'s [u8],
    pkt_off: u64,
    pkt_size: u64,
    content_end: u64,
    pos: u64,
    /// Index of the current packet's stream class.
    pub sp: usize,
    pub regs: Vec<u64>,
    pub marks: [Vec<u64>; 6],
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
            pkt: &[],
            pkt_off: 0,
            pkt_size: 0,
            content_end: 0,
            pos: 0,
            sp: 0,
            regs: vec![0; plan.regs],
            marks: plan.marks.map(|n| vec![0; n]),
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
            if !self.next_packet()? {
                return Ok(false);
            }
        }
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
                self.file_i += 1;
                self.next_off = 0;
                continue;
            }
            let off = self.next_off;
            let data = file.data.get(off as usize..).unwrap_or(&[]);
            let [ph, pc, ..] = &mut self.marks;
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
        self.pkt_size = info.size;
        self.next_off = off + info.size;
        self.content_end = info.content_bits;
        self.pos = info.events_bit;
        self.sp = info.stream;
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
                    let mut w = Walker {
                        data,
                        end,
                        regs: &mut self.regs,
                        marks: &mut self.marks[ScopeKind::EventHeader as usize],
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
        let class = match id {
            Some(i) => sp.classes.get(i).or(sp.only_class),
            None => sp.only_class.or_else(|| sp.classes.get(0)),
        };
        let Some(class) = class else {
            return Err(DecodeError {
                bit: self.pos,
                msg: format!(
                    "event id {} is not declared for stream class {} in the metadata",
                    id.unwrap_or(0),
                    sp.id
                ),
            });
        };
        if let Some(s) = sp.event_context {
            pos = self.walk_scope(
                s,
                ScopeKind::StreamEventContext,
                pos,
                "stream event context",
            )?;
        }
        let ec = self
            .classes
            .get(class as usize)
            .map(|c| (c.context, c.payload));
        if let Some((ctx, payload)) = ec {
            if let Some(s) = ctx {
                pos = self.walk_scope(s, ScopeKind::EventContext, pos, "event context")?;
            }
            if let Some(s) = payload {
                pos = self.walk_scope(s, ScopeKind::Payload, pos, "event payload")?;
            }
        }
        self.pos = pos;
        self.class = class;
        self.cycles = self.clock;
        self.ts = sp.clock.to_ns(self.clock);
        self.lost_before = std::mem::take(&mut self.pending_lost);
        Ok(())
    }

    #[inline(always)]
    fn walk_scope(
        &mut self,
        s: usize,
        kind: ScopeKind,
        pos: u64,
        what: &str,
    ) -> Result<u64, DecodeError> {
        let scope = self.plan.scope(s);
        let mut w = Walker {
            data: self.pkt,
            end: self.content_end,
            regs: &mut self.regs,
            marks: &mut self.marks[kind as usize],
            id: None,
            clock: self.clock,
        };
        w.walk(scope, scope.root, pos)
            .map_err(|e| in_scope(e, what))
    }

    /// Reads an integer at a mark-relative location of the current event.
    #[inline(always)]
    pub(crate) fn read(
        &self,
        kind: ScopeKind,
        mark: u16,
        rel: u32,
        spec: super::plan::IntSpec,
    ) -> Option<u64> {
        let base = *self.marks[kind as usize].get(mark as usize)?;
        read_bits(self.pkt, base + rel as u64, spec)
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
