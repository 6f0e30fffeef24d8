//! Binds raw ftrace records to the state system's events: each event type
//! (`common_type`) is matched once, by its group and name, to the fields the
//! state system reads; per record there is one table lookup and a few
//! direct reads. Priorities are converted to LTTng's convention (kernel
//! prio - 100) and syscalls are numbered by their x86-64 numbers, as the
//! stored trace does.

use strata_analysis::event::Comm;
use strata_analysis::event::{SoftirqPhase, SyscallId, Tid};
use strata_ftrace::format::{EventFormat, FieldAccessor};

use super::event::{LiveKind, Name};

/// How to read one event type.
#[derive(Debug, Clone, Copy)]
enum Bind {
    Other,
    Switch {
        prev_tid: FieldAccessor,
        prev_comm: Option<FieldAccessor>,
        prev_prio: Option<FieldAccessor>,
        prev_state: Option<FieldAccessor>,
        next_tid: FieldAccessor,
        next_comm: Option<FieldAccessor>,
        next_prio: Option<FieldAccessor>,
    },
    Wakeup {
        tid: FieldAccessor,
        prio: Option<FieldAccessor>,
        target_cpu: Option<FieldAccessor>,
        new: bool,
    },
    Migrate {
        tid: FieldAccessor,
        comm: Option<FieldAccessor>,
        prio: Option<FieldAccessor>,
        dest_cpu: Option<FieldAccessor>,
    },
    Fork {
        parent_tid: FieldAccessor,
        parent_comm: Option<FieldAccessor>,
        child_tid: FieldAccessor,
        child_comm: Option<FieldAccessor>,
    },
    NewTask {
        tid: FieldAccessor,
        clone_flags: FieldAccessor,
    },
    Exec {
        tid: FieldAccessor,
        filename: FieldAccessor,
    },
    Rename {
        tid: FieldAccessor,
        comm: FieldAccessor,
    },
    Exit {
        tid: FieldAccessor,
    },
    Free {
        tid: FieldAccessor,
    },
    SetPrio {
        tid: FieldAccessor,
        prio: FieldAccessor,
    },
    /// `raw_syscalls:sys_enter`: the number is a field; the arguments,
    /// for the descriptor of write calls.
    RawEnter {
        id: FieldAccessor,
        args: Option<FieldAccessor>,
    },
    /// `syscalls:sys_enter_<name>`: the number is known from the name;
    /// `fd` is bound for the write calls only.
    Enter {
        id: SyscallId,
        fd: Option<FieldAccessor>,
    },
    /// `ftrace:print`: a `trace_marker` line, read for sync probes.
    Marker {
        buf: FieldAccessor,
    },
    Exit_ {
        ret: Option<FieldAccessor>,
    },
    IrqEntry {
        irq: FieldAccessor,
        name: Option<FieldAccessor>,
    },
    IrqExit {
        irq: FieldAccessor,
    },
    Softirq {
        phase: SoftirqPhase,
        vec: FieldAccessor,
    },
    PageAlloc {
        order: Option<FieldAccessor>,
    },
    PageFree {
        order: Option<FieldAccessor>,
    },
    PageFault {
        user: bool,
    },
    KvmEntry {
        vcpu_id: Option<FieldAccessor>,
    },
    KvmExit {
        reason: FieldAccessor,
        isa: Option<FieldAccessor>,
        vcpu_id: Option<FieldAccessor>,
    },
    KvmUserExit {
        reason: FieldAccessor,
        errno: Option<FieldAccessor>,
    },
    KvmPio {
        rw: Option<FieldAccessor>,
        port: FieldAccessor,
    },
}

/// The bindings of every event type one agent sends.
#[derive(Debug, Clone)]
pub struct FtraceBinder {
    by_id: Vec<Bind>,
    common_pid: Option<FieldAccessor>,
}

/// The syscall names, indexed by their x86-64 numbers ([`SyscallId`]).
pub fn syscall_names() -> Vec<Box<str>> {
    let mut names: Vec<Box<str>> = Vec::new();
    for (nr, name) in strata_core::syscalls::x86_64_all() {
        let i = nr as usize;
        if names.len() <= i {
            names.resize(i + 1, "unknown".into());
        }
        names[i] = name.into();
    }
    names
}

/// The write calls a guest sync probe's port write may show up as on the
/// host (QEMU's chardev backends write with these), x86-64 numbers.
const WRITE_CALLS: [SyscallId; 3] = [1, 20, 296];

/// Whether `id` is one of [`WRITE_CALLS`].
#[inline]
fn is_write_call(id: SyscallId) -> bool {
    WRITE_CALLS.contains(&id)
}

fn syscall_number(name: &str) -> Option<SyscallId> {
    strata_core::syscalls::x86_64_all()
        .find(|(_, n)| *n == name)
        .and_then(|(nr, _)| SyscallId::try_from(nr).ok())
}

impl FtraceBinder {
    /// Binds `formats` (ids above 65535 cannot occur: `common_type` is a u16).
    pub fn new(formats: &[EventFormat]) -> FtraceBinder {
        let max = formats.iter().map(|f| f.id as usize).max().unwrap_or(0);
        let mut by_id = vec![Bind::Other; max + 1];
        let mut common_pid = None;
        for f in formats {
            if common_pid.is_none() {
                common_pid = f.field("common_pid").map(|x| x.accessor());
            }
            if let Some(slot) = by_id.get_mut(f.id as usize) {
                *slot = bind(f).unwrap_or(Bind::Other);
            }
        }
        FtraceBinder { by_id, common_pid }
    }

    /// The thread context and the event of one record.
    #[inline]
    pub fn decode(&self, rec: &[u8]) -> (Tid, LiveKind) {
        let tid = self
            .common_pid
            .and_then(|a| a.i64(rec))
            .and_then(|v| Tid::try_from(v).ok())
            .unwrap_or(-1);
        let id = match rec.get(0..2) {
            Some(t) => u16::from_le_bytes([t[0], t[1]]) as usize,
            None => return (tid, LiveKind::Other),
        };
        let kind = match self.by_id.get(id) {
            None | Some(Bind::Other) => LiveKind::Other,
            Some(b) => decode(b, rec).unwrap_or(LiveKind::Other),
        };
        (tid, kind)
    }
}

fn bind(f: &EventFormat) -> Option<Bind> {
    let need = |n: &str| f.field(n).map(|x| x.accessor());
    let opt = |n: &str| f.field(n).map(|x| x.accessor());
    Some(match (f.system.as_str(), f.name.as_str()) {
        ("kvm", "kvm_entry") => Bind::KvmEntry {
            vcpu_id: opt("vcpu_id"),
        },
        ("kvm", "kvm_exit") => Bind::KvmExit {
            reason: need("exit_reason")?,
            isa: opt("isa"),
            vcpu_id: opt("vcpu_id"),
        },
        ("kvm", "kvm_userspace_exit") => Bind::KvmUserExit {
            reason: need("reason")?,
            errno: opt("errno"),
        },
        ("kvm", "kvm_pio") => Bind::KvmPio {
            rw: opt("rw"),
            port: need("port")?,
        },
        ("sched", "sched_switch") => Bind::Switch {
            prev_tid: need("prev_pid")?,
            prev_comm: opt("prev_comm"),
            prev_prio: opt("prev_prio"),
            prev_state: opt("prev_state"),
            next_tid: need("next_pid")?,
            next_comm: opt("next_comm"),
            next_prio: opt("next_prio"),
        },
        ("sched", n @ ("sched_wakeup" | "sched_waking" | "sched_wakeup_new")) => Bind::Wakeup {
            tid: need("pid")?,
            prio: opt("prio"),
            target_cpu: opt("target_cpu"),
            new: n == "sched_wakeup_new",
        },
        ("sched", "sched_migrate_task") => Bind::Migrate {
            tid: need("pid")?,
            comm: opt("comm"),
            prio: opt("prio"),
            dest_cpu: opt("dest_cpu"),
        },
        ("sched", "sched_process_fork") => Bind::Fork {
            parent_tid: need("parent_pid")?,
            parent_comm: opt("parent_comm"),
            child_tid: need("child_pid")?,
            child_comm: opt("child_comm"),
        },
        ("sched", "sched_process_exec") => Bind::Exec {
            tid: need("pid")?,
            filename: need("filename")?,
        },
        ("task", "task_newtask") => Bind::NewTask {
            tid: need("pid")?,
            clone_flags: need("clone_flags")?,
        },
        ("task", "task_rename") => Bind::Rename {
            tid: need("pid")?,
            comm: need("newcomm")?,
        },
        ("sched", "sched_process_exit") => Bind::Exit { tid: need("pid")? },
        ("sched", "sched_process_free") => Bind::Free { tid: need("pid")? },
        ("sched", "sched_pi_setprio") => Bind::SetPrio {
            tid: need("pid")?,
            prio: need("newprio")?,
        },
        ("raw_syscalls", "sys_enter") => Bind::RawEnter {
            id: need("id")?,
            args: opt("args"),
        },
        ("raw_syscalls", "sys_exit") => Bind::Exit_ { ret: opt("ret") },
        ("syscalls", n) if n.starts_with("sys_enter_") => {
            let id = syscall_number(n.trim_start_matches("sys_enter_"))?;
            Bind::Enter {
                id,
                fd: if is_write_call(id) { opt("fd") } else { None },
            }
        }
        ("ftrace", "print") => Bind::Marker { buf: need("buf")? },
        ("syscalls", n) if n.starts_with("sys_exit_") => Bind::Exit_ { ret: opt("ret") },
        ("irq", "irq_handler_entry") => Bind::IrqEntry {
            irq: need("irq")?,
            name: opt("name"),
        },
        ("irq", "irq_handler_exit") => Bind::IrqExit { irq: need("irq")? },
        ("irq", "softirq_entry") => Bind::Softirq {
            phase: SoftirqPhase::Entry,
            vec: need("vec")?,
        },
        ("irq", "softirq_exit") => Bind::Softirq {
            phase: SoftirqPhase::Exit,
            vec: need("vec")?,
        },
        ("irq", "softirq_raise") => Bind::Softirq {
            phase: SoftirqPhase::Raise,
            vec: need("vec")?,
        },
        ("kmem", "mm_page_alloc") => Bind::PageAlloc {
            order: opt("order"),
        },
        ("kmem", "mm_page_free") => Bind::PageFree {
            order: opt("order"),
        },
        ("exceptions", "page_fault_user") => Bind::PageFault { user: true },
        ("exceptions", "page_fault_kernel") => Bind::PageFault { user: false },
        _ => return None,
    })
}

#[inline]
fn tid(a: FieldAccessor, rec: &[u8]) -> Option<Tid> {
    Tid::try_from(a.i64(rec)?).ok()
}

#[inline]
fn prio(a: Option<FieldAccessor>, rec: &[u8]) -> Option<i32> {
    // LTTng's convention: the kernel priority minus MAX_RT_PRIO.
    a.and_then(|a| i32::try_from(a.i64(rec)? - 100).ok())
}

#[inline]
fn comm(a: Option<FieldAccessor>, rec: &[u8]) -> Comm {
    Comm::new(a.and_then(|a| a.str(rec)).unwrap_or(b""))
}

#[inline]
fn opt_u32(a: Option<FieldAccessor>, rec: &[u8]) -> Option<u32> {
    a.and_then(|a| u32::try_from(a.i64(rec)?).ok())
}

#[inline]
fn decode(b: &Bind, rec: &[u8]) -> Option<LiveKind> {
    Some(match *b {
        Bind::Other => LiveKind::Other,
        Bind::KvmEntry { vcpu_id } => LiveKind::KvmEntry {
            vcpu_id: opt_u32(vcpu_id, rec),
        },
        Bind::KvmExit {
            reason,
            isa,
            vcpu_id,
        } => LiveKind::KvmExit {
            reason: u32::try_from(reason.i64(rec)?).ok()?,
            isa: opt_u32(isa, rec),
            vcpu_id: opt_u32(vcpu_id, rec),
        },
        Bind::KvmUserExit { reason, errno } => LiveKind::KvmUserExit {
            reason: u32::try_from(reason.i64(rec)?).ok()?,
            errno: errno
                .and_then(|a| i32::try_from(a.i64(rec)?).ok())
                .unwrap_or(0),
        },
        Bind::KvmPio { rw, port } => LiveKind::KvmPio {
            write: rw.and_then(|a| a.i64(rec)).is_some_and(|v| v != 0),
            port: u32::try_from(port.i64(rec)?).ok()?,
        },
        Bind::RawEnter { id, args } => {
            let id = SyscallId::try_from(id.i64(rec)?).ok()?;
            match args
                .filter(|_| is_write_call(id))
                .and_then(|a| a.element(rec, 0))
            {
                Some(fd) => LiveKind::WriteEntry { id, fd },
                None => LiveKind::SyscallEntry { id },
            }
        }
        Bind::Enter { id, fd } => match fd.and_then(|a| a.i64(rec)) {
            Some(fd) => LiveKind::WriteEntry { id, fd },
            None => LiveKind::SyscallEntry { id },
        },
        Bind::Marker { buf } => match strata_analysis::vm::sync::parse_marker(buf.str(rec)?) {
            Some((before, after)) => LiveKind::SyncMarker { before, after },
            None => LiveKind::Other,
        },
        Bind::Exit_ { ret } => LiveKind::SyscallExit {
            ret: ret.and_then(|r| r.i64(rec)),
        },
        Bind::Switch {
            prev_tid,
            prev_comm,
            prev_prio,
            prev_state,
            next_tid,
            next_comm,
            next_prio,
        } => LiveKind::Switch {
            prev_tid: tid(prev_tid, rec)?,
            prev_comm: comm(prev_comm, rec),
            prev_prio: prio(prev_prio, rec),
            prev_state: prev_state.and_then(|a| a.i64(rec)).unwrap_or(0),
            next_tid: tid(next_tid, rec)?,
            next_comm: comm(next_comm, rec),
            next_prio: prio(next_prio, rec),
        },
        Bind::Wakeup {
            tid: t,
            prio: p,
            target_cpu,
            new,
        } => LiveKind::Wakeup {
            tid: tid(t, rec)?,
            prio: prio(p, rec),
            target_cpu: opt_u32(target_cpu, rec),
            new,
        },
        Bind::Migrate {
            tid: t,
            comm: c,
            prio: p,
            dest_cpu,
        } => LiveKind::Migrate {
            tid: tid(t, rec)?,
            comm: comm(c, rec),
            prio: prio(p, rec),
            dest_cpu: opt_u32(dest_cpu, rec),
        },
        Bind::Fork {
            parent_tid,
            parent_comm,
            child_tid,
            child_comm,
        } => LiveKind::Fork {
            parent_tid: tid(parent_tid, rec)?,
            parent_pid: None,
            parent_comm: comm(parent_comm, rec),
            child_tid: tid(child_tid, rec)?,
            child_pid: None,
            child_comm: comm(child_comm, rec),
        },
        Bind::Exec { tid: t, filename } => LiveKind::Exec {
            tid: tid(t, rec)?,
            comm: Comm::from_exec_path(filename.str(rec).unwrap_or(b"")),
        },
        Bind::NewTask {
            tid: t,
            clone_flags,
        } => LiveKind::NewTask {
            tid: tid(t, rec)?,
            clone_flags: clone_flags.u64(rec)?,
        },
        Bind::Rename { tid: t, comm: c } => LiveKind::Rename {
            tid: tid(t, rec)?,
            comm: comm(Some(c), rec),
        },
        Bind::Exit { tid: t } => LiveKind::Exit { tid: tid(t, rec)? },
        Bind::Free { tid: t } => LiveKind::Free { tid: tid(t, rec)? },
        Bind::SetPrio { tid: t, prio: p } => LiveKind::SetPrio {
            tid: tid(t, rec)?,
            prio: prio(Some(p), rec)?,
        },
        Bind::IrqEntry { irq, name } => LiveKind::IrqEntry {
            irq: irq.i64(rec)?,
            name: Name::new(name.and_then(|n| n.str(rec)).unwrap_or(b"")),
        },
        Bind::IrqExit { irq } => LiveKind::IrqExit { irq: irq.i64(rec)? },
        Bind::Softirq { phase, vec } => LiveKind::Softirq {
            phase,
            vec: u32::try_from(vec.i64(rec)?).ok()?,
        },
        Bind::PageAlloc { order } => LiveKind::PageAlloc {
            order: opt_u32(order, rec).unwrap_or(0),
        },
        Bind::PageFree { order } => LiveKind::PageFree {
            order: opt_u32(order, rec).unwrap_or(0),
        },
        Bind::PageFault { user } => LiveKind::PageFault { user },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real formats of this kernel, when tracefs is readable.
    fn real(system: &str, name: &str) -> Option<EventFormat> {
        for root in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
            let p = format!("{root}/events/{system}/{name}/format");
            if let Ok(text) = std::fs::read_to_string(&p) {
                return strata_ftrace::format::parse(system, &text).ok();
            }
        }
        None
    }

    fn record(f: &EventFormat, fill: &[(&str, &[u8])]) -> Vec<u8> {
        let mut rec = vec![0u8; f.min_record_len() as usize];
        rec[0..2].copy_from_slice(&f.id.to_le_bytes());
        for (name, bytes) in fill {
            let field = f.field(name).unwrap();
            let at = field.offset as usize;
            rec[at..at + bytes.len()].copy_from_slice(bytes);
        }
        rec
    }

    #[test]
    fn decodes_real_switch_and_syscall_records() {
        let (Some(sw), Some(enter), Some(exit)) = (
            real("sched", "sched_switch"),
            real("raw_syscalls", "sys_enter"),
            real("raw_syscalls", "sys_exit"),
        ) else {
            eprintln!("skipped: tracefs event formats are not readable here");
            return;
        };
        let b = FtraceBinder::new(&[sw.clone(), enter.clone(), exit.clone()]);
        let rec = record(
            &sw,
            &[
                ("common_pid", &42i32.to_le_bytes()),
                ("prev_comm", b"bash"),
                ("prev_pid", &42i32.to_le_bytes()),
                ("prev_prio", &120i32.to_le_bytes()),
                ("next_comm", b"swapper/1"),
                ("next_pid", &0i32.to_le_bytes()),
                ("next_prio", &120i32.to_le_bytes()),
            ],
        );
        let (tid, kind) = b.decode(&rec);
        assert_eq!(tid, 42);
        let LiveKind::Switch {
            prev_tid,
            prev_comm,
            prev_prio,
            next_tid,
            next_comm,
            ..
        } = kind
        else {
            panic!("{kind:?}");
        };
        assert_eq!((prev_tid, next_tid, prev_prio), (42, 0, Some(20)));
        assert_eq!(prev_comm.as_bytes(), b"bash");
        assert_eq!(next_comm.as_bytes(), b"swapper/1");

        let rec = record(&enter, &[("id", &39i64.to_le_bytes())]);
        assert_eq!(b.decode(&rec).1, LiveKind::SyscallEntry { id: 39 });
        let rec = record(&exit, &[("ret", &(-11i64).to_le_bytes())]);
        assert_eq!(b.decode(&rec).1, LiveKind::SyscallExit { ret: Some(-11) });
        assert_eq!(syscall_names()[39].as_ref(), "getpid");
        // Truncated and unknown records are not errors, only `Other`.
        assert_eq!(b.decode(&rec[..3]).1, LiveKind::SyscallExit { ret: None });
        assert_eq!(b.decode(&[0xff, 0xff, 0, 0]).1, LiveKind::Other);
        assert_eq!(b.decode(&[]).1, LiveKind::Other);
    }

    #[test]
    fn kvm_records_feed_the_live_vm_model() {
        let (Some(sw), Some(entry), Some(exit), Some(uexit), Some(pio)) = (
            real("sched", "sched_switch"),
            real("kvm", "kvm_entry"),
            real("kvm", "kvm_exit"),
            real("kvm", "kvm_userspace_exit"),
            real("kvm", "kvm_pio"),
        ) else {
            eprintln!("skipped: tracefs kvm event formats are not readable here");
            return;
        };
        let b = FtraceBinder::new(&[
            sw.clone(),
            entry.clone(),
            exit.clone(),
            uexit.clone(),
            pio.clone(),
        ]);
        let mut comm16 = [0u8; 16];
        comm16[..9].copy_from_slice(b"CPU 0/KVM");
        let pid = 101i32.to_le_bytes();
        let recs = [
            (
                0,
                record(
                    &sw,
                    &[
                        ("prev_pid", &0i32.to_le_bytes()),
                        ("prev_state", &1i64.to_le_bytes()),
                        ("next_comm", &comm16),
                        ("next_pid", &pid),
                    ],
                ),
            ),
            (100, record(&entry, &[("common_pid", &pid)])),
            (
                1000,
                record(
                    &exit,
                    &[("common_pid", &pid), ("exit_reason", &30u32.to_le_bytes())],
                ),
            ),
            (
                1050,
                record(
                    &pio,
                    &[("common_pid", &pid), ("port", &0x3f0u32.to_le_bytes())],
                ),
            ),
            (
                1100,
                record(
                    &uexit,
                    &[("common_pid", &pid), ("reason", &2u32.to_le_bytes())],
                ),
            ),
            (1500, record(&entry, &[("common_pid", &pid)])),
            (
                2000,
                record(
                    &sw,
                    &[
                        ("prev_comm", &comm16),
                        ("prev_pid", &pid),
                        ("next_pid", &0i32.to_le_bytes()),
                    ],
                ),
            ),
        ];
        let t0 = 1_700_000_000_000_000_000i64;
        let mut host = super::super::LiveHost::new(super::super::LiveConfig::default(), vec![]);
        for (dt, rec) in &recs {
            let (tid, kind) = b.decode(rec);
            host.push(super::super::event::LiveEvent {
                ts: t0 + dt,
                arrived: t0 + dt,
                cpu: 0,
                tid,
                kind,
            });
        }
        host.drain(t0 + 10_000, true, None);
        assert!(host.has_vms());
        let r = host.vms_report("h", 10);
        assert_eq!(r.vms.len(), 1);
        let v = &r.vms[0];
        let t = &v.times;
        assert_eq!(
            (
                t.unknown_ns,
                t.running_ns,
                t.vmm_ns,
                t.vmm_user_ns,
                t.preempted_ns
            ),
            (100, 1400, Some(500), Some(400), 0)
        );
        assert_eq!(v.exits[0].reason, "IO_INSTRUCTION");
        assert_eq!(v.userspace_exits[0].reason, "user:IO");
        assert_eq!(v.pio.count, 1);
        // The snapshot left the live model as it was.
        assert_eq!(host.vms_report("h", 10), r);
    }

    /// A guest's probe marker becomes `SyncMarker` with its readings (other
    /// print lines stay `Other`), and a write call's entry carries its
    /// descriptor whether it comes as `raw_syscalls` or `syscalls`.
    #[test]
    fn decodes_sync_markers_and_write_descriptors() {
        let (Some(print), Some(raw), Some(write), Some(read)) = (
            real("ftrace", "print"),
            real("raw_syscalls", "sys_enter"),
            real("syscalls", "sys_enter_write"),
            real("syscalls", "sys_enter_read"),
        ) else {
            eprintln!("skipped: tracefs print and syscall event formats are not readable here");
            return;
        };
        let b = FtraceBinder::new(&[print.clone(), raw.clone(), write.clone(), read.clone()]);
        let marker = |text: &[u8]| {
            let mut rec = record(&print, &[]);
            rec.extend_from_slice(text);
            b.decode(&rec).1
        };
        assert_eq!(
            marker(b"strata-sync 7 1000 1250\n\0"),
            LiveKind::SyncMarker {
                before: 1000,
                after: 1250
            }
        );
        assert_eq!(marker(b"hello\n\0"), LiveKind::Other);
        assert_eq!(marker(b"strata-sync 7 1250 1000\n"), LiveKind::Other);
        let mut args = [0u8; 48];
        args[..8].copy_from_slice(&12u64.to_le_bytes());
        let rec = record(&raw, &[("id", &20i64.to_le_bytes()), ("args", &args)]);
        assert_eq!(b.decode(&rec).1, LiveKind::WriteEntry { id: 20, fd: 12 });
        // Other calls keep only their number, whatever their arguments.
        let rec = record(&raw, &[("id", &0i64.to_le_bytes()), ("args", &args)]);
        assert_eq!(b.decode(&rec).1, LiveKind::SyscallEntry { id: 0 });
        let rec = record(&write, &[("fd", &9u64.to_le_bytes())]);
        assert_eq!(b.decode(&rec).1, LiveKind::WriteEntry { id: 1, fd: 9 });
        if let Some(writev) = real("syscalls", "sys_enter_writev") {
            let b = FtraceBinder::new(&[writev.clone(), write.clone()]);
            let rec = record(&writev, &[("fd", &3u64.to_le_bytes())]);
            assert_eq!(b.decode(&rec).1, LiveKind::WriteEntry { id: 20, fd: 3 });
        }
        let rec = record(&read, &[("fd", &9u64.to_le_bytes())]);
        assert_eq!(b.decode(&rec).1, LiveKind::SyscallEntry { id: 0 });
        // Readings on a nanosecond clock are not the trace's: unusable.
        let m = LiveKind::SyncMarker {
            before: 10,
            after: 20,
        };
        assert_eq!(m.sync_marker_in_ns(false, |c| c as i64), LiveKind::Other);
        assert_eq!(
            m.sync_marker_in_ns(true, |c| c as i64 * 2 + 1),
            LiveKind::SyncMarker {
                before: 21,
                after: 41
            }
        );
    }
}
