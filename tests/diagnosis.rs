//! Diagnosis beyond the knowledge base (issue 17) on a real capture: the lab run of
//! `playbooks/lab-tc-filters.yaml` (tests/fixtures/captures/SOURCE.md), whose cause —
//! 2000 tc u32 filters on the candidate's eth0 — no entry of
//! `configs/attribution.yaml` names. And `facts.json` as people write it.

use std::path::{Path, PathBuf};

use kdelta::analyze::fold::FoldOptions;
use kdelta::analyze::load_capture;
use kdelta::attribute::KnowledgeBase;
use kdelta::model::{CauseSource, Summary, VerdictStatus};
use kdelta::run::analysis::{summarize, AnalysisSetup};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/captures/lab-tc-filters")
}

fn analyse(base: &Path, cand: &Path) -> Summary {
    let fo = FoldOptions::default();
    let b = load_capture(base, "baseline", &fo).unwrap();
    let c = load_capture(cand, "candidate", &fo).unwrap();
    let setup = AnalysisSetup::default().load().unwrap();
    summarize(&b, &c, &setup).unwrap()
}

/// The two capture folders copied, with `facts.json` of each side replaced.
fn with_facts(tag: &str, base: Option<&str>, cand: Option<&str>) -> (PathBuf, PathBuf) {
    let root = std::env::temp_dir().join(format!("kdelta-diag-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut out = vec![];
    for (side, facts) in [("baseline", base), ("candidate", cand)] {
        let d = root.join(side);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["kernel.config", "metrics.json", "perf.script.zst"] {
            std::fs::copy(fixture().join(side).join(f), d.join(f)).unwrap();
        }
        if let Some(text) = facts {
            std::fs::write(d.join("facts.json"), text).unwrap();
        }
        out.push(d);
    }
    (out[0].clone(), out[1].clone())
}

#[test]
fn tc_filters_are_named_by_the_value_that_selects_their_code() {
    let kb = KnowledgeBase::builtin().unwrap();
    let key = "nic.eth0.tc_filter_kinds";
    for e in &kb.entries {
        for pat in &e.runtime {
            let re = kdelta::attribute::kb::glob_regex(pat).unwrap();
            assert!(
                !re.is_match(key),
                "{} names {key}: not a test of the general mechanisms",
                e.id
            );
        }
    }
    let s = analyse(&fixture().join("baseline"), &fixture().join("candidate"));
    assert_eq!(
        s.verdict.status,
        VerdictStatus::Regression,
        "{}",
        s.verdict.headline
    );
    let top = &s.attributions[0];
    assert_eq!(top.cause, key, "{:#?}", s.attributions);
    assert_eq!(top.source, CauseSource::NameMatch);
    assert_eq!(
        (top.baseline.as_str(), top.candidate.as_str()),
        ("(absent)", "u32")
    );
    assert!(top.explained_share > 0.1, "{}", top.explained_share);
    assert!(
        top.evidence.iter().any(|e| e.symbol == "u32_classify"),
        "{:?}",
        top.evidence
    );
    assert!(s.verdict.headline.contains(key), "{}", s.verdict.headline);
    // The filter count differs too, and is in the delta for the reader.
    assert!(s
        .runtime_delta
        .iter()
        .any(|r| r.key == "nic.eth0.tc_filters" && r.candidate == "2000"));
}

#[test]
fn hand_written_facts_with_numbers_and_booleans_work() {
    let base = r#"{"kernel": "6.18.44", "nr_cpus": 2, "memory_kb": "24576000",
        "sysctl": {"fs.file-max": 9223372036854775807, "net.ipv4.tcp_mem": [4096, 87380, 6291456],
                   "net.ipv4.tcp_sack": true},
        "nic": [{"name": "eth0", "mtu": 1500, "features": {"tc_filters": 0}}]}"#;
    let cand = r#"{"kernel": "6.18.44", "nr_cpus": 2, "memory_kb": 24576000,
        "sysctl": {"fs.file-max": 9223372036854775807, "net.ipv4.tcp_mem": [4096, 87380, 6291456],
                   "net.ipv4.tcp_sack": 1, "vm.swappiness": {"oops": 1}},
        "nic": [{"name": "eth0", "mtu": "1500", "features": {"tc_filters": 2000, "tc_filter_kinds": "u32"}}]}"#;
    let (b, c) = with_facts("numbers", Some(base), Some(cand));
    let s = analyse(&b, &c);
    assert!(
        !s.caveats.iter().any(|c| c.contains("facts.json")),
        "{:?}",
        s.caveats
    );
    assert_eq!(
        s.warnings
            .iter()
            .filter(|w| w.contains("facts.json"))
            .count(),
        1,
        "{:?}",
        s.warnings
    );
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("`sysctl.vm.swappiness`")),
        "{:?}",
        s.warnings
    );
    // `true` and `1` are one value; numbers compare as text.
    assert!(
        !s.runtime_delta.iter().any(|r| r.key.starts_with("sysctl.")),
        "{:?}",
        s.runtime_delta
    );
    assert_eq!(
        s.attributions[0].cause, "nic.eth0.tc_filter_kinds",
        "{:#?}",
        s.attributions
    );
}

#[test]
fn missing_and_unreadable_facts_are_different_caveats() {
    let good = std::fs::read_to_string(fixture().join("baseline/facts.json")).unwrap();
    let (b, c) = with_facts("unreadable", Some(&good), Some("{ not json"));
    let s = analyse(&b, &c);
    assert!(
        s.caveats
            .iter()
            .any(|x| x.starts_with("facts.json of candidate could not be read")),
        "{:?}",
        s.caveats
    );
    let (b, c) = with_facts("missing", Some(&good), None);
    let s = analyse(&b, &c);
    assert!(
        s.caveats
            .iter()
            .any(|x| x.starts_with("facts.json missing on candidate")),
        "{:?}",
        s.caveats
    );
}

fn module_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/captures/qemu-module")
}

/// Issue 17, the kernel's module map: the QEMU run of `playbooks/qemu-module.yaml`
/// (tests/fixtures/captures/SOURCE.md), one Debian kernel package on both sides, the
/// candidate with sch_netem loaded and a netem qdisc on its loopback. No function of
/// netem carries its module's name, no knowledge-base entry names it, and three knobs
/// differ (so elimination does not apply): only the `[sch_netem]` tags perf printed
/// tie the candidate's netem_enqueue/netem_dequeue time to `modules.sch_netem`.
#[test]
fn a_module_loaded_on_one_side_is_named_through_the_module_map() {
    let key = "modules.sch_netem";
    let kb = KnowledgeBase::builtin().unwrap();
    for e in &kb.entries {
        for pat in &e.runtime {
            let re = kdelta::attribute::kb::glob_regex(pat).unwrap();
            assert!(!re.is_match(key), "{} names {key}", e.id);
        }
    }
    let f = module_fixture();
    let s = analyse(&f.join("baseline"), &f.join("candidate"));
    let top = &s.attributions[0];
    assert_eq!(top.cause, key, "{:#?}", s.attributions);
    assert_eq!(top.source, CauseSource::KernelMap);
    assert_eq!(top.confidence, kdelta::model::Confidence::High);
    assert!(top.explained_share > 0.03, "{}", top.explained_share);
    assert!(
        top.evidence.iter().any(|e| e.symbol == "netem_enqueue"),
        "{:?}",
        top.evidence
    );
    assert!(
        top.evidence.iter().all(|e| !e.symbol.contains("sch_netem")),
        "no function is named after the module: {:?}",
        top.evidence
    );
    // The same frames without their module tags (as perf prints them when it reads
    // /proc/kcore): no map ties them to the module. The module is the only knob that
    // differs (the sysctls that differ are sized from memory) and kernel functions
    // run on one side only, so elimination names it, with lower confidence and
    // saying how; nothing names it high.
    let root = std::env::temp_dir().join(format!("kdelta-diag-untagged-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for side in ["baseline", "candidate"] {
        let d = root.join(side);
        std::fs::create_dir_all(&d).unwrap();
        for file in ["kernel.config", "metrics.json", "facts.json"] {
            std::fs::copy(f.join(side).join(file), d.join(file)).unwrap();
        }
        let text = zstd::stream::decode_all(
            std::fs::File::open(f.join(side).join("perf.script.zst")).unwrap(),
        )
        .unwrap();
        let text = String::from_utf8_lossy(&text).replace("([sch_netem])", "([kernel.kallsyms])");
        std::fs::write(d.join("perf.script"), text).unwrap();
    }
    let s = analyse(&root.join("baseline"), &root.join("candidate"));
    assert!(
        s.attributions.iter().any(|a| a.cause == key)
            && s.attributions.iter().all(|a| a.cause != key
                || (a.source == CauseSource::Elimination
                    && a.confidence != kdelta::model::Confidence::High
                    && a.why.contains("by elimination"))),
        "{:#?}",
        s.attributions
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// Issue 17, the other side of the module map: Debian's cloud kernel builds ext4,
/// jbd2 and crc32c in, the generic kernel loads them as modules
/// (tests/fixtures/captures/qemu-cloud-files: a file workload on the guests' ext4
/// root, `playbooks/qemu-cloud-files.yaml`). `modules.ext4` differs and 37% of the
/// generic side's busy time is in `[ext4]` frames, but the same functions run built
/// in on the cloud side, as much: the module is no cause. (Tied by membership alone
/// it was blamed for 37 points with high confidence.)
#[test]
fn a_module_built_into_the_other_kernel_is_not_blamed() {
    let f = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/captures/qemu-cloud-files");
    let s = analyse(&f.join("baseline"), &f.join("candidate"));
    assert!(
        s.runtime_delta
            .iter()
            .any(|r| r.key == "modules.ext4" && r.candidate == "loaded"),
        "{:?}",
        s.runtime_delta
    );
    assert!(s.config_delta.iter().any(|c| c.option == "CONFIG_EXT4_FS"
        && (c.baseline.as_str(), c.candidate.as_str()) == ("y", "m")));
    assert!(
        s.attributions
            .iter()
            .all(|a| !a.cause.contains("ext4") && !a.cause.starts_with("modules.")),
        "{:#?}",
        s.attributions
    );
    assert!(
        s.attributions
            .iter()
            .all(|a| a.confidence != kdelta::model::Confidence::High),
        "{:#?}",
        s.attributions
    );
}

/// Issue 18, the seed's incident on a real capture: `playbooks/qemu-rtmp.yaml` (nginx
/// with the RTMP module re-proxying one stream to four ffmpeg consumers, full Debian
/// guests, plain vs KASAN kernel; tests/fixtures/captures/SOURCE.md). CONFIG_KASAN is
/// named first with KASAN's stack recording as evidence, some of it under the TCP ack
/// path, and the softirq receive path takes several times its baseline share — the
/// seed's perf showed `save_stack` atop `tcp_write_xmit`/`tcp_ack` and
/// `net_rx_action` at 10.5 % against 0.59 %.
#[test]
fn the_rtmp_re_proxy_on_a_kasan_kernel_names_kasan() {
    let f = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/captures/qemu-rtmp");
    let s = analyse(&f.join("baseline"), &f.join("candidate"));
    let top = &s.attributions[0];
    assert_eq!(top.cause, "CONFIG_KASAN", "{:#?}", s.attributions);
    assert_eq!(top.confidence, kdelta::model::Confidence::High);
    assert!(top.explained_share > 0.2, "{}", top.explained_share);
    assert_eq!(
        top.evidence.first().map(|e| e.symbol.as_str()),
        Some("kasan_save_stack"),
        "{:?}",
        top.evidence
    );
    assert!(
        top.stacks
            .iter()
            .any(|st| st.frames.iter().any(|f| f == "kasan_save_stack")
                && st
                    .frames
                    .iter()
                    .any(|f| f == "tcp_ack" || f == "tcp_write_xmit")),
        "no evidence stack records a stack under the TCP paths: {:#?}",
        top.stacks
    );
    let share = |sym: &str| {
        let f = s.functions.iter().find(|f| f.symbol == sym).unwrap();
        (f.baseline_share, f.candidate_share)
    };
    let (b, c) = share("net_rx_action");
    assert!(c > 3.0 * b, "net_rx_action {b} → {c}");
    let bitrate = s.metrics.iter().find(|m| m.name == "bitrate").unwrap();
    assert!(bitrate.change < -0.5, "{}", bitrate.change);
}

/// A guest whose kernel crashed at its first boot and came up at the second
/// (`console-boot1.log` kept beside the capture) is a caveat of the analysis: a
/// kernel that crashes sometimes is a finding of its own.
#[test]
fn a_crashed_first_boot_is_a_caveat() {
    let (b, c) = with_facts("boot1", Some("{}"), Some("{}"));
    let s = analyse(&b, &c);
    assert!(
        s.caveats.iter().all(|w| !w.contains("first boot")),
        "{:?}",
        s.caveats
    );
    std::fs::write(c.join("console-boot1.log"), "Kernel panic - not syncing\n").unwrap();
    let s = analyse(&b, &c);
    assert!(
        s.caveats
            .iter()
            .any(|w| w.starts_with("candidate: the guest's kernel crashed at its first boot")),
        "{:?}",
        s.caveats
    );
    let _ = std::fs::remove_dir_all(b.parent().unwrap());
}
