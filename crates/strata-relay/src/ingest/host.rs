//! What one connection does with its frames, synchronously: gathers the
//! metadata, opens the host's trace, stores each data frame and feeds its
//! events to the live analyses, and commits checkpoints that become acks.
//! No network I/O here: the connection task calls it with decoded messages.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use strata_core::{ClockDesc, HostInfo};
use strata_ctf::index::IndexEntry;
use strata_ftrace::format::EventFormat;
use strata_ftrace::{parse_header_page, Missed, Page, PageLayout};
use strata_store::ThreadState;
use strata_wire::{FormatPurpose, Hello, LossCause, Message, MetadataDone, Source};

use crate::analysis::ctf_bind::CtfDecoder;
use crate::analysis::event::{LiveEvent, LiveKind};
use crate::analysis::ftrace_bind::{syscall_names, FtraceBinder};
use crate::analysis::{unix_now_ns, LiveConfig, LiveHost};
use crate::live::progress::{self, Progress};
use crate::registry::{lock, HostEntry, Registry};
use crate::store::ftrace_trace::FtraceSetup;
use crate::store::host_trace::Writer;
use crate::store::{HostTrace, StoreError, TraceSource};

/// How far behind the newest event a quiet stream's watermark is put: the
/// agent flushes every CPU at least every 100 ms, so no event older than
/// this is expected to arrive after a newer one of another CPU.
pub const WATERMARK_MARGIN_NS: u64 = 300_000_000;

/// The most formats one agent may send (tracefs has a few thousand events).
const MAX_FORMATS: usize = 8192;

/// Why a connection must end.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The agent broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The relay could not store the data.
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
}

/// What the connection should send after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Nothing now.
    None,
    /// The agent said goodbye: ack everything and close.
    Goodbye,
}

/// Fixed choices of the ingest side.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The data directory.
    pub data: PathBuf,
    /// fsync data and checkpoints before acking.
    pub sync: bool,
    /// The live analyses.
    pub live: LiveConfig,
    /// The live timer published to LTTng-live viewers, µs.
    pub live_timer_us: u32,
}

enum Decode {
    Ftrace {
        layout: PageLayout,
        binder: FtraceBinder,
        clock: ClockDesc,
        /// Unix ns = raw + offset, when the clock counts nanoseconds.
        offset_ns: Option<i64>,
        /// The newest record time seen, raw.
        newest: u64,
        ncpus: u32,
    },
    Ctf {
        decoder: Box<CtfDecoder>,
        /// Per stream, the last packet's `timestamp_end`.
        ends: BTreeMap<String, u64>,
        /// The latest `timestamp_begin` seen.
        latest_begin: u64,
        /// [`WATERMARK_MARGIN_NS`] in clock cycles.
        margin: u64,
    },
}

/// One connection's host; see the module docs.
pub struct HostIngest {
    cfg: Arc<StoreConfig>,
    registry: Arc<Registry>,
    entry: Arc<HostEntry>,
    hello: Hello,
    // Metadata as it arrives.
    layout_text: Option<String>,
    clock: Option<ClockDesc>,
    formats: BTreeMap<(String, String), String>,
    arg_formats: BTreeMap<(String, String), String>,
    tsdl: Option<String>,
    // Once MetadataDone came.
    source: Option<TraceSource>,
    trace: Option<HostTrace>,
    decode: Option<Decode>,
    /// Last sequence number whose frame is in the files.
    stored: u64,
    /// Last sequence number committed (acknowledged).
    committed: u64,
    /// Events and bytes since the last commit.
    pending_events: u64,
    pending_bytes: u64,
    dirty: bool,
    /// Commits so far, to prune the live window now and then.
    commits: u64,
    /// Pages or packets that could not be decoded.
    pub corrupt: u64,
    /// The agent's latest VM hints, for a live view created after them.
    vm_hints: Option<Vec<strata_analysis::vm::VmHint>>,
}

impl HostIngest {
    /// A host whose agent said `hello`; `resume_after` is what the relay
    /// answered in Welcome.
    pub fn new(
        cfg: Arc<StoreConfig>,
        registry: Arc<Registry>,
        entry: Arc<HostEntry>,
        hello: Hello,
        resume_after: u64,
    ) -> HostIngest {
        HostIngest {
            cfg,
            registry,
            entry,
            hello,
            layout_text: None,
            clock: None,
            formats: BTreeMap::new(),
            arg_formats: BTreeMap::new(),
            tsdl: None,
            source: None,
            trace: None,
            decode: None,
            stored: resume_after,
            committed: resume_after,
            pending_events: 0,
            pending_bytes: 0,
            dirty: false,
            commits: 0,
            corrupt: 0,
            vm_hints: None,
        }
    }

    /// The last sequence number committed.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Events waiting in the host's reorder buffer.
    pub fn waiting(&self) -> usize {
        lock(&self.entry.live).as_ref().map_or(0, |l| l.waiting())
    }

    /// Bytes stored since the last commit.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    /// Handles one message with sequence number `seq` (0 for unsequenced).
    pub fn handle(&mut self, seq: u64, msg: &Message<'_>) -> Result<Reply, IngestError> {
        match msg {
            Message::PageLayout(l) => self.layout_text = Some(l.header_page.clone()),
            Message::Clock(c) => self.clock = Some(c.desc.clone()),
            Message::Formats(f) => {
                let map = match f.purpose {
                    FormatPurpose::Recorded => &mut self.formats,
                    FormatPurpose::ArgumentNames => &mut self.arg_formats,
                };
                for t in &f.formats {
                    if map.len() >= MAX_FORMATS {
                        return Err(IngestError::Protocol(format!(
                            "more than {MAX_FORMATS} event formats"
                        )));
                    }
                    map.insert((t.system.clone(), t.name.clone()), t.text.clone());
                }
            }
            Message::CtfMetadata(m) => self.tsdl = Some(m.tsdl.clone()),
            Message::MetadataDone(d) => self.metadata_done(d)?,
            Message::VmHints(h) => {
                let hints = crate::analysis::vm_live::hints_from_wire(h);
                if let Some(l) = lock(&self.entry.live).as_mut() {
                    l.set_vm_hints(hints.clone());
                }
                self.vm_hints = Some(hints);
            }
            Message::Pages(_) | Message::Packets(_) | Message::Lost(_) | Message::Statedump(_) => {
                if self.trace.is_none() {
                    return Err(IngestError::Protocol(format!(
                        "{} frame {seq} before MetadataDone",
                        msg.name()
                    )));
                }
                // Frames at or below the last stored one were stored
                // before: an agent resending too much is harmless.
                if seq <= self.stored {
                    return Ok(Reply::None);
                }
                self.data(msg)?;
                self.stored = seq;
                self.dirty = true;
                self.registry.totals.frames.fetch_add(1, Ordering::Relaxed);
            }
            Message::Goodbye(_) => return Ok(Reply::Goodbye),
            Message::Heartbeat(_) | Message::ControlResult(_) | Message::Unknown { .. } => {}
            Message::Hello(_)
            | Message::Welcome(_)
            | Message::Refused(_)
            | Message::Ack(_)
            | Message::Control(_) => {
                return Err(IngestError::Protocol(format!(
                    "unexpected {} from an agent after the handshake",
                    msg.name()
                )))
            }
        }
        Ok(Reply::None)
    }

    fn parse_formats(
        map: &BTreeMap<(String, String), String>,
    ) -> Result<Vec<EventFormat>, IngestError> {
        map.iter()
            .map(|((system, name), text)| {
                strata_ftrace::format::parse(system, text).map_err(|e| {
                    IngestError::Protocol(format!("the format of {system}:{name} is invalid: {e}"))
                })
            })
            .collect()
    }

    fn metadata_done(&mut self, d: &MetadataDone) -> Result<(), IngestError> {
        let (source, decode, names) = match self.hello.source {
            Source::Live => {
                let text = self.layout_text.as_deref().ok_or_else(|| {
                    IngestError::Protocol("MetadataDone without PageLayout".into())
                })?;
                let layout = parse_header_page(text)
                    .map_err(|e| IngestError::Protocol(format!("bad header_page: {e}")))?;
                let clock = self
                    .clock
                    .clone()
                    .ok_or_else(|| IngestError::Protocol("MetadataDone without Clock".into()))?;
                let formats = Self::parse_formats(&self.formats)?;
                let arg_formats = Self::parse_formats(&self.arg_formats)?;
                let binder = FtraceBinder::new(&formats);
                let host: HostInfo = self.hello.host.clone();
                let ncpus = host.cpu_count;
                if let Some(c) = d.cpus.iter().find(|&&c| c >= ncpus) {
                    return Err(IngestError::Protocol(format!(
                        "CPU {c} streams, but the host declares {ncpus} CPUs"
                    )));
                }
                let offset_ns = (clock.freq == 1_000_000_000).then(|| clock.to_unix_ns(0));
                (
                    TraceSource::Ftrace(Box::new(FtraceSetup {
                        host,
                        clock: clock.clone(),
                        formats,
                        syscall_formats: arg_formats,
                    })),
                    Decode::Ftrace {
                        layout,
                        binder,
                        clock,
                        offset_ns,
                        newest: 0,
                        ncpus,
                    },
                    syscall_names(),
                )
            }
            Source::Replay => {
                let tsdl = self.tsdl.as_deref().ok_or_else(|| {
                    IngestError::Protocol("MetadataDone without CtfMetadata".into())
                })?;
                let decoder = CtfDecoder::new(tsdl.as_bytes(), &self.hello.host_id)
                    .map_err(|e| IngestError::Protocol(format!("bad CTF metadata: {e}")))?;
                let freq = decoder.clock_freq().unwrap_or(1_000_000_000);
                let margin = (WATERMARK_MARGIN_NS as u128 * freq as u128 / 1_000_000_000) as u64;
                let names = decoder.syscall_names();
                (
                    TraceSource::Ctf {
                        metadata: with_signature(tsdl),
                    },
                    Decode::Ctf {
                        decoder: Box::new(decoder),
                        ends: BTreeMap::new(),
                        latest_begin: 0,
                        margin,
                    },
                    names,
                )
            }
        };
        if self.trace.is_some() && same_source(self.source.as_ref(), &source) {
            return Ok(());
        }
        // New metadata (the event set changed): the old trace is complete.
        if self.trace.is_some() {
            self.commit()?;
            self.publish(true);
        }
        let (trace, stored) = HostTrace::open(
            &self.cfg.data,
            &self.hello.session,
            &self.hello.host_id,
            &source,
            self.cfg.sync,
            self.hello.instance,
        )?;
        if self.trace.is_none() {
            let base = self
                .formats
                .keys()
                .map(|(s, n)| format!("{s}:{n}"))
                .collect();
            self.registry
                .control_state
                .set_base(&self.hello.session, &self.hello.host_id, base);
            self.registry
                .control()
                .push_needs_later(&self.hello.session, &self.hello.host_id);
            // The checkpoint is the truth: a Welcome answered from an older
            // state is corrected here (the agent's extra frames are then
            // dropped as duplicates).
            self.stored = stored;
            self.committed = stored;
        }
        {
            let mut st = lock(&self.entry.status);
            st.trace_dir = trace.trace_dir().display().to_string();
            // Events of this trace stored before (by an earlier connection
            // or before a relay restart) count too.
            st.events = trace.checkpoint().events;
            st.cpus = self.hello.host.cpu_count;
            st.last_seq = self.committed;
        }
        {
            let mut live = lock(&self.entry.live);
            match live.as_mut() {
                Some(l) => l.set_syscall_names(names),
                None => *live = Some(LiveHost::new(self.cfg.live, names)),
            }
            if let (Some(l), Some(h)) = (live.as_mut(), self.vm_hints.clone()) {
                l.set_vm_hints(h);
            }
            // A snapshot is history: its guest events must not reach the
            // live view of the guest's VM, nor its clock sync.
            let snapshot = self.is_snapshot();
            let guest = self.hello.host.vm_uuid.as_deref().filter(|_| !snapshot);
            if let (Some(l), Some(uuid)) = (live.as_mut(), guest) {
                // The same guest's feed is kept across reconnections, so
                // its host's pairing stays.
                let uuid = uuid.to_ascii_lowercase();
                let mut feeds = lock(&self.registry.guest_feeds);
                let feed = match feeds.get(&uuid) {
                    Some(f) if f.label == self.hello.host_id => Arc::clone(f),
                    _ => {
                        let f = Arc::new(crate::analysis::vm_live::GuestFeed::new(
                            &self.hello.host_id,
                        ));
                        feeds.insert(uuid, Arc::clone(&f));
                        f
                    }
                };
                l.set_guest_feed(feed);
            }
        }
        self.trace = Some(trace);
        self.decode = Some(decode);
        self.source = Some(source);
        self.publish(false);
        Ok(())
    }

    /// Whether this connection carries a snapshot the relay asked for.
    fn is_snapshot(&self) -> bool {
        self.registry.control_state.is_snapshot(&self.hello.session)
    }

    fn data(&mut self, msg: &Message<'_>) -> Result<(), IngestError> {
        let (Some(trace), Some(decode)) = (self.trace.as_mut(), self.decode.as_mut()) else {
            return Err(IngestError::Protocol("data before metadata".into()));
        };
        let now = unix_now_ns();
        let latency = &self.registry.latency;
        let mut live_guard = lock(&self.entry.live);
        let Some(live) = live_guard.as_mut() else {
            return Err(IngestError::Protocol("data before metadata".into()));
        };
        let mut events = 0u64;
        let mut bytes = 0u64;
        let dir = trace.trace_dir().to_path_buf();
        match (msg, trace.writer()?, decode) {
            (
                Message::Pages(p),
                Writer::Ftrace(t),
                Decode::Ftrace {
                    layout,
                    binder,
                    clock,
                    offset_ns,
                    newest,
                    ncpus,
                },
            ) => {
                let cpu = p.cpu;
                if cpu >= *ncpus {
                    return Err(IngestError::Protocol(format!(
                        "pages for CPU {cpu}, but the host declares {ncpus} CPUs"
                    )));
                }
                for page in p.pages.iter() {
                    let Ok(page) = Page::parse(layout, page) else {
                        self.corrupt += 1;
                        continue;
                    };
                    // The Lost frames carry the counts; the page flag only
                    // says where the loss falls.
                    if page.missed() != Missed::None {
                        bytes += t.note_lost(cpu, 0)?;
                    }
                    for r in page.records() {
                        let Ok(r) = r else {
                            self.corrupt += 1;
                            break;
                        };
                        let (w, stored) = t.push_record(cpu, r.ts, r.data)?;
                        bytes += w;
                        events += stored as u64;
                        *newest = (*newest).max(r.ts);
                        let (tid, kind) = binder.decode(r.data);
                        let kind =
                            kind.sync_marker_in_ns(offset_ns.is_none(), |c| clock.to_unix_ns(c));
                        let ts = match offset_ns {
                            Some(o) => (r.ts as i64).saturating_add(*o),
                            None => clock.to_unix_ns(r.ts),
                        };
                        live.push_bounded(
                            LiveEvent {
                                ts,
                                arrived: now,
                                cpu,
                                tid,
                                kind,
                            },
                            latency,
                        );
                    }
                }
            }
            (
                Message::Packets(p),
                Writer::Ctf(t),
                Decode::Ctf {
                    decoder,
                    ends,
                    latest_begin,
                    ..
                },
            ) => {
                for (info, packet) in p.packets.iter() {
                    let entry = IndexEntry {
                        offset: 0,
                        packet_size: info.packet_size_bits,
                        content_size: info.content_size_bits,
                        timestamp_begin: info.ts_begin,
                        timestamp_end: info.ts_end,
                        events_discarded: info.events_discarded,
                        stream_id: info.stream_class,
                        stream_instance_id: info.stream_instance,
                        packet_seq_num: info.packet_seq,
                    };
                    let lost = t.push_packet(p.stream, packet, &entry)?;
                    bytes += packet.len() as u64;
                    events += info.events as u64;
                    let cpu = if info.cpu == u32::MAX {
                        info.stream_instance.min(u32::MAX as u64) as u32
                    } else {
                        info.cpu
                    };
                    if lost > 0 {
                        live.note_lost(cpu, lost);
                    }
                    ends.insert(p.stream.to_string(), info.ts_end);
                    *latest_begin = (*latest_begin).max(info.ts_begin);
                    if decoder
                        .packet(packet, now, |ev| live.push_bounded(ev, latency))
                        .is_err()
                    {
                        self.corrupt += 1;
                    }
                }
            }
            (Message::Lost(l), w, _) => {
                if let Writer::Ftrace(t) = w {
                    // A CPU the trace has no stream for cannot hold a loss.
                    if l.cause != LossCause::CorruptPage && l.cpu < self.hello.host.cpu_count {
                        bytes += t.note_lost(l.cpu, l.events)?;
                    }
                }
                live.note_lost(l.cpu, l.events);
            }
            (Message::Statedump(s), w, d) => {
                let rows: Vec<ThreadState> = s
                    .threads
                    .iter()
                    .map(|r| ThreadState {
                        tid: r.tid,
                        pid: r.pid,
                        ppid: r.ppid,
                        name: r.name,
                        kernel_thread: r.kernel_thread,
                        status: r.status,
                        cpu: r.cpu,
                        vtid: r.vtid,
                        vpid: r.vpid,
                        vppid: r.vppid,
                        ns_level: r.ns_level,
                        ns_inum: r.ns_inum,
                    })
                    .collect();
                if let Writer::Ftrace(t) = w {
                    bytes += t.push_statedump(&dir, s.ts, &rows, s.part == 0, s.last)?;
                }
                let ts = match d {
                    Decode::Ftrace { clock, .. } => clock.to_unix_ns(s.ts),
                    Decode::Ctf { .. } => 0,
                };
                for r in &rows {
                    live.apply_direct(&LiveEvent {
                        ts,
                        arrived: now,
                        cpu: r.cpu,
                        tid: -1,
                        kind: LiveKind::StatedumpThread {
                            tid: r.tid,
                            pid: r.pid,
                            ppid: Some(r.ppid),
                            name: strata_analysis::event::Comm::new(&r.name),
                            status: Some(r.status as i64),
                        },
                    });
                }
            }
            (m, _, _) => {
                return Err(IngestError::Protocol(format!(
                    "{} frame does not match the {} source announced in Hello",
                    m.name(),
                    match self.hello.source {
                        Source::Live => "live",
                        Source::Replay => "replay",
                    }
                )))
            }
        }
        {
            let mut g = lock(&self.registry.latency);
            live.drain(now, false, Some(&mut g));
        }
        drop(live_guard);
        trace.count(events, 0);
        lock(&self.entry.status).events += events;
        self.pending_events += events;
        self.pending_bytes += bytes;
        let t = &self.registry.totals;
        t.events.fetch_add(events, Ordering::Relaxed);
        t.stored_bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Applies the events the reorder buffer releases now (the timer).
    pub fn tick(&mut self) {
        let now = unix_now_ns();
        if let Some(live) = lock(&self.entry.live).as_mut() {
            let mut g = lock(&self.registry.latency);
            live.drain(now, false, Some(&mut g));
        }
    }

    /// Writes open packets and the checkpoint; returns the sequence number
    /// to acknowledge when it advanced.
    pub fn commit(&mut self) -> Result<Option<u64>, IngestError> {
        let Some(trace) = self.trace.as_mut() else {
            return Ok(None);
        };
        if !self.dirty {
            return Ok(None);
        }
        let before = trace.checkpoint().bytes;
        trace.commit(Some(self.stored))?;
        let flushed = trace.checkpoint().bytes.saturating_sub(before);
        self.registry
            .totals
            .stored_bytes
            .fetch_add(flushed, Ordering::Relaxed);
        self.dirty = false;
        self.pending_bytes = 0;
        self.pending_events = 0;
        self.committed = self.stored;
        {
            let mut st = lock(&self.entry.status);
            st.last_seq = self.committed;
        }
        self.commits += 1;
        // Thread names outside the window are forgotten about once a
        // second (at the default commit interval), which bounds them by
        // the threads that ran recently.
        if self.commits.is_multiple_of(10) {
            let snapshot = self.is_snapshot();
            if let Some(live) = lock(&self.entry.live).as_mut() {
                live.prune();
                if !snapshot {
                    live.pair_guests(&self.registry.guest_feeds);
                }
            }
        }
        self.publish(false);
        Ok(Some(self.committed))
    }

    /// Writes the LTTng-live progress file: per stream, the clock value
    /// before which no packet will be added; `complete` once nobody writes.
    pub fn publish(&self, complete: bool) {
        let (Some(trace), Some(decode)) = (self.trace.as_ref(), self.decode.as_ref()) else {
            return;
        };
        let ck = trace.checkpoint();
        let streams = match decode {
            Decode::Ftrace { newest, .. } => {
                let floor = newest.saturating_sub(WATERMARK_MARGIN_NS);
                ck.streams
                    .keys()
                    .map(|name| {
                        // The CPU marks are by CPU number; the streams by name.
                        let end = name
                            .strip_prefix("channel0_")
                            .and_then(|c| c.parse::<usize>().ok())
                            .and_then(|c| ck.cpus.get(c))
                            .map_or(0, |m| m.last_end);
                        (name.clone(), end.max(floor))
                    })
                    .collect()
            }
            Decode::Ctf {
                ends,
                latest_begin,
                margin,
                ..
            } => {
                let floor = latest_begin.saturating_sub(*margin);
                ck.streams
                    .keys()
                    .map(|name| {
                        let end = ends.get(name).copied().unwrap_or(0);
                        (name.clone(), end.max(floor))
                    })
                    .collect()
            }
        };
        let p = Progress {
            complete,
            live_timer_us: Some(self.cfg.live_timer_us),
            watermark: None,
            streams,
        };
        if let Err(e) = progress::write(trace.trace_dir(), &p) {
            eprintln!(
                "strata relay: cannot write the live progress of {}: {e}",
                trace.trace_dir().display()
            );
        }
    }

    /// Ends the connection: applies every waiting event, commits, and
    /// marks the trace complete when the agent said goodbye.
    pub fn finish(&mut self, goodbye: bool) -> Result<Option<u64>, IngestError> {
        let acked = self.commit()?;
        if let Some(live) = lock(&self.entry.live).as_mut() {
            let mut g = lock(&self.registry.latency);
            live.drain(unix_now_ns(), true, Some(&mut g));
            live.prune();
        }
        if goodbye {
            self.publish(true);
        }
        Ok(acked)
    }
}

/// Plain-text TSDL as babeltrace2 wants it on disk: starting with the
/// `/* CTF 1.8 */` signature, which agents drop when they unpack packetized
/// metadata.
fn with_signature(tsdl: &str) -> Vec<u8> {
    if tsdl.trim_start().starts_with("/* CTF") {
        return tsdl.as_bytes().to_vec();
    }
    let mut v = b"/* CTF 1.8 */\n\n".to_vec();
    v.extend_from_slice(tsdl.as_bytes());
    v
}

fn same_source(a: Option<&TraceSource>, b: &TraceSource) -> bool {
    match (a, b) {
        (Some(TraceSource::Ftrace(x)), TraceSource::Ftrace(y)) => {
            x.host == y.host
                && x.clock == y.clock
                && x.formats == y.formats
                && x.syscall_formats == y.syscall_formats
        }
        (Some(TraceSource::Ctf { metadata: x }), TraceSource::Ctf { metadata: y }) => x == y,
        _ => false,
    }
}
