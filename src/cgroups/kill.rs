//! Signalling every process of a container's cgroup without racing forks:
//! `cgroup.kill` for SIGKILL where there is one, else the cgroup frozen while
//! its processes are listed and signalled.

use std::path::Path;

use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::FreezerState;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cgroup::{io_err, wait_until, Cgroup, SETTLE_TIMEOUT};
use super::limits;
use super::{CgroupError, Result};

impl Cgroup {
    /// Sends `sig` to every process of the cgroup. SIGKILL goes through
    /// cgroup.kill when there is one; otherwise the cgroup is frozen while the
    /// pids are listed and signalled, so a fork cannot slip through.
    pub(crate) fn kill_all(&self, sig: Signal) -> Result<()> {
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
}

fn fz_path(fz: &FreezerController) -> &Path {
    use cgroups_rs::fs::Controller;
    fz.path()
}
