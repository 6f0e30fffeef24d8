//! A real Prometheus scrapes the relay's `/metrics` while a replay agent
//! streams, and the test reads series back through Prometheus's HTTP API.

mod relay_support;

use relay_support::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET` on Prometheus's query API; the result vector.
fn query(port: u16, q: &str) -> Vec<serde_json::Value> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (code, body) = http_get(addr, &format!("/api/v1/query?query={enc}"));
    if code != 200 {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

#[test]
fn prometheus_scrapes_relay_metrics() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIP: prometheus is not installed (scripts/install-deps installs it)");
        return;
    }
    let Some(src) = shared_trace("tc-many-threads") else {
        return;
    };
    let s = Setup::new();
    let relay = Relay::start(&s, &[]);
    // A slow replay, so that the host is live while Prometheus scrapes.
    let mut agent = Agent::replay(relay.ingest, &s, &src, "promhost", 40_000, &[]);

    let port = free_port();
    let cfg = s.dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: strata\n    static_configs:\n      - targets: ['{}']\n",
            relay.http
        ),
    )
    .unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            s.dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut events = None;
    let mut cpu = Vec::new();
    while Instant::now() < deadline {
        let r = query(port, "strata_relay_events_total");
        if let Some(v) = r
            .first()
            .and_then(|x| x["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok())
        {
            if v > 0.0 {
                events = Some(v);
                cpu = query(port, "strata_host_cpu_usage_ratio{host=\"promhost\"}");
                if !cpu.is_empty() {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = prom.kill();
    let _ = prom.wait();
    let events = events.expect("Prometheus never saw strata_relay_events_total above 0");
    assert!(events <= 240_644.0, "{events}");
    assert!(!cpu.is_empty(), "no per-CPU usage series for promhost");
    for series in &cpu {
        let v: f64 = series["value"][1].as_str().unwrap().parse().unwrap();
        assert!(
            (0.0..=1.0).contains(&v),
            "usage ratio {v} out of range: {series}"
        );
        assert_eq!(series["metric"]["session"], "strata");
    }
    assert!(agent.wait(Duration::from_secs(60)), "{}", agent.log());
}
