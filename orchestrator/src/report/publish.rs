//! Results where CI keeps them, from a finished run directory: a KCIDB file
//! (`--kcidb`) and, when `GITHUB_STEP_SUMMARY` names a file (GitHub Actions sets it
//! in every step), summary.md appended to it so the job's page shows the verdict.
//! Both read only summary.json and summary.md: a run re-analysed later publishes the
//! same way.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::kcidb::{self, Ids, Origin};
use crate::rundir::{write_json, RunDir};

/// What to publish besides the run directory.
#[derive(Clone, Debug, Default)]
pub struct Publish {
    pub kcidb: Option<PathBuf>,
    pub origin: Origin,
    /// The run's id among the origin's submissions (default: the run directory's name).
    pub run_id: Option<String>,
}

/// The environment variable GitHub Actions points at the step's summary file.
pub const STEP_SUMMARY: &str = "GITHUB_STEP_SUMMARY";

/// Writes what `p` asks for and returns a line per file written.
pub fn publish(dir: &RunDir, p: &Publish) -> Result<Vec<String>> {
    let mut said = Vec::new();
    if let Some(path) = &p.kcidb {
        let summary = dir.read_summary()?;
        let run = p.run_id.clone().unwrap_or_else(|| name_of(dir.root()));
        // The playbook's name keeps test paths stable when its file moves.
        let suite = match &summary.run {
            Some(r) => r
                .name
                .clone()
                .unwrap_or_else(|| name_of(Path::new(&r.playbook))),
            None => "analysis".into(),
        };
        let ids = Ids {
            origin: &p.origin,
            run: &run,
            suite: &suite,
        };
        write_json(path, &kcidb::document(&summary, &ids))
            .with_context(|| format!("cannot write the KCIDB file {}", path.display()))?;
        said.push(format!("kcidb: {}", path.display()));
    }
    if let Some(target) = std::env::var_os(STEP_SUMMARY).filter(|v| !v.is_empty()) {
        let target = PathBuf::from(target);
        append_step_summary(&dir.summary_md(), &target)?;
        said.push(format!("step summary: appended to {}", target.display()));
    }
    Ok(said)
}

/// The file or folder name without its extension (`playbooks/lab-tcp.yaml` → `lab-tcp`).
fn name_of(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "run".into())
}

/// Appends summary.md to the step summary: GitHub concatenates what every step
/// appends, so never truncate it.
fn append_step_summary(md: &Path, target: &Path) -> Result<()> {
    let text = std::fs::read(md).with_context(|| format!("cannot read {}", md.display()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(target)
        .with_context(|| format!("{STEP_SUMMARY}={}: cannot open it", target.display()))?;
    f.write_all(&text)
        .and_then(|()| f.write_all(b"\n"))
        .with_context(|| format!("{STEP_SUMMARY}={}: cannot append to it", target.display()))
}
