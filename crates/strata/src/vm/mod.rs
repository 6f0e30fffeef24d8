//! `strata vm`: virtual machine analysis. `report` reads host (and guest)
//! traces offline; `hints` saves what this host knows of its running VMs
//! (names, UUIDs, vCPU threads) for later reports.

pub mod report;

use std::process::ExitCode;

use clap::Subcommand;

/// The `strata vm` subcommands.
#[derive(Subcommand)]
pub enum VmArgs {
    /// Per VM and vCPU: running / hypervisor / preempted / idle time, exit
    /// reasons, who preempted whom, steal, overcommit, and the fused view
    /// of paired guest traces.
    Report(report::ReportArgs),
    /// Print (as JSON) the VMs running now: QEMU names and UUIDs from
    /// /proc, vCPU threads from debugfs. Save it as vm-hints.json next to
    /// a trace and `strata vm report` uses it.
    Hints(report::HintsArgs),
    /// Boot QEMU guests with Strata agents inside, streaming with this host's
    /// agent to a local relay; the traces land in `-o DIR`.
    Testbed(crate::vm_testbed::TestbedArgs),
}

/// Runs a `strata vm` subcommand.
pub fn run(args: VmArgs) -> anyhow::Result<ExitCode> {
    match args {
        VmArgs::Report(a) => report::run(a),
        VmArgs::Hints(a) => report::hints(a),
        VmArgs::Testbed(a) => crate::vm_testbed::run(a),
    }
}
