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

use super::layout::{Layout, Mode};
use super::limits::{self, Wanted};
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
            ("memory", "memory", wanted.memory.is_some(), "a memory limit"),
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
        // The hybrid cgroup2 directory becomes a must once a limit lives there.
        let v2_needed = homes
            .iter()
            .any(|(v1, _, asked, _)| *asked && layout.v1_mount(v1).is_none());
        for d in dirs.iter_mut().filter(|d| d.v2) {
            d.optional &= !v2_needed;
        }

        let mut undo = Undo::default();
        let result = Cgroup::build(&mut dirs, &enable, &wanted, &mut undo);
        if let Err(e) = result {
            undo.rollback();
            return Err(e);
        }
        Ok(Cgroup {
            parent: segs.join("/"),
            id: id.to_string(),
            dirs,
            broken: None,
        })
    }

    fn build(dirs: &mut Vec<Dir>, enable: &[String], w: &Wanted, undo: &mut Undo) -> Result<()> {
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
            limits::write_devices(&d.path)?;
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
        let mut errors = Vec::new();
        for d in &self.dirs {
            let mut last = None;
            let gone = wait_until(SETTLE_TIMEOUT, || match std::fs::remove_dir(&d.path) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => true,
                Err(e) => {
                    last = Some(e);
                    false
                }
            });
            if !gone {
                let pids = read_pids(&d.path.join("cgroup.procs"));
                let why = last.map(|e| e.to_string()).unwrap_or_default();
                errors.push(format!(
                    "cannot remove {} ({why}; processes still inside: {pids:?})",
                    d.path.display()
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CgroupError::Io(errors.join("; ")))
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
