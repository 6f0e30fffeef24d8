//! The metadata of one trace as the TSDL text declares it, with type aliases,
//! typedefs and named structs already expanded.

use strata_core::ClockDesc;

/// Byte order of a type or trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    /// The trace's byte order, whatever it turns out to be.
    Native,
    /// Little-endian.
    Le,
    /// Big-endian (`be` or `network`).
    Be,
}

/// Character encoding of strings and of integers used as characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Not text.
    None,
    /// UTF-8 text.
    Utf8,
    /// ASCII text.
    Ascii,
}

/// An integer type (`integer { ... }`).
#[derive(Debug, Clone, PartialEq)]
pub struct IntType {
    /// Size in bits, 1 to 64.
    pub size: u32,
    /// Alignment in bits (a power of two).
    pub align: u32,
    /// Two's complement signed.
    pub signed: bool,
    /// Byte order.
    pub byte_order: ByteOrder,
    /// Preferred display base: 2, 8, 10 or 16.
    pub base: u32,
    /// Text encoding when the integer is a character.
    pub encoding: Encoding,
    /// The clock this integer holds a value of (`map = clock.NAME.value`).
    pub map: Option<String>,
}

/// A floating point type (`floating_point { ... }`).
#[derive(Debug, Clone, PartialEq)]
pub struct FloatType {
    /// Exponent digits.
    pub exp_dig: u32,
    /// Mantissa digits, including the implicit bit.
    pub mant_dig: u32,
    /// Byte order.
    pub byte_order: ByteOrder,
    /// Alignment in bits.
    pub align: u32,
}

/// One label of an enumeration and the inclusive range of values it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct EnumMapping {
    /// The label.
    pub label: String,
    /// Lowest value.
    pub lo: i128,
    /// Highest value.
    pub hi: i128,
}

/// An enumeration over an integer type.
#[derive(Debug, Clone, PartialEq)]
pub struct EnumType {
    /// The container integer.
    pub int: IntType,
    /// The labels in declaration order.
    pub mappings: Vec<EnumMapping>,
}

/// A structure: named fields in order.
#[derive(Debug, Clone, PartialEq)]
pub struct StructType {
    /// Field names (as written, leading underscores kept) and types.
    pub fields: Vec<(String, Type)>,
    /// Minimum alignment in bits from `align(N)`; 1 when absent.
    pub min_align: u32,
}

/// A variant: one of several options, chosen by an enumeration tag.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantType {
    /// Path of the tag field, as written between `<` and `>`.
    pub tag: Option<String>,
    /// Options: names (matched against the tag's labels) and types.
    pub options: Vec<(String, Type)>,
}

/// Any TSDL type.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    /// An integer.
    Int(IntType),
    /// A floating point number.
    Float(FloatType),
    /// A NUL-terminated string.
    String(Encoding),
    /// An enumeration.
    Enum(EnumType),
    /// A structure.
    Struct(StructType),
    /// A variant.
    Variant(VariantType),
    /// A fixed-length array.
    Array {
        /// Element type.
        elem: Box<Type>,
        /// Number of elements.
        len: u64,
    },
    /// A sequence whose length another field holds.
    Sequence {
        /// Element type.
        elem: Box<Type>,
        /// Path of the length field, as written.
        length: String,
    },
}

/// A value of the `env` block.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvValue {
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
}

impl EnvValue {
    /// The value as a string, when it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            EnvValue::Str(s) => Some(s),
            EnvValue::Int(_) => None,
        }
    }
    /// The value as an integer, when it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            EnvValue::Int(v) => Some(*v),
            EnvValue::Str(_) => None,
        }
    }
}

impl std::fmt::Display for EnvValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvValue::Int(v) => write!(f, "{v}"),
            EnvValue::Str(s) => write!(f, "{s}"),
        }
    }
}

/// A `clock` block.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockDecl {
    /// Name, frequency and offsets.
    pub desc: ClockDesc,
    /// The clock's UUID, if declared.
    pub uuid: Option<[u8; 16]>,
    /// Whether the clock is absolute (comparable across hosts).
    pub absolute: bool,
}

/// A `stream` block.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamDecl {
    /// Stream class id; absent when the trace has a single stream class.
    pub id: Option<u64>,
    /// `packet.context`.
    pub packet_context: Option<Type>,
    /// `event.header`.
    pub event_header: Option<Type>,
    /// `event.context`.
    pub event_context: Option<Type>,
}

/// An `event` block.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventDecl {
    /// Event name, as a byte range of [`Metadata::event_names`]: one string
    /// for the thousand names of a trace rather than an allocation each.
    /// [`Metadata::event_name`] reads it.
    pub name: (u32, u32),
    /// Event class id within its stream class.
    pub id: Option<u64>,
    /// Stream class id.
    pub stream_id: Option<u64>,
    /// Log level, if declared.
    pub loglevel: Option<i64>,
    /// `context`. Boxed, as `fields`: a trace declares over a thousand
    /// events, most of whose types are parsed only at their first use.
    pub context: Option<Box<Type>>,
    /// `fields`.
    pub fields: Option<Box<Type>>,
}

/// Everything a trace's metadata declares.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metadata {
    /// CTF major version (1).
    pub major: Option<u64>,
    /// CTF minor version (8).
    pub minor: Option<u64>,
    /// The trace UUID that packet headers repeat.
    pub uuid: Option<[u8; 16]>,
    /// The trace's byte order; `Native` when the trace block gives none.
    pub byte_order: Option<ByteOrder>,
    /// `trace.packet.header`.
    pub packet_header: Option<Type>,
    /// The `env` block, in order.
    pub env: Vec<(String, EnvValue)>,
    /// Clocks.
    pub clocks: Vec<ClockDecl>,
    /// Stream classes.
    pub streams: Vec<StreamDecl>,
    /// Event classes.
    pub events: Vec<EventDecl>,
    /// The names of `events`, back to back (see [`EventDecl::name`]).
    pub event_names: String,
}

impl Metadata {
    /// The name of event `event` (an index into `events`); empty if there
    /// is no such event.
    pub fn event_name(&self, event: usize) -> &str {
        self.events.get(event).map_or("", |e| self.name_of(e))
    }
    /// The name of `e`, one of `events`.
    pub fn name_of(&self, e: &EventDecl) -> &str {
        let (a, b) = e.name;
        self.event_names.get(a as usize..b as usize).unwrap_or("")
    }
    /// Adds a name to `event_names`: its range, or `None` past 4 GiB.
    pub(crate) fn add_event_name(&mut self, name: &str) -> Option<(u32, u32)> {
        let a = u32::try_from(self.event_names.len()).ok()?;
        let b = u32::try_from(self.event_names.len() + name.len()).ok()?;
        self.event_names.push_str(name);
        Some((a, b))
    }
    /// The value of an `env` entry.
    pub fn env(&self, name: &str) -> Option<&EnvValue> {
        self.env.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}
