//! `minirt exec` core: run one more process inside a running container's cgroups and
//! namespaces, with or without a pty, and hand back its exit code.
//!
//! The namespace switch happens in a forked helper, never in the calling process: setns into a
//! mount or user namespace is refused to multi-threaded processes, and the caller keeps its own
//! namespaces and cgroups whatever happens. Process tree: minirt -> helper (joins cgroups, setns)
//! -> the exec'd process (forked inside the container's pid namespace). The helper waits for it
//! and exits with its code; with `detach` the helper exits at once and the process is reparented
//! to the host's reaper (the helper lives in the host pid namespace), as Docker's exec'd processes
//! belong to the shim, so the container's init need not reap it.

use super::ContainerError;
pub use crate::runtime::exec::{exit_code, join_plan, NAMESPACES};
use crate::runtime::exec::{helper_main, ChildIo, Prepared};
use crate::runtime::process::{ChildFailure, ProcessSpec};
use crate::runtime::protocol::{self, Outcome};
use crate::runtime::pty::{self, RawMode};
use nix::sched::CloneFlags;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

impl From<ChildFailure> for ContainerError {
    fn from(f: ChildFailure) -> Self {
        match f {
            ChildFailure::NotFound(m) => ContainerError::CommandNotFound(m),
            ChildFailure::CannotExecute(m) => ContainerError::CannotExecute(m),
            ChildFailure::Other(m) => ContainerError::Runtime(m),
        }
    }
}

/// Where the exec'd process's stdio goes; None = minirt's own fd. With a tty, stdin/stdout are
/// the ends the relay uses instead of minirt's and stderr is unused (the pty merges it).
#[derive(Debug, Default)]
pub struct ExecStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

#[derive(Debug)]
pub struct ExecRequest {
    /// The container's init pid on the host.
    pub pid: i32,
    /// cgroup.procs files to join (one per v1 hierarchy).
    pub cgroup_procs: Vec<PathBuf>,
    /// The cgroup2 directory to run the process in.
    pub cgroup_v2: Option<PathBuf>,
    pub process: ProcessSpec,
    pub tty: bool,
    pub interactive: bool,
    pub detach: bool,
    pub stdio: ExecStdio,
}

impl ExecRequest {
    /// Non-interactive, no tty, attached, minirt's own stdio.
    pub fn new(pid: i32, process: ProcessSpec) -> ExecRequest {
        ExecRequest {
            pid,
            cgroup_procs: Vec::new(),
            cgroup_v2: None,
            process,
            tty: false,
            interactive: false,
            detach: false,
            stdio: ExecStdio::default(),
        }
    }
}

impl ExecRequest {
    /// Runs the process in cgroup `cg`, in every hierarchy.
    pub fn join_cgroup(&mut self, cg: &crate::cgroups::Cgroup) {
        let v2 = cg.v2_dir();
        self.cgroup_v2 = v2.map(|d| d.to_path_buf());
        self.cgroup_procs = cg
            .procs_files()
            .into_iter()
            .filter(|p| p.parent() != v2)
            .collect();
    }
}

fn runtime(msg: impl Into<String>) -> ContainerError {
    ContainerError::Runtime(msg.into())
}

fn ns_id(path: &str) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Open the target's namespace files (before forking, so a dead container is a clear error).
fn open_namespaces(pid: i32) -> Result<Vec<(CloneFlags, OwnedFd)>, ContainerError> {
    let mut target = Vec::new();
    let mut own = Vec::new();
    for (name, _) in NAMESPACES {
        let path = format!("/proc/{pid}/ns/{name}");
        match ns_id(&path) {
            Some(id) => target.push((name, id)),
            None if name == "cgroup" || name == "user" => {}
            None => {
                return Err(runtime(format!(
                    "container process {pid} is not running (cannot read {path})"
                )))
            }
        }
        if let Some(id) = ns_id(&format!("/proc/self/ns/{name}")) {
            own.push((name, id));
        }
    }
    let mut fds = Vec::new();
    for name in join_plan(&target, &own) {
        let path = format!("/proc/{pid}/ns/{name}");
        let file = std::fs::File::open(&path).map_err(|e| runtime(format!("open {path}: {e}")))?;
        let flag = NAMESPACES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .unwrap_or(CloneFlags::empty());
        fds.push((flag, OwnedFd::from(file)));
    }
    Ok(fds)
}

/// Run `req.process` inside the container; the exit code of the process (0 at once when
/// detached). A failure before execve comes back as CommandNotFound / CannotExecute / Runtime.
pub fn exec_in(req: &ExecRequest) -> Result<i32, ContainerError> {
    if req.process.args.is_empty() {
        return Err(ContainerError::Invalid(
            "exec needs a command to run".into(),
        ));
    }
    let namespaces = open_namespaces(req.pid)?;
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| runtime(format!("open /dev/null: {e}")))?;
    let null = devnull.as_raw_fd();
    let raw = |o: &Option<OwnedFd>| o.as_ref().map(|f| f.as_raw_fd());

    let mut host_master = None;
    let mut pty_sock = None;
    let child_io = if req.detach {
        ChildIo::Fds([Some(null); 3])
    } else if req.tty {
        let (m, s) = pty::open_pty().map_err(|e| runtime(format!("allocate a pty: {e}")))?;
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| runtime(format!("create the pty socket: {e}")))?;
        host_master = Some(m);
        pty_sock = Some(ours);
        ChildIo::Pty {
            fallback: s,
            sock: theirs,
        }
    } else {
        let stdin = if req.interactive {
            raw(&req.stdio.stdin)
        } else {
            Some(null)
        };
        ChildIo::Fds([stdin, raw(&req.stdio.stdout), raw(&req.stdio.stderr)])
    };
    let (err_r, err_w) =
        protocol::channel().map_err(|e| runtime(format!("create the sync socket: {e}")))?;
    let cgroup_v2 = match &req.cgroup_v2 {
        Some(dir) => {
            let f = std::fs::File::open(dir)
                .map_err(|e| runtime(format!("join cgroup {}: {e}", dir.display())))?;
            Some((dir.join("cgroup.procs"), OwnedFd::from(f)))
        }
        None => None,
    };
    let prepared = Prepared {
        namespaces,
        cgroup_procs: req.cgroup_procs.clone(),
        cgroup_v2,
        err_w,
        child_io,
    };

    // SAFETY: the helper only makes syscalls and allocates (glibc malloc is fork-safe), then
    // leaves with _exit; it never returns into the caller's code.
    let helper = match unsafe { fork() } {
        Ok(ForkResult::Child) => helper_main(&prepared, &req.process, req.detach),
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Err(runtime(format!("fork: {e}"))),
    };
    // Our copies must go, or the pipe never reaches EOF and the pty never reports EIO.
    drop(prepared);
    drop(devnull);

    // The pty from the container's own devpts, as `docker exec -t` gives; the host's otherwise.
    let master = match (host_master, pty_sock) {
        (Some(host), Some(sock)) => match pty::recv_fd(sock.as_fd()) {
            Ok(Some(m)) if pty::is_pty_master(m.as_fd()) => Some(m),
            _ => Some(host),
        },
        _ => None,
    };
    match protocol::await_exec(&err_r) {
        Ok(Outcome::Execed { .. }) => {}
        Ok(Outcome::Failed(f)) => {
            let _ = wait_exit(helper);
            return Err(f.into());
        }
        Err(e) => {
            let _ = wait_exit(helper);
            return Err(runtime(format!("wait for the exec process: {e}")));
        }
    }
    if req.detach {
        wait_exit(helper)?;
        return Ok(0);
    }
    if let Some(master) = master {
        let stdin = std::io::stdin();
        let stdout = std::io::stdout();
        let input: BorrowedFd<'_> = match &req.stdio.stdin {
            Some(fd) => fd.as_fd(),
            None => stdin.as_fd(),
        };
        let output: BorrowedFd<'_> = match &req.stdio.stdout {
            Some(fd) => fd.as_fd(),
            None => stdout.as_fd(),
        };
        let raw_mode = if req.interactive && pty::is_tty(input) {
            RawMode::enter(input).ok()
        } else {
            None
        };
        let relayed = pty::relay_fds(master, req.interactive.then_some(input), output);
        drop(raw_mode);
        let code = wait_exit(helper)?;
        relayed.map_err(|e| runtime(format!("relay the terminal: {e}")))?;
        return Ok(code);
    }
    wait_exit(helper)
}

fn wait_exit(pid: Pid) -> Result<i32, ContainerError> {
    loop {
        match waitpid(pid, None) {
            Ok(st) => {
                if let Some(c) = exit_code(st) {
                    return Ok(c);
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(runtime(format!("wait for the exec process: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::WaitStatus;

    #[test]
    fn failures_map_to_container_errors() {
        let f = ChildFailure::NotFound("x".into());
        assert_eq!(ContainerError::from(f).exit_code(), 127);
        assert_eq!(
            ContainerError::from(ChildFailure::CannotExecute("y".into())).exit_code(),
            126
        );
        assert_eq!(
            ContainerError::from(ChildFailure::Other("z".into())).exit_code(),
            125
        );
    }

    #[test]
    fn join_plan_skips_shared_namespaces_and_keeps_order() {
        let own = [
            ("user", (1, 10)),
            ("ipc", (1, 11)),
            ("uts", (1, 12)),
            ("net", (1, 13)),
            ("pid", (1, 14)),
            ("cgroup", (1, 15)),
            ("mnt", (1, 16)),
        ];
        let target = [
            ("mnt", (1, 26)),
            ("pid", (1, 24)),
            ("net", (1, 13)),
            ("uts", (1, 22)),
            ("user", (1, 10)),
            ("ipc", (1, 21)),
            ("cgroup", (1, 15)),
        ];
        assert_eq!(join_plan(&target, &own), vec!["ipc", "uts", "pid", "mnt"]);
        let userns = [("user", (1, 30)), ("mnt", (1, 16))];
        assert_eq!(join_plan(&userns, &own), vec!["user"]);
    }

    #[test]
    fn wait_status_maps_to_docker_exit_codes() {
        let p = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(p, 7)), Some(7));
        assert_eq!(
            exit_code(WaitStatus::Signaled(
                p,
                nix::sys::signal::Signal::SIGKILL,
                false
            )),
            Some(137)
        );
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }

    /// A stand-in container: `unshare --pid --fork --mount-proc --uts --ipc --net busybox sleep`,
    /// killed (with everything in its pid namespace) on drop.
    struct Target {
        unshare: std::process::Child,
        pid: i32,
    }

    impl Target {
        // The child is waited for in Drop.
        #[allow(clippy::zombie_processes)]
        fn start() -> Target {
            Target::start_with(&["busybox", "sleep", "100"])
        }

        /// `cmd` must end up exec'ing `busybox sleep`. unshare makes the new mount namespace
        /// private, so mounts made there never reach the host.
        #[allow(clippy::zombie_processes)]
        fn start_with(cmd: &[&str]) -> Target {
            let mut unshare = std::process::Command::new("unshare")
                .args([
                    "--pid",
                    "--fork",
                    "--kill-child",
                    "--mount-proc",
                    "--uts",
                    "--ipc",
                    "--net",
                ])
                .args(cmd)
                .spawn()
                .expect("spawn unshare");
            let outer = unshare.id();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let children =
                    std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))
                        .unwrap_or_default();
                if let Some(pid) = children
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<i32>().ok())
                {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    if cmdline.starts_with(b"busybox\0sleep") {
                        return Target { unshare, pid };
                    }
                }
                if std::time::Instant::now() > deadline {
                    let _ = unshare.kill();
                    let _ = unshare.wait();
                    panic!("the target container did not start");
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }

    impl Drop for Target {
        fn drop(&mut self) {
            // Killing the namespace's init takes every process of the namespace with it.
            let _ =
                nix::sys::signal::kill(Pid::from_raw(self.pid), nix::sys::signal::Signal::SIGKILL);
            let _ = self.unshare.kill();
            let _ = self.unshare.wait();
        }
    }

    fn is_root() -> bool {
        nix::unistd::Uid::effective().is_root()
    }

    fn spec(args: &[&str]) -> ProcessSpec {
        ProcessSpec {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/usr/bin:/bin".into()],
            cwd: "/".into(),
            ..ProcessSpec::default()
        }
    }

    /// Run with stdout+stderr on a pipe; (result, output).
    fn run(mut req: ExecRequest) -> (Result<i32, ContainerError>, String) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        req.stdio.stdout = Some(w.try_clone().unwrap());
        req.stdio.stderr = Some(w);
        let res = exec_in(&req);
        drop(req);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut out).unwrap();
        (res, out)
    }

    #[test]
    fn exec_runs_inside_the_target_namespaces() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let t = Target::start();
        let own_ns = |n: &str| std::fs::read_link(format!("/proc/self/ns/{n}")).unwrap();
        let before: Vec<_> = ["mnt", "pid_for_children", "net", "uts"].map(own_ns).into();
        let (res, out) = run(ExecRequest::new(t.pid, spec(&["busybox", "ps"])));
        let after: Vec<_> = ["mnt", "pid_for_children", "net", "uts"].map(own_ns).into();
        assert_eq!(before, after, "the caller must keep its namespaces");
        assert_eq!(res.unwrap(), 0, "{out}");
        let init = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some("1"))
            .unwrap_or_else(|| panic!("no PID 1 in {out}"));
        assert!(init.contains("sleep"), "PID 1 should be the sleep: {out}");

        let script = "for n in ipc uts net pid mnt; do busybox readlink /proc/self/ns/$n; done";
        let (res, out) = run(ExecRequest::new(
            t.pid,
            spec(&["busybox", "sh", "-c", script]),
        ));
        assert_eq!(res.unwrap(), 0, "{out}");
        let want: Vec<String> = ["ipc", "uts", "net", "pid", "mnt"]
            .iter()
            .map(|n| {
                std::fs::read_link(format!("/proc/{}/ns/{n}", t.pid))
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(out.lines().collect::<Vec<_>>(), want);
        let own_net = std::fs::read_link("/proc/self/ns/net").unwrap();
        assert_ne!(
            own_net.display().to_string(),
            want[2],
            "target must have its own netns"
        );

        let (res, out) = run(ExecRequest::new(t.pid, spec(&["busybox", "hostname"])));
        assert_eq!(res.unwrap(), 0);
        assert!(!out.trim().is_empty());
    }

    #[test]
    fn exit_codes_and_failures_propagate() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let t = Target::start();
        let code = |args: &[&str]| run(ExecRequest::new(t.pid, spec(args)));

        assert_eq!(code(&["busybox", "sh", "-c", "exit 7"]).0.unwrap(), 7);
        assert_eq!(
            code(&["busybox", "sh", "-c", "kill -KILL $$"]).0.unwrap(),
            137
        );
        // Not interactive: stdin is /dev/null, so cat ends at once.
        let (res, out) = code(&["busybox", "sh", "-c", "busybox cat; echo end"]);
        assert_eq!((res.unwrap(), out.as_str()), (0, "end\n"));

        let err = code(&["nope"]).0.unwrap_err();
        assert!(matches!(err, ContainerError::CommandNotFound(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(err.exit_code(), 127);

        let err = code(&["/etc"]).0.unwrap_err();
        assert_eq!(err.to_string(), "exec: \"/etc\": permission denied");
        assert_eq!(err.exit_code(), 126);

        let mut s = spec(&["busybox", "true"]);
        s.cwd = "/nope".into();
        let err = run(ExecRequest::new(t.pid, s)).0.unwrap_err();
        assert_eq!(
            err.to_string(),
            "chdir to cwd (\"/nope\") set in config.json failed: no such file or directory"
        );
        assert_eq!(err.exit_code(), 125);

        let mut s = spec(&["pwd"]);
        s.cwd = "/tmp".into();
        s.env = vec!["PATH=/nowhere:/usr/bin:/bin".into()];
        let (res, out) = run(ExecRequest::new(t.pid, s));
        assert_eq!((res.unwrap(), out.as_str()), (0, "/tmp\n"));

        drop(t);
        let err = exec_in(&ExecRequest::new(i32::MAX - 1, spec(&["true"]))).unwrap_err();
        assert!(matches!(err, ContainerError::Runtime(_)), "{err:?}");
    }

    fn status_field(out: &str, key: &str) -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("{key} missing in {out}"))
    }

    #[test]
    fn user_capabilities_and_no_new_privs_are_applied() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let t = Target::start();
        let mask = format!(
            "{:016x}",
            crate::runtime::caps::capability_mask(&None).unwrap()
        );
        let script = "busybox id -u; busybox id -g; busybox cat /proc/self/status";

        let (res, out) = run(ExecRequest::new(
            t.pid,
            spec(&["busybox", "sh", "-c", script]),
        ));
        assert_eq!(res.unwrap(), 0, "{out}");
        assert!(out.starts_with("0\n0\n"), "{out}");
        assert_eq!(status_field(&out, "CapBnd"), mask);
        assert_eq!(status_field(&out, "CapEff"), mask);
        assert_eq!(status_field(&out, "CapPrm"), mask);
        assert_eq!(status_field(&out, "CapInh"), "0000000000000000");
        assert_eq!(status_field(&out, "CapAmb"), "0000000000000000");
        assert_eq!(status_field(&out, "NoNewPrivs"), "0");
        // Rust ignores SIGPIPE in the caller; the program must not inherit that (checked
        // without a shell in between, since ash ignores SIGQUIT itself).
        let (res, out) = run(ExecRequest::new(
            t.pid,
            spec(&["busybox", "cat", "/proc/self/status"]),
        ));
        assert_eq!(res.unwrap(), 0, "{out}");
        assert_eq!(status_field(&out, "SigIgn"), "0000000000000000");
        assert_eq!(status_field(&out, "SigBlk"), "0000000000000000");

        let mut s = spec(&["busybox", "sh", "-c", script]);
        s.user = "65534:65533".into();
        s.no_new_privs = true;
        s.capabilities = Some(vec!["CAP_KILL".into(), "NET_BIND_SERVICE".into()]);
        let (res, out) = run(ExecRequest::new(t.pid, s));
        assert_eq!(res.unwrap(), 0, "{out}");
        assert!(out.starts_with("65534\n65533\n"), "{out}");
        // A non-root execve drops permitted/effective (no ambient caps); the bound stays.
        assert_eq!(status_field(&out, "CapBnd"), "0000000000000420");
        assert_eq!(status_field(&out, "CapEff"), "0000000000000000");
        assert_eq!(status_field(&out, "NoNewPrivs"), "1");
        assert_eq!(status_field(&out, "Groups"), "");

        // Names resolve through the container's /etc/passwd (here the host's copy), HOME too.
        let mut s = spec(&["busybox", "sh", "-c", "busybox id -un; echo $HOME"]);
        s.user = "nobody".into();
        let (res, out) = run(ExecRequest::new(t.pid, s));
        assert_eq!(res.unwrap(), 0, "{out}");
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let home = crate::runtime::user::parse_passwd(&passwd)
            .into_iter()
            .find(|p| p.name == "nobody")
            .map(|p| p.home)
            .expect("a nobody user on the host");
        assert_eq!(out, format!("nobody\n{home}\n"));
        let mut s = spec(&["true"]);
        s.user = "no-such-user".into();
        let err = run(ExecRequest::new(t.pid, s)).0.unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find user no-such-user: no matching entries in passwd file"
        );
    }

    struct Cgroup(PathBuf);

    impl Drop for Cgroup {
        fn drop(&mut self) {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::fs::remove_dir(&self.0).is_err() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }

    /// A stand-in container and a new cgroup directory under `base`
    /// (removed on drop), with its name.
    fn target_and_cgroup(base: &std::path::Path, tag: &str) -> (Target, Cgroup, String) {
        let t = Target::start();
        let name = format!("minirt-{tag}-{}", std::process::id());
        std::fs::create_dir(base.join(&name)).unwrap();
        (t, Cgroup(base.join(&name)), name)
    }

    #[test]
    fn exec_joins_the_cgroup_but_the_caller_does_not() {
        let base = PathBuf::from("/sys/fs/cgroup/pids");
        if !is_root() || !base.join("cgroup.procs").exists() {
            eprintln!("skipped: needs root and the v1 pids hierarchy");
            return;
        }
        let (t, cg, name) = target_and_cgroup(&base, "exec-test");
        let mut req = ExecRequest::new(t.pid, spec(&["busybox", "cat", "/proc/self/cgroup"]));
        req.cgroup_procs = vec![cg.0.join("cgroup.procs")];
        let (res, out) = run(req);
        assert_eq!(res.unwrap(), 0, "{out}");
        assert!(
            out.lines().any(|l| l.ends_with(&format!("pids:/{name}"))),
            "{out}"
        );
        let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        assert!(!ours.contains(&name), "the caller must stay where it was");

        let mut req = ExecRequest::new(t.pid, spec(&["busybox", "true"]));
        req.cgroup_procs = vec![cg.0.join("missing/cgroup.procs")];
        let err = run(req).0.unwrap_err();
        assert!(err.to_string().starts_with("join cgroup "), "{err}");
    }

    /// The process runs in the cgroup2 directory (born there: see
    /// runtime::exec::helper_main) and in the pid namespace, the caller
    /// stays where it was, and a missing directory fails before anything
    /// runs.
    #[test]
    fn exec_runs_in_the_cgroup2_directory() {
        let unified = crate::cgroups::Layout::detect()
            .ok()
            .and_then(|l| l.unified.clone());
        let Some(unified) = unified.filter(|_| is_root()) else {
            eprintln!("skipped: needs root and a cgroup2 mount");
            return;
        };
        let (t, cg, name) = target_and_cgroup(&unified, "exec-v2-test");
        let script = "cat /proc/self/cgroup; echo pid=$$";
        let mut req = ExecRequest::new(t.pid, spec(&["busybox", "sh", "-c", script]));
        req.cgroup_v2 = Some(cg.0.clone());
        let (res, out) = run(req);
        assert_eq!(res.unwrap(), 0, "{out}");
        assert!(out.lines().any(|l| l == format!("0::/{name}")), "{out}");
        // The target's pid namespace: its sleep is 1, the exec'd shell small.
        let pid: i32 = out
            .lines()
            .find_map(|l| l.strip_prefix("pid="))
            .and_then(|p| p.parse().ok())
            .expect("pid line");
        assert!(pid < 100, "not in the target's pid namespace: {out}");
        let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        assert!(!ours.contains(&name), "the caller must stay where it was");
        // Nothing left behind in it.
        assert_eq!(
            std::fs::read_to_string(cg.0.join("cgroup.procs")).unwrap(),
            ""
        );

        let mut req = ExecRequest::new(t.pid, spec(&["busybox", "true"]));
        req.cgroup_v2 = Some(cg.0.join("missing"));
        let err = run(req).0.unwrap_err();
        assert!(err.to_string().contains("join cgroup "), "{err}");
    }

    /// An interactive `busybox sh` on a terminal in the target, fed `input`.
    fn tty_shell(pid: i32, input: &[u8]) -> (Result<i32, ContainerError>, String) {
        let (in_r, in_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        nix::unistd::write(&in_w, input).unwrap();
        drop(in_w);
        let mut req = ExecRequest::new(pid, spec(&["busybox", "sh"]));
        req.tty = true;
        req.interactive = true;
        req.stdio.stdin = Some(in_r);
        run(req)
    }

    #[test]
    fn tty_exec_relays_a_shell_session() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let t = Target::start();
        let (res, out) = tty_shell(t.pid, b"echo $((6*7)); busybox tty; exit 5\n");
        assert_eq!(res.unwrap(), 5, "{out}");
        assert!(out.contains("\n42\r\n"), "{out:?}");
        assert!(
            out.contains("/dev/pts/"),
            "the process should have a tty: {out:?}"
        );
    }

    #[test]
    fn detached_exec_returns_at_once_and_keeps_running() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let t = Target::start();
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("done");
        let script = format!(
            "busybox sleep 0.3; busybox cat /proc/$$/stat > {}.tmp; busybox mv {0}.tmp {0}",
            marker.display()
        );
        let mut req = ExecRequest::new(t.pid, spec(&["busybox", "sh", "-c", &script]));
        req.detach = true;
        let started = std::time::Instant::now();
        assert_eq!(exec_in(&req).unwrap(), 0);
        assert!(started.elapsed() < std::time::Duration::from_millis(300));
        assert!(!marker.exists());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !marker.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "detached process never finished"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Field 4 of the shell's stat is its parent pid: 0 = outside the container's pid
        // namespace, i.e. the host's reaper took it over once the (already reaped) helper exited.
        let stat = std::fs::read_to_string(&marker).unwrap();
        let ppid = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .nth(1)
            .unwrap();
        assert_eq!(ppid, "0", "{stat}");

        req.process.args = vec!["nope".into()];
        assert_eq!(exec_in(&req).unwrap_err().exit_code(), 127);
    }

    #[test]
    fn tty_comes_from_the_containers_own_devpts() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let host_pts = std::fs::metadata("/dev/pts/ptmx").unwrap().dev();
        let setup = "mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts && \
                     mount --bind /dev/pts/ptmx /dev/ptmx && exec busybox sleep 100";
        let t = Target::start_with(&["sh", "-c", setup]);
        let (res, out) = tty_shell(t.pid, b"busybox tty; busybox ls /dev/pts; exit\n");
        assert_eq!(res.unwrap(), 0, "{out}");
        // A fresh devpts instance: the exec's pty is its first one, and ttyname() finds it.
        assert!(out.contains("\n/dev/pts/0\r\n"), "{out:?}");
        assert_eq!(
            std::fs::metadata("/dev/pts/ptmx").unwrap().dev(),
            host_pts,
            "the host's devpts must be untouched"
        );
    }
}
