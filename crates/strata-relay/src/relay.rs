//! The whole relay: the ingest server, the HTTP API and `/metrics`, and the
//! LTTng-live server over the data directory, until asked to stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::analysis::LiveConfig;
use crate::http::{router, ApiState};
use crate::ingest::{log, serve, IngestConfig, StoreConfig};
use crate::live::{FsCatalog, LiveServer};
use crate::registry::Registry;
use crate::tokens::Tokens;

/// Everything `strata relay` is told.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where agents connect.
    pub listen: SocketAddr,
    /// Where the HTTP API and `/metrics` listen.
    pub http: SocketAddr,
    /// Where LTTng-live viewers connect; `None` disables the live server.
    pub live: Option<SocketAddr>,
    /// The data directory.
    pub data: PathBuf,
    /// Who may send as which host.
    pub tokens: Tokens,
    /// TLS, unless insecure.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// fsync data before acknowledging it.
    pub sync: bool,
    /// The live analyses.
    pub analysis: LiveConfig,
    /// How often data is committed and acknowledged (also the live timer
    /// announced to LTTng-live viewers).
    pub commit_interval: Duration,
    /// The largest frame body accepted.
    pub max_body: u32,
    /// Time from a frame's first byte to its last before a client is
    /// dropped as too slow.
    pub frame_timeout: Duration,
    /// Processes per host in `/metrics`.
    pub metrics_top: usize,
    /// The bearer token of the control endpoints (`None`: control is off).
    pub api_token: Option<String>,
    /// The rule file (`--rules`), if any.
    pub rules: Option<PathBuf>,
}

impl RelayConfig {
    /// Defaults for everything but the addresses, data and tokens.
    pub fn new(listen: SocketAddr, http: SocketAddr, data: PathBuf, tokens: Tokens) -> RelayConfig {
        RelayConfig {
            listen,
            http,
            live: None,
            data,
            tokens,
            tls: None,
            sync: false,
            analysis: LiveConfig::default(),
            commit_interval: Duration::from_millis(100),
            max_body: strata_wire::DEFAULT_MAX_BODY,
            frame_timeout: Duration::from_secs(10),
            metrics_top: 10,
            api_token: None,
            rules: None,
        }
    }
}

/// The addresses a running relay listens on (the real ports when port 0
/// was asked for).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// Agents.
    pub listen: SocketAddr,
    /// HTTP.
    pub http: SocketAddr,
    /// LTTng-live, when enabled.
    pub live: Option<SocketAddr>,
}

/// Binds every listener, logs the addresses, and serves until `shutdown`
/// turns true. `bound` is called once the listeners are up.
pub async fn run(
    cfg: RelayConfig,
    shutdown: watch::Receiver<bool>,
    bound: impl FnOnce(Bound),
) -> std::io::Result<Arc<Registry>> {
    std::fs::create_dir_all(&cfg.data)?;
    let rules = match &cfg.rules {
        Some(p) => {
            let cx = strata_rules::LoadContext {
                known_hosts: Some(cfg.tokens.hosts()),
            };
            let r = crate::rules::RulesRuntime::load(p, cx)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            Some(Arc::new(r))
        }
        None => None,
    };
    let ingest_l = TcpListener::bind(cfg.listen).await?;
    let http_l = TcpListener::bind(cfg.http).await?;
    let live_l = match cfg.live {
        Some(a) => Some(TcpListener::bind(a).await?),
        None => None,
    };
    let addrs = Bound {
        listen: ingest_l.local_addr()?,
        http: http_l.local_addr()?,
        live: live_l.as_ref().map(|l| l.local_addr()).transpose()?,
    };
    log(format_args!(
        "listening for agents on {} ({}), HTTP on {}, LTTng-live on {}; data in {}",
        addrs.listen,
        if cfg.tls.is_some() {
            "TLS"
        } else {
            "plaintext, --insecure"
        },
        addrs.http,
        addrs.live.map_or("(off)".to_string(), |a| a.to_string()),
        cfg.data.display()
    ));
    bound(addrs);

    let registry = Arc::new(Registry::new());
    registry.control_state.set_api_token(cfg.api_token.clone());
    registry.control_state.set_needs(
        "analyses",
        crate::control::ANALYSIS_NEEDS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    let rules_task = rules.map(|r| {
        let _ = registry.rules.set(Arc::clone(&r));
        r.actions()
            .set_control(Some(Arc::new(crate::rules::ControlPath::new(
                registry.control(),
                tokio::runtime::Handle::current(),
            ))));
        tokio::spawn(r.run(Arc::clone(&registry), shutdown.clone()))
    });
    let store = Arc::new(StoreConfig {
        data: cfg.data.clone(),
        sync: cfg.sync,
        live: cfg.analysis,
        live_timer_us: cfg.commit_interval.as_micros().clamp(1, u32::MAX as u128) as u32,
    });
    let mut icfg = IngestConfig::new(store, cfg.tokens.clone(), cfg.tls.clone());
    icfg.commit_interval = cfg.commit_interval;
    icfg.max_body = cfg.max_body;
    icfg.frame_timeout = cfg.frame_timeout;
    let ingest = tokio::spawn(serve(
        ingest_l,
        Arc::new(icfg),
        Arc::clone(&registry),
        shutdown.clone(),
    ));

    let app = router(ApiState {
        registry: Arc::clone(&registry),
        metrics_top: cfg.metrics_top,
    });
    let mut http_stop = shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(http_l, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await
    });

    let live = live_l.map(|l| {
        let catalog = Arc::new(FsCatalog::new(cfg.data.clone()));
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            LiveServer::new(catalog, crate::live::LiveConfig::default())
                .run_until(l, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        })
    });

    let r = ingest.await;
    // Connections finish their commit after the listener stops.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = http.await;
    if let Some(l) = live {
        let _ = l.await;
    }
    if let Some(t) = rules_task {
        let _ = t.await;
    }
    match r {
        Ok(r) => r?,
        Err(e) => log(format_args!("the ingest server failed: {e}")),
    }
    Ok(registry)
}

/// Runs the relay on a multi-threaded runtime until SIGINT or SIGTERM;
/// connections commit what they stored and say goodbye to their agents.
pub fn run_until_signal(cfg: RelayConfig) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata-relay")
        .build()?;
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (tx, rx) = watch::channel(false);
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            log(format_args!("stopping: committing what was stored"));
            let _ = tx.send(true);
        });
        run(cfg, rx, |_| {}).await.map(|_| ())
    })
}
