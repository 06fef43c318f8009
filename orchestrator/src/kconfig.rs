//! Kernel `.config` files: parse and diff. Shared by the qemu provider (checking
//! what a build applied) and the analysis (the config delta).
//!
//! Values are kept as the kernel writes them: `y`, `m`, numbers, hex and quoted strings;
//! `# CONFIG_X is not set` and an absent option both read as `n` (Kconfig treats them
//! the same), but the diff keeps which one it was for the report.

use std::collections::BTreeMap;
use std::path::Path;

use crate::model::ConfigChange;

#[derive(Clone, Debug, Default)]
pub struct KernelConfig {
    /// Option name with its `CONFIG_` prefix → value (`y`, `m`, `n`, `"str"`, `123`).
    pub options: BTreeMap<String, String>,
    /// Lines that are neither options nor comments, with their line numbers.
    pub junk: Vec<(usize, String)>,
}

impl KernelConfig {
    pub fn parse(text: &str) -> KernelConfig {
        let mut cfg = KernelConfig::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                if let Some(name) = rest.strip_suffix(" is not set") {
                    if is_option_name(name) {
                        cfg.options.insert(name.to_string(), "n".to_string());
                    }
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            match line.split_once('=') {
                Some((name, value)) if is_option_name(name) => {
                    cfg.options.insert(name.to_string(), value.to_string());
                }
                _ => {
                    if cfg.junk.len() < 20 {
                        cfg.junk.push((i + 1, raw.chars().take(120).collect()));
                    }
                }
            }
        }
        cfg
    }

    pub fn read(path: &Path) -> std::io::Result<KernelConfig> {
        let bytes = std::fs::read(path)?;
        Ok(KernelConfig::parse(&String::from_utf8_lossy(&bytes)))
    }

    /// The value, with absent options read as `n`.
    pub fn get(&self, name: &str) -> &str {
        self.options.get(name).map_or("n", String::as_str)
    }

    pub fn is_enabled(&self, name: &str) -> bool {
        matches!(self.get(name), "y" | "m")
    }

    /// The architecture the config was made for, from `CONFIG_X86_64=y` and friends.
    pub fn arch(&self) -> Option<&'static str> {
        const ARCHES: &[(&str, &str)] = &[
            ("CONFIG_X86_64", "x86_64"),
            ("CONFIG_X86_32", "i386"),
            ("CONFIG_ARM64", "arm64"),
            ("CONFIG_ARM", "arm"),
            ("CONFIG_PPC64", "ppc64"),
            ("CONFIG_S390", "s390"),
            ("CONFIG_RISCV", "riscv"),
        ];
        ARCHES
            .iter()
            .find(|(opt, _)| self.get(opt) == "y")
            .map(|(_, a)| *a)
    }
}

fn is_option_name(s: &str) -> bool {
    s.len() > 7
        && s.starts_with("CONFIG_")
        && s.bytes().all(|b| {
            b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b.is_ascii_lowercase()
        })
}

/// Options whose value differs, sorted by name. Absent and `is not set` are equal.
pub fn diff(base: &KernelConfig, cand: &KernelConfig) -> Vec<ConfigChange> {
    let mut names: Vec<&String> = base.options.keys().chain(cand.options.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| {
            let (b, c) = (base.get(n), cand.get(n));
            (b != c).then(|| ConfigChange {
                option: n.clone(),
                baseline: b.to_string(),
                candidate: c.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_value_forms() {
        let c = KernelConfig::parse(
            "#\n# Automatically generated\nCONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=\"str ing\"\nCONFIG_E=0x10\nCONFIG_F=250\ngarbage line\n",
        );
        assert_eq!(c.get("CONFIG_A"), "y");
        assert_eq!(c.get("CONFIG_B"), "m");
        assert_eq!(c.get("CONFIG_C"), "n");
        assert_eq!(c.get("CONFIG_D"), "\"str ing\"");
        assert_eq!(c.get("CONFIG_E"), "0x10");
        assert_eq!(c.get("CONFIG_F"), "250");
        assert_eq!(c.get("CONFIG_ABSENT"), "n");
        assert_eq!(c.junk, vec![(9, "garbage line".to_string())]);
    }

    #[test]
    fn absent_equals_not_set() {
        let a = KernelConfig::parse("# CONFIG_KASAN is not set\nCONFIG_X=y\n");
        let b = KernelConfig::parse("CONFIG_X=y\nCONFIG_KASAN=y\n");
        let d = diff(&a, &b);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].option, "CONFIG_KASAN");
        assert_eq!(
            (d[0].baseline.as_str(), d[0].candidate.as_str()),
            ("n", "y")
        );
        assert!(diff(
            &KernelConfig::parse("# CONFIG_Q is not set"),
            &KernelConfig::parse("")
        )
        .is_empty());
    }
}
