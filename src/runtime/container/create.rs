//! `create`: the state dir, the spec copy, `exec.fifo`, the cgroup and the
//! init (blocked on the FIFO, the createRuntime/prestart hooks run between
//! its mounts and its root switch); every step registers its undo.

use super::{bundle::load_bundle, err, write_atomic, Result, Runtime, SPEC_COPY};
use crate::cgroups::Cgroup;
use crate::rootfs::mount::RootSwitch;
use crate::runtime::executor::{spawn, SpawnOptions};
use crate::runtime::init::{Console, Gate, InitHooks};
use crate::runtime::protocol::{self, recv_msg_fd, ToParent};
use crate::runtime::state::{self, OciState, Record, Status, EXEC_FIFO};
use crate::runtime::{hooks, resources, spec as rspec};
use crate::undo::Undo;
use crate::util;
use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    /// `--no-pivot`: move the root over / and chroot instead of pivot_root.
    pub no_pivot: bool,
}

fn kill_and_reap(pid: Pid) {
    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}

impl Runtime {
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<()> {
        state::check_id(id).map_err(err)?;
        let spec = load_bundle(&opts.bundle)?;
        let bundle = std::fs::canonicalize(&opts.bundle).unwrap_or(opts.bundle.clone());
        std::fs::create_dir_all(&self.root)
            .map_err(|e| err(format!("state root {}: {e}", self.root.display())))?;
        let dir = self.dir(id);
        // create_dir is the lock: of two creates of one id, one fails here.
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(err(format!("container with id {id} already exists")))
            }
            Err(e) => return Err(err(format!("{}: {e}", dir.display()))),
        }
        // Undo steps of `create`, run newest first unless it succeeds.
        let mut undo = Undo::new();
        {
            let dir = dir.clone();
            undo.push("state dir", move || {
                let _ = std::fs::remove_dir_all(&dir);
                Ok(())
            });
        }
        self.create_in(id, &dir, &bundle, spec, opts, &mut undo)?;
        undo.commit();
        Ok(())
    }

    fn create_in(
        &self,
        id: &str,
        dir: &Path,
        bundle: &Path,
        spec: Spec,
        opts: &CreateOptions,
        undo: &mut Undo,
    ) -> Result<()> {
        let io = |what: &str, e: &dyn std::fmt::Display| err(format!("{what}: {e}"));
        let spec_json = serde_json::to_vec(&spec).map_err(|e| io("spec", &e))?;
        let new_userns = rspec::ns_plan(&spec)
            .map(|p| p.clone.contains(nix::sched::CloneFlags::CLONE_NEWUSER))
            .map_err(err)?;
        let id_maps = crate::runtime::userns::plan(&spec, new_userns).map_err(err)?;
        let rlimits = rspec::process_spec(&spec).map_err(err)?.rlimits;
        std::fs::write(dir.join(SPEC_COPY), &spec_json).map_err(|e| io("saving the spec", &e))?;
        let fifo = dir.join(EXEC_FIFO);
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o622))
            .map_err(|e| io("making exec.fifo", &e))?;
        if let Some(maps) = &id_maps {
            // The init opens it for writing as the container's root.
            nix::unistd::chown(
                &fifo,
                maps.root.0.map(nix::unistd::Uid::from_raw),
                maps.root.1.map(nix::unistd::Gid::from_raw),
            )
            .map_err(|e| io("exec.fifo", &e))?;
        }
        let fifo_fd: OwnedFd =
            nix::fcntl::open(&fifo, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| io("opening exec.fifo", &e))?;

        let linux = spec.linux().clone().unwrap_or_default();
        let (parent, name) = state::cgroup_names(linux.cgroups_path().as_deref(), id);
        let res = linux.resources().clone();
        let cgroup = Cgroup::create(&parent, &name, &resources::base(res.as_ref()))
            .map_err(|e| err(e.to_string()))?;
        {
            let cg = cgroup.clone();
            undo.push("cgroup", move || {
                let _ = cg.kill_all(Signal::SIGKILL);
                let _ = cg.remove();
                Ok(())
            });
        }
        if let Some(r) = &res {
            resources::apply(&cgroup, r, false).map_err(err)?;
        }

        let terminal = spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        let console = match (&opts.console_socket, terminal) {
            (Some(path), true) => {
                let s = UnixStream::connect(path)
                    .map_err(|e| err(format!("console socket {}: {e}", path.display())))?;
                Console::Socket(OwnedFd::from(s))
            }
            (None, true) => {
                return Err(err(
                    "process.terminal is true: --console-socket is required",
                ))
            }
            (Some(_), false) => {
                return Err(err("--console-socket given but process.terminal is false"))
            }
            (None, false) => Console::None,
        };
        let own_pid_ns = rspec::ns_plan(&spec)
            .map(|p| p.clone.contains(nix::sched::CloneFlags::CLONE_NEWPID))
            .unwrap_or(false);
        let hooks_spec = spec.hooks().clone();
        let annotations = spec.annotations().clone().unwrap_or_default();
        let created = util::rfc3339(util::now_nanos());
        let hook_state = |pid: Option<i32>| OciState {
            oci_version: state::OCI_VERSION.to_string(),
            id: id.to_string(),
            status: Status::Creating,
            pid,
            bundle: bundle.to_path_buf(),
            annotations: annotations.clone(),
            created: created.clone(),
        };
        let list = |v: &Option<Vec<oci_spec::runtime::Hook>>| v.clone().unwrap_or_default();
        let (runtime_hooks, prestart) = match &hooks_spec {
            Some(h) => (list(h.create_runtime()), list(h.prestart())),
            None => (Vec::new(), Vec::new()),
        };
        let init_hooks = hooks_spec.as_ref().map(|h| {
            Box::new(InitHooks {
                state: hook_state(None),
                parent_hooks: !runtime_hooks.is_empty() || !prestart.is_empty(),
                create_container: list(h.create_container()),
                start_container: list(h.start_container()),
            })
        });
        let sopts = SpawnOptions {
            overlay: None,
            console,
            gate: Gate::Fifo {
                fifo: fifo_fd,
                hooks: init_hooks,
            },
            cgroup,
            preserve_fds: opts.preserve_fds,
            root_switch: if opts.no_pivot {
                RootSwitch::Move
            } else {
                RootSwitch::Pivot
            },
        };
        // SAFETY: the OCI CLI is single-threaded here; the child ends in _exit.
        let spawned = unsafe { spawn(spec, sopts, || {}) }.map_err(err)?;
        let pid = spawned.pid;
        undo.push("init", move || {
            kill_and_reap(pid);
            Ok(())
        });
        if let Some(maps) = &id_maps {
            crate::runtime::userns::write_maps(pid.as_raw(), maps)
                .map_err(|e| err(format!("user namespace: {e}")))?;
            crate::runtime::userns::set_rlimits(pid.as_raw(), &rlimits).map_err(err)?;
            protocol::send_msg(&spawned.sync, &protocol::ToChild::Mapped)
                .map_err(|e| io("releasing the init", &e))?;
        }
        loop {
            match recv_msg_fd::<ToParent>(&spawned.sync) {
                Ok(Some((ToParent::Created, _))) => break,
                Ok(Some((ToParent::Mounted, _))) => {
                    // In the runtime's namespaces, before the root switch.
                    let st = serde_json::to_vec(&hook_state(Some(pid.as_raw())))
                        .map_err(|e| io("state", &e))?;
                    hooks::run_all("createRuntime", &runtime_hooks, &st).map_err(err)?;
                    hooks::run_all("prestart", &prestart, &st).map_err(err)?;
                    protocol::send_msg(&spawned.sync, &protocol::ToChild::Continue)
                        .map_err(|e| io("releasing the init", &e))?;
                }
                Ok(Some((ToParent::Failed(f), _))) => return Err(err(f.to_string())),
                Ok(Some((ToParent::Console | ToParent::Ready, _))) => {
                    return Err(err("the container's init skipped its start gate"))
                }
                Ok(None) => return Err(err("the container's init exited during create")),
                Err(e) => return Err(io("waiting for the container's init", &e)),
            }
        }
        let rec = Record {
            id: id.to_string(),
            pid: pid.as_raw(),
            pid_start: util::process_start_time(pid.as_raw()).unwrap_or(0),
            bundle: bundle.to_path_buf(),
            created,
            annotations,
            cgroup_parent: parent,
            cgroup_name: name,
            own_pid_ns,
            hooks: hooks_spec.clone(),
        };
        state::save(dir, &rec).map_err(|e| io("saving the state", &e))?;
        if let Some(p) = &opts.pid_file {
            write_atomic(p, pid.as_raw().to_string().as_bytes())
                .map_err(|e| err(format!("pid file {}: {e}", p.display())))?;
        }
        Ok(())
    }
}
