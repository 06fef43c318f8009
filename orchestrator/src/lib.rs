//! kdelta: automated kernel A/B testing.
//!
//! Two hosts run the same workload; kdelta captures perf profiles, kernel configs and
//! runtime settings on both and attributes the profile difference to the kernel config
//! or runtime deltas that explain it.
//!
//! The pipeline, a folder per stage; data flows one way and each stage's output is a
//! file in the run directory ([`rundir`]), so each can be re-run alone:
//!
//! ```text
//! playbook ─► provision ─► capture ───────► analyze ─► attribute ─► gate ─► report
//!  (Plan)     hosts.json   hosts/<role>/*   (deltas)   (causes)    verdict  summary.json
//!                                                                           report.html
//!                 └──────────── run: the pipeline, check, the gate workflow ─┘
//! ```
//!
//! - [`playbook`]: YAML → a validated [`playbook::Plan`]; parsing never connects.
//! - [`provision`]: one module per provider (lab, ssh, command, qemu), the ledger of
//!   what exists and the teardown that removes it.
//! - [`capture`]: the scripts that run on a host, the facts and metrics they yield.
//! - [`run`]: one [`run::RunCtx`] per run; the phases, repeats, `check`, the gate
//!   workflow, and [`run::analysis`], the one way to analyse.
//! - [`analyze`]: folding profiles, the function, metric, config and runtime deltas.
//! - [`attribute`]: causes and their evidence. [`gate`]: decisions (verdict, rules).
//! - [`report`]: HTML, Markdown, JUnit, charts and flame graphs.
//! - [`verify`]: proving a cause: the candidate measured again with the blamed item
//!   reverted and as it was, toggled on one host; the share of the change recovered.
//! - Shared: [`model`] (every summary.json type and the enums), [`format`] (how
//!   numbers read), [`rundir`] (every run-directory path), [`kconfig`], [`exec`]
//!   (local and SSH commands, shell quoting), [`progress`], [`panics`].
//!
//! What may import what (checked by `tests/layout.rs`): `model`, `format`, `panics`
//! import nothing; `playbook` only `model` and `exec::shell`; `analyze`, `attribute`,
//! `gate` and `report` never `exec`, `provision`, `capture` or `run` — analysis and
//! reporting never reach a host; `run::analysis` and `run::history` touch files only;
//! only `run`, `verify` (downstream of everything: it runs runs) and `cli` see every
//! stage. No stage imports one downstream of it, so
//! there is no import circle.

pub mod analyze;
pub mod attribute;
pub mod capture;
pub mod cli;
pub mod exec;
pub mod exit_codes;
pub mod format;
pub mod gate;
pub mod kconfig;
pub mod model;
pub mod panics;
pub mod playbook;
pub mod progress;
pub mod provision;
pub mod report;
pub mod run;
pub mod rundir;
pub mod verify;
