//! `strata analyze`: the lttng-analyses reports over CTF kernel traces.

use std::process::ExitCode;

/// Arguments of `strata analyze`.
#[derive(clap::Args)]
pub struct AnalyzeArgs {}

/// Runs `strata analyze`.
pub fn run(_args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("strata analyze is not built yet")
}
