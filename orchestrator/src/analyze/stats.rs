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

/// Relative standard deviation (sample sd over the mean's magnitude, 0.02 = 2%):
/// `None` with fewer than two values, or a mean of 0 or not finite.
pub fn rsd(xs: &[f64]) -> Option<f64> {
    let m = mean(xs);
    (xs.len() >= 2 && m.is_finite() && m != 0.0).then(|| variance(xs).sqrt() / m.abs())
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

/// Paired comparison of repeats taken in pairs (baseline i next to candidate i in
/// time, A B B A …): a one-sample t-test on the log ratios `ln(b_i / a_i)`, so drift
/// that moves both sides of a pair cancels out. Returns the relative change
/// `exp(mean) - 1`, the two-sided p, and 95% intervals of the relative change from
/// the t distribution and from a bootstrap over pairs. None unless both sides have
/// the same number (≥ 2) of positive values.
pub fn paired_relative_change(a: &[f64], b: &[f64]) -> Option<Paired> {
    if a.len() != b.len() || a.len() < 2 || a.iter().chain(b).any(|x| x.is_nan() || *x <= 0.0) {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| (y / x).ln()).collect();
    let n = d.len() as f64;
    let (m, sd) = (mean(&d), variance(&d).sqrt());
    let dist = StudentsT::new(0.0, 1.0, n - 1.0).ok()?;
    let (p, half) = if sd == 0.0 {
        (if m == 0.0 { 1.0 } else { 0.0 }, 0.0)
    } else {
        let t = m / (sd / n.sqrt());
        (
            2.0 * dist.sf(t.abs()),
            dist.inverse_cdf(0.975) * sd / n.sqrt(),
        )
    };
    let mut rng = SplitMix::new(0x7061_6972);
    let mut boots: Vec<f64> = (0..4000)
        .map(|_| (0..d.len()).map(|_| d[rng.below(d.len())]).sum::<f64>() / n)
        .collect();
    boots.sort_by(f64::total_cmp);
    let q = |p: f64| boots[((boots.len() - 1) as f64 * p).round() as usize].exp() - 1.0;
    Some(Paired {
        change: m.exp() - 1.0,
        p: p.min(1.0),
        ci_t: [(m - half).exp() - 1.0, (m + half).exp() - 1.0],
        ci_bootstrap: [q(0.025), q(0.975)],
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Paired {
    pub change: f64,
    pub p: f64,
    pub ci_t: [f64; 2],
    pub ci_bootstrap: [f64; 2],
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

/// Mann–Whitney U test, two-sided: `(U of a, p)`. Exact distribution when both
/// samples are small (≤ 20) and have no ties, as scipy's `method="exact"`; otherwise
/// the normal approximation with tie correction and continuity correction
/// (scipy's `method="asymptotic"`). Returns None when a side is empty.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<(f64, f64)> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    // Ranks of the pooled sample, ties averaged.
    let mut all: Vec<(f64, usize)> = a
        .iter()
        .map(|&x| (x, 0))
        .chain(b.iter().map(|&x| (x, 1)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut ranks = vec![0.0; n];
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for rank in ranks.iter_mut().take(j + 1).skip(i) {
            *rank = r;
        }
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let r1: f64 = all
        .iter()
        .zip(&ranks)
        .filter(|(x, _)| x.1 == 0)
        .map(|(_, r)| r)
        .sum();
    let u1 = r1 - (n1 * (n1 + 1)) as f64 / 2.0;
    let (f1, f2) = (n1 as f64, n2 as f64);
    let u = u1.max(f1 * f2 - u1);
    if n1 <= 20 && n2 <= 20 && tie_term == 0.0 {
        // counts[k] = number of arrangements with U = k (Mann & Whitney's recursion).
        let max_u = n1 * n2;
        let mut table = vec![vec![vec![0f64; max_u + 1]; n2 + 1]; n1 + 1];
        for (i, row) in table.iter_mut().enumerate() {
            for (j, cell) in row.iter_mut().enumerate() {
                if i == 0 || j == 0 {
                    cell[0] = 1.0;
                }
            }
        }
        for i in 1..=n1 {
            for j in 1..=n2 {
                for k in 0..=i * j {
                    let with_i = if k >= j { table[i - 1][j][k - j] } else { 0.0 };
                    table[i][j][k] = with_i + table[i][j - 1][k];
                }
            }
        }
        let counts = &table[n1][n2];
        let total: f64 = counts.iter().sum();
        let k = u.round() as usize;
        let upper: f64 = counts[k..].iter().sum::<f64>() / total;
        return Some((u1, (2.0 * upper).min(1.0)));
    }
    let mu = f1 * f2 / 2.0;
    let sigma = (f1 * f2 / 12.0 * ((n + 1) as f64 - tie_term / (n * (n - 1)) as f64)).sqrt();
    if sigma == 0.0 {
        return Some((u1, 1.0));
    }
    let z = (u - mu - 0.5) / sigma;
    let normal = statrs::distribution::Normal::new(0.0, 1.0).ok()?;
    use statrs::distribution::ContinuousCDF;
    Some((u1, (2.0 * normal.sf(z)).min(1.0)))
}

/// A t-test and interval on one sample of log ratios (paired repeats) or on two
/// samples of logs (unpaired, Welch): the estimate, the two-sided p and the
/// `1 - alpha` interval, all on the log scale and from the same t distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogTest {
    /// Mean log ratio candidate / baseline.
    pub mean: f64,
    pub p: f64,
    pub ci: [f64; 2],
    /// Standard error of `mean` and degrees of freedom.
    pub se: f64,
    pub df: f64,
}

fn t_test(mean: f64, se: f64, df: f64, alpha: f64) -> Option<LogTest> {
    if !(df.is_finite() && df > 0.0 && mean.is_finite() && se.is_finite()) {
        return None;
    }
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    if se == 0.0 {
        // Every pair says exactly the same (a deterministic count, a capped value):
        // the t statistic's limit — no doubt at all, an interval of one point.
        return Some(LogTest {
            mean,
            p: if mean == 0.0 { 1.0 } else { 0.0 },
            ci: [mean, mean],
            se,
            df,
        });
    }
    let t = mean / se;
    let half = dist.inverse_cdf(1.0 - alpha / 2.0) * se;
    Some(LogTest {
        mean,
        p: (2.0 * dist.sf(t.abs())).min(1.0),
        ci: [mean - half, mean + half],
        se,
        df,
    })
}

/// Paired: one-sample t on `ln(b_i / a_i)`. None unless ≥ 2 pairs of positive values.
pub fn paired_log_t(a: &[f64], b: &[f64], alpha: f64) -> Option<LogTest> {
    let d = log_ratios(a, b)?;
    if d.len() < 2 {
        return None;
    }
    let n = d.len() as f64;
    t_test(mean(&d), (variance(&d) / n).sqrt(), n - 1.0, alpha)
}

/// The log ratios of pairs, None if a value is not positive or the lengths differ.
pub fn log_ratios(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    if a.len() != b.len() || a.iter().chain(b).any(|x| !(x.is_finite() && *x > 0.0)) {
        return None;
    }
    Some(a.iter().zip(b).map(|(x, y)| (y / x).ln()).collect())
}

/// Unpaired: Welch's t on the logs of each side (≥ 2 positive values a side).
pub fn welch_log_t(a: &[f64], b: &[f64], alpha: f64) -> Option<LogTest> {
    if a.len() < 2 || b.len() < 2 || a.iter().chain(b).any(|x| !(x.is_finite() && *x > 0.0)) {
        return None;
    }
    let la: Vec<f64> = a.iter().map(|x| x.ln()).collect();
    let lb: Vec<f64> = b.iter().map(|x| x.ln()).collect();
    let (va, vb) = (
        variance(&la) / la.len() as f64,
        variance(&lb) / lb.len() as f64,
    );
    let se2 = va + vb;
    let df =
        se2.powi(2) / (va.powi(2) / (la.len() - 1) as f64 + vb.powi(2) / (lb.len() - 1) as f64);
    t_test(mean(&lb) - mean(&la), se2.sqrt(), df, alpha)
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Hodges–Lehmann shift of `b` against `a` on the log scale: paired, the median of
/// the Walsh averages of the log ratios; unpaired, the median of all pairwise
/// differences of logs. Robust to one odd repeat.
pub fn hodges_lehmann_log(a: &[f64], b: &[f64], paired: bool) -> Option<f64> {
    if a.iter().chain(b).any(|x| !(x.is_finite() && *x > 0.0)) {
        return None;
    }
    let mut w = Vec::new();
    if paired {
        let d = log_ratios(a, b)?;
        for i in 0..d.len() {
            for j in i..d.len() {
                w.push((d[i] + d[j]) / 2.0);
            }
        }
    } else {
        for x in a {
            for y in b {
                w.push((y / x).ln());
            }
        }
    }
    median(&mut w)
}

/// Cliff's δ of `b` against `a`: P(b > a) − P(b < a) over all pairs of values, in
/// [-1, 1]; ±1 when the ranges separate.
pub fn cliffs_delta(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut s = 0i64;
    for x in a {
        for y in b {
            s += match y.total_cmp(x) {
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
            };
        }
    }
    Some(s as f64 / (a.len() * b.len()) as f64)
}

/// The 1 − α/2 quantile of the standard normal.
pub fn normal_quantile(alpha: f64) -> f64 {
    Normal::new(0.0, 1.0)
        .map(|n| n.inverse_cdf(1.0 - alpha / 2.0))
        .unwrap_or(1.96)
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
    fn paired_matches_scipy() {
        // scipy 1.17.1: d = log(b/a); ttest_1samp(d, 0) → t=-15.232822741821531,
        // p=0.00010830636518841532; confidence_interval(0.95) → exp(low)-1 =
        // -0.06001363309840879, exp(high)-1 = -0.04190378574954545; exp(mean)-1 =
        // -0.05100190749640943
        let a = [100., 102., 98., 101., 99.];
        let b = [95., 97., 94., 95.5, 93.];
        let r = paired_relative_change(&a, &b).unwrap();
        assert!(
            (r.p - 0.000_108_306_365_188_415_32).abs() < 1e-12,
            "{}",
            r.p
        );
        assert!((r.change + 0.051_001_907_496_409_43).abs() < 1e-12);
        assert!(
            (r.ci_t[0] + 0.060_013_633_098_408_79).abs() < 1e-9,
            "{:?}",
            r.ci_t
        );
        assert!(
            (r.ci_t[1] + 0.041_903_785_749_545_45).abs() < 1e-9,
            "{:?}",
            r.ci_t
        );
        assert!(r.ci_bootstrap[0] < r.change && r.change < r.ci_bootstrap[1]);
        assert!(paired_relative_change(&a, &b[..4]).is_none());
    }

    #[test]
    fn mann_whitney_matches_scipy() {
        // scipy 1.17.1, scipy.stats.mannwhitneyu(a, b, alternative="two-sided", method=…),
        // computed once on this machine:
        // exact: [1..5] vs [6..10] → U=0, p=0.007936507936507936
        let (u, p) = mann_whitney(&[1., 2., 3., 4., 5.], &[6., 7., 8., 9., 10.]).unwrap();
        assert_eq!(u, 0.0);
        assert!((p - 0.007_936_507_936_507_936).abs() < 1e-12, "{p}");
        // exact, three a side: the smallest possible p is 0.1
        let (_, p) = mann_whitney(&[1.1, 2.5, 3.2], &[4.0, 5.1, 6.3]).unwrap();
        assert!((p - 0.1).abs() < 1e-12, "{p}");
        // exact: U=23, p=0.48484848484848486
        let a = [10.5, 11.2, 9.8, 10.9, 11.5, 10.1];
        let b = [9.9, 10.4, 11.1, 10.0, 10.8, 10.2];
        let (u, p) = mann_whitney(&a, &b).unwrap();
        assert_eq!(u, 23.0);
        assert!((p - 0.484_848_484_848_484_86).abs() < 1e-12, "{p}");
        // ties → asymptotic: U=17, p=0.12415307686326289
        let a = [3., 1., 4., 1., 5., 9., 2., 6.];
        let b = [5., 3., 5., 8., 9., 7., 9., 3.];
        let (u, p) = mann_whitney(&a, &b).unwrap();
        assert_eq!(u, 17.0);
        assert!((p - 0.124_153_076_863_262_89).abs() < 1e-9, "{p}");
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
