//! `strata`: one command for recording and analysing kernel traces.

mod units;

use clap::{Parser, Subcommand};

/// Real-time kernel tracing for fleets of Linux hosts and their VMs.
#[derive(Parser)]
#[command(name = "strata", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() -> std::process::ExitCode {
    let _cli = Cli::parse();
    std::process::ExitCode::SUCCESS
}
