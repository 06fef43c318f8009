//! The metric table as the report shows it: each metric's decision turned back
//! into the candidate's relative change (negative = lower), with its interval,
//! test, robust estimates and warnings, so the template only prints.

use serde::Serialize;

use crate::format::{pct, pval};
use crate::model::{Better, DecidedBy, MetricDelta, Summary};

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
    let s = match m.better {
        Better::Higher => -1.0,
        Better::Lower => 1.0,
    };
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
