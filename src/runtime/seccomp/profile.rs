//! Docker's default seccomp profile as OCI data: the allow-list, the syscalls each capability
//! unlocks, and the argument rules for clone, personality and socket. Pure; `compile` turns it
//! into a filter.

use super::numbers::native_oci_arch;
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// Namespace flags of clone(2) (CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID |
/// NEWNET): a clone with any of them is refused unless the container has CAP_SYS_ADMIN.
pub(crate) const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// personality(2) values Docker lets through: PER_LINUX, UNAME26, PER_LINUX32,
/// PER_LINUX32|UNAME26, and the query 0xffffffff. Anything else (e.g. READ_IMPLIES_EXEC,
/// ADDR_NO_RANDOMIZE) would weaken the container's address-space hardening.
pub(crate) const PERSONALITY_ALLOWED: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// AF_VSOCK: host/guest sockets stay out of reach, as in Docker.
pub(crate) const AF_VSOCK: u64 = 40;

/// Syscalls every container may make (Docker's default allow-list; names of other
/// architectures are skipped when compiling, as libseccomp does). Conspicuously absent:
/// keyctl, add_key, request_key, kexec_*, *_module, bpf, perf_event_open, mount, umount2,
/// unshare, setns, clock_settime, settimeofday, swapon/off, reboot, io_uring_*,
/// open_by_handle_at, userfaultfd.
pub(crate) const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "clock_adjtime",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_requeue",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "socketpair",
    "splice",
    "stat",
    "statfs",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "write",
    "writev",
    // x86 only.
    "arch_prctl",
    "modify_ldt",
    // Allowed by Docker on kernels >= 4.8, where seccomp runs after ptrace and cannot be
    // bypassed by it; CAP_SYS_PTRACE (not in the default set) still guards other processes.
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
];

/// Syscalls a capability unlocks, as in Docker: `--cap-add SYS_ADMIN` makes mount possible
/// again, `--cap-add SYS_TIME` clock_settime.
pub(crate) const BY_CAPABILITY: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    ("CAP_SYS_TIME", &["settimeofday", "clock_settime"]),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
];

fn syscall(names: &[&str], action: LinuxSeccompAction, args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect());
    s.set_action(action);
    if !args.is_empty() {
        s.set_args(Some(args));
    }
    s
}

fn arg(
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
) -> LinuxSeccompArg {
    // Plain data: the builder cannot fail with every field given.
    let b = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    let b = match value_two {
        Some(v) => b.value_two(v),
        None => b,
    };
    b.build().unwrap_or_default()
}

/// Docker's default profile for a process holding `caps` (names like "CAP_SYS_ADMIN"):
/// everything not listed fails with EPERM.
pub fn default_profile(caps: &[String]) -> LinuxSeccomp {
    let has = |c: &str| caps.iter().any(|x| x.eq_ignore_ascii_case(c));
    let allow = LinuxSeccompAction::ScmpActAllow;
    let mut rules = vec![syscall(ALLOWED, allow, vec![])];
    for v in PERSONALITY_ALLOWED {
        rules.push(syscall(
            &["personality"],
            allow,
            vec![arg(0, v, None, LinuxSeccompOperator::ScmpCmpEq)],
        ));
    }
    rules.push(syscall(
        &["socket"],
        allow,
        vec![arg(0, AF_VSOCK, None, LinuxSeccompOperator::ScmpCmpNe)],
    ));
    if !has("CAP_SYS_ADMIN") {
        // fork and threads, but no new namespaces.
        rules.push(syscall(
            &["clone"],
            allow,
            vec![arg(
                0,
                CLONE_NAMESPACE_FLAGS,
                Some(0),
                LinuxSeccompOperator::ScmpCmpMaskedEq,
            )],
        ));
        // clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc fall
        // back to clone, where the flags are checked (EPERM would fail thread creation).
        let mut c3 = syscall(&["clone3"], LinuxSeccompAction::ScmpActErrno, vec![]);
        c3.set_errno_ret(Some(libc::ENOSYS as u32));
        rules.push(c3);
    }
    for (cap, names) in BY_CAPABILITY {
        if has(cap) {
            rules.push(syscall(names, allow, vec![]));
        }
    }
    let mut p = LinuxSeccomp::default();
    p.set_default_action(LinuxSeccompAction::ScmpActErrno);
    p.set_default_errno_ret(Some(libc::EPERM as u32));
    p.set_architectures(Some(vec![native_oci_arch()]));
    p.set_syscalls(Some(rules));
    p
}

#[cfg(test)]
mod tests {
    use super::super::default_caps;
    use super::super::numbers::{number_on, syscall_number};
    use super::*;
    use oci_spec::runtime::Arch;

    fn names_with(p: &LinuxSeccomp, act: LinuxSeccompAction) -> Vec<String> {
        p.syscalls()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|s| s.action() == act)
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn default_profile_denies_the_dangerous_calls() {
        let p = default_profile(&default_caps());
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(libc::EPERM as u32));
        let allowed = names_with(&p, LinuxSeccompAction::ScmpActAllow);
        for bad in [
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "mount",
            "umount2",
            "unshare",
            "setns",
            "clock_settime",
            "settimeofday",
            "swapon",
            "swapoff",
            "reboot",
            "io_uring_setup",
            "open_by_handle_at",
            "acct",
            "iopl",
        ] {
            assert!(!allowed.iter().any(|n| n == bad), "{bad} is allowed");
            assert!(syscall_number(bad).is_some(), "{bad} has no number");
        }
        for good in [
            "read",
            "execve",
            "openat",
            "chroot",
            "clone",
            "socket",
            "personality",
        ] {
            assert!(allowed.iter().any(|n| n == good), "{good} is not allowed");
        }
        // clone only without namespace flags; clone3 falls back with ENOSYS.
        let clone = p
            .syscalls()
            .as_deref()
            .unwrap()
            .iter()
            .find(|s| s.names() == &["clone".to_string()])
            .unwrap();
        let a = clone.args().as_ref().unwrap()[0];
        assert_eq!(a.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!((a.value(), a.value_two()), (CLONE_NAMESPACE_FLAGS, Some(0)));
        assert_eq!(
            names_with(&p, LinuxSeccompAction::ScmpActErrno),
            vec!["clone3".to_string()]
        );
    }

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let mut caps = default_caps();
        caps.push("CAP_SYS_ADMIN".into());
        caps.push("CAP_SYS_TIME".into());
        let p = default_profile(&caps);
        let allowed = names_with(&p, LinuxSeccompAction::ScmpActAllow);
        for n in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "clone3",
            "clock_settime",
        ] {
            assert!(allowed.iter().any(|a| a == n), "{n}");
        }
        assert!(!allowed.iter().any(|a| a == "reboot"));
        // With SYS_ADMIN clone is unconditional and clone3 is no longer refused.
        assert!(names_with(&p, LinuxSeccompAction::ScmpActErrno).is_empty());
        // Without CHROOT (dropped), chroot goes.
        let p = default_profile(&["CAP_KILL".to_string()]);
        assert!(!names_with(&p, LinuxSeccompAction::ScmpActAllow)
            .iter()
            .any(|a| a == "chroot"));
    }

    #[test]
    fn every_profile_name_resolves_on_x86_64() {
        // Every capability granted: the profile names every syscall it can mention.
        let caps: Vec<String> = BY_CAPABILITY.iter().map(|(c, _)| c.to_string()).collect();
        let p = default_profile(&caps);
        let names: Vec<String> = p
            .syscalls()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .flat_map(|s| s.names().clone())
            .chain(ALLOWED.iter().map(|n| n.to_string()))
            .collect();
        assert!(names.len() > 300, "{}", names.len());
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| number_on(Arch::ScmpArchX86_64, n).is_none())
            .collect();
        assert!(missing.is_empty(), "{missing:?}");
    }
}
