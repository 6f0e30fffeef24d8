//! Joins a guest's serial port to the relay.
//!
//! QEMU listens on a local TCP port for the guest's second serial port. The
//! bridge connects to it and opens the relay connection only when the guest
//! agent's first bytes arrive: the relay drops connections that stay silent
//! past its handshake timeout, and a guest takes seconds to boot.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes moved by a bridge, for the run summary.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Guest to relay.
    pub up: AtomicU64,
    /// Relay to guest.
    pub down: AtomicU64,
    /// Relay connections opened.
    pub connections: AtomicU64,
}

/// Starts the bridge thread; it ends when QEMU closes the serial socket.
pub fn start(
    name: String,
    qemu: SocketAddr,
    relay: SocketAddr,
) -> (JoinHandle<()>, Arc<BridgeStats>) {
    let stats = Arc::new(BridgeStats::default());
    let st = stats.clone();
    let h = std::thread::Builder::new()
        .name(format!("bridge-{name}"))
        .spawn(move || {
            if let Err(e) = run(&qemu, &relay, st) {
                eprintln!("testbed: serial bridge of {name}: {e}");
            }
        })
        .expect("spawning a thread");
    (h, stats)
}

fn connect_qemu(qemu: &SocketAddr) -> std::io::Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match TcpStream::connect_timeout(qemu, Duration::from_secs(1)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn run(qemu: &SocketAddr, relay: &SocketAddr, stats: Arc<BridgeStats>) -> std::io::Result<()> {
    let mut guest = connect_qemu(qemu)?;
    let _ = guest.set_nodelay(true);
    let mut buf = vec![0u8; 64 << 10];
    let mut up: Option<(TcpStream, JoinHandle<()>)> = None;
    loop {
        let n = match guest.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if up.is_none() {
            let r = TcpStream::connect_timeout(relay, Duration::from_secs(5))?;
            let _ = r.set_nodelay(true);
            stats.connections.fetch_add(1, Ordering::Relaxed);
            let (mut from_relay, mut to_guest) = (r.try_clone()?, guest.try_clone()?);
            let st = stats.clone();
            let down = std::thread::spawn(move || {
                let mut b = vec![0u8; 16 << 10];
                while let Ok(n) = from_relay.read(&mut b) {
                    if n == 0 || to_guest.write_all(&b[..n]).is_err() {
                        break;
                    }
                    st.down.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
            up = Some((r, down));
        }
        let Some((r, _)) = up.as_mut() else { break };
        if r.write_all(&buf[..n]).is_err() {
            // The relay went away: the agent's next frames (it resends from
            // its last acknowledged one) open a new connection.
            if let Some((r, h)) = up.take() {
                let _ = r.shutdown(Shutdown::Both);
                let _ = h.join();
            }
            continue;
        }
        stats.up.fetch_add(n as u64, Ordering::Relaxed);
    }
    if let Some((r, h)) = up.take() {
        let _ = r.shutdown(Shutdown::Both);
        let _ = h.join();
    }
    Ok(())
}
