//! Helpers shared by the end-to-end tests (each test file includes this module).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Tests that build labs run one at a time: each checks that it left nothing behind,
/// which another test's lab, up at that moment, would spoil.
pub static LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn lab_lock() -> std::sync::MutexGuard<'static, ()> {
    LAB.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn kdelta() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kdelta"))
}

/// What a finished command said: its exit code, stdout and stderr as text.
pub struct Said {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `c` to the end; panics only if it cannot start (a test's own fault).
pub fn said(c: &mut Command) -> Said {
    let o = c.output().expect("the command starts");
    Said {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `kdelta run PLAYBOOK --out OUT`, to run, spawn or give more arguments.
pub fn kdelta_run(playbook: &Path, out: &Path) -> Command {
    let mut c = kdelta();
    c.arg("run").arg(playbook).arg("--out").arg(out);
    c
}

/// `kdelta analyze --baseline B --candidate C --out OUT`, to run or give more arguments.
pub fn kdelta_analyze(baseline: &Path, candidate: &Path, out: &Path) -> Command {
    let mut c = kdelta();
    c.arg("analyze")
        .arg("--baseline")
        .arg(baseline)
        .arg("--candidate")
        .arg(candidate)
        .arg("--out")
        .arg(out);
    c
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn kd_namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("kd-"))
        .map(str::to_string)
        .collect()
}

/// The shipped demo playbook, made short: same hosts, same workload.
pub fn short_playbook(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("playbooks/lab-tcp.yaml")).unwrap();
    let text = text
        .replace("duration: 5", "duration: 2")
        .replace("repeat: 3", "repeat: 2");
    let p = dir.join("pb.yaml");
    std::fs::write(&p, edit(text)).unwrap();
    // The playbook's files/ folder is relative to it.
    let files = dir.join("files");
    if !files.exists() {
        std::os::unix::fs::symlink(repo().join("playbooks/files"), files).unwrap();
    }
    p
}

pub fn only_run_dir(out: &Path) -> PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// kdelta's per-run work folders (lab hosts share this machine's /tmp).
pub fn work_folders() -> Vec<String> {
    std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("kdelta-run-"))
        .collect()
}

pub fn read_json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn zstd_text(p: &Path) -> String {
    let f = std::fs::File::open(p).unwrap();
    let mut s = String::new();
    use std::io::Read;
    zstd::stream::read::Decoder::new(f)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// The run.json of the only run directory under `out`, once it can be read whole.
pub fn run_record(out: &Path) -> Option<serde_json::Value> {
    let dir = std::fs::read_dir(out).ok()?.flatten().next()?.path();
    let text = std::fs::read_to_string(dir.join("run.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Waits until the run under `out` shows phase `name` (on `host`, if given) running;
/// panics after `within` (a run that never gets there is a failure, not a hang).
pub fn wait_for_phase(out: &Path, name: &str, host: Option<&str>, within: u64) {
    wait_for(out, name, host, within, true)
}

/// Waits until the run under `out` has started phase `name` (on `host`, if given),
/// whether it still runs or is over: for a phase too short to be seen running by a
/// poll (a `deploy` of `true` takes 30 ms).
pub fn wait_for_phase_started(out: &Path, name: &str, host: Option<&str>, within: u64) {
    wait_for(out, name, host, within, false)
}

fn wait_for(out: &Path, name: &str, host: Option<&str>, within: u64, running: bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(within);
    loop {
        let there = run_record(out).is_some_and(|r| {
            r["phases"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["name"] == name
                        && (!running || p["status"] == "running")
                        && host.is_none_or(|h| p["host"] == h)
                })
            })
        });
        if there {
            return;
        }
        // A run that ended without getting there never will: say so now, not after
        // `within` (a provision error waited out ten minutes).
        let ended = run_record(out).is_some_and(|r| r["finished"].is_string());
        assert!(
            !ended && std::time::Instant::now() < deadline,
            "the run under {} never reached phase `{name}`{} in {within}s: {:?}",
            out.display(),
            host.map(|h| format!(" on {h}")).unwrap_or_default(),
            run_record(out)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The processes in a network namespace.
pub fn ns_pids(ns: &str) -> Vec<i32> {
    let out = Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .expect("ip netns pids");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Kills every process of a lab host (its sshd, its sessions, its servers): the host
/// is gone as far as SSH can tell, the namespace stays for the teardown to remove.
pub fn kill_ns(ns: &str) {
    for p in ns_pids(ns) {
        unsafe {
            libc::kill(p, libc::SIGKILL);
        }
    }
}

/// The one namespace named `kd-…-<suffix>` that is not in `before`.
pub fn new_namespace(before: &[String], suffix: &str) -> String {
    let new: Vec<String> = kd_namespaces()
        .into_iter()
        .filter(|n| !before.contains(n) && n.ends_with(suffix))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    new[0].clone()
}

/// A lab made by `kdelta lab up`, used as two ssh hosts; taken down when dropped,
/// also when an assertion failed.
pub struct LabUp {
    pub id: String,
    listing: String,
}

/// How `kdelta lab up` says to reach one of its hosts.
pub struct SshHost {
    pub key: String,
    pub known_hosts: String,
    /// `root@ADDR`
    pub dest: String,
}

impl LabUp {
    pub fn new(playbook: &Path) -> LabUp {
        let o = kdelta()
            .args(["-q", "lab", "up"])
            .arg(playbook)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            o.status.success(),
            "{listing}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let id = listing
            .split_whitespace()
            .nth(1)
            .expect("lab <id> is up")
            .to_string();
        LabUp { id, listing }
    }

    /// From `  baseline: ssh -i KEY -o UserKnownHostsFile=KH root@ADDR`.
    pub fn host(&self, role: &str) -> SshHost {
        let line = self
            .listing
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{role}:")))
            .unwrap_or_else(|| panic!("no {role} in {}", self.listing));
        let w: Vec<&str> = line.split_whitespace().collect();
        SshHost {
            key: w[w.iter().position(|x| *x == "-i").unwrap() + 1].to_string(),
            known_hosts: w
                .iter()
                .find_map(|x| x.strip_prefix("UserKnownHostsFile="))
                .unwrap()
                .to_string(),
            dest: w.last().unwrap().to_string(),
        }
    }

    pub fn namespace(&self, role: &str) -> String {
        format!("kd-{}-{}", self.id, &role[..1])
    }

    /// A playbook with both hosts as `ssh` hosts (`identity` replaces the lab's key),
    /// a one-second workload on the hosts, one repeat, and `extra` appended.
    pub fn ssh_playbook(&self, identity: Option<&str>, extra: &str) -> String {
        let host = |role: &str| {
            let h = self.host(role);
            format!(
                "{{ ssh: \"{}\", identity_file: \"{}\", known_hosts: \"{}\" }}",
                h.dest,
                identity.unwrap_or(&h.key),
                h.known_hosts
            )
        };
        format!(
            "name: ssh-lab\nhosts:\n  baseline: {}\n  candidate: {}\nworkload:\n  client: {{ from: host, run: \"sleep 1; echo ok=1\" }}\n  metrics:\n    ok: {{ regex: 'ok=(\\d+)' }}\ncapture:\n  repeat: 1\n{extra}",
            host("baseline"),
            host("candidate")
        )
    }
}

impl Drop for LabUp {
    fn drop(&mut self) {
        let _ = kdelta().args(["lab", "down", &self.id]).output();
    }
}

/// A command provider's `up`: `kdelta lab up` on a one-purpose playbook, reporting
/// the baseline host of that lab as the new machine (its pinned known_hosts
/// included), as a cloud CLI reports a new instance. Its `down` is `lab down ID`.
pub const UP_SCRIPT: &str = r#"#!/bin/sh
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

/// The `up` command that runs [`UP_SCRIPT`] (written into the playbook's folder).
pub const UP: &str = "sh {{ dir }}/up.sh {{ kd }} {{ dir }}";

/// A playbook of two `command` hosts with these `up` commands (templates; `kd` and
/// `dir` are variables) and `down` = `kdelta lab down {{ id }}`; the workload sleeps
/// `duration` seconds on the host.
pub fn command_playbook(
    dir: &Path,
    up_baseline: &str,
    up_candidate: &str,
    duration: u32,
) -> PathBuf {
    std::fs::write(dir.join("up.sh"), UP_SCRIPT).unwrap();
    std::fs::write(
        dir.join("lab.yaml"),
        "name: one\nhosts:\n  baseline: { provider: lab }\n  candidate: { provider: lab }\nworkload:\n  client: { run: \"true\" }\n",
    )
    .unwrap();
    let kd = env!("CARGO_BIN_EXE_kdelta");
    let host = |up: &str| {
        format!("{{ provider: command, up: \"{up}\", down: \"{{{{ kd }}}} -q lab down {{{{ id }}}}\" }}")
    };
    let pb = dir.join("pb.yaml");
    std::fs::write(
        &pb,
        format!(
            "name: cmd\nhosts:\n  baseline: {}\n  candidate: {}\nvars: {{ kd: \"{kd}\", dir: \"{}\" }}\nworkload:\n  client: {{ from: host, run: \"sleep {duration}; echo ok=1\" }}\n  metrics:\n    ok: {{ regex: 'ok=(\\d+)' }}\ncapture:\n  repeat: 1\n",
            host(up_baseline),
            host(up_candidate),
            dir.display()
        ),
    )
    .unwrap();
    pb
}

/// Files under `dir` (zstd files decompressed) that contain any of `needles`.
pub fn files_containing(dir: &Path, needles: &[&str]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            let text = if p.extension().is_some_and(|x| x == "zst") {
                zstd::stream::decode_all(&bytes[..]).unwrap_or_default()
            } else {
                bytes
            };
            let text = String::from_utf8_lossy(&text);
            if needles.iter().any(|n| text.contains(n)) {
                hits.push(p);
            }
        }
    }
    hits
}

/// Validates a KCIDB file with kcidb-io's own validator (installed from PyPI by
/// .ci/run) and returns the document.
pub fn validate_kcidb(path: &Path) -> serde_json::Value {
    let script = "import json, sys, kcidb_io\n\
        d = json.load(open(sys.argv[1]))\n\
        kcidb_io.schema.LATEST.validate(d)\n\
        print(kcidb_io.schema.LATEST.count(d))\n";
    let o = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success(),
        "{} does not validate with kcidb-io (`pip install kcidb-io` if it is missing):\n{}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    read_json(path)
}
