//! `strata vm report` on generated host and guest traces (the generator of
//! strata-analysis's ground-truth tests): several paths gathered into one
//! set, guests paired by hostname or `--guest`, hints loaded from beside the
//! host trace, tables and JSON.

#[path = "../../strata-analysis/tests/vmgen/mod.rs"]
mod vmgen;

use std::path::Path;
use std::process::Command;

use vmgen::{Gen, RUNNABLE, SLEEPING, T};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Two KVM VMs sharing one CPU (pids 100 and 200), and a guest trace of the
/// first: `hog` then `sh` on its vCPU 0.
fn write_traces(root: &Path) {
    let (qa, va) = (T(100, "qemu-system-x86"), T(101, "CPU 0/KVM"));
    let (qb, vb) = (T(200, "qemu-system-x86"), T(201, "CPU 0/KVM"));
    let idle = T(0, "swapper/0");
    let mut g = Gen::new(1);
    g.fork(0, 0, qa, va);
    g.fork(0, 0, qb, vb);
    g.switch(0, 0, idle, SLEEPING, va);
    g.entry(0, 100, 101, 0);
    g.exit(0, 1000, 101, 0, 1);
    g.switch(0, 1100, va, RUNNABLE, vb);
    g.entry(0, 1200, 201, 0);
    g.switch(0, 2000, vb, RUNNABLE, va);
    g.entry(0, 2100, 101, 0);
    g.exit(0, 3000, 101, 0, 1);
    g.write(&root.join("host"), "hv1");
    let mut guest = Gen::new(1);
    guest.switch(0, 0, idle, SLEEPING, T(1234, "hog"));
    guest.switch(0, 2500, T(1234, "hog"), RUNNABLE, T(1300, "sh"));
    guest.write(&root.join("guest"), "vm-a");
    std::fs::write(
        root.join("vm-hints.json"),
        r#"[{"name":"vm-a","uuid":"aaaa-1","qemu_pid":100,"vcpus":[]},
            {"name":"vm-b","qemu_pid":200}]"#,
    )
    .unwrap();
}

fn report(args: &[&str]) -> (String, String) {
    let out = Command::new(STRATA)
        .args(["vm", "report"])
        .args(args)
        .output()
        .expect("strata runs");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "strata vm report failed: {e}");
    (o, e)
}

fn vm<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["hosts"][0]["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no VM {name}"))
}

#[test]
fn host_and_guest_paths_make_one_report() {
    let tmp = tempfile::tempdir().unwrap();
    write_traces(tmp.path());
    let host = tmp.path().join("host");
    let guest = tmp.path().join("guest");
    let (out, _) = report(&[host.to_str().unwrap(), guest.to_str().unwrap(), "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["schema"], "strata-vm-report/1");
    assert_eq!(
        doc["hosts"].as_array().unwrap().len(),
        1,
        "the guest is no host"
    );
    assert_eq!(doc["hosts"][0]["hostname"], "hv1");
    let a = vm(&doc, "vm-a");
    assert_eq!(a["uuid"], "aaaa-1");
    assert_eq!(a["times"]["running_ns"], 900 + 900);
    assert_eq!(a["times"]["preempted_ns"], 900);
    assert_eq!(a["preempted_by"][0]["vm"], "vm-b");
    let g = &a["guest"];
    assert_eq!(g["paired_by"], "hostname");
    let hog = &g["threads"][0];
    assert_eq!(hog["comm"], "hog");
    // hog: on its vCPU 0..2500: unknown 100, running 900, VMM 100,
    // preempted 900, VMM 100, running 400.
    assert_eq!(hog["guest_running_ns"], 2500);
    assert_eq!(hog["really_running_ns"], 1300);
    assert_eq!(hog["preempted_ns"], 900);
    assert_eq!(hog["vmm_ns"], 200);
    assert!(vm(&doc, "vm-b")["guest"].is_null());
    // The gathered work directory is gone.
    let leftovers = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("strata-vm-report-{}-", std::process::id()))
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn a_guest_given_by_vm_name_and_the_tables() {
    let tmp = tempfile::tempdir().unwrap();
    write_traces(tmp.path());
    let host = tmp.path().join("host");
    let guest = tmp.path().join("guest");
    let pair = format!("vm-b={}", guest.display());
    let (out, _) = report(&[host.to_str().unwrap(), "--guest", &pair, "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(vm(&doc, "vm-b")["guest"]["paired_by"], "name");
    assert!(vm(&doc, "vm-a")["guest"].is_null());
    let (text, _) = report(&[host.to_str().unwrap(), guest.to_str().unwrap()]);
    for want in [
        "Host hv1: 2 VM(s)",
        "vm-a",
        "VM vm-b vCPU 0",
        "EXTERNAL_INTERRUPT",
        "fused view",
        "hog",
    ] {
        assert!(text.contains(want), "no `{want}` in:\n{text}");
    }
}

#[test]
fn bad_arguments_say_what_to_do() {
    let out = Command::new(STRATA)
        .args(["vm", "report", "/nonexistent/trace", "--guest", "novalue"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected VM=TRACE"), "{err}");
}
