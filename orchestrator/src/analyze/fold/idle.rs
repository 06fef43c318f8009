//! Which samples are idle: the idle loop's functions, unless an interrupt or softirq
//! entry sits above them (work done on top of the idle loop is busy time).

/// Classes of functions that decide whether a sample is idle.
pub(super) const CLASS_IDLE: u8 = 1;
pub(super) const CLASS_IRQ: u8 = 2;

/// Functions of the idle loop, as seen in x86/arm64 kernels from 3.x to 6.x and in
/// Xen/KVM/Hyper-V guests.
const IDLE_FUNCS: &[&str] = &[
    "cpu_idle",
    "cpu_idle_loop",
    "do_idle",
    "cpu_startup_entry",
    "cpuidle_idle_call",
    "default_idle_call",
    "cpuidle_enter",
    "cpuidle_enter_state",
    "arch_cpu_idle",
    "default_idle",
    "native_safe_halt",
    "pv_native_safe_halt",
    "xen_safe_halt",
    "safe_halt",
    "mwait_idle",
    "mwait_idle_with_hints",
    "intel_idle",
    "intel_idle_irq",
    "acpi_idle_enter",
    "acpi_idle_do_entry",
    "acpi_safe_halt",
    "poll_idle",
    "cpu_idle_poll",
    "amd_e400_idle",
    "hv_native_safe_halt",
    "cpu_do_idle",
    "psci_idle_enter",
    "arch_cpu_idle_enter",
    "wait_for_interrupt",
];

/// Interrupt or softirq entry: work done on top of the idle loop is busy time.
fn is_irq_entry(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "asm_sysvec_",
        "sysvec_",
        "__sysvec_",
        "asm_common_interrupt",
        "common_interrupt",
        "do_IRQ",
        "irq_exit",
        "__irq_exit_rcu",
        "__do_softirq",
        "handle_softirqs",
        "do_softirq",
        "smp_apic_timer_interrupt",
        "apic_timer_interrupt",
        "ret_from_intr",
        "xen_evtchn_do_upcall",
        "xen_do_hypervisor_callback",
        "el1_interrupt",
        "gic_handle_irq",
        "handle_irq_event",
        "net_rx_action",
        "asm_exc_",
        "exc_",
        "nmi",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

pub(super) fn classify(name: &str) -> u8 {
    if IDLE_FUNCS.contains(&name) {
        CLASS_IDLE
    } else if is_irq_entry(name) {
        CLASS_IRQ
    } else {
        0
    }
}
