//! The upgrade gate end to end on the real lab (root needed, as CI runs it):
//! identical hosts pass, an injected perf-visible slowdown is a regression (exit 1)
//! named by its attribution, a host that dies mid-run is exit 3 with the run
//! directory intact. JUnit files are validated against the Jenkins xunit schema
//! (tests/fixtures/junit/junit-10.xsd) with xmllint.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// The demo playbook with a given workload length, repeats and gate limit;
/// `slow_candidate: false` drops the candidate's nftables setup (identical hosts).
fn gate_playbook(dir: &Path, duration: u32, limit: &str, slow_candidate: bool) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("playbooks/lab-tcp.yaml")).unwrap();
    let mut text = text
        .replace("duration: 5", &format!("duration: {duration}"))
        .replace("max_regression: 5%", &format!("max_regression: {limit}"));
    if !slow_candidate {
        let i = text.find("    setup:").unwrap();
        let j = text.find("vars:").unwrap();
        text.replace_range(i..j, "");
    }
    let name = if slow_candidate {
        "slow.yaml"
    } else {
        "same.yaml"
    };
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    let files = dir.join("files");
    if !files.exists() {
        std::os::unix::fs::symlink(repo().join("playbooks/files"), files).unwrap();
    }
    p
}

/// The two-sided `1 − alpha` interval of the mean log ratio candidate/baseline of
/// paired values (a one-sample t interval), computed here independently of kdelta.
fn paired_log_interval(b: &[f64], c: &[f64], alpha: f64) -> (f64, f64) {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let d: Vec<f64> = b.iter().zip(c).map(|(x, y)| (y / x).ln()).collect();
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let t = StudentsT::new(0.0, 1.0, n - 1.0)
        .unwrap()
        .inverse_cdf(1.0 - alpha / 2.0);
    let h = t * (var / n).sqrt();
    (mean - h, mean + h)
}

/// The KCIDB file of the slow gate run: valid for kcidb-io, every test tied to a
/// build, the gate rule failed with the cause in its `misc`, and each build's config
/// digest that of the config the run captured.
fn check_kcidb(path: &Path, run: &Path) {
    let d = validate_kcidb(path);
    let run_id = run.file_name().unwrap().to_str().unwrap();
    let builds = d["builds"].as_array().unwrap();
    assert_eq!(builds.len(), 2, "{d}");
    for (b, role) in builds.iter().zip(["baseline", "candidate"]) {
        assert_eq!(b["id"], format!("kdelta_ci:{run_id}:{role}"));
        let config = std::fs::read(run.join("hosts").join(role).join("kernel.config")).unwrap();
        let o = std::process::Command::new("sha256sum")
            .arg(run.join("hosts").join(role).join("kernel.config"))
            .output()
            .unwrap();
        let digest = String::from_utf8_lossy(&o.stdout);
        assert!(!config.is_empty());
        assert_eq!(
            b["misc"]["config_sha256"].as_str().unwrap(),
            digest.split_whitespace().next().unwrap()
        );
        // The compiler, from the kernel's own /proc/version.
        let pv = std::fs::read_to_string("/proc/version").unwrap();
        let compiler = b["compiler"].as_str().unwrap();
        assert!(pv.contains(compiler), "{compiler} not in {pv}");
    }
    let tests = d["tests"].as_array().unwrap();
    let gate = tests
        .iter()
        .find(|t| t["path"] == "kdelta.lab-tcp.gate.throughput")
        .unwrap_or_else(|| panic!("no gate test: {d}"));
    assert_eq!(gate["status"], "FAIL");
    assert_eq!(gate["build_id"], format!("kdelta_ci:{run_id}:candidate"));
    assert!(gate["number"]["value"].as_f64().unwrap() > 5.0, "{gate}");
    assert_eq!(gate["misc"]["kdelta"]["top_cause"], "netfilter.nft_rules");
    let verdict = tests
        .iter()
        .find(|t| t["path"] == "kdelta.lab-tcp.verdict")
        .unwrap();
    assert_eq!(verdict["status"], "FAIL");
    // A measurement per side, as KCIDB's performance tests report them.
    let means: Vec<_> = tests
        .iter()
        .filter(|t| t["path"] == "kdelta.lab-tcp.throughput")
        .collect();
    assert_eq!(means.len(), 2);
    assert!(means
        .iter()
        .all(|t| t["status"] == "DONE" && t["number"]["unit"] == "bit/s"));
}

fn validate_junit(path: &Path) {
    let xsd = repo().join("tests/fixtures/junit/junit-10.xsd");
    let o = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(path)
        .output()
        .expect("xmllint (libxml2-utils) is installed by .ci/run");
    assert!(
        o.status.success(),
        "{} does not validate:\n{}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn gate_passes_identical_hosts_fails_a_slow_one_and_survives_a_dead_host() {
    assert!(unsafe { libc::geteuid() } == 0, "needs root, as CI runs it");
    let _lab = lab_lock();
    let before = kd_namespaces();
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history");

    // 1. Identical hosts are never failed. 2-second iperf3 runs over veth on a shared
    //    2-vCPU machine swing by a factor of two from one run to the next (5–31 Gbit/s
    //    seen within one run, the host's noisy neighbours), so the limit is 25% and the
    //    gate adds pairs (`--repeat auto`) until the interval fits inside it, up to 12.
    //    On a machine that stays that noisy even 12 pairs may not show "same": then
    //    inconclusive (exit 2) is the honest answer, and the test checks it against its
    //    own computation of the interval from the values. bench/gate-false-alarms.sh
    //    measures how often each answer comes out.
    let pb = gate_playbook(tmp.path(), 2, "25%", false);
    let out = tmp.path().join("same");
    let o = kdelta()
        .arg("gate")
        .arg(&pb)
        .args(["--repeat", "auto", "--max-repeats", "12", "--out"])
        .arg(&out)
        .arg("--history")
        .arg(&history)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let run = only_run_dir(&out);
    let s = read_json(&run.join("summary.json"));
    let r = read_json(&run.join("run.json"));
    let rule = &s["gate"]["rules"][0];
    let values = |k: &str| -> Vec<f64> {
        rule[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let (b, c) = (values("baseline_values"), values("candidate_values"));
    let pairs = r["adaptive"]["pairs"].as_u64().unwrap() as usize;
    assert_eq!((b.len(), c.len()), (pairs, pairs), "{r}");
    let first_status = match o.status.code() {
        Some(0) => {
            assert!(stdout.starts_with("pass: throughput"), "{stdout}");
            assert_eq!(s["gate"]["status"], "pass");
            let junit = std::fs::read_to_string(run.join("junit.xml")).unwrap();
            assert!(junit.contains("failures=\"0\""), "{junit}");
            "pass"
        }
        Some(2) => {
            assert!(stdout.starts_with("inconclusive: throughput"), "{stdout}");
            assert_eq!(s["gate"]["status"], "inconclusive");
            assert_eq!(pairs, 12, "unknown before the budget: {r}");
            let alpha = r["adaptive"]["alpha"].as_f64().unwrap();
            let (lo, hi) = paired_log_interval(&b, &c, alpha);
            assert!(
                lo <= (0.75f64).ln() || hi >= (1.25f64).ln(),
                "kdelta said inconclusive but the interval {lo:.3} … {hi:.3} (log ratio) is inside ±25%: {stdout}"
            );
            eprintln!("identical hosts: inconclusive after 12 pairs (a noisy machine): {stdout}");
            "inconclusive"
        }
        _ => panic!("identical hosts must not fail the gate:\n{stdout}\n{stderr}"),
    };
    validate_junit(&run.join("junit.xml"));
    for f in ["report.html", "summary.md", "junit.xml", "summary.json"] {
        assert!(
            stdout.contains(&run.join(f).display().to_string()),
            "{f} path not printed: {stdout}"
        );
    }

    // 2. A candidate behind a 2000-rule nftables chain: regression, exit 1, with the
    //    attribution named in the verdict and in the JUnit failure.
    let pb = gate_playbook(tmp.path(), 2, "5%", true);
    let out = tmp.path().join("slow");
    let junit_path = tmp.path().join("ci/junit.xml");
    std::fs::create_dir_all(junit_path.parent().unwrap()).unwrap();
    // Issue 15: the results as KCIDB data, and the Markdown appended to GitHub's step
    // summary after what an earlier step wrote there.
    let kcidb_path = tmp.path().join("ci/kcidb.json");
    let step = tmp.path().join("ci/step-summary.md");
    std::fs::write(&step, "# an earlier step\n").unwrap();
    let Said {
        code,
        stdout,
        stderr,
    } = said(
        kdelta()
            .arg("gate")
            .arg(&pb)
            .args(["--repeat", "3", "--out"])
            .arg(&out)
            .arg("--junit")
            .arg(&junit_path)
            .arg("--history")
            .arg(&history)
            .arg("--kcidb")
            .arg(&kcidb_path)
            .args(["--kcidb-origin", "kdelta_ci"])
            .env("GITHUB_STEP_SUMMARY", &step),
    );
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("regression: throughput"), "{stdout}");
    assert!(stdout.contains("netfilter.nft_rules"), "{stdout}");
    validate_junit(&junit_path);
    let junit = std::fs::read_to_string(&junit_path).unwrap();
    assert!(
        junit.contains("<failure") && junit.contains("netfilter.nft_rules"),
        "{junit}"
    );
    let run = only_run_dir(&out);
    let s = read_json(&run.join("summary.json"));
    // Both runs share a playbook name: the history holds both, this one last.
    let h = s["history"].as_array().unwrap();
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[1]["current"], true);
    assert_eq!(h[0]["status"], first_status);
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("id=\"trend\"") && html.contains("id=\"gate\""));
    let md = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(md.starts_with("## kdelta: gate regression"), "{md}");
    let summary_page = std::fs::read_to_string(&step).unwrap();
    assert_eq!(summary_page, format!("# an earlier step\n{md}\n"));
    check_kcidb(&kcidb_path, &run);

    // 3. The candidate dies in the middle of the workload (every process in its
    //    namespace killed, sshd included): exit 3, run directory intact, teardown ran.
    let pb = gate_playbook(tmp.path(), 6, "5%", true);
    let out = tmp.path().join("dead");
    let child = kdelta()
        .arg("gate")
        .arg(&pb)
        .args(["--repeat", "2", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_phase(&out, "workload 1/2", Some("candidate"), 90);
    let ns = new_namespace(&before, "-c");
    std::thread::sleep(std::time::Duration::from_secs(1));
    kill_ns(&ns);
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains("candidate"), "{stderr}");
    let run = only_run_dir(&out);
    let r = read_json(&run.join("run.json"));
    assert_eq!(r["status"], "failed", "{r}");
    assert!(r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "teardown" && p["status"] == "ok"));
    // What was captured before the host died is kept.
    assert!(run.join("hosts/baseline/facts.json").is_file());
    assert!(run.join("hosts/candidate/facts.json").is_file());
    assert!(run.join("playbook.yaml").is_file());
    validate_junit(&run.join("junit.xml"));
    let junit = std::fs::read_to_string(run.join("junit.xml")).unwrap();
    assert!(
        junit.contains("<error") && junit.contains("run-failed"),
        "{junit}"
    );

    let left: Vec<String> = kd_namespaces()
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
