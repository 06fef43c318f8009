//! Workload metrics: per metric, the values of each side's repeats (paired when they
//! pair up), their means and the relative change. What the change means — the test,
//! the interval, the decision — is the gate's decision module's, the one procedure.

use super::stats;
use crate::model::{MetricDelta, MetricSeries, Metrics};

pub fn metric_deltas(b: Option<&Metrics>, c: Option<&Metrics>) -> Vec<MetricDelta> {
    let (Some(b), Some(c)) = (b, c) else {
        return vec![];
    };
    b.metrics
        .iter()
        .filter_map(|mb| {
            let mc = c.metrics.iter().find(|m| m.name == mb.name)?;
            delta(mb, mc)
        })
        .collect()
}

fn delta(mb: &MetricSeries, mc: &MetricSeries) -> Option<MetricDelta> {
    let (mut vb, mut vc) = (finite(&mb.values), finite(&mc.values));
    if vb.is_empty() || vc.is_empty() {
        return None;
    }
    // Repeats pair up when both sides ran the same number: value i of each side
    // were taken next to each other in time. A repeat that gave no value on one side
    // drops its pair, as long as two whole pairs remain.
    let mut paired = false;
    let mut dropped = 0;
    if mb.values.len() == mc.values.len() {
        let pairs: Vec<(f64, f64)> = mb
            .values
            .iter()
            .zip(&mc.values)
            .filter_map(|(x, y)| Some((x.filter(|v| v.is_finite())?, y.filter(|v| v.is_finite())?)))
            .collect();
        if pairs.len() >= 2 || pairs.len() == mb.values.len() {
            dropped = (vb.len() + vc.len() - 2 * pairs.len()) as u32;
            vb = pairs.iter().map(|p| p.0).collect();
            vc = pairs.iter().map(|p| p.1).collect();
            paired = true;
        }
    }
    let (ab, ac) = (stats::mean(&vb), stats::mean(&vc));
    Some(MetricDelta {
        name: mb.name.clone(),
        unit: mb.unit.clone(),
        better: mb.better,
        baseline: ab,
        candidate: ac,
        change: if ab != 0.0 { ac / ab - 1.0 } else { 0.0 },
        paired,
        dropped,
        baseline_values: vb,
        candidate_values: vc,
        ..Default::default()
    })
}

/// The values a repeat gave (none, NaN and infinities left out).
fn finite(values: &[Option<f64>]) -> Vec<f64> {
    values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect()
}
