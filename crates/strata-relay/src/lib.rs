//! The Strata relay as a library: it collects traces from agents, stores them
//! as CTF and serves them to analyses and viewers.
//!
//! - [`names`] and [`tokens`]: what the network may name, and who may send.
//! - [`store`]: each host's trace on disk in the LTTng layout, appended
//!   packet by packet, with a checkpoint that makes resume exact.
//! - [`analysis`]: the live per-host analyses (CPU usage over a sliding
//!   window, syscall rates and latencies, losses, live latency).
//! - [`ingest`]: the agent-facing server (TLS, handshake, frames, acks).
//! - [`control`]: commands to agents, snapshots, event changes.
//! - [`registry`]: the hosts and counters the API reads.
//! - [`http`]: the JSON API and Prometheus `/metrics`.
//! - [`live`]: the LTTng-live viewer server over the data directory.
//! - [`rules`]: rules over the live analyses, and their actions.
//! - [`relay`]: all of it together, as `strata relay` runs it.

pub mod analysis;
pub mod control;
pub mod http;
pub mod ingest;
pub mod live;
pub mod names;
pub mod registry;
pub mod relay;
pub mod rules;
pub mod store;
pub mod tokens;
