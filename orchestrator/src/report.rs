//! The report: `report.html` (one self-contained file), `summary.md`, rendered from
//! `summary.json` and the folded stacks of both sides.
//!
//! Every string that came from a host (symbols, config values, hostnames, command
//! output) goes through minijinja's HTML auto-escaping; flame graphs are separate SVG
//! documents embedded with `<iframe srcdoc>` (inferno's script binds to the first
//! `<svg>` of a document and uses fixed ids, so graphs cannot share one).

use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, Result};
use minijinja::{context, Environment};

use crate::analyze::human;
use crate::model::Summary;

const REPORT_TEMPLATE: &str = include_str!("../templates/report.html");
const MD_TEMPLATE: &str = include_str!("../templates/summary.md");

/// Folded stack files written next to the summary, the input of the flame graphs.
pub const BASELINE_FOLDED: &str = "baseline.folded";
pub const CANDIDATE_FOLDED: &str = "candidate.folded";

/// Flame graph SVGs (as text), each a complete document.
#[derive(Default)]
pub struct Graphs {
    pub differential: Option<String>,
    pub baseline: Option<String>,
    pub candidate: Option<String>,
    pub notes: Vec<String>,
}

fn flame(folded: &[u8], title: &str, diff: bool) -> std::io::Result<String> {
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.count_name = "samples".into();
    // Prune frames narrower than this many pixels: keeps big captures light.
    opts.min_width = 0.5;
    opts.hash = true;
    opts.deterministic = true;
    opts.image_width = Some(1180);
    if diff {
        opts.subtitle = Some("red: more on the candidate, blue: less (baseline normalised to the candidate's busy samples)".into());
    }
    let mut out = Vec::new();
    let lines = std::str::from_utf8(folded).unwrap_or("").lines();
    inferno::flamegraph::from_lines(&mut opts, lines, &mut out)?;
    Ok(guard_history(&String::from_utf8_lossy(&out)))
}

/// inferno's script records the search term and zoom in the URL with
/// `history.replaceState`, which throws a SecurityError in an `about:srcdoc` frame and
/// stopped search and zoom halfway (found by tests/browser.rs). A script placed
/// before inferno's makes the call a no-op when the browser refuses it.
fn guard_history(svg: &str) -> String {
    const GUARD: &str = "<script type=\"text/ecmascript\"><![CDATA[(function(){var h=window.history,r=h&&h.replaceState;if(!r)return;h.replaceState=function(){try{return r.apply(h,arguments);}catch(e){}};})();]]></script>";
    match svg
        .find("<svg")
        .and_then(|i| svg[i..].find('>').map(|j| i + j + 1))
    {
        Some(at) => format!("{}{GUARD}{}", &svg[..at], &svg[at..]),
        None => svg.to_string(),
    }
}

/// Builds the graphs from the folded files in `dir`.
pub fn graphs(dir: &Path) -> Graphs {
    let mut g = Graphs::default();
    let b = std::fs::read(dir.join(BASELINE_FOLDED));
    let c = std::fs::read(dir.join(CANDIDATE_FOLDED));
    let (b, c) = match (b, c) {
        (Ok(b), Ok(c)) => (b, c),
        _ => {
            g.notes
                .push("folded stacks missing: flame graphs not drawn".into());
            return g;
        }
    };
    let mut diff = Vec::new();
    let dopts = inferno::differential::Options {
        normalize: true,
        strip_hex: false,
    };
    match inferno::differential::from_readers(
        dopts,
        BufReader::new(&b[..]),
        BufReader::new(&c[..]),
        &mut diff,
    ) {
        Ok(()) => match flame(
            &diff,
            "Differential: candidate vs baseline (busy CPU)",
            true,
        ) {
            Ok(svg) => g.differential = Some(svg),
            Err(e) => g
                .notes
                .push(format!("differential flame graph failed: {e}")),
        },
        Err(e) => g
            .notes
            .push(format!("differential flame graph failed: {e}")),
    }
    for (data, title, slot) in [
        (&b, "Baseline (busy CPU)", &mut g.baseline),
        (&c, "Candidate (busy CPU)", &mut g.candidate),
    ] {
        match flame(data, title, false) {
            Ok(svg) => *slot = Some(svg),
            Err(e) => g.notes.push(format!("{title} flame graph failed: {e}")),
        }
    }
    g
}

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    // `+ 0.0` turns the -0.0 of empty float sums into 0.0: never print "-0.00%".
    env.add_filter("pct", |v: f64| -> String {
        let x = v * 100.0 + 0.0;
        if x.abs() >= 10.0 {
            format!("{x:.1}%")
        } else {
            format!("{x:.2}%")
        }
    });
    env.add_filter("spct", |v: f64| -> String {
        format!("{:+.2}", v * 100.0 + 0.0)
    });
    env.add_filter("human", |v: f64, unit: String| -> String {
        human(v, &unit)
    });
    env.add_filter("pval", |v: Option<f64>| -> String {
        match v {
            None => "–".into(),
            Some(p) if p < 1e-6 => "<1e-6".into(),
            Some(p) => format!("{p:.3}"),
        }
    });
    env.add_filter("sci", |v: f64| -> String {
        if v < 1e-6 {
            "<1e-6".into()
        } else {
            format!("{v:.2e}")
        }
    });
    env.add_filter("fixed", |v: f64, n: usize| -> String { format!("{v:.n$}") });
    env.add_filter("md", |v: String| -> String { md_escape(&v) });
    env.add_template("report.html", REPORT_TEMPLATE)
        .expect("report template is valid");
    env.add_template("summary.md", MD_TEMPLATE)
        .expect("summary template is valid");
    env
}

/// One metric's repeats on both sides, laid out for an inline SVG strip chart.
#[derive(serde::Serialize)]
struct MetricChart {
    name: String,
    width: f64,
    ticks: Vec<(f64, String)>,
    baseline: Vec<(f64, String)>,
    candidate: Vec<(f64, String)>,
    baseline_mean: f64,
    candidate_mean: f64,
}

fn metric_charts(summary: &Summary) -> Vec<MetricChart> {
    let (w, left, right) = (580.0, 90.0, 44.0);
    summary
        .metrics
        .iter()
        .filter(|m| !m.baseline_values.is_empty() && !m.candidate_values.is_empty())
        .map(|m| {
            let all = m.baseline_values.iter().chain(&m.candidate_values);
            let hi = all.clone().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let lo = all.fold(f64::INFINITY, |a, &b| a.min(b));
            // From zero when all values are positive: the size of a drop is what matters.
            let lo = if lo >= 0.0 { 0.0 } else { lo };
            let hi = if hi <= lo { lo + 1.0 } else { hi * 1.05 };
            let x = |v: f64| left + (w - left - right) * (v - lo) / (hi - lo);
            let pts = |vs: &[f64]| {
                vs.iter()
                    .enumerate()
                    .map(|(i, v)| (x(*v), format!("repeat {}: {}", i + 1, human(*v, &m.unit))))
                    .collect()
            };
            MetricChart {
                name: m.name.clone(),
                width: w,
                ticks: (0..=4)
                    .map(|k| {
                        let v = lo + (hi - lo) * k as f64 / 4.0;
                        (x(v), human(v, &m.unit))
                    })
                    .collect(),
                baseline: pts(&m.baseline_values),
                candidate: pts(&m.candidate_values),
                baseline_mean: x(m.baseline),
                candidate_mean: x(m.candidate),
            }
        })
        .collect()
}

/// Renders the HTML report.
pub fn render_html(summary: &Summary, graphs: &Graphs, command: &str) -> Result<String> {
    let env = env();
    let tmpl = env.get_template("report.html")?;
    let explained: Vec<&str> = summary
        .attributions
        .iter()
        .flat_map(|a| std::iter::once(a.cause.as_str()).chain(a.related.iter().map(String::as_str)))
        .collect();
    Ok(tmpl.render(context! {
        s => summary,
        graphs => context! {
            differential => graphs.differential,
            baseline => graphs.baseline,
            candidate => graphs.candidate,
            notes => graphs.notes,
        },
        explained => explained,
        trends => crate::history::charts(&summary.history),
        metric_charts => metric_charts(summary),
        command => command,
        generated => crate::rundir::utc_now(),
    })?)
}

pub fn render_markdown(summary: &Summary) -> Result<String> {
    let env = env();
    let tmpl = env.get_template("summary.md")?;
    // Markdown has no auto-escaping: strip what could break tables or inject HTML.
    Ok(tmpl.render(context! { s => summary })?)
}

/// Escapes text for a Markdown table cell or paragraph: no HTML, no table breaks.
pub fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '`' => out.push('\''),
            '\n' | '\r' => out.push(' '),
            '[' | ']' => {
                out.push('\\');
                out.push(ch);
            }
            c => out.push(c),
        }
    }
    out
}

/// Writes summary.json, summary.md and report.html into `out`.
pub fn write_all(out: &Path, summary: &Summary, command: &str) -> Result<()> {
    crate::rundir::write_json(&out.join("summary.json"), summary)?;
    let md = render_markdown(summary)?;
    crate::rundir::write_atomic(&out.join("summary.md"), md.as_bytes())?;
    let g = graphs(out);
    let html = render_html(summary, &g, command).context("cannot render report.html")?;
    crate::rundir::write_atomic(&out.join("report.html"), html.as_bytes())?;
    Ok(())
}
