//! History for the nightly job: `--history DIR` keeps one small JSON file per run
//! (metric means, kernels, config fingerprints, the gate's status), and the report
//! draws each metric's trend over past nights with the current run marked and a
//! marker where a side's kernel or config changed.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::model::{Better, Summary};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub at: String,
    pub name: String,
    pub run_dir: String,
    /// The gate's status, or the analysis verdict when there was no gate.
    pub status: String,
    pub baseline_kernel: Option<String>,
    pub candidate_kernel: Option<String>,
    /// FNV-1a of each side's kernel.config: equal fingerprints, equal configs.
    pub baseline_config: Option<String>,
    pub candidate_config: Option<String>,
    pub metrics: Vec<HistoryMetric>,
    /// Set on load for the run being reported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub current: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HistoryMetric {
    pub name: String,
    pub unit: String,
    pub better: Better,
    pub baseline: f64,
    pub candidate: f64,
    pub change: f64,
}

/// 64-bit FNV-1a, hex: a stable fingerprint (std's hasher may change between releases).
pub fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The history point of a finished run.
pub fn point(summary: &Summary, name: &str, run_dir: &Path, status: &str) -> HistoryPoint {
    let cfg = |role: &str| {
        std::fs::read(run_dir.join("hosts").join(role).join("kernel.config"))
            .ok()
            .map(|b| fingerprint(&b))
    };
    HistoryPoint {
        at: crate::rundir::utc_now(),
        name: name.to_string(),
        run_dir: run_dir.display().to_string(),
        status: status.to_string(),
        baseline_kernel: summary.baseline.kernel.clone(),
        candidate_kernel: summary.candidate.kernel.clone(),
        baseline_config: cfg("baseline"),
        candidate_config: cfg("candidate"),
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

/// One metric's trend, laid out for the report's inline SVG.
#[derive(Clone, Debug, Serialize)]
pub struct TrendChart {
    pub metric: String,
    pub unit: String,
    pub width: f64,
    pub height: f64,
    /// `x,y x,y …` for an SVG polyline.
    pub baseline_points: String,
    pub candidate_points: String,
    pub dots: Vec<TrendDot>,
    /// Where a side's kernel or config changed since the previous point.
    pub changes: Vec<TrendChange>,
    pub y_ticks: Vec<(f64, String)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TrendDot {
    pub x: f64,
    pub y_baseline: f64,
    pub y_candidate: f64,
    pub current: bool,
    pub title: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct TrendChange {
    pub x: f64,
    pub label: String,
}

pub fn charts(points: &[HistoryPoint]) -> Vec<TrendChart> {
    let (w, h, left, right, top, bottom) = (760.0, 180.0, 70.0, 10.0, 10.0, 24.0);
    let mut names: Vec<(String, String)> = Vec::new();
    for p in points {
        for m in &p.metrics {
            if !names.iter().any(|n| n.0 == m.name) {
                names.push((m.name.clone(), m.unit.clone()));
            }
        }
    }
    let n = points.len();
    let x_of = |i: usize| {
        if n <= 1 {
            left + (w - left - right) / 2.0
        } else {
            left + (w - left - right) * i as f64 / (n - 1) as f64
        }
    };
    let mut out = Vec::new();
    for (name, unit) in names {
        let vals: Vec<(usize, f64, f64, &HistoryPoint)> = points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                p.metrics
                    .iter()
                    .find(|m| m.name == name)
                    .map(|m| (i, m.baseline, m.candidate, p))
            })
            .collect();
        if vals.is_empty() {
            continue;
        }
        let lo = vals
            .iter()
            .map(|v| v.1.min(v.2))
            .fold(f64::INFINITY, f64::min);
        let hi = vals
            .iter()
            .map(|v| v.1.max(v.2))
            .fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if hi - lo < 1e-12 * hi.abs().max(1.0) {
            (lo * 0.9 - 1e-9, hi * 1.1 + 1e-9)
        } else {
            let pad = (hi - lo) * 0.1;
            ((lo - pad).max(0.0_f64.min(lo)), hi + pad)
        };
        let y_of = |v: f64| top + (h - top - bottom) * (1.0 - (v - lo) / (hi - lo));
        let pts = |sel: fn(&(usize, f64, f64, &HistoryPoint)) -> f64| {
            vals.iter()
                .map(|v| format!("{:.1},{:.1}", x_of(v.0), y_of(sel(v))))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let dots = vals
            .iter()
            .map(|v| TrendDot {
                x: x_of(v.0),
                y_baseline: y_of(v.1),
                y_candidate: y_of(v.2),
                current: v.3.current,
                title: format!(
                    "{}: baseline {}, candidate {} ({}; candidate kernel {})",
                    v.3.at.get(..16).unwrap_or(&v.3.at),
                    crate::analyze::human(v.1, &unit),
                    crate::analyze::human(v.2, &unit),
                    v.3.status,
                    v.3.candidate_kernel.as_deref().unwrap_or("?")
                ),
            })
            .collect();
        let mut changes = Vec::new();
        for i in 1..points.len() {
            let (a, b) = (&points[i - 1], &points[i]);
            let mut what = Vec::new();
            if a.candidate_kernel != b.candidate_kernel {
                what.push(format!(
                    "candidate kernel {}",
                    b.candidate_kernel.as_deref().unwrap_or("?")
                ));
            } else if a.candidate_config != b.candidate_config {
                what.push("candidate config".to_string());
            }
            if a.baseline_kernel != b.baseline_kernel {
                what.push(format!(
                    "baseline kernel {}",
                    b.baseline_kernel.as_deref().unwrap_or("?")
                ));
            } else if a.baseline_config != b.baseline_config {
                what.push("baseline config".to_string());
            }
            if !what.is_empty() {
                changes.push(TrendChange {
                    x: (x_of(i - 1) + x_of(i)) / 2.0,
                    label: what.join(", "),
                });
            }
        }
        let y_ticks = (0..=2)
            .map(|k| {
                let v = lo + (hi - lo) * k as f64 / 2.0;
                (y_of(v), crate::analyze::human(v, &unit))
            })
            .collect();
        out.push(TrendChart {
            baseline_points: pts(|v| v.1),
            candidate_points: pts(|v| v.2),
            metric: name,
            unit,
            width: w,
            height: h,
            dots,
            changes,
            y_ticks,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(at: &str, kernel: &str, cand: f64) -> HistoryPoint {
        HistoryPoint {
            at: at.into(),
            name: "nightly".into(),
            status: "pass".into(),
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
            ..Default::default()
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
        let c = &charts(&pts)[0];
        assert_eq!(c.dots.len(), 3);
        assert_eq!(c.changes.len(), 1);
        assert!(c.changes[0].label.contains("6.12.1"));
        // The lower candidate value sits lower on the chart (larger y).
        assert!(c.dots[2].y_candidate > c.dots[0].y_candidate);
        assert_eq!(fingerprint(b"CONFIG_A=y\n"), fingerprint(b"CONFIG_A=y\n"));
        assert_ne!(fingerprint(b"CONFIG_A=y\n"), fingerprint(b"CONFIG_A=m\n"));
    }
}
