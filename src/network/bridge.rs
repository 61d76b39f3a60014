//! The bridge driver: a network is a Linux bridge plus its firewall rules; an
//! endpoint is a veth pair whose peer lives in the container's netns.

use super::netlink::{self, Netlink, Netns};
use super::undo::Undo;
use super::{ipam, rules, NetworkError};
use crate::store::networks::{EndpointRow, NetworkRow, PortBindingRow};
use crate::Instance;
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::rc::Rc;

/// The netlink socket of minirt's own (host) network namespace.
pub fn host_netlink() -> Result<Rc<Netlink>, NetworkError> {
    Ok(Rc::new(Netlink::open()?))
}

/// Subnet and gateway of a stored network.
pub fn addressing(net: &NetworkRow) -> Result<(Ipv4Net, Ipv4Addr), NetworkError> {
    let subnet: Ipv4Net = net.subnet.parse().map_err(|_| {
        NetworkError::Invalid(format!(
            "network {} has a bad subnet {:?} in the store",
            net.name, net.subnet
        ))
    })?;
    let gw: Ipv4Addr = net.gateway.parse().map_err(|_| {
        NetworkError::Invalid(format!(
            "network {} has a bad gateway {:?} in the store",
            net.name, net.gateway
        ))
    })?;
    Ok((subnet, gw))
}

/// IPv6 subnet and gateway of a stored network, None when it has no IPv6.
pub fn addressing6(net: &NetworkRow) -> Result<Option<(Ipv6Net, Ipv6Addr)>, NetworkError> {
    if net.subnet6.is_empty() {
        return Ok(None);
    }
    let bad = |what: &str, v: &str| {
        NetworkError::Invalid(format!(
            "network {} has a bad IPv6 {what} {v:?} in the store",
            net.name
        ))
    };
    let subnet = net
        .subnet6
        .parse()
        .map_err(|_| bad("subnet", &net.subnet6))?;
    let gw = net
        .gateway6
        .parse()
        .map_err(|_| bad("gateway", &net.gateway6))?;
    Ok(Some((subnet, gw)))
}

/// Creates the network's bridge (gateway address, MTU, pinned MAC, up), its
/// firewall rules and sysctls. Refuses when the device already exists.
pub fn create(
    nl: &Rc<Netlink>,
    inst: &Instance,
    net: &NetworkRow,
    undo: &mut Undo,
) -> Result<(), NetworkError> {
    if nl.link(&net.bridge)?.is_some() {
        return Err(NetworkError::Conflict(format!(
            "bridge name {} is already in use by a device on this host",
            net.bridge
        )));
    }
    ensure(nl, inst, net, undo)
}

/// Makes sure the network's bridge and rules exist (re-created when missing,
/// e.g. after a reboot); everything it creates is registered in `undo`.
pub fn ensure(
    nl: &Rc<Netlink>,
    inst: &Instance,
    net: &NetworkRow,
    undo: &mut Undo,
) -> Result<(), NetworkError> {
    let (subnet, gw) = addressing(net)?;
    let new_table = rules::ensure_base(inst, undo)?;
    super::antispoof::ensure_table(inst, undo)?;
    let mut fresh = nl.link(&net.bridge)?.is_none();
    if fresh {
        let addr = Ipv4Net::new(gw, subnet.prefix_len())
            .map_err(|e| NetworkError::Invalid(format!("network {}: {e}", net.name)))?;
        match nl.create_bridge(&net.bridge, net.mtu, addr) {
            Ok(()) => {
                let (nl2, br) = (nl.clone(), net.bridge.clone());
                undo.push(format!("bridge {br}"), move || {
                    nl2.delete_link(&br).map(|_| ()).map_err(|e| e.to_string())
                });
                crate::fault::point("bridge-after-link");
            }
            // Another minirt process re-created it a moment ago: it is theirs to undo.
            Err(e) if e.errno() == Some(libc::EEXIST) => fresh = false,
            Err(e) => return Err(e.into()),
        }
        if fresh {
            if let Some((subnet6, gw6)) = addressing6(net)? {
                // Before the first port brings carrier and a link-local.
                netlink::disable_dad(&net.bridge)?;
                let addr = Ipv6Net::new(gw6, subnet6.prefix_len())
                    .map_err(|e| NetworkError::Invalid(format!("network {}: {e}", net.name)))?;
                nl.add_address6(&net.bridge, addr)?;
            }
        }
    }
    // A network whose bridge and table both survived has its rules: skip
    // the nft call (`network reload` repairs anything else).
    if fresh || new_table {
        rules::ensure_network(inst, net, fresh, undo)?;
    }
    if !net.internal {
        netlink::enable_ip_forward()?;
        if !net.subnet6.is_empty() {
            netlink::enable_ipv6_forward()?;
        }
    }
    netlink::enable_route_localnet(&net.bridge)?;
    Ok(())
}

/// Deletes the network's rules and bridge (idempotent: missing parts are fine).
pub fn remove(nl: &Netlink, inst: &Instance, net: &NetworkRow) -> Result<(), NetworkError> {
    rules::remove_network(inst, net)?;
    crate::fault::point("bridge-rm-after-rules");
    nl.delete_link(&net.bridge)?;
    Ok(())
}

/// Plugs an endpoint into the container whose init is `pid`: veth pair with
/// the peer created inside the container netns, address, lo/eth up, and the
/// default route when `default_route` (only the first, non-internal network).
#[allow(clippy::too_many_arguments)]
pub fn connect(
    nl: &Rc<Netlink>,
    ctr: &Netlink,
    inst: &Instance,
    net: &NetworkRow,
    ep: &EndpointRow,
    ports: &[PortBindingRow],
    pid: i32,
    default_route: bool,
    undo: &mut Undo,
) -> Result<(), NetworkError> {
    let (subnet, gw) = addressing(net)?;
    let mac = ipam::mac_for(ep.ip);
    nl.create_veth(
        &ep.host_veth,
        &net.bridge,
        &ep.ifname,
        Netns::Pid(pid),
        mac,
        net.mtu,
    )?;
    let (nl2, hv) = (nl.clone(), ep.host_veth.clone());
    undo.push(format!("veth {hv}"), move || {
        nl2.delete_link(&hv).map(|_| ()).map_err(|e| e.to_string())
    });
    crate::util::fault_point("after-veth");
    let addr = Ipv4Net::new(ep.ip, subnet.prefix_len())
        .map_err(|e| NetworkError::Invalid(format!("endpoint address: {e}")))?;
    let route = (default_route && !net.internal).then_some(gw);
    let v6 = match (addressing6(net)?, ep.ip6) {
        (Some((subnet6, gw6)), Some(ip6)) => Some((subnet6, gw6, ip6)),
        _ => None,
    };
    if v6.is_some() {
        // Before the interface comes up: its link-local is usable at once.
        let ns = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
        netlink::set_sysctl_in(&ns, &format!("net.ipv6.conf.{}.accept_dad", ep.ifname), "0")?;
    }
    ctr.configure_container_if(&ep.ifname, addr, route)?;
    if let Some((subnet6, gw6, ip6)) = v6 {
        let addr6 = Ipv6Net::new(ip6, subnet6.prefix_len())
            .map_err(|e| NetworkError::Invalid(format!("endpoint address: {e}")))?;
        ctr.add_address6(&ep.ifname, addr6)?;
        if route.is_some() {
            ctr.add_default_route6(gw6)?;
        }
    }
    if !ports.is_empty() {
        let _span = tracing::info_span!("net-ports").entered();
        rules::add_ports(inst, net, ep, ports, undo)?;
        crate::util::fault_point("after-rules");
    }
    Ok(())
}

/// Unplugs an endpoint: its port mappings, then the host veth (which takes
/// the peer with it). Keeps going past errors and returns them all.
pub fn disconnect(
    nl: Option<&Netlink>,
    inst: &Instance,
    ep: &EndpointRow,
    ports: &[PortBindingRow],
) -> Vec<String> {
    let mut errors = vec![];
    if !ports.is_empty() {
        let _span = tracing::info_span!("net-ports-del").entered();
        if let Err(e) = rules::remove_ports(inst, ep, ports) {
            errors.push(e.to_string());
        }
    }
    if let Some(nl) = nl {
        let _span = tracing::info_span!("net-veth-del").entered();
        if let Err(e) = nl.delete_link(&ep.host_veth) {
            errors.push(e.to_string());
        }
    }
    // After the veth: until it is gone its frames must stay guarded.
    if let Err(e) = super::antispoof::unplug(inst, ep) {
        errors.push(e.to_string());
    }
    errors
}
