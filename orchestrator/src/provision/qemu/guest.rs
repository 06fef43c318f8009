//! Guests that outlive kdelta: `kdelta guest up PLAYBOOK --role ROLE` boots a
//! playbook's qemu host in the background and prints how to reach it, in the JSON
//! a `command` host's `up` prints; `kdelta guest down DIR` stops it. A stand-in for
//! `aws ec2 run-instances` and `terminate-instances` on one machine: an SSH target
//! with a real sshd, a login user, sudo and Debian's perf, to try kdelta's `ssh`
//! and `command` providers against (the tests do), or to look around in by hand.
//!
//! Everything of a guest is in its folder: keys, known_hosts, the initramfs, the
//! disk overlay, the console log and QEMU's PID. The folder's name has `kdq-` in
//! it, so `kdelta lab down --all` finds a guest whose `down` never ran.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{guest_keys_in, guest_media, kernel, login_user, vm};
use crate::model::Role;
use crate::playbook::{Plan, Provider};
use crate::progress::Progress;

/// In every guest folder: what `guest down` checks before it deletes anything.
const MARK: &str = "kdelta-guest.json";

/// What `guest up` prints: the command provider's `up` JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GuestUp {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_file: PathBuf,
    pub known_hosts: PathBuf,
    /// The guest's folder: what `guest down` takes.
    pub id: PathBuf,
}

/// A fresh folder for a guest of `role`, private to this user.
fn new_dir(role: Role) -> Result<PathBuf> {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let dir = std::env::temp_dir().join(format!(
        "kdq-guest-{role}-{}-{:06x}",
        std::process::id(),
        h.finish() & 0xff_ffff
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Boots the qemu host `role` of `plan` in the background; on failure nothing is
/// left (QEMU killed, the folder removed).
pub async fn up(plan: &Plan, role: Role, progress: &Progress) -> Result<GuestUp> {
    let spec = plan.host(role);
    let Provider::Qemu(q) = &spec.provider else {
        bail!(
            "{}: hosts.{role} is not a qemu host (guest up boots qemu guests)",
            plan.file.display()
        );
    };
    super::preflight(q, role)?;
    let dir = new_dir(role)?;
    let res = boot(q, role, &dir, progress).await;
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    res
}

async fn boot(
    q: &crate::playbook::QemuSpec,
    role: Role,
    dir: &Path,
    progress: &Progress,
) -> Result<GuestUp> {
    std::fs::write(dir.join(MARK), "{}\n")?;
    let keys = guest_keys_in(dir).await?;
    let k = kernel::prepare_kernel(q, role, &dir.join("kernel-build.log"), progress)
        .await
        .with_context(|| format!("{role}: preparing the kernel"))?;
    let (media, host_line) =
        guest_media(&keys, role, q, &k, &dir.join("rootfs.log"), progress).await?;
    progress.step(role.as_str(), "booting the guest");
    let (port, crashed_once) = vm::boot_detached(
        q,
        role,
        &k,
        &media,
        &dir.join("console.log"),
        &dir.join("qemu.pid"),
        super::boot_timeout(q),
    )
    .await?;
    if crashed_once {
        progress.done(
            role.as_str(),
            &vm::crashed_once_note(&dir.join("console.log")),
        );
    }
    std::fs::write(
        &keys.known_hosts,
        format!("[127.0.0.1]:{port} {host_line}\n"),
    )?;
    let up = GuestUp {
        address: "127.0.0.1".into(),
        port,
        user: login_user(q).to_string(),
        identity_file: keys.key.clone(),
        known_hosts: keys.known_hosts.clone(),
        id: dir.to_path_buf(),
    };
    std::fs::write(dir.join(MARK), serde_json::to_string_pretty(&up)?)?;
    progress.done(
        role.as_str(),
        &format!("guest up (ssh on 127.0.0.1:{port})"),
    );
    Ok(up)
}

/// Stops the guest of folder `dir` and removes the folder. Returns what it did; a
/// folder that is not a guest's is left alone with an error.
pub fn down(dir: &Path) -> Result<String> {
    if !dir.join(MARK).is_file() {
        if !dir.exists() {
            return Ok(format!("{}: already removed", dir.display()));
        }
        bail!(
            "{} is not a kdelta guest folder (no {MARK}): nothing removed",
            dir.display()
        );
    }
    let marker = dir.display().to_string();
    let killed = vm::kill_detached(&dir.join("qemu.pid"), &marker);
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    Ok(format!(
        "{}: {}",
        dir.display(),
        if killed {
            "guest stopped and removed"
        } else {
            "removed (its QEMU was not running)"
        }
    ))
}
