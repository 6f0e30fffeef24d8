//! Prints events as text close to `babeltrace2`'s default (`sink.text.pretty`)
//! output, for debugging and for comparing against it line by line.
//!
//! `[HH:MM:SS.nnnnnnnnn] (+s.nnnnnnnnn) HOST NAME: { packet context }, { contexts }, { payload }`
//! with the time of day in UTC (run babeltrace2 with `TZ=UTC` to compare).

use std::fmt::Write;

use super::event::{ContextKind, Event, Value};

/// Packet context fields babeltrace2 does not print: they describe the packet.
const HIDDEN_PACKET_FIELDS: &[&str] = &[
    "timestamp_begin",
    "timestamp_end",
    "content_size",
    "packet_size",
    "packet_seq_num",
    "events_discarded",
];

/// Appends one event line (without a newline) to `out`. `prev_ts` is the
/// previous printed event's timestamp, for the delta.
pub fn format_event(
    out: &mut String,
    ev: &Event<'_>,
    prev_ts: Option<i64>,
    hostname: Option<&str>,
) {
    let ts = ev.ts();
    let secs = ts.div_euclid(1_000_000_000);
    let ns = ts.rem_euclid(1_000_000_000);
    let tod = secs.rem_euclid(86_400);
    let _ = write!(
        out,
        "[{:02}:{:02}:{:02}.{:09}] ",
        tod / 3600,
        tod / 60 % 60,
        tod % 60,
        ns
    );
    match prev_ts {
        Some(p) => {
            let d = ts - p;
            let sign = if d < 0 { "-" } else { "+" };
            let d = d.unsigned_abs();
            let _ = write!(
                out,
                "({sign}{}.{:09}) ",
                d / 1_000_000_000,
                d % 1_000_000_000
            );
        }
        None => out.push_str("(+?.?????????) "),
    }
    if let Some(h) = hostname {
        out.push_str(h);
        out.push(' ');
    }
    out.push_str(ev.class().name());
    out.push(':');
    // Packet context: shown when something is left after the packet
    // bookkeeping fields; other scopes: shown when declared, even empty.
    let mut pc = ev.context_fields(ContextKind::Packet);
    pc.retain(|(n, _)| !HIDDEN_PACKET_FIELDS.contains(n));
    let sp = &ev.c.plan.streams[ev.c.sp];
    let class = ev.class();
    let scopes = [
        (!pc.is_empty(), pc),
        (
            sp.event_context.is_some(),
            ev.context_fields(ContextKind::Stream),
        ),
        (class.has_context(), ev.context_fields(ContextKind::Event)),
        (class.has_payload(), ev.fields().collect()),
    ];
    let mut first = true;
    for (_, s) in scopes.into_iter().filter(|(shown, _)| *shown) {
        out.push_str(if first { " " } else { ", " });
        first = false;
        if s.is_empty() {
            out.push_str("{ }");
        } else {
            write_struct(out, &s);
        }
    }
}

fn write_struct(out: &mut String, fields: &[(&str, Value<'_>)]) {
    out.push_str("{ ");
    for (i, (n, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(n);
        out.push_str(" = ");
        write_value(out, v);
    }
    out.push_str(" }");
}

/// Appends a value as babeltrace2 prints it.
pub fn write_value(out: &mut String, v: &Value<'_>) {
    match v {
        Value::U64(x) => {
            let _ = write!(out, "{x}");
        }
        Value::I64(x) => {
            let _ = write!(out, "{x}");
        }
        Value::Based(x, 16) => {
            let _ = write!(out, "0x{x:X}");
        }
        Value::Based(x, 8) => {
            let _ = write!(out, "0{x:o}");
        }
        Value::Based(x, 2) => {
            let _ = write!(out, "0b{x:b}");
        }
        Value::Based(x, _) => {
            let _ = write!(out, "{x}");
        }
        Value::F64(x) => {
            let _ = write!(out, "{x}");
        }
        Value::Str(s) => {
            out.push('"');
            for c in String::from_utf8_lossy(s).chars() {
                match c {
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Value::Enum(x, label) => {
            match label {
                Some(l) => {
                    let _ = write!(out, "( \"{l}\" : container = {x} )");
                }
                None => {
                    let _ = write!(out, "( <unknown> : container = {x} )");
                }
            };
        }
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[ ]");
                return;
            }
            out.push_str("[ ");
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "[{i}] = ");
                write_value(out, it);
            }
            out.push_str(" ]");
        }
        Value::Struct(fields) => {
            if fields.is_empty() {
                out.push_str("{ }");
            } else {
                write_struct(out, fields);
            }
        }
        Value::Variant(_, inner) => {
            out.push_str("{ ");
            write_value(out, inner);
            out.push_str(" }");
        }
    }
}
