//! The `lab` provider: network namespaces on this machine, each with its own sshd on
//! a veth link in 198.18.0.0/15 (the benchmarking range), per-run host and user keys
//! and a pinned known_hosts. Runtime knobs (net.* sysctls, nftables, qdisc, offloads,
//! MTU) are applied per namespace. Every created resource is recorded in a state file
//! under /run/kdelta/labs/ before it is created, so `kdelta lab down --all` can clear
//! the leftovers of a killed run.

use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::Host;
use crate::exec::remote::ConnectSpec;
use crate::model::{ProviderKind, Role};
use crate::playbook::Become;
use crate::playbook::{HostSpec, LabKnobs, Provider};

pub const STATE_DIR: &str = "/run/kdelta/labs";

/// A lab: what was created, for teardown.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LabState {
    pub id: String,
    pub dir: PathBuf,
    pub namespaces: Vec<String>,
    pub links: Vec<String>,
    pub sshd_pidfiles: Vec<PathBuf>,
}

impl LabState {
    fn state_file(&self) -> PathBuf {
        Path::new(STATE_DIR).join(format!("{}.json", self.id))
    }
    fn save(&self) -> Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(STATE_DIR)?;
        std::fs::write(self.state_file(), serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }
}

fn run_cmd(args: &[&str]) -> Result<String> {
    let Some((prog, rest)) = args.split_first() else {
        bail!("no command");
    };
    let out = std::process::Command::new(prog)
        .args(rest)
        .output()
        .with_context(|| format!("cannot run `{prog}` (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            crate::exec::shell::join(args),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ns_exec<'a>(ns: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    v
}

/// Picks a free /29 in 198.18.0.0/15 for this lab: .1/.2 baseline, .5/.6 candidate.
fn pick_block(id_seed: u64) -> Result<Ipv4Addr> {
    let used = run_cmd(&["ip", "-o", "-4", "addr", "show"]).unwrap_or_default();
    for i in 0..64u64 {
        let k = (id_seed.wrapping_add(i.wrapping_mul(7919))) % 16384;
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (k as u32) * 8;
        let a = Ipv4Addr::from(base);
        let probe = format!(" {}/", Ipv4Addr::from(base + 1));
        let probe2 = format!(" {}/", Ipv4Addr::from(base + 5));
        if !used.contains(&probe) && !used.contains(&probe2) {
            return Ok(a);
        }
    }
    bail!("no free address block in 198.18.0.0/15")
}

/// A lab id (six hex digits) and the seed of its address block: std's randomly
/// keyed hasher over the time and PID is random enough to keep labs apart.
fn new_id() -> (String, u64) {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(nanos);
    h.write_u32(std::process::id());
    let v = h.finish();
    (format!("{:06x}", v & 0xff_ffff), v)
}

fn ssh_keygen(path: &Path, comment: &str) -> Result<String> {
    run_cmd(&[
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        comment,
        "-f",
        &path.to_string_lossy(),
    ])
    .context("cannot generate an SSH key (is openssh-client installed?)")?;
    let pub_key = std::fs::read_to_string(path.with_extension("pub"))?;
    Ok(pub_key.trim().to_string())
}

fn sshd_path() -> Result<PathBuf> {
    for p in ["/usr/sbin/sshd", "/usr/bin/sshd", "/sbin/sshd"] {
        if Path::new(p).is_file() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!("sshd not found: the lab needs openssh-server (apt-get install -y openssh-server)")
}

/// Checks that the lab can be built here.
pub fn lab_preflight() -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("the lab provider needs root (network namespaces, veth links, sshd): run kdelta as root, or use provider: ssh");
    }
    sshd_path()?;
    run_cmd(&["ip", "netns", "list"])
        .context("`ip netns` does not work here (install iproute2)")?;
    Ok(())
}

/// What every host of one lab shares: its folder, the user key, the address block.
struct LabShared {
    id: String,
    dir: PathBuf,
    user_key: PathBuf,
    auth: PathBuf,
    known_hosts: PathBuf,
    block: u32,
}

/// Builds lab hosts for the roles that use the lab provider.
pub async fn lab_up(specs: &[&HostSpec], state: &mut LabState) -> Result<Vec<Host>> {
    lab_preflight()?;
    let (id, seed) = new_id();
    let dir = PathBuf::from(format!("/tmp/kd-{id}"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    state.id = id.clone();
    state.dir = dir.clone();
    state.save()?;
    std::fs::create_dir_all("/run/sshd").ok();
    let user_key = dir.join("id_ed25519");
    let user_pub = ssh_keygen(&user_key, &format!("kdelta-{id}"))?;
    let auth = dir.join("authorized_keys");
    std::fs::write(&auth, format!("{user_pub}\n"))?;
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600))?;
    let shared = LabShared {
        block: u32::from(pick_block(seed)?),
        known_hosts: dir.join("known_hosts"),
        id,
        dir,
        user_key,
        auth,
    };
    let mut kh = String::new();
    let mut hosts = Vec::new();
    for spec in specs {
        let Provider::Lab(knobs) = &spec.provider else {
            continue;
        };
        let (host, key_line) = lab_host(&shared, spec.role, knobs, state).await?;
        kh.push_str(&key_line);
        hosts.push(host);
    }
    std::fs::write(&shared.known_hosts, kh)?;
    Ok(hosts)
}

/// One lab host: a namespace with a veth link, its knobs, its own sshd. Returns
/// the host and its known_hosts line.
async fn lab_host(
    lab: &LabShared,
    role: Role,
    knobs: &LabKnobs,
    state: &mut LabState,
) -> Result<(Host, String)> {
    let id = &lab.id;
    let short = match role {
        Role::Baseline => "b",
        Role::Candidate => "c",
    };
    let ns = format!("kd-{id}-{short}");
    let link = format!("kd{id}{short}");
    let offset = match role {
        Role::Baseline => 0,
        Role::Candidate => 4,
    };
    let outer = Ipv4Addr::from(lab.block + offset + 1);
    let inner = Ipv4Addr::from(lab.block + offset + 2);
    // Recorded before it exists: teardown removes what a failure left half-made.
    state.namespaces.push(ns.clone());
    state.links.push(link.clone());
    state.save()?;
    run_cmd(&["ip", "netns", "add", &ns])?;
    run_cmd(&[
        "ip", "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ])?;
    run_cmd(&["ip", "addr", "add", &format!("{outer}/30"), "dev", &link])?;
    run_cmd(&["ip", "link", "set", &link, "up"])?;
    run_cmd(&ns_exec(
        &ns,
        &["ip", "addr", "add", &format!("{inner}/30"), "dev", "eth0"],
    ))?;
    run_cmd(&ns_exec(&ns, &["ip", "link", "set", "eth0", "up"]))?;
    run_cmd(&ns_exec(&ns, &["ip", "link", "set", "lo", "up"]))?;
    apply_knobs(&ns, &link, knobs)
        .with_context(|| format!("{role}: applying lab knobs in {ns}"))?;
    let host_key = lab.dir.join(format!("{short}_host_ed25519"));
    let host_pub = ssh_keygen(&host_key, &format!("kdelta-{id}-{role}"))?;
    let mut parts = host_pub.split_whitespace();
    let (kt, kb) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let key_line = format!("{inner} {kt} {kb}\n");
    start_sshd(lab, short, &ns, inner, &host_key, state)
        .await
        .with_context(|| format!("{role}: sshd in {ns}"))?;
    let host = Host {
        role,
        provider: ProviderKind::Lab,
        work_dir: "/tmp".into(),
        address: inner.to_string(),
        connect: ConnectSpec {
            role,
            destination: format!("root@{inner}"),
            port: Some(22),
            user: None,
            keyfile: Some(lab.user_key.clone()),
            known_hosts_file: Some(lab.known_hosts.clone()),
            accept_new: false,
            control_dir: lab.dir.clone(),
            become_: Become::No,
            connect_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(15),
        },
    };
    Ok((host, key_line))
}

/// The namespace's sshd, with its config, keys and home in the lab's folder; waits
/// until it answers.
async fn start_sshd(
    lab: &LabShared,
    short: &str,
    ns: &str,
    inner: Ipv4Addr,
    host_key: &Path,
    state: &mut LabState,
) -> Result<()> {
    let dir = &lab.dir;
    let pidfile = dir.join(format!("{short}_sshd.pid"));
    let cfg = dir.join(format!("{short}_sshd_config"));
    // A home of its own per lab host, as a separate machine would have: the
    // sessions do not run this machine's ~/.bashrc (a shell setup there — pyenv's
    // rehash lock, for one — is shared by every session and stalls them all once a
    // killed session leaves its lock behind).
    let home = dir.join(format!("{short}_home"));
    std::fs::create_dir_all(&home)?;
    std::fs::write(
        &cfg,
        format!(
            "Port 22\nListenAddress {inner}\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nUsePAM no\nStrictModes no\nMaxSessions 32\nMaxStartups 64\n\
             PrintMotd no\nAcceptEnv none\nPermitUserEnvironment no\nLogLevel ERROR\nSetEnv HOME={}\n",
            host_key.display(),
            pidfile.display(),
            lab.auth.display(),
            home.display()
        ),
    )?;
    state.sshd_pidfiles.push(pidfile);
    state.save()?;
    let sshd = sshd_path()?;
    run_cmd(&ns_exec(
        ns,
        &[
            &sshd.to_string_lossy(),
            "-f",
            &cfg.to_string_lossy(),
            "-E",
            &dir.join(format!("{short}_sshd.log")).to_string_lossy(),
        ],
    ))
    .context("sshd did not start")?;
    wait_tcp(inner, 22, Duration::from_secs(10))
        .await
        .with_context(|| format!("sshd does not answer on {inner}:22"))
}

fn apply_knobs(ns: &str, link: &str, k: &LabKnobs) -> Result<()> {
    for (key, val) in &k.sysctl {
        run_cmd(&ns_exec(
            ns,
            &["sysctl", "-q", "-w", &format!("{key}={val}")],
        ))?;
    }
    if let Some(mtu) = k.mtu {
        let m = mtu.to_string();
        run_cmd(&["ip", "link", "set", "dev", link, "mtu", &m])?;
        run_cmd(&ns_exec(
            ns,
            &["ip", "link", "set", "dev", "eth0", "mtu", &m],
        ))?;
    }
    for (feat, on) in &k.offloads {
        run_cmd(&ns_exec(
            ns,
            &[
                "ethtool",
                "-K",
                "eth0",
                feat,
                if *on { "on" } else { "off" },
            ],
        ))
        .with_context(|| format!("offload `{feat}` (see `ethtool -k` for names)"))?;
    }
    if let Some(q) = &k.qdisc {
        let mut args = vec!["tc", "qdisc", "replace", "dev", "eth0", "root"];
        args.extend(q.iter().map(String::as_str));
        run_cmd(&ns_exec(ns, &args))?;
    }
    if let Some(rules) = &k.nftables {
        run_cmd(&ns_exec(ns, &["nft", "-f", &rules.to_string_lossy()]))
            .with_context(|| format!("loading nftables ruleset {}", rules.display()))?;
    }
    Ok(())
}

async fn wait_tcp(addr: Ipv4Addr, port: u16, within: Duration) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        let c = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect((addr, port)),
        )
        .await;
        if let Ok(Ok(_)) = c {
            return Ok(());
        }
        if start.elapsed() > within {
            bail!("no answer within {}s", within.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removes everything a lab created; safe to call twice and on partial labs.
pub fn lab_down(state: &LabState) -> Vec<String> {
    let mut errors = Vec::new();
    for pf in &state.sshd_pidfiles {
        if let Ok(pid) = std::fs::read_to_string(pf) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
    }
    for ns in &state.namespaces {
        // Every process still in the namespace (servers, perf) goes too.
        if let Ok(pids) = run_cmd(&["ip", "netns", "pids", ns]) {
            for p in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                unsafe {
                    libc::kill(p, libc::SIGKILL);
                }
            }
        }
        if let Err(e) = run_cmd(&["ip", "netns", "del", ns]) {
            let text = e.to_string();
            if !text.contains("No such file") {
                errors.push(text);
            }
        }
    }
    for link in &state.links {
        let _ = run_cmd(&["ip", "link", "del", link]);
    }
    if !state.dir.as_os_str().is_empty() && state.dir.starts_with("/tmp") {
        let _ = std::fs::remove_dir_all(&state.dir);
    }
    if !state.id.is_empty() {
        let _ = std::fs::remove_file(state.state_file());
    }
    errors
}

/// Labs recorded in the state folder, and namespaces that look like kdelta's.
pub fn lab_list() -> (Vec<LabState>, Vec<String>) {
    let mut labs = Vec::new();
    if let Ok(rd) = std::fs::read_dir(STATE_DIR) {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_to_string(e.path()) {
                if let Ok(s) = serde_json::from_str::<LabState>(&t) {
                    labs.push(s);
                }
            }
        }
    }
    let stray = run_cmd(&["ip", "netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("kd-"))
        .filter(|n| !labs.iter().any(|l| l.namespaces.iter().any(|x| x == n)))
        .map(str::to_string)
        .collect();
    (labs, stray)
}

/// Tears down every recorded lab and stray kdelta namespace.
pub fn lab_down_all() -> (usize, Vec<String>) {
    let (labs, stray) = lab_list();
    let mut errors = Vec::new();
    let mut n = 0;
    for l in &labs {
        errors.extend(lab_down(l));
        n += 1;
    }
    for ns in stray {
        // A namespace left without a state file: derive what we can from its name.
        let id = ns
            .trim_start_matches("kd-")
            .split('-')
            .next()
            .unwrap_or("")
            .to_string();
        let short = ns.rsplit('-').next().unwrap_or("").to_string();
        let st = LabState {
            id: String::new(),
            dir: PathBuf::from(format!("/tmp/kd-{id}")),
            namespaces: vec![ns.clone()],
            links: vec![format!("kd{id}{short}")],
            sshd_pidfiles: vec![PathBuf::from(format!("/tmp/kd-{id}/{short}_sshd.pid"))],
        };
        errors.extend(lab_down(&st));
        n += 1;
    }
    (n, errors)
}
