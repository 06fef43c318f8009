//! Attribution: which config or runtime delta explains the profile difference.
//!
//! Every delta item (a config option or runtime key that differs) that the knowledge
//! base, a name match or a kernel source tree ties to kernel functions becomes a
//! *cause* with a matcher. Each busy sample is charged once, to the cause of the frame
//! nearest the leaf that matches one, so generic helpers are charged to the specific
//! caller above them and nothing is counted twice. A cause's explained share is its
//! charged share of busy samples on the candidate minus that on the baseline.
//!
//! Honesty rules: a cause is listed only when the difference is large enough and
//! significant; when the option differs in the wrong direction for its functions, it
//! is not listed (and a caveat says why); what nothing explains is reported with its
//! top functions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use regex::Regex;
use serde::Deserialize;

use crate::fold::Profile;
use crate::kconfig::ConfigChange;
use crate::model::{
    Attribution, CauseShare, Evidence, EvidenceStack, FunctionShare, RuntimeChange,
};
use crate::stats::two_proportion_p;

/// The knowledge base shipped with kdelta (`configs/attribution.yaml`).
pub const BUILTIN_KB: &str = include_str!("../../configs/attribution.yaml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeBase {
    pub entries: Vec<KbEntry>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct KbEntry {
    pub id: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default)]
    pub runtime: Vec<String>,
    #[serde(default = "default_hot")]
    pub hot_when: HotWhen,
    #[serde(default)]
    pub symbols: Vec<String>,
    #[serde(default)]
    pub context: Vec<ContextRule>,
    pub why: String,
    #[serde(default)]
    pub example: Vec<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ContextRule {
    pub symbol: String,
    pub callers: Vec<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HotWhen {
    Enabled,
    Disabled,
    Either,
}

fn default_hot() -> HotWhen {
    HotWhen::Enabled
}

impl KnowledgeBase {
    pub fn builtin() -> Result<KnowledgeBase> {
        Self::parse(BUILTIN_KB, "configs/attribution.yaml (built in)")
    }

    pub fn load(path: &Path) -> Result<KnowledgeBase> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read knowledge base {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, label: &str) -> Result<KnowledgeBase> {
        let kb: KnowledgeBase =
            serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
        for e in &kb.entries {
            for g in e.symbols.iter().chain(
                e.context
                    .iter()
                    .flat_map(|c| std::iter::once(&c.symbol).chain(c.callers.iter())),
            ) {
                glob_regex(g)
                    .with_context(|| format!("{label}: entry `{}`: bad glob `{g}`", e.id))?;
            }
        }
        Ok(kb)
    }
}

/// `kasan_*` → `^kasan_.*$`; `*` is the only wildcard.
pub fn glob_regex(glob: &str) -> Result<Regex> {
    let mut re = String::from("^");
    for (i, part) in glob.split('*').enumerate() {
        if i > 0 {
            re.push_str(".*");
        }
        re.push_str(&regex::escape(part));
    }
    re.push('$');
    Ok(Regex::new(&re)?)
}

fn glob_set(globs: &[String]) -> Option<Regex> {
    if globs.is_empty() {
        return None;
    }
    let alts: Vec<String> = globs
        .iter()
        .map(|g| {
            g.split('*')
                .map(regex::escape)
                .collect::<Vec<_>>()
                .join(".*")
        })
        .collect();
    Regex::new(&format!("^(?:{})$", alts.join("|"))).ok()
}

/// Is a config or runtime value "on"?
pub fn is_enabled_value(v: &str) -> bool {
    let v = v.trim().trim_matches('"').to_ascii_lowercase();
    !matches!(
        v.as_str(),
        "" | "n"
            | "no"
            | "0"
            | "off"
            | "false"
            | "never"
            | "disabled"
            | "(absent)"
            | "none"
            | "noop"
    ) && !v.starts_with("not affected")
        // `mitigations.*`: the CPU is exposed, no mitigation runs.
        && !v.starts_with("vulnerable")
}

/// One delta item tied to functions.
#[derive(Debug)]
pub struct Cause {
    pub name: String,
    pub kind: String,
    pub title: String,
    pub baseline: String,
    pub candidate: String,
    pub related: Vec<String>,
    pub why: String,
    pub source: String,
    pub hot_when: HotWhen,
    symbols: Option<Regex>,
    context: Vec<(Regex, Regex)>,
    /// Exact function names (name matches and kernel-source mapping).
    names: BTreeSet<String>,
    /// Every (key, baseline, candidate) behind the cause, primary first.
    hits: Vec<(String, String, String)>,
}

impl Cause {
    /// A cause from one config option and exact function names (the mechanisms that
    /// need no knowledge-base entry).
    fn for_option(
        c: &ConfigChange,
        why: String,
        source: &str,
        hot_when: HotWhen,
        names: BTreeSet<String>,
    ) -> Cause {
        Cause {
            name: c.option.clone(),
            kind: "kconfig".into(),
            title: c.option.trim_start_matches("CONFIG_").to_ascii_lowercase(),
            baseline: c.baseline.clone(),
            candidate: c.candidate.clone(),
            related: vec![],
            why,
            source: source.into(),
            hot_when,
            symbols: None,
            context: vec![],
            names,
            hits: vec![(c.option.clone(), c.baseline.clone(), c.candidate.clone())],
        }
    }

    fn matches_name(&self, f: &str) -> bool {
        self.names.contains(f) || self.symbols.as_ref().is_some_and(|r| r.is_match(f))
    }
    /// The side on which this cause's functions should be hotter, if known:
    /// Some(true) = candidate, Some(false) = baseline. Read from the first of the
    /// cause's keys whose feature is on on one side only (`nopti` → PTI off).
    pub fn expected_hot_candidate(&self) -> Option<bool> {
        self.hits.iter().find_map(|(key, b, c)| {
            let (b, c) = (feature_on(key, b), feature_on(key, c));
            if b == c {
                return None;
            }
            match self.hot_when {
                HotWhen::Enabled => Some(c),
                HotWhen::Disabled => Some(b),
                HotWhen::Either => None,
            }
        })
    }
}

/// Whether a key's value turns its feature on. Boot flags named `no…` (`nopti`,
/// `nosmt`) turn it off when present.
pub fn feature_on(key: &str, value: &str) -> bool {
    let on = is_enabled_value(value);
    match key.strip_prefix("cmdline.") {
        Some(p) if p.starts_with("no") && p.len() > 3 => !on,
        _ => on,
    }
}

/// Builds the causes active for these deltas, knowledge-base entries first.
pub fn build_causes(
    kb: &KnowledgeBase,
    config_delta: &[ConfigChange],
    runtime_delta: &[RuntimeChange],
) -> Vec<Cause> {
    let cfg: HashMap<&str, &ConfigChange> = config_delta
        .iter()
        .map(|c| (c.option.as_str(), c))
        .collect();
    let mut causes = Vec::new();
    for e in &kb.entries {
        let mut hits: Vec<(String, String, String, &'static str)> = Vec::new();
        for o in &e.options {
            if let Some(c) = cfg.get(o.as_str()) {
                hits.push((
                    o.clone(),
                    c.baseline.clone(),
                    c.candidate.clone(),
                    "kconfig",
                ));
            }
        }
        for pat in &e.runtime {
            let Ok(re) = glob_regex(pat) else { continue };
            for r in runtime_delta
                .iter()
                .filter(|r| r.kind == "knob" && re.is_match(&r.key))
            {
                if !hits.iter().any(|h| h.0 == r.key) {
                    hits.push((
                        r.key.clone(),
                        r.baseline.clone(),
                        r.candidate.clone(),
                        kind_of_key(&r.key),
                    ));
                }
            }
        }
        let Some(primary) = hits.first().cloned() else {
            continue;
        };
        let context = e
            .context
            .iter()
            .filter_map(|c| Some((glob_regex(&c.symbol).ok()?, glob_set(&c.callers)?)))
            .collect();
        causes.push(Cause {
            name: primary.0,
            kind: primary.3.to_string(),
            title: e.title.clone().unwrap_or_else(|| e.id.replace('_', " ")),
            baseline: primary.1,
            candidate: primary.2,
            related: hits.iter().skip(1).map(|h| h.0.clone()).collect(),
            why: e.why.clone(),
            source: "knowledge-base".into(),
            hot_when: e.hot_when,
            symbols: glob_set(&e.symbols),
            context,
            names: BTreeSet::new(),
            hits: hits
                .iter()
                .map(|h| (h.0.clone(), h.1.clone(), h.2.clone()))
                .collect(),
        });
    }
    causes
}

fn kind_of_key(key: &str) -> &'static str {
    if key.starts_with("cmdline.") {
        "cmdline"
    } else if key.starts_with("sysctl.") {
        "sysctl"
    } else {
        "runtime"
    }
}

/// Candidate name tokens for an option: `CONFIG_DEBUG_KMEMLEAK` → `debug_kmemleak`,
/// `kmemleak`. Short or generic tokens are dropped: they would match anything.
pub fn option_tokens(option: &str) -> Vec<String> {
    let base = option.trim_start_matches("CONFIG_").to_ascii_lowercase();
    let parts: Vec<&str> = base.split('_').collect();
    let mut out = Vec::new();
    if base.len() >= 4 {
        out.push(base.clone());
    }
    for i in 1..parts.len() {
        let suffix = parts[i..].join("_");
        let segs = parts.len() - i;
        if (segs >= 2 && suffix.len() >= 6) || (segs == 1 && suffix.len() >= 7) {
            out.push(suffix);
        }
    }
    const GENERIC: &[&str] = &[
        "default", "enabled", "support", "stats", "debug", "common", "generic",
    ];
    out.retain(|t| !GENERIC.contains(&t.as_str()));
    out
}

/// A function that ran on `here` (in at least 3 samples) and never on `there`: what
/// code that exists with one value of an option only looks like in two profiles.
fn seen_only_on(f: &str, here: &SideCounts, there: &SideCounts) -> bool {
    here.functions.get(f).is_some_and(|x| x.inclusive >= 3)
        && there.functions.get(f).is_none_or(|x| x.inclusive == 0)
}

/// The general mechanism that needs no knowledge-base entry: functions seen on one
/// side only whose names contain the option's name.
pub fn name_match_causes(
    config_delta: &[ConfigChange],
    covered: &BTreeSet<String>,
    base: &SideCounts,
    cand: &SideCounts,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    for c in config_delta {
        if covered.contains(&c.option) {
            continue;
        }
        let tokens = option_tokens(&c.option);
        if tokens.is_empty() {
            continue;
        }
        let mut names = BTreeSet::new();
        for (side, other) in [(cand, base), (base, cand)] {
            for f in side.functions.keys() {
                if seen_only_on(f, side, other) {
                    let lf = f.to_ascii_lowercase();
                    if tokens.iter().any(|t| lf.contains(t.as_str())) {
                        names.insert(f.clone());
                    }
                }
            }
        }
        if names.is_empty() {
            continue;
        }
        causes.push(Cause::for_option(
            c,
            format!(
                "functions named after {} run on one side only (no knowledge-base entry; matched by name)",
                c.option
            ),
            "name-match",
            HotWhen::Enabled,
            names,
        ));
    }
    causes
}

/// Causes from the kernel-source mapping (`--kernel-src`): functions compiled only
/// with one value of an option, seen on the side that has that value and absent on
/// the other (a same-named function on both sides is not option-exclusive here).
pub fn source_map_causes(
    config_delta: &[ConfigChange],
    covered: &BTreeSet<String>,
    map: &BTreeMap<String, crate::ksrc::OptionCode>,
    base: &SideCounts,
    cand: &SideCounts,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    for c in config_delta {
        if covered.contains(&c.option) {
            continue;
        }
        let Some(code) = map.get(&c.option) else {
            continue;
        };
        let (b_on, c_on) = (
            is_enabled_value(&c.baseline),
            is_enabled_value(&c.candidate),
        );
        if b_on == c_on {
            continue; // e.g. a number that changed: no side lacks the code
        }
        let (on, off) = if c_on { (cand, base) } else { (base, cand) };
        let enabled: BTreeSet<String> = code
            .when_enabled
            .iter()
            .filter(|f| seen_only_on(f, on, off))
            .cloned()
            .collect();
        let disabled: BTreeSet<String> = code
            .when_disabled
            .iter()
            .filter(|f| seen_only_on(f, off, on))
            .cloned()
            .collect();
        let hot_when = match (enabled.is_empty(), disabled.is_empty()) {
            (true, true) => continue,
            (false, true) => HotWhen::Enabled,
            (true, false) => HotWhen::Disabled,
            (false, false) => HotWhen::Either,
        };
        let files: Vec<&String> = code.files.iter().take(3).collect();
        causes.push(Cause::for_option(
            c,
            format!(
                "the kernel source builds these functions only when {} is {} ({}{}); no knowledge-base entry",
                c.option,
                if hot_when == HotWhen::Disabled { "off" } else { "on" },
                files.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "),
                if code.files.len() > 3 { ", …" } else { "" }
            ),
            "kernel-source",
            hot_when,
            enabled.into_iter().chain(disabled).collect(),
        ));
    }
    causes
}

/// Per-function busy-sample counts of one side.
#[derive(Default, Debug)]
pub struct SideCounts {
    pub busy: u64,
    pub functions: BTreeMap<String, FnCounts>,
    pub per_repeat_busy: Vec<u64>,
}

#[derive(Default, Debug, Clone)]
pub struct FnCounts {
    pub self_: u64,
    pub inclusive: u64,
    pub kernel: bool,
    pub per_repeat: Vec<u64>,
}

pub fn side_counts(p: &Profile) -> SideCounts {
    let mut sc = SideCounts {
        per_repeat_busy: p.busy_per_repeat(),
        ..Default::default()
    };
    let nrep = sc.per_repeat_busy.len();
    let mut by_id: Vec<FnCounts> = vec![FnCounts::default(); p.names.len()];
    let mut seen: Vec<u32> = Vec::with_capacity(64);
    for s in p.stacks.iter().filter(|s| !s.idle) {
        sc.busy += s.count;
        // The last frame is the comm: not a function.
        let frames = &s.frames[..s.frames.len().saturating_sub(1)];
        if let Some(&leaf) = frames.first() {
            by_id[leaf as usize].self_ += s.count;
        }
        seen.clear();
        for &f in frames {
            if !seen.contains(&f) {
                seen.push(f);
                let fc = &mut by_id[f as usize];
                fc.inclusive += s.count;
                if fc.per_repeat.len() < nrep {
                    fc.per_repeat.resize(nrep, 0);
                }
                if let Some(slot) = fc.per_repeat.get_mut(s.repeat.saturating_sub(1) as usize) {
                    *slot += s.count;
                }
            }
        }
    }
    for (id, mut fc) in by_id.into_iter().enumerate() {
        if fc.inclusive == 0 {
            continue;
        }
        fc.kernel = p.kinds[id] == crate::fold::FrameKind::Kernel;
        fc.per_repeat.resize(nrep, 0);
        let e = sc.functions.entry(p.names[id].clone()).or_default();
        // Two ids can share a name only across kinds; add them up.
        e.self_ += fc.self_;
        e.inclusive += fc.inclusive;
        e.kernel |= fc.kernel;
        if e.per_repeat.is_empty() {
            e.per_repeat = fc.per_repeat;
        } else {
            for (a, b) in e.per_repeat.iter_mut().zip(fc.per_repeat) {
                *a += b;
            }
        }
    }
    sc
}

/// Which cause, if any, a frame at `pos` of a stack (leaf first) belongs to.
struct Matcher<'a> {
    /// Per frame id: the first cause whose plain symbols match.
    plain: Vec<Option<u16>>,
    /// Per frame id: context rules whose symbol matches (cause, callers).
    ctx: Vec<Vec<(u16, &'a Regex)>>,
}

impl<'a> Matcher<'a> {
    fn new(causes: &'a [Cause], p: &Profile) -> Self {
        let mut plain = Vec::with_capacity(p.names.len());
        let mut ctx = Vec::with_capacity(p.names.len());
        for (id, name) in p.names.iter().enumerate() {
            if p.kinds[id] == crate::fold::FrameKind::Comm {
                plain.push(None);
                ctx.push(Vec::new());
                continue;
            }
            plain.push(
                causes
                    .iter()
                    .position(|c| c.matches_name(name))
                    .map(|i| i as u16),
            );
            let mut rules = Vec::new();
            for (ci, c) in causes.iter().enumerate() {
                for (sym, callers) in &c.context {
                    if sym.is_match(name) {
                        rules.push((ci as u16, callers));
                    }
                }
            }
            ctx.push(rules);
        }
        Matcher { plain, ctx }
    }

    /// Returns (cause index, frame position) for a stack, leaf first.
    fn charge(&self, frames: &[u32], names: &[String]) -> Option<(usize, usize)> {
        for (pos, &f) in frames.iter().enumerate() {
            let fi = f as usize;
            // Context rules first: they are the more specific statement.
            for (ci, callers) in &self.ctx[fi] {
                let upto = (pos + 5).min(frames.len());
                if frames[pos + 1..upto]
                    .iter()
                    .any(|&g| callers.is_match(&names[g as usize]))
                {
                    return Some((*ci as usize, pos));
                }
            }
            if let Some(ci) = self.plain[fi] {
                return Some((ci as usize, pos));
            }
        }
        None
    }
}

/// Charged samples of one side.
#[derive(Default)]
struct Charged {
    per_cause: Vec<u64>,
    /// (cause, matched function) → samples.
    per_symbol: BTreeMap<(usize, String), u64>,
    /// (cause) → top stacks (count, frames root first).
    /// Per cause: (samples, frames root first, index of the charged frame).
    stacks: Vec<Vec<(u64, Vec<String>, usize)>>,
    /// Leaf self counts of samples no cause took.
    uncharged_self: BTreeMap<String, u64>,
}

fn charge_side(p: &Profile, causes: &[Cause]) -> Charged {
    let m = Matcher::new(causes, p);
    let mut ch = Charged {
        per_cause: vec![0; causes.len()],
        stacks: vec![Vec::new(); causes.len()],
        ..Default::default()
    };
    for s in p.stacks.iter().filter(|s| !s.idle) {
        let frames = &s.frames[..s.frames.len().saturating_sub(1)];
        match m.charge(frames, &p.names) {
            Some((ci, pos)) => {
                ch.per_cause[ci] += s.count;
                *ch.per_symbol
                    .entry((ci, p.names[frames[pos] as usize].clone()))
                    .or_default() += s.count;
                let list = &mut ch.stacks[ci];
                // Stacks come sorted by count: the first few are the hottest.
                if list.len() < 64 {
                    let names: Vec<String> = s
                        .frames
                        .iter()
                        .rev()
                        .map(|&f| p.names[f as usize].clone())
                        .collect();
                    // `pos` counts from the leaf; the names run from the root.
                    let charged = s.frames.len() - 1 - pos;
                    list.push((s.count, names, charged));
                }
            }
            None => {
                let leaf = frames.first().map_or_else(
                    || "[no stack]".to_string(),
                    |&f| p.names[f as usize].clone(),
                );
                *ch.uncharged_self.entry(leaf).or_default() += s.count;
            }
        }
    }
    ch
}

/// Options of the attribution.
#[derive(Clone, Debug)]
pub struct AttributeOptions {
    /// Smallest |explained share| of busy time listed. Default 0.005.
    pub min_share: f64,
    /// Largest p-value listed. Default 1e-3.
    pub max_p: f64,
}

impl Default for AttributeOptions {
    fn default() -> Self {
        AttributeOptions {
            min_share: 0.005,
            max_p: 1e-3,
        }
    }
}

pub struct AttributionResult {
    pub attributions: Vec<Attribution>,
    pub unexplained_share: f64,
    pub unexplained_functions: Vec<FunctionShare>,
    pub cause_shares: Vec<CauseShare>,
    pub caveats: Vec<String>,
}

/// Charges both profiles and ranks the causes. `candidate_worse` decides the sign
/// that ranks first: a slower candidate is explained by what is hotter there.
pub fn attribute(
    causes: &[Cause],
    base: &Profile,
    cand: &Profile,
    candidate_worse: bool,
    opts: &AttributeOptions,
) -> AttributionResult {
    let (bb, cb) = (base.busy_samples(), cand.busy_samples());
    let chb = charge_side(base, causes);
    let chc = charge_side(cand, causes);
    let share = |x: u64, n: u64| if n == 0 { 0.0 } else { x as f64 / n as f64 };
    let mut out = Vec::new();
    let mut caveats = Vec::new();
    for (i, c) in causes.iter().enumerate() {
        let (xb, xc) = (chb.per_cause[i], chc.per_cause[i]);
        let (sb, sc) = (share(xb, bb), share(xc, cb));
        let explained = sc - sb;
        let p = two_proportion_p(xc, cb, xb, bb);
        if explained.abs() < opts.min_share || p > opts.max_p {
            continue;
        }
        let direction_ok = c
            .expected_hot_candidate()
            .map(|hot_c| hot_c == (explained > 0.0));
        if direction_ok == Some(false) {
            caveats.push(format!(
                "{} differs ({} → {}) but its functions are {} on the side where it is {}: not blamed (the workload itself may differ)",
                c.name,
                c.baseline,
                c.candidate,
                if explained > 0.0 { "hotter" } else { "colder" },
                if explained > 0.0 { "less active" } else { "more active" }
            ));
            continue;
        }
        let (hot, cold) = if explained > 0.0 { (sc, sb) } else { (sb, sc) };
        let confidence = if explained.abs() >= 0.03
            && p < 1e-6
            && c.source != "name-match"
            && direction_ok == Some(true)
            && hot >= 2.0 * cold
        {
            "high"
        } else if explained.abs() >= 0.01 && p < 1e-4 {
            "medium"
        } else {
            "low"
        };
        let mut evidence: Vec<Evidence> = chb
            .per_symbol
            .iter()
            .chain(chc.per_symbol.iter())
            .filter(|((ci, _), _)| *ci == i)
            .map(|((_, f), _)| f.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|f| Evidence {
                candidate_share: share(*chc.per_symbol.get(&(i, f.clone())).unwrap_or(&0), cb),
                baseline_share: share(*chb.per_symbol.get(&(i, f.clone())).unwrap_or(&0), bb),
                symbol: f,
            })
            .collect();
        evidence.sort_by(|a, b| {
            let da = (a.candidate_share - a.baseline_share).abs();
            let db = (b.candidate_share - b.baseline_share).abs();
            db.total_cmp(&da).then(a.symbol.cmp(&b.symbol))
        });
        evidence.truncate(10);
        let (hot_side, hot_stacks, hot_busy) = if explained > 0.0 {
            ("candidate", &chc.stacks[i], cb)
        } else {
            ("baseline", &chb.stacks[i], bb)
        };
        let stacks = hot_stacks
            .iter()
            .take(3)
            .map(|(n, frames, charged)| EvidenceStack {
                side: hot_side.into(),
                share: share(*n, hot_busy),
                frames: frames.clone(),
                charged: *charged,
            })
            .collect();
        out.push(Attribution {
            cause: c.name.clone(),
            kind: c.kind.clone(),
            baseline: c.baseline.clone(),
            candidate: c.candidate.clone(),
            explained_share: explained,
            baseline_charged: sb,
            candidate_charged: sc,
            p_value: p,
            confidence: confidence.into(),
            source: c.source.clone(),
            why: c.why.clone(),
            related: c.related.clone(),
            evidence,
            stacks,
        });
    }
    let sign = if candidate_worse { 1.0 } else { -1.0 };
    out.sort_by(|a, b| (sign * b.explained_share).total_cmp(&(sign * a.explained_share)));

    // What nothing explains: significant shifts in leaf time of uncharged samples.
    let mut unexplained = Vec::new();
    let names: BTreeSet<&String> = chb
        .uncharged_self
        .keys()
        .chain(chc.uncharged_self.keys())
        .collect();
    for f in names {
        let (xb, xc) = (
            *chb.uncharged_self.get(f).unwrap_or(&0),
            *chc.uncharged_self.get(f).unwrap_or(&0),
        );
        let d = share(xc, cb) - share(xb, bb);
        if sign * d > 0.001 && two_proportion_p(xc, cb, xb, bb) < 1e-3 {
            unexplained.push(FunctionShare {
                symbol: f.clone(),
                baseline_share: share(xb, bb),
                candidate_share: share(xc, cb),
            });
        }
    }
    // Float sums of nothing are -0.0 (Rust's `Sum` starts there): report 0.
    let unexplained_share: f64 = unexplained
        .iter()
        .map(|f| (f.candidate_share - f.baseline_share).abs())
        .sum::<f64>()
        + 0.0;
    unexplained.sort_by(|a, b| {
        (b.candidate_share - b.baseline_share)
            .abs()
            .total_cmp(&(a.candidate_share - a.baseline_share).abs())
    });
    unexplained.truncate(15);

    let cause_shares = out
        .iter()
        .take(6)
        .map(|a| CauseShare {
            cause: a.cause.clone(),
            baseline: a.baseline_charged,
            candidate: a.candidate_charged,
        })
        .collect();
    AttributionResult {
        attributions: out,
        unexplained_share,
        unexplained_functions: unexplained,
        cause_shares,
        caveats,
    }
}

/// Options covered by knowledge-base entries, active or not, so the name-match
/// mechanism does not re-derive them.
pub fn covered_options(kb: &KnowledgeBase) -> BTreeSet<String> {
    kb.entries
        .iter()
        .flat_map(|e| e.options.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_kb_parses_and_is_big_enough() {
        let kb = KnowledgeBase::builtin().expect("builtin KB");
        assert!(kb.entries.len() >= 40, "{} entries", kb.entries.len());
        let mut ids = BTreeSet::new();
        for e in &kb.entries {
            assert!(ids.insert(e.id.clone()), "duplicate id {}", e.id);
            assert!(
                !e.options.is_empty() || !e.runtime.is_empty(),
                "{} has no trigger",
                e.id
            );
            assert!(
                !e.symbols.is_empty() || !e.context.is_empty(),
                "{} has no symbols",
                e.id
            );
            assert!(!e.example.is_empty(), "{} has no example stack", e.id);
        }
    }

    #[test]
    fn tokens_are_specific() {
        assert_eq!(
            option_tokens("CONFIG_DEBUG_KMEMLEAK"),
            vec!["debug_kmemleak", "kmemleak"]
        );
        assert_eq!(option_tokens("CONFIG_KASAN"), vec!["kasan"]);
        assert!(!option_tokens("CONFIG_SLUB_STATS").contains(&"stats".to_string()));
    }

    #[test]
    fn values_read_as_enabled() {
        for v in [
            "y",
            "m",
            "on",
            "1",
            "2001",
            "always [madvise] never",
            "Mitigation: PTI",
        ] {
            assert!(is_enabled_value(v), "{v}");
        }
        for v in ["n", "off", "0", "(absent)", "Not affected", "never"] {
            assert!(!is_enabled_value(v), "{v}");
        }
    }
}
