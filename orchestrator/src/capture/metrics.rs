//! The workload's metrics: extracted from each repeat's output (a JSON path or a
//! regex), written to `metrics.json` one value per repeat.

use crate::model::{MetricSeries, Metrics};
use crate::playbook::{Extract, MetricSpec};

/// Extracts one metric from a repeat's output.
pub fn extract(spec: &MetricSpec, output: &str) -> Result<f64, String> {
    let v = match &spec.extract {
        Extract::Json(path) => {
            let doc = first_json_object(output)?;
            let mut cur = &doc;
            for part in json_path(path) {
                cur = match part {
                    PathPart::Key(k) => cur.get(k),
                    PathPart::Index(i) => cur.get(i),
                }
                .ok_or_else(|| {
                    format!(
                        "JSON path `{path}` not found (missing at `{}`)",
                        part_name(&part)
                    )
                })?;
            }
            match cur {
                serde_json::Value::Number(n) => n.as_f64().ok_or("not a number")?,
                serde_json::Value::String(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{s}` at `{path}` is not a number"))?,
                other => return Err(format!("`{path}` is {other}, not a number")),
            }
        }
        Extract::Regex(re) => {
            let caps = re
                .captures(output)
                .ok_or_else(|| format!("regex `{}` does not match the output", re.as_str()))?;
            let m = caps
                .get(1)
                .ok_or("the regex's group 1 did not match")?
                .as_str();
            m.trim()
                .replace(',', "")
                .parse()
                .map_err(|_| format!("`{m}` is not a number"))?
        }
    };
    Ok(v * spec.scale)
}

enum PathPart<'a> {
    Key(&'a str),
    Index(usize),
}

fn part_name(p: &PathPart) -> String {
    match p {
        PathPart::Key(k) => k.to_string(),
        PathPart::Index(i) => format!("[{i}]"),
    }
}

fn json_path(path: &str) -> Vec<PathPart<'_>> {
    let mut out = Vec::new();
    for seg in path.split('.') {
        let (key, mut rest) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        if !key.is_empty() {
            out.push(PathPart::Key(key));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { break };
            if let Ok(i) = r[..end].parse() {
                out.push(PathPart::Index(i));
            }
            rest = &r[end + 1..];
        }
    }
    out
}

/// Builds metrics.json content from per-repeat values.
pub fn metrics_file(specs: &[MetricSpec], values: &[Vec<Option<f64>>], repeats: u32) -> Metrics {
    Metrics {
        repeats,
        metrics: specs
            .iter()
            .enumerate()
            .map(|(i, s)| MetricSeries {
                name: s.name.clone(),
                unit: s.unit.clone(),
                better: s.better,
                values: values.iter().map(|r| r.get(i).copied().flatten()).collect(),
            })
            .collect(),
    }
}

/// The first JSON object in a program's output. iperf3 -J and friends print one
/// document, but warnings and progress lines may come before or after it, and a
/// stray `}` may come before its `{`: each `{` is tried in turn (the first 64), and
/// the first that starts a whole object wins; what follows it is ignored.
fn first_json_object(output: &str) -> Result<serde_json::Value, String> {
    let mut first_err = None;
    for (at, _) in output.match_indices('{').take(64) {
        let rest = output.get(at..).unwrap_or_default();
        let mut docs = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
        match docs.next() {
            Some(Ok(v @ serde_json::Value::Object(_))) => return Ok(v),
            Some(Err(e)) => {
                first_err.get_or_insert(e);
            }
            _ => {}
        }
    }
    Err(match first_err {
        Some(e) => format!("output is not JSON: {e}"),
        None => "no JSON object in the output".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Better;

    fn spec(e: Extract) -> MetricSpec {
        MetricSpec {
            name: "m".into(),
            extract: e,
            unit: String::new(),
            better: Better::Higher,
            from_server: false,
            scale: 1.0,
        }
    }

    #[test]
    fn json_and_regex() {
        let out = "noise\n{\"end\": {\"sum_received\": {\"bits_per_second\": 1.5e9}}, \"a\": [{\"b\": 3}]}\n";
        assert_eq!(
            extract(
                &spec(Extract::Json("end.sum_received.bits_per_second".into())),
                out
            ),
            Ok(1.5e9)
        );
        assert_eq!(extract(&spec(Extract::Json("a[0].b".into())), out), Ok(3.0));
        let e = extract(&spec(Extract::Json("end.nope".into())), out).unwrap_err();
        assert!(e.contains("missing at `nope`"), "{e}");
        let re = regex::Regex::new(r"([0-9.,]+) Gbits/sec").unwrap();
        assert_eq!(
            extract(
                &spec(Extract::Regex(re)),
                "[  5] 0.0-10 sec  1,234.5 Gbits/sec"
            ),
            Ok(1234.5)
        );
    }

    #[test]
    fn json_among_noise_and_stray_braces() {
        let m = spec(Extract::Json("a".into()));
        // Issue 13: a `}` before the first `{` used to slice the output backwards.
        assert_eq!(extract(&m, "warning: } unexpected\n{\"a\": 2}\n"), Ok(2.0));
        assert_eq!(extract(&m, "}{\"a\": 1} trailing {"), Ok(1.0));
        assert_eq!(extract(&m, "{broken\n{\"a\": 3}"), Ok(3.0));
        assert!(extract(&m, "} no object {").is_err());
        assert!(extract(&m, "").unwrap_err().contains("no JSON object"));
        assert!(extract(&m, "€€ {€").is_err());
    }
}
