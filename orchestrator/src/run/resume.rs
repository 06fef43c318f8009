//! `kdelta run --resume DIR`: which roles' captures finished, the playbook the run
//! used (unchanged since), and the partial captures kept aside before the others
//! are captured again.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::model::{PhaseStatus, ResumeRecord, Role, RunRecord};
use crate::playbook::Plan;
use crate::rundir::{utc_now, RunDir};

/// The roles of a run directory whose capture finished: their last download phase
/// is that of the last repeat (`download N/N`, or of the pair where `repeat: auto`
/// stopped) and passed, and their profile and metrics are there. A role with only
/// some of its repeats is not finished: each repeat is downloaded as it ends.
pub fn completed_roles(rd: &RunDir, rec: &RunRecord) -> Vec<Role> {
    let last_repeat = |name: &str| -> bool {
        let Some((k, n)) = name
            .strip_prefix("download ")
            .and_then(|r| r.split_once('/'))
            .and_then(|(k, n)| Some((k.parse::<u32>().ok()?, n.parse::<u32>().ok()?)))
        else {
            return false;
        };
        k == n || rec.adaptive.as_ref().is_some_and(|a| a.pairs == k)
    };
    Role::ALL
        .into_iter()
        .filter(|role| {
            let downloaded = rec.phases.iter().rev().find(|p| {
                p.name.starts_with("download ") && p.host.as_deref() == Some(role.as_str())
            });
            let hd = rd.host(*role);
            downloaded.is_some_and(|p| p.status == PhaseStatus::Ok && last_repeat(&p.name))
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
    let items = RunDir::open(dir).verify_items();
    if items.is_file() {
        // verify-items.json names the run it examines (verify writes it).
        let examined = std::fs::read_to_string(&items)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["run_dir"].as_str().map(str::to_string))
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "RUN_DIR".to_string());
        bail!(
            "{} is a `kdelta verify` run (or a bisect step): continue it with `kdelta verify {examined} --resume` and the same --cause (and --out, --playbook if given); a bisect: run the same `kdelta bisect` again",
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
/// resume in `rec` (with the guests `lost` when kdelta resumed on its own);
/// `everything` captures finished roles again too. Returns those roles.
pub fn prepare(
    rd: &RunDir,
    rec: &mut RunRecord,
    command: &[String],
    lost: Vec<crate::model::LostGuest>,
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
        reason: (!lost.is_empty()).then(|| {
            lost.iter()
                .map(crate::model::LostGuest::show)
                .collect::<Vec<_>>()
                .join("; ")
        }),
        lost,
    });
    rec.status = PhaseStatus::Running;
    rec.error = None;
    rec.finished = None;
    Ok(todo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AdaptiveRecord, PhaseRecord};

    fn phase(name: &str, host: &str) -> PhaseRecord {
        PhaseRecord {
            name: name.into(),
            host: Some(host.into()),
            status: PhaseStatus::Ok,
            started: String::new(),
            seconds: 0.0,
            error: None,
        }
    }

    #[test]
    fn a_role_with_some_of_its_repeats_is_not_finished() {
        let tmp = tempfile::tempdir().unwrap();
        let rd = RunDir::open(tmp.path());
        for role in Role::ALL {
            let hd = rd.host(role);
            hd.ensure().unwrap();
            std::fs::write(hd.perf_script_zst(), b"x").unwrap();
            std::fs::write(hd.metrics_json(), b"{}").unwrap();
        }
        let mut rec = RunRecord {
            phases: vec![
                phase("download 1/2", "baseline"),
                phase("download 1/2", "candidate"),
                phase("download 2/2", "candidate"),
            ],
            tool: "kdelta".into(),
            version: String::new(),
            playbook: String::new(),
            name: None,
            command: Vec::new(),
            started: String::new(),
            finished: None,
            status: PhaseStatus::Failed,
            error: None,
            resumes: Vec::new(),
            adaptive: None,
        };
        assert_eq!(completed_roles(&rd, &rec), [Role::Candidate]);
        // `repeat: auto` stopped after the first pair: that was the last repeat.
        rec.adaptive = Some(AdaptiveRecord {
            max_pairs: 2,
            looks: 2,
            alpha: 0.05,
            pairs: 1,
            stopped: String::new(),
        });
        assert_eq!(completed_roles(&rd, &rec), Role::ALL);
    }
}
