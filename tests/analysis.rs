//! Analysis and attribution on generated captures (seeded), with many unrelated
//! config differences as distractors. No test matches a file name or a fixed answer:
//! each scenario builds its profiles from kernel call paths and checks what the
//! engine concludes from them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kdelta::analyze::fold::fold_str;
use kdelta::analyze::stats::SplitMix;
use kdelta::analyze::Capture;
use kdelta::attribute::kb::HotWhen;
use kdelta::kconfig::KernelConfig;
use kdelta::model::{Assessment, CauseSource, Confidence, Facts, Nic, VerdictStatus};
use kdelta::run::analysis::{summarize, AnalysisSetup};

/// Ordinary kernel work of a TCP sender/receiver, leaf first.
const COMMON: &[&[&str]] = &[
    &[
        "copy_user_enhanced_fast_string",
        "_copy_from_iter",
        "skb_copy_to_page_nocache",
        "tcp_sendmsg_locked",
        "tcp_sendmsg",
        "sock_sendmsg",
        "__sys_sendto",
        "do_syscall_64",
    ],
    &[
        "tcp_ack",
        "tcp_rcv_established",
        "tcp_v4_do_rcv",
        "tcp_v4_rcv",
        "ip_protocol_deliver_rcu",
        "ip_local_deliver_finish",
        "__netif_receive_skb_one_core",
        "process_backlog",
        "__napi_poll",
        "net_rx_action",
        "__do_softirq",
    ],
    &[
        "tcp_write_xmit",
        "__tcp_push_pending_frames",
        "tcp_sendmsg_locked",
        "tcp_sendmsg",
        "sock_sendmsg",
        "__sys_sendto",
        "do_syscall_64",
    ],
    &[
        "_raw_spin_lock",
        "tcp_v4_rcv",
        "ip_protocol_deliver_rcu",
        "ip_local_deliver_finish",
        "__netif_receive_skb_one_core",
        "process_backlog",
        "__napi_poll",
        "net_rx_action",
        "__do_softirq",
    ],
    &[
        "kmem_cache_alloc_node",
        "__alloc_skb",
        "tcp_stream_alloc_skb",
        "tcp_sendmsg_locked",
        "tcp_sendmsg",
        "sock_sendmsg",
        "__sys_sendto",
        "do_syscall_64",
    ],
    &[
        "schedule",
        "schedule_timeout",
        "sk_wait_data",
        "tcp_recvmsg_locked",
        "tcp_recvmsg",
        "inet_recvmsg",
        "__sys_recvfrom",
        "do_syscall_64",
    ],
    &[
        "memcpy_orig",
        "skb_copy_datagram_iter",
        "tcp_recvmsg_locked",
        "tcp_recvmsg",
        "inet_recvmsg",
        "__sys_recvfrom",
        "do_syscall_64",
    ],
];
const IDLE: &[&str] = &[
    "pv_native_safe_halt",
    "default_idle",
    "default_idle_call",
    "do_idle",
    "cpu_startup_entry",
];

struct Gen {
    rng: SplitMix,
    text: String,
    t: f64,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: SplitMix::new(seed),
            text: String::new(),
            t: 1000.0,
        }
    }
    fn sample(&mut self, comm: &str, stack: &[&str]) {
        self.t += 0.001;
        self.text.push_str(&format!(
            "{comm} {} [{:03}] {:.6}: 10101010 cpu-clock:pppH: \n",
            100 + self.rng.below(50),
            self.rng.below(2),
            self.t
        ));
        for f in stack {
            self.text.push_str(&format!(
                "\tffffffff81{:06x} {f}+0x{:x} ([kernel.kallsyms])\n",
                self.rng.below(1 << 20),
                self.rng.below(200)
            ));
        }
        self.text.push_str(
            "\t    7f0000001000 __libc_send+0x10 (/usr/lib/x86_64-linux-gnu/libc.so.6)\n\n",
        );
    }
    /// `n` samples of ordinary work plus `idle` idle samples.
    fn base_load(&mut self, n: usize, idle: usize) {
        for _ in 0..n {
            let s = COMMON[self.rng.below(COMMON.len())];
            self.sample("iperf3", s);
        }
        for _ in 0..idle {
            self.sample("swapper", IDLE);
        }
    }
}

fn capture(name: &str, text: &str, config: Option<KernelConfig>, facts: Option<Facts>) -> Capture {
    Capture {
        name: name.into(),
        dir: PathBuf::from(name),
        profile: fold_str(text),
        config,
        config_sha256: None,
        facts,
        metrics: None,
        files: vec![],
        missing: vec![],
        unreadable: vec![],
        warnings: vec![],
    }
}

/// Distractors: options that differ but have nothing to do with the profile.
fn with_distractors(cfg: &mut BTreeMap<String, String>, rng: &mut SplitMix) {
    for o in [
        "CONFIG_VMAP_STACK",
        "CONFIG_GENERIC_CSUM",
        "CONFIG_DEBUG_KMEMLEAK",
        "CONFIG_KFENCE",
        "CONFIG_NUMA_BALANCING",
        "CONFIG_DEV_DAX",
        "CONFIG_LEDS_TRIGGER_CPU",
        "CONFIG_EFI_DISABLE_RUNTIME",
        "CONFIG_FS_DAX_PMD",
        "CONFIG_SCHED_TRACER",
        "CONFIG_HWLAT_TRACER",
        "CONFIG_BTRFS_FS",
        "CONFIG_XFS_ONLINE_SCRUB",
        "CONFIG_USB_STORAGE",
        "CONFIG_SND_HDA_INTEL",
    ] {
        if rng.below(3) > 0 {
            cfg.insert(
                o.into(),
                if rng.below(2) == 0 {
                    "y".into()
                } else {
                    "m".into()
                },
            );
        }
    }
}

fn cfg_text(m: &BTreeMap<String, String>) -> KernelConfig {
    let mut t = String::new();
    for (k, v) in m {
        if v == "n" {
            t.push_str(&format!("# {k} is not set\n"));
        } else {
            t.push_str(&format!("{k}={v}\n"));
        }
    }
    KernelConfig::parse(&t)
}

fn run(base: Capture, cand: Capture) -> kdelta::model::Summary {
    run_with(base, cand, None)
}

fn run_with(base: Capture, cand: Capture, kernel_src: Option<PathBuf>) -> kdelta::model::Summary {
    run_setup(
        base,
        cand,
        AnalysisSetup {
            kernel_src,
            ..Default::default()
        },
    )
}

fn run_setup(base: Capture, cand: Capture, setup: AnalysisSetup) -> kdelta::model::Summary {
    summarize(&base, &cand, &setup.load().unwrap()).unwrap()
}

fn cause_scenario(
    seed: u64,
    options: &[(&str, &str, &str)],
    extra: &[&[&str]],
    share: f64,
) -> kdelta::model::Summary {
    cause_scenario_src(seed, options, extra, share, None)
}

fn cause_scenario_src(
    seed: u64,
    options: &[(&str, &str, &str)],
    extra: &[&[&str]],
    share: f64,
    kernel_src: Option<PathBuf>,
) -> kdelta::model::Summary {
    cause_scenario_setup(
        seed,
        options,
        extra,
        share,
        AnalysisSetup {
            kernel_src,
            ..Default::default()
        },
    )
}

fn cause_scenario_setup(
    seed: u64,
    options: &[(&str, &str, &str)],
    extra: &[&[&str]],
    share: f64,
    setup: AnalysisSetup,
) -> kdelta::model::Summary {
    let mut rng = SplitMix::new(seed);
    let mut b = Gen::new(seed);
    b.base_load(6000, 3000);
    let mut c = Gen::new(seed + 1);
    c.base_load(6000, 2000);
    let n_extra = (6000.0 * share / (1.0 - share)) as usize;
    for i in 0..n_extra {
        c.sample("iperf3", extra[i % extra.len()]);
    }
    let mut bc = BTreeMap::new();
    let mut cc = BTreeMap::new();
    with_distractors(&mut cc, &mut rng);
    for (o, vb, vc) in options {
        bc.insert(o.to_string(), vb.to_string());
        cc.insert(o.to_string(), vc.to_string());
    }
    run_setup(
        capture("base", &b.text, Some(cfg_text(&bc)), None),
        capture("cand", &c.text, Some(cfg_text(&cc)), None),
        setup,
    )
}

#[test]
fn lockdep_is_named_with_high_confidence() {
    let s = cause_scenario(
        11,
        &[
            ("CONFIG_PROVE_LOCKING", "n", "y"),
            ("CONFIG_LOCKDEP", "n", "y"),
            ("CONFIG_DEBUG_LOCK_ALLOC", "n", "y"),
            ("CONFIG_TRACE_IRQFLAGS", "n", "y"),
        ],
        &[
            &[
                "__lock_acquire",
                "lock_acquire",
                "_raw_spin_lock",
                "tcp_v4_rcv",
                "ip_protocol_deliver_rcu",
                "net_rx_action",
            ],
            &[
                "mark_lock",
                "__lock_acquire",
                "lock_acquire",
                "_raw_spin_lock_bh",
                "lock_sock_nested",
                "tcp_sendmsg",
            ],
            &[
                "check_chain_key",
                "lock_release",
                "_raw_spin_unlock",
                "tcp_v4_rcv",
            ],
            &[
                "trace_hardirqs_on",
                "_raw_spin_unlock_irqrestore",
                "__wake_up_common_lock",
                "sock_def_readable",
            ],
        ],
        0.25,
    );
    let top = &s.attributions[0];
    assert_eq!(top.cause, "CONFIG_LOCKDEP", "{:#?}", s.attributions);
    assert!(top.related.iter().any(|r| r == "CONFIG_PROVE_LOCKING"));
    assert_eq!(top.confidence, Confidence::High);
    // 3 of the 4 extra stacks are lockdep's: ~0.25 * 3/4 of the candidate's busy time.
    assert!(
        (top.explained_share - 0.1875).abs() < 0.03,
        "{}",
        top.explained_share
    );
    assert!(
        s.attributions
            .iter()
            .all(|a| a.cause != "CONFIG_DEBUG_KMEMLEAK" && a.cause != "CONFIG_KFENCE"),
        "distractors blamed: {:#?}",
        s.attributions
    );
    assert!(
        s.verdict.headline.contains("CONFIG_LOCKDEP"),
        "{}",
        s.verdict.headline
    );
}

#[test]
fn init_on_free_is_found_through_its_callers() {
    let s = cause_scenario(
        21,
        &[("CONFIG_INIT_ON_FREE_DEFAULT_ON", "n", "y")],
        &[
            &[
                "memset_orig",
                "slab_free_freelist_hook",
                "kmem_cache_free",
                "kfree_skbmem",
                "__kfree_skb",
                "tcp_clean_rtx_queue",
                "tcp_ack",
            ],
            &[
                "clear_page_erms",
                "kernel_init_pages",
                "free_pages_prepare",
                "free_unref_page",
                "skb_free_head",
                "skb_release_data",
            ],
        ],
        0.15,
    );
    assert_eq!(
        s.attributions[0].cause, "CONFIG_INIT_ON_FREE_DEFAULT_ON",
        "{:#?}",
        s.attributions
    );
    assert!((s.attributions[0].explained_share - 0.15).abs() < 0.03);
}

#[test]
fn no_cause_means_no_blame() {
    let mut rng = SplitMix::new(5);
    let mut b = Gen::new(31);
    b.base_load(8000, 2000);
    let mut c = Gen::new(32);
    c.base_load(8000, 2000);
    let mut cc = BTreeMap::new();
    with_distractors(&mut cc, &mut rng);
    cc.insert("CONFIG_PROVE_LOCKING".into(), "y".into());
    let s = run(
        capture("base", &b.text, Some(cfg_text(&BTreeMap::new())), None),
        capture("cand", &c.text, Some(cfg_text(&cc)), None),
    );
    assert!(s.attributions.is_empty(), "{:#?}", s.attributions);
    assert_eq!(
        s.verdict.status,
        VerdictStatus::NoChange,
        "{}",
        s.verdict.headline
    );
}

#[test]
fn preempt_rt_with_real_debian_configs() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/kconfig");
    let generic = KernelConfig::read(&dir.join("config-6.1.0-56-amd64")).unwrap();
    let rt = KernelConfig::read(&dir.join("config-6.1.0-56-rt-amd64")).unwrap();
    assert_eq!(
        kdelta::kconfig::diff(&generic, &rt).len(),
        38,
        "the fixture's known delta"
    );
    let mut b = Gen::new(41);
    b.base_load(6000, 3000);
    let mut c = Gen::new(42);
    c.base_load(6000, 3000);
    for i in 0..1500 {
        let stacks: [&[&str]; 3] = [
            &[
                "rt_spin_lock",
                "__wake_up_common_lock",
                "sock_def_readable",
                "tcp_data_queue",
                "tcp_rcv_established",
            ],
            &[
                "rt_mutex_slowlock_block",
                "rt_spin_lock",
                "lock_sock_nested",
                "tcp_sendmsg",
            ],
            &["migrate_enable", "tcp_v4_rcv", "ip_protocol_deliver_rcu"],
        ];
        c.sample("iperf3", stacks[i % 3]);
    }
    let s = run(
        capture("generic", &b.text, Some(generic), None),
        capture("rt", &c.text, Some(rt), None),
    );
    assert_eq!(
        s.attributions[0].cause, "CONFIG_PREEMPT_RT",
        "{:#?}",
        s.attributions
    );
    assert_eq!(s.attributions[0].confidence, Confidence::High);
    assert!(s.config_delta.len() == 38);
}

#[test]
fn unknown_option_found_by_name_on_one_side_only() {
    // An option no knowledge-base entry knows: its functions exist only where it is on.
    let s = cause_scenario(
        51,
        &[("CONFIG_FROBNICATE_TRACKER", "n", "y")],
        &[&[
            "frobnicate_tracker_record",
            "frobnicate_tracker_hook",
            "tcp_ack",
            "tcp_rcv_established",
        ]],
        0.2,
    );
    let top = &s.attributions[0];
    assert_eq!(
        top.cause, "CONFIG_FROBNICATE_TRACKER",
        "{:#?}",
        s.attributions
    );
    assert_eq!(top.source, CauseSource::NameMatch);
    assert_ne!(
        top.confidence,
        Confidence::High,
        "a name match alone is never high confidence"
    );
}

#[test]
fn kernel_source_maps_an_option_whose_functions_carry_another_name() {
    // The iocost controller's functions are `ioc_*`: no name match, no knowledge-base
    // entry. Kbuild builds them only with CONFIG_BLK_CGROUP_IOCOST. A second option
    // (NET_EGRESS) also differs and guards a function by #ifdef, but that function
    // never runs: it must not be blamed.
    let tree = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/kernel-src-mini");
    let options = [
        ("CONFIG_BLK_CGROUP_IOCOST", "n", "y"),
        ("CONFIG_NET_EGRESS", "n", "y"),
    ];
    let io: &[&[&str]] = &[
        &[
            "calc_vtime_cost",
            "ioc_rqos_throttle",
            "__rq_qos_throttle",
            "blk_mq_submit_bio",
            "submit_bio_noacct",
            "ext4_io_submit",
        ],
        &[
            "iocg_activate",
            "ioc_rqos_throttle",
            "__rq_qos_throttle",
            "blk_mq_submit_bio",
            "submit_bio_noacct",
            "ext4_io_submit",
        ],
        &[
            "ioc_rqos_throttle",
            "__rq_qos_throttle",
            "blk_mq_submit_bio",
            "submit_bio_noacct",
            "ext4_io_submit",
        ],
    ];
    let without = cause_scenario_src(61, &options, io, 0.15, None);
    assert!(
        without
            .attributions
            .iter()
            .all(|a| a.cause != "CONFIG_BLK_CGROUP_IOCOST"),
        "without a source tree nothing ties ioc_* to the option: {:#?}",
        without.attributions
    );
    let with = cause_scenario_src(61, &options, io, 0.15, Some(tree.clone()));
    let top = &with.attributions[0];
    assert_eq!(
        top.cause, "CONFIG_BLK_CGROUP_IOCOST",
        "{:#?}",
        with.attributions
    );
    assert_eq!(top.source, CauseSource::KernelSource);
    assert!(
        (top.explained_share - 0.15).abs() < 0.03,
        "{}",
        top.explained_share
    );
    assert!(top.why.contains("block/blk-iocost.c"), "{}", top.why);
    assert!(top.evidence.iter().any(|e| e.symbol == "ioc_rqos_throttle"));
    assert!(with
        .attributions
        .iter()
        .all(|a| a.cause != "CONFIG_NET_EGRESS"));

    // A folder that is not a kernel tree is refused with the flag named.
    let err = kdelta::attribute::ksrc::map_options(&tree.join("block"), &Default::default(), "x86");
    assert!(
        err.is_ok(),
        "a subfolder with a Makefile is accepted as a tree"
    );
    let bad =
        kdelta::attribute::ksrc::map_options(&tree.join("nowhere"), &Default::default(), "x86");
    assert!(format!("{:#}", bad.unwrap_err()).contains("--kernel-src"));
}

/// Issue 17: without `--kernel-src`, the source a finder fetches for the captured
/// kernel (Debian's linux-source, in the CLI) serves the mapping as the flag would;
/// a version other than the kernel's, or no source at all, is said in a caveat.
#[test]
fn a_fetched_kernel_source_maps_options_as_the_flag_would() {
    use kdelta::run::analysis::{FoundSource, SourceFinder};
    let tree = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/kernel-src-mini");
    let options = [("CONFIG_BLK_CGROUP_IOCOST", "n", "y")];
    let io: &[&[&str]] = &[&[
        "ioc_rqos_throttle",
        "__rq_qos_throttle",
        "blk_mq_submit_bio",
        "submit_bio_noacct",
    ]];
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (t, n) = (tree.clone(), asked.clone());
    let finder = SourceFinder(std::sync::Arc::new(move |_k: [&_; 2]| {
        n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Some(FoundSource {
            root: t.clone(),
            version: "linux-source-6.1 6.1.192-3".into(),
            note: Some(
                "the kernel source read is linux-source-6.1 6.1.192-3, not the captured kernel's"
                    .into(),
            ),
        }))
    }));
    let s = cause_scenario_setup(
        61,
        &options,
        io,
        0.15,
        AnalysisSetup {
            find_source: Some(finder),
            ..Default::default()
        },
    );
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    let top = &s.attributions[0];
    assert_eq!(
        top.cause, "CONFIG_BLK_CGROUP_IOCOST",
        "{:#?}",
        s.attributions
    );
    assert_eq!(top.source, CauseSource::KernelSource);
    assert!(
        s.caveats
            .iter()
            .any(|c| c.contains("not the captured kernel's")),
        "{:?}",
        s.caveats
    );

    let failing = SourceFinder(std::sync::Arc::new(|_k: [&_; 2]| {
        anyhow::bail!("apt-get not found")
    }));
    let s = cause_scenario_setup(
        61,
        &options,
        io,
        0.15,
        AnalysisSetup {
            find_source: Some(failing),
            ..Default::default()
        },
    );
    assert!(s
        .attributions
        .iter()
        .all(|a| a.cause != "CONFIG_BLK_CGROUP_IOCOST"));
    assert!(
        s.caveats
            .iter()
            .any(|c| c.starts_with("no kernel source") && c.contains("apt-get not found")),
        "{:?}",
        s.caveats
    );
}

/// Same kernel and config on both sides; what differs is boot and runtime state.
fn runtime_scenario(
    seed: u64,
    base_facts: Facts,
    cand_facts: Facts,
    extra: &[&[&str]],
    share: f64,
) -> kdelta::model::Summary {
    let mut b = Gen::new(seed);
    b.base_load(6000, 3000);
    let mut c = Gen::new(seed + 1);
    c.base_load(6000, 2000);
    let n_extra = (6000.0 * share / (1.0 - share)) as usize;
    for i in 0..n_extra {
        c.sample("iperf3", extra[i % extra.len()]);
    }
    let mut cfg = BTreeMap::new();
    with_distractors(&mut cfg, &mut SplitMix::new(seed));
    cfg.insert("CONFIG_PAGE_TABLE_ISOLATION".into(), "y".into());
    cfg.insert("CONFIG_NF_TABLES".into(), "m".into());
    run(
        capture("base", &b.text, Some(cfg_text(&cfg)), Some(base_facts)),
        capture("cand", &c.text, Some(cfg_text(&cfg)), Some(cand_facts)),
    )
}

fn facts(cmdline: &str, meltdown: &str, busy_poll: &str, nft_rules: u64) -> Facts {
    let mut f = Facts {
        kernel: Some("6.1.0-56-amd64".into()),
        cmdline: Some(format!("BOOT_IMAGE=/vmlinuz root=UUID=1 ro {cmdline}")),
        ..Default::default()
    };
    f.mitigations.insert("meltdown".into(), meltdown.into());
    f.sysctl
        .insert("net.core.busy_poll".into(), busy_poll.into());
    f.extra.insert(
        "netfilter".into(),
        serde_json::json!({ "nft_rules": nft_rules }),
    );
    f
}

#[test]
fn page_table_isolation_booted_off_on_the_baseline() {
    // The baseline was booted with `nopti`; the candidate runs the default (PTI on).
    // Syscall-heavy work pays at each kernel entry and exit. A sysctl and a console
    // option differ too, and explain nothing.
    let s = runtime_scenario(
        71,
        facts("quiet nopti console=ttyS0", "Vulnerable", "0", 0),
        facts("quiet", "Mitigation: PTI", "50", 0),
        &[
            &[
                "syscall_return_via_sysret",
                "entry_SYSCALL_64_after_hwframe",
            ],
            &[
                "native_flush_tlb_one_user",
                "flush_tlb_func",
                "__flush_tlb_all",
                "entry_SYSCALL_64_after_hwframe",
            ],
            &[
                "swapgs_restore_regs_and_return_to_usermode",
                "asm_sysvec_apic_timer_interrupt",
            ],
        ],
        0.2,
    );
    let top = &s.attributions[0];
    assert_eq!(top.cause, "cmdline.nopti", "{:#?}", s.attributions);
    assert!(
        top.related.iter().any(|r| r == "mitigations.meltdown"),
        "{:?}",
        top.related
    );
    assert_eq!(
        top.confidence,
        Confidence::High,
        "nopti on the faster side reads as PTI off there"
    );
    assert!(
        (top.explained_share - 0.2).abs() < 0.03,
        "{}",
        top.explained_share
    );
    assert_eq!(s.attributions.len(), 1, "{:#?}", s.attributions);
}

#[test]
fn netfilter_ruleset_on_the_candidate() {
    // Same kernel, same config; the candidate loads a long nftables chain.
    let s = runtime_scenario(
        81,
        facts("quiet", "Mitigation: PTI", "0", 0),
        facts("quiet", "Mitigation: PTI", "0", 2000),
        &[
            &[
                "nft_do_chain",
                "nft_do_chain_inet",
                "nf_hook_slow",
                "ip_local_deliver",
                "ip_rcv",
                "__netif_receive_skb_one_core",
                "process_backlog",
                "__napi_poll",
                "net_rx_action",
                "__do_softirq",
            ],
            &[
                "nft_meta_get_eval",
                "nft_do_chain",
                "nft_do_chain_inet",
                "nf_hook_slow",
                "ip_local_deliver",
                "ip_rcv",
            ],
            &[
                "nft_cmp_eval",
                "nft_do_chain",
                "nft_do_chain_inet",
                "nf_hook_slow",
                "ip_output",
                "ip_queue_xmit",
            ],
        ],
        0.4,
    );
    let top = &s.attributions[0];
    assert_eq!(top.cause, "netfilter.nft_rules", "{:#?}", s.attributions);
    assert_eq!(
        (top.baseline.as_str(), top.candidate.as_str()),
        ("0", "2000")
    );
    assert_eq!(top.confidence, Confidence::High);
    assert!(
        (top.explained_share - 0.4).abs() < 0.04,
        "{}",
        top.explained_share
    );
    assert!(top.evidence.iter().any(|e| e.symbol == "nft_do_chain"));
    assert!(
        s.verdict.headline.contains("netfilter.nft_rules"),
        "{}",
        s.verdict.headline
    );
}

#[test]
fn real_lab_capture_from_this_machine() {
    // Real perf output, real facts and metrics: see tests/fixtures/captures/SOURCE.md.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/captures/lab-nft");
    let fo = kdelta::analyze::fold::FoldOptions::default();
    let b = kdelta::analyze::load_capture(&root.join("baseline"), "baseline", &fo).unwrap();
    let c = kdelta::analyze::load_capture(&root.join("candidate"), "candidate", &fo).unwrap();
    assert_eq!(b.profile.repeats, 2);
    assert!(b.profile.samples > 1000 && c.profile.samples > 1000);
    assert!(
        b.warnings.is_empty() && c.warnings.is_empty(),
        "{:?} {:?}",
        b.warnings,
        c.warnings
    );
    let s = run(b, c);
    assert_eq!(
        s.verdict.status,
        VerdictStatus::Regression,
        "{}",
        s.verdict.headline
    );
    assert!(s.config_delta.is_empty(), "one kernel: no config delta");
    let top = &s.attributions[0];
    assert_eq!(top.cause, "netfilter.nft_rules", "{:#?}", s.attributions);
    assert_eq!(top.confidence, Confidence::High);
    assert!(top.explained_share > 0.2, "{}", top.explained_share);
    assert!(
        top.evidence.iter().any(|e| e.symbol == "nft_do_chain"),
        "{:?}",
        top.evidence
    );
    let tp = s.metrics.iter().find(|m| m.name == "throughput").unwrap();
    assert_eq!(tp.assessment, Assessment::Worse);
}

/// Every knowledge-base entry explains its own example stack.
#[test]
fn every_knowledge_base_entry_explains_its_example() {
    let kb = kdelta::attribute::KnowledgeBase::builtin().unwrap();
    let mut failures = Vec::new();
    for (n, e) in kb.entries.iter().enumerate() {
        let (on, off) = match e.hot_when {
            HotWhen::Disabled => ("n", "y"),
            _ => ("y", "n"),
        };
        let mut b = Gen::new(100 + n as u64);
        b.base_load(5000, 1000);
        let mut c = Gen::new(200 + n as u64);
        c.base_load(5000, 1000);
        let ex: Vec<&str> = e.example.iter().map(String::as_str).collect();
        for _ in 0..1200 {
            c.sample("iperf3", &ex);
        }
        let (mut cb, mut cc) = (None, None);
        let (mut fb, mut fc) = (None, None);
        if let Some(opt) = e.options.first() {
            let mut m1 = BTreeMap::new();
            let mut m2 = BTreeMap::new();
            m1.insert(opt.clone(), off.to_string());
            m2.insert(opt.clone(), on.to_string());
            cb = Some(cfg_text(&m1));
            cc = Some(cfg_text(&m2));
        } else {
            let key = e.runtime[0].replace('*', "eth0");
            let mk = |v: &str| {
                let mut f = Facts::default();
                if let Some(feat) = key.strip_prefix("nic.eth0.") {
                    let mut nic = Nic {
                        name: "eth0".into(),
                        ..Default::default()
                    };
                    nic.features.insert(
                        feat.into(),
                        if v == "y" { "on".into() } else { "off".into() },
                    );
                    f.nic.push(nic);
                } else if key == "cpufreq_governor" {
                    f.cpufreq_governor = Some(if v == "y" {
                        "performance".into()
                    } else {
                        "powersave".into()
                    });
                }
                f
            };
            fb = Some(mk(off));
            fc = Some(mk(on));
        }
        let s = run(capture("b", &b.text, cb, fb), capture("c", &c.text, cc, fc));
        let want_any: Vec<String> = e.options.to_vec();
        match s.attributions.first() {
            Some(a)
                if want_any.contains(&a.cause)
                    || (e.options.is_empty() && a.kind != kdelta::model::CauseKind::Kconfig) => {}
            other => failures.push(format!("{}: top = {:?}", e.id, other.map(|a| &a.cause))),
        }
    }
    assert!(
        failures.is_empty(),
        "entries that do not explain their example:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_readme_demo_with_two_repeats_reads_regression() {
    // Issue 19: the flagship demo's two-repeat run was called "too noisy" when the
    // baseline's repeats disagreed. A real run directory of it (tests/fixtures/runs).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/runs/qemu-kasan-2x2");
    let copy = tempfile::tempdir().unwrap();
    let rd = copy.path().join("run");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(&dir)
        .arg(&rd)
        .status()
        .unwrap();
    assert!(status.success());
    let s = kdelta::run::analysis::report_run_dir(&rd, &AnalysisSetup::default(), "test").unwrap();
    assert_eq!(
        s.verdict.status,
        VerdictStatus::Regression,
        "{}",
        s.verdict.headline
    );
    assert!(
        s.verdict.headline.contains("CONFIG_KASAN"),
        "{}",
        s.verdict.headline
    );
    let d = s.metrics[0].decision.as_ref().unwrap();
    assert_eq!(d.limit, 0.10, "the playbook's own gate limit");
    assert_eq!(d.pairs, 2);
    // The interval, p and status the page shows are one test's.
    assert_eq!(s.metrics[0].p_value, d.p_value);
    assert!(
        s.verdict.headline.contains(&d.reason),
        "{}\n{}",
        s.verdict.headline,
        d.reason
    );
    assert_eq!(s.attributions[0].cause, "CONFIG_KASAN");
}

/// Oracle (issue 14): every corpus file in tests/fixtures/perf-corpus folded by kdelta
/// and by inferno's collapse-perf 0.12.8 (the committed expected file; SOURCE.md there
/// says how it was made) has the same total weight and the same heaviest leaves.
/// Known naming differences: inferno brackets a frame named after its object
/// (`[libc.so]`, kdelta keeps `libc.so`): mapped before comparing. inferno also
/// tidies Java (`Lorg/x/Y;.m` → `org/x/Y:.m`) and JS names and demangles legacy Rust
/// symbols where kdelta keeps perf's names: for those files only the weights are
/// compared (only the total for Rust: demangling merges names that differ by their
/// hash). Leaves tied at the 5th weight may be cut differently: names are compared
/// above the cut.
#[test]
fn corpus_folds_like_inferno() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/perf-corpus");
    let expected = std::fs::read_to_string(root.join("inferno-0.12.8.expected")).unwrap();
    let mut bad = Vec::new();
    let mut seen = 0;
    for line in expected.lines() {
        let mut cols = line.split('\t');
        let (file, total) = (cols.next().unwrap(), cols.next().unwrap());
        seen += 1;
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let p = fold_str(&text);
        let got_total: u64 = p.stacks.iter().map(|s| p.weight(s)).sum();
        let mut by_leaf: BTreeMap<String, u64> = BTreeMap::new();
        for s in &p.stacks {
            let leaf = &p.names[s.frames[0] as usize];
            *by_leaf.entry(leaf.clone()).or_default() += p.weight(s);
        }
        let mut top: Vec<(String, u64)> = by_leaf.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let got_leaves: Vec<String> = top
            .iter()
            .take(5)
            .map(|(l, n)| format!("{l}={n}"))
            .collect();
        // Leaves are tab-separated: C++ and Rust names hold commas.
        let want_leaves: Vec<String> = cols
            .filter(|l| !l.is_empty())
            .map(|l| match l.strip_prefix('[') {
                Some(rest) if !l.starts_with("[unknown]") => rest.replacen("]=", "=", 1),
                _ => l.to_string(),
            })
            .collect();
        const TIDIED: &[&str] = &[
            "flamegraph-test/perf-java-stacks-01.txt",
            "flamegraph-test/perf-js-stacks-01.txt",
            "flamegraph-test/perf-rust-Yamakaky-dcpu.txt",
            "inferno-collapse-perf/java-inline.txt",
        ];
        let weight = |l: &String| -> u64 {
            l.rsplit_once('=')
                .and_then(|(_, n)| n.parse().ok())
                .unwrap_or(0)
        };
        let weights = |v: &[String]| v.iter().map(weight).collect::<Vec<u64>>();
        let above_cut = |v: &[String]| -> std::collections::BTreeSet<String> {
            let cut = v.last().map(weight).unwrap_or(0);
            v.iter().filter(|l| weight(l) > cut).cloned().collect()
        };
        let rust = file.ends_with("perf-rust-Yamakaky-dcpu.txt");
        let same = total.parse::<u64>().ok() == Some(got_total)
            && (rust || weights(&got_leaves) == weights(&want_leaves))
            && (TIDIED.contains(&file) || above_cut(&got_leaves) == above_cut(&want_leaves));
        let got_line = format!("{got_total}\t{}", got_leaves.join(","));
        let want_line = format!("{total}\t{}", want_leaves.join(","));
        if !same {
            bad.push(format!(
                "{file}:\n  inferno: {want_line}\n  kdelta:  {got_line}"
            ));
        }
    }
    assert!(seen >= 20, "{seen} files in the expected file");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Issue 14: an option that exists in one kernel only (absent from the other
/// kernel's file, across kernel versions) is a version effect, not a knob: never
/// blamed. In the same version an absent option is off because its dependency is,
/// and stays blamable (the KASAN demo without its `# CONFIG_KASAN is not set` line).
#[test]
fn options_of_one_kernel_only_are_not_blamed_as_knobs() {
    let hosts =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/runs/qemu-kasan-2x2/hosts");
    let setup = AnalysisSetup::default().load().unwrap();
    for (version, blamed) in [("6.1.192", true), ("6.12.117", false)] {
        let tmp = tempfile::tempdir().unwrap();
        for side in ["baseline", "candidate"] {
            let status = std::process::Command::new("cp")
                .arg("-r")
                .arg(hosts.join(side))
                .arg(tmp.path().join(side))
                .status()
                .unwrap();
            assert!(status.success());
        }
        let cfg = tmp.path().join("baseline/kernel.config");
        let text = std::fs::read_to_string(&cfg).unwrap();
        let text = text.replace("# CONFIG_KASAN is not set\n", "").replace(
            "Linux/x86 6.1.192 Kernel",
            &format!("Linux/x86 {version} Kernel"),
        );
        std::fs::write(&cfg, text).unwrap();
        let a = kdelta::run::analysis::analyze_folders(
            &tmp.path().join("baseline"),
            &tmp.path().join("candidate"),
            &setup,
        )
        .unwrap();
        let s = a.summary;
        let kasan = s
            .config_delta
            .iter()
            .find(|c| c.option == "CONFIG_KASAN")
            .expect("CONFIG_KASAN differs");
        let kasan_blamed = s.attributions.iter().any(|x| x.cause == "CONFIG_KASAN");
        assert_eq!(
            kasan_blamed, blamed,
            "{version}: {kasan:?} {:?}",
            s.attributions
        );
        assert_eq!(kasan.baseline, if blamed { "n" } else { "(absent)" });
        assert_eq!(
            s.config_counts.one_kernel_only > 0,
            !blamed,
            "{:?}",
            s.config_counts
        );
    }
}

/// Issue 17's first incident: a boot parameter only on the candidate that no
/// knowledge-base entry lists, with a tenth of busy time in functions named after it.
#[test]
fn a_boot_parameter_outside_the_knowledge_base_is_named_by_its_functions() {
    let s = runtime_scenario(
        91,
        facts("quiet", "Not affected", "0", 0),
        facts("quiet page_table_check=on", "Not affected", "0", 0),
        &[
            &[
                "__page_table_check_pte_set",
                "set_pte_range",
                "filemap_map_pages",
                "do_fault",
                "handle_mm_fault",
                "exc_page_fault",
            ],
            &[
                "page_table_check_clear",
                "zap_pte_range",
                "unmap_page_range",
                "exit_mmap",
            ],
        ],
        0.1,
    );
    let top = &s.attributions[0];
    assert_eq!(
        top.cause, "cmdline.page_table_check",
        "{:#?}",
        s.attributions
    );
    assert_eq!(top.source, CauseSource::NameMatch);
    assert!(
        (top.explained_share - 0.1).abs() < 0.03,
        "{}",
        top.explained_share
    );
    assert!(
        top.evidence
            .iter()
            .any(|e| e.symbol == "__page_table_check_pte_set"),
        "{:?}",
        top.evidence
    );
}

/// Probe code that no captured difference explains: the remainder names its family
/// and what to check, in the caveats and in the headline.
#[test]
fn unexplained_probe_code_says_what_to_check() {
    let s = runtime_scenario(
        93,
        facts("quiet", "Not affected", "0", 0),
        facts("quiet", "Not affected", "0", 0),
        &[
            &[
                "kprobe_ftrace_handler",
                "ftrace_regs_call",
                "tcp_sendmsg",
                "sock_sendmsg",
            ],
            &[
                "kprobe_dispatcher",
                "kprobe_ftrace_handler",
                "tcp_sendmsg",
                "sock_sendmsg",
            ],
        ],
        0.15,
    );
    assert!(s.attributions.is_empty(), "{:#?}", s.attributions);
    let note = s
        .caveats
        .iter()
        .find(|c| c.starts_with("unexplained: "))
        .unwrap_or_else(|| panic!("{:#?}", s.caveats));
    assert!(note.contains("probe and tracing code"), "{note}");
    assert!(note.contains("kprobe_events"), "{note}");
}

/// The only knob that differs, with functions on one side that carry no name of it:
/// tied by elimination, at medium confidence at most, and said so.
#[test]
fn the_only_difference_is_tied_by_elimination() {
    let mut cand = facts("quiet", "Not affected", "0", 0);
    cand.extra.insert(
        "clock".into(),
        serde_json::json!({ "clocksource": "acpi_pm" }),
    );
    let mut base = facts("quiet", "Not affected", "0", 0);
    base.extra
        .insert("clock".into(), serde_json::json!({ "clocksource": "tsc" }));
    // `acpi_pm_read` would be a value match; these carry no name of the value.
    let s = runtime_scenario(
        95,
        base,
        cand,
        &[&["ioread32", "pm_timer_read_slow", "ktime_get", "tcp_sendmsg"]],
        0.12,
    );
    let top = &s.attributions[0];
    assert_eq!(top.cause, "clock.clocksource", "{:#?}", s.attributions);
    assert_eq!(top.source, CauseSource::Elimination);
    assert_ne!(top.confidence, Confidence::High);
    assert!(
        top.why.contains("only configuration or runtime difference"),
        "{}",
        top.why
    );
}
