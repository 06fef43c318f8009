//! The dotted path of the YAML key at a line and column (`workload.metrics.x`,
//! `deploy[1].run`), for error messages whose parser gave only a position. Read from
//! indentation, list dashes and flow mappings on the error line; good enough for
//! playbooks, never a panic on any text.

struct Entry {
    indent: usize,
    key: String,
    items: usize,
}

/// `key:` at the start of `s`: the key (unquoted) and the byte offset of its colon.
fn key_of(s: &str) -> Option<(String, usize)> {
    let colon = s.find(':')?;
    let k = s.get(..colon)?.trim();
    if k.is_empty()
        || k.starts_with('{')
        || k.starts_with('[')
        || k.starts_with('#')
        || k.contains(' ') && !k.starts_with('"')
    {
        return None;
    }
    let after = s.get(colon + 1..)?;
    if !(after.is_empty() || after.starts_with(' ')) {
        return None;
    }
    Some((k.trim_matches(|c| c == '"' || c == '\'').to_string(), colon))
}

/// The 1-based byte column of the 1-based character column `column` of `line`:
/// the parser counts characters, slicing needs bytes (`€` is three).
fn byte_column(line: &str, column: u64) -> usize {
    let chars = (column as usize).saturating_sub(1);
    line.char_indices()
        .nth(chars)
        .map_or(line.len(), |(i, _)| i)
        + 1
}

/// Keys of the flow mappings still open in `seg`: `{ b: { c: 1` → `b`, `c`'s parent.
fn flow_keys(seg: &str) -> Vec<String> {
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
    depth_keys.retain(|k| !k.is_empty());
    depth_keys
}

/// Opens a list item `- ` at `indent`: pops what it closes and pushes `[n]`.
fn open_item(stack: &mut Vec<Entry>, indent: usize) {
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
}

fn render(stack: &[Entry]) -> String {
    let mut out = String::new();
    for e in stack {
        if !e.key.starts_with('[') && !out.is_empty() {
            out.push('.');
        }
        out.push_str(&e.key);
    }
    out
}

/// The dotted path of the YAML key that holds `line:column` (both 1-based, the
/// column in characters).
pub fn yaml_path_at(text: &str, line: u64, column: u64) -> String {
    let mut stack: Vec<Entry> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let ln = i as u64 + 1;
        if ln > line {
            break;
        }
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // Past the error's column, or a line before it: the key there is open.
        let col = if ln == line {
            byte_column(raw, column)
        } else {
            usize::MAX
        };
        let mut indent = raw.len() - trimmed.len();
        let mut rest = trimmed;
        // List items: `- key: v` opens an item at this indent.
        while let Some(r) = rest.strip_prefix("- ") {
            open_item(&mut stack, indent);
            indent += 2;
            rest = r.trim_start();
            // Keys of this item sit at the new indent: do not pop the item for them.
            if let Some((k, colon)) = key_of(rest) {
                if col > indent + colon + 1 {
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
        let Some((k, colon)) = key_of(rest) else {
            continue;
        };
        let key_col = indent + colon + 1; // 1-based byte column of ':'
        if col <= key_col {
            continue;
        }
        stack.push(Entry {
            indent,
            key: k,
            items: 0,
        });
        if ln == line {
            // Flow mappings on the error line: `a: { b: { c: 1 } }`.
            let upto = (col - 1).min(raw.len());
            let seg = raw.get(key_col.min(upto)..upto).unwrap_or_default();
            for k in flow_keys(seg) {
                stack.push(Entry {
                    indent: usize::MAX,
                    key: k,
                    items: 0,
                });
            }
        }
    }
    render(&stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_paths() {
        let y = "a:\n  - run: x\n  - run: y\n    bad: 1\n";
        assert_eq!(yaml_path_at(y, 4, 5), "a[1]");
        assert_eq!(yaml_path_at(y, 4, 10), "a[1].bad");
        assert_eq!(yaml_path_at(y, 3, 10), "a[1].run");
    }

    #[test]
    fn columns_count_characters() {
        // Issue 13: a column past multi-byte text was used as a byte offset and
        // cut a `€` in half (a panic).
        let y = "workload:\n  client: { from: orchestrator, run: \"€€€€€€€€\", x: 1 }\n";
        assert_eq!(yaml_path_at(y, 2, 50), "workload.client");
        for col in 0..80 {
            yaml_path_at(y, 2, col);
            yaml_path_at("€: {€: {€", 1, col);
        }
    }
}
