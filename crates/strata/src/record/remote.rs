//! `strata record --remote ssh://...`: runs `strata agent --stdio` on the
//! remote host through the local ssh client, and feeds the pipe to the
//! relay's ingest in this process, which stores the trace as CTF here.
//! Nothing listens on either host: ssh carries the agent protocol.

use super::RecordArgs;
use anyhow::{bail, Context};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_relay::analysis::LiveConfig;
use strata_relay::ingest::conn::serve_stream;
use strata_relay::ingest::{IngestConfig, StoreConfig};
use strata_relay::registry::{lock, Registry};
use strata_relay::tokens::Tokens;
use tokio::io::AsyncBufReadExt;

/// The session the remote trace is filed under, in the output directory.
const SESSION: &str = "remote";
/// The stderr bytes of ssh kept for the error message.
const STDERR_TAIL: usize = 4096;

/// Where to connect, from `ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The login, when given.
    pub user: Option<String>,
    /// The host name or address.
    pub host: String,
    /// The port, when given.
    pub port: Option<u16>,
}

fn plain_word(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Parses `ssh://[user@]host[:port]` (`[v6]` for IPv6 addresses). Names
/// that could pass for ssh options are refused.
pub fn parse_ssh_url(url: &str) -> anyhow::Result<SshTarget> {
    let Some(rest) = url.strip_prefix("ssh://") else {
        bail!("--remote takes ssh://[user@]host[:port], not {url:?}");
    };
    let rest = rest.trim_end_matches('/');
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h),
        None => (None, rest),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .with_context(|| format!("unclosed [ in {url:?}"))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .with_context(|| format!("bad port {p:?} in {url:?}"))
        })
        .transpose()?;
    let host_ok = plain_word(&host)
        || (host.contains(':')
            && host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'));
    if !host_ok {
        bail!("bad host {host:?} in {url:?}");
    }
    if let Some(u) = &user {
        if !plain_word(u) {
            bail!("bad user name {u:?} in {url:?}");
        }
    }
    Ok(SshTarget { user, host, port })
}

/// Quotes `s` for the remote POSIX shell ssh hands the command to.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The host id the trace is filed under: the host name, with any byte the
/// relay does not accept in a name replaced.
fn host_id(t: &SshTarget) -> String {
    t.host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The `ssh` arguments, remote command included.
fn ssh_args(args: &RecordArgs, t: &SshTarget, id: &str) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-T".into(),
        "-e".into(),
        "none".into(),
        "-o".into(),
        "BatchMode=yes".into(),
    ];
    if let Some(p) = t.port {
        a.extend(["-p".into(), p.to_string()]);
    }
    if let Some(i) = &args.identity {
        a.extend([
            "-i".into(),
            i.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
        ]);
    }
    for o in &args.ssh_option {
        a.extend(["-o".into(), o.clone()]);
    }
    a.push(match &t.user {
        Some(u) => format!("{u}@{}", t.host),
        None => t.host.clone(),
    });
    a.push("--".into());
    let mut remote = vec![
        args.remote_strata.clone(),
        "agent".into(),
        "--stdio".into(),
        "--quiet".into(),
        "--host-id".into(),
        id.to_string(),
        "--session".into(),
        SESSION.into(),
        "--buffer-size".into(),
        args.buffer_size.to_string(),
        "--clock".into(),
        args.clock.clone(),
    ];
    if !args.events.is_empty() {
        remote.push("--events".into());
        remote.push(args.events.join(","));
    }
    if let Some(d) = args.duration {
        remote.push("--duration".into());
        remote.push(format!("{}ms", d.as_millis().max(1)));
    }
    if args.no_statedump {
        remote.push("--no-statedump".into());
    }
    a.push(
        remote
            .iter()
            .map(|s| shell_quote(s))
            .collect::<Vec<_>>()
            .join(" "),
    );
    a
}

/// Runs `strata record --remote`.
pub fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let url = args.remote.clone().unwrap_or_default();
    let target = parse_ssh_url(&url)?;
    super::check_output_dir(&args.output)?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let id = host_id(&target);
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the Ctrl-C/SIGTERM handler")?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let registry = Arc::new(Registry::new());
    let tail = Arc::new(Mutex::new(String::new()));
    let (status, ended) = rt.block_on(async {
        let mut child = tokio::process::Command::new("ssh")
            .args(ssh_args(&args, &target, &id))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context(
                "cannot run ssh: is the OpenSSH client installed (apt-get install openssh-client)?",
            )?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            bail!("ssh started without its pipes");
        };
        let quiet = args.quiet;
        let tail2 = Arc::clone(&tail);
        let stderr_task = tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if !quiet {
                    eprintln!("remote: {l}");
                }
                let mut t = lock(&tail2);
                t.push_str(&l);
                t.push('\n');
                if t.len() > STDERR_TAIL {
                    let cut = t.len() - STDERR_TAIL;
                    let cut = (cut..t.len()).find(|&i| t.is_char_boundary(i)).unwrap_or(0);
                    t.drain(..cut);
                }
            }
        });
        let store = Arc::new(StoreConfig {
            data: args.output.clone(),
            sync: false,
            live: LiveConfig::default(),
            live_timer_us: 100_000,
        });
        let tokens = Tokens::parse("* stdio", "the built-in ssh token")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut cfg = IngestConfig::new(store, tokens, None);
        // ssh's connection and login, then the remote set-up, come first.
        cfg.handshake_timeout = Duration::from_secs(60);
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let peer = format!("ssh {url}");
        let serve = serve_stream(
            tokio::io::join(stdout, stdin),
            &peer,
            Arc::new(cfg),
            Arc::clone(&registry),
            rx,
        );
        tokio::pin!(serve);
        let pid = child.id();
        let mut interrupted = false;
        let ended = loop {
            tokio::select! {
                e = &mut serve => break e,
                _ = tokio::time::sleep(Duration::from_millis(100)), if !interrupted => {
                    if stop.load(Ordering::Relaxed) {
                        // Ending ssh closes the remote agent's stdin: it
                        // stops, and what arrived is committed here.
                        interrupted = true;
                        if let Some(p) = pid {
                            // SAFETY: kill has no memory preconditions; p is our child.
                            unsafe { libc::kill(p as i32, libc::SIGTERM) };
                        }
                    }
                }
            }
        };
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        let status = match status {
            Ok(Ok(s)) => s.code(),
            _ => {
                let _ = child.kill().await;
                None
            }
        };
        // ssh's last words (why it failed) are read before they are shown.
        let _ = tokio::time::timeout(Duration::from_secs(2), stderr_task).await;
        Ok::<_, anyhow::Error>((status, ended))
    })?;
    let entry = registry.find(&id, Some(SESSION)).into_iter().next();
    let st = entry.map(|e| lock(&e.status).clone());
    match st {
        Some(s) if !s.trace_dir.is_empty() => {
            if !args.quiet {
                eprintln!(
                    "strata: recorded {} events from {url} into {}",
                    s.events, s.trace_dir
                );
            }
            println!("{}", s.trace_dir);
            if ended.0 == "goodbye" {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "strata: the remote agent did not finish cleanly: {}",
                    ended.1
                );
                Ok(ExitCode::FAILURE)
            }
        }
        _ => {
            let tail = lock(&tail).trim().to_string();
            let hint = if tail.contains("Permission denied") {
                "the remote host refused the login: check --identity (the key) and that the remote user's authorized_keys holds its public key"
            } else if tail.contains("not found") || status == Some(127) {
                "the remote host has no strata command there: install it or give --remote-strata PATH"
            } else if tail.contains("Could not resolve") || tail.contains("Connection refused") {
                "check the host name and port of --remote"
            } else {
                "see ssh's message above"
            };
            bail!(
                "recording through ssh {url} failed (ssh exit status {}): {}; {hint}. ssh said: {}",
                status.map_or("none".to_string(), |c| c.to_string()),
                ended.1,
                if tail.is_empty() { "nothing" } else { &tail }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_ssh_url("ssh://root@db3:2222").unwrap();
        assert_eq!(t.user.as_deref(), Some("root"));
        assert_eq!(t.host, "db3");
        assert_eq!(t.port, Some(2222));
        let t = parse_ssh_url("ssh://[::1]:22").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(host_id(&t), "--1");
        assert!(parse_ssh_url("ssh://-oProxyCommand=x").is_err());
        assert!(parse_ssh_url("db3").is_err());
        assert!(parse_ssh_url("ssh://a b@h").is_err());
        assert!(parse_ssh_url("ssh://h:99999").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
