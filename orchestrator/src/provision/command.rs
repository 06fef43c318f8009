//! The `command` provider: hosts made and removed by the user's own commands
//! (`aws ec2 run-instances`, `vzctl create`, `virt-install` …).
//!
//! `up` runs on this machine and prints the host as JSON:
//! `{"address": "203.0.113.7", "port": 22, "user": "admin", "identity_file": "~/.ssh/k", "id": "i-0abc"}`
//! (only `address` is required; `id` defaults to it; `known_hosts` may name a file with
//! the new host's key, which is then checked strictly). The moment `up` has printed,
//! the rendered `down` command is written to `hosts/<role>/teardown.json`, before
//! kdelta even waits for SSH: whatever happens next — a failure, Ctrl-C, SIGTERM, or
//! kdelta itself killed — the run directory says what to remove, and
//! `kdelta teardown RUN_DIR` removes it. `down` is run once per host; its state is
//! kept in the same file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use minijinja::Value;
use serde::{Deserialize, Serialize};

use super::{with_ledger, Host, Provisioner};
use crate::exec::remote::ConnectSpec;
use crate::model::{ProviderKind, Role};
use crate::playbook::Become;
use crate::playbook::{expand_home, render, CommandSpec, HostSpec, KnownHostsPolicy};
use crate::rundir::RunDir;

/// What `up` printed.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct UpOutput {
    pub address: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub identity_file: Option<String>,
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    /// A known_hosts file holding the new host's key (e.g. read from the instance's
    /// console by `up`): checked strictly, whatever the playbook's policy.
    #[serde(default)]
    pub known_hosts: Option<String>,
}

impl UpOutput {
    pub fn id(&self) -> String {
        match &self.id {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => self.address.clone(),
        }
    }
}

/// Reads `up`'s output: the whole of it as JSON, or its last line that is.
pub fn parse_up(stdout: &str) -> Result<UpOutput> {
    let whole = serde_json::from_str::<UpOutput>(stdout.trim());
    let parsed = whole.or_else(|first| {
        stdout
            .lines()
            .rev()
            .map(str::trim)
            .filter(|l| l.starts_with('{'))
            .find_map(|l| serde_json::from_str::<UpOutput>(l).ok())
            .ok_or(first)
    });
    let up = parsed.map_err(|e| {
        anyhow!("`up` printed no JSON object with an `address` ({e}); it must end by printing e.g. {{\"address\": \"198.51.100.7\", \"id\": \"i-0abc\"}}")
    })?;
    if up.address.trim().is_empty() || up.address.contains(char::is_whitespace) {
        bail!("`up` printed an unusable address `{}`", up.address);
    }
    Ok(up)
}

/// `hosts/<role>/teardown.json`: the rendered `down` of a host made by `up`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PendingTeardown {
    pub role: Option<Role>,
    pub id: String,
    pub down: String,
    /// `pending`, `done`, or `failed: …`.
    pub state: String,
    pub updated: String,
}

/// Runs a command of the playbook on this machine (`sh -c`), bounded in time, its
/// output kept in `log`; returns stdout. The command's process group is killed if it
/// overruns or if the caller gives up.
pub async fn run_local(cmd: &str, timeout: Duration, log: &Path) -> Result<String> {
    let Some(out) = crate::exec::local::shell(cmd, timeout, "sh").await? else {
        bail!("`{}` did not finish in {}s", short(cmd), timeout.as_secs());
    };
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if let Some(p) = log.parent() {
        let _ = std::fs::create_dir_all(p);
    }
    let _ = std::fs::write(
        log,
        format!(
            "$ {cmd}\n--- exit {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        ),
    );
    if !out.status.success() {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        bail!(
            "`{}` failed ({}): {last} (full output in {})",
            short(cmd),
            out.status,
            log.display()
        );
    }
    Ok(stdout)
}

fn short(cmd: &str) -> String {
    let one = cmd.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 80 {
        format!("{}…", one.chars().take(80).collect::<String>())
    } else {
        one
    }
}

pub fn save(path: &Path, t: &PendingTeardown) -> Result<()> {
    crate::rundir::write_json(path, t)
}

fn who(t: &PendingTeardown) -> &'static str {
    t.role.map_or("host", Role::as_str)
}

/// Runs one pending `down` and records the outcome in its file.
pub async fn run_down(path: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut t: PendingTeardown = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a teardown record", path.display()))?;
    if t.state == "done" {
        return Ok(());
    }
    let log = path.with_file_name("logs").join("down.log");
    let res = run_local(&t.down, Duration::from_secs(600), &log).await;
    t.state = match &res {
        Ok(_) => "done".into(),
        Err(e) => format!("failed: {e:#}"),
    };
    t.updated = crate::rundir::utc_now();
    save(path, &t)?;
    res.map(|_| ())
        .with_context(|| format!("{}: `down` for {}", who(&t), t.id))
}

/// The teardown records of a run directory.
pub fn records(run_dir: &Path) -> Vec<PathBuf> {
    let rd = RunDir::open(run_dir);
    Role::ALL
        .iter()
        .map(|r| rd.host(*r).teardown_json())
        .filter(|p| p.is_file())
        .collect()
}

/// `kdelta teardown RUN_DIR`: runs every `down` that has not succeeded yet.
/// Returns what was done, one line per host.
pub async fn teardown_run_dir(run_dir: &Path) -> Result<Vec<String>> {
    if !run_dir.join("run.json").is_file() {
        bail!("{}: not a run directory (no run.json)", run_dir.display());
    }
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for p in records(run_dir) {
        let before: PendingTeardown = serde_json::from_str(&std::fs::read_to_string(&p)?)?;
        if before.state == "done" {
            lines.push(format!("{}: {} already removed", who(&before), before.id));
            continue;
        }
        match run_down(&p).await {
            Ok(()) => lines.push(format!("{}: {} removed", who(&before), before.id)),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    if lines.is_empty() {
        lines.push(
            "nothing to tear down: no host of this run was made by a `command` provider".into(),
        );
    }
    Ok(lines)
}

/// Makes a host with the playbook's `up`, records its `down` in the run directory
/// before anything else can fail, and returns how to reach it.
pub(super) async fn provision(
    p: &Provisioner<'_>,
    rd: &RunDir,
    spec: &HostSpec,
    c: &CommandSpec,
) -> Result<Host> {
    let role = spec.role;
    let hd = rd.host(role);
    hd.ensure()?;
    let mut vars: std::collections::BTreeMap<String, Value> = p
        .plan
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), Value::from_serialize(v)))
        .collect();
    vars.insert("role".into(), Value::from(role.as_str()));
    vars.insert("revert".into(), Value::from_serialize(&c.revert));
    let up = render(&c.up, &Value::from_serialize(&vars))
        .with_context(|| format!("hosts.{role}.up: template"))?;
    p.progress.step(role.as_str(), "up: making the host");
    let bound = Duration::from_secs(p.plan.timeouts.command.max(600));
    let up_log = hd.logs().join("up.log");
    let out = run_local(&up, bound, &up_log)
        .await
        .with_context(|| format!("{role}: up"))?;
    let u = parse_up(&out).with_context(|| {
        format!(
            "{role}: up (if it made a host, remove it by hand: its output is in {})",
            up_log.display()
        )
    })?;
    vars.insert("id".into(), Value::from(u.id()));
    vars.insert("address".into(), Value::from(u.address.clone()));
    let down = render(&c.down, &Value::from_serialize(&vars))
        .with_context(|| format!("hosts.{role}.down: template"))?;
    let record = hd.teardown_json();
    save(
        &record,
        &PendingTeardown {
            role: Some(role),
            id: u.id(),
            down,
            state: "pending".into(),
            updated: crate::rundir::utc_now(),
        },
    )?;
    with_ledger(p.ledger, |l| l.downs.push(record));
    p.progress
        .done(role.as_str(), &format!("up: {} ({})", u.id(), u.address));
    let (known_hosts_file, accept_new) = match (&u.known_hosts, &c.known_hosts) {
        (Some(f), _) => (Some(expand_home(f)), false),
        (None, KnownHostsPolicy::File(f)) => (Some(f.clone()), false),
        (None, KnownHostsPolicy::AcceptNew) => (None, true),
        (None, KnownHostsPolicy::Strict) => (None, false),
    };
    let connect = p.plan.timeouts.connect;
    Ok(Host {
        role,
        provider: ProviderKind::Command,
        work_dir: "/tmp".into(),
        address: u.address.clone(),
        connect: ConnectSpec {
            role,
            destination: u.address.clone(),
            port: u.port,
            user: u.user.clone(),
            keyfile: u.identity_file.as_deref().map(expand_home),
            known_hosts_file,
            accept_new,
            control_dir: p.control.to_path_buf(),
            become_: Become::No,
            connect_timeout: Duration::from_secs(connect),
            // A new machine takes a while to boot: wait longer than for a known one.
            retry_for: Duration::from_secs(connect * 6),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_output_is_read_from_noisy_stdout() {
        let u = parse_up("creating…\nwaiting\n{\"address\": \"198.51.100.7\", \"port\": 2222, \"id\": \"i-0abc\"}\n").unwrap();
        assert_eq!(
            (u.address.as_str(), u.port, u.id()),
            ("198.51.100.7", Some(2222), "i-0abc".to_string())
        );
        let u = parse_up("{\n  \"address\": \"10.0.0.5\",\n  \"id\": 101\n}\n").unwrap();
        assert_eq!(u.id(), "101");
        let e = parse_up("Instance started\n").unwrap_err();
        assert!(format!("{e:#}").contains("address"), "{e:#}");
        assert!(parse_up("{\"address\": \"a b\"}").is_err());
    }
}
