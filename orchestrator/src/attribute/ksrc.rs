//! Kernel-source mapping: which functions exist only because of a config option.
//!
//! When the user points `--kernel-src` at a kernel tree, an option with no
//! knowledge-base entry can still be tied to profile frames mechanically:
//! - Kbuild lines `obj-$(CONFIG_X) += foo.o dir/` (and composite objects,
//!   `foo-$(CONFIG_X) += bar.o`) make whole files depend on the option;
//! - `#ifdef CONFIG_X`, `#if IS_ENABLED(CONFIG_X)`, `#if defined(CONFIG_X)` blocks
//!   in C files make the functions defined inside them depend on it (`#else`
//!   branches and `#ifndef` on the opposite value).
//!
//! Only the options asked for are looked up, and only C files that mention one
//! of them (or that Kbuild ties to one) are parsed, so a full tree (~70k files)
//! is scanned in a few seconds. The parser is a heuristic for kernel style (a
//! definition starts at column 0, its body's `{` follows the closing `)`), good
//! for naming candidates; the profile and the statistics decide the rest.

use anyhow::{Context, Result};
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Functions tied to one option.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OptionCode {
    /// Compiled only when the option is enabled.
    pub when_enabled: BTreeSet<String>,
    /// Compiled only when the option is disabled (`#else`, `#ifndef`).
    pub when_disabled: BTreeSet<String>,
    /// Where the evidence came from, for the report: `kernel/foo.c (Kbuild)`.
    pub files: BTreeSet<String>,
    /// Kernel modules built only with the option (`obj-$(CONFIG_X) += foo.o` makes
    /// module `foo` when X is `m`), as /proc/modules spells them.
    pub modules: BTreeSet<String>,
    /// The Makefiles that build them: `net/sched/Makefile`.
    pub module_makefiles: BTreeSet<String>,
}

/// Maps each wanted option to the functions that depend on it.
///
/// `arch` is the kernel's architecture folder (`x86`, `arm64`; see [`arch_dir`]):
/// code of other architectures under `arch/` is skipped.
pub fn map_options(
    root: &Path,
    wanted: &BTreeSet<String>,
    arch: &str,
) -> Result<BTreeMap<String, OptionCode>> {
    let meta = std::fs::metadata(root)
        .with_context(|| format!("--kernel-src {}: cannot read the folder", root.display()))?;
    if !meta.is_dir() || !(root.join("Kbuild").exists() || root.join("Makefile").exists()) {
        anyhow::bail!(
            "--kernel-src {}: not a kernel tree (no Makefile or Kbuild at its top); point it at the folder that holds `kernel/`, `mm/`, `net/`",
            root.display()
        );
    }
    let mut out: BTreeMap<String, OptionCode> = BTreeMap::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    let mut makefiles = Vec::new();
    let mut sources = Vec::new();
    walk(root, &mut makefiles, &mut sources);
    let arch_root = root.join("arch");
    let own_arch = arch_root.join(arch);
    let other_arch = |p: &Path| p.starts_with(&arch_root) && !p.starts_with(&own_arch);
    makefiles.retain(|p| !other_arch(p));
    sources.retain(|p| !other_arch(p));

    // 1. Kbuild: files (and folders) built only with an option.
    let mut file_option: HashMap<PathBuf, BTreeSet<String>> = HashMap::new();
    let mut dir_option: Vec<(PathBuf, String)> = Vec::new();
    for mk in &makefiles {
        let Ok(text) = std::fs::read_to_string(mk) else {
            continue;
        };
        let dir = mk.parent().unwrap_or(root);
        for (opt, module) in module_rules(&text, wanted) {
            let rel = mk.strip_prefix(root).unwrap_or(mk).display().to_string();
            let e = out.entry(opt).or_default();
            e.module_makefiles.insert(rel);
            e.modules.insert(module);
        }
        for (opt, objs) in kbuild_rules(&text, wanted) {
            for o in objs {
                if let Some(sub) = o.strip_suffix('/') {
                    dir_option.push((dir.join(sub), opt.clone()));
                } else if let Some(stem) = o.strip_suffix(".o") {
                    for src in object_sources(dir, stem, &text) {
                        file_option.entry(src).or_default().insert(opt.clone());
                    }
                }
            }
        }
    }

    // 2. C files: those Kbuild ties to an option, and those that name one.
    let mention = Regex::new(&format!(
        r"\b({})\b",
        wanted
            .iter()
            .map(|w| regex::escape(w))
            .collect::<Vec<_>>()
            .join("|")
    ))?;
    for src in &sources {
        let mut whole: BTreeSet<String> = file_option.get(src).cloned().unwrap_or_default();
        for (d, opt) in &dir_option {
            if src.starts_with(d) {
                whole.insert(opt.clone());
            }
        }
        let Ok(bytes) = std::fs::read(src) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let mentions = mention.is_match(&text);
        if whole.is_empty() && !mentions {
            continue;
        }
        let rel = src.strip_prefix(root).unwrap_or(src).display().to_string();
        for f in functions(&text, wanted) {
            for opt in &whole {
                out.entry(opt.clone())
                    .or_default()
                    .when_enabled
                    .insert(f.name.clone());
                out.entry(opt.clone())
                    .or_default()
                    .files
                    .insert(format!("{rel} (Kbuild)"));
            }
            for (opt, enabled) in &f.guards {
                let e = out.entry(opt.clone()).or_default();
                if *enabled {
                    e.when_enabled.insert(f.name.clone());
                } else {
                    e.when_disabled.insert(f.name.clone());
                }
                e.files.insert(format!("{rel} (#if)"));
            }
        }
    }
    // A name defined in both branches exists either way: it says nothing.
    for code in out.values_mut() {
        let both: Vec<String> = code
            .when_enabled
            .intersection(&code.when_disabled)
            .cloned()
            .collect();
        for n in both {
            code.when_enabled.remove(&n);
            code.when_disabled.remove(&n);
        }
    }
    Ok(out)
}

/// The kernel's `arch/` folder for a `uname -m` machine name.
pub fn arch_dir(machine: &str) -> &str {
    match machine {
        "x86_64" | "i386" | "i486" | "i586" | "i686" | "amd64" => "x86",
        "aarch64" | "arm64" => "arm64",
        m if m.starts_with("arm") => "arm",
        m if m.starts_with("ppc") || m.starts_with("powerpc") => "powerpc",
        m if m.starts_with("riscv") => "riscv",
        m if m.starts_with("mips") => "mips",
        m if m.starts_with("s390") => "s390",
        m if m.starts_with("loongarch") => "loongarch",
        m => m,
    }
}

fn walk(dir: &Path, makefiles: &mut Vec<PathBuf>, sources: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            // Not kernel code, or not compiled into the kernel.
            if name.starts_with('.')
                || matches!(
                    &*name,
                    "Documentation" | "tools" | "samples" | "scripts" | "LICENSES" | "usr"
                )
            {
                continue;
            }
            walk(&e.path(), makefiles, sources);
        } else if ft.is_file() {
            if name == "Makefile" || name == "Kbuild" {
                makefiles.push(e.path());
            } else if name.ends_with(".c") {
                sources.push(e.path());
            }
        }
    }
}

/// `prefix-$(CONFIG_X) += a.o b/` rules for wanted options, with `\` continuations.
pub fn kbuild_rules(text: &str, wanted: &BTreeSet<String>) -> Vec<(String, Vec<String>)> {
    prefixed_rules(text, wanted)
        .into_iter()
        .map(|(_, opt, objs)| (opt, objs))
        .collect()
}

/// The modules an option builds: the objects of its `obj-$(CONFIG_X) += foo.o`
/// lines (a composite `foo-objs`/`foo-y` is still module `foo`). Folders
/// (`obj-$(CONFIG_X) += dir/`) are left out: each module inside has its own option.
pub fn module_rules(text: &str, wanted: &BTreeSet<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (prefix, opt, objs) in prefixed_rules(text, wanted) {
        if prefix != "obj" {
            continue;
        }
        for o in objs {
            if let Some(stem) = o.strip_suffix(".o") {
                let name = stem.rsplit('/').next().unwrap_or(stem);
                out.push((opt.clone(), name.replace('-', "_")));
            }
        }
    }
    out
}

/// `prefix-$(CONFIG_X) += …` rules as (prefix, option, objects).
fn prefixed_rules(text: &str, wanted: &BTreeSet<String>) -> Vec<(String, String, Vec<String>)> {
    let joined = text.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((lhs, rhs)) = line.split_once('=') else {
            continue;
        };
        let lhs = lhs.trim_end_matches([':', '+', '?']).trim();
        let Some((prefix, rest)) = lhs.split_once("-$(") else {
            continue;
        };
        if prefix.contains("flags") || prefix.contains("FLAGS") || prefix.contains("SANITIZE") {
            continue;
        }
        let Some(opt) = rest.strip_suffix(')') else {
            continue;
        };
        if !wanted.contains(opt) {
            continue;
        }
        let objs = rhs
            .split_whitespace()
            .filter(|o| o.ends_with(".o") || o.ends_with('/'))
            .map(str::to_string)
            .collect::<Vec<_>>();
        if !objs.is_empty() {
            out.push((prefix.to_string(), opt.to_string(), objs));
        }
    }
    out
}

/// The C files an object is built from: `foo.c`, or the parts of a composite
/// object (`foo-y := a.o b.o`, `foo-objs := …`).
fn object_sources(dir: &Path, stem: &str, makefile: &str) -> Vec<PathBuf> {
    let c = dir.join(format!("{stem}.c"));
    if c.exists() {
        return vec![c];
    }
    let joined = makefile.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let Some((lhs, rhs)) = line.split_once('=') else {
            continue;
        };
        let lhs = lhs.trim_end_matches([':', '+']).trim();
        if lhs == format!("{stem}-y") || lhs == format!("{stem}-objs") {
            for o in rhs.split_whitespace() {
                if let Some(s) = o.strip_suffix(".o") {
                    let p = dir.join(format!("{s}.c"));
                    if p.exists() {
                        out.push(p);
                    }
                }
            }
        }
    }
    out
}

/// A function definition and the options its `#if` nest requires.
#[derive(Debug, PartialEq)]
pub struct FunctionDef {
    pub name: String,
    /// (option, required value): true = enabled, false = disabled.
    pub guards: Vec<(String, bool)>,
}

/// One open `#if`: what its current branch requires of wanted options.
struct Cond {
    /// The options the `#if` line names (when it is simple enough to read).
    opts: Vec<String>,
    /// Whether the condition was negated (`#ifndef`, `#if !…`).
    negated: bool,
    /// In the `#else` branch.
    in_else: bool,
    /// An `#elif` makes the branch's meaning unreadable: ignore it from there.
    opaque: bool,
}

/// Definitions of functions at file scope, with the config guards around each.
pub fn functions(text: &str, wanted: &BTreeSet<String>) -> Vec<FunctionDef> {
    let cfg = Regex::new(r"CONFIG_[A-Za-z0-9_]+").expect("static regex");
    let lines: Vec<&str> = text.lines().collect();
    let mut stack: Vec<Cond> = Vec::new();
    let mut out = Vec::new();
    let mut depth = 0i32; // brace depth, to see file scope
    let mut in_comment = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        if !in_comment && t.starts_with('#') {
            let d = t[1..].trim_start();
            let word = d
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .next()
                .unwrap_or("");
            let rest = &d[word.len()..];
            match word {
                "if" | "ifdef" | "ifndef" => {
                    let opts: Vec<String> = cfg
                        .find_iter(rest)
                        .map(|m| m.as_str().to_string())
                        .filter(|o| wanted.contains(o))
                        .collect();
                    // Only plain conditions are read: one option, or options joined by &&.
                    let simple = !rest.contains("||")
                        && (word != "if"
                            || rest.matches('!').count() <= usize::from(opts.len() == 1));
                    let negated =
                        word == "ifndef" || (word == "if" && rest.trim_start().starts_with('!'));
                    stack.push(Cond {
                        opts: if simple { opts } else { vec![] },
                        negated,
                        in_else: false,
                        opaque: false,
                    });
                }
                "elif" => {
                    if let Some(c) = stack.last_mut() {
                        c.opaque = true;
                    }
                }
                "else" => {
                    if let Some(c) = stack.last_mut() {
                        c.in_else = true;
                    }
                }
                "endif" => {
                    stack.pop();
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        // A definition starts at column 0 at file scope: `static int foo(` …
        if depth == 0 && !in_comment && starts_definition(line) {
            if let Some(name) = defined_name(&lines, i) {
                let mut guards = Vec::new();
                for c in stack.iter().filter(|c| !c.opaque) {
                    // Negated conjunctions (`!(A && B)`) are not one requirement per option.
                    if c.negated && c.opts.len() > 1 {
                        continue;
                    }
                    for o in &c.opts {
                        guards.push((o.clone(), c.negated == c.in_else));
                    }
                }
                out.push(FunctionDef { name, guards });
            }
        }
        // Track braces and comments well enough to know file scope.
        let mut chars = line.chars().peekable();
        let mut in_str: Option<char> = None;
        while let Some(ch) = chars.next() {
            if in_comment {
                if ch == '*' && chars.peek() == Some(&'/') {
                    chars.next();
                    in_comment = false;
                }
                continue;
            }
            if let Some(q) = in_str {
                if ch == '\\' {
                    chars.next();
                } else if ch == q {
                    in_str = None;
                }
                continue;
            }
            match ch {
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    in_comment = true;
                }
                '/' if chars.peek() == Some(&'/') => break,
                '"' | '\'' => in_str = Some(ch),
                '{' => depth += 1,
                '}' => depth = (depth - 1).max(0),
                _ => {}
            }
        }
        i += 1;
    }
    out
}

fn starts_definition(line: &str) -> bool {
    let Some(first) = line.chars().next() else {
        return false;
    };
    let word = line
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()
        .unwrap_or("");
    (first.is_ascii_alphabetic() || first == '_') && !matches!(word, "typedef" | "extern")
}

/// The name of the function defined from line `i`, if the lines that follow form
/// a definition (the parameter list closes and a `{` comes before any `;`).
fn defined_name(lines: &[&str], i: usize) -> Option<String> {
    // The name may be on the next line in some styles: `static int\nfoo(…)`.
    let (head_line, at) = if lines[i].contains('(') {
        (lines[i], i)
    } else {
        let next = *lines.get(i + 1)?;
        let ident_start = next.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        if lines[i].contains([';', '=', '{']) || !ident_start || !next.contains('(') {
            return None;
        }
        (next, i + 1)
    };
    let head = &head_line[..head_line.find('(')?];
    if head.contains('=') || head.contains(';') {
        return None;
    }
    let name: String = head
        .trim_end()
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    if name.is_empty() || name.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    // Attribute macros on a line of their own: `__printf(2, 3)` above the definition.
    const ATTRIBUTES: &[&str] = &[
        "__printf",
        "__scanf",
        "__attribute__",
        "__section",
        "__aligned",
        "__must_hold",
        "__acquires",
        "__releases",
        "__cond_lock",
        "__diag_push",
        "__diag_ignore",
    ];
    if ATTRIBUTES.contains(&name.as_str()) {
        return None;
    }
    // Macros that define things (`SYSCALL_DEFINE3(`, `DEFINE_PER_CPU(`) are all caps.
    if name
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    // Find the end of the parameter list, then what follows it.
    let mut depth = 0i32;
    let mut seen_open = false;
    for l in lines.iter().skip(at).take(30) {
        for ch in l.chars() {
            match ch {
                '(' => {
                    depth += 1;
                    seen_open = true;
                }
                ')' => depth -= 1,
                ';' if seen_open && depth == 0 => return None,
                '{' if seen_open && depth == 0 => return Some(name),
                '=' if seen_open && depth == 0 => return None,
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(xs: &[&str]) -> BTreeSet<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn guards_follow_ifdef_else_and_nesting() {
        let src = r#"
#include <linux/foo.h>
static int always(void)
{
	return 0;
}
#ifdef CONFIG_FOO
static void foo_only(struct x *p)
{
#ifdef CONFIG_BAR
	int bar_inside_body;
#endif
}
#else
static inline void foo_stub(void) { }
#endif
#if IS_ENABLED(CONFIG_FOO) && defined(CONFIG_BAR)
void __cold
both(int a,
     int b)
{
}
#endif
#ifndef CONFIG_BAR
int no_bar(void) { return 1; }
#endif
#if defined(CONFIG_FOO) || defined(CONFIG_BAR)
int either(void) { return 1; }
#endif
int decl_only(void);
static int table[] = { 1, 2 };
/* int in_comment(void) { } */
int
split_name(void)
{
}
"#;
        let fs = functions(src, &w(&["CONFIG_FOO", "CONFIG_BAR"]));
        let get = |n: &str| fs.iter().find(|f| f.name == n).map(|f| f.guards.clone());
        assert_eq!(get("always"), Some(vec![]));
        assert_eq!(get("foo_only"), Some(vec![("CONFIG_FOO".into(), true)]));
        assert_eq!(get("foo_stub"), Some(vec![("CONFIG_FOO".into(), false)]));
        assert_eq!(
            get("both"),
            Some(vec![
                ("CONFIG_FOO".into(), true),
                ("CONFIG_BAR".into(), true)
            ])
        );
        assert_eq!(get("no_bar"), Some(vec![("CONFIG_BAR".into(), false)]));
        assert_eq!(get("either"), Some(vec![]));
        assert_eq!(get("split_name"), Some(vec![]));
        assert_eq!(get("decl_only"), None);
        assert_eq!(get("table"), None);
        assert_eq!(get("in_comment"), None);
    }

    #[test]
    fn kbuild_rules_read_continuations_and_skip_flags() {
        let mk = "obj-$(CONFIG_FOO) += foo.o \\\n\tfoo_extra.o\nccflags-$(CONFIG_FOO) += -DX\nobj-$(CONFIG_BAR) += bar/\nobj-y += core.o\n";
        let r = kbuild_rules(mk, &w(&["CONFIG_FOO", "CONFIG_BAR"]));
        assert_eq!(
            module_rules(
                &format!("{mk}obj-$(CONFIG_FOO) += foo-bar.o\nfoo-bar-objs := a.o b.o\nfoo-$(CONFIG_FOO) += part.o\n"),
                &w(&["CONFIG_FOO", "CONFIG_BAR"])
            ),
            vec![
                ("CONFIG_FOO".to_string(), "foo".to_string()),
                ("CONFIG_FOO".to_string(), "foo_extra".to_string()),
                ("CONFIG_FOO".to_string(), "foo_bar".to_string()),
            ],
            "modules come from obj- lines only, a folder is none, dashes are underscores"
        );
        assert_eq!(
            r,
            vec![
                (
                    "CONFIG_FOO".to_string(),
                    vec!["foo.o".to_string(), "foo_extra.o".to_string()]
                ),
                ("CONFIG_BAR".to_string(), vec!["bar/".to_string()]),
            ]
        );
    }
}
