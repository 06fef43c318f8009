//! The upgrade gate: a decision per metric from the playbook's `gate:` rules, and
//! the JUnit file CI systems read.
//!
//! A rule `throughput: { max_regression: 5% }` asks: is the candidate worse than the
//! baseline by more than 5%? Repeats are taken in pairs (A B B A … on a shared
//! machine, both at once on separate ones), so kdelta compares pair by pair: the
//! candidate's worsening `w` is the geometric mean of the pairs' ratios (signed so
//! that positive is worse), tested with a one-sample t-test on the log ratios, and
//! its 95% interval is the wider of the t interval and a bootstrap over pairs (the
//! bootstrap alone is too narrow with three or four repeats). Drift that slows both
//! hosts of a pair cancels out. Welch's t (unpaired; the decision's test when the
//! sides have different numbers of values) and Mann–Whitney are reported beside. Then:
//!
//! - **regression**: significant (p < 0.05) and `w` at least the limit;
//! - **improvement**: the whole interval on the better side;
//! - **pass**: the interval's worse end within the limit (a regression beyond the
//!   limit is ruled out);
//! - **inconclusive**: anything else — too noisy to decide. The number of repeats
//!   that would decide is estimated from how the interval shrinks (∝ 1/√n).
//!
//! The limit is also the minimum effect size: a significant 1% change under a 5%
//! limit passes when the interval stays under 5%.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::model::{Better, MetricDelta, Summary, VerdictStatus};
use crate::stats;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum GateStatus {
    Pass,
    Improvement,
    Inconclusive,
    Regression,
}

impl GateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GateStatus::Pass => "pass",
            GateStatus::Improvement => "improvement",
            GateStatus::Inconclusive => "inconclusive",
            GateStatus::Regression => "regression",
        }
    }
    /// The process exit code documented in `--help` and the README.
    pub fn exit_code(self) -> i32 {
        match self {
            GateStatus::Pass | GateStatus::Improvement => crate::exit_codes::PASS,
            GateStatus::Regression => crate::exit_codes::REGRESSION,
            GateStatus::Inconclusive => crate::exit_codes::INCONCLUSIVE,
        }
    }
}

/// The decision on one `gate:` rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RuleDecision {
    pub metric: String,
    pub unit: String,
    pub better: Better,
    /// The limit, as a fraction (0.05 = 5%).
    pub max_regression: f64,
    pub status: GateStatus,
    /// Relative worsening of the candidate's mean (positive = worse), point estimate.
    pub worsening: f64,
    /// 95% interval of `worsening`.
    pub worsening_ci: Option<[f64; 2]>,
    /// The p-value the decision used, and its test: `paired t on log ratios` when the
    /// repeats pair up (the usual case), `Welch t` otherwise.
    pub p_value: Option<f64>,
    pub test: String,
    pub p_welch: Option<f64>,
    pub p_mann_whitney: Option<f64>,
    pub baseline_values: Vec<f64>,
    pub candidate_values: Vec<f64>,
    /// Repeats per host that would likely decide an inconclusive rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats_needed: Option<u32>,
    /// One sentence: why this status.
    pub reason: String,
}

/// The gate's verdict over all rules.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GateDecision {
    pub status: GateStatus,
    pub headline: String,
    pub rules: Vec<RuleDecision>,
    /// For a regression: the analysis's top attribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

const ALPHA: f64 = 0.05;

fn pct(x: f64) -> String {
    let v = x * 100.0 + 0.0;
    if v.abs() >= 10.0 {
        format!("{v:.0}%")
    } else {
        format!("{v:.1}%")
    }
}

fn pval(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// Decides one rule from a metric's per-repeat values.
pub fn decide_rule(m: &MetricDelta, limit: f64) -> RuleDecision {
    let (a, b) = (&m.baseline_values, &m.candidate_values);
    let sign = match m.better {
        Better::Higher => -1.0,
        Better::Lower => 1.0,
    };
    let ma = stats::mean(a);
    let mb = stats::mean(b);
    let worsening = if ma != 0.0 {
        sign * (mb / ma - 1.0)
    } else {
        0.0
    };
    let welch = stats::welch_t(a, b);
    let p_mw = stats::mann_whitney(a, b).map(|r| r.1);
    // In "worse is positive" terms.
    let flip = |ci: [f64; 2]| {
        let (x, y) = (sign * ci[0], sign * ci[1]);
        [x.min(y), x.max(y)]
    };
    let wider = |x: [f64; 2], y: [f64; 2]| [x[0].min(y[0]), x[1].max(y[1])];
    // Repeats come in pairs taken next to each other (A B B A …, or both hosts at
    // once): the paired test cancels drift between pairs. Unpaired (Welch) when the
    // sides have different numbers of values.
    let paired = if m.paired {
        stats::paired_relative_change(a, b)
    } else {
        None
    };
    let (worsening, p_decide, ci, method) = match paired {
        Some(pr) => (
            sign * pr.change,
            Some(pr.p),
            Some(wider(flip(pr.ci_t), flip(pr.ci_bootstrap))),
            "paired t on log ratios",
        ),
        None => {
            // Welch's t interval of the difference of means, relative to the baseline mean.
            let t_ci = welch.and_then(|(_, df, _)| {
                let t = statrs::distribution::StudentsT::new(0.0, 1.0, df).ok()?;
                use statrs::distribution::ContinuousCDF;
                let q = t.inverse_cdf(0.975);
                let se = (stats::variance(a) / a.len() as f64
                    + stats::variance(b) / b.len() as f64)
                    .sqrt();
                let d = mb - ma;
                (ma != 0.0).then(|| [(d - q * se) / ma, (d + q * se) / ma])
            });
            let boot = stats::bootstrap_relative_change(a, b, 4000);
            let ci = match (t_ci.map(flip), boot.map(flip)) {
                (Some(t), Some(bs)) => Some(wider(t, bs)),
                (x, y) => x.or(y),
            };
            (worsening, welch.map(|t| t.2), ci, "Welch t")
        }
    };
    let p_welch = welch.map(|t| t.2);
    let n = a.len().min(b.len());
    let (status, reason, needed) = match (ci, p_decide) {
        _ if n < 2 => (
            GateStatus::Inconclusive,
            format!(
                "{} repeat(s) per host: at least 2 are needed to tell a change from noise (capture.repeat: 5 is a good start)",
                n
            ),
            Some(5),
        ),
        (Some([lo, hi]), Some(p)) => {
            if p < ALPHA && worsening >= limit {
                (
                    GateStatus::Regression,
                    format!(
                        "{} worse (95% interval {} … {}), beyond the {} limit; p = {} ({method})",
                        pct(worsening),
                        pct(lo),
                        pct(hi),
                        pct(limit),
                        pval(p)
                    ),
                    None,
                )
            } else if hi < 0.0 {
                (
                    GateStatus::Improvement,
                    format!("{} better (95% interval {} … {} worse)", pct(-worsening), pct(lo), pct(hi)),
                    None,
                )
            } else if hi <= limit {
                (
                    GateStatus::Pass,
                    format!(
                        "{} {} (95% interval up to {} worse, within the {} limit)",
                        pct(worsening.abs()),
                        if worsening > 0.0 { "worse" } else { "better" },
                        pct(hi),
                        pct(limit)
                    ),
                    None,
                )
            } else {
                // How far the interval must shrink: below the limit if the point is
                // under it, clear of zero if the point is beyond it.
                let half = (hi - lo) / 2.0;
                let target = if worsening < limit {
                    limit - worsening
                } else {
                    worsening
                };
                let needed = (target > 0.0).then(|| {
                    let k = (n as f64 * (half / target).powi(2)).ceil();
                    k.clamp(n as f64 + 1.0, 200.0) as u32
                });
                (
                    GateStatus::Inconclusive,
                    format!(
                        "{} {} but the 95% interval ({} … {} worse) straddles the {} limit{}",
                        pct(worsening.abs()),
                        if worsening > 0.0 { "worse" } else { "better" },
                        pct(lo),
                        pct(hi),
                        pct(limit),
                        match needed {
                            Some(k) => format!(": about {k} repeats per host would decide"),
                            None => ": the change sits on the limit".into(),
                        }
                    ),
                    needed,
                )
            }
        }
        _ => (
            GateStatus::Inconclusive,
            "no variance estimate (identical values or a mean of zero)".into(),
            None,
        ),
    };
    RuleDecision {
        metric: m.name.clone(),
        unit: m.unit.clone(),
        better: m.better,
        max_regression: limit,
        status,
        worsening,
        worsening_ci: ci,
        p_value: p_decide,
        test: method.to_string(),
        p_welch,
        p_mann_whitney: p_mw,
        baseline_values: a.clone(),
        candidate_values: b.clone(),
        repeats_needed: needed,
        reason,
    }
}

/// Decides the gate from the analysis summary and the playbook's rules.
pub fn decide(rules: &BTreeMap<String, f64>, summary: &Summary) -> GateDecision {
    let mut decisions = Vec::new();
    for (metric, limit) in rules {
        match summary.metrics.iter().find(|m| &m.name == metric) {
            Some(m) => decisions.push(decide_rule(m, *limit)),
            None => decisions.push(RuleDecision {
                metric: metric.clone(),
                unit: String::new(),
                better: Better::Higher,
                max_regression: *limit,
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
            }),
        }
    }
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
        // No rules: the analysis verdict decides.
        let status = match summary.verdict.status {
            VerdictStatus::Regression => GateStatus::Regression,
            VerdictStatus::Inconclusive => GateStatus::Inconclusive,
            VerdictStatus::Improvement => GateStatus::Improvement,
            VerdictStatus::NoChange => GateStatus::Pass,
        };
        return GateDecision {
            status,
            headline: format!(
                "no gate rules in the playbook: decided by the analysis verdict: {}",
                summary.verdict.headline
            ),
            rules: decisions,
            cause: (status == GateStatus::Regression)
                .then_some(cause)
                .flatten(),
        };
    }
    let status = decisions
        .iter()
        .map(|d| d.status)
        .max()
        .unwrap_or(GateStatus::Pass);
    // Pass beats improvement unless every rule improved.
    let status = if status == GateStatus::Improvement
        && decisions.iter().any(|d| d.status == GateStatus::Pass)
    {
        GateStatus::Pass
    } else {
        status
    };
    let focus: Vec<&RuleDecision> = decisions.iter().filter(|d| d.status == status).collect();
    let mut headline = format!(
        "{}: {}",
        status.as_str(),
        focus
            .iter()
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

/// The JUnit XML for a gate: one test case per rule (failure = regression,
/// skipped = inconclusive); a run that failed is one errored test case.
pub fn junit(
    suite_name: &str,
    decision: Option<&GateDecision>,
    run_error: Option<&str>,
    properties: &[(&str, String)],
    seconds: f64,
) -> anyhow::Result<String> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("kdelta");
    let mut suite = TestSuite::new(format!("kdelta gate: {suite_name}"));
    for (k, v) in properties {
        suite.add_property((*k, v.as_str()));
    }
    suite.set_time(std::time::Duration::from_secs_f64(seconds.max(0.0)));
    if let Some(e) = run_error {
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
        st.set_message(e);
        st.set_type("run-failed");
        suite.add_test_case(TestCase::new("run", st));
    }
    if let Some(d) = decision {
        for r in &d.rules {
            let name = format!("{} (max_regression {})", r.metric, pct(r.max_regression));
            let st = match r.status {
                GateStatus::Pass | GateStatus::Improvement => TestCaseStatus::success(),
                GateStatus::Regression => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    let msg = match &d.cause {
                        Some(c) => format!("{}. Top attribution: {c}", r.reason),
                        None => r.reason.clone(),
                    };
                    s.set_message(msg);
                    s.set_type("regression");
                    s
                }
                GateStatus::Inconclusive => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(format!("inconclusive: {}", r.reason));
                    s
                }
            };
            let mut tc = TestCase::new(name, st);
            tc.set_classname(format!("kdelta.{suite_name}"));
            // The numbers, for a pass too.
            tc.set_system_out(format!(
                "{}\nbaseline: {:?}\ncandidate: {:?}\nWelch p = {}, Mann-Whitney p = {}",
                r.reason,
                r.baseline_values,
                r.candidate_values,
                r.p_welch.map(pval).unwrap_or("-".into()),
                r.p_mann_whitney.map(pval).unwrap_or("-".into())
            ));
            suite.add_test_case(tc);
        }
        if d.rules.is_empty() {
            let st = match d.status {
                GateStatus::Regression => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(&d.headline);
                    s
                }
                GateStatus::Inconclusive => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(&d.headline);
                    s
                }
                _ => TestCaseStatus::success(),
            };
            suite.add_test_case(TestCase::new("verdict", st));
        }
    }
    report.add_test_suite(suite);
    // quick-junit always writes `disabled="0"` on <testsuite>, which the Jenkins
    // xunit schema (junit-10.xsd, the one most CI tools follow) does not allow. kdelta
    // never disables a case, so the attribute carries nothing: drop it.
    Ok(report.to_string()?.replace(" disabled=\"0\"", ""))
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

    #[test]
    fn junit_has_one_case_per_rule() {
        let base = [100.0, 101.0, 99.0];
        let d = GateDecision {
            status: GateStatus::Regression,
            headline: String::new(),
            rules: vec![decide_rule(
                &metric(Better::Higher, &base, &[70.0, 71.0, 69.0]),
                0.05,
            )],
            cause: Some("CONFIG_KASAN (n → y)".into()),
        };
        let x = junit(
            "demo",
            Some(&d),
            None,
            &[("baseline.kernel", "6.1".into())],
            12.0,
        )
        .unwrap();
        assert!(
            x.contains("<testcase name=\"throughput (max_regression 5.0%)\""),
            "{x}"
        );
        assert!(x.contains("<failure") && x.contains("CONFIG_KASAN"), "{x}");
    }
}
