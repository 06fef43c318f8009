//! History for the nightly job: `--history DIR` keeps one small JSON file per run
//! (metric means, kernels, config fingerprints, the gate's status); the report draws
//! each metric's trend from them (`report::charts`).

use anyhow::{Context, Result};
use std::path::Path;

use crate::format::fingerprint;
use crate::model::{GateStatus, HistoryMetric, HistoryPoint, Role, Summary};
use crate::rundir::RunDir;

/// The history point of a finished run.
pub fn point(summary: &Summary, name: &str, run_dir: &RunDir, status: GateStatus) -> HistoryPoint {
    let cfg = |role: Role| {
        std::fs::read(run_dir.host(role).kernel_config())
            .ok()
            .map(|b| fingerprint(&b))
    };
    HistoryPoint {
        at: crate::rundir::utc_now(),
        name: name.to_string(),
        run_dir: run_dir.root().display().to_string(),
        status,
        baseline_kernel: summary.baseline.kernel.clone(),
        candidate_kernel: summary.candidate.kernel.clone(),
        baseline_config: cfg(Role::Baseline),
        candidate_config: cfg(Role::Candidate),
        metrics: summary
            .metrics
            .iter()
            .map(|m| HistoryMetric {
                name: m.name.clone(),
                unit: m.unit.clone(),
                better: m.better,
                baseline: m.baseline,
                candidate: m.candidate,
                change: m.change,
            })
            .collect(),
        current: false,
    }
}

/// Appends a point to the history folder (one file per run, so concurrent jobs and
/// partial copies of the folder never corrupt each other).
pub fn append(dir: &Path, p: &HistoryPoint) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--history {}: cannot create the folder", dir.display()))?;
    let safe: String = p
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stamp: String =
        p.at.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(15)
            .collect();
    let mut path = dir.join(format!("{stamp}-{safe}.json"));
    let mut i = 1;
    while path.exists() {
        path = dir.join(format!("{stamp}-{safe}-{i}.json"));
        i += 1;
    }
    crate::rundir::write_json(&path, p)
}

/// The points of one playbook, oldest first, the last `keep`. Unreadable files are
/// skipped with a warning: a history folder is shared and long-lived.
pub fn load(dir: &Path, name: &str, keep: usize) -> (Vec<HistoryPoint>, Vec<String>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (out, warnings);
    };
    for e in rd.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        match std::fs::read_to_string(&path)
            .map_err(anyhow::Error::from)
            .and_then(|t| Ok(serde_json::from_str::<HistoryPoint>(&t)?))
        {
            Ok(p) if p.name == name => out.push(p),
            Ok(_) => {}
            Err(e) => warnings.push(format!("history: {}: skipped ({e})", path.display())),
        }
    }
    out.sort_by(|a, b| a.at.cmp(&b.at));
    if out.len() > keep {
        out.drain(..out.len() - keep);
    }
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Better;

    fn p(at: &str, kernel: &str, cand: f64) -> HistoryPoint {
        HistoryPoint {
            at: at.into(),
            name: "nightly".into(),
            status: GateStatus::Pass,
            run_dir: String::new(),
            baseline_config: None,
            candidate_config: None,
            current: false,
            baseline_kernel: Some("6.1.0-56".into()),
            candidate_kernel: Some(kernel.into()),
            metrics: vec![HistoryMetric {
                name: "throughput".into(),
                unit: "bit/s".into(),
                better: Better::Higher,
                baseline: 10e9,
                candidate: cand,
                change: cand / 10e9 - 1.0,
            }],
        }
    }

    #[test]
    fn append_load_and_chart_with_a_kernel_change() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), &p("2026-11-20T02:00:00Z", "6.1.0-56", 10e9)).unwrap();
        append(dir.path(), &p("2026-11-21T02:00:00Z", "6.1.0-56", 9.9e9)).unwrap();
        append(dir.path(), &p("2026-11-22T02:00:00Z", "6.12.1", 7e9)).unwrap();
        let mut other = p("2026-11-22T03:00:00Z", "6.1.0-56", 1.0);
        other.name = "another".into();
        append(dir.path(), &other).unwrap();
        std::fs::write(dir.path().join("junk.json"), "{").unwrap();
        let (pts, warnings) = load(dir.path(), "nightly", 30);
        assert_eq!(pts.len(), 3);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let c = &crate::report::charts::trends(&pts)[0];
        assert_eq!(c.dots.len(), 3);
        assert_eq!(c.changes.len(), 1);
        assert!(c.changes[0].label.contains("6.12.1"));
        // The lower candidate value sits lower on the chart (larger y).
        assert!(c.dots[2].y_candidate > c.dots[0].y_candidate);
    }
}
