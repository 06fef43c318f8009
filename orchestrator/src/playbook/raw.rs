//! The playbook as YAML says it: serde structs with their places in the file
//! (serde-saphyr's `Spanned`), unknown keys rejected. [`super::validate`] turns
//! them into a [`super::Plan`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlaybook {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub hosts: RawHosts,
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub deploy: Vec<RawDeployStep>,
    pub workload: RawWorkload,
    #[serde(default)]
    pub capture: Option<RawCapture>,
    #[serde(default)]
    pub gate: BTreeMap<String, RawGateRule>,
    #[serde(default)]
    pub timeouts: Option<RawTimeouts>,
    /// `sudo`: kdelta's commands on both hosts run through `sudo -n` (a host's own
    /// `become:` wins).
    #[serde(default, rename = "become")]
    pub become_: Option<Spanned<RawBecome>>,
}

/// `become: sudo`, `become: true` (sudo, Ansible's spelling) or `false`/`none`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawBecome {
    Flag(bool),
    Word(String),
}

/// qemu `rootfs:`: `initramfs` (the default), `debian`, or
/// `{ debian: bookworm, packages: [nginx-light], user: admin }`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawRootfs {
    Word(String),
    Debian(RawDebianRootfs),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDebianRootfs {
    /// The suite: `bookworm` (default), `trixie` …
    pub debian: Option<String>,
    #[serde(default)]
    pub packages: Vec<String>,
    /// The login user (passwordless sudo); `root` by default.
    pub user: Option<String>,
    /// Size of the guest's disk in GiB (default 4): room for perf.data.
    pub disk_gb: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHosts {
    pub baseline: Spanned<RawHost>,
    pub candidate: Spanned<RawHost>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub provider: Option<Spanned<String>>,
    /// Shorthand for `provider: ssh, destination: …`.
    pub ssh: Option<Spanned<String>>,
    pub destination: Option<Spanned<String>>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_file: Option<Spanned<String>>,
    pub known_hosts: Option<Spanned<String>>,
    pub label: Option<String>,
    pub sysctl: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
    pub nftables: Option<Spanned<String>>,
    pub qdisc: Option<Spanned<String>>,
    pub offloads: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
    pub mtu: Option<Spanned<u32>>,
    /// command: prints the host as JSON (`address`, `port`, `user`, `identity_file`, `id`).
    pub up: Option<Spanned<String>>,
    /// command: removes the host; `{{ id }}` is what `up` printed.
    pub down: Option<Spanned<String>>,
    /// ssh: run on this machine to reboot the host into the kernel and command line
    /// `revert` asks for (`kdelta verify`/`bisect` of a config option or boot
    /// parameter on one machine): kexec, grub-reboot, a BMC.
    pub boot: Option<Spanned<String>>,
    /// qemu: the kernel to boot.
    pub kernel: Option<Spanned<RawKernel>>,
    /// qemu: guest memory in MiB and CPUs.
    pub memory: Option<u32>,
    pub cpus: Option<u32>,
    /// qemu: `tcg` (default: works everywhere) or `kvm` (where /dev/kvm really works;
    /// a /dev/kvm that opens is no proof: nested KVM can hang the guest).
    pub accel: Option<Spanned<String>>,
    /// qemu: parameters appended to the guest kernel's command line
    /// (`slub_debug=FZ init_on_free=1 mitigations=off`).
    pub cmdline: Option<Spanned<String>>,
    /// qemu: programs of this machine to put in the guest (with their libraries).
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub setup: Vec<Spanned<String>>,
    /// `sudo`: kdelta's commands on this host run through `sudo -n`.
    #[serde(default, rename = "become")]
    pub become_: Option<Spanned<RawBecome>>,
    /// The folder kdelta's work folder is made in on the host (default /tmp).
    pub work_dir: Option<Spanned<String>>,
    /// qemu: the guest's root: kdelta's initramfs or a full Debian system.
    pub rootfs: Option<Spanned<RawRootfs>>,
    /// qemu, packaged kernels: modules loaded at boot (with what they depend on).
    #[serde(default)]
    pub modules: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKernel {
    /// `linux-source-6.1` (a Debian package) or a kernel tree's path.
    pub source: Option<Spanned<String>>,
    /// `tinyconfig` (default), `defconfig`, `allnoconfig`.
    pub base: Option<Spanned<String>>,
    #[serde(default)]
    pub fragments: Vec<Spanned<String>>,
    pub options: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
    /// A bzImage/vmlinuz to boot as is.
    pub image: Option<Spanned<String>>,
    /// A Debian kernel image package (`linux-image-rt-amd64`, `linux-image-6.1.0-28-amd64`).
    pub package: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeployStep {
    pub upload: Option<RawUpload>,
    pub run: Option<Spanned<String>>,
    pub timeout: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpload {
    pub from: Spanned<String>,
    pub to: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkload {
    pub server: Option<Spanned<String>>,
    pub client: Spanned<RawClient>,
    #[serde(default)]
    pub metrics: BTreeMap<String, Spanned<RawMetric>>,
    pub timeout: Option<u64>,
    /// Seconds to wait after starting the server before the client.
    pub server_ready_wait: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    #[serde(default)]
    pub from: Option<Spanned<String>>,
    pub run: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetric {
    pub json: Option<String>,
    pub regex: Option<String>,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub better: Option<Spanned<String>>,
    #[serde(default)]
    pub source: Option<Spanned<String>>,
    #[serde(default)]
    pub scale: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapture {
    pub perf: Option<RawPerf>,
    pub repeat: Option<Spanned<RawRepeat>>,
    /// With `repeat: auto`: at most this many pairs (default 10).
    pub max_repeat: Option<Spanned<u32>>,
    /// With `repeat: auto`: stop adding pairs after this long.
    pub max_minutes: Option<Spanned<f64>>,
    pub stat: Option<bool>,
    pub order: Option<Spanned<String>>,
}

/// `repeat: 5` or `repeat: auto`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawRepeat {
    Count(u32),
    Word(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPerf {
    pub frequency: Option<Spanned<u32>>,
    pub call_graph: Option<Spanned<String>>,
    pub event: Option<String>,
    pub during: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateRule {
    pub max_regression: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub connect: Option<u64>,
    pub command: Option<u64>,
    pub run: Option<u64>,
}
