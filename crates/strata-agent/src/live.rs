//! The live source: a private tracefs instance whose raw ring-buffer pages
//! go out as they are, batched per CPU, with a periodic flush so a quiet
//! host still streams within `flush_interval`.
//!
//! Per page the agent parses only the 16-byte header (to cut the unused
//! tail and skip unreadable pages); it never decodes events. Kernel losses
//! are read from each CPU's `stats` and reported as exact increments.

use crate::error::AgentError;
use crate::metadata::MetadataState;
use crate::outbox::Outbox;
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
    LossCause, Message, PageBatch, Statedump, ThreadRow,
};

/// Rows per state dump frame.
const STATEDUMP_ROWS: usize = 8192;

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
    offset_ns: i64,
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
        let selected = strata_ftrace::resolve_events(&opts.events, &available)?;
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
        // Wake the reader when a CPU buffer is half full: many pages per
        // wake-up; the periodic flush bounds the latency.
        instance.set_buffer_percent(50)?;
        let (ctf_name, about) = clock_names(&opts.clock);
        let (offset_ns, desc) = if opts.clock == "x86-tsc" {
            // Raw cycles: a TSC does not count nanoseconds, so its rate is
            // measured and declared instead.
            let desc = crate::tsc_clock::describe(ctf_name, Duration::from_millis(200))
                .ok_or_else(|| {
                    AgentError::Config("cannot measure the x86-tsc clock rate".into())
                })?;
            (0, desc)
        } else {
            let offset_ns = clock_offset_to_realtime(&opts.clock).map_err(|e| {
                AgentError::Config(format!(
                    "cannot relate trace clock '{}' to wall-clock time: {e}",
                    opts.clock
                ))
            })?;
            (
                offset_ns,
                ClockDesc::nanoseconds(ctf_name, about, offset_ns),
            )
        };
        metadata.clock = Some(Clock {
            trace_clock: opts.clock.clone(),
            desc,
        });
        metadata.add_recorded(format_texts(&instance, &selected)?);
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
        metadata.cpus = cpus;
        Ok(LiveSource {
            opts,
            instance,
            available,
            selected,
            readers,
            layout,
            offset_ns,
        })
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
        unix.saturating_sub(self.offset_ns).max(0) as u64
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
        if self.opts.statedump {
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
        let mut tracing = true;
        let mut next_flush = Instant::now() + self.opts.flush_interval;
        let mut next_stats = Instant::now() + self.opts.stats_interval;
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
        };
        while !stop.load(Ordering::Relaxed) && !abort.load(Ordering::Relaxed) {
            while let Ok(c) = controls.try_recv() {
                let result =
                    self.apply_control(&c.command, metadata, outbox, &mut tracing, &mut sink_state);
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
            let wait = next_flush.saturating_duration_since(now);
            let mut sink = |cpu: u32, page: &[u8]| sink_state.take(cpu, page);
            if let Err(e) = self.readers.pump(wait, &mut sink) {
                failure = Some(AgentError::Capture(e.to_string()));
                break;
            }
            if Instant::now() >= next_flush {
                let mut sink = |cpu: u32, page: &[u8]| sink_state.take(cpu, page);
                if let Err(e) = self.readers.flush(&mut sink) {
                    failure = Some(AgentError::Capture(e.to_string()));
                    break;
                }
                sink_state.seal_all()?;
                next_flush = Instant::now() + self.opts.flush_interval;
            }
            if Instant::now() >= next_stats {
                report.kernel_lost +=
                    self.report_kernel_losses(&cpus, &mut kernel_reported, outbox);
                outbox.flush_losses()?;
                next_stats = Instant::now() + self.opts.stats_interval;
            }
        }
        let _ = self.instance.set_tracing_on(false);
        if failure.is_none() {
            let mut sink = |cpu: u32, page: &[u8]| sink_state.take(cpu, page);
            if let Err(e) = self.readers.drain(&mut sink) {
                failure = Some(AgentError::Capture(e.to_string()));
            }
        }
        sink_state.seal_all()?;
        report.pages = sink_state.pages;
        report.data_bytes = sink_state.data_bytes;
        report.corrupt_pages = sink_state.corrupt;
        report.events_sent = sink_state.events;
        report.kernel_lost += self.report_kernel_losses(&cpus, &mut kernel_reported, outbox);
        report.kernel_read_events = cpus
            .iter()
            .filter_map(|&c| self.readers.cpu_stats(c).ok())
            .map(|s| s.read_events)
            .sum();
        report.events = self.selected.clone();
        outbox.close();
        // Dropping the readers then the instance removes it from tracefs.
        drop(self);
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    fn report_kernel_losses(&self, cpus: &[u32], reported: &mut [u64], outbox: &Outbox) -> u64 {
        let mut new = 0;
        for &cpu in cpus {
            let Ok(stats) = self.readers.cpu_stats(cpu) else {
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
                sink.seal_all()?;
                Ok("stopped; the connection stays up".into())
            }
            ControlCommand::Snapshot { .. } => Err(AgentError::Config(
                "snapshots are not implemented by this agent yet".into(),
            )),
            ControlCommand::SetEvents(specs) => {
                let wanted = strata_ftrace::resolve_events(specs, &self.available)?;
                let old: BTreeSet<_> = self.selected.iter().cloned().collect();
                let new: BTreeSet<_> = wanted.iter().cloned().collect();
                let added: Vec<_> = new.difference(&old).cloned().collect();
                let removed: Vec<_> = old.difference(&new).cloned().collect();
                // Formats go out before any page that can hold the new
                // events: they are queued ahead of every frame not yet
                // pushed, and the events are enabled only afterwards.
                let texts = format_texts(&self.instance, &added)?;
                // Syscall argument names come with raw_syscalls, as at start.
                let wants_names = wanted.iter().any(|(s, _)| s == "raw_syscalls");
                let names = {
                    let m = metadata.lock().unwrap_or_else(|p| p.into_inner());
                    wants_names && m.argument_names.is_empty()
                };
                let names = if names {
                    syscall_argument_formats(&self.instance, &self.available)
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
                    self.instance.enable_event(s, n)?;
                }
                for (s, n) in &removed {
                    self.instance.disable_event(s, n)?;
                }
                self.selected = wanted;
                Ok(format!(
                    "now tracing {} events ({} added, {} removed)",
                    self.selected.len(),
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
}

impl SinkState<'_> {
    fn take(&mut self, cpu: u32, bytes: &[u8]) -> Result<(), AgentError> {
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
