//! The JUnit XML CI systems read: one test case per gate rule (failure =
//! regression, skipped = inconclusive); a run that failed is one errored test case.

use crate::format::{pct, pval};
use crate::model::{GateDecision, GateStatus};

/// The JUnit XML of a gate run.
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
    Ok(without_disabled(&report.to_string()?))
}

/// quick-junit writes the count of skipped cases as `disabled="N"` on <testsuite>
/// (and <testsuites>), which the Jenkins xunit schema (junit-10.xsd, the one most CI
/// tools follow) does not allow; it names that count `skipped` on <testsuite> and has
/// none on <testsuites>. Only element tags are touched: a message quoting
/// `disabled="…"` has its quotes escaped as `&quot;`.
fn without_disabled(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    for line in xml.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with("<testsuite ") {
            out.push_str(&line.replacen(" disabled=\"", " skipped=\"", 1));
        } else if t.starts_with("<testsuites ") {
            out.push_str(&drop_attribute(line, "disabled"));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// `line` without its ` name="…"` attribute.
fn drop_attribute(line: &str, name: &str) -> String {
    let key = format!(" {name}=\"");
    let Some(i) = line.find(&key) else {
        return line.to_string();
    };
    let (head, after) = line.split_at(i);
    let after = &after[key.len()..];
    match after.find('"') {
        Some(j) => format!("{head}{}", &after[j + 1..]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Better, MetricDelta};

    #[test]
    fn junit_has_one_case_per_rule() {
        let base = [100.0, 101.0, 99.0];
        let d = GateDecision {
            status: GateStatus::Regression,
            headline: String::new(),
            rules: vec![crate::gate::decide_rule(
                &MetricDelta {
                    name: "throughput".into(),
                    unit: "bit/s".into(),
                    better: Better::Higher,
                    baseline_values: base.to_vec(),
                    candidate_values: vec![70.0, 71.0, 69.0],
                    paired: true,
                    ..Default::default()
                },
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
        assert!(!x.contains("disabled="), "{x}");
    }

    /// An inconclusive rule is a skipped case, and the suite carries no `disabled`
    /// count the xunit schema would reject (it broke the gate's JUnit on CI).
    #[test]
    fn inconclusive_is_skipped_without_disabled() {
        let rule = crate::gate::decide_rule(
            &MetricDelta {
                name: "throughput".into(),
                unit: "bit/s".into(),
                better: Better::Higher,
                baseline_values: vec![100.0, 60.0, 140.0],
                candidate_values: vec![70.0, 130.0, 90.0],
                paired: true,
                ..Default::default()
            },
            0.05,
        );
        assert_eq!(rule.status, GateStatus::Inconclusive);
        let d = GateDecision {
            status: GateStatus::Inconclusive,
            headline: String::new(),
            rules: vec![rule],
            cause: None,
        };
        let x = junit("demo", Some(&d), None, &[], 1.0).unwrap();
        assert!(x.contains("<skipped") && x.contains("skipped=\"1\""), "{x}");
        assert!(!x.contains("disabled="), "{x}");
    }
}
