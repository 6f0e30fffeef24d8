//! Reading CTF 1.8 traces: TSDL metadata parsing, packet and event decoding,
//! and the time-ordered merge of all streams.
//!
//! ```no_run
//! use strata_ctf::read::{OpenOptions, TraceSet};
//! let set = TraceSet::open("trace".as_ref(), &OpenOptions::default())?;
//! let mut events = set.events();
//! while let Some(ev) = events.next() {
//!     let ev = ev?;
//!     if let Some(tid) = ev.class().field("next_tid") {
//!         println!("{} {} {:?}", ev.ts(), ev.class().name(), ev.i64(tid));
//!     }
//! }
//! # Ok::<(), strata_ctf::read::ReadError>(())
//! ```
//!
//! Layers: [`tsdl`] parses metadata text; `plan`/`class` compile it into
//! decode plans once per stream and event class; `walk`/`packet`/`cursor`
//! decode bytes (pure, no I/O); `merge` orders streams; `fs` is the only
//! part that touches files (directory search and mmap).

mod bits;
mod class;
mod clock_map;
mod cursor;
mod error;
mod event;
mod flat_shape;
mod fs;
mod memory;
mod merge;
mod packet;
mod plan;
mod sorted_list;
pub mod text;
pub mod tsdl;
mod walk;

pub use class::{EventClass, FieldKind, FieldRef};
pub use clock_map::ClockMap;
pub use error::{ReadError, SkipStats};
pub use event::{ContextKind, Event, Value};
pub use fs::{OpenOptions, StreamInfo, Trace, TraceSet};
pub use memory::{StreamReader, TraceClass};
pub use merge::Events;
pub use packet::PACKET_MAGIC;
pub use tsdl::{EnvValue, Metadata, MetadataError};
#[cfg(test)]
mod tests;
