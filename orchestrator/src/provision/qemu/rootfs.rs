//! Full Debian guests: a root filesystem made by `mmdebstrap` from Debian's
//! archive — systemd, udev, OpenSSH, sudo, Debian's own perf and the playbook's
//! packages — turned into an ext4 image with `mkfs.ext4 -d`, cached by everything
//! that went into it (`~/.cache/kdelta/rootfs/<fingerprint>/root.ext4`). The image
//! is never written: each guest boots from its own qcow2 overlay in the run's
//! private folder, gone at teardown.
//!
//! The image is set up like a Debian cloud instance: sshd with keys only, the host
//! keys removed (each guest gets a per-run key, pinned in known_hosts), the login
//! user (when not root) with passwordless sudo, `kernel.perf_event_paranoid = 3`
//! as Debian's kernels have it, DHCP by systemd-networkd, and one unit that prints
//! `KDELTA-READY` on the serial console once sshd runs — what kdelta waits for.
//! A packaged kernel's modules come on a second, read-only disk, mounted at
//! /lib/modules/<release> by kdelta's stage-1 initramfs (see `initramfs::stage1`).

use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::kernel::run_logged;
use super::{cache_dir, which};
use crate::format::fingerprint;
use crate::playbook::DebianRootfs;
use crate::progress::Progress;

/// What every Debian guest has, whatever the playbook adds: what kdelta needs
/// (sshd, sudo, perf, sh tools, tc and ip for the facts) and what makes a guest
/// boot like a Debian host (systemd as init, udev to name devices, dbus for
/// systemctl).
pub const BASE_PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "sudo",
    "linux-perf",
    "iproute2",
    "procps",
    "kmod",
    "zstd",
];

/// Runs inside mmdebstrap's `--customize-hook` as `sh HOOK ROOT USER`. Changing it
/// changes every image's fingerprint, so cached images are remade.
const HOOK: &str = r#"set -e
R="$1"; U="$2"
if [ "$U" != root ]; then
  chroot "$R" useradd -m -s /bin/bash -G sudo "$U"
  printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$U" > "$R/etc/sudoers.d/90-kdelta-$U"
  chmod 440 "$R/etc/sudoers.d/90-kdelta-$U"
fi
# Host keys are per guest and per run (written at boot): none in the image.
rm -f "$R"/etc/ssh/ssh_host_*
mkdir -p "$R/etc/ssh/sshd_config.d"
cat > "$R/etc/ssh/sshd_config.d/kdelta.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
EOF
cat > "$R/etc/systemd/network/80-kdelta-dhcp.network" <<'EOF'
[Match]
Name=en* eth*
[Network]
DHCP=ipv4
EOF
chroot "$R" systemctl enable systemd-networkd
cat > "$R/etc/systemd/system/kdelta-ready.service" <<'EOF'
[Unit]
Description=kdelta: the guest is ready (sshd runs)
After=ssh.service network-online.target
Wants=network-online.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "KDELTA-READY $(uname -r)" > /dev/ttyS0'
[Install]
WantedBy=multi-user.target
EOF
chroot "$R" systemctl enable kdelta-ready.service
# Debian's kernels default to 3 (a Debian patch): so does this image, whatever
# kernel boots it, like a Debian cloud instance.
echo 'kernel.perf_event_paranoid = 3' > "$R/etc/sysctl.d/90-kdelta-debian-default.conf"
# Nothing that wakes up on its own during a measurement; and, because every unit
# costs seconds under TCG, none of the boot-time module loads and seeding a
# throwaway guest has no use for (device-mapper, loop, fuse, configfs, drm).
for t in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer \
    modprobe@dm_mod.service modprobe@loop.service modprobe@fuse.service modprobe@configfs.service \
    modprobe@drm.service modprobe@efi_pstore.service systemd-random-seed.service e2scrub_reap.service; do
  chroot "$R" systemctl mask "$t" >/dev/null 2>&1 || true
done
echo '/dev/vda / ext4 defaults 0 1' > "$R/etc/fstab"
echo kdelta > "$R/etc/hostname"
"#;

/// The image format's version, in the fingerprint with the hook.
const FORMAT: &str = "kdelta-rootfs-1";

/// Every package of an image, sorted: the base ones and the playbook's.
pub fn packages(d: &DebianRootfs) -> Vec<String> {
    let mut p: Vec<String> = BASE_PACKAGES
        .iter()
        .map(|s| s.to_string())
        .chain(d.packages.iter().cloned())
        .collect();
    p.sort();
    p.dedup();
    p
}

/// The cache key of an image: everything that changes what is in it.
pub fn image_key(d: &DebianRootfs) -> String {
    let text = format!(
        "{FORMAT}\n{}\n{}\n{}\n{}\n{HOOK}",
        d.suite,
        packages(d).join(","),
        d.user,
        d.disk_gb
    );
    fingerprint(text.as_bytes())
}

/// Debian's archive for `suite`, with its security and update suites when the
/// suite has them.
fn mirrors(suite: &str) -> Vec<String> {
    let mut m = vec![format!("deb http://deb.debian.org/debian {suite} main")];
    if !matches!(suite, "sid" | "testing") {
        m.push(format!(
            "deb http://deb.debian.org/debian {suite}-updates main"
        ));
        m.push(format!(
            "deb http://deb.debian.org/debian-security {suite}-security main"
        ));
    }
    m
}

/// What this machine needs to make and boot Debian guests, as problems with fixes.
pub fn missing_tools() -> Vec<String> {
    [
        ("mmdebstrap", "mmdebstrap"),
        ("mkfs.ext4", "e2fsprogs"),
        ("qemu-img", "qemu-utils"),
        ("ssh-keygen", "openssh-client"),
    ]
    .iter()
    .filter(|(t, _)| which(t).is_none())
    .map(|(t, p)| format!("{t} missing to make a Debian guest (apt-get install {p})"))
    .collect()
}

/// The cached image for `d`, made first if needed (about a minute and ~350 MB of
/// downloads for the base packages). Concurrent kdeltas wait for one another.
pub async fn ensure_image(
    d: &DebianRootfs,
    log: &Path,
    progress: &Progress,
    who: &str,
) -> Result<PathBuf> {
    let dir = cache_dir().join("rootfs").join(image_key(d));
    let image = dir.join("root.ext4");
    if image.is_file() {
        return Ok(image);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let lock = lock_file(&dir.join(".lock")).await?;
    if image.is_file() {
        return Ok(image); // made by another kdelta while this one waited
    }
    let problems = missing_tools();
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    progress.step(
        who,
        &format!(
            "making the Debian {} root filesystem (mmdebstrap, about a minute)",
            d.suite
        ),
    );
    let started = std::time::Instant::now();
    let tree = dir.join("tree");
    let _ = std::fs::remove_dir_all(&tree);
    let hook = dir.join("hook.sh");
    std::fs::write(&hook, HOOK)?;
    let mut mm = tokio::process::Command::new("mmdebstrap");
    mm.arg("--variant=apt")
        .arg(format!("--include={}", packages(d).join(",")))
        .arg(format!(
            "--customize-hook=sh {} \"$1\" {}",
            crate::exec::shell::quote(&hook.display().to_string()),
            crate::exec::shell::quote(&d.user)
        ))
        .arg(&d.suite)
        .arg(&tree)
        .args(mirrors(&d.suite));
    let made = run_logged(&mut mm, &format!("mmdebstrap {}", d.suite), log)
        .await
        .context("mmdebstrap could not make the Debian root filesystem (is Debian's archive reachable, and every package name right?)");
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&tree);
        return Err(e);
    }
    let partial = dir.join("root.ext4.partial");
    let mut mkfs = tokio::process::Command::new("mkfs.ext4");
    mkfs.args(["-q", "-F", "-L", "kdelta-root", "-d"])
        .arg(&tree)
        .arg(&partial)
        .arg(format!("{}G", d.disk_gb));
    let res = run_logged(&mut mkfs, "mkfs.ext4 -d", log).await;
    let _ = std::fs::remove_dir_all(&tree);
    res.context("mkfs.ext4 -d could not make the image (e2fsprogs 1.43 or later)")?;
    std::fs::rename(&partial, &image)?;
    std::fs::write(dir.join("packages.txt"), packages(d).join("\n") + "\n")?;
    drop(lock);
    progress.done(
        who,
        &format!(
            "Debian {} root filesystem made in {:.0}s ({})",
            d.suite,
            started.elapsed().as_secs_f64(),
            image.display()
        ),
    );
    Ok(image)
}

/// A packaged kernel's modules as a read-only ext4 disk, made once per package.
pub async fn modules_image(modules_dir: &Path, log: &Path) -> Result<PathBuf> {
    let image = modules_dir.parent().unwrap_or(modules_dir).join(format!(
        "{}.ext4",
        modules_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "modules".into())
    ));
    if image.is_file() {
        return Ok(image);
    }
    let _lock = lock_file(&image.with_extension("lock")).await?;
    if image.is_file() {
        return Ok(image);
    }
    let partial = image.with_extension("partial");
    let mut mkfs = tokio::process::Command::new("mkfs.ext4");
    mkfs.args(["-q", "-F", "-L", "kdelta-modules", "-d"])
        .arg(modules_dir)
        .arg(&partial)
        .arg("2G");
    run_logged(&mut mkfs, "mkfs.ext4 -d (modules)", log)
        .await
        .context("mkfs.ext4 could not make the modules disk (apt-get install e2fsprogs)")?;
    std::fs::rename(&partial, &image)?;
    Ok(image)
}

/// A guest's own copy-on-write layer over the cached image.
pub async fn overlay(base: &Path, at: &Path, log: &Path) -> Result<()> {
    let mut c = tokio::process::Command::new("qemu-img");
    c.args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(base)
        .arg(at);
    run_logged(&mut c, "qemu-img create (overlay)", log)
        .await
        .context("qemu-img could not make the guest's disk (apt-get install qemu-utils)")
}

/// An exclusive lock on `path`, held until the file is dropped (flock: released
/// by the kernel if kdelta dies).
async fn lock_file(path: &Path) -> Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let fd = f.as_raw_fd();
    tokio::task::spawn_blocking(move || {
        // SAFETY: flock(2) on a descriptor this function owns and keeps open.
        let r = unsafe { libc::flock(fd, libc::LOCK_EX) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    })
    .await?
    .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(packages: &[&str], user: &str) -> DebianRootfs {
        DebianRootfs {
            suite: "bookworm".into(),
            packages: packages.iter().map(|s| s.to_string()).collect(),
            user: user.into(),
            disk_gb: 4,
        }
    }

    #[test]
    fn the_key_follows_what_goes_into_the_image() {
        let a = d(&["nginx-light", "ffmpeg"], "admin");
        // The order of the playbook's list, and repeating a base package, change nothing.
        assert_eq!(
            image_key(&a),
            image_key(&d(&["ffmpeg", "sudo", "nginx-light"], "admin"))
        );
        assert_ne!(image_key(&a), image_key(&d(&["nginx-light"], "admin")));
        assert_ne!(
            image_key(&a),
            image_key(&d(&["nginx-light", "ffmpeg"], "root"))
        );
        assert!(packages(&a).contains(&"openssh-server".to_string()));
    }

    #[test]
    fn stable_suites_get_their_updates_and_security_archives() {
        assert_eq!(mirrors("bookworm").len(), 3);
        assert!(mirrors("bookworm")[2].contains("bookworm-security"));
        assert_eq!(mirrors("sid").len(), 1);
    }
}
