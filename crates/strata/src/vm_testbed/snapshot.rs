//! The testbed's flight-recorder snapshot: once every guest's workload has
//! run for a while, one snapshot of the host and all guests through the
//! relay's control API, as `strata ctl snapshot` takes it. The relay gives
//! every host one instant, converted through each guest's live clock sync.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A snapshot request running in the background; its answer once done.
#[derive(Debug)]
pub struct Pending {
    handle: JoinHandle<()>,
    answer: Arc<Mutex<Option<Result<serde_json::Value, String>>>>,
}

/// Asks the relay at `http` (API token `token`) for one snapshot of every
/// connected host, `before` of history up to now.
pub fn request(http: SocketAddr, token: &str, before: Duration) -> Pending {
    let answer = Arc::new(Mutex::new(None));
    let out = Arc::clone(&answer);
    let url = format!("http://{http}/api/control/snapshot");
    let auth = format!("Bearer {token}");
    let body = serde_json::json!({
        "hosts": [],
        "before_ms": before.as_millis() as u64,
        "after_ms": 0,
    });
    let handle = std::thread::spawn(move || {
        let api = ureq::Agent::from(
            ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(90)))
                .http_status_as_error(false)
                .build(),
        );
        let result = api
            .post(&url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .map_err(|e| format!("cannot reach the relay at {url}: {e}"))
            .and_then(|mut r| {
                let ok = r.status().is_success();
                let text = r
                    .body_mut()
                    .with_config()
                    .limit(1 << 20)
                    .read_to_string()
                    .map_err(|e| format!("reading the relay's answer: {e}"))?;
                if ok {
                    serde_json::from_str(&text).map_err(|e| format!("bad JSON from the relay: {e}"))
                } else {
                    Err(format!("the relay refused the snapshot: {text}"))
                }
            });
        *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
    });
    Pending { handle, answer }
}

impl Pending {
    /// Waits for the answer.
    pub fn finish(self) -> Result<serde_json::Value, String> {
        let _ = self.handle.join();
        let answer = self.answer.lock().unwrap_or_else(|e| e.into_inner()).take();
        answer.unwrap_or_else(|| Err("the snapshot request ended without an answer".into()))
    }
}

/// Copies the VM hints next to the snapshot's host directories, so that
/// `strata vm report DATA/snapshots/<id>` names the VMs as the run did.
pub fn add_hints(data: &Path, report: &serde_json::Value, hints: &Path) {
    let Some(id) = report["id"].as_str() else {
        return;
    };
    // The id comes from the relay: a plain name, never a path.
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return;
    }
    let dir = data.join("snapshots").join(id);
    if dir.is_dir() {
        let _ = std::fs::copy(hints, dir.join(crate::vm::report::HINTS_FILE));
    }
}
