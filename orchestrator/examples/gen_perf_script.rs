//! Writes a synthetic but realistic `perf script` capture pair for the analysis
//! benchmark (bench/analyze.sh): kernel and user frames, stacks 10–40 deep, a few
//! thousand distinct stacks drawn with a skewed distribution, and on the candidate a
//! debug-kernel share (KASAN stack recording) on top of the same workload. Two
//! families of kernel functions are module code (`nf_*` in `[nf_tables]`, `bio_*`
//! in a module printed by its path), as on a distribution kernel.
//!
//! usage: gen_perf_script OUT_DIR BASELINE_SAMPLES CANDIDATE_SAMPLES [SEED]

use std::io::{BufWriter, Write};
use std::path::Path;

use kdelta::analyze::stats::SplitMix;

const KASAN: &[&str] = &[
    "arch_stack_walk",
    "stack_trace_save",
    "kasan_save_stack",
    "kasan_set_track",
    "kasan_save_free_info",
    "__kasan_slab_free",
    "kmem_cache_free",
    "kfree_skbmem",
    "__kfree_skb",
];

const IDLE: &[&str] = &[
    "pv_native_safe_halt",
    "default_idle",
    "default_idle_call",
    "do_idle",
    "cpu_startup_entry",
    "start_secondary",
    "secondary_startup_64_no_verify",
];

fn kernel_frame(w: &mut impl Write, rng: &mut SplitMix, f: &str) -> std::io::Result<()> {
    // Some families live in modules, as on a distribution kernel: perf prints a
    // module without a file found as `[name]`, one with its file by path.
    let (base, dso) = if f.starts_with("nf_") {
        ("ffffffffc0", "[nf_tables]")
    } else if f.starts_with("bio_") {
        (
            "ffffffffc0",
            "/lib/modules/6.1.0-27-amd64/kernel/fs/ext4/ext4.ko",
        )
    } else {
        ("ffffffff8", "[kernel.kallsyms]")
    };
    let addr = rng.below(1 << 24);
    let off = rng.below(400);
    if base.len() == 10 {
        writeln!(w, "\t{base}{:06x} {f}+0x{off:x} ({dso})", addr & 0xff_ffff)
    } else {
        writeln!(w, "\t{base}{addr:07x} {f}+0x{off:x} ({dso})")
    }
}

fn main() -> std::io::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 4 {
        eprintln!("usage: gen_perf_script OUT_DIR BASELINE_SAMPLES CANDIDATE_SAMPLES [SEED]");
        std::process::exit(2);
    }
    let out = Path::new(&a[1]);
    let nb: usize = a[2].parse().expect("baseline samples");
    let nc: usize = a[3].parse().expect("candidate samples");
    let seed: u64 = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(7);
    let mut rng = SplitMix::new(seed);
    // A vocabulary of kernel-looking and user-looking names.
    let kparts = [
        "tcp", "ip", "sock", "skb", "net", "dev", "napi", "ext4", "vfs", "mm", "page", "slab",
        "sched", "irq", "rcu", "futex", "epoll", "nf", "bio", "blk",
    ];
    let kverbs = [
        "rcv", "xmit", "alloc", "free", "queue", "poll", "wake", "lock", "unlock", "write", "read",
        "flush", "init", "lookup", "insert", "update", "finish", "do", "handle", "fill",
    ];
    let mut kfuncs = Vec::new();
    for p in kparts {
        for v in kverbs {
            for suffix in ["", "_common", "_slow", "_one", "_internal"] {
                kfuncs.push(format!("{p}_{v}{suffix}"));
            }
        }
    }
    let ufuncs: Vec<String> = (0..600)
        .map(|i| format!("app::module{}::handler_{}", i % 37, i))
        .collect();
    // Distinct stacks, leaf first: kernel frames toward the leaf, user frames at the root.
    let templates: Vec<Vec<(String, bool)>> = (0..6000)
        .map(|_| {
            let depth = 10 + rng.below(31);
            let user = 2 + rng.below(6).min(depth - 4);
            let mut st = Vec::with_capacity(depth);
            for _ in 0..depth - user {
                st.push((kfuncs[rng.below(kfuncs.len())].clone(), true));
            }
            for _ in 0..user {
                st.push((ufuncs[rng.below(ufuncs.len())].clone(), false));
            }
            st
        })
        .collect();
    for (role, n, kasan) in [("baseline", nb, false), ("candidate", nc, true)] {
        std::fs::create_dir_all(out.join(role))?;
        let f = std::fs::File::create(out.join(role).join("perf.script"))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut t = 1000.0f64;
        for i in 0..n {
            // Skewed: low template indices are much hotter.
            let r = rng.unit();
            let idx = ((r * r * r) * templates.len() as f64) as usize;
            let st = &templates[idx.min(templates.len() - 1)];
            t += 0.0002;
            let idle = i % 5 == 0;
            let (comm, pid) = if idle {
                ("swapper", 0)
            } else {
                ("server", 4000 + idx % 64)
            };
            writeln!(
                w,
                "{comm} {pid:>6}/{pid:<6} [{:03}] {t:.6}: {:>10} cpu-clock:pppH: ",
                i % 2,
                250000
            )?;
            if idle {
                for f in IDLE {
                    kernel_frame(&mut w, &mut rng, f)?;
                }
            } else {
                if kasan && rng.below(10) < 3 {
                    for f in KASAN {
                        kernel_frame(&mut w, &mut rng, f)?;
                    }
                }
                for (f, k) in st {
                    if *k {
                        kernel_frame(&mut w, &mut rng, f)?;
                    } else {
                        writeln!(
                            w,
                            "\t    7f{:010x} {f}+0x{:x} (/usr/lib/app/libserver.so.1)",
                            rng.below(1 << 30),
                            rng.below(4000)
                        )?;
                    }
                }
            }
            writeln!(w)?;
        }
        w.flush()?;
        let cfg = if kasan {
            "CONFIG_X86_64=y\nCONFIG_KASAN=y\nCONFIG_KASAN_GENERIC=y\n# CONFIG_VMAP_STACK is not set\n"
        } else {
            "CONFIG_X86_64=y\n# CONFIG_KASAN is not set\nCONFIG_VMAP_STACK=y\n"
        };
        std::fs::write(out.join(role).join("kernel.config"), cfg)?;
    }
    Ok(())
}
