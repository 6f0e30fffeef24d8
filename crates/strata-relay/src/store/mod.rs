//! Each host's trace on disk: `DATA/<session>/<host>/kernel/` in the LTTng
//! layout, written as whole packets with their index entries, plus the
//! checkpoint that makes a restarted relay resume exactly.
//!
//! - [`stream_file`]: one stream file and its index, append-only.
//! - [`ftrace_trace`]: a trace converted from raw ftrace records.
//! - [`ctf_trace`]: a trace whose packets arrive whole (replay agents).
//! - [`checkpoint`]: what was stored up to which sequence number.
//! - [`host_trace`]: ties them together for one host.

pub mod checkpoint;
pub mod ctf_trace;
pub mod ftrace_trace;
pub mod host_trace;
pub mod stream_file;

use std::path::{Path, PathBuf};
use thiserror::Error;

pub use checkpoint::Checkpoint;
pub use host_trace::{HostTrace, TraceSource};

/// Why a host's trace could not be stored.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was attempted (`open`, `truncate`, ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing a packet or index entry failed; the file was cut back to
    /// its last whole packet.
    #[error("writing {what} to {path} at byte {offset} failed: {source}; the stream was cut back to its last whole packet; free disk space and let the agent reconnect")]
    Write {
        /// What was written.
        what: String,
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is shorter than the checkpoint says: data was lost under the
    /// relay (a crash of the machine before it reached the disk).
    #[error("{path} has {have} bytes but the checkpoint says {want}; the trace continues in a new directory")]
    Shorter {
        /// The file.
        path: PathBuf,
        /// Its length.
        have: u64,
        /// The checkpoint's.
        want: u64,
    },
    /// The metadata the agent sent cannot be used.
    #[error("bad metadata from the agent: {0}")]
    Metadata(String),
    /// A packet or record names something the trace does not have.
    #[error("{0}")]
    Data(String),
    /// An earlier failure stopped this trace.
    #[error("the trace writer stopped after an earlier error: {0}")]
    Stopped(String),
}

impl StoreError {
    /// An I/O error of `op` on `path`.
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
