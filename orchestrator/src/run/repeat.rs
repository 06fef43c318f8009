//! The workload and its capture, repeat by repeat. Each repeat's profile is
//! converted and downloaded right after it, so a run cut short keeps every repeat
//! it finished: `kdelta analyze` reports them, `--resume` recaptures the hosts that
//! did not finish. Hosts that share this machine run one at a time, in pairs
//! counterbalanced (A B B A …); others at once.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use futures::future::join_all;
use minijinja::Value;

use super::runlog::phase;
use super::RunCtx;
use crate::capture::{metrics, scripts};
use crate::exec::remote::{ConnectionLost, Remote};
use crate::exec::shell::quote;
use crate::playbook::{render, ClientFrom, Plan};
use crate::provision::Host;
use crate::rundir::{write_atomic, write_json};

/// A host in the capture loop: how to reach it, its work folder, what it measured.
pub(super) struct Side<'a> {
    pub host: &'a Host,
    pub remote: &'a Remote,
    pub work: String,
    pub remote_zstd: bool,
    pub values: Vec<Vec<Option<f64>>>,
    pub log: String,
    /// `kdelta verify`: what puts the host into this side's state before each of
    /// its repeats (both sides are one host), and the state.
    pub enter: Option<(&'a super::toggle::Toggler, crate::model::Role)>,
}

/// All repeats on all hosts (with `repeat: auto`, until the decision is clear).
pub(super) async fn capture_all(cx: &RunCtx<'_>, sides: &mut [Side<'_>]) -> Result<()> {
    let repeats = planned(cx);
    let started = Instant::now();
    let groups: Vec<Vec<usize>> = if cx.plan.sequential() || cx.toggle.is_some() {
        (0..sides.len()).map(|i| vec![i]).collect()
    } else {
        vec![(0..sides.len()).collect()]
    };
    for rep in 1..=repeats {
        // Taken one after the other, every second pair goes candidate first
        // (A B B A A B …): what the first of a pair leaves behind for the second
        // (warm caches, heat, a drift) falls on each side in turn, not on one.
        let order: Vec<&Vec<usize>> = if rep % 2 == 0 {
            groups.iter().rev().collect()
        } else {
            groups.iter().collect()
        };
        for group in order {
            repeat_group(cx, sides, group, rep).await?;
        }
        let adaptive = cx.plan.capture.adaptive.filter(|_| sides.len() == 2);
        if let Some(a) = adaptive {
            if let Some(rec) = super::adaptive::should_stop(cx.plan, &a, sides, rep, started) {
                cx.progress.println(&format!("kdelta: {}", rec.stopped));
                cx.log.set_adaptive(rec);
                break;
            }
        }
    }
    Ok(())
}

/// The pairs to take: the playbook's count (the budget with `repeat: auto`); on a
/// resumed run that captures one side again, as many as the other side has.
fn planned(cx: &RunCtx<'_>) -> u32 {
    let plan = cx.plan.capture.repeat;
    if cx.roles.len() == 2 || cx.toggle.is_some() || cx.plan.capture.adaptive.is_none() {
        return plan;
    }
    crate::model::Role::ALL
        .into_iter()
        .filter(|r| !cx.roles.contains(r))
        .find_map(|r| {
            let text = std::fs::read_to_string(cx.rd.host(r).metrics_json()).ok()?;
            serde_json::from_str::<crate::model::Metrics>(&text).ok()
        })
        .map_or(plan, |m| m.repeats.max(1))
}

/// One repeat on the hosts of `group` at once, then their downloads. What the
/// hosts that succeeded measured is kept before a failure is reported.
async fn repeat_group(
    cx: &RunCtx<'_>,
    sides: &mut [Side<'_>],
    group: &[usize],
    rep: u32,
) -> Result<()> {
    let repeats = cx.plan.capture.repeat;
    let name = format!("workload {rep}/{repeats}");
    let runs = group.iter().map(|&i| {
        let s = &sides[i];
        phase(cx.log, &name, Some(s.host.role.as_str()), async move {
            if let Some((toggler, state)) = s.enter {
                toggler
                    .enter(cx, s.remote, state, &format!("enter-{rep}"))
                    .await?;
            }
            one_repeat(cx, s.host, s.remote, &s.work, rep).await
        })
    });
    let results = join_all(runs).await;
    let mut first_err = None;
    let mut done = Vec::new();
    for (&i, r) in group.iter().zip(results) {
        match r {
            Ok((v, l)) => {
                sides[i].values.push(v);
                sides[i].log.push_str(&l);
                done.push(i);
            }
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    let name = format!("download {rep}/{repeats}");
    let downloads = done.iter().map(|&i| {
        let s = &sides[i];
        phase(cx.log, &name, Some(s.host.role.as_str()), async move {
            let hd = cx.rd.host(s.host.role);
            write_atomic(&hd.workload_log(), s.log.as_bytes())?;
            let m =
                metrics::metrics_file(&cx.plan.workload.metrics, &s.values, s.values.len() as u32);
            write_json(&hd.metrics_json(), &m)?;
            download_repeat(cx, s, rep).await
        })
    });
    for r in join_all(downloads).await {
        if let Err(e) = r {
            first_err = first_err.or(Some(e));
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// What templates see: the playbook's vars, the host, the work folder, the repeat.
pub(super) fn template_ctx(plan: &Plan, host: &Host, work: &str, repeat: u32) -> Value {
    let mut map: std::collections::BTreeMap<String, Value> = plan
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), Value::from_serialize(v)))
        .collect();
    map.insert(
        "host".into(),
        minijinja::context! { address => host.address.clone(), role => host.role.as_str(), provider => host.provider.as_str() },
    );
    map.insert("role".into(), Value::from(host.role.as_str()));
    map.insert("work".into(), Value::from(work.to_string()));
    map.insert("files".into(), Value::from(format!("{work}/files")));
    map.insert("repeat".into(), Value::from(repeat));
    Value::from_serialize(&map)
}

/// The work folder's filesystem filled up during a repeat.
#[derive(Debug, thiserror::Error)]
#[error("{role}: the work folder's filesystem on {destination} filled up during repeat {repeat}: perf record could not write its profile ({df}); set `work_dir:` on this host to a filesystem with room (e.g. work_dir: /var/tmp), or lower capture.perf.frequency or the workload's length")]
pub struct WorkFolderFull {
    pub role: crate::model::Role,
    pub destination: String,
    pub repeat: u32,
    pub df: String,
}

/// What a workload client printed, and how it ended (`Some(124)`: timed out).
struct ClientOutput {
    stdout: String,
    stderr: String,
    code: Option<i32>,
    seconds: f64,
}

/// One repeat on one host: start perf (and the server), run the client, stop,
/// read the metrics. Returns the values and the repeat's log text.
async fn one_repeat(
    cx: &RunCtx<'_>,
    host: &Host,
    remote: &Remote,
    work: &str,
    rep: u32,
) -> Result<(Vec<Option<f64>>, String)> {
    let plan = cx.plan;
    let w = &plan.workload;
    let ctx = template_ctx(plan, host, work, rep);
    let cmd_t = Duration::from_secs(plan.timeouts.command);
    let server = match &w.server {
        Some(s) => Some(render(s, &ctx).context("workload.server: template")?),
        None => None,
    };
    let client = render(&w.client, &ctx).context("workload.client.run: template")?;
    cx.progress.step(
        host.role.as_str(),
        &format!(
            "repeat {rep}/{}: perf record + workload",
            plan.capture.repeat
        ),
    );
    let start = scripts::start_script(work, rep, &plan.capture, w.timeout + 30, server.as_deref());
    remote.run(&format!("start-{rep}"), &start, cmd_t).await?;
    tokio::time::sleep(Duration::from_secs_f64(w.server_ready_wait)).await;
    let out = run_client(plan, remote, &client, rep).await;
    // Stop perf and the server whatever the client did.
    let stop = match stop(remote, host, work, rep, cmd_t).await {
        // A lost connection or a full work folder is the cause of whatever else
        // failed with it (a client that could not write its temporary files): say
        // that first.
        Err(e) if e.is::<ConnectionLost>() || e.is::<WorkFolderFull>() => return Err(e),
        other => other,
    };
    let out = out?;
    let server_log = match &server {
        Some(_) => remote
            .run_unchecked(
                &format!("server-log-{rep}"),
                &scripts::server_log_script(work, rep),
                cmd_t,
            )
            .await
            .map(|o| o.stdout)
            .unwrap_or_default(),
        None => String::new(),
    };
    let logtext = repeat_log(host, rep, &client, &out, &server_log);
    if out.code != Some(0) {
        return Err(client_failed(host, rep, &client, &out));
    }
    stop?;
    let mut vals = Vec::new();
    for m in &w.metrics {
        let src = if m.from_server {
            &server_log
        } else {
            &out.stdout
        };
        let v = metrics::extract(m, src).map_err(|e| {
            anyhow!(
                "{}: metric `{}` could not be read from the {} output of repeat {rep}: {e} (see hosts/{}/workload.log)",
                host.role,
                m.name,
                if m.from_server { "server" } else { "client" },
                host.role
            )
        })?;
        vals.push(Some(v));
    }
    Ok((vals, logtext))
}

/// The client, on the host or here, bounded by `workload.timeout`.
async fn run_client(plan: &Plan, remote: &Remote, client: &str, rep: u32) -> Result<ClientOutput> {
    let timeout = Duration::from_secs(plan.workload.timeout);
    let started = Instant::now();
    let (stdout, stderr, code) = match plan.workload.client_from {
        ClientFrom::Host => {
            let o = remote
                .run_unchecked(&format!("client-{rep}"), client, timeout)
                .await?;
            (o.stdout, o.stderr, o.code)
        }
        ClientFrom::Orchestrator => local_client(client, timeout).await?,
    };
    Ok(ClientOutput {
        stdout,
        stderr,
        code,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Stops perf, perf stat and the server; a perf that died before is a named error.
async fn stop(remote: &Remote, host: &Host, work: &str, rep: u32, cmd_t: Duration) -> Result<()> {
    let what = format!("stop-{rep}");
    let o = remote
        .run_unchecked(&what, &scripts::stop_script(work, rep), cmd_t)
        .await?;
    match o.code {
        Some(0) => Ok(()),
        Some(scripts::NO_SPACE) => Err(WorkFolderFull {
            role: host.role,
            destination: remote.destination.clone(),
            repeat: rep,
            df: o
                .stderr
                .trim()
                .lines()
                .next()
                .unwrap_or("no space left")
                .to_string(),
        }
        .into()),
        Some(scripts::PERF_DIED) => Err(anyhow!(
            "{}: perf record died during repeat {rep}, before kdelta stopped it: this repeat's profile is cut short (killed? out of memory?); the end of its log:\n    {}",
            host.role,
            o.stderr.trim().lines().collect::<Vec<_>>().join("\n    ")
        )),
        _ => Err(remote.error(&what, &o).into()),
    }
}

fn repeat_log(host: &Host, rep: u32, client: &str, out: &ClientOutput, server_log: &str) -> String {
    let mut text = format!(
        "===== repeat {rep} on {} ({:.1}s, exit {:?})\n$ {client}\n{}\n",
        host.role, out.seconds, out.code, out.stdout
    );
    if !out.stderr.is_empty() {
        text.push_str(&format!("--- stderr\n{}\n", out.stderr));
    }
    if !server_log.is_empty() {
        text.push_str(&format!("--- server\n{server_log}\n"));
    }
    text
}

fn client_failed(host: &Host, rep: u32, client: &str, out: &ClientOutput) -> anyhow::Error {
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .filter(|l| !l.trim().is_empty())
        .collect();
    let tail = lines
        .get(lines.len().saturating_sub(4)..)
        .unwrap_or_default();
    anyhow!(
        "{}: the workload client failed in repeat {rep} ({}): `{client}`\n    {}\n    (see hosts/{}/workload.log)",
        host.role,
        match out.code {
            Some(124) => "timed out (workload.timeout)".to_string(),
            Some(c) => format!("exit code {c}"),
            None => "killed".to_string(),
        },
        tail.join("\n    "),
        host.role
    )
}

/// Runs the client on this machine, in its own process group, bounded.
async fn local_client(cmd: &str, timeout: Duration) -> Result<(String, String, Option<i32>)> {
    match crate::exec::local::shell(cmd, timeout, "the workload client").await? {
        Some(out) => Ok((
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code(),
        )),
        None => Ok((
            String::new(),
            format!("timed out after {}s", timeout.as_secs()),
            Some(124),
        )),
    }
}

/// Converts one repeat's recording on the host (`perf script`, compressed there when
/// it has zstd) and appends it to `perf.script.zst` as one more zstd frame; appends
/// its `perf stat` counts; then frees the recording on the host.
async fn download_repeat(cx: &RunCtx<'_>, s: &Side<'_>, rep: u32) -> Result<()> {
    let plan = cx.plan;
    let role = s.host.role;
    let hd = cx.rd.host(role);
    let cmd_t = Duration::from_secs(plan.timeouts.command);
    cx.progress.step(
        role.as_str(),
        &format!(
            "repeat {rep}/{}: perf script → perf.script.zst",
            plan.capture.repeat
        ),
    );
    let part = hd.perf_script_part(rep);
    s.remote
        .run_to_file(
            &format!("perf-script-{rep}"),
            &scripts::script_script(&s.work, rep, s.remote_zstd),
            &part,
            cmd_t * 4,
        )
        .await?;
    let dest = hd.perf_script_zst();
    let (part2, dest2, compress) = (part.clone(), dest.clone(), !s.remote_zstd);
    tokio::task::spawn_blocking(move || append_frame(&part2, &dest2, compress))
        .await
        .context("appending the profile")??;
    std::fs::remove_file(&part).ok();
    if plan.capture.stat {
        let out = s
            .remote
            .run_unchecked(
                &format!("perf-stat-{rep}"),
                &scripts::stat_collect_script(&s.work, rep),
                cmd_t,
            )
            .await?;
        let path = hd.perf_stat();
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&out.stdout);
        write_atomic(&path, text.as_bytes())?;
    }
    // The recording is in the run directory now; a long run must not fill the host.
    let _ = s
        .remote
        .run_unchecked(
            &format!("free-{rep}"),
            &format!("rm -f {}/perf-{rep}.data", quote(&s.work)),
            cmd_t,
        )
        .await;
    if rep == plan.capture.repeat {
        let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        cx.progress.done(
            role.as_str(),
            &format!("captured ({} KiB compressed)", size / 1024),
        );
    }
    Ok(())
}

/// Appends `part` to `dest` (compressing it first when `compress`); on an error the
/// file is cut back to its old length, so it always holds whole frames.
fn append_frame(part: &Path, dest: &Path, compress: bool) -> Result<()> {
    use std::io::{Seek, Write};
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dest)
        .with_context(|| format!("cannot write {}", dest.display()))?;
    let before = out.seek(std::io::SeekFrom::End(0))?;
    let res = (|| -> std::io::Result<()> {
        let mut input = std::fs::File::open(part)?;
        if compress {
            zstd::stream::copy_encode(&mut input, &mut out, 3)?;
        } else {
            std::io::copy(&mut input, &mut out)?;
        }
        out.flush()
    })();
    if let Err(e) = res {
        let _ = out.set_len(before);
        return Err(e).with_context(|| format!("cannot write {}", dest.display()));
    }
    Ok(())
}
