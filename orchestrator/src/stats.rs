//! Statistics for profile and metric deltas.
//!
//! - sample counts: two-proportion z-test (pooled), two-sided;
//! - repeats: Welch's t-test (statrs has no two-sample Welch test, so it is written on
//!   `StudentsT`), and a seeded percentile bootstrap of the relative change of means.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Two-sided p-value that `x1/n1` and `x2/n2` are the same proportion.
pub fn two_proportion_p(x1: u64, n1: u64, x2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let (x1, n1, x2, n2) = (x1 as f64, n1 as f64, x2 as f64, n2 as f64);
    let p = (x1 + x2) / (n1 + n2);
    let se = (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 {
        return if (x1 / n1 - x2 / n2).abs() < f64::EPSILON {
            1.0
        } else {
            0.0
        };
    }
    let z = (x1 / n1 - x2 / n2).abs() / se;
    2.0 * normal_sf(z)
}

fn normal_sf(z: f64) -> f64 {
    match Normal::new(0.0, 1.0) {
        Ok(n) => n.sf(z),
        Err(_) => 1.0,
    }
}

pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        f64::NAN
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Sample variance (n - 1).
pub fn variance(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = mean(xs);
    xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64
}

/// Welch's unequal-variance t-test: (t, degrees of freedom, two-sided p).
/// `None` with fewer than two values on a side.
pub fn welch_t(a: &[f64], b: &[f64]) -> Option<(f64, f64, f64)> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (va, vb) = (variance(a) / a.len() as f64, variance(b) / b.len() as f64);
    let diff = mean(a) - mean(b);
    let se2 = va + vb;
    if se2 == 0.0 {
        let p = if diff.abs() < f64::EPSILON { 1.0 } else { 0.0 };
        return Some((if p == 1.0 { 0.0 } else { f64::INFINITY }, f64::NAN, p));
    }
    let t = diff / se2.sqrt();
    let df = se2.powi(2) / (va.powi(2) / (a.len() - 1) as f64 + vb.powi(2) / (b.len() - 1) as f64);
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    let p = 2.0 * dist.sf(t.abs());
    Some((t, df, p.min(1.0)))
}

/// A small deterministic generator (SplitMix64): bootstraps must give the same
/// interval on every run of the same data.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// 95% percentile-bootstrap interval of `mean(b) / mean(a) - 1`.
pub fn bootstrap_relative_change(a: &[f64], b: &[f64], rounds: usize) -> Option<[f64; 2]> {
    bootstrap_means(a, b, rounds, |ma, mb| (ma != 0.0).then(|| mb / ma - 1.0))
}

/// 95% percentile-bootstrap interval of `mean(b) - mean(a)`.
pub fn bootstrap_difference(a: &[f64], b: &[f64], rounds: usize) -> Option<[f64; 2]> {
    bootstrap_means(a, b, rounds, |ma, mb| Some(mb - ma))
}

/// Percentile bootstrap of a statistic of the two means, each side resampled with
/// replacement. Seeded: the same input gives the same interval.
fn bootstrap_means(
    a: &[f64],
    b: &[f64],
    rounds: usize,
    stat: impl Fn(f64, f64) -> Option<f64>,
) -> Option<[f64; 2]> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let mut rng = SplitMix::new(0x6b64_656c_7461);
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let ma = (0..a.len()).map(|_| a[rng.below(a.len())]).sum::<f64>() / a.len() as f64;
        let mb = (0..b.len()).map(|_| b[rng.below(b.len())]).sum::<f64>() / b.len() as f64;
        out.extend(stat(ma, mb));
    }
    if out.is_empty() {
        return None;
    }
    out.sort_by(f64::total_cmp);
    let q = |p: f64| out[((out.len() - 1) as f64 * p).round() as usize];
    Some([q(0.025), q(0.975)])
}

/// 95% interval of `x2/n2 - x1/n1` from counts (normal approximation): the
/// sampling noise within one capture, when there are too few repeats to resample.
pub fn proportion_difference_ci(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<[f64; 2]> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let se = (p1 * (1.0 - p1) / n1 as f64 + p2 * (1.0 - p2) / n2 as f64).sqrt();
    let d = p2 - p1;
    Some([
        d - 1.959_963_984_540_054 * se,
        d + 1.959_963_984_540_054 * se,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welch_matches_scipy() {
        // scipy.stats.ttest_ind([1,2,3,4,5], [2,4,6,8,10], equal_var=False)
        // → statistic=-1.8973665961010275, pvalue=0.10753119493062728, df=5.882352941176471
        // (scipy 1.x, computed once on this machine)
        let (t, df, p) = welch_t(&[1., 2., 3., 4., 5.], &[2., 4., 6., 8., 10.]).unwrap();
        assert!((t + 1.897_366_596_101_027_5).abs() < 1e-9, "{t}");
        assert!((df - 5.882_352_941_176_47).abs() < 1e-9, "{df}");
        assert!((p - 0.107_531_194_930_627_28).abs() < 1e-9, "{p}");
    }

    #[test]
    fn two_proportion_known_value() {
        // 10.5% of 10000 vs 0.59% of 10000: overwhelming.
        assert!(two_proportion_p(1050, 10000, 59, 10000) < 1e-100);
        // 50/1000 vs 52/1000: noise. Pooled z-test with scipy.stats.norm.sf → 0.8389153997701586
        let p = two_proportion_p(50, 1000, 52, 1000);
        assert!((p - 0.838_915_399_770_158_6).abs() < 1e-9, "{p}");
    }

    #[test]
    fn proportion_interval_known_value() {
        // 120/1000 vs 80/1000: d = -0.04, se = sqrt(.12*.88/1000 + .08*.92/1000) = 0.0133866…
        let [lo, hi] = proportion_difference_ci(120, 1000, 80, 1000).unwrap();
        assert!(
            (lo - (-0.04 - 1.959964 * 0.013_386_560)).abs() < 1e-6,
            "{lo}"
        );
        assert!(
            (hi - (-0.04 + 1.959964 * 0.013_386_560)).abs() < 1e-6,
            "{hi}"
        );
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_the_change() {
        let a = [100.0, 102.0, 98.0, 101.0];
        let b = [70.0, 71.0, 69.0, 70.5];
        let ci = bootstrap_relative_change(&a, &b, 2000).unwrap();
        assert_eq!(Some(ci), bootstrap_relative_change(&a, &b, 2000));
        assert!(ci[0] < -0.29 && ci[1] > -0.31 && ci[1] < -0.28, "{ci:?}");
    }
}
