//! The sender thread: connect (with backoff), handshake, resume, send the
//! metadata then every held frame in sequence order, take acks and
//! commands, heartbeat, and on shutdown wait (bounded) for the last ack.

use crate::error::AgentError;
use crate::link::{poll_fd, Link, LinkError};
use crate::metadata::MetadataState;
use crate::outbox::Outbox;
use rustls::ClientConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_core::HostInfo;
use strata_wire::{
    Compression, Control, FrameDecoder, Goodbye, Heartbeat, Hello, Message, RefuseCode, Source,
    Welcome, DEFAULT_MAX_BODY, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// `host:port` of the relay.
    pub relay: String,
    /// TLS client settings and the server name to check; `None` is plaintext.
    pub tls: Option<(Arc<ClientConfig>, String)>,
    /// The name the relay files this host under.
    pub host_id: String,
    /// The host's identity.
    pub host: HostInfo,
    /// The token.
    pub token: String,
    /// The session name.
    pub session: String,
    /// Live or replay.
    pub source: Source,
    /// This run's sequence space.
    pub instance: u64,
    /// Compression of metadata frames.
    pub compression: Compression,
    /// Heartbeat interval when the relay does not say.
    pub heartbeat: Duration,
    /// TCP connect and handshake timeout.
    pub connect_timeout: Duration,
    /// The longest backoff between connection attempts.
    pub max_backoff: Duration,
    /// Once the source finished: the longest time to go on waiting for
    /// acks while the relay shows no progress (no new ack, no bytes taken
    /// off the connection). As long as it makes progress, the wait goes on.
    pub final_ack_wait: Duration,
    /// No progress messages on stderr.
    pub quiet: bool,
}

/// What the sender did, shared with whoever reports progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Connections that reached Welcome.
    pub sessions: u64,
    /// Whether a connection is up now.
    pub connected: bool,
    /// Sequenced frames sent (resends included).
    pub frames_sent: u64,
    /// Frames sent again after a reconnect.
    pub frames_resent: u64,
    /// Bytes written (frames of all kinds).
    pub bytes_sent: u64,
    /// The last connection error.
    pub last_error: Option<String>,
    /// Control commands received.
    pub controls: u64,
}

/// The stopping agent's patience: it waits for the last ack as long as the
/// relay makes progress, and gives up after `limit` without any.
struct FinalWait {
    limit: Duration,
    /// When progress was last seen (set when the source finished).
    progress_at: Option<Instant>,
    acked: u64,
    /// Bytes the relay had not taken off the socket yet, when last looked.
    unsent: Option<u64>,
}

impl FinalWait {
    fn new(limit: Duration) -> FinalWait {
        FinalWait {
            limit,
            progress_at: None,
            acked: 0,
            unsent: None,
        }
    }

    /// Notes progress: a higher ack, or fewer bytes waiting in the socket's
    /// send queue (`unsent`, from `SIOCOUTQ`) than when last looked.
    fn observe(&mut self, outbox: &Outbox, unsent: Option<u64>) {
        if !outbox.is_closed() {
            return;
        }
        let acked = outbox.acked();
        let drained = matches!((self.unsent, unsent), (Some(a), Some(b)) if b < a);
        if self.progress_at.is_none() || acked > self.acked || drained {
            self.progress_at = Some(Instant::now());
        }
        self.acked = acked;
        self.unsent = unsent;
    }

    /// A new connection: its send queue is not comparable to the last one's.
    fn reset_socket(&mut self) {
        self.unsent = None;
    }

    /// When the wait ends unless progress is seen first.
    fn deadline(&self) -> Option<Instant> {
        self.progress_at.map(|t| t + self.limit)
    }

    fn expired(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }
}

/// Bytes written to the socket `fd` and not yet acknowledged by the peer's
/// TCP (or read by the peer, for a Unix socket); `None` where unsupported.
fn socket_unsent(fd: i32) -> Option<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer given.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    (rc == 0 && n >= 0).then_some(n as u64)
}

enum Ended {
    /// Everything acked after the source finished (or the wait ran out).
    Finished,
    /// Try again after a pause.
    Retry(String),
}

/// Runs the sender until the outbox is closed and acknowledged (or the
/// final wait ran out), or a fatal refusal. `abort` is set on a fatal error
/// so the source stops too.
pub fn run(
    cfg: SenderConfig,
    outbox: Outbox,
    metadata: Arc<Mutex<MetadataState>>,
    controls: Sender<Control>,
    stats: Arc<Mutex<SenderStats>>,
    abort: Arc<AtomicBool>,
) -> Result<(), AgentError> {
    let mut backoff = Duration::from_millis(200);
    let mut wait = FinalWait::new(cfg.final_ack_wait);
    let mut last_logged = String::new();
    loop {
        wait.observe(&outbox, None);
        if outbox.is_closed() && (outbox.acked() >= outbox.last_seq() || wait.expired()) {
            return Ok(());
        }
        wait.reset_socket();
        let ended = session(
            &cfg, &outbox, &metadata, &controls, &stats, &abort, &mut wait,
        );
        outbox.connection_lost();
        match ended {
            Ok(Ended::Finished) => return Ok(()),
            Ok(Ended::Retry(why)) => {
                if let Ok(mut s) = stats.lock() {
                    s.connected = false;
                    s.last_error = Some(why.clone());
                }
                if why != last_logged && !cfg.quiet {
                    eprintln!("strata agent: relay {}: {why}; retrying", cfg.relay);
                }
                if why.starts_with("streamed") {
                    backoff = Duration::from_millis(200);
                }
                last_logged = why;
            }
            Err(e) => {
                abort.store(true, Ordering::SeqCst);
                return Err(e);
            }
        }
        if abort.load(Ordering::SeqCst) && !outbox.is_closed() {
            return Ok(());
        }
        // Sleep the backoff, but wake early when the source finishes so the
        // final wait is spent trying.
        let was_closed = outbox.is_closed();
        let mut until = Instant::now() + backoff;
        if let Some(d) = wait.deadline() {
            until = until.min(d);
        }
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
            if outbox.is_closed() && !was_closed {
                break;
            }
        }
        backoff = (backoff * 2).min(cfg.max_backoff);
    }
}

fn now_unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

#[allow(clippy::too_many_arguments)]
fn session(
    cfg: &SenderConfig,
    outbox: &Outbox,
    metadata: &Arc<Mutex<MetadataState>>,
    controls: &Sender<Control>,
    stats: &Arc<Mutex<SenderStats>>,
    abort: &AtomicBool,
    wait: &mut FinalWait,
) -> Result<Ended, AgentError> {
    let mut link = match Link::connect(&cfg.relay, cfg.tls.clone(), cfg.connect_timeout) {
        Ok(l) => l,
        Err(e @ (LinkError::Tls { .. } | LinkError::Pem { .. })) => return Err(e.into()),
        Err(e) => return Ok(Ended::Retry(e.to_string())),
    };
    let mut dec = FrameDecoder::new(DEFAULT_MAX_BODY);
    let io_deadline = || Instant::now() + Duration::from_secs(30);
    let hello = Message::Hello(Hello {
        min_version: MIN_PROTOCOL_VERSION,
        max_version: PROTOCOL_VERSION,
        software: format!("strata-agent {}", env!("CARGO_PKG_VERSION")),
        host_id: cfg.host_id.clone(),
        host: cfg.host.clone(),
        token: cfg.token.clone(),
        session: cfg.session.clone(),
        source: cfg.source,
        instance: cfg.instance,
        acked: outbox.acked(),
        oldest: outbox.oldest(),
        next_seq: outbox.next_seq(),
    })
    .encode(0, Compression::None)?;
    if let Err(e) = link.send(&hello, &mut dec, io_deadline()) {
        return Ok(Ended::Retry(format!("sending the handshake failed: {e}")));
    }
    let welcome = match await_welcome(&mut link, &mut dec, cfg.connect_timeout)? {
        Ok(w) => w,
        Err(why) => return Ok(Ended::Retry(why)),
    };
    if welcome.resume_after > outbox.last_seq() && !cfg.quiet {
        eprintln!(
            "strata agent: relay says it stored up to seq {} but this run only reached {}; treating all as stored",
            welcome.resume_after,
            outbox.last_seq()
        );
    }
    outbox.ack(welcome.resume_after.min(outbox.last_seq()));
    let mut cursor = (welcome.resume_after + 1).max(outbox.oldest());
    let first_new = outbox.next_seq();
    outbox.drop_unsequenced();
    let meta = {
        let m = metadata.lock().unwrap_or_else(|p| p.into_inner());
        m.frames(cfg.compression)?
    };
    if let Err(e) = link.send(&meta, &mut dec, io_deadline()) {
        return Ok(Ended::Retry(format!("sending the metadata failed: {e}")));
    }
    let heartbeat = if welcome.heartbeat_ms > 0 {
        Duration::from_millis(welcome.heartbeat_ms as u64)
    } else {
        cfg.heartbeat
    };
    if let Ok(mut s) = stats.lock() {
        s.sessions += 1;
        s.connected = true;
        s.bytes_sent += (hello.len() + meta.len()) as u64;
    }
    let mut last_rx = Instant::now();
    let mut last_tx = Instant::now();
    let mut goodbye_sent = false;
    let mut streamed = false;
    loop {
        // Send everything that is ready, in order.
        loop {
            for f in outbox.take_unsequenced(cursor) {
                if let Err(e) = link.send(&f, &mut dec, io_deadline()) {
                    return Ok(Ended::Retry(format!("sending failed: {e}")));
                }
                last_tx = Instant::now();
            }
            let next = match outbox.next_to_send(cursor) {
                Ok(n) => n,
                Err(e) => return Ok(Ended::Retry(format!("reading the spool failed: {e}"))),
            };
            let Some((seq, frame)) = next else { break };
            if let Err(e) = link.send(&frame, &mut dec, io_deadline()) {
                let why = format!("sending failed: {e}");
                return Ok(Ended::Retry(if streamed {
                    format!("streamed, then {why}")
                } else {
                    why
                }));
            }
            streamed = true;
            cursor = seq + 1;
            last_tx = Instant::now();
            if let Ok(mut s) = stats.lock() {
                s.frames_sent += 1;
                s.bytes_sent += frame.len() as u64;
                if seq < first_new {
                    s.frames_resent += 1;
                }
            }
            if dec.buffered() > 0 {
                if let Some(end) = handle_incoming(&mut dec, outbox, controls, stats, &mut last_rx)?
                {
                    return Ok(end);
                }
            }
        }
        if let Some(end) = handle_incoming(&mut dec, outbox, controls, stats, &mut last_rx)? {
            return Ok(end);
        }
        let closed = outbox.is_closed();
        let last_seq = outbox.last_seq();
        if closed && cursor > last_seq && !goodbye_sent {
            let bye = Message::Goodbye(Goodbye {
                last_seq,
                reason: "the agent is stopping".into(),
            })
            .encode(0, Compression::None)?;
            if let Err(e) = link.send(&bye, &mut dec, io_deadline()) {
                return Ok(Ended::Retry(format!("sending goodbye failed: {e}")));
            }
            goodbye_sent = true;
            last_tx = Instant::now();
        }
        if closed && outbox.acked() >= last_seq {
            return Ok(Ended::Finished);
        }
        if closed {
            wait.observe(outbox, socket_unsent(link.fd()));
            if wait.expired() {
                return Ok(Ended::Finished);
            }
        }
        if abort.load(Ordering::SeqCst) && !closed {
            return Ok(Ended::Finished);
        }
        if last_tx.elapsed() >= heartbeat {
            let hb = Message::Heartbeat(Heartbeat {
                unix_ns: now_unix_ns(),
                last_seq,
            })
            .encode(0, Compression::None)?;
            if let Err(e) = link.send(&hb, &mut dec, io_deadline()) {
                return Ok(Ended::Retry(format!("sending a heartbeat failed: {e}")));
            }
            last_tx = Instant::now();
        }
        if last_rx.elapsed() >= heartbeat * 3 {
            return Ok(Ended::Retry(format!(
                "the relay sent nothing for {:.1} s",
                last_rx.elapsed().as_secs_f64()
            )));
        }
        let wait = heartbeat
            .saturating_sub(last_tx.elapsed())
            .min(Duration::from_millis(250))
            .max(Duration::from_millis(1));
        let mut fds = [
            libc::pollfd {
                fd: link.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: outbox.wake_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfd structs.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, wait.as_millis() as i32) };
        if rc > 0 && fds[1].revents != 0 {
            outbox.clear_wake();
        }
        if rc > 0 && fds[0].revents != 0 {
            match link.read_available(&mut dec) {
                Ok(true) => {}
                Ok(false) => {
                    let _ = handle_incoming(&mut dec, outbox, controls, stats, &mut last_rx);
                    return Ok(Ended::Retry(if streamed {
                        "streamed, then the relay closed the connection".into()
                    } else {
                        "the relay closed the connection".into()
                    }));
                }
                Err(e) => return Ok(Ended::Retry(format!("receiving failed: {e}"))),
            }
        }
    }
}

/// Waits for the relay's answer to Hello.
fn await_welcome(
    link: &mut Link,
    dec: &mut FrameDecoder,
    timeout: Duration,
) -> Result<Result<Welcome, String>, AgentError> {
    let until = Instant::now() + timeout;
    loop {
        match dec.next_frame() {
            Ok(Some(f)) => {
                return match f.message() {
                    Ok(Message::Welcome(w)) => {
                        if w.version < MIN_PROTOCOL_VERSION || w.version > PROTOCOL_VERSION {
                            Err(AgentError::Refused {
                                code: RefuseCode::Version,
                                message: format!(
                                    "the relay chose protocol version {}, this agent speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}",
                                    w.version
                                ),
                            })
                        } else {
                            Ok(Ok(w))
                        }
                    }
                    Ok(Message::Refused(r)) => match r.code {
                        RefuseCode::BadToken | RefuseCode::Version | RefuseCode::BadName => {
                            Err(AgentError::Refused {
                                code: r.code,
                                message: r.message,
                            })
                        }
                        _ => Ok(Err(format!(
                            "the relay refused the connection: {}",
                            r.message
                        ))),
                    },
                    Ok(other) => Ok(Err(format!(
                        "the relay answered the handshake with {} instead of Welcome",
                        other.name()
                    ))),
                    Err(e) => Ok(Err(format!("bad handshake answer: {e}"))),
                };
            }
            Ok(None) => {}
            Err(e) => return Ok(Err(format!("bad handshake answer: {e}"))),
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Err("the relay did not answer the handshake in time".into()));
        }
        match poll_fd(link.fd(), true, false, left) {
            Ok((true, _)) => match link.read_available(dec) {
                Ok(true) => {}
                Ok(false) => {
                    if dec.buffered() == 0 {
                        return Ok(Err(
                            "the relay closed the connection during the handshake".into()
                        ));
                    }
                }
                Err(e) => return Ok(Err(format!("receiving the handshake answer failed: {e}"))),
            },
            Ok(_) => {}
            Err(e) => return Ok(Err(format!("poll failed: {e}"))),
        }
    }
}

/// Applies what the relay sent. Returns how the session ends, if it does.
fn handle_incoming(
    dec: &mut FrameDecoder,
    outbox: &Outbox,
    controls: &Sender<Control>,
    stats: &Arc<Mutex<SenderStats>>,
    last_rx: &mut Instant,
) -> Result<Option<Ended>, AgentError> {
    loop {
        let frame = match dec.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(None),
            Err(e) => return Ok(Some(Ended::Retry(format!("bad frame from the relay: {e}")))),
        };
        *last_rx = Instant::now();
        match frame.message() {
            Ok(Message::Ack(a)) => outbox.ack(a.seq),
            Ok(Message::Heartbeat(_)) | Ok(Message::Unknown { .. }) => {}
            Ok(Message::Control(c)) => {
                if let Ok(mut s) = stats.lock() {
                    s.controls += 1;
                }
                let _ = controls.send(c);
            }
            Ok(Message::Goodbye(g)) => {
                outbox.ack(g.last_seq.min(outbox.last_seq()));
                if outbox.is_closed() && outbox.acked() >= outbox.last_seq() {
                    return Ok(Some(Ended::Finished));
                }
                return Ok(Some(Ended::Retry(format!(
                    "the relay said goodbye: {}",
                    g.reason
                ))));
            }
            Ok(Message::Refused(r)) => {
                return match r.code {
                    RefuseCode::BadToken | RefuseCode::Version | RefuseCode::BadName => {
                        Err(AgentError::Refused {
                            code: r.code,
                            message: r.message,
                        })
                    }
                    _ => Ok(Some(Ended::Retry(format!(
                        "the relay refused: {}",
                        r.message
                    )))),
                };
            }
            Ok(other) => {
                return Ok(Some(Ended::Retry(format!(
                    "the relay sent an unexpected {}",
                    other.name()
                ))))
            }
            Err(e) => {
                return Ok(Some(Ended::Retry(format!(
                    "bad message from the relay: {e}"
                ))))
            }
        }
    }
}
