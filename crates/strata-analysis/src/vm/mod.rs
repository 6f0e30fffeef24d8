//! The VM model: which host threads are vCPUs of which VM, what each vCPU
//! does over time (running guest code, in the hypervisor and why,
//! preempted and by whom, idle), and the per-VM metrics and fused guest
//! view built from it. It follows Trace Compass's vCPU model, needs no
//! kernel module, and is fed one event at a time so the relay can run it
//! live.
//!
//! - [`event`]: the model's input, [`VmEvent`].
//! - [`bind`]: CTF event classes to [`VmEvent`]s.
//! - [`hints`]: VM names, UUIDs and vCPU threads from `/proc` and debugfs.
//! - [`model`]: the state machine, [`VmModel`].
//! - [`fused`]: guest threads corrected by their vCPU's host state.
//! - [`report`]: the report.
//! - [`reasons`]: exit reason names.
//! - [`sync`]: guest-to-host clock sync from probes in both traces.
//! - [`driver`]: runs the model over host and guest traces.

pub mod bind;
pub mod driver;
pub mod event;
pub mod fused;
pub mod hints;
pub mod model;
pub mod reasons;
pub mod report;
pub mod sync;

pub use event::VmEvent;
pub use fused::ClockTransform;
pub use hints::VmHint;
pub use model::{VcpuInterval, VcpuState, VmModel};
pub use report::VmHostReport;
