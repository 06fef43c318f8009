//! The analysis verdict — regression, improvement, no change or inconclusive — from
//! the metrics' decisions ([`super::decision`]): any regression makes it a
//! regression, else any improvement an improvement, all *same* no change, anything
//! *unknown* inconclusive. The headline names what decided it, with the numbers the
//! metric table shows. Without workload metrics the profile decides. Pure.

use std::collections::BTreeMap;

use crate::format::pct;
use crate::model::{
    Attribution, Confidence, DecidedBy, DecisionStatus, FunctionShare, MetricDelta, Role,
    VerdictStatus,
};

/// What the verdict reads.
pub struct VerdictInput<'a> {
    pub metrics: &'a [MetricDelta],
    pub attributions: &'a [Attribution],
    pub unexplained: &'a [FunctionShare],
    /// The family of kernel code most of the unexplained remainder is in.
    pub unexplained_family: Option<&'a str>,
    /// Cause name → its short title (`kasan`), for the headline.
    pub titles: &'a BTreeMap<String, String>,
    /// Busy share of all samples, baseline and candidate.
    pub busy: [f64; 2],
}

fn status(m: &MetricDelta) -> DecisionStatus {
    m.decision
        .as_ref()
        .map_or(DecisionStatus::Unknown, |d| d.status)
}

fn reason(m: &MetricDelta) -> &str {
    m.decision.as_ref().map_or("", |d| d.reason.as_str())
}

/// Which of several changed metrics leads the headline: one its own test decided
/// before one the CPU evidence carried, then the largest change as a log ratio.
/// Relative changes are not comparable across metrics: a share going 0.09 → 0.84 is
/// +829 % while a bitrate falling 19-fold is only −95 % (seen on the RTMP playbook,
/// whose headline led with frames lost instead of the bitrate the gate watches);
/// as log ratios they are 2.2 and 2.9.
fn lead_key(m: &MetricDelta) -> (bool, f64) {
    let own_test = m
        .decision
        .as_ref()
        .is_some_and(|d| d.decided_by == DecidedBy::Metric);
    let size = if m.baseline > 0.0 && m.candidate > 0.0 {
        (m.candidate / m.baseline).ln().abs()
    } else {
        m.change.abs()
    };
    (own_test, if size.is_finite() { size } else { 0.0 })
}

/// The verdict and its headline.
pub fn verdict(v: &VerdictInput) -> (VerdictStatus, String) {
    let largest = |s: DecisionStatus| {
        v.metrics.iter().filter(|m| status(m) == s).max_by(|x, y| {
            let ((ox, sx), (oy, sy)) = (lead_key(x), lead_key(y));
            ox.cmp(&oy).then(sx.total_cmp(&sy))
        })
    };
    if let Some(m) = largest(DecisionStatus::Regression) {
        return changed(v, m, VerdictStatus::Regression);
    }
    if let Some(m) = largest(DecisionStatus::Improvement) {
        return changed(v, m, VerdictStatus::Improvement);
    }
    if v.metrics.is_empty() {
        return from_profile(v);
    }
    let unknown: Vec<&MetricDelta> = v
        .metrics
        .iter()
        .filter(|m| status(m) == DecisionStatus::Unknown)
        .collect();
    if !unknown.is_empty() {
        let why: Vec<&str> = unknown.iter().map(|m| reason(m)).collect();
        return (
            VerdictStatus::Inconclusive,
            format!("Not decided yet: {}.", why.join("; ")),
        );
    }
    same(v)
}

/// Attributions that are more than a hint.
fn supported<'a>(v: &'a VerdictInput) -> impl Iterator<Item = &'a Attribution> {
    v.attributions
        .iter()
        .filter(|a| a.confidence != Confidence::Low)
}

fn changed(v: &VerdictInput, m: &MetricDelta, s: VerdictStatus) -> (VerdictStatus, String) {
    let worse = s == VerdictStatus::Regression;
    let by_cpu = m
        .decision
        .as_ref()
        .is_some_and(|d| d.decided_by == DecidedBy::CpuEvidence);
    let cause = supported(v).find(|a| (a.explained_share > 0.0) == worse);
    let why = match cause {
        // The CPU rule already named its cause in the reason.
        _ if by_cpu => String::new(),
        Some(a) if worse => format!("; {}", describe_cause(v, a, Role::Candidate)),
        Some(a) => format!("; {}", describe_cause(v, a, Role::Baseline)),
        None if worse => format!("; {}", top_unexplained(v)),
        None => "; no single configuration difference explains it".to_string(),
    };
    let what = if worse {
        "Candidate is worse"
    } else {
        "Candidate is better"
    };
    (s, format!("{what}: {}{why}.", reason(m)))
}

/// Every metric the same within its limit.
fn same(v: &VerdictInput) -> (VerdictStatus, String) {
    let why: Vec<&str> = v.metrics.iter().map(reason).collect();
    let profile = match supported(v).next() {
        Some(a) if a.explained_share.abs() >= 0.02 && a.confidence == Confidence::High => {
            let side = if a.explained_share > 0.0 {
                Role::Candidate
            } else {
                Role::Baseline
            };
            format!(" Different profile: {}.", describe_cause(v, a, side))
        }
        _ => String::new(),
    };
    (
        VerdictStatus::NoChange,
        format!("Same speed: {}.{profile}", why.join("; ")),
    )
}

/// No workload metrics: judge from the profile.
fn from_profile(v: &VerdictInput) -> (VerdictStatus, String) {
    let note = "no workload metrics";
    match supported(v).next() {
        Some(a) if a.explained_share >= 0.02 && a.confidence == Confidence::High => (
            VerdictStatus::Regression,
            format!(
                "Candidate burns more CPU: {} ({note}).",
                describe_cause(v, a, Role::Candidate)
            ),
        ),
        Some(a) if a.explained_share <= -0.02 && a.confidence == Confidence::High => (
            VerdictStatus::Improvement,
            format!(
                "Candidate burns less CPU: {} ({note}).",
                describe_cause(v, a, Role::Baseline)
            ),
        ),
        _ => {
            let moved: f64 = v
                .unexplained
                .iter()
                .map(|f| (f.candidate_share - f.baseline_share).abs())
                .sum();
            if v.attributions.is_empty() && moved < 0.05 {
                (
                    VerdictStatus::NoChange,
                    format!(
                        "No meaningful difference: {note}, busy CPU {} vs {}, and no configuration or runtime difference shows in the profile.",
                        pct(v.busy[0]),
                        pct(v.busy[1])
                    ),
                )
            } else {
                (
                    VerdictStatus::Inconclusive,
                    format!(
                        "The profiles differ but nothing is clear: {note}; {}.",
                        top_unexplained(v)
                    ),
                )
            }
        }
    }
}

/// `40% more of the candidate's busy CPU is kasan work (CONFIG_KASAN = y on …)`.
fn describe_cause(v: &VerdictInput, a: &Attribution, side: Role) -> String {
    let what = match v.titles.get(&a.cause) {
        Some(t) if !t.is_empty() => format!(" {t}"),
        _ => String::new(),
    };
    let (here, there) = match side {
        Role::Candidate => (&a.candidate, &a.baseline),
        Role::Baseline => (&a.baseline, &a.candidate),
    };
    format!(
        "{} more of the {side}'s busy CPU is{what} work ({} = {here} on the {side}, {there} on the other; {} confidence)",
        pct(a.explained_share.abs()),
        a.cause,
        a.confidence
    )
}

fn top_unexplained(v: &VerdictInput) -> String {
    let names: Vec<&str> = v
        .unexplained
        .iter()
        .take(3)
        .map(|f| f.symbol.as_str())
        .collect();
    if names.is_empty() {
        "no configuration or runtime difference explains the profile change".to_string()
    } else {
        format!(
            "no configuration or runtime difference explains it; the extra time is in {}{}",
            names.join(", "),
            v.unexplained_family
                .map(|f| format!(" (mostly {f}: see the caveats for what to check)"))
                .unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MetricDecision, TestKind};

    fn changed_metric(name: &str, baseline: f64, candidate: f64, by: DecidedBy) -> MetricDelta {
        MetricDelta {
            name: name.into(),
            baseline,
            candidate,
            change: candidate / baseline - 1.0,
            decision: Some(MetricDecision {
                status: DecisionStatus::Regression,
                limit: 0.1,
                alpha: 0.05,
                worsening: None,
                worsening_ci: None,
                p_value: None,
                test: TestKind::PairedLogT,
                hodges_lehmann: None,
                cliffs_delta: None,
                pairs: 2,
                decided_by: by,
                reason: format!("{name} moved"),
                pairs_needed: None,
                warnings: vec![],
            }),
            ..Default::default()
        }
    }

    fn headline(metrics: &[MetricDelta]) -> String {
        let titles = BTreeMap::new();
        let v = VerdictInput {
            metrics,
            attributions: &[],
            unexplained: &[],
            unexplained_family: None,
            titles: &titles,
            busy: [0.5, 0.5],
        };
        verdict(&v).1
    }

    /// The RTMP run's numbers: the 19-fold bitrate fall leads, not the share of lost
    /// frames whose relative change (+787 %) is larger.
    #[test]
    fn the_largest_change_as_a_log_ratio_leads() {
        let m = [
            changed_metric("frames_lost", 0.094, 0.838, DecidedBy::CpuEvidence),
            changed_metric("bitrate", 52.8e6, 2.77e6, DecidedBy::CpuEvidence),
        ];
        assert!(headline(&m).contains("bitrate moved"), "{}", headline(&m));
    }

    #[test]
    fn a_metric_its_own_test_decided_leads() {
        let m = [
            changed_metric("bitrate", 52.8e6, 2.77e6, DecidedBy::CpuEvidence),
            changed_metric("latency", 1.0, 1.3, DecidedBy::Metric),
        ];
        assert!(headline(&m).contains("latency moved"), "{}", headline(&m));
    }
}
