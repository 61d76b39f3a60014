//! The network teardown of many containers in one go (`rm -f` of many):
//! under one firewall lock, the port mappings and anti-spoofing elements of
//! their bridge endpoints go in a few nfnetlink batches and the endpoint
//! rows in one transaction, so each monitor's own teardown afterwards finds
//! nothing left to do. One by one, 1000 monitors queued on the firewall
//! lock and the store's write lock (`rm -f` of 1020 took 27 s).

use crate::network::driver::DriverKind;
use crate::network::{antispoof, fwbackend, nfnl, rules, NetworkError};
use crate::store::networks::{self as rows, EndpointRow, NetworkRow, PortBindingRow};
use crate::store::Store;
use crate::{util, Instance};
use std::collections::{HashMap, HashSet};

/// Endpoints per nfnetlink batch: the kernel answers every element, an
/// absent one (each port's routed twin) with an error that echoes the
/// request, and 128 endpoints' answers overflowed the socket's receive
/// buffer (ENOBUFS); 16 stay well inside it.
const CHUNK: usize = 16;

/// Tears down the bridge endpoints of `ids` as `detach_exited` does for
/// one container (the host veths are left to the kernel and recorded as
/// dying links). Endpoints of other drivers stay for the monitors. On an
/// error nothing is released in the store: each monitor's teardown then
/// does its container's part again (absent elements are fine).
pub fn detach_many(inst: &Instance, store: &mut Store, ids: &[String]) -> Result<(), NetworkError> {
    let c = store.conn();
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let bridges: HashMap<String, NetworkRow> = rows::list_networks(c)?
        .into_iter()
        .filter(|n| matches!(DriverKind::of(n), Ok(DriverKind::Bridge)))
        .map(|n| (n.id.clone(), n))
        .collect();
    let eps: Vec<EndpointRow> = rows::all_endpoints(c)?
        .into_iter()
        .filter(|e| wanted.contains(e.container_id.as_str()) && bridges.contains_key(&e.network_id))
        .collect();
    if eps.is_empty() {
        return Ok(());
    }
    let mut bindings: HashMap<String, Vec<PortBindingRow>> = HashMap::new();
    for b in rows::all_port_bindings_by_container(c)? {
        if wanted.contains(b.container_id.as_str()) {
            bindings.entry(b.endpoint_id.clone()).or_default().push(b);
        }
    }
    // Held from the elements' removal until their rows are gone (as in
    // `detach`): a heal in between would restore them.
    let _fw = rules::lock(inst)?;
    let fw = fwbackend::for_instance(inst)?;
    let table = inst.nft_table();
    for chunk in eps.chunks(CHUNK) {
        let mut ports = vec![];
        for ep in chunk {
            let bound = bindings.get(&ep.id).map_or(&[][..], Vec::as_slice);
            if !bound.is_empty() {
                ports.extend(rules::fw_ports(ep, bound, false, false)?);
            }
        }
        if !ports.is_empty() {
            fw.del_ports(&ports)?;
        }
        let guards: Vec<nfnl::Element> = chunk
            .iter()
            .filter_map(|ep| {
                Some(antispoof::endpoint_elements(
                    bridges.get(&ep.network_id)?,
                    ep,
                ))
            })
            .flatten()
            .collect();
        if let Some((e, code)) = nfnl::del_batch(&table, &guards)? {
            return Err(NetworkError::Firewall(format!(
                "cannot remove the anti-spoofing element {} (nftables set bridge {table}): {}",
                e.map,
                std::io::Error::from_raw_os_error(code)
            )));
        }
    }
    let now = util::now_nanos();
    store.write(|tx| {
        for ep in &eps {
            rows::delete_endpoint(tx, &ep.id)?;
            rows::add_dying_link(tx, &ep.host_ifname, now)?;
        }
        Ok::<_, NetworkError>(())
    })
}
