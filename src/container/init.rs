//! The container's side of the run path: the cloned child joins its
//! cgroup and sets up its root filesystem while the parent wires the network,
//! waits for the go, then becomes the container's process. Any failure
//! travels back as a message; this code never returns into the parent's
//! logic.

use super::process::{finish_and_exec, ChildFailure, ProcessSpec};
use super::protocol::{recv_msg, send_msg, send_msg_with_fd, ToChild, ToParent};
use super::pty::make_controlling_terminal;
use super::spec::{spec_capabilities, USER_ANNOTATION};
use crate::cgroups::Cgroup;
use crate::rootfs::mount::{setup_container_rootfs, Overlay};
use oci_spec::runtime::Spec;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

/// Everything the child needs, prepared by the parent before clone.
pub struct InitArgs {
    pub spec: Spec,
    /// The root filesystem to mount (in the child's own mount namespace).
    pub overlay: Overlay,
    pub sync: OwnedFd,
    /// Give the container a terminal from its own devpts.
    pub tty: bool,
    /// The container's cgroup, joined first thing.
    pub cgroup: Cgroup,
    /// Born in its cgroup2 directory already (clone3 CLONE_INTO_CGROUP).
    pub born_in_v2: bool,
}

/// Entry point of the cloned child. Returns the exit status for `_exit`.
pub fn child_main(args: &InitArgs) -> isize {
    let failure = match run(args) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    let code = failure.exit_code();
    let _ = send_msg(&args.sync, &ToParent::Failed(failure));
    code as isize
}

enum Never {}

fn run(args: &InitArgs) -> Result<Never, ChildFailure> {
    let other = |what: &str, e: &dyn std::fmt::Display| ChildFailure::Other(format!("{what}: {e}"));
    let spec = &args.spec;
    // Into the cgroup before anything is charged to the runtime's.
    args.cgroup
        .join_self(args.born_in_v2)
        .map_err(|e| other("joining the cgroup", &e))?;
    setup_container_rootfs(spec, Some(&args.overlay))
        .map_err(|e| ChildFailure::Other(e.to_string()))?;
    if let Some(h) = spec.hostname() {
        nix::unistd::sethostname(h).map_err(|e| other("sethostname", &e))?;
    }
    // The terminal comes from the container's own devpts (so `tty` names a
    // path that exists inside); its master goes to the parent to relay.
    let console = if args.tty {
        let (master, slave) = open_console().map_err(|e| other("allocating a terminal", &e))?;
        send_msg_with_fd(&args.sync, &ToParent::Console, master.as_fd())
            .map_err(|e| other("sending the terminal", &e))?;
        Some(slave)
    } else {
        None
    };

    // Wait for the parent: network wired.
    match recv_msg::<ToChild>(&args.sync) {
        Ok(Some(ToChild::Continue)) => {}
        Ok(None) => return Err(ChildFailure::Other("parent went away before start".into())),
        Err(e) => return Err(other("sync", &e)),
    }
    // Now that we are in our cgroup, make it the root of our cgroup view.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| other("unshare cgroup namespace", &e))?;

    if let Some(slave) = &console {
        make_controlling_terminal(slave).map_err(|e| other("setting up the terminal", &e))?;
    }
    drop(console);
    close_inherited_fds(args.sync.as_raw_fd());

    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| ChildFailure::Other("spec has no process".into()))?;
    let user = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(USER_ANNOTATION).cloned())
        .unwrap_or_default();
    let ps = ProcessSpec {
        args: process.args().clone().unwrap_or_default(),
        env: process.env().clone().unwrap_or_default(),
        cwd: process.cwd().to_string_lossy().into_owned(),
        user,
        capabilities: spec_capabilities(spec),
        no_new_privs: process.no_new_privileges().unwrap_or(true),
        seccomp: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
    };
    Err(finish_and_exec(&ps))
}

/// Opens a pty pair on the (already pivoted) container's /dev/ptmx.
fn open_console() -> nix::Result<(OwnedFd, OwnedFd)> {
    use nix::fcntl::OFlag;
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname_r(&master)?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )?;
    Ok((master.into(), slave))
}

/// Marks every fd above stderr close-on-exec, so nothing the runtime had
/// open (database, log files, sockets) leaks into the container.
fn close_inherited_fds(keep: RawFd) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    for fd in fds {
        if fd > 2 && fd != keep {
            // SAFETY: F_SETFD on an fd number; a stale number just fails.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}
