//! Process exit codes. CI systems rely on these: never renumber.

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
