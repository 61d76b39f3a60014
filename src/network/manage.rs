//! Network lifecycle: create (validated before anything is made, undone on
//! failure), list, inspect as Docker-shaped JSON, remove, prune, reload.

use super::driver::{DriverKind, DriverSet, Drivers};
use super::names::{self, DEFAULT_NETWORK};
use super::netlink::Netlink;
use super::undo::Undo;
use super::{desired, ipam, ipam6, pool, rules, NetworkError};
use crate::store::networks::{self as rows, NetworkRow};
use crate::store::Store;
use crate::{util, Instance};
use ipnet::{Ipv4Net, Ipv6Net};
use rusqlite::Connection;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// What `network create` asked for.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub name: String,
    pub driver: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
    /// Raw `-o KEY=VALUE` options.
    pub options: Vec<String>,
    /// `--ipv6`: the network gets an IPv6 subnet too.
    pub ipv6: bool,
    /// `--ipv4=false`: an IPv6-only network (needs `--ipv6`).
    pub no_ipv4: bool,
    /// `--subnet` / `--gateway` values that are IPv6.
    pub subnet6: Option<String>,
    pub gateway6: Option<String>,
}

/// Everything about a new network that can be decided before touching the
/// host: validated inputs, plus the host facts the choice depends on.
struct Plan {
    driver: DriverKind,
    subnet: Option<Ipv4Net>,
    gateway: Option<Ipv4Addr>,
    mtu: u32,
    /// The host-side device the options name (bridge_name=, parent=).
    device: Option<String>,
    host_routes: Vec<Ipv4Net>,
    /// The driver's options kept in the row (Docker 28's bridge options,
    /// minirt.antispoof, macvlan's parent and mode).
    extra_options: BTreeMap<String, String>,
    /// IPv6: None = none; Some(None) = a /64 from the ULA pool.
    ipv6: Option<Option<Ipv6Net>>,
    gateway6: Option<Ipv6Addr>,
    host_routes6: Vec<Ipv6Net>,
    /// `--ipv4=false`: the network has no IPv4 subnet.
    no_ipv4: bool,
}

/// The IPv6 part of `network create`, validated before anything is made.
fn plan_ipv6(
    req: &CreateRequest,
) -> Result<(Option<Option<Ipv6Net>>, Option<Ipv6Addr>), NetworkError> {
    if req.no_ipv4 && !req.ipv6 {
        return Err(NetworkError::Invalid(
            "--ipv4=false needs --ipv6: IPv4 or IPv6 must be enabled".into(),
        ));
    }
    if req.no_ipv4 && (req.subnet.is_some() || req.gateway.is_some()) {
        return Err(NetworkError::Invalid(format!(
            "invalid --{} {:?}: the network has no IPv4 (--ipv4=false)",
            if req.subnet.is_some() {
                "subnet"
            } else {
                "gateway"
            },
            req.subnet
                .as_deref()
                .or(req.gateway.as_deref())
                .unwrap_or_default()
        )));
    }
    if !req.ipv6 {
        if req.subnet6.is_some() || req.gateway6.is_some() {
            return Err(NetworkError::Invalid(
                "an IPv6 --subnet or --gateway needs --ipv6".into(),
            ));
        }
        return Ok((None, None));
    }
    let subnet = req
        .subnet6
        .as_deref()
        .map(ipam6::parse_subnet)
        .transpose()?;
    let gateway = match &req.gateway6 {
        None => None,
        Some(g) => {
            let gw: Ipv6Addr = g.parse().map_err(|_| {
                NetworkError::Invalid(format!("invalid gateway {g:?}: expected an IPv6 address"))
            })?;
            let Some(net) = subnet else {
                return Err(NetworkError::Invalid(
                    "an IPv6 --gateway needs an IPv6 --subnet (the gateway must lie inside it)"
                        .into(),
                ));
            };
            ipam6::check_gateway(net, gw)?;
            Some(gw)
        }
    };
    Ok((Some(subnet), gateway))
}

fn plan(drivers: &Drivers, req: &CreateRequest) -> Result<Plan, NetworkError> {
    names::validate_name(&req.name)?;
    crate::validate::network_name_not_reserved(&req.name).map_err(NetworkError::Invalid)?;
    let kind = DriverKind::parse(&req.driver)?;
    let dp = drivers.driver(kind).plan(&req.options, req.internal)?;
    if dp.needs_subnet && req.subnet.is_none() {
        return Err(NetworkError::Invalid(format!(
            "the {kind} driver needs --subnet (the addresses of the parent's segment)"
        )));
    }
    let nl = &*drivers.netlink()?;
    if kind == DriverKind::Macvlan {
        if let Some(parent) = &dp.device {
            if nl.link(parent)?.is_none() {
                return Err(NetworkError::NotFound(format!(
                    "parent interface {parent} does not exist"
                )));
            }
        }
    }
    let (ipv6, gateway6) = plan_ipv6(req)?;
    if ipv6.is_some() && kind != DriverKind::Bridge {
        return Err(NetworkError::Invalid(format!(
            "not implemented: --ipv6 with the {kind} driver"
        )));
    }
    let subnet = req.subnet.as_deref().map(ipam::parse_subnet).transpose()?;
    let gateway = match &req.gateway {
        None => None,
        Some(g) => {
            let gw: Ipv4Addr = g.parse().map_err(|_| {
                NetworkError::Invalid(format!("invalid gateway {g:?}: expected an IPv4 address"))
            })?;
            let Some(net) = subnet else {
                return Err(NetworkError::Invalid(
                    "--gateway needs --subnet (the gateway must lie inside a known subnet)".into(),
                ));
            };
            ipam::check_gateway(net, gw)?;
            Some(gw)
        }
    };
    if dp.options.contains_key(names::OPT_GATEWAY_MODE6) && ipv6.is_none() {
        return Err(NetworkError::Invalid(
            "gateway_mode_ipv6 needs --ipv6".into(),
        ));
    }
    let host_routes = host_routes(nl)?;
    let host_routes6 = match ipv6 {
        Some(_) => nl
            .ipv6_routes()?
            .into_iter()
            .filter(|r| r.prefix_len() > 0)
            .collect(),
        None => vec![],
    };
    let mtu = match (dp.mtu, kind) {
        (Some(m), _) => m,
        // A macvlan takes its parent's MTU.
        (None, DriverKind::Macvlan) => 0,
        // Made by overlay::create, never through this plan.
        (None, DriverKind::Overlay) => 0,
        (None, DriverKind::Bridge) => nl.default_route_mtu()?.unwrap_or(1500),
    };
    Ok(Plan {
        driver: kind,
        subnet,
        gateway,
        mtu,
        device: dp.device,
        host_routes,
        extra_options: dp.options,
        ipv6,
        gateway6,
        host_routes6,
        no_ipv4: req.no_ipv4,
    })
}

/// Host routes a new subnet must not overlap (the default route overlaps
/// everything and is left out, like Docker does).
fn host_routes(nl: &Netlink) -> Result<Vec<Ipv4Net>, NetworkError> {
    Ok(nl
        .ipv4_routes()?
        .into_iter()
        .filter(|r| r.prefix_len() > 0)
        .collect())
}

/// Builds the row: subnet from the request or the pools, gateway, bridge name.
fn new_row(
    c: &Connection,
    name: &str,
    internal: bool,
    p: &Plan,
    device: Option<String>,
) -> Result<NetworkRow, NetworkError> {
    let existing = rows::list_networks(c)?;
    if existing.iter().any(|n| n.name == name) {
        return Err(NetworkError::Conflict(format!(
            "network with name {name} already exists"
        )));
    }
    let subnet = match p.subnet {
        _ if p.no_ipv4 => None,
        Some(s) => {
            let (start, end) = (u32::from(s.network()), u32::from(s.broadcast()));
            if let Some(o) = rows::overlapping_networks(c, start, end)?.first() {
                return Err(NetworkError::Conflict(format!(
                    "invalid subnet {s}: it overlaps with network {} ({})",
                    o.name, o.subnet
                )));
            }
            // Not made yet, the default network still has its subnet: the
            // first free pool entry it will take on first use.
            if name != DEFAULT_NETWORK && !existing.iter().any(|n| n.name == DEFAULT_NETWORK) {
                let mut taken: Vec<Ipv4Net> = existing
                    .iter()
                    .filter_map(|n| n.subnet.parse().ok())
                    .collect();
                taken.extend(p.host_routes.iter().copied());
                if let Some(d) = pool::pick_subnet(&taken).filter(|d| pool::overlaps(*d, s)) {
                    return Err(NetworkError::Conflict(format!(
                        "invalid subnet {s}: it overlaps with the default network {DEFAULT_NETWORK} ({d})"
                    )));
                }
            }
            Some(s)
        }
        None => {
            let mut taken: Vec<Ipv4Net> = existing
                .iter()
                .filter_map(|n| n.subnet.parse().ok())
                .collect();
            taken.extend(p.host_routes.iter().copied());
            Some(pool::pick_subnet(&taken).ok_or_else(|| {
                NetworkError::Conflict(
                    "no free subnet left in the default address pools: give one with --subnet"
                        .into(),
                )
            })?)
        }
    };
    let gateway = subnet.map(|s| p.gateway.unwrap_or_else(|| ipam::default_gateway(s)));
    let (subnet6, gateway6) = match p.ipv6 {
        None => (String::new(), String::new()),
        Some(want) => {
            let s6 = pick_subnet6(c, want, &p.host_routes6)?;
            let gw6 = p.gateway6.unwrap_or_else(|| ipam6::default_gateway(s6));
            (s6.to_string(), gw6.to_string())
        }
    };
    let id = util::new_id();
    let device = device.unwrap_or_else(|| names::bridge_name(&id));
    let mut options = p.extra_options.clone();
    if p.driver == DriverKind::Bridge {
        options.insert("com.docker.network.bridge.name".to_string(), device.clone());
    }
    if p.mtu > 0 {
        options.insert(
            "com.docker.network.driver.mtu".to_string(),
            p.mtu.to_string(),
        );
    }
    Ok(NetworkRow {
        id,
        name: name.to_string(),
        driver: p.driver.as_str().into(),
        // An IPv6-only network: '' and 0 (no IPv4 range to overlap).
        subnet: subnet.map(|s| s.to_string()).unwrap_or_default(),
        net_start: subnet.map_or(0, |s| u32::from(s.network())),
        net_end: subnet.map_or(0, |s| u32::from(s.broadcast())),
        gateway: gateway.map(|g| g.to_string()).unwrap_or_default(),
        device,
        internal,
        mtu: p.mtu,
        options,
        created: util::now_nanos(),
        subnet6,
        gateway6,
    })
}

/// The IPv6 subnet of a new network: the requested one when it overlaps no
/// other network's (a host route is the user's call, as for IPv4), else a
/// /64 of the ULA pool overlapping neither networks nor host routes.
fn pick_subnet6(
    c: &Connection,
    want: Option<Ipv6Net>,
    host_routes6: &[Ipv6Net],
) -> Result<Ipv6Net, NetworkError> {
    let others: Vec<(String, Ipv6Net)> = rows::ipv6_subnets(c)?
        .into_iter()
        .filter_map(|(n, s)| Some((n, s.parse().ok()?)))
        .collect();
    if let Some(s) = want {
        if let Some((name, o)) = others.iter().find(|(_, o)| ipam6::overlaps(s, *o)) {
            return Err(NetworkError::Conflict(format!(
                "invalid subnet {s}: it overlaps with network {name} ({o})"
            )));
        }
        return Ok(s);
    }
    let mut taken: Vec<Ipv6Net> = others.iter().map(|(_, s)| *s).collect();
    taken.extend(host_routes6.iter().copied());
    let pool = ipam6::ula_pool()?;
    let draws = std::iter::repeat_with(rand::random::<u128>).take(16);
    ipam6::pick_ula(pool, &taken, draws).ok_or_else(|| {
        NetworkError::Conflict(format!(
            "no free IPv6 /64 found in the pool {pool}: give one with --subnet"
        ))
    })
}

/// `network create`: validates everything, then in one store transaction
/// inserts the row and creates bridge and rules; any failure undoes it all.
pub fn create(
    inst: &Instance,
    store: &mut Store,
    req: &CreateRequest,
) -> Result<NetworkRow, NetworkError> {
    // Scope global: the network lives in the cluster store; each host's
    // row is made on its first use (overlay::join).
    if req.driver == DriverKind::Overlay.as_str() {
        return super::overlay::create(store, req);
    }
    let drivers = Drivers::open(inst)?;
    let p = plan(&drivers, req)?;
    let driver = drivers.driver(p.driver);
    // Declared before `undo`: dropped after it, so a failure's undo runs
    // while the intent still names this live process.
    let mut intent = None;
    let mut undo = Undo::new();
    // Held until the row is committed: a heal in between would find rules
    // the store does not own yet and remove them.
    let _fw = rules::lock(inst)?;
    let row = store.write(|tx| {
        let row = new_row(tx, &req.name, req.internal, &p, p.device.clone())?;
        rows::insert_network(tx, &row)?;
        crate::container::events::record(
            tx,
            "network",
            "create",
            &row.id,
            &[("name", &row.name), ("type", &row.driver)],
        );
        crate::fault::point("net-create-after-row");
        // Checked before the intent, so a crash never makes healing delete
        // a device that was someone else's (the driver checks it again).
        if p.driver == DriverKind::Bridge && drivers.netlink()?.link(&row.device)?.is_some() {
            return Err(NetworkError::Conflict(format!(
                "bridge name {} is already in use by a device on this host",
                row.device
            )));
        }
        intent = Some(begin_create(inst, &row)?);
        driver.ensure(&row, true, &mut undo)?;
        crate::fault::point("net-create-after-rules");
        Ok::<_, NetworkError>(row)
    })?;
    undo.commit();
    drop(intent);
    Ok(row)
}

/// Records that this process is making the devices of `row` (see
/// crate::intent; network::reconcile::undo_create heals it).
fn begin_create(inst: &Instance, row: &NetworkRow) -> Result<crate::intent::Held, NetworkError> {
    crate::intent::begin(
        inst,
        &crate::intent::Intent::NetworkCreate {
            id: row.id.clone(),
            name: row.name.clone(),
            driver: row.driver.clone(),
            bridge: row.device.clone(),
            subnet: row.subnet.clone(),
            gateway: row.gateway.clone(),
            internal: row.internal,
        },
    )
    .map_err(|e| NetworkError::Invalid(format!("cannot record the network's creation: {e}")))
}

/// The row of the default network, inserted when missing. Only the row: the
/// bridge and rules are made by `attach` (which ensures them anyway), so this
/// is safe inside the container's transaction.
pub(crate) fn default_network_row(
    inst: &Instance,
    c: &Connection,
) -> Result<NetworkRow, NetworkError> {
    let existing = rows::list_networks(c)?;
    if let Some(n) = existing.into_iter().find(|n| n.name == DEFAULT_NETWORK) {
        return Ok(n);
    }
    let nl = Netlink::open()?;
    let p = Plan {
        driver: DriverKind::Bridge,
        subnet: None,
        gateway: None,
        mtu: nl.default_route_mtu()?.unwrap_or(1500),
        device: None,
        host_routes: host_routes(&nl)?,
        extra_options: BTreeMap::new(),
        ipv6: None,
        gateway6: None,
        host_routes6: vec![],
        no_ipv4: false,
    };
    let row = new_row(
        c,
        DEFAULT_NETWORK,
        false,
        &p,
        Some(names::default_bridge_name(&inst.tag)),
    )?;
    rows::insert_network(c, &row)?;
    Ok(row)
}

/// Creates the default network `bridge` (row, bridge device and rules) if it
/// does not exist yet. Optional: `allocate` inserts the row by itself and
/// `attach` makes the device, so callers need not call this first.
pub fn ensure_default(inst: &Instance, store: &mut Store) -> Result<NetworkRow, NetworkError> {
    let drivers = Drivers::open(inst)?;
    let mut intent = None;
    let mut undo = Undo::new();
    let _fw = rules::lock(inst)?;
    let row = store.write(|tx| {
        let known = rows::list_networks(tx)?
            .iter()
            .any(|n| n.name == DEFAULT_NETWORK);
        let row = default_network_row(inst, tx)?;
        if !known {
            intent = Some(begin_create(inst, &row)?);
        }
        drivers.of(&row)?.ensure(&row, false, &mut undo)?;
        Ok::<_, NetworkError>(row)
    })?;
    undo.commit();
    drop(intent);
    Ok(row)
}

/// A network by name, id or unique id prefix, or Docker's "not found" error.
pub fn find(c: &Connection, key: &str) -> Result<NetworkRow, NetworkError> {
    rows::find_network(c, key)?.ok_or_else(|| {
        NetworkError::NotFound(format!(
            "network {} not found",
            crate::validate::escape_controls(key)
        ))
    })
}

pub fn list(store: &Store) -> Result<Vec<NetworkRow>, NetworkError> {
    let mut nets = rows::list_networks(store.conn())?;
    // Overlay networks this host has not used yet (scope global).
    if super::overlay::configured() {
        let remote = super::overlay::list_remote(&nets);
        nets.extend(remote);
    }
    Ok(nets)
}

/// `find`, then an overlay network of the cluster store this host has not
/// used yet (`network inspect`).
pub fn find_any(c: &Connection, key: &str) -> Result<NetworkRow, NetworkError> {
    match find(c, key) {
        Err(NetworkError::NotFound(m)) if super::overlay::configured() => {
            super::overlay::find_remote(key).ok_or(NetworkError::NotFound(m))
        }
        r => r,
    }
}

/// `network inspect` for one network, shaped like Docker's.
pub fn inspect_json(c: &Connection, n: &NetworkRow) -> Result<Value, NetworkError> {
    // An overlay's local row holds this host's block; the network (and the
    // containers' prefix) is the overlay's subnet.
    let subnet = n
        .options
        .get(super::overlay::OPT_SUBNET)
        .unwrap_or(&n.subnet);
    let prefix = subnet
        .parse::<Ipv4Net>()
        .map(|s| s.prefix_len())
        .unwrap_or(32);
    let prefix6 = n
        .subnet6
        .parse::<Ipv6Net>()
        .map(|s| s.prefix_len())
        .unwrap_or(128);
    let mut containers = Map::new();
    for (ep, name) in rows::endpoints_of_network(c, &n.id)? {
        containers.insert(
            ep.container_id.clone(),
            json!({
                "Name": name,
                "EndpointID": ep.id,
                "MacAddress": ep.mac,
                "IPv4Address": ep.ip4().map(|a| format!("{a}/{prefix}")).unwrap_or_default(),
                "IPv6Address": ep.ip6.map(|a| format!("{a}/{prefix6}")).unwrap_or_default(),
            }),
        );
    }
    let mut config = vec![];
    if n.has_ipv4() {
        config.push(json!({"Subnet": subnet, "Gateway": n.gateway}));
    }
    if !n.subnet6.is_empty() {
        config.push(json!({"Subnet": n.subnet6, "Gateway": n.gateway6}));
    }
    Ok(json!({
        "Name": n.name,
        "Id": n.id,
        "Created": util::rfc3339(n.created),
        "Scope": if n.driver == DriverKind::Overlay.as_str() { "global" } else { "local" },
        "Driver": n.driver,
        "EnableIPv4": n.has_ipv4(),
        "EnableIPv6": !n.subnet6.is_empty(),
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": config,
        },
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "Containers": containers,
        "Options": n.options,
        "Labels": {},
    }))
}

/// `network rm`: refused while containers are attached (naming them);
/// rules and bridge go in the same transaction as the row.
pub fn remove(inst: &Instance, store: &mut Store, key: &str) -> Result<NetworkRow, NetworkError> {
    if let Some(n) = super::overlay::remove(inst, store, key)? {
        return Ok(n);
    }
    remove_any(inst, store, key, false)
}

/// `remove`, the default network included when `default_too` (prune: it is
/// made again on first use, and a clean-up leaves nothing behind).
fn remove_any(
    inst: &Instance,
    store: &mut Store,
    key: &str,
    default_too: bool,
) -> Result<NetworkRow, NetworkError> {
    let drivers = Drivers::open(inst)?;
    let mut intent = None;
    // Held until the row is gone: a heal in between would restore the rules.
    let _fw = rules::lock(inst)?;
    store.write(|tx| {
        let n = find(tx, key)?;
        if n.name == DEFAULT_NETWORK && !default_too {
            return Err(NetworkError::Invalid(format!(
                "{DEFAULT_NETWORK} is a pre-defined network and cannot be removed"
            )));
        }
        let attached: Vec<String> = rows::endpoints_of_network(tx, &n.id)?
            .into_iter()
            .map(|(ep, name)| {
                if name.is_empty() {
                    ep.container_id
                        .get(..12)
                        .unwrap_or(&ep.container_id)
                        .to_string()
                } else {
                    name
                }
            })
            .collect();
        if !attached.is_empty() {
            return Err(NetworkError::Conflict(format!(
                "cannot remove network {}: in use by container{} {}",
                n.name,
                if attached.len() > 1 { "s" } else { "" },
                attached.join(", ")
            )));
        }
        intent = Some(
            crate::intent::begin(
                inst,
                &crate::intent::Intent::NetworkRemove { id: n.id.clone() },
            )
            .map_err(|e| {
                NetworkError::Invalid(format!("cannot record the network's removal: {e}"))
            })?,
        );
        rows::delete_network(tx, &n.id)?;
        crate::container::events::record(
            tx,
            "network",
            "destroy",
            &n.id,
            &[("name", &n.name), ("type", &n.driver)],
        );
        crate::fault::point("net-rm-after-row");
        drivers.of(&n)?.remove(&n)?;
        crate::fault::point("net-rm-after-bridge");
        if rows::list_networks(tx)?.is_empty() {
            super::fwbackend::for_instance(inst)?.rebuild(&Default::default())?;
            super::antispoof::drop_table(inst)?;
        }
        Ok(n)
    })
}

/// `network prune`: removes every network no container uses; returns their names.
pub fn prune(inst: &Instance, store: &mut Store) -> Result<Vec<String>, NetworkError> {
    let mut removed = vec![];
    for n in rows::list_networks(store.conn())? {
        if rows::endpoints_of_network(store.conn(), &n.id)?.is_empty() {
            // An overlay network stays in the cluster: this host's part goes.
            if n.driver == DriverKind::Overlay.as_str() {
                super::overlay::release(inst, store, &n)?;
                super::overlay::agent::poke(inst);
                removed.push(n.name);
                continue;
            }
            removed.push(remove_any(inst, store, &n.id, true)?.name);
        }
    }
    Ok(removed)
}

/// `network reload`: bridges re-created where missing, then the whole
/// firewall table rebuilt from the store in one batch; then the DNS
/// responder follows (`dns::follow`).
pub fn reload(inst: &Instance, store: &mut Store) -> Result<(), NetworkError> {
    let drivers = Drivers::open(inst)?;
    let fw = super::fwbackend::for_instance(inst)?;
    let mut undo = Undo::new();
    let _fw = rules::lock(inst)?;
    // A network that cannot be made again (a macvlan whose parent is gone)
    // does not keep the others from theirs, nor the firewall rebuild.
    let mut errors = vec![];
    for n in rows::list_networks(store.conn())? {
        if let Err(e) = drivers.of(&n).and_then(|d| d.ensure(&n, false, &mut undo)) {
            errors.push(format!("network {}: {e}", n.name));
        }
    }
    fw.rebuild(&desired::snapshot(store.conn())?)?;
    super::antispoof::rebuild(inst, store.conn())?;
    undo.commit();
    drop(_fw);
    if !errors.is_empty() {
        return Err(NetworkError::Netlink(errors.join("; ")));
    }
    super::dns::control::follow(inst);
    Ok(())
}
