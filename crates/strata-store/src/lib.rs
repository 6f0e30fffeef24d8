//! Turns one host's ftrace records into an LTTng-layout CTF trace on disk.
//!
//! - [`convert`] (pure) maps tracefs event formats to CTF event classes with
//!   LTTng's names and conventions, and converts records without allocating.
//! - [`statedump`] reads `/proc` and writes LTTng's state dump events.
//! - [`trace_dir`] writes the trace directory (`metadata`, `channel0_<cpu>`,
//!   `index/`), handling losses, full disks and final statistics.

pub mod convert;
mod copy_plan;
pub mod lttng;
pub mod statedump;
pub mod stats;
pub mod trace_dir;

pub use convert::{ConvertOptions, Converter, Outcome, TidContext};
pub use statedump::ThreadState;
pub use stats::{LiveSnapshot, LiveStats, TraceStats};
pub use trace_dir::{StoreError, StoreOptions, TraceWriter, TracerEnv, STATEDUMP_STREAM};
