//! Names of VM exit reasons: the VMX basic exit reasons as the kernel's
//! `kvm_exit` format prints them, and the `KVM_EXIT_*` reasons of
//! `kvm_userspace_exit`.

/// VMX basic exit reasons (`exit_reason & 0xffff`), as listed by the
/// `kvm_exit` tracepoint of the 6.18 kernel.
const VMX: &[(u32, &str)] = &[
    (0, "EXCEPTION_NMI"),
    (1, "EXTERNAL_INTERRUPT"),
    (2, "TRIPLE_FAULT"),
    (3, "INIT_SIGNAL"),
    (4, "SIPI_SIGNAL"),
    (7, "INTERRUPT_WINDOW"),
    (8, "NMI_WINDOW"),
    (9, "TASK_SWITCH"),
    (10, "CPUID"),
    (12, "HLT"),
    (13, "INVD"),
    (14, "INVLPG"),
    (15, "RDPMC"),
    (16, "RDTSC"),
    (18, "VMCALL"),
    (19, "VMCLEAR"),
    (20, "VMLAUNCH"),
    (21, "VMPTRLD"),
    (22, "VMPTRST"),
    (23, "VMREAD"),
    (24, "VMRESUME"),
    (25, "VMWRITE"),
    (26, "VMOFF"),
    (27, "VMON"),
    (28, "CR_ACCESS"),
    (29, "DR_ACCESS"),
    (30, "IO_INSTRUCTION"),
    (31, "MSR_READ"),
    (32, "MSR_WRITE"),
    (33, "INVALID_STATE"),
    (34, "MSR_LOAD_FAIL"),
    (36, "MWAIT_INSTRUCTION"),
    (37, "MONITOR_TRAP_FLAG"),
    (39, "MONITOR_INSTRUCTION"),
    (40, "PAUSE_INSTRUCTION"),
    (41, "MCE_DURING_VMENTRY"),
    (43, "TPR_BELOW_THRESHOLD"),
    (44, "APIC_ACCESS"),
    (45, "EOI_INDUCED"),
    (46, "GDTR_IDTR"),
    (47, "LDTR_TR"),
    (48, "EPT_VIOLATION"),
    (49, "EPT_MISCONFIG"),
    (50, "INVEPT"),
    (51, "RDTSCP"),
    (52, "PREEMPTION_TIMER"),
    (53, "INVVPID"),
    (54, "WBINVD"),
    (55, "XSETBV"),
    (56, "APIC_WRITE"),
    (57, "RDRAND"),
    (58, "INVPCID"),
    (59, "VMFUNC"),
    (60, "ENCLS"),
    (61, "RDSEED"),
    (62, "PML_FULL"),
    (63, "XSAVES"),
    (64, "XRSTORS"),
    (67, "UMWAIT"),
    (68, "TPAUSE"),
    (74, "BUS_LOCK"),
    (75, "NOTIFY"),
    (77, "TDCALL"),
    (84, "MSR_READ_IMM"),
    (85, "MSR_WRITE_IMM"),
];

/// `KVM_EXIT_*` reasons (include/uapi/linux/kvm.h), indexed by number.
const USERSPACE: &[&str] = &[
    "UNKNOWN",
    "EXCEPTION",
    "IO",
    "HYPERCALL",
    "DEBUG",
    "HLT",
    "MMIO",
    "IRQ_WINDOW_OPEN",
    "SHUTDOWN",
    "FAIL_ENTRY",
    "INTR",
    "SET_TPR",
    "TPR_ACCESS",
    "S390_SIEIC",
    "S390_RESET",
    "DCR",
    "NMI",
    "INTERNAL_ERROR",
    "OSI",
    "PAPR_HCALL",
    "S390_UCONTROL",
    "WATCHDOG",
    "S390_TSCH",
    "EPR",
    "SYSTEM_EVENT",
    "S390_STSI",
    "IOAPIC_EOI",
    "HYPERV",
    "ARM_NISV",
    "X86_RDMSR",
    "X86_WRMSR",
];

/// The name of an in-kernel exit: the VMX table for `isa` 1 (or unknown,
/// since Intel hosts are the common case), a numbered SVM code for `isa` 2.
pub fn exit_name(isa: Option<u32>, reason: u32) -> String {
    if isa == Some(2) {
        return format!("SVM_0x{reason:x}");
    }
    let basic = reason & 0xffff;
    match VMX.binary_search_by_key(&basic, |&(n, _)| n) {
        Ok(i) => VMX[i].1.to_string(),
        Err(_) => format!("VMX_{basic}"),
    }
}

/// The name of a `kvm_userspace_exit` reason (`KVM_EXIT_` dropped).
pub fn userspace_exit_name(reason: u32, errno: i32) -> String {
    if errno < 0 {
        return if errno == -4 {
            "restart".into()
        } else {
            format!("error {}", -errno)
        };
    }
    USERSPACE
        .get(reason as usize)
        .map_or_else(|| format!("KVM_EXIT_{reason}"), |s| s.to_string())
}

/// The VMX reasons this table knows, for tests against a kernel's format.
pub fn vmx_table() -> &'static [(u32, &'static str)] {
    VMX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmx_table_is_sorted_and_named() {
        assert!(VMX.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(exit_name(Some(1), 12), "HLT");
        assert_eq!(exit_name(None, 0x8000_001e), "IO_INSTRUCTION");
        assert_eq!(exit_name(Some(1), 5), "VMX_5");
        assert_eq!(exit_name(Some(2), 0x7b), "SVM_0x7b");
        assert_eq!(userspace_exit_name(2, 0), "IO");
        assert_eq!(userspace_exit_name(2, -4), "restart");
        assert_eq!(userspace_exit_name(99, 0), "KVM_EXIT_99");
    }
}
