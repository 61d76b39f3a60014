//! The macvlan driver: a network is a subnet on the L2 segment of a host
//! interface (`-o parent=IF`); an endpoint is a macvlan device on that
//! parent, created directly inside the container's netns (it never exists
//! in the host's, so its name cannot collide there), with an address from
//! IPAM and the default route via the network's gateway (the LAN's router).
//! No bridge, no NAT, no firewall rules, no published ports: the container
//! is a host of the LAN. As with Docker, the host itself cannot reach its
//! macvlan children through the parent (the kernel does not pass frames
//! between a macvlan parent and its children).

use super::bridge::addressing;
use super::driver::{DriverKind, DriverPlan, HostNetlink, NetworkDriver, Plug, Sandbox};
use super::netlink::{MacVlanMode, Netlink, Netns};
use super::undo::Undo;
use super::{ipam, names, NetworkError};
use crate::store::networks::{EndpointRow, NetworkRow, PortBindingRow};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Row option keys (Docker's names).
pub const OPT_PARENT: &str = "parent";
pub(crate) const OPT_MODE: &str = "macvlan_mode";

/// `-o macvlan_mode=` values, Docker's spelling.
pub(crate) fn parse_mode(s: &str) -> Result<MacVlanMode, NetworkError> {
    match s {
        "bridge" => Ok(MacVlanMode::Bridge),
        "private" => Ok(MacVlanMode::Private),
        "vepa" => Ok(MacVlanMode::Vepa),
        "passthru" => Ok(MacVlanMode::Passthrough),
        _ => Err(NetworkError::Invalid(format!(
            "invalid macvlan_mode {:?}: expected bridge, private, vepa or passthru",
            crate::validate::escape_controls(s)
        ))),
    }
}

pub(crate) struct MacvlanDriver {
    nl: Rc<HostNetlink>,
}

impl MacvlanDriver {
    pub(crate) fn new(nl: Rc<HostNetlink>) -> MacvlanDriver {
        MacvlanDriver { nl }
    }
}

fn parent_of(net: &NetworkRow) -> &str {
    &net.device
}

fn mode_of(net: &NetworkRow) -> Result<MacVlanMode, NetworkError> {
    parse_mode(
        net.options
            .get(OPT_MODE)
            .map(String::as_str)
            .unwrap_or("bridge"),
    )
}

/// Pure: `-o parent=IF [-o macvlan_mode=M] [-o mtu=N]`.
pub fn plan(options: &[String], internal: bool) -> Result<DriverPlan, NetworkError> {
    if internal {
        return Err(NetworkError::Invalid(
            "--internal is not supported by the macvlan driver".into(),
        ));
    }
    let mut parent = None;
    let mut mode = "bridge".to_string();
    let mut mtu = None;
    for o in options {
        let (k, v) = o.split_once('=').ok_or_else(|| {
            NetworkError::Invalid(format!("invalid option {o:?}: expected KEY=VALUE"))
        })?;
        match k {
            OPT_PARENT => {
                names::validate_bridge_name(v).map_err(|_| {
                    NetworkError::Invalid(format!(
                        "invalid parent {:?}: not an interface name",
                        crate::validate::escape_controls(v)
                    ))
                })?;
                parent = Some(v.to_string());
            }
            OPT_MODE => {
                parse_mode(v)?;
                mode = v.to_string();
            }
            "mtu" | "com.docker.network.driver.mtu" => {
                mtu = Some(
                    v.parse()
                        .ok()
                        .filter(|m| (68..=65535).contains(m))
                        .ok_or_else(|| {
                            NetworkError::Invalid(format!(
                                "invalid mtu {v:?}: expected a number from 68 to 65535"
                            ))
                        })?,
                );
            }
            _ => {
                return Err(NetworkError::Invalid(format!(
                    "unknown option {:?}: the macvlan driver knows parent, macvlan_mode and mtu",
                    crate::validate::escape_controls(k)
                )))
            }
        }
    }
    let Some(parent) = parent else {
        return Err(NetworkError::Invalid(
            "the macvlan driver needs a parent interface: -o parent=IF".into(),
        ));
    };
    let mut options = BTreeMap::new();
    options.insert(OPT_PARENT.to_string(), parent.clone());
    options.insert(OPT_MODE.to_string(), mode);
    Ok(DriverPlan {
        device: Some(parent),
        mtu,
        options,
        needs_subnet: true,
    })
}

impl NetworkDriver for MacvlanDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Macvlan
    }

    fn plan(&self, options: &[String], internal: bool) -> Result<DriverPlan, NetworkError> {
        plan(options, internal)
    }

    /// Nothing to make in the host: the parent must exist.
    fn ensure(&self, net: &NetworkRow, _fresh: bool, _undo: &mut Undo) -> Result<(), NetworkError> {
        if self.nl.get()?.link(parent_of(net))?.is_none() {
            return Err(NetworkError::NotFound(format!(
                "parent interface {} of network {} does not exist",
                parent_of(net),
                net.name
            )));
        }
        Ok(())
    }

    fn remove(&self, _net: &NetworkRow) -> Result<(), NetworkError> {
        Ok(())
    }

    fn connect(&self, p: &Plug, sb: &Sandbox, undo: &mut Undo) -> Result<(), NetworkError> {
        let (net, ep) = (p.net, p.ep);
        let (subnet, gw) = addressing(net)?;
        self.nl.get()?.create_macvlan(
            &ep.ifname,
            parent_of(net),
            mode_of(net)?,
            Netns::Pid(sb.pid),
            ipam::mac_for(ep.ip),
            net.mtu,
        )?;
        let (pid, ifname) = (sb.pid, ep.ifname.clone());
        undo.push(format!("macvlan {ifname} of pid {pid}"), move || {
            delete_in(pid, &ifname)
        });
        let route = p.default_route.then_some(gw);
        sb.address_v4(&ep.ifname, ep.ip, subnet.prefix_len(), route)?;
        Ok(())
    }

    /// The macvlan lives only in the container's netns: deleted there when
    /// asked and the container still runs, else it goes with the netns.
    fn disconnect(
        &self,
        _net: &NetworkRow,
        ep: &EndpointRow,
        _ports: &[PortBindingRow],
        sb: Option<&Sandbox>,
    ) -> Vec<String> {
        // A namespace that cannot be entered is gone, and its interfaces with it.
        let Some(nl) = sb.and_then(|sb| sb.netlink().ok()) else {
            return vec![];
        };
        match nl.delete_link(&ep.ifname) {
            Ok(_) => vec![],
            Err(e) => vec![e.to_string()],
        }
    }
}

fn delete_in(pid: i32, ifname: &str) -> Result<(), String> {
    Netlink::open_in_pid(pid)
        .and_then(|nl| nl.delete_link(ifname))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_are_checked_before_anything_is_made() {
        let p = plan(&opts(&["parent=eth0", "macvlan_mode=private"]), false).unwrap();
        assert_eq!(p.device.as_deref(), Some("eth0"));
        assert_eq!(p.options[OPT_MODE], "private");
        assert!(p.needs_subnet);
        assert_eq!(
            plan(&opts(&["parent=eth0"]), false).unwrap().options[OPT_MODE],
            "bridge"
        );
        for (o, internal, want) in [
            (vec![], false, "needs a parent interface"),
            (vec!["macvlan_mode=vepa"], false, "needs a parent interface"),
            (
                vec!["parent=eth0", "macvlan_mode=x"],
                false,
                "invalid macvlan_mode",
            ),
            (vec!["parent=a/b"], false, "invalid parent"),
            (
                vec!["parent=eth0", "bridge_name=x"],
                false,
                "unknown option",
            ),
            (vec!["parent=eth0"], true, "--internal is not supported"),
            (vec!["parent"], false, "expected KEY=VALUE"),
        ] {
            let e = plan(&opts(&o), internal).unwrap_err().to_string();
            assert!(e.contains(want), "{o:?}: {e}");
        }
        for m in ["bridge", "private", "vepa", "passthru"] {
            assert!(parse_mode(m).is_ok());
        }
    }
}
