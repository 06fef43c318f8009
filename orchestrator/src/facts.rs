//! Host facts: the script that gathers them on a host, the parser of its output, and
//! the flattening of `facts.json` into runtime keys for the runtime delta.
//!
//! The script prints sections `@@name` followed by raw command output; everything is
//! parsed here on the controller, so the host needs only POSIX sh and coreutils
//! (busybox is enough). A missing tool leaves its section empty.

use std::collections::BTreeMap;

use crate::model::{Facts, Nic};

/// Gathers facts; run with `sh -c`. Bounded by the caller's `timeout`.
pub const FACTS_SCRIPT: &str = r#"
sec() { echo "@@$1"; }
sec hostname; hostname 2>/dev/null || cat /proc/sys/kernel/hostname
sec kernel; uname -r
sec arch; uname -m
sec nproc; nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo
sec cpu_model; grep -m1 -E '^(model name|Model|cpu model|Hardware)' /proc/cpuinfo | sed 's/^[^:]*: *//'
sec meminfo; grep -m1 MemTotal /proc/meminfo
sec virt; (systemd-detect-virt 2>/dev/null || true); grep -m1 -o hypervisor /proc/cpuinfo 2>/dev/null; cat /sys/class/dmi/id/product_name 2>/dev/null; [ -e /proc/vz ] && echo openvz; [ -e /proc/user_beancounters ] && echo openvz-container
sec os; (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")
sec cmdline; cat /proc/cmdline
sec sysctl; sysctl -a 2>/dev/null
sec vuln; for f in /sys/devices/system/cpu/vulnerabilities/*; do [ -r "$f" ] && echo "${f##*/}: $(cat "$f")"; done
sec governor; cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null
sec thp; cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
sec thp_defrag; cat /sys/kernel/mm/transparent_hugepage/defrag 2>/dev/null
sec nic; for d in /sys/class/net/*; do n=${d##*/}; [ "$n" = lo ] && continue
  echo "nic $n"
  echo "mtu $(cat $d/mtu 2>/dev/null)"
  drv=$(readlink $d/device/driver 2>/dev/null); [ -n "$drv" ] && echo "driver ${drv##*/}"
  [ -z "$drv" ] && ethtool -i $n 2>/dev/null | sed -n 's/^driver: /driver /p'
  echo "qdisc $(tc qdisc show dev $n 2>/dev/null | head -1 | awk '{print $2}')"
  echo "rps_cpus $(cat $d/queues/rx-0/rps_cpus 2>/dev/null)"
  echo "xps_cpus $(cat $d/queues/tx-0/xps_cpus 2>/dev/null)"
  ethtool -k $n 2>/dev/null | sed -n 's/^\([a-z0-9-]*\): \(on\|off\).*/feature \1 \2/p'
done
sec netfilter; if command -v nft >/dev/null 2>&1; then echo "nft_rules $(nft list ruleset 2>/dev/null | grep -cE '^[[:space:]]+(ip|ip6|tcp|udp|meta|ct|iif|oif|iifname|oifname|counter|th|ether|icmp|jump|goto|accept|drop|reject)\b')"; echo "nft_chains $(nft list ruleset 2>/dev/null | grep -c 'chain ')"; fi; if command -v iptables-save >/dev/null 2>&1; then echo "iptables_rules $(iptables-save 2>/dev/null | grep -c '^-A')"; fi; [ -r /proc/sys/net/netfilter/nf_conntrack_max ] && echo "conntrack loaded"; grep -qs '^nf_conntrack ' /proc/modules && echo "conntrack loaded"
sec ftrace; t=/sys/kernel/tracing; [ -r $t/current_tracer ] || t=/sys/kernel/debug/tracing; [ -r $t/current_tracer ] && echo "current_tracer $(cat $t/current_tracer)"; [ -r $t/enabled_functions ] && echo "enabled_functions $(wc -l < $t/enabled_functions)"
sec perf; perf --version 2>/dev/null
sec perf_broken; if command -v perf >/dev/null 2>&1; then perf --version >/dev/null 2>&1 || { rc=$?; echo "$(command -v perf) exits $rc:"; perf --version 2>&1 | tail -n 4; }; fi
sec paranoid; cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null
sec kptr; cat /proc/sys/kernel/kptr_restrict 2>/dev/null
sec config_source; if [ -r /proc/config.gz ]; then echo /proc/config.gz; elif [ -r /boot/config-$(uname -r) ]; then echo /boot/config-$(uname -r); elif [ -r /lib/modules/$(uname -r)/build/.config ]; then echo /lib/modules/$(uname -r)/build/.config; fi
"#;

/// Prints the kernel config to stdout from wherever it is found.
pub const CONFIG_SCRIPT: &str = r#"if [ -r /proc/config.gz ]; then gzip -dc /proc/config.gz 2>/dev/null || zcat /proc/config.gz; elif [ -r /boot/config-$(uname -r) ]; then cat /boot/config-$(uname -r); elif [ -r /lib/modules/$(uname -r)/build/.config ]; then cat /lib/modules/$(uname -r)/build/.config; else echo "kdelta: no kernel config (no /proc/config.gz, /boot/config-$(uname -r))" >&2; exit 3; fi"#;

fn sections(out: &str) -> BTreeMap<&str, Vec<&str>> {
    let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut cur = "";
    for line in out.lines() {
        if let Some(name) = line.strip_prefix("@@") {
            cur = name.trim();
            map.entry(cur).or_default();
        } else if !cur.is_empty() {
            map.entry(cur).or_default().push(line);
        }
    }
    map
}

/// Parses the output of [`FACTS_SCRIPT`].
pub fn parse_facts(out: &str) -> Facts {
    let s = sections(out);
    let first = |k: &str| {
        s.get(k)
            .and_then(|v| v.iter().map(|l| l.trim()).find(|l| !l.is_empty()))
            .map(str::to_string)
    };
    let mut f = Facts {
        hostname: first("hostname"),
        kernel: first("kernel"),
        nr_cpus: first("nproc").and_then(|v| v.parse().ok()),
        cpu_model: first("cpu_model"),
        memory_kb: first("meminfo")
            .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok())),
        os: first("os"),
        cmdline: first("cmdline"),
        cpufreq_governor: first("governor"),
        thp: first("thp").map(|t| bracketed(&t)),
        perf_version: first("perf"),
        ..Facts::default()
    };
    let virt: Vec<&str> = s
        .get("virt")
        .map(|v| {
            v.iter()
                .map(|l| l.trim())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default();
    f.virtualization = match virt.first() {
        Some(&"none") if virt.len() == 1 => Some("none".into()),
        Some(&"none") => Some(virt[1..].join(", ")),
        Some(_) => Some(virt.join(", ")),
        None => None,
    };
    for line in s.get("sysctl").into_iter().flatten() {
        if let Some((k, v)) = line.split_once(" = ") {
            f.sysctl.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    for line in s.get("vuln").into_iter().flatten() {
        if let Some((k, v)) = line.split_once(": ") {
            f.mitigations
                .insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    let mut nic: Option<Nic> = None;
    for line in s.get("nic").into_iter().flatten() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        let v = v.trim();
        match k {
            "nic" => {
                if let Some(n) = nic.take() {
                    f.nic.push(n);
                }
                nic = Some(Nic {
                    name: v.to_string(),
                    ..Nic::default()
                });
            }
            _ => {
                let Some(n) = nic.as_mut() else { continue };
                match k {
                    "mtu" => n.mtu = v.parse().ok(),
                    "driver" if !v.is_empty() => n.driver = Some(v.to_string()),
                    "qdisc" if !v.is_empty() => n.qdisc = Some(v.to_string()),
                    "rps_cpus" | "xps_cpus" if !v.is_empty() => {
                        n.features.insert(k.to_string(), v.to_string());
                    }
                    "feature" => {
                        if let Some((name, state)) = v.split_once(' ') {
                            n.features.insert(name.to_string(), state.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(n) = nic.take() {
        f.nic.push(n);
    }
    for (sec, group) in [("netfilter", "netfilter"), ("ftrace", "ftrace")] {
        let mut obj = serde_json::Map::new();
        for line in s.get(sec).into_iter().flatten() {
            if let Some((k, v)) = line.trim().split_once(' ') {
                let val = v
                    .trim()
                    .parse::<i64>()
                    .map(serde_json::Value::from)
                    .unwrap_or_else(|_| serde_json::Value::from(v.trim()));
                obj.insert(k.to_string(), val);
            }
        }
        if !obj.is_empty() {
            f.extra
                .insert(group.to_string(), serde_json::Value::Object(obj));
        }
    }
    // A perf that is there but does not run (Ubuntu's wrapper without the
    // linux-tools package of the running kernel): its own words, for the preflight.
    if let Some(lines) = s
        .get("perf_broken")
        .filter(|v| v.iter().any(|l| !l.trim().is_empty()))
    {
        let text: Vec<&str> = lines
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        f.extra.insert(
            "perf_broken".into(),
            serde_json::Value::from(text.join(" ")),
        );
    }
    for (sec, key) in [
        ("arch", "arch"),
        ("paranoid", "perf_event_paranoid"),
        ("kptr", "kptr_restrict"),
        ("config_source", "kernel_config_source"),
        ("thp_defrag", "thp_defrag"),
    ] {
        if let Some(v) = first(sec) {
            let v = if sec == "thp_defrag" {
                bracketed(&v)
            } else {
                v
            };
            f.extra.insert(key.to_string(), serde_json::Value::from(v));
        }
    }
    f
}

/// `always [madvise] never` → `madvise`.
fn bracketed(s: &str) -> String {
    match (s.find('['), s.find(']')) {
        (Some(a), Some(b)) if b > a => s[a + 1..b].to_string(),
        _ => s.trim().to_string(),
    }
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
        "kernel.random.entropy_avail",
        "kernel.random.boot_id",
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

/// Classification of a runtime key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Knob,
    Confounder,
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
                    let s = match sv {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    put(format!("{k}.{sk}"), s, Knob);
                }
            }
            serde_json::Value::String(s) if k == "perf_event_paranoid" || k == "kptr_restrict" => {
                put(format!("extra.{k}"), s.clone(), Confounder);
            }
            _ => {}
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
    if key.starts_with("nic.") {
        // Compare NICs only by a name both hosts have.
        let name = key.split('.').nth(1).unwrap_or("");
        return other.keys().any(|o| o.starts_with(&format!("nic.{name}.")));
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
    fn parses_script_output() {
        let out = "@@hostname\nlab-b\n@@kernel\n6.1.0-56-amd64\n@@nproc\n2\n@@meminfo\nMemTotal:       24576000 kB\n@@virt\nkvm\n@@cmdline\nBOOT_IMAGE=/vmlinuz root=UUID=x ro quiet mitigations=off preempt=full\n@@sysctl\nnet.core.busy_poll = 50\nkernel.random.uuid = abc\n@@vuln\nmeltdown: Not affected\n@@thp\nalways [madvise] never\n@@nic\nnic eth0\nmtu 1500\nqdisc noqueue\nfeature generic-receive-offload on\nfeature tcp-segmentation-offload off\n@@netfilter\nnft_rules 2001\nconntrack loaded\n@@perf\n@@perf_broken\n/usr/bin/perf exits 2:\nWARNING: perf not found for kernel 6.8.0-45\n\n";
        let f = parse_facts(out);
        assert_eq!(
            f.extra["perf_broken"],
            "/usr/bin/perf exits 2: WARNING: perf not found for kernel 6.8.0-45"
        );
        assert!(!parse_facts("@@perf\nperf version 6.1\n@@perf_broken\n\n")
            .extra
            .contains_key("perf_broken"));
        assert_eq!(f.hostname.as_deref(), Some("lab-b"));
        assert_eq!(f.nr_cpus, Some(2));
        assert_eq!(f.memory_kb, Some(24576000));
        assert_eq!(f.thp.as_deref(), Some("madvise"));
        assert_eq!(
            f.sysctl.get("net.core.busy_poll").map(String::as_str),
            Some("50")
        );
        assert_eq!(
            f.nic[0]
                .features
                .get("tcp-segmentation-offload")
                .map(String::as_str),
            Some("off")
        );
        assert_eq!(f.extra["netfilter"]["nft_rules"], 2001);
        let flat = flatten(&f);
        assert_eq!(flat["cmdline.mitigations"].0, "off");
        assert!(!flat.contains_key("cmdline.root"));
        assert!(!flat.contains_key("sysctl.kernel.random.uuid"));
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
