//! One host's trace in a session: creates or resumes the trace directory,
//! and commits checkpoints.
//!
//! Layout: `DATA/<session>/<host>/kernel/` holds the trace (`metadata`,
//! `channel0_<cpu>` or the replayed stream names, `index/`), and
//! `DATA/<session>/<host>/relay-state.json` the checkpoint. When an agent
//! comes back with different metadata (new events, a restarted agent) the
//! old trace is left complete and a new one starts in `kernel-1`,
//! `kernel-2`, ...: one trace directory never mixes two metadata.

use std::path::{Path, PathBuf};

use strata_ctf::write::Uuid;

use super::checkpoint::{Checkpoint, VERSION};
use super::ctf_trace::CtfTrace;
use super::ftrace_trace::{metadata_for, FtraceSetup, FtraceTrace, Resume};
use super::StoreError;
use crate::names::check_name;

/// The largest metadata accepted from an agent, in bytes.
pub const MAX_METADATA: usize = 64 << 20;

/// What kind of data a host sends, with its metadata.
#[derive(Debug, Clone)]
pub enum TraceSource {
    /// Raw ftrace pages from a live agent.
    Ftrace(Box<FtraceSetup>),
    /// Whole CTF packets from a replay agent, with the trace's metadata.
    Ctf {
        /// The TSDL metadata, plain or packetized.
        metadata: Vec<u8>,
    },
}

/// The trace being written for one host.
#[derive(Debug)]
pub enum Writer {
    /// Converted from ftrace records.
    Ftrace(Box<FtraceTrace>),
    /// Stored packet by packet.
    Ctf(CtfTrace),
}

/// One host's trace and checkpoint; see the module docs.
#[derive(Debug)]
pub struct HostTrace {
    host_dir: PathBuf,
    trace_dir: PathBuf,
    writer: Writer,
    ckpt: Checkpoint,
    sync: bool,
    failed: Option<String>,
}

/// A fresh random UUID (from the kernel; derived from time otherwise).
fn random_uuid() -> Uuid {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .ok()
        .and_then(|s| Uuid::parse(&s))
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            Uuid::derive(format!("{now}/{}", std::process::id()).as_bytes())
        })
}

fn uuid_hex(u: &Uuid) -> String {
    u.0.iter().map(|b| format!("{b:02x}")).collect()
}

fn uuid_from_hex(s: &str) -> Option<Uuid> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Uuid(out))
}

/// The directory of host `host` in session `session` under `data`, after
/// checking both names.
pub fn host_dir(
    data: &Path,
    session: &str,
    host: &str,
) -> Result<PathBuf, crate::names::NameError> {
    Ok(data
        .join(check_name("session", session)?)
        .join(check_name("host", host)?))
}

/// The last sequence number stored for agent run `instance` of `host` in
/// `session`, from the checkpoint (what the relay answers in Welcome before
/// any metadata arrives); 0 when none.
pub fn stored_seq(
    data: &Path,
    session: &str,
    host: &str,
    instance: u64,
) -> Result<u64, StoreError> {
    let dir = host_dir(data, session, host).map_err(|e| StoreError::Data(e.to_string()))?;
    Ok(match Checkpoint::load(&dir)? {
        Some(c) if c.agent_instance == instance => c.last_seq.unwrap_or(0),
        _ => 0,
    })
}

impl HostTrace {
    /// Opens the trace of `host` in `session` under `data` for `source`,
    /// written by agent run `instance`: resumes the checkpointed trace when
    /// its metadata matches, else starts a new trace directory. Returns the
    /// trace and the last sequence number of `instance` stored (0: none).
    pub fn open(
        data: &Path,
        session: &str,
        host: &str,
        source: &TraceSource,
        sync: bool,
        instance: u64,
    ) -> Result<(HostTrace, u64), StoreError> {
        let host_dir =
            host_dir(data, session, host).map_err(|e| StoreError::Data(e.to_string()))?;
        std::fs::create_dir_all(&host_dir).map_err(|e| StoreError::io("create", &host_dir, e))?;
        let old = Checkpoint::load(&host_dir)?;
        // Sequence numbers belong to one agent run; another run starts over.
        let carried = old
            .as_ref()
            .filter(|c| c.agent_instance == instance)
            .and_then(|c| c.last_seq);
        if let Some(c) = &old {
            match HostTrace::resume(&host_dir, c, source, sync) {
                Ok(Some(mut t)) => {
                    t.ckpt.agent_instance = instance;
                    t.ckpt.last_seq = carried;
                    return Ok((t, carried.unwrap_or(0)));
                }
                Ok(None) => {}
                // A damaged old trace is left as it is; the new data goes
                // to a new directory.
                Err(e) => eprintln!(
                    "strata relay: cannot resume {}: {e}; starting a new trace directory",
                    host_dir.display()
                ),
            }
        }
        let name = next_trace_dir(&host_dir, old.as_ref());
        let mut t = HostTrace::create(&host_dir, &name, source, sync, instance, carried)?;
        t.ckpt.agent_instance = instance;
        Ok((t, carried.unwrap_or(0)))
    }

    fn resume(
        host_dir: &Path,
        c: &Checkpoint,
        source: &TraceSource,
        sync: bool,
    ) -> Result<Option<HostTrace>, StoreError> {
        check_name("trace directory", &c.trace_dir).map_err(|e| StoreError::Data(e.to_string()))?;
        let trace_dir = host_dir.join(&c.trace_dir);
        let mpath = trace_dir.join("metadata");
        let stored = match std::fs::read(&mpath) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("read", &mpath, e)),
        };
        let writer = match source {
            TraceSource::Ftrace(setup) => {
                let Some(uuid) = uuid_from_hex(&c.uuid) else {
                    return Ok(None);
                };
                let conv = FtraceTrace::converter(setup);
                if metadata_for(setup, &conv, uuid).as_bytes() != stored.as_slice() {
                    return Ok(None);
                }
                let r = Resume {
                    cpus: &c.cpus,
                    streams: &c.streams,
                    statedump_written: c.statedump_written,
                };
                Writer::Ftrace(Box::new(FtraceTrace::open(
                    &trace_dir,
                    setup,
                    conv,
                    uuid,
                    Some(r),
                )?))
            }
            TraceSource::Ctf { metadata } => {
                if metadata != &stored {
                    return Ok(None);
                }
                Writer::Ctf(CtfTrace::open(&trace_dir, c.streams.clone())?)
            }
        };
        Ok(Some(HostTrace {
            host_dir: host_dir.to_path_buf(),
            trace_dir,
            writer,
            ckpt: c.clone(),
            sync,
            failed: None,
        }))
    }

    fn create(
        host_dir: &Path,
        name: &str,
        source: &TraceSource,
        sync: bool,
        instance: u64,
        last_seq: Option<u64>,
    ) -> Result<HostTrace, StoreError> {
        let trace_dir = host_dir.join(name);
        // Left over by a relay that died before its first checkpoint: none
        // of it was acknowledged, so the agent sends it all again.
        if trace_dir.exists() {
            std::fs::remove_dir_all(&trace_dir)
                .map_err(|e| StoreError::io("remove", &trace_dir, e))?;
        }
        let index = trace_dir.join("index");
        std::fs::create_dir_all(&index).map_err(|e| StoreError::io("create", &index, e))?;
        let uuid = random_uuid();
        let (metadata_len, writer) = match source {
            TraceSource::Ftrace(setup) => {
                let conv = FtraceTrace::converter(setup);
                let text = metadata_for(setup, &conv, uuid);
                write_file(&trace_dir.join("metadata"), text.as_bytes())?;
                let t = FtraceTrace::open(&trace_dir, setup, conv, uuid, None)?;
                (text.len(), Writer::Ftrace(Box::new(t)))
            }
            TraceSource::Ctf { metadata } => {
                if metadata.len() > MAX_METADATA {
                    return Err(StoreError::Metadata(format!(
                        "{} bytes of metadata; at most {MAX_METADATA} are accepted",
                        metadata.len()
                    )));
                }
                write_file(&trace_dir.join("metadata"), metadata)?;
                (
                    metadata.len(),
                    Writer::Ctf(CtfTrace::open(&trace_dir, Default::default())?),
                )
            }
        };
        let mut t = HostTrace {
            host_dir: host_dir.to_path_buf(),
            trace_dir,
            writer,
            ckpt: Checkpoint {
                version: VERSION,
                trace_dir: name.to_string(),
                uuid: uuid_hex(&uuid),
                agent_instance: instance,
                last_seq,
                bytes: metadata_len as u64,
                ..Checkpoint::default()
            },
            sync,
            failed: None,
        };
        t.commit(None)?;
        Ok(t)
    }

    /// The trace directory.
    pub fn trace_dir(&self) -> &Path {
        &self.trace_dir
    }

    /// The host directory.
    pub fn host_dir(&self) -> &Path {
        &self.host_dir
    }

    /// The writer, to append data.
    pub fn writer(&mut self) -> Result<&mut Writer, StoreError> {
        if let Some(e) = &self.failed {
            return Err(StoreError::Stopped(e.clone()));
        }
        Ok(&mut self.writer)
    }

    /// The last committed checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.ckpt
    }

    /// Adds to the stored event and byte counts of the next checkpoint.
    pub fn count(&mut self, events: u64, bytes: u64) {
        self.ckpt.events += events;
        self.ckpt.bytes += bytes;
    }

    /// Writes every open packet and records that every frame up to
    /// `last_seq` is stored. Packets of frames after it must not be open
    /// (call it between frames).
    pub fn commit(&mut self, last_seq: Option<u64>) -> Result<(), StoreError> {
        if let Some(e) = &self.failed {
            return Err(StoreError::Stopped(e.clone()));
        }
        let r = self.commit_inner(last_seq);
        if let Err(e) = &r {
            self.failed = Some(e.to_string());
        }
        r
    }

    fn commit_inner(&mut self, last_seq: Option<u64>) -> Result<(), StoreError> {
        match &mut self.writer {
            Writer::Ftrace(t) => {
                self.ckpt.bytes += t.flush()?;
                if self.sync {
                    t.sync()?;
                }
                let (cpus, streams) = t.marks();
                self.ckpt.cpus = cpus;
                self.ckpt.streams = streams.into_iter().collect();
                self.ckpt.statedump_written = t.statedump_written();
                self.ckpt.lost = t.lost();
            }
            Writer::Ctf(t) => {
                if self.sync {
                    t.sync()?;
                }
                self.ckpt.streams = t.marks().into_iter().collect();
            }
        }
        if last_seq.is_some() {
            self.ckpt.last_seq = last_seq;
        }
        self.ckpt.save(&self.host_dir, self.sync)
    }
}

/// `kernel` for a host's first trace, then `kernel-1`, `kernel-2`, ...
fn next_trace_dir(host_dir: &Path, old: Option<&Checkpoint>) -> String {
    if old.is_none() {
        return "kernel".to_string();
    }
    (1..)
        .map(|n| format!("kernel-{n}"))
        .find(|n| !host_dir.join(n).exists())
        .unwrap_or_else(|| "kernel-x".to_string())
}

fn write_file(p: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    std::fs::write(p, bytes).map_err(|e| StoreError::io("write", p, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_ctf::index::IndexEntry;

    fn lttng_trace() -> Option<(Vec<u8>, Vec<u8>, Vec<IndexEntry>)> {
        let dir = Path::new("/work/shared/traces/tc-many-threads");
        let meta = std::fs::read(dir.join("metadata")).ok()?;
        let data = std::fs::read(dir.join("channel0_0")).ok()?;
        let idx = strata_ctf::index::parse(&std::fs::read(dir.join("index/channel0_0.idx")).ok()?)
            .ok()?;
        Some((meta, data, idx))
    }

    fn packet<'a>(data: &'a [u8], e: &IndexEntry) -> &'a [u8] {
        &data[e.offset as usize..(e.offset + e.packet_size / 8) as usize]
    }

    fn push(t: &mut HostTrace, data: &[u8], e: &IndexEntry) {
        match t.writer().unwrap() {
            Writer::Ctf(c) => {
                c.push_packet("channel0_0", packet(data, e), e).unwrap();
            }
            Writer::Ftrace(_) => panic!("a CTF source gives a CTF writer"),
        }
    }

    #[test]
    fn resume_cuts_back_to_the_checkpoint_and_new_metadata_starts_a_new_directory() {
        let Some((meta, data, idx)) = lttng_trace() else {
            eprintln!("skipped: the shared LTTng trace is absent");
            return;
        };
        let root = tempfile::tempdir().unwrap();
        let src = TraceSource::Ctf {
            metadata: meta.clone(),
        };
        let (mut t, last) = HostTrace::open(root.path(), "s", "h", &src, false, 7).unwrap();
        assert_eq!(last, 0);
        push(&mut t, &data, &idx[0]);
        t.commit(Some(5)).unwrap();
        // Stored but never committed: a crash here loses it from the files.
        push(&mut t, &data, &idx[1]);
        let stream = t.trace_dir().join("channel0_0");
        let first = idx[0].packet_size / 8;
        assert_eq!(
            std::fs::metadata(&stream).unwrap().len(),
            first + idx[1].packet_size / 8
        );
        drop(t);

        let (t, last) = HostTrace::open(root.path(), "s", "h", &src, false, 7).unwrap();
        assert_eq!(
            last, 5,
            "the same agent run resumes after its last committed frame"
        );
        assert!(t.trace_dir().ends_with("kernel"));
        assert_eq!(
            std::fs::metadata(&stream).unwrap().len(),
            first,
            "cut back to the checkpoint"
        );
        let entries = strata_ctf::index::parse(
            &std::fs::read(t.trace_dir().join("index/channel0_0.idx")).unwrap(),
        )
        .unwrap();
        assert_eq!(entries.len(), 1);
        drop(t);

        // Another agent run with the same metadata appends, from seq 0.
        let (t, last) = HostTrace::open(root.path(), "s", "h", &src, false, 8).unwrap();
        assert_eq!(last, 0);
        assert!(t.trace_dir().ends_with("kernel"));
        drop(t);

        // Different metadata: the old trace stays, a new one starts.
        let mut other = meta.clone();
        other.extend_from_slice(b"\n/* changed */\n");
        let src2 = TraceSource::Ctf { metadata: other };
        let (t, _) = HostTrace::open(root.path(), "s", "h", &src2, false, 8).unwrap();
        assert!(
            t.trace_dir().ends_with("kernel-1"),
            "{}",
            t.trace_dir().display()
        );
        assert_eq!(
            std::fs::metadata(&stream).unwrap().len(),
            first,
            "the old trace is untouched"
        );
    }

    #[test]
    fn names_are_checked_before_any_path_is_built() {
        let root = tempfile::tempdir().unwrap();
        let src = TraceSource::Ctf {
            metadata: b"/* CTF 1.8 */".to_vec(),
        };
        for (s, h) in [("..", "h"), ("s", "../../etc"), ("/abs", "h"), ("s", "")] {
            assert!(
                HostTrace::open(root.path(), s, h, &src, false, 1).is_err(),
                "{s}/{h}"
            );
            assert!(stored_seq(root.path(), s, h, 1).is_err());
        }
        assert_eq!(
            std::fs::read_dir(root.path()).unwrap().count(),
            0,
            "nothing was created"
        );
    }
}
