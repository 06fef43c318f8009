//! Remote execution over SSH with the `openssh` crate: one multiplexed session per
//! host (ControlMaster, so ~/.ssh/config, the agent and ProxyJump work), scripts run
//! with `sh -c` under the host's own `timeout` (dropping an SSH channel does not stop
//! a remote process), output logged per command in the run directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use openssh::{KnownHosts, Session, SessionBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::exec::shell::quote;
use crate::model::Become;
use crate::model::Role;

/// How to reach a host.
#[derive(Clone, Debug)]
pub struct ConnectSpec {
    pub role: Role,
    pub destination: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub keyfile: Option<PathBuf>,
    /// A pinned known_hosts file (lab); `None` uses the user's.
    pub known_hosts_file: Option<PathBuf>,
    pub accept_new: bool,
    /// Short private directory for the control socket (paths are limited to 108 bytes).
    pub control_dir: PathBuf,
    pub connect_timeout: Duration,
    /// Total time to keep retrying the first connection.
    pub retry_for: Duration,
    /// Commands as the login user, or as root through `sudo -n`.
    pub become_: Become,
}

/// A failed remote command, with what a person needs to act on it.
#[derive(Debug, thiserror::Error)]
#[error("{role}: `{what}` failed on {destination}: {status}{tail}")]
pub struct CommandError {
    pub role: Role,
    pub destination: String,
    pub what: String,
    pub status: String,
    /// The last lines of stderr, prefixed with a newline.
    pub tail: String,
}

/// The host stopped answering in the middle of a command: its sshd died, it
/// rebooted, or the network dropped. The root cause of whatever failed with it.
#[derive(Debug, thiserror::Error)]
#[error("{role}: the SSH connection to {destination} was lost during `{what}` (sshd died, the host rebooted or the network dropped); what was captured before is kept, `--resume` captures this host again (`kdelta run --resume RUN_DIR`, or the same `kdelta verify` with --resume)")]
pub struct ConnectionLost {
    pub role: Role,
    pub destination: String,
    pub what: String,
}

pub struct Remote {
    pub role: Role,
    pub destination: String,
    /// The live session. Behind a lock so [`Remote::reconnect`] can replace it after
    /// the host rebooted (`kdelta verify`'s boot toggle) while the capture loop holds
    /// `&Remote`; each command clones the `Arc` it runs on.
    session: std::sync::RwLock<Arc<Session>>,
    spec: ConnectSpec,
    logs: PathBuf,
    seq: AtomicU32,
    /// Set as KDELTA_RUN in the environment of every command, which its children
    /// inherit: teardown finds and stops whatever a cut-short run left running.
    tag: Option<String>,
    become_: Become,
}

#[derive(Debug)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
}

impl Remote {
    /// Connects with retries and backoff until `retry_for` has passed.
    pub async fn connect(spec: &ConnectSpec, logs: &Path) -> Result<Remote> {
        let session = open(spec).await?;
        Ok(Remote {
            role: spec.role,
            destination: spec.destination.clone(),
            session: std::sync::RwLock::new(Arc::new(session)),
            spec: spec.clone(),
            logs: logs.to_path_buf(),
            seq: AtomicU32::new(0),
            tag: None,
            become_: spec.become_,
        })
    }

    /// A new session in place of the one in use (the host rebooted): retried as
    /// [`Remote::connect`] is. Commands already running keep the old one.
    pub async fn reconnect(&self) -> Result<()> {
        let fresh = Arc::new(open(&self.spec).await?);
        let old = match self.session.write() {
            Ok(mut s) => std::mem::replace(&mut *s, fresh),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), fresh),
        };
        // The old master may be talking to a host that is gone: not waited for long.
        if let Ok(old) = Arc::try_unwrap(old) {
            let _ = tokio::time::timeout(Duration::from_secs(5), old.close()).await;
        }
        Ok(())
    }

    /// How long a later [`Remote::reconnect`] keeps trying.
    pub fn retry_for(&mut self, d: Duration) {
        self.spec.retry_for = d;
    }

    /// The session commands run on now.
    fn session(&self) -> Arc<Session> {
        match self.session.read() {
            Ok(s) => Arc::clone(&s),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

/// One SSH session to `spec`, retried with backoff until `retry_for` has passed;
/// the error names the host and what to check.
async fn open(spec: &ConnectSpec) -> Result<Session> {
    let mut b = SessionBuilder::default();
    b.known_hosts_check(if spec.accept_new {
        KnownHosts::Add
    } else {
        KnownHosts::Strict
    })
    .connect_timeout(spec.connect_timeout)
    .server_alive_interval(Duration::from_secs(5))
    .control_directory(&spec.control_dir);
    if let Some(p) = spec.port {
        b.port(p);
    }
    if let Some(u) = &spec.user {
        b.user(u.clone());
    }
    if let Some(k) = &spec.keyfile {
        b.keyfile(k);
    }
    if let Some(kh) = &spec.known_hosts_file {
        b.user_known_hosts_file(kh);
    }
    let start = Instant::now();
    let mut delay = Duration::from_millis(200);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match b.connect(&spec.destination).await {
            Ok(session) => return Ok(session),
            Err(e) => {
                // ssh's own words ("Permission denied", "Connection refused") are
                // in the error's sources, not in its top line.
                let mut text = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    text.push_str(": ");
                    text.push_str(&s.to_string());
                    src = s.source();
                }
                let fatal = text.contains("Permission denied")
                    || text.contains("Host key verification failed")
                    || text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
                    || text.contains("Could not resolve hostname");
                if fatal || start.elapsed() + delay > spec.retry_for {
                    let hint = if text.contains("Permission denied") {
                        "the key was refused: check user, identity_file and authorized_keys"
                    } else if text.contains("Host key verification failed") {
                        "the host key is not in known_hosts: connect once with ssh to check and add it, or set `known_hosts: accept-new` on this host"
                    } else if text.contains("Could not resolve hostname") {
                        "check the destination or your ~/.ssh/config"
                    } else {
                        "is sshd running and reachable? try `ssh` to it by hand"
                    };
                    return Err(anyhow::anyhow!(
                        "{}: cannot connect to {}{}: {} ({hint}; {attempts} attempt(s) in {:.0}s)",
                        spec.role,
                        spec.destination,
                        spec.port.map(|p| format!(" port {p}")).unwrap_or_default(),
                        ssh_reason(&text, &spec.destination),
                        start.elapsed().as_secs_f64(),
                    ));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(3));
            }
        }
    }
}

impl Remote {
    fn log_path(&self, what: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let slug: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        self.logs.join(format!("{n:02}-{slug}.log"))
    }

    /// `ConnectionLost` when the session is dead, else `e` with the command named.
    async fn lost_or(&self, what: &str, e: anyhow::Error) -> anyhow::Error {
        if self.session().check().await.is_err() {
            ConnectionLost {
                role: self.role,
                destination: self.destination.clone(),
                what: what.to_string(),
            }
            .into()
        } else {
            e.context(format!(
                "{}: `{what}` on {}: ssh failed",
                self.role, self.destination
            ))
        }
    }

    /// Marks every command from now on with `KDELTA_RUN=tag` (see [`stop_tagged`]).
    pub fn tag_commands(&mut self, tag: &str) {
        self.tag = Some(tag.to_string());
    }

    fn wrap(&self, script: &str, timeout: Duration) -> String {
        wrap_command(self.become_, self.tag.as_deref(), script, timeout)
    }

    /// With `become: sudo`, that the login user may run commands as root through
    /// `sudo -n`; the error says what is missing and the fix.
    pub async fn check_become(&self) -> Result<()> {
        if self.become_ != Become::Sudo {
            return Ok(());
        }
        let probe = "id -un; command -v sudo >/dev/null 2>&1 || exit 127; sudo -n true";
        let cmd = format!("timeout -k 5 30 sh -c {}", quote(probe));
        let session = self.session();
        let mut command = session.raw_command(&cmd);
        command.stdin(openssh::Stdio::null());
        let out = tokio::time::timeout(Duration::from_secs(45), command.output())
            .await
            .map_err(|_| anyhow::anyhow!("{}: `sudo -n true` gave no answer", self.role))?
            .map_err(|e| anyhow::Error::new(e).context(format!("{}: sudo probe", self.role)))?;
        let user = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        match become_problem(out.status.code(), &user, &stderr) {
            None => Ok(()),
            Some(why) => {
                anyhow::bail!("{}: become: sudo on {}: {why}", self.role, self.destination)
            }
        }
    }

    /// Runs a script; fails on a non-zero exit with the stderr tail.
    pub async fn run(&self, what: &str, script: &str, timeout: Duration) -> Result<Output> {
        let out = self.run_unchecked(what, script, timeout).await?;
        if out.code != Some(0) {
            return Err(self.error(what, &out).into());
        }
        Ok(out)
    }

    pub fn error(&self, what: &str, out: &Output) -> CommandError {
        let status = match out.code {
            Some(124) => "timed out on the host".to_string(),
            Some(127) => "exit code 127 (command not found)".to_string(),
            Some(c) => format!("exit code {c}"),
            None => "killed by a signal or the connection dropped".to_string(),
        };
        let tail: Vec<&str> = out
            .stderr
            .lines()
            .chain(if out.stderr.trim().is_empty() {
                out.stdout.lines()
            } else {
                "".lines()
            })
            .filter(|l| !l.trim().is_empty())
            .collect();
        let tail = tail[tail.len().saturating_sub(6)..].join("\n    ");
        CommandError {
            role: self.role,
            destination: self.destination.clone(),
            what: what.to_string(),
            status,
            tail: if tail.is_empty() {
                String::new()
            } else {
                format!("\n    {tail}")
            },
        }
    }

    /// Runs a script and returns its output whatever the exit code.
    pub async fn run_unchecked(
        &self,
        what: &str,
        script: &str,
        timeout: Duration,
    ) -> Result<Output> {
        let log = self.log_path(what);
        let cmd = self.wrap(script, timeout);
        let session = self.session();
        let mut command = session.raw_command(&cmd);
        command.stdin(openssh::Stdio::null());
        let res = tokio::time::timeout(timeout + Duration::from_secs(15), command.output()).await;
        let out = match res {
            Err(_) => {
                let _ = std::fs::write(
                    &log,
                    format!(
                        "$ {script}\n[kdelta: no answer after {}s]\n",
                        timeout.as_secs()
                    ),
                );
                anyhow::bail!(
                    "{}: `{what}` on {}: no answer after {}s (the connection may be dead)",
                    self.role,
                    self.destination,
                    timeout.as_secs() + 15
                );
            }
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                let _ = std::fs::write(&log, format!("$ {script}\n[kdelta: ssh failed: {e}]\n"));
                return Err(self.lost_or(what, anyhow::Error::new(e)).await);
            }
        };
        let o = Output {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code(),
        };
        let _ = std::fs::write(
            &log,
            format!(
                "$ {script}\n--- exit: {:?}\n--- stdout\n{}\n--- stderr\n{}\n",
                o.code, o.stdout, o.stderr
            ),
        );
        Ok(o)
    }

    /// Runs a script and streams its stdout into a local file; returns bytes written.
    pub async fn run_to_file(
        &self,
        what: &str,
        script: &str,
        dest: &Path,
        timeout: Duration,
    ) -> Result<u64> {
        let log = self.log_path(what);
        let cmd = self.wrap(script, timeout);
        let session = self.session();
        let mut child = session
            .raw_command(&cmd)
            .stdin(openssh::Stdio::null())
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped())
            .spawn()
            .await
            .with_context(|| format!("{}: cannot start `{what}`", self.role))?;
        let mut stdout = child.stdout().take().context("no stdout")?;
        let mut stderr = child.stderr().take().context("no stderr")?;
        let mut file = tokio::fs::File::create(dest)
            .await
            .with_context(|| format!("cannot write {}", dest.display()))?;
        let copy = async {
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0u64;
            loop {
                let n = stdout.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                file.write_all(&buf[..n]).await?;
                total += n as u64;
            }
            file.flush().await?;
            Ok::<u64, std::io::Error>(total)
        };
        let err_read = async {
            let mut s = Vec::new();
            let _ = stderr.read_to_end(&mut s).await;
            s
        };
        let both = async { tokio::join!(copy, err_read) };
        let (copied, err) =
            match tokio::time::timeout(timeout + Duration::from_secs(15), both).await {
                Ok(r) => r,
                Err(_) => anyhow::bail!(
                    "{}: `{what}` on {}: no answer after {}s",
                    self.role,
                    self.destination,
                    timeout.as_secs()
                ),
            };
        let status = child.wait().await;
        let err = String::from_utf8_lossy(&err).into_owned();
        let total = copied
            .with_context(|| format!("{}: `{what}`: writing {}", self.role, dest.display()))?;
        let code = status.ok().and_then(|s| s.code());
        let _ = std::fs::write(
            &log,
            format!(
                "$ {script}\n--- exit: {code:?}, {total} bytes to {}\n--- stderr\n{err}\n",
                dest.display()
            ),
        );
        if code.is_none() {
            let e = self.error(
                what,
                &Output {
                    stdout: String::new(),
                    stderr: err.clone(),
                    code,
                },
            );
            return Err(self.lost_or(what, e.into()).await);
        }
        if code != Some(0) {
            return Err(self
                .error(
                    what,
                    &Output {
                        stdout: String::new(),
                        stderr: err,
                        code,
                    },
                )
                .into());
        }
        Ok(total)
    }

    /// Copies a local folder to `remote_dir` on the host (tar over the session).
    pub async fn upload_dir(
        &self,
        local: &Path,
        remote_dir: &str,
        timeout: Duration,
    ) -> Result<()> {
        let tar = tokio::process::Command::new("tar")
            .arg("-C")
            .arg(local)
            .arg("-cf")
            .arg("-")
            .arg(".")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .context("cannot run tar")?;
        if !tar.status.success() {
            anyhow::bail!(
                "tar of {} failed: {}",
                local.display(),
                String::from_utf8_lossy(&tar.stderr)
            );
        }
        let script = format!("mkdir -p {d} && tar -C {d} -xf -", d = quote(remote_dir));
        let cmd = self.wrap(&script, timeout);
        let session = self.session();
        let mut child = session
            .raw_command(&cmd)
            .stdin(openssh::Stdio::piped())
            .stdout(openssh::Stdio::null())
            .stderr(openssh::Stdio::piped())
            .spawn()
            .await?;
        let mut stdin = child.stdin().take().context("no stdin")?;
        stdin.write_all(&tar.stdout).await?;
        stdin.shutdown().await?;
        drop(stdin);
        let out = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| anyhow::anyhow!("{}: upload to {remote_dir} timed out", self.role))??;
        if !out.status.success() {
            anyhow::bail!(
                "{}: upload of {} to {remote_dir} failed: {}",
                self.role,
                local.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    pub async fn close(self) {
        let session = match self.session.into_inner() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Ok(s) = Arc::try_unwrap(session) {
            let _ = s.close().await;
        }
    }
}

/// The command line that runs `script` on a host: bounded by the host's own
/// `timeout` (it ends even if the connection drops), tagged with `KDELTA_RUN`, and
/// with `become: sudo` run as root through `sudo -n` (never a password prompt).
/// sudo resets the environment, so the tag goes through `env` after it; `timeout`
/// runs as root too, so its SIGKILL reaches what root started.
pub fn wrap_command(become_: Become, tag: Option<&str>, script: &str, timeout: Duration) -> String {
    let tag = tag
        .map(|t| format!("KDELTA_RUN={} ", quote(t)))
        .unwrap_or_default();
    let secs = timeout.as_secs().max(1);
    match become_ {
        Become::No => format!("{tag}timeout -k 5 {secs} sh -c {}", quote(script)),
        Become::Sudo => format!(
            "sudo -n env {tag}timeout -k 5 {secs} sh -c {}",
            quote(script)
        ),
    }
}

/// What keeps `sudo -n true` from working, from its exit code and words; `None`
/// when it worked.
pub fn become_problem(code: Option<i32>, user: &str, stderr: &str) -> Option<String> {
    let user = if user.is_empty() {
        "the login user"
    } else {
        user
    };
    let fix = format!("add `{user} ALL=(ALL) NOPASSWD: ALL` to /etc/sudoers.d/kdelta (as root: visudo -f /etc/sudoers.d/kdelta), or connect as root and drop `become:`");
    match code {
        Some(0) => None,
        Some(127) => Some(format!(
            "sudo is not installed (as root: apt-get install sudo, then {fix})"
        )),
        _ if stderr.contains("password is required") || stderr.contains("password for") => Some(
            format!("sudo asks {user} for a password, and kdelta never types one: {fix}"),
        ),
        _ if stderr.contains("not in the sudoers") || stderr.contains("not allowed") => {
            Some(format!("{user} may not use sudo: {fix}"))
        }
        _ if stderr.contains("terminal is required") || stderr.contains("tty") => Some(format!(
            "sudo wants a terminal (requiretty): add `Defaults:{user} !requiretty` to /etc/sudoers.d/kdelta"
        )),
        c => Some(format!(
            "`sudo -n true` failed ({}): {} ({fix})",
            c.map_or("killed".to_string(), |c| format!("exit code {c}")),
            last_line(stderr)
        )),
    }
}

/// A script that kills every process whose environment has `KDELTA_RUN=tag`: what
/// the run's commands started and left running (a setup step, a server) when the
/// run was cut short. Run it from an untagged session, so it does not kill itself.
/// One `grep -z` reads every environment (a process per PID costs seconds on a
/// slow host: 15 s in a Debian guest under TCG); an exact line, so a tag that is
/// another's prefix matches nothing else.
pub fn stop_tagged(tag: &str) -> String {
    format!(
        "for f in $(grep -lzxF {} /proc/[0-9]*/environ 2>/dev/null); do p=${{f#/proc/}}; kill -s KILL ${{p%/environ}} 2>/dev/null; done; true",
        quote(&format!("KDELTA_RUN={tag}"))
    )
}

/// ssh's own reason from the openssh error chain, without the crate's
/// "failed to connect to the remote host:" and the destination it repeats.
fn ssh_reason(text: &str, destination: &str) -> String {
    let line = last_line(text);
    let mut reason = line.as_str();
    loop {
        let before = reason;
        for prefix in [
            "failed to connect to the remote host:",
            destination,
            ":",
            "ssh:",
        ] {
            reason = reason.trim_start().strip_prefix(prefix).unwrap_or(reason);
        }
        if reason == before {
            break;
        }
    }
    let reason = reason.trim().trim_end_matches('.');
    if reason.is_empty() {
        line
    } else {
        reason.to_string()
    }
}

fn last_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(s)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_wraps_the_bounded_command_and_keeps_the_tag() {
        let t = Duration::from_secs(30);
        assert_eq!(
            wrap_command(Become::No, Some("/tmp/w x"), "id -u", t),
            "KDELTA_RUN='/tmp/w x' timeout -k 5 30 sh -c 'id -u'"
        );
        let s = wrap_command(Become::Sudo, Some("/tmp/w"), "id -u", t);
        assert_eq!(
            s,
            "sudo -n env KDELTA_RUN=/tmp/w timeout -k 5 30 sh -c 'id -u'"
        );
        let s = wrap_command(Become::Sudo, None, "id -u", t);
        assert_eq!(s, "sudo -n env timeout -k 5 30 sh -c 'id -u'");
    }

    #[test]
    fn sudo_problems_name_the_fix() {
        assert_eq!(become_problem(Some(0), "admin", ""), None);
        let p = become_problem(Some(1), "admin", "sudo: a password is required\n").unwrap();
        assert!(
            p.contains("password") && p.contains("admin ALL=(ALL) NOPASSWD: ALL"),
            "{p}"
        );
        let p = become_problem(Some(127), "admin", "").unwrap();
        assert!(p.contains("not installed"), "{p}");
        let p = become_problem(
            Some(1),
            "bob",
            "bob is not in the sudoers file.  This incident will be reported.",
        )
        .unwrap();
        assert!(p.starts_with("bob may not use sudo"), "{p}");
    }

    #[test]
    fn ssh_reason_is_ssh_own_words() {
        let r = super::ssh_reason(
            "failed to connect to the remote host: root@198.18.67.26: Permission denied (publickey).",
            "root@198.18.67.26",
        );
        assert_eq!(r, "Permission denied (publickey)");
        let r = super::ssh_reason(
            "x\nssh: connect to host 127.0.0.1 port 1: Connection refused\n",
            "root@127.0.0.1",
        );
        assert_eq!(r, "connect to host 127.0.0.1 port 1: Connection refused");
    }
}
