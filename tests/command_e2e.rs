//! The `command` provider end to end, with `up`/`down` scripts that make and remove
//! lab hosts (network namespaces with their own sshd) as a cloud CLI would make
//! instances: a run removes what `up` made; a kdelta killed mid-run leaves its hosts,
//! and `kdelta teardown RUN_DIR` removes them from what the run directory recorded;
//! an `up` that prints no JSON fails with a clear error. Root needed, as CI runs it.

mod common;
use common::*;
use std::path::Path;

#[test]
fn command_hosts_are_removed_after_a_run_and_after_a_crash() {
    assert!(unsafe { libc::geteuid() } == 0, "needs root, as CI runs it");
    let _lab = lab_lock();
    let before = kd_namespaces();
    let tmp = tempfile::tempdir().unwrap();
    let new_ns = || -> Vec<String> {
        kd_namespaces()
            .into_iter()
            .filter(|n| !before.contains(n))
            .collect()
    };

    // 1. A whole run: up twice, capture on both, down twice.
    let pb = command_playbook(tmp.path(), UP, UP, 1);
    let out = tmp.path().join("out");
    let o = kdelta_run(&pb, &out).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        matches!(o.status.code(), Some(0..=2)),
        "exit {:?}\n{stderr}",
        o.status.code()
    );
    let run = only_run_dir(&out);
    for role in ["baseline", "candidate"] {
        let t = read_json(&run.join("hosts").join(role).join("teardown.json"));
        assert_eq!(t["state"], "done", "{t}");
        assert!(run
            .join("hosts")
            .join(role)
            .join("perf.script.zst")
            .is_file());
    }
    assert!(new_ns().is_empty(), "hosts left: {:?}", new_ns());
    // kdelta's folders on the hosts, as hosts.json records them.
    let work = |run: &Path| -> Vec<std::path::PathBuf> {
        let h = read_json(&run.join("hosts.json"));
        h["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| std::path::PathBuf::from(h["work_folder"].as_str().unwrap()))
            .filter(|p| p.exists())
            .collect()
    };
    assert!(
        work(&run).is_empty(),
        "work folders left on the hosts: {:?}",
        work(&run)
    );

    // 2. kdelta killed outright mid-workload: nothing tears down, the run directory
    //    knows what was made, and `kdelta teardown` removes it.
    let pb = command_playbook(tmp.path(), UP, UP, 30);
    let out = tmp.path().join("out2");
    let mut child = kdelta_run(&pb, &out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_phase(&out, "workload 1/1", None, 90);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        new_ns().len(),
        4,
        "two labs of two namespaces each: {:?}",
        new_ns()
    );
    let run = only_run_dir(&out);
    let o = kdelta().arg("teardown").arg(&run).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(stdout.matches(" removed").count(), 2, "{stdout}");
    assert!(new_ns().is_empty(), "hosts left: {:?}", new_ns());
    // A killed kdelta cannot clean the hosts' work folders; these hosts share this
    // machine's /tmp, so the test removes them.
    for w in work(&run) {
        let _ = std::fs::remove_dir_all(w);
    }
    // Again: nothing more to do, and it says so.
    let o = kdelta().arg("teardown").arg(&run).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("already removed"));

    // 3. An `up` that prints no JSON: exit 3, the error says what `up` must print.
    let pb = command_playbook(
        tmp.path(),
        "echo instance started",
        "echo instance started",
        1,
    );
    let o = kdelta_run(&pb, &tmp.path().join("out3")).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("printed no JSON") && stderr.contains("address"),
        "{stderr}"
    );
    assert!(new_ns().is_empty(), "hosts left: {:?}", new_ns());
}
