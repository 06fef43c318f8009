//! `kdelta gate`: a run (or a resumed one) whose playbook rules decide, with the
//! JUnit file CI reads and, with `--history DIR`, a trend over past runs. The
//! decisions themselves are [`crate::gate`]'s; this is the workflow around them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{history, resume, Outcome, RunOptions};
use crate::model::{GateDecision, Summary};
use crate::playbook::{Adaptive, Plan};
use crate::rundir::{write_atomic, RunDir};

#[derive(Clone, Debug, Default)]
pub struct GateOptions {
    /// `--history DIR`: one record per run; the report draws each metric's trend.
    pub history: Option<PathBuf>,
}

/// `--repeat`: a number of pairs, or `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    Count(u32),
    Auto,
}

impl std::str::FromStr for Repeat {
    type Err = String;
    fn from_str(s: &str) -> Result<Repeat, String> {
        match s {
            "auto" => Ok(Repeat::Auto),
            n => n
                .parse()
                .map(Repeat::Count)
                .map_err(|_| format!("`{n}` is neither a number of repeats nor `auto`")),
        }
    }
}

/// What a gate run asks for.
pub struct GateRequest {
    pub playbook: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    /// `--repeat N` or `--repeat auto`, instead of the playbook's `capture.repeat`.
    pub repeat: Option<Repeat>,
    /// `--max-repeats N`: the budget of pairs with `auto`.
    pub max_repeats: Option<u32>,
    /// Where to write the JUnit XML (default: RUN_DIR/junit.xml).
    pub junit: Option<PathBuf>,
}

/// What a gate run came to.
pub struct GateReport {
    pub dir: PathBuf,
    pub junit: PathBuf,
    /// The decision, when the run got to one.
    pub decision: Option<GateDecision>,
    /// Why the run failed, if it did.
    pub error: Option<String>,
    pub interrupted: bool,
    /// Adaptive repeats: why the run stopped where it did.
    pub repeats: Option<String>,
}

/// Decides the rules into the summary (and the history), before the report is
/// written: called by the run's analysis phase.
pub fn decide_into(
    summary: &mut Summary,
    plan: &Plan,
    rd: &RunDir,
    opts: &GateOptions,
) -> Result<()> {
    let decision = crate::gate::decide(&plan.gate, summary);
    let status = decision.status;
    summary.gate = Some(decision);
    if let Some(dir) = &opts.history {
        let p = history::point(summary, &plan.name, rd, status);
        history::append(dir, &p)?;
        let (mut pts, warnings) = history::load(dir, &plan.name, 60);
        if let Some(last) = pts.iter_mut().rev().find(|x| x.run_dir == p.run_dir) {
            last.current = true;
        }
        summary.warnings.extend(warnings);
        summary.history = pts;
    }
    Ok(())
}

/// `--repeat N|auto` and `--max-repeats N` over the playbook's `capture.repeat`.
pub fn set_repeats(plan: &mut Plan, repeat: Option<Repeat>, max_repeats: Option<u32>) {
    match repeat {
        Some(Repeat::Count(n)) => {
            plan.capture.repeat = n.max(1);
            plan.capture.adaptive = None;
        }
        Some(Repeat::Auto) => {
            let max_pairs = max_repeats
                .unwrap_or(Adaptive::DEFAULT_MAX)
                .max(Adaptive::FIRST);
            plan.capture.repeat = max_pairs;
            plan.capture.adaptive = Some(Adaptive {
                max_pairs,
                max_seconds: plan.capture.adaptive.and_then(|a| a.max_seconds),
            });
        }
        None => {
            if let (Some(a), Some(m)) = (plan.capture.adaptive.as_mut(), max_repeats) {
                a.max_pairs = m.max(Adaptive::FIRST);
                plan.capture.repeat = a.max_pairs;
            }
        }
    }
}

/// Runs (or resumes) the gate and writes its JUnit file, whatever the run came to.
pub async fn gate(req: GateRequest, opts: RunOptions) -> Result<GateReport> {
    let started = std::time::Instant::now();
    let (plan, o) = match (&req.resume, &req.playbook) {
        (Some(dir), pb) => {
            let (plan, rec) = resume::load_for_resume(dir, pb.as_deref())?;
            let o = super::resume(dir, &plan, rec, &opts).await?;
            (plan, o)
        }
        (None, Some(pb)) => {
            let mut plan = crate::playbook::load(pb)?;
            set_repeats(&mut plan, req.repeat, req.max_repeats);
            let o = super::run(&plan, &opts).await?;
            (plan, o)
        }
        (None, None) => anyhow::bail!("give a playbook (kdelta gate PLAYBOOK) or --resume RUN_DIR"),
    };
    let junit = req
        .junit
        .unwrap_or_else(|| RunDir::open(&o.dir).junit_xml());
    let seconds = started.elapsed().as_secs_f64();
    let report = finish(&plan, o, &junit, seconds)?;
    Ok(report)
}

fn finish(plan: &Plan, o: Outcome, junit: &Path, seconds: f64) -> Result<GateReport> {
    let write = |xml: String| -> Result<()> {
        write_atomic(junit, xml.as_bytes())
            .with_context(|| format!("cannot write {}", junit.display()))
    };
    let summary = o.analyzed.as_ref().map(|a| &a.summary);
    let repeats_line = summary
        .and_then(|s| s.run.as_ref())
        .and_then(|r| r.adaptive.as_ref())
        .map(|a| a.stopped.clone());
    let decision = summary.and_then(|s| s.gate.clone());
    let error = match (&o.error, &decision) {
        (Some(e), _) => Some(format!("{e:#}")),
        (None, None) => Some("the run produced no summary".to_string()),
        (None, Some(_)) => None,
    };
    let props: Vec<(&str, String)> = match summary {
        Some(s) => vec![
            (
                "baseline.kernel",
                s.baseline.kernel.clone().unwrap_or_default(),
            ),
            (
                "candidate.kernel",
                s.candidate.kernel.clone().unwrap_or_default(),
            ),
            ("run_dir", o.dir.display().to_string()),
        ],
        None => vec![],
    };
    let (d, e) = match &error {
        Some(e) => (None, Some(e.as_str())),
        None => (decision.as_ref(), None),
    };
    write(crate::report::junit::junit(
        &plan.name, d, e, &props, seconds,
    )?)?;
    Ok(GateReport {
        dir: o.dir,
        junit: junit.to_path_buf(),
        decision: if error.is_some() { None } else { decision },
        error,
        interrupted: o.interrupted,
        repeats: repeats_line,
    })
}
