//! Thin netlink effects (rtnetlink over a current-thread tokio runtime):
//! bridges, veth pairs, addresses, routes, and the per-netns sysctls.
//! No policy here: callers decide names, addresses and what to undo.

use futures::TryStreamExt;
use ipnet::{Ipv4Net, Ipv6Net};
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use rtnetlink::{Handle, LinkBridge, LinkMacVlan, LinkUnspec, LinkVeth, RouteMessageBuilder};

pub use netlink_packet_route::link::MacVlanMode;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub(crate) enum NetlinkError {
    #[error("netlink: {what}: {source}")]
    Request {
        what: String,
        source: std::io::Error,
    },
    #[error("netlink: {what}: {msg}")]
    Protocol { what: String, msg: String },
    #[error("no network device named {0}")]
    NoSuchLink(String),
    #[error("cannot write {path}: {source}")]
    Sysctl {
        path: String,
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, NetlinkError>;

impl NetlinkError {
    /// The errno behind a failed request, when the kernel gave one.
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Request { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

fn wrap(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |e| match e {
        rtnetlink::Error::NetlinkError(m) => NetlinkError::Request {
            what,
            source: m.to_io(),
        },
        other => NetlinkError::Protocol {
            what,
            msg: other.to_string(),
        },
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError::Request { what, source }
}

/// Which network namespace a veth peer is created in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Netns {
    Pid(i32),
}

/// What we need to know about one device.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub mac: Vec<u8>,
    pub up: bool,
    pub controller: Option<u32>,
}

/// One rtnetlink socket, bound to the network namespace it was opened in.
pub(crate) struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: Handle,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(io_err("cannot start the netlink runtime"))
}

impl Netlink {
    /// A socket in the caller's own network namespace.
    pub(crate) fn open() -> Result<Netlink> {
        let rt = runtime()?;
        let (conn, handle, _) = {
            let _g = rt.enter();
            rtnetlink::new_connection().map_err(io_err("cannot open a netlink socket"))?
        };
        rt.spawn(conn);
        Ok(Netlink { rt, handle })
    }

    /// A socket in the network namespace of `pid` (e.g. a container child).
    pub(crate) fn open_in_pid(pid: i32) -> Result<Netlink> {
        Self::open_in(&PathBuf::from(format!("/proc/{pid}/ns/net")))
    }

    /// A socket in the network namespace named by `ns_path`. A netlink socket
    /// belongs to the netns of the thread that created it, so a short-lived
    /// thread joins the netns, creates the socket and exits; this thread
    /// never changes namespace.
    pub(crate) fn open_in(ns_path: &Path) -> Result<Netlink> {
        let rt = runtime()?;
        let rt_handle = rt.handle().clone();
        let path = ns_path.to_path_buf();
        let what = format!("cannot open a netlink socket in {}", path.display());
        let joined = std::thread::spawn(move || -> std::io::Result<_> {
            let f = std::fs::File::open(&path)?;
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            let _g = rt_handle.enter();
            let (conn, handle, _) = rtnetlink::new_connection()?;
            Ok((conn, handle))
        })
        .join();
        let (conn, handle) = match joined {
            Ok(r) => r.map_err(io_err(what))?,
            Err(_) => {
                return Err(NetlinkError::Protocol {
                    what,
                    msg: "thread panicked".into(),
                })
            }
        };
        rt.spawn(conn);
        Ok(Netlink { rt, handle })
    }

    /// The device named `name`, or None when there is none.
    pub(crate) fn link(&self, name: &str) -> Result<Option<LinkInfo>> {
        let mut req = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match self.rt.block_on(req.try_next()) {
            Ok(Some(m)) => Ok(Some(link_info(&m))),
            Ok(None) => Ok(None),
            Err(e) => {
                let e = wrap(format!("cannot look up device {name}"))(e);
                if matches!(e.errno(), Some(libc::ENODEV) | Some(libc::ENOENT)) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    fn index(&self, name: &str) -> Result<u32> {
        self.link(name)?
            .map(|l| l.index)
            .ok_or_else(|| NetlinkError::NoSuchLink(name.to_string()))
    }

    /// Every device in this namespace.
    #[cfg(test)]
    pub fn links(&self) -> Result<Vec<LinkInfo>> {
        let req = self.handle.link().get().execute();
        let msgs: Vec<LinkMessage> = self
            .rt
            .block_on(req.try_collect())
            .map_err(wrap("cannot list devices"))?;
        Ok(msgs.iter().map(link_info).collect())
    }

    /// Creates bridge `name` with `addr` (gateway/prefix), up, its MAC pinned.
    /// On failure nothing is left behind.
    pub(crate) fn create_bridge(&self, name: &str, mtu: u32, addr: Option<Ipv4Net>) -> Result<()> {
        let mut msg = LinkBridge::new(name);
        if mtu > 0 {
            msg = msg.mtu(mtu);
        }
        self.rt
            .block_on(self.handle.link().add(msg.build()).execute())
            .map_err(wrap(format!("cannot create bridge {name}")))?;
        // No IPv4 address on an IPv6-only network's bridge.
        let configured = addr
            .map_or(Ok(()), |addr| self.add_address(name, addr))
            .and_then(|_| self.pin_mac(name))
            .and_then(|_| self.set_up(name));
        if let Err(e) = configured {
            let _ = self.delete_link(name);
            return Err(e);
        }
        Ok(())
    }

    /// Sets the bridge's address to its current MAC: a bridge whose MAC was
    /// set explicitly keeps it, instead of taking the lowest port MAC each
    /// time a port joins or leaves (which stalls the neighbours' ARP caches).
    pub(crate) fn pin_mac(&self, name: &str) -> Result<()> {
        let link = self
            .link(name)?
            .ok_or_else(|| NetlinkError::NoSuchLink(name.to_string()))?;
        let msg = LinkUnspec::new_with_index(link.index)
            .address(link.mac)
            .build();
        self.rt
            .block_on(self.handle.link().set(msg).execute())
            .map_err(wrap(format!("cannot pin the MAC address of {name}")))
    }

    pub(crate) fn set_up(&self, name: &str) -> Result<()> {
        let index = self.index(name)?;
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.rt
            .block_on(self.handle.link().set(msg).execute())
            .map_err(wrap(format!("cannot bring {name} up")))
    }

    /// Deletes a device; Ok(false) when it did not exist (deletion is idempotent).
    pub(crate) fn delete_link(&self, name: &str) -> Result<bool> {
        let Some(link) = self.link(name)? else {
            return Ok(false);
        };
        match self
            .rt
            .block_on(self.handle.link().del(link.index).execute())
        {
            Ok(()) => Ok(true),
            Err(e) => {
                let e = wrap(format!("cannot delete device {name}"))(e);
                if matches!(e.errno(), Some(libc::ENODEV) | Some(libc::ENOENT)) {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// One request makes veth `host` (attached to `bridge`) whose peer `peer`
    /// is created directly inside `netns` with `mac` and `mtu`; a second
    /// brings `host` up once its IPv6 is off. The peer never exists in this
    /// namespace, so its name cannot collide here.
    pub(crate) fn create_veth(
        &self,
        host: &str,
        bridge: &str,
        peer: &str,
        netns: Netns,
        mac: [u8; 6],
        mtu: u32,
    ) -> Result<()> {
        let br = self.index(bridge)?;
        let mut peer_msg = LinkUnspec::new_with_name(peer).address(mac.to_vec());
        match netns {
            Netns::Pid(pid) => peer_msg = peer_msg.setns_by_pid(pid as u32),
        }
        let mut msg = LinkVeth::new(host, peer).controller(br);
        if mtu > 0 {
            msg = msg.mtu(mtu);
            peer_msg = peer_msg.mtu(mtu);
        }
        let msg = msg
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg.build())))
            .build();
        self.rt
            .block_on(self.handle.link().add(msg).execute())
            .map_err(wrap(format!("cannot create veth pair {host}/{peer}")))?;
        // The host end is a bridge port: it needs no IPv6 of its own (the
        // bridge carries the gateway address, frames of any family pass
        // through a port). Off before it comes up, the kernel skips its
        // link-local address, route, DAD and router solicitation: work its
        // addrconf worker does under the RTNL lock, walking every IPv6
        // route of the namespace (two per veth), so with 1000 containers
        // it grew each start's `net-connect` by milliseconds (`perf`:
        // fib6_clean_tree under addrconf_dad_work and rt6_sync_up), and
        // each removal's teardown too. Without IPv6 on the host (no
        // /proc/sys/net/ipv6) there is nothing to turn off.
        let sysctl = format!("/proc/sys/net/ipv6/conf/{host}/disable_ipv6");
        if let Err(e) = std::fs::write(&sysctl, "1") {
            tracing::debug!("{sysctl}: {e}");
        }
        let up = LinkUnspec::new_with_name(host).up().build();
        if let Err(e) = self.rt.block_on(self.handle.link().set(up).execute()) {
            // Not handed to the caller yet, so not in its undo: remove it here.
            let _ = self.delete_link(host);
            return Err(wrap(format!("cannot bring {host} up"))(e));
        }
        Ok(())
    }

    /// One request: macvlan `name` on `parent` (a device of this
    /// namespace), created directly inside `netns` with `mac` and `mtu`
    /// (0: the parent's), down; it never exists in this namespace.
    pub(crate) fn create_macvlan(
        &self,
        name: &str,
        parent: &str,
        mode: MacVlanMode,
        netns: Netns,
        mac: [u8; 6],
        mtu: u32,
    ) -> Result<()> {
        let parent_index = self.index(parent)?;
        let mut msg = LinkMacVlan::new(name, parent_index, mode).address(mac.to_vec());
        match netns {
            Netns::Pid(pid) => msg = msg.setns_by_pid(pid as u32),
        }
        if mtu > 0 {
            msg = msg.mtu(mtu);
        }
        self.rt
            .block_on(self.handle.link().add(msg.build()).execute())
            .map_err(wrap(format!("cannot create macvlan {name} on {parent}")))
    }

    pub(crate) fn add_address(&self, name: &str, addr: Ipv4Net) -> Result<()> {
        let index = self.index(name)?;
        let req = self
            .handle
            .address()
            .add(index, addr.addr().into(), addr.prefix_len());
        self.rt
            .block_on(req.execute())
            .map_err(wrap(format!("cannot add address {addr} to {name}")))
    }

    /// Default route via `gateway` (out of whichever device reaches it).
    pub(crate) fn add_default_route(&self, gateway: Ipv4Addr) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .build();
        self.rt
            .block_on(self.handle.route().add(msg).execute())
            .map_err(wrap(format!("cannot add a default route via {gateway}")))
    }

    /// Adds an IPv6 address without duplicate address detection (IFA_F_NODAD:
    /// minirt's IPAM already made it unique, and DAD would keep it tentative,
    /// unusable, for a second).
    pub(crate) fn add_address6(&self, name: &str, addr: Ipv6Net) -> Result<()> {
        use netlink_packet_route::address::{AddressAttribute, AddressFlags};
        let index = self.index(name)?;
        let mut req = self
            .handle
            .address()
            .add(index, addr.addr().into(), addr.prefix_len());
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        self.rt
            .block_on(req.execute())
            .map_err(wrap(format!("cannot add address {addr} to {name}")))
    }

    /// IPv6 default route via `gateway` (out of whichever device reaches it).
    pub(crate) fn add_default_route6(&self, gateway: Ipv6Addr) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(gateway)
            .build();
        self.rt
            .block_on(self.handle.route().add(msg).execute())
            .map_err(wrap(format!("cannot add a default route via {gateway}")))
    }

    /// IPv6 routes of the main table (destination prefixes).
    pub(crate) fn ipv6_routes(&self) -> Result<Vec<Ipv6Net>> {
        let msg = RouteMessageBuilder::<Ipv6Addr>::new().build();
        let req = self.handle.route().get(msg).execute();
        let all: Vec<RouteMessage> = self
            .rt
            .block_on(req.try_collect())
            .map_err(wrap("cannot list IPv6 routes"))?;
        Ok(all
            .iter()
            .filter(|r| route_table(r) == RouteHeader::RT_TABLE_MAIN as u32)
            .filter_map(|r| {
                let addr = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(*a),
                    _ => None,
                })?;
                Ipv6Net::new(addr, r.header.destination_prefix_length).ok()
            })
            .collect())
    }

    /// IPv4 routes of the main table (destination prefixes).
    pub(crate) fn ipv4_routes(&self) -> Result<Vec<Ipv4Net>> {
        Ok(self.main_routes()?.iter().filter_map(route_dst).collect())
    }

    fn main_routes(&self) -> Result<Vec<RouteMessage>> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let req = self.handle.route().get(msg).execute();
        let all: Vec<RouteMessage> = self
            .rt
            .block_on(req.try_collect())
            .map_err(wrap("cannot list routes"))?;
        Ok(all
            .into_iter()
            .filter(|r| route_table(r) == RouteHeader::RT_TABLE_MAIN as u32)
            .collect())
    }

    /// MTU of the device the IPv4 default route leaves by, if there is one.
    pub(crate) fn default_route_mtu(&self) -> Result<Option<u32>> {
        let oif = self.main_routes()?.iter().find_map(|r| {
            if r.header.destination_prefix_length != 0 {
                return None;
            }
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            })
        });
        let Some(oif) = oif else { return Ok(None) };
        let mut req = self.handle.link().get().match_index(oif).execute();
        match self.rt.block_on(req.try_next()) {
            Ok(Some(m)) => Ok(Some(link_info(&m).mtu)),
            Ok(None) => Ok(None),
            Err(e) => Err(wrap("cannot read the default route's device")(e)),
        }
    }

    /// Inside a container netns: lo up, `ifname` gets `addr` and goes up, and
    /// (when given) the default route via `gateway`.
    pub(crate) fn configure_container_if(
        &self,
        ifname: &str,
        addr: Ipv4Net,
        gateway: Option<Ipv4Addr>,
    ) -> Result<()> {
        self.set_up("lo")?;
        self.add_address(ifname, addr)?;
        self.set_up(ifname)?;
        if let Some(gw) = gateway {
            self.add_default_route(gw)?;
        }
        Ok(())
    }
}

fn link_info(m: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: m.header.index,
        name: String::new(),
        mtu: 0,
        mac: vec![],
        up: m.header.flags.contains(LinkFlags::Up),
        controller: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => info.name = n.clone(),
            LinkAttribute::Mtu(v) => info.mtu = *v,
            LinkAttribute::Address(mac) => info.mac = mac.clone(),
            LinkAttribute::Controller(c) => info.controller = Some(*c),
            _ => {}
        }
    }
    info
}

fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(r.header.table as u32)
}

fn route_dst(r: &RouteMessage) -> Option<Ipv4Net> {
    let len = r.header.destination_prefix_length;
    let addr = r
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(*a),
            _ => None,
        })
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    Ipv4Net::new(addr, len).ok()
}

/// Writes a sysctl of the caller's network namespace (/proc/sys/net is per netns).
pub(crate) fn set_sysctl(key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    if std::fs::read_to_string(&path)
        .map(|v| v.trim() == value)
        .unwrap_or(false)
    {
        return Ok(());
    }
    std::fs::write(&path, value).map_err(|source| NetlinkError::Sysctl { path, source })
}

/// Writes a sysctl in the network namespace at `ns_path`: /proc/sys/net
/// belongs to the netns of the thread that opens it, so a short-lived
/// thread joins the namespace for the write (as `Netlink::open_in`).
pub(crate) fn set_sysctl_in(ns_path: &Path, key: &str, value: &str) -> Result<()> {
    let path = ns_path.to_path_buf();
    let (key, value) = (key.to_string(), value.to_string());
    let what = format!("cannot enter {}", path.display());
    let joined = std::thread::spawn(move || -> std::result::Result<Result<()>, std::io::Error> {
        let f = std::fs::File::open(&path)?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        Ok(set_sysctl(&key, &value))
    })
    .join();
    match joined {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(NetlinkError::Request { what, source: e }),
        Err(_) => Err(NetlinkError::Protocol {
            what,
            msg: "thread panicked".into(),
        }),
    }
}

/// Turns duplicate address detection off on `dev` (its link-local and any
/// address added later are usable at once; Docker 28 does the same on its
/// bridges). Device names may contain dots, so the path is built directly.
pub(crate) fn disable_dad(dev: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv6/conf/{dev}/accept_dad");
    std::fs::write(&path, "0").map_err(|source| NetlinkError::Sysctl { path, source })
}

/// IPv6 routing between the bridges and the uplink, switched on only when
/// an IPv6 network exists; the host's other IPv6 policy is left alone.
pub(crate) fn enable_ipv6_forward() -> Result<()> {
    set_sysctl("net.ipv6.conf.all.forwarding", "1")
}

/// Routing between the bridges and the uplink.
pub(crate) fn enable_ip_forward() -> Result<()> {
    set_sysctl("net.ipv4.ip_forward", "1")
}

/// Lets 127.0.0.1-sourced packets DNAT'ed by the output hook leave by `bridge`
/// (port mappings reached through localhost).
pub(crate) fn enable_route_localnet(bridge: &str) -> Result<()> {
    // Device names may contain dots, so build the path directly.
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    std::fs::write(&path, "1").map_err(|source| NetlinkError::Sysctl { path, source })
}

/// True when link `name` exists in the caller's network namespace (an
/// ioctl, no netlink socket needed).
pub(crate) fn link_exists(name: &str) -> bool {
    std::ffi::CString::new(name)
        // SAFETY: if_nametoindex reads a NUL-terminated string we own.
        .map(|c| unsafe { libc::if_nametoindex(c.as_ptr()) } != 0)
        .unwrap_or(false)
}

#[cfg(test)]
#[path = "netlink_tests.rs"]
mod tests;
