//! The desired firewall state, built from the store by the callers of the
//! firewall backend (fwbackend.rs), so the backend never reads the
//! database. Only bridge networks have firewall rules; a macvlan network's
//! traffic never crosses the host's forward path.

use super::driver::DriverKind;
use super::fwbackend::{FwSnapshot, InUse};
use super::rules::{fw_network, fw_ports, is_routed, is_routed6};
use super::NetworkError;
use crate::store::networks::{self as rows, EndpointRow};
use crate::Instance;
use rusqlite::Connection;
use std::collections::HashMap;
use std::rc::Rc;

/// Every firewalled network and published port the store holds.
pub(crate) fn snapshot(c: &Connection) -> Result<FwSnapshot, NetworkError> {
    let nets = rows::list_networks(c)?;
    let mut fw = vec![];
    let mut eps: HashMap<String, (EndpointRow, bool, bool)> = HashMap::new();
    for n in &nets {
        if DriverKind::of(n)? != DriverKind::Bridge {
            continue;
        }
        fw.push(fw_network(n)?);
        for (ep, _) in rows::endpoints_of_network(c, &n.id)? {
            eps.insert(ep.id.clone(), (ep, is_routed(n), is_routed6(n)));
        }
    }
    let mut ports = vec![];
    for b in rows::all_port_bindings(c)? {
        if let Some((ep, routed, routed6)) = eps.get(&b.endpoint_id) {
            ports.extend(fw_ports(ep, std::slice::from_ref(&b), *routed, *routed6)?);
        }
    }
    Ok(FwSnapshot {
        networks: fw,
        ports,
    })
}

/// Whether the instance has a network, read afresh from its database each
/// time it is asked (after a failed transaction rolled back: the undo of a
/// shared table asks it). An unreadable store counts as in use: the table
/// is kept rather than pulled from under someone.
pub(crate) fn networks_in_use(inst: &Instance) -> InUse {
    let db = inst.db_path();
    Rc::new(move || {
        crate::store::Store::open(&db)
            .ok()
            .and_then(|s| rows::list_networks(s.conn()).ok())
            .is_none_or(|n| !n.is_empty())
    })
}
