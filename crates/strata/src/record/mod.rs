//! `strata record`: capture this host's kernel events into a CTF trace.
//!
//! The embedded pipeline of DESIGN.md: a private tracefs instance is the
//! source, raw ring-buffer pages are decoded in this process, and the store
//! writes them as an LTTng-layout CTF trace.

mod losses;
mod remote;
mod status;

use crate::units::{parse_duration, parse_size};
use anyhow::{bail, Context};
use losses::LossTracker;
use status::StatusLine;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_core::ClockDesc;
use strata_ftrace::clock_offset::clock_offset_to_realtime;
use strata_ftrace::format::EventFormat;
use strata_ftrace::{CpuReaders, Instance, Missed, Page, PageLayout, Tracefs};
use strata_store::{StoreError, StoreOptions, TraceWriter};

/// How long the reader sleeps at most before checking for a stop request.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Arguments of `strata record`.
#[derive(clap::Args)]
pub struct RecordArgs {
    /// The trace directory to create. It must not exist or be empty.
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,

    /// Stop after this long (`10s`, `500ms`, `2m`). Without it, record until
    /// Ctrl-C or SIGTERM.
    #[arg(short, long, value_parser = parse_duration)]
    duration: Option<Duration>,

    /// Events to record, comma-separated: presets (sched, syscalls, irq,
    /// faults, kvm, block, net, power, mem), `group:event`, `group:*`, a bare
    /// event name, or `-spec` to remove. Default: sched,syscalls,irq.
    #[arg(short, long, value_delimiter = ',', value_name = "LIST")]
    events: Vec<String>,

    /// Kernel ring-buffer size per CPU (`16M`, `512K`).
    #[arg(short, long, default_value = "8M", value_parser = parse_size)]
    buffer_size: u64,

    /// Kernel ring-buffer sub-buffer size (`64K`): the unit the reader
    /// moves at a time. The kernel rounds it up to a power of two and caps
    /// it. Default: 64K, or 1/16 of the buffer size if that is smaller.
    #[arg(long, value_parser = parse_size)]
    subbuf_size: Option<u64>,

    /// The tracefs trace clock (`mono`, `boot`, `tai`, `local`, `global`).
    #[arg(long, default_value = "mono")]
    clock: String,

    /// Do not write the process state dump read from /proc at the start.
    #[arg(long)]
    no_statedump: bool,

    /// No live status line.
    #[arg(short, long)]
    quiet: bool,

    /// Record another host through ssh (`ssh://[user@]host[:port]`): runs
    /// `strata agent --stdio` there with the local ssh client and keys; no
    /// port is opened on that host. The trace is stored here, under
    /// DIR/remote/<host>/kernel.
    #[arg(long, value_name = "URL")]
    remote: Option<String>,

    /// With --remote: the ssh private key to use (default: ssh's own).
    #[arg(long, value_name = "FILE", requires = "remote")]
    identity: Option<PathBuf>,

    /// With --remote: an extra `ssh -o` option (repeatable), e.g.
    /// `StrictHostKeyChecking=accept-new`.
    #[arg(long, value_name = "OPT", requires = "remote")]
    ssh_option: Vec<String>,

    /// With --remote: the strata command on the remote host.
    #[arg(long, default_value = "strata", value_name = "PATH")]
    remote_strata: String,
}

/// Runs `strata record`.
pub fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    if args.remote.is_some() {
        return remote::run(args);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("strata record controls the kernel's tracefs and needs root; run it with sudo");
    }
    check_output_dir(&args.output)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the Ctrl-C/SIGTERM handler")?;
    }

    let tracefs = Tracefs::find_or_mount()?;
    for stale in Instance::cleanup_stale(&tracefs)? {
        eprintln!("strata: removed stale tracefs instance {stale} left by a process that died");
    }
    let available = tracefs.available_events()?;
    let selected = strata_ftrace::resolve_events(&args.events, &available)?;

    let instance = Instance::create(&tracefs, "record")?;
    instance
        .set_clock(&args.clock)
        .with_context(|| format!("cannot use trace clock '{}'", args.clock))?;
    let kb = args.buffer_size.div_ceil(1024).max(4);
    let subbuf_kb = args
        .subbuf_size
        .map_or_else(|| default_subbuf_kb(kb), |b| b.div_ceil(1024).max(4));
    // Before the buffer size: changing it reallocates the buffer. Kernels
    // before 6.8 have no such file and keep their 4 KiB sub-buffers.
    if let Err(e) = instance.set_subbuf_size_kb(subbuf_kb) {
        if args.subbuf_size.is_some() {
            return Err(e).context("cannot set the sub-buffer size");
        }
    }
    instance.set_buffer_size_kb(kb)?;
    // Sleep until a CPU buffer is a quarter full: the reader then moves
    // many sub-buffers per wake-up instead of one page per event, and still
    // has three quarters of the buffer to spare if it is scheduled late.
    // Waking at half full costs 5-10% less CPU with one busy CPU (each
    // wake-up ends by copying out the page the kernel is writing, event by
    // event), but on this loaded 2-core machine it lost events in runs where
    // a quarter did not.
    instance.set_buffer_percent(25)?;

    let formats: Vec<EventFormat> = selected
        .iter()
        .map(|(system, name)| instance.event_format(system, name))
        .collect::<Result<_, _>>()?;
    let syscall_formats = if selected.iter().any(|(s, _)| s == "raw_syscalls") {
        syscall_argument_formats(&instance, &available)
    } else {
        Vec::new()
    };
    let clock = trace_clock(&args.clock)?;
    let host = crate::host::probe();

    let mut writer = TraceWriter::create(
        &args.output,
        &host,
        &clock.desc,
        &formats,
        &syscall_formats,
        StoreOptions {
            start_ts: Some(clock.now()),
            ..StoreOptions::default()
        },
    )?;
    if !args.no_statedump {
        writer.statedump_from_proc(clock.now())?;
    }
    for (system, name) in &selected {
        instance.enable_event(system, name)?;
    }
    let cpus = instance.online_cpus()?;
    let mut readers = CpuReaders::open(&instance, &cpus)?;
    let layout = *readers.layout();
    let mut losses = LossTracker::new(host.cpu_count);
    let mut status = StatusLine::new(!args.quiet, writer.live_stats());
    instance.set_tracing_on(true)?;
    let started = Instant::now();
    eprintln!(
        "strata: recording {} events on {} CPUs into {} (Ctrl-C to stop)",
        selected.len(),
        cpus.len(),
        args.output.display()
    );

    let mut failure: Option<anyhow::Error> = None;
    while !stop.load(Ordering::Relaxed) && args.duration.is_none_or(|d| started.elapsed() < d) {
        let wait = args
            .duration
            .map_or(POLL_INTERVAL, |d| d.saturating_sub(started.elapsed()))
            .min(POLL_INTERVAL);
        let mut sink = |cpu: u32, page: &[u8]| {
            store_page(&mut writer, &instance, &layout, &mut losses, cpu, page)
        };
        if let Err(e) = readers.pump(wait, &mut sink) {
            failure = Some(e.into());
            break;
        }
        status.tick();
    }
    instance.set_tracing_on(false)?;
    if failure.is_none() {
        let mut sink = |cpu: u32, page: &[u8]| {
            store_page(&mut writer, &instance, &layout, &mut losses, cpu, page)
        };
        if let Err(e) = readers.drain(&mut sink) {
            failure = Some(e.into());
        }
    }
    status.clear();
    // Losses the pages did not report (the kernel's stats are the truth).
    for &cpu in &cpus {
        if let Ok(stats) = instance.cpu_stats(cpu) {
            if let Some(n) = losses.settle(cpu, stats.lost()) {
                if let Err(e) = writer.note_lost(cpu, n) {
                    failure.get_or_insert(e.into());
                }
            }
        }
    }
    drop(readers);
    drop(instance);
    let finished = writer.finish();
    let elapsed = started.elapsed();
    match (failure, finished) {
        (None, Ok(stats)) => {
            status::print_summary(&args.output, elapsed, &stats, &losses);
            Ok(ExitCode::SUCCESS)
        }
        (Some(e), Ok(stats)) => {
            status::print_summary(&args.output, elapsed, &stats, &losses);
            Err(e.context("recording stopped early; the events written so far form a valid trace"))
        }
        (first, Err(e)) => Err(first.unwrap_or_else(|| e.into())),
    }
}

/// Decodes one raw page of `cpu` and appends its records to the trace.
fn store_page(
    writer: &mut TraceWriter,
    instance: &Instance,
    layout: &PageLayout,
    losses: &mut LossTracker,
    cpu: u32,
    bytes: &[u8],
) -> Result<(), StoreError> {
    let page = match Page::parse(layout, bytes) {
        Ok(page) => page,
        Err(e) => {
            losses.corrupt_page(cpu, &e);
            return Ok(());
        }
    };
    let lost = match page.missed() {
        Missed::None => None,
        Missed::Count(n) => Some(losses.counted(cpu, n)),
        // The page only says that events were lost: the kernel's per-CPU
        // counters say how many.
        Missed::Unknown => losses.uncounted(cpu, instance.cpu_stats(cpu).ok().map(|s| s.lost())),
    };
    if let Some(n) = lost.filter(|&n| n > 0) {
        writer.note_lost(cpu, n)?;
    }
    if let Some(e) = writer.push_page(cpu, &page)? {
        losses.corrupt_page(cpu, &e);
    }
    Ok(())
}

/// The sub-buffer size when none is asked for, in KiB. Each read of
/// `trace_pipe_raw` moves one sub-buffer and is itself a traced system call,
/// 64 KiB ones instead of the kernel's 4 KiB cut the recorder's CPU per
/// event by about a third (the `record_overhead` bench). A buffer keeps at
/// least 16 of them, so an overrun still loses only a small part of it.
fn default_subbuf_kb(buffer_kb: u64) -> u64 {
    let cap = (buffer_kb / 16).max(4);
    let mut kb = 64;
    while kb > 4 && kb > cap {
        kb /= 2;
    }
    kb
}

/// Refuses an output path that exists and is not an empty directory, before
/// touching the kernel.
fn check_output_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "output directory {} is not empty; choose a new directory or empty this one",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot use output directory {}", dir.display())),
    }
}

/// The `syscalls:sys_enter_*` formats, which name each system call's
/// arguments. Missing or unreadable ones only cost the argument names.
fn syscall_argument_formats(
    instance: &Instance,
    available: &[(String, String)],
) -> Vec<EventFormat> {
    available
        .iter()
        .filter(|(s, n)| s == "syscalls" && n.starts_with("sys_enter_"))
        .filter_map(|(s, n)| instance.event_format(s, n).ok())
        .collect()
}

/// A trace clock, how CTF names it, and how to read it now.
struct TraceClock {
    desc: ClockDesc,
    offset_ns: i64,
}

impl TraceClock {
    /// The clock's current value, derived from the realtime clock and the
    /// measured offset so that it works for every nanosecond clock.
    fn now(&self) -> u64 {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        unix.saturating_sub(self.offset_ns).max(0) as u64
    }
}

fn trace_clock(name: &str) -> anyhow::Result<TraceClock> {
    let offset_ns = clock_offset_to_realtime(name)
        .with_context(|| format!("cannot relate trace clock '{name}' to wall-clock time"))?;
    // LTTng calls its kernel clock `monotonic`; analyses look for that name.
    let (ctf_name, about) = match name {
        "mono" => ("monotonic", "Monotonic Clock"),
        "boot" => ("boottime", "Boot-time Clock"),
        other => (other, "ftrace trace clock"),
    };
    Ok(TraceClock {
        desc: ClockDesc::nanoseconds(ctf_name, about, offset_ns),
        offset_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::default_subbuf_kb;

    #[test]
    fn default_subbuffers_are_64k_and_at_most_a_sixteenth_of_the_buffer() {
        assert_eq!(default_subbuf_kb(8192), 64);
        assert_eq!(default_subbuf_kb(1024), 64);
        assert_eq!(default_subbuf_kb(512), 32);
        assert_eq!(default_subbuf_kb(100), 4);
        assert_eq!(default_subbuf_kb(4), 4);
    }
}
