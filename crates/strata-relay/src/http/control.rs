//! The control endpoints: sessions (open), event changes and snapshots
//! (POST, `Authorization: Bearer <token>` required), and the rule endpoints
//! answered here until a rule engine is loaded.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{ApiState, SCHEMA};
use crate::control::ControlError;
use crate::registry::lock;

/// The largest control request body accepted.
const MAX_REQUEST: usize = 64 << 10;

/// The control routes, to merge into the API router.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/sessions", get(sessions))
        .route("/api/control/events", post(events))
        .route("/api/control/snapshot", post(snapshot))
}

/// A JSON error body.
#[derive(Debug, Serialize)]
struct ErrorDoc {
    error: String,
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(ErrorDoc { error: msg.into() })).into_response()
}

fn control_error(e: ControlError) -> Response {
    let code = match &e {
        ControlError::NotConnected { .. } => StatusCode::NOT_FOUND,
        ControlError::Ambiguous { .. } => StatusCode::CONFLICT,
        ControlError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ControlError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        ControlError::Refused { .. } => StatusCode::BAD_GATEWAY,
        ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
    };
    error(code, e.to_string())
}

/// Checks the bearer token, then parses the body.
pub(super) fn authorized<T: DeserializeOwned>(
    state: &ApiState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, Box<Response>> {
    let st = &state.registry.control_state;
    if !st.has_token() {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "the control API is disabled: start the relay with --api-token-file FILE",
        )));
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        None => {
            return Err(Box::new(error(
                StatusCode::UNAUTHORIZED,
                "control requests need an `Authorization: Bearer <token>` header (strata ctl --token-file FILE)",
            )))
        }
        Some(t) if !st.token_ok(t) => {
            return Err(Box::new(error(StatusCode::UNAUTHORIZED, "the API token is wrong")))
        }
        Some(_) => {}
    }
    if body.len() > MAX_REQUEST {
        return Err(Box::new(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {MAX_REQUEST} bytes"),
        )));
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("the request body is not the expected JSON: {e}"),
        ))
    })
}

/// One session of `/api/sessions`.
#[derive(Debug, Serialize)]
struct SessionDoc {
    session: String,
    snapshot: bool,
    hosts: Vec<SessionHost>,
}

#[derive(Debug, Serialize)]
struct SessionHost {
    host: String,
    state: &'static str,
    trace_dir: String,
    events: u64,
}

#[derive(Debug, Serialize)]
struct SessionsDoc {
    schema: &'static str,
    sessions: Vec<SessionDoc>,
}

async fn sessions(State(state): State<ApiState>) -> Response {
    let mut by: BTreeMap<String, Vec<SessionHost>> = BTreeMap::new();
    for e in state.registry.hosts() {
        let s = lock(&e.status).clone();
        by.entry(s.session.clone()).or_default().push(SessionHost {
            host: s.host,
            state: s.state,
            trace_dir: s.trace_dir,
            events: s.events,
        });
    }
    let st = &state.registry.control_state;
    let sessions = by
        .into_iter()
        .map(|(session, hosts)| SessionDoc {
            snapshot: st.is_snapshot(&session),
            session,
            hosts,
        })
        .collect();
    Json(SessionsDoc {
        schema: SCHEMA,
        sessions,
    })
    .into_response()
}

/// The body of `POST /api/control/events`.
#[derive(Debug, Deserialize)]
struct EventsRequest {
    host: String,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    enable: Vec<String>,
    #[serde(default)]
    disable: Vec<String>,
    /// How long the change lasts, ms (absent: until changed again).
    #[serde(default)]
    for_ms: Option<u64>,
}

async fn events(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let req: EventsRequest = match authorized(&state, &headers, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let ctl = state.registry.control();
    let duration = req.for_ms.map(Duration::from_millis);
    let session = req.session.as_deref();
    let r = match (req.enable.is_empty(), req.disable.is_empty()) {
        (false, true) => {
            ctl.enable_events(session, &req.host, &req.enable, duration)
                .await
        }
        (true, false) => {
            ctl.disable_events(session, &req.host, &req.disable, duration)
                .await
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give either `enable` or `disable` (a list of event groups or events)",
            )
        }
    };
    match r {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => control_error(e),
    }
}

/// The body of `POST /api/control/snapshot`.
#[derive(Debug, Deserialize)]
struct SnapshotRequest {
    /// Hosts (empty or absent: every connected host).
    #[serde(default)]
    hosts: Vec<String>,
    before_ms: u64,
    #[serde(default)]
    after_ms: u64,
}

async fn snapshot(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let req: SnapshotRequest = match authorized(&state, &headers, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let r = state
        .registry
        .control()
        .snapshot(
            &req.hosts,
            Duration::from_millis(req.before_ms),
            Duration::from_millis(req.after_ms),
        )
        .await;
    match r {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => control_error(e),
    }
}
