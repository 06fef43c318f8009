//! Host facts: the script that gathers them on a host and the parser of its output
//! into `facts.json` (the analysis side reads them in `analyze::runtime`).
//!
//! The script prints sections `@@name` followed by raw command output; everything is
//! parsed here on the controller, so the host needs only POSIX sh and coreutils
//! (busybox is enough). A missing tool leaves its section empty.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;

use crate::exec::remote::Remote;
use crate::model::{Facts, Nic};

/// Gathers facts; run with `sh -c`. Bounded by the caller's `timeout`.
pub const FACTS_SCRIPT: &str = r#"
sec() { echo "@@$1"; }
sec hostname; hostname 2>/dev/null || cat /proc/sys/kernel/hostname
sec kernel; uname -r
sec arch; uname -m
sec proc_version; cat /proc/version 2>/dev/null
sec nproc; nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo
sec cpu_model; grep -m1 -E '^(model name|Model|cpu model|Hardware)' /proc/cpuinfo | sed 's/^[^:]*: *//'
sec meminfo; grep -m1 MemTotal /proc/meminfo
sec virt; (systemd-detect-virt 2>/dev/null || true); grep -m1 -o hypervisor /proc/cpuinfo 2>/dev/null; cat /sys/class/dmi/id/product_name 2>/dev/null; [ -e /proc/vz ] && echo openvz; [ -e /proc/user_beancounters ] && echo openvz-container
sec os; (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")
sec cmdline; cat /proc/cmdline
sec sysctl; sysctl -a 2>/dev/null
sec vuln; grep -H . /sys/devices/system/cpu/vulnerabilities/* 2>/dev/null | sed 's|^.*/||; s|:|: |' 
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
  tf=$(for d in ingress egress; do tc filter show dev $n $d 2>/dev/null; done)
  echo "tc_filters $(printf '%s\n' "$tf" | grep '^filter' | grep -v 'ht divisor' | sort -u | grep -cE ' (fh|handle) ')"
  echo "tc_filter_kinds $(printf '%s\n' "$tf" | sed -n 's/^filter .* pref [0-9]* \([a-z0-9_]*\) .*/\1/p' | sort -u | tr '\n' ' ')"
  if ip -d link show dev $n 2>/dev/null | grep -q 'prog/xdp'; then echo "xdp on"; else echo "xdp off"; fi
done
sec netfilter; if command -v nft >/dev/null 2>&1; then echo "nft_rules $(nft list ruleset 2>/dev/null | grep -cE '^[[:space:]]+(ip|ip6|tcp|udp|meta|ct|iif|oif|iifname|oifname|counter|th|ether|icmp|jump|goto|accept|drop|reject)\b')"; echo "nft_chains $(nft list ruleset 2>/dev/null | grep -c 'chain ')"; fi; if command -v iptables-save >/dev/null 2>&1; then echo "iptables_rules $(iptables-save 2>/dev/null | grep -c '^-A')"; fi; [ -r /proc/sys/net/netfilter/nf_conntrack_max ] && echo "conntrack loaded"; grep -qs '^nf_conntrack ' /proc/modules && echo "conntrack loaded"
sec ftrace; t=/sys/kernel/tracing; [ -r $t/current_tracer ] || t=/sys/kernel/debug/tracing; [ -r $t/current_tracer ] && echo "current_tracer $(cat $t/current_tracer)"; [ -r $t/enabled_functions ] && echo "enabled_functions $(wc -l < $t/enabled_functions)"
  [ -r $t/tracing_on ] && echo "tracing_on $(cat $t/tracing_on)"; [ -r $t/set_event ] && echo "events_enabled $(wc -l < $t/set_event)"
  [ -r $t/kprobe_events ] && echo "kprobe_events $(wc -l < $t/kprobe_events)"; [ -r $t/uprobe_events ] && echo "uprobe_events $(wc -l < $t/uprobe_events)"
  [ -r $t/function_profile_enabled ] && echo "function_profile $(cat $t/function_profile_enabled)"
  [ -r /sys/kernel/debug/kprobes/list ] && echo "kprobes_registered $(wc -l < /sys/kernel/debug/kprobes/list)"
  [ -r /sys/kernel/debug/kprobes/enabled ] && echo "kprobes_enabled $(cat /sys/kernel/debug/kprobes/enabled)"
sec perf; perf --version 2>/dev/null
sec perf_broken; if command -v perf >/dev/null 2>&1; then perf --version >/dev/null 2>&1 || { rc=$?; echo "$(command -v perf) exits $rc:"; perf --version 2>&1 | tail -n 4; }; fi
sec paranoid; cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null
sec kptr; cat /proc/sys/kernel/kptr_restrict 2>/dev/null
sec uid; id -u
sec login_user; echo "${SUDO_USER:-$(id -un)}"
sec config_source; if [ -r /proc/config.gz ]; then echo /proc/config.gz; elif [ -r /boot/config-$(uname -r) ]; then echo /boot/config-$(uname -r); elif [ -r /lib/modules/$(uname -r)/build/.config ]; then echo /lib/modules/$(uname -r)/build/.config; fi
"#;

/// Run-time state that changes which kernel code runs on a hot path with no config
/// or cmdline change (the README lists it), in two scripts: each script travels on
/// the SSH command line, and dropbear refuses commands over 9000 bytes. No loop
/// forks per process: under QEMU's TCG a fork costs tens of milliseconds, and a
/// systemd host has a few hundred processes (the per-process `sessions` loop took
/// 38 s in a Debian guest; one `ls | awk` and one `grep -l` take under a second).
pub const RUNTIME_FACTS_SCRIPTS: [&str; 2] = [
    r#"
sec() { echo "@@$1"; }
sec clock; c=/sys/devices/system/clocksource/clocksource0; [ -r $c/current_clocksource ] && echo "clocksource $(cat $c/current_clocksource)"
  e=/sys/devices/system/clockevents/clockevent0; [ -r $e/current_device ] && echo "clockevent $(cat $e/current_device)"
sec bpf; [ -r /proc/kallsyms ] && echo "jited_programs $(grep -c ' bpf_prog_[0-9a-f]*_.*\[bpf\]' /proc/kallsyms)"; [ -r /proc/kallsyms ] && echo "trampolines $(grep -c ' bpf_trampoline_[0-9]* *\[bpf\]' /proc/kallsyms)"
sec modules; [ -r /proc/modules ] && while read -r m _; do echo "$m loaded"; done < /proc/modules
sec livepatch; for d in /sys/kernel/livepatch/*; do [ -r "$d/enabled" ] && echo "${d##*/} $(cat "$d/enabled")"; done
sec cpuidle; i=/sys/devices/system/cpu/cpuidle; [ -r $i/current_driver ] && echo "driver $(cat $i/current_driver)"
  if [ -r $i/current_governor ]; then echo "governor $(cat $i/current_governor)"; elif [ -r $i/current_governor_ro ]; then echo "governor $(cat $i/current_governor_ro)"; fi
  n=0; for st in /sys/devices/system/cpu/cpu0/cpuidle/state*; do [ "$(cat $st/disable 2>/dev/null)" = 1 ] && n=$((n+1)); done; [ -d /sys/devices/system/cpu/cpu0/cpuidle ] && echo "states_disabled $n"
  [ -r /sys/module/intel_idle/parameters/max_cstate ] && echo "intel_max_cstate $(cat /sys/module/intel_idle/parameters/max_cstate)"
sec cpufreq; f=/sys/devices/system/cpu/cpu0/cpufreq; [ -r $f/scaling_driver ] && echo "driver $(cat $f/scaling_driver)"
  [ -r $f/scaling_min_freq ] && echo "min_khz $(cat $f/scaling_min_freq)"; [ -r $f/scaling_max_freq ] && echo "max_khz $(cat $f/scaling_max_freq)"
  [ -r $f/energy_performance_preference ] && echo "epp $(cat $f/energy_performance_preference)"
  p=/sys/devices/system/cpu/intel_pstate; [ -r $p/status ] && echo "intel_pstate $(cat $p/status)"; [ -r $p/no_turbo ] && echo "no_turbo $(cat $p/no_turbo)"
  [ -r /sys/devices/system/cpu/cpufreq/boost ] && echo "boost $(cat /sys/devices/system/cpu/cpufreq/boost)"
sec cpu; c=/sys/devices/system/cpu; [ -r $c/smt/control ] && echo "smt $(cat $c/smt/control)"; [ -r $c/online ] && echo "online $(cat $c/online)"
  [ -r $c/isolated ] && echo "isolated $(cat $c/isolated)"; [ -r $c/nohz_full ] && echo "nohz_full $(cat $c/nohz_full)"
  [ -d /sys/devices/system/node ] && echo "numa_nodes $(ls -d /sys/devices/system/node/node[0-9]* 2>/dev/null | wc -l)"
exit 0
"#,
    r#"
sec() { echo "@@$1"; }
sec sched; [ -r /sys/kernel/debug/sched/preempt ] && echo "preempt $(cat /sys/kernel/debug/sched/preempt)"; [ -r /sys/kernel/debug/sched/features ] && echo "features $(cat /sys/kernel/debug/sched/features)"
sec irq; [ -r /proc/irq/default_smp_affinity ] && echo "default_affinity $(cat /proc/irq/default_smp_affinity)"
  if pidof irqbalance >/dev/null 2>&1; then echo "irqbalance running"; else echo "irqbalance stopped"; fi
sec mm; m=/sys/kernel/mm; [ -r $m/ksm/run ] && echo "ksm $(cat $m/ksm/run)"; [ -r /sys/module/zswap/parameters/enabled ] && echo "zswap $(cat /sys/module/zswap/parameters/enabled)"
  [ -r /proc/swaps ] && echo "swap_devices $(($(wc -l < /proc/swaps) - 1))"
  [ -r $m/transparent_hugepage/shmem_enabled ] && echo "thp_shmem $(cat $m/transparent_hugepage/shmem_enabled)"
  [ -r $m/transparent_hugepage/khugepaged/defrag ] && echo "khugepaged_defrag $(cat $m/transparent_hugepage/khugepaged/defrag)"
  [ -r $m/lru_gen/enabled ] && echo "lru_gen $(cat $m/lru_gen/enabled)"
  [ -r /sys/module/kfence/parameters/sample_interval ] && echo "kfence_sample_interval $(cat /sys/module/kfence/parameters/sample_interval)"
  [ -r $m/damon/admin/kdamonds/nr_kdamonds ] && echo "damon_kdamonds $(cat $m/damon/admin/kdamonds/nr_kdamonds)"
  [ -r /sys/kernel/debug/kmemleak ] && echo "kmemleak on"
sec cgroup; [ -d /sys/fs/cgroup ] && echo "fs $(stat -fc %T /sys/fs/cgroup 2>/dev/null)"; [ -r /sys/fs/cgroup/cgroup.subtree_control ] && echo "controllers $(cat /sys/fs/cgroup/cgroup.subtree_control)"
  g=$(sed -n 's/^0:://p' /proc/self/cgroup 2>/dev/null); d=/sys/fs/cgroup$g; [ -n "$g" ] && for k in cpu.max memory.max pids.max io.max cpuset.cpus.effective; do [ -r "$d/$k" ] && echo "self_$(echo $k | tr . _) $(cat "$d/$k" | tr '\n' ' ')"; done
sec security; [ -r /sys/kernel/security/lsm ] && echo "lsm $(cat /sys/kernel/security/lsm)"; [ -r /sys/fs/selinux/enforce ] && echo "selinux_enforce $(cat /sys/fs/selinux/enforce)"
  [ -r /sys/module/apparmor/parameters/enabled ] && echo "apparmor $(cat /sys/module/apparmor/parameters/enabled)"
  [ -r /sys/kernel/security/lockdown ] && echo "lockdown $(cat /sys/kernel/security/lockdown)"
  if command -v auditctl >/dev/null 2>&1; then auditctl -s 2>/dev/null | sed -n 's/^enabled \([0-9]*\)/audit_enabled \1/p'; echo "audit_rules $(auditctl -l 2>/dev/null | grep -vc '^No rules')"; fi
  [ -r /proc/self/status ] && sed -n 's/^Seccomp:[[:space:]]*/seccomp_self /p' /proc/self/status
sec sessions; own() { case "$(tr '\0' ' ' < /proc/$1/cmdline 2>/dev/null)" in *kdelta*|*" -o perf-"[0-9]*.data*|*--version*) return 0;; esac; return 1; }
  n=0; for pc in $(ls -l /proc/[0-9]*/fd 2>/dev/null | awk '/^\/proc\/[0-9]+\/fd:/ {split($0, a, "/"); p = a[3]} /perf_event\]/ {c[p]++} END {for (p in c) print p ":" c[p]}'); do own ${pc%:*} || n=$((n + ${pc#*:})); done
  t=""; for f in $(grep -lxE 'perf|trace-cmd|bpftrace|stapio|sysdig|falco|tracee' /proc/[0-9]*/comm 2>/dev/null); do p=${f#/proc/}; p=${p%/comm}; own $p && continue; c=$(cat $f 2>/dev/null); case ",$t" in *",$c,"*) ;; *) t="$t$c,";; esac; done
  echo "perf_event_fds $n"; echo "tracers ${t:-none}"
sec block; for b in /sys/block/*; do n=${b##*/}; case $n in loop*|ram*|zram*|dm-*|sr*) continue;; esac; [ -r $b/queue/scheduler ] && echo "$n.scheduler $(cat $b/queue/scheduler)"; done
sec dyndbg; for d in /proc/dynamic_debug/control /sys/kernel/debug/dynamic_debug/control; do [ -r $d ] && { echo "enabled_sites $(grep -c ' =[a-zA-Z]*p' $d)"; break; }; done
sec rcu; [ -r /sys/kernel/rcu_expedited ] && echo "expedited $(cat /sys/kernel/rcu_expedited)"; [ -r /sys/kernel/rcu_normal ] && echo "normal $(cat /sys/kernel/rcu_normal)"
sec power; [ -r /sys/firmware/acpi/platform_profile ] && echo "platform_profile $(cat /sys/firmware/acpi/platform_profile)"; [ -r /etc/tuned/active_profile ] && echo "tuned_profile $(cat /etc/tuned/active_profile)"
exit 0
"#,
];

/// Runs every facts script on a host and joins their outputs (one `@@section`
/// stream for [`parse_facts`]).
pub async fn gather(r: &Remote, t: Duration) -> Result<String> {
    let mut out = r.run("facts", FACTS_SCRIPT, t).await?.stdout;
    for (i, script) in RUNTIME_FACTS_SCRIPTS.iter().enumerate() {
        let part = r.run(&format!("facts-{}", i + 2), script, t).await?;
        out.push_str(&part.stdout);
    }
    Ok(out)
}

/// Prints the kernel config to stdout from wherever it is found.
pub const CONFIG_SCRIPT: &str = r#"if [ -r /proc/config.gz ]; then gzip -dc /proc/config.gz 2>/dev/null || zcat /proc/config.gz; elif [ -r /boot/config-$(uname -r) ]; then cat /boot/config-$(uname -r); elif [ -r /lib/modules/$(uname -r)/build/.config ]; then cat /lib/modules/$(uname -r)/build/.config; else echo "kdelta: no kernel config (no /proc/config.gz, /boot/config-$(uname -r))" >&2; exit 3; fi"#;

/// Sections of `name value` lines, each kept as one object in `extra` under its own
/// name (the keys of `facts.json`: added to, never renamed). See the README's list.
pub const FACT_GROUPS: &[&str] = &[
    "netfilter",
    "ftrace",
    "clock",
    "bpf",
    "modules",
    "livepatch",
    "cpuidle",
    "cpufreq",
    "cpu",
    "sched",
    "irq",
    "mm",
    "cgroup",
    "security",
    "sessions",
    "block",
    "dyndbg",
    "rcu",
    "power",
];

fn sections(out: &str) -> Sections<'_> {
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

/// Parses the output of [`FACTS_SCRIPT`]. A missing section leaves its fact unset.
pub fn parse_facts(out: &str) -> Facts {
    let s = sections(out);
    let first = |k: &str| first_line(&s, k);
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
        virtualization: virtualization(&s),
        ..Facts::default()
    };
    f.sysctl = pairs(&s, "sysctl", " = ");
    f.mitigations = pairs(&s, "vuln", ": ");
    f.nic = nics(&s);
    for (sec, group) in FACT_GROUPS.iter().map(|g| (*g, *g)) {
        if let Some(obj) = counters(&s, sec) {
            f.extra.insert(group.to_string(), obj);
        }
    }
    if let Some(why) = perf_broken(&s) {
        f.extra.insert("perf_broken".into(), why.into());
    }
    // Whether kdelta's commands run as root (logged in as root, or `become: sudo`):
    // what the paranoid and kptr_restrict checks need to know.
    if let Some(uid) = first("uid") {
        let root = if uid == "0" { "1" } else { "0" };
        f.extra.insert("is_root".into(), root.into());
    }
    if let Some(u) = first("login_user") {
        f.extra.insert("login_user".into(), u.into());
    }
    for (sec, key) in [
        ("arch", "arch"),
        ("proc_version", "proc_version"),
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

type Sections<'a> = BTreeMap<&'a str, Vec<&'a str>>;

/// The first non-empty line of a section, trimmed.
fn first_line(s: &Sections, k: &str) -> Option<String> {
    s.get(k)
        .and_then(|v| v.iter().map(|l| l.trim()).find(|l| !l.is_empty()))
        .map(str::to_string)
}

/// `systemd-detect-virt`, the cpuinfo flag, the DMI product and OpenVZ markers,
/// joined; `none` only when nothing else says otherwise.
fn virtualization(s: &Sections) -> Option<String> {
    let virt: Vec<&str> = s
        .get("virt")
        .map(|v| {
            v.iter()
                .map(|l| l.trim())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default();
    match virt.split_first() {
        Some((&"none", [])) => Some("none".into()),
        Some((&"none", rest)) => Some(rest.join(", ")),
        Some(_) => Some(virt.join(", ")),
        None => None,
    }
}

/// `key<sep>value` lines of a section.
fn pairs(s: &Sections, sec: &str, sep: &str) -> BTreeMap<String, String> {
    s.get(sec)
        .into_iter()
        .flatten()
        .filter_map(|line| line.split_once(sep))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The `nic` section: a `nic NAME` line opens each interface.
fn nics(s: &Sections) -> Vec<Nic> {
    let mut out = Vec::new();
    let mut nic: Option<Nic> = None;
    for line in s.get("nic").into_iter().flatten() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        let v = v.trim();
        if k == "nic" {
            out.extend(nic.take());
            nic = Some(Nic {
                name: v.to_string(),
                ..Nic::default()
            });
            continue;
        }
        let Some(n) = nic.as_mut() else { continue };
        match k {
            "mtu" => n.mtu = v.parse().ok(),
            "driver" if !v.is_empty() => n.driver = Some(v.to_string()),
            "qdisc" if !v.is_empty() => n.qdisc = Some(v.to_string()),
            "rps_cpus" | "xps_cpus" | "tc_filters" | "tc_filter_kinds" | "xdp" if !v.is_empty() => {
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
    out.extend(nic);
    out
}

/// `name value` lines as a JSON object, numbers as numbers; a sysfs choice list
/// (`none [mq-deadline] kyber`) as the chosen one; a name alone as an empty value.
fn counters(s: &Sections, sec: &str) -> Option<serde_json::Value> {
    let mut obj = serde_json::Map::new();
    for line in s.get(sec).into_iter().flatten() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        let v = v.trim();
        let v = if v.contains('[') && v.contains(']') {
            bracketed(v)
        } else {
            v.to_string()
        };
        let val = v
            .parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| serde_json::Value::from(v));
        obj.insert(k.to_string(), val);
    }
    (!obj.is_empty()).then_some(serde_json::Value::Object(obj))
}

/// A perf that is there but does not run (Ubuntu's wrapper without the linux-tools
/// package of the running kernel): its own words, for the preflight.
fn perf_broken(s: &Sections) -> Option<String> {
    let lines: Vec<&str> = s
        .get("perf_broken")?
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    (!lines.is_empty()).then(|| lines.join(" "))
}

/// `always [madvise] never` → `madvise`.
fn bracketed(s: &str) -> String {
    match (s.find('['), s.find(']')) {
        (Some(a), Some(b)) if b > a => s[a + 1..b].to_string(),
        _ => s.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_fits_dropbears_command_limit() {
        for script in std::iter::once(FACTS_SCRIPT).chain(RUNTIME_FACTS_SCRIPTS) {
            let quoted = crate::exec::shell::quote(script);
            // dropbear's MAX_CMD_LEN is 9000; `timeout … sh -c` and the run tag add ~80.
            assert!(
                quoted.len() < 8500,
                "{} bytes quoted: split it",
                quoted.len()
            );
        }
    }

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
    }
}
