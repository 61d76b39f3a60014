//! The container's /etc/hosts and /etc/resolv.conf, from its endpoints.

use super::info::container_networks;
use crate::network::{etc, NetworkError, NetworkRequest};
use crate::store::Store;

/// The container's /etc/hosts and /etc/resolv.conf contents (the caller
/// bind-mounts them); the host's /etc/resolv.conf is read here.
pub fn etc_files(
    store: &Store,
    container_id: &str,
    hostname: &str,
    name: &str,
    req: &NetworkRequest,
) -> Result<(String, String), NetworkError> {
    let nets = container_networks(store, container_id)?;
    let ips: Vec<std::net::IpAddr> = nets
        .iter()
        .flat_map(|e| {
            let ip4 = e.has_ipv4().then_some(e.ip.into());
            ip4.into_iter().chain(e.ip6.map(|(ip6, ..)| ip6.into()))
        })
        .collect();
    let host_resolv =
        std::fs::read_to_string(crate::network::dns::host_resolv_conf()).unwrap_or_default();
    // On a user-defined bridge network the responder on the gateway answers
    // (it knows the peers and forwards the rest), unless --dns says otherwise.
    let dns = match nets.first() {
        Some(n) if req.dns.is_empty() && n.served_by_dns => {
            // Both families: the responder listens on either gateway.
            let gw4 = n.has_ipv4().then(|| n.gateway.to_string());
            gw4.into_iter()
                .chain(n.ip6.map(|(_, _, gw6)| gw6.to_string()))
                .collect()
        }
        _ => req.dns.clone(),
    };
    Ok((
        etc::etc_hosts(hostname, name, &ips, &req.add_hosts),
        etc::resolv_conf(&dns, &host_resolv),
    ))
}
