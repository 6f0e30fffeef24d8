//! `strata agent`: stream this host's kernel trace (or a recorded trace,
//! with `--replay`) to a relay. The work is done by the `strata-agent`
//! library; this module turns the command line into its configuration.

pub(crate) mod vm_hints;

use crate::units::{parse_duration, parse_size};
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_agent::{AgentConfig, LiveOptions, ReplayOptions, Security, SourceConfig};
use strata_wire::Compression;

/// Arguments of `strata agent`.
#[derive(clap::Args)]
pub struct AgentArgs {
    /// The relay to stream to, `HOST:PORT`.
    #[arg(long, value_name = "HOST:PORT", required_unless_present = "stdio")]
    relay: Option<String>,

    /// Speak the agent protocol on stdin/stdout instead of a network
    /// connection (`strata record --remote ssh://...` runs this over ssh).
    #[arg(long, conflicts_with_all = ["relay", "ca", "cert", "spool_dir"])]
    stdio: bool,

    /// File holding this agent's token (the relay's token file maps host
    /// ids to tokens).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// Plaintext TCP instead of TLS (the relay must be started with
    /// --insecure too).
    #[arg(long)]
    insecure: bool,

    /// PEM certificate (or CA) to trust for the relay's TLS certificate.
    #[arg(long, value_name = "CERT")]
    ca: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS; needs --key.
    #[arg(long, value_name = "C", requires = "key")]
    cert: Option<PathBuf>,

    /// Private key (PEM) of --cert.
    #[arg(long, value_name = "K", requires = "cert")]
    key: Option<PathBuf>,

    /// Name to check the relay's certificate against (default: the host
    /// part of --relay).
    #[arg(long, value_name = "NAME")]
    tls_name: Option<String>,

    /// Events to trace, as `strata record --events` takes them.
    /// Default: sched,syscalls,irq.
    #[arg(short, long, value_delimiter = ',', value_name = "LIST")]
    events: Vec<String>,

    /// Kernel ring-buffer size per CPU.
    #[arg(long, default_value = "8M", value_parser = parse_size)]
    buffer_size: u64,

    /// Kernel ring-buffer sub-buffer size, the unit one read moves.
    /// Default: 64K, or 1/16 of the buffer size if that is smaller.
    #[arg(long, value_parser = parse_size)]
    subbuf_size: Option<u64>,

    /// The tracefs trace clock.
    #[arg(long, default_value = "mono")]
    clock: String,

    /// The session name the relay files this stream under.
    #[arg(long, default_value = "strata")]
    session: String,

    /// The host id the relay files this stream under (default: the host name).
    #[arg(long, value_name = "NAME")]
    host_id: Option<String>,

    /// Directory for the on-disk spool used when the relay is unreachable.
    #[arg(long, value_name = "DIR")]
    spool_dir: Option<PathBuf>,

    /// Size limit of the spool; past it the oldest data is dropped and the
    /// exact loss is reported to the relay.
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    spool_max: u64,

    /// Unacknowledged data kept in memory before spilling to the spool.
    #[arg(long, default_value = "16M", value_parser = parse_size)]
    memory_max: u64,

    /// Frame compression: none, lz4 or zstd.
    #[arg(long, default_value = "lz4")]
    compress: Compression,

    /// Longest time a read page waits before it is sent. Default: 100ms;
    /// 20ms for the light live feed of `--mode flight`, which rules wait
    /// for (see docs/control.md).
    #[arg(long, value_parser = parse_duration)]
    flush_interval: Option<Duration>,

    /// Count the events in the pages sent, for an exact total in the final
    /// summary (walks every record header: a few percent more CPU).
    #[arg(long)]
    count_events: bool,

    /// Do not send the process state dump at the start.
    #[arg(long)]
    no_statedump: bool,

    /// Stream a recorded CTF trace instead of this host's kernel.
    #[arg(long, value_name = "TRACE")]
    replay: Option<PathBuf>,

    /// With --replay: events per second (0: as fast as the relay takes them).
    #[arg(long, default_value = "100000")]
    rate: f64,

    /// With --replay: play the trace this many times (0: until stopped).
    #[arg(long = "loop", default_value = "1", value_name = "N")]
    loops: u32,

    /// With --replay: keep the trace's own timestamps instead of moving its
    /// start to now.
    #[arg(long)]
    keep_time: bool,

    /// Stop after this long (default: until Ctrl-C or SIGTERM, or the end of
    /// a replay).
    #[arg(short, long, value_parser = parse_duration)]
    duration: Option<Duration>,

    /// When stopping: how long to go on waiting for the relay's last
    /// acknowledgement without any progress (the wait goes on while acks
    /// advance or the relay keeps reading).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    final_wait: Duration,

    /// No progress messages.
    #[arg(short, long)]
    quiet: bool,

    /// `live` streams everything; `flight` keeps a recent window in memory
    /// (kernel buffers in overwrite mode) and sends only the snapshots the
    /// relay asks for (`strata ctl snapshot`).
    #[arg(long, default_value = "live", value_parser = ["live", "flight"])]
    mode: String,

    /// Flight mode: how much recent history to keep.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    keep: Duration,

    /// Flight mode: the most page bytes kept in memory, all CPUs together.
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    flight_max: u64,

    /// Flight mode: send snapshots here instead of --relay (`host:port`,
    /// or a serial port such as a VM's `/dev/ttyS2`: each snapshot is a
    /// connection of its own, which a serial port held by the main
    /// connection cannot carry).
    #[arg(long, value_name = "ADDR")]
    snapshot_relay: Option<String>,

    /// Flight mode: events streamed live meanwhile (from a second tracefs
    /// instance), for the relay's analyses and rules; `none` streams
    /// nothing until a snapshot. Default: sched,syscalls. The relay adds
    /// what its rules need.
    #[arg(long, value_delimiter = ',', value_name = "LIST|none")]
    live_events: Vec<String>,

    /// This host is a VM with this UUID (as its hypervisor knows it, e.g.
    /// QEMU's `-uuid`); `auto` reads the DMI `product_uuid`. It goes into
    /// the trace's env as `vm_uuid`, which pairs the guest's trace with its
    /// VM in the host's trace.
    #[arg(long, value_name = "UUID|auto")]
    vm_uuid: Option<String>,

    /// Do not send VM hints (the QEMU processes' `-name`, `-uuid` and vCPU
    /// threads, read from /proc and debugfs every 2 s) that name VMs live
    /// in the relay.
    #[arg(long)]
    no_vm_hints: bool,
}

fn security(args: &AgentArgs) -> anyhow::Result<Security> {
    if args.insecure || args.stdio {
        if args.ca.is_some() || args.cert.is_some() {
            bail!("--insecure sends plaintext; drop it to use --ca/--cert, or drop those");
        }
        return Ok(Security::Plaintext);
    }
    let Some(ca) = args.ca.clone() else {
        bail!(
            "the connection to the relay is TLS: give --ca CERT (the relay's certificate or its CA), \
             or --insecure for plaintext on a trusted network"
        );
    };
    Ok(Security::Tls {
        ca,
        client: args.cert.clone().zip(args.key.clone()),
        server_name: args.tls_name.clone(),
    })
}

/// The feed's event specs from `--live-events` (`None` for `none`).
fn live_events(given: &[String]) -> Option<Vec<String>> {
    match given {
        [] => Some(
            strata_agent::feed::DEFAULT_FEED
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
        [one] if one == "none" => None,
        list => Some(list.to_vec()),
    }
}

/// `--events` as given, or what it defaults to.
fn events_shown(events: &[String]) -> String {
    if events.is_empty() {
        strata_ftrace::DEFAULT_SPECS.join(",")
    } else {
        events.join(",")
    }
}

/// Runs `strata agent`.
pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let security = security(&args)?;
    let token = match &args.token_file {
        Some(f) => {
            let t = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the token file {}", f.display()))?;
            let t = t.trim().to_string();
            if t.is_empty() {
                bail!("the token file {} is empty", f.display());
            }
            t
        }
        // Over --stdio the pipe is authenticated by ssh; the token only
        // has to match what `strata record --remote` expects.
        None if args.stdio => "stdio".to_string(),
        None => String::new(),
    };
    let mut host = crate::host::probe();
    if let Some(v) = &args.vm_uuid {
        host.vm_uuid = Some(crate::host::vm_uuid(v)?);
    }
    let relay = match &args.relay {
        Some(r) => r.clone(),
        None => {
            strata_agent::start_stdio_bridge().context("cannot bridge stdin/stdout for --stdio")?;
            strata_agent::STDIO_RELAY.to_string()
        }
    };
    let mut config = AgentConfig::new(&relay, host);
    config.security = security;
    config.token = token;
    config.session = args.session.clone();
    if let Some(id) = &args.host_id {
        config.host_id = id.clone();
    }
    config.memory_max = args.memory_max.min(usize::MAX as u64) as usize;
    config.spool = args.spool_dir.clone().map(|d| (d, args.spool_max));
    config.compression = args.compress;
    config.final_ack_wait = args.final_wait;
    config.quiet = args.quiet;
    config.snapshot_relay = args.snapshot_relay.clone();
    let flight = args.mode == "flight";
    if !flight && !args.live_events.is_empty() {
        bail!("--live-events is for --mode flight; in live mode --events is what streams");
    }
    if !flight && args.snapshot_relay.is_some() {
        bail!("--snapshot-relay is for --mode flight; only a flight recorder sends snapshots");
    }
    let source = match &args.replay {
        Some(trace) => SourceConfig::Replay(ReplayOptions {
            trace: trace.clone(),
            rate: args.rate.max(0.0),
            loops: args.loops,
            keep_time: args.keep_time,
            compression: args.compress,
            ..ReplayOptions::default()
        }),
        None => {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                bail!("strata agent controls the kernel's tracefs and needs root; run it with sudo (or use --replay)");
            }
            SourceConfig::Live(LiveOptions {
                events: args.events.clone(),
                buffer_size: args.buffer_size,
                subbuf_size: args.subbuf_size,
                clock: args.clock.clone(),
                statedump: !args.no_statedump,
                flush_interval: args.flush_interval.unwrap_or(if flight {
                    Duration::from_millis(20)
                } else {
                    Duration::from_millis(100)
                }),
                compression: args.compress,
                count_events: args.count_events,
                vm_hints: (!args.no_vm_hints).then_some(vm_hints::read as fn() -> _),
                flight: (args.mode == "flight").then_some(strata_agent::FlightOptions {
                    keep: args.keep,
                    max_bytes: args.flight_max.min(usize::MAX as u64) as usize,
                }),
                live_events: flight.then(|| live_events(&args.live_events)).flatten(),
                ..LiveOptions::default()
            })
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the Ctrl-C/SIGTERM handler")?;
    }
    if args.stdio {
        // The other end hung up (ssh ended): nobody is left to send to.
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !strata_agent::stdio_closed() {
                std::thread::sleep(Duration::from_millis(50));
            }
            stop.store(true, Ordering::SeqCst);
        });
    }
    if let Some(d) = args.duration {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let until = Instant::now() + d;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Ordering::SeqCst);
        });
    }
    if !args.quiet {
        eprintln!(
            "strata agent: streaming {} to {} as host '{}', session '{}' (Ctrl-C to stop)",
            match (&args.replay, flight) {
                (Some(t), _) => format!("replay of {}", t.display()),
                (None, true) => match live_events(&args.live_events) {
                    Some(feed) => format!(
                        "a live feed of {} (flight recorder keeping {:?} of {} for snapshots)",
                        feed.join(","),
                        args.keep,
                        events_shown(&args.events)
                    ),
                    None => format!(
                        "nothing until a snapshot (flight recorder keeping {:?} of {})",
                        args.keep,
                        events_shown(&args.events)
                    ),
                },
                (None, false) => "this host's kernel".to_string(),
            },
            relay,
            config.host_id,
            config.session
        );
    }
    let started = Instant::now();
    let report = strata_agent::run(config, source, stop)?;
    if !args.quiet {
        let o = &report.outbox;
        let s = &report.sender;
        eprintln!(
            "strata agent: {:.1} s; {} frames ({} bytes), {} sent ({} resent) over {} connections, acked up to seq {}",
            started.elapsed().as_secs_f64(),
            o.frames,
            o.bytes,
            s.frames_sent,
            s.frames_resent,
            s.sessions,
            o.acked
        );
        if let Some(l) = &report.live {
            eprintln!(
                "strata agent: {} pages ({} event bytes) from {} CPUs; the kernel counted {} events read and {} lost; {} state dump threads",
                l.pages,
                l.data_bytes,
                l.cpus.len(),
                l.kernel_read_events,
                l.kernel_lost,
                l.statedump_threads
            );
            if let Some(n) = l.events_sent {
                eprintln!("strata agent: {n} events sent");
            }
        }
        if let Some(r) = &report.replay {
            eprintln!(
                "strata agent: replayed {} packets, {} events, {} loops",
                r.packets, r.events, r.loops
            );
        }
        if o.dropped_frames > 0 {
            eprintln!(
                "strata agent: the spool overflowed: {} frames with {} events dropped (reported to the relay)",
                o.dropped_frames, o.dropped_events
            );
        }
    }
    let u = &report.unacked;
    if u.frames > 0 {
        // Said even with --quiet: this is data the relay may not have.
        eprintln!(
            "strata agent: error: the relay did not acknowledge {} events ({} pages or packets, {} frames, {} bytes) \
             and made no progress for {:?} (--final-wait); they may be missing from its trace",
            u.events, u.pages, u.frames, u.bytes, args.final_wait
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}
