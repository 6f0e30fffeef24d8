//! `strata relay`: collect traces from agents, store them as CTF, analyse
//! them live, and serve them (HTTP API, Prometheus, LTTng-live).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use strata_relay::analysis::LiveConfig;
use strata_relay::ingest::tls::server_config;
use strata_relay::relay::{run_until_signal, RelayConfig};
use strata_relay::tokens::Tokens;

use crate::units::{parse_duration, parse_size};

/// Arguments of `strata relay`.
#[derive(clap::Args)]
#[command(
    after_help = "TOKEN FILE: one `HOST TOKEN` pair a line (spaces or tabs between), \
`#` starts a comment line. HOST is the agent's --host-id (default its host name); \
`* TOKEN` admits any host name with that token. An agent whose token does not match \
its host is refused.\n\n\
DATA LAYOUT: DATA/<session>/<host>/kernel/ is each host's CTF trace (LTTng kernel \
layout, readable by babeltrace2 while written); DATA/<session>/<host>/relay-state.json \
is the checkpoint that lets a restarted relay resume without loss or duplicates."
)]
pub struct RelayArgs {
    /// Address agents connect to.
    #[arg(long, default_value = "0.0.0.0:7400")]
    listen: SocketAddr,

    /// Address of the HTTP API (/api/hosts, ...) and Prometheus /metrics.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,

    /// Data directory: one CTF trace per session and host.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,

    /// The relay's TLS certificate chain (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The relay's TLS private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Require client certificates signed by this CA (mutual TLS).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    client_ca: Option<PathBuf>,

    /// Which host may send with which token (format below).
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,

    /// File holding the bearer token of the control API (`strata ctl`);
    /// without it the control endpoints refuse every request.
    #[arg(long, value_name = "FILE")]
    api_token_file: Option<PathBuf>,

    /// Accept agents over plaintext TCP (no TLS). Tokens then cross the
    /// network in clear: only on trusted networks or loopback.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "client_ca"])]
    insecure: bool,

    /// Address of the LTTng-live server for babeltrace2 and Trace Compass.
    #[arg(long, default_value = "0.0.0.0:5344")]
    live: SocketAddr,

    /// Do not run the LTTng-live server.
    #[arg(long)]
    no_live: bool,

    /// fsync data and checkpoints before acknowledging them (survives a
    /// power loss, costs disk syncs).
    #[arg(long)]
    sync: bool,

    /// Sliding window of the live CPU usage and syscall rates.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    window: std::time::Duration,

    /// How long a VM whose QEMU process exited stays in the live VM view.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    vm_grace: std::time::Duration,

    /// How often stored data is committed, acknowledged and made visible
    /// to viewers.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    commit_interval: std::time::Duration,

    /// The largest frame body accepted (at most 16M).
    #[arg(long, default_value = "4M", value_parser = parse_size)]
    max_frame: u64,

    /// Rules over the live analyses, with their actions (docs/rules.md);
    /// reloaded when the file changes or on POST /api/rules/reload.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,

    /// A frame must arrive whole within this time of its first byte.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    frame_timeout: std::time::Duration,
}

/// Runs `strata relay`.
pub fn run(args: RelayArgs) -> anyhow::Result<ExitCode> {
    let tokens = Tokens::load(&args.token_file)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(server_config(c, k, args.client_ca.as_deref())?),
        _ if args.insecure => None,
        _ => bail!(
            "give --tls-cert and --tls-key, or --insecure to accept agents over plaintext TCP"
        ),
    };
    if args.max_frame > strata_wire::MAX_BODY as u64 {
        bail!(
            "--max-frame {} is above the protocol's limit of {} bytes",
            args.max_frame,
            strata_wire::MAX_BODY
        );
    }
    let mut cfg = RelayConfig::new(args.listen, args.http, args.data.clone(), tokens);
    cfg.tls = tls;
    cfg.live = (!args.no_live).then_some(args.live);
    cfg.sync = args.sync;
    cfg.analysis = LiveConfig {
        window_ns: args.window.as_nanos().clamp(1_000_000, i64::MAX as u128) as i64,
        vm_grace_ns: args.vm_grace.as_nanos().min(i64::MAX as u128) as i64,
        ..LiveConfig::default()
    };
    cfg.commit_interval = args
        .commit_interval
        .max(std::time::Duration::from_millis(1));
    cfg.max_body = args.max_frame as u32;
    cfg.rules = args.rules.clone();
    cfg.frame_timeout = args.frame_timeout;
    cfg.api_token = match &args.api_token_file {
        Some(f) => Some(crate::ctl::read_token(f)?),
        None => None,
    };
    run_until_signal(cfg)
        .with_context(|| format!("the relay failed (data in {})", args.data.display()))?;
    Ok(ExitCode::SUCCESS)
}
