//! The host keys about *how* kdelta works on a host rather than which host it is:
//! `become:` (commands through `sudo -n`), `work_dir:` (where its files go), and a
//! qemu guest's `rootfs:` and `modules:`.

use serde_saphyr::Spanned;

use super::host::At;
use super::raw::{RawBecome, RawRootfs};
use super::validate::Validator;
use super::{PlaybookError, Pos};
use crate::playbook::plan::{Become, DebianRootfs, Rootfs};

/// Debian suites mmdebstrap can make from Debian's archive.
const SUITES: &[&str] = &["bookworm", "trixie", "bullseye", "sid", "testing", "stable"];

impl Validator<'_> {
    /// `become:` of a host, else of the playbook, else none.
    pub(super) fn become_(
        &self,
        own: Option<&Spanned<RawBecome>>,
        playbook: Option<&Spanned<RawBecome>>,
        path: &str,
    ) -> Result<Become, PlaybookError> {
        let Some(v) = own.or(playbook) else {
            return Ok(Become::No);
        };
        match &v.value {
            RawBecome::Flag(true) => Ok(Become::Sudo),
            RawBecome::Flag(false) => Ok(Become::No),
            RawBecome::Word(w) if w == "sudo" => Ok(Become::Sudo),
            RawBecome::Word(w) if w == "none" || w == "no" => Ok(Become::No),
            RawBecome::Word(w) => Err(self.err(
                v.into(),
                &format!("{path}.become"),
                format!("unknown value `{w}`, expected `sudo` or `none`"),
                "become: sudo runs kdelta's commands through `sudo -n` (passwordless sudo)",
            )),
        }
    }

    /// `work_dir:`: an absolute folder whose name survives the shell unquoted in
    /// people's heads (kdelta quotes it anyway): no spaces, quotes or globs.
    pub(super) fn work_dir(
        &self,
        v: Option<&Spanned<String>>,
        path: &str,
    ) -> Result<String, PlaybookError> {
        let Some(v) = v else {
            return Ok("/tmp".into());
        };
        let d = v.value.trim_end_matches('/');
        let plain = d
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+".contains(&b));
        if !v.value.starts_with('/') || d.is_empty() || !plain || d.contains("..") {
            return Err(self.err(
                v.into(),
                &format!("{path}.work_dir"),
                format!("`{}` is not an absolute folder", v.value),
                "e.g. work_dir: /var/tmp (letters, digits and / . _ - + only)",
            ));
        }
        Ok(d.to_string())
    }

    /// `rootfs:` of a qemu guest.
    pub(super) fn rootfs(
        &self,
        v: Option<&Spanned<RawRootfs>>,
        at: &At,
    ) -> Result<Rootfs, PlaybookError> {
        let path = format!("{}.rootfs", at.path);
        let Some(v) = v else {
            return Ok(Rootfs::Initramfs);
        };
        let pos: Pos = v.into();
        let raw = match &v.value {
            RawRootfs::Word(w) if w == "initramfs" => return Ok(Rootfs::Initramfs),
            RawRootfs::Word(w) if w == "debian" => None,
            RawRootfs::Word(w) => {
                return Err(self.err(
                    pos,
                    &path,
                    format!("unknown root filesystem `{w}`"),
                    "rootfs: initramfs (the default), debian, or { debian: bookworm, packages: [...], user: admin }",
                ))
            }
            RawRootfs::Debian(d) => Some(d),
        };
        let suite = raw
            .and_then(|d| d.debian.clone())
            .unwrap_or_else(|| "bookworm".into());
        if !SUITES.contains(&suite.as_str()) {
            return Err(self.err(
                pos,
                &format!("{path}.debian"),
                format!("unknown Debian suite `{suite}`"),
                &format!("one of {}", SUITES.join(", ")),
            ));
        }
        let packages = raw.map(|d| d.packages.clone()).unwrap_or_default();
        if let Some(bad) = packages.iter().find(|p| !is_package_name(p)) {
            return Err(self.err(
                pos,
                &format!("{path}.packages"),
                format!("`{bad}` is not a Debian package name"),
                "names like nginx-light, libnginx-mod-rtmp, ffmpeg",
            ));
        }
        let user = raw
            .and_then(|d| d.user.clone())
            .unwrap_or_else(|| "root".into());
        if !is_user_name(&user) {
            return Err(self.err(
                pos,
                &format!("{path}.user"),
                format!("`{user}` is not a user name"),
                "lower-case letters, digits, _ and -, starting with a letter: e.g. admin",
            ));
        }
        let disk_gb = raw.and_then(|d| d.disk_gb).unwrap_or(4);
        if !(2..=256).contains(&disk_gb) {
            return Err(self.err(
                pos,
                &format!("{path}.disk_gb"),
                format!("{disk_gb} GiB is out of range 2..=256"),
                "",
            ));
        }
        Ok(Rootfs::Debian(DebianRootfs {
            suite,
            packages,
            user,
            disk_gb,
        }))
    }

    /// `modules:` of a qemu guest: module names as `modprobe` takes them.
    pub(super) fn modules(
        &self,
        v: &[Spanned<String>],
        path: &str,
    ) -> Result<Vec<String>, PlaybookError> {
        v.iter()
            .map(|m| {
                let name = m.value.trim();
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(self.err(
                        m.into(),
                        &format!("{path}.modules"),
                        format!("`{}` is not a module name", m.value),
                        "names as modprobe takes them: sch_netem, cls_u32",
                    ));
                }
                // modprobe treats - and _ alike; the files use _.
                Ok(name.replace('-', "_"))
            })
            .collect()
    }
}

/// Debian policy: lower case letters, digits, + - . ; at least two, first alnum.
fn is_package_name(p: &str) -> bool {
    p.len() >= 2
        && p.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

/// Debian's `adduser` default NAME_REGEX, kept short.
fn is_user_name(u: &str) -> bool {
    (1..=32).contains(&u.len())
        && u.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && u.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use crate::playbook::{parse, Become, Plan, PlaybookError, Provider, Rootfs};

    fn parse_str(y: &str) -> Result<Plan, PlaybookError> {
        parse(y, "pb.yaml", std::path::Path::new("."))
    }

    fn pb(baseline: &str, candidate: &str, top: &str) -> String {
        format!("name: t\n{top}hosts:\n  baseline: {baseline}\n  candidate: {candidate}\nworkload:\n  client: {{ run: \"true\" }}\n")
    }

    const SSH: &str = "{ ssh: \"admin@h:22\" }";
    const QEMU: &str = "{ provider: qemu, kernel: { package: linux-image-amd64 }";

    #[test]
    fn become_per_host_or_playbook() {
        let p = parse_str(&pb(
            SSH,
            "{ ssh: \"admin@h:22\", become: none }",
            "become: sudo\n",
        ))
        .unwrap();
        assert_eq!(
            (p.baseline.become_, p.candidate.become_),
            (Become::Sudo, Become::No)
        );
        let p = parse_str(&pb("{ ssh: h, become: true }", SSH, "")).unwrap();
        assert_eq!(
            (p.baseline.become_, p.candidate.become_),
            (Become::Sudo, Become::No)
        );
        let e = parse_str(&pb("{ ssh: h, become: doas }", SSH, ""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hosts.baseline.become: unknown value `doas`"),
            "{e}"
        );
    }

    #[test]
    fn work_dir_is_an_absolute_plain_folder() {
        let p = parse_str(&pb("{ ssh: h, work_dir: /var/tmp/ }", SSH, "")).unwrap();
        assert_eq!(
            (p.baseline.work_dir.as_str(), p.candidate.work_dir.as_str()),
            ("/var/tmp", "/tmp")
        );
        for bad in ["tmp", "/a b", "/x/../etc", "/$(id)"] {
            let e = parse_str(&pb(&format!("{{ ssh: h, work_dir: \"{bad}\" }}"), SSH, ""))
                .unwrap_err()
                .to_string();
            assert!(e.contains("work_dir: `"), "{bad}: {e}");
        }
    }

    #[test]
    fn debian_rootfs_and_modules() {
        let q = format!("{QEMU}, rootfs: {{ debian: bookworm, packages: [nginx-light], user: admin }}, modules: [sch-netem] }}");
        let p = parse_str(&pb(&q, &format!("{QEMU}, rootfs: debian }}"), "")).unwrap();
        let Provider::Qemu(b) = &p.baseline.provider else {
            panic!()
        };
        let Rootfs::Debian(d) = &b.rootfs else {
            panic!()
        };
        assert_eq!(
            (d.user.as_str(), d.packages.len(), b.modules[0].as_str()),
            ("admin", 1, "sch_netem")
        );
        let Provider::Qemu(c) = &p.candidate.provider else {
            panic!()
        };
        assert!(
            matches!(&c.rootfs, Rootfs::Debian(d) if d.user == "root" && d.suite == "bookworm")
        );
        let cases = [
            (
                format!("{QEMU}, rootfs: alpine }}"),
                "unknown root filesystem `alpine`",
            ),
            (
                format!("{QEMU}, rootfs: {{ debian: jessie }} }}"),
                "unknown Debian suite `jessie`",
            ),
            (
                format!("{QEMU}, rootfs: {{ packages: [\"x;y\"] }} }}"),
                "`x;y` is not a Debian package name",
            ),
            (
                format!("{QEMU}, rootfs: debian, tools: [iperf3] }}"),
                "rootfs.packages",
            ),
            (
                "{ provider: qemu, kernel: { source: linux-source-6.1 }, modules: [x] }"
                    .to_string(),
                "taken from a kernel package",
            ),
            (
                "{ ssh: h, rootfs: debian }".to_string(),
                "`rootfs:` is for qemu guests",
            ),
        ];
        for (host, want) in cases {
            let e = parse_str(&pb(&host, SSH, "")).unwrap_err().to_string();
            assert!(e.contains(want) && e.starts_with("pb.yaml:"), "{host}: {e}");
        }
    }

    #[test]
    fn names() {
        assert!(super::is_package_name("libnginx-mod-rtmp"));
        assert!(super::is_package_name("g++"));
        assert!(!super::is_package_name("Nginx"));
        assert!(!super::is_package_name("a;rm -rf /"));
        assert!(super::is_user_name("admin"));
        assert!(!super::is_user_name("0day"));
        assert!(!super::is_user_name("ad min"));
    }
}
