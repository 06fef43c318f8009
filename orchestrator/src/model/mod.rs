//! Files of the run directory and their types, and the enums shared by the stages.
//! Field names and enum spellings are a contract with users and other tools
//! (design.md §1, §4): add fields freely, never rename. This module imports nothing
//! from the rest of the crate: every stage may use it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// `Display` as the enum's `as_str()`: the spelling of summary.json and of the CLI.
macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_str!(
    Role,
    ProviderKind,
    Confidence,
    CauseSource,
    GateStatus,
    TestKind
);

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The two sides of every comparison.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Baseline,
    Candidate,
}

impl Role {
    /// Both roles, baseline first (the order of every listing).
    pub const ALL: [Role; 2] = [Role::Baseline, Role::Candidate];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Baseline => "baseline",
            Role::Candidate => "candidate",
        }
    }
    pub fn other(self) -> Role {
        match self {
            Role::Baseline => Role::Candidate,
            Role::Candidate => Role::Baseline,
        }
    }
}

/// How a host came to be (`hosts.json`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Lab,
    Ssh,
    Qemu,
    Command,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Lab => "lab",
            ProviderKind::Ssh => "ssh",
            ProviderKind::Qemu => "qemu",
            ProviderKind::Command => "command",
        }
    }
    /// Hosts kdelta does not own: its work folder there is removed at teardown over SSH.
    pub fn is_foreign(self) -> bool {
        matches!(self, ProviderKind::Ssh | ProviderKind::Command)
    }
}

/// `hosts/<role>/facts.json`. Every field may be missing in hand-made captures.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Facts {
    pub hostname: Option<String>,
    pub kernel: Option<String>,
    pub nr_cpus: Option<u32>,
    pub cpu_model: Option<String>,
    pub memory_kb: Option<u64>,
    pub virtualization: Option<String>,
    pub os: Option<String>,
    pub cmdline: Option<String>,
    pub sysctl: BTreeMap<String, String>,
    pub mitigations: BTreeMap<String, String>,
    pub cpufreq_governor: Option<String>,
    pub thp: Option<String>,
    pub nic: Vec<Nic>,
    pub perf_version: Option<String>,
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Facts {
    /// An integer setting recorded in `extra` (`perf_event_paranoid`, `kptr_restrict`).
    pub fn extra_int(&self, key: &str) -> Option<i64> {
        self.extra
            .get(key)
            .and_then(|v| v.as_str())
            .and_then(|s| s.trim().parse().ok())
    }
    /// Whether kdelta ran as root there (assumed when not recorded).
    pub fn is_root(&self) -> bool {
        self.extra.get("is_root").is_none_or(|v| v != "0")
    }
}

/// How kdelta's commands run on a host: as the login user, or as root through
/// `sudo -n` (a login user that is not root: an EC2 `admin`, a colleague's box).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Become {
    #[default]
    No,
    Sudo,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Nic {
    pub name: String,
    pub driver: Option<String>,
    pub mtu: Option<u32>,
    pub qdisc: Option<String>,
    /// `ethtool -k` features: name → `on`/`off` (`[fixed]` dropped).
    pub features: BTreeMap<String, String>,
}

/// Which way is better for a metric.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    #[default]
    Higher,
    Lower,
}

impl Better {
    pub fn as_str(self) -> &'static str {
        match self {
            Better::Higher => "higher",
            Better::Lower => "lower",
        }
    }

    /// -1 when higher is better, +1 when lower is: turns a relative change of the
    /// candidate into a worsening, and a worsening back into a change.
    pub fn worsening_sign(self) -> f64 {
        match self {
            Better::Higher => -1.0,
            Better::Lower => 1.0,
        }
    }
}

/// `hosts/<role>/metrics.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Metrics {
    pub repeats: u32,
    pub metrics: Vec<MetricSeries>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MetricSeries {
    pub name: String,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub better: Better,
    /// One value per repeat; `null` where the repeat gave none.
    pub values: Vec<Option<f64>>,
}

/// Status of one phase of a run.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PhaseStatus {
    Running,
    Ok,
    Failed,
    Skipped,
    Interrupted,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub status: PhaseStatus,
    pub started: String,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `run.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub tool: String,
    pub version: String,
    pub playbook: String,
    /// The playbook's `name:` (older runs: absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub command: Vec<String>,
    pub started: String,
    #[serde(default)]
    pub finished: Option<String>,
    pub status: PhaseStatus,
    #[serde(default)]
    pub error: Option<String>,
    pub phases: Vec<PhaseRecord>,
    /// `kdelta run --resume`: when, and which roles were captured again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumes: Vec<ResumeRecord>,
    /// Adaptive repeats: how many pairs were taken, and why the run stopped there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<AdaptiveRecord>,
}

/// `kdelta verify`: one delta item set back to the baseline's value on the live
/// candidate and put back again, so one host measures both states in turn. The
/// commands are templates rendered like the playbook's (`{{ work }}` is the
/// candidate's work folder), run as the playbook's user.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateToggle {
    /// The delta item (`netfilter.nft_rules`, `sysctl.net.core.busy_poll`).
    pub item: String,
    pub baseline: String,
    pub candidate: String,
    /// Run once before anything changes: keeps what `restore` needs.
    pub save: Option<String>,
    /// Sets the item to the baseline's value.
    pub apply: String,
    /// Sets it back to the candidate's value (after `save`).
    pub restore: String,
    /// Where `apply` and `restore` run: on the host, or on this machine as the
    /// playbook's `boot:` hook that reboots the host into the state.
    #[serde(default)]
    pub by: ToggleBy,
}

/// How a [`StateToggle`] puts the host into a state.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ToggleBy {
    /// Shell commands on the live host (a sysctl, a ruleset).
    #[default]
    Command,
    /// The ssh host's `boot:` hook, run on this machine: it reboots the host into
    /// another kernel or command line (kexec, grub-reboot); kdelta waits for a new
    /// boot and deploys again. Its commands are rendered already (with `revert`).
    Boot,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdaptiveRecord {
    /// The budget of pairs, the looks it allows and the level of each look.
    pub max_pairs: u32,
    pub looks: u32,
    pub alpha: f64,
    /// Pairs taken.
    pub pairs: u32,
    /// `decided after 3 pairs: …`, or the budget that stopped it.
    pub stopped: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ResumeRecord {
    pub at: String,
    pub command: Vec<String>,
    /// Roles captured again; their earlier partial files moved to `hosts/<role>.attempt-N`.
    pub recaptured: Vec<Role>,
    /// Why, when kdelta resumed on its own (a guest's kernel crashed mid-run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The guests lost that made kdelta take the run again, and how.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<LostGuest>,
}

/// A qemu guest whose SSH connection was lost mid-run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LostGuest {
    pub role: Role,
    pub how: GuestLoss,
    /// The crash line on its console, or (a freeze) its console's last line.
    pub line: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GuestLoss {
    /// A panic, oops or BUG on its console.
    Crashed,
    /// Nothing on its console: it stopped answering.
    Froze,
}

impl LostGuest {
    pub fn show(&self) -> String {
        match self.how {
            GuestLoss::Crashed => format!(
                "{}: the guest's kernel crashed during the run ({})",
                self.role, self.line
            ),
            GuestLoss::Froze => format!(
                "{}: the guest stopped answering over SSH during the run, with no crash on its console (its last line: {:?})",
                self.role, self.line
            ),
        }
    }
}

/// `hosts.json`: what was provisioned and how to tear it down.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HostsRecord {
    pub hosts: Vec<HostRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostRecord {
    pub role: Role,
    /// The playbook's `label:` for the host, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub provider: ProviderKind,
    pub destination: String,
    pub address: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub user: Option<String>,
    /// kdelta's folder on the host (removed at teardown; by hand after a `kill -9`).
    #[serde(default)]
    pub work_folder: String,
    /// Provider-specific resources to remove at teardown (namespace, veth, pid …).
    #[serde(default)]
    pub teardown: BTreeMap<String, String>,
}

// ----- summary.json -------------------------------------------------------------

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub schema: u32,
    pub tool_version: String,
    pub baseline: SideSummary,
    pub candidate: SideSummary,
    pub verdict: Verdict,
    pub metrics: Vec<MetricDelta>,
    pub functions: Vec<FunctionDelta>,
    pub config_delta: Vec<ConfigChange>,
    #[serde(default)]
    pub config_counts: ConfigDeltaCounts,
    pub runtime_delta: Vec<RuntimeChange>,
    pub attributions: Vec<Attribution>,
    pub unexplained_share: f64,
    pub unexplained_functions: Vec<FunctionShare>,
    /// Share of busy samples that moved between the two profiles (half the L1
    /// distance of the self-time distributions).
    pub profile_shift: f64,
    pub caveats: Vec<String>,
    pub warnings: Vec<String>,
    /// Busy-share of each side charged to the top causes, for the report's chart.
    pub cause_shares: Vec<CauseShare>,
    /// `run.json` as it was when the summary was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunRecord>,
    /// `kdelta gate`: the decision per `gate:` rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateDecision>,
    /// `--history DIR`: earlier runs of the same playbook, oldest first, this one last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryPoint>,
    /// `kdelta verify` and `kdelta bisect` of this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
}

/// What a profile's shares are shares of.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Weighting {
    /// Each sample weighs its period (events counted since the last sample), as
    /// `perf report` and inferno weigh them: used when every header has a period.
    Period,
    /// Each sample weighs 1 (headers without a period, perf 3.x).
    #[default]
    Samples,
}

impl Weighting {
    pub fn as_str(self) -> &'static str {
        match self {
            Weighting::Period => "period",
            Weighting::Samples => "samples",
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SideSummary {
    pub name: String,
    pub kernel: Option<String>,
    pub samples: u64,
    pub busy_samples: u64,
    /// What the shares of this side weigh: `period` or `samples`.
    #[serde(default)]
    pub weighted_by: Weighting,
    /// Samples dropped because none of their frames could be read.
    #[serde(default)]
    pub dropped_samples: u64,
    pub idle_share: f64,
    pub event: String,
    pub repeats: u32,
    pub nr_cpus: Option<u32>,
    pub cpu_model: Option<String>,
    pub virtualization: Option<String>,
    /// `uname -m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// The compiler that built the running kernel, from its `/proc/version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiler: Option<String>,
    /// sha256 of `kernel.config` as captured: the same digest `sha256sum .config` prints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_sha256: Option<String>,
    /// Where the host's config was read (`/proc/config.gz`, `/boot/config-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_source: Option<String>,
    pub files: Vec<String>,
    pub missing: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictStatus {
    Regression,
    Improvement,
    #[default]
    NoChange,
    Inconclusive,
}

impl VerdictStatus {
    /// The name used in summary.json and printed by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictStatus::Regression => "regression",
            VerdictStatus::Improvement => "improvement",
            VerdictStatus::NoChange => "no-change",
            VerdictStatus::Inconclusive => "inconclusive",
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Verdict {
    pub status: VerdictStatus,
    pub headline: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MetricDelta {
    pub name: String,
    pub unit: String,
    pub better: Better,
    /// Means over repeats.
    pub baseline: f64,
    pub candidate: f64,
    /// Relative change of the mean, candidate vs baseline (-0.31 = 31% lower).
    pub change: f64,
    pub p_value: Option<f64>,
    /// 95% bootstrap interval of the relative change, when there are repeats.
    pub change_ci: Option<[f64; 2]>,
    pub baseline_values: Vec<f64>,
    pub candidate_values: Vec<f64>,
    /// Value i of each side are a pair taken next to each other in time.
    #[serde(default)]
    pub paired: bool,
    /// Values left out because the other side's repeat of their pair gave none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u32,
    /// From the direction and the test.
    pub assessment: Assessment,
    /// The decision on this metric: the one procedure behind the verdict, the gate,
    /// the headline and the interval shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<MetricDecision>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FunctionDelta {
    pub symbol: String,
    pub kernel: bool,
    /// Inclusive share of busy samples (the function anywhere on the stack).
    pub baseline_share: f64,
    pub candidate_share: f64,
    /// Self share of busy samples (the function at the leaf).
    pub baseline_self: f64,
    pub candidate_self: f64,
    pub delta: f64,
    pub p_value: f64,
    pub significant: bool,
    /// The side the function was seen on, when it was seen on one side only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_on: Option<Role>,
    /// p-value across repeats (Welch's t on per-repeat shares), when both sides have ≥2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_p_value: Option<f64>,
    /// 95% interval of `delta`: a bootstrap over repeats when both sides have ≥3,
    /// otherwise from the sample counts (`delta_ci_method` says which).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_ci: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_ci_method: Option<CiMethod>,
    /// Relative standard deviation of the inclusive share over repeats (baseline,
    /// candidate), when both sides have ≥ 2: lkp's `%stddev` of a perf-profile row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_rsd: Option<[f64; 2]>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FunctionShare {
    pub symbol: String,
    pub baseline_share: f64,
    pub candidate_share: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RuntimeChange {
    pub key: String,
    pub baseline: String,
    pub candidate: String,
    pub kind: KeyKind,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attribution {
    pub cause: String,
    pub kind: CauseKind,
    pub baseline: String,
    pub candidate: String,
    pub explained_share: f64,
    pub baseline_charged: f64,
    pub candidate_charged: f64,
    pub p_value: f64,
    pub confidence: Confidence,
    /// How the functions were tied to the cause.
    pub source: CauseSource,
    pub why: String,
    /// Other delta items that share this entry's evidence (e.g. DEBUG_LOCK_ALLOC with LOCKDEP).
    pub related: Vec<String>,
    pub evidence: Vec<Evidence>,
    pub stacks: Vec<EvidenceStack>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Evidence {
    pub symbol: String,
    pub candidate_share: f64,
    pub baseline_share: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvidenceStack {
    pub side: Role,
    pub share: f64,
    /// Root first.
    pub frames: Vec<String>,
    /// Index in `frames` of the frame the sample was charged to.
    #[serde(default)]
    pub charged: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CauseShare {
    pub cause: String,
    pub baseline: f64,
    pub candidate: f64,
}

/// One option whose value differs between the two kernels' `.config`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConfigChange {
    pub option: String,
    /// The value; `n` for `# … is not set` (or absent in the same kernel version),
    /// `(absent)` when the option exists in the other kernel only.
    pub baseline: String,
    pub candidate: String,
    #[serde(default)]
    pub kind: ConfigChangeKind,
}

/// How an option differs (the rule is the config diff's, in `kconfig`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ConfigChangeKind {
    /// Set on both sides, to different values (`y` ↔ `m`, 250 ↔ 1000).
    #[default]
    Value,
    /// Enabled on one side (`y`, `m`, a value), disabled on the other (`is not set`,
    /// or absent in the same kernel version).
    Toggled,
    /// Absent from one kernel's file across different kernel versions: the symbol
    /// exists in one kernel only. A version effect, not a knob.
    OneKernelOnly,
}

/// How many options of the config delta differ in each way.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ConfigDeltaCounts {
    pub value: usize,
    pub toggled: usize,
    pub one_kernel_only: usize,
    /// The kernel versions of the two configs (`# Linux/x86 6.1.192 …`), if read.
    pub baseline_version: Option<String>,
    pub candidate_version: Option<String>,
}

/// What a metric did, from its direction and the test.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Assessment {
    Worse,
    Better,
    #[default]
    Same,
    /// Moved by a lot, but not significantly across repeats.
    Unclear,
}

/// How a function delta's interval was computed.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CiMethod {
    /// A bootstrap over per-repeat shares (both sides with ≥3 repeats).
    RepeatsBootstrap,
    /// From the sample counts (normal approximation).
    Counts,
}

/// A runtime key: a setting someone chose, or a difference that is not a knob.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    Knob,
    /// Kernel version, hardware, perf version: listed as caveats, never blamed.
    Confounder,
}

/// What kind of delta item a cause is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CauseKind {
    Kconfig,
    Cmdline,
    Sysctl,
    Runtime,
}

impl CauseKind {
    /// The kind of a runtime-delta key (`cmdline.x`, `sysctl.x`, anything else).
    pub fn of_key(key: &str) -> CauseKind {
        if key.starts_with("cmdline.") {
            CauseKind::Cmdline
        } else if key.starts_with("sysctl.") {
            CauseKind::Sysctl
        } else {
            CauseKind::Runtime
        }
    }
}

/// How sure an attribution is (from size, significance and direction).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// How a cause's functions were tied to it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CauseSource {
    /// An entry of `configs/attribution.yaml`.
    KnowledgeBase,
    /// Functions named after the option, seen on one side only.
    NameMatch,
    /// Kbuild and `#ifdef` of a kernel source tree.
    KernelSource,
    /// The only difference captured, with functions on one side only.
    Elimination,
    /// The kernel's own maps: the module perf placed a function in (the
    /// `[module]` tags of /proc/kallsyms), and the modules Kbuild builds for an option.
    KernelMap,
}

impl CauseSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CauseSource::KnowledgeBase => "knowledge-base",
            CauseSource::NameMatch => "name-match",
            CauseSource::KernelSource => "kernel-source",
            CauseSource::Elimination => "elimination",
            CauseSource::KernelMap => "kernel-map",
        }
    }
}

/// A delta item and its two values, as verify and bisect revert it: `key`
/// (`CONFIG_KASAN`, `cmdline.slub_debug`), `baseline` (the value wanted back,
/// `(absent)` when the baseline lacks it), `candidate` (the value now).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeltaItem {
    pub key: String,
    pub baseline: String,
    pub candidate: String,
}

impl DeltaItem {
    /// `CONFIG_KASAN (y → n)`: the item and the direction of its revert.
    pub fn show(&self) -> String {
        format!("{} ({} → {})", self.key, self.candidate, self.baseline)
    }
}

mod decision;
mod proof;
pub use decision::*;
pub use proof::*;
