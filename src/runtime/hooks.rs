//! OCI hooks: each one a program run with the container's state JSON on its
//! stdin, its own args and env, and an optional timeout (seconds), after
//! which it is killed and counts as failed.

use oci_spec::runtime::Hook;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `hooks` in order; the first failure stops the list.
pub(crate) fn run_all(kind: &str, hooks: &[Hook], state_json: &[u8]) -> Result<(), String> {
    for h in hooks {
        run_one(h, state_json).map_err(|e| format!("{kind} hook {}: {e}", h.path().display()))?;
    }
    Ok(())
}

fn run_one(h: &Hook, state_json: &[u8]) -> Result<(), String> {
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(h.path());
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear()
        .envs(h.env().iter().flatten().filter_map(|e| e.split_once('=')))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine (EPIPE ignored).
        let _ = stdin.write_all(state_json);
    }
    let timeout = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64));
    if let Some(t) = timeout {
        if !exits_within(child.id() as i32, t) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s", t.as_secs()));
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("failed ({status})"))
    }
}

/// Waits on a pidfd: readable once the process has exited.
fn exits_within(pid: i32, t: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return true; // No pidfd (old kernel): wait without a timeout.
    }
    // SAFETY: the kernel just gave us this fd.
    let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let ms = t.as_millis().min(i32::MAX as u128) as i32;
    let mut pfd = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&fd),
        nix::poll::PollFlags::POLLIN,
    )];
    loop {
        match nix::poll::poll(
            &mut pfd,
            nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX),
        ) {
            Ok(n) => return n > 0,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn hook(args: &[&str], timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path("/bin/sh")
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .env(vec!["X=from-env".to_string()]);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    #[test]
    fn a_hook_gets_the_state_on_stdin_and_its_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!("cat > {}; echo $X >> {}", out.display(), out.display());
        run_all(
            "poststop",
            &[hook(&["sh", "-c", &script], None)],
            b"{\"id\":\"c\"}",
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"id\":\"c\"}from-env\n"
        );
    }

    #[test]
    fn failing_and_slow_hooks_are_errors() {
        let e = run_all("prestart", &[hook(&["sh", "-c", "exit 3"], None)], b"").unwrap_err();
        assert!(
            e.contains("prestart hook /bin/sh") && e.contains("3"),
            "{e}"
        );
        let e = run_all("prestart", &[hook(&["sh", "-c", "sleep 20"], Some(1))], b"").unwrap_err();
        assert!(e.contains("timed out"), "{e}");
    }
}
