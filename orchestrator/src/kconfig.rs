//! Kernel `.config` files: parse and diff. Shared by the qemu provider (checking
//! what a build applied) and the analysis (the config delta).
//!
//! Values are kept as the kernel writes them: `y`, `m`, numbers, hex and quoted strings;
//! `# CONFIG_X is not set` reads as `n`.
//!
//! An option missing from the file is either disabled (its dependency is off, so
//! Kconfig wrote nothing) or does not exist in that kernel version at all. Without the
//! Kconfig tree the two cannot be told apart for sure; the practical rule of
//! [`diff`]: configs of the same kernel version (`x.y` of the `# Linux/x86 6.1.192
//! Kernel Configuration` header) read an absent option as `n`; across versions, an
//! option absent on one side exists in one kernel only.

use std::collections::BTreeMap;
use std::path::Path;

use crate::model::{ConfigChange, ConfigChangeKind, ConfigDeltaCounts};

#[derive(Clone, Debug, Default)]
pub struct KernelConfig {
    /// Option name with its `CONFIG_` prefix → value (`y`, `m`, `n`, `"str"`, `123`).
    pub options: BTreeMap<String, String>,
    /// Lines that are neither options nor comments, with their line numbers.
    pub junk: Vec<(usize, String)>,
    /// The kernel version of the header comment (`6.1.192`), if there is one.
    pub version: Option<String>,
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
                if cfg.version.is_none() {
                    cfg.version = header_version(rest);
                }
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

    /// `6.1` of `6.1.192`: the release whose Kconfig symbols the config has.
    pub fn series(&self) -> Option<&str> {
        let v = self.version.as_deref()?;
        let mut dots = v.match_indices('.').map(|(i, _)| i);
        let _major = dots.next()?;
        Some(match dots.next() {
            Some(i) => &v[..i],
            None => v,
        })
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

/// `Linux/x86 6.1.192 Kernel Configuration` → `6.1.192`.
fn header_version(comment: &str) -> Option<String> {
    let rest = comment
        .strip_prefix("Linux/")?
        .strip_suffix(" Kernel Configuration")?;
    let (_arch, version) = rest.split_once(' ')?;
    let version = version.trim();
    (version.starts_with(|c: char| c.is_ascii_digit()) && version.contains('.'))
        .then(|| version.to_string())
}

/// Do the two configs come from the same kernel release (`x.y`)? When a header is
/// missing this cannot be told: read as the same, so absent stays `n` (what Kconfig
/// means by it) and the option stays blamable.
pub fn same_series(base: &KernelConfig, cand: &KernelConfig) -> bool {
    match (base.series(), cand.series()) {
        (Some(b), Some(c)) => b == c,
        _ => true,
    }
}

/// The value written for an option one kernel's file lacks across versions.
pub const ABSENT: &str = "(absent)";

/// Options that differ, sorted by name, each with how it differs
/// ([`ConfigChangeKind`]): `is not set` and absent in the same kernel version are
/// equal (`n`); across versions an option absent on one side exists in one kernel
/// only.
pub fn diff(base: &KernelConfig, cand: &KernelConfig) -> Vec<ConfigChange> {
    let same = same_series(base, cand);
    let mut names: Vec<&String> = base.options.keys().chain(cand.options.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| {
            let (bv, cv) = (base.options.get(n), cand.options.get(n));
            if !same && (bv.is_none() || cv.is_none()) {
                return Some(ConfigChange {
                    option: n.clone(),
                    baseline: bv.map_or(ABSENT, String::as_str).to_string(),
                    candidate: cv.map_or(ABSENT, String::as_str).to_string(),
                    kind: ConfigChangeKind::OneKernelOnly,
                });
            }
            let (b, c) = (base.get(n), cand.get(n));
            (b != c).then(|| ConfigChange {
                option: n.clone(),
                baseline: b.to_string(),
                candidate: c.to_string(),
                kind: if (b == "n") != (c == "n") {
                    ConfigChangeKind::Toggled
                } else {
                    ConfigChangeKind::Value
                },
            })
        })
        .collect()
}

/// How many options differ in each way.
pub fn counts(
    delta: &[ConfigChange],
    base: &KernelConfig,
    cand: &KernelConfig,
) -> ConfigDeltaCounts {
    let n = |k: ConfigChangeKind| delta.iter().filter(|c| c.kind == k).count();
    ConfigDeltaCounts {
        value: n(ConfigChangeKind::Value),
        toggled: n(ConfigChangeKind::Toggled),
        one_kernel_only: n(ConfigChangeKind::OneKernelOnly),
        baseline_version: base.version.clone(),
        candidate_version: cand.version.clone(),
    }
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
        assert_eq!(d[0].kind, ConfigChangeKind::Toggled);
        assert!(diff(
            &KernelConfig::parse("# CONFIG_Q is not set"),
            &KernelConfig::parse("")
        )
        .is_empty());
    }

    const V61: &str = "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.1.192 Kernel Configuration\n#\n";
    const V612: &str = "#\n# Linux/x86 6.12.117 Kernel Configuration\n#\n";

    /// Issue 14: an option absent from one file read as `n` (`CONFIG_KASAN_SHADOW_OFFSET
    /// n → 0xdffffc…`) even across kernel versions, where it exists in one only.
    #[test]
    fn absent_across_versions_exists_in_one_kernel_only() {
        let a = KernelConfig::parse(&format!(
            "{V61}CONFIG_HZ=250\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_OLD=y\n"
        ));
        let b = KernelConfig::parse(&format!(
            "{V612}CONFIG_HZ=1000\n# CONFIG_A is not set\nCONFIG_B=m\nCONFIG_KASAN_SHADOW_OFFSET=0xdffffc0000000000\n"
        ));
        assert_eq!(a.version.as_deref(), Some("6.1.192"));
        assert_eq!((a.series(), b.series()), (Some("6.1"), Some("6.12")));
        let d = diff(&a, &b);
        let got: Vec<(&str, &str, &str, ConfigChangeKind)> = d
            .iter()
            .map(|c| {
                (
                    c.option.as_str(),
                    c.baseline.as_str(),
                    c.candidate.as_str(),
                    c.kind,
                )
            })
            .collect();
        use ConfigChangeKind::*;
        assert_eq!(
            got,
            [
                ("CONFIG_A", "y", "n", Toggled),
                ("CONFIG_B", "n", "m", Toggled),
                ("CONFIG_HZ", "250", "1000", Value),
                (
                    "CONFIG_KASAN_SHADOW_OFFSET",
                    ABSENT,
                    "0xdffffc0000000000",
                    OneKernelOnly
                ),
                ("CONFIG_OLD", "y", ABSENT, OneKernelOnly),
            ]
        );
        let n = counts(&d, &a, &b);
        assert_eq!((n.value, n.toggled, n.one_kernel_only), (1, 2, 2));
    }

    /// In the same kernel version an absent option is off because a dependency is:
    /// disabled, and blamable (the lab's KASAN kernels: the KASAN_* options exist
    /// only in the KASAN build's file).
    #[test]
    fn absent_in_the_same_version_is_disabled() {
        let a = KernelConfig::parse(&format!("{V61}# CONFIG_KASAN is not set\n"));
        let b = KernelConfig::parse(&format!(
            "{V61}CONFIG_KASAN=y\nCONFIG_KASAN_GENERIC=y\nCONFIG_KASAN_SHADOW_OFFSET=0xdffffc0000000000\n"
        ));
        let d = diff(&a, &b);
        assert_eq!(d.len(), 3);
        assert!(
            d.iter().all(|c| c.kind == ConfigChangeKind::Toggled),
            "{d:?}"
        );
        assert!(d.iter().all(|c| c.baseline == "n"), "{d:?}");
    }

    /// The real Debian configs: 6.1 → 6.12 is mostly options of one kernel only.
    #[test]
    fn debian_6_1_to_6_12() {
        let a = KernelConfig::parse(include_str!(
            "../../tests/fixtures/kconfig/config-6.1.0-56-amd64"
        ));
        let b = KernelConfig::parse(include_str!(
            "../../tests/fixtures/kconfig/config-6.12.117+deb12-amd64"
        ));
        let d = diff(&a, &b);
        let n = counts(&d, &a, &b);
        // The old diff (absent = n everywhere) had 847 rows, 682 of them options of
        // one kernel only read as `n`.
        assert_eq!(
            (n.value + n.toggled, n.one_kernel_only),
            (165, 1255),
            "{n:?}"
        );

        // Oracle: the kernel's scripts/diffconfig on the same two files (see
        // tests/fixtures/kconfig/SOURCE.md) lists exactly these rows.
        let oracle = include_str!(
            "../../tests/fixtures/kconfig/diffconfig-6.1.0-56-amd64-to-6.12.117+deb12-amd64.txt"
        );
        let mut want: Vec<(String, String, String)> = oracle
            .lines()
            .filter_map(|l| {
                let (sign, rest) = l.split_at_checked(1)?;
                let row = match sign {
                    "-" | "+" => {
                        let (name, v) = rest.split_once(' ')?;
                        let (b, c) = if sign == "-" {
                            (v, ABSENT)
                        } else {
                            (ABSENT, v)
                        };
                        (name.to_string(), b.to_string(), c.to_string())
                    }
                    _ => {
                        let (name, vals) = rest.split_once(' ')?;
                        let (b, c) = vals.split_once(" -> ")?;
                        (name.to_string(), b.to_string(), c.to_string())
                    }
                };
                Some(row)
            })
            .collect();
        want.sort();
        let mut got: Vec<(String, String, String)> = d
            .iter()
            .map(|c| {
                let name = c.option.trim_start_matches("CONFIG_").to_string();
                (name, c.baseline.clone(), c.candidate.clone())
            })
            .collect();
        got.sort();
        assert_eq!(want.len(), oracle.lines().count());
        assert_eq!(got, want);
    }
}
