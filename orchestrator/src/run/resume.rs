//! `kdelta run --resume DIR`: which roles' captures finished, the playbook the run
//! used (unchanged since), and the partial captures kept aside before the others
//! are captured again.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::model::{PhaseStatus, ResumeRecord, Role, RunRecord};
use crate::playbook::Plan;
use crate::rundir::{utc_now, RunDir};

/// The roles of a run directory whose capture finished: their last download phase
/// (that of the last repeat) passed and their profile and metrics are there.
pub fn completed_roles(rd: &RunDir, rec: &RunRecord) -> Vec<Role> {
    Role::ALL
        .into_iter()
        .filter(|role| {
            let downloaded = rec.phases.iter().rev().find(|p| {
                p.name.starts_with("download ") && p.host.as_deref() == Some(role.as_str())
            });
            let hd = rd.host(*role);
            downloaded.is_some_and(|p| p.status == PhaseStatus::Ok)
                && hd.perf_script_zst().is_file()
                && hd.metrics_json().is_file()
        })
        .collect()
}

/// Reads a run directory's run.json and the playbook it ran, checking that the
/// playbook did not change since.
pub fn load_for_resume(dir: &Path, playbook: Option<&Path>) -> Result<(Plan, RunRecord)> {
    // Its plan is the playbook changed by verify (a reverted host, a toggle): the
    // playbook alone would measure something else.
    if RunDir::open(dir).verify_items().is_file() {
        bail!(
            "{} is a `kdelta verify` run (or a bisect step): continue it with `kdelta verify RUN_DIR --resume` and the same --cause (a bisect: run the same `kdelta bisect` again)",
            dir.display()
        );
    }
    let hint = format!("kdelta run PLAYBOOK --resume {}", dir.display());
    load_run_plan(dir, playbook, "resume", &hint)
}

/// Reads a run directory's run.json and the playbook it ran, unchanged since: what
/// `resume` and `verify` (`what`) start from; `hint` says how to name the playbook.
pub fn load_run_plan(
    dir: &Path,
    playbook: Option<&Path>,
    what: &str,
    hint: &str,
) -> Result<(Plan, RunRecord)> {
    let rd = RunDir::open(dir);
    let rec = rd.read_run_record().with_context(|| {
        format!(
            "{}: not a run directory (no readable run.json)",
            dir.display()
        )
    })?;
    let path = playbook
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(&rec.playbook));
    let plan = crate::playbook::load(&path).with_context(|| {
        format!(
            "{what} needs the playbook the run used ({}); give its path: {hint}",
            rec.playbook
        )
    })?;
    let copy = std::fs::read_to_string(rd.playbook()).unwrap_or_default();
    if copy != plan.text {
        bail!(
            "{} differs from the copy the run kept ({}): {what} must run what the run ran; start a new run instead",
            path.display(),
            rd.playbook().display()
        );
    }
    Ok((plan, rec))
}

/// Moves the partial captures of the roles to capture again aside and records the
/// resume in `rec` (with `reason` when kdelta resumed on its own); `everything`
/// captures finished roles again too. Returns those roles.
pub fn prepare(
    rd: &RunDir,
    rec: &mut RunRecord,
    command: &[String],
    reason: Option<String>,
    everything: bool,
) -> Result<Vec<Role>> {
    let done = if everything {
        Vec::new()
    } else {
        completed_roles(rd, rec)
    };
    let todo: Vec<Role> = Role::ALL
        .into_iter()
        .filter(|r| !done.contains(r))
        .collect();
    for role in &todo {
        let from = rd.host(*role);
        if from.path().exists() {
            let to = rd.next_attempt(*role);
            std::fs::rename(from.path(), &to).with_context(|| {
                format!(
                    "cannot keep {} aside as {}",
                    from.path().display(),
                    to.display()
                )
            })?;
        }
        from.ensure()?;
    }
    rec.resumes.push(ResumeRecord {
        at: utc_now(),
        command: command.to_vec(),
        recaptured: todo.clone(),
        reason,
    });
    rec.status = PhaseStatus::Running;
    rec.error = None;
    rec.finished = None;
    Ok(todo)
}
