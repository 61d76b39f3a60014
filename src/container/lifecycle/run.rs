//! run (foreground, or detached under a double-forked monitor) and start.

use super::reconcile::reconcile;
use super::stop::settle;
use super::{config_of, is_running, lookup, monitor_alive, store};
use crate::container::runtime::{self, Stdio};
use crate::container::ContainerError;
use crate::store::containers::{self, Status};
use crate::{network, util, Instance, Result};
use nix::sys::signal::Signal;
use nix::unistd::{fork, ForkResult};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicI32, Ordering};
use tracing::warn;

/// Foreground run: this process is the monitor. Returns the exit code.
pub fn run_foreground(inst: &Instance, id: &str, tty: bool, interactive: bool) -> Result<i32> {
    let stdio = if tty {
        Stdio::Tty
    } else {
        Stdio::Inherit { stdin: interactive }
    };
    // The plug's and the teardown's firewall elements on one nfnetlink
    // socket: one release (a fork, see `nfnl::release`) per run, not two.
    let _batches = network::nfnl::Shared::begin();
    let started = match runtime::start(inst, id, stdio) {
        Ok(s) => s,
        Err(e) => {
            let _ = runtime::finish(inst, id, e.exit_code());
            return Err(e);
        }
    };
    forward_signals(started.pid);
    let schedule = crate::container::monitor::schedule_of(inst, id);
    let pid = started.pid;
    // This process is the container's monitor until it exits.
    crate::container::liveness::hold(&inst.run_root);
    // The `wait` span of `--timings`: the container's own run time.
    let wait_span = tracing::info_span!("wait").entered();
    let code = match started.pty {
        Some(master) => {
            // The relay holds this thread; checks run beside it.
            let (inst2, id2) = (inst.clone(), id.to_string());
            let waiter = std::thread::spawn(move || {
                crate::container::waiter::wait_container(pid, schedule.as_ref(), || {
                    crate::container::waiter::spawn_check(&inst2, &id2)
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
                crate::container::waiter::Pump::new(
                    o,
                    crate::container::logs::open_for_append(inst, id).ok(),
                    true,
                )
            });
            crate::container::waiter::wait_container_pumping(
                pid,
                schedule.as_ref(),
                || crate::container::waiter::spawn_check(inst, id),
                pump.as_mut(),
                // A foreground run: its strays go with it when it exits.
                false,
            )
        }
    };
    drop(wait_span);
    // Docker's daemon restarts a foreground container too (the client has
    // left by then): here a detached monitor does.
    if crate::container::monitor::finish_exit(inst, id, code, None)?.is_some() {
        crate::container::monitor::hand_off_restart(inst, id);
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
    crate::container::health::reset(inst, id);
    // As in `run_foreground`: one nfnetlink socket for the monitor's life,
    // and no release (a fork) between the plug and the `Started` report.
    let _batches = network::nfnl::Shared::begin();
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
    if let Some(delay) = crate::container::monitor::supervise(inst, id, started) {
        crate::container::monitor::backoff_and_restart(inst, id, delay);
    }
    0
}

/// `minirt start`: a stopped container runs again with the same rootfs and
/// config (a fresh network allocation).
pub fn start(inst: &Instance, key: &str, attach: bool) -> Result<i32> {
    reconcile(inst)?;
    let row = lookup(inst, key)?;
    crate::container::restart::start_by_user(inst, &row.id);
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
