//! One side of a comparison, loaded from its capture folder: the profile (required),
//! and `kernel.config`, `facts.json`, `metrics.json` when they are there. Each missing
//! file lowers what can be said; `missing` and `warnings` say so.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::fold::{self, FoldOptions, Profile};
use crate::kconfig::KernelConfig;
use crate::model::{Facts, Metrics, SideSummary};
use crate::rundir::HostDir;

/// One side, loaded.
pub struct Capture {
    pub name: String,
    pub dir: PathBuf,
    pub profile: Profile,
    pub config: Option<KernelConfig>,
    pub facts: Option<Facts>,
    pub metrics: Option<Metrics>,
    pub files: Vec<String>,
    pub missing: Vec<String>,
    pub warnings: Vec<String>,
}

/// Finds the profile file of a capture folder.
pub fn profile_path(dir: &HostDir) -> Option<PathBuf> {
    [dir.perf_script_zst(), dir.perf_script()]
        .into_iter()
        .find(|p| p.is_file())
}

pub fn load_capture(path: &Path, name: &str, fold_opts: &FoldOptions) -> Result<Capture> {
    if !path.is_dir() {
        bail!(
            "{}: not a capture folder (expected a directory with perf.script or perf.script.zst)",
            path.display()
        );
    }
    let dir = HostDir::at(path);
    let Some(pp) = profile_path(&dir) else {
        bail!(
            "{}: no perf.script or perf.script.zst (capture one with `perf record -a -g -- sleep 10; perf script > perf.script`)",
            path.display()
        );
    };
    let profile =
        fold::fold_file(&pp, fold_opts).with_context(|| format!("cannot read {}", pp.display()))?;
    let mut c = Capture {
        name: name.to_string(),
        dir: path.to_path_buf(),
        files: vec![file_name(&pp)],
        profile,
        config: None,
        facts: None,
        metrics: None,
        missing: vec![],
        warnings: vec![],
    };
    c.warnings.extend(c.profile.warnings.iter().cloned());
    if c.profile.malformed_lines > c.profile.warnings.len() as u64 {
        c.warnings.push(format!(
            "{}: {} unreadable lines in all",
            pp.display(),
            c.profile.malformed_lines
        ));
    }
    c.config = read_config(&dir.kernel_config(), &mut c)?;
    c.facts = read_optional_json(&dir.facts_json(), &mut c);
    c.metrics = read_optional_json(&dir.metrics_json(), &mut c);
    Ok(c)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// `kernel.config`, with a warning per line that is not one.
fn read_config(path: &Path, c: &mut Capture) -> Result<Option<KernelConfig>> {
    if !path.is_file() {
        c.missing.push(file_name(path));
        return Ok(None);
    }
    let cfg =
        KernelConfig::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    for (line, text) in &cfg.junk {
        c.warnings.push(format!(
            "{}:{line}: not a config line: {text:?}",
            path.display()
        ));
    }
    if cfg.options.is_empty() {
        c.warnings
            .push(format!("{}: no CONFIG_ options in it", path.display()));
    }
    c.files.push(file_name(path));
    Ok(Some(cfg))
}

/// A JSON file of the capture folder: missing is noted, unreadable is a warning.
fn read_optional_json<T: serde::de::DeserializeOwned>(path: &Path, c: &mut Capture) -> Option<T> {
    if !path.is_file() {
        c.missing.push(file_name(path));
        return None;
    }
    let parsed = std::fs::read_to_string(path)
        .map_err(anyhow::Error::from)
        .and_then(|t| serde_json::from_str::<T>(&t).map_err(anyhow::Error::from));
    match parsed {
        Ok(v) => {
            c.files.push(file_name(path));
            Some(v)
        }
        Err(e) => {
            c.warnings.push(format!("{}: ignored: {e}", path.display()));
            None
        }
    }
}

pub fn side_summary(c: &Capture) -> SideSummary {
    let f = c.facts.as_ref();
    SideSummary {
        name: c.name.clone(),
        kernel: f.and_then(|f| f.kernel.clone()),
        samples: c.profile.samples,
        busy_samples: c.profile.busy_samples(),
        weighted_by: c.profile.weighted_by,
        dropped_samples: c.profile.dropped_samples,
        idle_share: c.profile.idle_share(),
        event: c.profile.event.clone(),
        repeats: c.profile.repeats,
        nr_cpus: f.and_then(|f| f.nr_cpus),
        cpu_model: f.and_then(|f| f.cpu_model.clone()),
        virtualization: f.and_then(|f| f.virtualization.clone()),
        files: c.files.clone(),
        missing: c.missing.clone(),
    }
}
