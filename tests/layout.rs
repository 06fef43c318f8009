//! The layout keeps its promises (issue 13): a folder per stage, data flowing one way
//! (analysis and reporting never reach a host, parsing never connects), no import
//! circle between stages, no source file over 800 lines and no function over 120.
//! The rules are the module docs of `orchestrator/src/lib.rs` made checkable; test
//! code (after `#[cfg(test)]`) is free to reach across.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The stage a source file belongs to: its folder, or its file stem at the top.
fn stage_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The code before the unit tests.
fn non_test(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

/// Stages this code names through `crate::…`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// What each stage may import (besides itself).
fn allowed() -> BTreeMap<&'static str, Vec<&'static str>> {
    let base = ["model", "format", "panics"];
    let mut m: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut put = |k: &'static str, extra: &[&'static str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        m.insert(k, v);
    };
    put("model", &[]);
    put("format", &[]);
    put("panics", &[]);
    put("exit_codes", &[]);
    put("progress", &[]);
    put("rundir", &[]);
    put("kconfig", &[]);
    put("exec", &[]);
    // Parsing never connects: the playbook may quote for a shell, nothing more.
    put("playbook", &["exec"]);
    put("capture", &["playbook", "exec"]);
    put(
        "provision",
        &["playbook", "exec", "progress", "rundir", "kconfig"],
    );
    // Analysis and reporting never reach a host.
    put("analyze", &["kconfig", "rundir"]);
    put("attribute", &["analyze", "kconfig"]);
    put("gate", &["analyze"]);
    put("report", &["analyze", "rundir"]);
    put(
        "run",
        &[
            "playbook",
            "provision",
            "capture",
            "exec",
            "analyze",
            "attribute",
            "gate",
            "report",
            "rundir",
            "progress",
            "kconfig",
        ],
    );
    // Proving a cause runs runs: it sits after everything (and asks the qemu provider
    // which kernel a bisect step would boot, to skip one Kconfig collapses).
    put(
        "verify",
        &[
            "run",
            "report",
            "gate",
            "analyze",
            "exec",
            "rundir",
            "playbook",
            "provision",
            "progress",
        ],
    );
    m
}

#[test]
fn stages_import_only_upstream() {
    let rules = allowed();
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let mut bad = Vec::new();
    for f in &files {
        let stage = stage_of(f);
        let Some(ok) = rules.get(stage.as_str()) else {
            continue; // lib.rs, main.rs, cli.rs: the top may use everything
        };
        let text = std::fs::read_to_string(f).unwrap();
        for imp in imports(non_test(&text)) {
            if imp != stage && !ok.contains(&imp.as_str()) {
                bad.push(format!("{}: imports crate::{imp}", f.display()));
            }
        }
        // Inside run/, the analysis and the history touch files only.
        if f.ends_with("run/analysis.rs") || f.ends_with("run/history.rs") {
            for imp in imports(non_test(&text)) {
                if ["exec", "provision", "capture"].contains(&imp.as_str()) {
                    bad.push(format!(
                        "{}: analysis reaches a host via crate::{imp}",
                        f.display()
                    ));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "imports against the flow:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_import_circle_between_stages() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let stage = stage_of(f);
        if ["lib", "main", "cli"].contains(&stage.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        let e = edges.entry(stage.clone()).or_default();
        e.extend(imports(non_test(&text)).into_iter().filter(|i| *i != stage));
    }
    // Depth-first search for a back edge.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let at = path.iter().position(|p| p == n).unwrap_or(0);
                let mut cycle = path[at..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            Some(2) => return None,
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, &edges, &mut state, &mut Vec::new()) {
            panic!("import circle: {}", c.join(" → "));
        }
    }
}

/// `fn` items with their line counts, from the closing brace at the same indent.
fn functions(text: &str) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let indent = &l[..l.len() - t.len()];
        let t = t
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("pub ")
            .trim_start_matches("async ")
            .trim_start_matches("unsafe ");
        let Some(rest) = t.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // The body opens on the signature's last line; a `;` first is a declaration.
        let Some(open) = (i..lines.len()).find(|&j| {
            let s = lines[j].trim_end();
            s.ends_with('{') || s.ends_with(';')
        }) else {
            continue;
        };
        if lines[open].trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = (open + 1..lines.len()).find(|&j| lines[j] == close) {
            out.push((i + 1, name, end - i + 1));
        }
    }
    out
}

#[test]
fn files_and_functions_stay_short() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let mut long = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let n = text.lines().count();
        if n > 800 {
            long.push(format!("{}: {n} lines (at most 800)", f.display()));
        }
        for (line, name, len) in functions(&text) {
            if len > 120 {
                long.push(format!(
                    "{}:{line}: fn {name} has {len} lines (at most 120)",
                    f.display()
                ));
            }
        }
    }
    assert!(long.is_empty(), "split these:\n{}", long.join("\n"));
    // The checker itself sees functions (it would pass on nothing otherwise).
    let sample = "fn a() {\n    x();\n}\n    pub async fn b(\n        y: u8,\n    ) -> u8 {\n        y\n    }\n";
    let f = functions(sample);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!((f[0].2, f[1].2), (3, 5), "{f:?}");
}
