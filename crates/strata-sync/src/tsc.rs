//! The TSC-offset method: exact when both traces use the `x86-tsc` clock and
//! the hypervisor's TSC offset for the guest is known (KVM's
//! `kvm_write_tsc_offset` event or debugfs `vcpuN/tsc-offset`).

use crate::ClockTransform;

/// A guest's TSC offset as the hypervisor programs it:
/// `guest_tsc = host_tsc + offset` (two's complement, as KVM stores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TscOffset(pub i64);

/// The guest→host transform implied by a TSC offset, both traces on
/// `x86-tsc` with the same TSC rate: `host = guest - offset`. The accuracy
/// bound of this method is zero cycles.
pub fn tsc_offset_transform(offset: TscOffset) -> ClockTransform {
    ClockTransform::shift(-(offset.0 as f64))
}
