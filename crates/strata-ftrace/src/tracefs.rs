//! Control of tracefs: finding or mounting it, and private trace instances.
//!
//! Strata records into its own instance
//! (`instances/strata-<pid>-<n>-ns<pidns>[-purpose]`) and never writes to the
//! top-level buffer or to another tool's instance. The instance is torn down
//! on drop: tracing off, events off, then `rmdir`, which the kernel refuses
//! with EBUSY while a reader still holds one of its files. Instances left by a
//! killed process are found by the pid in their name and removed by
//! [`Instance::cleanup_stale`]. The name carries the creator's PID namespace
//! because containers on one host share one tracefs: a pid is only
//! meaningful inside its own namespace, so an instance made in another one is
//! never judged, whatever its pid looks like here.

use crate::format::{self, EventFormat};
use crate::header::{self, PageLayout};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use thiserror::Error;

/// The usual mount point, and where [`Tracefs::find_or_mount`] mounts it.
pub const DEFAULT_MOUNT: &str = "/sys/kernel/tracing";

/// Prefix of every instance name Strata creates. Nothing else is ever removed.
pub const INSTANCE_PREFIX: &str = "strata-";

/// Control files read here are small; refuse anything larger.
const MAX_CONTROL_FILE: u64 = 16 << 20;

/// How long drop and cleanup keep retrying `rmdir` while readers close.
const RMDIR_PATIENCE: Duration = Duration::from_secs(3);

/// Why a tracefs operation failed.
#[derive(Debug, Error)]
pub enum TracefsError {
    /// tracefs is not mounted and could not be mounted.
    #[error("tracefs is not mounted and mounting it at {path} failed: {source}; {hint}")]
    Mount {
        /// Where the mount was tried.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
        /// What the user can do.
        hint: &'static str,
    },
    /// Reading or writing a tracefs file failed.
    #[error("{op} {path} failed: {source}{hint}")]
    Io {
        /// What was being done (`write`, `read`, `mkdir`, `rmdir`).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
        /// Extra advice for well-known causes, empty otherwise.
        hint: &'static str,
    },
    /// A tracefs file had content this code does not understand.
    #[error("cannot parse {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A caller passed a name that cannot be a tracefs path component.
    #[error("invalid {what} name `{name}`: use letters, digits, `_`, `-` or `.` only")]
    BadName {
        /// What kind of name.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// A clock name the kernel does not offer.
    #[error("trace clock `{clock}` is not available; this kernel offers: {available}")]
    UnknownClock {
        /// The clock asked for.
        clock: String,
        /// The clocks in `trace_clock`, space-separated.
        available: String,
    },
}

pub(crate) fn io_err(op: &'static str, path: &Path, source: io::Error) -> TracefsError {
    let hint = match source.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "; tracefs needs root (or CAP_SYS_ADMIN), and a locked-down kernel refuses some files"
        }
        Some(libc::ENOENT) => "; the file does not exist on this kernel",
        Some(libc::EBUSY) => "; a reader still has a file of it open",
        _ => "",
    };
    TracefsError::Io {
        op,
        path: path.to_path_buf(),
        source,
        hint,
    }
}

/// Reads a small control file as text, with a size bound.
///
/// The first read asks for 64 KiB: some tracefs files (`events/header_page`)
/// return their whole text to the first read and EOF to any read at a non-zero
/// offset, so a small first read (as `read_to_string` makes) truncates them.
pub(crate) fn read_text(path: &Path) -> Result<String, TracefsError> {
    use std::io::Read;
    let mut f = fs::File::open(path).map_err(|e| io_err("open", path, e))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0;
    loop {
        if len == buf.len() {
            if buf.len() as u64 >= MAX_CONTROL_FILE {
                return Err(TracefsError::Parse {
                    path: path.to_path_buf(),
                    reason: format!("larger than the {MAX_CONTROL_FILE}-byte limit"),
                });
            }
            buf.resize(buf.len() * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("read", path, e)),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|_| TracefsError::Parse {
        path: path.to_path_buf(),
        reason: "not UTF-8 text".into(),
    })
}

/// Writes a control file in one `write` call, as tracefs expects.
pub(crate) fn write_text(path: &Path, value: &str) -> Result<(), TracefsError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io_err("open", path, e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| io_err("write", path, e))
}

fn check_name(what: &'static str, name: &str) -> Result<(), TracefsError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(TracefsError::BadName {
            what,
            name: name.to_string(),
        })
    }
}

/// A mounted tracefs.
#[derive(Debug, Clone)]
pub struct Tracefs {
    root: PathBuf,
}

impl Tracefs {
    /// Finds tracefs in `/proc/mounts`, or mounts it at [`DEFAULT_MOUNT`].
    pub fn find_or_mount() -> Result<Tracefs, TracefsError> {
        if let Some(root) = find_mount()? {
            return Ok(Tracefs { root });
        }
        let path = PathBuf::from(DEFAULT_MOUNT);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(TracefsError::Mount {
                path,
                source: io::Error::from_raw_os_error(libc::EPERM),
                hint: "run as root, or mount it first: mount -t tracefs nodev /sys/kernel/tracing",
            });
        }
        mount_tracefs(&path).map_err(|source| TracefsError::Mount {
            path: path.clone(),
            source,
            hint: "is CONFIG_TRACING enabled, and is this a container without CAP_SYS_ADMIN?",
        })?;
        Ok(Tracefs { root: path })
    }

    /// Uses a tracefs already mounted at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Tracefs {
        Tracefs { root: root.into() }
    }

    /// The mount point.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every `(system, event)` the kernel offers, from `available_events`.
    /// Read-only: this does not touch the top-level buffer.
    pub fn available_events(&self) -> Result<Vec<(String, String)>, TracefsError> {
        let path = self.root.join("available_events");
        let text = read_text(&path)?;
        Ok(text
            .lines()
            .filter_map(|l| l.trim().split_once(':'))
            .map(|(s, n)| (s.to_string(), n.to_string()))
            .collect())
    }

    /// The names of the instances that exist now.
    pub fn instance_names(&self) -> Result<Vec<String>, TracefsError> {
        let dir = self.root.join("instances");
        let rd = fs::read_dir(&dir).map_err(|e| io_err("list", &dir, e))?;
        Ok(rd
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect())
    }
}

fn find_mount() -> Result<Option<PathBuf>, TracefsError> {
    let path = Path::new("/proc/mounts");
    let text = read_text(path)?;
    let mut found: Option<PathBuf> = None;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(_dev), Some(dir), Some(fstype)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if fstype != "tracefs" {
            continue;
        }
        let dir = PathBuf::from(unescape_mount_path(dir));
        // Prefer the canonical mount point when tracefs is mounted twice.
        if found.is_none() || dir == Path::new(DEFAULT_MOUNT) {
            found = Some(dir);
        }
    }
    Ok(found)
}

/// `/proc/mounts` writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let code = s
                .get(i + 1..i + 4)
                .filter(|o| o.bytes().all(|c| (b'0'..=b'7').contains(&c)))
                .and_then(|o| u8::from_str_radix(o, 8).ok());
            if let Some(v) = code {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mount_tracefs(path: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let target = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let src = c"nodev";
    let fstype = c"tracefs";
    // SAFETY: every pointer is a valid NUL-terminated string or null data.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The per-CPU counters of an instance's buffer (`per_cpu/cpuN/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Events in the buffer now.
    pub entries: u64,
    /// Events lost because the buffer was full in overwrite mode.
    pub overrun: u64,
    /// Events lost because a nested writer wrapped the buffer.
    pub commit_overrun: u64,
    /// Bytes in the buffer now.
    pub bytes: u64,
    /// Events dropped because the buffer was full in non-overwrite mode.
    pub dropped_events: u64,
    /// Events consumed by readers.
    pub read_events: u64,
    /// Time of the oldest event in the buffer, in ns for time clocks
    /// (`None` when the kernel prints no value).
    pub oldest_event_ts: Option<u64>,
    /// The clock's time when the file was read, like `oldest_event_ts`.
    pub now_ts: Option<u64>,
}

impl CpuStats {
    /// Events lost on this CPU, whatever the cause.
    pub fn lost(&self) -> u64 {
        self.overrun + self.commit_overrun + self.dropped_events
    }
}

/// Parses the text of `per_cpu/cpuN/stats`.
pub fn parse_cpu_stats(text: &str) -> Result<CpuStats, String> {
    let mut s = CpuStats::default();
    let mut seen_entries = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let num = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("`{key}` has a non-numeric value `{value}`"))
        };
        match key.trim() {
            "entries" => {
                s.entries = num()?;
                seen_entries = true;
            }
            "overrun" => s.overrun = num()?,
            "commit overrun" => s.commit_overrun = num()?,
            "bytes" => s.bytes = num()?,
            "dropped events" => s.dropped_events = num()?,
            "read events" => s.read_events = num()?,
            "oldest event ts" => s.oldest_event_ts = parse_stat_ts(value),
            "now ts" => s.now_ts = parse_stat_ts(value),
            _ => {}
        }
    }
    if !seen_entries {
        return Err("no `entries:` line".into());
    }
    Ok(s)
}

/// `seconds.micros` for time clocks, a plain count for counter clocks.
fn parse_stat_ts(v: &str) -> Option<u64> {
    match v.split_once('.') {
        Some((sec, frac)) => {
            let sec: u64 = sec.trim().parse().ok()?;
            let digits = frac.trim();
            if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let frac: u64 = digits.parse().ok()?;
            let scale = 10u64.pow(9 - digits.len() as u32);
            sec.checked_mul(1_000_000_000)?.checked_add(frac * scale)
        }
        None => v.trim().parse().ok(),
    }
}

/// The CPUs that are online now, from `/sys/devices/system/cpu/online`.
pub fn online_cpus() -> Result<Vec<u32>, TracefsError> {
    let path = Path::new("/sys/devices/system/cpu/online");
    let text = read_text(path)?;
    parse_cpu_list(&text).map_err(|reason| TracefsError::Parse {
        path: path.to_path_buf(),
        reason,
    })
}

/// Parses a kernel CPU list such as `0-3,8,10-11`.
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>, String> {
    const MAX_CPUS: u32 = 1 << 16;
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("bad CPU range `{part}`");
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (
                a.parse::<u32>().map_err(|_| bad())?,
                b.parse::<u32>().map_err(|_| bad())?,
            ),
            None => {
                let n = part.parse::<u32>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if lo > hi || hi >= MAX_CPUS {
            return Err(bad());
        }
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

static NEXT_INSTANCE: AtomicU32 = AtomicU32::new(0);

/// A private trace instance, removed when dropped.
#[derive(Debug)]
pub struct Instance {
    name: String,
    path: PathBuf,
}

impl Instance {
    /// Creates `instances/strata-<pid>-<n>[-<purpose>]`. `purpose` is a short
    /// label for people listing instances; characters other than `[A-Za-z0-9_]`
    /// become `_` and it is cut at 32.
    pub fn create(tracefs: &Tracefs, purpose: &str) -> Result<Instance, TracefsError> {
        let n = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        let label: String = purpose
            .chars()
            .take(32)
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mut name = format!(
            "{INSTANCE_PREFIX}{}-{n}-ns{}",
            std::process::id(),
            pid_namespace()
        );
        if !label.is_empty() {
            name.push('-');
            name.push_str(&label);
        }
        let path = tracefs.root.join("instances").join(&name);
        fs::create_dir(&path).map_err(|e| io_err("mkdir", &path, e))?;
        Ok(Instance { name, path })
    }

    /// Removes `strata-*` instances whose owner process no longer exists, and
    /// returns their names. Instances of live processes, and instances not
    /// named by Strata, are never touched.
    pub fn cleanup_stale(tracefs: &Tracefs) -> Result<Vec<String>, TracefsError> {
        let mut removed = Vec::new();
        let ours = pid_namespace();
        for name in tracefs.instance_names()? {
            let Some(InstanceOwner { pid, pid_ns }) = instance_owner(&name) else {
                continue;
            };
            // Another namespace's pid says nothing here, and a name without
            // one (an older Strata) cannot be proven dead: leave both.
            if pid_ns != Some(ours) || pid == std::process::id() || process_exists(pid) {
                continue;
            }
            let path = tracefs.root.join("instances").join(&name);
            quiesce(&path);
            remove_dir_patiently(&path)?;
            removed.push(name);
        }
        Ok(removed)
    }

    /// The instance's directory name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The instance's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Selects the trace clock (`mono`, `boot`, `local`, ...).
    pub fn set_clock(&self, clock: &str) -> Result<(), TracefsError> {
        let available = self.available_clocks()?;
        if !available.iter().any(|c| c == clock) {
            return Err(TracefsError::UnknownClock {
                clock: clock.to_string(),
                available: available.join(" "),
            });
        }
        write_text(&self.file("trace_clock"), clock)
    }

    /// The selected trace clock (the one in `[brackets]`).
    pub fn clock(&self) -> Result<String, TracefsError> {
        let path = self.file("trace_clock");
        let text = read_text(&path)?;
        text.split_whitespace()
            .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
            .map(str::to_string)
            .ok_or_else(|| TracefsError::Parse {
                path,
                reason: "no clock is marked [selected]".into(),
            })
    }

    /// Every trace clock the kernel offers.
    pub fn available_clocks(&self) -> Result<Vec<String>, TracefsError> {
        let text = read_text(&self.file("trace_clock"))?;
        Ok(text
            .split_whitespace()
            .map(|w| w.trim_start_matches('[').trim_end_matches(']').to_string())
            .collect())
    }

    /// Sets the per-CPU buffer size.
    pub fn set_buffer_size_kb(&self, kb: u64) -> Result<(), TracefsError> {
        write_text(&self.file("buffer_size_kb"), &kb.to_string())
    }

    /// The per-CPU buffer size.
    pub fn buffer_size_kb(&self) -> Result<u64, TracefsError> {
        self.read_number("buffer_size_kb")
    }

    /// Sets the sub-buffer size (kernel 6.8+). The kernel rounds it up to a
    /// power-of-two number of pages; read [`Instance::header_page`] afterwards.
    pub fn set_subbuf_size_kb(&self, kb: u64) -> Result<(), TracefsError> {
        write_text(&self.file("buffer_subbuf_size_kb"), &kb.to_string())
    }

    /// Sets how full (in percent) a CPU buffer must be before a waiting
    /// reader is woken. 0 wakes on any data.
    pub fn set_buffer_percent(&self, percent: u32) -> Result<(), TracefsError> {
        write_text(&self.file("buffer_percent"), &percent.min(100).to_string())
    }

    /// Turns recording into this instance's buffer on or off.
    pub fn set_tracing_on(&self, on: bool) -> Result<(), TracefsError> {
        write_text(&self.file("tracing_on"), if on { "1" } else { "0" })
    }

    /// Whether recording is on.
    pub fn tracing_on(&self) -> Result<bool, TracefsError> {
        Ok(self.read_number("tracing_on")? != 0)
    }

    /// Every `(system, event)` the kernel offers.
    pub fn available_events(&self) -> Result<Vec<(String, String)>, TracefsError> {
        // Instances have no available_events file; their events/ mirrors the
        // kernel's list, which the top-level read-only file gives in one read.
        let root = self
            .path
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Tracefs { root }.available_events()
    }

    fn event_dir(&self, system: &str, name: &str) -> Result<PathBuf, TracefsError> {
        check_name("event system", system)?;
        check_name("event", name)?;
        Ok(self.path.join("events").join(system).join(name))
    }

    /// Enables one event in this instance.
    pub fn enable_event(&self, system: &str, name: &str) -> Result<(), TracefsError> {
        write_text(&self.event_dir(system, name)?.join("enable"), "1")
    }

    /// Disables one event in this instance.
    pub fn disable_event(&self, system: &str, name: &str) -> Result<(), TracefsError> {
        write_text(&self.event_dir(system, name)?.join("enable"), "0")
    }

    /// Disables every event in this instance.
    pub fn disable_all_events(&self) -> Result<(), TracefsError> {
        write_text(&self.file("events/enable"), "0")
    }

    /// The raw text of an event's `format` file.
    pub fn event_format_text(&self, system: &str, name: &str) -> Result<String, TracefsError> {
        read_text(&self.event_dir(system, name)?.join("format"))
    }

    /// The parsed `format` of an event.
    pub fn event_format(&self, system: &str, name: &str) -> Result<EventFormat, TracefsError> {
        let path = self.event_dir(system, name)?.join("format");
        let text = read_text(&path)?;
        format::parse(system, &text).map_err(|e| TracefsError::Parse {
            path,
            reason: e.to_string(),
        })
    }

    /// The raw text of this instance's `events/header_page`.
    pub fn header_page_text(&self) -> Result<String, TracefsError> {
        read_text(&self.file("events/header_page"))
    }

    /// The page layout of this instance's buffer. It follows the instance's
    /// `buffer_subbuf_size_kb`, unlike the top-level file.
    pub fn header_page(&self) -> Result<PageLayout, TracefsError> {
        let path = self.file("events/header_page");
        let text = read_text(&path)?;
        header::parse_header_page(&text).map_err(|e| TracefsError::Parse {
            path,
            reason: e.to_string(),
        })
    }

    /// The counters of one CPU's buffer.
    pub fn cpu_stats(&self, cpu: u32) -> Result<CpuStats, TracefsError> {
        let path = self.file(&format!("per_cpu/cpu{cpu}/stats"));
        let text = read_text(&path)?;
        parse_cpu_stats(&text).map_err(|reason| TracefsError::Parse { path, reason })
    }

    /// The CPUs that are online now.
    pub fn online_cpus(&self) -> Result<Vec<u32>, TracefsError> {
        online_cpus()
    }

    /// The `trace_pipe_raw` file of one CPU.
    pub fn trace_pipe_raw(&self, cpu: u32) -> PathBuf {
        self.file(&format!("per_cpu/cpu{cpu}/trace_pipe_raw"))
    }

    /// Writes a string into this instance's buffer as an `ftrace:print` event.
    pub fn write_marker(&self, text: &str) -> Result<(), TracefsError> {
        let path = self.file("trace_marker");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_err("open", &path, e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| io_err("write", &path, e))
    }

    fn read_number(&self, rel: &str) -> Result<u64, TracefsError> {
        let path = self.file(rel);
        let text = read_text(&path)?;
        // buffer_size_kb says `7 (expanded: 1408)` before the first use.
        let first = text.split_whitespace().next().unwrap_or("");
        first.parse().map_err(|_| TracefsError::Parse {
            path,
            reason: format!("`{}` is not a number", text.trim()),
        })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        quiesce(&self.path);
        if let Err(e) = remove_dir_patiently(&self.path) {
            // Drop cannot return the error; the next run's cleanup_stale removes it.
            eprintln!("strata: could not remove trace instance {}: {e}", self.name);
        }
    }
}

/// Stops recording into an instance before removing it, ignoring errors: the
/// directory may already be half gone.
fn quiesce(path: &Path) {
    let _ = write_text(&path.join("tracing_on"), "0");
    let _ = write_text(&path.join("events/enable"), "0");
}

fn remove_dir_patiently(path: &Path) -> Result<(), TracefsError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < RMDIR_PATIENCE => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Err(e) => return Err(io_err("rmdir", path, e)),
        }
    }
}

/// Who made a Strata instance, from its name; `None` for names not ours.
pub fn instance_owner(name: &str) -> Option<InstanceOwner> {
    let rest = name.strip_prefix(INSTANCE_PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?.parse::<u32>().ok()?;
    // The counter must be there too, so `strata-123` alone is not ours.
    parts.next()?.parse::<u32>().ok()?;
    let pid_ns = parts
        .next()
        .and_then(|tail| tail.split('-').next())
        .and_then(|t| t.strip_prefix("ns"))
        .and_then(|t| t.parse::<u64>().ok());
    Some(InstanceOwner { pid, pid_ns })
}

/// Who made a Strata instance, as its name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceOwner {
    /// The creating process, in its own PID namespace.
    pub pid: u32,
    /// That namespace's inode number; `None` in names from older versions.
    pub pid_ns: Option<u64>,
}

/// This process's PID namespace (the inode of `/proc/self/ns/pid`), or 0
/// when /proc does not say.
fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n").unwrap(), vec![0, 1]);
        assert_eq!(parse_cpu_list("0,2-4,7").unwrap(), vec![0, 2, 3, 4, 7]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("0-4000000000").is_err());
    }

    #[test]
    fn stats_text() {
        let text = "entries: 12\noverrun: 3\ncommit overrun: 1\nbytes: 400\n\
                    oldest event ts:   647.550753\nnow ts:   648.000001\n\
                    dropped events: 2\nread events: 99\n";
        let s = parse_cpu_stats(text).unwrap();
        assert_eq!(s.entries, 12);
        assert_eq!(s.lost(), 6);
        assert_eq!(s.read_events, 99);
        assert_eq!(s.oldest_event_ts, Some(647_550_753_000));
        assert_eq!(s.now_ts, Some(648_000_001_000));
        assert!(parse_cpu_stats("bytes: 1\n").is_err());
        assert!(parse_cpu_stats("entries: x\n").is_err());
    }

    #[test]
    fn instance_names() {
        let owner = |pid, pid_ns| Some(InstanceOwner { pid, pid_ns });
        assert_eq!(instance_owner("strata-1234-0"), owner(1234, None));
        assert_eq!(instance_owner("strata-1234-7-record"), owner(1234, None));
        assert_eq!(instance_owner("strata-1234-7-ns42"), owner(1234, Some(42)));
        assert_eq!(
            instance_owner("strata-1234-7-ns4026531836-flight"),
            owner(1234, Some(4026531836))
        );
        assert_eq!(instance_owner("strata-1234"), None);
        assert_eq!(instance_owner("strata-x-1"), None);
        assert_eq!(instance_owner("mybuf"), None);
        assert_eq!(instance_owner("stratax-1-1"), None);
    }

    #[test]
    fn mount_paths() {
        assert_eq!(unescape_mount_path("/a\\040b"), "/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
        assert_eq!(unescape_mount_path("/end\\04"), "/end\\04");
    }
}
