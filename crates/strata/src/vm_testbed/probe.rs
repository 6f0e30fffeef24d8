//! The guest side of the sync probes: a sequence number written to an I/O
//! port, with the guest's TSC read just before and just after.
//!
//! Under TCG the vCPU thread turns the `outb` into a write(v) on the
//! isa-debugcon chardev, which the host trace records; under KVM the host
//! sees `kvm_pio` with the port and value. Each probe's timestamps go into
//! the guest trace itself, as a `trace_marker` write (`strata-sync SEQ
//! TSC_BEFORE TSC_AFTER`, an `ftrace:print` event) into the guest agent's
//! tracefs instance: with the `x86-tsc` trace clock they are the guest
//! trace's own clock values, so `strata vm report` syncs from the traces
//! alone. The tightest probe of each period is also printed on the console
//! (the testbed's own check).

use anyhow::bail;
use std::path::Path;
use std::time::{Duration, Instant};

/// Arguments of the guest probe (run by the guest's init, not by users).
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// The I/O port (isa-debugcon's iobase), e.g. 0x402.
    #[arg(long, value_parser = parse_port)]
    port: u16,
    /// Console lines per second, each the tightest probe since the last.
    #[arg(long, default_value = "10")]
    rate: f64,
    /// Seconds to run.
    #[arg(long)]
    secs: u64,
    /// Port writes per console period. Every one goes into the trace
    /// marker; only the one with the shortest BEFORE→AFTER span is printed
    /// (the testbed's console pairing ignores the others' host writes). The
    /// tightest probes set the sync bound.
    #[arg(long, default_value = "20")]
    tries: u32,
    /// The `trace_marker` file to write every probe into; default: the
    /// guest agent's instance (`instances/strata-*-agent`), waited for up
    /// to 10 s, and its live feed's (`strata-*-feed`, flight mode) when one
    /// shows up. `none`: console only.
    #[arg(long)]
    marker: Option<std::path::PathBuf>,
}

/// The tracefs root in the guest.
const TRACEFS: &str = "/sys/kernel/tracing";

/// The `trace_marker` of the agent's tracefs instance whose name ends in
/// `suffix` (`-agent`, or `-feed` for a flight agent's live feed), once it
/// exists.
fn find_agent_marker(suffix: &str, wait: Duration) -> Option<std::path::PathBuf> {
    let deadline = Instant::now() + wait;
    loop {
        let found = std::fs::read_dir(Path::new(TRACEFS).join("instances"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("strata-") && n.ends_with(suffix));
        // The directory shows before the kernel has filled it.
        let marker = found.map(|n| {
            Path::new(TRACEFS)
                .join("instances")
                .join(n)
                .join("trace_marker")
        });
        if let Some(m) = marker.filter(|m| m.exists()) {
            return Some(m);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    let t = s.trim();
    let v = match t.strip_prefix("0x") {
        Some(h) => u16::from_str_radix(h, 16),
        None => t.parse(),
    };
    v.map_err(|e| format!("bad port {s:?}: {e}"))
}

/// Runs the probe loop.
#[cfg(target_arch = "x86_64")]
pub fn run(args: ProbeArgs) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write;
    // SAFETY: ioperm only changes this process's I/O permission bitmap.
    if unsafe { libc::ioperm(args.port as libc::c_ulong, 1, 1) } != 0 {
        bail!(
            "ioperm(0x{:x}) failed: {} (the probe needs root)",
            args.port,
            std::io::Error::last_os_error()
        );
    }
    let end = Instant::now() + Duration::from_secs(args.secs);
    let marker_path = match &args.marker {
        Some(p) if p.as_os_str() == "none" => None,
        Some(p) => Some(p.clone()),
        None => find_agent_marker("-agent", Duration::from_secs(10)),
    };
    // A flight-mode agent streams a live feed from a second instance: the
    // markers go there too, for the relay's live sync, while its ring
    // keeps them for snapshots. The feed shows up just after the ring.
    let mut feed_marker: Option<std::fs::File> = None;
    let feed_search_until = Instant::now() + Duration::from_secs(10);
    let mut marker = match &marker_path {
        Some(p) => match std::fs::OpenOptions::new().write(true).open(p) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!(
                    "strata testbed-probe: cannot open {} ({e}); probes go to the console only",
                    p.display()
                );
                None
            }
        },
        None => {
            eprintln!(
                "strata testbed-probe: no agent tracefs instance; probes go to the console only"
            );
            None
        }
    };
    let period = Duration::from_secs_f64(1.0 / args.rate.clamp(0.1, 10_000.0));
    let mut out = std::io::stdout().lock();
    let mut seq: u64 = 0;
    let tries = args.tries.clamp(1, 100);
    let gap = period / tries;
    // The console line goes out once per period of wall time, however
    // late the sleeps wake (a starved vCPU oversleeps by tens of ms).
    let mut next_print = Instant::now() + period;
    let mut best: Option<(u64, u64, u64)> = None;
    // SAFETY: rdtsc has no side effects.
    let mut rng = unsafe { core::arch::x86_64::_rdtsc() } | 1;
    let mut marker_failures: (u64, Option<std::io::Error>) = (0, None);
    while Instant::now() < end {
        seq += 1;
        // SAFETY: rdtsc has no side effects; the out instruction goes to
        // the port we were given access to, which the debugcon device owns.
        let (before, after) = unsafe {
            let before = core::arch::x86_64::_rdtsc();
            core::arch::asm!("out dx, al", in("dx") args.port, in("al") seq as u8,
                options(nomem, nostack, preserves_flags));
            let after = core::arch::x86_64::_rdtsc();
            (before, after)
        };
        if let Some(m) = marker.as_mut() {
            // One write per marker: the kernel makes it one event. It fails
            // (EBADF) while the agent's buffer is off, before it starts
            // tracing or while it resizes: that probe is only lost.
            let line = format!("strata-sync {seq} {before} {after}\n");
            if let Err(e) = m.write_all(line.as_bytes()) {
                marker_failures.0 += 1;
                marker_failures.1.get_or_insert(e);
            }
            if let Some(f) = feed_marker.as_mut() {
                let _ = f.write_all(line.as_bytes());
            }
        }
        if best.is_none_or(|(_, b, a)| after.wrapping_sub(before) < a.wrapping_sub(b)) {
            best = Some((seq, before, after));
        }
        if Instant::now() >= next_print {
            if args.marker.is_none() && feed_marker.is_none() && Instant::now() < feed_search_until
            {
                feed_marker = find_agent_marker("-feed", Duration::ZERO)
                    .and_then(|p| std::fs::OpenOptions::new().write(true).open(p).ok());
            }
            if let Some((seq, before, after)) = best.take() {
                writeln!(out, "strata-sync {seq} {before} {after}")?;
                out.flush()?;
            }
            next_print = Instant::now() + period;
        }
        // Irregular gaps (0.5-1.5 × the mean): the host sees no values
        // under TCG, only times, and a regular comb of probes would line up
        // with itself one probe off.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(gap.mul_f64(0.5 + (rng % 1024) as f64 / 1024.0));
    }
    if let (n, Some(first)) = marker_failures {
        eprintln!("strata testbed-probe: {n} of {seq} trace marker writes failed (first: {first})");
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs the probe loop (x86-64 only: I/O ports and the TSC).
#[cfg(not(target_arch = "x86_64"))]
pub fn run(_args: ProbeArgs) -> anyhow::Result<std::process::ExitCode> {
    bail!("sync probes need x86-64 (I/O ports and the TSC)")
}
