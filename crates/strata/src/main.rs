//! `strata`: one command for recording and analysing kernel traces.

mod agent;
mod analyze;
mod ctl;
mod host;
mod record;
mod relay;
mod top;
mod units;
mod vm;
mod vm_testbed;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Real-time kernel tracing for fleets of Linux hosts and their VMs.
#[derive(Parser)]
#[command(name = "strata", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Record this host's kernel activity to a CTF trace (LTTng kernel layout).
    Record(record::RecordArgs),
    /// Analyse a CTF kernel trace (LTTng's or Strata's): CPU, syscalls, scheduling, IRQs, I/O, memory.
    Analyze(analyze::AnalyzeArgs),
    /// Stream this host's kernel trace (or a recorded one) to a relay.
    Agent(Box<agent::AgentArgs>),
    /// Collect agents' traces: CTF storage, live analysis, HTTP API, Prometheus, LTTng-live.
    Relay(relay::RelayArgs),
    /// Live view of a relay's hosts: CPUs, top threads, syscalls, losses.
    Top(top::TopArgs),
    /// Control a relay and its agents: hosts, sessions, events, snapshots, rules.
    Ctl(ctl::CtlArgs),
    /// Virtual machines: vCPU states, exits, preemption, fused guest view.
    #[command(subcommand)]
    Vm(vm::VmArgs),
    /// The guest side of the testbed's clock-sync probes.
    #[command(hide = true)]
    TestbedProbe(vm_testbed::probe::ProbeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Record(args) => record::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Agent(args) => agent::run(*args),
        Command::Relay(args) => relay::run(args),
        Command::Top(args) => top::run(args),
        Command::Ctl(args) => ctl::run(args),
        Command::Vm(args) => vm::run(args),
        Command::TestbedProbe(args) => vm_testbed::probe::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("strata: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
