//! `hosts.<role>.kernel` of a qemu guest: a Debian package, an image, or a tree
//! built from a base config, fragments and inline options.

use std::collections::BTreeMap;

use serde_saphyr::Spanned;

use super::raw::RawKernel;
use super::validate::{scalar, Validator};
use super::{PlaybookError, Pos};
use crate::playbook::plan::*;

/// Base configs `make` knows (the `*defconfig` of any architecture too).
const BASES: &[&str] = &[
    "tinyconfig",
    "defconfig",
    "allnoconfig",
    "x86_64_defconfig",
    "kvm_guest.config",
];

impl Validator<'_> {
    pub(super) fn kernel(
        &self,
        k: Spanned<RawKernel>,
        path: &str,
    ) -> Result<KernelSpec, PlaybookError> {
        let kpos: Pos = (&k).into();
        let k = k.value;
        let path = format!("{path}.kernel");
        if let Some(pkg) = &k.package {
            return self.package(&k, pkg, &path);
        }
        match (&k.source, &k.image) {
            (_, Some(i)) if !k.fragments.is_empty() || k.options.is_some() => Err(self.err(
                i.into(),
                &format!("{path}.image"),
                "an image is booted as is: fragments and options need `source:`",
                "",
            )),
            (Some(src), Some(_)) => {
                Err(self.err(src.into(), &path, "give either `source:` or `image:`", ""))
            }
            (None, Some(i)) => {
                let p = self.dir.join(&i.value);
                if !p.is_file() {
                    return Err(self.err(
                        i.into(),
                        &format!("{path}.image"),
                        format!("{} not found", p.display()),
                        "paths are relative to the playbook's folder",
                    ));
                }
                Ok(KernelSpec::Image { path: p })
            }
            (Some(src), None) => self.source(&k, src, kpos, &path),
            (None, None) => Err(self.err(
                kpos,
                &path,
                "give `source:` (built with fragments), `package:` or `image:`",
                "",
            )),
        }
    }

    fn package(
        &self,
        k: &RawKernel,
        pkg: &Spanned<String>,
        path: &str,
    ) -> Result<KernelSpec, PlaybookError> {
        if k.source.is_some() || k.image.is_some() || !k.fragments.is_empty() || k.options.is_some()
        {
            return Err(self.err(
                pkg.into(),
                &format!("{path}.package"),
                "a package is booted as built: give `package:` alone",
                "to change its config, build from source (kernel.source + fragments)",
            ));
        }
        let ok = pkg.value.starts_with("linux-image-")
            && pkg
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.+".contains(&b));
        if !ok {
            return Err(self.err(
                pkg.into(),
                &format!("{path}.package"),
                format!("`{}` is not a Debian kernel image package", pkg.value),
                "e.g. linux-image-amd64, linux-image-rt-amd64, linux-image-6.1.0-28-amd64",
            ));
        }
        Ok(KernelSpec::Package {
            name: pkg.value.clone(),
        })
    }

    fn source(
        &self,
        k: &RawKernel,
        src: &Spanned<String>,
        kpos: Pos,
        path: &str,
    ) -> Result<KernelSpec, PlaybookError> {
        let tree = if src.value.starts_with("linux-source-") && !src.value.contains('/') {
            SourceTree::DebianPackage(src.value.clone())
        } else {
            let p = self.dir.join(&src.value);
            if !p.join("Makefile").is_file() {
                return Err(self.err(
                    src.into(),
                    &format!("{path}.source"),
                    format!("{} is not a kernel tree (no Makefile)", p.display()),
                    "a Debian package name such as linux-source-6.1, or the path of a kernel tree",
                ));
            }
            SourceTree::Path(p)
        };
        let base = k
            .base
            .as_ref()
            .map(|b| b.value.clone())
            .unwrap_or_else(|| "tinyconfig".into());
        if !BASES.contains(&base.as_str()) && !base.ends_with("defconfig") {
            return Err(self.err(
                k.base.as_ref().map(Pos::from).unwrap_or(kpos),
                &format!("{path}.base"),
                format!("unknown base config `{base}`"),
                "tinyconfig, defconfig or allnoconfig",
            ));
        }
        let mut fragments = Vec::new();
        for (i, f) in k.fragments.iter().enumerate() {
            let p = self.dir.join(&f.value);
            if !p.is_file() {
                return Err(self.err(
                    f.into(),
                    &format!("{path}.fragments[{i}]"),
                    format!("{} not found", p.display()),
                    "paths are relative to the playbook's folder",
                ));
            }
            fragments.push(p);
        }
        let options = match &k.options {
            Some(o) => self.options(o, path)?,
            None => BTreeMap::new(),
        };
        Ok(KernelSpec::Source {
            source: tree,
            base,
            fragments,
            options,
            check: ApplyCheck::All,
        })
    }

    /// `options: { CONFIG_KASAN: y }`: names as Kconfig spells them, one-line values.
    fn options(
        &self,
        o: &Spanned<BTreeMap<String, serde_json::Value>>,
        path: &str,
    ) -> Result<BTreeMap<String, String>, PlaybookError> {
        let opos: Pos = o.into();
        let mut options = BTreeMap::new();
        for (name, v) in &o.value {
            let ok_name = name.strip_prefix("CONFIG_").is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            });
            if !ok_name {
                return Err(self.err(
                    opos,
                    &format!("{path}.options"),
                    format!("`{name}` is not a config option name"),
                    "e.g. CONFIG_KASAN: y",
                ));
            }
            let val = match v {
                serde_json::Value::Bool(true) => "y".to_string(),
                serde_json::Value::Bool(false) => "n".to_string(),
                serde_json::Value::String(s) if s.contains('\n') => {
                    return Err(self.err(
                        opos,
                        &format!("{path}.options.{name}"),
                        "a value cannot span lines",
                        "",
                    ));
                }
                other => scalar(other),
            };
            options.insert(name.clone(), val);
        }
        Ok(options)
    }
}
