//! The tracefs source: instance control, event selection, and the ftrace
//! ring-buffer page decoder with its `format` file parser.
//!
//! - [`format`](mod@format), [`header`], [`page`] and [`select`] are pure: they take bytes
//!   and text and do no I/O, so they can be tested and fuzzed on their own.
//!   [`encode`] is the page decoder in reverse, for making exact test inputs.
//! - [`tracefs`] controls a private [`Instance`]; [`capture`] reads its
//!   per-CPU `trace_pipe_raw` files; [`clock_offset`] ties trace clocks to
//!   Unix time.
//!
//! A recording session, in order: [`Tracefs::find_or_mount`],
//! [`Instance::cleanup_stale`], [`Instance::create`], `set_clock("mono")`,
//! buffer sizes, [`resolve_events`] + `enable_event`, `event_format` for each,
//! [`CpuReaders::open`] (after any sub-buffer size change), `set_tracing_on`,
//! [`CpuReaders::pump`] in a loop, `set_tracing_on(false)`,
//! [`CpuReaders::drain`]. Pages go to the relay as they are; the decoder there
//! runs [`Page::parse`] and [`Page::records`] with the layout from
//! [`Instance::header_page`].

pub mod capture;
pub mod clock_offset;
pub mod encode;
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
