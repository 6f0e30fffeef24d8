//! The agent-relay wire protocol: a pure codec, no I/O.
//!
//! An agent opens a TCP (normally TLS) connection to a relay and sends
//! frames: a [`Hello`], then metadata ([`PageLayout`], [`Clock`],
//! [`Formats`] or [`CtfMetadata`], closed by [`MetadataDone`]), then
//! sequenced data ([`Pages`], [`Packets`], [`Lost`], [`Statedump`]). The
//! relay answers [`Welcome`] (or [`Refused`]), acknowledges data
//! cumulatively with [`Ack`] and may send [`Control`] commands. Either side
//! sends a [`Heartbeat`] when it has been quiet. `docs/protocol.md` is the
//! full specification.
//!
//! - [`frame`]: the 32-byte frame header, checksums, compression, and the
//!   streaming [`FrameDecoder`] that takes bytes in pieces of any size.
//! - [`message`]: every message and its body encoding.
//! - [`batch`]: zero-copy views of page and packet batches, and builders.
//!
//! ```
//! use strata_wire::{Ack, Compression, FrameDecoder, Message, DEFAULT_MAX_BODY};
//! let bytes = Message::Ack(Ack { seq: 7 }).encode(0, Compression::None)?;
//! let mut dec = FrameDecoder::new(DEFAULT_MAX_BODY);
//! dec.feed(&bytes[..10]);
//! assert!(dec.next_frame()?.is_none());
//! assert_eq!(dec.needed()?, 22);
//! dec.feed(&bytes[10..]);
//! let frame = dec.next_frame()?.expect("a whole frame");
//! assert_eq!(frame.message()?, Message::Ack(Ack { seq: 7 }));
//! # Ok::<(), strata_wire::WireError>(())
//! ```

#![warn(missing_docs)]

pub mod batch;
mod body;
pub mod error;
pub mod frame;
pub mod message;
pub mod vm_hints;

pub use batch::{
    PacketBatch, PacketEntries, PacketIter, PageBatch, PageEntries, PageIter, PACKET_INFO_LEN,
};
pub use error::WireError;
pub use frame::{
    decompress, encode_frame, parse_header, split_frame, Compression, Frame, FrameDecoder,
    FrameHeader, Split, DEFAULT_MAX_BODY, FRAME_VERSION, HEADER_LEN, MAGIC, MAX_BODY,
};
pub use message::{
    is_sequenced, kind, kind_name, Ack, Clock, Control, ControlCommand, ControlResult, CtfMetadata,
    FormatPurpose, FormatText, Formats, Goodbye, Heartbeat, Hello, LossCause, Lost, Message,
    MetadataDone, PacketInfo, Packets, PageLayout, Pages, RefuseCode, Refused, Source, Statedump,
    ThreadRow, Welcome, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, THREAD_ROW_LEN,
};
pub use vm_hints::{VcpuThread, VmHintEntry, VmHints, MAX_VM_HINTS, MAX_VM_HINT_VCPUS};
