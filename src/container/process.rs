//! The last steps before execve, shared by the container's init and by `exec`:
//! user switch, capabilities, no_new_privs, cwd, PATH lookup, seccomp, and the failure report.

use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::runtime::sys::Sys;
use caps::Capability;

/// Used when the process environment has no PATH (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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

impl From<ChildFailure> for super::ContainerError {
    fn from(f: ChildFailure) -> Self {
        match f {
            ChildFailure::NotFound(m) => super::ContainerError::CommandNotFound(m),
            ChildFailure::CannotExecute(m) => super::ContainerError::CannotExecute(m),
            ChildFailure::Other(m) => super::ContainerError::Runtime(m),
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("invalid user specification {0:?}")]
    InvalidUser(String),
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UserNotFound(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    GroupNotFound(String),
}

/// Docker's default capability set (moby's oci/caps/defaults.go).
pub fn default_capabilities() -> Vec<Capability> {
    use Capability::*;
    vec![
        CAP_CHOWN,
        CAP_DAC_OVERRIDE,
        CAP_FSETID,
        CAP_FOWNER,
        CAP_MKNOD,
        CAP_NET_RAW,
        CAP_SETGID,
        CAP_SETUID,
        CAP_SETFCAP,
        CAP_SETPCAP,
        CAP_NET_BIND_SERVICE,
        CAP_SYS_CHROOT,
        CAP_KILL,
        CAP_AUDIT_WRITE,
    ]
}

/// One --cap-add/--cap-drop word: "NET_ADMIN", "cap_net_admin", or "ALL" (every capability).
pub fn parse_capability(name: &str) -> Result<Vec<Capability>, ProcessError> {
    let trimmed = name.trim();
    if trimmed.eq_ignore_ascii_case("ALL") {
        let mut all: Vec<Capability> = caps::all().into_iter().collect();
        all.sort_by_key(|c| c.index());
        return Ok(all);
    }
    caps::to_canonical(trimmed)
        .parse::<Capability>()
        .map(|c| vec![c])
        .map_err(|_| ProcessError::UnknownCapability(name.to_string()))
}

/// Docker's rule: start from the default set, add, then drop ("ALL" allowed on both sides).
pub fn adjust_capabilities(
    base: &[Capability],
    add: &[String],
    drop: &[String],
) -> Result<Vec<Capability>, ProcessError> {
    let mut set: Vec<Capability> = base.to_vec();
    for a in add {
        for c in parse_capability(a)? {
            if !set.contains(&c) {
                set.push(c);
            }
        }
    }
    for d in drop {
        let gone = parse_capability(d)?;
        set.retain(|c| !gone.contains(c));
    }
    set.sort_by_key(|c| c.index());
    Ok(set)
}

/// The capabilities a spec asks for, as a kernel bitmask.
pub fn capability_mask(spec_caps: &Option<Vec<String>>) -> Result<u64, ProcessError> {
    let list = match spec_caps {
        None => default_capabilities(),
        Some(names) => {
            let mut v = Vec::new();
            for n in names {
                v.extend(parse_capability(n)?);
            }
            v
        }
    };
    Ok(list.iter().fold(0u64, |m, c| m | c.bitmask()))
}

/// A user or group named by number or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdRef {
    Id(u32),
    Name(String),
}

fn id_ref(s: &str) -> IdRef {
    match s.parse::<u32>() {
        Ok(n) => IdRef::Id(n),
        Err(_) => IdRef::Name(s.to_string()),
    }
}

/// Split "user[:group]" (as in `--user`); "" means root.
pub fn parse_user_spec(spec: &str) -> Result<(Option<IdRef>, Option<IdRef>), ProcessError> {
    if spec.is_empty() {
        return Ok((None, None));
    }
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if u.is_empty() || g == Some("") || g.is_some_and(|g| g.contains(':')) {
        return Err(ProcessError::InvalidUser(spec.to_string()));
    }
    Ok((Some(id_ref(u)), g.map(id_ref)))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// /etc/passwd lines "name:pw:uid:gid:gecos:home:shell"; malformed lines are skipped like libc does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// /etc/group lines "name:pw:gid:member,member".
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Who the process becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// runc's rules: a numeric uid need not exist in passwd (gid then defaults to 0, home to "/");
/// a name must; supplementary groups are those listing the user's name, unless a group was given.
pub fn resolve_user(
    spec: &str,
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<ResolvedUser, ProcessError> {
    let (u, g) = parse_user_spec(spec)?;
    let entry = match &u {
        None => passwd.iter().find(|p| p.uid == 0),
        Some(IdRef::Id(n)) => passwd.iter().find(|p| p.uid == *n),
        Some(IdRef::Name(n)) => Some(
            passwd
                .iter()
                .find(|p| &p.name == n)
                .ok_or_else(|| ProcessError::UserNotFound(n.clone()))?,
        ),
    };
    let uid = match (&u, entry) {
        (Some(IdRef::Id(n)), _) => *n,
        (_, Some(e)) => e.uid,
        (None, None) => 0,
        (Some(IdRef::Name(_)), None) => 0, // unreachable: names must resolve above
    };
    let gid = match &g {
        Some(IdRef::Id(n)) => *n,
        Some(IdRef::Name(n)) => {
            groups
                .iter()
                .find(|gr| &gr.name == n)
                .ok_or_else(|| ProcessError::GroupNotFound(n.clone()))?
                .gid
        }
        None => entry.map(|e| e.gid).unwrap_or(0),
    };
    let additional_gids = match (&g, entry) {
        (None, Some(e)) => {
            let mut v: Vec<u32> = groups
                .iter()
                .filter(|gr| gr.members.iter().any(|m| m == &e.name) && gr.gid != gid)
                .map(|gr| gr.gid)
                .collect();
            v.dedup();
            v
        }
        _ => Vec::new(),
    };
    let home = entry
        .map(|e| e.home.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string());
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// runc adds HOME from passwd when the environment has none.
pub fn env_with_home(env: &[String], home: &str) -> Vec<String> {
    let mut out = env.to_vec();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        out.push(format!("HOME={home}"));
    }
    out
}

/// PATH from the process environment (not ours), or Docker's default.
pub fn path_from_env(env: &[String]) -> &str {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
}

/// What a candidate file is, for the PATH search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Missing,
    NotExecutable,
    Executable,
}

/// Go's exec.LookPath (which runc uses): a name with a slash is used as is; otherwise each
/// PATH entry in order ("" means "."), first executable regular file wins.
pub fn lookup_in_path(
    name: &str,
    path_var: &str,
    probe: impl Fn(&Path) -> Probe,
) -> Result<PathBuf, ChildFailure> {
    if name.is_empty() {
        return Err(ChildFailure::NotFound(
            "exec: \"\": executable file not found in $PATH".to_string(),
        ));
    }
    if name.contains('/') {
        return match probe(Path::new(name)) {
            Probe::Executable => Ok(PathBuf::from(name)),
            Probe::NotExecutable => Err(ChildFailure::CannotExecute(format!(
                "exec: \"{name}\": permission denied"
            ))),
            Probe::Missing => Err(ChildFailure::NotFound(format!(
                "exec: \"{name}\": stat {name}: no such file or directory"
            ))),
        };
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(name);
        if probe(&cand) == Probe::Executable {
            return Ok(cand);
        }
    }
    Err(ChildFailure::NotFound(format!(
        "exec: \"{name}\": executable file not found in $PATH"
    )))
}

/// The real probe: a regular file (after symlinks) with any execute bit.
pub fn probe_file(p: &Path) -> Probe {
    match std::fs::metadata(p) {
        Err(_) => Probe::Missing,
        Ok(m) if m.is_dir() || m.permissions().mode() & 0o111 == 0 => Probe::NotExecutable,
        Ok(_) => Probe::Executable,
    }
}

fn errno_text(e: nix::errno::Errno) -> String {
    // Lower-case like Go's syscall error strings, which Docker users see.
    let s = e.desc();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn other(msg: impl Into<String>) -> ChildFailure {
    ChildFailure::Other(msg.into())
}

/// Drop every capability outside `mask` from the bounding set (needs CAP_SETPCAP, so first).
fn drop_bounding(sys: &impl Sys, mask: u64) -> Result<(), ChildFailure> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    for cap in 0..=last.min(63) {
        if mask & (1u64 << cap) != 0 {
            continue;
        }
        match sys.prctl(libc::PR_CAPBSET_DROP, cap as u64, 0) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => {
                return Err(other(format!(
                    "drop capability {cap} from bounding set: {}",
                    errno_text(e)
                )))
            }
        }
    }
    Ok(())
}

/// Our own permitted capabilities as a bitmask (all bits when unreadable: capset decides).
fn permitted_mask() -> u64 {
    caps::read(None, caps::CapSet::Permitted)
        .map(|set| set.iter().fold(0u64, |m, c| m | c.bitmask()))
        .unwrap_or(u64::MAX)
}

/// The three sets in one capset call; ambient cleared.
fn set_process_caps(
    sys: &impl Sys,
    effective: u64,
    permitted: u64,
    inheritable: u64,
) -> Result<(), ChildFailure> {
    sys.capset(effective, permitted, inheritable)
        .map_err(|e| other(format!("set capabilities: {}", errno_text(e))))?;
    match sys.prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as u64,
        0,
    ) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) => Ok(()),
        Err(e) => Err(other(format!(
            "clear ambient capabilities: {}",
            errno_text(e)
        ))),
    }
}

fn set_rlimit(r: &Rlimit) -> Result<(), ChildFailure> {
    let lim = libc::rlimit {
        rlim_cur: r.soft,
        rlim_max: r.hard,
    };
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

fn prctl_flag(
    sys: &impl Sys,
    option: libc::c_int,
    value: u64,
    what: &str,
) -> Result<(), ChildFailure> {
    sys.prctl(option, value, 0)
        .map_err(|e| other(format!("{what}: {}", errno_text(e))))
}

fn switch_user(sys: &impl Sys, u: &ResolvedUser) -> Result<(), ChildFailure> {
    sys.setgroups(&u.additional_gids)
        .map_err(|e| other(format!("setgroups: {}", errno_text(e))))?;
    sys.setresgid(u.gid)
        .map_err(|e| other(format!("setgid {}: {}", u.gid, errno_text(e))))?;
    sys.setresuid(u.uid)
        .map_err(|e| other(format!("setuid {}: {}", u.uid, errno_text(e))))?;
    Ok(())
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
/// (runc GHSA-xr7r-f8xq-vfvv); the failure pipe is already CLOEXEC so it keeps working.
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
/// PATH, and execs. Returns only on failure.
pub fn finish_and_exec(sys: &impl Sys, spec: &ProcessSpec) -> ChildFailure {
    match prepare_and_exec(sys, spec) {
        Ok(never) => match never {},
        Err(f) => f,
    }
}

/// What `finish_and_exec` would fail on, checked early: the user, the
/// rlimits (set now, they hold for the process), the cwd and the command.
/// The OCI init runs this before it waits for `start`, so `create` reports
/// these errors (as runc does) instead of the container dying at start.
pub fn preflight(spec: &ProcessSpec) -> Result<(), ChildFailure> {
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
        Some(p) => super::seccomp::compile(p).map_err(|e| other(e.to_string()))?,
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
        super::seccomp::install(&filters).map_err(|e| other(e.to_string()))?;
    }
    drop_bounding(sys, mask)?;
    let switching = user.uid != 0;
    if switching {
        // Keep permitted caps across setuid; the capset below then trims them to the mask.
        prctl_flag(sys, libc::PR_SET_KEEPCAPS, 1, "set keepcaps")?;
    }
    switch_user(sys, &user)?;
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

    let env = env_with_home(&spec.env, &user.home);
    // After the user switch, so execute permission is judged for the target user.
    let path = lookup_in_path(arg0, path_from_env(&env), probe_file)?;
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| other(format!("command contains a NUL byte: {arg0:?}")))?;
    let c_args = cstrings(&spec.args, "argument")?;
    let c_env = cstrings(&env, "environment")?;
    cloexec_all_fds(3 + spec.preserve_fds);
    reset_signals();
    // Last, after the user switch and no_new_privs: nothing of ours runs under the filter
    // but execve itself.
    if spec.no_new_privs {
        super::seccomp::install(&filters).map_err(|e| other(e.to_string()))?;
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

/// Child side: send the failure to the parent over the (CLOEXEC) pipe. Best effort: the exit
/// code still carries the class when the pipe is gone.
pub fn report_failure(fd: BorrowedFd<'_>, failure: &ChildFailure) {
    let Ok(buf) = serde_json::to_vec(failure) else {
        return;
    };
    let mut off = 0;
    while off < buf.len() {
        match nix::unistd::write(fd, &buf[off..]) {
            Ok(n) if n > 0 => off += n,
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return,
        }
    }
}

/// Parent side: read the pipe to EOF (EOF alone = the child reached execve).
pub fn read_failure(fd: OwnedFd) -> std::io::Result<Option<ChildFailure>> {
    let mut file = std::fs::File::from(fd);
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    if buf.is_empty() {
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(&buf).unwrap_or_else(|_| {
        ChildFailure::Other(format!(
            "container process failed: {}",
            String::from_utf8_lossy(&buf)
        ))
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
        # comment\n\
        broken line\n\
        www-data:x:33:33:www-data:/var/www:/bin/false\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
        nohome:x:1000:1000::\n";
    const GROUP: &str = "root:x:0:\n\
        daemon:x:1:\n\
        wheel:x:10:root,www-data\n\
        www-data:x:33:\n\
        audio:x:29:www-data\n\
        staff:x:50:\n";

    fn resolve(spec: &str) -> Result<ResolvedUser, ProcessError> {
        resolve_user(spec, &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    #[test]
    fn parses_passwd_and_group_skipping_garbage() {
        let p = parse_passwd(PASSWD);
        assert_eq!(p.len(), 5);
        assert_eq!(p[2].name, "www-data");
        assert_eq!((p[2].uid, p[2].gid), (33, 33));
        assert_eq!(p[2].home, "/var/www");
        let g = parse_group(GROUP);
        assert_eq!(g[2].members, vec!["root", "www-data"]);
        assert!(g[0].members.is_empty());
    }

    #[test]
    fn user_spec_forms() {
        assert_eq!(parse_user_spec("").unwrap(), (None, None));
        assert_eq!(
            parse_user_spec("1000").unwrap(),
            (Some(IdRef::Id(1000)), None)
        );
        assert_eq!(
            parse_user_spec("app:staff").unwrap(),
            (
                Some(IdRef::Name("app".into())),
                Some(IdRef::Name("staff".into()))
            )
        );
        assert!(parse_user_spec(":5").is_err());
        assert!(parse_user_spec("5:").is_err());
        assert!(parse_user_spec("1:2:3").is_err());
    }

    #[test]
    fn resolves_users_like_runc() {
        let root = resolve("").unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        assert_eq!(root.additional_gids, vec![10]);

        let www = resolve("www-data").unwrap();
        assert_eq!((www.uid, www.gid), (33, 33));
        assert_eq!(www.additional_gids, vec![10, 29]);

        // Numeric uid unknown to passwd: gid 0, home "/".
        let n = resolve("4242").unwrap();
        assert_eq!(
            (n.uid, n.gid, n.home.as_str(), n.additional_gids.len()),
            (4242, 0, "/", 0)
        );

        // Explicit group replaces the primary group and the supplementary list.
        let g = resolve("33:staff").unwrap();
        assert_eq!((g.uid, g.gid), (33, 50));
        assert!(g.additional_gids.is_empty());
        assert_eq!(resolve("nobody:7").unwrap().gid, 7);
        assert_eq!(resolve("nohome").unwrap().home, "/");

        assert_eq!(
            resolve("nope").unwrap_err().to_string(),
            "unable to find user nope: no matching entries in passwd file"
        );
        assert_eq!(
            resolve("root:nogroup").unwrap_err(),
            ProcessError::GroupNotFound("nogroup".into())
        );
        // No passwd file at all: root and numeric ids still work.
        assert_eq!(resolve_user("", &[], &[]).unwrap().uid, 0);
        assert_eq!(resolve_user("5:6", &[], &[]).unwrap().gid, 6);
    }

    #[test]
    fn path_lookup_follows_go_rules() {
        let files = |p: &Path| match p.to_str().unwrap() {
            "/usr/bin/sh" | "/bin/sh" | "./local" => Probe::Executable,
            "/usr/bin/data" | "/etc" => Probe::NotExecutable,
            _ => Probe::Missing,
        };
        let path = "/usr/local/bin:/usr/bin:/bin";
        assert_eq!(
            lookup_in_path("sh", path, files).unwrap(),
            PathBuf::from("/usr/bin/sh")
        );
        assert_eq!(
            lookup_in_path("sh", "/bin:/usr/bin", files).unwrap(),
            PathBuf::from("/bin/sh")
        );
        // A non-executable match is skipped, and in the end it is "not found".
        assert_eq!(
            lookup_in_path("data", path, files).unwrap_err(),
            ChildFailure::NotFound("exec: \"data\": executable file not found in $PATH".into())
        );
        assert_eq!(
            lookup_in_path("local", "/bin::/usr/bin", files).unwrap(),
            PathBuf::from("./local")
        );
        let dir = lookup_in_path("/etc", path, files).unwrap_err();
        assert_eq!(
            dir,
            ChildFailure::CannotExecute("exec: \"/etc\": permission denied".into())
        );
        assert_eq!(dir.exit_code(), 126);
        let missing = lookup_in_path("/nope", path, files).unwrap_err();
        assert_eq!(missing.exit_code(), 127);
        assert_eq!(
            lookup_in_path("nope", path, files).unwrap_err().exit_code(),
            127
        );
    }

    #[test]
    fn path_and_home_come_from_the_spec_env() {
        let env = vec!["A=1".to_string(), "PATH=/x:/y".to_string()];
        assert_eq!(path_from_env(&env), "/x:/y");
        assert_eq!(path_from_env(&[]), DEFAULT_PATH);
        assert_eq!(env_with_home(&env, "/root").last().unwrap(), "HOME=/root");
        let with = vec!["HOME=/h".to_string()];
        assert_eq!(env_with_home(&with, "/root"), with);
    }

    #[test]
    fn capability_names_parse_like_docker_flags() {
        assert_eq!(
            parse_capability("NET_ADMIN").unwrap(),
            vec![Capability::CAP_NET_ADMIN]
        );
        assert_eq!(
            parse_capability("cap_net_admin").unwrap(),
            vec![Capability::CAP_NET_ADMIN]
        );
        assert_eq!(parse_capability("ALL").unwrap().len(), caps::all().len());
        assert!(matches!(
            parse_capability("FLY"),
            Err(ProcessError::UnknownCapability(_))
        ));

        let d = default_capabilities();
        assert_eq!(d.len(), 14);
        let adj = adjust_capabilities(&d, &["NET_ADMIN".into()], &["CHOWN".into(), "MKNOD".into()])
            .unwrap();
        assert_eq!(adj.len(), 13);
        assert!(adj.contains(&Capability::CAP_NET_ADMIN) && !adj.contains(&Capability::CAP_CHOWN));
        assert!(adjust_capabilities(&d, &[], &["all".into()])
            .unwrap()
            .is_empty());
        assert_eq!(
            adjust_capabilities(&[], &["ALL".into()], &["SYS_ADMIN".into()])
                .unwrap()
                .len(),
            caps::all().len() - 1
        );

        let m = capability_mask(&None).unwrap();
        assert_eq!(m.count_ones(), 14);
        assert_ne!(m & Capability::CAP_KILL.bitmask(), 0);
        assert_eq!(
            capability_mask(&Some(vec!["CAP_KILL".into()])).unwrap(),
            1 << 5
        );
    }

    #[test]
    fn failures_map_to_container_errors() {
        use crate::container::ContainerError;
        let f = ChildFailure::NotFound("x".into());
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<ChildFailure>(&json).unwrap(), f);
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
    fn failure_travels_over_a_pipe() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let f = ChildFailure::CannotExecute("exec: \"/etc\": permission denied".into());
        report_failure(std::os::fd::AsFd::as_fd(&w), &f);
        drop(w);
        assert_eq!(read_failure(r).unwrap(), Some(f));
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        drop(w);
        assert_eq!(read_failure(r).unwrap(), None);
    }
}
