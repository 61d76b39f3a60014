//! What a config.json asks of the executor, read as plain data: which
//! namespaces to make or join, the process to become, sysctls, the default
//! devices, and the parts this runtime cannot honour (refused by name, never
//! dropped). Pure but for the three `apply_*` helpers the child calls.

use super::process::{CapSets, ProcessSpec, Rlimit};
use crate::container::spec::{spec_capabilities, USER_ANNOTATION};
use nix::sched::CloneFlags;
use oci_spec::runtime::{
    Capabilities, LinuxDevice, LinuxDeviceBuilder, LinuxDeviceType, LinuxNamespaceType,
    PosixRlimitType, Spec,
};
use std::collections::BTreeSet;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;

/// The spec versions this runtime reads: 1.x (the JSON layout is stable
/// within a major version).
pub(crate) fn check_version(v: &str) -> Result<(), String> {
    let major = v.split('.').next().unwrap_or("");
    if major == "1" && v.split('.').count() >= 2 {
        Ok(())
    } else {
        Err(format!(
            "unsupported ociVersion {v:?}: this runtime implements runtime-spec 1.x"
        ))
    }
}

/// How the executor gets its namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NsPlan {
    /// New namespaces made by clone(2).
    pub clone: CloneFlags,
    /// Namespaces joined by path (setns), in spec order.
    pub join: Vec<(CloneFlags, PathBuf)>,
    /// A new cgroup namespace, unshared after the cgroup is joined.
    pub cgroupns: bool,
}

fn ns_flag(t: LinuxNamespaceType) -> Option<CloneFlags> {
    Some(match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Time => return None,
    })
}

pub(crate) fn ns_plan(spec: &Spec) -> Result<NsPlan, String> {
    let mut plan = NsPlan {
        clone: CloneFlags::empty(),
        join: Vec::new(),
        cgroupns: false,
    };
    let list = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    for ns in &list {
        let name = ns.typ().to_string();
        if !seen.insert(name.clone()) {
            return Err(format!("namespace {name} is listed twice"));
        }
        let flag =
            ns_flag(ns.typ()).ok_or_else(|| format!("not implemented: {name} namespaces"))?;
        match ns.path() {
            Some(p) if flag == CloneFlags::CLONE_NEWNS => {
                return Err(format!(
                    "not implemented: joining a mount namespace ({})",
                    p.display()
                ))
            }
            Some(p) if flag == CloneFlags::CLONE_NEWUSER => {
                return Err(format!(
                    "not implemented: joining a user namespace ({})",
                    p.display()
                ))
            }
            Some(p) if flag == CloneFlags::CLONE_NEWCGROUP => plan.join.push((flag, p.clone())),
            Some(p) => plan.join.push((flag, p.clone())),
            None if flag == CloneFlags::CLONE_NEWCGROUP => plan.cgroupns = true,
            None => plan.clone |= flag,
        }
    }
    if plan.clone.contains(CloneFlags::CLONE_NEWUSER) && !plan.join.is_empty() {
        // The init would join them after it left the host's user namespace,
        // without the capabilities setns needs there.
        return Err(
            "not implemented: joining namespaces by path together with a new user namespace".into(),
        );
    }
    if !plan.clone.contains(CloneFlags::CLONE_NEWNS) {
        return Err(
            "the spec must ask for a new mount namespace (a rootfs cannot be set up in the host's)"
                .into(),
        );
    }
    Ok(plan)
}

/// Sysctls a container may set: those of namespaces it has of its own.
pub(crate) fn check_sysctls(spec: &Spec, plan: &NsPlan) -> Result<(), String> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().clone()) else {
        return Ok(());
    };
    let own_net = plan.clone.contains(CloneFlags::CLONE_NEWNET)
        || plan
            .join
            .iter()
            .any(|(f, _)| *f == CloneFlags::CLONE_NEWNET);
    let own = |f: CloneFlags| plan.clone.contains(f) || plan.join.iter().any(|(g, _)| *g == f);
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    for key in map.keys() {
        let ok = if IPC.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
            own(CloneFlags::CLONE_NEWIPC)
        } else if key.starts_with("net.") {
            own_net
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            own(CloneFlags::CLONE_NEWUTS)
        } else {
            false
        };
        if !ok {
            return Err(format!(
                "sysctl {key:?} is not allowed: not in a namespace of the container's own"
            ));
        }
        if key.contains("..") || key.contains('/') {
            return Err(format!("invalid sysctl name {key:?}"));
        }
    }
    Ok(())
}

/// A hostname needs a UTS namespace of the container's own: set in the
/// host's, it would rename the host.
pub(crate) fn check_hostname(spec: &Spec, plan: &NsPlan) -> Result<(), String> {
    let named = spec.hostname().as_ref().is_some_and(|h| !h.is_empty());
    let own = plan.clone.contains(CloneFlags::CLONE_NEWUTS)
        || plan
            .join
            .iter()
            .any(|(f, _)| *f == CloneFlags::CLONE_NEWUTS);
    if named && !own {
        return Err("the spec sets a hostname but has no UTS namespace of its own".into());
    }
    Ok(())
}

/// Child side, before pivot_root: namespaced sysctls through /proc/sys.
pub(crate) fn apply_sysctls(spec: &Spec) -> Result<(), String> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().clone()) else {
        return Ok(());
    };
    for (k, v) in map {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        std::fs::write(&path, v.as_bytes()).map_err(|e| format!("sysctl {k}={v}: {e}"))?;
    }
    Ok(())
}

pub(crate) fn apply_oom_score_adj(spec: &Spec) -> Result<(), String> {
    let Some(adj) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) else {
        return Ok(());
    };
    std::fs::write("/proc/self/oom_score_adj", adj.to_string())
        .map_err(|e| format!("setting oom_score_adj to {adj}: {e}"))
}

/// `process.consoleSize` on a new pty; best effort (a zero size is no size).
pub(crate) fn apply_console_size(spec: &Spec, master: BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    let Some(b) = spec.process().as_ref().and_then(|p| p.console_size()) else {
        return;
    };
    let ws = libc::winsize {
        ws_row: b.height() as u16,
        ws_col: b.width() as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

fn rlimit_number(t: PosixRlimitType) -> u32 {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

fn cap_names(set: &Option<Capabilities>) -> Vec<String> {
    let mut v: Vec<String> = set
        .iter()
        .flatten()
        .filter_map(|c| match serde_json::to_value(c) {
            Ok(serde_json::Value::String(s)) => Some(s),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// The process the container's init becomes. minirt's own specs carry the
/// user as typed (`-u name`, resolved inside the rootfs) in an annotation;
/// any other spec gives numeric ids, additionalGids and umask.
pub(crate) fn process_spec(spec: &Spec) -> Result<ProcessSpec, String> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| "the spec has no process".to_string())?;
    let annotated = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(USER_ANNOTATION).cloned());
    let u = process.user();
    let (user, additional_gids, umask) = match annotated {
        Some(user) => (user, None, None),
        None => (
            format!("{}:{}", u.uid(), u.gid()),
            Some(u.additional_gids().clone().unwrap_or_default()),
            u.umask(),
        ),
    };
    let capabilities = spec_capabilities(spec);
    let cap_sets = process.capabilities().as_ref().map(|c| CapSets {
        effective: cap_names(c.effective()),
        permitted: cap_names(c.permitted()),
        inheritable: cap_names(c.inheritable()),
        ambient: cap_names(c.ambient()),
    });
    let rlimits = process
        .rlimits()
        .iter()
        .flatten()
        .map(|r| Rlimit {
            resource: rlimit_number(r.typ()),
            soft: r.soft(),
            hard: r.hard(),
        })
        .collect();
    Ok(ProcessSpec {
        args: process.args().clone().unwrap_or_default(),
        env: process.env().clone().unwrap_or_default(),
        cwd: process.cwd().to_string_lossy().into_owned(),
        user,
        capabilities,
        no_new_privs: process.no_new_privileges().unwrap_or(false),
        seccomp: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
        additional_gids,
        umask,
        rlimits,
        preserve_fds: 0,
        cap_sets,
    })
}

/// (path, major, minor) of the device nodes every container gets.
pub(crate) const DEFAULT_DEVICES: &[(&str, i64, i64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// [`DEFAULT_DEVICES`] as spec entries: character devices, mode 0666,
/// owned by root. minirt's own specs start from these; an OCI bundle's get
/// them added by [`with_default_devices`].
pub(crate) fn default_devices() -> Result<Vec<LinuxDevice>, String> {
    DEFAULT_DEVICES
        .iter()
        .map(|(path, major, minor)| {
            LinuxDeviceBuilder::default()
                .path(*path)
                .typ(LinuxDeviceType::C)
                .major(*major)
                .minor(*minor)
                .file_mode(0o666u32)
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// runc's rule: every container gets the standard device nodes, whatever
/// the spec lists (its own entries win for the same path).
pub(crate) fn with_default_devices(spec: &mut Spec) -> Result<(), String> {
    let Some(linux) = spec.linux_mut() else {
        return Ok(());
    };
    let mut devices = linux.devices().clone().unwrap_or_default();
    for d in default_devices()? {
        if !devices.iter().any(|have| have.path() == d.path()) {
            devices.push(d);
        }
    }
    linux.set_devices(Some(devices));
    Ok(())
}

/// Parts of a spec this runtime does not implement: one clear refusal each.
pub(crate) fn check_unsupported(spec: &Spec) -> Result<(), String> {
    let no = |what: &str| Err(format!("not implemented: {what}"));
    if let Some(l) = spec.linux() {
        if l.personality().is_some() {
            return no("linux.personality");
        }
        if l.intel_rdt().is_some() {
            return no("linux.intelRdt");
        }
        crate::rootfs::mount::root_propagation(spec)?;
        if let Some(r) = l.resources() {
            if r.hugepage_limits().as_ref().is_some_and(|v| !v.is_empty()) {
                return no("linux.resources.hugepageLimits");
            }
            if r.block_io().is_some() {
                return no("linux.resources.blockIO");
            }
            if r.network().is_some() {
                return no("linux.resources.network");
            }
            if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
                return no("linux.resources.rdma");
            }
            if r.unified().as_ref().is_some_and(|m| !m.is_empty()) {
                return no("linux.resources.unified (cgroup v2 keys)");
            }
        }
    }
    if let Some(p) = spec.process() {
        if p.apparmor_profile().as_ref().is_some_and(|s| !s.is_empty()) {
            return no("process.apparmorProfile");
        }
        if p.selinux_label().as_ref().is_some_and(|s| !s.is_empty()) {
            return no("process.selinuxLabel");
        }
        if p.io_priority().is_some() {
            return no("process.ioPriority");
        }
        if p.scheduler().is_some() {
            return no("process.scheduler");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        let mut base = serde_json::to_value(Spec::default()).unwrap();
        merge(&mut base, json);
        serde_json::from_value(base).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    #[test]
    fn versions_of_the_1_x_spec_are_read() {
        for v in ["1.0.0", "1.0.2-dev", "1.2.0"] {
            assert!(check_version(v).is_ok(), "{v}");
        }
        for v in ["0.9.0", "2.0.0", "", "1"] {
            assert!(check_version(v)
                .unwrap_err()
                .contains("unsupported ociVersion"));
        }
    }

    #[test]
    fn namespaces_split_into_new_and_joined() {
        let s = spec(serde_json::json!({"linux": {"namespaces": [
            {"type": "pid"}, {"type": "network", "path": "/run/netns/x"},
            {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}]}}));
        let p = ns_plan(&s).unwrap();
        assert_eq!(
            p.clone,
            CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWIPC
                | CloneFlags::CLONE_NEWUTS
                | CloneFlags::CLONE_NEWNS
        );
        assert_eq!(
            p.join,
            vec![(CloneFlags::CLONE_NEWNET, PathBuf::from("/run/netns/x"))]
        );
        assert!(p.cgroupns);
    }

    #[test]
    fn joined_user_namespaces_and_no_mount_namespace_are_refused() {
        let s = spec(serde_json::json!({"linux": {"namespaces": [
            {"type": "user"}, {"type": "mount"}]}}));
        assert!(ns_plan(&s)
            .unwrap()
            .clone
            .contains(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS));
        let s = spec(serde_json::json!({"linux": {"namespaces": [
            {"type": "user", "path": "/proc/1/ns/user"}, {"type": "mount"}]}}));
        assert!(ns_plan(&s)
            .unwrap_err()
            .contains("joining a user namespace"));
        let s = spec(serde_json::json!({"linux": {"namespaces": [
            {"type": "user"}, {"type": "mount"}, {"type": "network", "path": "/run/netns/x"}]}}));
        assert!(ns_plan(&s)
            .unwrap_err()
            .contains("together with a new user namespace"));
        let s = spec(serde_json::json!({"linux": {"namespaces": [{"type": "pid"}]}}));
        assert!(ns_plan(&s).unwrap_err().contains("mount namespace"));
        let s = spec(serde_json::json!({"linux": {"namespaces": [
            {"type": "mount"}, {"type": "mount"}]}}));
        assert!(ns_plan(&s).unwrap_err().contains("twice"));
    }

    #[test]
    fn a_hostname_needs_its_own_uts_namespace() {
        let s = spec(serde_json::json!({"hostname": "h",
            "linux": {"namespaces": [{"type": "mount"}]}}));
        assert!(check_hostname(&s, &ns_plan(&s).unwrap()).is_err());
        let s = spec(serde_json::json!({"hostname": "h",
            "linux": {"namespaces": [{"type": "mount"}, {"type": "uts"}]}}));
        assert!(check_hostname(&s, &ns_plan(&s).unwrap()).is_ok());
    }

    #[test]
    fn sysctls_need_a_namespace_of_their_own() {
        let s = spec(serde_json::json!({"linux": {
            "namespaces": [{"type": "mount"}, {"type": "ipc"}],
            "sysctl": {"kernel.shmmax": "1000"}}}));
        assert!(check_sysctls(&s, &ns_plan(&s).unwrap()).is_ok());
        let s = spec(serde_json::json!({"linux": {
            "namespaces": [{"type": "mount"}, {"type": "ipc"}],
            "sysctl": {"net.ipv4.ip_forward": "1"}}}));
        assert!(check_sysctls(&s, &ns_plan(&s).unwrap()).is_err());
        let s = spec(serde_json::json!({"linux": {
            "namespaces": [{"type": "mount"}, {"type": "network"}],
            "sysctl": {"kernel.panic": "1"}}}));
        assert!(check_sysctls(&s, &ns_plan(&s).unwrap()).is_err());
    }

    #[test]
    fn process_carries_ids_umask_rlimits_and_capabilities() {
        let s = spec(serde_json::json!({"process": {
            "args": ["sh"], "cwd": "/w", "env": ["A=1"], "noNewPrivileges": true,
            "user": {"uid": 7, "gid": 8, "umask": 18, "additionalGids": [9, 10]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 100, "soft": 50}],
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                             "permitted": ["CAP_KILL"]}}}));
        let p = process_spec(&s).unwrap();
        assert_eq!(p.user, "7:8");
        assert_eq!(p.additional_gids, Some(vec![9, 10]));
        assert_eq!(p.umask, Some(18));
        assert_eq!(p.cwd, "/w");
        assert!(p.no_new_privs);
        assert_eq!(p.capabilities, Some(vec!["CAP_KILL".to_string()]));
        assert_eq!(
            p.rlimits,
            vec![Rlimit {
                resource: libc::RLIMIT_NOFILE,
                soft: 50,
                hard: 100
            }]
        );
        let s = spec(serde_json::json!({"process": {"capabilities": {
            "bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL"], "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]}}}));
        let sets = process_spec(&s).unwrap().cap_sets.unwrap();
        assert_eq!(sets.ambient, vec!["CAP_KILL".to_string()]);
        assert_eq!(sets.inheritable, vec!["CAP_KILL".to_string()]);
    }

    #[test]
    fn default_devices_are_added_once() {
        let mut s = spec(serde_json::json!({"linux": {"devices": [
            {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 438}]}}));
        with_default_devices(&mut s).unwrap();
        let devs = s.linux().as_ref().unwrap().devices().clone().unwrap();
        assert_eq!(devs.len(), DEFAULT_DEVICES.len());
        assert_eq!(
            devs.iter()
                .filter(|d| d.path().as_os_str() == "/dev/null")
                .count(),
            1
        );
    }

    #[test]
    fn what_is_not_implemented_is_named() {
        let s = spec(serde_json::json!({"linux": {"personality": {"domain": "LINUX32"}}}));
        assert!(check_unsupported(&s).unwrap_err().contains("personality"));
        let s = spec(serde_json::json!({"linux": {"rootfsPropagation": "shared"}}));
        assert!(check_unsupported(&s)
            .unwrap_err()
            .contains("rootfsPropagation"));
        assert!(check_unsupported(&Spec::default()).is_ok());
    }
}
