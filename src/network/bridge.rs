//! The bridge driver: a network is a Linux bridge plus its firewall rules; an
//! endpoint is a veth pair whose peer lives in the container's netns, guarded
//! against spoofing (antispoof.rs) and with its published ports mapped by the
//! firewall backend.

use super::driver::{DriverKind, DriverPlan, HostNetlink, NetworkDriver, Plug, Sandbox};
use super::fwbackend::FirewallBackend;
use super::netlink::{self, Netlink};
use super::undo::Undo;
use super::{antispoof, desired, names, nfnl, rules, NetworkError};
use crate::store::networks::{EndpointRow, NetworkRow, PortBindingRow};
use crate::Instance;
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::rc::Rc;

/// Subnet and gateway of a stored network.
pub(crate) fn addressing(net: &NetworkRow) -> Result<(Ipv4Net, Ipv4Addr), NetworkError> {
    let subnet: Ipv4Net = net.subnet.parse().map_err(|_| {
        NetworkError::Invalid(format!(
            "network {} has a bad subnet {:?} in the store",
            net.name, net.subnet
        ))
    })?;
    let gw: Ipv4Addr = net.gateway.parse().map_err(|_| {
        NetworkError::Invalid(format!(
            "network {} has a bad gateway {:?} in the store",
            net.name, net.gateway
        ))
    })?;
    Ok((subnet, gw))
}

/// IPv4 subnet and gateway of a stored network, None on an IPv6-only one.
pub(crate) fn addressing4(net: &NetworkRow) -> Result<Option<(Ipv4Net, Ipv4Addr)>, NetworkError> {
    match net.has_ipv4() {
        true => addressing(net).map(Some),
        false => Ok(None),
    }
}

/// IPv6 subnet and gateway of a stored network, None when it has no IPv6.
pub(crate) fn addressing6(net: &NetworkRow) -> Result<Option<(Ipv6Net, Ipv6Addr)>, NetworkError> {
    if net.subnet6.is_empty() {
        return Ok(None);
    }
    let bad = |what: &str, v: &str| {
        NetworkError::Invalid(format!(
            "network {} has a bad IPv6 {what} {v:?} in the store",
            net.name
        ))
    };
    let subnet = net
        .subnet6
        .parse()
        .map_err(|_| bad("subnet", &net.subnet6))?;
    let gw = net
        .gateway6
        .parse()
        .map_err(|_| bad("gateway", &net.gateway6))?;
    Ok(Some((subnet, gw)))
}

pub(crate) struct BridgeDriver {
    inst: Instance,
    nl: Rc<HostNetlink>,
    fw: Rc<dyn FirewallBackend>,
}

impl BridgeDriver {
    pub(crate) fn new(
        inst: &Instance,
        nl: Rc<HostNetlink>,
        fw: Rc<dyn FirewallBackend>,
    ) -> BridgeDriver {
        BridgeDriver {
            inst: inst.clone(),
            nl,
            fw,
        }
    }

    pub fn netlink(&self) -> Result<Rc<Netlink>, NetworkError> {
        self.nl.get()
    }
}

impl NetworkDriver for BridgeDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Bridge
    }

    fn plan(&self, options: &[String], internal: bool) -> Result<DriverPlan, NetworkError> {
        let opts = names::parse_options(options)?;
        let mut extra = BTreeMap::new();
        if let Some(m) = opts.gateway_mode {
            if m == super::firewall::GatewayMode::Isolated && !internal {
                return Err(NetworkError::Invalid(
                    "gateway_mode_ipv4=isolated needs --internal".into(),
                ));
            }
            extra.insert(names::OPT_GATEWAY_MODE.to_string(), m.as_str().to_string());
        }
        if !opts.trusted_interfaces.is_empty() {
            extra.insert(
                names::OPT_TRUSTED_IFS.to_string(),
                opts.trusted_interfaces.join(":"),
            );
        }
        if let Some(ip) = opts.host_binding {
            extra.insert(names::OPT_HOST_BINDING.to_string(), ip.to_string());
        }
        if let Some(on) = opts.antispoof {
            extra.insert(antispoof::OPTION.to_string(), on.to_string());
        }
        if let Some(m) = opts.gateway_mode6 {
            extra.insert(names::OPT_GATEWAY_MODE6.to_string(), m.as_str().to_string());
        }
        Ok(DriverPlan {
            device: opts.bridge_name,
            mtu: opts.mtu,
            options: extra,
            needs_subnet: false,
        })
    }

    /// The bridge (gateway address, MTU, pinned MAC, up), the base firewall,
    /// the anti-spoofing table, the network's rules and sysctls; with
    /// `fresh` an existing device is refused.
    fn ensure(&self, net: &NetworkRow, fresh: bool, undo: &mut Undo) -> Result<(), NetworkError> {
        let nl = &self.nl.get()?;
        if fresh && nl.link(&net.device)?.is_some() {
            return Err(NetworkError::Conflict(format!(
                "bridge name {} is already in use by a device on this host",
                net.device
            )));
        }
        let v4 = addressing4(net)?;
        let in_use = desired::networks_in_use(&self.inst);
        let new_table = self.fw.ensure_base(undo, in_use.clone())?;
        antispoof::ensure_table(&self.inst, undo, in_use)?;
        let mut made = nl.link(&net.device)?.is_none();
        if made {
            let addr = v4
                .map(|(subnet, gw)| Ipv4Net::new(gw, subnet.prefix_len()))
                .transpose()
                .map_err(|e| NetworkError::Invalid(format!("network {}: {e}", net.name)))?;
            match nl.create_bridge(&net.device, net.mtu, addr) {
                Ok(()) => {
                    let (nl2, br) = (nl.clone(), net.device.clone());
                    undo.push(format!("bridge {br}"), move || {
                        nl2.delete_link(&br).map(|_| ()).map_err(|e| e.to_string())
                    });
                    crate::fault::point("bridge-after-link");
                }
                // Another minirt process re-created it a moment ago: it is theirs to undo.
                Err(e) if e.errno() == Some(libc::EEXIST) => made = false,
                Err(e) => return Err(e.into()),
            }
            if made {
                if let Some((subnet6, gw6)) = addressing6(net)? {
                    // Before the first port brings carrier and a link-local.
                    netlink::disable_dad(&net.device)?;
                    let addr = Ipv6Net::new(gw6, subnet6.prefix_len())
                        .map_err(|e| NetworkError::Invalid(format!("network {}: {e}", net.name)))?;
                    nl.add_address6(&net.device, addr)?;
                }
            }
        }
        // A network whose bridge and table both survived has its rules: skip
        // the nft call (`network reload` repairs anything else).
        if made || new_table {
            self.fw.add_network(&rules::fw_network(net)?, made, undo)?;
        }
        if !net.internal {
            if v4.is_some() {
                netlink::enable_ip_forward()?;
            }
            if !net.subnet6.is_empty() {
                netlink::enable_ipv6_forward()?;
            }
        }
        // IPv4 loopback to published ports; an IPv6-only bridge has none.
        if v4.is_some() {
            netlink::enable_route_localnet(&net.device)?;
        }
        Ok(())
    }

    /// The network's rules, then its bridge (missing parts are fine).
    fn remove(&self, net: &NetworkRow) -> Result<(), NetworkError> {
        self.fw.del_network(&rules::fw_network(net)?)?;
        crate::fault::point("bridge-rm-after-rules");
        self.nl.get()?.delete_link(&net.device)?;
        Ok(())
    }

    /// Anti-spoofing elements first (so the veth's first frame is checked),
    /// the veth pair with its peer made inside the container's netns,
    /// address, lo/eth up, the default route when asked (never on an
    /// internal network), port mappings.
    fn connect(&self, p: &Plug, sb: &Sandbox, undo: &mut Undo) -> Result<(), NetworkError> {
        let (net, ep) = (p.net, p.ep);
        antispoof::plug(&self.inst, p.store, net, ep, undo)?;
        crate::util::fault_point("after-antispoof");
        let v4 = addressing4(net)?;
        let mac = super::ipam6::endpoint_mac(ep.ip, ep.ip6);
        let nl = self.nl.get()?;
        sb.plug_veth(&nl, ep, &net.device, mac, net.mtu, undo)?;
        crate::util::fault_point("after-veth");
        let want_route = p.default_route && !net.internal;
        let v6 = match (addressing6(net)?, ep.ip6) {
            (Some((subnet6, gw6)), Some(ip6)) => Some((subnet6, gw6, ip6)),
            _ => None,
        };
        if v6.is_some() {
            // Before the interface comes up: its link-local is usable at once.
            let ns = std::path::PathBuf::from(format!("/proc/{}/ns/net", sb.pid));
            netlink::set_sysctl_in(&ns, &format!("net.ipv6.conf.{}.accept_dad", ep.ifname), "0")?;
        }
        let ctr = sb.netlink()?;
        match (v4, ep.ip4()) {
            (Some((subnet, gw)), Some(ip)) => {
                sb.address_v4(
                    &ep.ifname,
                    ip,
                    subnet.prefix_len(),
                    want_route.then_some(gw),
                )?;
            }
            // IPv6-only: the interface up, its addresses below.
            _ => {
                ctr.set_lo_up()?;
                ctr.set_up(&ep.ifname)?;
            }
        }
        if let Some((subnet6, gw6, ip6)) = v6 {
            let addr6 = Ipv6Net::new(ip6, subnet6.prefix_len())
                .map_err(|e| NetworkError::Invalid(format!("endpoint address: {e}")))?;
            ctr.add_address6(&ep.ifname, addr6)?;
            if want_route {
                ctr.add_default_route6(gw6)?;
            }
        }
        if !p.ports.is_empty() {
            let _span = tracing::info_span!("net-ports").entered();
            let fw = rules::fw_ports(ep, p.ports, rules::is_routed(net), rules::is_routed6(net))?;
            self.fw.add_ports(&fw, &ep.host_ifname, undo)?;
            crate::util::fault_point("after-rules");
        }
        Ok(())
    }

    /// Port mappings, then the host veth (which takes the peer with it),
    /// then the anti-spoofing elements (until the veth is gone its frames
    /// must stay guarded). With no veth to delete (the container's init is
    /// gone, and its namespace takes the veth), the port maps and the
    /// anti-spoofing elements go in one batch: one commit, not two; should
    /// that batch fail, each goes on its own as below.
    fn disconnect(
        &self,
        net: &NetworkRow,
        ep: &EndpointRow,
        ports: &[PortBindingRow],
        sb: Option<&Sandbox>,
    ) -> Vec<String> {
        let mut errors = vec![];
        let fw = match ports.is_empty() {
            true => vec![],
            false => rules::fw_ports(ep, ports, false, false).unwrap_or_else(|e| {
                errors.push(e.to_string());
                vec![]
            }),
        };
        if sb.is_none() {
            let _span = tracing::info_span!("net-elements-del").entered();
            let mut elems = self.fw.port_elements_to_del(&fw);
            elems.extend(antispoof::endpoint_elements(net, ep));
            if let Ok(None) = nfnl::del_batch(&self.inst.nft_table(), &elems) {
                return errors;
            }
        }
        if !fw.is_empty() {
            let _span = tracing::info_span!("net-ports-del").entered();
            if let Err(e) = self.fw.del_ports(&fw) {
                errors.push(e.to_string());
            }
        }
        if sb.is_some() {
            let _span = tracing::info_span!("net-veth-del").entered();
            if let Err(e) = self
                .nl
                .get()
                .and_then(|nl| Ok(nl.delete_link(&ep.host_ifname)?))
            {
                errors.push(e.to_string());
            }
        }
        if let Err(e) = antispoof::unplug(&self.inst, net, ep) {
            errors.push(e.to_string());
        }
        errors
    }
}
