//! Runs the VM model over a set of traces: host traces (one model per
//! hostname) and guest traces, which are paired with their VM for the
//! fused view. A trace is a guest when its env has `vm_uuid` (the guest
//! agent writes it from DMI) or when the caller says so.

use std::path::PathBuf;

use strata_ctf::read::{ReadError, SkipStats, Trace, TraceSet};

use super::bind::VmBinder;
use super::hints::VmHint;
use super::model::VmModel;
use super::report::VmHostReport;

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

/// Reads every event of `set` once and returns the VM reports.
pub fn run(set: &TraceSet, opts: &VmOptions) -> Result<VmAnalysis, ReadError> {
    let binder = VmBinder::new(set);
    let mut hosts: Vec<HostModel> = Vec::new();
    let mut roles: Vec<Role> = Vec::new();
    for t in set.traces() {
        if let Some(keys) = guest_keys(t, opts) {
            roles.push(Role::Guest {
                keys,
                paired: None,
                tries: 0,
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
    let mut events = set.events();
    let mut last = None;
    while let Some(ev) = events.next() {
        let ev = ev?;
        let ts = ev.ts();
        let (vev, ctx) = binder.decode(&ev);
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
                label,
            } => {
                if paired.is_none() && matches!(vev, super::VmEvent::Switch { .. }) {
                    // Retry now and then: VMs are found as the host's
                    // events reveal them.
                    *tries += 1;
                    if *tries <= 64 || *tries % 1024 == 0 {
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
