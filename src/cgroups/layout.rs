//! Which cgroup hierarchies this host has and where they are mounted, read
//! from /proc/self/mountinfo; pure functions over the text, tested without root.

use std::path::{Path, PathBuf};

use super::{CgroupError, Result};

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only v1 hierarchies (no cgroup2 mount).
    Legacy,
    /// v1 controller hierarchies plus a cgroup2 mount (systemd's "hybrid";
    /// here /sys/fs/cgroup/unified, holding only hugetlb).
    Hybrid,
    /// One cgroup2 hierarchy holds every controller.
    Unified,
}

/// One mounted v1 hierarchy and the controllers bound to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub mount_point: PathBuf,
    /// Controllers from the mount's super options, e.g. ["cpu", "cpuacct"].
    pub controllers: Vec<String>,
}

/// The cgroup mounts of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub mode: Mode,
    /// v1 hierarchies with at least one controller (name=systemd is left out:
    /// it limits nothing).
    pub v1: Vec<V1Hierarchy>,
    /// The cgroup2 mount point, if any.
    pub unified: Option<PathBuf>,
}

/// v1 controllers the kernel knows; other super options (rw, xattr,
/// name=..., release_agent=...) are not controllers.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// One line of mountinfo, the fields we need.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    root: String,
    mount_point: PathBuf,
    fs_type: String,
    super_opts: Vec<String>,
}

/// Mount points escape space, tab, newline and backslash as \ooo octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one mountinfo line (proc(5)): the optional fields end at " - ".
fn parse_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let l: Vec<&str> = left.split(' ').collect();
    let r: Vec<&str> = right.split(' ').collect();
    if l.len() < 5 || r.len() < 3 {
        return None;
    }
    Some(Mount {
        root: unescape(l[3]),
        mount_point: PathBuf::from(unescape(l[4])),
        fs_type: r[0].to_string(),
        super_opts: r[2].split(',').map(str::to_string).collect(),
    })
}

impl Layout {
    /// The layout described by a mountinfo text. A hierarchy mounted twice
    /// (bind mounts) counts once; its mount of the hierarchy's root wins.
    pub(crate) fn from_mountinfo(text: &str) -> Result<Layout> {
        let mounts: Vec<Mount> = text.lines().filter_map(parse_line).collect();
        let prefer_root = |a: &Mount| if a.root == "/" { 0 } else { 1 };

        let mut v1: Vec<(usize, V1Hierarchy)> = Vec::new();
        let mut v1_mounts: Vec<&Mount> = mounts.iter().filter(|m| m.fs_type == "cgroup").collect();
        v1_mounts.sort_by_key(|m| prefer_root(m));
        for m in v1_mounts {
            let controllers: Vec<String> = m
                .super_opts
                .iter()
                .filter(|o| V1_CONTROLLERS.contains(&o.as_str()))
                .cloned()
                .collect();
            if controllers.is_empty() || v1.iter().any(|(_, h)| h.controllers == controllers) {
                continue;
            }
            let pos = mounts.iter().position(|x| std::ptr::eq(x, m)).unwrap_or(0);
            v1.push((
                pos,
                V1Hierarchy {
                    mount_point: m.mount_point.clone(),
                    controllers,
                },
            ));
        }
        // Keep mountinfo order: it is stable and readable in errors.
        v1.sort_by_key(|(pos, _)| *pos);
        let v1: Vec<V1Hierarchy> = v1.into_iter().map(|(_, h)| h).collect();

        let unified = mounts
            .iter()
            .filter(|m| m.fs_type == "cgroup2")
            .min_by_key(|m| prefer_root(m))
            .map(|m| m.mount_point.clone());

        let mode = match (v1.is_empty(), unified.is_some()) {
            (false, false) => Mode::Legacy,
            (false, true) => Mode::Hybrid,
            (true, true) => Mode::Unified,
            (true, false) => {
                return Err(CgroupError::Io(
                    "no cgroup filesystem is mounted (nothing of type cgroup or cgroup2 in /proc/self/mountinfo)".into(),
                ))
            }
        };
        Ok(Layout { mode, v1, unified })
    }

    /// The layout of this process's mount namespace.
    pub(crate) fn detect() -> Result<Layout> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| CgroupError::Io(format!("cannot read /proc/self/mountinfo: {e}")))?;
        Layout::from_mountinfo(&text)
    }

    /// The v1 hierarchy that holds `controller`, if it is mounted as v1.
    pub(crate) fn v1_mount(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| h.mount_point.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A Debian 11 host booted with systemd.unified_cgroup_hierarchy=0 (shared
    // cpu,cpuacct mount) and the same for the layout of this build machine.
    const LEGACY: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
29 28 0:27 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,name=systemd
32 28 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
33 28 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
34 28 0:32 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
35 28 0:33 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,net_cls,net_prio
";

    const HYBRID_HERE: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const UNIFIED: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
26 22 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
29 26 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn legacy_host_with_shared_cpu_mount() {
        let l = Layout::from_mountinfo(LEGACY).unwrap();
        assert_eq!(l.mode, Mode::Legacy);
        assert_eq!(l.unified, None);
        assert_eq!(l.v1.len(), 4, "name=systemd is not a controller hierarchy");
        assert_eq!(
            l.v1_mount("cpu"),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(l.v1_mount("cpuacct"), l.v1_mount("cpu"));
        assert_eq!(
            l.v1_mount("memory"),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        assert_eq!(l.v1_mount("freezer"), None);
    }

    #[test]
    fn hybrid_host_like_this_one() {
        let l = Layout::from_mountinfo(HYBRID_HERE).unwrap();
        assert_eq!(l.mode, Mode::Hybrid);
        assert_eq!(
            l.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(l.v1.len(), 8);
        assert_eq!(l.v1_mount("cpu"), Some(Path::new("/sys/fs/cgroup/cpu")));
        assert_eq!(
            l.v1_mount("cpuacct"),
            Some(Path::new("/sys/fs/cgroup/cpuacct"))
        );
        assert_eq!(l.v1_mount("pids"), Some(Path::new("/sys/fs/cgroup/pids")));
        assert_eq!(l.v1_mount("hugetlb"), None);
        assert_eq!(l.v1[0].controllers, vec!["cpu"]);
    }

    #[test]
    fn unified_host() {
        let l = Layout::from_mountinfo(UNIFIED).unwrap();
        assert_eq!(l.mode, Mode::Unified);
        assert!(l.v1.is_empty());
        assert_eq!(l.unified.as_deref(), Some(Path::new("/sys/fs/cgroup")));
    }

    #[test]
    fn no_cgroup_mount_is_an_error() {
        let e = Layout::from_mountinfo("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n").unwrap_err();
        assert!(e.to_string().contains("no cgroup filesystem"));
        assert!(Layout::from_mountinfo("").is_err());
    }

    #[test]
    fn bind_mounts_and_escapes() {
        // A container's view: a sub-cgroup bind-mounted first, the real root later.
        let text = "\
50 40 0:31 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory
51 40 0:31 / /mnt/mem\\040root rw - cgroup cgroup rw,memory
52 40 0:38 /sub /mnt/u1 rw - cgroup2 cgroup2 rw
53 40 0:38 / /mnt/u2 rw shared:3 master:1 - cgroup2 cgroup2 rw
garbage line
";
        let l = Layout::from_mountinfo(text).unwrap();
        assert_eq!(l.mode, Mode::Hybrid);
        assert_eq!(l.v1.len(), 1);
        assert_eq!(l.v1_mount("memory"), Some(Path::new("/mnt/mem root")));
        assert_eq!(l.unified.as_deref(), Some(Path::new("/mnt/u2")));
    }

    #[test]
    fn this_host_is_detected() {
        let l = Layout::detect().unwrap();
        match l.mode {
            Mode::Unified => assert!(l.unified.is_some()),
            Mode::Legacy | Mode::Hybrid => assert!(l.v1_mount("memory").is_some()),
        }
    }
}
