//! Decode throughput of the CTF reader against `babeltrace2 -o dummy`, on
//! tc-many-threads and on a trace many times larger built from its real
//! packets with shifted timestamps, plus peak RSS as the trace grows.
//!
//! `cargo bench -p strata-ctf --bench read_decode` (env `STRATA_BENCH_COPIES`,
//! default 24, sets the size of the large trace; `STRATA_BENCH_KEEP=1` keeps
//! the generated traces).
//!
//! Two figures per trace, each timed from opening the trace (metadata parsed
//! and compiled, files mapped) to the last event, in a fresh process, as
//! CPU time (user + system, what the process itself consumed) and as wall
//! time. babeltrace2's are those of its whole process. On a machine other
//! work keeps busy, the CPU times are the ones to compare: wall times then
//! mostly measure waiting for a core.
//! - "decode + merge": every event located, its header and timestamp
//!   decoded, its contexts and payload walked (so every field is decodable),
//!   and all streams merged in time order.
//! - "decode + merge + fields": the same, plus every field of every event
//!   read through the typed accessors (integers, strings, every array
//!   element), and the packet context fields once per packet. That is what
//!   `babeltrace2 -o dummy` does: it builds every field object.

use std::collections::HashMap;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use strata_ctf::read::{Event, FieldKind, FieldRef, OpenOptions, TraceSet};

#[path = "../../../tests-support/shared_traces.rs"]
mod shared_traces;
use shared_traces::shared_traces;

/// The fields of one class grouped by how they are read, resolved once: an
/// analysis knows its field types up front, so reads need no dispatch.
#[derive(Default, Clone)]
struct ClassFields {
    ints: Vec<FieldRef>,
    strings: Vec<FieldRef>,
    arrays: Vec<FieldRef>,
    floats: Vec<FieldRef>,
    /// Packet context integers, read once per packet.
    packet: Vec<FieldRef>,
}

/// What a child run measured.
struct Measure {
    events: u64,
    open_secs: f64,
    secs: f64,
    cpu_secs: f64,
    checksum: u64,
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

/// Hands every event of `$events` to the closure `$visit`, through
/// `Events::try_for_each` (the internal iteration users get the speed of)
/// or, with `$by_next`, `next` in a loop. A macro, so that each way has a
/// closure of its own called from one place, which the compiler inlines
/// as it would an analysis's loop body (one closure called from both
/// ways is compiled out of line).
macro_rules! drive {
    ($events:ident, $by_next:expr, $visit:expr) => {
        if $by_next {
            let mut visit = $visit;
            while let Some(e) = $events.next() {
                visit(e.expect("valid trace"));
            }
        } else {
            let mut visit = $visit;
            let _ = $events.try_for_each(|e| {
                visit(e.expect("valid trace"));
                ControlFlow::<()>::Continue(())
            });
        }
    };
}

/// Opens and reads everything; with `fields`, reads every field too.
/// `BY_NEXT`: through `next` (a copy of its own, so that neither way's
/// code shapes the other's).
fn decode<const BY_NEXT: bool>(path: &Path, fields: bool) -> Measure {
    let cpu = cpu_secs(libc::RUSAGE_SELF);
    let t = Instant::now();
    let set = TraceSet::open(path, &OpenOptions::default()).expect("trace opens");
    let open_secs = t.elapsed().as_secs_f64();
    let mut events = set.events();
    let (mut n, mut sum) = (0u64, 0u64);
    if !fields {
        drive!(events, BY_NEXT, |e: Event<'_>| {
            n += 1;
            sum = sum.wrapping_add(e.ts() as u64 ^ e.class_index() as u64);
        });
    } else {
        // Resolved lazily, on a class's first event, as an analysis binds.
        let mut plans: Vec<Option<ClassFields>> = vec![None; set.class_count()];
        let mut packet_of_stream: Vec<u64> = Vec::new();
        drive!(events, BY_NEXT, |e: Event<'_>| {
            n += 1;
            sum = sum.wrapping_add(e.ts() as u64);
            let p = plans[e.class_index()].get_or_insert_with(|| {
                let mut p = ClassFields::default();
                for (_, f, k) in e.class().fields() {
                    match k {
                        FieldKind::Int(_) | FieldKind::Enum if f.is_packet_context() => {
                            p.packet.push(f)
                        }
                        FieldKind::Int(_) | FieldKind::Enum => p.ints.push(f),
                        FieldKind::String => p.strings.push(f),
                        FieldKind::Array | FieldKind::Sequence => p.arrays.push(f),
                        FieldKind::Float => p.floats.push(f),
                        // Their members are listed as fields of their own.
                        FieldKind::Struct | FieldKind::Variant => {}
                    }
                }
                p
            });
            let s = e.stream();
            if packet_of_stream.len() <= s {
                packet_of_stream.resize(s + 1, 0);
            }
            if packet_of_stream[s] != e.packet_number() {
                packet_of_stream[s] = e.packet_number();
                for &f in &p.packet {
                    sum = sum.wrapping_add(e.u64(f).unwrap_or(0));
                }
            }
            for &f in &p.ints {
                sum = sum.wrapping_add(e.u64(f).unwrap_or(0));
            }
            for &f in &p.strings {
                sum = sum.wrapping_add(e.str(f).map_or(0, |s| s.len() as u64));
            }
            for &f in &p.arrays {
                // Char arrays read as text, others element by element.
                if let Some(s) = e.str(f) {
                    sum = sum.wrapping_add(s.len() as u64);
                } else {
                    for i in 0..e.len(f).unwrap_or(0) {
                        sum = sum.wrapping_add(e.element(f, i).unwrap_or(0) as u64);
                    }
                }
            }
            for &f in &p.floats {
                sum = sum.wrapping_add(e.value(f).is_some() as u64);
            }
        });
    }
    Measure {
        events: n,
        open_secs,
        secs: t.elapsed().as_secs_f64(),
        cpu_secs: cpu_secs(libc::RUSAGE_SELF) - cpu,
        checksum: sum,
    }
}

/// Peak resident set size of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Child mode: decode once, print `events secs open_secs checksum rss_kib
/// cpu_secs`.
fn child(path: &Path, fields: bool) {
    // `STRATA_BENCH_NEXT=1`: `next` in a loop rather than `try_for_each`,
    // to compare the two in one binary.
    let m = if std::env::var_os("STRATA_BENCH_NEXT").is_some() {
        decode::<true>(path, fields)
    } else {
        decode::<false>(path, fields)
    };
    println!(
        "{} {} {} {} {} {}",
        m.events,
        m.secs,
        m.open_secs,
        m.checksum,
        peak_rss_kib(),
        m.cpu_secs
    );
}

/// The best of several runs: the least CPU time, the least wall time.
struct Run {
    events: u64,
    secs: f64,
    cpu_secs: f64,
    open_secs: f64,
    rss_kib: u64,
}

/// Runs the decode in a fresh process (so peak RSS is its own), keeping
/// the best of it and `best`.
fn ours(path: &Path, fields: bool, best: Option<Run>) -> Run {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg(if fields { "--child-fields" } else { "--child" })
        .arg(path)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = s.split_whitespace().collect();
    assert!(
        f.len() == 6,
        "child failed: {s} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = Run {
        events: f[0].parse().unwrap(),
        secs: f[1].parse().unwrap(),
        open_secs: f[2].parse().unwrap(),
        rss_kib: f[4].parse().unwrap(),
        cpu_secs: f[5].parse().unwrap(),
    };
    match best {
        None => r,
        Some(b) => Run {
            secs: b.secs.min(r.secs),
            cpu_secs: b.cpu_secs.min(r.cpu_secs),
            open_secs: b.open_secs.min(r.open_secs),
            rss_kib: b.rss_kib.max(r.rss_kib),
            ..r
        },
    }
}

/// `babeltrace2 PATH -o dummy`, best of `reps` runs and of `best`: (wall,
/// CPU) seconds; None if it is absent.
fn babeltrace2(path: &Path, reps: usize, best: Option<(f64, f64)>) -> Option<(f64, f64)> {
    let (mut wall, mut cpu) = best.unwrap_or((f64::MAX, f64::MAX));
    for _ in 0..reps {
        let c0 = cpu_secs(libc::RUSAGE_CHILDREN);
        let t = Instant::now();
        let st = Command::new("babeltrace2")
            .arg(path)
            .args(["-o", "dummy"])
            .status()
            .ok()?;
        assert!(st.success(), "babeltrace2 failed on {}", path.display());
        wall = wall.min(t.elapsed().as_secs_f64());
        cpu = cpu.min(cpu_secs(libc::RUSAGE_CHILDREN) - c0);
    }
    Some((wall, cpu))
}

/// Builds a trace `copies` times as long as `src`: each stream file is its
/// real packets repeated, the k-th copy shifted by k * `shift` clock cycles
/// (packet begin/end and extended event headers patched; compact 27-bit
/// timestamps are unchanged since `shift` is a multiple of 2^27).
fn build_large(src: &Path, dst: &Path, copies: u64) {
    let _ = std::fs::remove_dir_all(dst);
    std::fs::create_dir_all(dst).unwrap();
    std::fs::copy(src.join("metadata"), dst.join("metadata")).unwrap();
    // Where the extended headers are, found with the reader itself.
    let set = TraceSet::open(src, &OpenOptions::default()).unwrap();
    let mut extended: HashMap<PathBuf, Vec<u64>> = HashMap::new();
    let (mut first, mut last) = (u64::MAX, 0u64);
    let mut events = set.events();
    let mut data_cache: HashMap<PathBuf, Vec<u8>> = HashMap::new();
    while let Some(e) = events.next() {
        let e = e.unwrap();
        first = first.min(e.cycles());
        last = last.max(e.cycles());
        let (file, off) = e.position();
        let bytes = data_cache
            .entry(file.to_path_buf())
            .or_insert_with(|| std::fs::read(file).unwrap());
        if bytes[off as usize] & 31 == 31 {
            extended.entry(file.to_path_buf()).or_default().push(off);
        }
    }
    // Packets may close well after their last event: include their bounds.
    for bytes in data_cache.values() {
        let mut off = 0usize;
        while off + 64 <= bytes.len() {
            let at = |i: usize| u64::from_le_bytes(bytes[off + i..off + i + 8].try_into().unwrap());
            first = first.min(at(32));
            last = last.max(at(40));
            let size = at(56) as usize / 8;
            if size == 0 {
                break;
            }
            off += size;
        }
    }
    let unit = 1u64 << 27;
    let shift = (last - first + 10_000_000).div_ceil(unit) * unit;
    for (file, bytes) in &data_cache {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(dst.join(file.file_name().unwrap())).unwrap(),
        );
        let ext = extended.get(file).cloned().unwrap_or_default();
        for k in 0..copies {
            let mut b = bytes.clone();
            let add = |b: &mut [u8], at: usize, d: u64| {
                let v = u64::from_le_bytes(b[at..at + 8].try_into().unwrap()).wrapping_add(d);
                b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            };
            let d = k * shift;
            // Packets: header 32 bytes (magic, uuid, stream_id, instance),
            // then timestamp_begin, timestamp_end, content_size, packet_size.
            let mut off = 0usize;
            while off + 64 <= b.len() {
                add(&mut b, off + 32, d);
                add(&mut b, off + 40, d);
                let size =
                    u64::from_le_bytes(b[off + 56..off + 64].try_into().unwrap()) as usize / 8;
                if size == 0 {
                    break;
                }
                off += size;
            }
            for &o in &ext {
                add(&mut b, o as usize + 5, d);
            }
            out.write_all(&b).unwrap();
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    for (flag, fields) in [("--child", false), ("--child-fields", true)] {
        if let Some(i) = args.iter().position(|a| a == flag) {
            child(Path::new(&args[i + 1]), fields);
            return;
        }
    }
    let Some(root) = shared_traces("read_decode") else {
        return;
    };
    let copies: u64 = std::env::var("STRATA_BENCH_COPIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let small = root.join("tc-many-threads");
    let tmp = std::env::temp_dir().join(format!("strata-read-bench-{}", std::process::id()));
    let mid = tmp.join("x4");
    let large = tmp.join(format!("x{copies}"));
    build_large(&small, &mid, 4);
    build_large(&small, &large, copies);
    let has_bt2 = babeltrace2(&small, 1, None).is_some();
    if !has_bt2 {
        println!("babeltrace2 not installed: no comparison");
    }

    println!("read_decode: from opening the trace to its last event, best of several runs");
    println!("  merge  = decode + merge (every event located, header/timestamp decoded, payload walked, time-ordered)");
    println!("  fields = decode + merge + every field read through the typed accessors");
    println!(
        "  CPU seconds (user + system) first, wall seconds in brackets; speedups from CPU times"
    );
    println!(
        "{:<16} {:>8} {:>7} {:>17} {:>11} {:>6} {:>17} {:>11} {:>6} {:>15}",
        "trace",
        "events",
        "open ms",
        "merge s",
        "merge ev/s",
        "x bt2",
        "fields s",
        "fields ev/s",
        "x bt2",
        "bt2 s"
    );
    let mut rss = Vec::new();
    // babeltrace2 gets as many runs as we do, taken in turns with ours:
    // on a loaded machine the best of fewer runs would favour us, and the
    // machine's speed drifts within minutes, which runs in turns share.
    for (name, path, reps) in [
        ("tc-many-threads".to_string(), &small, 31),
        ("x4".to_string(), &mid, 15),
        (format!("x{copies}"), &large, 9),
    ] {
        let (mut m, mut f, mut bt) = (None, None, None);
        for _ in 0..reps {
            m = Some(ours(path, false, m));
            f = Some(ours(path, true, f));
            if has_bt2 {
                bt = babeltrace2(path, 1, bt);
            }
        }
        let (m, f) = (m.unwrap(), f.unwrap());
        assert_eq!(m.events, f.events);
        let x = |s: f64| bt.map_or("-".to_string(), |b| format!("{:.1}x", b.1 / s));
        let both = |cpu: f64, wall: f64| format!("{cpu:.4} ({wall:.4})");
        println!(
            "{:<16} {:>8} {:>7.2} {:>17} {:>11.0} {:>6} {:>17} {:>11.0} {:>6} {:>15}",
            name,
            m.events,
            m.open_secs.min(f.open_secs) * 1e3,
            both(m.cpu_secs, m.secs),
            m.events as f64 / m.cpu_secs,
            x(m.cpu_secs),
            both(f.cpu_secs, f.secs),
            f.events as f64 / f.cpu_secs,
            x(f.cpu_secs),
            bt.map_or("-".into(), |b| format!("{:.3} ({:.3})", b.1, b.0)),
        );
        let size: u64 = std::fs::read_dir(path)
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        rss.push((name, size, m.rss_kib, f.rss_kib));
    }
    println!("peak RSS of the decoding process (merge / fields):");
    for (name, size, m, f) in rss {
        println!(
            "  {name:<16} trace {:>7.1} MiB  peak RSS {:>6.1} / {:>6.1} MiB",
            size as f64 / 1048576.0,
            m as f64 / 1024.0,
            f as f64 / 1024.0
        );
    }
    if std::env::var_os("STRATA_BENCH_KEEP").is_some() {
        println!("kept {}", tmp.display());
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
