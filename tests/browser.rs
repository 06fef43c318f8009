//! The report in a real browser: headless Chromium (Debian's `chromium`, installed by
//! .ci/run) opens a report rendered from the real lab capture in tests/fixtures; a
//! small page beside it reaches into the report's flame graphs (file pages may read
//! each other with --allow-file-access-from-files), searches, clicks a frame to zoom,
//! and writes what happened into its own DOM, which --dump-dom prints. Any message
//! on the report's console (a script error, a failed resource) fails the test.

mod common;
use common::*;
use std::process::Command;

const PROBE: &str = r#"<!doctype html><html><body><pre id="result">pending</pre>
<iframe id="r" src="report.html" width="1280" height="900"></iframe>
<script>
document.getElementById('r').addEventListener('load', function () {
  var out = { graphs: [], sections: [] };
  try {
    var rep = document.getElementById('r').contentWindow.document;
    ['verdict', 'attribution', 'flame', 'functions', 'config', 'runtime', 'metrics'].forEach(function (id) {
      if (rep.getElementById(id)) out.sections.push(id);
    });
    var frames = rep.querySelectorAll('iframe.flame');
    for (var i = 0; i < frames.length; i++) {
      var w = frames[i].contentWindow, d = w.document, g = { title: frames[i].title };
      g.svg = !!d.querySelector('svg');
      g.frames = d.querySelectorAll('#frames > g').length;
      // Search, as the Search button does after its prompt.
      w.search('nft_do_chain');
      g.matched = d.getElementById('matched').textContent;
      w.reset_search();
      // Zoom: click the widest frame under half the root's width (it has siblings
      // that the zoom must hide).
      var all = Array.prototype.slice.call(d.querySelectorAll('#frames > g'));
      var width = function (e) { return parseInt(e.querySelector('rect').getAttribute('fg:w')); };
      var root = Math.max.apply(null, all.map(width));
      var target = all.filter(function (e) { var x = width(e); return x < root / 2 && x > root / 50; })
        .sort(function (a, b) { return width(b) - width(a); })[0];
      target.querySelector('rect').dispatchEvent(new w.MouseEvent('click', { bubbles: true }));
      g.unzoom_shown = !d.getElementById('unzoom').classList.contains('hide');
      g.hidden_after_zoom = d.querySelectorAll('#frames > g.hide').length;
      out.graphs.push(g);
    }
  } catch (e) {
    out.error = String(e);
  }
  document.getElementById('result').textContent = JSON.stringify(out);
});
</script></body></html>"#;

/// Headless Chromium, bounded, quiet (no network of its own), with its own profile.
fn headless(chromium: &str, profile: &std::path::Path) -> Command {
    let mut c = Command::new("timeout");
    c.arg("120").arg(chromium).args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]);
    c.arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[test]
fn report_works_in_headless_chromium() {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {c}"))
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium is installed by .ci/run (apt-get install chromium)");
    let tmp = tempfile::tempdir().unwrap();
    let caps = repo().join("tests/fixtures/captures/lab-nft");
    let out = tmp.path().join("out");
    let o = kdelta_analyze(&caps.join("baseline"), &caps.join("candidate"), &out)
        .output()
        .unwrap();
    assert!(
        matches!(o.status.code(), Some(0..=2)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::write(out.join("probe.html"), PROBE).unwrap();
    let profile = tmp.path().join("chromium-profile");
    let o = headless(chromium, &profile)
        .args([
            "--allow-file-access-from-files",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=15000",
            "--window-size=1280,900",
        ])
        .arg("--dump-dom")
        .arg(format!("file://{}", out.join("probe.html").display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains(":CONSOLE(")).collect();
    assert!(
        console.is_empty(),
        "console messages in the report:\n{}",
        console.join("\n")
    );
    let start =
        dom.find("<pre id=\"result\">").expect("probe page dumped") + "<pre id=\"result\">".len();
    let end = dom[start..].find("</pre>").unwrap() + start;
    let text = dom[start..end]
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    let r: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}\n{stderr}"));
    assert!(r.get("error").is_none(), "{r}");
    for s in [
        "verdict",
        "attribution",
        "flame",
        "functions",
        "config",
        "runtime",
        "metrics",
    ] {
        assert!(
            r["sections"].as_array().unwrap().iter().any(|x| x == s),
            "section {s} missing: {r}"
        );
    }
    let graphs = r["graphs"].as_array().unwrap();
    assert_eq!(
        graphs.len(),
        4,
        "differential, reverse, baseline, candidate: {r}"
    );
    for g in graphs {
        assert_eq!(g["svg"], true, "{g}");
        assert!(g["frames"].as_u64().unwrap() > 20, "{g}");
        assert!(g["unzoom_shown"] == true, "zoom did not happen: {g}");
        assert!(
            g["hidden_after_zoom"].as_u64().unwrap() > 0,
            "zoom hid nothing: {g}"
        );
    }
    // And a screenshot, as a person would see the page: a real PNG, not a blank one.
    let png = tmp.path().join("report.png");
    let o = headless(chromium, &profile)
        .arg("--window-size=1280,2000")
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", out.join("report.html").display()))
        .output()
        .unwrap();
    let bytes = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 50_000,
        "{} bytes",
        bytes.len()
    );

    // The candidate runs the nftables chain: search finds it there.
    let cand = graphs
        .iter()
        .find(|g| g["title"].as_str().unwrap().contains("candidate"))
        .unwrap();
    let m = cand["matched"].as_str().unwrap();
    assert!(
        m.starts_with("Matched: ") && !m.contains("Matched: 0"),
        "{cand}"
    );
}
