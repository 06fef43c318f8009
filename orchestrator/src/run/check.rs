//! `kdelta check` and the preflight every run does: can perf record system-wide
//! with kernel symbols on each host, is there disk for the capture, do the clocks
//! agree. Each finding names the host and the fix.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::capture::facts;
use crate::exec::remote::Remote;
use crate::model::{Facts, Role};
use crate::playbook::{Plan, Provider};
use crate::progress::Progress;
use crate::provision::teardown::teardown;
use crate::provision::{Host, Ledger, Provisioner};

/// Checks that perf can record system-wide with kernel symbols.
pub fn preflight(role: Role, f: &Facts) -> Result<()> {
    if let Some(why) = f.extra.get("perf_broken").and_then(|v| v.as_str()) {
        bail!("{role}: perf is installed but does not run: {why} (install the perf of the running kernel: Debian linux-perf, Ubuntu linux-tools-$(uname -r), RHEL perf)");
    }
    if f.perf_version.is_none() {
        bail!("{role}: perf is not installed on the host (Debian/Ubuntu: apt-get install linux-perf / linux-tools-$(uname -r); RHEL: dnf install perf)");
    }
    let paranoid = f.extra_int("perf_event_paranoid").unwrap_or(0);
    if paranoid > 0 && !f.is_root() {
        bail!(
            "{}",
            paranoid_problem(
                role,
                paranoid,
                f.extra.get("login_user").and_then(|v| v.as_str())
            )
        );
    }
    Ok(())
}

fn paranoid_problem(role: Role, paranoid: i64, user: Option<&str>) -> String {
    format!(
        "{role}: kernel.perf_event_paranoid = {paranoid} forbids system-wide profiling for {} (fix: set `become: sudo` on the host if it has passwordless sudo, connect as root, or sysctl -w kernel.perf_event_paranoid=-1 on it)",
        user.map_or("this user".to_string(), |u| format!("the login user {u}"))
    )
}

/// Run before anything else on a host: who kdelta's commands run as, whether that
/// user may profile the whole system, and the room in the work folder's
/// filesystem. Deploy steps may still install perf, so only the privilege is
/// checked here; [`preflight`] checks perf after them.
fn access_script(work_dir: &str) -> String {
    format!(
        "id -u; id -un; cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo -; df -Pk {} 2>/dev/null | awk 'NR == 2 {{ print $4 }}'",
        crate::exec::shell::quote(work_dir)
    )
}

/// The access check of a connected host (and `become: sudo` working, first).
/// Returns warnings to show (little room for the capture).
pub async fn access(role: Role, r: &Remote, work_dir: &str) -> Result<Vec<String>> {
    r.check_become().await?;
    let out = r
        .run("access", &access_script(work_dir), Duration::from_secs(30))
        .await?;
    let mut lines = out.stdout.lines().map(str::trim);
    let (uid, user, paranoid, free) = (lines.next(), lines.next(), lines.next(), lines.next());
    let paranoid = paranoid.and_then(|p| p.parse::<i64>().ok()).unwrap_or(0);
    if uid != Some("0") && paranoid > 0 {
        bail!("{}", paranoid_problem(role, paranoid, user));
    }
    let mut warnings = Vec::new();
    if let Some(kib) = free.and_then(|f| f.parse::<u64>().ok()) {
        if kib < 256 * 1024 {
            warnings.push(format!(
                "kdelta: warning: {role}: {} MiB free in {work_dir}: perf.data of a repeat can take hundreds of MiB (set `work_dir:` on the host to a larger filesystem)",
                kib / 1024
            ));
        }
    }
    Ok(warnings)
}

/// `kdelta check`: validates and, unless `offline`, runs the preflight on the hosts.
pub async fn check(plan: &Plan, quiet: bool) -> Result<Vec<String>> {
    let mut lines = vec![format!(
        "{}: playbook is valid ({})",
        plan.file.display(),
        plan.name
    )];
    let progress = Progress::new(quiet);
    let ledger = Mutex::new(Ledger::default());
    let tmp = std::env::temp_dir().join(format!("kdelta-check-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let res = check_hosts(plan, &ledger, &tmp, &progress, &mut lines).await;
    let errs = teardown(&ledger, &progress).await;
    progress.finish();
    let _ = std::fs::remove_dir_all(&tmp);
    res?;
    if !errs.is_empty() {
        bail!("teardown: {}", errs.join("; "));
    }
    Ok(lines)
}

async fn check_hosts(
    plan: &Plan,
    ledger: &Mutex<Ledger>,
    tmp: &Path,
    progress: &Progress,
    lines: &mut Vec<String>,
) -> Result<()> {
    // qemu guests are checked for what they need, not booted (that may build kernels).
    let mut roles = Vec::new();
    for s in plan.hosts() {
        match &s.provider {
            Provider::Qemu(q) => lines.push(crate::provision::qemu::preflight(q, s.role)?),
            // Making a host may cost money: check validates its commands only.
            Provider::Command(_) => lines.push(format!(
                "{}: command host: `up`/`down` are valid templates; not run by check (run makes the host)",
                s.role
            )),
            _ => roles.push(s.role),
        }
    }
    let p = Provisioner {
        plan,
        rd: None,
        ledger,
        control: tmp,
        progress,
    };
    let hosts = p.hosts(&roles).await?;
    if !plan.lab_specs().is_empty() {
        lines.push("lab: namespaces, veth links and sshd come up".into());
    }
    for h in &hosts {
        let r = Remote::connect(&h.connect, tmp).await?;
        let res = check_one(h, &r, lines).await;
        r.close().await;
        res?;
    }
    Ok(())
}

/// SSH, perf, the kernel config, disk and clock of one host.
async fn check_one(h: &Host, r: &Remote, lines: &mut Vec<String>) -> Result<()> {
    let t = Duration::from_secs(60);
    access(h.role, r, &h.work_dir).await?;
    let out = facts::gather(r, t).await?;
    let f = facts::parse_facts(&out);
    preflight(h.role, &f)?;
    let cfg = r.run_unchecked("config", facts::CONFIG_SCRIPT, t).await?;
    lines.push(format!(
        "{}: ssh ok ({}), kernel {}, {}, kernel config {}, kptr_restrict {}",
        h.role,
        h.connect.destination,
        f.kernel.as_deref().unwrap_or("?"),
        f.perf_version.as_deref().unwrap_or("no perf"),
        if cfg.code == Some(0) {
            "found"
        } else {
            "NOT found (config delta will be empty)"
        },
        f.extra
            .get("kptr_restrict")
            .and_then(|v| v.as_str())
            .unwrap_or("?"),
    ));
    // Disk for the capture, and the clock against this machine's.
    let before = std::time::SystemTime::now();
    let o = r
        .run_unchecked(
            "disk-clock",
            &format!(
                "df -Pk {} | tail -n 1; date +%s.%N",
                crate::exec::shell::quote(&h.work_dir)
            ),
            Duration::from_secs(30),
        )
        .await?;
    let after = std::time::SystemTime::now();
    lines.extend(host_checks(
        h.role,
        &f,
        &h.work_dir,
        &o.stdout,
        before,
        after,
    ));
    Ok(())
}

/// Preflight findings beyond the hard requirements: kernel symbols visible, disk
/// for the capture, clock skew; each with the fix. `out` is `df -Pk WORK_DIR` and
/// `date +%s.%N` from the host; `before`/`after` bracket that command here.
pub fn host_checks(
    role: Role,
    f: &Facts,
    work_dir: &str,
    out: &str,
    before: std::time::SystemTime,
    after: std::time::SystemTime,
) -> Vec<String> {
    let mut lines = Vec::new();
    let kptr = f.extra_int("kptr_restrict").unwrap_or(0);
    if kptr >= 2 || (kptr == 1 && !f.is_root()) {
        lines.push(format!("{role}: WARNING: kernel.kptr_restrict = {kptr} hides kernel symbols from perf: stacks will read [unknown] (fix: sysctl -w kernel.kptr_restrict=0)"));
    }
    let mut it = out.lines();
    if let Some(avail) = it
        .next()
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok())
    {
        let mib = avail / 1024;
        if mib < 512 {
            lines.push(format!("{role}: WARNING: {mib} MiB free in {work_dir}: a capture needs up to a few hundred MiB (perf.data of every repeat); set `work_dir:` on the host to a larger filesystem, free space, or lower capture.perf.frequency"));
        } else {
            lines.push(format!("{role}: {mib} MiB free in {work_dir}"));
        }
    }
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    if let Some(remote) = it.next().and_then(|l| l.trim().parse::<f64>().ok()) {
        let (a, b) = (secs(before), secs(after));
        // The host's clock read somewhere between `a` and `b`: skew beyond that window.
        let skew = if remote < a {
            remote - a
        } else if remote > b {
            remote - b
        } else {
            0.0
        };
        if skew.abs() > 1.0 {
            lines.push(format!("{role}: WARNING: clock {skew:+.1} s off this machine's: run.json and log times will not line up (fix: chrony or systemd-timesyncd on both)"));
        } else {
            lines.push(format!(
                "{role}: clock within {:.2} s of this machine's",
                (b - a).max(skew.abs())
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_checks_warn_with_the_fix() {
        let mut f = Facts::default();
        f.extra.insert("kptr_restrict".into(), "2".into());
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let out = "tmpfs 1000 900 100000 10% /tmp\n1000005.5\n";
        let l = host_checks(
            Role::Candidate,
            &f,
            "/tmp",
            out,
            t,
            t + std::time::Duration::from_millis(100),
        );
        assert!(
            l[0].contains("kptr_restrict = 2") && l[0].contains("sysctl -w"),
            "{l:?}"
        );
        assert!(l[1].contains("WARNING: 97 MiB free"), "{l:?}");
        assert!(l[2].contains("clock +5.4 s"), "{l:?}");
        let ok = host_checks(
            Role::Baseline,
            &Facts::default(),
            "/tmp",
            "x 1 1 9000000 1% /tmp\n1000000.05\n",
            t,
            t + std::time::Duration::from_millis(100),
        );
        assert!(
            ok[0].contains("8789 MiB free") && ok[1].contains("clock within"),
            "{ok:?}"
        );
    }

    fn facts(perf: Option<&str>, paranoid: &str, root: &str) -> Facts {
        let mut f = Facts {
            perf_version: perf.map(str::to_string),
            ..Default::default()
        };
        f.extra
            .insert("perf_event_paranoid".into(), paranoid.into());
        f.extra.insert("is_root".into(), root.into());
        f
    }

    #[test]
    fn preflight_names_the_host_and_the_fix() {
        let e = preflight(Role::Candidate, &facts(None, "2", "1")).unwrap_err();
        let m = format!("{e:#}");
        assert!(
            m.starts_with("candidate: perf is not installed")
                && m.contains("apt-get install linux-perf"),
            "{m}"
        );
        let e = preflight(Role::Baseline, &facts(Some("6.1"), "2", "0")).unwrap_err();
        let m = format!("{e:#}");
        assert!(
            m.contains("perf_event_paranoid = 2")
                && m.contains("become: sudo")
                && m.contains("sysctl -w"),
            "{m}"
        );
        let mut broken = facts(None, "-1", "1");
        broken.extra.insert(
            "perf_broken".into(),
            "/usr/bin/perf exits 2: WARNING: perf not found for kernel 6.8.0-45".into(),
        );
        let m = format!("{:#}", preflight(Role::Candidate, &broken).unwrap_err());
        assert!(
            m.starts_with("candidate: perf is installed but does not run: /usr/bin/perf exits 2: WARNING: perf not found for kernel 6.8.0-45")
                && m.contains("linux-tools-$(uname -r)"),
            "{m}"
        );
        // Root may profile whatever the setting; a permissive setting is fine for anyone.
        preflight(Role::Baseline, &facts(Some("6.1"), "2", "1")).unwrap();
        preflight(Role::Baseline, &facts(Some("6.1"), "-1", "0")).unwrap();
    }
}
