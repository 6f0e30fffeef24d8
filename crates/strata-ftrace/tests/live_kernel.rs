//! Integration tests on the running kernel's tracefs. Each test prints one line
//! and returns when there is no tracefs or no root.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use strata_ftrace::{CpuReaders, Instance, Missed, Page, Tracefs};

fn tracefs_or_skip(test: &str) -> Option<Tracefs> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("{test}: skipped, needs root for tracefs");
        return None;
    }
    match Tracefs::find_or_mount() {
        Ok(t) if t.root().join("instances").is_dir() => Some(t),
        Ok(t) => {
            println!("{test}: skipped, {} has no instances/", t.root().display());
            None
        }
        Err(e) => {
            println!("{test}: skipped, {e}");
            None
        }
    }
}

/// Forks a child that makes exactly `n` getppid system calls and exits.
fn spawn_getppid_child(n: u32) -> libc::pid_t {
    // SAFETY: the child only makes raw system calls and _exit, which are
    // async-signal-safe, so forking a threaded test process is sound.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            for _ in 0..n {
                libc::syscall(libc::SYS_getppid);
            }
            libc::_exit(0);
        }
        pid
    }
}

fn child_exited(pid: libc::pid_t) -> bool {
    let mut status = 0;
    // SAFETY: plain waitpid on our own child.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    assert!(rc >= 0, "waitpid failed");
    rc == pid
}

#[test]
fn counts_exactly_the_getppid_calls_of_a_child() {
    let Some(tracefs) = tracefs_or_skip("getppid count") else {
        return;
    };
    const N: u32 = 50_000;
    let inst = Instance::create(&tracefs, "test-getppid").unwrap();
    let dir = inst.path().to_path_buf();
    inst.set_clock("mono").unwrap();
    assert_eq!(inst.clock().unwrap(), "mono");
    inst.set_buffer_size_kb(2048).unwrap();
    inst.set_buffer_percent(25).unwrap();
    for (s, e) in [
        ("sched", "sched_switch"),
        ("raw_syscalls", "sys_enter"),
        ("raw_syscalls", "sys_exit"),
    ] {
        inst.enable_event(s, e).unwrap();
    }
    let enter = inst.event_format("raw_syscalls", "sys_enter").unwrap();
    let id = enter.field("id").unwrap().accessor();
    let pid_acc = enter.field("common_pid").unwrap().accessor();
    let type_acc = enter.field("common_type").unwrap().accessor();
    let cpus = inst.online_cpus().unwrap();
    let mut readers = CpuReaders::open(&inst, &cpus).unwrap();
    let layout = *readers.layout();
    assert_eq!(layout, inst.header_page().unwrap());

    let mut pages: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut keep = |cpu: u32, page: &[u8]| -> Result<(), std::io::Error> {
        pages.push((cpu, page.to_vec()));
        Ok(())
    };
    inst.set_tracing_on(true).unwrap();
    let child = spawn_getppid_child(N);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !child_exited(child) {
        assert!(Instant::now() < deadline, "child did not finish");
        readers.pump(Duration::from_millis(50), &mut keep).unwrap();
    }
    inst.set_tracing_on(false).unwrap();
    readers.drain(&mut keep).unwrap();

    let mut found = 0u32;
    let mut last_ts: HashMap<u32, u64> = HashMap::new();
    let mut missed = 0u64;
    for (cpu, bytes) in &pages {
        let page = Page::parse(&layout, bytes).unwrap();
        if page.missed() != Missed::None {
            missed += 1;
        }
        for rec in page.records() {
            let rec = rec.unwrap();
            let prev = last_ts.insert(*cpu, rec.ts).unwrap_or(0);
            assert!(rec.ts >= prev, "time went back on cpu {cpu}");
            if type_acc.u64(rec.data) == Some(enter.id as u64)
                && pid_acc.i64(rec.data) == Some(child as i64)
                && id.i64(rec.data) == Some(libc::SYS_getppid)
            {
                found += 1;
            }
        }
    }
    assert_eq!(
        missed, 0,
        "pages flagged lost events; raise the buffer size"
    );
    for cpu in &cpus {
        let stats = readers.cpu_stats(*cpu).unwrap();
        assert_eq!(stats.lost(), 0, "cpu {cpu} lost events: {stats:?}");
    }
    assert_eq!(found, N);
    // The timestamps are in CLOCK_MONOTONIC: close to now.
    let now = {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    };
    let newest = last_ts.values().copied().max().unwrap();
    assert!(newest <= now && now - newest < 60_000_000_000);
    drop(readers);
    drop(inst);
    assert!(!dir.exists(), "instance {} still exists", dir.display());
}

#[test]
fn stale_instances_of_dead_processes_are_removed() {
    let Some(tracefs) = tracefs_or_skip("stale cleanup") else {
        return;
    };
    // A pid that is certainly dead: a child we already reaped.
    let mut child = Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    let dead = child.id();
    let instances = tracefs.root().join("instances");
    let ns = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
    let stale_name = format!("strata-{dead}-0-ns{ns}-stale");
    let stale = instances.join(&stale_name);
    let foreign = instances.join(format!("notstrata-{dead}-0"));
    // The same dead pid, but made in another PID namespace (another
    // container on this host): that pid means nothing here.
    let other_ns = instances.join(format!("strata-{dead}-0-ns{}-stale", ns + 1));
    let legacy = instances.join(format!("strata-{dead}-0-legacy"));
    for d in [&stale, &foreign, &other_ns, &legacy] {
        std::fs::create_dir(d).unwrap();
    }
    let mine = Instance::create(&tracefs, "alive").unwrap();

    let removed = Instance::cleanup_stale(&tracefs).unwrap();
    let left = [&foreign, &other_ns, &legacy].map(|d| d.exists());
    for d in [&foreign, &other_ns, &legacy] {
        let _ = std::fs::remove_dir(d);
    }
    assert!(removed.contains(&stale_name), "removed {removed:?}");
    assert!(!stale.exists());
    assert!(left[0], "an instance not named by strata was removed");
    assert!(left[1], "another PID namespace's instance was removed");
    assert!(
        left[2],
        "an instance with no namespace in its name was removed"
    );
    assert!(
        mine.path().exists(),
        "an instance of a live process was removed"
    );
}

const PANIC_ENV: &str = "STRATA_FTRACE_PANIC_HELPER";

/// Not a test by itself: run in a subprocess by the test below, it creates an
/// instance, reports its name and panics with it alive.
#[test]
fn panic_helper() {
    if std::env::var_os(PANIC_ENV).is_none() {
        return;
    }
    let tracefs = Tracefs::find_or_mount().unwrap();
    let inst = Instance::create(&tracefs, "panics").unwrap();
    inst.enable_event("sched", "sched_switch").unwrap();
    inst.set_tracing_on(true).unwrap();
    println!("INSTANCE={}", inst.path().display());
    panic!("deliberate panic with a live instance");
}

#[test]
fn a_panicking_process_still_removes_its_instance() {
    if tracefs_or_skip("panic cleanup").is_none() {
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "panic_helper", "--nocapture", "--test-threads=1"])
        .env(PANIC_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the helper should have failed");
    let path = stdout
        .lines()
        .find_map(|l| l.split_once("INSTANCE=").map(|(_, p)| p.trim()))
        .unwrap_or_else(|| panic!("helper printed no instance: {stdout}"));
    assert!(!Path::new(path).exists(), "{path} survived the panic");
}

#[test]
fn subbuffer_size_shows_in_the_instance_header_page() {
    let Some(tracefs) = tracefs_or_skip("subbuf size") else {
        return;
    };
    let inst = Instance::create(&tracefs, "subbuf").unwrap();
    if inst.set_subbuf_size_kb(16).is_err() {
        println!("subbuf size: skipped, this kernel has no buffer_subbuf_size_kb");
        return;
    }
    let layout = inst.header_page().unwrap();
    assert_eq!(layout.subbuf_size(), 16384);

    // Events written into the larger sub-buffers decode with that layout.
    inst.set_tracing_on(true).unwrap();
    for i in 0..500 {
        inst.write_marker(&format!("marker {i} {}", "x".repeat(40)))
            .unwrap();
    }
    inst.set_tracing_on(false).unwrap();
    let print = inst.event_format("ftrace", "print").unwrap();
    let buf = print.field("buf").unwrap().accessor();
    let mut readers = CpuReaders::open(&inst, &inst.online_cpus().unwrap()).unwrap();
    let mut markers = 0;
    let mut big_page = false;
    readers
        .drain(&mut |_cpu, bytes: &[u8]| -> Result<(), std::io::Error> {
            assert_eq!(bytes.len(), 16384);
            let page = Page::parse(&layout, bytes).unwrap();
            big_page |= page.data_len() > 4080;
            for r in page.records() {
                let r = r.unwrap();
                if buf.str(r.data).is_some_and(|s| s.starts_with(b"marker ")) {
                    markers += 1;
                }
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(markers, 500);
    assert!(big_page, "no page held more than 4 KiB of data");
}

#[test]
fn marker_clock_offset_agrees_with_posix_bracketing() {
    let Some(tracefs) = tracefs_or_skip("clock offset") else {
        return;
    };
    let posix = strata_ftrace::clock_offset_to_realtime("mono").unwrap();
    let marker = strata_ftrace::clock_offset_via_marker(&tracefs, "mono").unwrap();
    // Both measure the same clock; the marker path adds a syscall of jitter.
    assert!(
        (posix - marker).abs() < 200_000,
        "mono offset: bracketing {posix} ns, marker {marker} ns"
    );
    // sched_clock (`local`) is measured by the marker method only.
    let local = strata_ftrace::clock_offset_to_realtime("local").unwrap();
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!(local > 0 && local < real_now);
    println!("offsets: mono {posix} (marker {marker}), local {local}");
}

#[test]
fn presets_resolve_on_this_kernel() {
    let Some(tracefs) = tracefs_or_skip("presets") else {
        return;
    };
    let available = tracefs.available_events().unwrap();
    for p in strata_ftrace::PRESETS {
        match strata_ftrace::resolve_events(&[p.name], &available) {
            Ok(events) => {
                // Whatever resolves really exists.
                for e in &events {
                    assert!(available.contains(e), "{e:?}");
                }
                println!(
                    "preset {}: {} of {} events",
                    p.name,
                    events.len(),
                    p.events.len()
                );
            }
            Err(e) => println!("preset {}: {e}", p.name),
        }
    }
    let sched = strata_ftrace::resolve_events(&["sched"], &available).unwrap();
    assert!(sched.contains(&("sched".into(), "sched_switch".into())));
    let inst = Instance::create(&tracefs, "presets").unwrap();
    for (s, n) in strata_ftrace::resolve_events::<&str>(&[], &available).unwrap() {
        inst.enable_event(&s, &n).unwrap();
    }
}

fn thread_cpu_seconds() -> f64 {
    // SAFETY: ru is a valid, writable rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

#[test]
fn a_trickle_of_events_does_not_make_the_reader_spin() {
    let Some(tracefs) = tracefs_or_skip("trickle") else {
        return;
    };
    let inst = Instance::create(&tracefs, "trickle").unwrap();
    inst.set_buffer_size_kb(1024).unwrap();
    inst.set_buffer_percent(50).unwrap();
    let mut readers = CpuReaders::open(&inst, &inst.online_cpus().unwrap()).unwrap();
    inst.set_tracing_on(true).unwrap();
    // Another thread writes one small event every millisecond.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let marker = inst.path().join("trace_marker");
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(marker)
                .unwrap();
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(b"tick").unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            n
        })
    };
    let cpu0 = thread_cpu_seconds();
    let start = Instant::now();
    let mut pumped = 0;
    let mut sink = |_cpu: u32, _page: &[u8]| -> Result<(), std::io::Error> { Ok(()) };
    while start.elapsed() < Duration::from_secs(1) {
        pumped += readers.pump(Duration::from_millis(100), &mut sink).unwrap();
    }
    let used = thread_cpu_seconds() - cpu0;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    inst.set_tracing_on(false).unwrap();
    // The buffers never got half full, so the reader slept through it.
    assert_eq!(
        pumped, 0,
        "pages were read before buffer_percent was reached"
    );
    assert!(used < 0.05, "the reader used {used:.3} s of CPU in 1 s");
    // flush then takes what is there, including the partly filled page.
    let layout = *readers.layout();
    let mut records = 0;
    readers
        .flush(&mut |_cpu, bytes: &[u8]| -> Result<(), std::io::Error> {
            records += Page::parse(&layout, bytes)
                .map(|p| p.records().count())
                .unwrap_or(0);
            Ok(())
        })
        .unwrap();
    assert_eq!(records as u32, written, "flush did not return every marker");
}

#[test]
fn overwritten_events_show_in_page_headers_and_stats() {
    let Some(tracefs) = tracefs_or_skip("overrun") else {
        return;
    };
    let inst = Instance::create(&tracefs, "overrun").unwrap();
    inst.set_buffer_size_kb(16).unwrap();
    inst.enable_event("raw_syscalls", "sys_enter").unwrap();
    let cpus = inst.online_cpus().unwrap();
    let mut readers = CpuReaders::open(&inst, &cpus).unwrap();
    let layout = *readers.layout();
    inst.set_tracing_on(true).unwrap();
    // Far more than 16 KiB of events, with nobody reading.
    let child = spawn_getppid_child(20_000);
    while !child_exited(child) {
        std::thread::sleep(Duration::from_millis(5));
    }
    inst.set_tracing_on(false).unwrap();
    let mut counted = 0u64;
    let mut flagged = 0u64;
    readers
        .drain(&mut |_cpu, bytes: &[u8]| -> Result<(), std::io::Error> {
            match Page::parse(&layout, bytes).unwrap().missed() {
                Missed::None => {}
                Missed::Unknown => flagged += 1,
                Missed::Count(n) => {
                    flagged += 1;
                    counted += n;
                }
            }
            Ok(())
        })
        .unwrap();
    let overrun: u64 = cpus
        .iter()
        .map(|&c| readers.cpu_stats(c).unwrap().overrun)
        .sum();
    assert!(overrun > 0, "the 16 KiB buffers did not overflow");
    assert!(flagged > 0, "no page said events were lost");
    // Page headers can only count what was lost before a page that was read.
    assert!(
        counted <= overrun,
        "pages count {counted} lost, stats {overrun}"
    );
    let from_counters: u64 = cpus
        .iter()
        .map(|&c| readers.counters(c).unwrap().missed_events)
        .sum();
    assert_eq!(from_counters, counted);
    println!("overrun: stats {overrun}, page headers {counted} in {flagged} pages");
}
