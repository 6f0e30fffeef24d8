//! Rules in the relay: the rule file loaded and reloaded (on change, or by
//! `POST /api/rules/reload`), evaluated over every host's live analysis on
//! a timer and as soon as a pattern matches, and the actions carried out
//! through [`RelayActions`].
//!
//! Snapshots and event changes go to the agents through the relay's
//! control path ([`crate::control::Control`], adapted by [`ControlPath`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use serde::Serialize;
use strata_rules::actions::{perform, webhook_request, ActionError, AlertBody};
use strata_rules::config::HostSel;
use strata_rules::engine::RuleStatus;
use strata_rules::{Actions, Engine, Fire, LoadContext, RuleError, RuleSet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Notify};

use crate::analysis::unix_now_ns;
use crate::ingest::log;
use crate::registry::{lock, Registry};

/// How the relay reaches agents for rule actions (snapshots, events). The
/// control path implements it; [`RelayActions`] calls it when it is set.
pub trait AgentControl: Send + Sync {
    /// Asks the agents of `hosts` for one flight-recorder snapshot of the
    /// window around now.
    fn snapshot(&self, hosts: &[String], before_ns: u64, after_ns: u64) -> Result<(), String>;
    /// Enables (or disables) `events` on `host` for `for_ns`.
    fn set_events(
        &self,
        host: &str,
        events: &[String],
        enable: bool,
        for_ns: u64,
    ) -> Result<(), String>;
}

/// Counters of what rules did, for `/metrics` and `/api/rules`.
#[derive(Debug)]
pub struct RuleCounters {
    /// Alerts per rule.
    pub alerts: Mutex<BTreeMap<String, u64>>,
    /// Actions that failed, per kind.
    pub failed: Mutex<BTreeMap<&'static str, u64>>,
    /// Condition true to action requested.
    pub reaction: Mutex<Histogram<u64>>,
    /// Webhook POSTs answered with a 2xx status.
    pub webhooks_ok: AtomicU64,
}

impl Default for RuleCounters {
    fn default() -> Self {
        RuleCounters {
            alerts: Mutex::new(BTreeMap::new()),
            failed: Mutex::new(BTreeMap::new()),
            reaction: Mutex::new(crate::analysis::latency_histogram()),
            webhooks_ok: AtomicU64::new(0),
        }
    }
}

/// The relay's [`Actions`]: alerts fully (log line, counter, webhook POST);
/// snapshots and events through an [`AgentControl`] when one is set.
pub struct RelayActions {
    counters: Arc<RuleCounters>,
    control: Mutex<Option<Arc<dyn AgentControl>>>,
    connected: Mutex<Vec<String>>,
}

impl RelayActions {
    /// Actions that count into `counters`.
    pub fn new(counters: Arc<RuleCounters>) -> RelayActions {
        RelayActions {
            counters,
            control: Mutex::new(None),
            connected: Mutex::new(Vec::new()),
        }
    }

    /// Sets the control path to agents.
    pub fn set_control(&self, c: Option<Arc<dyn AgentControl>>) {
        *lock(&self.control) = c;
    }

    fn not_connected(&self, what: &'static str, fire: &Fire, targets: &[String]) -> ActionError {
        log(format_args!(
            "rule {:?}: {what} on {} requested, but this relay has no control path to agents",
            fire.rule,
            targets.join(",")
        ));
        ActionError::NotConnected(what)
    }

    fn each_host(
        &self,
        what: &'static str,
        fire: &Fire,
        hosts: &HostSel,
        f: impl Fn(&dyn AgentControl, &str) -> Result<(), String>,
    ) -> Result<(), ActionError> {
        let targets = fire.targets(hosts, &lock(&self.connected));
        let Some(c) = lock(&self.control).clone() else {
            return Err(self.not_connected(what, fire, &targets));
        };
        let mut errors = Vec::new();
        for h in &targets {
            if let Err(e) = f(c.as_ref(), h) {
                errors.push(format!("{h}: {e}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ActionError::Failed(format!(
                "{what}: {}",
                errors.join("; ")
            )))
        }
    }
}

/// POSTs `body` to `url`; returns the HTTP status. Bounded in time and in
/// what it reads back.
pub async fn post_webhook(url: &str, body: &[u8]) -> Result<u16, String> {
    let req = webhook_request(url, body).map_err(|e| e.to_string())?;
    let work = async {
        let mut s = tokio::net::TcpStream::connect(&req.authority)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", req.authority))?;
        s.write_all(&req.bytes)
            .await
            .map_err(|e| format!("cannot send to {}: {e}", req.authority))?;
        let mut buf = [0u8; 64];
        let mut n = 0;
        while n < 12 {
            let k = s
                .read(&mut buf[n..])
                .await
                .map_err(|e| format!("no answer from {}: {e}", req.authority))?;
            if k == 0 {
                break;
            }
            n += k;
        }
        let head = String::from_utf8_lossy(&buf[..n]);
        head.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("{} did not answer HTTP", req.authority))
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .map_err(|_| format!("webhook {url} did not answer within 5 s"))?
}

impl Actions for RelayActions {
    fn snapshot(
        &self,
        fire: &Fire,
        hosts: &HostSel,
        before_ns: u64,
        after_ns: u64,
    ) -> Result<(), ActionError> {
        let targets = fire.targets(hosts, &lock(&self.connected));
        if targets.is_empty() {
            return Ok(());
        }
        let Some(c) = lock(&self.control).clone() else {
            return Err(self.not_connected("snapshot", fire, &targets));
        };
        c.snapshot(&targets, before_ns, after_ns)
            .map_err(|e| ActionError::Failed(format!("snapshot: {e}")))
    }

    fn set_events(
        &self,
        fire: &Fire,
        hosts: &HostSel,
        events: &[String],
        enable: bool,
        for_ns: u64,
    ) -> Result<(), ActionError> {
        let what = if enable {
            "enable events"
        } else {
            "disable events"
        };
        self.each_host(what, fire, hosts, |c, h| {
            c.set_events(h, events, enable, for_ns)
        })
    }

    fn alert(&self, fire: &Fire, webhook: Option<&str>) -> Result<(), ActionError> {
        *lock(&self.counters.alerts)
            .entry(fire.rule.clone())
            .or_insert(0) += 1;
        log(format_args!(
            "ALERT rule {:?} on host {}{}{}: {} [{}] (fired {} times, reaction {:.1} ms)",
            fire.rule,
            fire.host,
            fire.vm
                .as_deref()
                .map_or(String::new(), |v| format!(" VM {v:?}")),
            fire.process
                .as_deref()
                .map_or(String::new(), |p| format!(" process {p}")),
            fire.condition,
            fire.values.join("; "),
            fire.count,
            fire.reaction_ns() as f64 / 1e6
        ));
        let Some(url) = webhook else { return Ok(()) };
        let body = serde_json::to_vec(&AlertBody::of(fire))
            .map_err(|e| ActionError::Failed(format!("cannot encode the alert: {e}")))?;
        let url = url.to_string();
        let counters = Arc::clone(&self.counters);
        let rule = fire.rule.clone();
        let send = async move {
            match post_webhook(&url, &body).await {
                Ok(code) if (200..300).contains(&code) => {
                    counters.webhooks_ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(code) => {
                    *lock(&counters.failed).entry("webhook").or_insert(0) += 1;
                    log(format_args!("rule {rule:?}: webhook {url} answered {code}"));
                }
                Err(e) => {
                    *lock(&counters.failed).entry("webhook").or_insert(0) += 1;
                    log(format_args!("rule {rule:?}: {e}"));
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(send);
                Ok(())
            }
            Err(_) => Err(ActionError::Failed(
                "no runtime to send the webhook from".into(),
            )),
        }
    }
}

/// `GET /api/rules`.
#[derive(Debug, Clone, Serialize)]
pub struct RulesDoc {
    /// `strata-relay-api/1`.
    pub schema: &'static str,
    /// The rule file.
    pub path: Option<String>,
    /// Rules loaded.
    pub rules: usize,
    /// Successful loads so far (the first included).
    pub loads: u64,
    /// Why the last reload failed, if it did (the previous rules stay).
    pub last_error: Option<String>,
    /// Each rule on each host it was evaluated on.
    pub states: Vec<RuleStatus>,
    /// Actions refused by the global limits.
    pub refused_actions: u64,
    /// Snapshots in progress.
    pub snapshots_in_flight: usize,
    /// Firings measured for reaction time.
    pub reactions: u64,
    /// Reaction time (condition true to actions requested), median, ms.
    pub reaction_p50_ms: f64,
    /// Reaction time, 99th percentile, ms.
    pub reaction_p99_ms: f64,
}

/// The rules of a running relay.
pub struct RulesRuntime {
    path: Option<PathBuf>,
    cx: LoadContext,
    engine: Mutex<Engine>,
    mtime: Mutex<Option<SystemTime>>,
    loads: AtomicU64,
    last_error: Mutex<Option<String>>,
    wake: Arc<Notify>,
    /// What the rules did.
    pub counters: Arc<RuleCounters>,
    actions: Arc<RelayActions>,
}

impl std::fmt::Debug for RulesRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesRuntime")
            .field("path", &self.path)
            .finish()
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl RulesRuntime {
    /// Loads the rule file at `path`, checked against `cx`.
    pub fn load(path: &Path, cx: LoadContext) -> Result<RulesRuntime, RuleError> {
        let m = mtime(path);
        let set = RuleSet::load(path, &cx)?;
        Ok(RulesRuntime::with(set, Some(path.to_path_buf()), cx, m))
    }

    /// A runtime over rules already checked (no file to reload).
    pub fn from_set(set: RuleSet) -> RulesRuntime {
        RulesRuntime::with(set, None, LoadContext::default(), None)
    }

    fn with(
        set: RuleSet,
        path: Option<PathBuf>,
        cx: LoadContext,
        m: Option<SystemTime>,
    ) -> RulesRuntime {
        let counters = Arc::new(RuleCounters::default());
        RulesRuntime {
            path,
            cx,
            engine: Mutex::new(Engine::new(Arc::new(set))),
            mtime: Mutex::new(m),
            loads: AtomicU64::new(1),
            last_error: Mutex::new(None),
            wake: Arc::new(Notify::new()),
            actions: Arc::new(RelayActions::new(Arc::clone(&counters))),
            counters,
        }
    }

    /// The actions (to set the control path to agents).
    pub fn actions(&self) -> &Arc<RelayActions> {
        &self.actions
    }

    /// Reads the rule file again. On an error the previous rules stay and
    /// the error is kept for `/api/rules`. Returns the number of rules.
    pub fn reload(&self) -> Result<usize, RuleError> {
        let Some(path) = &self.path else {
            return Ok(lock(&self.engine).rules().rules.len());
        };
        *lock(&self.mtime) = mtime(path);
        match RuleSet::load(path, &self.cx) {
            Ok(set) => {
                let n = set.rules.len();
                lock(&self.engine).replace(Arc::new(set));
                self.loads.fetch_add(1, Ordering::Relaxed);
                *lock(&self.last_error) = None;
                log(format_args!(
                    "rules: loaded {n} rules from {}",
                    path.display()
                ));
                Ok(n)
            }
            Err(e) => {
                log(format_args!("rules: {e}; keeping the previous rules"));
                *lock(&self.last_error) = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Reloads when the file's modification time changed.
    pub fn reload_if_changed(&self) {
        let Some(path) = &self.path else { return };
        let m = mtime(path);
        if m.is_some() && m != *lock(&self.mtime) {
            let _ = self.reload();
        }
    }

    /// Evaluates the rules over every host (only pattern rules when
    /// `patterns_only`) and carries out what fires; returns the firings.
    pub fn tick(&self, registry: &Registry, patterns_only: bool) -> Vec<Fire> {
        let now = unix_now_ns();
        let mut fires = Vec::new();
        let mut connected = Vec::new();
        {
            let mut engine = lock(&self.engine);
            for entry in registry.hosts() {
                let (host, up, session) = {
                    let st = lock(&entry.status);
                    (st.host.clone(), st.state == "connected", st.session.clone())
                };
                // Rules watch what happens now, not a snapshot's history.
                if registry.control_state.is_snapshot(&session) {
                    continue;
                }
                if up {
                    connected.push(host.clone());
                }
                let mut live = lock(&entry.live);
                let Some(l) = live.as_mut() else { continue };
                let generation = engine.generation();
                let newest = l.newest();
                let stale = l
                    .rules_and_machine()
                    .0
                    .is_none_or(|h| h.generation() != generation);
                if stale {
                    let mut hm = engine.host_metrics(l.syscall_names());
                    let wake = Arc::clone(&self.wake);
                    hm.set_waker(Some(Arc::new(move || wake.notify_one())));
                    l.set_rules(Some(hm));
                }
                let (Some(hm), machine, vms) = l.rules_machine_vms() else {
                    continue;
                };
                if let Some(n) = newest {
                    hm.advance(n);
                    // VM windows are sampled on the timer only: pattern
                    // evaluations do not look at them.
                    if !patterns_only && hm.wants_vms() {
                        hm.sample_vms(vms, n);
                    }
                }
                fires.extend(engine.evaluate(&host, hm, Some(machine), now, patterns_only));
            }
        }
        *lock(&self.actions.connected) = connected;
        for f in &fires {
            lock(&self.counters.reaction).saturating_record(f.reaction_ns().max(1));
            for (kind, r) in perform(self.actions.as_ref(), f) {
                if let Err(e) = r {
                    *lock(&self.counters.failed).entry(kind).or_insert(0) += 1;
                    if !matches!(e, ActionError::NotConnected(_)) {
                        log(format_args!("rule {:?}: {kind} failed: {e}", f.rule));
                    }
                }
            }
        }
        fires
    }

    /// The state of every rule.
    pub fn doc(&self) -> RulesDoc {
        let mut engine = lock(&self.engine);
        let states = engine.statuses();
        let rules = engine.rules().rules.len();
        let gov = engine.governor();
        let h = lock(&self.counters.reaction).clone();
        let ms = |q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1e6
            }
        };
        RulesDoc {
            reactions: h.len(),
            reaction_p50_ms: ms(0.5),
            reaction_p99_ms: ms(0.99),
            schema: crate::http::SCHEMA,
            path: self.path.as_ref().map(|p| p.display().to_string()),
            rules,
            loads: self.loads.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
            states,
            refused_actions: gov.refused,
            snapshots_in_flight: gov.snapshots_in_flight(),
        }
    }

    /// The rules' part of `/metrics`.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let mut t = String::new();
        let _ = writeln!(t, "# HELP strata_alerts_total Alerts raised by rules.");
        let _ = writeln!(t, "# TYPE strata_alerts_total counter");
        let alerts = lock(&self.counters.alerts).clone();
        let doc = self.doc();
        // Rules evaluated but never fired show 0, so the series exists.
        let names: std::collections::BTreeSet<&str> = doc
            .states
            .iter()
            .map(|s| s.rule.as_str())
            .chain(alerts.keys().map(|s| s.as_str()))
            .collect();
        for n in names {
            let v = alerts.get(n).copied().unwrap_or(0);
            let _ = writeln!(t, "strata_alerts_total{{rule=\"{}\"}} {v}", esc(n));
        }
        let _ = writeln!(
            t,
            "# HELP strata_rule_fires_total Times a rule fired, per host."
        );
        let _ = writeln!(t, "# TYPE strata_rule_fires_total counter");
        for s in &doc.states {
            let _ = writeln!(
                t,
                "strata_rule_fires_total{{rule=\"{}\",host=\"{}\"}} {}",
                esc(&s.rule),
                esc(&s.host),
                s.fires
            );
        }
        let _ = writeln!(
            t,
            "# HELP strata_rule_actions_refused_total Actions the global rule limits refused."
        );
        let _ = writeln!(t, "# TYPE strata_rule_actions_refused_total counter");
        let _ = writeln!(
            t,
            "strata_rule_actions_refused_total {}",
            doc.refused_actions
        );
        let _ = writeln!(
            t,
            "# HELP strata_rule_actions_failed_total Rule actions that failed, per kind."
        );
        let _ = writeln!(t, "# TYPE strata_rule_actions_failed_total counter");
        for (k, n) in lock(&self.counters.failed).iter() {
            let _ = writeln!(t, "strata_rule_actions_failed_total{{action=\"{k}\"}} {n}");
        }
        let _ = writeln!(
            t,
            "# HELP strata_rule_reaction_seconds From a rule's condition being true (event time) to its actions being requested."
        );
        let _ = writeln!(t, "# TYPE strata_rule_reaction_seconds histogram");
        let h = lock(&self.counters.reaction).clone();
        for le in [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0] {
            let ns = (le * 1e9) as u64;
            let n: u64 = h
                .iter_recorded()
                .filter(|v| v.value_iterated_to() <= ns)
                .map(|v| v.count_at_value())
                .sum();
            let _ = writeln!(t, "strata_rule_reaction_seconds_bucket{{le=\"{le}\"}} {n}");
        }
        let _ = writeln!(
            t,
            "strata_rule_reaction_seconds_bucket{{le=\"+Inf\"}} {}",
            h.len()
        );
        let _ = writeln!(
            t,
            "strata_rule_reaction_seconds_sum {}",
            h.mean() * h.len() as f64 / 1e9
        );
        let _ = writeln!(t, "strata_rule_reaction_seconds_count {}", h.len());
        t
    }

    /// Evaluates every `eval_interval`, at once when a pattern matched,
    /// and reloads the file when it changes, until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        registry: Arc<Registry>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut last_poll = std::time::Instant::now();
        let mut needs_of = None;
        loop {
            // Agents learn what the rules need at load and at each reload.
            let (generation, needs) = {
                let e = lock(&self.engine);
                (e.generation(), e.rules().event_needs())
            };
            if needs_of != Some(generation) {
                needs_of = Some(generation);
                if registry.control_state.set_needs("rules", needs) {
                    registry.control().push_needs_all();
                }
            }
            let interval = Duration::from_nanos(lock(&self.engine).rules().limits.eval_interval_ns);
            let patterns_only = tokio::select! {
                _ = tokio::time::sleep(interval) => false,
                _ = self.wake.notified() => true,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            if last_poll.elapsed() >= Duration::from_secs(1) {
                last_poll = std::time::Instant::now();
                let me = Arc::clone(&self);
                let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
            }
            let me = Arc::clone(&self);
            let reg = Arc::clone(&registry);
            let _ = tokio::task::spawn_blocking(move || me.tick(&reg, patterns_only)).await;
        }
    }
}

/// Rule actions carried out through the relay's control path. The rules'
/// evaluation loop must not wait for agents, so each request runs as its
/// own task and its outcome is logged.
pub struct ControlPath {
    control: crate::control::Control,
    runtime: tokio::runtime::Handle,
}

impl ControlPath {
    /// Actions through `control`, run on `runtime`.
    pub fn new(control: crate::control::Control, runtime: tokio::runtime::Handle) -> ControlPath {
        ControlPath { control, runtime }
    }
}

impl AgentControl for ControlPath {
    fn snapshot(&self, hosts: &[String], before_ns: u64, after_ns: u64) -> Result<(), String> {
        let control = self.control.clone();
        let hosts = hosts.to_vec();
        self.runtime.spawn(async move {
            let (before, after) = (
                Duration::from_nanos(before_ns),
                Duration::from_nanos(after_ns),
            );
            match control.snapshot(&hosts, before, after).await {
                Ok(r) => {
                    for h in &r.hosts {
                        let at = h.path.as_deref().unwrap_or("-");
                        log(format_args!(
                            "rule snapshot {} of {}: {} ({at})",
                            r.id, h.host, h.message
                        ));
                    }
                }
                Err(e) => log(format_args!("rule snapshot of {}: {e}", hosts.join(","))),
            }
        });
        Ok(())
    }

    fn set_events(
        &self,
        host: &str,
        events: &[String],
        enable: bool,
        for_ns: u64,
    ) -> Result<(), String> {
        let control = self.control.clone();
        let (host, events) = (host.to_string(), events.to_vec());
        let duration = (for_ns > 0).then(|| Duration::from_nanos(for_ns));
        self.runtime.spawn(async move {
            let r = if enable {
                control.enable_events(None, &host, &events, duration).await
            } else {
                control.disable_events(None, &host, &events, duration).await
            };
            if let Err(e) = r {
                log(format_args!("rule event change on {host}: {e}"));
            }
        });
        Ok(())
    }
}
