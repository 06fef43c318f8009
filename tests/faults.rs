//! The fault-injection suite: one fault at a time on the lab. For each: kdelta's exit
//! code, the error a person reads, what run.json and the run directory kept, and that
//! nothing is left behind: no namespace, veth, lab sshd, QEMU, work folder, no process
//! of the faulty host and none that the fault itself started (their command lines
//! carry the word `kdfault`).
//!
//! Each test prints its rows of the fault table (visible with `--nocapture`) and, when
//! KDELTA_FAULT_TABLE names a file, appends them there: `bench/faults.sh` runs the
//! suite that way and prints the table. Root needed, as CI runs it.
//!
//! How faults are made: a lab host's sshd runs in its own mount namespace (`ip netns
//! exec` gives it one), so a wrapper bound over `perf` there is seen by that host's
//! SSH sessions and nothing else: a perf that does not run, or whose `perf script`
//! or `perf --version` takes long enough to be interrupted or cut off. Killing every
//! process of a lab host's namespace is a host whose sshd died.

mod common;
use common::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ----- what is left behind ------------------------------------------------------

/// Processes whose command line contains `pat`.
fn procs_matching(pat: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| p != me)
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(pat))
                .unwrap_or(false)
        })
        .collect()
}

/// Processes in the network namespace with this inode (`net:[…]`), also after the
/// namespace's name is gone.
fn procs_in_netns(inode: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/ns/net"))
                .is_ok_and(|l| l.to_string_lossy() == inode)
        })
        .collect()
}

fn netns_inode(ns: &str) -> String {
    let pid = ns_pids(ns)[0];
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// What kdelta may leave on this machine.
struct World {
    ns: Vec<String>,
    /// Host ends of lab veth links (`kd<id><b|c>`).
    links: Vec<String>,
    work: Vec<String>,
    sshd: Vec<i32>,
    qemu: Vec<i32>,
}

fn world() -> World {
    World {
        ns: kd_namespaces(),
        links: std::fs::read_dir("/sys/class/net")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("kd"))
            .collect(),
        work: work_folders(),
        sshd: procs_matching("sshd -f /tmp/kd-"),
        qemu: procs_matching("qemu-system"),
    }
}

impl World {
    /// What appeared since `self` and is still there, plus the fault's own processes
    /// and those of the faulty host (`netns`), if given.
    fn left(&self, netns: Option<&str>) -> Vec<String> {
        // Teardown has returned when kdelta exits; a killed process may take a moment
        // to be reaped by its parent.
        std::thread::sleep(Duration::from_millis(300));
        let now = world();
        fn new<T: PartialEq + std::fmt::Display>(now: &[T], then: &[T], what: &str) -> Vec<String> {
            now.iter()
                .filter(|x| !then.contains(x))
                .map(|x| format!("{what} {x}"))
                .collect()
        }
        let mut left = new(&now.ns, &self.ns, "namespace");
        left.extend(new(&now.links, &self.links, "veth"));
        left.extend(new(&now.work, &self.work, "work folder"));
        left.extend(new(&now.sshd, &self.sshd, "lab sshd"));
        left.extend(new(&now.qemu, &self.qemu, "qemu"));
        left.extend(new(&procs_matching("kdfault"), &[], "fault process"));
        if let Some(inode) = netns {
            left.extend(new(
                &procs_in_netns(inode),
                &[],
                "process of the faulty host:",
            ));
        }
        left
    }
}

// ----- running kdelta -----------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Signal {
    /// What a terminal sends on Ctrl-C: SIGINT to the whole foreground process group.
    CtrlC,
    /// What a CI runner or systemd sends: SIGTERM to kdelta.
    Term,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::CtrlC => "Ctrl-C",
            Signal::Term => "SIGTERM",
        }
    }
}

struct Kd {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
}

/// Starts a kdelta command in its own process group, stderr to a file; `out` is
/// the folder that holds (or will hold) the run directory.
fn start(mut cmd: Command, out: &Path) -> Kd {
    let err = out.with_extension("stderr");
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    Kd {
        child,
        out: out.to_path_buf(),
        err,
        started: Instant::now(),
    }
}

fn run_pb(pb: &Path, out: &Path) -> Kd {
    start(kdelta_run(pb, out), out)
}

impl Kd {
    fn signal(&self, s: Signal) {
        let pid = self.child.id() as i32;
        unsafe {
            match s {
                Signal::CtrlC => libc::killpg(pid, libc::SIGINT),
                Signal::Term => libc::kill(pid, libc::SIGTERM),
            };
        }
    }

    /// Waits for kdelta to exit; a run that does not end in 5 minutes is a hang: it
    /// is killed and the test fails.
    fn finish(mut self) -> Outcome {
        let deadline = self.started + Duration::from_secs(300);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "kdelta hung: {}",
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Outcome {
            code: status.code(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
            out: self.out,
            secs: self.started.elapsed().as_secs_f64(),
        }
    }
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
    out: PathBuf,
    secs: f64,
}

impl Outcome {
    fn run_dir(&self) -> PathBuf {
        only_run_dir(&self.out)
    }
    fn record(&self) -> serde_json::Value {
        read_json(&self.run_dir().join("run.json"))
    }
    /// Status of phase `name` (on `host`) in run.json.
    fn phase(&self, name: &str, host: Option<&str>) -> String {
        let r = self.record();
        r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name && host.is_none_or(|h| p["host"] == h))
            .map(|p| p["status"].as_str().unwrap_or("?").to_string())
            .unwrap_or_else(|| "absent".into())
    }
    fn expect(&self, code: i32, words: &[&str]) {
        assert_eq!(self.code, Some(code), "{}", self.stderr);
        for w in words {
            assert!(self.stderr.contains(w), "`{w}` not in:\n{}", self.stderr);
        }
    }
    /// run.json's status and its failed or interrupted phases, for the table.
    fn phases_line(&self) -> String {
        let Some(r) = run_record(&self.out) else {
            return "no run.json".into();
        };
        let bad: Vec<String> = r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["status"] == "failed" || p["status"] == "interrupted")
            .map(|p| {
                format!(
                    "{} {}{}",
                    p["status"].as_str().unwrap_or("?"),
                    p["name"].as_str().unwrap_or("?"),
                    p["host"]
                        .as_str()
                        .map(|h| format!("@{h}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        format!(
            "{}: {}",
            r["status"].as_str().unwrap_or("?"),
            bad.join(", ")
        )
    }
    /// Files of the run directory under hosts/, for the table.
    fn kept(&self) -> String {
        let Ok(dir) = std::panic::catch_unwind(|| self.run_dir()) else {
            return "-".into();
        };
        let mut kept = Vec::new();
        for role in ["baseline", "candidate"] {
            let h = dir.join("hosts").join(role);
            let names: Vec<&str> = [
                "facts.json",
                "kernel.config",
                "workload.log",
                "metrics.json",
                "perf.script.zst",
            ]
            .into_iter()
            .filter(|f| h.join(f).is_file())
            .map(|f| f.split('.').next().unwrap())
            .collect();
            if !names.is_empty() {
                kept.push(format!("{}: {}", &role[..1], names.join(" ")));
            }
        }
        if kept.is_empty() {
            "run.json".into()
        } else {
            kept.join("; ")
        }
    }
}

/// Prints a row of the fault table and appends it to $KDELTA_FAULT_TABLE.
fn row(fault: &str, o: &Outcome, left: &[String]) {
    let error = o
        .stderr
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or("-")
        .trim_start_matches("kdelta: error: ")
        .replace('|', "/");
    let error: String = error.chars().take(110).collect();
    let line = format!(
        "| {fault} | {} | {:.0} s | {error} | {} | {} | {} |\n",
        o.code.map(|c| c.to_string()).unwrap_or("signal".into()),
        o.secs,
        o.phases_line(),
        o.kept(),
        if left.is_empty() {
            "nothing".to_string()
        } else {
            left.join(", ")
        }
    );
    print!("{line}");
    if let Ok(p) = std::env::var("KDELTA_FAULT_TABLE") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap();
        f.write_all(line.as_bytes()).unwrap();
    }
}

/// Runs `pb` to its end with a fault made beforehand (or by `inject`, given kdelta
/// running and what was there before; it returns the faulty host's netns inode, whose
/// processes must all be gone afterwards); prints the row; checks nothing is left.
fn run_with_fault(
    fault: &str,
    pb: &Path,
    out: &Path,
    inject: impl FnOnce(&Kd, &World) -> Option<String>,
) -> Outcome {
    let before = world();
    let kd = run_pb(pb, out);
    let inode = inject(&kd, &before);
    let o = kd.finish();
    let left = before.left(inode.as_deref());
    row(fault, &o, &left);
    assert!(left.is_empty(), "{fault}: left behind: {left:?}");
    o
}

fn run_fault(fault: &str, pb: &Path, out: &Path) -> Outcome {
    run_with_fault(fault, pb, out, |_, _| None)
}

// ----- making faults ------------------------------------------------------------

/// Every test here holds the lab lock, also those without a lab: each checks that
/// nothing is left behind, which another test's lab, up at that moment, would spoil.
fn root() {
    assert!(unsafe { libc::geteuid() } == 0, "needs root, as CI runs it");
}

/// The demo playbook, one repeat of `duration` seconds; the candidate's setup is
/// `setup` (the nftables ruleset is not needed to make faults).
fn lab_playbook(dir: &Path, duration: u32, setup: &str) -> PathBuf {
    short_playbook(dir, |t| {
        t.replace("repeat: 2", "repeat: 1")
            .replace("duration: 2", &format!("duration: {duration}"))
            .replace(
                r#"      - "sh {{ files }}/ruleset.sh 2000 | nft -f -""#,
                &format!("      - \"{setup}\""),
            )
    })
}

/// Binds a wrapper over `perf` in the mount namespace of a lab host's sshd: the
/// wrapper runs `body`, then the real perf (a copy in `dir`).
fn wrap_perf(ns: &str, dir: &Path, body: &str) {
    let perf = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v perf"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let real = dir.join("perf.real");
    std::fs::copy(&perf, &real).unwrap();
    let wrapper = dir.join("perf-wrapper");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\n{body}\nexec {} \"$@\"\n", real.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sshd = ns_pids(ns)
        .into_iter()
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("sshd"))
        })
        .expect("the host's sshd");
    let st = Command::new("nsenter")
        .args(["-t", &sshd.to_string(), "-m", "mount", "--bind"])
        .arg(&wrapper)
        .arg(&perf)
        .status()
        .unwrap();
    assert!(st.success(), "bind the perf wrapper");
}

/// Once the candidate of the run under `out` deploys, binds a perf wrapper running
/// `body` there; returns the candidate's namespace.
fn slow_perf_on_candidate(out: &Path, before: &World, dir: &Path, body: &str) -> String {
    wait_for_phase_started(out, "deploy", Some("candidate"), 90);
    let ns = new_namespace(&before.ns, "-c");
    wrap_perf(&ns, dir, body);
    ns
}

/// A TCP port on 127.0.0.1 that accepts connections and never says a word.
fn silent_port() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

fn ssh_pair_to(dir: &Path, port: u16, connect: u32) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("playbooks/ssh-pair.yaml"))
        .unwrap()
        .replace(
            "root@baseline.example.net",
            &format!("root@127.0.0.1:{port}"),
        )
        .replace(
            "root@candidate.example.net:22",
            &format!("root@127.0.0.1:{port}"),
        )
        + &format!("timeouts: {{ connect: {connect} }}\n");
    let pb = dir.join("pb-ssh.yaml");
    std::fs::write(&pb, text).unwrap();
    pb
}

// ----- the faults ---------------------------------------------------------------

#[test]
fn sshd_killed_before_connect() {
    root();
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let lab = LabUp::new(&repo().join("playbooks/lab-tcp.yaml"));
    kill_ns(&lab.namespace("candidate"));
    let pb = tmp.path().join("pb.yaml");
    std::fs::write(&pb, lab.ssh_playbook(None, "timeouts: { connect: 3 }\n")).unwrap();
    let o = run_fault("sshd killed before connect", &pb, &tmp.path().join("out"));
    o.expect(
        3,
        &["candidate: cannot connect to root@", "Connection refused"],
    );
    assert_eq!(o.phase("connect", None), "failed");
    assert_eq!(o.phase("teardown", None), "ok");
}

#[test]
fn host_accepts_tcp_but_never_speaks_ssh() {
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let port = silent_port();
    let pb = ssh_pair_to(tmp.path(), port.local_addr().unwrap().port(), 3);
    let o = run_fault("TCP open, SSH silent", &pb, &tmp.path().join("out"));
    o.expect(3, &["cannot connect to root@127.0.0.1", "is sshd running"]);
    assert_eq!(o.phase("connect", None), "failed");
}

#[test]
fn wrong_key() {
    root();
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let lab = LabUp::new(&repo().join("playbooks/lab-tcp.yaml"));
    let wrong = tmp.path().join("wrong_key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&wrong)
        .status()
        .unwrap();
    assert!(st.success());
    let pb = tmp.path().join("pb.yaml");
    std::fs::write(
        &pb,
        lab.ssh_playbook(wrong.to_str(), "timeouts: { connect: 5 }\n"),
    )
    .unwrap();
    let o = run_fault("wrong key", &pb, &tmp.path().join("out"));
    o.expect(3, &["the key was refused", "identity_file"]);
    assert_eq!(o.phase("connect", None), "failed");
}

#[test]
fn sshd_killed_during_the_workload() {
    root();
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let pb = lab_playbook(tmp.path(), 4, "true");
    let o = run_with_fault(
        "sshd killed during the workload",
        &pb,
        &tmp.path().join("out"),
        |kd, before| {
            wait_for_phase(&kd.out, "workload 1/1", Some("candidate"), 90);
            let ns = new_namespace(&before.ns, "-c");
            let inode = netns_inode(&ns);
            std::thread::sleep(Duration::from_secs(1));
            kill_ns(&ns);
            Some(inode)
        },
    );
    o.expect(
        3,
        &[
            "candidate: the SSH connection to root@",
            "was lost during `stop-1`",
        ],
    );
    assert_eq!(o.record()["status"], "failed");
    assert_eq!(o.phase("workload 1/1", Some("candidate")), "failed");
    assert_eq!(o.phase("teardown", None), "ok");
    // What was captured before the fault is kept.
    for role in ["baseline", "candidate"] {
        assert!(o
            .run_dir()
            .join("hosts")
            .join(role)
            .join("facts.json")
            .is_file());
    }
}

/// The connection drops while `perf script` streams the candidate's profile: the
/// baseline's download is kept, and `--resume` captures the candidate only.
#[test]
fn sshd_killed_during_the_download_then_resumed() {
    root();
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let pb = lab_playbook(tmp.path(), 2, "sleep 2; echo kdfault");
    let out = tmp.path().join("out");
    let o = run_with_fault(
        "sshd killed during the download",
        &pb,
        &out,
        |kd, before| {
            let ns = slow_perf_on_candidate(
                &kd.out,
                before,
                tmp.path(),
                r#"[ "$1" = script ] && sleep 20"#,
            );
            wait_for_phase(&kd.out, "download 1/1", Some("candidate"), 90);
            std::thread::sleep(Duration::from_millis(500));
            let inode = netns_inode(&ns);
            kill_ns(&ns);
            Some(inode)
        },
    );
    o.expect(
        3,
        &[
            "candidate: the SSH connection to root@",
            "was lost during `perf-script-1`",
            "--resume",
        ],
    );
    assert_eq!(o.phase("download 1/1", Some("candidate")), "failed");
    assert_eq!(o.phase("download 1/1", Some("baseline")), "ok");
    let base = o.run_dir().join("hosts/baseline/perf.script.zst");
    let kept = std::fs::read(&base).unwrap();
    assert!(!zstd_text(&base).is_empty());

    let run = o.run_dir();
    let world_before_resume = world();
    let mut resume = kdelta();
    resume.args(["run", "--resume"]).arg(&run);
    let r = start(resume, &out).finish();
    assert!(matches!(r.code, Some(0..=2)), "{}", r.stderr);
    assert_eq!(
        std::fs::read(&base).unwrap(),
        kept,
        "the baseline was captured again"
    );
    assert!(!zstd_text(&run.join("hosts/candidate/perf.script.zst")).is_empty());
    assert!(run.join("report.html").is_file());
    let left = world_before_resume.left(None);
    row("  … then `run --resume`", &r, &left);
    assert!(left.is_empty(), "{left:?}");
}

/// Ubuntu's /usr/bin/perf without the linux-tools package of the running kernel.
#[test]
fn perf_that_does_not_run() {
    root();
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let pb = lab_playbook(tmp.path(), 2, "sleep 2; echo kdfault");
    let ubuntu = "echo 'WARNING: perf not found for kernel 6.8.0-45' >&2\necho '  You may need to install linux-tools-6.8.0-45-generic' >&2\nexit 2";
    let o = run_with_fault(
        "perf missing (does not run)",
        &pb,
        &tmp.path().join("out"),
        |kd, before| {
            let ns = slow_perf_on_candidate(&kd.out, before, tmp.path(), ubuntu);
            Some(netns_inode(&ns))
        },
    );
    o.expect(
        3,
        &[
            "candidate: perf is installed but does not run",
            "WARNING: perf not found for kernel 6.8.0-45",
            "linux-tools-$(uname -r)",
        ],
    );
    assert_eq!(o.phase("facts", Some("candidate")), "failed");
    assert_eq!(o.phase("facts", Some("baseline")), "ok");
}

#[test]
fn perf_killed_mid_record() {
    root();
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let pb = lab_playbook(tmp.path(), 5, "true");
    let o = run_with_fault(
        "perf killed mid-record",
        &pb,
        &tmp.path().join("out"),
        |kd, before| {
            wait_for_phase(&kd.out, "workload 1/1", Some("candidate"), 90);
            let ns = new_namespace(&before.ns, "-c");
            std::thread::sleep(Duration::from_millis(1500));
            let perfs: Vec<i32> = ns_pids(&ns)
                .into_iter()
                .filter(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "perf")
                })
                .collect();
            assert!(!perfs.is_empty(), "no perf running on the candidate");
            for p in perfs {
                unsafe {
                    libc::kill(p, libc::SIGKILL);
                }
            }
            Some(netns_inode(&ns))
        },
    );
    o.expect(
        3,
        &["candidate: perf record died during repeat 1, before kdelta stopped it"],
    );
    assert_eq!(o.phase("workload 1/1", Some("candidate")), "failed");
}

#[test]
fn workload_hangs_past_its_timeout() {
    root();
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let pb = short_playbook(tmp.path(), |t| {
        t.replace("repeat: 2", "repeat: 1")
            .replace(
                "iperf3 -c {{ host.address }} -t {{ duration }} -J",
                "sleep 600; echo kdfault",
            )
            .replace("timeout: 60", "timeout: 4")
    });
    let o = run_fault(
        "workload hangs past its timeout",
        &pb,
        &tmp.path().join("out"),
    );
    o.expect(
        3,
        &[
            "baseline: the workload client failed",
            "timed out (workload.timeout)",
        ],
    );
    assert_eq!(o.phase("workload 1/1", Some("baseline")), "failed");
    assert!(
        o.run_dir().join("hosts/baseline/workload.log").is_file()
            || o.stderr.contains("workload.log")
    );
}

#[test]
fn whole_run_longer_than_timeouts_run() {
    root();
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let pb = lab_playbook(tmp.path(), 30, "true");
    let text = std::fs::read_to_string(&pb).unwrap() + "timeouts: { run: 10 }\n";
    std::fs::write(&pb, text).unwrap();
    let o = run_fault(
        "whole run longer than timeouts.run",
        &pb,
        &tmp.path().join("out"),
    );
    o.expect(3, &["the whole run took longer than timeouts.run = 10s"]);
    // The phase that was running is marked failed, with the reason; none stays `running`.
    let r = o.record();
    let phases = r["phases"].as_array().unwrap();
    assert!(
        phases.iter().any(|p| p["name"] == "workload 1/1"
            && p["status"] == "failed"
            && p["error"].as_str().unwrap_or("").contains("timeouts.run")),
        "{r}"
    );
    assert!(!phases.iter().any(|p| p["status"] == "running"), "{r}");
    assert_eq!(o.phase("teardown", None), "ok");
}

/// Unmounts the small tmpfs, also when an assertion failed.
struct Tmpfs(PathBuf);
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn run_directory_disk_full() {
    root();
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let pb = lab_playbook(tmp.path(), 2, "true");
    let tiny = tmp.path().join("tiny");
    std::fs::create_dir(&tiny).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=300k", "tmpfs"])
        .arg(&tiny)
        .status()
        .unwrap();
    assert!(st.success());
    let _mount = Tmpfs(tiny.clone());
    let o = run_fault("run directory's disk full", &pb, &tiny);
    o.expect(3, &["No space left on device"]);
    // The space set aside for run.json let it record the end: failed, and why.
    let r = o.record();
    assert_eq!(r["status"], "failed", "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("No space left"),
        "{r}"
    );
    assert!(!o.run_dir().join(".run.json.reserve").exists());
    // The error names the file that could not be written.
    assert!(
        o.stderr.contains(&tiny.display().to_string()),
        "{}",
        o.stderr
    );
}

#[test]
fn two_runs_at_once() {
    root();
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let pb = lab_playbook(tmp.path(), 2, "true");
    let before = world();
    let a = run_pb(&pb, &tmp.path().join("a"));
    let b = run_pb(&pb, &tmp.path().join("b"));
    let (a, b) = (a.finish(), b.finish());
    let left = before.left(None);
    row("two runs at once (first)", &a, &left);
    row("two runs at once (second)", &b, &left);
    for o in [&a, &b] {
        assert!(matches!(o.code, Some(0..=2)), "{}", o.stderr);
        assert!(o.run_dir().join("report.html").is_file());
    }
    assert!(left.is_empty(), "{left:?}");
}

// ----- Ctrl-C and SIGTERM at each phase -----------------------------------------

/// Runs `pb`, waits for `phase` (on `host`), lets `ready` prepare, sends the signal;
/// checks exit 130, run.json `interrupted` with that phase cut, teardown done, and
/// nothing left.
fn interrupt_at(
    what: &str,
    pb: &Path,
    phase: &str,
    host: Option<&str>,
    signal: Signal,
    dir: &Path,
    ready: impl Fn(&Path, &World) -> Option<String>,
) -> Outcome {
    let out = dir.join(format!("out-{what}-{signal:?}"));
    let fault = format!("{} during {what}", signal.name());
    let o = run_with_fault(&fault, pb, &out, |kd, before| {
        let inode = ready(&kd.out, before);
        wait_for_phase(&kd.out, phase, host, 120);
        std::thread::sleep(Duration::from_millis(500));
        kd.signal(signal);
        inode
    });
    o.expect(130, &["interrupted"]);
    let r = o.record();
    assert_eq!(r["status"], "interrupted", "{r}");
    // A Ctrl-C also reaches kdelta's local children (an `up`, the workload client);
    // one may die of it and fail its phase a moment before kdelta reads the signal:
    // that phase, too, reads `interrupted`.
    assert_eq!(o.phase(phase, host), "interrupted", "{r}");
    assert_eq!(o.phase("teardown", None), "ok", "{r}");
    o
}

fn each_signal(f: impl Fn(Signal)) {
    for s in [Signal::CtrlC, Signal::Term] {
        f(s);
    }
}

/// The candidate's `up` is slow; the baseline's host is already made when the signal
/// comes: its `down` runs, the candidate's `up` is killed.
#[test]
fn interrupted_during_provision() {
    root();
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let pb = command_playbook(tmp.path(), UP, "sleep 60; echo kdfault", 1);
    each_signal(|s| {
        let o = interrupt_at(
            "provision",
            &pb,
            "provision",
            None,
            s,
            tmp.path(),
            |out, _| {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !run_record(out).is_some_and(|_| {
                    only_run_dir(out)
                        .join("hosts/baseline/teardown.json")
                        .is_file()
                }) {
                    assert!(
                        Instant::now() < deadline,
                        "the baseline's `up` never returned"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
                None
            },
        );
        let t = read_json(&o.run_dir().join("hosts/baseline/teardown.json"));
        assert_eq!(t["state"], "done", "{t}");
    });
}

#[test]
fn interrupted_during_connect() {
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let port = silent_port();
    let pb = ssh_pair_to(tmp.path(), port.local_addr().unwrap().port(), 30);
    each_signal(|s| {
        interrupt_at("connect", &pb, "connect", None, s, tmp.path(), |_, _| None);
    });
}

/// On hosts kdelta does not own (ssh, command), teardown cannot kill a namespace:
/// it stops what the run's commands left running by the KDELTA_RUN mark they carry.
#[test]
fn interrupted_during_deploy_on_ssh_hosts() {
    root();
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let lab = LabUp::new(&repo().join("playbooks/lab-tcp.yaml"));
    let pb = tmp.path().join("pb.yaml");
    std::fs::write(
        &pb,
        lab.ssh_playbook(None, "deploy:\n  - run: \"sleep 60; echo kdfault\"\n"),
    )
    .unwrap();
    each_signal(|s| {
        interrupt_at(
            "deploy (ssh hosts)",
            &pb,
            "deploy",
            Some("candidate"),
            s,
            tmp.path(),
            |_, _| None,
        );
    });
}

/// Interrupts a lab run, both ways, at `phase` on the candidate, whose setup is
/// `setup`; `slow_perf`, if given, is bound over the candidate's perf while it
/// deploys (to hold the run in a phase that uses perf).
fn interrupt_lab_at(what: &str, phase: &str, duration: u32, setup: &str, slow_perf: Option<&str>) {
    root();
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let pb = lab_playbook(tmp.path(), duration, setup);
    each_signal(|s| {
        interrupt_at(
            what,
            &pb,
            phase,
            Some("candidate"),
            s,
            tmp.path(),
            |out, before| {
                wait_for_phase_started(out, "deploy", Some("candidate"), 90);
                let ns = new_namespace(&before.ns, "-c");
                if let Some(body) = slow_perf {
                    wrap_perf(&ns, tmp.path(), body);
                }
                Some(netns_inode(&ns))
            },
        );
    });
}

#[test]
fn interrupted_during_deploy() {
    interrupt_lab_at("deploy", "deploy", 2, "sleep 30; echo kdfault", None);
}

#[test]
fn interrupted_during_facts() {
    let slow = r#"[ "$1" = --version ] && sleep 30"#;
    interrupt_lab_at("facts", "facts", 2, "sleep 2; echo kdfault", Some(slow));
}

#[test]
fn interrupted_during_workload() {
    interrupt_lab_at("workload", "workload 1/1", 6, "true", None);
}

#[test]
fn interrupted_during_download() {
    let slow = r#"[ "$1" = script ] && sleep 30"#;
    interrupt_lab_at(
        "download",
        "download 1/1",
        2,
        "sleep 2; echo kdfault",
        Some(slow),
    );
}

/// A run cut short keeps every repeat it finished, and `kdelta analyze` reports them.
#[test]
fn interrupted_run_is_reported_from_the_repeats_it_finished() {
    root();
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let pb = short_playbook(tmp.path(), |t| t.replace("duration: 2", "duration: 3"));
    let o = run_with_fault(
        "SIGTERM in the last run of a pair, then `analyze`",
        &pb,
        &tmp.path().join("out"),
        |kd, _| {
            wait_for_phase(&kd.out, "workload 2/2", Some("baseline"), 120);
            std::thread::sleep(Duration::from_millis(500));
            kd.signal(Signal::Term);
            None
        },
    );
    o.expect(130, &["interrupted"]);
    let run = o.run_dir();
    let values = |role: &str| {
        read_json(&run.join("hosts").join(role).join("metrics.json"))["metrics"][0]["values"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!((values("baseline"), values("candidate")), (1, 2));
    // Pairs taken one after the other are counterbalanced: A B, then B A.
    let order: Vec<String> = o.record()["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"].as_str().unwrap().starts_with("workload"))
        .map(|p| {
            format!(
                "{} {}",
                p["name"].as_str().unwrap(),
                p["host"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            "workload 1/2 baseline",
            "workload 1/2 candidate",
            "workload 2/2 candidate",
            "workload 2/2 baseline"
        ]
    );
    let script = zstd_text(&run.join("hosts/baseline/perf.script.zst"));
    assert!(script.contains("# kdelta-repeat: 1") && !script.contains("# kdelta-repeat: 2"));
    let a = kdelta().arg("analyze").arg(&run).output().unwrap();
    assert!(
        matches!(a.status.code(), Some(0..=2)),
        "{}",
        String::from_utf8_lossy(&a.stderr)
    );
    assert!(run.join("report.html").is_file() && run.join("summary.json").is_file());
    let s = read_json(&run.join("summary.json"));
    assert!(
        s["caveats"][0]
            .as_str()
            .unwrap()
            .starts_with("the run was interrupted before it finished: this analysis uses the repeats it captured (1 on the baseline, 2 on the candidate)"),
        "{}",
        s["caveats"]
    );
    assert!(!s["attributions"].as_array().unwrap().is_empty(), "{s}");
}

#[test]
fn a_panic_mid_run_still_tears_down() {
    // A bug in kdelta (a panic) mid-run must not skip teardown: the pipeline runs
    // under catch_unwind. KDELTA_FAILPOINT makes one panic when a phase begins.
    root();
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let pb = lab_playbook(tmp.path(), 2, "true");
    let out = tmp.path().join("out");
    let before = world();
    let mut cmd = kdelta_run(&pb, &out);
    cmd.env("KDELTA_FAILPOINT", "panic:workload");
    let o = start(cmd, &out).finish();
    let left = before.left(None);
    row("a panic in kdelta mid-run (failpoint)", &o, &left);
    assert!(left.is_empty(), "left behind: {left:?}");
    o.expect(
        3,
        &[
            "internal error: kdelta panicked",
            "failpoint panic:workload",
            "teardown ran",
        ],
    );
    let r = o.record();
    assert_eq!(r["status"], "failed", "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap_or("")
            .contains("kdelta panicked"),
        "{r}"
    );
    assert_eq!(o.phase("teardown", None), "ok");
    assert_eq!(o.phase("facts", Some("candidate")), "ok");
}

/// `kdelta verify` on hosts kdelta does not own, cut short by a Ctrl-C while the
/// candidate runs with its ruleset flushed (the reverted side's workload): teardown
/// loads the saved ruleset back before it removes the work folder that holds it.
#[test]
fn verify_interrupted_while_reverted_puts_the_state_back() {
    root();
    let _lab = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let lab = LabUp::new(&repo().join("playbooks/lab-tcp.yaml"));
    let ns = lab.namespace("candidate");
    // The candidate's firewall, as a user's box has one.
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "sh {} 50 | ip netns exec {ns} nft -f -",
            repo().join("playbooks/files/lab-tcp/ruleset.sh").display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    // The workload sleeps as long as a file on this machine says for its repeat (lab
    // hosts share its filesystem): a second in the run, long enough to be caught in
    // during verify (which must run the playbook the run ran).
    let pause = |rep: u32| tmp.path().join(format!("pause-{rep}"));
    let pb = tmp.path().join("pb.yaml");
    let text = lab.ssh_playbook(None, "").replace(
        "sleep 1;",
        &format!(
            "sleep $(cat {}-{{{{ repeat }}}} 2>/dev/null || echo 1);",
            tmp.path().join("pause").display()
        ),
    );
    std::fs::write(&pb, &text).unwrap();
    let out = tmp.path().join("out");
    let o = said(&mut kdelta_run(&pb, &out));
    assert!(matches!(o.code, Some(0..=2)), "{}\n{}", o.stdout, o.stderr);
    let run = only_run_dir(&out);
    let rules = || {
        let o = Command::new("ip")
            .args(["netns", "exec", &ns, "nft", "list", "ruleset"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).lines().count()
    };
    let before = rules();
    assert!(before > 50, "the candidate has its ruleset: {before} lines");
    let vout = run.join("verify");
    // Starts verify (with `extra` arguments), waits until `host` runs `phase`, checks
    // the ruleset then, and interrupts it: the ruleset must be back afterwards.
    let interrupt_at = |extra: &[&str], phase: &str, host: &str, lines_then: usize| {
        let mut c = kdelta();
        c.arg("verify")
            .arg(&run)
            .args(["--cause", "netfilter.nft_rules", "--repeat", "2"])
            .args(extra);
        let mut kd = start(c, &vout);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !run_record(&vout).is_some_and(|r| {
            r["phases"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["name"] == phase && p["host"] == host && p["status"] == "running")
            })
        }) {
            if kd.child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                let _ = kd.child.kill();
                panic!(
                    "verify never reached {host}'s {phase}: {}",
                    std::fs::read_to_string(&kd.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The phase is marked running before the side's state is entered (the
        // ruleset flushed or loaded back): wait for it, within the 30 s pause.
        let until = Instant::now() + Duration::from_secs(15);
        while rules() != lines_then && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(rules(), lines_then, "{host}'s ruleset during {phase}");
        kd.signal(Signal::CtrlC);
        let o = kd.finish();
        o.expect(130, &["interrupted"]);
        assert_eq!(
            rules(),
            before,
            "teardown put the ruleset back\n{}",
            o.stderr
        );
    };
    // 1. Caught while the reverted side (the run's `baseline`) runs with the ruleset
    //    flushed.
    std::fs::write(pause(1), "30").unwrap();
    interrupt_at(&[], "workload 1/2", "baseline", 0);

    // `run --resume` would measure the playbook, not the revert: it is refused, with
    // the command that continues it.
    let vrun = only_run_dir(&vout);
    let refused = said(kdelta().arg("run").arg("--resume").arg(&vrun));
    assert_ne!(refused.code, Some(0));
    assert!(
        refused
            .stderr
            .contains(&format!("kdelta verify {} --resume", run.display())),
        "{}",
        refused.stderr
    );
    // 2. `verify --resume` continues it, and is caught again in the last repeat of
    //    the reverted side (pairs go A B, B A: the candidate has all its repeats).
    std::fs::remove_file(pause(1)).unwrap();
    std::fs::write(pause(2), "30").unwrap();
    interrupt_at(&["--resume"], "workload 2/2", "baseline", 0);
    assert_eq!(only_run_dir(&vout), vrun, "no new verify run");
    // 3. Resumed to the end: one host in two states, so both are taken again.
    std::fs::remove_file(pause(2)).unwrap();
    let o = said(kdelta().arg("verify").arg(&run).args([
        "--cause",
        "netfilter.nft_rules",
        "--repeat",
        "2",
        "--resume",
    ]));
    assert!(matches!(o.code, Some(0..=2)), "{}\n{}", o.stdout, o.stderr);
    assert_eq!(only_run_dir(&vout), vrun, "no new verify run");
    let rec = run_record(&vout).unwrap();
    assert_eq!(rec["status"], "ok", "{rec}");
    let resumes = rec["resumes"].as_array().unwrap();
    assert_eq!(resumes.len(), 2, "{rec}");
    assert_eq!(
        resumes[1]["recaptured"],
        serde_json::json!(["baseline", "candidate"]),
        "{rec}"
    );
    for role in ["baseline", "candidate"] {
        let m = read_json(&vrun.join("hosts").join(role).join("metrics.json"));
        assert_eq!(
            m["metrics"][0]["values"].as_array().unwrap().len(),
            2,
            "{role}: {m}"
        );
    }
    let v = read_json(&vrun.join("verify.json"));
    assert_eq!(v["items"][0]["key"], "netfilter.nft_rules", "{v}");
    assert!(
        o.stdout.contains("reverting netfilter.nft_rules"),
        "{}",
        o.stdout
    );
    assert_eq!(
        rules(),
        before,
        "the ruleset is back after the resumed verify"
    );
    // A finished verify is not resumed again.
    let again =
        said(
            kdelta()
                .arg("verify")
                .arg(&run)
                .args(["--cause", "netfilter.nft_rules", "--resume"]),
        );
    assert_ne!(again.code, Some(0));
    assert!(again.stderr.contains("finished"), "{}", again.stderr);
}
