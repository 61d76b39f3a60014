//! Small helpers shared by several layers: ids, time, process liveness.

use rand::RngCore;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Docker's PATH for a process whose environment names none: the default
/// environment of a container whose image has no PATH, of an `import`ed
/// image, and the child's command lookup before execve.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// [`DEFAULT_PATH`] as an environment entry (`PATH=...`).
pub(crate) fn default_path_env() -> String {
    format!("PATH={DEFAULT_PATH}")
}

/// A random 64-hex id (containers, networks, endpoints), like Docker's.
pub fn new_id() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Nanoseconds since the epoch.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// RFC 3339 with nanoseconds in UTC, as Docker prints times.
pub fn rfc3339(nanos: i64) -> String {
    if nanos <= 0 {
        return "0001-01-01T00:00:00Z".to_string();
    }
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// (year, month, day) of the proleptic Gregorian calendar to days since
/// 1970-01-01; Howard Hinnant's algorithm, the inverse of `civil_from_days`.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// "3 seconds", "About a minute", "2 hours" like Docker's HumanDuration.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        _ if s < 3600 => format!("{} minutes", s / 60),
        _ if s < 2 * 3600 => "About an hour".into(),
        _ if s < 48 * 3600 => format!("{} hours", s / 3600),
        _ if s < 7 * 24 * 3600 * 2 => format!("{} days", s / 86_400),
        _ if s < 30 * 24 * 3600 * 2 => format!("{} weeks", s / (7 * 86_400)),
        _ if s < 365 * 24 * 3600 * 2 => format!("{} months", s / (30 * 86_400)),
        _ => format!("{} years", s / (365 * 86_400)),
    }
}

/// Start time of a process (field 22 of /proc/PID/stat, in clock ticks since
/// boot). A pid plus its start time names one process even after pid reuse.
pub(crate) fn process_start_time(pid: i32) -> Option<u64> {
    let mut buf = [0u8; 2048];
    let stat = read_proc_stat(pid, &mut buf)?;
    // The command name may contain spaces and parens: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// /proc/PID/stat in one read(2) into `buf` (the kernel hands the whole
/// line to one read when it fits; `read_to_string` made a statx and six
/// growing reads of it, and `ps` reads one per container).
fn read_proc_stat(pid: i32, buf: &mut [u8]) -> Option<&str> {
    use std::io::Read;
    let mut f = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let n = f.read(buf).ok()?;
    if n == buf.len() {
        return None;
    }
    std::str::from_utf8(&buf[..n]).ok()
}

/// True when `pid` is alive (not a zombie) and is still the process that
/// started at `start`.
pub fn process_alive(pid: i32, start: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    let mut buf = [0u8; 2048];
    let Some(stat) = read_proc_stat(pid, &mut buf) else {
        return false;
    };
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next().unwrap_or("Z");
    let started: Option<u64> = fields.nth(18).and_then(|s| s.parse().ok());
    state != "Z" && state != "X" && started == Some(start)
}

/// Test-only crash switch at a run-path step; see [`crate::fault`].
pub(crate) fn fault_point(point: &str) {
    crate::fault::point(point);
}

/// Polls `cond` every `poll` until it holds (true) or `timeout` has passed
/// (false); `cond` is asked once more at the deadline.
pub(crate) fn wait_until(
    timeout: Duration,
    poll: Duration,
    mut cond: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(poll);
    }
}

/// The names in a directory, sorted (none when it cannot be read); for
/// tests that check what a command left behind.
#[cfg(test)]
pub(crate) fn dir_names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_epoch_offsets() {
        assert_eq!(rfc3339(1_000_000_000), "1970-01-01T00:00:01.000000000Z");
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
    }

    #[test]
    fn human_durations_match_docker_wording() {
        assert_eq!(human_duration(3), "3 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(300), "5 minutes");
        assert_eq!(human_duration(7200), "2 hours");
    }

    #[test]
    fn own_process_is_alive_and_ids_are_64_hex() {
        let me = std::process::id() as i32;
        let st = process_start_time(me).expect("own stat");
        assert!(process_alive(me, st));
        assert!(!process_alive(me, st + 1));
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
