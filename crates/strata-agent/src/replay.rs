//! The replay source: a recorded CTF trace (Strata's or LTTng's) streamed
//! packet by packet as if it were live, paced at about `rate` events per
//! second, so that one machine can simulate many hosts.
//!
//! **Time.** The TSDL clock offset is rewritten so that the trace's first
//! packet begins when the replay starts; the packets are sent unchanged.
//! Timestamps keep the trace's own spacing, so at a rate other than the
//! trace's own they drift from the wall clock. With `loops` > 1, copy k is
//! shifted by k × S cycles, S a multiple of 2^32 longer than the trace: the
//! 27- and 32-bit compact timestamps of event headers stay valid, and only
//! the packet context (begin, end, sequence number, discarded count) and the
//! 64-bit timestamps of extended event headers are patched.
//!
//! Packet boundaries and context values come from the metadata's packet
//! header and context, which must have fixed-size fields up to the ones
//! read (true of every LTTng and Strata trace).

use crate::error::AgentError;
use crate::metadata::MetadataState;
use crate::outbox::Outbox;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use strata_ctf::read::tsdl::{self, ByteOrder, Metadata, StructType, Type};
use strata_ctf::read::{OpenOptions, TraceClass, TraceSet};
use strata_wire::{
    Compression, Control, ControlCommand, ControlResult, Message, PacketBatch, PacketInfo,
};

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The trace directory (the one holding `metadata`).
    pub trace: PathBuf,
    /// Events per second; 0 sends as fast as the relay takes them.
    pub rate: f64,
    /// How many times to play the trace (0: until stopped).
    pub loops: u32,
    /// Keep the trace's own clock offset instead of moving it to now.
    pub keep_time: bool,
    /// A stream's batch is sent once it reaches this many bytes.
    pub batch_bytes: usize,
    /// Frame compression.
    pub compression: Compression,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            trace: PathBuf::new(),
            rate: 100_000.0,
            loops: 1,
            keep_time: false,
            batch_bytes: 1 << 20,
            compression: Compression::None,
        }
    }
}

/// What a replay sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Packets sent.
    pub packets: u64,
    /// Events in them.
    pub events: u64,
    /// Packet bytes sent.
    pub bytes: u64,
    /// Loops completed.
    pub loops: u32,
}

/// Where a value sits in the packet header or context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FieldPos {
    bit: u64,
    bits: u32,
    big_endian: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Layout {
    packet_size: Option<FieldPos>,
    content_size: Option<FieldPos>,
    ts_begin: Option<FieldPos>,
    ts_end: Option<FieldPos>,
    discarded: Option<FieldPos>,
    seq: Option<FieldPos>,
    cpu: Option<FieldPos>,
    stream_id: Option<FieldPos>,
    instance: Option<FieldPos>,
}

/// Event header kinds whose extended form is known: where its 64-bit
/// timestamp is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderKind {
    /// 5-bit id; 31 = extended, timestamp at byte 5.
    Compact,
    /// 16-bit id; 65535 = extended, timestamp at byte 6.
    Large,
    Other,
}

#[derive(Debug, Clone)]
struct Packet {
    stream: usize,
    offset: u64,
    info: PacketInfo,
    /// Byte offsets (in the packet) of extended event headers.
    extended: Vec<u32>,
}

#[derive(Debug)]
struct Stream {
    name: String,
    files: Vec<File>,
    /// Packets per stream and the final discarded count, for loop shifts.
    packets: u64,
    discarded_end: u64,
}

/// A recorded trace ready to be replayed.
#[derive(Debug)]
pub struct ReplaySource {
    opts: ReplayOptions,
    streams: Vec<Stream>,
    /// (stream, file index) per packet in send order; offsets per file.
    order: Vec<(usize, Packet)>,
    layout: Layout,
    header: HeaderKind,
    shift: u64,
}

fn align(bit: u64, a: u32) -> u64 {
    let a = a.max(1) as u64;
    bit.div_ceil(a) * a
}

fn type_align(t: &Type) -> u32 {
    match t {
        Type::Int(i) => i.align,
        Type::Enum(e) => e.int.align,
        Type::Float(f) => f.align,
        Type::String(_) => 8,
        Type::Struct(s) => s
            .fields
            .iter()
            .map(|(_, t)| type_align(t))
            .max()
            .unwrap_or(1)
            .max(s.min_align),
        Type::Array { elem, .. } | Type::Sequence { elem, .. } => type_align(elem),
        Type::Variant(_) => 1,
    }
}

fn fixed_bits(t: &Type) -> Option<u64> {
    match t {
        Type::Int(i) => Some(i.size as u64),
        Type::Enum(e) => Some(e.int.size as u64),
        Type::Array { elem, len } => {
            let e = fixed_bits(elem)?;
            Some(align(e, type_align(elem)) * len)
        }
        Type::Struct(s) => {
            let mut bit = 0;
            for (_, f) in &s.fields {
                bit = align(bit, type_align(f)) + fixed_bits(f)?;
            }
            Some(bit)
        }
        _ => None,
    }
}

/// Records the positions of the integer fields of `s`, starting at `start`;
/// returns where it ends, or `None` past a field of variable size.
fn walk_struct(
    s: &StructType,
    start: u64,
    trace_be: bool,
    out: &mut Vec<(String, FieldPos)>,
) -> Option<u64> {
    let mut bit = align(start, type_align(&Type::Struct(s.clone())));
    for (name, t) in &s.fields {
        bit = align(bit, type_align(t));
        let int = match t {
            Type::Int(i) => Some(i),
            Type::Enum(e) => Some(&e.int),
            _ => None,
        };
        if let Some(i) = int {
            let big_endian = match i.byte_order {
                ByteOrder::Be => true,
                ByteOrder::Le => false,
                ByteOrder::Native => trace_be,
            };
            out.push((
                name.trim_start_matches('_').to_string(),
                FieldPos {
                    bit,
                    bits: i.size,
                    big_endian,
                },
            ));
        }
        bit += fixed_bits(t)?;
    }
    Some(bit)
}

fn read_field(data: &[u8], p: FieldPos) -> Option<u64> {
    if !p.bit.is_multiple_of(8) || !p.bits.is_multiple_of(8) || p.bits == 0 || p.bits > 64 {
        return None;
    }
    let at = (p.bit / 8) as usize;
    let n = (p.bits / 8) as usize;
    let b = data.get(at..at + n)?;
    let mut v = 0u64;
    if p.big_endian {
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

fn write_field(data: &mut [u8], p: FieldPos, v: u64) {
    if !p.bit.is_multiple_of(8) || !p.bits.is_multiple_of(8) || p.bits == 0 || p.bits > 64 {
        return;
    }
    let at = (p.bit / 8) as usize;
    let n = (p.bits / 8) as usize;
    let Some(b) = data.get_mut(at..at + n) else {
        return;
    };
    for i in 0..n {
        let byte = (v >> (8 * i)) as u8;
        if p.big_endian {
            b[n - 1 - i] = byte;
        } else {
            b[i] = byte;
        }
    }
}

fn compute_layout(m: &Metadata) -> Layout {
    let be = m.byte_order == Some(ByteOrder::Be);
    let mut fields = Vec::new();
    let mut end = Some(0u64);
    if let Some(Type::Struct(h)) = &m.packet_header {
        end = walk_struct(h, 0, be, &mut fields);
    }
    if let (Some(end), Some(Type::Struct(c))) = (
        end,
        m.streams.first().and_then(|s| s.packet_context.as_ref()),
    ) {
        walk_struct(c, end, be, &mut fields);
    }
    let get = |n: &str| fields.iter().find(|(f, _)| f == n).map(|(_, p)| *p);
    Layout {
        packet_size: get("packet_size"),
        content_size: get("content_size"),
        ts_begin: get("timestamp_begin"),
        ts_end: get("timestamp_end"),
        discarded: get("events_discarded"),
        seq: get("packet_seq_num"),
        cpu: get("cpu_id"),
        stream_id: get("stream_id"),
        instance: get("stream_instance_id"),
    }
}

fn header_kind(m: &Metadata) -> HeaderKind {
    let Some(Type::Struct(h)) = m.streams.first().and_then(|s| s.event_header.as_ref()) else {
        return HeaderKind::Other;
    };
    match h.fields.first() {
        Some((_, Type::Enum(e))) if e.int.size == 5 => HeaderKind::Compact,
        Some((_, Type::Enum(e))) if e.int.size == 16 => HeaderKind::Large,
        _ => HeaderKind::Other,
    }
}

/// Rewrites the `clock` blocks of `tsdl` so that each clock's zero moves by
/// `delta_ns` nanoseconds.
pub fn shift_clock_offsets(tsdl: &str, delta_ns: i128) -> String {
    let mut out = String::with_capacity(tsdl.len() + 64);
    let mut rest = tsdl;
    while let Some(i) = find_clock_block(rest) {
        let Some(open) = rest[i..].find('{').map(|o| i + o) else {
            break;
        };
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        out.push_str(&rest[..=open]);
        let body = &rest[open + 1..close];
        let mut freq: i128 = 1_000_000_000;
        let (mut off_s, mut off): (i128, i128) = (0, 0);
        let mut kept = Vec::new();
        for stmt in body.split(';') {
            let full = strip_comments(stmt);
            let t = full.trim();
            if t.is_empty() {
                continue;
            }
            let (k, v) = t
                .split_once('=')
                .map_or((t, ""), |(k, v)| (k.trim(), v.trim()));
            let num = v
                .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                .parse::<i128>()
                .ok();
            match (k, num) {
                ("freq", Some(n)) if n > 0 => {
                    freq = n;
                    kept.push(stmt.trim().to_string());
                }
                ("offset_s", Some(n)) => off_s = n,
                ("offset", Some(n)) => off = n,
                _ => kept.push(stmt.trim().to_string()),
            }
        }
        let total = off_s * freq + off + delta_ns * freq / 1_000_000_000;
        let (s, c) = (total.div_euclid(freq), total.rem_euclid(freq));
        for k in kept {
            out.push_str("\n\t");
            out.push_str(&k);
            out.push(';');
        }
        out.push_str(&format!("\n\toffset_s = {s};\n\toffset = {c};\n"));
        out.push('}');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The text without its `/* */` and `//` comments.
fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        match (block, line) {
            (Some(b), l) if l.is_none_or(|l| b < l) => {
                out.push_str(&rest[..b]);
                match rest[b + 2..].find("*/") {
                    Some(e) => rest = &rest[b + 2 + e + 2..],
                    None => return out,
                }
            }
            (_, Some(l)) => {
                out.push_str(&rest[..l]);
                match rest[l..].find('\n') {
                    Some(e) => rest = &rest[l + e..],
                    None => return out,
                }
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

fn find_clock_block(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find("clock") {
        let at = from + i;
        let before_ok = at == 0
            || !s.as_bytes()[at - 1].is_ascii_alphanumeric()
                && s.as_bytes()[at - 1] != b'_'
                && s.as_bytes()[at - 1] != b'.';
        let after = s[at + 5..].trim_start();
        if before_ok && after.starts_with('{') {
            return Some(at);
        }
        from = at + 5;
    }
    None
}

impl ReplaySource {
    /// Opens the trace, finds every packet and counts its events, and puts
    /// the (clock-shifted) TSDL text into `metadata`.
    pub fn open(
        opts: ReplayOptions,
        metadata: &mut MetadataState,
    ) -> Result<ReplaySource, AgentError> {
        let bad = |reason: String| AgentError::Replay {
            path: opts.trace.clone(),
            reason,
        };
        let set =
            TraceSet::open(&opts.trace, &OpenOptions::default()).map_err(|e| bad(e.to_string()))?;
        let [trace] = set.traces() else {
            return Err(bad(format!(
                "it holds {} traces; give the directory of one (the one with its `metadata` file)",
                set.traces().len()
            )));
        };
        let meta_path = trace.path().join("metadata");
        let meta_bytes = std::fs::read(&meta_path)
            .map_err(|e| bad(format!("reading {}: {e}", meta_path.display())))?;
        let text = tsdl::metadata_text(&meta_bytes).map_err(|e| bad(e.to_string()))?;
        let class = TraceClass::from_metadata(text.as_bytes()).map_err(|e| bad(e.to_string()))?;
        let m = trace.metadata();
        let layout = compute_layout(m);
        let header = header_kind(m);
        let (Some(psize), Some(_)) = (layout.packet_size, layout.content_size) else {
            return Err(bad(
                "the packet context has no fixed-position packet_size and content_size".into(),
            ));
        };
        let mut streams = Vec::new();
        let mut order = Vec::new();
        let mut buf = Vec::new();
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        for (si, info) in trace.streams().iter().enumerate() {
            let name = info
                .files
                .first()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("stream{si}"));
            let mut files = Vec::new();
            let mut count = 0u64;
            let mut discarded_end = 0;
            for (fi, path) in info.files.iter().enumerate() {
                let f = File::open(path)
                    .map_err(|e| bad(format!("opening {}: {e}", path.display())))?;
                let len = f.metadata().map_err(|e| bad(e.to_string()))?.len();
                let mut off = 0u64;
                while off < len {
                    let head_len = (len - off).min(4096) as usize;
                    buf.resize(head_len, 0);
                    f.read_exact_at(&mut buf, off)
                        .map_err(|e| bad(e.to_string()))?;
                    let size_bits = read_field(&buf, psize).unwrap_or(0);
                    if size_bits == 0 || !size_bits.is_multiple_of(8) || off + size_bits / 8 > len {
                        return Err(bad(format!(
                            "{} byte {off}: packet size {size_bits} bits does not fit the file",
                            path.display()
                        )));
                    }
                    let size = size_bits / 8;
                    buf.resize(size as usize, 0);
                    f.read_exact_at(&mut buf, off)
                        .map_err(|e| bad(e.to_string()))?;
                    let g = |p: Option<FieldPos>| p.and_then(|p| read_field(&buf, p));
                    let mut pinfo = PacketInfo {
                        packet_size_bits: size_bits,
                        content_size_bits: g(layout.content_size)
                            .unwrap_or(size_bits)
                            .min(size_bits),
                        ts_begin: g(layout.ts_begin).unwrap_or(0),
                        ts_end: g(layout.ts_end).unwrap_or(0),
                        events_discarded: g(layout.discarded).unwrap_or(0),
                        stream_class: g(layout.stream_id).unwrap_or(info.stream_class),
                        stream_instance: g(layout.instance).or(info.instance).unwrap_or(si as u64),
                        packet_seq: g(layout.seq).unwrap_or(count),
                        events: 0,
                        cpu: g(layout.cpu).map_or(u32::MAX, |c| c as u32),
                    };
                    let mut extended = Vec::new();
                    let mut reader = class.stream(path, &buf, false);
                    while let Some(ev) = reader.next() {
                        let ev = ev.map_err(|e| bad(e.to_string()))?;
                        pinfo.events += 1;
                        let at = ev.position().1 as usize;
                        let is_ext = match header {
                            HeaderKind::Compact => buf.get(at).is_some_and(|b| b & 31 == 31),
                            HeaderKind::Large => buf.get(at..at + 2) == Some(&[0xff, 0xff]),
                            HeaderKind::Other => false,
                        };
                        if is_ext {
                            extended.push(at as u32);
                        }
                    }
                    lo = lo.min(pinfo.ts_begin);
                    hi = hi.max(pinfo.ts_end);
                    discarded_end = pinfo.events_discarded;
                    order.push((
                        fi,
                        Packet {
                            stream: si,
                            offset: off,
                            info: pinfo,
                            extended,
                        },
                    ));
                    count += 1;
                    off += size;
                }
                files.push(f);
            }
            streams.push(Stream {
                name,
                files,
                packets: count,
                discarded_end,
            });
        }
        if order.is_empty() {
            return Err(bad("the trace has no packets".into()));
        }
        // Time order across streams; a stream's own packets keep file order
        // (the sort is stable).
        order.sort_by_key(|(_, p)| p.info.ts_begin);
        let clock = trace.clock().cloned();
        let tsdl_text = if opts.keep_time {
            text
        } else {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i128);
            let first = clock.as_ref().map_or(0, |c| c.to_unix_ns(lo) as i128);
            shift_clock_offsets(&text, now - first)
        };
        if opts.loops != 1 && header == HeaderKind::Other {
            return Err(bad(
                "looping needs LTTng's compact or large event headers".into()
            ));
        }
        let unit = 1u64 << 32;
        let span = hi.saturating_sub(lo.min(hi));
        let shift = (span + 10_000_000).div_ceil(unit) * unit;
        metadata.ctf = Some(tsdl_text);
        let mut ids: Vec<u32> = order
            .iter()
            .map(|(_, p)| p.info.stream_instance as u32)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        metadata.cpus = ids;
        Ok(ReplaySource {
            opts,
            streams,
            order,
            layout,
            header,
            shift,
        })
    }

    /// Events in one pass over the trace.
    pub fn events_per_loop(&self) -> u64 {
        self.order.iter().map(|(_, p)| p.info.events as u64).sum()
    }

    /// Streams packets until done, `stop` or `abort`, then closes `outbox`.
    pub fn run(
        self,
        outbox: &Outbox,
        controls: &Receiver<Control>,
        stop: &AtomicBool,
        abort: &AtomicBool,
    ) -> Result<ReplayReport, AgentError> {
        let mut report = ReplayReport::default();
        let mut batches: Vec<PacketBatch> = self
            .streams
            .iter()
            .map(|s| PacketBatch::new(&s.name))
            .collect();
        let mut buf = Vec::new();
        let start = Instant::now();
        let mut paused = false;
        let mut k: u64 = 0;
        let seal = |b: &mut PacketBatch, name: &str| -> Result<(), AgentError> {
            if !b.is_empty() {
                // Wait for room rather than drop: a replay can always wait.
                outbox.wait_for_room(b.body_len() + strata_wire::HEADER_LEN, || {
                    stop.load(Ordering::Relaxed) || abort.load(Ordering::Relaxed)
                });
                outbox.push_message(&b.message(), self.opts.compression)?;
                b.reset(name);
            }
            Ok(())
        };
        'outer: while self.opts.loops == 0 || k < self.opts.loops as u64 {
            for (fi, p) in &self.order {
                loop {
                    if stop.load(Ordering::Relaxed) || abort.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    while let Ok(c) = controls.try_recv() {
                        let (ok, message) = match c.command {
                            ControlCommand::Stop => {
                                paused = true;
                                (true, "replay paused".to_string())
                            }
                            ControlCommand::Start => {
                                paused = false;
                                (true, "replay running".to_string())
                            }
                            _ => (
                                false,
                                "a replay cannot change its events or take snapshots".to_string(),
                            ),
                        };
                        outbox.push_unsequenced(
                            Message::ControlResult(ControlResult {
                                request: c.request,
                                ok,
                                message,
                            })
                            .encode(0, Compression::None)?,
                        );
                    }
                    // Pace: this packet may go once the events before it and
                    // its own fit in the elapsed time at `rate`.
                    let due = if self.opts.rate > 0.0 {
                        Duration::from_secs_f64(
                            (report.events + p.info.events as u64) as f64 / self.opts.rate,
                        )
                    } else {
                        Duration::ZERO
                    };
                    let elapsed = start.elapsed();
                    if !paused && elapsed >= due {
                        break;
                    }
                    for (b, s) in batches.iter_mut().zip(&self.streams) {
                        seal(b, &s.name)?;
                    }
                    let wait = if paused {
                        Duration::from_millis(50)
                    } else {
                        (due - elapsed).min(Duration::from_millis(50))
                    };
                    std::thread::sleep(wait);
                }
                let stream = &self.streams[p.stream];
                let Some(file) = stream.files.get(*fi) else {
                    continue;
                };
                buf.resize((p.info.packet_size_bits / 8) as usize, 0);
                file.read_exact_at(&mut buf, p.offset)
                    .map_err(|e| AgentError::Replay {
                        path: self.opts.trace.clone(),
                        reason: format!("reading stream {} at byte {}: {e}", stream.name, p.offset),
                    })?;
                let mut info = p.info;
                if k > 0 {
                    let d = k * self.shift;
                    info.ts_begin += d;
                    info.ts_end += d;
                    info.packet_seq += k * stream.packets;
                    info.events_discarded += k * stream.discarded_end;
                    let l = &self.layout;
                    for (pos, v) in [
                        (l.ts_begin, info.ts_begin),
                        (l.ts_end, info.ts_end),
                        (l.seq, info.packet_seq),
                        (l.discarded, info.events_discarded),
                    ] {
                        if let Some(pos) = pos {
                            write_field(&mut buf, pos, v);
                        }
                    }
                    let ts_at = match self.header {
                        HeaderKind::Compact => 5,
                        HeaderKind::Large => 6,
                        HeaderKind::Other => 0,
                    };
                    for &e in &p.extended {
                        let at = e as usize + ts_at;
                        if let Some(b) = buf.get_mut(at..at + 8) {
                            let mut a = [0u8; 8];
                            a.copy_from_slice(b);
                            b.copy_from_slice(&u64::from_le_bytes(a).wrapping_add(d).to_le_bytes());
                        }
                    }
                }
                let batch = &mut batches[p.stream];
                batch.push(&info, &buf)?;
                report.packets += 1;
                report.events += info.events as u64;
                report.bytes += buf.len() as u64;
                if batch.body_len() >= self.opts.batch_bytes {
                    seal(batch, &stream.name)?;
                }
            }
            for (b, s) in batches.iter_mut().zip(&self.streams) {
                seal(b, &s.name)?;
            }
            k += 1;
            report.loops = k as u32;
        }
        for (b, s) in batches.iter_mut().zip(&self.streams) {
            seal(b, &s.name)?;
        }
        outbox.close();
        Ok(report)
    }
}

/// Opens `path`'s metadata and says whether it is a trace this replay can
/// read (used by the CLI to fail early with a clear message).
pub fn check_trace(path: &Path) -> Result<(), AgentError> {
    ReplaySource::open(
        ReplayOptions {
            trace: path.to_path_buf(),
            ..ReplayOptions::default()
        },
        &mut MetadataState::default(),
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOCK: &str = "trace { major = 1; };\nclock {\n\tname = \"monotonic\";\n\tfreq = 1000000000; /* Frequency, in Hz */\n\t/* clock value offset from Epoch is: offset * (1/freq) */\n\toffset = 1457000000500000000;\n};\nstream { id = 0; };\n";

    #[test]
    fn clock_offsets_move_by_the_shift() {
        let out = shift_clock_offsets(CLOCK, 2_000_000_000);
        assert!(out.contains("offset_s = 1457000002;"), "{out}");
        assert!(out.contains("offset = 500000000;"), "{out}");
        assert_eq!(out.matches("offset =").count(), 1, "{out}");
        assert!(out.contains("stream { id = 0; };"));
        let back = shift_clock_offsets(&out, -2_000_000_000);
        assert!(back.contains("offset_s = 1457000000;"), "{back}");
        // Other clock frequencies shift in their own cycles.
        let mhz = CLOCK
            .replace("1000000000; /*", "1000000; /*")
            .replace("1457000000500000000", "5");
        let out = shift_clock_offsets(&mhz, 3_000_000_000);
        assert!(
            out.contains("offset_s = 3;") && out.contains("offset = 5;"),
            "{out}"
        );
    }

    #[test]
    fn comments_are_stripped() {
        assert_eq!(strip_comments("a /* b */ c // d\ne"), "a  c \ne");
        assert_eq!(strip_comments("x /* open"), "x ");
    }
}
