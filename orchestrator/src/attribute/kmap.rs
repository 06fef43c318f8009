//! The kernel's own map of its code (issue 17): which kernel module each function
//! belongs to, as perf placed its frames (`[sch_netem]`, `…/cls_u32.ko.xz`: the
//! `[module]` tags of /proc/kallsyms), and which config option builds a module
//! (Kbuild's `obj-$(CONFIG_X) += foo.o`, from a kernel source).
//!
//! - A runtime delta `modules.X`, loaded on one side only, is tied to the frames
//!   perf placed in module X, whatever their functions are called (`netem_enqueue`
//!   in `sch_netem`, `u32_classify` in `cls_u32`). Membership is a fact, not a
//!   guess, so such a cause may reach high confidence (the ranker still asks for a
//!   large, significant share in the direction the value predicts: hotter where the
//!   module is loaded). A module missing from the other side's list may be built
//!   into that kernel (Debian's cloud kernel builds ext4 in): when its functions run
//!   there by name, they are matched there too and no direction is predicted.
//! - A config option that differs with `m` on one side is tied to the frames of the
//!   modules it builds: through Kbuild when a kernel source is there (source
//!   `kernel-map`), else when a module is named exactly like one of the option's
//!   name tokens (`CONFIG_NET_SCH_NETEM` → `sch_netem`; source `name-match`: the link
//!   is a name). With `n` on the other side the module's code runs where it is `m`
//!   only (predicted hotter there); with `y` the same functions are built in there,
//!   matched by name, and no direction is predicted (what differs is the cost of
//!   module code: calls into it, its own text pages) — and only when those
//!   functions run on both sides, else the difference is the workload's use of
//!   them, not where they are linked. The `modules.X` delta of such a module is
//!   listed with the option, not as a cause of its own.
//!
//! Charging is every cause's rule ([`super::charge`]): a busy sample goes to the
//! cause of the frame nearest its leaf that matches one, so the generic helpers a
//! module's function calls (`_raw_spin_lock`, `kfree_skb`) are charged to the
//! module, and a module function deep in the stack takes what runs above it. A
//! module's share is therefore its inclusive time where no nearer cause claims the
//! samples; when the other side does the same job through other code (one
//! filesystem against another), the difference overstates the module's own cost.

use std::collections::{BTreeMap, BTreeSet};

use super::cause::{is_enabled_value, option_tokens, source_names, Cause};
use super::kb::HotWhen;
use super::ksrc::OptionCode;
use crate::analyze::fold::Profile;
use crate::analyze::functions::SideCounts;
use crate::model::{CauseSource, ConfigChange, KeyKind, RuntimeChange};

/// Per module: its functions with busy samples on one side and their sample counts
/// (a sample counts once per function of its stack).
#[derive(Debug, Default)]
pub struct ModuleFunctions(BTreeMap<String, BTreeMap<String, u64>>);

impl ModuleFunctions {
    /// The modules of a profile's busy stacks.
    pub fn of(p: &Profile) -> ModuleFunctions {
        let mut by_id: BTreeMap<u32, u64> = BTreeMap::new();
        for s in p.stacks.iter().filter(|s| !s.idle) {
            // The last frame is the comm.
            let frames = &s.frames[..s.frames.len().saturating_sub(1)];
            for (i, &f) in frames.iter().enumerate() {
                if p.module_of(f).is_some() && !frames[..i].contains(&f) {
                    *by_id.entry(f).or_default() += s.count;
                }
            }
        }
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (id, n) in by_id {
            let (Some(m), Some(name)) = (p.module_of(id), p.names.get(id as usize)) else {
                continue;
            };
            *out.entry(m.to_string())
                .or_default()
                .entry(name.clone())
                .or_default() += n;
        }
        ModuleFunctions(out)
    }

    /// Busy samples with a frame of the module (an upper bound: a sample through two
    /// of its functions counts twice).
    fn samples(&self, module: &str) -> u64 {
        self.0.get(module).map_or(0, |f| f.values().sum())
    }

    fn functions(&self, module: &str) -> impl Iterator<Item = &String> {
        self.0.get(module).into_iter().flat_map(|f| f.keys())
    }

    /// The hottest few functions of some modules, for the why text.
    fn examples(&self, modules: &BTreeSet<String>) -> String {
        let mut all: Vec<(&String, u64)> = modules
            .iter()
            .filter_map(|m| self.0.get(m))
            .flat_map(|f| f.iter().map(|(n, x)| (n, *x)))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut names: Vec<&str> = all.iter().take(3).map(|(n, _)| n.as_str()).collect();
        if all.len() > 3 {
            names.push("…");
        }
        names.join(", ")
    }
}

/// Fewer busy samples than this in a module is no evidence that it ran.
const MIN_SAMPLES: u64 = 3;

/// Runtime deltas `modules.X` (loaded on one side only) tied to the frames of X.
///
/// A module absent from one side's list may still be built into its kernel
/// (Debian's cloud kernel builds ext4 in, the generic one loads it): when X's
/// functions run by the same names on the other side, they are matched there too
/// and no direction is predicted — whether the code runs is then no difference, and
/// the cause is listed only if their time differs.
pub fn module_key_causes(
    delta: &[RuntimeChange],
    covered: &BTreeSet<String>,
    [base, cand]: [&ModuleFunctions; 2],
    [sb, sc]: [&SideCounts; 2],
) -> Vec<Cause> {
    let mut out = Vec::new();
    for r in delta
        .iter()
        .filter(|r| r.kind == KeyKind::Knob && !covered.contains(&r.key))
    {
        let Some(module) = r.key.strip_prefix("modules.") else {
            continue;
        };
        let (b_on, c_on) = (
            is_enabled_value(&r.baseline),
            is_enabled_value(&r.candidate),
        );
        if b_on == c_on {
            continue;
        }
        let (side, other, role) = if c_on {
            (cand, sb, "candidate")
        } else {
            (base, sc, "baseline")
        };
        if side.samples(module) < MIN_SAMPLES {
            continue; // loaded, but never on a stack: nothing to tie
        }
        let modules: BTreeSet<String> = [module.to_string()].into();
        let names: BTreeSet<String> = side.functions(module).cloned().collect();
        let built_in = names.iter().any(|f| {
            other
                .functions
                .get(f)
                .is_some_and(|x| x.inclusive >= MIN_SAMPLES)
        });
        let mut why = format!(
            "module {module} is loaded on the {role} only, and perf placed frames in it there ({}): tied through the kernel's module map, whatever its functions are called — their samples and what they call",
            side.examples(&modules)
        );
        let (names, hot_when) = if built_in {
            why.push_str("; the same functions run on the other side too (built into its kernel, or in another module), matched there by name: no direction is predicted");
            (names, HotWhen::Either)
        } else {
            (BTreeSet::new(), HotWhen::Enabled)
        };
        out.extend(Cause::for_modules(
            vec![(r.key.clone(), r.baseline.clone(), r.candidate.clone())],
            why,
            CauseSource::KernelMap,
            hot_when,
            names,
            modules,
        ));
    }
    out
}

/// What [`option_module_causes`] reads besides the config delta.
pub struct OptionMaps<'a> {
    /// The kernel source's mapping of options (with their modules), if any.
    pub source: Option<&'a BTreeMap<String, OptionCode>>,
    pub runtime_delta: &'a [RuntimeChange],
    /// Module functions of the baseline and the candidate.
    pub modules: [&'a ModuleFunctions; 2],
    /// Function counts of the baseline and the candidate.
    pub counts: [&'a SideCounts; 2],
}

/// Config options `m` on one side tied to the frames of the modules they build.
pub fn option_module_causes(
    config_delta: &[ConfigChange],
    covered: &BTreeSet<String>,
    maps: &OptionMaps<'_>,
) -> Vec<Cause> {
    let mut out = Vec::new();
    for c in config_delta.iter().filter(|c| !covered.contains(&c.option)) {
        let (b_mod, c_mod) = (c.baseline == "m", c.candidate == "m");
        if b_mod == c_mod {
            continue; // no module on one side only
        }
        let [mb, mc] = maps.modules;
        let (here, role, other_value) = if c_mod {
            (mc, "candidate", &c.baseline)
        } else {
            (mb, "baseline", &c.candidate)
        };
        let code = maps.source.and_then(|m| m.get(&c.option));
        let (modules, source, how): (BTreeSet<String>, _, String) =
            match code.filter(|code| !code.modules.is_empty()) {
                Some(code) => (
                    code.modules
                        .iter()
                        .filter(|m| here.samples(m) >= MIN_SAMPLES)
                        .cloned()
                        .collect(),
                    CauseSource::KernelMap,
                    format!(
                        "the kernel source builds it only with {} ({})",
                        c.option,
                        kbuild_files(code)
                    ),
                ),
                None => {
                    let tokens = option_tokens(&c.option);
                    (
                        here.0
                            .keys()
                            .filter(|m| tokens.contains(m) && here.samples(m) >= MIN_SAMPLES)
                            .cloned()
                            .collect(),
                        CauseSource::NameMatch,
                        format!(
                        "it is named like {} (no kernel source to read Kbuild in; matched by name)",
                        c.option
                    ),
                    )
                }
            };
        if modules.is_empty() {
            continue;
        }
        let list: Vec<&str> = modules.iter().map(String::as_str).collect();
        let built_in = is_enabled_value(other_value);
        let (names, hot_when, what) = if built_in {
            // The same functions, linked into vmlinux on the other side.
            let names: BTreeSet<String> = modules
                .iter()
                .flat_map(|m| here.functions(m))
                .cloned()
                .collect();
            let [sb, sc] = maps.counts;
            let other = if c_mod { sb } else { sc };
            let ran = names.iter().any(|f| {
                other
                    .functions
                    .get(f)
                    .is_some_and(|x| x.inclusive >= MIN_SAMPLES)
            });
            if !ran {
                continue;
            }
            (names, HotWhen::Either, format!(
                "built in ({other_value}) on the other side, a module on the {role}: the same functions ({}), matched by name there; no direction is predicted — what differs is the cost of module code",
                here.examples(&modules)
            ))
        } else {
            // Code the source compiles in vmlinux only with the option, too.
            let [sb, sc] = maps.counts;
            let extra = code.and_then(|code| source_names(c, code, sb, sc));
            let hot_when = match &extra {
                Some((_, HotWhen::Disabled | HotWhen::Either)) => HotWhen::Either,
                _ => HotWhen::Enabled,
            };
            (extra.map(|e| e.0).unwrap_or_default(), hot_when, format!(
                "{other_value} on the other side: the functions perf placed in the module ({}) and what they call",
                here.examples(&modules)
            ))
        };
        let mut hits = vec![(c.option.clone(), c.baseline.clone(), c.candidate.clone())];
        for m in &modules {
            let key = format!("modules.{m}");
            if let Some(r) = maps.runtime_delta.iter().find(|r| r.key == key) {
                hits.push((key, r.baseline.clone(), r.candidate.clone()));
            }
        }
        let why = format!(
            "{} is `m` on the {role}, building module{} {} — {how}; {what}",
            c.option,
            if list.len() > 1 { "s" } else { "" },
            list.join(", "),
        );
        out.extend(Cause::for_modules(
            hits, why, source, hot_when, names, modules,
        ));
    }
    out
}

/// The Makefiles that name the option's modules, for the why text.
fn kbuild_files(code: &OptionCode) -> String {
    let files: Vec<&str> = code
        .module_makefiles
        .iter()
        .map(String::as_str)
        .take(2)
        .collect();
    files.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::fold::fold_str;
    use crate::analyze::functions::side_counts;
    use crate::attribute::{attribute, AttributeOptions};
    use crate::model::{Confidence, ConfigChangeKind};

    /// `n` samples of a stack, leaf first: `(function, object)`.
    fn samples(n: usize, frames: &[(&str, &str)]) -> String {
        let mut t = String::new();
        for i in 0..n {
            t.push_str(&format!("iperf3 7 [000] {i}.5: 1 cpu-clock: \n"));
            for (f, dso) in frames {
                let addr = if dso.contains("kallsyms") {
                    "ffffffff81000010"
                } else {
                    "ffffffffc0a1b010"
                };
                t.push_str(&format!("\t{addr} {f}+0x10 ({dso})\n"));
            }
            t.push('\n');
        }
        t
    }

    const K: &str = "[kernel.kallsyms]";

    /// The baseline sends through the stack; the candidate's packets also go
    /// through a qdisc module whose functions carry no name of it.
    fn netem_sides(netem_dso: &str, netem_as_builtin_on_base: bool) -> (Profile, Profile) {
        let common = samples(800, &[("tcp_sendmsg", K), ("__sys_sendto", K)]);
        let mut base = common.clone();
        if netem_as_builtin_on_base {
            base.push_str(&samples(
                100,
                &[("netem_enqueue", K), ("__dev_queue_xmit", K)],
            ));
        }
        let mut cand = common;
        cand.push_str(&samples(
            150,
            &[("netem_enqueue", netem_dso), ("__dev_queue_xmit", K)],
        ));
        // A generic helper under the module's function: charged to the module.
        cand.push_str(&samples(
            80,
            &[
                ("_raw_spin_lock", K),
                ("tfifo_enqueue", netem_dso),
                ("netem_enqueue", netem_dso),
            ],
        ));
        (fold_str(&base), fold_str(&cand))
    }

    fn loaded(key: &str) -> RuntimeChange {
        RuntimeChange {
            key: key.into(),
            baseline: "(absent)".into(),
            candidate: "loaded".into(),
            kind: KeyKind::Knob,
        }
    }

    #[test]
    fn a_module_loaded_on_one_side_takes_its_frames_whatever_they_are_named() {
        let (base, cand) = netem_sides("[sch_netem]", false);
        let mods = [ModuleFunctions::of(&base), ModuleFunctions::of(&cand)];
        let delta = [loaded("modules.sch_netem"), loaded("modules.unused_mod")];
        let (sb, sc) = (side_counts(&base), side_counts(&cand));
        let causes = module_key_causes(&delta, &BTreeSet::new(), [&mods[0], &mods[1]], [&sb, &sc]);
        assert_eq!(causes.len(), 1, "a module never on a stack ties nothing");
        assert_eq!(causes[0].source, CauseSource::KernelMap);
        assert!(causes[0].why.contains("netem_enqueue"), "{}", causes[0].why);
        // The name mechanism finds nothing: no function carries `sch_netem`.
        assert!(crate::attribute::runtime_match::runtime_name_causes(
            &delta,
            &BTreeSet::new(),
            &sb,
            &sc
        )
        .is_empty());
        let r = attribute(&causes, &base, &cand, true, &AttributeOptions::default());
        let a = &r.attributions[0];
        assert_eq!(a.cause, "modules.sch_netem");
        assert_eq!(a.confidence, Confidence::High, "membership is a fact");
        // 230 of 1030 busy samples: the helper's 80 under tfifo_enqueue included.
        assert!(
            (a.explained_share - 230.0 / 1030.0).abs() < 1e-9,
            "{}",
            a.explained_share
        );
        assert!(a.evidence.iter().any(|e| e.symbol == "tfifo_enqueue"));
        // Covered by an earlier cause: left to it.
        let covered: BTreeSet<String> = ["modules.sch_netem".to_string()].into();
        assert!(module_key_causes(&delta, &covered, [&mods[0], &mods[1]], [&sb, &sc]).is_empty());
    }

    /// Debian's cloud kernel builds ext4 in, the generic one loads it: `modules.ext4`
    /// differs, but ext4's functions run on both sides. Blaming the module for all
    /// its time (37 points on a real capture) would be false.
    #[test]
    fn a_module_built_in_on_the_other_side_is_compared_by_name() {
        let (base, cand) = netem_sides("[sch_netem]", true);
        let mods = [ModuleFunctions::of(&base), ModuleFunctions::of(&cand)];
        let (sb, sc) = (side_counts(&base), side_counts(&cand));
        let causes = module_key_causes(
            &[loaded("modules.sch_netem")],
            &BTreeSet::new(),
            [&mods[0], &mods[1]],
            [&sb, &sc],
        );
        assert_eq!(causes[0].expected_hot_candidate(), None);
        assert!(causes[0].matches_frame("netem_enqueue", None));
        let r = attribute(&causes, &base, &cand, true, &AttributeOptions::default());
        let a = &r.attributions[0];
        // 100 of 900 on the baseline, 230 of 1030 on the candidate: the difference only.
        assert!((a.explained_share - (230.0 / 1030.0 - 100.0 / 900.0)).abs() < 1e-9);
        assert_ne!(a.confidence, Confidence::High);
    }

    fn option(b: &str, c: &str) -> ConfigChange {
        ConfigChange {
            option: "CONFIG_NET_SCH_NETEM".into(),
            baseline: b.into(),
            candidate: c.into(),
            kind: ConfigChangeKind::Toggled,
        }
    }

    fn option_causes(
        base: &Profile,
        cand: &Profile,
        c: ConfigChange,
        source: Option<&BTreeMap<String, OptionCode>>,
    ) -> Vec<Cause> {
        let mods = [ModuleFunctions::of(base), ModuleFunctions::of(cand)];
        let (sb, sc) = (side_counts(base), side_counts(cand));
        let runtime = [loaded("modules.sch_netem")];
        option_module_causes(
            &[c],
            &BTreeSet::new(),
            &OptionMaps {
                source,
                runtime_delta: &runtime,
                modules: [&mods[0], &mods[1]],
                counts: [&sb, &sc],
            },
        )
    }

    #[test]
    fn an_option_is_tied_to_the_module_kbuild_builds_for_it() {
        let (base, cand) = netem_sides(
            "/lib/modules/6.1.0-27-amd64/kernel/net/sched/sch_netem.ko.xz",
            false,
        );
        let mut map = BTreeMap::new();
        map.insert(
            "CONFIG_NET_SCH_NETEM".to_string(),
            OptionCode {
                modules: ["sch_netem".to_string()].into(),
                module_makefiles: ["net/sched/Makefile".to_string()].into(),
                ..Default::default()
            },
        );
        let causes = option_causes(&base, &cand, option("n", "m"), Some(&map));
        assert_eq!(causes.len(), 1);
        let c = &causes[0];
        assert_eq!(c.source, CauseSource::KernelMap);
        assert_eq!(
            c.related,
            ["modules.sch_netem"],
            "the module's load listed with it"
        );
        assert!(c.why.contains("net/sched/Makefile"), "{}", c.why);
        assert_eq!(c.expected_hot_candidate(), Some(true));
        assert!(c.matches_frame("tfifo_enqueue", Some("sch_netem")));
        // Without a source, a module named exactly like the option's tokens.
        let causes = option_causes(&base, &cand, option("n", "m"), None);
        assert_eq!(causes[0].source, CauseSource::NameMatch);
        // A module named otherwise is not the option's.
        let (base, cand) = netem_sides("[tcp_bbr]", false);
        assert!(option_causes(&base, &cand, option("n", "m"), None).is_empty());
    }

    #[test]
    fn built_in_against_module_compares_the_same_functions() {
        let (base, cand) = netem_sides("[sch_netem]", true);
        let causes = option_causes(&base, &cand, option("y", "m"), None);
        assert_eq!(causes.len(), 1);
        let c = &causes[0];
        assert_eq!(c.expected_hot_candidate(), None, "no direction predicted");
        assert!(
            c.matches_frame("netem_enqueue", None),
            "built in on the baseline"
        );
        assert!(c.why.contains("built in (y)"), "{}", c.why);
        // The built-in copy never ran: the difference is the workload's, not linking.
        let (base, cand) = netem_sides("[sch_netem]", false);
        assert!(option_causes(&base, &cand, option("y", "m"), None).is_empty());
    }
}
