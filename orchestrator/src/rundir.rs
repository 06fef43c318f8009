//! The run directory: the only place that builds its paths.
//!
//! ```text
//! playbook.yaml run.json hosts.json summary.json summary.md report.html junit.xml
//! baseline.folded candidate.folded
//! hosts/<role>/{facts.json,kernel.config,perf.script.zst,perf-stat.txt,workload.log,
//!               metrics.json,teardown.json,kernel.json,kernel-build.log,console.log,logs/}
//! hosts/<role>.attempt-N/   a partial capture kept aside by `run --resume`
//! ```
//! Created private (0700): captures may hold hostnames, cmdlines and ruleset sizes.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::model::{HostsRecord, Role, RunRecord};

/// The console of a qemu guest's first boot when it crashed and the guest was booted
/// once more, beside `console.log` (a host folder's or a `guest up` folder's).
pub const FIRST_BOOT_CONSOLE: &str = "console-boot1.log";

#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
}

/// One host's capture folder, `hosts/<role>/`: also the unit of offline analysis.
#[derive(Clone, Debug)]
pub struct HostDir {
    path: PathBuf,
}

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
                    for role in Role::ALL {
                        rd.host(role).ensure()?;
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

    /// summary.json, read back (for `verify`, `bisect` and publishing the results).
    pub fn read_summary(&self) -> Result<crate::model::Summary> {
        let p = self.summary_json();
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "{}: no summary; analyse the run first: kdelta analyze {}",
                p.display(),
                self.root.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a kdelta summary", p.display()))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The run directory's name: `20261126T002438Z-qemu-kasan`.
    pub fn name(&self) -> String {
        self.root
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    }
    pub fn run_json(&self) -> PathBuf {
        self.root.join("run.json")
    }
    /// Space set aside next to run.json for its last save on a full disk.
    pub fn run_json_reserve(&self) -> PathBuf {
        self.root.join(".run.json.reserve")
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
    pub fn summary_md(&self) -> PathBuf {
        self.root.join("summary.md")
    }
    pub fn report_html(&self) -> PathBuf {
        self.root.join("report.html")
    }
    pub fn junit_xml(&self) -> PathBuf {
        self.root.join("junit.xml")
    }
    /// `baseline.folded`, `candidate.folded`: the flame graphs' input, for other tools.
    pub fn folded(&self, role: Role) -> PathBuf {
        self.root.join(format!("{role}.folded"))
    }
    /// What a `kdelta verify` run (or a bisect step) reverts, written before it
    /// starts: it marks the run as one only `verify --resume` can continue.
    pub fn verify_items(&self) -> PathBuf {
        self.root.join("verify-items.json")
    }
    pub fn host(&self, role: Role) -> HostDir {
        HostDir {
            path: self.root.join("hosts").join(role.as_str()),
        }
    }
    /// `hosts/<role>.attempt-N`: where a resumed run keeps a partial capture, the
    /// first N that is free.
    pub fn next_attempt(&self, role: Role) -> PathBuf {
        let hosts = self.root.join("hosts");
        (1..)
            .map(|n| hosts.join(format!("{role}.attempt-{n}")))
            .find(|p| !p.exists())
            .unwrap_or_else(|| hosts.join(format!("{role}.attempt")))
    }
    /// The two capture folders, or an error saying what this folder is not.
    pub fn sides(&self) -> Result<(PathBuf, PathBuf)> {
        let (b, c) = (self.host(Role::Baseline), self.host(Role::Candidate));
        if !b.path().is_dir() || !c.path().is_dir() {
            anyhow::bail!(
                "{}: not a run directory (expected hosts/baseline/ and hosts/candidate/); for two capture folders use --baseline and --candidate",
                self.root.display()
            );
        }
        Ok((b.path, c.path))
    }
    pub fn read_run_record(&self) -> Result<RunRecord> {
        read_json(&self.run_json())
    }
    pub fn read_hosts_record(&self) -> Result<HostsRecord> {
        read_json(&self.hosts_json())
    }
}

impl HostDir {
    /// A capture folder anywhere (one taken by hand).
    pub fn at(path: &Path) -> HostDir {
        HostDir {
            path: path.to_path_buf(),
        }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn ensure(&self) -> Result<()> {
        let d = self.logs();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .with_context(|| format!("cannot create {}", d.display()))
    }
    pub fn logs(&self) -> PathBuf {
        self.path.join("logs")
    }
    pub fn facts_json(&self) -> PathBuf {
        self.path.join("facts.json")
    }
    pub fn kernel_config(&self) -> PathBuf {
        self.path.join("kernel.config")
    }
    pub fn metrics_json(&self) -> PathBuf {
        self.path.join("metrics.json")
    }
    pub fn workload_log(&self) -> PathBuf {
        self.path.join("workload.log")
    }
    pub fn perf_stat(&self) -> PathBuf {
        self.path.join("perf-stat.txt")
    }
    /// The profile: one zstd frame of `perf script` text per repeat.
    pub fn perf_script_zst(&self) -> PathBuf {
        self.path.join("perf.script.zst")
    }
    /// The profile as a hand-made capture may have it, uncompressed.
    pub fn perf_script(&self) -> PathBuf {
        self.path.join("perf.script")
    }
    /// One repeat's download before it is appended to the profile.
    pub fn perf_script_part(&self, repeat: u32) -> PathBuf {
        self.path.join(format!("perf.script.{repeat}.part"))
    }
    /// A command host's rendered `down`, written before SSH is awaited.
    pub fn teardown_json(&self) -> PathBuf {
        self.path.join("teardown.json")
    }
    /// A qemu guest's kernel: how it was obtained.
    pub fn kernel_json(&self) -> PathBuf {
        self.path.join("kernel.json")
    }
    pub fn kernel_build_log(&self) -> PathBuf {
        self.path.join("kernel-build.log")
    }
    pub fn console_log(&self) -> PathBuf {
        self.path.join("console.log")
    }
    /// What making a Debian guest's root filesystem printed (mmdebstrap, mkfs).
    pub fn rootfs_log(&self) -> PathBuf {
        self.path.join("rootfs.log")
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid", path.display()))
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
