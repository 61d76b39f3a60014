//! `pause` / `resume`: the cgroup's freezer.

use super::{err, Result, Runtime};
use crate::cgroups::Cgroup;
use crate::runtime::state::Status;
use std::path::PathBuf;
use std::time::Duration;

impl Runtime {
    pub fn pause(&self, id: &str) -> Result<()> {
        self.freeze(id, true)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        self.freeze(id, false)
    }

    fn freeze(&self, id: &str, on: bool) -> Result<()> {
        let rec = self.record(id)?;
        let st = self.status_of(&rec);
        let ok = if on {
            st == Status::Running
        } else {
            st == Status::Paused
        };
        if !ok {
            return Err(err(format!("container {id} is {st}")));
        }
        let cg = Self::cgroup(&rec);
        let file = freezer_file(&cg).ok_or_else(|| err("this host has no freezer cgroup"))?;
        let want = if on { "FROZEN" } else { "THAWED" };
        std::fs::write(&file, want).map_err(|e| err(format!("{}: {e}", file.display())))?;
        let done =
            crate::util::wait_until(Duration::from_secs(5), Duration::from_millis(1), || {
                std::fs::read_to_string(&file).unwrap_or_default().trim() == want
            });
        if !done {
            return Err(err(format!("container {id} did not become {want}")));
        }
        Ok(())
    }
}

pub(super) fn freezer_file(cg: &Cgroup) -> Option<PathBuf> {
    cg.paths()
        .into_iter()
        .map(|d| d.join("freezer.state"))
        .find(|f| f.exists())
}

pub(super) fn frozen(cg: &Cgroup) -> bool {
    freezer_file(cg)
        .and_then(|f| std::fs::read_to_string(f).ok())
        .is_some_and(|s| s.trim() == "FROZEN")
}
