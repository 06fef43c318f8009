//! The `command` provider end to end, with `up`/`down` scripts that make and remove
//! lab hosts (network namespaces with their own sshd) as a cloud CLI would make
//! instances: a run removes what `up` made; a kdelta killed mid-run leaves its hosts,
//! and `kdelta teardown RUN_DIR` removes them from what the run directory recorded;
//! an `up` that prints no JSON fails with a clear error. Root needed, as CI runs it.

mod common;
use common::*;
use std::path::Path;

/// `up`: `kdelta lab up` on a one-purpose playbook, reporting the baseline host of
/// that lab as the new machine (its pinned known_hosts included); `down`: lab down.
const UP: &str = r#"#!/bin/sh
set -e
kd=$1; dir=$2
echo "making a host…"
out=$("$kd" -q lab up "$dir/lab.yaml")
id=$(echo "$out" | awk 'NR==1 {print $2}')
line=$(echo "$out" | grep 'baseline:')
key=$(echo "$line" | sed 's/.* -i \([^ ]*\) .*/\1/')
kh=$(echo "$line" | sed 's/.*UserKnownHostsFile=\([^ ]*\) .*/\1/')
addr=$(echo "$line" | sed 's/.*root@//')
printf '{"address": "%s", "user": "root", "identity_file": "%s", "known_hosts": "%s", "id": "%s"}\n' "$addr" "$key" "$kh" "$id"
"#;

fn setup(dir: &Path, up_cmd: &str, duration: u32) -> std::path::PathBuf {
    std::fs::write(dir.join("up.sh"), UP).unwrap();
    std::fs::write(
        dir.join("lab.yaml"),
        "name: one\nhosts:\n  baseline: { provider: lab }\n  candidate: { provider: lab }\nworkload:\n  client: { run: \"true\" }\n",
    )
    .unwrap();
    let kd = env!("CARGO_BIN_EXE_kdelta");
    let host = format!(
        "{{ provider: command, up: \"{up_cmd}\", down: \"{{{{ kd }}}} -q lab down {{{{ id }}}}\" }}"
    );
    let pb = dir.join("pb.yaml");
    std::fs::write(
        &pb,
        format!(
            "name: cmd\nhosts:\n  baseline: {host}\n  candidate: {host}\nvars: {{ kd: \"{kd}\", dir: \"{}\" }}\nworkload:\n  client: {{ from: host, run: \"sleep {duration}; echo ok=1\" }}\n  metrics:\n    ok: {{ regex: 'ok=(\\d+)' }}\ncapture:\n  repeat: 1\n",
            dir.display()
        ),
    )
    .unwrap();
    pb
}

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
    let pb = setup(tmp.path(), "sh {{ dir }}/up.sh {{ kd }} {{ dir }}", 1);
    let out = tmp.path().join("out");
    let o = kdelta()
        .arg("run")
        .arg(&pb)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
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
    let work = |run: &Path| -> Vec<std::path::PathBuf> {
        let id: String = run
            .file_name()
            .unwrap()
            .to_string_lossy()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        ["baseline", "candidate"]
            .iter()
            .map(|r| std::path::PathBuf::from(format!("/tmp/kdelta-run-{id}-{r}")))
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
    let pb = setup(tmp.path(), "sh {{ dir }}/up.sh {{ kd }} {{ dir }}", 30);
    let out = tmp.path().join("out2");
    let mut child = kdelta()
        .arg("run")
        .arg(&pb)
        .arg("--out")
        .arg(&out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let in_workload = std::fs::read_dir(&out)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .and_then(|e| std::fs::read_to_string(e.path().join("run.json")).ok())
            .is_some_and(|t| t.contains("\"workload 1/1\""));
        if in_workload {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reached the workload"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
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
    let pb = setup(tmp.path(), "echo instance started", 1);
    let o = kdelta()
        .arg("run")
        .arg(&pb)
        .arg("--out")
        .arg(tmp.path().join("out3"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("printed no JSON") && stderr.contains("address"),
        "{stderr}"
    );
    assert!(new_ns().is_empty(), "hosts left: {:?}", new_ns());
}
