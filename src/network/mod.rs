//! Networks, endpoints, IPAM, the network drivers (driver.rs: bridge,
//! macvlan), the firewall backends (fwbackend.rs: nftables, none) and port
//! mapping. The run path's contract (all in this module's namespace):
//!
//! - `NetworkRequest`: what `run` asked for (--net, --ip, --dns, --add-host, -p)
//! - `prepare(inst, store, &req)`: before the container's transaction; makes
//!   the default network `bridge` (row, bridge, rules) when the request uses it
//! - `allocate(tx, inst, container_id, &req)`: inside the store transaction
//!   that inserts the container row: endpoint (IP, MAC, veth name, eth0) and
//!   port bindings, validated, UNIQUE-guarded. Should `prepare` not have run,
//!   the default network's row is inserted here (no device inside the
//!   transaction; `attach` makes the bridge since it ensures bridges anyway)
//! - `detach_rows(tx, container_id)`: releases addresses and ports in a
//!   transaction (restart of a stopped container, before `allocate`)
//! - `attach(inst, store, container_id, pid)`: after clone, before the child is
//!   released: bridges and base firewall ensured (re-created if missing),
//!   anti-spoofing elements (antispoof.rs), veths into the child's netns,
//!   addresses, routes, sysctls, port mappings; undone on failure
//! - `etc_files(store, id, hostname, name, &req)` (or the pure `etc_hosts` /
//!   `resolv_conf`): /etc/hosts and /etc/resolv.conf contents for the container
//! - `detach(inst, store, container_id)`: teardown, keeps going past errors,
//!   releases addresses and port bindings; idempotent
//! - `container_networks` / `container_ports`: for `ps` and `inspect`

pub mod antispoof;
pub mod desired;
pub mod driver;
pub mod firewall;
pub mod fwbackend;
pub mod guard;
pub mod ipam;
pub mod ipam6;
pub mod macvlan;
pub mod nfnl;
pub mod nft;
pub(crate) mod nftgen;
pub mod overlay;
pub mod pool;
pub mod portspec;

use serde::{Deserialize, Serialize};

pub mod bridge;
mod closer;
pub mod dns;
pub mod endpoint;
pub mod etc;
pub mod manage;
pub mod names;
pub mod netlink;
pub mod nlsock;
pub mod proxy6;
pub mod reconcile;
pub mod rules;
pub(crate) mod service;
#[cfg(test)]
mod testns;
pub mod undo;

pub use driver::{DriverKind, NetworkMode};
pub use endpoint::{
    allocate, attach, connect, container_networks, container_ports, detach, detach_exited,
    detach_many, detach_rows, disconnect, etc_files, networks_by_container, ports_by_container,
    prepare, EndpointInfo,
};
pub use etc::{etc_hosts, resolv_conf};
pub use manage::{ensure_default, CreateRequest};

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
    /// "none", "host", "bridge" (the default network) or a network name
    /// (see `NetworkMode`, `network_mode()`).
    pub mode: String,
    /// Additional networks beyond the first (not used by `run` today).
    #[serde(default)]
    pub ip: Option<String>,
    /// `--ip6`: the IPv6 address on the first network.
    #[serde(default)]
    pub ip6: Option<String>,
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

impl NetworkRequest {
    pub(crate) fn network_mode(&self) -> NetworkMode {
        NetworkMode::parse(&self.mode)
    }
}

impl From<netlink::NetlinkError> for NetworkError {
    fn from(e: netlink::NetlinkError) -> NetworkError {
        NetworkError::Netlink(e.to_string())
    }
}

/// What makes a past "both tables intact" verdict still valid. Pure.
pub(crate) fn checked_key(identity: &str, backend: &str, generation: u32, epoch: i64) -> String {
    format!("{identity} {backend} gen {generation} epoch {epoch}")
}

/// Restores minirt's firewall rules when someone else removed them; one
/// `nft list` when nothing is wrong. Returns whether a rebuild was needed.
pub(crate) fn heal(inst: &crate::Instance) -> Result<bool, NetworkError> {
    let store = crate::store::Store::open(&inst.db_path())?;
    if let Err(e) = endpoint::collect_dying_links(&store) {
        tracing::warn!("removing veths of exited containers: {e}");
    }
    // Both tables under the firewall lock: a plug or unplug in between
    // would otherwise look like damage (or be undone by a rebuild).
    let backend = fwbackend::for_instance(inst)?;
    let fw = rules::lock(inst)?;
    // Nothing to look at when nobody committed to nftables since the last
    // check found both tables intact (the kernel's generation is the same)
    // and the store wants the same (its firewall epoch, which every change
    // to networks, endpoints and port bindings moves, is the same): one
    // nfnetlink request and one row, where the checks below read every
    // endpoint and binding (about 15 ms of each command at 1000
    // containers). Both are read before the checks: a change in between
    // makes the saved key stale (one needless check), never a damaged
    // table taken for intact.
    let marker = inst.run_root.join("network.checked");
    let generation = nftgen::generation().ok();
    let key = match (
        generation,
        crate::store::networks::firewall_epoch(store.conn()),
    ) {
        (Some(g), Ok(e)) => Some(checked_key(&nftgen::host_identity(), backend.name(), g, e)),
        _ => None,
    };
    let healed = if key.is_some() && std::fs::read_to_string(&marker).ok() == key {
        drop(fw);
        false
    } else {
        let rebuilt =
            desired::snapshot(store.conn()).and_then(|want| backend.heal(&want, generation));
        let guarded = antispoof::heal(inst, store.conn(), generation);
        drop(fw);
        let healed = rebuilt? | guarded?;
        if let (false, Some(k)) = (healed, &key) {
            nftgen::save_marker(&marker, k);
        }
        healed
    };
    // While there are networks, the guardian restores a flushed table at
    // once instead of at the next command.
    if backend.name() == "nftables"
        && !crate::store::networks::list_networks(store.conn())?.is_empty()
    {
        guard::ensure(inst)?;
    }
    Ok(healed)
}
