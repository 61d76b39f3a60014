//! Thin netlink effects (rtnetlink, one blocking socket, one request at a
//! time): bridges, veth pairs, addresses, routes, and the per-netns sysctls.
//! No policy here: callers decide names, addresses and what to undo.
//!
//! The messages are built and parsed with `netlink-packet-route` (and
//! rtnetlink's builders); sending them is a `sendto` and reading the answer
//! a `recvfrom` or two on a blocking socket. rtnetlink's own client is
//! asynchronous: a runtime per socket and an `epoll_wait` around every
//! answer (21 of them in one container's plug, measured with `strace`),
//! for requests that are one round trip each.

use ipnet::{Ipv4Net, Ipv6Net};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use rtnetlink::{
    AddressMessageBuilder, LinkBridge, LinkMacVlan, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

pub use netlink_packet_route::link::MacVlanMode;
use std::cell::Cell;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
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

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError::Request { what, source }
}

/// The kernel's `LOOPBACK_IFINDEX`: `lo` is device 1 in every namespace.
const LOOPBACK_INDEX: u32 = 1;

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
    sock: Socket,
    seq: Cell<u32>,
    /// Where answers are read: 64 KiB holds any one datagram of a dump.
    buf: std::cell::RefCell<Vec<u8>>,
}

/// Runs `f` with this thread in the network namespace at `ns_path`, and
/// back in its own after. A socket belongs to the namespace of the thread
/// that creates it, and /proc/sys/net to that of the thread that opens it;
/// `setns` moves only the calling thread. Coming back cannot fail short of
/// the kernel taking CAP_SYS_ADMIN away from us mid-call; should it, the
/// process stops at once rather than go on doing host work in a
/// container's namespace.
fn in_netns<T>(ns_path: &Path, f: impl FnOnce() -> T) -> std::io::Result<T> {
    use nix::sched::{setns, CloneFlags};
    let own = std::fs::File::open("/proc/thread-self/ns/net")?;
    let target = std::fs::File::open(ns_path)?;
    setns(target.as_fd(), CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
    let out = f();
    if let Err(e) = setns(own.as_fd(), CloneFlags::CLONE_NEWNET) {
        eprintln!("minirt: cannot return to our own network namespace: {e}");
        std::process::abort();
    }
    Ok(out)
}

impl Netlink {
    /// A socket in the caller's own network namespace.
    pub(crate) fn open() -> Result<Netlink> {
        let what = "cannot open a netlink socket";
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(io_err(what))?;
        sock.bind_auto().map_err(io_err(what))?;
        Ok(Netlink {
            sock,
            seq: Cell::new(0),
            buf: std::cell::RefCell::new(vec![0u8; 64 * 1024]),
        })
    }

    /// A socket in the network namespace of `pid` (e.g. a container child).
    pub(crate) fn open_in_pid(pid: i32) -> Result<Netlink> {
        Self::open_in(&PathBuf::from(format!("/proc/{pid}/ns/net")))
    }

    /// A socket in the network namespace named by `ns_path`: this thread
    /// joins it for the socket's creation only (`in_netns`).
    pub(crate) fn open_in(ns_path: &Path) -> Result<Netlink> {
        let what = format!("cannot open a netlink socket in {}", ns_path.display());
        in_netns(ns_path, Self::open).map_err(io_err(what))?
    }

    /// Sends one request and reads its answers up to the acknowledgement
    /// (or, for a dump, the end): the messages it returned, or the
    /// kernel's error.
    fn request(
        &self,
        what: impl Fn() -> String,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        req.header.sequence_number = seq;
        req.finalize();
        let mut buf = vec![0; req.buffer_len()];
        req.serialize(&mut buf);
        let kernel = SocketAddr::new(0, 0);
        if let Err(e) = self.sock.send_to(&buf, &kernel, 0) {
            return Err(io_err(what())(e));
        }
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = vec![];
        let mut rbuf = self.buf.borrow_mut();
        loop {
            let n = match self.sock.recv(&mut &mut rbuf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(what())(e)),
            };
            if n == 0 {
                return Err(NetlinkError::Protocol {
                    what: what(),
                    msg: "the answer ended early".into(),
                });
            }
            let mut off = 0;
            while off + 16 <= n {
                let len =
                    u32::from_ne_bytes([rbuf[off], rbuf[off + 1], rbuf[off + 2], rbuf[off + 3]])
                        as usize;
                if len < 16 || off + len > n {
                    return Err(NetlinkError::Protocol {
                        what: what(),
                        msg: format!("truncated answer ({len} bytes at {off} of {n})"),
                    });
                }
                let parsed =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rbuf[off..off + len]);
                off += (len + 3) & !3;
                let m = parsed.map_err(|e| NetlinkError::Protocol {
                    what: what(),
                    msg: e.to_string(),
                })?;
                // An answer to an earlier request this socket gave up on.
                if m.header.sequence_number != seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(io_err(what())(e.to_io()))
                    }
                    // The acknowledgement: the request's last answer.
                    NetlinkPayload::Error(_) => return Ok(out),
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(inner) => {
                        out.push(inner);
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// A change the kernel acknowledges.
    fn change(
        &self,
        what: impl Fn() -> String,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<()> {
        self.request(what, msg, NLM_F_REQUEST | NLM_F_ACK | flags)
            .map(|_| ())
    }

    fn set_link(&self, what: impl Fn() -> String, msg: LinkMessage) -> Result<()> {
        self.change(what, RouteNetlinkMessage::SetLink(msg), 0)
    }

    fn add_link(&self, what: impl Fn() -> String, msg: LinkMessage) -> Result<()> {
        self.change(
            what,
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    fn add_route(&self, what: impl Fn() -> String, msg: RouteMessage) -> Result<()> {
        self.change(
            what,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    fn add_addr(&self, what: impl Fn() -> String, msg: AddressMessage) -> Result<()> {
        self.change(
            what,
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    fn dump_routes(&self, what: &str, msg: RouteMessage) -> Result<Vec<RouteMessage>> {
        let all = self.request(
            || what.to_string(),
            RouteNetlinkMessage::GetRoute(msg),
            NLM_F_REQUEST | NLM_F_DUMP,
        )?;
        Ok(all
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Some(r),
                _ => None,
            })
            .collect())
    }

    /// The device named `name`, or None when there is none.
    pub(crate) fn link(&self, name: &str) -> Result<Option<LinkInfo>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.get_link(|| format!("cannot look up device {name}"), msg)
    }

    /// The device `msg` names (by name or index), or None when there is none.
    fn get_link(&self, what: impl Fn() -> String, msg: LinkMessage) -> Result<Option<LinkInfo>> {
        match self.request(what, RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST) {
            Ok(msgs) => Ok(msgs.iter().find_map(new_link)),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(e),
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
        let msgs = self.request(
            || "cannot list devices".to_string(),
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
        )?;
        Ok(msgs.iter().filter_map(new_link).collect())
    }

    /// Creates bridge `name` with `addr` (gateway/prefix), up, its MAC pinned.
    /// On failure nothing is left behind.
    pub(crate) fn create_bridge(&self, name: &str, mtu: u32, addr: Option<Ipv4Net>) -> Result<()> {
        let mut msg = LinkBridge::new(name);
        if mtu > 0 {
            msg = msg.mtu(mtu);
        }
        self.add_link(|| format!("cannot create bridge {name}"), msg.build())?;
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
        self.set_link(|| format!("cannot pin the MAC address of {name}"), msg)
    }

    pub(crate) fn set_up(&self, name: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_name(name).up().build();
        self.set_link(|| format!("cannot bring {name} up"), msg)
    }

    fn set_up_index(&self, index: u32, name: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.set_link(|| format!("cannot bring {name} up"), msg)
    }

    /// Deletes a device; Ok(false) when it did not exist (deletion is idempotent).
    pub(crate) fn delete_link(&self, name: &str) -> Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.change(
            || format!("cannot delete device {name}"),
            RouteNetlinkMessage::DelLink(msg),
            0,
        ) {
            Ok(()) => Ok(true),
            Err(e) if is_absent(&e) => Ok(false),
            Err(e) => Err(e),
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
        self.add_link(|| format!("cannot create veth pair {host}/{peer}"), msg)?;
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
        if let Err(e) = self.set_up(host) {
            // Not handed to the caller yet, so not in its undo: remove it here.
            let _ = self.delete_link(host);
            return Err(e);
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
        self.add_link(
            || format!("cannot create macvlan {name} on {parent}"),
            msg.build(),
        )
    }

    pub(crate) fn add_address(&self, name: &str, addr: Ipv4Net) -> Result<()> {
        self.add_address_at(self.index(name)?, name, addr)
    }

    fn add_address_at(&self, index: u32, name: &str, addr: Ipv4Net) -> Result<()> {
        let msg = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(addr.addr(), addr.prefix_len())
            .build();
        self.add_addr(|| format!("cannot add address {addr} to {name}"), msg)
    }

    /// Default route via `gateway` (out of whichever device reaches it).
    pub(crate) fn add_default_route(&self, gateway: Ipv4Addr) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .build();
        self.add_route(|| format!("cannot add a default route via {gateway}"), msg)
    }

    /// Adds an IPv6 address without duplicate address detection (IFA_F_NODAD:
    /// minirt's IPAM already made it unique, and DAD would keep it tentative,
    /// unusable, for a second).
    pub(crate) fn add_address6(&self, name: &str, addr: Ipv6Net) -> Result<()> {
        use netlink_packet_route::address::{AddressAttribute, AddressFlags};
        let mut msg = AddressMessageBuilder::<Ipv6Addr>::new()
            .index(self.index(name)?)
            .address(addr.addr(), addr.prefix_len())
            .build();
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        self.add_addr(|| format!("cannot add address {addr} to {name}"), msg)
    }

    /// IPv6 default route via `gateway` (out of whichever device reaches it).
    pub(crate) fn add_default_route6(&self, gateway: Ipv6Addr) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(gateway)
            .build();
        self.add_route(|| format!("cannot add a default route via {gateway}"), msg)
    }

    /// IPv6 routes of the main table (destination prefixes).
    pub(crate) fn ipv6_routes(&self) -> Result<Vec<Ipv6Net>> {
        let msg = RouteMessageBuilder::<Ipv6Addr>::new().build();
        let all = self.dump_routes("cannot list IPv6 routes", msg)?;
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
        let all = self.dump_routes("cannot list routes", msg)?;
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
        let mut msg = LinkMessage::default();
        msg.header.index = oif;
        let dev = self.get_link(|| "cannot read the default route's device".to_string(), msg)?;
        Ok(dev.map(|l| l.mtu))
    }

    /// Inside a container netns: lo up, `ifname` gets `addr` and goes up, and
    /// (when given) the default route via `gateway`. Five requests: `lo` is
    /// device 1 in every namespace, and `ifname` is looked up once.
    pub(crate) fn configure_container_if(
        &self,
        ifname: &str,
        addr: Ipv4Net,
        gateway: Option<Ipv4Addr>,
    ) -> Result<()> {
        self.set_up_index(LOOPBACK_INDEX, "lo")?;
        let index = self.index(ifname)?;
        self.add_address_at(index, ifname, addr)?;
        self.set_up_index(index, ifname)?;
        if let Some(gw) = gateway {
            self.add_default_route(gw)?;
        }
        Ok(())
    }

    /// `lo` up (IPv6-only endpoints, which take their addresses after).
    pub(crate) fn set_lo_up(&self) -> Result<()> {
        self.set_up_index(LOOPBACK_INDEX, "lo")
    }
}

/// A device in an answer, if the message is one.
fn new_link(m: &RouteNetlinkMessage) -> Option<LinkInfo> {
    match m {
        RouteNetlinkMessage::NewLink(l) => Some(link_info(l)),
        _ => None,
    }
}

/// The kernel's answer for a device that is not there.
fn is_absent(e: &NetlinkError) -> bool {
    matches!(e.errno(), Some(libc::ENODEV) | Some(libc::ENOENT))
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

/// Writes a sysctl in the network namespace at `ns_path` (/proc/sys/net
/// belongs to the netns of the thread that opens it: `in_netns`).
pub(crate) fn set_sysctl_in(ns_path: &Path, key: &str, value: &str) -> Result<()> {
    let what = format!("cannot enter {}", ns_path.display());
    in_netns(ns_path, || set_sysctl(key, value)).map_err(io_err(what))?
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
