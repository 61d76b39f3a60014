//! Lifecycle commands over the store and the kernel: run (foreground or
//! detached under a monitor), start, stop, kill, rm, list, reconcile.

use super::config::ContainerConfig;
use super::runtime::{self, Stdio};
use super::ContainerError;
use crate::store::containers::{self, ContainerRow, Status};
use crate::store::{Store, StoreError};
use crate::{network, util, Instance, Result};
use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};
use tracing::warn;

fn store(inst: &Instance) -> Result<Store> {
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

/// True when the row's init process is alive.
pub fn is_running(row: &ContainerRow) -> bool {
    row.status == Status::Running && util::process_alive(row.pid, row.pid_start)
}

fn monitor_alive(row: &ContainerRow) -> bool {
    util::process_alive(row.monitor_pid, row.monitor_start)
}

/// Heals the state after crashes: what a killed command left half done
/// (its intents), then a container whose monitor and init are both gone is
/// finished (rules, veths, mounts, cgroup released). A container whose
/// monitor died but whose init lives stays listed as running; one whose
/// owner lives (a start in progress) is never touched.
pub fn reconcile(inst: &Instance) -> Result<()> {
    heal_intents(inst);
    revive_dns(inst);
    if let Err(e) = network::heal(inst) {
        warn!("restoring firewall rules: {e}");
    }
    let s = store(inst)?;
    let live = containers::list_live(s.conn())?;
    drop(s);
    let me = std::process::id() as i32;
    let me_start = util::process_start_time(me).unwrap_or(0);
    let mut orphans = vec![];
    for row in live {
        if monitor_alive(&row) || created_unowned(&row) {
            continue;
        }
        if util::process_alive(row.pid, row.pid_start) {
            // Its monitor was killed: with a restart policy (or a health
            // check) someone must watch it, so a new monitor adopts it.
            let cfg = config_of(&row);
            if row.status == Status::Running
                && (!cfg.restart.is_none() || cfg.healthcheck.is_some())
            {
                orphans.push(row.id.clone());
            }
            continue;
        }
        crate::fault::hold("reconcile-before-claim");
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
            super::monitor::finish_exit(inst, &row.id, 255, None).map(|_| ())
        };
        if let Err(e) = res {
            warn!("reconciling {}: {e}", row.id);
        }
    }
    super::monitor::heal(inst, &orphans);
    Ok(())
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

/// Releases everything of a container and deletes it (rows, dirs).
pub(crate) fn discard(inst: &Instance, id: &str) -> Result<()> {
    runtime::finish(inst, id, 255)?;
    runtime::remove_files(inst, id);
    let s = store(inst)?;
    super::events::container(s.conn(), id, "destroy", &[]);
    containers::delete(s.conn(), id)?;
    Ok(())
}

// ---------------------------------------------------------------- run

/// Foreground run: this process is the monitor. Returns the exit code.
pub fn run_foreground(inst: &Instance, id: &str, tty: bool, interactive: bool) -> Result<i32> {
    let stdio = if tty {
        Stdio::Tty
    } else {
        Stdio::Inherit { stdin: interactive }
    };
    let started = match runtime::start(inst, id, stdio) {
        Ok(s) => s,
        Err(e) => {
            let _ = runtime::finish(inst, id, e.exit_code());
            return Err(e);
        }
    };
    forward_signals(started.pid);
    let schedule = super::monitor::schedule_of(inst, id);
    let pid = started.pid;
    // The `wait` span of `--timings`: the container's own run time.
    let wait_span = tracing::info_span!("wait").entered();
    let code = match started.pty {
        Some(master) => {
            // The relay holds this thread; checks run beside it.
            let (inst2, id2) = (inst.clone(), id.to_string());
            let waiter = std::thread::spawn(move || {
                super::waiter::wait_container(pid, schedule.as_ref(), || {
                    super::waiter::spawn_check(&inst2, &id2)
                })
            });
            if let Err(e) = crate::runtime::pty::relay(master, interactive) {
                warn!("terminal relay: {e}");
            }
            waiter.join().unwrap_or(255)
        }
        None => {
            // Docker logs an attached container too: its output goes
            // through pipes to our stdout/stderr and into the log.
            let mut pump = started.output.map(|o| {
                super::waiter::Pump::new(o, super::logs::open_for_append(inst, id).ok(), true)
            });
            super::waiter::wait_container_pumping(
                pid,
                schedule.as_ref(),
                || super::waiter::spawn_check(inst, id),
                pump.as_mut(),
            )
        }
    };
    drop(wait_span);
    // Docker's daemon restarts a foreground container too (the client has
    // left by then): here a detached monitor does.
    if super::monitor::finish_exit(inst, id, code, None)?.is_some() {
        super::monitor::hand_off_restart(inst, id);
    }
    Ok(code)
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Like `docker run --sig-proxy`: signals to us go to the container's init.
fn forward_signals(pid: i32) {
    FORWARD_TO.store(pid, Ordering::Relaxed);
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(forward),
            nix::sys::signal::SaFlags::SA_RESTART,
            nix::sys::signal::SigSet::empty(),
        );
        // SAFETY: the handler only calls kill(2) with an atomic pid.
        let _ = unsafe { nix::sys::signal::sigaction(sig, &action) };
    }
}

#[derive(Serialize, Deserialize)]
enum StartReport {
    Started,
    Failed { code: i32, message: String },
}

/// Detached start: a double-forked monitor owns the container; this process
/// returns once the container runs (or with the error that stopped it).
pub fn start_detached(inst: &Instance, id: &str, tty: bool) -> Result<()> {
    // This process owns the row (create or start recorded it); the monitor
    // takes the row over from exactly this owner, or not at all.
    let me = std::process::id() as i32;
    let owner = (me, util::process_start_time(me).unwrap_or(0));
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    // SAFETY: we are single-threaded here (no runtime, no store open); the
    // child only forks again and runs the monitor.
    match unsafe { fork() }.map_err(std::io::Error::from)? {
        ForkResult::Child => {
            drop(r);
            let _ = nix::unistd::setsid();
            // SAFETY: as above, single-threaded.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    let code = monitor_main(inst, id, tty, owner, w);
                    // SAFETY: leave without running the parent's atexit state.
                    unsafe { libc::_exit(code) }
                }
                // SAFETY: the intermediate process just leaves.
                _ => unsafe { libc::_exit(0) },
            }
        }
        ForkResult::Parent { child } => {
            drop(w);
            crate::fault::point("run-detach-after-fork");
            let _ = nix::sys::wait::waitpid(child, None);
            let mut buf = vec![];
            let mut f = std::fs::File::from(r);
            let _ = f.read_to_end(&mut buf);
            match serde_json::from_slice::<StartReport>(&buf) {
                Ok(StartReport::Started) => Ok(()),
                Ok(StartReport::Failed { code, message }) => Err(match code {
                    126 => ContainerError::CannotExecute(message),
                    127 => ContainerError::CommandNotFound(message),
                    _ => ContainerError::Runtime(message),
                }
                .into()),
                Err(_) => Err(ContainerError::Runtime(
                    "the container monitor died while starting".into(),
                )
                .into()),
            }
        }
    }
}

/// The monitor: owns the container's stdio (log file or pty), waits for its
/// exit, records it and tears down. Its own stdio goes to /dev/null so it
/// never holds the caller's terminal or pipes open.
fn monitor_main(inst: &Instance, id: &str, tty: bool, owner: (i32, u64), report: OwnedFd) -> i32 {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: dup2 onto our own stdio.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let mut report = std::fs::File::from(report);
    let fail = |report: &mut std::fs::File, code: i32, message: String| {
        let msg = StartReport::Failed { code, message };
        let _ = report.write_all(&serde_json::to_vec(&msg).unwrap_or_default());
        1
    };
    // The hand-over: from here on the row names this monitor. Should the
    // caller have died and another command's reconcile have taken the row
    // (to finish or discard it), the container is not ours to start.
    let me = std::process::id() as i32;
    let me_start = util::process_start_time(me).unwrap_or(0);
    crate::fault::hold("monitor-before-hand-over");
    match store(inst).and_then(|s| Ok(containers::hand_over(s.conn(), id, owner, (me, me_start))?))
    {
        Ok(true) => {}
        Ok(false) => {
            return fail(
                &mut report,
                125,
                format!("container {id} was taken over by another command while starting"),
            )
        }
        Err(e) => return fail(&mut report, e.exit_code(), e.to_string()),
    }
    let stdio = if tty { Stdio::Tty } else { Stdio::Log };
    super::health::reset(inst, id);
    let started = match runtime::start(inst, id, stdio) {
        Ok(s) => s,
        Err(e) => {
            let _ = runtime::finish(inst, id, e.exit_code());
            let msg = StartReport::Failed {
                code: e.exit_code(),
                message: e.to_string(),
            };
            let _ = report.write_all(&serde_json::to_vec(&msg).unwrap_or_default());
            return 1;
        }
    };
    let _ = report.write_all(&serde_json::to_vec(&StartReport::Started).unwrap_or_default());
    drop(report);
    if let Some(delay) = super::monitor::supervise(inst, id, started) {
        super::monitor::backoff_and_restart(inst, id, delay);
    }
    0
}

/// `minirt start`: a stopped container runs again with the same rootfs and
/// config (a fresh network allocation).
pub fn start(inst: &Instance, key: &str, attach: bool) -> Result<i32> {
    reconcile(inst)?;
    let row = lookup(inst, key)?;
    super::restart::start_by_user(inst, &row.id);
    let row = settle(inst, row)?;
    if is_running(&row) || (row.status == Status::Created && monitor_alive(&row)) {
        return Ok(0);
    }
    let cfg = config_of(&row);
    let mut s = store(inst)?;
    network::prepare(inst, &mut s, &cfg.network)?;
    let me = std::process::id() as i32;
    let me_start = util::process_start_time(me).unwrap_or(0);
    s.write(|tx| -> Result<()> {
        containers::set_created(tx, &row.id, me, me_start)?;
        network::detach_rows(tx, &row.id)?;
        network::allocate(tx, inst, &row.id, &cfg.network)?;
        Ok(())
    })?;
    drop(s);
    if attach {
        run_foreground(inst, &row.id, cfg.tty, cfg.interactive)
    } else {
        start_detached(inst, &row.id, cfg.tty)?;
        Ok(0)
    }
}

// ---------------------------------------------------------------- stop / kill / rm

/// Waits for a start in progress (a row in "created" whose owner lives: a
/// monitor restarting it, another command starting it) to end; the row as
/// it is then.
fn settle(inst: &Instance, row: ContainerRow) -> Result<ContainerRow> {
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
    super::restart::stop_by_user(inst, &row.id);
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
    super::events::container_now(
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
        super::events::container_now(inst, &row.id, "kill", &[("signal", "9")]);
        let _ = send_signal(pid, Signal::SIGKILL);
        crate::fault::point("stop-after-kill");
        code = 137;
        wait_until(Duration::from_secs(10), || {
            !util::process_alive(row.pid, row.pid_start)
        });
    }
    await_finished(inst, &row.id, code)?;
    super::events::container_now(inst, &row.id, "stop", &[]);
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
    if row.status == Status::Exited && super::restart::is_restarting(inst, &row.id).is_some() {
        // As Docker: killing a restarting container calls the restart off.
        super::restart::stop_by_user(inst, &row.id);
        return Ok(());
    }
    if !is_running(&row) {
        return Err(
            ContainerError::Conflict(format!("Container {} is not running", row.id)).into(),
        );
    }
    super::restart::stop_by_user(inst, &row.id);
    super::events::container_now(
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
/// their monitors tear them down side by side; `rm_reconciled` then finds
/// each one exited (or about to be) instead of killing and waiting for one
/// after the other. A key that names nothing is left for `rm_reconciled`
/// to report.
pub fn rm_prepare(inst: &Instance, keys: &[String], force: bool) -> Result<()> {
    reconcile(inst)?;
    if !force {
        return Ok(());
    }
    for key in keys {
        let Ok(row) = lookup(inst, key) else {
            continue;
        };
        if is_running(&row) {
            super::restart::stop_by_user(inst, &row.id);
            let _ = send_signal(Pid::from_raw(row.pid), Signal::SIGKILL);
        }
    }
    Ok(())
}

/// `rm` after `reconcile` (or `rm_prepare`) ran in this command.
pub fn rm_reconciled(inst: &Instance, key: &str, force: bool) -> Result<()> {
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
    if !force && super::restart::is_restarting(inst, &row.id).is_some() {
        return Err(ContainerError::Conflict(format!(
            "You cannot remove a restarting container {}. Stop the container before attempting removal or force remove",
            row.id
        ))
        .into());
    }
    // The policy must not bring it back while it is taken apart.
    super::restart::stop_by_user(inst, &row.id);
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
    let s = store(inst)?;
    runtime::remove_files(inst, &row.id);
    crate::fault::point("rm-after-files");
    super::events::container(s.conn(), &row.id, "destroy", &[]);
    containers::delete(s.conn(), &row.id)?;
    Ok(())
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

// ---------------------------------------------------------------- views

/// Docker's STATUS column from the row alone.
pub(crate) fn status_text(row: &ContainerRow, now: i64) -> String {
    let ago = |t: i64| util::human_duration((now - t) / 1_000_000_000);
    match row.status {
        Status::Running => format!("Up {}", ago(row.started_at)),
        Status::Exited => format!("Exited ({}) {} ago", row.exit_code, ago(row.finished_at)),
        _ => "Created".into(),
    }
}

/// Docker's State.Status for a row: the stored word with what only the
/// state files know, "paused" (the freezer) and "restarting" (a restart
/// waiting out its back-off). Reads each file at most once.
pub fn status(inst: &Instance, row: &ContainerRow) -> Status {
    match row.status {
        Status::Running if is_running(row) && super::pause::is_paused(inst, &row.id) => {
            Status::Paused
        }
        Status::Running if is_running(row) => Status::Running,
        Status::Created => Status::Created,
        _ if super::restart::is_restarting(inst, &row.id).is_some() => Status::Restarting,
        _ => Status::Exited,
    }
}

/// Docker's STATUS column for a row whose [`status`] is known: a restart
/// waiting out its back-off ("Restarting (1) 2 seconds ago"), a pause, and
/// the health of a running container ("Up 3 seconds (healthy)").
pub fn status_line(inst: &Instance, row: &ContainerRow, status: Status, now: i64) -> String {
    if row.status == Status::Exited && status == Status::Restarting {
        let ago = util::human_duration((now - row.finished_at) / 1_000_000_000);
        return format!("Restarting ({}) {ago} ago", row.exit_code);
    }
    let mut text = status_text(row, now);
    match status {
        Status::Paused => text.push_str(" (Paused)"),
        Status::Running => {
            if let Some(h) = super::health::read(inst, &row.id, &config_of(row)) {
                text.push_str(&super::health::status_suffix(&h.status));
            }
        }
        _ => {}
    }
    text
}

/// Docker's COMMAND column: the argv quoted and cut at 20 characters.
pub fn command_text(args: &[String]) -> String {
    let full = args.join(" ");
    let cut: String = if full.chars().count() > 20 {
        format!("{}…", full.chars().take(19).collect::<String>())
    } else {
        full
    };
    format!("\"{cut}\"")
}

/// All containers after reconciliation (newest first).
pub fn list(inst: &Instance) -> Result<Vec<ContainerRow>> {
    reconcile(inst)?;
    let s = store(inst)?;
    Ok(containers::list(s.conn())?)
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

    #[test]
    fn command_column_is_quoted_and_cut() {
        assert_eq!(
            command_text(&["sleep".into(), "100".into()]),
            "\"sleep 100\""
        );
        let long = command_text(&[
            "httpd".into(),
            "-f".into(),
            "-p".into(),
            "80".into(),
            "-h".into(),
            "/www".into(),
        ]);
        assert_eq!(long.chars().count(), 22);
        assert!(long.ends_with("…\""));
    }
}
