//! VMs that come and go while the model runs live. Hints that arrive after
//! a VM's threads were found still name it; a VM whose VMM process exits,
//! whose vCPU threads all exit, or whose hint disappears is marked gone,
//! and [`VmModel::drop_gone`] forgets it a grace period later, so a live
//! model stays bounded by the VMs alive rather than by every VM ever seen.

use super::{Preempter, VmModel};
use crate::event::Tid;
use crate::vm::hints::VmHint;

impl VmModel {
    /// Replaces the hints with what the host says runs now (at `ts`, ns):
    /// VMs already found take their names, UUIDs and vCPU indices from
    /// them, and a VM that an earlier hint listed but this one does not is
    /// marked gone (its QEMU process ended).
    pub fn set_hints(&mut self, hints: Vec<VmHint>, ts: i64) {
        let old = std::mem::replace(&mut self.hints, hints);
        for vi in 0..self.vms.len() {
            if self.vms[vi].gone_at.is_some() {
                continue;
            }
            if let Some(&v) = self.vms[vi].vcpus.first() {
                self.learn_process(self.vcpus[v].tid);
            }
            let pid = self.vms[vi].pid;
            let tids: Vec<Tid> = self.vms[vi]
                .vcpus
                .iter()
                .map(|&v| self.vcpus[v].tid)
                .collect();
            let matches = |h: &VmHint| {
                (pid.is_some() && h.qemu_pid == pid)
                    || h.vcpus.iter().any(|x| tids.contains(&x.tid))
            };
            match self.hints.iter().position(matches) {
                Some(hi) => self.apply_hint(vi, hi),
                None if old.iter().any(matches) => self.vms[vi].gone_at = Some(ts),
                None => {}
            }
        }
    }

    /// VM `vi` takes the name, UUID, process and vCPU indices of hint `hi`.
    fn apply_hint(&mut self, vi: usize, hi: usize) {
        let h = &self.hints[hi];
        let vm = &mut self.vms[vi];
        if let Some(n) = &h.name {
            vm.name.clone_from(n);
        }
        if h.uuid.is_some() {
            vm.uuid.clone_from(&h.uuid);
        }
        if vm.pid.is_none() {
            vm.pid = h.qemu_pid;
        }
        for x in &h.vcpus {
            if let Some(&v) = self.vcpu_of.get(&x.tid) {
                if self.vcpus[v].vm == vi {
                    self.vcpus[v].id = x.id;
                }
            }
        }
    }

    /// The VM of vCPU thread `tid` takes its process, and the hints that
    /// name that process, when it was registered without one: its thread
    /// ran (under its vCPU name) before the model saw it created, which a
    /// live feed does when the creating CPU's events come late. A TCG VM's
    /// hints list no vCPU threads, so the process is what pairs them.
    pub(super) fn learn_process(&mut self, tid: Tid) {
        let Some(&v) = self.vcpu_of.get(&tid) else {
            return;
        };
        let vi = self.vcpus[v].vm;
        if self.vms[vi].pid.is_some() {
            return;
        }
        let Some(pid) = self.pid_of(tid) else {
            return;
        };
        // Another VM of that process was found first: keep them apart
        // rather than merge their vCPUs' histories.
        if self.vms.iter().any(|vm| vm.pid == Some(pid)) {
            return;
        }
        let process = self.threads.get(&pid).map(|t| t.comm);
        let vm = &mut self.vms[vi];
        vm.pid = Some(pid);
        vm.process = process;
        vm.name = format!("pid {pid}");
        if let Some(hi) = self.hints.iter().position(|h| h.qemu_pid == Some(pid)) {
            self.apply_hint(vi, hi);
        }
    }

    /// Thread `tid` exited at `ts`: its VM is gone when it was the VMM
    /// process, or when it was the VM's last vCPU thread.
    pub(super) fn note_exit(&mut self, ts: i64, tid: Tid) {
        let by_vcpu = self.vcpu_of.get(&tid).map(|&v| self.vcpus[v].vm);
        for (vi, vm) in self.vms.iter_mut().enumerate() {
            if vm.gone_at.is_some() {
                continue;
            }
            let last_vcpu = by_vcpu == Some(vi) && vm.vcpus.iter().all(|&v| self.vcpus[v].gone);
            if vm.pid == Some(tid) || last_vcpu {
                vm.gone_at = Some(ts);
            }
        }
    }

    /// Forgets the VMs marked gone at or before `cutoff` (ns), with their
    /// vCPUs; waits that other vCPUs credited to a forgotten vCPU stay, as
    /// its host thread's. Returns how many VMs went.
    pub fn drop_gone(&mut self, cutoff: i64) -> usize {
        let drop: Vec<bool> = self
            .vms
            .iter()
            .map(|vm| vm.gone_at.is_some_and(|t| t <= cutoff))
            .collect();
        let n = drop.iter().filter(|&&d| d).count();
        if n == 0 {
            return 0;
        }
        // New indices of the VMs and vCPUs that stay.
        let mut vm_map = vec![None; self.vms.len()];
        let mut next = 0;
        for (i, d) in drop.iter().enumerate() {
            if !d {
                vm_map[i] = Some(next);
                next += 1;
            }
        }
        let mut vcpu_map = vec![None; self.vcpus.len()];
        let mut next = 0;
        for (i, vc) in self.vcpus.iter().enumerate() {
            if vm_map[vc.vm].is_some() {
                vcpu_map[i] = Some(next);
                next += 1;
            }
        }
        for (i, vc) in self.vcpus.iter().enumerate() {
            if vcpu_map[i].is_none() && vc.demands() {
                self.demand = self.demand.saturating_sub(1);
            }
        }
        let old_tids: Vec<Tid> = self.vcpus.iter().map(|v| v.tid).collect();
        let mut i = 0;
        self.vcpus.retain(|_| {
            i += 1;
            vcpu_map[i - 1].is_some()
        });
        for vc in &mut self.vcpus {
            vc.vm = vm_map[vc.vm].unwrap_or(0);
            for p in &mut vc.preempted_by {
                if let Preempter::Vcpu(o) = p.0 {
                    p.0 = match vcpu_map[o] {
                        Some(n) => Preempter::Vcpu(n),
                        None => Preempter::Thread(old_tids[o]),
                    };
                }
            }
            // Two forgotten vCPUs never share a tid, but a forgotten vCPU
            // and a host thread may (a reused tid): merge them.
            let mut merged: Vec<(Preempter, i64, crate::event::Comm)> =
                Vec::with_capacity(vc.preempted_by.len());
            for p in vc.preempted_by.drain(..) {
                match merged.iter_mut().find(|m| m.0 == p.0) {
                    Some(m) => m.1 += p.1,
                    None => merged.push(p),
                }
            }
            vc.preempted_by = merged;
        }
        self.vcpu_of.retain(|_, v| vcpu_map[*v].is_some());
        for v in self.vcpu_of.values_mut() {
            *v = vcpu_map[*v].unwrap_or(0);
        }
        for c in &mut self.cpus {
            c.waiting.retain(|v| vcpu_map[*v].is_some());
            for v in &mut c.waiting {
                *v = vcpu_map[*v].unwrap_or(0);
            }
        }
        if let Some(iv) = self.intervals.as_mut() {
            iv.retain(|x| vcpu_map[x.vcpu].is_some());
            for x in iv.iter_mut() {
                x.vcpu = vcpu_map[x.vcpu].unwrap_or(0);
            }
        }
        let mut i = 0;
        let mut gone_pids = Vec::new();
        self.vms.retain(|vm| {
            i += 1;
            if drop[i - 1] {
                gone_pids.extend(vm.pid);
            }
            !drop[i - 1]
        });
        for vm in &mut self.vms {
            for v in &mut vm.vcpus {
                *v = vcpu_map[*v].unwrap_or(0);
            }
        }
        for p in gone_pids {
            self.threads.remove(&p);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use crate::vm::hints::{VcpuHint, VmHint};
    use crate::vm::{VmEvent, VmModel};

    fn thread(m: &mut VmModel, ts: i64, tid: i32, pid: i32, name: &[u8]) {
        m.handle(ts, 0, None, &VmEvent::Thread { tid, pid, name });
    }

    fn switch(m: &mut VmModel, ts: i64, prev: (i32, &[u8]), next: (i32, &[u8])) {
        m.handle(
            ts,
            0,
            None,
            &VmEvent::Switch {
                prev_tid: prev.0,
                prev_comm: prev.1,
                prev_state: 0,
                next_tid: next.0,
                next_comm: next.1,
            },
        );
    }

    /// A vCPU thread that runs before its creation is seen (a live feed's
    /// late CPU) makes a VM with no process; the fork, when it comes,
    /// gives it its process and the hints' name and UUID (a TCG hint lists
    /// no vCPU threads to pair it by).
    #[test]
    fn a_vcpu_seen_before_its_fork_takes_its_process_and_hint_later() {
        let mut m = VmModel::new();
        thread(&mut m, 0, 100, 100, b"qemu-system-x86");
        m.set_hints(
            vec![VmHint {
                name: Some("g0".into()),
                uuid: Some("uuid-g0".into()),
                qemu_pid: Some(100),
                vcpus: Vec::new(),
            }],
            1,
        );
        switch(&mut m, 10, (0, b"swapper/0"), (101, b"CPU 0/TCG"));
        assert_eq!(m.vms().len(), 1);
        assert_eq!(m.vms()[0].name, "tid 101");
        assert_eq!(m.vms()[0].uuid, None);
        m.handle(
            12,
            1,
            None,
            &VmEvent::Fork {
                parent_tid: 100,
                child_tid: 101,
                child_pid: Some(101),
                child_comm: b"qemu-system-x86",
            },
        );
        assert_eq!(m.vms().len(), 1);
        let vm = &m.vms()[0];
        assert_eq!((vm.pid, vm.name.as_str()), (Some(100), "g0"));
        assert_eq!(vm.uuid.as_deref(), Some("uuid-g0"));
        assert_eq!(vm.vcpus.len(), 1);
    }

    /// Two VMs share CPU 0; hints name them late; the first one's QEMU
    /// exits and is dropped; the other keeps its times and its preempter.
    #[test]
    fn late_hints_name_vms_and_exited_vms_are_dropped() {
        let mut m = VmModel::new();
        thread(&mut m, 0, 100, 100, b"qemu-system-x86");
        thread(&mut m, 0, 101, 100, b"CPU 0/TCG");
        thread(&mut m, 0, 200, 200, b"qemu-system-x86");
        thread(&mut m, 0, 201, 200, b"CPU 0/TCG");
        switch(&mut m, 10, (0, b"swapper/0"), (101, b"CPU 0/TCG"));
        switch(&mut m, 20, (101, b"CPU 0/TCG"), (201, b"CPU 0/TCG"));
        switch(&mut m, 30, (201, b"CPU 0/TCG"), (101, b"CPU 0/TCG"));
        assert_eq!(m.vms().len(), 2);
        assert_eq!(m.vms()[0].name, "pid 100");
        let hint = |pid: i32, name: &str| VmHint {
            name: Some(name.into()),
            uuid: Some(format!("uuid-{pid}")),
            qemu_pid: Some(pid),
            vcpus: vec![VcpuHint {
                id: 0,
                tid: pid + 1,
            }],
        };
        m.set_hints(vec![hint(100, "a"), hint(200, "b")], 35);
        assert_eq!(m.vms()[0].name, "a");
        assert_eq!(m.vms()[1].uuid.as_deref(), Some("uuid-200"));
        assert!(m.vms().iter().all(|vm| vm.gone_at.is_none()));
        // VM a's QEMU exits: its vCPU thread first, then the process.
        m.handle(40, 0, None, &VmEvent::ThreadExit { tid: 101 });
        assert_eq!(m.vms()[0].gone_at, Some(40));
        switch(&mut m, 41, (101, b"CPU 0/TCG"), (201, b"CPU 0/TCG"));
        m.handle(42, 0, None, &VmEvent::ThreadExit { tid: 100 });
        assert_eq!(m.drop_gone(39), 0, "not yet past the grace period");
        assert_eq!(m.drop_gone(40), 1);
        assert_eq!(m.vms().len(), 1);
        assert_eq!(m.vcpus().len(), 1);
        assert_eq!(m.vms()[0].name, "b");
        assert_eq!(m.vms()[0].vcpus, vec![0]);
        assert_eq!(m.vcpus()[0].vm, 0);
        let r = m.snapshot("h", 50, 0);
        let b = &r.vms[0];
        // b ran 20..30 and 41..50 and waited 30..41 behind a's vCPU thread
        // (kept as a host thread once a is forgotten).
        assert_eq!(b.times.running_ns, 19);
        assert_eq!(b.times.preempted_ns, 11);
        let by_a = b.preempted_by.iter().find(|p| p.tid == Some(101)).unwrap();
        assert_eq!(by_a.kind, "thread");
        assert_eq!(by_a.ns, 11);
        // A hint that disappears marks its VM gone.
        m.set_hints(vec![], 60);
        assert_eq!(m.vms()[0].gone_at, Some(60));
        assert_eq!(m.drop_gone(60), 1);
        assert!(m.vms().is_empty() && m.vcpus().is_empty());
        // Its tid reused later by a new QEMU is a new VM.
        thread(&mut m, 70, 201, 201, b"CPU 0/TCG");
        assert_eq!(m.vms().len(), 1);
    }
}
