//! The commands that manage hosts outside a run: the network-namespace lab
//! (`kdelta lab`) and background qemu guests (`kdelta guest`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use super::{err_line, out};
use crate::exit_codes;
use crate::model::Role;
use crate::playbook::{Plan, Provider};
use crate::provision::lab;

#[derive(Subcommand, Debug)]
pub(super) enum GuestCmd {
    /// Boot the playbook's qemu host of ROLE in the background and print, as JSON,
    /// how to reach it (address, port, user, identity_file, known_hosts, id): what a
    /// command host's `up` prints. Stop it with `kdelta guest down ID`.
    Up {
        playbook: PathBuf,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Boot it with KEY set to VALUE instead (repeatable): a config option
        /// (`CONFIG_KASAN=n`: the kernel rebuilt with it) or a boot parameter
        /// (`cmdline.slub_debug=(absent)` takes it out, `cmdline.mitigations=auto`
        /// sets it). What a command host's `up` does with `kdelta verify`'s `revert`.
        #[arg(long = "revert", value_name = "KEY=VALUE")]
        revert: Vec<String>,
    },
    /// Stop a guest `guest up` started and remove its folder (the `id` it printed).
    Down { id: PathBuf },
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "baseline" => Ok(Role::Baseline),
        "candidate" => Ok(Role::Candidate),
        other => Err(format!("`{other}`: expected baseline or candidate")),
    }
}

pub(super) async fn guest_cmd(cmd: GuestCmd, quiet: bool) -> Result<i32> {
    use crate::provision::qemu::guest;
    match cmd {
        GuestCmd::Up {
            playbook,
            role,
            revert,
        } => {
            let mut plan = crate::playbook::load(&playbook)?;
            if !revert.is_empty() {
                guest_revert(&mut plan, role, &revert)?;
            }
            let progress = crate::progress::Progress::new(quiet);
            let res = guest::up(&plan, role, &progress).await;
            progress.finish();
            out(serde_json::to_string(&res?)?)?;
            Ok(exit_codes::PASS)
        }
        GuestCmd::Down { id } => {
            out(guest::down(&id)?)?;
            Ok(exit_codes::PASS)
        }
    }
}

#[derive(Subcommand, Debug)]
pub(super) enum LabCmd {
    /// Bring up a lab for a playbook's lab hosts and print how to reach them (until `lab down`).
    Up { playbook: PathBuf },
    /// Tear down labs: `--all` removes every lab and leftover kdelta namespace.
    Down {
        #[arg(long)]
        all: bool,
        /// Lab id (from `lab status`).
        id: Option<String>,
    },
    /// List labs and leftover namespaces.
    Status,
}

pub(super) async fn lab_cmd(cmd: LabCmd) -> Result<i32> {
    match cmd {
        LabCmd::Status => lab_status(),
        LabCmd::Down { all: true, .. } => {
            let (n, mut errors) = lab::lab_down_all();
            let (v, verrors) = crate::provision::qemu::vm::down_all();
            errors.extend(verrors);
            out(format!(
                "removed {n} lab(s), killed {v} leftover QEMU guest(s)"
            ))?;
            Ok(report_errors(&errors))
        }
        LabCmd::Down { id: None, .. } => {
            anyhow::bail!("give a lab id (see `kdelta lab status`) or --all")
        }
        LabCmd::Down { id: Some(id), .. } => {
            let (labs, _) = lab::lab_list();
            let Some(l) = labs.into_iter().find(|l| l.id == id) else {
                anyhow::bail!("no lab `{id}` (see `kdelta lab status`)")
            };
            Ok(report_errors(&lab::lab_down(&l)))
        }
        LabCmd::Up { playbook } => lab_up(&playbook).await,
    }
}

fn report_errors(errors: &[String]) -> i32 {
    for e in errors {
        err_line(&format!("kdelta: {e}"));
    }
    if errors.is_empty() {
        exit_codes::PASS
    } else {
        exit_codes::RUN_FAILED
    }
}

fn lab_status() -> Result<i32> {
    let (labs, stray) = lab::lab_list();
    let vms = crate::provision::qemu::vm::leftovers();
    if labs.is_empty() && stray.is_empty() && vms.is_empty() {
        out("no kdelta labs")?;
    }
    for (pid, alive) in vms {
        out(format!(
            "QEMU guest pid {pid}{}: `kdelta lab down --all` kills it (also the guests of a run still in progress)",
            if alive { "" } else { " (gone; state file left)" }
        ))?;
    }
    for l in labs {
        out(format!(
            "lab {}: namespaces {} (state in {})",
            l.id,
            l.namespaces.join(", "),
            l.dir.display()
        ))?;
    }
    for s in stray {
        out(format!(
            "leftover namespace {s} (no state file): `kdelta lab down --all` removes it"
        ))?;
    }
    Ok(exit_codes::PASS)
}

async fn lab_up(playbook: &std::path::Path) -> Result<i32> {
    let plan = crate::playbook::load(playbook)?;
    let specs = plan.lab_specs();
    if specs.is_empty() {
        anyhow::bail!("{}: no host uses provider: lab", playbook.display());
    }
    let mut state = lab::LabState::default();
    let hosts = match lab::lab_up(&specs, &mut state).await {
        Ok(h) => h,
        Err(e) => {
            lab::lab_down(&state);
            return Err(e);
        }
    };
    out(format!(
        "lab {} is up (remove it with `kdelta lab down {}`):",
        state.id, state.id
    ))?;
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|k| k.display().to_string())
            .unwrap_or_default()
    };
    for h in hosts {
        out(format!(
            "  {}: ssh -i {} -o UserKnownHostsFile={} {}",
            h.role,
            path(&h.connect.keyfile),
            path(&h.connect.known_hosts_file),
            h.connect.destination
        ))?;
    }
    Ok(exit_codes::PASS)
}

/// `guest up --revert KEY=VALUE …`: the playbook's qemu host of `role` with each
/// config option or boot parameter set to VALUE, as `kdelta verify` reverts a qemu
/// candidate (the same edit; `(absent)` takes a boot parameter out).
fn guest_revert(plan: &mut Plan, role: Role, pairs: &[String]) -> Result<()> {
    use crate::analyze::runtime::cmdline_params;
    use crate::verify::rebuild::reverted_qemu;
    let file = plan.file.display().to_string();
    let Provider::Qemu(q) = &mut plan.host_mut(role).provider else {
        bail!("{file}: hosts.{role} is not a qemu host (guest up boots qemu guests)");
    };
    let mut items = vec![];
    for p in pairs {
        let Some((key, value)) = p.split_once('=') else {
            bail!("--revert {p}: expected KEY=VALUE, e.g. CONFIG_KASAN=n or cmdline.slub_debug=(absent)");
        };
        // The value now: what the host's cmdline sets, read as the run's delta reads
        // /proc/cmdline (a config option's is the kernel's, known once built; it
        // only labels the revert).
        let candidate = match key.strip_prefix("cmdline.") {
            Some(k) => cmdline_params(&q.cmdline.join(" "))
                .remove(k)
                .unwrap_or_else(|| crate::verify::revert::ABSENT.to_string()),
            None => "as built".to_string(),
        };
        items.push(crate::verify::Item {
            key: key.to_string(),
            baseline: value.to_string(),
            candidate,
        });
    }
    let (reverted, _) = reverted_qemu(&items, q, crate::playbook::ApplyCheck::InlineOnly)
        .with_context(|| format!("{file}: hosts.{role} with --revert"))?;
    *q = reverted;
    Ok(())
}
