//! What the relay needs before data: the page layout, the clock, the event
//! formats (the union of every format sent in this run, so that resent old
//! pages can always be decoded) or a replayed trace's TSDL text. The whole
//! set is sent again at the start of every connection.

use std::collections::BTreeMap;
use strata_wire::{
    Clock, Compression, CtfMetadata, FormatPurpose, FormatText, Formats, Message, MetadataDone,
    PageLayout, VmHints, WireError,
};

/// Formats are sent in messages of about this many bytes, well under any
/// relay's frame limit.
const FORMATS_CHUNK: usize = 256 << 10;

/// The metadata of one agent run.
#[derive(Debug, Clone, Default)]
pub struct MetadataState {
    /// The page layout (live).
    pub layout: Option<PageLayout>,
    /// The clock (live).
    pub clock: Option<Clock>,
    /// Every recorded event's format sent so far, by (system, name).
    pub recorded: BTreeMap<(String, String), FormatText>,
    /// Formats only used for their field names.
    pub argument_names: Vec<FormatText>,
    /// The TSDL text (replay).
    pub ctf: Option<String>,
    /// Bumped on every event-set change.
    pub generation: u32,
    /// CPUs (live) or stream instances (replay) that stream.
    pub cpus: Vec<u32>,
    /// The VMs the host runs, as last sent (live, when asked).
    pub vm_hints: Option<VmHints>,
}

impl MetadataState {
    /// Adds recorded formats; returns those that were not known yet.
    pub fn add_recorded(&mut self, formats: Vec<FormatText>) -> Vec<FormatText> {
        let mut new = Vec::new();
        for f in formats {
            let key = (f.system.clone(), f.name.clone());
            if self.recorded.get(&key) != Some(&f) {
                self.recorded.insert(key, f.clone());
                new.push(f);
            }
        }
        new
    }

    /// The full metadata burst, as frames back to back, ending with
    /// `MetadataDone`.
    pub fn frames(&self, compression: Compression) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        if let Some(tsdl) = &self.ctf {
            Message::CtfMetadata(CtfMetadata { tsdl: tsdl.clone() }).encode_into(
                0,
                compression,
                &mut scratch,
                &mut out,
            )?;
        }
        if let Some(l) = &self.layout {
            Message::PageLayout(l.clone()).encode_into(0, compression, &mut scratch, &mut out)?;
        }
        if let Some(c) = &self.clock {
            Message::Clock(c.clone()).encode_into(0, compression, &mut scratch, &mut out)?;
        }
        let recorded: Vec<FormatText> = self.recorded.values().cloned().collect();
        formats_frames(FormatPurpose::Recorded, &recorded, compression, &mut out)?;
        formats_frames(
            FormatPurpose::ArgumentNames,
            &self.argument_names,
            compression,
            &mut out,
        )?;
        if let Some(h) = &self.vm_hints {
            Message::VmHints(h.clone()).encode_into(0, compression, &mut scratch, &mut out)?;
        }
        self.done_frame(&mut out)?;
        Ok(out)
    }

    /// The `MetadataDone` frame for the current generation.
    pub fn done_frame(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        Message::MetadataDone(MetadataDone {
            generation: self.generation,
            cpus: self.cpus.clone(),
        })
        .encode_into(0, Compression::None, &mut Vec::new(), out)
    }
}

/// Encodes `formats` as `Formats` frames of bounded size.
pub fn formats_frames(
    purpose: FormatPurpose,
    formats: &[FormatText],
    compression: Compression,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let mut scratch = Vec::new();
    let mut chunk: Vec<FormatText> = Vec::new();
    let mut size = 0;
    for f in formats {
        size += f.system.len() + f.name.len() + f.text.len() + 12;
        chunk.push(f.clone());
        if size >= FORMATS_CHUNK {
            Message::Formats(Formats {
                purpose,
                formats: std::mem::take(&mut chunk),
            })
            .encode_into(0, compression, &mut scratch, out)?;
            size = 0;
        }
    }
    if !chunk.is_empty() {
        Message::Formats(Formats {
            purpose,
            formats: chunk,
        })
        .encode_into(0, compression, &mut scratch, out)?;
    }
    Ok(())
}
