//! The kernel state system and the analyses.
