//! One QEMU TCG guest: its command line, its vCPU threads and their pinning.

use super::procs::ChildGuard;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The I/O port of the isa-debugcon device the sync probes write to. Not
/// 0x402: the firmware (SeaBIOS) logs there during boot.
pub const PROBE_PORT: u16 = 0x4e8;

/// What a guest is started with.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// VM name (`-name`), also the guest's host name and agent host id.
    pub name: String,
    /// `-uuid`, which the guest reads back from DMI.
    pub uuid: String,
    /// Kernel and initramfs.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// Guest memory in MiB.
    pub memory_mb: u32,
    /// Workload name passed to the guest's init.
    pub workload: String,
    /// Seconds the workload runs.
    pub secs: u64,
    /// Session name for the guest agent.
    pub session: String,
    /// Local TCP port QEMU listens on for the guest's second serial port.
    pub serial_port: u16,
    /// Where the guest console goes.
    pub console_log: PathBuf,
    /// Where the debugcon bytes go.
    pub debugcon_file: PathBuf,
    /// Run the sync probes.
    pub probes: bool,
    /// The agent's token for the relay.
    pub token: String,
    /// Flight mode: the guest agent keeps a ring for snapshots and streams
    /// a light feed; its snapshots go over a third serial port, bridged
    /// from this local TCP port.
    pub snapshot_port: Option<u16>,
}

/// A running guest.
#[derive(Debug)]
pub struct Guest {
    /// Its spec.
    pub spec: GuestSpec,
    /// The QEMU process.
    pub process: ChildGuard,
}

impl Drop for Guest {
    /// The debugcon file may live on tmpfs, outside the output directory:
    /// remove it whatever way the testbed ends. Fields drop after this, so
    /// QEMU is stopped by its guard right after.
    fn drop(&mut self) {
        if self.spec.debugcon_file.starts_with("/dev/shm") {
            let _ = std::fs::remove_file(&self.spec.debugcon_file);
        }
    }
}

impl GuestSpec {
    /// The kernel command line: the init script reads the `strata.*` keys.
    fn append(&self) -> String {
        let mut s = format!(
            "console=ttyS0 quiet panic=-1 tsc=reliable strata.name={} strata.workload={} \
             strata.secs={} strata.session={} strata.clock=x86-tsc strata.token={}",
            self.name, self.workload, self.secs, self.session, self.token
        );
        if self.probes {
            s.push_str(&format!(" strata.probe=0x{PROBE_PORT:x}"));
        }
        if self.snapshot_port.is_some() {
            s.push_str(" strata.mode=flight");
        }
        s
    }

    /// The QEMU command.
    pub fn command(&self) -> Command {
        let mut c = Command::new("qemu-system-x86_64");
        c.args([
            "-accel",
            "tcg",
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
        ])
        .args(["-m", &self.memory_mb.to_string(), "-smp", "1"])
        .args(["-name", &format!("{},debug-threads=on", self.name)])
        .args(["-uuid", &self.uuid])
        .arg("-kernel")
        .arg(&self.kernel)
        .arg("-initrd")
        .arg(&self.initrd)
        .args(["-append", &self.append()])
        .arg("-serial")
        .arg(format!("file:{}", self.console_log.display()))
        .arg("-serial")
        .arg(format!(
            "tcp:127.0.0.1:{},server=on,wait=off,nodelay=on",
            self.serial_port
        ))
        .arg("-chardev")
        .arg(format!(
            "file,id=probe,path={}",
            self.debugcon_file.display()
        ))
        .args([
            "-device",
            &format!("isa-debugcon,iobase=0x{PROBE_PORT:x},chardev=probe"),
        ]);
        if let Some(port) = self.snapshot_port {
            c.arg("-serial").arg(format!(
                "tcp:127.0.0.1:{port},server=on,wait=off,nodelay=on"
            ));
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        c
    }

    /// Starts QEMU.
    pub fn start(self) -> anyhow::Result<Guest> {
        let process = ChildGuard::spawn(&format!("qemu ({})", self.name), &mut self.command())
            .context("is qemu-system-x86 installed? (scripts/install-deps)")?;
        Ok(Guest {
            spec: self,
            process,
        })
    }
}

/// A vCPU thread of a QEMU process, named `CPU n/TCG` (or `/KVM`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct VcpuThread {
    /// The vCPU index n.
    pub index: u32,
    /// The thread id.
    pub tid: u32,
}

/// Finds the vCPU threads of QEMU `pid` by their names, waiting up to
/// `timeout` for `expect` of them to appear.
pub fn vcpu_threads(pid: u32, expect: usize, timeout: Duration) -> anyhow::Result<Vec<VcpuThread>> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut found = Vec::new();
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for e in dir.flatten() {
                let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
                    continue;
                };
                let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                if let Some(index) = parse_vcpu_comm(comm.trim()) {
                    found.push(VcpuThread { index, tid });
                }
            }
        }
        if found.len() >= expect {
            found.sort_by_key(|v| v.index);
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!(
                "QEMU {pid} shows {} of {expect} vCPU threads after {timeout:?} \
                 (started with -name ...,debug-threads=on?)",
                found.len()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `CPU 3/TCG` → 3.
pub fn parse_vcpu_comm(comm: &str) -> Option<u32> {
    let rest = comm.strip_prefix("CPU ")?;
    let (n, accel) = rest.split_once('/')?;
    matches!(accel, "TCG" | "KVM" | "HVF" | "WHPX").then_some(())?;
    n.parse().ok()
}

/// Pins thread `tid` to `cpus`.
pub fn pin(tid: u32, cpus: &[u32]) -> anyhow::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET stays in bounds for < 1024.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c >= 1024 {
            bail!("CPU {c} is out of range");
        }
        unsafe { libc::CPU_SET(c as usize, &mut set) };
    }
    // SAFETY: a valid set for a thread id.
    let rc =
        unsafe { libc::sched_setaffinity(tid as libc::pid_t, std::mem::size_of_val(&set), &set) };
    if rc != 0 {
        bail!(
            "cannot pin thread {tid} to CPUs {cpus:?}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The descriptor QEMU `pid` writes `path` through, from `/proc/PID/fd`.
pub fn fd_of(pid: u32, path: &Path) -> Option<i64> {
    let want = std::fs::canonicalize(path).ok()?;
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == want))
        .and_then(|e| e.file_name().to_str()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::parse_vcpu_comm;

    #[test]
    fn vcpu_thread_names() {
        assert_eq!(parse_vcpu_comm("CPU 0/TCG"), Some(0));
        assert_eq!(parse_vcpu_comm("CPU 12/KVM"), Some(12));
        assert_eq!(parse_vcpu_comm("CPU x/TCG"), None);
        assert_eq!(parse_vcpu_comm("qemu-system-x86"), None);
        assert_eq!(parse_vcpu_comm("CPU 1/FOO"), None);
    }
}
