//! Strata rules: conditions over the live analysis, and the actions they
//! request (snapshot, enable/disable events, alert), with debounce,
//! cooldown and global rate limits.
//!
//! - [`config`]: the rule file (TOML) checked into a [`config::RuleSet`],
//!   errors with line numbers.
//! - [`expr`]: conditions in CEL (the `cel` crate); metric calls with named
//!   arguments are taken out and bound as variables.
//! - [`catalog`]: the metrics a condition may call.
//! - [`series`] and [`host`]: the sliding windows per host, fed by the state
//!   system's notifications ([`strata_analysis::observer::Observer`]).
//! - [`vmstate`]: VM metrics (vCPU preempted, running, ... ratios), from
//!   the VM analysis' cumulative vCPU state times sampled per evaluation.
//! - [`engine`]: evaluation, `for`, `cooldown`, and the [`engine::Governor`].
//! - [`actions`]: the [`actions::Actions`] trait the relay implements.
//!
//! This crate does no I/O but reading the rule file.

pub mod actions;
pub mod catalog;
pub mod config;
pub mod duration;
pub mod engine;
pub mod expr;
pub mod host;
pub mod series;
pub mod vmstate;

pub use actions::{Actions, Fire};
pub use config::{LoadContext, RuleError, RuleSet};
pub use engine::Engine;
pub use host::HostMetrics;
