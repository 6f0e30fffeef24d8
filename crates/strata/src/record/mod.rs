//! `strata record`: capture this host's kernel events into a CTF trace.

use std::process::ExitCode;

/// Arguments of `strata record`.
#[derive(clap::Args)]
pub struct RecordArgs {}

/// Runs `strata record`.
pub fn run(_args: RecordArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("strata record is not built yet")
}
