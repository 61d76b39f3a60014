//! The parent's side of a start, in the process that becomes the
//! container's monitor: claim the row, rootfs, spec, cgroup, clone, network,
//! release the child, record it running; each step a `tracing` span and a
//! function of its own, each registering the undo of what it made. The
//! teardown after the exit is `finish` (re-exported here, so callers say
//! `runtime::start` and `runtime::finish`).

use super::config::ContainerConfig;
use super::spec::{self, EtcFiles};
use super::ContainerError;
use crate::cgroups::Cgroup;
use crate::rootfs::{image, mount};
use crate::runtime::init::{Console, Gate};
use crate::runtime::protocol::{await_exec, send_msg, Outcome, ToChild};
use crate::store::{containers, Store};
use crate::undo::Undo;
use crate::{network, util, Error, Instance, Result};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use tracing::{info_span, warn};

pub use super::finish::{finish, remove_files, wait_exit};

/// Where the container's stdio goes.
pub enum Stdio {
    /// stdout/stderr into pipes the caller copies to its own stdout/stderr
    /// and into the log (`Started::output`); stdin inherited when `stdin`
    /// is set, else /dev/null.
    Inherit { stdin: bool },
    /// A new pty; the caller relays the master.
    Tty,
    /// stdout/stderr into pipes whose read ends the monitor keeps
    /// (`Started::output`) and writes into the log; stdin /dev/null.
    Log,
}

pub struct Started {
    pub pid: i32,
    /// The pty master when `Stdio::Tty` was asked for.
    pub pty: Option<OwnedFd>,
    /// The read ends of the container's stdout and stderr pipes (not with a tty).
    pub output: Option<(OwnedFd, OwnedFd)>,
}

/// The container's stdout as raw bytes, before log records (see logs.rs):
/// still read for containers started by an older minirt.
pub fn log_path(inst: &Instance, id: &str) -> PathBuf {
    inst.container_dir(id).join("container.log")
}

/// The container's stderr as raw bytes, before log records.
pub fn stderr_log_path(inst: &Instance, id: &str) -> PathBuf {
    inst.container_dir(id).join("container-stderr.log")
}

pub(super) fn rootfs_path(inst: &Instance, id: &str) -> PathBuf {
    inst.container_run_dir(id).join("rootfs")
}

pub fn cgroup_of(inst: &Instance, id: &str) -> Cgroup {
    Cgroup::open(&inst.cgroup_parent(), id)
}

/// Starts container `id` (its row exists and its endpoints are allocated).
/// On error, everything this call created is removed again (each step
/// registers its undo; the undo steps ignore their own errors, as the start's
/// failure is the one reported).
pub fn start(inst: &Instance, id: &str, stdio: Stdio) -> Result<Started> {
    let mut undo = Undo::new();
    match start_inner(inst, id, stdio, &mut undo) {
        Ok(s) => {
            undo.commit();
            Ok(s)
        }
        Err(e) => {
            // Best effort, as the failure itself is what the caller reports.
            let _ = undo.rollback();
            Err(e)
        }
    }
}

fn start_inner(inst: &Instance, id: &str, stdio: Stdio, undo: &mut Undo) -> Result<Started> {
    let mut store = Store::open(&inst.db_path())?;
    let claim = claim(&mut store, id)?;
    let overlay = prepare_rootfs(inst, &mut store, id, &claim, undo)?;
    let spec = write_spec(inst, &mut store, id, &claim.cfg)?;
    let cgroup = create_cgroup(inst, id, &claim.cfg, undo)?;
    let (child_stdio, output) = open_stdio(inst, id, &stdio, claim.cfg.interactive)?;
    let (pid, sock) = clone_child(spec, overlay, cgroup, &stdio, child_stdio, undo)?;
    wire_network(inst, &mut store, id, &claim.cfg, pid, undo)?;
    util::fault_point("after-network");
    let pty = release_child(&sock)?;
    record_running(&store, id, pid, &claim)?;
    Ok(Started {
        pid: pid.as_raw(),
        pty,
        output,
    })
}

/// The container's row as this start found it, and this process as its monitor.
struct Claim {
    cfg: ContainerConfig,
    image_id: String,
    me: i32,
    me_start: u64,
}

/// Reads the row and names this process as its monitor (span `start-tx`).
fn claim(store: &mut Store, id: &str) -> Result<Claim> {
    let _span = info_span!("start-tx").entered();
    let row = containers::get(store.conn(), id)?
        .ok_or_else(|| ContainerError::NotFound(id.to_string()))?;
    let cfg: ContainerConfig =
        serde_json::from_str(&row.config).map_err(crate::store::StoreError::from)?;
    let me = std::process::id() as i32;
    let me_start = util::process_start_time(me).unwrap_or(0);
    // `run` creates the row already naming this process, created and
    // without a pid: then there is nothing to write (one commit less).
    let owned = row.status == containers::Status::Created
        && row.pid == 0
        && row.pid_start == 0
        && row.monitor_pid == me
        && row.monitor_start == me_start;
    if !owned {
        containers::set_created(store.conn(), id, me, me_start)?;
    }
    Ok(Claim {
        cfg,
        image_id: row.image_id,
        me,
        me_start,
    })
}

/// The overlay of container `id` (the base layer under the image's layers,
/// its upper and work dirs) mounted at `target`; the base layer is made
/// if missing. A start and `cp` into a stopped container both use it.
pub(crate) fn container_overlay(
    inst: &Instance,
    img: &image::Image,
    id: &str,
    target: PathBuf,
    volatile: bool,
) -> Result<mount::Overlay> {
    let base = inst.root.join("base-layer");
    mount::ensure_base_layer(&base)?;
    let cdir = inst.container_dir(id);
    Ok(mount::Overlay {
        lowers: std::iter::once(base)
            .chain(img.layers.iter().map(|d| image::layer_dir(inst, d)))
            .collect(),
        upper: cdir.join("upper"),
        work: cdir.join("work"),
        target,
        volatile,
    })
}

/// Root filesystem (span `rootfs`): an overlay of the image layers plus the
/// container's upper dir. The directories are made here; the child mounts it
/// in its own namespace.
fn prepare_rootfs(
    inst: &Instance,
    store: &mut Store,
    id: &str,
    claim: &Claim,
    undo: &mut Undo,
) -> Result<mount::Overlay> {
    let _span = info_span!("rootfs").entered();
    let img = image::resolve(inst, store, &claim.image_id)?;
    let rundir = inst.container_run_dir(id);
    let overlay = container_overlay(inst, &img, id, rootfs_path(inst, id), claim.cfg.auto_remove)?;
    std::fs::create_dir_all(&rundir)?;
    undo.push("rootfs", move || {
        let _ = std::fs::remove_dir_all(&rundir);
        Ok(())
    });
    overlay.make_dirs()?;
    util::fault_point("after-rootfs");
    Ok(overlay)
}

/// The /etc files and the OCI spec, stored as config.json (span `spec`).
fn write_spec(
    inst: &Instance,
    store: &mut Store,
    id: &str,
    cfg: &ContainerConfig,
) -> Result<oci_spec::runtime::Spec> {
    let _span = info_span!("spec").entered();
    let etc = if cfg.network.network_mode() == network::NetworkMode::Host {
        None
    } else {
        Some(write_etc_files(inst, store, id, cfg)?)
    };
    let cgroups_path = format!("/{}/{}", inst.cgroup_parent(), id);
    let spec = spec::build(cfg, &rootfs_path(inst, id), etc.as_ref(), &cgroups_path)
        .map_err(|e| ContainerError::Runtime(e.to_string()))?;
    let spec_json = serde_json::to_vec(&spec).map_err(crate::store::StoreError::from)?;
    // With the run state (a tmpfs on a standard host): it describes this
    // start, and is written again at the next.
    std::fs::write(inst.container_run_dir(id).join("config.json"), spec_json)?;
    Ok(spec)
}

/// The container's cgroup with its limits (span `cgroup`).
fn create_cgroup(
    inst: &Instance,
    id: &str,
    cfg: &ContainerConfig,
    undo: &mut Undo,
) -> Result<Cgroup> {
    let _span = info_span!("cgroup").entered();
    let cgroup = Cgroup::create(&inst.cgroup_parent(), id, &cfg.resources)?;
    util::fault_point("after-cgroup");
    let cg = cgroup_of(inst, id);
    undo.push("cgroup", move || {
        let _ = cg.kill_all(nix::sys::signal::Signal::SIGKILL);
        let _ = cg.remove();
        Ok(())
    });
    Ok(cgroup)
}

/// What the child's stdio is pointed at before anything else.
struct ChildStdio {
    devnull: std::fs::File,
    /// The write ends of the stdout and stderr pipes (not with a tty).
    log: Option<(OwnedFd, OwnedFd)>,
    /// A detached `-i` container's stdin: the FIFO `attach` writes into.
    stdin: Option<std::fs::File>,
}

/// The FIFO a detached `-i` container reads as its stdin (see attach.rs).
pub fn stdin_fifo_path(inst: &Instance, id: &str) -> PathBuf {
    inst.container_run_dir(id).join("stdin")
}

/// Makes (if needed) and opens a stdin FIFO read-write: its holder never
/// sees end of file when an attached client leaves, as with Docker's `-i`.
pub fn open_stdin_fifo(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
}

/// The child's stdio, and the read ends of its output pipes for the caller
/// (all close-on-exec: the child's dup2 makes its own copies).
fn open_stdio(
    inst: &Instance,
    id: &str,
    stdio: &Stdio,
    interactive: bool,
) -> Result<(ChildStdio, Option<(OwnedFd, OwnedFd)>)> {
    let devnull = std::fs::File::open("/dev/null")?;
    if matches!(stdio, Stdio::Tty) {
        let child = ChildStdio {
            devnull,
            log: None,
            stdin: None,
        };
        return Ok((child, None));
    }
    let stdin = match stdio {
        Stdio::Log if interactive => Some(open_stdin_fifo(&stdin_fifo_path(inst, id))?),
        _ => None,
    };
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from);
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let child = ChildStdio {
        devnull,
        log: Some((out_w, err_w)),
        stdin,
    };
    Ok((child, Some((out_r, err_r))))
}

/// Clones the child (span `clone`); it joins its cgroup and sets up its
/// rootfs while we wire the rest. Born inside the cgroup2 directory where
/// there is one; the v1 hierarchies it joins itself (see cgroups::join_self:
/// no global lock, no RCU wait, unlike a move by the parent). Returns its pid
/// and the parent's end of the sync socket.
fn clone_child(
    spec: oci_spec::runtime::Spec,
    overlay: mount::Overlay,
    cgroup: Cgroup,
    stdio: &Stdio,
    child_stdio: ChildStdio,
    undo: &mut Undo,
) -> Result<(Pid, OwnedFd)> {
    let _span = info_span!("clone").entered();
    let stdin_inherit = matches!(stdio, Stdio::Inherit { stdin: true });
    let tty = matches!(stdio, Stdio::Tty);
    let opts = crate::runtime::SpawnOptions {
        overlay: Some(overlay),
        console: if tty { Console::Relay } else { Console::None },
        gate: Gate::Parent,
        cgroup,
        preserve_fds: 0,
        root_switch: crate::rootfs::mount::RootSwitch::Pivot,
    };
    let ChildStdio {
        devnull,
        log,
        stdin,
    } = child_stdio;
    // Point stdio where it belongs before anything else.
    let point_stdio = || {
        // SAFETY: dup2 on fds valid in this (copied) process.
        unsafe {
            if let Some(f) = &stdin {
                libc::dup2(f.as_raw_fd(), 0);
            } else if !stdin_inherit && !tty {
                libc::dup2(devnull.as_raw_fd(), 0);
            }
            if let Some((out, err)) = &log {
                libc::dup2(out.as_raw_fd(), 1);
                libc::dup2(err.as_raw_fd(), 2);
            }
        }
    };
    // SAFETY: no other thread of ours runs yet (the DNS one starts in
    // `wire_network`, after), and the child never returns into this frame: it
    // ends in `_exit`.
    let spawned = unsafe { crate::runtime::spawn(spec, opts, point_stdio) }
        .map_err(ContainerError::Runtime)?;
    let (pid, parent_sock) = (spawned.pid, spawned.sync);
    drop((log, stdin));
    util::fault_point("after-clone");
    undo.push("child", move || {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(pid, None);
        Ok(())
    });
    Ok((pid, parent_sock))
}

/// The container's networks (span `network`). The DNS responder learns about
/// the container (and starts if it is the first) in parallel: its records
/// come from the store rows written at create time, and it must be ready
/// before the child runs.
fn wire_network(
    inst: &Instance,
    store: &mut Store,
    id: &str,
    cfg: &ContainerConfig,
    pid: Pid,
    undo: &mut Undo,
) -> Result<()> {
    let dns = uses_network(cfg).then(|| {
        let inst2 = inst.clone();
        let id2 = id.to_string();
        std::thread::spawn(move || sync_dns(&inst2, &id2))
    });
    let net_span = info_span!("network").entered();
    let wired = if uses_network(cfg) {
        let res = network::attach(inst, store, id, pid.as_raw());
        if res.is_ok() {
            let inst2 = inst.clone();
            let id2 = id.to_string();
            undo.push("network", move || {
                if let Ok(mut s) = Store::open(&inst2.db_path()) {
                    let _ = network::detach(&inst2, &mut s, &id2);
                }
                sync_dns(&inst2, &id2);
                Ok(())
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
    Ok(wired?)
}

/// Tells the child to go on and waits for its execve (span `release`):
/// `Ready` then end-of-file on the CLOEXEC socket is success; a typed
/// failure becomes Docker's exit code. Returns the pty master when the
/// child sent one.
fn release_child(parent_sock: &OwnedFd) -> Result<Option<OwnedFd>> {
    let _span = info_span!("release").entered();
    let _ = send_msg(parent_sock, &ToChild::Continue);
    match await_exec(parent_sock) {
        Ok(Outcome::Execed { console }) => match console {
            None => Ok(None),
            Some(fd) if crate::runtime::pty::is_pty_master(fd.as_fd()) => Ok(Some(fd)),
            Some(_) => {
                let msg = "the container sent no usable terminal";
                Err(ContainerError::Runtime(msg.into()).into())
            }
        },
        Ok(Outcome::Failed(f)) => Err(ContainerError::from(f).into()),
        Err(e) => {
            let msg = format!("waiting for the container: {e}");
            Err(ContainerError::Runtime(msg).into())
        }
    }
}

/// Records the container as running (span `running-tx`).
fn record_running(store: &Store, id: &str, pid: Pid, claim: &Claim) -> Result<()> {
    let _span = info_span!("running-tx").entered();
    // One transaction for the row and its `start` event (a single write
    // statement first, so the deferred BEGIN cannot deadlock).
    let tx = store
        .conn()
        .unchecked_transaction()
        .map_err(crate::store::StoreError::from)?;
    containers::set_running(
        &tx,
        id,
        pid.as_raw(),
        util::process_start_time(pid.as_raw()).unwrap_or(0),
        claim.me,
        claim.me_start,
        util::now_nanos(),
    )?;
    super::events::container(&tx, id, "start", &[]);
    tx.commit().map_err(crate::store::StoreError::from)?;
    Ok(())
}

/// Container names follow the endpoints (this container's changed); a
/// responder problem is a warning.
pub(super) fn sync_dns(inst: &Instance, id: &str) {
    let _span = info_span!("dns-sync").entered();
    if let Err(e) = network::dns::sync_container(inst, id) {
        warn!("{e}");
    }
}

pub(crate) fn uses_network(cfg: &ContainerConfig) -> bool {
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

impl From<Error> for ContainerError {
    fn from(e: Error) -> ContainerError {
        match e {
            Error::Container(c) => c,
            other => ContainerError::Runtime(other.to_string()),
        }
    }
}
