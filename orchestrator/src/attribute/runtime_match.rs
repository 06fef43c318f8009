//! The name mechanism for runtime deltas: a boot parameter, a sysctl, a loaded
//! module or any other fact that differs, tied to the kernel functions named after
//! its key (`cmdline.slub_debug`, `modules.nf_tables`) or after its *value* on the
//! side where those functions run (`sysctl.net.ipv4.tcp_congestion_control = bbr` →
//! `bbr_main`; `clock.clocksource = hpet` → `read_hpet`; `block.vda.scheduler = bfq`
//! → `bfq_dispatch_request`). No knowledge-base entry is needed: a value selects an
//! algorithm, a driver or a device, and the kernel names its code after it.
//!
//! A function counts when it runs on one side and not on the other, or when it is
//! far hotter on one side (a quarter of a percent of busy time and four times the
//! other side's share): the same rule for keys and values, applied to the side
//! whose value names it, so the direction is right by construction.

use std::collections::BTreeSet;

use super::cause::{option_tokens, seen_only_on, Cause};
use crate::analyze::functions::SideCounts;
use crate::model::{KeyKind, RuntimeChange};

/// Words that name no code: states, amounts, and the generic parts of values.
const STOP: &[&str] = &[
    "on",
    "off",
    "yes",
    "no",
    "none",
    "always",
    "never",
    "madvise",
    "default",
    "defer",
    "full",
    "auto",
    "enabled",
    "disabled",
    "enable",
    "disable",
    "running",
    "stopped",
    "loaded",
    "true",
    "false",
    "absent",
    "max",
    "min",
    "within_size",
    "advise",
    "deny",
    "force",
    "mode",
    "kernel",
    "user",
    "all",
    "any",
    "not",
    "and",
    "the",
    "normal",
    "root",
    "integrity",
    "confidentiality",
    "performance",
    "powersave",
    "ondemand",
    "conservative",
    "userspace",
    "voluntary",
    "dynamic",
    "cpu",
    "cpus",
    "net",
    "sys",
    "dev",
    "tcp",
    "udp",
    "irq",
    "mem",
    "size",
    "type",
    "level",
];

/// Runtime deltas no knowledge-base cause covers, tied to functions by name.
pub fn runtime_name_causes(
    delta: &[RuntimeChange],
    covered: &BTreeSet<String>,
    base: &SideCounts,
    cand: &SideCounts,
) -> Vec<Cause> {
    let mut out = Vec::new();
    for r in delta
        .iter()
        .filter(|r| r.kind == KeyKind::Knob && !covered.contains(&r.key))
    {
        let keys = key_tokens(&r.key);
        let mut names = BTreeSet::new();
        let mut by_value = false;
        for (side, other, value) in [(cand, base, &r.candidate), (base, cand, &r.baseline)] {
            let values = value_tokens(value);
            for f in side.functions.keys().filter(|f| one_sided(f, side, other)) {
                let lf = f.to_ascii_lowercase();
                if keys.iter().any(|t| lf.contains(t.as_str())) {
                    names.insert(f.clone());
                } else if values.iter().any(|t| names_token(&lf, t)) {
                    names.insert(f.clone());
                    by_value = true;
                }
            }
        }
        if names.is_empty() {
            continue;
        }
        let why = if by_value {
            format!(
                "functions named after the value of {} ({} → {}) run on the side that has it (no knowledge-base entry; matched by name)",
                r.key, r.baseline, r.candidate
            )
        } else {
            format!(
                "functions named after {} run on one side only (no knowledge-base entry; matched by name)",
                r.key
            )
        };
        out.push(Cause::for_runtime(r, why, names));
    }
    out
}

/// A function that ran on `here` and not on `there`, or far more there.
fn one_sided(f: &str, here: &SideCounts, there: &SideCounts) -> bool {
    let Some(h) = here.functions.get(f) else {
        return false;
    };
    if seen_only_on(f, here, there) {
        return true;
    }
    let t = there.functions.get(f).map_or(0, |x| x.inclusive);
    let share = |x: u64, busy: u64| {
        if busy == 0 {
            0.0
        } else {
            x as f64 / busy as f64
        }
    };
    let (sh, st) = (share(h.inclusive, here.busy), share(t, there.busy));
    h.inclusive >= 20 && sh >= 0.0025 && sh >= 4.0 * st
}

/// Tokens of the key that name code: a boot parameter's name (and a module
/// parameter's module), a sysctl's last component, a module's name. Other facts'
/// keys (`clock.clocksource`, `cpuidle.governor`) name a category, not code.
fn key_tokens(key: &str) -> Vec<String> {
    let mut parts = key.split('.');
    let group = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    let named: Vec<&str> = match group {
        "cmdline" | "modules" | "livepatch" => rest,
        "sysctl" => rest.last().copied().into_iter().collect(),
        _ => vec![],
    };
    named
        .iter()
        .flat_map(|seg| option_tokens(&seg.replace('-', "_")))
        .filter(|t| !STOP.contains(&t.as_str()))
        .collect()
}

/// Words of a value that may name code: `mq-deadline` → `deadline`; `acpi_pm` →
/// `acpi_pm`; numbers, masks and states dropped.
fn value_tokens(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in value
        .to_ascii_lowercase()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.len() >= 3)
    {
        if word.chars().all(|c| c.is_ascii_hexdigit()) || STOP.contains(&word) {
            continue;
        }
        out.push(word.to_string());
        // `mq_deadline` also as its last part, the name its functions carry.
        if let Some((_, last)) = word.rsplit_once('_') {
            if last.len() >= 4 && !STOP.contains(&last) {
                out.push(last.to_string());
            }
        }
    }
    out
}

/// Whether a (lower-case) function name carries a token as a word: the name itself,
/// a `_`-separated part, or (tokens of 4+ letters) the start of a part
/// (`cubic` in `cubictcp_acked`). Three-letter tokens only lead (`bbr_main`).
fn names_token(f: &str, t: &str) -> bool {
    if t.len() < 4 {
        return f == t || f.starts_with(&format!("{t}_"));
    }
    let f = f.trim_start_matches('_');
    f.match_indices(t)
        .any(|(i, _)| i == 0 || f.as_bytes().get(i - 1) == Some(&b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::functions::tests::side;

    fn change(key: &str, b: &str, c: &str) -> RuntimeChange {
        RuntimeChange {
            key: key.into(),
            baseline: b.into(),
            candidate: c.into(),
            kind: KeyKind::Knob,
        }
    }

    #[test]
    fn a_value_names_the_code_it_selects_on_its_own_side() {
        let base = side(&[("tcp_sendmsg", 500), ("cubictcp_acked", 40)], 1000);
        let cand = side(
            &[
                ("tcp_sendmsg", 500),
                ("bbr_main", 90),
                ("bbr_update_model", 50),
            ],
            1000,
        );
        let delta = [change(
            "sysctl.net.ipv4.tcp_congestion_control",
            "cubic",
            "bbr",
        )];
        let causes = runtime_name_causes(&delta, &BTreeSet::new(), &base, &cand);
        assert_eq!(causes.len(), 1);
        let c = &causes[0];
        assert!(c.matches_name("bbr_main") && c.matches_name("bbr_update_model"));
        // cubic's functions ran on the baseline, whose value names them.
        assert!(c.matches_name("cubictcp_acked"));
        assert!(!c.matches_name("tcp_sendmsg"));
        assert!(c
            .why
            .contains("value of sysctl.net.ipv4.tcp_congestion_control"));
    }

    #[test]
    fn a_boot_parameter_names_its_functions() {
        let base = side(&[("do_syscall_64", 800)], 1000);
        let cand = side(
            &[("do_syscall_64", 800), ("page_table_check_set", 120)],
            1000,
        );
        let delta = [change("cmdline.page_table_check", "(absent)", "on")];
        let causes = runtime_name_causes(&delta, &BTreeSet::new(), &base, &cand);
        assert_eq!(causes.len(), 1);
        assert!(causes[0].matches_name("page_table_check_set"));
        // Covered by the knowledge base: left to it.
        let covered: BTreeSet<String> = ["cmdline.page_table_check".to_string()].into();
        assert!(runtime_name_causes(&delta, &covered, &base, &cand).is_empty());
    }

    #[test]
    fn tokens_are_words_not_fragments() {
        assert!(names_token("read_hpet", "hpet"));
        assert!(names_token("cubictcp_acked", "cubic"));
        assert!(names_token("bbr_main", "bbr"));
        assert!(!names_token("tcp_bbr_helper", "bbr"), "3 letters only lead");
        assert!(!names_token("throttle_hpetx", "tle_h"));
        assert!(!names_token("lookup_slow", "kup_s"));
        assert_eq!(
            value_tokens("none [mq-deadline] kyber"),
            vec!["deadline", "kyber"]
        );
        assert_eq!(value_tokens("acpi_pm"), vec!["acpi_pm"]);
        assert!(value_tokens("ffff,ffffffff 2001 on").is_empty());
        assert!(key_tokens("clock.clocksource").is_empty());
        assert_eq!(key_tokens("modules.nf_tables"), vec!["nf_tables"]);
        assert_eq!(key_tokens("sysctl.net.core.busy_poll"), vec!["busy_poll"]);
    }

    #[test]
    fn a_function_on_both_sides_alike_is_not_tied() {
        let base = side(&[("read_hpet", 100)], 1000);
        let cand = side(&[("read_hpet", 110)], 1000);
        let delta = [change("clock.clocksource", "tsc", "hpet")];
        assert!(runtime_name_causes(&delta, &BTreeSet::new(), &base, &cand).is_empty());
    }
}
