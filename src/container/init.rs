//! The container's side of the run path: the cloned child sets up its root
//! filesystem while the parent wires cgroup and network, waits for the go,
//! then becomes the container's process. Any failure travels back as a
//! message; this code never returns into the parent's logic.

use super::process::{finish_and_exec, ChildFailure, ProcessSpec};
use super::protocol::{recv_msg, send_msg, ToChild, ToParent};
use super::spec::USER_ANNOTATION;
use crate::rootfs::mount::setup_container_rootfs;
use oci_spec::runtime::Spec;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Everything the child needs, prepared by the parent before clone.
pub struct InitArgs {
    pub spec: Spec,
    pub sync: OwnedFd,
    /// The pty slave, when the container has a terminal.
    pub tty: Option<RawFd>,
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
    setup_container_rootfs(spec).map_err(|e| ChildFailure::Other(e.to_string()))?;
    if let Some(h) = spec.hostname() {
        nix::unistd::sethostname(h).map_err(|e| other("sethostname", &e))?;
    }

    // Wait for the parent: cgroup joined, network wired.
    match recv_msg::<ToChild>(&args.sync) {
        Ok(Some(ToChild::Continue)) => {}
        Ok(None) => return Err(ChildFailure::Other("parent went away before start".into())),
        Err(e) => return Err(other("sync", &e)),
    }
    // Now that we are in our cgroup, make it the root of our cgroup view.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| other("unshare cgroup namespace", &e))?;

    if let Some(tty) = args.tty {
        make_controlling_tty(tty).map_err(|e| other("setting up the terminal", &e))?;
    }
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
        capabilities: None,
        no_new_privs: process.no_new_privileges().unwrap_or(true),
    };
    Err(finish_and_exec(&ps))
}

fn make_controlling_tty(fd: RawFd) -> nix::Result<()> {
    nix::unistd::setsid()?;
    // SAFETY: TIOCSCTTY on a valid pty slave fd; no memory is passed.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) };
    if r < 0 {
        return Err(nix::errno::Errno::last());
    }
    for target in 0..3 {
        // SAFETY: dup2 on fds we own; failure is reported.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(nix::errno::Errno::last());
        }
    }
    if fd > 2 {
        // SAFETY: closing our own duplicate of the slave.
        unsafe { libc::close(fd) };
    }
    Ok(())
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
