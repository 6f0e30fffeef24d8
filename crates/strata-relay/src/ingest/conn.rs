//! One agent connection: TLS, handshake, the frame loop, and its end.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use strata_wire::{
    Ack, Compression, FrameDecoder, Goodbye, Heartbeat, Hello, Message, RefuseCode, Refused,
    Source, Welcome, WireError, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

use super::host::{HostIngest, IngestError, Reply};
use super::{log, IngestConfig};
use crate::names::check_name;
use crate::registry::{lock, unix_ms, HostEntry, Registry};
use crate::store::host_trace::stored_seq;

/// Bytes read from the socket at once.
const READ_CHUNK: usize = 256 * 1024;
/// Bytes per second below which a frame that takes longer than the frame
/// timeout marks a slow-loris client.
const MIN_RATE: f64 = 16.0 * 1024.0;

/// Why a connection ended: a short label (counted in `/metrics`) and the
/// logged reason.
#[derive(Debug)]
struct End {
    label: &'static str,
    reason: String,
}

fn end(label: &'static str, reason: impl Into<String>) -> End {
    End {
        label,
        reason: reason.into(),
    }
}

fn wire_end(e: &WireError) -> End {
    let label = match e {
        WireError::TooLarge { .. } => "oversized",
        _ => "malformed",
    };
    end(label, format!("bad frame: {e}"))
}

/// Runs work that may block (storage, decoding) without stalling the
/// other connections of a multi-threaded runtime.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Serves one accepted socket to its end; logs why it ended.
pub async fn run(
    sock: TcpStream,
    peer: String,
    acceptor: Option<TlsAcceptor>,
    cfg: Arc<IngestConfig>,
    registry: Arc<Registry>,
    shutdown: watch::Receiver<bool>,
) {
    registry.totals.accepted.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let result = match acceptor {
        Some(a) => match tokio::time::timeout(cfg.handshake_timeout, a.accept(sock)).await {
            Ok(Ok(tls)) => {
                let rest = cfg.handshake_timeout.saturating_sub(started.elapsed());
                session(tls, &peer, true, rest, &cfg, &registry, shutdown).await
            }
            Ok(Err(e)) => Err(end("tls", format!("TLS handshake failed: {e}"))),
            Err(_) => Err(end(
                "handshake_timeout",
                format!("no TLS handshake within {:?}", cfg.handshake_timeout),
            )),
        },
        None => {
            session(
                sock,
                &peer,
                false,
                cfg.handshake_timeout,
                &cfg,
                &registry,
                shutdown,
            )
            .await
        }
    };
    let e = match result {
        Ok(e) | Err(e) => e,
    };
    registry.totals.drop_reason(e.label);
    log(format_args!(
        "{peer}: connection ended ({}): {}",
        e.label, e.reason
    ));
}

/// Serves one agent over a byte stream that is already connected (the
/// stdin/stdout of an `ssh ... strata agent --stdio`), without TLS, to its
/// end; returns why it ended as (label, reason).
pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: S,
    peer: &str,
    cfg: Arc<IngestConfig>,
    registry: Arc<Registry>,
    shutdown: watch::Receiver<bool>,
) -> (&'static str, String) {
    registry.totals.accepted.fetch_add(1, Ordering::Relaxed);
    let r = session(
        stream,
        peer,
        false,
        cfg.handshake_timeout,
        &cfg,
        &registry,
        shutdown,
    )
    .await;
    let e = match r {
        Ok(e) | Err(e) => e,
    };
    (e.label, e.reason)
}

/// Reads until a whole frame is buffered, or the deadline passes.
async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    dec: &mut FrameDecoder,
    buf: &mut [u8],
    deadline: tokio::time::Instant,
) -> Result<(), End> {
    loop {
        match dec.needed() {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(wire_end(&e)),
        }
        let n = match tokio::time::timeout_at(deadline, rd.read(buf)).await {
            Ok(Ok(0)) => {
                return Err(end(
                    "closed",
                    "the agent closed the connection during the handshake",
                ))
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(end("io", format!("read failed: {e}"))),
            Err(_) => {
                return Err(end(
                    "handshake_timeout",
                    format!(
                        "no complete Hello in time ({} bytes received)",
                        dec.buffered()
                    ),
                ))
            }
        };
        dec.feed(&buf[..n]);
    }
}

async fn send<W: AsyncWrite + Unpin>(
    wr: &mut W,
    msg: &Message<'_>,
    timeout: Duration,
) -> Result<(), End> {
    let bytes = msg
        .encode(0, Compression::None)
        .map_err(|e| end("internal", format!("cannot encode {}: {e}", msg.name())))?;
    match tokio::time::timeout(timeout, wr.write_all(&bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(end("io", format!("write failed: {e}"))),
        Err(_) => Err(end(
            "slow",
            format!(
                "could not send {} within {timeout:?}: the agent does not read",
                msg.name()
            ),
        )),
    }
}

async fn refuse<W: AsyncWrite + Unpin>(
    wr: &mut W,
    code: RefuseCode,
    label: &'static str,
    message: String,
    timeout: Duration,
) -> End {
    let msg = Message::Refused(Refused {
        code,
        message: message.clone(),
    });
    let _ = send(wr, &msg, timeout).await;
    let _ = wr.shutdown().await;
    end(label, format!("refused: {message}"))
}

/// Checks a Hello; the refusal to send otherwise.
fn check_hello(h: &Hello, cfg: &IngestConfig) -> Result<u16, (RefuseCode, &'static str, String)> {
    let version = h.max_version.min(PROTOCOL_VERSION);
    if version < h.min_version || version < MIN_PROTOCOL_VERSION {
        return Err((
            RefuseCode::Version,
            "version",
            format!(
                "the agent speaks versions {}..={}, this relay {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}",
                h.min_version, h.max_version
            ),
        ));
    }
    for (what, name) in [
        ("host", h.host_id.as_str()),
        ("session", h.session.as_str()),
    ] {
        if let Err(e) = check_name(what, name) {
            return Err((RefuseCode::BadName, "bad_name", e.to_string()));
        }
    }
    if !cfg.tokens.admits(&h.host_id, h.token.as_bytes()) {
        return Err((
            RefuseCode::BadToken,
            "bad_token",
            format!("the token is not valid for host {:?}", h.host_id),
        ));
    }
    Ok(version)
}

/// Takes the host for connection `id`; a connection of the same agent run
/// that still holds it (a cut the relay has not noticed) is asked to leave.
async fn take_host(entry: &HostEntry, id: u64, instance: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if entry
            .holder
            .compare_exchange(0, id, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return true;
        }
        if lock(&entry.status).instance != instance || Instant::now() >= deadline {
            return false;
        }
        entry
            .kick_request
            .store(entry.holder.load(Ordering::Acquire), Ordering::Release);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn session<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: S,
    peer: &str,
    tls: bool,
    handshake: Duration,
    cfg: &Arc<IngestConfig>,
    registry: &Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<End, End> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut dec = FrameDecoder::new(cfg.max_body);
    let mut buf = vec![0u8; READ_CHUNK];
    let deadline = tokio::time::Instant::now() + handshake;
    read_frame(&mut rd, &mut dec, &mut buf, deadline).await?;
    let first = match dec.next_frame() {
        Ok(Some(f)) => f.message().map(|m| match m {
            Message::Hello(h) => Ok(h),
            other => Err(other.name()),
        }),
        Ok(None) => return Err(end("internal", "no frame after a whole one was buffered")),
        Err(e) => return Err(wire_end(&e)),
    };
    let hello = match first {
        Ok(Ok(h)) => h,
        Ok(Err(name)) => {
            let msg = format!("the first frame must be Hello, not {name}");
            return Err(refuse(
                &mut wr,
                RefuseCode::Protocol,
                "protocol",
                msg,
                cfg.frame_timeout,
            )
            .await);
        }
        Err(e) => return Err(wire_end(&e)),
    };
    let version = match check_hello(&hello, cfg) {
        Ok(v) => v,
        Err((code, label, msg)) => {
            return Err(refuse(
                &mut wr,
                code,
                label,
                format!(
                    "{msg} (host {:?}, session {:?})",
                    hello.host_id.escape_debug().to_string(),
                    hello.session.escape_debug().to_string()
                ),
                cfg.frame_timeout,
            )
            .await)
        }
    };
    let entry = registry.entry(&hello.session, &hello.host_id);
    let id = registry.connection_id();
    if !take_host(&entry, id, hello.instance).await {
        let msg = format!(
            "host {} of session {} is already connected from another agent run",
            hello.host_id, hello.session
        );
        return Err(refuse(
            &mut wr,
            RefuseCode::Duplicate,
            "duplicate",
            msg,
            cfg.frame_timeout,
        )
        .await);
    }
    let result = serve_host(
        &mut rd,
        &mut wr,
        &mut dec,
        &mut buf,
        &hello,
        version,
        peer,
        tls,
        id,
        &entry,
        cfg,
        registry,
        &mut shutdown,
    )
    .await;
    {
        let mut st = lock(&entry.status);
        st.state = "disconnected";
        st.disconnect_reason = Some(match &result {
            Ok(e) | Err(e) => e.reason.clone(),
        });
    }
    let _ = entry
        .holder
        .compare_exchange(id, 0, Ordering::AcqRel, Ordering::Acquire);
    let _ = wr.shutdown().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn serve_host<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    rd: &mut R,
    wr: &mut W,
    dec: &mut FrameDecoder,
    buf: &mut [u8],
    hello: &Hello,
    version: u16,
    peer: &str,
    tls: bool,
    id: u64,
    entry: &Arc<HostEntry>,
    cfg: &Arc<IngestConfig>,
    registry: &Arc<Registry>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<End, End> {
    // A snapshot this relay asked for is filed under DATA/snapshots/.
    let store = if registry.control_state.is_snapshot(&hello.session) {
        let mut s = (*cfg.store).clone();
        s.data = s.data.join("snapshots");
        Arc::new(s)
    } else {
        Arc::clone(&cfg.store)
    };
    let resume =
        blocking(|| stored_seq(&store.data, &hello.session, &hello.host_id, hello.instance))
            .map_err(|e| end("store", format!("cannot read the checkpoint: {e}")))?;
    {
        let mut st = lock(&entry.status);
        st.state = "connected";
        st.hostname = hello.host.hostname.clone();
        st.agent_version = hello.software.clone();
        st.source = match hello.source {
            Source::Live => "live",
            Source::Replay => "replay",
        };
        st.peer = peer.to_string();
        st.tls = tls;
        st.connected_since_ms = unix_ms();
        st.last_seen_ms = st.connected_since_ms;
        st.disconnect_reason = None;
        st.instance = hello.instance;
        st.connections += 1;
        st.last_seq = resume;
    }
    let heartbeat_ms = cfg.heartbeat.as_millis().min(u32::MAX as u128) as u32;
    send(
        wr,
        &Message::Welcome(Welcome {
            version,
            relay: format!("strata-relay {}", env!("CARGO_PKG_VERSION")),
            known: resume > 0,
            resume_after: resume,
            heartbeat_ms,
            max_body: cfg.max_body,
        }),
        cfg.frame_timeout,
    )
    .await?;
    log(format_args!(
        "{peer}: host {} session {} connected ({}, {}, {}), resuming after {resume}",
        hello.host_id,
        hello.session,
        hello.software,
        if tls { "TLS" } else { "plaintext" },
        match hello.source {
            Source::Live => "live pages",
            Source::Replay => "replayed packets",
        }
    ));
    let mut ingest = HostIngest::new(
        store,
        Arc::clone(registry),
        Arc::clone(entry),
        hello.clone(),
        resume,
    );
    let mut controls = registry
        .control_state
        .attach(&hello.session, &hello.host_id, id);
    let result = frame_loop(
        rd,
        wr,
        dec,
        buf,
        &mut ingest,
        id,
        entry,
        cfg,
        registry,
        shutdown,
        &mut controls,
    )
    .await;
    registry
        .control_state
        .detach(&hello.session, &hello.host_id, id);
    // Whatever happened, what was stored is committed (not acked: the
    // agent learns it from the next Welcome).
    if let Err(e) = blocking(|| ingest.finish(matches!(&result, Ok(e) if e.label == "goodbye"))) {
        log(format_args!("{peer}: final commit failed: {e}"));
    }
    if ingest.corrupt > 0 {
        log(format_args!(
            "{peer}: {} pages or packets could not be decoded",
            ingest.corrupt
        ));
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn frame_loop<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    rd: &mut R,
    wr: &mut W,
    dec: &mut FrameDecoder,
    buf: &mut [u8],
    ingest: &mut HostIngest,
    id: u64,
    entry: &Arc<HostEntry>,
    cfg: &Arc<IngestConfig>,
    registry: &Arc<Registry>,
    shutdown: &mut watch::Receiver<bool>,
    controls: &mut tokio::sync::mpsc::Receiver<strata_wire::Control>,
) -> Result<End, End> {
    let mut tick = tokio::time::interval(cfg.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_commit = Instant::now();
    let mut last_sent = Instant::now();
    let mut last_recv = Instant::now();
    // A frame in progress: when it began, and the bytes received since.
    let mut partial_since: Option<Instant> = None;
    let mut partial_bytes = 0u64;
    let idle_limit = cfg.heartbeat * 3;
    let store_err = |e: IngestError| match e {
        IngestError::Protocol(m) => end("protocol", m),
        IngestError::Store(e) => end("store", e.to_string()),
    };
    loop {
        // Every whole frame buffered.
        let mut goodbye = None;
        let mut wire = 0u64;
        loop {
            let frame = match dec.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(wire_end(&e)),
            };
            let seq = frame.header.seq;
            wire += frame.header.frame_len() as u64;
            let msg = frame.message().map_err(|e| wire_end(&e))?;
            if let Message::Goodbye(g) = &msg {
                goodbye = Some(g.reason.clone());
            }
            if let Message::ControlResult(r) = &msg {
                registry.control_state.resolve(r.clone());
            }
            let reply = blocking(|| ingest.handle(seq, &msg)).map_err(store_err)?;
            if reply == Reply::Goodbye {
                break;
            }
        }
        if wire > 0 {
            registry
                .totals
                .wire_bytes
                .fetch_add(wire, Ordering::Relaxed);
            let mut st = lock(&entry.status);
            st.wire_bytes += wire;
            st.last_seen_ms = unix_ms();
        }
        if let Some(reason) = goodbye {
            let acked = blocking(|| ingest.commit()).map_err(store_err)?;
            let last = acked.unwrap_or(ingest.committed());
            send(wr, &Message::Ack(Ack { seq: last }), cfg.frame_timeout).await?;
            let bye = Message::Goodbye(Goodbye {
                last_seq: last,
                reason: format!("every frame up to {last} is stored"),
            });
            send(wr, &bye, cfg.frame_timeout).await?;
            return Ok(end(
                "goodbye",
                format!("the agent said goodbye ({reason}) after seq {last}"),
            ));
        }
        // Commit (and ack) every 4 MiB or every interval, whichever first;
        // here rather than on the timer alone, which a flood of bytes could
        // keep from firing.
        if ingest.pending_bytes() >= cfg.commit_bytes
            || last_commit.elapsed() >= cfg.commit_interval
        {
            if let Some(seq) = blocking(|| ingest.commit()).map_err(store_err)? {
                send(wr, &Message::Ack(Ack { seq }), cfg.frame_timeout).await?;
                last_sent = Instant::now();
            }
            last_commit = Instant::now();
            // Whole frames are handled before the next read, so the bytes
            // held unprocessed are at most one read plus one partial frame:
            // the socket's window is the agent's backpressure. The memory a
            // large frame needed goes back here, at a commit and with no
            // partial frame held, not after every read, where shrinking and
            // regrowing cost a third of the ingest.
            if dec.buffered() == 0 {
                dec.shrink(READ_CHUNK);
            }
        }
        partial_since = match (dec.buffered() > 0, partial_since) {
            (false, _) => None,
            (true, Some(t)) => Some(t),
            (true, None) => {
                partial_bytes = 0;
                Some(Instant::now())
            }
        };
        tokio::select! {
            // Bytes waiting are read before any timer is looked at: a busy
            // relay that polls late must not take its own delay for an
            // idle or slow agent.
            biased;
            r = rd.read(buf) => {
                let n = match r {
                    Ok(0) => return Err(end("closed", "the agent closed the connection")),
                    Ok(n) => n,
                    Err(e) => return Err(end("io", format!("read failed: {e}"))),
                };
                dec.feed(&buf[..n]);
                last_recv = Instant::now();
                partial_bytes += n as u64;
            }
            Some(c) = controls.recv() => {
                send(wr, &Message::Control(c), cfg.frame_timeout).await?;
                last_sent = Instant::now();
            }
            _ = tick.tick() => {
                if ingest.waiting() > 0 {
                    blocking(|| ingest.tick());
                }
                if last_sent.elapsed() >= cfg.heartbeat {
                    let hb = Message::Heartbeat(Heartbeat {
                        unix_ns: crate::analysis::unix_now_ns(),
                        last_seq: ingest.committed(),
                    });
                    send(wr, &hb, cfg.frame_timeout).await?;
                    last_sent = Instant::now();
                }
                if last_recv.elapsed() >= idle_limit {
                    return Err(end("idle", format!("nothing received for {:?} (3 heartbeat intervals)", last_recv.elapsed())));
                }
                // A slow-loris client trickles bytes: a frame still
                // incomplete after the timeout, received slower than
                // MIN_RATE. A busy relay that reads late finds whole socket
                // buffers waiting, far above that rate, and drops nobody.
                if let Some(t) = partial_since {
                    let secs = t.elapsed().as_secs_f64();
                    if t.elapsed() >= cfg.frame_timeout && (partial_bytes as f64) < MIN_RATE * secs {
                        return Err(end("slow", format!(
                            "a frame is still incomplete after {:?} ({} bytes of it received): slow or stalled client",
                            t.elapsed(), dec.buffered()
                        )));
                    }
                }
                if entry.kick_request.load(Ordering::Acquire) == id {
                    entry.kick_request.store(0, Ordering::Release);
                    return Err(end("superseded", "a new connection of the same agent run took the host over"));
                }
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    let acked = blocking(|| ingest.commit()).map_err(store_err)?;
                    let last = acked.unwrap_or(ingest.committed());
                    let _ = send(wr, &Message::Ack(Ack { seq: last }), cfg.frame_timeout).await;
                    let bye = Message::Goodbye(Goodbye { last_seq: last, reason: "the relay is shutting down".into() });
                    let _ = send(wr, &bye, cfg.frame_timeout).await;
                    return Ok(end("shutdown", "the relay is shutting down"));
                }
            }
        }
    }
}
