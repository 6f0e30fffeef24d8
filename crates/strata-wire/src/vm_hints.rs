//! The `VmHints` message: what a host agent knows of the VMs it runs
//! (QEMU's `-name` and `-uuid`, each vCPU's thread), so the relay names
//! live VMs. Sent whole whenever it changes and again with every
//! connection's metadata; the latest one replaces the earlier ones.
//! Frames of this kind are marked ignorable, so relays that predate it
//! skip them.

use crate::body::{BodyReader, BodyWriter};
use crate::error::WireError;

/// The most VMs one message lists.
pub const MAX_VM_HINTS: usize = 4096;
/// The most vCPUs one VM lists.
pub const MAX_VM_HINT_VCPUS: usize = 1024;
/// The longest VM name, bytes.
pub const MAX_VM_NAME: usize = 256;
/// The longest VM UUID, bytes (printable ASCII).
pub const MAX_VM_UUID: usize = 128;

/// One vCPU's host thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuThread {
    /// The vCPU index inside its VM.
    pub id: u32,
    /// The host thread running it.
    pub tid: i32,
}

/// One VM, as its host sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmHintEntry {
    /// QEMU `-name` (empty: none).
    pub name: String,
    /// QEMU `-uuid` (empty: none).
    pub uuid: String,
    /// The VMM process (0: unknown).
    pub qemu_pid: i32,
    /// Its vCPU threads, when debugfs tells.
    pub vcpus: Vec<VcpuThread>,
}

/// Every VM the host runs now (an empty list: none any more).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmHints {
    /// The VMs.
    pub vms: Vec<VmHintEntry>,
}

/// Encoded size of a VM with empty strings and no vCPU: the least a
/// counted item can take.
const MIN_VM_LEN: usize = 4 + 4 + 4 + 4;
const VCPU_LEN: usize = 8;

impl VmHints {
    pub(crate) fn write(&self, w: &mut BodyWriter<'_>) -> Result<(), WireError> {
        if self.vms.len() > MAX_VM_HINTS {
            return Err(WireError::Encode {
                what: "VmHints",
                reason: format!("{} VMs, at most {MAX_VM_HINTS}", self.vms.len()),
            });
        }
        w.len("vms", self.vms.len())?;
        for vm in &self.vms {
            if vm.name.len() > MAX_VM_NAME || vm.uuid.len() > MAX_VM_UUID {
                return Err(WireError::Encode {
                    what: "VmHints",
                    reason: format!("VM {:?}: name or UUID too long", vm.name),
                });
            }
            if vm.vcpus.len() > MAX_VM_HINT_VCPUS {
                return Err(WireError::Encode {
                    what: "VmHints",
                    reason: format!(
                        "VM {:?}: {} vCPUs, at most {MAX_VM_HINT_VCPUS}",
                        vm.name,
                        vm.vcpus.len()
                    ),
                });
            }
            w.str("name", &vm.name)?;
            w.str("uuid", &vm.uuid)?;
            w.i32(vm.qemu_pid);
            w.len("vcpus", vm.vcpus.len())?;
            for v in &vm.vcpus {
                w.u32(v.id);
                w.i32(v.tid);
            }
        }
        Ok(())
    }

    pub(crate) fn read(r: &mut BodyReader<'_>) -> Result<VmHints, WireError> {
        let at = r.offset();
        let n = r.count("vms", MIN_VM_LEN)?;
        if n > MAX_VM_HINTS {
            return Err(r.bad("vms", at, format!("{n} VMs, at most {MAX_VM_HINTS}")));
        }
        let mut vms = Vec::with_capacity(n);
        for _ in 0..n {
            let at = r.offset();
            let name = r.string("name")?;
            if name.len() > MAX_VM_NAME {
                return Err(r.bad(
                    "name",
                    at,
                    format!("a VM name is at most {MAX_VM_NAME} bytes"),
                ));
            }
            let at = r.offset();
            let uuid = r.string("uuid")?;
            if uuid.len() > MAX_VM_UUID || !uuid.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(r.bad(
                    "uuid",
                    at,
                    format!("a VM UUID is at most {MAX_VM_UUID} printable ASCII characters"),
                ));
            }
            let qemu_pid = r.i32("qemu_pid")?;
            let at = r.offset();
            let m = r.count("vcpus", VCPU_LEN)?;
            if m > MAX_VM_HINT_VCPUS {
                return Err(r.bad(
                    "vcpus",
                    at,
                    format!("{m} vCPUs, at most {MAX_VM_HINT_VCPUS}"),
                ));
            }
            let mut vcpus = Vec::with_capacity(m);
            for _ in 0..m {
                vcpus.push(VcpuThread {
                    id: r.u32("vcpu id")?,
                    tid: r.i32("vcpu tid")?,
                });
            }
            vms.push(VmHintEntry {
                name,
                uuid,
                qemu_pid,
                vcpus,
            });
        }
        Ok(VmHints { vms })
    }
}
