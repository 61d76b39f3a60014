//! Restart policies (`--restart no|on-failure[:N]|always|unless-stopped`):
//! the pure decision (Docker's rules and back-off) and the small per-container
//! state file the monitor, `stop`/`kill`/`rm` and reconciliation share.
//!
//! The state lives in `<root>/containers/<id>/restart.json`, beside the
//! container's logs, not in the database: it changes on every exit of a
//! restarting container and must survive a reboot (the count, the manual
//! stop). Every read-modify-write holds an flock on the file, so the
//! monitor's "restart now?" and a user's `stop` never both win.

use crate::util;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Docker's restart policy names.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    /// Restart after a non-zero exit, at most this many times (0 = no limit).
    OnFailure(u32),
    Always,
    UnlessStopped,
}

impl RestartPolicy {
    /// Parses `--restart` as Docker does (`on-failure:N`, N >= 0; a count on
    /// any other policy is refused).
    pub fn parse(s: &str) -> Result<RestartPolicy, String> {
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let policy = match (name, count) {
            ("" | "no", None) => RestartPolicy::No,
            ("always", None) => RestartPolicy::Always,
            ("unless-stopped", None) => RestartPolicy::UnlessStopped,
            ("on-failure", None) => RestartPolicy::OnFailure(0),
            ("on-failure", Some(c)) => match c.parse::<i64>() {
                Ok(n) if n >= 0 => RestartPolicy::OnFailure(u32::try_from(n).unwrap_or(u32::MAX)),
                Ok(_) => return Err(format!("invalid restart policy: maximum retry count cannot be negative: {s}")),
                Err(_) => return Err(format!("invalid restart policy format: maximum retry count must be an integer: {s}")),
            },
            ("no" | "always" | "unless-stopped", Some(_)) => {
                return Err(format!(
                    "invalid restart policy format: maximum retry count can only be used with 'on-failure': {s}"
                ))
            }
            _ => return Err(format!("invalid restart policy format: unknown policy '{name}'")),
        };
        Ok(policy)
    }

    /// HostConfig.RestartPolicy.Name.
    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure(_) => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    /// HostConfig.RestartPolicy.MaximumRetryCount.
    pub(crate) fn max_retries(&self) -> u32 {
        match self {
            RestartPolicy::OnFailure(n) => *n,
            _ => 0,
        }
    }

    pub fn is_none(&self) -> bool {
        *self == RestartPolicy::No
    }
}

/// Docker's restart manager: the first restart waits 100 ms, each next one
/// twice as long, at most a minute; a run of 10 s or more starts over.
pub(crate) const BACKOFF_START: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(60);
pub(crate) const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// What happened to a container's restarts, kept across its runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RestartState {
    /// Restarts done by the policy since the user last started it.
    pub count: u32,
    /// The back-off wait before the next restart, in ms (0 = none yet).
    pub backoff_ms: u64,
    /// Stopped or killed by the user: the policy no longer applies.
    pub manually_stopped: bool,
    /// Waiting out the back-off (Docker's "Restarting" state).
    pub restarting: bool,
    /// The process that will do the restart (pid, start time); None when
    /// nobody has claimed it yet (reconciliation then starts a monitor).
    pub owner: Option<(i32, u64)>,
}

/// Docker's decision after an exit: wait this long, then restart; None =
/// stay exited. Pure; `ran_for` is how long the run lasted.
pub(crate) fn decide(
    policy: RestartPolicy,
    exit_code: i32,
    state: &RestartState,
    ran_for: Duration,
) -> Option<Duration> {
    if state.manually_stopped {
        return None;
    }
    let restart = match policy {
        RestartPolicy::No => false,
        RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        RestartPolicy::OnFailure(max) => exit_code != 0 && (max == 0 || state.count < max),
    };
    if !restart {
        return None;
    }
    let prev = Duration::from_millis(state.backoff_ms);
    let next = if ran_for >= BACKOFF_RESET_AFTER || prev.is_zero() {
        BACKOFF_START
    } else {
        (prev * 2).min(BACKOFF_MAX)
    };
    Some(next)
}

pub(crate) fn state_path(inst: &crate::Instance, id: &str) -> PathBuf {
    inst.container_dir(id).join("restart.json")
}

/// A JSON file read and rewritten under an exclusive flock. A missing file
/// reads as the default; `create` says whether to make it.
pub(crate) fn update_json<T, R>(
    path: &Path,
    create: bool,
    f: impl FnOnce(&mut T) -> R,
) -> std::io::Result<Option<R>>
where
    T: Serialize + DeserializeOwned + Default,
{
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut file = lock(file, libc::LOCK_EX)?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let mut value: T = serde_json::from_str(&text).unwrap_or_default();
    let out = f(&mut value);
    let bytes = serde_json::to_vec(&value).map_err(std::io::Error::other)?;
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(&bytes)?;
    Ok(Some(out))
}

/// Reads a JSON file under a shared flock; missing or unreadable = default.
pub(crate) fn read_json<T: DeserializeOwned + Default>(path: &Path) -> T {
    let Ok(file) = File::open(path) else {
        return T::default();
    };
    let Ok(mut file) = lock(file, libc::LOCK_SH) else {
        return T::default();
    };
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    serde_json::from_str(&text).unwrap_or_default()
}

fn lock(file: File, how: libc::c_int) -> std::io::Result<File> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor we own; released when it is closed.
        let r = unsafe { libc::flock(file.as_raw_fd(), how) };
        if r == 0 {
            return Ok(file);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub fn read(inst: &crate::Instance, id: &str) -> RestartState {
    read_json(&state_path(inst, id))
}

/// Runs `f` on the container's restart state under its lock (the file is
/// made when the container's dir exists). None when the container is gone.
pub fn update<R>(
    inst: &crate::Instance,
    id: &str,
    f: impl FnOnce(&mut RestartState) -> R,
) -> Option<R> {
    if !inst.container_dir(id).is_dir() {
        return None;
    }
    update_json(&state_path(inst, id), true, |s: &mut RestartState| {
        let out = f(s);
        // The marker lets reconciliation find pending restarts with one
        // read of a directory; it is set and cleared under the state's lock.
        let marker = pending_dir(inst).join(id);
        if s.restarting {
            let _ = std::fs::create_dir_all(pending_dir(inst));
            let _ = std::fs::write(&marker, b"");
        } else {
            let _ = std::fs::remove_file(&marker);
        }
        out
    })
    .ok()
    .flatten()
}

fn pending_dir(inst: &crate::Instance) -> PathBuf {
    inst.root.join("restarting")
}

/// Containers with a restart pending (waiting out a back-off, or left by a
/// monitor that died); a removed container's marker is dropped here.
pub(crate) fn pending(inst: &crate::Instance) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(pending_dir(inst)) else {
        return vec![];
    };
    let mut out = vec![];
    for e in dir.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        if inst.container_dir(&id).is_dir() {
            out.push(id);
        } else {
            let _ = std::fs::remove_file(e.path());
        }
    }
    out
}

/// The back-off owner named by the state, when it is still alive.
pub(crate) fn live_owner(state: &RestartState) -> Option<i32> {
    state
        .owner
        .filter(|(pid, start)| util::process_alive(*pid, *start))
        .map(|(pid, _)| pid)
}

/// A user's `stop`, `kill` or `rm -f`: the policy stops applying, and a
/// restart waiting out its back-off is called off (its waiting monitor,
/// which holds nothing, is killed so that `ps` says Exited at once).
pub(crate) fn stop_by_user(inst: &crate::Instance, id: &str) {
    cancel_waiting(inst, id, |s| s.manually_stopped = true);
}

/// A user's `start`/`restart`: Docker resets the count and forgets a manual
/// stop; a restart waiting out its back-off is called off.
pub(crate) fn start_by_user(inst: &crate::Instance, id: &str) {
    cancel_waiting(inst, id, |s| *s = RestartState::default());
}

fn cancel_waiting(inst: &crate::Instance, id: &str, f: impl FnOnce(&mut RestartState)) {
    let waiting = update(inst, id, |s| {
        let owner = if s.restarting { s.owner } else { None };
        f(s);
        s.restarting = false;
        s.owner = None;
        owner
    })
    .flatten();
    // Only a monitor sleeping out its back-off (the row says exited) is
    // killed: one still recording the exit is left to finish its teardown;
    // it finds the restart called off when it wakes.
    let exited = || {
        crate::store::Store::open(&inst.db_path())
            .ok()
            .and_then(|s| crate::store::containers::get(s.conn(), id).ok().flatten())
            .is_some_and(|r| r.status == crate::store::containers::Status::Exited)
    };
    if let Some((pid, start)) = waiting {
        if util::process_alive(pid, start) && exited() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Restarting in Docker's sense: exited, and a restart is pending with a
/// live owner (or none yet: the next command starts one).
pub(crate) fn is_restarting(inst: &crate::Instance, id: &str) -> Option<RestartState> {
    let s = read(inst, id);
    (s.restarting && !s.manually_stopped).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_like_docker() {
        assert_eq!(RestartPolicy::parse("no").unwrap(), RestartPolicy::No);
        assert_eq!(
            RestartPolicy::parse("always").unwrap(),
            RestartPolicy::Always
        );
        assert_eq!(
            RestartPolicy::parse("unless-stopped").unwrap(),
            RestartPolicy::UnlessStopped
        );
        assert_eq!(
            RestartPolicy::parse("on-failure").unwrap(),
            RestartPolicy::OnFailure(0)
        );
        assert_eq!(
            RestartPolicy::parse("on-failure:3").unwrap(),
            RestartPolicy::OnFailure(3)
        );
        assert!(RestartPolicy::parse("on-failure:-1")
            .unwrap_err()
            .contains("negative"));
        assert!(RestartPolicy::parse("on-failure:x").is_err());
        assert!(RestartPolicy::parse("always:2").is_err());
        assert!(RestartPolicy::parse("sometimes").is_err());
        assert_eq!(RestartPolicy::OnFailure(3).name(), "on-failure");
        assert_eq!(RestartPolicy::OnFailure(3).max_retries(), 3);
    }

    #[test]
    fn on_failure_counts_and_stops_at_the_limit() {
        let p = RestartPolicy::OnFailure(2);
        let short = Duration::from_millis(5);
        let mut s = RestartState::default();
        assert_eq!(
            decide(p, 0, &s, short),
            None,
            "a clean exit is not a failure"
        );
        assert_eq!(decide(p, 1, &s, short), Some(BACKOFF_START));
        s.count = 1;
        s.backoff_ms = 100;
        assert_eq!(decide(p, 1, &s, short), Some(Duration::from_millis(200)));
        s.count = 2;
        assert_eq!(decide(p, 1, &s, short), None);
        assert_eq!(
            decide(RestartPolicy::OnFailure(0), 1, &s, short),
            Some(Duration::from_millis(200))
        );
    }

    #[test]
    fn backoff_doubles_caps_and_resets_after_a_long_run() {
        let p = RestartPolicy::Always;
        let mut s = RestartState {
            backoff_ms: 40_000,
            ..Default::default()
        };
        assert_eq!(decide(p, 0, &s, Duration::ZERO), Some(BACKOFF_MAX));
        s.backoff_ms = 60_000;
        assert_eq!(decide(p, 0, &s, Duration::ZERO), Some(BACKOFF_MAX));
        assert_eq!(
            decide(p, 0, &s, Duration::from_secs(10)),
            Some(BACKOFF_START)
        );
    }

    #[test]
    fn a_manual_stop_ends_every_policy() {
        let s = RestartState {
            manually_stopped: true,
            ..Default::default()
        };
        for p in [
            RestartPolicy::Always,
            RestartPolicy::UnlessStopped,
            RestartPolicy::OnFailure(0),
        ] {
            assert_eq!(decide(p, 1, &s, Duration::ZERO), None);
        }
        assert_eq!(
            decide(
                RestartPolicy::No,
                1,
                &RestartState::default(),
                Duration::ZERO
            ),
            None
        );
    }

    #[test]
    fn state_updates_under_the_lock_round_trip() {
        let dir = std::env::temp_dir().join(format!("minirt-restart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("restart.json");
        assert_eq!(
            update_json::<RestartState, _>(&p, false, |_| ()).unwrap(),
            None
        );
        update_json(&p, true, |s: &mut RestartState| s.count = 3).unwrap();
        update_json(&p, true, |s: &mut RestartState| s.restarting = true).unwrap();
        let s: RestartState = read_json(&p);
        assert_eq!((s.count, s.restarting), (3, true));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
