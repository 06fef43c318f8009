//! Analysis of two capture folders: profile, config, runtime and metric deltas, the
//! attribution, and the verdict. Produces `summary.json` (design.md §4).
//!
//! A capture folder needs only `perf.script` (or `perf.script.zst`); each missing
//! file lowers what can be said, and the summary says so in `missing` and `caveats`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::attribute::{self, AttributeOptions, KnowledgeBase};
use crate::facts::{self, KeyKind};
use crate::fold::{self, FoldOptions, Profile};
use crate::kconfig::{self, KernelConfig};
use crate::model::*;
use crate::stats;

/// One side, loaded.
pub struct Capture {
    pub name: String,
    pub dir: PathBuf,
    pub profile: Profile,
    pub config: Option<KernelConfig>,
    pub facts: Option<Facts>,
    pub metrics: Option<Metrics>,
    pub files: Vec<String>,
    pub missing: Vec<String>,
    pub warnings: Vec<String>,
}

/// Finds the profile file of a capture folder.
pub fn profile_path(dir: &Path) -> Option<PathBuf> {
    ["perf.script.zst", "perf.script"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

pub fn load_capture(dir: &Path, name: &str, fold_opts: &FoldOptions) -> Result<Capture> {
    if !dir.is_dir() {
        bail!(
            "{}: not a capture folder (expected a directory with perf.script or perf.script.zst)",
            dir.display()
        );
    }
    let Some(pp) = profile_path(dir) else {
        bail!(
            "{}: no perf.script or perf.script.zst (capture one with `perf record -a -g -- sleep 10; perf script > perf.script`)",
            dir.display()
        );
    };
    let profile =
        fold::fold_file(&pp, fold_opts).with_context(|| format!("cannot read {}", pp.display()))?;
    let mut c = Capture {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        files: vec![pp
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()],
        profile,
        config: None,
        facts: None,
        metrics: None,
        missing: vec![],
        warnings: vec![],
    };
    c.warnings.extend(c.profile.warnings.iter().cloned());
    if c.profile.malformed_lines > c.profile.warnings.len() as u64 {
        c.warnings.push(format!(
            "{}: {} unreadable lines in all",
            pp.display(),
            c.profile.malformed_lines
        ));
    }
    let cfg_path = dir.join("kernel.config");
    if cfg_path.is_file() {
        let cfg = KernelConfig::read(&cfg_path)
            .with_context(|| format!("cannot read {}", cfg_path.display()))?;
        for (line, text) in &cfg.junk {
            c.warnings.push(format!(
                "{}:{line}: not a config line: {text:?}",
                cfg_path.display()
            ));
        }
        if cfg.options.is_empty() {
            c.warnings
                .push(format!("{}: no CONFIG_ options in it", cfg_path.display()));
        }
        c.config = Some(cfg);
        c.files.push("kernel.config".into());
    } else {
        c.missing.push("kernel.config".into());
    }
    let facts_path = dir.join("facts.json");
    if facts_path.is_file() {
        match std::fs::read_to_string(&facts_path)
            .map_err(anyhow::Error::from)
            .and_then(|t| serde_json::from_str::<Facts>(&t).map_err(anyhow::Error::from))
        {
            Ok(f) => {
                c.facts = Some(f);
                c.files.push("facts.json".into());
            }
            Err(e) => c
                .warnings
                .push(format!("{}: ignored: {e}", facts_path.display())),
        }
    } else {
        c.missing.push("facts.json".into());
    }
    let metrics_path = dir.join("metrics.json");
    if metrics_path.is_file() {
        match std::fs::read_to_string(&metrics_path)
            .map_err(anyhow::Error::from)
            .and_then(|t| serde_json::from_str::<Metrics>(&t).map_err(anyhow::Error::from))
        {
            Ok(m) => {
                c.metrics = Some(m);
                c.files.push("metrics.json".into());
            }
            Err(e) => c
                .warnings
                .push(format!("{}: ignored: {e}", metrics_path.display())),
        }
    } else {
        c.missing.push("metrics.json".into());
    }
    Ok(c)
}

#[derive(Clone, Debug, Default)]
pub struct AnalyzeOptions {
    pub attribute: AttributeOptions,
    /// Functions kept in the summary's table. Default 300.
    pub max_functions: usize,
    /// A kernel source tree for mapping options to functions (`--kernel-src`).
    pub kernel_src: Option<PathBuf>,
}

fn side_summary(c: &Capture) -> SideSummary {
    let f = c.facts.as_ref();
    SideSummary {
        name: c.name.clone(),
        kernel: f.and_then(|f| f.kernel.clone()),
        samples: c.profile.samples,
        busy_samples: c.profile.busy_samples(),
        idle_share: c.profile.idle_share(),
        event: c.profile.event.clone(),
        repeats: c.profile.repeats,
        nr_cpus: f.and_then(|f| f.nr_cpus),
        cpu_model: f.and_then(|f| f.cpu_model.clone()),
        virtualization: f.and_then(|f| f.virtualization.clone()),
        files: c.files.clone(),
        missing: c.missing.clone(),
    }
}

/// Runtime delta from two facts files.
pub fn runtime_delta(b: &Facts, c: &Facts) -> Vec<RuntimeChange> {
    let fb = facts::flatten(b);
    let fc = facts::flatten(c);
    let keys: BTreeSet<&String> = fb.keys().chain(fc.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        let (vb, vc) = (fb.get(k), fc.get(k));
        let (sb, sc, kind) = match (vb, vc) {
            (Some(x), Some(y)) => {
                if x.0 == y.0 {
                    continue;
                }
                (x.0.clone(), y.0.clone(), x.1)
            }
            (Some(x), None) => {
                if !facts::one_sided_counts(k, &fc) {
                    continue;
                }
                (x.0.clone(), "(absent)".to_string(), x.1)
            }
            (None, Some(y)) => {
                if !facts::one_sided_counts(k, &fb) {
                    continue;
                }
                ("(absent)".to_string(), y.0.clone(), y.1)
            }
            (None, None) => continue,
        };
        out.push(RuntimeChange {
            key: k.clone(),
            baseline: sb,
            candidate: sc,
            kind: match kind {
                KeyKind::Knob => "knob".into(),
                KeyKind::Confounder => "confounder".into(),
            },
        });
    }
    out
}

fn metric_deltas(b: Option<&Metrics>, c: Option<&Metrics>) -> Vec<MetricDelta> {
    let (Some(b), Some(c)) = (b, c) else {
        return vec![];
    };
    let mut out = Vec::new();
    for mb in &b.metrics {
        let Some(mc) = c.metrics.iter().find(|m| m.name == mb.name) else {
            continue;
        };
        let vb: Vec<f64> = mb
            .values
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        let vc: Vec<f64> = mc
            .values
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if vb.is_empty() || vc.is_empty() {
            continue;
        }
        let paired = mb.values.len() == mc.values.len()
            && mb
                .values
                .iter()
                .chain(&mc.values)
                .all(|v| v.is_some_and(f64::is_finite));
        let (ab, ac) = (stats::mean(&vb), stats::mean(&vc));
        let change = if ab != 0.0 { ac / ab - 1.0 } else { 0.0 };
        let p = stats::welch_t(&vb, &vc).map(|t| t.2);
        let ci = stats::bootstrap_relative_change(&vb, &vc, 4000);
        let worse = match mb.better {
            Better::Higher => change < 0.0,
            Better::Lower => change > 0.0,
        };
        // Decide: with repeats, a significant change of at least 2%; from single
        // runs, a change of at least 5% (and the report says it is one run).
        let decided = match p {
            Some(p) => p < 0.05 && change.abs() >= 0.02,
            None => change.abs() >= 0.05,
        };
        let assessment = if decided {
            if worse {
                "worse"
            } else {
                "better"
            }
        } else if p.is_some_and(|p| p >= 0.05) && change.abs() >= 0.05 {
            "unclear"
        } else {
            "same"
        };
        out.push(MetricDelta {
            name: mb.name.clone(),
            unit: mb.unit.clone(),
            better: mb.better,
            baseline: ab,
            candidate: ac,
            change,
            p_value: p,
            change_ci: ci,
            paired,
            baseline_values: vb,
            candidate_values: vc,
            assessment: assessment.into(),
        });
    }
    out
}

fn function_deltas(
    b: &attribute::SideCounts,
    c: &attribute::SideCounts,
    max: usize,
) -> (Vec<FunctionDelta>, f64) {
    let names: BTreeSet<&String> = b.functions.keys().chain(c.functions.keys()).collect();
    let share = |x: u64, n: u64| if n == 0 { 0.0 } else { x as f64 / n as f64 };
    let n_tests = names.len().max(1) as f64;
    let mut shift = 0.0;
    let mut out = Vec::new();
    for f in names {
        let fb = b.functions.get(f).cloned().unwrap_or_default();
        let fc = c.functions.get(f).cloned().unwrap_or_default();
        let (ib, ic) = (share(fb.inclusive, b.busy), share(fc.inclusive, c.busy));
        let (sb, sc) = (share(fb.self_, b.busy), share(fc.self_, c.busy));
        shift += (sc - sb).abs() / 2.0;
        let p = stats::two_proportion_p(fc.inclusive, c.busy, fb.inclusive, b.busy);
        let delta = ic - ib;
        // Bonferroni over all functions compared, and at least 0.1 point of busy time.
        let significant = p < 0.05 / n_tests && delta.abs() >= 0.001;
        let only_on = match (fb.inclusive, fc.inclusive) {
            (0, x) if x > 0 => Some("candidate".to_string()),
            (x, 0) if x > 0 => Some("baseline".to_string()),
            _ => None,
        };
        let per = |fc: &attribute::FnCounts, side: &attribute::SideCounts| -> Vec<f64> {
            side.per_repeat_busy
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| *fc.per_repeat.get(i).unwrap_or(&0) as f64 / *n as f64)
                .collect()
        };
        let (rb, rc) = (per(&fb, b), per(&fc, c));
        let repeat_p = stats::welch_t(&rb, &rc).map(|t| t.2);
        let (delta_ci, method) = if rb.len() >= 3 && rc.len() >= 3 {
            (
                stats::bootstrap_difference(&rb, &rc, 1000),
                "repeats-bootstrap",
            )
        } else {
            (
                stats::proportion_difference_ci(fb.inclusive, b.busy, fc.inclusive, c.busy),
                "counts",
            )
        };
        out.push(FunctionDelta {
            symbol: f.clone(),
            kernel: fb.kernel || fc.kernel,
            baseline_share: ib,
            candidate_share: ic,
            baseline_self: sb,
            candidate_self: sc,
            delta,
            p_value: p,
            significant,
            only_on,
            repeat_p_value: repeat_p,
            delta_ci,
            delta_ci_method: delta_ci.map(|_| method.to_string()),
        });
    }
    // Keep what matters for a reader: the biggest changes, then the hottest.
    out.sort_by(|a, b| {
        b.delta
            .abs()
            .total_cmp(&a.delta.abs())
            .then(a.symbol.cmp(&b.symbol))
    });
    out.truncate(max);
    (out, shift)
}

fn pct(x: f64) -> String {
    let v = x * 100.0 + 0.0;
    if v.abs() >= 10.0 {
        format!("{v:.0}%")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}%")
    } else {
        format!("{v:.2}%")
    }
}

/// `8.07e9 bit/s` → `8.07 Gbit/s`.
pub fn human(v: f64, unit: &str) -> String {
    let a = v.abs();
    let (div, prefix) = if a >= 1e12 {
        (1e12, "T")
    } else if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e4 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let x = v / div;
    let num = if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    };
    if unit.is_empty() && prefix.is_empty() {
        num
    } else {
        format!("{num} {prefix}{unit}")
    }
}

/// The whole analysis.
pub fn analyze(
    base: &Capture,
    cand: &Capture,
    kb: &KnowledgeBase,
    opts: &AnalyzeOptions,
) -> Result<Summary> {
    let mut caveats = Vec::new();
    let mut warnings: Vec<String> = base
        .warnings
        .iter()
        .chain(cand.warnings.iter())
        .cloned()
        .collect();
    for c in [base, cand] {
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
        for (ev, n) in &c.profile.other_events {
            warnings.push(format!(
                "{}: ignored {n} samples of event {ev} (analysed: {})",
                c.name, c.profile.event
            ));
        }
    }
    if base.profile.event != cand.profile.event {
        caveats.push(format!(
            "the two profiles sample different events ({} vs {}): shares compare, absolute counts do not",
            base.profile.event, cand.profile.event
        ));
    }

    let config_delta = match (&base.config, &cand.config) {
        (Some(b), Some(c)) => {
            if let (Some(ab), Some(ac)) = (b.arch(), c.arch()) {
                if ab != ac {
                    caveats.push(format!("architectures differ: {ab} vs {ac}: most config and function differences follow from that"));
                }
            }
            kconfig::diff(b, c)
        }
        _ => {
            caveats
                .push("kernel config missing on one side: config options cannot be blamed".into());
            vec![]
        }
    };
    let runtime_delta = match (&base.facts, &cand.facts) {
        (Some(b), Some(c)) => runtime_delta(b, c),
        _ => {
            caveats
                .push("facts.json missing on one side: runtime settings cannot be compared".into());
            vec![]
        }
    };
    for r in runtime_delta.iter().filter(|r| r.kind == "confounder") {
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
        caveats.push(format!("{what}: {} vs {}", r.baseline, r.candidate));
    }

    let metrics = metric_deltas(base.metrics.as_ref(), cand.metrics.as_ref());
    let sb = attribute::side_counts(&base.profile);
    let sc = attribute::side_counts(&cand.profile);
    let (functions, profile_shift) = function_deltas(&sb, &sc, opts.max_functions.max(1));

    // Causes: knowledge base first, then the kernel-source mapping and name
    // matches for options the knowledge base does not cover.
    let mut causes = attribute::build_causes(kb, &config_delta, &runtime_delta);
    let mut covered = attribute::covered_options(kb);
    if let Some(src) = &opts.kernel_src {
        let wanted: BTreeSet<String> = config_delta
            .iter()
            .filter(|c| !covered.contains(&c.option))
            .map(|c| c.option.clone())
            .collect();
        let machine = cand
            .config
            .as_ref()
            .and_then(|c| c.arch())
            .or_else(|| base.config.as_ref().and_then(|c| c.arch()))
            .unwrap_or(std::env::consts::ARCH);
        let map = crate::ksrc::map_options(src, &wanted, crate::ksrc::arch_dir(machine))?;
        let mapped = attribute::source_map_causes(&config_delta, &covered, &map, &sb, &sc);
        covered.extend(mapped.iter().map(|c| c.name.clone()));
        causes.extend(mapped);
    }
    causes.extend(attribute::name_match_causes(
        &config_delta,
        &covered,
        &sb,
        &sc,
    ));

    let worse = metrics.iter().any(|m| m.assessment == "worse");
    let better = metrics.iter().any(|m| m.assessment == "better");
    // Without a metric verdict, explain what is hotter on the candidate.
    let candidate_worse = worse || !better;
    let attr = attribute::attribute(
        &causes,
        &base.profile,
        &cand.profile,
        candidate_worse,
        &opts.attribute,
    );
    caveats.extend(attr.caveats);

    let (status, headline) = verdict(
        base,
        cand,
        &metrics,
        &attr.attributions,
        &attr.unexplained_functions,
        &causes,
    );
    let idle_note = (cand.profile.idle_share() - base.profile.idle_share()).abs() > 0.1;
    if idle_note {
        caveats.push(format!(
            "idle share differs a lot ({} vs {}): shares are of busy time on each side",
            pct(base.profile.idle_share()),
            pct(cand.profile.idle_share())
        ));
    }
    Ok(Summary {
        schema: 1,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        baseline: side_summary(base),
        candidate: side_summary(cand),
        verdict: Verdict { status, headline },
        metrics,
        functions,
        config_delta,
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
    })
}

fn verdict(
    base: &Capture,
    cand: &Capture,
    metrics: &[MetricDelta],
    attributions: &[Attribution],
    unexplained: &[FunctionShare],
    causes: &[attribute::Cause],
) -> (VerdictStatus, String) {
    let worst = metrics
        .iter()
        .filter(|m| m.assessment == "worse")
        .max_by(|a, b| a.change.abs().total_cmp(&b.change.abs()));
    let best = metrics
        .iter()
        .filter(|m| m.assessment == "better")
        .max_by(|a, b| a.change.abs().total_cmp(&b.change.abs()));
    let unclear = metrics.iter().any(|m| m.assessment == "unclear");
    let describe_metric = |m: &MetricDelta| {
        let dir = if m.change < 0.0 { "down" } else { "up" };
        let p = match m.p_value {
            Some(p) if p < 0.001 => ", p<0.001".to_string(),
            Some(p) => format!(", p={p:.3}"),
            None if m.baseline_values.len() == 1 && m.candidate_values.len() == 1 => {
                ", single run".to_string()
            }
            None => format!(
                ", {} vs {} runs: no test",
                m.baseline_values.len(),
                m.candidate_values.len()
            ),
        };
        format!(
            "{} {dir} {} ({} → {}{p})",
            m.name,
            pct(m.change.abs()),
            human(m.baseline, &m.unit),
            human(m.candidate, &m.unit)
        )
    };
    let describe_cause = |a: &Attribution, side: &str| {
        let title = causes
            .iter()
            .find(|c| c.name == a.cause)
            .map(|c| c.title.clone())
            .unwrap_or_default();
        let what = if title.is_empty() {
            String::new()
        } else {
            format!(" {title}")
        };
        format!(
            "{} more of the {side}'s busy CPU is{what} work ({} = {} on the {side}, {} on the other; {} confidence)",
            pct(a.explained_share.abs()),
            a.cause,
            if side == "candidate" { &a.candidate } else { &a.baseline },
            if side == "candidate" { &a.baseline } else { &a.candidate },
            a.confidence
        )
    };
    let top_unexplained = || {
        let names: Vec<String> = unexplained
            .iter()
            .take(3)
            .map(|f| f.symbol.clone())
            .collect();
        if names.is_empty() {
            "no configuration or runtime difference explains the profile change".to_string()
        } else {
            format!(
                "no configuration or runtime difference explains it; the extra time is in {}",
                names.join(", ")
            )
        }
    };
    let supported: Vec<&Attribution> = attributions
        .iter()
        .filter(|a| a.confidence != "low")
        .collect();
    if let Some(m) = worst {
        let why = match supported.iter().find(|a| a.explained_share > 0.0) {
            Some(a) => describe_cause(a, "candidate"),
            None => top_unexplained(),
        };
        return (
            VerdictStatus::Regression,
            format!("Candidate is worse: {}; {why}.", describe_metric(m)),
        );
    }
    if let Some(m) = best {
        let why = match supported.iter().find(|a| a.explained_share < 0.0) {
            Some(a) => describe_cause(a, "baseline"),
            None => "no single configuration difference explains it".to_string(),
        };
        return (
            VerdictStatus::Improvement,
            format!("Candidate is better: {}; {why}.", describe_metric(m)),
        );
    }
    if unclear {
        let names: Vec<&str> = metrics
            .iter()
            .filter(|m| m.assessment == "unclear")
            .map(|m| m.name.as_str())
            .collect();
        return (
            VerdictStatus::Inconclusive,
            format!("Too noisy to decide: {} changed but not significantly across repeats; run more repeats.", names.join(", ")),
        );
    }
    // No metric moved (or none given): judge from the profile.
    let top = supported.first();
    let metric_note = if metrics.is_empty() {
        "no workload metrics"
    } else {
        "workload metrics unchanged"
    };
    match top {
        Some(a) if a.explained_share >= 0.02 && a.confidence == "high" => (
            if metrics.is_empty() {
                VerdictStatus::Regression
            } else {
                VerdictStatus::NoChange
            },
            format!(
                "{}: {} ({metric_note}).",
                if metrics.is_empty() {
                    "Candidate burns more CPU"
                } else {
                    "Same speed, different profile"
                },
                describe_cause(a, "candidate")
            ),
        ),
        Some(a) if a.explained_share <= -0.02 && a.confidence == "high" => (
            if metrics.is_empty() {
                VerdictStatus::Improvement
            } else {
                VerdictStatus::NoChange
            },
            format!(
                "Candidate burns less CPU: {} ({metric_note}).",
                describe_cause(a, "baseline")
            ),
        ),
        _ => {
            let busy_b = 1.0 - base.profile.idle_share();
            let busy_c = 1.0 - cand.profile.idle_share();
            if attributions.is_empty()
                && unexplained
                    .iter()
                    .map(|f| (f.candidate_share - f.baseline_share).abs())
                    .sum::<f64>()
                    < 0.05
            {
                (
                    VerdictStatus::NoChange,
                    format!(
                        "No meaningful difference: {metric_note}, busy CPU {} vs {}, and no configuration or runtime difference shows in the profile.",
                        pct(busy_b),
                        pct(busy_c)
                    ),
                )
            } else {
                (
                    VerdictStatus::Inconclusive,
                    format!(
                        "The profiles differ but nothing is clear: {metric_note}; {}.",
                        top_unexplained()
                    ),
                )
            }
        }
    }
}

/// Reads the two capture folders of a run directory.
pub fn run_dir_sides(run_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let b = run_dir.join("hosts").join("baseline");
    let c = run_dir.join("hosts").join("candidate");
    if !b.is_dir() || !c.is_dir() {
        bail!(
            "{}: not a run directory (expected hosts/baseline/ and hosts/candidate/); for two capture folders use --baseline and --candidate",
            run_dir.display()
        );
    }
    Ok((b, c))
}
