//! The offset from a trace clock's zero to the Unix epoch, so that a stream's
//! timestamps can be written as CTF clock values with `offset_s`/`offset`.
//!
//! Two methods:
//! - Clocks that are also POSIX clocks (`mono`, `mono_raw`, `boot`, `tai`)
//!   are read with `clock_gettime` between two reads of CLOCK_REALTIME; the
//!   narrowest of many brackets gives the offset to within a microsecond.
//! - Clocks only the tracer has (`local`, `global`, `perf`: all sched_clock)
//!   are measured by writing `trace_marker` events into a scratch instance
//!   between two CLOCK_REALTIME reads and reading back the stamp the kernel
//!   gave each marker. This needs root and tracefs.
//!
//! `x86-tsc`, `counter` and `uptime` do not count nanoseconds; they are
//! refused with `ErrorKind::Unsupported`.

use crate::capture::CpuReaders;
use crate::page::Page;
use crate::tracefs::{Instance, Tracefs, TracefsError};
use std::io;

/// Brackets tried; the narrowest wins.
const TRIES: usize = 64;
/// Markers written by the marker method.
const MARKERS: usize = 16;

fn now(clock: libc::clockid_t) -> io::Result<i128> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128)
}

/// The POSIX clock that reads the same as a trace clock, if there is one.
pub fn posix_clock_of(trace_clock: &str) -> Option<libc::clockid_t> {
    Some(match trace_clock {
        "mono" => libc::CLOCK_MONOTONIC,
        "mono_raw" => libc::CLOCK_MONOTONIC_RAW,
        "boot" => libc::CLOCK_BOOTTIME,
        "tai" => libc::CLOCK_TAI,
        _ => return None,
    })
}

/// Nanoseconds to add to a `clock` timestamp to get Unix time.
pub fn clock_offset_to_realtime(clock: &str) -> io::Result<i64> {
    if let Some(id) = posix_clock_of(clock) {
        return bracket_offset(id);
    }
    match clock {
        "local" | "global" | "perf" => {
            let tracefs = Tracefs::find_or_mount().map_err(io::Error::other)?;
            clock_offset_via_marker(&tracefs, clock).map_err(io::Error::other)
        }
        _ => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "trace clock `{clock}` does not count nanoseconds from a fixed point; \
                 record with `mono` (the default), `boot`, `tai`, `local` or `global`"
            ),
        )),
    }
}

fn bracket_offset(id: libc::clockid_t) -> io::Result<i64> {
    let mut best: Option<(i128, i128)> = None;
    for _ in 0..TRIES {
        let r1 = now(libc::CLOCK_REALTIME)?;
        let c = now(id)?;
        let r2 = now(libc::CLOCK_REALTIME)?;
        let width = r2 - r1;
        if width >= 0 && best.is_none_or(|(w, _)| width < w) {
            best = Some((width, r1 + width / 2 - c));
        }
    }
    let (_, off) = best.ok_or_else(|| io::Error::other("CLOCK_REALTIME went backwards"))?;
    i64::try_from(off).map_err(io::Error::other)
}

/// Measures any nanosecond trace clock with `trace_marker` writes into a
/// scratch instance (created and removed here).
pub fn clock_offset_via_marker(tracefs: &Tracefs, clock: &str) -> Result<i64, TracefsError> {
    let inst = Instance::create(tracefs, "clock")?;
    inst.set_clock(clock)?;
    inst.set_buffer_size_kb(64)?;
    let print = inst.event_format("ftrace", "print")?;
    let buf = print
        .field("buf")
        .map(|f| f.accessor())
        .ok_or_else(|| TracefsError::Parse {
            path: inst.path().join("events/ftrace/print/format"),
            reason: "no `buf` field".into(),
        })?;
    let mut brackets = [(0i128, 0i128); MARKERS];
    inst.set_tracing_on(true)?;
    for (k, slot) in brackets.iter_mut().enumerate() {
        let text = format!("strata-clock {k}");
        let r1 = now(libc::CLOCK_REALTIME).map_err(|e| realtime_err(&inst, e))?;
        inst.write_marker(&text)?;
        let r2 = now(libc::CLOCK_REALTIME).map_err(|e| realtime_err(&inst, e))?;
        *slot = (r1, r2);
    }
    inst.set_tracing_on(false)?;
    let mut readers = CpuReaders::open(&inst, &inst.online_cpus()?)?;
    let layout = *readers.layout();
    let mut best: Option<(i128, i128)> = None;
    let mut sink = |_cpu: u32, bytes: &[u8]| -> Result<(), io::Error> {
        let Ok(page) = Page::parse(&layout, bytes) else {
            return Ok(());
        };
        for rec in page.records().flatten() {
            let Some(text) = buf.str(rec.data) else {
                continue;
            };
            let Some(k) = std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.trim().strip_prefix("strata-clock "))
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            if let Some(&(r1, r2)) = brackets.get(k) {
                let width = r2 - r1;
                if best.is_none_or(|(w, _)| width < w) {
                    best = Some((width, r1 + width / 2 - rec.ts as i128));
                }
            }
        }
        Ok(())
    };
    readers.drain(&mut sink).map_err(|e| TracefsError::Parse {
        path: inst.path().to_path_buf(),
        reason: e.to_string(),
    })?;
    let (_, off) = best.ok_or_else(|| TracefsError::Parse {
        path: inst.path().join("trace_marker"),
        reason: "no marker came back from the buffer".into(),
    })?;
    i64::try_from(off).map_err(|_| TracefsError::Parse {
        path: inst.path().join("trace_clock"),
        reason: "offset does not fit 64 bits".into(),
    })
}

fn realtime_err(inst: &Instance, e: io::Error) -> TracefsError {
    TracefsError::Parse {
        path: inst.path().to_path_buf(),
        reason: format!("clock_gettime(CLOCK_REALTIME) failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_clocks_bracket_consistently() {
        let a = clock_offset_to_realtime("mono").unwrap();
        let b = clock_offset_to_realtime("mono").unwrap();
        // Two measurements a moment apart agree to well under a millisecond.
        assert!((a - b).abs() < 1_000_000, "{a} vs {b}");
        // Monotonic time started at boot, after 2020 and before now.
        let real = now(libc::CLOCK_REALTIME).unwrap() as i64;
        assert!(a > 1_577_836_800_000_000_000 && a < real);
        let boot = clock_offset_to_realtime("boot").unwrap();
        // Boot time includes suspend, so its zero is no later than mono's.
        assert!(boot <= a + 1_000_000);
        assert_eq!(
            clock_offset_to_realtime("x86-tsc").unwrap_err().kind(),
            io::ErrorKind::Unsupported
        );
    }
}
