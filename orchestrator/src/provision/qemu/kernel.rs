//! The kernel a qemu guest boots: an image as is, a Debian package (resolved,
//! downloaded and unpacked once into the cache), or a source tree configured with
//! the kernel's own tools, checked and built once per final config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

use super::reuse::{copy_tree, nearest_build, source_mark, SOURCE_MARK};
use super::{cache_dir, KernelImage};
use crate::format::fingerprint;
use crate::kconfig::KernelConfig;
use crate::model::Role;
use crate::playbook::{ApplyCheck, KernelSpec, QemuSpec, SourceTree};
use crate::progress::Progress;

/// Runs a command, its output appended to `log`; fails with the log's tail. The
/// command runs in its own process group, killed whole if the future is dropped
/// (Ctrl-C during a kernel build must not leave `make` and its compilers behind).
pub(super) async fn run_logged(
    cmd: &mut tokio::process::Command,
    what: &str,
    log: &Path,
) -> Result<()> {
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
    let status = crate::exec::local::run_in_group(cmd, None, what)
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

/// The identity of the kernel a source-built host would boot (the kernel cache's
/// key: source version and final config), without building it; None for images
/// and packages. `kdelta bisect` uses it to see a step that Kconfig collapses back
/// to the candidate's kernel before spending pairs on it.
pub async fn kernel_identity(
    spec: &QemuSpec,
    role: Role,
    log: &Path,
    progress: &Progress,
) -> Result<Option<String>> {
    match SourceBuild::of(&spec.kernel, role, log, progress) {
        Some((b, source)) => Ok(Some(b.identity(source).await?)),
        None => Ok(None),
    }
}

/// A source build's scratch folder, `KIND-ROLE-PID` under the cache, emptied first;
/// the caller removes it.
fn scratch(kind: &str, role: Role) -> Result<PathBuf> {
    let tmp =
        cache_dir()
            .join("build")
            .join(format!("{kind}-{}-{}", role.as_str(), std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    Ok(tmp)
}

/// The kernel cache's key: source version and final config, without the config's
/// generated header (it names the build time).
fn identity(version: &str, final_text: &str) -> String {
    let body: String = final_text
        .lines()
        .filter(|l| !l.starts_with("# Automatically generated") && !l.starts_with("# Linux/"))
        .map(|l| format!("{l}\n"))
        .collect();
    fingerprint(format!("{version}\n{body}").as_bytes())
}

/// Whether the kernel cache holds a built kernel of this identity (see
/// [`kernel_identity`]): booting it costs no build.
pub fn kernel_cached(identity: &str) -> bool {
    cache_dir()
        .join("kernels")
        .join(identity)
        .join("bzImage")
        .is_file()
}

/// Builds (or finds in the cache) the kernel a host asks for.
pub async fn prepare_kernel(
    spec: &QemuSpec,
    role: Role,
    log: &Path,
    progress: &Progress,
) -> Result<KernelImage> {
    match &spec.kernel {
        KernelSpec::Image { path } => Ok(KernelImage {
            image: path.clone(),
            config: None,
            release: None,
            modules: vec![],
            modules_dir: None,
            provenance: serde_json::json!({ "image": path }),
        }),
        KernelSpec::Package { name } => {
            progress.step(role.as_str(), &format!("kernel: package {name}"));
            let k = super::package::package_kernel(spec, name, log).await?;
            progress.done(
                role.as_str(),
                &format!(
                    "kernel {} from {}",
                    k.release.as_deref().unwrap_or("?"),
                    name
                ),
            );
            Ok(k)
        }
        KernelSpec::Source { .. } => match SourceBuild::of(&spec.kernel, role, log, progress) {
            Some((b, source)) => b.prepare(source).await,
            None => bail!("{role}: not a source-built kernel"),
        },
    }
}

/// A kernel built from source: what to build and where to say so.
struct SourceBuild<'a> {
    role: Role,
    base: &'a str,
    fragments: &'a [PathBuf],
    options: &'a BTreeMap<String, String>,
    check: ApplyCheck,
    log: &'a Path,
    progress: &'a Progress,
}

impl<'a> SourceBuild<'a> {
    /// The build a source-built kernel spec describes, and its tree; None for
    /// images and packages.
    fn of(
        kernel: &'a KernelSpec,
        role: Role,
        log: &'a Path,
        progress: &'a Progress,
    ) -> Option<(Self, &'a SourceTree)> {
        let KernelSpec::Source {
            source,
            base,
            fragments,
            options,
            check,
        } = kernel
        else {
            return None;
        };
        let b = SourceBuild {
            role,
            base,
            fragments,
            options,
            check: *check,
            log,
            progress,
        };
        Some((b, source))
    }

    /// The kernel cache's key of this build, from its final config, without building.
    async fn identity(&self, source: &SourceTree) -> Result<String> {
        let (tree, version) = source_tree(source, self.log).await?;
        let tmp = scratch("id", self.role)?;
        let res = self.configure(&tree, &tmp).await;
        let _ = std::fs::remove_dir_all(&tmp);
        Ok(identity(&version, &res?))
    }

    async fn prepare(&self, source: &SourceTree) -> Result<KernelImage> {
        self.progress
            .step(self.role.as_str(), "kernel: preparing the source");
        let (tree, version) = source_tree(source, self.log).await?;
        let tmp = scratch("cfg", self.role)?;
        let res = self.configure_and_build(&tree, &version, &tmp).await;
        let _ = std::fs::remove_dir_all(&tmp);
        res
    }

    async fn configure_and_build(
        &self,
        tree: &Path,
        version: &str,
        tmp: &Path,
    ) -> Result<KernelImage> {
        let final_text = self.configure(tree, tmp).await?;
        self.check_applied(&final_text, version)?;
        let key = identity(version, &final_text);
        let out = cache_dir().join("kernels").join(&key);
        let image = out.join("bzImage");
        // (kernel_cached says the same without building: keep the two in step.)
        let started = Instant::now();
        let built = if image.is_file() {
            self.progress
                .done(self.role.as_str(), &format!("kernel {key} from the cache"));
            false
        } else {
            self.build(tree, tmp, &key, &out, (version, &final_text))
                .await?;
            true
        };
        Ok(KernelImage {
            image,
            config: Some(out.join("config")),
            release: None,
            modules: vec![],
            modules_dir: None,
            provenance: serde_json::json!({
                "source": version,
                "base": self.base,
                "fragments": self.fragments,
                "options": self.options,
                "fingerprint": key,
                "built_now": built,
                "build_seconds": if built { started.elapsed().as_secs_f64() } else { 0.0 },
            }),
        })
    }

    /// Base config, fragments and inline options merged with the kernel's own
    /// merge_config.sh, completed by olddefconfig; returns the final `.config`.
    async fn configure(&self, tree: &Path, tmp: &Path) -> Result<String> {
        let extra = self.fragments.len() + usize::from(!self.options.is_empty());
        self.progress.step(
            self.role.as_str(),
            &format!("kernel: {} + {extra} fragment(s)", self.base),
        );
        let make = |target: &str| {
            let mut c = tokio::process::Command::new("make");
            c.arg("-C")
                .arg(tree)
                .arg(format!("O={}", tmp.display()))
                .arg(target);
            c
        };
        run_logged(
            &mut make(self.base),
            &format!("make {}", self.base),
            self.log,
        )
        .await?;
        // merge_config.sh runs in the source tree: absolute paths.
        let mut frags: Vec<PathBuf> = self
            .fragments
            .iter()
            .map(|f| std::fs::canonicalize(f).with_context(|| format!("fragment {}", f.display())))
            .collect::<Result<_>>()?;
        if !self.options.is_empty() {
            let inline = tmp.join("kdelta-inline.config");
            let text: String = self
                .options
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
                .arg(tmp)
                .arg(tmp.join(".config"))
                .args(&frags)
                .current_dir(tree);
            run_logged(&mut cmd, "merge_config.sh", self.log).await?;
        }
        run_logged(&mut make("olddefconfig"), "make olddefconfig", self.log).await?;
        Ok(std::fs::read_to_string(tmp.join(".config"))?)
    }

    /// Every requested option must have survived olddefconfig.
    fn check_applied(&self, final_text: &str, version: &str) -> Result<()> {
        let fin = KernelConfig::parse(final_text);
        let fragments = match self.check {
            ApplyCheck::All => self.fragments,
            ApplyCheck::InlineOnly => &[],
            ApplyCheck::Nothing => return Ok(()),
        };
        let requested = requested_options(fragments, self.options)?;
        let lost = lost_options(&requested, &fin);
        if lost.is_empty() {
            return Ok(());
        }
        bail!(
            "{}: the kernel config lost {} requested option(s) in olddefconfig (a dependency is off, or the option does not exist in {version}): {}",
            self.role,
            lost.len(),
            lost.iter()
                .map(|(k, w, g)| format!("{k}: asked {w}, got {g}"))
                .collect::<Vec<_>>()
                .join("; ")
        )
    }

    /// `make bzImage` in the build folder of this config (continuing an interrupted
    /// build of the same config, or starting from a copy of the finished build of the
    /// nearest config of the same source: Kbuild then rebuilds only what the changed
    /// options touch), then the image and config into the cache.
    async fn build(
        &self,
        tree: &Path,
        tmp: &Path,
        key: &str,
        out: &Path,
        (version, final_text): (&str, &str),
    ) -> Result<()> {
        let build = cache_dir().join("build").join(key);
        if !build.join(".config").is_file() {
            let _ = std::fs::remove_dir_all(&build);
            let mark = source_mark(tree, version);
            match nearest_build(&cache_dir(), &mark, final_text) {
                Some((near, differing)) => {
                    self.progress.step(
                        self.role.as_str(),
                        &format!(
                            "kernel: starting from the build of {} ({differing} option(s) differ)",
                            near.file_name().unwrap_or_default().to_string_lossy()
                        ),
                    );
                    copy_tree(&near, &build, self.log).await?;
                    std::fs::copy(tmp.join(".config"), build.join(".config"))?;
                }
                None => std::fs::rename(tmp, &build)?,
            }
            std::fs::write(build.join(SOURCE_MARK), &mark)?;
        }
        let jobs = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        self.progress.step(
            self.role.as_str(),
            &format!(
                "kernel: building {key} with {jobs} jobs (first time: minutes; log in {})",
                self.log.display()
            ),
        );
        let started = Instant::now();
        run_logged(
            tokio::process::Command::new("make")
                .arg("-C")
                .arg(tree)
                .arg(format!("O={}", build.display()))
                .arg(format!("-j{jobs}"))
                .arg("bzImage"),
            "make bzImage",
            self.log,
        )
        .await?;
        std::fs::create_dir_all(out)?;
        let staged = out.join("bzImage.part");
        std::fs::copy(build.join("arch/x86/boot/bzImage"), &staged)?;
        std::fs::copy(build.join(".config"), out.join("config"))?;
        std::fs::rename(&staged, out.join("bzImage"))?;
        self.progress.done(
            self.role.as_str(),
            &format!(
                "kernel {key} built in {:.0}s",
                started.elapsed().as_secs_f64()
            ),
        );
        Ok(())
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
