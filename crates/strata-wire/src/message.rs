//! Every message of the protocol, its kind byte and its body encoding.
//!
//! Bodies are sequences of little-endian fields (see `docs/protocol.md`
//! for each layout). A decoder skips bytes after the last field it knows,
//! so a later minor version may append fields to any message.

use crate::batch::{PacketEntries, PageEntries};
use crate::body::{BodyReader, BodyWriter};
use crate::error::WireError;
use crate::frame::{encode_frame, Compression, FrameHeader};
use crate::vm_hints::VmHints;
use strata_core::{ClockDesc, HostInfo};

/// The protocol versions this build speaks (negotiated in the handshake).
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest protocol version this build speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// Kind bytes. Agent-to-relay kinds are below 0x80, relay-to-agent kinds
/// 0x80 and above; [`HEARTBEAT`](kind::HEARTBEAT) goes both ways.
pub mod kind {
    /// Agent: the handshake.
    pub const HELLO: u8 = 0x01;
    /// Agent: the ring-buffer page layout (`events/header_page`).
    pub const PAGE_LAYOUT: u8 = 0x02;
    /// Agent: the trace clock.
    pub const CLOCK: u8 = 0x03;
    /// Agent: tracefs `format` texts.
    pub const FORMATS: u8 = 0x04;
    /// Agent (replay): CTF TSDL metadata.
    pub const CTF_METADATA: u8 = 0x05;
    /// Agent: the metadata sent so far describes the data that follows.
    pub const METADATA_DONE: u8 = 0x06;
    /// Agent: the VMs the host runs (names, UUIDs, vCPU threads);
    /// ignorable, so older relays skip it.
    pub const VM_HINTS: u8 = 0x07;
    /// Agent, sequenced: raw ring-buffer pages of one CPU.
    pub const PAGES: u8 = 0x10;
    /// Agent, sequenced: whole CTF packets of one stream (replay).
    pub const PACKETS: u8 = 0x11;
    /// Agent, sequenced: an exact count of lost events or pages.
    pub const LOST: u8 = 0x12;
    /// Agent, sequenced: the process state dump.
    pub const STATEDUMP: u8 = 0x13;
    /// Agent: the outcome of a control command.
    pub const CONTROL_RESULT: u8 = 0x14;
    /// Either side: the connection ends on purpose.
    pub const GOODBYE: u8 = 0x15;
    /// Either side: still here.
    pub const HEARTBEAT: u8 = 0x20;
    /// Relay: the handshake is accepted; where to resume.
    pub const WELCOME: u8 = 0x81;
    /// Relay: the handshake is refused.
    pub const REFUSED: u8 = 0x82;
    /// Relay: cumulative acknowledgement.
    pub const ACK: u8 = 0x83;
    /// Relay: a command for the agent.
    pub const CONTROL: u8 = 0x84;
}

/// Whether frames of this kind carry a sequence number (and are kept by the
/// agent until acknowledged).
pub fn is_sequenced(kind: u8) -> bool {
    matches!(
        kind,
        kind::PAGES | kind::PACKETS | kind::LOST | kind::STATEDUMP
    )
}

/// The name of a kind, for logs and errors.
pub fn kind_name(k: u8) -> &'static str {
    match k {
        kind::HELLO => "Hello",
        kind::PAGE_LAYOUT => "PageLayout",
        kind::CLOCK => "Clock",
        kind::FORMATS => "Formats",
        kind::CTF_METADATA => "CtfMetadata",
        kind::METADATA_DONE => "MetadataDone",
        kind::VM_HINTS => "VmHints",
        kind::PAGES => "Pages",
        kind::PACKETS => "Packets",
        kind::LOST => "Lost",
        kind::STATEDUMP => "Statedump",
        kind::CONTROL_RESULT => "ControlResult",
        kind::GOODBYE => "Goodbye",
        kind::HEARTBEAT => "Heartbeat",
        kind::WELCOME => "Welcome",
        kind::REFUSED => "Refused",
        kind::ACK => "Ack",
        kind::CONTROL => "Control",
        _ => "Unknown",
    }
}

/// What the agent streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Raw ring-buffer pages from tracefs (code 1).
    Live,
    /// CTF packets of a recorded trace (code 2).
    Replay,
}

/// The agent's handshake: who it is, what it streams, where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Lowest protocol version the agent speaks.
    pub min_version: u16,
    /// Highest protocol version the agent speaks.
    pub max_version: u16,
    /// The agent software and version, e.g. `strata-agent 0.1.0`.
    pub software: String,
    /// The name the relay files this host under (`--host-id`, default the
    /// host name). The relay must sanitise it before using it in a path.
    pub host_id: String,
    /// The host's identity.
    pub host: HostInfo,
    /// The agent's secret token.
    pub token: String,
    /// The session name.
    pub session: String,
    /// Live pages or replayed packets.
    pub source: Source,
    /// Random per agent run: names the sequence-number space. The relay
    /// keys its resume point by (host_id, session, instance).
    pub instance: u64,
    /// Highest sequence number a relay acknowledged on an earlier
    /// connection of this run (0: none).
    pub acked: u64,
    /// Lowest sequence number the agent can still send (kept in memory or in
    /// its spool); equal to `next_seq` when it holds nothing.
    pub oldest: u64,
    /// The sequence number the next new frame will get.
    pub next_seq: u64,
}

/// The ring-buffer page layout of the traced instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageLayout {
    /// The text of the instance's `events/header_page`.
    pub header_page: String,
    /// The text of `events/header_event` (informative).
    pub header_event: String,
}

/// The clock that timestamps the pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    /// The tracefs clock name (`mono`, `boot`, ...).
    pub trace_clock: String,
    /// Its CTF name, frequency and offset to the Unix epoch.
    pub desc: ClockDesc,
}

/// What a [`Formats`] message's formats are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatPurpose {
    /// Enabled events: their records appear in the pages (code 1).
    Recorded,
    /// Not enabled; only their field names are used, e.g. the
    /// `syscalls:sys_enter_*` formats naming syscall arguments (code 2).
    ArgumentNames,
}

/// One tracefs `format` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatText {
    /// The event system (`sched`).
    pub system: String,
    /// The event name (`sched_switch`).
    pub name: String,
    /// The file's text, as tracefs gives it (it holds the `ID:`).
    pub text: String,
}

/// Event formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formats {
    /// What they are for.
    pub purpose: FormatPurpose,
    /// The formats.
    pub formats: Vec<FormatText>,
}

/// The TSDL metadata of a replayed CTF trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtfMetadata {
    /// The TSDL text (plain, not packetized).
    pub tsdl: String,
}

/// Ends a burst of metadata: the data frames that follow are described by
/// everything sent so far on this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataDone {
    /// Bumped each time the event set changes (0 at the start).
    pub generation: u32,
    /// The CPUs (live) or stream instance ids (replay) that will stream.
    pub cpus: Vec<u32>,
}

/// Raw ring-buffer pages of one CPU, as `trace_pipe_raw` returned them;
/// trailing unused bytes may be cut off, but never the committed data or the
/// missed-events count after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pages<'a> {
    /// The CPU.
    pub cpu: u32,
    /// The pages.
    pub pages: PageEntries<'a>,
}

/// The index facts of one CTF packet, as its packet context says them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketInfo {
    /// Packet size in bits.
    pub packet_size_bits: u64,
    /// Content size in bits.
    pub content_size_bits: u64,
    /// `timestamp_begin` (raw clock value).
    pub ts_begin: u64,
    /// `timestamp_end` (raw clock value).
    pub ts_end: u64,
    /// Running count of discarded events.
    pub events_discarded: u64,
    /// Stream class id.
    pub stream_class: u64,
    /// Stream instance id.
    pub stream_instance: u64,
    /// Packet sequence number in its stream.
    pub packet_seq: u64,
    /// Events in the packet.
    pub events: u32,
    /// `cpu_id` of the packet context (`u32::MAX` when absent).
    pub cpu: u32,
}

/// Whole CTF packets of one stream of a replayed trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packets<'a> {
    /// The stream's file name in the source trace (`channel0_3`).
    pub stream: &'a str,
    /// The packets.
    pub packets: PacketEntries<'a>,
}

/// Why data was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossCause {
    /// The kernel ring buffer overflowed (per-CPU `stats` counters or the
    /// page's missed count): code 1.
    KernelBuffer,
    /// The agent's spool was full and it dropped its oldest frames: code 2.
    SpoolFull,
    /// Pages the agent could not parse and did not send: code 3.
    CorruptPage,
}

/// An exact count of lost data on one CPU (or stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    /// The CPU (live) or stream instance (replay).
    pub cpu: u32,
    /// Why.
    pub cause: LossCause,
    /// Events lost.
    pub events: u64,
    /// Pages (or packets) lost, 0 for kernel losses.
    pub pages: u64,
    /// First sequence number of the dropped frames (0 when none were).
    pub first_seq: u64,
    /// Last sequence number of the dropped frames (0 when none were).
    pub last_seq: u64,
}

/// One thread of the state dump, as LTTng's statedump describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThreadRow {
    /// Thread id.
    pub tid: i32,
    /// Process id.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// Command name, NUL-padded.
    pub name: [u8; 16],
    /// A kernel thread.
    pub kernel_thread: bool,
    /// LTTng `status`.
    pub status: i32,
    /// The CPU it last ran on.
    pub cpu: u32,
    /// Thread id in its pid namespace.
    pub vtid: i32,
    /// Process id in its pid namespace.
    pub vpid: i32,
    /// Parent id in its pid namespace.
    pub vppid: i32,
    /// Pid namespace depth.
    pub ns_level: i32,
    /// Pid namespace inode.
    pub ns_inum: u32,
}

/// Encoded size of a [`ThreadRow`].
pub const THREAD_ROW_LEN: usize = 57;

/// A part of the process state dump taken at `ts`; large dumps come in
/// several parts, the last one flagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statedump {
    /// When `/proc` was read, in the trace clock.
    pub ts: u64,
    /// Part number, from 0.
    pub part: u32,
    /// Whether this is the last part.
    pub last: bool,
    /// The threads.
    pub threads: Vec<ThreadRow>,
}

/// The outcome of a [`Control`] command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlResult {
    /// The command's request id.
    pub request: u64,
    /// Whether it was applied.
    pub ok: bool,
    /// What happened, for people.
    pub message: String,
}

/// The sender ends the connection on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goodbye {
    /// Agent: the last sequence number it sent. Relay: the last it stored.
    pub last_seq: u64,
    /// Why.
    pub reason: String,
}

/// Sent when nothing else was sent for a while, both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// The sender's wall clock, ns since the Unix epoch.
    pub unix_ns: i64,
    /// Agent: the last sequence number it assigned. Relay: the last it stored.
    pub last_seq: u64,
}

/// The relay accepts the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The protocol version both use from now on.
    pub version: u16,
    /// The relay software and name.
    pub relay: String,
    /// Whether the relay knows this (host, session, instance).
    pub known: bool,
    /// The last sequence number it stored for it (0: none). The agent
    /// resends what it holds after this.
    pub resume_after: u64,
    /// How often each side should send something (a heartbeat when idle).
    pub heartbeat_ms: u32,
    /// The largest frame body the relay accepts.
    pub max_body: u32,
}

/// Why the relay refused a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseCode {
    /// The token is wrong for this host (1).
    BadToken,
    /// No common protocol version (2).
    Version,
    /// The host or session name is not acceptable (3).
    BadName,
    /// Another agent is connected as this host and session (4).
    Duplicate,
    /// The agent broke the protocol (5).
    Protocol,
    /// The relay failed (6).
    Internal,
    /// The relay is shutting down (7).
    ShuttingDown,
    /// A code this build does not know.
    Other(u16),
}

impl RefuseCode {
    fn code(self) -> u16 {
        match self {
            RefuseCode::BadToken => 1,
            RefuseCode::Version => 2,
            RefuseCode::BadName => 3,
            RefuseCode::Duplicate => 4,
            RefuseCode::Protocol => 5,
            RefuseCode::Internal => 6,
            RefuseCode::ShuttingDown => 7,
            RefuseCode::Other(c) => c,
        }
    }
    fn from_code(c: u16) -> RefuseCode {
        match c {
            1 => RefuseCode::BadToken,
            2 => RefuseCode::Version,
            3 => RefuseCode::BadName,
            4 => RefuseCode::Duplicate,
            5 => RefuseCode::Protocol,
            6 => RefuseCode::Internal,
            7 => RefuseCode::ShuttingDown,
            c => RefuseCode::Other(c),
        }
    }
}

/// The relay refuses the handshake and closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why, as a code.
    pub code: RefuseCode,
    /// Why, for people.
    pub message: String,
}

/// Cumulative acknowledgement: every frame with a sequence number up to
/// `seq` is stored; the agent may forget them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The highest sequence number stored.
    pub seq: u64,
}

/// What the relay asks the agent to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCommand {
    /// Trace these events instead (the same specs as `--events`); the agent
    /// sends the new formats before any page that holds them (tag 1).
    SetEvents(Vec<String>),
    /// Start (or resume) tracing (tag 2).
    Start,
    /// Stop tracing; the connection stays up (tag 3).
    Stop,
    /// Keep a snapshot: the data from `before_ns` before the instant
    /// `at_ns` (or the command's arrival) to `after_ns` after it (tag 4).
    Snapshot {
        /// Nanoseconds of history before the instant.
        before_ns: u64,
        /// Nanoseconds after the instant.
        after_ns: u64,
        /// A name for the snapshot.
        name: String,
        /// The instant, in the agent's own trace time (ns since the epoch
        /// as its trace gives them): the relay converts one instant through
        /// each host's clock (a guest's through its sync), so that every
        /// host's window covers the same moment. `None`: when the agent
        /// receives the command. Optional on the wire (a trailing i64,
        /// absent from older relays).
        at_ns: Option<i64>,
    },
}

/// A command from the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// An id the [`ControlResult`] repeats.
    pub request: u64,
    /// The command.
    pub command: ControlCommand,
}

/// Any message.
// A Hello is decoded once per connection, so its size is not worth a box
// (and every `Message::Hello(..)` pattern) on the hot page path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`PageLayout`].
    PageLayout(PageLayout),
    /// See [`Clock`].
    Clock(Clock),
    /// See [`Formats`].
    Formats(Formats),
    /// See [`CtfMetadata`].
    CtfMetadata(CtfMetadata),
    /// See [`MetadataDone`].
    MetadataDone(MetadataDone),
    /// See [`VmHints`].
    VmHints(VmHints),
    /// See [`Pages`].
    Pages(Pages<'a>),
    /// See [`Packets`].
    Packets(Packets<'a>),
    /// See [`Lost`].
    Lost(Lost),
    /// See [`Statedump`].
    Statedump(Statedump),
    /// See [`ControlResult`].
    ControlResult(ControlResult),
    /// See [`Goodbye`].
    Goodbye(Goodbye),
    /// See [`Heartbeat`].
    Heartbeat(Heartbeat),
    /// See [`Welcome`].
    Welcome(Welcome),
    /// See [`Refused`].
    Refused(Refused),
    /// See [`Ack`].
    Ack(Ack),
    /// See [`Control`].
    Control(Control),
    /// A frame of a kind this build does not know, marked ignorable by its
    /// sender: skip it.
    Unknown {
        /// Its kind byte.
        kind: u8,
    },
}

impl<'a> Message<'a> {
    /// The kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Hello(_) => kind::HELLO,
            Message::PageLayout(_) => kind::PAGE_LAYOUT,
            Message::Clock(_) => kind::CLOCK,
            Message::Formats(_) => kind::FORMATS,
            Message::CtfMetadata(_) => kind::CTF_METADATA,
            Message::MetadataDone(_) => kind::METADATA_DONE,
            Message::VmHints(_) => kind::VM_HINTS,
            Message::Pages(_) => kind::PAGES,
            Message::Packets(_) => kind::PACKETS,
            Message::Lost(_) => kind::LOST,
            Message::Statedump(_) => kind::STATEDUMP,
            Message::ControlResult(_) => kind::CONTROL_RESULT,
            Message::Goodbye(_) => kind::GOODBYE,
            Message::Heartbeat(_) => kind::HEARTBEAT,
            Message::Welcome(_) => kind::WELCOME,
            Message::Refused(_) => kind::REFUSED,
            Message::Ack(_) => kind::ACK,
            Message::Control(_) => kind::CONTROL,
            Message::Unknown { kind } => *kind,
        }
    }

    /// The kind's name.
    pub fn name(&self) -> &'static str {
        kind_name(self.kind())
    }

    /// Whether this message travels with a sequence number.
    pub fn is_sequenced(&self) -> bool {
        is_sequenced(self.kind())
    }

    /// Appends a whole frame holding this message to `out`. `seq` must be
    /// at least 1 for sequenced messages and 0 for the others. `scratch`
    /// holds the body while it is compressed; reuse it across calls.
    pub fn encode_into(
        &self,
        seq: u64,
        compression: Compression,
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        check_seq(self.kind(), seq)?;
        if let Message::Unknown { kind } = self {
            return Err(WireError::Encode {
                what: "message",
                reason: format!("kind {kind:#04x} has no body encoding"),
            });
        }
        scratch.clear();
        self.encode_body(scratch)?;
        // Kinds added after version 1 are ignorable: older peers skip them.
        let ignorable = self.kind() == kind::VM_HINTS;
        encode_frame(self.kind(), ignorable, seq, compression, scratch, out)
    }

    /// [`Message::encode_into`] with a fresh buffer.
    pub fn encode(&self, seq: u64, compression: Compression) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        self.encode_into(seq, compression, &mut Vec::new(), &mut out)?;
        Ok(out)
    }

    /// Appends the body (no frame header) to `out`.
    pub fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let mut w = BodyWriter { out };
        match self {
            Message::Hello(h) => {
                w.u16(h.min_version);
                w.u16(h.max_version);
                w.str("software", &h.software)?;
                w.str("host_id", &h.host_id)?;
                write_host(&mut w, &h.host)?;
                w.str("token", &h.token)?;
                w.str("session", &h.session)?;
                w.u8(match h.source {
                    Source::Live => 1,
                    Source::Replay => 2,
                });
                w.u64(h.instance);
                w.u64(h.acked);
                w.u64(h.oldest);
                w.u64(h.next_seq);
                // Appended in a minor revision: older relays skip it.
                w.str("vm_uuid", h.host.vm_uuid.as_deref().unwrap_or(""))?;
            }
            Message::PageLayout(p) => {
                w.str("header_page", &p.header_page)?;
                w.str("header_event", &p.header_event)?;
            }
            Message::Clock(c) => {
                w.str("trace_clock", &c.trace_clock)?;
                w.str("clock name", &c.desc.name)?;
                w.str("clock description", &c.desc.description)?;
                w.u64(c.desc.freq);
                w.i64(c.desc.offset_s);
                w.i64(c.desc.offset);
            }
            Message::Formats(f) => {
                w.u8(match f.purpose {
                    FormatPurpose::Recorded => 1,
                    FormatPurpose::ArgumentNames => 2,
                });
                w.len("formats", f.formats.len())?;
                for t in &f.formats {
                    w.str("system", &t.system)?;
                    w.str("name", &t.name)?;
                    w.str("text", &t.text)?;
                }
            }
            Message::CtfMetadata(m) => w.str("tsdl", &m.tsdl)?,
            Message::MetadataDone(m) => {
                w.u32(m.generation);
                w.len("cpus", m.cpus.len())?;
                for &c in &m.cpus {
                    w.u32(c);
                }
            }
            Message::VmHints(h) => h.write(&mut w)?,
            Message::Pages(p) => {
                w.u32(p.cpu);
                w.u32(p.pages.count());
                w.raw(p.pages.as_bytes());
            }
            Message::Packets(p) => {
                w.str("stream", p.stream)?;
                w.u32(p.packets.count());
                w.raw(p.packets.as_bytes());
            }
            Message::Lost(l) => {
                w.u32(l.cpu);
                w.u8(match l.cause {
                    LossCause::KernelBuffer => 1,
                    LossCause::SpoolFull => 2,
                    LossCause::CorruptPage => 3,
                });
                w.u64(l.events);
                w.u64(l.pages);
                w.u64(l.first_seq);
                w.u64(l.last_seq);
            }
            Message::Statedump(s) => {
                w.u64(s.ts);
                w.u32(s.part);
                w.bool(s.last);
                w.len("threads", s.threads.len())?;
                for t in &s.threads {
                    w.i32(t.tid);
                    w.i32(t.pid);
                    w.i32(t.ppid);
                    w.raw(&t.name);
                    w.bool(t.kernel_thread);
                    w.i32(t.status);
                    w.u32(t.cpu);
                    w.i32(t.vtid);
                    w.i32(t.vpid);
                    w.i32(t.vppid);
                    w.i32(t.ns_level);
                    w.u32(t.ns_inum);
                }
            }
            Message::ControlResult(r) => {
                w.u64(r.request);
                w.bool(r.ok);
                w.str("message", &r.message)?;
            }
            Message::Goodbye(g) => {
                w.u64(g.last_seq);
                w.str("reason", &g.reason)?;
            }
            Message::Heartbeat(h) => {
                w.i64(h.unix_ns);
                w.u64(h.last_seq);
            }
            Message::Welcome(m) => {
                w.u16(m.version);
                w.str("relay", &m.relay)?;
                w.bool(m.known);
                w.u64(m.resume_after);
                w.u32(m.heartbeat_ms);
                w.u32(m.max_body);
            }
            Message::Refused(r) => {
                w.u16(r.code.code());
                w.str("message", &r.message)?;
            }
            Message::Ack(a) => w.u64(a.seq),
            Message::Control(c) => {
                w.u64(c.request);
                match &c.command {
                    ControlCommand::SetEvents(specs) => {
                        w.u8(1);
                        w.len("specs", specs.len())?;
                        for s in specs {
                            w.str("spec", s)?;
                        }
                    }
                    ControlCommand::Start => w.u8(2),
                    ControlCommand::Stop => w.u8(3),
                    ControlCommand::Snapshot {
                        before_ns,
                        after_ns,
                        name,
                        at_ns,
                    } => {
                        w.u8(4);
                        w.u64(*before_ns);
                        w.u64(*after_ns);
                        w.str("name", name)?;
                        if let Some(at) = at_ns {
                            w.u64(*at as u64);
                        }
                    }
                }
            }
            Message::Unknown { .. } => {}
        }
        Ok(())
    }

    /// Decodes a (decompressed) body of the kind and sequence number in
    /// `header`.
    pub fn decode(header: &FrameHeader, body: &'a [u8]) -> Result<Message<'a>, WireError> {
        let k = header.kind;
        let name = kind_name(k);
        if name == "Unknown" {
            return if header.ignorable {
                Ok(Message::Unknown { kind: k })
            } else {
                Err(WireError::UnknownKind(k))
            };
        }
        check_seq(k, header.seq)?;
        let mut r = BodyReader::new(name, body);
        let msg = match k {
            kind::HELLO => Message::Hello(read_hello(&mut r)?),
            kind::PAGE_LAYOUT => Message::PageLayout(PageLayout {
                header_page: r.string("header_page")?,
                header_event: r.string("header_event")?,
            }),
            kind::CLOCK => Message::Clock(Clock {
                trace_clock: r.string("trace_clock")?,
                desc: ClockDesc {
                    name: r.string("clock name")?,
                    description: r.string("clock description")?,
                    freq: r.u64("freq")?,
                    offset_s: r.i64("offset_s")?,
                    offset: r.i64("offset")?,
                },
            }),
            kind::FORMATS => {
                let at = r.offset();
                let purpose = match r.u8("purpose")? {
                    1 => FormatPurpose::Recorded,
                    2 => FormatPurpose::ArgumentNames,
                    v => return Err(r.bad("purpose", at, format!("unknown purpose code {v}"))),
                };
                let n = r.count("formats", 12)?;
                let mut formats = Vec::with_capacity(n);
                for _ in 0..n {
                    formats.push(FormatText {
                        system: r.string("system")?,
                        name: r.string("name")?,
                        text: r.string("text")?,
                    });
                }
                Message::Formats(Formats { purpose, formats })
            }
            kind::CTF_METADATA => Message::CtfMetadata(CtfMetadata {
                tsdl: r.string("tsdl")?,
            }),
            kind::METADATA_DONE => {
                let generation = r.u32("generation")?;
                let n = r.count("cpus", 4)?;
                let mut cpus = Vec::with_capacity(n);
                for _ in 0..n {
                    cpus.push(r.u32("cpu")?);
                }
                Message::MetadataDone(MetadataDone { generation, cpus })
            }
            kind::VM_HINTS => Message::VmHints(VmHints::read(&mut r)?),
            kind::PAGES => {
                let cpu = r.u32("cpu")?;
                let pages = PageEntries::read(&mut r)?;
                Message::Pages(Pages { cpu, pages })
            }
            kind::PACKETS => {
                let stream = r.str("stream")?;
                let packets = PacketEntries::read(&mut r)?;
                Message::Packets(Packets { stream, packets })
            }
            kind::LOST => Message::Lost(Lost {
                cpu: r.u32("cpu")?,
                cause: {
                    let at = r.offset();
                    match r.u8("cause")? {
                        1 => LossCause::KernelBuffer,
                        2 => LossCause::SpoolFull,
                        3 => LossCause::CorruptPage,
                        v => return Err(r.bad("cause", at, format!("unknown loss cause {v}"))),
                    }
                },
                events: r.u64("events")?,
                pages: r.u64("pages")?,
                first_seq: r.u64("first_seq")?,
                last_seq: r.u64("last_seq")?,
            }),
            kind::STATEDUMP => {
                let ts = r.u64("ts")?;
                let part = r.u32("part")?;
                let last = r.bool("last")?;
                let n = r.count("threads", THREAD_ROW_LEN)?;
                let mut threads = Vec::with_capacity(n);
                for _ in 0..n {
                    threads.push(ThreadRow {
                        tid: r.i32("tid")?,
                        pid: r.i32("pid")?,
                        ppid: r.i32("ppid")?,
                        name: r.bytes16("name")?,
                        kernel_thread: r.bool("kernel_thread")?,
                        status: r.i32("status")?,
                        cpu: r.u32("cpu")?,
                        vtid: r.i32("vtid")?,
                        vpid: r.i32("vpid")?,
                        vppid: r.i32("vppid")?,
                        ns_level: r.i32("ns_level")?,
                        ns_inum: r.u32("ns_inum")?,
                    });
                }
                Message::Statedump(Statedump {
                    ts,
                    part,
                    last,
                    threads,
                })
            }
            kind::CONTROL_RESULT => Message::ControlResult(ControlResult {
                request: r.u64("request")?,
                ok: r.bool("ok")?,
                message: r.string("message")?,
            }),
            kind::GOODBYE => Message::Goodbye(Goodbye {
                last_seq: r.u64("last_seq")?,
                reason: r.string("reason")?,
            }),
            kind::HEARTBEAT => Message::Heartbeat(Heartbeat {
                unix_ns: r.i64("unix_ns")?,
                last_seq: r.u64("last_seq")?,
            }),
            kind::WELCOME => Message::Welcome(Welcome {
                version: r.u16("version")?,
                relay: r.string("relay")?,
                known: r.bool("known")?,
                resume_after: r.u64("resume_after")?,
                heartbeat_ms: r.u32("heartbeat_ms")?,
                max_body: r.u32("max_body")?,
            }),
            kind::REFUSED => Message::Refused(Refused {
                code: RefuseCode::from_code(r.u16("code")?),
                message: r.string("message")?,
            }),
            kind::ACK => Message::Ack(Ack { seq: r.u64("seq")? }),
            kind::CONTROL => {
                let request = r.u64("request")?;
                let at = r.offset();
                let command = match r.u8("command")? {
                    1 => {
                        let n = r.count("specs", 4)?;
                        let mut specs = Vec::with_capacity(n);
                        for _ in 0..n {
                            specs.push(r.string("spec")?);
                        }
                        ControlCommand::SetEvents(specs)
                    }
                    2 => ControlCommand::Start,
                    3 => ControlCommand::Stop,
                    4 => ControlCommand::Snapshot {
                        before_ns: r.u64("before_ns")?,
                        after_ns: r.u64("after_ns")?,
                        name: r.string("name")?,
                        at_ns: if r.remaining() >= 8 {
                            Some(r.u64("at_ns")? as i64)
                        } else {
                            None
                        },
                    },
                    v => return Err(r.bad("command", at, format!("unknown command tag {v}"))),
                };
                Message::Control(Control { request, command })
            }
            _ => return Err(WireError::UnknownKind(k)),
        };
        r.finish();
        Ok(msg)
    }
}

fn check_seq(k: u8, seq: u64) -> Result<(), WireError> {
    let sequenced = is_sequenced(k);
    if sequenced && seq == 0 {
        return Err(WireError::BadSequence {
            kind: kind_name(k),
            seq,
            rule: "sequenced messages start at 1",
        });
    }
    if !sequenced && seq != 0 {
        return Err(WireError::BadSequence {
            kind: kind_name(k),
            seq,
            rule: "this kind is not sequenced and must carry 0",
        });
    }
    Ok(())
}

fn write_host(w: &mut BodyWriter<'_>, h: &HostInfo) -> Result<(), WireError> {
    w.str("hostname", &h.hostname)?;
    w.str("sysname", &h.sysname)?;
    w.str("kernel_release", &h.kernel_release)?;
    w.str("kernel_version", &h.kernel_version)?;
    w.str("machine_id", &h.machine_id)?;
    w.str("boot_id", &h.boot_id)?;
    w.u32(h.cpu_count);
    Ok(())
}

fn read_hello(r: &mut BodyReader<'_>) -> Result<Hello, WireError> {
    let mut hello = Hello {
        min_version: r.u16("min_version")?,
        max_version: r.u16("max_version")?,
        software: r.string("software")?,
        host_id: r.string("host_id")?,
        host: read_host(r)?,
        token: r.string("token")?,
        session: r.string("session")?,
        source: {
            let at = r.offset();
            match r.u8("source")? {
                1 => Source::Live,
                2 => Source::Replay,
                v => return Err(r.bad("source", at, format!("unknown source code {v}"))),
            }
        },
        instance: r.u64("instance")?,
        acked: r.u64("acked")?,
        oldest: r.u64("oldest")?,
        next_seq: r.u64("next_seq")?,
    };
    // Fields appended later: absent when an older agent speaks.
    if r.remaining() > 0 {
        let at = r.offset();
        let uuid = r.string("vm_uuid")?;
        if uuid.len() > 128 || !uuid.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(r.bad(
                "vm_uuid",
                at,
                "a VM UUID is at most 128 printable ASCII characters".into(),
            ));
        }
        hello.host.vm_uuid = (!uuid.is_empty()).then_some(uuid);
    }
    Ok(hello)
}

fn read_host(r: &mut BodyReader<'_>) -> Result<HostInfo, WireError> {
    Ok(HostInfo {
        hostname: r.string("hostname")?,
        sysname: r.string("sysname")?,
        kernel_release: r.string("kernel_release")?,
        kernel_version: r.string("kernel_version")?,
        machine_id: r.string("machine_id")?,
        boot_id: r.string("boot_id")?,
        cpu_count: r.u32("cpu_count")?,
        vm_uuid: None,
    })
}
