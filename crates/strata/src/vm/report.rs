//! `strata vm report HOST_TRACE [GUEST_TRACE...]` and `strata vm hints`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde::Serialize;
use strata_analysis::vm::driver::{self, VmOptions};
use strata_analysis::vm::hints::{read_hints, VmHint};
use strata_analysis::vm::report::{PreemptedBy, Times, VmHostReport};
use strata_ctf::read::{OpenOptions, TraceSet};

use crate::analyze::table::{duration, Align, Table};

/// The JSON schema name of `strata vm report --json`.
pub const JSON_SCHEMA: &str = "strata-vm-report/1";

/// The hints file `strata vm report` loads from beside its traces.
pub const HINTS_FILE: &str = "vm-hints.json";

/// Arguments of `strata vm report`.
#[derive(clap::Args)]
#[command(
    after_help = "The first TRACE is the host's (a trace directory, or a directory of \
traces such as a testbed run: traces whose env has vm_uuid are guests). Further TRACEs are \
guests, paired with their VM by the env's vm_uuid, their hostname = VM name, or, with one VM \
and one guest, with that VM. VM names and UUIDs come from a vm-hints.json (see `strata vm \
hints`) beside the first TRACE (or in it, when it is a directory of traces), or --hints.\n\nExample: strata vm report host-trace \
guest-trace --guest web1=guest2-trace --json"
)]
pub struct ReportArgs {
    /// The host trace (or a directory of traces), then guest traces.
    #[arg(value_name = "TRACE", required = true)]
    traces: Vec<PathBuf>,

    /// A guest trace for the VM with this name or UUID (repeatable).
    #[arg(long, value_name = "VM=TRACE")]
    guest: Vec<String>,

    /// VM hints (JSON, as `strata vm hints` prints).
    #[arg(long, value_name = "FILE")]
    hints: Option<PathBuf>,

    /// Print one JSON document (schema strata-vm-report/1) instead of tables.
    #[arg(long)]
    json: bool,

    /// Rows per table; 0 shows every row.
    #[arg(long, default_value_t = 10, value_name = "N")]
    top: usize,

    /// Skip damaged packets instead of stopping at the first one.
    #[arg(long)]
    skip_corrupt: bool,
}

/// Arguments of `strata vm hints`.
#[derive(clap::Args)]
pub struct HintsArgs {
    /// Where /proc is.
    #[arg(long, default_value = "/proc", value_name = "DIR")]
    proc_root: PathBuf,
    /// Where debugfs's kvm directory is.
    #[arg(long, default_value = "/sys/kernel/debug/kvm", value_name = "DIR")]
    kvm_debugfs: PathBuf,
}

/// `strata vm hints`.
pub fn hints(args: HintsArgs) -> anyhow::Result<ExitCode> {
    let h = read_hints(&args.proc_root, &args.kvm_debugfs);
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &h).context("cannot write the hints")?;
    let _ = writeln!(out);
    Ok(ExitCode::SUCCESS)
}

/// A directory of symlinks gathering several traces into one set; removed
/// on drop.
struct Gathered {
    dir: PathBuf,
}

impl Drop for Gathered {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn gather(paths: &[PathBuf]) -> anyhow::Result<Gathered> {
    let dir = std::env::temp_dir().join(format!(
        "strata-vm-report-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the work directory {}", dir.display()))?;
    let g = Gathered { dir };
    for (i, p) in paths.iter().enumerate() {
        let abs = p
            .canonicalize()
            .with_context(|| format!("cannot open trace {}", p.display()))?;
        std::os::unix::fs::symlink(&abs, g.dir.join(format!("{i:04}")))
            .with_context(|| format!("cannot link {} into {}", abs.display(), g.dir.display()))?;
    }
    Ok(g)
}

/// The hints in `--hints`, else in a `vm-hints.json` in or beside `trace`.
fn load_hints(explicit: Option<&Path>, trace: &Path) -> anyhow::Result<Vec<VmHint>> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => {
            // Not inside a trace directory: every file there is read as
            // a stream.
            let mut v = Vec::new();
            if !trace.join("metadata").is_file() {
                v.push(trace.join(HINTS_FILE));
            }
            if let Some(parent) = trace.parent() {
                v.push(parent.join(HINTS_FILE));
            }
            v
        }
    };
    for c in candidates {
        if !c.is_file() {
            if explicit.is_some() {
                bail!("hints file {} does not exist", c.display());
            }
            continue;
        }
        let meta = std::fs::metadata(&c).with_context(|| format!("cannot read {}", c.display()))?;
        if meta.len() > 64 << 20 {
            bail!(
                "hints file {} is over 64 MiB: not a hints file?",
                c.display()
            );
        }
        let text = std::fs::read(&c).with_context(|| format!("cannot read {}", c.display()))?;
        let h: Vec<VmHint> = serde_json::from_slice(&text).with_context(|| {
            format!(
                "{} is not a hints list (a JSON array as `strata vm hints` prints)",
                c.display()
            )
        })?;
        return Ok(h);
    }
    Ok(Vec::new())
}

#[derive(Serialize)]
struct JsonDoc<'a> {
    schema: &'static str,
    traces: Vec<String>,
    hosts: &'a [VmHostReport],
    unpaired_guests: &'a [String],
}

/// `strata vm report`.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let mut paths = args.traces.clone();
    let mut guests: Vec<(PathBuf, Option<String>)> =
        paths.iter().skip(1).map(|p| (p.clone(), None)).collect();
    for g in &args.guest {
        let Some((vm, trace)) = g.split_once('=') else {
            bail!("--guest {g}: expected VM=TRACE (a VM name or UUID, then a guest trace)");
        };
        paths.push(PathBuf::from(trace));
        guests.push((PathBuf::from(trace), Some(vm.to_string())));
    }
    let hints = load_hints(args.hints.as_deref(), &args.traces[0])?;
    let opts = OpenOptions {
        skip_corrupt: args.skip_corrupt,
    };
    let gathered = if paths.len() > 1 {
        Some(gather(&paths)?)
    } else {
        None
    };
    let root = gathered
        .as_ref()
        .map_or(paths[0].as_path(), |g| g.dir.as_path());
    let mut set = TraceSet::open(root, &opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    let vm_opts = VmOptions {
        hints,
        guests,
        top: args.top,
        record_intervals: false,
    };
    let result = driver::run_synced(&mut set, &vm_opts).map_err(|e| {
        anyhow::anyhow!("{e}\n(the trace is damaged there; --skip-corrupt skips such packets)")
    })?;
    drop(set);
    drop(gathered);
    for g in &result.unpaired_guests {
        eprintln!(
            "strata: warning: guest trace {g} matches no VM (give --guest VM=TRACE, or a \
             vm-hints.json with the VM's uuid)"
        );
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = JsonDoc {
            schema: JSON_SCHEMA,
            traces: args
                .traces
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            hosts: &result.reports,
            unpaired_guests: &result.unpaired_guests,
        };
        serde_json::to_writer_pretty(&mut out, &doc).context("cannot write the JSON report")?;
        let _ = writeln!(out);
        return Ok(ExitCode::SUCCESS);
    }
    let mut s = String::new();
    for h in &result.reports {
        s.push_str(&render_host(h));
    }
    if result.reports.is_empty() {
        s.push_str("No host trace found.\n");
    }
    let _ = out.write_all(s.as_bytes());
    Ok(ExitCode::SUCCESS)
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "?".into(), |v| format!("{v:.1}"))
}

fn times_cells(t: &Times) -> Vec<String> {
    vec![
        pct(Some(t.pct.running)),
        pct(t.pct.vmm),
        pct(Some(t.pct.preempted)),
        pct(Some(t.pct.idle)),
        pct(Some(t.pct.unknown)),
        duration(t.demand_ns),
        duration(t.granted_ns),
        pct(t.steal_pct),
    ]
}

fn who(p: &PreemptedBy) -> String {
    match p.kind {
        "vcpu" => format!(
            "VM {} vCPU {}",
            p.vm.as_deref().unwrap_or("?"),
            p.vcpu.unwrap_or(0)
        ),
        "thread" => format!("{} ({})", p.comm, p.tid.unwrap_or(0)),
        "idle" => "idle CPU (wakeup latency)".into(),
        _ => "unknown".into(),
    }
}

/// The text report of one host.
fn render_host(h: &VmHostReport) -> String {
    let mut s = format!(
        "Host {}: {} VM(s) over {}\n",
        h.hostname,
        h.vms.len(),
        duration(h.duration_ns)
    );
    let o = &h.overcommit;
    s.push_str(&format!(
        "Overcommit (runnable vCPUs > {} host CPUs): {} interval(s), {} in total, at most {} runnable\n\n",
        o.physical_cpus,
        o.intervals,
        duration(o.total_ns),
        o.max_runnable
    ));
    if h.vms.is_empty() {
        s.push_str("No VM found: no vCPU thread (named `CPU n/KVM` or `CPU n/TCG`, or running KVM events).\n");
        return s;
    }
    let cols = [
        ("VM / vCPU", Align::Left),
        ("accel", Align::Left),
        ("tid", Align::Right),
        ("running %", Align::Right),
        ("VMM %", Align::Right),
        ("preempted %", Align::Right),
        ("idle %", Align::Right),
        ("unknown %", Align::Right),
        ("demand", Align::Right),
        ("granted", Align::Right),
        ("steal %", Align::Right),
    ];
    let mut t = Table::new(&cols);
    for vm in &h.vms {
        let accel = format!("{:?}", vm.accel).to_lowercase();
        let mut row = vec![
            vm.name.clone(),
            accel,
            vm.pid.map_or("-".into(), |p| p.to_string()),
        ];
        row.extend(times_cells(&vm.times));
        t.row(row);
        for v in &vm.vcpus {
            let mut row = vec![format!("  vCPU {}", v.id), String::new(), v.tid.to_string()];
            row.extend(times_cells(&v.times));
            t.row(row);
        }
    }
    s.push_str("vCPU time (% of the period; VMM ? = not observable, e.g. under TCG)\n");
    s.push_str(&t.render());
    for vm in &h.vms {
        s.push_str(&format!("\nVM {}", vm.name));
        if let Some(u) = &vm.uuid {
            s.push_str(&format!(" (uuid {u})"));
        }
        s.push('\n');
        if !vm.preempted_by.is_empty() {
            let mut t = Table::new(&[
                ("preempted by", Align::Left),
                ("time", Align::Right),
                ("%", Align::Right),
            ]);
            for p in &vm.preempted_by {
                t.row(vec![who(p), duration(p.ns), format!("{:.1}", p.pct)]);
            }
            s.push_str(&t.render());
        }
        for (title, rows) in [
            ("exit reason", &vm.exits),
            ("userspace exit", &vm.userspace_exits),
        ] {
            if rows.is_empty() {
                continue;
            }
            let mut t = Table::new(&[
                (title, Align::Left),
                ("count", Align::Right),
                ("avg exit->entry", Align::Right),
                ("max", Align::Right),
            ]);
            for r in rows {
                t.row(vec![
                    r.reason.clone(),
                    r.count.to_string(),
                    r.latency.avg_ns.map_or("-".into(), |v| duration(v as i64)),
                    r.latency.max_ns.map_or("-".into(), duration),
                ]);
            }
            s.push_str(&t.render());
        }
        if let Some(p) = &vm.vmm_latency {
            s.push_str(&format!(
                "  exit->entry latency: p50 {}  p99 {}  p99.9 {}\n",
                duration(p.p50_ns as i64),
                duration(p.p99_ns as i64),
                duration(p.p999_ns as i64)
            ));
        }
        if vm.pio.count > 0 {
            let ports: Vec<String> = vm
                .pio
                .ports
                .iter()
                .map(|(p, n)| format!("0x{p:x}: {n}"))
                .collect();
            s.push_str(&format!(
                "  port I/O exits (kvm_pio): {} ({})\n",
                vm.pio.count,
                ports.join(", ")
            ));
        }
        if let Some(g) = &vm.guest {
            s.push_str(&format!(
                "  guest trace {} (paired by {}), fused view:\n",
                g.trace, g.paired_by
            ));
            s.push_str(&sync_line(g.sync.as_ref()));
            let mut t = Table::new(&[
                ("guest thread", Align::Left),
                ("tid", Align::Right),
                ("on vCPU", Align::Right),
                ("really running", Align::Right),
                ("VMM", Align::Right),
                ("preempted", Align::Right),
                ("real %", Align::Right),
            ]);
            for th in &g.threads {
                t.row(vec![
                    th.comm.clone(),
                    th.tid.to_string(),
                    duration(th.guest_running_ns),
                    duration(th.really_running_ns),
                    th.vmm_ns.map_or("?".into(), duration),
                    duration(th.preempted_ns),
                    pct(th.really_running_pct),
                ]);
            }
            s.push_str(&t.render());
        }
    }
    s.push('\n');
    s
}

/// The guest's clock sync, one line: what ordered its events among the
/// host's.
fn sync_line(sync: Option<&strata_analysis::vm::sync::GuestSyncReport>) -> String {
    let Some(x) = sync else {
        return "  clock sync: none (no probes paired; guest events in their own clock)\n".into();
    };
    let tsc = x
        .tsc_offset_cycles
        .map(|c| format!(", guest TSC = host TSC {c:+.0} cycles"))
        .unwrap_or_default();
    format!(
        "  clock sync ({}): {} of {} probes paired ({}), offset {:+} ns, slope {:.9} ({:+.3} ppm), \
         bound ±{:.0} ns{tsc}; convex hull alone: slope {:.9}, bound ±{:.0} ns\n",
        x.method,
        x.paired,
        x.guest_probes,
        x.source,
        x.offset_ns,
        x.slope,
        x.drift_ppm,
        x.bound_ns,
        x.hull.slope,
        x.hull.bound_ns
    )
}
