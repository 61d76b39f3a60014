//! Which monitors are alive, for the commands that ask it of every
//! container at once (`ps`, reconciliation), without reading /proc once per
//! container.
//!
//! A monitor, once it waits for its container, holds a write lock on one
//! byte of `<run-root>/monitors.lock`. It is an open-file-description lock
//! (`F_OFD_SETLK`): the kernel drops it when the last copy of the
//! descriptor is closed, so at the latest when the process exits, before it
//! is a zombie. The byte's offset encodes the monitor's pid and start time,
//! the pair a container row names its monitor by, so a lock at that offset
//! is that process's and no other's, even after its pid is reused. A reader
//! asks with `F_OFD_GETLK` on one descriptor: one `fcntl` per container,
//! where reading /proc/PID/stat made the kernel format the whole file
//! (about 40% of `ps`'s samples at 1000 containers).
//!
//! Only "held" is trusted. A monitor that holds no lock (one started by an
//! older minirt, a command that owns a row only for the moment of a start)
//! is checked in /proc as before, so a missing or unreadable lock file
//! costs speed, never a wrong answer. The descriptor is close-on-exec; a
//! child the monitor forks without exec (the socket closers of
//! `nfnl::release`, a container's init before its execve) shares it for the
//! few milliseconds it lives, the only time a lock outlives its monitor.

use crate::util;
use nix::fcntl::{fcntl, FcntlArg};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The lock file in a run root.
fn lock_path(run_root: &Path) -> PathBuf {
    run_root.join("monitors.lock")
}

/// Bits of the offset that hold the pid: the kernel's largest pid_max is
/// 2^22.
const PID_BITS: u32 = 22;

/// The byte a monitor (pid, start time in clock ticks since boot) locks.
/// None for a pair that cannot name a process (pid 0, start unknown) or
/// that does not fit (a start 2^41 ticks after boot: centuries at 100 Hz).
pub(crate) fn offset(pid: i32, start: u64) -> Option<i64> {
    let pid = u64::try_from(pid)
        .ok()
        .filter(|p| (1..1 << PID_BITS).contains(p))?;
    if start == 0 || start >= 1 << (63 - PID_BITS) {
        return None;
    }
    i64::try_from(start << PID_BITS | pid).ok()
}

/// One byte at `off`, of the lock type `kind`, as fcntl takes it.
fn byte(off: i64, kind: i32) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: off,
        l_len: 1,
        // OFD requests must leave l_pid zero.
        l_pid: 0,
    }
}

/// Locks the byte of (pid, start) in the run root's lock file, on a new
/// descriptor: the lock lasts as long as the returned file is open.
fn lock(run_root: &Path, pid: i32, start: u64) -> Option<File> {
    let off = offset(pid, start)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(lock_path(run_root))
        .ok()?;
    fcntl(&file, FcntlArg::F_OFD_SETLK(&byte(off, libc::F_WRLCK))).ok()?;
    Some(file)
}

/// The descriptor this process's lock lives on; never closed.
static HELD: OnceLock<Option<File>> = OnceLock::new();

/// Makes this process's liveness visible to [`Probe`]: locks its byte of
/// the run root's lock file, once per process (later calls do nothing).
/// Best effort: without the lock, readers look in /proc instead.
pub(crate) fn hold(run_root: &Path) {
    HELD.get_or_init(|| {
        let pid = std::process::id() as i32;
        lock(run_root, pid, util::process_start_time(pid)?)
    });
}

/// Reads monitors' locks: opened once, asked once per container.
pub(crate) struct Probe(Option<File>);

impl Probe {
    /// The run root's lock file; no file (no monitor ever locked one) makes
    /// every answer come from /proc.
    pub(crate) fn open(run_root: &Path) -> Probe {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(lock_path(run_root));
        Probe(file.ok())
    }

    /// True when the monitor (pid, start) holds its lock.
    fn held(&self, pid: i32, start: u64) -> bool {
        let (Some(file), Some(off)) = (&self.0, offset(pid, start)) else {
            return false;
        };
        let mut want = byte(off, libc::F_WRLCK);
        fcntl(file, FcntlArg::F_OFD_GETLK(&mut want)).is_ok()
            && want.l_type != libc::F_UNLCK as libc::c_short
    }

    /// True when the process (pid, start) is alive: its lock, or else
    /// /proc (see the module's text).
    pub(crate) fn alive(&self, pid: i32, start: u64) -> bool {
        self.held(pid, start) || util::process_alive(pid, start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pid_and_start_has_its_own_byte() {
        let a = offset(4242, 100).expect("fits");
        assert_ne!(
            Some(a),
            offset(4242, 101),
            "same pid, later start: pid reused"
        );
        assert_ne!(Some(a), offset(4243, 100));
        // The largest pid and a start far beyond any uptime still fit.
        let big = offset((1 << 22) - 1, (1 << 41) - 1).expect("fits");
        assert!(big > a);
    }

    #[test]
    fn pairs_that_name_no_process_have_no_byte() {
        assert_eq!(offset(0, 100), None);
        assert_eq!(offset(-1, 100), None);
        assert_eq!(offset(1 << 22, 100), None, "beyond any pid_max");
        assert_eq!(offset(4242, 0), None, "start unknown");
        assert_eq!(offset(4242, 1 << 41), None, "does not fit the offset");
    }

    /// A lock is seen through another descriptor while its file is open
    /// (the kernel closes it when its process exits) and not after; a
    /// neighbouring byte is never seen held.
    #[test]
    fn a_lock_is_seen_exactly_while_it_is_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (pid, start) = (4242, 1000);
        let held = lock(dir.path(), pid, start).expect("lock");
        let probe = Probe::open(dir.path());
        assert!(probe.held(pid, start), "the lock is seen");
        assert!(!probe.held(pid, start + 1), "the same pid later: not");
        assert!(!probe.held(pid + 1, start), "another pid: not");
        let second = lock(dir.path(), pid, start);
        assert!(second.is_none(), "a byte has one holder");
        drop(held);
        assert!(!probe.held(pid, start), "released with its descriptor");
        assert!(lock(dir.path(), pid, start).is_some(), "and free to take");
    }

    #[test]
    fn without_a_lock_file_the_answer_comes_from_proc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let probe = Probe::open(dir.path());
        let me = std::process::id() as i32;
        let start = util::process_start_time(me).expect("own start");
        assert!(!probe.held(me, start));
        assert!(probe.alive(me, start), "this process is alive by /proc");
        assert!(!probe.alive(me, start + 1));
    }
}
