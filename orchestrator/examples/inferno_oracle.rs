//! Writes the oracle of the corpus fold test: each file of tests/fixtures/perf-corpus
//! folded by inferno's collapse-perf (the crate kdelta already links, 0.12.8, default
//! options, one thread), summed up as its total weight and its hottest leaves.
//!
//! `cargo run --release --example inferno_oracle > tests/fixtures/perf-corpus/inferno-0.12.8.expected`
//!
//! One line per file: `path<TAB>total<TAB>leaf=weight<TAB>leaf=weight…` (the five
//! heaviest leaves, ties by name).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use inferno::collapse::perf::{Folder, Options};
use inferno::collapse::Collapse;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "txt") {
            out.push(p);
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/perf-corpus");
    let mut all = Vec::new();
    files(&root, &mut all);
    all.sort();
    for f in all {
        let rel = f.strip_prefix(&root).unwrap_or(&f).display().to_string();
        let text = std::fs::read(&f).unwrap_or_default();
        let mut opts = Options::default();
        opts.nthreads = 1;
        let mut folder = Folder::from(opts);
        let mut folded = Vec::new();
        // inferno panics on some malformed inputs: record that instead.
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            folder.collapse(&text[..], &mut folded).is_ok()
        }));
        if !matches!(ok, Ok(true)) {
            println!("{rel}\tERROR\t");
            continue;
        }
        let mut total = 0u64;
        let mut leaves: BTreeMap<String, u64> = BTreeMap::new();
        for line in String::from_utf8_lossy(&folded).lines() {
            let Some((stack, n)) = line.rsplit_once(' ') else {
                continue;
            };
            let n: u64 = n.parse().unwrap_or(0);
            total += n;
            let leaf = stack.rsplit(';').next().unwrap_or("");
            *leaves.entry(leaf.to_string()).or_default() += n;
        }
        let mut top: Vec<(String, u64)> = leaves.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let top: Vec<String> = top
            .iter()
            .take(5)
            .map(|(l, n)| format!("{l}={n}"))
            .collect();
        println!("{rel}\t{total}\t{}", top.join("\t"));
    }
}
