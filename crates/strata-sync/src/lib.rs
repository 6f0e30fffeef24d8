//! Clock synchronisation between a guest's trace and its host's trace, with
//! no kernel module: only matched message pairs (a probe the guest sends and
//! the host sees, or the reverse) and, when known, the TSC offset.
//!
//! The method is the convex-hull one of Duda et al. and Jabbarifar et al.
//! (used by Trace Compass): every guest→host message bounds the transform
//! from one side (it cannot arrive before it left), every host→guest message
//! from the other. The feasible transforms `host = a·guest + b` form a
//! convex set; its middle is the estimate and its width the accuracy bound.
//! Everything here is pure arithmetic on timestamps: no I/O.

mod hull;
mod probe;
mod transform;
mod tsc;

pub use hull::{ConvexHullSync, SyncError, SyncEstimate};
pub use probe::{GuestProbe, ProbeStats, ProbeSync};
pub use transform::ClockTransform;
pub use tsc::{tsc_offset_transform, TscOffset};
