//! Live analyses.
