//! What a firing rule asks for, and the [`Actions`] trait the relay
//! implements to carry it out. Also the alert's JSON body and the webhook
//! request bytes (built here, sent by the relay: this crate does no I/O).

use serde::Serialize;

use crate::config::{ActionSpec, HostSel};

/// One firing of a rule on one host, with the actions the limits let through.
#[derive(Debug, Clone, PartialEq)]
pub struct Fire {
    /// The rule.
    pub rule: String,
    /// The host where the condition held.
    pub host: String,
    /// The process concerned: a pattern's matching thread, else the
    /// first `proc=` of the condition.
    pub process: Option<String>,
    /// The thread that matched a pattern, when one did.
    pub tid: Option<i32>,
    /// The VM concerned: the one a VM metric named, or with no `vm=` the
    /// one with the largest value.
    pub vm: Option<String>,
    /// The condition as written.
    pub condition: String,
    /// Each metric call with its value, as `call = value`.
    pub values: Vec<String>,
    /// The actions to carry out (those the global limits allowed).
    pub actions: Vec<ActionSpec>,
    /// Event time (ns since the epoch) at which the condition was known
    /// true, debounce included.
    pub condition_ts: i64,
    /// Wall time (ns since the epoch) the actions were requested.
    pub requested_ns: i64,
    /// Firings of this rule on this host so far, this one included.
    pub count: u64,
}

impl Fire {
    /// From the condition being true to the actions being requested, ns.
    pub fn reaction_ns(&self) -> u64 {
        self.requested_ns.saturating_sub(self.condition_ts).max(0) as u64
    }

    /// The hosts `sel` names, with `self` resolved to this fire's host and
    /// `all` to `connected`.
    pub fn targets(&self, sel: &HostSel, connected: &[String]) -> Vec<String> {
        match sel {
            HostSel::SelfHost => vec![self.host.clone()],
            HostSel::All => connected.to_vec(),
            HostSel::Named(v) => v.clone(),
        }
    }
}

/// An action that could not be carried out.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ActionError {
    /// The relay has no way to do this yet (no control path to agents).
    #[error("{0}: not connected yet (the relay has no control path to agents in this build)")]
    NotConnected(&'static str),
    /// It was tried and failed.
    #[error("{0}")]
    Failed(String),
}

/// What the relay can do for rules. Every method returns once the request
/// is made (queued or sent), not when it completes.
pub trait Actions: Send + Sync {
    /// Asks `hosts` for a flight-recorder snapshot of `before_ns` of
    /// history and `after_ns` after now.
    fn snapshot(
        &self,
        fire: &Fire,
        hosts: &HostSel,
        before_ns: u64,
        after_ns: u64,
    ) -> Result<(), ActionError>;
    /// Enables (or disables) `events` on `hosts` for `for_ns`.
    fn set_events(
        &self,
        fire: &Fire,
        hosts: &HostSel,
        events: &[String],
        enable: bool,
        for_ns: u64,
    ) -> Result<(), ActionError>;
    /// Logs the alert, counts it, and POSTs [`AlertBody`] to `webhook`.
    fn alert(&self, fire: &Fire, webhook: Option<&str>) -> Result<(), ActionError>;
}

/// Carries out every action of `fire`; returns each one's kind and result.
pub fn perform(a: &dyn Actions, fire: &Fire) -> Vec<(&'static str, Result<(), ActionError>)> {
    fire.actions
        .iter()
        .map(|x| {
            let r = match x {
                ActionSpec::Snapshot {
                    hosts,
                    before_ns,
                    after_ns,
                } => a.snapshot(fire, hosts, *before_ns, *after_ns),
                ActionSpec::Events {
                    hosts,
                    events,
                    enable,
                    for_ns,
                } => a.set_events(fire, hosts, events, *enable, *for_ns),
                ActionSpec::Alert { webhook } => a.alert(fire, webhook.as_deref()),
            };
            (x.kind(), r)
        })
        .collect()
}

/// The JSON body of a webhook alert (`schema` = `strata-alert/1`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertBody<'a> {
    /// `strata-alert/1`.
    pub schema: &'static str,
    /// The rule.
    pub rule: &'a str,
    /// The host.
    pub host: &'a str,
    /// The process concerned, when known.
    pub process: Option<&'a str>,
    /// The matching thread, for pattern rules.
    pub tid: Option<i32>,
    /// The VM concerned, for VM metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm: Option<&'a str>,
    /// The condition.
    pub condition: &'a str,
    /// Metric values, `call = value`.
    pub values: &'a [String],
    /// Firings of this rule on this host so far.
    pub count: u64,
    /// When the condition was known true, ms since the epoch.
    pub condition_ms: i64,
    /// When the alert was requested, ms since the epoch.
    pub fired_ms: i64,
    /// Condition to request, ms.
    pub reaction_ms: f64,
}

impl<'a> AlertBody<'a> {
    /// The body for `f`.
    pub fn of(f: &'a Fire) -> AlertBody<'a> {
        AlertBody {
            schema: "strata-alert/1",
            rule: &f.rule,
            host: &f.host,
            process: f.process.as_deref(),
            tid: f.tid,
            vm: f.vm.as_deref(),
            condition: &f.condition,
            values: &f.values,
            count: f.count,
            condition_ms: f.condition_ts / 1_000_000,
            fired_ms: f.requested_ns / 1_000_000,
            reaction_ms: f.reaction_ns() as f64 / 1e6,
        }
    }
}

/// Where and what to send for a webhook: `host:port` and the request bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// `host:port` to connect to.
    pub authority: String,
    /// The whole HTTP/1.1 request.
    pub bytes: Vec<u8>,
}

/// Builds a `POST` of `body` (JSON) to an `http://host[:port]/path` URL.
pub fn webhook_request(url: &str, body: &[u8]) -> Result<WebhookRequest, ActionError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ActionError::Failed(format!("webhook {url:?} is not an http:// URL")))?;
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let ok = |s: &str| !s.is_empty() && !s.bytes().any(|b| b <= b' ' || b == 0x7f);
    if !ok(auth) || !ok(path) || auth.contains('@') {
        return Err(ActionError::Failed(format!(
            "webhook {url:?} has a bad host or path"
        )));
    }
    let authority = if auth
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        auth.to_string()
    } else {
        format!("{auth}:80")
    };
    let mut bytes = format!(
        "POST {path} HTTP/1.1\r\nHost: {auth}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: strata-relay\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    Ok(WebhookRequest { authority, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_bytes() {
        let r = webhook_request("http://127.0.0.1:9000/hook", b"{}").unwrap();
        assert_eq!(r.authority, "127.0.0.1:9000");
        let s = String::from_utf8(r.bytes).unwrap();
        assert!(s.starts_with("POST /hook HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n"));
        assert!(s.ends_with("\r\n\r\n{}"));
        assert_eq!(
            webhook_request("http://example", b"").unwrap().authority,
            "example:80"
        );
        assert!(webhook_request("https://x/", b"").is_err());
        assert!(webhook_request("http://a b/", b"").is_err());
        assert!(webhook_request("http://x/\r\nEvil: 1", b"").is_err());
    }
}
