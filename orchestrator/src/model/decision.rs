//! The decision types of summary.json: each metric's decision, the gate's rules,
//! and the history of earlier runs.

use serde::{Deserialize, Serialize};

use super::Better;

// ----- decisions -----------------------------------------------------------------

/// The three-valued decision on one metric (Pinpoint's: changed, same, unknown).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DecisionStatus {
    /// Worse beyond the limit.
    Regression,
    /// Better beyond the limit.
    Improvement,
    /// The interval lies within ± the limit.
    Same,
    /// More pairs needed.
    Unknown,
}

/// Which test an interval and p-value come from.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TestKind {
    /// One-sample t on the log ratios of pairs taken next to each other in time.
    PairedLogT,
    /// Welch's t on the logs of each side (repeats that do not pair up).
    WelchLogT,
    /// Too few values for a test.
    None,
}

impl TestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TestKind::PairedLogT => "paired t on log ratios",
            TestKind::WelchLogT => "Welch t on logs",
            TestKind::None => "no test",
        }
    }
}

/// What decided a metric.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DecidedBy {
    /// The metric's own test.
    Metric,
    /// Too few repeats for the metric's test, but every repeat moved beyond the
    /// limit and the profile's evidence (a large, highly significant attribution)
    /// says the same.
    CpuEvidence,
    /// Nothing yet: the status is unknown.
    Nothing,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetricDecision {
    pub status: DecisionStatus,
    /// The limit that counts as a change (the gate rule's, else the default), and the
    /// two-sided significance level used (smaller when repeats are added adaptively).
    pub limit: f64,
    pub alpha: f64,
    /// Geometric mean of the candidate/baseline ratios as a worsening (positive =
    /// worse), its `1 - alpha` interval and p, all from `test`.
    pub worsening: Option<f64>,
    pub worsening_ci: Option<[f64; 2]>,
    pub p_value: Option<f64>,
    pub test: TestKind,
    /// Robust shift: Hodges–Lehmann, as a worsening.
    pub hodges_lehmann: Option<f64>,
    /// Cliff's δ in the worse direction: 1 when every candidate value is worse than
    /// every baseline value.
    pub cliffs_delta: Option<f64>,
    /// Pairs (or, unpaired, the smaller side's values).
    pub pairs: usize,
    pub decided_by: DecidedBy,
    /// One sentence: what decided it, with the numbers.
    pub reason: String,
    /// For `unknown`: about how many pairs would decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairs_needed: Option<u32>,
    /// Bimodal values, drift from first to last repeat, an outlier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

// ----- the gate (summary.json `gate`) ------------------------------------------------

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum GateStatus {
    Pass,
    Improvement,
    Inconclusive,
    Regression,
}

impl GateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GateStatus::Pass => "pass",
            GateStatus::Improvement => "improvement",
            GateStatus::Inconclusive => "inconclusive",
            GateStatus::Regression => "regression",
        }
    }
}

/// The decision on one `gate:` rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RuleDecision {
    pub metric: String,
    pub unit: String,
    pub better: Better,
    /// The limit, as a fraction (0.05 = 5%).
    pub max_regression: f64,
    pub status: GateStatus,
    /// Relative worsening of the candidate's mean (positive = worse), point estimate.
    pub worsening: f64,
    /// 95% interval of `worsening`.
    pub worsening_ci: Option<[f64; 2]>,
    /// The p-value the decision used, and its test: `paired t on log ratios` when the
    /// repeats pair up (the usual case), `Welch t` otherwise.
    pub p_value: Option<f64>,
    pub test: String,
    pub p_welch: Option<f64>,
    pub p_mann_whitney: Option<f64>,
    pub baseline_values: Vec<f64>,
    pub candidate_values: Vec<f64>,
    /// Repeats per host that would likely decide an inconclusive rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats_needed: Option<u32>,
    /// One sentence: why this status.
    pub reason: String,
}

/// The gate's verdict over all rules.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GateDecision {
    pub status: GateStatus,
    pub headline: String,
    pub rules: Vec<RuleDecision>,
    /// For a regression: the analysis's top attribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

// ----- history (`--history DIR`, one file per run) ---------------------------------

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub at: String,
    pub name: String,
    pub run_dir: String,
    /// The gate's status.
    pub status: GateStatus,
    pub baseline_kernel: Option<String>,
    pub candidate_kernel: Option<String>,
    /// FNV-1a of each side's kernel.config: equal fingerprints, equal configs.
    pub baseline_config: Option<String>,
    pub candidate_config: Option<String>,
    pub metrics: Vec<HistoryMetric>,
    /// Set on load for the run being reported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub current: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HistoryMetric {
    pub name: String,
    pub unit: String,
    pub better: Better,
    pub baseline: f64,
    pub candidate: f64,
    pub change: f64,
}
