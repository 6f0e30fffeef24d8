//! `strata record --remote ssh://...` against a real OpenSSH server on a
//! loopback port, with keys made here: the recording works, and a key the
//! server does not know gives a clear error.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");
const SSHD: &str = "/usr/sbin/sshd";

/// An `sshd -D` child on a loopback port; killed when dropped.
struct Sshd {
    child: Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs")
        .success();
    assert!(ok, "ssh-keygen failed for {}", path.display());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_sshd(dir: &Path, authorized: &Path) -> Sshd {
    keygen(&dir.join("host_key"));
    // sshd refuses to start without its privilege-separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = free_port();
    let cfg = dir.join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "ListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel ERROR\n",
            dir.join("host_key").display(),
            authorized.display()
        ),
    )
    .unwrap();
    let child = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(&cfg)
        .args(["-p", &port.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .expect("sshd starts");
    let sshd = Sshd { child, port };
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    sshd
}

fn record(port: u16, key: &Path, out: &Path) -> (bool, String, String) {
    let o = Command::new(STRATA)
        .args(["record", "--remote"])
        .arg(format!("ssh://root@127.0.0.1:{port}"))
        .arg("-o")
        .arg(out)
        .args([
            "--duration",
            "2s",
            "--events",
            "sched,syscalls",
            "--buffer-size",
            "2M",
        ])
        .arg("--identity")
        .arg(key)
        .args([
            "--ssh-option",
            "StrictHostKeyChecking=no",
            "--ssh-option",
            "UserKnownHostsFile=/dev/null",
            "--remote-strata",
            STRATA,
        ])
        .output()
        .expect("strata record runs");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn record_through_ssh_and_refuse_a_wrong_key() {
    if !common::skip_unless_root_with_tracefs() || !common::have_babeltrace() {
        return;
    }
    if !Path::new(SSHD).exists() || Command::new("ssh").arg("-V").output().is_err() {
        println!("SKIP: needs openssh-server and openssh-client (scripts/install-deps)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("client_key");
    keygen(&key);
    let wrong = dir.path().join("wrong_key");
    keygen(&wrong);
    let authorized = dir.path().join("authorized_keys");
    std::fs::copy(key.with_extension("pub"), &authorized).unwrap();
    let sshd = start_sshd(dir.path(), &authorized);

    let out = dir.path().join("trace");
    let (ok, stdout, err) = record(sshd.port, &key, &out);
    assert!(ok, "record --remote failed: {err}");
    let trace = PathBuf::from(stdout.trim());
    assert!(trace.starts_with(&out), "{}", trace.display());
    let events = common::babeltrace_events(&trace);
    assert!(
        events.iter().any(|e| e.name == "sched_switch"),
        "no sched_switch among {} events",
        events.len()
    );
    assert!(events.iter().any(|e| e.name.starts_with("syscall_entry")));

    let out2 = dir.path().join("trace2");
    let (ok, _, err) = record(sshd.port, &wrong, &out2);
    assert!(!ok, "a key the server does not know must fail");
    assert!(
        err.contains("refused the login") && err.contains("--identity"),
        "unclear error: {err}"
    );
}
