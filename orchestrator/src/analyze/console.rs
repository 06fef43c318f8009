//! A guest's serial console read for the one thing a run needs from it: did the
//! kernel crash, and with what line. The console is text the kernel printed; a
//! KASAN report or a warning that the kernel survives is not a crash.

/// The first line of a kernel crash on `console` (a panic, an oops, a `BUG()`),
/// without its timestamp; `None` when the kernel printed none.
pub fn kernel_crash(console: &str) -> Option<String> {
    console
        .lines()
        .map(strip_timestamp)
        .find(|l| is_crash_line(l))
        .map(|l| l.chars().take(200).collect())
}

/// The crash on the console of a host folder (a guest's `console.log`), if any.
pub fn crash_in(host: &crate::rundir::HostDir) -> Option<String> {
    kernel_crash(&std::fs::read_to_string(host.console_log()).ok()?)
}

fn is_crash_line(line: &str) -> bool {
    // Not a bare "general protection fault": a user process's trap prints that too
    // (`traps: foo[123] general protection fault ip:…`); the kernel's own carries
    // its oops count, seen below.
    const MARKERS: [&str; 5] = [
        "Kernel panic - not syncing",
        "Oops:",
        "kernel BUG at ",
        "BUG: unable to handle",
        "BUG: kernel NULL pointer dereference",
    ];
    // `invalid opcode: 0000 [#1] SMP`: an oops of any kind carries its count.
    let oops_count = line.contains(" [#") && line.contains("] ");
    MARKERS.iter().any(|m| line.contains(m)) || oops_count
}

/// `[   12.345678] text` → `text` (the kernel's timestamp, when it prints one).
fn strip_timestamp(line: &str) -> &str {
    let t = line.trim_start();
    match t.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((stamp, rest)) if stamp.trim().parse::<f64>().is_ok() => rest.trim_start(),
        _ => t.trim_end(),
    }
    .trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_an_interrupt_is_named_by_its_first_line() {
        let c = "KDELTA-READY 6.12.118+deb12-amd64\n/ # \n\
                 [   41.203311] Oops: general protection fault, probably for non-canonical address 0xdead: 0000 [#1] PREEMPT SMP NOPTI\n\
                 [   41.204000] RIP: 0010:__x86_return_thunk+0x0/0x10\n\
                 [   41.210000] Kernel panic - not syncing: Fatal exception in interrupt\n";
        assert_eq!(
            kernel_crash(c).as_deref(),
            Some("Oops: general protection fault, probably for non-canonical address 0xdead: 0000 [#1] PREEMPT SMP NOPTI")
        );
    }

    #[test]
    fn older_oops_formats_and_bare_panics_count() {
        assert!(kernel_crash(
            "[ 3.1] BUG: kernel NULL pointer dereference, address: 0000000000000008\n"
        )
        .is_some());
        assert!(kernel_crash("invalid opcode: 0000 [#1] SMP PTI\n").is_some());
        assert!(
            kernel_crash("Kernel panic - not syncing: VFS: Unable to mount root fs\n").is_some()
        );
        assert!(kernel_crash("[  9.000000] kernel BUG at mm/slub.c:435!\n").is_some());
        assert!(kernel_crash(
            "general protection fault, probably for non-canonical address 0x1: 0000 [#1] SMP\n"
        )
        .is_some());
    }

    #[test]
    fn reports_the_kernel_survives_are_not_crashes() {
        let c = "[ 5.0] BUG: KASAN: slab-out-of-bounds in foo+0x1/0x2\n\
                 [ 6.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [perf:77]\n\
                 [ 7.0] WARNING: CPU: 1 PID: 9 at net/core/dev.c:1 bar+0x3/0x4\n\
                 [ 8.0] traps: ffmpeg[412] general protection fault ip:7f00 sp:7ffe error:0 in libc.so.6\n\
                 KDELTA-READY 6.1.0-57-amd64\n";
        assert_eq!(kernel_crash(c), None);
        assert_eq!(kernel_crash(""), None);
    }
}
