//! The parent's side of the run path, in the process that becomes the
//! container's monitor: rootfs, spec, cgroup, clone, network, release the
//! child; then wait for the exit and tear everything down.

use super::config::ContainerConfig;
use super::init::{Console, Gate};
use super::process::ChildFailure;
use super::protocol::{recv_msg_fd, send_msg, ToChild, ToParent};
use super::spec::{self, EtcFiles};
use super::ContainerError;
use crate::cgroups::Cgroup;
use crate::rootfs::{image, mount};
use crate::store::{containers, Store};
use crate::{network, util, Error, Instance, Result};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use tracing::{debug, info_span, warn};

/// Where the container's stdio goes.
pub enum Stdio {
    /// Inherit the caller's stdout/stderr; stdin too when `stdin` is set,
    /// else /dev/null.
    Inherit { stdin: bool },
    /// A new pty; the caller relays the master.
    Tty,
    /// stdout/stderr appended to the container's log file, stdin /dev/null.
    Log,
}

pub struct Started {
    pub pid: i32,
    /// The pty master when `Stdio::Tty` was asked for.
    pub pty: Option<OwnedFd>,
}

/// The container's stdout (and everything, with a tty).
pub fn log_path(inst: &Instance, id: &str) -> PathBuf {
    inst.container_dir(id).join("container.log")
}

/// The container's stderr, kept apart so `logs` can give it back on stderr.
pub fn stderr_log_path(inst: &Instance, id: &str) -> PathBuf {
    inst.container_dir(id).join("container-stderr.log")
}

fn rootfs_path(inst: &Instance, id: &str) -> PathBuf {
    inst.container_run_dir(id).join("rootfs")
}

pub fn cgroup_of(inst: &Instance, id: &str) -> Cgroup {
    Cgroup::open(&inst.cgroup_parent(), id)
}

/// Undo actions registered as the start path creates things; run in reverse
/// on failure, dropped on success.
type UndoStep = (&'static str, Box<dyn FnOnce()>);
struct Undo(Vec<UndoStep>);

impl Undo {
    fn push(&mut self, what: &'static str, f: impl FnOnce() + 'static) {
        self.0.push((what, Box::new(f)));
    }
    fn run(mut self) {
        while let Some((what, f)) = self.0.pop() {
            debug!("undo: {what}");
            f();
        }
    }
    fn forget(mut self) {
        self.0.clear();
    }
}

/// Starts container `id` (its row exists and its endpoints are allocated).
/// On error, everything this call created is removed again.
pub fn start(inst: &Instance, id: &str, stdio: Stdio) -> Result<Started> {
    let mut undo = Undo(vec![]);
    match start_inner(inst, id, stdio, &mut undo) {
        Ok(s) => {
            undo.forget();
            Ok(s)
        }
        Err(e) => {
            undo.run();
            Err(e)
        }
    }
}

fn start_inner(inst: &Instance, id: &str, stdio: Stdio, undo: &mut Undo) -> Result<Started> {
    let span = info_span!("start-tx").entered();
    let mut store = Store::open(&inst.db_path())?;
    let row = containers::get(store.conn(), id)?
        .ok_or_else(|| ContainerError::NotFound(id.to_string()))?;
    let cfg: ContainerConfig =
        serde_json::from_str(&row.config).map_err(crate::store::StoreError::from)?;
    let me = std::process::id() as i32;
    let me_start = util::process_start_time(me).unwrap_or(0);
    containers::set_created(store.conn(), id, me, me_start)?;
    drop(span);

    // 1. Root filesystem: overlay of the image layers plus our upper dir. The
    // directories are made here; the child mounts it in its own namespace.
    let span = info_span!("rootfs").entered();
    let img = image::resolve(inst, &mut store, &row.image_id)?;
    let cdir = inst.container_dir(id);
    let rundir = inst.container_run_dir(id);
    let rootfs = rootfs_path(inst, id);
    let base = inst.root.join("base-layer");
    mount::ensure_base_layer(&base)?;
    let overlay = mount::Overlay {
        lowers: std::iter::once(base)
            .chain(img.layers.iter().map(|d| image::layer_dir(inst, d)))
            .collect(),
        upper: cdir.join("upper"),
        work: cdir.join("work"),
        target: rootfs.clone(),
        volatile: cfg.auto_remove,
    };
    std::fs::create_dir_all(&rundir)?;
    {
        let rundir = rundir.clone();
        undo.push("rootfs", move || {
            let _ = std::fs::remove_dir_all(&rundir);
        });
    }
    overlay.make_dirs()?;
    util::fault_point("after-rootfs");
    drop(span);

    // 2. /etc files and the OCI spec (stored as config.json).
    let span = info_span!("spec").entered();
    let etc = if cfg.network.network_mode() == network::NetworkMode::Host {
        None
    } else {
        Some(write_etc_files(inst, &mut store, id, &cfg)?)
    };
    let cgroups_path = format!("/{}/{}", inst.cgroup_parent(), id);
    let spec = spec::build(&cfg, &rootfs, etc.as_ref(), &cgroups_path)
        .map_err(|e| ContainerError::Runtime(e.to_string()))?;
    let spec_json = serde_json::to_vec_pretty(&spec).map_err(crate::store::StoreError::from)?;
    // With the run state (a tmpfs on a standard host): it describes this
    // start, and is written again at the next.
    std::fs::write(rundir.join("config.json"), spec_json)?;
    drop(span);

    // 3. Cgroup.
    let span = info_span!("cgroup").entered();
    let cgroup = Cgroup::create(&inst.cgroup_parent(), id, &cfg.resources)?;
    util::fault_point("after-cgroup");
    {
        let cg = cgroup_of(inst, id);
        undo.push("cgroup", move || {
            let _ = cg.kill_all(nix::sys::signal::Signal::SIGKILL);
            let _ = cg.remove();
        });
    }
    drop(span);

    // 4. Stdio.
    let devnull = std::fs::File::open("/dev/null")?;
    let open_log = |path: PathBuf| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    };
    let log = match stdio {
        Stdio::Log => Some((
            open_log(log_path(inst, id))?,
            open_log(stderr_log_path(inst, id))?,
        )),
        _ => None,
    };

    // 5. Clone the child; it joins its cgroup and sets up its rootfs while
    // we wire the rest. Born inside the cgroup2 directory where there is
    // one; the v1 hierarchies it joins itself (see cgroups::join_self: no
    // global lock, no RCU wait, unlike a move by the parent).
    let span = info_span!("clone").entered();
    let stdin_inherit = matches!(stdio, Stdio::Inherit { stdin: true });
    let tty = matches!(stdio, Stdio::Tty);
    let opts = crate::runtime::SpawnOptions {
        overlay: Some(overlay),
        console: if tty { Console::Relay } else { Console::None },
        gate: Gate::Parent,
        cgroup,
        preserve_fds: 0,
    };
    // Point stdio where it belongs before anything else.
    let child_stdio = || {
        // SAFETY: dup2 on fds valid in this (copied) process.
        unsafe {
            if !stdin_inherit && !tty {
                libc::dup2(devnull.as_raw_fd(), 0);
            }
            if let Some((out, err)) = &log {
                libc::dup2(out.as_raw_fd(), 1);
                libc::dup2(err.as_raw_fd(), 2);
            }
        }
    };
    // SAFETY: no other thread of ours runs yet (the ones below start after),
    // and the child never returns into this frame: it ends in `_exit`.
    let spawned = unsafe { crate::runtime::spawn(spec, opts, child_stdio) }
        .map_err(ContainerError::Runtime)?;
    let (pid, parent_sock) = (spawned.pid, spawned.sync);
    drop(log);
    util::fault_point("after-clone");
    undo.push("child", move || {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(pid, None);
    });
    drop(span);

    // 6. Network, then release the child. The DNS responder learns about
    // the container (and starts if it is the first) in parallel: its records
    // come from the store rows written at create time, and it must be ready
    // before the child runs.
    let raw_pid = pid.as_raw();
    let dns = uses_network(&cfg).then(|| {
        let inst2 = inst.clone();
        let id2 = id.to_string();
        std::thread::spawn(move || sync_dns(&inst2, &id2))
    });
    let net_span = info_span!("network").entered();
    let wired = if uses_network(&cfg) {
        let res = network::attach(inst, &mut store, id, raw_pid);
        if res.is_ok() {
            let inst2 = inst.clone();
            let id2 = id.to_string();
            undo.push("network", move || {
                if let Ok(mut s) = Store::open(&inst2.db_path()) {
                    let _ = network::detach(&inst2, &mut s, &id2);
                }
                sync_dns(&inst2, &id2);
            });
        }
        res
    } else {
        Ok(())
    };
    drop(net_span);
    if let Some(t) = dns {
        let _ = t.join();
    }
    wired?;
    util::fault_point("after-network");
    let release_span = info_span!("release").entered();
    let _ = send_msg(&parent_sock, &ToChild::Continue);
    let mut pty_master = None;
    loop {
        match recv_msg_fd::<ToParent>(&parent_sock) {
            Ok(None) => break, // CLOEXEC closed it: execve succeeded.
            Ok(Some((ToParent::Console, fd))) => {
                pty_master = fd.filter(|f| super::pty::is_pty_master(f.as_fd()));
                if pty_master.is_none() {
                    let msg = "the container sent no usable terminal";
                    return Err(ContainerError::Runtime(msg.into()).into());
                }
            }
            Ok(Some((ToParent::Ready, _))) => {
                let msg = "the container's init used the OCI start gate";
                return Err(ContainerError::Runtime(msg.into()).into());
            }
            Ok(Some((ToParent::Failed(f), _))) => {
                return Err(match f {
                    ChildFailure::NotFound(m) => ContainerError::CommandNotFound(m),
                    ChildFailure::CannotExecute(m) => ContainerError::CannotExecute(m),
                    ChildFailure::Other(m) => ContainerError::Runtime(m),
                }
                .into())
            }
            Err(e) => {
                let msg = format!("waiting for the container: {e}");
                return Err(ContainerError::Runtime(msg).into());
            }
        }
    }

    drop(release_span);

    // 7. Record it as running.
    let _span = info_span!("running-tx").entered();
    containers::set_running(
        store.conn(),
        id,
        pid.as_raw(),
        util::process_start_time(pid.as_raw()).unwrap_or(0),
        me,
        me_start,
        util::now_nanos(),
    )?;
    Ok(Started {
        pid: pid.as_raw(),
        pty: pty_master,
    })
}

/// Container names follow the endpoints (this container's changed); a
/// responder problem is a warning.
fn sync_dns(inst: &Instance, id: &str) {
    let _span = info_span!("dns-sync").entered();
    if let Err(e) = network::dns::sync_container(inst, id) {
        warn!("{e}");
    }
}

pub fn uses_network(cfg: &ContainerConfig) -> bool {
    cfg.network.network_mode().has_endpoints()
}

fn write_etc_files(
    inst: &Instance,
    store: &mut Store,
    id: &str,
    cfg: &ContainerConfig,
) -> Result<EtcFiles> {
    let dir = inst.container_run_dir(id);
    let name = containers::get(store.conn(), id)?
        .map(|r| r.name)
        .unwrap_or_default();
    let (hosts, resolv) = network::etc_files(store, id, &cfg.hostname, &name, &cfg.network)?;
    let files = EtcFiles {
        hosts: dir.join("hosts"),
        resolv_conf: dir.join("resolv.conf"),
        hostname: dir.join("hostname"),
    };
    std::fs::write(&files.hosts, hosts)?;
    std::fs::write(&files.resolv_conf, resolv)?;
    std::fs::write(&files.hostname, format!("{}\n", cfg.hostname))?;
    Ok(files)
}

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
/// Idempotent, keeps going past errors (logged), usable by reconciliation.
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
    let _ = cg.kill_all(nix::sys::signal::Signal::SIGKILL);
    if let Err(e) = cg.remove() {
        warn!("removing cgroup of {id}: {e}");
    }
    let _ = crate::cgroups::remove_parent_if_empty(&inst.cgroup_parent());
    drop(span);
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
        if let Err(e) = res {
            warn!("network teardown of {id}: {e}");
        }
        sync_dns(inst, id);
    }
    let span = info_span!("unmount").entered();
    if let Err(e) = mount::unmount(&rootfs_path(inst, id)) {
        warn!("{e}");
    }
    let _ = std::fs::remove_dir_all(inst.container_run_dir(id));
    drop(span);
    let _span = info_span!("store-update").entered();
    containers::set_exited(store.conn(), id, exit_code, oom, util::now_nanos())?;
    if cfg.auto_remove {
        remove_files(inst, id);
        containers::delete(store.conn(), id)?;
    }
    drop(_span);
    Ok(())
}

/// Deletes the container's persistent dir (upper layer, logs).
pub fn remove_files(inst: &Instance, id: &str) {
    let _ = std::fs::remove_dir_all(inst.container_dir(id));
}

impl From<Error> for ContainerError {
    fn from(e: Error) -> ContainerError {
        match e {
            Error::Container(c) => c,
            other => ContainerError::Runtime(other.to_string()),
        }
    }
}
