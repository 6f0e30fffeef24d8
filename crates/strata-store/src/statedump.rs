//! The state dump: the threads that existed when recording started, written
//! as LTTng's `lttng_statedump_*` events so analyses know every thread's
//! name, process and state before the first `sched_switch` mentions it.
//!
//! [`collect`] reads `/proc` (the only I/O here); [`write_thread`] and the
//! other writers encode events and are pure. `/proc` changes while it is
//! read: threads that vanish between listing and reading are skipped.
//!
//! **Where the events go.** The writer puts them in a stream of their own
//! (`statedump_0`), not in a CPU's stream. A CPU stream must stay ordered by
//! time, and the ring buffer may hold events older than the moment `/proc`
//! was read (a flight recorder, or records pushed before the dump), which
//! would then have to follow later-stamped statedump events. A separate
//! stream is ordered on its own and readers merge it by time like any other;
//! its last packet is stretched to the trace's end so tools that intersect
//! stream time ranges (lttng-analyses) keep the whole trace.

use std::path::Path;

use strata_ctf::write::{PacketBuilder, PacketError};

use crate::convert::{write_context_tid, Converter};
use crate::lttng::statedump_values as v;

/// Linux `PF_KTHREAD`: the task is a kernel thread.
const PF_KTHREAD: u64 = 0x0020_0000;
/// At most this many threads are dumped, to bound memory on absurd hosts.
pub const MAX_THREADS: usize = 1 << 20;

/// One thread as LTTng's statedump describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadState {
    /// Thread id.
    pub tid: i32,
    /// Process (thread group) id.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// Command name, NUL-padded.
    pub name: [u8; 16],
    /// Whether it is a kernel thread (LTTng `type` 1) or a user thread (0).
    pub kernel_thread: bool,
    /// LTTng `status` (see [`crate::lttng::statedump_values`]).
    pub status: i32,
    /// The CPU it last ran on.
    pub cpu: u32,
    /// Thread id in its own pid namespace.
    pub vtid: i32,
    /// Process id in its own pid namespace.
    pub vpid: i32,
    /// Parent process id in the thread's pid namespace (0 when it is outside).
    pub vppid: i32,
    /// Depth of the thread's pid namespace (0 = the root one).
    pub ns_level: i32,
    /// Inode number of the thread's pid namespace (0 when unknown).
    pub ns_inum: u32,
}

/// What could be read from a `stat` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatLine {
    /// Thread id.
    pub tid: i32,
    /// Command name (up to 16 bytes).
    pub comm: Vec<u8>,
    /// The one-letter state.
    pub state: u8,
    /// Parent process id.
    pub ppid: i32,
    /// `PF_*` flags.
    pub flags: u64,
    /// Last CPU.
    pub processor: u32,
}

/// Parses `/proc/<pid>/task/<tid>/stat`. The command name may hold spaces
/// and parentheses, so it is what lies between the first `(` and the last `)`.
pub fn parse_stat(text: &[u8]) -> Option<StatLine> {
    let open = text.iter().position(|&c| c == b'(')?;
    let close = text.iter().rposition(|&c| c == b')')?;
    if close < open {
        return None;
    }
    let tid = std::str::from_utf8(text.get(..open)?)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = text.get(open + 1..close)?.to_vec();
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // Field N of the man page is f[N - 3] once pid and comm are gone.
    Some(StatLine {
        tid,
        comm,
        state: *f.first()?.as_bytes().first()?,
        ppid: f.get(1)?.parse().ok()?,
        flags: f.get(6)?.parse().ok()?,
        processor: f.get(36).and_then(|p| p.parse().ok()).unwrap_or(0),
    })
}

/// LTTng's `status` for a `/proc` state letter, following lttng-modules:
/// runnable tasks are "waiting for CPU", blocked ones (including idle kernel
/// threads, `I`, which are uninterruptible) "waiting".
pub fn status_of(state: u8) -> i32 {
    match state {
        b'R' => v::WAIT_CPU,
        b'S' | b'D' | b'I' => v::WAIT,
        b'Z' => v::ZOMBIE,
        b'X' | b'x' => v::DEAD,
        _ => v::UNNAMED,
    }
}

/// The ids in a `status` file's `NSpid:`/`NStgid:` line: outermost first.
fn ns_ids(status: &str, key: &str) -> Vec<i32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|rest| {
            rest.split_ascii_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The inode in a `pid:[4026531836]` namespace link.
fn ns_inode(link: &str) -> Option<u32> {
    let inner = link.split_once('[')?.1.strip_suffix(']')?;
    inner
        .parse::<u64>()
        .ok()
        .and_then(|n| u32::try_from(n).ok())
}

/// Reads one thread; `None` when it vanished or its files do not parse.
fn read_thread(task_dir: &Path, pid: i32) -> Option<ThreadState> {
    let stat = parse_stat(&std::fs::read(task_dir.join("stat")).ok()?)?;
    let status = std::fs::read_to_string(task_dir.join("status")).unwrap_or_default();
    let nspid = ns_ids(&status, "NSpid:");
    let nstgid = ns_ids(&status, "NStgid:");
    let ns_level = nspid.len().saturating_sub(1) as i32;
    let ns_inum = std::fs::read_link(task_dir.join("ns/pid"))
        .ok()
        .and_then(|l| ns_inode(&l.to_string_lossy()))
        .unwrap_or(0);
    let mut name = [0u8; 16];
    let n = stat.comm.len().min(15);
    name[..n].copy_from_slice(&stat.comm[..n]);
    Some(ThreadState {
        tid: stat.tid,
        pid,
        ppid: stat.ppid,
        name,
        kernel_thread: stat.flags & PF_KTHREAD != 0,
        status: status_of(stat.state),
        cpu: stat.processor,
        vtid: nspid.last().copied().unwrap_or(stat.tid),
        vpid: nstgid.last().copied().unwrap_or(pid),
        vppid: if ns_level == 0 { stat.ppid } else { 0 },
        ns_level,
        ns_inum,
    })
}

/// Every thread of every process under `proc_root` (normally `/proc`).
/// Threads that vanish while being read are skipped; an unreadable
/// `proc_root` gives an empty list.
pub fn collect(proc_root: &Path) -> Vec<ThreadState> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir(proc_root) else {
        return out;
    };
    let mut pids: Vec<i32> = procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let task_root = proc_root.join(pid.to_string()).join("task");
        let Ok(tasks) = std::fs::read_dir(&task_root) else {
            continue;
        };
        let mut tids: Vec<i32> = tasks
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        tids.sort_unstable();
        for tid in tids {
            if out.len() >= MAX_THREADS {
                return out;
            }
            if let Some(t) = read_thread(&task_root.join(tid.to_string()), pid) {
                out.push(t);
            }
        }
    }
    out
}

/// Writes `lttng_statedump_start`.
pub fn write_start(c: &Converter, b: &mut PacketBuilder, ts: u64) -> Result<(), PacketError> {
    let mut e = b.event(c.statedump_ids().start, ts);
    write_context_tid(c, &mut e, 0);
    e.commit()
}

/// Writes `lttng_statedump_end`.
pub fn write_end(c: &Converter, b: &mut PacketBuilder, ts: u64) -> Result<(), PacketError> {
    let mut e = b.event(c.statedump_ids().end, ts);
    write_context_tid(c, &mut e, 0);
    e.commit()
}

/// Writes `lttng_statedump_process_state` for `t`.
pub fn write_thread(
    c: &Converter,
    b: &mut PacketBuilder,
    ts: u64,
    t: &ThreadState,
) -> Result<(), PacketError> {
    let mut e = b.event(c.statedump_ids().process_state, ts);
    write_context_tid(c, &mut e, 0);
    e.i32(t.tid);
    e.i32(t.pid);
    e.i32(t.ppid);
    e.text_array(&t.name, 16);
    e.i32(if t.kernel_thread {
        v::KERNEL_THREAD
    } else {
        v::USER_THREAD
    });
    e.i32(v::MODE_UNKNOWN);
    e.i32(v::SUBMODE_NONE);
    e.i32(t.status);
    e.u32(t.cpu);
    // LTTng writes the kernel's files_struct address; it only tells which
    // threads share a file table, which /proc does not expose.
    e.u64(0);
    e.commit()
}

/// Writes `lttng_statedump_process_pid_ns` for `t`.
pub fn write_pid_ns(
    c: &Converter,
    b: &mut PacketBuilder,
    ts: u64,
    t: &ThreadState,
) -> Result<(), PacketError> {
    let mut e = b.event(c.statedump_ids().pid_ns, ts);
    write_context_tid(c, &mut e, 0);
    e.i32(t.tid);
    e.i32(t.vtid);
    e.i32(t.vpid);
    e.i32(t.vppid);
    e.i32(t.ns_level);
    e.u32(t.ns_inum);
    e.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let s = parse_stat(b"1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 5 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 17 3 0 0").unwrap();
        assert_eq!(s.tid, 1234);
        assert_eq!(s.comm, b"my (odd) name");
        assert_eq!(
            (s.state, s.ppid, s.flags, s.processor),
            (b'S', 1, 4194560, 3)
        );
        assert!(parse_stat(b"12 (x").is_none());
        assert!(parse_stat(b"").is_none());
        assert!(parse_stat(b"x (a) R").is_none());
    }

    #[test]
    fn statuses() {
        assert_eq!(status_of(b'R'), v::WAIT_CPU);
        assert_eq!(status_of(b'S'), v::WAIT);
        assert_eq!(status_of(b'I'), v::WAIT);
        assert_eq!(status_of(b'Z'), v::ZOMBIE);
        assert_eq!(status_of(b'T'), v::UNNAMED);
    }

    #[test]
    fn namespaces() {
        assert_eq!(ns_ids("Name:\tx\nNSpid:\t40\t1\n", "NSpid:"), vec![40, 1]);
        assert_eq!(ns_inode("pid:[4026531836]"), Some(4026531836));
        assert_eq!(ns_inode("pid:"), None);
    }

    #[test]
    fn reads_this_process_from_proc() {
        let threads = collect(Path::new("/proc"));
        if threads.is_empty() {
            println!("skipping: /proc is not readable here");
            return;
        }
        let me = std::process::id() as i32;
        let mine = threads
            .iter()
            .find(|t| t.tid == me)
            .expect("own thread listed");
        assert_eq!(mine.pid, me);
        assert!(!mine.kernel_thread);
        assert_eq!(mine.ppid, std::os::unix::process::parent_id() as i32);
        // The test harness runs tests on other threads of this process.
        assert!(threads.iter().filter(|t| t.pid == me).count() >= 1);
        // kthreadd (pid 2) is a kernel thread on any normal Linux.
        if let Some(k) = threads.iter().find(|t| t.tid == 2) {
            assert!(k.kernel_thread);
        }
    }
}
