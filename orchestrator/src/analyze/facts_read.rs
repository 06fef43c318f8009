//! Reads `facts.json` as people write it, not only as kdelta writes it.
//!
//! A capture made by hand or by another tool writes sysctls as JSON numbers
//! (`"fs.file-max": 9223372036854775807`), flags as booleans, `tcp_mem` as an array.
//! Deserialising straight into [`Facts`] would drop the whole file for one such
//! value, and the report would then say nothing about runtime state at all. Here
//! each field is read alone: scalars of any JSON type become the text `sysctl -a`
//! would print, and a field that cannot be read costs that field, with a warning
//! naming it. Top-level keys kdelta does not know are kept in `extra`, so a
//! hand-written `"clocksource": "hpet"` is still compared.

use serde_json::{Map, Value};

use crate::model::{Facts, Nic};

/// `facts.json` text → facts and one warning per field that was dropped. Fails only
/// when the text is not JSON or not an object (then nothing in it can be trusted).
pub fn read_facts(text: &str) -> Result<(Facts, Vec<String>), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Value::Object(obj) = v else {
        return Err(format!("expected a JSON object, found {}", type_name(&v)));
    };
    let mut f = Facts::default();
    let mut warn = Vec::new();
    for (k, v) in obj {
        read_field(&mut f, &k, v, &mut warn);
    }
    Ok((f, warn))
}

fn read_field(f: &mut Facts, k: &str, v: Value, warn: &mut Vec<String>) {
    if v.is_null() {
        return;
    }
    let text_field = match k {
        "hostname" => Some(&mut f.hostname),
        "kernel" => Some(&mut f.kernel),
        "cpu_model" => Some(&mut f.cpu_model),
        "virtualization" => Some(&mut f.virtualization),
        "os" => Some(&mut f.os),
        "cmdline" => Some(&mut f.cmdline),
        "cpufreq_governor" => Some(&mut f.cpufreq_governor),
        "thp" => Some(&mut f.thp),
        "perf_version" => Some(&mut f.perf_version),
        _ => None,
    };
    if let Some(slot) = text_field {
        match scalar_text(&v) {
            Some(s) => *slot = Some(s),
            None => warn.push(dropped(k, &v, "a string")),
        }
        return;
    }
    match k {
        "nr_cpus" => match integer(&v).and_then(|n| u32::try_from(n).ok()) {
            Some(n) => f.nr_cpus = Some(n),
            None => warn.push(dropped(k, &v, "a CPU count")),
        },
        "memory_kb" => match integer(&v).and_then(|n| u64::try_from(n).ok()) {
            Some(n) => f.memory_kb = Some(n),
            None => warn.push(dropped(k, &v, "a number of KiB")),
        },
        "sysctl" => f.sysctl = text_map(k, v, warn),
        "mitigations" => f.mitigations = text_map(k, v, warn),
        "nic" => f.nic = nics(v, warn),
        "extra" => match v {
            Value::Object(o) => f.extra.extend(o),
            other => warn.push(dropped(k, &other, "an object")),
        },
        // Unknown keys are kept: they are compared like kdelta's own extras.
        _ => {
            f.extra.insert(k.to_string(), v);
        }
    }
}

/// A scalar as `sysctl -a` would print it: numbers in decimal, booleans `1`/`0`,
/// arrays of scalars joined by spaces (`net.ipv4.tcp_mem = 4096 87380 6291456`).
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.into()),
        Value::Array(xs) if xs.iter().all(|x| !x.is_array() && !x.is_object()) => Some(
            xs.iter()
                .filter_map(scalar_text)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    }
}

fn integer(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An object of scalars (sysctls, mitigations); a non-scalar entry costs that entry.
fn text_map(
    k: &str,
    v: Value,
    warn: &mut Vec<String>,
) -> std::collections::BTreeMap<String, String> {
    let Value::Object(o) = v else {
        warn.push(dropped(k, &v, "an object of name → value"));
        return Default::default();
    };
    let mut out = std::collections::BTreeMap::new();
    for (name, val) in o {
        match scalar_text(&val) {
            Some(s) => {
                out.insert(name, s);
            }
            None if val.is_null() => {}
            None => warn.push(dropped(&format!("{k}.{name}"), &val, "a string or number")),
        }
    }
    out
}

fn nics(v: Value, warn: &mut Vec<String>) -> Vec<Nic> {
    let Value::Array(xs) = v else {
        warn.push(dropped("nic", &v, "an array of interfaces"));
        return vec![];
    };
    let mut out = Vec::new();
    for (i, x) in xs.into_iter().enumerate() {
        let Value::Object(mut o) = x else {
            warn.push(dropped(&format!("nic[{i}]"), &x, "an object"));
            continue;
        };
        normalise_nic(&mut o);
        match serde_json::from_value::<Nic>(Value::Object(o)) {
            Ok(n) if !n.name.is_empty() => out.push(n),
            Ok(_) => warn.push(format!(
                "field `nic[{i}]`: no `name`; that interface ignored"
            )),
            Err(e) => warn.push(format!("field `nic[{i}]`: {e}; that interface ignored")),
        }
    }
    out
}

/// Scalars of any type where `Nic` wants text (features `true`, mtu `"1500"`).
fn normalise_nic(o: &mut Map<String, Value>) {
    for k in ["name", "driver", "qdisc"] {
        if let Some(s) = o
            .get(k)
            .and_then(|v| (!v.is_string()).then(|| scalar_text(v)).flatten())
        {
            o.insert(k.into(), Value::String(s));
        }
    }
    if let Some(n) = o.get("mtu").and_then(integer) {
        o.insert("mtu".into(), Value::from(n as i64));
    }
    if let Some(Value::Object(feats)) = o.get_mut("features") {
        for val in feats.values_mut() {
            if let Value::Bool(b) = val {
                *val = Value::String(if *b { "on" } else { "off" }.into());
            } else if let Some(s) = (!val.is_string()).then(|| scalar_text(val)).flatten() {
                *val = Value::String(s);
            }
        }
    }
}

fn dropped(field: &str, v: &Value, want: &str) -> String {
    format!(
        "field `{field}`: expected {want}, found {}; that field ignored",
        type_name(v)
    )
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_booleans_and_arrays_are_read_as_text() {
        let (f, warn) = read_facts(
            r#"{"kernel": "6.1.0", "nr_cpus": "8", "memory_kb": 16384000,
                "sysctl": {"fs.file-max": 9223372036854775807, "net.ipv4.tcp_mem": [4096, 87380, 6291456],
                           "kernel.numa_balancing": true, "vm.bad": {"x": 1}},
                "cmdline": "quiet slub_debug=FZ",
                "nic": [{"name": "eth0", "mtu": "9000", "features": {"tso": false, "gro": "on"}}, 7],
                "clocksource": "hpet"}"#,
        )
        .expect("an object");
        assert_eq!(f.sysctl["fs.file-max"], "9223372036854775807");
        assert_eq!(f.sysctl["net.ipv4.tcp_mem"], "4096 87380 6291456");
        assert_eq!(f.sysctl["kernel.numa_balancing"], "1");
        assert_eq!(f.nr_cpus, Some(8));
        assert_eq!(f.memory_kb, Some(16384000));
        assert_eq!(f.nic[0].mtu, Some(9000));
        assert_eq!(f.nic[0].features["tso"], "off");
        assert_eq!(f.extra["clocksource"], "hpet");
        assert_eq!(warn.len(), 2, "{warn:?}");
        assert!(
            warn.iter().any(|w| w.contains("`sysctl.vm.bad`")),
            "{warn:?}"
        );
        assert!(warn.iter().any(|w| w.contains("`nic[1]`")), "{warn:?}");
    }

    #[test]
    fn what_kdelta_writes_reads_back_the_same() {
        let f = crate::capture::facts::parse_facts(
            "@@kernel\n6.1\n@@sysctl\nnet.core.busy_poll = 50\n@@nic\nnic eth0\nmtu 1500\nfeature tso on\n@@netfilter\nnft_rules 3\n",
        );
        let text = serde_json::to_string(&f).expect("serialisable");
        let (back, warn) = read_facts(&text).expect("an object");
        assert!(warn.is_empty(), "{warn:?}");
        assert_eq!(serde_json::to_string(&back).ok(), Some(text));
    }

    #[test]
    fn not_an_object_is_an_error() {
        assert!(read_facts("[1, 2]").is_err());
        assert!(read_facts("{").is_err());
    }
}
