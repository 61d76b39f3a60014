//! Builds the OCI runtime Spec a container runs with, from its config.
//! Pure (but for `--privileged`, which lists the host's /dev): the low-level
//! executor (`init.rs`) runs from this Spec alone.

use super::config::{ContainerConfig, SeccompMode};
use crate::runtime::caps::{adjust_capabilities, default_capabilities};
use crate::runtime::seccomp;
use crate::runtime::spec::DEFAULT_DEVICES;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilities, LinuxCapabilitiesBuilder,
    LinuxCpuBuilder, LinuxDevice, LinuxDeviceBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResourcesBuilder, LinuxSeccomp, Mount, MountBuilder, ProcessBuilder,
    RootBuilder, Spec, UserBuilder,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Annotation carrying the `-u` value verbatim (names resolve inside the rootfs).
pub(crate) const USER_ANNOTATION: &str = "io.minirt.user";
pub(crate) const CPU_PERIOD: u64 = 100_000;

/// Host-side files bind-mounted over /etc/hosts, /etc/resolv.conf, /etc/hostname.
#[derive(Debug, Clone)]
pub struct EtcFiles {
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
    pub hostname: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("building the OCI spec: {0}")]
pub struct SpecError(String);

fn err(e: impl std::fmt::Display) -> SpecError {
    SpecError(e.to_string())
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(err)
}

/// The standard filesystems of a Docker container (no cgroupfs yet); /sys is
/// read-only unless privileged.
fn base_mounts(privileged: bool) -> Result<Vec<Mount>, SpecError> {
    let sys_mode = if privileged { "rw" } else { "ro" };
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        )?,
    ])
}

/// runc's default masked paths.
pub(crate) const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's default read-only paths.
pub(crate) const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The container's capability set, names like "CAP_CHOWN": Docker's default adjusted by
/// --cap-add / --cap-drop, or every capability when privileged.
pub fn capabilities(cfg: &ContainerConfig) -> Result<Vec<String>, SpecError> {
    let set = if cfg.privileged {
        adjust_capabilities(&[], &["ALL".to_string()], &[])
    } else {
        adjust_capabilities(&default_capabilities(), &cfg.cap_add, &cfg.cap_drop)
    };
    Ok(set.map_err(err)?.iter().map(|c| c.to_string()).collect())
}

/// The seccomp profile for a process holding `caps`; None = unconfined (privileged too).
pub fn seccomp_profile(cfg: &ContainerConfig, caps: &[String]) -> Option<LinuxSeccomp> {
    if cfg.privileged {
        return None;
    }
    match &cfg.seccomp {
        SeccompMode::Default => Some(seccomp::default_profile(caps)),
        SeccompMode::Unconfined => None,
        SeccompMode::Profile(p) => Some((**p).clone()),
    }
}

fn oci_capabilities(names: &[String]) -> Result<LinuxCapabilities, SpecError> {
    let set: Capabilities = names
        .iter()
        .map(|n| serde_json::from_value::<Capability>(serde_json::Value::String(n.clone())))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(set.clone())
        .permitted(set)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()
        .map_err(err)
}

/// The names of the bounding set of a spec's process (what `init` applies); None when the
/// spec does not say (the executor then uses Docker's default set).
pub(crate) fn spec_capabilities(spec: &Spec) -> Option<Vec<String>> {
    let bounding = spec
        .process()
        .as_ref()?
        .capabilities()
        .as_ref()?
        .bounding()
        .as_ref()?;
    let mut names: Vec<String> = bounding
        .iter()
        .filter_map(|c| match serde_json::to_value(c) {
            Ok(serde_json::Value::String(s)) => Some(s),
            _ => None,
        })
        .collect();
    names.sort();
    Some(names)
}

/// Every character and block device under `dev` (what `--privileged` gives), skipping the
/// ones every container gets anyway and the pty/shm/mqueue mounts of its own.
pub(crate) fn host_devices(dev: &Path) -> Vec<LinuxDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut dirs = vec![dev.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            let name = e.file_name();
            let skip_dir = ["pts", "shm", "mqueue", "fd"].iter().any(|s| name == *s);
            if ft.is_dir() && !skip_dir {
                dirs.push(path);
                continue;
            }
            let typ = if ft.is_char_device() {
                LinuxDeviceType::C
            } else if ft.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            let Ok(rel) = path.strip_prefix(dev) else {
                continue;
            };
            let in_ctr = Path::new("/dev").join(rel);
            if in_ctr == Path::new("/dev/ptmx")
                || DEFAULT_DEVICES
                    .iter()
                    .any(|(p, _, _)| Path::new(p) == in_ctr)
            {
                continue;
            }
            let rdev = meta.rdev();
            let built = LinuxDeviceBuilder::default()
                .path(in_ctr)
                .typ(typ)
                .major(nix::sys::stat::major(rdev) as i64)
                .minor(nix::sys::stat::minor(rdev) as i64)
                .file_mode(meta.mode() & 0o7777)
                .uid(meta.uid())
                .gid(meta.gid())
                .build();
            if let Ok(d) = built {
                out.push(d);
            }
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

pub fn build(
    cfg: &ContainerConfig,
    rootfs: &Path,
    etc: Option<&EtcFiles>,
    cgroups_path: &str,
) -> Result<Spec, SpecError> {
    let mut mounts = base_mounts(cfg.privileged)?;
    if let Some(size) = cfg.shm_size {
        let size = format!("size={}k", (size + 1023) / 1024);
        for m in mounts
            .iter_mut()
            .filter(|m| m.destination() == Path::new("/dev/shm"))
        {
            *m = mount(
                "/dev/shm",
                "tmpfs",
                "shm",
                &["nosuid", "noexec", "nodev", "mode=1777", &size],
            )?;
        }
    }
    if let Some(etc) = etc {
        for (dest, src) in [
            ("/etc/hosts", &etc.hosts),
            ("/etc/resolv.conf", &etc.resolv_conf),
            ("/etc/hostname", &etc.hostname),
        ] {
            mounts.push(mount(
                dest,
                "bind",
                &src.to_string_lossy(),
                &["rbind", "rprivate"],
            )?);
        }
    }
    for b in &cfg.mounts {
        // Checked at create too; here again for any config that reaches a
        // start another way (a stored row, a future --mount).
        crate::validate::mount_destination(&b.destination).map_err(err)?;
        let mode = if b.readonly { "ro" } else { "rw" };
        mounts.push(mount(
            &b.destination,
            "bind",
            &b.source,
            &["rbind", "rprivate", mode],
        )?);
    }
    for t in &cfg.tmpfs {
        crate::validate::mount_destination(&t.destination).map_err(err)?;
        let opts: Vec<&str> = t.options.iter().map(String::as_str).collect();
        mounts.push(mount(&t.destination, "tmpfs", "tmpfs", &opts)?);
    }

    let caps = capabilities(cfg)?;
    let process = ProcessBuilder::default()
        .terminal(cfg.tty)
        .args(cfg.args.clone())
        .env(cfg.env.clone())
        .cwd(if cfg.workdir.is_empty() {
            "/"
        } else {
            cfg.workdir.as_str()
        })
        .user(
            UserBuilder::default()
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(err)?,
        )
        .no_new_privileges(true)
        .capabilities(oci_capabilities(&caps)?)
        .rlimits(
            cfg.ulimits
                .iter()
                .map(super::ulimit::to_oci)
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?,
        )
        .build()
        .map_err(err)?;

    let mut resources = LinuxResourcesBuilder::default();
    if let Some(m) = cfg.resources.memory {
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(m)
                .build()
                .map_err(err)?,
        );
    }
    if let Some(n) = cfg.resources.nano_cpus {
        let quota = (n as i128 * CPU_PERIOD as i128 / 1_000_000_000) as i64;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CPU_PERIOD)
                .build()
                .map_err(err)?,
        );
    }
    if let Some(p) = cfg.resources.pids_limit {
        resources = resources.pids(LinuxPidsBuilder::default().limit(p).build().map_err(err)?);
    }

    let mut devices = crate::runtime::spec::default_devices().map_err(err)?;
    if cfg.privileged {
        devices.extend(host_devices(Path::new("/dev")));
    }

    let mut namespaces = oci_spec::runtime::get_default_namespaces();
    if cfg.network.mode == "host" {
        namespaces.retain(|ns| ns.typ() != oci_spec::runtime::LinuxNamespaceType::Network);
    }

    // A privileged container sees /proc and /sys whole.
    let paths = |list: &[&str]| -> Vec<String> {
        if cfg.privileged {
            Vec::new()
        } else {
            list.iter().map(|s| s.to_string()).collect()
        }
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build().map_err(err)?)
        .devices(devices)
        .cgroups_path(cgroups_path)
        .masked_paths(paths(MASKED_PATHS))
        .readonly_paths(paths(READONLY_PATHS))
        .build()
        .map_err(err)?;
    linux.set_seccomp(seccomp_profile(cfg, &caps));

    let mut annotations = HashMap::new();
    annotations.insert(USER_ANNOTATION.to_string(), cfg.user.clone());

    let mut spec = Spec::default();
    spec.set_version("1.0.2".into());
    spec.set_root(Some(
        RootBuilder::default()
            .path(rootfs)
            .readonly(cfg.read_only)
            .build()
            .map_err(err)?,
    ));
    spec.set_hostname(Some(cfg.hostname.clone()));
    spec.set_mounts(Some(mounts));
    spec.set_process(Some(process));
    spec.set_linux(Some(linux));
    spec.set_annotations(Some(annotations));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::config::BindMount;

    fn cfg() -> ContainerConfig {
        ContainerConfig {
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["PATH=/bin".into()],
            hostname: "abc".into(),
            user: "1000:1000".into(),
            ..Default::default()
        }
    }

    #[test]
    fn spec_carries_process_hostname_and_namespaces() {
        let s = build(&cfg(), Path::new("/r"), None, "/minirt-x/id").unwrap();
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap()[2], "echo hi");
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(s.hostname().as_deref(), Some("abc"));
        let l = s.linux().as_ref().unwrap();
        assert_eq!(l.namespaces().as_ref().unwrap().len(), 6);
        assert_eq!(
            l.cgroups_path().as_ref().unwrap(),
            Path::new("/minirt-x/id")
        );
        assert_eq!(
            s.annotations().as_ref().unwrap()[USER_ANNOTATION],
            "1000:1000"
        );
        let sys = s
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/sys"))
            .unwrap();
        assert!(sys.options().as_ref().unwrap().contains(&"ro".to_string()));
    }

    #[test]
    fn resources_translate_cpus_to_quota() {
        let mut c = cfg();
        c.resources.memory = Some(32 << 20);
        c.resources.nano_cpus = Some(500_000_000);
        c.resources.pids_limit = Some(20);
        let s = build(&c, Path::new("/r"), None, "/x").unwrap();
        let r = s.linux().as_ref().unwrap().resources().as_ref().unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(32 << 20));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 20);
    }

    #[test]
    fn binds_and_host_network_mode() {
        let mut c = cfg();
        c.mounts.push(BindMount {
            source: "/data".into(),
            destination: "/d".into(),
            readonly: true,
        });
        c.network.mode = "host".into();
        let etc = EtcFiles {
            hosts: "/h".into(),
            resolv_conf: "/r".into(),
            hostname: "/n".into(),
        };
        let s = build(&c, Path::new("/r"), Some(&etc), "/x").unwrap();
        let mut over_proc = c.clone();
        over_proc.mounts[0].destination = "/d/../proc/1".into();
        assert!(build(&over_proc, Path::new("/r"), Some(&etc), "/x")
            .unwrap_err()
            .to_string()
            .contains("cannot be mounted over"));
        let ms = s.mounts().as_ref().unwrap();
        let d = ms
            .iter()
            .find(|m| m.destination() == Path::new("/d"))
            .unwrap();
        assert!(d.options().as_ref().unwrap().contains(&"ro".to_string()));
        assert!(ms
            .iter()
            .any(|m| m.destination() == Path::new("/etc/resolv.conf")));
        let ns = s.linux().as_ref().unwrap().namespaces().as_ref().unwrap();
        assert_eq!(ns.len(), 5);
    }

    fn sys_options(s: &Spec) -> Vec<String> {
        s.mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/sys"))
            .unwrap()
            .options()
            .clone()
            .unwrap()
    }

    #[test]
    fn default_security_profile_is_in_the_spec() {
        let s = build(&cfg(), Path::new("/r"), None, "/x").unwrap();
        let caps = spec_capabilities(&s).unwrap();
        assert_eq!(caps.len(), 14);
        assert!(caps.contains(&"CAP_CHOWN".to_string()));
        assert!(!caps.contains(&"CAP_NET_ADMIN".to_string()));
        let pc = s
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert!(pc.ambient().as_ref().unwrap().is_empty());
        assert_eq!(pc.effective(), pc.bounding());
        let l = s.linux().as_ref().unwrap();
        let sc = l.seccomp().as_ref().unwrap();
        assert_eq!(
            sc.default_action(),
            oci_spec::runtime::LinuxSeccompAction::ScmpActErrno
        );
        assert_eq!(l.masked_paths().as_ref().unwrap().len(), MASKED_PATHS.len());
        assert_eq!(s.root().as_ref().unwrap().readonly(), Some(false));
        assert!(sys_options(&s).contains(&"ro".to_string()));
        // The spec survives its JSON form (config.json) with the same capabilities.
        let back: Spec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(spec_capabilities(&back), Some(caps));
    }

    #[test]
    fn cap_add_drop_seccomp_and_read_only() {
        let mut c = cfg();
        c.cap_add = vec!["net_admin".into(), "CAP_SYS_ADMIN".into()];
        c.cap_drop = vec!["CHOWN".into()];
        c.read_only = true;
        let s = build(&c, Path::new("/r"), None, "/x").unwrap();
        let caps = spec_capabilities(&s).unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
        // SYS_ADMIN opens mount in the filter too.
        let sc = s.linux().as_ref().unwrap().seccomp().clone().unwrap();
        assert!(sc
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .any(|r| r.names().contains(&"mount".to_string())));

        c.seccomp = SeccompMode::Unconfined;
        let s = build(&c, Path::new("/r"), None, "/x").unwrap();
        assert!(s.linux().as_ref().unwrap().seccomp().is_none());

        c.cap_add = vec!["FLY".into()];
        assert!(build(&c, Path::new("/r"), None, "/x").is_err());
    }

    #[test]
    fn privileged_gets_everything() {
        let mut c = cfg();
        c.privileged = true;
        c.cap_drop = vec!["ALL".into()];
        let s = build(&c, Path::new("/r"), None, "/x").unwrap();
        assert_eq!(spec_capabilities(&s).unwrap().len(), caps::all().len());
        let l = s.linux().as_ref().unwrap();
        assert!(l.seccomp().is_none());
        assert!(l.masked_paths().as_ref().unwrap().is_empty());
        assert!(l.readonly_paths().as_ref().unwrap().is_empty());
        assert!(sys_options(&s).contains(&"rw".to_string()));
        // The host's /dev/loop-control (when the host has it) is passed in; ptmx is not.
        let devs = l.devices().as_ref().unwrap();
        assert!(devs.len() >= DEFAULT_DEVICES.len());
        assert!(!devs.iter().any(|d| d.path() == Path::new("/dev/ptmx")));
    }

    #[test]
    fn host_devices_lists_device_nodes_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net")).unwrap();
        std::fs::write(dir.path().join("plain"), "x").unwrap();
        let node = dir.path().join("net/tun");
        let made = nix::sys::stat::mknod(
            &node,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(10, 200),
        );
        let devs = host_devices(dir.path());
        if made.is_ok() {
            assert_eq!(devs.len(), 1);
            assert_eq!(devs[0].path(), Path::new("/dev/net/tun"));
            assert_eq!((devs[0].major(), devs[0].minor()), (10, 200));
            assert_eq!(devs[0].typ(), LinuxDeviceType::C);
        } else {
            assert!(devs.is_empty());
        }
    }
}
