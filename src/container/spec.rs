//! Builds the OCI runtime Spec a container runs with, from its config.
//! Pure: the low-level executor (`init.rs`) runs from this Spec alone.

use super::config::ContainerConfig;
use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxDeviceBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder,
    Spec, UserBuilder,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Annotation carrying the `-u` value verbatim (names resolve inside the rootfs).
pub const USER_ANNOTATION: &str = "io.minirt.user";
pub const CPU_PERIOD: u64 = 100_000;

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

/// The standard filesystems of a Docker container (no cgroupfs yet).
fn base_mounts() -> Result<Vec<Mount>, SpecError> {
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
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
    ])
}

/// (path, major, minor) of the device nodes every container gets.
pub const DEFAULT_DEVICES: &[(&str, i64, i64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// runc's default masked paths.
pub const MASKED_PATHS: &[&str] = &[
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
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

pub fn build(
    cfg: &ContainerConfig,
    rootfs: &Path,
    etc: Option<&EtcFiles>,
    cgroups_path: &str,
) -> Result<Spec, SpecError> {
    let mut mounts = base_mounts()?;
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
        let mode = if b.readonly { "ro" } else { "rw" };
        mounts.push(mount(
            &b.destination,
            "bind",
            &b.source,
            &["rbind", "rprivate", mode],
        )?);
    }

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

    let devices = DEFAULT_DEVICES
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
                .map_err(err)
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut namespaces = oci_spec::runtime::get_default_namespaces();
    if cfg.network.mode == "host" {
        namespaces.retain(|ns| ns.typ() != oci_spec::runtime::LinuxNamespaceType::Network);
    }

    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build().map_err(err)?)
        .devices(devices)
        .cgroups_path(cgroups_path)
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(err)?;

    let mut annotations = HashMap::new();
    annotations.insert(USER_ANNOTATION.to_string(), cfg.user.clone());

    let mut spec = Spec::default();
    spec.set_version("1.0.2".into());
    spec.set_root(Some(
        RootBuilder::default()
            .path(rootfs)
            .readonly(false)
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
}
