//! kdelta's shares against perf's own (issue 14's oracle), on a fresh recording made
//! here: `perf record -a -g -e cpu-clock` of a bounded workload (sha256 of 300 MB of
//! zeros through a pipe, on this machine only), then `kdelta analyze` of the text and
//! `perf report --stdio` of the same perf.data.
//!
//! kdelta's shares are of *busy* samples and perf report's of all samples, so kdelta's
//! are scaled by busy/total before they are compared. Differences tolerated, and why:
//! - symbols perf prints as raw addresses (`0x41fe`, an unresolved user frame) are not
//!   compared: kdelta names such a frame after its binary;
//! - GCC's clone suffixes (`.isra.0`, `.constprop.0`, `.part.0`, `.cold`) are stripped,
//!   as kdelta strips them;
//! - inclusive shares are compared only for functions that never appear in an idle
//!   sample: perf's `--children` counts idle samples too, kdelta's shares are of busy
//!   time by design;
//! - the idle share is compared with perf's self share of the halt functions.

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// kdelta's halt leaves (analyze/fold/idle.rs), x86 and arm64: a sample whose leaf is
/// one of them was taken on a halted CPU. The sum of perf's self shares of these is
/// the idle share, so every one counts, however small (the CI machine's recording
/// once had one sample in `arch_cpu_idle`, below any percent limit).
const HALT: [&str; 28] = [
    "default_idle",
    "native_safe_halt",
    "pv_native_safe_halt",
    "native_halt",
    "xen_safe_halt",
    "safe_halt",
    "arch_safe_halt",
    "acpi_safe_halt",
    "hv_native_safe_halt",
    "kvm_wait",
    "mwait_idle",
    "mwait_idle_with_hints",
    "intel_idle",
    "intel_idle_irq",
    "intel_idle_ibrs",
    "intel_idle_xstate",
    "intel_idle_s2idle",
    "acpi_idle_enter",
    "acpi_idle_enter_bm",
    "acpi_idle_do_entry",
    "acpi_processor_ffh_cstate_enter",
    "io_idle",
    "amd_e400_idle",
    "cpuidle_enter_state",
    "arch_cpu_idle",
    "cpu_do_idle",
    "wait_for_interrupt",
    "psci_idle_enter",
];

fn base_name(sym: &str) -> String {
    let mut parts = sym.splitn(2, '.');
    let head = parts.next().unwrap_or(sym);
    match parts.next() {
        Some(rest)
            if ["isra", "constprop", "part", "cold", "llvm"]
                .iter()
                .any(|s| rest.starts_with(s)) =>
        {
            head.to_string()
        }
        _ => sym.to_string(),
    }
}

/// `perf report` lines: symbol → (children %, self %) or self % alone.
fn perf_report(data: &std::path::Path, children: bool, limit: &str) -> Vec<(String, Vec<f64>)> {
    let o = Command::new("perf")
        .arg("report")
        .arg("-i")
        .arg(data)
        .args([
            "--stdio",
            "-q",
            "-g",
            "none",
            "--sort",
            "symbol",
            "--percent-limit",
            limit,
        ])
        .arg(if children {
            "--children"
        } else {
            "--no-children"
        })
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut rows = Vec::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let toks: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = toks.iter().position(|t| *t == "[k]" || *t == "[.]") else {
            continue;
        };
        let pcts: Vec<f64> = toks[..at]
            .iter()
            .filter_map(|t| t.strip_suffix('%')?.parse().ok())
            .collect();
        // The symbol is the rest of the line: C++ names have spaces
        // (`(anonymous namespace)::…`, seen when a compiler ran during the recording).
        // perf may add empty columns (`-`) after it.
        let rest: Vec<&str> = toks
            .get(at + 1..)
            .unwrap_or_default()
            .iter()
            .copied()
            .take_while(|t| *t != "-")
            .collect();
        if !rest.is_empty() {
            rows.push((rest.join(" "), pcts));
        }
    }
    rows
}

/// The symbols of every idle sample (leaf a halt function) in `perf script` text.
fn idle_symbols(script: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for block in script.split("\n\n") {
        let frames: Vec<String> = block
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(|s| base_name(s.split('+').next().unwrap_or(s)))
            .collect();
        if frames.first().is_some_and(|f| HALT.contains(&f.as_str())) {
            out.extend(frames);
        }
    }
    out
}

#[test]
fn shares_match_perf_report_on_a_fresh_recording() {
    assert!(unsafe { libc::geteuid() } == 0, "needs root, as CI runs it");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("perf.data");
    let side = tmp.path().join("side");
    std::fs::create_dir(&side).unwrap();
    let st = Command::new("timeout")
        .arg("60")
        .args([
            "perf",
            "record",
            "-q",
            "-a",
            "-g",
            "-e",
            "cpu-clock",
            "-F",
            "499",
            "-o",
        ])
        .arg(&data)
        .args([
            "--",
            "sh",
            "-c",
            "head -c 300000000 /dev/zero | sha256sum >/dev/null",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let script = Command::new("perf")
        .arg("script")
        .arg("-i")
        .arg(&data)
        .output()
        .unwrap();
    assert!(script.status.success());
    std::fs::write(side.join("perf.script"), &script.stdout).unwrap();
    let out = tmp.path().join("out");
    let o = said(
        kdelta()
            .args(["analyze", "--baseline"])
            .arg(&side)
            .arg("--candidate")
            .arg(&side)
            .arg("--out")
            .arg(&out),
    );
    assert!(matches!(o.code, Some(0..=2)), "{}", o.stderr);
    let s = read_json(&out.join("summary.json"));
    let b = &s["baseline"];
    let (total, busy) = (
        b["samples"].as_f64().unwrap(),
        b["busy_samples"].as_f64().unwrap(),
    );
    assert!(total > 300.0, "too few samples to compare: {total}");
    let scale = busy / total * 100.0;
    let mut kd: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for f in s["functions"].as_array().unwrap() {
        kd.insert(
            f["symbol"].as_str().unwrap().to_string(),
            (
                f["baseline_self"].as_f64().unwrap() * scale,
                f["baseline_share"].as_f64().unwrap() * scale,
            ),
        );
    }
    let idle = idle_symbols(&String::from_utf8_lossy(&script.stdout));

    // Self shares: the functions perf lists at 0.3% or more; the halt functions at
    // any share (their sum is the idle share).
    let mut halted = 0.0;
    for (sym, p) in perf_report(&data, false, "0") {
        if HALT.contains(&base_name(&sym).as_str()) {
            halted += p[0];
        }
    }
    let mut selfs: BTreeMap<String, f64> = BTreeMap::new();
    for (sym, p) in perf_report(&data, false, "0.3") {
        let name = base_name(&sym);
        if !HALT.contains(&name.as_str()) && !sym.starts_with("0x") {
            *selfs.entry(name).or_default() += p[0];
        }
    }
    let mut compared = 0;
    for (name, want) in selfs.iter().take(20) {
        let got = kd.get(name).map_or(0.0, |v| v.0);
        eprintln!("self      {name:40} kdelta {got:7.3}%  perf {want:7.3}%");
        assert!(
            (got - want).abs() <= 0.05,
            "{name}: self {got:.3}% in kdelta, {want:.3}% in perf report"
        );
        compared += 1;
    }
    assert!(
        compared >= 3,
        "only {compared} functions compared: {selfs:?}"
    );
    let idle_share = b["idle_share"].as_f64().unwrap() * 100.0;
    assert!(
        (idle_share - halted).abs() <= 0.1,
        "idle {idle_share:.3}% in kdelta, halt functions {halted:.3}% in perf report"
    );

    // Inclusive shares, of functions never on an idle stack.
    let mut compared = 0;
    let mut seen = BTreeSet::new();
    for (sym, p) in perf_report(&data, true, "0.3") {
        let name = base_name(&sym);
        if sym.starts_with("0x") || idle.contains(&name) || !seen.insert(name.clone()) {
            continue;
        }
        let (Some(want), Some(got)) = (p.first(), kd.get(&name).map(|v| v.1)) else {
            continue;
        };
        eprintln!("inclusive {name:40} kdelta {got:7.3}%  perf {want:7.3}%");
        assert!(
            (got - want).abs() <= 0.05,
            "{name}: inclusive {got:.3}% in kdelta, {want:.3}% in perf report --children"
        );
        compared += 1;
        if compared == 20 {
            break;
        }
    }
    assert!(compared >= 3, "only {compared} inclusive shares compared");
}
