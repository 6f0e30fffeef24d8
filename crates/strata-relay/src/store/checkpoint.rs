//! The checkpoint: which data frames are stored, and how long each file was
//! when they were. It lives beside the trace (`DATA/<session>/<host>/
//! relay-state.json`, outside the trace directory so readers never see it)
//! and is replaced atomically (write, then rename).
//!
//! Invariant: every frame up to `last_seq` is entirely in the files within
//! the recorded lengths, and nothing after it is. A restarted relay cuts
//! the files back to these lengths and asks the agent for `last_seq + 1`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::stream_file::StreamMark;
use super::StoreError;

/// The checkpoint file's name in the host directory.
pub const FILE_NAME: &str = "relay-state.json";
/// The checkpoint format version.
pub const VERSION: u32 = 1;
/// The largest checkpoint file read, in bytes.
const MAX_LEN: u64 = 16 << 20;

/// Per-CPU packet state of a converted (ftrace) trace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuMark {
    /// Sequence number of the next packet.
    pub packet_seq: u64,
    /// Running `events_discarded`.
    pub discarded: u64,
    /// End time of the last packet.
    pub last_end: u64,
}

/// What is stored for one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The trace directory, relative to the host directory (`kernel`, or
    /// `kernel-N` after the agent's metadata changed).
    pub trace_dir: String,
    /// The trace UUID (hex), so regenerated metadata is byte-identical.
    pub uuid: String,
    /// The last data frame whose contents are stored; `None` before any.
    pub last_seq: Option<u64>,
    /// The agent's session instance the sequence numbers belong to.
    pub agent_instance: u64,
    /// Per stream file name, its lengths.
    pub streams: BTreeMap<String, StreamMark>,
    /// Per CPU (ftrace traces), the packet counters.
    pub cpus: Vec<CpuMark>,
    /// Whether the state dump stream was written.
    pub statedump_written: bool,
    /// Events, bytes and losses stored so far (for the API after a restart).
    pub events: u64,
    /// Bytes of stream files.
    pub bytes: u64,
    /// Lost events per CPU.
    pub lost: Vec<u64>,
}

impl Checkpoint {
    /// The checkpoint path of a host directory.
    pub fn path(host_dir: &Path) -> PathBuf {
        host_dir.join(FILE_NAME)
    }

    /// Reads the checkpoint of `host_dir`; `None` when there is none.
    pub fn load(host_dir: &Path) -> Result<Option<Checkpoint>, StoreError> {
        let p = Checkpoint::path(host_dir);
        let f = match std::fs::File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("open", &p, e)),
        };
        let len = f
            .metadata()
            .map_err(|e| StoreError::io("stat", &p, e))?
            .len();
        if len > MAX_LEN {
            return Err(StoreError::Data(format!(
                "checkpoint {} is {len} bytes, more than {MAX_LEN}; remove it to start the host's trace anew",
                p.display()
            )));
        }
        let bytes = std::fs::read(&p).map_err(|e| StoreError::io("read", &p, e))?;
        let c: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| {
            StoreError::Data(format!(
                "checkpoint {} is not valid ({e}); remove it to start the host's trace anew",
                p.display()
            ))
        })?;
        if c.version != VERSION {
            return Err(StoreError::Data(format!(
                "checkpoint {} has version {}, this relay writes {VERSION}",
                p.display(),
                c.version
            )));
        }
        Ok(Some(c))
    }

    /// Writes the checkpoint atomically into `host_dir`; with `sync`, the
    /// file and the directory are flushed to the disk too.
    pub fn save(&self, host_dir: &Path, sync: bool) -> Result<(), StoreError> {
        let p = Checkpoint::path(host_dir);
        let tmp = host_dir.join(format!(".{FILE_NAME}.tmp"));
        let bytes = serde_json::to_vec(self)
            .map_err(|e| StoreError::Data(format!("cannot encode the checkpoint: {e}")))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
        f.write_all(&bytes)
            .map_err(|e| StoreError::io("write", &tmp, e))?;
        if sync {
            f.sync_data().map_err(|e| StoreError::io("sync", &tmp, e))?;
        }
        drop(f);
        std::fs::rename(&tmp, &p).map_err(|e| StoreError::io("rename into", &p, e))?;
        if sync {
            std::fs::File::open(host_dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::io("sync", host_dir, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Checkpoint::load(dir.path()).unwrap(), None);
        let mut c = Checkpoint {
            version: VERSION,
            trace_dir: "kernel".into(),
            last_seq: Some(41),
            ..Checkpoint::default()
        };
        c.streams.insert(
            "channel0_0".into(),
            StreamMark {
                len: 4096,
                index_len: 88,
                packets: 1,
            },
        );
        c.save(dir.path(), true).unwrap();
        assert_eq!(Checkpoint::load(dir.path()).unwrap(), Some(c));
        std::fs::write(Checkpoint::path(dir.path()), b"{not json").unwrap();
        let e = Checkpoint::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("relay-state.json") && e.contains("remove it"),
            "{e}"
        );
    }
}
