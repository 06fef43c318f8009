//! Playbooks: YAML → raw structs (serde-saphyr, unknown keys rejected) → a validated
//! [`Plan`]. Every error names the file, line, column and the field's path:
//! `playbooks/x.yaml:12:5: workload.metrics.throughput: unknown field `jsn`, expected one of json, regex`.
//!
//! Commands are minijinja templates; every `{{ value }}` is shell-quoted unless the
//! template says `{{ value | raw }}`.

mod guest;
mod host;
mod kernel;
pub mod plan;
mod raw;
pub mod template;
mod validate;
pub mod yaml_path;

use std::path::Path;

use serde_saphyr::Spanned;

pub use plan::*;
pub use template::{render, template_env};
pub use validate::expand_home;

/// A playbook error with its place in the file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: {path}{message}{hint}")]
pub struct PlaybookError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// `workload.metrics.throughput: ` (with the separator), or empty.
    pub path: String,
    pub message: String,
    /// ` (hint …)` or empty.
    pub hint: String,
}

/// Where a value was in the file.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl<T> From<&Spanned<T>> for Pos {
    fn from(s: &Spanned<T>) -> Pos {
        Pos {
            line: s.referenced.line(),
            column: s.referenced.column(),
        }
    }
}

/// The `gate:` limits of a playbook's text, read leniently (a run directory's copy
/// of its playbook, whose relative paths may no longer resolve): what the analysis
/// needs to decide its metrics as the run did. None when there is no such section
/// or it cannot be read.
pub fn gate_limits(text: &str) -> Option<std::collections::BTreeMap<String, f64>> {
    #[derive(serde::Deserialize)]
    struct Rule {
        max_regression: String,
    }
    #[derive(serde::Deserialize)]
    struct GateOnly {
        #[serde(default)]
        gate: std::collections::BTreeMap<String, Rule>,
    }
    let g: GateOnly = serde_saphyr::from_str(text).ok()?;
    g.gate
        .into_iter()
        .map(|(k, r)| Some((k, validate::parse_percent(&r.max_regression)?)))
        .collect()
}

pub fn load(path: &Path) -> Result<Plan, PlaybookError> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| PlaybookError {
        file: label.clone(),
        line: 0,
        column: 0,
        path: String::new(),
        message: format!("cannot read playbook: {e}"),
        hint: if e.kind() == std::io::ErrorKind::NotFound {
            " (the shipped playbooks are in playbooks/, e.g. playbooks/lab-tcp.yaml)".into()
        } else {
            String::new()
        },
    })?;
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    parse(&text, &label, &dir)
}

pub fn parse(text: &str, label: &str, dir: &Path) -> Result<Plan, PlaybookError> {
    let raw: raw::RawPlaybook = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let msg = e.to_string();
        // The crate's message starts with "error: line L column C: " and then a
        // snippet; keep only the sentence.
        let first = msg.lines().next().unwrap_or("").to_string();
        let sentence = first
            .split_once(": ")
            .and_then(|(_, rest)| rest.split_once(": ").map(|(_, m)| m.to_string()))
            .unwrap_or(first);
        let path = yaml_path::yaml_path_at(text, line, column);
        PlaybookError {
            file: label.into(),
            line,
            column,
            path: if path.is_empty() {
                String::new()
            } else {
                format!("{path}: ")
            },
            message: sentence,
            hint: String::new(),
        }
    })?;
    let v = validate::Validator { label, text, dir };
    v.plan(raw)
}

#[cfg(test)]
mod tests {
    use super::validate::{parse_percent, split_port};
    use super::*;

    fn parse_str(y: &str) -> Result<Plan, PlaybookError> {
        parse(y, "pb.yaml", Path::new("."))
    }

    const OK: &str = "name: t\nhosts:\n  baseline: { provider: lab }\n  candidate: { provider: lab, sysctl: { net.core.busy_poll: 50 } }\nworkload:\n  client: { run: \"iperf3 -c {{ host.address }}\" }\n  metrics:\n    throughput: { json: end.sum_received.bits_per_second, unit: bit/s }\n";

    #[test]
    fn valid_playbook() {
        let p = parse_str(OK).unwrap();
        assert_eq!(p.name, "t");
        match &p.candidate.provider {
            Provider::Lab(k) => assert_eq!(k.sysctl["net.core.busy_poll"], "50"),
            _ => panic!(),
        }
        assert_eq!(p.capture.repeat, 1);
        assert!(p.sequential());
    }

    #[test]
    fn unknown_key_names_file_line_column_and_path() {
        let y = OK.replace("{ json: end", "{ jsn: end");
        let e = parse_str(&y).unwrap_err().to_string();
        assert!(
            e.starts_with("pb.yaml:8:19: workload.metrics.throughput: unknown field `jsn`"),
            "{e}"
        );
        assert!(e.contains("expected one of"), "{e}");
    }

    #[test]
    fn semantic_errors_point_at_the_value() {
        let y = OK.replace("net.core.busy_poll", "vm.swappiness");
        let e = parse_str(&y).unwrap_err().to_string();
        assert!(e.starts_with("pb.yaml:4:"), "{e}");
        assert!(e.contains("hosts.candidate.sysctl.vm.swappiness"), "{e}");
        let y = OK.replace(
            "provider: lab }\n  candidate",
            "provider: lbb }\n  candidate",
        );
        let e = parse_str(&y).unwrap_err().to_string();
        assert!(
            e.contains("hosts.baseline.provider: unknown provider `lbb`"),
            "{e}"
        );
        let y = format!("{OK}capture:\n  repeat: many\n");
        let e = parse_str(&y).unwrap_err().to_string();
        assert!(e.starts_with("pb.yaml:10:11: capture.repeat:"), "{e}");
    }

    #[test]
    fn adaptive_repeats() {
        let y = format!("{OK}capture:\n  repeat: auto\n  max_repeat: 6\n  max_minutes: 1.5\n");
        let p = parse_str(&y).unwrap();
        assert_eq!(p.capture.repeat, 6);
        let a = p.capture.adaptive.unwrap();
        assert_eq!((a.max_pairs, a.max_seconds, a.looks()), (6, Some(90), 4));
        let at = |max_pairs| {
            let a = crate::playbook::Adaptive {
                max_pairs,
                max_seconds: None,
            };
            (1..=max_pairs)
                .filter(|p| a.looks_at(*p))
                .collect::<Vec<_>>()
        };
        assert_eq!(at(16), [2, 3, 4, 6, 8, 12, 16]);
        assert_eq!(at(10), [2, 3, 4, 6, 8, 10]);
        assert_eq!(at(2), [2]);
        assert_eq!(at(40), [2, 3, 4, 6, 8, 12, 16, 24, 32, 40]);
        let y = format!("{OK}capture:\n  repeat: 3\n  max_repeat: 6\n");
        let e = parse_str(&y).unwrap_err().to_string();
        assert!(e.contains("go with `repeat: auto`"), "{e}");
        let p = parse_str(&format!("{OK}capture:\n  repeat: auto\n")).unwrap();
        assert_eq!(p.capture.adaptive.map(|a| a.max_pairs), Some(10));
    }

    #[test]
    fn templates_quote_by_default() {
        let ctx = minijinja::context! { x => "a; rm -rf /", n => 5 };
        assert_eq!(
            render("echo {{ x }} {{ n }}", &ctx).unwrap(),
            "echo 'a; rm -rf /' 5"
        );
        assert_eq!(
            render("echo {{ x | raw }}", &ctx).unwrap(),
            "echo a; rm -rf /"
        );
        assert!(render("echo {{ missing }}", &ctx).is_err());
    }

    #[test]
    fn non_ascii_near_an_error_is_no_panic() {
        // Issue 13: `kdelta check --offline` exited 101 on this line.
        let y = OK.replace(
            "client: { run: \"iperf3 -c {{ host.address }}\" }",
            "client: { from: orchestrator, run: \"€€€€€€€€\", x: 1 }",
        );
        let e = parse_str(&y).unwrap_err().to_string();
        assert!(e.starts_with("pb.yaml:6:"), "{e}");
        assert!(
            e.contains("workload.client") && e.contains("unknown field `x`"),
            "{e}"
        );
    }

    #[test]
    fn qemu_cmdline() {
        let q = |c: &str| {
            format!("name: t\nhosts:\n  baseline: {{ provider: qemu, kernel: {{ image: /bin/sh }} }}\n  candidate: {{ provider: qemu, kernel: {{ image: /bin/sh }}, cmdline: {c} }}\nworkload:\n  client: {{ run: x }}\n")
        };
        let p = parse_str(&q("\"init_on_free=1  mitigations=off\"")).unwrap();
        match &p.candidate.provider {
            Provider::Qemu(s) => assert_eq!(s.cmdline, ["init_on_free=1", "mitigations=off"]),
            _ => panic!("a qemu host"),
        }
        match &p.baseline.provider {
            Provider::Qemu(s) => assert!(s.cmdline.is_empty()),
            _ => panic!("a qemu host"),
        }
        for (bad, says) in [
            ("console=tty0", "kdelta's own"),
            ("\"a='b c'\"", "not a plain kernel parameter"),
            ("\"dyndbg=\\\"x\\\"\"", "not a plain kernel parameter"),
        ] {
            let e = parse_str(&q(bad)).unwrap_err().to_string();
            assert!(
                e.contains("hosts.candidate.cmdline") && e.contains(says),
                "{bad}: {e}"
            );
        }
        let y = OK.replace("{ provider: lab }", "{ provider: lab, cmdline: nopti }");
        let e = parse_str(&y).unwrap_err().to_string();
        assert!(e.contains("`cmdline:` is for qemu guests"), "{e}");
    }

    /// An ssh host's `boot:` hook is kept as a template (checked); elsewhere it is
    /// refused at its line, with what the provider has instead.
    #[test]
    fn boot_hooks_are_for_ssh_hosts() {
        let y = OK.replace(
            "{ provider: lab }",
            "{ ssh: root@box, boot: \"kexec-into {{ destination }}{% for w in revert.cmdline_add %} {{ w }}{% endfor %}\" }",
        );
        let p = parse_str(&y).unwrap();
        let boots: Vec<Option<&str>> = [&p.baseline, &p.candidate]
            .iter()
            .map(|h| match &h.provider {
                Provider::Ssh(t) => t.boot.as_deref(),
                _ => None,
            })
            .collect();
        assert!(boots.iter().flatten().all(|b| b.starts_with("kexec-into")));
        assert!(boots.iter().any(Option::is_some), "{y}");
        let bad = OK.replace("{ provider: lab }", "{ ssh: root@box, boot: \"{% for\" }");
        let e = parse_str(&bad).unwrap_err().to_string();
        assert!(e.contains(".boot") && e.contains("bad template"), "{e}");
        let q = OK.replace("{ provider: lab }", "{ provider: lab, boot: reboot }");
        let e = parse_str(&q).unwrap_err().to_string();
        assert!(
            e.contains(".boot") && e.contains("`boot:` is for ssh hosts"),
            "{e}"
        );
    }

    #[test]
    fn destinations() {
        assert_eq!(
            split_port("root@h:2222").unwrap(),
            ("root@h".into(), Some(2222))
        );
        assert_eq!(split_port("h").unwrap(), ("h".into(), None));
        assert!(split_port("-oProxyCommand=x").is_err());
        assert_eq!(parse_percent("5%"), Some(0.05));
    }
}
