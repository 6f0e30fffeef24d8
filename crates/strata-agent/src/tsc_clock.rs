//! The `x86-tsc` trace clock: raw TSC cycles. Its rate and its zero in wall
//! time are measured against CLOCK_REALTIME, so that readers can still show
//! dates, while the raw cycles stay in the trace (guest↔host sync works on
//! them: a guest's TSC is its host's plus a constant).

use strata_core::ClockDesc;

#[cfg(target_arch = "x86_64")]
fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn realtime_ns() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// The narrowest of a few (realtime, tsc, realtime) brackets: (mid ns, tsc).
#[cfg(target_arch = "x86_64")]
fn bracket() -> (i128, u64) {
    let mut best = (i128::MAX, 0i128, 0u64);
    for _ in 0..64 {
        let a = realtime_ns();
        let t = rdtsc();
        let b = realtime_ns();
        if b - a < best.0 {
            best = (b - a, (a + b) / 2, t);
        }
    }
    (best.1, best.2)
}

/// Describes the `x86-tsc` clock: its measured rate (over `span`) and its
/// zero in Unix time. `None` off x86-64.
pub fn describe(name: &str, span: std::time::Duration) -> Option<ClockDesc> {
    #[cfg(target_arch = "x86_64")]
    {
        let (n0, t0) = bracket();
        std::thread::sleep(span);
        let (n1, t1) = bracket();
        let dn = n1 - n0;
        if dn <= 0 || t1 <= t0 {
            return None;
        }
        // Round to kHz: the TSC rate is a fixed hardware constant.
        let freq = ((t1 - t0) as i128 * 1_000_000_000 / dn + 500) / 1000 * 1000;
        let freq = u64::try_from(freq).ok().filter(|&f| f > 0)?;
        // Unix time of TSC 0, split into seconds and cycles as CTF wants.
        let zero_ns = n1 - (t1 as i128) * 1_000_000_000 / freq as i128;
        let offset_s = zero_ns.div_euclid(1_000_000_000);
        let rem_ns = zero_ns.rem_euclid(1_000_000_000);
        Some(ClockDesc {
            name: name.to_string(),
            description: "x86 TSC cycles (ftrace x86-tsc)".into(),
            freq,
            offset_s: offset_s as i64,
            offset: (rem_ns * freq as i128 / 1_000_000_000) as i64,
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (name, span);
        None
    }
}

/// The TSC now (0 off x86-64).
pub fn now() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}
