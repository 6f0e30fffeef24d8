//! `strata analyze`: CPU, syscall, scheduling, IRQ, I/O and memory reports
//! over CTF kernel traces (LTTng's or Strata's), as aligned tables or JSON.

pub(crate) mod table;
mod text;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;
use strata_analysis::analysis::{Analyzer, HostReport, Options, Period, Selection};
use strata_analysis::filter::Filter;
use strata_analysis::timespec::{self, TimeSpec};
use strata_ctf::read::{OpenOptions, SkipStats, TraceSet};

/// Version of the `--json` document layout (docs/analyses.md).
pub const JSON_SCHEMA: &str = "strata-analyze/1";

/// Arguments of `strata analyze`.
#[derive(clap::Args)]
#[command(
    after_help = "Times are UTC. --begin/--end take HH:MM:SS[.fraction] (on the date of \
the trace's first event), YYYY-MM-DD HH:MM:SS[.fraction], or nanoseconds since the epoch; e.g. \
--begin 17:46:22.9 --end 17:46:23.1 on tc-many-threads. The period runs from the first event at \
or after --begin to the last event at or before --end; the state (threads, CPUs) is still built \
from every earlier event."
)]
pub struct AnalyzeArgs {
    /// Reports, comma-separated: cputop, syscalls, sched, irq, io, mem,
    /// summary, or all.
    #[arg(value_name = "REPORTS", value_delimiter = ',', required = true)]
    reports: Vec<String>,

    /// A trace directory (holding `metadata`), or a directory of traces.
    #[arg(value_name = "TRACE")]
    trace: PathBuf,

    /// Print one JSON document (schema strata-analyze/1) instead of tables.
    #[arg(long)]
    json: bool,

    /// Start of the analysed period (UTC; see below).
    #[arg(long, value_name = "TIME")]
    begin: Option<String>,

    /// End of the analysed period (UTC; see below).
    #[arg(long, value_name = "TIME")]
    end: Option<String>,

    /// Only these thread ids, comma-separated.
    #[arg(long, value_name = "TID,..", value_delimiter = ',')]
    tid: Vec<i32>,

    /// Only threads with this name, or whose process has it, comma-separated.
    #[arg(long = "proc", value_name = "NAME,..", value_delimiter = ',')]
    procs: Vec<String>,

    /// Only these CPUs, comma-separated.
    #[arg(long, value_name = "CPU,..", value_delimiter = ',')]
    cpu: Vec<u32>,

    /// Rows per table; 0 shows every row.
    #[arg(long, default_value_t = 10, value_name = "N")]
    top: usize,

    /// Skip damaged packets instead of stopping at the first one.
    #[arg(long)]
    skip_corrupt: bool,
}

fn selection(reports: &[String]) -> anyhow::Result<(Selection, Vec<&'static str>)> {
    const NAMES: [&str; 7] = ["cputop", "syscalls", "sched", "irq", "io", "mem", "summary"];
    let mut s = Selection::default();
    for r in reports {
        match r.trim() {
            "cputop" => s.cputop = true,
            "syscalls" => s.syscalls = true,
            "sched" => s.sched = true,
            "irq" => s.irq = true,
            "io" => s.io = true,
            "mem" => s.mem = true,
            "summary" => s.summary = true,
            "all" => s = Selection::all(),
            other => bail!(
                "unknown report `{other}`: choose among {}, or all",
                NAMES.join(", ")
            ),
        }
    }
    let on = [s.cputop, s.syscalls, s.sched, s.irq, s.io, s.mem, s.summary];
    let names = NAMES
        .iter()
        .zip(on)
        .filter(|(_, b)| *b)
        .map(|(n, _)| *n)
        .collect();
    Ok((s, names))
}

/// The time of the first event of the set, for time-of-day arguments.
fn first_event(set: &TraceSet) -> anyhow::Result<Option<i64>> {
    let mut events = set.events();
    match events.next() {
        Some(Ok(e)) => Ok(Some(e.ts())),
        Some(Err(e)) => bail!("{e}"),
        None => Ok(None),
    }
}

fn time_arg(name: &str, text: &Option<String>, start: Option<i64>) -> anyhow::Result<Option<i64>> {
    let Some(text) = text else { return Ok(None) };
    let spec = timespec::parse(text).with_context(|| format!("bad --{name}"))?;
    match (spec, start) {
        (TimeSpec::Absolute(ns), _) => Ok(Some(ns)),
        (spec, Some(s)) => Ok(Some(spec.resolve(s))),
        (_, None) => {
            bail!("--{name} {text}: the trace has no event to take a date from; give a full date")
        }
    }
}

#[derive(Serialize)]
struct JsonFilters<'a> {
    begin_ns: Option<i64>,
    end_ns: Option<i64>,
    tids: &'a [i32],
    procs: &'a [String],
    cpus: &'a [u32],
}

#[derive(Serialize)]
struct JsonSkipped {
    packets: u64,
    bytes: u64,
    streams: u64,
}

#[derive(Serialize)]
struct JsonDoc<'a> {
    schema: &'static str,
    trace: String,
    reports: &'a [&'static str],
    filters: JsonFilters<'a>,
    period: Option<Period>,
    hosts: &'a [HostReport],
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<JsonSkipped>,
}

/// A progress bar on stderr, shown only when stderr is a terminal and the
/// run has taken more than a second.
struct Progress {
    start: Instant,
    total: u64,
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            start: Instant::now(),
            total,
            bar: None,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        if self.bar.is_none() && self.start.elapsed() > Duration::from_secs(1) {
            let b = indicatif::ProgressBar::new(self.total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} analysing {bytes}/{total_bytes} [{bar:30}] {percent}% ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            self.bar = Some(b);
        }
        if let Some(b) = &self.bar {
            b.set_position(done.min(self.total));
        }
    }

    fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

/// Runs `strata analyze`.
pub fn run(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let (sel, names) = selection(&args.reports)?;
    let opts = OpenOptions {
        skip_corrupt: args.skip_corrupt,
    };
    // The reader's messages name the file (and byte offset); its error
    // chain would repeat them, so only its text is kept.
    let set = TraceSet::open(&args.trace, &opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Opening leaves event classes' types until their first event; the
    // summary, a whole-trace overview, also checks the unused ones.
    if sel.summary {
        if let Err(e) = set.check_metadata() {
            eprintln!("warning: {e} (an event class this trace may never use)");
        }
    }
    let start = if args.begin.is_some() || args.end.is_some() {
        first_event(&set)?
    } else {
        None
    };
    let begin = time_arg("begin", &args.begin, start)?;
    let end = time_arg("end", &args.end, start)?;
    if let (Some(b), Some(e)) = (begin, end) {
        if e < b {
            bail!(
                "--end {} is before --begin {}",
                timespec::format_datetime(e),
                timespec::format_datetime(b)
            );
        }
    }
    if let (Some(e), Some(s)) = (end, start) {
        if e < s {
            bail!(
                "--end {} is before the trace's first event at {}",
                timespec::format_datetime(e),
                timespec::format_datetime(s)
            );
        }
    }
    let filter = Filter {
        tids: args.tid.clone(),
        procs: args.procs.clone(),
        cpus: args.cpu.clone(),
    };
    let options = Options {
        selection: sel,
        begin,
        end,
        filter,
        top: args.top,
    };
    let mut analyzer = Analyzer::new(&set, options);
    let mut progress = Progress::new(set.total_bytes());
    let skipped = analyzer.run(&set, |done| progress.update(done));
    progress.finish();
    let skipped = skipped.map_err(|e| {
        anyhow::anyhow!(
            "{e}\n(the trace is damaged there; --skip-corrupt skips such packets and reports how much was skipped)"
        )
    })?;
    if !skipped.is_empty() {
        warn_skipped(&skipped);
    }
    for u in analyzer.binder().unbound() {
        eprintln!(
            "strata: warning: events `{}` are ignored: they have no `{}` field",
            u.class, u.missing
        );
    }
    let report = analyzer.finish();
    let trace = args.trace.display().to_string();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let doc = JsonDoc {
            schema: JSON_SCHEMA,
            trace,
            reports: &names,
            filters: JsonFilters {
                begin_ns: begin,
                end_ns: end,
                tids: &args.tid,
                procs: &args.procs,
                cpus: &args.cpu,
            },
            period: report.period,
            hosts: &report.hosts,
            skipped: (!skipped.is_empty()).then_some(JsonSkipped {
                packets: skipped.packets,
                bytes: skipped.bytes,
                streams: skipped.streams,
            }),
        };
        serde_json::to_writer_pretty(&mut out, &doc).context("cannot write the JSON report")?;
        let _ = writeln!(out);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(period) = &report.period else {
        let _ = writeln!(out, "No event in the requested period.");
        return Ok(ExitCode::SUCCESS);
    };
    let ctx = text::Context {
        trace: &trace,
        period,
        top: args.top,
    };
    let mut s = String::new();
    for h in &report.hosts {
        text::header(&mut s, &ctx, h);
        if let Some(r) = &h.summary {
            text::summary(&mut s, &ctx, r);
        }
        if let Some(r) = &h.cputop {
            text::cputop(&mut s, &ctx, r);
        }
        if let Some(r) = &h.syscalls {
            text::syscalls(&mut s, &ctx, r);
        }
        if let Some(r) = &h.sched {
            text::sched(&mut s, &ctx, r);
        }
        if let Some(r) = &h.irq {
            text::irq(&mut s, r);
        }
        if let Some(r) = &h.io {
            text::io(&mut s, &ctx, r);
        }
        if let Some(r) = &h.mem {
            text::mem(&mut s, &ctx, r);
        }
    }
    if out.write_all(s.as_bytes()).is_err() {
        // A closed pipe (`| head`) is not an error worth reporting.
        return Ok(ExitCode::SUCCESS);
    }
    Ok(ExitCode::SUCCESS)
}

fn warn_skipped(s: &SkipStats) {
    eprintln!(
        "strata: warning: skipped {} damaged packets ({} bytes) in {} streams; the figures leave them out",
        s.packets, s.bytes, s.streams
    );
}
