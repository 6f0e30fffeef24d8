//! Control from the relay back to its agents: each connected agent has a
//! command channel; [`Control`] sends it commands and awaits their results,
//! takes multi-host snapshots, and turns event groups on or off for a
//! while (reverting on a relay-side timer).
//!
//! This is the API the HTTP control endpoints and the rule engine call:
//!
//! ```no_run
//! # async fn demo(registry: std::sync::Arc<strata_relay::registry::Registry>) {
//! use std::time::Duration;
//! let ctl = registry.control();
//! let snap = ctl
//!     .snapshot(&["web1".to_string()], Duration::from_secs(10), Duration::from_secs(2))
//!     .await;
//! let _ = ctl
//!     .enable_events(None, "web1", &["block".to_string()], Some(Duration::from_secs(60)))
//!     .await;
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use strata_wire::{ControlCommand, ControlResult};

use crate::registry::{lock, unix_ms, Registry};

/// Commands queued per connection before senders are told it is busy.
const QUEUE: usize = 64;
/// Longest snapshot window accepted, each side of the request.
pub const MAX_SNAPSHOT_WINDOW: Duration = Duration::from_secs(3600);
/// How long a command waits for its result when nothing longer is needed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The event groups the relay's live analyses need from every live agent:
/// the scheduler's events name threads and processes and give their
/// states, without which no other event can be attributed. System calls
/// and the rest are analysed when agents send them (and rules ask for
/// what their metrics use).
pub const ANALYSIS_NEEDS: &[&str] = &["sched"];
/// Temporary event changes kept per host (older ones must expire first).
const MAX_OVERRIDES: usize = 64;

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No agent of that name is connected.
    #[error("host {host:?} has no agent connected to this relay; `strata ctl hosts` lists the connected ones")]
    NotConnected {
        /// The host asked for.
        host: String,
    },
    /// The host is connected in several sessions and none was named.
    #[error(
        "host {host:?} is connected in several sessions ({sessions}); name one with --session"
    )]
    Ambiguous {
        /// The host.
        host: String,
        /// Its sessions, comma-separated.
        sessions: String,
    },
    /// The agent's connection ended or is too busy for more commands.
    #[error("cannot send the command to host {host:?}: {reason}")]
    Unavailable {
        /// The host.
        host: String,
        /// Why.
        reason: &'static str,
    },
    /// No result within the timeout.
    #[error("host {host:?} did not answer within {timeout:?}")]
    Timeout {
        /// The host.
        host: String,
        /// The time waited.
        timeout: Duration,
    },
    /// The agent answered that it could not do it.
    #[error("host {host:?} refused: {message}")]
    Refused {
        /// The host.
        host: String,
        /// The agent's reason.
        message: String,
    },
    /// The request itself is not acceptable.
    #[error("{0}")]
    BadRequest(String),
}

struct LinkSlot {
    conn: u64,
    tx: mpsc::Sender<strata_wire::Control>,
}

struct Override {
    id: u64,
    enable: bool,
    specs: Vec<String>,
}

#[derive(Default)]
struct EventPlan {
    /// The events the agent traced when it connected, `system:name`.
    base: Vec<String>,
    overrides: Vec<Override>,
}

impl EventPlan {
    /// The full `SetEvents` list: the base, what the relay's analyses and
    /// rules need (`needs`), the enabled groups, and the disabled ones as
    /// `-spec` removals (applied last by the agent).
    fn specs(&self, needs: &[String]) -> Vec<String> {
        let mut out = self.base.clone();
        out.extend(needs.iter().filter(|n| !covers(&self.base, n)).cloned());
        for o in self.overrides.iter().filter(|o| o.enable) {
            out.extend(o.specs.iter().cloned());
        }
        for o in self.overrides.iter().filter(|o| !o.enable) {
            out.extend(o.specs.iter().map(|s| format!("-{s}")));
        }
        out
    }
}

/// Whether the `system:name` events of `base` already hold everything
/// `spec` (a preset or an event spec) selects. A spec that is not a preset
/// is covered when it is in `base` as written.
fn covers(base: &[String], spec: &str) -> bool {
    match strata_ftrace::PRESETS.iter().find(|p| p.name == spec) {
        Some(p) => p
            .events
            .iter()
            .all(|(s, n)| base.iter().any(|b| b.split_once(':') == Some((*s, *n)))),
        None => base.iter().any(|b| b == spec),
    }
}

#[derive(Default)]
struct Inner {
    links: BTreeMap<(String, String), LinkSlot>,
    pending: HashMap<u64, oneshot::Sender<ControlResult>>,
    snapshots: BTreeMap<String, i64>,
    plans: BTreeMap<(String, String), EventPlan>,
    /// Event groups each part of the relay needs from every live agent
    /// (`analyses`, `rules`), as `--events` takes them.
    needs: BTreeMap<&'static str, Vec<String>>,
}

impl Inner {
    fn needs(&self) -> Vec<String> {
        let all: std::collections::BTreeSet<&String> = self.needs.values().flatten().collect();
        all.into_iter().cloned().collect()
    }
}

/// The relay's control state, kept in the [`Registry`]; use it through
/// [`Registry::control`].
#[derive(Default)]
pub struct ControlState {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    api_token: Mutex<Option<String>>,
}

impl std::fmt::Debug for ControlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = lock(&self.inner);
        f.debug_struct("ControlState")
            .field("links", &g.links.len())
            .field("pending", &g.pending.len())
            .finish()
    }
}

impl ControlState {
    fn next(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Sets the bearer token the control endpoints require (`None`: they
    /// refuse every request).
    pub fn set_api_token(&self, token: Option<String>) {
        *lock(&self.api_token) = token;
    }

    /// Whether `presented` is the API token, compared in constant time.
    pub fn token_ok(&self, presented: &str) -> bool {
        let g = lock(&self.api_token);
        let Some(t) = g.as_deref() else {
            return false;
        };
        let (a, b) = (t.as_bytes(), presented.as_bytes());
        let mut diff = (a.len() != b.len()) as u8;
        for i in 0..a.len().max(b.len()) {
            diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(1);
        }
        diff == 0
    }

    /// Whether an API token is configured.
    pub fn has_token(&self) -> bool {
        lock(&self.api_token).is_some()
    }

    /// Connection `conn` of `host` in `session` takes commands from now on;
    /// the connection reads them from the returned receiver.
    pub fn attach(
        &self,
        session: &str,
        host: &str,
        conn: u64,
    ) -> mpsc::Receiver<strata_wire::Control> {
        let (tx, rx) = mpsc::channel(QUEUE);
        lock(&self.inner).links.insert(
            (session.to_string(), host.to_string()),
            LinkSlot { conn, tx },
        );
        rx
    }

    /// Connection `conn` ended; commands for its host fail from now on.
    pub fn detach(&self, session: &str, host: &str, conn: u64) {
        let mut g = lock(&self.inner);
        let key = (session.to_string(), host.to_string());
        if g.links.get(&key).is_some_and(|l| l.conn == conn) {
            g.links.remove(&key);
        }
    }

    /// Hands an agent's result to whoever waits for it (unknown ids are
    /// dropped: the waiter gave up).
    pub fn resolve(&self, result: ControlResult) {
        if let Some(tx) = lock(&self.inner).pending.remove(&result.request) {
            let _ = tx.send(result);
        }
    }

    /// Whether `session` names a snapshot this relay asked for: its data
    /// goes under `DATA/snapshots/`.
    pub fn is_snapshot(&self, session: &str) -> bool {
        lock(&self.inner).snapshots.contains_key(session)
    }

    /// Records the events `host` traced at connection, the base its
    /// temporary changes are applied to. Kept while a change is active.
    pub fn set_base(&self, session: &str, host: &str, events: Vec<String>) {
        let mut g = lock(&self.inner);
        let plan = g
            .plans
            .entry((session.to_string(), host.to_string()))
            .or_default();
        if plan.overrides.is_empty() {
            plan.base = events;
        }
    }

    /// Sets the event groups `who` (`analyses`, `rules`) needs every live
    /// agent to stream; returns whether the union changed. Hosts learn it
    /// from [`Control::push_needs`].
    pub fn set_needs(&self, who: &'static str, groups: Vec<String>) -> bool {
        let mut g = lock(&self.inner);
        let before = g.needs();
        g.needs.insert(who, groups);
        g.needs() != before
    }

    /// The union of what the relay's parts need, sorted.
    pub fn needs(&self) -> Vec<String> {
        lock(&self.inner).needs()
    }

    /// The needed groups `host`'s events (its base) lack; empty for hosts
    /// with no ftrace events (replays), which cannot change them.
    pub fn missing_needs(&self, session: &str, host: &str) -> Vec<String> {
        let g = lock(&self.inner);
        let Some(plan) = g.plans.get(&(session.to_string(), host.to_string())) else {
            return Vec::new();
        };
        if plan.base.is_empty() {
            return Vec::new();
        }
        g.needs()
            .into_iter()
            .filter(|n| !covers(&plan.base, n))
            .collect()
    }

    /// The connected (non-snapshot) `(session, host)` pairs.
    pub fn connected(&self) -> Vec<(String, String)> {
        let g = lock(&self.inner);
        g.links
            .keys()
            .filter(|(s, _)| !g.snapshots.contains_key(s))
            .cloned()
            .collect()
    }
}

/// What one host did for a snapshot.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SnapshotHost {
    /// The host.
    pub host: String,
    /// Whether its part is stored.
    pub ok: bool,
    /// The agent's message, or the error.
    pub message: String,
    /// The CTF trace directory, when stored.
    pub path: Option<String>,
    /// The instant the window is around, in this host's trace time (ns
    /// since the epoch as its trace gives them).
    pub at_ns: i64,
    /// Whether `at_ns` came through the host's guest clock sync (this
    /// host is a VM whose host streams here): its window then covers the
    /// same moment as its host's to within the sync's bound.
    pub guest_synced: bool,
}

/// The outcome of [`Control::snapshot`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SnapshotReport {
    /// The snapshot id (a directory under `DATA/snapshots/`).
    pub id: String,
    /// When it was requested, ms since the epoch.
    pub requested_ms: i64,
    /// Per host.
    pub hosts: Vec<SnapshotHost>,
}

/// The outcome of an event change.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventsReport {
    /// The session of the host.
    pub session: String,
    /// The host.
    pub host: String,
    /// The event list sent (`-spec` entries remove).
    pub events: Vec<String>,
    /// The agent's message.
    pub message: String,
    /// When the change reverts, ms since the epoch.
    pub until_ms: Option<i64>,
}

/// The control API over a registry; see the module docs.
#[derive(Clone)]
pub struct Control {
    registry: Arc<Registry>,
}

impl Registry {
    /// The control API (commands to agents, snapshots, event changes).
    pub fn control(self: &Arc<Self>) -> Control {
        Control {
            registry: Arc::clone(self),
        }
    }
}

impl Control {
    fn state(&self) -> &ControlState {
        &self.registry.control_state
    }

    /// The session `host` is connected in (`session` when given).
    pub fn resolve_host(&self, session: Option<&str>, host: &str) -> Result<String, ControlError> {
        let found: Vec<String> = self
            .state()
            .connected()
            .into_iter()
            .filter(|(s, h)| h == host && session.is_none_or(|x| x == s))
            .map(|(s, _)| s)
            .collect();
        match found.len() {
            0 => Err(ControlError::NotConnected {
                host: host.to_string(),
            }),
            1 => Ok(found.into_iter().next().unwrap_or_default()),
            _ => Err(ControlError::Ambiguous {
                host: host.to_string(),
                sessions: found.join(", "),
            }),
        }
    }

    /// Sends `command` to the agent of `host` in `session` and waits up to
    /// `timeout` for its result. An agent's refusal is an error.
    pub async fn send(
        &self,
        session: &str,
        host: &str,
        command: ControlCommand,
        timeout: Duration,
    ) -> Result<ControlResult, ControlError> {
        let st = self.state();
        let request = st.next();
        let (tx, rx) = oneshot::channel();
        let link = {
            let mut g = lock(&st.inner);
            let Some(l) = g.links.get(&(session.to_string(), host.to_string())) else {
                return Err(ControlError::NotConnected {
                    host: host.to_string(),
                });
            };
            let link = l.tx.clone();
            g.pending.insert(request, tx);
            link
        };
        let msg = strata_wire::Control { request, command };
        let unavailable = |reason| ControlError::Unavailable {
            host: host.to_string(),
            reason,
        };
        let sent = match link.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                Err(unavailable("its command queue is full; try again"))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(unavailable("its connection just ended"))
            }
        };
        if let Err(e) = sent {
            lock(&st.inner).pending.remove(&request);
            return Err(e);
        }
        let result = tokio::time::timeout(timeout, rx).await;
        lock(&st.inner).pending.remove(&request);
        match result {
            Ok(Ok(r)) if r.ok => Ok(r),
            Ok(Ok(r)) => Err(ControlError::Refused {
                host: host.to_string(),
                message: r.message,
            }),
            Ok(Err(_)) => Err(unavailable("the connection ended before it answered")),
            Err(_) => Err(ControlError::Timeout {
                host: host.to_string(),
                timeout,
            }),
        }
    }

    /// Takes one snapshot across `hosts` (empty: every connected host):
    /// each agent sends its data from `before` before now to `after` after
    /// it, stored under `DATA/snapshots/<id>/<host>/kernel`. Now is one
    /// instant for all: the relay's clock, and for a VM whose host streams
    /// here with a clock sync, that instant in the guest's clock. Waits
    /// until every host has answered (or failed); one id covers all of
    /// them.
    pub async fn snapshot(
        &self,
        hosts: &[String],
        before: Duration,
        after: Duration,
    ) -> Result<SnapshotReport, ControlError> {
        if before > MAX_SNAPSHOT_WINDOW || after > MAX_SNAPSHOT_WINDOW {
            return Err(ControlError::BadRequest(format!(
                "a snapshot window is at most {MAX_SNAPSHOT_WINDOW:?} each side of now"
            )));
        }
        let st = self.state();
        let targets: Vec<(String, String)> = if hosts.is_empty() {
            st.connected()
        } else {
            let mut t = Vec::new();
            for h in hosts {
                t.push((self.resolve_host(None, h)?, h.clone()));
            }
            t
        };
        if targets.is_empty() {
            return Err(ControlError::BadRequest(
                "no agent is connected: nothing to snapshot".into(),
            ));
        }
        let requested_ns = crate::analysis::unix_now_ns();
        let requested_ms = requested_ns / 1_000_000;
        let id = format!("snap-{requested_ms}-{}", st.next());
        lock(&st.inner).snapshots.insert(id.clone(), requested_ms);
        // The agent waits `after`, then sends its window on a connection
        // of its own; the result comes once the relay acknowledged it all.
        let timeout = after + Duration::from_secs(60);
        let jobs = targets.iter().map(|(session, host)| {
            let (at_ns, guest_synced) = self.instant_for(host, requested_ns);
            let cmd = ControlCommand::Snapshot {
                before_ns: before.as_nanos() as u64,
                after_ns: after.as_nanos() as u64,
                name: id.clone(),
                at_ns: Some(at_ns),
            };
            let this = self.clone();
            let id = id.clone();
            async move {
                match this.send(session, host, cmd, timeout).await {
                    Ok(r) => {
                        let path = this.wait_stored(&id, host).await;
                        SnapshotHost {
                            host: host.clone(),
                            ok: path.is_some(),
                            message: if path.is_some() {
                                r.message
                            } else {
                                format!("{}; but the relay holds no stored trace for it", r.message)
                            },
                            path,
                            at_ns,
                            guest_synced,
                        }
                    }
                    Err(e) => SnapshotHost {
                        host: host.clone(),
                        ok: false,
                        message: e.to_string(),
                        path: None,
                        at_ns,
                        guest_synced,
                    },
                }
            }
        });
        let hosts = join_all(jobs).await;
        Ok(SnapshotReport {
            id,
            requested_ms,
            hosts,
        })
    }

    /// Relay time `now_ns` in `host`'s trace time, and whether a guest
    /// clock sync converted it: a VM whose host streams here and synced
    /// its clock gets the guest instant its host's `now_ns` maps from;
    /// other hosts trace in wall-clock ns already.
    fn instant_for(&self, host: &str, now_ns: i64) -> (i64, bool) {
        let clock = lock(&self.registry.guest_feeds)
            .values()
            .filter(|f| f.label == host)
            .find_map(|f| *lock(&f.clock));
        match clock {
            Some(c) => (c.invert(now_ns), true),
            None => (now_ns, false),
        }
    }

    /// The trace directory of snapshot `id` for `host` once its connection
    /// ended (everything committed), waiting a few seconds at most.
    async fn wait_stored(&self, id: &str, host: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.registry.find(host, Some(id)).into_iter().next() {
                let s = lock(&e.status).clone();
                if s.state == "disconnected" && !s.trace_dir.is_empty() {
                    return Some(s.trace_dir);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Adds the event `specs` (as `--events` takes them) to what `host`
    /// traces, for `duration` (`None`: until changed again).
    pub async fn enable_events(
        &self,
        session: Option<&str>,
        host: &str,
        specs: &[String],
        duration: Option<Duration>,
    ) -> Result<EventsReport, ControlError> {
        self.change_events(session, host, specs, true, duration)
            .await
    }

    /// Removes the event `specs` from what `host` traces, for `duration`.
    pub async fn disable_events(
        &self,
        session: Option<&str>,
        host: &str,
        specs: &[String],
        duration: Option<Duration>,
    ) -> Result<EventsReport, ControlError> {
        self.change_events(session, host, specs, false, duration)
            .await
    }

    async fn change_events(
        &self,
        session: Option<&str>,
        host: &str,
        specs: &[String],
        enable: bool,
        duration: Option<Duration>,
    ) -> Result<EventsReport, ControlError> {
        if specs.is_empty() || specs.iter().any(|s| s.is_empty() || s.starts_with('-')) {
            return Err(ControlError::BadRequest(
                "name the event groups or events to change, e.g. syscalls,block".into(),
            ));
        }
        let session = self.resolve_host(session, host)?;
        let st = self.state();
        let id = st.next();
        let key = (session.clone(), host.to_string());
        let events = {
            let mut g = lock(&st.inner);
            let needs = g.needs();
            let plan = g.plans.entry(key.clone()).or_default();
            if plan.overrides.len() >= MAX_OVERRIDES {
                return Err(ControlError::BadRequest(format!(
                    "host {host:?} already has {MAX_OVERRIDES} event changes active; wait for some to expire"
                )));
            }
            plan.overrides.push(Override {
                id,
                enable,
                specs: specs.to_vec(),
            });
            plan.specs(&needs)
        };
        let sent = self
            .send(
                &session,
                host,
                ControlCommand::SetEvents(events.clone()),
                DEFAULT_TIMEOUT,
            )
            .await;
        let r = match sent {
            Ok(r) => r,
            Err(e) => {
                if let Some(p) = lock(&st.inner).plans.get_mut(&key) {
                    p.overrides.retain(|o| o.id != id);
                }
                return Err(e);
            }
        };
        let until_ms = duration.map(|d| unix_ms() + d.as_millis() as i64);
        if let Some(d) = duration {
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                this.revert(&key, id).await;
            });
        }
        Ok(EventsReport {
            session,
            host: host.to_string(),
            events,
            message: r.message,
            until_ms,
        })
    }

    /// Tells `host` (in `session`) the event list its plan gives, when
    /// what the relay's analyses and rules need is not all in the events it
    /// connected with. Returns the agent's answer, `None` when nothing was
    /// missing (or the host is a replay or a snapshot upload).
    pub async fn push_needs(
        &self,
        session: &str,
        host: &str,
    ) -> Option<Result<EventsReport, ControlError>> {
        let st = self.state();
        if st.is_snapshot(session) {
            return None;
        }
        let missing = st.missing_needs(session, host);
        if missing.is_empty() {
            return None;
        }
        let events = {
            let g = lock(&st.inner);
            let needs = g.needs();
            g.plans
                .get(&(session.to_string(), host.to_string()))
                .map(|p| p.specs(&needs))?
        };
        let r = self
            .send(
                session,
                host,
                ControlCommand::SetEvents(events.clone()),
                DEFAULT_TIMEOUT,
            )
            .await;
        let what = match &r {
            Ok(r) => r.message.clone(),
            Err(e) => format!("failed: {e}"),
        };
        crate::ingest::log(format_args!(
            "host {host} session {session}: the relay's analyses and rules need {}; {what}",
            missing.join(",")
        ));
        Some(r.map(|r| EventsReport {
            session: session.to_string(),
            host: host.to_string(),
            events,
            message: r.message,
            until_ms: None,
        }))
    }

    /// [`Control::push_needs`] for every connected host, each in a task of
    /// its own (when called inside a Tokio runtime).
    pub fn push_needs_all(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for (session, host) in self.state().connected() {
            let this = self.clone();
            rt.spawn(async move { this.push_needs(&session, &host).await });
        }
    }

    /// [`Control::push_needs`] for one host, in a task of its own: for the
    /// ingest, which learns a host's events in blocking code.
    pub fn push_needs_later(&self, session: &str, host: &str) {
        if self.state().missing_needs(session, host).is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (this, session, host) = (self.clone(), session.to_string(), host.to_string());
        rt.spawn(async move { this.push_needs(&session, &host).await });
    }

    /// Drops change `id` of `key` and sends the resulting event list.
    async fn revert(&self, key: &(String, String), id: u64) {
        let events = {
            let mut g = lock(&self.state().inner);
            let Some(plan) = g.plans.get_mut(key) else {
                return;
            };
            plan.overrides.retain(|o| o.id != id);
            let needs = g.needs();
            g.plans
                .get(key)
                .map(|p| p.specs(&needs))
                .unwrap_or_default()
        };
        let r = self
            .send(
                &key.0,
                &key.1,
                ControlCommand::SetEvents(events),
                DEFAULT_TIMEOUT,
            )
            .await;
        let what = match r {
            Ok(r) => r.message,
            Err(e) => format!("failed: {e}"),
        };
        crate::ingest::log(format_args!(
            "host {} session {}: event change {id} expired; {what}",
            key.1, key.0
        ));
    }
}

/// Runs futures concurrently on the current task and collects their
/// outputs in order.
async fn join_all<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (f, o) in set.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_puts_removals_last() {
        let plan = EventPlan {
            base: vec!["sched:sched_switch".into()],
            overrides: vec![
                Override {
                    id: 1,
                    enable: false,
                    specs: vec!["irq".into()],
                },
                Override {
                    id: 2,
                    enable: true,
                    specs: vec!["syscalls".into()],
                },
            ],
        };
        assert_eq!(plan.specs(&[]), ["sched:sched_switch", "syscalls", "-irq"]);
        // A need the base lacks is added; one it covers is not repeated.
        assert_eq!(
            plan.specs(&["syscalls".into(), "sched:sched_switch".into()]),
            ["sched:sched_switch", "syscalls", "syscalls", "-irq"]
        );
    }

    /// A synced guest's snapshot instant is its host's, in the guest's
    /// clock; other hosts get the relay's.
    #[test]
    fn a_synced_guest_gets_its_hosts_instant_in_its_own_clock() {
        let registry = Arc::new(Registry::new());
        let feed = Arc::new(crate::analysis::vm_live::GuestFeed::new("guest1"));
        lock(&registry.guest_feeds).insert("0f8f".into(), Arc::clone(&feed));
        let control = registry.control();
        let now = 1_795_710_537_000_000_000;
        assert_eq!(control.instant_for("guest1", now), (now, false));
        let clock = strata_analysis::vm::ClockTransform {
            anchor_ns: now - 10_000_000_000,
            offset_ns: 346_621_109,
            drift_ppb: -7_319,
        };
        *lock(&feed.clock) = Some(clock);
        let (at, synced) = control.instant_for("guest1", now);
        assert!(synced);
        assert!((clock.apply(at) - now).abs() <= 1, "{at}");
        assert_eq!(control.instant_for("host1", now), (now, false));
    }

    #[test]
    fn needs_are_a_union_and_missing_ones_are_found() {
        let st = ControlState::default();
        assert!(st.set_needs("analyses", vec!["sched".into()]));
        assert!(st.set_needs("rules", vec!["sched".into(), "syscalls".into()]));
        assert!(!st.set_needs("rules", vec!["syscalls".into(), "sched".into()]));
        assert_eq!(st.needs(), ["sched", "syscalls"]);
        let sched: Vec<String> = strata_ftrace::PRESETS
            .iter()
            .find(|p| p.name == "sched")
            .unwrap()
            .events
            .iter()
            .map(|(s, n)| format!("{s}:{n}"))
            .collect();
        st.set_base("s", "h", sched.clone());
        assert_eq!(st.missing_needs("s", "h"), ["syscalls"]);
        st.set_base(
            "s",
            "h",
            [
                sched,
                vec![
                    "raw_syscalls:sys_enter".into(),
                    "raw_syscalls:sys_exit".into(),
                ],
            ]
            .concat(),
        );
        assert!(st.missing_needs("s", "h").is_empty());
        // A replay (no ftrace events) and an unknown host are never asked.
        st.set_base("s", "replay", Vec::new());
        assert!(st.missing_needs("s", "replay").is_empty());
        assert!(st.missing_needs("s", "nobody").is_empty());
    }

    #[test]
    fn token_compare() {
        let st = ControlState::default();
        assert!(!st.token_ok("x"));
        st.set_api_token(Some("secret".into()));
        assert!(st.token_ok("secret"));
        assert!(!st.token_ok("secre"));
        assert!(!st.token_ok("secret2"));
        assert!(!st.token_ok(""));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn send_routes_result_and_times_out() {
        let reg = Arc::new(Registry::new());
        let mut rx = reg.control_state.attach("s", "h", 7);
        let ctl = reg.control();
        let reg2 = Arc::clone(&reg);
        let agent = tokio::spawn(async move {
            let c = rx.recv().await.expect("a command");
            reg2.control_state.resolve(ControlResult {
                request: c.request,
                ok: true,
                message: "done".into(),
            });
            // The second command is never answered.
            let _ = rx.recv().await;
        });
        let r = ctl
            .send("s", "h", ControlCommand::Start, Duration::from_secs(5))
            .await
            .expect("answered");
        assert_eq!(r.message, "done");
        let e = ctl
            .send("s", "h", ControlCommand::Stop, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(e, ControlError::Timeout { .. }), "{e}");
        assert!(matches!(
            ctl.resolve_host(None, "other"),
            Err(ControlError::NotConnected { .. })
        ));
        reg.control_state.detach("s", "h", 7);
        agent.abort();
    }
}
