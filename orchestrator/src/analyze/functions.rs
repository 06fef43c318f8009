//! Per-function counts of a profile and the function deltas: self and inclusive
//! shares of busy samples on each side, the two-proportion test (Bonferroni over all
//! functions), an interval, and the functions seen on one side only.

use std::collections::{BTreeMap, BTreeSet};

use super::fold::{FrameKind, Profile};
use super::stats;
use crate::model::{CiMethod, FunctionDelta, Role};

/// Per-function busy-sample counts and weights of one side.
///
/// Shares are of weight (period, or samples when the profile has no periods: see
/// [`crate::model::Weighting`]); the sample counts stay beside them for what needs
/// samples (a function "seen" in at least N samples).
#[derive(Default, Debug)]
pub struct SideCounts {
    /// Busy samples.
    pub busy: u64,
    /// Busy weight.
    pub busy_w: u64,
    /// Effective sample size of the busy samples (Kish), for the tests.
    pub busy_ess: f64,
    pub functions: BTreeMap<String, FnCounts>,
    /// Busy weight per repeat.
    pub per_repeat_busy: Vec<u64>,
}

#[derive(Default, Debug, Clone)]
pub struct FnCounts {
    /// Samples with the function as leaf / anywhere in the stack.
    pub self_: u64,
    pub inclusive: u64,
    /// The same, weighted.
    pub self_w: u64,
    pub inclusive_w: u64,
    pub kernel: bool,
    /// Inclusive weight per repeat.
    pub per_repeat: Vec<u64>,
}

impl SideCounts {
    /// A weight of this side as a number of samples for the count-based tests: its
    /// share of the busy weight times the effective sample size. With equal weights
    /// this is the sample count itself.
    ///
    /// Why not the raw sample counts: with `cycles` in frequency mode the periods
    /// vary by orders of magnitude, so a function's share of samples and of period
    /// differ (10% vs 0.01%): a test on counts would test another quantity than the
    /// shown share. Why not the raw weights: periods are not counts, a z-test on them
    /// would be absurdly confident. Kish's effective sample size charges the
    /// unequal weights' loss of information.
    pub fn as_samples(&self, weight: u64) -> u64 {
        if self.busy_w == 0 {
            return 0;
        }
        (weight as f64 / self.busy_w as f64 * self.busy_ess).round() as u64
    }

    /// The effective number of busy samples, as a count for the tests.
    pub fn samples_total(&self) -> u64 {
        self.busy_ess.round() as u64
    }
}

/// The name of a frame perf could resolve neither to a symbol nor to an object.
const UNKNOWN: &str = "[unknown]";

pub fn side_counts(p: &Profile) -> SideCounts {
    let mut sc = SideCounts {
        per_repeat_busy: p.busy_weight_per_repeat(),
        busy_ess: p.busy_effective_samples(),
        ..Default::default()
    };
    let nrep = sc.per_repeat_busy.len();
    let mut by_id: Vec<FnCounts> = vec![FnCounts::default(); p.names.len()];
    let mut seen: Vec<u32> = Vec::with_capacity(64);
    for s in p.stacks.iter().filter(|s| !s.idle) {
        let w = p.weight(s);
        sc.busy += s.count;
        sc.busy_w = sc.busy_w.saturating_add(w);
        // The last frame is the comm: not a function.
        let frames = &s.frames[..s.frames.len().saturating_sub(1)];
        if let Some(&leaf) = frames.first() {
            by_id[leaf as usize].self_ += s.count;
            by_id[leaf as usize].self_w += w;
        }
        seen.clear();
        for &f in frames {
            if !seen.contains(&f) {
                seen.push(f);
                let fc = &mut by_id[f as usize];
                fc.inclusive += s.count;
                fc.inclusive_w += w;
                if fc.per_repeat.len() < nrep {
                    fc.per_repeat.resize(nrep, 0);
                }
                if let Some(slot) = fc.per_repeat.get_mut(s.repeat.saturating_sub(1) as usize) {
                    *slot += w;
                }
            }
        }
    }
    for (id, mut fc) in by_id.into_iter().enumerate() {
        // `[unknown]` is every frame perf found no symbol and no object for, in
        // any process and in the kernel: one "function" of it compares nothing.
        // It stays in the stacks (flame graphs draw it) and in the busy total.
        if fc.inclusive == 0 || p.names[id] == UNKNOWN {
            continue;
        }
        fc.kernel = p.kinds[id] == FrameKind::Kernel;
        fc.per_repeat.resize(nrep, 0);
        let e = sc.functions.entry(p.names[id].clone()).or_default();
        // Two ids can share a name only across kinds; add them up.
        e.self_ += fc.self_;
        e.inclusive += fc.inclusive;
        e.self_w += fc.self_w;
        e.inclusive_w += fc.inclusive_w;
        e.kernel |= fc.kernel;
        if e.per_repeat.is_empty() {
            e.per_repeat = fc.per_repeat;
        } else {
            for (a, b) in e.per_repeat.iter_mut().zip(fc.per_repeat) {
                *a += b;
            }
        }
    }
    sc
}

pub fn function_deltas(b: &SideCounts, c: &SideCounts, max: usize) -> (Vec<FunctionDelta>, f64) {
    let names: BTreeSet<&String> = b.functions.keys().chain(c.functions.keys()).collect();
    let share = |x: u64, n: u64| if n == 0 { 0.0 } else { x as f64 / n as f64 };
    let n_tests = names.len().max(1) as f64;
    let mut shift = 0.0;
    let mut out = Vec::new();
    for f in names {
        let fb = b.functions.get(f).cloned().unwrap_or_default();
        let fc = c.functions.get(f).cloned().unwrap_or_default();
        let (ib, ic) = (
            share(fb.inclusive_w, b.busy_w),
            share(fc.inclusive_w, c.busy_w),
        );
        let (sb, sc) = (share(fb.self_w, b.busy_w), share(fc.self_w, c.busy_w));
        shift += (sc - sb).abs() / 2.0;
        // The test sees weights as effective samples: see `SideCounts::as_samples`.
        let (xb, nb) = (b.as_samples(fb.inclusive_w), b.samples_total());
        let (xc, nc) = (c.as_samples(fc.inclusive_w), c.samples_total());
        let p = stats::two_proportion_p(xc, nc, xb, nb);
        let delta = ic - ib;
        // Bonferroni over all functions compared, and at least 0.1 point of busy time.
        let significant = p < 0.05 / n_tests && delta.abs() >= 0.001;
        let only_on = match (fb.inclusive, fc.inclusive) {
            (0, x) if x > 0 => Some(Role::Candidate),
            (x, 0) if x > 0 => Some(Role::Baseline),
            _ => None,
        };
        let per = |fc: &FnCounts, side: &SideCounts| -> Vec<f64> {
            side.per_repeat_busy
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| *fc.per_repeat.get(i).unwrap_or(&0) as f64 / *n as f64)
                .collect()
        };
        let (rb, rc) = (per(&fb, b), per(&fc, c));
        let repeat_p = stats::welch_t(&rb, &rc).map(|t| t.2);
        let repeat_rsd = match (stats::rsd(&rb), stats::rsd(&rc)) {
            (Some(x), Some(y)) => Some([x, y]),
            _ => None,
        };
        let (delta_ci, method) = if rb.len() >= 3 && rc.len() >= 3 {
            (
                stats::bootstrap_difference(&rb, &rc, 1000),
                CiMethod::RepeatsBootstrap,
            )
        } else {
            (
                stats::proportion_difference_ci(xb, nb, xc, nc),
                CiMethod::Counts,
            )
        };
        out.push(FunctionDelta {
            symbol: f.clone(),
            kernel: fb.kernel || fc.kernel,
            baseline_share: ib,
            candidate_share: ic,
            baseline_self: sb,
            candidate_self: sc,
            delta,
            p_value: p,
            significant,
            only_on,
            repeat_p_value: repeat_p,
            delta_ci,
            delta_ci_method: delta_ci.map(|_| method),
            repeat_rsd,
        });
    }
    // Keep what matters for a reader: the biggest changes, then the hottest (on a
    // self-vs-self pair every delta is 0 and the cut must not fall by name), then
    // the name for a stable order.
    let hottest = |f: &FunctionDelta| f.baseline_share.max(f.candidate_share);
    out.sort_by(|a, b| {
        b.delta
            .abs()
            .total_cmp(&a.delta.abs())
            .then_with(|| hottest(b).total_cmp(&hottest(a)))
            .then_with(|| a.symbol.cmp(&b.symbol))
    });
    out.truncate(max);
    (out, shift)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A side whose functions have `c` samples each, self and inclusive, in one repeat.
    pub(crate) fn side(fns: &[(&str, u64)], busy: u64) -> SideCounts {
        SideCounts {
            busy,
            busy_w: busy,
            busy_ess: busy as f64,
            per_repeat_busy: vec![busy],
            functions: fns
                .iter()
                .map(|&(n, c)| {
                    (
                        n.to_string(),
                        FnCounts {
                            self_: c,
                            inclusive: c,
                            self_w: c,
                            inclusive_w: c,
                            kernel: true,
                            per_repeat: vec![c],
                        },
                    )
                })
                .collect(),
        }
    }

    /// Issue 14: shares ignored the sample period. With `cycles` in frequency mode
    /// (and page faults) periods vary: the shares are of period, as perf report and
    /// inferno weigh them, with the sample counts kept beside them.
    #[test]
    fn shares_are_weighted_by_period() {
        use crate::analyze::fold::{fold_str, Weighting};
        let cases = [
            (
                include_str!("../../../tests/fixtures/perf-corpus/flamegraph-test/perf-rust-Yamakaky-dcpu.txt"),
                "_start",
                (6, 58),
                0.000_104_5,
            ),
            (
                include_str!("../../../tests/fixtures/perf-corpus/flamegraph-test/perf-java-faults-01.txt"),
                "handle_intel",
                (1, 23),
                0.36,
            ),
        ];
        for (text, f, (n, busy), by_period) in cases {
            let p = fold_str(text);
            assert_eq!(p.weighted_by, Weighting::Period);
            let sc = side_counts(&p);
            let fc = &sc.functions[f];
            assert_eq!((fc.self_, sc.busy), (n, busy), "{f}: counts kept");
            let share = fc.self_w as f64 / sc.busy_w as f64;
            assert!((share - by_period).abs() < 1e-6, "{f}: {share}");
            let (out, _) = function_deltas(&sc, &sc, 1000);
            let row = out.iter().find(|r| r.symbol == f).unwrap();
            assert!((row.baseline_self - by_period).abs() < 1e-6, "{row:?}");
        }
        // No period in the headers (perf 3.x): samples weigh 1.
        let p = fold_str("java 1 cycles: \n\tffffffff81000001 tcp_ack ([kernel.kallsyms])\n\n");
        assert_eq!(p.weighted_by, Weighting::Samples);
    }

    /// Issue 14: with all deltas 0 (self vs self), the cut kept the first names in
    /// alphabetical order and dropped the hottest functions.
    #[test]
    fn ties_keep_the_hottest() {
        let fns = [
            ("aaa_cold", 1),
            ("bbb_cold", 2),
            ("zzz_hot", 900),
            ("yyy_warm", 97),
        ];
        let s = side(&fns, 1000);
        let (out, shift) = function_deltas(&s, &s, 2);
        assert_eq!(shift, 0.0);
        let names: Vec<&str> = out.iter().map(|f| f.symbol.as_str()).collect();
        assert_eq!(names, ["zzz_hot", "yyy_warm"]);
    }
}
