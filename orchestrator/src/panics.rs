//! The backstop for bugs: a panic is caught where it would skip teardown or the
//! run's record (the pipeline, the analysis, the whole command) and becomes an
//! error that says it is kdelta's fault. Imports nothing from the crate.

use std::any::Any;

/// A caught panic as an error.
pub fn as_error(payload: &(dyn Any + Send)) -> anyhow::Error {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string());
    anyhow::anyhow!(
        "internal error: kdelta panicked: {msg} (a bug in kdelta, not in your hosts or playbook: please report it with run.json; teardown ran)"
    )
}

/// For the fault tests: `KDELTA_FAILPOINT=panic:<phase>` panics when the phase
/// of that name (its first word: `deploy`, `workload`, `download` …) begins, so the
/// test can check that a bug mid-run still tears everything down. Unset in normal
/// use; reading one environment variable per phase costs nothing.
pub fn failpoint(phase: &str) {
    let Ok(spec) = std::env::var("KDELTA_FAILPOINT") else {
        return;
    };
    let first = phase.split_whitespace().next().unwrap_or(phase);
    if spec.strip_prefix("panic:") == Some(first) {
        panic!("failpoint {spec} reached");
    }
}
