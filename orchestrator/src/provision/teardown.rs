//! Teardown: everything the [`Ledger`] says exists is stopped or removed — guests
//! killed, kdelta's processes and work folders on hosts it does not own cleaned up,
//! command hosts' `down` run, the lab's namespaces deleted. Reads only the ledger, so
//! it runs the same after success, failure, Ctrl-C, SIGTERM or a panic; every error
//! is collected and reported, none stops the rest.

use std::sync::Mutex;
use std::time::Duration;

use futures::future::join_all;

use super::{lab, Ledger, Restore, WORK_PREFIX};
use crate::exec::remote::{stop_tagged, Remote};
use crate::exec::shell::quote;
use crate::model::ProviderKind;
use crate::progress::Progress;

/// Tears down what the ledger holds (taking it: a second call finds nothing).
/// Returns the problems, one line each.
pub async fn teardown(ledger: &Mutex<Ledger>, progress: &Progress) -> Vec<String> {
    let l = std::mem::take(&mut *ledger.lock().unwrap_or_else(|e| e.into_inner()));
    let mut errors = stop_guests(&l, progress);
    if let Some(d) = &l.qemu_dir {
        let _ = std::fs::remove_dir_all(d);
    }
    if let Some(work) = &l.work {
        errors.extend(clean_foreign(&l, work, progress).await);
    }
    // Hosts made by `up`: their `down`, always, both at once (after the cleanup
    // above, for hosts that `down` only stops).
    let removals = l.downs.iter().map(|p| async move {
        progress.step("teardown", &format!("down: {}", p.display()));
        super::command::run_down(p)
            .await
            .err()
            .map(|e| format!("{e:#}"))
    });
    errors.extend(join_all(removals).await.into_iter().flatten());
    if let Some(state) = l.lab {
        progress.step("lab", "tearing down");
        // Lab hosts share this machine's filesystem: their work folder is here.
        if let Some(work) = l.work.as_deref().filter(|w| w.starts_with(WORK_PREFIX)) {
            for h in l.hosts.iter().filter(|h| h.provider == ProviderKind::Lab) {
                let _ = std::fs::remove_dir_all(h.work_folder(work));
            }
        }
        let e = tokio::task::spawn_blocking(move || lab::lab_down(&state))
            .await
            .unwrap_or_else(|e| vec![format!("lab teardown failed: {e}")]);
        errors.extend(e);
        progress.done("lab", "torn down");
    }
    if let Some(c) = &l.control_dir {
        let _ = std::fs::remove_dir_all(c);
    }
    errors
}

/// QEMU guests: killed by PID and reaped; nothing in them needs saving.
fn stop_guests(l: &Ledger, progress: &Progress) -> Vec<String> {
    let mut errors = Vec::new();
    let mut vms = l.vms.lock().unwrap_or_else(|e| e.into_inner());
    for mut vm in vms.drain(..) {
        progress.step(vm.role.as_str(), "stopping the guest");
        if !vm.kill() {
            errors.push(format!(
                "{}: QEMU (pid {}) could not be reaped",
                vm.role,
                vm.child.id()
            ));
        }
    }
    errors
}

/// Remote work folders on hosts kdelta does not own: put back a state `verify`
/// toggled, stop what it started, remove its files. Only on hosts it reached
/// (nothing ran on the others), both at once, with one short connection attempt each.
async fn clean_foreign(l: &Ledger, work: &str, progress: &Progress) -> Vec<String> {
    let cleanups = l
        .hosts
        .iter()
        .filter(|h| h.provider.is_foreign() && l.connected.contains(&h.role))
        .map(|h| async move {
            progress.step(h.role.as_str(), "cleaning up");
            let tmp = std::env::temp_dir().join("kdelta-teardown");
            let _ = std::fs::create_dir_all(&tmp);
            let mut spec = h.connect.clone();
            spec.retry_for = Duration::from_secs(10);
            let restores: Vec<&Restore> = l
                .restores
                .iter()
                .filter(|(r, _)| *r == h.role)
                .map(|(_, x)| x)
                .collect();
            // A host verify reboots may be between two boots: it has time to come up.
            if restores.iter().any(|x| matches!(x, Restore::Boot { .. })) {
                spec.retry_for = super::boot::BOOT_WAIT;
            }
            let r = match Remote::connect(&spec, &tmp).await {
                Ok(mut r) => {
                    // Each reconnect while it waits for a boot is short again.
                    r.retry_for(Duration::from_secs(20));
                    r
                }
                Err(e) => {
                    let mut p = vec![format!("{}: cleanup skipped: {e:#}", h.role)];
                    p.extend(restores.iter().map(|x| {
                        format!("{}: the host may still be in the state verify reverted; put it back {}", h.role, x.show())
                    }));
                    return p;
                }
            };
            let mut problems = Vec::new();
            // Before the work folder goes: a saved state may be in it.
            for restore in restores {
                progress.step(h.role.as_str(), "restoring the state verify reverted");
                let done = match restore {
                    Restore::Command(c) => r
                        .run("verify-restore", c, Duration::from_secs(60))
                        .await
                        .map(|_| ()),
                    Restore::Boot {
                        hook,
                        leaving,
                        expect,
                    } => {
                        let log = tmp.join(format!("boot-{}.log", h.role));
                        boot_back(&r, hook, leaving.as_deref(), expect.as_deref(), &log).await
                    }
                };
                if let Err(e) = done {
                    problems.push(format!(
                        "{e:#}; the host may still have the reverted state: put it back {}",
                        restore.show()
                    ));
                }
            }
            let w = h.work_folder(work);
            let script = format!(
                "{}\ncd {q} 2>/dev/null && for f in perf.pid stat.pid server.pid; do [ -f $f ] && kill -s KILL -- -$(cat $f) 2>/dev/null; done; cd /; rm -rf {q}",
                stop_tagged(&w),
                q = quote(&w)
            );
            let res = r.run("cleanup", &script, Duration::from_secs(30)).await;
            r.close().await;
            problems.extend(res.err().map(|e| format!("{e:#}")));
            problems
        });
    join_all(cleanups).await.into_iter().flatten().collect()
}

/// Boots an ssh host back out of verify's revert: a reboot into the revert still
/// under way ends first (the hook would otherwise talk to a host going down), then
/// the hook, then the new boot, checked to come up as the original did.
async fn boot_back(
    r: &Remote,
    hook: &str,
    leaving: Option<&str>,
    expect: Option<&str>,
    log: &std::path::Path,
) -> anyhow::Result<()> {
    if let Some(id) = leaving {
        super::boot::wait_past(r, Some(id), log).await?;
    }
    super::boot::reboot(r, hook, log).await?;
    let now = super::boot::identity(r).await?;
    match expect {
        Some(e) if e != now => anyhow::bail!(
            "{}: booted back, but as {now:?}, not as the original boot {e:?} (its output: {})",
            r.role,
            log.display()
        ),
        _ => Ok(()),
    }
}
