//! `kdelta bisect RUN_DIR`: find which items of a run's delta reproduce its change
//! when attribution cannot say, by reverting sets of them on the candidate and
//! measuring each set as `kdelta verify` measures one item ([`super::search`] picks
//! the sets). Config options and boot parameters of a qemu candidate (rebuilt or
//! rebooted), of a command candidate (its `up`) or of an ssh candidate with a
//! `boot:` hook (rebooted between repeats) are searched together; runtime items
//! are one `kdelta verify --cause KEY` each.
//!
//! `RUN_DIR/bisect/bisect.json` holds every step as soon as it is measured; running
//! the same command again after a failure or a Ctrl-C continues from there (the
//! search is replayed from the steps). Each step is an ordinary run directory under
//! `RUN_DIR/bisect/` with its own report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::rebuild::reverted_host;
use super::search::{self, Next, Outcome, Steps};
use super::{needs_new_host, Finding, How, Item, Reverted};
use crate::model::Summary;
use crate::playbook::{ApplyCheck, HostSpec, Plan, Provider};
use crate::progress::Progress;
use crate::provision::qemu::kernel::{kernel_cached, kernel_identity};
use crate::run::gate::{set_repeats, Repeat};
use crate::run::RunOptions;
use crate::rundir::{write_json, RunDir};

/// What `kdelta bisect` asks for.
pub struct BisectRequest {
    pub run_dir: PathBuf,
    pub playbook: Option<PathBuf>,
    pub repeat: Option<Repeat>,
    pub max_repeats: Option<u32>,
    /// Steps this invocation may measure (the budget).
    pub max_steps: usize,
    /// Wall time this invocation may take: a step starts only when the time so far
    /// and the step's estimate (the last step's time) fit in it.
    pub time_budget: Option<std::time::Duration>,
    /// Kernel builds this invocation may make (a kernel the cache has is free).
    pub max_builds: Option<usize>,
    /// Halve from the start, without trying attribution's suspects first.
    pub no_suspects: bool,
}

/// One measured step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    /// The items reverted together (sorted).
    pub set: Vec<String>,
    pub outcome: Outcome,
    /// The delta really applied between the step's two guests (`CONFIG_X: y → n`).
    pub applied: Vec<String>,
    /// Kconfig put every option of the set back (each is selected or forced by
    /// another option of the candidate): nothing was reverted, nothing measured
    /// counts.
    pub collapsed: bool,
    pub headline: String,
    /// The step's run directory.
    pub dir: String,
    pub seconds: f64,
    /// How the set was reverted (none for a step seen collapsed from the config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub how: Option<How>,
    /// What the revert recovered, per metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recoveries: Vec<super::recovery::Recovery>,
    /// The step built a kernel (the cache did not have it).
    #[serde(default)]
    pub built: bool,
}

/// bisect.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BisectRecord {
    pub run_dir: String,
    pub items: Vec<Item>,
    pub suspects: Vec<String>,
    pub steps: Vec<Step>,
    /// Set when the search is over.
    #[serde(default)]
    pub result: Option<BisectResult>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum BisectResult {
    /// The items that reproduce the change, each verified alone.
    Found { culprits: Vec<(String, Outcome)> },
    /// The search cannot go on, and why.
    Stuck { why: String },
}

/// How a bisect invocation ended.
pub enum BisectEnd {
    Done(BisectRecord),
    /// The step budget ran out before the search ended.
    Budget(BisectRecord),
    /// A step failed or was interrupted: the record holds the steps before it.
    Failed {
        record: BisectRecord,
        error: anyhow::Error,
        interrupted: bool,
        dir: PathBuf,
    },
}

/// Runs (or continues) the bisection of `req.run_dir`'s delta. `say` gets one line
/// per step, for the terminal.
pub async fn bisect(
    req: &BisectRequest,
    opts: RunOptions,
    mut say: impl FnMut(&str),
) -> Result<BisectEnd> {
    let dir = &req.run_dir;
    let hint = format!("kdelta bisect {} --playbook PLAYBOOK", dir.display());
    let (mut plan, _) =
        crate::run::resume::load_run_plan(dir, req.playbook.as_deref(), "bisect", &hint)?;
    set_repeats(&mut plan, req.repeat, req.max_repeats);
    let original = RunDir::open(dir).read_summary()?;
    let folder = opts.out.clone();
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let state = folder.join("bisect.json");
    let mut rec = match std::fs::read_to_string(&state) {
        Ok(text) => serde_json::from_str::<BisectRecord>(&text).with_context(|| {
            format!(
                "{}: not a bisect record; move it away to start over",
                state.display()
            )
        })?,
        Err(_) => fresh(dir, &original, req.no_suspects)?,
    };
    if !rec.steps.is_empty() {
        say(&format!(
            "continuing: {} step(s) measured before ({})",
            rec.steps.len(),
            state.display()
        ));
    }
    // Every item must be revertible on this candidate, checked before any step.
    if super::rebuild::boot_toggle(&rec.items, &plan.candidate, &plan.vars)?.is_none() {
        reverted_host(&rec.items, &plan.candidate, ApplyCheck::Nothing)?;
    }
    let keys: Vec<String> = rec.items.iter().map(|i| i.key.clone()).collect();
    let mut budget = req.max_steps;
    let started = Instant::now();
    let mut ctx = StepCx {
        dir,
        plan: &plan,
        original: &original,
        opts: &opts,
        progress: Progress::new(opts.quiet),
        kconfig_log: folder.join("kconfig.log"),
        candidate_kernel: None,
        builds_left: req.max_builds,
    };
    loop {
        let steps: Steps = rec
            .steps
            .iter()
            .map(|s| (s.set.clone(), s.outcome))
            .collect();
        let set = match search::next(&keys, &rec.suspects, &steps) {
            Next::Try(set) => set,
            Next::Found(culprits) => {
                rec.result = Some(BisectResult::Found { culprits });
                break;
            }
            Next::Stuck(why) => {
                rec.result = Some(BisectResult::Stuck { why });
                break;
            }
        };
        let last = rec.steps.last().map(|s| s.seconds);
        let over_time = over_time(req.time_budget, started, last);
        if budget == 0 || over_time.is_some() {
            if let Some(why) = over_time {
                say(&why);
            }
            save(&state, &folder, &req.run_dir, &rec)?;
            return Ok(BisectEnd::Budget(rec));
        }
        budget -= 1;
        let n = rec.steps.len() + 1;
        say(&format!(
            "step {n}: reverting {}{}",
            show_set(&rec.items, &set),
            match last {
                Some(s) => format!(" (about {:.0} s, as the last step)", s),
                None => String::new(),
            }
        ));
        match ctx.step(&rec.items, set).await? {
            Err(Stop::Builds(why)) => {
                say(&why);
                save(&state, &folder, &req.run_dir, &rec)?;
                return Ok(BisectEnd::Budget(rec));
            }
            Ok(step) => {
                say(&format!(
                    "step {n}: {} — {}",
                    outcome_word(step.outcome),
                    step.headline
                ));
                if step.built {
                    if let Some(left) = ctx.builds_left.as_mut() {
                        *left = left.saturating_sub(1);
                    }
                }
                rec.steps.push(step);
                write_json(&state, &rec)?;
            }
            Err(Stop::Failed((error, interrupted, dir))) => {
                write_json(&state, &rec)?;
                return Ok(BisectEnd::Failed {
                    record: rec,
                    error,
                    interrupted,
                    dir,
                });
            }
        }
    }
    save(&state, &folder, &req.run_dir, &rec)?;
    Ok(BisectEnd::Done(rec))
}

/// Why the next step would not fit the time budget, if it would not: the time
/// spent plus the last step's time (nothing for the first step).
fn over_time(
    budget: Option<std::time::Duration>,
    started: Instant,
    last: Option<f64>,
) -> Option<String> {
    let b = budget?.as_secs_f64();
    let spent = started.elapsed().as_secs_f64();
    let est = last.unwrap_or(0.0);
    (spent + est > b).then(|| {
        format!("the time budget ({b:.0} s) would be exceeded: {spent:.0} s spent, the next step takes about {est:.0} s")
    })
}

/// bisect.json, bisect.md and the examined run's report, as the search stops.
fn save(state: &Path, folder: &Path, run_dir: &Path, rec: &BisectRecord) -> Result<()> {
    write_json(state, rec)?;
    write_markdown(folder, rec)?;
    show_in_report(run_dir, folder, rec);
    Ok(())
}

/// The steps so far into the examined run's report. A report that cannot be
/// rendered again costs a warning, not the bisection: bisect.json and bisect.md
/// hold everything.
fn show_in_report(run_dir: &Path, folder: &Path, rec: &BisectRecord) {
    let view = super::proof::bisect_view(rec, folder, run_dir);
    if let Err(e) = super::proof::attach(run_dir, |p| p.bisect = Some(view)) {
        eprintln!("kdelta: warning: {e:#}");
    }
}

/// What every step needs.
struct StepCx<'a> {
    dir: &'a Path,
    plan: &'a Plan,
    original: &'a Summary,
    opts: &'a RunOptions,
    progress: Progress,
    kconfig_log: PathBuf,
    /// The candidate's kernel identity, once asked.
    candidate_kernel: Option<Option<String>>,
    /// Kernel builds still allowed (None: no limit).
    builds_left: Option<usize>,
}

/// A step that failed: the error, whether a signal cut it, its run directory.
type StepFailure = (anyhow::Error, bool, PathBuf);

/// Why a step did not give a result.
enum Stop {
    Failed(StepFailure),
    /// It needs a kernel build and `--max-builds` is spent.
    Builds(String),
}

impl StepCx<'_> {
    /// Reverts `set` (keys of `all`) on the candidate and measures it, or sees from
    /// the final config that Kconfig puts it all back.
    async fn step(&mut self, all: &[Item], set: Vec<String>) -> Result<Result<Step, Stop>> {
        let items: Vec<Item> = all
            .iter()
            .filter(|i| set.contains(&i.key))
            .cloned()
            .collect();
        let start = Instant::now();
        // An ssh candidate with a `boot:` hook: one machine, rebooted into the set
        // reverted and back between repeats, as `kdelta verify` does.
        if let Some(t) = super::rebuild::boot_toggle(&items, &self.plan.candidate, &self.plan.vars)?
        {
            let mut opts = self.opts.clone();
            opts.toggle = Some(t.clone());
            let what = Reverted {
                items,
                how: How::Boot,
                toggle: Some(t),
            };
            let v = super::measure(self.dir, self.plan, self.original, what, &opts).await?;
            return Ok(read_step(set, start, How::Boot, false, v));
        }
        let (host, how) = reverted_host(&items, &self.plan.candidate, ApplyCheck::Nothing)?;
        // A set of options Kconfig puts back entirely is the candidate's own kernel:
        // seen from the final config in seconds, before any guest boots.
        let mut built = false;
        if how == How::Rebuild {
            if self.candidate_kernel.is_none() {
                let id = identity(&self.plan.candidate, &self.kconfig_log, &self.progress).await?;
                self.candidate_kernel = Some(id);
            }
            let reverted = identity(&host, &self.kconfig_log, &self.progress).await?;
            built = reverted.as_deref().is_some_and(|k| !kernel_cached(k));
            let only_options = items.iter().all(|i| i.key.starts_with("CONFIG_"));
            if built && self.builds_left == Some(0) {
                return Ok(Err(Stop::Builds(format!(
                    "the build budget is spent: reverting {} needs a kernel the cache does not have",
                    set.join(", ")
                ))));
            }
            if only_options
                && reverted.is_some()
                && Some(&reverted) == self.candidate_kernel.as_ref()
            {
                let headline = format!(
                    "collapsed: Kconfig puts {} back (the final config is the candidate's), so it was not measured",
                    set.join(", ")
                );
                return Ok(Ok(Step {
                    set,
                    outcome: Outcome::Nothing,
                    applied: Vec::new(),
                    collapsed: true,
                    headline,
                    dir: String::new(),
                    seconds: start.elapsed().as_secs_f64(),
                    how: None,
                    recoveries: Vec::new(),
                    built: false,
                }));
            }
        }
        let mut step_plan = self.plan.clone();
        step_plan.baseline = host;
        let what = Reverted {
            items,
            how,
            toggle: None,
        };
        let v = super::measure(self.dir, &step_plan, self.original, what, self.opts).await?;
        Ok(read_step(set, start, how, built, v))
    }
}

/// A measured step's outcome, from its verify record: a set Kconfig put back
/// entirely (nothing of it applied) measured nothing.
fn read_step(
    set: Vec<String>,
    start: Instant,
    how: How,
    built: bool,
    v: super::VerifyReport,
) -> Result<Step, Stop> {
    let Some(vr) = v.record else {
        let e = v
            .error
            .unwrap_or_else(|| anyhow::anyhow!("the step was not analysed"));
        return Err(Stop::Failed((e, v.interrupted, v.dir)));
    };
    let collapsed = !vr
        .applied
        .iter()
        .any(|a| set.iter().any(|k| a.starts_with(&format!("{k}:"))));
    let outcome = match vr.finding {
        _ if collapsed => Outcome::Nothing,
        Finding::Cause => Outcome::All,
        Finding::Partial => Outcome::Part,
        Finding::NotCause => Outcome::Nothing,
        Finding::Unknown => Outcome::Unknown,
    };
    let headline = if collapsed {
        format!(
            "collapsed: Kconfig put {} back, nothing was reverted",
            set.join(", ")
        )
    } else {
        vr.headline.clone()
    };
    Ok(Step {
        set,
        outcome,
        applied: vr.applied,
        collapsed,
        headline,
        dir: v.dir.display().to_string(),
        seconds: start.elapsed().as_secs_f64(),
        how: Some(how),
        recoveries: vr.recoveries,
        built,
    })
}

/// The fingerprint of the kernel a qemu host would boot (None: not source-built).
async fn identity(h: &HostSpec, log: &Path, progress: &Progress) -> Result<Option<String>> {
    match &h.provider {
        Provider::Qemu(q) => kernel_identity(q, h.role, log, progress).await,
        _ => Ok(None),
    }
}

/// The items to search: the run's config options and boot parameters.
fn fresh(dir: &Path, s: &Summary, no_suspects: bool) -> Result<BisectRecord> {
    let mut items: Vec<Item> = s
        .config_delta
        .iter()
        .map(|c| Item {
            key: c.option.clone(),
            baseline: c.baseline.clone(),
            candidate: c.candidate.clone(),
        })
        .collect();
    items.extend(
        s.runtime_delta
            .iter()
            .filter(|r| needs_new_host(&r.key))
            .map(|r| Item {
                key: r.key.clone(),
                baseline: r.baseline.clone(),
                candidate: r.candidate.clone(),
            }),
    );
    if items.is_empty() {
        bail!("the run's delta has no config option or boot parameter to bisect; verify a runtime item with `kdelta verify {} --cause KEY`", dir.display());
    }
    let suspects = if no_suspects {
        Vec::new()
    } else {
        s.attributions
            .iter()
            .map(|a| a.cause.clone())
            .filter(|c| items.iter().any(|i| &i.key == c))
            .collect()
    };
    Ok(BisectRecord {
        run_dir: dir.display().to_string(),
        items,
        suspects,
        steps: Vec::new(),
        result: None,
    })
}

fn show_set(items: &[Item], set: &[String]) -> String {
    let shown: Vec<String> = items
        .iter()
        .filter(|i| set.contains(&i.key))
        .map(Item::show)
        .collect();
    shown.join(", ")
}

pub fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::All => "recovers the change",
        Outcome::Part => "recovers a part",
        Outcome::Nothing => "recovers nothing",
        Outcome::Unknown => "undecided",
    }
}

/// The answer in one line.
pub fn conclusion(rec: &BisectRecord) -> String {
    match &rec.result {
        Some(BisectResult::Found { culprits }) => {
            let names: Vec<String> = culprits
                .iter()
                .map(|(c, o)| match o {
                    Outcome::Part => format!("{c} (a part of it)"),
                    _ => c.clone(),
                })
                .collect();
            format!(
                "bisect: {} reproduce{} the change, verified alone ({} step(s))",
                names.join(" and "),
                if names.len() == 1 { "s" } else { "" },
                rec.steps.len()
            )
        }
        Some(BisectResult::Stuck { why }) => {
            format!("bisect: stopped after {} step(s): {why}", rec.steps.len())
        }
        None => format!(
            "bisect: {} step(s) measured, not finished (the budget ran out; run it again to continue)",
            rec.steps.len()
        ),
    }
}

/// bisect.md: every step, for a person or a CI summary.
fn write_markdown(folder: &Path, rec: &BisectRecord) -> Result<()> {
    let mut s = format!(
        "# kdelta bisect of {}\n\n{}\n\n{} item(s) in the delta; suspects tried first: {}\n\n| step | reverted | outcome | applied | seconds | run |\n|---|---|---|---|---|---|\n",
        rec.run_dir,
        conclusion(rec),
        rec.items.len(),
        if rec.suspects.is_empty() {
            "none".to_string()
        } else {
            rec.suspects.join(", ")
        }
    );
    for (i, st) in rec.steps.iter().enumerate() {
        let applied: Vec<&str> = st
            .applied
            .iter()
            .filter(|a| a.starts_with("CONFIG_") || a.starts_with("cmdline."))
            .map(String::as_str)
            .collect();
        s.push_str(&format!(
            "| {} | {} | {}{} | {} | {:.0} | {} |\n",
            i + 1,
            st.set.join(", "),
            outcome_word(st.outcome),
            if st.collapsed { " (collapsed)" } else { "" },
            if applied.is_empty() {
                "—".to_string()
            } else {
                applied.join("; ")
            },
            st.seconds,
            st.dir
        ));
    }
    let p = folder.join("bisect.md");
    std::fs::write(&p, s).with_context(|| format!("cannot write {}", p.display()))
}
