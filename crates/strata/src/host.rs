//! Probing this host's identity from the kernel.

use anyhow::{bail, Context};
use strata_core::HostInfo;

/// Reads this host's name, kernel, machine and boot ids and CPU count.
/// Missing pieces are left empty rather than failing: they only label traces.
pub fn probe() -> HostInfo {
    // SAFETY: utsname is plain data; uname fills it or fails.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::uname(&mut uts) } == 0;
    let field = |f: &[libc::c_char]| -> String {
        if !ok {
            return String::new();
        }
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    HostInfo {
        hostname: field(&uts.nodename),
        sysname: field(&uts.sysname),
        kernel_release: field(&uts.release),
        kernel_version: field(&uts.version),
        machine_id: read("/etc/machine-id"),
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        cpu_count: possible_cpus(),
        vm_uuid: None,
    }
}

/// Where Linux shows the machine's UUID (from the SMBIOS tables, which QEMU
/// fills from `-uuid`).
const DMI_PRODUCT_UUID: &str = "/sys/class/dmi/id/product_uuid";

/// Resolves `--vm-uuid`: `auto` reads the DMI product UUID, anything else
/// must be a UUID itself. Returned in lower case, as Linux shows it.
pub fn vm_uuid(arg: &str) -> anyhow::Result<String> {
    let uuid = if arg == "auto" {
        std::fs::read_to_string(DMI_PRODUCT_UUID)
            .with_context(|| {
                format!(
                    "--vm-uuid auto: cannot read {DMI_PRODUCT_UUID} \
                     (not a VM, no DMI, or not root?); give the UUID itself"
                )
            })?
            .trim()
            .to_ascii_lowercase()
    } else {
        arg.trim().to_ascii_lowercase()
    };
    if !is_uuid(&uuid) {
        bail!("--vm-uuid: {uuid:?} is not a UUID (8-4-4-4-12 hex digits) or `auto`");
    }
    Ok(uuid)
}

/// `8-4-4-4-12` hexadecimal digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The number of possible CPUs: stream files are made for each, so a CPU
/// brought online later still has one.
fn possible_cpus() -> u32 {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|t| strata_ftrace::tracefs::parse_cpu_list(t.trim()).ok())
        .and_then(|cpus| cpus.iter().max().map(|m| m + 1))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32))
}

#[cfg(test)]
mod tests {
    use super::vm_uuid;

    #[test]
    fn vm_uuids_are_checked_and_lower_cased() {
        assert_eq!(
            vm_uuid("0D2721FA-90eb-49fa-876e-c79f2a39c8b9").unwrap(),
            "0d2721fa-90eb-49fa-876e-c79f2a39c8b9"
        );
        for bad in [
            "",
            "0d2721fa",
            "0d2721fa-90eb-49fa-876e-c79f2a39c8bz",
            "a-b-c-d-e",
        ] {
            assert!(vm_uuid(bad).is_err(), "{bad:?} accepted");
        }
    }
}
