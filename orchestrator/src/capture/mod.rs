//! Capture on a host: the remote scripts around each repeat ([`scripts`]), the facts
//! of the host ([`facts`]) and the workload's metrics ([`metrics`]). Builds scripts
//! and parses what comes back; the run stage sends them.

pub mod facts;
pub mod metrics;
pub mod scripts;
