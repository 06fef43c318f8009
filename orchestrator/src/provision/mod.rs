//! Providers: make the two hosts reachable over SSH and tear them down again.
//!
//! - [`lab`]: network namespaces on this machine, each with its own sshd;
//! - [`ssh`]: existing hosts by SSH destination;
//! - [`command`]: hosts made and removed by the user's own `up`/`down` commands;
//! - [`qemu`]: two real kernels booted under QEMU on this machine.
//!
//! Invariant: whatever a provider creates is recorded in the [`Ledger`] (and, for
//! what outlives kdelta, in a state file or the run directory) *before* it is
//! created, so [`teardown`] can always remove it: after an error, Ctrl-C, SIGTERM,
//! a panic, or from `kdelta lab down --all` / `kdelta teardown` after a kill -9.

pub mod boot;
pub mod command;
pub mod lab;
pub mod qemu;
pub mod ssh;
pub mod teardown;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};

use crate::exec::remote::ConnectSpec;
use crate::model::{ProviderKind, Role};
use crate::playbook::{HostSpec, Plan, Provider, QemuSpec};
use crate::progress::Progress;
use crate::rundir::RunDir;

/// How every work folder's name starts: teardown removes only such folders.
pub const WORK_PREFIX: &str = "kdelta-run-";

/// One provisioned host.
#[derive(Clone, Debug)]
pub struct Host {
    pub role: Role,
    pub provider: ProviderKind,
    /// Address the workload client uses.
    pub address: String,
    pub connect: ConnectSpec,
    /// The folder kdelta's work folder is made in (the host's `work_dir:`).
    pub work_dir: String,
}

impl Host {
    /// kdelta's folder on this host for the run whose work folders are named `name`.
    pub fn work_folder(&self, name: &str) -> String {
        format!(
            "{}/{name}-{}",
            self.work_dir.trim_end_matches('/'),
            self.role
        )
    }
}

/// What teardown must undo; filled before resources are created.
#[derive(Default)]
pub struct Ledger {
    pub lab: Option<lab::LabState>,
    pub hosts: Vec<Host>,
    /// Roles kdelta connected to: only those can have anything to clean up.
    pub connected: Vec<Role>,
    /// The name of the run's work folders on the hosts ([`Host::work_folder`]).
    pub work: Option<String>,
    /// Folder of the SSH control sockets of this run.
    pub control_dir: Option<PathBuf>,
    /// QEMU guests of this run, killed at teardown.
    pub vms: Arc<Mutex<Vec<qemu::vm::Vm>>>,
    /// Per-run keys and initramfs images of the qemu guests.
    pub qemu_dir: Option<PathBuf>,
    /// `hosts/<role>/teardown.json` of hosts made by a `command` provider's `up`.
    pub downs: Vec<PathBuf>,
    /// `kdelta verify`'s restore command of a state toggled on a live host, until it
    /// has run: teardown runs it first when a Ctrl-C or a failure cut the run short.
    pub restores: Vec<(Role, Restore)>,
}

/// How teardown puts back a state `kdelta verify` left a host in.
#[derive(Clone, Debug)]
pub enum Restore {
    /// A command on the host.
    Command(String),
    /// The ssh host's `boot:` hook (rendered), run here; then the host's new boot.
    Boot {
        hook: String,
        /// The boot id the host had when a reboot into the revert was started and
        /// not yet seen to end: teardown waits for a boot past it first.
        leaving: Option<String>,
        /// How the original boot came up ([`boot::identity`]): the restored boot
        /// must come up so.
        expect: Option<String>,
    },
}

impl Restore {
    /// What a user would run by hand.
    pub fn show(&self) -> String {
        match self {
            Restore::Command(c) => format!("on the host: {c}"),
            Restore::Boot { hook, .. } => format!("here: {hook} (it reboots the host)"),
        }
    }
}

/// Runs `f` on the ledger; a poisoned lock (a panic elsewhere held it) still
/// gives the ledger: teardown must see what was recorded.
pub fn with_ledger<T>(ledger: &Mutex<Ledger>, f: impl FnOnce(&mut Ledger) -> T) -> T {
    let mut guard = ledger.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut guard)
}

/// What providers need to make hosts.
pub struct Provisioner<'a> {
    pub plan: &'a Plan,
    /// The run directory; `None` for `kdelta check`, which makes no command or
    /// qemu hosts.
    pub rd: Option<&'a RunDir>,
    pub ledger: &'a Mutex<Ledger>,
    /// Short private folder for the SSH control sockets.
    pub control: &'a Path,
    pub progress: &'a Progress,
}

impl Provisioner<'_> {
    /// Provisions the hosts of `roles` (lab first) and records in the ledger what
    /// exists, also when building failed half-way. Hosts come back baseline first.
    pub async fn hosts(&self, roles: &[Role]) -> Result<Vec<Host>> {
        let wanted = |s: &&HostSpec| roles.contains(&s.role);
        let mut hosts = self.lab_hosts(roles).await?;
        for s in self.plan.hosts().into_iter().filter(wanted) {
            match &s.provider {
                Provider::Ssh(_) => {
                    hosts.push(ssh::ssh_host(s, self.control, self.plan.timeouts.connect)?)
                }
                Provider::Command(c) => {
                    let Some(rd) = self.rd else {
                        bail!("command hosts are made by `kdelta run` and `kdelta gate` only");
                    };
                    hosts.push(command::provision(self, rd, s, c).await?);
                }
                Provider::Lab(_) | Provider::Qemu(_) => {}
            }
        }
        let guests: Vec<(&HostSpec, &QemuSpec)> = self
            .plan
            .hosts()
            .into_iter()
            .filter(wanted)
            .filter_map(|s| match &s.provider {
                Provider::Qemu(q) => Some((s, q)),
                _ => None,
            })
            .collect();
        if !guests.is_empty() {
            let Some(rd) = self.rd else {
                bail!("qemu hosts are provisioned by `kdelta run` and `kdelta gate` only");
            };
            hosts.extend(qemu::provision(self, rd, &guests).await?);
        }
        hosts.sort_by_key(|h| h.role);
        // How kdelta works on a host is the playbook's, whatever made the host.
        for h in &mut hosts {
            let spec = self.plan.host(h.role);
            h.connect.become_ = spec.become_;
            h.work_dir = spec.work_dir.clone();
        }
        with_ledger(self.ledger, |l| l.hosts = hosts.clone());
        Ok(hosts)
    }

    async fn lab_hosts(&self, roles: &[Role]) -> Result<Vec<Host>> {
        let mut specs = self.plan.lab_specs();
        specs.retain(|s| roles.contains(&s.role));
        if specs.is_empty() {
            return Ok(vec![]);
        }
        self.progress.step("lab", "creating namespaces and sshd");
        let mut state = lab::LabState::default();
        let res = lab::lab_up(&specs, &mut state).await;
        with_ledger(self.ledger, |l| l.lab = Some(state));
        let hosts = res?;
        self.progress.done("lab", "up");
        Ok(hosts)
    }
}
