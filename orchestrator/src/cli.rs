//! Command line: parse, dispatch, print errors with their whole chain, exit codes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit_codes;
use crate::model::VerdictStatus;

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

/// What the analysis reads besides the captures.
#[derive(Args, Debug)]
struct AnalysisArgs {
    /// Attribution knowledge base (default: the built-in configs/attribution.yaml).
    #[arg(long, value_name = "FILE")]
    kb: Option<PathBuf>,
    /// A kernel source tree (e.g. an unpacked linux-source-X): config options without a
    /// knowledge-base entry are tied to the functions that `obj-$(CONFIG_X)` and
    /// `#ifdef CONFIG_X` compile only with them.
    #[arg(long, value_name = "DIR")]
    kernel_src: Option<PathBuf>,
}

impl AnalysisArgs {
    fn setup(self) -> crate::runner::AnalysisSetup {
        crate::runner::AnalysisSetup {
            kb: self.kb,
            kernel_src: self.kernel_src,
        }
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
        /// Repeats per host, instead of the playbook's `capture.repeat`.
        #[arg(long, value_name = "N")]
        repeat: Option<u32>,
        /// Where to write the JUnit XML (default: RUN_DIR/junit.xml).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Keep one record per run in DIR and draw each metric's trend in the report.
        #[arg(long, value_name = "DIR")]
        history: Option<PathBuf>,
        #[command(flatten)]
        analysis: AnalysisArgs,
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
    },
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
        cmd: LabCmd,
    },
}

#[derive(Subcommand, Debug)]
enum LabCmd {
    /// Bring up a lab for a playbook's lab hosts and print how to reach them (until `lab down`).
    Up { playbook: PathBuf },
    /// Tear down labs: `--all` removes every lab and leftover kdelta namespace.
    Down {
        #[arg(long)]
        all: bool,
        /// Lab id (from `lab status`).
        id: Option<String>,
    },
    /// List labs and leftover namespaces.
    Status,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kdelta: cannot start the async runtime: {e}");
            return exit_codes::RUN_FAILED;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kdelta: error: {e:#}");
            exit_codes::RUN_FAILED
        }
    }
}

/// `kdelta gate`: run (or resume), decide per rule, write JUnit and history.
async fn gate(
    playbook: Option<PathBuf>,
    resume: Option<PathBuf>,
    repeat: Option<u32>,
    junit: Option<PathBuf>,
    history: Option<PathBuf>,
    opts: crate::runner::RunOptions,
) -> Result<i32> {
    let started = std::time::Instant::now();
    let command = opts.command_line.join(" ");
    let (plan, o) = match (resume, playbook) {
        (Some(dir), pb) => {
            let (plan, rec) = crate::runner::load_for_resume(&dir, pb.as_deref())?;
            let o = crate::runner::resume(&dir, plan.clone(), rec, opts).await?;
            (plan, o)
        }
        (None, Some(pb)) => {
            let mut plan = crate::playbook::load(&pb)?;
            if let Some(n) = repeat {
                plan.capture.repeat = n.max(1);
            }
            let o = crate::runner::run(plan.clone(), opts).await?;
            (plan, o)
        }
        (None, None) => anyhow::bail!("give a playbook (kdelta gate PLAYBOOK) or --resume RUN_DIR"),
    };
    let junit_path = junit.unwrap_or_else(|| o.dir.join("junit.xml"));
    let write_junit = |xml: String| -> Result<()> {
        crate::rundir::write_atomic(&junit_path, xml.as_bytes())
            .with_context(|| format!("cannot write {}", junit_path.display()))
    };
    let seconds = started.elapsed().as_secs_f64();
    let (Some(mut s), None) = (o.summary, o.error.as_ref()) else {
        let err = o
            .error
            .as_ref()
            .map(|e| format!("{e:#}"))
            .unwrap_or_else(|| "the run produced no summary".into());
        write_junit(crate::gate::junit(
            &plan.name,
            None,
            Some(&err),
            &[],
            seconds,
        )?)?;
        eprintln!("kdelta: error: {err}");
        eprintln!(
            "kdelta: run directory kept: {} (`kdelta gate --resume {}` finishes it)",
            o.dir.display(),
            o.dir.display()
        );
        println!("junit: {}", junit_path.display());
        return Ok(if o.interrupted {
            exit_codes::INTERRUPTED
        } else {
            exit_codes::RUN_FAILED
        });
    };
    let decision = crate::gate::decide(&plan.gate, &s);
    let status = decision.status;
    s.gate = Some(decision);
    if let Some(dir) = &history {
        let p = crate::history::point(&s, &plan.name, &o.dir, status.as_str());
        crate::history::append(dir, &p)?;
        let (mut pts, warnings) = crate::history::load(dir, &plan.name, 60);
        if let Some(last) = pts.iter_mut().rev().find(|x| x.run_dir == p.run_dir) {
            last.current = true;
        }
        s.warnings.extend(warnings);
        s.history = pts;
    }
    crate::report::write_all(&o.dir, &s, &command)?;
    let props = [
        (
            "baseline.kernel",
            s.baseline.kernel.clone().unwrap_or_default(),
        ),
        (
            "candidate.kernel",
            s.candidate.kernel.clone().unwrap_or_default(),
        ),
        ("run_dir", o.dir.display().to_string()),
    ];
    write_junit(crate::gate::junit(
        &plan.name,
        s.gate.as_ref(),
        None,
        &props,
        seconds,
    )?)?;
    if let Some(g) = &s.gate {
        println!("{}", g.headline);
    }
    println!("report: {}", o.dir.join("report.html").display());
    println!("summary: {}", o.dir.join("summary.json").display());
    println!("markdown: {}", o.dir.join("summary.md").display());
    println!("junit: {}", junit_path.display());
    Ok(status.exit_code())
}

fn status_code(s: VerdictStatus) -> i32 {
    match s {
        VerdictStatus::Regression => exit_codes::REGRESSION,
        VerdictStatus::Inconclusive => exit_codes::INCONCLUSIVE,
        VerdictStatus::NoChange | VerdictStatus::Improvement => exit_codes::PASS,
    }
}

async fn dispatch(cli: Cli) -> Result<i32> {
    let argv: Vec<String> = std::env::args().collect();
    match cli.cmd {
        Cmd::Teardown { run_dir } => {
            for l in crate::command::teardown_run_dir(&run_dir).await? {
                println!("{l}");
            }
            Ok(exit_codes::PASS)
        }
        Cmd::Gate {
            playbook,
            resume,
            out,
            repeat,
            junit,
            history,
            analysis,
        } => {
            let opts = crate::runner::RunOptions {
                out,
                quiet: cli.quiet,
                analysis: analysis.setup(),
                command_line: argv,
            };
            gate(playbook, resume, repeat, junit, history, opts).await
        }
        Cmd::Run {
            playbook,
            resume,
            out,
            analysis,
        } => {
            let opts = crate::runner::RunOptions {
                out,
                quiet: cli.quiet,
                analysis: analysis.setup(),
                command_line: argv,
            };
            let o = match (resume, playbook) {
                (Some(dir), pb) => {
                    let (plan, rec) = crate::runner::load_for_resume(&dir, pb.as_deref())?;
                    crate::runner::resume(&dir, plan, rec, opts).await?
                }
                (None, Some(pb)) => crate::runner::run(crate::playbook::load(&pb)?, opts).await?,
                (None, None) => {
                    anyhow::bail!("give a playbook (kdelta run PLAYBOOK) or --resume RUN_DIR")
                }
            };
            let report = o.dir.join("report.html");
            if let Some(e) = &o.error {
                eprintln!("kdelta: error: {e:#}");
                eprintln!(
                    "kdelta: run directory kept: {} (run.json says which phase failed; `kdelta run --resume {}` captures what is missing, `kdelta analyze {}` re-analyses what was captured)",
                    o.dir.display(),
                    o.dir.display(),
                    o.dir.display()
                );
                return Ok(if o.interrupted {
                    exit_codes::INTERRUPTED
                } else {
                    exit_codes::RUN_FAILED
                });
            }
            let Some(s) = o.summary else {
                return Ok(exit_codes::RUN_FAILED);
            };
            println!("{}: {}", s.verdict.status.as_str(), s.verdict.headline);
            println!("report: {}", report.display());
            Ok(status_code(s.verdict.status))
        }
        Cmd::Analyze {
            run_dir,
            baseline,
            candidate,
            out,
            analysis,
            format,
        } => {
            let setup = analysis.setup();
            let summary = match (run_dir, baseline, candidate) {
                (Some(dir), _, _) => {
                    let out_dir = out.unwrap_or_else(|| dir.clone());
                    if out_dir != dir {
                        anyhow::bail!("--out with a run directory is not supported: the report is written into the run directory");
                    }
                    crate::runner::analyze_run_dir(&dir, &setup, &argv, None)?
                }
                (None, Some(b), Some(c)) => {
                    let out = out.unwrap_or_else(|| PathBuf::from("kdelta-out"));
                    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
                    let (kbase, opts) = setup.load()?;
                    let fo = crate::fold::FoldOptions::default();
                    let bc = crate::analyze::load_capture(&b, &format!("baseline ({})", b.display()), &fo)?;
                    let cc = crate::analyze::load_capture(&c, &format!("candidate ({})", c.display()), &fo)?;
                    let s = crate::analyze::analyze(&bc, &cc, &kbase, &opts)?;
                    crate::runner::write_folded(&out, &bc, &cc)?;
                    crate::report::write_all(&out, &s, &argv.join(" "))?;
                    if format == Format::Text {
                        eprintln!("report: {}", out.join("report.html").display());
                    }
                    s
                }
                _ => anyhow::bail!("give a run directory, or --baseline DIR --candidate DIR (see kdelta analyze --help)"),
            };
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
                Format::Text => {
                    println!(
                        "{}: {}",
                        summary.verdict.status.as_str(),
                        summary.verdict.headline
                    );
                    for a in summary.attributions.iter().take(5) {
                        println!(
                            "  {:+6.2} pts  {:<36} {} → {}  ({} confidence, {})",
                            a.explained_share * 100.0,
                            a.cause,
                            a.baseline,
                            a.candidate,
                            a.confidence,
                            a.source
                        );
                    }
                }
            }
            Ok(status_code(summary.verdict.status))
        }
        Cmd::Check { playbook, offline } => {
            let plan = crate::playbook::load(&playbook)?;
            if offline {
                println!("{}: playbook is valid ({})", playbook.display(), plan.name);
                return Ok(exit_codes::PASS);
            }
            for l in crate::runner::check(&plan, cli.quiet).await? {
                println!("{l}");
            }
            Ok(exit_codes::PASS)
        }
        Cmd::Lab { cmd } => lab(cmd).await,
    }
}

async fn lab(cmd: LabCmd) -> Result<i32> {
    match cmd {
        LabCmd::Status => {
            let (labs, stray) = crate::provision::lab_list();
            let vms = crate::qemu::leftovers();
            if labs.is_empty() && stray.is_empty() && vms.is_empty() {
                println!("no kdelta labs");
            }
            for (pid, alive) in vms {
                println!(
                    "QEMU guest pid {pid}{}: `kdelta lab down --all` kills it (also the guests of a run still in progress)",
                    if alive { "" } else { " (gone; state file left)" }
                );
            }
            for l in labs {
                println!(
                    "lab {}: namespaces {} (state in {})",
                    l.id,
                    l.namespaces.join(", "),
                    l.dir.display()
                );
            }
            for s in stray {
                println!(
                    "leftover namespace {s} (no state file): `kdelta lab down --all` removes it"
                );
            }
            Ok(exit_codes::PASS)
        }
        LabCmd::Down { all, id } => {
            if all {
                let (n, mut errors) = crate::provision::lab_down_all();
                let (v, verrors) = crate::qemu::down_all();
                errors.extend(verrors);
                println!("removed {n} lab(s), killed {v} leftover QEMU guest(s)");
                for e in &errors {
                    eprintln!("kdelta: {e}");
                }
                return Ok(if errors.is_empty() {
                    exit_codes::PASS
                } else {
                    exit_codes::RUN_FAILED
                });
            }
            let Some(id) = id else {
                anyhow::bail!("give a lab id (see `kdelta lab status`) or --all")
            };
            let (labs, _) = crate::provision::lab_list();
            let Some(l) = labs.into_iter().find(|l| l.id == id) else {
                anyhow::bail!("no lab `{id}` (see `kdelta lab status`)")
            };
            let errors = crate::provision::lab_down(&l);
            for e in &errors {
                eprintln!("kdelta: {e}");
            }
            Ok(if errors.is_empty() {
                exit_codes::PASS
            } else {
                exit_codes::RUN_FAILED
            })
        }
        LabCmd::Up { playbook } => {
            let plan = crate::playbook::load(&playbook)?;
            let specs = plan.lab_specs();
            if specs.is_empty() {
                anyhow::bail!("{}: no host uses provider: lab", playbook.display());
            }
            let mut state = crate::provision::LabState::default();
            match crate::provision::lab_up(&specs, &mut state).await {
                Ok(hosts) => {
                    println!(
                        "lab {} is up (remove it with `kdelta lab down {}`):",
                        state.id, state.id
                    );
                    for h in hosts {
                        println!(
                            "  {}: ssh -i {} -o UserKnownHostsFile={} {}",
                            h.role,
                            h.connect
                                .keyfile
                                .as_ref()
                                .map(|k| k.display().to_string())
                                .unwrap_or_default(),
                            h.connect
                                .known_hosts_file
                                .as_ref()
                                .map(|k| k.display().to_string())
                                .unwrap_or_default(),
                            h.connect.destination
                        );
                    }
                    Ok(exit_codes::PASS)
                }
                Err(e) => {
                    crate::provision::lab_down(&state);
                    Err(e)
                }
            }
        }
    }
}
