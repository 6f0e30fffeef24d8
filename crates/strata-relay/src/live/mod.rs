//! The LTTng live viewer protocol server (version 2.4, port 5344), so that
//! `babeltrace2 --input-format=lttng-live net://RELAY/host/HOST/SESSION`
//! prints the events of traces the relay is writing, as they are written.
//!
//! - [`proto`]: the protocol's requests and replies as bytes (pure).
//! - [`catalog`]: which sessions exist and where their traces are;
//!   [`FsCatalog`] reads the relay's data directory.
//! - [`progress`]: how far a writer has got (complete, watermarks), and the
//!   `.strata-live` file that carries it.
//! - [`metadata`]: which part of a growing metadata file can be sent.
//! - [`stream`]: one data stream as a viewer sees it; the beacon rules.
//! - [`viewer`]: one connection's state and answers (synchronous).
//! - [`server`]: the tokio accept loop, framing, limits and timeouts.

pub mod catalog;
pub mod metadata;
pub mod progress;
pub mod proto;
pub mod server;
pub mod stream;
pub mod viewer;

pub use catalog::{Catalog, FsCatalog, LiveSession};
pub use progress::Progress;
pub use server::{serve, LiveConfig, LiveServer, LiveStats, StatsSnapshot, DEFAULT_PORT};
pub use viewer::Limits;
