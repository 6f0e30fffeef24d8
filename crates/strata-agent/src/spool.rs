//! The on-disk spool: sequenced frames that did not fit in memory, in
//! segment files under one directory, bounded in total size.
//!
//! A segment is frames back to back exactly as they go on the wire (each is
//! self-delimiting and checksummed), named `<prefix>-<first seq>.seg`. The
//! newest segment takes appends; it is sealed when it reaches the segment
//! size. The in-memory index holds one entry per frame, so reading a frame
//! back is one positioned read.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where one spooled frame is.
#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: u64,
    offset: u64,
    len: u32,
}

/// One segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    path: PathBuf,
    file: File,
    slots: Vec<Slot>,
    bytes: u64,
}

impl Segment {
    pub(crate) fn first_seq(&self) -> u64 {
        self.slots.first().map_or(0, |s| s.seq)
    }
    pub(crate) fn last_seq(&self) -> u64 {
        self.slots.last().map_or(0, |s| s.seq)
    }
    /// Reads the whole segment back (when it is dropped, to count what it
    /// held).
    pub(crate) fn read_all(&self) -> io::Result<Vec<u8>> {
        fs::read(&self.path)
    }
}

/// A bounded spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    prefix: String,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    total: u64,
}

/// The owner pid of a spool segment file name, `None` for other files.
fn stale_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("strata-spool-")?.strip_suffix(".seg")?;
    rest.split('-').next()?.parse().ok()
}

/// Segments are at most this large (and at least 64 KiB).
const MAX_SEGMENT: u64 = 16 << 20;

impl Spool {
    /// Opens (creating it) `dir` as a spool of at most `max_bytes`. Segment
    /// files left by agents that are no longer running are removed: the
    /// frames in them belong to a sequence space no relay will resume.
    /// Segments of running agents (several may share a directory) are kept.
    pub fn open(dir: &Path, instance: u64, max_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        for e in fs::read_dir(dir)?.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Some(pid) = stale_owner(&name) else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = fs::remove_file(e.path());
            }
        }
        let segment_bytes = (max_bytes / 8).clamp(64 << 10, MAX_SEGMENT);
        Ok(Spool {
            dir: dir.to_path_buf(),
            prefix: format!("strata-spool-{}-{instance:016x}", std::process::id()),
            max_bytes,
            segment_bytes,
            segments: VecDeque::new(),
            total: 0,
        })
    }

    /// Bytes on disk now.
    pub fn bytes(&self) -> u64 {
        self.total
    }

    /// The size limit.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Frames held.
    pub fn frames(&self) -> usize {
        self.segments.iter().map(|s| s.slots.len()).sum()
    }

    /// Lowest sequence number held.
    pub fn first_seq(&self) -> Option<u64> {
        self.segments.front().map(Segment::first_seq)
    }

    /// Highest sequence number held.
    pub fn last_seq(&self) -> Option<u64> {
        self.segments.back().map(Segment::last_seq)
    }

    /// Whether adding `len` bytes would go past the limit.
    pub(crate) fn would_overflow(&self, len: usize) -> bool {
        self.total + len as u64 > self.max_bytes
    }

    /// Appends one frame (its seq above every seq held).
    pub(crate) fn append(&mut self, seq: u64, frame: &[u8]) -> io::Result<()> {
        let need_new = self.segments.back().is_none_or(|s| {
            s.bytes + frame.len() as u64 > self.segment_bytes && !s.slots.is_empty()
        });
        if need_new {
            let path = self.dir.join(format!("{}-{seq:020}.seg", self.prefix));
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&path)?;
            self.segments.push_back(Segment {
                path,
                file,
                slots: Vec::new(),
                bytes: 0,
            });
        }
        let Some(seg) = self.segments.back_mut() else {
            return Err(io::Error::other("spool has no open segment"));
        };
        let offset = seg.bytes;
        (&seg.file).write_all(frame)?;
        seg.slots.push(Slot {
            seq,
            offset,
            len: frame.len() as u32,
        });
        seg.bytes += frame.len() as u64;
        self.total += frame.len() as u64;
        Ok(())
    }

    /// Removes and returns the oldest segment (its file is deleted when the
    /// returned value is dropped by [`Spool::discard`]).
    pub(crate) fn pop_oldest(&mut self) -> Option<Segment> {
        let s = self.segments.pop_front()?;
        self.total -= s.bytes;
        Some(s)
    }

    /// Deletes a segment's file.
    pub(crate) fn discard(seg: Segment) {
        let _ = fs::remove_file(&seg.path);
    }

    /// Forgets every frame up to `seq` (acknowledged): whole segments are
    /// deleted; a partly acknowledged segment stays until all of it is.
    pub(crate) fn ack(&mut self, seq: u64) {
        while self
            .segments
            .front()
            .is_some_and(|s| s.last_seq() <= seq && !s.slots.is_empty())
        {
            if let Some(s) = self.pop_oldest() {
                Spool::discard(s);
            }
        }
    }

    /// The first frame with a sequence number at or above `seq`, read from
    /// disk.
    pub(crate) fn frame_at_or_after(&self, seq: u64) -> io::Result<Option<(u64, Vec<u8>)>> {
        for seg in &self.segments {
            if seg.last_seq() < seq {
                continue;
            }
            let i = seg.slots.partition_point(|s| s.seq < seq);
            let Some(slot) = seg.slots.get(i) else {
                continue;
            };
            let mut buf = vec![0u8; slot.len as usize];
            seg.file.read_exact_at(&mut buf, slot.offset)?;
            return Ok(Some((slot.seq, buf)));
        }
        Ok(None)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        while let Some(s) = self.pop_oldest() {
            Spool::discard(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_segments_of_dead_agents_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join(format!(
            "strata-spool-{}-00ab-00000000000000000001.seg",
            std::process::id()
        ));
        let dead = dir
            .path()
            .join("strata-spool-4194999-00ab-00000000000000000001.seg");
        let other = dir.path().join("notes.txt");
        for p in [&live, &dead, &other] {
            fs::write(p, b"x").unwrap();
        }
        let _spool = Spool::open(dir.path(), 7, 1 << 20).unwrap();
        assert!(live.exists() && other.exists());
        assert!(!dead.exists());
        assert_eq!(stale_owner("strata-spool-12-ab-1.seg"), Some(12));
        assert_eq!(stale_owner("strata-spool-x-ab-1.seg"), None);
    }
}
