//! What the reader pays per event with `read(2)` on `trace_pipe_raw` (the
//! way [`CpuReaders`] reads) against the ring-buffer memory mapping of
//! kernel 6.10+ (`mmap` of `trace_pipe_raw` and
//! `TRACE_MMAP_IOCTL_GET_READER`), under the same getppid workload, in one
//! run, rounds alternating.
//!
//! Both decode every record of every page they get (`Page::records`), so
//! the difference is the kernel's: a `read` swaps a full sub-buffer out of
//! the ring and copies it once to user space; the mapping needs no copy,
//! but `GET_READER` walks every event of the new reader page in the kernel
//! to mark it consumed (`rb_advance_reader` in `ring_buffer_map_get_reader`).
//! On Linux 6.18 here the walk costs several times the copy, so
//! `CpuReaders` keeps `read`.
//!
//! ```sh
//! cargo run --release -p strata-ftrace --example reader_mmap -- [ROUNDS [CALLS]]
//! ```
//! Needs root and tracefs. Prints CPU nanoseconds of the reader thread per
//! event read, per mode, and the events the kernel reported lost.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;
use strata_ftrace::{CpuReaders, Instance, Page, PageLayout, Tracefs};

/// `_IO('R', 0x20)` from `include/uapi/linux/trace_mmap.h`.
const TRACE_MMAP_IOCTL_GET_READER: libc::c_ulong = 0x5220;

/// CPU seconds of the calling thread.
fn thread_cpu() -> f64 {
    // SAFETY: rusage is plain data that getrusage fills.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn spawn_getppid(calls: u64) -> libc::pid_t {
    // SAFETY: the child makes raw system calls and leaves with _exit.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            for _ in 0..calls {
                libc::syscall(libc::SYS_getppid);
            }
            libc::_exit(0);
        }
        pid
    }
}

fn exited(pid: libc::pid_t) -> bool {
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) == pid }
}

fn records(layout: &PageLayout, bytes: &[u8]) -> u64 {
    Page::parse(layout, bytes).map_or(0, |p| p.records().filter(|r| r.is_ok()).count() as u64)
}

/// One CPU's mapped ring buffer.
struct Mapped {
    file: std::fs::File,
    base: *mut u8,
    len: usize,
    /// The reader sub-buffer last seen and the records already counted on it.
    last: Option<(u32, u64)>,
}

impl Mapped {
    fn open(instance: &Instance, cpu: u32) -> std::io::Result<Mapped> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(instance.trace_pipe_raw(cpu))?;
        let page = 4096;
        let map = |len: usize| {
            // SAFETY: a read-only shared mapping of a file we hold open.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    file.as_raw_fd(),
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(p as *mut u8)
            }
        };
        let meta = map(page)?;
        // SAFETY: the meta page is mapped and starts with four u32 fields.
        let (meta_size, subbuf, nr) = unsafe {
            let m = meta as *const u32;
            (
                m.read_volatile() as usize,
                m.add(2).read_volatile() as usize,
                m.add(3).read_volatile() as usize,
            )
        };
        // SAFETY: unmapping the probe mapping made just above.
        unsafe { libc::munmap(meta as *mut libc::c_void, page) };
        let len = meta_size + subbuf * nr;
        let base = map(len)?;
        Ok(Mapped {
            file,
            base,
            len,
            last: None,
        })
    }

    /// Takes every new record of this CPU now, stopping at the page the
    /// kernel is writing, as `CpuReaders::pump` does.
    fn pump(&mut self, layout: &PageLayout) -> u64 {
        let mut n = 0;
        for _ in 0..1 << 16 {
            // SAFETY: the ioctl takes no argument.
            let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), TRACE_MMAP_IOCTL_GET_READER) };
            assert!(rc >= 0, "GET_READER: {}", std::io::Error::last_os_error());
            // SAFETY: the meta page is mapped at `base`; the kernel updated it
            // in the ioctl.
            let (meta_size, subbuf, id) = unsafe {
                let m = self.base as *const u32;
                (
                    m.read_volatile() as usize,
                    m.add(2).read_volatile() as usize,
                    m.add(6).read_volatile(),
                )
            };
            let off = meta_size + id as usize * subbuf;
            if off + subbuf > self.len {
                break;
            }
            // SAFETY: the sub-buffer lies inside the mapping; the kernel only
            // appends past the commit the decoder reads up to.
            let bytes = unsafe { std::slice::from_raw_parts(self.base.add(off), subbuf) };
            let all = records(layout, bytes);
            let before = match self.last {
                Some((last, seen)) if last == id => seen,
                _ => 0,
            };
            self.last = Some((id, all));
            n += all.saturating_sub(before);
            let data_len = Page::parse(layout, bytes).map_or(0, |p| p.data_len());
            if all == before || data_len < layout.data_size / 2 {
                break;
            }
        }
        n
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// One round: (reader CPU seconds, events read, events lost).
fn round(tracefs: &Tracefs, mmap: bool, calls: u64) -> (f64, u64, u64) {
    let inst = Instance::create(tracefs, "reader-mmap").expect("instance");
    inst.set_subbuf_size_kb(64).expect("sub-buffer size");
    inst.set_buffer_size_kb(8192).expect("buffer size");
    inst.set_buffer_percent(25).expect("buffer_percent");
    for e in ["sys_enter", "sys_exit"] {
        inst.enable_event("raw_syscalls", e).expect("event");
    }
    let cpus = inst.online_cpus().expect("cpus");
    let mut readers = CpuReaders::open(&inst, &cpus).expect("readers");
    let layout = *readers.layout();
    let mut maps: Vec<Mapped> = if mmap {
        cpus.iter()
            .map(|&c| Mapped::open(&inst, c).expect("mmap of trace_pipe_raw (kernel 6.10+)"))
            .collect()
    } else {
        Vec::new()
    };
    inst.set_tracing_on(true).expect("tracing on");
    let child = spawn_getppid(calls);
    let start = thread_cpu();
    let mut events = 0u64;
    let mut done = false;
    loop {
        let stop = done;
        if mmap {
            let mut fds: Vec<libc::pollfd> = maps
                .iter()
                .map(|m| libc::pollfd {
                    fd: m.file.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            // SAFETY: fds is a valid array of pollfd.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
            events += maps.iter_mut().map(|m| m.pump(&layout)).sum::<u64>();
        } else {
            let mut sink = |_: u32, b: &[u8]| -> Result<(), std::io::Error> {
                events += records(&layout, b);
                Ok(())
            };
            if stop {
                readers.drain(&mut sink).expect("drain");
            } else {
                readers
                    .pump(Duration::from_millis(100), &mut sink)
                    .expect("pump");
            }
        }
        if stop {
            break;
        }
        if exited(child) {
            inst.set_tracing_on(false).expect("tracing off");
            done = true;
        }
    }
    if mmap {
        // What the last pump left on the writer's page.
        for m in maps.iter_mut() {
            events += m.pump(&layout);
        }
    }
    let cpu = thread_cpu() - start;
    let lost = cpus
        .iter()
        .filter_map(|&c| inst.cpu_stats(c).ok())
        .map(|s| s.lost())
        .sum();
    maps.clear();
    drop(readers);
    (cpu, events, lost)
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP: reading tracefs needs root");
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(3);
    let calls: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3_000_000);
    let tracefs = match Tracefs::find_or_mount() {
        Ok(t) => t,
        Err(e) => {
            println!("SKIP: {e}");
            return;
        }
    };
    let mut results = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (i, mmap) in [false, true].into_iter().enumerate() {
            let (cpu, events, lost) = round(&tracefs, mmap, calls);
            println!(
                "{:5}: {events} events, {lost} lost, reader {cpu:.3} CPU s = {:.1} ns/event",
                if mmap { "mmap" } else { "read" },
                cpu * 1e9 / events.max(1) as f64
            );
            results[i].push(cpu * 1e9 / events.max(1) as f64);
        }
    }
    for (name, mut v) in ["read", "mmap"].into_iter().zip(results) {
        v.sort_by(f64::total_cmp);
        println!(
            "{name}: median {:.1} reader CPU ns per event",
            v[v.len() / 2]
        );
    }
}
