//! The run directory: the only place that builds its paths.
//!
//! ```text
//! playbook.yaml run.json hosts.json summary.json summary.md report.html
//! hosts/<role>/{facts.json,kernel.config,perf.script.zst,perf-stat.txt,workload.log,metrics.json,logs/}
//! ```
//! Created private (0700): captures may hold hostnames, cmdlines and ruleset sizes.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
}

pub const ROLES: [&str; 2] = ["baseline", "candidate"];

impl RunDir {
    /// Creates `<parent>/<UTC timestamp>-<name>/` (with a suffix if it exists).
    pub fn create(parent: &Path, name: &str) -> Result<RunDir> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .with_context(|| format!("cannot create output folder {}", parent.display()))?;
        let stamp = utc_stamp();
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        for i in 0..100 {
            let dir = if i == 0 {
                parent.join(format!("{stamp}-{safe}"))
            } else {
                parent.join(format!("{stamp}-{safe}-{i}"))
            };
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    let rd = RunDir { root: dir };
                    for role in ROLES {
                        rd.ensure_host_dir(role)?;
                    }
                    return Ok(rd);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot create run directory {}", dir.display()))
                }
            }
        }
        anyhow::bail!(
            "cannot find a free run directory name under {}",
            parent.display()
        )
    }

    pub fn open(root: &Path) -> RunDir {
        RunDir {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn run_json(&self) -> PathBuf {
        self.root.join("run.json")
    }
    pub fn hosts_json(&self) -> PathBuf {
        self.root.join("hosts.json")
    }
    pub fn playbook(&self) -> PathBuf {
        self.root.join("playbook.yaml")
    }
    pub fn summary_json(&self) -> PathBuf {
        self.root.join("summary.json")
    }
    pub fn report_html(&self) -> PathBuf {
        self.root.join("report.html")
    }
    pub fn host(&self, role: &str) -> PathBuf {
        self.root.join("hosts").join(role)
    }
    pub fn host_file(&self, role: &str, file: &str) -> PathBuf {
        self.host(role).join(file)
    }
    pub fn logs(&self, role: &str) -> PathBuf {
        self.host(role).join("logs")
    }

    pub fn ensure_host_dir(&self, role: &str) -> Result<()> {
        let d = self.logs(role);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .with_context(|| format!("cannot create {}", d.display()))
    }
}

/// Writes JSON atomically (temp file + rename), so an interrupted run never leaves
/// a half-written run.json behind.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp~");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
            .ok();
        Ok(())
    });
    if let Err(e) = written {
        // A half-written file on a full disk is of no use and holds space.
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

pub fn utc_stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::macros::format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))
    .unwrap_or_else(|_| "run".into())
}

pub fn utc_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
