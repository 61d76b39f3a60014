//! The network-driver seam: what a kind of network (bridge, macvlan; an
//! overlay later) must do, and nothing else. Modelled on netavark's narrow
//! `NetworkDriver`: a pure check of `network create`'s options, making and
//! removing the network's host side, plugging an endpoint in (host side +
//! container side) and unplugging it past errors. IPAM, the store, the
//! locks, intents and the order of steps stay with the callers
//! (`manage.rs`, `endpoint/`), the same for every driver.

use super::fwbackend::FirewallBackend;
use super::netlink::{Netlink, Netns};
use super::undo::Undo;
use super::NetworkError;
use crate::store::networks::{EndpointRow, NetworkRow, PortBindingRow};
use crate::Instance;
use ipnet::Ipv4Net;
use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::rc::Rc;

/// The kinds of network minirt makes (`network create -d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    Bridge,
    Macvlan,
    Overlay,
}

impl DriverKind {
    pub(crate) fn parse(s: &str) -> Result<DriverKind, NetworkError> {
        match s {
            "bridge" => Ok(DriverKind::Bridge),
            "macvlan" => Ok(DriverKind::Macvlan),
            "overlay" => Ok(DriverKind::Overlay),
            _ => Err(NetworkError::Invalid(format!(
                "invalid driver {s:?}: bridge, macvlan and overlay are supported"
            ))),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DriverKind::Bridge => "bridge",
            DriverKind::Macvlan => "macvlan",
            DriverKind::Overlay => "overlay",
        }
    }

    /// The driver of a stored network.
    pub(crate) fn of(net: &NetworkRow) -> Result<DriverKind, NetworkError> {
        DriverKind::parse(&net.driver)
    }
}

impl std::fmt::Display for DriverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--net` as the user gave it: no network, the host's, the default
/// network, or a network by name or id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    None,
    Host,
    /// The default network (`bridge`, or nothing given).
    Default,
    Named(String),
}

impl NetworkMode {
    pub(crate) fn parse(s: &str) -> NetworkMode {
        match s {
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            "" | super::names::DEFAULT_NETWORK => NetworkMode::Default,
            other => NetworkMode::Named(other.to_string()),
        }
    }

    /// Whether the container gets network namespace of its own with
    /// endpoints (not `none`, not `host`).
    pub(crate) fn has_endpoints(&self) -> bool {
        matches!(self, NetworkMode::Default | NetworkMode::Named(_))
    }

    /// The name as `--net` and `inspect` spell it.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
            NetworkMode::Default => super::names::DEFAULT_NETWORK,
            NetworkMode::Named(n) => n,
        }
    }
}

/// What a driver makes of `network create`'s `-o` options: decided before
/// anything touches the host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriverPlan {
    /// The network's host-side device, when the options name it
    /// (`bridge_name=`, `parent=`).
    pub device: Option<String>,
    pub mtu: Option<u32>,
    /// Kept in the row's options (Docker's keys where Docker has one).
    pub options: BTreeMap<String, String>,
    /// Whether the driver needs `--subnet` (no pool default).
    pub needs_subnet: bool,
}

/// The container side of a connect: its network namespace, reached through
/// its init's pid. The netlink socket into it is opened on first use.
pub struct Sandbox {
    pub pid: i32,
    nl: OnceCell<Netlink>,
}

impl Sandbox {
    pub(crate) fn new(pid: i32) -> Sandbox {
        Sandbox {
            pid,
            nl: OnceCell::new(),
        }
    }

    pub(crate) fn netlink(&self) -> Result<&Netlink, NetworkError> {
        if let Some(nl) = self.nl.get() {
            return Ok(nl);
        }
        let nl = Netlink::open_in_pid(self.pid)?;
        Ok(self.nl.get_or_init(|| nl))
    }

    /// A veth pair from the host's `bridge` with its peer made inside this
    /// sandbox's netns (`ep`'s two names); undone by deleting the host end.
    pub(crate) fn plug_veth(
        &self,
        nl: &Rc<Netlink>,
        ep: &EndpointRow,
        bridge: &str,
        mac: [u8; 6],
        mtu: u32,
        undo: &mut Undo,
    ) -> Result<(), NetworkError> {
        nl.create_veth(
            &ep.host_ifname,
            bridge,
            &ep.ifname,
            Netns::Pid(self.pid),
            mac,
            mtu,
        )?;
        let (nl, hv) = (nl.clone(), ep.host_ifname.clone());
        undo.push(format!("veth {hv}"), move || {
            nl.delete_link(&hv).map(|_| ()).map_err(|e| e.to_string())
        });
        Ok(())
    }

    /// The container's `ifname` gets `ip` in a /`prefix_len`, comes up with
    /// `lo`, and routes by default via `gateway` when there is one.
    pub(crate) fn address_v4(
        &self,
        ifname: &str,
        ip: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
    ) -> Result<(), NetworkError> {
        let addr = Ipv4Net::new(ip, prefix_len)
            .map_err(|e| NetworkError::Invalid(format!("endpoint address: {e}")))?;
        self.netlink()?
            .configure_container_if(ifname, addr, gateway)?;
        Ok(())
    }
}

/// One endpoint being plugged in: its network, its row, its port bindings,
/// whether it carries the default route, and the store connection that
/// sees the endpoint's row (a driver whose firewall state must be rebuilt
/// on the way reads the desired state there; it never writes).
pub struct Plug<'a> {
    pub store: &'a rusqlite::Connection,
    pub net: &'a NetworkRow,
    pub ep: &'a EndpointRow,
    pub ports: &'a [PortBindingRow],
    pub default_route: bool,
}

/// A kind of network. Every step that makes something registers its undo
/// in `undo`; `disconnect` never stops at the first error.
pub trait NetworkDriver {
    fn kind(&self) -> DriverKind;

    /// Pure: checks the driver's `-o` options and what the request asks
    /// for (`internal`), and says what to keep in the row.
    fn plan(&self, options: &[String], internal: bool) -> Result<DriverPlan, NetworkError>;

    /// Makes sure the network's host side exists (made again when missing,
    /// e.g. after a reboot). With `fresh` the device must not exist yet.
    fn ensure(&self, net: &NetworkRow, fresh: bool, undo: &mut Undo) -> Result<(), NetworkError>;

    /// Removes the network's host side; missing parts are fine.
    fn remove(&self, net: &NetworkRow) -> Result<(), NetworkError>;

    /// Plugs an endpoint in: the host side and the container side
    /// (interface, address, routes), and its port mappings.
    fn connect(&self, p: &Plug, sb: &Sandbox, undo: &mut Undo) -> Result<(), NetworkError>;

    /// Unplugs an endpoint: its port mappings, and its interfaces when
    /// `sb` is given (None: the container's namespace is going away and
    /// takes them with it). Returns every error.
    fn disconnect(
        &self,
        net: &NetworkRow,
        ep: &EndpointRow,
        ports: &[PortBindingRow],
        sb: Option<&Sandbox>,
    ) -> Vec<String>;
}

/// Finds the driver of a network: the real set in `Drivers`, a recording
/// one in the orchestration tests.
pub(crate) trait DriverSet {
    fn driver(&self, kind: DriverKind) -> &dyn NetworkDriver;

    fn of(&self, net: &NetworkRow) -> Result<&dyn NetworkDriver, NetworkError> {
        Ok(self.driver(DriverKind::of(net)?))
    }
}

/// The host's netlink socket, opened on first use: a teardown that leaves
/// the interfaces to the dying namespace never needs one.
#[derive(Default)]
pub(crate) struct HostNetlink(OnceCell<Rc<Netlink>>);

impl HostNetlink {
    pub(crate) fn get(&self) -> Result<Rc<Netlink>, NetworkError> {
        if let Some(nl) = self.0.get() {
            return Ok(nl.clone());
        }
        let nl = Rc::new(Netlink::open()?);
        Ok(self.0.get_or_init(|| nl).clone())
    }
}

/// The host's drivers, sharing one netlink socket and one firewall backend.
pub(crate) struct Drivers {
    bridge: super::bridge::BridgeDriver,
    macvlan: super::macvlan::MacvlanDriver,
    overlay: super::overlay::OverlayDriver,
}

impl Drivers {
    pub(crate) fn open(inst: &Instance) -> Result<Drivers, NetworkError> {
        let fw = super::fwbackend::for_instance(inst)?;
        Ok(Drivers::with(inst, Rc::default(), fw))
    }

    pub(crate) fn with(
        inst: &Instance,
        nl: Rc<HostNetlink>,
        fw: Rc<dyn FirewallBackend>,
    ) -> Drivers {
        Drivers {
            bridge: super::bridge::BridgeDriver::new(inst, nl.clone(), fw),
            macvlan: super::macvlan::MacvlanDriver::new(nl.clone()),
            overlay: super::overlay::OverlayDriver::new(inst, nl),
        }
    }

    /// The host's netlink socket the drivers use.
    pub fn netlink(&self) -> Result<Rc<Netlink>, NetworkError> {
        self.bridge.netlink()
    }
}

impl DriverSet for Drivers {
    fn driver(&self, kind: DriverKind) -> &dyn NetworkDriver {
        match kind {
            DriverKind::Bridge => &self.bridge,
            DriverKind::Macvlan => &self.macvlan,
            DriverKind::Overlay => &self.overlay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_modes_parse() {
        assert_eq!(DriverKind::parse("bridge").unwrap(), DriverKind::Bridge);
        assert_eq!(DriverKind::parse("macvlan").unwrap().as_str(), "macvlan");
        assert_eq!(DriverKind::parse("overlay").unwrap(), DriverKind::Overlay);
        assert_eq!(
            DriverKind::parse("vlan").unwrap_err().to_string(),
            "invalid driver \"vlan\": bridge, macvlan and overlay are supported"
        );
        assert_eq!(NetworkMode::parse(""), NetworkMode::Default);
        assert_eq!(NetworkMode::parse("bridge"), NetworkMode::Default);
        assert_eq!(NetworkMode::parse("host"), NetworkMode::Host);
        assert_eq!(NetworkMode::parse("none"), NetworkMode::None);
        assert_eq!(NetworkMode::parse("lan"), NetworkMode::Named("lan".into()));
        assert!(!NetworkMode::Host.has_endpoints() && !NetworkMode::None.has_endpoints());
        assert!(NetworkMode::Default.has_endpoints());
        assert_eq!(NetworkMode::parse("").as_str(), "bridge");
    }
}
