//! Strata's shared vocabulary.
//!
//! Every other crate speaks in these terms: the clock a stream is timestamped
//! with, the identity of the host that produced it, and the architecture facts
//! (syscall numbers) that raw kernel events need to be named.

pub mod clock;
pub mod host;
pub mod syscalls;
mod syscalls_x86_64;

pub use clock::ClockDesc;
pub use host::HostInfo;
