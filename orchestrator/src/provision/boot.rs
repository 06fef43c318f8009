//! Rebooting an existing host into another kernel or command line through the ssh
//! host's `boot:` hook, as ktest does: the hook runs on this machine (it kexecs the
//! host, or sets `grub-reboot` and reboots it, or asks a BMC) and returns; kdelta
//! then waits for the host to answer SSH again with a new boot id. `kdelta verify`
//! measures one machine in two boots this way, and teardown boots it back.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::exec::remote::Remote;

/// How long a host may take to answer SSH again after its boot hook returned: a
/// kexec is seconds, a server's firmware can take minutes.
pub const BOOT_WAIT: Duration = Duration::from_secs(600);

/// The hook's own bound (it may install a kernel first).
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(900);

const BOOT_ID: &str = "cat /proc/sys/kernel/random/boot_id";

/// The host's boot id: a new one after every boot, kexec included.
pub async fn boot_id(r: &Remote) -> Result<String> {
    let out = r.run("boot-id", BOOT_ID, Duration::from_secs(30)).await?;
    let id = out.stdout.trim().to_string();
    if id.is_empty() {
        bail!("{}: {BOOT_ID} printed nothing", r.role);
    }
    Ok(id)
}

/// What a boot came up as: the kernel's release and build, and its command line.
pub async fn identity(r: &Remote) -> Result<String> {
    let out = r
        .run(
            "boot-identity",
            "uname -rv && cat /proc/cmdline",
            Duration::from_secs(30),
        )
        .await?;
    Ok(out.stdout.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Runs the rendered `hook` here (its output in `log`) and waits until `remote`
/// answers from a new boot, reconnected. Returns how long the host took to come back.
pub async fn reboot(remote: &Remote, hook: &str, log: &Path) -> Result<Duration> {
    let before = boot_id(remote).await?;
    run_hook(remote, hook, log).await?;
    wait_past(remote, Some(&before), log).await
}

/// Runs the rendered boot hook here, bounded by [`HOOK_TIMEOUT`].
pub async fn run_hook(remote: &Remote, hook: &str, log: &Path) -> Result<()> {
    let role = remote.role;
    crate::provision::command::run_local(hook, HOOK_TIMEOUT, log)
        .await
        .with_context(|| format!("{role}: the boot hook (hosts.{role}.boot)"))
        .map(|_| ())
}

/// Waits, reconnecting, until `remote` answers with a boot id other than `before`
/// (`None`: the first boot that answers), for at most [`BOOT_WAIT`].
pub async fn wait_past(remote: &Remote, before: Option<&str>, log: &Path) -> Result<Duration> {
    let role = remote.role;
    let start = Instant::now();
    let mut last = String::from("no answer yet");
    let mut connected = true;
    loop {
        // The boot may already be over (teardown after a reboot it did not see end).
        if connected {
            match boot_id(remote).await {
                Ok(id) if Some(id.as_str()) != before => return Ok(start.elapsed()),
                Ok(_) => last = "the old boot still answered".into(),
                Err(e) => last = format!("{e:#}"),
            }
        }
        if start.elapsed() > BOOT_WAIT {
            bail!(
                "{role}: {} did not answer from a new boot within {} s after the boot hook returned ({last}); the hook must reboot the host (its output: {})",
                remote.destination,
                BOOT_WAIT.as_secs(),
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        connected = match remote.reconnect().await {
            Ok(()) => true,
            Err(e) => {
                last = format!("{e:#}");
                false
            }
        };
    }
}
