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

// ---- PLACEHOLDER until the `netlink` branch lands (it owns this file) ----
pub fn allocate(
    _tx: &rusqlite::Transaction,
    _inst: &crate::Instance,
    _container_id: &str,
    req: &NetworkRequest,
) -> Result<(), NetworkError> {
    match req.mode.as_str() {
        "none" | "host" => Ok(()),
        _ => Err(NetworkError::Invalid("networking: not implemented".into())),
    }
}
pub fn attach(
    _inst: &crate::Instance,
    _store: &mut crate::store::Store,
    _id: &str,
    _pid: i32,
) -> Result<(), NetworkError> {
    Err(NetworkError::Invalid("networking: not implemented".into()))
}
pub fn detach(
    _inst: &crate::Instance,
    _store: &mut crate::store::Store,
    _id: &str,
) -> Result<(), NetworkError> {
    Ok(())
}
pub fn etc_hosts(
    hostname: &str,
    name: &str,
    own_ips: &[std::net::Ipv4Addr],
    add_hosts: &[String],
) -> String {
    let _ = (name, own_ips, add_hosts);
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    )
}
pub fn resolv_conf(dns: &[String], host_resolv: &str) -> String {
    let _ = dns;
    host_resolv.to_string()
}
pub fn prepare(
    _inst: &crate::Instance,
    _store: &mut crate::store::Store,
    _req: &NetworkRequest,
) -> Result<(), NetworkError> {
    Ok(())
}
pub fn detach_rows(_tx: &rusqlite::Transaction, _container_id: &str) -> Result<(), NetworkError> {
    Ok(())
}
#[derive(Debug, Clone)]
pub struct EndpointInfo {
    pub network_name: String,
    pub network_id: String,
    pub endpoint_id: String,
    pub ip: std::net::Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: std::net::Ipv4Addr,
    pub mac: String,
}
pub fn container_networks(
    _store: &crate::store::Store,
    _id: &str,
) -> Result<Vec<EndpointInfo>, NetworkError> {
    Ok(vec![])
}
pub fn container_ports(
    _store: &crate::store::Store,
    _id: &str,
) -> Result<Vec<String>, NetworkError> {
    Ok(vec![])
}
