//! The scripts that run on a host around one repeat: start perf record (and perf
//! stat, and the workload's server) in the background, stop them, convert the
//! recording with `perf script`, collect the counts. Each runs in the run's work
//! folder, under `setsid` (so the whole process group can be signalled) and under
//! `timeout` (so it ends even when the connection to kdelta drops).

use crate::exec::shell::quote;
use crate::playbook::CaptureSpec;

/// Starts perf record (and perf stat) in the background; fails fast if perf dies.
pub fn start_script(
    work: &str,
    repeat: u32,
    cap: &CaptureSpec,
    bound_secs: u64,
    server: Option<&str>,
) -> String {
    let w = quote(work);
    let mut s = format!("set -e\nmkdir -p {w}\ncd {w}\n");
    if let Some(server) = server {
        s.push_str(&format!(
            "setsid timeout -k 5 {bound_secs} sh -c {} > server-{repeat}.log 2>&1 < /dev/null &\necho $! > server.pid\n",
            quote(server)
        ));
    }
    let cg = cap.call_graph.perf_args();
    let ev = cap
        .event
        .as_ref()
        .map(|e| format!(" -e {}", quote(e)))
        .unwrap_or_default();
    // No build-ids: perf script runs on the same host, and collecting them at exit
    // takes tens of seconds on a busy capture.
    // No workload for perf record: it records system-wide until SIGTERM, which it
    // handles by writing the file (SIGINT is ignored by background jobs of sh).
    s.push_str(&format!(
        "setsid timeout -k 10 {bound_secs} perf record -a {cg} -F {f}{ev} --no-buildid --no-buildid-cache -o perf-{repeat}.data > perf-record-{repeat}.log 2>&1 < /dev/null &\necho $! > perf.pid\n",
        f = cap.frequency
    ));
    if cap.stat {
        // perf stat prints its counts when its workload ends: stop it by ending `sleep`.
        s.push_str(&format!(
            "setsid timeout -k 10 {bound_secs} perf stat -a -o perf-stat-{repeat}.txt -- sleep {bound_secs} > /dev/null 2>&1 < /dev/null &\necho $! > stat.pid\n"
        ));
    }
    // perf writes its header at once; wait for it, and report why it died if it did.
    s.push_str(&format!(
        "i=0\nwhile [ $i -lt 50 ]; do\n  if ! kill -0 $(cat perf.pid) 2>/dev/null; then echo 'perf record exited at start:' >&2; cat perf-record-{repeat}.log >&2; exit 3; fi\n  [ -s perf-{repeat}.data ] && break\n  sleep 0.1; i=$((i+1))\ndone\n"
    ));
    s
}

/// Exit code of [`stop_script`] when perf record was no longer running when it
/// came to stop it (its log's tail on stderr).
pub const PERF_DIED: i32 = 4;

/// Exit code of [`stop_script`] when the work folder's filesystem filled up during
/// the recording (the folder and its free space on stderr). The cut-short
/// recording is removed, so the host has its space back.
pub const NO_SPACE: i32 = 5;

/// Stops perf record (SIGTERM to its group: it writes the file and exits), perf stat
/// (by ending its `sleep`) and the server; waits for them, then kills what is left.
pub fn stop_script(work: &str, repeat: u32) -> String {
    let w = quote(work);
    format!(
        r#"cd {w} || exit 0
alive() {{ st=$(sed 's/.*) //' /proc/$1/stat 2>/dev/null | cut -c1); [ -n "$st" ] && [ "$st" != Z ]; }}
# perf record must still be running: if not, something killed it (OOM, a person,
# a crash) and this repeat's profile is cut short.
died=0
[ -f perf.pid ] && ! alive $(cat perf.pid) && died=1
[ -f perf.pid ] && kill -s TERM -- -$(cat perf.pid) 2>/dev/null
if [ -f stat.pid ]; then
  # The `sleep` of perf stat's group, found by one awk over every /proc/PID/stat
  # (a process per PID costs seconds under TCG): the name is between the first
  # `(` and the last `)`, the process group is the third field after it.
  for p in $(cat /proc/[0-9]*/stat 2>/dev/null | awk -v pg="$(cat stat.pid)" '{{ o = index($0, "("); c = 0; s = $0; while ((j = index(substr(s, c + 1), ")")) > 0) c += j; if (substr(s, o + 1, c - o - 1) == "sleep") {{ split(substr(s, c + 2), f, " "); if (f[3] == pg) print $1 }} }}'); do
    kill -TERM $p 2>/dev/null
  done
fi
i=0
while [ $i -lt 300 ]; do
  busy=0
  for f in perf.pid stat.pid; do [ -f $f ] && alive $(cat $f) && busy=1; done
  [ $busy = 0 ] && break
  sleep 0.1; i=$((i+1))
done
for f in perf.pid stat.pid; do [ -f $f ] && kill -s KILL -- -$(cat $f) 2>/dev/null; rm -f $f; done
if [ -f server.pid ]; then kill -s TERM -- -$(cat server.pid) 2>/dev/null; sleep 0.1; kill -s KILL -- -$(cat server.pid) 2>/dev/null; rm -f server.pid; fi
# A full filesystem: perf's own message may be lost with it, so the free space says it too.
free=$(df -Pk . 2>/dev/null | awk 'NR == 2 {{ print $4 }}')
if grep -qi 'no space left' perf-record-{repeat}.log 2>/dev/null || [ "${{free:-1024}}" -lt 1024 ]; then
  echo "$(pwd): $(df -Pk . | awk 'NR == 2 {{ printf "%d KiB free of %d KiB on %s", $4, $2, $6 }}')" >&2
  tail -n 3 perf-record-{repeat}.log >&2 2>/dev/null
  rm -f perf-{repeat}.data
  exit {NO_SPACE}
fi
if [ $died = 1 ]; then tail -n 5 perf-record-{repeat}.log >&2; exit {PERF_DIED}; fi
[ -s perf-{repeat}.data ] || {{ echo 'perf record wrote no data' >&2; cat perf-record-{repeat}.log >&2; exit 3; }}
true
"#
    )
}

/// Converts one repeat's recording to text, with its repeat marker, compressed on
/// the host when it has zstd.
///
/// The text starts with the marker line, no blank line before it: a file whose first
/// line is blank makes inferno's collapse-perf (0.12.8) panic, and the blank line the
/// previous repeat's text ends with already separates the frames.
///
/// Symbols come from a copy of /proc/kallsyms (`--kallsyms`): as root without a
/// vmlinux, perf reads /proc/kcore next to /proc/kallsyms and replaces the module
/// maps by kcore's, so module functions print as `[kernel.kallsyms]`; from a copy
/// away from /proc it splits kallsyms by its `[module]` tags and prints
/// `netem_enqueue+0x14d ([sch_netem])` — the module map the attribution reads
/// (same symbols either way: checked on a Debian 6.1 guest). A copy whose addresses
/// are hidden (kptr_restrict: its text symbols at 0) would resolve nothing: then
/// perf is left to itself.
pub fn script_script(work: &str, repeat: u32, remote_zstd: bool) -> String {
    let w = quote(work);
    let compress = if remote_zstd { " | zstd -q -c -3" } else { "" };
    format!(
        "cd {w}\nks=''; if cat /proc/kallsyms > kallsyms 2>/dev/null && grep -m 1 ' [Tt] ' kallsyms | grep -qv '^0*[[:space:]]'; then ks='--kallsyms kallsyms'; fi\n{{ echo \"# kdelta-repeat: {repeat}\"; perf script -i perf-{repeat}.data --no-inline $ks 2>>perf-script.err || perf script -i perf-{repeat}.data $ks 2>>perf-script.err; echo; }}{compress}\n"
    )
}

pub fn stat_collect_script(work: &str, repeat: u32) -> String {
    format!(
        "cd {}\necho \"# kdelta-repeat: {repeat}\"; cat perf-stat-{repeat}.txt 2>/dev/null; true\n",
        quote(work)
    )
}

pub fn server_log_script(work: &str, repeat: u32) -> String {
    format!("cat {}/server-{repeat}.log 2>/dev/null; true", quote(work))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: the text of each repeat began with a blank line, so a decompressed
    /// perf.script.zst did too. Runs the script with a stand-in `perf` and checks the
    /// two repeats' texts, concatenated as the run appends them, start with the marker
    /// and still fold as two repeats.
    #[test]
    fn script_text_starts_with_the_marker_not_a_blank_line() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("perf");
        std::fs::write(
            &fake,
            "#!/bin/sh\nprintf 'cmd 1 [000] 1.0: 1 cpu-clock: \\n\\tffffffff81000001 tcp_ack+0x1 ([kernel.kallsyms])\\n\\n'\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut text = String::new();
        for rep in 1..=2 {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(script_script(&dir.path().display().to_string(), rep, false))
                .env("PATH", &path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            text.push_str(&String::from_utf8(out.stdout).unwrap());
        }
        assert!(
            text.starts_with("# kdelta-repeat: 1\ncmd 1 [000]"),
            "{text:?}"
        );
        let p = crate::analyze::fold::fold_str(&text);
        assert_eq!((p.repeats, p.samples), (2, 2), "{text:?}");
    }

    /// Issue 17: perf script reads a copy of /proc/kallsyms, so module functions keep
    /// their `[module]` (from /proc/kallsyms itself perf takes kcore's maps and
    /// prints them as `[kernel.kallsyms]`) — unless the copy's addresses are hidden.
    #[test]
    fn perf_script_reads_a_copy_of_kallsyms_when_it_has_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("perf");
        std::fs::write(&fake, "#!/bin/sh\necho \"$@\" > args\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script_script(&dir.path().display().to_string(), 1, false))
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
        let copy = std::fs::read_to_string(dir.path().join("kallsyms")).unwrap_or_default();
        let visible = copy
            .lines()
            .find(|l| l.contains(" T ") || l.contains(" t "))
            .is_some_and(|l| !l.starts_with("0000000000000000"));
        assert_eq!(args.contains("--kallsyms kallsyms"), visible, "{args}");
    }
}
