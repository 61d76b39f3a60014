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
pub(crate) fn used_ips(c: &Connection, network_id: &str) -> Result<Vec<u32>> {
    let mut st =
        c.prepare("SELECT ip FROM endpoints WHERE network_id = ?1 AND ip IS NOT NULL ORDER BY ip")?;
    let rows = st.query_map([network_id], |r| r.get::<_, i64>(0))?;
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
mod tests {
    use super::*;
    use crate::store::Store;

    fn net(id: &str, name: &str, subnet: &str, start: u32, end: u32) -> NetworkRow {
        NetworkRow {
            id: id.into(),
            name: name.into(),
            driver: "bridge".into(),
            subnet: subnet.into(),
            net_start: start,
            net_end: end,
            gateway: "10.88.0.1".into(),
            device: format!("mrb-{id}"),
            internal: false,
            mtu: 1500,
            options: BTreeMap::new(),
            created: 1,
            subnet6: String::new(),
            gateway6: String::new(),
        }
    }

    fn container(c: &Connection, id: &str, name: &str) {
        c.execute(
            "INSERT INTO images (id, config, layers, created) VALUES ('img', '{}', '[]', 0) \
             ON CONFLICT DO NOTHING",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO containers (id, name, image, image_id, command, config, status, pid, created) \
             VALUES (?1, ?2, 'busybox', 'img', '[]', '{}', 'running', 42, 0)",
            [id, name],
        )
        .unwrap();
    }

    fn ep(id: &str, cid: &str, nid: &str, ip: &str) -> EndpointRow {
        EndpointRow {
            id: id.into(),
            container_id: cid.into(),
            network_id: nid.into(),
            ifname: "eth0".into(),
            ip: ip.parse().unwrap(),
            mac: "02:42:0a:58:00:02".into(),
            host_ifname: format!("mrv{id}"),
            aliases: vec![],
            ip6: None,
        }
    }

    #[test]
    fn networks_roundtrip_lookup_and_conflicts() {
        let s = Store::open_in_memory().unwrap();
        let c = s.conn();
        let a = net("aaaa1111", "alpha", "10.88.0.0/24", 0x0a580000, 0x0a5800ff);
        insert_network(c, &a).unwrap();
        insert_network(
            c,
            &net("aaaa2222", "beta", "10.89.0.0/24", 0x0a590000, 0x0a5900ff),
        )
        .unwrap();
        assert_eq!(find_network(c, "alpha").unwrap(), Some(a.clone()));
        assert_eq!(find_network(c, "aaaa1").unwrap(), Some(a.clone()));
        let e = find_network(c, "aaaa").unwrap_err().to_string();
        assert_eq!(e, "multiple networks found with provided prefix: aaaa");
        assert_eq!(find_network(c, "aaaa1111").unwrap(), Some(a.clone()));
        assert_eq!(find_network(c, "gamma").unwrap(), None);
        let mut dup = net("bbbb", "alpha", "10.90.0.0/24", 1, 2);
        let e = insert_network(c, &dup).unwrap_err().to_string();
        assert_eq!(e, "network with name alpha already exists");
        dup.name = "other".into();
        dup.device = a.device.clone();
        let e = insert_network(c, &dup).unwrap_err().to_string();
        assert!(e.contains("bridge name"), "{e}");
        let over = overlapping_networks(c, 0x0a580080, 0x0a5900ff).unwrap();
        assert_eq!(over.len(), 2);
        assert!(overlapping_networks(c, 0x0a5a0000, 0x0a5a00ff)
            .unwrap()
            .is_empty());
        let names: Vec<String> = list_networks(c)
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(names, ["alpha", "beta"]);
        assert!(delete_network(c, &a.id).unwrap());
        assert!(!delete_network(c, &a.id).unwrap());
    }

    #[test]
    fn endpoints_and_ports_are_unique_and_released_together() {
        let s = Store::open_in_memory().unwrap();
        let c = s.conn();
        insert_network(
            c,
            &net("n1", "alpha", "10.88.0.0/24", 0x0a580000, 0x0a5800ff),
        )
        .unwrap();
        container(c, "c1", "web");
        container(c, "c2", "db");
        insert_endpoint(c, &ep("e1", "c1", "n1", "10.88.0.3")).unwrap();
        insert_endpoint(c, &ep("e2", "c2", "n1", "10.88.0.2")).unwrap();
        assert_eq!(used_ips(c, "n1").unwrap(), vec![0x0a580002, 0x0a580003]);
        let e = insert_endpoint(c, &ep("e3", "c2", "n1", "10.88.0.2"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("already"), "{e}");
        let b = PortBindingRow {
            container_id: "c1".into(),
            endpoint_id: "e1".into(),
            proto: "tcp".into(),
            host_ip: "0.0.0.0".into(),
            host_port: 8080,
            container_port: 80,
        };
        insert_port_binding(c, &b).unwrap();
        let e = insert_port_binding(c, &b).unwrap_err().to_string();
        assert_eq!(e, "Bind for 0.0.0.0:8080 failed: port is already allocated");
        let on: Vec<String> = endpoints_of_network(c, "n1")
            .unwrap()
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        assert_eq!(on, ["db", "web"]);
        assert_eq!(port_bindings_of_container(c, "c1").unwrap(), vec![b]);
        assert!(delete_endpoint(c, "e1").unwrap());
        assert!(all_port_bindings(c).unwrap().is_empty());
        assert_eq!(used_ips(c, "n1").unwrap(), vec![0x0a580002]);
        assert_eq!(find_container(c, "web").unwrap().unwrap().pid, 42);
        assert!(find_container(c, "c")
            .unwrap_err()
            .to_string()
            .contains("multiple containers found with provided prefix: c"));
        assert!(find_container(c, "zzz").unwrap().is_none());
    }

    #[test]
    fn dying_links_come_back_once_old_enough_and_are_forgotten() {
        let s = Store::open_in_memory().unwrap();
        let c = s.conn();
        add_dying_link(c, "mrvold", 100).unwrap();
        add_dying_link(c, "mrvnew", 900).unwrap();
        assert_eq!(
            dying_links_before(c, 500).unwrap(),
            vec!["mrvold".to_string()]
        );
        // Recorded again (a retried teardown): the newer time counts.
        add_dying_link(c, "mrvold", 800).unwrap();
        assert!(dying_links_before(c, 500).unwrap().is_empty());
        forget_dying_link(c, "mrvnew").unwrap();
        assert_eq!(
            dying_links_before(c, 1000).unwrap(),
            vec!["mrvold".to_string()]
        );
    }

    #[test]
    fn ipv6_columns_round_trip_and_are_unique_per_network() {
        let s = Store::open_in_memory().unwrap();
        let c = s.conn();
        let mut n = net("n6", "six", "10.88.0.0/24", 1, 2);
        n.subnet6 = "fd00:1::/64".into();
        n.gateway6 = "fd00:1::1".into();
        insert_network(c, &n).unwrap();
        assert_eq!(find_network(c, "six").unwrap(), Some(n.clone()));
        assert_eq!(
            ipv6_subnets(c).unwrap(),
            [("six".into(), "fd00:1::/64".into())]
        );
        assert_eq!(last_ip6(c, "n6").unwrap(), 0);
        set_last_ip6(c, "n6", "fd00:1::7".parse().unwrap()).unwrap();
        assert_eq!(
            last_ip6(c, "n6").unwrap(),
            u128::from("fd00:1::7".parse::<Ipv6Addr>().unwrap())
        );
        container(c, "c1", "a");
        container(c, "c2", "b");
        container(c, "c3", "c");
        let mut e1 = ep("e1", "c1", "n6", "10.88.0.2");
        e1.ip6 = Some("fd00:1::2".parse().unwrap());
        insert_endpoint(c, &e1).unwrap();
        // Two endpoints without IPv6 do not collide.
        insert_endpoint(c, &ep("e2", "c2", "n6", "10.88.0.3")).unwrap();
        let mut e3 = ep("e3", "c3", "n6", "10.88.0.4");
        e3.ip6 = e1.ip6;
        let e = insert_endpoint(c, &e3).unwrap_err().to_string();
        assert_eq!(e, "address fd00:1::2 is already in use");
        assert_eq!(endpoints_of_container(c, "c1").unwrap(), [e1.clone()]);
        assert_eq!(used_ips6(c, "n6").unwrap(), [u128::from(e1.ip6.unwrap())]);
    }

    #[test]
    fn ipv6_only_endpoints_have_no_ipv4_and_do_not_collide() {
        let s = Store::open_in_memory().unwrap();
        let c = s.conn();
        let mut n = net("n6", "six", "", 0, 0);
        n.gateway = String::new();
        n.subnet6 = "fd00:2::/64".into();
        n.gateway6 = "fd00:2::1".into();
        insert_network(c, &n).unwrap();
        assert!(!n.has_ipv4());
        // A v6-only network overlaps no IPv4 subnet, 0.0.0.0 included.
        assert!(overlapping_networks(c, 0, u32::MAX).unwrap().is_empty());
        container(c, "c1", "a");
        container(c, "c2", "b");
        let mut e1 = ep("e1", "c1", "n6", "0.0.0.0");
        e1.ip6 = Some("fd00:2::2".parse().unwrap());
        let mut e2 = ep("e2", "c2", "n6", "0.0.0.0");
        e2.ip6 = Some("fd00:2::3".parse().unwrap());
        insert_endpoint(c, &e1).unwrap();
        insert_endpoint(c, &e2).unwrap();
        let ip: Option<i64> = c
            .query_row("SELECT ip FROM endpoints WHERE id = 'e1'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ip, None, "no IPv4 is NULL, not 0");
        assert_eq!(endpoints_of_container(c, "c2").unwrap(), [e2.clone()]);
        assert_eq!(e2.ip4(), None);
        assert!(used_ips(c, "n6").unwrap().is_empty());
        assert_eq!(endpoints_of_network(c, "n6").unwrap().len(), 2);
    }

    #[test]
    fn last_ip_starts_at_zero_and_follows_allocations() {
        let s = Store::open_in_memory().unwrap();
        let c = s.conn();
        insert_network(c, &net("n1", "one", "10.88.0.0/24", 1, 2)).unwrap();
        assert_eq!(last_ip(c, "n1").unwrap(), 0);
        set_last_ip(c, "n1", "10.88.0.7".parse().unwrap()).unwrap();
        assert_eq!(
            last_ip(c, "n1").unwrap(),
            u32::from(Ipv4Addr::new(10, 88, 0, 7))
        );
    }
}
