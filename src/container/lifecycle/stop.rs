//! stop, kill, rm and prune.

use super::reconcile::reconcile;
use super::{config_of, is_running, lookup, monitor_alive, store};
use crate::container::runtime;
use crate::container::ContainerError;
use crate::store::containers::{self, ContainerRow, Status};
use crate::{network, util, Instance, Result};
use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};
use tracing::warn;

/// Waits for a start in progress (a row in "created" whose owner lives: a
/// monitor restarting it, another command starting it) to end; the row as
/// it is then.
pub(super) fn settle(inst: &Instance, row: ContainerRow) -> Result<ContainerRow> {
    if !(row.status == Status::Created && monitor_alive(&row)) {
        return Ok(row);
    }
    wait_until(Duration::from_secs(30), || {
        match store(inst).and_then(|s| Ok(containers::get(s.conn(), &row.id)?)) {
            Ok(Some(r)) => r.status != Status::Created || !monitor_alive(&r),
            _ => true,
        }
    });
    lookup(inst, &row.id)
}

fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut delay = Duration::from_millis(2);
    while !cond() {
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
    true
}

/// Waits for the monitor to record the exit; if the monitor is gone, does
/// its teardown here.
fn await_finished(inst: &Instance, id: &str, default_code: i32) -> Result<()> {
    let done = wait_until(Duration::from_secs(10), || {
        match store(inst).and_then(|s| Ok(containers::get(s.conn(), id)?)) {
            Ok(Some(r)) => r.status == Status::Exited || !monitor_alive(&r),
            _ => true,
        }
    });
    let s = store(inst)?;
    if let Some(r) = containers::get(s.conn(), id)? {
        if r.status != Status::Exited || !done {
            drop(s);
            runtime::finish(inst, id, default_code)?;
        }
    }
    Ok(())
}

/// SIGTERM (or the image's stop signal), SIGKILL after `timeout`.
pub fn stop(inst: &Instance, key: &str, timeout: Duration) -> Result<()> {
    stop_with(inst, key, Some(timeout.as_secs() as i64), None)
}

/// `stop`: the container's stop signal (`--stop-signal`, the image's
/// StopSignal, else SIGTERM) unless `signal` is given, then SIGKILL after
/// `timeout` seconds (None: the container's `--stop-timeout`, else 10;
/// negative: wait for ever). Its restart policy stops applying.
pub fn stop_with(
    inst: &Instance,
    key: &str,
    timeout: Option<i64>,
    signal: Option<Signal>,
) -> Result<()> {
    reconcile(inst)?;
    let row = lookup(inst, key)?;
    crate::container::restart::stop_by_user(inst, &row.id);
    let row = settle(inst, row)?;
    if !is_running(&row) {
        if row.status == Status::Running && monitor_alive(&row) {
            // It has just exited and its monitor is recording that.
            await_finished(inst, &row.id, 255)?;
        }
        return Ok(());
    }
    let cfg = config_of(&row);
    let signal = match signal {
        Some(s) => s,
        None => match &cfg.stop_signal {
            Some(s) => parse_signal(s)?,
            None => Signal::SIGTERM,
        },
    };
    let secs = timeout.or(cfg.stop_timeout).unwrap_or(10);
    let pid = Pid::from_raw(row.pid);
    crate::container::events::container_now(
        inst,
        &row.id,
        "kill",
        &[("signal", &(signal as i32).to_string())],
    );
    let _ = send_signal(pid, signal);
    crate::fault::point("stop-after-term");
    let mut code = 128 + signal as i32;
    let grace = if secs < 0 {
        Duration::MAX
    } else {
        Duration::from_secs(secs as u64)
    };
    if !wait_until(grace, || !util::process_alive(row.pid, row.pid_start)) {
        crate::container::events::container_now(inst, &row.id, "kill", &[("signal", "9")]);
        let _ = send_signal(pid, Signal::SIGKILL);
        crate::fault::point("stop-after-kill");
        code = 137;
        wait_until(Duration::from_secs(10), || {
            !util::process_alive(row.pid, row.pid_start)
        });
    }
    await_finished(inst, &row.id, code)?;
    crate::container::events::container_now(inst, &row.id, "stop", &[]);
    Ok(())
}

/// Parses "KILL", "SIGKILL", "9".
pub fn parse_signal(s: &str) -> std::result::Result<Signal, ContainerError> {
    let bad = || ContainerError::Invalid(format!("invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

pub fn kill(inst: &Instance, key: &str, signal: Signal) -> Result<()> {
    reconcile(inst)?;
    let row = lookup(inst, key)?;
    if row.status == Status::Exited
        && crate::container::restart::is_restarting(inst, &row.id).is_some()
    {
        // As Docker: killing a restarting container calls the restart off.
        crate::container::restart::stop_by_user(inst, &row.id);
        return Ok(());
    }
    if !is_running(&row) {
        return Err(
            ContainerError::Conflict(format!("Container {} is not running", row.id)).into(),
        );
    }
    crate::container::restart::stop_by_user(inst, &row.id);
    crate::container::events::container_now(
        inst,
        &row.id,
        "kill",
        &[("signal", &(signal as i32).to_string())],
    );
    send_signal(Pid::from_raw(row.pid), signal)
        .map_err(|e| ContainerError::Runtime(format!("sending {signal} to {}: {e}", row.id)))?;
    if signal == Signal::SIGKILL {
        // Docker's kill returns once the container is dead.
        wait_until(Duration::from_secs(10), || {
            !util::process_alive(row.pid, row.pid_start)
        });
        await_finished(inst, &row.id, 137)?;
    }
    Ok(())
}

pub fn rm(inst: &Instance, key: &str, force: bool) -> Result<()> {
    reconcile(inst)?;
    rm_reconciled(inst, key, force)
}

/// The first half of an `rm` of several containers in one command: one
/// reconciliation for all of them (not one per container, each reading
/// every row), and with `force` every running one gets its SIGKILL now, so
/// their monitors tear them down side by side; [`rm_prepared`] then finds
/// each one exited (or about to be) instead of killing and waiting for one
/// after the other. A key that names nothing is left for `rm_prepared` to
/// report. Each container is killed under its removal intent, so a command
/// that dies after the kills still has its removals finished by the next
/// command (as a single `rm` has).
pub fn rm_prepare(inst: &Instance, keys: &[String], force: bool) -> Result<Prepared> {
    reconcile(inst)?;
    let mut prepared = Prepared::default();
    if !force {
        return Ok(prepared);
    }
    let mut running = vec![];
    for key in keys {
        let Ok(row) = lookup(inst, key) else {
            continue;
        };
        if is_running(&row) {
            crate::container::restart::stop_by_user(inst, &row.id);
            let intent = crate::intent::begin(
                inst,
                &crate::intent::Intent::ContainerRemove { id: row.id.clone() },
            )
            .map_err(|e| ContainerError::Runtime(format!("cannot record the removal: {e}")))?;
            prepared.intents.push(intent);
            running.push((key.clone(), row));
        }
    }
    if !running.is_empty() {
        // Their network teardown in one go, so the monitors do not queue
        // one by one on the firewall lock and the store's write lock for
        // it (see network::detach_many); what fails here they do.
        let ids: Vec<String> = running.iter().map(|(_, r)| r.id.clone()).collect();
        let res = store(inst).and_then(|mut s| Ok(network::detach_many(inst, &mut s, &ids)?));
        if let Err(e) = res {
            warn!("network teardown of {} containers: {e}", ids.len());
        }
        // Their names go from the DNS responder in one reload, not one
        // request per monitor queued on its lock (a monitor that finds its
        // endpoints gone skips its own).
        if let Err(e) = crate::network::dns::sync(inst) {
            warn!("{e}");
        }
        crate::fault::point("rm-after-detach-many");
    }
    for (key, row) in running {
        let _ = send_signal(Pid::from_raw(row.pid), Signal::SIGKILL);
        prepared.killed.push(key);
    }
    if !prepared.killed.is_empty() {
        crate::fault::point("rm-after-kill");
    }
    Ok(prepared)
}

/// What [`rm_prepare`] did: the keys whose containers it killed, and their
/// removal intents, held until the `rm` command is done with them.
#[derive(Default)]
pub struct Prepared {
    killed: Vec<String>,
    intents: Vec<crate::intent::Held>,
}

/// The second half of [`rm_prepare`]: one container. A `--rm` container
/// that `rm_prepare` killed may already be gone, removed by its own
/// monitor: that is a removal all the same, not "No such container".
pub fn rm_prepared(inst: &Instance, key: &str, force: bool, prepared: &Prepared) -> Result<()> {
    let killed = prepared.killed.iter().any(|k| k == key);
    match rm_inner(inst, key, force, killed) {
        Err(crate::Error::Container(ContainerError::NotFound(_)))
            if prepared.killed.iter().any(|k| k == key) =>
        {
            Ok(())
        }
        r => r,
    }
}

/// `rm` after `reconcile` (or `rm_prepare`) ran in this command.
pub fn rm_reconciled(inst: &Instance, key: &str, force: bool) -> Result<()> {
    rm_inner(inst, key, force, false)
}

/// [`rm_reconciled`]; `stopped`: `rm_prepare` already called the
/// container's restart policy off (a second write of its restart state per
/// container is a file write `rm -f` of 1000 made 1000 times more).
fn rm_inner(inst: &Instance, key: &str, force: bool, stopped: bool) -> Result<()> {
    let mut row = lookup(inst, key)?;
    if row.status == Status::Created && monitor_alive(&row) {
        // A start in progress: its owner is building it (rootfs, network)
        // right now; let it finish (or fail) before taking it apart.
        wait_until(Duration::from_secs(30), || {
            match store(inst).and_then(|s| Ok(containers::get(s.conn(), &row.id)?)) {
                Ok(Some(r)) => r.status != Status::Created || !monitor_alive(&r),
                _ => true,
            }
        });
        row = lookup(inst, key)?;
    }
    if is_running(&row) && !force {
        return Err(ContainerError::Conflict(format!(
            "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
            row.id
        ))
        .into());
    }
    if !force && crate::container::restart::is_restarting(inst, &row.id).is_some() {
        return Err(ContainerError::Conflict(format!(
            "You cannot remove a restarting container {}. Stop the container before attempting removal or force remove",
            row.id
        ))
        .into());
    }
    // The policy must not bring it back while it is taken apart.
    if !stopped {
        crate::container::restart::stop_by_user(inst, &row.id);
    }
    let row = settle(inst, row)?;
    // Finished by the next command should this one die half way.
    let _intent = crate::intent::begin(
        inst,
        &crate::intent::Intent::ContainerRemove { id: row.id.clone() },
    )
    .map_err(|e| ContainerError::Runtime(format!("cannot record the removal: {e}")))?;
    if is_running(&row) {
        let _ = send_signal(Pid::from_raw(row.pid), Signal::SIGKILL);
        wait_until(Duration::from_secs(10), || {
            !util::process_alive(row.pid, row.pid_start)
        });
        crate::fault::point("rm-after-kill");
        await_finished(inst, &row.id, 137)?;
    } else if row.status != Status::Exited && monitor_alive(&row) {
        // Its init is gone and its monitor is recording that right now.
        await_finished(inst, &row.id, 255)?;
    } else if row.status != Status::Exited {
        // Created but never ran, or its monitor crashed: release everything.
        runtime::finish(inst, &row.id, 255)?;
    }
    crate::fault::point("rm-after-finish");
    let mut s = store(inst)?;
    runtime::remove_files(inst, &row.id);
    crate::fault::point("rm-after-files");
    // The event and the deletion in one commit, not two.
    s.write(|tx| -> Result<()> {
        crate::container::events::container(tx, &row.id, "destroy", &[]);
        containers::delete(tx, &row.id)?;
        Ok(())
    })
}

/// Removes every stopped container; returns their ids.
pub fn prune(inst: &Instance) -> Result<Vec<String>> {
    reconcile(inst)?;
    let s = store(inst)?;
    let rows = containers::list(s.conn())?;
    drop(s);
    let mut removed = vec![];
    for r in rows.iter().filter(|r| r.status == Status::Exited) {
        rm(inst, &r.id, false)?;
        removed.push(r.id.clone());
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("10").unwrap(), Signal::SIGUSR1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
