//! The knowledge base (`configs/attribution.yaml`): entries that tie config options
//! and runtime keys to the kernel functions they bring in, with why.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use regex::Regex;
use serde::Deserialize;

/// The knowledge base shipped with kdelta (`configs/attribution.yaml`).
pub const BUILTIN_KB: &str = include_str!("../../../configs/attribution.yaml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeBase {
    pub entries: Vec<KbEntry>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct KbEntry {
    pub id: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default)]
    pub runtime: Vec<String>,
    #[serde(default = "default_hot")]
    pub hot_when: HotWhen,
    #[serde(default)]
    pub symbols: Vec<String>,
    #[serde(default)]
    pub context: Vec<ContextRule>,
    pub why: String,
    #[serde(default)]
    pub example: Vec<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ContextRule {
    pub symbol: String,
    pub callers: Vec<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HotWhen {
    Enabled,
    Disabled,
    Either,
}

fn default_hot() -> HotWhen {
    HotWhen::Enabled
}

impl KnowledgeBase {
    pub fn builtin() -> Result<KnowledgeBase> {
        Self::parse(BUILTIN_KB, "configs/attribution.yaml (built in)")
    }

    pub fn load(path: &Path) -> Result<KnowledgeBase> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read knowledge base {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, label: &str) -> Result<KnowledgeBase> {
        let kb: KnowledgeBase =
            serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
        for e in &kb.entries {
            for g in e.symbols.iter().chain(
                e.context
                    .iter()
                    .flat_map(|c| std::iter::once(&c.symbol).chain(c.callers.iter())),
            ) {
                glob_regex(g)
                    .with_context(|| format!("{label}: entry `{}`: bad glob `{g}`", e.id))?;
            }
        }
        Ok(kb)
    }

    /// Options covered by knowledge-base entries, active or not, so the name-match
    /// mechanism does not re-derive them.
    pub fn covered_options(&self) -> BTreeSet<String> {
        self.entries
            .iter()
            .flat_map(|e| e.options.iter().cloned())
            .collect()
    }
}

/// `kasan_*` → `^kasan_.*$`; `*` is the only wildcard.
pub fn glob_regex(glob: &str) -> Result<Regex> {
    let mut re = String::from("^");
    for (i, part) in glob.split('*').enumerate() {
        if i > 0 {
            re.push_str(".*");
        }
        re.push_str(&regex::escape(part));
    }
    re.push('$');
    Ok(Regex::new(&re)?)
}

pub(crate) fn glob_set(globs: &[String]) -> Option<Regex> {
    if globs.is_empty() {
        return None;
    }
    let alts: Vec<String> = globs
        .iter()
        .map(|g| {
            g.split('*')
                .map(regex::escape)
                .collect::<Vec<_>>()
                .join(".*")
        })
        .collect();
    Regex::new(&format!("^(?:{})$", alts.join("|"))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_kb_parses_and_is_big_enough() {
        let kb = KnowledgeBase::builtin().expect("builtin KB");
        assert!(kb.entries.len() >= 40, "{} entries", kb.entries.len());
        let mut ids = BTreeSet::new();
        for e in &kb.entries {
            assert!(ids.insert(e.id.clone()), "duplicate id {}", e.id);
            assert!(
                !e.options.is_empty() || !e.runtime.is_empty(),
                "{} has no trigger",
                e.id
            );
            assert!(
                !e.symbols.is_empty() || !e.context.is_empty(),
                "{} has no symbols",
                e.id
            );
            assert!(!e.example.is_empty(), "{} has no example stack", e.id);
        }
    }
}
