//! The OCI lifecycle over a state directory (`<root>/<id>/`): create (the
//! init blocked on `exec.fifo`, the `create` process gone), start, state,
//! kill, delete, exec, pause/resume, ps, list, update. Each operation is a
//! library call; `src/cli/oci.rs` only parses and prints.

use super::executor::{spawn, SpawnOptions};
use super::init::{Console, Gate, InitHooks};
use super::process::{finish_and_exec, ChildFailure, ProcessSpec};
use super::protocol::{self, recv_msg_fd, send_failure, Outcome, ToParent};
use super::pty;
use super::state::{self, OciState, Record, Status, EXEC_FIFO};
use super::{hooks, resources, spec as rspec};
use crate::cgroups::Cgroup;
use crate::rootfs::mount::RootSwitch;
use crate::util;
use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxResources, Process, Spec};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OciError(pub String);

type Result<T> = std::result::Result<T, OciError>;

fn err(msg: impl Into<String>) -> OciError {
    OciError(msg.into())
}

/// The resolved spec, kept beside the record: `exec` needs its seccomp
/// profile and namespaces after the bundle may have changed.
const SPEC_COPY: &str = "config.json";

#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    /// `--no-pivot`: move the root over / and chroot instead of pivot_root.
    pub no_pivot: bool,
}

#[derive(Debug, Default)]
pub struct ExecOptions {
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
}

/// A state root (runc's `--root`).
#[derive(Debug, Clone)]
pub struct Runtime {
    pub root: PathBuf,
}

/// Reads and checks a bundle: config.json of a supported version, a rootfs
/// that exists (made absolute), and nothing this runtime cannot honour.
pub fn load_bundle(bundle: &Path) -> Result<Spec> {
    let bundle = std::fs::canonicalize(bundle)
        .map_err(|e| err(format!("bundle {}: {e}", bundle.display())))?;
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let raw: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| err(format!("{} is not valid JSON: {e}", path.display())))?;
    let version = raw.get("ociVersion").and_then(|v| v.as_str()).unwrap_or("");
    rspec::check_version(version).map_err(err)?;
    let mut spec: Spec = serde_json::from_value(raw).map_err(|e| {
        err(format!(
            "{} is not a valid runtime spec: {e}",
            path.display()
        ))
    })?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| err("config.json has no root"))?
        .clone();
    let rootfs = bundle.join(root.path());
    if !rootfs.is_dir() {
        return Err(err(format!(
            "rootfs {} does not exist or is not a directory",
            rootfs.display()
        )));
    }
    let mut root = root;
    root.set_path(rootfs);
    spec.set_root(Some(root));
    rspec::check_unsupported(&spec).map_err(err)?;
    let plan = rspec::ns_plan(&spec).map_err(err)?;
    rspec::check_sysctls(&spec, &plan).map_err(err)?;
    rspec::check_hostname(&spec, &plan).map_err(err)?;
    let ps = rspec::process_spec(&spec).map_err(err)?;
    if ps.args.is_empty() {
        return Err(err("config.json: process.args must not be empty"));
    }
    if let Some(p) = &ps.seccomp {
        crate::runtime::seccomp::compile(p).map_err(|e| err(format!("seccomp: {e}")))?;
    }
    if let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().clone()) {
        resources::plan(&r, false).map_err(err)?;
    }
    rspec::with_default_devices(&mut spec).map_err(err)?;
    Ok(spec)
}

/// Undo steps of `create`, run in reverse unless it succeeds.
#[derive(Default)]
struct Undo(Vec<Box<dyn FnOnce()>>);

impl Undo {
    fn push(&mut self, f: impl FnOnce() + 'static) {
        self.0.push(Box::new(f));
    }
    fn run(mut self) {
        while let Some(f) = self.0.pop() {
            f();
        }
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, data)?;
    std::fs::rename(tmp, path)
}

fn kill_and_reap(pid: Pid) {
    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}

impl Runtime {
    pub fn new(root: &Path) -> Runtime {
        Runtime {
            root: root.to_path_buf(),
        }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub fn exists(&self, id: &str) -> bool {
        state::check_id(id).is_ok() && self.dir(id).join(state::STATE_FILE).exists()
    }

    fn record(&self, id: &str) -> Result<Record> {
        state::check_id(id).map_err(err)?;
        state::load(&self.dir(id)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => err(format!("container {id} does not exist")),
            _ => err(format!("reading the state of {id}: {e}")),
        })
    }

    fn cgroup(rec: &Record) -> Cgroup {
        Cgroup::open(&rec.cgroup_parent, &rec.cgroup_name)
    }

    fn status_of(&self, rec: &Record) -> Status {
        let alive = util::process_alive(rec.pid, rec.pid_start);
        let gate = self.dir(&rec.id).join(EXEC_FIFO).exists();
        state::status(alive, gate, alive && frozen(&Self::cgroup(rec)))
    }

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
        let mut undo = Undo::default();
        {
            let dir = dir.clone();
            undo.push(move || {
                let _ = std::fs::remove_dir_all(&dir);
            });
        }
        match self.create_in(id, &dir, &bundle, spec, opts, &mut undo) {
            Ok(()) => Ok(()),
            Err(e) => {
                undo.run();
                Err(e)
            }
        }
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
        let id_maps = super::userns::plan(&spec, new_userns).map_err(err)?;
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
            undo.push(move || {
                let _ = cg.kill_all(Signal::SIGKILL);
                let _ = cg.remove();
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
        undo.push(move || kill_and_reap(pid));
        if let Some(maps) = &id_maps {
            super::userns::write_maps(pid.as_raw(), maps)
                .map_err(|e| err(format!("user namespace: {e}")))?;
            super::userns::set_rlimits(pid.as_raw(), &rlimits).map_err(err)?;
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

    pub fn start(&self, id: &str) -> Result<()> {
        let rec = self.record(id)?;
        match self.status_of(&rec) {
            Status::Created => {}
            st => {
                return Err(err(format!(
                    "cannot start container {id}: it is {st}, not created"
                )))
            }
        }
        let fifo = self.dir(id).join(EXEC_FIFO);
        let f: OwnedFd = nix::fcntl::open(
            &fifo,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(format!("opening exec.fifo: {e}")))?;
        // The init opens the FIFO for writing once a reader exists, and
        // writes one byte; no byte while it is alive means it is slow, not
        // gone: keep waiting, but notice if it dies.
        let mut file = std::fs::File::from(f);
        let mut byte = [0u8; 1];
        loop {
            let mut pfd = [nix::poll::PollFd::new(
                file.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(100u16)) {
                Ok(n) if n > 0 => {
                    if let Ok(1) = file.read(&mut byte) {
                        break;
                    }
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(err(format!("waiting on exec.fifo: {e}"))),
            }
            if !util::process_alive(rec.pid, rec.pid_start) {
                return Err(err(format!("container {id}'s init exited before start")));
            }
        }
        let _ = std::fs::remove_file(&fifo);
        if let Some(h) = rec.hooks.as_ref().and_then(|h| h.poststart().clone()) {
            let st =
                serde_json::to_vec(&state::oci_state(&rec, Status::Running)).unwrap_or_default();
            // The spec: a failed poststart hook is a warning, the container runs on.
            if let Err(e) = hooks::run_all("poststart", &h, &st) {
                tracing::warn!("{e}");
            }
        }
        Ok(())
    }

    pub fn state(&self, id: &str) -> Result<OciState> {
        let rec = self.record(id)?;
        Ok(state::oci_state(&rec, self.status_of(&rec)))
    }

    pub fn list(&self) -> Result<Vec<OciState>> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return Ok(out);
        };
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if let Ok(rec) = state::load(&e.path()) {
                if rec.id == id {
                    out.push(state::oci_state(&rec, self.status_of(&rec)));
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    pub fn kill(&self, id: &str, sig: Signal, all: bool) -> Result<()> {
        let rec = self.record(id)?;
        if self.status_of(&rec) == Status::Stopped {
            return Err(err(format!("container {id} is not running")));
        }
        if all {
            let cg = Self::cgroup(&rec);
            for pid in cg.procs() {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
            }
            return Ok(());
        }
        nix::sys::signal::kill(Pid::from_raw(rec.pid), sig)
            .map_err(|e| err(format!("sending {sig} to {id}: {e}")))
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let rec = self.record(id)?;
        let st = self.status_of(&rec);
        if st != Status::Stopped && !force {
            return Err(err(format!(
                "cannot delete container {id} that is {st}: stop it first or use --force"
            )));
        }
        let cg = Self::cgroup(&rec);
        if st != Status::Stopped {
            let _ = cg.kill_all(Signal::SIGKILL);
            let _ = nix::sys::signal::kill(Pid::from_raw(rec.pid), Signal::SIGKILL);
            // Not our child: it is gone once it is a zombie for its reaper.
            let deadline = Instant::now() + Duration::from_secs(10);
            while util::process_alive(rec.pid, rec.pid_start) {
                if Instant::now() > deadline {
                    return Err(err(format!("container {id}'s init does not die")));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        if !rec.own_pid_ns {
            let _ = cg.kill_all(Signal::SIGKILL);
        }
        cg.remove().map_err(|e| err(e.to_string()))?;
        let _ = crate::cgroups::remove_parent_if_empty(&rec.cgroup_parent);
        if let Some(h) = rec.hooks.as_ref().and_then(|h| h.poststop().clone()) {
            let st =
                serde_json::to_vec(&state::oci_state(&rec, Status::Stopped)).unwrap_or_default();
            if let Err(e) = hooks::run_all("poststop", &h, &st) {
                tracing::warn!("{e}");
            }
        }
        std::fs::remove_dir_all(self.dir(id))
            .map_err(|e| err(format!("removing the state of {id}: {e}")))
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        self.freeze(id, true)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        self.freeze(id, false)
    }

    fn freeze(&self, id: &str, on: bool) -> Result<()> {
        let rec = self.record(id)?;
        let st = self.status_of(&rec);
        let ok = if on {
            st == Status::Running
        } else {
            st == Status::Paused
        };
        if !ok {
            return Err(err(format!("container {id} is {st}")));
        }
        let cg = Self::cgroup(&rec);
        let file = freezer_file(&cg).ok_or_else(|| err("this host has no freezer cgroup"))?;
        let want = if on { "FROZEN" } else { "THAWED" };
        std::fs::write(&file, want).map_err(|e| err(format!("{}: {e}", file.display())))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = std::fs::read_to_string(&file).unwrap_or_default();
            if now.trim() == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(err(format!("container {id} did not become {want}")));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn ps(&self, id: &str) -> Result<Vec<i32>> {
        let rec = self.record(id)?;
        let mut p = Self::cgroup(&rec).procs();
        p.sort();
        Ok(p)
    }

    pub fn update(&self, id: &str, res: &LinuxResources) -> Result<()> {
        let rec = self.record(id)?;
        if self.status_of(&rec) == Status::Stopped {
            return Err(err(format!("container {id} is not running")));
        }
        resources::apply(&Self::cgroup(&rec), res, true).map_err(err)
    }

    /// Runs one more process in the container; its exit code (0 at once
    /// with `detach`, the process then belongs to our reaper, e.g. conmon).
    pub fn exec(&self, id: &str, opts: ExecOptions) -> Result<i32> {
        let rec = self.record(id)?;
        match self.status_of(&rec) {
            Status::Running | Status::Created => {}
            st => return Err(err(format!("cannot exec in container {id}: it is {st}"))),
        }
        let saved: Spec = std::fs::read(self.dir(id).join(SPEC_COPY))
            .ok()
            .and_then(|t| serde_json::from_slice(&t).ok())
            .ok_or_else(|| err(format!("the saved spec of {id} is unreadable")))?;
        let mut spec = saved.clone();
        spec.set_process(Some(opts.process.clone()));
        let mut ps: ProcessSpec = rspec::process_spec(&spec).map_err(err)?;
        if ps.args.is_empty() {
            return Err(err("exec needs a command (args or --process)"));
        }
        ps.preserve_fds = opts.preserve_fds;
        let terminal = opts.process.terminal().unwrap_or(false);
        let console = match (&opts.console_socket, terminal) {
            (Some(p), true) => {
                Some(OwnedFd::from(UnixStream::connect(p).map_err(|e| {
                    err(format!("console socket {}: {e}", p.display()))
                })?))
            }
            (None, true) => return Err(err("--tty needs --console-socket")),
            (_, false) => None,
        };
        let namespaces = open_namespaces_of(rec.pid)?;
        let procs = Self::cgroup(&rec).procs_files();
        let (err_r, err_w) = protocol::channel().map_err(|e| err(format!("socketpair: {e}")))?;
        let (pid_r, pid_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| err(format!("pipe: {e}")))?;
        // SAFETY: single-threaded CLI; the helper only makes syscalls and
        // ends in _exit.
        let helper = match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                drop(err_r);
                drop(pid_r);
                exec_helper(
                    &procs,
                    &namespaces,
                    console.as_ref(),
                    &ps,
                    &err_w,
                    &pid_w,
                    opts.detach,
                )
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => child,
            Err(e) => return Err(err(format!("fork: {e}"))),
        };
        drop(err_w);
        drop(pid_w);
        drop(console);
        let mut buf = String::new();
        let _ = std::fs::File::from(pid_r).read_to_string(&mut buf);
        if let Outcome::Failed(f) =
            protocol::await_exec(&err_r).map_err(|e| err(format!("exec: {e}")))?
        {
            let _ = nix::sys::wait::waitpid(helper, None);
            return Err(err(f.to_string()));
        }
        let inner: i32 = buf
            .trim()
            .parse()
            .map_err(|_| err("exec: the process did not start"))?;
        if let Some(p) = &opts.pid_file {
            write_atomic(p, inner.to_string().as_bytes())
                .map_err(|e| err(format!("pid file {}: {e}", p.display())))?;
        }
        let code = loop {
            match nix::sys::wait::waitpid(helper, None) {
                Ok(st) => {
                    if let Some(c) = super::exec::exit_code(st) {
                        break c;
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(err(format!("wait: {e}"))),
            }
        };
        Ok(if opts.detach { 0 } else { code })
    }
}

/// The container's namespaces that differ from ours, in join order.
fn open_namespaces_of(pid: i32) -> Result<Vec<(nix::sched::CloneFlags, OwnedFd)>> {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &str| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let mut target = Vec::new();
    let mut own = Vec::new();
    for (name, _) in super::exec::NAMESPACES {
        if let Some(t) = id(&format!("/proc/{pid}/ns/{name}")) {
            target.push((name, t));
        }
        if let Some(o) = id(&format!("/proc/self/ns/{name}")) {
            own.push((name, o));
        }
    }
    let mut out = Vec::new();
    for name in super::exec::join_plan(&target, &own) {
        let flag = super::exec::NAMESPACES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .unwrap_or(nix::sched::CloneFlags::empty());
        let f = std::fs::File::open(format!("/proc/{pid}/ns/{name}"))
            .map_err(|e| err(format!("container process {pid}: {e}")))?;
        out.push((flag, OwnedFd::from(f)));
    }
    Ok(out)
}

/// The forked helper of `exec`: joins the cgroup and namespaces, forks the
/// process inside (a pid namespace applies to children), reports its pid,
/// and waits for it (or leaves at once with `detach`).
fn exec_helper(
    procs: &[PathBuf],
    namespaces: &[(nix::sched::CloneFlags, OwnedFd)],
    console: Option<&OwnedFd>,
    ps: &ProcessSpec,
    err_w: &OwnedFd,
    pid_w: &OwnedFd,
    detach: bool,
) -> ! {
    let fail = |msg: String| -> ! {
        send_failure(err_w.as_fd(), &ChildFailure::Other(msg));
        // SAFETY: leaves the forked helper without running the parent's destructors.
        unsafe { libc::_exit(125) }
    };
    for p in procs {
        if let Err(e) = crate::cgroups::join_self(p) {
            fail(format!("joining cgroup {}: {e}", p.display()));
        }
    }
    for (flag, fd) in namespaces {
        if let Err(e) = super::sys::Sys::setns(&super::sys::RealSys, fd.as_fd(), *flag) {
            fail(format!("entering the container's {flag:?} namespace: {e}"));
        }
    }
    // SAFETY: as above; the child execs or _exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            if let Some(sock) = console {
                let res = pty::open_pty()
                    .map_err(|e| e.to_string())
                    .and_then(|(m, s)| {
                        pty::send_fd(sock.as_fd(), Some(m.as_fd())).map_err(|e| e.to_string())?;
                        pty::make_controlling_terminal(&s).map_err(|e| e.to_string())
                    });
                if let Err(e) = res {
                    fail(format!("setting up the terminal: {e}"));
                }
            }
            let f = finish_and_exec(&super::sys::RealSys, ps, err_w.as_fd());
            send_failure(err_w.as_fd(), &f);
            // SAFETY: see above.
            unsafe { libc::_exit(f.exit_code()) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            let _ = nix::unistd::write(pid_w, child.as_raw().to_string().as_bytes());
            // SAFETY: closing our copies so the parent sees end-of-file.
            unsafe {
                libc::close(pid_w.as_raw_fd());
                libc::close(err_w.as_raw_fd());
            }
            if detach {
                // SAFETY: see above.
                unsafe { libc::_exit(0) }
            }
            let code = loop {
                match nix::sys::wait::waitpid(child, None) {
                    Ok(st) => {
                        if let Some(c) = super::exec::exit_code(st) {
                            break c;
                        }
                    }
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break 255,
                }
            };
            // SAFETY: see above.
            unsafe { libc::_exit(code) }
        }
        Err(e) => fail(format!("fork inside the container: {e}")),
    }
}

fn freezer_file(cg: &Cgroup) -> Option<PathBuf> {
    cg.paths()
        .into_iter()
        .map(|d| d.join("freezer.state"))
        .find(|f| f.exists())
}

fn frozen(cg: &Cgroup) -> bool {
    freezer_file(cg)
        .and_then(|f| std::fs::read_to_string(f).ok())
        .is_some_and(|s| s.trim() == "FROZEN")
}
