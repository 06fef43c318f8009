//! The runtime delta: `facts.json` of each side flattened into keys
//! (`cmdline.mitigations`, `sysctl.net.core.busy_poll`, `nic.eth0.tso` …), each a
//! knob someone chose or a confounder (kernel version, hardware), and compared.
//! Keys that change by themselves (counters, random ids) are never a delta;
//! sections a side did not capture compare as unknown, not as a difference.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Facts, KeyKind, RuntimeChange};

/// Runtime delta from two facts files.
pub fn runtime_delta(b: &Facts, c: &Facts) -> Vec<RuntimeChange> {
    let fb = flatten(b);
    let fc = flatten(c);
    let keys: BTreeSet<&String> = fb.keys().chain(fc.keys()).collect();
    let absent = || "(absent)".to_string();
    let mut out = Vec::new();
    for k in keys {
        let (baseline, candidate, kind) = match (fb.get(k), fc.get(k)) {
            (Some(x), Some(y)) if x.0 != y.0 => (x.0.clone(), y.0.clone(), x.1),
            (Some(x), None) if one_sided_counts(k, &fc) => (x.0.clone(), absent(), x.1),
            (None, Some(y)) if one_sided_counts(k, &fb) => (absent(), y.0.clone(), y.1),
            _ => continue,
        };
        out.push(RuntimeChange {
            key: k.clone(),
            baseline,
            candidate,
            kind,
        });
    }
    out
}

/// Sysctls that change by themselves (counters, random values, names): never a delta.
fn volatile_sysctl(k: &str) -> bool {
    const EXACT: &[&str] = &[
        "fs.dentry-state",
        "fs.dentry-negative",
        "fs.file-nr",
        "fs.inode-nr",
        "fs.inode-state",
        "fs.aio-nr",
        "kernel.ns_last_pid",
        "kernel.hostname",
        "kernel.domainname",
        "kernel.pty.nr",
        "net.netfilter.nf_conntrack_count",
        "net.core.netdev_rss_key",
        // Random per boot, like the RSS key: two boots of one kernel differ in it.
        "net.ipv4.tcp_fastopen_key",
        "kernel.random.entropy_avail",
        "kernel.random.boot_id",
        // Which loader started this boot (GRUB, QEMU, kexec): a boot hook's kexec
        // changes it, the kernel's behaviour it does not.
        "kernel.bootloader_type",
        "kernel.bootloader_version",
        // The build's number and date (`#2 SMP Fri Dec 4 …`): the kernel is compared
        // as `kernel`, and a rebuild of the same source differs here.
        "kernel.version",
        "kernel.osrelease",
        "kernel.random.uuid",
        "fs.overflowuid",
        "kernel.sched_domain",
        "kernel.tainted",
        "vm.stat_refresh",
    ];
    const PREFIX: &[&str] = &[
        "kernel.random.",
        "fs.quota.",
        "fs.binfmt_misc.",
        "dev.cdrom.",
        "kernel.sched_domain.",
    ];
    EXACT.contains(&k) || PREFIX.iter().any(|p| k.starts_with(p)) || k.ends_with(".stable_secret")
}

/// Sysctls sized by the kernel from memory or CPU count: differences are
/// consequences of hardware, listed as confounders.
fn derived_sysctl(k: &str) -> bool {
    const EXACT: &[&str] = &[
        "fs.file-max",
        "fs.nr_open",
        "kernel.threads-max",
        "kernel.pid_max",
        "vm.min_free_kbytes",
        "vm.lowmem_reserve_ratio",
        "net.ipv4.tcp_mem",
        "net.ipv4.udp_mem",
        "net.sctp.sctp_mem",
        "net.ipv4.tcp_max_orphans",
        "net.ipv4.tcp_max_syn_backlog",
        "net.ipv4.tcp_max_tw_buckets",
        "net.ipv4.tcp_child_ehash_entries",
        "net.ipv4.tcp_ehash_entries",
        "net.netfilter.nf_conntrack_max",
        "net.netfilter.nf_conntrack_buckets",
        "net.nf_conntrack_max",
        "kernel.perf_event_max_sample_rate",
        "kernel.perf_cpu_time_max_percent",
        "kernel.msgmni",
        "kernel.shmmni",
        "user.max_inotify_watches",
        "vm.nr_hugepages_mempolicy",
        "kernel.keys.maxbytes",
        "kernel.sched_util_clamp_min_rt_default",
        "net.ipv4.ip_local_reserved_ports",
        "vm.watermark_scale_factor",
        // Sized from memory at boot too (seen moving with KASAN's shadow memory in
        // a verify run: no knob was set).
        "fs.epoll.max_user_watches",
        "net.ipv4.inet_peer_threshold",
        "vm.user_reserve_kbytes",
        "vm.admin_reserve_kbytes",
    ];
    EXACT.contains(&k)
        || k.starts_with("user.max_")
        || k.starts_with("net.ipv4.route.") && k.ends_with("max_size")
}

/// Interface-specific keys: hosts with different NIC names produce these one-sided.
fn per_interface(k: &str) -> bool {
    [
        "net.ipv4.conf.",
        "net.ipv6.conf.",
        "net.ipv4.neigh.",
        "net.ipv6.neigh.",
        "net.mpls.conf.",
    ]
    .iter()
    .any(|p| k.starts_with(p))
        && !k.contains(".all.")
        && !k.contains(".default.")
}

/// Kernel command line parameters that are about booting, not behaviour.
fn boot_only_param(k: &str) -> bool {
    const SKIP: &[&str] = &[
        "BOOT_IMAGE",
        "root",
        "initrd",
        "ro",
        "rw",
        "quiet",
        "splash",
        "rootwait",
        "rootfstype",
        "rootflags",
        "resume",
        "resume_offset",
        "LANG",
        "console",
        "earlyprintk",
        "vt.handoff",
        "loglevel",
        "init",
        "net.ifnames",
        "biosdevname",
        "crashkernel",
        "rd.lvm.lv",
        "rd.luks.uuid",
        "rhgb",
        "panic",
        "printk.devkmsg",
        "ignore_loglevel",
        "no_timer_check",
        "nvme_core.io_timeout",
        "systemd.unified_cgroup_hierarchy",
        "ip",
        "rdinit",
    ];
    SKIP.contains(&k)
        || k.starts_with("rd.")
        || k.starts_with("systemd.")
        || k.starts_with("kdelta.")
}

/// Parses `/proc/cmdline` into parameters; flags read as `on`. Repeated ones keep the last.
pub fn cmdline_params(cmdline: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = cmdline.trim();
    while !rest.is_empty() {
        // Values may be quoted: `dyndbg="file x +p"`.
        let mut end = 0;
        let mut quoted = false;
        for (i, ch) in rest.char_indices() {
            if ch == '"' {
                quoted = !quoted;
            }
            if ch.is_whitespace() && !quoted {
                break;
            }
            end = i + ch.len_utf8();
        }
        let tok = &rest[..end];
        rest = rest[end..].trim_start();
        if tok == "--" {
            break;
        }
        let (k, v) = tok.split_once('=').unwrap_or((tok, "on"));
        if !k.is_empty() && !boot_only_param(k) {
            out.insert(k.to_string(), v.trim_matches('"').to_string());
        }
    }
    out
}

/// Flattens facts into `key → (value, kind)`. Sections a side did not capture are
/// absent, so they compare as "unknown" rather than as a difference.
pub fn flatten(f: &Facts) -> BTreeMap<String, (String, KeyKind)> {
    use KeyKind::*;
    let mut m = BTreeMap::new();
    let mut put = |k: String, v: String, kind| {
        m.insert(k, (v, kind));
    };
    for (k, v, kind) in [
        ("kernel", &f.kernel, Confounder),
        ("cpu_model", &f.cpu_model, Confounder),
        ("virtualization", &f.virtualization, Confounder),
        ("os", &f.os, Confounder),
        ("cpufreq_governor", &f.cpufreq_governor, Knob),
        ("thp", &f.thp, Knob),
    ] {
        if let Some(v) = v {
            put(k.to_string(), v.clone(), kind);
        }
    }
    if let Some(n) = f.nr_cpus {
        put("nr_cpus".into(), n.to_string(), Confounder);
    }
    if let Some(mem) = f.memory_kb {
        // Round to GiB: a few MiB of firmware reservations are no difference.
        put(
            "memory_gib".into(),
            format!("{:.0}", mem as f64 / 1048576.0),
            Confounder,
        );
    }
    if let Some(c) = &f.cmdline {
        for (k, v) in cmdline_params(c) {
            put(format!("cmdline.{k}"), v, Knob);
        }
        put("cmdline".into(), String::new(), Knob); // marks the section as captured
    }
    for (k, v) in &f.sysctl {
        if volatile_sysctl(k) {
            continue;
        }
        let kind = if derived_sysctl(k) { Confounder } else { Knob };
        put(
            format!("sysctl.{k}"),
            v.split_whitespace().collect::<Vec<_>>().join(" "),
            kind,
        );
    }
    for (k, v) in &f.mitigations {
        put(format!("mitigations.{k}"), v.clone(), Knob);
    }
    for n in &f.nic {
        if let Some(mtu) = n.mtu {
            put(format!("nic.{}.mtu", n.name), mtu.to_string(), Knob);
        }
        if let Some(q) = &n.qdisc {
            put(format!("nic.{}.qdisc", n.name), q.clone(), Knob);
        }
        if let Some(d) = &n.driver {
            put(format!("nic.{}.driver", n.name), d.clone(), Confounder);
        }
        for (feat, state) in &n.features {
            put(format!("nic.{}.{feat}", n.name), state.clone(), Knob);
        }
    }
    for (k, v) in &f.extra {
        match v {
            serde_json::Value::Object(o) => {
                for (sk, sv) in o {
                    let s = crate::analyze::facts_read::scalar_text(sv)
                        .unwrap_or_else(|| sv.to_string());
                    let key = format!("{k}.{sk}");
                    // The machine's shape, like `nr_cpus`: not a knob. systemd sizes a
                    // session's pids.max from kernel.threads-max (memory), so it moves
                    // with a boot that took a little more or less memory.
                    let kind = if matches!(
                        key.as_str(),
                        "cpu.online" | "cpu.numa_nodes" | "cgroup.self_pids_max"
                    ) {
                        Confounder
                    } else {
                        Knob
                    };
                    put(key, s, kind);
                }
            }
            scalar => {
                let Some(s) = crate::analyze::facts_read::scalar_text(scalar) else {
                    continue;
                };
                match k.as_str() {
                    "perf_event_paranoid" | "kptr_restrict" => {
                        put(format!("extra.{k}"), s, Confounder)
                    }
                    // The build and the capture, not the kernel's behaviour: the
                    // version itself is compared as `kernel`.
                    "proc_version"
                    | "kernel_config_source"
                    | "perf_broken"
                    | "is_root"
                    | "login_user" => {}
                    "arch" => put("arch".into(), s, Confounder),
                    // `thp_defrag`, and what a hand-written file adds at the top.
                    _ => put(k.clone(), s, Knob),
                }
            }
        }
    }
    if let Some(p) = &f.perf_version {
        put("perf_version".into(), p.clone(), Confounder);
    }
    m
}

/// Whether a one-sided key should still count as a difference.
pub fn one_sided_counts(key: &str, other: &BTreeMap<String, (String, KeyKind)>) -> bool {
    if key.starts_with("cmdline.") {
        return other.contains_key("cmdline");
    }
    if let Some(k) = key.strip_prefix("sysctl.") {
        return !per_interface(k) && other.keys().any(|o| o.starts_with("sysctl."));
    }
    if key.starts_with("nic.") || key.starts_with("block.") {
        // Compare NICs and disks only by a name both hosts have.
        let mut parts = key.split('.');
        let (group, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        return other
            .keys()
            .any(|o| o.starts_with(&format!("{group}.{name}.")));
    }
    if let Some((group, _)) = key.split_once('.') {
        return other.keys().any(|o| o.starts_with(&format!("{group}.")));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_facts_into_keys() {
        let out = "@@kernel\n6.1.0-56-amd64\n@@cmdline\nBOOT_IMAGE=/vmlinuz root=UUID=x ro quiet mitigations=off preempt=full\n@@sysctl\nnet.core.busy_poll = 50\nkernel.random.uuid = abc\nnet.ipv4.tcp_fastopen_key = 0b1e4067-83f953ef-b02a0962-5d00464d\n@@netfilter\nnft_rules 2001\n";
        let f = crate::capture::facts::parse_facts(out);
        let flat = flatten(&f);
        assert_eq!(flat["cmdline.mitigations"].0, "off");
        assert!(!flat.contains_key("cmdline.root"));
        assert!(!flat.contains_key("sysctl.kernel.random.uuid"));
        assert!(!flat.contains_key("sysctl.net.ipv4.tcp_fastopen_key"));
        assert_eq!(flat["netfilter.nft_rules"].0, "2001");
        assert_eq!(flat["kernel"].1, KeyKind::Confounder);
    }

    #[test]
    fn cmdline_quotes_and_flags() {
        let p = cmdline_params("a=1 nopti dyndbg=\"file x +p\" -- init args");
        assert_eq!(p["a"], "1");
        assert_eq!(p["nopti"], "on");
        assert_eq!(p["dyndbg"], "file x +p");
        assert!(!p.contains_key("init"));
    }
}
