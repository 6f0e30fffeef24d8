//! Runs the VM model over a set of traces: host traces (one model per
//! hostname) and guest traces, which are paired with their VM for the
//! fused view. A trace is a guest when its env has `vm_uuid` (the guest
//! agent writes it from DMI) or when the caller says so.

use std::path::PathBuf;

use strata_ctf::read::{ClockMap, Event, FieldRef, ReadError, SkipStats, Trace, TraceSet};

use super::bind::VmBinder;
use super::hints::VmHint;
use super::model::VmModel;
use super::report::VmHostReport;
use super::sync::{parse_marker, GuestSync, GuestSyncReport, HostSource};

/// How to run the VM analysis.
#[derive(Debug, Clone, Default)]
pub struct VmOptions {
    /// What the hosts knew of their VMs (names, UUIDs, vCPU threads).
    pub hints: Vec<VmHint>,
    /// Traces that are guests whatever their env says (by directory, as
    /// the set lists them), each with the VM it belongs to, if given
    /// (name or UUID).
    pub guests: Vec<(PathBuf, Option<String>)>,
    /// Rows per table (0 = all).
    pub top: usize,
    /// Keep every vCPU interval (tests, short traces).
    pub record_intervals: bool,
}

/// The role of one trace of the set.
#[derive(Debug, Clone)]
enum Role {
    /// Events feed host model `i`.
    Host(usize),
    /// A guest trace: its pairing key, and once paired, (host, vm).
    Guest {
        keys: Vec<(String, &'static str)>,
        paired: Option<(usize, usize, &'static str)>,
        tries: u32,
        /// VMs the hosts had found at the last try.
        vms_seen: usize,
        label: String,
    },
}

/// A host's model, as the driver leaves it.
#[derive(Debug, Clone)]
pub struct HostModel {
    /// Host name.
    pub hostname: String,
    /// The model, flushed at the end of the period.
    pub model: VmModel,
}

/// The result of [`run`]: the reports, and the models (for their intervals).
#[derive(Debug, Clone)]
pub struct VmAnalysis {
    /// Per host.
    pub reports: Vec<VmHostReport>,
    /// Per host, in the same order.
    pub models: Vec<HostModel>,
    /// Guest traces that could not be paired with a VM.
    pub unpaired_guests: Vec<String>,
    /// What the reader skipped.
    pub skipped: SkipStats,
    /// Per trace of the set (by index), the clock sync found for a guest
    /// trace from its probes.
    pub syncs: Vec<Option<GuestSyncReport>>,
}

/// What the sync collector reads of an event class.
#[derive(Debug, Clone, Copy)]
enum SyncKind {
    /// `ftrace:print`: a `trace_marker` line (a guest probe).
    Marker(FieldRef),
    /// A write system call entry: its descriptor, and the thread context.
    Write(FieldRef, Option<FieldRef>),
    Other,
}

/// The write system calls QEMU's chardevs use, LTTng and tracefs names.
const WRITE_CALLS: &[&str] = &[
    "syscall_entry_write",
    "syscall_entry_writev",
    "syscall_entry_pwritev",
    "sys_enter_write",
    "sys_enter_writev",
    "sys_enter_pwritev",
];

/// Pass-1 state: the probes of every guest trace and the host events that
/// may carry them.
struct SyncCollector {
    kinds: Vec<SyncKind>,
    /// Per trace: its clock rate (Hz).
    freq: Vec<u64>,
    /// Per trace: guest sync state (guest traces only).
    guests: Vec<Option<GuestSync>>,
    /// Per trace and CPU: the host thread running, from `sched_switch`.
    current: Vec<Vec<i32>>,
}

/// The most CPUs tracked per trace for the running thread.
const MAX_CPUS: usize = 4096;

impl SyncCollector {
    fn new(set: &TraceSet, roles: &[Role]) -> SyncCollector {
        let mut kinds = vec![SyncKind::Other; set.class_count()];
        for c in set.event_classes() {
            let k = match c.name() {
                "print" => c.field("buf").map(SyncKind::Marker),
                n if WRITE_CALLS.contains(&n) => c
                    .field("fd")
                    .map(|f| SyncKind::Write(f, crate::bind::context_tid(c))),
                _ => None,
            };
            if let (Some(slot), Some(k)) = (kinds.get_mut(c.index()), k) {
                *slot = k;
            }
        }
        SyncCollector {
            kinds,
            freq: set
                .traces()
                .iter()
                .map(|t| t.clock().map_or(0, |c| c.freq))
                .collect(),
            guests: roles
                .iter()
                .map(|r| matches!(r, Role::Guest { .. }).then(GuestSync::new))
                .collect(),
            current: vec![Vec::new(); roles.len()],
        }
    }

    /// Feeds one event: guest markers to their guest, host writes and port
    /// writes by a vCPU thread to the guest paired with its VM.
    #[inline]
    fn event(
        &mut self,
        ev: &Event<'_>,
        vev: &super::VmEvent<'_>,
        ctx: Option<i32>,
        roles: &[Role],
        hosts: &[HostModel],
    ) {
        let ti = ev.trace();
        let kind = self
            .kinds
            .get(ev.class_index())
            .copied()
            .unwrap_or(SyncKind::Other);
        match roles.get(ti) {
            Some(Role::Guest { .. }) => {
                let SyncKind::Marker(f) = kind else { return };
                let freq = self.freq.get(ti).copied().unwrap_or(0);
                // The probe's readings are TSC values: only a cycle clock
                // (`x86-tsc`) is the same clock.
                if freq == 0 || freq == 1_000_000_000 {
                    return;
                }
                let Some((before, after)) = ev.str(f).and_then(parse_marker) else {
                    return;
                };
                if let Some(Some(g)) = self.guests.get_mut(ti) {
                    g.guest_marker(ev.ts(), ev.cycles(), freq, before, after);
                }
            }
            Some(Role::Host(hi)) => {
                let cpu = ev.cpu() as usize;
                if let super::VmEvent::Switch { next_tid, .. } = *vev {
                    if cpu < MAX_CPUS {
                        let cur = &mut self.current[ti];
                        if cur.len() <= cpu {
                            cur.resize(cpu + 1, -1);
                        }
                        cur[cpu] = next_tid;
                    }
                    return;
                }
                let (source, tid) = match (kind, vev) {
                    (SyncKind::Write(fd, tctx), _) => {
                        let Some(fd) = ev.i64(fd) else { return };
                        let tid = tctx
                            .and_then(|f| ev.i64(f))
                            .and_then(|t| i32::try_from(t).ok());
                        (HostSource::Fd(fd), tid)
                    }
                    (_, super::VmEvent::Pio { write: true, port }) => {
                        (HostSource::Port(*port), ctx)
                    }
                    _ => return,
                };
                let Some(tid) = tid.or_else(|| self.current[ti].get(cpu).copied()) else {
                    return;
                };
                let Some(vm) = hosts[*hi].model.vcpu_of_thread(tid).map(|v| v.vm) else {
                    return;
                };
                let guest = roles.iter().position(|r| {
                    matches!(r, Role::Guest { paired: Some((h, v, _)), .. } if *h == *hi && *v == vm)
                });
                let freq = self.freq.get(ti).copied().unwrap_or(0);
                if let Some(Some(g)) = guest.and_then(|gi| self.guests.get_mut(gi)) {
                    g.host_event(source, ev.ts(), ev.cycles(), freq);
                }
            }
            None => {}
        }
    }
}

/// Like [`run`], with the guests' clocks synced to their hosts' from the
/// probes in the traces (see [`super::sync`]): a first pass reads the
/// probes, then, if any guest synced, the set's reader maps each synced
/// guest trace's timestamps to its host's clock and a second pass runs the
/// model over events merged in synced time. The reports carry each
/// guest's sync. Guests without probes keep their own clock.
pub fn run_synced(set: &mut TraceSet, opts: &VmOptions) -> Result<VmAnalysis, ReadError> {
    for i in 0..set.traces().len() {
        set.set_clock_map(i, None);
    }
    let first = run_pass(set, opts, true, &[])?;
    if first.syncs.iter().all(Option::is_none) {
        return Ok(first);
    }
    for (i, s) in first.syncs.iter().enumerate() {
        let map = s.as_ref().map(|s| {
            let t = s.transform();
            ClockMap {
                anchor_ns: t.anchor_ns,
                offset_ns: t.offset_ns,
                drift_ppb: t.drift_ppb,
            }
        });
        set.set_clock_map(i, map);
    }
    run_pass(set, opts, false, &first.syncs)
}

fn env_str(t: &Trace, k: &str) -> Option<String> {
    t.env(k).and_then(|v| v.as_str()).map(str::to_string)
}

/// Whether trace `t` is a guest: the caller says so, or its env has `vm_uuid`.
fn guest_keys(t: &Trace, opts: &VmOptions) -> Option<Vec<(String, &'static str)>> {
    let forced = opts.guests.iter().find(|(p, _)| same_dir(p, t.path()));
    let uuid = env_str(t, "vm_uuid");
    if forced.is_none() && uuid.is_none() {
        return None;
    }
    let mut keys = Vec::new();
    if let Some((_, Some(name))) = forced {
        // The caller named the VM: nothing else decides.
        keys.push((name.clone(), "name"));
        return Some(keys);
    }
    if let Some(u) = uuid {
        keys.push((u, "uuid"));
    }
    if let Some(h) = t.hostname() {
        keys.push((h.to_string(), "hostname"));
    }
    Some(keys)
}

fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    a == b
        || match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
}

/// Reads every event of `set` once and returns the VM reports, guest
/// events in the reader's time (their own clock unless the set maps it).
pub fn run(set: &TraceSet, opts: &VmOptions) -> Result<VmAnalysis, ReadError> {
    run_pass(set, opts, false, &[])
}

/// One read of the set; `collect_sync` gathers the guests' probes, `known`
/// gives (per trace) syncs found before, for the reports.
fn run_pass(
    set: &TraceSet,
    opts: &VmOptions,
    collect_sync: bool,
    known: &[Option<GuestSyncReport>],
) -> Result<VmAnalysis, ReadError> {
    let binder = VmBinder::new(set);
    let mut hosts: Vec<HostModel> = Vec::new();
    let mut roles: Vec<Role> = Vec::new();
    for t in set.traces() {
        if let Some(keys) = guest_keys(t, opts) {
            roles.push(Role::Guest {
                keys,
                paired: None,
                tries: 0,
                vms_seen: 0,
                label: t.path().display().to_string(),
            });
            continue;
        }
        let name = t
            .hostname()
            .map(str::to_string)
            .unwrap_or_else(|| t.path().display().to_string());
        let i = match hosts.iter().position(|h| h.hostname == name) {
            Some(i) => i,
            None => {
                let mut model = VmModel::new();
                model.add_hints(opts.hints.iter().cloned());
                if opts.record_intervals {
                    model.record_intervals();
                }
                hosts.push(HostModel {
                    hostname: name,
                    model,
                });
                hosts.len() - 1
            }
        };
        if let Some(n) = t.streams().iter().filter_map(|s| s.cpu).max() {
            hosts[i].model.set_physical_cpus(n + 1);
        }
        roles.push(Role::Host(i));
    }
    let guest_count = roles
        .iter()
        .filter(|r| matches!(r, Role::Guest { .. }))
        .count();
    let mut collector = collect_sync.then(|| SyncCollector::new(set, &roles));
    let mut events = set.events();
    let mut last = None;
    while let Some(ev) = events.next() {
        let ev = ev?;
        let ts = ev.ts();
        let (vev, ctx) = binder.decode(&ev);
        if let Some(c) = collector.as_mut() {
            c.event(&ev, &vev, ctx, &roles, &hosts);
        }
        let Some(role) = roles.get_mut(ev.trace()) else {
            continue;
        };
        match role {
            Role::Host(i) => {
                last = Some(ts);
                hosts[*i].model.handle(ts, ev.cpu(), ctx, &vev);
            }
            Role::Guest {
                keys,
                paired,
                tries,
                vms_seen,
                label,
            } => {
                if paired.is_none() && matches!(vev, super::VmEvent::Switch { .. }) {
                    // Retry now and then, and whenever a host found another
                    // VM: VMs are found as the host's events reveal them,
                    // which a guest trace read ahead of its host's (a
                    // snapshot, a guest clock behind) can outlast.
                    *tries += 1;
                    let vms: usize = hosts.iter().map(|h| h.model.vms().len()).sum();
                    if *tries <= 64 || *tries % 1024 == 0 || vms != *vms_seen {
                        *vms_seen = vms;
                        *paired = pair(&mut hosts, keys, label, guest_count);
                    }
                }
                if let Some((h, vm, _)) = *paired {
                    hosts[h].model.handle_guest(vm, ts, ev.cpu(), &vev);
                }
            }
        }
    }
    let skipped = events.skipped();
    let end = last.unwrap_or(0);
    if let Some(c) = &mut collector {
        c.guests.iter_mut().flatten().for_each(GuestSync::finish);
    }
    let syncs: Vec<Option<GuestSyncReport>> = match &collector {
        Some(c) => c
            .guests
            .iter()
            .map(|g| g.as_ref().and_then(GuestSync::report))
            .collect(),
        None if known.is_empty() => vec![None; set.traces().len()],
        None => known.to_vec(),
    };
    // Each paired guest's sync, for its report: found now, or given.
    for (ti, r) in roles.iter().enumerate() {
        if let Role::Guest {
            paired: Some((h, vm, _)),
            ..
        } = r
        {
            let s = syncs
                .get(ti)
                .cloned()
                .flatten()
                .or_else(|| known.get(ti).cloned().flatten());
            let sources = match (&s, &collector) {
                (None, Some(c)) => c
                    .guests
                    .get(ti)
                    .and_then(Option::as_ref)
                    .map(GuestSync::sources)
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            if let Some(g) = hosts[*h].model.guest_mut(*vm) {
                g.sync = s;
                g.sync_sources = sources;
            }
        }
    }
    let mut reports = Vec::new();
    let mut unpaired = Vec::new();
    for (hi, h) in hosts.iter_mut().enumerate() {
        h.model.flush(end);
        let pairs: Vec<(usize, String)> = roles
            .iter()
            .filter_map(|r| match r {
                Role::Guest {
                    paired: Some((ph, vm, how)),
                    ..
                } if *ph == hi => Some((*vm, how.to_string())),
                _ => None,
            })
            .collect();
        reports.push(h.model.report(&h.hostname, end, &pairs, opts.top));
    }
    for r in &roles {
        if let Role::Guest {
            paired: None,
            label,
            ..
        } = r
        {
            unpaired.push(label.clone());
        }
    }
    Ok(VmAnalysis {
        reports,
        models: hosts,
        unpaired_guests: unpaired,
        skipped,
        syncs,
    })
}

/// Finds the VM of a guest trace: by its keys (name or UUID), else the only
/// VM of the only host when there is one guest trace.
fn pair(
    hosts: &mut [HostModel],
    keys: &[(String, &'static str)],
    label: &str,
    guest_count: usize,
) -> Option<(usize, usize, &'static str)> {
    for (key, how) in keys {
        for (hi, h) in hosts.iter_mut().enumerate() {
            if let Some(vm) = h.model.find_vm(key) {
                if h.model.vms()[vm].guest_attached() {
                    continue;
                }
                h.model.attach_guest(vm, label);
                return Some((hi, vm, how));
            }
        }
    }
    let named = keys.iter().any(|k| k.1 == "name");
    if !named && hosts.len() == 1 && guest_count == 1 && hosts[0].model.vms().len() == 1 {
        hosts[0].model.attach_guest(0, label);
        return Some((0, 0, "only-vm"));
    }
    None
}
