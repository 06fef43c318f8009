//! The inputs that used to end kdelta with Rust's exit 101 (issue 13): each now ends
//! with a clear error, or quietly, and never a panic. The panic backstop mid-run is
//! in the fault suite (`a_panic_mid_run_still_tears_down`), the parsers' property
//! tests in `tests/properties.rs`.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

#[test]
fn non_ascii_text_next_to_a_playbook_error() {
    let tmp = tempfile::tempdir().unwrap();
    let pb = short_playbook(tmp.path(), |t| {
        t.replace(
            "client: { from: orchestrator,",
            "client: { from: orchestrator, x: \"€€€€€€€€\",",
        )
    });
    let out = kdelta()
        .args(["check", "--offline"])
        .arg(&pb)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("pb.yaml:")
            && err.contains("workload.client")
            && err.contains("unknown field `x`"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    // `kdelta analyze … --format json | head -1`: the reader goes away after one line.
    let caps = repo().join("tests/fixtures/captures/lab-nft");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut child = kdelta_analyze(&caps.join("baseline"), &caps.join("candidate"), &out)
        .args(["--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    {
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut first).unwrap();
    } // the pipe's read end is closed here
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(first.trim(), "{");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}

#[test]
fn hostile_metrics_and_facts_files() {
    // Workload output with a `}` before its `{` is unit-tested where metrics are
    // extracted (capture/metrics.rs); here, capture folders whose metrics.json is
    // not JSON and whose facts.json has a number where a string is expected: each
    // costs a warning, never the analysis.
    let caps = repo().join("tests/fixtures/captures/lab-nft");
    let tmp = tempfile::tempdir().unwrap();
    for side in ["baseline", "candidate"] {
        let d = tmp.path().join(side);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(
            caps.join(side).join("perf.script.zst"),
            d.join("perf.script.zst"),
        )
        .unwrap();
        std::fs::write(d.join("metrics.json"), "} {\"repeats\": [}").unwrap();
        std::fs::write(
            d.join("facts.json"),
            "{\"sysctl\": {\"fs.file-max\": 9223372036854775807}}",
        )
        .unwrap();
    }
    let t = tmp.path();
    let out = kdelta_analyze(&t.join("baseline"), &t.join("candidate"), &t.join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0..=2)), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
