//! Compiles a trace's [`Metadata`] into decode plans: one per stream class
//! and per event class, with field references resolved once.
//!
//! Stream classes are compiled when the trace is opened. Event classes are
//! compiled on their first use: LTTng kernel metadata declares over a
//! thousand of them and a trace uses a few dozen. When the metadata was
//! parsed lazily ([`super::tsdl::parse_lazy`]), most event types are also
//! parsed then; what is wrong in them is reported at the first event of the
//! class (as a decode error naming the metadata file and line), or by
//! [`EventClass::check`] for a full check. With metadata parsed whole,
//! classes whose fields refer to other fields (sequences, variants) or
//! that need checks only the compiler makes are compiled up front with the
//! stream classes, so that what can be wrong is reported at opening.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use strata_core::ClockDesc;

use super::plan::{Builder, Chain, ClassMap, FastScope, IntSpec, Kind, NodeId, Scope, ScopeKind};
use super::tsdl::{ByteOrder, LazyTypes, Metadata, MetadataError, Type};

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
    /// A little-endian integer of 8, 16, 32 or 64 bits aligned on a byte:
    /// read with one 8-byte load and two shifts by `down` (64 - bits), no
    /// bit offset or byte order to look at.
    ByteInt {
        down: u8,
        signed: bool,
    },
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

/// An addressable field: stripped name, raw name, reference, kind.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lookup {
    /// Every name, back to back: one string rather than two small
    /// allocations per field of every class compiled.
    names: String,
    fields: Vec<LookupField>,
}

/// One addressable field: its names as ranges of [`Lookup::names`].
#[derive(Debug, Clone, Copy)]
struct LookupField {
    stripped: (u32, u32),
    raw: (u32, u32),
    field: FieldRef,
    kind: FieldKind,
}

impl Lookup {
    /// Makes room for the fields of `scope`: at most one per node, named
    /// by its name and, stripped, a tail of it (nested ones longer).
    fn reserve(&mut self, scope: &Scope) {
        let nodes = scope.nodes.len().saturating_sub(1);
        let bytes: usize = scope.nodes.iter().map(|n| n.name.len()).sum();
        self.fields.reserve_exact(nodes);
        self.names.reserve_exact(bytes + bytes / 2);
    }
    /// Adds a field, under its name without leading underscores and its
    /// raw name. A field whose names do not fit in 4 GiB is left out.
    fn push(&mut self, stripped: &str, raw: &str, field: FieldRef, kind: FieldKind) {
        let Some(raw_r) = self.add(raw) else { return };
        // The stripped name is usually the raw one's tail (`_tid`, `tid`).
        let stripped_r = if raw.ends_with(stripped) {
            Some((raw_r.1 - stripped.len() as u32, raw_r.1))
        } else {
            self.add(stripped)
        };
        let Some(stripped_r) = stripped_r else { return };
        self.fields.push(LookupField {
            stripped: stripped_r,
            raw: raw_r,
            field,
            kind,
        });
    }
    /// Appends `name` to the names; its range.
    fn add(&mut self, name: &str) -> Option<(u32, u32)> {
        let a = u32::try_from(self.names.len()).ok()?;
        let b = u32::try_from(self.names.len() + name.len()).ok()?;
        self.names.push_str(name);
        Some((a, b))
    }
    fn name(&self, (a, b): (u32, u32)) -> &str {
        self.names.get(a as usize..b as usize).unwrap_or("")
    }
    /// Every field: stripped name, raw name, reference and kind.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str, FieldRef, FieldKind)> {
        self.fields
            .iter()
            .map(|f| (self.name(f.stripped), self.name(f.raw), f.field, f.kind))
    }
}

/// What compiling an event class on demand needs, shared by the classes of
/// a trace.
#[derive(Debug)]
pub(crate) struct Shared {
    pub md: Metadata,
    /// The event types the metadata's parse left for first use.
    pub lazy: Option<LazyTypes>,
    /// The metadata file, named in the errors of those types.
    pub origin: Option<PathBuf>,
    pub trace_be: bool,
    /// Per stream class, in plan order.
    pub streams: Vec<StreamFields>,
    /// The trace's index in its set, and the global index of its first
    /// class: kept here rather than in each of a thousand classes.
    pub trace: u32,
    pub class_base: u32,
    /// Plans compiled on first use, by stream class and a hash of their
    /// deferred types' text, with the declaration they were made for.
    pub plans: Mutex<PlanCache>,
}

/// See [`Shared::plans`].
pub(crate) type PlanCache = HashMap<(u32, u64), Vec<(u32, Arc<ClassPlan>)>>;

/// Most plans kept under one hash in a [`PlanCache`].
const PLANS_PER_HASH: usize = 4;

/// The parts of a stream class its event classes share.
#[derive(Debug)]
pub(crate) struct StreamFields {
    /// Where event-scope marks start in a cursor's flat mark array.
    pub ev_base: usize,
    /// Its addressable fields: stream event context, then packet context.
    pub lookup: Lookup,
}

/// What locating the events of a class of fixed layout needs, known
/// without compiling its plan ([`EventClass::fixed_layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedLayout {
    /// The payload's alignment and size, in bits.
    pub align: u32,
    pub bits: u64,
    /// The mark slot of the payload's start, the class's only mark.
    pub pay_slot: u32,
}

impl FixedLayout {
    /// How long a cursor's mark array must be for the class's events.
    pub fn marks_end(&self) -> usize {
        self.pay_slot as usize + 1
    }
}

/// The compiled plan of one event class.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClassPlan {
    pub context: Option<Scope>,
    pub payload: Option<Scope>,
    /// Where the context's and the payload's marks start in the flat array.
    pub ctx_base: usize,
    pub pay_base: usize,
    /// The flat mark array must be at least this long.
    pub marks_end: usize,
    /// When the payload is all fixed: its alignment, size and mark.
    pub pay_fast: Option<FastScope>,
    /// The flat-array slot of that mark, or `u32::MAX`.
    pub pay_slot: u32,
    /// Why the class could not be compiled, for classes compiled on demand
    /// (those compiled up front fail the opening instead), and the metadata
    /// error behind it. Boxed: rare, and every compiled class carries it.
    pub failure: Option<Box<(String, MetadataError)>>,
}

/// The fields of a class by name.
#[derive(Debug, Clone, Default)]
struct Names {
    /// Its own addressable fields: payload, then event context (its stream
    /// class's follow, see [`EventClass::lookup`]).
    lookup: Lookup,
    /// Top-level payload fields, in order, named by ranges of `lookup`'s
    /// names.
    payload_fields: Vec<((u32, u32), FieldRef)>,
}

/// One event class: its name, id and where its fields are.
///
/// 32 bytes: a trace declares over a thousand classes, most never used;
/// what else it has (id, trace, declaration) is read from `shared`.
#[derive(Clone)]
pub struct EventClass {
    pub(crate) index: u32,
    pub(crate) stream_class: u32,
    pub(crate) shared: Arc<Shared>,
    /// Behind a pointer: most classes are never compiled, and a trace
    /// declares over a thousand of them. Shared by the classes of a stream
    /// class whose types are written the same (see [`Shared::plans`]).
    pub(crate) plan: OnceLock<Arc<ClassPlan>>,
    /// Its fields by name, made on the first lookup: decoding never needs
    /// them, and a reader binds the fields of a few classes only. Its own,
    /// as a field reference names the class it belongs to.
    names: OnceLock<Box<Names>>,
}

impl std::fmt::Debug for EventClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventClass")
            .field("name", &self.name())
            .field("id", &self.id())
            .field("index", &self.index)
            .field("trace", &self.trace())
            .field("stream_class", &self.stream_class)
            .field("compiled", &self.plan.get().is_some())
            .finish()
    }
}

impl EventClass {
    /// The event name (`sched_switch`).
    pub fn name(&self) -> &str {
        self.shared.md.event_name(self.decl_index())
    }
    /// The event id within its stream class.
    pub fn id(&self) -> u64 {
        self.decl().and_then(|d| d.id).unwrap_or(0)
    }
    /// Index of its declaration in the metadata's events.
    fn decl_index(&self) -> usize {
        self.index.wrapping_sub(self.shared.class_base) as usize
    }
    /// Dense index over every event class of every trace of the set.
    pub fn index(&self) -> usize {
        self.index as usize
    }
    /// Index of the trace this class belongs to.
    pub fn trace(&self) -> usize {
        self.shared.trace as usize
    }
    /// The declared log level, if any.
    pub fn loglevel(&self) -> Option<i64> {
        // Read from the declaration rather than kept here: a trace
        // declares over a thousand classes, and this is rarely asked.
        self.decl().and_then(|d| d.loglevel)
    }
    /// Finds a field by name: payload first, then event context, stream
    /// event context and packet context. Names are given without the one
    /// leading underscore TSDL writers add (`prev_tid`); the raw spelling
    /// works too. Nested struct members are `outer.inner`. Fields inside
    /// variants, arrays and sequences have no reference of their own: read
    /// them through [`crate::read::Event::value`] of the enclosing field.
    pub fn field(&self, name: &str) -> Option<FieldRef> {
        self.lookup()
            .find(|(s, _, _, _)| *s == name)
            .or_else(|| self.lookup().find(|(_, r, _, _)| *r == name))
            .map(|(_, _, f, _)| f)
    }
    /// The kind of a field found by [`EventClass::field`].
    pub fn field_kind(&self, f: FieldRef) -> Option<FieldKind> {
        self.lookup()
            .find(|(_, _, g, _)| *g == f)
            .map(|(_, _, _, k)| k)
    }
    /// Every addressable field, in lookup order, with its kind.
    pub fn fields(&self) -> impl Iterator<Item = (&str, FieldRef, FieldKind)> {
        self.lookup().map(|(s, _, f, k)| (s, f, k))
    }
    /// The class's own fields (payload, event context), then its stream
    /// class's (stream event context, packet context): those are kept once
    /// per stream class rather than copied into each of its classes.
    pub(crate) fn lookup(&self) -> impl Iterator<Item = (&str, &str, FieldRef, FieldKind)> {
        let stream = self
            .shared
            .streams
            .get(self.stream_class as usize)
            .map(|sf| sf.lookup.iter());
        self.names()
            .lookup
            .iter()
            .chain(stream.into_iter().flatten())
    }
    /// Top-level payload fields in declaration order.
    pub fn payload_fields(&self) -> impl Iterator<Item = (&str, FieldRef)> {
        let n = self.names();
        n.payload_fields.iter().map(|&(r, f)| (n.lookup.name(r), f))
    }
    /// The class's fields by name, made on first use.
    fn names(&self) -> &Names {
        self.names
            .get_or_init(|| Box::new(names(self.index, self.plan())))
    }
    /// Whether the class declares an event context.
    pub(crate) fn has_context(&self) -> bool {
        if self.deferred() {
            return self.plan().context.is_some();
        }
        self.decl().is_some_and(|d| d.context.is_some())
    }
    /// Whether the class declares a payload.
    pub(crate) fn has_payload(&self) -> bool {
        if self.deferred() {
            return self.plan().payload.is_some();
        }
        self.decl().is_some_and(|d| d.fields.is_some())
    }
    /// Whether the class's types wait in the lazily parsed metadata.
    fn deferred(&self) -> bool {
        self.shared
            .lazy
            .as_ref()
            .is_some_and(|l| l.is_deferred(self.decl_index()))
    }
    /// Parses and compiles the class now if it was not yet, and says what
    /// is wrong with its declaration, if anything: what its first event
    /// would report. For a full check of metadata opened lazily.
    pub fn check(&self) -> Result<(), MetadataError> {
        let p = self.plan();
        match &p.failure {
            Some(f) => Err(f.1.clone()),
            None => Ok(()),
        }
    }
    fn decl(&self) -> Option<&super::tsdl::EventDecl> {
        self.shared.md.events.get(self.decl_index())
    }

    /// Where this class's events are, when that is known without its plan:
    /// its plan is not compiled yet, and its only type is a `fields`
    /// struct of integers written LTTng's way (see
    /// `tsdl::LazyTypes::fixed_fields`). The compiled plan would give the
    /// same: one fixed run of the payload from its first mark, right at
    /// the event scope's first slot (no event context).
    pub(crate) fn fixed_layout(&self) -> Option<FixedLayout> {
        if self.compiled().is_some() {
            return None;
        }
        let decl = self.decl()?;
        if decl.context.is_some() || decl.fields.is_some() {
            return None;
        }
        let f = self.shared.lazy.as_ref()?.fixed_fields(self.decl_index())?;
        let sf = self.shared.streams.get(self.stream_class as usize)?;
        Some(FixedLayout {
            align: f.align,
            bits: f.bits,
            pay_slot: u32::try_from(sf.ev_base).ok()?,
        })
    }

    /// The class's plan if compiled already.
    pub(crate) fn compiled(&self) -> Option<&ClassPlan> {
        self.plan.get().map(|p| &**p)
    }

    /// The class's plan, compiled on first use.
    #[inline]
    pub(crate) fn plan(&self) -> &ClassPlan {
        match self.plan.get() {
            Some(p) => p,
            None => self.plan.get_or_init(|| self.compile_shared()),
        }
    }

    /// The class's plan: the one compiled for an earlier class of its
    /// stream class with the same deferred types, if any, or a new one.
    /// LTTng declares hundreds of system calls, and many take the same
    /// arguments (a file descriptor, a buffer and a count, say).
    #[cold]
    fn compile_shared(&self) -> Arc<ClassPlan> {
        let Some(lazy) = &self.shared.lazy else {
            return Arc::new(self.compile());
        };
        let decl = self.decl_index();
        if !lazy.is_deferred(decl) {
            return Arc::new(self.compile());
        }
        let key = (self.stream_class, lazy.types_hash(decl));
        // A poisoned lock only means a compile panicked: the map is whole.
        let same = |plans: &PlanCache| {
            plans.get(&key)?.iter().find_map(|(other, p)| {
                lazy.same_types(decl, *other as usize)
                    .then(|| Arc::clone(p))
            })
        };
        if let Some(p) = same(&self.shared.plans.lock().unwrap_or_else(|e| e.into_inner())) {
            return p;
        }
        let p = Arc::new(self.compile());
        // A failure names its class: not shared. A few plans per hash at
        // most, so that metadata crafted to collide costs a few
        // comparisons per class, not one per class before it.
        if p.failure.is_none() {
            let mut plans = self.shared.plans.lock().unwrap_or_else(|e| e.into_inner());
            let same_hash = plans.entry(key).or_default();
            if same_hash.len() < PLANS_PER_HASH {
                same_hash.push((decl as u32, Arc::clone(&p)));
            }
        }
        p
    }

    #[cold]
    fn compile(&self) -> ClassPlan {
        let Some(decl) = self.decl() else {
            return ClassPlan::default();
        };
        let Some(sf) = self.shared.streams.get(self.stream_class as usize) else {
            return ClassPlan::default();
        };
        let mut b = Builder::with_order(self.shared.trace_be);
        let none = Chain { before: &[] };
        let parsed;
        let (context, fields) = match &self.shared.lazy {
            Some(l) if l.is_deferred(self.decl_index()) => match l.event_types(self.decl_index()) {
                Ok(t) => {
                    parsed = t;
                    (parsed.0.as_ref(), parsed.1.as_ref())
                }
                Err(e) => {
                    let at = self
                        .shared
                        .origin
                        .as_deref()
                        .map_or_else(String::new, |p| format!("{}: ", p.display()));
                    let msg = format!(
                        "event class `{}` (id {}): its declaration is invalid: {at}{e}",
                        self.name(),
                        self.id()
                    );
                    return ClassPlan {
                        failure: Some(Box::new((msg, e))),
                        ..ClassPlan::default()
                    };
                }
            },
            _ => (decl.context.as_deref(), decl.fields.as_deref()),
        };
        let built = (|| {
            let ctx = match context {
                Some(t) => Some(b.scope(ScopeKind::EventContext, t, Chain { before: &[] })?),
                None => None,
            };
            let pay = match fields {
                Some(t) => Some(b.scope(ScopeKind::Payload, t, none)?),
                None => None,
            };
            let (mut scopes, _) = b.finish()?;
            let mut take = |i: Option<usize>| i.and_then(|i| scopes.get_mut(i).map(std::mem::take));
            Ok::<_, MetadataError>((take(ctx), take(pay)))
        })();
        match built {
            Ok((ctx, pay)) => class_plan(sf, ctx, pay),
            Err(e) => ClassPlan {
                failure: Some(Box::new((format!("event class `{}`: {e}", self.name()), e))),
                ..ClassPlan::default()
            },
        }
    }
}

/// Builds the plan of a class from its compiled scopes.
fn class_plan(sf: &StreamFields, context: Option<Scope>, payload: Option<Scope>) -> ClassPlan {
    let ctx_base = sf.ev_base;
    let pay_base = ctx_base + context.as_ref().map_or(0, |s| s.marks as usize);
    let marks_end = pay_base + payload.as_ref().map_or(0, |s| s.marks as usize);
    let pay_fast = payload.as_ref().and_then(|s| s.fast);
    ClassPlan {
        pay_fast,
        pay_slot: pay_fast
            .and_then(|f| f.mark)
            .and_then(|m| u32::try_from(pay_base + m as usize).ok())
            .unwrap_or(u32::MAX),
        context,
        payload,
        ctx_base,
        pay_base,
        marks_end,
        failure: None,
    }
}

/// The fields by name of class `owner`, whose plan is `p`.
fn names(owner: u32, p: &ClassPlan) -> Names {
    let mut lookup = Lookup::default();
    let mut payload_fields = Vec::new();
    for (kind, scope, base) in [
        (ScopeKind::Payload, &p.payload, p.pay_base),
        (ScopeKind::EventContext, &p.context, p.ctx_base),
    ] {
        let Some(scope) = scope else { continue };
        lookup.reserve(scope);
        scope.addressable(&mut |stripped, raw, node| {
            if let Some((f, k)) = field_ref(scope, kind, owner, node, base) {
                lookup.push(stripped, raw, f, k);
            }
        });
        if kind == ScopeKind::Payload {
            if let Some(Kind::Struct { members, .. }) = scope.node(scope.root).map(|n| &n.kind) {
                payload_fields.reserve_exact(members.len());
                // Named as the lookup names them: the payload's fields come
                // first there, members in order among their nested fields.
                let mut at = 0;
                for &m in members {
                    if let Some((f, _)) = field_ref(scope, kind, owner, m, base) {
                        let known = lookup.fields.get(at..).and_then(|rest| {
                            let i = rest.iter().position(|l| l.field == f)?;
                            Some((i, rest[i].stripped))
                        });
                        let r = match known {
                            Some((i, r)) => {
                                at += i + 1;
                                Some(r)
                            }
                            None => {
                                let name =
                                    scope.node(m).map_or("", |n| super::plan::strip(&n.name));
                                lookup.add(name)
                            }
                        };
                        if let Some(r) = r {
                            payload_fields.push((r, f));
                        }
                    }
                }
            }
        }
    }
    Names {
        lookup,
        payload_fields,
    }
}

/// Whether a class with these types can wait for its first use: nothing in
/// it refers to another field, it nests shallowly, and its fixed parts are
/// far from the size limits (the compiler's own checks cannot fail then).
fn lazy_ok(t: &Type) -> bool {
    fn walk(t: &Type, depth: usize, bits: &mut u64) -> bool {
        if depth > 48 {
            return false;
        }
        match t {
            Type::Int(i) => {
                *bits = bits.saturating_add(i.size as u64 + i.align as u64);
                true
            }
            Type::Enum(e) => {
                *bits = bits.saturating_add(e.int.size as u64 + e.int.align as u64);
                true
            }
            Type::Float(f) => {
                *bits = bits.saturating_add((f.exp_dig + f.mant_dig) as u64 + f.align as u64);
                true
            }
            Type::String(_) => true,
            Type::Struct(s) => {
                *bits = bits.saturating_add(s.min_align as u64);
                s.fields.iter().all(|(_, f)| walk(f, depth + 1, bits))
            }
            Type::Array { elem, len } => {
                let mut e = 0u64;
                let ok = walk(elem, depth + 1, &mut e);
                *bits = bits.saturating_add(e.saturating_mul(*len));
                ok
            }
            Type::Sequence { .. } | Type::Variant(_) => false,
        }
    }
    let mut bits = 0u64;
    walk(t, 0, &mut bits) && bits < 1 << 31
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
    /// The Unix time of clock value 0, in ns, when the clock ticks in ns
    /// (then `to_ns(c)` is `zero + c` for `c < 2^62`).
    pub(crate) fn ns_zero(&self) -> Option<i64> {
        self.ns_zero
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
    /// Event id to the class's index in the trace.
    pub classes: ClassMap,
    /// When the header has no id: the one class of this stream.
    pub only_class: Option<u32>,
    pub roles: PacketRoles,
    pub clock: ClockConv,
}

/// The decode plan of one trace.
#[derive(Debug, Clone)]
pub(crate) struct TracePlan {
    /// The compiled packet header and stream scopes.
    pub scopes: Vec<Scope>,
    pub regs: usize,
    pub packet_header: Option<usize>,
    pub header_roles: HeaderRoles,
    pub streams: Vec<StreamPlan>,
    /// Most marks any scope of each stream-level kind needs (packet header,
    /// packet context, event header, stream event context).
    pub marks: [usize; 4],
    /// Where each stream-level kind's marks start in a cursor's flat mark
    /// array; event contexts and payloads follow, at per-class offsets.
    pub mark_base: [usize; 4],
    /// Initial size of a cursor's flat mark array (classes compiled later
    /// may need more).
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
/// The metadata moves into the classes, which compile themselves from it
/// on first use.
pub(crate) fn compile(
    md: Metadata,
    trace: u32,
    class_base: u32,
    stream_base: u32,
) -> Result<(TracePlan, Vec<EventClass>, Arc<Shared>), MetadataError> {
    compile_lazy(md, None, None, trace, class_base, stream_base)
}

/// [`compile`] for metadata parsed lazily: event classes also parse their
/// types from `lazy`, the types the parse left, on first use. `origin` is
/// the metadata file, for error messages.
pub(crate) fn compile_lazy(
    md: Metadata,
    lazy: Option<LazyTypes>,
    origin: Option<&Path>,
    trace: u32,
    class_base: u32,
    stream_base: u32,
) -> Result<(TracePlan, Vec<EventClass>, Arc<Shared>), MetadataError> {
    let mut b = Builder::new(&md);
    let ph = match &md.packet_header {
        Some(t) => Some(b.scope(ScopeKind::PacketHeader, t, Chain { before: &[] })?),
        None => None,
    };
    let ph_chain: Vec<(ScopeKind, usize)> = ph
        .map(|p| (ScopeKind::PacketHeader, p))
        .into_iter()
        .collect();

    // Stream classes: the declared ones, or one implicit class.
    let implicit = [Default::default()];
    let decls: &[super::tsdl::StreamDecl] = if md.streams.is_empty() {
        &implicit
    } else {
        &md.streams
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

    // Event classes: their stream class, and the scopes of those compiled
    // now (the others, most of them, wait for their first use). A first
    // pass finds the stream classes, so that the lists of ids are sized
    // once: these lists are per class, a thousand or more.
    let mut sis: Vec<u32> = Vec::with_capacity(md.events.len());
    let mut counts = vec![0usize; sbs.len()];
    for e in &md.events {
        let si = match e.stream_id {
            Some(sid) => sbs.iter().position(|s| s.id == sid).ok_or_else(|| {
                MetadataError::Invalid(format!(
                    "event `{}` names stream class {sid}, which is not declared",
                    md.name_of(e)
                ))
            })?,
            None if sbs.len() == 1 => 0,
            None => {
                return Err(MetadataError::Invalid(format!(
                    "event `{}` has no stream_id and the trace has {} stream classes",
                    md.name_of(e),
                    sbs.len()
                )))
            }
        };
        counts[si] += 1;
        sis.push(si as u32);
    }
    let mut per_stream: Vec<Vec<(u64, u32)>> =
        counts.iter().map(|&n| Vec::with_capacity(n)).collect();
    // Classes compiled now: their index, stream class and scopes in the
    // arena.
    type Eager = (u32, usize, Option<usize>, Option<usize>);
    let mut eagers: Vec<Eager> = Vec::new();
    for (local, (e, &si)) in md.events.iter().zip(&sis).enumerate() {
        let si = si as usize;
        let local = local as u32;
        per_stream[si].push((e.id.unwrap_or(0), local));
        let deferred = lazy.as_ref().is_some_and(|l| l.is_deferred(local as usize));
        let later = deferred
            || e.context.as_deref().is_none_or(lazy_ok) && e.fields.as_deref().is_none_or(lazy_ok);
        if !later {
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
            eagers.push((local, si, context, payload));
        }
    }

    let (mut scopes, regs) = b.finish()?;
    let mut marks = [0usize; 4];
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
    let mut mark_base = [0usize; 4];
    let mut ev_base = 0usize;
    for (b, m) in mark_base.iter_mut().zip(marks) {
        *b = ev_base;
        ev_base += m;
    }

    let default_clock = ClockDesc::nanoseconds("none", "", 0);
    let mut streams = Vec::new();
    let mut stream_fields = Vec::new();
    for (i, s) in sbs.iter().enumerate() {
        let desc = s
            .clock
            .as_ref()
            .and_then(|n| md.clocks.iter().find(|c| c.desc.name == *n))
            .or_else(|| (md.clocks.len() == 1).then(|| &md.clocks[0]))
            .map(|c| c.desc.clone())
            .unwrap_or_else(|| default_clock.clone());
        let has_id = s.eh.is_some_and(|h| scope_has_event_id(&scopes[h]));
        let classes = ClassMap::new(&per_stream[i]).map_err(|id| {
            let names: Vec<&str> = per_stream[i]
                .iter()
                .filter(|(i, _)| *i == id)
                .map(|(_, l)| md.event_name(*l as usize))
                .collect();
            MetadataError::Invalid(format!(
                "events `{}`: id {id} is used more than once in stream class {}",
                names.join("`, `"),
                s.id
            ))
        })?;
        let global = stream_base + i as u32;
        streams.push(StreamPlan {
            id: s.id,
            global,
            packet_context: s.pc,
            event_header: s.eh,
            event_context: s.ec,
            header_fast: s
                .eh
                .map_or(HeaderFast::Generic, |h| detect_fast(&scopes[h])),
            classes,
            only_class: (!has_id && per_stream[i].len() == 1).then(|| per_stream[i][0].1),
            roles: s.pc.map(|pc| packet_roles(&scopes[pc])).unwrap_or_default(),
            clock: ClockConv::new(desc),
        });
        let mut lookup = Lookup::default();
        for (kind, sc) in [
            (ScopeKind::StreamEventContext, s.ec),
            (ScopeKind::PacketContext, s.pc),
        ] {
            let Some(sc) = sc else { continue };
            let scope = &scopes[sc];
            let base = mark_base[kind as usize];
            scope.addressable(&mut |stripped, raw, node| {
                if let Some((f, k)) = field_ref(scope, kind, global, node, base) {
                    lookup.push(stripped, raw, f, k);
                }
            });
        }
        stream_fields.push(StreamFields { ev_base, lookup });
    }

    // The classes compiled now take their scopes out of the arena.
    let mut mark_total = ev_base;
    let mut plans: Vec<(u32, Arc<ClassPlan>)> = Vec::with_capacity(eagers.len());
    for &(local, si, ctx, pay) in &eagers {
        let mut take = |i: Option<usize>| i.and_then(|i| scopes.get_mut(i).map(std::mem::take));
        let p = class_plan(&stream_fields[si], take(ctx), take(pay));
        mark_total = mark_total.max(p.marks_end);
        plans.push((local, Arc::new(p)));
    }
    let header_roles = ph.map(|p| header_roles(&scopes[p])).unwrap_or_default();
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
    let shared = Arc::new(Shared {
        trace_be: md.byte_order == Some(ByteOrder::Be),
        md,
        lazy,
        origin: origin.map(Path::to_path_buf),
        streams: stream_fields,
        trace,
        class_base,
        plans: Mutex::default(),
    });
    let mut classes: Vec<EventClass> = shared
        .md
        .events
        .iter()
        .zip(&sis)
        .enumerate()
        .map(|(local, (_, &si))| EventClass {
            index: class_base + local as u32,
            stream_class: si,
            shared: Arc::clone(&shared),
            plan: OnceLock::new(),
            names: OnceLock::new(),
        })
        .collect();
    for (local, p) in plans {
        if let Some(c) = classes.get_mut(local as usize) {
            let _ = c.plan.set(p);
        }
    }
    Ok((plan, classes, shared))
}

/// The reference and kind of an addressable field of `scope`, whose marks
/// start at `base` in the flat mark array.
fn field_ref(
    scope: &Scope,
    kind: ScopeKind,
    owner: u32,
    node: NodeId,
    base: usize,
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
        } => (int_shape(*spec, n.align), FieldKind::Enum),
        Kind::Int { spec, .. } => (int_shape(*spec, n.align), FieldKind::Int(spec.signed)),
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
    let slot = u32::try_from(base + mark as usize).ok()?;
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

/// How an integer field is read: [`Shape::ByteInt`] when its layout allows
/// (a multiple of 8 bits wide, byte-aligned so every instance starts on a
/// byte, little-endian), else the generic bit reader.
fn int_shape(spec: IntSpec, align: u32) -> Shape {
    let whole = matches!(spec.bits, 8 | 16 | 32 | 64);
    if whole && !spec.be && align.is_multiple_of(8) && align > 0 {
        Shape::ByteInt {
            down: 64 - spec.bits,
            signed: spec.signed,
        }
    } else {
        Shape::Int(spec)
    }
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
