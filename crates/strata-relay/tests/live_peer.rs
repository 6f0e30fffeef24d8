//! Live latency against the peer, in the same run: lttng-relayd serving a
//! real LTTng userspace session with a 100 ms live timer, and this server
//! serving a trace written at the same cadence (packets that fill in about
//! 100 ms, watermarks every 100 ms), both followed by babeltrace2. Also
//! this server with holding off, which is what lttng-relayd does.

#[path = "live_util.rs"]
mod util;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_relay::live::LiveConfig;
use util::{follow_live, missing_tools, summary, LIVE_FOR};

/// About 70 bytes per event at one event per millisecond: a 7 KiB packet
/// fills in about 100 ms, as LTTng's timer flushes them.
const PACKET: usize = 7 * 1024;
const TIMER: Duration = Duration::from_millis(100);

fn runs(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn lttng(args: &[&str]) -> Result<(), String> {
    let out = Command::new("lttng")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "lttng {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// What the LTTng side started, undone on drop.
struct LttngSide {
    session: String,
    relayd: Option<Child>,
    sessiond_pid: Option<String>,
}

impl Drop for LttngSide {
    fn drop(&mut self) {
        let _ = lttng(&["destroy", &self.session]);
        if let Some(mut r) = self.relayd.take() {
            let _ = r.kill();
            let _ = r.wait();
        }
        if let Some(pid) = self.sessiond_pid.take() {
            let _ = Command::new("kill").arg(&pid).status();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn sessiond_pids() -> String {
    Command::new("pgrep")
        .args(["-x", "lttng-sessiond"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Event time -> printed by babeltrace2, in ms, for an LTTng userspace
/// session (malloc events of a process calling malloc every millisecond)
/// served by lttng-relayd with a 100 ms live timer.
fn lttng_latencies() -> Result<Vec<f64>, String> {
    for (tool, arg) in [
        ("lttng", "--version"),
        ("lttng-sessiond", "--version"),
        ("lttng-relayd", "--version"),
        ("python3", "--version"),
    ] {
        if !runs(tool, arg) {
            return Err(format!("{tool} is not installed"));
        }
    }
    let cache = Command::new("ldconfig")
        .arg("-p")
        .output()
        .map_err(|e| e.to_string())?;
    if !String::from_utf8_lossy(&cache.stdout).contains("liblttng-ust-libc-wrapper.so.1") {
        return Err("liblttng-ust-libc-wrapper.so.1 is not installed".into());
    }
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut side = LttngSide {
        session: format!("strata-live-peer-{}", std::process::id()),
        relayd: None,
        sessiond_pid: None,
    };
    if sessiond_pids().trim().is_empty() {
        lttng_daemon()?;
        side.sessiond_pid = sessiond_pids()
            .split_whitespace()
            .next()
            .map(str::to_string);
    }
    let (c, d, l) = (free_port(), free_port(), free_port());
    let relayd = Command::new("lttng-relayd")
        .args([
            format!("--control-port=tcp://127.0.0.1:{c}"),
            format!("--data-port=tcp://127.0.0.1:{d}"),
            format!("--live-port=tcp://127.0.0.1:{l}"),
            format!("--output={}", tmp.path().display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    side.relayd = Some(relayd);
    if !util::wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", l)).is_ok()
    }) {
        return Err("lttng-relayd did not listen".into());
    }
    let live_us = TIMER.as_micros().to_string();
    lttng(&[
        "create",
        &side.session,
        &format!("--live={live_us}"),
        &format!("--set-url=net://127.0.0.1:{c}:{d}"),
    ])?;
    lttng(&[
        "enable-event",
        "-u",
        "lttng_ust_libc:malloc",
        "-s",
        &side.session,
    ])?;
    lttng(&["start", &side.session])?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(|e| e.to_string())?;
    let url = format!("net://127.0.0.1:{l}/host/{}/{}", host.trim(), side.session);
    let mut bt = Command::new("stdbuf")
        .args([
            "-oL",
            "babeltrace2",
            "--clock-seconds",
            "--input-format=lttng-live",
            &url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let out = bt.stdout.take().ok_or("no stdout")?;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = Arc::clone(&lines);
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            l2.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((now, line));
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    let app = format!(
        "import ctypes,time\nlibc=ctypes.CDLL(None)\nlibc.malloc.restype=ctypes.c_void_p\nlibc.free.argtypes=[ctypes.c_void_p]\nt=time.time()\nwhile time.time()-t<{}:\n    libc.free(libc.malloc(64)); time.sleep(0.001)\n",
        LIVE_FOR.as_secs_f64()
    );
    let status = Command::new("python3")
        .args(["-c", &app])
        .env("LD_PRELOAD", "liblttng-ust-libc-wrapper.so.1")
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("the traced program failed".into());
    }
    std::thread::sleep(TIMER * 3);
    let _ = lttng(&["destroy", &side.session]);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) && bt.try_wait().ok().flatten().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = bt.kill();
    let _ = bt.wait();
    let _ = reader.join();
    drop(side);
    let lines = lines.lock().unwrap_or_else(|e| e.into_inner());
    let lat: Vec<f64> = lines
        .iter()
        .filter_map(|(at, line)| {
            let ts: f64 = line.strip_prefix('[')?.split(']').next()?.parse().ok()?;
            Some((at - ts) * 1e3)
        })
        .collect();
    if lat.len() < 100 {
        return Err(format!(
            "babeltrace2 printed only {} LTTng events",
            lat.len()
        ));
    }
    Ok(lat)
}

fn lttng_daemon() -> Result<(), String> {
    let st = Command::new("lttng-sessiond")
        .args(["--daemonize", "--no-kernel"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if st.success() {
        Ok(())
    } else {
        Err("lttng-sessiond did not start".into())
    }
}

#[test]
fn latency_against_lttng_relayd_in_the_same_run() {
    if let Some(why) = missing_tools() {
        println!("skipping: {why}");
        return;
    }
    let print = |what: &str, v: &mut Vec<f64>| -> f64 {
        let (min, med, p90, max) = summary(v);
        println!(
            "{what}: event time -> printed by babeltrace2: {} events, min {min:.1} ms, median {med:.1} ms, p90 {p90:.1} ms, max {max:.1} ms",
            v.len()
        );
        med
    };
    let mut ours = follow_live(1, TIMER, PACKET, LiveConfig::default());
    let ours_med = print(
        "strata live server, ~100 ms packets, 100 ms watermarks",
        &mut ours.event_ms,
    );
    let no_hold = LiveConfig {
        max_hold: Duration::ZERO,
        ..LiveConfig::default()
    };
    let mut plain = follow_live(1, TIMER, PACKET, no_hold);
    print(
        "strata live server without holding (as lttng-relayd answers)",
        &mut plain.event_ms,
    );
    match lttng_latencies() {
        Ok(mut v) => {
            let peer_med = print(
                "lttng-relayd 2.13, LTTng userspace session, 100 ms live timer",
                &mut v,
            );
            assert!(
                ours_med < peer_med,
                "strata median {ours_med:.1} ms, lttng-relayd {peer_med:.1} ms"
            );
        }
        Err(why) => println!("skipping the lttng-relayd side: {why}"),
    }
}
