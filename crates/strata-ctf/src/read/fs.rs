//! Opening traces on disk: finding trace directories, parsing their
//! metadata, mapping stream files and grouping rotated tracefiles into
//! streams. The only part of the reader that does I/O.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions};

use super::class::{compile_lazy, EventClass, Shared, TracePlan};
use super::cursor::{Cursor, IdTables, Release, Source};
use super::error::ReadError;
use super::merge::Events;
use super::packet::decode_packet;
use super::tsdl::{self, EnvValue, Metadata};
use strata_core::ClockDesc;

/// How to open traces.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// Skip packets that cannot be decoded instead of failing, counting what
    /// was skipped (see [`Events::skipped`]).
    pub skip_corrupt: bool,
}

/// Deepest directory level searched for traces.
const MAX_DEPTH: usize = 32;

/// One stream of a trace: its files (rotated tracefiles in order) and what
/// its first packet says.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// Files in reading order.
    pub files: Vec<PathBuf>,
    /// `cpu_id` of the first packet, if the packet context has one.
    pub cpu: Option<u32>,
    /// Total size of the files in bytes.
    pub size: u64,
    /// Stream class id.
    pub stream_class: u64,
    /// `stream_instance_id` of the packet header, if any.
    pub instance: Option<u64>,
}

struct Mapped {
    path: PathBuf,
    map: Option<Mmap>,
}

impl Mapped {
    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

impl Release for Mapped {
    fn release(&self, off: u64, len: u64) {
        if let Some(m) = &self.map {
            // SAFETY: the mapping is private and read-only, so dropping its
            // pages loses nothing: a later access reads them from the file
            // again. No event borrows a finished packet (the iterator lends
            // one event at a time), so the pages are not in use either.
            let _ = unsafe {
                m.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    off as usize,
                    len as usize,
                )
            };
        }
    }
}

/// One trace: a directory with a `metadata` file and its stream files.
pub struct Trace {
    path: PathBuf,
    shared: Arc<Shared>,
    pub(crate) plan: TracePlan,
    pub(crate) classes: Vec<EventClass>,
    streams: Vec<StreamInfo>,
    /// Per stream, indices into `files` and the size in bytes of each
    /// file's first packet.
    stream_files: Vec<Vec<(usize, u64)>>,
    files: Vec<Mapped>,
    /// Correction applied to every timestamp of this trace.
    clock_map: Option<super::ClockMap>,
}

impl Trace {
    /// The trace directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The parsed metadata. The `context` and `fields` of most events are
    /// `None` here: their types are parsed when their class is first used
    /// (see [`TraceSet::check_metadata`]); read fields through
    /// [`EventClass`], or parse the whole file with
    /// [`super::tsdl::parse`].
    pub fn metadata(&self) -> &Metadata {
        &self.shared.md
    }
    /// An `env` value.
    pub fn env(&self, name: &str) -> Option<&EnvValue> {
        self.shared.md.env(name)
    }
    /// `env.hostname`, if set.
    pub fn hostname(&self) -> Option<&str> {
        self.env("hostname").and_then(EnvValue::as_str)
    }
    /// The clock of the first stream class (the one LTTng kernel traces use).
    pub fn clock(&self) -> Option<&ClockDesc> {
        self.plan
            .streams
            .first()
            .map(|s| &s.clock.desc)
            .filter(|c| c.name != "none")
    }
    /// The streams, in the order their cursors are merged (ties go to the
    /// earlier one).
    pub fn streams(&self) -> &[StreamInfo] {
        &self.streams
    }
    /// What the LTTng index files (`index/<file>.idx`) say of stream
    /// `stream` (an index into [`Trace::streams`]), when every file of the
    /// stream has one: `Some(true)` when their packets chain through each
    /// file and the first agrees with the file's first packet header.
    /// The reader never needs them: this cross-check reads them only when
    /// asked.
    pub fn index_consistent(&self, stream: usize) -> Option<bool> {
        self.stream_files
            .get(stream)?
            .iter()
            .map(|&(f, first_size)| index_agrees(&self.files[f], first_size))
            .collect::<Option<Vec<bool>>>()
            .map(|v| v.iter().all(|ok| *ok))
    }
    /// The event classes of this trace.
    pub fn event_classes(&self) -> &[EventClass] {
        &self.classes
    }
    /// The correction its timestamps get, if any.
    pub fn clock_map(&self) -> Option<super::ClockMap> {
        self.clock_map
    }
}

/// Every trace found under a path, ready to be read.
pub struct TraceSet {
    traces: Vec<Trace>,
    opts: OpenOptions,
    class_count: usize,
    total_bytes: u64,
}

impl TraceSet {
    /// Opens the trace at `path`, or every trace under it (directories
    /// holding a `metadata` file, searched recursively). Fails when none is
    /// found, when a metadata file is invalid, or (without `skip_corrupt`)
    /// when a stream file's first packet cannot be read.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<TraceSet, ReadError> {
        let mut dirs = Vec::new();
        let start = if path.file_name().is_some_and(|n| n == "metadata") && path.is_file() {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            path.to_path_buf()
        };
        find_traces(&start, 0, &mut dirs)?;
        if dirs.is_empty() {
            return Err(ReadError::NoTrace {
                path: path.to_path_buf(),
            });
        }
        let mut traces = Vec::with_capacity(dirs.len());
        let (mut class_base, mut stream_base, mut total_bytes) = (0u32, 0u32, 0u64);
        for (ti, dir) in dirs.into_iter().enumerate() {
            let t = open_trace(dir, ti as u32, class_base, stream_base, opts)?;
            class_base += t.classes.len() as u32;
            stream_base += t.plan.streams.len() as u32;
            total_bytes += t.streams.iter().map(|s| s.size).sum::<u64>();
            traces.push(t);
        }
        Ok(TraceSet {
            traces,
            opts: *opts,
            class_count: class_base as usize,
            total_bytes,
        })
    }

    /// The traces, sorted by path.
    pub fn traces(&self) -> &[Trace] {
        &self.traces
    }
    /// Number of event classes across all traces; [`EventClass::index`] is
    /// below it.
    pub fn class_count(&self) -> usize {
        self.class_count
    }
    /// Every event class of every trace, in index order.
    pub fn event_classes(&self) -> impl Iterator<Item = &EventClass> {
        self.traces.iter().flat_map(|t| t.classes.iter())
    }
    /// Parses and compiles every event class of every trace now, and gives
    /// the first problem found in their declarations, naming the metadata
    /// file: [`TraceSet::open`] leaves the types of event classes until
    /// their first event (most never occur in a trace), so a bad unused
    /// declaration does not stop a trace from being read. Costs what
    /// parsing all the metadata does (a few ms for LTTng kernel traces).
    pub fn check_metadata(&self) -> Result<(), ReadError> {
        for t in &self.traces {
            for c in &t.classes {
                c.check().map_err(|source| ReadError::Metadata {
                    path: t.path.join("metadata"),
                    source,
                })?;
            }
        }
        Ok(())
    }
    /// Total size of all stream files, for progress reporting.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }
    /// Corrects every timestamp of trace `trace` (an index into
    /// [`Self::traces`]) with `map`, or removes the correction: later
    /// [`Self::events`] merge that trace by the corrected time and report
    /// it. Used to order a guest's events by its host's clock. Without a
    /// map the timestamps are the trace's own, at no cost.
    pub fn set_clock_map(&mut self, trace: usize, map: Option<super::ClockMap>) {
        if let Some(t) = self.traces.get_mut(trace) {
            t.clock_map = map;
        }
    }

    /// All events in time order.
    pub fn events(&self) -> Events<'_> {
        let mut cursors = Vec::new();
        let mut key = 0u32;
        for (ti, t) in self.traces.iter().enumerate() {
            // The trace's streams share their id tables.
            let tables = std::rc::Rc::new(IdTables::default());
            for (si, files) in t.stream_files.iter().enumerate() {
                let sources = files
                    .iter()
                    .map(|&(f, _)| Source {
                        path: &t.files[f].path,
                        data: t.files[f].bytes(),
                        release: Some(&t.files[f] as &dyn Release),
                    })
                    .collect();
                let mut c = Cursor::new(
                    &t.plan,
                    &t.classes,
                    ti as u32,
                    key,
                    si as u32,
                    sources,
                    self.opts.skip_corrupt,
                    tables.clone(),
                );
                c.map = t.clock_map;
                cursors.push(c);
                key += 1;
            }
        }
        Events::new(cursors)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReadError + '_ {
    move |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn find_traces(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), ReadError> {
    let md = std::fs::metadata(dir).map_err(io(dir))?;
    if !md.is_dir() {
        return Ok(());
    }
    if dir.join("metadata").is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir() || t.is_symlink()))
        .map(|e| e.path())
        .collect();
    subs.sort();
    for s in subs {
        if s.is_dir() {
            find_traces(&s, depth + 1, out)?;
        }
    }
    Ok(())
}

fn open_trace(
    dir: PathBuf,
    ti: u32,
    class_base: u32,
    stream_base: u32,
    opts: &OpenOptions,
) -> Result<Trace, ReadError> {
    let mpath = dir.join("metadata");
    let mfile = File::open(&mpath).map_err(io(&mpath))?;
    let mlen = mfile.metadata().map_err(io(&mpath))?.len();
    let parsed = if mlen == 0 {
        tsdl::parse_lazy(Vec::new())
    } else {
        let len = usize::try_from(mlen).map_err(|_| ReadError::Metadata {
            path: mpath.clone(),
            source: tsdl::MetadataError::Unsupported(format!(
                "a metadata file of {mlen} bytes does not fit in memory"
            )),
        })?;
        // SAFETY: as for stream files below: read-only, and metadata files
        // are only appended to (past the mapped length) while written.
        // Mapped rather than read: the parse reads the packet bodies where
        // they are, and copying the file cost more than parsing it.
        let map = unsafe { MmapOptions::new().len(len).map(&mfile) }.map_err(io(&mpath))?;
        tsdl::parse_lazy(map)
    };
    let (metadata, lazy) = parsed.map_err(|source| ReadError::Metadata {
        path: mpath.clone(),
        source,
    })?;
    let (plan, classes, shared) = compile_lazy(
        metadata,
        Some(lazy),
        Some(&mpath),
        ti,
        class_base,
        stream_base,
    )
    .map_err(|source| ReadError::Metadata {
        path: mpath.clone(),
        source,
    })?;

    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(io(&dir))?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            // The directory listing gives the type: only symlinks need a
            // look at what they point to.
            n != "metadata"
                && !n.starts_with('.')
                && e.file_type()
                    .is_ok_and(|t| t.is_file() || (t.is_symlink() && e.path().is_file()))
        })
        .map(|e| e.path())
        .collect();
    names.sort();
    let mut files = Vec::with_capacity(names.len());
    for p in names {
        let f = File::open(&p).map_err(io(&p))?;
        let len = f.metadata().map_err(io(&p))?.len();
        // SAFETY: the mapping is read-only. A trace file truncated by another
        // process while mapped would fault; trace files are not rewritten in
        // place by LTTng or Strata once closed.
        let map = if len == 0 {
            None
        } else {
            // The length is known: without it the mapping asks again.
            Some(unsafe { MmapOptions::new().len(len as usize).map(&f) }.map_err(io(&p))?)
        };
        if let Some(m) = &map {
            let _ = m.advise(memmap2::Advice::Sequential);
        }
        files.push(Mapped { path: p, map });
    }

    // Group files into streams by (stream class, instance or cpu), ordered
    // by first packet time: rotated tracefiles `chan_N_M` become one stream.
    struct Probe {
        file: usize,
        class: usize,
        group: Option<u64>,
        cpu: Option<u64>,
        instance: Option<u64>,
        ts: u64,
        first_size: u64,
    }
    let mut probes = Vec::new();
    let mut regs = vec![0u64; plan.regs];
    let mut ph = vec![0u64; plan.marks[0]];
    let mut pc = vec![0u64; plan.marks[1]];
    for (i, f) in files.iter().enumerate() {
        if f.bytes().is_empty() {
            continue;
        }
        match decode_packet(&plan, f.bytes(), &mut regs, &mut ph, &mut pc) {
            Ok(info) => probes.push(Probe {
                file: i,
                class: info.stream,
                group: info.instance.or(info.cpu_id),
                cpu: info.cpu_id,
                instance: info.instance,
                ts: info.ts_begin.unwrap_or(0),
                first_size: info.size,
            }),
            Err(e) if !opts.skip_corrupt => {
                return Err(ReadError::Corrupt {
                    path: f.path.clone(),
                    offset: e.err.bit / 8,
                    msg: e.err.msg,
                })
            }
            // Read as a stream of its own, whose bad packets get skipped.
            Err(_) => probes.push(Probe {
                file: i,
                class: usize::MAX,
                group: None,
                cpu: None,
                instance: None,
                ts: 0,
                first_size: 0,
            }),
        }
    }
    let mut groups: Vec<Vec<Probe>> = Vec::new();
    for p in probes {
        let same = groups.iter_mut().find(|g| {
            let q = &g[0];
            p.group.is_some() && q.class == p.class && q.group == p.group
        });
        match same {
            Some(g) => g.push(p),
            None => groups.push(vec![p]),
        }
    }
    let mut streams = Vec::new();
    let mut stream_files = Vec::new();
    for mut g in groups {
        g.sort_by(|a, b| a.ts.cmp(&b.ts).then(a.file.cmp(&b.file)));
        let first = &g[0];
        streams.push(StreamInfo {
            files: g.iter().map(|p| files[p.file].path.clone()).collect(),
            cpu: first.cpu.map(|c| c as u32),
            size: g.iter().map(|p| files[p.file].bytes().len() as u64).sum(),
            stream_class: plan.streams.get(first.class).map_or(0, |s| s.id),
            instance: first.instance,
        });
        stream_files.push(g.iter().map(|p| (p.file, p.first_size)).collect());
    }
    Ok(Trace {
        path: dir,
        shared,
        plan,
        classes,
        streams,
        stream_files,
        files,
        clock_map: None,
    })
}

/// Checks a stream file against its LTTng index, if it has one: entries
/// must chain packet after packet up to the end of the file, and the first
/// must have the size the file's first packet header declares. `None` when
/// there is no readable index.
fn index_agrees(file: &Mapped, first_size: u64) -> Option<bool> {
    let name = file.path.file_name()?;
    let mut idx_name = name.to_os_string();
    idx_name.push(".idx");
    let idx = file.path.parent()?.join("index").join(idx_name);
    let bytes = std::fs::read(idx).ok()?;
    let entries = crate::index::parse(&bytes).ok()?;
    let mut expect = 0u64;
    for e in &entries {
        if e.offset != expect || e.packet_size % 8 != 0 || e.content_size > e.packet_size {
            return Some(false);
        }
        expect = e.offset + e.packet_size / 8;
    }
    let first_ok = entries
        .first()
        .is_none_or(|e| e.packet_size / 8 == first_size);
    Some(first_ok && expect == file.bytes().len() as u64)
}
