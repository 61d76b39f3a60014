//! Pseudo-terminals for `-t`: allocate one, give the child its slave as controlling terminal,
//! put our own terminal in raw mode, and relay bytes (and window sizes) until the child is gone.

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, SpecialCharacterIndices, Termios};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// A new pty pair; both ends close-on-exec (the child's dup2 onto 0/1/2 clears the flag there).
pub(crate) fn open_pty() -> nix::Result<(OwnedFd, OwnedFd)> {
    let pty = nix::pty::openpty(None, None)?;
    for fd in [&pty.master, &pty.slave] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    Ok((pty.master, pty.slave))
}

/// Child side: new session, `slave` becomes the controlling terminal and stdin/stdout/stderr.
pub(crate) fn make_controlling_terminal(slave: &OwnedFd) -> nix::Result<()> {
    nix::unistd::setsid()?;
    // SAFETY: TIOCSCTTY takes an int argument; slave is a valid open fd.
    let r = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY as _, 0) };
    Errno::result(r)?;
    nix::unistd::dup2_stdin(slave)?;
    nix::unistd::dup2_stdout(slave)?;
    nix::unistd::dup2_stderr(slave)?;
    Ok(())
}

/// True when `fd` is the master side of a pty (only masters answer TIOCGPTN). Used to check a
/// master handed to us from inside a container before we trust it.
pub(crate) fn is_pty_master(fd: BorrowedFd<'_>) -> bool {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGPTN, &mut n) == 0 }
}

/// Send one message with an optional fd attached over a unix socket (a pty master opened inside
/// the container's devpts travels back to the relaying process this way).
pub(crate) fn send_fd(sock: BorrowedFd<'_>, fd: Option<BorrowedFd<'_>>) -> nix::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = fd.map(|f| [f.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage> = fds
        .as_ref()
        .map(|f| ControlMessage::ScmRights(f))
        .into_iter()
        .collect();
    let iov = [io::IoSlice::new(if fd.is_some() { b"F" } else { b"N" })];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None)?;
    Ok(())
}

/// Receive what [`send_fd`] sent: the fd (close-on-exec), or None when none was attached or the
/// peer went away without sending.
pub(crate) fn recv_fd(sock: BorrowedFd<'_>) -> nix::Result<Option<OwnedFd>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            other => break other?,
        }
    };
    let mut got: Option<OwnedFd> = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for raw in fds {
                // SAFETY: the kernel just installed these fds for us; we own them now.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                if got.is_none() {
                    got = Some(owned);
                }
            }
        }
    }
    Ok(got)
}

/// True when `fd` is a terminal.
pub(crate) fn is_tty(fd: BorrowedFd<'_>) -> bool {
    nix::unistd::isatty(fd).unwrap_or(false)
}

/// Puts a terminal in raw mode for as long as it lives; restores the saved settings on drop,
/// including while unwinding from a panic (not under panic=abort, where nothing unwinds).
pub(crate) struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Raw mode on the terminal behind `fd` (a dup is kept, so the caller's fd may close first).
    pub(crate) fn enter(fd: BorrowedFd<'_>) -> nix::Result<RawMode> {
        let saved = termios::tcgetattr(fd)?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let fd = fd
            .try_clone_to_owned()
            .map_err(|e| e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO))?;
        termios::tcsetattr(&fd, SetArg::TCSANOW, &raw)?;
        Ok(RawMode { fd, saved })
    }

    /// Raw mode on our stdin when it is a terminal; None otherwise.
    pub(crate) fn enter_stdin() -> Option<RawMode> {
        let stdin = io::stdin();
        let fd = stdin.as_fd();
        if is_tty(fd) {
            RawMode::enter(fd).ok()
        } else {
            None
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Nothing useful to do if the terminal is gone.
        let _ = termios::tcsetattr(&self.fd, SetArg::TCSANOW, &self.saved);
    }
}

/// Give terminal `to` the window size of terminal `from`.
pub(crate) fn copy_winsize(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: winsize is plain data; TIOCGWINSZ/TIOCSWINSZ read/write exactly one winsize.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        Errno::result(libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws))?;
        Errno::result(libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws))?;
    }
    Ok(())
}

/// Relay our stdin (if `stdin`) to the pty and the pty to our stdout until the child side is
/// closed. When stdin is relayed and is a terminal it is put in raw mode meanwhile, so keys
/// (^C included) reach the program and echo comes from the pty only. The caller must have
/// closed its own copy of the slave, or this never ends.
pub(crate) fn relay(master: OwnedFd, stdin: bool) -> io::Result<()> {
    let input = io::stdin();
    let output = io::stdout();
    let input_fd = if stdin { Some(input.as_fd()) } else { None };
    let _raw = if stdin { RawMode::enter_stdin() } else { None };
    relay_fds(master, input_fd, output.as_fd())
}

/// Copy the pty's output into `out` (the detached monitor's log) until the child side closes.
pub(crate) fn relay_to_writer(master: OwnedFd, mut out: impl Write) -> io::Result<()> {
    let mut buf = [0u8; 8192];
    loop {
        match nix::unistd::read(&master, &mut buf) {
            Ok(0) | Err(Errno::EIO) => break,
            Ok(n) => out.write_all(&buf[..n])?,
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => {
                if let Err(e) = wait_readable(master.as_fd()) {
                    return Err(e.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    out.flush()
}

fn wait_readable(fd: BorrowedFd<'_>) -> nix::Result<()> {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::NONE) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Restores the thread's signal mask when the relay ends.
struct MaskGuard(SigSet);

impl Drop for MaskGuard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

/// Watch SIGWINCH through a signalfd (the signal is blocked on this thread meanwhile).
fn winch_fd() -> nix::Result<(SignalFd, MaskGuard)> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGWINCH);
    let mut old = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))?;
    let guard = MaskGuard(old);
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    Ok((sfd, guard))
}

fn write_all_fd(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::NONE);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The relay loop with explicit ends (tests and `exec` use pipes here). Input written to the
/// pty is buffered and the master is non-blocking, so a child that does not read its input can
/// never stop us from draining its output.
pub(crate) fn relay_fds(
    master: OwnedFd,
    input: Option<BorrowedFd<'_>>,
    output: BorrowedFd<'_>,
) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(&master, FcntlArg::F_GETFL)?);
    fcntl(&master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;

    let input_tty = input.filter(|fd| is_tty(*fd));
    // Block SIGWINCH before the first copy so a resize in between is not lost.
    let winch = match input_tty {
        Some(tty) => {
            let w = winch_fd().ok();
            let _ = copy_winsize(tty, master.as_fd());
            w
        }
        None => None,
    };

    let mut input = input;
    let mut pending: Vec<u8> = Vec::new();
    let mut last_input_byte: Option<u8> = None;
    let mut send_eof_after_pending = false;
    let mut buf = [0u8; 8192];

    loop {
        let mut fds: Vec<PollFd> = Vec::with_capacity(3);
        let master_events = if pending.is_empty() {
            PollFlags::POLLIN
        } else {
            PollFlags::POLLIN | PollFlags::POLLOUT
        };
        fds.push(PollFd::new(master.as_fd(), master_events));
        // Stop reading input while some is still waiting to go in: that is our backpressure.
        let input_slot = match input {
            Some(fd) if pending.is_empty() && !send_eof_after_pending => {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        let winch_slot = winch.as_ref().map(|(sfd, _)| {
            fds.push(PollFd::new(sfd.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });

        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready = |i: usize| fds[i].revents().unwrap_or(PollFlags::empty());
        let master_rev = ready(0);
        let input_rev = input_slot.map(ready).unwrap_or(PollFlags::empty());
        let winch_rev = winch_slot.map(ready).unwrap_or(PollFlags::empty());
        drop(fds);

        if master_rev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match nix::unistd::read(&master, &mut buf) {
                Ok(0) | Err(Errno::EIO) => break,
                Ok(n) => write_all_fd(output, &buf[..n])?,
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if master_rev.contains(PollFlags::POLLOUT) && !pending.is_empty() {
            match nix::unistd::write(&master, &pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                Err(Errno::EIO) => pending.clear(),
                Err(e) => return Err(e.into()),
            }
        }
        if pending.is_empty() && send_eof_after_pending {
            send_eof_after_pending = false;
            pending = eof_sequence(master.as_fd(), last_input_byte);
        }
        if let Some(fd) = input {
            if input_rev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                match nix::unistd::read(fd, &mut buf) {
                    Ok(0) | Err(Errno::EIO) => {
                        input = None;
                        // A piped stdin ending means "end of input" for the program too.
                        if input_tty.is_none() {
                            send_eof_after_pending = true;
                            if pending.is_empty() {
                                send_eof_after_pending = false;
                                pending = eof_sequence(master.as_fd(), last_input_byte);
                            }
                        }
                    }
                    Ok(n) => {
                        last_input_byte = Some(buf[n - 1]);
                        pending.extend_from_slice(&buf[..n]);
                    }
                    Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if winch_rev.contains(PollFlags::POLLIN) {
            if let (Some((sfd, _)), Some(tty)) = (winch.as_ref(), input_tty) {
                while let Ok(Some(_)) = sfd.read_signal() {}
                let _ = copy_winsize(tty, master.as_fd());
            }
        }
    }
    Ok(())
}

/// The pty's VEOF character; twice when the last line was not finished, since the first one
/// only flushes a partial line in canonical mode.
fn eof_sequence(master: BorrowedFd<'_>, last: Option<u8>) -> Vec<u8> {
    let veof = termios::tcgetattr(master)
        .map(|t| t.control_chars[SpecialCharacterIndices::VEOF as usize])
        .unwrap_or(4);
    match last {
        Some(b'\n') | None => vec![veof],
        Some(_) => vec![veof, veof],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::termios::{LocalFlags, OutputFlags};
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::Command;

    fn spawn_on_pty(slave: OwnedFd, args: &[&str]) -> std::process::Child {
        let mut cmd = Command::new("busybox");
        cmd.args(args)
            .env_clear()
            .env("PS1", "$ ")
            .env("PATH", "/usr/bin:/bin");
        // SAFETY: the closure only makes syscalls on an fd that outlives the spawn.
        unsafe {
            cmd.pre_exec(move || make_controlling_terminal(&slave).map_err(io::Error::from));
        }
        cmd.spawn().expect("spawn busybox")
    }

    /// Relays `input` (then end-of-file) into the pty and returns all the
    /// program's output, as `run -i -t` with piped input does.
    fn relay_input(master: OwnedFd, input: &[u8]) -> String {
        let (in_r, in_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        nix::unistd::write(&in_w, input).unwrap();
        drop(in_w);
        let reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            io::Read::read_to_end(&mut std::fs::File::from(out_r), &mut s).unwrap();
            s
        });
        relay_fds(master, Some(in_r.as_fd()), out_w.as_fd()).unwrap();
        drop(out_w);
        String::from_utf8_lossy(&reader.join().unwrap()).to_string()
    }

    #[test]
    fn relay_runs_a_shell_on_a_pty_to_its_exit_code() {
        let (master, slave) = open_pty().unwrap();
        let mut child = spawn_on_pty(slave, &["sh"]);
        // The slave went into the closure; Command dropped our copy after spawn.
        let out = relay_input(master, b"echo hi; exit 3\n");
        assert!(out.contains("\nhi\r\n"), "output was {out:?}");
        let st = child.wait().unwrap();
        assert_eq!(st.code(), Some(3), "status {st:?}, output {out:?}");
    }

    #[test]
    fn piped_input_eof_ends_the_program_with_veof() {
        let (master, slave) = open_pty().unwrap();
        let mut child = spawn_on_pty(slave, &["cat"]);
        // No trailing newline: needs VEOF twice.
        let out = relay_input(master, b"partial");
        assert!(
            out.matches("partial").count() >= 2,
            "echo + cat output expected: {out:?}"
        );
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }

    #[test]
    fn relay_to_writer_collects_output_until_exit() {
        let (master, slave) = open_pty().unwrap();
        let mut child = spawn_on_pty(slave, &["sh", "-c", "echo one; echo two; kill -TERM $$"]);
        let mut log = Vec::new();
        relay_to_writer(master, &mut log).unwrap();
        let text = String::from_utf8_lossy(&log);
        assert_eq!(text, "one\r\ntwo\r\n");
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn raw_mode_is_restored_on_drop_and_on_panic() {
        let (_master, slave) = open_pty().unwrap();
        let before = termios::tcgetattr(&slave).unwrap();
        assert!(before
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO));
        {
            let _raw = RawMode::enter(slave.as_fd()).unwrap();
            let now = termios::tcgetattr(&slave).unwrap();
            assert!(!now
                .local_flags
                .intersects(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG));
            assert!(!now.output_flags.contains(OutputFlags::OPOST));
        }
        let after = termios::tcgetattr(&slave).unwrap();
        assert_eq!(after.local_flags, before.local_flags);
        assert_eq!(after.output_flags, before.output_flags);

        let fd = slave.as_fd();
        let r = std::panic::catch_unwind(|| {
            let _raw = RawMode::enter(fd).unwrap();
            panic!("boom");
        });
        assert!(r.is_err());
        assert_eq!(
            termios::tcgetattr(&slave).unwrap().local_flags,
            before.local_flags
        );
    }

    #[test]
    fn winsize_is_copied_between_terminals() {
        let (_m1, s1) = open_pty().unwrap();
        let (m2, _s2) = open_pty().unwrap();
        let ws = libc::winsize {
            ws_row: 42,
            ws_col: 117,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize.
        unsafe { libc::ioctl(s1.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        copy_winsize(s1.as_fd(), m2.as_fd()).unwrap();
        // SAFETY: TIOCGWINSZ writes one winsize.
        let mut got: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes one winsize into `got`.
        unsafe { libc::ioctl(m2.as_raw_fd(), libc::TIOCGWINSZ, &mut got) };
        assert_eq!((got.ws_row, got.ws_col), (42, 117));
    }

    fn winsize_of(fd: BorrowedFd<'_>) -> (u16, u16) {
        // SAFETY: TIOCGWINSZ writes one winsize.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes one winsize into `ws`.
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        (ws.ws_row, ws.ws_col)
    }

    fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize.
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !cond() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn relay_forwards_window_size_changes_from_a_terminal() {
        // Our "user terminal" is the slave of pty A; the program runs on pty B.
        let (term_master, term) = open_pty().unwrap();
        set_winsize(term.as_fd(), 10, 20);
        let (master, slave) = open_pty().unwrap();
        let probe = master.try_clone().unwrap();
        let mut child = spawn_on_pty(slave, &["sh", "-c", "read line"]);
        let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let relay_thread = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            relay_fds(master, Some(term.as_fd()), out_w.as_fd())
        });
        let tid = tid_rx.recv().unwrap();
        wait_for("the initial size", || winsize_of(probe.as_fd()) == (10, 20));

        // Resize the user's terminal and tell the relay thread, as the kernel would.
        set_winsize(term_master.as_fd(), 30, 99);
        // SAFETY: tgkill to a thread of our own process.
        unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGWINCH) };
        wait_for("the forwarded size", || {
            winsize_of(probe.as_fd()) == (30, 99)
        });

        drop(probe);
        nix::unistd::write(&term_master, b"bye\n").unwrap();
        relay_thread.join().unwrap().unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(0));
        drop(out_r);
    }

    #[test]
    fn pty_masters_travel_over_a_socket() {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (master, slave) = open_pty().unwrap();
        assert!(is_pty_master(master.as_fd()));
        assert!(!is_pty_master(slave.as_fd()));
        send_fd(a.as_fd(), Some(master.as_fd())).unwrap();
        send_fd(a.as_fd(), None).unwrap();
        let got = recv_fd(b.as_fd()).unwrap().expect("an fd");
        assert!(is_pty_master(got.as_fd()));
        nix::unistd::write(&got, b"x\n").unwrap();
        let mut buf = [0u8; 8];
        let n = nix::unistd::read(&slave, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"x\n");
        assert!(recv_fd(b.as_fd()).unwrap().is_none());
        drop(a);
        assert!(recv_fd(b.as_fd()).unwrap().is_none());
    }
}
