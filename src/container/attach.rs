//! `minirt attach`: a client joins a running detached container's stdio.
//!
//! No server in the resident monitor (it stays as small as it is): the
//! output is read from the container's log as the waiter appends it (each
//! record as it comes, parts of lines included), and the input of a `-i`
//! container goes into the FIFO its stdin is (`runtime::stdin_fifo_path`;
//! the container holds it read-write, so a client leaving is no end of
//! file). With `-t`, the monitor (a full process there) copies that FIFO
//! into the pty. The client ends when the container exits (its exit code)
//! or at the detach keys (the container goes on).

use super::logs::{LogReader, Stream};
use super::{lifecycle, runtime, ContainerError};
use crate::store::containers;
use crate::{Instance, Result};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Docker's default detach keys: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

pub struct AttachOptions {
    /// Forward our stdin (when the container was started with -i).
    pub stdin: bool,
    /// Forward the signals we get to the container (not with a tty).
    pub sig_proxy: bool,
    pub detach_keys: Vec<u8>,
}

/// How an attach ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Detached,
}

/// Docker's `--detach-keys`: "ctrl-p,ctrl-q", "a,ctrl-[": the bytes.
pub fn parse_detach_keys(s: &str) -> std::result::Result<Vec<u8>, String> {
    let bad = || format!("invalid detach keys {s:?} (e.g. \"ctrl-p,ctrl-q\")");
    s.split(',')
        .map(|k| match k.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => match c.as_bytes()[0] {
                b @ b'a'..=b'z' => Ok(b - b'a' + 1),
                b @ (b'@' | b'[' | b'\\' | b']' | b'^' | b'_') => Ok(b & 0x1f),
                _ => Err(bad()),
            },
            None if k.len() == 1 => Ok(k.as_bytes()[0]),
            _ => Err(bad()),
        })
        .collect()
}

/// Finds the detach sequence in input as it comes: bytes that may begin it
/// are held back until it is clear they do not.
pub struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    pub fn new(keys: Vec<u8>) -> Self {
        DetachScanner { keys, matched: 0 }
    }

    /// The bytes of `input` to pass on, and whether the sequence was seen
    /// (nothing after it is passed on).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = vec![];
        for &b in input {
            if self.keys.is_empty() {
                out.push(b);
                continue;
            }
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            // Not the sequence: what was held goes on, then this byte
            // (which may begin the sequence again).
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

static PROXY_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn proxy(sig: libc::c_int) {
    let pid = PROXY_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Attaches to running container `key` until it exits or the client detaches.
pub fn attach(
    inst: &Instance,
    key: &str,
    o: AttachOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Ended> {
    lifecycle::reconcile(inst)?;
    let row = lifecycle::lookup(inst, key)?;
    if !lifecycle::is_running(&row) {
        return Err(ContainerError::Conflict(
            "You cannot attach to a stopped container, start it first".into(),
        )
        .into());
    }
    let cfg = lifecycle::config_of(&row);
    // The log from here on.
    let mut reader = LogReader::open_at_end(inst, &row.id)?;
    let detached = Arc::new(AtomicBool::new(false));
    let _raw =
        (cfg.tty && cfg.interactive && o.stdin).then(crate::runtime::pty::RawMode::enter_stdin);
    if o.stdin && cfg.interactive {
        // No FIFO: a container an older minirt started (its stdin was
        // /dev/null): output only.
        match std::fs::OpenOptions::new()
            .write(true)
            .open(runtime::stdin_fifo_path(inst, &row.id))
        {
            Ok(fifo) => {
                let flag = detached.clone();
                let keys = o.detach_keys.clone();
                std::thread::spawn(move || forward_input(fifo, keys, &flag));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ContainerError::Runtime(format!("attaching stdin: {e}")).into()),
        }
    }
    if o.sig_proxy && !cfg.tty {
        PROXY_TO.store(row.pid, Ordering::Relaxed);
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ] {
            // SAFETY: the handler only loads an atomic and calls kill(2).
            unsafe { libc::signal(sig, proxy as *const () as libc::sighandler_t) };
        }
    }
    let mut show = |reader: &mut LogReader| -> std::io::Result<bool> {
        let chunks = reader.poll_chunks()?;
        for (stream, bytes) in &chunks {
            match stream {
                Stream::Stdout => out.write_all(bytes)?,
                Stream::Stderr => err.write_all(bytes)?,
            }
        }
        out.flush()?;
        err.flush()?;
        Ok(!chunks.is_empty())
    };
    loop {
        if detached.load(Ordering::Relaxed) {
            show(&mut reader)?;
            return Ok(Ended::Detached);
        }
        if show(&mut reader)? {
            continue;
        }
        let r = lifecycle::lookup(inst, &row.id)?;
        if !super::logs::still_writing(&r) {
            show(&mut reader)?;
            // A monitor that died left the row: reconciliation records it.
            if r.status != containers::EXITED {
                lifecycle::reconcile(inst)?;
            }
            let r = lifecycle::lookup(inst, &row.id)?;
            // A restart policy may bring it back: Docker's client ends here too.
            return Ok(Ended::Exited(r.exit_code));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Our stdin into the container's stdin FIFO until end of file or the
/// detach keys (then `detached` is set).
fn forward_input(mut fifo: std::fs::File, keys: Vec<u8>, detached: &AtomicBool) {
    let mut scan = DetachScanner::new(keys);
    let mut buf = [0u8; 4096];
    let mut stdin = std::io::stdin().lock();
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let (pass, seen) = scan.feed(&buf[..n]);
        if fifo.write_all(&pass).is_err() {
            return;
        }
        if seen {
            detached.store(true, Ordering::Relaxed);
            return;
        }
    }
}

/// In the monitor of a detached `-t -i` container: a thread copying the
/// stdin FIFO into the pty master.
pub fn relay_stdin_fifo(inst: &Instance, id: &str, master: OwnedFd) {
    let Ok(mut fifo) = runtime::open_stdin_fifo(&runtime::stdin_fifo_path(inst, id)) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let n = match fifo.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                match nix::unistd::write(&master, rest) {
                    Ok(w) => rest = &rest[w..],
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => return,
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_in_dockers_form() {
        assert_eq!(parse_detach_keys(DEFAULT_DETACH_KEYS), Ok(vec![0x10, 0x11]));
        assert_eq!(parse_detach_keys("a,ctrl-["), Ok(vec![b'a', 0x1b]));
        assert_eq!(parse_detach_keys("ctrl-@"), Ok(vec![0]));
        for bad in ["ctrl-", "ctrl-1", "ab", "", "ctrl-p,"] {
            assert!(parse_detach_keys(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_scanner_holds_back_only_what_may_be_the_sequence() {
        let mut s = DetachScanner::new(vec![0x10, 0x11]);
        assert_eq!(s.feed(b"ab\x10"), (b"ab".to_vec(), false));
        // The held ctrl-p was not the start: it goes on.
        assert_eq!(s.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(s.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(s.feed(b"\x11rest"), (vec![], true));
        let mut s = DetachScanner::new(vec![]);
        assert_eq!(s.feed(b"\x10\x11"), (b"\x10\x11".to_vec(), false));
    }
}
