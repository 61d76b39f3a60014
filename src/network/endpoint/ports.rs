//! Published ports on an endpoint: where publishing cannot work, the -p
//! specs parsed into binding rows, host ports picked and clashes refused.

use crate::network::driver::DriverKind;
use crate::network::portspec::{self, HostBinding};
use crate::network::{fwbackend, NetworkError};
use crate::store::networks::{self as rows, EndpointRow, NetworkRow, PortBindingRow};
use rusqlite::Connection;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Refuses published ports where they cannot work: on a macvlan network
/// (no NAT: the container is reached on its own address), or with the
/// `none` firewall backend. Pure but for the environment.
pub(super) fn check_publish(net: &NetworkRow, publish: &[String]) -> Result<(), NetworkError> {
    if publish.is_empty() {
        return Ok(());
    }
    if DriverKind::of(net)? == DriverKind::Overlay {
        return Err(NetworkError::Invalid(format!(
            "not implemented: port publishing on overlay network {}: its containers \
             are reached on their overlay addresses",
            net.name
        )));
    }
    if DriverKind::of(net)? == DriverKind::Macvlan {
        return Err(NetworkError::Invalid(format!(
            "port publishing is not supported on macvlan network {}: its containers \
             are reached on their own addresses",
            net.name
        )));
    }
    if fwbackend::choose(std::env::var("MINIRT_FIREWALL").ok().as_deref())? == "none" {
        return Err(NetworkError::Invalid(
            "port publishing needs a firewall: MINIRT_FIREWALL=none maps no ports".into(),
        ));
    }
    Ok(())
}

/// A port published on an IPv6 host address is forwarded by the kernel to
/// the container's IPv6 address: a container without one is refused
/// (Docker would need its userland proxy for that). `[::1]` is the
/// exception: IPv6 has no route_localnet, so the kernel never routes a
/// packet with the source ::1 out of `lo` to a container; a small TCP proxy
/// (`network::proxy6`) listening on [::1] serves it instead, to the
/// container's IPv6 address or else its IPv4 one. UDP on [::1] is refused.
fn check_v6_publish(
    spec: &str,
    host: Ipv6Addr,
    proto: portspec::Proto,
    ep: &EndpointRow,
) -> Result<(), NetworkError> {
    if host.is_loopback() {
        if proto != portspec::Proto::Tcp {
            return Err(NetworkError::Invalid(format!(
                "not implemented: {proto} publishing on [::1] ({spec:?}): only TCP is \
                 proxied on IPv6 loopback; publish on 127.0.0.1 or [::] instead"
            )));
        }
        return Ok(());
    }
    if ep.ip6.is_none() {
        return Err(NetworkError::Invalid(format!(
            "invalid port mapping {spec:?}: an IPv6 host address needs an IPv6 address in the \
             container (create the network with --ipv6)"
        )));
    }
    Ok(())
}

fn binding_of(b: &PortBindingRow) -> Option<HostBinding> {
    Some(HostBinding {
        proto: b.proto.parse().ok()?,
        host_ip: b.host_ip.parse().ok()?,
        host_port: b.host_port,
    })
}

/// The bindings a new one could clash with, read from the store as the specs
/// need them: those on the same protocol and host port for a fixed port (an
/// index lookup), every one of the protocol to pick a free port, plus those
/// this call made. Reading them all for every container was about 1 ms of a
/// create at 1000 mappings (`sqlite3 .timer`).
struct Taken<'a> {
    c: &'a Connection,
    stored: Vec<HostBinding>,
    read: Vec<(portspec::Proto, Option<u16>)>,
}

impl Taken<'_> {
    /// The bindings on `proto` (and `port`, when given) that could clash.
    fn on(
        &mut self,
        proto: portspec::Proto,
        port: Option<u16>,
    ) -> Result<&[HostBinding], NetworkError> {
        if !self.read.contains(&(proto, None)) && !self.read.contains(&(proto, port)) {
            let rows = rows::port_bindings_on(self.c, &proto.to_string(), port)?;
            // A whole protocol's list replaces the single ports read before.
            if port.is_none() {
                self.stored.retain(|t| t.proto != proto);
            }
            self.stored.extend(rows.iter().filter_map(binding_of));
            self.read.push((proto, port));
        }
        Ok(&self.stored)
    }
}

/// Parses the -p specs, picks free host ports for `-p CTRPORT`, refuses any
/// clash with a binding that exists (0.0.0.0 clashes with every address).
pub(super) fn allocate_ports(
    c: &Connection,
    container_id: &str,
    ep: &EndpointRow,
    publish: &[String],
    default_host_ip: Option<Ipv4Addr>,
) -> Result<Vec<PortBindingRow>, NetworkError> {
    let mut taken = Taken {
        c,
        stored: vec![],
        read: vec![],
    };
    let mut mine: Vec<HostBinding> = vec![];
    let mut out = vec![];
    let range = portspec::ephemeral_ports()?;
    for spec in publish {
        // `-p 8080:80` on a network with host_binding_ipv4 binds there.
        let names_ip =
            spec.starts_with('[') || spec.split('/').next().unwrap_or("").matches(':').count() == 2;
        for mut m in portspec::parse_publish(spec)? {
            if ep.ip4().is_none() {
                // An IPv6-only container: `-p 8080:80` publishes on `::`
                // alone; an IPv4 host address could never reach it.
                match (names_ip, m.host_ip) {
                    (false, _) => m.host_ip = Ipv6Addr::UNSPECIFIED.into(),
                    (true, std::net::IpAddr::V4(h)) => {
                        return Err(NetworkError::Invalid(format!(
                            "invalid port mapping {spec:?}: the IPv4 host address {h} cannot \
                             reach a container on an IPv6-only network (publish on [::] or an \
                             IPv6 address)"
                        )))
                    }
                    (true, std::net::IpAddr::V6(_)) => {}
                }
            } else if let (false, Some(ip)) = (names_ip, default_host_ip) {
                m.host_ip = ip.into();
            }
            if let std::net::IpAddr::V6(h) = m.host_ip {
                check_v6_publish(spec, h, m.proto, ep)?;
            }
            let host_port = match m.host_port {
                Some(p) => {
                    let b = HostBinding {
                        proto: m.proto,
                        host_ip: m.host_ip,
                        host_port: p,
                    };
                    let stored = taken.on(m.proto, Some(p))?;
                    if stored
                        .iter()
                        .chain(&mine)
                        .any(|t| portspec::conflicts(*t, b))
                    {
                        return Err(NetworkError::Conflict(format!(
                            "Bind for {}:{p} failed: port is already allocated",
                            m.host_ip
                        )));
                    }
                    p
                }
                None => {
                    let mut used: Vec<u16> = taken
                        .on(m.proto, None)?
                        .iter()
                        .chain(&mine)
                        .filter(|t| {
                            t.proto == m.proto
                                && (t.host_ip == m.host_ip
                                    || t.host_ip.is_unspecified()
                                    || m.host_ip.is_unspecified())
                        })
                        .map(|t| t.host_port)
                        .collect();
                    used.sort_unstable();
                    portspec::pick_free_port(used, range.clone()).ok_or_else(|| {
                        NetworkError::Conflict(format!(
                            "no free {} host port left in {}-{} to publish {}",
                            m.proto,
                            range.start(),
                            range.end(),
                            m.container_port
                        ))
                    })?
                }
            };
            let row = PortBindingRow {
                container_id: container_id.to_string(),
                endpoint_id: ep.id.clone(),
                proto: m.proto.to_string(),
                host_ip: m.host_ip.to_string(),
                host_port,
                container_port: m.container_port,
            };
            rows::insert_port_binding(c, &row)?;
            mine.push(HostBinding {
                proto: m.proto,
                host_ip: m.host_ip,
                host_port,
            });
            out.push(row);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::network::endpoint::allocate::detach_rows;
    use crate::network::endpoint::info::container_ports;
    use crate::network::endpoint::tests::{insert_container, on_n, store_with};

    #[test]
    fn host_ports_conflict_across_addresses_and_free_ones_are_picked() {
        let (_d, inst, mut store) = store_with("10.88.0.0/24");
        insert_container(
            &mut store,
            &inst,
            "c1",
            "a",
            &on_n(&["8080:80", "127.0.0.1:9090:90", "53:53/udp"], None),
            0,
        )
        .unwrap();
        for (spec, want) in [
            (
                "8080:81",
                "Bind for 0.0.0.0:8080 failed: port is already allocated",
            ),
            (
                "127.0.0.1:8080:81",
                "Bind for 127.0.0.1:8080 failed: port is already allocated",
            ),
            (
                "9090:90",
                "Bind for 0.0.0.0:9090 failed: port is already allocated",
            ),
            (
                "53:53/udp",
                "Bind for 0.0.0.0:53 failed: port is already allocated",
            ),
        ] {
            let e = insert_container(&mut store, &inst, "c2", "b", &on_n(&[spec], None), 0)
                .unwrap_err();
            assert_eq!(e.to_string(), want, "{spec}");
        }
        // Same port, other protocol or other specific address: fine.
        insert_container(
            &mut store,
            &inst,
            "c2",
            "b",
            &on_n(
                &[
                    "8080:80/udp",
                    "127.0.0.2:9090:90",
                    "100-101:200-201",
                    "80",
                    "80",
                ],
                None,
            ),
            0,
        )
        .unwrap();
        assert_eq!(
            container_ports(&store, "c2").unwrap(),
            [
                "0.0.0.0:100->200/tcp",
                "0.0.0.0:101->201/tcp",
                "0.0.0.0:8080->80/udp",
                "127.0.0.2:9090->90/tcp",
                "0.0.0.0:32768->80/tcp",
                "0.0.0.0:32769->80/tcp",
            ]
        );
        // Releasing the first container frees its ports.
        store.write(|tx| detach_rows(tx, "c1")).unwrap();
        insert_container(&mut store, &inst, "c3", "c", &on_n(&["8080:80"], None), 0).unwrap();
    }
}
