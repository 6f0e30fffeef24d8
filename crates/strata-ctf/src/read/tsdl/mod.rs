//! TSDL metadata: unwrapping packetized metadata, tokenizing and parsing the
//! text into [`Metadata`]. Pure: works on bytes, does no I/O.

mod fixed_fields;
mod in_place;
mod lexer;
pub mod model;
mod parser;
mod skip;
mod span_scan;
mod split;

pub use model::*;

use std::borrow::Cow;
use std::sync::OnceLock;

use split::{Owner, Split};

use thiserror::Error;

/// Magic number that opens each packet of packetized metadata.
pub const METADATA_PACKET_MAGIC: u32 = 0x75D1_1D57;
/// Size of a metadata packet header in bytes.
const METADATA_HEADER_LEN: usize = 37;

/// Why metadata could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MetadataError {
    /// The TSDL text is malformed.
    #[error("metadata line {line}: {msg}")]
    Syntax {
        /// 1-based line number in the TSDL text.
        line: u32,
        /// What was expected and found.
        msg: String,
    },
    /// A metadata packet is malformed.
    #[error("metadata packet at byte {offset}: {msg}")]
    Packet {
        /// Byte offset of the packet in the metadata file.
        offset: usize,
        /// What is wrong.
        msg: String,
    },
    /// The metadata uses something this reader does not support.
    #[error("unsupported metadata: {0}")]
    Unsupported(String),
    /// The declarations are inconsistent (bad field reference, duplicate id...).
    #[error("invalid metadata: {0}")]
    Invalid(String),
}

impl MetadataError {
    pub(crate) fn syntax(line: u32, msg: impl Into<String>) -> Self {
        MetadataError::Syntax {
            line,
            msg: msg.into(),
        }
    }
}

/// The TSDL text of a metadata file: the file itself when it is plain text,
/// or the concatenated packet contents when it is packetized.
pub fn metadata_text(bytes: &[u8]) -> Result<String, MetadataError> {
    Ok(String::from_utf8_lossy(&metadata_bytes(bytes)?).into_owned())
}

/// The TSDL bytes of a metadata file: borrowed when it is plain text.
fn metadata_bytes(bytes: &[u8]) -> Result<Cow<'_, [u8]>, MetadataError> {
    Ok(match packet_bodies(bytes)? {
        None => Cow::Borrowed(bytes),
        Some(bodies) => {
            let mut text = Vec::with_capacity(bytes.len());
            for r in bodies {
                text.extend_from_slice(&bytes[r]);
            }
            Cow::Owned(text)
        }
    })
}

/// Where the TSDL text of each packet of packetized metadata is, checking
/// every header; `None` when the file is plain text.
fn packet_bodies(bytes: &[u8]) -> Result<Option<Vec<std::ops::Range<usize>>>, MetadataError> {
    let magic_le = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let magic_be = bytes
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let le = if magic_le == Some(METADATA_PACKET_MAGIC) {
        true
    } else if magic_be == Some(METADATA_PACKET_MAGIC) {
        false
    } else {
        return Ok(None);
    };
    let mut bodies = Vec::new();
    let mut off = 0usize;
    while off < bytes.len() {
        let Some(h) = bytes.get(off..off + METADATA_HEADER_LEN) else {
            return Err(MetadataError::Packet {
                offset: off,
                msg: format!(
                    "only {} bytes left, a packet header needs {METADATA_HEADER_LEN}: the metadata file is truncated",
                    bytes.len() - off
                ),
            });
        };
        let u32_at = |i: usize| {
            let b = [h[i], h[i + 1], h[i + 2], h[i + 3]];
            if le {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            }
        };
        if u32_at(0) != METADATA_PACKET_MAGIC {
            return Err(MetadataError::Packet {
                offset: off,
                msg: format!(
                    "magic is {:#010x}, expected {METADATA_PACKET_MAGIC:#010x}",
                    u32_at(0)
                ),
            });
        }
        let content_bits = u32_at(24) as usize;
        let packet_bits = u32_at(28) as usize;
        let (compression, encryption, checksum) = (h[32], h[33], h[34]);
        if compression != 0 || encryption != 0 || checksum != 0 {
            return Err(MetadataError::Unsupported(format!(
                "metadata packet at byte {off} uses compression {compression}, encryption {encryption}, checksum {checksum}"
            )));
        }
        if !content_bits.is_multiple_of(8)
            || !packet_bits.is_multiple_of(8)
            || content_bits < METADATA_HEADER_LEN * 8
            || content_bits > packet_bits
        {
            return Err(MetadataError::Packet {
                offset: off,
                msg: format!(
                    "content size {content_bits} bits and packet size {packet_bits} bits are inconsistent"
                ),
            });
        }
        let end = off + content_bits / 8;
        if bytes.get(off + METADATA_HEADER_LEN..end).is_none() {
            return Err(MetadataError::Packet {
                offset: off,
                msg: format!(
                    "content runs to byte {end}, past the end of the file ({} bytes): the metadata file is truncated",
                    bytes.len()
                ),
            });
        }
        bodies.push(off + METADATA_HEADER_LEN..end);
        // A final packet may be cut short after its content (a file still
        // being written); the content is all that matters.
        off = (off + packet_bits / 8).min(bytes.len());
    }
    Ok(Some(bodies))
}

/// Parses metadata bytes (plain or packetized) into [`Metadata`].
pub fn parse(bytes: &[u8]) -> Result<Metadata, MetadataError> {
    let bytes = metadata_bytes(bytes)?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse_text(text),
        Err(_) => parse_text(&String::from_utf8_lossy(&bytes)),
    }
}

/// Parses TSDL text into [`Metadata`].
pub fn parse_text(text: &str) -> Result<Metadata, MetadataError> {
    parser::Parser::new(text).parse()
}

/// Parses metadata bytes (plain or packetized) like [`parse`], except the
/// types of most event blocks (`context`, `fields`), which are only
/// delimited: their events have `None` there, and [`LazyTypes`] parses
/// them on demand. Errors inside those types surface then, not here.
///
/// The bytes are kept (the types are read from them later) and read where
/// they are: a mapped file is not copied, except for the few KB before the
/// first event block of packetized metadata. Metadata laid out otherwise
/// than LTTng writes it is unwrapped into one string first, with the same
/// results.
pub(crate) fn parse_lazy<B>(bytes: B) -> Result<(Metadata, LazyTypes), MetadataError>
where
    B: AsRef<[u8]> + Send + Sync + 'static,
{
    let owner: Owner = Box::new(bytes);
    let data = (*owner).as_ref();
    let (lazy, text, path) = match packet_bodies(data)? {
        None => match std::str::from_utf8(data) {
            Ok(text) => {
                let lazy = parser::Parser::new(text).parse_lazy()?;
                let whole = 0..data.len();
                (
                    lazy,
                    LazyText::split(Split::new(owner, &[whole])),
                    ReadPath::Plain,
                )
            }
            Err(_) => {
                let text = String::from_utf8_lossy(data).into_owned();
                let lazy = parser::Parser::new(&text).parse_lazy()?;
                (lazy, LazyText::Whole(text), ReadPath::Unwrapped)
            }
        },
        Some(bodies) => {
            let split = Split::new(owner, &bodies);
            match in_place::parse_lazy(&split) {
                Some(lazy) => (lazy, LazyText::split(split), ReadPath::InPlace),
                None => {
                    let text = String::from_utf8(split.to_vec())
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                    drop(split);
                    let lazy = parser::Parser::new(&text).parse_lazy()?;
                    (lazy, LazyText::Whole(text), ReadPath::Unwrapped)
                }
            }
        }
    };
    let parser::Lazy {
        md,
        top,
        deferred,
        other_keys,
        ints,
    } = lazy;
    // Where each event's entries start, and one past the last event.
    let mut starts = Vec::with_capacity(md.events.len() + 1);
    let mut at = 0;
    for e in 0..=md.events.len() {
        while deferred.get(at).is_some_and(|d| (d.event as usize) < e) {
            at += 1;
        }
        starts.push(at as u32);
    }
    Ok((
        md,
        LazyTypes {
            text,
            path,
            top,
            deferred,
            other_keys,
            starts,
            ints: std::sync::Mutex::new(ints),
        },
    ))
}

/// How [`parse_lazy`] read the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadPath {
    /// Plain text metadata, where it is.
    Plain,
    /// Packetized metadata, in its packet bodies.
    InPlace,
    /// Packetized (or non-UTF-8) metadata, put together into one string.
    Unwrapped,
}

/// Where the text of a lazy parse is kept.
enum LazyText {
    /// One string: unwrapped packets, or a plain file made valid UTF-8.
    Whole(String),
    /// Read where it lies; the whole text is only put together when an
    /// event's types fail to parse, to report what the whole parse would.
    Split {
        split: Split,
        whole: OnceLock<String>,
    },
}

impl LazyText {
    fn split(split: Split) -> Self {
        LazyText::Split {
            split,
            whole: OnceLock::new(),
        }
    }
    /// The bytes of range `r` (at character boundaries: taken from the
    /// parse).
    fn get(&self, r: std::ops::Range<usize>) -> Cow<'_, [u8]> {
        match self {
            LazyText::Whole(t) => Cow::Borrowed(t.as_bytes().get(r).unwrap_or(&[])),
            LazyText::Split { split, .. } => split.bytes(r),
        }
    }
    /// The whole text.
    fn whole(&self) -> &str {
        match self {
            LazyText::Whole(t) => t,
            LazyText::Split { split, whole } => {
                whole.get_or_init(|| String::from_utf8_lossy(&split.to_vec()).into_owned())
            }
        }
    }
    fn len(&self) -> usize {
        match self {
            LazyText::Whole(t) => t.len(),
            LazyText::Split { split, .. } => split.len(),
        }
    }
}

/// The event types [`parse_lazy`] left unparsed, and what parsing them
/// needs: the TSDL text and the type names of its top level.
pub(crate) struct LazyTypes {
    text: LazyText,
    /// How the text was read.
    path: ReadPath,
    top: parser::Scope,
    /// In text order, hence by event.
    deferred: Vec<parser::Deferred>,
    /// Names of their keys other than `context` and `fields`.
    other_keys: Vec<Box<str>>,
    /// Index in `deferred` of each event's first entry, and its end last.
    starts: Vec<u32>,
    /// Integer bodies parsed so far: LTTng spells out the same few in
    /// every event, so each class need not parse them again.
    ints: std::sync::Mutex<parser::SharedInts>,
}

impl std::fmt::Debug for LazyTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyTypes")
            .field("text_bytes", &self.text.len())
            .field("path", &self.path)
            .field("deferred", &self.deferred.len())
            .finish()
    }
}

/// An event's `context` and `fields` types (not boxed: they only live
/// for the compile of their class).
pub(crate) type EventTypes = (Option<Type>, Option<Type>);

impl LazyTypes {
    /// The deferred entries of event `event` (an index into
    /// [`Metadata::events`]).
    fn of(&self, event: usize) -> &[parser::Deferred] {
        match (self.starts.get(event), self.starts.get(event + 1)) {
            (Some(&a), Some(&b)) => self.deferred.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Whether the types of event `event` wait here rather than in its
    /// declaration.
    pub(crate) fn is_deferred(&self, event: usize) -> bool {
        !self.of(event).is_empty()
    }

    /// The deferred entries of event `event`: their keys and texts.
    fn texts(&self, event: usize) -> impl Iterator<Item = (&str, Cow<'_, [u8]>)> {
        self.of(event).iter().map(|d| {
            let text = self.text.get(d.pos as usize..d.end as usize);
            (d.key.text(&self.other_keys), text)
        })
    }

    /// A hash of the deferred types of event `event`: equal for events
    /// whose types are written the same ([`LazyTypes::same_types`]). A fast
    /// one, not built to resist crafted collisions: its users bound how
    /// many events they compare under one hash.
    pub(crate) fn types_hash(&self, event: usize) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = parser::WordHash::default();
        for (key, text) in self.texts(event) {
            // As `(key, text).hash()` hashes a `(&str, &str)`: the text
            // need not be checked to be UTF-8 for it.
            key.hash(&mut h);
            h.write(&text);
            h.write_u8(0xff);
        }
        h.finish()
    }

    /// Whether events `a` and `b` have the same deferred types, written
    /// the same way: they then parse and compile the same (the top-level
    /// names they see are those at the end of the metadata for both).
    pub(crate) fn same_types(&self, a: usize, b: usize) -> bool {
        self.texts(a).eq(self.texts(b))
    }

    /// The payload layout of event `event` when its only deferred type is
    /// a `fields` struct of integers LTTng's way (see [`fixed_fields::fixed_fields`]).
    pub(crate) fn fixed_fields(&self, event: usize) -> Option<fixed_fields::FixedFields> {
        let [d] = self.of(event) else {
            return None;
        };
        if d.key != parser::TypeKey::Fields {
            return None;
        }
        let text = self.text.get(d.pos as usize..d.end as usize);
        // A poisoned lock only means a parse panicked: the cache is whole.
        let ints = self.ints.lock().unwrap_or_else(|e| e.into_inner());
        fixed_fields::fixed_fields(&text, &ints)
    }

    /// Parses the deferred types of event `event`, in the order written
    /// (a later `fields` replaces an earlier one, as in [`parse`]). Errors
    /// are those [`parse`] would have given for them, with their line.
    pub(crate) fn event_types(&self, event: usize) -> Result<EventTypes, MetadataError> {
        let items = self.of(event);
        if items.is_empty() {
            return Ok((None, None));
        }
        // A poisoned lock only means another parse panicked: the cache is
        // still a valid list.
        let mut ints = self.ints.lock().unwrap_or_else(|e| e.into_inner());
        let keys = || {
            items
                .iter()
                .map(|d| (d.key.text(&self.other_keys), d.pos, d.line))
        };
        // The text of the event's types alone, when it is not one string:
        // what parses there parses the same in the whole text (the same
        // tokens up to the last `;`), and what fails is parsed again in the
        // whole text, which tells the error the whole parse would.
        let window = match (&self.text, items.first(), items.last()) {
            (LazyText::Split { split, .. }, Some(a), Some(b)) => split
                .text(a.pos as usize..b.end as usize + 1)
                .map(|t| (t, a.pos)),
            _ => None,
        };
        let parsed = window.and_then(|(text, base)| {
            let keys = keys().map(|(k, pos, line)| (k, pos - base, line));
            parser::parse_deferred(&text, &self.top, keys, Some(&mut ints)).ok()
        });
        let (types, _) = match parsed {
            Some(p) => p,
            None => parser::parse_deferred(self.text.whole(), &self.top, keys(), Some(&mut ints))?,
        };
        drop(ints);
        let (mut context, mut fields) = (None, None);
        for (d, t) in items.iter().zip(types) {
            match d.key {
                parser::TypeKey::Context => context = Some(t),
                parser::TypeKey::Fields => fields = Some(t),
                parser::TypeKey::Other(_) => {}
            }
        }
        Ok((context, fields))
    }
}

/// The metadata files of the shared real traces, for tests: where
/// `tests-support/shared_traces.rs` looks (beside the repository, or the
/// workspace's copy). Empty, after printing why `who` is skipped, when
/// they are absent.
#[cfg(test)]
pub(crate) fn shared_metadata(who: &str) -> Vec<Vec<u8>> {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(dir) = [
        manifest.join("../../../shared/traces"),
        std::path::PathBuf::from("/work/shared/traces"),
    ]
    .into_iter()
    .find(|p| p.join("tc-many-threads/metadata").is_file()) else {
        println!("{who}: skipped: the shared traces (../shared/traces) are not here");
        return Vec::new();
    };
    [
        "tc-many-threads",
        "tc-synctraces/scp_dest",
        "bt-lttng-tracefile-rotation/kernel",
    ]
    .iter()
    .filter_map(|t| std::fs::read(dir.join(t).join("metadata")).ok())
    .collect()
}

#[cfg(test)]
mod in_place_tests;
#[cfg(test)]
mod tests;
