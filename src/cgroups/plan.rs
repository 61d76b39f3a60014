//! Where a container's cgroup lives: one directory per hierarchy that holds a
//! controller minirt uses (v1), plus the cgroup2 one, and which v2 controllers
//! to enable and which directory each limit goes to. Pure: planned from the
//! `Layout`, before anything is made.

use std::path::{Path, PathBuf};

use super::layout::{Layout, Mode};
use super::{CgroupError, Result};

/// v1 controllers a container cgroup lives in.
pub(super) const V1_USED: &[&str] = &[
    "memory", "cpu", "cpuacct", "pids", "cpuset", "devices", "freezer", "blkio",
];

/// v2 controllers we enable along the path when the cgroup2 mount offers them.
pub(super) const V2_USED: &[&str] = &["cpuset", "cpu", "io", "memory", "pids"];

/// One directory of the cgroup in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Dir {
    /// `<mount>/<parent>/<id>`.
    pub(super) path: PathBuf,
    pub(super) mount: PathBuf,
    /// v1 controllers of this hierarchy; empty for the cgroup2 directory.
    pub(super) controllers: Vec<String>,
    pub(super) v2: bool,
    /// A hybrid host's cgroup2 directory: nice to have, not a must.
    pub(super) optional: bool,
}

impl Dir {
    pub(super) fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// `parent` may be nested ("minirt/abc"); `id` is one path segment.
pub(super) fn check_names(parent: &str, id: &str) -> Result<Vec<String>> {
    let bad_segment = |s: &str| s.is_empty() || s == "." || s == ".." || s.contains('\0');
    if bad_segment(id) || id.contains('/') {
        return Err(CgroupError::Invalid(format!(
            "invalid cgroup name '{id}': it must be one non-empty path segment"
        )));
    }
    let segs: Vec<String> = parent
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if segs.is_empty() || segs.iter().any(|s| bad_segment(s)) {
        return Err(CgroupError::Invalid(format!(
            "invalid cgroup parent '{parent}': expected names separated by '/', without '.' or '..'"
        )));
    }
    Ok(segs)
}

/// The directories of `<parent>/<id>` on `layout` (pure).
pub(super) fn plan(layout: &Layout, parent: &[String], id: &str) -> Vec<Dir> {
    let at = |mount: &Path| {
        let mut p = mount.to_path_buf();
        p.extend(parent);
        p.push(id);
        p
    };
    let mut dirs: Vec<Dir> = layout
        .v1
        .iter()
        .filter(|h| h.controllers.iter().any(|c| V1_USED.contains(&c.as_str())))
        .map(|h| Dir {
            path: at(&h.mount_point),
            mount: h.mount_point.clone(),
            controllers: h.controllers.clone(),
            v2: false,
            optional: false,
        })
        .collect();
    if let Some(u) = &layout.unified {
        dirs.push(Dir {
            path: at(u),
            mount: u.clone(),
            controllers: Vec::new(),
            v2: true,
            optional: layout.mode == Mode::Hybrid,
        });
    }
    dirs
}

/// The v2 controllers to enable along the path: the ones we use that the
/// cgroup2 root offers and no v1 hierarchy already holds (pure).
pub(super) fn v2_to_enable(layout: &Layout, root_controllers: &str) -> Vec<String> {
    let offered: Vec<&str> = root_controllers.split_whitespace().collect();
    V2_USED
        .iter()
        .filter(|c| offered.contains(c))
        .filter(|c| {
            let v1_name = if **c == "io" { "blkio" } else { c };
            layout.v1_mount(v1_name).is_none()
        })
        .map(|c| c.to_string())
        .collect()
}

/// Where each asked-for limit goes: (v1 controller, v2 controller) -> dir index.
pub(super) fn limit_dir(dirs: &[Dir], v1: &str, v2: &str, v2_enabled: &[String]) -> Option<usize> {
    dirs.iter().position(|d| d.has(v1)).or_else(|| {
        if v2_enabled.iter().any(|c| c == v2) {
            dirs.iter().position(|d| d.v2)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::layout::V1Hierarchy;

    fn hybrid() -> Layout {
        let v1 = [
            "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
        ]
        .iter()
        .map(|c| V1Hierarchy {
            mount_point: PathBuf::from(format!("/sys/fs/cgroup/{c}")),
            controllers: vec![c.to_string()],
        })
        .collect();
        Layout {
            mode: Mode::Hybrid,
            v1,
            unified: Some(PathBuf::from("/sys/fs/cgroup/unified")),
        }
    }

    fn segs(p: &str) -> Vec<String> {
        check_names(p, "id").unwrap()
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(segs("minirt"), vec!["minirt"]);
        assert_eq!(segs("/minirt/x/"), vec!["minirt", "x"]);
        for (p, id) in [
            ("", "a"),
            ("/", "a"),
            ("m/../x", "a"),
            ("m", ""),
            ("m", "a/b"),
            ("m", ".."),
            ("m", "."),
        ] {
            let e = check_names(p, id).unwrap_err().to_string();
            assert!(e.starts_with("invalid cgroup"), "{p:?} {id:?}: {e}");
        }
    }

    #[test]
    fn plan_on_hybrid_adds_an_optional_cgroup2_dir() {
        let dirs = plan(&hybrid(), &segs("minirt/x"), "c1");
        assert_eq!(dirs.len(), 9);
        assert_eq!(dirs[0].path, Path::new("/sys/fs/cgroup/cpu/minirt/x/c1"));
        let u = dirs.iter().find(|d| d.v2).unwrap();
        assert_eq!(u.path, Path::new("/sys/fs/cgroup/unified/minirt/x/c1"));
        assert!(u.optional);
        assert!(dirs.iter().filter(|d| !d.v2).all(|d| !d.optional));
    }

    #[test]
    fn plan_on_legacy_uses_shared_mounts_once_and_skips_unused_ones() {
        let layout = Layout {
            mode: Mode::Legacy,
            v1: vec![
                V1Hierarchy {
                    mount_point: "/cg/cpu,cpuacct".into(),
                    controllers: vec!["cpu".into(), "cpuacct".into()],
                },
                V1Hierarchy {
                    mount_point: "/cg/net_cls".into(),
                    controllers: vec!["net_cls".into()],
                },
            ],
            unified: None,
        };
        let dirs = plan(&layout, &segs("m"), "c");
        assert_eq!(dirs.len(), 1);
        assert_eq!(dirs[0].path, Path::new("/cg/cpu,cpuacct/m/c"));
        assert_eq!(limit_dir(&dirs, "cpu", "cpu", &[]), Some(0));
        assert_eq!(limit_dir(&dirs, "memory", "memory", &[]), None);
    }

    #[test]
    fn v2_controllers_enabled_only_where_v1_lacks_them() {
        let unified = Layout {
            mode: Mode::Unified,
            v1: vec![],
            unified: Some("/sys/fs/cgroup".into()),
        };
        let all = "cpuset cpu io memory hugetlb pids rdma misc\n";
        assert_eq!(
            v2_to_enable(&unified, all),
            ["cpuset", "cpu", "io", "memory", "pids"]
        );
        assert_eq!(v2_to_enable(&unified, "memory pids"), ["memory", "pids"]);
        assert!(v2_to_enable(&hybrid(), "hugetlb\n").is_empty());
        assert!(v2_to_enable(&hybrid(), all).is_empty());
        let mut no_v1_memory = hybrid();
        no_v1_memory.v1.retain(|h| h.controllers != ["memory"]);
        assert_eq!(v2_to_enable(&no_v1_memory, all), ["memory"]);
        let dirs = plan(&no_v1_memory, &segs("m"), "c");
        let v2 = dirs.iter().position(|d| d.v2);
        assert_eq!(limit_dir(&dirs, "memory", "memory", &["memory".into()]), v2);
    }
}
