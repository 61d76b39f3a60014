//! One container's cgroup: its directories in every hierarchy we use, made
//! and undone as a unit, plus joining, listing, killing and OOM detection.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::FreezerState;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::devices::DevicePolicy;
use super::layout::{Layout, Mode};
use super::limits::{self, Wanted};
use super::v2_devices;
use super::{CgroupError, Resources, Result};

/// v1 controllers a container cgroup lives in.
const V1_USED: &[&str] = &[
    "memory", "cpu", "cpuacct", "pids", "cpuset", "devices", "freezer", "blkio",
];

/// v2 controllers we enable along the path when the cgroup2 mount offers them.
const V2_USED: &[&str] = &["cpuset", "cpu", "io", "memory", "pids"];

/// How long `remove` waits for exiting tasks, and `kill_all` for a freeze.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(5);

/// One directory of the cgroup in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dir {
    /// `<mount>/<parent>/<id>`.
    path: PathBuf,
    mount: PathBuf,
    /// v1 controllers of this hierarchy; empty for the cgroup2 directory.
    controllers: Vec<String>,
    v2: bool,
    /// A hybrid host's cgroup2 directory: nice to have, not a must.
    optional: bool,
}

impl Dir {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// A container's cgroup across hierarchies.
#[derive(Debug, Clone)]
pub struct Cgroup {
    parent: String,
    id: String,
    dirs: Vec<Dir>,
    /// Set when the host layout could not be read (open() cannot fail).
    broken: Option<String>,
}

/// Moves the calling thread into the cgroup whose `cgroup.procs` is given.
///
/// Writing another process's pid to `cgroup.procs` takes the kernel's global
/// threadgroup lock for writing, and on the first writer after a quiet spell
/// that waits for an RCU grace period: 1..15 ms on this kind of machine, the
/// biggest single cost of a container start. A v1 hierarchy's `tasks` file
/// given "0" moves just the calling thread, and the kernel skips that lock
/// for it (a thread moving itself cannot exit or exec meanwhile). So a new,
/// single-threaded container process joins by itself, through `tasks`; a
/// cgroup2 directory (no `tasks` file) takes "0" in `cgroup.procs` (the
/// slow path; the run path avoids it by creating the child inside).
pub fn join_self(procs: &Path) -> io::Result<()> {
    let tasks = procs.with_file_name("tasks");
    let target = if tasks.exists() {
        tasks
    } else {
        procs.to_path_buf()
    };
    std::fs::write(target, "0")
}

fn cached_layout() -> std::result::Result<&'static Layout, String> {
    static LAYOUT: OnceLock<std::result::Result<Layout, String>> = OnceLock::new();
    LAYOUT
        .get_or_init(|| Layout::detect().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

/// `parent` may be nested ("minirt/abc"); `id` is one path segment.
fn check_names(parent: &str, id: &str) -> Result<Vec<String>> {
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
fn plan(layout: &Layout, parent: &[String], id: &str) -> Vec<Dir> {
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
fn v2_to_enable(layout: &Layout, root_controllers: &str) -> Vec<String> {
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
fn limit_dir(dirs: &[Dir], v1: &str, v2: &str, v2_enabled: &[String]) -> Option<usize> {
    dirs.iter().position(|d| d.has(v1)).or_else(|| {
        if v2_enabled.iter().any(|c| c == v2) {
            dirs.iter().position(|d| d.v2)
        } else {
            None
        }
    })
}

fn io_err(what: String, e: io::Error) -> CgroupError {
    CgroupError::Io(format!("{what}: {e}"))
}

/// Everything `create` made so far, undone in reverse on failure.
#[derive(Default)]
struct Undo {
    made: Vec<PathBuf>,
}

impl Undo {
    fn rollback(&mut self) {
        for d in self.made.drain(..).rev() {
            // A parent another container started using meanwhile stays: EBUSY is fine.
            if let Err(e) = std::fs::remove_dir(&d) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::debug!("cgroup rollback: leaving {}: {e}", d.display());
                }
            }
        }
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
            match std::fs::create_dir(&cur) {
                Ok(()) => undo.made.push(cur.clone()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !leaf => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(CgroupError::Io(format!(
                        "cgroup {} already exists",
                        cur.display()
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 2 => continue 'attempt,
                Err(e) => return Err(io_err(format!("cannot create {}", cur.display()), e)),
            }
            if dir.has("cpuset") {
                init_cpuset(&cur)?;
            }
            if dir.v2 && !leaf && !enable.is_empty() {
                enable_subtree(&cur, enable)?;
            }
        }
        return Ok(());
    }
    Ok(())
}

fn read_pids(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Polls `cond` every few milliseconds until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
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

        let mut undo = Undo::default();
        let result = Cgroup::build(&mut dirs, &enable, &wanted, &devices, &mut undo);
        if let Err(e) = result {
            undo.rollback();
            return Err(e);
        }
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

    /// A handle on an existing cgroup (cheap: reads the cached layout and
    /// checks whether a hybrid host's cgroup2 directory exists).
    pub fn open(parent: &str, id: &str) -> Cgroup {
        let broken = |why: String| Cgroup {
            parent: parent.to_string(),
            id: id.to_string(),
            dirs: Vec::new(),
            broken: Some(why),
        };
        let layout = match cached_layout() {
            Ok(l) => l,
            Err(e) => return broken(e),
        };
        match check_names(parent, id) {
            Ok(segs) => Cgroup::open_on(layout, &segs, id),
            Err(e) => broken(e.to_string()),
        }
    }

    pub(crate) fn open_on(layout: &Layout, segs: &[String], id: &str) -> Cgroup {
        let mut dirs = plan(layout, segs, id);
        dirs.retain(|d| !d.optional || d.path.is_dir());
        Cgroup {
            parent: segs.join("/"),
            id: id.to_string(),
            dirs,
            broken: None,
        }
    }

    fn usable(&self) -> Result<()> {
        match &self.broken {
            Some(why) => Err(CgroupError::Io(why.clone())),
            None => Ok(()),
        }
    }

    /// `<parent>/<id>`, as given.
    pub fn name(&self) -> String {
        format!("{}/{}", self.parent, self.id)
    }

    /// The cgroup's directories, one per hierarchy.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// Moves process `pid` (all its threads) into the cgroup in every hierarchy.
    pub fn add_task(&self, pid: i32) -> Result<()> {
        self.usable()?;
        for d in &self.dirs {
            let f = d.path.join("cgroup.procs");
            std::fs::write(&f, pid.to_string()).map_err(|e| {
                io_err(
                    format!("cannot move process {pid} into {}", d.path.display()),
                    e,
                )
            })?;
        }
        Ok(())
    }

    /// The cgroup2 directory, for a child born into it (clone3's
    /// CLONE_INTO_CGROUP) instead of moved there afterwards.
    pub fn v2_dir(&self) -> Option<&Path> {
        self.dirs.iter().find(|d| d.v2).map(|d| d.path.as_path())
    }

    /// Moves the calling thread into the cgroup in every hierarchy (all but
    /// the cgroup2 one when `born_in_v2`). For a freshly forked, single
    /// threaded child: see [`join_self`].
    pub fn join_self(&self, born_in_v2: bool) -> Result<()> {
        self.usable()?;
        for d in self.dirs.iter().filter(|d| !(d.v2 && born_in_v2)) {
            join_self(&d.path.join("cgroup.procs"))
                .map_err(|e| io_err(format!("cannot move into {}", d.path.display()), e))?;
        }
        Ok(())
    }

    /// The cgroup.procs files; writing a pid into each joins the cgroup.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|d| d.path.join("cgroup.procs"))
            .collect()
    }

    /// Pids in the cgroup, in any hierarchy (sorted, no duplicates).
    pub fn procs(&self) -> Vec<i32> {
        let set: BTreeSet<i32> = self
            .procs_files()
            .iter()
            .flat_map(|f| read_pids(f))
            .collect();
        set.into_iter().collect()
    }

    /// True if the kernel's OOM killer killed a task of this cgroup.
    pub fn oom_killed(&self) -> bool {
        let Some(d) = self
            .dirs
            .iter()
            .find(|d| d.has("memory"))
            .or_else(|| self.dirs.iter().find(|d| d.v2))
        else {
            return false;
        };
        let file = if d.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(d.path.join(file))
            .ok()
            .and_then(|t| limits::flat_keyed(&t, "oom_kill"))
            .is_some_and(|n| n > 0)
    }

    /// Sends `sig` to every process of the cgroup. SIGKILL goes through
    /// cgroup.kill when there is one; otherwise the cgroup is frozen while the
    /// pids are listed and signalled, so a fork cannot slip through.
    pub fn kill_all(&self, sig: Signal) -> Result<()> {
        self.usable()?;
        if sig == Signal::SIGKILL {
            if let Some(f) = self
                .dirs
                .iter()
                .filter(|d| d.v2)
                .map(|d| d.path.join("cgroup.kill"))
                .find(|f| f.exists())
            {
                std::fs::write(&f, "1")
                    .map_err(|e| io_err(format!("cannot write {}", f.display()), e))?;
                // A process that joined the v1 hierarchies only (a racing exec) gets it too.
                self.signal_listed(sig);
                return Ok(());
            }
        }
        let frozen = self.freeze();
        self.signal_listed(sig);
        if let Some(fz) = &frozen {
            if let Err(e) = fz.thaw() {
                return Err(CgroupError::Io(format!(
                    "cannot thaw {}: {}",
                    fz_path(fz).display(),
                    e.kind()
                )));
            }
        } else if sig == Signal::SIGKILL {
            // Unfrozen, a task may fork between listing and killing: repeat until empty.
            wait_until(SETTLE_TIMEOUT, || {
                self.signal_listed(sig);
                self.procs().is_empty()
            });
        }
        Ok(())
    }

    fn signal_listed(&self, sig: Signal) {
        for pid in self.procs() {
            // ESRCH: it already exited; nothing else can fail for root.
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }

    /// Freezes the cgroup; Some(controller) once frozen, None when there is no
    /// freezer or it did not settle (the caller then copes without).
    fn freeze(&self) -> Option<FreezerController> {
        let d = self
            .dirs
            .iter()
            .find(|d| d.has("freezer"))
            .or_else(|| self.dirs.iter().find(|d| d.v2 && !d.optional))?;
        let fz = FreezerController::new(d.path.clone(), d.mount.clone(), d.v2);
        fz.freeze().ok()?;
        let settled = wait_until(SETTLE_TIMEOUT, || {
            if d.v2 {
                // cgroup.freeze reads back what was asked; cgroup.events says when it is done.
                std::fs::read_to_string(d.path.join("cgroup.events"))
                    .ok()
                    .and_then(|t| limits::flat_keyed(&t, "frozen"))
                    == Some(1)
            } else {
                matches!(fz.state(), Ok(FreezerState::Frozen))
            }
        });
        if settled {
            Some(fz)
        } else {
            let _ = fz.thaw();
            None
        }
    }

    /// Removes the cgroup's directory in every hierarchy, waiting briefly for
    /// exiting tasks to leave. Already gone is fine.
    pub fn remove(&self) -> Result<()> {
        self.usable()?;
        // Dirs still to remove, with the last error; only EBUSY (tasks still
        // exiting) is worth waiting for, and all dirs share one deadline.
        let mut left: Vec<(&Dir, Option<io::Error>)> =
            self.dirs.iter().map(|d| (d, None)).collect();
        let mut fatal = None;
        wait_until(SETTLE_TIMEOUT, || {
            left.retain_mut(|(d, last)| match std::fs::remove_dir(&d.path) {
                Ok(()) => false,
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    *last = Some(e);
                    true
                }
                Err(e) => {
                    fatal.get_or_insert_with(|| {
                        io_err(format!("cannot remove {}", d.path.display()), e)
                    });
                    false
                }
            });
            left.is_empty() || fatal.is_some()
        });
        if let Some(e) = fatal {
            return Err(e);
        }
        match left.first() {
            None => Ok(()),
            Some((d, last)) => {
                let why = last.as_ref().map(|e| e.to_string()).unwrap_or_default();
                let more = match left.len() {
                    1 => String::new(),
                    n => format!(" and {} other hierarchies", n - 1),
                };
                Err(CgroupError::Io(format!(
                    "cannot remove {}{more}: {why}; processes still inside: {:?}",
                    d.path.display(),
                    self.procs()
                )))
            }
        }
    }

    /// See [`remove_parent_if_empty`].
    pub fn remove_parent_if_empty(parent: &str) -> Result<()> {
        remove_parent_if_empty(parent)
    }
}

fn fz_path(fz: &FreezerController) -> &Path {
    use cgroups_rs::fs::Controller;
    fz.path()
}

/// Removes `<parent>` (and its own empty parents, up to the mount) in every
/// hierarchy when no cgroup is left in it. Still in use is not an error.
pub fn remove_parent_if_empty(parent: &str) -> Result<()> {
    let layout = cached_layout().map_err(CgroupError::Io)?;
    remove_parent_on(layout, parent)
}

pub(crate) fn remove_parent_on(layout: &Layout, parent: &str) -> Result<()> {
    let segs = check_names(parent, "x")?;
    let mounts = layout
        .v1
        .iter()
        .map(|h| &h.mount_point)
        .chain(layout.unified.iter());
    for m in mounts {
        for depth in (1..=segs.len()).rev() {
            let mut p = m.clone();
            p.extend(&segs[..depth]);
            match std::fs::remove_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // EBUSY: another container's cgroup (or a task) is still in it.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => break,
                Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => break,
                Err(e) => return Err(io_err(format!("cannot remove {}", p.display()), e)),
            }
        }
    }
    Ok(())
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

    // ---- Against the real kernel (tests run as root). ----

    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const BUSYBOX: &str = "/bin/busybox";

    /// Orphans of killed shells must be reaped by us (pid 1 here does not reap).
    fn become_subreaper() {
        static ONCE: OnceLock<()> = OnceLock::new();
        ONCE.get_or_init(|| {
            // SAFETY: prctl with integer arguments only.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        });
    }

    fn unique_parent(tag: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        format!(
            "minirt-test-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Owns everything a test made: kills and reaps its processes, removes
    /// the cgroup and its parent, even when the test panics.
    struct Scratch {
        layout: Layout,
        parent: String,
        cg: Option<Cgroup>,
        children: Vec<Child>,
        seen: BTreeSet<i32>,
    }

    impl Scratch {
        fn new(layout: Layout, tag: &str) -> Scratch {
            become_subreaper();
            Scratch {
                layout,
                parent: unique_parent(tag),
                cg: None,
                children: Vec::new(),
                seen: BTreeSet::new(),
            }
        }

        fn create(&mut self, res: &Resources) -> Result<&Cgroup> {
            let cg = Cgroup::create_on(&self.layout, &self.parent, "c1", res)?;
            Ok(self.cg.insert(cg))
        }

        fn cg(&self) -> &Cgroup {
            self.cg.as_ref().expect("cgroup created")
        }

        /// A busybox shell that waits for one line on stdin before running `script`.
        fn spawn_held(&mut self, script: &str) -> usize {
            let child = Command::new(BUSYBOX)
                .args(["sh", "-c", &format!("read go; {script}")])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn busybox");
            self.children.push(child);
            self.children.len() - 1
        }

        fn release(&mut self, i: usize) {
            let stdin = self.children[i].stdin.as_mut().expect("stdin");
            stdin.write_all(b"go\n").expect("release child");
        }

        fn note_procs(&mut self) -> Vec<i32> {
            let p = self.cg().procs();
            self.seen.extend(p.iter().copied());
            p
        }

        /// Everything under the test's parent, in any hierarchy.
        fn leftovers(&self) -> Vec<PathBuf> {
            let mounts = self.layout.v1.iter().map(|h| &h.mount_point);
            mounts
                .chain(self.layout.unified.iter())
                .map(|m| m.join(&self.parent))
                .filter(|p| p.exists())
                .collect()
        }

        fn reap_seen(&mut self) {
            let pids: Vec<i32> = self.seen.iter().copied().collect();
            wait_until(SETTLE_TIMEOUT, || {
                pids.iter().all(|&p| {
                    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
                    match waitpid(Pid::from_raw(p), Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::StillAlive) => false,
                        Ok(_) => true,
                        Err(_) => !Path::new(&format!("/proc/{p}")).exists(),
                    }
                })
            });
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            if let Some(cg) = self.cg.take() {
                self.seen.extend(cg.procs());
                let _ = cg.kill_all(Signal::SIGKILL);
                for c in &mut self.children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                self.reap_seen();
                let _ = cg.remove();
            }
            for c in &mut self.children {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = remove_parent_on(&self.layout, &self.parent);
        }
    }

    fn host() -> Layout {
        Layout::detect().expect("cgroup layout of this host")
    }

    fn read(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
            .trim()
            .to_string()
    }

    fn dir_with<'a>(cg: &'a Cgroup, controller: &str) -> &'a Path {
        let d = cg.dirs.iter().find(|d| d.has(controller));
        &d.unwrap_or_else(|| panic!("no {controller} dir")).path
    }

    #[test]
    fn create_writes_limits_and_remove_leaves_nothing() {
        let mut s = Scratch::new(host(), "limits");
        let res = Resources {
            memory: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            pids_limit: Some(20),
            ..Default::default()
        };
        s.create(&res).unwrap();
        let cg = s.cg();
        assert!(!cg.dirs.is_empty());
        assert!(cg.dirs.iter().all(|d| d.path.is_dir()));
        assert_eq!(cg.procs_files().len(), cg.dirs.len());
        if s.layout.mode == Mode::Hybrid {
            assert!(cg.dirs.iter().any(|d| d.v2), "hybrid: cgroup2 dir made too");
        }
        if s.layout.mode == Mode::Unified {
            let d = &cg.dirs[0].path;
            assert_eq!(read(d, "memory.max"), (64u64 << 20).to_string());
            assert_eq!(read(d, "cpu.max"), "50000 100000");
            assert_eq!(read(d, "pids.max"), "20");
        } else {
            let mem = dir_with(cg, "memory");
            assert_eq!(
                read(mem, "memory.limit_in_bytes"),
                (64u64 << 20).to_string()
            );
            if mem.join("memory.memsw.limit_in_bytes").exists() {
                assert_eq!(
                    read(mem, "memory.memsw.limit_in_bytes"),
                    (64u64 << 20).to_string()
                );
            }
            let cpu = dir_with(cg, "cpu");
            assert_eq!(read(cpu, "cpu.cfs_quota_us"), "50000");
            assert_eq!(read(cpu, "cpu.cfs_period_us"), "100000");
            assert_eq!(read(dir_with(cg, "pids"), "pids.max"), "20");
            let cpuset = dir_with(cg, "cpuset");
            let mount = s.layout.v1_mount("cpuset").unwrap();
            assert_eq!(read(cpuset, "cpuset.cpus"), read(mount, "cpuset.cpus"));
            assert_eq!(read(cpuset, "cpuset.mems"), read(mount, "cpuset.mems"));
            let devices = read(dir_with(cg, "devices"), "devices.list");
            assert!(devices.lines().any(|l| l == "c 1:3 rwm"), "{devices}");
            assert!(!devices.contains("a *:*"), "{devices}");
        }
        // open() finds the same directories; the public calls work as the run path uses them.
        let opened = Cgroup::open(&s.parent, "c1");
        assert_eq!(opened.paths(), cg.paths());
        assert_eq!(opened.name(), format!("{}/c1", s.parent));

        opened.remove().unwrap();
        assert!(cg.dirs.iter().all(|d| !d.path.exists()));
        cg.remove().unwrap(); // already gone is fine
        Cgroup::remove_parent_if_empty(&s.parent).unwrap();
        assert_eq!(s.leftovers(), Vec::<PathBuf>::new());
    }

    #[test]
    fn failed_create_leaves_nothing_and_existing_cgroup_is_not_reused() {
        let mut s = Scratch::new(host(), "rollback");
        // pids.max refuses more than the kernel's PID_MAX_LIMIT: fails after every mkdir.
        let bad = Resources {
            memory: Some(64 << 20),
            pids_limit: Some(1 << 40),
            ..Default::default()
        };
        let e = s.create(&bad).unwrap_err().to_string();
        assert!(e.contains("process limit"), "{e}");
        assert!(!e.contains('\n'));
        assert_eq!(s.leftovers(), Vec::<PathBuf>::new());

        s.create(&Resources::default()).unwrap();
        let again = Cgroup::create_on(&s.layout, &s.parent, "c1", &Resources::default());
        let e = again.unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        assert!(
            s.cg().dirs.iter().all(|d| d.path.is_dir()),
            "first one intact"
        );
    }

    #[test]
    fn memory_hog_is_oom_killed() {
        let mut s = Scratch::new(host(), "oom");
        s.create(&Resources {
            memory: Some(16 << 20),
            ..Default::default()
        })
        .unwrap();
        let i = s.spawn_held(&format!(
            "exec {BUSYBOX} dd if=/dev/zero of=/dev/null bs=64M count=1"
        ));
        let pid = s.children[i].id() as i32;
        s.cg().add_task(pid).unwrap();
        assert_eq!(s.note_procs(), vec![pid]);
        assert!(!s.cg().oom_killed());
        s.release(i);
        let status = s.children[i].wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        assert!(s.cg().oom_killed());
        assert!(s.cg().procs().is_empty());
    }

    #[test]
    fn pids_limit_stops_forks_and_kill_all_empties_the_cgroup() {
        let mut s = Scratch::new(host(), "pids");
        s.create(&Resources {
            pids_limit: Some(10),
            ..Default::default()
        })
        .unwrap();
        // busybox sh gives up on the first failed fork, so it spawns sleepers
        // until the limit bites and then exits, leaving them behind.
        let i = s.spawn_held(&format!(
            "i=0; while [ $i -lt 30 ]; do {BUSYBOX} sleep 60 & i=$((i+1)); done; echo all 30 started"
        ));
        let pid = s.children[i].id() as i32;
        s.cg().add_task(pid).unwrap();
        s.release(i);
        let mut line = String::new();
        let err = s.children[i].stderr.take().expect("stderr");
        BufReader::new(err).read_line(&mut line).unwrap();
        assert!(line.contains("can't fork"), "{line:?}");
        let status = s.children[i].wait().unwrap();
        assert!(!status.success(), "{status:?}");
        let procs = s.note_procs();
        assert!(!procs.contains(&pid));
        // The shell held one of the 10 slots while it forked the sleepers.
        assert_eq!(procs.len(), 9, "{procs:?}");
        if s.layout.mode != Mode::Unified {
            let events = read(dir_with(s.cg(), "pids"), "pids.events");
            assert!(
                limits::flat_keyed(&events, "max").unwrap_or(0) > 0,
                "{events}"
            );
        }

        // SIGTERM goes through the freezer; every sleeper dies.
        s.cg().kill_all(Signal::SIGTERM).unwrap();
        // SIGTERM goes through the freezer; every sleeper and the shell die.
        s.cg().kill_all(Signal::SIGTERM).unwrap();
        s.reap_seen();
        assert!(wait_until(SETTLE_TIMEOUT, || s.cg().procs().is_empty()));
        s.cg().remove().unwrap();
        remove_parent_on(&s.layout, &s.parent).unwrap();
        assert_eq!(s.leftovers(), Vec::<PathBuf>::new());
    }

    #[test]
    fn sigkill_reaches_every_process_and_remove_waits_for_exits() {
        let mut s = Scratch::new(host(), "kill");
        s.create(&Resources::default()).unwrap();
        let i = s.spawn_held(&format!(
            "for i in 1 2 3; do {BUSYBOX} sleep 60 & done; echo spawned; wait"
        ));
        let pid = s.children[i].id() as i32;
        s.cg().add_task(pid).unwrap();
        s.release(i);
        let mut line = String::new();
        let out = s.children[i].stdout.take().expect("stdout");
        BufReader::new(out).read_line(&mut line).unwrap();
        assert_eq!(s.note_procs().len(), 4);
        s.cg().kill_all(Signal::SIGKILL).unwrap();
        // No wait for the exits here: remove() polls until the kernel lets go.
        s.cg().remove().unwrap();
        let status = s.children[i].wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(s.cg().dirs.iter().all(|d| !d.path.exists()));
    }

    #[test]
    fn remove_of_a_busy_cgroup_fails_after_a_bounded_wait() {
        let mut s = Scratch::new(host(), "busy");
        s.create(&Resources::default()).unwrap();
        let i = s.spawn_held("exit 0");
        s.cg().add_task(s.children[i].id() as i32).unwrap();
        s.note_procs();
        let t = Instant::now();
        let e = s.cg().remove().unwrap_err().to_string();
        assert!(t.elapsed() < SETTLE_TIMEOUT + Duration::from_secs(2));
        assert!(
            t.elapsed() >= SETTLE_TIMEOUT,
            "it waited for the tasks to leave"
        );
        assert!(e.contains("processes still inside"), "{e}");
        // The parent is still in use: it stays, without an error.
        remove_parent_on(&s.layout, &s.parent).unwrap();
        assert!(!s.leftovers().is_empty());
    }

    /// A unified layout: the host's own on a cgroup2-only host (the VM of
    /// scripts/vm-test), else this host's cgroup2 mount taken as unified.
    fn unified_layout() -> Option<Layout> {
        let h = host();
        if h.mode == Mode::Unified {
            return Some(h);
        }
        Some(Layout {
            mode: Mode::Unified,
            v1: vec![],
            unified: Some(h.unified?),
        })
    }

    /// Runs `script` in a busybox shell inside the scratch cgroup; its output.
    fn run_inside(s: &mut Scratch, script: &str) -> (bool, String) {
        let i = s.spawn_held(&format!("{script} 2>&1"));
        let pid = s.children[i].id() as i32;
        s.cg().add_task(pid).unwrap();
        s.release(i);
        let mut out = String::new();
        let mut stdout = s.children[i].stdout.take().expect("stdout");
        std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
        (s.children[i].wait().unwrap().success(), out)
    }

    #[test]
    fn cgroup2_device_filter_refuses_disks_and_goes_with_the_cgroup() {
        let Some(layout) = unified_layout() else {
            panic!("this test needs a cgroup2 mount");
        };
        let mut s = Scratch::new(layout, "dev");
        s.create(&Resources::default()).unwrap();
        let dir = s.cg().v2_dir().unwrap().to_path_buf();
        let ids = v2_devices::attached_ids(&dir).unwrap();
        assert_eq!(ids.len(), 1, "one device program on {}", dir.display());
        let nodes = tempfile::tempdir().unwrap();
        let n = nodes.path().display();
        // mknod of any device is allowed (Docker's `b *:* m`), opening a disk is not.
        let (ok, out) = run_inside(
            &mut s,
            &format!("{BUSYBOX} mknod {n}/disk b 8 0 && {BUSYBOX} head -c1 {n}/disk"),
        );
        assert!(!ok, "{out}");
        assert!(out.contains("Operation not permitted"), "{out}");
        assert!(nodes.path().join("disk").exists(), "mknod itself worked");
        let (ok, out) = run_inside(
            &mut s,
            &format!(
                "{BUSYBOX} mknod {n}/null c 1 3 && {BUSYBOX} head -c1 {n}/null && echo read-ok"
            ),
        );
        assert!(ok && out.contains("read-ok"), "{out}");
        // The same open outside the cgroup is not refused with EPERM: the filter did it.
        let outside = Command::new(BUSYBOX)
            .args(["head", "-c1", &format!("{n}/disk")])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&outside.stderr);
        assert!(!err.contains("Operation not permitted"), "{err}");

        s.reap_seen();
        s.cg().remove().unwrap();
        s.cg = None;
        // The kernel frees the program once the directory is gone.
        assert!(
            wait_until(Duration::from_secs(20), || {
                !v2_devices::program_exists(ids[0]).unwrap()
            }),
            "program {} still loaded after the cgroup was removed",
            ids[0]
        );

        // A privileged container gets no filter at all.
        s.create(&Resources {
            all_devices: true,
            ..Default::default()
        })
        .unwrap();
        let dir = s.cg().v2_dir().unwrap().to_path_buf();
        assert_eq!(v2_devices::attached_ids(&dir).unwrap(), Vec::<u32>::new());
    }

    /// The cgroup2 code path, on this host's cgroup2 mount taken as unified.
    #[test]
    fn cgroup2_mount_as_unified_layout() {
        let Some(mount) = host().unified else {
            return; // no cgroup2 mount at all: nothing to drive
        };
        let layout = Layout {
            mode: Mode::Unified,
            v1: vec![],
            unified: Some(mount.clone()),
        };
        let offered = read(&mount, "cgroup.controllers");
        let mut s = Scratch::new(layout, "v2");
        let limited = Resources {
            memory: Some(32 << 20),
            pids_limit: Some(50),
            ..Default::default()
        };
        if offered.split_whitespace().any(|c| c == "memory") {
            s.create(&limited).unwrap();
            assert_eq!(
                read(&s.cg().dirs[0].path, "memory.max"),
                (32u64 << 20).to_string()
            );
            s.cg().remove().unwrap();
            s.cg = None;
        } else {
            let e = s.create(&limited).unwrap_err().to_string();
            assert!(e.contains("no memory cgroup controller"), "{e}");
            assert_eq!(s.leftovers(), Vec::<PathBuf>::new(), "checked before mkdir");
        }

        s.create(&Resources::default()).unwrap();
        let i = s.spawn_held(&format!("{BUSYBOX} sleep 60 & echo spawned; wait"));
        let pid = s.children[i].id() as i32;
        s.cg().add_task(pid).unwrap();
        s.release(i);
        let mut line = String::new();
        let out = s.children[i].stdout.take().expect("stdout");
        BufReader::new(out).read_line(&mut line).unwrap();
        assert_eq!(s.note_procs().len(), 2);
        assert!(!s.cg().oom_killed());

        // SIGTERM: frozen through cgroup.freeze, signalled, thawed.
        s.cg().kill_all(Signal::SIGTERM).unwrap();
        let status = s.children[i].wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        s.reap_seen();
        assert!(wait_until(SETTLE_TIMEOUT, || s.cg().procs().is_empty()));
        assert_eq!(
            read(&s.cg().dirs[0].path, "cgroup.freeze"),
            "0",
            "thawed again"
        );

        // SIGKILL through cgroup.kill.
        let j = s.spawn_held("exit 0");
        let pid = s.children[j].id() as i32;
        s.cg().add_task(pid).unwrap();
        s.cg().kill_all(Signal::SIGKILL).unwrap();
        assert_eq!(s.children[j].wait().unwrap().signal(), Some(libc::SIGKILL));
        s.cg().remove().unwrap();
        remove_parent_on(&s.layout, &s.parent).unwrap();
        assert_eq!(s.leftovers(), Vec::<PathBuf>::new());
    }
}
