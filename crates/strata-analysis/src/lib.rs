//! The kernel state system and the analyses behind `strata analyze`.
//!
//! Layers, bottom up:
//! - [`bind`]: each CTF event class is matched once to a [`event::KernelEvent`]
//!   kind and the fields it needs; per event, one table lookup and direct reads.
//! - [`state`]: the [`state::Machine`], per host: CPUs (current thread, mode),
//!   threads (identity, state, current syscall), fed one event at a time.
//! - [`observer`]: what the machine reports (run slices, completed syscalls,
//!   IRQs, wakeup latencies, ...).
//! - [`analysis`]: small accumulators over those notifications (`cputop`,
//!   `syscalls`, `sched`, `irq`, `io`, `mem`, `summary`) and the
//!   [`analysis::Analyzer`] that drives them over a trace set.
//! - [`vm`]: the VM model (vCPU states, exits, preemption, fused guest view)
//!   behind `strata vm report`.
//!
//! ```no_run
//! use strata_analysis::analysis::{analyze, Options, Selection};
//! use strata_ctf::read::{OpenOptions, TraceSet};
//! let set = TraceSet::open("trace".as_ref(), &OpenOptions::default())?;
//! let opts = Options { selection: Selection { cputop: true, ..Default::default() }, ..Default::default() };
//! let report = analyze(&set, opts, |_| {})?;
//! for h in &report.hosts {
//!     println!("{}: {:.2} %", h.hostname, h.cputop.as_ref().unwrap().total_pct);
//! }
//! # Ok::<(), strata_ctf::read::ReadError>(())
//! ```

pub mod analysis;
pub mod bind;
pub mod errno;
pub mod event;
pub mod filter;
pub mod hash;
pub mod observer;
pub mod state;
pub mod stats;
pub mod timespec;
pub mod vm;
