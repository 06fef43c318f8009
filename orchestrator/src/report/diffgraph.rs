//! The differential flame graph, right at every frame (issue 15).
//!
//! inferno's differential mode colours a frame by the change of the stacks that *end*
//! there, so it is right only at leaves (jonhoo/inferno#295); with many distinct small
//! stacks even the leaves fade, and the KASAN demo's graph read "nothing changed". Here
//! inferno still draws the graph — its layout, search, zoom and tooltips are what a
//! reader knows — from one side's folded stacks (so widths are that side's), and then
//! each frame is recoloured from the change of its **inclusive** share of busy CPU
//! between the two sides, the frame's whole call path matched on both:
//!
//! - red: more of the candidate's busy CPU than of the baseline's; blue: less. The
//!   saturation is mostly (¾) how much the frame grew or shrank relative to itself
//!   (the ratio of its shares on a log scale, full at 10×: new code is full red) and
//!   partly (¼) how many points it moved against the largest move. Inclusive shares
//!   alone would paint the callers reddest — `do_syscall_64` holds all the KASAN work
//!   below it — while the question a reader brings is "what is new, and big";
//!   the title of every frame gives both numbers;
//! - grey: the change is not significant (two-proportion test on the sample counts,
//!   Bonferroni over the frames drawn);
//! - a dark outline: the path exists on one side only (new on the candidate, or gone).
//!
//! Why post-process inferno's SVG rather than draw one: measured on the KASAN demo, the
//! recolouring costs a few milliseconds over inferno's own rendering, and it keeps
//! inferno's script (search, zoom, the `history.replaceState` guard) untouched; a graph
//! of our own would have to reimplement all of it. What it relies on — each frame a
//! `<g><title>…</title><rect … fill="rgb(…)" fg:x="…" fg:w="…"/>` with its depth in `y`
//! — is inferno 0.12's output, pinned in Cargo.toml and checked by the tests.

use rustc_hash::FxHashMap;

use crate::analyze::stats;
use crate::format::pct;

/// Folded stacks (`comm;root;…;leaf count`), parsed.
pub struct Folded<'a> {
    stacks: Vec<(Vec<&'a str>, u64)>,
    total: u64,
}

impl<'a> Folded<'a> {
    pub fn parse(text: &'a str) -> Folded<'a> {
        let mut stacks = Vec::new();
        let mut total = 0;
        for line in text.lines() {
            let Some((path, n)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            total += n;
            stacks.push((path.split(';').collect(), n));
        }
        Folded { stacks, total }
    }
}

/// Every call path of both sides as a trie, with each side's inclusive count.
struct Paths<'a> {
    names: FxHashMap<&'a str, u32>,
    /// (parent node, name) → node; node 0 is the root above the comm frames.
    children: FxHashMap<(u32, u32), u32>,
    counts: Vec<[u64; 2]>,
}

impl<'a> Paths<'a> {
    fn new(sides: [&Folded<'a>; 2]) -> Paths<'a> {
        let mut p = Paths {
            names: FxHashMap::default(),
            children: FxHashMap::default(),
            counts: vec![[0, 0]],
        };
        for (side, f) in sides.iter().enumerate() {
            for (frames, n) in &f.stacks {
                let mut node = 0u32;
                for name in frames {
                    let next_name = p.names.len() as u32;
                    let id = *p.names.entry(name).or_insert(next_name);
                    let next = p.counts.len() as u32;
                    node = *p.children.entry((node, id)).or_insert(next);
                    if node == next {
                        p.counts.push([0, 0]);
                    }
                    p.counts[node as usize][side] += n;
                }
            }
        }
        p
    }

    fn child(&self, parent: u32, name: &str) -> Option<u32> {
        let id = self.names.get(name)?;
        self.children.get(&(parent, *id)).copied()
    }
}

/// One frame of inferno's SVG, located in the text.
struct Frame {
    /// Byte ranges of the title's text and of the fill's `rgb(…)`, and where the
    /// rect's attributes end (for an outline).
    title: (usize, usize),
    fill: (usize, usize),
    rect_end: usize,
    name: String,
    y: f64,
    x: u64,
    w: u64,
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The frames of an inferno SVG.
fn frames(svg: &str) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = svg.get(at..).and_then(|s| s.find("<g><title>")) {
        let start = at + i + "<g><title>".len();
        at = start;
        let Some(te) = svg.get(start..).and_then(|s| s.find("</title>")) else {
            break;
        };
        let title = (start, start + te);
        let Some(re) = svg.get(title.1..).and_then(|s| s.find("/>")) else {
            break;
        };
        let rect = &svg[title.1..title.1 + re];
        let attr = |key: &str| -> Option<(usize, usize)> {
            let k = format!(" {key}=\"");
            let a = rect.find(&k)? + k.len();
            let b = a + rect.get(a..)?.find('"')?;
            Some((title.1 + a, title.1 + b))
        };
        let (Some(fill), Some(y), Some(x), Some(w)) =
            (attr("fill"), attr("y"), attr("fg:x"), attr("fg:w"))
        else {
            continue;
        };
        let text = &svg[title.0..title.1];
        // `name (N samples, P%)`: the name itself may hold ` (` (C++), the counts not.
        let name = text.rfind(" (").map_or(text, |i| &text[..i]);
        let num = |r: (usize, usize)| svg.get(r.0..r.1).unwrap_or_default().to_string();
        out.push(Frame {
            title,
            fill,
            rect_end: title.1 + re,
            name: unescape(name),
            y: num(y).parse().unwrap_or(0.0),
            x: num(x).parse().unwrap_or(0),
            w: num(w).parse().unwrap_or(0),
        });
    }
    out
}

/// What each frame gets: its colour, its title, and whether it is outlined.
struct Paint {
    fill: String,
    title: String,
    outline: bool,
}

/// The path node of every frame: frames by depth (y from the bottom), each found in
/// the trie below the frame one level down whose samples contain it.
fn nodes(frames: &[Frame], paths: &Paths) -> Vec<Option<u32>> {
    let mut ys: Vec<f64> = frames.iter().map(|f| f.y).collect();
    ys.sort_by(|a, b| b.total_cmp(a));
    ys.dedup();
    let depth_of = |y: f64| ys.iter().position(|v| *v == y).unwrap_or(0);
    let mut by_depth: Vec<Vec<usize>> = vec![Vec::new(); ys.len()];
    for (i, f) in frames.iter().enumerate() {
        by_depth[depth_of(f.y)].push(i);
    }
    for d in &mut by_depth {
        d.sort_by_key(|&i| frames[i].x);
    }
    let mut node = vec![None; frames.len()];
    for (depth, level) in by_depth.iter().enumerate() {
        for &i in level {
            let f = &frames[i];
            // inferno's bottom frame, `all`, is the root above the comm frames.
            if depth == 0 {
                node[i] = Some(0);
                continue;
            }
            let parent = {
                // The frame below whose x-range holds this one.
                let below = &by_depth[depth - 1];
                let k = below.partition_point(|&j| frames[j].x <= f.x);
                k.checked_sub(1)
                    .map(|k| below[k])
                    .filter(|&j| f.x < frames[j].x + frames[j].w.max(1))
                    .and_then(|j| node[j])
            };
            node[i] = parent.and_then(|p| paths.child(p, &f.name));
        }
    }
    node
}

/// Recolours an inferno SVG drawn from the `over` side's folded stacks.
/// `sides` is `[baseline, candidate]`; colours are the same in both directions:
/// red is more on the candidate.
pub fn recolour(svg: &str, sides: [&Folded; 2]) -> String {
    let paths = Paths::new(sides);
    let frames = frames(svg);
    let nodes = nodes(&frames, &paths);
    let totals = [sides[0].total.max(1), sides[1].total.max(1)];
    let share = |n: u64, side: usize| n as f64 / totals[side] as f64;
    let deltas: Vec<Option<(f64, bool, [u64; 2])>> = nodes
        .iter()
        .map(|n| {
            // The root (`all`) is 100% of each side: no change to show.
            let c = paths.counts.get((*n)? as usize).copied()?;
            if *n == Some(0) {
                return Some((0.0, false, [totals[0], totals[1]]));
            }
            let d = share(c[1], 1) - share(c[0], 0);
            let p = stats::two_proportion_p(c[1], totals[1], c[0], totals[0]);
            Some((d, p < 0.05 / frames.len().max(1) as f64, c))
        })
        .collect();
    let max = deltas
        .iter()
        .flatten()
        .filter(|d| d.1)
        .map(|d| d.0.abs())
        .fold(0.0f64, f64::max);
    let paints: Vec<Paint> = frames
        .iter()
        .zip(&deltas)
        .map(|(f, d)| paint(f, *d, max, &share))
        .collect();
    splice(svg, &frames, &paints)
}

fn paint(
    f: &Frame,
    d: Option<(f64, bool, [u64; 2])>,
    max: f64,
    share: &dyn Fn(u64, usize) -> f64,
) -> Paint {
    let Some((delta, significant, c)) = d else {
        return Paint {
            fill: "rgb(221,221,221)".into(),
            title: format!("{} (not matched)", escape(&f.name)),
            outline: false,
        };
    };
    let one_side = (c[0] == 0) != (c[1] == 0);
    let fill = if !significant || max <= 0.0 {
        "rgb(221,221,221)".to_string()
    } else {
        let (sb, sc) = (share(c[0], 0), share(c[1], 1));
        let relative = if one_side {
            1.0
        } else {
            ((sc / sb).ln().abs() / 10f64.ln()).min(1.0)
        };
        let s = (0.75 * relative + 0.25 * delta.abs() / max).clamp(0.0, 1.0);
        let v = (235.0 - 205.0 * s).round() as u8;
        if delta > 0.0 {
            format!("rgb(255,{v},{v})")
        } else {
            format!("rgb({v},{v},255)")
        }
    };
    let mark = match (c[0] == 0, c[1] == 0) {
        (true, false) => ", new on the candidate",
        (false, true) => ", gone on the candidate",
        _ => "",
    };
    let title = format!(
        "{}: {} of the candidate's busy CPU, {} of the baseline's: {}{} points{mark}{}",
        escape(&f.name),
        pct(share(c[1], 1)),
        pct(share(c[0], 0)),
        if delta >= 0.0 { "+" } else { "−" },
        pct(delta.abs()).trim_end_matches('%'),
        if significant {
            ""
        } else {
            " (not significant)"
        }
    );
    Paint {
        fill,
        title,
        outline: one_side && significant,
    }
}

/// The SVG with each frame's title, fill and outline replaced, in one pass.
fn splice(svg: &str, frames: &[Frame], paints: &[Paint]) -> String {
    let mut edits: Vec<(usize, usize, String)> = Vec::with_capacity(frames.len() * 3);
    for (f, p) in frames.iter().zip(paints) {
        edits.push((f.title.0, f.title.1, p.title.clone()));
        edits.push((f.fill.0, f.fill.1, p.fill.clone()));
        if p.outline {
            edits.push((
                f.rect_end,
                f.rect_end,
                " stroke=\"rgb(90,20,20)\" stroke-width=\"1\"".into(),
            ));
        }
    }
    edits.sort_by_key(|e| e.0);
    let mut out = String::with_capacity(svg.len() + edits.len() * 40);
    let mut at = 0;
    for (a, b, text) in edits {
        if a < at {
            continue;
        }
        out.push_str(svg.get(at..a).unwrap_or_default());
        out.push_str(&text);
        at = b;
    }
    out.push_str(svg.get(at..).unwrap_or_default());
    out
}
