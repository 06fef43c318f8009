//! `hosts.baseline` and `hosts.candidate`: which provider, and what it needs. Keys
//! of one provider given to another are errors that say which provider takes them.

use std::collections::BTreeMap;

use serde_saphyr::Spanned;

use super::raw::{RawBecome, RawHost};
use super::validate::{expand_home, scalar, split_port, Validator};
use super::{PlaybookError, Pos};
use crate::model::{ProviderKind, Role};
use crate::playbook::plan::*;

const PROVIDERS: &str = "one of: lab, ssh, qemu, command";

/// A raw host with its role, place and path (`hosts.candidate`).
pub(super) struct At {
    pub pos: Pos,
    pub path: String,
}

impl Validator<'_> {
    pub fn host(
        &self,
        role: Role,
        raw: Spanned<RawHost>,
        become_default: Option<&Spanned<RawBecome>>,
    ) -> Result<HostSpec, PlaybookError> {
        let at = At {
            pos: (&raw).into(),
            path: format!("hosts.{role}"),
        };
        let h = raw.value;
        let kind = self.provider_kind(&h, &at)?;
        for s in &h.setup {
            self.template(s, &format!("{}.setup", at.path))?;
        }
        let setup = h.setup.iter().map(|s| s.value.clone()).collect();
        self.foreign_keys(&h, kind, &at)?;
        let label = h.label.clone();
        let become_ = self.become_(h.become_.as_ref(), become_default, &at.path)?;
        let work_dir = self.work_dir(h.work_dir.as_ref(), &at.path)?;
        let provider = match kind {
            ProviderKind::Lab => Provider::Lab(self.lab(h, &at)?),
            ProviderKind::Ssh => Provider::Ssh(self.ssh(h, &at)?),
            ProviderKind::Command => Provider::Command(self.command(h, &at)?),
            ProviderKind::Qemu => Provider::Qemu(self.qemu(h, &at)?),
        };
        Ok(HostSpec {
            role,
            label,
            provider,
            setup,
            become_,
            work_dir,
        })
    }

    fn provider_kind(&self, h: &RawHost, at: &At) -> Result<ProviderKind, PlaybookError> {
        let Some(p) = &h.provider else {
            return match &h.ssh {
                Some(_) => Ok(ProviderKind::Ssh),
                None => Err(self.err(at.pos, &at.path, "missing `provider`", PROVIDERS)),
            };
        };
        Ok(match p.value.as_str() {
            "lab" => ProviderKind::Lab,
            "ssh" => ProviderKind::Ssh,
            "qemu" => ProviderKind::Qemu,
            "command" => ProviderKind::Command,
            other => {
                return Err(self.err(
                    p.into(),
                    &format!("{}.provider", at.path),
                    format!("unknown provider `{other}`"),
                    PROVIDERS,
                ))
            }
        })
    }

    /// Keys that belong to another provider.
    fn foreign_keys(&self, h: &RawHost, kind: ProviderKind, at: &At) -> Result<(), PlaybookError> {
        if kind != ProviderKind::Command {
            if let Some(c) = h.up.as_ref().or(h.down.as_ref()) {
                return Err(self.err(
                    c.into(),
                    &at.path,
                    "`up`/`down` are for command hosts",
                    "set provider: command, or remove them",
                ));
            }
        }
        if kind != ProviderKind::Ssh {
            if let Some(b) = &h.boot {
                return Err(self.err(
                    b.into(),
                    &format!("{}.boot", at.path),
                    "`boot:` is for ssh hosts (one machine that reboots into the reverted state)",
                    match kind {
                        ProviderKind::Command => "a command host's `up` gets `revert` itself",
                        ProviderKind::Qemu => {
                            "kdelta boots a qemu guest itself (`cmdline:`, `kernel:`)"
                        }
                        _ => "set provider: ssh, or remove it",
                    },
                ));
            }
        }
        if kind != ProviderKind::Qemu {
            if let Some(c) = &h.cmdline {
                return Err(self.err(
                    c.into(),
                    &format!("{}.cmdline", at.path),
                    "`cmdline:` is for qemu guests, whose kernel kdelta boots",
                    "on an ssh or command host, change the boot loader's command line in `setup:` or your `up` command",
                ));
            }
            if let Some(k) = &h.kernel {
                return Err(self.err(
                    k.into(),
                    &format!("{}.kernel", at.path),
                    "`kernel:` is for qemu guests",
                    "set provider: qemu, or remove it",
                ));
            }
            if let Some(r) = &h.rootfs {
                return Err(self.err(
                    r.into(),
                    &format!("{}.rootfs", at.path),
                    "`rootfs:` is for qemu guests",
                    "set provider: qemu, or remove it",
                ));
            }
            if let Some(m) = h.modules.first() {
                return Err(self.err(
                    m.into(),
                    &format!("{}.modules", at.path),
                    "`modules:` is for qemu guests",
                    "on another host, load modules in `setup:` (sudo modprobe …)",
                ));
            }
        }
        if kind == ProviderKind::Lab {
            return Ok(());
        }
        let lab_only = [
            ("sysctl", h.sysctl.as_ref().map(Pos::from)),
            ("nftables", h.nftables.as_ref().map(Pos::from)),
            ("qdisc", h.qdisc.as_ref().map(Pos::from)),
            ("offloads", h.offloads.as_ref().map(Pos::from)),
            ("mtu", h.mtu.as_ref().map(Pos::from)),
        ];
        if let Some((knob, Some(p))) = lab_only.iter().find(|(_, p)| p.is_some()) {
            let hint = match kind {
                ProviderKind::Ssh => "for an existing host, put the change in `setup:` commands",
                ProviderKind::Qemu => {
                    "for a qemu guest, put the change in `setup:` commands or in the kernel config"
                }
                _ => "put the change in `setup:` commands",
            };
            return Err(self.err(
                *p,
                &format!("{}.{knob}", at.path),
                "runtime knobs are applied by the lab provider only",
                hint,
            ));
        }
        Ok(())
    }

    fn lab(&self, h: RawHost, at: &At) -> Result<LabKnobs, PlaybookError> {
        let path = &at.path;
        if let Some(d) = h.ssh.as_ref().or(h.destination.as_ref()) {
            return Err(self.err(
                d.into(),
                path,
                "a lab host has no SSH destination",
                "remove `ssh`/`destination`, or use provider: ssh",
            ));
        }
        let mut k = LabKnobs::default();
        if let Some(s) = h.sysctl {
            k.sysctl = self.lab_sysctls(s, path)?;
        }
        if let Some(n) = h.nftables {
            let p = self.dir.join(&n.value);
            if !p.is_file() {
                return Err(self.err(
                    (&n).into(),
                    &format!("{path}.nftables"),
                    format!("ruleset file {} not found", p.display()),
                    "paths are relative to the playbook's folder",
                ));
            }
            k.nftables = Some(p);
        }
        if let Some(q) = h.qdisc {
            let words = shlex::split(&q.value).unwrap_or_default();
            if words.iter().all(|w| w.is_empty()) {
                return Err(self.err(
                    (&q).into(),
                    &format!("{path}.qdisc"),
                    "cannot split into words",
                    "e.g. `netem delay 1ms`",
                ));
            }
            k.qdisc = Some(words);
        }
        if let Some(o) = h.offloads {
            let opos: Pos = (&o).into();
            for (feat, val) in o.value {
                let on = match scalar(&val).as_str() {
                    "on" | "true" | "yes" => true,
                    "off" | "false" | "no" => false,
                    other => {
                        return Err(self.err(
                            opos,
                            &format!("{path}.offloads.{feat}"),
                            format!("`{other}` is not on/off"),
                            "",
                        ))
                    }
                };
                k.offloads.insert(feat, on);
            }
        }
        if let Some(m) = h.mtu {
            if !(68..=65535).contains(&m.value) {
                return Err(self.err(
                    (&m).into(),
                    &format!("{path}.mtu"),
                    format!("{} is out of range 68..=65535", m.value),
                    "",
                ));
            }
            k.mtu = Some(m.value);
        }
        Ok(k)
    }

    /// Lab hosts share the kernel: only net.* sysctls are theirs.
    fn lab_sysctls(
        &self,
        s: Spanned<BTreeMap<String, serde_json::Value>>,
        path: &str,
    ) -> Result<BTreeMap<String, String>, PlaybookError> {
        let spos: Pos = (&s).into();
        let mut out = BTreeMap::new();
        for (key, val) in s.value {
            if !key.starts_with("net.") {
                return Err(self.err(
                    spos,
                    &format!("{path}.sysctl.{key}"),
                    "lab hosts share the kernel: only net.* sysctls are per network namespace",
                    "use the qemu or ssh provider to change other sysctls",
                ));
            }
            if !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
            {
                return Err(self.err(
                    spos,
                    &format!("{path}.sysctl"),
                    format!("`{key}` is not a sysctl name"),
                    "",
                ));
            }
            out.insert(key, scalar(&val));
        }
        Ok(out)
    }

    fn ssh(&self, h: RawHost, at: &At) -> Result<SshTarget, PlaybookError> {
        let path = &at.path;
        let dest = h.ssh.as_ref().or(h.destination.as_ref()).ok_or_else(|| {
            self.err(
                at.pos,
                path,
                "missing `destination` (or `ssh:`)",
                "e.g. ssh: root@host.example:22 or a Host alias from ~/.ssh/config",
            )
        })?;
        let (destination, port) = split_port(&dest.value)
            .map_err(|m| self.err(dest.into(), &format!("{path}.destination"), m, ""))?;
        let known_hosts = self.known_hosts(h.known_hosts.as_ref(), at.pos, path)?;
        if let Some(b) = &h.boot {
            self.template(b, &format!("{path}.boot"))?;
        }
        Ok(SshTarget {
            boot: h.boot.map(|b| b.value),
            destination,
            port: h.port.or(port),
            user: h.user,
            identity_file: h.identity_file.map(|i| expand_home(&i.value)),
            known_hosts,
        })
    }

    fn command(&self, h: RawHost, at: &At) -> Result<CommandSpec, PlaybookError> {
        let path = &at.path;
        let need = |key: &str, v: &Option<Spanned<String>>| -> Result<String, PlaybookError> {
            let v = v.as_ref().ok_or_else(|| {
                self.err(
                    at.pos,
                    &format!("{path}.{key}"),
                    format!("a command host needs `{key}:`"),
                    "up: prints {\"address\": …, \"id\": …} as JSON; down: removes the host, with {{ id }}",
                )
            })?;
            self.template(v, &format!("{path}.{key}"))?;
            Ok(v.value.clone())
        };
        Ok(CommandSpec {
            up: need("up", &h.up)?,
            down: need("down", &h.down)?,
            known_hosts: self.known_hosts(h.known_hosts.as_ref(), at.pos, path)?,
            revert: Default::default(),
        })
    }

    fn qemu(&self, h: RawHost, at: &At) -> Result<QemuSpec, PlaybookError> {
        let path = &at.path;
        let k = h.kernel.ok_or_else(|| {
            self.err(at.pos, &format!("{path}.kernel"), "a qemu host needs `kernel:`", "e.g. kernel: { source: linux-source-6.1, fragments: [kernel/lab-minimal.config] } or kernel: { image: path/to/bzImage }")
        })?;
        let kernel = self.kernel(k, path)?;
        for t in &h.tools {
            if t.is_empty() || t.contains(char::is_whitespace) {
                return Err(self.err(
                    at.pos,
                    &format!("{path}.tools"),
                    format!("`{t}` is not a program name"),
                    "",
                ));
            }
        }
        let accel = self.choice(
            h.accel.as_ref(),
            &format!("{path}.accel"),
            &[("tcg", Accel::Tcg), ("kvm", Accel::Kvm)],
            Accel::Tcg,
        )?;
        let cmdline = match &h.cmdline {
            Some(c) => self.cmdline(c, &format!("{path}.cmdline"))?,
            None => Vec::new(),
        };
        let rootfs = self.rootfs(h.rootfs.as_ref(), at)?;
        if rootfs != Rootfs::Initramfs && !h.tools.is_empty() {
            return Err(self.err(
                at.pos,
                &format!("{path}.tools"),
                "a Debian guest has no `tools:` copied from this machine",
                "list Debian packages in rootfs.packages instead (e.g. packages: [iperf3])",
            ));
        }
        let modules = self.modules(&h.modules, path)?;
        if !modules.is_empty() && !matches!(kernel, KernelSpec::Package { .. }) {
            return Err(self.err(
                at.pos,
                &format!("{path}.modules"),
                "`modules:` are taken from a kernel package",
                "with kernel: { package: … }; a kernel built from source has what its config builds in",
            ));
        }
        Ok(QemuSpec {
            accel,
            kernel,
            cmdline,
            memory_mb: h.memory.unwrap_or(1024).clamp(256, 65536),
            cpus: h.cpus.unwrap_or(2).clamp(1, 64),
            tools: h.tools,
            rootfs,
            modules,
        })
    }
}

/// The kernel's command line buffer on x86 (COMMAND_LINE_SIZE), less what kdelta
/// itself passes.
const CMDLINE_ROOM: usize = 2048 - 64; // = 1984, said in the error

impl Validator<'_> {
    /// `cmdline:` words: printable, unquoted (QEMU hands the string to the kernel as
    /// is, and the kernel's own parser would take quotes as part of the value), and
    /// not the ones kdelta needs for itself: the serial console it waits on and the
    /// initramfs init that starts sshd.
    fn cmdline(&self, c: &Spanned<String>, path: &str) -> Result<Vec<String>, PlaybookError> {
        let words: Vec<String> = c.value.split_whitespace().map(str::to_string).collect();
        if c.value.len() > CMDLINE_ROOM {
            return Err(self.err(
                c.into(),
                path,
                format!("{} bytes is longer than the kernel accepts", c.value.len()),
                "keep it under 1984 bytes (the kernel takes 2048, kdelta uses the rest)",
            ));
        }
        for w in &words {
            if !w.chars().all(|ch| ch.is_ascii_graphic()) || w.contains(['"', '\'', '\\']) {
                return Err(self.err(
                    c.into(),
                    path,
                    format!("`{w}` is not a plain kernel parameter"),
                    "parameters are words like slub_debug=FZ or mitigations=off, without quotes",
                ));
            }
            let key = w.split('=').next().unwrap_or(w);
            if ["console", "init", "rdinit", "panic"].contains(&key) {
                return Err(self.err(
                    c.into(),
                    path,
                    format!("`{key}=` is kdelta's own"),
                    "kdelta boots the guest with console=ttyS0 panic=-1 and its own init; set other parameters",
                ));
            }
        }
        Ok(words)
    }
}
