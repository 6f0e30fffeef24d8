//! The live source: a private tracefs instance whose raw ring-buffer pages
//! go out as they are, batched per CPU, with a periodic flush so a quiet
//! host still streams within `flush_interval`.
//!
//! Per page the agent parses only the 16-byte header (to cut the unused
//! tail and skip unreadable pages); it never decodes events. Kernel losses
//! are read from each CPU's `stats` and reported as exact increments.

use crate::error::AgentError;
use crate::feed::{Feed, FeedBuffers};
use crate::flight::{page_span, send_snapshot, FlightOptions, FlightRing, SnapshotData};
use crate::metadata::MetadataState;
use crate::outbox::Outbox;
use crate::sender::SenderConfig;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_core::ClockDesc;
use strata_ftrace::clock_offset::clock_offset_to_realtime;
use strata_ftrace::{CpuReaders, Instance, Missed, Page, PageLayout, Tracefs};
use strata_wire::{
    Clock, Compression, Control, ControlCommand, ControlResult, FormatPurpose, FormatText,
    LossCause, Message, PageBatch, Statedump, ThreadRow, VmHints,
};

/// Rows per state dump frame.
const STATEDUMP_ROWS: usize = 8192;
/// Snapshots a flight-mode agent holds at once.
const MAX_PENDING_SNAPSHOTS: usize = 4;
/// With a live feed, the flight ring reads its buffers at most this often:
/// nobody waits for those pages, and fewer, fuller pages cost less.
const RING_FLUSH: Duration = Duration::from_millis(100);

/// The event spec that records `trace_marker` writes (`ftrace/print`).
pub const MARKER_EVENT: &str = "ftrace:print";

/// How the live source traces.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Event specs as `--events` takes them (empty: the default set).
    pub events: Vec<String>,
    /// Ring-buffer bytes per CPU.
    pub buffer_size: u64,
    /// Sub-buffer size (the unit one read moves); `None`: 64 KiB, or 1/16
    /// of the buffer if that is smaller.
    pub subbuf_size: Option<u64>,
    /// The tracefs trace clock.
    pub clock: String,
    /// Send the process state dump at the start.
    pub statedump: bool,
    /// Longest time a read page waits before it is sent.
    pub flush_interval: Duration,
    /// A CPU's batch is sent once it reaches this many bytes.
    pub batch_bytes: usize,
    /// How often the kernel's per-CPU loss counters are read.
    pub stats_interval: Duration,
    /// Frame compression.
    pub compression: Compression,
    /// Count the events in every page sent (walks each record header: a
    /// few percent more CPU), for an exact `events_sent` figure that does
    /// not depend on the kernel's counters.
    pub count_events: bool,
    /// Flight-recorder mode: keep a recent window in memory, kernel
    /// buffers in overwrite mode, and send only snapshots.
    pub flight: Option<FlightOptions>,
    /// Flight mode: event specs streamed live meanwhile, from a second
    /// tracefs instance (`None`: nothing streams until a snapshot). See
    /// [`crate::feed`].
    pub live_events: Option<Vec<String>>,
    /// Reads the VMs this host runs (QEMU names, UUIDs, vCPU threads);
    /// called at the start and every `vm_hints_interval`, and sent when
    /// the answer changes. `None`: no VM hints.
    pub vm_hints: Option<fn() -> VmHints>,
    /// How often `vm_hints` is called.
    pub vm_hints_interval: Duration,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            events: Vec::new(),
            buffer_size: 8 << 20,
            subbuf_size: None,
            clock: "mono".into(),
            statedump: true,
            flush_interval: Duration::from_millis(100),
            batch_bytes: 1 << 20,
            stats_interval: Duration::from_secs(1),
            compression: Compression::None,
            count_events: false,
            flight: None,
            live_events: None,
            vm_hints: None,
            vm_hints_interval: Duration::from_secs(2),
        }
    }
}

/// What the live source did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveReport {
    /// The events traced at the end.
    pub events: Vec<(String, String)>,
    /// CPUs read.
    pub cpus: Vec<u32>,
    /// Pages sent.
    pub pages: u64,
    /// Committed event bytes in them.
    pub data_bytes: u64,
    /// Events the kernel dropped (exact, from its counters).
    pub kernel_lost: u64,
    /// Events the kernel says were read from its buffers (`read events`
    /// of each CPU's stats). It equals the events sent while the kernel
    /// loses nothing; after overruns it can be lower.
    pub kernel_read_events: u64,
    /// Events in the pages sent, when `count_events` is on.
    pub events_sent: Option<u64>,
    /// Pages not sent because their header did not parse.
    pub corrupt_pages: u64,
    /// Threads in the state dump.
    pub statedump_threads: usize,
    /// Name of the tracefs instance used.
    pub instance: String,
}

/// A set-up live source, ready to run.
pub struct LiveSource {
    opts: LiveOptions,
    // The readers must close before the instance is removed: fields drop in
    // declaration order.
    readers: CpuReaders,
    instance: Instance,
    available: Vec<(String, String)>,
    selected: Vec<(String, String)>,
    layout: PageLayout,
    /// The trace clock as the metadata declares it: a snapshot's instant
    /// (trace ns) and window (ns) become raw clock values through it.
    clock: ClockDesc,
    /// How snapshots reach the relay (flight mode).
    snapshot_link: Option<SenderConfig>,
    /// Flight mode with a live feed: the instance whose events stream.
    feed: Option<Feed>,
    /// Flight mode with a live feed: the metadata of the flight instance,
    /// which snapshots carry (the shared one describes the feed).
    flight_meta: Option<MetadataState>,
}

/// A snapshot asked for and not yet sent: its window, trace clock.
struct PendingSnapshot {
    request: u64,
    name: String,
    from: u64,
    to: u64,
}

fn clock_names(name: &str) -> (&str, &'static str) {
    // LTTng calls its kernel clock `monotonic`; analyses look for that name.
    match name {
        "mono" => ("monotonic", "Monotonic Clock"),
        "boot" => ("boottime", "Boot-time Clock"),
        other => (other, "ftrace trace clock"),
    }
}

fn format_texts(
    instance: &Instance,
    events: &[(String, String)],
) -> Result<Vec<FormatText>, AgentError> {
    events
        .iter()
        .map(|(s, n)| {
            Ok(FormatText {
                system: s.clone(),
                name: n.clone(),
                text: instance.event_format_text(s, n)?,
            })
        })
        .collect()
}

/// The `syscalls:sys_enter_*` formats, which name each system call's
/// arguments; unreadable ones only cost those names.
fn syscall_argument_formats(
    instance: &Instance,
    available: &[(String, String)],
) -> Vec<FormatText> {
    available
        .iter()
        .filter(|(s, n)| s == "syscalls" && n.starts_with("sys_enter_"))
        .filter_map(|(s, n)| {
            Some(FormatText {
                system: s.clone(),
                name: n.clone(),
                text: instance.event_format_text(s, n).ok()?,
            })
        })
        .collect()
}

/// How long a stopping agent waits for snapshots still being sent.
const SNAPSHOT_DRAIN: Duration = Duration::from_secs(60);

/// A snapshot's window as the relay asked for it.
#[derive(Debug, Clone, Copy)]
struct SnapshotWindow {
    before_ns: u64,
    after_ns: u64,
    /// The instant, trace ns; `None`: now.
    at_ns: Option<i64>,
}

impl LiveSource {
    /// Creates the instance, selects and reads the formats, and fills
    /// `metadata`. Tracing is not on yet.
    pub fn setup(
        opts: LiveOptions,
        metadata: &mut MetadataState,
    ) -> Result<LiveSource, AgentError> {
        let tracefs = Tracefs::find_or_mount()?;
        for stale in Instance::cleanup_stale(&tracefs)? {
            eprintln!(
                "strata agent: removed stale tracefs instance {stale} left by a process that died"
            );
        }
        let available = tracefs.available_events()?;
        // `ftrace:print` (what `trace_marker` writes record) is in no
        // available_events and has no `enable` file: an instance records
        // marker writes whenever it traces. Asking for it sends its format,
        // so that the relay keeps the markers (guest sync probes use them).
        let (markers, specs): (Vec<&String>, Vec<&String>) =
            opts.events.iter().partition(|e| e.trim() == MARKER_EVENT);
        let selected = strata_ftrace::resolve_events(&specs, &available)?;
        let instance = Instance::create(&tracefs, "agent")?;
        instance.set_clock(&opts.clock)?;
        let kb = opts.buffer_size.div_ceil(1024).max(4);
        // Each read moves one sub-buffer and is itself a system call (traced
        // when syscalls are): larger sub-buffers mean fewer of both. Set it
        // before the buffer size, whose change reallocates the buffer.
        // Kernels before 6.8 have no such file and keep 4 KiB.
        let subbuf_kb = opts.subbuf_size.map_or_else(
            || {
                let cap = (kb / 16).max(4);
                let mut s = 64;
                while s > 4 && s > cap {
                    s /= 2;
                }
                s
            },
            |b| b.div_ceil(1024).max(4),
        );
        if let Err(e) = instance.set_subbuf_size_kb(subbuf_kb) {
            if opts.subbuf_size.is_some() {
                return Err(e.into());
            }
        }
        instance.set_buffer_size_kb(kb)?;
        if opts.flight.is_some() {
            // In overwrite mode a reader that falls behind loses the oldest
            // events, not the newest: what a flight recorder wants.
            let path = instance.path().join("options/overwrite");
            std::fs::write(&path, "1").map_err(|source| AgentError::Io {
                what: "cannot turn on overwrite mode in",
                path,
                source,
            })?;
        }
        // Wake the reader when a CPU buffer is half full: many pages per
        // wake-up; the periodic flush bounds the latency.
        instance.set_buffer_percent(50)?;
        let (ctf_name, about) = clock_names(&opts.clock);
        let desc = if opts.clock == "x86-tsc" {
            // Raw cycles: a TSC does not count nanoseconds, so its rate is
            // measured and declared instead.
            crate::tsc_clock::describe(ctf_name, Duration::from_millis(200))
                .ok_or_else(|| AgentError::Config("cannot measure the x86-tsc clock rate".into()))?
        } else {
            let offset_ns = clock_offset_to_realtime(&opts.clock).map_err(|e| {
                AgentError::Config(format!(
                    "cannot relate trace clock '{}' to wall-clock time: {e}",
                    opts.clock
                ))
            })?;
            ClockDesc::nanoseconds(ctf_name, about, offset_ns)
        };
        let clock_desc = desc.clone();
        metadata.clock = Some(Clock {
            trace_clock: opts.clock.clone(),
            desc,
        });
        metadata.add_recorded(format_texts(&instance, &selected)?);
        if !markers.is_empty() {
            let print = [("ftrace".to_string(), "print".to_string())];
            metadata.add_recorded(format_texts(&instance, &print)?);
        }
        if selected.iter().any(|(s, _)| s == "raw_syscalls") {
            metadata.argument_names = syscall_argument_formats(&instance, &available);
        }
        let header_event =
            std::fs::read_to_string(tracefs.root().join("events/header_event")).unwrap_or_default();
        metadata.layout = Some(strata_wire::PageLayout {
            header_page: instance.header_page_text()?,
            header_event,
        });
        for (s, n) in &selected {
            instance.enable_event(s, n)?;
        }
        let cpus = instance.online_cpus()?;
        let readers = CpuReaders::open(&instance, &cpus)?;
        let layout = *readers.layout();
        metadata.cpus = cpus.clone();
        let mut feed = None;
        let mut flight_meta = None;
        if let (Some(_), Some(specs)) = (&opts.flight, &opts.live_events) {
            let sizes = FeedBuffers {
                subbuf_kb,
                // Streamed as it comes: a quarter of the ring's buffer is
                // plenty for a few event groups.
                buffer_kb: (kb / 4).max(subbuf_kb * 8),
            };
            let f = Feed::setup(
                &tracefs,
                specs,
                &available,
                &opts.clock,
                sizes,
                &cpus,
                &layout,
            )?;
            flight_meta = Some(metadata.clone());
            metadata.recorded.clear();
            metadata.argument_names.clear();
            metadata.add_recorded(format_texts(&f.instance, &f.selected)?);
            if f.markers {
                let print = [("ftrace".to_string(), "print".to_string())];
                metadata.add_recorded(format_texts(&f.instance, &print)?);
            }
            if f.selected.iter().any(|(s, _)| s == "raw_syscalls") {
                metadata.argument_names = syscall_argument_formats(&f.instance, &available);
            }
            feed = Some(f);
        }
        Ok(LiveSource {
            opts,
            instance,
            available,
            selected,
            readers,
            layout,
            clock: clock_desc,
            snapshot_link: None,
            feed,
            flight_meta,
        })
    }

    /// Sets how snapshots are sent: the main connection's settings, whose
    /// session is replaced by each snapshot's id.
    pub fn set_snapshot_link(&mut self, link: SenderConfig) {
        self.snapshot_link = Some(link);
    }

    fn queue_snapshot(
        &self,
        request: u64,
        window: SnapshotWindow,
        name: &str,
        pending: &mut Vec<PendingSnapshot>,
    ) -> Result<(), AgentError> {
        let SnapshotWindow {
            before_ns,
            after_ns,
            at_ns,
        } = window;
        let Some(keep) = self.opts.flight.map(|f| f.keep) else {
            return Err(AgentError::Config(
                "this agent is not in flight-recorder mode (start it with --mode flight)".into(),
            ));
        };
        // Each waiting snapshot copies its window out of the ring when it
        // is sent: a few at a time bound that memory.
        if pending.len() >= MAX_PENDING_SNAPSHOTS {
            return Err(AgentError::Config(format!(
                "{MAX_PENDING_SNAPSHOTS} snapshots are already waiting to be sent; try again in a moment"
            )));
        }
        // The instant in raw clock values: the relay's (through this
        // host's clock, and a guest's sync), or now.
        let at = match at_ns {
            Some(ns) => self.clock.from_unix_ns(ns),
            None => self.clock_now(),
        };
        if before_ns > keep.as_nanos() as u64 {
            eprintln!(
                "strata agent: snapshot {name} asks for {:?} of history; this agent keeps {keep:?}",
                Duration::from_nanos(before_ns)
            );
        }
        pending.push(PendingSnapshot {
            request,
            name: name.to_string(),
            from: at.saturating_sub(self.clock.cycles_in(before_ns)),
            to: at.saturating_add(self.clock.cycles_in(after_ns)),
        });
        Ok(())
    }

    /// The page layout of the instance.
    pub fn layout(&self) -> PageLayout {
        self.layout
    }

    /// The tracefs instance's name.
    pub fn instance_name(&self) -> &str {
        self.instance.name()
    }

    fn clock_now(&self) -> u64 {
        if self.opts.clock == "x86-tsc" {
            return crate::tsc_clock::now();
        }
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        self.clock.from_unix_ns(unix)
    }

    /// Streams until `stop` or `abort`, then drains the buffers, reports the
    /// final losses and closes `outbox`. The instance is removed on return.
    pub fn run(
        mut self,
        outbox: &Outbox,
        metadata: &Arc<Mutex<MetadataState>>,
        controls: &Receiver<Control>,
        stop: &AtomicBool,
        abort: &AtomicBool,
    ) -> Result<LiveReport, AgentError> {
        outbox.set_layout(self.layout);
        let mut report = LiveReport {
            cpus: self.readers.cpus(),
            instance: self.instance.name().to_string(),
            ..LiveReport::default()
        };
        let streams = self.opts.flight.is_none() || self.feed.is_some();
        if self.opts.statedump && streams {
            let threads = strata_store::statedump::collect(Path::new("/proc"));
            report.statedump_threads = threads.len();
            let ts = self.clock_now();
            let rows: Vec<ThreadRow> = threads.iter().map(crate::thread_row).collect();
            let parts = rows.len().div_ceil(STATEDUMP_ROWS).max(1);
            for part in 0..parts {
                let chunk = rows
                    .get(part * STATEDUMP_ROWS..((part + 1) * STATEDUMP_ROWS).min(rows.len()))
                    .unwrap_or(&[]);
                let msg = Message::Statedump(Statedump {
                    ts,
                    part: part as u32,
                    last: part + 1 == parts,
                    threads: chunk.to_vec(),
                });
                outbox.push_message(&msg, self.opts.compression)?;
            }
        }
        let cpus = self.readers.cpus();
        let max_cpu = cpus.iter().copied().max().unwrap_or(0) as usize;
        let mut batches: Vec<PageBatch> = (0..=max_cpu as u32).map(PageBatch::new).collect();
        let mut kernel_reported = vec![0u64; max_cpu + 1];
        self.instance.set_tracing_on(true)?;
        if let Some(f) = &self.feed {
            f.instance.set_tracing_on(true)?;
        }
        let mut tracing = true;
        let mut next_flush = Instant::now() + self.opts.flush_interval;
        // Without a feed the ring (or the live stream) is read on the
        // flush timer itself.
        let ring_every = if self.feed.is_some() {
            self.opts.flush_interval.max(RING_FLUSH)
        } else {
            self.opts.flush_interval
        };
        let mut next_ring = Instant::now() + ring_every;
        let mut next_stats = Instant::now() + self.opts.stats_interval;
        let mut next_hints = Instant::now();
        let layout = self.layout;
        let batch_bytes = self.opts.batch_bytes;
        let compression = self.opts.compression;
        let mut failure: Option<AgentError> = None;
        let mut sink_state = SinkState {
            batches: &mut batches,
            outbox,
            layout: &layout,
            batch_bytes,
            compression,
            pages: 0,
            data_bytes: 0,
            corrupt: 0,
            events: self.opts.count_events.then_some(0),
            flight: self.opts.flight.map(|f| FlightRing::new(max_cpu as u32, f)),
        };
        let mut pending: Vec<PendingSnapshot> = Vec::new();
        let mut senders: Vec<std::thread::JoinHandle<()>> = Vec::new();
        while !stop.load(Ordering::Relaxed) && !abort.load(Ordering::Relaxed) {
            while let Ok(c) = controls.try_recv() {
                let result = if let ControlCommand::Snapshot {
                    before_ns,
                    after_ns,
                    name,
                    at_ns,
                } = &c.command
                {
                    let window = SnapshotWindow {
                        before_ns: *before_ns,
                        after_ns: *after_ns,
                        at_ns: *at_ns,
                    };
                    // Answered once the snapshot is stored.
                    match self.queue_snapshot(c.request, window, name, &mut pending) {
                        Ok(()) => continue,
                        Err(e) => Err(e),
                    }
                } else {
                    self.apply_control(&c.command, metadata, outbox, &mut tracing, &mut sink_state)
                };
                let (ok, message) = match result {
                    Ok(m) => (true, m),
                    Err(e) => (false, e.to_string()),
                };
                let frame = Message::ControlResult(ControlResult {
                    request: c.request,
                    ok,
                    message,
                })
                .encode(0, Compression::None)?;
                outbox.push_unsequenced(frame);
            }
            let now = Instant::now();
            let pumped = match self.feed.as_mut() {
                // The feed is what the relay's rules wait for: the loop
                // sleeps on it, and looks at the ring's buffers without
                // waiting.
                Some(feed) => {
                    let wait = next_flush.min(next_ring).saturating_duration_since(now);
                    let mut stream = |cpu: u32, page: &[u8]| sink_state.stream(cpu, page);
                    feed.readers.pump(wait, &mut stream).and_then(|_| {
                        let mut hold = |cpu: u32, page: &[u8]| sink_state.take(cpu, page);
                        self.readers.pump(Duration::ZERO, &mut hold)
                    })
                }
                None => {
                    let wait = next_ring.saturating_duration_since(now);
                    let mut sink = |cpu: u32, page: &[u8]| sink_state.take(cpu, page);
                    self.readers.pump(wait, &mut sink)
                }
            };
            if let Err(e) = pumped {
                failure = Some(AgentError::Capture(e.to_string()));
                break;
            }
            if let Some(feed) = self.feed.as_mut() {
                if Instant::now() >= next_flush {
                    let mut stream = |cpu: u32, page: &[u8]| sink_state.stream(cpu, page);
                    if let Err(e) = feed.readers.flush(&mut stream) {
                        failure = Some(AgentError::Capture(e.to_string()));
                        break;
                    }
                    sink_state.seal_all()?;
                    next_flush = Instant::now() + self.opts.flush_interval;
                }
            }
            if Instant::now() >= next_ring {
                let mut sink = |cpu: u32, page: &[u8]| sink_state.take(cpu, page);
                if let Err(e) = self.readers.flush(&mut sink) {
                    failure = Some(AgentError::Capture(e.to_string()));
                    break;
                }
                sink_state.seal_all()?;
                next_ring = Instant::now() + ring_every;
                if sink_state.flight.is_some() {
                    self.flight_tick(
                        &mut sink_state,
                        &mut pending,
                        &mut senders,
                        metadata,
                        outbox,
                        false,
                    );
                }
            }
            if streams && Instant::now() >= next_hints {
                if let Some(read) = self.opts.vm_hints {
                    send_vm_hints(read(), metadata, outbox)?;
                }
                next_hints = Instant::now() + self.opts.vm_hints_interval;
            }
            if streams && Instant::now() >= next_stats {
                report.kernel_lost +=
                    self.report_kernel_losses(&cpus, &mut kernel_reported, outbox);
                outbox.flush_losses()?;
                next_stats = Instant::now() + self.opts.stats_interval;
            }
        }
        let _ = self.instance.set_tracing_on(false);
        if let Some(f) = &self.feed {
            let _ = f.instance.set_tracing_on(false);
        }
        if failure.is_none() {
            let mut sink = |cpu: u32, page: &[u8]| sink_state.take(cpu, page);
            if let Err(e) = self.readers.drain(&mut sink) {
                failure = Some(AgentError::Capture(e.to_string()));
            }
        }
        if let (None, Some(feed)) = (&failure, self.feed.as_mut()) {
            let mut stream = |cpu: u32, page: &[u8]| sink_state.stream(cpu, page);
            if let Err(e) = feed.readers.drain(&mut stream) {
                failure = Some(AgentError::Capture(e.to_string()));
            }
        }
        sink_state.seal_all()?;
        // A stopping agent sends the snapshots still waiting for their
        // window to close with what it holds, rather than leave the relay
        // without an answer.
        if sink_state.flight.is_some() {
            self.flight_tick(
                &mut sink_state,
                &mut pending,
                &mut senders,
                metadata,
                outbox,
                true,
            );
        }
        report.pages = sink_state.pages;
        report.data_bytes = sink_state.data_bytes;
        report.corrupt_pages = sink_state.corrupt;
        report.events_sent = sink_state.events;
        report.kernel_lost += self.report_kernel_losses(&cpus, &mut kernel_reported, outbox);
        let streamed = self.feed.as_ref().map_or(&self.readers, |f| &f.readers);
        report.kernel_read_events = cpus
            .iter()
            .filter_map(|&c| streamed.cpu_stats(c).ok())
            .map(|s| s.read_events)
            .sum();
        report.events = self.selected.clone();
        // Snapshots still on their way (a slow link: a VM's serial port)
        // are finished before the agent goes, so that their answers too
        // reach the relay.
        let deadline = Instant::now() + SNAPSHOT_DRAIN;
        while senders.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        outbox.close();
        // Dropping the readers then the instance removes it from tracefs.
        drop(self);
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Prunes the ring (sparing what a waiting snapshot needs) and sends
    /// the snapshots whose window has closed, or all of them when
    /// `stopping`.
    fn flight_tick(
        &self,
        sink: &mut SinkState<'_>,
        pending: &mut Vec<PendingSnapshot>,
        senders: &mut Vec<std::thread::JoinHandle<()>>,
        metadata: &Arc<Mutex<MetadataState>>,
        outbox: &Outbox,
        stopping: bool,
    ) {
        let now = self.clock_now();
        let Some(ring) = sink.flight.as_mut() else {
            return;
        };
        let keep = self.opts.flight.map_or(0, |f| f.keep.as_nanos() as u64);
        let spare_from = pending.iter().map(|p| p.from).min();
        ring.prune(spare_from.map_or(now, |f| now.min(f.saturating_add(keep))));
        let mut i = 0;
        while i < pending.len() {
            // The last flush ran just now: every event up to `to` is in
            // the ring once the clock passed it.
            if !stopping && pending.get(i).is_some_and(|p| now < p.to) {
                i += 1;
                continue;
            }
            let p = pending.remove(i);
            let pages = ring
                .window(p.from, p.to)
                .into_iter()
                .map(|(cpu, v)| (cpu, v.into_iter().map(<[u8]>::to_vec).collect()))
                .collect();
            let snap = SnapshotData {
                request: p.request,
                name: p.name,
                statedump_ts: p.from,
                pages,
            };
            let fail = |msg: String| {
                let frame = Message::ControlResult(ControlResult {
                    request: p.request,
                    ok: false,
                    message: msg,
                })
                .encode(0, Compression::None);
                if let Ok(f) = frame {
                    outbox.push_unsequenced(f);
                }
            };
            let Some(link) = self.snapshot_link.clone() else {
                fail("this agent has no relay link for snapshots".into());
                continue;
            };
            let meta = match &self.flight_meta {
                Some(m) => m.clone(),
                None => metadata.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            };
            let layout = self.layout;
            let main = outbox.clone();
            let spawned = std::thread::Builder::new()
                .name("strata-snapshot".into())
                .spawn(move || send_snapshot(link, meta, layout, snap, main));
            match spawned {
                Ok(h) => {
                    senders.retain(|h| !h.is_finished());
                    senders.push(h);
                }
                Err(e) => fail(format!("cannot start the snapshot sender thread: {e}")),
            }
        }
    }

    /// Reports what the kernel lost in the buffers that stream (the
    /// feed's, in flight mode) since the last call.
    fn report_kernel_losses(&self, cpus: &[u32], reported: &mut [u64], outbox: &Outbox) -> u64 {
        let readers = self.feed.as_ref().map_or(&self.readers, |f| &f.readers);
        let mut new = 0;
        for &cpu in cpus {
            let Ok(stats) = readers.cpu_stats(cpu) else {
                continue;
            };
            let Some(r) = reported.get_mut(cpu as usize) else {
                continue;
            };
            let total = stats.lost();
            if total > *r {
                outbox.note_loss(cpu, LossCause::KernelBuffer, total - *r, 0);
                new += total - *r;
                *r = total;
            }
        }
        new
    }

    fn apply_control(
        &mut self,
        cmd: &ControlCommand,
        metadata: &Arc<Mutex<MetadataState>>,
        outbox: &Outbox,
        tracing: &mut bool,
        sink: &mut SinkState<'_>,
    ) -> Result<String, AgentError> {
        match cmd {
            ControlCommand::Start => {
                self.instance.set_tracing_on(true)?;
                if let Some(f) = &self.feed {
                    f.instance.set_tracing_on(true)?;
                }
                *tracing = true;
                Ok("tracing".into())
            }
            ControlCommand::Stop => {
                self.instance.set_tracing_on(false)?;
                *tracing = false;
                let mut s = |cpu: u32, page: &[u8]| sink.take(cpu, page);
                self.readers
                    .flush(&mut s)
                    .map_err(|e| AgentError::Capture(e.to_string()))?;
                if let Some(f) = self.feed.as_mut() {
                    f.instance.set_tracing_on(false)?;
                    let mut s = |cpu: u32, page: &[u8]| sink.stream(cpu, page);
                    f.readers
                        .flush(&mut s)
                        .map_err(|e| AgentError::Capture(e.to_string()))?;
                }
                sink.seal_all()?;
                Ok("stopped; the connection stays up".into())
            }
            ControlCommand::Snapshot { .. } => Err(AgentError::Config(
                "snapshots are not implemented by this agent yet".into(),
            )),
            ControlCommand::SetEvents(specs) => {
                // In flight mode with a feed, the relay's changes are about
                // what streams; the ring keeps the events it started with.
                let (instance, selected) = match self.feed.as_mut() {
                    Some(f) => (&f.instance, &mut f.selected),
                    None => (&self.instance, &mut self.selected),
                };
                let wanted = strata_ftrace::resolve_events(specs, &self.available)?;
                let old: BTreeSet<_> = selected.iter().cloned().collect();
                let new: BTreeSet<_> = wanted.iter().cloned().collect();
                let added: Vec<_> = new.difference(&old).cloned().collect();
                let removed: Vec<_> = old.difference(&new).cloned().collect();
                if added.is_empty() && removed.is_empty() {
                    // Nothing to change: no new metadata, so the relay
                    // keeps writing the same trace.
                    return Ok(format!("unchanged: tracing {} events", selected.len()));
                }
                // Formats go out before any page that can hold the new
                // events: they are queued ahead of every frame not yet
                // pushed, and the events are enabled only afterwards.
                let texts = format_texts(instance, &added)?;
                // Syscall argument names come with raw_syscalls, as at start.
                let wants_names = wanted.iter().any(|(s, _)| s == "raw_syscalls");
                let names = {
                    let m = metadata.lock().unwrap_or_else(|p| p.into_inner());
                    wants_names && m.argument_names.is_empty()
                };
                let names = if names {
                    syscall_argument_formats(instance, &self.available)
                } else {
                    Vec::new()
                };
                let frames = {
                    let mut m = metadata.lock().unwrap_or_else(|p| p.into_inner());
                    let fresh = m.add_recorded(texts);
                    m.generation += 1;
                    let mut out = Vec::new();
                    crate::metadata::formats_frames(
                        FormatPurpose::Recorded,
                        &fresh,
                        self.opts.compression,
                        &mut out,
                    )?;
                    if !names.is_empty() {
                        crate::metadata::formats_frames(
                            FormatPurpose::ArgumentNames,
                            &names,
                            self.opts.compression,
                            &mut out,
                        )?;
                        m.argument_names = names;
                    }
                    m.done_frame(&mut out)?;
                    out
                };
                outbox.push_unsequenced(frames);
                for (s, n) in &added {
                    instance.enable_event(s, n)?;
                }
                for (s, n) in &removed {
                    instance.disable_event(s, n)?;
                }
                *selected = wanted;
                Ok(format!(
                    "now tracing {} events ({} added, {} removed)",
                    selected.len(),
                    added.len(),
                    removed.len()
                ))
            }
        }
    }
}

/// Turns pages into per-CPU batches and batches into frames.
struct SinkState<'a> {
    batches: &'a mut Vec<PageBatch>,
    outbox: &'a Outbox,
    layout: &'a PageLayout,
    batch_bytes: usize,
    compression: Compression,
    pages: u64,
    data_bytes: u64,
    corrupt: u64,
    events: Option<u64>,
    /// Flight mode: pages go here instead of to the relay.
    flight: Option<FlightRing>,
}

impl SinkState<'_> {
    /// A page of the main instance: into the flight ring in flight mode,
    /// else streamed.
    fn take(&mut self, cpu: u32, bytes: &[u8]) -> Result<(), AgentError> {
        if let Some(ring) = self.flight.as_mut() {
            if let Some((first, last)) = page_span(self.layout, bytes) {
                let keep = match Page::parse(self.layout, bytes) {
                    Ok(p) => (self.layout.data_offset + p.data_len()).min(bytes.len()),
                    Err(_) => bytes.len(),
                };
                ring.push(cpu, first, last, bytes.get(..keep).unwrap_or(bytes));
                self.pages += 1;
            }
            return Ok(());
        }
        self.stream(cpu, bytes)
    }

    /// A page to send to the relay now (batched per CPU).
    fn stream(&mut self, cpu: u32, bytes: &[u8]) -> Result<(), AgentError> {
        let keep = match Page::parse(self.layout, bytes) {
            Ok(p) => {
                self.data_bytes += p.data_len() as u64;
                if let Some(n) = self.events.as_mut() {
                    *n += p.records().filter(Result::is_ok).count() as u64;
                }
                let count = if matches!(p.missed(), Missed::Count(_)) {
                    self.layout.commit_size
                } else {
                    0
                };
                (self.layout.data_offset + p.data_len() + count).min(bytes.len())
            }
            Err(_) => {
                self.corrupt += 1;
                self.outbox.note_loss(cpu, LossCause::CorruptPage, 0, 1);
                return Ok(());
            }
        };
        let Some(batch) = self.batches.get_mut(cpu as usize) else {
            return Ok(());
        };
        batch.push(bytes.get(..keep).unwrap_or(bytes))?;
        self.pages += 1;
        if batch.body_len() >= self.batch_bytes {
            self.seal(cpu as usize)?;
        }
        Ok(())
    }

    fn seal(&mut self, i: usize) -> Result<(), AgentError> {
        let Some(batch) = self.batches.get_mut(i) else {
            return Ok(());
        };
        if batch.is_empty() {
            return Ok(());
        }
        let compression = self.compression;
        // The batch's buffer becomes the frame: the pages are not copied
        // again (unless compressed).
        self.outbox.push_with(|seq| batch.seal(seq, compression))?;
        Ok(())
    }

    fn seal_all(&mut self) -> Result<(), AgentError> {
        for i in 0..self.batches.len() {
            self.seal(i)?;
        }
        Ok(())
    }
}

/// Sends `hints` when they differ from the last ones sent, and keeps them
/// in the metadata so every later connection starts with them.
fn send_vm_hints(
    hints: VmHints,
    metadata: &Arc<Mutex<MetadataState>>,
    outbox: &Outbox,
) -> Result<(), AgentError> {
    {
        let mut m = metadata.lock().unwrap_or_else(|p| p.into_inner());
        if m.vm_hints.as_ref() == Some(&hints) {
            return Ok(());
        }
        m.vm_hints = Some(hints.clone());
    }
    let frame = Message::VmHints(hints).encode(0, Compression::None)?;
    outbox.push_unsequenced(frame);
    Ok(())
}
