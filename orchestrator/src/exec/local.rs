//! Commands run on this machine (the workload client, a `command` host's `up` and
//! `down`, kernel builds): each in its own process group, so that a timeout, or the
//! caller giving up (Ctrl-C drops the future), kills the whole tree — `sh`, `make`
//! and every compiler it started — not only the first process.

use std::time::Duration;

use anyhow::{Context, Result};

/// Kills a process group when dropped, unless disarmed.
struct Group(Option<i32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(g) = self.0 {
            // SAFETY: kill(2) on a process group this module created; no memory involved.
            unsafe {
                libc::kill(-g, libc::SIGKILL);
            }
        }
    }
}

/// Runs `cmd` (stdio as the caller set it up) in a new process group and waits,
/// at most `timeout` when given. `Ok(None)`: it timed out and its group was killed.
pub async fn run_in_group(
    cmd: &mut tokio::process::Command,
    timeout: Option<Duration>,
    what: &str,
) -> Result<Option<std::process::Output>> {
    cmd.process_group(0).kill_on_drop(true);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let mut group = Group(child.id().map(|p| p as i32));
    let out = match timeout {
        Some(t) => match tokio::time::timeout(t, child.wait_with_output()).await {
            Ok(r) => r?,
            Err(_) => return Ok(None), // `group` kills the tree on the way out
        },
        None => child.wait_with_output().await?,
    };
    group.0 = None;
    Ok(Some(out))
}

/// `sh -c cmd` with its output captured, in a new process group.
pub async fn shell(
    cmd: &str,
    timeout: Duration,
    what: &str,
) -> Result<Option<std::process::Output>> {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    run_in_group(&mut c, Some(timeout), what).await
}
