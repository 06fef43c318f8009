//! How to set one runtime delta item back to the baseline's value on a live host,
//! and put it back: the [`StateToggle`] `kdelta verify` measures with.
//!
//! Only items a command can change on a running kernel are here. A kconfig option
//! needs another kernel and a boot parameter a reboot: those are refused with a
//! message that says so, never approximated.

use anyhow::{bail, Result};

use crate::exec::shell::quote;
use crate::model::{CauseKind, StateToggle};

/// What `(absent)` reads as in a runtime delta.
pub(crate) const ABSENT: &str = "(absent)";

/// The toggle of `item`, whose baseline and candidate values the delta recorded.
pub fn toggle(item: &str, baseline: &str, candidate: &str) -> Result<StateToggle> {
    let t = |save: Option<String>, apply: String, restore: String| StateToggle {
        item: item.to_string(),
        baseline: baseline.to_string(),
        candidate: candidate.to_string(),
        save,
        apply,
        restore,
        by: Default::default(),
    };
    let kind = if item.starts_with("CONFIG_") {
        CauseKind::Kconfig
    } else {
        CauseKind::of_key(item)
    };
    match kind {
        CauseKind::Kconfig => bail!(
            "{item} is a kernel config option: it cannot be set on a live host; it needs another kernel (verify::rebuild)"
        ),
        CauseKind::Cmdline => bail!(
            "{item} is a boot parameter: it cannot be set on a live host; it needs a reboot (verify::rebuild)"
        ),
        CauseKind::Sysctl | CauseKind::Runtime => {}
    }
    if let Some(key) = item.strip_prefix("sysctl.") {
        if baseline == ABSENT || candidate == ABSENT {
            bail!("{item} exists on one host only ({baseline} → {candidate}): there is no value to set it back to");
        }
        let set = |v: &str| format!("sysctl -q -w {}", quote(&format!("{key}={v}")));
        return Ok(t(None, set(baseline), set(candidate)));
    }
    if item.starts_with("netfilter.nft_") {
        if !matches!(baseline, "0" | ABSENT) {
            bail!("{item}: the baseline has a ruleset of its own ({baseline}); `kdelta verify` can flush the candidate's ruleset but not rebuild the baseline's");
        }
        // The candidate's ruleset is kept in the work folder and loaded back.
        let saved = "{{ work }}/verify-ruleset.nft";
        return Ok(t(
            Some(format!("nft list ruleset > {saved}")),
            "nft flush ruleset".into(),
            format!("nft flush ruleset && nft -f {saved}"),
        ));
    }
    if item == "thp" || item == "thp_defrag" {
        let file = match item {
            "thp" => "/sys/kernel/mm/transparent_hugepage/enabled",
            _ => "/sys/kernel/mm/transparent_hugepage/defrag",
        };
        let set = |v: &str| format!("echo {} > {file}", quote(v));
        return Ok(t(None, set(baseline), set(candidate)));
    }
    if let Some(rest) = item.strip_prefix("nic.") {
        if let Some((dev, what)) = rest.split_once('.') {
            let dev = quote(dev);
            match what {
                "mtu" => {
                    let set = |v: &str| format!("ip link set dev {dev} mtu {}", quote(v));
                    return Ok(t(None, set(baseline), set(candidate)));
                }
                "qdisc" | "driver" => {}
                feature if is_on_off(baseline) && is_on_off(candidate) => {
                    let set = |v: &str| format!("ethtool -K {dev} {} {}", quote(feature), quote(v));
                    return Ok(t(None, set(baseline), set(candidate)));
                }
                _ => {}
            }
        }
    }
    bail!(
        "{item} ({baseline} → {candidate}): `kdelta verify` does not know how to set it back on a live host; it reverts sysctl.*, netfilter.nft_* (to an empty ruleset), thp, thp_defrag, nic.DEV.mtu and nic.DEV.FEATURE (on/off)"
    )
}

fn is_on_off(v: &str) -> bool {
    matches!(v, "on" | "off")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_values_are_quoted() {
        let t = toggle(
            "sysctl.net.ipv4.tcp_rmem",
            "4096 131072 6291456",
            "4096 1 2",
        )
        .unwrap();
        assert_eq!(
            t.apply,
            "sysctl -q -w 'net.ipv4.tcp_rmem=4096 131072 6291456'"
        );
        assert_eq!(t.restore, "sysctl -q -w 'net.ipv4.tcp_rmem=4096 1 2'");
        assert!(t.save.is_none());
        let t = toggle("sysctl.x", "1; reboot", "0").unwrap();
        assert_eq!(t.apply, "sysctl -q -w 'x=1; reboot'");
    }

    #[test]
    fn a_ruleset_is_saved_flushed_and_loaded_back() {
        let t = toggle("netfilter.nft_rules", "0", "2001").unwrap();
        assert_eq!(
            t.save.as_deref(),
            Some("nft list ruleset > {{ work }}/verify-ruleset.nft")
        );
        assert_eq!(t.apply, "nft flush ruleset");
        assert!(t.restore.ends_with("nft -f {{ work }}/verify-ruleset.nft"));
        let e = toggle("netfilter.nft_rules", "10", "2001")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ruleset of its own"), "{e}");
    }

    #[test]
    fn nic_features_and_refusals() {
        let t = toggle("nic.eth0.tcp-segmentation-offload", "on", "off").unwrap();
        assert_eq!(t.apply, "ethtool -K eth0 tcp-segmentation-offload on");
        let t = toggle("nic.veth0.mtu", "1500", "9000").unwrap();
        assert_eq!(t.restore, "ip link set dev veth0 mtu 9000");
        for (item, says) in [
            ("CONFIG_KASAN", "another kernel"),
            ("cmdline.init_on_free", "reboot"),
            ("nic.eth0.qdisc", "does not know"),
            ("sysctl.net.core.busy_poll", "one host only"),
        ] {
            let b = if item.starts_with("sysctl") {
                "(absent)"
            } else {
                "x"
            };
            let e = toggle(item, b, "y").unwrap_err().to_string();
            assert!(e.contains(says), "{item}: {e}");
        }
    }
}
