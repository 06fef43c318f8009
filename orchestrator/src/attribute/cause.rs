//! Causes: the delta items (config options, runtime keys) tied to kernel functions,
//! from the knowledge base, from names, and from a kernel source tree.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use regex::Regex;

use super::kb::{glob_regex, glob_set, HotWhen, KnowledgeBase};
use super::ksrc::OptionCode;
use crate::analyze::functions::SideCounts;
use crate::model::{CauseKind, CauseSource, ConfigChange, KeyKind, RuntimeChange};

/// Is a config or runtime value "on"?
pub fn is_enabled_value(v: &str) -> bool {
    let v = v.trim().trim_matches('"').to_ascii_lowercase();
    !matches!(
        v.as_str(),
        "" | "n"
            | "no"
            | "0"
            | "off"
            | "false"
            | "never"
            | "disabled"
            | "(absent)"
            | "none"
            | "noop"
    ) && !v.starts_with("not affected")
        // `mitigations.*`: the CPU is exposed, no mitigation runs.
        && !v.starts_with("vulnerable")
}

/// One delta item tied to functions.
#[derive(Debug)]
pub struct Cause {
    pub name: String,
    pub kind: CauseKind,
    pub title: String,
    pub baseline: String,
    pub candidate: String,
    pub related: Vec<String>,
    pub why: String,
    pub source: CauseSource,
    pub hot_when: HotWhen,
    symbols: Option<Regex>,
    pub(crate) context: Vec<(Regex, Regex)>,
    /// Exact function names (name matches and kernel-source mapping).
    names: BTreeSet<String>,
    /// Kernel modules whose frames belong to the cause, whatever the functions are
    /// called (the kernel's module map: [`super::kmap`]).
    modules: BTreeSet<String>,
    /// Every (key, baseline, candidate) behind the cause, primary first.
    hits: Vec<(String, String, String)>,
}

impl Cause {
    /// A cause from one config option and exact function names (the mechanisms that
    /// need no knowledge-base entry).
    fn for_option(
        c: &ConfigChange,
        why: String,
        source: CauseSource,
        hot_when: HotWhen,
        names: BTreeSet<String>,
    ) -> Cause {
        Cause {
            name: c.option.clone(),
            kind: CauseKind::Kconfig,
            title: c.option.trim_start_matches("CONFIG_").to_ascii_lowercase(),
            baseline: c.baseline.clone(),
            candidate: c.candidate.clone(),
            related: vec![],
            why,
            source,
            hot_when,
            symbols: None,
            context: vec![],
            names,
            modules: BTreeSet::new(),
            hits: vec![(c.option.clone(), c.baseline.clone(), c.candidate.clone())],
        }
    }

    /// A cause from one runtime key tied to functions by name (no direction is
    /// predicted: the functions were taken from the side whose value names them).
    pub(crate) fn for_runtime(r: &RuntimeChange, why: String, names: BTreeSet<String>) -> Cause {
        Cause {
            name: r.key.clone(),
            kind: CauseKind::of_key(&r.key),
            title: r.key.clone(),
            baseline: r.baseline.clone(),
            candidate: r.candidate.clone(),
            related: vec![],
            why,
            source: CauseSource::NameMatch,
            hot_when: HotWhen::Either,
            symbols: None,
            context: vec![],
            names,
            modules: BTreeSet::new(),
            hits: vec![(r.key.clone(), r.baseline.clone(), r.candidate.clone())],
        }
    }

    /// The only knob that differs, tied to the functions of one side only.
    pub(crate) fn by_elimination(
        key: &str,
        b: &str,
        c: &str,
        why: String,
        names: BTreeSet<String>,
    ) -> Cause {
        Cause {
            name: key.to_string(),
            kind: if key.starts_with("CONFIG_") {
                CauseKind::Kconfig
            } else {
                CauseKind::of_key(key)
            },
            title: key.trim_start_matches("CONFIG_").to_ascii_lowercase(),
            baseline: b.to_string(),
            candidate: c.to_string(),
            related: vec![],
            why,
            source: CauseSource::Elimination,
            hot_when: HotWhen::Either,
            symbols: None,
            context: vec![],
            names,
            modules: BTreeSet::new(),
            hits: vec![(key.to_string(), b.to_string(), c.to_string())],
        }
    }

    /// A cause tied to kernel modules (and, for an option built in on the other
    /// side, to the same functions by name there). `hits` lists every delta key
    /// behind it, primary first.
    pub(crate) fn for_modules(
        hits: Vec<(String, String, String)>,
        why: String,
        source: CauseSource,
        hot_when: HotWhen,
        names: BTreeSet<String>,
        modules: BTreeSet<String>,
    ) -> Option<Cause> {
        let (key, b, c) = hits.first()?.clone();
        let kind = if key.starts_with("CONFIG_") {
            CauseKind::Kconfig
        } else {
            CauseKind::of_key(&key)
        };
        Some(Cause {
            title: if kind == CauseKind::Kconfig {
                key.trim_start_matches("CONFIG_").to_ascii_lowercase()
            } else {
                key.clone()
            },
            name: key,
            kind,
            baseline: b,
            candidate: c,
            related: hits.iter().skip(1).map(|h| h.0.clone()).collect(),
            why,
            source,
            hot_when,
            symbols: None,
            context: vec![],
            names,
            modules,
            hits,
        })
    }

    /// Every delta key behind the cause.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.hits.iter().map(|h| h.0.as_str())
    }

    pub(crate) fn matches_name(&self, f: &str) -> bool {
        self.names.contains(f) || self.symbols.as_ref().is_some_and(|r| r.is_match(f))
    }

    /// Whether a frame belongs to the cause: by the module perf placed it in, or
    /// by its name.
    pub(crate) fn matches_frame(&self, f: &str, module: Option<&str>) -> bool {
        module.is_some_and(|m| self.modules.contains(m)) || self.matches_name(f)
    }
    /// The side on which this cause's functions should be hotter, if known:
    /// Some(true) = candidate, Some(false) = baseline. Read from the first of the
    /// cause's keys whose feature is on on one side only (`nopti` → PTI off).
    pub fn expected_hot_candidate(&self) -> Option<bool> {
        self.hits.iter().find_map(|(key, b, c)| {
            let (b, c) = (feature_on(key, b), feature_on(key, c));
            if b == c {
                return None;
            }
            match self.hot_when {
                HotWhen::Enabled => Some(c),
                HotWhen::Disabled => Some(b),
                HotWhen::Either => None,
            }
        })
    }
}

/// Whether a key's value turns its feature on. Boot flags named `no…` (`nopti`,
/// `nosmt`) turn it off when present.
pub fn feature_on(key: &str, value: &str) -> bool {
    let on = is_enabled_value(value);
    match key.strip_prefix("cmdline.") {
        Some(p) if p.starts_with("no") && p.len() > 3 => !on,
        _ => on,
    }
}

/// Builds the causes active for these deltas, knowledge-base entries first.
pub fn build_causes(
    kb: &KnowledgeBase,
    config_delta: &[ConfigChange],
    runtime_delta: &[RuntimeChange],
) -> Vec<Cause> {
    let cfg: HashMap<&str, &ConfigChange> = config_delta
        .iter()
        .map(|c| (c.option.as_str(), c))
        .collect();
    let mut causes = Vec::new();
    for e in &kb.entries {
        let mut hits: Vec<(String, String, String, CauseKind)> = Vec::new();
        for o in &e.options {
            if let Some(c) = cfg.get(o.as_str()) {
                hits.push((
                    o.clone(),
                    c.baseline.clone(),
                    c.candidate.clone(),
                    CauseKind::Kconfig,
                ));
            }
        }
        for pat in &e.runtime {
            let Ok(re) = glob_regex(pat) else { continue };
            for r in runtime_delta
                .iter()
                .filter(|r| r.kind == KeyKind::Knob && re.is_match(&r.key))
            {
                if !hits.iter().any(|h| h.0 == r.key) {
                    hits.push((
                        r.key.clone(),
                        r.baseline.clone(),
                        r.candidate.clone(),
                        CauseKind::of_key(&r.key),
                    ));
                }
            }
        }
        let Some(primary) = hits.first().cloned() else {
            continue;
        };
        let context = e
            .context
            .iter()
            .filter_map(|c| Some((glob_regex(&c.symbol).ok()?, glob_set(&c.callers)?)))
            .collect();
        causes.push(Cause {
            name: primary.0,
            kind: primary.3,
            title: e.title.clone().unwrap_or_else(|| e.id.replace('_', " ")),
            baseline: primary.1,
            candidate: primary.2,
            related: hits.iter().skip(1).map(|h| h.0.clone()).collect(),
            why: e.why.clone(),
            source: CauseSource::KnowledgeBase,
            hot_when: e.hot_when,
            symbols: glob_set(&e.symbols),
            context,
            names: BTreeSet::new(),
            modules: BTreeSet::new(),
            hits: hits
                .iter()
                .map(|h| (h.0.clone(), h.1.clone(), h.2.clone()))
                .collect(),
        });
    }
    causes
}

/// Candidate name tokens for an option: `CONFIG_DEBUG_KMEMLEAK` → `debug_kmemleak`,
/// `kmemleak`. Short or generic tokens are dropped: they would match anything.
pub fn option_tokens(option: &str) -> Vec<String> {
    let base = option.trim_start_matches("CONFIG_").to_ascii_lowercase();
    let parts: Vec<&str> = base.split('_').collect();
    let mut out = Vec::new();
    if base.len() >= 4 {
        out.push(base.clone());
    }
    for i in 1..parts.len() {
        let suffix = parts[i..].join("_");
        let segs = parts.len() - i;
        if (segs >= 2 && suffix.len() >= 6) || (segs == 1 && suffix.len() >= 7) {
            out.push(suffix);
        }
    }
    const GENERIC: &[&str] = &[
        "default", "enabled", "support", "stats", "debug", "common", "generic",
    ];
    out.retain(|t| !GENERIC.contains(&t.as_str()));
    out
}

/// A function that ran on `here` (in at least 3 samples) and never on `there`: what
/// code that exists with one value of an option only looks like in two profiles.
pub(crate) fn seen_only_on(f: &str, here: &SideCounts, there: &SideCounts) -> bool {
    here.functions.get(f).is_some_and(|x| x.inclusive >= 3)
        && there.functions.get(f).is_none_or(|x| x.inclusive == 0)
}

/// The changed options no earlier mechanism covered.
fn uncovered<'a>(
    config_delta: &'a [ConfigChange],
    covered: &'a BTreeSet<String>,
) -> impl Iterator<Item = &'a ConfigChange> {
    config_delta.iter().filter(|c| !covered.contains(&c.option))
}

/// The general mechanism that needs no knowledge-base entry: functions seen on one
/// side only whose names contain the option's name.
pub fn name_match_causes(
    config_delta: &[ConfigChange],
    covered: &BTreeSet<String>,
    base: &SideCounts,
    cand: &SideCounts,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    for c in uncovered(config_delta, covered) {
        let tokens = option_tokens(&c.option);
        if tokens.is_empty() {
            continue;
        }
        let mut names = BTreeSet::new();
        for (side, other) in [(cand, base), (base, cand)] {
            for f in side.functions.keys() {
                if seen_only_on(f, side, other) {
                    let lf = f.to_ascii_lowercase();
                    if tokens.iter().any(|t| lf.contains(t.as_str())) {
                        names.insert(f.clone());
                    }
                }
            }
        }
        if names.is_empty() {
            continue;
        }
        causes.push(Cause::for_option(
            c,
            format!(
                "functions named after {} run on one side only (no knowledge-base entry; matched by name)",
                c.option
            ),
            CauseSource::NameMatch,
            HotWhen::Enabled,
            names,
        ));
    }
    causes
}

/// Causes from the kernel-source mapping (`--kernel-src`): functions compiled only
/// with one value of an option, seen on the side that has that value and absent on
/// the other (a same-named function on both sides is not option-exclusive here).
pub fn source_map_causes(
    config_delta: &[ConfigChange],
    covered: &BTreeSet<String>,
    map: &BTreeMap<String, OptionCode>,
    base: &SideCounts,
    cand: &SideCounts,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    for c in uncovered(config_delta, covered) {
        let Some(code) = map.get(&c.option) else {
            continue;
        };
        let Some((names, hot_when)) = source_names(c, code, base, cand) else {
            continue;
        };
        let files: Vec<&String> = code.files.iter().take(3).collect();
        causes.push(Cause::for_option(
            c,
            format!(
                "the kernel source builds these functions only when {} is {} ({}{}); no knowledge-base entry",
                c.option,
                if hot_when == HotWhen::Disabled { "off" } else { "on" },
                files.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "),
                if code.files.len() > 3 { ", …" } else { "" }
            ),
            CauseSource::KernelSource,
            hot_when,
            names,
        ));
    }
    causes
}

/// The functions the source compiles only with one value of an option that run on
/// the side with that value and not on the other, and which side that predicts.
pub(crate) fn source_names(
    c: &ConfigChange,
    code: &OptionCode,
    base: &SideCounts,
    cand: &SideCounts,
) -> Option<(BTreeSet<String>, HotWhen)> {
    let (b_on, c_on) = (
        is_enabled_value(&c.baseline),
        is_enabled_value(&c.candidate),
    );
    if b_on == c_on {
        return None; // e.g. a number that changed: no side lacks the code
    }
    let (on, off) = if c_on { (cand, base) } else { (base, cand) };
    let enabled: BTreeSet<String> = code
        .when_enabled
        .iter()
        .filter(|f| seen_only_on(f, on, off))
        .cloned()
        .collect();
    let disabled: BTreeSet<String> = code
        .when_disabled
        .iter()
        .filter(|f| seen_only_on(f, off, on))
        .cloned()
        .collect();
    let hot_when = match (enabled.is_empty(), disabled.is_empty()) {
        (true, true) => return None,
        (false, true) => HotWhen::Enabled,
        (true, false) => HotWhen::Disabled,
        (false, false) => HotWhen::Either,
    };
    Some((enabled.into_iter().chain(disabled).collect(), hot_when))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_specific() {
        assert_eq!(
            option_tokens("CONFIG_DEBUG_KMEMLEAK"),
            vec!["debug_kmemleak", "kmemleak"]
        );
        assert_eq!(option_tokens("CONFIG_KASAN"), vec!["kasan"]);
        assert!(!option_tokens("CONFIG_SLUB_STATS").contains(&"stats".to_string()));
    }

    #[test]
    fn values_read_as_enabled() {
        for v in [
            "y",
            "m",
            "on",
            "1",
            "2001",
            "always [madvise] never",
            "Mitigation: PTI",
        ] {
            assert!(is_enabled_value(v), "{v}");
        }
        for v in ["n", "off", "0", "(absent)", "Not affected", "never"] {
            assert!(!is_enabled_value(v), "{v}");
        }
    }
}
