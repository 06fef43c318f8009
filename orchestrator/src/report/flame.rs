//! Flame graphs with inferno: one per side and the differential ones (recoloured by
//! [`super::diffgraph`]), each a complete
//! SVG document (embedded by the report in its own `<iframe srcdoc>`: inferno's script
//! binds to the first `<svg>` of a document and uses fixed ids).

use super::diffgraph::{recolour, Folded};

/// One flame graph: a complete SVG document and its height, so the report's frame
/// shows all of it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Graph {
    pub svg: String,
    pub height: u32,
}

impl Graph {
    fn new(svg: String) -> Graph {
        // `<svg … height="926" …>`: inferno grows the graph with the deepest stack.
        let height = svg
            .find("<svg")
            .and_then(|i| svg.get(i..))
            .and_then(|s| s.find(" height=\"").and_then(|j| s.get(j + 9..)))
            .and_then(|s| s.split('"').next())
            .and_then(|h| h.parse().ok())
            .unwrap_or(560);
        Graph { svg, height }
    }
}

/// Flame graphs of a report: both differential directions and one per side.
#[derive(Default)]
pub struct Graphs {
    /// Candidate's widths, coloured by the change of each frame's inclusive share.
    pub differential: Option<Graph>,
    /// Baseline's widths, same colours: what shrank or vanished shows.
    pub reverse: Option<Graph>,
    pub baseline: Option<Graph>,
    pub candidate: Option<Graph>,
    pub notes: Vec<String>,
}

fn flame(folded: &[u8], title: &str, subtitle: Option<&str>) -> std::io::Result<String> {
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.count_name = "samples".into();
    // Prune frames narrower than this many pixels: keeps big captures light.
    opts.min_width = 0.5;
    opts.hash = true;
    opts.deterministic = true;
    opts.image_width = Some(1180);
    opts.subtitle = subtitle.map(str::to_string);
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

const DIFF_SUBTITLE: &str = "inclusive share of busy CPU: red more on the candidate, blue less, grey not significant; outlined: on one side only";

/// Draws both differential graphs and one graph per side from the folded stacks.
pub fn graphs(base: &[u8], cand: &[u8]) -> Graphs {
    let mut g = Graphs::default();
    let (bt, ct) = (String::from_utf8_lossy(base), String::from_utf8_lossy(cand));
    let sides = [Folded::parse(&bt), Folded::parse(&ct)];
    let views = [
        (
            ct.as_bytes(),
            "Differential: the candidate, coloured by change (busy CPU)",
            &mut g.differential,
        ),
        (
            bt.as_bytes(),
            "Differential: the baseline, coloured by change (what shrank or vanished)",
            &mut g.reverse,
        ),
    ];
    for (data, title, slot) in views {
        match flame(data, title, Some(DIFF_SUBTITLE)) {
            Ok(svg) => *slot = Some(Graph::new(recolour(&svg, [&sides[0], &sides[1]]))),
            Err(e) => g.notes.push(format!("{title} failed: {e}")),
        }
    }
    for (data, title, slot) in [
        (base, "Baseline (busy CPU)", &mut g.baseline),
        (cand, "Candidate (busy CPU)", &mut g.candidate),
    ] {
        match flame(data, title, None) {
            Ok(svg) => *slot = Some(Graph::new(svg)),
            Err(e) => g.notes.push(format!("{title} flame graph failed: {e}")),
        }
    }
    g
}
