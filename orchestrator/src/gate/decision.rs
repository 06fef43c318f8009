//! One decision procedure for every metric, used by `run`, `analyze` and `gate`
//! alike, three-valued as Chromium's Pinpoint decides:
//!
//! - **regression** / **improvement**: the change is significant (two-sided p < α)
//!   and its estimate is beyond the limit, worse or better (a 5% limit: 5% lower or
//!   higher throughput, whichever way is worse);
//! - **same**: the whole `1 − α` interval lies within ± the limit;
//! - **unknown**: anything else: more pairs would decide (an estimate is given).
//!
//! The estimate is the geometric mean of the candidate/baseline ratios, tested with a
//! one-sample t on the log ratios of pairs taken next to each other in time (A B B A
//! …: drift that moves both hosts of a pair cancels), or Welch's t on the logs when
//! the repeats do not pair up. The p-value, the interval and the decision come from
//! that one test, so the page can never contradict itself.
//!
//! Few repeats. With 2 pairs the t test has one degree of freedom: it still decides a
//! change that every pair shows consistently (a 10× drop in two pairs whose ratios
//! agree within 20% has p ≈ 0.03), but not one whose pairs disagree. Rank tests cannot
//! help there: with 2 vs 2 values the smallest two-sided p of Mann–Whitney is 0.33 and
//! of a sign test 0.5, above any α — they are never the only evidence. What can help is
//! the profile: when every repeat moved beyond the limit in the same direction (the
//! ranges separate, lkp-tests' rule) *and* the attribution carries the move — a
//! config or runtime delta that takes at least 10 points of busy CPU with high
//! confidence (thousands of samples, p far below 1e-6) — the change is called, and the
//! headline says the CPU evidence decided it, not the metric's test. Identical hosts
//! have no delta item to attribute, so this rule cannot raise an A/A false alarm.
//!
//! Adaptive repeats look at the data on a schedule (after 2, 3, 4, 6, 8, 12 … pairs):
//! each look uses α / (number of looks the budget allows) (Bonferroni over the
//! looks), so stopping at the first decision keeps the overall false-alarm rate at α.

use crate::analyze::stats;
use crate::format::{pct, pval};
use crate::model::{Confidence, DecidedBy, DecisionStatus, MetricDecision, MetricDelta, TestKind};

/// The limit a metric change must exceed to count, without a gate rule.
pub const DEFAULT_LIMIT: f64 = 0.05;
/// The two-sided significance level of one look.
pub const ALPHA: f64 = 0.05;
/// The smallest share of busy CPU an attribution must explain for the CPU rule.
pub const CPU_EVIDENCE_SHARE: f64 = 0.10;

/// The profile's strongest evidence: the top attribution in the direction the
/// metric moved.
#[derive(Clone, Debug)]
pub struct CpuEvidence {
    pub cause: String,
    pub value: String,
    /// Explained share of busy CPU, positive when the candidate spends more.
    pub explained: f64,
    pub confidence: Confidence,
    pub p: f64,
}

/// The log-scale test of a metric's repeats: paired when they pair up.
fn test(m: &MetricDelta, alpha: f64) -> Option<(stats::LogTest, TestKind)> {
    let (a, b) = (&m.baseline_values, &m.candidate_values);
    if m.paired {
        if let Some(t) = stats::paired_log_t(a, b, alpha) {
            return Some((t, TestKind::PairedLogT));
        }
    }
    stats::welch_log_t(a, b, alpha).map(|t| (t, TestKind::WelchLogT))
}

/// The worsening of each pair (paired), or between every baseline and every
/// candidate value (unpaired): every entry beyond the limit means every repeat moved
/// beyond it (the ranges separate by more than the limit).
fn repeat_worsenings(m: &MetricDelta) -> Vec<f64> {
    let s = m.better.worsening_sign();
    let (a, b) = (&m.baseline_values, &m.candidate_values);
    if m.paired {
        if let Some(d) = stats::log_ratios(a, b) {
            return d.into_iter().map(|x| s * (x.exp() - 1.0)).collect();
        }
    }
    let mut all = Vec::new();
    for x in a.iter().filter(|x| **x > 0.0) {
        for y in b.iter().filter(|y| **y > 0.0) {
            all.push(s * (y / x - 1.0));
        }
    }
    all
}

/// `1 − α` as a percentage: `95%`.
fn level(alpha: f64) -> String {
    let l = (1.0 - alpha) * 100.0;
    if (l - l.round()).abs() < 0.05 {
        format!("{l:.0}%")
    } else {
        format!("{l:.1}%")
    }
}

/// `90% worse`, `3.1% better` for a worsening.
fn worse_better(w: f64) -> String {
    if w >= 0.0 {
        format!("{} worse", pct(w))
    } else {
        format!("{} better", pct(-w))
    }
}

/// How a metric changed, `w` its relative worsening. A metric that is itself a
/// share — unit `%` (0–100), or `share`/`fraction` (0–1) — leads with points: a
/// share going 9% → 84% is "829% worse" as a relative change, which the test uses
/// (on log ratios) but nobody reads well.
fn changed(m: &MetricDelta, w: f64) -> String {
    let scale = match m.unit.as_str() {
        "%" => 1.0,
        "share" | "fraction" => 100.0,
        _ => return worse_better(w),
    };
    let (b, c) = (m.baseline * scale, m.candidate * scale);
    if !(b.is_finite() && c.is_finite()) {
        return worse_better(w);
    }
    format!(
        "{:.1} percentage points {} ({b:.1}% → {c:.1}%; relative: {})",
        (c - b).abs(),
        if w >= 0.0 { "worse" } else { "better" },
        worse_better(w)
    )
}

/// Decides a metric from its repeats alone.
pub fn decide(m: &MetricDelta, limit: f64, alpha: f64) -> MetricDecision {
    let s = m.better.worsening_sign();
    let pairs = if m.paired {
        m.baseline_values.len()
    } else {
        m.baseline_values.len().min(m.candidate_values.len())
    };
    let hl = stats::hodges_lehmann_log(&m.baseline_values, &m.candidate_values, m.paired)
        .map(|x| s * (x.exp() - 1.0));
    let mut d = MetricDecision {
        status: DecisionStatus::Unknown,
        limit,
        alpha,
        worsening: None,
        worsening_ci: None,
        p_value: None,
        test: TestKind::None,
        hodges_lehmann: hl,
        // Cliff's δ counts candidate values above baseline ones: that is worse when
        // higher is worse; `s` turns it the right way round.
        cliffs_delta: stats::cliffs_delta(&m.baseline_values, &m.candidate_values).map(|c| s * c),
        pairs,
        decided_by: DecidedBy::Nothing,
        reason: String::new(),
        pairs_needed: None,
        warnings: warnings(m),
    };
    let Some((t, kind)) = test(m, alpha) else {
        d.reason = format!(
            "{}: {} vs {} repeat(s): at least 2 pairs are needed for a test (capture.repeat: 3 is a good start)",
            m.name,
            m.baseline_values.len(),
            m.candidate_values.len()
        );
        d.pairs_needed = Some(3);
        return d;
    };
    // The geometric mean ratio and its interval as relative changes, then turned
    // so that positive is worse.
    let w = s * (t.mean.exp() - 1.0);
    let ci = {
        let (x, y) = (s * (t.ci[0].exp() - 1.0), s * (t.ci[1].exp() - 1.0));
        [x.min(y), x.max(y)]
    };
    let lim = limit;
    d.test = kind;
    d.p_value = Some(t.p);
    d.worsening = Some(w);
    d.worsening_ci = Some(ci);
    d.status = if t.p < alpha && w >= lim {
        DecisionStatus::Regression
    } else if t.p < alpha && w <= -lim {
        DecisionStatus::Improvement
    } else if ci[0] > -lim && ci[1] < lim {
        DecisionStatus::Same
    } else {
        DecisionStatus::Unknown
    };
    d.decided_by = if d.status == DecisionStatus::Unknown {
        DecidedBy::Nothing
    } else {
        DecidedBy::Metric
    };
    if d.status == DecisionStatus::Unknown {
        d.pairs_needed = pairs_needed(&t, w, limit, alpha, pairs);
    }
    d.reason = reason(m, &d, w, ci, t.p, kind);
    d
}

/// How many pairs would likely make the interval decide, from its width now (the
/// half-width shrinks as 1/√n). On the log scale, where the test is.
fn pairs_needed(t: &stats::LogTest, w: f64, limit: f64, alpha: f64, n: usize) -> Option<u32> {
    let sd = t.se * (n as f64).sqrt();
    // Below the limit: shrink until the interval fits inside it; beyond: until it
    // clears zero.
    let m = t.mean.abs();
    let lim = (1.0 + limit).ln().min(-(1.0 - limit).ln());
    let target = if w.abs() < limit { lim - m } else { m };
    if target <= 0.0 || sd <= 0.0 {
        return None;
    }
    let z = stats::normal_quantile(alpha);
    let k = ((z * sd / target).powi(2)).ceil();
    Some(k.clamp(n as f64 + 1.0, 200.0) as u32)
}

fn reason(
    m: &MetricDelta,
    d: &MetricDecision,
    w: f64,
    ci: [f64; 2],
    p: f64,
    kind: TestKind,
) -> String {
    let every = repeat_worsenings(m);
    let lim = d.limit;
    let consistent = if every.iter().all(|x| *x >= lim) || every.iter().all(|x| *x <= -lim) {
        " in every pair"
    } else {
        ""
    };
    let numbers = format!(
        "{} pairs, {} interval {} … {}; p = {}, {kind}",
        d.pairs,
        level(d.alpha),
        worse_better(ci[0]),
        worse_better(ci[1]),
        pval(p)
    );
    let limit = pct(d.limit);
    match d.status {
        DecisionStatus::Regression | DecisionStatus::Improvement => format!(
            "{} {}{consistent} ({numbers}), beyond the {limit} limit",
            m.name,
            changed(m, w)
        ),
        DecisionStatus::Same => format!(
            "{} within ±{limit}: {} ({numbers})",
            m.name,
            worse_better(w)
        ),
        DecisionStatus::Unknown => format!(
            "{} {} but the interval straddles {} ({numbers}){}",
            m.name,
            changed(m, w),
            if w.abs() >= lim { "zero" } else { "the limit" },
            match d.pairs_needed {
                Some(k) => format!("; about {k} pairs would decide"),
                None => String::new(),
            }
        ),
    }
}

/// An unknown metric decided by the profile: every repeat beyond the limit in one
/// direction and an attribution of at least [`CPU_EVIDENCE_SHARE`] of busy CPU with
/// high confidence on the side that got worse.
pub fn with_cpu_evidence(d: &mut MetricDecision, m: &MetricDelta, ev: Option<&CpuEvidence>) {
    if d.status != DecisionStatus::Unknown {
        return;
    }
    let Some(ev) = ev else { return };
    if ev.confidence != Confidence::High || ev.explained.abs() < CPU_EVIDENCE_SHARE {
        return;
    }
    let lim = d.limit;
    let every = repeat_worsenings(m);
    if every.is_empty() {
        return;
    }
    // Worse with more CPU on the candidate, better with less.
    let (status, ok) = if every.iter().all(|x| *x >= lim) {
        (DecisionStatus::Regression, ev.explained > 0.0)
    } else if every.iter().all(|x| *x <= -lim) {
        (DecisionStatus::Improvement, ev.explained < 0.0)
    } else {
        return;
    };
    if !ok {
        return;
    }
    let least = every
        .iter()
        .copied()
        .min_by(|a, b| a.abs().total_cmp(&b.abs()))
        .unwrap_or(0.0);
    d.status = status;
    d.decided_by = DecidedBy::CpuEvidence;
    d.pairs_needed = None;
    d.reason = format!(
        "{} {} in every repeat (at least {}; {} pairs: too few for the metric's test alone{}); CPU evidence decisive: {} = {} takes {} points {} of the {}'s busy CPU (high confidence, p = {})",
        m.name,
        changed(m, d.worsening.unwrap_or(least)),
        worse_better(least),
        d.pairs,
        d.p_value.map(|p| format!(", p = {}", pval(p))).unwrap_or_default(),
        ev.cause,
        ev.value,
        pct(ev.explained.abs()).trim_end_matches('%'),
        if ev.explained > 0.0 { "more" } else { "less" },
        "candidate",
        pval(ev.p)
    );
}

// ----- warnings ------------------------------------------------------------------

fn warnings(m: &MetricDelta) -> Vec<String> {
    let mut out = Vec::new();
    if m.dropped > 0 {
        out.push(format!(
            "{}: {} value(s) left out: the other side's repeat of their pair gave none (see workload.log)",
            m.name, m.dropped
        ));
    }
    for (side, v) in [
        ("baseline", &m.baseline_values),
        ("candidate", &m.candidate_values),
    ] {
        out.extend(drift(&m.name, side, v));
        out.extend(outlier(&m.name, side, v));
        out.extend(bimodal(&m.name, side, v));
    }
    out
}

/// Spearman's ρ of a side's values against their order: |ρ| ≥ 0.9 over 4 or more
/// repeats is a drift (warm-up, thermal, a neighbour), not noise.
fn drift(name: &str, side: &str, v: &[f64]) -> Option<String> {
    if v.len() < 4 {
        return None;
    }
    let ranks = |xs: &[f64]| -> Vec<f64> {
        let mut idx: Vec<usize> = (0..xs.len()).collect();
        idx.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
        let mut r = vec![0.0; xs.len()];
        for (rank, &i) in idx.iter().enumerate() {
            r[i] = rank as f64;
        }
        r
    };
    let rv = ranks(v);
    let n = v.len() as f64;
    let d2: f64 = rv
        .iter()
        .enumerate()
        .map(|(i, r)| (i as f64 - r).powi(2))
        .sum();
    let rho = 1.0 - 6.0 * d2 / (n * (n * n - 1.0));
    let (first, last) = (v.first()?, v.last()?);
    (rho.abs() >= 0.9 && *first != 0.0).then(|| {
        format!(
            "{name}: the {side} drifts from the first repeat to the last ({} over {} repeats, Spearman ρ = {rho:.2}): something warmed up or changed during the run",
            crate::format::pct(last / first - 1.0),
            v.len()
        )
    })
}

/// A value more than 3.5 robust z (median absolute deviation) from its side's median.
fn outlier(name: &str, side: &str, v: &[f64]) -> Option<String> {
    if v.len() < 4 {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let med = s[s.len() / 2];
    let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let mad = dev[dev.len() / 2];
    if mad <= 0.0 {
        return None;
    }
    let (i, x) = v
        .iter()
        .enumerate()
        .max_by(|a, b| (a.1 - med).abs().total_cmp(&(b.1 - med).abs()))?;
    let z = 0.6745 * (x - med).abs() / mad;
    (z > 3.5).then(|| {
        format!(
            "{name}: {side} repeat {} is an outlier ({} from the median, robust z = {z:.1}): check its workload.log",
            i + 1,
            crate::format::pct(x / med - 1.0)
        )
    })
}

/// Two groups: the largest gap between sorted values is more than three times the
/// spread inside either group, and each group has at least two values.
fn bimodal(name: &str, side: &str, v: &[f64]) -> Option<String> {
    if v.len() < 6 || v.iter().any(|x| *x <= 0.0) {
        return None;
    }
    let mut s: Vec<f64> = v.iter().map(|x| x.ln()).collect();
    s.sort_by(f64::total_cmp);
    let (gi, gap) = (1..s.len() - 2)
        .map(|i| (i, s[i + 1] - s[i]))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let left = s[gi] - s[0];
    let right = s[s.len() - 1] - s[gi + 1];
    (gap > 3.0 * left.max(right) && gap > 0.05).then(|| {
        format!(
            "{name}: the {side}'s values fall in two groups ({} and {} repeats, {} apart): the mean hides them; look for what differs between those repeats",
            gi + 1,
            s.len() - gi - 1,
            crate::format::pct(gap.exp() - 1.0)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Better;

    fn metric(better: Better, a: &[f64], b: &[f64], paired: bool) -> MetricDelta {
        MetricDelta {
            name: "throughput".into(),
            unit: "bit/s".into(),
            better,
            baseline_values: a.to_vec(),
            candidate_values: b.to_vec(),
            paired,
            ..Default::default()
        }
    }

    fn close(x: f64, y: f64, tol: f64) -> bool {
        (x - y).abs() <= tol
    }

    #[test]
    fn a_share_metric_also_says_its_change_in_points() {
        let mut m = metric(Better::Lower, &[0.09, 0.10], &[0.83, 0.84], true);
        m.name = "frames_lost".into();
        m.unit = "share".into();
        (m.baseline, m.candidate) = (0.095, 0.835);
        let d = decide(&m, 0.1, ALPHA);
        assert!(
            d.reason.starts_with("frames_lost ")
                && d.reason
                    .contains("74.0 percentage points worse (9.5% → 83.5%; relative: 780% worse)"),
            "{}",
            d.reason
        );
        m.unit = "%".into();
        (m.baseline, m.candidate) = (2.8, 3.6);
        assert!(decide(&m, 0.1, ALPHA)
            .reason
            .contains("0.8 percentage points worse (2.8% → 3.6%; relative"));
        m.unit = "bit/s".into();
        assert!(!decide(&m, 0.1, ALPHA).reason.contains("percentage points"));
    }

    #[test]
    fn two_pairs_decide_a_consistent_tenfold_drop() {
        // The README demo's case (issue 19): 7.85 / 6.37 → 0.703 / 0.707 Gbit/s.
        // scipy 1.17.1: ttest_1samp(log(b/a), 0) → t = -21.48880421754875,
        // p = 0.02960429116630909; exp(mean) - 1 = -0.9003028313204926;
        // confidence_interval(0.95) → exp(low) - 1 = -0.9744959111280764,
        // exp(high) - 1 = -0.6102771797642145.
        let m = metric(Better::Higher, &[7.85e9, 6.37e9], &[0.703e9, 0.707e9], true);
        let d = decide(&m, 0.05, ALPHA);
        assert_eq!(d.status, DecisionStatus::Regression, "{}", d.reason);
        assert_eq!(d.test, TestKind::PairedLogT);
        assert!(close(d.p_value.unwrap(), 0.029_604_291_166_309_09, 1e-12));
        assert!(close(d.worsening.unwrap(), 0.900_302_831_320_492_6, 1e-12));
        let [lo, hi] = d.worsening_ci.unwrap();
        assert!(close(lo, 0.610_277_179_764_214_5, 1e-9), "{lo}");
        assert!(close(hi, 0.974_495_911_128_076_4, 1e-9), "{hi}");
        assert_eq!(d.cliffs_delta, Some(1.0));
        assert!(
            d.reason.contains("in every pair") && d.reason.contains("2 pairs"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn three_pairs_near_the_limit_and_noise_are_unknown() {
        // scipy 1.17.1: [100,102,98] → [95,97,94]: p = 0.004055130582239917,
        // change -0.04662085283381978, interval -0.05904848520911976 … -0.03402908230259161:
        // significant, but the interval straddles the 5% limit: unknown, not same.
        let m = metric(Better::Higher, &[100., 102., 98.], &[95., 97., 94.], true);
        let d = decide(&m, 0.05, ALPHA);
        assert_eq!(d.status, DecisionStatus::Unknown, "{}", d.reason);
        assert!(close(d.p_value.unwrap(), 0.004_055_130_582_239_917, 1e-12));
        assert!(close(d.worsening.unwrap(), 0.046_620_852_833_819_78, 1e-12));
        assert!(
            d.pairs_needed.is_some_and(|k| k > 3),
            "{:?}",
            d.pairs_needed
        );
        // At a 10% limit the same data are the same.
        assert_eq!(decide(&m, 0.10, ALPHA).status, DecisionStatus::Same);
        // scipy: [100,101] → [103,99]: p = 0.878709470409486, interval -0.2666 … +0.3766.
        let m = metric(Better::Higher, &[100., 101.], &[103., 99.], true);
        let d = decide(&m, 0.05, ALPHA);
        assert_eq!(d.status, DecisionStatus::Unknown);
        assert!(close(d.p_value.unwrap(), 0.878_709_470_409_486, 1e-12));
    }

    #[test]
    fn unpaired_repeats_use_welch_on_logs() {
        // scipy 1.17.1: ttest_ind(log b, log a, equal_var=False) with a = [100,102,98,101],
        // b = [95,97,94]: p = 0.012095331482920533, df = 4.6308251808591425,
        // exp(diff) - 1 = -0.04902122113928786, interval -0.08000545457777797 …
        // -0.016993478555501373.
        let m = metric(
            Better::Higher,
            &[100., 102., 98., 101.],
            &[95., 97., 94.],
            false,
        );
        let d = decide(&m, 0.05, ALPHA);
        assert_eq!(d.test, TestKind::WelchLogT);
        assert!(close(d.p_value.unwrap(), 0.012_095_331_482_920_533, 1e-12));
        let [lo, hi] = d.worsening_ci.unwrap();
        assert!(
            close(lo, 0.016_993_478_555_501_373, 1e-9) && close(hi, 0.080_005_454_577_777_97, 1e-9)
        );
        // 4.9% worse, significant, but under the 5% limit: unknown (not regression).
        assert_eq!(d.status, DecisionStatus::Unknown, "{}", d.reason);
        // numpy: median of all pairwise log differences → -0.04950993032592943.
        assert!(close(
            d.hodges_lehmann.unwrap(),
            0.049_509_930_325_929_43,
            1e-12
        ));
        // Every candidate value below every baseline value, higher is better: δ = 1.
        assert_eq!(d.cliffs_delta, Some(1.0));
        // Paired Hodges–Lehmann, numpy: median of Walsh averages → -0.0472211082368974.
        let hl = stats::hodges_lehmann_log(&[100., 102., 98.], &[95., 97., 94.], true).unwrap();
        assert!(close(hl.exp() - 1.0, -0.047_221_108_236_897_4, 1e-12));
    }

    #[test]
    fn identical_and_constant_values() {
        let same = decide(
            &metric(Better::Higher, &[5., 5.], &[5., 5.], true),
            0.05,
            ALPHA,
        );
        assert_eq!(same.status, DecisionStatus::Same, "{}", same.reason);
        assert_eq!(same.p_value, Some(1.0));
        assert_eq!(same.cliffs_delta, Some(0.0));
        // A deterministic count halved in every pair: no spread, no doubt.
        let half = decide(
            &metric(Better::Lower, &[10., 20.], &[20., 40.], true),
            0.05,
            ALPHA,
        );
        assert_eq!(half.status, DecisionStatus::Regression, "{}", half.reason);
        assert!(close(half.worsening.unwrap(), 1.0, 1e-12));
    }

    #[test]
    fn symmetric_limits_no_small_improvement() {
        // Issue 19: a 2.3% improvement under a 5% limit was called an improvement.
        let a = [100., 101., 99., 100.5, 99.5, 100.2];
        let b: Vec<f64> = a.iter().map(|x| x * 1.023).collect();
        let d = decide(&metric(Better::Higher, &a, &b, true), 0.05, ALPHA);
        assert_ne!(d.status, DecisionStatus::Improvement, "{}", d.reason);
        let b: Vec<f64> = a.iter().map(|x| x * 0.977).collect();
        let d = decide(&metric(Better::Higher, &a, &b, true), 0.05, ALPHA);
        assert_ne!(d.status, DecisionStatus::Regression, "{}", d.reason);
    }

    #[test]
    fn one_repeat_needs_the_cpu_evidence() {
        let m = metric(Better::Higher, &[8e9], &[0.7e9], true);
        let mut d = decide(&m, 0.05, ALPHA);
        assert_eq!(d.status, DecisionStatus::Unknown);
        assert_eq!(d.test, TestKind::None);
        let ev = |explained: f64, confidence| CpuEvidence {
            cause: "CONFIG_KASAN".into(),
            value: "y".into(),
            explained,
            confidence,
            p: 1e-300,
        };
        // Too small, not high, or the wrong way: still unknown.
        for e in [
            ev(0.05, Confidence::High),
            ev(0.40, Confidence::Medium),
            ev(-0.40, Confidence::High),
        ] {
            with_cpu_evidence(&mut d, &m, Some(&e));
            assert_eq!(d.status, DecisionStatus::Unknown);
        }
        with_cpu_evidence(&mut d, &m, Some(&ev(0.40, Confidence::High)));
        assert_eq!(d.status, DecisionStatus::Regression);
        assert_eq!(d.decided_by, DecidedBy::CpuEvidence);
        assert!(
            d.reason.contains("CPU evidence decisive") && d.reason.contains("CONFIG_KASAN"),
            "{}",
            d.reason
        );
        // Pairs that disagree are never decided by the profile.
        let m = metric(Better::Higher, &[8e9, 8e9], &[0.7e9, 8.1e9], true);
        let mut d = decide(&m, 0.05, ALPHA);
        with_cpu_evidence(&mut d, &m, Some(&ev(0.40, Confidence::High)));
        assert_eq!(d.status, DecisionStatus::Unknown);
    }

    #[test]
    fn warnings_for_drift_outliers_and_two_groups() {
        let drift = metric(
            Better::Higher,
            &[100., 104., 108., 112., 116.],
            &[100., 101., 99., 100., 102.],
            true,
        );
        let d = decide(&drift, 0.05, ALPHA);
        assert!(
            d.warnings.iter().any(|w| w.contains("baseline drifts")),
            "{:?}",
            d.warnings
        );
        let out = metric(
            Better::Higher,
            &[100., 101., 99., 100., 160.],
            &[100., 101., 99., 100., 100.5],
            true,
        );
        let d = decide(&out, 0.05, ALPHA);
        assert!(
            d.warnings
                .iter()
                .any(|w| w.contains("repeat 5 is an outlier")),
            "{:?}",
            d.warnings
        );
        let two = metric(
            Better::Higher,
            &[100., 101., 100.5, 150., 151., 150.5],
            &[100.; 6],
            true,
        );
        let d = decide(&two, 0.05, ALPHA);
        assert!(
            d.warnings.iter().any(|w| w.contains("two groups")),
            "{:?}",
            d.warnings
        );
        let calm = decide(
            &metric(
                Better::Higher,
                &[100., 101., 99., 100.5],
                &[100., 99.5, 100.2, 100.8],
                true,
            ),
            0.05,
            ALPHA,
        );
        assert!(calm.warnings.is_empty(), "{:?}", calm.warnings);
    }
}
