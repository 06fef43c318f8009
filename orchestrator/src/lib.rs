//! kdelta: automated kernel A/B testing.
//!
//! Two hosts run the same workload; kdelta captures perf profiles, kernel configs and
//! runtime settings on both and attributes the profile difference to the kernel config
//! or runtime deltas that explain it.
//!
//! The pipeline, one module per stage; data flows one way and each stage writes files
//! into the run directory, so each can be re-run alone:
//!
//! ```text
//! playbook ─► provision ─► remote/capture ─► fold ─► analyze ─► attribute ─► report
//!  (Plan)     hosts.json    hosts/<role>/*   (Profile) (deltas)  summary.json  report.html
//! ```

pub mod analyze;
pub mod attribute;
pub mod capture;
pub mod cli;
pub mod command;
pub mod exit_codes;
pub mod facts;
pub mod fold;
pub mod gate;
pub mod history;
pub mod kconfig;
pub mod ksrc;
pub mod local;
pub mod model;
pub mod playbook;
pub mod progress;
pub mod provision;
pub mod qemu;
pub mod remote;
pub mod report;
pub mod rundir;
pub mod runner;
pub mod shell;
pub mod stats;
