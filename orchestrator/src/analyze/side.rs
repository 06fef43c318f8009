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
    /// sha256 of the `kernel.config` file, when there is one.
    pub config_sha256: Option<String>,
    pub facts: Option<Facts>,
    pub metrics: Option<Metrics>,
    pub files: Vec<String>,
    pub missing: Vec<String>,
    /// Files that are there but could not be read at all, with why.
    pub unreadable: Vec<(String, String)>,
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
        config_sha256: None,
        facts: None,
        metrics: None,
        missing: vec![],
        unreadable: vec![],
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
    if c.config.is_some() {
        c.config_sha256 = sha256_file(&dir.kernel_config());
    }
    c.facts = read_facts_file(&dir.facts_json(), &mut c);
    c.metrics = read_optional_json(&dir.metrics_json(), &mut c);
    Ok(c)
}

/// A file's sha256 in hex; None when it cannot be read (the read above said why).
fn sha256_file(p: &Path) -> Option<String> {
    use sha2::Digest;
    let bytes = std::fs::read(p).ok()?;
    let d = sha2::Sha256::digest(&bytes);
    Some(d.iter().map(|b| format!("{b:02x}")).collect())
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
            c.unreadable.push((file_name(path), e.to_string()));
            None
        }
    }
}

/// `facts.json`, field by field ([`super::facts_read`]): a bad field is a warning
/// naming it, only a file that is not a JSON object is unreadable.
fn read_facts_file(path: &Path, c: &mut Capture) -> Option<Facts> {
    if !path.is_file() {
        c.missing.push(file_name(path));
        return None;
    }
    let read = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| super::facts_read::read_facts(&t));
    match read {
        Ok((f, dropped)) => {
            for d in dropped {
                c.warnings.push(format!("{}: {d}", path.display()));
            }
            c.files.push(file_name(path));
            Some(f)
        }
        Err(e) => {
            c.warnings.push(format!("{}: ignored: {e}", path.display()));
            c.unreadable.push((file_name(path), e));
            None
        }
    }
}

/// The compiler that built the kernel, from `/proc/version`: its second parenthesised
/// group, up to the linker (`gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld … 2.40` → the
/// gcc part; before 5.8 the group held the compiler alone: `gcc version 8.3.0 (Debian …)`).
pub fn compiler(proc_version: &str) -> Option<String> {
    let mut groups = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, ch) in proc_version.char_indices() {
        match ch {
            '(' => {
                if depth == 0 {
                    start = i + 1;
                }
                depth += 1;
            }
            ')' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    groups.push(proc_version.get(start..i)?);
                }
            }
            '#' if depth == 0 && !groups.is_empty() => break,
            _ => {}
        }
    }
    let group = groups.get(1)?;
    // The linker follows the compiler after a top-level ", ".
    let mut depth = 0usize;
    let mut end = group.len();
    for (i, ch) in group.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let c = group.get(..end)?.trim();
    (!c.is_empty()).then(|| c.to_string())
}

fn extra_str(f: Option<&Facts>, key: &str) -> Option<String> {
    f.and_then(|f| f.extra.get(key))
        .and_then(|v| v.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
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
        arch: extra_str(f, "arch"),
        compiler: extra_str(f, "proc_version").and_then(|v| compiler(&v)),
        config_sha256: c.config_sha256.clone(),
        config_source: extra_str(f, "kernel_config_source"),
        files: c.files.clone(),
        missing: c.missing.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiler_from_proc_version() {
        // Debian 12's 6.1, this machine's, and a 4.19 kernel's (before 5.8, no linker).
        let cases = [
            ("Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)", Some("gcc-12 (Debian 12.2.0-14) 12.2.0")),
            ("Linux version 6.18.44-fc-v1147 (builder@sandboxing) (gcc (GCC) 15.3.0, GNU ld (GNU Binutils) 2.46) #1 SMP PREEMPT_DYNAMIC @0", Some("gcc (GCC) 15.3.0")),
            ("Linux version 4.19.0-6-amd64 (debian-kernel@lists.debian.org) (gcc version 8.3.0 (Debian 8.3.0-6)) #1 SMP Debian 4.19.67-2+deb10u2", Some("gcc version 8.3.0 (Debian 8.3.0-6)")),
            ("Linux version 6.6.0 (u@h) (Debian clang version 16.0.6 (15), Debian LLD 16.0.6) #3", Some("Debian clang version 16.0.6 (15)")),
            ("Linux version 6.1.0 (u@h) #1 SMP (no compiler group)", None),
            ("garbage (((", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(compiler(text).as_deref(), want, "{text}");
        }
    }
}
