//! Two real kernels under QEMU, end to end. `playbooks/qemu-kasan.yaml` builds Debian's
//! linux-source-6.1 twice (with and without KASAN; cached in ~/.cache/kdelta after the
//! first time), boots both, runs iperf3 inside each guest, and must name CONFIG_KASAN
//! with the throughput drop. `playbooks/qemu-rt.yaml` boots Debian's generic and
//! PREEMPT_RT kernel packages (downloaded with apt-get) and must name the RT family;
//! `playbooks/qemu-upgrade.yaml` boots Debian 6.1 against 6.12 and must read honestly.
//! Needs root and the packages `.ci/run` installs; no QEMU process may remain.

mod common;
use common::*;

fn qemu_pids() -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-f", "qemu-system-x86_64"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Runs a shipped playbook with `repeat` repeats per guest (one where CI time
/// matters more than the verdict's margin; two where `verify` and `bisect` follow,
/// whose shares need the original's own noise), one QEMU test at a time (guests
/// share the CPUs); checks that no QEMU is left and the run finished.
/// Returns the lock (hold it while the guests' CPUs are needed), the temp folder
/// (keep it alive), the run directory and its summary.
fn run_shipped(
    name: &str,
    repeat: u32,
) -> (
    std::sync::MutexGuard<'static, ()>,
    tempfile::TempDir,
    std::path::PathBuf,
    serde_json::Value,
) {
    assert!(unsafe { libc::geteuid() } == 0, "needs root, as CI runs it");
    let lock = lab_lock();
    let before = qemu_pids();
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("playbooks").join(name))
        .unwrap()
        .replace("repeat: 2", &format!("repeat: {repeat}"));
    let pb = tmp.path().join(name);
    std::fs::write(&pb, text).unwrap();
    // Fragments are relative to the playbook.
    std::os::unix::fs::symlink(repo().join("playbooks/kernel"), tmp.path().join("kernel")).unwrap();
    let out = tmp.path().join("out");
    run_checked(&pb, &out, &before);
    let run = only_run_dir(&out);
    let s = read_json(&run.join("summary.json"));
    (lock, tmp, run, s)
}

/// Runs `pb` into `out` and checks what every qemu test needs: no QEMU left beside
/// those running `before`, and an exit code of a run that got through (0–2), the
/// guests' consoles shown when not (a kernel that crashed says so there). Returns
/// stdout and stderr.
fn run_checked(pb: &std::path::Path, out: &std::path::Path, before: &[String]) -> (String, String) {
    let o = kdelta_run(pb, out).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let left: Vec<String> = qemu_pids()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(left.is_empty(), "QEMU left running: {left:?}");
    let consoles = || {
        let mut t = String::new();
        for role in ["baseline", "candidate"] {
            for f in glob_consoles(out, role) {
                let text = std::fs::read_to_string(&f).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                t += &format!("--- {}\n", f.display());
                t += &tail.into_iter().rev().collect::<Vec<_>>().join("\n");
                t += "\n";
            }
        }
        t
    };
    assert!(
        matches!(o.status.code(), Some(0..=2)),
        "exit {:?}\n{stdout}\n{stderr}\n{}",
        o.status.code(),
        consoles()
    );
    (stdout, stderr)
}

/// The consoles of `role` in the run folders under `out`: `console.log`, the
/// crashed first boot's, and those of partial captures kept aside.
fn glob_consoles(out: &std::path::Path, role: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for run in std::fs::read_dir(out).into_iter().flatten().flatten() {
        for host in std::fs::read_dir(run.path().join("hosts"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if host.file_name().to_string_lossy().starts_with(role) {
                for f in std::fs::read_dir(host.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let name = f.file_name().to_string_lossy().into_owned();
                    if name.starts_with("console")
                        && name.ends_with(".log")
                        && !name.contains("qemu")
                    {
                        found.push(f.path());
                    }
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn kasan_kernel_is_named_from_two_real_kernels() {
    let (_lock, _tmp, run, s) = run_shipped("qemu-kasan.yaml", 2);
    // The real config delta: KASAN and what it drags along, from the guests' /proc/config.gz.
    let delta: Vec<&str> = s["config_delta"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["option"].as_str().unwrap())
        .collect();
    assert!(delta.contains(&"CONFIG_KASAN"), "{delta:?}");
    assert!(delta.len() > 5, "{delta:?}");
    assert_eq!(
        s["attributions"][0]["cause"], "CONFIG_KASAN",
        "{}",
        s["attributions"]
    );
    let tp = s["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "throughput")
        .unwrap();
    assert!(tp["change"].as_f64().unwrap() < -0.3, "{tp}");
    // How each kernel was obtained is recorded.
    for role in ["baseline", "candidate"] {
        let k = read_json(&run.join("hosts").join(role).join("kernel.json"));
        assert!(
            k["provenance"]["source"]
                .as_str()
                .unwrap()
                .starts_with("linux-source-6.1"),
            "{k}"
        );
        assert!(run.join("hosts").join(role).join("console.log").is_file());
    }

    // Prove it: the candidate's kernel rebuilt with CONFIG_KASAN=n (its fragments
    // still ask for KASAN_GENERIC and KASAN_OUTLINE, which go with it), measured in
    // pairs against the candidate as it was.
    let before = qemu_pids();
    let Said {
        code,
        stdout,
        stderr,
    } = said(kdelta().arg("verify").arg(&run).args(["--repeat", "2"]));
    assert!(
        qemu_pids().iter().all(|p| before.contains(p)),
        "QEMU left running after verify"
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("cause: reverting CONFIG_KASAN (y → n)"),
        "{stdout}"
    );
    let v = only_run_dir(&run.join("verify"));
    let rec = read_json(&v.join("verify.json"));
    assert_eq!(rec["how"], "rebuild", "{rec}");
    let applied: Vec<&str> = rec["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(applied.contains(&"CONFIG_KASAN: y → n"), "{applied:?}");
    assert!(
        applied
            .iter()
            .any(|a| a.starts_with("CONFIG_KASAN_GENERIC")),
        "the dependents dragged along are recorded: {applied:?}"
    );
    let share = rec["recoveries"][0]["share"].as_f64().unwrap();
    assert!(share > 0.6, "{rec}");
    let hosts = read_json(&v.join("hosts.json"));
    assert!(
        hosts["hosts"][0]["label"]
            .as_str()
            .unwrap()
            .contains("CONFIG_KASAN reverted"),
        "{hosts}"
    );

    // Bisect as if attribution had said nothing: the first halving step reverts the
    // first four of the nine options, KASAN among them, and recovers the change; a
    // time budget of one second stops it after one step, to be continued by the same command.
    let Said {
        code,
        stdout,
        stderr,
    } = said(kdelta().arg("bisect").arg(&run).args([
        "--no-suspects",
        "--repeat",
        "2",
        "--budget",
        "1s",
    ]));
    // A one-second budget lets the first step start (nothing spent, no estimate yet)
    // and no second one (the first took a minute).
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(stdout.contains("not finished"), "{stdout}");
    assert!(
        stderr.contains("time budget (1 s) would be exceeded"),
        "{stderr}"
    );
    assert!(
        qemu_pids().iter().all(|p| before.contains(p)),
        "QEMU left running after bisect"
    );
    let b = read_json(&run.join("bisect/bisect.json"));
    let steps = b["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{b}");
    assert_eq!(steps[0]["outcome"], "all", "{b}");
    assert!(
        steps[0]["applied"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "CONFIG_KASAN: y → n"),
        "{b}"
    );
    assert!(run.join("bisect/bisect.md").is_file());
    // The examined run's report shows the step: what was reverted, how, the outcome.
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("id=\"bisect-steps\""), "no bisect section");
    assert!(html.contains("recovers the change") && html.contains("a kernel with it reverted"));
    let view = &read_json(&run.join("summary.json"))["proof"]["bisect"];
    assert_eq!(view["finished"], false, "{view}");
    assert_eq!(view["steps"].as_array().map(Vec::len), Some(1), "{view}");
}

#[test]
fn preempt_rt_package_is_named_from_two_debian_kernels() {
    let (_lock, _tmp, run, s) = run_shipped("qemu-rt.yaml", 1);
    // The real delta of Debian's generic and RT 6.1 configs (38 options in the
    // fixtures of the same release), read from /boot/config-* inside the guests.
    let n = s["config_delta"].as_array().unwrap().len();
    assert!((30..=50).contains(&n), "{n} options differ");
    let top = s["attributions"][0]["cause"].as_str().unwrap_or("");
    let family = [
        "CONFIG_PREEMPT_RT",
        "CONFIG_PREEMPT",
        "CONFIG_PREEMPTION",
        "CONFIG_PREEMPT_LAZY",
    ];
    assert!(
        family.contains(&top),
        "top cause {top}: {}",
        s["attributions"]
    );
    for role in ["baseline", "candidate"] {
        let k = read_json(&run.join("hosts").join(role).join("kernel.json"));
        assert!(k["release"].as_str().unwrap().starts_with("6.1."), "{k}");
    }
}

/// The upgrade gate on Debian's packages (issue 17): 6.1 against 6.12, the latter a
/// meta package whose modules are `.ko.xz`. Whatever the speed, the report must put
/// the version first and blame no config option with high confidence among the
/// ~1400 that differ.
#[test]
fn debian_6_1_to_6_12_upgrade_reads_honestly() {
    let (_lock, _tmp, run, s) = run_shipped("qemu-upgrade.yaml", 1);
    let cand = read_json(&run.join("hosts/candidate/kernel.json"));
    assert!(
        cand["release"].as_str().unwrap().starts_with("6.12."),
        "the meta package resolved to a 6.12 image: {cand}"
    );
    let n = s["config_delta"].as_array().unwrap().len();
    assert!(n > 500, "{n} options differ between 6.1 and 6.12");
    let caveats = s["caveats"].as_array().unwrap();
    assert!(
        caveats[0]
            .as_str()
            .unwrap()
            .starts_with("kernel versions differ"),
        "{caveats:?}"
    );
    let headline = s["verdict"]["headline"].as_str().unwrap();
    assert!(
        headline.contains("the version change is the first suspect"),
        "{headline}"
    );
    for a in s["attributions"].as_array().unwrap() {
        let cause = a["cause"].as_str().unwrap();
        assert!(
            !(cause.starts_with("CONFIG_") && a["confidence"] == "high"),
            "a config option blamed with high confidence between versions: {a}"
        );
    }
}

/// A guest whose kernel crashes mid-run is booted and captured again, and the report
/// says so. The candidate's server panics its kernel (sysrq `c`) 2 s into the
/// repeat when the uploaded folder holds `crash-once`; the client, run here, removes
/// it, so the next boot's upload no longer has it.
#[test]
fn guest_kernel_crash_mid_run_is_captured_again() {
    assert!(unsafe { libc::geteuid() } == 0, "needs root, as CI runs it");
    let _lock = lab_lock();
    let before = qemu_pids();
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let crash = files.join("crash-once");
    std::fs::write(&crash, "").unwrap();
    let pb = tmp.path().join("crash.yaml");
    std::fs::write(
        &pb,
        format!(
            r#"name: qemu-crash
hosts:
  baseline: {{ provider: qemu, kernel: {{ package: linux-image-amd64 }} }}
  candidate: {{ provider: qemu, kernel: {{ package: linux-image-amd64 }} }}
deploy:
  - upload: {{ from: files/, to: "{{{{ files }}}}" }}
workload:
  server: "sleep 2; if [ {{{{ role }}}} = candidate ] && [ -e {{{{ files }}}}/crash-once ]; then echo c > /proc/sysrq-trigger; fi; sleep 60"
  client: {{ from: orchestrator, run: "rm -f {crash}; sleep 5; echo 'ops 100'" }}
  timeout: 60
  metrics:
    ops: {{ regex: 'ops ([0-9]+)', better: higher }}
capture:
  perf: {{ frequency: 99, call_graph: fp, during: workload }}
  repeat: 1
"#,
            crash = crash.display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let (_, stderr) = run_checked(&pb, &out, &before);
    assert!(
        stderr.contains("candidate: the guest's kernel crashed during the run"),
        "{stderr}"
    );
    let run = only_run_dir(&out);
    let rec = read_json(&run.join("run.json"));
    assert_eq!(rec["status"], "ok", "{rec}");
    let resumes = rec["resumes"].as_array().unwrap();
    // One more if a guest froze or crashed on its own in the second attempt (seen
    // in CI under TCG): at most RUN_ATTEMPTS in all.
    assert!((1..=2).contains(&resumes.len()), "{rec}");
    for r in resumes {
        // Both sides again, on fresh boots: the pairs stay balanced.
        assert_eq!(
            r["recaptured"],
            serde_json::json!(["baseline", "candidate"]),
            "{rec}"
        );
    }
    let reason = |i: usize| resumes[i]["reason"].as_str().unwrap().to_string();
    assert!(reason(0).contains("sysrq triggered crash"), "{rec}");
    assert_eq!(resumes[0]["lost"][0]["how"], "crashed", "{rec}");
    assert_eq!(resumes[0]["lost"][0]["role"], "candidate", "{rec}");
    let kept = run.join("hosts/candidate.attempt-1/console.log");
    assert!(
        std::fs::read_to_string(&kept)
            .unwrap()
            .contains("Kernel panic - not syncing"),
        "{}",
        kept.display()
    );
    let s = read_json(&run.join("summary.json"));
    let caveats: Vec<&str> = s["caveats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        caveats.iter().any(|c| c.contains("crashed during the run")),
        "{caveats:?}"
    );
}
