//! The last steps before execve, shared by the container's init and by `exec`:
//! what to run (`ProcessSpec`), why it did not run (`ChildFailure`), rlimits,
//! umask, cwd, seccomp, signals and fds, in the order the kernel needs them.
//! Users and groups are `user.rs`, capabilities `caps.rs`, the PATH search
//! `lookup.rs`.

use super::caps::{
    capability_mask, drop_bounding, parse_capability, permitted_mask, set_process_caps,
};
use super::lookup::{env_with_home, lookup_in_path, path_from_env, probe_file};
use super::sys::Sys;
use super::user::{parse_group, parse_passwd, resolve_user, switch_user};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::os::fd::BorrowedFd;
use std::path::Path;

/// What to run and as whom, once the container's namespaces and rootfs are in place.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// "" = root, "uid", "uid:gid", "name", "name:group".
    pub user: String,
    /// None = Docker's default set; names like "CAP_CHOWN".
    pub capabilities: Option<Vec<String>>,
    pub no_new_privs: bool,
    /// The seccomp profile, installed as the very last step before execve; None = unconfined.
    #[serde(default)]
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// An OCI spec's `user.additionalGids`: exactly these supplementary groups, instead of the
    /// memberships found in the container's /etc/group.
    #[serde(default)]
    pub additional_gids: Option<Vec<u32>>,
    /// `user.umask`; None keeps the inherited one.
    #[serde(default)]
    pub umask: Option<u32>,
    /// `process.rlimits`, applied before the user switch (raising a hard limit needs root).
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// fds 3..3+N stay open across execve (runc's `--preserve-fds`).
    #[serde(default)]
    pub preserve_fds: u32,
    /// An OCI spec's other four capability sets; None = effective and
    /// permitted equal the bounding set, inheritable and ambient empty.
    #[serde(default)]
    pub cap_sets: Option<CapSets>,
}

/// Capability names ("CAP_KILL") per set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapSets {
    pub effective: Vec<String>,
    pub permitted: Vec<String>,
    pub inheritable: Vec<String>,
    pub ambient: Vec<String>,
}

/// One resource limit: the kernel's RLIMIT_* number and its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

/// Why the child did not reach execve; sent to the parent as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildFailure {
    NotFound(String),
    CannotExecute(String),
    Other(String),
}

impl ChildFailure {
    /// Docker's exit codes: 127 not found, 126 cannot execute, 125 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            ChildFailure::NotFound(_) => 127,
            ChildFailure::CannotExecute(_) => 126,
            ChildFailure::Other(_) => 125,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ChildFailure::NotFound(m) | ChildFailure::CannotExecute(m) | ChildFailure::Other(m) => {
                m
            }
        }
    }
}

impl std::fmt::Display for ChildFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProcessError {
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("invalid user specification {0:?}")]
    InvalidUser(String),
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UserNotFound(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    GroupNotFound(String),
}

pub(crate) fn errno_text(e: nix::errno::Errno) -> String {
    // Lower-case like Go's syscall error strings, which Docker users see.
    let s = e.desc();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

pub(crate) fn other(msg: impl Into<String>) -> ChildFailure {
    ChildFailure::Other(msg.into())
}

fn set_rlimit(r: &Rlimit) -> Result<(), ChildFailure> {
    let lim = libc::rlimit {
        rlim_cur: r.soft,
        rlim_max: r.hard,
    };
    let mut now = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct we own.
    let held = unsafe { libc::getrlimit(r.resource as _, &mut now) } == 0;
    if held && now.rlim_cur == lim.rlim_cur && now.rlim_max == lim.rlim_max {
        // Set already (by the parent, for an init in a user namespace,
        // which may not raise a hard limit itself).
        return Ok(());
    }
    // SAFETY: setrlimit reads one valid rlimit struct.
    let rc = unsafe { libc::setrlimit(r.resource as _, &lim) };
    if rc != 0 {
        return Err(other(format!(
            "setrlimit {} to {}:{}: {}",
            r.resource,
            r.soft,
            r.hard,
            errno_text(nix::errno::Errno::last())
        )));
    }
    Ok(())
}

pub(crate) fn prctl_flag(
    sys: &impl Sys,
    option: libc::c_int,
    value: u64,
    what: &str,
) -> Result<(), ChildFailure> {
    sys.prctl(option, value, 0)
        .map_err(|e| other(format!("{what}: {}", errno_text(e))))
}

/// Signal state leaks across execve: Rust ignores SIGPIPE, a caller may ignore others (even
/// glibc's reserved 32/33, which its sigaction refuses to touch), and the pty relay blocks
/// SIGWINCH. Give the program the defaults it expects, via the raw syscall for that reason.
/// Runs last before execve: glibc needs its reserved signals for set*id in threaded processes.
fn reset_signals() {
    #[repr(C)]
    struct KernelSigaction {
        handler: libc::c_ulong,
        flags: libc::c_ulong,
        restorer: libc::c_ulong,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL as libc::c_ulong,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL with the kernel's sigaction layout; no handler runs.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
    let empty: u64 = 0;
    // SAFETY: an 8-byte empty kernel sigset for SIG_SETMASK.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
}

/// Mark every fd above stderr close-on-exec so nothing of the runtime leaks into the container
/// (runc GHSA-xr7r-f8xq-vfvv); the sync socket is already CLOEXEC so it keeps working.
fn cloexec_all_fds(from: u32) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // Preserved fds are passed on: they must lose their close-on-exec flag.
    for fd in 3..from {
        // SAFETY: clearing FD_CLOEXEC on an fd number; a stale number just fails with EBADF.
        unsafe { libc::fcntl(fd as i32, libc::F_SETFD, 0) };
    }
    // SAFETY: close_range with the CLOEXEC flag only changes fd flags.
    let r = unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return;
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let fds: Vec<i32> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .filter(|fd| *fd >= from as i32)
            .collect();
        for fd in fds {
            // SAFETY: setting FD_CLOEXEC on an fd number; a stale number just fails with EBADF.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

fn cstrings(v: &[String], what: &str) -> Result<Vec<CString>, ChildFailure> {
    v.iter()
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| other(format!("{what} contains a NUL byte: {s:?}")))
        })
        .collect()
}

/// Called in the child after pivot_root/setns. Resolves the user from the container's
/// /etc/passwd and /etc/group, sets up capabilities (bounding, effective, permitted = the spec's
/// set; inheritable and ambient empty), no_new_privs, chdir(cwd), looks args[0] up in the spec's
/// PATH, tells the parent on `sync` it is about to exec (`ToParent::Ready`), and execs.
/// Returns only on failure (the caller reports it on `sync`).
pub(crate) fn finish_and_exec(
    sys: &impl Sys,
    spec: &ProcessSpec,
    sync: BorrowedFd<'_>,
) -> ChildFailure {
    match prepare_and_exec(sys, spec, sync) {
        Ok(never) => match never {},
        Err(f) => f,
    }
}

/// What `finish_and_exec` would fail on, checked early: the user, the
/// rlimits (set now, they hold for the process), the cwd and the command.
/// The OCI init runs this before it waits for `start`, so `create` reports
/// these errors (as runc does) instead of the container dying at start.
pub(crate) fn preflight(spec: &ProcessSpec) -> Result<(), ChildFailure> {
    let Some(arg0) = spec.args.first() else {
        return Err(other("no command specified"));
    };
    let passwd = parse_passwd(&std::fs::read_to_string("/etc/passwd").unwrap_or_default());
    let groups = parse_group(&std::fs::read_to_string("/etc/group").unwrap_or_default());
    let user = resolve_user(&spec.user, &passwd, &groups).map_err(|e| other(e.to_string()))?;
    for r in &spec.rlimits {
        set_rlimit(r)?;
    }
    let cwd = if spec.cwd.is_empty() {
        "/"
    } else {
        spec.cwd.as_str()
    };
    if !Path::new(cwd).is_dir() {
        return Err(other(format!(
            "chdir to cwd ({cwd:?}) set in config.json failed: no such directory"
        )));
    }
    let env = env_with_home(&spec.env, &user.home);
    lookup_in_path(arg0, path_from_env(&env), probe_file)?;
    Ok(())
}

fn prepare_and_exec(
    sys: &impl Sys,
    spec: &ProcessSpec,
    sync: BorrowedFd<'_>,
) -> Result<std::convert::Infallible, ChildFailure> {
    let Some(arg0) = spec.args.first() else {
        return Err(other("no command specified"));
    };
    // What we do not hold we cannot give (e.g. a host root without CAP_SYS_RESOURCE running
    // --privileged): capset would refuse the whole set.
    let mask =
        capability_mask(&spec.capabilities).map_err(|e| other(e.to_string()))? & permitted_mask();
    // Compiled now, while a bad profile can still be reported plainly.
    let filters = match &spec.seccomp {
        Some(p) => crate::runtime::seccomp::compile(p).map_err(|e| other(e.to_string()))?,
        None => Vec::new(),
    };

    let passwd = parse_passwd(&std::fs::read_to_string("/etc/passwd").unwrap_or_default());
    let groups = parse_group(&std::fs::read_to_string("/etc/group").unwrap_or_default());
    let mut user = resolve_user(&spec.user, &passwd, &groups).map_err(|e| other(e.to_string()))?;
    if let Some(gids) = &spec.additional_gids {
        user.additional_gids = gids.clone();
    }

    let cwd = if spec.cwd.is_empty() {
        "/"
    } else {
        spec.cwd.as_str()
    };
    // As root, before the user switch, so a cwd only root may enter still works (like runc).
    sys.chdir(Path::new(cwd)).map_err(|e| {
        other(format!(
            "chdir to cwd ({cwd:?}) set in config.json failed: {}",
            errno_text(e)
        ))
    })?;

    for r in &spec.rlimits {
        set_rlimit(r)?;
    }
    if let Some(m) = spec.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(m as libc::mode_t));
    }
    // Without no_new_privs only CAP_SYS_ADMIN may install a filter: do it
    // while we still hold it, as runc does (the profile must then allow
    // the few calls that follow).
    if !spec.no_new_privs {
        crate::runtime::seccomp::install(&filters).map_err(|e| other(e.to_string()))?;
    }
    drop_privileges(sys, spec, &user, mask)?;

    let env = env_with_home(&spec.env, &user.home);
    // After the user switch, so execute permission is judged for the target user.
    let path = lookup_in_path(arg0, path_from_env(&env), probe_file)?;
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| other(format!("command contains a NUL byte: {arg0:?}")))?;
    let c_args = cstrings(&spec.args, "argument")?;
    let c_env = cstrings(&env, "environment")?;
    cloexec_all_fds(3 + spec.preserve_fds);
    // The last word before execve, sent before the filter that may forbid
    // it. Nobody may listen (after an OCI start the parent is gone): the
    // send is best effort, a failure after it is still reported.
    let _ = super::protocol::send_to(sync, &super::protocol::ToParent::Ready);
    reset_signals();
    // Last, after the user switch and no_new_privs: nothing of ours runs under the filter
    // but execve itself.
    if spec.no_new_privs {
        crate::runtime::seccomp::install(&filters).map_err(|e| other(e.to_string()))?;
    }
    let e = match nix::unistd::execve(&c_path, &c_args, &c_env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    use nix::errno::Errno;
    let msg = format!("exec: {arg0:?}: {}", errno_text(e));
    Err(match e {
        Errno::ENOENT => ChildFailure::NotFound(msg),
        Errno::EACCES | Errno::EISDIR | Errno::ENOEXEC | Errno::EPERM => {
            ChildFailure::CannotExecute(msg)
        }
        _ => ChildFailure::Other(msg),
    })
}

/// The bounding set, the user switch and the capability sets, then
/// no_new_privs: in this order, because dropping from the bounding set
/// needs CAP_SETPCAP and the switch needs CAP_SETUID/CAP_SETGID, and
/// KEEPCAPS carries the permitted set across a switch away from root.
fn drop_privileges(
    sys: &impl Sys,
    spec: &ProcessSpec,
    user: &super::user::ResolvedUser,
    mask: u64,
) -> Result<(), ChildFailure> {
    drop_bounding(sys, mask)?;
    let switching = user.uid != 0;
    if switching {
        // Keep permitted caps across setuid; the capset below then trims them to the mask.
        prctl_flag(sys, libc::PR_SET_KEEPCAPS, 1, "set keepcaps")?;
    }
    switch_user(sys, user)?;
    if switching {
        prctl_flag(sys, libc::PR_SET_KEEPCAPS, 0, "clear keepcaps")?;
    }
    match &spec.cap_sets {
        None => set_process_caps(sys, mask, mask, 0)?,
        Some(sets) => {
            let held = permitted_mask();
            let m = |names: &Vec<String>| -> Result<u64, ChildFailure> {
                Ok(capability_mask(&Some(names.clone())).map_err(|e| other(e.to_string()))? & held)
            };
            set_process_caps(
                sys,
                m(&sets.effective)?,
                m(&sets.permitted)?,
                m(&sets.inheritable)?,
            )?;
            for name in &sets.ambient {
                for c in parse_capability(name).map_err(|e| other(e.to_string()))? {
                    sys.prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as u64,
                        c.index() as u64,
                    )
                    .map_err(|e| {
                        other(format!("raise ambient capability {c}: {}", errno_text(e)))
                    })?;
                }
            }
        }
    }
    if spec.no_new_privs {
        prctl_flag(sys, libc::PR_SET_NO_NEW_PRIVS, 1, "set no_new_privs")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::sys::{Call, Recorder};

    fn prctl(option: libc::c_int, arg2: u64) -> Call {
        Call::Prctl {
            option,
            arg2,
            arg3: 0,
        }
    }

    #[test]
    fn privileges_drop_bounding_first_then_user_then_caps_then_no_new_privs() {
        let base = tempfile::tempdir().unwrap();
        let sys = Recorder::new(base.path());
        let spec = ProcessSpec {
            capabilities: Some(vec!["CAP_KILL".into(), "CAP_CHOWN".into()]),
            no_new_privs: true,
            ..Default::default()
        };
        let user = super::super::user::ResolvedUser {
            uid: 1000,
            gid: 1001,
            additional_gids: vec![27],
            home: "/home/u".into(),
        };
        let mask = capability_mask(&spec.capabilities).unwrap();
        drop_privileges(&sys, &spec, &user, mask).unwrap();
        let calls = sys.calls();
        let drops = calls
            .iter()
            .take_while(
                |c| matches!(c, Call::Prctl { option, .. } if *option == libc::PR_CAPBSET_DROP),
            )
            .count();
        // Every capability but the two kept leaves the bounding set.
        assert!(drops > 30, "{calls:?}");
        assert!(!calls[..drops].contains(&prctl(libc::PR_CAPBSET_DROP, 5)));
        assert!(!calls[..drops].contains(&prctl(libc::PR_CAPBSET_DROP, 0)));
        assert_eq!(
            calls[drops..],
            [
                prctl(libc::PR_SET_KEEPCAPS, 1),
                Call::Setgroups(vec![27]),
                Call::Setresgid(1001),
                Call::Setresuid(1000),
                prctl(libc::PR_SET_KEEPCAPS, 0),
                Call::Capset {
                    effective: mask,
                    permitted: mask,
                    inheritable: 0
                },
                prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as u64),
                prctl(libc::PR_SET_NO_NEW_PRIVS, 1),
            ]
        );
    }

    #[test]
    fn failures_keep_their_class_across_the_wire() {
        let f = ChildFailure::NotFound("x".into());
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<ChildFailure>(&json).unwrap(), f);
        assert_eq!(f.exit_code(), 127);
        assert_eq!(ChildFailure::CannotExecute("y".into()).exit_code(), 126);
        assert_eq!(ChildFailure::Other("z".into()).exit_code(), 125);
    }
}
