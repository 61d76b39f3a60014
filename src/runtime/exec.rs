//! The container's side of `exec`: the helper forked by `container::exec`
//! joins the container's v1 cgroups and its pid namespace (which applies to
//! children), then makes the process, born in the container's cgroup2
//! directory. The process enters the other namespaces, sets up its stdio or
//! terminal, and ends in `process::finish_and_exec`. Failures travel on the
//! one parent/child channel (`protocol`).

use super::process::{finish_and_exec, ChildFailure, ProcessSpec};
use super::protocol::send_failure;
use super::pty;
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// The namespaces `exec` joins, in the order it joins them: user first (it owns the others),
/// mnt last (after it, /proc paths of the host are gone).
pub const NAMESPACES: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Which namespaces to join: those whose identity (dev, inode) differs from ours, in
/// [`NAMESPACES`] order. Joining one we are already in is pointless, and for user it is EINVAL.
pub fn join_plan(target: &[(&str, (u64, u64))], own: &[(&str, (u64, u64))]) -> Vec<&'static str> {
    NAMESPACES
        .iter()
        .filter(|(name, _)| {
            let t = target.iter().find(|(n, _)| n == name).map(|(_, id)| id);
            let o = own.iter().find(|(n, _)| n == name).map(|(_, id)| id);
            matches!((t, o), (Some(t), Some(o)) if t != o) || matches!((t, o), (Some(_), None))
        })
        .map(|(name, _)| *name)
        .collect()
}

/// Docker's exit code for a wait status: the code, or 128 + signal.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Everything the helper needs, prepared before fork.
pub(crate) struct Prepared {
    pub namespaces: Vec<(CloneFlags, OwnedFd)>,
    /// cgroup.procs files of the cgroups joined through their `tasks` file
    /// (the v1 hierarchies).
    pub cgroup_procs: Vec<PathBuf>,
    /// The cgroup2 directory, open, and its cgroup.procs file: the process
    /// is born in it (or, where that fails, moved there).
    pub cgroup_v2: Option<(PathBuf, OwnedFd)>,
    pub err_w: OwnedFd,
    /// Child stdio: (stdin, stdout, stderr) fds to dup2 onto 0/1/2, or the pty slave.
    pub child_io: ChildIo,
}

pub(crate) enum ChildIo {
    /// A host pty slave to fall back on, and the socket the container's own pty master goes
    /// back on when the helper can open one inside the container.
    Pty {
        fallback: OwnedFd,
        sock: OwnedFd,
    },
    Fds([Option<RawFd>; 3]),
}

fn helper_fail(err_w: BorrowedFd<'_>, msg: String) -> ! {
    send_failure(err_w, &ChildFailure::Other(msg));
    // SAFETY: _exit in a forked child skips the parent's atexit handlers and buffers.
    unsafe { libc::_exit(125) }
}

/// Close every fd the helper does not need: fds inherited from other threads of the caller
/// (pipes, ptys) would otherwise be held open in the container until the process exits.
fn close_fds_except(keep: &[RawFd]) {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect(),
        Err(_) => return,
    };
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing fds we own in a single-threaded forked child.
            unsafe { libc::close(fd) };
        }
    }
}

pub(crate) fn helper_main(p: &Prepared, spec: &ProcessSpec, detach: bool) -> ! {
    let err_w = p.err_w.as_fd();
    let mut keep: Vec<RawFd> = p.namespaces.iter().map(|(_, f)| f.as_raw_fd()).collect();
    keep.push(p.err_w.as_raw_fd());
    keep.extend(p.cgroup_v2.as_ref().map(|(_, f)| f.as_raw_fd()));
    match &p.child_io {
        ChildIo::Pty { fallback, sock } => keep.extend([fallback.as_raw_fd(), sock.as_raw_fd()]),
        ChildIo::Fds(fds) => keep.extend(fds.iter().flatten()),
    }
    close_fds_except(&keep);

    // Cgroups first, while the host's cgroupfs is still what we see. This
    // helper is single-threaded: it moves itself (no global lock, see
    // cgroups::join_self).
    for procs in &p.cgroup_procs {
        join_or_fail(err_w, procs);
    }
    // The pid namespace alone here: setns(CLONE_NEWPID) places the children
    // made afterwards. The process is made before any other namespace is
    // entered, so that it can be born in the cgroup2 directory: the kernel
    // checks that move with our host credentials and cgroup namespace.
    if let Some((flag, fd)) = p
        .namespaces
        .iter()
        .find(|(f, _)| *f == CloneFlags::CLONE_NEWPID)
    {
        enter_or_fail(err_w, *flag, fd);
    }
    // Born in the cgroup2 directory (clone3's CLONE_INTO_CGROUP) rather
    // than moved there: a move through cgroup.procs takes the kernel's
    // global threadgroup lock for writing, and unless another move came
    // just before, that waits out an RCU grace period (8..31 ms on this
    // kind of machine, for every exec but back-to-back ones).
    let v2 = p.cgroup_v2.as_ref().map(|(_, f)| f.as_fd());
    // SAFETY: this helper is single-threaded (a fork); the child ends in
    // exec or _exit (child_main), never returning here.
    match unsafe { super::clone::fork_into(CloneFlags::empty(), v2) } {
        Ok(super::clone::Forked::Child { in_cgroup }) => child_main(p, in_cgroup, spec),
        Ok(super::clone::Forked::Parent { pid: child, .. }) => {
            // SAFETY: raw close of our copies; the Prepared values are never dropped here
            // because this function never returns.
            unsafe { libc::close(p.err_w.as_raw_fd()) };
            if let ChildIo::Pty { fallback, sock } = &p.child_io {
                // SAFETY: as above, our copies of the fallback fd and the pty socket.
                unsafe {
                    libc::close(fallback.as_raw_fd());
                    libc::close(sock.as_raw_fd());
                }
            }
            if detach {
                // SAFETY: leaves without running destructors the exec'd
                // process does not share.
                unsafe { libc::_exit(0) };
            }
            let code = loop {
                match waitpid(child, None) {
                    Ok(st) => {
                        if let Some(c) = exit_code(st) {
                            break c;
                        }
                    }
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break 125,
                }
            };
            // SAFETY: see helper_fail.
            unsafe { libc::_exit(code) }
        }
        Err(e) => helper_fail(err_w, format!("fork inside the container: {e}")),
    }
}

/// A pty opened inside the container (its /dev/ptmx, after setns into its mount namespace),
/// checked to really be one, since the container controls what /dev/ptmx is.
fn container_pty() -> Option<(OwnedFd, OwnedFd)> {
    let (m, s) = pty::open_pty().ok()?;
    (pty::is_pty_master(m.as_fd()) && pty::is_tty(s.as_fd())).then_some((m, s))
}

/// Moves this (single-threaded) process into the cgroup of `procs`
/// (cgroups::join_self), or reports the failure and exits.
fn join_or_fail(err_w: BorrowedFd<'_>, procs: &std::path::Path) {
    if let Err(e) = crate::cgroups::join_self(procs) {
        helper_fail(err_w, format!("join cgroup {}: {e}", procs.display()));
    }
}

/// Enters the container's namespace `flag` (`fd`), or reports the failure
/// and exits.
fn enter_or_fail(err_w: BorrowedFd<'_>, flag: CloneFlags, fd: &OwnedFd) {
    if let Err(e) = super::sys::Sys::setns(&super::sys::RealSys, fd.as_fd(), flag) {
        helper_fail(
            err_w,
            format!("enter the container's {flag:?} namespace: {e}"),
        );
    }
}

/// The exec'd process, in the container's pid namespace (and its cgroup2
/// directory when `in_cgroup`): the rest of the container's cgroups and
/// namespaces, its stdio or terminal, then `finish_and_exec`.
fn child_main(p: &Prepared, in_cgroup: bool, spec: &ProcessSpec) -> ! {
    let err_w = p.err_w.as_fd();
    // Not born in the cgroup2 directory (a kernel without clone3, or a
    // directory that refuses it): moved there, the slow way, while our
    // credentials and cgroup namespace are still the host's.
    if let (false, Some((procs, _))) = (in_cgroup, &p.cgroup_v2) {
        join_or_fail(err_w, procs);
    }
    for (flag, fd) in &p.namespaces {
        if *flag == CloneFlags::CLONE_NEWPID {
            continue; // entered by the helper: we were born in it
        }
        enter_or_fail(err_w, *flag, fd);
    }
    let slave = match &p.child_io {
        ChildIo::Pty { fallback, sock } => {
            let own = container_pty();
            let sent = own
                .as_ref()
                .is_some_and(|(m, _)| pty::send_fd(sock.as_fd(), Some(m.as_fd())).is_ok());
            if !sent {
                let _ = pty::send_fd(sock.as_fd(), None);
            }
            // SAFETY: our copy of the socket is not needed past this point.
            unsafe { libc::close(sock.as_raw_fd()) };
            match own {
                Some((m, s)) if sent => {
                    drop(m);
                    Some(s)
                }
                _ => fallback.try_clone().ok(),
            }
        }
        ChildIo::Fds(_) => None,
    };
    let slave = slave.as_ref();
    let io_result = match (&p.child_io, slave) {
        (ChildIo::Pty { .. }, Some(slave)) => pty::make_controlling_terminal(slave),
        (ChildIo::Pty { .. }, None) => Err(nix::errno::Errno::EBADF),
        (ChildIo::Fds(fds), _) => dup_stdio(fds),
    };
    if let Err(e) = io_result {
        helper_fail(err_w, format!("set up the exec process's stdio: {e}"));
    }
    let failure = finish_and_exec(&super::sys::RealSys, spec, err_w);
    send_failure(err_w, &failure);
    // SAFETY: see helper_fail.
    unsafe { libc::_exit(failure.exit_code()) }
}

/// dup2 the chosen fds onto 0/1/2. Sources may themselves be 0..2, so dup them above 2 first.
fn dup_stdio(fds: &[Option<RawFd>; 3]) -> nix::Result<()> {
    let mut high = [None; 3];
    for (i, fd) in fds.iter().enumerate() {
        if let Some(fd) = fd {
            // SAFETY: F_DUPFD_CLOEXEC on an fd we hold.
            let r = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3) };
            high[i] = Some(nix::errno::Errno::result(r)?);
        }
    }
    for (target, fd) in high.iter().enumerate() {
        if let Some(fd) = fd {
            // SAFETY: dup2 onto a standard fd number; the result is not CLOEXEC.
            nix::errno::Errno::result(unsafe { libc::dup2(*fd, target as RawFd) })?;
        }
    }
    Ok(())
}
