//! One viewer connection's state and its answers to each request. Plain
//! synchronous code over files: the async layer ([`super::server`]) runs it
//! on the blocking pool and only moves bytes on the socket.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::catalog::{natural_cmp, Catalog, LiveSession};
use super::metadata;
use super::progress::Progress;
use super::proto::{
    self, AttachStatus, CreateStatus, DetachStatus, IndexReply, IndexStatus, MetadataStatus,
    NewStreamsStatus, PacketStatus, Request, Seek, SessionRow, StreamRow,
};
use super::stream::{Next, StreamView};
use super::LiveStats;

/// Limits a viewer connection works within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest GET_PACKET length served; a larger request closes the
    /// connection (no packet is that large).
    pub max_packet_len: u32,
    /// Largest GET_METADATA reply.
    pub max_metadata_reply: usize,
    /// Largest metadata file served.
    pub max_metadata_file: u64,
    /// Sessions one connection may attach to at once.
    pub max_attached: usize,
    /// Streams one trace may have.
    pub max_streams: usize,
    /// How often a session's directories are scanned for new streams while
    /// indexes are requested.
    pub rescan: Duration,
}

/// Which sessions have a viewer, shared by every connection: one viewer
/// per session, as lttng-relayd enforces.
#[derive(Debug, Default)]
pub struct Registry {
    attached: Mutex<HashSet<u64>>,
}

impl Registry {
    fn try_attach(&self, id: u64) -> bool {
        self.attached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id)
    }

    fn release(&self, id: u64) {
        self.attached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Whether a viewer is attached to session `id`.
    pub fn is_attached(&self, id: u64) -> bool {
        self.attached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }
}

/// What the connection does after a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send the reply in the output buffer.
    Reply,
    /// Nothing new yet: ask again after a short wait (GET_NEXT_INDEX only).
    Wait,
    /// Send the output buffer if not empty, then close: the viewer broke
    /// the protocol.
    Close(String),
}

/// The metadata stream of one trace.
#[derive(Debug)]
struct MetaView {
    id: u64,
    path: PathBuf,
    file: Option<File>,
    sent: u64,
    packetized: Option<bool>,
}

/// One trace directory of an attached session.
#[derive(Debug)]
struct TraceView {
    dir: PathBuf,
    ctf_trace_id: u64,
    meta: MetaView,
    meta_announced: bool,
    streams: Vec<StreamView>,
    /// Class id for beacons of streams that have no entry yet.
    default_class: Option<u64>,
}

/// An attached session.
#[derive(Debug)]
struct Attached {
    info: LiveSession,
    traces: Vec<TraceView>,
    last_scan: Instant,
    unannounced: bool,
}

#[derive(Debug, Clone, Copy)]
enum Loc {
    Data {
        session: u64,
        trace: usize,
        stream: usize,
    },
    Meta {
        session: u64,
        trace: usize,
    },
}

/// The state of one viewer connection.
pub struct Viewer {
    catalog: Arc<dyn Catalog>,
    registry: Arc<Registry>,
    stats: Arc<LiveStats>,
    limits: Limits,
    /// Where the viewer connects from, for log lines.
    pub peer: String,
    viewer_session_id: u64,
    connected: bool,
    created: bool,
    sessions: HashMap<u64, Attached>,
    locs: HashMap<u64, Loc>,
    next_stream_id: u64,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        for id in self.sessions.keys() {
            self.registry.release(*id);
        }
    }
}

impl Viewer {
    /// A fresh connection from `peer`.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        registry: Arc<Registry>,
        stats: Arc<LiveStats>,
        limits: Limits,
        peer: String,
        viewer_session_id: u64,
    ) -> Viewer {
        Viewer {
            catalog,
            registry,
            stats,
            limits,
            peer,
            viewer_session_id,
            connected: false,
            created: false,
            sessions: HashMap::new(),
            locs: HashMap::new(),
            next_stream_id: 1,
        }
    }

    /// Answers `req` into `out` (cleared first). `may_wait`: a
    /// GET_NEXT_INDEX with nothing new may return [`Step::Wait`] instead of
    /// answering.
    pub fn handle(&mut self, req: &Request, may_wait: bool, out: &mut Vec<u8>) -> Step {
        out.clear();
        if !self.connected && !matches!(req, Request::Connect { .. }) {
            return Step::Close(format!("{req:?} before CONNECT"));
        }
        match *req {
            Request::Connect {
                major,
                minor,
                conn_type,
                ..
            } => self.connect(major, minor, conn_type, out),
            Request::CreateSession => {
                self.created = true;
                proto::encode_status(out, CreateStatus::Ok as u32);
                Step::Reply
            }
            Request::ListSessions => self.list(out),
            Request::Attach {
                session_id, seek, ..
            } => self.attach(session_id, seek, out),
            Request::GetMetadata { stream_id } => self.metadata(stream_id, out),
            Request::GetNextIndex { stream_id } => self.next_index(stream_id, may_wait, out),
            Request::GetPacket {
                stream_id,
                offset,
                len,
            } => self.packet(stream_id, offset, len, out),
            Request::GetNewStreams { session_id } => self.new_streams(session_id, out),
            Request::Detach { session_id } => self.detach(session_id, out),
        }
    }

    fn connect(&mut self, major: u32, minor: u32, conn_type: u32, out: &mut Vec<u8>) -> Step {
        if self.connected {
            return Step::Close("second CONNECT on the connection".into());
        }
        // Answer even a refused version, so the viewer can say why.
        proto::encode_connect(
            out,
            self.viewer_session_id,
            proto::MAJOR,
            proto::MINOR.min(minor),
        );
        if major != proto::MAJOR {
            return Step::Close(format!(
                "viewer speaks protocol {major}.{minor}; this server speaks {}.{}",
                proto::MAJOR,
                proto::MINOR
            ));
        }
        if conn_type != proto::CLIENT_COMMAND && conn_type != proto::CLIENT_NOTIFICATION {
            return Step::Close(format!("unknown connection type {conn_type}"));
        }
        self.connected = true;
        Step::Reply
    }

    fn list(&mut self, out: &mut Vec<u8>) -> Step {
        let sessions = self.catalog.sessions();
        let rows: Vec<_> = sessions
            .iter()
            .filter(|s| {
                proto::fits(&s.hostname, proto::HOST_NAME_MAX)
                    && proto::fits(&s.name, proto::NAME_MAX)
            })
            .collect();
        proto::encode_list_count(out, rows.len() as u32);
        for s in rows {
            let streams: usize = s
                .traces
                .iter()
                .map(|t| 1 + data_stream_names(t, self.limits.max_streams).len())
                .sum();
            proto::encode_session_row(
                out,
                &SessionRow {
                    id: s.id,
                    live_timer_us: s.live_timer_us.max(1),
                    clients: u32::from(self.registry.is_attached(s.id)),
                    streams: streams as u32,
                    hostname: &s.hostname,
                    name: &s.name,
                },
            );
        }
        Step::Reply
    }

    fn attach(&mut self, id: u64, seek: Seek, out: &mut Vec<u8>) -> Step {
        let head = |out: &mut Vec<u8>, s: AttachStatus| {
            proto::encode_streams_head(out, s as u32, 0);
            Step::Reply
        };
        if !self.created {
            return head(out, AttachStatus::NoSession);
        }
        let Some(info) = self.catalog.session(id) else {
            return head(out, AttachStatus::Unknown);
        };
        if info.live_timer_us == 0 {
            return head(out, AttachStatus::NotLive);
        }
        if matches!(seek, Seek::Other(_)) {
            return head(out, AttachStatus::SeekError);
        }
        if self.sessions.len() >= self.limits.max_attached {
            self.log(&format!(
                "refusing attach to session {id}: {} sessions attached already",
                self.sessions.len()
            ));
            return head(out, AttachStatus::Already);
        }
        if self.sessions.contains_key(&id) || !self.registry.try_attach(id) {
            return head(out, AttachStatus::Already);
        }
        let mut att = Attached {
            info,
            traces: Vec::new(),
            last_scan: Instant::now(),
            unannounced: false,
        };
        self.discover(&mut att, seek == Seek::Last, 0);
        self.stats.add(&self.stats.attaches, 1);
        self.log(&format!(
            "attached to session {id} ({}/{}), {} traces, seek {:?}",
            att.info.hostname,
            att.info.name,
            att.traces.len(),
            seek
        ));
        let rows = self.announce(id, &mut att);
        proto::encode_streams_head(out, AttachStatus::Ok as u32, rows.len() as u32);
        for r in &rows {
            r.encode(out, &att);
        }
        self.sessions.insert(id, att);
        Step::Reply
    }

    fn detach(&mut self, id: u64, out: &mut Vec<u8>) -> Step {
        let status = if !self.created {
            DetachStatus::Error
        } else if let Some(att) = self.sessions.remove(&id) {
            self.registry.release(id);
            self.locs.retain(|_, l| match l {
                Loc::Data { session, .. } | Loc::Meta { session, .. } => *session != id,
            });
            self.log(&format!(
                "detached from session {id} ({}/{})",
                att.info.hostname, att.info.name
            ));
            DetachStatus::Ok
        } else if self.catalog.session(id).is_none() {
            DetachStatus::Unknown
        } else {
            DetachStatus::Error
        };
        proto::encode_status(out, status as u32);
        Step::Reply
    }

    fn metadata(&mut self, stream_id: u64, out: &mut Vec<u8>) -> Step {
        let header = |out: &mut Vec<u8>, len: u64, s: MetadataStatus| {
            let mut h = [0u8; proto::METADATA_REPLY_HEADER_LEN];
            proto::put_metadata_header(&mut h, len, s as u32);
            out.splice(0..0, h);
        };
        let Some(&Loc::Meta { session, trace }) = self.locs.get(&stream_id) else {
            header(out, 0, MetadataStatus::Error);
            return Step::Reply;
        };
        let Some(tv) = self
            .sessions
            .get_mut(&session)
            .and_then(|a| a.traces.get_mut(trace))
        else {
            header(out, 0, MetadataStatus::Error);
            return Step::Reply;
        };
        match read_new_metadata(&mut tv.meta, &self.limits, out) {
            Ok(0) => header(out, 0, MetadataStatus::NoNew),
            Ok(n) => {
                header(out, n as u64, MetadataStatus::Ok);
                self.stats.add(&self.stats.metadata_bytes, n as u64);
            }
            Err(e) => {
                out.clear();
                let msg = format!("metadata {}: {e}", tv.meta.path.display());
                self.log(&msg);
                header(out, 0, MetadataStatus::Error);
            }
        }
        Step::Reply
    }

    fn next_index(&mut self, stream_id: u64, may_wait: bool, out: &mut Vec<u8>) -> Step {
        let mut reply = IndexReply::default();
        let Some(&Loc::Data {
            session,
            trace,
            stream,
        }) = self.locs.get(&stream_id)
        else {
            reply.status = IndexStatus::Error as u32;
            proto::encode_index(out, &reply);
            return Step::Reply;
        };
        let limits = self.limits;
        let catalog = Arc::clone(&self.catalog);
        let Some(att) = self.sessions.get_mut(&session) else {
            reply.status = IndexStatus::Error as u32;
            proto::encode_index(out, &reply);
            return Step::Reply;
        };
        if att.last_scan.elapsed() >= limits.rescan {
            att.last_scan = Instant::now();
            rescan(&catalog, att, &limits);
        }
        let Some(tv) = att.traces.get_mut(trace) else {
            reply.status = IndexStatus::Error as u32;
            proto::encode_index(out, &reply);
            return Step::Reply;
        };
        // Progress before the index: a packet written before the writer
        // said "complete" or moved its watermark is then always seen.
        let progress: Progress = catalog.progress(&tv.dir);
        let default_class = tv.default_class;
        let Some(sv) = tv.streams.get_mut(stream) else {
            reply.status = IndexStatus::Error as u32;
            proto::encode_index(out, &reply);
            return Step::Reply;
        };
        let skipped_before = sv.skipped;
        let next = sv.next(
            progress.complete,
            progress.watermark_for(&sv.name),
            u64::from(limits.max_packet_len),
        );
        // Nothing new: the async layer holds the request a while (see
        // `super::server`) and asks again, rather than answering at once.
        if may_wait && matches!(next, Next::Nothing(_)) {
            return Step::Wait;
        }
        let skipped = sv.skipped - skipped_before;
        let class = sv.class_id().or(default_class).unwrap_or(0);
        if skipped > 0 {
            self.stats.add(&self.stats.late_packets_skipped, skipped);
        }
        match next {
            Next::Packet(e) => {
                if tv.default_class.is_none() {
                    tv.default_class = Some(e.class_id);
                }
                reply = IndexReply {
                    offset: e.offset,
                    packet_size: e.packet_size,
                    content_size: e.content_size,
                    timestamp_begin: e.ts_begin,
                    timestamp_end: e.ts_end,
                    events_discarded: e.events_discarded,
                    stream_id: e.class_id,
                    status: IndexStatus::Ok as u32,
                    flags: 0,
                };
                if meta_has_news(&mut tv.meta) {
                    reply.flags |= proto::FLAG_NEW_METADATA;
                }
                if att.unannounced {
                    reply.flags |= proto::FLAG_NEW_STREAM;
                }
                self.stats.add(&self.stats.indexes_sent, 1);
            }
            Next::Beacon(ts) => {
                reply.status = IndexStatus::Inactive as u32;
                reply.timestamp_end = ts;
                reply.stream_id = class;
                self.stats.add(&self.stats.beacons_sent, 1);
            }
            Next::Hup => {
                reply.status = IndexStatus::Hup as u32;
            }
            Next::Nothing(last) => {
                match last {
                    // An unchanged beacon: babeltrace2 backs off and asks again.
                    Some(ts) => {
                        reply.status = IndexStatus::Inactive as u32;
                        reply.timestamp_end = ts;
                        reply.stream_id = class;
                    }
                    None => reply.status = IndexStatus::Retry as u32,
                }
            }
            Next::Broken(why) => {
                self.log(&why);
                reply.status = IndexStatus::Error as u32;
            }
        }
        proto::encode_index(out, &reply);
        Step::Reply
    }

    fn packet(&mut self, stream_id: u64, offset: u64, len: u32, out: &mut Vec<u8>) -> Step {
        if len > self.limits.max_packet_len {
            return Step::Close(format!(
                "GET_PACKET of {len} bytes; no packet served is larger than {}",
                self.limits.max_packet_len
            ));
        }
        let hl = proto::PACKET_REPLY_HEADER_LEN;
        let error = |out: &mut Vec<u8>| {
            out.clear();
            let mut h = [0u8; proto::PACKET_REPLY_HEADER_LEN];
            proto::put_packet_header(&mut h, PacketStatus::Error as u32, 0, 0);
            out.extend_from_slice(&h);
            Step::Reply
        };
        let Some(&Loc::Data {
            session,
            trace,
            stream,
        }) = self.locs.get(&stream_id)
        else {
            return error(out);
        };
        let Some(sv) = self
            .sessions
            .get_mut(&session)
            .and_then(|a| a.traces.get_mut(trace))
            .and_then(|t| t.streams.get_mut(stream))
        else {
            return error(out);
        };
        out.resize(hl + len as usize, 0);
        if let Err(e) = sv.read_packet(offset, len, &mut out[hl..]) {
            let msg = format!("GET_PACKET stream {}: {e}", sv.name);
            self.log(&msg);
            return error(out);
        }
        let mut h = [0u8; proto::PACKET_REPLY_HEADER_LEN];
        proto::put_packet_header(&mut h, PacketStatus::Ok as u32, len, 0);
        out[..hl].copy_from_slice(&h);
        self.stats.add(&self.stats.packet_bytes, u64::from(len));
        Step::Reply
    }

    fn new_streams(&mut self, id: u64, out: &mut Vec<u8>) -> Step {
        let Some(mut att) = self.sessions.remove(&id) else {
            proto::encode_streams_head(out, NewStreamsStatus::Error as u32, 0);
            return Step::Reply;
        };
        if let Some(info) = self.catalog.session(id) {
            att.info.traces = info.traces;
        }
        att.last_scan = Instant::now();
        // Streams that appear now are read from their start, skipping what
        // is older than anything the viewer already has.
        let high = att
            .traces
            .iter()
            .flat_map(|t| t.streams.iter())
            .map(StreamView::high_mark)
            .max()
            .unwrap_or(0);
        self.discover(&mut att, false, high);
        let rows = self.announce(id, &mut att);
        let finished = rows.is_empty()
            && att
                .traces
                .iter()
                .all(|t| t.streams.iter().all(|s| s.hup) && self.catalog.progress(&t.dir).complete);
        if finished {
            proto::encode_streams_head(out, NewStreamsStatus::Hup as u32, 0);
        } else {
            proto::encode_streams_head(out, NewStreamsStatus::Ok as u32, rows.len() as u32);
            for r in &rows {
                r.encode(out, &att);
            }
        }
        self.sessions.insert(id, att);
        Step::Reply
    }

    /// Fills `att` with its traces and their streams (first call) or adds
    /// the ones that appeared. `seek_last`: new streams start at their end;
    /// `floor`: new streams skip packets starting before it.
    fn discover(&mut self, att: &mut Attached, seek_last: bool, floor: u64) {
        for dir in att.info.traces.clone() {
            let ti = match att.traces.iter().position(|t| t.dir == dir) {
                Some(i) => i,
                None => {
                    let id = self.alloc_id();
                    att.traces.push(TraceView {
                        ctf_trace_id: att
                            .info
                            .id
                            .wrapping_mul(1000)
                            .wrapping_add(att.traces.len() as u64),
                        meta: MetaView {
                            id,
                            path: dir.join("metadata"),
                            file: None,
                            sent: 0,
                            packetized: None,
                        },
                        dir: dir.clone(),
                        meta_announced: false,
                        streams: Vec::new(),
                        default_class: None,
                    });
                    att.traces.len() - 1
                }
            };
            let names = data_stream_names(&dir, self.limits.max_streams);
            for name in names {
                let Some(tv) = att.traces.get_mut(ti) else {
                    break;
                };
                if tv.streams.iter().any(|s| s.name == name) {
                    continue;
                }
                if tv.streams.len() >= self.limits.max_streams {
                    break;
                }
                let id = self.alloc_id();
                let mut sv = StreamView::new(id, &dir, &name);
                if seek_last {
                    match sv.seek_last() {
                        Ok(Some(c)) => {
                            tv.default_class.get_or_insert(c);
                        }
                        Ok(None) => {}
                        Err(e) => self.log(&e),
                    }
                } else {
                    sv.set_floor(floor);
                }
                if tv.default_class.is_none() {
                    tv.default_class = sv.peek_class_id();
                }
                tv.streams.push(sv);
            }
        }
        att.unannounced = att
            .traces
            .iter()
            .any(|t| !t.meta_announced || t.streams.iter().any(|s| !s.announced));
    }

    /// Marks every unannounced stream of `att` announced, registers its id
    /// and returns the rows to send.
    fn announce(&mut self, session: u64, att: &mut Attached) -> Vec<Row> {
        let mut rows = Vec::new();
        for (ti, tv) in att.traces.iter_mut().enumerate() {
            if !tv.meta_announced {
                tv.meta_announced = true;
                self.locs
                    .insert(tv.meta.id, Loc::Meta { session, trace: ti });
                rows.push(Row::Meta(ti));
            }
            for (si, sv) in tv.streams.iter_mut().enumerate() {
                if !sv.announced {
                    sv.announced = true;
                    self.locs.insert(
                        sv.id,
                        Loc::Data {
                            session,
                            trace: ti,
                            stream: si,
                        },
                    );
                    rows.push(Row::Data(ti, si));
                }
            }
        }
        att.unannounced = false;
        rows
    }

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_stream_id;
        self.next_stream_id += 1;
        id
    }

    fn log(&self, msg: &str) {
        eprintln!("strata live: viewer {}: {msg}", self.peer);
    }
}

/// A stream to describe in an ATTACH or GET_NEW_STREAMS reply.
enum Row {
    Meta(usize),
    Data(usize, usize),
}

impl Row {
    fn encode(&self, out: &mut Vec<u8>, att: &Attached) {
        let (ti, meta, id, channel) = match *self {
            Row::Meta(ti) => match att.traces.get(ti) {
                Some(t) => (ti, true, t.meta.id, "metadata"),
                None => return,
            },
            Row::Data(ti, si) => match att.traces.get(ti).and_then(|t| t.streams.get(si)) {
                Some(s) => (ti, false, s.id, s.name.as_str()),
                None => return,
            },
        };
        let Some(tv) = att.traces.get(ti) else { return };
        let trace_name = tv
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("kernel");
        let path = format!("{}/{}/{}", att.info.hostname, att.info.name, trace_name);
        proto::encode_stream_row(
            out,
            &StreamRow {
                id,
                ctf_trace_id: tv.ctf_trace_id,
                metadata: meta,
                path: &path,
                channel,
            },
        );
    }
}

/// Notes whether traces or streams appeared in an attached session (the
/// viewer learns it from the new-stream flag, then asks for them).
fn rescan(catalog: &Arc<dyn Catalog>, att: &mut Attached, limits: &Limits) {
    if let Some(info) = catalog.session(att.info.id) {
        att.info.traces = info.traces;
    }
    let pending = att
        .traces
        .iter()
        .any(|t| !t.meta_announced || t.streams.iter().any(|s| !s.announced));
    let appeared = || {
        att.info
            .traces
            .iter()
            .any(|dir| match att.traces.iter().find(|t| &t.dir == dir) {
                None => true,
                Some(tv) => data_stream_names(dir, limits.max_streams)
                    .iter()
                    .any(|n| !tv.streams.iter().any(|s| &s.name == n)),
            })
    };
    att.unannounced = pending || appeared();
}

/// Data stream files of a trace directory that have an index: visible
/// regular files other than `metadata`, in natural order.
fn data_stream_names(dir: &Path, max: usize) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != "metadata" && !n.starts_with('.'))
        .filter(|n| dir.join("index").join(format!("{n}.idx")).is_file())
        .take(max)
        .collect();
    names.sort_by(|a, b| natural_cmp(a, b));
    names
}

/// Whether the metadata file grew past what was sent.
fn meta_has_news(m: &mut MetaView) -> bool {
    if m.file.is_none() {
        m.file = File::open(&m.path).ok();
    }
    m.file
        .as_ref()
        .and_then(|f| f.metadata().ok())
        .is_some_and(|md| md.len() > m.sent)
}

/// Appends the metadata not sent yet (whole statements or packets, at most
/// `max_metadata_reply` bytes) to `out`; returns how many bytes.
fn read_new_metadata(
    m: &mut MetaView,
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Result<usize, String> {
    if m.file.is_none() {
        match File::open(&m.path) {
            Ok(f) => m.file = Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(format!("cannot open: {e}")),
        }
    }
    let Some(f) = m.file.as_ref() else {
        return Ok(0);
    };
    let len = f.metadata().map_err(|e| format!("cannot stat: {e}"))?.len();
    if len > limits.max_metadata_file {
        return Err(format!(
            "{len} bytes, more than the {} served",
            limits.max_metadata_file
        ));
    }
    if len <= m.sent {
        return Ok(0);
    }
    let want = ((len - m.sent) as usize).min(limits.max_metadata_reply);
    let start = out.len();
    out.resize(start + want, 0);
    let got =
        read_at_most(f, &mut out[start..], m.sent).map_err(|e| format!("cannot read: {e}"))?;
    out.truncate(start + got);
    if m.packetized.is_none() {
        if m.sent != 0 || got < 4 {
            out.truncate(start);
            return Ok(0);
        }
        m.packetized = Some(metadata::is_packetized(&out[start..]));
    }
    let n = metadata::complete_prefix(&out[start..], m.packetized.unwrap_or(false));
    out.truncate(start + n);
    m.sent += n as u64;
    Ok(n)
}

/// Reads up to `buf.len()` bytes at `offset`, stopping early at the end of
/// the file.
fn read_at_most(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
