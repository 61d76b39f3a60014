//! Mount types of a spec beyond what `rootfs::mount` does itself: a
//! `cgroup` mount, which on a v1 host is a tmpfs holding one bind of the
//! container's own directory per hierarchy (what runc builds), and on a
//! v2 host a cgroup2 mount of the container's namespace.

use super::sys::Sys;
use crate::cgroups::{Layout, Mode};
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Our cgroup path in each hierarchy from /proc/self/cgroup text
/// ("4:memory:/a/b", "0::/a"): (controllers, path) pairs. Pure.
pub(crate) fn own_cgroups(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let _id = f.next()?;
            let ctrls = f.next()?.to_string();
            let path = f.next()?.to_string();
            Some((ctrls, path))
        })
        .collect()
}

/// The host directory and the name inside /sys/fs/cgroup of each hierarchy
/// for the process whose /proc/self/cgroup is `own`. Pure.
pub(crate) fn cgroup_binds(layout: &Layout, own: &[(String, String)]) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for h in &layout.v1 {
        let name = h
            .mount_point
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let found = own.iter().find(|(c, _)| {
            let mut a: Vec<&str> = c.split(',').filter(|s| !s.starts_with("name=")).collect();
            a.sort();
            let mut b: Vec<&str> = h.controllers.iter().map(String::as_str).collect();
            b.sort();
            a == b
        });
        if let Some((_, path)) = found {
            let rel = path.trim_start_matches('/');
            out.push((h.mount_point.join(rel), name));
        }
    }
    out
}

/// Mounts the container's cgroups at `dest` (a path under the rootfs, before
/// pivot_root). `flags` are the mount's own (nosuid...), `readonly` its ro.
pub(crate) fn mount_cgroup(
    sys: &impl Sys,
    dest: &Path,
    flags: MsFlags,
    readonly: bool,
) -> Result<(), String> {
    let fail = |what: String, e: nix::Error| format!("{what}: {e}");
    std::fs::create_dir_all(dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    let layout = Layout::detect().map_err(|e| e.to_string())?;
    let ro = if readonly {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    if layout.mode == Mode::Unified {
        return sys
            .mount(
                Some(Path::new("cgroup2")),
                dest,
                Some("cgroup2"),
                flags | ro,
                None,
            )
            .map_err(|e| fail(format!("mounting cgroup2 on {}", dest.display()), e));
    }
    let own = own_cgroups(&std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default());
    sys.mount(
        Some(Path::new("tmpfs")),
        dest,
        Some("tmpfs"),
        flags,
        Some("mode=755"),
    )
    .map_err(|e| fail(format!("mounting tmpfs on {}", dest.display()), e))?;
    for (src, name) in cgroup_binds(&layout, &own) {
        let target = dest.join(&name);
        std::fs::create_dir_all(&target)
            .map_err(|e| format!("creating {}: {e}", target.display()))?;
        sys.mount(
            Some(&src),
            &target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(|e| fail(format!("binding {}", src.display()), e))?;
        let re = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | ro;
        sys.mount(None, &target, None, re, None)
            .map_err(|e| fail(format!("remounting {}", target.display()), e))?;
        // "cpu" and "cpuacct" lead to "cpu,cpuacct", as on the host.
        if name.contains(',') {
            let dir = nix::fcntl::open(
                dest,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| fail(format!("opening {}", dest.display()), e))?;
            for part in name.split(',') {
                let _ = sys.symlinkat(Path::new(&name), dir.as_fd(), OsStr::new(part));
            }
        }
    }
    if readonly {
        let re = MsFlags::MS_REMOUNT | flags | MsFlags::MS_RDONLY;
        sys.mount(None, dest, None, re, None)
            .map_err(|e| fail(format!("read-only {}", dest.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::layout::V1Hierarchy;

    #[test]
    fn each_hierarchy_binds_our_own_directory() {
        let layout = Layout {
            mode: Mode::Legacy,
            v1: vec![
                V1Hierarchy {
                    mount_point: "/sys/fs/cgroup/memory".into(),
                    controllers: vec!["memory".into()],
                },
                V1Hierarchy {
                    mount_point: "/sys/fs/cgroup/cpu,cpuacct".into(),
                    controllers: vec!["cpu".into(), "cpuacct".into()],
                },
            ],
            unified: None,
        };
        let own = own_cgroups("5:memory:/p/c\n3:cpuacct,cpu:/p/c\n1:name=systemd:/x\n");
        let binds = cgroup_binds(&layout, &own);
        assert_eq!(
            binds,
            vec![
                (
                    PathBuf::from("/sys/fs/cgroup/memory/p/c"),
                    "memory".to_string()
                ),
                (
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/p/c"),
                    "cpu,cpuacct".to_string()
                ),
            ]
        );
    }
}
