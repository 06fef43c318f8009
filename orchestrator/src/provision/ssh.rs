//! The `ssh` provider: an existing host by SSH destination (`~/.ssh/config`, the
//! agent and ProxyJump work: kdelta drives the system `ssh`). Nothing to create,
//! nothing to remove but kdelta's own work folder there.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use super::Host;
use crate::exec::remote::ConnectSpec;
use crate::model::ProviderKind;
use crate::playbook::Become;
use crate::playbook::{HostSpec, KnownHostsPolicy, Provider};

/// An existing host reached by SSH.
pub fn ssh_host(spec: &HostSpec, control_dir: &Path, connect_timeout: u64) -> Result<Host> {
    let Provider::Ssh(t) = &spec.provider else {
        bail!("not an ssh host")
    };
    let address = t
        .destination
        .rsplit('@')
        .next()
        .unwrap_or(&t.destination)
        .to_string();
    Ok(Host {
        role: spec.role,
        provider: ProviderKind::Ssh,
        work_dir: "/tmp".into(),
        address,
        connect: ConnectSpec {
            role: spec.role,
            destination: t.destination.clone(),
            port: t.port,
            user: t.user.clone(),
            keyfile: t.identity_file.clone(),
            known_hosts_file: match &t.known_hosts {
                KnownHostsPolicy::File(f) => Some(f.clone()),
                _ => None,
            },
            accept_new: t.known_hosts == KnownHostsPolicy::AcceptNew,
            control_dir: control_dir.to_path_buf(),
            become_: Become::No,
            connect_timeout: Duration::from_secs(connect_timeout),
            retry_for: Duration::from_secs(connect_timeout * 2),
        },
    })
}
