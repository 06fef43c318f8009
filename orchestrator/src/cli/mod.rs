//! Command line: parse, dispatch, print errors with their whole chain, exit codes.
//!
//! Machine output goes to stdout through [`out`], which reports a closed pipe as an
//! error that ends the command quietly with exit 0 (as ripgrep does: `kdelta … |
//! head -1` is not a failure). Progress and errors go to stderr. A panic anywhere
//! becomes exit 3 with a message, never Rust's 101.

use std::path::PathBuf;

use std::io::Write;
use std::panic::AssertUnwindSafe;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

mod hosts;

use crate::exit_codes;
use crate::model::Summary;
use crate::run::analysis::{self, AnalysisSetup};
use crate::run::gate::{GateOptions, GateRequest};
use crate::run::{Outcome, RunOptions};

const ABOUT: &str = "kdelta: kernel A/B testing. Runs the same workload on a baseline and a \
candidate host, captures perf profiles (perf record -a -g), kernel configs and runtime settings \
on both, and attributes the profile difference to the kernel config or runtime deltas that \
explain it (e.g. CONFIG_KASAN=y, a netfilter ruleset, mitigations=off), with evidence and \
confidence.";

const AFTER: &str = "\
Exit codes:
  0  pass, no change or improvement
  1  regression (the candidate is worse)
  2  inconclusive (too noisy to decide)
  3  the run itself failed (bad playbook, provisioning, SSH, capture, unreadable input)
  130 interrupted (after teardown)

Examples:
  kdelta run playbooks/lab-tcp.yaml              lab demo: two namespaces, iperf3, nftables on one
  kdelta check playbooks/ssh-pair.yaml           validate and preflight two SSH hosts
  kdelta gate playbooks/ssh-pair.yaml --history /var/lib/kdelta   nightly gate with a trend
  kdelta analyze --baseline a/ --candidate b/ --out out/   two capture folders taken by hand
  kdelta analyze reports/<run>/                  re-analyse a finished or interrupted run
  kdelta run --resume reports/<run>/             finish an interrupted run
  kdelta lab down --all                          remove leftovers of a killed run
  kdelta teardown reports/<run>/                 remove the cloud hosts a crashed run made";

#[derive(Parser, Debug)]
#[command(name = "kdelta", version, about = ABOUT, after_help = AFTER)]
pub struct Cli {
    /// No progress output on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

/// How many pairs to measure (`gate`, `verify`, each `bisect` step).
#[derive(Args, Debug)]
struct RepeatArgs {
    /// Repeats per host, instead of the playbook's `capture.repeat`; `auto` adds
    /// pairs while a rule is undecided (from 2, up to --max-repeats).
    #[arg(long, value_name = "N|auto")]
    repeat: Option<crate::run::gate::Repeat>,
    /// With `--repeat auto` (or `capture.repeat: auto`): at most N pairs (default 10).
    #[arg(long, value_name = "N")]
    max_repeats: Option<u32>,
}

/// A finished run to work on again (`verify`, `bisect`).
#[derive(Args, Debug)]
struct PastRun {
    /// The run directory.
    run_dir: PathBuf,
    /// The playbook the run used, if it is no longer where run.json says.
    #[arg(long, value_name = "FILE")]
    playbook: Option<PathBuf>,
}

/// Where the results go besides the run directory (`run`, `gate`, `analyze`).
#[derive(Args, Debug)]
struct PublishArgs {
    /// Also write the results as KCIDB I/O data (schema v5.3: a checkout and build per
    /// side, a test per metric, gate rule and the verdict) for `kcidb-submit`.
    #[arg(long, value_name = "FILE")]
    kcidb: Option<PathBuf>,
    /// The KCIDB origin: your CI system's name (lowercase letters, digits, `_`).
    #[arg(long, value_name = "NAME", default_value = "kdelta")]
    kcidb_origin: crate::report::kcidb::Origin,
    /// The run's part of every KCIDB id, unique among the origin's submissions
    /// (default: the run directory's name).
    #[arg(long, value_name = "ID")]
    kcidb_id: Option<String>,
}

impl PublishArgs {
    fn setup(self) -> crate::report::publish::Publish {
        crate::report::publish::Publish {
            kcidb: self.kcidb,
            origin: self.kcidb_origin,
            run_id: self.kcidb_id,
        }
    }
}

/// What the analysis reads besides the captures.
#[derive(Args, Debug)]
struct AnalysisArgs {
    /// Attribution knowledge base (default: the built-in configs/attribution.yaml).
    #[arg(long, value_name = "FILE")]
    kb: Option<PathBuf>,
    /// A kernel source tree: options without a knowledge-base entry are tied to what
    /// `obj-$(CONFIG_X)` and `#ifdef CONFIG_X` build only with them. `auto` (default):
    /// a Debian kernel's linux-source-X.Y, fetched with apt once when such an option
    /// differs, cached in ~/.cache/kdelta/sources; `none`: no source.
    #[arg(long, value_name = "DIR|auto|none")]
    kernel_src: Option<String>,
}

impl AnalysisArgs {
    fn setup(self, quiet: bool) -> AnalysisSetup {
        let (kernel_src, find_source) =
            crate::run::ksource::from_flag(self.kernel_src.as_deref(), quiet);
        AnalysisSetup {
            kb: self.kb,
            kernel_src,
            find_source,
            ..Default::default()
        }
    }
}

/// `kdelta bisect`'s arguments.
#[derive(Args, Debug)]
struct BisectArgs {
    #[command(flatten)]
    past: PastRun,
    /// Pairs per step (see `gate --repeat`).
    #[command(flatten)]
    repeats: RepeatArgs,
    /// Steps to measure in this invocation, at most.
    #[arg(long, value_name = "N", default_value_t = 10)]
    max_steps: usize,
    /// Wall time for this invocation (`90s`, `30m`, `2h`): a step starts only if
    /// it fits, judged by the last step's time.
    #[arg(long, value_name = "DURATION", value_parser = crate::format::parse_duration)]
    budget: Option<std::time::Duration>,
    /// Kernel builds this invocation may make (kernels in the cache are free).
    #[arg(long, value_name = "N")]
    max_builds: Option<usize>,
    /// Halve from the start instead of trying attribution's suspects alone first.
    #[arg(long)]
    no_suspects: bool,
    /// Folder for bisect.json, bisect.md and the steps (default: RUN_DIR/bisect).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    analysis: AnalysisArgs,
}

impl BisectArgs {
    /// The request, the folder for its records and what the analysis reads.
    fn request(self) -> (crate::verify::bisect::BisectRequest, PathBuf, AnalysisArgs) {
        let dir = self.out.unwrap_or_else(|| self.past.run_dir.join("bisect"));
        let req = crate::verify::bisect::BisectRequest {
            run_dir: self.past.run_dir,
            playbook: self.past.playbook,
            repeat: self.repeats.repeat,
            max_repeats: self.repeats.max_repeats,
            max_steps: self.max_steps,
            time_budget: self.budget,
            max_builds: self.max_builds,
            no_suspects: self.no_suspects,
        };
        (req, dir, self.analysis)
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a playbook end to end: provision, deploy, capture on both hosts, analyse, report.
    Run {
        /// The playbook (YAML). With --resume, defaults to the one the run used.
        #[arg(required_unless_present = "resume")]
        playbook: Option<PathBuf>,
        /// Finish an interrupted or failed run: capture again the hosts whose capture
        /// did not complete (their partial files are kept aside), then analyse.
        #[arg(long, value_name = "RUN_DIR")]
        resume: Option<PathBuf>,
        /// Folder for the run directory.
        #[arg(long, default_value = "reports")]
        out: PathBuf,
        #[command(flatten)]
        analysis: AnalysisArgs,
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Run a playbook as an upgrade gate: repeats interleaved (A B B A …), a decision per
    /// `gate:` rule (Welch's t, Mann–Whitney, 95% interval, the rule's limit as the minimum
    /// effect), JUnit XML for CI. Exit 0 pass/improvement, 1 regression, 2 inconclusive, 3 failed.
    Gate {
        /// The playbook (YAML), with a `gate:` section (e.g. `throughput: { max_regression: 5% }`).
        #[arg(required_unless_present = "resume")]
        playbook: Option<PathBuf>,
        /// Finish an interrupted gate run (see `run --resume`).
        #[arg(long, value_name = "RUN_DIR")]
        resume: Option<PathBuf>,
        /// Folder for the run directory.
        #[arg(long, default_value = "reports")]
        out: PathBuf,
        #[command(flatten)]
        repeats: RepeatArgs,
        /// Where to write the JUnit XML (default: RUN_DIR/junit.xml).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Keep one record per run in DIR and draw each metric's trend in the report.
        #[arg(long, value_name = "DIR")]
        history: Option<PathBuf>,
        #[command(flatten)]
        analysis: AnalysisArgs,
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Analyse two capture folders (or a run directory) and write summary.json and report.html.
    Analyze {
        /// A run directory (with hosts/baseline and hosts/candidate).
        run_dir: Option<PathBuf>,
        /// Baseline capture folder: perf.script[.zst], optional kernel.config, facts.json, metrics.json.
        #[arg(long, requires = "candidate", conflicts_with = "run_dir")]
        baseline: Option<PathBuf>,
        /// Candidate capture folder.
        #[arg(long, requires = "baseline")]
        candidate: Option<PathBuf>,
        /// Output folder (default: the run directory, or ./kdelta-out).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        analysis: AnalysisArgs,
        /// Also print the summary: `json` to stdout.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Prove a cause: provision the run's candidate again and measure it in balanced
    /// pairs with the blamed item reverted (set to the baseline's value) and as it was
    /// — a runtime item toggled on the same host, a config option or boot parameter of
    /// a qemu host as a second guest with the kernel rebuilt or the command line
    /// edited; report the share of the change the revert recovers.
    /// Exit 0: the item is the cause (or a significant part of it); 1: reverting it
    /// changes nothing beyond the limit; 2: more pairs would tell; 3: the run failed.
    Verify {
        #[command(flatten)]
        past: PastRun,
        /// The delta item to revert (a runtime_delta key such as netfilter.nft_rules,
        /// sysctl.net.core.busy_poll or cmdline.slub_debug, or a config option such as
        /// CONFIG_KASAN); default: the top attribution.
        #[arg(long, value_name = "KEY")]
        cause: Option<String>,
        #[command(flatten)]
        repeats: RepeatArgs,
        /// Folder for the verify run directory (default: RUN_DIR/verify).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the newest verify run in that folder that was interrupted or
        /// failed (give the same --cause): what it captured in full is kept.
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        analysis: AnalysisArgs,
    },
    /// Find which config options and boot parameters of a run's delta reproduce its
    /// change: attribution's suspects reverted alone first, then halving, each step
    /// measured as `verify` measures one item (qemu candidates). Resumable: run it
    /// again to continue. Exit 0: found and verified alone; 2: stopped undecided or
    /// out of steps; 3: a step failed.
    Bisect(BisectArgs),
    /// Validate a playbook and check the hosts: SSH, perf, permissions, kernel config.
    Check {
        playbook: PathBuf,
        /// Only validate the file; do not touch any host.
        #[arg(long)]
        offline: bool,
    },
    /// Run the `down` commands a run recorded for hosts made by a `command` provider and
    /// not yet removed (after a crash, or a `down` that failed).
    Teardown {
        /// The run directory.
        run_dir: PathBuf,
    },
    /// Manage the local network-namespace lab.
    Lab {
        #[command(subcommand)]
        cmd: hosts::LabCmd,
    },
    /// Start a playbook's qemu guest that outlives kdelta (an SSH target to try
    /// kdelta against, or the `up` of a command host), and stop it again.
    Guest {
        #[command(subcommand)]
        cmd: hosts::GuestCmd,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

pub fn main() -> i32 {
    // clap exits 2 on a usage error, which is kdelta's "inconclusive": a gate job with
    // a typo in its flags must fail as a failed run (3), not read as "too noisy".
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit_codes::RUN_FAILED
            } else {
                exit_codes::PASS
            };
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            err_line(&format!("kdelta: cannot start the async runtime: {e}"));
            return exit_codes::RUN_FAILED;
        }
    };
    let res = std::panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(dispatch(cli))))
        .unwrap_or_else(|p| Err(crate::panics::as_error(p.as_ref())));
    match res {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => exit_codes::PASS,
        Err(e) => {
            err_line(&format!("kdelta: error: {e:#}"));
            exit_codes::RUN_FAILED
        }
    }
}

/// One line on stdout; a closed pipe is an error [`main`] ends quietly on.
fn out(line: impl std::fmt::Display) -> Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{line}")?;
    o.flush()?;
    Ok(())
}

/// One line on stderr, never a panic (stderr may be a closed pipe too).
fn err_line(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn dispatch(cli: Cli) -> Result<i32> {
    let argv: Vec<String> = std::env::args().collect();
    let opts = |out: PathBuf, analysis: AnalysisArgs, gate: Option<GateOptions>| RunOptions {
        out,
        quiet: cli.quiet,
        analysis: analysis.setup(cli.quiet),
        command_line: argv.clone(),
        gate,
        toggle: None,
    };
    match cli.cmd {
        Cmd::Teardown { run_dir } => {
            for l in crate::provision::command::teardown_run_dir(&run_dir).await? {
                out(l)?;
            }
            Ok(exit_codes::PASS)
        }
        Cmd::Gate {
            playbook,
            resume,
            out: dir,
            repeats,
            junit,
            history,
            analysis,
            publish,
        } => {
            let req = GateRequest {
                playbook,
                resume,
                repeat: repeats.repeat,
                max_repeats: repeats.max_repeats,
                junit,
            };
            let o = opts(dir, analysis, Some(GateOptions { history }));
            gate(req, o, publish.setup()).await
        }
        Cmd::Run {
            playbook,
            resume,
            out: dir,
            analysis,
            publish,
        } => run(playbook, resume, opts(dir, analysis, None), publish.setup()).await,
        Cmd::Analyze {
            run_dir,
            baseline,
            candidate,
            out: dir,
            analysis,
            format,
            publish,
        } => analyze(
            Inputs {
                run_dir,
                baseline,
                candidate,
                out: dir,
            },
            analysis.setup(cli.quiet),
            format,
            &argv,
            &publish.setup(),
        ),
        Cmd::Check { playbook, offline } => {
            let plan = crate::playbook::load(&playbook)?;
            if offline {
                out(format!(
                    "{}: playbook is valid ({})",
                    playbook.display(),
                    plan.name
                ))?;
                return Ok(exit_codes::PASS);
            }
            for l in crate::run::check::check(&plan, cli.quiet).await? {
                out(l)?;
            }
            Ok(exit_codes::PASS)
        }
        Cmd::Lab { cmd } => hosts::lab_cmd(cmd).await,
        Cmd::Guest { cmd } => hosts::guest_cmd(cmd, cli.quiet).await,
        Cmd::Verify {
            past,
            cause,
            repeats,
            out: dir,
            resume,
            analysis,
        } => {
            let dir = dir.unwrap_or_else(|| past.run_dir.join("verify"));
            let req = crate::verify::VerifyRequest {
                run_dir: past.run_dir,
                playbook: past.playbook,
                cause,
                repeat: repeats.repeat,
                max_repeats: repeats.max_repeats,
                resume,
            };
            verify(req, opts(dir, analysis, None)).await
        }
        Cmd::Bisect(b) => {
            let (req, dir, analysis) = b.request();
            bisect(req, opts(dir, analysis, None)).await
        }
    }
}

async fn verify(req: crate::verify::VerifyRequest, opts: RunOptions) -> Result<i32> {
    use crate::verify::Finding;
    let v = crate::verify::verify(&req, opts).await?;
    let Some(rec) = &v.record else {
        let o = Outcome {
            dir: v.dir.clone(),
            analyzed: None,
            error: v.error,
            interrupted: v.interrupted,
        };
        let how = format!(
            "run.json says which phase failed; `kdelta verify {} --resume` with the same --cause (and --out, --playbook if given) continues it",
            req.run_dir.display()
        );
        return Ok(run_failed(&o, &how));
    };
    out(&rec.headline)?;
    out(format!("report: {}", v.dir.join("report.html").display()))?;
    out(format!("verify: {}", v.dir.join("verify.json").display()))?;
    Ok(match rec.finding {
        Finding::Cause | Finding::Partial => exit_codes::PASS,
        Finding::NotCause => exit_codes::REGRESSION,
        Finding::Unknown => exit_codes::INCONCLUSIVE,
    })
}

async fn bisect(req: crate::verify::bisect::BisectRequest, opts: RunOptions) -> Result<i32> {
    use crate::verify::bisect::{conclusion, BisectEnd, BisectResult};
    let folder = opts.out.clone();
    let end =
        crate::verify::bisect::bisect(&req, opts, |l| err_line(&format!("kdelta: {l}"))).await?;
    let code = match end {
        BisectEnd::Done(rec) => {
            out(conclusion(&rec))?;
            match rec.result {
                Some(BisectResult::Found { .. }) => exit_codes::PASS,
                _ => exit_codes::INCONCLUSIVE,
            }
        }
        BisectEnd::Budget(rec) => {
            out(conclusion(&rec))?;
            exit_codes::INCONCLUSIVE
        }
        BisectEnd::Failed {
            record,
            error,
            interrupted,
            dir,
        } => {
            let o = Outcome {
                dir,
                analyzed: None,
                error: Some(error),
                interrupted,
            };
            let how = format!(
                "{} step(s) kept; run the same `kdelta bisect` again to continue",
                record.steps.len()
            );
            return Ok(run_failed(&o, &how));
        }
    };
    out(format!("steps: {}", folder.join("bisect.md").display()))?;
    Ok(code)
}

/// The exit code of a run that did not get to a verdict, after saying why.
fn run_failed(o: &Outcome, how: &str) -> i32 {
    if let Some(e) = &o.error {
        err_line(&format!("kdelta: error: {e:#}"));
    }
    err_line(&format!(
        "kdelta: run directory kept: {} ({how})",
        o.dir.display()
    ));
    if o.interrupted {
        exit_codes::INTERRUPTED
    } else {
        exit_codes::RUN_FAILED
    }
}

/// Publishes a finished run's results (KCIDB, the GitHub step summary) and says where.
fn publish(dir: &std::path::Path, p: &crate::report::publish::Publish) -> Result<()> {
    for l in crate::report::publish::publish(&crate::rundir::RunDir::open(dir), p)? {
        out(l)?;
    }
    Ok(())
}

async fn run(
    playbook: Option<PathBuf>,
    resume: Option<PathBuf>,
    opts: RunOptions,
    publishing: crate::report::publish::Publish,
) -> Result<i32> {
    let o = match (resume, playbook) {
        (Some(dir), pb) => {
            let (plan, rec) = crate::run::resume::load_for_resume(&dir, pb.as_deref())?;
            crate::run::resume(&dir, &plan, rec, &opts).await?
        }
        (None, Some(pb)) => crate::run::run(&crate::playbook::load(&pb)?, &opts).await?,
        (None, None) => anyhow::bail!("give a playbook (kdelta run PLAYBOOK) or --resume RUN_DIR"),
    };
    let d = o.dir.display();
    let Some(a) = o.analyzed.as_ref().filter(|_| o.error.is_none()) else {
        let how = format!("run.json says which phase failed; `kdelta run --resume {d}` captures what is missing, `kdelta analyze {d}` re-analyses what was captured");
        return Ok(run_failed(&o, &how));
    };
    let s = &a.summary;
    out(format!(
        "{}: {}",
        s.verdict.status.as_str(),
        s.verdict.headline
    ))?;
    out(format!("report: {}", o.dir.join("report.html").display()))?;
    publish(&o.dir, &publishing)?;
    Ok(exit_codes::for_verdict(s.verdict.status))
}

async fn gate(
    req: GateRequest,
    opts: RunOptions,
    publishing: crate::report::publish::Publish,
) -> Result<i32> {
    let g = crate::run::gate::gate(req, opts).await?;
    let dir = crate::rundir::RunDir::open(&g.dir);
    let Some(d) = &g.decision else {
        if let Some(e) = &g.error {
            err_line(&format!("kdelta: error: {e}"));
        }
        err_line(&format!(
            "kdelta: run directory kept: {} (`kdelta gate --resume {}` finishes it)",
            g.dir.display(),
            g.dir.display()
        ));
        out(format!("junit: {}", g.junit.display()))?;
        return Ok(if g.interrupted {
            exit_codes::INTERRUPTED
        } else {
            exit_codes::RUN_FAILED
        });
    };
    out(&d.headline)?;
    if let Some(r) = &g.repeats {
        out(format!("repeats: {r}"))?;
    }
    out(format!("report: {}", dir.report_html().display()))?;
    out(format!("summary: {}", dir.summary_json().display()))?;
    out(format!("markdown: {}", dir.summary_md().display()))?;
    out(format!("junit: {}", g.junit.display()))?;
    publish(&g.dir, &publishing)?;
    Ok(exit_codes::for_gate(d.status))
}

/// What `kdelta analyze` reads and where it writes.
struct Inputs {
    run_dir: Option<PathBuf>,
    baseline: Option<PathBuf>,
    candidate: Option<PathBuf>,
    out: Option<PathBuf>,
}

fn analyze(
    Inputs {
        run_dir,
        baseline,
        candidate,
        out: dir,
    }: Inputs,
    setup: AnalysisSetup,
    format: Format,
    argv: &[String],
    publishing: &crate::report::publish::Publish,
) -> Result<i32> {
    let command = argv.join(" ");
    let (summary, written) = match (run_dir, baseline, candidate) {
        (Some(rd), _, _) => {
            if dir.as_ref().is_some_and(|d| *d != rd) {
                anyhow::bail!("--out with a run directory is not supported: the report is written into the run directory");
            }
            (analysis::report_run_dir(&rd, &setup, &command)?, rd)
        }
        (None, Some(b), Some(c)) => {
            let o = dir.unwrap_or_else(|| PathBuf::from("kdelta-out"));
            let s = analysis::report_folders(&b, &c, &o, &setup, &command)?;
            if format == Format::Text {
                err_line(&format!("report: {}", o.join("report.html").display()));
            }
            (s, o)
        }
        _ => anyhow::bail!(
            "give a run directory, or --baseline DIR --candidate DIR (see kdelta analyze --help)"
        ),
    };
    match format {
        Format::Json => out(serde_json::to_string_pretty(&summary)?)?,
        Format::Text => print_verdict(&summary)?,
    }
    // stdout holds only the JSON when asked for it: where files went goes to stderr.
    let rd = crate::rundir::RunDir::open(&written);
    for l in crate::report::publish::publish(&rd, publishing)? {
        match format {
            Format::Json => err_line(&l),
            Format::Text => out(l)?,
        }
    }
    Ok(exit_codes::for_verdict(summary.verdict.status))
}

fn print_verdict(s: &Summary) -> Result<()> {
    out(format!(
        "{}: {}",
        s.verdict.status.as_str(),
        s.verdict.headline
    ))?;
    for a in s.attributions.iter().take(5) {
        out(format!(
            "  {:+6.2} pts  {:<36} {} → {}  ({} confidence, {})",
            a.explained_share * 100.0,
            a.cause,
            a.baseline,
            a.candidate,
            a.confidence,
            a.source
        ))?;
    }
    Ok(())
}
