//! End to end on the real lab: network namespaces, a real sshd in each, real SSH
//! through the openssh crate, real perf and iperf3. Needs root (CI runs as root).
//! Tests that build labs hold one lock, so that each one's check for leftover
//! namespaces and work folders sees only what it made.

mod common;
use common::*;

const CANARY: &str = "kdelta-canary-secret-5f1c2e";

#[test]
fn lab_runs_end_to_end_and_cleans_up() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the lab end-to-end test needs root (network namespaces and sshd); run the suite as root as CI does"
    );
    let _lab = lab_lock();
    let before = kd_namespaces();
    let before_work = work_folders();
    let tmp = tempfile::tempdir().unwrap();

    // 1. The demo, shortened: a finished run directory with real captures. Secrets
    //    in kdelta's environment (as a cloud CLI's credentials would be) must not
    //    reach any file of it.
    let pb = short_playbook(tmp.path(), |t| t);
    let out = tmp.path().join("out");
    let o = kdelta_run(&pb, &out)
        .env("AWS_SECRET_ACCESS_KEY", CANARY)
        .env("GITHUB_TOKEN", CANARY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        matches!(o.status.code(), Some(0..=2)),
        "exit {:?}\n{stdout}\n{stderr}",
        o.status.code()
    );
    assert!(stdout.contains("report: "), "{stdout}");
    let run = only_run_dir(&out);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&run).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "run directory mode {mode:o}");
    let leaks = files_containing(&run, &[CANARY, "PRIVATE KEY"]);
    assert!(leaks.is_empty(), "secrets in the run directory: {leaks:?}");
    for role in ["baseline", "candidate"] {
        let h = run.join("hosts").join(role);
        let script = zstd_text(&h.join("perf.script.zst"));
        assert!(
            script.contains("# kdelta-repeat: 2"),
            "{role}: no second repeat"
        );
        assert!(
            script.contains("[kernel.kallsyms]"),
            "{role}: no kernel frames"
        );
        let cfg = std::fs::read_to_string(h.join("kernel.config")).unwrap();
        assert!(cfg.contains("CONFIG_"), "{role}: kernel.config");
        let facts: serde_json::Value = read_json(&h.join("facts.json"));
        assert!(
            facts["kernel"].is_string() && facts["sysctl"].as_object().unwrap().len() > 100,
            "{role}: facts"
        );
        let m: serde_json::Value = read_json(&h.join("metrics.json"));
        let tp = m["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "throughput")
            .unwrap();
        let vals = tp["values"].as_array().unwrap();
        assert_eq!(vals.len(), 2);
        assert!(
            vals.iter().all(|v| v.as_f64().unwrap() > 1e6),
            "{role}: throughput {vals:?}"
        );
        assert!(std::fs::metadata(h.join("perf-stat.txt")).unwrap().len() > 0);
    }
    let s: serde_json::Value = read_json(&run.join("summary.json"));
    let top = &s["attributions"][0];
    assert!(
        top["cause"].as_str().unwrap().starts_with("netfilter."),
        "top attribution: {top}"
    );
    assert!(
        top["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["symbol"].as_str().unwrap().starts_with("nft_")),
        "{top}"
    );
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("<iframe class=\"flame\"") && html.contains("nft_do_chain"));
    let runj: serde_json::Value = read_json(&run.join("run.json"));
    assert_eq!(runj["status"], "ok");

    // 2. A workload that fails: exit 3, the phase named in run.json, teardown done.
    let pb = short_playbook(tmp.path(), |t| {
        t.replace(
            "iperf3 -c {{ host.address }} -t {{ duration }} -J",
            "echo connection refused >&2; exit 7",
        )
    });
    let out2 = tmp.path().join("out2");
    let o = kdelta_run(&pb, &out2).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("the workload client failed")
            && stderr.contains("exit code 7")
            && stderr.contains("connection refused"),
        "{stderr}"
    );
    let run2 = only_run_dir(&out2);
    let r: serde_json::Value = read_json(&run2.join("run.json"));
    assert_eq!(r["status"], "failed");
    let phases = r["phases"].as_array().unwrap();
    assert!(phases.iter().any(|p| p["status"] == "failed" && p["name"].as_str().unwrap().starts_with("workload")), "{r}");
    assert!(
        phases
            .iter()
            .any(|p| p["name"] == "teardown" && p["status"] == "ok"),
        "{r}"
    );
    assert!(
        run2.join("hosts/baseline/facts.json").is_file(),
        "captured facts are kept"
    );

    // 3. A metric that cannot be read: exit 3 naming the metric.
    let pb = short_playbook(tmp.path(), |t| {
        t.replace(
            "json: end.sum_received.bits_per_second",
            "json: end.no_such_field",
        )
    });
    let o = kdelta_run(&pb, &tmp.path().join("out3")).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("metric `throughput`") && stderr.contains("no_such_field"),
        "{stderr}"
    );

    // 4. SIGTERM in the middle of the workload: teardown runs, exit 130, run.json says so.
    let pb = short_playbook(tmp.path(), |t| {
        t.replace("duration: 2", "duration: 8")
            .replace("repeat: 2", "repeat: 1")
    });
    let out4 = tmp.path().join("out4");
    let child = kdelta_run(&pb, &out4)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_phase(&out4, "workload 1/1", None, 60);
    std::thread::sleep(std::time::Duration::from_secs(2));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let sent = std::time::Instant::now();
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(
        sent.elapsed().as_secs() < 30,
        "teardown took {:?}",
        sent.elapsed()
    );
    let r = read_json(&only_run_dir(&out4).join("run.json"));
    assert_eq!(r["status"], "interrupted", "{r}");
    assert!(
        r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["status"] == "interrupted"),
        "{r}"
    );
    assert!(
        r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "teardown" && p["status"] == "ok"),
        "{r}"
    );

    // 5. Resume the interrupted run: nothing had finished, so both sides are captured
    //    again; what the interrupted attempt captured is kept aside.
    let run4 = only_run_dir(&out4);
    let o = kdelta()
        .arg("run")
        .arg("--resume")
        .arg(&run4)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        matches!(o.status.code(), Some(0..=2)),
        "exit {:?}\n{stderr}",
        o.status.code()
    );
    let r = read_json(&run4.join("run.json"));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(
        r["resumes"][0]["recaptured"],
        serde_json::json!(["baseline", "candidate"])
    );
    assert!(run4.join("hosts/baseline.attempt-1/facts.json").is_file());
    for role in ["baseline", "candidate"] {
        assert!(run4
            .join("hosts")
            .join(role)
            .join("perf.script.zst")
            .is_file());
    }
    assert!(run4.join("summary.json").is_file() && run4.join("report.html").is_file());

    // 6. A run whose candidate failed in download: resume captures the candidate only,
    //    keeps the baseline's capture, and the report says the sides are from two times.
    let mut r = read_json(&run4.join("run.json"));
    for p in r["phases"].as_array_mut().unwrap() {
        if p["name"].as_str().unwrap().starts_with("download ") && p["host"] == "candidate" {
            p["status"] = "failed".into();
        }
    }
    std::fs::write(run4.join("run.json"), r.to_string()).unwrap();
    std::fs::remove_file(run4.join("hosts/candidate/perf.script.zst")).unwrap();
    let baseline_profile = std::fs::read(run4.join("hosts/baseline/perf.script.zst")).unwrap();
    let o = kdelta()
        .arg("run")
        .arg("--resume")
        .arg(&run4)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        matches!(o.status.code(), Some(0..=2)),
        "exit {:?}\n{stderr}",
        o.status.code()
    );
    let r = read_json(&run4.join("run.json"));
    assert_eq!(
        r["resumes"][1]["recaptured"],
        serde_json::json!(["candidate"]),
        "{r}"
    );
    assert_eq!(
        std::fs::read(run4.join("hosts/baseline/perf.script.zst")).unwrap(),
        baseline_profile,
        "the finished side is not captured again"
    );
    assert!(run4.join("hosts/candidate.attempt-1/facts.json").is_file());
    let s = read_json(&run4.join("summary.json"));
    assert!(
        s["caveats"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().contains("resumed run")),
        "{}",
        s["caveats"]
    );

    // Nothing left behind: no namespace of ours, no work folder.
    let after: Vec<String> = kd_namespaces()
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert!(after.is_empty(), "namespaces left behind: {after:?}");
    let work: Vec<String> = work_folders()
        .into_iter()
        .filter(|w| !before_work.contains(w))
        .collect();
    assert!(work.is_empty(), "work folders left behind: {work:?}");
}

#[test]
fn bad_playbooks_fail_before_anything_is_provisioned() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("bad.yaml");
    std::fs::write(&p, "name: x\nhosts:\n  baseline: { provider: lab }\n  candidate: { provider: lab }\nworkload:\n  client: { run: x }\n  metrics:\n    t: { jsn: a.b }\n").unwrap();
    let o = kdelta_run(&p, &tmp.path().join("o")).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr.contains("bad.yaml:8:10: workload.metrics.t: unknown field `jsn`"),
        "{stderr}"
    );
    assert!(
        !tmp.path().join("o").exists(),
        "no run directory for a playbook that does not parse"
    );
    let o = kdelta()
        .arg("check")
        .arg("--offline")
        .arg(tmp.path().join("missing.yaml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read playbook"));
}

#[test]
fn analyze_reads_capture_folders_and_rejects_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(
        a.join("perf.script"),
        "this is not perf output\n\x00\x01garbage\n",
    )
    .unwrap();
    std::fs::write(
        b.join("perf.script"),
        "x 1 [000] 1.0: 1 cpu-clock: \n\tffffffff81000000 tcp_ack+0x1 ([kernel.kallsyms])\n\n",
    )
    .unwrap();
    let o = kdelta()
        .args(["analyze", "--baseline"])
        .arg(&a)
        .arg("--candidate")
        .arg(&b)
        .arg("--out")
        .arg(tmp.path().join("o"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("has no samples") && stderr.contains("unreadable lines"),
        "{stderr}"
    );
    let o = kdelta()
        .args(["analyze"])
        .arg(tmp.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a run directory"));
}

#[test]
fn ssh_provider_against_lab_hosts() {
    assert!(unsafe { libc::geteuid() } == 0, "needs root, as CI runs it");
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let lab = LabUp::new(&repo().join("playbooks/lab-tcp.yaml"));
    // The lab's generated key and its folder are private.
    use std::os::unix::fs::PermissionsExt;
    let key = std::path::PathBuf::from(lab.host("baseline").key);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600, "{}", key.display());
    assert_eq!(mode(key.parent().unwrap()), 0o700, "{}", key.display());
    // The right key: the preflight passes on both hosts.
    let good = tmp.path().join("good.yaml");
    std::fs::write(&good, lab.ssh_playbook(None, "timeouts: { connect: 5 }\n")).unwrap();
    let o = kdelta().arg("check").arg(&good).output().unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let report = String::from_utf8_lossy(&o.stdout);
    for role in ["baseline", "candidate"] {
        assert!(report.contains(&format!("{role}: ssh ok")), "{report}");
        assert!(
            report.contains(&format!("{role}: clock within")),
            "{report}"
        );
        assert!(report.contains("MiB free in /tmp"), "{report}");
    }
    // A whole run through the ssh provider (both hosts at once): captures from both,
    // and the remote work folders are gone afterwards (the lab shares this /tmp).
    let before_work = work_folders();
    let o = kdelta_run(&good, &tmp.path().join("good-out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        matches!(o.status.code(), Some(0..=2)),
        "exit {:?}\n{stderr}",
        o.status.code()
    );
    let run = only_run_dir(&tmp.path().join("good-out"));
    for role in ["baseline", "candidate"] {
        let m = read_json(&run.join("hosts").join(role).join("metrics.json"));
        assert_eq!(m["metrics"][0]["values"], serde_json::json!([1.0]), "{m}");
        assert!(!zstd_text(&run.join("hosts").join(role).join("perf.script.zst")).is_empty());
    }
    let left: Vec<String> = work_folders()
        .into_iter()
        .filter(|w| !before_work.contains(w))
        .collect();
    assert!(left.is_empty(), "remote work folders left: {left:?}");
}

#[test]
fn every_shipped_playbook_validates() {
    // `kdelta check --offline` reads and validates without touching any host (for
    // command hosts: without making one).
    let mut n = 0;
    for e in std::fs::read_dir(repo().join("playbooks"))
        .unwrap()
        .flatten()
    {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("yaml") {
            continue;
        }
        let o = kdelta()
            .arg("check")
            .arg("--offline")
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}: {}{}",
            p.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        n += 1;
    }
    assert!(n >= 8, "{n} playbooks");
}
