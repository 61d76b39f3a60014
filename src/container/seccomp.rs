//! The default seccomp profile (Docker's, as OCI data that depends on the capability set) and
//! its compilation to one BPF filter (see `bpf`). Pure up to `install`, which loads it.

use super::bpf;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile: {0}")]
    Profile(String),
    #[error("installing the seccomp filter: {0}")]
    Install(String),
}

type Result<T> = std::result::Result<T, SeccompError>;

/// Namespace flags of clone(2) (CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID |
/// NEWNET): a clone with any of them is refused unless the container has CAP_SYS_ADMIN.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// personality(2) values Docker lets through: PER_LINUX, UNAME26, PER_LINUX32,
/// PER_LINUX32|UNAME26, and the query 0xffffffff. Anything else (e.g. READ_IMPLIES_EXEC,
/// ADDR_NO_RANDOMIZE) would weaken the container's address-space hardening.
pub const PERSONALITY_ALLOWED: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// AF_VSOCK: host/guest sockets stay out of reach, as in Docker.
const AF_VSOCK: u64 = 40;

/// Syscalls every container may make (Docker's default allow-list; names of other
/// architectures are skipped when compiling, as libseccomp does). Conspicuously absent:
/// keyctl, add_key, request_key, kexec_*, *_module, bpf, perf_event_open, mount, umount2,
/// unshare, setns, clock_settime, settimeofday, swapon/off, reboot, io_uring_*,
/// open_by_handle_at, userfaultfd.
pub const ALLOWED: &[&str] = &[
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
pub const BY_CAPABILITY: &[(&str, &[&str])] = &[
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

/// The OCI architecture of this build.
pub fn native_oci_arch() -> Arch {
    if cfg!(target_arch = "aarch64") {
        Arch::ScmpArchAarch64
    } else {
        Arch::ScmpArchX86_64
    }
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

/// Syscalls numbered since 5.1 (424 on) share one number on every architecture.
const UNIFIED: &[(&str, i64)] = &[
    ("pidfd_send_signal", 424),
    ("io_uring_setup", 425),
    ("io_uring_enter", 426),
    ("io_uring_register", 427),
    ("open_tree", 428),
    ("move_mount", 429),
    ("fsopen", 430),
    ("fsconfig", 431),
    ("fsmount", 432),
    ("fspick", 433),
    ("pidfd_open", 434),
    ("clone3", 435),
    ("close_range", 436),
    ("openat2", 437),
    ("pidfd_getfd", 438),
    ("faccessat2", 439),
    ("process_madvise", 440),
    ("epoll_pwait2", 441),
    ("mount_setattr", 442),
    ("quotactl_fd", 443),
    ("landlock_create_ruleset", 444),
    ("landlock_add_rule", 445),
    ("landlock_restrict_self", 446),
    ("memfd_secret", 447),
    ("process_mrelease", 448),
    ("futex_waitv", 449),
    ("set_mempolicy_home_node", 450),
    ("cachestat", 451),
    ("fchmodat2", 452),
    ("map_shadow_stack", 453),
    ("futex_wake", 454),
    ("futex_wait", 455),
    ("futex_requeue", 456),
    ("statmount", 457),
    ("listmount", 458),
    ("mseal", 462),
    ("setxattrat", 463),
    ("getxattrat", 464),
    ("listxattrat", 465),
    ("removexattrat", 466),
];

/// Numbers shared by x86_64 and aarch64 under the same name (libc's constants).
const COMMON: &[(&str, i64)] = &[
    ("accept", libc::SYS_accept),
    ("accept4", libc::SYS_accept4),
    ("adjtimex", libc::SYS_adjtimex),
    ("bind", libc::SYS_bind),
    ("brk", libc::SYS_brk),
    ("capget", libc::SYS_capget),
    ("capset", libc::SYS_capset),
    ("chdir", libc::SYS_chdir),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("clock_getres", libc::SYS_clock_getres),
    ("clock_gettime", libc::SYS_clock_gettime),
    ("clock_nanosleep", libc::SYS_clock_nanosleep),
    ("close", libc::SYS_close),
    ("connect", libc::SYS_connect),
    ("copy_file_range", libc::SYS_copy_file_range),
    ("dup", libc::SYS_dup),
    ("dup3", libc::SYS_dup3),
    ("epoll_create1", libc::SYS_epoll_create1),
    ("epoll_ctl", libc::SYS_epoll_ctl),
    ("epoll_pwait", libc::SYS_epoll_pwait),
    ("eventfd2", libc::SYS_eventfd2),
    ("execve", libc::SYS_execve),
    ("execveat", libc::SYS_execveat),
    ("exit", libc::SYS_exit),
    ("exit_group", libc::SYS_exit_group),
    ("faccessat", libc::SYS_faccessat),
    ("fadvise64", libc::SYS_fadvise64),
    ("fallocate", libc::SYS_fallocate),
    ("fanotify_mark", libc::SYS_fanotify_mark),
    ("fchdir", libc::SYS_fchdir),
    ("fchmod", libc::SYS_fchmod),
    ("fchmodat", libc::SYS_fchmodat),
    ("fchown", libc::SYS_fchown),
    ("fchownat", libc::SYS_fchownat),
    ("fcntl", libc::SYS_fcntl),
    ("fdatasync", libc::SYS_fdatasync),
    ("fgetxattr", libc::SYS_fgetxattr),
    ("flistxattr", libc::SYS_flistxattr),
    ("flock", libc::SYS_flock),
    ("fremovexattr", libc::SYS_fremovexattr),
    ("fsetxattr", libc::SYS_fsetxattr),
    ("fstat", libc::SYS_fstat),
    ("fstatfs", libc::SYS_fstatfs),
    ("fsync", libc::SYS_fsync),
    ("ftruncate", libc::SYS_ftruncate),
    ("futex", libc::SYS_futex),
    ("getcpu", libc::SYS_getcpu),
    ("getcwd", libc::SYS_getcwd),
    ("getdents64", libc::SYS_getdents64),
    ("getegid", libc::SYS_getegid),
    ("geteuid", libc::SYS_geteuid),
    ("getgid", libc::SYS_getgid),
    ("getgroups", libc::SYS_getgroups),
    ("getitimer", libc::SYS_getitimer),
    ("getpeername", libc::SYS_getpeername),
    ("getpgid", libc::SYS_getpgid),
    ("getpid", libc::SYS_getpid),
    ("getppid", libc::SYS_getppid),
    ("getpriority", libc::SYS_getpriority),
    ("getrandom", libc::SYS_getrandom),
    ("getresgid", libc::SYS_getresgid),
    ("getresuid", libc::SYS_getresuid),
    ("get_robust_list", libc::SYS_get_robust_list),
    ("getrusage", libc::SYS_getrusage),
    ("getsid", libc::SYS_getsid),
    ("getsockname", libc::SYS_getsockname),
    ("getsockopt", libc::SYS_getsockopt),
    ("gettid", libc::SYS_gettid),
    ("gettimeofday", libc::SYS_gettimeofday),
    ("getuid", libc::SYS_getuid),
    ("getxattr", libc::SYS_getxattr),
    ("inotify_add_watch", libc::SYS_inotify_add_watch),
    ("inotify_init1", libc::SYS_inotify_init1),
    ("inotify_rm_watch", libc::SYS_inotify_rm_watch),
    ("io_cancel", libc::SYS_io_cancel),
    ("ioctl", libc::SYS_ioctl),
    ("io_destroy", libc::SYS_io_destroy),
    ("io_getevents", libc::SYS_io_getevents),
    ("ioprio_get", libc::SYS_ioprio_get),
    ("ioprio_set", libc::SYS_ioprio_set),
    ("io_setup", libc::SYS_io_setup),
    ("io_submit", libc::SYS_io_submit),
    ("kill", libc::SYS_kill),
    ("lgetxattr", libc::SYS_lgetxattr),
    ("linkat", libc::SYS_linkat),
    ("listen", libc::SYS_listen),
    ("listxattr", libc::SYS_listxattr),
    ("llistxattr", libc::SYS_llistxattr),
    ("lremovexattr", libc::SYS_lremovexattr),
    ("lseek", libc::SYS_lseek),
    ("lsetxattr", libc::SYS_lsetxattr),
    ("madvise", libc::SYS_madvise),
    ("membarrier", libc::SYS_membarrier),
    ("memfd_create", libc::SYS_memfd_create),
    ("mincore", libc::SYS_mincore),
    ("mkdirat", libc::SYS_mkdirat),
    ("mknodat", libc::SYS_mknodat),
    ("mlock", libc::SYS_mlock),
    ("mlock2", libc::SYS_mlock2),
    ("mlockall", libc::SYS_mlockall),
    ("mmap", libc::SYS_mmap),
    ("mprotect", libc::SYS_mprotect),
    ("mq_getsetattr", libc::SYS_mq_getsetattr),
    ("mq_notify", libc::SYS_mq_notify),
    ("mq_open", libc::SYS_mq_open),
    ("mq_timedreceive", libc::SYS_mq_timedreceive),
    ("mq_timedsend", libc::SYS_mq_timedsend),
    ("mq_unlink", libc::SYS_mq_unlink),
    ("mremap", libc::SYS_mremap),
    ("msgctl", libc::SYS_msgctl),
    ("msgget", libc::SYS_msgget),
    ("msgrcv", libc::SYS_msgrcv),
    ("msgsnd", libc::SYS_msgsnd),
    ("msync", libc::SYS_msync),
    ("munlock", libc::SYS_munlock),
    ("munlockall", libc::SYS_munlockall),
    ("munmap", libc::SYS_munmap),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("nanosleep", libc::SYS_nanosleep),
    ("newfstatat", libc::SYS_newfstatat),
    ("openat", libc::SYS_openat),
    ("pipe2", libc::SYS_pipe2),
    ("pkey_alloc", libc::SYS_pkey_alloc),
    ("pkey_free", libc::SYS_pkey_free),
    ("pkey_mprotect", libc::SYS_pkey_mprotect),
    ("ppoll", libc::SYS_ppoll),
    ("prctl", libc::SYS_prctl),
    ("pread64", libc::SYS_pread64),
    ("preadv", libc::SYS_preadv),
    ("preadv2", libc::SYS_preadv2),
    ("prlimit64", libc::SYS_prlimit64),
    ("pselect6", libc::SYS_pselect6),
    ("pwrite64", libc::SYS_pwrite64),
    ("pwritev", libc::SYS_pwritev),
    ("pwritev2", libc::SYS_pwritev2),
    ("read", libc::SYS_read),
    ("readahead", libc::SYS_readahead),
    ("readlinkat", libc::SYS_readlinkat),
    ("readv", libc::SYS_readv),
    ("recvfrom", libc::SYS_recvfrom),
    ("recvmmsg", libc::SYS_recvmmsg),
    ("recvmsg", libc::SYS_recvmsg),
    ("remap_file_pages", libc::SYS_remap_file_pages),
    ("removexattr", libc::SYS_removexattr),
    ("renameat2", libc::SYS_renameat2),
    ("restart_syscall", libc::SYS_restart_syscall),
    ("rseq", libc::SYS_rseq),
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("rt_sigpending", libc::SYS_rt_sigpending),
    ("rt_sigprocmask", libc::SYS_rt_sigprocmask),
    ("rt_sigqueueinfo", libc::SYS_rt_sigqueueinfo),
    ("rt_sigreturn", libc::SYS_rt_sigreturn),
    ("rt_sigsuspend", libc::SYS_rt_sigsuspend),
    ("rt_sigtimedwait", libc::SYS_rt_sigtimedwait),
    ("rt_tgsigqueueinfo", libc::SYS_rt_tgsigqueueinfo),
    ("sched_getaffinity", libc::SYS_sched_getaffinity),
    ("sched_getattr", libc::SYS_sched_getattr),
    ("sched_getparam", libc::SYS_sched_getparam),
    ("sched_get_priority_max", libc::SYS_sched_get_priority_max),
    ("sched_get_priority_min", libc::SYS_sched_get_priority_min),
    ("sched_getscheduler", libc::SYS_sched_getscheduler),
    ("sched_rr_get_interval", libc::SYS_sched_rr_get_interval),
    ("sched_setaffinity", libc::SYS_sched_setaffinity),
    ("sched_setattr", libc::SYS_sched_setattr),
    ("sched_setparam", libc::SYS_sched_setparam),
    ("sched_setscheduler", libc::SYS_sched_setscheduler),
    ("sched_yield", libc::SYS_sched_yield),
    ("seccomp", libc::SYS_seccomp),
    ("semctl", libc::SYS_semctl),
    ("semget", libc::SYS_semget),
    ("semop", libc::SYS_semop),
    ("semtimedop", libc::SYS_semtimedop),
    ("sendfile", libc::SYS_sendfile),
    ("sendmmsg", libc::SYS_sendmmsg),
    ("sendmsg", libc::SYS_sendmsg),
    ("sendto", libc::SYS_sendto),
    ("setfsgid", libc::SYS_setfsgid),
    ("setfsuid", libc::SYS_setfsuid),
    ("setgid", libc::SYS_setgid),
    ("setgroups", libc::SYS_setgroups),
    ("setitimer", libc::SYS_setitimer),
    ("setpgid", libc::SYS_setpgid),
    ("setpriority", libc::SYS_setpriority),
    ("setregid", libc::SYS_setregid),
    ("setresgid", libc::SYS_setresgid),
    ("setresuid", libc::SYS_setresuid),
    ("setreuid", libc::SYS_setreuid),
    ("set_robust_list", libc::SYS_set_robust_list),
    ("setsid", libc::SYS_setsid),
    ("setsockopt", libc::SYS_setsockopt),
    ("set_tid_address", libc::SYS_set_tid_address),
    ("setuid", libc::SYS_setuid),
    ("setxattr", libc::SYS_setxattr),
    ("shmat", libc::SYS_shmat),
    ("shmctl", libc::SYS_shmctl),
    ("shmdt", libc::SYS_shmdt),
    ("shmget", libc::SYS_shmget),
    ("shutdown", libc::SYS_shutdown),
    ("sigaltstack", libc::SYS_sigaltstack),
    ("signalfd4", libc::SYS_signalfd4),
    ("socketpair", libc::SYS_socketpair),
    ("splice", libc::SYS_splice),
    ("statfs", libc::SYS_statfs),
    ("statx", libc::SYS_statx),
    ("symlinkat", libc::SYS_symlinkat),
    ("sync", libc::SYS_sync),
    ("syncfs", libc::SYS_syncfs),
    ("sysinfo", libc::SYS_sysinfo),
    ("tee", libc::SYS_tee),
    ("tgkill", libc::SYS_tgkill),
    ("timer_create", libc::SYS_timer_create),
    ("timer_delete", libc::SYS_timer_delete),
    ("timer_getoverrun", libc::SYS_timer_getoverrun),
    ("timer_gettime", libc::SYS_timer_gettime),
    ("timer_settime", libc::SYS_timer_settime),
    ("timerfd_create", libc::SYS_timerfd_create),
    ("timerfd_gettime", libc::SYS_timerfd_gettime),
    ("timerfd_settime", libc::SYS_timerfd_settime),
    ("times", libc::SYS_times),
    ("tkill", libc::SYS_tkill),
    ("truncate", libc::SYS_truncate),
    ("umask", libc::SYS_umask),
    ("uname", libc::SYS_uname),
    ("unlinkat", libc::SYS_unlinkat),
    ("utimensat", libc::SYS_utimensat),
    ("vmsplice", libc::SYS_vmsplice),
    ("wait4", libc::SYS_wait4),
    ("waitid", libc::SYS_waitid),
    ("write", libc::SYS_write),
    ("writev", libc::SYS_writev),
    ("ptrace", libc::SYS_ptrace),
    ("kcmp", libc::SYS_kcmp),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("socket", libc::SYS_socket),
    ("personality", libc::SYS_personality),
    ("clone", libc::SYS_clone),
    ("bpf", libc::SYS_bpf),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("mount", libc::SYS_mount),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("quotactl", libc::SYS_quotactl),
    ("setdomainname", libc::SYS_setdomainname),
    ("sethostname", libc::SYS_sethostname),
    ("setns", libc::SYS_setns),
    ("syslog", libc::SYS_syslog),
    ("umount2", libc::SYS_umount2),
    ("unshare", libc::SYS_unshare),
    ("reboot", libc::SYS_reboot),
    ("chroot", libc::SYS_chroot),
    ("delete_module", libc::SYS_delete_module),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("acct", libc::SYS_acct),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("vhangup", libc::SYS_vhangup),
    ("get_mempolicy", libc::SYS_get_mempolicy),
    ("mbind", libc::SYS_mbind),
    ("set_mempolicy", libc::SYS_set_mempolicy),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
];

/// The legacy syscalls x86_64 kept and the generic table dropped.
#[cfg(target_arch = "x86_64")]
const ARCH: &[(&str, i64)] = &[
    ("access", libc::SYS_access),
    ("alarm", libc::SYS_alarm),
    ("chmod", libc::SYS_chmod),
    ("chown", libc::SYS_chown),
    ("creat", libc::SYS_creat),
    ("dup2", libc::SYS_dup2),
    ("epoll_create", libc::SYS_epoll_create),
    ("epoll_ctl_old", libc::SYS_epoll_ctl_old),
    ("epoll_wait", libc::SYS_epoll_wait),
    ("epoll_wait_old", libc::SYS_epoll_wait_old),
    ("eventfd", libc::SYS_eventfd),
    ("fork", libc::SYS_fork),
    ("futimesat", libc::SYS_futimesat),
    ("getdents", libc::SYS_getdents),
    ("getpgrp", libc::SYS_getpgrp),
    ("getrlimit", libc::SYS_getrlimit),
    ("get_thread_area", libc::SYS_get_thread_area),
    ("inotify_init", libc::SYS_inotify_init),
    ("lchown", libc::SYS_lchown),
    ("link", libc::SYS_link),
    ("lstat", libc::SYS_lstat),
    ("mkdir", libc::SYS_mkdir),
    ("mknod", libc::SYS_mknod),
    ("open", libc::SYS_open),
    ("pause", libc::SYS_pause),
    ("pipe", libc::SYS_pipe),
    ("poll", libc::SYS_poll),
    ("readlink", libc::SYS_readlink),
    ("rename", libc::SYS_rename),
    ("renameat", libc::SYS_renameat),
    ("rmdir", libc::SYS_rmdir),
    ("select", libc::SYS_select),
    ("setrlimit", libc::SYS_setrlimit),
    ("set_thread_area", libc::SYS_set_thread_area),
    ("signalfd", libc::SYS_signalfd),
    ("stat", libc::SYS_stat),
    ("symlink", libc::SYS_symlink),
    ("sync_file_range", libc::SYS_sync_file_range),
    ("time", libc::SYS_time),
    ("unlink", libc::SYS_unlink),
    ("utime", libc::SYS_utime),
    ("utimes", libc::SYS_utimes),
    ("vfork", libc::SYS_vfork),
    ("arch_prctl", libc::SYS_arch_prctl),
    ("modify_ldt", libc::SYS_modify_ldt),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
];

/// aarch64 numbers libc does not name.
#[cfg(target_arch = "aarch64")]
const ARCH: &[(&str, i64)] = &[
    ("renameat", 38),
    ("sync_file_range", 84),
    ("getrlimit", 163),
    ("setrlimit", 164),
];

/// The number of `name` on this build's architecture, if it has one.
pub fn syscall_number(name: &str) -> Option<i64> {
    UNIFIED
        .iter()
        .chain(COMMON)
        .chain(ARCH)
        .find(|(n, _)| *n == name)
        .map(|(_, nr)| *nr)
}

/// The audit architecture of this build's syscalls (what the filter checks).
fn native_audit_arch() -> Result<u32> {
    if cfg!(target_arch = "x86_64") {
        Ok(0xc000_003e) // AUDIT_ARCH_X86_64
    } else if cfg!(target_arch = "aarch64") {
        Ok(0xc000_00b7) // AUDIT_ARCH_AARCH64
    } else {
        Err(SeccompError::Profile(
            "seccomp filters are only supported on x86_64 and aarch64".into(),
        ))
    }
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<u32> {
    use LinuxSeccompAction::*;
    Ok(match a {
        ScmpActAllow => bpf::RET_ALLOW,
        ScmpActErrno => bpf::RET_ERRNO | (errno.unwrap_or(libc::EPERM as u32) & 0xffff),
        ScmpActKill | ScmpActKillThread => bpf::RET_KILL_THREAD,
        ScmpActKillProcess => bpf::RET_KILL_PROCESS,
        ScmpActTrap => bpf::RET_TRAP,
        ScmpActLog => bpf::RET_LOG,
        ScmpActTrace => bpf::RET_TRACE | (errno.unwrap_or(0) & 0xffff),
        ScmpActNotify => {
            return Err(SeccompError::Profile(
                "SCMP_ACT_NOTIFY is not supported".into(),
            ))
        }
    })
}

fn condition(a: &LinuxSeccompArg) -> Result<bpf::Cond> {
    use LinuxSeccompOperator::*;
    let (op, value) = match a.op() {
        ScmpCmpNe => (bpf::Op::Ne, a.value()),
        ScmpCmpLt => (bpf::Op::Lt, a.value()),
        ScmpCmpLe => (bpf::Op::Le, a.value()),
        ScmpCmpEq => (bpf::Op::Eq, a.value()),
        ScmpCmpGe => (bpf::Op::Ge, a.value()),
        ScmpCmpGt => (bpf::Op::Gt, a.value()),
        // libseccomp's meaning: (arg & value) == valueTwo.
        ScmpCmpMaskedEq => (bpf::Op::MaskedEq(a.value()), a.value_two().unwrap_or(0)),
    };
    let arg = u8::try_from(a.index())
        .ok()
        .filter(|i| *i < 6)
        .ok_or_else(|| {
            SeccompError::Profile(format!("argument index {} out of range", a.index()))
        })?;
    Ok(bpf::Cond { arg, op, value })
}

/// Compiles `profile` for this build's architecture into the filter to
/// install (none when it allows everything).
///
/// Per syscall number: the profile's entries whose action is not the
/// default (like runc, which drops those), strongest action first, as the
/// kernel would rank verdicts of several filters; an entry without
/// argument conditions ends the list. Names unknown on this architecture
/// are skipped, as libseccomp does. Only the native architecture is
/// allowed: a syscall of another ABI (32-bit x86 on x86_64) kills the
/// process, where Docker would filter those too.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<Program>> {
    let arch = native_audit_arch()?;
    if let Some(archs) = profile.architectures() {
        let native = native_oci_arch();
        if !archs.is_empty() && !archs.contains(&native) {
            return Err(SeccompError::Profile(format!(
                "profile does not cover this architecture ({native:?})"
            )));
        }
    }
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut entries: BTreeMap<u32, Vec<(Vec<bpf::Cond>, u32)>> = BTreeMap::new();
    for s in profile.syscalls().as_deref().unwrap_or_default() {
        let act = action(s.action(), s.errno_ret().or(profile.default_errno_ret()))?;
        if act == default {
            continue;
        }
        let conds = s
            .args()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(condition)
            .collect::<Result<Vec<_>>>()?;
        for name in s.names() {
            if let Some(nr) = syscall_number(name) {
                entries
                    .entry(nr as u32)
                    .or_default()
                    .push((conds.clone(), act));
            }
        }
    }
    if default == bpf::RET_ALLOW && entries.is_empty() {
        return Ok(Vec::new());
    }
    let by_nr: BTreeMap<u32, bpf::Verdict> = entries
        .into_iter()
        .map(|(nr, mut rules)| {
            rules.sort_by_key(|(_, act)| std::cmp::Reverse(bpf::strength(*act)));
            if let Some(i) = rules.iter().position(|(conds, _)| conds.is_empty()) {
                rules.truncate(i + 1);
            }
            let verdict = match rules.as_slice() {
                [(conds, act)] if conds.is_empty() => bpf::Verdict::Ret(*act),
                _ => bpf::Verdict::Rules {
                    rules,
                    fallback: default,
                },
            };
            (nr, verdict)
        })
        .collect();
    let prog =
        bpf::compile(arch, &by_nr, default).map_err(|e| SeccompError::Profile(e.to_string()))?;
    Ok(vec![prog])
}

/// One compiled filter.
pub type Program = Vec<bpf::Insn>;

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
    use super::*;

    fn names_with(p: &LinuxSeccomp, act: LinuxSeccompAction) -> Vec<String> {
        p.syscalls()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|s| s.action() == act)
            .flat_map(|s| s.names().clone())
            .collect()
    }

    fn default_caps() -> Vec<String> {
        crate::runtime::caps::default_capabilities()
            .iter()
            .map(|c| c.to_string())
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
    fn every_allowed_name_resolves_on_this_architecture() {
        let arch_specific = ["get_thread_area", "set_thread_area", "epoll_ctl_old"];
        let missing: Vec<&str> = ALLOWED
            .iter()
            .copied()
            .filter(|n| syscall_number(n).is_none() && !arch_specific.contains(n))
            .collect();
        if cfg!(target_arch = "x86_64") {
            assert!(missing.is_empty(), "{missing:?}");
            assert_eq!(syscall_number("read"), Some(0));
            assert_eq!(syscall_number("keyctl"), Some(250));
            assert_eq!(syscall_number("clone3"), Some(435));
        }
        assert_eq!(syscall_number("no_such_call"), None);
    }

    #[test]
    fn profile_compiles_to_one_short_filter_deciding_like_docker() {
        let progs = compile(&default_profile(&default_caps())).unwrap();
        assert_eq!(progs.len(), 1);
        let p = &progs[0];
        // Docker's allow-list as ranges: a few hundred instructions, not thousands.
        assert!(p.len() < 400, "{} instructions", p.len());
        let arch = native_audit_arch().unwrap();
        let run = |name: &str, args: [u64; 6]| {
            bpf::run(p, arch, syscall_number(name).unwrap() as u32, &args)
        };
        let eperm = Some(bpf::RET_ERRNO | libc::EPERM as u32);
        let allow = Some(bpf::RET_ALLOW);
        for name in ALLOWED.iter().filter(|n| syscall_number(n).is_some()) {
            if !["clone", "personality", "socket"].contains(name) {
                assert_eq!(run(name, [0; 6]), allow, "{name}");
            }
        }
        for name in [
            "keyctl",
            "bpf",
            "mount",
            "unshare",
            "setns",
            "reboot",
            "kexec_load",
        ] {
            assert_eq!(run(name, [0; 6]), eperm, "{name}");
        }
        assert_eq!(run("clone", [0x11, 0, 0, 0, 0, 0]), allow); // SIGCHLD|...
        assert_eq!(
            run("clone", [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0]),
            eperm
        );
        assert_eq!(run("clone", [1 << 40, 0, 0, 0, 0, 0]), allow); // high half ignored by mask
        assert_eq!(
            run("clone3", [0; 6]),
            Some(bpf::RET_ERRNO | libc::ENOSYS as u32)
        );
        assert_eq!(run("personality", [0xffff_ffff, 0, 0, 0, 0, 0]), allow);
        assert_eq!(run("personality", [0x0040_0000, 0, 0, 0, 0, 0]), eperm);
        assert_eq!(run("socket", [AF_VSOCK, 1, 0, 0, 0, 0]), eperm);
        assert_eq!(run("socket", [libc::AF_INET as u64, 1, 0, 0, 0, 0]), allow);
        // Numbers nobody named, and another ABI.
        assert_eq!(bpf::run(p, arch, 999, &[0; 6]), eperm);
        assert_eq!(bpf::run(p, arch, 0x4000_0000, &[0; 6]), eperm);
        assert_eq!(
            bpf::run(p, 0x4000_0003, 1, &[0; 6]),
            Some(bpf::RET_KILL_PROCESS)
        );

        // SYS_ADMIN: clone is unconditional, clone3 allowed.
        let mut caps = default_caps();
        caps.push("CAP_SYS_ADMIN".into());
        let p = &compile(&default_profile(&caps)).unwrap()[0];
        let clone = syscall_number("clone").unwrap() as u32;
        let ns = [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0];
        assert_eq!(bpf::run(p, arch, clone, &ns), allow);
        // An allow-all profile needs no filter at all.
        assert!(compile(&LinuxSeccomp::default()).unwrap().is_empty());
        // A profile for another architecture is refused.
        let mut other = default_profile(&[]);
        other.set_architectures(Some(vec![Arch::ScmpArchS390x]));
        assert!(compile(&other).is_err());
    }

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
