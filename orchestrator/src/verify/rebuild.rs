//! Counterfactuals that need another kernel or another boot: the candidate's host
//! as the playbook describes it, with the blamed config option or boot parameter
//! set back to the baseline's value. The verify run provisions it as its baseline
//! next to the candidate as it was, so both are measured in the same run, in pairs.
//!
//! A qemu host is rebuilt by kdelta (the option flipped on top of the candidate's
//! fragments) or booted with the edited `cmdline:`. A command host is made by the
//! user's own `up`, which gets the revert as its template's `revert` (the options to
//! build with, the boot parameters to take out and put in) and must use it: the
//! kernel is the user's to build and boot. An ssh host is one machine that cannot be
//! both at once, so kdelta says what it would need instead of guessing.

use anyhow::{bail, Result};

use super::revert::ABSENT;
use super::Item;
use crate::model::{Role, StateToggle, ToggleBy};
use crate::playbook::{
    ApplyCheck, CommandSpec, HostSpec, KernelSpec, Provider, QemuSpec, RevertVars,
};

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
    /// A host the playbook's own `up` made with the revert it was given.
    Command,
    /// The same ssh host rebooted by its `boot:` hook into the revert and back,
    /// in turns.
    Boot,
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
    let (provider, how) = match &spec.provider {
        Provider::Qemu(q) => {
            let (q, how) = reverted_qemu(items, q, check)?;
            (Provider::Qemu(q), how)
        }
        Provider::Command(c) => (Provider::Command(reverted_command(items, c)?), How::Command),
        other => bail!(
            "{} needs {} on the candidate, and an {} host is one machine that cannot run as it is and reverted at once; give it a `boot:` hook that reboots it into `revert` (kexec, grub-reboot; README: verify on one ssh host), or, if a second machine like it can be made, describe the candidate as a command host whose `up` makes it with `revert` applied (README: verify on command hosts); or verify a runtime item with --cause KEY",
            first.show(),
            if first.key.starts_with("CONFIG_") { "another kernel build" } else { "a reboot with another command line" },
            other.kind().as_str()
        ),
    };
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
            provider,
            setup: spec.setup.clone(),
            become_: spec.become_,
            work_dir: spec.work_dir.clone(),
        },
        how,
    ))
}

/// The qemu candidate with `items` reverted: options set on top of its fragments,
/// boot parameters edited in its `cmdline:`.
pub fn reverted_qemu(items: &[Item], q: &QemuSpec, check: ApplyCheck) -> Result<(QemuSpec, How)> {
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
            options.insert(item.to_string(), option_value(baseline).to_string());
            *c = check;
            how = How::Rebuild;
        } else if let Some(key) = item.strip_prefix("cmdline.") {
            let before = q.cmdline.len();
            q.cmdline.retain(|w| param_key(w) != key);
            if q.cmdline.len() == before && candidate != ABSENT {
                bail!("{item}: the candidate's `cmdline:` does not set {key} (it comes from kdelta's own boot parameters or the kernel's defaults), so there is nothing to take out");
            }
            q.cmdline.extend(param_word(key, baseline));
        } else {
            bail!("{item}: not a config option or a boot parameter");
        }
    }
    Ok((q, how))
}

/// The command candidate whose `up` gets `items` as its `revert`. An `up` that
/// never reads `revert` would make the candidate again and measure nothing: refused.
fn reverted_command(items: &[Item], c: &CommandSpec) -> Result<CommandSpec> {
    if !reads_revert(&c.up) {
        bail!(
            "{} needs a host with it reverted, and the candidate's `up` does not read `revert`, so it would make the same host again; give `up` the revert, e.g. `… {{% for o in revert.options %}} --option {{{{ o }}}}{{% endfor %}}{{% for k in revert.cmdline_remove %}} --remove {{{{ k }}}}{{% endfor %}}` (README: verify on command hosts)",
            items.iter().map(Item::show).collect::<Vec<_>>().join(", ")
        );
    }
    let mut c = c.clone();
    c.revert = revert_vars(items)?;
    Ok(c)
}

/// What a template's `revert` holds for `items`.
fn revert_vars(items: &[Item]) -> Result<RevertVars> {
    let mut r = RevertVars::default();
    for it in items {
        let (key, baseline) = (it.key.as_str(), it.baseline.as_str());
        if key.starts_with("CONFIG_") {
            r.options.push(format!("{key}={}", option_value(baseline)));
        } else if let Some(k) = key.strip_prefix("cmdline.") {
            if it.candidate != ABSENT {
                r.cmdline_remove.push(k.to_string());
            }
            r.cmdline_add.extend(param_word(k, baseline));
        } else {
            bail!("{key}: not a config option or a boot parameter");
        }
    }
    r.items = items.to_vec();
    Ok(r)
}

/// Whether `template` reads the variable `revert`: one that does not would make or
/// boot the same host again and measure nothing.
fn reads_revert(template: &str) -> bool {
    crate::playbook::template_env()
        .template_from_str(template)
        .map(|t| t.undeclared_variables(false).contains("revert"))
        .unwrap_or(false)
}

/// An ssh candidate with a `boot:` hook: the toggle that reboots it into `items`
/// reverted (`apply`, the hook rendered with them as `revert`) and back (`restore`,
/// with `revert` empty). `None` for any other host.
pub fn boot_toggle(
    items: &[Item],
    spec: &HostSpec,
    vars: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<Option<StateToggle>> {
    let Provider::Ssh(t) = &spec.provider else {
        return Ok(None);
    };
    let Some(hook) = &t.boot else {
        return Ok(None);
    };
    let shown = || items.iter().map(Item::show).collect::<Vec<_>>().join(", ");
    if !reads_revert(hook) {
        bail!(
            "{} needs the candidate rebooted with it reverted, and its `boot:` does not read `revert`, so it would boot the same kernel and command line again; give it the revert, e.g. `… {{% for k in revert.cmdline_remove %}} --remove {{{{ k }}}}{{% endfor %}}{{% for w in revert.cmdline_add %}} --add {{{{ w }}}}{{% endfor %}}` (README: verify on one ssh host)",
            shown()
        );
    }
    let render = |r: RevertVars| {
        let mut map: std::collections::BTreeMap<String, minijinja::Value> = vars
            .iter()
            .map(|(k, v)| (k.clone(), minijinja::Value::from_serialize(v)))
            .collect();
        map.insert("role".into(), minijinja::Value::from(spec.role.as_str()));
        map.insert(
            "destination".into(),
            minijinja::Value::from(t.destination.clone()),
        );
        map.insert("revert".into(), minijinja::Value::from_serialize(&r));
        crate::playbook::render(hook, &minijinja::Value::from_serialize(&map))
            .map_err(|e| e.context(format!("hosts.{}.boot: template", spec.role)))
    };
    let (first, baseline, candidate) = match items {
        [one] => (one.key.clone(), one.baseline.clone(), one.candidate.clone()),
        many => (shown(), format!("{} items", many.len()), String::new()),
    };
    Ok(Some(StateToggle {
        item: first,
        baseline,
        candidate,
        save: None,
        apply: render(revert_vars(items)?)?,
        restore: render(RevertVars::default())?,
        by: ToggleBy::Boot,
    }))
}

/// A config option's value to build with: absent in the baseline's .config reads `n`
/// (kconfig), but a value from another source may still say so.
fn option_value(baseline: &str) -> &str {
    if baseline == ABSENT {
        "n"
    } else {
        baseline
    }
}

/// `key` of a boot parameter word `key=value` or `key`.
fn param_key(word: &str) -> &str {
    word.split_once('=').map_or(word, |(k, _)| k)
}

/// The word that sets boot parameter `key` to the baseline's value, if it has one.
fn param_word(key: &str, baseline: &str) -> Option<String> {
    match baseline {
        ABSENT => None,
        "on" => Some(key.to_string()),
        v => Some(format!("{key}={v}")),
    }
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

    fn command(up: &str) -> HostSpec {
        HostSpec {
            provider: Provider::Command(CommandSpec {
                up: up.into(),
                down: "true".into(),
                known_hosts: crate::playbook::KnownHostsPolicy::Strict,
                revert: RevertVars::default(),
            }),
            ..qemu(source(), &[])
        }
    }

    /// A command host's `up` gets the revert as `revert`: the fragment lines to build
    /// with and the boot parameters to take out and put in; rendered shell-quoted.
    #[test]
    fn a_command_hosts_up_gets_the_revert() {
        let up = "make-host {% for o in revert.options %} -o {{ o }}{% endfor %}{% for k in revert.cmdline_remove %} -r {{ k }}{% endfor %}{% for w in revert.cmdline_add %} -a {{ w }}{% endfor %}";
        let items = vec![
            one("CONFIG_KASAN", ABSENT, "y").remove(0),
            one("cmdline.slub_debug", ABSENT, "FZPU").remove(0),
            one("cmdline.mitigations", "auto", "off").remove(0),
        ];
        let (r, how) = reverted_host(&items, &command(up), ApplyCheck::InlineOnly).unwrap();
        assert_eq!(how, How::Command);
        let Provider::Command(c) = &r.provider else {
            panic!()
        };
        let ctx = minijinja::context! { revert => minijinja::Value::from_serialize(&c.revert) };
        assert_eq!(
            crate::playbook::render(&c.up, &ctx).unwrap(),
            "make-host  -o CONFIG_KASAN=n -r slub_debug -r mitigations -a mitigations=auto"
        );
        assert_eq!(c.revert.items.len(), 3);
        // A plain run renders the same template with nothing to revert.
        let ctx = minijinja::context! { revert => minijinja::Value::from_serialize(RevertVars::default()) };
        assert_eq!(crate::playbook::render(&c.up, &ctx).unwrap(), "make-host ");
    }

    /// An `up` that never reads `revert` would make the candidate again: refused,
    /// with what to write; an ssh host cannot be both at once.
    #[test]
    fn a_host_that_cannot_take_the_revert_is_refused_with_the_way_out() {
        let items = one("CONFIG_KASAN", "n", "y");
        let e = reverted_host(
            &items,
            &command("aws ec2 run-instances"),
            ApplyCheck::InlineOnly,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("does not read `revert`") && e.contains("revert.options"),
            "{e}"
        );
        let e = reverted_host(&items, &ssh(None), ApplyCheck::InlineOnly)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`boot:` hook") && e.contains("command host whose `up` makes it"),
            "{e}"
        );
        assert!(boot_toggle(&items, &ssh(None), &Default::default())
            .unwrap()
            .is_none());
    }

    fn ssh(boot: Option<&str>) -> HostSpec {
        HostSpec {
            provider: Provider::Ssh(crate::playbook::SshTarget {
                destination: "admin@box".into(),
                port: None,
                user: None,
                identity_file: None,
                known_hosts: crate::playbook::KnownHostsPolicy::Strict,
                boot: boot.map(str::to_string),
            }),
            ..qemu(source(), &[])
        }
    }

    /// An ssh host's `boot:` is rendered twice: with the revert (into the reverted
    /// state) and with every list empty (back as the candidate was); the playbook's
    /// vars and the destination are there. One that ignores `revert` is refused.
    #[test]
    fn an_ssh_hosts_boot_hook_boots_into_the_revert_and_back() {
        let hook = "reboot-into {{ destination }} {{ grub }}{% for k in revert.cmdline_remove %} -{{ k }}{% endfor %}{% for w in revert.cmdline_add %} +{{ w }}{% endfor %}";
        let vars = [("grub".to_string(), serde_json::json!("entry 2"))].into();
        let items = one("cmdline.mitigations", "auto", "off");
        let t = boot_toggle(&items, &ssh(Some(hook)), &vars)
            .unwrap()
            .unwrap();
        assert_eq!(t.by, ToggleBy::Boot);
        assert_eq!(
            t.apply,
            "reboot-into admin@box 'entry 2' -mitigations +mitigations=auto"
        );
        assert_eq!(t.restore, "reboot-into admin@box 'entry 2'");
        assert_eq!((t.baseline.as_str(), t.candidate.as_str()), ("auto", "off"));
        let e = boot_toggle(&items, &ssh(Some("sudo reboot")), &vars)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not read `revert`"), "{e}");
    }
}
