//! The live agent's VM hints: the QEMU processes running on this host, as
//! `strata vm hints` reads them, in the wire's `VmHints` form.

use std::path::Path;

use strata_analysis::vm::hints::{read_hints, MAX_VCPUS};
use strata_wire::{VcpuThread, VmHintEntry, VmHints, MAX_VM_HINTS};

/// Where debugfs lists KVM's VMs (absent without debugfs: vCPU threads are
/// then found by their names in the trace).
const KVM_DEBUGFS: &str = "/sys/kernel/debug/kvm";

/// Reads the VMs running now, bounded as the wire message requires.
pub fn read() -> VmHints {
    let hints = read_hints(Path::new("/proc"), Path::new(KVM_DEBUGFS));
    VmHints {
        vms: hints
            .into_iter()
            .take(MAX_VM_HINTS)
            .map(|h| VmHintEntry {
                name: h
                    .name
                    .map(|n| clip(n, strata_wire::vm_hints::MAX_VM_NAME))
                    .unwrap_or_default(),
                uuid: h
                    .uuid
                    .filter(|u| {
                        u.len() <= strata_wire::vm_hints::MAX_VM_UUID
                            && u.bytes().all(|b| b.is_ascii_graphic())
                    })
                    .unwrap_or_default(),
                qemu_pid: h.qemu_pid.unwrap_or(0),
                vcpus: h
                    .vcpus
                    .iter()
                    .take(MAX_VCPUS.min(strata_wire::MAX_VM_HINT_VCPUS))
                    .map(|v| VcpuThread {
                        id: v.id,
                        tid: v.tid,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn clip(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        assert_eq!(clip("abc".into(), 5), "abc");
        assert_eq!(clip("aé".into(), 2), "a");
        assert_eq!(clip("aéb".into(), 3), "aé");
    }
}
