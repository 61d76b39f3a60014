//! Endpoints, a container's place on a network: allocated inside the
//! container's store transaction, plugged in by attach, torn down by detach.

use super::driver::{DriverKind, DriverSet, Drivers, NetworkMode, Plug, Sandbox};
use super::names::{self, DEFAULT_NETWORK};
use super::netlink::Netlink;
use super::portspec::{self, HostBinding};
use super::undo::Undo;
use super::{bridge, etc, fwbackend, ipam, ipam6, manage, rules, NetworkError, NetworkRequest};
use crate::store::networks::{self as rows, ContainerRef, EndpointRow, NetworkRow, PortBindingRow};
use crate::store::Store;
use crate::{util, Instance};
use rusqlite::{Connection, Transaction};
use std::net::{Ipv4Addr, Ipv6Addr};

/// One of a container's networks, for `ps` and `inspect`.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointInfo {
    pub network_name: String,
    pub network_id: String,
    pub endpoint_id: String,
    pub ifname: String,
    /// IPv4 address, prefix length and gateway: 0.0.0.0, 0 and 0.0.0.0 on
    /// an IPv6-only network (see `has_ipv4`).
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// Whether minirt's DNS responder serves this network (a user-defined
    /// bridge network: it listens on the bridge's gateway address).
    pub served_by_dns: bool,
    /// On a network with IPv6: address, prefix length and gateway.
    pub ip6: Option<(Ipv6Addr, u8, Ipv6Addr)>,
}

impl EndpointInfo {
    /// `testbr=10.88.0.2` (`testbr=10.88.0.2,fd00:1::2` with IPv6), the `ps`
    /// NETWORKS column.
    pub fn ps_label(&self) -> String {
        match (self.has_ipv4(), self.ip6) {
            (true, Some((ip6, ..))) => format!("{}={},{ip6}", self.network_name, self.ip),
            (false, Some((ip6, ..))) => format!("{}={ip6}", self.network_name),
            _ => format!("{}={}", self.network_name, self.ip),
        }
    }

    /// False on an IPv6-only network.
    pub fn has_ipv4(&self) -> bool {
        !self.ip.is_unspecified()
    }

    /// The IPv4 address as `inspect` shows it ("" on an IPv6-only network,
    /// like Docker's IPAddress).
    pub fn ip4(&self) -> String {
        match self.has_ipv4() {
            true => self.ip.to_string(),
            false => String::new(),
        }
    }

    /// The IPv4 gateway as `inspect` shows it ("" on an IPv6-only network).
    pub fn gateway4(&self) -> String {
        match self.has_ipv4() {
            true => self.gateway.to_string(),
            false => String::new(),
        }
    }
}

fn parse_ip6(s: &str) -> Result<Ipv6Addr, NetworkError> {
    s.parse().map_err(|_| {
        NetworkError::Invalid(format!("invalid --ip6 {s:?}: expected an IPv6 address"))
    })
}

fn parse_ip(s: &str) -> Result<Ipv4Addr, NetworkError> {
    s.parse()
        .map_err(|_| NetworkError::Invalid(format!("invalid --ip {s:?}: expected an IPv4 address")))
}

/// Validates the request and records the container's endpoint and port
/// bindings in `tx` (the transaction that inserts the container row).
/// `--net none|host` record nothing. The default network's row is inserted
/// here when missing; its bridge is made by `attach`.
pub fn allocate(
    tx: &Transaction,
    inst: &Instance,
    container_id: &str,
    req: &NetworkRequest,
) -> Result<(), NetworkError> {
    for d in &req.dns {
        etc::parse_dns(d)?;
    }
    for h in &req.add_hosts {
        etc::parse_add_host(h)?;
    }
    let mode = NetworkMode::parse(&req.mode);
    if !mode.has_endpoints() {
        let mode = mode.as_str();
        if !req.publish.is_empty() {
            return Err(NetworkError::Invalid(format!(
                "conflicting options: port publishing and --net {mode}"
            )));
        }
        if req.ip.is_some() || req.ip6.is_some() {
            return Err(NetworkError::Invalid(format!(
                "conflicting options: --ip{} and --net {mode}",
                if req.ip.is_some() { "" } else { "6" }
            )));
        }
        return Ok(());
    }
    let net = match &mode {
        NetworkMode::Named(name) => manage::find(tx, name)?,
        _ => manage::default_network_row(inst, tx)?,
    };
    check_publish(&net, &req.publish)?;
    let ip = req.ip.as_deref().map(parse_ip).transpose()?;
    let ip6 = req.ip6.as_deref().map(parse_ip6).transpose()?;
    let ep = new_endpoint(tx, &net, container_id, ip, ip6, &req.aliases)?;
    allocate_ports(
        tx,
        container_id,
        &ep,
        &req.publish,
        rules::default_host_ip(&net),
    )?;
    Ok(())
}

/// Refuses published ports where they cannot work: on a macvlan network
/// (no NAT: the container is reached on its own address), or with the
/// `none` firewall backend. Pure but for the environment.
fn check_publish(net: &NetworkRow, publish: &[String]) -> Result<(), NetworkError> {
    if publish.is_empty() {
        return Ok(());
    }
    if DriverKind::of(net)? == DriverKind::Overlay {
        return Err(NetworkError::Invalid(format!(
            "not implemented: port publishing on overlay network {}: its containers \
             are reached on their overlay addresses",
            net.name
        )));
    }
    if DriverKind::of(net)? == DriverKind::Macvlan {
        return Err(NetworkError::Invalid(format!(
            "port publishing is not supported on macvlan network {}: its containers \
             are reached on their own addresses",
            net.name
        )));
    }
    if fwbackend::choose(std::env::var("MINIRT_FIREWALL").ok().as_deref())? == "none" {
        return Err(NetworkError::Invalid(
            "port publishing needs a firewall: MINIRT_FIREWALL=none maps no ports".into(),
        ));
    }
    Ok(())
}

/// Picks (or checks) the address, the interface name and the veth name, and
/// inserts the endpoint row; UNIQUE constraints catch concurrent allocations.
fn new_endpoint(
    c: &Connection,
    net: &NetworkRow,
    container_id: &str,
    requested: Option<Ipv4Addr>,
    requested6: Option<Ipv6Addr>,
    aliases: &[String],
) -> Result<EndpointRow, NetworkError> {
    let v4 = bridge::addressing4(net)?;
    let mine = rows::endpoints_of_container(c, container_id)?;
    if mine.iter().any(|e| e.network_id == net.id) {
        return Err(NetworkError::Conflict(format!(
            "container is already connected to network {}",
            net.name
        )));
    }
    let ip = match v4 {
        Some((subnet, gw)) => allocate_ip4(c, net, subnet, gw, requested)?,
        None => match requested {
            Some(ip) => {
                return Err(NetworkError::Invalid(format!(
                    "invalid --ip {ip}: network {} is IPv6-only (use --ip6)",
                    net.name
                )))
            }
            None => Ipv4Addr::UNSPECIFIED,
        },
    };
    let ip6 = allocate_ip6(c, net, requested6)?;
    let n = (0..)
        .find(|n| !mine.iter().any(|e| e.ifname == names::container_ifname(*n)))
        .unwrap_or(0);
    let id = util::new_id();
    let ep = EndpointRow {
        host_ifname: names::host_veth_name(&id),
        id,
        container_id: container_id.to_string(),
        network_id: net.id.clone(),
        ifname: names::container_ifname(n),
        ip,
        mac: ipam::format_mac(ipam6::endpoint_mac(ip, ip6)),
        aliases: aliases.to_vec(),
        ip6,
    };
    rows::insert_endpoint(c, &ep)?;
    Ok(ep)
}

/// The endpoint's IPv4 address (`--ip` checked, or the next free one after
/// the network's cursor), the cursor moved to it.
fn allocate_ip4(
    c: &Connection,
    net: &NetworkRow,
    subnet: ipnet::Ipv4Net,
    gw: Ipv4Addr,
    requested: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, NetworkError> {
    let used = rows::used_ips(c, &net.id)?;
    let ip = match requested {
        Some(ip) => {
            ipam::check_requested_ip(subnet, gw, ip)?;
            if used.contains(&u32::from(ip)) {
                return Err(NetworkError::Conflict(format!(
                    "address {ip} is already in use on network {}",
                    net.name
                )));
            }
            ip
        }
        None => {
            let after = rows::last_ip(c, &net.id)?;
            ipam::next_free(subnet, gw, &used, after).ok_or_else(|| {
                NetworkError::Conflict(format!(
                    "no free address left on network {} ({})",
                    net.name, net.subnet
                ))
            })?
        }
    };
    rows::set_last_ip(c, &net.id, ip)?;
    Ok(ip)
}

/// The endpoint's IPv6 address on a network with IPv6 (`--ip6` checked, or
/// the next free one after the network's cursor); None without IPv6.
fn allocate_ip6(
    c: &Connection,
    net: &NetworkRow,
    requested: Option<Ipv6Addr>,
) -> Result<Option<Ipv6Addr>, NetworkError> {
    let Some((subnet, gw)) = bridge::addressing6(net)? else {
        return match requested {
            Some(ip) => Err(NetworkError::Invalid(format!(
                "invalid --ip6 {ip}: network {} has no IPv6 (create it with --ipv6)",
                net.name
            ))),
            None => Ok(None),
        };
    };
    let used = rows::used_ips6(c, &net.id)?;
    let ip = match requested {
        Some(ip) => {
            ipam6::check_requested_ip(subnet, gw, ip)?;
            if used.binary_search(&u128::from(ip)).is_ok() {
                return Err(NetworkError::Conflict(format!(
                    "address {ip} is already in use on network {}",
                    net.name
                )));
            }
            ip
        }
        None => {
            let after = rows::last_ip6(c, &net.id)?;
            ipam6::next_free(subnet, gw, &used, after).ok_or_else(|| {
                NetworkError::Conflict(format!(
                    "no free IPv6 address left on network {} ({})",
                    net.name, net.subnet6
                ))
            })?
        }
    };
    rows::set_last_ip6(c, &net.id, ip)?;
    Ok(Some(ip))
}

/// A port published on an IPv6 host address is forwarded by the kernel to
/// the container's IPv6 address: a container without one is refused
/// (Docker would need its userland proxy for that). `[::1]` is the
/// exception: IPv6 has no route_localnet, so the kernel never routes a
/// packet with the source ::1 out of `lo` to a container; a small TCP proxy
/// (`network::proxy6`) listening on [::1] serves it instead, to the
/// container's IPv6 address or else its IPv4 one. UDP on [::1] is refused.
fn check_v6_publish(
    spec: &str,
    host: Ipv6Addr,
    proto: portspec::Proto,
    ep: &EndpointRow,
) -> Result<(), NetworkError> {
    if host.is_loopback() {
        if proto != portspec::Proto::Tcp {
            return Err(NetworkError::Invalid(format!(
                "not implemented: {proto} publishing on [::1] ({spec:?}): only TCP is \
                 proxied on IPv6 loopback; publish on 127.0.0.1 or [::] instead"
            )));
        }
        return Ok(());
    }
    if ep.ip6.is_none() {
        return Err(NetworkError::Invalid(format!(
            "invalid port mapping {spec:?}: an IPv6 host address needs an IPv6 address in the \
             container (create the network with --ipv6)"
        )));
    }
    Ok(())
}

fn binding_of(b: &PortBindingRow) -> Option<HostBinding> {
    Some(HostBinding {
        proto: b.proto.parse().ok()?,
        host_ip: b.host_ip.parse().ok()?,
        host_port: b.host_port,
    })
}

/// Parses the -p specs, picks free host ports for `-p CTRPORT`, refuses any
/// clash with a binding that exists (0.0.0.0 clashes with every address).
fn allocate_ports(
    c: &Connection,
    container_id: &str,
    ep: &EndpointRow,
    publish: &[String],
    default_host_ip: Option<Ipv4Addr>,
) -> Result<Vec<PortBindingRow>, NetworkError> {
    let mut taken: Vec<HostBinding> = rows::all_port_bindings(c)?
        .iter()
        .filter_map(binding_of)
        .collect();
    let mut out = vec![];
    let range = portspec::ephemeral_ports()?;
    for spec in publish {
        // `-p 8080:80` on a network with host_binding_ipv4 binds there.
        let names_ip =
            spec.starts_with('[') || spec.split('/').next().unwrap_or("").matches(':').count() == 2;
        for mut m in portspec::parse_publish(spec)? {
            if ep.ip4().is_none() {
                // An IPv6-only container: `-p 8080:80` publishes on `::`
                // alone; an IPv4 host address could never reach it.
                match (names_ip, m.host_ip) {
                    (false, _) => m.host_ip = Ipv6Addr::UNSPECIFIED.into(),
                    (true, std::net::IpAddr::V4(h)) => {
                        return Err(NetworkError::Invalid(format!(
                            "invalid port mapping {spec:?}: the IPv4 host address {h} cannot \
                             reach a container on an IPv6-only network (publish on [::] or an \
                             IPv6 address)"
                        )))
                    }
                    (true, std::net::IpAddr::V6(_)) => {}
                }
            } else if let (false, Some(ip)) = (names_ip, default_host_ip) {
                m.host_ip = ip.into();
            }
            if let std::net::IpAddr::V6(h) = m.host_ip {
                check_v6_publish(spec, h, m.proto, ep)?;
            }
            let host_port = match m.host_port {
                Some(p) => {
                    let b = HostBinding {
                        proto: m.proto,
                        host_ip: m.host_ip,
                        host_port: p,
                    };
                    if taken.iter().any(|t| portspec::conflicts(*t, b)) {
                        return Err(NetworkError::Conflict(format!(
                            "Bind for {}:{p} failed: port is already allocated",
                            m.host_ip
                        )));
                    }
                    p
                }
                None => {
                    let mut used: Vec<u16> = taken
                        .iter()
                        .filter(|t| {
                            t.proto == m.proto
                                && (t.host_ip == m.host_ip
                                    || t.host_ip.is_unspecified()
                                    || m.host_ip.is_unspecified())
                        })
                        .map(|t| t.host_port)
                        .collect();
                    used.sort_unstable();
                    portspec::pick_free_port(used, range.clone()).ok_or_else(|| {
                        NetworkError::Conflict(format!(
                            "no free {} host port left in {}-{} to publish {}",
                            m.proto,
                            range.start(),
                            range.end(),
                            m.container_port
                        ))
                    })?
                }
            };
            let row = PortBindingRow {
                container_id: container_id.to_string(),
                endpoint_id: ep.id.clone(),
                proto: m.proto.to_string(),
                host_ip: m.host_ip.to_string(),
                host_port,
                container_port: m.container_port,
            };
            rows::insert_port_binding(c, &row)?;
            taken.push(HostBinding {
                proto: m.proto,
                host_ip: m.host_ip,
                host_port,
            });
            out.push(row);
        }
    }
    Ok(out)
}

fn network_of(c: &Connection, ep: &EndpointRow) -> Result<NetworkRow, NetworkError> {
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
    plug_all(&drivers, c, &wired, &sb)?;
    drop(_fw);
    // Ports on [::1]: the loopback proxy (bound before this returns).
    let fwds: Vec<_> = wired
        .iter()
        .flat_map(|w| super::proxy6::forwards(&w.ep, &w.ports))
        .collect();
    if let Err(e) = super::proxy6::start(inst, container_id, &fwds) {
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
/// all; running it twice is harmless.
pub fn detach(inst: &Instance, store: &mut Store, container_id: &str) -> Result<(), NetworkError> {
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
) -> Result<(), NetworkError> {
    detach_inner(inst, store, container_id, false)
}

fn detach_inner(
    inst: &Instance,
    store: &mut Store,
    container_id: &str,
    delete_veths: bool,
) -> Result<(), NetworkError> {
    // First: the port is free once the container's teardown returns.
    super::proxy6::stop(inst, container_id);
    let wired = wired(store.conn(), container_id)?;
    if wired.is_empty() {
        return Ok(());
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
    match Drivers::open(inst) {
        Ok(drivers) => errors.extend(unplug_all(&drivers, &wired, sb.as_ref())),
        Err(e) => errors.push(e.to_string()),
    }
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
        Ok(())
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
        if super::netlink::link_exists(name) {
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
    super::dns::control::follow(inst);
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
    super::dns::control::follow(inst);
    Ok(())
}

/// The container's networks (for `ps` NETWORKS and `inspect`
/// NetworkSettings.Networks), in interface order.
pub fn container_networks(
    store: &Store,
    container_id: &str,
) -> Result<Vec<EndpointInfo>, NetworkError> {
    let c = store.conn();
    let mut out = vec![];
    for ep in rows::endpoints_of_container(c, container_id)? {
        let net = network_of(c, &ep)?;
        let (prefix_len, gateway) = match bridge::addressing4(&net)? {
            Some((subnet, gateway)) => (subnet.prefix_len(), gateway),
            None => (0, Ipv4Addr::UNSPECIFIED),
        };
        out.push(EndpointInfo {
            network_name: net.name.clone(),
            network_id: net.id.clone(),
            endpoint_id: ep.id.clone(),
            ifname: ep.ifname.clone(),
            ip: ep.ip,
            prefix_len,
            gateway,
            mac: ep.mac.clone(),
            ip6: match (bridge::addressing6(&net)?, ep.ip6) {
                (Some((s6, gw6)), Some(ip6)) => Some((ip6, s6.prefix_len(), gw6)),
                _ => None,
            },
            served_by_dns: net.name != DEFAULT_NETWORK
                && matches!(
                    DriverKind::of(&net),
                    Ok(DriverKind::Bridge | DriverKind::Overlay)
                ),
        });
    }
    Ok(out)
}

/// `0.0.0.0:8080->80/tcp` for each published port.
pub fn container_ports(store: &Store, container_id: &str) -> Result<Vec<String>, NetworkError> {
    Ok(
        rows::port_bindings_of_container(store.conn(), container_id)?
            .iter()
            .map(|b| {
                format!(
                    "{}:{}->{}/{}",
                    b.host_ip, b.host_port, b.container_port, b.proto
                )
            })
            .collect(),
    )
}

/// Before the container's transaction: makes sure the default network
/// (row, bridge, rules) exists when the request uses it.
pub fn prepare(
    inst: &Instance,
    store: &mut Store,
    req: &NetworkRequest,
) -> Result<(), NetworkError> {
    match NetworkMode::parse(&req.mode) {
        NetworkMode::Default => {
            manage::ensure_default(inst, store)?;
        }
        // An overlay network's first use on this host: its row and block.
        NetworkMode::Named(name)
            if super::overlay::configured()
                && rows::find_network(store.conn(), &name)?.is_none() =>
        {
            super::overlay::join(inst, store, &name, !req.publish.is_empty())?;
        }
        _ => {}
    }
    Ok(())
}

/// Releases a container's addresses and ports in the caller's transaction,
/// without touching devices (for a stopped container about to be
/// re-allocated; `detach` is the full teardown).
pub fn detach_rows(tx: &Transaction, container_id: &str) -> Result<(), NetworkError> {
    for ep in rows::endpoints_of_container(tx, container_id)? {
        rows::delete_endpoint(tx, &ep.id)?;
    }
    Ok(())
}

/// The container's /etc/hosts and /etc/resolv.conf contents (the caller
/// bind-mounts them); the host's /etc/resolv.conf is read here.
pub fn etc_files(
    store: &Store,
    container_id: &str,
    hostname: &str,
    name: &str,
    req: &NetworkRequest,
) -> Result<(String, String), NetworkError> {
    let nets = container_networks(store, container_id)?;
    let ips: Vec<std::net::IpAddr> = nets
        .iter()
        .flat_map(|e| {
            let ip4 = e.has_ipv4().then_some(e.ip.into());
            ip4.into_iter().chain(e.ip6.map(|(ip6, ..)| ip6.into()))
        })
        .collect();
    let host_resolv = std::fs::read_to_string(super::dns::host_resolv_conf()).unwrap_or_default();
    // On a user-defined bridge network the responder on the gateway answers
    // (it knows the peers and forwards the rest), unless --dns says otherwise.
    let dns = match nets.first() {
        Some(n) if req.dns.is_empty() && n.served_by_dns => {
            // Both families: the responder listens on either gateway.
            let gw4 = n.has_ipv4().then(|| n.gateway.to_string());
            gw4.into_iter()
                .chain(n.ip6.map(|(_, _, gw6)| gw6.to_string()))
                .collect()
        }
        _ => req.dns.clone(),
    };
    Ok((
        etc::etc_hosts(hostname, name, &ips, &req.add_hosts),
        etc::resolv_conf(&dns, &host_resolv),
    ))
}

/// The orchestration (plug_all / unplug_all) against a driver that only
/// records what it is asked: no root, no kernel.
#[cfg(test)]
mod orchestration {
    use super::*;
    use crate::network::driver::{DriverPlan, NetworkDriver};
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

#[cfg(test)]
mod tests {
    //! The run-path contract against the real kernel, with stand-in
    //! containers (`unshare -n sleep`): everything happens in a throwaway
    //! network namespace joined by the test's own thread.
    use super::*;
    use crate::network::manage::{self, CreateRequest};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    struct Proc(Child);
    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A stand-in container: a process alone in a new netns.
    fn container_proc() -> Proc {
        let p = Proc(
            Command::new("unshare")
                .args(["-n", "sleep", "600"])
                .stdin(Stdio::null())
                .spawn()
                .expect("unshare"),
        );
        let me = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let path = format!("/proc/{}/ns/net", p.0.id());
        wait_for("the container netns", || {
            std::fs::read_link(&path).ok().is_some_and(|l| l != me)
        });
        p
    }

    fn in_ctr(p: &Proc, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", p.0.id()))
            .arg("--")
            .args(args)
            .output()
            .unwrap()
    }

    fn insert_container(
        store: &mut Store,
        inst: &Instance,
        id: &str,
        name: &str,
        req: &NetworkRequest,
        pid: i32,
    ) -> Result<(), NetworkError> {
        let inst_req = req.clone();
        let config = serde_json::json!({ "network": { "mode": req.mode } }).to_string();
        store.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO images (id, config, layers, created) VALUES ('img', '{}', '[]', 0)",
                [],
            )
            .map_err(crate::store::StoreError::from)?;
            tx.execute(
                "INSERT INTO containers (id, name, image, image_id, command, config, status, pid, created) \
                 VALUES (?1, ?2, 'busybox', 'img', '[]', ?3, 'running', ?4, 0)",
                rusqlite::params![id, name, config, pid],
            )
            .map_err(crate::store::StoreError::from)?;
            allocate(tx, inst, id, &inst_req)
        })
    }

    fn links(nl: &Netlink) -> Vec<String> {
        nl.links()
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .filter(|n| n != "lo")
            .collect()
    }

    /// A store with network `n` on `subnet` (a row only, no devices).
    fn store_with(subnet: &str) -> (tempfile::TempDir, Instance, Store) {
        let dir = tempfile::tempdir().unwrap();
        let inst = Instance::new(&dir.path().join("root"), &dir.path().join("run")).unwrap();
        let store = Store::open_in_memory().unwrap();
        let net: ipnet::Ipv4Net = subnet.parse().unwrap();
        let row = NetworkRow {
            id: "n1".repeat(32),
            name: "n".into(),
            driver: "bridge".into(),
            subnet: subnet.into(),
            net_start: u32::from(net.network()),
            net_end: u32::from(net.broadcast()),
            gateway: ipam::default_gateway(net).to_string(),
            device: "mrb-test".into(),
            internal: false,
            mtu: 1500,
            options: Default::default(),
            created: 0,
            subnet6: String::new(),
            gateway6: String::new(),
        };
        rows::insert_network(store.conn(), &row).unwrap();
        (dir, inst, store)
    }

    fn on_n(publish: &[&str], ip: Option<&str>) -> NetworkRequest {
        NetworkRequest {
            mode: "n".into(),
            ip: ip.map(String::from),
            publish: publish.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn addresses_are_allocated_in_order_and_a_full_subnet_is_refused() {
        let (_d, inst, mut store) = store_with("10.88.0.0/30");
        insert_container(&mut store, &inst, "c1", "a", &on_n(&[], None), 0).unwrap();
        let e = insert_container(&mut store, &inst, "c2", "b", &on_n(&[], None), 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no free address left on network n (10.88.0.0/30)"
        );
        assert!(
            rows::find_container(store.conn(), "b").unwrap().is_none(),
            "row kept"
        );
        let nets = container_networks(&store, "c1").unwrap();
        assert_eq!(
            (nets[0].ip, nets[0].ifname.as_str()),
            (Ipv4Addr::new(10, 88, 0, 2), "eth0")
        );
        // Released addresses are reused.
        store.write(|tx| detach_rows(tx, "c1")).unwrap();
        insert_container(&mut store, &inst, "c2", "b", &on_n(&[], None), 0).unwrap();
        assert_eq!(
            container_networks(&store, "c2").unwrap()[0].ip,
            Ipv4Addr::new(10, 88, 0, 2)
        );
    }

    #[test]
    fn requested_addresses_and_bad_inputs_are_refused_clearly() {
        let (_d, inst, mut store) = store_with("10.88.0.0/24");
        insert_container(
            &mut store,
            &inst,
            "c1",
            "a",
            &on_n(&[], Some("10.88.0.50")),
            0,
        )
        .unwrap();
        for (req, want) in [
            (
                on_n(&[], Some("10.88.0.50")),
                "address 10.88.0.50 is already in use on network n",
            ),
            (on_n(&[], Some("10.88.0.1")), "gateway"),
            (on_n(&[], Some("10.89.0.5")), "not inside subnet"),
            (on_n(&[], Some("nope")), "invalid --ip"),
            (on_n(&["0:80"], None), "invalid port mapping"),
            (on_n(&["70000:80"], None), "invalid port mapping"),
            (on_n(&["80:80:80:80"], None), "invalid port mapping"),
            (
                NetworkRequest {
                    mode: "host".into(),
                    publish: vec!["80".into()],
                    ..Default::default()
                },
                "conflicting options",
            ),
            (
                NetworkRequest {
                    mode: "n".into(),
                    dns: vec!["x".into()],
                    ..Default::default()
                },
                "invalid --dns",
            ),
            (
                NetworkRequest {
                    mode: "n".into(),
                    add_hosts: vec!["x".into()],
                    ..Default::default()
                },
                "invalid --add-host",
            ),
            (
                NetworkRequest {
                    mode: "nosuch".into(),
                    ..Default::default()
                },
                "network nosuch not found",
            ),
        ] {
            let e = insert_container(&mut store, &inst, "c2", "b", &req, 0)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{req:?}: {e}");
        }
        assert!(rows::find_container(store.conn(), "b").unwrap().is_none());
        assert_eq!(
            rows::used_ips(store.conn(), &"n1".repeat(32))
                .unwrap()
                .len(),
            1
        );
        // none / host record nothing.
        let none = NetworkRequest {
            mode: "none".into(),
            ..Default::default()
        };
        insert_container(&mut store, &inst, "c3", "c", &none, 0).unwrap();
        assert!(container_networks(&store, "c3").unwrap().is_empty());
    }

    #[test]
    fn host_ports_conflict_across_addresses_and_free_ones_are_picked() {
        let (_d, inst, mut store) = store_with("10.88.0.0/24");
        insert_container(
            &mut store,
            &inst,
            "c1",
            "a",
            &on_n(&["8080:80", "127.0.0.1:9090:90", "53:53/udp"], None),
            0,
        )
        .unwrap();
        for (spec, want) in [
            (
                "8080:81",
                "Bind for 0.0.0.0:8080 failed: port is already allocated",
            ),
            (
                "127.0.0.1:8080:81",
                "Bind for 127.0.0.1:8080 failed: port is already allocated",
            ),
            (
                "9090:90",
                "Bind for 0.0.0.0:9090 failed: port is already allocated",
            ),
            (
                "53:53/udp",
                "Bind for 0.0.0.0:53 failed: port is already allocated",
            ),
        ] {
            let e = insert_container(&mut store, &inst, "c2", "b", &on_n(&[spec], None), 0)
                .unwrap_err();
            assert_eq!(e.to_string(), want, "{spec}");
        }
        // Same port, other protocol or other specific address: fine.
        insert_container(
            &mut store,
            &inst,
            "c2",
            "b",
            &on_n(
                &[
                    "8080:80/udp",
                    "127.0.0.2:9090:90",
                    "100-101:200-201",
                    "80",
                    "80",
                ],
                None,
            ),
            0,
        )
        .unwrap();
        assert_eq!(
            container_ports(&store, "c2").unwrap(),
            [
                "0.0.0.0:100->200/tcp",
                "0.0.0.0:101->201/tcp",
                "0.0.0.0:8080->80/udp",
                "127.0.0.2:9090->90/tcp",
                "0.0.0.0:32768->80/tcp",
                "0.0.0.0:32769->80/tcp",
            ]
        );
        // Releasing the first container frees its ports.
        store.write(|tx| detach_rows(tx, "c1")).unwrap();
        insert_container(&mut store, &inst, "c3", "c", &on_n(&["8080:80"], None), 0).unwrap();
    }

    #[test]
    fn allocate_attach_ports_connect_detach_on_the_real_kernel() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        // Own thread, own netns: nft, sysctls and netlink all act there.
        std::thread::spawn(scenario).join().expect("scenario");
    }

    fn scenario() {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let host = Netlink::open().unwrap();
        host.set_up("lo").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let inst = Instance::new(&dir.path().join("root"), &dir.path().join("run")).unwrap();
        let mut store = Store::open(&inst.db_path()).unwrap();
        let create = |name: &str, subnet: &str, store: &mut Store| {
            let req = CreateRequest {
                name: name.into(),
                driver: "bridge".into(),
                subnet: Some(subnet.into()),
                ..Default::default()
            };
            manage::create(&inst, store, &req).unwrap()
        };
        let testbr = create("testbr", "10.88.0.0/24", &mut store);
        let other = create("other", "10.89.0.0/24", &mut store);

        let (p1, p2) = (container_proc(), container_proc());
        let web = NetworkRequest {
            mode: "testbr".into(),
            publish: vec!["8080:80".into(), "90/udp".into()],
            ..Default::default()
        };
        insert_container(&mut store, &inst, "c1", "web", &web, p1.0.id() as i32).unwrap();
        let client = NetworkRequest {
            mode: "testbr".into(),
            ip: Some("10.88.0.9".into()),
            ..Default::default()
        };
        insert_container(&mut store, &inst, "c2", "client", &client, p2.0.id() as i32).unwrap();

        // Clear refusals, nothing recorded for them.
        let e = insert_container(
            &mut store,
            &inst,
            "c3",
            "dup",
            &NetworkRequest {
                mode: "testbr".into(),
                publish: vec!["127.0.0.1:8080:81".into()],
                ..Default::default()
            },
            1,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Bind for 127.0.0.1:8080 failed: port is already allocated"
        );
        let e = insert_container(
            &mut store,
            &inst,
            "c3",
            "dup",
            &NetworkRequest {
                mode: "testbr".into(),
                ip: Some("10.88.0.9".into()),
                ..Default::default()
            },
            1,
        )
        .unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
        let e = insert_container(
            &mut store,
            &inst,
            "c3",
            "dup",
            &NetworkRequest {
                mode: "testbr".into(),
                ip: Some("10.89.0.5".into()),
                ..Default::default()
            },
            1,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not inside subnet"), "{e}");
        let e = insert_container(
            &mut store,
            &inst,
            "c3",
            "dup",
            &NetworkRequest {
                mode: "nosuch".into(),
                ..Default::default()
            },
            1,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "network nosuch not found");
        assert!(rows::find_container(store.conn(), "dup").unwrap().is_none());

        attach(&inst, &mut store, "c1", p1.0.id() as i32).unwrap();
        attach(&inst, &mut store, "c2", p2.0.id() as i32).unwrap();
        let nets = container_networks(&store, "c1").unwrap();
        assert_eq!(nets.len(), 1);
        assert_eq!(nets[0].ps_label(), "testbr=10.88.0.2");
        assert_eq!(nets[0].gateway, Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(nets[0].mac, "02:42:0a:58:00:02");
        assert_eq!(nets[0].prefix_len, 24);
        let ports = container_ports(&store, "c1").unwrap();
        assert_eq!(ports, ["0.0.0.0:8080->80/tcp", "0.0.0.0:32768->90/udp"]);
        let o = in_ctr(&p1, &["ip", "-4", "-o", "addr", "show", "eth0"]);
        assert!(String::from_utf8_lossy(&o.stdout).contains("10.88.0.2/24"));
        let o = in_ctr(&p1, &["ip", "route"]);
        assert!(String::from_utf8_lossy(&o.stdout).contains("default via 10.88.0.1 dev eth0"));

        // Container to container, and a published port from the host's
        // 127.0.0.1 and from the other container via the host (hairpin).
        let o = in_ctr(&p2, &["busybox", "ping", "-c", "1", "-W", "5", "10.88.0.2"]);
        assert!(
            o.status.success(),
            "ping: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let www = dir.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), "hello from c1\n").unwrap();
        let _httpd = Proc(
            Command::new("nsenter")
                .arg(format!("--net=/proc/{}/ns/net", p1.0.id()))
                .args(["--", "busybox", "httpd", "-f", "-p", "80", "-h"])
                .arg(&www)
                .spawn()
                .unwrap(),
        );
        let fetch = |args: &[&str]| {
            let mut ok = String::new();
            wait_for("the page", || {
                let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
                ok = String::from_utf8_lossy(&o.stdout).into_owned();
                o.status.success()
            });
            ok
        };
        assert_eq!(
            fetch(&["curl", "-sf", "--max-time", "2", "http://127.0.0.1:8080/"]),
            "hello from c1\n"
        );
        let via_host = format!("--net=/proc/{}/ns/net", p2.0.id());
        assert_eq!(
            fetch(&[
                "nsenter",
                &via_host,
                "--",
                "curl",
                "-sf",
                "--max-time",
                "2",
                "http://10.88.0.1:8080/"
            ]),
            "hello from c1\n"
        );

        // An attach that fails midway (the container already has an eth0)
        // undoes what it made: the host keeps exactly the devices it had.
        let p3 = container_proc();
        let o = in_ctr(
            &p3,
            &[
                "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0",
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let req3 = NetworkRequest {
            mode: "testbr".into(),
            publish: vec!["7070:70".into()],
            ..Default::default()
        };
        insert_container(&mut store, &inst, "c3", "broken", &req3, p3.0.id() as i32).unwrap();
        let before = links(&host);
        let e = attach(&inst, &mut store, "c3", p3.0.id() as i32).unwrap_err();
        assert!(e.to_string().contains("cannot create veth pair"), "{e}");
        assert_eq!(links(&host), before);
        detach(&inst, &mut store, "c3").unwrap();
        assert!(container_ports(&store, "c3").unwrap().is_empty());

        // connect / disconnect on the running container.
        let e = manage::remove(&inst, &mut store, "testbr").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot remove network testbr: in use by containers web, client"
        );
        let ep = connect(&inst, &mut store, "other", "web", None, None, &[]).unwrap();
        assert_eq!(
            (ep.ifname.as_str(), ep.ip),
            ("eth1", Ipv4Addr::new(10, 89, 0, 2))
        );
        let e = connect(&inst, &mut store, "other", "web", None, None, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "container web is already connected to network other"
        );
        let o = in_ctr(&p1, &["ip", "route"]);
        let routes = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            routes.contains("default via 10.88.0.1 dev eth0")
                && routes.contains("10.89.0.0/24 dev eth1"),
            "{routes}"
        );
        assert_eq!(routes.matches("default").count(), 1, "{routes}");
        disconnect(&inst, &mut store, "other", "web", false).unwrap();
        let o = in_ctr(&p1, &["ip", "link", "show", "eth1"]);
        assert!(!o.status.success(), "eth1 still there");
        let e = disconnect(&inst, &mut store, "other", "web", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "container web is not connected to network other"
        );

        // Teardown releases everything; twice is fine.
        detach(&inst, &mut store, "c1").unwrap();
        detach(&inst, &mut store, "c2").unwrap();
        detach(&inst, &mut store, "c1").unwrap();
        assert!(rows::all_port_bindings(store.conn()).unwrap().is_empty());
        assert!(rows::used_ips(store.conn(), &testbr.id).unwrap().is_empty());
        assert_eq!(
            links(&host),
            vec![testbr.device.clone(), other.device.clone()]
        );
        let table = crate::network::nft::list_table(&inst.nft_table()).unwrap();
        assert!(
            !table.contains("10.88.0.2 . 80"),
            "port mapping left: {table}"
        );
        manage::prune(&inst, &mut store).unwrap();
        assert!(links(&host).is_empty(), "{:?}", links(&host));
        assert!(crate::network::nft::list_table(&inst.nft_table()).is_err());
    }
}
