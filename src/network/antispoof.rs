//! Anti-spoofing: a container may send only frames whose source is its own
//! endpoint: for IPv4 its MAC and its address, for ARP its MAC as both the
//! Ethernet and the ARP sender and its address as the ARP sender address.
//! Everything else entering a bridge from a guarded container port (another
//! container's address, a forged MAC, a gratuitous ARP for someone else,
//! other ethertypes, IPv6) is dropped in the bridge family's prerouting hook:
//! before the bridge learns the source MAC, forwards the frame, or hands it
//! to the host, so neither another container nor the host's neighbour table
//! can be poisoned.
//!
//! One `table bridge <Instance::nft_table>` per instance (the inet table's
//! name in another family, so two roots coexist) holds three sets with one
//! element per endpoint each, so a frame costs the same three hash lookups
//! however many containers run:
//!
//! | set         | key                                             |
//! |-------------|-------------------------------------------------|
//! | `ports`     | host veth (the guarded bridge ports)            |
//! | `allow_ip`  | host veth . MAC . IPv4 source                   |
//! | `allow_arp` | host veth . MAC . ARP sender MAC . sender IPv4  |
//! | `allow_ip6` | host veth . MAC . IPv6 source (own, link-local)  |
//!
//! A port not in `ports` (an endpoint of a network created with
//! `-o minirt.antispoof=false`, or a device that is not ours) is not looked
//! at. IPv6 from a guarded port passes only from the endpoint's own IPv6
//! address or its link-local one (EUI-64 of its MAC), so neighbour discovery
//! comes only from those; router advertisements and redirects are dropped
//! whatever their source (a container announcing itself as a router is the
//! CVE-2020-13401 class). An endpoint without IPv6 sends no IPv6 at all.
//! Not checked: the target address and link-layer option inside a
//! neighbour advertisement (nft 1.0.6 cannot match them against a set).
//!
//! Here: the wanted state from store rows (pure) and the effects: `plug` /
//! `unplug` (one nfnetlink batch each), `heal`, `rebuild`, `drop_table`.
//! The table as data (the script, the nfnetlink elements, the listing a heal
//! compares) is in `antispoof/rules.rs`.

use super::nftgen::{host_identity, save_marker};
use super::undo::Undo;
use super::{ipam, nfnl, nft, NetworkError};
use crate::store::networks::{self as rows, EndpointRow, NetworkRow};
use crate::Instance;
pub(crate) use rules::elements;
use rules::{is_intact, render_rebuild, render_table};
use rusqlite::Connection;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The network option (`network create -o minirt.antispoof=false`) that
/// leaves a network's containers unguarded (a container that routes for
/// others must send other sources).
pub(crate) const OPTION: &str = "minirt.antispoof";

mod rules;

/// What one endpoint may send as.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Guard {
    /// The host end of the veth pair: the bridge port the frames come in on.
    pub port: String,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    /// The endpoint's IPv6 address, on a network with IPv6.
    pub ip6: Option<Ipv6Addr>,
}

impl Guard {
    /// The IPv6 sources the endpoint may use: link-local first, then its own.
    fn sources6(&self) -> Vec<Ipv6Addr> {
        match self.ip6 {
            Some(ip6) => vec![super::ipam6::link_local(self.mac), ip6],
            None => vec![],
        }
    }
}

/// Whether the network's containers are guarded (the default).
pub(crate) fn enabled(net: &NetworkRow) -> bool {
    net.driver == super::driver::DriverKind::Bridge.as_str()
        && net.options.get(OPTION).map(String::as_str) != Some("false")
}

/// The guard of an endpoint: its MAC is the one `bridge::connect` gives the
/// container's interface.
pub(crate) fn guard_of(ep: &EndpointRow) -> Guard {
    Guard {
        port: ep.host_ifname.clone(),
        mac: super::ipam6::endpoint_mac(ep.ip, ep.ip6),
        ip: ep.ip,
        ip6: ep.ip6,
    }
}

/// The guards the store asks for: None when there is no network (then there
/// is no table either), else one per endpoint of a guarded network, sorted.
pub(crate) fn wanted(nets: &[NetworkRow], eps: &[EndpointRow]) -> Option<Vec<Guard>> {
    if nets.is_empty() {
        return None;
    }
    let on: BTreeSet<&str> = nets
        .iter()
        .filter(|n| enabled(n))
        .map(|n| n.id.as_str())
        .collect();
    let mut g: Vec<Guard> = eps
        .iter()
        .filter(|e| on.contains(e.network_id.as_str()))
        .map(guard_of)
        .collect();
    g.sort();
    g.dedup();
    Some(g)
}

/// The guards the store asks for (see `wanted`).
pub(crate) fn wanted_from(c: &Connection) -> Result<Option<Vec<Guard>>, NetworkError> {
    let nets = rows::list_networks(c)?;
    let mut eps = vec![];
    for n in &nets {
        eps.extend(
            rows::endpoints_of_network(c, &n.id)?
                .into_iter()
                .map(|e| e.0),
        );
    }
    Ok(wanted(&nets, &eps))
}

/// Replaces the table with what the store asks for, plus `extra` (an
/// endpoint being plugged that the store's reader may not see yet).
fn rebuild_with(
    inst: &Instance,
    c: &Connection,
    extra: Option<&Guard>,
) -> Result<(), NetworkError> {
    let table = inst.nft_table();
    let Some(mut guards) = wanted_from(c)? else {
        return drop_table(inst);
    };
    if let Some(g) = extra {
        if !guards.contains(g) {
            guards.push(g.clone());
        }
    }
    nft::apply(&render_rebuild(&table, &guards))
}

/// Rebuilds the table from the store (`network reload`, `heal`); without
/// networks the table goes.
pub fn rebuild(inst: &Instance, c: &Connection) -> Result<(), NetworkError> {
    rebuild_with(inst, c, None)
}

/// Makes the (empty) table when a network is made or used and it is
/// missing, so the table lives exactly as long as the instance has networks
/// (what `heal` checks). The undo deletes it only while the store holds no
/// network (`in_use`, asked when the undo runs), like `rules::ensure_base`.
pub(crate) fn ensure_table(
    inst: &Instance,
    undo: &mut Undo,
    in_use: super::fwbackend::InUse,
) -> Result<(), NetworkError> {
    let table = inst.nft_table();
    if let Ok(true) = nft::table_exists_in("bridge", &table) {
        return Ok(());
    }
    nft::apply(&render_table(&table))?;
    let inst = inst.clone();
    undo.push(format!("nftables table bridge {table}"), move || {
        if !in_use() {
            drop_table(&inst).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    Ok(())
}

/// Guards a new endpoint before its veth exists (so its first frame is
/// checked): one nfnetlink batch of its three elements, undone on failure.
/// A missing table is rebuilt from the store (`c` must be the connection
/// that sees the endpoint's row, e.g. the transaction that inserted it).
pub(crate) fn plug(
    inst: &Instance,
    c: &Connection,
    net: &NetworkRow,
    ep: &EndpointRow,
    undo: &mut Undo,
) -> Result<(), NetworkError> {
    if !enabled(net) {
        return Ok(());
    }
    let table = inst.nft_table();
    let g = guard_of(ep);
    let elems = elements(&g);
    match nfnl::add_batch(&table, &elems) {
        Ok(None) => {}
        // No table or set (first endpoint, or someone deleted it): the
        // whole table comes back, this endpoint included.
        Ok(Some((_, code))) if code == libc::ENOENT => rebuild_with(inst, c, Some(&g))?,
        Ok(Some((e, code))) => {
            return Err(NetworkError::Firewall(format!(
                "cannot guard {} against spoofing (nftables set bridge {table} {}): {}",
                e.what,
                e.map,
                std::io::Error::from_raw_os_error(code)
            )))
        }
        Err(e) => {
            tracing::warn!("{e}; retrying with nft");
            rebuild_with(inst, c, Some(&g))?;
        }
    }
    undo.push(format!("anti-spoofing elements of {}", g.port), move || {
        remove(&table, &g).map_err(|e| e.to_string())
    });
    Ok(())
}

fn remove(table: &str, g: &Guard) -> Result<(), NetworkError> {
    match nfnl::del_batch(table, &elements(g))? {
        None => Ok(()),
        Some((e, code)) => Err(NetworkError::Firewall(format!(
            "cannot remove the anti-spoofing element of {} (nftables set bridge {table} {}): {}",
            e.what,
            e.map,
            std::io::Error::from_raw_os_error(code)
        ))),
    }
}

/// An endpoint's elements, for a caller that removes them in one batch
/// with others: none on an unguarded network, which never had any. An
/// absent element is not an error for the batch, but it costs one: the
/// kernel aborts the batch, and an abort waits out an RCU grace period
/// (`__nf_tables_abort`), 8.7 ms a teardown in the bench's unguarded rows.
pub(crate) fn endpoint_elements(net: &NetworkRow, ep: &EndpointRow) -> Vec<nfnl::Element> {
    match enabled(net) {
        true => elements(&guard_of(ep)),
        false => vec![],
    }
}

/// Removes an endpoint's elements (absent ones, a missing table: all fine;
/// an unguarded network has none to remove, see `endpoint_elements`).
pub(crate) fn unplug(
    inst: &Instance,
    net: &NetworkRow,
    ep: &EndpointRow,
) -> Result<(), NetworkError> {
    if !enabled(net) {
        return Ok(());
    }
    remove(&inst.nft_table(), &guard_of(ep))
}

/// Removes the table (when the last network goes); absent is fine.
pub(crate) fn drop_table(inst: &Instance) -> Result<(), NetworkError> {
    let table = inst.nft_table();
    nft::apply(&format!(
        "add table bridge {table}\ndelete table bridge {table}\n"
    ))
}

/// Self-healing: when the table is missing, damaged, or holds elements the
/// store does not own (or lacks some it does), it is rebuilt from the store.
/// Returns whether it had to rebuild. Nothing at all without networks; with
/// networks one `nft -j list` (4..12 ms here, more with many elements),
/// skipped when nothing in nftables changed since the last intact check and
/// the store wants the same guards (`CheckKey`: one nfnetlink request).
pub(crate) fn heal(
    inst: &Instance,
    c: &Connection,
    generation: Option<u32>,
) -> Result<bool, NetworkError> {
    let Some(guards) = wanted_from(c)? else {
        return Ok(false);
    };
    let marker = inst.run_root.join("antispoof.checked");
    // Read before the listing: a change in between makes the saved key stale
    // (a needless check next time), never a damaged table taken for intact.
    // `generation` is the caller's, read before this (once for both tables).
    let key = generation.map(|g| check_key(&host_identity(), g, &guards));
    if let Some(k) = &key {
        if std::fs::read_to_string(&marker).is_ok_and(|m| m == *k) {
            return Ok(false);
        }
    }
    let table = inst.nft_table();
    let intact = nft::list_json("bridge", &table).is_ok_and(|l| is_intact(&l, &guards));
    if intact {
        if let Some(k) = key {
            save_marker(&marker, &k);
        }
        return Ok(false);
    }
    nft::apply(&render_rebuild(&table, &guards))?;
    Ok(true)
}

/// What makes a past check still valid: the boot and network namespace it
/// was made in, the nftables generation (the kernel bumps it at every
/// commit, anyone's, `nft flush ruleset` included) and the guards the store
/// asked for. Pure.
pub(crate) fn check_key(identity: &str, generation: u32, guards: &[Guard]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for g in guards {
        h.update(format!("{} {} {}", g.port, ipam::format_mac(g.mac), g.ip));
        if let Some(ip6) = g.ip6 {
            h.update(format!(" {ip6}"));
        }
        h.update("\n");
    }
    format!(
        "{identity} gen {generation} guards {}",
        hex::encode(h.finalize())
    )
}

#[cfg(test)]
#[path = "antispoof_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "antispoof_root_tests.rs"]
mod root_tests;
