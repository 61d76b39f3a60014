//! The end of the run path, in the container's monitor (or whoever finds
//! the container's init gone): wait for the exit, then record it and tear
//! down what `runtime::start` made (cgroup, network, rootfs mount, run dir;
//! everything with --rm). Not to be confused with the child's last steps
//! before execve (`process::finish_and_exec`).

use super::config::ContainerConfig;
use super::runtime::{cgroup_of, rootfs_path, sync_dns, uses_network};
use crate::rootfs::mount;
use crate::store::{containers, Store};
use crate::undo::ErrorList;
use crate::{network, util, Instance, Result};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use tracing::info_span;

/// Waits for the container's init to exit; returns Docker's exit code.
pub fn wait_exit(pid: i32) -> i32 {
    let _span = info_span!("wait").entered();
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// After the container's init is gone: record the exit, release network,
/// cgroup and rootfs, and remove it all when it was run with --rm.
/// Idempotent, keeps going past errors (collected in an `ErrorList`, logged
/// as warnings), usable by reconciliation.
pub fn finish(inst: &Instance, id: &str, exit_code: i32) -> Result<()> {
    let _span = info_span!("finish").entered();
    let mut store = Store::open(&inst.db_path())?;
    let Some(row) = containers::get(store.conn(), id)? else {
        return Ok(());
    };
    let cfg: ContainerConfig = serde_json::from_str(&row.config).unwrap_or_default();
    let span = info_span!("cgroup-remove").entered();
    let cg = cgroup_of(inst, id);
    let oom = cg.oom_killed();
    let mut errors = ErrorList::new();
    let _ = cg.kill_all(nix::sys::signal::Signal::SIGKILL);
    errors.check(format_args!("removing cgroup of {id}"), cg.remove());
    // The instance's parent cgroup stays for the next container (like
    // Docker's `docker` parent): removing it with the last container and
    // making it again at the next start cost one mkdir and one rmdir per
    // hierarchy (nine here) on every `run --rm` of a lone container.
    drop(span);
    // A --rm container's files (its upper dir on the root's disk: a few
    // inodes each of upper, work and the overlay's work dirs, slow on a
    // busy ext4) go in a thread while the network and the run dir are
    // released; started once its processes are gone (their cgroup is),
    // joined before the row goes, so the files still go first.
    let files = cfg.auto_remove.then(|| {
        let dir = inst.container_dir(id);
        std::thread::spawn(move || {
            let _ = std::fs::remove_dir_all(dir);
        })
    });
    if uses_network(&cfg) {
        let _span = info_span!("net-detach").entered();
        // When nothing uses the container's netns any more, the kernel
        // removes it and both ends of its veths, a few milliseconds later,
        // on its own: deleting a veth ourselves takes 13..40 ms here (two
        // RCU grace periods, lazy RCU) and waiting for the kernel ~15 ms,
        // for nothing the user can use. The address is not handed out
        // again at once (ipam::next_free), so nothing new meets the dying
        // veth. A veth something else keeps alive (a process that entered
        // the namespace) is deleted by a later command once its grace period
        // is over (endpoint::collect_dying_links): finding such processes
        // now would mean reading every process's namespace, a cost that
        // grows with the number of containers.
        let res = if util::process_alive(row.pid, row.pid_start) {
            network::detach(inst, &mut store, id)
        } else {
            network::detach_exited(inst, &mut store, id)
        };
        // Names follow the endpoints; none left to detach means whoever
        // took them (`rm -f`, for all it removes at once) told the responder.
        if !matches!(res, Ok(false)) {
            sync_dns(inst, id);
        }
        errors.check(format_args!("network teardown of {id}"), res.map(|_| ()));
    }
    let span = info_span!("unmount").entered();
    if let Err(e) = mount::unmount(&rootfs_path(inst, id)) {
        errors.push(e);
    }
    let _ = std::fs::remove_dir_all(inst.container_run_dir(id));
    drop(span);
    // The exit is recorded whatever failed above; what failed is logged.
    errors.warn_all();
    let _span = info_span!("store-update").entered();
    // A --rm container's files go first (the thread above), then its row
    // in the same commit as its exit: one commit instead of three. Dying
    // between the two leaves the row of a container whose monitor is gone,
    // which the next command finishes again (this function is idempotent);
    // the reverse order would leave files nothing refers to any more.
    if let Some(t) = files {
        let _ = t.join();
        // What the thread could not remove (or a panic in it), once more.
        remove_files(inst, id);
    }
    // The exit and its event in one transaction: whoever sees the row
    // exited (a `stop` waiting) sees the `die` before its own event.
    store.write(|tx| -> Result<()> {
        containers::set_exited(tx, id, exit_code, oom, util::now_nanos())?;
        super::events::container(tx, id, "die", &[("exitCode", &exit_code.to_string())]);
        if cfg.auto_remove {
            super::events::container(tx, id, "destroy", &[]);
            containers::delete(tx, id)?;
        }
        Ok(())
    })?;
    drop(_span);
    Ok(())
}

/// Deletes the container's persistent dir (upper layer, logs).
pub fn remove_files(inst: &Instance, id: &str) {
    let _ = std::fs::remove_dir_all(inst.container_dir(id));
}
