//! Counterfactuals that need another kernel or another boot: the candidate's host
//! as the playbook describes it, with the blamed config option or boot parameter
//! set back to the baseline's value. The verify run provisions it as its baseline
//! next to the candidate as it was, so both are measured in the same run, in pairs.
//!
//! Only the qemu provider can do this today: it builds kernels from source (with
//! the option flipped on top of the candidate's fragments) and boots with the
//! playbook's `cmdline:`. On ssh and command hosts the kernel is the user's to
//! build and boot, so kdelta says what it would need instead of guessing.

use anyhow::{bail, Result};

use super::revert::ABSENT;
use super::Item;
use crate::model::Role;
use crate::playbook::{ApplyCheck, HostSpec, KernelSpec, Provider};

/// How the counterfactual host differs from the candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// Set on the live host before each repeat, restored after.
    Live,
    /// Another kernel, built with the option flipped.
    Rebuild,
    /// The same kernel booted with the edited command line.
    Reboot,
}

/// The candidate's spec with `items` (`CONFIG_*` or `cmdline.*`) reverted, as the
/// verify run's baseline. `check` says whether each option must survive
/// `olddefconfig` (`kdelta verify`: an option that cannot be reverted alone is an
/// error naming it) or not (a bisect step: Kconfig collapsing a set back is an
/// outcome, read from the guests' configs).
pub fn reverted_host(
    items: &[Item],
    spec: &HostSpec,
    check: ApplyCheck,
) -> Result<(HostSpec, How)> {
    let Some(first) = items.first() else {
        bail!("nothing to revert");
    };
    let Provider::Qemu(q) = &spec.provider else {
        bail!(
            "{} needs {} on the candidate, and on a {} host that is the user's own build, install and reboot, which kdelta cannot do yet; A/B it on a qemu host, or verify a runtime item with --cause KEY",
            first.show(),
            if first.key.starts_with("CONFIG_") { "another kernel build" } else { "a reboot with another command line" },
            spec.provider.kind().as_str()
        );
    };
    let mut q = q.clone();
    let mut how = How::Reboot;
    for it in items {
        let (item, baseline, candidate) = (&it.key, it.baseline.as_str(), it.candidate.as_str());
        if item.starts_with("CONFIG_") {
            let KernelSpec::Source {
                options, check: c, ..
            } = &mut q.kernel
            else {
                bail!("{item}: the candidate boots a prebuilt kernel (an image or a package), which kdelta cannot rebuild with the option flipped; give it `kernel: {{ source: …, fragments: … }}` to verify a config option");
            };
            // Absent in the baseline's .config reads `n` already (kconfig), but a
            // value from another source may still say so.
            let value = if baseline == ABSENT { "n" } else { baseline };
            options.insert(item.to_string(), value.to_string());
            *c = check;
            how = How::Rebuild;
        } else if let Some(key) = item.strip_prefix("cmdline.") {
            let before = q.cmdline.len();
            q.cmdline
                .retain(|w| w.split_once('=').map_or(w.as_str(), |(k, _)| k) != key);
            if q.cmdline.len() == before && candidate != ABSENT {
                bail!("{item}: the candidate's `cmdline:` does not set {key} (it comes from kdelta's own boot parameters or the kernel's defaults), so there is nothing to take out");
            }
            match baseline {
                ABSENT => {}
                "on" => q.cmdline.push(key.to_string()),
                v => q.cmdline.push(format!("{key}={v}")),
            }
        } else {
            bail!("{item}: not a config option or a boot parameter");
        }
    }
    let what = match items {
        [one] => format!(
            "{} reverted ({} → {})",
            one.key, one.candidate, one.baseline
        ),
        many => format!("{} items reverted", many.len()),
    };
    let label = format!("{}, {what}", spec.label.as_deref().unwrap_or("candidate"));
    Ok((
        HostSpec {
            role: Role::Baseline,
            label: Some(label),
            provider: Provider::Qemu(q),
            setup: spec.setup.clone(),
            become_: spec.become_,
            work_dir: spec.work_dir.clone(),
        },
        how,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::{Accel, QemuSpec, SourceTree};
    use std::collections::BTreeMap;

    fn qemu(kernel: KernelSpec, cmdline: &[&str]) -> HostSpec {
        HostSpec {
            role: Role::Candidate,
            label: Some("kasan".into()),
            provider: Provider::Qemu(QemuSpec {
                kernel,
                memory_mb: 512,
                cpus: 1,
                tools: vec![],
                accel: Accel::Tcg,
                cmdline: cmdline.iter().map(|s| s.to_string()).collect(),
                rootfs: Default::default(),
                modules: vec![],
            }),
            setup: vec![],
            become_: Default::default(),
            work_dir: "/tmp".into(),
        }
    }

    fn one(key: &str, b: &str, c: &str) -> Vec<Item> {
        vec![Item {
            key: key.into(),
            baseline: b.into(),
            candidate: c.into(),
        }]
    }

    fn source() -> KernelSpec {
        KernelSpec::Source {
            source: SourceTree::DebianPackage("linux-source-6.1".into()),
            base: "tinyconfig".into(),
            fragments: vec!["kasan.config".into()],
            options: BTreeMap::new(),
            check: ApplyCheck::All,
        }
    }

    #[test]
    fn config_option_is_flipped_inline_and_dependents_may_go() {
        let (h, how) = reverted_host(
            &one("CONFIG_KASAN", "n", "y"),
            &qemu(source(), &[]),
            ApplyCheck::InlineOnly,
        )
        .unwrap();
        assert_eq!(how, How::Rebuild);
        assert_eq!(h.role, Role::Baseline);
        assert_eq!(
            h.label.as_deref(),
            Some("kasan, CONFIG_KASAN reverted (y → n)")
        );
        let Provider::Qemu(q) = &h.provider else {
            panic!()
        };
        let KernelSpec::Source {
            options,
            check,
            fragments,
            ..
        } = &q.kernel
        else {
            panic!()
        };
        assert_eq!(options.get("CONFIG_KASAN").map(String::as_str), Some("n"));
        assert_eq!(*check, ApplyCheck::InlineOnly);
        assert_eq!(fragments.len(), 1, "the candidate's fragments stay");
    }

    #[test]
    fn prebuilt_kernels_and_ssh_hosts_are_refused_with_the_reason() {
        let img = KernelSpec::Image {
            path: "bzImage".into(),
        };
        let e = reverted_host(
            &one("CONFIG_KASAN", "n", "y"),
            &qemu(img, &[]),
            ApplyCheck::InlineOnly,
        )
        .unwrap_err();
        assert!(e.to_string().contains("prebuilt"), "{e}");
        let mut h = qemu(source(), &[]);
        h.provider = Provider::Lab(Default::default());
        let e = reverted_host(
            &one("cmdline.slub_debug", ABSENT, "FZPU"),
            &h,
            ApplyCheck::InlineOnly,
        )
        .unwrap_err();
        assert!(e.to_string().contains("reboot"), "{e}");
    }

    #[test]
    fn boot_parameter_is_taken_out_or_set_back() {
        let h = qemu(source(), &["slub_debug=FZPU", "mitigations=off"]);
        let (r, how) = reverted_host(
            &one("cmdline.slub_debug", ABSENT, "FZPU"),
            &h,
            ApplyCheck::InlineOnly,
        )
        .unwrap();
        assert_eq!(how, How::Reboot);
        let Provider::Qemu(q) = &r.provider else {
            panic!()
        };
        assert_eq!(q.cmdline, vec!["mitigations=off"]);
        let (r, _) = reverted_host(
            &one("cmdline.mitigations", "auto", "off"),
            &h,
            ApplyCheck::InlineOnly,
        )
        .unwrap();
        let Provider::Qemu(q) = &r.provider else {
            panic!()
        };
        assert_eq!(q.cmdline, vec!["slub_debug=FZPU", "mitigations=auto"]);
        let e = reverted_host(
            &one("cmdline.quiet", ABSENT, "on"),
            &h,
            ApplyCheck::InlineOnly,
        )
        .unwrap_err();
        assert!(e.to_string().contains("nothing to take out"), "{e}");
    }
}
