//! Decode plans: the metadata's types compiled once per scope into a flat
//! arena of nodes with static layout facts (alignment, fixed size, offsets of
//! fields relative to "marks"), and the steps that walk a scope's bytes.
//!
//! A struct compiles to steps. A run of fixed-size members whose offsets are
//! static relative to the run's start is one `Fixed` step: the walker aligns,
//! records the run's start in a mark slot, reads the few integers other
//! fields depend on (sequence lengths, variant tags, event id, timestamp) and
//! jumps over the run. Every other member is a `Var` step walked on its own.
//! An all-fixed event class therefore decodes in one step, and any field is
//! then read at `marks[mark] + rel`.

use std::collections::HashMap;

use super::tsdl::{ByteOrder, EnumMapping, Metadata, MetadataError, Type};

/// Index of a node in a scope's arena.
pub(crate) type NodeId = u32;

/// The dynamic scopes of CTF, in decoding order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ScopeKind {
    PacketHeader = 0,
    PacketContext = 1,
    EventHeader = 2,
    StreamEventContext = 3,
    EventContext = 4,
    Payload = 5,
}

impl ScopeKind {
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            ScopeKind::PacketHeader => "trace.packet.header",
            ScopeKind::PacketContext => "stream.packet.context",
            ScopeKind::EventHeader => "stream.event.header",
            ScopeKind::StreamEventContext => "stream.event.context",
            ScopeKind::EventContext => "event.context",
            ScopeKind::Payload => "event.fields",
        }
    }
}

/// How to read an integer's bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IntSpec {
    pub bits: u8,
    pub signed: bool,
    pub be: bool,
}

/// What the walker does with an integer as it passes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    None,
    /// The event header's `id`: sets the event class id.
    EventId,
    /// The event header's `timestamp`: updates the stream clock.
    Clock,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Int {
        spec: IntSpec,
        base: u8,
        text: bool,
        /// Labels when this integer is an enum's container.
        labels: Option<Box<[EnumMapping]>>,
    },
    Float {
        spec: IntSpec,
    },
    Str,
    Struct {
        members: Vec<NodeId>,
        steps: Vec<Step>,
    },
    Array {
        elem: NodeId,
        len: u64,
    },
    Seq {
        elem: NodeId,
        len_reg: u16,
    },
    Variant {
        tag_reg: u16,
        tag_spec: IntSpec,
        options: Vec<NodeId>,
        /// Inclusive tag ranges and the option each selects.
        select: Vec<(i128, i128, u32)>,
    },
}

/// One step of a struct walk.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    Fixed {
        align: u32,
        bits: u64,
        mark: Option<u16>,
        loads: Vec<Load>,
        /// The run's first member, to name it in errors.
        first: NodeId,
    },
    Var {
        member: NodeId,
        mark: Option<u16>,
    },
}

/// An integer a `Fixed` step reads as it passes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub rel: u32,
    pub spec: IntSpec,
    pub reg: Option<u16>,
    pub action: Action,
}

/// A compiled field type.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// The name as written (leading underscores kept).
    pub name: Box<str>,
    pub align: u32,
    /// Size in bits when it does not depend on the data.
    pub fixed: Option<u64>,
    /// Smallest possible size in bits.
    pub min_bits: u64,
    pub kind: Kind,
    pub reg: Option<u16>,
    pub action: Action,
    /// Where the field is, for fields reachable from the scope root through
    /// structs only: mark slot and bit offset from it.
    pub loc: Option<(u16, u32)>,
}

/// A scope whose layout is entirely static and that loads nothing: located
/// in O(1), without walking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FastScope {
    pub align: u32,
    pub bits: u64,
    pub mark: Option<u16>,
}

/// The compiled type of one dynamic scope.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    pub nodes: Vec<Node>,
    pub root: NodeId,
    pub marks: u16,
    pub fast: Option<FastScope>,
    /// The root is a struct whose variable members are all strings,
    /// sequences of plain scalars or fixed arrays: walked by
    /// `Walker::walk_flat`, without recursion.
    pub flat: bool,
    /// When `flat`: the root's alignment and its steps as a flat program,
    /// so the walk reads one small record per step and no nodes.
    pub flat_align: u32,
    pub flat_ops: Vec<FlatOp>,
    /// The integers the program's `Fixed` ops read, by index range.
    pub flat_loads: Vec<Load>,
}

/// One step of a flat walk (see `Scope::flat_ops`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlatOp {
    pub kind: FlatKind,
    /// Alignment in bits of the step's start.
    pub align: u32,
    /// Mark set to the step's start.
    pub mark: Option<u16>,
    /// `Fixed`, `Skip`: size in bits. `Seq`: the element stride in bits.
    pub bits: u64,
    /// `Seq`: the element's own size in bits (the last one is not padded).
    pub elem_bits: u64,
    /// `Seq`: the register holding the length.
    pub len_reg: u16,
    /// `Fixed`: its loads, `flat_loads[loads.0..loads.1]`.
    pub loads: (u32, u32),
}

/// What a flat step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlatKind {
    /// A run of fixed-size fields, some of which are read.
    Fixed,
    /// A member of static size only stepped over (a fixed array).
    Skip,
    /// A NUL-terminated string.
    Str,
    /// A sequence of plain scalars.
    Seq,
}

impl Scope {
    pub(crate) fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id as usize)
    }
    /// Addressable fields: stripped dotted path and node, in declaration order.
    /// Calls `f` with each addressable field's names (without and with
    /// leading underscores, `outer.inner` for nested members) and node.
    /// Top-level names are the nodes' own; nested ones are built in two
    /// buffers reused for every field.
    pub(crate) fn addressable(&self, f: &mut dyn FnMut(&str, &str, NodeId)) {
        let (mut stripped, mut raw) = (String::new(), String::new());
        self.collect(self.root, &mut stripped, &mut raw, f);
    }
    fn collect(
        &self,
        id: NodeId,
        stripped: &mut String,
        raw: &mut String,
        f: &mut dyn FnMut(&str, &str, NodeId),
    ) {
        let Some(n) = self.node(id) else { return };
        if let Kind::Struct { members, .. } = &n.kind {
            for &m in members {
                let Some(mn) = self.node(m) else { continue };
                if mn.loc.is_none() {
                    continue;
                }
                let (s_len, r_len) = (stripped.len(), raw.len());
                let top = s_len == 0 && r_len == 0;
                if top {
                    f(strip(&mn.name), &mn.name, m);
                } else {
                    join(stripped, strip(&mn.name));
                    join(raw, &mn.name);
                    f(stripped, raw, m);
                }
                if matches!(mn.kind, Kind::Struct { .. }) {
                    if top {
                        join(stripped, strip(&mn.name));
                        join(raw, &mn.name);
                    }
                    self.collect(m, stripped, raw, f);
                }
                stripped.truncate(s_len);
                raw.truncate(r_len);
            }
        }
    }
}

/// Appends member `b` to the path `a`.
fn join(a: &mut String, b: &str) {
    if !a.is_empty() {
        a.push('.');
    }
    a.push_str(b);
}

/// Removes the one leading underscore TSDL writers put on field names.
pub(crate) fn strip(name: &str) -> &str {
    name.strip_prefix('_').unwrap_or(name)
}

pub(crate) fn align_up(pos: u64, align: u32) -> u64 {
    let a = align as u64;
    (pos + a - 1) & !(a - 1)
}

// ---------------------------------------------------------------- building

/// Where a referenced field lives: scope index in the trace's arena and node.
type Target = (usize, NodeId);

/// Builds every scope of a trace into one arena so that references across
/// scopes (a payload sequence whose length is in the packet context) can
/// give the target a register.
pub(crate) struct Builder {
    pub scopes: Vec<Scope>,
    pub regs: u16,
    trace_be: bool,
}

/// The context a scope is built in: which scopes precede it.
pub(crate) struct Chain<'c> {
    /// Earlier scopes, nearest first, with their kinds.
    pub before: &'c [(ScopeKind, usize)],
}

/// A struct being built: its fields, and the nodes of those built so far
/// (its members list once built). Names are the type's own strings: a
/// copy per field was a third of a compile's allocations.
struct Frame<'t> {
    fields: &'t [(String, Type)],
    members: Vec<NodeId>,
}

/// How many nodes [`Builder::build`] makes for `ty`, so that a scope's
/// nodes are allocated once, at their size.
fn node_count(ty: &Type) -> usize {
    1 + match ty {
        Type::Struct(st) => st.fields.iter().map(|(_, t)| node_count(t)).sum(),
        Type::Array { elem, .. } | Type::Sequence { elem, .. } => node_count(elem),
        Type::Variant(v) => v.options.iter().map(|(_, t)| node_count(t)).sum(),
        Type::Int(_) | Type::Enum(_) | Type::Float(_) | Type::String(_) => 0,
    }
}

impl Builder {
    pub(crate) fn new(md: &Metadata) -> Self {
        Self::with_order(md.byte_order == Some(ByteOrder::Be))
    }

    /// A builder for a trace whose native byte order is big-endian when
    /// `trace_be`.
    pub(crate) fn with_order(trace_be: bool) -> Self {
        Builder {
            scopes: Vec::new(),
            regs: 0,
            trace_be,
        }
    }

    /// Compiles the type of one scope; returns its index in the arena.
    pub(crate) fn scope(
        &mut self,
        kind: ScopeKind,
        ty: &Type,
        chain: Chain<'_>,
    ) -> Result<usize, MetadataError> {
        let idx = self.scopes.len();
        // A hint only: bounded, whatever the type.
        let nodes = Vec::with_capacity(node_count(ty).min(1 << 12));
        self.scopes.push(Scope {
            nodes,
            ..Scope::default()
        });
        let mut frames: Vec<Frame> = Vec::new();
        let root = self.build(idx, kind, ty, "", &mut frames, &chain, 0)?;
        let scope = &mut self.scopes[idx];
        scope.root = root;
        Ok(idx)
    }

    fn push(&mut self, s: usize, node: Node) -> NodeId {
        let nodes = &mut self.scopes[s].nodes;
        nodes.push(node);
        (nodes.len() - 1) as NodeId
    }

    fn spec(&self, size: u32, signed: bool, bo: ByteOrder) -> IntSpec {
        IntSpec {
            bits: size as u8,
            signed,
            be: match bo {
                ByteOrder::Be => true,
                ByteOrder::Le => false,
                ByteOrder::Native => self.trace_be,
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn build<'t>(
        &mut self,
        s: usize,
        kind: ScopeKind,
        ty: &'t Type,
        name: &str,
        frames: &mut Vec<Frame<'t>>,
        chain: &Chain<'_>,
        depth: usize,
    ) -> Result<NodeId, MetadataError> {
        if depth > 64 {
            return Err(MetadataError::Invalid(format!(
                "type of `{name}` nests too deeply"
            )));
        }
        let node = |kind_: Kind, align: u32| Node {
            name: name.into(),
            align,
            fixed: None,
            min_bits: 0,
            kind: kind_,
            reg: None,
            action: Action::None,
            loc: None,
        };
        let n = match ty {
            Type::Int(i) => {
                let mut n = node(
                    Kind::Int {
                        spec: self.spec(i.size, i.signed, i.byte_order),
                        base: i.base as u8,
                        text: i.encoding != super::tsdl::Encoding::None,
                        labels: None,
                    },
                    i.align,
                );
                n.action = header_action(kind, name, i.map.is_some());
                n
            }
            Type::Enum(e) => {
                let i = &e.int;
                let mut n = node(
                    Kind::Int {
                        spec: self.spec(i.size, i.signed, i.byte_order),
                        base: i.base as u8,
                        text: false,
                        labels: Some(e.mappings.clone().into_boxed_slice()),
                    },
                    i.align,
                );
                n.action = header_action(kind, name, i.map.is_some());
                n
            }
            Type::Float(f) => node(
                Kind::Float {
                    spec: self.spec(f.exp_dig + f.mant_dig, false, f.byte_order),
                },
                f.align,
            ),
            Type::String(_) => node(Kind::Str, 8),
            Type::Struct(st) => {
                let id = self.push(
                    s,
                    node(
                        Kind::Struct {
                            members: vec![],
                            steps: vec![],
                        },
                        st.min_align,
                    ),
                );
                frames.push(Frame {
                    fields: &st.fields,
                    members: Vec::with_capacity(st.fields.len()),
                });
                for (fname, fty) in &st.fields {
                    let r = self.build(s, kind, fty, fname, frames, chain, depth + 1);
                    let m = match r {
                        Ok(m) => m,
                        Err(e) => {
                            frames.pop();
                            return Err(e);
                        }
                    };
                    if let Some(f) = frames.last_mut() {
                        f.members.push(m);
                    }
                }
                let members = frames.pop().map(|f| f.members).unwrap_or_default();
                if let Kind::Struct { members: ms, .. } =
                    &mut self.scopes[s].nodes[id as usize].kind
                {
                    *ms = members;
                }
                return Ok(id);
            }
            Type::Array { elem, len } => {
                let e = self.build(s, kind, elem, name, frames, chain, depth + 1)?;
                node(Kind::Array { elem: e, len: *len }, 1)
            }
            Type::Sequence { elem, length } => {
                let (tgt, spec) = self.resolve(s, kind, length, frames, chain, name)?;
                let Some(_) = spec else {
                    return Err(MetadataError::Invalid(format!(
                        "sequence `{name}` in {}: its length `{length}` is not an integer field",
                        kind.prefix()
                    )));
                };
                let reg = self.reg_for(tgt);
                let e = self.build(s, kind, elem, name, frames, chain, depth + 1)?;
                node(
                    Kind::Seq {
                        elem: e,
                        len_reg: reg,
                    },
                    1,
                )
            }
            Type::Variant(v) => {
                let Some(tag) = &v.tag else {
                    return Err(MetadataError::Invalid(format!(
                        "variant `{name}` in {} has no tag",
                        kind.prefix()
                    )));
                };
                let (tgt, spec) = self.resolve(s, kind, tag, frames, chain, name)?;
                let labels = match &self.scopes[tgt.0].nodes[tgt.1 as usize].kind {
                    Kind::Int {
                        labels: Some(l), ..
                    } => l.clone(),
                    _ => {
                        return Err(MetadataError::Invalid(format!(
                            "variant `{name}` in {}: its tag `{tag}` is not an enum field",
                            kind.prefix()
                        )))
                    }
                };
                let reg = self.reg_for(tgt);
                let mut options = Vec::new();
                for (oname, oty) in &v.options {
                    options.push(self.build(s, kind, oty, oname, frames, chain, depth + 1)?);
                }
                let mut select = Vec::new();
                for m in labels.iter() {
                    let found = v
                        .options
                        .iter()
                        .position(|(o, _)| *o == m.label)
                        .or_else(|| {
                            v.options
                                .iter()
                                .position(|(o, _)| strip(o) == strip(&m.label))
                        });
                    if let Some(i) = found {
                        select.push((m.lo, m.hi, i as u32));
                    }
                }
                node(
                    Kind::Variant {
                        tag_reg: reg,
                        tag_spec: spec.unwrap_or(IntSpec {
                            bits: 64,
                            signed: false,
                            be: false,
                        }),
                        options,
                        select,
                    },
                    1,
                )
            }
        };
        Ok(self.push(s, n))
    }

    fn reg_for(&mut self, (s, id): Target) -> u16 {
        let n = &mut self.scopes[s].nodes[id as usize];
        if let Some(r) = n.reg {
            return r;
        }
        let r = self.regs;
        self.regs = self.regs.saturating_add(1);
        n.reg = Some(r);
        r
    }

    /// Finds the integer field a sequence length or variant tag names.
    fn resolve(
        &self,
        s: usize,
        kind: ScopeKind,
        path: &str,
        frames: &[Frame<'_>],
        chain: &Chain<'_>,
        user: &str,
    ) -> Result<(Target, Option<IntSpec>), MetadataError> {
        let parts: Vec<&str> = path.split('.').collect();
        let found = self.resolve_abs(&parts, chain).or_else(|| {
            // Relative: the innermost struct being built outward, then the
            // earlier scopes.
            frames
                .iter()
                .rev()
                .find_map(|f| {
                    let (_, id) = (f.fields.iter().map(|(n, _)| n.as_str()))
                        .zip(&f.members)
                        .rev()
                        .find(|(n, _)| *n == parts[0])?;
                    self.descend(s, *id, &parts[1..]).map(|id| (s, id))
                })
                .or_else(|| {
                    chain.before.iter().find_map(|&(_, sc)| {
                        let root = self.scopes[sc].root;
                        self.descend(sc, root, &parts).map(|id| (sc, id))
                    })
                })
        });
        let Some(t) = found else {
            return Err(MetadataError::Invalid(format!(
                "`{user}` in {} refers to `{path}`, which is not a field declared before it",
                kind.prefix()
            )));
        };
        let spec = match &self.scopes[t.0].nodes[t.1 as usize].kind {
            Kind::Int { spec, .. } => Some(*spec),
            _ => None,
        };
        Ok((t, spec))
    }

    fn resolve_abs(&self, parts: &[&str], chain: &Chain<'_>) -> Option<Target> {
        for &(k, sc) in chain.before {
            let pre: Vec<&str> = k.prefix().split('.').collect();
            if parts.len() > pre.len() && parts[..pre.len()] == pre[..] {
                let root = self.scopes[sc].root;
                return self
                    .descend(sc, root, &parts[pre.len()..])
                    .map(|id| (sc, id));
            }
        }
        None
    }

    fn descend(&self, s: usize, mut id: NodeId, parts: &[&str]) -> Option<NodeId> {
        for p in parts {
            let Kind::Struct { members, .. } = &self.scopes[s].nodes.get(id as usize)?.kind else {
                return None;
            };
            id = *members.iter().find(|&&m| {
                self.scopes[s]
                    .nodes
                    .get(m as usize)
                    .is_some_and(|n| *n.name == **p)
            })?;
        }
        Some(id)
    }

    /// Second pass, once every reference is known: sizes, steps and marks.
    pub(crate) fn finish(mut self) -> Result<(Vec<Scope>, u16), MetadataError> {
        for scope in &mut self.scopes {
            let root = scope.root;
            layout(scope, root)?;
            let mut marks = 0u16;
            steps(scope, root, true, &mut marks)?;
            scope.marks = marks;
            scope.fast = match scope.node(root).map(|n| (&n.kind, n.align)) {
                Some((Kind::Struct { steps, .. }, align)) => match steps.as_slice() {
                    [] => Some(FastScope {
                        align,
                        bits: 0,
                        mark: None,
                    }),
                    [Step::Fixed {
                        align,
                        bits,
                        mark,
                        loads,
                        ..
                    }] if loads.is_empty() => Some(FastScope {
                        align: *align,
                        bits: *bits,
                        mark: *mark,
                    }),
                    _ => None,
                },
                _ => None,
            };
            scope.flat = is_flat(scope);
            if scope.flat {
                if let Some((align, ops, loads)) = flat_program(scope) {
                    (scope.flat_align, scope.flat_ops, scope.flat_loads) = (align, ops, loads);
                } else {
                    scope.flat = false;
                }
            }
        }
        Ok((self.scopes, self.regs))
    }
}

/// Whether `scope` can be walked by `Walker::walk_flat`: see `Scope::flat`.
fn is_flat(scope: &Scope) -> bool {
    let Some(Kind::Struct { steps, .. }) = scope.node(scope.root).map(|n| &n.kind) else {
        return false;
    };
    steps.iter().all(|step| {
        let Step::Var { member, .. } = step else {
            return true;
        };
        let Some(m) = scope.node(*member) else {
            return false;
        };
        match &m.kind {
            Kind::Str => true,
            Kind::Array { .. } => m.fixed.is_some(),
            Kind::Seq { elem, .. } => scope.node(*elem).is_some_and(plain_scalar),
            _ => false,
        }
    })
}

/// The flat program of a scope `is_flat` accepts: its root's alignment,
/// ops and loads. `None` if something does not fit (then it is walked).
fn flat_program(scope: &Scope) -> Option<(u32, Vec<FlatOp>, Vec<Load>)> {
    let root = scope.node(scope.root)?;
    let Kind::Struct { steps, .. } = &root.kind else {
        return None;
    };
    // Sized once: the program lives as long as the class.
    let n_loads = steps
        .iter()
        .map(|s| match s {
            Step::Fixed { loads, .. } => loads.len(),
            Step::Var { .. } => 0,
        })
        .sum();
    let (mut ops, mut loads) = (Vec::with_capacity(steps.len()), Vec::with_capacity(n_loads));
    for step in steps {
        let op = match step {
            Step::Fixed {
                align,
                bits,
                mark,
                loads: l,
                ..
            } => {
                let from = u32::try_from(loads.len()).ok()?;
                loads.extend_from_slice(l);
                FlatOp {
                    kind: FlatKind::Fixed,
                    align: *align,
                    mark: *mark,
                    bits: *bits,
                    elem_bits: 0,
                    len_reg: 0,
                    loads: (from, u32::try_from(loads.len()).ok()?),
                }
            }
            Step::Var { member, mark } => {
                let m = scope.node(*member)?;
                let mut op = FlatOp {
                    kind: FlatKind::Skip,
                    align: m.align,
                    mark: *mark,
                    bits: 0,
                    elem_bits: 0,
                    len_reg: 0,
                    loads: (0, 0),
                };
                match &m.kind {
                    Kind::Str => op.kind = FlatKind::Str,
                    Kind::Seq { elem, len_reg } => {
                        let e = scope.node(*elem)?;
                        let ef = e.fixed?;
                        op.kind = FlatKind::Seq;
                        op.bits = align_up(ef, e.align);
                        op.elem_bits = ef;
                        op.len_reg = *len_reg;
                    }
                    _ => op.bits = m.fixed?,
                }
                op
            }
        };
        ops.push(op);
    }
    Some((root.align, ops, loads))
}

/// A fixed-size integer or float the walker only steps over.
pub(crate) fn plain_scalar(e: &Node) -> bool {
    e.fixed.is_some()
        && e.reg.is_none()
        && e.action == Action::None
        && matches!(e.kind, Kind::Int { .. } | Kind::Float { .. })
}

fn header_action(kind: ScopeKind, name: &str, mapped: bool) -> Action {
    if kind != ScopeKind::EventHeader {
        return Action::None;
    }
    match name {
        "id" => Action::EventId,
        "timestamp" => Action::Clock,
        _ if mapped => Action::Clock,
        _ => Action::None,
    }
}

fn too_big(name: &str) -> MetadataError {
    MetadataError::Invalid(format!("type of `{name}` is larger than 2^32 bits"))
}

/// Computes alignment, fixed size and minimum size bottom-up.
fn layout(scope: &mut Scope, id: NodeId) -> Result<(), MetadataError> {
    /// What the layout needs of a node: its children taken out (and put
    /// back below) rather than its kind cloned, an allocation per node.
    enum Shape {
        Scalar(u64),
        Str,
        Struct(Vec<NodeId>),
        Array(NodeId, u64),
        Seq(NodeId),
        Variant(Vec<NodeId>),
    }
    let Some(n) = scope.nodes.get_mut(id as usize) else {
        return Ok(());
    };
    let n_align = n.align;
    let shape = match &mut n.kind {
        Kind::Int { spec, .. } | Kind::Float { spec } => Shape::Scalar(spec.bits as u64),
        Kind::Str => Shape::Str,
        Kind::Struct { members, .. } => Shape::Struct(std::mem::take(members)),
        Kind::Array { elem, len } => Shape::Array(*elem, *len),
        Kind::Seq { elem, .. } => Shape::Seq(*elem),
        Kind::Variant { options, .. } => Shape::Variant(std::mem::take(options)),
    };
    let too_big_here = |scope: &Scope| too_big(scope.node(id).map_or("", |n| &n.name));
    let (align, fixed, min, children) = match shape {
        Shape::Scalar(bits) => (n_align, Some(bits), bits, None),
        Shape::Str => (8, None, 8, None),
        Shape::Struct(members) => {
            let mut align = n_align;
            let mut off = Some(0u64);
            let mut min = 0u64;
            for &m in &members {
                layout(scope, m)?;
                let mn = &scope.nodes[m as usize];
                align = align.max(mn.align);
                off = match (off, mn.fixed) {
                    (Some(o), Some(f)) => Some(align_up(o, mn.align) + f),
                    _ => None,
                };
                min = min.saturating_add(mn.min_bits);
            }
            (align, off, min, Some(members))
        }
        Shape::Array(elem, len) => {
            layout(scope, elem)?;
            let e = &scope.nodes[elem as usize];
            let fixed = match e.fixed {
                Some(_) if len == 0 => Some(0),
                Some(f) => {
                    let stride = align_up(f, e.align);
                    Some(
                        stride
                            .checked_mul(len - 1)
                            .and_then(|v| v.checked_add(f))
                            .ok_or_else(|| too_big_here(scope))?,
                    )
                }
                None => None,
            };
            (e.align, fixed, e.min_bits.saturating_mul(len), None)
        }
        Shape::Seq(elem) => {
            layout(scope, elem)?;
            (scope.nodes[elem as usize].align, None, 0, None)
        }
        Shape::Variant(options) => {
            let mut min = u64::MAX;
            for &o in &options {
                layout(scope, o)?;
                min = min.min(scope.nodes[o as usize].min_bits);
            }
            let min = if options.is_empty() { 0 } else { min };
            (1, None, min, Some(options))
        }
    };
    if let Some(c) = children {
        match &mut scope.nodes[id as usize].kind {
            Kind::Struct { members, .. } => *members = c,
            Kind::Variant { options, .. } => *options = c,
            _ => {}
        }
    }
    if fixed.is_some_and(|f| f > u32::MAX as u64) {
        return Err(too_big_here(scope));
    }
    let n = &mut scope.nodes[id as usize];
    n.align = align;
    n.fixed = fixed;
    n.min_bits = min;
    Ok(())
}

/// Builds the steps of every struct under `id`, and the marks/locations of
/// fields reachable from the root through structs only (`addressable`).
fn steps(
    scope: &mut Scope,
    id: NodeId,
    addressable: bool,
    marks: &mut u16,
) -> Result<(), MetadataError> {
    // Taken out (and put back below) rather than cloned: the recursion
    // needs the scope, and a clone was an allocation per struct.
    // Scalars, the most common members, need nothing at all.
    let kind = match &mut scope.nodes[id as usize].kind {
        Kind::Struct { members, .. } => Kind::Struct {
            members: std::mem::take(members),
            steps: Vec::new(),
        },
        Kind::Int { .. } | Kind::Float { .. } | Kind::Str => return Ok(()),
        k => k.clone(),
    };
    match kind {
        Kind::Struct { members, .. } => {
            let struct_align = scope.nodes[id as usize].align;
            let mut out: Vec<Step> = Vec::new();
            // The run being built: align, bits, mark, loads, first member.
            let mut run: Option<Run> = None;
            for (i, &m) in members.iter().enumerate() {
                let (m_align, m_fixed) = {
                    let mn = &scope.nodes[m as usize];
                    (mn.align, mn.fixed)
                };
                match m_fixed {
                    Some(f) => {
                        let joins = matches!(&run, Some((a, ..)) if m_align <= *a);
                        if !joins {
                            if let Some((align, bits, mark, loads, first)) = run.take() {
                                out.push(Step::Fixed {
                                    align,
                                    bits,
                                    mark,
                                    loads,
                                    first,
                                });
                            }
                            let align = if i == 0 { struct_align } else { m_align };
                            let mark = addressable.then(|| bump(marks));
                            run = Some((align, 0, mark, Vec::new(), m));
                        }
                        let Some((_, bits, mark, loads, _)) = run.as_mut() else {
                            continue;
                        };
                        let off = align_up(*bits, m_align);
                        *bits = off + f;
                        let rel = u32::try_from(off)
                            .map_err(|_| too_big(&scope.nodes[m as usize].name))?;
                        place(scope, m, *mark, rel, loads);
                    }
                    None => {
                        if let Some((align, bits, mark, loads, first)) = run.take() {
                            out.push(Step::Fixed {
                                align,
                                bits,
                                mark,
                                loads,
                                first,
                            });
                        }
                        let mark = addressable.then(|| bump(marks));
                        if let Some(mk) = mark {
                            scope.nodes[m as usize].loc = Some((mk, 0));
                        }
                        out.push(Step::Var { member: m, mark });
                        steps(scope, m, addressable, marks)?;
                    }
                }
            }
            if let Some((align, bits, mark, loads, first)) = run.take() {
                out.push(Step::Fixed {
                    align,
                    bits,
                    mark,
                    loads,
                    first,
                });
            }
            if let Kind::Struct {
                steps: st,
                members: ms,
            } = &mut scope.nodes[id as usize].kind
            {
                // Kept for the class's life: no spare room.
                out.shrink_to_fit();
                *st = out;
                *ms = members;
            }
        }
        Kind::Array { elem, .. } | Kind::Seq { elem, .. } => steps(scope, elem, false, marks)?,
        Kind::Variant { options, .. } => {
            for o in options {
                steps(scope, o, false, marks)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A run of fixed members being built: alignment, bits, mark, loads and
/// first member.
type Run = (u32, u64, Option<u16>, Vec<Load>, NodeId);

fn bump(marks: &mut u16) -> u16 {
    let m = *marks;
    *marks = marks.saturating_add(1);
    m
}

/// Places a fixed member at `rel` in a run: records its location (when the
/// run has a mark) and the loads of the integers in it that matter. Fixed
/// structs are placed member by member; their own steps are built too, for
/// when they are walked elsewhere.
fn place(scope: &mut Scope, id: NodeId, mark: Option<u16>, rel: u32, loads: &mut Vec<Load>) {
    if let Some(mk) = mark {
        scope.nodes[id as usize].loc = Some((mk, rel));
    }
    let n = &scope.nodes[id as usize];
    match n.kind.clone() {
        Kind::Int { spec, .. } if n.reg.is_some() || n.action != Action::None => {
            loads.push(Load {
                rel,
                spec,
                reg: n.reg,
                action: n.action,
            });
        }
        Kind::Struct { members, .. } => {
            let mut off = 0u64;
            for m in members {
                let mn = &scope.nodes[m as usize];
                off = align_up(off, mn.align);
                let f = mn.fixed.unwrap_or(0);
                place(scope, m, mark, rel.saturating_add(off as u32), loads);
                off += f;
            }
            let mut dummy = 0u16;
            let _ = steps(scope, id, false, &mut dummy);
        }
        Kind::Array { elem, .. } => {
            let mut dummy = 0u16;
            let _ = steps(scope, elem, false, &mut dummy);
        }
        _ => {}
    }
}

/// Event-class lookup by id for one stream class: the index of the class
/// in its trace, `u32::MAX` where no class has the id.
#[derive(Debug, Clone)]
pub(crate) enum ClassMap {
    Dense(Vec<u32>),
    Sparse(HashMap<u64, u32>),
}

impl ClassMap {
    /// A map of `(id, class)` pairs; `Err(id)` for an id given twice.
    pub(crate) fn new(pairs: &[(u64, u32)]) -> Result<Self, u64> {
        let max = pairs.iter().map(|p| p.0).max().unwrap_or(0);
        if max < 1 << 16 {
            let mut v = vec![u32::MAX; max as usize + 1];
            for &(id, c) in pairs {
                let slot = &mut v[id as usize];
                if *slot != u32::MAX {
                    return Err(id);
                }
                *slot = c;
            }
            Ok(ClassMap::Dense(v))
        } else {
            let mut m = HashMap::with_capacity(pairs.len());
            for &(id, c) in pairs {
                if m.insert(id, c).is_some() {
                    return Err(id);
                }
            }
            Ok(ClassMap::Sparse(m))
        }
    }

    /// One past the largest id a dense map holds; 0 for a sparse one.
    pub(crate) fn id_bound(&self) -> usize {
        match self {
            ClassMap::Dense(v) => v.len(),
            ClassMap::Sparse(_) => 0,
        }
    }

    /// The class with event id `id`.
    #[inline(always)]
    pub(crate) fn get(&self, id: u64) -> Option<u32> {
        match self {
            ClassMap::Dense(v) => v.get(id as usize).copied().filter(|&c| c != u32::MAX),
            ClassMap::Sparse(m) => m.get(&id).copied(),
        }
    }
}
