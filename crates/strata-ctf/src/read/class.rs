//! Compiles a trace's [`Metadata`] into decode plans: one per stream class
//! and per event class, with field references resolved once.

use strata_core::ClockDesc;

use super::plan::{Builder, Chain, ClassMap, EvPlan, IntSpec, Kind, NodeId, Scope, ScopeKind};
use super::tsdl::{Metadata, MetadataError, Type};

/// A resolved field of an event class: pass it to `Event` accessors.
///
/// Cheap to copy. Get it once per class with [`EventClass::field`] and reuse
/// it for every event of that class; with an event of another class the
/// accessors return `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRef {
    /// Event class (event scopes) or stream class (stream scopes) global index.
    pub(crate) owner: u32,
    pub(crate) scope: ScopeKind,
    /// Index of the field's mark in the cursor's flat mark array.
    pub(crate) slot: u32,
    pub(crate) rel: u32,
    pub(crate) node: NodeId,
    pub(crate) shape: Shape,
}

impl FieldRef {
    /// Whether the field is in the packet context: its value is the same
    /// for every event of a packet (see [`crate::read::Event::packet_number`]).
    pub fn is_packet_context(&self) -> bool {
        self.scope == ScopeKind::PacketContext
    }
}

/// How a field is read, resolved once so accessors need no plan lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Int(IntSpec),
    Str,
    Array {
        elem: IntSpec,
        stride: u32,
        len: u32,
    },
    Seq {
        elem: IntSpec,
        stride: u32,
        len_reg: u16,
    },
    Other,
}

/// What kind of data a field holds, for callers that dispatch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Integer (signed when `true`).
    Int(bool),
    /// Enumeration.
    Enum,
    /// Floating point.
    Float,
    /// String.
    String,
    /// Static array.
    Array,
    /// Sequence.
    Sequence,
    /// Structure.
    Struct,
    /// Variant.
    Variant,
}

/// One event class: its name, id and where its fields are.
#[derive(Debug, Clone)]
pub struct EventClass {
    pub(crate) name: String,
    pub(crate) id: u64,
    pub(crate) index: u32,
    pub(crate) trace: u32,
    pub(crate) stream_class: u32,
    pub(crate) loglevel: Option<i64>,
    pub(crate) context: Option<usize>,
    pub(crate) payload: Option<usize>,
    /// Addressable fields: stripped name, raw name, reference, kind.
    pub(crate) lookup: Vec<(Box<str>, Box<str>, FieldRef, FieldKind)>,
    /// Top-level payload fields, in order.
    pub(crate) payload_fields: Vec<(Box<str>, FieldRef)>,
}

impl EventClass {
    /// The event name (`sched_switch`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The event id within its stream class.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// Dense index over every event class of every trace of the set.
    pub fn index(&self) -> usize {
        self.index as usize
    }
    /// Index of the trace this class belongs to.
    pub fn trace(&self) -> usize {
        self.trace as usize
    }
    /// The declared log level, if any.
    pub fn loglevel(&self) -> Option<i64> {
        self.loglevel
    }
    /// Finds a field by name: payload first, then event context, stream
    /// event context and packet context. Names are given without the one
    /// leading underscore TSDL writers add (`prev_tid`); the raw spelling
    /// works too. Nested struct members are `outer.inner`. Fields inside
    /// variants, arrays and sequences have no reference of their own: read
    /// them through [`crate::read::Event::value`] of the enclosing field.
    pub fn field(&self, name: &str) -> Option<FieldRef> {
        self.lookup
            .iter()
            .find(|(s, _, _, _)| **s == *name)
            .or_else(|| self.lookup.iter().find(|(_, r, _, _)| **r == *name))
            .map(|(_, _, f, _)| *f)
    }
    /// The kind of a field found by [`EventClass::field`].
    pub fn field_kind(&self, f: FieldRef) -> Option<FieldKind> {
        self.lookup
            .iter()
            .find(|(_, _, g, _)| *g == f)
            .map(|(_, _, _, k)| *k)
    }
    /// Every addressable field, in lookup order, with its kind.
    pub fn fields(&self) -> impl Iterator<Item = (&str, FieldRef, FieldKind)> {
        self.lookup.iter().map(|(s, _, f, k)| (&**s, *f, *k))
    }
    /// Top-level payload fields in declaration order.
    pub fn payload_fields(&self) -> impl Iterator<Item = (&str, FieldRef)> {
        self.payload_fields.iter().map(|(s, f)| (&**s, *f))
    }
}

/// How the event header is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderFast {
    /// Walk the compiled header.
    Generic,
    /// LTTng compact header, little-endian: `enum uint5 id` + 27-bit or extended.
    Compact,
    /// LTTng large header, little-endian: `enum uint16 id` + 32-bit or extended.
    Large,
}

/// A packet-context or packet-header integer a reader needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Role {
    pub mark: u16,
    pub rel: u32,
    pub spec: IntSpec,
}

/// Packet context fields with a meaning.
#[derive(Debug, Clone, Default)]
pub(crate) struct PacketRoles {
    pub content_size: Option<Role>,
    pub packet_size: Option<Role>,
    pub ts_begin: Option<Role>,
    pub ts_end: Option<Role>,
    pub discarded: Option<Role>,
    pub cpu_id: Option<Role>,
    pub seq_num: Option<Role>,
}

/// Packet header fields with a meaning.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderRoles {
    pub magic: Option<Role>,
    /// Mark and offset of the 16-byte uuid array.
    pub uuid: Option<(u16, u32)>,
    pub stream_id: Option<Role>,
    pub stream_instance_id: Option<Role>,
}

/// Converts raw clock values to Unix nanoseconds.
#[derive(Debug, Clone)]
pub(crate) struct ClockConv {
    pub desc: ClockDesc,
    /// `Some(zero)` when the clock ticks in nanoseconds and its zero fits i64.
    ns_zero: Option<i64>,
}

impl ClockConv {
    pub(crate) fn new(desc: ClockDesc) -> Self {
        let zero = desc.offset_s as i128 * 1_000_000_000 + desc.offset as i128;
        let ns_zero = (desc.freq == 1_000_000_000)
            .then(|| i64::try_from(zero).ok())
            .flatten()
            .filter(|z| z.unsigned_abs() < 1 << 62);
        ClockConv { desc, ns_zero }
    }
    #[inline(always)]
    pub(crate) fn to_ns(&self, cycles: u64) -> i64 {
        match self.ns_zero {
            Some(z) if cycles < 1 << 62 => z + cycles as i64,
            _ => self.desc.to_unix_ns(cycles),
        }
    }
}

/// The decode plan of one stream class.
#[derive(Debug, Clone)]
pub(crate) struct StreamPlan {
    pub id: u64,
    pub global: u32,
    pub packet_context: Option<usize>,
    pub event_header: Option<usize>,
    pub event_context: Option<usize>,
    pub header_fast: HeaderFast,
    pub classes: ClassMap,
    /// When the header has no id: the one class of this stream.
    pub only_class: Option<EvPlan>,
    pub roles: PacketRoles,
    pub clock: ClockConv,
}

/// The decode plan of one trace.
#[derive(Debug, Clone)]
pub(crate) struct TracePlan {
    pub scopes: Vec<Scope>,
    pub regs: usize,
    pub packet_header: Option<usize>,
    pub header_roles: HeaderRoles,
    pub streams: Vec<StreamPlan>,
    /// Most marks any scope of each kind needs.
    pub marks: [usize; 6],
    /// Where each scope kind's marks start in a cursor's flat mark array.
    pub mark_base: [usize; 6],
    /// Size of a cursor's flat mark array.
    pub mark_total: usize,
    pub uuid: Option<[u8; 16]>,
}

impl TracePlan {
    pub(crate) fn scope(&self, i: usize) -> &Scope {
        &self.scopes[i]
    }
}

/// Compiles metadata. `trace` is the trace's index in its set; event classes
/// get global indices from `class_base`, stream classes from `stream_base`.
pub(crate) fn compile(
    md: &Metadata,
    trace: u32,
    class_base: u32,
    stream_base: u32,
) -> Result<(TracePlan, Vec<EventClass>), MetadataError> {
    let mut b = Builder::new(md);
    let ph = match &md.packet_header {
        Some(t) => Some(b.scope(ScopeKind::PacketHeader, t, Chain { before: &[] })?),
        None => None,
    };
    let ph_chain: Vec<(ScopeKind, usize)> = ph
        .map(|p| (ScopeKind::PacketHeader, p))
        .into_iter()
        .collect();

    // Stream classes: the declared ones, or one implicit class.
    let decls = if md.streams.is_empty() {
        vec![Default::default()]
    } else {
        md.streams.clone()
    };
    struct SB {
        id: u64,
        pc: Option<usize>,
        eh: Option<usize>,
        ec: Option<usize>,
        chain: Vec<(ScopeKind, usize)>,
        clock: Option<String>,
    }
    let mut sbs: Vec<SB> = Vec::new();
    for (i, s) in decls.iter().enumerate() {
        let id = s.id.unwrap_or(if decls.len() == 1 { 0 } else { i as u64 });
        if sbs.iter().any(|o| o.id == id) {
            return Err(MetadataError::Invalid(format!(
                "two stream classes have id {id}"
            )));
        }
        let mut chain = ph_chain.clone();
        let add = |b: &mut Builder,
                   kind: ScopeKind,
                   t: &Option<Type>,
                   chain: &mut Vec<(ScopeKind, usize)>|
         -> Result<Option<usize>, MetadataError> {
            let Some(t) = t else { return Ok(None) };
            let idx = b.scope(kind, t, Chain { before: chain })?;
            chain.insert(0, (kind, idx));
            Ok(Some(idx))
        };
        let pc = add(
            &mut b,
            ScopeKind::PacketContext,
            &s.packet_context,
            &mut chain,
        )?;
        let eh = add(&mut b, ScopeKind::EventHeader, &s.event_header, &mut chain)?;
        let ec = add(
            &mut b,
            ScopeKind::StreamEventContext,
            &s.event_context,
            &mut chain,
        )?;
        let clock = [&s.event_header, &s.packet_context]
            .iter()
            .find_map(|t| t.as_ref().and_then(find_map))
            .map(str::to_string);
        sbs.push(SB {
            id,
            pc,
            eh,
            ec,
            chain,
            clock,
        });
    }

    // Event classes.
    let mut classes = Vec::new();
    let mut per_stream: Vec<Vec<(u64, u32)>> = vec![Vec::new(); sbs.len()];
    for e in &md.events {
        let si = match e.stream_id {
            Some(sid) => sbs.iter().position(|s| s.id == sid).ok_or_else(|| {
                MetadataError::Invalid(format!(
                    "event `{}` names stream class {sid}, which is not declared",
                    e.name
                ))
            })?,
            None if sbs.len() == 1 => 0,
            None => {
                return Err(MetadataError::Invalid(format!(
                    "event `{}` has no stream_id and the trace has {} stream classes",
                    e.name,
                    sbs.len()
                )))
            }
        };
        let id = e.id.unwrap_or(0);
        if per_stream[si].iter().any(|(i, _)| *i == id) {
            return Err(MetadataError::Invalid(format!(
                "event `{}`: id {id} is already used in stream class {}",
                e.name, sbs[si].id
            )));
        }
        let mut chain = sbs[si].chain.clone();
        let context = match &e.context {
            Some(t) => {
                let idx = b.scope(ScopeKind::EventContext, t, Chain { before: &chain })?;
                chain.insert(0, (ScopeKind::EventContext, idx));
                Some(idx)
            }
            None => None,
        };
        let payload = match &e.fields {
            Some(t) => Some(b.scope(ScopeKind::Payload, t, Chain { before: &chain })?),
            None => None,
        };
        let local = classes.len() as u32;
        per_stream[si].push((id, local));
        classes.push(EventClass {
            name: e.name.clone(),
            id,
            index: class_base + local,
            trace,
            stream_class: si as u32,
            loglevel: e.loglevel,
            context,
            payload,
            lookup: Vec::new(),
            payload_fields: Vec::new(),
        });
    }

    let (scopes, regs) = b.finish()?;
    let mut marks = [0usize; 6];
    let mut note = |kind: ScopeKind, s: Option<usize>| {
        if let Some(s) = s {
            let m = &mut marks[kind as usize];
            *m = (*m).max(scopes[s].marks as usize);
        }
    };
    note(ScopeKind::PacketHeader, ph);
    for s in &sbs {
        note(ScopeKind::PacketContext, s.pc);
        note(ScopeKind::EventHeader, s.eh);
        note(ScopeKind::StreamEventContext, s.ec);
    }
    for c in &classes {
        note(ScopeKind::EventContext, c.context);
        note(ScopeKind::Payload, c.payload);
    }

    let default_clock = ClockDesc::nanoseconds("none", "", 0);
    let mut streams = Vec::new();
    for (i, s) in sbs.iter().enumerate() {
        let desc = s
            .clock
            .as_ref()
            .and_then(|n| md.clocks.iter().find(|c| c.desc.name == *n))
            .or_else(|| (md.clocks.len() == 1).then(|| &md.clocks[0]))
            .map(|c| c.desc.clone())
            .unwrap_or_else(|| default_clock.clone());
        let has_id = s.eh.is_some_and(|h| scope_has_event_id(&scopes[h]));
        let evplans: Vec<(u64, EvPlan)> = per_stream[i]
            .iter()
            .map(|&(id, local)| {
                let c = &classes[local as usize];
                let fast = c.payload.and_then(|p| scopes[p].fast);
                let none = EvPlan::NONE;
                let ep = EvPlan {
                    class: local,
                    index: c.index,
                    context: c.context.map_or(none, |x| x as u32),
                    payload: c.payload.map_or(none, |x| x as u32),
                    fast_align: fast.map_or(1, |f| f.align),
                    fast_bits: fast.map_or(0, |f| f.bits as u32),
                    fast_mark: fast.and_then(|f| f.mark).unwrap_or(u16::MAX),
                    has_fast: fast.is_some(),
                };
                (id, ep)
            })
            .collect();
        streams.push(StreamPlan {
            id: s.id,
            global: stream_base + i as u32,
            packet_context: s.pc,
            event_header: s.eh,
            event_context: s.ec,
            header_fast: s
                .eh
                .map_or(HeaderFast::Generic, |h| detect_fast(&scopes[h])),
            classes: ClassMap::new(&evplans),
            only_class: (!has_id && evplans.len() == 1).then(|| evplans[0].1),
            roles: s.pc.map(|pc| packet_roles(&scopes[pc])).unwrap_or_default(),
            clock: ClockConv::new(desc),
        });
    }
    let header_roles = ph.map(|p| header_roles(&scopes[p])).unwrap_or_default();
    let mut mark_base = [0usize; 6];
    let mut mark_total = 0usize;
    for (b, m) in mark_base.iter_mut().zip(marks) {
        *b = mark_total;
        mark_total += m;
    }
    let plan = TracePlan {
        scopes,
        regs: regs as usize,
        packet_header: ph,
        header_roles,
        streams,
        marks,
        mark_base,
        mark_total,
        uuid: md.uuid,
    };
    for c in &mut classes {
        let sp = &plan.streams[c.stream_class as usize];
        let mut lookup = Vec::new();
        let scopes = [
            (ScopeKind::Payload, c.payload, c.index),
            (ScopeKind::EventContext, c.context, c.index),
            (ScopeKind::StreamEventContext, sp.event_context, sp.global),
            (ScopeKind::PacketContext, sp.packet_context, sp.global),
        ];
        for (kind, s, owner) in scopes {
            let Some(s) = s else { continue };
            let scope = plan.scope(s);
            for (stripped, raw, node) in scope.addressable() {
                if let Some((f, k)) = field_ref(scope, kind, owner, node, plan.mark_base) {
                    lookup.push((stripped.into_boxed_str(), raw.into_boxed_str(), f, k));
                }
            }
            if kind == ScopeKind::Payload {
                if let Some(Kind::Struct { members, .. }) = scope.node(scope.root).map(|n| &n.kind)
                {
                    for &m in members {
                        if let Some((f, _)) = field_ref(scope, kind, owner, m, plan.mark_base) {
                            let name = scope.node(m).map_or("", |n| super::plan::strip(&n.name));
                            c.payload_fields.push((name.into(), f));
                        }
                    }
                }
            }
        }
        c.lookup = lookup;
    }
    Ok((plan, classes))
}

fn field_ref(
    scope: &Scope,
    kind: ScopeKind,
    owner: u32,
    node: NodeId,
    mark_base: [usize; 6],
) -> Option<(FieldRef, FieldKind)> {
    let n = scope.node(node)?;
    let (mark, rel) = n.loc?;
    let int_elem = |elem: NodeId| match scope.node(elem) {
        Some(e) => match e.kind {
            Kind::Int { spec, .. } => {
                let stride =
                    u32::try_from(super::plan::align_up(spec.bits as u64, e.align)).ok()?;
                Some((spec, stride))
            }
            _ => None,
        },
        None => None,
    };
    let (shape, fk) = match &n.kind {
        Kind::Int {
            spec,
            labels: Some(_),
            ..
        } => (Shape::Int(*spec), FieldKind::Enum),
        Kind::Int { spec, .. } => (Shape::Int(*spec), FieldKind::Int(spec.signed)),
        Kind::Float { .. } => (Shape::Other, FieldKind::Float),
        Kind::Str => (Shape::Str, FieldKind::String),
        Kind::Array { elem, len } => {
            let shape = match (int_elem(*elem), u32::try_from(*len)) {
                (Some((elem, stride)), Ok(len)) => Shape::Array { elem, stride, len },
                _ => Shape::Other,
            };
            (shape, FieldKind::Array)
        }
        Kind::Seq { elem, len_reg } => {
            let shape = match int_elem(*elem) {
                Some((elem, stride)) => Shape::Seq {
                    elem,
                    stride,
                    len_reg: *len_reg,
                },
                None => Shape::Other,
            };
            (shape, FieldKind::Sequence)
        }
        Kind::Struct { .. } => (Shape::Other, FieldKind::Struct),
        Kind::Variant { .. } => (Shape::Other, FieldKind::Variant),
    };
    let slot = u32::try_from(mark_base[kind as usize] + mark as usize).ok()?;
    Some((
        FieldRef {
            owner,
            scope: kind,
            slot,
            rel,
            node,
            shape,
        },
        fk,
    ))
}

/// The clock an integer of this type maps to, searching nested types.
fn find_map(t: &Type) -> Option<&str> {
    match t {
        Type::Int(i) => i.map.as_deref(),
        Type::Enum(e) => e.int.map.as_deref(),
        Type::Struct(s) => s.fields.iter().find_map(|(_, t)| find_map(t)),
        Type::Variant(v) => v.options.iter().find_map(|(_, t)| find_map(t)),
        Type::Array { elem, .. } | Type::Sequence { elem, .. } => find_map(elem),
        _ => None,
    }
}

fn scope_has_event_id(s: &Scope) -> bool {
    s.nodes
        .iter()
        .any(|n| n.action == super::plan::Action::EventId)
}

fn role(scope: &Scope, name: &str) -> Option<Role> {
    let root = scope.node(scope.root)?;
    let Kind::Struct { members, .. } = &root.kind else {
        return None;
    };
    members.iter().find_map(|&m| {
        let n = scope.node(m)?;
        if &*n.name != name {
            return None;
        }
        let (mark, rel) = n.loc?;
        match &n.kind {
            Kind::Int { spec, .. } => Some(Role {
                mark,
                rel,
                spec: *spec,
            }),
            _ => None,
        }
    })
}

fn packet_roles(s: &Scope) -> PacketRoles {
    PacketRoles {
        content_size: role(s, "content_size"),
        packet_size: role(s, "packet_size"),
        ts_begin: role(s, "timestamp_begin"),
        ts_end: role(s, "timestamp_end"),
        discarded: role(s, "events_discarded"),
        cpu_id: role(s, "cpu_id"),
        seq_num: role(s, "packet_seq_num"),
    }
}

fn header_roles(s: &Scope) -> HeaderRoles {
    let uuid = s.node(s.root).and_then(|root| match &root.kind {
        Kind::Struct { members, .. } => members.iter().find_map(|&m| {
            let n = s.node(m)?;
            match (&*n.name, &n.kind, n.fixed) {
                ("uuid", Kind::Array { len: 16, .. }, Some(128)) => n.loc,
                _ => None,
            }
        }),
        _ => None,
    });
    HeaderRoles {
        magic: role(s, "magic"),
        uuid,
        stream_id: role(s, "stream_id"),
        stream_instance_id: role(s, "stream_instance_id"),
    }
}

/// Recognises LTTng's two event header layouts (little-endian) so they can be
/// decoded without walking.
fn detect_fast(s: &Scope) -> HeaderFast {
    let int = |id: NodeId| match s.node(id).map(|n| (&n.kind, n.align, &*n.name, n.action)) {
        Some((Kind::Int { spec, .. }, align, name, action)) if !spec.be && !spec.signed => {
            Some((spec.bits, align, name, action))
        }
        _ => None,
    };
    let members = |id: NodeId| match s.node(id).map(|n| &n.kind) {
        Some(Kind::Struct { members, .. }) => Some(members.clone()),
        _ => None,
    };
    let Some(root) = members(s.root) else {
        return HeaderFast::Generic;
    };
    if s.node(s.root).map(|n| n.align) != Some(8) || root.len() != 2 {
        return HeaderFast::Generic;
    }
    let Some((id_bits, id_align, "id", _)) = int(root[0]) else {
        return HeaderFast::Generic;
    };
    let Some(Kind::Variant {
        options, select, ..
    }) = s.node(root[1]).map(|n| &n.kind)
    else {
        return HeaderFast::Generic;
    };
    let (kind, ts_bits, max) = match (id_bits, id_align) {
        (5, 1) => (HeaderFast::Compact, 27, 31i128),
        (16, 8) => (HeaderFast::Large, 32, 65535i128),
        _ => return HeaderFast::Generic,
    };
    if options.len() != 2 || select.as_slice() != [(0, max - 1, 0), (max, max, 1)] {
        return HeaderFast::Generic;
    }
    let (Some(compact), Some(ext)) = (members(options[0]), members(options[1])) else {
        return HeaderFast::Generic;
    };
    let compact_ok = compact.len() == 1
        && matches!(int(compact[0]), Some((b, a, "timestamp", super::plan::Action::Clock)) if b == ts_bits && (a == 1 || a == 8) && (ts_bits == 27 || a == 8));
    let ext_ok = ext.len() == 2
        && matches!(int(ext[0]), Some((32, 8, "id", _)))
        && matches!(
            int(ext[1]),
            Some((64, 8, "timestamp", super::plan::Action::Clock))
        );
    if compact_ok && ext_ok {
        kind
    } else {
        HeaderFast::Generic
    }
}
