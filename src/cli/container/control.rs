//! `minirt stop | kill | rm | restart | wait | rename`, and `system prune`.

use super::{cli_err, each, lookup_1, store_err};
use crate::cli::{CliError, CliResult};
use clap::Args;
use minirt::container::{events, lifecycle, pause};
use minirt::network;
use minirt::store::{containers, Store};
use minirt::util;
use minirt::Instance;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct RestartArgs {
    /// Seconds to wait before killing (default: the container's --stop-timeout, else 10).
    #[arg(short, long, allow_negative_numbers = true)]
    pub time: Option<i64>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing (default: the container's --stop-timeout, else 10).
    #[arg(short, long, allow_negative_numbers = true)]
    pub time: Option<i64>,
    /// Signal to send (default: the container's stop signal).
    #[arg(short, long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill and remove a running container.
    #[arg(short, long)]
    pub force: bool,
    /// Remove the anonymous volumes of the container too.
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(Args, Debug)]
pub struct PauseArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// A frozen container cannot act on a signal: it is thawed first (a
/// paused container stops, is killed or removed as Docker's would).
fn thaw(inst: &Instance, key: &str) {
    if let Ok(row) = lifecycle::lookup(inst, key) {
        if lifecycle::is_running(&row) && pause::is_paused(inst, &row.id) {
            if let Err(e) = pause::set_paused(inst, &row.id, false) {
                tracing::warn!("unpausing {key}: {e}");
            }
        }
    }
}

pub fn stop(inst: &Instance, a: StopArgs) -> CliResult {
    let signal = a
        .signal
        .as_deref()
        .map(lifecycle::parse_signal)
        .transpose()
        .map_err(minirt::Error::from)?;
    each(&a.containers, |c| {
        thaw(inst, c);
        lifecycle::stop_with(inst, c, a.time, signal)
    })
}

pub fn kill(inst: &Instance, a: KillArgs) -> CliResult {
    let sig = lifecycle::parse_signal(&a.signal).map_err(minirt::Error::from)?;
    each(&a.containers, |c| {
        thaw(inst, c);
        lifecycle::kill(inst, c, sig)
    })
}

pub fn rm(inst: &Instance, a: RmArgs) -> CliResult {
    if a.force {
        for c in &a.containers {
            thaw(inst, c);
        }
    }
    // One reconciliation, and all the kills first (see rm_prepare).
    let prepared = lifecycle::rm_prepare(inst, &a.containers, a.force)?;
    each(&a.containers, |c| {
        let anonymous = if a.volumes {
            crate::cli::volume::anonymous_of(inst, c)
        } else {
            vec![]
        };
        lifecycle::rm_prepared(inst, c, a.force, &prepared)?;
        for v in anonymous {
            if let Err(e) = minirt::container::volume::remove(inst, &v, false) {
                tracing::warn!("removing volume {v}: {e}");
            }
        }
        Ok(())
    })
}

pub fn pause(inst: &Instance, a: PauseArgs) -> CliResult {
    each(&a.containers, |c| pause::set_paused(inst, c, true))
}

pub fn unpause(inst: &Instance, a: PauseArgs) -> CliResult {
    each(&a.containers, |c| pause::set_paused(inst, c, false))
}

pub fn system_prune(inst: &Instance) -> CliResult {
    let removed = lifecycle::prune(inst)?;
    if !removed.is_empty() {
        println!("Deleted Containers:");
        for id in &removed {
            println!("{id}");
        }
    }
    // Like Docker: networks no container uses go too.
    let mut store = Store::open(&inst.db_path()).map_err(minirt::Error::from)?;
    let nets = network::manage::prune(inst, &mut store).map_err(minirt::Error::from)?;
    if !nets.is_empty() {
        println!("Deleted Networks:");
        for n in &nets {
            println!("{n}");
        }
    }
    Ok(0)
}

/// Blocks until each container has stopped and prints its exit code.
pub fn wait(inst: &Instance, a: WaitArgs) -> CliResult {
    let mut code = 0;
    for key in &a.containers {
        match wait_one(inst, key) {
            Ok(c) => println!("{c}"),
            Err(e) => {
                eprintln!("minirt: {}", e.message);
                code = 1;
            }
        }
    }
    Ok(code)
}

fn wait_one(inst: &Instance, key: &str) -> Result<i32, CliError> {
    let id = lookup_1(inst, key)?.id;
    let mut healed = false;
    loop {
        let row = lookup_1(inst, &id)?;
        if row.status == containers::Status::Exited {
            return Ok(row.exit_code);
        }
        let monitor_alive = util::process_alive(row.monitor_pid, row.monitor_start);
        if !lifecycle::is_running(&row) && !monitor_alive {
            // Nobody will record this exit: reconciliation does.
            if healed {
                return Ok(row.exit_code);
            }
            lifecycle::reconcile(inst)?;
            healed = true;
            continue;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn rename(inst: &Instance, a: RenameArgs) -> CliResult {
    minirt::container::create::validate_name(&a.new_name).map_err(minirt::Error::from)?;
    let row = lookup_1(inst, &a.container)?;
    let store = Store::open(&inst.db_path()).map_err(store_err)?;
    containers::rename(store.conn(), &row.id, &a.new_name)
        .map_err(|e| cli_err(1, e.to_string()))?;
    events::container(
        store.conn(),
        &row.id,
        "rename",
        &[("oldName", &format!("/{}", row.name))],
    );
    drop(store);
    // Names on user networks follow the change.
    if let Err(e) = network::dns::sync(inst) {
        tracing::warn!("{e}");
    }
    Ok(0)
}

pub fn restart(inst: &Instance, a: RestartArgs) -> CliResult {
    each(&a.containers, |c| {
        lifecycle::stop_with(inst, c, a.time, None)?;
        lifecycle::start(inst, c, false)?;
        events::container_now(inst, &lifecycle::lookup(inst, c)?.id, "restart", &[]);
        Ok(())
    })
}
