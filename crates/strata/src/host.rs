//! Probing this host's identity from the kernel.

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
    }
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
