//! `kdelta run` and `kdelta gate`: provision → connect → deploy → facts → workload +
//! capture → teardown → analyze → report, each phase recorded in `run.json`.
//!
//! Invariants:
//! - teardown runs whatever happened before (error, Ctrl-C, SIGTERM, the whole-run
//!   timeout, a panic): the pipeline runs inside a `select!` with the signals and
//!   under `catch_unwind`, and teardown reads only the shared [`Ledger`] that
//!   provisioning fills *before* it creates anything;
//! - every remote command is bounded on the host itself;
//! - hosts on one machine (lab, qemu) are captured one after the other, repeats
//!   interleaved and counterbalanced (A B B A A B …) so drift and warm-up fall on both;
//! - the report is rendered once, from the final run.json.
//!
//! [`analysis`] is the one way to analyse (also for `kdelta analyze`); it and
//! [`history`] touch files only.

mod adaptive;
pub mod analysis;
pub mod check;
pub mod gate;
pub mod history;
pub mod ksource;
mod pipeline;
mod repeat;
pub mod resume;
mod runlog;
mod toggle;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use futures::FutureExt;

use crate::model::{GuestLoss, LostGuest, PhaseStatus, Role, RunRecord};
use crate::playbook::Plan;
use crate::progress::Progress;
use crate::provision::teardown::teardown;
use crate::provision::{Host, Ledger, WORK_PREFIX};
use crate::rundir::{self, RunDir};
use analysis::{AnalysisSetup, Analyzed};
use runlog::{phase, RunLog};

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub out: PathBuf,
    pub quiet: bool,
    pub analysis: AnalysisSetup,
    pub command_line: Vec<String>,
    /// `kdelta gate`: decide the playbook's rules (and keep history) before the
    /// report is written.
    pub gate: Option<gate::GateOptions>,
    /// `kdelta verify`: only the candidate is provisioned, and measured in turns
    /// with this item reverted (as the run's `baseline`) and as it was.
    pub toggle: Option<crate::model::StateToggle>,
}

pub struct Outcome {
    pub dir: PathBuf,
    /// The analysis, when the run got that far; its summary is what the report,
    /// summary.json and summary.md say.
    pub analyzed: Option<Analyzed>,
    pub error: Option<anyhow::Error>,
    pub interrupted: bool,
}

/// What every stage of one run shares.
pub struct RunCtx<'a> {
    pub plan: &'a Plan,
    pub rd: &'a RunDir,
    pub log: &'a RunLog,
    pub progress: &'a Progress,
    pub ledger: &'a Mutex<Ledger>,
    /// Roles captured now: both, or those a resume captures again.
    pub roles: &'a [Role],
    /// The name of kdelta's folders on the hosts: `<work_dir>/<work>-<role>`.
    pub work: String,
    /// See [`RunOptions::toggle`].
    pub toggle: Option<&'a crate::model::StateToggle>,
}

impl RunCtx<'_> {
    pub fn work_of(&self, h: &Host) -> String {
        h.work_folder(&self.work)
    }
}

/// The name of the run's work folders (in each host's `work_dir`). One folder per
/// role: lab hosts share this machine's filesystem. The random part keeps two runs apart that started in the
/// same second with the same playbook (from two output folders, or two machines on
/// one host).
fn work_folder(rd: &RunDir) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let nonce = h.finish() as u32;
    let id: String = rd
        .name()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    format!("{WORK_PREFIX}{id}-{nonce:08x}")
}

/// Runs a playbook end to end. Never returns before teardown has run.
pub async fn run(plan: &Plan, opts: &RunOptions) -> Result<Outcome> {
    run_noting(plan, opts, |_| Ok(())).await
}

/// [`run`], with `note` writing what the caller keeps in the new run directory
/// before anything runs (verify: what it reverts, for `--resume`).
pub async fn run_noting(
    plan: &Plan,
    opts: &RunOptions,
    note: impl FnOnce(&Path) -> Result<()>,
) -> Result<Outcome> {
    let rd = RunDir::create(&opts.out, &plan.name)?;
    rundir::write_atomic(&rd.playbook(), plan.text.as_bytes())?;
    note(rd.root())?;
    let log = RunLog::new(
        &rd,
        RunRecord {
            tool: "kdelta".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            playbook: plan.file.display().to_string(),
            name: Some(plan.name.clone()),
            command: opts.command_line.clone(),
            started: rundir::utc_now(),
            finished: None,
            status: PhaseStatus::Running,
            error: None,
            phases: vec![],
            resumes: vec![],
            adaptive: None,
        },
    );
    // A verify run provisions the candidate alone; its two states fill both roles.
    let roles: &[Role] = if opts.toggle.is_some() {
        &[Role::Candidate]
    } else {
        &Role::ALL
    };
    execute(plan, &rd, &log, roles, opts).await
}

/// `kdelta run --resume DIR`: captures again the roles whose capture did not
/// finish (their partial files are kept aside), then analyses the run.
/// `plan` and `rec` come from [`resume::load_for_resume`].
pub async fn resume(
    dir: &Path,
    plan: &Plan,
    mut rec: RunRecord,
    opts: &RunOptions,
) -> Result<Outcome> {
    let rd = RunDir::open(dir);
    // verify's live toggle measures both sides on the candidate's host, in turns:
    // both are captured again, by provisioning that one host.
    let toggled = opts.toggle.is_some();
    let todo = resume::prepare(&rd, &mut rec, &opts.command_line, Vec::new(), toggled)?;
    let roles = if toggled { vec![Role::Candidate] } else { todo };
    let log = RunLog::new(&rd, rec);
    execute(plan, &rd, &log, &roles, opts).await
}

/// Provisions, captures `roles`, tears down, analyses: the body of `run` and `resume`.
/// A qemu guest whose kernel crashes or that freezes mid-run is booted and captured
/// again ([`lost_guests`], up to [`RUN_ATTEMPTS`] in all).
async fn execute(
    plan: &Plan,
    rd: &RunDir,
    log: &RunLog,
    roles: &[Role],
    opts: &RunOptions,
) -> Result<Outcome> {
    let progress = Progress::new(opts.quiet);
    let mut roles = roles.to_vec();
    let mut attempt = 1;
    // Both exist before anything runs, and across a second attempt: `timeouts.run`
    // bounds the whole run, and a Ctrl-C during the first attempt's teardown stops it.
    let mut signals = Signals::new()?;
    let deadline = Instant::now() + Duration::from_secs(plan.timeouts.run);
    loop {
        let ledger = Mutex::new(Ledger::default());
        let cx = RunCtx {
            plan,
            rd,
            log,
            progress: &progress,
            ledger: &ledger,
            roles: &roles,
            work: work_folder(rd),
            toggle: opts.toggle.as_ref(),
        };
        let (result, interrupted) = guarded(&cx, &mut signals, deadline).await;
        if let Err(e) = &result {
            // Whatever ran when the pipeline was dropped did not finish.
            log.cut_running(ended(interrupted), &format!("{e:#}"));
        }
        if interrupted {
            progress.println("kdelta: interrupted, tearing down …");
        }
        torn_down(&cx).await;
        let crashed = match &result {
            Err(e) if !interrupted => lost_guests(&cx, e),
            _ => Vec::new(),
        };
        let why = crashed
            .iter()
            .map(LostGuest::show)
            .collect::<Vec<_>>()
            .join("; ");
        // verify's two states are one guest: its own error says what to do.
        if crashed.is_empty() || attempt >= RUN_ATTEMPTS || opts.toggle.is_some() {
            let result = match result {
                Err(e) if !crashed.is_empty() => Err(e.context(why)),
                r => r,
            };
            return finish(&cx, opts, result, interrupted).await;
        }
        if signals.arrived() {
            let e = anyhow!("interrupted before the guest was booted again ({why})");
            return finish(&cx, opts, Err(e), true).await;
        }
        progress.println(&format!(
            "kdelta: {why}: booting the guests again and capturing again (attempt {} of at most {RUN_ATTEMPTS}; the earlier consoles are kept)",
            attempt + 1
        ));
        // Both roles again, on fresh boots: a side kept from before the crash would
        // leave the pairs unbalanced, taken at other times.
        let again = |rec: &mut RunRecord| {
            resume::prepare(rd, rec, &opts.command_line, crashed.clone(), true)
        };
        match log.update(again) {
            Ok(todo) => roles = todo,
            Err(e) => {
                let e = anyhow!("{why}; cannot capture again: {e:#}");
                return finish(&cx, opts, Err(e), false).await;
            }
        }
        attempt += 1;
    }
}

/// How many times a run is taken in all when qemu guests crash or hang mid-run
/// ([`lost_guests`]): a crash and a hang in one run were seen in CI.
const RUN_ATTEMPTS: u32 = 3;

/// The qemu guests (roles captured now, with a console in their folder) whose SSH
/// connection was lost, and how: crashed (a panic, oops or BUG line on the
/// console) or froze (no crash there). Under TCG a Debian 6.12 guest was seen to
/// die in an interrupt, and guests of 6.1 and 6.12 to stop answering while perf
/// record was being stopped, once in tens of runs each in CI and never in the
/// dozens of runs tried after: worth another try, said in the report (a kernel that
/// crashes or freezes sometimes is a finding of its own).
fn lost_guests(cx: &RunCtx<'_>, e: &anyhow::Error) -> Vec<LostGuest> {
    // The host whose connection was lost: an oops another guest survived is no cause.
    let lost: Vec<Role> = e
        .chain()
        .filter_map(|c| c.downcast_ref::<crate::exec::remote::ConnectionLost>())
        .map(|l| l.role)
        .collect();
    cx.roles
        .iter()
        .filter(|role| lost.contains(role))
        .filter_map(|role| {
            let console = std::fs::read_to_string(cx.rd.host(*role).console_log()).ok()?;
            let (how, line) = match crate::analyze::console::kernel_crash(&console) {
                Some(line) => (GuestLoss::Crashed, line),
                None => {
                    let last = console.lines().rev().find(|l| !l.trim().is_empty());
                    let last = last.unwrap_or("").chars().take(120).collect();
                    (GuestLoss::Froze, last)
                }
            };
            Some(LostGuest {
                role: *role,
                how,
                line,
            })
        })
        .collect()
}

/// How a run that did not get through ended.
fn ended(interrupted: bool) -> PhaseStatus {
    if interrupted {
        PhaseStatus::Interrupted
    } else {
        PhaseStatus::Failed
    }
}

/// After teardown: the analysis and report of a run that got through, or the
/// failure recorded.
async fn finish(
    cx: &RunCtx<'_>,
    opts: &RunOptions,
    result: Result<()>,
    interrupted: bool,
) -> Result<Outcome> {
    let mut outcome = Outcome {
        dir: cx.rd.root().to_path_buf(),
        analyzed: None,
        error: None,
        interrupted,
    };
    match result {
        Ok(()) => match analyse(cx, opts).await {
            Ok(a) => outcome.analyzed = Some(a),
            Err(e) => outcome.error = Some(e),
        },
        Err(e) => {
            let status = ended(interrupted);
            cx.log.finish(status, Some(format!("{e:#}")));
            outcome.error = Some(e);
        }
    }
    cx.progress.finish();
    Ok(outcome)
}

/// SIGINT and SIGTERM, listened to from the start of a run to its end: a signal
/// that arrives between two attempts (during teardown) is still seen.
struct Signals {
    sigint: tokio::signal::unix::Signal,
    sigterm: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            sigint: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
            sigterm: signal(SignalKind::terminate())
                .context("cannot install the SIGTERM handler")?,
        })
    }

    /// Whether a signal arrived since it was last looked at.
    fn arrived(&mut self) -> bool {
        let int = self.sigint.recv().now_or_never().is_some();
        let term = self.sigterm.recv().now_or_never().is_some();
        int || term
    }
}

/// The pipeline under the signals, the whole-run deadline and a panic backstop.
/// Returns its result and whether a signal ended it.
async fn guarded(cx: &RunCtx<'_>, sig: &mut Signals, deadline: Instant) -> (Result<()>, bool) {
    let limit = cx.plan.timeouts.run;
    let Signals { sigint, sigterm } = sig;
    // A panic in the pipeline must not skip teardown: it ends the pipeline as an
    // error, like any other, and the run is recorded as failed with its message.
    let pipeline = AssertUnwindSafe(pipeline::pipeline(cx)).catch_unwind();
    let (mut result, mut interrupted) = tokio::select! {
        biased;
        _ = sigint.recv() => (Err(anyhow!("interrupted (Ctrl-C)")), true),
        _ = sigterm.recv() => (Err(anyhow!("interrupted (SIGTERM)")), true),
        r = tokio::time::timeout_at(deadline.into(), pipeline) => match r {
            Ok(Ok(r)) => (r, false),
            Ok(Err(panic)) => (Err(crate::panics::as_error(panic.as_ref())), false),
            Err(_) => (Err(anyhow!("the whole run took longer than timeouts.run = {limit}s")), false),
        },
    };
    if result.is_err() && !interrupted {
        // A Ctrl-C reaches the whole process group: a local child (an `up`, the
        // workload client) can die of it and fail the pipeline before kdelta's own
        // signal is read. That failure is the interruption, not a fault of the host.
        let late = tokio::select! {
            _ = sigint.recv() => Some("interrupted (Ctrl-C)"),
            _ = sigterm.recv() => Some("interrupted (SIGTERM)"),
            _ = tokio::time::sleep(Duration::from_millis(300)) => None,
        };
        if let Some(why) = late {
            result = Err(anyhow!(why));
            interrupted = true;
            cx.log.relabel_recent_failures(Duration::from_secs(1));
        }
    }
    (result, interrupted)
}

/// Teardown: always, bounded, recorded as a phase.
async fn torn_down(cx: &RunCtx<'_>) {
    let td = cx.log.begin("teardown", None);
    // Booting an ssh host back out of verify's revert waits for a reboot that may
    // be under way, then runs the hook and waits for one more boot.
    let boots = crate::provision::with_ledger(cx.ledger, |l| {
        l.restores
            .iter()
            .any(|(_, r)| matches!(r, crate::provision::Restore::Boot { .. }))
    });
    let bound = match boots {
        true => {
            use crate::provision::boot::{BOOT_WAIT, HOOK_TIMEOUT};
            Duration::from_secs(60) + BOOT_WAIT * 2 + HOOK_TIMEOUT
        }
        false => Duration::from_secs(60),
    };
    let errs = tokio::time::timeout(bound, teardown(cx.ledger, cx.progress)).await;
    let res = match errs {
        Ok(e) if e.is_empty() => Ok(()),
        Ok(e) => Err(e.join("; ")),
        Err(_) => {
            let pending: Vec<String> = crate::provision::with_ledger(cx.ledger, |l| {
                l.restores
                    .iter()
                    .map(|(role, r)| format!("{role}: put it back {}", r.show()))
                    .collect()
            });
            Err(format!(
                "teardown did not finish in {} s{}",
                bound.as_secs(),
                if pending.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (a state verify reverted may be left: {})",
                        pending.join("; ")
                    )
                }
            ))
        }
    };
    if let Err(e) = &res {
        cx.progress
            .println(&format!("kdelta: teardown problems: {e}"));
    }
    cx.log.end(td, res);
}

/// Analysis of what was captured, the gate's decision, then the report from the
/// final run.json. A panic here is a failed run too.
async fn analyse(cx: &RunCtx<'_>, opts: &RunOptions) -> Result<Analyzed> {
    let res = phase(cx.log, "analyze", None, async {
        cx.progress.step("run", "analysing");
        let mut setup = opts.analysis.clone();
        setup.limits.get_or_insert_with(|| cx.plan.gate.clone());
        if let Some(a) = cx.plan.capture.adaptive {
            setup.looks = a.looks();
        }
        let setup = setup.load()?;
        let mut a = std::panic::catch_unwind(AssertUnwindSafe(|| {
            analysis::analyze_run_dir(cx.rd.root(), &setup, None)
        }))
        .unwrap_or_else(|p| Err(crate::panics::as_error(p.as_ref())))?;
        if let Some(g) = &opts.gate {
            gate::decide_into(&mut a.summary, cx.plan, cx.rd, g)?;
        }
        Ok(a)
    })
    .await;
    let mut a = match res {
        Ok(a) => a,
        Err(e) => {
            cx.log.finish(PhaseStatus::Failed, Some(format!("{e:#}")));
            return Err(e);
        }
    };
    cx.log.finish(PhaseStatus::Ok, None);
    a.summary.run = Some(cx.log.snapshot());
    let command = opts.command_line.join(" ");
    if let Err(e) = analysis::write_report(cx.rd, &a, &command) {
        cx.log.finish(PhaseStatus::Failed, Some(format!("{e:#}")));
        return Err(e);
    }
    Ok(a)
}
