//! The metric table as the report shows it: each metric's decision turned back
//! into the candidate's relative change (negative = lower), with its interval,
//! test, robust estimates and warnings, so the template only prints.

use serde::Serialize;

use crate::analyze::stats;
use crate::format::{human, pct, pval};
use crate::model::{Better, DecidedBy, FunctionDelta, MetricDelta, Summary};

#[derive(Serialize)]
pub struct MetricRow {
    pub name: String,
    pub unit: String,
    pub better: Better,
    pub baseline: f64,
    pub candidate: f64,
    /// `-90%`: the geometric mean ratio the decision tested, as a change.
    pub change: String,
    pub interval: String,
    pub level: String,
    pub p: String,
    pub test: String,
    /// regression, improvement, same, unknown; `bad`/`good` for the colour.
    pub status: String,
    pub class: &'static str,
    pub decided_by_cpu: bool,
    pub reason: String,
    /// `HL −89%, Cliff's δ 1.00 (worse)`.
    pub robust: String,
    pub warnings: Vec<String>,
    pub baseline_values: Vec<f64>,
    pub candidate_values: Vec<f64>,
}

fn signed(x: f64) -> String {
    let p = pct(x.abs());
    if x < 0.0 {
        format!("−{p}")
    } else {
        format!("+{p}")
    }
}

fn row(m: &MetricDelta) -> MetricRow {
    let s = m.better.worsening_sign();
    let d = m.decision.as_ref();
    let change = d
        .and_then(|d| d.worsening)
        .map_or_else(|| signed(m.change), |w| signed(s * w));
    let interval = d
        .and_then(|d| d.worsening_ci)
        .map(|[lo, hi]| {
            let (x, y) = (s * lo, s * hi);
            format!("{} … {}", signed(x.min(y)), signed(x.max(y)))
        })
        .unwrap_or_else(|| "–".into());
    let (status, class) = match d.map(|d| d.status) {
        Some(crate::model::DecisionStatus::Regression) => ("regression", "bad"),
        Some(crate::model::DecisionStatus::Improvement) => ("improvement", "good"),
        Some(crate::model::DecisionStatus::Same) => ("same", ""),
        _ => ("unknown", "unclear"),
    };
    let robust = match d {
        Some(d) => {
            let hl = d.hodges_lehmann.map(|w| format!("HL {}", signed(s * w)));
            let cd = d
                .cliffs_delta
                .map(|c| format!("Cliff's δ {c:+.2} (+1: every candidate repeat worse)"));
            [hl, cd]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ")
        }
        None => String::new(),
    };
    MetricRow {
        name: m.name.clone(),
        unit: m.unit.clone(),
        better: m.better,
        baseline: m.baseline,
        candidate: m.candidate,
        change,
        interval,
        level: d.map_or_else(|| "95%".into(), |d| pct(1.0 - d.alpha)),
        p: d.and_then(|d| d.p_value).map_or_else(|| "–".into(), pval),
        test: d.map_or_else(String::new, |d| d.test.as_str().to_string()),
        status: status.into(),
        class,
        decided_by_cpu: d.is_some_and(|d| d.decided_by == DecidedBy::CpuEvidence),
        reason: d.map_or_else(String::new, |d| d.reason.clone()),
        robust,
        warnings: d.map_or_else(Vec::new, |d| d.warnings.clone()),
        baseline_values: m.baseline_values.clone(),
        candidate_values: m.candidate_values.clone(),
    }
}

pub fn metric_rows(summary: &Summary) -> Vec<MetricRow> {
    summary.metrics.iter().map(row).collect()
}

/// One row of the comparison in lkp's columns (`lkp compare`, the 0-day bot's
/// mails), which kernel performance people read at a glance: each side's mean with
/// its `± %stddev` over repeats, and the `%change` between. perf-profile rows give
/// shares of busy CPU in percent and, as lkp does, the change in points.
#[derive(Serialize)]
pub struct LkpRow {
    pub baseline: String,
    pub baseline_sd: String,
    pub change: String,
    pub candidate: String,
    pub candidate_sd: String,
    pub name: String,
}

/// `± 3%`, or nothing when there is no spread to show (one repeat).
fn sd_cell(rsd: Option<f64>) -> String {
    rsd.map_or_else(String::new, |r| format!("± {:.0}%", r * 100.0))
}

/// The metrics, then the `top` largest significant changes of inclusive share
/// (`perf-profile.children.*`) and of self share (`perf-profile.self.*`).
pub fn lkp_rows(summary: &Summary, top: usize) -> Vec<LkpRow> {
    let mut rows: Vec<LkpRow> = summary
        .metrics
        .iter()
        .map(|m| LkpRow {
            baseline: human(m.baseline, &m.unit),
            baseline_sd: sd_cell(stats::rsd(&m.baseline_values)),
            change: if m.change.is_finite() {
                format!("{:+.1}%", m.change * 100.0)
            } else {
                String::new()
            },
            candidate: human(m.candidate, &m.unit),
            candidate_sd: sd_cell(stats::rsd(&m.candidate_values)),
            name: m.name.clone(),
        })
        .collect();
    let event = if summary.candidate.event.is_empty() {
        "samples"
    } else {
        summary.candidate.event.as_str()
    };
    let profile_row =
        |f: &FunctionDelta, kind: &str, b: f64, c: f64, sd: Option<[f64; 2]>| LkpRow {
            baseline: format!("{:.2}", b * 100.0),
            baseline_sd: sd_cell(sd.map(|s| s[0])),
            change: format!("{:+.2}", (c - b) * 100.0),
            candidate: format!("{:.2}", c * 100.0),
            candidate_sd: sd_cell(sd.map(|s| s[1])),
            name: format!("perf-profile.{kind}.{event}.{}", f.symbol),
        };
    let mut children: Vec<&FunctionDelta> =
        summary.functions.iter().filter(|f| f.significant).collect();
    children.sort_by(|a, b| b.delta.abs().total_cmp(&a.delta.abs()));
    rows.extend(children.iter().take(top).map(|f| {
        profile_row(
            f,
            "children",
            f.baseline_share,
            f.candidate_share,
            f.repeat_rsd,
        )
    }));
    let self_delta = |f: &FunctionDelta| (f.candidate_self - f.baseline_self).abs();
    let mut selfs: Vec<&FunctionDelta> = summary
        .functions
        .iter()
        .filter(|f| f.significant && self_delta(f) >= 0.001)
        .collect();
    selfs.sort_by(|a, b| self_delta(b).total_cmp(&self_delta(a)));
    // The self rows' spread is not measured per repeat (only inclusive shares are).
    rows.extend(
        selfs
            .iter()
            .take(top)
            .map(|f| profile_row(f, "self", f.baseline_self, f.candidate_self, None)),
    );
    rows
}
