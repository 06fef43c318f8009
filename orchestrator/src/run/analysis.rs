//! The one way to analyse: two sides loaded ([`crate::analyze`]), their causes tied
//! ([`crate::attribute`]), the verdict decided ([`crate::gate::verdict`]) into a
//! [`Summary`]. `kdelta analyze` (a run directory or two capture folders), `kdelta run`
//! and `kdelta gate` all come through here. Files only: nothing here reaches a host.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::analyze::fold::FoldOptions;
use crate::analyze::functions::{function_deltas, side_counts, SideCounts};
use crate::analyze::metrics::metric_deltas;
use crate::analyze::runtime::runtime_delta;
use crate::analyze::side::{load_capture, side_summary, Capture};
use crate::attribute::gather::{self, CauseInputs};
use crate::attribute::{self, ksrc, reasoning, AttributeOptions, KnowledgeBase};
use crate::format::pct;
use crate::gate::decision::{self, CpuEvidence};
use crate::gate::verdict::{verdict, VerdictInput};
use crate::kconfig;
use crate::model::{
    Assessment, Attribution, Confidence, ConfigChange, ConfigDeltaCounts, DecisionStatus,
    HostsRecord, KeyKind, MetricDecision, MetricDelta, PhaseStatus, ProviderKind, Role, RunRecord,
    RuntimeChange, SideSummary, Summary, Verdict,
};
use crate::rundir::RunDir;

/// What the analysis reads besides the captures (`--kb`, `--kernel-src`), and how
/// the metrics are decided.
#[derive(Clone, Debug, Default)]
pub struct AnalysisSetup {
    /// Knowledge base file; the built-in one when absent.
    pub kb: Option<PathBuf>,
    /// Kernel source tree for mapping options to functions.
    pub kernel_src: Option<PathBuf>,
    /// Without `kernel_src`: how to find the captured kernel's source when an
    /// option needs one (`--kernel-src auto`, the CLI's default). None: no source.
    pub find_source: Option<SourceFinder>,
    /// The limit of each metric that has a gate rule; the others get
    /// [`decision::DEFAULT_LIMIT`]. For a run directory, read from its playbook
    /// when not given.
    pub limits: Option<BTreeMap<String, f64>>,
    /// How many times the data were looked at to decide when to stop (adaptive
    /// repeats): each look is tested at α / looks. 1 for a fixed number of repeats.
    pub looks: u32,
}

/// What is known of a captured kernel, to find its source.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelIdentity {
    /// `uname -r`: `6.1.0-27-amd64`.
    pub release: Option<String>,
    /// `/proc/version`, with the distribution's package version
    /// (`… #1 SMP PREEMPT_DYNAMIC Debian 6.1.115-1 (2024-11-01)`).
    pub proc_version: Option<String>,
}

impl KernelIdentity {
    pub fn of(c: &Capture) -> KernelIdentity {
        let f = c.facts.as_ref();
        KernelIdentity {
            release: f.and_then(|f| f.kernel.clone()),
            proc_version: f
                .and_then(|f| f.extra.get("proc_version"))
                .and_then(|v| v.as_str())
                .map(str::to_string),
        }
    }
}

/// A kernel source found for the captured kernels.
#[derive(Clone, Debug)]
pub struct FoundSource {
    /// The tree's top folder (holds `Makefile`, `kernel/`, `net/`).
    pub root: PathBuf,
    /// What it is, for the caveats: `linux-source-6.1 6.1.115-1`.
    pub version: String,
    /// A caveat to add: the source is another version than the kernel's, or than
    /// one side's.
    pub note: Option<String>,
}

/// Finds (and fetches, caches) the source of the captured kernels (baseline,
/// candidate): Ok(None) when it does not know their distribution, an error when it
/// tried and failed.
/// Kept out of the analysis proper, which touches files only: the CLI gives
/// [`crate::run::ksource::debian`]; the library's default is none, so tests and
/// fixtures are never slowed or made network-dependent by surprise.
#[derive(Clone)]
pub struct SourceFinder(pub std::sync::Arc<FindSource>);

/// See [`SourceFinder`].
pub type FindSource = dyn Fn([&KernelIdentity; 2]) -> Result<Option<FoundSource>> + Send + Sync;

impl std::fmt::Debug for SourceFinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceFinder")
    }
}

/// The analysis's settings, loaded.
pub struct Analyzer {
    pub kb: KnowledgeBase,
    pub limits: BTreeMap<String, f64>,
    /// The significance level of each metric's test.
    pub alpha: f64,
    pub attribute: AttributeOptions,
    /// Functions kept in the summary's table. Default 300.
    pub max_functions: usize,
    pub kernel_src: Option<PathBuf>,
    pub find_source: Option<SourceFinder>,
    pub fold: FoldOptions,
}

impl AnalysisSetup {
    pub fn load(&self) -> Result<Analyzer> {
        let kb = match &self.kb {
            Some(p) => KnowledgeBase::load(p)?,
            None => KnowledgeBase::builtin()?,
        };
        Ok(Analyzer {
            kb,
            limits: self.limits.clone().unwrap_or_default(),
            alpha: decision::ALPHA / f64::from(self.looks.max(1)),
            attribute: AttributeOptions::default(),
            max_functions: 300,
            kernel_src: self.kernel_src.clone(),
            find_source: self.find_source.clone(),
            fold: FoldOptions::default(),
        })
    }
}

/// A finished analysis: the summary and the two sides it was made of (their
/// profiles are what the report's flame graphs draw).
pub struct Analyzed {
    pub summary: Summary,
    pub base: Capture,
    pub cand: Capture,
}

/// Analyses a run directory, also one whose run was interrupted or failed. `run` is
/// its run.json when the caller holds it; otherwise it is read from the folder.
pub fn analyze_run_dir(dir: &Path, setup: &Analyzer, run: Option<RunRecord>) -> Result<Analyzed> {
    let rd = RunDir::open(dir);
    let (b, c) = rd.sides()?;
    let names = host_names(&rd);
    let base = load_capture(&b, &names[0], &setup.fold)?;
    let cand = load_capture(&c, &names[1], &setup.fold)?;
    let mut summary = summarize(&base, &cand, setup)?;
    summary.run = run.or_else(|| rd.read_run_record().ok());
    run_caveats(&mut summary, &base, &cand);
    Ok(Analyzed {
        summary,
        base,
        cand,
    })
}

/// Analyses two capture folders taken by hand (`--baseline DIR --candidate DIR`).
pub fn analyze_folders(b: &Path, c: &Path, setup: &Analyzer) -> Result<Analyzed> {
    let base = load_capture(b, &format!("baseline ({})", b.display()), &setup.fold)?;
    let cand = load_capture(c, &format!("candidate ({})", c.display()), &setup.fold)?;
    let summary = summarize(&base, &cand, setup)?;
    Ok(Analyzed {
        summary,
        base,
        cand,
    })
}

/// What the run record says about the data: a resumed run's sides come from two
/// times; an interrupted run has fewer repeats than planned.
fn run_caveats(summary: &mut Summary, base: &Capture, cand: &Capture) {
    let Some(run) = &summary.run else { return };
    let mut caveats = Vec::new();
    if matches!(run.status, PhaseStatus::Interrupted | PhaseStatus::Failed) {
        caveats.push(format!(
            "the run was {} before it finished: this analysis uses the repeats it captured ({} on the baseline, {} on the candidate)",
            match run.status {
                PhaseStatus::Interrupted => "interrupted",
                _ => "failed",
            },
            base.profile.repeats,
            cand.profile.repeats
        ));
    }
    for r in &run.resumes {
        // A crash is said from the kept console (below, per side); a freeze leaves
        // nothing there, only the reason kdelta recorded when it took the run again.
        for froze in r
            .lost
            .iter()
            .filter(|l| l.how == crate::model::GuestLoss::Froze)
        {
            caveats.push(format!(
                "{}; both sides were captured again from fresh boots (the first attempt is kept in hosts/*.attempt-N): a kernel that freezes sometimes is a finding of its own",
                froze.show()
            ));
        }
        if let [role] = r.recaptured.as_slice() {
            caveats.push(format!(
                "resumed run: the {role} was captured again at {}, later than the other side: drift between the two times falls on one side only",
                r.at
            ));
        }
    }
    // The interruption first: it changes how everything after it reads.
    caveats.append(&mut summary.caveats);
    summary.caveats = caveats;
}

/// The name the report gives each side: the playbook's label, else the machine.
fn host_names(rd: &RunDir) -> [String; 2] {
    let rec: Option<HostsRecord> = rd.read_hosts_record().ok();
    Role::ALL.map(|role| {
        rec.as_ref()
            .and_then(|r| r.hosts.iter().find(|h| h.role == role))
            // The report adds the role: the name says which machine.
            .map(|h| match &h.label {
                Some(l) => l.clone(),
                None if h.provider == ProviderKind::Qemu => "qemu guest".to_string(),
                None => h.destination.clone(),
            })
            .unwrap_or_else(|| role.to_string())
    })
}

/// The whole analysis of two loaded sides.
pub fn summarize(base: &Capture, cand: &Capture, a: &Analyzer) -> Result<Summary> {
    let mut caveats = Vec::new();
    let mut warnings: Vec<String> = [base, cand]
        .iter()
        .flat_map(|c| c.warnings.clone())
        .collect();
    for c in [base, cand] {
        side_notes(c, &mut caveats, &mut warnings)?;
    }
    caveats.extend(profile_notes(base, cand));
    let (config_delta, config_counts) = config_delta(base, cand, &mut caveats);
    let runtime_delta = runtime_changes(base, cand, &mut caveats);
    let mut metrics = metric_deltas(base.metrics.as_ref(), cand.metrics.as_ref());
    for m in &mut metrics {
        let limit = a
            .limits
            .get(&m.name)
            .copied()
            .unwrap_or(decision::DEFAULT_LIMIT);
        let d = decision::decide(m, limit, a.alpha);
        record(m, d);
    }
    let (sb, sc, renamed) = counted_sides(base, cand, &mut caveats);
    let (functions, profile_shift) = function_deltas(&sb, &sc, a.max_functions.max(1));
    let causes = causes(
        [base, cand],
        a,
        (&config_delta, &runtime_delta),
        [&sb, &sc],
        &mut caveats,
    )?;

    let worse = metrics.iter().any(|m| m.assessment == Assessment::Worse);
    let better = metrics.iter().any(|m| m.assessment == Assessment::Better);
    // Every repeat of a metric moved but too few to test: the profile may decide.
    // Without a metric verdict, explain what is hotter on the candidate.
    let candidate_worse = worse || !better;
    let attr = attribute::attribute(
        &causes,
        &base.profile,
        &cand.profile,
        candidate_worse,
        &AttributeOptions {
            renames: renamed,
            ..a.attribute.clone()
        },
    );
    caveats.extend(attr.caveats.iter().cloned());
    let (base_sum, cand_sum) = (side_summary(base), side_summary(cand));
    caveats.extend(reasoning_notes(
        &attr,
        worse,
        candidate_worse,
        profile_shift,
        (&config_delta, &runtime_delta),
        [&base_sum, &cand_sum],
    ));
    let evidence = cpu_evidence(&attr.attributions);
    for m in &mut metrics {
        if let Some(mut d) = m.decision.take() {
            for ev in &evidence {
                decision::with_cpu_evidence(&mut d, m, Some(ev));
            }
            record(m, d);
        }
    }
    let titles: BTreeMap<String, String> = causes
        .iter()
        .map(|c| (c.name.clone(), c.title.clone()))
        .collect();
    let (status, headline) = verdict(&VerdictInput {
        metrics: &metrics,
        attributions: &attr.attributions,
        unexplained: &attr.unexplained_functions,
        unexplained_family: reasoning::dominant_family(&attr.unexplained_functions),
        titles: &titles,
        busy: [
            1.0 - base.profile.idle_share(),
            1.0 - cand.profile.idle_share(),
        ],
    });
    let headline = with_version_suspect(headline, [&base_sum, &cand_sum]);
    if (cand.profile.idle_share() - base.profile.idle_share()).abs() > 0.1 {
        caveats.push(format!(
            "idle share differs a lot ({} vs {}): shares are of busy time on each side",
            pct(base.profile.idle_share()),
            pct(cand.profile.idle_share())
        ));
    }
    Ok(Summary {
        schema: 1,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        baseline: base_sum,
        candidate: cand_sum,
        verdict: Verdict { status, headline },
        metrics,
        functions,
        config_delta,
        config_counts,
        runtime_delta,
        attributions: attr.attributions,
        unexplained_share: attr.unexplained_share,
        unexplained_functions: attr.unexplained_functions,
        profile_shift,
        caveats,
        warnings,
        cause_shares: attr.cause_shares,
        run: None,
        gate: None,
        history: vec![],
        proof: None,
    })
}

/// The two profiles measure differently: another event, another weighting.
fn profile_notes(base: &Capture, cand: &Capture) -> Vec<String> {
    let mut out = Vec::new();
    if base.profile.event != cand.profile.event {
        out.push(format!(
            "the two profiles sample different events ({} vs {}): shares compare, absolute counts do not",
            base.profile.event, cand.profile.event
        ));
    }
    if base.profile.weighted_by != cand.profile.weighted_by {
        out.push(format!(
            "the profiles are weighted differently (by {} vs by {}): one side's headers have no sample periods",
            base.profile.weighted_by.as_str(),
            cand.profile.weighted_by.as_str()
        ));
    }
    out
}

/// Each side's function counts, the candidate's renamed functions under the
/// baseline's names (said in a caveat).
fn counted_sides(
    base: &Capture,
    cand: &Capture,
    caveats: &mut Vec<String>,
) -> (SideCounts, SideCounts, Vec<(String, String)>) {
    let sb = side_counts(&base.profile);
    let mut sc = side_counts(&cand.profile);
    let renamed = crate::analyze::renames::align_renames(&sb, &mut sc);
    if !renamed.is_empty() {
        let list: Vec<String> = renamed.iter().map(|(b, c)| format!("{b} = {c}")).collect();
        caveats.push(format!(
            "functions renamed between the two kernels are compared as one (baseline = candidate name): {}",
            list.join(", ")
        ));
    }
    (sb, sc, renamed)
}

/// Between two kernel versions the headline says that the version is the first
/// suspect, whatever it names.
fn with_version_suspect(headline: String, [b, c]: [&SideSummary; 2]) -> String {
    match (&b.kernel, &c.kernel) {
        (Some(b), Some(c)) if b != c => format!(
            "{headline} Kernel versions differ ({b} → {c}): the version change is the first suspect."
        ),
        _ => headline,
    }
}

/// What a person would add when the mechanisms leave work unexplained: a diffuse
/// slowdown's suspects, the remainder's family and what to check.
fn reasoning_notes(
    attr: &attribute::AttributionResult,
    worse: bool,
    candidate_worse: bool,
    profile_shift: f64,
    (config_delta, runtime_delta): (&[ConfigChange], &[RuntimeChange]),
    [b, c]: [&SideSummary; 2],
) -> Vec<String> {
    let any_listed = attr
        .attributions
        .iter()
        .any(|x| x.confidence != Confidence::Low && (x.explained_share > 0.0) == candidate_worse);
    let mut notes: Vec<String> = reasoning::diffuse_note(
        worse,
        attr.unexplained_share,
        profile_shift,
        any_listed,
        config_delta,
        runtime_delta,
        [b.compiler.as_deref(), c.compiler.as_deref()],
    )
    .into_iter()
    .collect();
    if attr.unexplained_share >= 0.02 {
        let versions_differ = b.kernel.is_some() && c.kernel.is_some() && b.kernel != c.kernel;
        notes.extend(reasoning::describe_unexplained(
            &attr.unexplained_functions,
            any_listed,
            versions_differ,
        ));
    }
    notes
}

/// Puts a metric's decision into the metric: the interval, p and assessment the
/// tables show are the decision's.
fn record(m: &mut MetricDelta, d: MetricDecision) {
    // Worsening back to a relative change of the candidate.
    let s = m.better.worsening_sign();
    m.p_value = d.p_value;
    m.change_ci = d.worsening_ci.map(|[lo, hi]| {
        let (x, y) = (s * lo, s * hi);
        [x.min(y), x.max(y)]
    });
    m.assessment = match d.status {
        DecisionStatus::Regression => Assessment::Worse,
        DecisionStatus::Improvement => Assessment::Better,
        DecisionStatus::Same => Assessment::Same,
        DecisionStatus::Unknown => Assessment::Unclear,
    };
    m.decision = Some(d);
}

/// The strongest high-confidence attribution each way (more CPU on the candidate,
/// more on the baseline), for the CPU-evidence rule.
fn cpu_evidence(attrs: &[Attribution]) -> Vec<CpuEvidence> {
    let strongest = |more: bool| {
        attrs
            .iter()
            .filter(|a| a.confidence == Confidence::High && (a.explained_share > 0.0) == more)
            .max_by(|x, y| x.explained_share.abs().total_cmp(&y.explained_share.abs()))
            .map(|a| CpuEvidence {
                cause: a.cause.clone(),
                value: if more {
                    a.candidate.clone()
                } else {
                    a.baseline.clone()
                },
                explained: a.explained_share,
                confidence: a.confidence,
                p: a.p_value,
            })
    };
    [strongest(true), strongest(false)]
        .into_iter()
        .flatten()
        .collect()
}

/// A side with no samples cannot be analysed; one with few is noisy; samples of
/// other events were left out.
fn side_notes(c: &Capture, caveats: &mut Vec<String>, warnings: &mut Vec<String>) -> Result<()> {
    if c.profile.samples == 0 {
        bail!(
            "{}: the profile has no samples{} — was perf record running during the workload?",
            c.dir.display(),
            if c.profile.malformed_lines > 0 {
                format!(
                    " ({} unreadable lines: is it `perf script` text?)",
                    c.profile.malformed_lines
                )
            } else {
                String::new()
            }
        );
    }
    if c.profile.busy_samples() < 500 {
        caveats.push(format!(
            "{} has only {} busy samples: small shares are noise (record longer or at a higher frequency)",
            c.name,
            c.profile.busy_samples()
        ));
    }
    let first_boot = crate::rundir::FIRST_BOOT_CONSOLE;
    // A crash is a finding, not a note on the data: a caveat, shown, not folded away.
    if c.dir.join(first_boot).is_file() {
        caveats.push(format!(
            "{}: the guest's kernel crashed at its first boot and came up at the second ({first_boot}): a kernel that crashes sometimes is a finding of its own",
            c.name
        ));
    }
    for (attempt, line) in crashed_attempts(&c.dir) {
        caveats.push(format!(
            "{}: the guest's kernel crashed during the run ({line}; console kept in hosts/{attempt}/console.log) and the host was booted and captured again: a kernel that crashes sometimes is a finding of its own",
            c.name
        ));
    }
    if c.profile.dropped_samples > 0 {
        warnings.push(format!(
            "{}: dropped {} samples with no readable frame",
            c.name, c.profile.dropped_samples
        ));
    }
    for (ev, n) in &c.profile.other_events {
        warnings.push(format!(
            "{}: ignored {n} samples of event {ev} (analysed: {})",
            c.name, c.profile.event
        ));
    }
    Ok(())
}

/// The partial captures of this side kept aside (`hosts/<role>.attempt-N`) whose
/// guest console shows a kernel crash: their folder names and the crash's line.
fn crashed_attempts(dir: &Path) -> Vec<(String, String)> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.attempt", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let folder = e.file_name().to_string_lossy().into_owned();
            if !folder.starts_with(&prefix) {
                return None;
            }
            let line = crate::analyze::console::crash_in(&crate::rundir::HostDir::at(&e.path()))?;
            Some((folder, line))
        })
        .collect();
    out.sort();
    out
}

fn config_delta(
    base: &Capture,
    cand: &Capture,
    caveats: &mut Vec<String>,
) -> (Vec<ConfigChange>, ConfigDeltaCounts) {
    let (Some(b), Some(c)) = (&base.config, &cand.config) else {
        caveats.push("kernel config missing on one side: config options cannot be blamed".into());
        return (vec![], ConfigDeltaCounts::default());
    };
    if let (Some(ab), Some(ac)) = (b.arch(), c.arch()) {
        if ab != ac {
            caveats.push(format!("architectures differ: {ab} vs {ac}: most config and function differences follow from that"));
        }
    }
    let delta = kconfig::diff(b, c);
    let counts = kconfig::counts(&delta, b, c);
    if counts.one_kernel_only > 0 {
        caveats.push(format!(
            "{} config options exist in one kernel only (kernel versions {} vs {}): version effects, not blamed as knobs",
            counts.one_kernel_only,
            counts.baseline_version.as_deref().unwrap_or("?"),
            counts.candidate_version.as_deref().unwrap_or("?"),
        ));
    }
    (delta, counts)
}

/// The runtime delta, and a caveat for each confounder (kernel version, hardware).
fn runtime_changes(
    base: &Capture,
    cand: &Capture,
    caveats: &mut Vec<String>,
) -> Vec<RuntimeChange> {
    let (Some(b), Some(c)) = (&base.facts, &cand.facts) else {
        for side in [base, cand].into_iter().filter(|s| s.facts.is_none()) {
            let why = match side.unreadable.iter().find(|(f, _)| f == "facts.json") {
                Some((_, e)) => format!("facts.json of {} could not be read ({e})", side.name),
                None => format!("facts.json missing on {} (not captured)", side.name),
            };
            caveats.push(format!("{why}: runtime settings cannot be compared"));
        }
        return vec![];
    };
    let delta = runtime_delta(b, c);
    for r in delta.iter().filter(|r| r.kind == KeyKind::Confounder) {
        let what = match r.key.as_str() {
            "kernel" => "kernel versions differ",
            "nr_cpus" => "CPU counts differ",
            "cpu_model" => "CPU models differ",
            "memory_gib" => "memory sizes differ",
            "virtualization" => "virtualization differs",
            "os" => "distributions differ",
            "perf_version" => "perf versions differ",
            _ => continue,
        };
        if r.key == "kernel" {
            // Between versions everything changed at once: the version is the first
            // suspect, and a cause below is only what the data singles out.
            caveats.insert(0, format!(
                "kernel versions differ ({} → {}): the version change is the first suspect — thousands of functions and config options changed with it, so the causes listed are only what the profile singles out, and what remains is the version's (bisect the versions with git bisect to go further)",
                r.baseline, r.candidate
            ));
            continue;
        }
        caveats.push(format!("{what}: {} vs {}", r.baseline, r.candidate));
    }
    delta
}

/// Every cause of the two sides' deltas ([`gather`]), with the kernel source's
/// mapping when an option needs one.
fn causes(
    [base, cand]: [&Capture; 2],
    a: &Analyzer,
    (config_delta, runtime_delta): (&[ConfigChange], &[RuntimeChange]),
    counts: [&SideCounts; 2],
    caveats: &mut Vec<String>,
) -> Result<Vec<attribute::Cause>> {
    let wanted = gather::wanted_options(&a.kb, config_delta);
    let source_map = source_map(base, cand, a, &wanted, caveats)?;
    Ok(gather::gather(&CauseInputs {
        kb: &a.kb,
        config_delta,
        runtime_delta,
        profiles: [&base.profile, &cand.profile],
        counts,
        source_map: source_map.as_ref(),
    }))
}

/// The kernel source's mapping of the wanted options: from `--kernel-src DIR`, or
/// from the source the setup's finder fetches for the captured kernel (said in a
/// caveat when it is not exactly that kernel's, or could not be had). None when no
/// option needs one.
fn source_map(
    base: &Capture,
    cand: &Capture,
    a: &Analyzer,
    wanted: &BTreeSet<String>,
    caveats: &mut Vec<String>,
) -> Result<Option<BTreeMap<String, ksrc::OptionCode>>> {
    let machine = cand
        .config
        .as_ref()
        .and_then(|c| c.arch())
        .or_else(|| base.config.as_ref().and_then(|c| c.arch()))
        .unwrap_or(std::env::consts::ARCH);
    let root = match (&a.kernel_src, &a.find_source) {
        // Read even when no option needs it: a wrong folder is said at once.
        (Some(dir), _) => dir.clone(),
        (None, _) if wanted.is_empty() => return Ok(None),
        (None, Some(find)) => {
            let (b, c) = (KernelIdentity::of(base), KernelIdentity::of(cand));
            match (find.0)([&b, &c]) {
                Ok(Some(found)) => {
                    caveats.extend(found.note.clone());
                    found.root
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    caveats.push(format!(
                        "no kernel source for {} ({e:#}): {} differing options without a knowledge-base entry were matched by name only (pass --kernel-src DIR)",
                        c.release.as_deref().unwrap_or("the candidate's kernel"),
                        wanted.len()
                    ));
                    return Ok(None);
                }
            }
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(ksrc::map_options(
        &root,
        wanted,
        ksrc::arch_dir(machine),
    )?))
}

/// Writes the report of an analysis into a run directory (or `--out`): once.
pub fn write_report(out: &RunDir, a: &Analyzed, command: &str) -> Result<()> {
    crate::report::write_all(out, &a.summary, [&a.base.profile, &a.cand.profile], command)
}

/// `kdelta analyze RUN_DIR`: analyses what the run captured and writes its report.
/// The metrics are decided at the limits of the run's own playbook.
pub fn report_run_dir(dir: &Path, setup: &AnalysisSetup, command: &str) -> Result<Summary> {
    let mut setup = setup.clone();
    let rd = RunDir::open(dir);
    if setup.limits.is_none() {
        let copy = std::fs::read_to_string(rd.playbook()).unwrap_or_default();
        setup.limits = crate::playbook::gate_limits(&copy);
    }
    // An adaptive run looked at its data several times: the same level per look.
    if let Some(a) = rd.read_run_record().ok().and_then(|r| r.adaptive) {
        setup.looks = a.looks;
    }
    // What verify and bisect showed stays: they are not re-run by a re-analysis.
    let proof = rd.read_summary().ok().and_then(|s| s.proof);
    let mut a = analyze_run_dir(dir, &setup.load()?, None)?;
    a.summary.proof = proof;
    write_report(&RunDir::open(dir), &a, command)?;
    Ok(a.summary)
}

/// `kdelta analyze --baseline A --candidate B --out OUT`.
pub fn report_folders(
    b: &Path,
    c: &Path,
    out: &Path,
    setup: &AnalysisSetup,
    command: &str,
) -> Result<Summary> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let a = analyze_folders(b, c, &setup.load()?)?;
    write_report(&RunDir::open(out), &a, command)?;
    Ok(a.summary)
}
