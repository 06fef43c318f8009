//! Running guests: QEMU started with the guest's kernel and initramfs, a state file
//! per guest under /run/kdelta/vms (so `kdelta lab down --all` finds the guests of a
//! kdelta that was itself killed), killed by PID at teardown.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::KernelImage;
use crate::model::Role;
use crate::playbook::QemuSpec;

/// A free TCP port on 127.0.0.1 (bound and released; QEMU binds it next).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// One file per running guest, named by QEMU's PID, written as soon as QEMU runs:
/// `kdelta lab down --all` kills the guests of a kdelta that was itself killed.
pub const VM_STATE_DIR: &str = "/run/kdelta/vms";

/// A running guest, for teardown.
#[derive(Debug)]
pub struct Vm {
    pub role: Role,
    pub child: std::process::Child,
}

impl Vm {
    /// Kills QEMU and reaps it; true when it is gone.
    pub fn kill(&mut self) -> bool {
        let _ = self.child.kill();
        let gone = self.child.wait().is_ok();
        let _ = std::fs::remove_file(Path::new(VM_STATE_DIR).join(self.child.id().to_string()));
        gone
    }
}

/// Is `pid` a QEMU that kdelta started (its command line names a kdelta initramfs)?
fn is_our_qemu(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let c = String::from_utf8_lossy(&c);
            c.contains("qemu-system") && c.contains("/kdq-")
        })
        .unwrap_or(false)
}

/// Guests left by a kdelta that could not tear down (killed with SIGKILL):
/// `(pid, state file)`; state files of processes already gone are listed too.
pub fn leftovers() -> Vec<(u32, bool)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(VM_STATE_DIR) {
        for e in rd.flatten() {
            if let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() {
                out.push((pid, is_our_qemu(pid)));
            }
        }
    }
    out
}

/// Kills leftover guests and removes their state files; returns how many ran.
pub fn down_all() -> (usize, Vec<String>) {
    let mut n = 0;
    let mut errors = Vec::new();
    for (pid, alive) in leftovers() {
        if alive {
            // SAFETY: kill(2) on a PID whose command line we just checked.
            let r = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            if r != 0 {
                errors.push(format!(
                    "cannot kill QEMU pid {pid}: {}",
                    std::io::Error::last_os_error()
                ));
                continue;
            }
            n += 1;
        }
        let _ = std::fs::remove_file(Path::new(VM_STATE_DIR).join(pid.to_string()));
    }
    (n, errors)
}

/// Boots a guest and waits until its console says it is ready. The VM is pushed to
/// `vms` as soon as it exists, so teardown kills it even if the boot fails.
pub async fn boot(
    spec: &QemuSpec,
    role: Role,
    image: &KernelImage,
    initramfs: &Path,
    console: &Path,
    vms: &std::sync::Mutex<Vec<Vm>>,
    boot_timeout: Duration,
) -> Result<u16> {
    let port = free_port()?;
    let child = qemu_command(spec, image, initramfs, console, port)?
        .spawn()
        .context("qemu-system-x86_64 not found: install qemu-system-x86")?;
    let _ = std::fs::create_dir_all(VM_STATE_DIR);
    let _ = std::fs::write(
        Path::new(VM_STATE_DIR).join(child.id().to_string()),
        format!("{role} {}\n", console.display()),
    );
    vms.lock()
        .map_err(|_| anyhow!("vm list poisoned"))?
        .push(Vm { role, child });
    wait_ready(role, console, vms, boot_timeout).await?;
    Ok(port)
}

/// QEMU with the guest's kernel and initramfs, its serial console in a file, and
/// restricted user networking: SSH forwarded from 127.0.0.1:`port`, nothing else.
fn qemu_command(
    spec: &QemuSpec,
    image: &KernelImage,
    initramfs: &Path,
    console: &Path,
    port: u16,
) -> Result<std::process::Command> {
    let mut cmd = std::process::Command::new("qemu-system-x86_64");
    cmd.args(["-accel", spec.accel.as_str()])
        .args([
            "-m",
            &spec.memory_mb.to_string(),
            "-smp",
            &spec.cpus.to_string(),
        ])
        .args([
            "-no-reboot",
            "-display",
            "none",
            "-monitor",
            "none",
            "-nodefaults",
        ])
        .arg("-kernel")
        .arg(&image.image)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", &kernel_cmdline(spec)])
        .arg("-netdev")
        .arg(format!(
            "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22"
        ))
        .args(["-device", "virtio-net-pci,netdev=n0"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(console.with_extension("qemu.log"))?);
    Ok(cmd)
}

/// kdelta's own parameters, then the playbook's `cmdline:` words.
fn kernel_cmdline(spec: &QemuSpec) -> String {
    let mut words = vec!["console=ttyS0", "panic=-1", "quiet"];
    words.extend(spec.cmdline.iter().map(String::as_str));
    words.join(" ")
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().rev().take(n).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Waits for the guest's ready line on its console; fails with the console's tail
/// when QEMU exits or the time is up.
async fn wait_ready(
    role: Role,
    console: &Path,
    vms: &std::sync::Mutex<Vec<Vm>>,
    boot_timeout: Duration,
) -> Result<()> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(console).unwrap_or_default();
        if text.contains("KDELTA-READY") {
            return Ok(());
        }
        let exited = vms.lock().ok().and_then(|mut v| {
            v.iter_mut()
                .find(|x| x.role == role)
                .and_then(|x| x.child.try_wait().ok().flatten())
        });
        if let Some(st) = exited {
            let qlog =
                std::fs::read_to_string(console.with_extension("qemu.log")).unwrap_or_default();
            bail!(
                "{role}: QEMU exited during boot ({st}); console tail:\n{}\n{}",
                tail(&text, 12),
                qlog.trim()
            );
        }
        if start.elapsed() > boot_timeout {
            bail!(
                "{role}: the guest did not come up in {}s (console {}):\n{}",
                boot_timeout.as_secs(),
                console.display(),
                tail(&text, 12)
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
