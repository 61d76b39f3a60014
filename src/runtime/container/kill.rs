//! `kill` (the init or every process of the cgroup) and `delete` (the
//! processes, the cgroup, the poststop hooks, the state dir).

use super::{err, Result, Runtime};
use crate::runtime::hooks;
use crate::runtime::state::{self, Status};
use crate::util;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::time::Duration;

impl Runtime {
    pub fn kill(&self, id: &str, sig: Signal, all: bool) -> Result<()> {
        let rec = self.record(id)?;
        if self.status_of(&rec) == Status::Stopped {
            return Err(err(format!("container {id} is not running")));
        }
        if all {
            let cg = Self::cgroup(&rec);
            for pid in cg.procs() {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
            }
            return Ok(());
        }
        nix::sys::signal::kill(Pid::from_raw(rec.pid), sig)
            .map_err(|e| err(format!("sending {sig} to {id}: {e}")))
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let rec = self.record(id)?;
        let st = self.status_of(&rec);
        if st != Status::Stopped && !force {
            return Err(err(format!(
                "cannot delete container {id} that is {st}: stop it first or use --force"
            )));
        }
        let cg = Self::cgroup(&rec);
        if st != Status::Stopped {
            let _ = cg.kill_all(Signal::SIGKILL);
            let _ = nix::sys::signal::kill(Pid::from_raw(rec.pid), Signal::SIGKILL);
            // Not our child: it is gone once it is a zombie for its reaper.
            let gone = util::wait_until(Duration::from_secs(10), Duration::from_millis(2), || {
                !util::process_alive(rec.pid, rec.pid_start)
            });
            if !gone {
                return Err(err(format!("container {id}'s init does not die")));
            }
        }
        if !rec.own_pid_ns {
            let _ = cg.kill_all(Signal::SIGKILL);
        }
        cg.remove().map_err(|e| err(e.to_string()))?;
        let _ = crate::cgroups::remove_parent_if_empty(&rec.cgroup_parent);
        if let Some(h) = rec.hooks.as_ref().and_then(|h| h.poststop().clone()) {
            let st =
                serde_json::to_vec(&state::oci_state(&rec, Status::Stopped)).unwrap_or_default();
            if let Err(e) = hooks::run_all("poststop", &h, &st) {
                tracing::warn!("{e}");
            }
        }
        std::fs::remove_dir_all(self.dir(id))
            .map_err(|e| err(format!("removing the state of {id}: {e}")))
    }
}
