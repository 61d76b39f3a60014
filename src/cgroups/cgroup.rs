//! One container's cgroup as a handle: its directories in every hierarchy
//! (planned in `plan`), opening it again by name, joining it, listing its
//! processes. Making it is in `create`, signalling in `kill`, OOM detection in
//! `oom`, removal in `remove`.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::layout::Layout;
use super::plan::{check_names, plan, Dir};
use super::{CgroupError, Result};

/// How long `remove` waits for exiting tasks, and `kill_all` for a freeze.
pub(super) const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(5);

/// A container's cgroup across hierarchies.
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub(super) parent: String,
    pub(super) id: String,
    pub(super) dirs: Vec<Dir>,
    /// Set when the host layout could not be read (open() cannot fail).
    pub(super) broken: Option<String>,
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
    use std::io::Write;
    // One path walk per hierarchy (an exists() check first was a second
    // one through the cgroupfs): `tasks` where there is one, else the
    // cgroup2 directory's cgroup.procs.
    let open = |p: &Path| std::fs::OpenOptions::new().write(true).open(p);
    let mut file = match open(&procs.with_file_name("tasks")) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => open(procs)?,
        Err(e) => return Err(e),
    };
    file.write_all(b"0")
}

pub(super) fn cached_layout() -> std::result::Result<&'static Layout, String> {
    static LAYOUT: OnceLock<std::result::Result<Layout, String>> = OnceLock::new();
    LAYOUT
        .get_or_init(|| Layout::detect().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

pub(super) fn io_err(what: String, e: io::Error) -> CgroupError {
    CgroupError::Io(format!("{what}: {e}"))
}

pub(super) fn read_pids(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Polls `cond` every few milliseconds until it holds or `timeout` passes.
pub(super) fn wait_until(timeout: Duration, cond: impl FnMut() -> bool) -> bool {
    crate::util::wait_until(timeout, POLL, cond)
}

impl Cgroup {
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

    pub(super) fn usable(&self) -> Result<()> {
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
    #[cfg(test)]
    pub(crate) fn add_task(&self, pid: i32) -> Result<()> {
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

    /// The directory in the v1 hierarchy that has `controller` (from the
    /// layout, no look at the filesystem).
    pub fn v1_dir_of(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| !d.v2 && d.has(controller))
            .map(|d| d.path.as_path())
    }

    /// The cgroup2 directory, for a child born into it (clone3's
    /// CLONE_INTO_CGROUP) instead of moved there afterwards.
    pub(crate) fn v2_dir(&self) -> Option<&Path> {
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
}
