//! The parent/child protocol: typed messages over a SOCK_SEQPACKET socketpair
//! (one message per packet, JSON). The child's end is CLOEXEC, so a
//! successful execve shows up in the parent as end-of-file.

use super::process::ChildFailure;
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd};

#[derive(Debug, Serialize, Deserialize)]
pub enum ToChild {
    /// The parent has put the child in its cgroup and wired its network.
    Continue,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ToParent {
    /// Something failed before execve.
    Failed(ChildFailure),
}

pub fn channel() -> nix::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

pub fn send_msg<T: Serialize>(fd: &OwnedFd, msg: &T) -> std::io::Result<()> {
    let buf = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    // MSG_NOSIGNAL: a peer that already died must not SIGPIPE us.
    send(fd.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL)?;
    Ok(())
}

/// Next message, or None at end-of-file (peer closed: exec'd or died).
pub fn recv_msg<T: for<'de> Deserialize<'de>>(fd: &OwnedFd) -> std::io::Result<Option<T>> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                return serde_json::from_slice(&buf[..n])
                    .map(Some)
                    .map_err(std::io::Error::other)
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_close_is_eof() {
        let (a, b) = channel().unwrap();
        send_msg(&a, &ToParent::Failed(ChildFailure::NotFound("x".into()))).unwrap();
        let got: Option<ToParent> = recv_msg(&b).unwrap();
        assert!(matches!(got, Some(ToParent::Failed(ChildFailure::NotFound(m))) if m == "x"));
        drop(a);
        let got: Option<ToParent> = recv_msg(&b).unwrap();
        assert!(got.is_none());
    }
}
