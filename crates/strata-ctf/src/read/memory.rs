//! Decoding from bytes already in memory: compiled metadata and a reader
//! over one stream's packets, with no files involved. This is what a live
//! relay feeds received packets through, and what tests use to decode
//! crafted bytes.

use std::path::Path;
use std::sync::Arc;

use super::class::{compile, EventClass, Shared, TracePlan};
use super::cursor::{Cursor, Source};
use super::error::ReadError;
use super::event::Event;
use super::tsdl::{self, Metadata, MetadataError};

/// A trace's metadata, parsed and compiled into decode plans.
pub struct TraceClass {
    shared: Arc<Shared>,
    plan: TracePlan,
    classes: Vec<EventClass>,
}

impl TraceClass {
    /// Parses and compiles metadata bytes (plain text or packetized).
    pub fn from_metadata(bytes: &[u8]) -> Result<TraceClass, MetadataError> {
        let metadata = tsdl::parse(bytes)?;
        let (plan, classes, shared) = compile(metadata, 0, 0, 0)?;
        Ok(TraceClass {
            shared,
            plan,
            classes,
        })
    }

    /// The parsed metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.shared.md
    }

    /// The event classes; their indices start at 0.
    pub fn event_classes(&self) -> &[EventClass] {
        &self.classes
    }

    /// Reads the events of one stream held in `data`: whole packets back to
    /// back. `name` appears in errors. Events come in stream order.
    pub fn stream<'a>(
        &'a self,
        name: &'a Path,
        data: &'a [u8],
        skip_corrupt: bool,
    ) -> StreamReader<'a> {
        let src = Source {
            path: name,
            data,
            release: None,
        };
        StreamReader {
            cursor: Cursor::new(
                &self.plan,
                &self.classes,
                0,
                0,
                0,
                vec![src],
                skip_corrupt,
                Default::default(),
            ),
        }
    }
}

/// The events of one in-memory stream, in order: a lending iterator.
pub struct StreamReader<'a> {
    cursor: Cursor<'a>,
}

impl StreamReader<'_> {
    /// The next event; `None` at the end. After an error (without
    /// `skip_corrupt`) the stream is finished.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Event<'_>, ReadError>> {
        match self.cursor.advance() {
            Ok(true) => Some(Ok(Event { c: &self.cursor })),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// What `skip_corrupt` skipped so far.
    pub fn skipped(&self) -> super::SkipStats {
        self.cursor.stats
    }
}
