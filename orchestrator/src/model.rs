//! Files of the run directory and their types. Field names are a contract with users
//! and other tools (design.md §1, §4): add fields freely, never rename.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::kconfig::ConfigChange;

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
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ResumeRecord {
    pub at: String,
    pub command: Vec<String>,
    /// Roles captured again; their earlier partial files moved to `hosts/<role>.attempt-N`.
    pub recaptured: Vec<String>,
}

/// `hosts.json`: what was provisioned and how to tear it down.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HostsRecord {
    pub hosts: Vec<HostRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostRecord {
    pub role: String,
    /// The playbook's `label:` for the host, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub provider: String,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<serde_json::Value>,
    /// `kdelta gate`: the decision per `gate:` rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<crate::gate::GateDecision>,
    /// `--history DIR`: earlier runs of the same playbook, oldest first, this one last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<crate::history::HistoryPoint>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SideSummary {
    pub name: String,
    pub kernel: Option<String>,
    pub samples: u64,
    pub busy_samples: u64,
    pub idle_share: f64,
    pub event: String,
    pub repeats: u32,
    pub nr_cpus: Option<u32>,
    pub cpu_model: Option<String>,
    pub virtualization: Option<String>,
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
    /// Every repeat has a value on both sides, so value i of each side are a pair
    /// taken next to each other in time.
    #[serde(default)]
    pub paired: bool,
    /// `worse`, `better` or `same`, from the direction and the test.
    pub assessment: String,
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
    /// `candidate` or `baseline` when the function was seen on one side only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_on: Option<String>,
    /// p-value across repeats (Welch's t on per-repeat shares), when both sides have ≥2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_p_value: Option<f64>,
    /// 95% interval of `delta`: a bootstrap over repeats when both sides have ≥3,
    /// otherwise from the sample counts (`delta_ci_method` says which).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_ci: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_ci_method: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FunctionShare {
    pub symbol: String,
    pub baseline_share: f64,
    pub candidate_share: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RuntimeChange {
    pub key: String,
    pub baseline: String,
    pub candidate: String,
    /// `knob` (a setting someone chose) or `confounder` (kernel version, hardware).
    pub kind: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Attribution {
    pub cause: String,
    /// `kconfig`, `cmdline`, `sysctl`, `runtime`.
    pub kind: String,
    pub baseline: String,
    pub candidate: String,
    pub explained_share: f64,
    pub baseline_charged: f64,
    pub candidate_charged: f64,
    pub p_value: f64,
    pub confidence: String,
    /// How the functions were tied to the cause: `knowledge-base`, `name-match`, `kernel-source`.
    pub source: String,
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

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EvidenceStack {
    pub side: String,
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
