//! The small model a trace's metadata is written from: the trace identity, its
//! clock and environment, the event header, and the event classes with their
//! fields.
//!
//! The model says nothing about bytes on disk; [`super::tsdl`] turns it into
//! TSDL text and [`super::packet`] lays events out to match it.

use strata_core::{ClockDesc, HostInfo};

/// A 128-bit UUID, stored as its 16 bytes in the order it is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// Parses the canonical `8-4-4-4-12` hex form (as in
    /// `/proc/sys/kernel/random/boot_id`). Case and surrounding whitespace are
    /// ignored.
    pub fn parse(text: &str) -> Option<Uuid> {
        let hex: Vec<u8> = text.trim().bytes().filter(|&b| b != b'-').collect();
        if hex.len() != 32 || text.trim().len() != 36 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let s = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some(Uuid(out))
    }

    /// A UUID made from `seed` bytes with a fixed mixing function, marked as
    /// version 4 / RFC 4122 variant. Deterministic, for when a stable id is
    /// wanted (a clock UUID derived from a boot id, tests).
    pub fn derive(seed: &[u8]) -> Uuid {
        // Two independent FNV-1a style lanes give 128 bits; good enough for an
        // identifier that only has to differ between different seeds.
        let mut a: u64 = 0xcbf2_9ce4_8422_2325;
        let mut b: u64 = 0x8422_2325_cbf2_9ce4;
        for &byte in seed {
            a = (a ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3);
            b = (b ^ byte as u64)
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(7);
        }
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&a.to_be_bytes());
        out[8..].copy_from_slice(&b.to_be_bytes());
        out[6] = (out[6] & 0x0f) | 0x40;
        out[8] = (out[8] & 0x3f) | 0x80;
        Uuid(out)
    }
}

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Display base of an integer, as readers should print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// Decimal.
    Dec,
    /// Hexadecimal (addresses, flags).
    Hex,
}

/// A CTF integer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntType {
    /// Width in bits: 8, 16, 32 or 64 for event fields.
    pub bits: u8,
    /// Whether the value is two's-complement signed.
    pub signed: bool,
    /// Alignment in bits (8 = byte-aligned, as LTTng writes on x86-64).
    pub align: u8,
    /// How readers should print it.
    pub base: Base,
    /// Whether the bytes are UTF-8 text (`char` arrays).
    pub utf8: bool,
}

impl IntType {
    /// A byte-aligned decimal integer of `bits` bits.
    pub const fn new(bits: u8, signed: bool) -> IntType {
        IntType {
            bits,
            signed,
            align: 8,
            base: Base::Dec,
            utf8: false,
        }
    }

    /// A byte-aligned unsigned hexadecimal integer (pointers, flags).
    pub const fn hex(bits: u8) -> IntType {
        IntType {
            bits,
            signed: false,
            align: 8,
            base: Base::Hex,
            utf8: false,
        }
    }

    /// The element type of a text array (`char comm[16]`).
    pub const fn text_char() -> IntType {
        IntType {
            bits: 8,
            signed: false,
            align: 8,
            base: Base::Dec,
            utf8: true,
        }
    }

    /// Width in bytes.
    pub fn bytes(&self) -> usize {
        (self.bits as usize).div_ceil(8)
    }
}

/// The type of one event field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// An integer.
    Int(IntType),
    /// A NUL-terminated UTF-8 string.
    String,
    /// A fixed-length array (`char comm[16]` when the element is text).
    Array {
        /// The element type.
        elem: IntType,
        /// Number of elements.
        len: u32,
    },
    /// A variable-length array whose length is an earlier integer field of the
    /// same event.
    Sequence {
        /// The element type.
        elem: IntType,
        /// The name (without the TSDL `_` prefix) of the length field.
        length_field: String,
    },
    /// An integer whose values have names.
    Enum {
        /// The container integer.
        int: IntType,
        /// `(label, first, last)` value ranges.
        mappings: Vec<(String, i64, i64)>,
    },
}

/// One named field of an event payload or context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDesc {
    /// The field name as readers show it, without the TSDL `_` prefix.
    pub name: String,
    /// Its type.
    pub ty: FieldType,
}

impl FieldDesc {
    /// A field of type `ty` named `name`.
    pub fn new(name: impl Into<String>, ty: FieldType) -> FieldDesc {
        FieldDesc {
            name: name.into(),
            ty,
        }
    }

    /// An integer field.
    pub fn int(name: impl Into<String>, int: IntType) -> FieldDesc {
        FieldDesc::new(name, FieldType::Int(int))
    }

    /// A `char name[len]` text field.
    pub fn text(name: impl Into<String>, len: u32) -> FieldDesc {
        FieldDesc::new(
            name,
            FieldType::Array {
                elem: IntType::text_char(),
                len,
            },
        )
    }

    /// A string field.
    pub fn string(name: impl Into<String>) -> FieldDesc {
        FieldDesc::new(name, FieldType::String)
    }
}

/// One event class: what an event of this id is called and carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventClassDesc {
    /// The numeric id written in each event header.
    pub id: u32,
    /// The event name (`sched_switch`).
    pub name: String,
    /// The payload fields, in order.
    pub fields: Vec<FieldDesc>,
}

/// The event header layouts LTTng defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    /// A 5-bit id and 27-bit timestamp in one u32; for up to 31 classes.
    Compact,
    /// A u16 id and u32 timestamp; for up to 65535 classes.
    Large,
}

impl HeaderKind {
    /// The header LTTng would pick for event ids up to `max_id`: compact when
    /// every id fits in its 5-bit field (below 31), large otherwise.
    pub fn for_max_id(max_id: u32) -> HeaderKind {
        if max_id < 31 {
            HeaderKind::Compact
        } else {
            HeaderKind::Large
        }
    }

    /// Bits of the short timestamp.
    pub fn short_ts_bits(self) -> u32 {
        match self {
            HeaderKind::Compact => 27,
            HeaderKind::Large => 32,
        }
    }

    /// The id value that selects the extended form.
    pub fn extended_id(self) -> u32 {
        match self {
            HeaderKind::Compact => 31,
            HeaderKind::Large => 65535,
        }
    }
}

/// The clock every stream of the trace is timestamped with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockParams {
    /// Name, frequency and epoch offset.
    pub desc: ClockDesc,
    /// The clock's UUID: traces sharing it share a time base. LTTng uses the
    /// boot id for `monotonic`.
    pub uuid: Uuid,
    /// Uncertainty of a value, in cycles.
    pub precision: u64,
    /// Whether the clock is a global reference (wall time) that can be
    /// compared across hosts without correlation.
    pub absolute: bool,
}

impl ClockParams {
    /// Clock parameters for `desc`: the UUID is derived from the host's boot
    /// id (so two traces of one boot agree), `precision` is 0 and `absolute`
    /// is set only for wall clocks (`realtime`, `tai`).
    pub fn for_host(desc: &ClockDesc, host: &HostInfo) -> ClockParams {
        let uuid = match Uuid::parse(&host.boot_id) {
            Some(boot) if desc.name == "monotonic" => boot,
            Some(boot) => {
                let mut seed = boot.0.to_vec();
                seed.extend_from_slice(desc.name.as_bytes());
                Uuid::derive(&seed)
            }
            None => Uuid::derive(
                format!("{}/{}/{}", host.hostname, host.machine_id, desc.name).as_bytes(),
            ),
        };
        ClockParams {
            desc: desc.clone(),
            uuid,
            precision: 0,
            absolute: matches!(desc.name.as_str(), "realtime" | "tai"),
        }
    }
}

/// Who wrote the trace, as the `env` block tells readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracerIdentity {
    /// `tracer_name`.
    pub name: String,
    /// `tracer_major`.
    pub major: u32,
    /// `tracer_minor`.
    pub minor: u32,
    /// `tracer_patchlevel`.
    pub patchlevel: u32,
}

/// A value of the `env` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// A quoted string.
    Str(String),
    /// An integer.
    Int(i64),
}

/// Everything the metadata of one trace says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceDesc {
    /// The trace UUID, also written in every packet header.
    pub uuid: Uuid,
    /// The traced host (hostname, kernel) for `env`.
    pub host: HostInfo,
    /// The tracer identity for `env`.
    pub tracer: TracerIdentity,
    /// More `env` entries, written after the standard ones.
    pub extra_env: Vec<(String, EnvValue)>,
    /// The clock.
    pub clock: ClockParams,
    /// The event header layout of the (single) stream class.
    pub header: HeaderKind,
    /// Stream event context fields written after every event header (LTTng's
    /// `add-context`), empty for none.
    pub event_context: Vec<FieldDesc>,
    /// The event classes.
    pub events: Vec<EventClassDesc>,
}

impl TraceDesc {
    /// The largest event class id, 0 when there are none.
    pub fn max_event_id(&self) -> u32 {
        self.events.iter().map(|e| e.id).max().unwrap_or(0)
    }
}
