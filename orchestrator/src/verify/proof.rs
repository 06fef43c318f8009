//! The examined run's report learns what verify and bisect showed: their records
//! turned into summary.json's `proof`, and the report rendered again from the
//! folded stacks it already has (nothing is re-analysed).

use std::path::Path;

use anyhow::{Context, Result};

use super::bisect::{conclusion, outcome_word, BisectRecord};
use super::{How, VerifyRecord};
use crate::model::{BisectView, Proof, StepView, VerifyView};
use crate::rundir::RunDir;

/// Edits the `proof` of the run in `run_dir` and renders its report again.
pub fn attach(run_dir: &Path, edit: impl FnOnce(&mut Proof)) -> Result<()> {
    let rd = RunDir::open(run_dir);
    let mut s = rd.read_summary()?;
    let mut p = s.proof.take().unwrap_or_default();
    edit(&mut p);
    s.proof = Some(p);
    let command = s
        .run
        .as_ref()
        .map(|r| r.command.join(" "))
        .unwrap_or_default();
    crate::report::refresh(&rd, &s, &command)
        .with_context(|| format!("cannot add the proof to {}'s report", run_dir.display()))
}

/// `p` relative to the run directory when it is inside it (the report links work
/// wherever the folder is moved), else as it is.
fn relative(run_dir: &Path, p: &Path) -> String {
    p.strip_prefix(run_dir).unwrap_or(p).display().to_string()
}

fn how_words(h: How) -> &'static str {
    match h {
        How::Live => "set on the live candidate, restored after",
        How::Rebuild => "a kernel with it reverted (built, or from the kernel cache)",
        How::Reboot => "booted with the edited command line",
        How::Command => "a host the playbook's `up` made with it reverted",
        How::Boot => {
            "the candidate rebooted by its `boot:` hook into the revert and back, in turns"
        }
    }
}

pub fn verify_view(rec: &VerifyRecord, verify_dir: &Path, run_dir: &Path) -> VerifyView {
    VerifyView {
        finding: rec.finding.as_str().to_string(),
        headline: rec.headline.clone(),
        reverted: rec.items.iter().map(|i| i.show()).collect(),
        how: how_words(rec.how).to_string(),
        applied: rec.applied.clone(),
        follows: rec.follows.clone(),
        recoveries: rec.recoveries.clone(),
        cpu_points: rec.cpu_points,
        original_cpu_points: rec.original_cpu_points,
        report: relative(run_dir, &verify_dir.join("report.html")),
        at: crate::rundir::utc_now(),
    }
}

pub fn bisect_view(rec: &BisectRecord, folder: &Path, run_dir: &Path) -> BisectView {
    BisectView {
        conclusion: conclusion(rec),
        finished: rec.result.is_some(),
        items: rec.items.len(),
        steps: rec
            .steps
            .iter()
            .map(|st| StepView {
                reverted: st.set.clone(),
                how: st.how.map_or("", how_words).to_string(),
                outcome: outcome_word(st.outcome).to_string(),
                collapsed: st.collapsed,
                applied: st.applied.clone(),
                recoveries: st.recoveries.clone(),
                headline: st.headline.clone(),
                seconds: st.seconds,
                report: if st.dir.is_empty() {
                    String::new()
                } else {
                    relative(run_dir, &Path::new(&st.dir).join("report.html"))
                },
            })
            .collect(),
        record: relative(run_dir, &folder.join("bisect.md")),
    }
}
