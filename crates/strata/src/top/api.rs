//! A client of the relay's HTTP API (`docs/api.md`, schema
//! `strata-relay-api/1`): only the fields `strata top` shows, each defaulted
//! so that a relay adding fields never breaks the viewer.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::time::Duration;

/// Bodies larger than this are refused: a viewer reads small documents.
const MAX_BODY: u64 = 16 << 20;

/// Live-latency percentiles, ms.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
}

/// One host of `/api/hosts`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Host {
    /// `connected` or `disconnected`.
    pub state: String,
    /// The session.
    pub session: String,
    /// The host id.
    pub host: String,
    /// The kernel's host name.
    pub hostname: String,
    /// CPUs the host declares.
    pub cpus: u32,
    /// Events stored since the relay started.
    pub events: u64,
    /// How far the live view is behind the host, ms.
    pub lag_ms: Option<f64>,
    /// Events lost on the host.
    pub lost_events: u64,
    /// Event timestamp to analysis.
    pub live_latency: Latency,
}

/// `/api/hosts`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Hosts {
    /// Every host.
    pub hosts: Vec<Host>,
}

/// One CPU now.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Cpu {
    /// CPU number.
    pub cpu: u32,
    /// `idle`, `user`, `syscall`, `irq`, `softirq` or `unknown`.
    pub mode: String,
    /// The running thread.
    pub tid: Option<i32>,
    /// Its name.
    pub comm: Option<String>,
    /// Busy percent over the window.
    pub usage_pct: f64,
}

/// `/api/hosts/<host>/cpus`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Cpus {
    /// Per CPU.
    pub cpus: Vec<Cpu>,
}

/// A thread's CPU use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Thread {
    /// Thread id.
    pub tid: i32,
    /// Process id.
    pub pid: Option<i32>,
    /// Thread name.
    pub comm: String,
    /// Process name.
    pub process: String,
    /// Percent of one CPU.
    pub cpu_pct: f64,
}

/// A process's CPU use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Process {
    /// Process id.
    pub pid: i32,
    /// Name.
    pub comm: String,
    /// Threads that ran.
    pub threads: u32,
    /// Percent of one CPU.
    pub cpu_pct: f64,
}

/// `/api/hosts/<host>/threads`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Threads {
    /// Busy share of all CPUs.
    pub total_pct: f64,
    /// Top threads.
    pub threads: Vec<Thread>,
    /// Top processes.
    pub processes: Vec<Process>,
}

/// Duration percentiles, µs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Durations {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// One syscall's rate and latency.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Syscall {
    /// Name.
    pub name: String,
    /// Calls per second over the window.
    pub rate_per_s: f64,
    /// Calls since the host connected.
    pub total_count: u64,
    /// Failed calls since the host connected.
    pub total_errors: u64,
    /// Durations of recent calls.
    pub recent: Durations,
}

/// `/api/hosts/<host>/syscalls`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Syscalls {
    /// All syscalls per second.
    pub rate_per_s: f64,
    /// Per syscall.
    pub syscalls: Vec<Syscall>,
}

/// Losses of one CPU.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CpuLost {
    /// CPU.
    pub cpu: u32,
    /// Events lost.
    pub lost: u64,
}

/// `/api/hosts/<host>/lost`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Lost {
    /// All losses.
    pub total: u64,
    /// Per CPU.
    pub per_cpu: Vec<CpuLost>,
    /// Events applied late.
    pub late_events: u64,
}

/// Shares of a vCPU's (or VM's) time, % of the period.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VmPcts {
    /// Running guest code.
    pub running: f64,
    /// In the hypervisor (`None` under TCG: not observable).
    pub vmm: Option<f64>,
    /// Waiting for a host CPU.
    pub preempted: f64,
    /// Halted or blocked.
    pub idle: f64,
    /// Not known.
    pub unknown: f64,
}

/// Where a vCPU's (or VM's) time went since the relay first saw the host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VmTimes {
    /// Running, ns.
    pub running_ns: i64,
    /// Hypervisor, ns (`None`: not observable).
    pub vmm_ns: Option<i64>,
    /// Preempted, ns.
    pub preempted_ns: i64,
    /// Idle, ns.
    pub idle_ns: i64,
    /// Unknown, ns.
    pub unknown_ns: i64,
    /// Preempted share of the time it wanted a CPU, %.
    pub steal_pct: Option<f64>,
    /// The same as shares of the period.
    pub pct: VmPcts,
}

/// Who ran while a vCPU waited.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Preempter {
    /// `vcpu`, `thread`, `idle` or `unknown`.
    pub kind: String,
    /// For a vCPU: its VM.
    pub vm: Option<String>,
    /// For a vCPU: its index.
    pub vcpu: Option<u32>,
    /// Thread name.
    pub comm: String,
    /// Share of the preempted time, %.
    pub pct: f64,
}

/// One vCPU.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Vcpu {
    /// Index in its VM.
    pub id: u32,
    /// Host thread.
    pub tid: i32,
    /// Its times.
    pub times: VmTimes,
    /// Who preempted it, most first.
    pub preempted_by: Vec<Preempter>,
}

/// One exit reason.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Exit {
    /// Its name.
    pub reason: String,
    /// How many.
    pub count: u64,
}

/// One VM.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Vm {
    /// Name (`-name`, else `pid N`).
    pub name: String,
    /// UUID.
    pub uuid: Option<String>,
    /// `kvm`, `tcg` or `unknown`.
    pub accel: String,
    /// All vCPUs together.
    pub times: VmTimes,
    /// Per vCPU.
    pub vcpus: Vec<Vcpu>,
    /// In-kernel exits, most first.
    pub exits: Vec<Exit>,
    /// Userspace exits, most first.
    pub userspace_exits: Vec<Exit>,
    /// Who preempted its vCPUs.
    pub preempted_by: Vec<Preempter>,
}

/// Overcommit of the host's CPUs by runnable vCPUs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Overcommit {
    /// Host CPUs.
    pub physical_cpus: u32,
    /// Most vCPUs runnable at once.
    pub max_runnable: u32,
    /// Time overcommitted, ns.
    pub total_ns: i64,
}

/// `/api/hosts/<host>/vms`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Vms {
    /// Period covered, ns.
    pub duration_ns: i64,
    /// Overcommit.
    pub overcommit: Overcommit,
    /// The VMs.
    pub vms: Vec<Vm>,
}

/// Everything shown for the selected host.
#[derive(Debug, Clone, Default)]
pub struct HostView {
    /// The VMs it runs (empty from a relay without the VM view).
    pub vms: Vms,
    /// CPUs now.
    pub cpus: Cpus,
    /// Top threads and processes.
    pub threads: Threads,
    /// Syscalls.
    pub syscalls: Syscalls,
    /// Losses.
    pub lost: Lost,
}

/// A relay's API at a base URL (`http://relay:8080`).
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the API at `addr` (`host:port` or a full `http://` URL).
    pub fn new(addr: &str) -> Client {
        let base = if addr.contains("://") {
            addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{addr}")
        };
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(3)))
            .http_status_as_error(false)
            .build();
        Client {
            base,
            agent: config.into(),
        }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| format!("cannot reach the relay at {url}: {e}"))?;
        let status = resp.status();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(|e| format!("reading {url}: {e}"))?;
        if !status.is_success() {
            let why = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_string))
                .unwrap_or(body);
            return Err(format!("{url}: {status}: {why}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("{url} answered something unexpected: {e}"))
    }

    /// The hosts the relay knows.
    pub fn hosts(&self) -> Result<Hosts, String> {
        self.get("/api/hosts")
    }

    /// The views of one host, with `rows` threads and syscalls.
    pub fn host(&self, host: &Host, rows: usize) -> Result<HostView, String> {
        let q = format!("?session={}&limit={rows}", percent_encode(&host.session));
        let base = format!("/api/hosts/{}", percent_encode(&host.host));
        Ok(HostView {
            cpus: self.get(&format!("{base}/cpus{q}"))?,
            threads: self.get(&format!("{base}/threads{q}"))?,
            syscalls: self.get(&format!("{base}/syscalls{q}"))?,
            lost: self.get(&format!("{base}/lost{q}"))?,
            vms: self.get(&format!("{base}/vms{q}")).unwrap_or_default(),
        })
    }
}

/// Escapes everything but unreserved URL characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_with_extra_or_missing_fields_parse() {
        let h: Hosts = serde_json::from_str(
            r#"{"schema":"strata-relay-api/1","hosts":[{"host":"web1","state":"connected","new_field":1}]}"#,
        )
        .unwrap();
        assert_eq!(h.hosts[0].host, "web1");
        assert_eq!(h.hosts[0].lag_ms, None);
    }

    #[test]
    fn names_are_escaped_in_urls() {
        assert_eq!(percent_encode("web-1.a_b"), "web-1.a_b");
        assert_eq!(percent_encode("a b/../c"), "a%20b%2F..%2Fc");
    }
}
