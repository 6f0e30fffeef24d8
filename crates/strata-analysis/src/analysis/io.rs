//! `io`: read/write syscall bytes and latency per thread, process and file,
//! open/sync latency, and block request latency and bandwidth per disk.
//!
//! File names come from `open`/`openat` (the path of the entry, the fd of
//! the exit), `dup*`, and the statedump's open files; an fd the trace never
//! showed opening is named `fd N of pid P`.

use serde::Serialize;

use super::common::{cut, Row, Rows, ThreadName};
use crate::event::{IoOp, Tid};
use crate::filter::Filter;
use crate::hash::{int_map, IntMap};
use crate::observer::{BlockDone, SyscallDone};
use crate::state::{Idents, Machine, Serial};
use crate::stats::{Hist, Percentiles, Stats, StatsSummary};

/// Distinct file names kept; later ones are counted under one "other" row.
const MAX_FILES: usize = 1 << 16;
/// Longest path kept from an `open`.
const MAX_PATH: usize = 4096;

#[derive(Debug, Clone, Default)]
struct Series {
    stats: Stats,
    hist: Hist,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bytes {
    read: u64,
    write: u64,
    reads: u64,
    writes: u64,
}

/// A thread's bytes through syscalls and through block requests.
#[derive(Debug, Clone, Copy, Default)]
struct ThreadBytes(Bytes, Bytes);

fn total(b: &Bytes) -> u64 {
    b.read.saturating_add(b.write)
}

impl Bytes {
    fn merge(&mut self, y: &Bytes) {
        self.read = self.read.saturating_add(y.read);
        self.write = self.write.saturating_add(y.write);
        self.reads += y.reads;
        self.writes += y.writes;
    }
}

impl Row for ThreadBytes {
    fn score(&self) -> u64 {
        total(&self.0).saturating_add(total(&self.1))
    }
    fn is_empty(&self) -> bool {
        self.score() == 0 && self.0.reads + self.0.writes == 0
    }
    fn merge(&mut self, o: &Self) {
        self.0.merge(&o.0);
        self.1.merge(&o.1);
    }
}

#[derive(Debug, Clone, Default)]
struct Disk {
    read_sectors: u64,
    write_sectors: u64,
    requests: u64,
    lat: Series,
}

/// The io accumulator.
#[derive(Debug, Clone)]
pub struct Io {
    filter: Filter,
    begin: i64,
    end: i64,
    fds: IntMap<(Tid, i64), u32>,
    names: std::collections::HashMap<Box<[u8]>, u32>,
    files: Vec<(Box<str>, Bytes)>,
    pending_path: IntMap<Serial, Vec<u8>>,
    threads: Rows<ThreadBytes>,
    lat: [Series; 4],
    disks: IntMap<u64, Disk>,
}

/// Bytes moved by reads and writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IoBytes {
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Successful reads.
    pub reads: u64,
    /// Successful writes.
    pub writes: u64,
}

/// One thread's I/O.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadIo {
    /// Who.
    #[serde(flatten)]
    pub thread: ThreadName,
    /// Through syscalls.
    pub syscalls: IoBytes,
    /// Through block requests it issued.
    pub block: IoBytes,
}

/// One process's I/O.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessIo {
    /// Process id.
    pub pid: i32,
    /// Its name.
    pub name: String,
    /// Threads counted.
    pub threads: u32,
    /// Through syscalls.
    pub syscalls: IoBytes,
}

/// One file's I/O.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileIo {
    /// The path, or `fd N of pid P`.
    pub name: String,
    /// Bytes moved.
    #[serde(flatten)]
    pub bytes: IoBytes,
}

/// Latency of one kind of I/O syscall.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IoLatency {
    /// `read`, `write`, `open` or `sync`.
    pub op: &'static str,
    /// Durations, ns.
    #[serde(flatten)]
    pub stats: StatsSummary,
    /// Percentiles.
    pub percentiles: Option<Percentiles>,
}

/// One disk's block requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskIo {
    /// Device number.
    pub dev: u64,
    /// Name (statedump) or `(major,minor)`.
    pub name: String,
    /// Completed requests.
    pub requests: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Bytes per second of the period, both ways.
    pub bandwidth_bps: f64,
    /// Issue-to-completion latency, ns.
    pub latency: StatsSummary,
    /// Percentiles.
    pub percentiles: Option<Percentiles>,
}

/// What `io` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IoReport {
    /// Syscall latency per kind.
    pub latency: Vec<IoLatency>,
    /// Per process, most bytes first (cut to `--top`).
    pub processes: Vec<ProcessIo>,
    /// Per thread, most bytes first (cut to `--top`).
    pub threads: Vec<ThreadIo>,
    /// Per file, most bytes first (cut to `--top`).
    pub files: Vec<FileIo>,
    /// Per disk.
    pub disks: Vec<DiskIo>,
}

fn io_bytes(b: &Bytes) -> IoBytes {
    IoBytes {
        read_bytes: b.read,
        write_bytes: b.write,
        reads: b.reads,
        writes: b.writes,
    }
}

impl Io {
    /// An accumulator counting what `filter` selects, keeping `keep` dead
    /// threads' rows ([`super::common::keep_for`]).
    pub fn new(filter: Filter, keep: usize) -> Io {
        Io {
            filter,
            begin: i64::MIN,
            end: i64::MIN,
            fds: int_map(),
            names: Default::default(),
            files: Vec::new(),
            pending_path: int_map(),
            threads: Rows::new(keep),
            lat: Default::default(),
            disks: int_map(),
        }
    }

    /// The analysed period begins at `ts`.
    pub fn begin(&mut self, ts: i64) {
        self.begin = ts;
    }

    /// A thread is gone.
    pub fn thread_freed(&mut self, ids: &Idents, s: Serial) {
        self.threads.freed(ids, s);
        self.pending_path.remove(&s);
    }

    fn file(&mut self, name: &[u8]) -> u32 {
        if let Some(&i) = self.names.get(name) {
            return i;
        }
        if self.files.len() >= MAX_FILES {
            return self.file_other();
        }
        let i = self.files.len() as u32;
        self.files
            .push((String::from_utf8_lossy(name).into(), Bytes::default()));
        self.names.insert(name.into(), i);
        i
    }

    fn file_other(&mut self) -> u32 {
        let key: &[u8] = b"(other files)";
        if let Some(&i) = self.names.get(key) {
            return i;
        }
        let i = self.files.len() as u32;
        self.files.push(("(other files)".into(), Bytes::default()));
        self.names.insert(key.into(), i);
        i
    }

    /// Keeps the path an `open` is given until its exit.
    pub fn syscall_entry(&mut self, s: Serial, path: &[u8]) {
        let p = self.pending_path.entry(s).or_default();
        p.clear();
        p.extend_from_slice(&path[..path.len().min(MAX_PATH)]);
    }

    /// Names an fd from the statedump.
    pub fn statedump_fd(&mut self, pid: Tid, fd: i64, path: &[u8]) {
        let f = self.file(path);
        self.fds.insert((pid, fd), f);
    }

    /// Counts an I/O syscall (others are ignored).
    pub fn syscall(&mut self, ids: &Idents, d: &SyscallDone) {
        let Some((op, fd)) = d.io else { return };
        let Some(id) = ids.get(d.thread) else { return };
        let pid = id.pid.unwrap_or(id.tid);
        let ret = d.ret.unwrap_or(-1);
        // The fd table follows every syscall; only counting is filtered.
        let counted = d.exit >= self.begin
            && self.filter.cpu_ok(d.cpu)
            && self.filter.thread_ok(ids, d.thread);
        self.end = self.end.max(d.exit);
        let slot = match op {
            IoOp::Read => 0,
            IoOp::Write => 1,
            IoOp::Open => 2,
            IoOp::Sync => 3,
            IoOp::Close | IoOp::Dup => 4,
        };
        if counted && slot < 4 {
            let l = &mut self.lat[slot];
            l.stats.add(d.exit.saturating_sub(d.entry));
            l.hist.add(d.exit.saturating_sub(d.entry));
        }
        match op {
            IoOp::Open => {
                let path = self.pending_path.remove(&d.thread);
                if ret >= 0 {
                    let f = self.file(path.as_deref().unwrap_or(b"?"));
                    self.fds.insert((pid, ret), f);
                }
            }
            IoOp::Close => {
                if ret >= 0 {
                    if let Some(fd) = fd {
                        self.fds.remove(&(pid, fd));
                    }
                }
            }
            IoOp::Dup => {
                if let (true, Some(fd)) = (ret >= 0, fd) {
                    if let Some(&f) = self.fds.get(&(pid, fd)) {
                        self.fds.insert((pid, ret), f);
                    }
                }
            }
            IoOp::Read | IoOp::Write => {
                if ret <= 0 || !counted {
                    return;
                }
                let n = ret as u64;
                let f = match fd {
                    Some(fd) => match self.fds.get(&(pid, fd)) {
                        Some(&f) => f,
                        None => {
                            let f = self.file(format!("fd {fd} of pid {pid}").as_bytes());
                            self.fds.insert((pid, fd), f);
                            f
                        }
                    },
                    None => self.file_other(),
                };
                let write = op == IoOp::Write;
                for b in [
                    &mut self.threads.get(d.thread).0,
                    &mut self.files[f as usize].1,
                ] {
                    if write {
                        b.write = b.write.saturating_add(n);
                        b.writes += 1;
                    } else {
                        b.read = b.read.saturating_add(n);
                        b.reads += 1;
                    }
                }
            }
            IoOp::Sync => {}
        }
    }

    /// Counts a completed block request.
    pub fn block(&mut self, ids: &Idents, d: &BlockDone) {
        if d.complete < self.begin {
            return;
        }
        if let Some(s) = d.thread {
            if !self.filter.thread_ok(ids, s) {
                return;
            }
            let b = &mut self.threads.get(s).1;
            if d.write {
                b.write = b.write.saturating_add(d.nr_sector.saturating_mul(512));
                b.writes += 1;
            } else {
                b.read = b.read.saturating_add(d.nr_sector.saturating_mul(512));
                b.reads += 1;
            }
        } else if self.filter.has_thread_filter() {
            return;
        }
        let disk = self.disks.entry(d.dev).or_default();
        disk.requests += 1;
        if d.write {
            disk.write_sectors = disk.write_sectors.saturating_add(d.nr_sector);
        } else {
            disk.read_sectors = disk.read_sectors.saturating_add(d.nr_sector);
        }
        disk.lat.stats.add(d.complete.saturating_sub(d.issue));
        disk.lat.hist.add(d.complete.saturating_sub(d.issue));
    }

    /// The report over a period of `duration` ns.
    pub fn report(&self, m: &Machine, duration: i64, top: usize) -> IoReport {
        let ids = m.idents();
        let rows = self.threads.rows(ids);
        let processes = self.threads.processes(ids);
        let mut files: Vec<&(Box<str>, Bytes)> =
            self.files.iter().filter(|(_, b)| total(b) > 0).collect();
        files.sort_by(|a, b| total(&b.1).cmp(&total(&a.1)).then(a.0.cmp(&b.0)));
        let secs = duration as f64 / 1e9;
        let mut disks: Vec<DiskIo> = self
            .disks
            .iter()
            .map(|(&dev, d)| {
                let bytes = d
                    .read_sectors
                    .saturating_add(d.write_sectors)
                    .saturating_mul(512);
                DiskIo {
                    dev,
                    name: m.disk_name(dev),
                    requests: d.requests,
                    read_bytes: d.read_sectors.saturating_mul(512),
                    write_bytes: d.write_sectors.saturating_mul(512),
                    bandwidth_bps: if secs > 0.0 { bytes as f64 / secs } else { 0.0 },
                    latency: d.lat.stats.summary(),
                    percentiles: d.lat.hist.percentiles(),
                }
            })
            .collect();
        disks.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.dev.cmp(&b.dev)));
        IoReport {
            latency: ["read", "write", "open", "sync"]
                .iter()
                .zip(&self.lat)
                .map(|(op, l)| IoLatency {
                    op,
                    stats: l.stats.summary(),
                    percentiles: l.hist.percentiles(),
                })
                .collect(),
            processes: cut(processes, top)
                .into_iter()
                .map(|(pid, name, n, b)| ProcessIo {
                    pid,
                    name,
                    threads: n,
                    syscalls: io_bytes(&b.0),
                })
                .collect(),
            threads: cut(rows, top)
                .into_iter()
                .map(|(thread, b)| ThreadIo {
                    thread,
                    syscalls: io_bytes(&b.0),
                    block: io_bytes(&b.1),
                })
                .collect(),
            files: cut(files, top)
                .into_iter()
                .map(|(name, b)| FileIo {
                    name: name.to_string(),
                    bytes: io_bytes(b),
                })
                .collect(),
            disks,
        }
    }
}
