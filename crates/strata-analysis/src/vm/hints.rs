//! What the host can tell about its VMs while they run, without a kernel
//! module: the VM name and UUID from QEMU's command line
//! (`/proc/<pid>/cmdline`: `-name`, `-uuid`) and each vCPU's thread from
//! debugfs (`kvm/<pid>-<fd>/vcpuN/pid`). A live agent reads them with
//! [`read_hints`]; offline reports load them from a saved `vm-hints.json`.
//! The parsers take bytes and names only, so they are tested without I/O.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::event::Tid;

/// The most hints [`read_hints`] returns (bounds memory on a crowded host).
pub const MAX_HINTS: usize = 4096;
/// The most vCPUs one hint lists.
pub const MAX_VCPUS: usize = 1024;

/// A vCPU's thread, as debugfs gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuHint {
    /// The vCPU index inside its VM.
    pub id: u32,
    /// The host thread that runs it.
    pub tid: Tid,
}

/// What is known of one VM before reading its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmHint {
    /// Its name (QEMU `-name`).
    #[serde(default)]
    pub name: Option<String>,
    /// Its UUID (QEMU `-uuid`; the guest reads it from DMI).
    #[serde(default)]
    pub uuid: Option<String>,
    /// The VMM process.
    #[serde(default)]
    pub qemu_pid: Option<Tid>,
    /// Its vCPU threads.
    #[serde(default)]
    pub vcpus: Vec<VcpuHint>,
}

/// The name and UUID on a QEMU command line (NUL-separated, as in
/// `/proc/<pid>/cmdline`), or `None` when the program is not QEMU.
pub fn parse_qemu_cmdline(cmdline: &[u8]) -> Option<VmHint> {
    let mut args = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned());
    let prog = args.next()?;
    let base = prog.rsplit('/').next().unwrap_or(&prog);
    if !(base.starts_with("qemu-system") || base.starts_with("qemu-kvm")) {
        return None;
    }
    let mut hint = VmHint::default();
    let rest: Vec<String> = args.collect();
    let mut i = 0;
    while i < rest.len() {
        let a = rest[i].trim_start_matches('-');
        let is_opt = rest[i].starts_with('-');
        let value = rest.get(i + 1);
        match (is_opt, a, value) {
            (true, "name", Some(v)) => {
                hint.name = name_option(v);
                i += 1;
            }
            (true, "uuid", Some(v)) => {
                hint.uuid = Some(v.to_ascii_lowercase());
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    Some(hint)
}

/// The guest name in a `-name` value: `NAME[,k=v...]` or `guest=NAME,...`.
fn name_option(v: &str) -> Option<String> {
    let mut name = None;
    for (i, part) in v.split(',').enumerate() {
        match part.split_once('=') {
            Some(("guest", n)) => name = Some(n.to_string()),
            None if i == 0 && !part.is_empty() => name = Some(part.to_string()),
            _ => {}
        }
    }
    name
}

/// The VMM pid of a debugfs `kvm/` entry named `<pid>-<fd>`.
pub fn parse_kvm_dir_name(name: &str) -> Option<Tid> {
    let (pid, fd) = name.split_once('-')?;
    fd.parse::<u32>().ok()?;
    pid.parse::<Tid>().ok().filter(|&p| p > 0)
}

/// The vCPU index of a debugfs `vcpuN` entry.
pub fn parse_vcpu_dir_name(name: &str) -> Option<u32> {
    name.strip_prefix("vcpu")?.parse().ok()
}

/// Reads the VMs running now: every QEMU process under `proc_root`
/// (normally `/proc`) and every VM in `kvm_debugfs` (normally
/// `/sys/kernel/debug/kvm`, absent without debugfs or root: then vCPU
/// threads come from their names in the trace). Unreadable entries are
/// skipped: processes come and go while the directory is read.
pub fn read_hints(proc_root: &Path, kvm_debugfs: &Path) -> Vec<VmHint> {
    let mut hints: Vec<VmHint> = Vec::new();
    if let Ok(dir) = std::fs::read_dir(proc_root) {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<Tid>().ok()) else {
                continue;
            };
            let Ok(cmd) = read_bounded(&e.path().join("cmdline"), 1 << 16) else {
                continue;
            };
            if let Some(mut h) = parse_qemu_cmdline(&cmd) {
                h.qemu_pid = Some(pid);
                hints.push(h);
                if hints.len() >= MAX_HINTS {
                    break;
                }
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir(kvm_debugfs) {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(parse_kvm_dir_name) else {
                continue;
            };
            let mut vcpus = Vec::new();
            if let Ok(sub) = std::fs::read_dir(e.path()) {
                for v in sub.flatten() {
                    let Some(id) = v.file_name().to_str().and_then(parse_vcpu_dir_name) else {
                        continue;
                    };
                    let tid = read_bounded(&v.path().join("pid"), 64)
                        .ok()
                        .and_then(|b| String::from_utf8_lossy(&b).trim().parse::<Tid>().ok());
                    if let Some(tid) = tid.filter(|&t| t > 0) {
                        vcpus.push(VcpuHint { id, tid });
                    }
                    if vcpus.len() >= MAX_VCPUS {
                        break;
                    }
                }
            }
            vcpus.sort_by_key(|v| v.id);
            let n = hints.len();
            match hints.iter_mut().find(|h| h.qemu_pid == Some(pid)) {
                Some(h) => h.vcpus.extend(vcpus),
                None if n < MAX_HINTS => hints.push(VmHint {
                    qemu_pid: Some(pid),
                    vcpus,
                    ..VmHint::default()
                }),
                None => {}
            }
        }
    }
    hints.sort_by_key(|h| h.qemu_pid);
    hints
}

/// At most `max` bytes of a file.
fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)?.take(max).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_command_lines_give_name_and_uuid() {
        let cmd = b"/usr/bin/qemu-system-x86_64\0-name\0web1,debug-threads=on\0-uuid\0\
                    0F8FAD5B-D9CB-469F-A165-70867728950E\0-m\x00256\0";
        let h = parse_qemu_cmdline(cmd).unwrap();
        assert_eq!(h.name.as_deref(), Some("web1"));
        assert_eq!(
            h.uuid.as_deref(),
            Some("0f8fad5b-d9cb-469f-a165-70867728950e")
        );
        let h =
            parse_qemu_cmdline(b"qemu-system-x86_64\0-name\0guest=db,debug-threads=on\0").unwrap();
        assert_eq!(h.name.as_deref(), Some("db"));
        assert!(parse_qemu_cmdline(b"/bin/bash\0-name\0x\0").is_none());
        assert_eq!(
            parse_qemu_cmdline(b"qemu-system-x86_64\0-name\0").unwrap(),
            VmHint::default()
        );
    }

    #[test]
    fn debugfs_names_parse() {
        assert_eq!(parse_kvm_dir_name("1234-11"), Some(1234));
        assert_eq!(parse_kvm_dir_name("halt_exits"), None);
        assert_eq!(parse_kvm_dir_name("12-x"), None);
        assert_eq!(parse_vcpu_dir_name("vcpu3"), Some(3));
        assert_eq!(parse_vcpu_dir_name("vcpux"), None);
    }

    #[test]
    fn reading_a_fake_proc_and_debugfs() {
        let root = std::env::temp_dir().join(format!("strata-hints-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let proc_ = root.join("proc");
        let kvm = root.join("kvm");
        std::fs::create_dir_all(proc_.join("77")).unwrap();
        std::fs::create_dir_all(proc_.join("78")).unwrap();
        std::fs::write(
            proc_.join("77/cmdline"),
            b"qemu-system-x86_64\0-name\0vm-a,debug-threads=on\0-uuid\0u-1\0",
        )
        .unwrap();
        std::fs::write(proc_.join("78/cmdline"), b"sleep\x0010\0").unwrap();
        std::fs::create_dir_all(kvm.join("77-12/vcpu1")).unwrap();
        std::fs::create_dir_all(kvm.join("77-12/vcpu0")).unwrap();
        std::fs::write(kvm.join("77-12/vcpu0/pid"), "80\n").unwrap();
        std::fs::write(kvm.join("77-12/vcpu1/pid"), "81\n").unwrap();
        let hints = read_hints(&proc_, &kvm);
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(
            hints,
            vec![VmHint {
                name: Some("vm-a".into()),
                uuid: Some("u-1".into()),
                qemu_pid: Some(77),
                vcpus: vec![VcpuHint { id: 0, tid: 80 }, VcpuHint { id: 1, tid: 81 }],
            }]
        );
    }
}
