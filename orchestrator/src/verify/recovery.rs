//! How much of a metric's change reverting one item recovers, with its interval.
//!
//! The original run measured the change `L0 = mean log(candidate / baseline)`; the
//! verify run measures `L1 = mean log(as is / reverted)` on the candidate alone.
//! The share recovered is `R = L1 / L0`: 1 when the item explains the whole change,
//! 0 when reverting it does nothing. Its interval comes from the delta method on
//! both runs' standard errors, `se(R) = √(se1² + R²·se0²) / |L0|`, with the smaller
//! of the two runs' degrees of freedom (conservative); it is only given when the
//! original change itself is significant — a share of nothing has no meaning.
//!
//! An original run with one repeat per side (a quick look, or CI's short run) has
//! no spread of its own. Its noise is then borrowed from the verify run: the same
//! host, workload and capture, so one original pair is taken to be as noisy as one
//! pair of the verify run (`se0 = se1·√(n1/n0)`, the verify run's degrees of
//! freedom); `original_noise` says so, and the headline too.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::analyze::stats::{self, LogTest};
use crate::model::MetricDelta;

/// One metric's recovery.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Recovery {
    pub metric: String,
    /// Relative change of the original run (candidate vs baseline).
    pub original_change: f64,
    /// Relative change the item makes now (as is vs reverted).
    pub item_change: f64,
    /// Share of the original change the revert recovers, and its interval; None
    /// when the original change is not significant.
    pub share: Option<f64>,
    pub share_ci: Option<[f64; 2]>,
    /// The interval's level (`1 − alpha`).
    pub level: f64,
    /// Where the original change's standard error came from.
    #[serde(default)]
    pub original_noise: Noise,
}

/// The source of the original run's standard error.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Noise {
    /// Its own repeats.
    #[default]
    Measured,
    /// One repeat per side: the verify run's spread per pair (see the module).
    Borrowed,
}

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

/// The recovery of `original`'s change by the revert `verify` measured (its
/// baseline is the reverted state, its candidate the item as it was).
/// The original's change with the verify run's noise per pair, for an original
/// with too few repeats for a test of its own.
fn borrowed(
    original: &MetricDelta,
    verify: &MetricDelta,
    t1: &LogTest,
    alpha: f64,
) -> Option<LogTest> {
    let logs = |v: &[f64]| -> Option<f64> {
        if v.is_empty() || v.iter().any(|x| !(*x > 0.0 && x.is_finite())) {
            return None;
        }
        Some(v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64)
    };
    let mean = logs(&original.candidate_values)? - logs(&original.baseline_values)?;
    let pairs = |m: &MetricDelta| m.baseline_values.len().min(m.candidate_values.len()) as f64;
    let (n0, n1) = (pairs(original), pairs(verify));
    let se = t1.se * (n1 / n0).sqrt();
    let dist = StudentsT::new(0.0, 1.0, t1.df).ok()?;
    let p = 2.0 * (1.0 - dist.cdf((mean / se).abs()));
    let q = dist.inverse_cdf(1.0 - alpha / 2.0);
    (se > 0.0 && p.is_finite()).then_some(LogTest {
        mean,
        p,
        ci: [mean - q * se, mean + q * se],
        se,
        df: t1.df,
    })
}

pub fn recovery(original: &MetricDelta, verify: &MetricDelta, alpha: f64) -> Option<Recovery> {
    let t1 = log_test(verify, alpha)?;
    let (t0, noise) = match log_test(original, alpha) {
        Some(t) => (t, Noise::Measured),
        None => (borrowed(original, verify, &t1, alpha)?, Noise::Borrowed),
    };
    let mut r = Recovery {
        metric: original.name.clone(),
        original_change: t0.mean.exp() - 1.0,
        item_change: t1.mean.exp() - 1.0,
        share: None,
        share_ci: None,
        level: 1.0 - alpha,
        original_noise: noise,
    };
    // A NaN p (no variance) is not significant either.
    let significant = t0.p < alpha;
    if !significant || t0.mean == 0.0 {
        return Some(r);
    }
    let share = t1.mean / t0.mean;
    let se = (t1.se.powi(2) + share.powi(2) * t0.se.powi(2)).sqrt() / t0.mean.abs();
    let df = t0.df.min(t1.df);
    let q = StudentsT::new(0.0, 1.0, df)
        .ok()
        .map(|d| d.inverse_cdf(1.0 - alpha / 2.0))
        .filter(|q| q.is_finite())?;
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
