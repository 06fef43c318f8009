//! Property tests for every parser of user or host data (issue 13): whatever the
//! input, no panic; and what a parser must keep, it keeps. Inputs are arbitrary
//! text and, to reach past the first check, text assembled from real syntax
//! (playbook keys, `perf script` headers and frames, `.config` lines, facts
//! sections) with random values and damage. `bench/fuzz.sh` runs the same targets
//! for a million inputs each.

use std::collections::BTreeSet;
use std::path::Path;

use proptest::prelude::*;

use kdelta::analyze::fold::{fold_reader, FoldOptions};
use kdelta::kconfig::KernelConfig;

/// Text from real pieces of a format, glued in random order with random values.
fn pieces(parts: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::sample::select(parts),
            "[ -~€\t]{0,12}",
            prop::sample::select(&["\n", " ", "\n\n", "", ":", "{", "}", "\t"][..]),
        ),
        0..max,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(p, val, sep)| format!("{p}{val}{sep}"))
            .collect()
    })
}

const YAML: &[&str] = &[
    "name: ",
    "hosts:\n  baseline: ",
    "  candidate: ",
    "{ provider: lab }",
    "{ provider: ssh, destination: ",
    "{ provider: qemu, kernel: { source: linux-source-6.1, options: { CONFIG_KASAN: ",
    "{ provider: command, up: ",
    "workload:\n  client: { from: orchestrator, run: \"",
    "\" }\n",
    "  metrics:\n    t: { json: ",
    "regex: '(",
    "capture:\n  repeat: ",
    "  perf: { frequency: ",
    "gate:\n  t: { max_regression: ",
    "deploy:\n  - run: ",
    "  - upload: { from: ",
    "{{ host.address }}",
    "{% if x %}",
    "€€",
    "- ",
    "    ",
    "sysctl: { net.core.busy_poll: ",
    "timeouts: { run: ",
];

const VALID: &str = "name: t\nhosts:\n  baseline: { provider: lab }\n  candidate: { provider: lab }\nworkload:\n  client: { run: \"iperf3 -c {{ host.address }}\" }\n  metrics:\n    throughput: { json: end.sum_received.bits_per_second, unit: bit/s }\n";

const PERF: &[&str] = &[
    "iperf3 1234 [001] 12345.678901: ",
    "swapper     0 [000]  1.000000:    1010101 cpu-clock:pppH: ",
    "java 19983 cycles: ",
    "perf 7/7 [3] 1.5: 195165 cycles:u: ",
    "\tffffffff81a3c4e1 tcp_ack+0x1f ([kernel.kallsyms])\n",
    "\t7f29d1c0 [unknown] (/usr/lib/libc.so.6)\n",
    "\t    ffffffff8100 native_safe_halt+0xb ([kernel.kallsyms])\n",
    "\t0 do_idle (inlined)\n",
    "ffffffff81000000 sym+0x1 (dso)\n",
    "# kdelta-repeat: ",
    "# ========\n",
    "\n",
    "(",
    ")",
    "+0x",
];

const KCONFIG: &[&str] = &[
    "CONFIG_KASAN=y\n",
    "CONFIG_",
    "# CONFIG_X is not set\n",
    "# CONFIG_",
    " is not set",
    "=\"str ing\"\n",
    "=0x10\n",
    "=",
    "#\n",
    "CONFIG_NR_CPUS=64\n",
];

const FACTS: &[&str] = &[
    "@@hostname\n",
    "@@kernel\n6.1.0\n",
    "@@nproc\n",
    "@@meminfo\nMemTotal: ",
    "@@virt\nnone\n",
    "@@cmdline\nBOOT_IMAGE=/v ro mitigations=off dyndbg=\"",
    "@@sysctl\nnet.core.busy_poll = ",
    "@@vuln\nmeltdown: ",
    "@@thp\nalways [madvise] ",
    "@@nic\nnic eth0\nmtu ",
    "feature tso ",
    "driver ",
    "@@netfilter\nnft_rules ",
    "@@ftrace\ncurrent_tracer ",
    "@@perf_broken\n",
    "@@paranoid\n",
    "@@",
];

fn fold(text: &[u8], block_size: usize) -> kdelta::analyze::fold::Profile {
    let opts = FoldOptions {
        threads: 2,
        block_size,
        max_warnings: 3,
    };
    fold_reader(text, "prop", &opts).expect("reading from memory cannot fail")
}

/// Stacks as comparable text: the same samples whatever the cut of the blocks.
fn stacks(p: &kdelta::analyze::fold::Profile) -> Vec<String> {
    let mut v: Vec<String> = p
        .stacks
        .iter()
        .map(|s| {
            let names: Vec<&str> = s
                .frames
                .iter()
                .map(|&f| p.names[f as usize].as_str())
                .collect();
            format!(
                "{}|{}|{}|{}|{}",
                names.join(";"),
                s.repeat,
                s.idle,
                s.count,
                s.period
            )
        })
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn playbook_never_panics(text in prop_oneof![".{0,400}", pieces(YAML, 30)]) {
        let r = kdelta::playbook::parse(&text, "pb.yaml", Path::new("."));
        if let Err(e) = r {
            prop_assert!(e.to_string().starts_with("pb.yaml:"));
        }
    }

    #[test]
    fn damaged_valid_playbook_names_the_file(cut in 0usize..400, insert in "[ -~€]{0,6}") {
        let mut text: String = VALID.chars().take(cut).collect();
        text.push_str(&insert);
        text.extend(VALID.chars().skip(cut));
        if let Err(e) = kdelta::playbook::parse(&text, "pb.yaml", Path::new(".")) {
            prop_assert!(e.to_string().starts_with("pb.yaml:"), "{}", e);
        }
    }

    #[test]
    fn yaml_path_never_panics(text in prop_oneof![".{0,200}", pieces(YAML, 12)], line in 0u64..20, col in 0u64..80) {
        let _ = kdelta::playbook::yaml_path::yaml_path_at(&text, line, col);
    }

    #[test]
    fn perf_script_never_panics_and_counts_add_up(
        text in prop_oneof![pieces(PERF, 40), ".{0,300}".prop_map(String::from)],
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        for input in [text.as_bytes(), &bytes[..]] {
            let p = fold(input, 8 << 20);
            let counted: u64 = p.stacks.iter().map(|s| s.count).sum();
            prop_assert_eq!(counted, p.samples);
            prop_assert!(p.idle_samples <= p.samples);
            prop_assert!(p.repeats >= 1);
        }
    }

    #[test]
    fn perf_script_fold_does_not_depend_on_block_cuts(text in pieces(PERF, 40), block in 1usize..64) {
        let whole = fold(text.as_bytes(), 8 << 20);
        let cut = fold(text.as_bytes(), block);
        prop_assert_eq!(stacks(&whole), stacks(&cut));
        prop_assert_eq!(whole.samples, cut.samples);
    }

    #[test]
    fn kernel_config_never_panics_and_keeps_options(
        junk in prop_oneof![pieces(KCONFIG, 30), ".{0,200}".prop_map(String::from)],
        opts in prop::collection::btree_map("[A-Z][A-Z0-9_]{0,10}", prop_oneof![Just("y".to_string()), Just("m".to_string()), "[0-9]{1,4}"], 0..10),
    ) {
        let _ = KernelConfig::parse(&junk);
        let text: String = opts.iter().map(|(k, v)| format!("CONFIG_{k}={v}\n")).collect();
        let c = KernelConfig::parse(&format!("{text}{junk}\n{text}"));
        for (k, v) in &opts {
            prop_assert_eq!(c.get(&format!("CONFIG_{k}")), v.as_str());
        }
        prop_assert!(kdelta::kconfig::diff(&c, &c).is_empty());
    }

    #[test]
    fn facts_output_never_panics_and_round_trips(text in prop_oneof![pieces(FACTS, 30), ".{0,300}".prop_map(String::from)]) {
        let f = kdelta::capture::facts::parse_facts(&text);
        let json = serde_json::to_string(&f).expect("facts serialise");
        let back: kdelta::model::Facts = serde_json::from_str(&json).expect("facts read back");
        prop_assert_eq!(serde_json::to_string(&back).expect("again"), json);
        let _ = kdelta::analyze::runtime::runtime_delta(&f, &back);
    }

    #[test]
    fn facts_json_never_panics(text in prop_oneof![".{0,200}", pieces(&["{", "}", "\"sysctl\":", "\"nic\": [", "]", "\"kernel\": ", "1e999", "null", ","], 30)]) {
        let _ = serde_json::from_str::<kdelta::model::Facts>(&text);
        let _ = serde_json::from_str::<kdelta::model::Metrics>(&text);
    }

    #[test]
    fn metric_extraction_never_panics_and_finds_the_number(
        noise_before in "[ -~€]{0,40}",
        noise_after in "[ -~€]{0,40}",
        v in -1e12f64..1e12,
    ) {
        use kdelta::playbook::{Extract, MetricSpec};
        let spec = |e| MetricSpec { name: "m".into(), extract: e, unit: String::new(), better: kdelta::model::Better::Higher, from_server: false, scale: 1.0 };
        let out = format!("{noise_before}\n{{\"end\": {{\"x\": {v}}}}}\n{noise_after}");
        let json = spec(Extract::Json("end.x".into()));
        let _ = kdelta::capture::metrics::extract(&json, &noise_before);
        // The object is found unless the noise before it holds a whole object itself.
        if !noise_before.contains('{') {
            prop_assert_eq!(kdelta::capture::metrics::extract(&json, &out), Ok(v));
        }
        let re = spec(Extract::Regex(regex::Regex::new(r"x.: ([-0-9.e]+)").expect("regex")));
        let _ = kdelta::capture::metrics::extract(&re, &out);
    }

    #[test]
    fn host_outputs_never_panic(text in ".{0,300}") {
        let _ = kdelta::provision::command::parse_up(&text);
        let _ = kdelta::analyze::runtime::cmdline_params(&text);
        let _ = kdelta::provision::qemu::package::image_dependency(&text);
        let t = std::time::UNIX_EPOCH;
        let _ = kdelta::run::check::host_checks(kdelta::model::Role::Baseline, &kdelta::model::Facts::default(), "/tmp", &text, t, t);
    }

    #[test]
    fn kernel_source_never_panics(text in prop_oneof![".{0,300}", pieces(&["#ifdef CONFIG_A\n", "#else\n", "#endif\n", "#if IS_ENABLED(CONFIG_A) && defined(CONFIG_B)\n", "static int f(void)\n{\n", "}\n", "/*", "*/", "obj-$(CONFIG_A) += a.o b/\n", "\\\n", "#elif\n"], 30)]) {
        let wanted: BTreeSet<String> = ["CONFIG_A".to_string(), "CONFIG_B".to_string()].into();
        let _ = kdelta::attribute::ksrc::functions(&text, &wanted);
        let _ = kdelta::attribute::ksrc::kbuild_rules(&text, &wanted);
    }
}
