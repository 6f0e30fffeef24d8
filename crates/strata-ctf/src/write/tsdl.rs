//! TSDL emission: the text of a trace's `metadata` file, laid out as LTTng's
//! kernel tracer writes it (same typealiases, packet context and event
//! headers), so readers that special-case LTTng traces accept ours.

use std::fmt::Write;

use super::model::{Base, EnvValue, FieldDesc, FieldType, HeaderKind, IntType, TraceDesc};

/// The CTF version the text declares.
pub const CTF_VERSION: (u32, u32) = (1, 8);

/// The id of the single stream class.
pub const STREAM_ID: u32 = 0;

/// Renders the whole metadata text of `desc` (plain text, not packetized).
pub fn metadata_text(desc: &TraceDesc) -> String {
    let mut out = String::with_capacity(4096 + desc.events.len() * 400);
    // `write!` into a String cannot fail; the results are ignored on purpose.
    let _ = write_metadata(&mut out, desc);
    out
}

fn write_metadata(out: &mut String, desc: &TraceDesc) -> std::fmt::Result {
    let clock = &desc.clock.desc.name;
    writeln!(out, "/* CTF {}.{} */", CTF_VERSION.0, CTF_VERSION.1)?;
    writeln!(out)?;
    out.push_str(
        "typealias integer { size = 8; align = 8; signed = false; } := uint8_t;\n\
         typealias integer { size = 16; align = 8; signed = false; } := uint16_t;\n\
         typealias integer { size = 32; align = 8; signed = false; } := uint32_t;\n\
         typealias integer { size = 64; align = 8; signed = false; } := uint64_t;\n\
         typealias integer { size = 64; align = 8; signed = false; } := unsigned long;\n\
         typealias integer { size = 5; align = 1; signed = false; } := uint5_t;\n\
         typealias integer { size = 27; align = 1; signed = false; } := uint27_t;\n",
    );
    // Event fields refer to short aliases rather than repeating the full
    // integer declaration: with every syscall declared, the full form makes
    // the metadata several times larger.
    let mut ints: Vec<IntType> = Vec::new();
    for f in desc
        .event_context
        .iter()
        .chain(desc.events.iter().flat_map(|e| e.fields.iter()))
    {
        let int = match &f.ty {
            FieldType::Int(i) => i,
            FieldType::Array { elem, .. } | FieldType::Sequence { elem, .. } => elem,
            FieldType::Enum { int, .. } => int,
            FieldType::String => continue,
        };
        if !ints.contains(int) {
            ints.push(*int);
        }
    }
    for int in &ints {
        writeln!(out, "typealias {} := {};", int_decl(int), alias(int))?;
    }
    out.push('\n');
    writeln!(out, "trace {{")?;
    writeln!(out, "\tmajor = {};", CTF_VERSION.0)?;
    writeln!(out, "\tminor = {};", CTF_VERSION.1)?;
    writeln!(out, "\tuuid = \"{}\";", desc.uuid)?;
    writeln!(out, "\tbyte_order = le;")?;
    out.push_str(
        "\tpacket.header := struct {\n\
         \t\tuint32_t magic;\n\
         \t\tuint8_t  uuid[16];\n\
         \t\tuint32_t stream_id;\n\
         \t\tuint64_t stream_instance_id;\n\
         \t};\n};\n\n",
    );

    writeln!(out, "env {{")?;
    let h = &desc.host;
    let t = &desc.tracer;
    let standard = [
        ("hostname", EnvValue::Str(h.hostname.clone())),
        ("domain", EnvValue::Str("kernel".into())),
        ("sysname", EnvValue::Str(h.sysname.clone())),
        ("kernel_release", EnvValue::Str(h.kernel_release.clone())),
        ("kernel_version", EnvValue::Str(h.kernel_version.clone())),
        ("tracer_name", EnvValue::Str(t.name.clone())),
        ("tracer_major", EnvValue::Int(t.major as i64)),
        ("tracer_minor", EnvValue::Int(t.minor as i64)),
        ("tracer_patchlevel", EnvValue::Int(t.patchlevel as i64)),
        ("trace_buffering_scheme", EnvValue::Str("global".into())),
    ];
    // Present only for a VM's trace, so tools can pair it with its host's.
    let vm = h
        .vm_uuid
        .as_ref()
        .map(|u| ("vm_uuid", EnvValue::Str(u.clone())));
    for (key, value) in standard
        .iter()
        .chain(vm.iter())
        .map(|(k, v)| (*k, v))
        .chain(
            desc.extra_env
                .iter()
                .filter(|(k, _)| is_identifier(k))
                .map(|(k, v)| (k.as_str(), v)),
        )
    {
        match value {
            EnvValue::Str(s) => writeln!(out, "\t{key} = \"{}\";", escape(s))?,
            EnvValue::Int(i) => writeln!(out, "\t{key} = {i};")?,
        }
    }
    writeln!(out, "}};\n")?;

    // Clock names are free text in the model (`x86-tsc`), but TSDL refers to
    // the clock as `clock.NAME.value`, so the declared name is an identifier.
    let cid = identifier(clock);
    let c = &desc.clock;
    writeln!(out, "clock {{")?;
    writeln!(out, "\tname = \"{cid}\";")?;
    writeln!(out, "\tuuid = \"{}\";", c.uuid)?;
    if !c.desc.description.is_empty() {
        writeln!(out, "\tdescription = \"{}\";", escape(&c.desc.description))?;
    }
    writeln!(
        out,
        "\tfreq = {}; /* Frequency, in Hz */",
        c.desc.freq.max(1)
    )?;
    writeln!(
        out,
        "\t/* clock value offset from Epoch is: offset_s + offset * (1/freq) */"
    )?;
    writeln!(out, "\toffset_s = {};", c.desc.offset_s)?;
    writeln!(out, "\toffset = {};", c.desc.offset)?;
    writeln!(out, "\tprecision = {};", c.precision)?;
    writeln!(
        out,
        "\tabsolute = {};",
        if c.absolute { "TRUE" } else { "FALSE" }
    )?;
    writeln!(out, "}};\n")?;

    for bits in [27, 32, 64] {
        let align = if bits == 27 { 1 } else { 8 };
        writeln!(
            out,
            "typealias integer {{\n\tsize = {bits}; align = {align}; signed = false;\n\tmap = clock.{cid}.value;\n}} := uint{bits}_clock_{cid}_t;\n"
        )?;
    }

    writeln!(out, "struct packet_context {{")?;
    writeln!(out, "\tuint64_clock_{cid}_t timestamp_begin;")?;
    writeln!(out, "\tuint64_clock_{cid}_t timestamp_end;")?;
    out.push_str(
        "\tuint64_t content_size;\n\
         \tuint64_t packet_size;\n\
         \tuint64_t packet_seq_num;\n\
         \tunsigned long events_discarded;\n\
         \tuint32_t cpu_id;\n};\n\n",
    );

    writeln!(
        out,
        "struct event_header_compact {{\n\
         \tenum : uint5_t {{ compact = 0 ... 30, extended = 31 }} id;\n\
         \tvariant <id> {{\n\
         \t\tstruct {{\n\t\t\tuint27_clock_{cid}_t timestamp;\n\t\t}} compact;\n\
         \t\tstruct {{\n\t\t\tuint32_t id;\n\t\t\tuint64_clock_{cid}_t timestamp;\n\t\t}} extended;\n\
         \t}} v;\n}} align(8);\n"
    )?;
    writeln!(
        out,
        "struct event_header_large {{\n\
         \tenum : uint16_t {{ compact = 0 ... 65534, extended = 65535 }} id;\n\
         \tvariant <id> {{\n\
         \t\tstruct {{\n\t\t\tuint32_clock_{cid}_t timestamp;\n\t\t}} compact;\n\
         \t\tstruct {{\n\t\t\tuint32_t id;\n\t\t\tuint64_clock_{cid}_t timestamp;\n\t\t}} extended;\n\
         \t}} v;\n}} align(8);\n"
    )?;

    writeln!(out, "stream {{")?;
    writeln!(out, "\tid = {STREAM_ID};")?;
    let header = match desc.header {
        HeaderKind::Compact => "event_header_compact",
        HeaderKind::Large => "event_header_large",
    };
    writeln!(out, "\tevent.header := struct {header};")?;
    writeln!(out, "\tpacket.context := struct packet_context;")?;
    if !desc.event_context.is_empty() {
        writeln!(out, "\tevent.context := struct {{")?;
        for f in &desc.event_context {
            write_field(out, f, 2)?;
        }
        writeln!(out, "\t}};")?;
    }
    writeln!(out, "}};\n")?;

    for ev in &desc.events {
        writeln!(out, "event {{")?;
        writeln!(out, "\tname = \"{}\";", escape(&ev.name))?;
        writeln!(out, "\tid = {};", ev.id)?;
        writeln!(out, "\tstream_id = {STREAM_ID};")?;
        writeln!(out, "\tfields := struct {{")?;
        for f in &ev.fields {
            write_field(out, f, 2)?;
        }
        writeln!(out, "\t}};")?;
        writeln!(out, "}};\n")?;
    }
    Ok(())
}

/// Writes one field declaration, `_name` as LTTng prefixes it.
fn write_field(out: &mut String, f: &FieldDesc, indent: usize) -> std::fmt::Result {
    for _ in 0..indent {
        out.push('\t');
    }
    let name = identifier(&f.name);
    match &f.ty {
        FieldType::Int(int) => writeln!(out, "{} _{name};", alias(int)),
        FieldType::String => writeln!(out, "string _{name};"),
        FieldType::Array { elem, len } => writeln!(out, "{} _{name}[{len}];", alias(elem)),
        FieldType::Sequence { elem, length_field } => writeln!(
            out,
            "{} _{name}[ _{} ];",
            alias(elem),
            identifier(length_field)
        ),
        FieldType::Enum { int, mappings } => {
            write!(out, "enum : {} {{ ", alias(int))?;
            for (i, (label, lo, hi)) in mappings.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if lo == hi {
                    write!(out, "\"{}\" = {lo}", escape(label))?;
                } else {
                    write!(out, "\"{}\" = {lo} ... {hi}", escape(label))?;
                }
            }
            writeln!(out, " }} _{name};")
        }
    }
}

/// `integer { size = 32; align = 8; signed = 1; encoding = none; base = 10; }`
fn int_decl(int: &IntType) -> String {
    format!(
        "integer {{ size = {}; align = {}; signed = {}; encoding = {}; base = {}; }}",
        int.bits,
        int.align.max(1),
        u8::from(int.signed),
        if int.utf8 { "UTF8" } else { "none" },
        match int.base {
            Base::Dec => 10,
            Base::Hex => 16,
        }
    )
}

/// The alias an integer type is declared under: `s32_t` (signed decimal),
/// `u64_t`, `x64_t` (hex), `c8_t` (UTF-8 text), with `_aN` for an alignment
/// other than a byte.
fn alias(int: &IntType) -> String {
    let kind = match (int.utf8, int.base, int.signed) {
        (true, _, _) => "c",
        (false, Base::Hex, false) => "x",
        (false, Base::Hex, true) => "xs",
        (false, Base::Dec, true) => "s",
        (false, Base::Dec, false) => "u",
    };
    if int.align == 8 {
        format!("{kind}{}_t", int.bits)
    } else {
        format!("{kind}{}_a{}_t", int.bits, int.align)
    }
}

/// Escapes text for a TSDL string literal.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Whether `s` is a plain C identifier.
fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `s` with every character outside `[A-Za-z0-9_]` replaced by `_`, and a
/// leading `_` when it would start with a digit.
pub fn identifier(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::model::*;
    use strata_core::{ClockDesc, HostInfo};

    fn desc() -> TraceDesc {
        let host = HostInfo {
            hostname: "box".into(),
            sysname: "Linux".into(),
            kernel_release: "6.18.0".into(),
            kernel_version: "#1 SMP \"quoted\"".into(),
            boot_id: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
            ..HostInfo::default()
        };
        let clock =
            ClockDesc::nanoseconds("monotonic", "Monotonic Clock", 1_700_000_000_500_000_000);
        TraceDesc {
            uuid: Uuid::derive(b"t"),
            clock: ClockParams::for_host(&clock, &host),
            host,
            tracer: TracerIdentity {
                name: "lttng-modules".into(),
                major: 2,
                minor: 13,
                patchlevel: 0,
            },
            extra_env: vec![("strata_version".into(), EnvValue::Str("0.1.0".into()))],
            header: HeaderKind::Compact,
            event_context: vec![],
            events: vec![EventClassDesc {
                id: 3,
                name: "sched_switch".into(),
                fields: vec![
                    FieldDesc::text("prev_comm", 16),
                    FieldDesc::int("prev_tid", IntType::new(32, true)),
                    FieldDesc::int("vtids_length", IntType::new(8, false)),
                    FieldDesc::new(
                        "vtids",
                        FieldType::Sequence {
                            elem: IntType::new(32, true),
                            length_field: "vtids_length".into(),
                        },
                    ),
                    FieldDesc::string("name"),
                    FieldDesc::int("addr", IntType::hex(64)),
                ],
            }],
        }
    }

    #[test]
    fn text_has_the_lttng_shape() {
        let text = metadata_text(&desc());
        assert!(text.starts_with("/* CTF 1.8 */\n"));
        assert!(text.contains("\tbyte_order = le;\n"));
        assert!(text.contains("\tdomain = \"kernel\";\n"));
        assert!(text.contains("\ttracer_major = 2;\n"));
        assert!(text.contains("\tkernel_version = \"#1 SMP \\\"quoted\\\"\";\n"));
        assert!(text.contains("\tstrata_version = \"0.1.0\";\n"));
        // The monotonic clock takes the boot id as its UUID, like LTTng.
        assert!(text.contains("\tuuid = \"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\";\n"));
        assert!(text.contains("\toffset_s = 1700000000;\n\toffset = 500000000;\n"));
        assert!(text.contains("\tabsolute = FALSE;\n"));
        assert!(text.contains("} := uint27_clock_monotonic_t;"));
        assert!(text.contains("\tunsigned long events_discarded;\n\tuint32_t cpu_id;\n"));
        assert!(text.contains("\tevent.header := struct event_header_compact;\n"));
        assert!(text.contains(
            "typealias integer { size = 8; align = 8; signed = 0; encoding = UTF8; base = 10; } := c8_t;"
        ));
        assert!(text.contains(
            "typealias integer { size = 32; align = 8; signed = 1; encoding = none; base = 10; } := s32_t;"
        ));
        assert!(text.contains("\t\tc8_t _prev_comm[16];\n"));
        assert!(text.contains("\t\ts32_t _vtids[ _vtids_length ];\n"));
        assert!(text.contains("\t\tstring _name;\n"));
        assert!(text.contains("base = 16; } := x64_t;"));
        assert!(text.contains("\t\tx64_t _addr;\n"));
        assert!(text.contains("\tname = \"sched_switch\";\n\tid = 3;\n\tstream_id = 0;\n"));
        // Balanced braces: a cheap guard against a malformed block.
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    #[test]
    fn a_vm_trace_names_its_vm_in_the_env() {
        assert!(!metadata_text(&desc()).contains("vm_uuid"));
        let mut d = desc();
        d.host.vm_uuid = Some("0d2721fa-90eb-49fa-876e-c79f2a39c8b9".into());
        let text = metadata_text(&d);
        let env = &text[text.find("env {").unwrap()..];
        let env = &env[..env.find("};").unwrap()];
        assert!(
            env.contains("\tvm_uuid = \"0d2721fa-90eb-49fa-876e-c79f2a39c8b9\";"),
            "{env}"
        );
    }

    #[test]
    fn large_header_context_and_odd_clock_names() {
        let mut d = desc();
        d.header = HeaderKind::for_max_id(40);
        d.clock.desc.name = "x86-tsc".into();
        d.event_context = vec![FieldDesc::int("tid", IntType::new(32, true))];
        d.extra_env.push(("bad key".into(), EnvValue::Int(1)));
        let text = metadata_text(&d);
        assert!(text.contains("\tevent.header := struct event_header_large;\n"));
        assert!(text.contains("map = clock.x86_tsc.value;"));
        assert!(text.contains("\tname = \"x86_tsc\";"));
        assert!(text.contains("\tevent.context := struct {\n\t\ts32_t _tid;\n"));
        assert!(!text.contains("bad key"));
    }
}
