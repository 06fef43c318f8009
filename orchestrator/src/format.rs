//! How numbers read in kdelta's prose, tables and file names: one place, so the
//! headline, the report, the Markdown and the JUnit file say the same thing the same
//! way. Imports nothing from the rest of the crate.

/// A share or relative change as a percentage with as many decimals as it needs to
/// be read: `31%`, `4.3%`, `0.59%`. For prose (headlines, reasons, warnings).
pub fn pct(x: f64) -> String {
    // `+ 0.0` turns -0.0 into 0.0: never print "-0%".
    let v = x * 100.0 + 0.0;
    if v.abs() >= 10.0 {
        format!("{v:.0}%")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}%")
    } else {
        format!("{v:.2}%")
    }
}

/// A share for a table cell, where columns line up: `10.5%`, `0.59%`.
pub fn pct_cell(x: f64) -> String {
    let v = x * 100.0 + 0.0;
    if v.abs() >= 10.0 {
        format!("{v:.1}%")
    } else {
        format!("{v:.2}%")
    }
}

/// A signed difference of shares in percentage points: `+9.91`, `-0.20`.
pub fn points(x: f64) -> String {
    format!("{:+.2}", x * 100.0 + 0.0)
}

/// A p-value: three decimals where that shows it (`0.073`), four below 0.01
/// (`0.0073`), scientific below 1e-4 (`3.2e-7`), so that the tiny p-values of
/// sample counts still say how tiny.
pub fn pval(p: f64) -> String {
    if !p.is_finite() {
        "–".into()
    } else if p < 1e-300 {
        // Below what a double holds: the counts are overwhelming.
        "<1e-300".into()
    } else if p < 1e-4 {
        format!("{p:.1e}")
    } else if p < 0.01 {
        format!("{p:.4}")
    } else {
        format!("{p:.3}")
    }
}

/// A value with an SI prefix: `8.07e9 bit/s` → `8.07 Gbit/s`.
pub fn human(v: f64, unit: &str) -> String {
    let a = v.abs();
    let (div, prefix) = if a >= 1e12 {
        (1e12, "T")
    } else if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e4 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let x = v / div;
    let num = if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    };
    if unit.is_empty() && prefix.is_empty() {
        num
    } else {
        format!("{num} {prefix}{unit}")
    }
}

/// 64-bit FNV-1a, hex: a stable fingerprint of a config or a cache key (std's
/// hasher may change between releases; a cache key must not).
pub fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Text cut to at most `max` characters (never inside a character), with `…`.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// `90`, `90s`, `30m`, `2h`: a wall-time budget.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (num, scale) = match t.char_indices().last() {
        Some((i, 's')) => (t.get(..i), 1.0),
        Some((i, 'm')) => (t.get(..i), 60.0),
        Some((i, 'h')) => (t.get(..i), 3600.0),
        _ => (Some(t), 1.0),
    };
    num.and_then(|n| n.trim().parse::<f64>().ok())
        .filter(|n| n.is_finite() && *n > 0.0)
        .map(|n| std::time::Duration::from_secs_f64(n * scale))
        .ok_or_else(|| format!("{s:?}: a duration is a positive number with s, m or h (e.g. 45m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_way_to_each_number() {
        assert_eq!(pct(-0.9), "-90%");
        assert_eq!(pct(0.043), "4.3%");
        assert_eq!(pct(0.0059), "0.59%");
        assert_eq!(pct(-0.0), "0.00%");
        assert_eq!(pct_cell(0.105), "10.5%");
        assert_eq!(points(0.0991), "+9.91");
        assert_eq!(points(-0.0), "+0.00");
        assert_eq!(pval(0.073), "0.073");
        assert_eq!(pval(0.0073), "0.0073");
        assert_eq!(pval(3.2e-7), "3.2e-7");
        assert_eq!(pval(0.0), "<1e-300");
        assert_eq!(human(8.07e9, "bit/s"), "8.07 Gbit/s");
        assert_eq!(human(42.0, ""), "42.0");
        assert_eq!(clip("€€€€", 2), "€€…");
        assert_eq!(fingerprint(b"a"), fingerprint(b"a"));
        assert_ne!(fingerprint(b"CONFIG_A=y\n"), fingerprint(b"CONFIG_A=m\n"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse_duration("1.5h").unwrap().as_secs(), 5400);
        for bad in ["", "m", "-5m", "0", "10x", "NaNs", "ππ"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
