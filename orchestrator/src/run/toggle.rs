//! `kdelta verify` on one host in two states: the blamed item set back to the
//! baseline's value (the side recorded as `baseline`) and as it was (`candidate`),
//! entered before each repeat. A runtime item is set by commands on the live host;
//! a config option or boot parameter of an ssh host by its `boot:` hook, which
//! reboots it (one reboot per pair: the pairs go A B B A, so a state is entered
//! once for two repeats in a row). The host is left in its original state whatever
//! happens here; a Ctrl-C drops this future and teardown restores it from the ledger.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;

use super::pipeline::{deploy, facts};
use super::repeat::{capture_all, template_ctx, Side};
use super::runlog::phase;
use super::RunCtx;
use crate::exec::remote::Remote;
use crate::exec::shell::quote;
use crate::model::{HostRecord, Role, StateToggle, ToggleBy};
use crate::playbook::render;
use crate::provision::{boot, with_ledger, Host, Restore};
use crate::rundir::write_json;

/// Puts the host into either state, and knows which it is in.
pub(super) struct Toggler {
    by: ToggleBy,
    item: String,
    /// The candidate as provisioned (its work folder is the deployed one).
    host: Host,
    apply: String,
    restore: String,
    /// The candidate's work folder, and the reverted side's copy of its files.
    work: String,
    other: String,
    /// The state the host is in; `None` once a boot hook started and until its boot
    /// is checked (a failed or cut reboot leaves it unknown: restored whatever).
    current: Mutex<Option<Role>>,
    /// What each state booted as (kernel and command line), seen the first time
    /// it was entered: a later boot into it must come up the same.
    seen: Mutex<[Option<String>; 2]>,
    boots: Mutex<u32>,
}

impl Toggler {
    fn current(&self) -> Option<Role> {
        *self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_current(&self, r: Option<Role>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = r;
    }

    /// Checks that a boot into `state` came up as that state did before (or
    /// remembers it, the first time).
    fn same_as_before(&self, state: Role, now: String, log: &std::path::Path) -> Result<()> {
        let i = match state {
            Role::Baseline => 0,
            Role::Candidate => 1,
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match &seen[i] {
            Some(then) if *then != now => anyhow::bail!(
                "{}: the boot hook (hosts.{}.boot) was to boot the {} state, but the host came up as {now:?}, not {then:?} as before: kdelta cannot tell which state it would measure; check the hook (its output: {})",
                self.host.role,
                self.host.role,
                match state {
                    Role::Baseline => "reverted",
                    Role::Candidate => "original",
                },
                log.display()
            ),
            Some(_) => Ok(()),
            None => {
                seen[i] = Some(now);
                Ok(())
            }
        }
    }

    /// Puts the host into `state` (`Baseline`: reverted). A command toggle runs its
    /// command every time (a workload may have changed the state); a boot toggle
    /// reboots only when the host is in the other state, then deploys again (a new
    /// boot may have lost the work folder, and the setup commands' changes).
    pub(super) async fn enter(
        &self,
        cx: &RunCtx<'_>,
        remote: &Remote,
        state: Role,
        what: &str,
    ) -> Result<()> {
        let cmd_t = Duration::from_secs(cx.plan.timeouts.command);
        let cmd = match state {
            Role::Baseline => &self.apply,
            Role::Candidate => &self.restore,
        };
        if self.by == ToggleBy::Command {
            remote.run(what, cmd, cmd_t).await?;
            self.set_current(Some(state));
            return Ok(());
        }
        if self.current() == Some(state) {
            return Ok(());
        }
        let role = self.host.role;
        // The boot being left, to know the new one: without it the old boot, still
        // answering for a moment, would pass for the new one.
        let before = match boot::boot_id(remote).await {
            Ok(id) => id,
            Err(_) => {
                remote.reconnect().await?;
                boot::boot_id(remote).await?
            }
        };
        // Before the reboot: a run cut short while it boots is booted back.
        with_ledger(cx.ledger, |l| {
            let pending = l
                .restores
                .iter()
                .any(|(r, x)| *r == role && matches!(x, Restore::Boot { .. }));
            if !pending {
                l.restores.push((
                    role,
                    Restore::Boot {
                        hook: self.restore.clone(),
                        leaving: None,
                        expect: self.original(),
                    },
                ))
            }
        });
        self.set_current(None);
        let n = {
            let mut b = self.boots.lock().unwrap_or_else(|e| e.into_inner());
            *b += 1;
            *b
        };
        let into = match state {
            Role::Baseline => format!("{} reverted", self.item),
            Role::Candidate => "its original state".to_string(),
        };
        cx.progress
            .step(role.as_str(), &format!("boot hook: rebooting into {into}"));
        let log = cx.rd.host(role).logs().join(format!("boot-{n}.log"));
        boot::run_hook(remote, cmd, &log).await?;
        // The reboot is under way: a teardown now waits for it to end first.
        self.leaving(cx, Some(before.clone()));
        let took = boot::wait_past(remote, Some(&before), &log).await?;
        self.leaving(cx, None);
        self.same_as_before(state, boot::identity(remote).await?, &log)?;
        self.set_current(Some(state));
        if state == Role::Candidate {
            with_ledger(cx.ledger, |l| l.restores.retain(|(r, _)| *r != role));
        }
        cx.progress.println(&format!(
            "kdelta: {role}: rebooted into {into}, back in {:.0} s; deploying again",
            took.as_secs_f64()
        ));
        deploy(cx, &self.host, remote).await?;
        self.copy_files(remote, cmd_t).await
    }

    /// How the original state booted, once known.
    fn original(&self) -> Option<String> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen[1].clone()
    }

    /// Records in the ledger's boot restore which boot a reboot is leaving.
    fn leaving(&self, cx: &RunCtx<'_>, id: Option<String>) {
        with_ledger(cx.ledger, |l| {
            for (r, x) in l.restores.iter_mut() {
                if let (true, Restore::Boot { leaving, .. }) = (*r == self.host.role, x) {
                    *leaving = id.clone();
                }
            }
        });
    }

    /// The reverted side's work folder: the candidate's deployed files, copied.
    async fn copy_files(&self, remote: &Remote, cmd_t: Duration) -> Result<()> {
        remote
            .run(
                "verify-workdir",
                &format!(
                    "mkdir -p {o} && rm -rf {o}/files && cp -a {w}/files {o}/",
                    o = quote(&self.other),
                    w = quote(&self.work)
                ),
                cmd_t,
            )
            .await
            .map(|_| ())
    }
}

/// Measures both states of `t` on `host` in turns, and puts the host back.
pub(super) async fn toggled(
    cx: &RunCtx<'_>,
    host: &Host,
    remote: &Remote,
    t: &StateToggle,
) -> Result<()> {
    let cmd_t = Duration::from_secs(cx.plan.timeouts.command);
    let reverted = Host {
        role: Role::Baseline,
        ..host.clone()
    };
    let work = cx.work_of(host);
    let ctx = template_ctx(cx.plan, host, &work, 0);
    let cmd = |c: &str, what: &str| {
        render(c, &ctx).map_err(|e| e.context(format!("verify: the {what} command of {}", t.item)))
    };
    // A boot hook was rendered by verify (with `revert`); it runs here, not there.
    let (apply, restore) = match t.by {
        ToggleBy::Command => (cmd(&t.apply, "apply")?, cmd(&t.restore, "restore")?),
        ToggleBy::Boot => (t.apply.clone(), t.restore.clone()),
    };
    let tg = Toggler {
        by: t.by,
        item: t.item.clone(),
        host: host.clone(),
        apply,
        restore: restore.clone(),
        work: work.clone(),
        other: cx.work_of(&reverted),
        current: Mutex::new(Some(Role::Candidate)),
        seen: Mutex::new([None, None]),
        boots: Mutex::new(0),
    };
    if t.by == ToggleBy::Boot {
        // The original boot, as every later boot back into it must come up.
        let log = cx.rd.host(host.role).logs().join("boot-0.log");
        tg.same_as_before(Role::Candidate, boot::identity(remote).await?, &log)?;
    }
    if t.by == ToggleBy::Command {
        // From here on teardown puts the state back if the run is cut short.
        with_ledger(cx.ledger, |l| {
            l.restores
                .push((host.role, Restore::Command(restore.clone())))
        });
    }
    if let Some(save) = &t.save {
        remote
            .run("verify-save", &cmd(save, "save")?, cmd_t)
            .await?;
    }
    tg.copy_files(remote, cmd_t).await?;
    record_reverted(cx, &reverted, t)?;
    let result = async {
        tg.enter(cx, remote, Role::Baseline, "verify-apply").await?;
        // The reverted state's own facts: the record that the revert did what it says.
        phase(
            cx.log,
            "facts",
            Some("baseline"),
            facts(cx, &reverted, remote),
        )
        .await?;
        let zstd = remote
            .run_unchecked("has-zstd", "command -v zstd", cmd_t)
            .await;
        let z = zstd.map(|o| o.code == Some(0)).unwrap_or(false);
        let side = |h, w: &str, state| Side {
            host: h,
            remote,
            work: w.to_string(),
            remote_zstd: z,
            values: Vec::new(),
            log: String::new(),
            enter: Some((&tg, state)),
        };
        let mut sides = [
            side(&reverted, &tg.other, Role::Baseline),
            side(host, &work, Role::Candidate),
        ];
        capture_all(cx, &mut sides).await
    }
    .await;
    let back = phase(cx.log, "restore", Some("candidate"), async {
        tg.enter(cx, remote, Role::Candidate, "verify-restore")
            .await?;
        remote
            .run(
                "verify-cleanup",
                &format!("rm -rf {}", quote(&tg.other)),
                cmd_t,
            )
            .await
    })
    .await
    .map_err(|e| {
        let how = match t.by {
            ToggleBy::Command => Restore::Command(restore.clone()),
            ToggleBy::Boot => Restore::Boot {
                hook: restore.clone(),
                leaving: None,
                expect: None,
            },
        };
        e.context(format!(
            "the candidate may still have {} reverted; put it back {}",
            t.item,
            how.show()
        ))
    });
    if back.is_ok() {
        with_ledger(cx.ledger, |l| l.restores.retain(|(r, _)| *r != host.role));
    }
    result.and(back.map(|_| ()))
}

/// hosts.json gets the reverted state as the `baseline` host: the same machine.
fn record_reverted(cx: &RunCtx<'_>, reverted: &Host, t: &StateToggle) -> Result<()> {
    let mut rec = cx.rd.read_hosts_record().unwrap_or_default();
    let label = cx.plan.host(Role::Candidate).label.clone();
    rec.hosts.retain(|h| h.role != Role::Baseline);
    rec.hosts.push(HostRecord {
        role: Role::Baseline,
        label: Some(format!(
            "{}, {} reverted ({} → {})",
            label.as_deref().unwrap_or("candidate"),
            t.item,
            t.candidate,
            t.baseline
        )),
        provider: reverted.provider,
        destination: reverted.connect.destination.clone(),
        address: reverted.address.clone(),
        port: reverted.connect.port.unwrap_or(22),
        user: reverted.connect.user.clone(),
        work_folder: cx.work_of(reverted),
        teardown: Default::default(),
    });
    rec.hosts.sort_by_key(|h| h.role);
    write_json(&cx.rd.hosts_json(), &rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::remote::ConnectSpec;
    use crate::model::{Become, ProviderKind};

    fn toggler() -> Toggler {
        let host = Host {
            role: Role::Candidate,
            provider: ProviderKind::Ssh,
            address: "box".into(),
            connect: ConnectSpec {
                role: Role::Candidate,
                destination: "admin@box".into(),
                port: None,
                user: None,
                keyfile: None,
                known_hosts_file: None,
                accept_new: false,
                control_dir: "/tmp".into(),
                connect_timeout: Duration::from_secs(5),
                retry_for: Duration::from_secs(10),
                become_: Become::No,
            },
            work_dir: "/tmp".into(),
        };
        Toggler {
            by: ToggleBy::Boot,
            item: "cmdline.slub_debug".into(),
            host,
            apply: "boot-into -slub_debug".into(),
            restore: "boot-into".into(),
            work: "/tmp/w".into(),
            other: "/tmp/o".into(),
            current: Mutex::new(Some(Role::Candidate)),
            seen: Mutex::new([None, None]),
            boots: Mutex::new(0),
        }
    }

    /// The first boot of a state is remembered; a later boot into it must come up
    /// the same, or the run stops naming the hook and both boots.
    #[test]
    fn every_boot_of_a_state_comes_up_as_its_first() {
        let t = toggler();
        let log = std::path::Path::new("boot-3.log");
        let original = "6.1.0-57 #1 SMP console=ttyS0 slub_debug=FZPU";
        let reverted = "6.1.0-57 #1 SMP console=ttyS0";
        t.same_as_before(Role::Candidate, original.into(), log)
            .unwrap();
        t.same_as_before(Role::Baseline, reverted.into(), log)
            .unwrap();
        assert_eq!(t.original().as_deref(), Some(original));
        t.same_as_before(Role::Baseline, reverted.into(), log)
            .unwrap();
        // A restore hook that rebuilt the command line from the reverted boot.
        let e = t
            .same_as_before(Role::Candidate, reverted.into(), log)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hosts.candidate.boot")
                && e.contains("original state")
                && e.contains("slub_debug=FZPU")
                && e.contains("boot-3.log"),
            "{e}"
        );
    }
}
