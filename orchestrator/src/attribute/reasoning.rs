//! What a person would say when the mechanisms name nothing, or not enough:
//! - the only knob that differs, with new functions on one side, is tied to them
//!   at stated lower confidence ([`only_difference`]);
//! - a diffuse slowdown (nothing new, nothing much hotter) points at the deltas that
//!   change code generation or the machine's speed ([`diffuse_note`]);
//! - the unexplained remainder is described by family of kernel code, with what
//!   to look at next ([`describe_unexplained`]).

use std::collections::{BTreeMap, BTreeSet};

use super::cause::Cause;
use super::family::Family;
use crate::analyze::functions::SideCounts;
use crate::format::pct;
use crate::model::{ConfigChange, ConfigChangeKind, FunctionShare, KeyKind, RuntimeChange};

/// When exactly one knob differs (config options of both kernels, runtime knobs)
/// and nothing else tied it to code, the functions that run on one side only are
/// its best explanation: said so, never as high confidence.
pub fn only_difference(
    config_delta: &[ConfigChange],
    runtime_delta: &[RuntimeChange],
    causes: &[Cause],
    base: &SideCounts,
    cand: &SideCounts,
) -> Option<Cause> {
    let knobs: Vec<(String, String, String)> = config_delta
        .iter()
        .filter(|c| c.kind != ConfigChangeKind::OneKernelOnly)
        .map(|c| (c.option.clone(), c.baseline.clone(), c.candidate.clone()))
        .chain(
            runtime_delta
                .iter()
                .filter(|r| r.kind == KeyKind::Knob)
                .map(|r| (r.key.clone(), r.baseline.clone(), r.candidate.clone())),
        )
        .collect();
    let [(key, b, c)] = knobs.as_slice() else {
        return None;
    };
    if causes.iter().any(|x| x.keys().any(|k| k == key)) {
        return None;
    }
    let mut names = BTreeSet::new();
    for (here, there) in [(cand, base), (base, cand)] {
        for (f, n) in &here.functions {
            if n.kernel
                && n.inclusive >= 5
                && there.functions.get(f).is_none_or(|x| x.inclusive == 0)
            {
                names.insert(f.clone());
            }
        }
    }
    if names.is_empty() {
        return None;
    }
    let why = format!(
        "{key} ({b} → {c}) is the only configuration or runtime difference captured, and kernel functions run on one side only: tied by elimination, not by name or source (lower confidence; verify with `kdelta verify --cause {key}`)"
    );
    Some(Cause::by_elimination(key, b, c, why, names))
}

/// Config options that change the code the compiler emits everywhere, or the
/// machine's speed: suspects of a slowdown spread over all functions.
const CODEGEN: &[&str] = &[
    "CONFIG_CC_OPTIMIZE_FOR_SIZE",
    "CONFIG_CC_OPTIMIZE_FOR_PERFORMANCE",
    "CONFIG_CC_OPTIMIZE_FOR_PERFORMANCE_O3",
    "CONFIG_INIT_STACK_ALL_ZERO",
    "CONFIG_INIT_STACK_ALL_PATTERN",
    "CONFIG_INIT_STACK_NONE",
    "CONFIG_ZERO_CALL_USED_REGS",
    "CONFIG_FRAME_POINTER",
    "CONFIG_UNWINDER_FRAME_POINTER",
    "CONFIG_UNWINDER_ORC",
    "CONFIG_STACKPROTECTOR",
    "CONFIG_STACKPROTECTOR_STRONG",
    "CONFIG_RETPOLINE",
    "CONFIG_MITIGATION_RETPOLINE",
    "CONFIG_RETHUNK",
    "CONFIG_MITIGATION_RETHUNK",
    "CONFIG_CALL_DEPTH_TRACKING",
    "CONFIG_MITIGATION_CALL_DEPTH_TRACKING",
    "CONFIG_CPU_SRSO",
    "CONFIG_SLS",
    "CONFIG_MITIGATION_SLS",
    "CONFIG_X86_KERNEL_IBT",
    "CONFIG_CFI_CLANG",
    "CONFIG_LTO_CLANG_THIN",
    "CONFIG_LTO_CLANG_FULL",
    "CONFIG_RANDSTRUCT_FULL",
    "CONFIG_GCC_PLUGIN_STACKLEAK",
    "CONFIG_GCC_PLUGIN_STRUCTLEAK_BYREF_ALL",
    "CONFIG_KCOV",
    "CONFIG_GCOV_KERNEL",
    "CONFIG_UBSAN",
    "CONFIG_KCSAN",
    "CONFIG_DEBUG_PREEMPT",
    "CONFIG_TRACE_IRQFLAGS",
    "CONFIG_PREEMPT",
    "CONFIG_PREEMPT_VOLUNTARY",
    "CONFIG_PREEMPT_NONE",
    "CONFIG_PREEMPT_DYNAMIC",
    "CONFIG_PREEMPT_RT",
    "CONFIG_HZ",
    "CONFIG_PAGE_TABLE_ISOLATION",
    "CONFIG_MITIGATION_PAGE_TABLE_ISOLATION",
    "CONFIG_CPU_MITIGATIONS",
    "CONFIG_PARAVIRT_SPINLOCKS",
    "CONFIG_X86_GENERIC",
    "CONFIG_MNATIVE_INTEL",
];

/// Runtime keys (prefixes) that change the machine's speed or the code every path
/// runs through.
const MACHINE: &[&str] = &[
    "mitigations.",
    "cmdline.mitigations",
    "cmdline.spectre",
    "cmdline.retbleed",
    "cmdline.pti",
    "cmdline.nopti",
    "cmdline.preempt",
    "cpufreq",
    "cpufreq_governor",
    "cpuidle.",
    "cpu.smt",
    "sched.preempt",
    "clock.clocksource",
    "virtualization",
    "cpu_model",
    "kernel",
];

/// A slowdown no function explains: nothing new, nothing much hotter. Lists the
/// deltas that would slow everything a little, as suspects to verify.
pub fn diffuse_note(
    worse: bool,
    unexplained_share: f64,
    profile_shift: f64,
    any_listed: bool,
    config_delta: &[ConfigChange],
    runtime_delta: &[RuntimeChange],
    compilers: [Option<&str>; 2],
) -> Option<String> {
    if !worse || any_listed || unexplained_share >= 0.05 || profile_shift >= 0.08 {
        return None;
    }
    let mut suspects: Vec<String> = config_delta
        .iter()
        .filter(|c| CODEGEN.contains(&c.option.as_str()))
        .map(|c| format!("{} ({} → {})", c.option, c.baseline, c.candidate))
        .collect();
    suspects.extend(
        runtime_delta
            .iter()
            .filter(|r| MACHINE.iter().any(|p| r.key.starts_with(p)))
            .map(|r| format!("{} ({} → {})", r.key, r.baseline, r.candidate)),
    );
    if let [Some(b), Some(c)] = compilers {
        if b != c {
            suspects.push(format!("the compiler ({b} → {c})"));
        }
    }
    let list = if suspects.is_empty() {
        "none of the captured deltas is of that kind: compare the CPUs' frequency and thermal state, the hypervisor (steal time), and the compiler flags of the two builds".to_string()
    } else {
        let n = suspects.len();
        suspects.truncate(8);
        format!(
            "suspects that change code generation or the machine's speed: {}{} (verify each with `kdelta verify --cause …`)",
            suspects.join(", "),
            if n > 8 { ", …" } else { "" }
        )
    };
    Some(format!(
        "the slowdown is diffuse: no new kernel functions and the profile moved only {} (unexplained {}), so the same code runs, slower; {list}",
        pct(profile_shift),
        pct(unexplained_share)
    ))
}

/// The unexplained functions by family (None: no known family), largest summed
/// change first, with each family's first three functions.
type Group<'a> = (Option<Family>, f64, Vec<&'a str>);

fn by_family(fns: &[FunctionShare]) -> Vec<Group<'_>> {
    let mut by: BTreeMap<Option<Family>, (f64, Vec<&str>)> = BTreeMap::new();
    for f in fns {
        let e = by.entry(Family::of(&f.symbol)).or_default();
        e.0 += (f.candidate_share - f.baseline_share).abs();
        if e.1.len() < 3 {
            e.1.push(&f.symbol);
        }
    }
    let mut groups: Vec<Group> = by.into_iter().map(|(f, (d, n))| (f, d, n)).collect();
    groups.sort_by(|a, b| b.1.total_cmp(&a.1));
    groups
}

/// The family of code most of the unexplained remainder is in, for the headline.
pub fn dominant_family(fns: &[FunctionShare]) -> Option<&'static str> {
    let groups = by_family(fns);
    let total: f64 = groups.iter().map(|g| g.1).sum();
    groups
        .iter()
        .find_map(|(fam, d, _)| Some((fam.as_ref()?, *d)))
        .filter(|(_, d)| *d >= 0.5 * total && total > 0.0)
        .map(|(fam, _)| fam.name())
}

/// The unexplained remainder by family of kernel code, largest first, with the
/// top functions of each and what to check for the largest: `probe and tracing
/// code 8.1 pts (kprobe_ftrace_handler, …); …: check …`.
pub fn describe_unexplained(
    fns: &[FunctionShare],
    cause_listed: bool,
    versions_differ: bool,
) -> Option<String> {
    let groups = by_family(fns);
    let first = groups.first()?;
    let parts: Vec<String> = groups
        .iter()
        .take(3)
        .map(|(fam, pts, names)| {
            format!(
                "{} {:.1} pts ({})",
                fam.map_or("code of no known family", Family::name),
                pts * 100.0,
                names.join(", ")
            )
        })
        .collect();
    // Beside a listed cause, the rest is often its indirect cost: inline checks that
    // call nothing, cache and TLB pressure. Say so before sending the reader elsewhere.
    let hedge = match (versions_differ, cause_listed) {
        (true, _) => "between two kernel versions this code may simply have been rewritten or renamed; if it was not, ",
        (false, true) => "this may be the indirect cost of the cause above (its inline code, cache and TLB pressure); if it is not, ",
        (false, false) => "",
    };
    let next = match first.0 {
        Some(fam) => format!(
            "; {hedge}no captured difference touches {}: {}",
            fam.name(),
            fam.next_step()
        ),
        None => format!("; {hedge}these functions belong to no family kdelta knows: look them up in the kernel source (`git grep -n '^<name>('`) and at their callers in the flame graph"),
    };
    Some(format!("unexplained: {}{next}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(symbol: &str, b: f64, c: f64) -> FunctionShare {
        FunctionShare {
            symbol: symbol.into(),
            baseline_share: b,
            candidate_share: c,
        }
    }

    #[test]
    fn unexplained_by_family_with_next_step() {
        let s = describe_unexplained(
            &[
                share("kprobe_ftrace_handler", 0.0, 0.05),
                share("trace_call_bpf", 0.0, 0.03),
                share("tcp_sendmsg", 0.10, 0.11),
            ],
            false,
            false,
        )
        .expect("something");
        assert!(s.starts_with("unexplained: probe and tracing code 8.0 pts (kprobe_ftrace_handler, trace_call_bpf); networking 1.0 pts"), "{s}");
        assert!(s.contains("kprobe_events"), "{s}");
        assert!(describe_unexplained(&[], false, false).is_none());
        let hedged =
            describe_unexplained(&[share("tcp_ack", 0.1, 0.2)], true, false).expect("some");
        assert!(
            hedged.contains("indirect cost of the cause above"),
            "{hedged}"
        );
    }

    #[test]
    fn diffuse_lists_codegen_and_machine_deltas() {
        let cfg = [ConfigChange {
            option: "CONFIG_CC_OPTIMIZE_FOR_SIZE".into(),
            baseline: "n".into(),
            candidate: "y".into(),
            kind: ConfigChangeKind::Toggled,
        }];
        let n = diffuse_note(true, 0.01, 0.02, false, &cfg, &[], [None, None]).expect("diffuse");
        assert!(n.contains("CONFIG_CC_OPTIMIZE_FOR_SIZE (n → y)"), "{n}");
        assert!(diffuse_note(true, 0.2, 0.02, false, &cfg, &[], [None, None]).is_none());
        assert!(diffuse_note(false, 0.01, 0.02, false, &cfg, &[], [None, None]).is_none());
    }
}
