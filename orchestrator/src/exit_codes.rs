//! Process exit codes. CI systems rely on these: never renumber.

use crate::model::{GateStatus, VerdictStatus};

/// The run passed (or the candidate improved).
pub const PASS: i32 = 0;
/// The candidate regressed (gate) — or, for `analyze`, the verdict is a regression.
pub const REGRESSION: i32 = 1;
/// Too noisy to decide.
pub const INCONCLUSIVE: i32 = 2;
/// The run itself failed: bad playbook, provisioning, SSH, capture, unreadable input.
pub const RUN_FAILED: i32 = 3;
/// Interrupted by Ctrl-C or SIGTERM (after teardown).
pub const INTERRUPTED: i32 = 130;

/// The exit code of a gate decision.
pub fn for_gate(s: GateStatus) -> i32 {
    match s {
        GateStatus::Pass | GateStatus::Improvement => PASS,
        GateStatus::Regression => REGRESSION,
        GateStatus::Inconclusive => INCONCLUSIVE,
    }
}

/// The exit code of an analysis verdict (`kdelta run`, `kdelta analyze`).
pub fn for_verdict(s: VerdictStatus) -> i32 {
    match s {
        VerdictStatus::Regression => REGRESSION,
        VerdictStatus::Inconclusive => INCONCLUSIVE,
        VerdictStatus::NoChange | VerdictStatus::Improvement => PASS,
    }
}
