//! Network, endpoint and port-binding rows. Functions take a `Connection`
//! (a `Transaction` derefs to one) so allocation runs in the caller's tx.

use super::{is_unique_violation, Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkRow {
    pub id: String,
    pub name: String,
    pub driver: String,
    /// CIDR, e.g. "10.88.0.0/24".
    pub subnet: String,
    pub net_start: u32,
    pub net_end: u32,
    pub gateway: String,
    /// The host-side device the network lives on: its bridge (bridge
    /// driver) or the parent interface (macvlan).
    pub device: String,
    pub internal: bool,
    pub mtu: u32,
    pub options: BTreeMap<String, String>,
    pub created: i64,
    /// IPv6 CIDR, "" when the network has no IPv6.
    pub subnet6: String,
    /// IPv6 gateway, "" when the network has no IPv6.
    pub gateway6: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRow {
    pub id: String,
    pub container_id: String,
    pub network_id: String,
    pub ifname: String,
    /// 0.0.0.0 (stored as NULL) on an IPv6-only network: see `ip4`.
    pub ip: Ipv4Addr,
    pub mac: String,
    /// The endpoint's host-side interface name: the host end of the veth
    /// (bridge), or the name a macvlan device is made under in the host
    /// before it moves into the container.
    pub host_ifname: String,
    pub aliases: Vec<String>,
    pub ip6: Option<Ipv6Addr>,
}

impl NetworkRow {
    /// False on an IPv6-only network (`--ipv4=false`: subnet and gateway '').
    pub fn has_ipv4(&self) -> bool {
        !self.subnet.is_empty()
    }
}

impl EndpointRow {
    /// The IPv4 address, None on an IPv6-only network.
    pub fn ip4(&self) -> Option<Ipv4Addr> {
        (!self.ip.is_unspecified()).then_some(self.ip)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PortBindingRow {
    pub container_id: String,
    pub endpoint_id: String,
    pub proto: String,
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
}

/// The few container columns the network code needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ContainerRef {
    pub id: String,
    pub name: String,
    pub status: String,
    pub pid: i32,
    pub pid_start: u64,
    pub config: String,
}

const NET_COLS: &str = "id, name, driver, subnet, net_start, net_end, gateway, device, internal, \
     mtu, options, created, subnet6, gateway6";

fn network_row(r: &Row) -> rusqlite::Result<NetworkRow> {
    let options: String = r.get(10)?;
    Ok(NetworkRow {
        id: r.get(0)?,
        name: r.get(1)?,
        driver: r.get(2)?,
        subnet: r.get(3)?,
        net_start: r.get::<_, i64>(4)? as u32,
        net_end: r.get::<_, i64>(5)? as u32,
        gateway: r.get(6)?,
        device: r.get(7)?,
        internal: r.get::<_, i64>(8)? != 0,
        mtu: r.get::<_, i64>(9)? as u32,
        options: serde_json::from_str(&options).unwrap_or_default(),
        created: r.get(11)?,
        subnet6: r.get(12)?,
        gateway6: r.get(13)?,
    })
}

/// Inserts a network; a duplicate name or bridge is a clear Conflict.
pub(crate) fn insert_network(c: &Connection, n: &NetworkRow) -> Result<()> {
    let options = serde_json::to_string(&n.options)?;
    let r = c.execute(
        &format!(
            "INSERT INTO networks ({NET_COLS}) \
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)"
        ),
        params![
            n.id,
            n.name,
            n.driver,
            n.subnet,
            n.net_start as i64,
            n.net_end as i64,
            n.gateway,
            n.device,
            n.internal as i64,
            n.mtu as i64,
            options,
            n.created,
            n.subnet6,
            n.gateway6
        ],
    );
    match r {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => {
            let by_name: Option<String> = c
                .query_row("SELECT id FROM networks WHERE name = ?1", [&n.name], |r| {
                    r.get(0)
                })
                .optional()?;
            Err(StoreError::Conflict(if by_name.is_some() {
                format!("network with name {} already exists", n.name)
            } else {
                format!(
                    "bridge name {} is already used by another network",
                    n.device
                )
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// The firewall epoch: moved by every change to networks, endpoints and port
/// bindings (schema v11's triggers).
pub(crate) fn firewall_epoch(c: &Connection) -> Result<i64> {
    Ok(c.query_row("SELECT n FROM firewall_epoch", [], |r| r.get(0))?)
}

/// Every network, by name.
pub(crate) fn list_networks(c: &Connection) -> Result<Vec<NetworkRow>> {
    let mut st = c.prepare(&format!("SELECT {NET_COLS} FROM networks ORDER BY name"))?;
    let rows = st.query_map([], network_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A network by full id, else exact name, else unique id prefix (Docker's
/// lookup order, the same rule and ambiguity message as containers).
pub(crate) fn find_network(c: &Connection, key: &str) -> Result<Option<NetworkRow>> {
    super::lookup::by_id_name_or_prefix(c, "networks", NET_COLS, key, network_row)?
        .into_option("network", key)
}

/// Networks whose address range intersects [start, end].
pub(crate) fn overlapping_networks(
    c: &Connection,
    start: u32,
    end: u32,
) -> Result<Vec<NetworkRow>> {
    let mut st = c.prepare(&format!(
        "SELECT {NET_COLS} FROM networks WHERE subnet != '' AND net_start <= ?2 AND net_end >= ?1 \
         ORDER BY name"
    ))?;
    let rows = st.query_map(params![start as i64, end as i64], network_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn delete_network(c: &Connection, id: &str) -> Result<bool> {
    Ok(c.execute("DELETE FROM networks WHERE id = ?1", [id])? > 0)
}

const EP_COLS: &str = "id, container_id, network_id, ifname, ip, mac, host_ifname, aliases, ip6";

fn endpoint_row(r: &Row) -> rusqlite::Result<EndpointRow> {
    let aliases: String = r.get(7)?;
    Ok(EndpointRow {
        id: r.get(0)?,
        container_id: r.get(1)?,
        network_id: r.get(2)?,
        ifname: r.get(3)?,
        ip: Ipv4Addr::from(r.get::<_, Option<i64>>(4)?.unwrap_or(0) as u32),
        mac: r.get(5)?,
        host_ifname: r.get(6)?,
        aliases: serde_json::from_str(&aliases).unwrap_or_default(),
        ip6: r.get::<_, Option<String>>(8)?.and_then(|s| s.parse().ok()),
    })
}

/// A host veth whose container's namespace the kernel is expected to
/// destroy (taking the veth with it), from `since` (ns).
pub(crate) fn add_dying_link(c: &Connection, name: &str, since: i64) -> Result<()> {
    c.execute(
        "INSERT OR REPLACE INTO dying_links (name, since) VALUES (?1, ?2)",
        params![name, since],
    )?;
    Ok(())
}

/// Dying links recorded before `before` (ns).
pub(crate) fn dying_links_before(c: &Connection, before: i64) -> Result<Vec<String>> {
    let mut st = c.prepare("SELECT name FROM dying_links WHERE since < ?1")?;
    let rows = st.query_map([before], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn forget_dying_link(c: &Connection, name: &str) -> Result<()> {
    c.execute("DELETE FROM dying_links WHERE name = ?1", [name])?;
    Ok(())
}

/// The address last handed out on a network (0: none yet).
pub(crate) fn last_ip(c: &Connection, network_id: &str) -> Result<u32> {
    let v: i64 = c.query_row(
        "SELECT last_ip FROM networks WHERE id = ?1",
        [network_id],
        |r| r.get(0),
    )?;
    Ok(v as u32)
}

pub(crate) fn set_last_ip(c: &Connection, network_id: &str, ip: Ipv4Addr) -> Result<()> {
    c.execute(
        "UPDATE networks SET last_ip = ?2 WHERE id = ?1",
        params![network_id, u32::from(ip) as i64],
    )?;
    Ok(())
}

/// The IPv6 address last handed out on a network (0: none yet).
pub(crate) fn last_ip6(c: &Connection, network_id: &str) -> Result<u128> {
    let v: String = c.query_row(
        "SELECT last_ip6 FROM networks WHERE id = ?1",
        [network_id],
        |r| r.get(0),
    )?;
    Ok(v.parse::<Ipv6Addr>().map(u128::from).unwrap_or(0))
}

pub(crate) fn set_last_ip6(c: &Connection, network_id: &str, ip: Ipv6Addr) -> Result<()> {
    c.execute(
        "UPDATE networks SET last_ip6 = ?2 WHERE id = ?1",
        params![network_id, ip.to_string()],
    )?;
    Ok(())
}

/// IPv6 addresses in use on a network, ascending (for ipam6).
pub(crate) fn used_ips6(c: &Connection, network_id: &str) -> Result<Vec<u128>> {
    let mut st =
        c.prepare("SELECT ip6 FROM endpoints WHERE network_id = ?1 AND ip6 IS NOT NULL")?;
    let rows = st.query_map([network_id], |r| r.get::<_, String>(0))?;
    let mut v: Vec<u128> = rows
        .collect::<rusqlite::Result<Vec<String>>>()?
        .iter()
        .filter_map(|s| s.parse::<Ipv6Addr>().ok())
        .map(u128::from)
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// Networks with an IPv6 subnet (for overlap checks).
pub(crate) fn ipv6_subnets(c: &Connection) -> Result<Vec<(String, String)>> {
    let mut st =
        c.prepare("SELECT name, subnet6 FROM networks WHERE subnet6 != '' ORDER BY name")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Addresses in use on a network, ascending (for the ipam functions).
#[cfg(test)]
pub(crate) fn used_ips(c: &Connection, network_id: &str) -> Result<Vec<u32>> {
    let mut st =
        c.prepare("SELECT ip FROM endpoints WHERE network_id = ?1 AND ip IS NOT NULL ORDER BY ip")?;
    let rows = st.query_map([network_id], |r| r.get::<_, i64>(0))?;
    Ok(rows
        .map(|r| r.map(|v| v as u32))
        .collect::<rusqlite::Result<_>>()?)
}

/// The network's used IPv4 addresses at or above `from`, ascending, at most
/// `limit` of them (the UNIQUE (network_id, ip) index walked from `from`).
pub(crate) fn used_ips_from(
    c: &Connection,
    network_id: &str,
    from: u32,
    limit: Option<u32>,
) -> Result<Vec<u32>> {
    let mut st = c.prepare_cached(
        "SELECT ip FROM endpoints WHERE network_id = ?1 AND ip >= ?2 ORDER BY ip LIMIT ?3",
    )?;
    let limit = limit.map_or(-1, i64::from);
    let rows = st.query_map(params![network_id, i64::from(from), limit], |r| {
        r.get::<_, i64>(0)
    })?;
    Ok(rows
        .map(|r| r.map(|v| v as u32))
        .collect::<rusqlite::Result<_>>()?)
}

/// Inserts an endpoint; the UNIQUE constraints turn races into clear errors.
pub(crate) fn insert_endpoint(c: &Connection, e: &EndpointRow) -> Result<()> {
    let aliases = serde_json::to_string(&e.aliases)?;
    let r = c.execute(
        &format!("INSERT INTO endpoints ({EP_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)"),
        params![
            e.id,
            e.container_id,
            e.network_id,
            e.ifname,
            e.ip4().map(|ip| u32::from(ip) as i64),
            e.mac,
            e.host_ifname,
            aliases,
            e.ip6.map(|a| a.to_string())
        ],
    );
    match r {
        Ok(_) => Ok(()),
        Err(err) if is_unique_violation(&err) => {
            let msg = match err.to_string() {
                m if m.contains("endpoints.network_id, endpoints.ip6") => {
                    format!(
                        "address {} is already in use",
                        e.ip6.map(|a| a.to_string()).unwrap_or_default()
                    )
                }
                m if m.contains("endpoints.network_id, endpoints.ip") => {
                    format!("address {} is already in use", e.ip)
                }
                m if m.contains("endpoints.container_id, endpoints.network_id") => {
                    "container is already connected to this network".to_string()
                }
                m if m.contains("ifname") => format!("interface {} already exists", e.ifname),
                _ => format!("endpoint conflict: {err}"),
            };
            Err(StoreError::Conflict(msg))
        }
        Err(err) => Err(err.into()),
    }
}

pub(crate) fn endpoints_of_container(
    c: &Connection,
    container_id: &str,
) -> Result<Vec<EndpointRow>> {
    let mut st = c.prepare(&format!(
        "SELECT {EP_COLS} FROM endpoints WHERE container_id = ?1 ORDER BY ifname"
    ))?;
    let rows = st.query_map([container_id], endpoint_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every endpoint, each container's in interface order: one query for all
/// containers (`ps`), not one per container.
pub(crate) fn all_endpoints(c: &Connection) -> Result<Vec<EndpointRow>> {
    let mut st = c.prepare(&format!(
        "SELECT {EP_COLS} FROM endpoints ORDER BY container_id, ifname"
    ))?;
    let rows = st.query_map([], endpoint_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// True when an endpoint row names this host-side interface (a committed
/// endpoint).
pub(crate) fn ifname_has_endpoint(c: &Connection, host_ifname: &str) -> Result<bool> {
    Ok(c.query_row(
        "SELECT 1 FROM endpoints WHERE host_ifname = ?1",
        [host_ifname],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

/// Endpoints on a network with their container's name, by address.
pub(crate) fn endpoints_of_network(
    c: &Connection,
    network_id: &str,
) -> Result<Vec<(EndpointRow, String)>> {
    let mut st = c.prepare(
        "SELECT e.id, e.container_id, e.network_id, e.ifname, e.ip, e.mac, e.host_ifname, e.aliases, \
         e.ip6, COALESCE(c.name, '') FROM endpoints e LEFT JOIN containers c ON c.id = e.container_id \
         WHERE e.network_id = ?1 ORDER BY e.ip, e.ip6",
    )?;
    let rows = st.query_map([network_id], |r| {
        Ok((endpoint_row(r)?, r.get::<_, String>(9)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Deletes an endpoint and (by cascade) its port bindings.
pub(crate) fn delete_endpoint(c: &Connection, id: &str) -> Result<bool> {
    c.execute("DELETE FROM port_bindings WHERE endpoint_id = ?1", [id])?;
    Ok(c.execute("DELETE FROM endpoints WHERE id = ?1", [id])? > 0)
}

fn binding_row(r: &Row) -> rusqlite::Result<PortBindingRow> {
    Ok(PortBindingRow {
        container_id: r.get(0)?,
        endpoint_id: r.get(1)?,
        proto: r.get(2)?,
        host_ip: r.get(3)?,
        host_port: r.get::<_, i64>(4)? as u16,
        container_port: r.get::<_, i64>(5)? as u16,
    })
}

const PB_COLS: &str = "container_id, endpoint_id, proto, host_ip, host_port, container_port";

/// Inserts a port binding; the (proto, host_ip, host_port) UNIQUE constraint
/// becomes Docker's "port is already allocated".
pub(crate) fn insert_port_binding(c: &Connection, b: &PortBindingRow) -> Result<()> {
    let r = c.execute(
        &format!("INSERT INTO port_bindings ({PB_COLS}) VALUES (?1,?2,?3,?4,?5,?6)"),
        params![
            b.container_id,
            b.endpoint_id,
            b.proto,
            b.host_ip,
            b.host_port as i64,
            b.container_port as i64
        ],
    );
    match r {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "Bind for {}:{} failed: port is already allocated",
            b.host_ip, b.host_port
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Every binding (for conflict checks and rebuilding the firewall maps).
pub(crate) fn all_port_bindings(c: &Connection) -> Result<Vec<PortBindingRow>> {
    let mut st = c.prepare(&format!(
        "SELECT {PB_COLS} FROM port_bindings ORDER BY proto, host_port, host_ip"
    ))?;
    let rows = st.query_map([], binding_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The port bindings on `proto`, on host port `port` when given (the
/// (proto, host_port) index).
pub(crate) fn port_bindings_on(
    c: &Connection,
    proto: &str,
    port: Option<u16>,
) -> Result<Vec<PortBindingRow>> {
    let q = format!("SELECT {PB_COLS} FROM port_bindings WHERE proto = ?1");
    let rows = match port {
        Some(p) => {
            let mut st = c.prepare_cached(&format!("{q} AND host_port = ?2"))?;
            let rows = st.query_map(params![proto, p], binding_row)?;
            rows.collect::<rusqlite::Result<_>>()?
        }
        None => {
            let mut st = c.prepare_cached(&q)?;
            let rows = st.query_map(params![proto], binding_row)?;
            rows.collect::<rusqlite::Result<_>>()?
        }
    };
    Ok(rows)
}

/// Every port binding, each container's in the order of
/// [`port_bindings_of_container`]: one query for all containers (`ps`).
pub(crate) fn all_port_bindings_by_container(c: &Connection) -> Result<Vec<PortBindingRow>> {
    let mut st = c.prepare(&format!(
        "SELECT {PB_COLS} FROM port_bindings ORDER BY container_id, host_port, proto, host_ip"
    ))?;
    let rows = st.query_map([], binding_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn port_bindings_of_container(
    c: &Connection,
    container_id: &str,
) -> Result<Vec<PortBindingRow>> {
    let mut st = c.prepare(&format!(
        "SELECT {PB_COLS} FROM port_bindings WHERE container_id = ?1 \
         ORDER BY host_port, proto, host_ip"
    ))?;
    let rows = st.query_map([container_id], binding_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

const CTR_COLS: &str = "id, name, status, pid, pid_start, config";

fn container_ref(r: &Row) -> rusqlite::Result<ContainerRef> {
    Ok(ContainerRef {
        id: r.get(0)?,
        name: r.get(1)?,
        status: r.get(2)?,
        pid: r.get::<_, i64>(3)? as i32,
        pid_start: r.get::<_, i64>(4)? as u64,
        config: r.get(5)?,
    })
}

/// A container by full id, name, or unique id prefix (the containers' one rule,
/// `lookup::by_id_name_or_prefix`).
pub(crate) fn find_container(c: &Connection, key: &str) -> Result<Option<ContainerRef>> {
    super::lookup::by_id_name_or_prefix(c, "containers", CTR_COLS, key, container_ref)?
        .into_option("container", key)
}

#[cfg(test)]
#[path = "networks_tests.rs"]
mod tests;
