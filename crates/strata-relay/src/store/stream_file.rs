//! One stream file and its LTTng index, appended one whole packet at a time.
//!
//! Readers (babeltrace2, the LTTng-live server) may read the files while
//! they grow: a packet is written with one `write`, then its index entry,
//! so the index never names bytes that are not there yet. Reopening cuts
//! both files back to the lengths a checkpoint recorded, dropping packets
//! that were written after it (their frames were never acknowledged, so
//! the agent sends them again).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_ctf::index::{self, IndexEntry};

use super::StoreError;

/// What a checkpoint remembers of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMark {
    /// Bytes of whole packets in the stream file.
    pub len: u64,
    /// Bytes of whole entries in the index file (header included).
    pub index_len: u64,
    /// Packets written.
    pub packets: u64,
}

/// An open stream file with its index.
#[derive(Debug)]
pub struct StreamFile {
    path: PathBuf,
    file: File,
    index_path: PathBuf,
    index: File,
    mark: StreamMark,
    entry_buf: Vec<u8>,
}

impl StreamFile {
    /// Creates `dir/name` and `dir/index/name.idx` (the index folder must
    /// exist), or, with `resume`, reopens them cut back to its lengths.
    pub fn open(
        dir: &Path,
        name: &str,
        resume: Option<&StreamMark>,
    ) -> Result<StreamFile, StoreError> {
        let path = dir.join(name);
        let index_path = dir.join("index").join(format!("{name}.idx"));
        let open = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
                .map_err(|e| StoreError::io("open", p, e))
        };
        let mut file = open(&path)?;
        let mut index = open(&index_path)?;
        let mark = match resume {
            Some(m) => {
                for (f, p, want) in [(&file, &path, m.len), (&index, &index_path, m.index_len)] {
                    let have = f
                        .metadata()
                        .map_err(|e| StoreError::io("stat", p, e))?
                        .len();
                    if have < want {
                        return Err(StoreError::Shorter {
                            path: p.clone(),
                            have,
                            want,
                        });
                    }
                    f.set_len(want)
                        .map_err(|e| StoreError::io("truncate", p, e))?;
                }
                m.clone()
            }
            None => {
                file.set_len(0)
                    .map_err(|e| StoreError::io("truncate", &path, e))?;
                index
                    .set_len(0)
                    .map_err(|e| StoreError::io("truncate", &index_path, e))?;
                StreamMark::default()
            }
        };
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(mark.len))
            .map_err(|e| StoreError::io("seek", &path, e))?;
        index
            .seek(SeekFrom::Start(mark.index_len))
            .map_err(|e| StoreError::io("seek", &index_path, e))?;
        let mut s = StreamFile {
            path,
            file,
            index_path,
            index,
            mark,
            entry_buf: Vec::with_capacity(index::ENTRY_LEN),
        };
        if s.mark.index_len == 0 {
            let header = index::encode_header();
            s.index
                .write_all(&header)
                .map_err(|e| StoreError::io("write the index header of", &s.index_path, e))?;
            s.mark.index_len = header.len() as u64;
        }
        Ok(s)
    }

    /// Where the next packet goes.
    pub fn offset(&self) -> u64 {
        self.mark.len
    }

    /// What a checkpoint should remember now.
    pub fn mark(&self) -> &StreamMark {
        &self.mark
    }

    /// Appends one whole packet and its index entry (whose `offset` must be
    /// [`StreamFile::offset`]). On failure both files are cut back.
    pub fn append(&mut self, packet: &[u8], entry: &IndexEntry) -> Result<(), StoreError> {
        self.entry_buf.clear();
        entry.encode(&mut self.entry_buf);
        if let Err(e) = self.file.write_all(packet) {
            self.cut();
            return Err(StoreError::Write {
                what: format!("packet {}", self.mark.packets),
                path: self.path.clone(),
                offset: self.mark.len,
                source: e,
            });
        }
        if let Err(e) = self.index.write_all(&self.entry_buf) {
            self.cut();
            return Err(StoreError::Write {
                what: format!("index entry of packet {}", self.mark.packets),
                path: self.index_path.clone(),
                offset: self.mark.index_len,
                source: e,
            });
        }
        self.mark.len += packet.len() as u64;
        self.mark.index_len += self.entry_buf.len() as u64;
        self.mark.packets += 1;
        Ok(())
    }

    /// Back to the last whole packet after a failed write, so readers keep
    /// a valid stream.
    fn cut(&mut self) {
        use std::io::{Seek, SeekFrom};
        let _ = self.file.set_len(self.mark.len);
        let _ = self.file.seek(SeekFrom::Start(self.mark.len));
        let _ = self.index.set_len(self.mark.index_len);
        let _ = self.index.seek(SeekFrom::Start(self.mark.index_len));
    }

    /// Flushes both files to the disk.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.file
            .sync_data()
            .map_err(|e| StoreError::io("sync", &self.path, e))?;
        self.index
            .sync_data()
            .map_err(|e| StoreError::io("sync", &self.index_path, e))
    }
}
