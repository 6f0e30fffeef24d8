//! The HTTP API (JSON, schema in `docs/api.md`) and the Prometheus
//! `/metrics` endpoint, over the registry's hosts.

pub mod control;
pub mod metrics;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use strata_analysis::vm::VmHostReport;

use crate::analysis::report::{
    CpusReport, LatencySummary, LostReport, SyscallsReport, ThreadsReport,
};
use crate::analysis::unix_now_ns;
use crate::registry::{lock, HostEntry, HostStatus, Registry};

/// The schema version of every JSON document.
pub const SCHEMA: &str = "strata-relay-api/1";
/// Rows returned when `limit` is not given, and the most allowed.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 10_000;

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The hosts.
    pub registry: Arc<Registry>,
    /// Rows per host in `/metrics` process tables.
    pub metrics_top: usize,
}

/// One host in `/api/hosts`.
#[derive(Debug, Clone, Serialize)]
pub struct HostSummary {
    /// Connection state and counters.
    #[serde(flatten)]
    pub status: HostStatus,
    /// Events the live analyses applied.
    pub events_applied: u64,
    /// Events waiting in the reorder buffer.
    pub events_waiting: usize,
    /// The newest event applied, ns since the epoch.
    pub newest_event_ns: Option<i64>,
    /// Now minus the newest event's time, ms: how far the live view is
    /// behind the host.
    pub lag_ms: Option<f64>,
    /// Events lost on the host, all causes.
    pub lost_events: u64,
    /// Live latency: from an event's timestamp to its analysis.
    pub live_latency: LatencySummary,
}

/// `/api/hosts`.
#[derive(Debug, Clone, Serialize)]
pub struct HostsDoc {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// When this was built, ms since the epoch.
    pub now_ms: i64,
    /// Every host, by session then host.
    pub hosts: Vec<HostSummary>,
    /// Live latency of all hosts together.
    pub live_latency: LatencySummary,
}

/// A per-host document: the host and its report.
#[derive(Debug, Clone, Serialize)]
pub struct HostDoc<T: Serialize> {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The session.
    pub session: String,
    /// The host.
    pub host: String,
    /// The report.
    #[serde(flatten)]
    pub report: T,
}

/// Query parameters of the per-host endpoints.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostQuery {
    /// Which session, when the host is in several (default: the one
    /// connected most recently).
    pub session: Option<String>,
    /// Rows to return.
    pub limit: Option<usize>,
}

/// The summary of one host.
pub fn host_summary(e: &HostEntry) -> HostSummary {
    let status = lock(&e.status).clone();
    let live = lock(&e.live);
    let now = unix_now_ns();
    match live.as_ref() {
        Some(l) => HostSummary {
            status,
            events_applied: l.applied(),
            events_waiting: l.waiting(),
            newest_event_ns: l.newest(),
            lag_ms: l.newest().map(|t| now.saturating_sub(t) as f64 / 1e6),
            lost_events: l.lost().iter().sum(),
            live_latency: LatencySummary::of(l.latency()),
        },
        None => HostSummary {
            status,
            events_applied: 0,
            events_waiting: 0,
            newest_event_ns: None,
            lag_ms: None,
            lost_events: 0,
            live_latency: LatencySummary::default(),
        },
    }
}

/// The router of the API and `/metrics`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/hosts", get(hosts))
        .route("/api/hosts/{host}/cpus", get(cpus))
        .route("/api/hosts/{host}/threads", get(threads))
        .route("/api/hosts/{host}/syscalls", get(syscalls))
        .route("/api/hosts/{host}/lost", get(lost))
        .route("/api/hosts/{host}/vms", get(vms))
        .route("/api/rules", get(rules_doc))
        .route("/api/rules/reload", post(rules_reload))
        .route("/metrics", get(metrics_text))
        .merge(control::routes())
        .with_state(state)
}

async fn index() -> &'static str {
    "strata relay: GET /api/hosts, /api/hosts/<host>/{cpus,threads,syscalls,lost,vms}, /metrics (see docs/api.md)\n"
}

async fn hosts(State(s): State<ApiState>) -> Json<HostsDoc> {
    Json(HostsDoc {
        schema: SCHEMA,
        now_ms: crate::registry::unix_ms(),
        hosts: s.registry.hosts().iter().map(|e| host_summary(e)).collect(),
        live_latency: s.registry.latency_summary(),
    })
}

fn not_found(msg: String) -> Response {
    let body = serde_json::json!({ "schema": SCHEMA, "error": msg });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// Builds a per-host document with `f`, or a 404 naming what is missing.
fn per_host<T: Serialize>(
    s: &ApiState,
    host: &str,
    q: &HostQuery,
    f: impl FnOnce(&crate::analysis::LiveHost, usize) -> T,
) -> Response {
    let mut found = s.registry.find(host, q.session.as_deref());
    // The most recently connected session first, a snapshot's (history)
    // only when asked for by name.
    found.sort_by_cached_key(|e| {
        let (session, since) = {
            let st = lock(&e.status);
            (st.session.clone(), st.connected_since_ms)
        };
        let snapshot = s.registry.control_state.is_snapshot(&session);
        (snapshot, std::cmp::Reverse(since))
    });
    let Some(e) = found.first() else {
        return not_found(format!("no host {host:?} is known to this relay"));
    };
    let (session, name) = {
        let st = lock(&e.status);
        (st.session.clone(), st.host.clone())
    };
    let live = lock(&e.live);
    let Some(l) = live.as_ref() else {
        return not_found(format!("host {host:?} has sent no metadata yet"));
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    Json(HostDoc {
        schema: SCHEMA,
        session,
        host: name,
        report: f(l, limit),
    })
    .into_response()
}

async fn cpus(
    State(s): State<ApiState>,
    Path(host): Path<String>,
    Query(q): Query<HostQuery>,
) -> Response {
    per_host(&s, &host, &q, |l, _| -> CpusReport { l.cpus_report() })
}

async fn threads(
    State(s): State<ApiState>,
    Path(host): Path<String>,
    Query(q): Query<HostQuery>,
) -> Response {
    per_host(&s, &host, &q, |l, n| -> ThreadsReport {
        l.threads_report(n)
    })
}

async fn syscalls(
    State(s): State<ApiState>,
    Path(host): Path<String>,
    Query(q): Query<HostQuery>,
) -> Response {
    per_host(&s, &host, &q, |l, n| -> SyscallsReport {
        l.syscalls_report(n)
    })
}

async fn lost(
    State(s): State<ApiState>,
    Path(host): Path<String>,
    Query(q): Query<HostQuery>,
) -> Response {
    per_host(&s, &host, &q, |l, _| -> LostReport { l.lost_report() })
}

async fn vms(
    State(s): State<ApiState>,
    Path(host): Path<String>,
    Query(q): Query<HostQuery>,
) -> Response {
    per_host(&s, &host, &q, |l, n| -> VmHostReport {
        l.vms_report(&host, n)
    })
}

async fn metrics_text(State(s): State<ApiState>) -> Response {
    let body = metrics::render(&s.registry, s.metrics_top);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// `GET /api/rules`: every rule's state (404 without `--rules`).
async fn rules_doc(State(st): State<ApiState>) -> Response {
    match st.registry.rules.get() {
        Some(r) => {
            let r = Arc::clone(r);
            match tokio::task::spawn_blocking(move || r.doc()).await {
                Ok(d) => Json(d).into_response(),
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }
        None => (
            StatusCode::NOT_FOUND,
            "no rules: start the relay with --rules FILE\n",
        )
            .into_response(),
    }
}

/// `POST /api/rules/reload`: reads the rule file again; 422 with the error
/// (file:line: message) when it is bad, and the previous rules stay. Like
/// every control request it needs the API token.
async fn rules_reload(
    State(st): State<ApiState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body = if body.is_empty() {
        axum::body::Bytes::from_static(b"{}")
    } else {
        body
    };
    if let Err(resp) = control::authorized::<serde_json::Value>(&st, &headers, &body) {
        return *resp;
    }
    let Some(r) = st.registry.rules.get() else {
        return (
            StatusCode::NOT_FOUND,
            "no rules: start the relay with --rules FILE\n",
        )
            .into_response();
    };
    let r = Arc::clone(r);
    match tokio::task::spawn_blocking(move || r.reload()).await {
        Ok(Ok(n)) => Json(serde_json::json!({ "schema": SCHEMA, "reloaded": true, "rules": n })).into_response(),
        Ok(Err(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "schema": SCHEMA, "reloaded": false, "error": e.to_string(), "line": e.line() })),
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
