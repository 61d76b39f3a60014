//! `exec`: one more process in a container, through a forked helper that
//! joins its cgroup and namespaces (the helper's code is shared with
//! minirt's own exec: `runtime/exec.rs`).

use super::{err, write_atomic, Result, Runtime, SPEC_COPY};
use crate::runtime::process::{finish_and_exec, ChildFailure, ProcessSpec};
use crate::runtime::protocol::{self, send_failure, Outcome};
use crate::runtime::state::Status;
use crate::runtime::{pty, spec as rspec};
use nix::fcntl::OFlag;
use oci_spec::runtime::{Process, Spec};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

#[derive(Debug, Default)]
pub struct ExecOptions {
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
}

impl Runtime {
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
        let code = wait_code(helper).map_err(|e| err(format!("wait: {e}")))?;
        Ok(if opts.detach { 0 } else { code })
    }
}

/// Waits for `pid` to end: its exit code (128 + the signal for a killed
/// one).
fn wait_code(pid: nix::unistd::Pid) -> nix::Result<i32> {
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Ok(st) => {
                if let Some(c) = crate::runtime::exec::exit_code(st) {
                    return Ok(c);
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// The container's namespaces that differ from ours, in join order.
fn open_namespaces_of(pid: i32) -> Result<Vec<(nix::sched::CloneFlags, OwnedFd)>> {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &str| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let mut target = Vec::new();
    let mut own = Vec::new();
    for (name, _) in crate::runtime::exec::NAMESPACES {
        if let Some(t) = id(&format!("/proc/{pid}/ns/{name}")) {
            target.push((name, t));
        }
        if let Some(o) = id(&format!("/proc/self/ns/{name}")) {
            own.push((name, o));
        }
    }
    let mut out = Vec::new();
    for name in crate::runtime::exec::join_plan(&target, &own) {
        let flag = crate::runtime::exec::NAMESPACES
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
        if let Err(e) =
            crate::runtime::sys::Sys::setns(&crate::runtime::sys::RealSys, fd.as_fd(), *flag)
        {
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
            let f = finish_and_exec(&crate::runtime::sys::RealSys, ps, err_w.as_fd());
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
            let code = wait_code(child).unwrap_or(255);
            // SAFETY: see above.
            unsafe { libc::_exit(code) }
        }
        Err(e) => fail(format!("fork inside the container: {e}")),
    }
}
