//! Network side of crash healing: what a killed `network create`, `rm`,
//! `connect` or `disconnect` left half done, found through its intent
//! (crate::intent) and settled under the store's write lock, so no other
//! command's transaction is in the middle of the same devices meanwhile.
//!
//! Creations roll back (their row was never committed: bridge, rules and
//! veth go, and the table with the last network); removals roll forward
//! (their row is still there: the removal is finished).

use super::driver::{DriverSet, Drivers};
use super::netlink::Netlink;
use super::{manage, rules, NetworkError};
use crate::store::networks::{self as rows, NetworkRow};
use crate::store::Store;
use crate::Instance;
use std::collections::BTreeMap;

/// The row a killed `network create` was inserting, as far as removing its
/// devices needs it.
pub(crate) fn intended_row(
    id: &str,
    name: &str,
    driver: &str,
    device: &str,
    subnet: &str,
    gateway: &str,
    internal: bool,
) -> NetworkRow {
    NetworkRow {
        id: id.into(),
        name: name.into(),
        driver: driver.into(),
        subnet: subnet.into(),
        net_start: 0,
        net_end: 0,
        gateway: gateway.into(),
        device: device.into(),
        internal,
        mtu: 0,
        options: BTreeMap::new(),
        created: 0,
        subnet6: String::new(),
        gateway6: String::new(),
    }
}

/// Rolls a killed `network create` back unless its row got committed.
pub(crate) fn undo_create(inst: &Instance, net: &NetworkRow) -> Result<(), NetworkError> {
    let drivers = Drivers::open(inst)?;
    // The firewall lock before the store's, the order every firewall change
    // takes (the other order could wait on a process that waits on us).
    let _fw = rules::lock(inst)?;
    let mut store = Store::open(&inst.db_path())?;
    store.write(|tx| {
        if rows::find_network(tx, &net.id)?.is_some_and(|n| n.id == net.id) {
            return Ok(());
        }
        drivers.of(net)?.remove(net)?;
        // The table it may have made first goes with the last network.
        if rows::list_networks(tx)?.is_empty() {
            super::fwbackend::for_instance(inst)?.rebuild(&Default::default())?;
            super::antispoof::drop_table(inst)?;
        }
        Ok(())
    })
}

/// Finishes a killed `network rm`: the row and whatever devices are left.
pub(crate) fn finish_remove(inst: &Instance, id: &str) -> Result<(), NetworkError> {
    let mut store = Store::open(&inst.db_path())?;
    match manage::remove(inst, &mut store, id) {
        // Gone already, or in use again since (its devices are re-made by
        // the next start on it, its rules by the heal check).
        Ok(_) | Err(NetworkError::NotFound(_)) | Err(NetworkError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Rolls a killed `network connect` back: its veth goes unless its endpoint
/// row got committed (deleting the host end takes the container's end too).
pub(crate) fn undo_connect(inst: &Instance, host_ifname: &str) -> Result<(), NetworkError> {
    let nl = Netlink::open()?;
    let _fw = rules::lock(inst)?;
    let mut store = Store::open(&inst.db_path())?;
    store.write(|tx| {
        if !rows::ifname_has_endpoint(tx, host_ifname)? {
            nl.delete_link(host_ifname)?;
        }
        Ok(())
    })
}

/// Finishes a killed `network disconnect` (rows and what is left of the
/// veth and port mappings).
pub(crate) fn finish_disconnect(
    inst: &Instance,
    container_id: &str,
    network_id: &str,
) -> Result<(), NetworkError> {
    let mut store = Store::open(&inst.db_path())?;
    match super::disconnect(inst, &mut store, network_id, container_id, true) {
        Ok(()) | Err(NetworkError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
