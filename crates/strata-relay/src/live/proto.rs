//! The LTTng live viewer protocol, version 2.4, as bytes: request parsing and
//! reply encoding. No I/O, so every function can be tested on buffers.
//!
//! Everything is big-endian and packed. A request is a 16-byte header
//! `{u64 data_size; u32 cmd; u32 cmd_version}` followed by `data_size` bytes
//! of payload; replies have no header. Each command has one fixed payload
//! size, so a header whose `data_size` differs is malformed: the server
//! never allocates from a size the viewer sent.

use thiserror::Error;

/// Size of a request header.
pub const HEADER_LEN: usize = 16;
/// The protocol major version; viewers with another major are refused.
pub const MAJOR: u32 = 2;
/// The protocol minor version this server speaks.
pub const MINOR: u32 = 4;
/// Size of `char hostname[]` in a session entry, NUL included.
pub const HOST_NAME_MAX: usize = 64;
/// Size of `char session_name[]` and `char channel_name[]`, NUL included.
pub const NAME_MAX: usize = 255;
/// Size of `char path_name[]` in a stream entry, NUL included.
pub const PATH_MAX: usize = 4096;
/// Size of one session entry in a LIST_SESSIONS reply.
pub const SESSION_ENTRY_LEN: usize = 8 + 4 + 4 + 4 + HOST_NAME_MAX + NAME_MAX;
/// Size of one stream entry in ATTACH_SESSION and GET_NEW_STREAMS replies.
pub const STREAM_ENTRY_LEN: usize = 8 + 8 + 4 + PATH_MAX + NAME_MAX;
/// Size of a GET_NEXT_INDEX reply.
pub const INDEX_REPLY_LEN: usize = 7 * 8 + 4 + 4;
/// Size of the header that opens a GET_PACKET reply.
pub const PACKET_REPLY_HEADER_LEN: usize = 12;
/// Size of the header that opens a GET_METADATA reply.
pub const METADATA_REPLY_HEADER_LEN: usize = 12;

/// Connection type a viewer declares in CONNECT: it sends commands.
pub const CLIENT_COMMAND: u32 = 1;
/// Connection type a viewer declares in CONNECT: notifications (unused by
/// babeltrace2, accepted like lttng-relayd does).
pub const CLIENT_NOTIFICATION: u32 = 2;

/// Index and packet reply flag: the viewer must fetch metadata first.
pub const FLAG_NEW_METADATA: u32 = 1;
/// Index and packet reply flag: the session has streams the viewer lacks.
pub const FLAG_NEW_STREAM: u32 = 2;

/// The viewer commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Version handshake.
    Connect = 1,
    /// List the live sessions.
    ListSessions = 2,
    /// Attach to one session and receive its streams.
    AttachSession = 3,
    /// Next packet index of one stream.
    GetNextIndex = 4,
    /// Bytes of one stream file.
    GetPacket = 5,
    /// New metadata of one trace.
    GetMetadata = 6,
    /// Streams added since the last call.
    GetNewStreams = 7,
    /// Create the viewer session (before attaching).
    CreateSession = 8,
    /// Detach from one session.
    DetachSession = 9,
}

impl Command {
    /// The command with this number, if any.
    pub fn from_u32(v: u32) -> Option<Command> {
        Some(match v {
            1 => Command::Connect,
            2 => Command::ListSessions,
            3 => Command::AttachSession,
            4 => Command::GetNextIndex,
            5 => Command::GetPacket,
            6 => Command::GetMetadata,
            7 => Command::GetNewStreams,
            8 => Command::CreateSession,
            9 => Command::DetachSession,
            _ => return None,
        })
    }

    /// The exact payload size of this command's request.
    pub fn payload_len(self) -> usize {
        match self {
            Command::Connect => 20,
            Command::ListSessions | Command::CreateSession => 0,
            Command::AttachSession => 20,
            Command::GetPacket => 20,
            Command::GetNextIndex
            | Command::GetMetadata
            | Command::GetNewStreams
            | Command::DetachSession => 8,
        }
    }
}

/// Why a request is malformed. The connection that sent it is closed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtoError {
    /// The command number is not one of the nine commands.
    #[error("unknown command {0}; a 2.4 viewer sends commands 1 to 9")]
    UnknownCommand(u32),
    /// `data_size` is not the command's payload size.
    #[error("{cmd:?} declares a {got}-byte payload but its payload is {want} bytes")]
    BadPayloadSize {
        /// The command.
        cmd: Command,
        /// The declared size.
        got: u64,
        /// The size the protocol fixes.
        want: usize,
    },
    /// Fewer payload bytes than the command needs were given to the parser.
    #[error("{cmd:?} payload is {got} bytes, needs {want}")]
    Truncated {
        /// The command.
        cmd: Command,
        /// Bytes given.
        got: usize,
        /// Bytes needed.
        want: usize,
    },
}

/// A decoded request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Declared payload size.
    pub data_size: u64,
    /// Command number.
    pub cmd: u32,
    /// Command version (0 in every known viewer; ignored).
    pub cmd_version: u32,
}

/// Decodes a request header.
pub fn parse_header(b: &[u8; HEADER_LEN]) -> Header {
    Header {
        data_size: be64(b, 0),
        cmd: be32(b, 8),
        cmd_version: be32(b, 12),
    }
}

/// Checks a header: a known command whose `data_size` is its payload size.
pub fn check_header(h: &Header) -> Result<Command, ProtoError> {
    let cmd = Command::from_u32(h.cmd).ok_or(ProtoError::UnknownCommand(h.cmd))?;
    let want = cmd.payload_len();
    if h.data_size != want as u64 {
        return Err(ProtoError::BadPayloadSize {
            cmd,
            got: h.data_size,
            want,
        });
    }
    Ok(cmd)
}

/// Which packets an attaching viewer wants first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// Every packet from the start of each stream.
    Beginning,
    /// Only packets written after the attach.
    Last,
    /// A value the protocol does not define (answered with SEEK_ERR).
    Other(u32),
}

impl Seek {
    fn from_u32(v: u32) -> Seek {
        match v {
            1 => Seek::Beginning,
            2 => Seek::Last,
            other => Seek::Other(other),
        }
    }
}

/// A decoded request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// CONNECT.
    Connect {
        /// The viewer session id the viewer proposes (ignored).
        viewer_session_id: u64,
        /// Protocol major version.
        major: u32,
        /// Protocol minor version.
        minor: u32,
        /// Connection type ([`CLIENT_COMMAND`] or [`CLIENT_NOTIFICATION`]).
        conn_type: u32,
    },
    /// LIST_SESSIONS.
    ListSessions,
    /// ATTACH_SESSION.
    Attach {
        /// The session id from LIST_SESSIONS.
        session_id: u64,
        /// Unused by the protocol.
        offset: u64,
        /// Where to start.
        seek: Seek,
    },
    /// GET_NEXT_INDEX.
    GetNextIndex {
        /// Viewer stream id.
        stream_id: u64,
    },
    /// GET_PACKET.
    GetPacket {
        /// Viewer stream id.
        stream_id: u64,
        /// Byte offset in the stream file.
        offset: u64,
        /// Bytes wanted.
        len: u32,
    },
    /// GET_METADATA.
    GetMetadata {
        /// Viewer stream id of the metadata stream.
        stream_id: u64,
    },
    /// GET_NEW_STREAMS.
    GetNewStreams {
        /// The session id.
        session_id: u64,
    },
    /// CREATE_SESSION.
    CreateSession,
    /// DETACH_SESSION.
    Detach {
        /// The session id.
        session_id: u64,
    },
}

/// Decodes the payload of `cmd`; `payload` must hold at least
/// [`Command::payload_len`] bytes.
pub fn parse_request(cmd: Command, payload: &[u8]) -> Result<Request, ProtoError> {
    let want = cmd.payload_len();
    let p = payload.get(..want).ok_or(ProtoError::Truncated {
        cmd,
        got: payload.len(),
        want,
    })?;
    Ok(match cmd {
        Command::Connect => Request::Connect {
            viewer_session_id: be64(p, 0),
            major: be32(p, 8),
            minor: be32(p, 12),
            conn_type: be32(p, 16),
        },
        Command::ListSessions => Request::ListSessions,
        Command::AttachSession => Request::Attach {
            session_id: be64(p, 0),
            offset: be64(p, 8),
            seek: Seek::from_u32(be32(p, 16)),
        },
        Command::GetNextIndex => Request::GetNextIndex {
            stream_id: be64(p, 0),
        },
        Command::GetPacket => Request::GetPacket {
            stream_id: be64(p, 0),
            offset: be64(p, 8),
            len: be32(p, 16),
        },
        Command::GetMetadata => Request::GetMetadata {
            stream_id: be64(p, 0),
        },
        Command::GetNewStreams => Request::GetNewStreams {
            session_id: be64(p, 0),
        },
        Command::CreateSession => Request::CreateSession,
        Command::DetachSession => Request::Detach {
            session_id: be64(p, 0),
        },
    })
}

/// Encodes a request (header and payload), as a viewer sends it. The server
/// never sends requests; tests and tools that talk to it do.
pub fn encode_request(req: &Request, out: &mut Vec<u8>) {
    let (cmd, start) = (request_command(req), out.len());
    out.extend_from_slice(&(cmd.payload_len() as u64).to_be_bytes());
    out.extend_from_slice(&(cmd as u32).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    match *req {
        Request::Connect {
            viewer_session_id,
            major,
            minor,
            conn_type,
        } => {
            out.extend_from_slice(&viewer_session_id.to_be_bytes());
            out.extend_from_slice(&major.to_be_bytes());
            out.extend_from_slice(&minor.to_be_bytes());
            out.extend_from_slice(&conn_type.to_be_bytes());
        }
        Request::ListSessions | Request::CreateSession => {}
        Request::Attach {
            session_id,
            offset,
            seek,
        } => {
            out.extend_from_slice(&session_id.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
            let s = match seek {
                Seek::Beginning => 1,
                Seek::Last => 2,
                Seek::Other(v) => v,
            };
            out.extend_from_slice(&s.to_be_bytes());
        }
        Request::GetNextIndex { stream_id } | Request::GetMetadata { stream_id } => {
            out.extend_from_slice(&stream_id.to_be_bytes());
        }
        Request::GetPacket {
            stream_id,
            offset,
            len,
        } => {
            out.extend_from_slice(&stream_id.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
        }
        Request::GetNewStreams { session_id } | Request::Detach { session_id } => {
            out.extend_from_slice(&session_id.to_be_bytes());
        }
    }
    debug_assert_eq!(out.len() - start, HEADER_LEN + cmd.payload_len());
}

fn request_command(req: &Request) -> Command {
    match req {
        Request::Connect { .. } => Command::Connect,
        Request::ListSessions => Command::ListSessions,
        Request::Attach { .. } => Command::AttachSession,
        Request::GetNextIndex { .. } => Command::GetNextIndex,
        Request::GetPacket { .. } => Command::GetPacket,
        Request::GetMetadata { .. } => Command::GetMetadata,
        Request::GetNewStreams { .. } => Command::GetNewStreams,
        Request::CreateSession => Command::CreateSession,
        Request::Detach { .. } => Command::DetachSession,
    }
}

/// ATTACH_SESSION reply status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachStatus {
    /// Attached; the streams follow.
    Ok = 1,
    /// Another viewer is attached to this session.
    Already = 2,
    /// No session has this id.
    Unknown = 3,
    /// The session is not live.
    NotLive = 4,
    /// The seek value is not 1 or 2.
    SeekError = 5,
    /// CREATE_SESSION was not sent first.
    NoSession = 6,
}

/// GET_NEXT_INDEX reply status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexStatus {
    /// A packet index follows.
    Ok = 1,
    /// Nothing yet; ask again later.
    Retry = 2,
    /// The stream is finished.
    Hup = 3,
    /// The request or the stream is in error.
    Error = 4,
    /// No packet yet, but none will start before `timestamp_end` (beacon).
    Inactive = 5,
    /// End of the index file (babeltrace2 2.0 treats it as an error, so
    /// this server ends streams with [`IndexStatus::Hup`]).
    Eof = 6,
}

/// GET_PACKET reply status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketStatus {
    /// The bytes follow.
    Ok = 1,
    /// Not available yet.
    Retry = 2,
    /// The request cannot be served.
    Error = 3,
    /// End of the stream.
    Eof = 4,
}

/// GET_METADATA reply status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataStatus {
    /// New metadata bytes follow.
    Ok = 1,
    /// Nothing new.
    NoNew = 2,
    /// Unknown metadata stream.
    Error = 3,
}

/// GET_NEW_STREAMS reply status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewStreamsStatus {
    /// The new streams (possibly none) follow.
    Ok = 1,
    /// No new stream.
    NoNew = 2,
    /// Not attached, or unknown session.
    Error = 3,
    /// The session is over and every stream has ended.
    Hup = 4,
}

/// CREATE_SESSION reply status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateStatus {
    /// Created.
    Ok = 1,
    /// Not created.
    Error = 2,
}

/// DETACH_SESSION reply status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetachStatus {
    /// Detached.
    Ok = 1,
    /// No session has this id.
    Unknown = 2,
    /// Not attached to it.
    Error = 3,
}

/// Appends a CONNECT reply.
pub fn encode_connect(out: &mut Vec<u8>, viewer_session_id: u64, major: u32, minor: u32) {
    out.extend_from_slice(&viewer_session_id.to_be_bytes());
    out.extend_from_slice(&major.to_be_bytes());
    out.extend_from_slice(&minor.to_be_bytes());
    out.extend_from_slice(&CLIENT_COMMAND.to_be_bytes());
}

/// Appends a reply made of one status word (CREATE_SESSION, DETACH_SESSION).
pub fn encode_status(out: &mut Vec<u8>, status: u32) {
    out.extend_from_slice(&status.to_be_bytes());
}

/// One line of LIST_SESSIONS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRow<'a> {
    /// Session id.
    pub id: u64,
    /// Live timer period in microseconds; viewers need it non-zero.
    pub live_timer_us: u32,
    /// Viewers attached.
    pub clients: u32,
    /// Streams (data and metadata).
    pub streams: u32,
    /// Host name; cut to 63 bytes.
    pub hostname: &'a str,
    /// Session name; cut to 254 bytes.
    pub name: &'a str,
}

/// Appends the LIST_SESSIONS count word.
pub fn encode_list_count(out: &mut Vec<u8>, count: u32) {
    out.extend_from_slice(&count.to_be_bytes());
}

/// Appends one LIST_SESSIONS entry.
pub fn encode_session_row(out: &mut Vec<u8>, row: &SessionRow<'_>) {
    out.extend_from_slice(&row.id.to_be_bytes());
    out.extend_from_slice(&row.live_timer_us.to_be_bytes());
    out.extend_from_slice(&row.clients.to_be_bytes());
    out.extend_from_slice(&row.streams.to_be_bytes());
    put_padded(out, row.hostname, HOST_NAME_MAX);
    put_padded(out, row.name, NAME_MAX);
}

/// One stream of an ATTACH_SESSION or GET_NEW_STREAMS reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRow<'a> {
    /// Viewer stream id, unique on the connection.
    pub id: u64,
    /// Id of the trace the stream belongs to.
    pub ctf_trace_id: u64,
    /// Whether this is the trace's metadata stream.
    pub metadata: bool,
    /// Trace path shown to the viewer; cut to 4095 bytes.
    pub path: &'a str,
    /// Stream (channel file) name; cut to 254 bytes.
    pub channel: &'a str,
}

/// Appends the `{status, count}` words that open ATTACH_SESSION and
/// GET_NEW_STREAMS replies.
pub fn encode_streams_head(out: &mut Vec<u8>, status: u32, count: u32) {
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
}

/// Appends one stream entry.
pub fn encode_stream_row(out: &mut Vec<u8>, row: &StreamRow<'_>) {
    out.extend_from_slice(&row.id.to_be_bytes());
    out.extend_from_slice(&row.ctf_trace_id.to_be_bytes());
    out.extend_from_slice(&u32::from(row.metadata).to_be_bytes());
    put_padded(out, row.path, PATH_MAX);
    put_padded(out, row.channel, NAME_MAX);
}

/// A GET_NEXT_INDEX reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexReply {
    /// Packet offset in the stream file, bytes.
    pub offset: u64,
    /// Packet size, bits.
    pub packet_size: u64,
    /// Content size, bits.
    pub content_size: u64,
    /// Packet start time (clock cycles).
    pub timestamp_begin: u64,
    /// Packet end time, or the beacon time when inactive.
    pub timestamp_end: u64,
    /// Running discarded-event count.
    pub events_discarded: u64,
    /// CTF stream class id.
    pub stream_id: u64,
    /// An [`IndexStatus`] value.
    pub status: u32,
    /// [`FLAG_NEW_METADATA`] | [`FLAG_NEW_STREAM`].
    pub flags: u32,
}

/// Appends a GET_NEXT_INDEX reply.
pub fn encode_index(out: &mut Vec<u8>, r: &IndexReply) {
    for v in [
        r.offset,
        r.packet_size,
        r.content_size,
        r.timestamp_begin,
        r.timestamp_end,
        r.events_discarded,
        r.stream_id,
    ] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&r.status.to_be_bytes());
    out.extend_from_slice(&r.flags.to_be_bytes());
}

/// Decodes a GET_NEXT_INDEX reply (for viewers written in Rust and tests).
pub fn parse_index(b: &[u8; INDEX_REPLY_LEN]) -> IndexReply {
    IndexReply {
        offset: be64(b, 0),
        packet_size: be64(b, 8),
        content_size: be64(b, 16),
        timestamp_begin: be64(b, 24),
        timestamp_end: be64(b, 32),
        events_discarded: be64(b, 40),
        stream_id: be64(b, 48),
        status: be32(b, 56),
        flags: be32(b, 60),
    }
}

/// Writes the GET_PACKET reply header into `out[..12]` (the data follows it).
pub fn put_packet_header(
    out: &mut [u8; PACKET_REPLY_HEADER_LEN],
    status: u32,
    len: u32,
    flags: u32,
) {
    out[0..4].copy_from_slice(&status.to_be_bytes());
    out[4..8].copy_from_slice(&len.to_be_bytes());
    out[8..12].copy_from_slice(&flags.to_be_bytes());
}

/// Writes the GET_METADATA reply header into `out[..12]` (the data follows).
pub fn put_metadata_header(out: &mut [u8; METADATA_REPLY_HEADER_LEN], len: u64, status: u32) {
    out[0..8].copy_from_slice(&len.to_be_bytes());
    out[8..12].copy_from_slice(&status.to_be_bytes());
}

/// Appends `s` cut to `size - 1` bytes (on a character boundary) and NUL
/// padded to `size` bytes.
fn put_padded(out: &mut Vec<u8>, s: &str, size: usize) {
    let mut n = s.len().min(size - 1);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    out.extend_from_slice(&s.as_bytes()[..n]);
    out.resize(out.len() + (size - n), 0);
}

/// Whether `s` fits a fixed field of `size` bytes with its NUL, with no NUL
/// of its own (a viewer compares names up to the first NUL).
pub fn fits(s: &str, size: usize) -> bool {
    s.len() < size && !s.as_bytes().contains(&0)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(data_size: u64, cmd: u32) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&data_size.to_be_bytes());
        h[8..12].copy_from_slice(&cmd.to_be_bytes());
        h
    }

    #[test]
    fn sizes_match_the_c_structs() {
        // lttng_viewer_session_2_4, lttng_viewer_stream, lttng_viewer_index.
        assert_eq!(SESSION_ENTRY_LEN, 339);
        assert_eq!(STREAM_ENTRY_LEN, 4371);
        assert_eq!(INDEX_REPLY_LEN, 64);
    }

    #[test]
    fn every_request_round_trips() {
        let reqs = [
            Request::Connect {
                viewer_session_id: u64::MAX,
                major: 2,
                minor: 4,
                conn_type: CLIENT_COMMAND,
            },
            Request::ListSessions,
            Request::Attach {
                session_id: 7,
                offset: 0,
                seek: Seek::Last,
            },
            Request::Attach {
                session_id: 7,
                offset: 3,
                seek: Seek::Other(9),
            },
            Request::GetNextIndex { stream_id: 3 },
            Request::GetPacket {
                stream_id: 3,
                offset: 1 << 40,
                len: 4096,
            },
            Request::GetMetadata { stream_id: 1 },
            Request::GetNewStreams { session_id: 7 },
            Request::CreateSession,
            Request::Detach { session_id: 7 },
        ];
        for r in reqs {
            let mut b = Vec::new();
            encode_request(&r, &mut b);
            let h: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().unwrap();
            let cmd = check_header(&parse_header(&h)).unwrap();
            assert_eq!(parse_request(cmd, &b[HEADER_LEN..]).unwrap(), r);
        }
    }

    #[test]
    fn headers_with_wrong_sizes_or_commands_are_refused() {
        assert_eq!(
            check_header(&parse_header(&header(0, 0))),
            Err(ProtoError::UnknownCommand(0))
        );
        assert_eq!(
            check_header(&parse_header(&header(0, 10))),
            Err(ProtoError::UnknownCommand(10))
        );
        assert_eq!(
            check_header(&parse_header(&header(u64::MAX, 2))),
            Err(ProtoError::BadPayloadSize {
                cmd: Command::ListSessions,
                got: u64::MAX,
                want: 0
            })
        );
        assert!(check_header(&parse_header(&header(19, 5))).is_err());
        assert_eq!(
            check_header(&parse_header(&header(20, 5))),
            Ok(Command::GetPacket)
        );
        assert_eq!(
            parse_request(Command::GetPacket, &[0; 19]),
            Err(ProtoError::Truncated {
                cmd: Command::GetPacket,
                got: 19,
                want: 20
            })
        );
    }

    #[test]
    fn names_are_cut_and_padded() {
        let mut out = Vec::new();
        let long = "h".repeat(100);
        encode_session_row(
            &mut out,
            &SessionRow {
                id: 1,
                live_timer_us: 100_000,
                clients: 0,
                streams: 3,
                hostname: &long,
                name: "s",
            },
        );
        assert_eq!(out.len(), SESSION_ENTRY_LEN);
        assert_eq!(&out[20..20 + 63], &long.as_bytes()[..63]);
        assert_eq!(out[20 + 63], 0);
        assert_eq!(out[84], b's');
        assert!(out[85..].iter().all(|&b| b == 0));
        // A multi-byte character at the cut is dropped whole.
        let mut out = Vec::new();
        let name = format!("{}é", "a".repeat(62));
        put_padded(&mut out, &name, HOST_NAME_MAX);
        assert_eq!(&out[..62], "a".repeat(62).as_bytes());
        assert!(out[62..].iter().all(|&b| b == 0));
        assert!(fits("web1", HOST_NAME_MAX));
        assert!(!fits(&long, HOST_NAME_MAX));
        assert!(!fits("a\0b", HOST_NAME_MAX));
    }

    #[test]
    fn index_reply_round_trips() {
        let r = IndexReply {
            offset: 1,
            packet_size: 2,
            content_size: 3,
            timestamp_begin: 4,
            timestamp_end: 5,
            events_discarded: 6,
            stream_id: 7,
            status: IndexStatus::Inactive as u32,
            flags: FLAG_NEW_METADATA | FLAG_NEW_STREAM,
        };
        let mut out = Vec::new();
        encode_index(&mut out, &r);
        assert_eq!(parse_index(&out[..].try_into().unwrap()), r);
    }

    proptest! {
        #[test]
        fn random_requests_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut h = [0u8; HEADER_LEN];
            let n = bytes.len().min(HEADER_LEN);
            h[..n].copy_from_slice(&bytes[..n]);
            if let Ok(cmd) = check_header(&parse_header(&h)) {
                let _ = parse_request(cmd, &bytes[n..]);
            }
            for v in 0..12 {
                if let Some(cmd) = Command::from_u32(v) {
                    let _ = parse_request(cmd, &bytes);
                }
            }
        }

        #[test]
        fn mutated_requests_never_panic(pos in 0usize..36, val in any::<u8>(), cut in 0usize..36) {
            let mut b = Vec::new();
            encode_request(&Request::GetPacket { stream_id: 1, offset: 2, len: 3 }, &mut b);
            b[pos] = val;
            b.truncate(cut.max(HEADER_LEN));
            let h: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().unwrap();
            if let Ok(cmd) = check_header(&parse_header(&h)) {
                let _ = parse_request(cmd, &b[HEADER_LEN..]);
            }
        }
    }
}
