//! Creating the container's first process: fork-style `clone3(2)` into new
//! namespaces and, where there is a cgroup2 directory, born inside it
//! (`CLONE_INTO_CGROUP`), so nothing has to be moved there afterwards.
//! Kernels without clone3 (before 5.3) get the classic `clone(2)`.

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `CLONE_INTO_CGROUP` (Linux 5.7), a clone3-only flag above 32 bits.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` up to its `cgroup` member (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

pub enum Forked {
    /// In the new process. `in_cgroup`: born in the cgroup2 directory
    /// asked for (same value on both sides).
    Child { in_cgroup: bool },
    /// In the caller.
    Parent { pid: Pid, in_cgroup: bool },
}

/// Forks into new namespaces `flags`, inside cgroup2 directory `cgroup`
/// when given and the kernel can (else the child is born where we are).
///
/// # Safety
/// As with fork(2): the child is a copy with only the calling thread. It
/// must not wait on locks another thread of ours may have held (the caller
/// forks before starting threads), and it must end with `_exit`, never
/// return into the caller's frames.
pub(crate) unsafe fn fork_into(
    flags: CloneFlags,
    cgroup: Option<BorrowedFd>,
) -> nix::Result<Forked> {
    let base = flags.bits() as u64;
    if let Some(fd) = cgroup {
        match clone3(base | CLONE_INTO_CGROUP, fd.as_raw_fd() as u64) {
            Ok(0) => return Ok(Forked::Child { in_cgroup: true }),
            Ok(pid) => {
                return Ok(Forked::Parent {
                    pid: Pid::from_raw(pid as i32),
                    in_cgroup: true,
                })
            }
            // No clone3, or the directory cannot take the child this way
            // (EBUSY, EOPNOTSUPP on a threaded or inner cgroup): plain fork,
            // the child moves itself.
            Err(_) => {}
        }
    }
    let r = match clone3(base, 0) {
        Err(Errno::ENOSYS) => {
            // SAFETY: fork-style clone (no stack given): the child returns
            // here on a copy of our stack, like fork.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    base as libc::c_ulong | libc::SIGCHLD as libc::c_ulong,
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                )
            };
            Errno::result(r)?
        }
        other => other?,
    };
    Ok(if r == 0 {
        Forked::Child { in_cgroup: false }
    } else {
        Forked::Parent {
            pid: Pid::from_raw(r as i32),
            in_cgroup: false,
        }
    })
}

fn clone3(flags: u64, cgroup: u64) -> nix::Result<i64> {
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        cgroup,
        ..Default::default()
    };
    // SAFETY: `args` is a valid clone_args of the size passed; without a
    // stack the child continues on a copy of ours, as after fork.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    Errno::result(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_args_has_the_kernels_ver2_size() {
        assert_eq!(std::mem::size_of::<CloneArgs>(), 88);
    }

    /// Root-only: a child is born in a fresh cgroup2 directory (when the
    /// host has a cgroup2 mount we may write to) and in a new UTS namespace.
    #[test]
    fn child_is_born_in_the_cgroup_and_namespaces() {
        use std::os::fd::AsFd;
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let layout = match crate::cgroups::Layout::detect() {
            Ok(l) => l,
            Err(_) => return,
        };
        let dir = layout
            .unified
            .as_ref()
            .map(|u| u.join(format!("minirt-clone-test-{}", std::process::id())));
        let dir_fd = dir.as_ref().and_then(|d| {
            std::fs::create_dir(d).ok()?;
            std::fs::File::open(d).ok()
        });
        let (r, w) = nix::unistd::pipe().unwrap();
        // SAFETY: the child only calls async-signal-safe functions and _exit.
        let forked =
            unsafe { fork_into(CloneFlags::CLONE_NEWUTS, dir_fd.as_ref().map(|f| f.as_fd())) };
        let res = match forked {
            Ok(Forked::Child { .. }) => {
                // SAFETY: sethostname in our own new UTS namespace, wait for
                // the parent to look at us (end of file), then _exit.
                unsafe {
                    let ok = libc::sethostname(b"inner".as_ptr().cast(), 5) == 0;
                    libc::close(w.as_raw_fd());
                    let mut b = 0u8;
                    libc::read(r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
                    libc::_exit(if ok { 0 } else { 1 })
                }
            }
            Ok(Forked::Parent { pid, in_cgroup }) => {
                drop(r);
                let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
                drop(w);
                let status = nix::sys::wait::waitpid(pid, None);
                Ok((pid, cg, status, in_cgroup))
            }
            Err(e) => Err(e),
        };
        if let Some(d) = &dir {
            let _ = std::fs::remove_dir(d);
        }
        let (pid, cg, status, in_cgroup) = res.expect("clone");
        assert_eq!(status, Ok(nix::sys::wait::WaitStatus::Exited(pid, 0)));
        assert_ne!(
            nix::unistd::gethostname().unwrap().to_string_lossy(),
            "inner",
            "the child's hostname leaked into ours"
        );
        if dir_fd.is_some() {
            assert!(in_cgroup, "clone3 could not use the cgroup2 directory");
            let name = dir.unwrap();
            let leaf = name.file_name().unwrap().to_string_lossy().to_string();
            assert!(
                cg.lines()
                    .any(|l| l.starts_with("0::") && l.ends_with(&leaf)),
                "child not born in {leaf}: {cg}"
            );
        }
    }
}
