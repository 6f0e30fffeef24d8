//! A minimal relay built from the codec, for tests and benchmarks: it
//! accepts agents over plaintext or TLS, checks the token, resumes from
//! what it stored, acks, and keeps what it received so that tests can
//! check sequence numbers, pages and events. It is not the real relay
//! (`strata-relay`), only enough of one to exercise the agent.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_ftrace::{parse_header_page, Page, PageLayout};
use strata_wire::{
    Ack, Compression, FrameDecoder, Message, RefuseCode, Refused, Welcome, DEFAULT_MAX_BODY,
    PROTOCOL_VERSION,
};

/// What the test relay received, per agent instance.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// Sequence numbers stored, in arrival order (duplicates dropped).
    pub seqs: Vec<u64>,
    /// Duplicates received (seq not above the last stored).
    pub duplicates: u64,
    /// Pages per CPU.
    pub pages: BTreeMap<u32, u64>,
    /// Events per CPU, decoded from the pages with the page layout sent.
    pub events: BTreeMap<u32, u64>,
    /// Events per `common_type` id.
    pub events_by_id: BTreeMap<u16, u64>,
    /// Packets and their events.
    pub packets: u64,
    /// Events in packets (from PacketInfo).
    pub packet_events: u64,
    /// The earliest packet begin time seen (raw clock value).
    pub first_packet_ts: Option<u64>,
    /// Lost reports, as received.
    pub lost: Vec<strata_wire::Lost>,
    /// State dump rows.
    pub statedump_rows: u64,
    /// The recorded formats, latest text per `system:name`.
    pub formats: BTreeMap<String, String>,
    /// Formats received for their argument names only.
    pub argument_names: u64,
    /// Times the metadata was received (once per connection).
    pub metadata_bursts: u64,
    /// TSDL text received (replay).
    pub tsdl: Option<String>,
    /// The page layout.
    pub layout: Option<PageLayout>,
    /// Goodbye received.
    pub goodbye: bool,
    /// Payloads of every page (when `keep_pages`), per CPU.
    pub page_bytes: BTreeMap<u32, Vec<Vec<u8>>>,
    /// Control results: (request, ok, message).
    pub control_results: Vec<(u64, bool, String)>,
    /// Host id from the handshake.
    pub host_id: String,
}

/// How the test relay behaves.
#[derive(Debug, Clone)]
pub struct TestRelayOptions {
    /// Tokens accepted (any when empty).
    pub tokens: Vec<String>,
    /// TLS certificate chain and key (PEM), or plaintext.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
    /// Keep every page's bytes.
    pub keep_pages: bool,
    /// Heartbeat interval announced.
    pub heartbeat_ms: u32,
    /// Send no acks (to make the agent hold frames).
    pub no_acks: bool,
    /// After Welcome, send nothing at all (a relay that hangs).
    pub silent: bool,
    /// Require client certificates that chain to this PEM certificate
    /// (mutual TLS).
    pub client_ca: Option<Vec<u8>>,
    /// A relay slower than its network: it reads at full speed but
    /// handles one sequenced frame per pause this long (zero: no pause), so
    /// a backlog builds up that it acknowledges bit by bit.
    pub frame_pause: Duration,
}

impl Default for TestRelayOptions {
    fn default() -> Self {
        TestRelayOptions {
            tokens: Vec::new(),
            tls: None,
            keep_pages: false,
            heartbeat_ms: 1000,
            no_acks: false,
            silent: false,
            client_ca: None,
            frame_pause: Duration::ZERO,
        }
    }
}

/// State shared between the accept thread, connections, and the test.
#[derive(Debug, Default)]
pub struct Shared {
    /// Per agent instance.
    pub instances: BTreeMap<u64, Received>,
    /// Connections accepted.
    pub connections: u64,
    /// Handshakes refused, with the reason.
    pub refused: Vec<String>,
    /// Control commands to send to the next (or current) connection.
    pub pending_controls: Vec<strata_wire::Control>,
}

/// A running test relay.
pub struct TestRelay {
    /// The address agents connect to.
    pub addr: String,
    /// What it received.
    pub shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    /// While set, every connection is dropped and new ones are closed at
    /// once: the relay is unreachable.
    pub cut: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestRelay {
    /// Listens on `bind` (`127.0.0.1:0` for any free port).
    pub fn start(bind: &str, opts: TestRelayOptions) -> std::io::Result<TestRelay> {
        let listener = TcpListener::bind(bind)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?.to_string();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let tls = match &opts.tls {
            Some((cert, key)) => Some(server_config(cert, key, opts.client_ca.as_deref())?),
            None => None,
        };
        let thread = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            let cut = Arc::clone(&cut);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((sock, _)) => {
                            if cut.load(Ordering::SeqCst) {
                                drop(sock);
                                continue;
                            }
                            let shared = Arc::clone(&shared);
                            let opts = opts.clone();
                            let tls = tls.clone();
                            let stop = Arc::clone(&stop);
                            let cut = Arc::clone(&cut);
                            if let Ok(mut g) = shared.lock() {
                                g.connections += 1;
                            }
                            std::thread::spawn(move || {
                                let _ = serve(sock, tls, &opts, &shared, &stop, &cut);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Ok(TestRelay {
            addr,
            shared,
            stop,
            cut,
            thread: Some(thread),
        })
    }

    /// A copy of what one instance sent (the only one when `None`).
    pub fn received(&self) -> Received {
        let g = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        g.instances.values().next().cloned().unwrap_or_default()
    }

    /// Queues a control command for the connected agent.
    pub fn send_control(&self, c: strata_wire::Control) {
        if let Ok(mut g) = self.shared.lock() {
            g.pending_controls.push(c);
        }
    }

    /// Makes the relay unreachable (`true`) or reachable again.
    pub fn set_unreachable(&self, on: bool) {
        self.cut.store(on, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.lock().map_or(0, |g| g.connections)
    }

    /// Stops accepting and drops every connection.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn server_config(
    cert: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
) -> std::io::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(std::io::Error::other)?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(std::io::Error::other)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                roots
                    .add(c.map_err(std::io::Error::other)?)
                    .map_err(std::io::Error::other)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(std::io::Error::other)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let cfg = builder
        .with_single_cert(chain, key)
        .map_err(std::io::Error::other)?;
    Ok(Arc::new(cfg))
}

trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

fn serve(
    sock: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    opts: &TestRelayOptions,
    shared: &Arc<Mutex<Shared>>,
    stop: &AtomicBool,
    cut: &AtomicBool,
) -> std::io::Result<()> {
    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut conn: Box<dyn Conn> = match tls {
        Some(cfg) => {
            let c = rustls::ServerConnection::new(cfg).map_err(std::io::Error::other)?;
            Box::new(rustls::StreamOwned::new(c, sock))
        }
        None => Box::new(sock),
    };
    let mut dec = FrameDecoder::new(DEFAULT_MAX_BODY);
    let mut buf = vec![0u8; 256 << 10];
    let mut instance: Option<u64> = None;
    let mut last_ack = 0u64;
    // Acks go out when something new is stored; a heartbeat otherwise.
    let mut acked_sent = u64::MAX;
    let mut last_sent = std::time::Instant::now();
    let mut scratch = Vec::new();
    let mut out = Vec::new();
    loop {
        if stop.load(Ordering::Relaxed) || cut.load(Ordering::Relaxed) {
            return Ok(());
        }
        match conn.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => dec.feed(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
        out.clear();
        while let Some(f) = dec.next_frame().map_err(std::io::Error::other)? {
            let seq = f.header.seq;
            let msg = f.message().map_err(std::io::Error::other)?;
            let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
            if let Message::Hello(h) = &msg {
                if !opts.tokens.is_empty() && !opts.tokens.contains(&h.token) {
                    g.refused.push(format!("bad token for {}", h.host_id));
                    Message::Refused(Refused {
                        code: RefuseCode::BadToken,
                        message: format!("wrong token for host {}", h.host_id),
                    })
                    .encode_into(0, Compression::None, &mut scratch, &mut out)
                    .map_err(std::io::Error::other)?;
                    conn.write_all(&out)?;
                    conn.flush()?;
                    return Ok(());
                }
                instance = Some(h.instance);
                let r = g.instances.entry(h.instance).or_default();
                r.host_id = h.host_id.clone();
                let known = !r.seqs.is_empty();
                last_ack = r.seqs.iter().copied().max().unwrap_or(0);
                Message::Welcome(Welcome {
                    version: PROTOCOL_VERSION,
                    relay: "strata-agent testkit".into(),
                    known,
                    resume_after: last_ack,
                    heartbeat_ms: opts.heartbeat_ms,
                    max_body: DEFAULT_MAX_BODY,
                })
                .encode_into(0, Compression::None, &mut scratch, &mut out)
                .map_err(std::io::Error::other)?;
                continue;
            }
            let Some(inst) = instance else {
                return Err(std::io::Error::other("data before Hello"));
            };
            let r = g.instances.entry(inst).or_default();
            if seq > 0 {
                let last = r.seqs.last().copied().unwrap_or(0);
                if seq <= last {
                    r.duplicates += 1;
                    continue;
                }
                r.seqs.push(seq);
            }
            match msg {
                Message::PageLayout(l) => {
                    r.metadata_bursts += 1;
                    r.layout = parse_header_page(&l.header_page).ok();
                }
                Message::CtfMetadata(m) => {
                    r.metadata_bursts += 1;
                    r.tsdl = Some(m.tsdl);
                }
                Message::Formats(fm) if fm.purpose == strata_wire::FormatPurpose::ArgumentNames => {
                    r.argument_names += fm.formats.len() as u64;
                }
                Message::Formats(fm) if fm.purpose == strata_wire::FormatPurpose::Recorded => {
                    for f in fm.formats {
                        r.formats.insert(format!("{}:{}", f.system, f.name), f.text);
                    }
                }
                Message::Pages(p) => {
                    for page in p.pages.iter() {
                        *r.pages.entry(p.cpu).or_default() += 1;
                        if let Some(l) = r.layout {
                            if let Ok(pg) = Page::parse(&l, page) {
                                for rec in pg.records().flatten() {
                                    *r.events.entry(p.cpu).or_default() += 1;
                                    if let Some(id) = rec.data.get(..2) {
                                        *r.events_by_id
                                            .entry(u16::from_le_bytes([id[0], id[1]]))
                                            .or_default() += 1;
                                    }
                                }
                            }
                        }
                        if opts.keep_pages {
                            r.page_bytes.entry(p.cpu).or_default().push(page.to_vec());
                        }
                    }
                }
                Message::Packets(p) => {
                    for (info, _) in p.packets.iter() {
                        r.packets += 1;
                        r.packet_events += info.events as u64;
                        r.first_packet_ts = Some(
                            r.first_packet_ts
                                .map_or(info.ts_begin, |t| t.min(info.ts_begin)),
                        );
                    }
                }
                Message::Lost(l) => r.lost.push(l),
                Message::Statedump(s) => r.statedump_rows += s.threads.len() as u64,
                Message::ControlResult(c) => r.control_results.push((c.request, c.ok, c.message)),
                Message::Goodbye(_) => r.goodbye = true,
                _ => {}
            }
            if seq > 0 {
                last_ack = seq;
                if !opts.frame_pause.is_zero() {
                    drop(g);
                    std::thread::sleep(opts.frame_pause);
                    break;
                }
            }
        }
        if opts.silent && instance.is_some() {
            // Only the Welcome goes out; then nothing.
            if !out.is_empty() {
                conn.write_all(&out)?;
                conn.flush()?;
                out.clear();
            }
            continue;
        }
        let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
        if instance.is_some() {
            for c in g.pending_controls.drain(..) {
                Message::Control(c)
                    .encode_into(0, Compression::None, &mut scratch, &mut out)
                    .map_err(std::io::Error::other)?;
            }
        }
        drop(g);
        if instance.is_some() && !opts.no_acks && last_ack != acked_sent {
            Message::Ack(Ack { seq: last_ack })
                .encode_into(0, Compression::None, &mut scratch, &mut out)
                .map_err(std::io::Error::other)?;
            acked_sent = last_ack;
        }
        if instance.is_some()
            && out.is_empty()
            && last_sent.elapsed() >= Duration::from_millis(opts.heartbeat_ms as u64)
        {
            Message::Heartbeat(strata_wire::Heartbeat {
                unix_ns: 0,
                last_seq: last_ack,
            })
            .encode_into(0, Compression::None, &mut scratch, &mut out)
            .map_err(std::io::Error::other)?;
        }
        if !out.is_empty() {
            conn.write_all(&out)?;
            conn.flush()?;
            last_sent = std::time::Instant::now();
        }
    }
}
