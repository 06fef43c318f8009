//! Debian kernel packages for qemu guests: a meta package resolved to a concrete
//! image, downloaded once into the cache and unpacked whole — /boot and the entire
//! modules tree, indexed by the kernel's own `depmod` — so that any module can be
//! loaded in the guest with what it depends on: the drivers kdelta needs to boot
//! and reach the guest, and the playbook's `modules:`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::kernel::run_logged;
use super::{cache_dir, KernelImage};
use crate::exec::shell::quote;
use crate::playbook::{QemuSpec, Rootfs};

/// What every guest loads: the virtio PCI transport and network driver (Debian's
/// generic, cloud and RT kernels build them as modules; built-in ones are skipped).
const NET_MODULES: &[&str] = &["virtio_pci", "virtio_net"];

/// What a guest with a Debian root disk loads besides: the disk driver and the
/// filesystem. `crc32c_generic` because the ext4 image has metadata checksums and
/// jbd2 asks the crypto API for `crc32c` by name, which no dependency loads.
const DISK_MODULES: &[&str] = &["virtio_blk", "crc32c_generic", "ext4"];

/// The extraction's version: a cache folder unpacked by an older kdelta (which
/// took only the virtio modules) is unpacked again.
const EXTRACTED: &str = ".extracted-2";

/// A Debian kernel package: resolves a meta package (`linux-image-rt-amd64`) to the
/// current ABI (`linux-image-6.1.0-28-rt-amd64`), downloads it once into the cache,
/// unpacks it and picks the modules the guest loads at boot, in load order.
pub(super) async fn package_kernel(spec: &QemuSpec, name: &str, log: &Path) -> Result<KernelImage> {
    let resolved = resolve_package(name).await?;
    let dir = cache_dir().join("packages").join(&resolved);
    let marker = dir.join(EXTRACTED);
    if !marker.is_file() {
        extract_package(&resolved, &dir, log).await?;
        std::fs::write(&marker, "")?;
    }
    let mut k = read_package(name, &resolved, &dir)?;
    let release = k.release.clone().unwrap_or_default();
    let mdir = k
        .modules_dir
        .clone()
        .ok_or_else(|| anyhow!("{resolved}: the package has no modules for {release}"))?;
    let dep = std::fs::read_to_string(mdir.join("modules.dep"))
        .with_context(|| format!("{resolved}: no modules.dep in {}", mdir.display()))?;
    let builtin = std::fs::read_to_string(mdir.join("modules.builtin")).unwrap_or_default();
    let order = load_order(&dep, &builtin, &boot_modules(spec), &spec.modules)
        .with_context(|| format!("{resolved}: the guest's modules"))?;
    k.modules = order.into_iter().map(|rel| mdir.join(rel)).collect();
    Ok(k)
}

/// The modules a guest loads at boot, before the playbook's own.
fn boot_modules(spec: &QemuSpec) -> Vec<String> {
    let disk: &[&str] = match spec.rootfs {
        Rootfs::Initramfs => &[],
        Rootfs::Debian(_) => DISK_MODULES,
    };
    NET_MODULES
        .iter()
        .chain(disk)
        .map(|m| m.to_string())
        .chain(spec.modules.iter().cloned())
        .collect()
}

/// `linux-image-rt-amd64` → `linux-image-6.1.0-28-rt-amd64`, `linux-image-6.12-amd64`
/// → `linux-image-6.12.118+deb12-amd64`: apt's dependencies are followed (at most
/// three hops) while they name another `linux-image-` package. A name that looks
/// versioned is no proof of a concrete image (`6.12-amd64` is a meta package); only
/// a package that depends on no other image is one.
async fn resolve_package(name: &str) -> Result<String> {
    let mut resolved = name.to_string();
    for _ in 0..3 {
        let out = tokio::process::Command::new("apt-cache")
            .args(["depends", "--no-recommends", "--no-suggests", &resolved])
            .output()
            .await
            .context("apt-cache not found: the package path needs Debian's apt")?;
        let text = String::from_utf8_lossy(&out.stdout);
        match image_dependency(&text) {
            Some(n) if n != resolved => resolved = n.to_string(),
            _ if out.status.success() && text.lines().next().is_some() => return Ok(resolved),
            _ => bail!(
                "{name}: apt-cache does not know {resolved} (is `apt-get update` done, and the package in your sources?)"
            ),
        }
    }
    Ok(resolved)
}

/// The `linux-image-…` package `apt-cache depends` names, if any.
pub fn image_dependency(apt_cache_output: &str) -> Option<&str> {
    apt_cache_output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(str::trim)
        .find(|d| d.starts_with("linux-image-"))
}

/// Downloads the package into the cache, unpacks /boot and the modules tree, and
/// indexes the modules with `depmod` (a package ships no modules.dep: its
/// postinst makes it).
async fn extract_package(resolved: &str, dir: &Path, log: &Path) -> Result<()> {
    let cache = cache_dir().join("packages");
    let dl = cache.join("debs");
    std::fs::create_dir_all(&dl)?;
    run_logged(
        tokio::process::Command::new("apt-get")
            .args(["download", resolved])
            .current_dir(&dl),
        &format!("apt-get download {resolved}"),
        log,
    )
    .await
    .with_context(|| format!("cannot download {resolved} (is `apt-get update` done and the package in your sources?)"))?;
    let prefix = format!("{resolved}_");
    let deb = std::fs::read_dir(&dl)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .ok_or_else(|| {
            anyhow!(
                "apt-get download left no {resolved}_*.deb in {}",
                dl.display()
            )
        })?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let d = quote(&dir.display().to_string());
    let script = format!(
        "dpkg-deb -x {} {d} && test -d {d}/boot",
        quote(&deb.display().to_string()),
    );
    run_logged(
        tokio::process::Command::new("sh").arg("-c").arg(&script),
        &format!("extract {}", deb.display()),
        log,
    )
    .await?;
    let Some((base, release)) = modules_root(dir) else {
        return Ok(()); // a kernel without modules: nothing to index
    };
    // depmod looks under BASE/lib/modules: a merged-/usr package has them in usr/lib.
    if base != dir.join("lib/modules") {
        std::fs::create_dir_all(dir.join("lib"))?;
        let _ = std::os::unix::fs::symlink("../usr/lib/modules", dir.join("lib/modules"));
    }
    run_logged(
        tokio::process::Command::new("depmod")
            .arg("-b")
            .arg(dir)
            .arg(&release),
        &format!("depmod -b {} {release}", dir.display()),
        log,
    )
    .await
    .context("depmod failed (apt-get install kmod)")
}

/// `(…/lib/modules, release)` of an unpacked package, wherever it keeps them.
fn modules_root(dir: &Path) -> Option<(PathBuf, String)> {
    ["lib/modules", "usr/lib/modules"].iter().find_map(|sub| {
        let base = dir.join(sub);
        let rel = std::fs::read_dir(&base)
            .ok()?
            .flatten()
            .find(|e| e.path().is_dir())?
            .file_name()
            .to_string_lossy()
            .into_owned();
        Some((base, rel))
    })
}

/// The image, release, config and modules folder of an unpacked package.
fn read_package(name: &str, resolved: &str, dir: &Path) -> Result<KernelImage> {
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
    let modules_dir = modules_root(dir)
        .map(|(base, _)| base.join(&release))
        .filter(|d| d.is_dir());
    let config = boot.join(format!("config-{release}"));
    Ok(KernelImage {
        image: vmlinuz,
        config: config.is_file().then_some(config),
        release: Some(release.clone()),
        modules: vec![],
        modules_dir,
        provenance: serde_json::json!({ "package": name, "resolved": resolved, "release": release }),
    })
}

/// The modules to load for `wanted`, dependencies first, as paths relative to the
/// modules folder (from `modules.dep`). A wanted module that is neither a module
/// nor built in (`modules.builtin`) is an error when the playbook asked for it
/// (`required`), and skipped when kdelta did (a driver this kernel has no use for).
pub fn load_order(
    dep: &str,
    builtin: &str,
    wanted: &[String],
    required: &[String],
) -> Result<Vec<String>> {
    let norm = |s: &str| s.replace('-', "_");
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in dep.lines() {
        let Some((file, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(stem) = file.rsplit('/').next().and_then(module_stem) else {
            continue;
        };
        let needs = rest.split_whitespace().map(str::to_string).collect();
        deps.insert(norm(stem), (file.to_string(), needs));
    }
    let by_path: BTreeMap<&str, &str> = deps
        .iter()
        .map(|(name, (file, _))| (file.as_str(), name.as_str()))
        .collect();
    let built_in: BTreeSet<String> = builtin
        .lines()
        .filter_map(|l| l.rsplit('/').next().and_then(module_stem))
        .map(norm)
        .collect();
    let mut order: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    for w in wanted {
        let w = norm(w);
        if !deps.contains_key(&w) {
            if required.iter().any(|r| norm(r) == w) && !built_in.contains(&w) {
                bail!("module `{w}` is neither a module of this kernel nor built into it");
            }
            continue;
        }
        // Depth first, dependencies before the module (a stack, no recursion:
        // the file is data).
        let mut stack = vec![(w.clone(), false)];
        while let Some((m, expanded)) = stack.pop() {
            if seen.contains(&m) {
                continue;
            }
            let Some((file, needs)) = deps.get(&m) else {
                continue;
            };
            if expanded {
                seen.insert(m.clone());
                order.push(file.clone());
                continue;
            }
            stack.push((m.clone(), true));
            for n in needs.iter().rev() {
                if let Some(dn) = by_path.get(n.as_str()) {
                    if !seen.contains(*dn) {
                        stack.push((dn.to_string(), false));
                    }
                }
            }
        }
    }
    Ok(order)
}

/// How kernel modules are named on disk: plain, or compressed by `kmod`'s rules.
pub const MODULE_SUFFIXES: [&str; 4] = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"];

/// `virtio_net.ko.xz` → `virtio_net`.
pub fn module_stem(file: &str) -> Option<&str> {
    MODULE_SUFFIXES.iter().find_map(|x| file.strip_suffix(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_module_names() {
        assert_eq!(module_stem("virtio_net.ko.xz"), Some("virtio_net"));
        assert_eq!(module_stem("failover.ko"), Some("failover"));
        assert_eq!(module_stem("net_failover.ko.zst"), Some("net_failover"));
        assert_eq!(module_stem("README"), None);
    }

    /// Lines of Debian 6.1.0-57-cloud-amd64's modules.dep, as depmod wrote them.
    const DEP: &str = "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/net/sched/sch_netem.ko.xz:
";

    fn names(v: &[String]) -> Vec<&str> {
        v.iter()
            .map(|p| p.rsplit('/').next().and_then(module_stem).unwrap_or(p))
            .collect()
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let w: Vec<String> = ["virtio_pci", "virtio_net", "virtio_blk", "sch-netem"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = load_order(DEP, "", &w, &["sch_netem".into()]).unwrap();
        let n = names(&o);
        assert_eq!(
            n,
            [
                "virtio_pci_legacy_dev",
                "virtio_pci_modern_dev",
                "virtio_ring",
                "virtio",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net",
                "virtio_blk",
                "sch_netem"
            ]
        );
        for (i, m) in n.iter().enumerate() {
            assert!(!n[i + 1..].contains(m), "{m} twice: {n:?}");
        }
    }

    #[test]
    fn built_in_and_unknown_modules() {
        let builtin = "kernel/fs/ext4/ext4.ko\n";
        let w = vec!["ext4".to_string(), "crc32c_generic".to_string()];
        // kdelta's own wishes: skipped when built in or absent.
        assert!(load_order(DEP, builtin, &w, &[]).unwrap().is_empty());
        // The playbook's: built in is fine, absent is an error that names it.
        assert!(load_order(DEP, builtin, &w, &["ext4".into()]).is_ok());
        let e = load_order(DEP, builtin, &["nope".into()], &["nope".into()]).unwrap_err();
        assert!(e.to_string().contains("`nope`"), "{e}");
    }
}
