//! The VM report: per VM and vCPU, where the time went (running, in the
//! hypervisor, preempted, idle, unknown), demand against granted CPU, exit
//! reasons, who preempted whom, overcommit, and the fused guest view.

use serde::Serialize;

use crate::event::Tid;
use crate::stats::{Percentiles, StatsSummary};

use super::model::{Accel, Overcommit, Preempter, Vcpu, VcpuState, Vm, VmModel, STATES};

/// Where a vCPU's (or a VM's, or a guest thread's) time went, ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Times {
    /// Running guest code. Under TCG (no `kvm_entry` seen) this is all its
    /// time on a host CPU, guest and emulator alike.
    pub running_ns: i64,
    /// In the hypervisor (kernel and VMM process); `None` when it cannot
    /// be observed (TCG).
    pub vmm_ns: Option<i64>,
    /// Of `vmm_ns`, in the VMM process after `kvm_userspace_exit`.
    pub vmm_user_ns: Option<i64>,
    /// Runnable but not running: waiting for a host CPU.
    pub preempted_ns: i64,
    /// Blocked (halted guest, sleeping thread).
    pub idle_ns: i64,
    /// Not known (before the first event that tells, or on a CPU before
    /// the first `kvm_entry` of a KVM vCPU).
    pub unknown_ns: i64,
    /// Wanted a CPU: running + hypervisor + preempted.
    pub demand_ns: i64,
    /// Got a CPU: running + hypervisor.
    pub granted_ns: i64,
    /// `preempted / demand`, %.
    pub steal_pct: Option<f64>,
    /// The percentages of `running`, `vmm`, `preempted`, `idle`, `unknown`
    /// against the period (times the vCPU count for a VM).
    pub pct: Pcts,
}

/// Percentages of [`Times`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Pcts {
    /// Running.
    pub running: f64,
    /// Hypervisor (`None` when not observable).
    pub vmm: Option<f64>,
    /// Preempted.
    pub preempted: f64,
    /// Idle.
    pub idle: f64,
    /// Unknown.
    pub unknown: f64,
}

impl Times {
    /// The times of raw per-state sums, for a vCPU whose hypervisor time is
    /// visible or not, over `span` ns.
    pub fn from_states(acc: &[i64; STATES], vmm_visible: bool, span: i64) -> Times {
        let s = |x: VcpuState| acc[x as usize];
        let oncpu = s(VcpuState::OnCpu);
        let (running, vmm, user, unknown) = if vmm_visible {
            let user = s(VcpuState::VmmUser);
            (
                s(VcpuState::Running),
                Some(s(VcpuState::Vmm) + user),
                Some(user),
                s(VcpuState::Unknown) + oncpu,
            )
        } else {
            (
                s(VcpuState::Running) + oncpu,
                None,
                None,
                s(VcpuState::Unknown),
            )
        };
        let preempted = s(VcpuState::Preempted);
        let granted = running + vmm.unwrap_or(0);
        let demand = granted + preempted;
        let pct = |x: i64| {
            if span > 0 {
                100.0 * x as f64 / span as f64
            } else {
                0.0
            }
        };
        Times {
            running_ns: running,
            vmm_ns: vmm,
            vmm_user_ns: user,
            preempted_ns: preempted,
            idle_ns: s(VcpuState::Idle),
            unknown_ns: unknown,
            demand_ns: demand,
            granted_ns: granted,
            steal_pct: (demand > 0).then(|| 100.0 * preempted as f64 / demand as f64),
            pct: Pcts {
                running: pct(running),
                vmm: vmm.map(pct),
                preempted: pct(preempted),
                idle: pct(s(VcpuState::Idle)),
                unknown: pct(unknown),
            },
        }
    }
}

/// Who preempted a vCPU, and for how long.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreemptedBy {
    /// `vcpu`, `thread`, `idle` or `unknown`.
    pub kind: &'static str,
    /// For a vCPU: its VM's name.
    pub vm: Option<String>,
    /// For a vCPU: its index.
    pub vcpu: Option<u32>,
    /// For a host thread (or a vCPU): its tid.
    pub tid: Option<Tid>,
    /// Its name.
    pub comm: String,
    /// Time the preempted vCPU(s) waited while it ran, ns.
    pub ns: i64,
    /// Of the preempted time, %.
    pub pct: f64,
}

/// One vCPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VcpuReport {
    /// Index inside its VM.
    pub id: u32,
    /// Host thread.
    pub tid: Tid,
    /// Thread name.
    pub comm: String,
    /// Where its time went.
    pub times: Times,
    /// Who ran while it waited, longest first.
    pub preempted_by: Vec<PreemptedBy>,
}

/// One exit reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExitRow {
    /// Its name (VMX table, or `user:` + `KVM_EXIT_*` name).
    pub reason: String,
    /// Exits.
    pub count: u64,
    /// Exit to next entry, for in-kernel exits whose entry was seen.
    pub latency: StatsSummary,
}

/// Port I/O exits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PioReport {
    /// `kvm_pio` events.
    pub count: u64,
    /// Per port (the first 64 ports seen): `(port, count)`.
    pub ports: Vec<(u32, u64)>,
}

/// A guest thread in the fused view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuestThreadReport {
    /// Guest tid (-1 sums threads beyond the bound).
    pub tid: Tid,
    /// Guest name.
    pub comm: String,
    /// Time the guest had it on a vCPU, ns.
    pub guest_running_ns: i64,
    /// Of it, the vCPU really ran guest code.
    pub really_running_ns: i64,
    /// Of it, the vCPU was in the hypervisor (`None` under TCG).
    pub vmm_ns: Option<i64>,
    /// Of it, the vCPU was preempted on the host.
    pub preempted_ns: i64,
    /// Of it, the vCPU's host state was unknown (or idle).
    pub other_ns: i64,
    /// `really_running / guest_running`, %.
    pub really_running_pct: Option<f64>,
}

/// The guest trace paired with a VM.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuestReport {
    /// The guest trace.
    pub trace: String,
    /// How it was paired: `uuid`, `name` or `only-vm`.
    pub paired_by: String,
    /// Guest-to-host clock offset applied, ns (host minus guest, at the
    /// sync's anchor when synced).
    pub clock_offset_ns: i64,
    /// The clock sync of this guest from its probes, when there were any.
    pub sync: Option<super::sync::GuestSyncReport>,
    /// The probe matcher of each host source, when the guest has no sync
    /// (live, not yet): why (no host events of its probes, nothing paired,
    /// or a source given up).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sync_sources: Vec<super::sync::SyncSourceStatus>,
    /// Guest switches read.
    pub switches: u64,
    /// Guest threads, most time first (idle task excluded).
    pub threads: Vec<GuestThreadReport>,
}

/// One VM.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmReport {
    /// Name (hints, else `pid N`).
    pub name: String,
    /// UUID, when known.
    pub uuid: Option<String>,
    /// VMM process.
    pub pid: Option<Tid>,
    /// VMM process name.
    pub process: Option<String>,
    /// `kvm`, `tcg` or `unknown`.
    pub accel: Accel,
    /// Whether hypervisor time is observed (`kvm_entry` seen).
    pub vmm_visible: bool,
    /// All vCPUs together.
    pub times: Times,
    /// Per vCPU.
    pub vcpus: Vec<VcpuReport>,
    /// In-kernel exits, most frequent first.
    pub exits: Vec<ExitRow>,
    /// Userspace exits, most frequent first.
    pub userspace_exits: Vec<ExitRow>,
    /// Exit-to-entry latency over all in-kernel exits.
    pub vmm_latency: Option<Percentiles>,
    /// Port I/O.
    pub pio: PioReport,
    /// Who preempted its vCPUs, all vCPUs together.
    pub preempted_by: Vec<PreemptedBy>,
    /// The fused view, when a guest trace was paired.
    pub guest: Option<GuestReport>,
}

/// The VM report of one host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmHostReport {
    /// Host name.
    pub hostname: String,
    /// First event, ns.
    pub begin_ns: i64,
    /// Last event, ns.
    pub end_ns: i64,
    /// `end - begin`.
    pub duration_ns: i64,
    /// Overcommit: more runnable vCPUs than host CPUs.
    pub overcommit: Overcommit,
    /// The VMs found.
    pub vms: Vec<VmReport>,
}

fn preempter_row(model: &VmModel, p: Preempter, comm: &str, ns: i64, total: i64) -> PreemptedBy {
    let pct = if total > 0 {
        100.0 * ns as f64 / total as f64
    } else {
        0.0
    };
    let (kind, vm, vcpu, tid) = match p {
        Preempter::Vcpu(i) => {
            let v = &model.vcpus()[i];
            (
                "vcpu",
                Some(model.vms()[v.vm].name.clone()),
                Some(v.id),
                Some(v.tid),
            )
        }
        Preempter::Thread(t) => ("thread", None, None, Some(t)),
        Preempter::Idle => ("idle", None, None, Some(0)),
        Preempter::Unknown => ("unknown", None, None, None),
    };
    PreemptedBy {
        kind,
        vm,
        vcpu,
        tid,
        comm: comm.to_string(),
        ns,
        pct,
    }
}

fn vcpu_preempters(model: &VmModel, vcs: &[&Vcpu], top: usize) -> Vec<PreemptedBy> {
    let mut sum: Vec<(Preempter, i64, String)> = Vec::new();
    for v in vcs {
        for (p, ns, comm) in &v.preempted_by {
            match sum.iter_mut().find(|x| x.0 == *p) {
                Some(x) => x.1 += ns,
                None => sum.push((*p, *ns, comm.to_string_lossy())),
            }
        }
    }
    let total: i64 = sum.iter().map(|x| x.1).sum();
    sum.sort_by_key(|x| std::cmp::Reverse(x.1));
    if top > 0 {
        sum.truncate(top);
    }
    sum.iter()
        .map(|(p, ns, comm)| preempter_row(model, *p, comm, *ns, total))
        .collect()
}

fn exit_rows(map: &crate::hash::IntMap<u64, super::model::ExitAcc>) -> Vec<ExitRow> {
    let mut rows: Vec<ExitRow> = map
        .values()
        .map(|e| ExitRow {
            reason: e.cause.map_or_else(|| "?".into(), |c| c.name()),
            count: e.count,
            latency: e.latency.summary(),
        })
        .collect();
    rows.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
    rows
}

fn guest_report(vm: &Vm, paired_by: &str, visible: bool, top: usize) -> Option<GuestReport> {
    let g = vm.guest.as_ref()?;
    let mut threads: Vec<GuestThreadReport> = g
        .threads
        .iter()
        .filter(|(&tid, _)| tid != 0)
        .map(|(&tid, t)| {
            let x = Times::from_states(&t.acc, visible, 0);
            let total: i64 = t.acc.iter().sum();
            GuestThreadReport {
                tid,
                comm: t.comm.to_string_lossy(),
                guest_running_ns: total,
                really_running_ns: x.running_ns,
                vmm_ns: x.vmm_ns,
                preempted_ns: x.preempted_ns,
                other_ns: x.unknown_ns + x.idle_ns,
                really_running_pct: (total > 0).then(|| 100.0 * x.running_ns as f64 / total as f64),
            }
        })
        .collect();
    threads.sort_by(|a, b| {
        b.guest_running_ns
            .cmp(&a.guest_running_ns)
            .then(a.tid.cmp(&b.tid))
    });
    if top > 0 {
        threads.truncate(top);
    }
    Some(GuestReport {
        trace: g.label.clone(),
        paired_by: paired_by.to_string(),
        clock_offset_ns: g.sync.as_ref().map_or(g.clock.offset_ns, |s| s.offset_ns),
        sync: g.sync.clone(),
        sync_sources: g.sync_sources.clone(),
        switches: g.switches,
        threads,
    })
}

impl VmModel {
    /// The report of everything fed so far, the period ending at `end`
    /// (call [`VmModel::flush`] with the same `end` first). `paired_by`
    /// says, per VM index, how its guest trace was paired; `top` bounds
    /// the preempter and guest thread rows (0 = all).
    pub fn report(
        &self,
        hostname: &str,
        end: i64,
        paired_by: &[(usize, String)],
        top: usize,
    ) -> VmHostReport {
        let begin = self.begin().unwrap_or(end);
        let span = end - begin;
        let mut vms = Vec::new();
        for (vi, vm) in self.vms().iter().enumerate() {
            let vcs: Vec<&Vcpu> = vm.vcpus.iter().map(|&i| &self.vcpus()[i]).collect();
            let visible = vcs.iter().any(|v| v.entries_seen);
            let mut sum = [0i64; STATES];
            let mut vcpus = Vec::new();
            for v in &vcs {
                for (s, x) in sum.iter_mut().zip(v.times()) {
                    *s += x;
                }
                vcpus.push(VcpuReport {
                    id: v.id,
                    tid: v.tid,
                    comm: v.comm.to_string_lossy(),
                    times: Times::from_states(v.times(), visible, span),
                    preempted_by: vcpu_preempters(self, &[v], top),
                });
            }
            vcpus.sort_by_key(|v| (v.id, v.tid));
            let how = paired_by
                .iter()
                .find(|p| p.0 == vi)
                .map_or("", |p| p.1.as_str());
            vms.push(VmReport {
                name: vm.name.clone(),
                uuid: vm.uuid.clone(),
                pid: vm.pid,
                process: vm.process.map(|c| c.to_string_lossy()),
                accel: vm.accel,
                vmm_visible: visible,
                times: Times::from_states(&sum, visible, span * vcs.len().max(1) as i64),
                vcpus,
                exits: exit_rows(&vm.exits),
                userspace_exits: exit_rows(&vm.user_exits),
                vmm_latency: vm.vmm_latency.percentiles(),
                pio: PioReport {
                    count: vm.pio,
                    ports: vm.pio_ports.clone(),
                },
                preempted_by: vcpu_preempters(self, &vcs, top),
                guest: guest_report(vm, how, visible, top),
            });
        }
        VmHostReport {
            hostname: hostname.to_string(),
            begin_ns: begin,
            end_ns: end,
            duration_ns: span,
            overcommit: self.overcommit(),
            vms,
        }
    }
}
