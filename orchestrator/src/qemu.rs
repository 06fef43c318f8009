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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::kconfig::KernelConfig;
use crate::playbook::{KernelSpec, QemuSpec, SourceTree};
use crate::progress::Progress;
use crate::remote::ConnectSpec;

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
    pub provenance: serde_json::Value,
}

/// The virtio network driver and what it needs, in load order (Debian's generic and
/// RT kernels build them as modules).
const GUEST_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];

/// A Debian kernel package: resolves a meta package (`linux-image-rt-amd64`) to the
/// current ABI (`linux-image-6.1.0-28-rt-amd64`), downloads it once into the cache and
/// extracts the image, its config and the guest's modules.
async fn package_kernel(name: &str, log: &Path) -> Result<KernelImage> {
    // `linux-image-6.1.0-28-rt-amd64` carries an ABI; `linux-image-rt-amd64` does not.
    let versioned = |n: &str| {
        n.strip_prefix("linux-image-")
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    };
    let mut resolved = name.to_string();
    for _ in 0..3 {
        if versioned(&resolved) {
            break;
        }
        let out = tokio::process::Command::new("apt-cache")
            .args(["depends", "--no-recommends", "--no-suggests", &resolved])
            .output()
            .await
            .context("apt-cache not found: the package path needs Debian's apt")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let next = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .map(str::trim)
            .find(|d| d.starts_with("linux-image-"));
        match next {
            Some(n) => resolved = n.to_string(),
            None => bail!(
                "{name}: apt-cache names no linux-image dependency (is `apt-get update` done?)"
            ),
        }
    }
    let cache = cache_dir().join("packages");
    let dir = cache.join(&resolved);
    let marker = dir.join(".extracted");
    if !marker.is_file() {
        std::fs::create_dir_all(&cache)?;
        let dl = cache.join("debs");
        std::fs::create_dir_all(&dl)?;
        run_logged(
            tokio::process::Command::new("apt-get")
                .args(["download", &resolved])
                .current_dir(&dl),
            &format!("apt-get download {resolved}"),
            log,
        )
        .await
        .with_context(|| format!("cannot download {resolved} (is `apt-get update` done and the package in your sources?)"))?;
        let deb = std::fs::read_dir(&dl)?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{resolved}_")) && n.ends_with(".deb"))
            })
            .ok_or_else(|| {
                anyhow!(
                    "apt-get download left no {resolved}_*.deb in {}",
                    dl.display()
                )
            })?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut patterns = vec!["./boot/*".to_string()];
        patterns.extend(GUEST_MODULES.iter().map(|m| format!("*/{m}.ko")));
        let script = format!(
            "dpkg-deb --fsys-tarfile {} | tar -x -C {} --wildcards {}",
            crate::shell::quote(&deb.display().to_string()),
            crate::shell::quote(&dir.display().to_string()),
            patterns
                .iter()
                .map(|p| crate::shell::quote(p))
                .collect::<Vec<_>>()
                .join(" ")
        );
        run_logged(
            tokio::process::Command::new("sh").arg("-c").arg(&script),
            &format!("extract {}", deb.display()),
            log,
        )
        .await?;
        std::fs::write(&marker, "")?;
    }
    let boot = dir.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .with_context(|| format!("{resolved}: no /boot in the package"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .ok_or_else(|| {
            anyhow!("{resolved}: the package has no /boot/vmlinuz-*: is it a kernel image package?")
        })?;
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_default()
        .to_string();
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    find_modules(&dir.join("lib"), &mut found);
    find_modules(&dir.join("usr/lib"), &mut found);
    // Built-in drivers have no .ko: load what exists, in dependency order.
    let modules: Vec<PathBuf> = GUEST_MODULES
        .iter()
        .filter_map(|m| found.get(*m).cloned())
        .collect();
    let config = boot.join(format!("config-{release}"));
    Ok(KernelImage {
        image: vmlinuz,
        config: config.is_file().then_some(config),
        release: Some(release.clone()),
        modules,
        provenance: serde_json::json!({ "package": name, "resolved": resolved, "release": release }),
    })
}

fn find_modules(dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            find_modules(&p, out);
        } else if let Some(stem) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ko"))
        {
            out.insert(stem.to_string(), p.clone());
        }
    }
}

/// Runs a command, its output appended to `log`; fails with the log's tail. The
/// command runs in its own process group, killed whole if the future is dropped
/// (Ctrl-C during a kernel build must not leave `make` and its compilers behind).
async fn run_logged(cmd: &mut tokio::process::Command, what: &str, log: &Path) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    writeln!(f, "\n$ {what}")?;
    let out = f.try_clone()?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(f));
    let status = crate::local::run_in_group(cmd, None, what)
        .await?
        .map(|o| o.status)
        .ok_or_else(|| anyhow!("{what}: no exit status"))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        bail!(
            "{what} failed ({status}); last lines of {}:\n{}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

/// The unpacked source tree and a string that identifies its version.
async fn source_tree(src: &SourceTree, log: &Path) -> Result<(PathBuf, String)> {
    match src {
        SourceTree::Path(p) => {
            let out = tokio::process::Command::new("make")
                .arg("-s")
                .arg("-C")
                .arg(p)
                .arg("kernelversion")
                .output()
                .await
                .with_context(|| format!("cannot run make in {}", p.display()))?;
            let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if v.is_empty() {
                bail!(
                    "{}: `make kernelversion` printed nothing: is it a kernel tree?",
                    p.display()
                );
            }
            Ok((p.clone(), format!("{} {v}", p.display())))
        }
        SourceTree::DebianPackage(name) => {
            let tarball = PathBuf::from(format!("/usr/src/{name}.tar.xz"));
            if !tarball.is_file() {
                bail!("{} not found: install the kernel source with `apt-get install {name}` (and build-essential flex bison bc libelf-dev libssl-dev cpio)", tarball.display());
            }
            let ver = tokio::process::Command::new("dpkg-query")
                .args(["-W", "-f", "${Version}", name])
                .output()
                .await
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            let root = cache_dir().join("src");
            let tree = root.join(name);
            let marker = root.join(format!("{name}.unpacked"));
            let want = format!("{ver}\n");
            if std::fs::read_to_string(&marker).ok().as_deref() != Some(want.as_str()) {
                std::fs::create_dir_all(&root)?;
                let _ = std::fs::remove_dir_all(&tree);
                run_logged(
                    tokio::process::Command::new("tar")
                        .arg("xf")
                        .arg(&tarball)
                        .arg("-C")
                        .arg(&root),
                    &format!("tar xf {}", tarball.display()),
                    log,
                )
                .await?;
                std::fs::write(&marker, &want)?;
            }
            Ok((tree, format!("{name} {ver}")))
        }
    }
}

/// Options a fragment or the inline list asks for, as `name → value` (`n` = off).
pub fn requested_options(
    fragments: &[PathBuf],
    inline: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for f in fragments {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read fragment {}", f.display()))?;
        // `# CONFIG_X is not set` parses as `n`.
        out.extend(KernelConfig::parse(&text).options);
    }
    for (k, v) in inline {
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

/// Requested options whose final value differs: `(option, requested, got)`.
pub fn lost_options(
    requested: &BTreeMap<String, String>,
    fin: &KernelConfig,
) -> Vec<(String, String, String)> {
    requested
        .iter()
        .filter_map(|(k, want)| {
            let got = fin.get(k);
            let same = got == want.trim_matches('"')
                || (want == "n" && got == "n")
                || got.trim_matches('"') == want.trim_matches('"');
            (!same).then(|| (k.clone(), want.clone(), got.to_string()))
        })
        .collect()
}

/// Builds (or finds in the cache) the kernel a host asks for.
pub async fn prepare_kernel(
    spec: &QemuSpec,
    role: &str,
    log: &Path,
    progress: &Progress,
) -> Result<KernelImage> {
    match &spec.kernel {
        KernelSpec::Image { path } => Ok(KernelImage {
            image: path.clone(),
            config: None,
            release: None,
            modules: vec![],
            provenance: serde_json::json!({ "image": path }),
        }),
        KernelSpec::Package { name } => {
            progress.step(role, &format!("kernel: package {name}"));
            let k = package_kernel(name, log).await?;
            progress.done(
                role,
                &format!(
                    "kernel {} from {}",
                    k.release.as_deref().unwrap_or("?"),
                    name
                ),
            );
            Ok(k)
        }
        KernelSpec::Source {
            source,
            base,
            fragments,
            options,
        } => {
            progress.step(role, "kernel: preparing the source");
            let (tree, version) = source_tree(source, log).await?;
            let cache = cache_dir();
            let tmp = cache
                .join("build")
                .join(format!("cfg-{role}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp)?;
            progress.step(
                role,
                &format!(
                    "kernel: {base} + {} fragment(s)",
                    fragments.len() + usize::from(!options.is_empty())
                ),
            );
            run_logged(
                tokio::process::Command::new("make")
                    .arg("-C")
                    .arg(&tree)
                    .arg(format!("O={}", tmp.display()))
                    .arg(base),
                &format!("make {base}"),
                log,
            )
            .await?;
            // merge_config.sh runs in the source tree: absolute paths.
            let mut frags: Vec<PathBuf> = fragments
                .iter()
                .map(|f| {
                    std::fs::canonicalize(f).with_context(|| format!("fragment {}", f.display()))
                })
                .collect::<Result<_>>()?;
            if !options.is_empty() {
                let inline = tmp.join("kdelta-inline.config");
                let text: String = options
                    .iter()
                    .map(|(k, v)| {
                        if v == "n" {
                            format!("# {k} is not set\n")
                        } else {
                            format!("{k}={v}\n")
                        }
                    })
                    .collect();
                std::fs::write(&inline, text)?;
                frags.push(inline);
            }
            if !frags.is_empty() {
                let mut cmd = tokio::process::Command::new("sh");
                cmd.arg(tree.join("scripts/kconfig/merge_config.sh"))
                    .arg("-m")
                    .arg("-O")
                    .arg(&tmp)
                    .arg(tmp.join(".config"))
                    .args(&frags)
                    .current_dir(&tree);
                run_logged(&mut cmd, "merge_config.sh", log).await?;
            }
            run_logged(
                tokio::process::Command::new("make")
                    .arg("-C")
                    .arg(&tree)
                    .arg(format!("O={}", tmp.display()))
                    .arg("olddefconfig"),
                "make olddefconfig",
                log,
            )
            .await?;
            let final_text = std::fs::read_to_string(tmp.join(".config"))?;
            let fin = KernelConfig::parse(&final_text);
            let requested = requested_options(fragments, options)?;
            let lost = lost_options(&requested, &fin);
            if !lost.is_empty() {
                let _ = std::fs::remove_dir_all(&tmp);
                bail!(
                    "{role}: the kernel config lost {} requested option(s) in olddefconfig (a dependency is off, or the option does not exist in {version}): {}",
                    lost.len(),
                    lost.iter()
                        .map(|(k, w, g)| format!("{k}: asked {w}, got {g}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
            // The identity of the image: source version and final config, without
            // the config's generated header (it names the build time).
            let body: String = final_text
                .lines()
                .filter(|l| {
                    !l.starts_with("# Automatically generated") && !l.starts_with("# Linux/")
                })
                .map(|l| format!("{l}\n"))
                .collect();
            let key = crate::history::fingerprint(format!("{version}\n{body}").as_bytes());
            let out = cache.join("kernels").join(&key);
            let image = out.join("bzImage");
            let started = Instant::now();
            let built = if image.is_file() {
                progress.done(role, &format!("kernel {key} from the cache"));
                false
            } else {
                let build = cache.join("build").join(&key);
                if build.join(".config").is_file() {
                    // An earlier, interrupted build of the same config: continue it.
                    let _ = std::fs::remove_dir_all(&tmp);
                } else {
                    let _ = std::fs::remove_dir_all(&build);
                    std::fs::rename(&tmp, &build)?;
                }
                let jobs = std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2);
                progress.step(
                    role,
                    &format!(
                        "kernel: building {key} with {jobs} jobs (first time: minutes; log in {})",
                        log.display()
                    ),
                );
                run_logged(
                    tokio::process::Command::new("make")
                        .arg("-C")
                        .arg(&tree)
                        .arg(format!("O={}", build.display()))
                        .arg(format!("-j{jobs}"))
                        .arg("bzImage"),
                    "make bzImage",
                    log,
                )
                .await?;
                std::fs::create_dir_all(&out)?;
                let staged = out.join("bzImage.part");
                std::fs::copy(build.join("arch/x86/boot/bzImage"), &staged)?;
                std::fs::copy(build.join(".config"), out.join("config"))?;
                std::fs::rename(&staged, &image)?;
                progress.done(
                    role,
                    &format!(
                        "kernel {key} built in {:.0}s",
                        started.elapsed().as_secs_f64()
                    ),
                );
                true
            };
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(KernelImage {
                image,
                config: Some(out.join("config")),
                release: None,
                modules: vec![],
                provenance: serde_json::json!({
                    "source": version,
                    "base": base,
                    "fragments": fragments,
                    "options": options,
                    "fingerprint": key,
                    "built_now": built,
                    "build_seconds": if built { started.elapsed().as_secs_f64() } else { 0.0 },
                }),
            })
        }
    }
}

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

fn which(tool: &str) -> Option<PathBuf> {
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
    role: &str,
    tools: &[String],
    user_pubkey: &str,
    kernel: &KernelImage,
) -> Result<(PathBuf, String)> {
    let root = dir.join(format!("initramfs-{role}"));
    let _ = std::fs::remove_dir_all(&root);
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
    copy_into(&root, busybox)?;
    let mut bins: Vec<PathBuf> = Vec::new();
    for t in ["dropbear", "perf"]
        .iter()
        .map(|s| s.to_string())
        .chain(tools.iter().cloned())
    {
        let p = which(&t).ok_or_else(|| {
            anyhow!("{role}: `{t}` is not installed here, and the guest gets its tools from this machine (install it: dropbear-bin, linux-perf, {t} …)")
        })?;
        bins.push(p);
    }
    for b in &bins {
        // Resolve the wrapper symlinks to the real file, but install it under its name.
        let real = std::fs::canonicalize(b)?;
        let dest = root.join(b.strip_prefix("/").unwrap_or(b));
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::copy(&real, &dest)?;
        for lib in libraries(&real)? {
            copy_into(&root, &lib)?;
            // Libraries are often found through /lib → /usr/lib: keep both paths working.
            let canon = std::fs::canonicalize(&lib)?;
            copy_into(&root, &canon)?;
        }
    }
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
    let host_line = String::from_utf8_lossy(&pubout.stdout)
        .lines()
        .find(|l| l.starts_with("ssh-"))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .ok_or_else(|| anyhow!("dropbearkey -y printed no public key"))?;
    std::fs::write(root.join("root/.ssh/authorized_keys"), user_pubkey)?;
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    std::fs::write(root.join("etc/shells"), "/bin/sh\n")?;
    std::fs::write(root.join("etc/hostname"), format!("kdelta-{role}\n"))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("root/.ssh"),
        std::fs::Permissions::from_mode(0o700),
    )?;
    std::fs::set_permissions(
        root.join("root/.ssh/authorized_keys"),
        std::fs::Permissions::from_mode(0o600),
    )?;
    if let Some(rel) = &kernel.release {
        // Modules in load order, and the config where facts look for it.
        let mdir = root.join("lib/modules").join(rel);
        std::fs::create_dir_all(&mdir)?;
        let mut order = String::new();
        for m in &kernel.modules {
            let name = m.file_stem().and_then(|n| n.to_str()).unwrap_or_default();
            std::fs::copy(m, mdir.join(format!("{name}.ko")))?;
            order.push_str(name);
            order.push('\n');
        }
        std::fs::write(mdir.join("order"), order)?;
        if let Some(c) = &kernel.config {
            std::fs::create_dir_all(root.join("boot"))?;
            std::fs::copy(c, root.join("boot").join(format!("config-{rel}")))?;
        }
    }
    std::fs::write(root.join("init"), INIT)?;
    std::fs::set_permissions(root.join("init"), std::fs::Permissions::from_mode(0o755))?;
    let cpio = dir.join(format!("initramfs-{role}.cpio"));
    let mut files = Vec::new();
    list_files(&root, &root, &mut files)?;
    let mut child = std::process::Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&cpio)?)
        .spawn()
        .context("cpio not found: install cpio")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("cpio stdin"))?;
        for f in &files {
            writeln!(stdin, "{f}")?;
        }
    }
    if !child.wait()?.success() {
        bail!("cpio failed building {}", cpio.display());
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok((cpio, host_line))
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

/// A free TCP port on 127.0.0.1 (bound and released; QEMU binds it next).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// One file per running guest, named by QEMU's PID, written as soon as QEMU runs:
/// `kdelta lab down --all` kills the guests of a kdelta that was itself killed.
pub const VM_STATE_DIR: &str = "/run/kdelta/vms";

/// A running guest, for teardown.
#[derive(Debug)]
pub struct Vm {
    pub role: String,
    pub child: std::process::Child,
}

impl Vm {
    /// Kills QEMU and reaps it; true when it is gone.
    pub fn kill(&mut self) -> bool {
        let _ = self.child.kill();
        let gone = self.child.wait().is_ok();
        let _ = std::fs::remove_file(Path::new(VM_STATE_DIR).join(self.child.id().to_string()));
        gone
    }
}

/// Is `pid` a QEMU that kdelta started (its command line names a kdelta initramfs)?
fn is_our_qemu(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let c = String::from_utf8_lossy(&c);
            c.contains("qemu-system") && c.contains("/kdq-")
        })
        .unwrap_or(false)
}

/// Guests left by a kdelta that could not tear down (killed with SIGKILL):
/// `(pid, state file)`; state files of processes already gone are listed too.
pub fn leftovers() -> Vec<(u32, bool)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(VM_STATE_DIR) {
        for e in rd.flatten() {
            if let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() {
                out.push((pid, is_our_qemu(pid)));
            }
        }
    }
    out
}

/// Kills leftover guests and removes their state files; returns how many ran.
pub fn down_all() -> (usize, Vec<String>) {
    let mut n = 0;
    let mut errors = Vec::new();
    for (pid, alive) in leftovers() {
        if alive {
            // SAFETY: kill(2) on a PID whose command line we just checked.
            let r = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            if r != 0 {
                errors.push(format!(
                    "cannot kill QEMU pid {pid}: {}",
                    std::io::Error::last_os_error()
                ));
                continue;
            }
            n += 1;
        }
        let _ = std::fs::remove_file(Path::new(VM_STATE_DIR).join(pid.to_string()));
    }
    (n, errors)
}

/// Boots a guest and waits until its console says it is ready. The VM is pushed to
/// `vms` as soon as it exists, so teardown kills it even if the boot fails.
#[allow(clippy::too_many_arguments)]
pub async fn boot(
    spec: &QemuSpec,
    role: &str,
    image: &KernelImage,
    initramfs: &Path,
    console: &Path,
    vms: &std::sync::Mutex<Vec<Vm>>,
    boot_timeout: Duration,
) -> Result<u16> {
    let port = free_port()?;
    let mut cmd = std::process::Command::new("qemu-system-x86_64");
    cmd.args(["-accel", &spec.accel])
        .args([
            "-m",
            &spec.memory_mb.to_string(),
            "-smp",
            &spec.cpus.to_string(),
        ])
        .args([
            "-no-reboot",
            "-display",
            "none",
            "-monitor",
            "none",
            "-nodefaults",
        ])
        .arg("-kernel")
        .arg(&image.image)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .arg("-netdev")
        .arg(format!(
            "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22"
        ))
        .args(["-device", "virtio-net-pci,netdev=n0"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(console.with_extension("qemu.log"))?);
    let child = cmd
        .spawn()
        .context("qemu-system-x86_64 not found: install qemu-system-x86")?;
    let _ = std::fs::create_dir_all(VM_STATE_DIR);
    let _ = std::fs::write(
        Path::new(VM_STATE_DIR).join(child.id().to_string()),
        format!("{role} {}\n", console.display()),
    );
    vms.lock()
        .map_err(|_| anyhow!("vm list poisoned"))?
        .push(Vm {
            role: role.into(),
            child,
        });
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(console).unwrap_or_default();
        if text.contains("KDELTA-READY") {
            return Ok(port);
        }
        let exited = vms.lock().ok().and_then(|mut v| {
            v.iter_mut()
                .find(|x| x.role == role)
                .and_then(|x| x.child.try_wait().ok().flatten())
        });
        if let Some(st) = exited {
            let tail: Vec<&str> = text.lines().rev().take(12).collect();
            let qlog =
                std::fs::read_to_string(console.with_extension("qemu.log")).unwrap_or_default();
            bail!(
                "{role}: QEMU exited during boot ({st}); console tail:\n{}\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                qlog.trim()
            );
        }
        if start.elapsed() > boot_timeout {
            let tail: Vec<&str> = text.lines().rev().take(12).collect();
            bail!(
                "{role}: the guest did not come up in {}s (console {}):\n{}",
                boot_timeout.as_secs(),
                console.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// What a guest needs from this machine, checked without booting anything:
/// `Ok(summary)` or the list of problems with the fix for each.
pub fn preflight(q: &QemuSpec, role: &str) -> Result<String> {
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
            for (tool, pkg) in [("apt-get", "apt"), ("dpkg-deb", "dpkg")] {
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
    role: &str,
    port: u16,
    key: &Path,
    known_hosts: &Path,
    control: &Path,
    connect_timeout: u64,
) -> ConnectSpec {
    ConnectSpec {
        role: role.into(),
        destination: "127.0.0.1".into(),
        port: Some(port),
        user: Some("root".into()),
        keyfile: Some(key.to_path_buf()),
        known_hosts_file: Some(known_hosts.to_path_buf()),
        accept_new: false,
        control_dir: control.to_path_buf(),
        connect_timeout: Duration::from_secs(connect_timeout),
        retry_for: Duration::from_secs(connect_timeout * 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_options_survive_or_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("kasan.config");
        std::fs::write(
            &f,
            "CONFIG_KASAN=y\n# CONFIG_KASAN_INLINE is not set\nCONFIG_NR_CPUS=4\n",
        )
        .unwrap();
        let mut inline = BTreeMap::new();
        inline.insert("CONFIG_SLUB".to_string(), "y".to_string());
        let req = requested_options(&[f], &inline).unwrap();
        assert_eq!(req.len(), 4);
        let fin = KernelConfig::parse("CONFIG_KASAN=y\nCONFIG_NR_CPUS=4\nCONFIG_SLUB=y\n");
        assert!(
            lost_options(&req, &fin).is_empty(),
            "absent reads as not set"
        );
        let fin = KernelConfig::parse(
            "# CONFIG_KASAN is not set\nCONFIG_NR_CPUS=8\nCONFIG_SLUB=y\nCONFIG_KASAN_INLINE=y\n",
        );
        let lost = lost_options(&req, &fin);
        let names: Vec<&str> = lost.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(
            names,
            ["CONFIG_KASAN", "CONFIG_KASAN_INLINE", "CONFIG_NR_CPUS"]
        );
    }
}
