//! The tracefs source: instance control, event selection, and the ftrace
//! ring-buffer page decoder with its `format` file parser.
//!
//! The `format`, `header` and `page` modules are pure: they take bytes and
//! text and do no I/O, so they can be tested and fuzzed on their own.

pub mod format;
