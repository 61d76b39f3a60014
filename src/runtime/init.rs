//! The container's side of the run path, shared by minirt's own `run` and
//! the OCI `create` (one executor, see `crate::runtime`): the cloned child
//! joins its cgroup and the namespaces named by path, sets up its root
//! filesystem, waits at its start gate, then becomes the container's process.
//! Any failure before the gate travels back as a message; this code never
//! returns into the parent's logic.

use super::process::{finish_and_exec, ChildFailure};
use super::protocol::{recv_msg, send_msg, send_msg_with_fd, ToChild, ToParent};
use super::pty::make_controlling_terminal;
use super::state::OciState;
use crate::cgroups::Cgroup;
use crate::rootfs::mount::{prepare_rootfs, switch_root, Overlay, RootSwitch};
use crate::runtime::spec as rspec;
use crate::runtime::sys::{RealSys, Sys};
use nix::sched::CloneFlags;
use oci_spec::runtime::Spec;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Where the container's terminal (a pty from its own devpts) goes.
pub enum Console {
    /// No terminal: stdio as inherited.
    None,
    /// The master travels to the parent on the sync socket (minirt relays it).
    Relay,
    /// The master is sent to this (connected) OCI console socket, runc's way.
    Socket(OwnedFd),
}

/// What the child waits for before it execs.
pub enum Gate {
    /// A `Continue` message from the parent on the sync socket (network wired).
    Parent,
    /// The OCI create/start split: report `Created`, then block opening
    /// `fifo` (an O_PATH fd, reopened through /proc/self/fd after
    /// pivot_root) for writing until `start` opens it for reading.
    Fifo {
        fifo: OwnedFd,
        hooks: Option<Box<InitHooks>>,
    },
}

/// The OCI hooks at the init's own steps.
pub struct InitHooks {
    /// What the hooks get on stdin; the init fills in its host pid.
    pub state: OciState,
    /// createRuntime or prestart hooks (the parent's, in the runtime's
    /// namespaces): before the root switch, report `Mounted` and wait for
    /// `Continue`.
    pub parent_hooks: bool,
    /// Run by the init in the container's namespaces after the mounts,
    /// before the root switch (paths of the runtime's filesystem).
    pub create_container: Vec<oci_spec::runtime::Hook>,
    /// Run by the init in the container after `start`, before the process.
    pub start_container: Vec<oci_spec::runtime::Hook>,
}

/// Everything the child needs, prepared by the parent before clone.
pub(crate) struct InitArgs {
    pub spec: Spec,
    /// The root filesystem to mount (in the child's own mount namespace);
    /// None when the spec's root path is ready (an OCI bundle).
    pub overlay: Option<Overlay>,
    pub sync: OwnedFd,
    pub console: Console,
    pub gate: Gate,
    /// The container's cgroup, joined first thing.
    pub cgroup: Cgroup,
    /// Born in its cgroup2 directory already (clone3 CLONE_INTO_CGROUP).
    pub born_in_v2: bool,
    /// Namespaces the spec names by path, opened (and checked) by the parent.
    pub join: Vec<(CloneFlags, OwnedFd)>,
    /// A new cgroup namespace, made after joining the cgroup (so the
    /// container's own cgroup is its root).
    pub new_cgroupns: bool,
    /// fds 3..3+N are passed on to the process.
    pub preserve_fds: u32,
    /// pivot_root, or (`--no-pivot`) a move over / and chroot.
    pub root_switch: RootSwitch,
    /// Cloned into a new user namespace: wait for the parent to write its
    /// maps (`ToChild::Mapped`), then become its root.
    pub userns: bool,
}

/// Entry point of the cloned child. Returns the exit status for `_exit`.
pub(crate) fn child_main(args: &InitArgs) -> isize {
    let created = std::cell::Cell::new(false);
    let failure = match run(&RealSys, args, &created) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    let code = failure.exit_code();
    // Past the OCI create nobody reads the socket (the create process is
    // gone, or about to go): the container's stderr is where runc users
    // look. Before that, a parent that stopped listening has its own error
    // to tell.
    if created.get() {
        eprintln!("minirt: {failure}");
    } else {
        let _ = send_msg(&args.sync, &ToParent::Failed(failure.clone()));
    }
    code as isize
}

enum Never {}

fn run(
    sys: &impl Sys,
    args: &InitArgs,
    created: &std::cell::Cell<bool>,
) -> Result<Never, ChildFailure> {
    let other = |what: &str, e: &dyn std::fmt::Display| ChildFailure::Other(format!("{what}: {e}"));
    let spec = &args.spec;
    // Into the cgroup before anything is charged to the runtime's.
    args.cgroup
        .join_self(args.born_in_v2)
        .map_err(|e| other("joining the cgroup", &e))?;
    for (flag, fd) in &args.join {
        sys.setns(fd.as_fd(), *flag)
            .map_err(|e| other(&format!("joining {flag:?}"), &e))?;
    }
    if args.userns {
        match recv_msg::<ToChild>(&args.sync) {
            Ok(Some(ToChild::Mapped)) => {}
            Ok(_) => {
                return Err(ChildFailure::Other(
                    "the user namespace was not mapped".into(),
                ))
            }
            Err(e) => return Err(other("sync", &e)),
        }
        // Root of the new namespace: files it makes belong to the host ids
        // the spec maps 0 to.
        sys.setresgid(0)
            .map_err(|e| other("setgid 0 in the user namespace", &e))?;
        sys.setresuid(0)
            .map_err(|e| other("setuid 0 in the user namespace", &e))?;
    }
    // Through the host's /proc, before pivot_root and the read-only /proc/sys:
    // namespaced sysctls act on the writer's namespaces, which are ours now.
    rspec::apply_sysctls(spec).map_err(ChildFailure::Other)?;
    rspec::apply_oom_score_adj(spec).map_err(ChildFailure::Other)?;
    prepare_rootfs(sys, spec, args.overlay.as_ref())
        .map_err(|e| ChildFailure::Other(e.to_string()))?;
    let hooks = match &args.gate {
        Gate::Fifo { hooks: Some(h), .. } => Some(hook_state(h)?),
        _ => None,
    };
    if let Some((h, state)) = &hooks {
        if h.parent_hooks {
            send_msg(&args.sync, &ToParent::Mounted).map_err(|e| other("sync", &e))?;
            match recv_msg::<ToChild>(&args.sync) {
                Ok(Some(ToChild::Continue)) => {}
                Ok(_) => {
                    return Err(ChildFailure::Other(
                        "the runtime's hooks did not finish".into(),
                    ))
                }
                Err(e) => return Err(other("sync", &e)),
            }
        }
        super::hooks::run_all("createContainer", &h.create_container, state)
            .map_err(ChildFailure::Other)?;
    }
    switch_root(sys, spec, args.root_switch).map_err(|e| ChildFailure::Other(e.to_string()))?;
    if let Some(h) = spec.hostname().as_ref().filter(|h| !h.is_empty()) {
        sys.sethostname(h).map_err(|e| other("sethostname", &e))?;
    }
    // The terminal comes from the container's own devpts (so `tty` names a
    // path that exists inside).
    let console = match &args.console {
        Console::None => None,
        Console::Relay => {
            let (master, slave) = open_console().map_err(|e| other("allocating a terminal", &e))?;
            send_msg_with_fd(&args.sync, &ToParent::Console, master.as_fd())
                .map_err(|e| other("sending the terminal", &e))?;
            Some(slave)
        }
        Console::Socket(sock) => {
            let (master, slave) = open_console().map_err(|e| other("allocating a terminal", &e))?;
            rspec::apply_console_size(spec, master.as_fd());
            super::pty::send_fd(sock.as_fd(), Some(master.as_fd()))
                .map_err(|e| other("sending the terminal to the console socket", &e))?;
            Some(slave)
        }
    };

    let start = match &args.gate {
        Gate::Parent => match recv_msg::<ToChild>(&args.sync) {
            Ok(Some(ToChild::Continue)) => None,
            Ok(Some(ToChild::Mapped)) => {
                return Err(ChildFailure::Other("unexpected sync message".into()))
            }
            Ok(None) => return Err(ChildFailure::Other("parent went away before start".into())),
            Err(e) => return Err(other("sync", &e)),
        },
        Gate::Fifo { fifo, .. } => {
            let mut ps = rspec::process_spec(spec).map_err(ChildFailure::Other)?;
            ps.preserve_fds = args.preserve_fds;
            super::process::preflight(&ps)?;
            send_msg(&args.sync, &ToParent::Created).map_err(|e| other("sync", &e))?;
            created.set(true);
            Some(wait_for_start(fifo).map_err(|e| other("waiting for start", &e))?)
        }
    };
    if args.new_cgroupns {
        // Now that we are in our cgroup, make it the root of our cgroup view.
        sys.unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| other("unshare cgroup namespace", &e))?;
    }
    if let Some((h, state)) = &hooks {
        super::hooks::run_all("startContainer", &h.start_container, state)
            .map_err(ChildFailure::Other)?;
    }
    if let Some(mut fifo) = start {
        // `start` returns (and runs poststart) once this byte is there.
        use std::io::Write;
        fifo.write_all(b"0")
            .map_err(|e| other("telling start", &e))?;
    }

    if let Some(slave) = &console {
        make_controlling_terminal(slave).map_err(|e| other("setting up the terminal", &e))?;
    }
    drop(console);
    // Every fd above the preserved ones becomes close-on-exec in
    // finish_and_exec (one close_range, not a walk of /proc/self/fd here).

    let mut ps = rspec::process_spec(spec).map_err(ChildFailure::Other)?;
    ps.preserve_fds = args.preserve_fds;
    Err(finish_and_exec(sys, &ps, args.sync.as_fd()))
}

/// The hooks and the state JSON they get: the init's pid as the host sees
/// it (the host's /proc is still mounted here, before the root switch).
fn hook_state(h: &InitHooks) -> Result<(&InitHooks, Vec<u8>), ChildFailure> {
    let mut state = h.state.clone();
    state.pid = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse().ok()));
    let json = serde_json::to_vec(&state).map_err(|e| ChildFailure::Other(e.to_string()))?;
    Ok((h, json))
}

/// Blocks until `start` opens the FIFO for reading; the byte that lets it
/// return is written after the startContainer hooks.
fn wait_for_start(fifo: &OwnedFd) -> std::io::Result<std::fs::File> {
    let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    std::fs::OpenOptions::new().write(true).open(path)
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
