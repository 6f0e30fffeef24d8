//! VMs live in the relay: a real QEMU (TCG, no guest OS needed) runs while
//! a live agent streams this host to a relay. The relay's API must show
//! the VM by its `-name` and `-uuid`, with its vCPU thread (a thread of
//! that QEMU process), `/metrics` and `strata top`'s VMs view must show
//! it; an agent that says it runs in that VM (`--vm-uuid`) must be paired
//! with it; and once QEMU exits the VM must leave the live view after the
//! grace period.

mod common;
mod relay_support;

use relay_support::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Kills QEMU on drop, so a failing test leaves nothing running.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Stops an agent with SIGTERM on drop, so that it removes its tracefs
/// instance (a killed agent leaves it for the next agent to clean up).
struct Stopping(Agent);

impl Drop for Stopping {
    fn drop(&mut self) {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.0.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn have_qemu() -> bool {
    Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The VM named `name` in the relay's live view of `host`, if any.
fn find_vm(relay: &Relay, host: &str, name: &str) -> Option<serde_json::Value> {
    let (code, body) = relay.get(&format!("/api/hosts/{host}/vms?limit=5"));
    if code != 200 {
        return None;
    }
    let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
    doc["vms"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
        .cloned()
}

#[test]
fn the_relay_names_a_live_vm_and_drops_it_after_qemu_exits() {
    if !common::skip_unless_root_with_tracefs() {
        return;
    }
    if !have_qemu() {
        println!("SKIP: qemu-system-x86_64 is not installed");
        return;
    }
    let s = Setup::new();
    let relay = Relay::start(&s, &["--vm-grace", "2s"]);
    let host = "vmlive-host";
    let _agent = Stopping(Agent::start(
        relay.ingest,
        &s,
        &["--insecure", "--host-id", host, "--events", "sched"],
    ));
    let name = format!("vmlive-{}", std::process::id());
    let uuid = "6f1c1b7e-0d7a-4b7e-9a49-5d2c0c6b7a01";
    let qemu = Qemu(
        Command::new("qemu-system-x86_64")
            .args(["-name", &format!("{name},debug-threads=on")])
            .args(["-uuid", uuid])
            .args(["-accel", "tcg", "-m", "32", "-display", "none"])
            .args(["-nodefaults", "-no-reboot"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu starts"),
    );
    let qemu_pid = qemu.0.id() as i64;

    // The VM appears under its -name, with its UUID and its vCPU thread.
    let deadline = Instant::now() + Duration::from_secs(30);
    let vm = loop {
        if let Some(vm) = find_vm(&relay, host, &name) {
            if vm["vcpus"].as_array().is_some_and(|v| !v.is_empty()) {
                break vm;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the relay never showed VM {name}: {}",
            relay.get(&format!("/api/hosts/{host}/vms")).1
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(vm["uuid"], uuid);
    assert_eq!(vm["pid"].as_i64(), Some(qemu_pid));
    assert_eq!(vm["accel"], "tcg");
    let vcpu = &vm["vcpus"][0];
    assert_eq!(vcpu["id"], 0);
    assert_eq!(vcpu["comm"], "CPU 0/TCG");
    let tid = vcpu["tid"].as_i64().expect("a vCPU tid");
    assert!(
        std::path::Path::new(&format!("/proc/{qemu_pid}/task/{tid}")).exists(),
        "vCPU thread {tid} is not a thread of QEMU {qemu_pid}"
    );

    // /metrics names it too.
    let (_, metrics) = relay.get("/metrics");
    let info = format!("vm=\"{name}\",uuid=\"{uuid}\",pid=\"{qemu_pid}\",accel=\"tcg\"");
    assert!(metrics.contains(&info), "no strata_vm_info for {name}");
    assert!(metrics.contains(&format!("strata_vm_vcpu_state_seconds_total{{session=\"strata\",host=\"{host}\",vm=\"{name}\",vcpu=\"0\",state=")));

    // strata top's VMs view lists the VM and its vCPU.
    let out = Command::new(STRATA)
        .args(["top", "--relay", &relay.http.to_string(), "--once"])
        .args(["--view", "vms", "--host", host, "--size", "150x20"])
        .output()
        .expect("strata top runs");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "top failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(screen.contains("4 VMs"), "{screen}");
    assert!(
        screen.contains(&format!("{name} (tcg, 1 vCPU)")),
        "{screen}"
    );
    let vcpu_line = screen
        .lines()
        .find(|l| l.contains("vCPU 0"))
        .unwrap_or_else(|| panic!("no vCPU row: {screen}"));
    assert!(vcpu_line.contains(&tid.to_string()), "{vcpu_line}");

    // An agent that says it runs inside this VM (here the host itself,
    // standing in for a guest) is paired with it by UUID: the VM gets a
    // fused view fed by that agent's switches.
    let guest_id = format!("{name}-guest");
    let _guest = Stopping(Agent::start(
        relay.ingest,
        &s,
        &[
            "--insecure",
            "--host-id",
            &guest_id,
            "--events",
            "sched",
            "--vm-uuid",
            uuid,
        ],
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let vm = find_vm(&relay, host, &name).expect("the VM is still there");
        let g = &vm["guest"];
        if g["switches"].as_u64().is_some_and(|n| n > 0) {
            assert_eq!(g["trace"], format!("host {guest_id}"));
            assert_eq!(g["paired_by"], "uuid");
            assert!(
                g["threads"].as_array().is_some_and(|t| !t.is_empty()),
                "no guest threads: {g}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the guest agent was never paired with VM {name}: {vm}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // QEMU exits: the VM leaves the live view after the grace period.
    drop(qemu);
    let gone_at = Instant::now();
    while find_vm(&relay, host, &name).is_some() {
        assert!(
            gone_at.elapsed() < Duration::from_secs(30),
            "VM {name} is still shown 30 s after QEMU exited"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
