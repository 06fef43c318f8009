//! Raw YAML → [`Plan`], section by section. Each check points at the value's line
//! and column and names its path (`workload.metrics.throughput.better`), with a hint
//! where one helps. The hosts are checked in [`super::host`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use super::raw::*;
use super::template::template_env;
use super::{PlaybookError, Pos};
use crate::model::{Better, Role};
use crate::playbook::plan::*;

pub(super) struct Validator<'a> {
    pub label: &'a str,
    pub text: &'a str,
    pub dir: &'a Path,
}

impl Validator<'_> {
    pub fn err(
        &self,
        pos: Pos,
        path: &str,
        message: impl Into<String>,
        hint: &str,
    ) -> PlaybookError {
        PlaybookError {
            file: self.label.into(),
            line: pos.line,
            column: pos.column,
            path: format!("{path}: "),
            message: message.into(),
            hint: if hint.is_empty() {
                String::new()
            } else {
                format!(" ({hint})")
            },
        }
    }

    /// One of a closed set of words; absent means `default`.
    pub fn choice<T: Copy>(
        &self,
        v: Option<&Spanned<String>>,
        path: &str,
        choices: &[(&str, T)],
        default: T,
    ) -> Result<T, PlaybookError> {
        let Some(v) = v else { return Ok(default) };
        match choices.iter().find(|(name, _)| *name == v.value) {
            Some((_, t)) => Ok(*t),
            None => {
                let names: Vec<String> = choices.iter().map(|(n, _)| format!("`{n}`")).collect();
                Err(self.err(
                    Pos::from(v),
                    path,
                    format!("unknown value `{}`, expected {}", v.value, one_of(&names)),
                    "",
                ))
            }
        }
    }

    pub fn plan(&self, raw: RawPlaybook) -> Result<Plan, PlaybookError> {
        let name = raw.name.value.trim().to_string();
        if name.is_empty() {
            return Err(self.err((&raw.name).into(), "name", "must not be empty", ""));
        }
        let become_ = raw.become_.as_ref();
        let baseline = self.host(Role::Baseline, raw.hosts.baseline, become_)?;
        let candidate = self.host(Role::Candidate, raw.hosts.candidate, become_)?;
        let deploy = raw
            .deploy
            .into_iter()
            .enumerate()
            .map(|(i, step)| self.deploy_step(i, step))
            .collect::<Result<Vec<_>, _>>()?;
        let workload = self.workload(raw.workload)?;
        let capture = self.capture(raw.capture)?;
        let gate = self.gate(raw.gate, &workload.metrics)?;
        let t = raw.timeouts.unwrap_or(RawTimeouts {
            connect: None,
            command: None,
            run: None,
        });
        Ok(Plan {
            name,
            description: raw.description,
            file: PathBuf::from(self.label),
            dir: self.dir.to_path_buf(),
            text: self.text.to_string(),
            baseline,
            candidate,
            vars: raw.vars,
            deploy,
            workload,
            capture,
            gate,
            timeouts: Timeouts {
                connect: t.connect.unwrap_or(20),
                command: t.command.unwrap_or(300),
                run: t.run.unwrap_or(3600),
            },
        })
    }

    fn deploy_step(&self, i: usize, step: RawDeployStep) -> Result<DeployStep, PlaybookError> {
        let path = format!("deploy[{i}]");
        match (step.upload, step.run) {
            (Some(u), None) => {
                let from = self.dir.join(&u.from.value);
                if !from.exists() {
                    return Err(self.err(
                        (&u.from).into(),
                        &format!("{path}.upload.from"),
                        format!("{} does not exist", from.display()),
                        "paths are relative to the playbook's folder",
                    ));
                }
                Ok(DeployStep::Upload {
                    from,
                    to: u.to.unwrap_or_else(|| "{{ files }}".into()),
                })
            }
            (None, Some(r)) => {
                self.template(&r, &format!("{path}.run"))?;
                Ok(DeployStep::Run {
                    command: r.value,
                    timeout: step.timeout.unwrap_or(600),
                })
            }
            _ => Err(self.err(
                Pos::default(),
                &path,
                "each deploy step is either `upload:` or `run:`",
                "",
            )),
        }
    }

    fn workload(&self, w: RawWorkload) -> Result<Workload, PlaybookError> {
        let client = w.client.value;
        let client_from = self.choice(
            client.from.as_ref(),
            "workload.client.from",
            &[
                ("orchestrator", ClientFrom::Orchestrator),
                ("host", ClientFrom::Host),
            ],
            ClientFrom::Orchestrator,
        )?;
        self.template(&client.run, "workload.client.run")?;
        if let Some(s) = &w.server {
            self.template(s, "workload.server")?;
        }
        let metrics = w
            .metrics
            .into_iter()
            .map(|(name, m)| self.metric(name, m))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Workload {
            server: w.server.map(|s| s.value),
            client: client.run.value,
            client_from,
            metrics,
            timeout: w.timeout.unwrap_or(300),
            server_ready_wait: w.server_ready_wait.unwrap_or(0.5),
        })
    }

    fn metric(&self, name: String, m: Spanned<RawMetric>) -> Result<MetricSpec, PlaybookError> {
        let path = format!("workload.metrics.{name}");
        let pos: Pos = (&m).into();
        let m = m.value;
        let extract = match (m.json, m.regex) {
            (Some(j), None) => Extract::Json(j),
            (None, Some(r)) => {
                let re = regex::Regex::new(&r)
                    .map_err(|e| self.err(pos, &path, format!("bad regex: {e}"), ""))?;
                if re.captures_len() < 2 {
                    return Err(self.err(
                        pos,
                        &path,
                        "the regex needs one capture group around the number",
                        "e.g. `([0-9.]+) Gbits/sec`",
                    ));
                }
                Extract::Regex(re)
            }
            (Some(_), Some(_)) => {
                return Err(self.err(pos, &path, "give either `json` or `regex`, not both", ""))
            }
            (None, None) => {
                return Err(self.err(
                    pos,
                    &path,
                    "missing `json` or `regex`",
                    "e.g. `json: end.sum_received.bits_per_second`",
                ))
            }
        };
        let better = self.choice(
            m.better.as_ref(),
            &format!("{path}.better"),
            &[("higher", Better::Higher), ("lower", Better::Lower)],
            Better::Higher,
        )?;
        let from_server = self.choice(
            m.source.as_ref(),
            &format!("{path}.source"),
            &[("client", false), ("server", true)],
            false,
        )?;
        Ok(MetricSpec {
            name,
            extract,
            unit: m.unit,
            better,
            from_server,
            scale: m.scale.unwrap_or(1.0),
        })
    }

    fn capture(&self, cap: Option<RawCapture>) -> Result<CaptureSpec, PlaybookError> {
        let cap = cap.unwrap_or(RawCapture {
            perf: None,
            repeat: None,
            max_repeat: None,
            max_minutes: None,
            stat: None,
            order: None,
        });
        let (repeat, adaptive) = self.repeats(&cap)?;
        let perf = cap.perf.unwrap_or(RawPerf {
            frequency: None,
            call_graph: None,
            event: None,
            during: None,
        });
        let frequency = match perf.frequency {
            Some(f) if f.value == 0 || f.value > 20000 => {
                return Err(self.err(
                    (&f).into(),
                    "capture.perf.frequency",
                    format!("{} Hz is out of range 1..=20000", f.value),
                    "99 or 199 are usual",
                ))
            }
            Some(f) => f.value,
            None => 99,
        };
        let call_graph = self.choice(
            perf.call_graph.as_ref(),
            "capture.perf.call_graph",
            &[
                ("fp", CallGraph::Fp),
                ("dwarf", CallGraph::Dwarf),
                ("lbr", CallGraph::Lbr),
            ],
            CallGraph::Fp,
        )?;
        self.choice(
            perf.during.as_ref(),
            "capture.perf.during",
            &[("workload", ())],
            (),
        )?;

        let order = self.choice(
            cap.order.as_ref(),
            "capture.order",
            &[
                ("auto", Order::Auto),
                ("sequential", Order::Sequential),
                ("concurrent", Order::Concurrent),
            ],
            Order::Auto,
        )?;
        Ok(CaptureSpec {
            frequency,
            call_graph,
            event: perf.event,
            repeat,
            adaptive,
            stat: cap.stat.unwrap_or(true),
            order,
        })
    }

    /// `repeat: N` (1..=1000) or `repeat: auto` with `max_repeat` and `max_minutes`.
    fn repeats(&self, cap: &RawCapture) -> Result<(u32, Option<Adaptive>), PlaybookError> {
        let max = match &cap.max_repeat {
            Some(m) if m.value < Adaptive::FIRST || m.value > 1000 => {
                return Err(self.err(
                    m.into(),
                    "capture.max_repeat",
                    format!("{} is out of range {}..=1000", m.value, Adaptive::FIRST),
                    "",
                ))
            }
            Some(m) => Some(m.value),
            None => None,
        };
        let minutes = match &cap.max_minutes {
            Some(m) if !(m.value > 0.0 && m.value.is_finite()) => {
                return Err(self.err(
                    m.into(),
                    "capture.max_minutes",
                    "must be a positive number of minutes",
                    "",
                ))
            }
            Some(m) => Some((m.value * 60.0).ceil() as u64),
            None => None,
        };
        let adaptive_only = || {
            let p = cap
                .max_repeat
                .as_ref()
                .map(Pos::from)
                .or(cap.max_minutes.as_ref().map(Pos::from));
            match p {
                Some(p) => Err(self.err(
                    p,
                    "capture",
                    "`max_repeat` and `max_minutes` go with `repeat: auto`",
                    "",
                )),
                None => Ok(()),
            }
        };
        match cap.repeat.as_ref() {
            None => {
                adaptive_only()?;
                Ok((1, None))
            }
            Some(r) => match &r.value {
                RawRepeat::Count(n) if *n == 0 || *n > 1000 => Err(self.err(
                    r.into(),
                    "capture.repeat",
                    format!("{n} is out of range 1..=1000"),
                    "or `auto`: pairs added until the decision is clear",
                )),
                RawRepeat::Count(n) => {
                    adaptive_only()?;
                    Ok((*n, None))
                }
                RawRepeat::Word(w) if w == "auto" => {
                    let max_pairs = max.unwrap_or(Adaptive::DEFAULT_MAX);
                    Ok((
                        max_pairs,
                        Some(Adaptive {
                            max_pairs,
                            max_seconds: minutes,
                        }),
                    ))
                }
                RawRepeat::Word(w) => Err(self.err(
                    r.into(),
                    "capture.repeat",
                    format!("`{w}` is not a number of repeats"),
                    "a number, or `auto`",
                )),
            },
        }
    }

    fn gate(
        &self,
        rules: BTreeMap<String, RawGateRule>,
        metrics: &[MetricSpec],
    ) -> Result<BTreeMap<String, f64>, PlaybookError> {
        let mut gate = BTreeMap::new();
        for (metric, rule) in rules {
            let pos: Pos = (&rule.max_regression).into();
            if !metrics.iter().any(|m| m.name == metric) {
                return Err(self.err(
                    pos,
                    &format!("gate.{metric}"),
                    format!("no metric `{metric}` in workload.metrics"),
                    "",
                ));
            }
            let v = parse_percent(&rule.max_regression.value).ok_or_else(|| {
                self.err(
                    pos,
                    &format!("gate.{metric}.max_regression"),
                    format!("`{}` is not a percentage", rule.max_regression.value),
                    "e.g. `5%`",
                )
            })?;
            gate.insert(metric, v);
        }
        Ok(gate)
    }

    pub fn template(&self, s: &Spanned<String>, path: &str) -> Result<(), PlaybookError> {
        let env = template_env();
        env.template_from_str(&s.value).map(|_| ()).map_err(|e| {
            self.err(
                s.into(),
                path,
                format!("bad template: {}", e.detail().unwrap_or(&e.to_string())),
                "",
            )
        })
    }

    pub fn known_hosts(
        &self,
        v: Option<&Spanned<String>>,
        pos: Pos,
        path: &str,
    ) -> Result<KnownHostsPolicy, PlaybookError> {
        Ok(match v.map(|k| k.value.as_str()) {
            None | Some("strict") => KnownHostsPolicy::Strict,
            Some("accept-new") => KnownHostsPolicy::AcceptNew,
            Some(o) if o.contains('/') => KnownHostsPolicy::File(expand_home(o)),
            Some(o) => {
                return Err(self.err(
                    v.map(Pos::from).unwrap_or(pos),
                    &format!("{path}.known_hosts"),
                    format!("unknown value `{o}`, expected strict, accept-new or the path of a known_hosts file"),
                    "",
                ))
            }
        })
    }
}

/// `a`, `a or b`, `a, b or c`.
pub fn one_of(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// A YAML scalar as the text a command or a sysctl takes.
pub fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(true) => "on".into(),
        serde_json::Value::Bool(false) => "off".into(),
        other => other.to_string(),
    }
}

pub fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

/// `root@host:2222` → (`root@host`, Some(2222)); IPv6 in brackets keeps its colons.
pub fn split_port(dest: &str) -> Result<(String, Option<u16>), String> {
    let d = dest.trim();
    if d.is_empty() {
        return Err("empty destination".into());
    }
    if d.starts_with('-') || d.chars().any(char::is_whitespace) {
        return Err(format!("`{d}` is not an SSH destination"));
    }
    let Some((host, port)) = d.rsplit_once(':') else {
        return Ok((d.to_string(), None));
    };
    if !host.ends_with(']') && host.contains(':') {
        return Ok((d.to_string(), None)); // bare IPv6
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{port}` is not a port number"))?;
    Ok((host.replace(['[', ']'], ""), Some(port)))
}

pub fn parse_percent(s: &str) -> Option<f64> {
    let t = s.trim();
    let (num, div) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), 100.0),
        None => (t, 1.0),
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v / div)
}
