//! Why the agent stopped.

use strata_wire::{RefuseCode, WireError};
use thiserror::Error;

/// A failure that stops the agent (transient network errors are retried and
/// never surface here).
#[derive(Debug, Error)]
pub enum AgentError {
    /// The relay refused the handshake for a reason retrying cannot fix.
    #[error("the relay refused this agent ({code:?}): {message}")]
    Refused {
        /// The relay's code.
        code: RefuseCode,
        /// The relay's explanation.
        message: String,
    },
    /// TLS or certificate set-up failed.
    #[error(transparent)]
    Link(#[from] crate::link::LinkError),
    /// tracefs control failed.
    #[error(transparent)]
    Tracefs(#[from] strata_ftrace::TracefsError),
    /// The event selection is invalid.
    #[error(transparent)]
    Select(#[from] strata_ftrace::SelectError),
    /// Reading the ring buffers failed.
    #[error("capture failed: {0}")]
    Capture(String),
    /// Encoding a frame failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The replayed trace cannot be used.
    #[error("cannot replay {path}: {reason}")]
    Replay {
        /// The trace.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The configuration is inconsistent.
    #[error("{0}")]
    Config(String),
}
