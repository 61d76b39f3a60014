//! The child side's kernel calls behind one narrow seam. `Sys` is what the
//! container's init does to the kernel (mounts, pivot_root, device nodes,
//! namespaces, hostname, credentials, capabilities); `RealSys` makes the
//! calls, `Recorder` writes each one down as a typed `Call` so the rootfs
//! sequence of a spec can be asserted without root. The code is generic over
//! `Sys`, so the real path is monomorphised: the seam costs nothing at run
//! time.

use crate::rootfs::inroot::{InRootError, Root};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};
#[cfg(test)]
use std::cell::RefCell;
use std::ffi::OsStr;
#[cfg(test)]
use std::os::fd::AsRawFd;
use std::os::fd::BorrowedFd;
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;

/// The kernel calls of the container's side of a start or an exec.
pub trait Sys {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()>;
    fn chdir(&self, dir: &Path) -> nix::Result<()>;
    fn chroot(&self, dir: &Path) -> nix::Result<()>;
    /// mknodat(2) of `name` in the directory `dir`.
    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        kind: SFlag,
        mode: Mode,
        dev: u64,
    ) -> nix::Result<()>;
    /// fchmodat(2) of `name` in `dir` (mknod's mode is cut by the umask).
    fn fchmodat(&self, dir: BorrowedFd<'_>, name: &OsStr, mode: Mode) -> nix::Result<()>;
    /// symlinkat(2): `name` in `dir`, pointing at `target`.
    fn symlinkat(&self, target: &Path, dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()>;
    fn sethostname(&self, name: &str) -> nix::Result<()>;
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()>;
    fn setns(&self, ns: BorrowedFd<'_>, flags: CloneFlags) -> nix::Result<()>;
    /// capset(2), version 3: the three sets as 64-bit masks.
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> nix::Result<()>;
    /// prctl(2) with integer arguments (the rest zero).
    fn prctl(&self, option: libc::c_int, arg2: u64, arg3: u64) -> nix::Result<()>;
    fn setgroups(&self, gids: &[u32]) -> nix::Result<()>;
    /// setresgid(gid, gid, gid).
    fn setresgid(&self, gid: u32) -> nix::Result<()>;
    /// setresuid(uid, uid, uid).
    fn setresuid(&self, uid: u32) -> nix::Result<()>;
    /// Opens `dir`, as the process's current root names it, as a `Root` for
    /// the in-root walks (after pivot_root, "/" is the container's root).
    fn open_root(&self, dir: &Path) -> Result<Root, InRootError>;
}

/// The kernel itself.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RealSys;

impl Sys for RealSys {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }
    fn chdir(&self, dir: &Path) -> nix::Result<()> {
        nix::unistd::chdir(dir)
    }
    fn chroot(&self, dir: &Path) -> nix::Result<()> {
        nix::unistd::chroot(dir)
    }
    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        kind: SFlag,
        mode: Mode,
        dev: u64,
    ) -> nix::Result<()> {
        nix::sys::stat::mknodat(dir, name, kind, mode, dev)
    }
    fn fchmodat(&self, dir: BorrowedFd<'_>, name: &OsStr, mode: Mode) -> nix::Result<()> {
        nix::sys::stat::fchmodat(
            dir,
            name,
            mode,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
    }
    fn symlinkat(&self, target: &Path, dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()> {
        nix::unistd::symlinkat(target, dir, name)
    }
    fn sethostname(&self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::unshare(flags)
    }
    fn setns(&self, ns: BorrowedFd<'_>, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::setns(ns, flags)
    }
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> nix::Result<()> {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        let hdr = Header {
            version: VERSION_3,
            pid: 0,
        };
        let data = [
            Data {
                effective: effective as u32,
                permitted: permitted as u32,
                inheritable: inheritable as u32,
            },
            Data {
                effective: (effective >> 32) as u32,
                permitted: (permitted >> 32) as u32,
                inheritable: (inheritable >> 32) as u32,
            },
        ];
        // SAFETY: header and two data structs laid out as the kernel's
        // capset(2) v3 ABI expects; both outlive the call.
        let r = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) };
        Errno::result(r).map(drop)
    }
    fn prctl(&self, option: libc::c_int, arg2: u64, arg3: u64) -> nix::Result<()> {
        // SAFETY: prctl with integer arguments only; no pointer is passed.
        let r = unsafe {
            libc::prctl(
                option,
                arg2 as libc::c_ulong,
                arg3 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        Errno::result(r).map(drop)
    }
    fn setgroups(&self, gids: &[u32]) -> nix::Result<()> {
        let gids: Vec<nix::unistd::Gid> = gids
            .iter()
            .map(|g| nix::unistd::Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&gids)
    }
    fn setresgid(&self, gid: u32) -> nix::Result<()> {
        let g = nix::unistd::Gid::from_raw(gid);
        nix::unistd::setresgid(g, g, g)
    }
    fn setresuid(&self, uid: u32) -> nix::Result<()> {
        let u = nix::unistd::Uid::from_raw(uid);
        nix::unistd::setresuid(u, u, u)
    }
    fn open_root(&self, dir: &Path) -> Result<Root, InRootError> {
        Root::open(dir)
    }
}

/// One recorded kernel call. Paths are as the process would see them at
/// that moment (see `Recorder`): descriptors are shown as what they lead to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg(test)]
pub(crate) enum Call {
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Umount2 {
        target: PathBuf,
        flags: MntFlags,
    },
    PivotRoot {
        new_root: PathBuf,
        put_old: PathBuf,
    },
    Chdir(PathBuf),
    Chroot(PathBuf),
    Mknod {
        path: PathBuf,
        kind: SFlag,
        mode: Mode,
        dev: u64,
    },
    Chmod {
        path: PathBuf,
        mode: Mode,
    },
    Symlink {
        target: PathBuf,
        link: PathBuf,
    },
    Sethostname(String),
    Unshare(CloneFlags),
    Setns {
        ns: PathBuf,
        flags: CloneFlags,
    },
    Capset {
        effective: u64,
        permitted: u64,
        inheritable: u64,
    },
    Prctl {
        option: libc::c_int,
        arg2: u64,
        arg3: u64,
    },
    Setgroups(Vec<u32>),
    Setresgid(u32),
    Setresuid(u32),
}

/// Writes every call down instead of making it, and acts out just enough
/// of the kernel for the code that follows: the process's root and working
/// directory (chdir, pivot_root(".", "."), chroot), so the walks after a
/// pivot happen in the new root. Paths it records are shown inside `base`
/// (a temporary directory standing for the host's `/`) before the pivot,
/// and inside the new root after it. `fail` lets a test make chosen calls
/// fail.
#[cfg(test)]
pub(crate) struct Recorder {
    base: PathBuf,
    state: RefCell<RecState>,
    fail: Option<fn(&Call) -> Option<Errno>>,
}

#[cfg(test)]
struct RecState {
    calls: Vec<Call>,
    root: PathBuf,
    cwd: PathBuf,
    pivoted: bool,
}

#[cfg(test)]
impl Recorder {
    pub fn new(base: &Path) -> Recorder {
        Recorder {
            base: base.to_path_buf(),
            state: RefCell::new(RecState {
                calls: Vec::new(),
                root: PathBuf::from("/"),
                cwd: PathBuf::from("/"),
                pivoted: false,
            }),
            fail: None,
        }
    }

    /// Calls for which `fail` returns an errno fail with it (and are still recorded).
    pub fn failing(mut self, fail: fn(&Call) -> Option<Errno>) -> Recorder {
        self.fail = Some(fail);
        self
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.borrow().calls.clone()
    }

    /// The host path a path of the process names now.
    fn host(&self, p: &Path) -> PathBuf {
        let st = self.state.borrow();
        match p.strip_prefix("/") {
            Ok(rel) if st.pivoted => st.root.join(rel),
            Ok(_) => p.to_path_buf(),
            Err(_) => st.cwd.join(p),
        }
    }

    /// How a recorded path is shown: a /proc/self/fd link as what it leads
    /// to, host paths relative to `base` (before the pivot) or to the new
    /// root (after it).
    fn shown(&self, p: &Path) -> PathBuf {
        let st = self.state.borrow();
        let via_fd = p.to_str().is_some_and(|s| s.starts_with("/proc/self/fd/"));
        let host = if via_fd {
            std::fs::read_link(p).unwrap_or_else(|_| p.to_path_buf())
        } else if st.pivoted || p.is_relative() {
            return p.to_path_buf();
        } else {
            p.to_path_buf()
        };
        let inside = if st.pivoted { &st.root } else { &self.base };
        match host.strip_prefix(inside) {
            Ok(rest) => Path::new("/").join(rest),
            Err(_) => host,
        }
    }

    fn at(&self, dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
        self.shown(Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())))
            .join(name)
    }

    fn record(&self, call: Call) -> nix::Result<()> {
        let failed = self.fail.and_then(|f| f(&call));
        self.state.borrow_mut().calls.push(call);
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
impl Sys for Recorder {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        self.record(Call::Mount {
            source: source.map(|s| self.shown(s)),
            target: self.shown(target),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        })
    }
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        self.record(Call::Umount2 {
            target: self.shown(target),
            flags,
        })
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        let call = Call::PivotRoot {
            new_root: self.shown(new_root),
            put_old: self.shown(put_old),
        };
        self.record(call)?;
        let new = self.host(new_root);
        let mut st = self.state.borrow_mut();
        st.root = new.clone();
        st.cwd = new;
        st.pivoted = true;
        Ok(())
    }
    fn chdir(&self, dir: &Path) -> nix::Result<()> {
        self.record(Call::Chdir(self.shown(dir)))?;
        let to = self.host(dir);
        self.state.borrow_mut().cwd = to;
        Ok(())
    }
    fn chroot(&self, dir: &Path) -> nix::Result<()> {
        self.record(Call::Chroot(self.shown(dir)))?;
        let to = self.host(dir);
        let mut st = self.state.borrow_mut();
        st.root = to;
        st.pivoted = true;
        Ok(())
    }
    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        kind: SFlag,
        mode: Mode,
        dev: u64,
    ) -> nix::Result<()> {
        self.record(Call::Mknod {
            path: self.at(dir, name),
            kind,
            mode,
            dev,
        })
    }
    fn fchmodat(&self, dir: BorrowedFd<'_>, name: &OsStr, mode: Mode) -> nix::Result<()> {
        self.record(Call::Chmod {
            path: self.at(dir, name),
            mode,
        })
    }
    fn symlinkat(&self, target: &Path, dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()> {
        self.record(Call::Symlink {
            target: target.to_path_buf(),
            link: self.at(dir, name),
        })
    }
    fn sethostname(&self, name: &str) -> nix::Result<()> {
        self.record(Call::Sethostname(name.to_string()))
    }
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        self.record(Call::Unshare(flags))
    }
    fn setns(&self, ns: BorrowedFd<'_>, flags: CloneFlags) -> nix::Result<()> {
        let link = format!("/proc/self/fd/{}", ns.as_raw_fd());
        let ns = std::fs::read_link(&link).unwrap_or_else(|_| PathBuf::from(link));
        self.record(Call::Setns { ns, flags })
    }
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> nix::Result<()> {
        self.record(Call::Capset {
            effective,
            permitted,
            inheritable,
        })
    }
    fn prctl(&self, option: libc::c_int, arg2: u64, arg3: u64) -> nix::Result<()> {
        self.record(Call::Prctl { option, arg2, arg3 })
    }
    fn setgroups(&self, gids: &[u32]) -> nix::Result<()> {
        self.record(Call::Setgroups(gids.to_vec()))
    }
    fn setresgid(&self, gid: u32) -> nix::Result<()> {
        self.record(Call::Setresgid(gid))
    }
    fn setresuid(&self, uid: u32) -> nix::Result<()> {
        self.record(Call::Setresuid(uid))
    }
    fn open_root(&self, dir: &Path) -> Result<Root, InRootError> {
        Root::open(&self.host(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn the_recorder_follows_a_pivot_and_shows_paths_inside_the_root() {
        let base = tempfile::tempdir().unwrap();
        let rootfs = base.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("dev")).unwrap();
        let sys = Recorder::new(base.path());
        sys.chdir(&rootfs).unwrap();
        sys.pivot_root(Path::new("."), Path::new(".")).unwrap();
        sys.chdir(Path::new("/")).unwrap();
        let root = sys.open_root(Path::new("/")).unwrap();
        let dev = root
            .mkdir_all(Path::new("/dev"), crate::rootfs::inroot::Links::Refuse)
            .unwrap();
        sys.symlinkat(Path::new("pts/ptmx"), dev.as_fd(), OsStr::new("ptmx"))
            .unwrap();
        assert_eq!(
            sys.calls(),
            vec![
                Call::Chdir("/rootfs".into()),
                Call::PivotRoot {
                    new_root: ".".into(),
                    put_old: ".".into()
                },
                Call::Chdir("/".into()),
                Call::Symlink {
                    target: "pts/ptmx".into(),
                    link: "/dev/ptmx".into()
                },
            ]
        );
    }

    #[test]
    fn chosen_calls_fail_and_are_still_recorded() {
        let base = tempfile::tempdir().unwrap();
        let sys = Recorder::new(base.path()).failing(|c| match c {
            Call::Sethostname(_) => Some(Errno::EPERM),
            _ => None,
        });
        assert_eq!(sys.sethostname("x"), Err(Errno::EPERM));
        assert_eq!(sys.unshare(CloneFlags::CLONE_NEWCGROUP), Ok(()));
        assert_eq!(
            sys.calls(),
            vec![
                Call::Sethostname("x".into()),
                Call::Unshare(CloneFlags::CLONE_NEWCGROUP)
            ]
        );
    }
}
