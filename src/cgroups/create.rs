//! Making a container's cgroup: every directory of the plan (and missing
//! parents), the v2 controllers enabled along the way, cpuset copied from the
//! parent, the limits and the device rules written, all undone as a unit when
//! any step fails.

use std::io;
use std::path::Path;

use super::cgroup::{cached_layout, io_err, Cgroup};
use super::devices::DevicePolicy;
use super::layout::{Layout, Mode};
use super::limits::{self, Wanted};
use super::plan::{check_names, limit_dir, plan, v2_to_enable, Dir};
use super::v2_devices;
use super::{CgroupError, Resources, Result};
use crate::undo::Undo;

/// Removes a directory `create` made. A parent another container started
/// using meanwhile stays (EBUSY); already gone is fine.
fn remove_made(dir: &Path) -> std::result::Result<(), String> {
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(format!("leaving {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// v1 creates cpuset directories with empty cpus/mems, and an empty cpuset
/// refuses tasks: copy both from the parent directory when empty.
fn init_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let read = |p: &Path| {
            std::fs::read_to_string(p.join(f))
                .map_err(|e| io_err(format!("cannot read {}", p.join(f).display()), e))
        };
        if !read(dir)?.trim().is_empty() {
            continue;
        }
        let value = read(parent)?;
        std::fs::write(dir.join(f), value.trim())
            .map_err(|e| io_err(format!("cannot write {}", dir.join(f).display()), e))?;
    }
    Ok(())
}

/// Lets the kernel give each new child of `dir` (a v1 cpuset directory
/// minirt made, never a container's own) its parent's cpus and mems at
/// mkdir. Writing them ourselves instead costs a `validate_change` over
/// every sibling and a rebuild of the scheduler domains over every cpuset,
/// on each container start: with 1000 containers running that grew the
/// `cgroup` step from 1.0 to 5.9 ms (`perf`: `update_cpumask`,
/// `partition_sched_domains`). `init_cpuset` still copies them where the
/// kernel did not (a parent made before this, or by someone else). The
/// kernel copies the flag into each child, so a cpuset made inside a
/// container starts with the container's cpus too, as under LXC, which sets
/// it everywhere.
fn clone_to_children(dir: &Path) -> Result<()> {
    let file = dir.join("cgroup.clone_children");
    std::fs::write(&file, "1").map_err(|e| io_err(format!("cannot write {}", file.display()), e))
}

/// Enables `controllers` in `dir`'s cgroup.subtree_control (those not on yet).
fn enable_subtree(dir: &Path, controllers: &[String]) -> Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let on = std::fs::read_to_string(&file)
        .map_err(|e| io_err(format!("cannot read {}", file.display()), e))?;
    let on: Vec<&str> = on.split_whitespace().collect();
    for c in controllers.iter().filter(|c| !on.contains(&c.as_str())) {
        std::fs::write(&file, format!("+{c}")).map_err(|e| {
            io_err(
                format!("cannot enable the {c} controller in {}", file.display()),
                e,
            )
        })?;
    }
    Ok(())
}

/// Makes `dir` and the missing parents below `mount`, recording each one made.
/// Returns an error if the leaf already exists (it is not ours to reuse).
fn make_dirs(dir: &Dir, enable: &[String], undo: &mut Undo) -> Result<()> {
    // The usual case: the parents are there (the instance's parent cgroup
    // stays between containers), so one mkdir of the leaf does it. Where
    // v2 controllers must be enabled along the way the walk below does it.
    if !dir.v2 || enable.is_empty() {
        match std::fs::create_dir(&dir.path) {
            Ok(()) => {
                let made = dir.path.clone();
                undo.push("cgroup directory", move || remove_made(&made));
                if dir.has("cpuset") {
                    if let Some(parent) = dir.path.parent().filter(|p| *p != dir.mount) {
                        init_cpuset(parent)?;
                    }
                    init_cpuset(&dir.path)?;
                }
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(CgroupError::Io(format!(
                    "cgroup {} already exists",
                    dir.path.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("cannot create {}", dir.path.display()), e)),
        }
    }
    let rel = dir.path.strip_prefix(&dir.mount).unwrap_or(&dir.path);
    let parts: Vec<_> = rel.components().collect();
    // A concurrent create's rollback may remove a parent between our mkdirs: retry.
    'attempt: for attempt in 0..3 {
        let mut cur = dir.mount.clone();
        if dir.v2 && !enable.is_empty() {
            enable_subtree(&cur, enable)?;
        }
        for (i, part) in parts.iter().enumerate() {
            cur.push(part);
            let leaf = i + 1 == parts.len();
            let made = match std::fs::create_dir(&cur) {
                Ok(()) => {
                    let made = cur.clone();
                    undo.push("cgroup directory", move || remove_made(&made));
                    true
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !leaf => false,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(CgroupError::Io(format!(
                        "cgroup {} already exists",
                        cur.display()
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 2 => continue 'attempt,
                Err(e) => return Err(io_err(format!("cannot create {}", cur.display()), e)),
            };
            if dir.has("cpuset") {
                init_cpuset(&cur)?;
                if made && !leaf && !dir.v2 {
                    clone_to_children(&cur)?;
                }
            }
            if dir.v2 && !leaf && !enable.is_empty() {
                enable_subtree(&cur, enable)?;
            }
        }
        return Ok(());
    }
    Ok(())
}

impl Cgroup {
    /// Creates `<parent>/<id>` in every hierarchy we use and writes the limits
    /// of `res`. On failure nothing of it is left behind.
    pub fn create(parent: &str, id: &str, res: &Resources) -> Result<Cgroup> {
        let layout = cached_layout().map_err(CgroupError::Io)?;
        Cgroup::create_on(layout, parent, id, res)
    }

    /// `create` on a given layout (tests drive a cgroup2 mount as if unified).
    pub(crate) fn create_on(
        layout: &Layout,
        parent: &str,
        id: &str,
        res: &Resources,
    ) -> Result<Cgroup> {
        let segs = check_names(parent, id)?;
        let wanted = Wanted::from(res)?;
        let mut dirs = plan(layout, &segs, id);
        let enable = match &layout.unified {
            Some(u) => {
                let offered = match std::fs::read_to_string(u.join("cgroup.controllers")) {
                    Ok(t) => t,
                    // A hybrid host can do without its cgroup2 mount.
                    Err(_) if layout.mode == Mode::Hybrid => String::new(),
                    Err(e) => return Err(io_err(format!("cannot read {}", u.display()), e)),
                };
                v2_to_enable(layout, &offered)
            }
            None => Vec::new(),
        };
        // Check every asked-for limit has a home before making anything.
        let homes = [
            (
                "memory",
                "memory",
                wanted.memory.is_some(),
                "a memory limit",
            ),
            ("cpu", "cpu", wanted.cpu_quota_us.is_some(), "a CPU limit"),
            ("pids", "pids", wanted.pids.is_some(), "a process limit"),
        ];
        for (v1, v2, asked, what) in homes {
            if asked && limit_dir(&dirs, v1, v2, &enable).is_none() {
                return Err(CgroupError::Io(format!(
                    "cannot set {what}: this host has no {v1} cgroup controller"
                )));
            }
        }
        // Devices are restricted in the v1 hierarchy if there is one, else by
        // an eBPF program on the cgroup2 directory; never silently not at all.
        let devices = DevicePolicy::for_container(wanted.all_devices)?;
        let v2_devices = !devices.allows_everything() && layout.v1_mount("devices").is_none();
        if v2_devices && !dirs.iter().any(|d| d.v2) {
            return Err(CgroupError::Io(
                "cannot restrict device access: this host has neither a v1 devices cgroup nor a cgroup2 mount".into(),
            ));
        }
        // The hybrid cgroup2 directory becomes a must once a limit lives there.
        let v2_needed = v2_devices
            || homes
                .iter()
                .any(|(v1, _, asked, _)| *asked && layout.v1_mount(v1).is_none());
        for d in dirs.iter_mut().filter(|d| d.v2) {
            d.optional &= !v2_needed;
        }

        let mut undo = Undo::new();
        let result = Cgroup::build(&mut dirs, &enable, &wanted, &devices, &mut undo);
        if let Err(e) = result {
            // What stays is expected (a parent in use): debug, not a warning.
            for left in undo.rollback().iter() {
                tracing::debug!("cgroup rollback: {left}");
            }
            return Err(e);
        }
        undo.commit();
        tracing::debug!(dirs = ?dirs.iter().map(|d| &d.path).collect::<Vec<_>>(), "cgroup created");
        Ok(Cgroup {
            parent: segs.join("/"),
            id: id.to_string(),
            dirs,
            broken: None,
        })
    }

    fn build(
        dirs: &mut Vec<Dir>,
        enable: &[String],
        w: &Wanted,
        devices: &DevicePolicy,
        undo: &mut Undo,
    ) -> Result<()> {
        let mut i = 0;
        while i < dirs.len() {
            let d = &dirs[i];
            let v2_enable = if d.v2 { enable } else { &[] };
            match make_dirs(d, v2_enable, undo) {
                Ok(()) => i += 1,
                Err(e) if d.optional => {
                    tracing::debug!("skipping the cgroup2 directory of a hybrid host: {e}");
                    dirs.remove(i);
                }
                Err(e) => return Err(e),
            }
        }
        let enabled: &[String] = if dirs.iter().any(|d| d.v2) {
            enable
        } else {
            &[]
        };
        let target = |v1: &str, v2: &str| {
            limit_dir(dirs, v1, v2, enabled).map(|i| (&dirs[i].path, &dirs[i].mount, dirs[i].v2))
        };
        if let (Some(bytes), Some((p, m, v2))) = (w.memory, target("memory", "memory")) {
            limits::write_memory(p, m, v2, bytes)?;
        }
        if let (Some(q), Some((p, m, v2))) = (w.cpu_quota_us, target("cpu", "cpu")) {
            limits::write_cpu(p, m, v2, q)?;
        }
        if let (Some(n), Some((p, m, v2))) = (w.pids, target("pids", "pids")) {
            limits::write_pids(p, m, v2, n)?;
        }
        if let Some(d) = dirs.iter().find(|d| d.has("devices")) {
            limits::write_devices(&d.path, devices)?;
        } else if !devices.allows_everything() {
            // The program goes when the directory does (rollback or remove).
            let d = dirs.iter().find(|d| d.v2).ok_or_else(|| {
                CgroupError::Io("cannot restrict device access: no cgroup2 directory".into())
            })?;
            v2_devices::attach(&d.path, devices)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::layout::V1Hierarchy;

    #[test]
    fn no_way_to_restrict_devices_is_refused_before_anything_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout {
            mode: Mode::Legacy,
            v1: vec![V1Hierarchy {
                mount_point: dir.path().join("memory"),
                controllers: vec!["memory".into()],
            }],
            unified: None,
        };
        let e = Cgroup::create_on(&layout, "minirt", "c1", &Resources::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot restrict device access"), "{e}");
        assert!(!dir.path().join("memory").exists(), "nothing made");
    }
}
