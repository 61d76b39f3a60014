//! Glue between stored networks / port bindings and the firewall renderer:
//! builds FwNetwork / FwPort values and applies the scripts with nft.rs.

use super::firewall::{self, FwNetwork, FwPort};
use super::undo::Undo;
use super::{nft, NetworkError};
use crate::store::networks::{self as rows, EndpointRow, NetworkRow, PortBindingRow};
use crate::Instance;
use rusqlite::Connection;
use std::collections::HashMap;
use std::net::Ipv4Addr;

pub fn fw_network(net: &NetworkRow) -> Result<FwNetwork, NetworkError> {
    let subnet = net.subnet.parse().map_err(|_| {
        NetworkError::Invalid(format!(
            "network {} has a bad subnet {:?} in the store",
            net.name, net.subnet
        ))
    })?;
    Ok(FwNetwork {
        id: net.id.clone(),
        bridge: net.bridge.clone(),
        subnet,
        internal: net.internal,
    })
}

pub fn fw_ports(ep: &EndpointRow, ports: &[PortBindingRow]) -> Result<Vec<FwPort>, NetworkError> {
    ports
        .iter()
        .map(|p| {
            Ok(FwPort {
                proto: p.proto.parse()?,
                host_ip: p.host_ip.parse().map_err(|_| {
                    NetworkError::Invalid(format!("bad host address {:?} in the store", p.host_ip))
                })?,
                host_port: p.host_port,
                ctr_ip: ep.ip,
                ctr_port: p.container_port,
            })
        })
        .collect()
}

/// The base rules every healthy table holds (as `nft list table` prints them).
const BASE_MARKERS: &[&str] = &[
    "jump ports",
    "@pm_tcp",
    "@pm_any_udp",
    "@post_dnat_oif",
    "@post_src",
    "@fwd_iif",
    "@fwd_oif",
];

fn base_is_intact(listing: &str) -> bool {
    BASE_MARKERS.iter().all(|m| listing.contains(m))
}

/// True when `listing` (the output of `nft list table`) still holds the base
/// rules, every network's chains and every port mapping. Pure.
pub fn table_is_healthy(
    listing: &str,
    nets: &[NetworkRow],
    mappings: &[(Ipv4Addr, PortBindingRow)],
) -> bool {
    base_is_intact(listing)
        && nets
            .iter()
            .all(|n| listing.contains(&format!("{}_out", firewall::chain_prefix(&n.id))))
        && mappings
            .iter()
            .all(|(ip, b)| listing.contains(&format!(": {ip} . {}", b.container_port)))
}

/// Self-healing: when our table is gone or damaged (`nft flush ruleset`, a
/// firewall reload), rebuild it from the store. Returns whether it had to.
/// Costs one `nft list` when all is well.
pub fn heal(inst: &Instance, c: &Connection) -> Result<bool, NetworkError> {
    let nets = rows::list_networks(c)?;
    if nets.is_empty() {
        return Ok(false);
    }
    let mut eps: HashMap<String, Ipv4Addr> = HashMap::new();
    for n in &nets {
        for (ep, _) in rows::endpoints_of_network(c, &n.id)? {
            eps.insert(ep.id.clone(), ep.ip);
        }
    }
    let mappings: Vec<(Ipv4Addr, PortBindingRow)> = rows::all_port_bindings(c)?
        .into_iter()
        .filter_map(|b| eps.get(&b.endpoint_id).map(|ip| (*ip, b)))
        .collect();
    let healthy = nft::list_table(&inst.nft_table())
        .map(|l| table_is_healthy(&l, &nets, &mappings))
        .unwrap_or(false);
    if healthy {
        return Ok(false);
    }
    reload(inst, c)?;
    Ok(true)
}

/// Creates the instance's table, maps and base chains if missing. The undo
/// deletes the table only while the store holds no network (read afresh when
/// the undo runs, after the failed transaction rolled back), so a concurrent
/// minirt process that also uses the table never loses it.
/// Returns whether the table had to be created.
pub fn ensure_base(inst: &Instance, undo: &mut Undo) -> Result<bool, NetworkError> {
    let table = inst.nft_table();
    // Fast path (every networked `run`): the table is there. A damaged
    // table is repaired by `heal`, which every other command runs.
    if let Ok(true) = nft::table_exists(&table) {
        return Ok(false);
    }
    if let Ok(listing) = nft::list_table(&table) {
        if base_is_intact(&listing) {
            return Ok(false);
        }
        // Someone emptied our chains (or a delete re-declared a flushed
        // table): rebuild everything the store says should be there.
        let store = crate::store::Store::open(&inst.db_path())?;
        reload(inst, store.conn())?;
        return Ok(true);
    }
    nft::apply(&firewall::render_base(&table))?;
    let db = inst.db_path();
    undo.push(format!("nftables table {table}"), move || {
        let store = crate::store::Store::open(&db).map_err(|e| e.to_string())?;
        if rows::list_networks(store.conn())
            .map_err(|e| e.to_string())?
            .is_empty()
        {
            nft::delete_table(&table).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    Ok(true)
}

/// Adds (idempotently) the network's chains and elements. The undo is only
/// registered by the caller's choice (`fresh`): re-applying the rules of a
/// network in use must never remove them on a later failure.
pub fn ensure_network(
    inst: &Instance,
    net: &NetworkRow,
    fresh: bool,
    undo: &mut Undo,
) -> Result<(), NetworkError> {
    let table = inst.nft_table();
    let fw = fw_network(net)?;
    nft::apply(&firewall::render_network_add(&table, &fw))?;
    if fresh {
        undo.push(format!("firewall rules of {}", net.name), move || {
            nft::apply(&firewall::render_network_del(&table, &fw)).map_err(|e| e.to_string())
        });
    }
    Ok(())
}

pub fn remove_network(inst: &Instance, net: &NetworkRow) -> Result<(), NetworkError> {
    // Deletes are written as add-then-delete (idempotent); on a missing table
    // that would re-declare it without its base rules. Nothing to remove then.
    if let Ok(false) = nft::table_exists(&inst.nft_table()) {
        return Ok(());
    }
    nft::apply(&firewall::render_network_del(
        &inst.nft_table(),
        &fw_network(net)?,
    ))
}

pub fn add_ports(
    inst: &Instance,
    ep: &EndpointRow,
    ports: &[PortBindingRow],
    undo: &mut Undo,
) -> Result<(), NetworkError> {
    let table = inst.nft_table();
    let fw = fw_ports(ep, ports)?;
    nft::apply(&firewall::render_ports_add(&table, &fw))?;
    undo.push(format!("port mappings of {}", ep.host_veth), move || {
        nft::apply(&firewall::render_ports_del(&table, &fw)).map_err(|e| e.to_string())
    });
    Ok(())
}

pub fn remove_ports(
    inst: &Instance,
    ep: &EndpointRow,
    ports: &[PortBindingRow],
) -> Result<(), NetworkError> {
    if let Ok(false) = nft::table_exists(&inst.nft_table()) {
        return Ok(());
    }
    nft::apply(&firewall::render_ports_del(
        &inst.nft_table(),
        &fw_ports(ep, ports)?,
    ))
}

/// Rebuilds the whole table from the store: base, every network, every port
/// mapping in one atomic batch, after the old table is deleted. With no network left the table goes away.
pub fn reload(inst: &Instance, c: &Connection) -> Result<(), NetworkError> {
    let table = inst.nft_table();
    let nets = rows::list_networks(c)?;
    if nets.is_empty() {
        return nft::delete_table(&table);
    }
    // Two batches: nft refuses verdict-map elements jumping to chains of a
    // table deleted earlier in the same batch, so the table goes first and
    // everything is rebuilt in the second (mappings pause for that moment).
    nft::delete_table(&table)?;
    // The base (maps included) must exist before a batch adds elements to
    // the interval map post_src: nft fails with ENOENT when both share a batch.
    nft::apply(&firewall::render_base(&table))?;
    let mut script = String::new();
    let mut eps: HashMap<String, EndpointRow> = HashMap::new();
    for n in &nets {
        script += &firewall::render_network_add(&table, &fw_network(n)?);
        for (ep, _) in rows::endpoints_of_network(c, &n.id)? {
            eps.insert(ep.id.clone(), ep);
        }
    }
    let bindings = rows::all_port_bindings(c)?;
    for ep in eps.values() {
        let mine: Vec<PortBindingRow> = bindings
            .iter()
            .filter(|b| b.endpoint_id == ep.id)
            .cloned()
            .collect();
        script += &firewall::render_ports_add(&table, &fw_ports(ep, &mine)?);
    }
    nft::apply(&script)
}

/// Removes the whole table (when the last network goes).
pub fn drop_table(inst: &Instance) -> Result<(), NetworkError> {
    nft::delete_table(&inst.nft_table())
}
