//! The Strata relay as a library: it collects traces from agents, stores them
//! as CTF and serves them to analyses and viewers.

pub mod live;
