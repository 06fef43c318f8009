//! The `qemu` provider: two real kernels on one machine.
//!
//! A host is a QEMU guest (TCG, or KVM when /dev/kvm is usable) booted from:
//! - a kernel **built from source**: a Debian `linux-source-X` package or a kernel
//!   tree, a base config (`tinyconfig`, `defconfig`), config fragments and inline
//!   options, merged with the kernel's own `merge_config.sh`, completed by
//!   `olddefconfig` and checked: every requested option must have survived. Images
//!   are cached by a fingerprint of the source version and the final `.config`
//!   (`~/.cache/kdelta/kernels/<fingerprint>/`), so a second run boots in seconds;
//!   the build folder is kept per fingerprint, so an interrupted build resumes;
//! - a **Debian kernel package** (`linux-image-rt-amd64` resolves to the current ABI),
//!   downloaded once into the cache, with its virtio modules loaded at boot;
//! - a **local image** (`bzImage`/`vmlinuz`).
//!
//! The guest runs from an initramfs kdelta builds per run: static busybox, dropbear
//! with a per-run host key (pinned in known_hosts) and the run's user key, perf and
//! the workload's tools with their shared libraries. User networking is restricted
//! to the guest (`restrict=on`): the only way in is SSH forwarded from a free
//! 127.0.0.1 port, and the guest cannot reach any network. The serial console is
//! logged to the run directory; `panic=-1 -no-reboot` turn a panic into an exit.
//! QEMU is killed by its PID at teardown, always.

pub mod guest;
pub mod initramfs;
pub mod kernel;
pub mod package;
mod reuse;
pub mod rootfs;
pub mod vm;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{with_ledger, Host, Provisioner};
use crate::exec::remote::ConnectSpec;
use crate::model::{ProviderKind, Role};
use crate::playbook::Become;
use crate::playbook::{HostSpec, KernelSpec, QemuSpec, Rootfs, SourceTree};
use crate::rundir::{write_json, RunDir};

/// Where kernels, unpacked sources and build folders are kept between runs:
/// `$KDELTA_CACHE`, else `$XDG_CACHE_HOME/kdelta`, else `~/.cache/kdelta`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KDELTA_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("kdelta");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/kdelta")
}

/// A bootable kernel and how it was obtained (written to `hosts/<role>/kernel.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KernelImage {
    pub image: PathBuf,
    pub config: Option<PathBuf>,
    /// `uname -r` of the kernel, when known (packages): names /lib/modules and /boot/config-*.
    #[serde(default)]
    pub release: Option<String>,
    /// Modules the guest loads at boot, in order (a packaged kernel's virtio drivers).
    #[serde(default)]
    pub modules: Vec<PathBuf>,
    /// A packaged kernel's whole `lib/modules/<release>` folder (depmod'ed), which a
    /// Debian guest mounts.
    #[serde(default)]
    pub modules_dir: Option<PathBuf>,
    pub provenance: serde_json::Value,
}

pub(crate) fn which(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        return Some(PathBuf::from(tool));
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file());
    found
}

/// Per-run material of the guests: keys, known_hosts, initramfs images.
struct GuestKeys {
    dir: PathBuf,
    key: PathBuf,
    pubkey: String,
    known_hosts: PathBuf,
}

/// A fresh user key for this run's guests, in a private folder teardown removes.
async fn guest_keys(p: &Provisioner<'_>) -> Result<GuestKeys> {
    let dir = std::env::temp_dir().join(format!("kdq-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    with_ledger(p.ledger, |l| l.qemu_dir = Some(dir.clone()));
    guest_keys_in(&dir).await
}

/// A fresh user key in `dir` (a private folder that exists).
async fn guest_keys_in(dir: &Path) -> Result<GuestKeys> {
    let key = dir.join("id_ed25519");
    let st = tokio::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "kdelta-run", "-f"])
        .arg(&key)
        .status()
        .await
        .context("ssh-keygen not found: install openssh-client")?;
    if !st.success() {
        bail!("ssh-keygen failed");
    }
    let pubkey = std::fs::read_to_string(dir.join("id_ed25519.pub"))?;
    Ok(GuestKeys {
        known_hosts: dir.join("known_hosts"),
        dir: dir.to_path_buf(),
        key,
        pubkey,
    })
}

/// Builds (or takes from the cache) each guest's kernel (and a Debian guest's root
/// filesystem), builds its initramfs with per-run keys, boots it and pins its host
/// key. Kernels are built one after the other (they share the CPUs); a guest is in
/// the ledger from the moment QEMU runs.
pub(super) async fn provision(
    p: &Provisioner<'_>,
    rd: &RunDir,
    guests: &[(&HostSpec, &QemuSpec)],
) -> Result<Vec<Host>> {
    let keys = guest_keys(p).await?;
    let mut kernels = Vec::new();
    for (spec, q) in guests {
        let hd = rd.host(spec.role);
        hd.ensure()?;
        let k = kernel::prepare_kernel(q, spec.role, &hd.kernel_build_log(), p.progress)
            .await
            .with_context(|| format!("{}: preparing the kernel", spec.role))?;
        write_json(&hd.kernel_json(), &k)?;
        if let Rootfs::Debian(d) = &q.rootfs {
            rootfs::ensure_image(d, &hd.rootfs_log(), p.progress, spec.role.as_str())
                .await
                .with_context(|| format!("{}: the Debian root filesystem", spec.role))?;
        }
        kernels.push(k);
    }
    let mut kh = String::new();
    let mut hosts = Vec::new();
    for ((spec, q), k) in guests.iter().zip(&kernels) {
        let hd = rd.host(spec.role);
        let (media, host_line) =
            guest_media(&keys, spec.role, q, k, &hd.rootfs_log(), p.progress).await?;
        p.progress.step(spec.role.as_str(), "booting the guest");
        let vms = with_ledger(p.ledger, |l| l.vms.clone());
        let started = Instant::now();
        let (port, crashed_once) = vm::boot(
            q,
            spec.role,
            k,
            &media,
            &hd.console_log(),
            &vms,
            boot_timeout(q),
        )
        .await?;
        if crashed_once {
            p.progress.done(
                spec.role.as_str(),
                &vm::crashed_once_note(&hd.console_log()),
            );
        }
        p.progress.done(
            spec.role.as_str(),
            &format!(
                "guest up in {:.1}s (ssh on 127.0.0.1:{port})",
                started.elapsed().as_secs_f64()
            ),
        );
        kh.push_str(&format!("[127.0.0.1]:{port} {host_line}\n"));
        std::fs::write(&keys.known_hosts, &kh)?;
        hosts.push(Host {
            role: spec.role,
            provider: ProviderKind::Qemu,
            work_dir: "/tmp".into(),
            address: "127.0.0.1".into(),
            connect: connect_spec(
                spec.role,
                port,
                login_user(q),
                &keys.key,
                &keys.known_hosts,
                p.control,
                p.plan.timeouts.connect,
            ),
        });
    }
    Ok(hosts)
}

/// How long a guest may take to come up: a Debian guest runs systemd (TCG: 15-60 s,
/// several minutes with KASAN).
fn boot_timeout(q: &QemuSpec) -> Duration {
    match q.rootfs {
        Rootfs::Initramfs => Duration::from_secs(300),
        Rootfs::Debian(_) => Duration::from_secs(600),
    }
}

/// The user kdelta logs in as.
pub fn login_user(q: &QemuSpec) -> &str {
    match &q.rootfs {
        Rootfs::Initramfs => "root",
        Rootfs::Debian(d) => &d.user,
    }
}

/// What a guest boots from, made in the run's private folder: the whole guest in
/// an initramfs, or a Debian guest's stage 1, its overlay over the cached image
/// (made first if needed) and a packaged kernel's modules disk. Returns the media
/// and the host key line to pin.
async fn guest_media(
    keys: &GuestKeys,
    role: Role,
    q: &QemuSpec,
    k: &KernelImage,
    log: &Path,
    progress: &crate::progress::Progress,
) -> Result<(vm::Media, String)> {
    progress.step(role.as_str(), "building the initramfs");
    let (dir, pubkey, k2) = (keys.dir.clone(), keys.pubkey.clone(), k.clone());
    match &q.rootfs {
        Rootfs::Initramfs => {
            let tools = q.tools.clone();
            let (cpio, host_line) = tokio::task::spawn_blocking(move || {
                initramfs::build_initramfs(&dir, role, &tools, &pubkey, &k2)
            })
            .await??;
            let media = vm::Media {
                initramfs: cpio,
                disks: vec![],
                reboot: false,
            };
            Ok((media, host_line))
        }
        Rootfs::Debian(d) => {
            let base = rootfs::ensure_image(d, log, progress, role.as_str()).await?;
            let user = d.user.clone();
            let (cpio, host_line) = tokio::task::spawn_blocking(move || {
                initramfs::build_stage1(&dir, role, &user, &pubkey, &k2)
            })
            .await??;
            let disk = keys.dir.join(format!("disk-{role}.qcow2"));
            rootfs::overlay(&base, &disk, log).await?;
            let mut disks = vec![(disk, "qcow2", false)];
            if let Some(m) = &k.modules_dir {
                disks.push((rootfs::modules_image(m, log).await?, "raw", true));
            }
            let media = vm::Media {
                initramfs: cpio,
                disks,
                reboot: true,
            };
            Ok((media, host_line))
        }
    }
}

/// What a guest needs from this machine, checked without booting anything:
/// `Ok(summary)` or the list of problems with the fix for each.
pub fn preflight(q: &QemuSpec, role: Role) -> Result<String> {
    let mut problems = Vec::new();
    for (tool, pkg) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("dropbear", "dropbear-bin"),
        ("dropbearkey", "dropbear-bin"),
        ("perf", "linux-perf"),
        ("cpio", "cpio"),
        ("ssh-keygen", "openssh-client"),
    ] {
        if which(tool).is_none() {
            problems.push(format!("{tool} missing (apt-get install {pkg})"));
        }
    }
    if !Path::new("/bin/busybox").is_file() {
        problems.push("/bin/busybox missing (apt-get install busybox-static)".into());
    }
    if let Rootfs::Debian(_) = q.rootfs {
        problems.extend(rootfs::missing_tools());
    }
    for t in &q.tools {
        if which(t).is_none() {
            problems.push(format!(
                "tool `{t}` is not installed here (the guest gets it from this machine)"
            ));
        }
    }
    let what = match &q.kernel {
        KernelSpec::Image { path } => format!("image {}", path.display()),
        KernelSpec::Package { name } => {
            for (tool, pkg) in [("apt-get", "apt"), ("dpkg-deb", "dpkg"), ("depmod", "kmod")] {
                if which(tool).is_none() {
                    problems.push(format!(
                        "{tool} missing ({pkg}): kernel packages need Debian's tools"
                    ));
                }
            }
            format!("package {name}")
        }
        KernelSpec::Source {
            source,
            base,
            fragments,
            options,
            ..
        } => {
            if let SourceTree::DebianPackage(name) = source {
                if !Path::new(&format!("/usr/src/{name}.tar.xz")).is_file() {
                    problems.push(format!("/usr/src/{name}.tar.xz missing (apt-get install {name} build-essential flex bison bc libelf-dev libssl-dev)"));
                }
            }
            for tool in ["make", "gcc", "flex", "bison", "bc"] {
                if which(tool).is_none() {
                    problems.push(format!("{tool} missing to build the kernel (apt-get install build-essential flex bison bc libelf-dev libssl-dev)"));
                }
            }
            format!(
                "{} {base} + {} fragment(s) + {} option(s)",
                match source {
                    SourceTree::DebianPackage(n) => n.clone(),
                    SourceTree::Path(p) => p.display().to_string(),
                },
                fragments.len(),
                options.len()
            )
        }
    };
    if problems.is_empty() {
        Ok(format!(
            "{role}: qemu guest ready to build and boot ({what}; kernels cached in {})",
            cache_dir().join("kernels").display()
        ))
    } else {
        bail!(
            "{role}: qemu guest cannot run here: {}",
            problems.join("; ")
        )
    }
}

/// How to reach a booted guest.
pub fn connect_spec(
    role: Role,
    port: u16,
    user: &str,
    key: &Path,
    known_hosts: &Path,
    control: &Path,
    connect_timeout: u64,
) -> ConnectSpec {
    ConnectSpec {
        role,
        destination: "127.0.0.1".into(),
        port: Some(port),
        user: Some(user.to_string()),
        keyfile: Some(key.to_path_buf()),
        known_hosts_file: Some(known_hosts.to_path_buf()),
        accept_new: false,
        control_dir: control.to_path_buf(),
        become_: Become::No,
        connect_timeout: Duration::from_secs(connect_timeout),
        retry_for: Duration::from_secs(connect_timeout * 3),
    }
}
