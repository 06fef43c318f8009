//! `kdelta verify` end to end on the real lab (root needed, as CI runs it): the demo's
//! candidate behind a 2000-rule nftables ruleset is measured again with the ruleset
//! flushed and loaded back before every repeat, on the one host; the revert must
//! recover most of the throughput loss, and the host must be left as it was.

mod common;
use common::*;

#[test]
fn verify_flushes_the_ruleset_recovers_the_loss_and_restores_it() {
    assert!(unsafe { libc::geteuid() } == 0, "needs root, as CI runs it");
    let _lab = lab_lock();
    let before = kd_namespaces();
    let before_work = work_folders();
    let tmp = tempfile::tempdir().unwrap();
    let pb = short_playbook(tmp.path(), |t| t.replace("repeat: 2", "repeat: 3"));
    let out = tmp.path().join("out");
    let o = kdelta_run(&pb, &out).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    let run = only_run_dir(&out);

    // An item that cannot be set back on a live host is refused, saying why.
    let o = kdelta()
        .arg("verify")
        .arg(&run)
        .args(["--cause", "CONFIG_NOT_IN_THE_DELTA"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("not in the run's delta"), "{stderr}");

    let o = kdelta()
        .arg("verify")
        .arg(&run)
        .args(["--repeat", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("cause: reverting netfilter.nft_rules (2001 → 0)"),
        "{stdout}"
    );
    let v = only_run_dir(&run.join("verify"));
    let rec = read_json(&v.join("verify.json"));
    assert_eq!(rec["finding"], "cause", "{rec}");
    let r = &rec["recoveries"][0];
    let share = r["share"].as_f64().unwrap();
    let ci = r["share_ci"].as_array().unwrap();
    let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
    assert!(share >= 0.8 && lo < share && share < hi, "{rec}");
    // The examined run's own report now shows the proof, its link to the verify run.
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("id=\"proof\"") && html.contains("kdelta verify: cause"));
    // (minijinja's HTML escaping writes `/` as `&#x2f;`, which browsers read back.)
    let rel = v.strip_prefix(&run).unwrap().join("report.html");
    let href = format!("href=\"{}\"", rel.display()).replace('/', "&#x2f;");
    assert!(html.contains(&href), "no link to {rel:?}");
    let proof = &read_json(&run.join("summary.json"))["proof"]["verify"];
    assert_eq!(proof["finding"], "cause", "{proof}");
    assert_eq!(proof["recoveries"][0]["share"], r["share"]);

    // Both states were measured on the one host, toggled before every repeat: the
    // reverted side saw no ruleset, the other the whole one back, every time (its
    // repeats were all slower than every reverted one).
    let s = read_json(&v.join("summary.json"));
    let m = &s["metrics"][0];
    let vals = |k: &str| -> Vec<f64> {
        m[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (reverted, as_is) = (vals("baseline_values"), vals("candidate_values"));
    assert_eq!((reverted.len(), as_is.len()), (3, 3));
    let slowest_reverted = reverted.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(as_is.iter().all(|x| *x < slowest_reverted), "{m}");
    let facts = |role: &str| read_json(&v.join(format!("hosts/{role}/facts.json")));
    assert_eq!(facts("baseline")["extra"]["netfilter"]["nft_rules"], 0);
    assert_eq!(facts("candidate")["extra"]["netfilter"]["nft_rules"], 2001);
    let hosts = read_json(&v.join("hosts.json"));
    let h = hosts["hosts"].as_array().unwrap();
    assert_eq!(h[0]["address"], h[1]["address"], "one host: {hosts}");
    let runrec = read_json(&v.join("run.json"));
    let restore = runrec["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "restore")
        .cloned();
    assert_eq!(restore.map(|p| p["status"].clone()), Some("ok".into()));
    let cmds = std::fs::read_dir(v.join("hosts/candidate/logs"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        cmds.contains("nft list ruleset > "),
        "the ruleset was not saved"
    );
    assert!(cmds.contains("nft -f "), "the ruleset was not loaded back");

    let left: Vec<String> = kd_namespaces()
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    let work: Vec<String> = work_folders()
        .into_iter()
        .filter(|n| !before_work.contains(n))
        .collect();
    assert!(work.is_empty(), "work folders left behind: {work:?}");
}
