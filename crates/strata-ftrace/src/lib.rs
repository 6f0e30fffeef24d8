//! The tracefs source: instance control, event selection, and the ftrace
//! ring-buffer page decoder with its `format` file parser.
//!
//! The `format`, `header`, `page` and `select` modules are pure: they take
//! bytes and text and do no I/O, so they can be tested and fuzzed on their own.
//! `tracefs` and `capture` do the I/O against a real tracefs.

pub mod capture;
pub mod clock_offset;
pub mod format;
pub mod header;
pub mod page;
pub mod select;
pub mod tracefs;

pub use capture::{CaptureError, CpuCounters, CpuReaders, PageSink};
pub use clock_offset::{clock_offset_to_realtime, clock_offset_via_marker};
pub use format::{EventFormat, Field, FieldAccessor, FieldKind, FormatError};
pub use header::{parse_header_page, HeaderError, PageLayout};
pub use page::{Missed, Page, PageError, Record, Records};
pub use select::{resolve as resolve_events, SelectError, DEFAULT_SPECS, PRESETS};
pub use tracefs::{online_cpus, CpuStats, Instance, Tracefs, TracefsError};
