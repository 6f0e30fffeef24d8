//! The trace directory on disk: `metadata`, one stream file per CPU
//! (`channel0_<cpu>`, as LTTng names them), `index/channel0_<cpu>.idx`, and
//! the `statedump_0` stream when a state dump is written.
//!
//! Each CPU has one packet buffer; a packet is written with one `write` when
//! it is full, when losses are noted (so the loss falls between packets) and
//! at [`TraceWriter::finish`]. A failed write stops the writer: the stream
//! (and its index) is cut back to its last whole packet so the directory
//! stays a valid trace, and the error names the file and byte offset.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use strata_core::{ClockDesc, HostInfo};
use strata_ctf::index;
use strata_ctf::write::{
    metadata_text, ClockParams, EnvValue, HeaderKind, PacketBuilder, PacketConfig, PacketError,
    PacketStart, TraceDesc, TracerIdentity, Uuid, DEFAULT_CAPACITY,
};
use strata_ftrace::format::EventFormat;
use strata_ftrace::{Page, PageError};

use crate::convert::{ConvertOptions, Converter, Outcome};
use crate::statedump::{self, ThreadState};
use crate::stats::{LiveStats, TraceStats};

/// The name of the stream that holds the state dump.
pub const STATEDUMP_STREAM: &str = "statedump_0";
/// The most CPUs a trace may have (one open file pair and buffer each).
pub const MAX_CPUS: u32 = 4096;

/// How the trace names its tracer in `env`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TracerEnv {
    /// `tracer_name = "lttng-modules"`, version 2.13, with
    /// `strata_version` beside it. Trace Compass picks its kernel event
    /// layout from `tracer_name` (only `lttng-modules` 2.6+ gets the
    /// `syscall_entry_` names), and lttng-analyses subtracts 100 from
    /// priorities again when the tracer version is below 2.7.1, so this is
    /// what lets both read the trace as it is.
    #[default]
    LttngCompatible,
    /// `tracer_name = "strata"` with Strata's own version.
    Strata,
}

/// Choices for a new trace directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Packet capacity in bytes (default 256 KiB).
    pub packet_capacity: usize,
    /// How records are converted.
    pub convert: ConvertOptions,
    /// The tracer identity in `env`.
    pub tracer_env: TracerEnv,
    /// The trace UUID; a random one when `None`.
    pub trace_uuid: Option<Uuid>,
    /// When recording started, in the trace clock: the first packet of each
    /// stream begins no later than this.
    pub start_ts: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            packet_capacity: DEFAULT_CAPACITY,
            convert: ConvertOptions::default(),
            tracer_env: TracerEnv::default(),
            trace_uuid: None,
            start_ts: None,
        }
    }
}

/// Why the trace directory could not be written.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The output directory exists and holds files.
    #[error("output directory {0} is not empty; choose a new directory or empty this one")]
    NotEmpty(PathBuf),
    /// A file or directory could not be created.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing failed; the file was cut back to `kept` bytes.
    #[error("writing {what} to {path} at byte {offset} failed: {source}; the stream was cut back to its last whole packet ({kept} bytes), so the trace stays readable; free space or pick another disk and record again")]
    Write {
        /// What was being written (`packet 12`, `index entry`).
        what: String,
        /// The file.
        path: PathBuf,
        /// Where in the file.
        offset: u64,
        /// Bytes of the file kept.
        kept: u64,
        /// The cause.
        source: std::io::Error,
    },
    /// `fsync` failed.
    #[error("flushing {path} to disk failed: {source}")]
    Sync {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A record came for a CPU the trace has no stream for.
    #[error("record for CPU {cpu}, but the trace was created for {cpus} CPUs")]
    UnknownCpu {
        /// The CPU given.
        cpu: u32,
        /// The trace's CPU count.
        cpus: u32,
    },
    /// The host reports no CPUs, or more than [`MAX_CPUS`].
    #[error("host reports {0} CPUs; a trace needs 1 to {MAX_CPUS}")]
    BadCpuCount(u32),
    /// The packet options are unusable.
    #[error("bad packet options: {0}")]
    Packet(#[from] PacketError),
    /// An earlier error stopped the writer.
    #[error("the trace writer stopped after an earlier error: {0}")]
    Stopped(String),
}

/// One stream file with its index and packet buffer.
#[derive(Debug)]
struct Stream {
    path: PathBuf,
    file: File,
    index_path: PathBuf,
    index: File,
    builder: PacketBuilder,
    cpu: u32,
    instance_id: u64,
    seq: u64,
    /// Bytes of whole packets in the file.
    offset: u64,
    /// Bytes of the index file that hold whole entries.
    index_len: u64,
    discarded: u64,
    unknown_losses: u64,
    /// End time of the last packet written, for the next one's start.
    last_end: u64,
    packets: u64,
    /// `timestamp_begin` of the first packet written.
    first_begin: Option<u64>,
}

impl Stream {
    fn open(
        dir: &Path,
        name: &str,
        cpu: u32,
        instance_id: u64,
        cfg: PacketConfig,
    ) -> Result<Stream, StoreError> {
        let path = dir.join(name);
        let index_path = dir.join("index").join(format!("{name}.idx"));
        let create = |p: &Path| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
                .map_err(|source| StoreError::Create {
                    path: p.to_path_buf(),
                    source,
                })
        };
        let file = create(&path)?;
        let mut index = create(&index_path)?;
        let header = index::encode_header();
        let index_len = match index.write_all(&header) {
            Ok(()) => header.len() as u64,
            Err(source) => {
                let _ = index.set_len(0);
                return Err(StoreError::Write {
                    what: "index header".into(),
                    path: index_path,
                    offset: 0,
                    kept: 0,
                    source,
                });
            }
        };
        Ok(Stream {
            path,
            file,
            index_path,
            index,
            builder: PacketBuilder::new(cfg)?,
            cpu,
            instance_id,
            seq: 0,
            offset: 0,
            index_len,
            discarded: 0,
            unknown_losses: 0,
            last_end: 0,
            packets: 0,
            first_begin: None,
        })
    }

    fn begin(&mut self, ts: u64, trace_start: Option<u64>) {
        let mut begin = ts.max(self.last_end);
        if self.seq == 0 {
            if let Some(start) = trace_start {
                begin = begin.min(start);
            }
        }
        self.builder.begin(PacketStart {
            stream_instance_id: self.instance_id,
            cpu_id: self.cpu,
            seq: self.seq,
            ts_begin: begin,
        });
    }

    /// Writes the open packet and its index entry; on failure cuts both
    /// files back to their last whole packet. Returns the bytes written.
    fn flush(&mut self, ts_end: u64) -> Result<u64, StoreError> {
        let seq = self.seq;
        let offset = self.offset;
        let Some(done) = self.builder.finish(ts_end, self.discarded, offset) else {
            return Ok(0);
        };
        let len = done.bytes.len() as u64;
        let mut entry = Vec::with_capacity(index::ENTRY_LEN);
        done.index.encode(&mut entry);
        let end = done.index.timestamp_end;
        let done_begin = done.index.timestamp_begin;
        if let Err(source) = self.file.write_all(done.bytes) {
            cut(&mut self.file, offset);
            return Err(StoreError::Write {
                what: format!("packet {seq}"),
                path: self.path.clone(),
                offset,
                kept: offset,
                source,
            });
        }
        if let Err(source) = self.index.write_all(&entry) {
            // A packet without its index entry would make readers that trust
            // the index miss it: drop both.
            cut(&mut self.index, self.index_len);
            cut(&mut self.file, offset);
            return Err(StoreError::Write {
                what: format!("index entry of packet {seq}"),
                path: self.index_path.clone(),
                offset: self.index_len,
                kept: self.index_len,
                source,
            });
        }
        self.offset += len;
        self.index_len += entry.len() as u64;
        self.seq += 1;
        self.packets += 1;
        self.last_end = end;
        self.first_begin.get_or_insert(done_begin);
        Ok(len + entry.len() as u64)
    }

    /// Moves the first packet's `timestamp_begin` back to `start` in the
    /// stream and its index, so every stream spans the whole trace: tools
    /// that intersect stream ranges (lttng-analyses) would otherwise cut
    /// the trace at the CPU whose first event came last. Best effort: the
    /// trace is valid either way.
    fn stretch_start(&mut self, start: u64) {
        use std::os::unix::fs::FileExt;
        if self.first_begin.is_some_and(|b| b > start) {
            let _ = self.file.write_at(&start.to_le_bytes(), 32);
            let at = (index::HEADER_LEN + 3 * 8) as u64;
            let _ = self.index.write_at(&start.to_be_bytes(), at);
            self.first_begin = Some(start);
        }
    }

    fn sync(&self) -> Result<(), StoreError> {
        for (f, p) in [(&self.file, &self.path), (&self.index, &self.index_path)] {
            f.sync_all().map_err(|source| StoreError::Sync {
                path: p.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// What a batch of appends did, added to the writer's counters once.
#[derive(Debug)]
struct Tally {
    written: u64,
    unknown_type: u64,
    truncated: u64,
    bytes: u64,
    min_ts: u64,
    max_ts: u64,
}

impl Tally {
    /// One event of `class` at `ts` was written.
    #[inline(always)]
    fn count(&mut self, class_counts: &mut [u64], class: u32, ts: u64) {
        if let Some(c) = class_counts.get_mut(class as usize) {
            *c += 1;
        }
        self.written += 1;
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            written: 0,
            unknown_type: 0,
            truncated: 0,
            bytes: 0,
            min_ts: u64::MAX,
            max_ts: 0,
        }
    }
}

/// Converts one record into stream `s`. The common case, an event written
/// into the open packet, stays here; opening a packet, flushing a full one
/// and dropped records take [`append_slow`].
#[inline(always)]
fn append(
    s: &mut Stream,
    conv: &Converter,
    trace_start: Option<u64>,
    ts: u64,
    data: &[u8],
    class_counts: &mut [u64],
    tally: &mut Tally,
) -> Result<(), StoreError> {
    match conv.write(&mut s.builder, ts, data) {
        Ok(Outcome::Written(class)) => {
            tally.count(class_counts, class, ts);
            Ok(())
        }
        first => append_slow(s, conv, trace_start, ts, data, class_counts, tally, first),
    }
}

/// The rest of [`append`], given what the first attempt returned.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn append_slow(
    s: &mut Stream,
    conv: &Converter,
    trace_start: Option<u64>,
    ts: u64,
    data: &[u8],
    class_counts: &mut [u64],
    tally: &mut Tally,
    first: Result<Outcome, PacketError>,
) -> Result<(), StoreError> {
    let mut outcome = first;
    if outcome == Err(PacketError::NotOpen) {
        s.begin(ts, trace_start);
        outcome = conv.write(&mut s.builder, ts, data);
    }
    if outcome == Err(PacketError::Full) {
        let end = s.builder.last_timestamp();
        tally.bytes += s.flush(end)?;
        s.begin(ts, trace_start);
        outcome = conv.write(&mut s.builder, ts, data);
    }
    match outcome {
        Ok(Outcome::Written(class)) => tally.count(class_counts, class, ts),
        Ok(Outcome::UnknownType(_)) => tally.unknown_type += 1,
        // A record larger than a whole packet cannot be stored; it is
        // counted as truncated rather than stopping the recording.
        Ok(Outcome::Truncated(_)) | Err(_) => tally.truncated += 1,
    }
    Ok(())
}

/// Truncates `f` to `len` bytes and moves its cursor there; errors are
/// ignored because this already runs on a failure path.
fn cut(f: &mut File, len: u64) {
    let _ = f.set_len(len);
    let _ = f.seek(SeekFrom::Start(len));
}

/// Writes one host's trace directory; see the module docs.
#[derive(Debug)]
pub struct TraceWriter {
    dir: PathBuf,
    conv: Converter,
    cfg: PacketConfig,
    streams: Vec<Stream>,
    statedump: Option<Stream>,
    live: Arc<LiveStats>,
    class_counts: Vec<u64>,
    unknown_type: u64,
    truncated: u64,
    metadata_bytes: u64,
    trace_start: Option<u64>,
    min_ts: Option<u64>,
    max_ts: Option<u64>,
    failed: Option<String>,
    finished: bool,
}

impl TraceWriter {
    /// Creates `dir` (refusing a non-empty one) with its `metadata`, one
    /// empty stream and index per CPU of `host`.
    ///
    /// `formats` are the tracefs formats of the events being recorded,
    /// `syscall_formats` the `syscalls:sys_enter_*` ones that name syscall
    /// arguments (may be empty).
    pub fn create(
        dir: &Path,
        host: &HostInfo,
        clock: &ClockDesc,
        formats: &[EventFormat],
        syscall_formats: &[EventFormat],
        opts: StoreOptions,
    ) -> Result<TraceWriter, StoreError> {
        if host.cpu_count == 0 || host.cpu_count > MAX_CPUS {
            return Err(StoreError::BadCpuCount(host.cpu_count));
        }
        prepare_dir(dir)?;
        let conv = Converter::new(formats, syscall_formats, opts.convert);
        let uuid = opts.trace_uuid.unwrap_or_else(random_uuid);
        let desc = trace_desc(host, clock, &conv, uuid, opts.tracer_env);
        let cfg = PacketConfig {
            trace_uuid: uuid,
            header: desc.header,
            capacity: opts.packet_capacity,
        };
        // Check the capacity before creating any file.
        PacketBuilder::new(cfg)?;
        let text = metadata_text(&desc);
        let meta_path = dir.join("metadata");
        let mut meta = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&meta_path)
            .map_err(|source| StoreError::Create {
                path: meta_path.clone(),
                source,
            })?;
        if let Err(source) = meta
            .write_all(text.as_bytes())
            .and_then(|()| meta.sync_all())
        {
            let _ = meta.set_len(0);
            return Err(StoreError::Write {
                what: "metadata".into(),
                path: meta_path,
                offset: 0,
                kept: 0,
                source,
            });
        }
        let mut streams = Vec::with_capacity(host.cpu_count as usize);
        for cpu in 0..host.cpu_count {
            streams.push(Stream::open(
                dir,
                &format!("channel0_{cpu}"),
                cpu,
                cpu as u64,
                cfg,
            )?);
        }
        let live = Arc::new(LiveStats::default());
        let bytes = text.len() as u64 + streams.iter().map(|s| s.index_len).sum::<u64>();
        live.add_bytes(bytes);
        Ok(TraceWriter {
            dir: dir.to_path_buf(),
            class_counts: vec![0; conv.classes().len()],
            conv,
            cfg,
            streams,
            statedump: None,
            live,
            unknown_type: 0,
            truncated: 0,
            metadata_bytes: text.len() as u64,
            trace_start: opts.start_ts,
            min_ts: None,
            max_ts: None,
            failed: None,
            finished: false,
        })
    }

    /// The trace directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The converter, with the event classes the metadata declares.
    pub fn converter(&self) -> &Converter {
        &self.conv
    }

    /// Counters readable from any thread while recording.
    pub fn live_stats(&self) -> Arc<LiveStats> {
        Arc::clone(&self.live)
    }

    fn check_usable(&self) -> Result<(), StoreError> {
        if let Some(e) = &self.failed {
            return Err(StoreError::Stopped(e.clone()));
        }
        if self.finished {
            return Err(StoreError::Stopped("the trace was already finished".into()));
        }
        Ok(())
    }

    fn fail(&mut self, e: StoreError) -> StoreError {
        if self.failed.is_none() {
            self.failed = Some(e.to_string());
        }
        e
    }

    /// Converts one ftrace record of `cpu` at time `ts` and appends it.
    pub fn push_record(&mut self, cpu: u32, ts: u64, data: &[u8]) -> Result<(), StoreError> {
        self.check_usable()?;
        let cpus = self.streams.len() as u32;
        let Some(s) = self.streams.get_mut(cpu as usize) else {
            return Err(StoreError::UnknownCpu { cpu, cpus });
        };
        let mut tally = Tally::default();
        let res = append(
            s,
            &self.conv,
            self.trace_start,
            ts,
            data,
            &mut self.class_counts,
            &mut tally,
        );
        self.settle(tally);
        res.map_err(|e| self.fail(e))
    }

    /// Converts and appends every record of one ring-buffer page of `cpu`:
    /// what [`TraceWriter::push_record`] does for each, with the checks and
    /// counters paid once per page. When the page does not decode to its
    /// end, the records before the fault are kept and the decode error is
    /// returned, for the caller to count a corrupt page.
    pub fn push_page(
        &mut self,
        cpu: u32,
        page: &Page<'_>,
    ) -> Result<Option<PageError>, StoreError> {
        self.check_usable()?;
        let cpus = self.streams.len() as u32;
        let Some(s) = self.streams.get_mut(cpu as usize) else {
            return Err(StoreError::UnknownCpu { cpu, cpus });
        };
        let mut tally = Tally::default();
        let mut fault = None;
        let mut res = Ok(());
        for record in page.records() {
            match record {
                Ok(r) => {
                    res = append(
                        s,
                        &self.conv,
                        self.trace_start,
                        r.ts,
                        r.data,
                        &mut self.class_counts,
                        &mut tally,
                    );
                    if res.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    fault = Some(e);
                    break;
                }
            }
        }
        self.settle(tally);
        res.map_err(|e| self.fail(e))?;
        Ok(fault)
    }

    /// Adds what a batch of appends counted to the writer's counters.
    fn settle(&mut self, t: Tally) {
        if t.written > 0 {
            self.live.add_events(t.written);
            self.min_ts = Some(self.min_ts.map_or(t.min_ts, |m| m.min(t.min_ts)));
            self.max_ts = Some(self.max_ts.map_or(t.max_ts, |m| m.max(t.max_ts)));
        }
        self.unknown_type += t.unknown_type;
        self.truncated += t.truncated;
        if t.unknown_type + t.truncated > 0 {
            self.live.add_dropped(t.unknown_type + t.truncated);
        }
        if t.bytes > 0 {
            self.live.add_bytes(t.bytes);
        }
    }

    /// Adds `n` lost events to `cpu`'s running `events_discarded`. The open
    /// packet is written first, so readers place the loss between it and
    /// the packet of the records that follow, which is where the kernel
    /// lost them.
    pub fn note_lost(&mut self, cpu: u32, n: u64) -> Result<(), StoreError> {
        self.check_usable()?;
        let cpus = self.streams.len() as u32;
        let Some(s) = self.streams.get_mut(cpu as usize) else {
            return Err(StoreError::UnknownCpu { cpu, cpus });
        };
        if s.builder.is_open() && !s.builder.is_empty() {
            let end = s.builder.last_timestamp();
            match s.flush(end) {
                Ok(b) => self.live.add_bytes(b),
                Err(e) => return Err(self.fail(e)),
            }
        }
        s.discarded = s.discarded.saturating_add(n);
        self.live.add_lost(n);
        Ok(())
    }

    /// Notes that `cpu` lost events without the kernel saying how many
    /// (the page's missed-events flag without a count). Counted as one lost
    /// event, the least it can be, so readers still report a loss there;
    /// [`TraceStats::unknown_losses_per_cpu`] says how often this happened.
    pub fn note_lost_unknown(&mut self, cpu: u32) -> Result<(), StoreError> {
        self.note_lost(cpu, 1)?;
        if let Some(s) = self.streams.get_mut(cpu as usize) {
            s.unknown_losses += 1;
        }
        Ok(())
    }

    /// Reads `/proc` and writes the state dump at time `ts` (see
    /// [`crate::statedump`]). Call it just before tracing starts, with `ts`
    /// read from the trace clock.
    pub fn statedump_from_proc(&mut self, ts: u64) -> Result<usize, StoreError> {
        let threads = statedump::collect(Path::new("/proc"));
        self.write_statedump(ts, &threads)?;
        Ok(threads.len())
    }

    /// Writes a state dump of `threads` at time `ts` into its own stream.
    pub fn write_statedump(&mut self, ts: u64, threads: &[ThreadState]) -> Result<(), StoreError> {
        self.check_usable()?;
        if self.statedump.is_none() {
            let cpu = current_cpu();
            let instance = self.streams.len() as u64;
            let s = Stream::open(&self.dir, STATEDUMP_STREAM, cpu, instance, self.cfg)
                .map_err(|e| self.fail(e))?;
            self.statedump = Some(s);
        }
        self.trace_start = Some(self.trace_start.map_or(ts, |t| t.min(ts)));
        let ids = self.conv.statedump_ids();
        let mut written = [0u64; 4];
        let trace_start = self.trace_start;
        let conv = &self.conv;
        let live = &self.live;
        let Some(s) = self.statedump.as_mut() else {
            return Ok(());
        };
        // Each step writes one event; a full packet is flushed and the step
        // retried once.
        let step = |s: &mut Stream,
                    f: &dyn Fn(&mut PacketBuilder) -> Result<(), PacketError>|
         -> Result<bool, StoreError> {
            if !s.builder.is_open() {
                s.begin(ts, trace_start);
            }
            let mut r = f(&mut s.builder);
            if r == Err(PacketError::Full) {
                let end = s.builder.last_timestamp();
                live.add_bytes(s.flush(end)?);
                s.begin(ts, trace_start);
                r = f(&mut s.builder);
            }
            Ok(r.is_ok())
        };
        let res = (|| -> Result<(), StoreError> {
            if step(s, &|b| statedump::write_start(conv, b, ts))? {
                written[0] += 1;
            }
            for t in threads {
                if step(s, &|b| statedump::write_thread(conv, b, ts, t))? {
                    written[1] += 1;
                }
                if step(s, &|b| statedump::write_pid_ns(conv, b, ts, t))? {
                    written[2] += 1;
                }
            }
            if step(s, &|b| statedump::write_end(conv, b, ts))? {
                written[3] += 1;
            }
            Ok(())
        })();
        for (id, n) in [ids.start, ids.process_state, ids.pid_ns, ids.end]
            .into_iter()
            .zip(written)
        {
            if let Some(c) = self.class_counts.get_mut(id as usize) {
                *c += n;
            }
            self.live.add_events(n);
        }
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
        res.map_err(|e| self.fail(e))
    }

    /// The statistics so far.
    pub fn stats(&self) -> TraceStats {
        let mut events_by_name: Vec<(String, u64)> = self
            .class_counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .filter_map(|(id, &n)| Some((self.conv.class_name(id as u32)?.to_string(), n)))
            .collect();
        events_by_name.sort();
        let all = self.streams.iter().chain(self.statedump.iter());
        TraceStats {
            events_by_name,
            lost_per_cpu: self.streams.iter().map(|s| s.discarded).collect(),
            unknown_losses_per_cpu: self.streams.iter().map(|s| s.unknown_losses).collect(),
            unknown_type: self.unknown_type,
            truncated: self.truncated,
            clamped: self
                .streams
                .iter()
                .chain(self.statedump.iter())
                .map(|s| s.builder.clamped_events())
                .sum(),
            packets: all.clone().map(|s| s.packets).sum(),
            bytes: self.metadata_bytes + all.map(|s| s.offset + s.index_len).sum::<u64>(),
        }
    }

    /// Writes every open packet (each stream's last packet ends at the
    /// latest timestamp of the trace; a CPU with no event gets one empty
    /// packet so every stream spans the trace), syncs every file and the
    /// directory, and returns the statistics. After an earlier write error
    /// it still writes what it can, then returns that error.
    pub fn finish(&mut self) -> Result<TraceStats, StoreError> {
        if self.finished {
            return Err(StoreError::Stopped("the trace was already finished".into()));
        }
        self.finished = true;
        let end = self.max_ts.or(self.trace_start).unwrap_or(0);
        let start = match (self.trace_start, self.min_ts) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(end),
        };
        let mut first_err: Option<StoreError> = None;
        for s in self.streams.iter_mut().chain(self.statedump.iter_mut()) {
            if !s.builder.is_open() && s.packets == 0 {
                s.begin(start, Some(start));
            }
            if s.builder.is_open() {
                match s.flush(end) {
                    Ok(n) => self.live.add_bytes(n),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        for s in self.streams.iter_mut().chain(self.statedump.iter_mut()) {
            if self.failed.is_none() {
                s.stretch_start(start);
            }
            if let Err(e) = s.sync() {
                first_err.get_or_insert(e);
            }
        }
        for p in [self.dir.join("index"), self.dir.clone()] {
            if let Err(source) = File::open(&p).and_then(|d| d.sync_all()) {
                first_err.get_or_insert(StoreError::Sync { path: p, source });
            }
        }
        if let Some(e) = &self.failed {
            return Err(StoreError::Stopped(e.clone()));
        }
        match first_err {
            Some(e) => Err(self.fail(e)),
            None => Ok(self.stats()),
        }
    }
}

/// Makes sure `dir` exists and is empty, with an `index` folder.
fn prepare_dir(dir: &Path) -> Result<(), StoreError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(StoreError::NotEmpty(dir.to_path_buf()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Create {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        Err(source) => {
            return Err(StoreError::Create {
                path: dir.to_path_buf(),
                source,
            })
        }
    }
    let index = dir.join("index");
    std::fs::create_dir(&index).map_err(|source| StoreError::Create {
        path: index,
        source,
    })
}

/// The metadata model of a trace.
fn trace_desc(
    host: &HostInfo,
    clock: &ClockDesc,
    conv: &Converter,
    uuid: Uuid,
    env: TracerEnv,
) -> TraceDesc {
    let version = env!("CARGO_PKG_VERSION");
    let tracer = match env {
        TracerEnv::LttngCompatible => TracerIdentity {
            name: "lttng-modules".into(),
            major: 2,
            minor: 13,
            patchlevel: 0,
        },
        TracerEnv::Strata => {
            let mut parts = version.split('.').map(|p| p.parse().unwrap_or(0));
            TracerIdentity {
                name: "strata".into(),
                major: parts.next().unwrap_or(0),
                minor: parts.next().unwrap_or(0),
                patchlevel: parts.next().unwrap_or(0),
            }
        }
    };
    let max_id = conv.classes().len().saturating_sub(1) as u32;
    TraceDesc {
        uuid,
        clock: ClockParams::for_host(clock, host),
        host: host.clone(),
        tracer,
        extra_env: vec![
            ("strata_version".into(), EnvValue::Str(version.into())),
            ("tracer_buffering_id".into(), EnvValue::Int(0)),
            ("architecture_bit_width".into(), EnvValue::Int(64)),
        ],
        header: HeaderKind::for_max_id(max_id),
        event_context: conv.event_context(),
        events: conv.classes().to_vec(),
    }
}

/// A random UUID from the kernel, or one derived from time and pid.
fn random_uuid() -> Uuid {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .ok()
        .and_then(|s| Uuid::parse(&s))
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            Uuid::derive(format!("{now}/{}", std::process::id()).as_bytes())
        })
}

/// The CPU this thread runs on, 0 when unknown.
fn current_cpu() -> u32 {
    // SAFETY: sched_getcpu takes no arguments and only returns a number.
    let cpu = unsafe { libc::sched_getcpu() };
    u32::try_from(cpu).unwrap_or(0)
}
