//! Running guests: QEMU started with the guest's kernel and initramfs, a state file
//! per guest under /run/kdelta/vms (so `kdelta lab down --all` finds the guests of a
//! kdelta that was itself killed), killed by PID at teardown.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

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

/// Records a QEMU kdelta started in the state folder `kdelta lab down --all` reads,
/// so a guest of a killed kdelta can still be found.
fn note_vm(pid: u32, role: Role, console: &Path) {
    let _ = std::fs::create_dir_all(VM_STATE_DIR);
    let _ = std::fs::write(
        Path::new(VM_STATE_DIR).join(pid.to_string()),
        format!("{role} {}\n", console.display()),
    );
}

/// Removes what [`note_vm`] recorded (the QEMU is gone).
fn forget_vm(pid: u32) {
    let _ = std::fs::remove_file(Path::new(VM_STATE_DIR).join(pid.to_string()));
}

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
        forget_vm(self.child.id());
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
        forget_vm(pid);
    }
    (n, errors)
}

/// What a guest boots from besides its kernel: kdelta's initramfs (the whole
/// guest, or a Debian guest's stage 1) and, for a Debian guest, its disks.
#[derive(Clone, Debug)]
pub struct Media {
    pub initramfs: PathBuf,
    /// virtio disks in order (`/dev/vda`, `/dev/vdb`): `(file, format, read-only)`.
    pub disks: Vec<(PathBuf, &'static str, bool)>,
    /// Whether a reboot in the guest reboots it (a Debian guest: a real host does)
    /// or ends QEMU (the initramfs guest, whose reboot is a crash).
    pub reboot: bool,
}

/// A kernel that crashed during boot (a panic, QEMU gone) is booted once more:
/// under TCG on a loaded machine a Debian 6.12 kernel was seen to die once in an
/// interrupt at 1.3 s (RIP inside a jump instruction) and boot fine the seven
/// times tried after, loaded or not. The first console is kept as
/// `console-boot1.log` (the analysis names it in its caveats: a kernel that panics
/// sometimes is a finding of its own); a kernel that crashes twice fails the boot.
/// A boot that times out is not retried.
pub const BOOT_ATTEMPTS: u32 = 2;

/// Where the console of a crashed first boot is kept.
pub fn first_boot_console(console: &Path) -> PathBuf {
    console.with_file_name(crate::rundir::FIRST_BOOT_CONSOLE)
}

/// What the progress says of a guest whose first boot crashed.
pub fn crashed_once_note(console: &Path) -> String {
    format!(
        "the kernel crashed at its first boot and came up at the second ({})",
        first_boot_console(console).display()
    )
}

/// How a boot attempt failed.
enum BootFailure {
    /// The kernel panicked or QEMU exited: worth one more try.
    Crashed(anyhow::Error),
    /// No ready line in time, or no console: another try would wait as long.
    Other(anyhow::Error),
}

/// Boots a guest and waits until its console says it is ready. The VM is pushed to
/// `vms` as soon as it exists, so teardown kills it even if the boot fails.
/// Returns the SSH port and whether the first boot crashed ([`BOOT_ATTEMPTS`]).
pub async fn boot(
    spec: &QemuSpec,
    role: Role,
    image: &KernelImage,
    media: &Media,
    console: &Path,
    vms: &std::sync::Mutex<Vec<Vm>>,
    boot_timeout: Duration,
) -> Result<(u16, bool)> {
    retry_crashed(
        role,
        console,
        || boot_once(spec, role, image, media, console, vms, boot_timeout),
        || kill_role(vms, role),
    )
    .await
}

/// Runs boot attempts until one is up, one fails otherwise than by a crash, or
/// [`BOOT_ATTEMPTS`] crashed; between two, `cleanup` (kill what is left) and the
/// console kept. Returns the port and whether an attempt crashed.
async fn retry_crashed<F, Fut>(
    role: Role,
    console: &Path,
    mut once: F,
    mut cleanup: impl FnMut(),
) -> Result<(u16, bool)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u16, BootFailure>>,
{
    let mut attempt = 1;
    loop {
        match once().await {
            Ok(port) => return Ok((port, attempt > 1)),
            Err(BootFailure::Crashed(e)) if attempt < BOOT_ATTEMPTS => {
                cleanup();
                std::fs::rename(console, first_boot_console(console))
                    .with_context(|| format!("{role}: keeping the console of a crashed boot"))
                    .map_err(|r| e.context(r))?;
                attempt += 1;
            }
            Err(BootFailure::Crashed(e) | BootFailure::Other(e)) => return Err(e),
        }
    }
}

/// Kills and forgets the VM of `role` (a crashed boot, before the next).
fn kill_role(vms: &std::sync::Mutex<Vec<Vm>>, role: Role) {
    if let Ok(mut v) = vms.lock() {
        if let Some(i) = v.iter().position(|x| x.role == role) {
            v.remove(i).kill();
        }
    }
}

async fn boot_once(
    spec: &QemuSpec,
    role: Role,
    image: &KernelImage,
    media: &Media,
    console: &Path,
    vms: &std::sync::Mutex<Vec<Vm>>,
    boot_timeout: Duration,
) -> Result<u16, BootFailure> {
    let port = free_port().map_err(BootFailure::Other)?;
    let child = qemu_command(spec, image, media, console, port)
        .and_then(|mut c| {
            c.spawn()
                .context("qemu-system-x86_64 not found: install qemu-system-x86")
        })
        .map_err(BootFailure::Other)?;
    note_vm(child.id(), role, console);
    vms.lock()
        .map_err(|_| BootFailure::Other(anyhow!("vm list poisoned")))?
        .push(Vm { role, child });
    let exited = || {
        vms.lock().ok().and_then(|mut v| {
            v.iter_mut()
                .find(|x| x.role == role)
                .and_then(|x| x.child.try_wait().ok().flatten())
                .map(|st| st.to_string())
        })
    };
    wait_ready(role, console, exited, boot_timeout).await?;
    Ok(port)
}

/// Boots a guest that outlives kdelta (`kdelta guest up`): QEMU in its own session,
/// its PID in `pid_file` and in the state folder `kdelta lab down --all` reads.
/// Returns the SSH port once the guest is ready, and whether its first boot crashed
/// (booted once more, as [`boot`]); on failure QEMU is killed.
pub async fn boot_detached(
    spec: &QemuSpec,
    role: Role,
    image: &KernelImage,
    media: &Media,
    console: &Path,
    pid_file: &Path,
    boot_timeout: Duration,
) -> Result<(u16, bool)> {
    // A failed attempt has killed its QEMU already.
    retry_crashed(
        role,
        console,
        || boot_detached_once(spec, role, image, media, console, pid_file, boot_timeout),
        || {},
    )
    .await
}

async fn boot_detached_once(
    spec: &QemuSpec,
    role: Role,
    image: &KernelImage,
    media: &Media,
    console: &Path,
    pid_file: &Path,
    boot_timeout: Duration,
) -> Result<u16, BootFailure> {
    use std::os::unix::process::CommandExt;
    let port = free_port().map_err(BootFailure::Other)?;
    let mut cmd = qemu_command(spec, image, media, console, port).map_err(BootFailure::Other)?;
    // Its own session: no signal to kdelta's terminal or group reaches it.
    cmd.process_group(0);
    let mut child = cmd
        .spawn()
        .context("qemu-system-x86_64 not found: install qemu-system-x86")
        .map_err(BootFailure::Other)?;
    let pid = child.id();
    if let Err(e) = std::fs::write(pid_file, format!("{pid}\n")) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(BootFailure::Other(e.into()));
    }
    note_vm(pid, role, console);
    let child_cell = std::sync::Mutex::new(&mut child);
    let exited = || {
        child_cell
            .lock()
            .ok()
            .and_then(|mut c| c.try_wait().ok().flatten())
            .map(|st| st.to_string())
    };
    let res = wait_ready(role, console, exited, boot_timeout).await;
    if res.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        forget_vm(pid);
    }
    res.map(|()| port)
}

/// Kills a guest [`boot_detached`] started, by the PID in `pid_file`, if that PID
/// is still a QEMU of kdelta's whose command line names `marker` (the guest's
/// folder). True when a QEMU was killed.
pub fn kill_detached(pid_file: &Path, marker: &str) -> bool {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    else {
        return false;
    };
    let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let c = String::from_utf8_lossy(&c);
            c.contains("qemu-system") && c.contains(marker)
        })
        .unwrap_or(false);
    forget_vm(pid);
    if !ours {
        return false;
    }
    // SAFETY: kill(2) on a PID whose command line we just checked.
    let killed = unsafe { libc::kill(pid as i32, libc::SIGKILL) } == 0;
    // It is not our child (kdelta guest up has exited): wait for it to go.
    for _ in 0..50 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    killed
}

/// QEMU with the guest's kernel, initramfs and disks, its serial console in a
/// file, and restricted user networking: SSH forwarded from 127.0.0.1:`port`,
/// nothing else.
fn qemu_command(
    spec: &QemuSpec,
    image: &KernelImage,
    media: &Media,
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
        .args(["-display", "none", "-monitor", "none", "-nodefaults"]);
    if !media.reboot {
        cmd.arg("-no-reboot");
    }
    cmd.arg("-kernel")
        .arg(&image.image)
        .arg("-initrd")
        .arg(&media.initramfs)
        .args(["-append", &kernel_cmdline(spec)]);
    for (file, format, readonly) in &media.disks {
        cmd.arg("-drive").arg(format!(
            "file={},if=virtio,format={format}{}",
            file.display().to_string().replace(',', ",,"),
            if *readonly { ",readonly=on" } else { "" }
        ));
    }
    cmd.arg("-netdev")
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
/// when QEMU exits (`exited` says how), the kernel panics, or the time is up.
async fn wait_ready(
    role: Role,
    console: &Path,
    exited: impl Fn() -> Option<String>,
    boot_timeout: Duration,
) -> Result<(), BootFailure> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(console).unwrap_or_default();
        if text.contains("KDELTA-READY") {
            return Ok(());
        }
        if let Some(st) = exited() {
            let qlog =
                std::fs::read_to_string(console.with_extension("qemu.log")).unwrap_or_default();
            return Err(BootFailure::Crashed(anyhow!(
                "{role}: QEMU exited during boot ({st}); console tail:\n{}\n{}",
                tail(&text, 12),
                qlog.trim()
            )));
        }
        // A guest that may reboot would loop on a panic: say it at once.
        if text.contains("Kernel panic - not syncing") {
            return Err(BootFailure::Crashed(anyhow!(
                "{role}: the guest's kernel panicked during boot (console {}):\n{}",
                console.display(),
                tail(&text, 12)
            )));
        }
        if start.elapsed() > boot_timeout {
            return Err(BootFailure::Other(anyhow!(
                "{role}: the guest did not come up in {}s (console {}):\n{}",
                boot_timeout.as_secs(),
                console.display(),
                tail(&text, 12)
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;
    use std::cell::Cell;

    /// A boot that crashes is tried once more with its console kept; a second crash,
    /// or a failure that is no crash, ends it.
    #[tokio::test]
    async fn a_crashed_boot_is_tried_once_more_and_its_console_kept() {
        let dir = tempfile::tempdir().unwrap();
        let console = dir.path().join("console.log");
        let tries = Cell::new(0);
        let cleaned = Cell::new(0);
        let r = retry_crashed(
            Role::Candidate,
            &console,
            || {
                tries.set(tries.get() + 1);
                let n = tries.get();
                let c = console.clone();
                async move {
                    std::fs::write(&c, format!("boot {n}\n")).unwrap();
                    if n == 1 {
                        Err(BootFailure::Crashed(anyhow!("Kernel panic - not syncing")))
                    } else {
                        Ok(2222)
                    }
                }
            },
            || cleaned.set(cleaned.get() + 1),
        )
        .await
        .unwrap();
        assert_eq!((r, tries.get(), cleaned.get()), ((2222, true), 2, 1));
        let kept = std::fs::read_to_string(first_boot_console(&console)).unwrap();
        assert_eq!(kept, "boot 1\n");
        assert_eq!(std::fs::read_to_string(&console).unwrap(), "boot 2\n");

        // Crashing every time: BOOT_ATTEMPTS tries, the last error returned.
        tries.set(0);
        let e = retry_crashed(
            Role::Candidate,
            &console,
            || {
                tries.set(tries.get() + 1);
                let c = console.clone();
                async move {
                    std::fs::write(&c, "panic\n").unwrap();
                    Err::<u16, _>(BootFailure::Crashed(anyhow!("panicked again")))
                }
            },
            || {},
        )
        .await
        .unwrap_err();
        assert_eq!(tries.get(), BOOT_ATTEMPTS);
        assert!(e.to_string().contains("panicked again"), "{e}");

        // A timeout is not retried.
        tries.set(0);
        let e = retry_crashed(
            Role::Candidate,
            &console,
            || {
                tries.set(tries.get() + 1);
                async { Err::<u16, _>(BootFailure::Other(anyhow!("did not come up"))) }
            },
            || {},
        )
        .await
        .unwrap_err();
        assert_eq!(tries.get(), 1);
        assert!(e.to_string().contains("did not come up"));
    }
}
