//! A bounded mutation fuzzer for kdelta's parsers of user and host data (issue 13):
//! each target gets N inputs made by damaging real seeds (the repository's playbooks,
//! captures and configs): bytes flipped, inserted, deleted, duplicated, spliced with
//! another seed, cut, or replaced by format tokens. Every call runs under
//! `catch_unwind`; a panic is counted and its input saved. Prints, per target, the
//! inputs tried, the panics found and the time.
//!
//! cargo-fuzz needs a nightly toolchain, which this project does not assume; this
//! runs on stable, is seeded (the same run twice tries the same inputs) and needs
//! nothing but the repository. Run: `bash bench/fuzz.sh [N]` (default 1,000,000).

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use kdelta::analyze::fold::{fold_reader, FoldOptions};

/// SplitMix64: seeded, so a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b": ",
    b"\n",
    b"\n\n",
    b"\t",
    b" ",
    b"\"",
    b"'",
    b"#",
    b"-",
    b"- ",
    b"{{ ",
    b" }}",
    b"{%",
    b"%}",
    b"\xe2\x82\xac",
    b"\xff",
    b"\0",
    b"+0x",
    b"(",
    b")",
    b"[unknown]",
    b"# kdelta-repeat: 4294967295\n",
    b"# kdelta-repeat: 99999999999\n",
    b"cpu-clock:pppH:",
    b"CONFIG_",
    b"=y\n",
    b" is not set\n",
    b"@@",
    b"@@nic\n",
    b"nic ",
    b"feature ",
    b"=",
    b"99999999999999999999",
    b"-1",
    b"1e999",
    b"NaN",
    b"\\\n",
    b"#ifdef CONFIG_A\n",
    b"#endif\n",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(v.len() + 1);
        match rng.below(9) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.insert(at, rng.next() as u8),
            2 if !v.is_empty() => {
                let end = (at + 1 + rng.below(32)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 if !v.is_empty() => {
                let a = rng.below(v.len());
                let b = (a + 1 + rng.below(64)).min(v.len());
                let chunk = v[a..b].to_vec();
                v.splice(at..at, chunk);
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            5 => v.truncate(at),
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
        }
    }
    v
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

type Target = (&'static str, Vec<Vec<u8>>, Box<dyn Fn(&[u8])>);

fn read_seeds(paths: &[PathBuf], limit: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = paths
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|mut b| {
            // Large seeds make slow inputs without finding more: keep their start.
            b.truncate(limit);
            b
        })
        .collect();
    out.push(Vec::new());
    out
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p, ext));
        } else if p.to_string_lossy().ends_with(ext) {
            out.push(p);
        }
    }
    out
}

fn zstd_text(p: &Path, limit: usize) -> Vec<u8> {
    let mut b = std::fs::read(p)
        .ok()
        .and_then(|z| zstd::decode_all(&z[..]).ok())
        .unwrap_or_default();
    b.truncate(limit);
    b
}

fn targets(repo: &Path) -> Vec<Target> {
    let fold_opts = FoldOptions {
        threads: 1,
        block_size: 4096,
        max_warnings: 2,
    };
    let mut perf: Vec<Vec<u8>> = files(&repo.join("tests/fixtures"), "perf.script.zst")
        .iter()
        .map(|p| zstd_text(p, 6000))
        .collect();
    perf.push(
        b"java 19983 cycles: \n\tffffffff81000000 tcp_ack+0x1 ([kernel.kallsyms])\n\n".to_vec(),
    );
    let wanted: BTreeSet<String> = ["CONFIG_A".to_string(), "CONFIG_KASAN".to_string()].into();
    vec![
        (
            "playbook",
            read_seeds(&files(&repo.join("playbooks"), ".yaml"), 4000),
            Box::new(|b: &[u8]| {
                let _ = kdelta::playbook::parse(&text(b), "pb.yaml", Path::new("/nonexistent"));
            }),
        ),
        (
            "yaml path of an error",
            read_seeds(&files(&repo.join("playbooks"), ".yaml"), 2000),
            Box::new(|b: &[u8]| {
                let t = text(b);
                let n = t.lines().count() as u64;
                for (line, col) in [(1, 1), (n, 200), (n / 2 + 1, 7), (2, 40)] {
                    let _ = kdelta::playbook::yaml_path::yaml_path_at(&t, line, col);
                }
            }),
        ),
        (
            "perf script",
            perf,
            Box::new(move |b: &[u8]| {
                let _ = fold_reader(b, "fuzz", &fold_opts);
            }),
        ),
        (
            ".config",
            read_seeds(
                &[files(&repo.join("tests/fixtures/kconfig"), "amd64"), files(&repo.join("tests/fixtures"), "kernel.config")].concat(),
                8000,
            ),
            Box::new(|b: &[u8]| {
                let c = kdelta::kconfig::KernelConfig::parse(&text(b));
                let _ = kdelta::kconfig::diff(&c, &kdelta::kconfig::KernelConfig::default());
            }),
        ),
        (
            "facts (script output)",
            vec![b"@@hostname\nh\n@@kernel\n6.1.0\n@@nproc\n2\n@@meminfo\nMemTotal: 1 kB\n@@virt\nnone\nkvm\n@@cmdline\nro quiet a=\"b c\" nopti\n@@sysctl\nnet.core.busy_poll = 50\n@@vuln\nmeltdown: Mitigation: PTI\n@@thp\nalways [madvise] never\n@@nic\nnic eth0\nmtu 1500\ndriver veth\nfeature tso on\n@@netfilter\nnft_rules 3\n@@perf_broken\n\n@@paranoid\n-1\n".to_vec()],
            Box::new(|b: &[u8]| {
                let f = kdelta::capture::facts::parse_facts(&text(b));
                let _ = kdelta::analyze::runtime::runtime_delta(&f, &kdelta::model::Facts::default());
            }),
        ),
        (
            "facts.json and metrics.json",
            read_seeds(
                &[files(&repo.join("tests/fixtures"), "facts.json"), files(&repo.join("tests/fixtures"), "metrics.json")].concat(),
                6000,
            ),
            Box::new(|b: &[u8]| {
                if let Ok(f) = serde_json::from_slice::<kdelta::model::Facts>(b) {
                    let _ = kdelta::analyze::runtime::runtime_delta(&f, &f);
                }
                let _ = serde_json::from_slice::<kdelta::model::Metrics>(b);
            }),
        ),
        (
            "workload metrics",
            vec![
                b"noise\n{\"end\": {\"sum_received\": {\"bits_per_second\": 1.5e9}}}\n".to_vec(),
                b"[  5] 0.0-10 sec  1,234.5 Gbits/sec\n".to_vec(),
            ],
            Box::new(|b: &[u8]| {
                use kdelta::playbook::{Extract, MetricSpec};
                let t = text(b);
                for e in [
                    Extract::Json("end.sum_received.bits_per_second".into()),
                    Extract::Json("a[0].b".into()),
                ] {
                    let m = MetricSpec { name: "m".into(), extract: e, unit: String::new(), better: kdelta::model::Better::Higher, from_server: false, scale: 1.0 };
                    let _ = kdelta::capture::metrics::extract(&m, &t);
                }
            }),
        ),
        (
            "host command output (up, cmdline, apt-cache, df)",
            vec![
                b"creating\n{\"address\": \"198.51.100.7\", \"port\": 2222, \"id\": 5}\n".to_vec(),
                b"BOOT_IMAGE=/vmlinuz ro dyndbg=\"file x +p\" -- init\n".to_vec(),
                b"linux-image-amd64\n  Depends: linux-image-6.1.0-28-amd64\n".to_vec(),
                b"tmpfs 1000 900 100000 10% /tmp\n1000005.5\n".to_vec(),
            ],
            Box::new(|b: &[u8]| {
                let t = text(b);
                let _ = kdelta::provision::command::parse_up(&t);
                let _ = kdelta::analyze::runtime::cmdline_params(&t);
                let _ = kdelta::provision::qemu::package::image_dependency(&t);
                let e = std::time::UNIX_EPOCH;
                let _ = kdelta::run::check::host_checks(kdelta::model::Role::Baseline, &kdelta::model::Facts::default(), "/tmp", &t, e, e);
            }),
        ),
        (
            "kernel source (Kbuild, #ifdef)",
            read_seeds(&[files(&repo.join("tests/fixtures/kernel-src-mini"), ".c"), files(&repo.join("tests/fixtures/kernel-src-mini"), "Makefile")].concat(), 6000),
            Box::new(move |b: &[u8]| {
                let t = text(b);
                let _ = kdelta::attribute::ksrc::functions(&t, &wanted);
                let _ = kdelta::attribute::ksrc::kbuild_rules(&t, &wanted);
            }),
        ),
    ]
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let crashes = std::env::temp_dir().join("kdelta-fuzz-crashes");
    // Panics are what this counts: keep them off the terminal, count them here.
    std::panic::set_hook(Box::new(|_| {}));
    println!("| target | seeds | inputs | panics | seconds |");
    println!("|---|---|---|---|---|");
    let mut total = (0u64, 0u64);
    for (name, seeds, f) in targets(&repo) {
        let mut rng = Rng(0x6b64_656c_7461 ^ name.len() as u64);
        let started = Instant::now();
        let mut panics = 0u64;
        for i in 0..n {
            let input = mutate(&mut rng, &seeds);
            if catch_unwind(AssertUnwindSafe(|| f(&input))).is_err() {
                panics += 1;
                if panics <= 5 {
                    let _ = std::fs::create_dir_all(&crashes);
                    let p = crashes.join(format!("{}-{i}", name.replace(' ', "_")));
                    let _ = std::fs::write(&p, &input);
                }
            }
        }
        total.0 += n;
        total.1 += panics;
        println!(
            "| {name} | {} | {n} | {panics} | {:.1} |",
            seeds.len(),
            started.elapsed().as_secs_f64()
        );
    }
    println!(
        "\n{} inputs in all, {} panics{}",
        total.0,
        total.1,
        if total.1 > 0 {
            format!(" (inputs kept in {})", crashes.display())
        } else {
            String::new()
        }
    );
    if total.1 > 0 {
        std::process::exit(1);
    }
}
