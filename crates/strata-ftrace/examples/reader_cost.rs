//! Measures what reading `trace_pipe_raw` costs the reader, per million
//! events, under a syscall-heavy workload, for each way of reading; and
//! optionally saves the captured pages as a decoder benchmark fixture.
//!
//! ```sh
//! cargo run --release -p strata-ftrace --example reader_cost -- MODE SECONDS [OUT]
//! ```
//! MODE is `poll50` (poll + buffer_percent 50, the library's way), `poll0`
//! (poll with buffer_percent 0: wake on any data), or `blocking` (one thread
//! per CPU in a blocking read loop, the naive way), or `workload` (only run
//! the workload, to measure a peer recorder beside it). OUT, if given, receives
//! the first 2 MiB of pages read (4 KiB sub-buffers, concatenated).
//!
//! The workload is one child process calling getppid in a loop with short
//! sleeps, so the event rate is high but the buffers do not overflow. CPU
//! time is the reader process's own (getrusage RUSAGE_SELF; the child is
//! not counted).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_ftrace::{CpuReaders, Instance, Page, PageLayout, Tracefs};

fn cpu_seconds() -> f64 {
    // SAFETY: ru is a valid, writable rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn spawn_workload(seconds: u64) -> libc::pid_t {
    // SAFETY: the child only makes system calls and exits.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            let end = Instant::now() + Duration::from_secs(seconds);
            while Instant::now() < end {
                for _ in 0..2000 {
                    libc::syscall(libc::SYS_getppid);
                }
                libc::usleep(200);
            }
            libc::_exit(0);
        }
        pid
    }
}

fn count(layout: &PageLayout, bytes: &[u8]) -> u64 {
    Page::parse(layout, bytes)
        .map(|p| p.records().filter(|r| r.is_ok()).count() as u64)
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("poll50")
        .to_string();
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let out = args.get(3).cloned();
    if mode == "workload" {
        // Only the workload, to run beside a peer recorder (trace-cmd).
        let child = spawn_workload(seconds);
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(child, &mut status, 0) };
        return;
    }

    let tracefs = Tracefs::find_or_mount().expect("tracefs");
    let inst = Instance::create(&tracefs, "reader-cost").expect("instance");
    inst.set_clock("mono").unwrap();
    inst.set_buffer_size_kb(8192).unwrap();
    inst.set_buffer_percent(if mode == "poll0" { 0 } else { 50 })
        .unwrap();
    for (s, e) in [
        ("sched", "sched_switch"),
        ("sched", "sched_waking"),
        ("raw_syscalls", "sys_enter"),
        ("raw_syscalls", "sys_exit"),
    ] {
        inst.enable_event(s, e).unwrap();
    }
    let cpus = inst.online_cpus().unwrap();
    let layout = inst.header_page().unwrap();
    let mut saved: Vec<u8> = Vec::new();
    let save_limit = if out.is_some() { 2 << 20 } else { 0 };

    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    inst.set_tracing_on(true).unwrap();
    let child = spawn_workload(seconds);
    let events = if mode == "blocking" {
        let total = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        for &cpu in &cpus {
            let path = inst.trace_pipe_raw(cpu);
            let total = total.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut f = std::fs::File::open(path).unwrap();
                let mut buf = vec![0u8; layout.subbuf_size()];
                while !stop.load(Ordering::Relaxed) {
                    match f.read(&mut buf) {
                        Ok(n) if n > 0 => {
                            total.fetch_add(count(&layout, &buf[..n]), Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
            });
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(child, &mut status, 0) };
        inst.set_tracing_on(false).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        total.load(Ordering::Relaxed)
    } else {
        let mut readers = CpuReaders::open(&inst, &cpus).unwrap();
        let mut events = 0u64;
        let mut sink = |_cpu: u32, page: &[u8]| -> Result<(), std::io::Error> {
            events += count(&layout, page);
            if saved.len() + page.len() <= save_limit {
                saved.extend_from_slice(page);
            }
            Ok(())
        };
        loop {
            let mut status = 0;
            // SAFETY: polling our own child.
            if unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) } == child {
                break;
            }
            readers.pump(Duration::from_millis(200), &mut sink).unwrap();
        }
        inst.set_tracing_on(false).unwrap();
        readers.drain(&mut sink).unwrap();
        for &cpu in &cpus {
            let s = readers.cpu_stats(cpu).unwrap();
            if s.lost() > 0 {
                eprintln!("cpu {cpu} lost {} events", s.lost());
            }
        }
        events
    };
    let cpu = cpu_seconds() - cpu0;
    let wall = wall0.elapsed().as_secs_f64();
    println!(
        "mode={mode} events={events} wall={wall:.2}s reader_cpu={cpu:.3}s cpu_s_per_M_events={:.4} events_per_s={:.0}",
        cpu / (events.max(1) as f64 / 1e6),
        events as f64 / wall
    );
    if let Some(path) = out {
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&saved).unwrap();
        println!("saved {} bytes of pages to {path}", saved.len());
    }
    if mode == "blocking" {
        // The blocked reader threads cannot be woken; leave without joining.
        drop(inst);
        std::process::exit(0);
    }
}
