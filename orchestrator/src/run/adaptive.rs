//! Adaptive repeats (`capture.repeat: auto`, `kdelta gate --repeat auto`): after
//! the pairs of the look schedule ([`Adaptive::looks_at`]: 2, 3, 4, 6, 8, 12 …), the
//! metrics are decided on what was measured so far; the run stops adding pairs when none is unknown, or at the budget (pairs,
//! minutes). Each look tests at α / (looks the budget allows), so stopping at the
//! first decision keeps the false-alarm rate the single test would have.

use std::time::Instant;

use crate::analyze::metrics::metric_deltas;
use crate::capture::metrics::metrics_file;
use crate::gate::decision::{self, DEFAULT_LIMIT};
use crate::model::{AdaptiveRecord, DecisionStatus, Role};
use crate::playbook::{Adaptive, Plan};

use super::repeat::Side;

/// Why the run stops after `pairs` pairs, or None to go on.
pub(super) fn should_stop(
    plan: &Plan,
    a: &Adaptive,
    sides: &[Side<'_>],
    pairs: u32,
    started: Instant,
) -> Option<AdaptiveRecord> {
    let record = |stopped: String| AdaptiveRecord {
        max_pairs: a.max_pairs,
        looks: a.looks(),
        alpha: decision::ALPHA / f64::from(a.looks()),
        pairs,
        stopped,
    };
    // Between looks only the time budget can stop the run.
    if pairs < Adaptive::FIRST || !a.looks_at(pairs) {
        return out_of_time(a, pairs, started).map(record);
    }
    let (Some(b), Some(c)) = (side(sides, Role::Baseline), side(sides, Role::Candidate)) else {
        return None;
    };
    let alpha = decision::ALPHA / f64::from(a.looks());
    let specs = &plan.workload.metrics;
    let deltas = metric_deltas(
        Some(&metrics_file(specs, &b.values, pairs)),
        Some(&metrics_file(specs, &c.values, pairs)),
    );
    // The gate's rules decide when there are any; otherwise every metric.
    let decisions: Vec<_> = deltas
        .iter()
        .filter(|m| plan.gate.is_empty() || plan.gate.contains_key(&m.name))
        .map(|m| {
            let limit = plan.gate.get(&m.name).copied().unwrap_or(DEFAULT_LIMIT);
            decision::decide(m, limit, alpha)
        })
        .collect();
    if !decisions.is_empty()
        && decisions
            .iter()
            .all(|d| d.status != DecisionStatus::Unknown)
    {
        let why: Vec<String> = decisions
            .iter()
            .map(|d| format!("{:?}: {}", d.status, d.reason).to_lowercase())
            .collect();
        return Some(record(format!(
            "decided after {pairs} pairs: {}",
            why.join("; ")
        )));
    }
    if pairs >= a.max_pairs {
        return Some(record(format!(
            "stopped at the budget of {} pairs, still unknown",
            a.max_pairs
        )));
    }
    out_of_time(a, pairs, started).map(record)
}

/// Why the time budget stops the run, when it is spent.
fn out_of_time(a: &Adaptive, pairs: u32, started: Instant) -> Option<String> {
    let s = a.max_seconds?;
    (started.elapsed().as_secs() >= s).then(|| {
        format!(
            "stopped after {pairs} pairs: the {} minute budget is spent, still unknown",
            s.div_ceil(60)
        )
    })
}

fn side<'a, 'b>(sides: &'a [Side<'b>], role: Role) -> Option<&'a Side<'b>> {
    sides.iter().find(|s| s.host.role == role)
}
