//! `pause` / `unpause`: every process of a container frozen or thawed
//! through its cgroup (v1's `freezer.state`, v2's `cgroup.freeze`). The
//! state is read back from the cgroup by `inspect`, `exec` and these
//! commands; `ps` shows the flag they record in the store (one read of each
//! freezer per row made `ps` with 1000 containers grow by ~10 ms).

use super::lifecycle;
use super::runtime::cgroup_of;
use super::ContainerError;
use crate::Instance;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The freezer file of a container's cgroup and whether it is v2's.
fn freezer(inst: &Instance, id: &str) -> Option<(PathBuf, bool)> {
    let cg = cgroup_of(inst, id);
    // The hierarchy with the freezer is known from the layout: `ps` asks
    // this for every container, so no look into each hierarchy first.
    if let Some(d) = cg.v1_dir_of("freezer") {
        return Some((d.join("freezer.state"), false));
    }
    let f = cg.v2_dir()?.join("cgroup.freeze");
    f.exists().then_some((f, true))
}

/// Parses v1's `freezer.state` or v2's `cgroup.events` (`frozen 1`).
pub(crate) fn frozen_from(text: &str, v2: bool) -> bool {
    if v2 {
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["frozen", "1"])
    } else {
        text.trim() == "FROZEN"
    }
}

fn state_file(f: &std::path::Path, v2: bool) -> PathBuf {
    if v2 {
        f.with_file_name("cgroup.events")
    } else {
        f.to_path_buf()
    }
}

/// True when the container's processes are frozen.
pub fn is_paused(inst: &Instance, id: &str) -> bool {
    freezer(inst, id).is_some_and(|(f, v2)| {
        std::fs::read_to_string(state_file(&f, v2)).is_ok_and(|t| frozen_from(&t, v2))
    })
}

/// Freezes (`on`) or thaws the running container `key`, waiting until the
/// kernel reports it done.
pub fn set_paused(inst: &Instance, key: &str, on: bool) -> crate::Result<()> {
    lifecycle::reconcile(inst)?;
    let row = lifecycle::lookup(inst, key)?;
    if !lifecycle::is_running(&row) {
        return Err(
            ContainerError::Conflict(format!("Container {} is not running", row.id)).into(),
        );
    }
    let paused = is_paused(inst, &row.id);
    if paused != row.paused {
        // A pause or unpause killed between the freezer and the store:
        // the store follows the kernel again.
        record(inst, &row.id, paused)?;
    }
    if on && paused {
        return Err(
            ContainerError::Conflict(format!("Container {} is already paused", row.id)).into(),
        );
    }
    if !on && !paused {
        return Err(ContainerError::Conflict(format!("Container {} is not paused", row.id)).into());
    }
    let (f, v2) = freezer(inst, &row.id)
        .ok_or_else(|| ContainerError::Runtime("this host has no freezer cgroup".into()))?;
    let value = match (on, v2) {
        (true, true) => "1",
        (false, true) => "0",
        (true, false) => "FROZEN",
        (false, false) => "THAWED",
    };
    std::fs::write(&f, value)
        .map_err(|e| ContainerError::Runtime(format!("writing {}: {e}", f.display())))?;
    let start = Instant::now();
    loop {
        let now = std::fs::read_to_string(state_file(&f, v2)).unwrap_or_default();
        let done = if v2 {
            frozen_from(&now, true) == on
        } else {
            now.trim() == if on { "FROZEN" } else { "THAWED" }
        };
        if done {
            record(inst, &row.id, on)?;
            super::events::container_now(inst, &row.id, if on { "pause" } else { "unpause" }, &[]);
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = std::fs::write(&f, if v2 { "0" } else { "THAWED" });
            return Err(ContainerError::Runtime(format!(
                "the freezer of {} did not settle",
                row.id
            ))
            .into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The paused flag `ps` shows (see `containers::set_paused`).
fn record(inst: &Instance, id: &str, paused: bool) -> crate::Result<()> {
    let s = lifecycle::store(inst)?;
    crate::store::containers::set_paused(s.conn(), id, paused)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_state_reads_from_v1_and_v2_files() {
        assert!(frozen_from("FROZEN\n", false));
        assert!(!frozen_from("FREEZING\n", false));
        assert!(!frozen_from("THAWED\n", false));
        assert!(frozen_from("populated 1\nfrozen 1\n", true));
        assert!(!frozen_from("populated 1\nfrozen 0\n", true));
    }
}
