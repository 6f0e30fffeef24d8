//! From ftrace records to CTF events in LTTng's kernel layout.
//!
//! [`Converter::new`] looks at the tracefs formats being recorded once and
//! builds the CTF event classes plus, per ftrace event id, a plan: a list of
//! operations that each read one field through a [`FieldAccessor`] resolved
//! up front and write one CTF field. Converting a record then runs its plan
//! with no lookup by name and no allocation.
//!
//! `raw_syscalls:sys_enter`/`sys_exit` become LTTng's per-call
//! `syscall_entry_<name>`/`syscall_exit_<name>` events: the plan is picked by
//! the syscall number in the record from a table indexed by number.
//!
//! **Thread ids.** LTTng records no thread id in events unless asked
//! (`lttng add-context -t tid`): lttng-analyses and Trace Compass follow
//! `sched_switch` per CPU (with the statedump for threads that existed
//! before) and attribute every event to the CPU's current thread. That
//! relies on every switch being traced, and kernels do not promise it: on
//! the 6.18 hosts Strata is tested on, a CPU that leaves idle through the
//! haltpoll path never emits the `swapper -> task` switch (measured: 181
//! switches into `swapper/1`, none out of it, in a 3 s recording). So by
//! default ([`TidContext::Always`]) the ftrace `common_pid` every record
//! carries anyway is kept as a stream event context `_tid`, as
//! `add-context -t tid` would write it, for 4 bytes per event. Strata's
//! state system uses it to repair a missed switch.

use strata_core::syscalls::{x86_64_all, x86_64_name};
use strata_ctf::write::{
    EventClassDesc, FieldDesc, FieldType, IntType, PacketBuilder, PacketError,
};
use strata_ftrace::format::{EventFormat, Field, FieldAccessor, FieldKind};

use crate::copy_plan::{self, CopyPlan, PlanBuilder, Step};
use crate::lttng::{self, Conv, FieldMap};

/// Whether events carry the ftrace `common_pid` as a `_tid` context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TidContext {
    /// Only when `sched_switch` is not recorded: smaller traces that rely on
    /// the kernel tracing every switch.
    Auto,
    /// Always (see the module docs).
    #[default]
    Always,
    /// Never.
    Never,
}

/// Choices the conversion leaves to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConvertOptions {
    /// The `_tid` event context policy.
    pub tid_context: TidContext,
}

/// The class ids of the statedump events, which are always declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatedumpIds {
    /// `lttng_statedump_start`.
    pub start: u32,
    /// `lttng_statedump_end`.
    pub end: u32,
    /// `lttng_statedump_process_state`.
    pub process_state: u32,
    /// `lttng_statedump_process_pid_ns`.
    pub pid_ns: u32,
}

/// The statedump class ids: the first ones, as in LTTng traces.
pub const STATEDUMP_IDS: StatedumpIds = StatedumpIds {
    start: 0,
    end: 1,
    process_state: 2,
    pid_ns: 3,
};

/// What happened to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written as an event of this class.
    Written(u32),
    /// Its ftrace id belongs to no format given to the converter; dropped.
    UnknownType(u16),
    /// Shorter than its event's fixed fields; dropped.
    Truncated(u16),
}

/// One write of one CTF field.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// An integer of `bytes` bytes: the source value (extended per its
    /// signedness) plus `add`. `off` is the source field's offset.
    Int {
        acc: FieldAccessor,
        off: u32,
        bytes: u8,
        add: i64,
    },
    /// A `char[len]` text array from any string source.
    Text { acc: FieldAccessor, len: u16 },
    /// A NUL-terminated string.
    Str { acc: FieldAccessor },
    /// `count` integers of `bytes` bytes from an array source at `off`.
    IntArray {
        acc: FieldAccessor,
        off: u32,
        count: u32,
        bytes: u8,
    },
    /// A u32 element count, then the elements of a dynamic array.
    Seq { acc: FieldAccessor, elem: u8 },
    /// The block `rwbs` text as LTTng's u32 mask.
    Rwbs { acc: FieldAccessor },
}

/// The plan of one ftrace event type.
#[derive(Debug, Clone)]
struct Plan {
    class_id: u32,
    min_len: usize,
    ops: Box<[Op]>,
    /// The same conversion as one copy plan, for classes of fixed size.
    fast: Option<CopyPlan>,
}

/// The output layout of one system call's entry arguments.
#[derive(Debug, Clone, Copy)]
struct SysEntry {
    class_id: u32,
    /// Bytes of each argument (1, 2, 4 or 8), in order; `n_args` are used.
    args: [u8; 6],
    n_args: u8,
    /// Bytes of the event payload: the `_tid` context and the arguments.
    payload_len: u16,
}

impl SysEntry {
    fn args(&self) -> &[u8] {
        self.args.get(..self.n_args as usize).unwrap_or(&[])
    }
}

/// Where the `raw_syscalls` fields sit when they have the 64-bit layout
/// (`long id` and `unsigned long args[6]`, or `long ret`), which lets the
/// fast path copy them without accessors.
#[derive(Debug, Clone, Copy)]
struct SysLayout {
    /// Offset of the 8-byte `id`.
    id: usize,
    /// Offset of `args[6]` (entry) or of the 8-byte `ret` (exit).
    value: usize,
    /// Records at least this long hold both, and `common_pid`.
    min_len: usize,
}

/// What to do with records of one ftrace id.
#[derive(Debug, Clone, Copy, Default)]
enum Slot {
    #[default]
    Unknown,
    Plain(u32),
    SysEnter {
        id: FieldAccessor,
        args: FieldAccessor,
        min_len: usize,
        fast: Option<SysLayout>,
    },
    SysExit {
        id: FieldAccessor,
        ret: FieldAccessor,
        min_len: usize,
        fast: Option<SysLayout>,
    },
}

/// Turns ftrace records into CTF events; see the module docs.
#[derive(Debug, Clone)]
pub struct Converter {
    classes: Vec<EventClassDesc>,
    slots: Vec<Slot>,
    plans: Vec<Plan>,
    sys_entry: Vec<Option<SysEntry>>,
    sys_exit: Vec<Option<u32>>,
    unknown_entry: u32,
    unknown_exit: u32,
    tid_context: bool,
    common_pid: FieldAccessor,
}

/// `common_type` and `common_pid` sit at fixed offsets in every record.
fn common_field(name: &str, offset: u32, size: u32, signed: bool) -> Field {
    Field {
        name: name.into(),
        c_type: "int".into(),
        offset,
        size,
        signed,
        kind: FieldKind::Int,
    }
}

impl Converter {
    /// Builds the event classes and plans for the events being recorded.
    ///
    /// `syscall_formats` are the `syscalls:sys_enter_<name>` formats (when
    /// tracefs has them) that name and size each call's arguments; without
    /// one, a call's entry event carries six generic `argN` fields.
    pub fn new(
        formats: &[EventFormat],
        syscall_formats: &[EventFormat],
        options: ConvertOptions,
    ) -> Converter {
        let mut c = Converter {
            classes: Vec::new(),
            slots: Vec::new(),
            plans: Vec::new(),
            sys_entry: Vec::new(),
            sys_exit: Vec::new(),
            unknown_entry: u32::MAX,
            unknown_exit: u32::MAX,
            tid_context: match options.tid_context {
                TidContext::Always => true,
                TidContext::Never => false,
                TidContext::Auto => !formats
                    .iter()
                    .any(|f| f.system == "sched" && f.name == "sched_switch"),
            },
            common_pid: common_field("common_pid", 4, 4, true).accessor(),
        };
        c.add_statedump_classes();
        let enter = formats
            .iter()
            .find(|f| f.system == "raw_syscalls" && f.name == "sys_enter");
        let exit = formats
            .iter()
            .find(|f| f.system == "raw_syscalls" && f.name == "sys_exit");
        if enter.is_some() || exit.is_some() {
            c.add_syscall_classes(enter, exit, syscall_formats);
        }
        for f in formats {
            if f.system == "raw_syscalls" && (f.name == "sys_enter" || f.name == "sys_exit") {
                continue;
            }
            c.add_plain(f);
        }
        c
    }

    /// Every event class, indexed by id.
    pub fn classes(&self) -> &[EventClassDesc] {
        &self.classes
    }

    /// Whether events carry the `_tid` context (see [`TidContext`]).
    pub fn has_tid_context(&self) -> bool {
        self.tid_context
    }

    /// The stream event context fields to declare.
    pub fn event_context(&self) -> Vec<FieldDesc> {
        if self.tid_context {
            vec![FieldDesc::int("tid", IntType::new(32, true))]
        } else {
            Vec::new()
        }
    }

    /// The statedump class ids.
    pub fn statedump_ids(&self) -> StatedumpIds {
        STATEDUMP_IDS
    }

    fn push_class(&mut self, name: String, fields: Vec<FieldDesc>) -> u32 {
        let id = self.classes.len() as u32;
        // Two ftrace events could map to one name; CTF readers key on names,
        // so keep them apart.
        let name = if self.classes.iter().any(|c| c.name == name) {
            format!("{name}_{id}")
        } else {
            name
        };
        self.classes.push(EventClassDesc { id, name, fields });
        id
    }

    fn add_statedump_classes(&mut self) {
        let i32t = IntType::new(32, true);
        self.push_class("lttng_statedump_start".into(), vec![]);
        self.push_class("lttng_statedump_end".into(), vec![]);
        self.push_class(
            "lttng_statedump_process_state".into(),
            vec![
                FieldDesc::int("tid", i32t),
                FieldDesc::int("pid", i32t),
                FieldDesc::int("ppid", i32t),
                FieldDesc::text("name", 16),
                FieldDesc::int("type", i32t),
                FieldDesc::int("mode", i32t),
                FieldDesc::int("submode", i32t),
                FieldDesc::int("status", i32t),
                FieldDesc::int("cpu", IntType::new(32, false)),
                FieldDesc::int("file_table_address", IntType::hex(64)),
            ],
        );
        self.push_class(
            "lttng_statedump_process_pid_ns".into(),
            vec![
                FieldDesc::int("tid", i32t),
                FieldDesc::int("vtid", i32t),
                FieldDesc::int("vpid", i32t),
                FieldDesc::int("vppid", i32t),
                FieldDesc::int("ns_level", i32t),
                FieldDesc::int("ns_inum", IntType::new(32, false)),
            ],
        );
    }

    fn add_syscall_classes(
        &mut self,
        enter: Option<&EventFormat>,
        exit: Option<&EventFormat>,
        syscall_formats: &[EventFormat],
    ) {
        let id32 = FieldDesc::int("id", IntType::new(32, true));
        let ret = FieldDesc::int("ret", IntType::new(64, true));
        let args6 = FieldDesc::new(
            "args",
            FieldType::Array {
                elem: IntType::new(64, false),
                len: 6,
            },
        );
        self.unknown_entry = self.push_class(
            "syscall_entry_unknown".into(),
            vec![id32.clone(), args6.clone()],
        );
        self.unknown_exit = self.push_class(
            "syscall_exit_unknown".into(),
            vec![id32, ret.clone(), args6],
        );
        let table_len = x86_64_all()
            .map(|(nr, _)| nr as usize + 1)
            .max()
            .unwrap_or(0);
        self.sys_entry = vec![None; table_len];
        self.sys_exit = vec![None; table_len];
        for (nr, name) in x86_64_all() {
            let detail = syscall_formats
                .iter()
                .find(|f| f.name.strip_prefix("sys_enter_") == Some(name));
            let (fields, args) = match detail {
                Some(f) => syscall_args(f),
                None => generic_args(),
            };
            let entry_id = self.push_class(format!("syscall_entry_{name}"), fields);
            let exit_id = self.push_class(format!("syscall_exit_{name}"), vec![ret.clone()]);
            let payload_len = self.tid_len() + args.iter().map(|&b| b as usize).sum::<usize>();
            let mut sizes = [0u8; 6];
            for (d, &a) in sizes.iter_mut().zip(args.iter()) {
                *d = a;
            }
            if let Some(slot) = self.sys_entry.get_mut(nr as usize) {
                *slot = Some(SysEntry {
                    class_id: entry_id,
                    args: sizes,
                    n_args: args.len().min(6) as u8,
                    payload_len: payload_len as u16,
                });
            }
            if let Some(slot) = self.sys_exit.get_mut(nr as usize) {
                *slot = Some(exit_id);
            }
        }
        if let Some(f) = enter {
            if let (Some(id), Some(args)) = (f.field("id"), f.field("args")) {
                let wide = args.kind == FieldKind::Array { elem_size: 8 } && args.size == 48;
                self.set_slot(
                    f.id,
                    Slot::SysEnter {
                        id: id.accessor(),
                        args: args.accessor(),
                        min_len: f.min_record_len() as usize,
                        fast: sys_layout(f, id, args, wide),
                    },
                );
            }
        }
        if let Some(f) = exit {
            if let (Some(id), Some(ret)) = (f.field("id"), f.field("ret")) {
                let wide = ret.kind == FieldKind::Int && ret.size == 8;
                self.set_slot(
                    f.id,
                    Slot::SysExit {
                        id: id.accessor(),
                        ret: ret.accessor(),
                        min_len: f.min_record_len() as usize,
                        fast: sys_layout(f, id, ret, wide),
                    },
                );
            }
        }
    }

    fn set_slot(&mut self, ftrace_id: u16, slot: Slot) {
        let i = ftrace_id as usize;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, Slot::Unknown);
        }
        self.slots[i] = slot;
    }

    fn add_plain(&mut self, f: &EventFormat) {
        let (name, maps) = lttng::lookup(&f.system, &f.name).unwrap_or((f.name.clone(), &[]));
        let mut fields = Vec::new();
        let mut ops = Vec::new();
        let mut used = vec![false; f.fields.len()];
        for m in maps {
            if let Some((desc, op)) = mapped_field(f, m, &mut used, self.common_pid) {
                fields.push(desc);
                ops.push(op);
            }
        }
        for (i, field) in f.fields.iter().enumerate() {
            if used[i] {
                continue;
            }
            let name = if fields.iter().any(|d: &FieldDesc| d.name == field.name) {
                format!("ftrace_{}", field.name)
            } else {
                field.name.clone()
            };
            generic_field(field, &name, &mut fields, &mut ops);
        }
        let class_id = self.push_class(name, fields);
        let plan = self.plans.len() as u32;
        let min_len = f.min_record_len() as usize;
        self.plans.push(Plan {
            class_id,
            min_len,
            fast: self.copy_plan(&ops, min_len),
            ops: ops.into_boxed_slice(),
        });
        self.set_slot(f.id, Slot::Plain(plan));
    }

    /// Bytes of the `_tid` context of each event.
    fn tid_len(&self) -> usize {
        if self.tid_context {
            4
        } else {
            0
        }
    }

    /// The copy plan doing what `ops` (after the `_tid` context) do, when
    /// every op writes a fixed number of bytes.
    fn copy_plan(&self, ops: &[Op], min_len: usize) -> Option<CopyPlan> {
        let mut p = PlanBuilder::default();
        if self.tid_context {
            p.int(self.common_pid, 4, 4, 0);
        }
        for op in ops {
            match *op {
                Op::Int {
                    acc,
                    off,
                    bytes,
                    add,
                } => p.int(acc, off, bytes, add),
                Op::Text { acc, len } => p.push(Step::Text {
                    acc,
                    len: len as u32,
                }),
                Op::IntArray {
                    acc,
                    off,
                    count,
                    bytes,
                } => {
                    let same_width = matches!(acc.kind(), FieldKind::Array { elem_size } if elem_size == bytes as u32);
                    p.push(if same_width {
                        Step::Copy {
                            src: off,
                            len: count * bytes as u32,
                        }
                    } else {
                        Step::Elements { acc, count, bytes }
                    });
                }
                Op::Rwbs { acc } => p.push(Step::Rwbs { acc }),
                Op::Str { .. } | Op::Seq { .. } => return None,
            }
        }
        Some(p.finish(min_len))
    }

    /// Converts one record at time `ts` into an event appended to `b`.
    ///
    /// Returns [`PacketError::Full`] when the packet has no room (nothing is
    /// written; flush and call again), and an [`Outcome`] otherwise.
    #[inline(always)]
    pub fn write(
        &self,
        b: &mut PacketBuilder,
        ts: u64,
        rec: &[u8],
    ) -> Result<Outcome, PacketError> {
        let Some(&[lo, hi]) = rec.get(0..2) else {
            return Ok(Outcome::Truncated(0));
        };
        let ftrace_id = u16::from_le_bytes([lo, hi]);
        match self.slots.get(ftrace_id as usize) {
            Some(Slot::Plain(p)) => {
                if let Some(plan) = self.plans.get(*p as usize) {
                    if let Some(fast) = plan.fast.as_ref().filter(|f| f.fits(rec)) {
                        let out = b.append(plan.class_id, ts, fast.payload_len())?;
                        fast.fill(rec, out);
                        return Ok(Outcome::Written(plan.class_id));
                    }
                }
            }
            Some(Slot::SysEnter { fast: Some(l), .. }) if rec.len() >= l.min_len => {
                return self.sys_enter_fast(b, ts, rec, l)
            }
            Some(Slot::SysExit { fast: Some(l), .. }) if rec.len() >= l.min_len => {
                return self.sys_exit_fast(b, ts, rec, l)
            }
            _ => {}
        }
        self.write_fields(b, ts, rec, ftrace_id)
    }

    /// `raw_syscalls:sys_enter` with the 64-bit layout: the call's class,
    /// the `_tid` context and its arguments, each cut to its CTF width.
    #[inline(always)]
    fn sys_enter_fast(
        &self,
        b: &mut PacketBuilder,
        ts: u64,
        rec: &[u8],
        l: &SysLayout,
    ) -> Result<Outcome, PacketError> {
        let nr = read_i64(rec, l.id);
        let entry = usize::try_from(nr)
            .ok()
            .and_then(|n| self.sys_entry.get(n))
            .and_then(Option::as_ref);
        let Some(s) = entry else {
            return self.sys_enter_unknown(b, ts, rec, l);
        };
        let out = b.append(s.class_id, ts, s.payload_len as usize)?;
        let mut at = self.put_tid(out, rec);
        for (i, &n) in s.args().iter().enumerate() {
            put_low(out, at, read_u64(rec, l.value + 8 * i), n);
            at += n as usize;
        }
        Ok(Outcome::Written(s.class_id))
    }

    /// `syscall_entry_unknown`: the number as an i32 (its low bytes) and
    /// the six raw arguments.
    #[inline(never)]
    fn sys_enter_unknown(
        &self,
        b: &mut PacketBuilder,
        ts: u64,
        rec: &[u8],
        l: &SysLayout,
    ) -> Result<Outcome, PacketError> {
        let tid = self.tid_len();
        let out = b.append(self.unknown_entry, ts, tid + 4 + 48)?;
        let mut w = Cursor::new(out);
        w.copy(rec, 4, tid);
        w.copy(rec, l.id, 4);
        w.copy(rec, l.value, 48);
        Ok(Outcome::Written(self.unknown_entry))
    }

    /// `raw_syscalls:sys_exit` with the 64-bit layout: `_tid` and `ret`, or
    /// for an unknown call also its number and six zero arguments.
    #[inline(always)]
    fn sys_exit_fast(
        &self,
        b: &mut PacketBuilder,
        ts: u64,
        rec: &[u8],
        l: &SysLayout,
    ) -> Result<Outcome, PacketError> {
        let nr = read_i64(rec, l.id);
        let known = usize::try_from(nr)
            .ok()
            .and_then(|n| self.sys_exit.get(n).copied().flatten());
        let Some(class_id) = known else {
            return self.sys_exit_unknown(b, ts, rec, l);
        };
        let out = b.append(class_id, ts, self.tid_len() + 8)?;
        let at = self.put_tid(out, rec);
        put_low(out, at, read_u64(rec, l.value), 8);
        Ok(Outcome::Written(class_id))
    }

    #[inline(never)]
    fn sys_exit_unknown(
        &self,
        b: &mut PacketBuilder,
        ts: u64,
        rec: &[u8],
        l: &SysLayout,
    ) -> Result<Outcome, PacketError> {
        let tid = self.tid_len();
        let out = b.append(self.unknown_exit, ts, tid + 4 + 8 + 48)?;
        let mut w = Cursor::new(out);
        w.copy(rec, 4, tid);
        w.copy(rec, l.id, 4);
        w.copy(rec, l.value, 8);
        w.zeros(48);
        Ok(Outcome::Written(self.unknown_exit))
    }

    /// Writes the `_tid` context (the record's `common_pid`, bytes 4..8) at
    /// the start of `out` when events carry it; returns the bytes written.
    #[inline(always)]
    fn put_tid(&self, out: &mut [u8], rec: &[u8]) -> usize {
        if self.tid_context {
            put_low(out, 0, read_u64(rec, 0) >> 32, 4);
            4
        } else {
            0
        }
    }

    /// The per-field path: every class, every record length, with a
    /// bounds-checked write per field. The fast paths above write the same
    /// bytes for the records they take.
    #[inline(never)]
    fn write_fields(
        &self,
        b: &mut PacketBuilder,
        ts: u64,
        rec: &[u8],
        ftrace_id: u16,
    ) -> Result<Outcome, PacketError> {
        match self
            .slots
            .get(ftrace_id as usize)
            .copied()
            .unwrap_or_default()
        {
            Slot::Unknown => Ok(Outcome::UnknownType(ftrace_id)),
            Slot::Plain(p) => {
                let Some(plan) = self.plans.get(p as usize) else {
                    return Ok(Outcome::UnknownType(ftrace_id));
                };
                if rec.len() < plan.min_len {
                    return Ok(Outcome::Truncated(ftrace_id));
                }
                let mut e = b.event(plan.class_id, ts);
                if self.tid_context {
                    e.i32(self.common_pid.i64(rec).unwrap_or(0) as i32);
                }
                for op in plan.ops.iter() {
                    run(op, rec, &mut e);
                }
                e.commit().map(|()| Outcome::Written(plan.class_id))
            }
            Slot::SysEnter {
                id, args, min_len, ..
            } => {
                if rec.len() < min_len {
                    return Ok(Outcome::Truncated(ftrace_id));
                }
                let nr = id.i64(rec).unwrap_or(-1);
                let entry = usize::try_from(nr)
                    .ok()
                    .and_then(|n| self.sys_entry.get(n))
                    .and_then(Option::as_ref);
                let class_id = entry.map_or(self.unknown_entry, |s| s.class_id);
                let mut e = b.event(class_id, ts);
                if self.tid_context {
                    e.i32(self.common_pid.i64(rec).unwrap_or(0) as i32);
                }
                match entry {
                    Some(s) => {
                        for (i, &bytes) in s.args().iter().enumerate() {
                            e.int(bytes as usize, args.element(rec, i).unwrap_or(0) as u64);
                        }
                    }
                    None => {
                        e.i32(nr as i32);
                        for i in 0..6 {
                            e.u64(args.element(rec, i).unwrap_or(0) as u64);
                        }
                    }
                }
                e.commit().map(|()| Outcome::Written(class_id))
            }
            Slot::SysExit {
                id, ret, min_len, ..
            } => {
                if rec.len() < min_len {
                    return Ok(Outcome::Truncated(ftrace_id));
                }
                let nr = id.i64(rec).unwrap_or(-1);
                let known = usize::try_from(nr)
                    .ok()
                    .and_then(|n| self.sys_exit.get(n).copied().flatten());
                let class_id = known.unwrap_or(self.unknown_exit);
                let mut e = b.event(class_id, ts);
                if self.tid_context {
                    e.i32(self.common_pid.i64(rec).unwrap_or(0) as i32);
                }
                if known.is_none() {
                    e.i32(nr as i32);
                }
                e.i64(ret.i64(rec).unwrap_or(0));
                if known.is_none() {
                    e.zeros(6 * 8);
                }
                e.commit().map(|()| Outcome::Written(class_id))
            }
        }
    }

    /// The name of event class `id`.
    pub fn class_name(&self, id: u32) -> Option<&str> {
        self.classes.get(id as usize).map(|c| c.name.as_str())
    }

    /// The class a syscall entry with number `nr` is written as.
    pub fn syscall_entry_class(&self, nr: i64) -> Option<u32> {
        let known = usize::try_from(nr)
            .ok()
            .and_then(|n| self.sys_entry.get(n))
            .and_then(Option::as_ref)
            .map(|s| s.class_id);
        match known {
            Some(id) => Some(id),
            None if self.unknown_entry != u32::MAX => Some(self.unknown_entry),
            None => None,
        }
    }
}

/// Appends the statedump `_tid` context when the converter writes one; the
/// statedump module writes its events through the same builder.
pub(crate) fn write_context_tid(
    c: &Converter,
    e: &mut strata_ctf::write::EventEncoder<'_>,
    tid: i32,
) {
    if c.tid_context {
        e.i32(tid);
    }
}

#[inline]
fn run(op: &Op, rec: &[u8], e: &mut strata_ctf::write::EventEncoder<'_>) {
    match *op {
        Op::Int {
            acc, bytes, add, ..
        } => {
            let v = acc.i64(rec).unwrap_or(0).wrapping_add(add);
            e.int(bytes as usize, v as u64);
        }
        Op::Text { acc, len } => e.text_array(acc.str(rec).unwrap_or(&[]), len as usize),
        Op::Str { acc } => e.string(acc.str(rec).unwrap_or(&[])),
        Op::IntArray {
            acc, count, bytes, ..
        } => {
            for i in 0..count as usize {
                e.int(bytes as usize, acc.element(rec, i).unwrap_or(0) as u64);
            }
        }
        Op::Seq { acc, elem } => {
            let data = acc.bytes(rec).unwrap_or(&[]);
            let n = data.len() / elem.max(1) as usize;
            e.u32(n as u32);
            e.bytes(&data[..n * elem.max(1) as usize]);
        }
        Op::Rwbs { acc } => e.u32(lttng::rwbs_mask(acc.bytes(rec).unwrap_or(&[]))),
    }
}

/// The LTTng field `m` of event `f`, or `None` when the ftrace event lacks
/// its source (an older or newer kernel).
fn mapped_field(
    f: &EventFormat,
    m: &FieldMap,
    used: &mut [bool],
    common_pid: FieldAccessor,
) -> Option<(FieldDesc, Op)> {
    if m.conv == Conv::CommonPid {
        return Some((
            FieldDesc::int(m.name, IntType::new(32, true)),
            Op::Int {
                acc: common_pid,
                off: 4,
                bytes: 4,
                add: 0,
            },
        ));
    }
    let i = f.fields.iter().position(|x| x.name == m.from)?;
    let src = &f.fields[i];
    let acc = src.accessor();
    let off = src.offset;
    let is_text = matches!(
        src.kind,
        FieldKind::CharArray
            | FieldKind::DataLoc { is_char: true, .. }
            | FieldKind::RelLoc { is_char: true, .. }
    );
    let int_ok = src.kind == FieldKind::Int;
    let out = match m.conv {
        Conv::Same => {
            let mut fields = Vec::new();
            let mut ops = Vec::new();
            generic_field(src, m.name, &mut fields, &mut ops);
            // Only single-field shapes map through `Same`; sequences carry a
            // length field and go through the generic path instead.
            if fields.len() != 1 {
                return None;
            }
            (fields.pop()?, ops.pop()?)
        }
        Conv::Prio if int_ok => (
            FieldDesc::int(m.name, IntType::new(32, true)),
            Op::Int {
                acc,
                off,
                bytes: 4,
                add: -100,
            },
        ),
        Conv::Comm if is_text => (FieldDesc::text(m.name, 16), Op::Text { acc, len: 16 }),
        Conv::Str if is_text => (FieldDesc::string(m.name), Op::Str { acc }),
        Conv::Int(bits, signed) if int_ok => (
            FieldDesc::int(m.name, IntType::new(bits, signed)),
            Op::Int {
                acc,
                off,
                bytes: bits / 8,
                add: 0,
            },
        ),
        Conv::Hex(bits) if int_ok => (
            FieldDesc::int(m.name, IntType::hex(bits)),
            Op::Int {
                acc,
                off,
                bytes: bits / 8,
                add: 0,
            },
        ),
        Conv::Rwbs if is_text => (
            FieldDesc::int(m.name, IntType::new(32, false)),
            Op::Rwbs { acc },
        ),
        // The kernel changed the field's shape: leave it to the generic path
        // under its ftrace name rather than misread it.
        _ => return None,
    };
    used[i] = true;
    Some(out)
}

fn int_type_for(field: &Field, bytes: u32) -> IntType {
    if field.c_type.trim_end().ends_with('*') {
        IntType::hex((bytes * 8) as u8)
    } else {
        IntType::new((bytes * 8) as u8, field.signed)
    }
}

/// Maps an ftrace field by its layout alone, named `name`.
fn generic_field(field: &Field, name: &str, fields: &mut Vec<FieldDesc>, ops: &mut Vec<Op>) {
    let acc = field.accessor();
    let off = field.offset;
    let scalar = |n: u32| matches!(n, 1 | 2 | 4 | 8);
    match field.kind {
        FieldKind::Int if scalar(field.size) => {
            fields.push(FieldDesc::int(name, int_type_for(field, field.size)));
            ops.push(Op::Int {
                acc,
                off,
                bytes: field.size as u8,
                add: 0,
            });
        }
        FieldKind::CharArray => {
            let len = field.size.min(u16::MAX as u32) as u16;
            fields.push(FieldDesc::text(name, len as u32));
            ops.push(Op::Text { acc, len });
        }
        FieldKind::Array { elem_size } if scalar(elem_size) => {
            let count = field.size / elem_size;
            fields.push(FieldDesc::new(
                name,
                FieldType::Array {
                    elem: int_type_for(field, elem_size),
                    len: count,
                },
            ));
            ops.push(Op::IntArray {
                acc,
                off,
                count,
                bytes: elem_size as u8,
            });
        }
        FieldKind::DataLoc { is_char: true, .. } | FieldKind::RelLoc { is_char: true, .. } => {
            fields.push(FieldDesc::string(name));
            ops.push(Op::Str { acc });
        }
        FieldKind::DataLoc { elem_size, .. }
        | FieldKind::RelLoc { elem_size, .. }
        | FieldKind::Flexible { elem_size }
            if scalar(elem_size) =>
        {
            let len_name = format!("_{name}_length");
            fields.push(FieldDesc::int(len_name.clone(), IntType::new(32, false)));
            fields.push(FieldDesc::new(
                name,
                FieldType::Sequence {
                    elem: int_type_for(field, elem_size),
                    length_field: len_name,
                },
            ));
            ops.push(Op::Seq {
                acc,
                elem: elem_size as u8,
            });
        }
        // Odd sizes (u128, packed structs): the raw bytes, in hex.
        FieldKind::Int | FieldKind::Array { .. } => {
            fields.push(FieldDesc::new(
                name,
                FieldType::Array {
                    elem: IntType::hex(8),
                    len: field.size,
                },
            ));
            ops.push(Op::IntArray {
                acc: bytes_accessor(field),
                off,
                count: field.size,
                bytes: 1,
            });
        }
        FieldKind::DataLoc { .. } | FieldKind::RelLoc { .. } | FieldKind::Flexible { .. } => {
            let len_name = format!("_{name}_length");
            fields.push(FieldDesc::int(len_name.clone(), IntType::new(32, false)));
            fields.push(FieldDesc::new(
                name,
                FieldType::Sequence {
                    elem: IntType::hex(8),
                    length_field: len_name,
                },
            ));
            ops.push(Op::Seq { acc, elem: 1 });
        }
    }
}

/// The fast-path layout of a `raw_syscalls` format whose `id` is 8 bytes
/// and whose `value` field (`args` or `ret`) is `wide`.
fn sys_layout(f: &EventFormat, id: &Field, value: &Field, wide: bool) -> Option<SysLayout> {
    (wide && id.kind == FieldKind::Int && id.size == 8).then(|| SysLayout {
        id: id.offset as usize,
        value: value.offset as usize,
        // `_tid` reads common_pid, bytes 4..8.
        min_len: (f.min_record_len() as usize).max(8),
    })
}

/// The 8-byte little-endian integer at `at`; -1 (no such call) when the
/// record is shorter.
#[inline(always)]
fn read_i64(rec: &[u8], at: usize) -> i64 {
    rec.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(-1, i64::from_le_bytes)
}

/// The 8 bytes at `at` as a little-endian u64; 0 when the record is shorter.
#[inline(always)]
fn read_u64(rec: &[u8], at: usize) -> u64 {
    rec.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Writes the low `n` bytes (1, 2, 4 or 8) of `v` at `at`, little-endian:
/// how an integer of that width holds a value. Each width is its own
/// fixed-size store, not a call to `memcpy`.
#[inline(always)]
fn put_low(out: &mut [u8], at: usize, v: u64, n: u8) {
    let b = v.to_le_bytes();
    match n {
        8 => put(out, at, b),
        4 => put(out, at, [b[0], b[1], b[2], b[3]]),
        2 => put(out, at, [b[0], b[1]]),
        _ => put(out, at, [b[0]]),
    }
}

#[inline(always)]
fn put<const N: usize>(out: &mut [u8], at: usize, b: [u8; N]) {
    if let Some(d) = out.get_mut(at..at + N) {
        d.copy_from_slice(&b);
    }
}

/// Writes an event payload front to back.
struct Cursor<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn new(out: &'a mut [u8]) -> Self {
        Cursor { out, at: 0 }
    }

    /// The next `len` bytes, copied from the record at `src`.
    #[inline(always)]
    fn copy(&mut self, rec: &[u8], src: usize, len: usize) {
        if let Some(dst) = self.out.get_mut(self.at..self.at + len) {
            copy_plan::copy(dst, rec, src, len);
        }
        self.at += len;
    }

    /// The next `len` bytes, zero.
    #[inline(always)]
    fn zeros(&mut self, len: usize) {
        if let Some(dst) = self.out.get_mut(self.at..self.at + len) {
            dst.fill(0);
        }
        self.at += len;
    }
}

/// An accessor reading `field`'s bytes one at a time.
fn bytes_accessor(field: &Field) -> FieldAccessor {
    Field {
        kind: FieldKind::Array { elem_size: 1 },
        signed: false,
        ..field.clone()
    }
    .accessor()
}

/// Width and signedness of a syscall argument from its C type, as LTTng
/// declares it (the tracefs format stores every argument in 8 bytes).
fn syscall_arg_type(c_type: &str) -> IntType {
    let t = c_type.trim();
    if t.ends_with('*') {
        return IntType::hex(64);
    }
    let t = t.trim_start_matches("const ").trim();
    match t {
        "int" | "pid_t" | "key_t" | "timer_t" | "clockid_t" | "mqd_t" | "key_serial_t"
        | "__s32" | "s32" | "int32_t" => IntType::new(32, true),
        "unsigned int" | "unsigned" | "u32" | "__u32" | "uid_t" | "gid_t" | "qid_t"
        | "old_uid_t" | "old_gid_t" | "rwf_t" | "uint32_t" => IntType::new(32, false),
        "umode_t" | "unsigned short" | "u16" | "__u16" => IntType::new(16, false),
        "short" | "s16" | "__s16" => IntType::new(16, true),
        "long"
        | "loff_t"
        | "off_t"
        | "ssize_t"
        | "__s64"
        | "s64"
        | "long long"
        | "time_t"
        | "__kernel_old_time_t"
        | "clock_t" => IntType::new(64, true),
        _ => IntType::new(64, false),
    }
}

/// The entry fields of a syscall from its `sys_enter_<name>` format.
fn syscall_args(f: &EventFormat) -> (Vec<FieldDesc>, Box<[u8]>) {
    let mut fields = Vec::new();
    let mut args = Vec::new();
    for field in f.fields.iter().filter(|x| x.name != "__syscall_nr").take(6) {
        let t = syscall_arg_type(&field.c_type);
        args.push(t.bytes() as u8);
        fields.push(FieldDesc::int(field.name.clone(), t));
    }
    (fields, args.into_boxed_slice())
}

/// Six anonymous 64-bit arguments, for calls tracefs does not describe.
fn generic_args() -> (Vec<FieldDesc>, Box<[u8]>) {
    let fields = (0..6)
        .map(|i| FieldDesc::int(format!("arg{i}"), IntType::new(64, false)))
        .collect();
    (fields, vec![8u8; 6].into_boxed_slice())
}

/// The name of syscall `nr`, `None` when the x86-64 table has no such call.
pub fn syscall_name(nr: i64) -> Option<&'static str> {
    x86_64_name(nr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_ctf::write::{HeaderKind, PacketConfig, PacketStart, Uuid};

    fn fmt(system: &str, text: &str) -> EventFormat {
        strata_ftrace::format::parse(system, text).unwrap()
    }

    #[test]
    fn syscall_arg_types_follow_lttng() {
        assert_eq!(syscall_arg_type("int"), IntType::new(32, true));
        assert_eq!(syscall_arg_type("const char *"), IntType::hex(64));
        assert_eq!(syscall_arg_type("umode_t"), IntType::new(16, false));
        assert_eq!(syscall_arg_type("size_t"), IntType::new(64, false));
        assert_eq!(syscall_arg_type("unsigned int"), IntType::new(32, false));
    }

    /// Every format under `root/<system>/<event>/format` (tracefs) or
    /// `root/<system>/<event>.format` (fixtures) that parses.
    fn formats_under(root: &std::path::Path) -> Vec<EventFormat> {
        let mut out = Vec::new();
        let Ok(systems) = std::fs::read_dir(root) else {
            return out;
        };
        for sys in systems.flatten().filter(|e| e.path().is_dir()) {
            let system = sys.file_name().to_string_lossy().into_owned();
            let Ok(entries) = std::fs::read_dir(sys.path()) else {
                continue;
            };
            for e in entries.flatten() {
                let path = if e.path().is_dir() {
                    e.path().join("format")
                } else {
                    e.path()
                };
                if let Some(f) = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| strata_ftrace::format::parse(&system, &t).ok())
                {
                    out.push(f);
                }
            }
        }
        out.sort_by_key(|f| f.id);
        out
    }

    /// A small deterministic generator, so a failure replays.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// A record of `f` with random field values: plausible ones for the
    /// fields the converter interprets (syscall numbers, string locations)
    /// and random bytes elsewhere, sometimes cut short or left long.
    fn random_record(f: &EventFormat, rng: &mut Rng) -> Vec<u8> {
        let min = f.min_record_len() as usize;
        let len = match rng.below(10) {
            0 => rng.below(min as u64 + 1) as usize,
            1 | 2 => min + rng.below(64) as usize,
            _ => min,
        };
        let mut rec: Vec<u8> = (0..len.max(2)).map(|_| rng.next() as u8).collect();
        rec[0..2].copy_from_slice(&f.id.to_le_bytes());
        for field in f.fields.iter() {
            let o = field.offset as usize;
            let Some(slot) = rec.get_mut(o..o + field.size as usize) else {
                continue;
            };
            match field.kind {
                FieldKind::Int if field.name == "id" => {
                    let nr = rng.below(480) as i64 - 20;
                    slot.copy_from_slice(&nr.to_le_bytes()[..slot.len()]);
                }
                FieldKind::DataLoc { .. } | FieldKind::RelLoc { .. } if rng.below(4) != 0 => {
                    let at = rng.below(len as u64 + 8) as u32;
                    let n = rng.below(24) as u32;
                    slot.copy_from_slice(&((n << 16) | at).to_le_bytes()[..slot.len()]);
                }
                FieldKind::CharArray if rng.below(2) == 0 => {
                    let cut = rng.below(slot.len() as u64 + 1) as usize;
                    slot[cut..].fill(0);
                }
                _ => {}
            }
        }
        rec
    }

    /// Writes `recs` through `write` into one packet; the packet's bytes and
    /// the outcomes.
    fn packet_of(
        recs: &[Vec<u8>],
        mut write: impl FnMut(&mut PacketBuilder, u64, &[u8]) -> Result<Outcome, PacketError>,
    ) -> (Vec<u8>, Vec<Result<Outcome, PacketError>>) {
        let mut b = PacketBuilder::new(PacketConfig {
            trace_uuid: Uuid::default(),
            header: HeaderKind::Large,
            capacity: 1 << 20,
        })
        .unwrap();
        b.begin(PacketStart::default());
        let outcomes = recs
            .iter()
            .enumerate()
            // Gaps past 2^32 now and then, for the extended headers.
            .map(|(i, r)| write(&mut b, (i as u64 / 7) << 31 | i as u64, r))
            .collect();
        (b.finish(0, 0, 0).unwrap().bytes.to_vec(), outcomes)
    }

    /// The fast paths (copy plans, the syscall paths) write exactly what the
    /// per-field path writes, for every event format of the running kernel
    /// (and the fixtures), with and without the `_tid` context.
    #[test]
    fn fast_paths_write_what_the_field_path_writes() {
        let fixtures = formats_under(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events"),
        );
        let live = formats_under(std::path::Path::new("/sys/kernel/tracing/events"));
        if live.is_empty() {
            println!(
                "fast path check on the fixtures only: no readable tracefs at /sys/kernel/tracing"
            );
        }
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let mut fast_plans = 0;
        for set in [fixtures, live].iter().filter(|s| !s.is_empty()) {
            let (syscalls, events): (Vec<_>, Vec<_>) =
                set.iter().cloned().partition(|f| f.system == "syscalls");
            for tid_context in [TidContext::Always, TidContext::Never] {
                let c = Converter::new(&events, &syscalls, ConvertOptions { tid_context });
                fast_plans += c.plans.iter().filter(|p| p.fast.is_some()).count();
                for f in &events {
                    let recs: Vec<_> = (0..24).map(|_| random_record(f, &mut rng)).collect();
                    let fast = packet_of(&recs, |b, ts, r| c.write(b, ts, r));
                    let slow = packet_of(&recs, |b, ts, r| {
                        let id = u16::from_le_bytes([r[0], r[1]]);
                        c.write_fields(b, ts, r, id)
                    });
                    assert_eq!(fast.1, slow.1, "{}:{} outcomes", f.system, f.name);
                    assert!(
                        fast.0 == slow.0,
                        "{}:{} ({tid_context:?}): the fast path wrote other bytes",
                        f.system,
                        f.name
                    );
                }
            }
        }
        assert!(fast_plans > 10, "only {fast_plans} classes got a copy plan");
    }

    #[test]
    fn unknown_ids_and_short_records_are_reported() {
        let sw = fmt(
            "sched",
            "name: sched_wakeup\nID: 300\nformat:\n\
             \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
             \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\
             \tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
             \tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n",
        );
        let c = Converter::new(&[sw], &[], ConvertOptions::default());
        assert!(
            c.has_tid_context(),
            "no sched_switch: the tid context is on"
        );
        let mut b = PacketBuilder::new(PacketConfig {
            trace_uuid: Uuid::default(),
            header: HeaderKind::Large,
            capacity: 4096,
        })
        .unwrap();
        b.begin(PacketStart::default());
        assert_eq!(c.write(&mut b, 0, &[1]).unwrap(), Outcome::Truncated(0));
        assert_eq!(
            c.write(&mut b, 0, &[7, 0, 0, 0]).unwrap(),
            Outcome::UnknownType(7)
        );
        let mut rec = vec![0u8; 28];
        rec[0..2].copy_from_slice(&300u16.to_le_bytes());
        assert_eq!(
            c.write(&mut b, 0, &rec[..20]).unwrap(),
            Outcome::Truncated(300)
        );
        assert!(matches!(
            c.write(&mut b, 0, &rec).unwrap(),
            Outcome::Written(_)
        ));
    }
}
