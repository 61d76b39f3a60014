//! How an instance's long-running helpers start: the DNS responder
//! (`__dns`), the firewall guardian (`__fwguard`), the overlay agent
//! (`__overlay`) and the IPv6 loopback proxy (`__proxy6`). Each is `minirt --root R --run-root RR __NAME` in a new
//! session with every inherited descriptor closed at exec (a caller's pipes,
//! a container's sync socket or a terminal must not live on in it). The
//! helper sets itself up (its lock, its socket), then forks once more
//! ([`detach`]); the starter waits for that first process only, so it
//! returns once the helper is reachable and never leaves a zombie behind,
//! even when the starter is a long-lived monitor.

use crate::Instance;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// Starts `minirt __NAME` for the instance and waits until its first
/// process has detached (or failed: its exit status is the error).
pub(crate) fn start(inst: &Instance, name: &str, stderr: Stdio) -> std::io::Result<()> {
    start_args(inst, name, &[], stderr)
}

/// As [`start`], with arguments after the helper's name (the IPv6
/// loopback proxy's address and port, see `network::proxy6`).
pub(crate) fn start_args(
    inst: &Instance,
    name: &str,
    args: &[String],
    stderr: Stdio,
) -> std::io::Result<()> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root")
        .arg(&inst.root)
        .arg("--run-root")
        .arg(&inst.run_root)
        .arg(name)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // SAFETY: setsid and close_range are async-signal-safe syscalls; marking
    // every inherited fd close-on-exec keeps the caller's descriptors out of
    // the long-running helper.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    let status = cmd.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{name} exited with {status}"
        )))
    }
}

/// In the helper, once it is reachable: forks. Returns true in the child,
/// which goes on as the helper; the parent (the process the starter waits
/// for) should exit 0 at once. Must be called before the helper starts
/// threads.
pub fn detach() -> std::io::Result<bool> {
    Ok(detach_pid()?.is_none())
}

/// As [`detach`], for a helper that holds `lock` (an flock): the child
/// gets it back and holds it from then on; the parent leaves it alone, as
/// both share one open file description and a parent's unlock on drop
/// would unlock the child's too (then a second helper could start).
pub fn detach_keeping<L>(lock: L) -> std::io::Result<Option<L>> {
    match detach()? {
        true => Ok(Some(lock)),
        false => {
            std::mem::forget(lock);
            Ok(None)
        }
    }
}

/// As [`detach`], for a helper whose first process records the helper's
/// pid: None in the child, Some(the child's pid) in the parent.
pub fn detach_pid() -> std::io::Result<Option<i32>> {
    // SAFETY: called before the helper starts any thread (the caller's
    // contract), so the child's only thread is this one.
    match unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)? {
        nix::unistd::ForkResult::Parent { child } => Ok(Some(child.as_raw())),
        nix::unistd::ForkResult::Child => Ok(None),
    }
}
