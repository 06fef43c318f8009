//! The upgrade gate: a decision per metric from the playbook's `gate:` rules — each
//! rule's limit is the limit of that metric's decision ([`decision`], the one
//! procedure behind the verdict too) — and the analysis verdict ([`verdict`]).
//!
//! A rule `throughput: { max_regression: 5% }` asks: is the candidate worse than the
//! baseline by more than 5%? **regression**: significantly worse and estimated
//! beyond the limit; **improvement**: the same, better; **pass**: the interval lies
//! within ± the limit; **inconclusive**: more pairs would decide.
//!
//! Pure decisions: this module reads a [`Summary`] and writes nothing.

pub mod decision;
pub mod verdict;

use std::collections::BTreeMap;

use crate::analyze::stats;
use crate::model::{
    Better, DecisionStatus, GateDecision, GateStatus, MetricDecision, MetricDelta, RuleDecision,
    Summary, VerdictStatus,
};

/// A gate status from a metric's decision.
pub fn gate_status(s: DecisionStatus) -> GateStatus {
    match s {
        DecisionStatus::Regression => GateStatus::Regression,
        DecisionStatus::Improvement => GateStatus::Improvement,
        DecisionStatus::Same => GateStatus::Pass,
        DecisionStatus::Unknown => GateStatus::Inconclusive,
    }
}

/// Decides one rule: the metric's own decision when it was made at this limit (so
/// the rule, the metric table and the headline agree), else the same procedure at
/// the rule's limit.
pub fn decide_rule(m: &MetricDelta, limit: f64) -> RuleDecision {
    let d = match &m.decision {
        Some(d) if d.limit == limit => d.clone(),
        Some(d) => decision::decide(m, limit, d.alpha),
        None => decision::decide(m, limit, decision::ALPHA),
    };
    rule(m, &d)
}

fn rule(m: &MetricDelta, d: &MetricDecision) -> RuleDecision {
    let (a, b) = (&m.baseline_values, &m.candidate_values);
    RuleDecision {
        metric: m.name.clone(),
        unit: m.unit.clone(),
        better: m.better,
        max_regression: d.limit,
        status: gate_status(d.status),
        worsening: d.worsening.unwrap_or(0.0),
        worsening_ci: d.worsening_ci,
        p_value: d.p_value,
        test: d.test.as_str().to_string(),
        p_welch: stats::welch_t(a, b).map(|t| t.2),
        p_mann_whitney: stats::mann_whitney(a, b).map(|r| r.1),
        baseline_values: a.clone(),
        candidate_values: b.clone(),
        repeats_needed: d.pairs_needed,
        reason: d.reason.clone(),
    }
}

/// A rule whose metric has no values on one side.
fn missing_rule(metric: &str, limit: f64) -> RuleDecision {
    RuleDecision {
        metric: metric.to_string(),
        unit: String::new(),
        better: Better::Higher,
        max_regression: limit,
        status: GateStatus::Inconclusive,
        worsening: 0.0,
        worsening_ci: None,
        p_value: None,
        test: String::new(),
        p_welch: None,
        p_mann_whitney: None,
        baseline_values: vec![],
        candidate_values: vec![],
        repeats_needed: None,
        reason: "no values on one side (see metrics.json and workload.log)".into(),
    }
}

/// Without rules the analysis verdict decides.
fn from_verdict(summary: &Summary, cause: Option<String>) -> GateDecision {
    let status = match summary.verdict.status {
        VerdictStatus::Regression => GateStatus::Regression,
        VerdictStatus::Inconclusive => GateStatus::Inconclusive,
        VerdictStatus::Improvement => GateStatus::Improvement,
        VerdictStatus::NoChange => GateStatus::Pass,
    };
    GateDecision {
        status,
        headline: format!(
            "no gate rules in the playbook: decided by the analysis verdict: {}",
            summary.verdict.headline
        ),
        rules: vec![],
        cause: (status == GateStatus::Regression)
            .then_some(cause)
            .flatten(),
    }
}

/// Decides the gate from the analysis summary and the playbook's rules.
pub fn decide(rules: &BTreeMap<String, f64>, summary: &Summary) -> GateDecision {
    let decisions: Vec<RuleDecision> = rules
        .iter()
        .map(
            |(metric, limit)| match summary.metrics.iter().find(|m| &m.name == metric) {
                Some(m) => decide_rule(m, *limit),
                None => missing_rule(metric, *limit),
            },
        )
        .collect();
    let cause = summary.attributions.first().map(|a| {
        format!(
            "{} ({} → {}, {:+.1} pts of busy CPU, {} confidence)",
            a.cause,
            a.baseline,
            a.candidate,
            a.explained_share * 100.0,
            a.confidence
        )
    });
    if decisions.is_empty() {
        return from_verdict(summary, cause);
    }
    let worst = decisions
        .iter()
        .map(|d| d.status)
        .max()
        .unwrap_or(GateStatus::Pass);
    // Pass beats improvement unless every rule improved.
    let status = if worst == GateStatus::Improvement
        && decisions.iter().any(|d| d.status == GateStatus::Pass)
    {
        GateStatus::Pass
    } else {
        worst
    };
    let mut headline = format!(
        "{status}: {}",
        decisions
            .iter()
            .filter(|d| d.status == status)
            .map(|d| format!("{}: {}", d.metric, d.reason))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let cause = (status == GateStatus::Regression)
        .then_some(cause)
        .flatten();
    if let Some(c) = &cause {
        headline.push_str(&format!(". Top attribution: {c}"));
    }
    GateDecision {
        status,
        headline,
        rules: decisions,
        cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(better: Better, a: &[f64], b: &[f64]) -> MetricDelta {
        MetricDelta {
            name: "throughput".into(),
            unit: "bit/s".into(),
            better,
            baseline_values: a.to_vec(),
            candidate_values: b.to_vec(),
            paired: a.len() == b.len(),
            ..Default::default()
        }
    }

    #[test]
    fn clear_regression_pass_improvement_and_noise() {
        let base = [100.0, 101.0, 99.0, 100.5, 99.5];
        // 30% lower throughput, tight: regression.
        let d = decide_rule(
            &metric(Better::Higher, &base, &[70.0, 71.0, 69.5, 70.2, 70.8]),
            0.05,
        );
        assert_eq!(d.status, GateStatus::Regression, "{}", d.reason);
        assert!((d.worsening - 0.2977).abs() < 0.01);
        // 1% lower, tight: within a 5% limit.
        let d = decide_rule(
            &metric(Better::Higher, &base, &[99.0, 99.5, 98.8, 99.2, 99.3]),
            0.05,
        );
        assert_eq!(d.status, GateStatus::Pass, "{}", d.reason);
        // 20% higher: improvement.
        let d = decide_rule(
            &metric(Better::Higher, &base, &[120.0, 121.0, 119.0, 120.5, 119.5]),
            0.05,
        );
        assert_eq!(d.status, GateStatus::Improvement, "{}", d.reason);
        // Latency (lower is better) up 30%: regression.
        let d = decide_rule(
            &metric(Better::Lower, &base, &[130.0, 131.0, 129.0, 130.5, 129.5]),
            0.05,
        );
        assert_eq!(d.status, GateStatus::Regression, "{}", d.reason);
        // Very noisy: cannot decide, and says how many repeats might.
        let d = decide_rule(
            &metric(Better::Higher, &[100.0, 80.0, 120.0], &[95.0, 70.0, 115.0]),
            0.05,
        );
        assert_eq!(d.status, GateStatus::Inconclusive, "{}", d.reason);
        assert!(
            d.repeats_needed.is_some_and(|k| k > 3),
            "{:?}",
            d.repeats_needed
        );
        // One repeat: never decided.
        let d = decide_rule(&metric(Better::Higher, &[100.0], &[50.0]), 0.05);
        assert_eq!(d.status, GateStatus::Inconclusive);
    }
}
