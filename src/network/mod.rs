//! Networks, endpoints, IPAM, the bridge driver, the nftables firewall and
//! port mapping. Contract used by the run path (owned by the network work):
//!
//! - `NetworkRequest`: what `run` asked for (--net, --ip, --dns, --add-host, -p)
//! - `allocate(tx, inst, container_id, hostname, &req)`: inside the store
//!   transaction that creates the container: endpoints (IP, MAC, veth names)
//!   and port bindings, validated, UNIQUE-guarded
//! - `attach(inst, store, container_id, pid)`: after clone, before the child is
//!   released: bridges ensured, veth into the child's netns, addresses, routes,
//!   firewall rules
//! - `etc_files(...)`: /etc/hosts and /etc/resolv.conf for the container
//! - `detach(inst, store, container_id)`: teardown, keeps going past errors,
//!   releases addresses and port bindings

pub mod firewall;
pub mod ipam;
pub mod nft;
pub mod pool;
pub mod portspec;

use serde::{Deserialize, Serialize};

pub mod etc;
pub mod names;
pub mod netlink;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Netlink(String),
    #[error("{0}")]
    Firewall(String),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// The network part of a container's configuration, as the user asked.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NetworkRequest {
    /// "none", "host", "bridge" (the default network) or a network name.
    pub mode: String,
    /// Additional networks beyond the first (not used by `run` today).
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub add_hosts: Vec<String>,
    /// Raw -p specs.
    #[serde(default)]
    pub publish: Vec<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
}
