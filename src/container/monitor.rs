//! What a detached container's monitor does around each exit: apply the
//! restart policy (back-off, count, start again in this same process, then
//! become the small waiter again), and the two ways a monitor is born after
//! the first start: adopting a container whose monitor was killed, and
//! doing a restart that nobody owns (a dead monitor's, a foreground run's,
//! or one found after a reboot). Both are started by the next minirt
//! command's reconciliation (`spawn`), since there is no daemon.

use super::restart::{self, RestartState};
use super::runtime::{self, Started, Stdio};
use super::{health, lifecycle};
use crate::store::{containers, Store};
use crate::{network, util, Instance, Result};
use std::time::Duration;
use tracing::warn;

pub(crate) const MONITOR_ARG: &str = "__monitor";

fn me() -> (i32, u64) {
    let pid = std::process::id() as i32;
    (pid, util::process_start_time(pid).unwrap_or(0))
}

/// After the container's init exited with `code` (in its monitor, or in a
/// command that found both dead): decide under the restart state's lock
/// whether the policy restarts it (the count and back-off go up, the
/// restart is owned by `owner`), then record the exit and tear down.
/// Returns the back-off to wait before restarting.
pub(crate) fn finish_exit(
    inst: &Instance,
    id: &str,
    code: i32,
    owner: Option<(i32, u64)>,
) -> Result<Option<Duration>> {
    let row = {
        let s = Store::open(&inst.db_path())?;
        containers::get(s.conn(), id)?
    };
    let Some(row) = row else { return Ok(None) };
    let cfg = lifecycle::config_of(&row);
    let ran_for = Duration::from_nanos((util::now_nanos() - row.started_at).max(0) as u64);
    let delay = if cfg.restart.is_none() || row.started_at == 0 {
        None
    } else {
        restart::update(inst, id, |s: &mut RestartState| {
            let Some(d) = restart::decide(cfg.restart, code, s, ran_for) else {
                s.restarting = false;
                s.owner = None;
                return None;
            };
            s.count += 1;
            s.backoff_ms = d.as_millis() as u64;
            s.restarting = true;
            s.owner = owner;
            Some(d)
        })
        .flatten()
    };
    runtime::finish(inst, id, code)?;
    Ok(delay)
}

/// `__finish` of a detached container's waiter: record the exit; when the
/// policy restarts it, wait out the back-off and supervise the new run
/// (this process becomes its waiter again; returns only when it is over).
pub fn after_exit(inst: &Instance, id: &str, code: i32) -> Result<()> {
    if let Some(delay) = finish_exit(inst, id, code, Some(me()))? {
        backoff_and_restart(inst, id, delay);
    }
    Ok(())
}

/// The policy restarts the container: wait, then start and supervise it.
pub(crate) fn backoff_and_restart(inst: &Instance, id: &str, delay: Duration) {
    backoff(inst, id, delay);
    restart_and_supervise(inst, id);
}

/// Waits out a back-off; returns early when the restart is called off
/// (a user's stop, start or rm), so the monitor leaves at once.
fn backoff(inst: &Instance, id: &str, delay: Duration) {
    let end = std::time::Instant::now() + delay;
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || !restart::read(inst, id).restarting {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Takes a pending restart (the state says restarting and names this
/// process or no live owner), starts the container and supervises it until
/// the policy lets it rest.
pub(crate) fn restart_and_supervise(inst: &Instance, id: &str) {
    let me = me();
    loop {
        // The row is claimed inside the restart state's lock: a user's
        // stop before this has called the restart off; one after it finds a
        // start in progress (its row "created", owned by this live process)
        // and waits for it before stopping it.
        let claimed = restart::update(inst, id, |s| {
            if !s.restarting || s.manually_stopped {
                return None;
            }
            if s.owner.is_some_and(|o| o != me) && restart::live_owner(s).is_some() {
                return None;
            }
            let res = claim_row(inst, id, me);
            if matches!(res, Ok(Some(_))) {
                s.restarting = false;
                s.owner = Some(me);
            }
            Some(res)
        })
        .flatten();
        let started = match claimed {
            None | Some(Ok(None)) => return,
            Some(Ok(Some(tty))) => {
                health::reset(inst, id);
                let stdio = if tty { Stdio::Tty } else { Stdio::Log };
                runtime::start(inst, id, stdio)
            }
            Some(Err(e)) => Err(e),
        };
        let code = match started {
            Ok(started) => match supervise(inst, id, started) {
                Some(delay) => {
                    backoff(inst, id, delay);
                    continue;
                }
                None => return,
            },
            Err(e) => {
                warn!("restarting {id}: {e}");
                e.exit_code()
            }
        };
        // The start failed: that is an exit too (Docker counts it).
        match finish_exit(inst, id, code, Some(me)) {
            Ok(Some(delay)) => backoff(inst, id, delay),
            _ => return,
        }
    }
}

/// Makes an exited container's row this process's start in progress (a
/// fresh network allocation, as `start` does); Some(tty) when claimed,
/// None when it is not exited any more (the user started or removed it).
fn claim_row(inst: &Instance, id: &str, me: (i32, u64)) -> Result<Option<bool>> {
    let mut s = Store::open(&inst.db_path())?;
    let Some(row) = containers::get(s.conn(), id)? else {
        return Ok(None);
    };
    if row.status != containers::Status::Exited {
        return Ok(None);
    }
    let cfg = lifecycle::config_of(&row);
    network::prepare(inst, &mut s, &cfg.network)?;
    s.write(|tx| -> Result<()> {
        containers::set_created(tx, id, me.0, me.1)?;
        network::detach_rows(tx, id)?;
        network::allocate(tx, inst, id, &cfg.network)?;
        Ok(())
    })?;
    Ok(Some(cfg.tty))
}

/// Watches a running container (this process started it): without a tty
/// this process becomes the small waiter (exec, does not return unless the
/// exec fails); with one it relays the pty into the log and waits here.
/// Returns the back-off when the policy restarts it.
pub(crate) fn supervise(inst: &Instance, id: &str, started: Started) -> Option<Duration> {
    if started.pty.is_none() {
        let e = super::waiter::exec_waiter(inst, id, started.pid, started.output.as_ref());
        warn!("cannot exec the waiting monitor ({e}); waiting in place");
    }
    // A detached `-t -i` container's input comes from `attach` through a FIFO.
    let master_for_input = started
        .pty
        .as_ref()
        .filter(|_| lifecycle::lookup(inst, id).is_ok_and(|r| lifecycle::config_of(&r).interactive))
        .and_then(|m| m.try_clone().ok());
    let relay = started.pty.map(|master| {
        let log = super::logs::open_for_append(inst, id);
        std::thread::spawn(move || {
            if let Ok(f) = log {
                let rec = super::logs::StreamRecorder {
                    writer: super::logs::RecordWriter::new(f),
                    stream: super::logs::Stream::Stdout,
                };
                let _ = crate::runtime::pty::relay_to_writer(master, rec);
            }
        })
    });
    if let Some(master) = master_for_input {
        super::attach::relay_stdin_fifo(inst, id, master);
    }
    let mut pump = started
        .output
        .map(|o| super::waiter::Pump::new(o, super::logs::open_for_append(inst, id).ok(), false));
    super::liveness::hold(&inst.run_root);
    let code = super::waiter::wait_container_pumping(
        started.pid,
        schedule_of(inst, id).as_ref(),
        || super::waiter::spawn_check(inst, id),
        pump.as_mut(),
        true, // a resident monitor: it reaps the strays it forked
    );
    if let Some(t) = relay {
        let _ = t.join();
    }
    match finish_exit(inst, id, code, Some(me())) {
        Ok(d) => d,
        Err(e) => {
            warn!("finishing {id}: {e}");
            None
        }
    }
}

/// The health check schedule of a container, if it has one.
pub(crate) fn schedule_of(inst: &Instance, id: &str) -> Option<health::Schedule> {
    let s = Store::open(&inst.db_path()).ok()?;
    let row = containers::get(s.conn(), id).ok()??;
    lifecycle::config_of(&row).healthcheck.map(|h| h.schedule())
}

/// After a foreground run (or a reconcile that found init and monitor
/// dead) recorded an exit the policy restarts: a detached monitor does the
/// restart, as Docker's daemon would.
pub(crate) fn hand_off_restart(inst: &Instance, id: &str) {
    spawn(inst, id, "restart");
}

/// Starts `minirt __monitor ROOT RUNROOT ID MODE`, detached (own session,
/// stdio on /dev/null, reparented at once: the process forks and its first
/// half exits, which this call waits for).
pub fn spawn(inst: &Instance, id: &str, mode: &str) {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg0("minirt")
        .arg(MONITOR_ARG)
        .arg(&inst.root)
        .arg(&inst.run_root)
        .arg(id)
        .arg(mode)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches nothing of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    match cmd.spawn() {
        Ok(mut child) => {
            let _ = child.wait();
        }
        Err(e) => warn!("starting a monitor for {id}: {e}"),
    }
}

/// `minirt __monitor`: the body of a monitor started by [`spawn`].
pub(crate) fn monitor_entry(inst: &Instance, id: &str, mode: &str) -> i32 {
    // SAFETY: single-threaded here (nothing started yet); the parent half
    // leaves at once so that the monitor is nobody's child.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {}
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Err(_) => return 125,
    }
    match mode {
        "adopt" => adopt(inst, id),
        "restart" => restart_and_supervise(inst, id),
        _ => return 125,
    }
    0
}

/// A running container whose monitor was killed: this process becomes its
/// monitor (the row's owner), waiting through a pidfd, since the container
/// is not its child (its exit code is lost with the old monitor: 255).
fn adopt(inst: &Instance, id: &str) {
    let Ok(s) = Store::open(&inst.db_path()) else {
        return;
    };
    let Ok(Some(row)) = containers::get(s.conn(), id) else {
        return;
    };
    if row.status != containers::Status::Running
        || util::process_alive(row.monitor_pid, row.monitor_start)
        || !util::process_alive(row.pid, row.pid_start)
    {
        return;
    }
    let claimed = containers::hand_over(s.conn(), id, (row.monitor_pid, row.monitor_start), me())
        .unwrap_or(false);
    drop(s);
    if !claimed {
        return;
    }
    // The old monitor held the read ends of the container's output pipes:
    // they are opened again through /proc.
    let output = super::waiter::reopen_output(row.pid);
    let e = super::waiter::exec_waiter(inst, id, row.pid, output.as_ref());
    warn!("cannot exec the waiting monitor ({e}); waiting in place");
    let mut pump = output
        .map(|o| super::waiter::Pump::new(o, super::logs::open_for_append(inst, id).ok(), false));
    super::liveness::hold(&inst.run_root);
    let code = super::waiter::wait_container_pumping(
        row.pid,
        schedule_of(inst, id).as_ref(),
        || super::waiter::spawn_check(inst, id),
        pump.as_mut(),
        true, // a resident monitor: it reaps the strays it forked
    );
    if let Ok(Some(delay)) = finish_exit(inst, id, code, Some(me())) {
        backoff_and_restart(inst, id, delay);
    }
}

/// Reconciliation's part for restart policies: monitors that died are
/// replaced (a running container is adopted; a pending restart nobody owns
/// is started).
pub fn heal(inst: &Instance, orphaned_running: &[String]) {
    for id in orphaned_running {
        spawn(inst, id, "adopt");
    }
    for id in restart::pending(inst) {
        let s = restart::read(inst, &id);
        if s.restarting && !s.manually_stopped && restart::live_owner(&s).is_none() {
            spawn(inst, &id, "restart");
        }
    }
}
