//! The identity of a traced host.

use serde::{Deserialize, Serialize};

/// What identifies a host and its kernel. It goes into a trace's CTF `env` and
/// into the agent's handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// The host name (`uname -n`).
    pub hostname: String,
    /// The kernel name (`uname -s`), normally `Linux`.
    pub sysname: String,
    /// The kernel release (`uname -r`).
    pub kernel_release: String,
    /// The kernel version string (`uname -v`).
    pub kernel_version: String,
    /// `/etc/machine-id`, empty when unknown.
    pub machine_id: String,
    /// `/proc/sys/kernel/random/boot_id`, empty when unknown.
    pub boot_id: String,
    /// Number of possible CPUs.
    pub cpu_count: u32,
    /// When this host is a virtual machine: its UUID as the hypervisor
    /// knows it (QEMU's `-uuid`, the guest's DMI `product_uuid`), so a
    /// guest trace can be paired with its VM in the host trace. Written to
    /// the CTF env as `vm_uuid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_uuid: Option<String>,
}
