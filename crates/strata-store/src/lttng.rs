//! How LTTng names and shapes the kernel events that ftrace also has.
//!
//! The facts come from lttng-modules' `include/instrumentation/events/*.h`
//! and from the metadata of real LTTng 2.8 kernel traces. Analyses written
//! for LTTng (Trace Compass, lttng-analyses) look events and fields up by
//! these names, so an ftrace event that LTTng also records is renamed and
//! reshaped to match; every other event keeps its ftrace name and fields.

/// How one LTTng field is produced from the ftrace record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv {
    /// The ftrace field's own type, mapped generically.
    Same,
    /// A signed 32-bit scheduler priority, written as kernel prio - 100
    /// (LTTng subtracts `MAX_RT_PRIO`).
    Prio,
    /// A `char[16]` text array (task names), whatever the ftrace layout
    /// (`char[16]` or a `__data_loc` string on newer kernels).
    Comm,
    /// A NUL-terminated string.
    Str,
    /// An integer of this many bits and signedness, decimal.
    Int(u8, bool),
    /// An unsigned integer of this many bits, printed in hex.
    Hex(u8),
    /// The block layer's `rwbs` text (`"WS"`) as LTTng's bit mask (u32).
    Rwbs,
    /// The `common_pid` of the record, as a signed 32-bit `tid`.
    CommonPid,
}

/// One field of an LTTng event and where its value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldMap {
    /// The LTTng field name.
    pub name: &'static str,
    /// The ftrace field it is read from (ignored for [`Conv::CommonPid`]).
    pub from: &'static str,
    /// How it is converted.
    pub conv: Conv,
}

/// One ftrace event that LTTng also records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventMap {
    /// The ftrace group (`sched`).
    pub system: &'static str,
    /// The ftrace event name (`sched_switch`).
    pub event: &'static str,
    /// The LTTng event name.
    pub lttng: &'static str,
    /// LTTng's fields, in LTTng's order. ftrace fields not named here are
    /// appended after them with their ftrace names, so no information is
    /// dropped; an empty list keeps every ftrace field under its own name.
    pub fields: &'static [FieldMap],
}

const fn f(name: &'static str, from: &'static str, conv: Conv) -> FieldMap {
    FieldMap { name, from, conv }
}

const I32: Conv = Conv::Int(32, true);
const U32: Conv = Conv::Int(32, false);
const I64: Conv = Conv::Int(64, true);
const U64: Conv = Conv::Int(64, false);

const WAKEUP: &[FieldMap] = &[
    f("comm", "comm", Conv::Comm),
    f("tid", "pid", I32),
    f("prio", "prio", Conv::Prio),
    f("target_cpu", "target_cpu", I32),
];
const PROCESS: &[FieldMap] = &[
    f("comm", "comm", Conv::Comm),
    f("tid", "pid", I32),
    f("prio", "prio", Conv::Prio),
];
const STAT: &[FieldMap] = &[
    f("comm", "comm", Conv::Comm),
    f("tid", "pid", I32),
    f("delay", "delay", U64),
];
const SOFTIRQ: &[FieldMap] = &[f("vec", "vec", U32)];
const POWER_CPU: &[FieldMap] = &[f("state", "state", U32), f("cpu_id", "cpu_id", U32)];
const PAGE_FAULT: &[FieldMap] = &[
    f("address", "address", Conv::Hex(64)),
    f("ip", "ip", Conv::Hex(64)),
    f("error_code", "error_code", Conv::Hex(64)),
];
const BLOCK_RQ: &[FieldMap] = &[
    f("dev", "dev", U32),
    f("sector", "sector", U64),
    f("nr_sector", "nr_sector", U32),
    f("bytes", "bytes", U32),
    f("tid", "", Conv::CommonPid),
    f("rwbs", "rwbs", Conv::Rwbs),
    f("comm", "comm", Conv::Comm),
];
const BLOCK_BIO: &[FieldMap] = &[
    f("dev", "dev", U32),
    f("sector", "sector", U64),
    f("nr_sector", "nr_sector", U32),
    f("tid", "", Conv::CommonPid),
    f("rwbs", "rwbs", Conv::Rwbs),
    f("comm", "comm", Conv::Comm),
];
const NET_DEV: &[FieldMap] = &[
    f("skbaddr", "skbaddr", Conv::Hex(64)),
    f("len", "len", U32),
    f("name", "name", Conv::Str),
];

/// Every ftrace event Strata renames or reshapes to match LTTng.
pub const EVENTS: &[EventMap] = &[
    // sched
    EventMap {
        system: "sched",
        event: "sched_switch",
        lttng: "sched_switch",
        fields: &[
            f("prev_comm", "prev_comm", Conv::Comm),
            f("prev_tid", "prev_pid", I32),
            f("prev_prio", "prev_prio", Conv::Prio),
            f("prev_state", "prev_state", I64),
            f("next_comm", "next_comm", Conv::Comm),
            f("next_tid", "next_pid", I32),
            f("next_prio", "next_prio", Conv::Prio),
        ],
    },
    EventMap {
        system: "sched",
        event: "sched_wakeup",
        lttng: "sched_wakeup",
        fields: WAKEUP,
    },
    EventMap {
        system: "sched",
        event: "sched_waking",
        lttng: "sched_waking",
        fields: WAKEUP,
    },
    EventMap {
        system: "sched",
        event: "sched_wakeup_new",
        lttng: "sched_wakeup_new",
        fields: WAKEUP,
    },
    EventMap {
        system: "sched",
        event: "sched_migrate_task",
        lttng: "sched_migrate_task",
        fields: &[
            f("comm", "comm", Conv::Comm),
            f("tid", "pid", I32),
            f("prio", "prio", Conv::Prio),
            f("orig_cpu", "orig_cpu", I32),
            f("dest_cpu", "dest_cpu", I32),
        ],
    },
    EventMap {
        system: "sched",
        event: "sched_process_free",
        lttng: "sched_process_free",
        fields: PROCESS,
    },
    EventMap {
        system: "sched",
        event: "sched_process_exit",
        lttng: "sched_process_exit",
        fields: &[
            f("comm", "comm", Conv::Comm),
            f("tid", "pid", I32),
            f("prio", "prio", Conv::Prio),
            f("group_dead", "group_dead", Conv::Int(8, false)),
        ],
    },
    EventMap {
        system: "sched",
        event: "sched_wait_task",
        lttng: "sched_wait_task",
        fields: PROCESS,
    },
    EventMap {
        system: "sched",
        event: "sched_process_wait",
        lttng: "sched_process_wait",
        fields: PROCESS,
    },
    EventMap {
        system: "sched",
        event: "sched_process_fork",
        lttng: "sched_process_fork",
        // ftrace has the tids only; LTTng's `*_pid` fields are the thread
        // group ids, which ftrace does not record, so they repeat the tids.
        fields: &[
            f("parent_comm", "parent_comm", Conv::Comm),
            f("parent_tid", "parent_pid", I32),
            f("parent_pid", "parent_pid", I32),
            f("child_comm", "child_comm", Conv::Comm),
            f("child_tid", "child_pid", I32),
            f("child_pid", "child_pid", I32),
        ],
    },
    EventMap {
        system: "sched",
        event: "sched_process_exec",
        lttng: "sched_process_exec",
        fields: &[
            f("filename", "filename", Conv::Str),
            f("tid", "pid", I32),
            f("old_tid", "old_pid", I32),
        ],
    },
    EventMap {
        system: "sched",
        event: "sched_stat_wait",
        lttng: "sched_stat_wait",
        fields: STAT,
    },
    EventMap {
        system: "sched",
        event: "sched_stat_sleep",
        lttng: "sched_stat_sleep",
        fields: STAT,
    },
    EventMap {
        system: "sched",
        event: "sched_stat_iowait",
        lttng: "sched_stat_iowait",
        fields: STAT,
    },
    EventMap {
        system: "sched",
        event: "sched_stat_blocked",
        lttng: "sched_stat_blocked",
        fields: STAT,
    },
    EventMap {
        system: "sched",
        event: "sched_stat_runtime",
        lttng: "sched_stat_runtime",
        fields: &[
            f("comm", "comm", Conv::Comm),
            f("tid", "pid", I32),
            f("runtime", "runtime", U64),
        ],
    },
    EventMap {
        system: "sched",
        event: "sched_pi_setprio",
        lttng: "sched_pi_setprio",
        fields: &[
            f("comm", "comm", Conv::Comm),
            f("tid", "pid", I32),
            f("oldprio", "oldprio", Conv::Prio),
            f("newprio", "newprio", Conv::Prio),
        ],
    },
    EventMap {
        system: "sched",
        event: "sched_kthread_stop",
        lttng: "sched_kthread_stop",
        fields: &[f("comm", "comm", Conv::Comm), f("tid", "pid", I32)],
    },
    // irq
    EventMap {
        system: "irq",
        event: "irq_handler_entry",
        lttng: "irq_handler_entry",
        fields: &[f("irq", "irq", I32), f("name", "name", Conv::Str)],
    },
    EventMap {
        system: "irq",
        event: "irq_handler_exit",
        lttng: "irq_handler_exit",
        fields: &[f("irq", "irq", I32), f("ret", "ret", I32)],
    },
    EventMap {
        system: "irq",
        event: "softirq_entry",
        lttng: "irq_softirq_entry",
        fields: SOFTIRQ,
    },
    EventMap {
        system: "irq",
        event: "softirq_exit",
        lttng: "irq_softirq_exit",
        fields: SOFTIRQ,
    },
    EventMap {
        system: "irq",
        event: "softirq_raise",
        lttng: "irq_softirq_raise",
        fields: SOFTIRQ,
    },
    // power
    EventMap {
        system: "power",
        event: "cpu_idle",
        lttng: "power_cpu_idle",
        fields: POWER_CPU,
    },
    EventMap {
        system: "power",
        event: "cpu_frequency",
        lttng: "power_cpu_frequency",
        fields: POWER_CPU,
    },
    // memory
    EventMap {
        system: "exceptions",
        event: "page_fault_user",
        lttng: "x86_exceptions_page_fault_user",
        fields: PAGE_FAULT,
    },
    EventMap {
        system: "exceptions",
        event: "page_fault_kernel",
        lttng: "x86_exceptions_page_fault_kernel",
        fields: PAGE_FAULT,
    },
    EventMap {
        system: "kmem",
        event: "mm_page_alloc",
        lttng: "kmem_mm_page_alloc",
        fields: &[
            f("pfn", "pfn", U64),
            f("order", "order", U32),
            f("gfp_flags", "gfp_flags", U64),
            f("migratetype", "migratetype", I32),
        ],
    },
    EventMap {
        system: "kmem",
        event: "mm_page_free",
        lttng: "kmem_mm_page_free",
        fields: &[f("pfn", "pfn", U64), f("order", "order", U32)],
    },
    EventMap {
        system: "kmem",
        event: "mm_page_free_batched",
        lttng: "kmem_mm_page_free_batched",
        fields: &[],
    },
    EventMap {
        system: "kmem",
        event: "mm_page_alloc_zone_locked",
        lttng: "kmem_mm_page_alloc_zone_locked",
        fields: &[],
    },
    EventMap {
        system: "kmem",
        event: "mm_page_pcpu_drain",
        lttng: "kmem_mm_page_pcpu_drain",
        fields: &[],
    },
    EventMap {
        system: "kmem",
        event: "mm_page_alloc_extfrag",
        lttng: "kmem_mm_page_alloc_extfrag",
        fields: &[],
    },
    EventMap {
        system: "kmem",
        event: "kmalloc",
        lttng: "kmem_kmalloc",
        fields: &[],
    },
    EventMap {
        system: "kmem",
        event: "kfree",
        lttng: "kmem_kfree",
        fields: &[],
    },
    // kvm (x86)
    EventMap {
        system: "kvm",
        event: "kvm_entry",
        lttng: "kvm_x86_entry",
        fields: &[f("vcpu_id", "vcpu_id", U32)],
    },
    EventMap {
        system: "kvm",
        event: "kvm_exit",
        lttng: "kvm_x86_exit",
        fields: &[
            f("exit_reason", "exit_reason", U32),
            f("guest_rip", "guest_rip", U64),
            f("isa", "isa", U32),
            f("info1", "info1", U64),
            f("info2", "info2", U64),
            f("intr_info", "intr_info", U32),
            f("error_code", "error_code", U32),
            f("vcpu_id", "vcpu_id", U32),
        ],
    },
    // block
    EventMap {
        system: "block",
        event: "block_rq_issue",
        lttng: "block_rq_issue",
        fields: BLOCK_RQ,
    },
    EventMap {
        system: "block",
        event: "block_rq_insert",
        lttng: "block_rq_insert",
        fields: BLOCK_RQ,
    },
    EventMap {
        system: "block",
        event: "block_rq_merge",
        lttng: "block_rq_merge",
        fields: BLOCK_RQ,
    },
    EventMap {
        system: "block",
        event: "block_rq_complete",
        lttng: "block_rq_complete",
        fields: &[
            f("dev", "dev", U32),
            f("sector", "sector", U64),
            f("nr_sector", "nr_sector", U32),
            f("error", "error", I32),
            f("rwbs", "rwbs", Conv::Rwbs),
        ],
    },
    EventMap {
        system: "block",
        event: "block_rq_requeue",
        lttng: "block_rq_requeue",
        fields: &[
            f("dev", "dev", U32),
            f("sector", "sector", U64),
            f("nr_sector", "nr_sector", U32),
            f("rwbs", "rwbs", Conv::Rwbs),
        ],
    },
    EventMap {
        system: "block",
        event: "block_bio_queue",
        lttng: "block_bio_queue",
        fields: BLOCK_BIO,
    },
    EventMap {
        system: "block",
        event: "block_bio_backmerge",
        lttng: "block_bio_backmerge",
        fields: BLOCK_BIO,
    },
    EventMap {
        system: "block",
        event: "block_bio_frontmerge",
        lttng: "block_bio_frontmerge",
        fields: BLOCK_BIO,
    },
    EventMap {
        system: "block",
        event: "block_bio_bounce",
        lttng: "block_bio_bounce",
        fields: BLOCK_BIO,
    },
    EventMap {
        system: "block",
        event: "block_bio_complete",
        lttng: "block_bio_complete",
        fields: &[
            f("dev", "dev", U32),
            f("sector", "sector", U64),
            f("nr_sector", "nr_sector", U32),
            f("error", "error", I32),
            f("rwbs", "rwbs", Conv::Rwbs),
        ],
    },
    EventMap {
        system: "block",
        event: "block_bio_remap",
        lttng: "block_bio_remap",
        fields: &[
            f("dev", "dev", U32),
            f("sector", "sector", U64),
            f("nr_sector", "nr_sector", U32),
            f("old_dev", "old_dev", U32),
            f("old_sector", "old_sector", U64),
            f("rwbs", "rwbs", Conv::Rwbs),
        ],
    },
    EventMap {
        system: "block",
        event: "block_rq_remap",
        lttng: "block_rq_remap",
        fields: &[
            f("dev", "dev", U32),
            f("sector", "sector", U64),
            f("nr_sector", "nr_sector", U32),
            f("old_dev", "old_dev", U32),
            f("old_sector", "old_sector", U64),
            f("rwbs", "rwbs", Conv::Rwbs),
        ],
    },
    // net
    EventMap {
        system: "net",
        event: "net_dev_xmit",
        lttng: "net_dev_xmit",
        fields: &[
            f("skbaddr", "skbaddr", Conv::Hex(64)),
            f("rc", "rc", I32),
            f("len", "len", U32),
            f("name", "name", Conv::Str),
        ],
    },
    EventMap {
        system: "net",
        event: "net_dev_queue",
        lttng: "net_dev_queue",
        fields: NET_DEV,
    },
    EventMap {
        system: "net",
        event: "netif_receive_skb",
        lttng: "netif_receive_skb",
        fields: NET_DEV,
    },
    EventMap {
        system: "net",
        event: "netif_rx",
        lttng: "netif_rx",
        fields: NET_DEV,
    },
];

/// Whole ftrace groups LTTng records under a prefix, with ftrace's fields:
/// `(group, ftrace name prefix to drop, LTTng prefix to add)`.
pub const RENAMED_GROUPS: &[(&str, &str, &str)] = &[
    // kvm_pio -> kvm_x86_pio, kvm_cpuid -> kvm_x86_cpuid, ... (arch/x86/kvm/trace.h)
    ("kvm", "kvm_", "kvm_x86_"),
    // local_timer_entry -> x86_irq_vectors_local_timer_entry, ...
    ("irq_vectors", "", "x86_irq_vectors_"),
    // hrtimer_start -> timer_hrtimer_start, ...
    ("timer", "hrtimer_", "timer_hrtimer_"),
];

/// The kvm events that live in virt/kvm (not arch/x86) and keep their name.
const KVM_GENERIC: &[&str] = &[
    "kvm_userspace_exit",
    "kvm_set_irq",
    "kvm_ioapic_set_irq",
    "kvm_msi_set_irq",
    "kvm_ack_irq",
    "kvm_mmio",
    "kvm_fpu",
    "kvm_age_page",
    "kvm_try_async_get_page",
    "kvm_async_pf_doublefault",
    "kvm_async_pf_not_present",
    "kvm_async_pf_ready",
    "kvm_async_pf_completed",
    "kvm_halt_poll_ns",
    "kvm_dirty_ring_push",
    "kvm_dirty_ring_reset",
    "kvm_dirty_ring_exit",
    "kvm_unmap_hva_range",
    "kvm_set_spte_hva",
    "kvm_age_hva",
    "kvm_test_age_hva",
    "kvm_vcpu_wakeup",
    "kvm_set_guest_debug",
    "kvm_iocsr",
];

/// The LTTng name and field rules for ftrace event `system:event`, if LTTng
/// records it under another name or shape.
pub fn lookup(system: &str, event: &str) -> Option<(String, &'static [FieldMap])> {
    if let Some(m) = EVENTS
        .iter()
        .find(|m| m.system == system && m.event == event)
    {
        return Some((m.lttng.to_string(), m.fields));
    }
    if system == "kvm" && KVM_GENERIC.contains(&event) {
        return None;
    }
    if system == "kvm" && event == "vcpu_match_mmio" {
        return Some(("kvm_x86_vcpu_match_mmio".into(), &[]));
    }
    RENAMED_GROUPS
        .iter()
        .find(|(g, drop, _)| *g == system && event.starts_with(drop))
        .map(|(_, drop, add)| (format!("{add}{}", &event[drop.len()..]), &[][..]))
}

/// LTTng's `rwbs` bit mask (lttng-modules `block.h`) from the block layer's
/// text form: the first letter is the operation (`F` preflush first, then
/// `W`/`R`/`D`/`E`/`N`), later letters are modifiers (`F` FUA, `A`
/// readahead, `S` sync, `M` metadata).
pub fn rwbs_mask(text: &[u8]) -> u32 {
    const WRITE: u32 = 1 << 0;
    const DISCARD: u32 = 1 << 1;
    const READ: u32 = 1 << 2;
    const RAHEAD: u32 = 1 << 3;
    const SYNC: u32 = 1 << 5;
    const META: u32 = 1 << 6;
    const SECURE: u32 = 1 << 7;
    const FUA: u32 = 1 << 9;
    const PREFLUSH: u32 = 1 << 10;
    let mut mask = 0;
    let mut seen_op = false;
    for &c in text.iter().take_while(|&&c| c != 0) {
        match (c, seen_op) {
            (b'F', false) => mask |= PREFLUSH,
            (b'W', _) => {
                mask |= WRITE;
                seen_op = true;
            }
            (b'R', _) => {
                mask |= READ;
                seen_op = true;
            }
            (b'D', _) => {
                mask |= DISCARD;
                seen_op = true;
            }
            (b'E', _) => {
                mask |= DISCARD | SECURE;
                seen_op = true;
            }
            (b'N', _) => seen_op = true,
            (b'F', true) => mask |= FUA,
            (b'A', _) => mask |= RAHEAD,
            (b'S', _) => mask |= SYNC,
            (b'M', _) => mask |= META,
            _ => {}
        }
    }
    mask
}

/// LTTng's statedump enumerations (lttng-modules `lttng-statedump-impl.c`).
pub mod statedump_values {
    /// `type`: a thread with user memory.
    pub const USER_THREAD: i32 = 0;
    /// `type`: a kernel thread.
    pub const KERNEL_THREAD: i32 = 1;
    /// `mode`: LTTng always writes "unknown".
    pub const MODE_UNKNOWN: i32 = 5;
    /// `submode`: LTTng always writes "none".
    pub const SUBMODE_NONE: i32 = 0;
    /// `status`: none of the others.
    pub const UNNAMED: i32 = 0;
    /// `status`: runnable, not yet run since fork.
    pub const WAIT_FORK: i32 = 1;
    /// `status`: runnable (LTTng marks every runnable task so; the viewer
    /// finds out which one was running).
    pub const WAIT_CPU: i32 = 2;
    /// `status`: zombie.
    pub const ZOMBIE: i32 = 4;
    /// `status`: blocked (interruptible or not).
    pub const WAIT: i32 = 5;
    /// `status`: dead.
    pub const DEAD: i32 = 7;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(lookup("sched", "sched_switch").unwrap().0, "sched_switch");
        assert_eq!(
            lookup("irq", "softirq_entry").unwrap().0,
            "irq_softirq_entry"
        );
        assert_eq!(lookup("kvm", "kvm_entry").unwrap().0, "kvm_x86_entry");
        assert_eq!(lookup("kvm", "kvm_pio").unwrap().0, "kvm_x86_pio");
        assert!(lookup("kvm", "kvm_userspace_exit").is_none());
        assert_eq!(
            lookup("timer", "hrtimer_start").unwrap().0,
            "timer_hrtimer_start"
        );
        assert!(lookup("timer", "timer_start").is_none());
        assert_eq!(
            lookup("irq_vectors", "local_timer_entry").unwrap().0,
            "x86_irq_vectors_local_timer_entry"
        );
        assert_eq!(
            lookup("kmem", "mm_page_alloc").unwrap().0,
            "kmem_mm_page_alloc"
        );
        assert_eq!(lookup("power", "cpu_idle").unwrap().0, "power_cpu_idle");
        assert!(lookup("workqueue", "workqueue_execute_start").is_none());
    }

    #[test]
    fn rwbs() {
        assert_eq!(rwbs_mask(b"W\0\0"), 1);
        assert_eq!(rwbs_mask(b"WS"), 1 | 32);
        assert_eq!(rwbs_mask(b"RA"), 4 | 8);
        assert_eq!(rwbs_mask(b"FWFS"), 1024 | 1 | 512 | 32);
        assert_eq!(rwbs_mask(b"DS"), 2 | 32);
        assert_eq!(rwbs_mask(b"N"), 0);
        // Even means read for lttng-analyses; odd means write.
        assert_eq!(rwbs_mask(b"R") % 2, 0);
    }
}
