//! Plugging endpoints in and out through their network's driver: attach
//! after clone (undone on failure), detach at teardown, and the host veths
//! of exited containers collected once the kernel had its time.

use crate::network::driver::{DriverKind, DriverSet, Drivers, Plug, Sandbox};
use crate::network::netlink::Netlink;
use crate::network::undo::Undo;
use crate::network::{nfnl, rules, NetworkError};
use crate::store::networks::{self as rows, EndpointRow, NetworkRow, PortBindingRow};
use crate::store::Store;
use crate::{util, Instance};
use rusqlite::Connection;

pub(super) fn network_of(c: &Connection, ep: &EndpointRow) -> Result<NetworkRow, NetworkError> {
    rows::find_network(c, &ep.network_id)?
        .filter(|n| n.id == ep.network_id)
        .ok_or_else(|| NetworkError::NotFound(format!("network {} not found", ep.network_id)))
}

/// One endpoint with its network and port bindings, as the drivers take it.
pub(crate) struct Wired {
    pub net: NetworkRow,
    pub ep: EndpointRow,
    pub ports: Vec<PortBindingRow>,
}

/// The container's endpoints with their networks and bindings.
fn wired(c: &Connection, container_id: &str) -> Result<Vec<Wired>, NetworkError> {
    let eps = rows::endpoints_of_container(c, container_id)?;
    if eps.is_empty() {
        return Ok(vec![]);
    }
    let bindings = rows::port_bindings_of_container(c, container_id)?;
    eps.into_iter()
        .map(|ep| {
            Ok(Wired {
                net: network_of(c, &ep)?,
                ports: bindings
                    .iter()
                    .filter(|b| b.endpoint_id == ep.id)
                    .cloned()
                    .collect(),
                ep,
            })
        })
        .collect()
}

/// After clone, before the child runs: each endpoint's network ensured and
/// the endpoint plugged in by its driver (interface, address, routes: the
/// default route only via eth0; port mappings). On failure everything is
/// undone.
pub fn attach(
    inst: &Instance,
    store: &mut Store,
    container_id: &str,
    pid: i32,
) -> Result<(), NetworkError> {
    let c = store.conn();
    let wired = wired(c, container_id)?;
    if wired.is_empty() {
        return Ok(());
    }
    let span = tracing::info_span!("net-open").entered();
    let drivers = Drivers::open(inst)?;
    let sb = Sandbox::new(pid);
    sb.netlink()?;
    drop(span);
    let _fw = rules::lock(inst)?;
    // The anti-spoofing and port-map batches: one nfnetlink socket.
    let shared = nfnl::Shared::begin();
    plug_all(&drivers, c, &wired, &sb)?;
    drop(shared);
    drop(_fw);
    // Ports on [::1]: the loopback proxy (bound before this returns).
    let fwds: Vec<_> = wired
        .iter()
        .flat_map(|w| crate::network::proxy6::forwards(&w.ep, &w.ports))
        .collect();
    if let Err(e) = crate::network::proxy6::start(inst, container_id, &fwds) {
        let _fw = rules::lock(inst)?;
        let _ = unplug_all(&drivers, &wired, Some(&sb));
        return Err(e);
    }
    Ok(())
}

/// Plugs every endpoint in, in order; a failure undoes everything done so
/// far, newest first.
pub(crate) fn plug_all(
    drivers: &dyn DriverSet,
    c: &Connection,
    wired: &[Wired],
    sb: &Sandbox,
) -> Result<(), NetworkError> {
    let mut undo = Undo::new();
    for w in wired {
        let d = drivers.of(&w.net)?;
        let span = tracing::info_span!("net-ensure").entered();
        d.ensure(&w.net, false, &mut undo)?;
        drop(span);
        let _span = tracing::info_span!("net-connect").entered();
        let plug = Plug {
            store: c,
            net: &w.net,
            ep: &w.ep,
            ports: &w.ports,
            default_route: w.ep.ifname == "eth0",
        };
        d.connect(&plug, sb, &mut undo)?;
    }
    undo.commit();
    Ok(())
}

/// Unplugs every endpoint, past errors; returns them all.
pub(crate) fn unplug_all(
    drivers: &dyn DriverSet,
    wired: &[Wired],
    sb: Option<&Sandbox>,
) -> Vec<String> {
    let mut errors = vec![];
    for w in wired {
        match drivers.of(&w.net) {
            Ok(d) => errors.extend(d.disconnect(&w.net, &w.ep, &w.ports, sb)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors
}

/// Teardown: port mappings, host veths, then the endpoint and binding rows
/// (addresses and ports released). Keeps going past errors and reports them
/// all; running it twice is harmless. `Ok(false)`: the container had no
/// endpoints left (`rm -f`'s `detach_many` took them, say).
pub fn detach(
    inst: &Instance,
    store: &mut Store,
    container_id: &str,
) -> Result<bool, NetworkError> {
    detach_inner(inst, store, container_id, true)
}

/// Teardown after the container's init is gone: as `detach`, but the host
/// veths are left to the kernel. The container's network namespace dies with
/// its last process and takes both ends of each veth pair with it; deleting
/// the host end ourselves at that moment only waits for that teardown
/// (measured 3..50 ms, the bulk of `run --rm`'s network teardown).
pub fn detach_exited(
    inst: &Instance,
    store: &mut Store,
    container_id: &str,
) -> Result<bool, NetworkError> {
    detach_inner(inst, store, container_id, false)
}

fn detach_inner(
    inst: &Instance,
    store: &mut Store,
    container_id: &str,
    delete_veths: bool,
) -> Result<bool, NetworkError> {
    // First: the port is free once the container's teardown returns.
    crate::network::proxy6::stop(inst, container_id);
    let wired = wired(store.conn(), container_id)?;
    if wired.is_empty() {
        return Ok(false);
    }
    let mut errors = vec![];
    // Held from the elements' removal until their rows are gone: a heal in
    // between would restore mappings that then outlive their container.
    let _fw = rules::lock(inst)?;
    let sb = match delete_veths {
        true => {
            let pid = rows::find_container(store.conn(), container_id)?.map_or(0, |c| c.pid);
            Some(Sandbox::new(pid))
        }
        false => None,
    };
    let shared = nfnl::Shared::begin();
    match Drivers::open(inst) {
        Ok(drivers) => errors.extend(unplug_all(&drivers, &wired, sb.as_ref())),
        Err(e) => errors.push(e.to_string()),
    }
    drop(shared);
    let now = util::now_nanos();
    let released = store.write(|tx| {
        for w in &wired {
            rows::delete_endpoint(tx, &w.ep.id)?;
            // Only a bridge endpoint has a host-side device to watch.
            if !delete_veths && matches!(DriverKind::of(&w.net), Ok(DriverKind::Bridge)) {
                rows::add_dying_link(tx, &w.ep.host_ifname, now)?;
            }
        }
        Ok::<_, NetworkError>(())
    });
    if let Err(e) = released {
        errors.push(e.to_string());
    }
    if !delete_veths {
        if let Err(e) = collect_dying_links(store) {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        Ok(true)
    } else {
        Err(NetworkError::Netlink(format!(
            "network teardown of container {}: {}",
            container_id.get(..12).unwrap_or(container_id),
            errors.join("; ")
        )))
    }
}

/// How long the kernel gets to destroy an exited container's namespace and
/// its veths (it takes ~10..30 ms here) before a veth still there is taken
/// to be held by something else (a process that entered the namespace, a
/// bind mount of it) and deleted by us.
const DYING_GRACE_NS: i64 = 5_000_000_000;

/// Deletes the dying links past their grace period that still exist, and
/// forgets them. Cheap when there is nothing to do: one indexed query.
pub fn collect_dying_links(store: &Store) -> Result<(), NetworkError> {
    let c = store.conn();
    let stale = rows::dying_links_before(c, util::now_nanos() - DYING_GRACE_NS)?;
    if stale.is_empty() {
        return Ok(());
    }
    let mut nl = None;
    let mut errors = vec![];
    for name in &stale {
        if crate::network::netlink::link_exists(name) {
            if nl.is_none() {
                nl = Some(Netlink::open()?);
            }
            if let Some(nl) = &nl {
                if let Err(e) = nl.delete_link(name) {
                    errors.push(e.to_string());
                    continue;
                }
            }
        }
        rows::forget_dying_link(c, name)?;
    }
    match errors.is_empty() {
        true => Ok(()),
        false => Err(NetworkError::Netlink(errors.join("; "))),
    }
}

/// The orchestration (plug_all / unplug_all) against a driver that only
/// records what it is asked: no root, no kernel.
#[cfg(test)]
mod orchestration {
    use super::*;
    use crate::network::driver::{DriverPlan, NetworkDriver};
    use crate::network::names;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    #[derive(Default)]
    struct Recording {
        log: Rc<RefCell<Vec<String>>>,
        fail_connect: Option<&'static str>,
        fail_disconnect: Vec<&'static str>,
    }

    impl Recording {
        fn note(&self, s: String) {
            self.log.borrow_mut().push(s);
        }
    }

    impl NetworkDriver for Recording {
        fn kind(&self) -> DriverKind {
            DriverKind::Bridge
        }
        fn plan(&self, _: &[String], _: bool) -> Result<DriverPlan, NetworkError> {
            Ok(DriverPlan::default())
        }
        fn ensure(&self, net: &NetworkRow, _: bool, undo: &mut Undo) -> Result<(), NetworkError> {
            self.note(format!("ensure {}", net.name));
            let (log, name) = (self.log.clone(), net.name.clone());
            undo.push(format!("network {name}"), move || {
                log.borrow_mut().push(format!("undo ensure {name}"));
                Ok(())
            });
            Ok(())
        }
        fn remove(&self, net: &NetworkRow) -> Result<(), NetworkError> {
            self.note(format!("remove {}", net.name));
            Ok(())
        }
        fn connect(&self, p: &Plug, _: &Sandbox, undo: &mut Undo) -> Result<(), NetworkError> {
            if self.fail_connect == Some(p.ep.id.as_str()) {
                self.note(format!("connect {} failed", p.ep.id));
                return Err(NetworkError::Netlink(format!("cannot plug {}", p.ep.id)));
            }
            self.note(format!(
                "connect {} route={} ports={}",
                p.ep.id,
                p.default_route,
                p.ports.len()
            ));
            let (log, id) = (self.log.clone(), p.ep.id.clone());
            undo.push(format!("endpoint {id}"), move || {
                log.borrow_mut().push(format!("undo connect {id}"));
                // An undo step that fails must not stop the others.
                Err("boom".into())
            });
            Ok(())
        }
        fn disconnect(
            &self,
            _: &NetworkRow,
            ep: &EndpointRow,
            _: &[PortBindingRow],
            sb: Option<&Sandbox>,
        ) -> Vec<String> {
            self.note(format!("disconnect {} links={}", ep.id, sb.is_some()));
            match self.fail_disconnect.contains(&ep.id.as_str()) {
                true => vec![format!("{}: busy", ep.id)],
                false => vec![],
            }
        }
    }

    impl DriverSet for Recording {
        fn driver(&self, _: DriverKind) -> &dyn NetworkDriver {
            self
        }
    }

    fn wired(n: usize) -> Vec<Wired> {
        (1..=n)
            .map(|i| Wired {
                net: NetworkRow {
                    id: format!("n{i}"),
                    name: format!("net{i}"),
                    driver: "bridge".into(),
                    subnet: format!("10.{i}.0.0/24"),
                    net_start: 0,
                    net_end: 0,
                    gateway: format!("10.{i}.0.1"),
                    device: format!("br{i}"),
                    internal: false,
                    mtu: 1500,
                    options: BTreeMap::new(),
                    created: 0,
                    subnet6: String::new(),
                    gateway6: String::new(),
                },
                ep: EndpointRow {
                    id: format!("e{i}"),
                    container_id: "c".into(),
                    network_id: format!("n{i}"),
                    ifname: names::container_ifname(i - 1),
                    ip: std::net::Ipv4Addr::new(10, i as u8, 0, 2),
                    mac: String::new(),
                    host_ifname: format!("v{i}"),
                    aliases: vec![],
                    ip6: None,
                },
                ports: vec![],
            })
            .collect()
    }

    #[test]
    fn a_failure_midway_undoes_everything_done_newest_first() {
        let store = Store::open_in_memory().unwrap();
        let d = Recording {
            fail_connect: Some("e3"),
            ..Default::default()
        };
        let e = plug_all(&d, store.conn(), &wired(3), &Sandbox::new(0)).unwrap_err();
        assert_eq!(e.to_string(), "cannot plug e3");
        assert_eq!(
            *d.log.borrow(),
            [
                "ensure net1",
                "connect e1 route=true ports=0",
                "ensure net2",
                "connect e2 route=false ports=0",
                "ensure net3",
                "connect e3 failed",
                "undo ensure net3",
                "undo connect e2",
                "undo ensure net2",
                "undo connect e1",
                "undo ensure net1",
            ]
        );
        // Success keeps everything.
        let ok = Recording::default();
        plug_all(&ok, store.conn(), &wired(2), &Sandbox::new(0)).unwrap();
        assert!(!ok.log.borrow().iter().any(|l| l.starts_with("undo")));
    }

    #[test]
    fn teardown_keeps_going_past_errors_and_returns_them_all() {
        let d = Recording {
            fail_disconnect: vec!["e1", "e2"],
            ..Default::default()
        };
        let errors = unplug_all(&d, &wired(3), None);
        assert_eq!(errors, ["e1: busy", "e2: busy"]);
        assert_eq!(
            *d.log.borrow(),
            [
                "disconnect e1 links=false",
                "disconnect e2 links=false",
                "disconnect e3 links=false"
            ]
        );
        // An unknown driver is one more error, not a stop.
        let mut w = wired(2);
        w[0].net.driver = "vlan".into();
        let d = Recording::default();
        let errors = unplug_all(&d, &w, Some(&Sandbox::new(0)));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("invalid driver"), "{errors:?}");
        assert_eq!(*d.log.borrow(), ["disconnect e2 links=true"]);
    }
}
