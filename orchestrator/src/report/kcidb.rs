//! KCIDB (KernelCI's common results database) I/O data of a run: `--kcidb FILE`.
//!
//! Schema v5.3 as the `kcidb-io` package defines it (checkouts → builds → tests). Each
//! side is one checkout and one build: kdelta does not know the git tree a kernel came
//! from, so the checkout carries the kernel release and the build the architecture,
//! the compiler (from the kernel's own `/proc/version`), where its config was read and
//! the config's sha256. The tests are:
//!
//! - `kdelta.<suite>.<metric>` on each side's build: the mean over repeats, `DONE`
//!   (a measurement; no claim about the code), every repeat's value in `misc`;
//! - `kdelta.<suite>.<metric>.change` on the candidate's build: the relative change
//!   the decision tested, `FAIL` when it is a regression, `PASS` when the change is
//!   within the limit or an improvement, `DONE` when the pairs cannot tell;
//! - `kdelta.<suite>.gate.<metric>` per `gate:` rule (a gate run), the same way;
//! - `kdelta.<suite>.verdict`: the run's verdict, its headline and the top causes.
//!
//! Every comparison test's `misc.kdelta` holds the verdict, the interval and the top
//! attributions, so a KCIDB dashboard shows *why* next to the number. The tests of
//! this module check the document's shape; `tests/report.rs` validates a real run's
//! document with kcidb-io's own validator. The JSON is built with serde_json rather
//! than typed structs: the schema has dozens of optional fields and kdelta fills a
//! handful, and a typed copy of the schema would drift from kcidb-io's.

use std::fmt;
use std::str::FromStr;

use serde_json::{json, Map, Value};

use crate::model::{
    Attribution, DecisionStatus, GateStatus, MetricDelta, Role, RuleDecision, SideSummary, Summary,
    VerdictStatus,
};

/// The schema version written (kcidb-io's `LATEST` when this was written).
pub const SCHEMA: (u32, u32) = (5, 3);

/// The name of the CI system submitting (`^[a-z0-9_]+$`, KCIDB's rule for origins).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin(String);

impl Default for Origin {
    fn default() -> Self {
        Origin("kdelta".into())
    }
}

impl FromStr for Origin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            Ok(Origin(s.to_string()))
        } else {
            Err(format!(
                "{s:?}: a KCIDB origin is lowercase letters, digits and `_` (e.g. `kdelta` or `mylab_perf`)"
            ))
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What names the objects: `<origin>:<run>:<role>[:<test>]`.
pub struct Ids<'a> {
    pub origin: &'a Origin,
    /// Unique per run among the origin's submissions (default: the run directory's name).
    pub run: &'a str,
    /// The test suite's name in test paths (default: the playbook's file name).
    pub suite: &'a str,
}

impl Ids<'_> {
    fn object(&self, role: Role) -> String {
        // Ids may hold any character but NUL after the origin's colon.
        format!("{}:{}:{}", self.origin, self.run.replace('\0', ""), role)
    }
    fn test(&self, role: Role, what: &str) -> String {
        format!("{}:{}", self.object(role), what.replace('\0', ""))
    }
    fn path(&self, parts: &[&str]) -> String {
        std::iter::once("kdelta")
            .chain(std::iter::once(self.suite))
            .chain(parts.iter().copied())
            .flat_map(|p| p.split('.'))
            .map(segment)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// One segment of a test path: `[a-zA-Z0-9_-]+`, anything else as `_`.
fn segment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A JSON number, or nothing for NaN and infinities (which JSON cannot hold).
fn num(x: f64) -> Option<Value> {
    serde_json::Number::from_f64(x).map(Value::Number)
}

fn obj(pairs: Vec<(&str, Option<Value>)>) -> Value {
    let m: Map<String, Value> = pairs
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect();
    Value::Object(m)
}

fn text(s: &str) -> Option<Value> {
    let s = s.replace('\0', "");
    (!s.is_empty()).then_some(Value::String(s))
}

fn opt_text(s: Option<&String>) -> Option<Value> {
    s.and_then(|s| text(s))
}

/// A number with its unit; nothing when the value is not finite.
fn number(value: f64, unit: &str) -> Option<Value> {
    let v = num(value)?;
    Some(obj(vec![("value", Some(v)), ("unit", text(unit))]))
}

fn side(s: &Summary, role: Role) -> &SideSummary {
    match role {
        Role::Baseline => &s.baseline,
        Role::Candidate => &s.candidate,
    }
}

/// The KCIDB document of a run.
pub fn document(s: &Summary, ids: &Ids) -> Value {
    let cx = Cx {
        s,
        ids,
        origin: Value::String(ids.origin.to_string()),
        started: s.run.as_ref().and_then(|r| text(&r.started)),
    };
    let mut tests: Vec<Value> = Role::ALL.iter().flat_map(|r| cx.measured(*r)).collect();
    tests.extend(cx.comparisons());
    json!({
        "version": { "major": SCHEMA.0, "minor": SCHEMA.1 },
        "checkouts": Role::ALL.iter().map(|r| cx.checkout(*r)).collect::<Vec<_>>(),
        "builds": Role::ALL.iter().map(|r| cx.build(*r)).collect::<Vec<_>>(),
        "tests": tests,
    })
}

/// What every object of one document shares.
struct Cx<'a> {
    s: &'a Summary,
    ids: &'a Ids<'a>,
    origin: Value,
    started: Option<Value>,
}

/// A comparison test before it is put into KCIDB's shape.
struct Compared {
    what: String,
    path: String,
    comment: String,
    status: &'static str,
    number: Option<Value>,
    misc: Value,
}

impl Cx<'_> {
    fn checkout(&self, role: Role) -> Value {
        let sd = side(self.s, role);
        let release = sd.kernel.as_deref().unwrap_or("unknown");
        obj(vec![
            ("id", Some(Value::String(self.ids.object(role)))),
            ("origin", Some(self.origin.clone())),
            ("comment", text(&format!("{role}: Linux {release}"))),
            ("start_time", self.started.clone()),
            ("valid", Some(Value::Bool(true))),
            (
                "misc",
                Some(obj(vec![
                    ("role", text(role.as_str())),
                    ("host", text(&sd.name)),
                    ("kernel_release", opt_text(sd.kernel.as_ref())),
                ])),
            ),
        ])
    }

    fn build(&self, role: Role) -> Value {
        let sd = side(self.s, role);
        let id = Value::String(self.ids.object(role));
        let release = sd.kernel.as_deref().unwrap_or("unknown");
        // KCIDB's architecture is `[a-z0-9_]*`: `x86_64` as it is, `ppc64le` too.
        let arch = sd
            .arch
            .as_deref()
            .and_then(|a| text(&segment(a).to_ascii_lowercase().replace('-', "_")));
        obj(vec![
            ("id", Some(id.clone())),
            ("checkout_id", Some(id)),
            ("origin", Some(self.origin.clone())),
            (
                "comment",
                text(&format!("Linux {release} as it ran on {}", sd.name)),
            ),
            ("start_time", self.started.clone()),
            ("architecture", arch),
            ("compiler", opt_text(sd.compiler.as_ref())),
            ("config_name", opt_text(sd.config_source.as_ref())),
            // The kernel booted and ran the workload: that is all a build status can say.
            ("status", text("PASS")),
            (
                "misc",
                Some(obj(vec![
                    ("kernel_release", opt_text(sd.kernel.as_ref())),
                    ("config_sha256", opt_text(sd.config_sha256.as_ref())),
                    ("tool", text(&format!("kdelta {}", self.s.tool_version))),
                ])),
            ),
        ])
    }

    /// Each metric's mean on one side: a measurement, no claim.
    fn measured(&self, role: Role) -> Vec<Value> {
        let sd = side(self.s, role);
        let env = environment(sd);
        let build = Value::String(self.ids.object(role));
        self.s
            .metrics
            .iter()
            .map(|m| {
                let (mean, values) = match role {
                    Role::Baseline => (m.baseline, &m.baseline_values),
                    Role::Candidate => (m.candidate, &m.candidate_values),
                };
                obj(vec![
                    ("id", Some(Value::String(self.ids.test(role, &m.name)))),
                    ("build_id", Some(build.clone())),
                    ("origin", Some(self.origin.clone())),
                    ("path", Some(Value::String(self.ids.path(&[&m.name])))),
                    (
                        "comment",
                        text(&format!("{}: mean of {} repeat(s)", m.name, values.len())),
                    ),
                    ("environment", Some(env.clone())),
                    ("start_time", self.started.clone()),
                    ("status", text("DONE")),
                    ("number", number(mean, &m.unit)),
                    (
                        "misc",
                        Some(obj(vec![
                            (
                                "values",
                                Some(values.iter().filter_map(|v| num(*v)).collect()),
                            ),
                            ("better", text(m.better.as_str())),
                        ])),
                    ),
                ])
            })
            .collect()
    }

    /// The candidate against the baseline: per metric, per gate rule, and the verdict.
    fn comparisons(&self) -> Vec<Value> {
        let s = self.s;
        let mut out: Vec<Compared> = s
            .metrics
            .iter()
            .map(|m| {
                let (status, misc) = metric_change(m);
                let change = m
                    .decision
                    .as_ref()
                    .and_then(|d| d.worsening)
                    .map(|w| m.better.worsening_sign() * w)
                    .unwrap_or(m.change);
                let reason = m.decision.as_ref().map_or("", |d| d.reason.as_str());
                Compared {
                    what: format!("{}.change", m.name),
                    path: self.ids.path(&[&m.name, "change"]),
                    comment: format!("{}: candidate vs baseline: {reason}", m.name),
                    status,
                    number: number(change * 100.0, "%"),
                    misc,
                }
            })
            .collect();
        for r in s.gate.iter().flat_map(|g| &g.rules) {
            out.push(Compared {
                what: format!("gate.{}", r.metric),
                path: self.ids.path(&["gate", &r.metric]),
                comment: format!(
                    "{} worse by at most {:.1}%: {}",
                    r.metric,
                    r.max_regression * 100.0,
                    r.reason
                ),
                status: gate_status(r.status),
                number: number(r.worsening * 100.0, "%"),
                misc: rule_misc(r),
            });
        }
        out.push(Compared {
            what: "verdict".into(),
            path: self.ids.path(&["verdict"]),
            comment: s.verdict.headline.clone(),
            status: verdict_status(s.verdict.status),
            number: None,
            misc: obj(vec![
                ("baseline_host", text(&s.baseline.name)),
                ("candidate_host", text(&s.candidate.name)),
                ("profile_shift", num(s.profile_shift)),
                (
                    "caveats",
                    Some(s.caveats.iter().filter_map(|c| text(c)).collect()),
                ),
            ]),
        });
        let why = why(s);
        let env = environment(&s.candidate);
        let build = Value::String(self.ids.object(Role::Candidate));
        out.into_iter()
            .map(|mut c| {
                if let Value::Object(m) = &mut c.misc {
                    m.insert("kdelta".into(), why.clone());
                }
                obj(vec![
                    (
                        "id",
                        Some(Value::String(self.ids.test(Role::Candidate, &c.what))),
                    ),
                    ("build_id", Some(build.clone())),
                    ("origin", Some(self.origin.clone())),
                    ("path", Some(Value::String(c.path))),
                    ("comment", text(&c.comment)),
                    ("environment", Some(env.clone())),
                    ("start_time", self.started.clone()),
                    ("status", text(c.status)),
                    ("number", c.number),
                    ("misc", Some(c.misc)),
                ])
            })
            .collect()
    }
}

fn environment(sd: &SideSummary) -> Value {
    obj(vec![
        ("comment", text(&sd.name)),
        (
            "misc",
            Some(obj(vec![
                ("nr_cpus", sd.nr_cpus.map(Value::from)),
                ("cpu_model", opt_text(sd.cpu_model.as_ref())),
                ("virtualization", opt_text(sd.virtualization.as_ref())),
            ])),
        ),
    ])
}

/// The verdict and its reasons, as every comparison test's `misc.kdelta` holds them.
fn why(s: &Summary) -> Value {
    let attributions: Vec<Value> = s.attributions.iter().take(5).map(attribution).collect();
    let unexplained: Vec<Value> = s
        .unexplained_functions
        .iter()
        .take(5)
        .filter_map(|f| text(&f.symbol))
        .collect();
    obj(vec![
        ("verdict", text(s.verdict.status.as_str())),
        ("headline", text(&s.verdict.headline)),
        (
            "gate",
            s.gate.as_ref().and_then(|g| text(g.status.as_str())),
        ),
        (
            "top_cause",
            s.attributions.first().and_then(|a| text(&a.cause)),
        ),
        ("attributions", Some(Value::Array(attributions))),
        ("unexplained_share", num(s.unexplained_share)),
        ("unexplained_functions", Some(Value::Array(unexplained))),
    ])
}

fn attribution(a: &Attribution) -> Value {
    obj(vec![
        ("cause", text(&a.cause)),
        ("kind", serde_json::to_value(a.kind).ok()),
        ("baseline", text(&a.baseline)),
        ("candidate", text(&a.candidate)),
        ("explained_share", num(a.explained_share)),
        ("confidence", serde_json::to_value(a.confidence).ok()),
        ("source", serde_json::to_value(a.source).ok()),
    ])
}

/// A metric's decision as a KCIDB status and its details.
fn metric_change(m: &MetricDelta) -> (&'static str, Value) {
    let Some(d) = &m.decision else {
        return (
            "DONE",
            obj(vec![("decision", text("none")), ("change", num(m.change))]),
        );
    };
    let status = match d.status {
        DecisionStatus::Regression => "FAIL",
        DecisionStatus::Same | DecisionStatus::Improvement => "PASS",
        DecisionStatus::Unknown => "DONE",
    };
    // The decision's interval as a change of the candidate, as the analysis put it.
    let interval = m
        .change_ci
        .map(|ci| Value::Array(ci.into_iter().filter_map(num).collect()));
    let misc = obj(vec![
        ("decision", serde_json::to_value(d.status).ok()),
        ("change_interval", interval),
        ("level", num(1.0 - d.alpha)),
        ("limit", num(d.limit)),
        ("p_value", d.p_value.and_then(num)),
        ("test", serde_json::to_value(d.test).ok()),
        ("pairs", Some(Value::from(d.pairs))),
        ("decided_by", serde_json::to_value(d.decided_by).ok()),
        ("baseline_mean", num(m.baseline)),
        ("candidate_mean", num(m.candidate)),
    ]);
    (status, misc)
}

fn rule_misc(r: &RuleDecision) -> Value {
    obj(vec![
        ("gate", text(r.status.as_str())),
        ("max_regression", num(r.max_regression)),
        (
            "worsening_interval",
            r.worsening_ci
                .map(|[lo, hi]| Value::Array([lo, hi].into_iter().filter_map(num).collect())),
        ),
        ("p_value", r.p_value.and_then(num)),
        ("test", text(&r.test)),
        (
            "baseline_values",
            Some(r.baseline_values.iter().filter_map(|v| num(*v)).collect()),
        ),
        (
            "candidate_values",
            Some(r.candidate_values.iter().filter_map(|v| num(*v)).collect()),
        ),
        ("repeats_needed", r.repeats_needed.map(Value::from)),
    ])
}

fn gate_status(g: GateStatus) -> &'static str {
    match g {
        GateStatus::Pass | GateStatus::Improvement => "PASS",
        GateStatus::Regression => "FAIL",
        // Measured, but the pairs cannot tell: a number without a claim.
        GateStatus::Inconclusive => "DONE",
    }
}

fn verdict_status(v: VerdictStatus) -> &'static str {
    match v {
        VerdictStatus::Regression => "FAIL",
        VerdictStatus::NoChange | VerdictStatus::Improvement => "PASS",
        VerdictStatus::Inconclusive => "DONE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Better, DecidedBy, MetricDecision, TestKind};

    fn summary() -> Summary {
        let mut s = Summary {
            tool_version: "0.1.0".into(),
            ..Default::default()
        };
        s.baseline.name = "lab-a".into();
        s.baseline.kernel = Some("6.1.0".into());
        s.baseline.arch = Some("x86_64".into());
        s.candidate.name = "lab-b".into();
        s.candidate.compiler = Some("gcc-12 (Debian 12.2.0-14) 12.2.0".into());
        s.verdict.status = VerdictStatus::Regression;
        s.metrics.push(MetricDelta {
            name: "tcp throughput".into(),
            unit: "bits/s".into(),
            better: Better::Higher,
            baseline: 10.0,
            candidate: f64::NAN,
            change: -0.5,
            // As the analysis records the decision's interval (run::analysis::record).
            change_ci: Some([-0.6, -0.4]),
            baseline_values: vec![10.0, f64::INFINITY],
            decision: Some(MetricDecision {
                status: DecisionStatus::Regression,
                limit: 0.05,
                alpha: 0.05,
                worsening: Some(0.5),
                worsening_ci: Some([0.4, 0.6]),
                p_value: Some(0.001),
                test: TestKind::PairedLogT,
                hodges_lehmann: None,
                cliffs_delta: None,
                pairs: 2,
                decided_by: DecidedBy::Metric,
                reason: "worse in every pair".into(),
                pairs_needed: None,
                warnings: vec![],
            }),
            ..Default::default()
        });
        s
    }

    #[test]
    fn origins_follow_kcidb_rules() {
        assert!("kdelta".parse::<Origin>().is_ok());
        assert!("my_lab2".parse::<Origin>().is_ok());
        for bad in ["", "KDelta", "a-b", "a:b"] {
            assert!(bad.parse::<Origin>().is_err(), "{bad}");
        }
    }

    #[test]
    fn document_links_tests_to_builds_and_drops_what_json_cannot_hold() {
        let o = Origin::default();
        let ids = Ids {
            origin: &o,
            run: "r1",
            suite: "lab.nft",
        };
        let d = document(&summary(), &ids);
        let tests = d["tests"].as_array().unwrap();
        let builds: Vec<&str> = d["builds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap())
            .collect();
        assert_eq!(builds, ["kdelta:r1:baseline", "kdelta:r1:candidate"]);
        for t in tests {
            assert!(builds.contains(&t["build_id"].as_str().unwrap()), "{t}");
            let path = t["path"].as_str().unwrap();
            assert!(path.starts_with("kdelta.lab.nft."), "{path}");
            assert!(
                path.split('.').all(|p| !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')),
                "{path}"
            );
        }
        let by_path = |p: &str| tests.iter().find(|t| t["path"] == p).unwrap();
        let change = by_path("kdelta.lab.nft.tcp_throughput.change");
        assert_eq!(change["status"], "FAIL");
        assert_eq!(change["number"]["value"], -50.0);
        assert_eq!(
            change["misc"]["change_interval"],
            json!([-60.0_f64 / 100.0, -0.4])
        );
        assert_eq!(change["misc"]["kdelta"]["verdict"], "regression");
        assert_eq!(by_path("kdelta.lab.nft.verdict")["status"], "FAIL");
        // The candidate's mean is NaN: no number, but the test is still there.
        let cand = tests
            .iter()
            .find(|t| t["id"] == "kdelta:r1:candidate:tcp throughput")
            .unwrap();
        assert!(cand.get("number").is_none());
        let base = tests
            .iter()
            .find(|t| t["id"] == "kdelta:r1:baseline:tcp throughput")
            .unwrap();
        assert_eq!(base["misc"]["values"], json!([10.0]));
        assert_eq!(d["builds"][0]["architecture"], "x86_64");
        assert!(d["builds"][0].get("compiler").is_none());
        assert_eq!(
            d["builds"][1]["compiler"],
            "gcc-12 (Debian 12.2.0-14) 12.2.0"
        );
    }
}
