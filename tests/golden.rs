//! Golden outputs (issue 13): the summary.json, summary.md and report skeleton of one
//! real capture (tests/fixtures/captures/lab-nft), redacted of what varies between
//! runs (times, paths, the version), compared with tests/golden/lab-nft/. A change
//! of output is then a reviewed diff: `KDELTA_BLESS=1 cargo test --test golden`
//! rewrites the files, and `git diff tests/golden` shows what changed.
//!
//! The skeleton is report.html without what the template alone decides (its CSS and
//! scripts) and without the flame graphs' SVG (inferno's, checked by the browser
//! test): the data the page shows, in the order it shows it.

mod common;
use common::*;
use std::path::Path;

use kdelta::run::analysis::{analyze_folders, write_report, AnalysisSetup};

fn redact(text: &str, paths: &[(&Path, &str)]) -> String {
    let mut t = text.to_string();
    for (p, name) in paths {
        let p = p.display().to_string();
        // The HTML report escapes `/` (`&#x2f;`): redact that spelling too, or the
        // golden files depend on where the repository is checked out.
        t = t.replace(&p.replace('/', "&#x2f;"), name);
        t = t.replace(&p, name);
    }
    let time =
        regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)").unwrap();
    let t = time.replace_all(&t, "<TIME>").into_owned();
    t.replace(env!("CARGO_PKG_VERSION"), "<VERSION>")
}

/// Drops the bodies of `<tag …>…</tag>` (style, script) and of `srcdoc="…"`.
fn skeleton(html: &str) -> String {
    let mut out = html.to_string();
    for tag in ["style", "script"] {
        let re = regex::Regex::new(&format!(r"(?s)(<{tag}[^>]*>).*?(</{tag}>)")).unwrap();
        out = re.replace_all(&out, "$1…$2").into_owned();
    }
    let srcdoc = regex::Regex::new(r#"(?s)srcdoc="[^"]*""#).unwrap();
    srcdoc.replace_all(&out, r#"srcdoc="…""#).into_owned()
}

fn compare(dir: &Path, name: &str, got: &str, bad: &mut Vec<String>) {
    let path = dir.join(name);
    if std::env::var_os("KDELTA_BLESS").is_some() {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    match std::fs::read_to_string(&path) {
        Ok(want) if want == got => {}
        Ok(want) => {
            let first = want
                .lines()
                .zip(got.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(want.lines().count().min(got.lines().count()));
            bad.push(format!(
                "{}: differs from line {}:\n  golden: {}\n  now:    {}",
                path.display(),
                first + 1,
                want.lines().nth(first).unwrap_or("(end)"),
                got.lines().nth(first).unwrap_or("(end)")
            ));
        }
        Err(_) => bad.push(format!("{} is missing", path.display())),
    }
}

#[test]
fn lab_nft_outputs_match_the_golden_files() {
    let caps = repo().join("tests/fixtures/captures/lab-nft");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let setup = AnalysisSetup::default().load().unwrap();
    let a = analyze_folders(&caps.join("baseline"), &caps.join("candidate"), &setup).unwrap();
    let rd = kdelta::rundir::RunDir::open(&out);
    write_report(
        &rd,
        &a,
        "kdelta analyze --baseline <CAPTURES>/baseline --candidate <CAPTURES>/candidate",
    )
    .unwrap();
    let paths = [(caps.as_path(), "<CAPTURES>"), (out.as_path(), "<OUT>")];
    let read = |f: &str| redact(&std::fs::read_to_string(out.join(f)).unwrap(), &paths);
    let golden = repo().join("tests/golden/lab-nft");
    let mut bad = Vec::new();
    compare(&golden, "summary.json", &read("summary.json"), &mut bad);
    compare(&golden, "summary.md", &read("summary.md"), &mut bad);
    compare(
        &golden,
        "report.skeleton.html",
        &skeleton(&read("report.html")),
        &mut bad,
    );
    assert!(
        bad.is_empty(),
        "{}\n(if the change is meant: KDELTA_BLESS=1 cargo test --test golden, then review `git diff tests/golden`)",
        bad.join("\n")
    );
}

#[test]
fn the_golden_outputs_do_not_depend_on_threads() {
    // Folding is parallel: the same capture folded by 1 and by 4 workers must say the
    // same, or the golden files would be flaky.
    let caps = repo().join("tests/fixtures/captures/lab-nft");
    let mut setup = AnalysisSetup::default().load().unwrap();
    let mut runs = Vec::new();
    for threads in [1, 4] {
        setup.fold.threads = threads;
        setup.fold.block_size = 64 << 10;
        let a = analyze_folders(&caps.join("baseline"), &caps.join("candidate"), &setup).unwrap();
        runs.push(serde_json::to_string(&a.summary).unwrap());
    }
    assert_eq!(runs[0], runs[1]);
}
