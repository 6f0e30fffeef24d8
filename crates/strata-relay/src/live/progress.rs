//! How far a trace being written has got: whether it is complete, and per
//! stream a watermark, the clock value before which no packet will still be
//! added to that stream.
//!
//! Watermarks are what let the server answer a quiet stream with a beacon
//! (GET_NEXT_INDEX `INACTIVE` with `timestamp_end` = the watermark), so
//! babeltrace2's muxer can go on with the other streams instead of waiting
//! for that stream's next packet. Only the writer can know them: a stream
//! file that did not grow may still have an open packet in the writer's
//! memory whose events are older than everything else. A writer must never
//! publish a watermark later than the `timestamp_begin` of a packet it will
//! still write; a packet that breaks this is skipped by the server (it is
//! counted and logged), because the viewer has already moved past it.
//!
//! On disk the progress is a small text file, [`FILE_NAME`], in the trace
//! directory (hidden, so trace readers ignore it), replaced atomically:
//!
//! ```text
//! strata-live 1
//! live_timer_us 100000
//! state live
//! watermark 1700000000123456789
//! stream channel0_0 1700000000100000000
//! ```
//!
//! `state` is `live` or `complete`; `watermark` applies to streams without
//! a `stream` line. Unknown keys are ignored so the format can grow.

use thiserror::Error;

/// Name of the progress file in a trace directory.
pub const FILE_NAME: &str = ".strata-live";
/// The largest progress file accepted, in bytes.
pub const MAX_LEN: usize = 1 << 20;
/// The most `stream` lines accepted.
pub const MAX_STREAMS: usize = 16_384;
const MAGIC: &str = "strata-live";
const VERSION: u32 = 1;

/// A trace's progress, as its writer publishes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The writer has finished: every packet is on disk.
    pub complete: bool,
    /// The live timer the writer flushes packets with, in microseconds.
    pub live_timer_us: Option<u32>,
    /// Watermark of streams not listed in `streams`.
    pub watermark: Option<u64>,
    /// Per-stream watermarks, by stream file name.
    pub streams: Vec<(String, u64)>,
}

impl Progress {
    /// A finished trace.
    pub fn complete() -> Progress {
        Progress {
            complete: true,
            ..Progress::default()
        }
    }

    /// The watermark of the stream file `name`, if the writer gave one.
    pub fn watermark_for(&self, name: &str) -> Option<u64> {
        self.streams
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, w)| w)
            .or(self.watermark)
    }
}

/// Why a progress file could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProgressError {
    /// Larger than [`MAX_LEN`].
    #[error("progress file is {0} bytes, more than the {MAX_LEN} accepted")]
    TooLong(usize),
    /// The first line is not `strata-live 1`.
    #[error("progress file does not start with \"{MAGIC} {VERSION}\"; it was not written by a Strata writer of this version")]
    BadMagic,
    /// A line could not be parsed.
    #[error("progress file line {line}: {what}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
}

/// Parses a progress file.
pub fn parse(bytes: &[u8]) -> Result<Progress, ProgressError> {
    if bytes.len() > MAX_LEN {
        return Err(ProgressError::TooLong(bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| ProgressError::BadLine {
        line: bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1,
        what: "not UTF-8".into(),
    })?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, l)) if l.split_whitespace().eq([MAGIC, "1"]) => {}
        _ => return Err(ProgressError::BadMagic),
    }
    let mut p = Progress::default();
    for (i, line) in lines {
        let bad = |what: &str| ProgressError::BadLine {
            line: i + 1,
            what: what.to_string(),
        };
        let mut words = line.split_whitespace();
        let Some(key) = words.next() else { continue };
        match key {
            "state" => {
                p.complete = match words.next() {
                    Some("live") => false,
                    Some("complete") => true,
                    _ => return Err(bad("state must be \"live\" or \"complete\"")),
                }
            }
            "live_timer_us" => {
                let v = words.next().and_then(|w| w.parse::<u32>().ok());
                p.live_timer_us = Some(v.ok_or_else(|| bad("live_timer_us needs a u32"))?);
            }
            "watermark" => {
                let v = words.next().and_then(|w| w.parse::<u64>().ok());
                p.watermark = Some(v.ok_or_else(|| bad("watermark needs a u64"))?);
            }
            "stream" => {
                let (Some(name), Some(v)) = (words.next(), words.next()) else {
                    return Err(bad("stream needs a name and a u64"));
                };
                let v = v
                    .parse::<u64>()
                    .map_err(|_| bad("stream watermark is not a u64"))?;
                if p.streams.len() >= MAX_STREAMS {
                    return Err(bad("too many stream lines"));
                }
                p.streams.push((name.to_string(), v));
            }
            _ => {}
        }
    }
    Ok(p)
}

/// Encodes `p` as a progress file. Stream names with white space cannot be
/// written and are left out (Strata names streams `channel0_N`).
pub fn encode(p: &Progress) -> String {
    use std::fmt::Write;
    let mut s = format!("{MAGIC} {VERSION}\n");
    if let Some(t) = p.live_timer_us {
        let _ = writeln!(s, "live_timer_us {t}");
    }
    let _ = writeln!(s, "state {}", if p.complete { "complete" } else { "live" });
    if let Some(w) = p.watermark {
        let _ = writeln!(s, "watermark {w}");
    }
    for (name, w) in &p.streams {
        if !name.is_empty() && !name.contains(char::is_whitespace) {
            let _ = writeln!(s, "stream {name} {w}");
        }
    }
    s
}

/// Writes `p` as `dir/.strata-live`, atomically (a temporary file renamed
/// over the old one), so the server never reads half a file. Writers call
/// it on their live timer and once more, complete, after their last packet.
pub fn write(dir: &std::path::Path, p: &Progress) -> std::io::Result<()> {
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    std::fs::write(&tmp, encode(p))?;
    std::fs::rename(&tmp, dir.join(FILE_NAME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_falls_back_to_the_trace_watermark() {
        let p = Progress {
            complete: false,
            live_timer_us: Some(100_000),
            watermark: Some(50),
            streams: vec![("channel0_0".into(), 40), ("channel0_1".into(), 70)],
        };
        let q = parse(encode(&p).as_bytes()).unwrap();
        assert_eq!(q, p);
        assert_eq!(q.watermark_for("channel0_1"), Some(70));
        assert_eq!(q.watermark_for("channel0_9"), Some(50));
        let c = parse(encode(&Progress::complete()).as_bytes()).unwrap();
        assert!(c.complete);
        assert_eq!(c.watermark_for("x"), None);
    }

    #[test]
    fn bad_files_are_refused_with_their_line() {
        assert_eq!(parse(b"hello"), Err(ProgressError::BadMagic));
        assert_eq!(parse(b"strata-live 2\n"), Err(ProgressError::BadMagic));
        let e = parse(b"strata-live 1\nstate live\nwatermark -3\n").unwrap_err();
        assert!(matches!(e, ProgressError::BadLine { line: 3, .. }), "{e}");
        let e = parse(b"strata-live 1\nstate paused\n").unwrap_err();
        assert!(matches!(e, ProgressError::BadLine { line: 2, .. }), "{e}");
        assert_eq!(
            parse(&vec![b' '; MAX_LEN + 1]),
            Err(ProgressError::TooLong(MAX_LEN + 1))
        );
        // Unknown keys are ignored.
        let p = parse(b"strata-live 1\nfuture_key 1 2 3\nstate complete\n").unwrap();
        assert!(p.complete);
    }

    #[test]
    fn write_replaces_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), &Progress::default()).unwrap();
        write(tmp.path(), &Progress::complete()).unwrap();
        let b = std::fs::read(tmp.path().join(FILE_NAME)).unwrap();
        assert!(parse(&b).unwrap().complete);
        assert!(!tmp.path().join(format!("{FILE_NAME}.tmp")).exists());
    }

    proptest! {
        #[test]
        fn random_files_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut v = b"strata-live 1\n".to_vec();
            v.extend_from_slice(&b);
            let _ = parse(&v);
            let _ = parse(&b);
        }
    }
}
