//! Writing CTF 1.8 traces in the LTTng kernel layout: TSDL metadata text and packets.
//!
//! Nothing here touches files: [`tsdl::metadata_text`] returns the metadata
//! text and [`packet::PacketBuilder`] returns packet bytes with their
//! [`crate::index::IndexEntry`]; the caller decides where they go.

pub mod model;
pub mod packet;
pub mod tsdl;

pub use model::{
    Base, ClockParams, EnvValue, EventClassDesc, FieldDesc, FieldType, HeaderKind, IntType,
    TraceDesc, TracerIdentity, Uuid,
};
pub use packet::{
    EventEncoder, FinishedPacket, PacketBuilder, PacketConfig, PacketError, PacketStart,
    DEFAULT_CAPACITY,
};
pub use tsdl::metadata_text;
