//! Endpoint rows inside the container's store transaction: the request
//! checked, the addresses (IPv4, IPv6) and interface names picked; the
//! default network made ready beforehand; rows released without devices.

use super::ports::{allocate_ports, check_publish};
use crate::network::driver::NetworkMode;
use crate::network::names;
use crate::network::{bridge, etc, ipam, ipam6, manage, rules, NetworkError, NetworkRequest};
use crate::store::networks::{self as rows, EndpointRow, NetworkRow};
use crate::store::Store;
use crate::{util, Instance};
use rusqlite::{Connection, Transaction};
use std::net::{Ipv4Addr, Ipv6Addr};

pub(super) fn parse_ip6(s: &str) -> Result<Ipv6Addr, NetworkError> {
    s.parse().map_err(|_| {
        NetworkError::Invalid(format!("invalid --ip6 {s:?}: expected an IPv6 address"))
    })
}

pub(super) fn parse_ip(s: &str) -> Result<Ipv4Addr, NetworkError> {
    s.parse()
        .map_err(|_| NetworkError::Invalid(format!("invalid --ip {s:?}: expected an IPv4 address")))
}

/// Validates the request and records the container's endpoint and port
/// bindings in `tx` (the transaction that inserts the container row).
/// `--net none|host` record nothing. The default network's row is inserted
/// here when missing; its bridge is made by `attach`.
pub fn allocate(
    tx: &Transaction,
    inst: &Instance,
    container_id: &str,
    req: &NetworkRequest,
) -> Result<(), NetworkError> {
    for d in &req.dns {
        etc::parse_dns(d)?;
    }
    for h in &req.add_hosts {
        etc::parse_add_host(h)?;
    }
    let mode = NetworkMode::parse(&req.mode);
    if !mode.has_endpoints() {
        let mode = mode.as_str();
        if !req.publish.is_empty() {
            return Err(NetworkError::Invalid(format!(
                "conflicting options: port publishing and --net {mode}"
            )));
        }
        if req.ip.is_some() || req.ip6.is_some() {
            return Err(NetworkError::Invalid(format!(
                "conflicting options: --ip{} and --net {mode}",
                if req.ip.is_some() { "" } else { "6" }
            )));
        }
        return Ok(());
    }
    let net = match &mode {
        NetworkMode::Named(name) => manage::find(tx, name)?,
        _ => manage::default_network_row(inst, tx)?,
    };
    check_publish(&net, &req.publish)?;
    let ip = req.ip.as_deref().map(parse_ip).transpose()?;
    let ip6 = req.ip6.as_deref().map(parse_ip6).transpose()?;
    let ep = new_endpoint(tx, &net, container_id, ip, ip6, &req.aliases)?;
    allocate_ports(
        tx,
        container_id,
        &ep,
        &req.publish,
        rules::default_host_ip(&net),
    )?;
    Ok(())
}

/// Picks (or checks) the address, the interface name and the veth name, and
/// inserts the endpoint row; UNIQUE constraints catch concurrent allocations.
pub(super) fn new_endpoint(
    c: &Connection,
    net: &NetworkRow,
    container_id: &str,
    requested: Option<Ipv4Addr>,
    requested6: Option<Ipv6Addr>,
    aliases: &[String],
) -> Result<EndpointRow, NetworkError> {
    let v4 = bridge::addressing4(net)?;
    let mine = rows::endpoints_of_container(c, container_id)?;
    if mine.iter().any(|e| e.network_id == net.id) {
        return Err(NetworkError::Conflict(format!(
            "container is already connected to network {}",
            net.name
        )));
    }
    let ip = match v4 {
        Some((subnet, gw)) => allocate_ip4(c, net, subnet, gw, requested)?,
        None => match requested {
            Some(ip) => {
                return Err(NetworkError::Invalid(format!(
                    "invalid --ip {ip}: network {} is IPv6-only (use --ip6)",
                    net.name
                )))
            }
            None => Ipv4Addr::UNSPECIFIED,
        },
    };
    let ip6 = allocate_ip6(c, net, requested6)?;
    let n = (0..)
        .find(|n| !mine.iter().any(|e| e.ifname == names::container_ifname(*n)))
        .unwrap_or(0);
    let id = util::new_id();
    let ep = EndpointRow {
        host_ifname: names::host_veth_name(&id),
        id,
        container_id: container_id.to_string(),
        network_id: net.id.clone(),
        ifname: names::container_ifname(n),
        ip,
        mac: ipam::format_mac(ipam6::endpoint_mac(ip, ip6)),
        aliases: aliases.to_vec(),
        ip6,
    };
    rows::insert_endpoint(c, &ep)?;
    Ok(ep)
}

/// The endpoint's IPv4 address (`--ip` checked, or the next free one after
/// the network's cursor), the cursor moved to it.
fn allocate_ip4(
    c: &Connection,
    net: &NetworkRow,
    subnet: ipnet::Ipv4Net,
    gw: Ipv4Addr,
    requested: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, NetworkError> {
    let ip = match requested {
        Some(ip) => {
            ipam::check_requested_ip(subnet, gw, ip)?;
            let at = rows::used_ips_from(c, &net.id, u32::from(ip), Some(1))?;
            if at.first() == Some(&u32::from(ip)) {
                return Err(NetworkError::Conflict(format!(
                    "address {ip} is already in use on network {}",
                    net.name
                )));
            }
            ip
        }
        None => {
            let after = rows::last_ip(c, &net.id)?;
            let used_from = |from| rows::used_ips_from(c, &net.id, from, None);
            ipam::next_free_with(subnet, gw, after, used_from)?.ok_or_else(|| {
                NetworkError::Conflict(format!(
                    "no free address left on network {} ({})",
                    net.name, net.subnet
                ))
            })?
        }
    };
    rows::set_last_ip(c, &net.id, ip)?;
    Ok(ip)
}

/// The endpoint's IPv6 address on a network with IPv6 (`--ip6` checked, or
/// the next free one after the network's cursor); None without IPv6.
fn allocate_ip6(
    c: &Connection,
    net: &NetworkRow,
    requested: Option<Ipv6Addr>,
) -> Result<Option<Ipv6Addr>, NetworkError> {
    let Some((subnet, gw)) = bridge::addressing6(net)? else {
        return match requested {
            Some(ip) => Err(NetworkError::Invalid(format!(
                "invalid --ip6 {ip}: network {} has no IPv6 (create it with --ipv6)",
                net.name
            ))),
            None => Ok(None),
        };
    };
    let used = rows::used_ips6(c, &net.id)?;
    let ip = match requested {
        Some(ip) => {
            ipam6::check_requested_ip(subnet, gw, ip)?;
            if used.binary_search(&u128::from(ip)).is_ok() {
                return Err(NetworkError::Conflict(format!(
                    "address {ip} is already in use on network {}",
                    net.name
                )));
            }
            ip
        }
        None => {
            let after = rows::last_ip6(c, &net.id)?;
            ipam6::next_free(subnet, gw, &used, after).ok_or_else(|| {
                NetworkError::Conflict(format!(
                    "no free IPv6 address left on network {} ({})",
                    net.name, net.subnet6
                ))
            })?
        }
    };
    rows::set_last_ip6(c, &net.id, ip)?;
    Ok(Some(ip))
}

/// Before the container's transaction: makes sure the default network
/// (row, bridge, rules) exists when the request uses it.
pub fn prepare(
    inst: &Instance,
    store: &mut Store,
    req: &NetworkRequest,
) -> Result<(), NetworkError> {
    match NetworkMode::parse(&req.mode) {
        NetworkMode::Default => {
            manage::ensure_default(inst, store)?;
        }
        // An overlay network's first use on this host: its row and block.
        NetworkMode::Named(name)
            if crate::network::overlay::configured()
                && rows::find_network(store.conn(), &name)?.is_none() =>
        {
            crate::network::overlay::join(inst, store, &name, !req.publish.is_empty())?;
        }
        _ => {}
    }
    Ok(())
}

/// Releases a container's addresses and ports in the caller's transaction,
/// without touching devices (for a stopped container about to be
/// re-allocated; `detach` is the full teardown).
pub fn detach_rows(tx: &Transaction, container_id: &str) -> Result<(), NetworkError> {
    for ep in rows::endpoints_of_container(tx, container_id)? {
        rows::delete_endpoint(tx, &ep.id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::endpoint::info::container_networks;
    use crate::network::endpoint::tests::{insert_container, on_n, store_with};

    #[test]
    fn addresses_are_allocated_in_order_and_a_full_subnet_is_refused() {
        let (_d, inst, mut store) = store_with("10.88.0.0/30");
        insert_container(&mut store, &inst, "c1", "a", &on_n(&[], None), 0).unwrap();
        let e = insert_container(&mut store, &inst, "c2", "b", &on_n(&[], None), 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no free address left on network n (10.88.0.0/30)"
        );
        assert!(
            rows::find_container(store.conn(), "b").unwrap().is_none(),
            "row kept"
        );
        let nets = container_networks(&store, "c1").unwrap();
        assert_eq!(
            (nets[0].ip, nets[0].ifname.as_str()),
            (Ipv4Addr::new(10, 88, 0, 2), "eth0")
        );
        // Released addresses are reused.
        store.write(|tx| detach_rows(tx, "c1")).unwrap();
        insert_container(&mut store, &inst, "c2", "b", &on_n(&[], None), 0).unwrap();
        assert_eq!(
            container_networks(&store, "c2").unwrap()[0].ip,
            Ipv4Addr::new(10, 88, 0, 2)
        );
    }

    #[test]
    fn requested_addresses_and_bad_inputs_are_refused_clearly() {
        let (_d, inst, mut store) = store_with("10.88.0.0/24");
        insert_container(
            &mut store,
            &inst,
            "c1",
            "a",
            &on_n(&[], Some("10.88.0.50")),
            0,
        )
        .unwrap();
        for (req, want) in [
            (
                on_n(&[], Some("10.88.0.50")),
                "address 10.88.0.50 is already in use on network n",
            ),
            (on_n(&[], Some("10.88.0.1")), "gateway"),
            (on_n(&[], Some("10.89.0.5")), "not inside subnet"),
            (on_n(&[], Some("nope")), "invalid --ip"),
            (on_n(&["0:80"], None), "invalid port mapping"),
            (on_n(&["70000:80"], None), "invalid port mapping"),
            (on_n(&["80:80:80:80"], None), "invalid port mapping"),
            (
                NetworkRequest {
                    mode: "host".into(),
                    publish: vec!["80".into()],
                    ..Default::default()
                },
                "conflicting options",
            ),
            (
                NetworkRequest {
                    mode: "n".into(),
                    dns: vec!["x".into()],
                    ..Default::default()
                },
                "invalid --dns",
            ),
            (
                NetworkRequest {
                    mode: "n".into(),
                    add_hosts: vec!["x".into()],
                    ..Default::default()
                },
                "invalid --add-host",
            ),
            (
                NetworkRequest {
                    mode: "nosuch".into(),
                    ..Default::default()
                },
                "network nosuch not found",
            ),
        ] {
            let e = insert_container(&mut store, &inst, "c2", "b", &req, 0)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{req:?}: {e}");
        }
        assert!(rows::find_container(store.conn(), "b").unwrap().is_none());
        assert_eq!(
            rows::used_ips(store.conn(), &"n1".repeat(32))
                .unwrap()
                .len(),
            1
        );
        // none / host record nothing.
        let none = NetworkRequest {
            mode: "none".into(),
            ..Default::default()
        };
        insert_container(&mut store, &inst, "c3", "c", &none, 0).unwrap();
        assert!(container_networks(&store, "c3").unwrap().is_empty());
    }
}
