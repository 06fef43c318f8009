//! Which causes exist for two sides' deltas, in the order that decides which cause
//! takes a frame two of them match (the first in the list): facts before guesses.
//!
//! 1. the knowledge base (curated: it knows context, `stack_trace_save` under KASAN);
//! 2. the kernel's module map ([`super::kmap`]): options that build a module, then
//!    modules loaded on one side only — membership is a fact;
//! 3. the kernel source's Kbuild and `#ifdef` ([`super::ksrc`]), for options;
//! 4. names: options, then runtime keys and values;
//! 5. elimination: the only knob that differs, when nothing else tied it.
//!
//! A delta item is tied by the first mechanism that can; the later ones skip it.

use std::collections::{BTreeMap, BTreeSet};

use super::cause::{self, Cause};
use super::kmap::{self, ModuleFunctions, OptionMaps};
use super::ksrc::OptionCode;
use super::{reasoning, runtime_match, KnowledgeBase};
use crate::analyze::fold::Profile;
use crate::analyze::functions::SideCounts;
use crate::model::{ConfigChange, ConfigChangeKind, RuntimeChange};

/// What the causes are gathered from.
pub struct CauseInputs<'a> {
    pub kb: &'a KnowledgeBase,
    /// The whole config delta (options of one kernel only are left out here).
    pub config_delta: &'a [ConfigChange],
    pub runtime_delta: &'a [RuntimeChange],
    /// Baseline and candidate.
    pub profiles: [&'a Profile; 2],
    pub counts: [&'a SideCounts; 2],
    /// The kernel source's mapping of [`wanted_options`], when there is a source.
    pub source_map: Option<&'a BTreeMap<String, OptionCode>>,
}

/// Options that differ as knobs: options of one kernel only are version effects,
/// listed apart and never blamed (they change with everything else between two
/// versions).
pub fn knobs(config_delta: &[ConfigChange]) -> Vec<ConfigChange> {
    config_delta
        .iter()
        .filter(|c| c.kind != ConfigChangeKind::OneKernelOnly)
        .cloned()
        .collect()
}

/// The differing options a kernel source would be read for: the knobs no
/// knowledge-base entry covers. Empty: no source is needed.
pub fn wanted_options(kb: &KnowledgeBase, config_delta: &[ConfigChange]) -> BTreeSet<String> {
    let covered = kb.covered_options();
    knobs(config_delta)
        .into_iter()
        .filter(|c| !covered.contains(&c.option))
        .map(|c| c.option)
        .collect()
}

/// Every cause, in the order above.
pub fn gather(i: &CauseInputs<'_>) -> Vec<Cause> {
    let knobs = knobs(i.config_delta);
    let config_delta = knobs.as_slice();
    let [sb, sc] = i.counts;
    let modules = [
        ModuleFunctions::of(i.profiles[0]),
        ModuleFunctions::of(i.profiles[1]),
    ];
    let mut causes = cause::build_causes(i.kb, config_delta, i.runtime_delta);
    let mut covered = i.kb.covered_options();
    let by_module = kmap::option_module_causes(
        config_delta,
        &covered,
        &OptionMaps {
            source: i.source_map,
            runtime_delta: i.runtime_delta,
            modules: [&modules[0], &modules[1]],
            counts: i.counts,
        },
    );
    covered.extend(by_module.iter().map(|c| c.name.clone()));
    causes.extend(by_module);
    let loaded = kmap::module_key_causes(
        i.runtime_delta,
        &keys(&causes),
        [&modules[0], &modules[1]],
        i.counts,
    );
    causes.extend(loaded);
    if let Some(map) = i.source_map {
        let mapped = cause::source_map_causes(config_delta, &covered, map, sb, sc);
        covered.extend(mapped.iter().map(|c| c.name.clone()));
        causes.extend(mapped);
    }
    causes.extend(cause::name_match_causes(config_delta, &covered, sb, sc));
    causes.extend(runtime_match::runtime_name_causes(
        i.runtime_delta,
        &keys(&causes),
        sb,
        sc,
    ));
    causes.extend(reasoning::only_difference(
        config_delta,
        i.runtime_delta,
        &causes,
        sb,
        sc,
    ));
    causes
}

/// Every delta key some cause already stands for.
fn keys(causes: &[Cause]) -> BTreeSet<String> {
    causes
        .iter()
        .flat_map(|c| c.keys())
        .map(str::to_string)
        .collect()
}
