//! Healing after crashes: killed commands' intents settled, containers
//! whose monitor and init are gone finished, the DNS responder revived.

use super::stop::rm;
use super::{config_of, discard, store};
use crate::container::ContainerError;
use crate::store::containers::{self, ContainerRow, Status};
use crate::{network, util, Instance, Result};
use std::collections::HashMap;
use tracing::warn;

/// A container `minirt create` made and left for a later `start`: no
/// owner, nothing to heal.
fn created_unowned(row: &ContainerRow) -> bool {
    row.status == Status::Created && row.monitor_pid == 0 && row.started_at == 0
}

/// Hands a just-created container over from this process to nobody, so it
/// stays `Created` after this process exits (see `reconcile`).
pub fn release_created(inst: &Instance, id: &str) -> Result<()> {
    let me = std::process::id() as i32;
    let me_start = util::process_start_time(me).unwrap_or(0);
    let s = store(inst)?;
    containers::hand_over(s.conn(), id, (me, me_start), (0, 0))?;
    Ok(())
}

/// Heals the state after crashes: what a killed command left half done
/// (its intents), then a container whose monitor and init are both gone is
/// finished (rules, veths, mounts, cgroup released). A container whose
/// monitor died but whose init lives stays listed as running; one whose
/// owner lives (a start in progress) is never touched.
pub fn reconcile(inst: &Instance) -> Result<()> {
    heal_all_but_rows(inst);
    let s = store(inst)?;
    let live = containers::list_live(s.conn())?;
    drop(s);
    reconcile_rows(inst, &live).map(drop)
}

/// The part of [`reconcile`] that is not about container rows: intents,
/// the DNS responder, the firewall. `reconcile_rows` follows it.
pub(crate) fn heal_all_but_rows(inst: &Instance) {
    heal_intents(inst);
    revive_dns(inst);
    if let Err(e) = network::heal(inst) {
        warn!("restoring firewall rules: {e}");
    }
}

/// What [`reconcile_rows`] learnt.
pub(crate) struct Checked {
    /// The init (pid, start time) of each running row found alive, by id.
    pub alive: HashMap<String, (i32, u64)>,
    /// Some row's owner was dead: the row was finished here, or by whoever
    /// took it over first, so the rows given no longer say what the store
    /// holds.
    pub changed: bool,
}

/// The per-container part of [`reconcile`] over `rows` (rows of other
/// states than created and running are skipped): a container whose monitor
/// and init are both gone is finished. A running row whose monitor lives
/// counts as alive without a look at its init (the monitor is the init's
/// parent and records its exit within milliseconds), and a monitor's
/// liveness is its lock (`liveness`): `ps` reads no /proc file for a
/// container whose monitor lives.
pub(crate) fn reconcile_rows(inst: &Instance, rows: &[ContainerRow]) -> Result<Checked> {
    let mut alive = HashMap::new();
    let mut changed = false;
    let live = rows
        .iter()
        .filter(|r| matches!(r.status, Status::Created | Status::Running));
    let me = std::process::id() as i32;
    let mut me_start = None;
    let mut orphans = vec![];
    let probe = crate::container::liveness::Probe::open(&inst.run_root);
    for row in live {
        if probe.alive(row.monitor_pid, row.monitor_start) {
            if row.status == Status::Running {
                alive.insert(row.id.clone(), (row.pid, row.pid_start));
            }
            continue;
        }
        if created_unowned(row) {
            continue;
        }
        if util::process_alive(row.pid, row.pid_start) {
            if row.status == Status::Running {
                alive.insert(row.id.clone(), (row.pid, row.pid_start));
            }
            // Its monitor was killed: with a restart policy (or a health
            // check) someone must watch it, so a new monitor adopts it.
            let cfg = config_of(row);
            if row.status == Status::Running
                && (!cfg.restart.is_none() || cfg.healthcheck.is_some())
            {
                orphans.push(row.id.clone());
            }
            continue;
        }
        changed = true;
        crate::fault::hold("reconcile-before-claim");
        let me_start = *me_start.get_or_insert_with(|| util::process_start_time(me).unwrap_or(0));
        // Take the row over from its dead owner in one statement: a monitor
        // handing over from the same owner at this moment, or another
        // command reconciling too, makes this fail, and the row is theirs.
        let claimed = store(inst).and_then(|s| {
            Ok(containers::hand_over(
                s.conn(),
                &row.id,
                (row.monitor_pid, row.monitor_start),
                (me, me_start),
            )?)
        })?;
        if !claimed {
            continue;
        }
        // Its owner died mid-way. A container that never ran was a crashed
        // `run`: it goes entirely (name reusable); one that ran before is
        // recorded as exited.
        let res = if row.status == Status::Created && row.started_at == 0 {
            discard(inst, &row.id)
        } else {
            // Finished here; its restart policy still applies (a new
            // monitor does the restart, below).
            crate::container::monitor::finish_exit(inst, &row.id, 255, None).map(|_| ())
        };
        if let Err(e) = res {
            warn!("reconciling {}: {e}", row.id);
        }
    }
    crate::container::monitor::heal(inst, &orphans);
    Ok(Checked { alive, changed })
}

/// Settles what killed commands left half done (see crate::intent):
/// creations roll back, removals roll forward. Cheap when nothing is
/// pending (one read of the intents dir and of the layers dir), so commands
/// that skip the full `reconcile` (network and image commands, `run`) run it.
pub fn heal_intents(inst: &Instance) {
    use crate::intent::Intent;
    crate::rootfs::image::clean_stale(inst);
    for o in crate::intent::orphans(inst) {
        let res: Result<()> = match &o.intent {
            Intent::NetworkCreate {
                id,
                name,
                driver,
                bridge,
                subnet,
                gateway,
                internal,
            } => network::reconcile::undo_create(
                inst,
                &network::reconcile::intended_row(
                    id, name, driver, bridge, subnet, gateway, *internal,
                ),
            )
            .map_err(Into::into),
            Intent::NetworkRemove { id } => {
                network::reconcile::finish_remove(inst, id).map_err(Into::into)
            }
            Intent::Connect { host_veth } => {
                network::reconcile::undo_connect(inst, host_veth).map_err(Into::into)
            }
            Intent::Disconnect {
                container_id,
                network_id,
            } => network::reconcile::finish_disconnect(inst, container_id, network_id)
                .map_err(Into::into)
                .map(|()| {
                    if let Err(e) = network::dns::sync(inst) {
                        warn!("{e}");
                    }
                }),
            Intent::ContainerRemove { id } => match rm(inst, id, true) {
                Err(crate::Error::Container(ContainerError::NotFound(_))) => Ok(()),
                other => other,
            },
            Intent::Layer { digest } => {
                crate::rootfs::image::undo_orphan_layer(inst, digest).map_err(Into::into)
            }
        };
        match res {
            Ok(()) => drop(o.held),
            Err(e) => {
                warn!("healing an interrupted {:?}: {e}", o.intent);
                o.held.keep();
            }
        }
    }
}

/// A DNS responder that was killed comes back at the next command, not
/// only at the next start on a network: when its pid file names no live
/// responder and some container needs names, it is started again.
pub(crate) fn revive_dns(inst: &Instance) {
    let pid_file = network::dns::control::pid_path(inst);
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline.windows(5).any(|w| w == b"__dns") {
                return;
            }
        }
    }
    let needed = store(inst)
        .ok()
        .and_then(|s| network::dns::members(&s).ok())
        .is_some_and(|m| !m.is_empty());
    if needed {
        if let Err(e) = network::dns::sync(inst) {
            warn!("{e}");
        }
    }
}
