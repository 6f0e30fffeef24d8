//! Parser for tracefs `events/header_page`: where the timestamp, the commit
//! word and the event data sit inside one ring-buffer sub-buffer.
//!
//! Each instance has its own `events/header_page`, and on kernels with
//! `buffer_subbuf_size_kb` (6.8+) it reports that instance's sub-buffer size
//! (checked on 6.18: writing 16 there turns `data` into `size:16368`), while the
//! top-level file keeps the top-level buffer's size. So read it from the
//! instance being recorded, after its sub-buffer size is set.

use thiserror::Error;

/// Larger header texts are refused: the real one is four short lines.
const MAX_HEADER_LEN: usize = 64 * 1024;

/// The commit word keeps the data length in its low 27 bits, so no data area
/// can be larger than this.
pub const MAX_DATA_SIZE: usize = (1 << 27) - 1;

/// Why a `header_page` text could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HeaderError {
    /// The text is implausibly large.
    #[error("header_page text is {0} bytes, more than the {MAX_HEADER_LEN}-byte limit")]
    TooLarge(usize),
    /// A required field line is absent.
    #[error("header_page has no `{0}` field; is this really events/header_page?")]
    Missing(&'static str),
    /// A field line could not be understood.
    #[error("header_page line {line}: {reason}: `{text}`")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
        /// The offending line, trimmed and shortened.
        text: String,
    },
    /// The fields parse but do not describe a usable page.
    #[error("header_page layout is unusable: {0}")]
    Layout(&'static str),
}

/// Where the parts of a ring-buffer sub-buffer ("page") are, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLayout {
    /// Offset of the u64 page timestamp.
    pub timestamp_offset: usize,
    /// Offset of the commit word (a `long`).
    pub commit_offset: usize,
    /// Size of the commit word: 8 on 64-bit kernels, 4 on 32-bit ones.
    pub commit_size: usize,
    /// Offset of the first event.
    pub data_offset: usize,
    /// Bytes available for events.
    pub data_size: usize,
}

impl PageLayout {
    /// The whole sub-buffer size: what one `read` of `trace_pipe_raw` returns.
    pub fn subbuf_size(&self) -> usize {
        self.data_offset + self.data_size
    }

    /// The layout of a 64-bit kernel with 4 KiB sub-buffers, for tests and
    /// for callers that have no tracefs at hand.
    pub fn default_x86_64() -> PageLayout {
        PageLayout {
            timestamp_offset: 0,
            commit_offset: 8,
            commit_size: 8,
            data_offset: 16,
            data_size: 4080,
        }
    }
}

/// Parses the text of `events/header_page`.
pub fn parse_header_page(text: &str) -> Result<PageLayout, HeaderError> {
    if text.len() > MAX_HEADER_LEN {
        return Err(HeaderError::TooLarge(text.len()));
    }
    let mut timestamp = None;
    let mut commit = None;
    let mut data = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if !line.starts_with("field") {
            continue;
        }
        let bad = |reason| HeaderError::BadLine {
            line: i + 1,
            reason,
            text: line.chars().take(200).collect(),
        };
        let (name, offset, size) = parse_field(line).map_err(bad)?;
        match name {
            "timestamp" => timestamp = Some((offset, size)),
            "commit" => commit = Some((offset, size)),
            "data" => data = Some((offset, size)),
            // `overwrite` aliases the commit word's low byte; nothing to do.
            _ => {}
        }
    }
    let (timestamp_offset, ts_size) = timestamp.ok_or(HeaderError::Missing("timestamp"))?;
    let (commit_offset, commit_size) = commit.ok_or(HeaderError::Missing("commit"))?;
    let (data_offset, data_size) = data.ok_or(HeaderError::Missing("data"))?;
    if ts_size != 8 {
        return Err(HeaderError::Layout("the timestamp is not 8 bytes"));
    }
    if commit_size != 4 && commit_size != 8 {
        return Err(HeaderError::Layout(
            "the commit word is neither 4 nor 8 bytes",
        ));
    }
    if data_size == 0 || data_size > MAX_DATA_SIZE {
        return Err(HeaderError::Layout("the data size is 0 or above 2^27"));
    }
    if timestamp_offset + 8 > data_offset || commit_offset + commit_size > data_offset {
        return Err(HeaderError::Layout(
            "the timestamp or commit overlaps the data",
        ));
    }
    Ok(PageLayout {
        timestamp_offset,
        commit_offset,
        commit_size,
        data_offset,
        data_size,
    })
}

/// Parses `field: TYPE NAME;\toffset:N;\tsize:N;\tsigned:N;` into its name,
/// offset and size.
fn parse_field(line: &str) -> Result<(&str, usize, usize), &'static str> {
    let mut name = None;
    let mut offset = None;
    let mut size = None;
    for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once(':').ok_or("a part has no `:`")?;
        let value = value.trim();
        // Offsets and sizes are bounded so that sums of them cannot overflow.
        let num = || match value.parse::<usize>() {
            Ok(n) if n <= MAX_DATA_SIZE => Ok(n),
            _ => Err("a number does not parse or is above 2^27"),
        };
        match key.trim() {
            "field" => {
                name = Some(
                    value
                        .rsplit(|c: char| c.is_whitespace() || c == '*')
                        .next()
                        .filter(|n| !n.is_empty())
                        .ok_or("a field has no name")?,
                )
            }
            "offset" => offset = Some(num()?),
            "size" => size = Some(num()?),
            _ => {}
        }
    }
    Ok((
        name.ok_or("no field declaration")?,
        offset.ok_or("no offset")?,
        size.ok_or("no size")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from /sys/kernel/tracing/events/header_page on Linux 6.18.
    const HEADER_4K: &str = "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;
\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;
\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;
\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;
";

    #[test]
    fn parses_the_kernel_text() {
        let l = parse_header_page(HEADER_4K).unwrap();
        assert_eq!(l, PageLayout::default_x86_64());
        assert_eq!(l.subbuf_size(), 4096);
    }

    #[test]
    fn larger_subbuffers() {
        let text = HEADER_4K.replace("size:4080", "size:16368");
        assert_eq!(parse_header_page(&text).unwrap().subbuf_size(), 16384);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            parse_header_page("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"),
            Err(HeaderError::Missing("commit"))
        );
        assert!(matches!(
            parse_header_page(&HEADER_4K.replace("offset:16", "offset:x")),
            Err(HeaderError::BadLine { line: 4, .. })
        ));
        assert!(matches!(
            parse_header_page(&HEADER_4K.replace("size:4080", "size:0")),
            Err(HeaderError::Layout(_))
        ));
        assert!(matches!(
            parse_header_page(&HEADER_4K.replace("offset:16", "offset:4")),
            Err(HeaderError::Layout(_))
        ));
        assert!(matches!(
            parse_header_page(&HEADER_4K.replace("size:4080", "size:99999999999")),
            Err(HeaderError::BadLine { .. })
        ));
    }
}
