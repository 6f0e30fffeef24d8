//! `strata top` with no relay: an agent and a relay in this process, on
//! loopback, so one command watches this host (DESIGN.md decision 1: the
//! same code as the split deployment, embedded).

use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;
use strata_agent::{AgentConfig, LiveOptions, SourceConfig};
use strata_relay::relay::{run, RelayConfig};
use strata_relay::tokens::Tokens;
use tokio::sync::watch;

/// A running agent and relay; dropping it stops both and removes the
/// scratch directory (the relay's CTF store).
pub struct Embedded {
    /// The relay's HTTP API.
    pub http: SocketAddr,
    dir: PathBuf,
    agent_stop: Arc<AtomicBool>,
    agent: Option<JoinHandle<()>>,
    relay_stop: watch::Sender<bool>,
    relay: Option<JoinHandle<()>>,
}

/// Starts a relay on loopback and an agent tracing this host into it.
pub fn start() -> anyhow::Result<Embedded> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "strata top without --relay traces this host and needs root; \
             run it with sudo, or give --relay HOST:PORT"
        );
    }
    let dir = std::env::temp_dir().join(format!("strata-top-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create scratch directory {}", dir.display()))?;
    let token = format!("{:016x}{:016x}", rand_u64(), rand_u64());
    let tokens = Tokens::parse(&format!("* {token}\n"), "embedded").context("token table")?;
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let cfg = RelayConfig::new(loopback, loopback, dir.join("data"), tokens);

    strata_relay::ingest::set_quiet(true);
    let (relay_stop, stop_rx) = watch::channel(false);
    let (bound_tx, bound_rx) = mpsc::channel();
    let relay = std::thread::Builder::new()
        .name("strata-relay".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = bound_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let tx = bound_tx.clone();
            if let Err(e) = rt.block_on(run(cfg, stop_rx, move |b| {
                let _ = tx.send(Ok(b));
            })) {
                let _ = bound_tx.send(Err(e.to_string()));
            }
        })
        .context("cannot start the relay thread")?;
    let bound = match bound_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => bail!("the embedded relay did not start: {e}"),
        Err(_) => bail!("the embedded relay did not start within 10 s"),
    };

    let mut agent_cfg = AgentConfig::new(&bound.listen.to_string(), crate::host::probe());
    agent_cfg.token = token;
    agent_cfg.quiet = true;
    let agent_stop = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&agent_stop);
    let agent = std::thread::Builder::new()
        .name("strata-agent".into())
        .spawn(move || {
            // VM hints name the VMs of the VMs view.
            let opts = LiveOptions {
                vm_hints: Some(crate::agent::vm_hints::read as fn() -> _),
                ..LiveOptions::default()
            };
            if let Err(e) = strata_agent::run(agent_cfg, SourceConfig::Live(opts), stop) {
                eprintln!("strata top: the embedded agent stopped: {e}");
            }
        })
        .context("cannot start the agent thread")?;
    Ok(Embedded {
        http: bound.http,
        dir,
        agent_stop,
        agent: Some(agent),
        relay_stop,
        relay: Some(relay),
    })
}

impl Drop for Embedded {
    fn drop(&mut self) {
        // The agent first, so it removes its tracefs instance and says
        // goodbye while the relay still listens.
        self.agent_stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.agent.take() {
            let _ = a.join();
        }
        let _ = self.relay_stop.send(true);
        if let Some(r) = self.relay.take() {
            let _ = r.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// 64 random bits from the kernel, for a one-run token.
fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom fills the buffer it is given.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 8 {
        return std::process::id() as u64
            ^ (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64));
    }
    u64::from_ne_bytes(b)
}
