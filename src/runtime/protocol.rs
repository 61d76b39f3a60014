//! The parent/child protocol: typed messages over a SOCK_SEQPACKET socketpair
//! (one message per packet, JSON), the one channel for the container's init
//! and for `exec`. The child's end is CLOEXEC, so a successful execve shows
//! up in the parent as end-of-file after `Ready`; end-of-file without `Ready`
//! is a child that died before it got there.

use super::process::ChildFailure;
use nix::sys::socket::{
    recv, recvmsg, send, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType,
};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToChild {
    /// The parent has put the child in its cgroup and wired its network.
    Continue,
    /// The parent has written the maps of the child's new user namespace.
    Mapped,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToParent {
    /// The pty master, opened in the container's own devpts, is attached
    /// (SCM_RIGHTS) to this message.
    Console,
    /// Something failed before execve.
    Failed(ChildFailure),
    /// Set up and blocked at its start gate (the OCI `create` is done).
    Created,
    /// Everything done; execve is the next call.
    Ready,
    /// Mounts done, before the root switch: the parent runs the OCI
    /// createRuntime and prestart hooks now, then sends `Continue`.
    Mounted,
}

/// How a child's last steps ended, as the parent sees them.
#[derive(Debug)]
pub enum Outcome {
    /// It reached execve (`Ready`, then end-of-file); the terminal master if
    /// it sent one.
    Execed {
        console: Option<OwnedFd>,
    },
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

pub(crate) fn send_msg<T: Serialize>(fd: &OwnedFd, msg: &T) -> std::io::Result<()> {
    send_to(fd.as_fd(), msg)
}

pub fn send_to<T: Serialize>(fd: BorrowedFd<'_>, msg: &T) -> std::io::Result<()> {
    let buf = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    // MSG_NOSIGNAL: a peer that already died must not SIGPIPE us.
    send(fd.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL)?;
    Ok(())
}

/// Child side: the failure, best effort (the exit code still carries its
/// class when nobody listens).
pub(crate) fn send_failure(fd: BorrowedFd<'_>, failure: &ChildFailure) {
    let _ = send_to(fd, &ToParent::Failed(failure.clone()));
}

/// Parent side: reads until end-of-file and tells what happened. A
/// `Created` here is an error (only the OCI create waits for it).
pub(crate) fn await_exec(fd: &OwnedFd) -> std::io::Result<Outcome> {
    let mut ready = false;
    let mut console = None;
    loop {
        match recv_msg_fd::<ToParent>(fd)? {
            None if ready => return Ok(Outcome::Execed { console }),
            None => {
                return Ok(Outcome::Failed(ChildFailure::Other(
                    "the container's process ended before exec without a report".into(),
                )))
            }
            Some((ToParent::Ready, _)) => ready = true,
            Some((ToParent::Console, fd)) => console = fd,
            Some((ToParent::Failed(f), _)) => return Ok(Outcome::Failed(f)),
            Some((ToParent::Created | ToParent::Mounted, _)) => {
                return Ok(Outcome::Failed(ChildFailure::Other(
                    "the container's init stopped at the OCI start gate".into(),
                )))
            }
        }
    }
}

/// Sends `msg` with `attach` passed along as SCM_RIGHTS.
pub(crate) fn send_msg_with_fd<T: Serialize>(
    fd: &OwnedFd,
    msg: &T,
    attach: BorrowedFd,
) -> std::io::Result<()> {
    let buf = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    let fds = [attach.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(&buf)];
    sendmsg::<()>(fd.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Like `recv_msg`, also returning an fd passed with the message, if any.
pub(crate) fn recv_msg_fd<T: for<'de> Deserialize<'de>>(
    fd: &OwnedFd,
) -> std::io::Result<Option<(T, Option<OwnedFd>)>> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let (n, passed) = match recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            // The peer exited with a message of ours unread (a child that
            // failed before reading "continue"): the kernel reports that
            // once, ahead of what the peer sent before; read on.
            Err(nix::errno::Errno::ECONNRESET) => continue,
            Err(e) => return Err(e.into()),
            Ok(msg) => {
                let mut passed = None;
                for c in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        for raw in fds {
                            // SAFETY: the kernel just installed this fd for us.
                            let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                            if passed.is_none() {
                                passed = Some(owned);
                            }
                        }
                    }
                }
                (msg.bytes, passed)
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..n]).map_err(std::io::Error::other)?;
        return Ok(Some((msg, passed)));
    }
}

/// Next message, or None at end-of-file (peer closed: exec'd or died).
pub(crate) fn recv_msg<T: for<'de> Deserialize<'de>>(fd: &OwnedFd) -> std::io::Result<Option<T>> {
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
        let file = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsFd;
        send_msg_with_fd(&a, &ToParent::Console, file.as_fd()).unwrap();
        let (msg, fd) = recv_msg_fd::<ToParent>(&b).unwrap().unwrap();
        assert!(matches!(msg, ToParent::Console));
        assert!(fd.is_some());
        drop(a);
        let got: Option<ToParent> = recv_msg(&b).unwrap();
        assert!(got.is_none());
    }

    #[test]
    fn ready_then_eof_is_an_exec_and_eof_alone_is_a_death() {
        let (a, b) = channel().unwrap();
        send_msg(&a, &ToParent::Ready).unwrap();
        drop(a);
        assert!(matches!(
            await_exec(&b).unwrap(),
            Outcome::Execed { console: None }
        ));

        let (a, b) = channel().unwrap();
        drop(a);
        match await_exec(&b).unwrap() {
            Outcome::Failed(ChildFailure::Other(m)) => assert!(m.contains("before exec"), "{m}"),
            other => panic!("{other:?}"),
        }

        // A failure after Ready (the exec itself) is still the answer.
        let (a, b) = channel().unwrap();
        send_msg(&a, &ToParent::Ready).unwrap();
        let f = ChildFailure::CannotExecute("exec: \"/etc\": permission denied".into());
        send_failure(a.as_fd(), &f);
        drop(a);
        match await_exec(&b).unwrap() {
            Outcome::Failed(got) => assert_eq!(got, f),
            other => panic!("{other:?}"),
        }
    }
}
