//! `start`: the init's `exec.fifo` gate opened, then the poststart hooks.

use super::{err, Result, Runtime};
use crate::runtime::hooks;
use crate::runtime::state::{self, Status, EXEC_FIFO};
use crate::util;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

impl Runtime {
    pub fn start(&self, id: &str) -> Result<()> {
        let rec = self.record(id)?;
        match self.status_of(&rec) {
            Status::Created => {}
            st => {
                return Err(err(format!(
                    "cannot start container {id}: it is {st}, not created"
                )))
            }
        }
        let fifo = self.dir(id).join(EXEC_FIFO);
        let f: OwnedFd = nix::fcntl::open(
            &fifo,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(format!("opening exec.fifo: {e}")))?;
        // The init opens the FIFO for writing once a reader exists, and
        // writes one byte; no byte while it is alive means it is slow, not
        // gone: keep waiting, but notice if it dies.
        let mut file = std::fs::File::from(f);
        let mut byte = [0u8; 1];
        loop {
            let mut pfd = [nix::poll::PollFd::new(
                file.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(100u16)) {
                Ok(n) if n > 0 => {
                    if let Ok(1) = file.read(&mut byte) {
                        break;
                    }
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(err(format!("waiting on exec.fifo: {e}"))),
            }
            if !util::process_alive(rec.pid, rec.pid_start) {
                return Err(err(format!("container {id}'s init exited before start")));
            }
        }
        let _ = std::fs::remove_file(&fifo);
        if let Some(h) = rec.hooks.as_ref().and_then(|h| h.poststart().clone()) {
            let st =
                serde_json::to_vec(&state::oci_state(&rec, Status::Running)).unwrap_or_default();
            // The spec: a failed poststart hook is a warning, the container runs on.
            if let Err(e) = hooks::run_all("poststart", &h, &st) {
                tracing::warn!("{e}");
            }
        }
        Ok(())
    }
}
