//! Throughput of the analyses against lttng-analyses 0.6.1, in the same run:
//! cputop and syscalls on tc-many-threads and on a trace many times larger,
//! built from its real packets with shifted timestamps; plus peak RSS as
//! the trace grows.
//!
//! `cargo bench -p strata-analysis --bench analyze`
//! Environment: `STRATA_BENCH_COPIES` (default 24) sizes the large trace;
//! `STRATA_BENCH_PEER=small` runs the peer on tc-many-threads only (it takes
//! minutes on the large trace), `none` not at all; `STRATA_BENCH_KEEP=1`
//! keeps the large trace.
//!
//! Each of our runs is a fresh process (so its peak RSS is its own) timed
//! from opening the trace to the finished report, best of several. The
//! peer's runs are its commands with `--skip-validation` (no extra
//! babeltrace pass) and `TZ=UTC`, one each. Times are CPU seconds (user +
//! system) of the process, with wall seconds in brackets; speedups come
//! from CPU times, since other work on this 2-core machine makes wall
//! times mostly a measure of waiting for a core.

#[path = "../../../tests-support/shared_traces.rs"]
mod shared_traces;
use shared_traces::shared_traces;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use strata_analysis::analysis::{analyze, Options, Selection};
use strata_ctf::read::{OpenOptions, TraceSet};

const PEER: &str = "/opt/la/bin";

fn traces() -> Option<PathBuf> {
    shared_traces("analyze bench")
}

fn selection(mode: &str) -> Selection {
    Selection {
        cputop: mode.contains("cputop"),
        syscalls: mode.contains("syscalls"),
        ..Selection::default()
    }
}

/// CPU time (user + system) of this process (`libc::RUSAGE_SELF`) or of
/// its waited-for children (`libc::RUSAGE_CHILDREN`), in seconds.
fn cpu_secs(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the struct it is given, which is plain
    // data and fully initialized by zeroing.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut r) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(r.ru_utime) + tv(r.ru_stime)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Child mode: analyse once, print `seconds rss_kib syscalls total_cpu_pct
/// cpu_seconds`.
fn child(path: &Path, mode: &str) {
    let cpu = cpu_secs(libc::RUSAGE_SELF);
    let t = Instant::now();
    let set = TraceSet::open(path, &OpenOptions::default()).expect("trace opens");
    let opts = Options {
        selection: selection(mode),
        top: 10,
        ..Options::default()
    };
    let r = analyze(&set, opts, |_| {}).expect("trace reads");
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs(libc::RUSAGE_SELF) - cpu;
    let h = &r.hosts[0];
    let sys = h.syscalls.as_ref().map_or(0, |s| s.total);
    let total = h.cputop.as_ref().map_or(0.0, |c| c.total_pct);
    println!("{secs} {} {sys} {total} {cpu}", peak_rss_kib());
}

/// The best of several runs: the least CPU time, the least wall time.
struct Run {
    secs: f64,
    cpu_secs: f64,
    rss_kib: u64,
    syscalls: u64,
    total_pct: f64,
}

fn ours(path: &Path, mode: &str, reps: usize) -> Run {
    let exe = std::env::current_exe().expect("bench binary");
    let mut best: Option<Run> = None;
    for _ in 0..reps {
        let out = Command::new(&exe)
            .args(["--child", mode])
            .arg(path)
            .output()
            .expect("child runs");
        let s = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = s.split_whitespace().collect();
        assert!(
            f.len() == 5,
            "child failed: {s} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = Run {
            secs: f[0].parse().unwrap(),
            rss_kib: f[1].parse().unwrap(),
            syscalls: f[2].parse().unwrap(),
            total_pct: f[3].parse().unwrap(),
            cpu_secs: f[4].parse().unwrap(),
        };
        best = Some(match best {
            None => r,
            Some(b) => Run {
                secs: b.secs.min(r.secs),
                cpu_secs: b.cpu_secs.min(r.cpu_secs),
                rss_kib: b.rss_kib.max(r.rss_kib),
                ..r
            },
        });
    }
    best.expect("at least one run")
}

/// One peer command: (wall, CPU) seconds, `None` when it is not installed
/// or fails.
fn peer(cmd: &str, path: &Path) -> Option<(f64, f64)> {
    let exe = Path::new(PEER).join(cmd);
    if !exe.exists() {
        return None;
    }
    let c0 = cpu_secs(libc::RUSAGE_CHILDREN);
    let t = Instant::now();
    let out = Command::new(&exe)
        .args(["--no-progress", "--skip-validation"])
        .arg(path)
        .env("TZ", "UTC")
        .output()
        .ok()?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs(libc::RUSAGE_CHILDREN) - c0;
    if !out.status.success() {
        println!(
            "  {cmd} failed on {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&out.stderr).lines())
                .last()
                .unwrap_or("")
        );
        return None;
    }
    Some((secs, cpu))
}

fn count_events(path: &Path) -> u64 {
    let set = TraceSet::open(path, &OpenOptions::default()).expect("trace opens");
    let mut e = set.events();
    let mut n = 0;
    while e.next().is_some() {
        n += 1;
    }
    n
}

/// Writes a trace `copies` times as long as `src`: every stream file is its
/// real packets repeated, copy k shifted by k * `shift` cycles. Packet
/// begin/end times and the 64-bit timestamps of extended event headers are
/// patched; the 27-bit compact timestamps stay valid because `shift` is a
/// multiple of 2^27. The workload repeats with the same tids, as a machine
/// running the same job again would.
fn build_large(src: &Path, dst: &Path, copies: u64) -> std::io::Result<()> {
    let _ = std::fs::remove_dir_all(dst);
    std::fs::create_dir_all(dst)?;
    std::fs::copy(src.join("metadata"), dst.join("metadata"))?;
    let set = TraceSet::open(src, &OpenOptions::default()).expect("source opens");
    let mut files: HashMap<PathBuf, (Vec<u8>, Vec<usize>)> = HashMap::new();
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    let mut events = set.events();
    while let Some(e) = events.next() {
        let e = e.expect("valid source");
        let (file, off) = e.position();
        let entry = match files.get_mut(file) {
            Some(x) => x,
            None => {
                let bytes = std::fs::read(file)?;
                files
                    .entry(file.to_path_buf())
                    .or_insert((bytes, Vec::new()))
            }
        };
        // Compact header: id 31 selects the extended form (u32 id, u64 ts).
        if entry.0.get(off as usize).is_some_and(|b| b & 31 == 31) {
            entry.1.push(off as usize);
        }
    }
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let packets = |b: &[u8]| {
        let mut out = Vec::new();
        let mut off = 0;
        while off + 64 <= b.len() {
            out.push(off);
            let size = u64_at(b, off + 56) as usize / 8;
            if size == 0 {
                break;
            }
            off += size;
        }
        out
    };
    for (bytes, _) in files.values() {
        for p in packets(bytes) {
            lo = lo.min(u64_at(bytes, p + 32));
            hi = hi.max(u64_at(bytes, p + 40));
        }
    }
    let unit = 1u64 << 27;
    let shift = (hi - lo + 10_000_000).div_ceil(unit) * unit;
    for (file, (bytes, ext)) in &files {
        let name = file.file_name().expect("stream file name");
        let mut out = std::io::BufWriter::new(std::fs::File::create(dst.join(name))?);
        let pk = packets(bytes);
        let mut b = bytes.clone();
        for k in 0..copies {
            b.copy_from_slice(bytes);
            let d = k * shift;
            let mut add = |at: usize| {
                let v = u64_at(&b, at).wrapping_add(d);
                b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            };
            for &p in &pk {
                add(p + 32);
                add(p + 40);
            }
            for &o in ext {
                add(o + 5);
            }
            out.write_all(&b)?;
        }
        out.flush()?;
    }
    Ok(())
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(Path::new(&args[i + 2]), &args[i + 1]);
        return;
    }
    let Some(root) = traces() else {
        println!("analyze bench: the shared traces are not here; nothing measured");
        return;
    };
    let copies: u64 = std::env::var("STRATA_BENCH_COPIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let peer_mode = std::env::var("STRATA_BENCH_PEER").unwrap_or_else(|_| "all".into());
    let small = root.join("tc-many-threads");
    let tmp = std::env::temp_dir().join(format!("strata-analyze-bench-{}", std::process::id()));
    let mid = tmp.join("x4/kernel");
    let large = tmp.join(format!("x{copies}/kernel"));
    build_large(&small, &mid, 4).expect("x4 trace written");
    build_large(&small, &large, copies).expect("large trace written");
    if !Path::new(PEER).join("lttng-cputop").exists() {
        println!(
            "lttng-analyses not installed in {PEER} (scripts/peer-lttng-analyses): no peer figures"
        );
    }

    println!("analyze bench: cputop + syscalls in one pass (ours), vs lttng-cputop + lttng-syscallstats (peer)");
    println!(
        "  CPU seconds (user + system) first, wall seconds in brackets; speedups from CPU times"
    );
    println!(
        "{:<16} {:>9} {:>17} {:>11} {:>8} {:>15} {:>15} {:>15} {:>8} {:>7}",
        "trace",
        "events",
        "ours s",
        "ours ev/s",
        "RSS MiB",
        "peer cpu",
        "peer sys",
        "peer s",
        "speedup",
        "MiB"
    );
    let both = |x: (f64, f64)| format!("{:.2} ({:.2})", x.1, x.0);
    let mut checks = Vec::new();
    for (name, path, reps) in [
        ("tc-many-threads".to_string(), small.clone(), 9),
        ("x4".to_string(), mid.clone(), 3),
        (format!("x{copies}"), large.clone(), 3),
    ] {
        let events = count_events(&path);
        let r = ours(&path, "cputop+syscalls", reps);
        let run_peer = peer_mode == "all" || (peer_mode == "small" && name == "tc-many-threads");
        let (pc, ps) = if run_peer {
            (
                peer("lttng-cputop", &path),
                peer("lttng-syscallstats", &path),
            )
        } else {
            (None, None)
        };
        let f = |x: Option<(f64, f64)>| x.map_or("-".into(), both);
        let (peer_s, speedup) = match (pc, ps) {
            (Some(a), Some(b)) => (
                both((a.0 + b.0, a.1 + b.1)),
                format!("{:.0}x", (a.1 + b.1) / r.cpu_secs),
            ),
            _ => ("-".into(), "-".into()),
        };
        println!(
            "{:<16} {:>9} {:>17} {:>11.0} {:>8.1} {:>15} {:>15} {:>15} {:>8} {:>7.1}",
            name,
            events,
            format!("{:.4} ({:.4})", r.cpu_secs, r.secs),
            events as f64 / r.cpu_secs,
            r.rss_kib as f64 / 1024.0,
            f(pc),
            f(ps),
            peer_s,
            speedup,
            dir_size(&path) as f64 / 1048576.0
        );
        checks.push((name, r.syscalls, r.total_pct));
    }
    println!("separately, on tc-many-threads (ours best of 9, peer once):");
    for (mode, cmd) in [
        ("cputop", "lttng-cputop"),
        ("syscalls", "lttng-syscallstats"),
    ] {
        let r = ours(&small, mode, 9);
        let p = if peer_mode == "none" {
            None
        } else {
            peer(cmd, &small)
        };
        match p {
            Some(p) => println!(
                "  {mode:<9} ours {:.4} ({:.4}) s, {cmd} {}: {:.0}x",
                r.cpu_secs,
                r.secs,
                both(p),
                p.1 / r.cpu_secs
            ),
            None => println!("  {mode:<9} ours {:.4} ({:.4}) s", r.cpu_secs, r.secs),
        }
    }
    println!("sanity: syscalls counted and total CPU % per trace:");
    for (name, sys, total) in checks {
        println!("  {name:<16} {sys:>9} syscalls  {total:.2} %");
    }
    if std::env::var_os("STRATA_BENCH_KEEP").is_some() {
        println!("kept {}", tmp.display());
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
