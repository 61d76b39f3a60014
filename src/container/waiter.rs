//! The waiting half of a detached container's monitor. Once the container
//! runs, the monitor execs `minirt __wait PID ROOT RUNROOT ID`: a process
//! that only sits in waitpid(2) touches a few pages, so a host with hundreds
//! of containers does not pay a full runtime's memory for each. When the
//! container exits it execs `minirt __finish` to record the exit and tear
//! down (exec keeps the pid, so the monitor stays the container's parent).

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;

pub const WAIT_ARG: &str = "__wait";

/// Entry point checked first thing in `main`: Some(exit code) when this
/// process is a waiter, None otherwise (normal command line).
pub fn run_if_waiter() -> Option<i32> {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).map(|a| a.as_bytes()) != Some(WAIT_ARG.as_bytes()) {
        return None;
    }
    let [exe, _, pid, root, run_root, id] = args.as_slice() else {
        return Some(125);
    };
    let Some(pid) = pid.to_str().and_then(|p| p.parse::<i32>().ok()) else {
        return Some(125);
    };
    let code = super::runtime::wait_exit(pid);
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
        match super::runtime::finish(&inst, &id.to_string_lossy(), code) {
            Ok(()) => 0,
            Err(_) => 1,
        },
    )
}

/// Replaces the monitor with a waiter for `pid`; returns only on failure.
pub fn exec_waiter(inst: &crate::Instance, id: &str, pid: i32) -> nix::Error {
    let argv: Vec<CString> = [
        b"minirt".as_slice(),
        WAIT_ARG.as_bytes(),
        pid.to_string().as_bytes(),
        inst.root.as_os_str().as_bytes(),
        inst.run_root.as_os_str().as_bytes(),
        id.as_bytes(),
    ]
    .iter()
    .filter_map(|a| CString::new(*a).ok())
    .collect();
    let Ok(path) = CString::new("/proc/self/exe") else {
        return nix::Error::EINVAL;
    };
    match nix::unistd::execv(&path, &argv) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}
