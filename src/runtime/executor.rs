//! The one executor: a spec (plus, for minirt's own containers, an overlay
//! to mount) in, a cloned container init blocked at its start gate out.
//! minirt's `run` and the OCI `create` both come through here; the child's
//! side is `init`.

use super::clone::{fork_into, Forked};
use super::init::{child_main, Console, Gate, InitArgs};
use super::protocol;
use super::spec::{ns_plan, NsPlan};
use crate::cgroups::Cgroup;
use crate::rootfs::mount::{Overlay, RootSwitch};
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

pub struct SpawnOptions {
    pub overlay: Option<Overlay>,
    pub console: Console,
    pub gate: Gate,
    pub cgroup: Cgroup,
    pub preserve_fds: u32,
    pub root_switch: RootSwitch,
}

pub struct Spawned {
    pub pid: Pid,
    /// The parent's end of the sync socket (`protocol`).
    pub sync: OwnedFd,
}

/// The statfs magic of nsfs: what a namespace path must be.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Opens a namespace file named by the spec, refusing anything that is not one.
pub(crate) fn open_namespace(path: &Path) -> Result<OwnedFd, String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("namespace path {}: {e}", path.display()))?;
    let st = nix::sys::statfs::fstatfs(&f)
        .map_err(|e| format!("namespace path {}: {e}", path.display()))?;
    if st.filesystem_type().0 as i64 != NSFS_MAGIC {
        return Err(format!("{} is not a namespace", path.display()));
    }
    Ok(f.into())
}

/// Clones the container's init for `spec`. `in_child` runs first thing in
/// the child (stdio redirection). The init joins its cgroup and namespaces,
/// sets up its rootfs and waits at `opts.gate`.
///
/// # Safety
/// As `fork_into`: call before starting threads whose locks the child could
/// need; the child never returns (it ends in `_exit`).
pub unsafe fn spawn(
    spec: Spec,
    opts: SpawnOptions,
    in_child: impl FnOnce(),
) -> Result<Spawned, String> {
    let plan: NsPlan = ns_plan(&spec)?;
    let mut join = Vec::new();
    let mut pid_ns = None;
    for (flag, path) in &plan.join {
        let fd = open_namespace(path)?;
        if *flag == CloneFlags::CLONE_NEWPID {
            pid_ns = Some(fd);
        } else {
            join.push((*flag, fd));
        }
    }
    // A pid namespace is entered by the parent: setns(CLONE_NEWPID) only
    // places the children made afterwards.
    if let Some(fd) = &pid_ns {
        nix::sched::setns(fd, CloneFlags::CLONE_NEWPID)
            .map_err(|e| format!("joining the pid namespace: {e}"))?;
    }
    let (parent_sock, child_sock) = protocol::channel().map_err(|e| format!("socketpair: {e}"))?;
    let v2_dir = match opts.cgroup.v2_dir() {
        Some(d) => Some(std::fs::File::open(d).map_err(|e| format!("{}: {e}", d.display()))?),
        None => None,
    };
    // SAFETY: the caller's contract (see above).
    let forked = unsafe { fork_into(plan.clone, v2_dir.as_ref().map(|f| f.as_fd())) }
        .map_err(|e| format!("clone: {e}"))?;
    match forked {
        Forked::Child { in_cgroup } => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                drop(parent_sock);
                in_child();
                let args = InitArgs {
                    spec,
                    overlay: opts.overlay,
                    sync: child_sock,
                    console: opts.console,
                    gate: opts.gate,
                    cgroup: opts.cgroup,
                    born_in_v2: in_cgroup,
                    join,
                    new_cgroupns: plan.cgroupns,
                    preserve_fds: opts.preserve_fds,
                    root_switch: opts.root_switch,
                    userns: plan.clone.contains(CloneFlags::CLONE_NEWUSER),
                };
                child_main(&args)
            }))
            .unwrap_or(255);
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(code as i32) }
        }
        Forked::Parent { pid, .. } => Ok(Spawned {
            pid,
            sync: parent_sock,
        }),
    }
}
