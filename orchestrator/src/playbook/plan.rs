//! The validated playbook: what a run does, with every choice as a type.

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use crate::model::Become;
use crate::model::{Better, ProviderKind, Role};

#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    /// Folder of the playbook: relative paths in it are relative to this.
    pub dir: PathBuf,
    pub text: String,
    pub baseline: HostSpec,
    pub candidate: HostSpec,
    pub vars: BTreeMap<String, serde_json::Value>,
    pub deploy: Vec<DeployStep>,
    pub workload: Workload,
    pub capture: CaptureSpec,
    pub gate: BTreeMap<String, f64>,
    pub timeouts: Timeouts,
}

impl Plan {
    pub fn host_mut(&mut self, role: Role) -> &mut HostSpec {
        match role {
            Role::Baseline => &mut self.baseline,
            Role::Candidate => &mut self.candidate,
        }
    }

    pub fn host(&self, role: Role) -> &HostSpec {
        match role {
            Role::Baseline => &self.baseline,
            Role::Candidate => &self.candidate,
        }
    }
    /// Both hosts, baseline first.
    pub fn hosts(&self) -> [&HostSpec; 2] {
        [&self.baseline, &self.candidate]
    }
    /// The hosts the lab provider builds.
    pub fn lab_specs(&self) -> Vec<&HostSpec> {
        self.hosts()
            .into_iter()
            .filter(|s| matches!(s.provider, Provider::Lab(_)))
            .collect()
    }

    /// Lab hosts share a kernel (and CPUs): capture them one after the other.
    pub fn sequential(&self) -> bool {
        match self.capture.order {
            Order::Sequential => true,
            Order::Concurrent => false,
            Order::Auto => {
                // Lab hosts and qemu guests share this machine's CPUs: one at a time.
                matches!(self.baseline.provider, Provider::Lab(_) | Provider::Qemu(_))
                    || matches!(
                        self.candidate.provider,
                        Provider::Lab(_) | Provider::Qemu(_)
                    )
                    || self.workload.client_from == ClientFrom::Orchestrator
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct HostSpec {
    pub role: Role,
    pub label: Option<String>,
    pub provider: Provider,
    pub setup: Vec<String>,
    pub become_: Become,
    /// Where kdelta makes its work folder on the host (absolute; default `/tmp`).
    pub work_dir: String,
}

/// What a qemu guest runs from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Rootfs {
    /// kdelta's initramfs: busybox, dropbear, perf and the `tools:` of this machine.
    /// Boots in seconds; the default.
    #[default]
    Initramfs,
    /// A full Debian system made by mmdebstrap (systemd, OpenSSH, sudo, Debian's
    /// perf), cached by its package list; each guest writes to its own overlay.
    Debian(DebianRootfs),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebianRootfs {
    pub suite: String,
    /// Packages beyond the base ones kdelta needs (see `provision::qemu::rootfs`).
    pub packages: Vec<String>,
    /// The login user: `root`, or a user made with passwordless sudo.
    pub user: String,
    pub disk_gb: u32,
}

#[derive(Clone, Debug)]
pub enum Provider {
    Lab(LabKnobs),
    Ssh(SshTarget),
    Qemu(QemuSpec),
    Command(CommandSpec),
}

/// A host made and removed by the user's own commands (cloud CLIs, vzctl, virt-install).
#[derive(Clone, Debug)]
pub struct CommandSpec {
    /// Templated; prints JSON: `address` (required), `port`, `user`, `identity_file`, `id`.
    pub up: String,
    /// Templated with `id` (and the playbook's vars); always run at teardown.
    pub down: String,
    pub known_hosts: KnownHostsPolicy,
    /// What `kdelta verify`/`bisect` asks the host `up` makes to differ from the
    /// candidate (the template's `revert`); empty in a plain run.
    pub revert: RevertVars,
}

/// The template variable `revert` of a command host's `up` and `down`: the config
/// options and boot parameters a counterfactual host must have set back to the
/// baseline's values. Every list is empty in a plain run, so a template can always
/// read them (`{% for o in revert.options %}`). The host's kernel is the user's to
/// build and boot (a cloud image, user data that installs a kernel, kexec, grub-reboot):
/// kdelta checks what really changed from the new host's own capture.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RevertVars {
    /// Every item reverted, with its two values.
    pub items: Vec<crate::model::DeltaItem>,
    /// Config fragment lines to build with: `CONFIG_KASAN=n`, `CONFIG_HZ=250`.
    pub options: Vec<String>,
    /// Boot parameters to take out of the command line (their keys) …
    pub cmdline_remove: Vec<String>,
    /// … and to put in (`key=value`, or `key` for a flag).
    pub cmdline_add: Vec<String>,
}

impl Provider {
    pub fn kind(&self) -> ProviderKind {
        match self {
            Provider::Lab(_) => ProviderKind::Lab,
            Provider::Ssh(_) => ProviderKind::Ssh,
            Provider::Qemu(_) => ProviderKind::Qemu,
            Provider::Command(_) => ProviderKind::Command,
        }
    }
}

/// A QEMU guest: its kernel, size, and the tools copied into it.
#[derive(Clone, Debug)]
pub struct QemuSpec {
    pub kernel: KernelSpec,
    pub memory_mb: u32,
    pub cpus: u32,
    pub tools: Vec<String>,
    pub accel: Accel,
    /// Parameters appended to the kernel command line kdelta boots the guest with
    /// (after its own `console=ttyS0 panic=-1 quiet`), one word each.
    pub cmdline: Vec<String>,
    pub rootfs: Rootfs,
    /// Modules of a packaged kernel loaded at boot, after those kdelta needs.
    pub modules: Vec<String>,
}

/// The QEMU accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation: works everywhere, slowly.
    Tcg,
    /// Where /dev/kvm really works (a /dev/kvm that opens is no proof: nested KVM
    /// can hang the guest), so only when the playbook asks.
    Kvm,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

#[derive(Clone, Debug)]
pub enum KernelSpec {
    /// Built from source: base config + fragments + inline options.
    Source {
        source: SourceTree,
        base: String,
        fragments: Vec<PathBuf>,
        options: BTreeMap<String, String>,
        /// Which requested options must survive `olddefconfig`.
        check: ApplyCheck,
    },
    /// A kernel image booted as is.
    Image { path: PathBuf },
    /// A Debian kernel image package, resolved and downloaded at run time.
    Package { name: String },
}

/// Which requested options a source build insists on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyCheck {
    /// Every option of the fragments and the inline list (a playbook's kernel: a lost
    /// option means the playbook does not build what it says).
    All,
    /// The inline options only: `kdelta verify` flips one option on top of the
    /// candidate's fragments, and the fragments' options that depend on it may go
    /// with it (KASAN off drags KASAN_GENERIC off); the real applied delta is
    /// recorded from the two final configs instead.
    InlineOnly,
    /// None: a `kdelta bisect` step reverts a set of options, and Kconfig taking
    /// some back (an option selected by another of the candidate's) is one of the
    /// step's outcomes, read from the guests' configs, not an error.
    Nothing,
}

#[derive(Clone, Debug)]
pub enum SourceTree {
    /// `linux-source-X`: the tarball that Debian package installs in /usr/src.
    DebianPackage(String),
    Path(PathBuf),
}

#[derive(Clone, Debug, Default)]
pub struct LabKnobs {
    pub sysctl: BTreeMap<String, String>,
    /// A ruleset file (absolute, resolved against the playbook's folder).
    pub nftables: Option<PathBuf>,
    /// `tc qdisc add dev eth0 root …` arguments, e.g. `netem delay 1ms`.
    pub qdisc: Option<Vec<String>>,
    /// ethtool -K feature → on/off.
    pub offloads: BTreeMap<String, bool>,
    pub mtu: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct SshTarget {
    /// `user@host`, `host`, or a Host alias of ~/.ssh/config.
    pub destination: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_file: Option<PathBuf>,
    pub known_hosts: KnownHostsPolicy,
    /// Run on this machine (templated with `revert`, the playbook's vars, `role`
    /// and `destination`) to reboot the host into the kernel and command line
    /// `revert` describes, or, with every list of `revert` empty, back into the
    /// candidate as it was; kdelta waits for a new boot id. Only `kdelta verify`
    /// and `bisect` run it.
    pub boot: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KnownHostsPolicy {
    /// The user's known_hosts must already have the key.
    Strict,
    /// Accept and remember an unknown key (only when the playbook asks).
    AcceptNew,
    /// A known_hosts file of its own (a fleet's pinned keys), checked strictly.
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub enum DeployStep {
    Upload { from: PathBuf, to: String },
    Run { command: String, timeout: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFrom {
    /// On the machine running kdelta, against the host's address.
    Orchestrator,
    /// On the host itself (e.g. over loopback).
    Host,
}

#[derive(Clone, Debug)]
pub struct Workload {
    pub server: Option<String>,
    pub client: String,
    pub client_from: ClientFrom,
    pub metrics: Vec<MetricSpec>,
    pub timeout: u64,
    pub server_ready_wait: f64,
}

#[derive(Clone, Debug)]
pub struct MetricSpec {
    pub name: String,
    pub extract: Extract,
    pub unit: String,
    pub better: Better,
    pub from_server: bool,
    pub scale: f64,
}

#[derive(Clone, Debug)]
pub enum Extract {
    /// Dotted path into the output's JSON: `end.sum_received.bits_per_second`, `a[0].b`.
    Json(String),
    /// First capture group of the first match.
    Regex(regex::Regex),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Auto,
    Sequential,
    Concurrent,
}

/// How perf record unwinds the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallGraph {
    Fp,
    Dwarf,
    Lbr,
}

impl CallGraph {
    /// perf record's arguments for it.
    pub fn perf_args(self) -> &'static str {
        match self {
            CallGraph::Fp => "-g",
            CallGraph::Dwarf => "--call-graph dwarf",
            CallGraph::Lbr => "--call-graph lbr",
        }
    }
}

#[derive(Clone, Debug)]
pub struct CaptureSpec {
    pub frequency: u32,
    pub call_graph: CallGraph,
    pub event: Option<String>,
    /// Pairs to take: the count, or with `adaptive` the most that may be taken.
    pub repeat: u32,
    /// `repeat: auto`: pairs are added while the decision is unknown.
    pub adaptive: Option<Adaptive>,
    pub stat: bool,
    pub order: Order,
}

/// Adaptive repeats: start with [`Adaptive::FIRST`] pairs, add one at a time while
/// any metric's decision is unknown, stop at `max_pairs` or after `max_seconds`.
///
/// The data are looked at on a geometric schedule (after 2, 3, 4, 6, 8, 12, 16, 24 …
/// pairs, and at the budget), not after every pair: each look is tested at
/// α / looks (Bonferroni), and an interval only narrows as 1/√n, so a look one pair
/// after the last one adds little chance to decide while it costs every look its
/// share of α. With a budget of 16 pairs that is 7 looks instead of 15.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adaptive {
    pub max_pairs: u32,
    pub max_seconds: Option<u64>,
}

impl Adaptive {
    /// Pairs taken before the first look.
    pub const FIRST: u32 = 2;
    pub const DEFAULT_MAX: u32 = 10;

    /// Whether the data are looked at after `pairs` pairs.
    pub fn looks_at(&self, pairs: u32) -> bool {
        if pairs >= self.max_pairs {
            return true;
        }
        let mut k = Self::FIRST;
        while k < pairs {
            // 2, 3, 4, 6, 8, 12, 16, …: the powers of two and the points halfway
            // between them.
            k = if k.is_power_of_two() {
                k + k / 2
            } else {
                k / 3 * 4
            };
        }
        k == pairs
    }

    /// How many times the data may be looked at within the budget.
    pub fn looks(&self) -> u32 {
        let n = (Self::FIRST..=self.max_pairs.max(Self::FIRST))
            .filter(|p| self.looks_at(*p))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX).max(1)
    }
}

#[derive(Clone, Debug)]
pub struct Timeouts {
    pub connect: u64,
    pub command: u64,
    pub run: u64,
}
