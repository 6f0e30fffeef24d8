//! `strata ctl`: a client of the relay's control API (`docs/control.md`):
//! hosts, sessions, event changes, snapshots and rules. Every command needs
//! the relay's API token; the relay checks it on the requests that change
//! anything.

use crate::units::parse_duration;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Bodies larger than this are refused.
const MAX_BODY: u64 = 16 << 20;
/// The longest API token accepted from a file.
const MAX_TOKEN: usize = 4096;

/// Arguments of `strata ctl`.
#[derive(clap::Args)]
pub struct CtlArgs {
    /// The relay's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    relay: String,

    /// File holding the relay's API token (its --api-token-file).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// Print the relay's JSON answer instead of a summary.
    #[arg(long)]
    json: bool,

    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(clap::Subcommand)]
enum CtlCommand {
    /// The hosts the relay knows and their connection state.
    Hosts,
    /// The sessions (snapshots included) and their hosts' trace directories.
    Sessions,
    /// Turn event groups or events on (or off) on one host, for a while.
    Events {
        /// The host id.
        #[arg(long)]
        host: String,
        /// The session, when the host is connected in several.
        #[arg(long)]
        session: Option<String>,
        /// Groups or events to add, as `--events` takes them.
        #[arg(
            long,
            value_delimiter = ',',
            conflicts_with = "disable",
            required_unless_present = "disable"
        )]
        enable: Vec<String>,
        /// Groups or events to remove.
        #[arg(long, value_delimiter = ',')]
        disable: Vec<String>,
        /// Revert after this long (default: keep until changed).
        #[arg(long = "for", value_parser = parse_duration, value_name = "DURATION")]
        duration: Option<Duration>,
    },
    /// Take a snapshot from flight-mode agents and print where it is stored.
    Snapshot {
        /// Hosts to include (repeat or comma-separate; default: every
        /// connected host).
        #[arg(long, value_delimiter = ',')]
        host: Vec<String>,
        /// History before now.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        before: Duration,
        /// Time after now to include (the command waits this long).
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        after: Duration,
    },
    /// The relay's rules.
    Rules {
        #[command(subcommand)]
        what: RulesCommand,
    },
}

#[derive(clap::Subcommand)]
enum RulesCommand {
    /// List the loaded rules and their state.
    List,
    /// Reload the rule file.
    Reload,
}

/// Reads an API token file: its first line that is neither empty nor a
/// `#` comment.
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the API token file {}", path.display()))?;
    let token = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default();
    if token.is_empty() {
        bail!(
            "the API token file {} holds no token; put one secret word on a line",
            path.display()
        );
    }
    if token.len() > MAX_TOKEN || token.chars().any(char::is_whitespace) {
        bail!(
            "the API token in {} must be one word of at most {MAX_TOKEN} bytes",
            path.display()
        );
    }
    Ok(token.to_string())
}

struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Api {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let resp = match body {
            None => self.agent.get(&url).header("Authorization", &auth).call(),
            Some(b) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(b.to_string()),
        };
        let mut resp = resp.with_context(|| format!("cannot reach the relay at {url}"))?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .with_context(|| format!("reading the answer of {method} {url}"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        if !status.is_success() {
            let why = value
                .get("error")
                .and_then(Value::as_str)
                .map_or(text.clone(), str::to_string);
            bail!("{method} {url}: {status}: {why}");
        }
        Ok(value)
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Runs `strata ctl`.
pub fn run(args: CtlArgs) -> anyhow::Result<ExitCode> {
    let Some(token_file) = &args.token_file else {
        bail!(
            "strata ctl needs the relay's API token: give --token-file FILE (the file the relay \
             was started with as --api-token-file)"
        );
    };
    let token = read_token(token_file)?;
    let base = if args.relay.contains("://") {
        args.relay.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", args.relay)
    };
    // A snapshot waits for its `after` window and the upload.
    let timeout = match &args.command {
        CtlCommand::Snapshot { after, .. } => *after + Duration::from_secs(90),
        _ => Duration::from_secs(30),
    };
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build();
    let api = Api {
        base,
        token,
        agent: config.into(),
    };
    let doc = match &args.command {
        CtlCommand::Hosts => api.call("GET", "/api/hosts", None)?,
        CtlCommand::Sessions => api.call("GET", "/api/sessions", None)?,
        CtlCommand::Events {
            host,
            session,
            enable,
            disable,
            duration,
        } => api.call(
            "POST",
            "/api/control/events",
            Some(json!({
                "host": host,
                "session": session,
                "enable": enable,
                "disable": disable,
                "for_ms": duration.map(|d| d.as_millis() as u64),
            })),
        )?,
        CtlCommand::Snapshot {
            host,
            before,
            after,
        } => api.call(
            "POST",
            "/api/control/snapshot",
            Some(json!({
                "hosts": host,
                "before_ms": before.as_millis() as u64,
                "after_ms": after.as_millis() as u64,
            })),
        )?,
        CtlCommand::Rules { what } => match what {
            RulesCommand::List => api.call("GET", "/api/rules", None)?,
            RulesCommand::Reload => api.call("POST", "/api/rules/reload", Some(json!({})))?,
        },
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut ok = true;
    match &args.command {
        CtlCommand::Hosts => {
            println!(
                "{:<24} {:<20} {:<13} {:>12}",
                "HOST", "SESSION", "STATE", "EVENTS"
            );
            for h in doc
                .get("hosts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!(
                    "{:<24} {:<20} {:<13} {:>12}",
                    str_of(h, "host"),
                    str_of(h, "session"),
                    str_of(h, "state"),
                    h.get("events").and_then(Value::as_u64).unwrap_or(0)
                );
            }
        }
        CtlCommand::Sessions => {
            for s in doc
                .get("sessions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let snap = s.get("snapshot").and_then(Value::as_bool).unwrap_or(false);
                println!(
                    "{}{}",
                    str_of(s, "session"),
                    if snap { " (snapshot)" } else { "" }
                );
                for h in s
                    .get("hosts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    println!(
                        "  {:<24} {:<13} {}",
                        str_of(h, "host"),
                        str_of(h, "state"),
                        str_of(h, "trace_dir")
                    );
                }
            }
        }
        CtlCommand::Events { .. } => {
            println!(
                "{} ({}): {}",
                str_of(&doc, "host"),
                str_of(&doc, "session"),
                str_of(&doc, "message")
            );
            if let Some(until) = doc.get("until_ms").and_then(Value::as_i64) {
                let left = until - unix_ms();
                println!("reverts in {:.1} s", left.max(0) as f64 / 1000.0);
            }
        }
        CtlCommand::Snapshot { .. } => {
            eprintln!("snapshot {}", str_of(&doc, "id"));
            for h in doc
                .get("hosts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match h.get("path").and_then(Value::as_str) {
                    Some(p) if h.get("ok").and_then(Value::as_bool) == Some(true) => {
                        println!("{p}")
                    }
                    _ => {
                        ok = false;
                        eprintln!(
                            "strata ctl: host {}: {}",
                            str_of(h, "host"),
                            str_of(h, "message")
                        );
                    }
                }
            }
        }
        CtlCommand::Rules { .. } => println!("{}", serde_json::to_string_pretty(&doc)?),
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
