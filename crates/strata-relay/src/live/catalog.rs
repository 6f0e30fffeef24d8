//! What the live server serves: the sessions (one per host per Strata
//! session), the trace directories each is made of, and how far their
//! writers have got.
//!
//! [`FsCatalog`] finds them in the relay's data directory
//! (`DATA/<session>/<host>/<trace>/`, where a trace is a directory holding
//! a `metadata` file, `kernel` or `kernel-N`) and reads each trace's
//! [progress file](super::progress). A relay that keeps this state in
//! memory implements [`Catalog`] itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::progress::{self, Progress};
use super::proto::{fits, HOST_NAME_MAX, NAME_MAX};

/// Live timer reported for traces whose progress does not give one, in
/// microseconds. Viewers only display it, but it must not be zero.
pub const DEFAULT_LIVE_TIMER_US: u32 = 100_000;
/// The most sessions one LIST_SESSIONS reply carries.
pub const MAX_SESSIONS: usize = 4096;
/// The most trace directories one session may have.
pub const MAX_TRACES: usize = 64;

/// One live session: one host's traces in one Strata session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    /// Id, stable for the life of the catalog, never 0.
    pub id: u64,
    /// The host name (at most 63 bytes, no NUL).
    pub hostname: String,
    /// The Strata session name (at most 254 bytes, no NUL).
    pub name: String,
    /// Its trace directories, oldest first; each holds `metadata`, stream
    /// files and `index/`.
    pub traces: Vec<PathBuf>,
    /// Live timer in microseconds, non-zero.
    pub live_timer_us: u32,
}

/// The source of live sessions. Called from the server's blocking pool, so
/// implementations may touch the file system; they should be quick (the
/// server asks for progress every few milliseconds while a viewer waits).
pub trait Catalog: Send + Sync {
    /// Every session that can be viewed now.
    fn sessions(&self) -> Vec<LiveSession>;

    /// The session with this id, if it still exists.
    fn session(&self, id: u64) -> Option<LiveSession> {
        self.sessions().into_iter().find(|s| s.id == id)
    }

    /// How far the writer of the trace directory `trace` has got. A trace
    /// nobody writes any more is [`Progress::complete`].
    fn progress(&self, trace: &Path) -> Progress;
}

/// The catalog over a relay data directory; see the module docs.
#[derive(Debug)]
pub struct FsCatalog {
    root: PathBuf,
    ids: Mutex<Ids>,
    /// Last complaint per path, so a bad file is logged once, not per poll.
    complaints: Mutex<HashMap<PathBuf, String>>,
    /// Parsed progress files by trace, with the identity of the file they
    /// came from: a poll costs one `stat` while the file does not change.
    cache: Mutex<HashMap<PathBuf, (FileId, Progress)>>,
}

/// What tells one version of a progress file from the next (writers
/// replace it by renaming a new file over it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileId {
    fn of(md: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: md.dev(),
            ino: md.ino(),
            len: md.len(),
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
        }
    }
}

/// Most cached progress files.
const MAX_CACHED: usize = 4096;

#[derive(Debug, Default)]
struct Ids {
    by_name: HashMap<(String, String), u64>,
    by_id: HashMap<u64, (String, String)>,
    next: u64,
}

impl FsCatalog {
    /// A catalog over `root` (the relay's `DATA` directory).
    pub fn new(root: impl Into<PathBuf>) -> FsCatalog {
        FsCatalog {
            root: root.into(),
            ids: Mutex::new(Ids {
                next: 1,
                ..Ids::default()
            }),
            complaints: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn id_for(&self, session: &str, host: &str) -> u64 {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let key = (session.to_string(), host.to_string());
        if let Some(&id) = ids.by_name.get(&key) {
            return id;
        }
        let id = ids.next;
        ids.next += 1;
        ids.by_name.insert(key.clone(), id);
        ids.by_id.insert(id, key);
        id
    }

    fn complain(&self, path: &Path, msg: String) {
        let mut c = self.complaints.lock().unwrap_or_else(|e| e.into_inner());
        if c.get(path) != Some(&msg) {
            eprintln!("strata live: {}: {msg}", path.display());
            // Bounded: one entry per path that ever failed, capped.
            if c.len() < 10_000 {
                c.insert(path.to_path_buf(), msg);
            }
        }
    }

    /// The session of `session`/`host`, if its directory holds a trace.
    fn load(&self, session: &str, host: &str) -> Option<LiveSession> {
        let host_dir = self.root.join(session).join(host);
        let traces = trace_dirs(&host_dir);
        if traces.is_empty() {
            return None;
        }
        let live_timer_us = traces
            .last()
            .and_then(|t| self.read_progress(t).ok().and_then(|p| p.live_timer_us))
            .filter(|&t| t > 0)
            .unwrap_or(DEFAULT_LIVE_TIMER_US);
        Some(LiveSession {
            id: self.id_for(session, host),
            hostname: host.to_string(),
            name: session.to_string(),
            traces,
            live_timer_us,
        })
    }

    fn read_progress(&self, trace: &Path) -> Result<Progress, String> {
        let path = trace.join(progress::FILE_NAME);
        let id = match std::fs::metadata(&path) {
            Ok(md) => FileId::of(&md),
            // No progress file: nobody writes this trace live.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Progress::complete()),
            Err(e) => return Err(format!("cannot stat: {e}")),
        };
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((cached, p)) = cache.get(trace) {
                if *cached == id {
                    return Ok(p.clone());
                }
            }
        }
        let p = match read_bounded(&path, progress::MAX_LEN) {
            Ok(Some(bytes)) => progress::parse(&bytes).map_err(|e| e.to_string())?,
            Ok(None) => return Ok(Progress::complete()),
            Err(e) => return Err(e),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(trace.to_path_buf(), (id, p.clone()));
        Ok(p)
    }
}

impl Catalog for FsCatalog {
    fn sessions(&self) -> Vec<LiveSession> {
        let mut out = Vec::new();
        for session in sorted_names(&self.root) {
            for host in sorted_names(&self.root.join(&session)) {
                if out.len() >= MAX_SESSIONS {
                    self.complain(&self.root, format!("more than {MAX_SESSIONS} live sessions; listing the first {MAX_SESSIONS}"));
                    return out;
                }
                if !fits(&host, HOST_NAME_MAX) || !fits(&session, NAME_MAX) {
                    self.complain(
                        &self.root.join(&session).join(&host),
                        "host or session name too long for the LTTng live protocol (63 and 254 bytes); not listed".into(),
                    );
                    continue;
                }
                if let Some(s) = self.load(&session, &host) {
                    out.push(s);
                }
            }
        }
        out
    }

    fn session(&self, id: u64) -> Option<LiveSession> {
        let key = {
            let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
            ids.by_id.get(&id).cloned()
        };
        match key {
            Some((session, host)) => self.load(&session, &host),
            None => self.sessions().into_iter().find(|s| s.id == id),
        }
    }

    fn progress(&self, trace: &Path) -> Progress {
        match self.read_progress(trace) {
            Ok(p) => p,
            Err(e) => {
                // A progress file that cannot be read says the trace is being
                // written, but not how far: serve it without beacons.
                self.complain(trace, format!("{e}; serving the trace without beacons"));
                Progress::default()
            }
        }
    }
}

/// Reads `path` if it exists and is at most `max` bytes.
fn read_bounded(path: &Path, max: usize) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open: {e}")),
    };
    let mut bytes = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() > max {
        return Err(format!("larger than {max} bytes"));
    }
    Ok(Some(bytes))
}

/// Names of the visible subdirectories of `dir` that are valid UTF-8,
/// sorted with numbers in order (`kernel-2` before `kernel-10`).
fn sorted_names(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort_by(|a, b| natural_cmp(a, b));
    names
}

/// The trace directories of a host directory: its subdirectories holding
/// a `metadata` file, oldest (lowest numbered) first.
pub fn trace_dirs(host_dir: &Path) -> Vec<PathBuf> {
    sorted_names(host_dir)
        .into_iter()
        .map(|n| host_dir.join(n))
        .filter(|d| d.join("metadata").is_file())
        .take(MAX_TRACES)
        .collect()
}

/// Compares names so that runs of digits compare by value.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(s: &str) -> (&str, u64, usize) {
        let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (stem, num) = s.split_at(s.len() - digits);
        (stem, num.parse().unwrap_or(0), digits)
    }
    key(a).cmp(&key(b)).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(root: &Path, session: &str, host: &str, dir: &str) -> PathBuf {
        let d = root.join(session).join(host).join(dir);
        std::fs::create_dir_all(d.join("index")).unwrap();
        std::fs::write(d.join("metadata"), "/* CTF 1.8 */\n").unwrap();
        d
    }

    #[test]
    fn finds_sessions_and_keeps_their_ids() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        trace(root, "s1", "web1", "kernel");
        trace(root, "s1", "web2", "kernel");
        trace(root, "s1", "web2", "kernel-10");
        trace(root, "s1", "web2", "kernel-2");
        std::fs::create_dir_all(root.join("s1/empty-host")).unwrap();
        std::fs::create_dir_all(root.join("s2/.hidden/kernel")).unwrap();
        trace(root, "s2", &"h".repeat(64), "kernel");
        let cat = FsCatalog::new(root);
        let list = cat.sessions();
        let names: Vec<_> = list
            .iter()
            .map(|s| (s.name.as_str(), s.hostname.as_str()))
            .collect();
        assert_eq!(names, [("s1", "web1"), ("s1", "web2")]);
        let web2 = &list[1];
        let dirs: Vec<_> = web2
            .traces
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(dirs, ["kernel", "kernel-2", "kernel-10"]);
        assert_eq!(web2.live_timer_us, DEFAULT_LIVE_TIMER_US);
        // Ids are stable and the single lookup agrees with the list.
        trace(root, "s0", "a", "kernel");
        let again = cat.sessions();
        assert_eq!(
            again.iter().find(|s| s.hostname == "web2").unwrap().id,
            web2.id
        );
        assert_eq!(cat.session(web2.id).unwrap(), again[2]);
        assert!(cat.session(9999).is_none());
        assert!(list.iter().all(|s| s.id != 0));
    }

    #[test]
    fn progress_comes_from_the_file_or_says_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let d = trace(tmp.path(), "s", "h", "kernel");
        let cat = FsCatalog::new(tmp.path());
        assert!(cat.progress(&d).complete);
        let p = Progress {
            live_timer_us: Some(20_000),
            watermark: Some(9),
            ..Progress::default()
        };
        progress::write(&d, &p).unwrap();
        assert_eq!(cat.progress(&d), p);
        assert_eq!(cat.sessions()[0].live_timer_us, 20_000);
        // A damaged file means "live, no beacons".
        std::fs::write(d.join(progress::FILE_NAME), "garbage").unwrap();
        assert_eq!(cat.progress(&d), Progress::default());
    }

    #[test]
    fn natural_order() {
        let mut v = vec![
            "channel0_10",
            "channel0_2",
            "channel0_1",
            "statedump_0",
            "channel1_0",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "channel0_1",
                "channel0_2",
                "channel0_10",
                "channel1_0",
                "statedump_0"
            ]
        );
    }
}
