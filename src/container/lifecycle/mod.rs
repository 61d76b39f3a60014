//! Lifecycle commands over the store and the kernel: run (foreground or
//! detached under a monitor), start, stop, kill, rm, list, reconcile.
//!
//! By concern: `run` (run, start, the monitor), `stop` (stop, kill, rm,
//! prune), `reconcile` (healing after crashes), `status` (the words `ps`
//! and `inspect` show).

mod reconcile;
mod run;
mod status;
mod stop;

pub use reconcile::{heal_intents, reconcile, release_created};
pub use run::{run_foreground, start, start_detached};
pub use status::{command_text, status, status_line, status_line_with, status_of, status_with};
pub use stop::{
    kill, parse_signal, prune, rm, rm_prepare, rm_prepared, rm_reconciled, stop, stop_with,
    Prepared,
};

use super::config::ContainerConfig;
use super::runtime;
use super::ContainerError;
use crate::store::containers::{self, ContainerRow, Status};
use crate::store::{Store, StoreError};
use crate::{util, Instance, Result};

pub(crate) fn store(inst: &Instance) -> Result<Store> {
    Ok(Store::open(&inst.db_path())?)
}

pub fn config_of(row: &ContainerRow) -> ContainerConfig {
    serde_json::from_str(&row.config).unwrap_or_default()
}

/// Looks a container up by id, name or prefix; a miss is `NotFound`.
pub fn lookup(inst: &Instance, key: &str) -> Result<ContainerRow> {
    let s = store(inst)?;
    containers::lookup(s.conn(), key).map_err(|e| match e {
        StoreError::NotFound(_) => ContainerError::NotFound(key.to_string()).into(),
        other => other.into(),
    })
}

/// True when the row's init process is alive.
pub fn is_running(row: &ContainerRow) -> bool {
    row.status == Status::Running && util::process_alive(row.pid, row.pid_start)
}

/// Releases everything of a container and deletes it (rows, dirs).
pub(crate) fn discard(inst: &Instance, id: &str) -> Result<()> {
    runtime::finish(inst, id, 255)?;
    runtime::remove_files(inst, id);
    let s = store(inst)?;
    super::events::container(s.conn(), id, "destroy", &[]);
    containers::delete(s.conn(), id)?;
    Ok(())
}

/// All containers after reconciliation (newest first).
pub fn list(inst: &Instance) -> Result<Vec<ContainerRow>> {
    reconcile(inst)?;
    let s = store(inst)?;
    Ok(containers::list(s.conn())?)
}

/// All containers after reconciliation (newest first), each with whether
/// its init runs, from one liveness check per live container (see
/// [`reconcile::reconcile_rows`]). The rows are read once, before the
/// check, and read again only when the check changed some (a dead owner's
/// row finished); a row that changes after the check is a later state,
/// as it was when the rows were read after it.
pub fn list_running(inst: &Instance) -> Result<Vec<(ContainerRow, bool)>> {
    reconcile::heal_all_but_rows(inst);
    let mut rows = containers::list(store(inst)?.conn())?;
    let checked = reconcile::reconcile_rows(inst, &rows)?;
    if checked.changed {
        rows = containers::list(store(inst)?.conn())?;
    }
    let alive = checked.alive;
    Ok(rows
        .into_iter()
        .map(|r| {
            let running = r.status == Status::Running
                && (alive.get(&r.id) == Some(&(r.pid, r.pid_start)) || is_running(&r));
            (r, running)
        })
        .collect())
}

fn monitor_alive(row: &ContainerRow) -> bool {
    util::process_alive(row.monitor_pid, row.monitor_start)
}
