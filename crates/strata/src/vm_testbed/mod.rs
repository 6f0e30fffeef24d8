//! The QEMU testbed: boots TCG guests that run a workload and a `strata
//! agent` streaming to a local relay, records the host to the same relay,
//! and syncs each guest's clock to the host's from its probes.
//! Everything it starts is stopped when it returns, fails or is interrupted.

mod bridge;
mod console;
mod image;
pub mod probe;
mod procs;
mod qemu;
mod snapshot;
mod syncprobe;

use crate::units::parse_duration;
use anyhow::{bail, Context};
use procs::ChildGuard;
use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_analysis::vm::hints::{VcpuHint, VmHint};

/// What the guests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// A busy loop: one CPU hog per guest.
    Cpu,
    /// A tight loop of small read/write syscalls.
    Syscall,
    /// Sleep 5 ms, wake, repeat.
    Sleep,
    /// Nothing: an idle guest.
    Idle,
}

/// Arguments of `strata vm testbed`.
#[derive(clap::Args, Debug)]
pub struct TestbedArgs {
    /// Number of guests.
    #[arg(long, default_value = "2")]
    guests: u32,
    /// Pin every vCPU thread to these host CPUs (e.g. `0` or `0,1`), to
    /// create contention on purpose. Default: unpinned.
    #[arg(long, value_delimiter = ',', value_name = "CPUS")]
    pin: Vec<u32>,
    /// What the guests run.
    #[arg(long, value_enum, default_value = "cpu")]
    workload: Workload,
    /// How long the workload runs in each guest.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Output directory: the relay's data (OUTPUT/testbed/<host>/kernel/),
    /// guest consoles, testbed.json and sync.json.
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// Guest memory in MiB.
    #[arg(long, default_value = "256")]
    memory: u32,
    /// Events the host agent records.
    #[arg(long, default_value = "sched,syscalls,kvm")]
    host_events: String,
    /// Do not record the host.
    #[arg(long)]
    no_host: bool,
    /// Do not run sync probes in the guests.
    #[arg(long)]
    no_probes: bool,
    /// Where the guest image is cached.
    #[arg(long, default_value = "/var/cache/strata-testbed")]
    cache: PathBuf,
    /// Run the host's and the guests' agents as flight recorders
    /// (`--mode flight`): each keeps a ring for snapshots and streams what
    /// it records as a light live feed (the stored traces stay the same).
    #[arg(long)]
    flight: bool,
    /// With --flight: once every guest's workload has run this long (and
    /// the relay synced every guest's clock live, or 5 s more passed), take
    /// one snapshot of the host and every guest through the relay (as
    /// `strata ctl snapshot`), stored under OUTPUT/snapshots/<id>/.
    #[arg(long, value_parser = parse_duration, requires = "flight")]
    snapshot_after: Option<Duration>,
    /// How much history the snapshot holds.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    snapshot_before: Duration,
    /// The strata binary to put in the guests (default: this one).
    #[arg(long, hide = true)]
    guest_strata: Option<PathBuf>,
}

/// How long `--snapshot-after` waits, past its delay, for every guest's
/// live clock sync.
const SNAPSHOT_SYNC_WAIT: Duration = Duration::from_secs(5);

/// The session name the relay files everything under.
pub const SESSION: &str = "testbed";

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(
    addr: SocketAddr,
    child: &mut ChildGuard,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if child.exited() {
            bail!("the relay exited at start (see its messages above)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the relay does not listen on {addr} after {timeout:?}")
}

fn random_uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("5747a7a0-0000-4000-8000-{:012x}", std::process::id()))
}

/// What the run leaves in `OUTPUT/testbed.json`.
#[derive(Debug, serde::Serialize)]
struct Manifest {
    session: String,
    host_trace: Option<PathBuf>,
    pinned_to: Vec<u32>,
    workload: String,
    duration_s: f64,
    guests: Vec<GuestRecord>,
    /// With --snapshot-after: the relay's answer to the snapshot request
    /// (`id`, and per host its `path` and the instant `at_ns` in its own
    /// trace time), or the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<serde_json::Value>,
}

#[derive(Debug, serde::Serialize)]
struct GuestRecord {
    name: String,
    uuid: String,
    qemu_pid: u32,
    vcpus: Vec<qemu::VcpuThread>,
    trace: PathBuf,
    console: PathBuf,
    debugcon_fd: Option<i64>,
    /// When the workload ran, on the host's clock (ns since the epoch).
    workload: console::WorkloadTimes,
    sync: Option<syncprobe::SyncReport>,
    /// The relay's live sync of this guest (its VM API's `guest.sync`),
    /// as last seen during the run.
    live_sync: Option<serde_json::Value>,
    /// The relay's probe matchers of this guest (its VM API's
    /// `guest.sync_sources`), as last seen: why a live sync is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    live_sync_sources: Option<serde_json::Value>,
}

impl GuestRecord {
    /// The VM as `strata vm report` takes it from a hints file.
    fn hint(&self) -> VmHint {
        VmHint {
            name: Some(self.name.clone()),
            uuid: Some(self.uuid.clone()),
            qemu_pid: i32::try_from(self.qemu_pid).ok(),
            vcpus: self
                .vcpus
                .iter()
                .filter_map(|v| {
                    Some(VcpuHint {
                        id: v.index,
                        tid: i32::try_from(v.tid).ok()?,
                    })
                })
                .collect(),
        }
    }
}

/// Runs the testbed.
pub fn run(args: TestbedArgs) -> anyhow::Result<ExitCode> {
    if args.guests == 0 || args.guests > 64 {
        bail!("--guests must be 1 to 64");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot handle signals")?;
    }
    let me = std::env::current_exe().context("cannot find the strata binary")?;
    let guest_bin = args.guest_strata.clone().unwrap_or_else(|| me.clone());
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let out = std::fs::canonicalize(&args.output)?;

    eprintln!(
        "testbed: building the guest image (cached in {})",
        args.cache.display()
    );
    let image = image::build(&guest_bin, &args.cache)?;

    // The relay, as a child: its own process, stopped like any other.
    let token = format!("{:016x}", rand_u64());
    let token_file = out.join("tokens");
    std::fs::write(&token_file, format!("* {token}\n"))?;
    let agent_token = out.join("agent.token");
    std::fs::write(&agent_token, &token)?;
    let api_token = format!("{:016x}", rand_u64());
    let api_token_file = out.join("api.token");
    std::fs::write(&api_token_file, &api_token)?;
    let relay_addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let http_addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let mut relay = ChildGuard::spawn(
        "relay",
        Command::new(&me)
            .arg("relay")
            .arg("--listen")
            .arg(relay_addr.to_string())
            .arg("--http")
            .arg(http_addr.to_string())
            .arg("--data")
            .arg(&out)
            .arg("--token-file")
            .arg(&token_file)
            .arg("--api-token-file")
            .arg(&api_token_file)
            .args(["--insecure", "--no-live"])
            .stdout(Stdio::null()),
    )?;
    wait_listening(relay_addr, &mut relay, Duration::from_secs(10))?;

    let host_agent = if args.no_host {
        None
    } else {
        let mut c = Command::new(&me);
        c.arg("agent")
            .arg("--relay")
            .arg(relay_addr.to_string())
            .arg("--insecure")
            .arg("--token-file")
            .arg(&agent_token)
            .args([
                "--session",
                SESSION,
                "--host-id",
                "host",
                "--clock",
                "x86-tsc",
                "--quiet",
            ])
            .arg("--events")
            .arg(&args.host_events);
        if args.flight {
            c.args(["--mode", "flight", "--keep", "30s", "--live-events"])
                .arg(&args.host_events);
        }
        Some(ChildGuard::spawn("host agent", &mut c)?)
    };
    // Let the host agent set up its instance before the guests start.
    std::thread::sleep(Duration::from_secs(1));

    let secs = args.duration.as_secs().max(1);
    let mut guests = Vec::new();
    let mut bridges = Vec::new();
    let mut snapshot_bridges = Vec::new();
    for i in 0..args.guests {
        let name = format!("strata-g{i}");
        let serial_port = free_port()?;
        let snapshot_port = if args.flight {
            Some(free_port()?)
        } else {
            None
        };
        let spec = qemu::GuestSpec {
            name: name.clone(),
            uuid: random_uuid(),
            kernel: image.kernel.clone(),
            initrd: image.initrd.clone(),
            memory_mb: args.memory,
            workload: format!("{:?}", args.workload).to_lowercase(),
            secs,
            session: SESSION.into(),
            serial_port,
            console_log: out.join(format!("{name}.console.log")),
            debugcon_file: debugcon_path(&out, &name),
            probes: !args.no_probes,
            token: token.clone(),
            snapshot_port,
        };
        let guest = spec.start()?;
        bridges.push(bridge::start(
            name.clone(),
            SocketAddr::from(([127, 0, 0, 1], serial_port)),
            relay_addr,
        ));
        if let Some(port) = snapshot_port {
            // Snapshots connect on their own: a bridge of their own, which
            // counts as no guest's stream.
            snapshot_bridges.push(bridge::start(
                format!("{name}-snapshots"),
                SocketAddr::from(([127, 0, 0, 1], port)),
                relay_addr,
            ));
        }
        guests.push(guest);
    }
    let mut records = Vec::new();
    for g in &guests {
        let vcpus = qemu::vcpu_threads(g.process.pid(), 1, Duration::from_secs(20))?;
        if !args.pin.is_empty() {
            for v in &vcpus {
                qemu::pin(v.tid, &args.pin)?;
            }
        }
        eprintln!(
            "testbed: {} (uuid {}) qemu pid {} vCPU threads {:?}{}",
            g.spec.name,
            g.spec.uuid,
            g.process.pid(),
            vcpus.iter().map(|v| v.tid).collect::<Vec<_>>(),
            if args.pin.is_empty() {
                String::new()
            } else {
                format!(" pinned to {:?}", args.pin)
            }
        );
        records.push(GuestRecord {
            name: g.spec.name.clone(),
            uuid: g.spec.uuid.clone(),
            qemu_pid: g.process.pid(),
            vcpus,
            trace: out.join(SESSION).join(&g.spec.name).join("kernel"),
            console: g.spec.console_log.clone(),
            debugcon_fd: qemu::fd_of(g.process.pid(), &g.spec.debugcon_file),
            workload: Default::default(),
            sync: None,
            live_sync: None,
            live_sync_sources: None,
        });
    }

    // Guests power off after the workload and their agents' final flush.
    let deadline = Instant::now() + args.duration + Duration::from_secs(60);
    let mut interrupted = false;
    let mut consoles: Vec<console::ConsoleWatch> = guests
        .iter()
        .map(|g| console::ConsoleWatch::new(g.spec.console_log.clone()))
        .collect();
    let api = ureq::Agent::from(
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .build(),
    );
    let mut polled = Instant::now();
    let mut snapshot_at: Option<Instant> = None;
    let mut snapshot: Option<snapshot::Pending> = None;
    while !guests.iter_mut().all(|g| g.process.exited()) {
        consoles.iter_mut().for_each(console::ConsoleWatch::poll);
        if let Some(after) = args.snapshot_after.filter(|_| snapshot.is_none()) {
            if snapshot_at.is_none() && consoles.iter().all(|c| c.times.begin_ns.is_some()) {
                snapshot_at = Some(Instant::now() + after);
            }
            // The guests' instants come through their live clock sync:
            // wait for it (a guest's stream over its serial port can lag),
            // a while at most.
            let synced =
                args.no_host || args.no_probes || records.iter().all(|r| r.live_sync.is_some());
            let due = snapshot_at.is_some_and(|t| {
                Instant::now() >= t && (synced || Instant::now() >= t + SNAPSHOT_SYNC_WAIT)
            });
            if due {
                if !synced {
                    eprintln!("testbed: a guest has no live clock sync yet; its snapshot instant is not converted");
                }
                eprintln!("testbed: taking a snapshot of every host");
                snapshot = Some(snapshot::request(
                    http_addr,
                    &api_token,
                    args.snapshot_before,
                ));
            }
        }
        if !args.no_host && polled.elapsed() >= Duration::from_secs(1) {
            polled = Instant::now();
            poll_live_sync(&api, http_addr, &mut records);
        }
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        if Instant::now() > deadline {
            eprintln!("testbed: guests still running past the deadline; stopping them");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for g in &mut guests {
        g.process.stop(libc::SIGTERM, Duration::from_secs(5));
    }
    for (r, c) in records.iter_mut().zip(consoles) {
        r.workload = c.times;
    }
    drop(guests);
    let snapshot = snapshot.map(|p| match p.finish() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("testbed: the snapshot failed: {e}");
            serde_json::json!({ "error": e })
        }
    });
    for (h, stats) in bridges {
        let _ = h.join();
        if stats.connections.load(Ordering::Relaxed) == 0 {
            eprintln!("testbed: a guest agent never sent anything (see the guest console logs)");
        }
    }
    for (h, _) in snapshot_bridges {
        let _ = h.join();
    }
    if let Some(mut a) = host_agent {
        a.stop(libc::SIGINT, Duration::from_secs(15));
    }
    relay.stop(libc::SIGINT, Duration::from_secs(15));
    if interrupted {
        eprintln!("testbed: interrupted; everything started was stopped");
        return Ok(ExitCode::from(130));
    }

    let host_trace = (!args.no_host).then(|| out.join(SESSION).join("host").join("kernel"));
    if let Some(ht) = host_trace.as_ref().filter(|_| !args.no_probes) {
        sync_guests(ht, &mut records);
    }
    let manifest = Manifest {
        session: SESSION.into(),
        host_trace,
        pinned_to: args.pin.clone(),
        workload: format!("{:?}", args.workload).to_lowercase(),
        duration_s: args.duration.as_secs_f64(),
        guests: records,
        snapshot,
    };
    let path = out.join("testbed.json");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest)?)?;
    // What `strata vm report OUTPUT` reads to name the VMs and find their vCPUs.
    let hints: Vec<VmHint> = manifest.guests.iter().map(GuestRecord::hint).collect();
    let hints_path = out.join(crate::vm::report::HINTS_FILE);
    std::fs::write(&hints_path, serde_json::to_string_pretty(&hints)?)
        .with_context(|| format!("cannot write {}", hints_path.display()))?;
    if let Some(s) = &manifest.snapshot {
        snapshot::add_hints(&out, s, &hints_path);
    }
    eprintln!(
        "testbed: done; traces under {}, summary in {}",
        out.join(SESSION).display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Keeps the relay's live sync of each guest (the host's VM API), when it
/// has one: the VMs leave the live view a while after their QEMU exits,
/// so the last one seen while they ran is kept.
fn poll_live_sync(api: &ureq::Agent, http: SocketAddr, records: &mut [GuestRecord]) {
    let url = format!("http://{http}/api/hosts/host/vms");
    let Ok(mut resp) = api.get(&url).call() else {
        return;
    };
    let Ok(body) = resp
        .body_mut()
        .with_config()
        .limit(16 << 20)
        .read_to_string()
    else {
        return;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
        return;
    };
    for vm in v["vms"].as_array().into_iter().flatten() {
        let Some(uuid) = vm["uuid"].as_str() else {
            continue;
        };
        let Some(r) = records
            .iter_mut()
            .find(|r| r.uuid.eq_ignore_ascii_case(uuid))
        else {
            continue;
        };
        let guest = &vm["guest"];
        if !guest["sync"].is_null() {
            r.live_sync = Some(guest["sync"].clone());
        }
        if !guest["sync_sources"].is_null() {
            r.live_sync_sources = Some(guest["sync_sources"].clone());
        }
    }
}

fn sync_guests(host_trace: &Path, records: &mut [GuestRecord]) {
    let freq = strata_ctf::read::TraceSet::open(host_trace, &Default::default())
        .ok()
        .and_then(|s| s.traces().first().and_then(|t| t.clock().map(|c| c.freq)));
    for r in records {
        let Some(fd) = r.debugcon_fd else { continue };
        let guest =
            syncprobe::parse_console(&std::fs::read_to_string(&r.console).unwrap_or_default());
        let tids: HashSet<u32> = r.vcpus.iter().map(|v| v.tid).collect();
        match syncprobe::host_writes(host_trace, &tids, fd) {
            Ok(host) => {
                r.sync = syncprobe::sync(&guest, &host, freq);
                match &r.sync {
                    Some(s) => eprintln!(
                        "testbed: {} clock sync: {} probes paired, offset {:.0} cycles, slope {:.9}, bound {:.0} cycles{}",
                        r.name,
                        s.paired,
                        s.offset_at_start,
                        s.slope,
                        s.bound,
                        s.bound_ns.map(|n| format!(" ({n:.2} µs)", n = n / 1000.0)).unwrap_or_default()
                    ),
                    None => eprintln!(
                        "testbed: {}: no clock sync ({} guest probes, {} host writes)",
                        r.name,
                        guest.len(),
                        host.len()
                    ),
                }
            }
            Err(e) => eprintln!(
                "testbed: {}: cannot read the host trace for sync: {e:#}",
                r.name
            ),
        }
    }
}

/// Where a guest's debugcon bytes go: on tmpfs when there is one, since
/// each probe's host write lies inside the probe's span and a write to a
/// disk file system costs microseconds more (measured: ext4 here).
fn debugcon_path(out: &Path, name: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join(format!(
            "strata-testbed-{}-{name}.debugcon",
            std::process::id()
        ))
    } else {
        out.join(format!("{name}.debugcon"))
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    u64::from_ne_bytes(b) ^ std::process::id() as u64
}
