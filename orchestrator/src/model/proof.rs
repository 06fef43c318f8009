//! What `kdelta verify` and `kdelta bisect` showed about a run (summary.json
//! `proof`), as the run's report shows it. Those commands fill it in the run they
//! examined; a re-analysis of the run keeps it.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Proof {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bisect: Option<BisectView>,
}

/// The last `kdelta verify` of the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VerifyView {
    /// `cause`, `partial cause`, `not the cause`, `unknown`.
    pub finding: String,
    pub headline: String,
    /// `CONFIG_KASAN (y → n)`: each item and the direction of its revert.
    pub reverted: Vec<String>,
    /// How the counterfactual was made: a rebuilt kernel, a reboot, a live toggle.
    pub how: String,
    /// What really differed between the two states (Kconfig drags dependents).
    pub applied: Vec<String>,
    /// Runtime values that differed as a consequence (confounders, not knobs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follows: Vec<String>,
    pub recoveries: Vec<Recovery>,
    /// Busy-CPU points the item explains in the verify run, and originally.
    pub cpu_points: Option<f64>,
    pub original_cpu_points: Option<f64>,
    /// The verify run's report, relative to the run directory where it is inside.
    pub report: String,
    pub at: String,
}

/// The run's `kdelta bisect`, every step so far.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BisectView {
    pub conclusion: String,
    pub finished: bool,
    pub items: usize,
    pub steps: Vec<StepView>,
    /// bisect.md, relative to the run directory where it is inside.
    pub record: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepView {
    pub reverted: Vec<String>,
    pub how: String,
    /// `recovers the change`, `a part`, `nothing`, `undecided`.
    pub outcome: String,
    pub collapsed: bool,
    pub applied: Vec<String>,
    pub recoveries: Vec<Recovery>,
    pub headline: String,
    pub seconds: f64,
    /// The step's report ("" when it was not measured).
    pub report: String,
}

/// One metric's recovery.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Recovery {
    pub metric: String,
    /// Relative change of the original run (candidate vs baseline).
    pub original_change: f64,
    /// Relative change the item makes now (as is vs reverted).
    pub item_change: f64,
    /// Share of the original change the revert recovers, and its interval; None
    /// when the original change is not significant.
    pub share: Option<f64>,
    pub share_ci: Option<[f64; 2]>,
    /// The interval's level (`1 − alpha`).
    pub level: f64,
    /// Where the original change's standard error came from.
    #[serde(default)]
    pub original_noise: Noise,
}

/// The source of the original run's standard error.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Noise {
    /// Its own repeats.
    #[default]
    Measured,
    /// One repeat per side: the verify run's spread per pair (see the module).
    Borrowed,
}
