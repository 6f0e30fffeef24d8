//! A trace whose packets arrive whole (replay agents stream recorded CTF
//! traces): the metadata and the packets are stored as they are, and each
//! packet gets the LTTng index entry the agent read from its packet context.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::stream_file::{StreamFile, StreamMark};
use super::StoreError;
use crate::names::check_name;
use strata_ctf::index::IndexEntry;

/// The most streams one replayed trace may have.
pub const MAX_STREAMS: usize = 4096;

/// A passthrough trace being written.
#[derive(Debug)]
pub struct CtfTrace {
    dir: PathBuf,
    streams: BTreeMap<String, StreamFile>,
    resume: BTreeMap<String, StreamMark>,
    /// Per stream, the last `events_discarded` seen (it is a running count).
    discarded: BTreeMap<String, u64>,
}

impl CtfTrace {
    /// A trace in `dir` (whose `metadata` is written already); `resume`
    /// holds the checkpointed streams.
    pub fn open(dir: &Path, resume: BTreeMap<String, StreamMark>) -> Result<CtfTrace, StoreError> {
        let mut t = CtfTrace {
            dir: dir.to_path_buf(),
            streams: BTreeMap::new(),
            resume,
            discarded: BTreeMap::new(),
        };
        // Reopen every checkpointed stream now, so data written after the
        // checkpoint is cut even for streams that send nothing more.
        let names: Vec<String> = t.resume.keys().cloned().collect();
        for n in names {
            t.stream(&n)?;
        }
        Ok(t)
    }

    fn stream(&mut self, name: &str) -> Result<&mut StreamFile, StoreError> {
        if !self.streams.contains_key(name) {
            check_name("stream", name).map_err(|e| StoreError::Data(e.to_string()))?;
            if name == "metadata" || name == "index" || name.starts_with("relay-state") {
                return Err(StoreError::Data(format!(
                    "the stream name {name:?} is reserved"
                )));
            }
            if self.streams.len() >= MAX_STREAMS {
                return Err(StoreError::Data(format!(
                    "more than {MAX_STREAMS} streams in one trace"
                )));
            }
            let f = StreamFile::open(&self.dir, name, self.resume.get(name))?;
            self.streams.insert(name.to_string(), f);
        }
        self.streams
            .get_mut(name)
            .ok_or_else(|| StoreError::Data(format!("stream {name} vanished")))
    }

    /// Stores one whole packet of stream `name` with its index `entry`
    /// (whose `offset` is filled in here). Returns the events the packet
    /// newly reports discarded (its counter is a running one).
    pub fn push_packet(
        &mut self,
        name: &str,
        packet: &[u8],
        entry: &IndexEntry,
    ) -> Result<u64, StoreError> {
        self.stream(name)?;
        let Some(f) = self.streams.get_mut(name) else {
            return Err(StoreError::Data(format!("stream {name} vanished")));
        };
        let entry = IndexEntry {
            offset: f.offset(),
            ..*entry
        };
        f.append(packet, &entry)?;
        let prev = self
            .discarded
            .insert(name.to_string(), entry.events_discarded)
            .unwrap_or(0);
        Ok(entry.events_discarded.saturating_sub(prev))
    }

    /// The stream lengths for a checkpoint.
    pub fn marks(&self) -> Vec<(String, StreamMark)> {
        self.streams
            .iter()
            .map(|(n, f)| (n.clone(), f.mark().clone()))
            .collect()
    }

    /// Flushes every stream file to the disk.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.streams.values().try_for_each(|s| s.sync())
    }
}
