//! Inline SVG charts of the report, laid out here so the template only draws:
//! each metric's repeats on both sides (a strip chart), and each metric's trend over
//! past runs (`--history`).

use serde::Serialize;

use crate::format::human;
use crate::model::{HistoryPoint, Summary};

/// One metric's repeats on both sides, laid out for an inline SVG strip chart.
#[derive(Serialize)]
pub struct MetricChart {
    name: String,
    width: f64,
    ticks: Vec<(f64, String)>,
    baseline: Vec<(f64, String)>,
    candidate: Vec<(f64, String)>,
    baseline_mean: f64,
    candidate_mean: f64,
}

pub fn metric_charts(summary: &Summary) -> Vec<MetricChart> {
    let (w, left, right) = (580.0, 90.0, 44.0);
    summary
        .metrics
        .iter()
        .filter(|m| !m.baseline_values.is_empty() && !m.candidate_values.is_empty())
        .map(|m| {
            let all = m.baseline_values.iter().chain(&m.candidate_values);
            let hi = all.clone().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let lo = all.fold(f64::INFINITY, |a, &b| a.min(b));
            // From zero when all values are positive: the size of a drop is what matters.
            let lo = if lo >= 0.0 { 0.0 } else { lo };
            let hi = if hi <= lo { lo + 1.0 } else { hi * 1.05 };
            let x = |v: f64| left + (w - left - right) * (v - lo) / (hi - lo);
            let pts = |vs: &[f64]| {
                vs.iter()
                    .enumerate()
                    .map(|(i, v)| (x(*v), format!("repeat {}: {}", i + 1, human(*v, &m.unit))))
                    .collect()
            };
            MetricChart {
                name: m.name.clone(),
                width: w,
                ticks: (0..=4)
                    .map(|k| {
                        let v = lo + (hi - lo) * k as f64 / 4.0;
                        (x(v), human(v, &m.unit))
                    })
                    .collect(),
                baseline: pts(&m.baseline_values),
                candidate: pts(&m.candidate_values),
                baseline_mean: x(m.baseline),
                candidate_mean: x(m.candidate),
            }
        })
        .collect()
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

pub fn trends(points: &[HistoryPoint]) -> Vec<TrendChart> {
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
                    human(v.1, &unit),
                    human(v.2, &unit),
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
                (y_of(v), human(v, &unit))
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
