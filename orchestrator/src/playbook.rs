//! Playbooks: YAML → raw structs (serde-saphyr, unknown keys rejected) → a validated
//! [`Plan`]. Every error names the file, line, column and the field's path:
//! `playbooks/x.yaml:12:5: workload.metrics.throughput: unknown field `jsn`, expected one of json, regex`.
//!
//! Commands are minijinja templates; every `{{ value }}` is shell-quoted unless the
//! template says `{{ value | raw }}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::model::Better;

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

// ----- raw YAML -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaybook {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    hosts: RawHosts,
    #[serde(default)]
    vars: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    deploy: Vec<RawDeployStep>,
    workload: RawWorkload,
    #[serde(default)]
    capture: Option<RawCapture>,
    #[serde(default)]
    gate: BTreeMap<String, RawGateRule>,
    #[serde(default)]
    timeouts: Option<RawTimeouts>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHosts {
    baseline: Spanned<RawHost>,
    candidate: Spanned<RawHost>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHost {
    provider: Option<Spanned<String>>,
    /// Shorthand for `provider: ssh, destination: …`.
    ssh: Option<Spanned<String>>,
    destination: Option<Spanned<String>>,
    port: Option<u16>,
    user: Option<String>,
    identity_file: Option<Spanned<String>>,
    known_hosts: Option<Spanned<String>>,
    label: Option<String>,
    sysctl: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
    nftables: Option<Spanned<String>>,
    qdisc: Option<Spanned<String>>,
    offloads: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
    mtu: Option<Spanned<u32>>,
    /// command: prints the host as JSON (`address`, `port`, `user`, `identity_file`, `id`).
    up: Option<Spanned<String>>,
    /// command: removes the host; `{{ id }}` is what `up` printed.
    down: Option<Spanned<String>>,
    /// qemu: the kernel to boot.
    kernel: Option<Spanned<RawKernel>>,
    /// qemu: guest memory in MiB and CPUs.
    memory: Option<u32>,
    cpus: Option<u32>,
    /// qemu: `tcg` (default: works everywhere) or `kvm` (where /dev/kvm really works;
    /// a /dev/kvm that opens is no proof: nested KVM can hang the guest).
    accel: Option<Spanned<String>>,
    /// qemu: programs of this machine to put in the guest (with their libraries).
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    setup: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    /// `linux-source-6.1` (a Debian package) or a kernel tree's path.
    source: Option<Spanned<String>>,
    /// `tinyconfig` (default), `defconfig`, `allnoconfig`.
    base: Option<Spanned<String>>,
    #[serde(default)]
    fragments: Vec<Spanned<String>>,
    options: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
    /// A bzImage/vmlinuz to boot as is.
    image: Option<Spanned<String>>,
    /// A Debian kernel image package (`linux-image-rt-amd64`, `linux-image-6.1.0-28-amd64`).
    package: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeployStep {
    upload: Option<RawUpload>,
    run: Option<Spanned<String>>,
    timeout: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpload {
    from: Spanned<String>,
    to: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    server: Option<Spanned<String>>,
    client: Spanned<RawClient>,
    #[serde(default)]
    metrics: BTreeMap<String, Spanned<RawMetric>>,
    timeout: Option<u64>,
    /// Seconds to wait after starting the server before the client.
    server_ready_wait: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    #[serde(default)]
    from: Option<Spanned<String>>,
    run: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    json: Option<String>,
    regex: Option<String>,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    better: Option<Spanned<String>>,
    #[serde(default)]
    source: Option<Spanned<String>>,
    #[serde(default)]
    scale: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    perf: Option<RawPerf>,
    repeat: Option<Spanned<u32>>,
    stat: Option<bool>,
    order: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerf {
    frequency: Option<Spanned<u32>>,
    call_graph: Option<Spanned<String>>,
    event: Option<String>,
    during: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateRule {
    max_regression: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    connect: Option<u64>,
    command: Option<u64>,
    run: Option<u64>,
}

// ----- the plan ------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    /// Folder of the playbook: relative paths in it are relative to this.
    pub dir: PathBuf,
    pub text: String,
    pub baseline: HostSpec,
    pub candidate: HostSpec,
    pub vars: BTreeMap<String, serde_json::Value>,
    pub deploy: Vec<DeployStep>,
    pub workload: Workload,
    pub capture: CaptureSpec,
    pub gate: BTreeMap<String, f64>,
    pub timeouts: Timeouts,
}

impl Plan {
    pub fn host(&self, role: &str) -> &HostSpec {
        if role == "baseline" {
            &self.baseline
        } else {
            &self.candidate
        }
    }
    /// The hosts the lab provider builds.
    pub fn lab_specs(&self) -> Vec<&HostSpec> {
        [&self.baseline, &self.candidate]
            .into_iter()
            .filter(|s| matches!(s.provider, Provider::Lab(_)))
            .collect()
    }

    /// Lab hosts share a kernel (and CPUs): capture them one after the other.
    pub fn sequential(&self) -> bool {
        match self.capture.order {
            Order::Sequential => true,
            Order::Concurrent => false,
            Order::Auto => {
                // Lab hosts and qemu guests share this machine's CPUs: one at a time.
                matches!(self.baseline.provider, Provider::Lab(_) | Provider::Qemu(_))
                    || matches!(
                        self.candidate.provider,
                        Provider::Lab(_) | Provider::Qemu(_)
                    )
                    || self.workload.client_from == ClientFrom::Orchestrator
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct HostSpec {
    pub role: String,
    pub label: Option<String>,
    pub provider: Provider,
    pub setup: Vec<String>,
}

#[derive(Clone, Debug)]
pub enum Provider {
    Lab(LabKnobs),
    Ssh(SshTarget),
    Qemu(QemuSpec),
    Command(CommandSpec),
}

/// A host made and removed by the user's own commands (cloud CLIs, vzctl, virt-install).
#[derive(Clone, Debug)]
pub struct CommandSpec {
    /// Templated; prints JSON: `address` (required), `port`, `user`, `identity_file`, `id`.
    pub up: String,
    /// Templated with `id` (and the playbook's vars); always run at teardown.
    pub down: String,
    pub known_hosts: KnownHostsPolicy,
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Lab(_) => "lab",
            Provider::Ssh(_) => "ssh",
            Provider::Qemu(_) => "qemu",
            Provider::Command(_) => "command",
        }
    }
}

/// A QEMU guest: its kernel, size, and the tools copied into it.
#[derive(Clone, Debug)]
pub struct QemuSpec {
    pub kernel: KernelSpec,
    pub memory_mb: u32,
    pub cpus: u32,
    pub tools: Vec<String>,
    /// QEMU accelerator: `tcg` or `kvm`.
    pub accel: String,
}

#[derive(Clone, Debug)]
pub enum KernelSpec {
    /// Built from source: base config + fragments + inline options.
    Source {
        source: SourceTree,
        base: String,
        fragments: Vec<PathBuf>,
        options: BTreeMap<String, String>,
    },
    /// A kernel image booted as is.
    Image { path: PathBuf },
    /// A Debian kernel image package, resolved and downloaded at run time.
    Package { name: String },
}

#[derive(Clone, Debug)]
pub enum SourceTree {
    /// `linux-source-X`: the tarball that Debian package installs in /usr/src.
    DebianPackage(String),
    Path(PathBuf),
}

#[derive(Clone, Debug, Default)]
pub struct LabKnobs {
    pub sysctl: BTreeMap<String, String>,
    /// A ruleset file (absolute, resolved against the playbook's folder).
    pub nftables: Option<PathBuf>,
    /// `tc qdisc add dev eth0 root …` arguments, e.g. `netem delay 1ms`.
    pub qdisc: Option<Vec<String>>,
    /// ethtool -K feature → on/off.
    pub offloads: BTreeMap<String, bool>,
    pub mtu: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct SshTarget {
    /// `user@host`, `host`, or a Host alias of ~/.ssh/config.
    pub destination: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_file: Option<PathBuf>,
    pub known_hosts: KnownHostsPolicy,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KnownHostsPolicy {
    /// The user's known_hosts must already have the key.
    Strict,
    /// Accept and remember an unknown key (only when the playbook asks).
    AcceptNew,
    /// A known_hosts file of its own (a fleet's pinned keys), checked strictly.
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub enum DeployStep {
    Upload { from: PathBuf, to: String },
    Run { command: String, timeout: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFrom {
    /// On the machine running kdelta, against the host's address.
    Orchestrator,
    /// On the host itself (e.g. over loopback).
    Host,
}

#[derive(Clone, Debug)]
pub struct Workload {
    pub server: Option<String>,
    pub client: String,
    pub client_from: ClientFrom,
    pub metrics: Vec<MetricSpec>,
    pub timeout: u64,
    pub server_ready_wait: f64,
}

#[derive(Clone, Debug)]
pub struct MetricSpec {
    pub name: String,
    pub extract: Extract,
    pub unit: String,
    pub better: Better,
    pub from_server: bool,
    pub scale: f64,
}

#[derive(Clone, Debug)]
pub enum Extract {
    /// Dotted path into the output's JSON: `end.sum_received.bits_per_second`, `a[0].b`.
    Json(String),
    /// First capture group of the first match.
    Regex(regex::Regex),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Auto,
    Sequential,
    Concurrent,
}

#[derive(Clone, Debug)]
pub struct CaptureSpec {
    pub frequency: u32,
    pub call_graph: String,
    pub event: Option<String>,
    pub repeat: u32,
    pub stat: bool,
    pub order: Order,
}

#[derive(Clone, Debug)]
pub struct Timeouts {
    pub connect: u64,
    pub command: u64,
    pub run: u64,
}

// ----- loading -------------------------------------------------------------------

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
    let raw: RawPlaybook = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let msg = e.to_string();
        // The crate's message starts with "error: line L column C: " and then a
        // snippet; keep only the sentence.
        let first = msg.lines().next().unwrap_or("").to_string();
        let sentence = first
            .split_once(": ")
            .and_then(|(_, rest)| rest.split_once(": ").map(|(_, m)| m.to_string()))
            .unwrap_or(first);
        let path = yaml_path_at(text, line, column);
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
    let v = Validator { label, text, dir };
    v.plan(raw)
}

struct Validator<'a> {
    label: &'a str,
    text: &'a str,
    dir: &'a Path,
}

impl Validator<'_> {
    fn err(&self, pos: Pos, path: &str, message: impl Into<String>, hint: &str) -> PlaybookError {
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

    fn plan(&self, raw: RawPlaybook) -> Result<Plan, PlaybookError> {
        let name = raw.name.value.trim().to_string();
        if name.is_empty() {
            return Err(self.err((&raw.name).into(), "name", "must not be empty", ""));
        }
        let baseline = self.host("baseline", raw.hosts.baseline)?;
        let candidate = self.host("candidate", raw.hosts.candidate)?;
        let mut deploy = Vec::new();
        for (i, step) in raw.deploy.into_iter().enumerate() {
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
                    deploy.push(DeployStep::Upload {
                        from,
                        to: u.to.unwrap_or_else(|| "{{ files }}".into()),
                    });
                }
                (None, Some(r)) => {
                    self.template(&r, &format!("{path}.run"))?;
                    deploy.push(DeployStep::Run {
                        command: r.value,
                        timeout: step.timeout.unwrap_or(600),
                    });
                }
                _ => {
                    return Err(self.err(
                        Pos::default(),
                        &path,
                        "each deploy step is either `upload:` or `run:`",
                        "",
                    ));
                }
            }
        }
        let w = raw.workload;
        let client_from = match w.client.value.from.as_ref().map(|s| s.value.as_str()) {
            None | Some("orchestrator") => ClientFrom::Orchestrator,
            Some("host") => ClientFrom::Host,
            Some(other) => {
                let s = w
                    .client
                    .value
                    .from
                    .as_ref()
                    .map(Pos::from)
                    .unwrap_or_default();
                return Err(self.err(
                    s,
                    "workload.client.from",
                    format!("unknown value `{other}`, expected `orchestrator` or `host`"),
                    "",
                ));
            }
        };
        self.template(&w.client.value.run, "workload.client.run")?;
        if let Some(s) = &w.server {
            self.template(s, "workload.server")?;
        }
        let mut metrics = Vec::new();
        for (mname, m) in w.metrics {
            let path = format!("workload.metrics.{mname}");
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
            let better = match m.better.as_ref().map(|b| b.value.as_str()) {
                None | Some("higher") => Better::Higher,
                Some("lower") => Better::Lower,
                Some(o) => {
                    return Err(self.err(
                        m.better.as_ref().map(Pos::from).unwrap_or(pos),
                        &format!("{path}.better"),
                        format!("unknown value `{o}`, expected `higher` or `lower`"),
                        "",
                    ))
                }
            };
            let from_server = match m.source.as_ref().map(|s| s.value.as_str()) {
                None | Some("client") => false,
                Some("server") => true,
                Some(o) => {
                    return Err(self.err(
                        m.source.as_ref().map(Pos::from).unwrap_or(pos),
                        &format!("{path}.source"),
                        format!("unknown value `{o}`, expected `client` or `server`"),
                        "",
                    ))
                }
            };
            metrics.push(MetricSpec {
                name: mname,
                extract,
                unit: m.unit,
                better,
                from_server,
                scale: m.scale.unwrap_or(1.0),
            });
        }
        let cap = raw.capture.unwrap_or(RawCapture {
            perf: None,
            repeat: None,
            stat: None,
            order: None,
        });
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
        let call_graph = match perf.call_graph {
            Some(c) if !["fp", "dwarf", "lbr"].contains(&c.value.as_str()) => {
                return Err(self.err(
                    (&c).into(),
                    "capture.perf.call_graph",
                    format!("unknown value `{}`, expected fp, dwarf or lbr", c.value),
                    "",
                ))
            }
            Some(c) => c.value,
            None => "fp".into(),
        };
        if let Some(d) = perf.during {
            if d.value != "workload" {
                return Err(self.err(
                    (&d).into(),
                    "capture.perf.during",
                    format!("unknown value `{}`, expected `workload`", d.value),
                    "",
                ));
            }
        }
        let repeat = match cap.repeat {
            Some(r) if r.value == 0 || r.value > 1000 => {
                return Err(self.err(
                    (&r).into(),
                    "capture.repeat",
                    format!("{} is out of range 1..=1000", r.value),
                    "",
                ))
            }
            Some(r) => r.value,
            None => 1,
        };
        let order = match cap.order.as_ref().map(|o| o.value.as_str()) {
            None | Some("auto") => Order::Auto,
            Some("sequential") => Order::Sequential,
            Some("concurrent") => Order::Concurrent,
            Some(o) => {
                return Err(self.err(
                    cap.order.as_ref().map(Pos::from).unwrap_or_default(),
                    "capture.order",
                    format!("unknown value `{o}`, expected auto, sequential or concurrent"),
                    "",
                ))
            }
        };
        let mut gate = BTreeMap::new();
        for (metric, rule) in raw.gate {
            if !metrics.iter().any(|m| m.name == metric) {
                return Err(self.err(
                    (&rule.max_regression).into(),
                    &format!("gate.{metric}"),
                    format!("no metric `{metric}` in workload.metrics"),
                    "",
                ));
            }
            let v = parse_percent(&rule.max_regression.value).ok_or_else(|| {
                self.err(
                    (&rule.max_regression).into(),
                    &format!("gate.{metric}.max_regression"),
                    format!("`{}` is not a percentage", rule.max_regression.value),
                    "e.g. `5%`",
                )
            })?;
            gate.insert(metric, v);
        }
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
            workload: Workload {
                server: w.server.map(|s| s.value),
                client: w.client.value.run.value,
                client_from,
                metrics,
                timeout: w.timeout.unwrap_or(300),
                server_ready_wait: w.server_ready_wait.unwrap_or(0.5),
            },
            capture: CaptureSpec {
                frequency,
                call_graph,
                event: perf.event,
                repeat,
                stat: cap.stat.unwrap_or(true),
                order,
            },
            gate,
            timeouts: Timeouts {
                connect: t.connect.unwrap_or(20),
                command: t.command.unwrap_or(300),
                run: t.run.unwrap_or(3600),
            },
        })
    }

    fn template(&self, s: &Spanned<String>, path: &str) -> Result<(), PlaybookError> {
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

    fn known_hosts(
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

    fn host(&self, role: &str, raw: Spanned<RawHost>) -> Result<HostSpec, PlaybookError> {
        let pos: Pos = (&raw).into();
        let h = raw.value;
        let path = format!("hosts.{role}");
        let provider_name = match (&h.provider, &h.ssh) {
            (Some(p), _) => p.value.clone(),
            (None, Some(_)) => "ssh".into(),
            (None, None) => {
                return Err(self.err(
                    pos,
                    &path,
                    "missing `provider`",
                    "one of: lab, ssh, qemu, command",
                ))
            }
        };
        for s in &h.setup {
            self.template(s, &format!("{path}.setup"))?;
        }
        let setup = h.setup.iter().map(|s| s.value.clone()).collect();
        if provider_name != "command" {
            if let Some(c) = h.up.as_ref().or(h.down.as_ref()) {
                return Err(self.err(
                    c.into(),
                    &path,
                    "`up`/`down` are for command hosts",
                    "set provider: command, or remove them",
                ));
            }
        }
        if provider_name != "qemu" {
            if let Some(k) = &h.kernel {
                return Err(self.err(
                    k.into(),
                    &format!("{path}.kernel"),
                    "`kernel:` is for qemu guests",
                    "set provider: qemu, or remove it",
                ));
            }
        }
        let lab_only = [
            ("sysctl", h.sysctl.as_ref().map(Pos::from)),
            ("nftables", h.nftables.as_ref().map(Pos::from)),
            ("qdisc", h.qdisc.as_ref().map(Pos::from)),
            ("offloads", h.offloads.as_ref().map(Pos::from)),
            ("mtu", h.mtu.as_ref().map(Pos::from)),
        ];
        let provider = match provider_name.as_str() {
            "lab" => {
                if let Some(d) = h.ssh.as_ref().or(h.destination.as_ref()) {
                    return Err(self.err(
                        d.into(),
                        &path,
                        "a lab host has no SSH destination",
                        "remove `ssh`/`destination`, or use provider: ssh",
                    ));
                }
                let mut k = LabKnobs::default();
                if let Some(s) = h.sysctl {
                    let spos: Pos = (&s).into();
                    for (key, val) in s.value {
                        if !key.starts_with("net.") {
                            return Err(self.err(spos, &format!("{path}.sysctl.{key}"),
                                "lab hosts share the kernel: only net.* sysctls are per network namespace", "use the qemu or ssh provider to change other sysctls"));
                        }
                        if !key
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
                        {
                            return Err(self.err(
                                spos,
                                &format!("{path}.sysctl"),
                                format!("`{key}` is not a sysctl name"),
                                "",
                            ));
                        }
                        k.sysctl.insert(key, scalar(&val));
                    }
                }
                if let Some(n) = h.nftables {
                    let p = self.dir.join(&n.value);
                    if !p.is_file() {
                        return Err(self.err(
                            (&n).into(),
                            &format!("{path}.nftables"),
                            format!("ruleset file {} not found", p.display()),
                            "paths are relative to the playbook's folder",
                        ));
                    }
                    k.nftables = Some(p);
                }
                if let Some(q) = h.qdisc {
                    let words = shlex::split(&q.value)
                        .filter(|w| !w.is_empty())
                        .ok_or_else(|| {
                            self.err(
                                (&q).into(),
                                &format!("{path}.qdisc"),
                                "cannot split into words",
                                "e.g. `netem delay 1ms`",
                            )
                        })?;
                    if words.is_empty() {
                        return Err(self.err(
                            (&q).into(),
                            &format!("{path}.qdisc"),
                            "empty",
                            "e.g. `netem delay 1ms`",
                        ));
                    }
                    k.qdisc = Some(words);
                }
                if let Some(o) = h.offloads {
                    let opos: Pos = (&o).into();
                    for (feat, val) in o.value {
                        let on = match scalar(&val).as_str() {
                            "on" | "true" | "yes" => true,
                            "off" | "false" | "no" => false,
                            other => {
                                return Err(self.err(
                                    opos,
                                    &format!("{path}.offloads.{feat}"),
                                    format!("`{other}` is not on/off"),
                                    "",
                                ))
                            }
                        };
                        k.offloads.insert(feat, on);
                    }
                }
                if let Some(m) = h.mtu {
                    if !(68..=65535).contains(&m.value) {
                        return Err(self.err(
                            (&m).into(),
                            &format!("{path}.mtu"),
                            format!("{} is out of range 68..=65535", m.value),
                            "",
                        ));
                    }
                    k.mtu = Some(m.value);
                }
                Provider::Lab(k)
            }
            "ssh" => {
                if let Some((knob, Some(p))) = lab_only.iter().find(|(_, p)| p.is_some()) {
                    return Err(self.err(
                        *p,
                        &format!("{path}.{knob}"),
                        "runtime knobs are applied by the lab provider only",
                        "for an existing host, put the change in `setup:` commands",
                    ));
                }
                let dest = h.ssh.as_ref().or(h.destination.as_ref()).ok_or_else(|| {
                    self.err(
                        pos,
                        &path,
                        "missing `destination` (or `ssh:`)",
                        "e.g. ssh: root@host.example:22 or a Host alias from ~/.ssh/config",
                    )
                })?;
                let (destination, port) = split_port(&dest.value)
                    .map_err(|m| self.err(dest.into(), &format!("{path}.destination"), m, ""))?;
                let known_hosts = self.known_hosts(h.known_hosts.as_ref(), pos, &path)?;
                Provider::Ssh(SshTarget {
                    destination,
                    port: h.port.or(port),
                    user: h.user,
                    identity_file: h.identity_file.map(|i| expand_home(&i.value)),
                    known_hosts,
                })
            }
            "command" => {
                if let Some((knob, Some(p))) = lab_only.iter().find(|(_, p)| p.is_some()) {
                    return Err(self.err(
                        *p,
                        &format!("{path}.{knob}"),
                        "runtime knobs are applied by the lab provider only",
                        "put the change in `setup:` commands",
                    ));
                }
                let mut cmds = Vec::new();
                for (key, v) in [("up", &h.up), ("down", &h.down)] {
                    let v = v.as_ref().ok_or_else(|| {
                        self.err(
                            pos,
                            &format!("{path}.{key}"),
                            format!("a command host needs `{key}:`"),
                            "up: prints {\"address\": …, \"id\": …} as JSON; down: removes the host, with {{ id }}",
                        )
                    })?;
                    self.template(v, &format!("{path}.{key}"))?;
                    cmds.push(v.value.clone());
                }
                let known_hosts = self.known_hosts(h.known_hosts.as_ref(), pos, &path)?;
                Provider::Command(CommandSpec {
                    down: cmds.pop().unwrap_or_default(),
                    up: cmds.pop().unwrap_or_default(),
                    known_hosts,
                })
            }
            "qemu" => {
                if let Some((knob, Some(p))) = lab_only.iter().find(|(_, p)| p.is_some()) {
                    return Err(self.err(
                        *p,
                        &format!("{path}.{knob}"),
                        "runtime knobs are applied by the lab provider only",
                        "for a qemu guest, put the change in `setup:` commands or in the kernel config",
                    ));
                }
                let k = h.kernel.ok_or_else(|| {
                    self.err(pos, &format!("{path}.kernel"), "a qemu host needs `kernel:`", "e.g. kernel: { source: linux-source-6.1, fragments: [kernel/lab-minimal.config] } or kernel: { image: path/to/bzImage }")
                })?;
                let kpos: Pos = (&k).into();
                let k = k.value;
                let kernel = if let Some(pkg) = k.package {
                    if k.source.is_some()
                        || k.image.is_some()
                        || !k.fragments.is_empty()
                        || k.options.is_some()
                    {
                        return Err(self.err(
                            (&pkg).into(),
                            &format!("{path}.kernel.package"),
                            "a package is booted as built: give `package:` alone",
                            "to change its config, build from source (kernel.source + fragments)",
                        ));
                    }
                    let ok = pkg.value.starts_with("linux-image-")
                        && pkg
                            .value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-.+".contains(&b));
                    if !ok {
                        return Err(self.err((&pkg).into(), &format!("{path}.kernel.package"), format!("`{}` is not a Debian kernel image package", pkg.value), "e.g. linux-image-amd64, linux-image-rt-amd64, linux-image-6.1.0-28-amd64"));
                    }
                    KernelSpec::Package { name: pkg.value }
                } else {
                    match (k.source, k.image) {
                        (Some(_), Some(i)) | (None, Some(i))
                            if !k.fragments.is_empty() || k.options.is_some() =>
                        {
                            return Err(self.err(
                                (&i).into(),
                                &format!("{path}.kernel.image"),
                                "an image is booted as is: fragments and options need `source:`",
                                "",
                            ));
                        }
                        (Some(src), Some(_)) => {
                            return Err(self.err(
                                (&src).into(),
                                &format!("{path}.kernel"),
                                "give either `source:` or `image:`",
                                "",
                            ));
                        }
                        (None, Some(i)) => {
                            let p = self.dir.join(&i.value);
                            if !p.is_file() {
                                return Err(self.err(
                                    (&i).into(),
                                    &format!("{path}.kernel.image"),
                                    format!("{} not found", p.display()),
                                    "paths are relative to the playbook's folder",
                                ));
                            }
                            KernelSpec::Image { path: p }
                        }
                        (Some(src), None) => {
                            let tree = if src.value.starts_with("linux-source-")
                                && !src.value.contains('/')
                            {
                                SourceTree::DebianPackage(src.value.clone())
                            } else {
                                let p = self.dir.join(&src.value);
                                if !p.join("Makefile").is_file() {
                                    return Err(self.err((&src).into(), &format!("{path}.kernel.source"), format!("{} is not a kernel tree (no Makefile)", p.display()), "a Debian package name such as linux-source-6.1, or the path of a kernel tree"));
                                }
                                SourceTree::Path(p)
                            };
                            let base = k
                                .base
                                .as_ref()
                                .map(|b| b.value.clone())
                                .unwrap_or_else(|| "tinyconfig".into());
                            if ![
                                "tinyconfig",
                                "defconfig",
                                "allnoconfig",
                                "x86_64_defconfig",
                                "kvm_guest.config",
                            ]
                            .contains(&base.as_str())
                                && !base.ends_with("defconfig")
                            {
                                let bp = k.base.as_ref().map(Pos::from).unwrap_or(kpos);
                                return Err(self.err(
                                    bp,
                                    &format!("{path}.kernel.base"),
                                    format!("unknown base config `{base}`"),
                                    "tinyconfig, defconfig or allnoconfig",
                                ));
                            }
                            let mut fragments = Vec::new();
                            for (i, f) in k.fragments.iter().enumerate() {
                                let p = self.dir.join(&f.value);
                                if !p.is_file() {
                                    return Err(self.err(
                                        f.into(),
                                        &format!("{path}.kernel.fragments[{i}]"),
                                        format!("{} not found", p.display()),
                                        "paths are relative to the playbook's folder",
                                    ));
                                }
                                fragments.push(p);
                            }
                            let mut options = BTreeMap::new();
                            if let Some(o) = k.options {
                                let opos: Pos = (&o).into();
                                for (name, v) in o.value {
                                    let ok_name = name.starts_with("CONFIG_")
                                        && name[7..].bytes().all(|b| {
                                            b.is_ascii_uppercase()
                                                || b.is_ascii_digit()
                                                || b == b'_'
                                        })
                                        && name.len() > 7;
                                    if !ok_name {
                                        return Err(self.err(
                                            opos,
                                            &format!("{path}.kernel.options"),
                                            format!("`{name}` is not a config option name"),
                                            "e.g. CONFIG_KASAN: y",
                                        ));
                                    }
                                    let val = match &v {
                                        serde_json::Value::Bool(true) => "y".to_string(),
                                        serde_json::Value::Bool(false) => "n".to_string(),
                                        serde_json::Value::String(s) if s.contains('\n') => {
                                            return Err(self.err(
                                                opos,
                                                &format!("{path}.kernel.options.{name}"),
                                                "a value cannot span lines",
                                                "",
                                            ));
                                        }
                                        other => scalar(other),
                                    };
                                    options.insert(name, val);
                                }
                            }
                            KernelSpec::Source {
                                source: tree,
                                base,
                                fragments,
                                options,
                            }
                        }
                        (None, None) => {
                            return Err(self.err(
                                kpos,
                                &format!("{path}.kernel"),
                                "give `source:` (built with fragments), `package:` or `image:`",
                                "",
                            ));
                        }
                    }
                };
                for t in &h.tools {
                    if t.is_empty() || t.contains(char::is_whitespace) {
                        return Err(self.err(
                            pos,
                            &format!("{path}.tools"),
                            format!("`{t}` is not a program name"),
                            "",
                        ));
                    }
                }
                let accel = match h.accel.as_ref().map(|a| a.value.as_str()) {
                    None | Some("tcg") => "tcg".to_string(),
                    Some("kvm") => "kvm".to_string(),
                    Some(o) => {
                        return Err(self.err(
                            h.accel.as_ref().map(Pos::from).unwrap_or(pos),
                            &format!("{path}.accel"),
                            format!("unknown accelerator `{o}`"),
                            "tcg or kvm",
                        ));
                    }
                };
                Provider::Qemu(QemuSpec {
                    accel,
                    kernel,
                    memory_mb: h.memory.unwrap_or(1024).clamp(256, 65536),
                    cpus: h.cpus.unwrap_or(2).clamp(1, 64),
                    tools: h.tools.clone(),
                })
            }
            other => {
                let p = h.provider.as_ref().map(Pos::from).unwrap_or(pos);
                return Err(self.err(
                    p,
                    &format!("{path}.provider"),
                    format!("unknown provider `{other}`"),
                    "one of: lab, ssh, qemu, command",
                ));
            }
        };
        Ok(HostSpec {
            role: role.into(),
            label: h.label,
            provider,
            setup,
        })
    }
}

fn scalar(v: &serde_json::Value) -> String {
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
fn split_port(dest: &str) -> Result<(String, Option<u16>), String> {
    let d = dest.trim();
    if d.is_empty() {
        return Err("empty destination".into());
    }
    if d.starts_with('-') || d.chars().any(char::is_whitespace) {
        return Err(format!("`{d}` is not an SSH destination"));
    }
    if let Some(i) = d.rfind(':') {
        let (host, port) = (&d[..i], &d[i + 1..]);
        if !host.ends_with(']') && host.contains(':') {
            return Ok((d.to_string(), None)); // bare IPv6
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{port}` is not a port number"))?;
        let host = host.replace(['[', ']'], "");
        return Ok((host, Some(port)));
    }
    Ok((d.to_string(), None))
}

fn parse_percent(s: &str) -> Option<f64> {
    let t = s.trim();
    let (num, div) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), 100.0),
        None => (t, 1.0),
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v / div)
}

/// The dotted path of the YAML key that holds `line:column`, from indentation.
pub fn yaml_path_at(text: &str, line: u64, column: u64) -> String {
    struct Entry {
        indent: usize,
        key: String,
        items: usize,
    }
    let mut stack: Vec<Entry> = Vec::new();
    let key_of = |s: &str| -> Option<(String, usize)> {
        let colon = s.find(':')?;
        let k = s[..colon].trim();
        if k.is_empty()
            || k.starts_with('{')
            || k.starts_with('[')
            || k.starts_with('#')
            || k.contains(' ') && !k.starts_with('"')
        {
            return None;
        }
        let after = &s[colon + 1..];
        if !(after.is_empty() || after.starts_with(' ')) {
            return None;
        }
        Some((k.trim_matches(|c| c == '"' || c == '\'').to_string(), colon))
    };
    for (i, raw) in text.lines().enumerate() {
        let ln = i as u64 + 1;
        if ln > line {
            break;
        }
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut indent = raw.len() - trimmed.len();
        let mut rest = trimmed;
        // List items: `- key: v` opens an item at this indent.
        while let Some(r) = rest.strip_prefix("- ") {
            while stack.last().is_some_and(|e| e.indent > indent) {
                stack.pop();
            }
            if stack
                .last()
                .is_some_and(|e| e.indent == indent && e.key.starts_with('['))
            {
                stack.pop();
            }
            let n = match stack.last_mut() {
                Some(parent) => {
                    parent.items += 1;
                    parent.items - 1
                }
                None => 0,
            };
            stack.push(Entry {
                indent,
                key: format!("[{n}]"),
                items: 0,
            });
            indent += 2;
            rest = r.trim_start();
            // Keys of this item sit at the new indent: do not pop the item for them.
            if let Some((k, colon)) = key_of(rest) {
                let key_col = (indent + colon + 1) as u64;
                if ln < line || column > key_col {
                    stack.push(Entry {
                        indent,
                        key: k,
                        items: 0,
                    });
                }
            }
            rest = "";
        }
        if rest.is_empty() {
            continue;
        }
        while stack.last().is_some_and(|e| e.indent >= indent) {
            stack.pop();
        }
        if let Some((k, colon)) = key_of(rest) {
            let key_col = (indent + colon + 1) as u64; // 1-based column of ':'
            if ln < line || column > key_col {
                stack.push(Entry {
                    indent,
                    key: k,
                    items: 0,
                });
                if ln == line {
                    // Flow mappings on the error line: `a: { b: { c: 1 } }`.
                    let upto = (column as usize).saturating_sub(1).min(raw.len());
                    let seg = &raw[(indent + colon + 1).min(upto)..upto];
                    let mut depth_keys: Vec<String> = Vec::new();
                    let mut last_key = String::new();
                    let mut word = String::new();
                    for ch in seg.chars() {
                        match ch {
                            '{' => depth_keys.push(std::mem::take(&mut last_key)),
                            '}' => {
                                depth_keys.pop();
                            }
                            ':' => last_key = std::mem::take(&mut word).trim().to_string(),
                            ',' => {
                                word.clear();
                                last_key.clear();
                            }
                            c => word.push(c),
                        }
                    }
                    for k in depth_keys.into_iter().filter(|k| !k.is_empty()) {
                        stack.push(Entry {
                            indent: usize::MAX,
                            key: k,
                            items: 0,
                        });
                    }
                }
            }
        }
    }
    let mut out = String::new();
    for e in &stack {
        if e.key.starts_with('[') {
            out.push_str(&e.key);
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&e.key);
        }
    }
    out
}

// ----- templating ------------------------------------------------------------------

/// A minijinja environment whose `{{ }}` output is shell-quoted unless `| raw`.
pub fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_formatter(|out, _state, value| {
        let s = value.to_string();
        if value.is_safe() {
            out.write_str(&s)?;
        } else {
            out.write_str(&crate::shell::quote(&s))?;
        }
        Ok(())
    });
    env.add_filter("raw", |v: minijinja::Value| {
        minijinja::Value::from_safe_string(v.to_string())
    });
    env
}

/// Renders a command template with a context.
pub fn render(template: &str, ctx: &minijinja::Value) -> anyhow::Result<String> {
    let env = template_env();
    let t = env.template_from_str(template)?;
    Ok(t.render(ctx)?)
}

#[cfg(test)]
mod tests {
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
    fn list_paths() {
        let y = "a:\n  - run: x\n  - run: y\n    bad: 1\n";
        assert_eq!(yaml_path_at(y, 4, 5), "a[1]");
        assert_eq!(yaml_path_at(y, 4, 10), "a[1].bad");
        assert_eq!(yaml_path_at(y, 3, 10), "a[1].run");
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
