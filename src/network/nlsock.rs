//! The one place minirt opens an nfnetlink (NETLINK_NETFILTER) socket: for
//! requests (port maps, anti-spoofing elements, the ruleset generation) and
//! for the guardian's subscription to nftables notifications.

use super::NetworkError;
use nix::sys::socket::{
    bind, setsockopt, socket, sockopt, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::{TimeVal, TimeValLike};
use std::os::fd::OwnedFd;

fn err(what: &str, e: nix::Error) -> NetworkError {
    NetworkError::Firewall(format!("nfnetlink {what}: {}", std::io::Error::from(e)))
}

/// An nfnetlink socket whose receives give up after `timeout_secs`. With
/// `groups` (a bit mask of multicast groups) it is bound to them: a socket
/// that only joins a group by setsockopt, unbound, is not sent the
/// notifications (measured).
pub(crate) fn open(groups: u32, timeout_secs: i64) -> Result<OwnedFd, NetworkError> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )
    .map_err(|e| err("socket", e))?;
    if groups != 0 {
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &NetlinkAddr::new(0, groups),
        )
        .map_err(|e| err("bind", e))?;
    }
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &TimeVal::seconds(timeout_secs),
    )
    .map_err(|e| err("receive timeout", e))?;
    Ok(fd)
}
