//! Parser for tracefs `events/<group>/<event>/format` files, and field accessors.
//!
//! A format file names an event, gives its numeric id (the `common_type` of its
//! records), and lists every field with its byte offset and size in the record.
//! Parsing happens once per event type; the resulting [`FieldAccessor`]s read a
//! field out of a record with no lookup and no allocation.
//!
//! Records are read as little-endian: Strata records x86-64 and arm64 hosts.

use thiserror::Error;

/// Formats larger than this are refused: real ones are a few KiB.
pub const MAX_FORMAT_LEN: usize = 1 << 20;

/// Fields larger than this are refused: the kernel caps a record at a page.
const MAX_FIELD_SIZE: u32 = 1 << 16;

/// Why a format file could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    /// The text is larger than [`MAX_FORMAT_LEN`].
    #[error("format text is {0} bytes, larger than the {MAX_FORMAT_LEN}-byte limit")]
    TooLarge(usize),
    /// A required header line (`name:` or `ID:`) is missing.
    #[error("format has no `{0}:` line")]
    Missing(&'static str),
    /// A line could not be understood.
    #[error("format line {line}: {reason}: `{text}`")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
        /// The offending line, trimmed.
        text: String,
    },
}

/// How a field's bytes are laid out in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A scalar integer (also pointers, `bool`, enums) of `size` bytes.
    Int,
    /// `char name[N]`: a NUL-padded string of fixed size.
    CharArray,
    /// `T name[N]`: `size / elem_size` elements of `elem_size` bytes.
    Array {
        /// Bytes per element.
        elem_size: u32,
    },
    /// `__data_loc T[] name`: a u32 `len << 16 | offset`, where `offset` counts
    /// from the start of the record.
    DataLoc {
        /// Bytes per element (1 for `char[]`).
        elem_size: u32,
        /// Whether the element type is `char`, so the data is a string.
        is_char: bool,
    },
    /// `__rel_loc T[] name`: like `DataLoc`, but `offset` counts from the end of
    /// the 4-byte field itself.
    RelLoc {
        /// Bytes per element (1 for `char[]`).
        elem_size: u32,
        /// Whether the element type is `char`, so the data is a string.
        is_char: bool,
    },
    /// `T name[]` with size 0: a flexible array running to the end of the record.
    Flexible {
        /// Bytes per element.
        elem_size: u32,
    },
}

/// One field of an event, as its format file declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field name (`prev_pid`).
    pub name: String,
    /// The C element type as written (`pid_t`, `unsigned long`, `char`).
    pub c_type: String,
    /// Byte offset in the record.
    pub offset: u32,
    /// Size in bytes in the record (4 for dynamic fields).
    pub size: u32,
    /// Whether the element type is signed.
    pub signed: bool,
    /// The layout.
    pub kind: FieldKind,
}

impl Field {
    /// The accessor that reads this field from records.
    pub fn accessor(&self) -> FieldAccessor {
        FieldAccessor {
            offset: self.offset,
            size: self.size,
            signed: self.signed,
            kind: self.kind,
        }
    }

    /// Number of elements for fixed arrays, `None` for other kinds.
    pub fn array_len(&self) -> Option<u32> {
        match self.kind {
            FieldKind::CharArray => Some(self.size),
            FieldKind::Array { elem_size } => Some(self.size / elem_size),
            _ => None,
        }
    }
}

/// An event type, as its format file declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFormat {
    /// The group (`sched`); not in the file itself, set by the caller.
    pub system: String,
    /// The event name (`sched_switch`).
    pub name: String,
    /// The id that records of this event carry in `common_type`.
    pub id: u16,
    /// The `common_*` fields every event shares.
    pub common: Vec<Field>,
    /// The event's own fields, in record order.
    pub fields: Vec<Field>,
    /// The `print fmt:` text, kept for display.
    pub print_fmt: String,
}

impl EventFormat {
    /// The event's own field named `name`, or a common field (`common_pid`).
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .chain(self.common.iter())
            .find(|f| f.name == name)
    }

    /// The smallest record size that holds every fixed part of every field.
    pub fn min_record_len(&self) -> u32 {
        self.common
            .iter()
            .chain(self.fields.iter())
            .map(|f| f.offset + f.size)
            .max()
            .unwrap_or(0)
    }
}

/// Reads one field out of a record. Resolved once per event type from a
/// [`Field`], then used on every record of that type.
///
/// Every read checks bounds and returns `None` when the record is too short or
/// a dynamic location points outside it, so corrupt records cannot cause a
/// panic or an out-of-bounds read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldAccessor {
    offset: u32,
    size: u32,
    signed: bool,
    kind: FieldKind,
}

impl FieldAccessor {
    /// The field's layout.
    pub fn kind(&self) -> FieldKind {
        self.kind
    }

    /// The field's size in the record, in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Whether the element type is signed.
    pub fn signed(&self) -> bool {
        self.signed
    }

    fn fixed<'r>(&self, rec: &'r [u8]) -> Option<&'r [u8]> {
        let start = self.offset as usize;
        rec.get(start..start + self.size as usize)
    }

    /// The raw value of an integer field, zero-extended to 64 bits.
    #[inline]
    pub fn u64(&self, rec: &[u8]) -> Option<u64> {
        if self.kind != FieldKind::Int {
            return None;
        }
        read_le(self.fixed(rec)?)
    }

    /// The value of an integer field, sign-extended when the field is signed.
    #[inline]
    pub fn i64(&self, rec: &[u8]) -> Option<i64> {
        let raw = self.u64(rec)?;
        Some(extend(raw, self.size, self.signed))
    }

    /// The bytes of an array or dynamic field (for `Int`, the integer's bytes).
    pub fn bytes<'r>(&self, rec: &'r [u8]) -> Option<&'r [u8]> {
        match self.kind {
            FieldKind::Int | FieldKind::CharArray | FieldKind::Array { .. } => self.fixed(rec),
            FieldKind::Flexible { .. } => rec.get(self.offset as usize..),
            FieldKind::DataLoc { .. } | FieldKind::RelLoc { .. } => {
                let loc = u32::from_le_bytes(self.fixed(rec)?.try_into().ok()?);
                let len = (loc >> 16) as usize;
                let mut start = (loc & 0xffff) as usize;
                if matches!(self.kind, FieldKind::RelLoc { .. }) {
                    start += self.offset as usize + self.size as usize;
                }
                rec.get(start..start.checked_add(len)?)
            }
        }
    }

    /// A string field (`char[N]` or dynamic `char[]`), up to its first NUL.
    pub fn str<'r>(&self, rec: &'r [u8]) -> Option<&'r [u8]> {
        let b = self.bytes(rec)?;
        Some(b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n]))
    }

    /// Element `i` of an integer array (fixed or dynamic), extended per signedness.
    pub fn element(&self, rec: &[u8], i: usize) -> Option<i64> {
        let elem = match self.kind {
            FieldKind::Array { elem_size } | FieldKind::Flexible { elem_size } => elem_size,
            FieldKind::DataLoc { elem_size, .. } | FieldKind::RelLoc { elem_size, .. } => elem_size,
            FieldKind::CharArray => 1,
            FieldKind::Int => return None,
        } as usize;
        let b = self.bytes(rec)?;
        let start = i.checked_mul(elem)?;
        let raw = read_le(b.get(start..start.checked_add(elem)?)?)?;
        Some(extend(raw, elem as u32, self.signed))
    }
}

#[inline]
fn read_le(b: &[u8]) -> Option<u64> {
    Some(match b.len() {
        1 => b[0] as u64,
        2 => u16::from_le_bytes([b[0], b[1]]) as u64,
        4 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64,
        8 => u64::from_le_bytes(b.try_into().ok()?),
        _ => return None,
    })
}

#[inline]
fn extend(raw: u64, size: u32, signed: bool) -> i64 {
    if !signed || size >= 8 {
        return raw as i64;
    }
    let shift = 64 - size * 8;
    ((raw << shift) as i64) >> shift
}

/// Parses a format file. `system` is the event's group, which the file does not
/// name.
pub fn parse(system: &str, text: &str) -> Result<EventFormat, FormatError> {
    if text.len() > MAX_FORMAT_LEN {
        return Err(FormatError::TooLarge(text.len()));
    }
    let mut name = None;
    let mut id = None;
    let mut common = Vec::new();
    let mut fields = Vec::new();
    let mut print_fmt = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let bad = |reason| FormatError::BadLine {
            line: i + 1,
            reason,
            text: line.chars().take(200).collect(),
        };
        if let Some(v) = line.strip_prefix("name:") {
            name = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("ID:") {
            id = Some(v.trim().parse::<u16>().map_err(|_| bad("bad event id"))?);
        } else if let Some(v) = line.strip_prefix("print fmt:") {
            print_fmt = v.trim().to_string();
        } else if line.starts_with("field") {
            let f = parse_field(line).map_err(bad)?;
            if f.name.starts_with("common_") {
                common.push(f);
            } else {
                fields.push(f);
            }
        }
    }
    Ok(EventFormat {
        system: system.to_string(),
        name: name.ok_or(FormatError::Missing("name"))?,
        id: id.ok_or(FormatError::Missing("ID"))?,
        common,
        fields,
        print_fmt,
    })
}

/// Parses `field:TYPE NAME[N];\toffset:N;\tsize:N;\tsigned:N;`.
fn parse_field(line: &str) -> Result<Field, &'static str> {
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    let mut signed = None;
    for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once(':').ok_or("a part has no `:`")?;
        let value = value.trim();
        let num = || value.parse::<u32>().map_err(|_| "a number does not parse");
        match key.trim() {
            // `field special:` marks fields of the ftrace group with their own layout.
            "field" | "field special" => decl = Some(value),
            "offset" => offset = Some(num()?),
            "size" => size = Some(num()?),
            "signed" => signed = Some(num()? != 0),
            _ => {}
        }
    }
    let decl = decl.ok_or("no field declaration")?;
    let offset = offset.ok_or("no offset")?;
    let size = size.ok_or("no size")?;
    if size > MAX_FIELD_SIZE || offset > MAX_FIELD_SIZE {
        return Err("offset or size out of range");
    }
    let (c_type, name, array) = split_declaration(decl)?;
    let signed = signed.unwrap_or(false);
    let is_char = matches!(c_type.as_str(), "char" | "signed char" | "unsigned char");
    let elem_size = elem_size_of(&c_type);
    let kind = if let Some(rest) = c_type.strip_prefix("__data_loc ") {
        let t = rest.trim();
        FieldKind::DataLoc {
            elem_size: elem_size_of(t).unwrap_or(1),
            is_char: t == "char",
        }
    } else if let Some(rest) = c_type.strip_prefix("__rel_loc ") {
        let t = rest.trim();
        FieldKind::RelLoc {
            elem_size: elem_size_of(t).unwrap_or(1),
            is_char: t == "char",
        }
    } else {
        match array {
            None => FieldKind::Int,
            Some(None) if size == 0 => FieldKind::Flexible {
                elem_size: elem_size.unwrap_or(1),
            },
            Some(_) if is_char => FieldKind::CharArray,
            Some(n) => {
                // The element size comes from the declared size and count when
                // known; a symbolic count (`[TASK_COMM_LEN]`) falls back to the type.
                let elem = match n {
                    Some(n) if n > 0 && size % n == 0 => size / n,
                    _ => elem_size.ok_or("array of unknown element size")?,
                };
                if elem == 0 {
                    return Err("zero-sized array element");
                }
                FieldKind::Array { elem_size: elem }
            }
        }
    };
    if matches!(kind, FieldKind::DataLoc { .. } | FieldKind::RelLoc { .. }) && size != 4 {
        return Err("dynamic location fields must be 4 bytes");
    }
    Ok(Field {
        name,
        c_type: c_type
            .trim_start_matches("__data_loc ")
            .trim_start_matches("__rel_loc ")
            .to_string(),
        offset,
        size,
        signed,
        kind,
    })
}

/// Splits `unsigned long args[6]` into (`unsigned long`, `args`, Some(Some(6))).
/// `__data_loc char[] name` keeps `[]` in the type: (`__data_loc char`, `name`, None).
type Declaration = (String, String, Option<Option<u32>>);

fn split_declaration(decl: &str) -> Result<Declaration, &'static str> {
    let decl = decl.trim();
    let is_dyn = decl.starts_with("__data_loc") || decl.starts_with("__rel_loc");
    let (head, array) = match decl.strip_suffix(']') {
        Some(d) if !is_dyn => {
            let open = d.rfind('[').ok_or("unbalanced `]`")?;
            (&d[..open], Some(d[open + 1..].trim().parse::<u32>().ok()))
        }
        _ => (decl, None),
    };
    let split = head
        .rfind(|c: char| c.is_whitespace() || c == '*')
        .ok_or("a field needs a type and a name")?;
    let name = head[split + 1..].trim();
    let mut c_type = head[..=split].trim().replace("[]", "");
    c_type = c_type.trim().to_string();
    if name.is_empty() || c_type.is_empty() {
        return Err("a field needs a type and a name");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err("a field name has characters other than [A-Za-z0-9_]");
    }
    Ok((c_type, name.to_string(), array))
}

/// The byte size of a C element type, where the name tells it.
fn elem_size_of(c_type: &str) -> Option<u32> {
    let t = c_type
        .trim()
        .trim_start_matches("const ")
        .trim_start_matches("volatile ");
    if t.ends_with('*') {
        return Some(8);
    }
    Some(match t {
        "char" | "signed char" | "unsigned char" | "u8" | "s8" | "__u8" | "__s8" | "bool" => 1,
        "short" | "unsigned short" | "u16" | "s16" | "__u16" | "__s16" => 2,
        "int" | "unsigned int" | "unsigned" | "u32" | "s32" | "__u32" | "__s32" | "pid_t"
        | "uid_t" | "gid_t" => 4,
        "long" | "unsigned long" | "long long" | "unsigned long long" | "u64" | "s64" | "__u64"
        | "__s64" | "size_t" | "loff_t" => 8,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHED_SWITCH: &str = "name: sched_switch
ID: 372
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prev_prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:char next_comm[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;
\tfield:int next_prio;\toffset:60;\tsize:4;\tsigned:1;

print fmt: \"prev_comm=%s\", REC->prev_comm
";

    #[test]
    fn parses_sched_switch() {
        let f = parse("sched", SCHED_SWITCH).unwrap();
        assert_eq!(f.name, "sched_switch");
        assert_eq!(f.id, 372);
        assert_eq!(f.common.len(), 4);
        assert_eq!(f.fields.len(), 7);
        let comm = f.field("prev_comm").unwrap();
        assert_eq!(comm.kind, FieldKind::CharArray);
        assert_eq!(comm.array_len(), Some(16));
        let pid = f.field("prev_pid").unwrap();
        assert_eq!((pid.offset, pid.size, pid.signed), (24, 4, true));
        assert_eq!(pid.c_type, "pid_t");
        assert_eq!(f.min_record_len(), 64);
        assert_eq!(f.print_fmt, "\"prev_comm=%s\", REC->prev_comm");
    }

    #[test]
    fn accessors_read_values() {
        let f = parse("sched", SCHED_SWITCH).unwrap();
        let mut rec = vec![0u8; 64];
        rec[8..13].copy_from_slice(b"bash\0");
        rec[24..28].copy_from_slice(&(-5i32).to_le_bytes());
        rec[32..40].copy_from_slice(&0x1234u64.to_le_bytes());
        assert_eq!(
            f.field("prev_comm").unwrap().accessor().str(&rec),
            Some(&b"bash"[..])
        );
        let pid = f.field("prev_pid").unwrap().accessor();
        assert_eq!(pid.i64(&rec), Some(-5));
        assert_eq!(pid.u64(&rec), Some(0xffff_fffb));
        assert_eq!(
            f.field("prev_state").unwrap().accessor().i64(&rec),
            Some(0x1234)
        );
        // Too short: no panic, no value.
        assert_eq!(pid.i64(&rec[..26]), None);
    }

    #[test]
    fn arrays_and_dynamic_fields() {
        let text = "name: x\nID: 7\nformat:\n\
            \tfield:unsigned long args[6];\toffset:8;\tsize:48;\tsigned:0;\n\
            \tfield:__data_loc char[] name;\toffset:56;\tsize:4;\tsigned:0;\n\
            \tfield:__rel_loc u64[] addrs;\toffset:60;\tsize:4;\tsigned:0;\n\
            \tfield:__u8 saddr[4];\toffset:64;\tsize:4;\tsigned:0;\n\
            \tfield:u32 buf[];\toffset:64;\tsize:0;\tsigned:0;\n";
        let f = parse("g", text).unwrap();
        let args = f.field("args").unwrap();
        assert_eq!(args.kind, FieldKind::Array { elem_size: 8 });
        assert_eq!(args.array_len(), Some(6));
        assert_eq!(
            f.field("name").unwrap().kind,
            FieldKind::DataLoc {
                elem_size: 1,
                is_char: true
            }
        );
        assert_eq!(f.field("name").unwrap().c_type, "char");
        assert_eq!(
            f.field("addrs").unwrap().kind,
            FieldKind::RelLoc {
                elem_size: 8,
                is_char: false
            }
        );
        assert_eq!(
            f.field("saddr").unwrap().kind,
            FieldKind::Array { elem_size: 1 }
        );

        let mut rec = vec![0u8; 68];
        rec[8 + 8..8 + 16].copy_from_slice(&42u64.to_le_bytes());
        // name: 3 bytes at offset 68 from the record start.
        rec[56..60].copy_from_slice(&((4u32 << 16) | 68).to_le_bytes());
        // addrs: 8 bytes starting 8 bytes after the end of the field (64 + 8 = 72).
        rec[60..64].copy_from_slice(&((8u32 << 16) | 8).to_le_bytes());
        rec.extend_from_slice(b"abc\0");
        rec.extend_from_slice(&7u64.to_le_bytes());
        assert_eq!(args.accessor().element(&rec, 1), Some(42));
        assert_eq!(args.accessor().element(&rec, 6), None);
        assert_eq!(
            f.field("name").unwrap().accessor().str(&rec),
            Some(&b"abc"[..])
        );
        assert_eq!(
            f.field("addrs").unwrap().accessor().element(&rec, 0),
            Some(7)
        );
        let tail = f.field("buf").unwrap();
        assert_eq!(tail.kind, FieldKind::Flexible { elem_size: 4 });
        assert_eq!(
            tail.accessor().bytes(&rec).map(<[u8]>::len),
            Some(rec.len() - 64)
        );
        // A location past the end reads as None.
        rec[56..60].copy_from_slice(&((200u32 << 16) | 68).to_le_bytes());
        assert_eq!(f.field("name").unwrap().accessor().bytes(&rec), None);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse("g", "ID: 3\n"), Err(FormatError::Missing("name")));
        assert!(matches!(
            parse("g", "name: a\nID: 99999\n"),
            Err(FormatError::BadLine { line: 2, .. })
        ));
        assert!(matches!(
            parse("g", "name: a\nID: 1\n\tfield:int x;\toffset:zz;\tsize:4;\n"),
            Err(FormatError::BadLine { line: 3, .. })
        ));
        assert!(matches!(
            parse(
                "g",
                "name: a\nID: 1\n\tfield:__data_loc char[] s;\toffset:8;\tsize:8;\tsigned:0;\n"
            ),
            Err(FormatError::BadLine { .. })
        ));
    }
}
