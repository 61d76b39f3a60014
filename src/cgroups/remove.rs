//! Removing a container's cgroup (waiting briefly for exiting tasks) and its
//! parent once no other container uses it.

use std::io;

use super::cgroup::{cached_layout, io_err, wait_until, Cgroup, SETTLE_TIMEOUT};
use super::layout::Layout;
use super::plan::{check_names, Dir};
use super::{CgroupError, Result};

impl Cgroup {
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
