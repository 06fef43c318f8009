//! `kdelta run`: provision → connect → deploy → facts → workload + capture →
//! download → teardown → analyze → report, each phase recorded in `run.json`.
//!
//! Invariants:
//! - teardown runs whatever happened before (error, Ctrl-C, SIGTERM): the pipeline
//!   runs inside a `select!` with the signals, and teardown reads only the shared
//!   [`Ledger`] that provisioning fills *before* it creates anything;
//! - every remote command is bounded on the host itself;
//! - hosts on one machine (lab) are captured one after the other, repeats
//!   interleaved and counterbalanced (A B B A A B …) so drift and warm-up fall on both.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use minijinja::Value;

use crate::analyze::{self, AnalyzeOptions};
use crate::attribute::KnowledgeBase;
use crate::capture;
use crate::facts;
use crate::fold::FoldOptions;
use crate::model::*;
use crate::playbook::{ClientFrom, DeployStep, HostSpec, Plan, Provider};
use crate::progress::Progress;
use crate::provision::{self, Host, LabState};
use crate::remote::Remote;
use crate::rundir::{self, RunDir, ROLES};

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub out: PathBuf,
    pub quiet: bool,
    pub analysis: AnalysisSetup,
    pub command_line: Vec<String>,
}

/// What the analysis reads besides the captures.
#[derive(Clone, Debug, Default)]
pub struct AnalysisSetup {
    /// Knowledge base file; the built-in one when absent.
    pub kb: Option<PathBuf>,
    /// Kernel source tree for mapping options to functions.
    pub kernel_src: Option<PathBuf>,
}

impl AnalysisSetup {
    pub fn load(&self) -> Result<(KnowledgeBase, AnalyzeOptions)> {
        let kb = match &self.kb {
            Some(p) => KnowledgeBase::load(p)?,
            None => KnowledgeBase::builtin()?,
        };
        let opts = AnalyzeOptions {
            max_functions: 300,
            kernel_src: self.kernel_src.clone(),
            ..Default::default()
        };
        Ok((kb, opts))
    }
}

/// What teardown must undo; filled before resources are created.
#[derive(Default)]
pub struct Ledger {
    pub lab: Option<LabState>,
    pub hosts: Vec<Host>,
    /// Roles kdelta connected to: only those can have anything to clean up.
    pub connected: Vec<String>,
    pub work: Option<String>,
    /// Folder of the SSH control sockets of this run.
    pub control_dir: Option<PathBuf>,
    /// QEMU guests of this run, killed at teardown.
    pub vms: Arc<Mutex<Vec<crate::qemu::Vm>>>,
    /// Per-run keys and initramfs images of the qemu guests.
    pub qemu_dir: Option<PathBuf>,
    /// `hosts/<role>/teardown.json` of hosts made by a `command` provider's `up`.
    pub downs: Vec<PathBuf>,
}

pub struct Outcome {
    pub dir: PathBuf,
    pub summary: Option<Summary>,
    pub error: Option<anyhow::Error>,
    pub interrupted: bool,
}

/// run.json, kept up to date as phases pass.
struct RunLog {
    path: PathBuf,
    rec: Mutex<RunRecord>,
    /// When each failed phase failed, to relabel those a signal caused.
    failed_at: Mutex<Vec<(usize, Instant)>>,
}

/// Space set aside next to run.json, given back when the disk fills up, so that the
/// run's last state (failed, and why) can still be written.
const RESERVE: &str = ".run.json.reserve";
const RESERVE_BYTES: usize = 64 * 1024;

impl RunLog {
    fn new(path: PathBuf, rec: RunRecord) -> RunLog {
        if let Some(dir) = path.parent() {
            // Real blocks (zeros written), not a sparse file: they must be there to free.
            let _ = std::fs::write(dir.join(RESERVE), vec![0u8; RESERVE_BYTES]);
        }
        RunLog {
            path,
            rec: Mutex::new(rec),
            failed_at: Mutex::new(Vec::new()),
        }
    }
    fn save(&self) {
        if let Ok(r) = self.rec.lock() {
            let _ = rundir::write_json(&self.path, &*r);
        }
    }
    /// The last save: if the disk is full, the reserve is given up for it (only
    /// now, when nothing else writes into the run directory any more).
    fn save_last(&self) {
        if let Ok(r) = self.rec.lock() {
            if rundir::write_json(&self.path, &*r).is_err()
                && std::fs::remove_file(self.path.with_file_name(RESERVE)).is_ok()
            {
                let _ = rundir::write_json(&self.path, &*r);
            }
        }
    }
    fn begin(&self, name: &str, host: Option<&str>) -> (usize, Instant) {
        let idx = match self.rec.lock() {
            Ok(mut r) => {
                r.phases.push(PhaseRecord {
                    name: name.into(),
                    host: host.map(str::to_string),
                    status: PhaseStatus::Running,
                    started: rundir::utc_now(),
                    seconds: 0.0,
                    error: None,
                });
                r.phases.len() - 1
            }
            Err(_) => 0,
        };
        self.save();
        (idx, Instant::now())
    }
    fn end(&self, (idx, t): (usize, Instant), res: &Result<()>) {
        if let Ok(mut r) = self.rec.lock() {
            if let Some(p) = r.phases.get_mut(idx) {
                p.seconds = t.elapsed().as_secs_f64();
                match res {
                    Ok(()) => p.status = PhaseStatus::Ok,
                    Err(e) => {
                        p.status = PhaseStatus::Failed;
                        p.error = Some(format!("{e:#}"));
                        if let Ok(mut f) = self.failed_at.lock() {
                            f.push((idx, Instant::now()));
                        }
                    }
                }
            }
        }
        self.save();
    }
    /// Phases that failed in the last `within`: a signal that reached kdelta's
    /// children too made them fail; they were interrupted.
    fn relabel_recent_failures(&self, within: Duration) {
        let recent: Vec<usize> = match self.failed_at.lock() {
            Ok(f) => f
                .iter()
                .filter(|(_, t)| t.elapsed() <= within)
                .map(|(i, _)| *i)
                .collect(),
            Err(_) => return,
        };
        if let Ok(mut r) = self.rec.lock() {
            for i in recent {
                if let Some(p) = r.phases.get_mut(i) {
                    p.status = PhaseStatus::Interrupted;
                }
            }
        }
        self.save();
    }
    /// Phases still running when the pipeline was dropped (signal, whole-run
    /// timeout) end with `status` and, if given, the reason.
    fn cut_running(&self, status: PhaseStatus, why: Option<&str>) {
        if let Ok(mut r) = self.rec.lock() {
            for p in r
                .phases
                .iter_mut()
                .filter(|p| p.status == PhaseStatus::Running)
            {
                p.status = status;
                p.error = why.map(str::to_string);
            }
        }
        self.save();
    }
    fn finish(&self, status: PhaseStatus, error: Option<String>) {
        if let Ok(mut r) = self.rec.lock() {
            r.status = status;
            r.error = error;
            r.finished = Some(rundir::utc_now());
        }
        self.save_last();
    }
    fn snapshot(&self) -> Option<serde_json::Value> {
        self.rec
            .lock()
            .ok()
            .and_then(|r| serde_json::to_value(&*r).ok())
    }
}

async fn phase<F, T>(log: &RunLog, name: &str, host: Option<&str>, f: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let h = log.begin(name, host);
    let r = f.await;
    let unit: Result<()> = match &r {
        Ok(_) => Ok(()),
        Err(e) => Err(anyhow!("{e:#}")),
    };
    log.end(h, &unit);
    r
}

/// Runs a playbook end to end. Never returns before teardown has run.
pub async fn run(plan: Plan, opts: RunOptions) -> Result<Outcome> {
    let rd = RunDir::create(&opts.out, &plan.name)?;
    rundir::write_atomic(&rd.playbook(), plan.text.as_bytes())?;
    let log = Arc::new(RunLog::new(
        rd.run_json(),
        RunRecord {
            tool: "kdelta".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            playbook: plan.file.display().to_string(),
            command: opts.command_line.clone(),
            started: rundir::utc_now(),
            finished: None,
            status: PhaseStatus::Running,
            error: None,
            phases: vec![],
            resumes: vec![],
        },
    ));
    log.save();
    execute(plan, rd, log, &ROLES, opts).await
}

/// The roles of a run directory whose capture finished: their last download phase
/// (that of the last repeat) passed and their profile and metrics are there.
pub fn completed_roles(dir: &Path, rec: &RunRecord) -> Vec<&'static str> {
    ROLES
        .into_iter()
        .filter(|role| {
            let downloaded = rec
                .phases
                .iter()
                .rev()
                .find(|p| p.name.starts_with("download ") && p.host.as_deref() == Some(*role));
            downloaded.is_some_and(|p| p.status == PhaseStatus::Ok)
                && dir
                    .join("hosts")
                    .join(role)
                    .join("perf.script.zst")
                    .is_file()
                && dir.join("hosts").join(role).join("metrics.json").is_file()
        })
        .collect()
}

/// Reads a run directory's run.json and the playbook it ran, checking that the
/// playbook did not change since.
pub fn load_for_resume(dir: &Path, playbook: Option<&Path>) -> Result<(Plan, RunRecord)> {
    let rd = RunDir::open(dir);
    let text = std::fs::read_to_string(rd.run_json()).with_context(|| {
        format!(
            "{}: not a run directory (no readable run.json)",
            dir.display()
        )
    })?;
    let rec: RunRecord = serde_json::from_str(&text)
        .with_context(|| format!("{}: run.json is not valid", rd.run_json().display()))?;
    let path = playbook
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(&rec.playbook));
    let plan = crate::playbook::load(&path).with_context(|| {
        format!(
            "resume needs the playbook the run used ({}); give its path: kdelta run PLAYBOOK --resume {}",
            rec.playbook,
            dir.display()
        )
    })?;
    let copy = std::fs::read_to_string(rd.playbook()).unwrap_or_default();
    if copy != plan.text {
        bail!(
            "{} differs from the copy the run kept ({}): a resumed run must capture the same thing; start a new run instead",
            path.display(),
            rd.playbook().display()
        );
    }
    Ok((plan, rec))
}

/// `kdelta run --resume DIR`: captures again the roles whose capture did not
/// finish (their partial files are kept aside), then analyses the run.
/// `plan` and `rec` come from [`load_for_resume`].
pub async fn resume(
    dir: &Path,
    plan: Plan,
    mut rec: RunRecord,
    opts: RunOptions,
) -> Result<Outcome> {
    let done = completed_roles(dir, &rec);
    let todo: Vec<&'static str> = ROLES.into_iter().filter(|r| !done.contains(r)).collect();
    let rd = RunDir::open(dir);
    for role in &todo {
        let from = rd.host(role);
        if from.exists() {
            let mut n = 1;
            while dir
                .join("hosts")
                .join(format!("{role}.attempt-{n}"))
                .exists()
            {
                n += 1;
            }
            let to = dir.join("hosts").join(format!("{role}.attempt-{n}"));
            std::fs::rename(&from, &to).with_context(|| {
                format!("cannot keep {} aside as {}", from.display(), to.display())
            })?;
        }
        rd.ensure_host_dir(role)?;
    }
    rec.resumes.push(ResumeRecord {
        at: rundir::utc_now(),
        command: opts.command_line.clone(),
        recaptured: todo.iter().map(|s| s.to_string()).collect(),
    });
    rec.status = PhaseStatus::Running;
    rec.error = None;
    rec.finished = None;
    let log = Arc::new(RunLog::new(rd.run_json(), rec));
    log.save();
    execute(plan, rd, log, &todo, opts).await
}

/// Provisions, captures `roles`, tears down, analyses: the body of `run` and `resume`.
async fn execute(
    plan: Plan,
    rd: RunDir,
    log: Arc<RunLog>,
    roles: &[&'static str],
    opts: RunOptions,
) -> Result<Outcome> {
    let progress = Arc::new(Progress::new(opts.quiet));
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    use tokio::signal::unix::{signal, SignalKind};
    // Both listeners exist from here on, so a signal that arrives while the pipeline
    // is failing is still seen below.
    let mut sigint =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let mut sigterm =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let run_timeout = Duration::from_secs(plan.timeouts.run);
    let pipeline = pipeline(&plan, &rd, &log, &progress, &ledger, roles);
    let (mut result, mut interrupted) = tokio::select! {
        biased;
        _ = sigint.recv() => (Err(anyhow!("interrupted (Ctrl-C)")), true),
        _ = sigterm.recv() => (Err(anyhow!("interrupted (SIGTERM)")), true),
        r = tokio::time::timeout(run_timeout, pipeline) => match r {
            Ok(r) => (r, false),
            Err(_) => (Err(anyhow!("the whole run took longer than timeouts.run = {}s", plan.timeouts.run)), false),
        },
    };
    if result.is_err() && !interrupted {
        // A Ctrl-C reaches the whole process group: a local child (an `up`, the
        // workload client) can die of it and fail the pipeline before kdelta's own
        // signal is read. That failure is the interruption, not a fault of the host.
        let late = tokio::select! {
            _ = sigint.recv() => Some("interrupted (Ctrl-C)"),
            _ = sigterm.recv() => Some("interrupted (SIGTERM)"),
            _ = tokio::time::sleep(Duration::from_millis(300)) => None,
        };
        if let Some(why) = late {
            result = Err(anyhow!(why));
            interrupted = true;
            log.relabel_recent_failures(Duration::from_secs(1));
        }
    }
    if let Err(e) = &result {
        // Whatever ran when the pipeline was dropped did not finish.
        log.cut_running(
            if interrupted {
                PhaseStatus::Interrupted
            } else {
                PhaseStatus::Failed
            },
            Some(&format!("{e:#}")),
        );
    }
    if interrupted {
        progress.println("kdelta: interrupted, tearing down …");
    }
    // Teardown: always, and itself bounded.
    let td = log.begin("teardown", None);
    let errs = tokio::time::timeout(Duration::from_secs(60), teardown(&ledger, &progress)).await;
    let td_res: Result<()> = match errs {
        Ok(e) if e.is_empty() => Ok(()),
        Ok(e) => Err(anyhow!(e.join("; "))),
        Err(_) => Err(anyhow!("teardown did not finish in 60s")),
    };
    if let Err(e) = &td_res {
        progress.println(&format!("kdelta: teardown problems: {e:#}"));
    }
    log.end(td, &td_res);

    let mut outcome = Outcome {
        dir: rd.root().to_path_buf(),
        summary: None,
        error: None,
        interrupted,
    };
    match result {
        Ok(()) => {
            let res = phase(&log, "analyze", None, async {
                progress.step("run", "analysing");
                analyze_run_dir(
                    rd.root(),
                    &opts.analysis,
                    &opts.command_line,
                    log.snapshot(),
                )
            })
            .await;
            match res {
                Ok(s) => {
                    log.finish(PhaseStatus::Ok, None);
                    // Re-render with the final run.json (phase timings complete).
                    let mut s2 = s.clone();
                    s2.run = log.snapshot();
                    let _ = crate::report::write_all(rd.root(), &s2, &opts.command_line.join(" "));
                    outcome.summary = Some(s2);
                }
                Err(e) => {
                    log.finish(PhaseStatus::Failed, Some(format!("{e:#}")));
                    outcome.error = Some(e);
                }
            }
        }
        Err(e) => {
            log.finish(
                if interrupted {
                    PhaseStatus::Interrupted
                } else {
                    PhaseStatus::Failed
                },
                Some(format!("{e:#}")),
            );
            outcome.error = Some(e);
        }
    }
    // run.json has its last state: the space set aside for it is not needed any more.
    let _ = std::fs::remove_file(rd.root().join(RESERVE));
    progress.finish();
    Ok(outcome)
}

/// Analyses a run directory (also after an interrupted run) and writes the report.
pub fn analyze_run_dir(
    dir: &Path,
    setup: &AnalysisSetup,
    command_line: &[String],
    run: Option<serde_json::Value>,
) -> Result<Summary> {
    let (b, c) = analyze::run_dir_sides(dir)?;
    let (kb, opts) = setup.load()?;
    let fo = FoldOptions::default();
    let names = host_names(dir);
    let base = analyze::load_capture(&b, &names.0, &fo)?;
    let cand = analyze::load_capture(&c, &names.1, &fo)?;
    let mut summary = analyze::analyze(&base, &cand, &kb, &opts)?;
    summary.run = run.or_else(|| {
        std::fs::read_to_string(dir.join("run.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    });
    let resumes: Vec<ResumeRecord> = summary
        .run
        .as_ref()
        .and_then(|r| r.get("resumes").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    for r in resumes.iter().filter(|r| r.recaptured.len() == 1) {
        summary.caveats.push(format!(
            "resumed run: the {} was captured again at {}, later than the other side: drift between the two times falls on one side only",
            r.recaptured[0], r.at
        ));
    }
    let status = summary
        .run
        .as_ref()
        .and_then(|r| r.get("status"))
        .and_then(|s| s.as_str())
        .unwrap_or("");
    if status == "interrupted" || status == "failed" {
        summary.caveats.insert(
            0,
            format!(
                "the run was {status} before it finished: this analysis uses the repeats it captured ({} on the baseline, {} on the candidate)",
                base.profile.repeats, cand.profile.repeats
            ),
        );
    }
    write_folded(dir, &base, &cand)?;
    crate::report::write_all(dir, &summary, &command_line.join(" "))?;
    Ok(summary)
}

pub fn write_folded(out: &Path, base: &analyze::Capture, cand: &analyze::Capture) -> Result<()> {
    for (c, name) in [
        (base, crate::report::BASELINE_FOLDED),
        (cand, crate::report::CANDIDATE_FOLDED),
    ] {
        let mut buf = Vec::new();
        c.profile.write_folded(&mut buf, true)?;
        rundir::write_atomic(&out.join(name), &buf)?;
    }
    Ok(())
}

fn host_names(dir: &Path) -> (String, String) {
    let rec: Option<HostsRecord> = std::fs::read_to_string(dir.join("hosts.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let name = |role: &str| {
        rec.as_ref()
            .and_then(|r| r.hosts.iter().find(|h| h.role == role))
            // The report adds the role: the name says which machine.
            .map(|h| match &h.label {
                Some(l) => l.clone(),
                None if h.provider == "qemu" => "qemu guest".to_string(),
                None => h.destination.clone(),
            })
            .unwrap_or_else(|| role.to_string())
    };
    (name("baseline"), name("candidate"))
}

async fn teardown(ledger: &Mutex<Ledger>, progress: &Progress) -> Vec<String> {
    let (lab, hosts, connected, work, control, vms, qemu_dir, downs) = match ledger.lock() {
        Ok(mut l) => (
            l.lab.take(),
            std::mem::take(&mut l.hosts),
            std::mem::take(&mut l.connected),
            l.work.take(),
            l.control_dir.take(),
            l.vms.clone(),
            l.qemu_dir.take(),
            std::mem::take(&mut l.downs),
        ),
        Err(_) => return vec!["ledger poisoned".into()],
    };
    let mut errors = Vec::new();
    // QEMU guests: killed by PID and reaped; nothing in them needs saving.
    if let Ok(mut vms) = vms.lock() {
        for mut vm in vms.drain(..) {
            progress.step(&vm.role, "stopping the guest");
            if !vm.kill() {
                errors.push(format!(
                    "{}: QEMU (pid {}) could not be reaped",
                    vm.role,
                    vm.child.id()
                ));
            }
        }
    }
    if let Some(d) = qemu_dir {
        let _ = std::fs::remove_dir_all(d);
    }
    // Remote work folders on hosts we do not own: stop what we started, remove
    // files. Only on hosts we reached (nothing ran on the others), both at once,
    // with one short connection attempt each.
    if let Some(work) = &work {
        let cleanups = hosts
            .iter()
            .filter(|h| (h.provider == "ssh" || h.provider == "command") && connected.contains(&h.role))
            .map(|h| async move {
                progress.step(&h.role, "cleaning up");
                let tmp = std::env::temp_dir().join("kdelta-teardown");
                let _ = std::fs::create_dir_all(&tmp);
                let mut spec = h.connect.clone();
                spec.retry_for = Duration::from_secs(10);
                match Remote::connect(&spec, &tmp).await {
                    Ok(r) => {
                        let w = format!("{work}-{}", h.role);
                        let script = format!(
                            "{}\ncd {q} 2>/dev/null && for f in perf.pid stat.pid server.pid; do [ -f $f ] && kill -s KILL -- -$(cat $f) 2>/dev/null; done; cd /; rm -rf {q}",
                            crate::remote::stop_tagged(&w),
                            q = crate::shell::quote(&w)
                        );
                        let res = r.run("cleanup", &script, Duration::from_secs(30)).await;
                        r.close().await;
                        res.err().map(|e| format!("{e:#}"))
                    }
                    Err(e) => Some(format!("{}: cleanup skipped: {e:#}", h.role)),
                }
            });
        errors.extend(futures_join_all(cleanups).await.into_iter().flatten());
    }
    // Hosts made by `up`: their `down`, always, both at once (after the cleanup
    // above, for hosts that `down` only stops).
    let removals = downs.iter().map(|p| async move {
        progress.step("teardown", &format!("down: {}", p.display()));
        crate::command::run_down(p)
            .await
            .err()
            .map(|e| format!("{e:#}"))
    });
    errors.extend(futures_join_all(removals).await.into_iter().flatten());
    if let Some(lab) = lab {
        progress.step("lab", "tearing down");
        // Lab hosts share this machine's filesystem: their work folder is here.
        if let Some(work) = &work {
            if work.starts_with("/tmp/kdelta-run-") {
                for role in ROLES {
                    let _ = std::fs::remove_dir_all(format!("{work}-{role}"));
                }
            }
        }
        let e = tokio::task::spawn_blocking(move || provision::lab_down(&lab))
            .await
            .unwrap_or_else(|e| vec![format!("lab teardown panicked: {e}")]);
        errors.extend(e);
        progress.done("lab", "torn down");
    }
    if let Some(c) = control {
        let _ = std::fs::remove_dir_all(c);
    }
    errors
}

fn template_ctx(plan: &Plan, host: &Host, work: &str, repeat: u32) -> Value {
    let mut map: std::collections::BTreeMap<String, Value> = plan
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), Value::from_serialize(v)))
        .collect();
    map.insert(
        "host".into(),
        minijinja::context! { address => host.address.clone(), role => host.role.clone(), provider => host.provider.clone() },
    );
    map.insert("role".into(), Value::from(host.role.clone()));
    map.insert("work".into(), Value::from(work.to_string()));
    map.insert("files".into(), Value::from(format!("{work}/files")));
    map.insert("repeat".into(), Value::from(repeat));
    Value::from_serialize(&map)
}

/// Builds (or takes from the cache) each guest's kernel, builds its initramfs with
/// per-run keys, boots it and pins its host key. Kernels are built one after the
/// other (they share the CPUs); a guest is in the ledger from the moment QEMU runs.
async fn provision_guests(
    plan: &Plan,
    guests: &[(&HostSpec, &crate::playbook::QemuSpec)],
    rd: &RunDir,
    ledger: &Mutex<Ledger>,
    control: &Path,
    progress: &Progress,
) -> Result<Vec<Host>> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("kdq-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let vms = match ledger.lock() {
        Ok(mut l) => {
            l.qemu_dir = Some(dir.clone());
            l.vms.clone()
        }
        Err(_) => bail!("ledger poisoned"),
    };
    let key = dir.join("id_ed25519");
    let st = tokio::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "kdelta-run", "-f"])
        .arg(&key)
        .status()
        .await
        .context("ssh-keygen not found: install openssh-client")?;
    if !st.success() {
        bail!("ssh-keygen failed");
    }
    let pubkey = std::fs::read_to_string(dir.join("id_ed25519.pub"))?;
    let known_hosts = dir.join("known_hosts");
    let mut kh = String::new();
    let mut hosts = Vec::new();
    let mut kernels = Vec::new();
    for (spec, q) in guests {
        rd.ensure_host_dir(&spec.role)?;
        let log = rd.host_file(&spec.role, "kernel-build.log");
        let k = crate::qemu::prepare_kernel(q, &spec.role, &log, progress)
            .await
            .with_context(|| format!("{}: preparing the kernel", spec.role))?;
        rundir::write_json(&rd.host_file(&spec.role, "kernel.json"), &k)?;
        kernels.push(k);
    }
    for ((spec, q), k) in guests.iter().zip(&kernels) {
        progress.step(&spec.role, "building the initramfs");
        let (cpio, host_line) = {
            let (dir, role, tools, pubkey, k) = (
                dir.clone(),
                spec.role.clone(),
                q.tools.clone(),
                pubkey.clone(),
                k.clone(),
            );
            tokio::task::spawn_blocking(move || {
                crate::qemu::build_initramfs(&dir, &role, &tools, &pubkey, &k)
            })
            .await??
        };
        progress.step(&spec.role, "booting the guest");
        let console = rd.host_file(&spec.role, "console.log");
        let started = Instant::now();
        let port = crate::qemu::boot(
            q,
            &spec.role,
            k,
            &cpio,
            &console,
            &vms,
            Duration::from_secs(300),
        )
        .await?;
        kh.push_str(&format!("[127.0.0.1]:{port} {host_line}\n"));
        std::fs::write(&known_hosts, &kh)?;
        progress.done(
            &spec.role,
            &format!(
                "guest up in {:.1}s (ssh on 127.0.0.1:{port})",
                started.elapsed().as_secs_f64()
            ),
        );
        hosts.push(Host {
            role: spec.role.clone(),
            provider: "qemu".into(),
            address: "127.0.0.1".into(),
            connect: crate::qemu::connect_spec(
                &spec.role,
                port,
                &key,
                &known_hosts,
                control,
                plan.timeouts.connect,
            ),
        });
    }
    Ok(hosts)
}

/// Makes a host with the playbook's `up`, records its `down` in the run directory
/// before anything else can fail, and returns how to reach it.
async fn provision_command(
    plan: &Plan,
    spec: &HostSpec,
    c: &crate::playbook::CommandSpec,
    rd: &RunDir,
    ledger: &Mutex<Ledger>,
    control: &Path,
    progress: &Progress,
) -> Result<Host> {
    use crate::command::{parse_up, run_local, save, PendingTeardown};
    use crate::playbook::KnownHostsPolicy;
    let role = spec.role.as_str();
    rd.ensure_host_dir(role)?;
    let mut vars: std::collections::BTreeMap<String, Value> = plan
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), Value::from_serialize(v)))
        .collect();
    vars.insert("role".into(), Value::from(role));
    let up = crate::playbook::render(&c.up, &Value::from_serialize(&vars))
        .with_context(|| format!("hosts.{role}.up: template"))?;
    progress.step(role, "up: making the host");
    let bound = Duration::from_secs(plan.timeouts.command.max(600));
    let out = run_local(&up, bound, &rd.logs(role).join("up.log"))
        .await
        .with_context(|| format!("{role}: up"))?;
    let u = parse_up(&out).with_context(|| {
        format!(
            "{role}: up (if it made a host, remove it by hand: its output is in {})",
            rd.logs(role).join("up.log").display()
        )
    })?;
    vars.insert("id".into(), Value::from(u.id()));
    vars.insert("address".into(), Value::from(u.address.clone()));
    let down = crate::playbook::render(&c.down, &Value::from_serialize(&vars))
        .with_context(|| format!("hosts.{role}.down: template"))?;
    let record = rd.host_file(role, "teardown.json");
    save(
        &record,
        &PendingTeardown {
            role: role.into(),
            id: u.id(),
            down,
            state: "pending".into(),
            updated: rundir::utc_now(),
        },
    )?;
    if let Ok(mut l) = ledger.lock() {
        l.downs.push(record);
    }
    progress.done(role, &format!("up: {} ({})", u.id(), u.address));
    let (known_hosts_file, accept_new) = match (&u.known_hosts, &c.known_hosts) {
        (Some(f), _) => (Some(crate::playbook::expand_home(f)), false),
        (None, KnownHostsPolicy::File(f)) => (Some(f.clone()), false),
        (None, KnownHostsPolicy::AcceptNew) => (None, true),
        (None, KnownHostsPolicy::Strict) => (None, false),
    };
    Ok(Host {
        role: role.into(),
        provider: "command".into(),
        address: u.address.clone(),
        connect: crate::remote::ConnectSpec {
            role: role.into(),
            destination: u.address.clone(),
            port: u.port,
            user: u.user.clone(),
            keyfile: u.identity_file.as_deref().map(crate::playbook::expand_home),
            known_hosts_file,
            accept_new,
            control_dir: control.to_path_buf(),
            connect_timeout: Duration::from_secs(plan.timeouts.connect),
            // A new machine takes a while to boot: wait longer than for a known one.
            retry_for: Duration::from_secs(plan.timeouts.connect * 6),
        },
    })
}

/// Provisions both hosts (lab first) and records in the ledger what exists, also when
/// building the lab failed half-way. Hosts come back baseline first.
async fn provision_hosts(
    plan: &Plan,
    ledger: &Mutex<Ledger>,
    control: &Path,
    progress: &Progress,
    roles: &[&str],
    rd: Option<&RunDir>,
) -> Result<Vec<Host>> {
    let mut lab_specs = plan.lab_specs();
    lab_specs.retain(|s| roles.contains(&s.role.as_str()));
    let mut hosts = Vec::new();
    if !lab_specs.is_empty() {
        progress.step("lab", "creating namespaces and sshd");
        let mut state = LabState::default();
        let res = provision::lab_up(&lab_specs, &mut state).await;
        if let Ok(mut l) = ledger.lock() {
            l.lab = Some(state);
        }
        hosts.extend(res?);
        progress.done("lab", "up");
    }
    for s in [&plan.baseline, &plan.candidate] {
        if matches!(s.provider, Provider::Ssh(_)) && roles.contains(&s.role.as_str()) {
            hosts.push(provision::ssh_host(s, control, plan.timeouts.connect)?);
        }
    }
    for s in [&plan.baseline, &plan.candidate] {
        if let (Provider::Command(c), true) = (&s.provider, roles.contains(&s.role.as_str())) {
            let Some(rd) = rd else {
                bail!("command hosts are made by `kdelta run` and `kdelta gate` only");
            };
            hosts.push(provision_command(plan, s, c, rd, ledger, control, progress).await?);
        }
    }
    let guests: Vec<(&HostSpec, &crate::playbook::QemuSpec)> = [&plan.baseline, &plan.candidate]
        .into_iter()
        .filter(|s| roles.contains(&s.role.as_str()))
        .filter_map(|s| match &s.provider {
            Provider::Qemu(q) => Some((s, q)),
            _ => None,
        })
        .collect();
    if !guests.is_empty() {
        let Some(rd) = rd else {
            bail!("qemu hosts are provisioned by `kdelta run` and `kdelta gate` only");
        };
        hosts.extend(provision_guests(plan, &guests, rd, ledger, control, progress).await?);
    }
    hosts.sort_by_key(|h| if h.role == "baseline" { 0 } else { 1 });
    if let Ok(mut l) = ledger.lock() {
        l.hosts = hosts.clone();
    }
    Ok(hosts)
}

async fn pipeline(
    plan: &Plan,
    rd: &RunDir,
    log: &RunLog,
    progress: &Progress,
    ledger: &Mutex<Ledger>,
    roles: &[&str],
) -> Result<()> {
    if roles.is_empty() {
        return Ok(()); // a resumed run whose captures were all complete
    }
    let run_id = rd
        .root()
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    // One work folder per role: lab hosts share this machine's filesystem. The
    // random part keeps two runs apart that started in the same second with the
    // same playbook (from two output folders, or two machines on one host).
    let nonce = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish() as u32
    };
    let work = format!(
        "/tmp/kdelta-run-{}-{nonce:08x}",
        &run_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
    );
    if let Ok(mut l) = ledger.lock() {
        l.work = Some(work.clone());
    }

    // 1. Provision.
    let control = std::env::temp_dir().join(format!("kds-{}", std::process::id()));
    if let Ok(mut l) = ledger.lock() {
        l.control_dir = Some(control.clone());
    }
    let hosts: Vec<Host> = phase(log, "provision", None, async {
        std::fs::create_dir_all(&control)?;
        let hosts = provision_hosts(plan, ledger, &control, progress, roles, Some(rd)).await?;
        // On a resumed run, keep the records of the roles not captured again.
        let earlier: Vec<HostRecord> = std::fs::read_to_string(rd.hosts_json())
            .ok()
            .and_then(|t| serde_json::from_str::<HostsRecord>(&t).ok())
            .map(|r| r.hosts)
            .unwrap_or_default()
            .into_iter()
            .filter(|h| !roles.contains(&h.role.as_str()))
            .collect();
        let rec = HostsRecord {
            hosts: earlier
                .into_iter()
                .chain(hosts.iter().map(|h| HostRecord {
                    role: h.role.clone(),
                    label: plan.host(&h.role).label.clone(),
                    provider: h.provider.clone(),
                    destination: h.connect.destination.clone(),
                    address: h.address.clone(),
                    port: h.connect.port.unwrap_or(22),
                    user: h.connect.user.clone(),
                    work_folder: format!("{work}-{}", h.role),
                    teardown: Default::default(),
                }))
                .collect(),
        };
        rundir::write_json(&rd.hosts_json(), &rec)?;
        Ok(hosts)
    })
    .await?;

    // 2. Connect, both at once.
    let remotes: Vec<Remote> = phase(log, "connect", None, async {
        let futs = hosts.iter().map(|h| {
            progress.step(&h.role, &format!("connecting to {}", h.connect.destination));
            let logs = rd.logs(&h.role);
            let tag = format!("{work}-{}", h.role);
            async move {
                let mut r = Remote::connect(&h.connect, &logs).await?;
                r.tag_commands(&tag);
                if let Ok(mut l) = ledger.lock() {
                    l.connected.push(h.role.clone());
                }
                Ok(r)
            }
        });
        let rs = futures_join_all(futs).await;
        rs.into_iter().collect::<Result<Vec<_>>>()
    })
    .await?;
    let result = with_remotes(plan, rd, log, progress, &hosts, &remotes, &work).await;
    for r in remotes {
        r.close().await;
    }
    result
}

/// `join_all` without the futures crate.
async fn futures_join_all<F, T>(futs: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let mut set = Vec::new();
    for f in futs {
        set.push(f);
    }
    let mut out = Vec::with_capacity(set.len());
    // Two hosts at most: join them pairwise.
    let mut it = set.into_iter();
    while let Some(a) = it.next() {
        match it.next() {
            Some(b) => {
                let (x, y) = tokio::join!(a, b);
                out.push(x);
                out.push(y);
            }
            None => out.push(a.await),
        }
    }
    out
}

async fn with_remotes(
    plan: &Plan,
    rd: &RunDir,
    log: &RunLog,
    progress: &Progress,
    hosts: &[Host],
    remotes: &[Remote],
    work: &str,
) -> Result<()> {
    let cmd_t = Duration::from_secs(plan.timeouts.command);
    let works: Vec<String> = hosts.iter().map(|h| format!("{work}-{}", h.role)).collect();
    let works = &works;

    // 3. Deploy, both at once.
    let deploy_futs = hosts.iter().zip(remotes).enumerate().map(|(i, (h, r))| {
        let work = works[i].as_str();
        phase(log, "deploy", Some(&h.role), async move {
            progress.step(&h.role, "deploying");
            let ctx = template_ctx(plan, h, work, 0);
            r.run(
                "workdir",
                &format!("mkdir -p {}/files", crate::shell::quote(work)),
                cmd_t,
            )
            .await?;
            for (i, step) in plan.deploy.iter().enumerate() {
                match step {
                    DeployStep::Upload { from, to } => {
                        let to = crate::playbook::render(to, &ctx)?;
                        let to = to.trim_matches('\'').to_string();
                        r.upload_dir(from, &to, cmd_t).await?;
                    }
                    DeployStep::Run { command, timeout } => {
                        let c = crate::playbook::render(command, &ctx)
                            .with_context(|| format!("deploy[{i}].run: template"))?;
                        r.run(&format!("deploy-{i}"), &c, Duration::from_secs(*timeout))
                            .await?;
                    }
                }
            }
            let spec = plan.host(&h.role);
            for (i, s) in spec.setup.iter().enumerate() {
                let c = crate::playbook::render(s, &ctx)
                    .with_context(|| format!("hosts.{}.setup[{i}]: template", h.role))?;
                r.run(&format!("setup-{i}"), &c, cmd_t).await?;
            }
            Ok(())
        })
    });
    futures_join_all(deploy_futs)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;

    // 4. Facts (after setup, so runtime changes made there are seen), kernel config, preflight.
    let fact_futs = hosts.iter().zip(remotes).map(|(h, r)| {
        phase(log, "facts", Some(&h.role), async move {
            progress.step(&h.role, "gathering facts and kernel config");
            let out = r.run("facts", facts::FACTS_SCRIPT, cmd_t).await?;
            let f = facts::parse_facts(&out.stdout);
            rundir::write_json(&rd.host_file(&h.role, "facts.json"), &f)?;
            let cfg = r.run_unchecked("kernel-config", facts::CONFIG_SCRIPT, cmd_t).await?;
            if cfg.code == Some(0) && !cfg.stdout.is_empty() {
                rundir::write_atomic(&rd.host_file(&h.role, "kernel.config"), cfg.stdout.as_bytes())?;
            } else {
                progress.println(&format!(
                    "kdelta: warning: {}: no kernel config found (/proc/config.gz, /boot/config-*): the config delta will be empty",
                    h.role
                ));
            }
            preflight(&h.role, &f)?;
            Ok(f)
        })
    });
    let facts_res = futures_join_all(fact_futs).await;
    facts_res.into_iter().collect::<Result<Vec<Facts>>>()?;
    let remote_zstd: Vec<bool> = {
        let futs = remotes
            .iter()
            .map(|r| r.run_unchecked("has-zstd", "command -v zstd", cmd_t));
        futures_join_all(futs)
            .await
            .into_iter()
            .map(|o| o.map(|o| o.code == Some(0)).unwrap_or(false))
            .collect()
    };

    // 5. Workload and capture, repeat by repeat. Each repeat's profile is converted
    //    and downloaded right after it, so a run cut short keeps every repeat it
    //    finished: `kdelta analyze` reports them, `--resume` recaptures the hosts
    //    that did not finish.
    let repeats = plan.capture.repeat;
    let mut values: Vec<Vec<Vec<Option<f64>>>> = vec![Vec::new(); hosts.len()];
    let mut logs: Vec<String> = vec![String::new(); hosts.len()];
    // Hosts that share this machine run one at a time, others at once.
    let groups: Vec<Vec<usize>> = if plan.sequential() {
        (0..hosts.len()).map(|i| vec![i]).collect()
    } else {
        vec![(0..hosts.len()).collect()]
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
            let name = format!("workload {rep}/{repeats}");
            let futs = group.iter().map(|&i| {
                phase(
                    log,
                    &name,
                    Some(&hosts[i].role),
                    one_repeat(plan, &hosts[i], &remotes[i], &works[i], rep, progress),
                )
            });
            let results = futures_join_all(futs).await;
            // Keep what the hosts that succeeded measured before reporting a failure.
            let mut first_err = None;
            let mut done = Vec::new();
            for (&i, r) in group.iter().zip(results) {
                match r {
                    Ok((v, l)) => {
                        values[i].push(v);
                        logs[i].push_str(&l);
                        done.push(i);
                    }
                    Err(e) => first_err = first_err.or(Some(e)),
                }
            }
            let name = format!("download {rep}/{repeats}");
            let futs = done.iter().map(|&i| {
                let h = &hosts[i];
                let (vals, text, zst) = (&values[i], &logs[i], remote_zstd[i]);
                phase(log, &name, Some(&h.role), async move {
                    rundir::write_atomic(&rd.host_file(&h.role, "workload.log"), text.as_bytes())?;
                    let m = capture::metrics_file(&plan.workload.metrics, vals, vals.len() as u32);
                    rundir::write_json(&rd.host_file(&h.role, "metrics.json"), &m)?;
                    download_repeat(plan, rd, h, &remotes[i], &works[i], rep, zst, progress).await
                })
            });
            for r in futures_join_all(futs).await {
                if let Err(e) = r {
                    first_err = first_err.or(Some(e));
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Converts one repeat's recording on the host (`perf script`, compressed there when
/// it has zstd) and appends it to `perf.script.zst` as one more zstd frame; appends
/// its `perf stat` counts; then frees the recording on the host.
#[allow(clippy::too_many_arguments)]
async fn download_repeat(
    plan: &Plan,
    rd: &RunDir,
    h: &Host,
    r: &Remote,
    work: &str,
    rep: u32,
    remote_zstd: bool,
    progress: &Progress,
) -> Result<()> {
    let cmd_t = Duration::from_secs(plan.timeouts.command);
    progress.step(
        &h.role,
        &format!(
            "repeat {rep}/{}: perf script → perf.script.zst",
            plan.capture.repeat
        ),
    );
    let part = rd.host_file(&h.role, &format!("perf.script.{rep}.part"));
    r.run_to_file(
        &format!("perf-script-{rep}"),
        &capture::script_script(work, rep, remote_zstd),
        &part,
        cmd_t * 4,
    )
    .await?;
    let dest = rd.host_file(&h.role, "perf.script.zst");
    let (part2, dest2) = (part.clone(), dest.clone());
    tokio::task::spawn_blocking(move || append_frame(&part2, &dest2, !remote_zstd))
        .await
        .context("appending the profile")??;
    std::fs::remove_file(&part).ok();
    if plan.capture.stat {
        let out = r
            .run_unchecked(
                &format!("perf-stat-{rep}"),
                &capture::stat_collect_script(work, rep),
                cmd_t,
            )
            .await?;
        let path = rd.host_file(&h.role, "perf-stat.txt");
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&out.stdout);
        rundir::write_atomic(&path, text.as_bytes())?;
    }
    // The recording is in the run directory now; a long run must not fill the host.
    let _ = r
        .run_unchecked(
            &format!("free-{rep}"),
            &format!("rm -f {}/perf-{rep}.data", crate::shell::quote(work)),
            cmd_t,
        )
        .await;
    if rep == plan.capture.repeat {
        let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        progress.done(
            &h.role,
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

/// One repeat on one host: start perf (and the server), run the client, stop, parse.
async fn one_repeat(
    plan: &Plan,
    host: &Host,
    remote: &Remote,
    work: &str,
    rep: u32,
    progress: &Progress,
) -> Result<(Vec<Option<f64>>, String)> {
    let w = &plan.workload;
    let ctx = template_ctx(plan, host, work, rep);
    let bound = w.timeout + 30;
    let cmd_t = Duration::from_secs(plan.timeouts.command);
    let server = match &w.server {
        Some(s) => Some(crate::playbook::render(s, &ctx).context("workload.server: template")?),
        None => None,
    };
    let client =
        crate::playbook::render(&w.client, &ctx).context("workload.client.run: template")?;
    progress.step(
        &host.role,
        &format!(
            "repeat {rep}/{}: perf record + workload",
            plan.capture.repeat
        ),
    );
    remote
        .run(
            &format!("start-{rep}"),
            &capture::start_script(work, rep, &plan.capture, bound, server.as_deref()),
            cmd_t,
        )
        .await?;
    tokio::time::sleep(Duration::from_secs_f64(w.server_ready_wait)).await;
    let started = Instant::now();
    let client_res = match w.client_from {
        ClientFrom::Host => remote
            .run_unchecked(
                &format!("client-{rep}"),
                &client,
                Duration::from_secs(w.timeout),
            )
            .await
            .map(|o| (o.stdout, o.stderr, o.code)),
        ClientFrom::Orchestrator => local_client(&client, Duration::from_secs(w.timeout)).await,
    };
    let elapsed = started.elapsed().as_secs_f64();
    // Stop perf and the server whatever the client did.
    let stop = remote
        .run_unchecked(
            &format!("stop-{rep}"),
            &capture::stop_script(work, rep),
            cmd_t,
        )
        .await;
    // A lost connection is the cause of whatever else failed with it: say that first.
    let stop = match stop {
        Err(e) if e.is::<crate::remote::ConnectionLost>() => return Err(e),
        Err(e) => Err(e),
        Ok(o) if o.code == Some(0) => Ok(()),
        Ok(o) if o.code == Some(capture::PERF_DIED) => Err(anyhow!(
            "{}: perf record died during repeat {rep}, before kdelta stopped it: this repeat's profile is cut short (killed? out of memory?); the end of its log:\n    {}",
            host.role,
            o.stderr.trim().lines().collect::<Vec<_>>().join("\n    ")
        )),
        Ok(o) => Err(remote.error(&format!("stop-{rep}"), &o).into()),
    };
    let (stdout, stderr, code) = client_res?;
    let server_log = if server.is_some() {
        remote
            .run_unchecked(
                &format!("server-log-{rep}"),
                &capture::server_log_script(work, rep),
                cmd_t,
            )
            .await
            .map(|o| o.stdout)
            .unwrap_or_default()
    } else {
        String::new()
    };
    let mut logtext = format!(
        "===== repeat {rep} on {} ({:.1}s, exit {:?})\n$ {client}\n{stdout}\n{}",
        host.role,
        elapsed,
        code,
        if stderr.is_empty() {
            String::new()
        } else {
            format!("--- stderr\n{stderr}\n")
        }
    );
    if !server_log.is_empty() {
        logtext.push_str(&format!("--- server\n{server_log}\n"));
    }
    if code != Some(0) {
        let tail: Vec<&str> = stderr
            .lines()
            .chain(stdout.lines())
            .filter(|l| !l.trim().is_empty())
            .collect();
        bail!(
            "{}: the workload client failed in repeat {rep} ({}): `{client}`\n    {}\n    (see hosts/{}/workload.log)",
            host.role,
            match code {
                Some(124) => "timed out (workload.timeout)".to_string(),
                Some(c) => format!("exit code {c}"),
                None => "killed".to_string(),
            },
            tail[tail.len().saturating_sub(4)..].join("\n    "),
            host.role
        );
    }
    stop?;
    let mut vals = Vec::new();
    for m in &w.metrics {
        let src = if m.from_server { &server_log } else { &stdout };
        match capture::extract(m, src) {
            Ok(v) => vals.push(Some(v)),
            Err(e) => bail!(
                "{}: metric `{}` could not be read from the {} output of repeat {rep}: {e} (see hosts/{}/workload.log)",
                host.role,
                m.name,
                if m.from_server { "server" } else { "client" },
                host.role
            ),
        }
    }
    Ok((vals, logtext))
}

/// Runs the client on this machine, in its own process group, bounded.
async fn local_client(cmd: &str, timeout: Duration) -> Result<(String, String, Option<i32>)> {
    match crate::local::shell(cmd, timeout, "the workload client").await? {
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

/// Checks that perf can record system-wide with kernel symbols.
fn preflight(role: &str, f: &Facts) -> Result<()> {
    if let Some(why) = f.extra.get("perf_broken").and_then(|v| v.as_str()) {
        bail!("{role}: perf is installed but does not run: {why} (install the perf of the running kernel: Debian linux-perf, Ubuntu linux-tools-$(uname -r), RHEL perf)");
    }
    if f.perf_version.is_none() {
        bail!("{role}: perf is not installed on the host (Debian/Ubuntu: apt-get install linux-perf / linux-tools-$(uname -r); RHEL: dnf install perf)");
    }
    let paranoid = f.extra_int("perf_event_paranoid").unwrap_or(0);
    if paranoid > 0 && !f.is_root() {
        bail!("{role}: kernel.perf_event_paranoid = {paranoid} forbids system-wide profiling for this user (fix: sysctl -w kernel.perf_event_paranoid=-1, or connect as root)");
    }
    Ok(())
}

/// `kdelta check`: validates and, unless `offline`, runs the preflight on the hosts.
pub async fn check(plan: &Plan, quiet: bool) -> Result<Vec<String>> {
    let mut lines = vec![format!(
        "{}: playbook is valid ({})",
        plan.file.display(),
        plan.name
    )];
    let progress = Progress::new(quiet);
    let ledger = Mutex::new(Ledger::default());
    let tmp = std::env::temp_dir().join(format!("kdelta-check-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let res: Result<()> = async {
        // qemu guests are checked for what they need, not booted (that may build kernels).
        let mut roles: Vec<&str> = Vec::new();
        for s in [&plan.baseline, &plan.candidate] {
            match &s.provider {
                Provider::Qemu(q) => lines.push(crate::qemu::preflight(q, &s.role)?),
                // Making a host may cost money: check validates its commands only.
                Provider::Command(_) => lines.push(format!(
                    "{}: command host: `up`/`down` are valid templates; not run by check (run makes the host)",
                    s.role
                )),
                _ => roles.push(s.role.as_str()),
            }
        }
        let hosts = provision_hosts(plan, &ledger, &tmp, &progress, &roles, None).await?;
        if !plan.lab_specs().is_empty() {
            lines.push("lab: namespaces, veth links and sshd come up".into());
        }
        for h in &hosts {
            let r = Remote::connect(&h.connect, &tmp).await?;
            let out = r
                .run("facts", facts::FACTS_SCRIPT, Duration::from_secs(60))
                .await?;
            let f = facts::parse_facts(&out.stdout);
            preflight(&h.role, &f)?;
            let cfg = r
                .run_unchecked("config", facts::CONFIG_SCRIPT, Duration::from_secs(60))
                .await?;
            lines.push(format!(
                "{}: ssh ok ({}), kernel {}, {}, kernel config {}, kptr_restrict {}",
                h.role,
                h.connect.destination,
                f.kernel.as_deref().unwrap_or("?"),
                f.perf_version.as_deref().unwrap_or("no perf"),
                if cfg.code == Some(0) {
                    "found"
                } else {
                    "NOT found (config delta will be empty)"
                },
                f.extra
                    .get("kptr_restrict")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?"),
            ));
            // Disk for the capture, and the clock against this machine's.
            let before = std::time::SystemTime::now();
            let o = r
                .run_unchecked("disk-clock", "df -Pk /tmp | tail -n 1; date +%s.%N", Duration::from_secs(30))
                .await?;
            let after = std::time::SystemTime::now();
            lines.extend(host_checks(&h.role, &f, &o.stdout, before, after));
            r.close().await;
        }
        Ok(())
    }
    .await;
    let errs = teardown(&ledger, &progress).await;
    progress.finish();
    let _ = std::fs::remove_dir_all(&tmp);
    res?;
    if !errs.is_empty() {
        bail!("teardown: {}", errs.join("; "));
    }
    Ok(lines)
}

/// Preflight findings beyond the hard requirements: kernel symbols visible, disk
/// for the capture, clock skew; each with the fix. `out` is `df -Pk /tmp` and
/// `date +%s.%N` from the host; `before`/`after` bracket that command here.
fn host_checks(
    role: &str,
    f: &Facts,
    out: &str,
    before: std::time::SystemTime,
    after: std::time::SystemTime,
) -> Vec<String> {
    let mut lines = Vec::new();
    let kptr = f.extra_int("kptr_restrict").unwrap_or(0);
    if kptr >= 2 || (kptr == 1 && !f.is_root()) {
        lines.push(format!("{role}: WARNING: kernel.kptr_restrict = {kptr} hides kernel symbols from perf: stacks will read [unknown] (fix: sysctl -w kernel.kptr_restrict=0)"));
    }
    let mut it = out.lines();
    if let Some(avail) = it
        .next()
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok())
    {
        let mib = avail / 1024;
        if mib < 512 {
            lines.push(format!("{role}: WARNING: {mib} MiB free in /tmp: a capture needs up to a few hundred MiB (perf.data of every repeat); free space or lower capture.perf.frequency"));
        } else {
            lines.push(format!("{role}: {mib} MiB free in /tmp"));
        }
    }
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    if let Some(remote) = it.next().and_then(|l| l.trim().parse::<f64>().ok()) {
        let (a, b) = (secs(before), secs(after));
        // The host's clock read somewhere between `a` and `b`: skew beyond that window.
        let skew = if remote < a {
            remote - a
        } else if remote > b {
            remote - b
        } else {
            0.0
        };
        if skew.abs() > 1.0 {
            lines.push(format!("{role}: WARNING: clock {skew:+.1} s off this machine's: run.json and log times will not line up (fix: chrony or systemd-timesyncd on both)"));
        } else {
            lines.push(format!(
                "{role}: clock within {:.2} s of this machine's",
                (b - a).max(skew.abs())
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_checks_warn_with_the_fix() {
        let mut f = Facts::default();
        f.extra.insert("kptr_restrict".into(), "2".into());
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let out = "tmpfs 1000 900 100000 10% /tmp\n1000005.5\n";
        let l = host_checks(
            "candidate",
            &f,
            out,
            t,
            t + std::time::Duration::from_millis(100),
        );
        assert!(
            l[0].contains("kptr_restrict = 2") && l[0].contains("sysctl -w"),
            "{l:?}"
        );
        assert!(l[1].contains("WARNING: 97 MiB free"), "{l:?}");
        assert!(l[2].contains("clock +5.4 s"), "{l:?}");
        let ok = host_checks(
            "baseline",
            &Facts::default(),
            "x 1 1 9000000 1% /tmp\n1000000.05\n",
            t,
            t + std::time::Duration::from_millis(100),
        );
        assert!(
            ok[0].contains("8789 MiB free") && ok[1].contains("clock within"),
            "{ok:?}"
        );
    }

    fn facts(perf: Option<&str>, paranoid: &str, root: &str) -> Facts {
        let mut f = Facts {
            perf_version: perf.map(str::to_string),
            ..Default::default()
        };
        f.extra
            .insert("perf_event_paranoid".into(), paranoid.into());
        f.extra.insert("is_root".into(), root.into());
        f
    }

    #[test]
    fn preflight_names_the_host_and_the_fix() {
        let e = preflight("candidate", &facts(None, "2", "1")).unwrap_err();
        let m = format!("{e:#}");
        assert!(
            m.starts_with("candidate: perf is not installed")
                && m.contains("apt-get install linux-perf"),
            "{m}"
        );
        let e = preflight("baseline", &facts(Some("6.1"), "2", "0")).unwrap_err();
        let m = format!("{e:#}");
        assert!(
            m.contains("perf_event_paranoid = 2") && m.contains("sysctl -w"),
            "{m}"
        );
        let mut broken = facts(None, "-1", "1");
        broken.extra.insert(
            "perf_broken".into(),
            "/usr/bin/perf exits 2: WARNING: perf not found for kernel 6.8.0-45".into(),
        );
        let m = format!("{:#}", preflight("candidate", &broken).unwrap_err());
        assert!(
            m.starts_with("candidate: perf is installed but does not run: /usr/bin/perf exits 2: WARNING: perf not found for kernel 6.8.0-45")
                && m.contains("linux-tools-$(uname -r)"),
            "{m}"
        );
        // Root may profile whatever the setting; a permissive setting is fine for anyone.
        preflight("baseline", &facts(Some("6.1"), "2", "1")).unwrap();
        preflight("baseline", &facts(Some("6.1"), "-1", "0")).unwrap();
    }
}
