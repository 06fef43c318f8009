//! Attribution: which config or runtime delta explains the profile difference.
//!
//! Every delta item (a config option or runtime key that differs) that the knowledge
//! base, a name match or a kernel source tree ties to kernel functions becomes a
//! *cause* with a matcher. Each busy sample is charged once, to the cause of the frame
//! nearest the leaf that matches one, so generic helpers are charged to the specific
//! caller above them and nothing is counted twice. A cause's explained share is its
//! charged share of busy samples on the candidate minus that on the baseline.
//!
//! Honesty rules: a cause is listed only when the difference is large enough and
//! significant; when the option differs in the wrong direction for its functions, it
//! is not listed (and a caveat says why); what nothing explains is reported with its
//! top functions.

pub mod cause;
mod charge;
pub mod family;
pub mod gather;
pub mod kb;
pub mod kmap;
pub mod ksrc;
pub mod reasoning;
pub mod runtime_match;

use std::collections::BTreeSet;

use crate::analyze::fold::Profile;
use crate::analyze::stats::two_proportion_p;
use crate::model::{
    Attribution, CauseShare, CauseSource, Confidence, Evidence, EvidenceStack, FunctionShare, Role,
};
pub use cause::Cause;
use charge::{charge_side, Charged};
pub use kb::KnowledgeBase;

/// Options of the attribution.
#[derive(Clone, Debug)]
pub struct AttributeOptions {
    /// Smallest |explained share| of busy time listed. Default 0.005.
    pub min_share: f64,
    /// Largest p-value listed. Default 1e-3.
    pub max_p: f64,
    /// Functions renamed between the two kernels (baseline name, candidate name),
    /// joined in the unexplained remainder as the function table joins them.
    pub renames: Vec<(String, String)>,
}

impl Default for AttributeOptions {
    fn default() -> Self {
        AttributeOptions {
            min_share: 0.005,
            max_p: 1e-3,
            renames: vec![],
        }
    }
}

pub struct AttributionResult {
    pub attributions: Vec<Attribution>,
    pub unexplained_share: f64,
    pub unexplained_functions: Vec<FunctionShare>,
    pub cause_shares: Vec<CauseShare>,
    pub caveats: Vec<String>,
}

/// Both sides charged, with their busy-sample totals.
struct Sides {
    base: Charged,
    cand: Charged,
    /// Busy weight of each side.
    base_busy: u64,
    cand_busy: u64,
    /// Effective busy samples of each side (Kish), for the tests.
    base_ess: f64,
    cand_ess: f64,
}

impl Sides {
    /// Two-proportion p of charged weights `xb`, `xc`, each taken as its share of
    /// the busy weight times the side's effective sample size (equal to the sample
    /// counts when samples weigh 1; see `SideCounts::as_samples` for why).
    fn p(&self, xb: u64, xc: u64) -> f64 {
        let scaled = |x: u64, busy: u64, ess: f64| -> u64 {
            if busy == 0 {
                0
            } else {
                (x as f64 / busy as f64 * ess).round() as u64
            }
        };
        two_proportion_p(
            scaled(xc, self.cand_busy, self.cand_ess),
            self.cand_ess.round() as u64,
            scaled(xb, self.base_busy, self.base_ess),
            self.base_ess.round() as u64,
        )
    }
}

fn share(x: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        x as f64 / n as f64
    }
}

/// Charges both profiles and ranks the causes. `candidate_worse` decides the sign
/// that ranks first: a slower candidate is explained by what is hotter there.
pub fn attribute(
    causes: &[Cause],
    base: &Profile,
    cand: &Profile,
    candidate_worse: bool,
    opts: &AttributeOptions,
) -> AttributionResult {
    let sides = Sides {
        base: charge_side(base, causes),
        cand: charge_side(cand, causes),
        base_busy: base.busy_weight(),
        cand_busy: cand.busy_weight(),
        base_ess: base.busy_effective_samples(),
        cand_ess: cand.busy_effective_samples(),
    };
    let mut out = Vec::new();
    let mut caveats = Vec::new();
    for (i, c) in causes.iter().enumerate() {
        match rank(i, c, &sides, opts) {
            Ranked::Listed(a) => out.push(*a),
            Ranked::WrongDirection(why) => caveats.push(why),
            Ranked::TooSmall => {}
        }
    }
    let sign = if candidate_worse { 1.0 } else { -1.0 };
    out.sort_by(|a, b| (sign * b.explained_share).total_cmp(&(sign * a.explained_share)));
    let (unexplained_functions, unexplained_share) = unexplained(&sides, sign, &opts.renames);
    let cause_shares = out
        .iter()
        .take(6)
        .map(|a| CauseShare {
            cause: a.cause.clone(),
            baseline: a.baseline_charged,
            candidate: a.candidate_charged,
        })
        .collect();
    AttributionResult {
        attributions: out,
        unexplained_share,
        unexplained_functions,
        cause_shares,
        caveats,
    }
}

enum Ranked {
    Listed(Box<Attribution>),
    /// The cause's functions are hot on the side where it is off: not blamed.
    WrongDirection(String),
    TooSmall,
}

/// One cause: listed if its explained share is large, significant and in the
/// direction its value predicts.
fn rank(i: usize, c: &Cause, s: &Sides, opts: &AttributeOptions) -> Ranked {
    let (xb, xc) = (s.base.per_cause[i], s.cand.per_cause[i]);
    let (sb, sc) = (share(xb, s.base_busy), share(xc, s.cand_busy));
    let explained = sc - sb;
    let p = s.p(xb, xc);
    if explained.abs() < opts.min_share || p > opts.max_p {
        return Ranked::TooSmall;
    }
    let direction_ok = c
        .expected_hot_candidate()
        .map(|hot_c| hot_c == (explained > 0.0));
    if direction_ok == Some(false) {
        return Ranked::WrongDirection(format!(
            "{} differs ({} → {}) but its functions are {} on the side where it is {}: not blamed (the workload itself may differ)",
            c.name,
            c.baseline,
            c.candidate,
            if explained > 0.0 { "hotter" } else { "colder" },
            if explained > 0.0 { "less active" } else { "more active" }
        ));
    }
    let (hot, cold) = if explained > 0.0 { (sc, sb) } else { (sb, sc) };
    let confidence = if explained.abs() >= 0.03
        && p < 1e-6
        && !matches!(c.source, CauseSource::NameMatch | CauseSource::Elimination)
        && direction_ok == Some(true)
        && hot >= 2.0 * cold
    {
        Confidence::High
    } else if explained.abs() >= 0.01 && p < 1e-4 {
        Confidence::Medium
    } else {
        Confidence::Low
    };
    Ranked::Listed(Box::new(Attribution {
        cause: c.name.clone(),
        kind: c.kind,
        baseline: c.baseline.clone(),
        candidate: c.candidate.clone(),
        explained_share: explained,
        baseline_charged: sb,
        candidate_charged: sc,
        p_value: p,
        confidence,
        source: c.source,
        why: c.why.clone(),
        related: c.related.clone(),
        evidence: evidence(i, s),
        stacks: stacks(i, s, explained > 0.0),
    }))
}

/// The functions a cause was charged through, largest change first (10 at most).
fn evidence(i: usize, s: &Sides) -> Vec<Evidence> {
    let names: BTreeSet<&String> = s
        .base
        .per_symbol
        .keys()
        .chain(s.cand.per_symbol.keys())
        .filter(|(ci, _)| *ci == i)
        .map(|(_, f)| f)
        .collect();
    let count = |ch: &Charged, f: &String| ch.per_symbol.get(&(i, f.clone())).copied();
    let mut evidence: Vec<Evidence> = names
        .into_iter()
        .map(|f| Evidence {
            candidate_share: share(count(&s.cand, f).unwrap_or(0), s.cand_busy),
            baseline_share: share(count(&s.base, f).unwrap_or(0), s.base_busy),
            symbol: f.clone(),
        })
        .collect();
    evidence.sort_by(|a, b| {
        let da = (a.candidate_share - a.baseline_share).abs();
        let db = (b.candidate_share - b.baseline_share).abs();
        db.total_cmp(&da).then(a.symbol.cmp(&b.symbol))
    });
    evidence.truncate(10);
    evidence
}

/// The hottest three stacks charged to a cause, on the side where it is hotter.
fn stacks(i: usize, s: &Sides, candidate_hotter: bool) -> Vec<EvidenceStack> {
    let (side, ch, busy) = if candidate_hotter {
        (Role::Candidate, &s.cand, s.cand_busy)
    } else {
        (Role::Baseline, &s.base, s.base_busy)
    };
    ch.stacks[i]
        .iter()
        .take(3)
        .map(|(n, frames, charged)| EvidenceStack {
            side,
            share: share(*n, busy),
            frames: frames.clone(),
            charged: *charged,
        })
        .collect()
}

/// What nothing explains: significant shifts in leaf time of uncharged samples, in
/// the direction being explained (`sign`), the top 15 and their summed share.
fn unexplained(s: &Sides, sign: f64, renames: &[(String, String)]) -> (Vec<FunctionShare>, f64) {
    let mut out = Vec::new();
    // The candidate's leaves under the baseline's names where a function was renamed.
    let mut cand: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (f, x) in &s.cand.uncharged_self {
        let name = renames
            .iter()
            .find(|(_, c)| c == f)
            .map_or(f.as_str(), |(b, _)| b.as_str());
        *cand.entry(name).or_default() += x;
    }
    let names: BTreeSet<&str> = s
        .base
        .uncharged_self
        .keys()
        .map(String::as_str)
        .chain(cand.keys().copied())
        .collect();
    for f in names {
        let xb = s.base.uncharged_self.get(f).copied().unwrap_or(0);
        let xc = cand.get(f).copied().unwrap_or(0);
        let d = share(xc, s.cand_busy) - share(xb, s.base_busy);
        if sign * d > 0.001 && s.p(xb, xc) < 1e-3 {
            out.push(FunctionShare {
                symbol: f.to_string(),
                baseline_share: share(xb, s.base_busy),
                candidate_share: share(xc, s.cand_busy),
            });
        }
    }
    // Float sums of nothing are -0.0 (Rust's `Sum` starts there): report 0.
    let total: f64 = out
        .iter()
        .map(|f| (f.candidate_share - f.baseline_share).abs())
        .sum::<f64>()
        + 0.0;
    out.sort_by(|a, b| {
        (b.candidate_share - b.baseline_share)
            .abs()
            .total_cmp(&(a.candidate_share - a.baseline_share).abs())
    });
    out.truncate(15);
    (out, total)
}
