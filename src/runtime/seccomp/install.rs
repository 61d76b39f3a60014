//! Loading compiled filters into the calling thread (the one effect of this module).

use super::compile::Program;
use super::{Result, SeccompError};

/// Loads `filters` into the calling thread, in order. Needs no_new_privs or CAP_SYS_ADMIN;
/// does not set no_new_privs itself (that is the spec's choice, made before).
pub fn install(filters: &[Program]) -> Result<()> {
    for prog in filters {
        let insns: Vec<libc::sock_filter> = prog
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let fprog = libc::sock_fprog {
            len: insns.len() as libc::c_ushort,
            filter: insns.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: the kernel copies the program from `fprog`, which outlives the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &fprog as *const libc::sock_fprog,
            )
        };
        if r != 0 {
            return Err(SeccompError::Install(
                std::io::Error::last_os_error().to_string(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::compile::compile;
    use super::super::default_caps;
    use super::super::profile::default_profile;
    use super::*;

    /// Runs `f` in a forked child under the default filter; its exit code.
    fn in_filtered_child(caps: &[String], f: fn() -> i32) -> i32 {
        let progs = compile(&default_profile(caps)).unwrap();
        // SAFETY: the child makes syscalls only and leaves with _exit.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: plain prctl; then raw syscalls and _exit.
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                let code = if install(&progs).is_err() { 100 } else { f() };
                // SAFETY: ends the test's child without the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            pid => {
                let mut st = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut st, 0) };
                assert!(libc::WIFEXITED(st), "child died: {st:#x}");
                libc::WEXITSTATUS(st)
            }
        }
    }

    fn errno_of(r: libc::c_long) -> i32 {
        if r == -1 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        } else {
            0
        }
    }

    #[test]
    fn installed_filter_blocks_with_eperm_and_lets_the_rest_through() {
        let code = in_filtered_child(&default_caps(), || {
            // SAFETY: raw syscalls with harmless arguments; each is expected to fail.
            unsafe {
                let checks = [
                    (
                        errno_of(libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0)),
                        libc::EPERM,
                    ),
                    (
                        errno_of(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS)),
                        libc::EPERM,
                    ),
                    (
                        errno_of(libc::syscall(libc::SYS_clone3, 0, 0)),
                        libc::ENOSYS,
                    ),
                    (
                        errno_of(libc::syscall(libc::SYS_personality, 0x0040_0000)),
                        libc::EPERM,
                    ),
                    (
                        errno_of(libc::syscall(libc::SYS_personality, 0xffff_ffffu64)),
                        0,
                    ),
                    (errno_of(libc::syscall(libc::SYS_getpid)), 0),
                    (
                        errno_of(libc::syscall(libc::SYS_socket, 40, libc::SOCK_STREAM, 0)),
                        libc::EPERM,
                    ),
                ];
                for (i, (got, want)) in checks.iter().enumerate() {
                    if got != want {
                        return 10 + i as i32;
                    }
                }
                0
            }
        });
        assert_eq!(code, 0, "check {} failed", code - 10);
    }

    #[test]
    fn sys_admin_lifts_the_namespace_block() {
        let mut caps = default_caps();
        caps.push("CAP_SYS_ADMIN".into());
        let code = in_filtered_child(&caps, || {
            // SAFETY: unshare of a new UTS namespace only affects this forked child.
            unsafe { errno_of(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUTS)) }
        });
        assert_eq!(code, 0);
    }
}
