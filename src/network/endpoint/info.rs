//! What `ps` and `inspect` show of a container's endpoints: its networks
//! with their addresses, and its published ports.

use super::plug::network_of;
use crate::network::driver::DriverKind;
use crate::network::names::DEFAULT_NETWORK;
use crate::network::{bridge, NetworkError};
use crate::store::networks as rows;
use crate::store::Store;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// One of a container's networks, for `ps` and `inspect`.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointInfo {
    pub network_name: String,
    pub network_id: String,
    pub endpoint_id: String,
    pub ifname: String,
    /// IPv4 address, prefix length and gateway: 0.0.0.0, 0 and 0.0.0.0 on
    /// an IPv6-only network (see `has_ipv4`).
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// Whether minirt's DNS responder serves this network (a user-defined
    /// bridge network: it listens on the bridge's gateway address).
    pub served_by_dns: bool,
    /// On a network with IPv6: address, prefix length and gateway.
    pub ip6: Option<(Ipv6Addr, u8, Ipv6Addr)>,
}

impl EndpointInfo {
    /// `testbr=10.88.0.2` (`testbr=10.88.0.2,fd00:1::2` with IPv6), the `ps`
    /// NETWORKS column.
    pub fn ps_label(&self) -> String {
        match (self.has_ipv4(), self.ip6) {
            (true, Some((ip6, ..))) => format!("{}={},{ip6}", self.network_name, self.ip),
            (false, Some((ip6, ..))) => format!("{}={ip6}", self.network_name),
            _ => format!("{}={}", self.network_name, self.ip),
        }
    }

    /// False on an IPv6-only network.
    pub(crate) fn has_ipv4(&self) -> bool {
        !self.ip.is_unspecified()
    }

    /// The IPv4 address as `inspect` shows it ("" on an IPv6-only network,
    /// like Docker's IPAddress).
    pub(crate) fn ip4(&self) -> String {
        match self.has_ipv4() {
            true => self.ip.to_string(),
            false => String::new(),
        }
    }

    /// The IPv4 gateway as `inspect` shows it ("" on an IPv6-only network).
    pub(crate) fn gateway4(&self) -> String {
        match self.has_ipv4() {
            true => self.gateway.to_string(),
            false => String::new(),
        }
    }
}

/// The container's networks (for `ps` NETWORKS and `inspect`
/// NetworkSettings.Networks), in interface order.
pub fn container_networks(
    store: &Store,
    container_id: &str,
) -> Result<Vec<EndpointInfo>, NetworkError> {
    let c = store.conn();
    let mut out = vec![];
    for ep in rows::endpoints_of_container(c, container_id)? {
        let net = network_of(c, &ep)?;
        out.push(endpoint_info(&ep, &net)?);
    }
    Ok(out)
}

/// Every container's networks by container id, as [`container_networks`]
/// gives them one by one: two queries whatever the number of containers
/// (`ps` with 1000 containers made 2000 before).
pub fn networks_by_container(
    store: &Store,
) -> Result<HashMap<String, Vec<EndpointInfo>>, NetworkError> {
    let c = store.conn();
    let nets: HashMap<String, rows::NetworkRow> = rows::list_networks(c)?
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect();
    let mut out: HashMap<String, Vec<EndpointInfo>> = HashMap::new();
    for ep in rows::all_endpoints(c)? {
        let net = nets.get(&ep.network_id).ok_or_else(|| {
            NetworkError::NotFound(format!("network {} not found", ep.network_id))
        })?;
        let info = endpoint_info(&ep, net)?;
        out.entry(ep.container_id).or_default().push(info);
    }
    Ok(out)
}

fn endpoint_info(
    ep: &rows::EndpointRow,
    net: &rows::NetworkRow,
) -> Result<EndpointInfo, NetworkError> {
    let (prefix_len, gateway) = match bridge::addressing4(net)? {
        Some((subnet, gateway)) => (subnet.prefix_len(), gateway),
        None => (0, Ipv4Addr::UNSPECIFIED),
    };
    Ok(EndpointInfo {
        network_name: net.name.clone(),
        network_id: net.id.clone(),
        endpoint_id: ep.id.clone(),
        ifname: ep.ifname.clone(),
        ip: ep.ip,
        prefix_len,
        gateway,
        mac: ep.mac.clone(),
        ip6: match (bridge::addressing6(net)?, ep.ip6) {
            (Some((s6, gw6)), Some(ip6)) => Some((ip6, s6.prefix_len(), gw6)),
            _ => None,
        },
        served_by_dns: net.name != DEFAULT_NETWORK
            && matches!(
                DriverKind::of(net),
                Ok(DriverKind::Bridge | DriverKind::Overlay)
            ),
    })
}

/// `0.0.0.0:8080->80/tcp` for each published port.
pub fn container_ports(store: &Store, container_id: &str) -> Result<Vec<String>, NetworkError> {
    Ok(
        rows::port_bindings_of_container(store.conn(), container_id)?
            .iter()
            .map(port_text)
            .collect(),
    )
}

/// Every container's published ports by container id, as
/// [`container_ports`] gives them one by one: one query for all (`ps`).
pub fn ports_by_container(store: &Store) -> Result<HashMap<String, Vec<String>>, NetworkError> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for b in rows::all_port_bindings_by_container(store.conn())? {
        let text = port_text(&b);
        out.entry(b.container_id).or_default().push(text);
    }
    Ok(out)
}

fn port_text(b: &rows::PortBindingRow) -> String {
    format!(
        "{}:{}->{}/{}",
        b.host_ip, b.host_port, b.container_port, b.proto
    )
}
