//! Health checks (`--health-*`, the image's HEALTHCHECK): the config and its
//! merge with the image's (pure), the result bookkeeping of Docker's
//! State.Health (pure), and one check run through the exec path.
//!
//! There is no daemon: the container's waiting monitor only keeps the
//! schedule; each check is a short-lived `minirt __health` process it
//! starts (see waiter.rs), so the monitor stays a few hundred KiB between
//! checks. Results live in `<root>/containers/<id>/health.json`, written
//! under an flock (a `healthcheck run` may record at the same time).

use super::config::ContainerConfig;
use super::restart::{read_json, update_json};
use super::ContainerError;
use crate::{util, Instance};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Docker's defaults for values left at 0.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_RETRIES: u32 = 3;
/// Docker keeps the last five results and 4 KiB of each output.
pub(crate) const MAX_LOG_ENTRIES: usize = 5;
pub(crate) const MAX_OUTPUT_LEN: usize = 4096;

/// Docker's Healthcheck object (image config and Config.Healthcheck):
/// durations in nanoseconds, 0 = inherit / default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `[]` inherit, `["NONE"]`, `["CMD", args...]`, `["CMD-SHELL", cmd]`.
    #[serde(default)]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub retries: u32,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// What the `--health-*` flags asked for (strings not yet parsed).
#[derive(Debug, Clone, Default)]
pub struct HealthFlags {
    pub cmd: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<i64>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub none: bool,
}

impl HealthFlags {
    fn any_option(&self) -> bool {
        self.cmd.is_some()
            || self.interval.is_some()
            || self.timeout.is_some()
            || self.retries.is_some()
            || self.start_period.is_some()
            || self.start_interval.is_some()
    }
}

/// The health check a container runs: the image's, with the flags laid over
/// it field by field (Docker's merge). None = no health check.
pub fn resolve(
    image: Option<&HealthConfig>,
    flags: &HealthFlags,
) -> Result<Option<HealthConfig>, String> {
    if flags.none {
        if flags.any_option() {
            return Err("--no-healthcheck conflicts with --health-* options".into());
        }
        return Ok(None);
    }
    let mut hc = image.cloned().unwrap_or_default();
    if let Some(cmd) = &flags.cmd {
        hc.test = if cmd.trim().eq_ignore_ascii_case("none") {
            vec!["NONE".into()]
        } else {
            vec!["CMD-SHELL".into(), cmd.clone()]
        };
    }
    let dur =
        |flag: &str, v: &Option<String>, min: Option<Duration>| -> Result<Option<i64>, String> {
            let Some(v) = v else { return Ok(None) };
            let d = parse_go_duration(v)
                .map_err(|e| format!("invalid argument \"{v}\" for \"--{flag}\" flag: {e}"))?;
            if d < 0 {
                return Err(format!("--{flag} cannot be negative"));
            }
            if let Some(min) = min {
                if d != 0 && (d as u128) < min.as_nanos() {
                    return Err(format!(
                        "--{flag} cannot be less than {}",
                        format_go_duration(min.as_nanos() as i64)
                    ));
                }
            }
            Ok(Some(d))
        };
    let ms = Some(Duration::from_millis(1));
    if let Some(d) = dur("health-interval", &flags.interval, ms)? {
        hc.interval = d;
    }
    if let Some(d) = dur("health-timeout", &flags.timeout, ms)? {
        hc.timeout = d;
    }
    if let Some(d) = dur("health-start-period", &flags.start_period, ms)? {
        hc.start_period = d;
    }
    if let Some(d) = dur("health-start-interval", &flags.start_interval, ms)? {
        hc.start_interval = d;
    }
    if let Some(r) = flags.retries {
        if r < 0 {
            return Err("--health-retries cannot be negative".into());
        }
        hc.retries = u32::try_from(r).unwrap_or(u32::MAX);
    }
    match hc.test.first().map(String::as_str) {
        None => {
            if flags.any_option() {
                return Err(
                    "--health-* options need a health check command (--health-cmd or the image's)"
                        .into(),
                );
            }
            Ok(None)
        }
        Some("NONE") => Ok(None),
        Some("CMD") if hc.test.len() > 1 => Ok(Some(hc)),
        Some("CMD-SHELL") if hc.test.len() == 2 => Ok(Some(hc)),
        // A malformed check in an image does not keep it from running.
        _ if flags.cmd.is_none() && !flags.any_option() => {
            tracing::warn!("ignoring the image's malformed HEALTHCHECK {:?}", hc.test);
            Ok(None)
        }
        _ => Err(format!("unsupported health check test: {:?}", hc.test)),
    }
}

/// The schedule the monitor keeps (defaults applied).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Schedule {
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: u32,
}

impl HealthConfig {
    pub(crate) fn schedule(&self) -> Schedule {
        let or = |ns: i64, d: Duration| {
            if ns > 0 {
                Duration::from_nanos(ns as u64)
            } else {
                d
            }
        };
        Schedule {
            interval: or(self.interval, DEFAULT_INTERVAL),
            timeout: or(self.timeout, DEFAULT_TIMEOUT),
            start_period: or(self.start_period, Duration::ZERO),
            start_interval: or(self.start_interval, DEFAULT_START_INTERVAL),
            retries: if self.retries == 0 {
                DEFAULT_RETRIES
            } else {
                self.retries
            },
        }
    }

    /// The argv the check runs inside the container.
    pub fn argv(&self) -> Vec<String> {
        match self.test.first().map(String::as_str) {
            Some("CMD-SHELL") => {
                let mut v = vec!["/bin/sh".to_string(), "-c".to_string()];
                v.extend(self.test.iter().skip(1).cloned());
                v
            }
            _ => self.test.iter().skip(1).cloned().collect(),
        }
    }
}

/// Docker's State.Health.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthState {
    /// "starting", "healthy" or "unhealthy".
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<HealthResult>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

pub(crate) const STARTING: &str = "starting";
pub const HEALTHY: &str = "healthy";
pub const UNHEALTHY: &str = "unhealthy";

/// Docker's bookkeeping of one result: the log keeps the last five; a
/// success makes it healthy; a failure counts unless the container is still
/// in its start period and never was healthy; `retries` failures in a row
/// make it unhealthy.
pub fn record(state: &mut HealthState, result: HealthResult, in_start_period: bool, retries: u32) {
    let ok = result.exit_code == 0;
    state.log.push(result);
    if state.log.len() > MAX_LOG_ENTRIES {
        let extra = state.log.len() - MAX_LOG_ENTRIES;
        state.log.drain(..extra);
    }
    if state.status.is_empty() {
        state.status = STARTING.into();
    }
    if ok {
        state.failing_streak = 0;
        state.status = HEALTHY.into();
    } else if !(state.status == STARTING && in_start_period) {
        state.failing_streak += 1;
        if state.failing_streak >= retries.max(1) {
            state.status = UNHEALTHY.into();
        }
    }
}

/// Docker's `ps` suffix: " (healthy)", " (health: starting)".
pub(crate) fn status_suffix(status: &str) -> String {
    match status {
        "" => String::new(),
        STARTING => " (health: starting)".into(),
        s => format!(" ({s})"),
    }
}

/// Output as Docker keeps it: at most 4 KiB (on a character boundary).
pub(crate) fn truncate_output(mut out: String) -> String {
    if out.len() > MAX_OUTPUT_LEN {
        let mut cut = MAX_OUTPUT_LEN;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// Go's time.ParseDuration: "300ms", "1.5h", "2h45m", "-1s"; a bare "0".
pub(crate) fn parse_go_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("time: invalid duration \"{s}\"");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration \"{s}\""))?;
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration \"{s}\"")),
            _ => return Err(format!("time: unknown unit \"{unit}\" in duration \"{s}\"")),
        };
        total += value * scale;
        rest = tail;
    }
    if total > i64::MAX as f64 {
        return Err(bad());
    }
    let ns = total.round() as i64;
    Ok(if neg { -ns } else { ns })
}

/// Go's Duration.String for whole milliseconds and up ("200ms", "1.5s",
/// "1m30s"), as Docker prints it in the timeout message.
pub(crate) fn format_go_duration(ns: i64) -> String {
    if ns < 1_000_000_000 {
        return if ns % 1_000_000 == 0 {
            format!("{}ms", ns / 1_000_000)
        } else {
            format!("{}µs", ns / 1_000)
        };
    }
    let h = ns / 3_600_000_000_000;
    let m = (ns / 60_000_000_000) % 60;
    let s_ns = ns % 60_000_000_000;
    let secs = if s_ns % 1_000_000_000 == 0 {
        format!("{}s", s_ns / 1_000_000_000)
    } else {
        let text = format!("{:.9}", s_ns as f64 / 1e9);
        format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

pub(crate) fn state_path(inst: &Instance, id: &str) -> std::path::PathBuf {
    inst.container_dir(id).join("health.json")
}

/// The recorded health; None when the container has no health check.
pub fn read(inst: &Instance, id: &str, cfg: &ContainerConfig) -> Option<HealthState> {
    read_if(inst, id, cfg.healthcheck.is_some())
}

/// [`read`] knowing only whether the container has a health check (`ps`).
pub fn read_if(inst: &Instance, id: &str, has_check: bool) -> Option<HealthState> {
    if !has_check {
        return None;
    }
    let mut s: HealthState = read_json(&state_path(inst, id));
    if s.status.is_empty() {
        s.status = STARTING.into();
    }
    Some(s)
}

/// A new run starts over as "starting" (Docker resets health at start).
pub(crate) fn reset(inst: &Instance, id: &str) {
    let _ = std::fs::remove_file(state_path(inst, id));
}

/// Runs the container's health check once and records the result; returns
/// the recorded status ("healthy", "unhealthy", "starting").
pub fn check_and_record(inst: &Instance, id: &str) -> Result<(String, bool), ContainerError> {
    let store = crate::store::Store::open(&inst.db_path())
        .map_err(|e| ContainerError::Runtime(e.to_string()))?;
    let row = crate::store::containers::lookup(store.conn(), id).map_err(|e| match e {
        crate::store::StoreError::NotFound(_) => ContainerError::NotFound(id.to_string()),
        e => ContainerError::Runtime(e.to_string()),
    })?;
    drop(store);
    let cfg = super::lifecycle::config_of(&row);
    let Some(hc) = cfg.healthcheck.clone() else {
        return Err(ContainerError::Invalid(format!(
            "container {} has no defined healthcheck",
            row.name
        )));
    };
    if !super::lifecycle::is_running(&row) {
        return Err(ContainerError::Conflict(format!(
            "container {} is not running",
            row.name
        )));
    }
    let sched = hc.schedule();
    let start = util::now_nanos();
    let (exit_code, output) = run_check(inst, &row, &cfg, &hc.argv(), sched.timeout);
    let end = util::now_nanos();
    let in_start_period =
        Duration::from_nanos((start - row.started_at).max(0) as u64) < sched.start_period;
    let result = HealthResult {
        start: util::rfc3339(start),
        end: util::rfc3339(end),
        exit_code,
        output: truncate_output(output),
    };
    let ok = exit_code == 0;
    let (before, status) = update_json(&state_path(inst, &row.id), true, |s: &mut HealthState| {
        let before = s.status.clone();
        record(s, result, in_start_period, sched.retries);
        (before, s.status.clone())
    })
    .map_err(|e| ContainerError::Runtime(format!("recording the health check: {e}")))?
    .unwrap_or_default();
    if before != status && status != "starting" {
        super::events::container_now(inst, &row.id, &format!("health_status: {status}"), &[]);
    }
    Ok((status, ok))
}

/// One check inside the container (its namespaces, cgroup, user, caps and
/// seccomp, as `exec` runs a process): (exit code, stdout+stderr). A check
/// that outlives `timeout` is killed with its descendants: exit code -1.
fn run_check(
    inst: &Instance,
    row: &crate::store::containers::ContainerRow,
    cfg: &ContainerConfig,
    argv: &[String],
    timeout: Duration,
) -> (i64, String) {
    use super::exec::{exec_in, ExecRequest};
    use crate::runtime::process::ProcessSpec;
    let caps = match super::spec::capabilities(cfg) {
        Ok(c) => c,
        Err(e) => return (-1, e.to_string()),
    };
    let seccomp = super::spec::seccomp_profile(cfg, &caps);
    let process = ProcessSpec {
        args: argv.to_vec(),
        env: cfg.env.clone(),
        cwd: cfg.workdir.clone(),
        user: cfg.user.clone(),
        capabilities: Some(caps),
        no_new_privs: true,
        seccomp,
        ..Default::default()
    };
    let (r, w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return (-1, format!("pipe: {e}")),
    };
    let mut req = ExecRequest::new(row.pid, process);
    req.join_cgroup(&super::runtime::cgroup_of(inst, &row.id));
    req.stdio.stdout = w.try_clone().ok();
    req.stdio.stderr = Some(w);
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut f = std::fs::File::from(r);
        let _ = (&mut f)
            .take(MAX_OUTPUT_LEN as u64 + 4)
            .read_to_end(&mut buf);
        // Drain the rest so the check never blocks on a full pipe.
        let _ = std::io::copy(&mut f, &mut std::io::sink());
        buf
    });
    let timed_out = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    {
        let (timed_out, done) = (timed_out.clone(), done.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < timeout {
                if done.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10).min(timeout));
            }
            if !done.load(Ordering::Relaxed) {
                timed_out.store(true, Ordering::Relaxed);
                kill_descendants(std::process::id() as i32);
            }
        });
    }
    let res = exec_in(&req);
    done.store(true, Ordering::Relaxed);
    drop(req);
    if timed_out.load(Ordering::Relaxed) {
        return (
            -1,
            format!(
                "Health check exceeded timeout ({})",
                format_go_duration(timeout.as_nanos() as i64)
            ),
        );
    }
    // The output is complete once every holder of the pipe has gone; a
    // background child of the check may keep it open, so do not wait long.
    util::wait_until(Duration::from_millis(200), Duration::from_millis(2), || {
        reader.is_finished()
    });
    let out = if reader.is_finished() {
        reader.join().unwrap_or_default()
    } else {
        Vec::new()
    };
    let out = String::from_utf8_lossy(&out).into_owned();
    match res {
        Ok(code) => (i64::from(code), out),
        Err(e) => (-1, e.to_string()),
    }
}

/// SIGKILL to every descendant of `pid` (children first found through
/// /proc/PID/task/*/children), deepest last.
fn kill_descendants(pid: i32) {
    let mut todo = vec![pid];
    let mut found = vec![];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in children
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                found.push(c);
                todo.push(c);
            }
        }
    }
    for c in found {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(cmd: &str) -> HealthFlags {
        HealthFlags {
            cmd: Some(cmd.into()),
            ..Default::default()
        }
    }

    #[test]
    fn go_durations_parse_and_print() {
        assert_eq!(parse_go_duration("200ms").unwrap(), 200_000_000);
        assert_eq!(parse_go_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_go_duration("1.5s").unwrap(), 1_500_000_000);
        assert_eq!(parse_go_duration("0").unwrap(), 0);
        assert_eq!(parse_go_duration("-1s").unwrap(), -1_000_000_000);
        assert!(parse_go_duration("10")
            .unwrap_err()
            .contains("missing unit"));
        assert!(parse_go_duration("3x").is_err());
        assert!(parse_go_duration("").is_err());
        assert_eq!(format_go_duration(200_000_000), "200ms");
        assert_eq!(format_go_duration(30_000_000_000), "30s");
        assert_eq!(format_go_duration(1_500_000_000), "1.5s");
        assert_eq!(format_go_duration(90_000_000_000), "1m30s");
    }

    #[test]
    fn flags_lay_over_the_image_check() {
        let image = HealthConfig {
            test: vec!["CMD".into(), "/ok".into()],
            interval: 5_000_000_000,
            retries: 7,
            ..Default::default()
        };
        let hc = resolve(Some(&image), &HealthFlags::default())
            .unwrap()
            .unwrap();
        assert_eq!(hc, image);
        let f = HealthFlags {
            interval: Some("200ms".into()),
            ..Default::default()
        };
        let hc = resolve(Some(&image), &f).unwrap().unwrap();
        assert_eq!((hc.interval, hc.retries), (200_000_000, 7));
        assert_eq!(hc.argv(), ["/ok"]);
        let hc = resolve(Some(&image), &flags("test -f /x"))
            .unwrap()
            .unwrap();
        assert_eq!(hc.test, ["CMD-SHELL", "test -f /x"]);
        assert_eq!(hc.argv(), ["/bin/sh", "-c", "test -f /x"]);
        let none = HealthFlags {
            none: true,
            ..Default::default()
        };
        assert_eq!(resolve(Some(&image), &none).unwrap(), None);
        assert_eq!(resolve(Some(&image), &flags("none")).unwrap(), None);
        let disabled = HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        };
        assert_eq!(
            resolve(Some(&disabled), &HealthFlags::default()).unwrap(),
            None
        );
        assert_eq!(resolve(None, &HealthFlags::default()).unwrap(), None);
        let broken = HealthConfig {
            test: vec!["CMD".into()],
            ..Default::default()
        };
        assert_eq!(
            resolve(Some(&broken), &HealthFlags::default()).unwrap(),
            None
        );
    }

    #[test]
    fn bad_health_flags_are_refused() {
        let f = HealthFlags {
            interval: Some("10".into()),
            ..flags("true")
        };
        assert!(resolve(None, &f).unwrap_err().contains("--health-interval"));
        let f = HealthFlags {
            retries: Some(-1),
            ..flags("true")
        };
        assert!(resolve(None, &f).is_err());
        let f = HealthFlags {
            interval: Some("200ms".into()),
            ..Default::default()
        };
        assert!(resolve(None, &f).is_err(), "options without a command");
        let f = HealthFlags {
            none: true,
            ..flags("true")
        };
        assert!(resolve(None, &f).is_err());
    }

    fn result(code: i64) -> HealthResult {
        HealthResult {
            exit_code: code,
            output: format!("out{code}"),
            ..Default::default()
        }
    }

    #[test]
    fn results_drive_the_status_like_docker() {
        let mut s = HealthState::default();
        record(&mut s, result(1), true, 2);
        assert_eq!(
            (s.status.as_str(), s.failing_streak),
            (STARTING, 0),
            "start period"
        );
        record(&mut s, result(1), false, 2);
        assert_eq!((s.status.as_str(), s.failing_streak), (STARTING, 1));
        record(&mut s, result(0), false, 2);
        assert_eq!((s.status.as_str(), s.failing_streak), (HEALTHY, 0));
        record(&mut s, result(1), true, 2);
        assert_eq!(
            s.failing_streak, 1,
            "the start period ends with the first success"
        );
        record(&mut s, result(1), false, 2);
        assert_eq!((s.status.as_str(), s.failing_streak), (UNHEALTHY, 2));
        for i in 0..5 {
            record(&mut s, result(10 + i), false, 2);
        }
        assert_eq!(s.log.len(), MAX_LOG_ENTRIES);
        assert_eq!(s.log[0].exit_code, 10);
        assert_eq!(status_suffix(STARTING), " (health: starting)");
        assert_eq!(status_suffix(UNHEALTHY), " (unhealthy)");
    }

    #[test]
    fn output_is_cut_at_four_kib() {
        assert_eq!(truncate_output("x".repeat(5000)).len(), MAX_OUTPUT_LEN);
        let s = truncate_output("é".repeat(3000));
        assert!(s.len() <= MAX_OUTPUT_LEN && s.is_char_boundary(s.len()));
    }
}
