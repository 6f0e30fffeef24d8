//! The live VM view of a host: the agent's VM hints (QEMU `-name`,
//! `-uuid`, vCPU threads) turned into the VM model's hints.

use strata_analysis::vm::hints::{VcpuHint, VmHint};
use strata_wire::VmHints;

/// The model's hints from a `VmHints` message (empty strings and pid 0
/// mean "not known").
pub fn hints_from_wire(h: &VmHints) -> Vec<VmHint> {
    h.vms
        .iter()
        .map(|vm| VmHint {
            name: (!vm.name.is_empty()).then(|| vm.name.clone()),
            uuid: (!vm.uuid.is_empty()).then(|| vm.uuid.to_ascii_lowercase()),
            qemu_pid: (vm.qemu_pid > 0).then_some(vm.qemu_pid),
            vcpus: vm
                .vcpus
                .iter()
                .filter(|v| v.tid > 0)
                .map(|v| VcpuHint {
                    id: v.id,
                    tid: v.tid,
                })
                .collect(),
        })
        .collect()
}
