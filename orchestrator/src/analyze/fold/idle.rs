//! Which samples are idle: the CPU was halted (or waiting in a hypervisor) when the
//! sample was taken, i.e. the leaf frame is an architecture/cpuidle halt function.
//!
//! Everything else is busy, also on the idle task (`swapper`): the scheduler work of
//! `schedule_idle`/`finish_task_switch`, `tick_nohz_idle_*`, `call_cpuidle`,
//! `haltpoll` bookkeeping, interrupts and softirqs on an idle CPU (any era's entry
//! names: `sysvec_*`, 3.10's `reschedule_interrupt`, `call_function_single_interrupt`)
//! all run instructions. `poll_idle` and `cpu_idle_poll` spin the CPU in a loop
//! instead of halting it: busy too (that is what polling idle costs).
//! This is the rule the report states.

/// Functions in which a CPU halts (`hlt`, `mwait`, `wfi`, a halt hypercall): a sample
/// with one of these as its leaf was taken on a halted CPU. x86 and arm64 kernels
/// from 3.x to 6.x, Xen/KVM/Hyper-V guests.
const HALT_LEAVES: &[&str] = &[
    "default_idle",
    "native_safe_halt",
    "pv_native_safe_halt",
    "native_halt",
    "xen_safe_halt",
    "safe_halt",
    "arch_safe_halt",
    "acpi_safe_halt",
    "hv_native_safe_halt",
    "kvm_wait",
    "mwait_idle",
    "mwait_idle_with_hints",
    "intel_idle",
    "intel_idle_irq",
    "intel_idle_ibrs",
    "intel_idle_xstate",
    "intel_idle_s2idle",
    "acpi_idle_enter",
    "acpi_idle_enter_bm",
    "acpi_idle_do_entry",
    "acpi_processor_ffh_cstate_enter",
    "io_idle",
    "amd_e400_idle",
    // The interrupt that ends an `mwait`/`hlt` taken with interrupts on is handled
    // inside these; the sample's IP is where the CPU resumed.
    "cpuidle_enter_state",
    "arch_cpu_idle",
    // arm64
    "cpu_do_idle",
    "wait_for_interrupt",
    "psci_idle_enter",
];

/// Hypercalls that block the virtual CPU: idle only when called from a halt function
/// (Xen's `xen_hypercall_sched_op` also yields and polls).
const HALT_HYPERCALLS: &[&str] = &["xen_hypercall_sched_op", "hypercall_page"];

/// Class of a kernel function for the idle rule.
pub(super) const CLASS_HALT: u8 = 1;
pub(super) const CLASS_HYPERCALL: u8 = 2;

pub(super) fn classify(name: &str) -> u8 {
    if HALT_LEAVES.contains(&name) {
        CLASS_HALT
    } else if HALT_HYPERCALLS.contains(&name) {
        CLASS_HYPERCALL
    } else {
        0
    }
}

/// Is a stack (frame classes, leaf first) a halted CPU's?
pub(super) fn is_idle(mut classes: impl Iterator<Item = u8>) -> bool {
    match classes.next() {
        Some(CLASS_HALT) => true,
        Some(CLASS_HYPERCALL) => classes.next() == Some(CLASS_HALT),
        _ => false,
    }
}
