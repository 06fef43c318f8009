//! How much of a metric's change reverting one item recovers, with its interval.
//!
//! The original run measured the change `L0 = mean log(candidate / baseline)`; the
//! verify run measures `L1 = mean log(as is / reverted)` on the candidate alone.
//! The share recovered is `R = L1 / L0`: 1 when the item explains the whole change,
//! 0 when reverting it does nothing. Its interval comes from the delta method,
//! `se(R) = √(se1² + R²·se0²) / |L0|`; it is only given when the original change
//! itself is significant — a share of nothing has no meaning.
//!
//! The noise per pair is pooled over the two runs (same candidate, same workload,
//! same provider: their log ratios are taken to scatter alike), with the sum of
//! their degrees of freedom. With the two or three pairs people run this is what
//! makes a share possible at all: with each run's own spread and the smaller of the
//! degrees of freedom, 2 + 2 pairs have t(1) = 12.7 and a 10× drop measured twice
//! often gets no share. Simulated (`bench/recovery-coverage.py`: normal log noise,
//! 2.3 log units of change, shares 1 and 0.5, 2 + 2 and 3 + 3 pairs): the pooled
//! 95% interval covers the true share 95% of the time when the runs are equally
//! noisy (the smaller-df interval 98–99%, 1.5–3× as wide, and with 2 + 2 pairs at
//! 0.3 noise no share at all 4 times in 10), 88–96% when one run's noise is 3× the
//! other's.
//!
//! An original run with one repeat per side (a quick look, or CI's short run) has
//! no spread of its own: the noise is then the verify run's alone
//! (`original_noise: borrowed`, said in the headline); coverage 89–96% with equal
//! noise, 76–90% when the original was 3× noisier than the verify run.

use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::analyze::stats::{self, LogTest};
use crate::model::MetricDelta;
pub use crate::model::{Noise, Recovery};

/// The log test of a metric's values: paired when they pair up, else Welch's.
fn log_test(m: &MetricDelta, alpha: f64) -> Option<LogTest> {
    let (a, b) = (&m.baseline_values, &m.candidate_values);
    if m.paired {
        if let Some(t) = stats::paired_log_t(a, b, alpha) {
            return Some(t);
        }
    }
    stats::welch_log_t(a, b, alpha)
}

/// Pairs of a metric's values (or the smaller side).
fn pairs(m: &MetricDelta) -> f64 {
    m.baseline_values.len().min(m.candidate_values.len()) as f64
}

/// The mean log ratio of an original too short for a test of its own.
fn mean_log_ratio(m: &MetricDelta) -> Option<f64> {
    let logs = |v: &[f64]| -> Option<f64> {
        if v.is_empty() || v.iter().any(|x| !(*x > 0.0 && x.is_finite())) {
            return None;
        }
        Some(v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64)
    };
    Some(logs(&m.candidate_values)? - logs(&m.baseline_values)?)
}

/// The two changes with their standard errors from the pooled noise per pair, and
/// the pooled degrees of freedom.
struct Pooled {
    l0: f64,
    se0: f64,
    l1: f64,
    se1: f64,
    df: f64,
    noise: Noise,
}

fn pooled(original: &MetricDelta, verify: &MetricDelta, alpha: f64) -> Option<Pooled> {
    let t1 = log_test(verify, alpha)?;
    let (n0, n1) = (pairs(original), pairs(verify));
    // The variance of one pair's log ratio, from a test's standard error.
    let per_pair = |t: &LogTest, n: f64| t.se.powi(2) * n;
    let (l0, var, df, noise) = match log_test(original, alpha) {
        Some(t0) => {
            let df = t0.df + t1.df;
            let var = (t0.df * per_pair(&t0, n0) + t1.df * per_pair(&t1, n1)) / df;
            (t0.mean, var, df, Noise::Measured)
        }
        None => (
            mean_log_ratio(original)?,
            per_pair(&t1, n1),
            t1.df,
            Noise::Borrowed,
        ),
    };
    (var.is_finite() && df > 0.0 && n0 > 0.0).then(|| Pooled {
        l0,
        se0: (var / n0).sqrt(),
        l1: t1.mean,
        se1: (var / n1).sqrt(),
        df,
        noise,
    })
}

/// The recovery of `original`'s change by the revert `verify` measured (its
/// baseline is the reverted state, its candidate the item as it was).
pub fn recovery(original: &MetricDelta, verify: &MetricDelta, alpha: f64) -> Option<Recovery> {
    let p = pooled(original, verify, alpha)?;
    let q = StudentsT::new(0.0, 1.0, p.df)
        .ok()
        .map(|d| d.inverse_cdf(1.0 - alpha / 2.0))
        .filter(|q| q.is_finite())?;
    let mut r = Recovery {
        metric: original.name.clone(),
        original_change: p.l0.exp() - 1.0,
        item_change: p.l1.exp() - 1.0,
        share: None,
        share_ci: None,
        level: 1.0 - alpha,
        original_noise: p.noise,
    };
    // Not significant (also: no variance at all, se0 = 0 with l0 = 0): no share.
    let significant = p.se0 > 0.0 && (p.l0 / p.se0).abs() > q;
    if !significant {
        return Some(r);
    }
    let share = p.l1 / p.l0;
    let se = (p.se1.powi(2) + share.powi(2) * p.se0.powi(2)).sqrt() / p.l0.abs();
    r.share = Some(share);
    r.share_ci = Some([share - q * se, share + q * se]);
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(a: &[f64], b: &[f64]) -> MetricDelta {
        MetricDelta {
            name: "throughput".into(),
            baseline_values: a.to_vec(),
            candidate_values: b.to_vec(),
            paired: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_full_revert_recovers_about_all() {
        // Original: 10 → 4 (−60%); the item as is vs reverted: 4 → 10 the other way.
        let orig = m(&[10.0, 10.2, 9.9], &[4.0, 4.1, 3.9]);
        let ver = m(&[10.1, 9.8, 10.0], &[4.0, 3.9, 4.1]);
        let r = recovery(&orig, &ver, 0.05).unwrap();
        let s = r.share.unwrap();
        let [lo, hi] = r.share_ci.unwrap();
        assert!((s - 1.0).abs() < 0.03, "{r:?}");
        assert!(lo < s && s < hi && lo > 0.9 && hi < 1.1, "{r:?}");
        assert!((r.original_change + 0.6).abs() < 0.01);
    }

    #[test]
    fn a_revert_that_does_nothing_recovers_nothing() {
        let orig = m(&[10.0, 10.2, 9.9], &[4.0, 4.1, 3.9]);
        let ver = m(&[4.0, 4.1, 3.9], &[4.05, 4.0, 3.95]);
        let r = recovery(&orig, &ver, 0.05).unwrap();
        let [lo, hi] = r.share_ci.unwrap();
        assert!(lo < 0.0 + 0.05 && hi > -0.05 && hi < 0.1, "{r:?}");
    }

    #[test]
    fn one_repeat_per_side_borrows_the_verify_runs_noise() {
        let orig = m(&[10.0], &[4.0]);
        let ver = m(&[10.1, 9.8, 10.0], &[4.0, 3.9, 4.1]);
        let r = recovery(&orig, &ver, 0.05).unwrap();
        assert_eq!(r.original_noise, Noise::Borrowed);
        let [lo, hi] = r.share_ci.unwrap();
        assert!(lo < 1.0 && hi > 1.0, "{r:?}");
        // A single pair that is no larger than the verify run's noise is no change.
        let ver = m(&[10.0, 4.0, 10.0], &[4.0, 10.0, 4.0]);
        let r = recovery(&m(&[10.0], &[9.0]), &ver, 0.05).unwrap();
        assert_eq!(
            (r.share, r.original_noise),
            (None, Noise::Borrowed),
            "{r:?}"
        );
    }

    #[test]
    fn no_share_of_an_insignificant_change() {
        let orig = m(&[10.0, 8.0, 12.0], &[9.0, 11.0, 10.0]);
        let ver = m(&[4.0, 4.1, 3.9], &[4.05, 4.0, 3.95]);
        let r = recovery(&orig, &ver, 0.05).unwrap();
        assert_eq!((r.share, r.share_ci), (None, None));
    }
}
