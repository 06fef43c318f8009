//! Analysis of two capture folders: each side's profile folded ([`fold`]), the
//! function, metric, config ([`crate::kconfig`]) and runtime ([`runtime`]) deltas with
//! their statistics ([`stats`]). Reads files only: it never reaches a host.

pub mod console;
pub mod facts_read;
pub mod fold;
pub mod functions;
pub mod metrics;
pub mod renames;
pub mod runtime;
pub mod side;
pub mod stats;

pub use side::{load_capture, Capture};
