//! Errors of the trace reader and the counters of what `skip_corrupt` skipped.

use std::path::PathBuf;

use thiserror::Error;

use super::tsdl::MetadataError;

/// Why a trace could not be opened or read.
#[derive(Debug, Error)]
pub enum ReadError {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
    /// No trace (a directory with a `metadata` file) was found.
    #[error("{path}: no CTF trace here: expected a directory holding a `metadata` file, or directories that do")]
    NoTrace {
        /// Where the search started.
        path: PathBuf,
    },
    /// The metadata could not be parsed or is inconsistent.
    #[error("{path}: {source}")]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong.
        source: MetadataError,
    },
    /// A stream file holds data that does not match the metadata.
    #[error("{path}: byte {offset}: {msg}")]
    Corrupt {
        /// The stream file.
        path: PathBuf,
        /// Byte offset in the file where the problem was found.
        offset: u64,
        /// What is wrong.
        msg: String,
    },
}

/// What `skip_corrupt` mode skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkipStats {
    /// Packets skipped whole or in part.
    pub packets: u64,
    /// Bytes of stream files skipped.
    pub bytes: u64,
    /// Streams in which anything was skipped.
    pub streams: u64,
}

impl SkipStats {
    /// Adds another stream's counters.
    pub fn add(&mut self, o: &SkipStats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.streams += o.streams;
    }
    /// Whether nothing was skipped.
    pub fn is_empty(&self) -> bool {
        *self == SkipStats::default()
    }
}
