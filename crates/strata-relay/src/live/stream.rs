//! One data stream as one viewer sees it: where it is in the stream's
//! index, which beacon it last got, and the rules that keep babeltrace2's
//! muxer consistent.
//!
//! The rules, from how babeltrace2 2.0 merges streams: each stream always
//! has a current message (an event or an inactivity beacon), and nothing
//! older than the oldest of them is ever emitted. So:
//! - a beacon never goes backwards and is never older than the end of the
//!   last packet given for the stream;
//! - a packet that starts before a beacon already given for its stream
//!   would carry events older than what the viewer has printed: it is
//!   skipped (counted, logged), never sent;
//! - a stream that appears after the viewer started printing may only
//!   contribute packets that start after everything sent so far.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use strata_ctf::index::{HEADER_LEN, INDEX_MAGIC};

/// Largest index entry length accepted (entries are 56 or 72 bytes today).
const MAX_ENTRY_LEN: u64 = 4096;
/// Fields of an entry this server reads (format 1.0's seven).
const FIELDS_READ: usize = 7;

/// One index entry, as far as the viewer protocol needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Byte offset of the packet in the stream file.
    pub offset: u64,
    /// Packet size in bits.
    pub packet_size: u64,
    /// Content size in bits.
    pub content_size: u64,
    /// Packet start time.
    pub ts_begin: u64,
    /// Packet end time.
    pub ts_end: u64,
    /// Running discarded-event count.
    pub events_discarded: u64,
    /// CTF stream class id.
    pub class_id: u64,
}

impl Entry {
    /// Decodes the first seven big-endian fields of an entry.
    pub fn decode(b: &[u8; FIELDS_READ * 8]) -> Entry {
        let f = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_be_bytes(a)
        };
        Entry {
            offset: f(0),
            packet_size: f(1),
            content_size: f(2),
            ts_begin: f(3),
            ts_end: f(4),
            events_discarded: f(5),
            class_id: f(6),
        }
    }

    /// The packet's byte length, if the entry is sane: a whole number of
    /// bytes, not empty, at most `max_len`, content within the packet, an
    /// end not before its start, and an end offset that fits in a u64.
    pub fn checked_len(&self, max_len: u64) -> Result<u64, String> {
        if self.packet_size == 0 || !self.packet_size.is_multiple_of(8) {
            return Err(format!(
                "packet size {} bits is not a positive whole number of bytes",
                self.packet_size
            ));
        }
        let len = self.packet_size / 8;
        if len > max_len {
            return Err(format!(
                "packet of {len} bytes is larger than the {max_len} served"
            ));
        }
        if self.content_size > self.packet_size {
            return Err(format!(
                "content size {} bits exceeds packet size {} bits",
                self.content_size, self.packet_size
            ));
        }
        if self.ts_end < self.ts_begin {
            return Err(format!(
                "packet ends at {} before it begins at {}",
                self.ts_end, self.ts_begin
            ));
        }
        if self.offset.checked_add(len).is_none() {
            return Err(format!("packet offset {} overflows", self.offset));
        }
        Ok(len)
    }
}

/// What the next GET_NEXT_INDEX of a stream should answer, before flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Send this packet's index.
    Packet(Entry),
    /// Send an inactivity beacon at this time.
    Beacon(u64),
    /// The stream is over: HUP.
    Hup,
    /// Nothing new: the caller may wait and ask again, or answer with the
    /// last beacon (`Some`) or RETRY (`None`).
    Nothing(Option<u64>),
    /// The stream is broken (bad index): answer ERROR.
    Broken(String),
}

/// A data stream file with its index, and this viewer's position in it.
#[derive(Debug)]
pub struct StreamView {
    /// Viewer stream id.
    pub id: u64,
    /// Stream file name (`channel0_3`).
    pub name: String,
    data_path: PathBuf,
    index_path: PathBuf,
    data: Option<File>,
    index: Option<File>,
    /// Entry length from the index header; 0 until the header is read.
    entry_len: u64,
    /// Next entry to look at.
    cursor: u64,
    /// End time of the last entry passed (served or skipped).
    last_end: Option<u64>,
    /// Latest beacon sent.
    sent_beacon: Option<u64>,
    /// Packets starting before this are skipped (late streams).
    floor: u64,
    /// The stream class id, fixed by the first entry.
    class_id: Option<u64>,
    /// End offset of the packets given to the viewer: GET_PACKET may read
    /// below it.
    served_end: u64,
    /// HUP was sent.
    pub hup: bool,
    /// Whether the viewer was told about this stream.
    pub announced: bool,
    /// Packets skipped because they started before a beacon.
    pub skipped: u64,
}

impl StreamView {
    /// A view of `dir/name` and `dir/index/name.idx`, at the first entry.
    pub fn new(id: u64, dir: &Path, name: &str) -> StreamView {
        StreamView {
            id,
            name: name.to_string(),
            data_path: dir.join(name),
            index_path: dir.join("index").join(format!("{name}.idx")),
            data: None,
            index: None,
            entry_len: 0,
            cursor: 0,
            last_end: None,
            sent_beacon: None,
            floor: 0,
            class_id: None,
            served_end: 0,
            hup: false,
            announced: false,
            skipped: 0,
        }
    }

    /// Packets starting before `floor` will be skipped.
    pub fn set_floor(&mut self, floor: u64) {
        self.floor = floor;
    }

    /// The stream class id, once an entry was read.
    pub fn class_id(&self) -> Option<u64> {
        self.class_id
    }

    /// The latest time the viewer got from this stream (beacon or end of a
    /// packet), for the session's high mark.
    pub fn high_mark(&self) -> u64 {
        self.sent_beacon
            .unwrap_or(0)
            .max(self.last_end.unwrap_or(0))
    }

    /// Moves to the end of the index: only packets written from now on will
    /// be served (attach with seek = last). Returns the class id of the
    /// last entry, if any.
    pub fn seek_last(&mut self) -> Result<Option<u64>, String> {
        let n = self.entries_available()?;
        if n == 0 {
            return Ok(None);
        }
        let e = self.read_entry(n - 1)?;
        self.cursor = n;
        self.last_end = Some(e.ts_end);
        self.class_id = Some(e.class_id);
        Ok(Some(e.class_id))
    }

    /// Class id of the first entry, if the index has one (to answer beacons
    /// of other streams before they have entries of their own).
    pub fn peek_class_id(&mut self) -> Option<u64> {
        if self.entries_available().ok()? == 0 {
            return None;
        }
        self.read_entry(0).ok().map(|e| e.class_id)
    }

    /// Decides the next answer. `complete`: the writer finished (read
    /// before the index, so no packet can be missed); `watermark`: the
    /// writer's watermark for this stream; `max_len`: largest packet served.
    pub fn next(&mut self, complete: bool, watermark: Option<u64>, max_len: u64) -> Next {
        if self.hup {
            return Next::Hup;
        }
        loop {
            let available = match self.entries_available() {
                Ok(n) => n,
                Err(e) => return Next::Broken(e),
            };
            if self.cursor >= available {
                break;
            }
            let e = match self.read_entry(self.cursor) {
                Ok(e) => e,
                Err(e) => return Next::Broken(e),
            };
            let len = match e.checked_len(max_len) {
                Ok(l) => l,
                Err(why) => {
                    return Next::Broken(format!(
                        "{} entry {}: {why}",
                        self.index_path.display(),
                        self.cursor
                    ))
                }
            };
            // The writer puts a packet in the stream file before its entry
            // in the index; an entry beyond the file means the file was cut
            // back (a restarted writer) and will grow again.
            match self.data_len() {
                Ok(have) if have >= e.offset + len => {}
                Ok(_) => break,
                Err(e) => return Next::Broken(e),
            }
            match self.class_id {
                Some(c) if c != e.class_id => {
                    return Next::Broken(format!(
                        "{} entry {}: stream class id changed from {c} to {}",
                        self.index_path.display(),
                        self.cursor,
                        e.class_id
                    ))
                }
                _ => self.class_id = Some(e.class_id),
            }
            self.cursor += 1;
            self.last_end = Some(self.last_end.map_or(e.ts_end, |l| l.max(e.ts_end)));
            let floor = self.floor.max(self.sent_beacon.unwrap_or(0));
            if e.ts_begin < floor {
                self.skipped += 1;
                eprintln!(
                    "strata live: {}: skipping packet at byte {} ({}..{}): it starts before time {floor}, which the viewer already passed",
                    self.data_path.display(),
                    e.offset,
                    e.ts_begin,
                    e.ts_end
                );
                continue;
            }
            self.served_end = self.served_end.max(e.offset + len);
            return Next::Packet(e);
        }
        if complete {
            self.hup = true;
            return Next::Hup;
        }
        let candidate = match (watermark, self.last_end) {
            (Some(w), Some(l)) => Some(w.max(l)),
            (w, l) => w.or(l),
        };
        match (candidate, self.sent_beacon) {
            (Some(c), None) => {
                self.sent_beacon = Some(c);
                Next::Beacon(c)
            }
            (Some(c), Some(s)) if c > s => {
                self.sent_beacon = Some(c);
                Next::Beacon(c)
            }
            (_, s) => Next::Nothing(s),
        }
    }

    /// Reads `len` bytes at `offset` into `buf` (resized), if the range lies
    /// within packets already given to the viewer.
    pub fn read_packet(&mut self, offset: u64, len: u32, buf: &mut [u8]) -> Result<(), String> {
        let end = offset
            .checked_add(u64::from(len))
            .ok_or("range overflows")?;
        if len == 0 || end > self.served_end {
            return Err(format!(
                "bytes {offset}..{end} are outside the packets served so far (up to {})",
                self.served_end
            ));
        }
        let f = self.data_file()?;
        f.read_exact_at(buf, offset)
            .map_err(|e| format!("reading {} at byte {offset}: {e}", self.data_path.display()))
    }

    fn data_file(&mut self) -> Result<&File, String> {
        if self.data.is_none() {
            let f = File::open(&self.data_path)
                .map_err(|e| format!("opening {}: {e}", self.data_path.display()))?;
            self.data = Some(f);
        }
        self.data
            .as_ref()
            .ok_or_else(|| "data file not open".to_string())
    }

    fn data_len(&mut self) -> Result<u64, String> {
        let path = self.data_path.display().to_string();
        let f = self.data_file()?;
        f.metadata()
            .map(|m| m.len())
            .map_err(|e| format!("stat {path}: {e}"))
    }

    /// Whole entries in the index file now (0 while it is missing or its
    /// header incomplete).
    fn entries_available(&mut self) -> Result<u64, String> {
        if self.index.is_none() {
            match File::open(&self.index_path) {
                Ok(f) => self.index = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(format!("opening {}: {e}", self.index_path.display())),
            }
        }
        let Some(f) = self.index.as_ref() else {
            return Ok(0);
        };
        let len = f
            .metadata()
            .map_err(|e| format!("stat {}: {e}", self.index_path.display()))?
            .len();
        if len < HEADER_LEN as u64 {
            return Ok(0);
        }
        if self.entry_len == 0 {
            let mut h = [0u8; HEADER_LEN];
            f.read_exact_at(&mut h, 0)
                .map_err(|e| format!("reading {}: {e}", self.index_path.display()))?;
            let word = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
            if word(0) != INDEX_MAGIC {
                return Err(format!(
                    "{} is not an LTTng index (magic {:#010x})",
                    self.index_path.display(),
                    word(0)
                ));
            }
            let el = u64::from(word(12));
            if !((FIELDS_READ as u64 * 8)..=MAX_ENTRY_LEN).contains(&el) {
                return Err(format!(
                    "{}: entry length {el} is outside 56..={MAX_ENTRY_LEN}",
                    self.index_path.display()
                ));
            }
            self.entry_len = el;
        }
        Ok((len - HEADER_LEN as u64) / self.entry_len)
    }

    fn read_entry(&self, n: u64) -> Result<Entry, String> {
        let f = self.index.as_ref().ok_or("index not open")?;
        let at = HEADER_LEN as u64 + n * self.entry_len;
        let mut b = [0u8; FIELDS_READ * 8];
        f.read_exact_at(&mut b, at)
            .map_err(|e| format!("reading {} entry {n}: {e}", self.index_path.display()))?;
        Ok(Entry::decode(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use strata_ctf::index::{encode_header, IndexEntry};

    struct Files {
        _tmp: tempfile::TempDir,
        dir: PathBuf,
        data: File,
        index: File,
        offset: u64,
    }

    impl Files {
        fn new() -> Files {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().to_path_buf();
            std::fs::create_dir(dir.join("index")).unwrap();
            let data = File::create(dir.join("channel0_0")).unwrap();
            let mut index = File::create(dir.join("index/channel0_0.idx")).unwrap();
            index.write_all(&encode_header()).unwrap();
            Files {
                _tmp: tmp,
                dir,
                data,
                index,
                offset: 0,
            }
        }

        fn packet(&mut self, begin: u64, end: u64) {
            self.data.write_all(&[0u8; 64]).unwrap();
            let mut b = Vec::new();
            IndexEntry {
                offset: self.offset,
                packet_size: 64 * 8,
                content_size: 60 * 8,
                timestamp_begin: begin,
                timestamp_end: end,
                stream_id: 0,
                ..IndexEntry::default()
            }
            .encode(&mut b);
            self.index.write_all(&b).unwrap();
            self.offset += 64;
        }
    }

    const MAX: u64 = 1 << 20;

    #[test]
    fn packets_then_beacons_then_hup() {
        let mut f = Files::new();
        let mut s = StreamView::new(1, &f.dir, "channel0_0");
        assert_eq!(s.next(false, None, MAX), Next::Nothing(None));
        f.packet(10, 20);
        let Next::Packet(e) = s.next(false, None, MAX) else {
            panic!()
        };
        assert_eq!((e.offset, e.ts_begin, e.ts_end), (0, 10, 20));
        // No watermark: the end of the last packet is a valid first beacon.
        assert_eq!(s.next(false, None, MAX), Next::Beacon(20));
        assert_eq!(s.next(false, None, MAX), Next::Nothing(Some(20)));
        // A watermark older than the last packet never moves the beacon back.
        assert_eq!(s.next(false, Some(15), MAX), Next::Nothing(Some(20)));
        assert_eq!(s.next(false, Some(30), MAX), Next::Beacon(30));
        f.packet(30, 40);
        assert!(matches!(s.next(false, Some(30), MAX), Next::Packet(_)));
        let mut buf = [0u8; 64];
        assert!(s.read_packet(64, 64, &mut buf).is_ok());
        assert!(s.read_packet(100, 64, &mut buf).is_err());
        assert!(s.read_packet(0, 0, &mut buf[..0]).is_err());
        assert_eq!(s.next(true, None, MAX), Next::Hup);
        assert_eq!(s.next(false, None, MAX), Next::Hup);
    }

    #[test]
    fn packets_older_than_a_beacon_are_skipped() {
        let mut f = Files::new();
        let mut s = StreamView::new(1, &f.dir, "channel0_0");
        assert_eq!(s.next(false, Some(100), MAX), Next::Beacon(100));
        f.packet(50, 120); // broke the writer's promise
        f.packet(120, 130);
        let Next::Packet(e) = s.next(false, Some(100), MAX) else {
            panic!()
        };
        assert_eq!(e.ts_begin, 120);
        assert_eq!(s.skipped, 1);
        // Only bytes up to the end of the packet served can be read.
        let mut buf = [0u8; 8];
        assert!(s.read_packet(120, 8, &mut buf).is_ok());
        assert!(s.read_packet(124, 8, &mut buf).is_err());
    }

    #[test]
    fn seek_last_and_floor() {
        let mut f = Files::new();
        f.packet(1, 2);
        f.packet(3, 4);
        let mut s = StreamView::new(1, &f.dir, "channel0_0");
        assert_eq!(s.seek_last(), Ok(Some(0)));
        assert_eq!(s.next(false, None, MAX), Next::Beacon(4));
        let mut late = StreamView::new(2, &f.dir, "channel0_0");
        late.set_floor(3);
        let Next::Packet(e) = late.next(false, None, MAX) else {
            panic!()
        };
        assert_eq!(e.ts_begin, 3);
        assert_eq!(late.skipped, 1);
    }

    #[test]
    fn bad_entries_break_the_stream() {
        let mut f = Files::new();
        f.data.write_all(&[0u8; 64]).unwrap();
        let mut b = Vec::new();
        IndexEntry {
            packet_size: 13,
            ..IndexEntry::default()
        }
        .encode(&mut b);
        f.index.write_all(&b).unwrap();
        let mut s = StreamView::new(1, &f.dir, "channel0_0");
        assert!(matches!(s.next(false, None, MAX), Next::Broken(_)));
        // An entry pointing past the end of the data waits for the data.
        let mut f = Files::new();
        let mut b = Vec::new();
        IndexEntry {
            offset: 0,
            packet_size: 64 * 8,
            content_size: 8,
            ..IndexEntry::default()
        }
        .encode(&mut b);
        f.index.write_all(&b).unwrap();
        let mut s = StreamView::new(1, &f.dir, "channel0_0");
        assert_eq!(s.next(false, None, MAX), Next::Nothing(None));
        f.data.write_all(&[0u8; 64]).unwrap();
        assert!(matches!(s.next(false, None, MAX), Next::Packet(_)));
        // A wrong magic is reported.
        let f = Files::new();
        std::fs::write(f.dir.join("index/channel0_0.idx"), [0u8; 16]).unwrap();
        let mut s = StreamView::new(1, &f.dir, "channel0_0");
        assert!(matches!(s.next(false, None, MAX), Next::Broken(_)));
    }

    #[test]
    fn entry_checks() {
        let ok = Entry {
            offset: 0,
            packet_size: 800,
            content_size: 8,
            ts_begin: 1,
            ts_end: 1,
            events_discarded: 0,
            class_id: 0,
        };
        assert_eq!(ok.checked_len(100), Ok(100));
        assert!(ok.checked_len(99).is_err());
        assert!(Entry {
            content_size: 801,
            ..ok
        }
        .checked_len(100)
        .is_err());
        assert!(Entry { ts_begin: 2, ..ok }.checked_len(100).is_err());
        assert!(Entry {
            offset: u64::MAX,
            ..ok
        }
        .checked_len(100)
        .is_err());
        assert!(Entry {
            packet_size: 0,
            ..ok
        }
        .checked_len(100)
        .is_err());
    }
}
