//! The waiting half of a detached container's monitor. Once the container
//! runs, the monitor execs `minirt __wait PID ROOT RUNROOT ID`: a process
//! that only sits in waitpid(2) touches a few pages, so a host with hundreds
//! of containers does not pay a full runtime's memory for each. When the
//! container exits it execs `minirt __finish` to record the exit and tear
//! down (exec keeps the pid, so the monitor stays the container's parent),
//! and to restart it when its policy says so (see monitor.rs). With a health
//! check the waiter also keeps the check's schedule: it sleeps in poll(2) on
//! the container's pidfd and starts a short-lived `minirt __health` process
//! when a check is due, so the resident monitor does not grow with checks.
//! It also reads the container's stdout and stderr pipes as they fill and
//! appends them to the log as timed records (see logs.rs), through fixed
//! buffers: the container's writes never wait for a logger process.

use super::logs::{RecordWriter, Stream};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

pub(crate) const WAIT_ARG: &str = "__wait";
/// The waiter's argument naming the inherited stdout/stderr pipes.
const LOG_FDS_PREFIX: &str = "log:";
/// One health check, started by the waiter (see health.rs).
pub(crate) const HEALTH_ARG: &str = "__health";

/// Entry point checked first thing in `main`: Some(exit code) when this
/// process is one of the monitor's internal processes (waiter, health
/// check, a monitor started by reconciliation), None otherwise.
pub fn run_if_waiter() -> Option<i32> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let arg1 = args.get(1).map(|a| a.as_bytes());
    if arg1 == Some(HEALTH_ARG.as_bytes()) || arg1 == Some(super::monitor::MONITOR_ARG.as_bytes()) {
        return Some(internal(&args));
    }
    if arg1 != Some(WAIT_ARG.as_bytes()) {
        return None;
    }
    let [exe, _, pid, root, run_root, id, rest @ ..] = args.as_slice() else {
        return Some(125);
    };
    let Some(pid) = pid.to_str().and_then(|p| p.parse::<i32>().ok()) else {
        return Some(125);
    };
    // Optional: the health schedule, and "log:OUT,ERR" (the inherited read
    // ends of the container's stdout and stderr pipes).
    let mut schedule = None;
    let mut pump = None;
    for a in rest.iter().filter_map(|a| a.to_str()) {
        match a.strip_prefix(LOG_FDS_PREFIX) {
            Some(fds) => pump = inherited_pump(fds, std::path::Path::new(root), id),
            None => schedule = parse_schedule_arg(a),
        }
    }
    release_clean_file_pages();
    let check_argv = [
        b"minirt".as_slice(),
        HEALTH_ARG.as_bytes(),
        root.as_bytes(),
        run_root.as_bytes(),
        id.as_bytes(),
    ]
    .iter()
    .filter_map(|a| CString::new(*a).ok())
    .collect::<Vec<_>>();
    // The monitor's liveness, for `ps` and reconciliation (the lock of
    // the process before the exec went with its descriptor).
    super::liveness::hold(std::path::Path::new(run_root));
    // Starting a check faults code pages back in; they are dropped again
    // before the next one, so between checks the waiter stays as small.
    let code = wait_container_pumping(
        pid,
        schedule.as_ref(),
        || {
            release_clean_file_pages();
            spawn_exe(&check_argv)
        },
        pump.as_mut(),
        // This process's children are the container, its checks and the
        // strays the monitor left: the only place that may reap any child.
        true,
    );
    drop(pump);
    let argv = [
        exe.as_bytes(),
        b"--root",
        root.as_bytes(),
        b"--run-root",
        run_root.as_bytes(),
        b"__finish",
        id.as_bytes(),
        code.to_string().as_bytes(),
    ]
    .iter()
    .filter_map(|a| CString::new(*a).ok())
    .collect::<Vec<_>>();
    let path = CString::new("/proc/self/exe").ok()?;
    let _ = nix::unistd::execv(&path, &argv);
    // exec failed: finish here instead, with a full runtime's memory.
    let inst =
        crate::Instance::new(std::path::Path::new(root), std::path::Path::new(run_root)).ok()?;
    Some(
        match super::monitor::after_exit(&inst, &id.to_string_lossy(), code) {
            Ok(()) => 0,
            Err(_) => 1,
        },
    )
}

/// `__health ROOT RUNROOT ID` (exit 0 when the check passed, 1 when it
/// failed, 125 when it could not run) and `__monitor ROOT RUNROOT ID MODE`.
fn internal(args: &[OsString]) -> i32 {
    let (Some(root), Some(run_root), Some(id)) = (args.get(2), args.get(3), args.get(4)) else {
        return 125;
    };
    let Ok(inst) = crate::Instance::new(std::path::Path::new(root), std::path::Path::new(run_root))
    else {
        return 125;
    };
    let id = id.to_string_lossy();
    if args.get(1).map(|a| a.as_bytes()) == Some(HEALTH_ARG.as_bytes()) {
        return match super::health::check_and_record(&inst, &id) {
            Ok((_, true)) => 0,
            Ok((_, false)) => 1,
            Err(_) => 125,
        };
    }
    let mode = args.get(5).map(|m| m.to_string_lossy()).unwrap_or_default();
    super::monitor::monitor_entry(&inst, &id, &mode)
}

/// The schedule as the waiter's last argument: "INTERVAL,START_PERIOD,START_INTERVAL" in ms.
fn schedule_arg(s: &super::health::Schedule) -> String {
    format!(
        "{},{},{}",
        s.interval.as_millis(),
        s.start_period.as_millis(),
        s.start_interval.as_millis()
    )
}

fn parse_schedule_arg(s: &str) -> Option<super::health::Schedule> {
    let mut it = s.split(',').map(|v| v.parse::<u64>().ok());
    let (Some(Some(i)), Some(Some(sp)), Some(Some(si))) = (it.next(), it.next(), it.next()) else {
        return None;
    };
    Some(super::health::Schedule {
        interval: Duration::from_millis(i),
        timeout: Duration::ZERO,
        start_period: Duration::from_millis(sp),
        start_interval: Duration::from_millis(si),
        retries: 0,
    })
}

/// fork + exec of this binary with `argv`; the child's pid.
fn spawn_exe(argv: &[CString]) -> Option<i32> {
    let path = CString::new("/proc/self/exe").ok()?;
    // SAFETY: the child only calls execv (or _exit); the caller is the
    // single-threaded waiter or a monitor whose other threads hold no lock
    // the child needs (argv and path are built before the fork).
    match unsafe { nix::unistd::fork() }.ok()? {
        nix::unistd::ForkResult::Child => {
            let _ = nix::unistd::execv(&path, argv);
            // SAFETY: leave the failed child without running our destructors.
            unsafe { libc::_exit(125) }
        }
        nix::unistd::ForkResult::Parent { child } => Some(child.as_raw()),
    }
}

/// Starts one health check of container `id` (`minirt __health`).
pub(crate) fn spawn_check(inst: &crate::Instance, id: &str) -> Option<i32> {
    let argv = [
        b"minirt".as_slice(),
        HEALTH_ARG.as_bytes(),
        inst.root.as_os_str().as_bytes(),
        inst.run_root.as_os_str().as_bytes(),
        id.as_bytes(),
    ]
    .iter()
    .filter_map(|a| CString::new(*a).ok())
    .collect::<Vec<_>>();
    spawn_exe(&argv)
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The exit code of `pid`: reaped when it is our child; when it is not (a
/// container adopted from a monitor that died), its exit is seen through a
/// pidfd and its code is lost: 255, as reconciliation records it.
fn reap(pid: i32) -> i32 {
    match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => super::runtime::wait_exit(pid),
        Ok(WaitStatus::Exited(_, code)) => code,
        Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
        Ok(_) => super::runtime::wait_exit(pid),
        Err(_) => 255,
    }
}

/// Reaps exited children other than `keep` (the container's init and a
/// running health check, whose exits are read through their pidfds). The
/// runtime leaves short-lived children behind: `nfnl::release` forks one per
/// nftables change to pay the socket's deferred flush off the start path,
/// and it exits some milliseconds later, after the monitor has become this
/// waiter. Unreaped, each stays a zombie for the container's whole life (two
/// per container: 2000 extra tasks beside 1000 containers, which every
/// task-list walk such as `pivot_root`'s pays for). `WNOWAIT` peeks first,
/// so the container's own exit status is never taken here.
fn reap_strays(keep: &[i32]) {
    loop {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        // SAFETY: waitid writes only into `info`.
        if unsafe { libc::waitid(libc::P_ALL, 0, &mut info, flags) } != 0 {
            return; // no children at all (ECHILD)
        }
        // SAFETY: waitid filled in a child's state (si_pid 0: none exited).
        let pid = unsafe { info.si_pid() };
        if pid == 0 || keep.contains(&pid) {
            return;
        }
        // SAFETY: reaps that one child, which has exited, status not read.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    }
}

/// When to look for exited strays again: soon after the waiter starts
/// (the forked closers exit within tens of milliseconds), then less and
/// less often, never more than every ten minutes.
fn next_sweep(after: Duration) -> Duration {
    (after * 5).clamp(Duration::from_millis(50), Duration::from_secs(600))
}

/// The container's stdout and stderr pipes, read as soon as they have
/// something (so the container's writes never wait on us for long) and
/// written as records into its log; for a foreground run also copied to
/// our own stdout and stderr (`tee`).
pub struct Pump {
    pipes: [Option<OwnedFd>; 2],
    log: Option<RecordWriter<std::fs::File>>,
    tee: bool,
    /// In the resident waiter: after output, once quiet for a second, drop
    /// again the code pages the writing touched (see release_clean_file_pages).
    release_when_idle: bool,
    wrote: bool,
}

impl Pump {
    /// `pipes`: the read ends (made non-blocking and close-on-exec here).
    pub fn new(pipes: (OwnedFd, OwnedFd), log: Option<std::fs::File>, tee: bool) -> Pump {
        for fd in [&pipes.0, &pipes.1] {
            // SAFETY: fcntl on a descriptor we own.
            unsafe {
                let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        Pump {
            pipes: [Some(pipes.0), Some(pipes.1)],
            log: log.map(RecordWriter::new),
            tee,
            release_when_idle: false,
            wrote: false,
        }
    }

    fn raw(&self, i: usize) -> i32 {
        self.pipes[i].as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// One read of pipe `i` (0 stdout, 1 stderr); false when nothing more
    /// is there now. A pipe at end of file is closed.
    fn read(&mut self, i: usize) -> bool {
        let Some(fd) = &self.pipes[i] else {
            return false;
        };
        let mut buf = [0u8; 4096];
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => {
                self.pipes[i] = None;
                false
            }
            Ok(n) => {
                self.wrote = true;
                let stream = if i == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                };
                if let Some(log) = &mut self.log {
                    // A full disk loses log lines, never the container's writes.
                    let _ = log.write_chunk(stream, crate::util::now_nanos(), &buf[..n]);
                }
                if self.tee {
                    write_all_fd(1 + i as i32, &buf[..n]);
                }
                true
            }
            Err(nix::errno::Errno::EAGAIN) => false,
            Err(nix::errno::Errno::EINTR) => true,
            Err(_) => {
                self.pipes[i] = None;
                false
            }
        }
    }

    /// What the container wrote before its exit (bounded: with a shared
    /// pid namespace other writers may live on).
    fn drain(&mut self) {
        for i in 0..2 {
            for _ in 0..1024 {
                if !self.read(i) {
                    break;
                }
            }
        }
    }
}

/// write(2) all of `data` to `fd`; errors (a reader gone) drop the rest.
fn write_all_fd(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writes from a valid buffer of the given length.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            return;
        }
        data = &data[n as usize..];
    }
}

/// The read ends of the output pipes of a container whose monitor died,
/// opened again through /proc (a pipe opened there for reading is the same pipe).
pub fn reopen_output(pid: i32) -> Option<(OwnedFd, OwnedFd)> {
    let open = |n: i32| -> Option<OwnedFd> {
        let path = format!("/proc/{pid}/fd/{n}");
        let target = std::fs::read_link(&path).ok()?;
        if !target.to_string_lossy().starts_with("pipe:") {
            return None;
        }
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .ok()?;
        Some(f.into())
    };
    Some((open(1)?, open(2)?))
}

/// The pump of a waiter exec'd with "log:OUT,ERR": it takes over those
/// descriptors and appends to the container's records file.
fn inherited_pump(fds: &str, root: &std::path::Path, id: &OsString) -> Option<Pump> {
    let (o, e) = fds.split_once(',')?;
    let (o, e) = (o.parse::<i32>().ok()?, e.parse::<i32>().ok()?);
    for fd in [o, e] {
        // SAFETY: F_GETFD only checks that the descriptor is open.
        if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return None;
        }
    }
    // SAFETY: the monitor that exec'd us left these open for us alone.
    let pipes = unsafe { (OwnedFd::from_raw_fd(o), OwnedFd::from_raw_fd(e)) };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(
            root.join("containers")
                .join(id)
                .join(super::logs::RECORDS_FILE),
        )
        .ok();
    let mut pump = Pump::new(pipes, log, false);
    pump.release_when_idle = true;
    Some(pump)
}

/// Waits for the container's init to exit, running health checks on their
/// schedule meanwhile (one at a time, each a child started by `check`,
/// which exits 0 when the check passed). Docker's schedule: every
/// `start_interval` while in the start period and never healthy, else
/// every `interval`, counted from the end of the previous check.
pub(crate) fn wait_container(
    pid: i32,
    schedule: Option<&super::health::Schedule>,
    check: impl FnMut() -> Option<i32>,
) -> i32 {
    wait_container_pumping(pid, schedule, check, None, false)
}

/// [`wait_container`], also moving the container's output into its log
/// through `pump`: one poll(2) over the pidfd, the running check and the
/// two pipes.
pub(crate) fn wait_container_pumping(
    pid: i32,
    schedule: Option<&super::health::Schedule>,
    mut check: impl FnMut() -> Option<i32>,
    mut pump: Option<&mut Pump>,
    sweep: bool,
) -> i32 {
    let Some(container) = pidfd_open(pid) else {
        // No pidfd (an old kernel): the output until its end, then the exit.
        if let Some(p) = pump {
            while p.pipes.iter().any(Option::is_some) {
                let mut fds = [0, 1].map(|i| libc::pollfd {
                    fd: p.raw(i),
                    events: libc::POLLIN,
                    revents: 0,
                });
                // SAFETY: two valid pollfds for the duration of the call.
                unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                for (i, f) in fds.iter().enumerate() {
                    if f.revents != 0 {
                        p.read(i);
                    }
                }
            }
        }
        return super::runtime::wait_exit(pid);
    };
    let t0 = Instant::now();
    let mut passed_once = false;
    let next_delay = |passed_once: bool| match schedule {
        Some(s) if !passed_once && t0.elapsed() < s.start_period => s.start_interval,
        Some(s) => s.interval,
        None => Duration::MAX,
    };
    let mut due = schedule.map(|_| Instant::now() + next_delay(false));
    let mut running: Option<(i32, Option<OwnedFd>)> = None;
    let mut sweep_every = next_sweep(Duration::ZERO);
    let mut sweep_at = Instant::now() + sweep_every;
    loop {
        let now = Instant::now();
        if sweep && now >= sweep_at {
            reap_strays(&[pid, running.as_ref().map_or(0, |r| r.0)]);
            sweep_every = next_sweep(sweep_every);
            sweep_at = now + sweep_every;
        }
        // The next check (none while one runs) or sweep, whichever is first.
        let check_due = due.filter(|_| running.is_none());
        let wake = check_due.into_iter().chain(sweep.then_some(sweep_at)).min();
        let mut timeout = wake.map_or(-1, |w| {
            let ms = w.saturating_duration_since(now).as_millis();
            ms.min(i32::MAX as u128) as i32
        });
        let idle_release = pump
            .as_ref()
            .is_some_and(|p| p.release_when_idle && p.wrote);
        // Quiet for a second after output: the pages it touched go again.
        let idle_wake = idle_release && !(0..1000).contains(&timeout);
        if idle_wake {
            timeout = 1000;
        }
        let check_fd = running
            .as_ref()
            .and_then(|(_, fd)| fd.as_ref())
            .map_or(-1, |f| f.as_raw_fd());
        let pipe = |i| pump.as_ref().map_or(-1, |p| p.raw(i));
        let mut fds = [container.as_raw_fd(), check_fd, pipe(0), pipe(1)].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: four valid pollfds (or -1, ignored) for the duration of the call.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 4, timeout) };
        if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            fds[0].revents = libc::POLLIN;
        }
        if let Some(p) = pump.as_mut() {
            for i in 0..2 {
                if fds[2 + i].revents != 0 {
                    p.read(i);
                }
            }
        }
        if r == 0 && idle_wake {
            if let Some(p) = pump.as_mut() {
                p.wrote = false;
            }
            release_clean_file_pages();
        }
        if fds[0].revents != 0 {
            if let Some(p) = pump.as_mut() {
                p.drain();
            }
            if let Some((check_pid, _)) = running {
                let check_pid = nix::unistd::Pid::from_raw(check_pid);
                let _ = nix::sys::signal::kill(check_pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(check_pid, None);
            }
            return reap(pid);
        }
        if fds[1].revents != 0 {
            if let Some((check_pid, _)) = running.take() {
                let ok = matches!(
                    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(check_pid), None),
                    Ok(WaitStatus::Exited(_, 0))
                );
                passed_once |= ok;
                due = Some(Instant::now() + next_delay(passed_once));
            }
        }
        if running.is_none() && due.is_some_and(|d| Instant::now() >= d) {
            match check() {
                Some(check_pid) => running = Some((check_pid, pidfd_open(check_pid))),
                None => due = Some(Instant::now() + next_delay(passed_once)),
            }
        }
    }
}

/// Unmaps, from this process only, the pages of read-only file mappings
/// that hold nothing but file contents (no private copies: smaps shows
/// `Anonymous: 0 kB`): the runtime's code and constants that startup
/// touched and the wait never needs again. They stay in the page cache,
/// shared with every other minirt process; the few the wait loop and the
/// final exec use are mapped back on demand. What is left is this process's
/// real footprint: ~200 KiB of RSS instead of ~2 MiB, per detached container.
fn release_clean_file_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for (start, end) in clean_readonly_file_mappings(&smaps) {
        // SAFETY: MADV_DONTNEED on a read-only, file-backed mapping without
        // private pages only drops page table entries; the contents are
        // read back from the file on the next access, unchanged.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
    // The smaps text just read (and what startup freed) stays in the heap as
    // dirty pages unless given back.
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Address ranges of mappings in `smaps` that are file-backed, not
/// writable, and hold no anonymous (private, modified) pages (pure).
fn clean_readonly_file_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = vec![];
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or_default();
        if let Some((a, b)) = first.split_once('-') {
            // A mapping header: "start-end perms offset dev inode [path]".
            let perms = f.next().unwrap_or_default();
            let inode = f.nth(2).unwrap_or("0");
            let path = f.next().unwrap_or_default();
            let range = usize::from_str_radix(a, 16)
                .ok()
                .zip(usize::from_str_radix(b, 16).ok());
            current =
                range.filter(|_| !perms.contains('w') && inode != "0" && path.starts_with('/'));
        } else if first == "Anonymous:" {
            if let Some(r) = current.take() {
                if f.next() == Some("0") {
                    out.push(r);
                }
            }
        }
    }
    out
}

/// Replaces the monitor with a waiter for `pid`; returns only on failure.
/// `output`: the read ends of the container's stdout and stderr pipes,
/// handed to the waiter across the exec.
pub(crate) fn exec_waiter(
    inst: &crate::Instance,
    id: &str,
    pid: i32,
    output: Option<&(OwnedFd, OwnedFd)>,
) -> nix::Error {
    let schedule = super::monitor::schedule_of(inst, id).map(|s| schedule_arg(&s));
    let log_fds = output.map(|(o, e)| {
        for fd in [o, e] {
            // SAFETY: fcntl on a descriptor we own: it stays open across the exec.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) };
        }
        format!("{LOG_FDS_PREFIX}{},{}", o.as_raw_fd(), e.as_raw_fd())
    });
    let pid = pid.to_string();
    let argv: Vec<CString> = [
        b"minirt".as_slice(),
        WAIT_ARG.as_bytes(),
        pid.as_bytes(),
        inst.root.as_os_str().as_bytes(),
        inst.run_root.as_os_str().as_bytes(),
        id.as_bytes(),
    ]
    .into_iter()
    .chain(schedule.as_deref().map(str::as_bytes))
    .chain(log_fds.as_deref().map(str::as_bytes))
    .filter_map(|a| CString::new(a).ok())
    .collect();
    let Ok(path) = CString::new("/proc/self/exe") else {
        return nix::Error::EINVAL;
    };
    match nix::unistd::execv(&path, &argv) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_schedule_travels_as_one_argument() {
        let s = crate::container::health::HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            interval: 200_000_000,
            start_period: 1_000_000_000,
            ..Default::default()
        }
        .schedule();
        let arg = schedule_arg(&s);
        assert_eq!(arg, "200,1000,5000");
        let back = parse_schedule_arg(&arg).unwrap();
        assert_eq!(
            (back.interval, back.start_period, back.start_interval),
            (s.interval, s.start_period, s.start_interval)
        );
        assert!(parse_schedule_arg("200,x,1").is_none());
        assert!(parse_schedule_arg("200").is_none());
    }

    #[test]
    fn strays_are_looked_for_soon_then_rarely() {
        let mut t = Duration::ZERO;
        let mut seen = vec![];
        for _ in 0..8 {
            t = next_sweep(t);
            seen.push(t.as_millis());
        }
        assert_eq!(seen, [50, 250, 1250, 6250, 31250, 156250, 600000, 600000]);
    }

    /// In a forked copy of the test process (so no other test's child is
    /// touched), with only libc calls: an exited stray is reaped, the
    /// kept child is not, neither while it runs nor after it exited.
    #[test]
    fn strays_are_reaped_and_the_kept_child_keeps_its_status() {
        // SAFETY: the forked child only calls async-signal-safe libc
        // functions (fork, pipe, read, close, waitid, waitpid, _exit) and
        // reap_strays, which allocates nothing.
        unsafe {
            let outer = libc::fork();
            assert!(outer >= 0);
            if outer == 0 {
                let fail = |code| libc::_exit(code);
                let stray = libc::fork();
                if stray == 0 {
                    libc::_exit(0);
                }
                let mut p = [0; 2];
                if libc::pipe(p.as_mut_ptr()) != 0 {
                    fail(2);
                }
                let keep = libc::fork();
                if keep == 0 {
                    libc::close(p[1]);
                    let mut b = 0u8;
                    libc::read(p[0], (&mut b as *mut u8).cast(), 1);
                    libc::_exit(7);
                }
                libc::close(p[0]);
                let mut info: libc::siginfo_t = std::mem::zeroed();
                let peek = libc::WEXITED | libc::WNOWAIT;
                if libc::waitid(libc::P_PID, stray as u32, &mut info, peek) != 0 {
                    fail(3);
                }
                reap_strays(&[keep]);
                if libc::waitpid(stray, std::ptr::null_mut(), libc::WNOHANG) != -1 {
                    fail(4); // still there: not reaped
                }
                libc::close(p[1]); // the kept child exits now
                if libc::waitid(libc::P_PID, keep as u32, &mut info, peek) != 0 {
                    fail(5);
                }
                reap_strays(&[keep]);
                let mut status = 0;
                if libc::waitpid(keep, &mut status, 0) != keep
                    || !libc::WIFEXITED(status)
                    || libc::WEXITSTATUS(status) != 7
                {
                    fail(6);
                }
                libc::_exit(0);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(outer, &mut status, 0), outer);
            assert!(libc::WIFEXITED(status));
            assert_eq!(libc::WEXITSTATUS(status), 0, "step that failed");
        }
    }

    /// The waiter's loop with a fake check: checks run on the schedule while
    /// the process lives, and the exit code comes back.
    #[test]
    fn checks_run_while_the_process_lives_and_its_code_is_returned() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read x; exit 7"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut stdin = child.stdin.take();
        let sched = crate::container::health::Schedule {
            interval: Duration::from_millis(20),
            timeout: Duration::ZERO,
            start_period: Duration::ZERO,
            start_interval: Duration::from_millis(20),
            retries: 1,
        };
        let mut checks = 0;
        let code = wait_container(pid, Some(&sched), || {
            checks += 1;
            if checks == 3 {
                stdin.take();
            }
            std::process::Command::new("true")
                .spawn()
                .ok()
                .map(|c| c.id() as i32)
        });
        assert_eq!(code, 7);
        assert!(checks >= 3);
        // Reaped by wait_container already: this only satisfies the type.
        let _ = child.wait();
    }

    #[test]
    fn only_clean_readonly_file_mappings_are_released() {
        let smaps = "\
00200000-005b8000 r--p 00000000 fe:00 10010634   /usr/local/bin/minirt
Rss:                 448 kB
Anonymous:             0 kB
005b8000-00baa000 r-xp 003b7000 fe:00 10010634   /usr/local/bin/minirt
Rss:                1544 kB
Anonymous:             0 kB
00baa000-00bb2000 r--p 009a8000 fe:00 10010634   /usr/local/bin/minirt
Anonymous:            32 kB
00bb2000-00bba000 rw-p 009af000 fe:00 10010634   /usr/local/bin/minirt
Anonymous:            32 kB
00bba000-00bc1000 rw-p 00000000 00:00 0
Anonymous:            16 kB
7ffd53d21000-7ffd53d42000 rw-p 00000000 00:00 0                          [stack]
Anonymous:            12 kB
7f35d5a8a000-7f35d5a8c000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
";
        assert_eq!(
            clean_readonly_file_mappings(smaps),
            vec![(0x200000, 0x5b8000), (0x5b8000, 0xbaa000)]
        );
    }

    /// In this (test) process, with other test threads running: dropping
    /// the clean pages leaves code and constants intact (a private page
    /// dropped by mistake would lose relocations or data and crash).
    #[test]
    fn releasing_keeps_the_process_working() {
        release_clean_file_pages();
        let v: Vec<String> = (0..100).map(|i| format!("{i:x}")).collect();
        assert_eq!(v.join("").len(), 16 + 2 * 84);
        assert!(clean_readonly_file_mappings("").is_empty());
    }
}
