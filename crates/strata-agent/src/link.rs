//! One connection to a relay: TCP, optionally wrapped in TLS (rustls), made
//! non-blocking after the handshake so that one thread can both send frames
//! and take in acks and commands without ever deadlocking on a full socket.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_wire::FrameDecoder;
use thiserror::Error;

/// Why a connection could not be made or used.
#[derive(Debug, Error)]
pub enum LinkError {
    /// The relay address does not resolve.
    #[error("cannot resolve relay address {addr}: {source}")]
    Resolve {
        /// The address given.
        addr: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// TCP connect failed.
    #[error("cannot connect to relay {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with relay {addr} failed: {reason}; {hint}")]
    Tls {
        /// The address.
        addr: String,
        /// rustls' reason.
        reason: String,
        /// What to check.
        hint: &'static str,
    },
    /// A certificate or key file could not be used.
    #[error("cannot use {what} {path}: {reason}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// How to secure the connection.
#[derive(Debug, Clone)]
pub enum Security {
    /// Plaintext (`--insecure`).
    Plaintext,
    /// TLS, trusting the certificates in `ca`, optionally presenting a
    /// client certificate.
    Tls {
        /// PEM file of the certificate(s) to trust.
        ca: PathBuf,
        /// PEM certificate chain and private key for mutual TLS.
        client: Option<(PathBuf, PathBuf)>,
        /// The name to check the relay's certificate against (default: the
        /// host part of the relay address).
        server_name: Option<String>,
    },
}

/// A rustls client configuration built from [`Security::Tls`] files.
pub fn client_config(
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, LinkError> {
    let pem_err = |what: &'static str, path: &Path, reason: String| LinkError::Pem {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .map_err(|e| pem_err("CA file", ca, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err("CA file", ca, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err("CA file", ca, "it holds no PEM certificate".into()));
    }
    for c in certs {
        roots
            .add(c)
            .map_err(|e| pem_err("CA file", ca, e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| pem_err("TLS settings for", ca, e.to_string()))?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| pem_err("client certificate", cert, e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| pem_err("client certificate", cert, e.to_string()))?;
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| pem_err("client key", key, e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| pem_err("client certificate and key", cert, e.to_string()))?
        }
    };
    Ok(Arc::new(config))
}

/// The host part of `host:port` or `[v6]:port`.
pub fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

/// The relay address that means "this process's stdin and stdout" (the
/// agent runs under `ssh`, and the relay reads the other end of the pipe).
pub const STDIO_RELAY: &str = "stdio";

/// The agent's end of the stdin/stdout bridge, until a link takes it.
static STDIO: std::sync::Mutex<Option<UnixStream>> = std::sync::Mutex::new(None);
/// Set once stdin reached its end: the relay side is gone.
static STDIO_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Bridges stdin and stdout to a socket the sender uses like a network
/// connection (the same non-blocking, poll-driven code path). Call once,
/// before [`crate::run`] with the relay [`STDIO_RELAY`]. Nothing else in
/// the process may write to stdout afterwards.
pub fn start_stdio_bridge() -> io::Result<()> {
    let (ours, theirs) = UnixStream::pair()?;
    let mut to_stdout = theirs.try_clone()?;
    let mut from_stdin = theirs;
    std::thread::Builder::new()
        .name("strata-stdin".into())
        .spawn(move || {
            let _ = io::copy(&mut io::stdin().lock(), &mut from_stdin);
            STDIO_CLOSED.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = from_stdin.shutdown(std::net::Shutdown::Write);
        })?;
    std::thread::Builder::new()
        .name("strata-stdout".into())
        .spawn(move || {
            let mut out = io::stdout().lock();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match to_stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                            STDIO_CLOSED.store(true, std::sync::atomic::Ordering::SeqCst);
                            break;
                        }
                    }
                }
            }
        })?;
    *STDIO.lock().unwrap_or_else(|p| p.into_inner()) = Some(ours);
    Ok(())
}

/// Whether the stdio bridge's input ended (the relay side hung up).
pub fn stdio_closed() -> bool {
    STDIO_CLOSED.load(std::sync::atomic::Ordering::SeqCst)
}

/// The byte stream under a link: TCP, or the stdio bridge.
#[derive(Debug)]
enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tty(std::fs::File),
}

impl Read for &Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => (&*s).read(buf),
            Sock::Unix(s) => (&*s).read(buf),
            Sock::Tty(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => (&*s).write(buf),
            Sock::Unix(s) => (&*s).write(buf),
            Sock::Tty(s) => (&*s).write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sock {
    fn as_raw_fd(&self) -> i32 {
        match self {
            Sock::Tcp(s) => s.as_raw_fd(),
            Sock::Unix(s) => s.as_raw_fd(),
            Sock::Tty(s) => s.as_raw_fd(),
        }
    }
}

/// A connected relay.
pub struct Link {
    // TCP to a relay, the stdin/stdout pipe (`--stdio`), or, for a guest
    // without a network, a serial port joined to the relay by the hypervisor.
    sock: Sock,
    tls: Option<Box<ClientConnection>>,
    addr: String,
    plain: Vec<u8>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Waits until `fd` is readable or writable as asked, up to `timeout`.
/// Returns `(readable, writable)`.
pub(crate) fn poll_fd(
    fd: i32,
    read: bool,
    write: bool,
    timeout: Duration,
) -> io::Result<(bool, bool)> {
    let mut events = 0;
    if read {
        events |= libc::POLLIN;
    }
    if write {
        events |= libc::POLLOUT;
    }
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut p, 1, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok((false, false));
        }
        return Err(e);
    }
    let err = p.revents & (libc::POLLERR | libc::POLLHUP) != 0;
    Ok((
        p.revents & libc::POLLIN != 0 || err,
        p.revents & libc::POLLOUT != 0 || err,
    ))
}

impl Link {
    /// Connects to `addr` (`host:port`, or the path of a serial port), then runs the TLS handshake when
    /// `tls` is given, all within `timeout`.
    pub fn connect(
        addr: &str,
        tls: Option<(Arc<ClientConfig>, String)>,
        timeout: Duration,
    ) -> Result<Link, LinkError> {
        if addr == STDIO_RELAY {
            // The pipe is the channel (ssh secures it): one connection per
            // process, never TLS.
            let taken = STDIO.lock().unwrap_or_else(|p| p.into_inner()).take();
            let sock = taken.ok_or_else(|| LinkError::Connect {
                addr: addr.to_string(),
                source: io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the stdin/stdout link was used already or never set up",
                ),
            })?;
            sock.set_nonblocking(true)
                .map_err(|source| LinkError::Connect {
                    addr: addr.to_string(),
                    source,
                })?;
            return Ok(Link {
                sock: Sock::Unix(sock),
                tls: None,
                addr: addr.to_string(),
                plain: vec![0; 64 << 10],
            });
        }
        if addr.starts_with('/') {
            return Link::open_tty(addr, tls.is_some());
        }
        let addrs: Vec<_> = addr
            .to_socket_addrs()
            .map_err(|source| LinkError::Resolve {
                addr: addr.to_string(),
                source,
            })?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        let mut sock = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let sock = sock.ok_or_else(|| LinkError::Connect {
            addr: addr.to_string(),
            source: last,
        })?;
        let _ = sock.set_nodelay(true);
        let tls = match tls {
            None => None,
            Some((config, name)) => Some(Box::new(handshake(&sock, addr, config, &name, timeout)?)),
        };
        sock.set_nonblocking(true)
            .map_err(|source| LinkError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        Ok(Link {
            sock: Sock::Tcp(sock),
            tls,
            addr: addr.to_string(),
            plain: vec![0; 64 << 10],
        })
    }

    /// Opens a serial port (e.g. a VM's `/dev/ttyS1` that QEMU joins to the
    /// relay's TCP port) as the connection: raw mode, so every byte of the
    /// wire protocol passes untouched, and non-blocking like a socket.
    fn open_tty(path: &str, tls: bool) -> Result<Link, LinkError> {
        let fail = |source: io::Error| LinkError::Connect {
            addr: path.to_string(),
            source,
        };
        if tls {
            return Err(fail(io::Error::new(
                io::ErrorKind::Unsupported,
                "TLS over a serial port is not supported: use --insecure (the port is a private VM-to-host link)",
            )));
        }
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(path)
            .map_err(fail)?;
        let fd = file.as_raw_fd();
        // SAFETY: termios is plain data, filled by tcgetattr on an open fd.
        let mut tio: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut tio) } == 0 {
            // SAFETY: valid termios for this fd.
            unsafe {
                libc::cfmakeraw(&mut tio);
                tio.c_cflag |= libc::CLOCAL | libc::CREAD;
                tio.c_cflag &= !libc::CRTSCTS;
                libc::cfsetspeed(&mut tio, libc::B4000000);
                if libc::tcsetattr(fd, libc::TCSANOW, &tio) != 0 {
                    return Err(fail(io::Error::last_os_error()));
                }
            }
        }
        Ok(Link {
            sock: Sock::Tty(file),
            tls: None,
            addr: path.to_string(),
            plain: vec![0; 64 << 10],
        })
    }

    /// The socket descriptor, for `poll`.
    pub fn fd(&self) -> i32 {
        self.sock.as_raw_fd()
    }

    /// Whether the connection uses TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Reads whatever has arrived, without waiting, into `dec`. Returns
    /// `Ok(false)` when the relay closed the connection.
    pub fn read_available(&mut self, dec: &mut FrameDecoder) -> io::Result<bool> {
        match self.tls.as_mut() {
            None => loop {
                let area = dec.spare(64 << 10);
                match (&self.sock).read(area) {
                    Ok(0) => {
                        dec.commit(0);
                        return Ok(false);
                    }
                    Ok(n) => dec.commit(n),
                    Err(e) if would_block(&e) => {
                        dec.commit(0);
                        return Ok(true);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => dec.commit(0),
                    Err(e) => {
                        dec.commit(0);
                        return Err(e);
                    }
                }
            },
            Some(tls) => {
                let mut open = true;
                loop {
                    match tls.read_tls(&mut &self.sock) {
                        Ok(0) => {
                            open = false;
                            break;
                        }
                        Ok(_) => {
                            tls.process_new_packets()
                                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                        }
                        Err(e) if would_block(&e) => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                loop {
                    match tls.reader().read(&mut self.plain) {
                        Ok(0) => return Ok(false),
                        Ok(n) => dec.feed(&self.plain[..n]),
                        Err(e) if would_block(&e) => return Ok(open),
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Sends all of `bytes` before `deadline`. While the socket is full it
    /// keeps reading what the relay sends into `dec`, so neither side can
    /// block the other.
    pub fn send(
        &mut self,
        bytes: &[u8],
        dec: &mut FrameDecoder,
        deadline: Instant,
    ) -> io::Result<()> {
        let mut off = 0;
        loop {
            // Move plaintext into TLS records, or bytes into the socket.
            let progressed = match self.tls.as_mut() {
                None => {
                    if off == bytes.len() {
                        return Ok(());
                    }
                    match (&self.sock).write(&bytes[off..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => {
                            off += n;
                            true
                        }
                        Err(e) if would_block(&e) => false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
                        Err(e) => return Err(e),
                    }
                }
                Some(tls) => {
                    let mut moved = false;
                    if off < bytes.len() {
                        let n = tls.writer().write(&bytes[off..])?;
                        off += n;
                        moved = n > 0;
                    }
                    while tls.wants_write() {
                        match tls.write_tls(&mut &self.sock) {
                            Ok(_) => moved = true,
                            Err(e) if would_block(&e) => break,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                    if off == bytes.len() && !tls.wants_write() {
                        return Ok(());
                    }
                    moved
                }
            };
            if progressed {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the relay took no data for too long",
                ));
            }
            let (readable, _) =
                poll_fd(self.fd(), true, true, left.min(Duration::from_millis(500)))?;
            if readable && !self.read_available(dec)? {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the relay closed the connection",
                ));
            }
        }
    }
}

fn handshake(
    sock: &TcpStream,
    addr: &str,
    config: Arc<ClientConfig>,
    name: &str,
    timeout: Duration,
) -> Result<ClientConnection, LinkError> {
    let tls_err = |reason: String, hint: &'static str| LinkError::Tls {
        addr: addr.to_string(),
        reason,
        hint,
    };
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| {
        tls_err(
            format!("`{name}` is not a valid server name ({e})"),
            "use --tls-name",
        )
    })?;
    let mut conn = ClientConnection::new(config, server_name)
        .map_err(|e| tls_err(e.to_string(), "check the TLS settings"))?;
    let _ = sock.set_read_timeout(Some(timeout));
    let _ = sock.set_write_timeout(Some(timeout));
    let mut s = sock;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut s) {
            let text = e.to_string();
            let hint = if text.contains("CaUsedAsEndEntity") {
                "the relay's certificate is marked as a CA (basicConstraints CA:TRUE); make a leaf certificate (openssl: -addext basicConstraints=critical,CA:FALSE) or sign one with that CA"
            } else if text.contains("certificate") || text.contains("Certificate") {
                "is --ca the certificate (or the CA) the relay presents, and does --tls-name match it?"
            } else if would_block(&e) {
                "the relay did not answer the TLS handshake in time: is it started with TLS (not --insecure)?"
            } else {
                "is the relay started with TLS, and does it accept this client certificate?"
            };
            return Err(tls_err(text, hint));
        }
    }
    let _ = sock.set_read_timeout(None);
    let _ = sock.set_write_timeout(None);
    Ok(conn)
}
