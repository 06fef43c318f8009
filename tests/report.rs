//! The report escapes everything that came from a host: symbols, config values and
//! names may contain markup, quotes, very long or non-UTF-8 names.

use kdelta::analyze::{analyze, load_capture, AnalyzeOptions};
use kdelta::attribute::KnowledgeBase;
use kdelta::fold::FoldOptions;

#[test]
fn hostile_strings_are_escaped_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let long = "x".repeat(5000);
    let mut evil = Vec::new();
    for i in 0..400 {
        let sym: Vec<u8> = match i % 4 {
            0 => b"<script>alert(1)</script>".to_vec(),
            1 => b"a\"onmouseover=\"alert(2)".to_vec(),
            2 => [b"bad\xff\xfe".as_slice(), b"name"].concat(),
            _ => long.as_bytes().to_vec(),
        };
        evil.extend_from_slice(b"evil<img> 1 [000] 1.0: 1 cpu-clock: \n\tffffffff81000000 ");
        evil.extend_from_slice(&sym);
        evil.extend_from_slice(
            b"+0x1 ([kernel.kallsyms])\n\tffffffff81000001 tcp_ack+0x1 ([kernel.kallsyms])\n\n",
        );
    }
    let plain =
        "x 1 [000] 1.0: 1 cpu-clock: \n\tffffffff81000001 tcp_ack+0x1 ([kernel.kallsyms])\n\n"
            .repeat(400);
    std::fs::write(a.join("perf.script"), plain).unwrap();
    std::fs::write(b.join("perf.script"), evil).unwrap();
    std::fs::write(a.join("kernel.config"), "# CONFIG_EVIL is not set\n").unwrap();
    std::fs::write(
        b.join("kernel.config"),
        "CONFIG_EVIL=\"</td><script>alert(3)</script>\"\n",
    )
    .unwrap();
    let fo = FoldOptions::default();
    let base = load_capture(&a, "base", &fo).unwrap();
    let cand = load_capture(&b, "<b>cand</b>", &fo).unwrap();
    let s = analyze(
        &base,
        &cand,
        &KnowledgeBase::builtin().unwrap(),
        &AnalyzeOptions {
            max_functions: 50,
            ..Default::default()
        },
    )
    .unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    kdelta::runner::write_folded(&out, &base, &cand).unwrap();
    kdelta::report::write_all(&out, &s, "kdelta analyze '<x>'").unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for raw in [
        "<script>alert",
        "alert(2)\"",
        "<b>cand</b>",
        "</td><script>",
        "<img>",
        "'<x>'",
    ] {
        assert!(!html.contains(raw), "unescaped {raw:?} in report.html");
    }
    assert!(
        html.contains("&lt;script&gt;alert(1)"),
        "the symbol is shown, escaped"
    );
    assert!(
        html.contains("bad\u{fffd}\u{fffd}name"),
        "non-UTF-8 shown with replacement characters"
    );
    // Exactly one script element: the page's own filter script.
    assert_eq!(html.matches("<script>").count(), 1);
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(!md.contains("<b>") && !md.contains("<script>"), "{md}");
}
