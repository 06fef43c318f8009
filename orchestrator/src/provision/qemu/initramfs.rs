//! The guest's initramfs, built per run: static busybox, dropbear with a per-run
//! host key (pinned in known_hosts) and the run's user key, perf and the workload's
//! tools with their shared libraries, a packaged kernel's modules.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{anyhow, bail, Context, Result};

use super::{which, KernelImage};
use crate::model::Role;

/// The shared libraries a binary needs, from `ldd` (the loader included).
fn libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = std::process::Command::new("ldd").arg(bin).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect())
}

fn copy_into(root: &Path, file: &Path) -> Result<()> {
    let dest = root.join(file.strip_prefix("/").unwrap_or(file));
    if dest.exists() {
        return Ok(());
    }
    if let Some(p) = dest.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::copy(file, &dest)
        .with_context(|| format!("cannot copy {} into the initramfs", file.display()))?;
    Ok(())
}

/// The guest's /init: mounts, network, perf permissions, dropbear, a ready line.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc p /proc; mount -t sysfs s /sys; mount -t devtmpfs d /dev
mkdir -p /dev/pts /dev/shm; mount -t devpts d /dev/pts; mount -t tmpfs t /tmp; mount -t tmpfs t /dev/shm
mount -t debugfs d /sys/kernel/debug 2>/dev/null; mount -t tracefs t /sys/kernel/tracing 2>/dev/null
K=$(uname -r); [ -d /lib/modules/$K ] && for m in $(cat /lib/modules/$K/order 2>/dev/null); do insmod /lib/modules/$K/$m.ko 2>/dev/null; done
hostname "$(cat /etc/hostname)"
ip link set lo up; ip addr add 10.0.2.15/24 dev eth0; ip link set eth0 up; ip route add default via 10.0.2.2
echo -1 > /proc/sys/kernel/perf_event_paranoid; echo 0 > /proc/sys/kernel/kptr_restrict
/usr/sbin/dropbear -s -p 22 -r /etc/dropbear/hostkey
echo "KDELTA-READY $K"
exec setsid cttyhack sh -c 'while :; do sh; done'
"#;

/// Builds the guest's initramfs under `dir`; returns its path and the host key line
/// (`ssh-ed25519 AAAA…`) to pin.
pub fn build_initramfs(
    dir: &Path,
    role: Role,
    tools: &[String],
    user_pubkey: &str,
    kernel: &KernelImage,
) -> Result<(PathBuf, String)> {
    let root = dir.join(format!("initramfs-{role}"));
    let _ = std::fs::remove_dir_all(&root);
    let res = fill(&root, role, tools, user_pubkey, kernel).and_then(|host_line| {
        let cpio = dir.join(format!("initramfs-{role}.cpio"));
        pack(&root, &cpio)?;
        Ok((cpio, host_line))
    });
    let _ = std::fs::remove_dir_all(&root);
    res
}

/// The guest's tree: busybox, dropbear, perf and the tools with their libraries,
/// keys, users, modules, /init. Returns the host key line.
fn fill(
    root: &Path,
    role: Role,
    tools: &[String],
    user_pubkey: &str,
    kernel: &KernelImage,
) -> Result<String> {
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc/dropbear",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root/.ssh",
        "run",
        "var/tmp",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        bail!("/bin/busybox not found: install busybox-static (the guest's shell and tools)");
    }
    copy_into(root, busybox)?;
    let wanted = ["dropbear", "perf"]
        .iter()
        .map(|s| s.to_string())
        .chain(tools.iter().cloned());
    for t in wanted {
        let p = which(&t).ok_or_else(|| {
            anyhow!("{role}: `{t}` is not installed here, and the guest gets its tools from this machine (install it: dropbear-bin, linux-perf, {t} …)")
        })?;
        install_binary(root, &p)?;
    }
    let host_line = host_key(root)?;
    users(root, role, user_pubkey)?;
    modules(root, kernel)?;
    std::fs::write(root.join("init"), INIT)?;
    std::fs::set_permissions(root.join("init"), std::fs::Permissions::from_mode(0o755))?;
    Ok(host_line)
}

/// A binary under its own name (wrapper symlinks resolved to the real file) with
/// the libraries it loads.
fn install_binary(root: &Path, bin: &Path) -> Result<()> {
    let real = std::fs::canonicalize(bin)?;
    let dest = root.join(bin.strip_prefix("/").unwrap_or(bin));
    if let Some(p) = dest.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::copy(&real, &dest)?;
    for lib in libraries(&real)? {
        copy_into(root, &lib)?;
        // Libraries are often found through /lib → /usr/lib: keep both paths working.
        let canon = std::fs::canonicalize(&lib)?;
        copy_into(root, &canon)?;
    }
    Ok(())
}

/// A fresh dropbear host key for this run; returns its public line to pin.
fn host_key(root: &Path) -> Result<String> {
    let hostkey = root.join("etc/dropbear/hostkey");
    let st = std::process::Command::new("dropbearkey")
        .args(["-t", "ed25519", "-f"])
        .arg(&hostkey)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("dropbearkey not found: install dropbear-bin")?;
    if !st.success() {
        bail!("dropbearkey failed");
    }
    let pubout = std::process::Command::new("dropbearkey")
        .arg("-y")
        .arg("-f")
        .arg(&hostkey)
        .output()?;
    String::from_utf8_lossy(&pubout.stdout)
        .lines()
        .find(|l| l.starts_with("ssh-"))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .ok_or_else(|| anyhow!("dropbearkey -y printed no public key"))
}

/// root with the run's key, and the files a shell login needs.
fn users(root: &Path, role: Role, user_pubkey: &str) -> Result<()> {
    std::fs::write(root.join("root/.ssh/authorized_keys"), user_pubkey)?;
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    std::fs::write(root.join("etc/shells"), "/bin/sh\n")?;
    std::fs::write(root.join("etc/hostname"), format!("kdelta-{role}\n"))?;
    std::fs::set_permissions(
        root.join("root/.ssh"),
        std::fs::Permissions::from_mode(0o700),
    )?;
    std::fs::set_permissions(
        root.join("root/.ssh/authorized_keys"),
        std::fs::Permissions::from_mode(0o600),
    )?;
    Ok(())
}

/// A module as busybox's `insmod` loads it: uncompressed. `.zst` through the zstd
/// crate; `.xz` and `.gz` through `xz`/`gzip`, which Debian always has (no crate
/// is linked for two formats read once per kernel package).
fn unpacked_module(from: &Path, to: &Path) -> Result<()> {
    let name = from.to_string_lossy();
    let tool = if name.ends_with(".ko.zst") {
        let data = std::fs::read(from)?;
        let raw = zstd::decode_all(data.as_slice())
            .with_context(|| format!("{}: not zstd", from.display()))?;
        std::fs::write(to, raw)?;
        return Ok(());
    } else if name.ends_with(".ko.xz") {
        "xz"
    } else if name.ends_with(".ko.gz") {
        "gzip"
    } else {
        std::fs::copy(from, to)?;
        return Ok(());
    };
    let out = std::process::Command::new(tool)
        .arg("-dc")
        .arg(from)
        .output()
        .with_context(|| {
            format!(
                "cannot run {tool} to unpack {} (apt-get install xz-utils gzip)",
                from.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "{tool} -dc {}: {}",
            from.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::write(to, out.stdout)?;
    Ok(())
}

/// A packaged kernel's modules in load order, and its config where facts look.
fn modules(root: &Path, kernel: &KernelImage) -> Result<()> {
    let Some(rel) = &kernel.release else {
        return Ok(());
    };
    let mdir = root.join("lib/modules").join(rel);
    std::fs::create_dir_all(&mdir)?;
    let mut order = String::new();
    for m in &kernel.modules {
        let file = m.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let name = super::package::module_stem(file).unwrap_or(file);
        unpacked_module(m, &mdir.join(format!("{name}.ko")))?;
        order.push_str(name);
        order.push('\n');
    }
    std::fs::write(mdir.join("order"), order)?;
    if let Some(c) = &kernel.config {
        std::fs::create_dir_all(root.join("boot"))?;
        std::fs::copy(c, root.join("boot").join(format!("config-{rel}")))?;
    }
    Ok(())
}

/// `cpio -o -H newc` of the tree.
fn pack(root: &Path, cpio: &Path) -> Result<()> {
    let mut files = Vec::new();
    list_files(root, root, &mut files)?;
    let mut child = std::process::Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(cpio)?)
        .spawn()
        .context("cpio not found: install cpio")?;
    {
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("cpio stdin"))?;
        for f in &files {
            writeln!(stdin, "{f}")?;
        }
    }
    if !child.wait()?.success() {
        bail!("cpio failed building {}", cpio.display());
    }
    Ok(())
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
        out.push(rel);
        if e.file_type()?.is_dir() {
            list_files(root, &p, out)?;
        }
    }
    Ok(())
}

/// Stage 1 of a Debian guest: loads the kernel's boot modules, mounts the guest's
/// disk, writes this run's files into it (host key, the login user's key, the
/// hostname, a packaged kernel's config), mounts a packaged kernel's modules disk
/// at /lib/modules/<release>, and hands over to systemd. A disk it cannot mount
/// powers the guest off, so kdelta reports the console instead of waiting.
const STAGE1_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc p /proc; mount -t sysfs s /sys; mount -t devtmpfs d /dev
K=$(uname -r)
[ -f /lib/modules/$K/order ] && for m in $(cat /lib/modules/$K/order); do insmod /lib/modules/$K/$m.ko || echo "kdelta: insmod $m failed"; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
mkdir -p /newroot
if ! mount -t ext4 /dev/vda /newroot; then
  echo "KDELTA-ROOT-FAILED: cannot mount /dev/vda: the kernel needs virtio_blk and ext4 (built in, or as modules of its package)"
  poweroff -f
fi
cp -a /inject/. /newroot/
chmod 600 /newroot/etc/ssh/ssh_host_ed25519_key
U=$(cat /login_user)
if [ "$U" = root ]; then H=/newroot/root; else H=/newroot/home/$U; fi
mkdir -p $H/.ssh; cp /authorized_keys $H/.ssh/authorized_keys
ids=$(sed -n "s/^$U:[^:]*:\([0-9]*\):\([0-9]*\):.*/\1:\2/p" /newroot/etc/passwd)
[ -n "$ids" ] && chown -R $ids $H/.ssh
chmod 700 $H/.ssh; chmod 600 $H/.ssh/authorized_keys
if [ -b /dev/vdb ]; then mkdir -p /newroot/lib/modules/$K && mount -t ext4 -o ro /dev/vdb /newroot/lib/modules/$K; fi
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
"#;

/// Builds a Debian guest's stage-1 initramfs under `dir`; returns its path and the
/// guest's new host key line (`ssh-ed25519 AAAA…`) to pin.
pub fn build_stage1(
    dir: &Path,
    role: Role,
    user: &str,
    user_pubkey: &str,
    kernel: &KernelImage,
) -> Result<(PathBuf, String)> {
    let root = dir.join(format!("stage1-{role}"));
    let _ = std::fs::remove_dir_all(&root);
    let res = fill_stage1(&root, role, user, user_pubkey, kernel).and_then(|host_line| {
        let cpio = dir.join(format!("stage1-{role}.cpio"));
        pack(&root, &cpio)?;
        Ok((cpio, host_line))
    });
    let _ = std::fs::remove_dir_all(&root);
    res
}

fn fill_stage1(
    root: &Path,
    role: Role,
    user: &str,
    user_pubkey: &str,
    kernel: &KernelImage,
) -> Result<String> {
    for d in ["bin", "proc", "sys", "dev", "newroot", "inject/etc/ssh"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        bail!("/bin/busybox not found: install busybox-static (the guest's first stage)");
    }
    copy_into(root, busybox)?;
    let key = root.join("inject/etc/ssh/ssh_host_ed25519_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-C")
        .arg(format!("kdelta-{role}"))
        .arg("-f")
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("ssh-keygen not found: install openssh-client")?;
    if !st.success() {
        bail!("ssh-keygen failed making the guest's host key");
    }
    let host_line = std::fs::read_to_string(key.with_extension("pub"))?
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let name = format!("kdelta-{role}");
    std::fs::write(root.join("inject/etc/hostname"), format!("{name}\n"))?;
    std::fs::write(
        root.join("inject/etc/hosts"),
        format!(
            "127.0.0.1 localhost\n127.0.1.1 {name}\n::1 localhost ip6-localhost ip6-loopback\n"
        ),
    )?;
    std::fs::write(root.join("login_user"), user)?;
    std::fs::write(root.join("authorized_keys"), user_pubkey)?;
    modules(root, kernel)?;
    // The config where the facts look for it (packaged kernels have no /proc/config.gz).
    if let (Some(c), Some(rel)) = (&kernel.config, &kernel.release) {
        std::fs::create_dir_all(root.join("inject/boot"))?;
        std::fs::copy(c, root.join("inject/boot").join(format!("config-{rel}")))?;
    }
    std::fs::write(root.join("init"), STAGE1_INIT)?;
    std::fs::set_permissions(root.join("init"), std::fs::Permissions::from_mode(0o755))?;
    Ok(host_line)
}
