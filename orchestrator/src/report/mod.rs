//! The report: `report.html` (one self-contained file), `summary.md`, `summary.json`,
//! the folded stacks and (for a gate) `junit.xml`, all from one [`Summary`] and the two
//! profiles it was made of, rendered once per run.
//!
//! Every string that came from a host (symbols, config values, hostnames, command
//! output) goes through minijinja's HTML auto-escaping (Markdown through
//! [`md_escape`]); flame graphs are separate SVG documents embedded with
//! `<iframe srcdoc>`. Reporting never touches a host.

pub mod charts;
pub mod diffgraph;
pub mod flame;
pub mod junit;
pub mod kcidb;
pub mod publish;
pub mod rows;

use anyhow::{Context, Result};
use minijinja::{context, Environment};

use crate::analyze::fold::Profile;
use crate::format;
use crate::model::{Role, Summary};
use crate::rundir::{write_atomic, write_json, RunDir};
pub use flame::Graphs;

const REPORT_TEMPLATE: &str = include_str!("../../templates/report.html");
const MD_TEMPLATE: &str = include_str!("../../templates/summary.md");

fn env() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    // `+ 0.0` turns the -0.0 of empty float sums into 0.0: never print "-0.00%".
    env.add_filter("pct", |v: f64| -> String { format::pct_cell(v) });
    env.add_filter("spct", |v: f64| -> String { format::points(v) });
    env.add_filter("human", |v: f64, unit: String| -> String {
        format::human(v, &unit)
    });
    env.add_filter("pval", |v: Option<f64>| -> String {
        v.map_or_else(|| "–".to_string(), format::pval)
    });
    env.add_filter("fixed", |v: f64, n: usize| -> String { format!("{v:.n$}") });
    env.add_filter("md", |v: String| -> String { md_escape(&v) });
    // The templates are part of the binary: a broken one fails every report test,
    // so this error is never a user's; it is still an error, not a panic.
    env.add_template("report.html", REPORT_TEMPLATE)?;
    env.add_template("summary.md", MD_TEMPLATE)?;
    Ok(env)
}

/// Renders the HTML report.
pub fn render_html(summary: &Summary, graphs: &Graphs, command: &str) -> Result<String> {
    let env = env()?;
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
            reverse => graphs.reverse,
            baseline => graphs.baseline,
            candidate => graphs.candidate,
            notes => graphs.notes,
        },
        explained => explained,
        trends => charts::trends(&summary.history),
        metric_charts => charts::metric_charts(summary),
        metric_rows => rows::metric_rows(summary),
        command => command,
        generated => crate::rundir::utc_now(),
    })?)
}

pub fn render_markdown(summary: &Summary) -> Result<String> {
    let env = env()?;
    let tmpl = env.get_template("summary.md")?;
    // Markdown has no auto-escaping: strip what could break tables or inject HTML.
    Ok(tmpl.render(context! {
        s => summary,
        metric_rows => rows::metric_rows(summary),
        lkp_rows => rows::lkp_rows(summary, 10),
    })?)
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

/// Folded text of a profile's busy stacks (`comm;root;…;leaf count`).
pub fn folded(p: &Profile) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    p.write_folded(&mut buf, true)?;
    Ok(buf)
}

/// Writes summary.json, summary.md and report.html again for a changed summary (verify
/// and bisect add their `proof`), from the folded stacks the first report wrote:
/// nothing is re-analysed.
pub fn refresh(out: &RunDir, summary: &Summary, command: &str) -> Result<()> {
    let read = |role: Role| {
        let p = out.folded(role);
        std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))
    };
    render_into(
        out,
        summary,
        [&read(Role::Baseline)?, &read(Role::Candidate)?],
        command,
    )
}

/// summary.json, summary.md and report.html from a summary and both sides' folded
/// stacks.
fn render_into(out: &RunDir, summary: &Summary, folded: [&[u8]; 2], command: &str) -> Result<()> {
    write_json(&out.summary_json(), summary)?;
    let md = render_markdown(summary)?;
    write_atomic(&out.summary_md(), md.as_bytes())?;
    let g = flame::graphs(folded[0], folded[1]);
    let html = render_html(summary, &g, command).context("cannot render report.html")?;
    write_atomic(&out.report_html(), html.as_bytes())
}

/// Writes summary.json, summary.md, report.html and the folded stacks of both sides
/// into `out` (a run directory, or `--out` of `kdelta analyze`).
pub fn write_all(
    out: &RunDir,
    summary: &Summary,
    profiles: [&Profile; 2],
    command: &str,
) -> Result<()> {
    let base = folded(profiles[0])?;
    let cand = folded(profiles[1])?;
    write_atomic(&out.folded(Role::Baseline), &base)?;
    write_atomic(&out.folded(Role::Candidate), &cand)?;
    render_into(out, summary, [&base, &cand], command)
}
