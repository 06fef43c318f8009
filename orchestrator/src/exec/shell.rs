//! Shell quoting for everything that reaches a remote shell.
//!
//! Values are quoted with single quotes (POSIX), so `x; rm -rf /` arrives as one
//! literal argument. Never paste a user string into a command without this.

/// Quotes one word for POSIX sh.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for ch in s.chars() {
        if ch == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(ch);
        }
    }
    out.push('\'');
    out
}

/// Quotes and joins words into one command line.
pub fn join<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    words
        .into_iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_stay_one_word() {
        for v in ["x; rm -rf /", "$(id)", "`id`", "a'b", "", "new\nline", "*"] {
            let q = quote(v);
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf '%s' {q}"))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), v, "quoted as {q}");
        }
        assert_eq!(quote("plain-word_1.2"), "plain-word_1.2");
    }
}
