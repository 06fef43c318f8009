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
