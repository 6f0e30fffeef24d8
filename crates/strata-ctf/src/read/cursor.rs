//! One stream's events in order: walks the packets of its files (rotated
//! tracefiles in order), decodes each event header, contexts and payload,
//! and keeps the state field accessors need (marks, registers, clock).
//!
//! The common event (LTTng header, fixed-size payload) is decoded by a fast
//! path inlined into the merge loop, one copy per header layout: one load
//! of a table entry, indexed by event id, holds what decoding it needs (one
//! table per stream class, shared by the trace's streams of that class).
//! Payloads with strings or sequences among fixed fields are walked
//! from there by their flat program; anything else (generic headers,
//! variants, errors) goes through the general decoder.

use std::cell::{Cell, RefCell};
use std::ops::ControlFlow;
use std::path::Path;
use std::rc::Rc;

use super::class::{ClassPlan, EventClass, HeaderFast, StreamPlan, TracePlan};
use super::error::{ReadError, SkipStats};
use super::flat_shape::FlatShape;
use super::packet::{decode_packet, PacketInfo};
use super::plan::{align_up, FastScope, Scope, ScopeKind};
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

/// What `decode_fast` returns when the event needs the general path.
pub(crate) const NOT_FAST: u64 = u64::MAX;

/// A timestamp as an unsigned number that sorts the same way.
#[inline(always)]
pub(crate) fn sort_key(ts: i64) -> u64 {
    (ts as u64) ^ (1 << 63)
}

/// Granularity of released ranges.
const PAGE: u64 = 4096;

/// Read bytes of a file are released once this many have piled up (and
/// when the file ends, if another follows): each release is a system
/// call that unmaps the pages and flushes the TLB (with an interrupt to
/// the other CPUs the process ran on), ~10-35 us each here: worth it for
/// megabytes, not for every packet. (On tc-many-threads, whose streams
/// hold 0.7-1.3 MB, releasing by the megabyte cost 2-4% of the decode.)
/// A stream keeps at most this much of its files mapped, so the resident
/// size stays bounded by the number of streams, whatever the trace's size.
pub(crate) const RELEASE_CHUNK: u64 = 1 << 21;

/// No mark to set.
const NO_SLOT: u32 = u32::MAX;

/// The current event of a cursor: what accessors read. Its raw clock
/// value is the cursor's `clock`, which a decoded event leaves as it is.
#[derive(Clone, Copy, Default)]
pub(crate) struct Current {
    pub ts: i64,
    /// Bit where the event starts in the packet.
    pub start: u64,
    /// Class index in the trace, and in the set.
    pub class: u32,
    pub index: u32,
}

/// What decoding needs of an event class, resolved on its first event in
/// the stream class: one load per event instead of a chain of lookups. 16
/// bytes, so the table is indexed with a shift.
#[derive(Clone, Copy)]
struct Entry {
    /// `FIXED`, `FIXED_ALIGNED`, `WALK`, `FLAT` or `UNRESOLVED`: one test
    /// in the fast path.
    kind: u8,
    /// Fixed kinds: the payload's alignment in bits, minus one.
    pay_mask: u8,
    /// Fixed kinds: the payload's size in bits. `WALK`: when only its payload
    /// is walked and that walk is flat (the common walked event: a string
    /// or a sequence among fixed fields), its index in `flats`, to walk it
    /// directly; otherwise `NO_FLAT`.
    arg: u16,
    pay_slot: u32,
    class: u32,
    index: u32,
}

/// No flat walk for this `WALK` entry.
const NO_FLAT: u16 = u16::MAX;

/// Ids from this one up are resolved at each event rather than kept in a
/// table (LTTng's are below a few thousand).
const TABLE_IDS: usize = 1 << 16;

/// Most entries the id tables of one trace's cursors hold together (16 MiB):
/// a stream class met past it gets an empty table, its events resolved one
/// by one, so that metadata declaring huge ids in many stream classes
/// cannot make the reader allocate without bound.
const MAX_TABLE_ENTRIES: usize = 1 << 20;

/// What decoding needs of the classes of one stream class, by event id,
/// filled as ids are met. One per stream class, shared by the cursors of
/// the trace's streams of that class: each class is resolved and its entry
/// loaded into the cache once, not once per stream (a trace has a stream
/// per CPU).
pub(crate) struct IdTable {
    /// By event id; `UNRESOLVED` until met. Shared with the cursors, which
    /// read it in the fast path without going through this struct.
    entries: Rc<[Cell<Entry>]>,
    /// The entries' `arg`, by id, on their own: see `Cursor::sizes`.
    sizes: Rc<[Cell<u16>]>,
    /// The same for events whose header has no id.
    no_id: Cell<Entry>,
    /// The classes (local index) of the stream class whose payloads are
    /// walked flat, where their marks start, and their shapes when common
    /// enough to walk by straight-line code. (Classes rather than their
    /// scopes, so that the table borrows nothing.) Each cursor copies what
    /// it needs of it (see `Cursor::flats`).
    flats: RefCell<Vec<(u32, u32, Option<FlatShape>)>>,
}

/// The id tables of one trace, by stream class, made as its cursors meet
/// packets of each.
#[derive(Default)]
pub(crate) struct IdTables {
    by_stream: RefCell<Vec<Option<Rc<IdTable>>>>,
    entries: Cell<usize>,
}

impl IdTable {
    /// A table for ids below `n`, none resolved yet.
    fn new(n: usize) -> Self {
        IdTable {
            entries: (0..n).map(|_| Cell::new(Entry::default())).collect(),
            sizes: (0..n).map(|_| Cell::new(0)).collect(),
            no_id: Cell::new(Entry::default()),
            flats: RefCell::default(),
        }
    }
}

impl IdTables {
    /// The table of stream class `sp`, whose ids are below `ids`: made on
    /// first use, empty past `MAX_TABLE_ENTRIES`.
    fn get(&self, sp: usize, ids: usize) -> Rc<IdTable> {
        let mut by = self.by_stream.borrow_mut();
        if let Some(Some(t)) = by.get(sp) {
            return t.clone();
        }
        let mut n = ids.min(TABLE_IDS);
        if self.entries.get() + n > MAX_TABLE_ENTRIES {
            n = 0;
        }
        self.entries.set(self.entries.get() + n);
        let t = Rc::new(IdTable::new(n));
        if by.len() <= sp {
            by.resize(sp + 1, None);
        }
        by[sp] = Some(t.clone());
        t
    }
}

/// Entry kinds. Fixed: contexts and payload have static sizes (the stream
/// event context, if any, is fixed too), so locating the event is
/// arithmetic; and the payload starts right where the header (or stream
/// event context) ends and is whole bytes with a byte alignment at most,
/// as in every LTTng trace, so the fast path adds its size without
/// aligning, and the next event starts at a whole byte too.
const FIXED: u8 = 0;
/// Fixed, but the payload may need aligning: the fast path's second case.
const FIXED_ALIGNED: u8 = 4;
/// Its context or payload must be walked.
const WALK: u8 = 1;
/// Not resolved yet: the class has not been met in this stream class.
const UNRESOLVED: u8 = 2;
/// Walked, and only its payload, flat (`arg` is its index in `flats`).
const FLAT: u8 = 3;

impl Default for Entry {
    fn default() -> Self {
        Entry {
            kind: UNRESOLVED,
            pay_mask: 0,
            arg: NO_FLAT,
            pay_slot: NO_SLOT,
            class: 0,
            index: 0,
        }
    }
}

/// Which copy of the fast path decodes the current packet's events: its
/// stream class's event header layout, and whether it has a (fixed)
/// stream event context.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Compact,
    CompactSec,
    Large,
    LargeSec,
    /// A generic or absent header, a stream event context that is walked,
    /// or an unknown stream class: the general path.
    Other,
}

/// How a stream's event context is located.
#[derive(Clone, Copy)]
enum Sec<'s> {
    None,
    /// Fixed size: aligned and skipped, its start recorded in `slot`.
    Fast(FastScope, u32),
    /// Walked.
    Walk(&'s Scope),
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
    /// Bytes of the current file already released.
    released_to: u64,
    /// The current packet's bytes.
    pub pkt: &'s [u8],
    /// Its content's whole bytes (a prefix of `pkt`, at most
    /// `content_end / 8` bytes): a header that fits in it fits in the
    /// content, so the fast path checks both bounds at once.
    content: &'s [u8],
    pkt_off: u64,
    pkt_size: u64,
    content_end: u64,
    /// Where the next event starts; with the LTTng headers (`mode` not
    /// `Other`), at a whole byte, as their headers are aligned to bytes:
    /// kept so, the fast path does not align it.
    pos: u64,
    /// The clock after the current event.
    clock: u64,
    /// Index of the current packet's stream class.
    pub sp: usize,
    /// Its plan.
    stream: Option<&'s StreamPlan>,
    sec: Sec<'s>,
    /// Registers and marks of the current event. Marks of every scope
    /// kind sit at the plan's `mark_base` offsets, then the class's.
    pub regs: Vec<u64>,
    pub marks: Vec<u64>,
    /// The event at `pos` could not be decoded.
    failed: Option<DecodeError>,
    /// The trace's id tables, shared by its cursors.
    tables: Rc<IdTables>,
    /// The current stream class's, and its entries (`ids.entries`, held
    /// here too so the fast path loads them from the cursor).
    ids: Rc<IdTable>,
    table: Rc<[Cell<Entry>]>,
    /// `ids.sizes`: a fixed payload's size, on the chain of loads from one
    /// event's header to the next's, is read from 2-byte entries (one
    /// load, the id scaled by the address) rather than from the 16-byte
    /// entry (a shift first).
    sizes: Rc<[Cell<u16>]>,
    /// The flat payloads of `ids.flats` this cursor has met: their scopes,
    /// where their marks start, and their shapes. Copies, so the fast path
    /// reads them without borrowing the shared list.
    flats: Vec<(&'s Scope, u32)>,
    shapes: Vec<Option<FlatShape>>,
    /// The stream class `ids` is for.
    table_sp: usize,
    /// The current event.
    pub cur: Current,
    /// The fast path for the current stream class, set at each packet so
    /// the fast path does not go through the stream plan.
    mode: Mode,
    /// `mode` is `Mode::Compact`: tested first, on its own.
    compact: bool,
    /// The fixed stream event context, if any: whether there is one, its
    /// alignment minus one, its size in bits and its mark slot.
    sec_on: bool,
    sec_mask: u64,
    sec_bits: u64,
    sec_slot: u32,
    /// Clock to nanoseconds in the fast path: `ns_zero + clock` when
    /// `clock < ns_limit`; `ns_limit` is 0 when that does not apply (clock
    /// not in ns, or a clock map set), sending every event to the general
    /// path.
    ns_zero: i64,
    ns_limit: u64,
    /// Global index of the current packet's stream class.
    pub stream_global: u32,
    pub cpu: u32,
    default_cpu: u32,
    /// Events the tracer discarded before the event at bit `lost_start`
    /// of packet `lost_packet`: the first event decoded after a packet
    /// change, found in `advance_slow` so the common path skips it.
    lost: u64,
    lost_packet: u64,
    lost_start: u64,
    pending_lost: u64,
    prev_discarded: Option<u64>,
    skip: bool,
    pub stats: SkipStats,
    /// Bytes of packets finished so far.
    pub done_bytes: u64,
    /// Packets entered so far: the current packet's ordinal, from 1.
    pub packet_number: u64,
    /// The trace's clock correction, if one was set.
    pub map: Option<super::ClockMap>,
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
        tables: Rc<IdTables>,
    ) -> Self {
        // Until the first packet names its stream class.
        let ids = Rc::new(IdTable::new(0));
        Cursor {
            plan,
            classes,
            trace,
            key,
            files,
            file_i: 0,
            next_off: 0,
            released_to: 0,
            pkt: &[],
            content: &[],
            pkt_off: 0,
            pkt_size: 0,
            content_end: 0,
            pos: 0,
            clock: 0,
            sp: 0,
            stream: None,
            sec: Sec::None,
            regs: vec![0; plan.regs],
            marks: vec![0; plan.mark_total],
            failed: None,
            tables,
            table: ids.entries.clone(),
            sizes: ids.sizes.clone(),
            ids,
            flats: Vec::new(),
            shapes: Vec::new(),
            table_sp: usize::MAX,
            cur: Current {
                index: u32::MAX,
                ..Current::default()
            },
            mode: Mode::Other,
            compact: false,
            sec_on: false,
            sec_mask: 0,
            sec_bits: 0,
            sec_slot: NO_SLOT,
            ns_zero: 0,
            ns_limit: 0,
            stream_global: u32::MAX,
            cpu: default_cpu,
            default_cpu,
            lost: 0,
            lost_packet: 0,
            lost_start: 0,
            pending_lost: 0,
            prev_discarded: None,
            skip,
            stats: SkipStats::default(),
            done_bytes: 0,
            packet_number: 0,
            map: None,
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
    #[inline(always)]
    pub(crate) fn advance(&mut self) -> Result<bool, ReadError> {
        if self.decode_fast() != NOT_FAST {
            return Ok(true);
        }
        self.advance_slow()
    }

    /// The current event's merge key: its timestamp as an unsigned number
    /// that sorts the same way. Below `NOT_FAST`, since timestamps stay
    /// below `i64::MAX`.
    #[inline(always)]
    pub(crate) fn key(&self) -> u64 {
        sort_key(self.cur.ts)
    }

    /// Past the end of a packet, or after an event that could not be
    /// decoded: moves through packets and files to the next event.
    #[inline(never)]
    pub(crate) fn advance_slow(&mut self) -> Result<bool, ReadError> {
        loop {
            if let Some(e) = self.failed.take() {
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
            if self.pos < self.content_end {
                if self.decode() {
                    // Losses are counted as packets start, which only
                    // happens on this path: the first event after them is
                    // decoded here.
                    self.lost = std::mem::take(&mut self.pending_lost);
                    self.lost_packet = self.packet_number;
                    self.lost_start = self.cur.start;
                    return Ok(true);
                }
                continue;
            }
            self.done_bytes += self.pkt_size;
            self.pkt_size = 0;
            if self.next_off - self.released_to >= RELEASE_CHUNK {
                self.release_to(self.next_off & !(PAGE - 1));
            }
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
        (self.path(), self.pkt_off + self.cur.start / 8)
    }

    fn finish(&mut self) {
        self.file_i = self.files.len();
        self.content = &[];
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
                // The stream's last file stays mapped until the trace set
                // is dropped, which unmaps it anyway: releasing its tail
                // (under `RELEASE_CHUNK`) would cost a call for nothing.
                if self.file_i + 1 < self.files.len() {
                    self.release_to(len);
                }
                self.file_i += 1;
                self.next_off = 0;
                self.released_to = 0;
                continue;
            }
            let off = self.next_off;
            let data = file.data.get(off as usize..).unwrap_or(&[]);
            let at = self.plan.marks[0].min(self.marks.len());
            let (ph, rest) = self.marks.split_at_mut(at);
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
        let whole = usize::try_from(info.content_bits / 8).unwrap_or(usize::MAX);
        self.content = self.pkt.get(..whole).unwrap_or(self.pkt);
        self.pos = info.events_bit;
        self.sp = info.stream;
        let plan = self.plan;
        let sp = plan.streams.get(info.stream);
        if self.table_sp != self.sp {
            // Sized once for every id the stream class declares, rather
            // than step by step as ids are met: LTTng's last ids are met
            // early.
            let ids = sp.map_or(0, |s| s.classes.id_bound());
            self.ids = self.tables.get(self.sp, ids);
            self.table = self.ids.entries.clone();
            self.sizes = self.ids.sizes.clone();
            self.flats.clear();
            self.shapes.clear();
            self.table_sp = self.sp;
        }
        self.stream = sp;
        self.stream_global = sp.map_or(u32::MAX, |s| s.global);
        self.sec = match sp.and_then(|s| s.event_context) {
            None => Sec::None,
            Some(i) => {
                let scope = plan.scope(i);
                match scope.fast {
                    Some(f) => {
                        let k = ScopeKind::StreamEventContext as usize;
                        let slot = f.mark.map_or(NO_SLOT, |m| {
                            u32::try_from(plan.mark_base[k] + m as usize).unwrap_or(NO_SLOT)
                        });
                        Sec::Fast(f, slot)
                    }
                    None => Sec::Walk(scope),
                }
            }
        };
        self.mode = match (sp.map(|s| s.header_fast), self.sec) {
            (Some(HeaderFast::Compact), Sec::None) => Mode::Compact,
            (Some(HeaderFast::Compact), Sec::Fast(..)) => Mode::CompactSec,
            (Some(HeaderFast::Large), Sec::None) => Mode::Large,
            (Some(HeaderFast::Large), Sec::Fast(..)) => Mode::LargeSec,
            _ => Mode::Other,
        };
        self.compact = self.mode == Mode::Compact;
        if self.mode != Mode::Other {
            // Events start at whole bytes with these headers (see `pos`).
            self.pos = align_up(self.pos, 8);
        }
        (self.sec_on, self.sec_mask, self.sec_bits, self.sec_slot) = match self.sec {
            Sec::Fast(f, slot) => (true, (f.align as u64).max(1) - 1, f.bits, slot),
            _ => (false, 0, 0, NO_SLOT),
        };
        (self.ns_zero, self.ns_limit) = match (self.map, sp.and_then(|s| s.clock.ns_zero())) {
            (None, Some(z)) => (z, 1 << 62),
            _ => (0, 0),
        };
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

    /// Decodes the event at `pos` and makes it current, if it is the
    /// common case: an LTTng header that fits in the packet content, a
    /// class already resolved whose event has a static layout (or a flat
    /// payload walk), a clock in nanoseconds. It changes nothing the
    /// current event shows until it knows it can finish; anything else
    /// returns false with the cursor's position and clock untouched, for
    /// `advance_slow` to decode (or report) with `decode`.
    ///
    /// Inlined into the merge loop, one copy per header layout and
    /// stream event context presence, so neither is tested per field;
    /// everything uncommon is out of line.
    ///
    /// Returns the new event's merge key (see `key`), or `NOT_FAST`: the
    /// merge compares it straight from a register, rather than reading
    /// back the timestamp just stored.
    #[inline(always)]
    pub(crate) fn decode_fast(&mut self) -> u64 {
        // The compact header without a stream event context (LTTng's
        // kernel channels) by one comparison, which the CPU predicts, rather
        // than a jump through a table.
        if self.compact {
            return self.fast_event::<false, false>();
        }
        match self.mode {
            Mode::Compact => self.fast_event::<false, false>(),
            Mode::CompactSec => self.fast_event::<false, true>(),
            Mode::Large => self.fast_event::<true, false>(),
            Mode::LargeSec => self.fast_event::<true, true>(),
            Mode::Other => NOT_FAST,
        }
    }

    /// `decode_fast` for the large (`LARGE`) or compact header, with or
    /// without (`SEC`) a fixed stream event context.
    #[inline(always)]
    fn fast_event<const LARGE: bool, const SEC: bool>(&mut self) -> u64 {
        let (mut pos, mut clock) = (self.pos, self.clock);
        self.fast_event_at::<LARGE, SEC>(&mut pos, &mut clock)
    }

    /// Hands the current event to `f`, then decodes this stream's next
    /// events, handing each to `f`, while their merge keys stay below
    /// `bound`.
    ///
    /// The position and clock after each event stay in locals (registers)
    /// from one event to the next: `decode_fast` called once per event
    /// reloads them from the cursor, a store-to-load round trip on the
    /// chain from one event's header to the next. They are still stored
    /// with every event, so the cursor is the same as after `decode_fast`.
    ///
    /// `f` is called from this one place, so that the compiler inlines it
    /// into the loop (called from several, a large `f` is not inlined, and
    /// costs more than the loop saves).
    ///
    /// Returns `Break` when `f` does (its event stays current), or
    /// `Continue` with the key of the event decoded past the run: at or
    /// above `bound`, not handed to `f`; or `NOT_FAST`, nothing decoded,
    /// for `advance_slow` (as after `decode_fast`).
    #[inline(always)]
    pub(crate) fn run<B, F>(&mut self, bound: u64, f: &mut F) -> ControlFlow<B, u64>
    where
        F: FnMut(&Self) -> ControlFlow<B>,
    {
        let (mut pos, mut clock) = (self.pos, self.clock);
        loop {
            f(self)?;
            let k = self.decode_fast_at(&mut pos, &mut clock);
            // `NOT_FAST` is never below the bound.
            if k >= bound {
                return ControlFlow::Continue(k);
            }
        }
    }

    /// `decode_fast` from the position `*at` and clock `*clk`, which must
    /// be the cursor's, updating both as it updates the cursor's.
    #[inline(always)]
    fn decode_fast_at(&mut self, at: &mut u64, clk: &mut u64) -> u64 {
        if self.compact {
            return self.fast_event_at::<false, false>(at, clk);
        }
        match self.mode {
            Mode::Compact => self.fast_event_at::<false, false>(at, clk),
            Mode::CompactSec => self.fast_event_at::<false, true>(at, clk),
            Mode::Large => self.fast_event_at::<true, false>(at, clk),
            Mode::LargeSec => self.fast_event_at::<true, true>(at, clk),
            Mode::Other => NOT_FAST,
        }
    }

    /// `fast_event` from the position `*at` and clock `*clk` (which must be
    /// the cursor's `pos` and `clock`), updating both as it updates the
    /// cursor's.
    #[inline(always)]
    fn fast_event_at<const LARGE: bool, const SEC: bool>(
        &mut self,
        at: &mut u64,
        clk: &mut u64,
    ) -> u64 {
        let data: &'s [u8] = self.content;
        // Whole bytes already (see `pos`): LTTng headers are byte-aligned.
        let start = *at;
        let mut pos = start;
        let b = (pos >> 3) as usize;
        prefetch(data, b + PREFETCH);
        let clock;
        let id;
        if !LARGE {
            // The longest form (13 bytes) within the content's whole
            // bytes; this also stops at the end of the packet's events.
            // (`b` is at most 2^61: the sum does not overflow.)
            if b + 13 > data.len() {
                return NOT_FAST;
            }
            let h = &data[b..b + 13];
            let w = le32(h, 0).unwrap_or(0);
            let ext_id = le32(h, 1).unwrap_or(0);
            let ext_ts = le64(h, 5).unwrap_or(0);
            // Masks rather than `if`: compact and extended headers
            // interleave at random, so a branch would mispredict.
            let ext = ((w & 31 == 31) as u64).wrapping_neg();
            let short = update_clock(*clk, (w >> 5) as u64, 27);
            clock = (ext_ts & ext) | (short & !ext);
            pos += 32 + (72 & ext);
            id = (ext_id as u64 & ext) | ((w & 31) as u64 & !ext);
        } else {
            // Room for either form (14 bytes); events in the content's
            // last bytes go the general way.
            if b + 14 > data.len() {
                return NOT_FAST;
            }
            let h = &data[b..b + 14];
            let small = le16(h, 0).unwrap_or(0) as u64;
            let v = le32(h, 2).unwrap_or(0) as u64;
            let ext_ts = le64(h, 6).unwrap_or(0);
            let ext = ((small == 65535) as u64).wrapping_neg();
            let short = update_clock(*clk, v, 32);
            clock = (ext_ts & ext) | (short & !ext);
            pos += 48 + (64 & ext);
            id = (v & ext) | (small & !ext);
        }
        let Some(e) = self.table.get(id as usize).map(Cell::get) else {
            return NOT_FAST;
        };
        if e.kind != FIXED {
            let k = self.fast_other(id as usize, start, pos, clock);
            // Out of line: it stored where it ended (or left both as they
            // were, on `NOT_FAST`).
            (*at, *clk) = (self.pos, self.clock);
            return k;
        }
        let mut sec_at = 0;
        if SEC {
            sec_at = (pos + self.sec_mask) & !self.sec_mask;
            pos = sec_at + self.sec_bits;
        }
        // No alignment: one addition on the chain from one event to the
        // next (see `FIXED`).
        let pay_at = pos;
        pos = pay_at + self.sizes.get(id as usize).map_or(0, Cell::get) as u64;
        if pos > self.content_end || clock >= self.ns_limit {
            return NOT_FAST;
        }
        (*at, *clk) = (pos, clock);
        self.commit_fast(e, start, pos, clock, SEC.then_some(sec_at), pay_at)
    }

    /// Makes the event the fast path decoded current: its marks (the
    /// stream event context's, when there is one, and the payload's), the
    /// event, and where the next one starts.
    #[inline(always)]
    fn commit_fast(
        &mut self,
        e: Entry,
        start: u64,
        pos: u64,
        clock: u64,
        sec_at: Option<u64>,
        pay_at: u64,
    ) -> u64 {
        match self.marks.get_mut(e.pay_slot as usize) {
            Some(m) => *m = pay_at,
            // Another cursor resolved the class: this one's marks are
            // sized for it by the general path.
            None if e.pay_slot != NO_SLOT => return NOT_FAST,
            None => {}
        }
        if let Some(at) = sec_at {
            if let Some(m) = self.marks.get_mut(self.sec_slot as usize) {
                *m = at;
            }
        }
        let ts = self.ns_zero + clock as i64;
        self.cur = Current {
            ts,
            start,
            class: e.class,
            index: e.index,
        };
        self.pos = pos;
        self.clock = clock;
        sort_key(ts)
    }

    /// `decode_fast` for an event whose payload is walked flat or needs
    /// aligning, from the end of its header at `pos`; `NOT_FAST` for other
    /// kinds.
    #[inline(never)]
    fn fast_other(&mut self, id: usize, start: u64, mut pos: u64, clock: u64) -> u64 {
        let Some(e) = self.table.get(id).map(Cell::get) else {
            return NOT_FAST;
        };
        if clock >= self.ns_limit {
            return NOT_FAST;
        }
        if e.kind == FIXED_ALIGNED {
            let mut sec_at = 0;
            if self.sec_on {
                sec_at = (pos + self.sec_mask) & !self.sec_mask;
                pos = sec_at + self.sec_bits;
            }
            let m = e.pay_mask as u64;
            let pay_at = (pos + m) & !m;
            pos = pay_at + e.arg as u64;
            if pos > self.content_end {
                return NOT_FAST;
            }
            let next = align_up(pos, 8);
            return self.commit_fast(e, start, next, clock, self.sec_on.then_some(sec_at), pay_at);
        }
        if e.kind != FLAT {
            return NOT_FAST;
        }
        if let Some(Some(shape)) = self.shapes.get(e.arg as usize) {
            let end = self.content_end;
            let mut sec_at = 0;
            if self.sec_on {
                sec_at = (pos + self.sec_mask) & !self.sec_mask;
                pos = sec_at + self.sec_bits;
            }
            if pos > end {
                return NOT_FAST;
            }
            let Some(pos) = shape.walk(self.pkt, end, &mut self.marks, &mut self.regs, pos) else {
                return NOT_FAST;
            };
            // (Whole bytes: the next event starts aligned.)
            return self.commit_fast(e, start, pos, clock, self.sec_on.then_some(sec_at), 0);
        }
        self.fast_walked(e, start, pos, clock)
    }

    /// `fast_other` for a flat payload of no common shape: walked by its
    /// program. Out of line, so that the common shapes' path keeps its
    /// values in registers.
    #[inline(never)]
    fn fast_walked(&mut self, e: Entry, start: u64, pos: u64, clock: u64) -> u64 {
        // Past the flats this cursor copied: the general path copies it.
        let Some(&(scope, base)) = self.flats.get(e.arg as usize) else {
            return NOT_FAST;
        };
        let Some((pos, sec_at)) = self.walk_flat_payload(scope, base, pos, clock) else {
            return NOT_FAST;
        };
        self.commit_fast(
            e,
            start,
            align_up(pos, 8),
            clock,
            self.sec_on.then_some(sec_at),
            0,
        )
    }

    /// Makes room for `end` marks, what a class's events need: a class
    /// resolved after this cursor was made may need more than it has.
    fn size_marks(&mut self, end: usize) {
        if self.marks.len() < end {
            self.marks.resize(end, 0);
        }
    }

    /// How many ids of the current stream class are resolved, by any
    /// cursor sharing its table.
    #[cfg(test)]
    pub(crate) fn resolved_ids(&self) -> usize {
        self.table
            .iter()
            .filter(|e| e.get().kind != UNRESOLVED)
            .count()
    }

    /// Copies the flat payloads other cursors (or this one) added to the
    /// shared list since this cursor last looked.
    fn copy_flats(&mut self) {
        let classes: &'s [EventClass] = self.classes;
        for &(class, base, shape) in self.ids.flats.borrow().iter().skip(self.flats.len()) {
            let Some(scope) = classes
                .get(class as usize)
                .and_then(|c| c.plan().payload.as_ref())
            else {
                // Cannot happen (listed classes have a payload): stop,
                // and the events of this one take the generic walk.
                break;
            };
            self.flats.push((scope, base));
            self.shapes.push(shape);
        }
    }

    /// Decodes the event at `pos`, whatever its layout, and makes it
    /// current. On failure, keeps the error in `failed` (reading resumes or
    /// stops there) and returns false.
    #[inline(never)]
    fn decode(&mut self) -> bool {
        let Some(sp) = self.stream else {
            return self.fail(unknown_stream(self.pos));
        };
        let data: &'s [u8] = self.pkt;
        let end = self.content_end;
        let start = self.pos;
        let mut pos = start;
        let mut clock = self.clock;
        // The event header: id and clock.
        let id = match sp.header_fast {
            HeaderFast::Compact => {
                pos = (pos + 7) & !7;
                let b = (pos >> 3) as usize;
                // One bounds check for the longest form (13 bytes).
                let long = data.get(b..).and_then(|d| d.first_chunk::<13>());
                match long {
                    // Room for either form: choose without branching, as
                    // compact and extended headers interleave at random.
                    Some(h) if pos + 104 <= end => {
                        // Over a slice of known length these are plain
                        // loads (bytes gathered one by one into an array
                        // are not merged, as the fields overlap).
                        let h: &[u8] = h;
                        let w = le32(h, 0).unwrap_or(0);
                        let ext_id = le32(h, 1).unwrap_or(0);
                        let ext_ts = le64(h, 5).unwrap_or(0);
                        // Masks rather than `if`, which the compiler would
                        // turn back into a mispredicted branch.
                        let ext = ((w & 31 == 31) as u64).wrapping_neg();
                        let short = update_clock(clock, (w >> 5) as u64, 27);
                        clock = (ext_ts & ext) | (short & !ext);
                        pos += 32 + (72 & ext);
                        Some((ext_id as u64 & ext) | ((w & 31) as u64 & !ext))
                    }
                    _ => match le32(data, b) {
                        Some(w) if w & 31 < 31 && pos + 32 <= end => {
                            clock = update_clock(clock, (w >> 5) as u64, 27);
                            pos += 32;
                            Some((w & 31) as u64)
                        }
                        _ => return self.fail(short(pos, end)),
                    },
                }
            }
            HeaderFast::Large => {
                pos = (pos + 7) & !7;
                let b = (pos >> 3) as usize;
                let (Some(small), Some(v)) = (le16(data, b), le32(data, b + 2)) else {
                    return self.fail(short(pos, end));
                };
                if pos + 48 > end {
                    return self.fail(short(pos, end));
                }
                if small < 65535 {
                    clock = update_clock(clock, v as u64, 32);
                    pos += 48;
                    Some(small as u64)
                } else {
                    let Some(t) = le64(data, b + 6).filter(|_| pos + 112 <= end) else {
                        return self.fail(short(pos, end));
                    };
                    clock = t;
                    pos += 112;
                    Some(v as u64)
                }
            }
            HeaderFast::Generic => match self.walk_header(sp, data, end, pos, clock) {
                Ok((p, id, c)) => {
                    pos = p;
                    clock = c;
                    id
                }
                Err(e) => return self.fail(e),
            },
        };
        // Its class, and where its contexts and payload are.
        let cached = match id {
            Some(i) => self.table.get(i as usize).map(Cell::get),
            None => Some(self.ids.no_id.get()),
        };
        let e = match cached {
            Some(e) if e.kind != UNRESOLVED => {
                // Resolved by another cursor of the trace: its marks may
                // not be sized for the class yet.
                if let Some(c) = self.classes.get(e.class as usize) {
                    match c.compiled() {
                        Some(cp) => self.size_marks(cp.marks_end),
                        // Resolved from its layout alone: the payload's
                        // mark is the only one (see `resolve`).
                        None if e.pay_slot != NO_SLOT => self.size_marks(e.pay_slot as usize + 1),
                        None => {}
                    }
                }
                e
            }
            _ => match self.resolve(sp, id, start) {
                Ok(e) => e,
                Err(e) => return self.fail(e),
            },
        };
        let (sec_at, pay_at) = if e.kind == FIXED || e.kind == FIXED_ALIGNED {
            let mut sec_at = 0;
            if let Sec::Fast(f, _) = self.sec {
                sec_at = align_up(pos, f.align);
                pos = sec_at + f.bits;
            }
            let pay_at = align_up(pos, e.pay_mask as u32 + 1);
            pos = pay_at + e.arg as u64;
            if pos > end {
                return self.fail(past_content(self.sec, sec_at, pay_at, e.arg as u32, end));
            }
            (sec_at, pay_at)
        } else {
            if e.arg as usize >= self.flats.len() {
                self.copy_flats();
            }
            let flat = match self.flats.get(e.arg as usize).copied() {
                Some((scope, base)) => self.walk_flat_payload(scope, base, pos, clock),
                None => None,
            };
            match flat {
                Some((p, s)) => {
                    pos = p;
                    (s, 0)
                }
                // Not flat, or a problem the generic walk describes.
                None => match self.walk_event(sp, e, data, end, pos, clock) {
                    Ok((p, s, a)) => {
                        pos = p;
                        (s, a)
                    }
                    Err(err) => return self.fail(err),
                },
            }
        };
        if let Sec::Fast(_, slot) = self.sec {
            if let Some(m) = self.marks.get_mut(slot as usize) {
                *m = sec_at;
            }
        }
        if let Some(m) = self.marks.get_mut(e.pay_slot as usize) {
            *m = pay_at;
        }
        self.cur = Current {
            // Below `i64::MAX`, which the merge keeps for finished streams.
            ts: match self.map {
                None => sp.clock.to_ns(clock),
                Some(m) => m.apply(sp.clock.to_ns(clock)),
            }
            .min(i64::MAX - 1),
            start,
            class: e.class,
            index: e.index,
        };
        self.pos = match sp.header_fast {
            HeaderFast::Compact | HeaderFast::Large => align_up(pos, 8),
            HeaderFast::Generic => pos,
        };
        self.clock = clock;
        true
    }

    /// Records that the event at `pos` cannot be decoded: reading resumes
    /// (or stops) there. Returns false, for `decode` to return.
    #[cold]
    fn fail(&mut self, e: DecodeError) -> bool {
        self.failed = Some(e);
        false
    }

    /// Resolves the class of event id `id` (or the stream's only class):
    /// compiles it if needed, makes room for its marks, and remembers what
    /// the fast path needs of it.
    #[cold]
    #[inline(never)]
    fn resolve(
        &mut self,
        sp: &'s StreamPlan,
        id: Option<u64>,
        start: u64,
    ) -> Result<Entry, DecodeError> {
        let local = match id {
            Some(i) => sp.classes.get(i).or(sp.only_class),
            None => sp.only_class.or_else(|| sp.classes.get(0)),
        };
        let classes: &'s [EventClass] = self.classes;
        let Some((local, ec)) = local.and_then(|l| Some((l, classes.get(l as usize)?))) else {
            return Err(unknown_id(id, sp.id, start));
        };
        // A payload of integers only: located without compiling the class
        // (its fields may never be asked for).
        if let Some(f) = ec.fixed_layout() {
            if f.align <= 256 && f.bits < NO_FLAT as u64 && !matches!(self.sec, Sec::Walk(_)) {
                self.size_marks(f.marks_end());
                let entry = self.fixed_entry(f.align, f.bits, f.pay_slot, local, ec.index);
                self.remember(id, entry);
                return Ok(entry);
            }
        }
        let cp: &'s ClassPlan = ec.plan();
        if let Some(f) = &cp.failure {
            return Err(DecodeError {
                bit: start,
                msg: f.0.clone(),
            });
        }
        self.size_marks(cp.marks_end);
        let fixed_payload = cp.pay_fast.is_some() || cp.payload.is_none();
        // Only for entries the table keeps (see below), so that `flats`
        // stays as small as the table.
        let cached = id.is_none_or(|i| i < self.table.len() as u64);
        let flat = match (&cp.context, self.sec, &cp.payload) {
            (None, Sec::None | Sec::Fast(..), Some(p))
                if cached && p.flat && cp.pay_fast.is_none() =>
            {
                let mut flats = self.ids.flats.borrow_mut();
                match (u32::try_from(cp.pay_base), u16::try_from(flats.len())) {
                    (Ok(b), Ok(i)) if i != NO_FLAT => {
                        // Whole bytes from a whole byte: the header's end,
                        // or a stream event context of whole bytes.
                        let whole = !self.sec_on || self.sec_bits.is_multiple_of(8);
                        flats.push((local, b, FlatShape::of(p, b).filter(|_| whole)));
                        i
                    }
                    _ => NO_FLAT,
                }
            }
            _ => NO_FLAT,
        };
        // A fixed payload the entry cannot describe is walked instead.
        let (pay_align, pay_bits) = cp.pay_fast.map_or((1, 0), |f| (f.align.max(1), f.bits));
        let fits = pay_align <= 256 && pay_bits < NO_FLAT as u64;
        let walk =
            !fixed_payload || !fits || cp.context.is_some() || matches!(self.sec, Sec::Walk(_));
        let entry = if walk {
            Entry {
                kind: if flat == NO_FLAT { WALK } else { FLAT },
                pay_mask: 0,
                arg: flat,
                pay_slot: cp.pay_slot,
                class: local,
                index: ec.index,
            }
        } else {
            self.fixed_entry(pay_align, pay_bits, cp.pay_slot, local, ec.index)
        };
        self.remember(id, entry);
        Ok(entry)
    }

    /// The entry of a class whose payload, of `bits` bits aligned to
    /// `align`, follows the header (and the stream event context) at once.
    fn fixed_entry(&self, align: u32, bits: u64, pay_slot: u32, class: u32, index: u32) -> Entry {
        // The payload starts at a whole byte (the header's end, or the
        // stream event context's when it has whole bytes).
        let whole = !self.sec_on || self.sec_bits.is_multiple_of(8);
        Entry {
            kind: if align <= 8 && bits.is_multiple_of(8) && whole {
                FIXED
            } else {
                FIXED_ALIGNED
            },
            pay_mask: (align - 1) as u8,
            arg: bits as u16,
            pay_slot,
            class,
            index,
        }
    }

    /// Keeps `entry` for the events of id `id`: in the table, which covers
    /// the ids the stream class declares (up to `TABLE_IDS`); others are
    /// resolved each time.
    fn remember(&self, id: Option<u64>, entry: Entry) {
        match id {
            Some(i) => {
                if let Some(slot) = self.table.get(i as usize) {
                    slot.set(entry);
                }
                if let Some(size) = self.sizes.get(i as usize) {
                    size.set(entry.arg);
                }
            }
            None => self.ids.no_id.set(entry),
        }
    }

    /// Decodes the contexts and payload of an event that needs walking. Returns where the event ends, and where its
    /// fixed stream event context and fixed payload start.
    #[inline(never)]
    fn walk_event(
        &mut self,
        sp: &'s StreamPlan,
        e: Entry,
        data: &'s [u8],
        end: u64,
        mut pos: u64,
        clock: u64,
    ) -> Result<(u64, u64, u64), DecodeError> {
        let plan = self.plan;
        let classes: &'s [EventClass] = self.classes;
        let Some(ec) = classes.get(e.class as usize) else {
            return Err(unknown_id(None, sp.id, pos));
        };
        let cp: &'s ClassPlan = ec.plan();
        let mut sec_at = 0;
        match self.sec {
            Sec::None => {}
            Sec::Fast(f, _) => {
                sec_at = align_up(pos, f.align);
                pos = fixed_end(sec_at, f.bits, end, "stream event context")?;
            }
            Sec::Walk(scope) => {
                let k = ScopeKind::StreamEventContext as usize;
                let (b, m) = (plan.mark_base[k], plan.marks[k]);
                pos = self.walk_into(scope, b, m, data, end, pos, clock, "stream event context")?;
            }
        }
        if let Some(s) = &cp.context {
            let m = s.marks as usize;
            pos = self.walk_into(s, cp.ctx_base, m, data, end, pos, clock, "event context")?;
        }
        let mut pay_at = 0;
        if let Some(f) = cp.pay_fast {
            pay_at = align_up(pos, f.align);
            pos = fixed_end(pay_at, f.bits, end, "event payload")?;
        } else if let Some(s) = &cp.payload {
            let m = s.marks as usize;
            pos = self.walk_into(s, cp.pay_base, m, data, end, pos, clock, "event payload")?;
        }
        Ok((pos, sec_at, pay_at))
    }

    /// Locates the event whose fixed stream event context (if any) starts
    /// at or after `pos` and whose flat payload is `scope` (marks from
    /// `base`): returns where it ends and where the context starts. `None`
    /// on any problem, for `walk_event` to find and describe.
    #[inline(always)]
    fn walk_flat_payload(
        &mut self,
        scope: &Scope,
        base: u32,
        mut pos: u64,
        clock: u64,
    ) -> Option<(u64, u64)> {
        let end = self.content_end;
        let mut sec_at = 0;
        if let Sec::Fast(f, _) = self.sec {
            sec_at = align_up(pos, f.align);
            pos = sec_at + f.bits;
            if pos > end {
                return None;
            }
        }
        let base = base as usize;
        let mut w = Walker {
            data: self.pkt,
            end,
            regs: &mut self.regs,
            marks: self.marks.get_mut(base..base + scope.marks as usize)?,
            id: None,
            clock,
        };
        Some((w.walk_flat(scope, pos)?, sec_at))
    }

    /// Walks a generic event header: returns where it ends, the event id
    /// it holds and the clock it sets.
    fn walk_header(
        &mut self,
        sp: &StreamPlan,
        data: &[u8],
        end: u64,
        pos: u64,
        clock: u64,
    ) -> Result<(u64, Option<u64>, u64), DecodeError> {
        let Some(h) = sp.event_header else {
            return Ok((pos, None, clock));
        };
        let plan = self.plan;
        let scope = plan.scope(h);
        let k = ScopeKind::EventHeader as usize;
        let b = plan.mark_base[k];
        let mut w = Walker {
            data,
            end,
            regs: &mut self.regs,
            marks: self.marks.get_mut(b..b + plan.marks[k]).unwrap_or(&mut []),
            id: None,
            clock,
        };
        let p = w
            .walk(scope, scope.root, pos)
            .map_err(|e| in_scope(e, "event header"))?;
        Ok((p, w.id, w.clock))
    }

    /// Walks one scope; its marks start at `base`.
    #[allow(clippy::too_many_arguments)]
    fn walk_into(
        &mut self,
        scope: &Scope,
        base: usize,
        nmarks: usize,
        data: &[u8],
        end: u64,
        pos: u64,
        clock: u64,
        what: &str,
    ) -> Result<u64, DecodeError> {
        let mut w = Walker {
            data,
            end,
            regs: &mut self.regs,
            marks: self.marks.get_mut(base..base + nmarks).unwrap_or(&mut []),
            id: None,
            clock,
        };
        if scope.flat {
            if let Some(p) = w.walk_flat(scope, pos) {
                return Ok(p);
            }
        }
        w.walk(scope, scope.root, pos)
            .map_err(|e| in_scope(e, what))
    }

    /// Events discarded by the tracer just before the current event.
    #[inline]
    pub(crate) fn lost_before(&self) -> u64 {
        if self.lost_packet == self.packet_number && self.lost_start == self.cur.start {
            self.lost
        } else {
            0
        }
    }

    /// The raw clock value of the current event.
    #[inline]
    pub(crate) fn clock(&self) -> u64 {
        self.clock
    }

    /// The content end of the current packet, in bits.
    pub(crate) fn content_end(&self) -> u64 {
        self.content_end
    }
}

/// How far ahead of the event being decoded its stream's bytes are
/// prefetched: the streams are read in turns, so the hardware prefetcher
/// alone leaves the first load of each event waiting on memory.
const PREFETCH: usize = 256;

/// Asks the CPU to start loading the cache line at byte `at` of `d`
/// (nothing off x86-64).
#[inline(always)]
fn prefetch(d: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults, whatever the address
    // (past the end of `d`, it may load a line of no use, or nothing); the
    // address is computed with `wrapping_add`, which is defined for any
    // offset, and never dereferenced.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            d.as_ptr().wrapping_add(at) as *const i8,
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (d, at);
}

/// Little-endian integers at byte `at`, `None` past the end: one load each.
#[inline(always)]
fn le16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        d.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
#[inline(always)]
fn le32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        d.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
#[inline(always)]
fn le64(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        d.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The end of a fixed-size scope of `bits` bits at `start`, checked against
/// the end of the packet content.
#[inline(always)]
fn fixed_end(start: u64, bits: u64, end: u64, what: &str) -> Result<u64, DecodeError> {
    let e = start + bits;
    if e > end {
        return Err(overrun(start, bits, end, what));
    }
    Ok(e)
}

#[cold]
fn overrun(start: u64, bits: u64, end: u64, what: &str) -> DecodeError {
    DecodeError {
        bit: start,
        msg: format!(
            "{what} ({bits} bits at bit {start}) runs past the end of the packet content at bit {end}"
        ),
    }
}

/// Which part of a fixed-size event runs past the packet content.
#[cold]
fn past_content(sec: Sec<'_>, sec_at: u64, pay_at: u64, pay_bits: u32, end: u64) -> DecodeError {
    if let Sec::Fast(f, _) = sec {
        if sec_at + f.bits > end {
            return overrun(sec_at, f.bits, end, "stream event context");
        }
    }
    overrun(pay_at, pay_bits as u64, end, "event payload")
}

#[cold]
fn unknown_stream(at: u64) -> DecodeError {
    DecodeError {
        bit: at,
        msg: "the packet's stream class is unknown".into(),
    }
}

#[cold]
fn unknown_id(id: Option<u64>, stream: u64, start: u64) -> DecodeError {
    DecodeError {
        bit: start,
        msg: format!(
            "event id {} is not declared for stream class {stream} in the metadata",
            id.unwrap_or(0)
        ),
    }
}

#[cold]
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
