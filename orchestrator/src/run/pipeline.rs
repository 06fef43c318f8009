//! The phases of a run that touch hosts: provision → connect → deploy → facts →
//! workload and capture, each recorded in run.json. Teardown is not here: the
//! caller runs it whatever this returns (it reads only the ledger).

use std::time::Duration;

use anyhow::Result;
use futures::future::join_all;

use super::check::preflight;
use super::repeat::{capture_all, template_ctx, Side};
use super::runlog::phase;
use super::RunCtx;
use crate::capture::facts;
use crate::exec::remote::Remote;
use crate::exec::shell::quote;
use crate::model::{Facts, HostRecord, HostsRecord};
use crate::playbook::{render, DeployStep};
use crate::provision::{with_ledger, Host, Provisioner};
use crate::rundir::{write_atomic, write_json};

pub(super) async fn pipeline(cx: &RunCtx<'_>) -> Result<()> {
    if cx.roles.is_empty() {
        return Ok(()); // a resumed run whose captures were all complete
    }
    let hosts = phase(cx.log, "provision", None, provision(cx)).await?;
    let remotes = phase(cx.log, "connect", None, connect(cx, &hosts)).await?;
    let result = with_remotes(cx, &hosts, &remotes).await;
    for r in remotes {
        r.close().await;
    }
    result
}

/// The hosts, and hosts.json (on a resumed run, with the records of the roles not
/// captured again).
async fn provision(cx: &RunCtx<'_>) -> Result<Vec<Host>> {
    let control = std::env::temp_dir().join(format!("kds-{}", std::process::id()));
    with_ledger(cx.ledger, |l| {
        l.work = Some(cx.work.clone());
        l.control_dir = Some(control.clone());
    });
    std::fs::create_dir_all(&control)?;
    let p = Provisioner {
        plan: cx.plan,
        rd: Some(cx.rd),
        ledger: cx.ledger,
        control: &control,
        progress: cx.progress,
    };
    let hosts = p.hosts(cx.roles).await?;
    let earlier = cx
        .rd
        .read_hosts_record()
        .map(|r| r.hosts)
        .unwrap_or_default()
        .into_iter()
        .filter(|h| !cx.roles.contains(&h.role));
    let rec = HostsRecord {
        hosts: earlier
            .chain(hosts.iter().map(|h| HostRecord {
                role: h.role,
                label: cx.plan.host(h.role).label.clone(),
                provider: h.provider,
                destination: h.connect.destination.clone(),
                address: h.address.clone(),
                port: h.connect.port.unwrap_or(22),
                user: h.connect.user.clone(),
                work_folder: cx.work_of(h),
                teardown: Default::default(),
            }))
            .collect(),
    };
    write_json(&cx.rd.hosts_json(), &rec)?;
    Ok(hosts)
}

/// Both hosts at once; each remote command is tagged with the work folder, so
/// teardown finds whatever a cut-short run left running.
async fn connect(cx: &RunCtx<'_>, hosts: &[Host]) -> Result<Vec<Remote>> {
    let futs = hosts.iter().map(|h| async move {
        cx.progress.step(
            h.role.as_str(),
            &format!("connecting to {}", h.connect.destination),
        );
        let mut r = Remote::connect(&h.connect, &cx.rd.host(h.role).logs()).await?;
        r.tag_commands(&cx.work_of(h));
        with_ledger(cx.ledger, |l| l.connected.push(h.role));
        // Before any deploy step: a user who may not profile fails here, with the
        // fix, not at the first repeat with perf's words in a log.
        for w in super::check::access(h.role, &r, &h.work_dir).await? {
            cx.progress.println(&w);
        }
        Ok(r)
    });
    join_all(futs).await.into_iter().collect()
}

async fn with_remotes(cx: &RunCtx<'_>, hosts: &[Host], remotes: &[Remote]) -> Result<()> {
    let pairs = || hosts.iter().zip(remotes);
    let deploys =
        pairs().map(|(h, r)| phase(cx.log, "deploy", Some(h.role.as_str()), deploy(cx, h, r)));
    join_all(deploys)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    // Facts after setup, so runtime changes made there are seen.
    let facts =
        pairs().map(|(h, r)| phase(cx.log, "facts", Some(h.role.as_str()), facts(cx, h, r)));
    join_all(facts)
        .await
        .into_iter()
        .collect::<Result<Vec<Facts>>>()?;
    if let (Some(t), [host], [remote]) = (cx.toggle, hosts, remotes) {
        return super::toggle::toggled(cx, host, remote, t).await;
    }
    let cmd_t = Duration::from_secs(cx.plan.timeouts.command);
    let zstd = join_all(
        remotes
            .iter()
            .map(|r| r.run_unchecked("has-zstd", "command -v zstd", cmd_t)),
    )
    .await;
    let mut sides: Vec<Side> = pairs()
        .zip(zstd)
        .map(|((host, remote), z)| Side {
            host,
            remote,
            work: cx.work_of(host),
            remote_zstd: z.map(|o| o.code == Some(0)).unwrap_or(false),
            values: Vec::new(),
            log: String::new(),
            enter: None,
        })
        .collect();
    capture_all(cx, &mut sides).await
}

/// The work folder, the playbook's deploy steps, the host's setup commands.
pub(super) async fn deploy(cx: &RunCtx<'_>, h: &Host, r: &Remote) -> Result<()> {
    let plan = cx.plan;
    let cmd_t = Duration::from_secs(plan.timeouts.command);
    cx.progress.step(h.role.as_str(), "deploying");
    let work = cx.work_of(h);
    let ctx = template_ctx(plan, h, &work, 0);
    r.run(
        "workdir",
        &format!("mkdir -p {}/files", quote(&work)),
        cmd_t,
    )
    .await?;
    for (i, step) in plan.deploy.iter().enumerate() {
        match step {
            DeployStep::Upload { from, to } => {
                let to = render(to, &ctx)?;
                let to = to.trim_matches('\'').to_string();
                r.upload_dir(from, &to, cmd_t).await?;
            }
            DeployStep::Run { command, timeout } => {
                let c = render(command, &ctx)
                    .map_err(|e| e.context(format!("deploy[{i}].run: template")))?;
                r.run(&format!("deploy-{i}"), &c, Duration::from_secs(*timeout))
                    .await?;
            }
        }
    }
    for (i, s) in plan.host(h.role).setup.iter().enumerate() {
        let c = render(s, &ctx)
            .map_err(|e| e.context(format!("hosts.{}.setup[{i}]: template", h.role)))?;
        r.run(&format!("setup-{i}"), &c, cmd_t).await?;
    }
    Ok(())
}

/// facts.json and kernel.config, then the preflight on what the facts say.
pub(super) async fn facts(cx: &RunCtx<'_>, h: &Host, r: &Remote) -> Result<Facts> {
    let cmd_t = Duration::from_secs(cx.plan.timeouts.command);
    let hd = cx.rd.host(h.role);
    cx.progress
        .step(h.role.as_str(), "gathering facts and kernel config");
    let out = facts::gather(r, cmd_t).await?;
    let f = facts::parse_facts(&out);
    write_json(&hd.facts_json(), &f)?;
    let cfg = r
        .run_unchecked("kernel-config", facts::CONFIG_SCRIPT, cmd_t)
        .await?;
    if cfg.code == Some(0) && !cfg.stdout.is_empty() {
        write_atomic(&hd.kernel_config(), cfg.stdout.as_bytes())?;
    } else {
        cx.progress.println(&format!(
            "kdelta: warning: {}: no kernel config found (/proc/config.gz, /boot/config-*): the config delta will be empty",
            h.role
        ));
    }
    preflight(h.role, &f)?;
    Ok(f)
}
