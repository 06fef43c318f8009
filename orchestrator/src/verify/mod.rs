//! `kdelta verify RUN_DIR`: prove a cause instead of suspecting it. The candidate of
//! a finished run is provisioned again and measured in balanced pairs in two states
//! — the blamed item set back to the baseline's value (recorded as `baseline`), and
//! as it was (`candidate`) — on the same host, toggled before every repeat, with
//! the gate's statistics. The share of the original change the revert recovers
//! ([`recovery`]) says whether the item is the cause, all of it or a part.
//!
//! Runtime items are toggled on the live host ([`revert`]); a config option or a
//! boot parameter needs another kernel or another boot, so the counterfactual is a
//! second host, the candidate's spec with the item set back ([`rebuild`]), measured
//! in pairs against the candidate as it was.
//!
//! The verify run is an ordinary run directory under `RUN_DIR/verify/` (report,
//! summary.json) plus `verify.json`. The host is put back as it was at the end,
//! also when a repeat fails.

pub mod bisect;
mod proof;
pub mod rebuild;
pub mod recovery;
pub mod revert;
pub mod search;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::gate::decision::ALPHA;
use crate::model::{DecisionStatus, MetricDelta, StateToggle, Summary};
use crate::playbook::{ApplyCheck, Plan};
use crate::run::gate::{set_repeats, Repeat};
use crate::run::RunOptions;
use crate::rundir::{write_json, RunDir};
pub use rebuild::How;
use recovery::Recovery;

/// What `kdelta verify` asks for.
pub struct VerifyRequest {
    pub run_dir: PathBuf,
    /// The playbook, when it moved since the run (default: run.json's path).
    pub playbook: Option<PathBuf>,
    /// The delta item to revert (default: the top attribution).
    pub cause: Option<String>,
    pub repeat: Option<Repeat>,
    pub max_repeats: Option<u32>,
    /// Continue the newest verify run in the output folder that did not finish
    /// (the same item), instead of starting one.
    pub resume: bool,
}

/// What a revert showed.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Finding {
    /// Reverting the item recovers the change (its interval reaches 100%).
    Cause,
    /// It recovers a significant part, and a significant part remains.
    Partial,
    /// Reverting it changes nothing beyond the limit: not the cause.
    NotCause,
    /// More pairs would tell.
    Unknown,
}

impl Finding {
    pub fn as_str(self) -> &'static str {
        match self {
            Finding::Cause => "cause",
            Finding::Partial => "partial cause",
            Finding::NotCause => "not the cause",
            Finding::Unknown => "unknown",
        }
    }
}

/// A delta item and its two values (shared with the command host's `revert`).
pub use crate::model::DeltaItem as Item;

/// verify.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VerifyRecord {
    pub run_dir: String,
    /// The items reverted together (one for `kdelta verify`, a set for a bisect step).
    pub items: Vec<Item>,
    pub how: How,
    /// The commands of a live toggle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toggle: Option<StateToggle>,
    /// What really differed between the reverted host and the candidate, from the
    /// verify run's own capture (`CONFIG_X: y → n`, `cmdline.k: v → (absent)`): Kconfig
    /// drags dependents along with an option, so this can be more than the item.
    #[serde(default)]
    pub applied: Vec<String>,
    /// Runtime values that differed too but are no knobs (the analysis' confounders:
    /// sizes the kernel takes from memory or CPUs such as `fs.file-max`, the
    /// kernel's build string): consequences of the change, apart from `applied` so
    /// they do not read as part of the revert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follows: Vec<String>,
    pub finding: Finding,
    pub headline: String,
    pub recoveries: Vec<Recovery>,
    /// Busy-CPU points the item explains now, and in the original run.
    pub cpu_points: Option<f64>,
    pub original_cpu_points: Option<f64>,
}

/// What a verify run came to.
pub struct VerifyReport {
    pub dir: PathBuf,
    pub record: Option<VerifyRecord>,
    pub error: Option<anyhow::Error>,
    pub interrupted: bool,
}

/// Runs the verification of one item of `req.run_dir`.
pub async fn verify(req: &VerifyRequest, mut opts: RunOptions) -> Result<VerifyReport> {
    let dir = &req.run_dir;
    let hint = format!("kdelta verify {} --playbook PLAYBOOK", dir.display());
    let (mut plan, _) =
        crate::run::resume::load_run_plan(dir, req.playbook.as_deref(), "verify", &hint)?;
    let original = RunDir::open(dir).read_summary()?;
    let item = choose(&original, req.cause.as_deref())?;
    set_repeats(&mut plan, req.repeat, req.max_repeats);
    let booted = match needs_new_host(&item.key) {
        true => rebuild::boot_toggle(std::slice::from_ref(&item), &plan.candidate, &plan.vars)?,
        false => None,
    };
    let what = if let Some(t) = booted {
        opts.toggle = Some(t.clone());
        Reverted {
            items: vec![item],
            how: How::Boot,
            toggle: Some(t),
        }
    } else if needs_new_host(&item.key) {
        let (host, how) = rebuild::reverted_host(
            std::slice::from_ref(&item),
            &plan.candidate,
            ApplyCheck::InlineOnly,
        )?;
        plan.baseline = host;
        Reverted {
            items: vec![item],
            how,
            toggle: None,
        }
    } else {
        let t = revert::toggle(&item.key, &item.baseline, &item.candidate)?;
        opts.toggle = Some(t.clone());
        Reverted {
            items: vec![item],
            how: How::Live,
            toggle: Some(t),
        }
    };
    let resume = match req.resume {
        true => Some(unfinished(&opts.out, &what.items[0].key)?),
        false => None,
    };
    let report = measure_or_resume(dir, &plan, &original, what, &opts, resume).await?;
    if let Some(rec) = &report.record {
        let view = proof::verify_view(rec, &report.dir, dir);
        // verify.json holds it all: a report that cannot be rendered again is a warning.
        if let Err(e) = proof::attach(dir, |p| p.verify = Some(view)) {
            eprintln!("kdelta: warning: {e:#}");
        }
    }
    Ok(report)
}

/// A config option or a boot parameter: it takes another kernel or another boot.
pub fn needs_new_host(key: &str) -> bool {
    key.starts_with("CONFIG_") || key.starts_with("cmdline.")
}

/// The newest verify run under `out` that did not finish, checked to be a verify
/// of `key` (its recorded item): what `--resume` continues.
fn unfinished(out: &Path, key: &str) -> Result<PathBuf> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    runs.sort();
    // The newest verify run of this item; runs of other items are passed over.
    let mut others = Vec::new();
    let last = runs.into_iter().rev().find_map(|p| {
        let rec = RunDir::open(&p).read_run_record().ok()?;
        let started = read_started(&p)?;
        if started.key() != key {
            others.push(started.key());
            return None;
        }
        Some((p, rec))
    });
    let Some((path, rec)) = last else {
        others.dedup();
        bail!(
            "--resume: no verify run of {key} in {} to continue{}; run `kdelta verify` without --resume",
            out.display(),
            if others.is_empty() {
                String::new()
            } else {
                format!(" (there are of: {})", others.join("; "))
            }
        );
    };
    match rec.status {
        crate::model::PhaseStatus::Ok => bail!(
            "--resume: the last verify run of {key} ({}) finished; run `kdelta verify` without --resume for a new one",
            path.display()
        ),
        // Still going, or its kdelta was killed: a live toggle may still be applied,
        // and a resumed run would save that state as the one to restore.
        crate::model::PhaseStatus::Running => bail!(
            "--resume: the verify run {} is still marked running: if its kdelta was killed, run `kdelta teardown {}` and check the host is back in its original state, then run `kdelta verify` without --resume",
            path.display(),
            path.display()
        ),
        _ => Ok(path),
    }
}

/// What a verify run reverts, written before it starts (`verify-items.json`), so
/// `--resume` knows what an unfinished one was doing.
#[derive(Debug, Serialize, Deserialize)]
struct Started {
    items: Vec<Item>,
    /// The run it examines, for the message that refuses `kdelta run --resume`.
    #[serde(default)]
    run_dir: String,
}

impl Started {
    fn key(&self) -> String {
        let keys: Vec<&str> = self.items.iter().map(|i| i.key.as_str()).collect();
        keys.join(", ")
    }
}

fn read_started(run: &Path) -> Option<Started> {
    let text = std::fs::read_to_string(RunDir::open(run).verify_items()).ok()?;
    serde_json::from_str(&text).ok()
}

/// Runs `plan` (its baseline the reverted candidate, or `opts.toggle` set) and
/// compares what it measured with the original run `dir`.
pub async fn measure(
    dir: &Path,
    plan: &Plan,
    original: &Summary,
    what: Reverted,
    opts: &RunOptions,
) -> Result<VerifyReport> {
    measure_or_resume(dir, plan, original, what, opts, None).await
}

/// [`measure`], or the unfinished verify run `resume` continued: what it captured
/// in full is kept, the rest captured again with the same plan.
async fn measure_or_resume(
    dir: &Path,
    plan: &Plan,
    original: &Summary,
    what: Reverted,
    opts: &RunOptions,
    resume: Option<PathBuf>,
) -> Result<VerifyReport> {
    let mut opts = opts.clone();
    opts.gate = None;
    let started = Started {
        items: what.items.clone(),
        run_dir: dir.display().to_string(),
    };
    let o = match resume {
        Some(run) => {
            let rec = RunDir::open(&run).read_run_record()?;
            crate::run::resume(&run, plan, rec, &opts).await?
        }
        None => {
            let note = |d: &Path| write_json(&RunDir::open(d).verify_items(), &started);
            crate::run::run_noting(plan, &opts, note).await?
        }
    };
    let mut report = VerifyReport {
        dir: o.dir.clone(),
        record: None,
        error: o.error,
        interrupted: o.interrupted,
    };
    let Some(a) = o.analyzed.filter(|_| report.error.is_none()) else {
        return Ok(report);
    };
    let rules: Vec<&str> = plan.gate.keys().map(String::as_str).collect();
    let rec = record(dir, original, &a.summary, what, &rules);
    write_json(&o.dir.join("verify.json"), &rec)?;
    report.record = Some(rec);
    Ok(report)
}

/// The item to revert and its two values: `--cause KEY` from the runtime delta, or
/// the top attribution.
fn choose(s: &Summary, cause: Option<&str>) -> Result<Item> {
    let item = |key: &str, baseline: &str, candidate: &str| Item {
        key: key.to_string(),
        baseline: baseline.to_string(),
        candidate: candidate.to_string(),
    };
    let Some(key) = cause else {
        let Some(a) = s.attributions.first() else {
            bail!("the run attributes nothing to verify; name a delta item with --cause KEY (summary.json's runtime_delta)");
        };
        return Ok(item(&a.cause, &a.baseline, &a.candidate));
    };
    if let Some(r) = s.runtime_delta.iter().find(|r| r.key == key) {
        return Ok(item(&r.key, &r.baseline, &r.candidate));
    }
    if let Some(c) = s.config_delta.iter().find(|c| c.option == key) {
        return Ok(item(&c.option, &c.baseline, &c.candidate));
    }
    let list = |keys: Vec<&str>| {
        if keys.is_empty() {
            "(none)".to_string()
        } else {
            keys.join(", ")
        }
    };
    let runtime = s.runtime_delta.iter().map(|r| r.key.as_str()).take(12);
    let config = s.config_delta.iter().map(|c| c.option.as_str()).take(8);
    bail!(
        "--cause {key}: not in the run's delta; its runtime items are: {}; its config options: {}{}",
        list(runtime.collect()),
        list(config.collect()),
        if s.config_delta.len() > 8 { " …" } else { "" }
    )
}

/// The metrics that decide: the gate's rules, or every metric.
fn deciding<'a>(s: &'a Summary, rules: &[&str]) -> impl Iterator<Item = &'a MetricDelta> + 'a {
    let rules: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
    s.metrics
        .iter()
        .filter(move |m| rules.is_empty() || rules.contains(&m.name))
}

/// The items, their values and how they were set back.
pub struct Reverted {
    pub items: Vec<Item>,
    pub how: How,
    pub toggle: Option<StateToggle>,
}

/// The delta the verify run itself measured between its two hosts, candidate value
/// first (the direction of the revert): what was applied, and the runtime values
/// that follow from it (confounders: no knob set them).
fn applied(verify: &Summary) -> (Vec<String>, Vec<String>) {
    let config = verify
        .config_delta
        .iter()
        .map(|c| format!("{}: {} → {}", c.option, c.candidate, c.baseline));
    let (follows, runtime): (Vec<_>, Vec<_>) = verify
        .runtime_delta
        .iter()
        .partition(|r| r.kind == crate::model::KeyKind::Confounder);
    let show =
        |r: &crate::model::RuntimeChange| format!("{}: {} → {}", r.key, r.candidate, r.baseline);
    (
        config.chain(runtime.into_iter().map(show)).collect(),
        follows.into_iter().map(show).collect(),
    )
}

fn record(
    dir: &Path,
    original: &Summary,
    verify: &Summary,
    what: Reverted,
    rules: &[&str],
) -> VerifyRecord {
    let recoveries: Vec<Recovery> = deciding(original, rules)
        .filter_map(|m| {
            let v = verify.metrics.iter().find(|v| v.name == m.name)?;
            recovery::recovery(m, v, ALPHA)
        })
        .collect();
    let points = |s: &Summary| {
        let shares: Vec<f64> = s
            .attributions
            .iter()
            .filter(|a| what.items.iter().any(|i| i.key == a.cause))
            .map(|a| a.explained_share * 100.0)
            .collect();
        (!shares.is_empty()).then(|| shares.iter().sum())
    };
    let decisions: Vec<DecisionStatus> = deciding(verify, rules)
        .filter_map(|m| m.decision.as_ref().map(|d| d.status))
        .collect();
    let mut finding = finding(&recoveries, &decisions);
    let (now, then) = (points(verify), points(original));
    let (applied, follows) = applied(verify);
    // A kernel or boot the revert should have changed, and the verify run's own
    // capture shows it did not (a boot hook or `up` that ignored `revert`): what
    // was measured is not the revert, whatever the numbers say.
    let missed = not_applied(&what, &applied);
    if missed.is_some() {
        finding = Finding::Unknown;
    }
    let mut headline = headline(&what, finding, &recoveries, now, then);
    if let Some(key) = missed {
        headline.push_str(&format!(
            "; but the reverted host does not differ from the candidate in {key} (verify.json: applied): the revert did not take, so this measures nothing"
        ));
    }
    // `applied` holds knobs too (boot parameters, sysctls someone set); only
    // options are what Kconfig dragged along.
    let options = verify.config_delta.len();
    let asked = what.items.len();
    let more = options.saturating_sub(asked);
    match what.how {
        How::Rebuild if more > 0 => headline.push_str(&format!(
            "; Kconfig changed {more} more option(s) with it (verify.json: applied)"
        )),
        // The user's `up` built it: Kconfig or their build may have changed more.
        How::Command if more > 0 => headline.push_str(&format!(
            "; the new host's kernel differs in {more} more option(s) (verify.json: applied)"
        )),
        _ => {}
    }
    VerifyRecord {
        run_dir: dir.display().to_string(),
        applied,
        follows,
        items: what.items,
        how: what.how,
        toggle: what.toggle,
        finding,
        headline,
        recoveries,
        cpu_points: now,
        original_cpu_points: then,
    }
}

/// The one config option or boot parameter `kdelta verify` reverted, when the
/// verify run's capture does not show it changed. Bisect steps are left alone:
/// Kconfig folding part of a set back is an outcome there, read elsewhere.
fn not_applied<'a>(what: &'a Reverted, applied: &[String]) -> Option<&'a str> {
    let [one] = what.items.as_slice() else {
        return None;
    };
    let key = one.key.as_str();
    let shown = applied.iter().any(|a| a.starts_with(&format!("{key}: ")));
    (needs_new_host(key) && !shown).then_some(key)
}

/// Cause when the revert's own decision is a change and the recovered share's
/// interval reaches 100%; partial when it stays below; not the cause when the
/// revert changes nothing beyond the limit (same).
fn finding(recoveries: &[Recovery], decisions: &[DecisionStatus]) -> Finding {
    let changed = decisions
        .iter()
        .any(|d| matches!(d, DecisionStatus::Regression | DecisionStatus::Improvement));
    if !changed {
        return if !decisions.is_empty() && decisions.iter().all(|d| *d == DecisionStatus::Same) {
            Finding::NotCause
        } else {
            Finding::Unknown
        };
    }
    match recoveries.iter().find_map(|r| r.share_ci) {
        Some([_, hi]) if hi < 1.0 => Finding::Partial,
        Some(_) => Finding::Cause,
        None => Finding::Unknown,
    }
}

fn headline(
    t: &Reverted,
    f: Finding,
    recoveries: &[Recovery],
    points: Option<f64>,
    original_points: Option<f64>,
) -> String {
    use crate::format::pct;
    let items: Vec<String> = t.items.iter().map(Item::show).collect();
    let mut s = format!(
        "{}: reverting {} on the candidate",
        f.as_str(),
        items.join(", ")
    );
    for r in recoveries {
        let borrowed = r.original_noise == recovery::Noise::Borrowed;
        match (r.share, r.share_ci) {
            (Some(x), Some([lo, hi])) => s.push_str(&format!(
                " recovers {} of the {} change of {} ({:.0}% interval {} … {}{})",
                pct(x),
                pct(r.original_change),
                r.metric,
                r.level * 100.0,
                pct(lo),
                pct(hi),
                if borrowed {
                    "; the run had one repeat per side, its noise is the verify run's"
                } else {
                    ""
                }
            )),
            _ => s.push_str(&format!(
                " changes {} by {} (the original change, {}, was not significant on its own repeats: no share of it can be given)",
                r.metric,
                pct(r.item_change),
                pct(r.original_change)
            )),
        }
    }
    if let (Some(p), Some(o)) = (points, original_points) {
        s.push_str(&format!(
            "; busy CPU: it explains {p:.1} points now, {o:.1} in the run"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConfigChange, KeyKind, RuntimeChange};

    /// A boot hook or `up` that ignored `revert` shows in the verify run's own
    /// capture: the item is not among what differed. Bisect sets are left alone.
    #[test]
    fn a_revert_that_did_not_take_is_named() {
        let item = |key: &str| Item {
            key: key.into(),
            baseline: "(absent)".into(),
            candidate: "FZPU".into(),
        };
        let what = |items: Vec<Item>| Reverted {
            items,
            how: How::Boot,
            toggle: None,
        };
        let took = ["cmdline.slub_debug: FZPU → (absent)".to_string()];
        let one = what(vec![item("cmdline.slub_debug")]);
        assert_eq!(not_applied(&one, &took), None);
        assert_eq!(not_applied(&one, &[]), Some("cmdline.slub_debug"));
        let similar = ["cmdline.slub_debug_x: 1 → 0".to_string()];
        assert_eq!(not_applied(&one, &similar), Some("cmdline.slub_debug"));
        // A runtime item toggled live is read from its own delta, not here.
        assert_eq!(not_applied(&what(vec![item("sysctl.vm.x")]), &[]), None);
        let set = what(vec![item("CONFIG_A"), item("CONFIG_B")]);
        assert_eq!(not_applied(&set, &[]), None);
    }

    #[test]
    fn values_sized_from_memory_are_apart_from_what_the_revert_applied() {
        let change = |key: &str, b: &str, c: &str, kind| RuntimeChange {
            key: key.into(),
            baseline: b.into(),
            candidate: c.into(),
            kind,
        };
        let s = Summary {
            config_delta: vec![ConfigChange {
                option: "CONFIG_KASAN".into(),
                baseline: "n".into(),
                candidate: "y".into(),
                kind: Default::default(),
            }],
            runtime_delta: vec![
                change("fs.file-max", "200000", "180000", KeyKind::Confounder),
                change("cmdline.slub_debug", "(absent)", "FZPU", KeyKind::Knob),
            ],
            ..Default::default()
        };
        let (applied, follows) = applied(&s);
        assert_eq!(
            applied,
            ["CONFIG_KASAN: y → n", "cmdline.slub_debug: FZPU → (absent)"]
        );
        assert_eq!(follows, ["fs.file-max: 180000 → 200000"]);
    }
}
