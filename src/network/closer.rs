//! A child that closes a socket for us later, made without copying our
//! memory (see `nfnl::release` for why a socket is closed by someone else).
//!
//! `fork` copies the page tables of everything writable, and the process
//! then tears its own memory down at exit: both on the command's path. A
//! child made with `CLONE_VM` shares our memory instead, so there is
//! nothing to copy, and the teardown of the memory moves to the last of
//! us to exit: the child, a grace period later. The price is care: the
//! child runs on a stack of its own, with every signal blocked (a handler
//! of ours running in it would touch our data), makes raw system calls
//! only (`errno` lives in our thread's memory), and its stack is reused
//! only once the kernel has cleared the word `CLONE_CHILD_CLEARTID` gave
//! it, which happens after the child stopped running.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

/// membarrier(2): on every CPU, a grace period (synchronize_rcu).
const MEMBARRIER_CMD_GLOBAL: usize = 1;

/// The child's stack; its arguments sit at the bottom, the stack grows
/// down from the top (four system calls need a few hundred bytes).
const STACK_LEN: usize = 16 * 1024;

/// What the child is told: close `pipe_w`, wait on `pipe_r` for
/// end-of-file, wait out a grace period, close `sock`.
#[repr(C)]
struct Args {
    sock: RawFd,
    pipe_r: RawFd,
    pipe_w: RawFd,
}

/// One stack, and the word the kernel clears (and wakes) when the child
/// that used it is gone; nonzero while a child may still run on it.
struct Stack {
    mem: *mut u8,
    running: AtomicI32,
}

// SAFETY: `mem` is a private mapping written only by the one caller that
// claimed the stack (`claim` on `running`) and then by that caller's child,
// until the kernel clears `running` at the child's exit.
unsafe impl Send for Stack {}
// SAFETY: as above; `running` is atomic.
unsafe impl Sync for Stack {}

/// Stacks of this process's closers, kept for reuse (leaked: they live as
/// long as the process; one or two in practice).
static STACKS: Mutex<Vec<&'static Stack>> = Mutex::new(Vec::new());

impl Stack {
    /// Takes the stack for a child, if none runs on it (one taker wins).
    fn claim(&self) -> bool {
        self.running
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// A new stack of its own (never unmapped).
    fn map() -> Option<&'static Stack> {
        // SAFETY: an anonymous private mapping of our own, never unmapped.
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if mem == libc::MAP_FAILED {
            return None;
        }
        Some(Box::leak(Box::new(Stack {
            mem: mem.cast(),
            running: AtomicI32::new(0),
        })))
    }
}

/// A stack no child runs on any more, or a new one; claimed for the
/// caller's child.
fn free_stack() -> Option<&'static Stack> {
    let mut stacks = STACKS.lock().ok()?;
    if let Some(s) = stacks.iter().find(|s| s.claim()) {
        return Some(s);
    }
    let s = Stack::map()?;
    s.claim();
    stacks.push(s);
    Some(s)
}

/// A raw system call: no `errno` written (the child shares our memory).
#[cfg(target_arch = "x86_64")]
unsafe fn sys3(n: usize, a: usize, b: usize, c: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes a valid system call and its arguments.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A raw system call: no `errno` written (the child shares our memory).
#[cfg(target_arch = "aarch64")]
unsafe fn sys3(n: usize, a: usize, b: usize, c: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes a valid system call and its arguments.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") a as isize => ret,
            in("x1") b,
            in("x2") c,
            options(nostack),
        );
    }
    ret
}

/// The child: only raw system calls on its own stack.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at the `Args` the parent wrote at the bottom of
    // this child's stack before the clone and never touches again; the
    // calls are read, close and membarrier on fds of this child's own
    // descriptor table (a copy: no CLONE_FILES).
    unsafe {
        let a = &*(arg as *const Args);
        sys3(libc::SYS_close as usize, a.pipe_w as usize, 0, 0);
        let mut b = 0u8;
        sys3(
            libc::SYS_read as usize,
            a.pipe_r as usize,
            &mut b as *mut u8 as usize,
            1,
        );
        // Fails only where it cannot wait (nohz_full CPUs): the close then
        // waits under the commit mutex, as a plain close would.
        sys3(libc::SYS_membarrier as usize, MEMBARRIER_CMD_GLOBAL, 0, 0);
        sys3(libc::SYS_close as usize, a.sock as usize, 0, 0);
    }
    0
}

/// Hands `fd` to a child that closes it once our copy is closed and a
/// grace period has passed: a child sharing our memory (`spawn`), else a
/// forked one running the same steps. Closes at once when neither can be
/// made.
pub(super) fn close_later(fd: OwnedFd) {
    let Ok((r, w)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return;
    };
    let (sock, pipe_r, pipe_w) = (fd.as_raw_fd(), r.as_raw_fd(), w.as_raw_fd());
    if spawn(sock, pipe_r, pipe_w).is_none() {
        let mut args = Args {
            sock,
            pipe_r,
            pipe_w,
        };
        // SAFETY: the forked child runs `child` (raw system calls on fds of
        // its own copy of our descriptor table) and `_exit`, nothing else,
        // so forking from a threaded process is fine.
        if unsafe { libc::fork() } == 0 {
            // SAFETY: as above; `args` is the child's own copy.
            unsafe {
                child((&mut args as *mut Args).cast());
                libc::_exit(0);
            }
        }
    }
    // Our copy of the socket first: the write end's close after it is the
    // child's end-of-file, so its close is the socket's last.
    drop(fd);
    drop(w);
    drop(r);
}

/// Hands `sock` to a child that closes it once our copy and `pipe_w` are
/// closed and a grace period has passed. Returns the child's pid, or None
/// when no child could be made that way (`close_later` then forks).
fn spawn(sock: RawFd, pipe_r: RawFd, pipe_w: RawFd) -> Option<libc::pid_t> {
    spawn_on(free_stack()?, sock, pipe_r, pipe_w)
}

/// `spawn` on `stack`, claimed by the caller (its word is nonzero until
/// the kernel clears it at the child's exit, or until the clone fails).
fn spawn_on(
    stack: &'static Stack,
    sock: RawFd,
    pipe_r: RawFd,
    pipe_w: RawFd,
) -> Option<libc::pid_t> {
    let args = stack.mem.cast::<Args>();
    // SAFETY: the bottom of a stack the caller claimed: no child runs on it.
    unsafe {
        args.write(Args {
            sock,
            pipe_r,
            pipe_w,
        })
    };
    // The child starts with every signal blocked and stays so.
    // SAFETY: a sigset_t is plain data; all zeroes is a valid (empty) set.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigfillset and pthread_sigmask on sets of our own.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: the child runs `child` on its own stack (16-byte aligned
    // top), shares our memory (CLONE_VM) but not our descriptor table, and
    // the kernel clears `running` when it is gone (CLONE_CHILD_CLEARTID).
    let pid = unsafe {
        let top = stack.mem.add(STACK_LEN);
        libc::clone(
            child,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD,
            args.cast(),
            std::ptr::null_mut::<libc::pid_t>(),
            std::ptr::null_mut::<libc::c_void>(),
            stack.running.as_ptr(),
        )
    };
    // SAFETY: restores this thread's own mask.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    if pid < 0 {
        stack.running.store(0, Ordering::Release);
        return None;
    }
    Some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    #[test]
    fn the_child_closes_the_socket_only_after_we_let_go_and_its_stack_is_freed() {
        let stack = Stack::map().unwrap();
        assert!(stack.claim());
        assert!(!stack.claim(), "claimed twice");
        let (ours, peer) = UnixStream::pair().unwrap();
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let pid = spawn_on(stack, ours.as_raw_fd(), r.as_raw_fd(), w.as_raw_fd()).expect("a child");
        assert_eq!(stack.running.load(Ordering::Acquire), 1);
        drop(ours);
        drop(r);
        // Our copy of the socket is gone, the child's is not: it waits for
        // the pipe's end-of-file, which our write end still holds off.
        peer.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let e = (&peer).read(&mut b).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
        // Let go: after a grace period the child closes it, the peer sees
        // end-of-file, and the child exits cleanly.
        drop(w);
        peer.set_nonblocking(false).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!((&peer).read(&mut b).unwrap(), 0);
        let pid = nix::unistd::Pid::from_raw(pid);
        let status = nix::sys::wait::waitpid(pid, None).unwrap();
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(pid, 0));
        // The kernel cleared the stack's word when the child was gone: the
        // stack may serve the next closer.
        assert_eq!(stack.running.load(Ordering::Acquire), 0);
        // A stack in use is not handed out again.
        assert!(stack.claim());
        STACKS.lock().unwrap().push(stack);
        let other = free_stack().unwrap();
        assert!(!std::ptr::eq(other, stack));
        other.running.store(0, Ordering::Release);
        STACKS.lock().unwrap().retain(|s| !std::ptr::eq(*s, stack));
    }
}
