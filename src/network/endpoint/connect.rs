//! `network connect` and `network disconnect` on a running container.

use super::allocate::{new_endpoint, parse_ip, parse_ip6};
use crate::network::driver::{DriverSet, Drivers, NetworkMode, Plug, Sandbox};
use crate::network::undo::Undo;
use crate::network::{manage, rules, NetworkError};
use crate::store::networks::{self as rows, ContainerRef, EndpointRow, PortBindingRow};
use crate::store::Store;
use crate::{util, Instance};
use rusqlite::Connection;

/// A container that can take a new interface: running, alive, with its own netns.
fn running_container(c: &Connection, key: &str) -> Result<ContainerRef, NetworkError> {
    let ctr = rows::find_container(c, key)?
        .ok_or_else(|| NetworkError::NotFound(format!("No such container: {key}")))?;
    let alive = ctr.pid > 0 && (ctr.pid_start == 0 || util::process_alive(ctr.pid, ctr.pid_start));
    if ctr.status != "running" || !alive {
        return Err(NetworkError::Invalid(format!(
            "container {} is not running",
            ctr.name
        )));
    }
    let mode = serde_json::from_str::<serde_json::Value>(&ctr.config)
        .ok()
        .and_then(|v| {
            v.pointer("/network/mode")
                .and_then(|m| m.as_str())
                .map(NetworkMode::parse)
        })
        .unwrap_or(NetworkMode::Default);
    if !mode.has_endpoints() {
        return Err(NetworkError::Invalid(format!(
            "container {} runs with --net {} and cannot join other networks",
            ctr.name,
            mode.as_str()
        )));
    }
    Ok(ctr)
}

/// `network connect`: a new interface (eth1, ...) in the running container,
/// its address allocated; the container's default route is left alone.
/// The DNS responder follows (`dns::follow`).
pub fn connect(
    inst: &Instance,
    store: &mut Store,
    network: &str,
    container: &str,
    ip: Option<&str>,
    ip6: Option<&str>,
    aliases: &[String],
) -> Result<EndpointRow, NetworkError> {
    for a in aliases {
        crate::validate::domain_name(a).map_err(NetworkError::Invalid)?;
    }
    let drivers = Drivers::open(inst)?;
    // Before `undo`: dropped after it (see manage::create).
    let mut intent = None;
    let mut undo = Undo::new();
    // Firewall lock before the store's: the order every firewall change takes.
    let _fw = rules::lock(inst)?;
    let ep = store.write(|tx| {
        let ctr = running_container(tx, container)?;
        let net = manage::find(tx, network)?;
        if rows::endpoints_of_container(tx, &ctr.id)?
            .iter()
            .any(|e| e.network_id == net.id)
        {
            return Err(NetworkError::Conflict(format!(
                "container {} is already connected to network {}",
                ctr.name, net.name
            )));
        }
        let ip = ip.map(parse_ip).transpose()?;
        let ip6 = ip6.map(parse_ip6).transpose()?;
        let ep = new_endpoint(tx, &net, &ctr.id, ip, ip6, aliases)?;
        crate::container::events::record(
            tx,
            "network",
            "connect",
            &net.id,
            &[
                ("container", &ctr.id),
                ("name", &net.name),
                ("type", &net.driver),
            ],
        );
        crate::fault::point("connect-after-row");
        intent = Some(
            crate::intent::begin(
                inst,
                &crate::intent::Intent::Connect {
                    host_veth: ep.host_ifname.clone(),
                },
            )
            .map_err(|e| NetworkError::Invalid(format!("cannot record the connection: {e}")))?,
        );
        let d = drivers.of(&net)?;
        d.ensure(&net, false, &mut undo)?;
        let plug = Plug {
            store: tx,
            net: &net,
            ep: &ep,
            ports: &[],
            default_route: ep.ifname == "eth0",
        };
        d.connect(&plug, &Sandbox::new(ctr.pid), &mut undo)?;
        crate::fault::point("connect-after-address");
        Ok(ep)
    })?;
    undo.commit();
    drop(_fw);
    drop(intent);
    crate::network::dns::control::follow(inst);
    Ok(ep)
}

/// `network disconnect`: the interface goes, the address is released.
/// With `force` the rows go even when the device could not be removed.
/// The DNS responder follows (`dns::follow`).
pub fn disconnect(
    inst: &Instance,
    store: &mut Store,
    network: &str,
    container: &str,
    force: bool,
) -> Result<(), NetworkError> {
    let drivers = Drivers::open(inst)?;
    let mut intent = None;
    let _fw = rules::lock(inst)?;
    store.write(|tx| {
        let ctr = rows::find_container(tx, container)?
            .ok_or_else(|| NetworkError::NotFound(format!("No such container: {container}")))?;
        let net = manage::find(tx, network)?;
        let ep = rows::endpoints_of_container(tx, &ctr.id)?
            .into_iter()
            .find(|e| e.network_id == net.id)
            .ok_or_else(|| {
                NetworkError::NotFound(format!(
                    "container {} is not connected to network {}",
                    ctr.name, net.name
                ))
            })?;
        let ports: Vec<PortBindingRow> = rows::port_bindings_of_container(tx, &ctr.id)?
            .into_iter()
            .filter(|b| b.endpoint_id == ep.id)
            .collect();
        intent = Some(
            crate::intent::begin(
                inst,
                &crate::intent::Intent::Disconnect {
                    container_id: ctr.id.clone(),
                    network_id: net.id.clone(),
                },
            )
            .map_err(|e| NetworkError::Invalid(format!("cannot record the disconnection: {e}")))?,
        );
        let sb = Sandbox::new(ctr.pid);
        let errors = drivers.of(&net)?.disconnect(&net, &ep, &ports, Some(&sb));
        if !errors.is_empty() && !force {
            return Err(NetworkError::Netlink(errors.join("; ")));
        }
        crate::fault::point("disconnect-after-unplug");
        rows::delete_endpoint(tx, &ep.id)?;
        crate::container::events::record(
            tx,
            "network",
            "disconnect",
            &net.id,
            &[
                ("container", &ctr.id),
                ("name", &net.name),
                ("type", &net.driver),
            ],
        );
        crate::fault::point("disconnect-after-row");
        Ok(())
    })?;
    drop(_fw);
    drop(intent);
    crate::network::dns::control::follow(inst);
    Ok(())
}
