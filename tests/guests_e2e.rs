//! kdelta against hosts that look like real ones (issue 18): full Debian guests
//! under QEMU — systemd, OpenSSH with keys only, Debian's perf, a login user `admin`
//! with passwordless sudo and kernel.perf_event_paranoid = 3, as on a Debian cloud
//! instance — reached through the `ssh` provider and through the `command`
//! provider, whose `up`/`down` boot and kill such guests (`kdelta guest up/down`,
//! the stand-in for `aws ec2 run-instances`). Root needed, as CI runs it.
//!
//! Nothing may be left running: every guest is stopped by the test's own guard
//! (ssh provider) or by the run's `down` (command provider), and the guests are
//! checked for kdelta's processes and folders before they go.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// The guests' playbook: both roles Debian 12 with user admin and sudo, on
/// Debian's cloud kernel.
fn guests_playbook() -> PathBuf {
    repo().join("tests/fixtures/guests/debian.yaml")
}

/// A guest `kdelta guest up` started; stopped when dropped, also when the test fails.
struct Guest {
    port: u16,
    key: PathBuf,
    known_hosts: PathBuf,
    id: PathBuf,
}

impl Guest {
    /// Starts the guests of `roles`, one after the other: each boots in about 20 s
    /// under TCG, two at once on two cores take longer than that each.
    fn up(roles: &[&str]) -> Vec<Guest> {
        let outs: Vec<_> = roles
            .iter()
            .map(|role| {
                kdelta()
                    .args(["-q", "guest", "up"])
                    .arg(guests_playbook())
                    .args(["--role", role])
                    .output()
                    .unwrap()
            })
            .collect();
        // Parse every output before asserting, so a failed one still lets the
        // others be stopped by their guards.
        let guests: Vec<Option<Guest>> = outs
            .iter()
            .map(|o| {
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
                Some(Guest {
                    port: v["port"].as_u64()? as u16,
                    key: v["identity_file"].as_str()?.into(),
                    known_hosts: v["known_hosts"].as_str()?.into(),
                    id: v["id"].as_str()?.into(),
                })
            })
            .collect();
        let ok = guests.iter().all(Option::is_some);
        let guests: Vec<Guest> = guests.into_iter().flatten().collect();
        assert!(
            ok,
            "guest up failed: {:?}",
            outs.iter()
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .collect::<Vec<_>>()
        );
        guests
    }

    /// Runs `cmd` on the guest as admin.
    fn ssh(&self, cmd: &str) -> Said {
        ssh_to(self.port, &self.key, &self.known_hosts, cmd)
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = kdelta().args(["guest", "down"]).arg(&self.id).output();
    }
}

fn ssh_to(port: u16, key: &Path, known_hosts: &Path, cmd: &str) -> Said {
    said(
        std::process::Command::new("ssh")
            .args(["-n", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg("-i")
            .arg(key)
            .args(["-p", &port.to_string(), "admin@127.0.0.1", cmd]),
    )
}

/// QEMUs still running whose command line names one of `ids` (guest folders).
fn qemus_of(ids: &[PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c);
            if c.contains("qemu-system") && ids.iter().any(|i| c.contains(&*i.to_string_lossy())) {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Each role's `down` ran in `run` (teardown.json done); their guests' ids are
/// added to `ids`, and no QEMU of any of `ids` still runs.
fn all_down(run: &Path, roles: &[&str], ids: &mut Vec<PathBuf>) {
    for role in roles {
        let t = read_json(&run.join("hosts").join(role).join("teardown.json"));
        assert_eq!(t["state"], "done", "{role}: {t}");
        ids.push(PathBuf::from(t["id"].as_str().unwrap()));
    }
    assert!(qemus_of(ids).is_empty(), "guests left: {:?}", qemus_of(ids));
}

/// What kdelta may have left on a guest: its work folders, perf, the workload.
fn leftovers(g: &Guest) -> String {
    let s = g.ssh("ls -d /tmp/kdelta-run-* /var/tmp/kdelta-run-* 2>/dev/null; pgrep -a -x perf; pgrep -a iperf3; true");
    assert_eq!(s.code, Some(0), "ssh to the guest: {}", s.stderr);
    s.stdout.trim().to_string()
}

/// The kernel and initramfs this machine's QEMU booted guest `id` with (`-kernel`,
/// `-initrd`): what the `boot:` hook kexecs it into.
fn boot_files(id: &Path) -> (String, String) {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(c) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = c
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let of_guest = args.iter().any(|a| a.contains(&*id.to_string_lossy()));
        if !(of_guest && args[0].contains("qemu-system")) {
            continue;
        }
        let after = |flag: &str| {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1].clone()
        };
        return (after("-kernel"), after("-initrd"));
    }
    panic!("no QEMU of {}", id.display())
}

/// The candidate's `boot:` hook: tests/fixtures/guests/kexec-boot.sh, given the
/// revert's boot parameters to take out and put in.
fn kexec_hook(g: &Guest) -> String {
    let (kernel, initrd) = boot_files(&g.id);
    format!(
        ", boot: \"sh {} {} {} {} {kernel} {initrd}{{% for k in revert.cmdline_remove %}} -{{{{ k }}}}{{% endfor %}}{{% for w in revert.cmdline_add %}} +{{{{ w }}}}{{% endfor %}}\"",
        repo().join("tests/fixtures/guests/kexec-boot.sh").display(),
        g.port,
        g.key.display(),
        g.known_hosts.display()
    )
}

/// The only verify run under `out`: made `how`, with an `applied` entry that
/// `applied` accepts. Returns its folder.
fn verified(out: &Path, how: &str, applied: impl Fn(&str) -> bool) -> PathBuf {
    let vdir = only_run_dir(out);
    let v = read_json(&vdir.join("verify.json"));
    assert_eq!(v["how"], how, "{v}");
    assert!(
        v["applied"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().is_some_and(&applied)),
        "{v}"
    );
    vdir
}

/// The kernel command line a role of verify run `vdir` had, from its facts.
fn facts_cmdline(vdir: &Path, role: &str) -> String {
    read_json(&vdir.join("hosts").join(role).join("facts.json"))["cmdline"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn ssh_playbook(
    dir: &Path,
    g: &[Guest],
    extra_host: &str,
    frequency: u32,
    candidate_extra: &str,
) -> PathBuf {
    let host = |g: &Guest, more: &str| {
        format!(
            "{{ ssh: \"admin@127.0.0.1:{}\", identity_file: \"{}\", known_hosts: \"{}\"{extra_host}{more} }}",
            g.port,
            g.key.display(),
            g.known_hosts.display()
        )
    };
    let text = format!(
        r#"name: debian-ssh
hosts:
  baseline: {}
  candidate: {}
workload:
  server: "iperf3 -s -1 -B 127.0.0.1"
  client: {{ from: host, run: "sleep 1; iperf3 -c 127.0.0.1 -t 2 -J" }}
  timeout: 120
  metrics:
    throughput: {{ json: end.sum_received.bits_per_second, unit: bit/s, better: higher }}
capture:
  perf: {{ frequency: {frequency}, call_graph: fp }}
  repeat: 1
timeouts: {{ command: 300 }}
"#,
        host(&g[0], ""),
        host(&g[1], candidate_extra)
    );
    let p = dir.join(format!("ssh-{}.yaml", frequency));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn ssh_provider_as_a_sudo_user_on_debian_guests() {
    assert!(unsafe { libc::geteuid() } == 0, "needs root, as CI runs it");
    let _lock = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let g = Guest::up(&["baseline", "candidate"]);
    assert_eq!(
        g[0].ssh("cat /proc/sys/kernel/perf_event_paranoid")
            .stdout
            .trim(),
        "3"
    );

    // 1. As admin without `become`: refused right after connecting, with the fix,
    //    before any deploy step or capture.
    let pb = ssh_playbook(tmp.path(), &g, "", 99, "");
    let o = said(&mut kdelta_run(&pb, &tmp.path().join("out1")));
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    assert!(
        o.stderr.contains("perf_event_paranoid = 3")
            && o.stderr.contains("login user admin")
            && o.stderr.contains("become: sudo"),
        "{}",
        o.stderr
    );
    let rec = run_record(&tmp.path().join("out1")).unwrap();
    assert!(
        !rec["phases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "deploy"),
        "{rec}"
    );

    // 2. With `become: sudo`, and a /tmp that perf record fills on the candidate (a
    //    512 KiB tmpfs): the baseline is captured, the candidate stops with a clear
    //    error naming the fix, its cut-short recording gone, nothing left running.
    let s = g[1].ssh("sudo -n mount -t tmpfs -o size=512k kdelta-small /tmp");
    assert_eq!(s.code, Some(0), "{}", s.stderr);
    // The candidate has a `boot:` hook (kexec), for step 4.
    let pb = ssh_playbook(tmp.path(), &g, ", become: sudo", 999, &kexec_hook(&g[1]));
    let out = tmp.path().join("out2");
    let o = said(&mut kdelta_run(&pb, &out));
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    assert!(
        o.stderr.contains("filled up") && o.stderr.contains("work_dir:"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("MiB free in /tmp"),
        "the early warning: {}",
        o.stderr
    );
    assert_eq!(leftovers(&g[1]), "", "candidate after the full /tmp");
    assert_eq!(leftovers(&g[0]), "", "baseline after its capture");

    // 3. Room again: `--resume` captures the candidate and the run is whole.
    let s = g[1].ssh("sudo -n umount /tmp");
    assert_eq!(s.code, Some(0), "{}", s.stderr);
    let run = only_run_dir(&out);
    let o = said(kdelta().arg("run").arg(&pb).arg("--resume").arg(&run));
    assert!(matches!(o.code, Some(0..=2)), "{}", o.stderr);
    assert!(run.join("summary.json").is_file());
    for role in ["baseline", "candidate"] {
        let f = read_json(&run.join("hosts").join(role).join("facts.json"));
        assert_eq!(f["extra"]["is_root"], "1", "{role}: commands as root");
        assert_eq!(f["extra"]["login_user"], "admin", "{role}");
        assert!(!zstd_text(&run.join("hosts").join(role).join("perf.script.zst")).is_empty());
    }
    for (i, guest) in g.iter().enumerate() {
        assert_eq!(leftovers(guest), "", "guest {i} after the run");
    }

    // 4. Issue 16: the boot parameter verified on the one ssh machine. Its `boot:`
    //    hook kexecs the candidate into the command line without slub_debug=FZPU
    //    and back. A Ctrl-C while the guest reboots into the revert: teardown waits
    //    for that boot to end, then boots it back; `verify --resume` then measures
    //    both states again to the end.
    let cmdline = || g[1].ssh("cat /proc/cmdline").stdout.trim().to_string();
    let boot_id = || {
        g[1].ssh("cat /proc/sys/kernel/random/boot_id")
            .stdout
            .trim()
            .to_string()
    };
    assert!(cmdline().contains("slub_debug=FZPU"), "{}", cmdline());
    let first_boot = boot_id();
    let verify = || {
        let mut c = kdelta();
        c.args(["verify", "--cause", "cmdline.slub_debug", "--repeat", "1"])
            .arg(&run);
        c
    };
    let vout = run.join("verify");
    let child = verify()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The hook's log is written when it returns: the kexec is then under way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let hooked = loop {
        let log = std::fs::read_dir(&vout)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| {
                let p = e.ok()?.path().join("hosts/candidate/logs/boot-1.log");
                p.is_file().then_some(p)
            });
        if log.is_some() || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(hooked.is_some(), "the boot hook never ran: {stderr}");
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(!stderr.contains("may still"), "{stderr}");
    assert!(
        cmdline().contains("slub_debug=FZPU"),
        "booted back at teardown: {}\n{stderr}",
        cmdline()
    );
    // The guest's own record of the hook's calls (boot id, command line asked for):
    // into the revert from the first boot, back from the reverted boot, not from
    // the first boot again (teardown waited for the reboot under way).
    let boots = g[1].ssh("cat /var/tmp/kdelta-kexec/boots.log").stdout;
    let calls: Vec<(&str, &str)> = boots.lines().filter_map(|l| l.split_once(' ')).collect();
    assert_eq!(calls.len(), 2, "{boots}");
    assert_eq!(calls[0].0, first_boot, "{boots}");
    assert!(!calls[0].1.contains("slub_debug"), "{boots}");
    assert_ne!(
        calls[1].0, first_boot,
        "the restore ran in the old boot: {boots}"
    );
    assert!(calls[1].1.contains("slub_debug=FZPU"), "{boots}");
    assert_eq!(
        leftovers(&g[1]),
        "",
        "candidate after the interrupted verify"
    );
    let o = said(verify().arg("--resume"));
    assert!(matches!(o.code, Some(0..=2)), "{}\n{}", o.stdout, o.stderr);
    let vdir = verified(&vout, "boot", |a| {
        a == "cmdline.slub_debug: FZPU → (absent)"
    });
    assert!(!facts_cmdline(&vdir, "baseline").contains("slub_debug"));
    assert!(facts_cmdline(&vdir, "candidate").contains("slub_debug=FZPU"));
    let rec = read_json(&vdir.join("run.json"));
    assert_eq!(rec["status"], "ok", "{rec}");
    assert_eq!(rec["resumes"].as_array().map(Vec::len), Some(1), "{rec}");
    // Into the revert and back in the resumed run: two more calls of the hook, each
    // from a boot of its own, the last one's boot the guest's now.
    let boots = g[1].ssh("cat /var/tmp/kdelta-kexec/boots.log").stdout;
    let calls: Vec<(&str, &str)> = boots.lines().filter_map(|l| l.split_once(' ')).collect();
    assert_eq!(calls.len(), 4, "{boots}");
    assert!(!calls[2].1.contains("slub_debug"), "{boots}");
    assert!(calls[3].1.contains("slub_debug=FZPU"), "{boots}");
    let seen: std::collections::BTreeSet<&str> = calls.iter().map(|c| c.0).collect();
    assert_eq!(seen.len(), 4, "one call per boot: {boots}");
    assert!(!seen.contains(boot_id().as_str()), "{boots}");
    assert!(cmdline().contains("slub_debug=FZPU"), "{}", cmdline());
    assert_eq!(leftovers(&g[1]), "", "candidate after verify");
    let ids: Vec<PathBuf> = g.iter().map(|g| g.id.clone()).collect();
    drop(g);
    assert!(
        qemus_of(&ids).is_empty(),
        "guests left: {:?}",
        qemus_of(&ids)
    );
}

/// playbooks/ec2-command.yaml as shipped, but with `up`/`down` booting and killing
/// Debian guests instead of EC2 instances, and a shorter workload.
fn ec2_as_guests(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("playbooks/ec2-command.yaml")).unwrap();
    let kd = env!("CARGO_BIN_EXE_kdelta");
    let mut out = String::new();
    let mut role = "";
    let mut skipping = false;
    for line in text.lines() {
        if line == "  baseline:" || line == "  candidate:" {
            role = line.trim().trim_end_matches(':');
        }
        if skipping && !line.starts_with("      ") {
            skipping = false;
        }
        if skipping {
            continue;
        }
        if line.starts_with("    up: ") {
            // `kdelta verify` asks for a host with a boot parameter reverted
            // through `revert`; `guest up --revert` boots it so.
            out.push_str(&format!(
                "    up: \"{kd} -q guest up {} --role {role}{{% for i in revert.items %}} --revert {{{{ i.key ~ '=' ~ i.baseline }}}}{{% endfor %}}\"\n",
                guests_playbook().display()
            ));
            skipping = true;
        } else if line.starts_with("    down: ") {
            out.push_str(&format!("    down: \"{kd} guest down {{{{ id }}}}\"\n"));
        } else if line.starts_with("  duration: ") {
            out.push_str("  duration: 3\n");
        } else if line.starts_with("  repeat: ") {
            out.push_str("  repeat: 1\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        out.contains("guest up") && out.contains("become: sudo"),
        "{out}"
    );
    let p = dir.join("ec2-as-guests.yaml");
    std::fs::write(&p, out).unwrap();
    p
}

#[test]
fn ec2_example_on_command_hosts_through_a_reboot_and_a_resume() {
    assert!(unsafe { libc::geteuid() } == 0, "needs root, as CI runs it");
    let _lock = lab_lock();
    let tmp = tempfile::tempdir().unwrap();
    let pb = ec2_as_guests(tmp.path());
    let out = tmp.path().join("out");
    let child = kdelta_run(&pb, &out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The candidate reboots in the middle of its workload (a kernel update, a
    // colleague, a watchdog): the run stops with the connection named, and both
    // guests are removed by their `down`.
    wait_for_phase(&out, "workload 1/1", Some("candidate"), 600);
    let run = only_run_dir(&out);
    let t = read_json(&run.join("hosts/candidate/teardown.json"));
    let id = PathBuf::from(t["id"].as_str().unwrap());
    let port = read_json(&run.join("hosts.json"))["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["role"] == "candidate")
        .and_then(|h| h["port"].as_u64())
        .unwrap() as u16;
    let s = ssh_to(
        port,
        &id.join("id_ed25519"),
        &id.join("known_hosts"),
        "sudo -n systemctl reboot",
    );
    assert!(matches!(s.code, Some(0) | Some(255)), "{}", s.stderr);
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("connection") && stderr.contains("--resume"),
        "{stderr}"
    );
    let mut ids = Vec::new();
    all_down(&run, &["baseline", "candidate"], &mut ids);

    // `--resume` makes new hosts for what was not captured, and finishes the run.
    let o = said(kdelta().arg("run").arg(&pb).arg("--resume").arg(&run));
    assert!(matches!(o.code, Some(0..=2)), "{}", o.stderr);
    assert!(run.join("summary.json").is_file());
    let rec = read_json(&run.join("run.json"));
    let again = &rec["resumes"][0]["recaptured"];
    assert!(
        again.as_array().unwrap().iter().any(|r| r == "candidate"),
        "{rec}"
    );
    let f = read_json(&run.join("hosts/candidate/facts.json"));
    assert_eq!(f["extra"]["login_user"], "admin");
    all_down(&run, &["candidate"], &mut ids);

    // Issue 16: a boot parameter of a command host, verified. The candidate booted
    // with slub_debug=FZPU; `kdelta verify` has the playbook's `up` make a host with
    // it reverted (its `revert`), measures it against the candidate as it is, and
    // reads from the new host's own capture what really differed.
    let o = said(
        kdelta()
            .args(["verify", "--cause", "cmdline.slub_debug", "--repeat", "1"])
            .arg(&run),
    );
    assert!(matches!(o.code, Some(0..=2)), "{}\n{}", o.stdout, o.stderr);
    let vdir = verified(&run.join("verify"), "command", |a| {
        a.starts_with("cmdline.slub_debug")
    });
    let up = std::fs::read_to_string(vdir.join("hosts/baseline/logs/up.log")).unwrap_or_default();
    assert!(
        !facts_cmdline(&vdir, "baseline").contains("slub_debug"),
        "{up}"
    );
    assert!(facts_cmdline(&vdir, "candidate").contains("slub_debug=FZPU"));
    all_down(&vdir, &["baseline", "candidate"], &mut ids);
}
