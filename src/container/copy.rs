//! `minirt cp`: files between a container's root and the host, as tar
//! streams (Docker's model: the source side writes an archive whose top
//! entry already carries the destination's name, the destination side
//! extracts it into a directory).
//!
//! Decisions:
//! - Every path inside a container is resolved by the kernel inside its
//!   root (`inroot`, RESOLVE_IN_ROOT): a symlink in the container, absolute
//!   or `../..`, leads at most to the container's own `/`. Below the
//!   resolved starting point the walk and the extraction work on directory
//!   descriptors with `*at` calls that never follow a symlink, so a
//!   container swapping a directory for a symlink mid-copy cannot redirect
//!   them either.
//! - A running container is reached through `/proc/PID/root` (its mounts,
//!   volumes and /etc files included); a stopped one gets its overlay
//!   mounted in a private mount namespace of this process, which vanishes
//!   with it (nothing to clean up after a crash but an empty directory).
//! - Owners: into a container, entries belong to root unless `-a` keeps the
//!   archive's owners; onto the host they belong to the caller (Docker's
//!   rules). Device nodes are not copied (as in layer extraction).

use crate::rootfs::image;
use crate::rootfs::inroot::{self, Links, Root};
use crate::store::containers::ContainerRow;
use crate::store::Store;
use crate::Instance;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, mknodat, FileStat, Mode, SFlag};
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CopyError(pub String);

type Result<T> = std::result::Result<T, CopyError>;

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> CopyError {
    CopyError(format!("{what}: {e}"))
}

/// What a path names, as far as the copy rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// Anything else (a file, a symlink not followed, a fifo).
    File,
}

/// Where the archive goes: its top entry's name (`.` when the source
/// directory's contents go straight into `into`) and the directory it is
/// extracted into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub top: String,
    pub into: PathBuf,
}

fn base_name(p: &str) -> String {
    let comps = inroot::clean(Path::new(p));
    comps
        .last()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into())
}

fn parent_of(p: &str) -> PathBuf {
    let trimmed = p.trim_end_matches('/');
    match Path::new(trimmed).parent() {
        Some(par) if !par.as_os_str().is_empty() => par.to_path_buf(),
        _ if p.starts_with('/') => PathBuf::from("/"),
        _ => PathBuf::from("."),
    }
}

/// Docker's `cp` rules: `src` of kind `src_kind` copied to `dest`, which is
/// `dest_kind` (None: does not exist).
pub fn plan(src: &str, src_kind: Kind, dest: &str, dest_kind: Option<Kind>) -> Result<Plan> {
    let contents = src.ends_with("/.") || src == ".";
    if src_kind == Kind::File && (src.ends_with('/') || contents) {
        return Err(CopyError(format!("{src}: not a directory")));
    }
    match (src_kind, dest_kind) {
        (Kind::File, None) if dest.ends_with('/') => Err(CopyError(format!(
            "{dest}: no such directory (the destination directory must exist)"
        ))),
        (_, None) | (Kind::File, Some(Kind::File)) => Ok(Plan {
            top: base_name(dest),
            into: parent_of(dest),
        }),
        (Kind::Dir, Some(Kind::File)) => Err(CopyError(format!(
            "cannot copy a directory to a file: {dest}"
        ))),
        (_, Some(Kind::Dir)) => Ok(Plan {
            top: if contents { ".".into() } else { base_name(src) },
            into: PathBuf::from(dest),
        }),
    }
}

/// A container's root filesystem, opened for one copy.
pub struct ContainerFs {
    pub root: Root,
    mounted: Option<PathBuf>,
}

impl Drop for ContainerFs {
    fn drop(&mut self) {
        if let Some(target) = self.mounted.take() {
            let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&target);
        }
    }
}

/// Opens the root of `row`: `/proc/PID/root` while it runs, otherwise its
/// overlay mounted in a new private mount namespace of this process (so
/// call this once per process, before anything else mounts).
pub fn open_container(inst: &Instance, row: &ContainerRow, running: bool) -> Result<ContainerFs> {
    if running {
        let root = Root::open(Path::new(&format!("/proc/{}/root", row.pid)))
            .map_err(|e| CopyError(e.to_string()))?;
        return Ok(ContainerFs {
            root,
            mounted: None,
        });
    }
    let mut store = Store::open(&inst.db_path()).map_err(|e| CopyError(e.to_string()))?;
    let img =
        image::resolve(inst, &mut store, &row.image_id).map_err(|e| CopyError(e.to_string()))?;
    drop(store);
    let target = inst
        .run_root
        .join("cp")
        .join(format!("{}-{}", &row.id[..12], std::process::id()));
    let overlay = super::runtime::container_overlay(inst, &img, &row.id, target.clone(), false)
        .map_err(|e| CopyError(e.to_string()))?;
    overlay.make_dirs().map_err(|e| CopyError(e.to_string()))?;
    let fs = ContainerFs {
        root: Root::open(Path::new("/")).map_err(|e| CopyError(e.to_string()))?,
        mounted: Some(target.clone()),
    };
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| err("a private mount namespace", e))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| err("making mounts private", e))?;
    overlay
        .mount(&crate::runtime::sys::RealSys)
        .map_err(|e| CopyError(e.to_string()))?;
    let mut fs = fs;
    fs.root = Root::open(&target).map_err(|e| CopyError(e.to_string()))?;
    Ok(fs)
}

/// What `path` in `root` is; `follow` follows a last symlink (inside the
/// root). None when nothing is there.
pub fn kind_in(root: &Root, path: &Path, follow: bool) -> Result<Option<Kind>> {
    let fd = match open_entry(root, path, follow) {
        Ok(Some(fd)) => fd,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = fstat(fd.as_fd()).map_err(|e| err(path.display(), e))?;
    Ok(Some(kind_of(&st)))
}

fn kind_of(st: &FileStat) -> Kind {
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        Kind::Dir
    } else {
        Kind::File
    }
}

/// An O_PATH descriptor of `path`: its parent resolved inside the root, the
/// last name not followed unless `follow`.
fn open_entry(root: &Root, path: &Path, follow: bool) -> Result<Option<OwnedFd>> {
    let comps = inroot::clean(path);
    if follow || comps.is_empty() {
        return root
            .resolve_existing(path, Links::InRoot)
            .map_err(|e| CopyError(e.to_string()));
    }
    let parent: PathBuf = comps[..comps.len() - 1].iter().collect();
    let Some(dir) = root
        .resolve_existing(&parent, Links::InRoot)
        .map_err(|e| CopyError(e.to_string()))?
    else {
        return Ok(None);
    };
    match openat(
        dir.as_fd(),
        comps[comps.len() - 1].as_os_str(),
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(Errno::ENOTDIR) => Err(CopyError(format!("{}: not a directory", parent.display()))),
        Err(e) => Err(err(path.display(), e)),
    }
}

/// Writes `path` (in `root`) as a tar stream whose top entry is named
/// `top` (`.`: the directory's entries at the top). `follow` follows a last
/// symlink (`-L`); below it nothing is followed.
pub fn archive(root: &Root, path: &Path, follow: bool, top: &str, out: impl Write) -> Result<()> {
    archive_with(root, path, follow, top, false, out)
}

/// The whole root filesystem as a tar stream (`export`): what is mounted
/// over it (/proc, /sys, /dev, the /etc files, volumes) stays out, its
/// mount point directories are kept empty.
pub fn export(root: &Root, out: impl Write) -> Result<()> {
    archive_with(root, Path::new("/"), true, ".", true, out)
}

fn archive_with(
    root: &Root,
    path: &Path,
    follow: bool,
    top: &str,
    one_filesystem: bool,
    out: impl Write,
) -> Result<()> {
    let fd = open_entry(root, path, follow)?.ok_or_else(|| {
        CopyError(format!(
            "Could not find the file {} in container",
            path.display()
        ))
    })?;
    let mut b = tar::Builder::new(out);
    let mut w = Walker {
        links: HashMap::new(),
        dev: None,
    };
    if one_filesystem {
        w.dev = Some(
            fstat(fd.as_fd())
                .map_err(|e| err(path.display(), e))?
                .st_dev,
        );
    }
    if top == "." {
        let st = fstat(fd.as_fd()).map_err(|e| err(path.display(), e))?;
        if kind_of(&st) != Kind::Dir {
            return Err(CopyError(format!("{}: not a directory", path.display())));
        }
        w.children(&mut b, &fd, "")?;
    } else {
        w.entry(&mut b, fd, top)?;
    }
    b.into_inner()
        .and_then(|mut o| o.flush())
        .map_err(|e| err("writing the archive", e))?;
    Ok(())
}

struct Walker {
    /// First archive name of each multiply-linked file, for hardlinks.
    links: HashMap<(u64, u64), String>,
    /// Only entries on this device (`export`); mount points stay empty.
    dev: Option<u64>,
}

fn header_for(st: &FileStat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    h
}

impl Walker {
    fn entry<W: Write>(&mut self, b: &mut tar::Builder<W>, fd: OwnedFd, name: &str) -> Result<()> {
        let st = fstat(fd.as_fd()).map_err(|e| err(name, e))?;
        let io = |e: std::io::Error| err(format!("archiving {name}"), e);
        if self.dev.is_some_and(|d| d != st.st_dev) {
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                let mut h = header_for(&st, tar::EntryType::Directory);
                return b
                    .append_data(&mut h, format!("{name}/"), std::io::empty())
                    .map_err(io);
            }
            return Ok(());
        }
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                let mut h = header_for(&st, tar::EntryType::Directory);
                b.append_data(&mut h, format!("{name}/"), std::io::empty())
                    .map_err(io)?;
                self.children(b, &fd, name)
            }
            libc::S_IFREG => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&key) {
                        let mut h = header_for(&st, tar::EntryType::Link);
                        return b.append_link(&mut h, name, first).map_err(io);
                    }
                    self.links.insert(key, name.to_string());
                }
                // Reopening our own O_PATH descriptor walks no path.
                let file = std::fs::File::open(inroot::fd_path(&fd)).map_err(io)?;
                let mut h = header_for(&st, tar::EntryType::Regular);
                h.set_size(u64::try_from(st.st_size).unwrap_or(0));
                b.append_data(
                    &mut h,
                    name,
                    file.take(u64::try_from(st.st_size).unwrap_or(0)),
                )
                .map_err(io)
            }
            libc::S_IFLNK => {
                let target = readlinkat(fd.as_fd(), "").map_err(|e| err(name, e))?;
                let mut h = header_for(&st, tar::EntryType::Symlink);
                b.append_link(&mut h, name, Path::new(&target)).map_err(io)
            }
            libc::S_IFIFO => {
                let mut h = header_for(&st, tar::EntryType::Fifo);
                b.append_data(&mut h, name, std::io::empty()).map_err(io)
            }
            _ => {
                tracing::warn!("cp: {name} is a device node or socket, not copied");
                Ok(())
            }
        }
    }

    fn children<W: Write>(
        &mut self,
        b: &mut tar::Builder<W>,
        dir: &OwnedFd,
        prefix: &str,
    ) -> Result<()> {
        let d = nix::dir::Dir::openat(
            dir.as_fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(prefix, e))?;
        let mut names: Vec<OsString> = vec![];
        for e in d.into_iter().flatten() {
            let n = OsStr::from_bytes(e.file_name().to_bytes());
            if n != "." && n != ".." {
                names.push(n.to_os_string());
            }
        }
        names.sort();
        for n in names {
            let child = match openat(
                dir.as_fd(),
                n.as_os_str(),
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // Gone since the listing (a running container).
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(err(n.to_string_lossy(), e)),
            };
            let name = if prefix.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{prefix}/{}", n.to_string_lossy())
            };
            self.entry(b, child, &name)?;
        }
        Ok(())
    }
}

/// Who owns what an extraction makes.
#[derive(Debug, Clone, Copy)]
pub enum Owners {
    /// The archive's owners (`cp -a`).
    Keep,
    /// Everything owned by this uid/gid.
    Set(u32, u32),
}

/// Extracts the tar stream `input` below `dest` (a directory, the root of
/// the extraction: no entry lands outside it).
pub fn extract(dest: &Root, input: impl Read, owners: Owners) -> Result<()> {
    let mut ar = tar::Archive::new(input);
    let mut dirs: Vec<(PathBuf, u64)> = vec![];
    let entries = ar.entries().map_err(|e| err("reading the archive", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| err("reading the archive", e))?;
        let raw = entry.path_bytes().into_owned();
        let comps = inroot::clean(Path::new(OsStr::from_bytes(&raw)));
        if comps.is_empty() {
            continue;
        }
        let path: PathBuf = comps.iter().collect();
        let h = entry.header().clone();
        let mode = Mode::from_bits_truncate(h.mode().unwrap_or(0o644) & 0o7777);
        let (uid, gid) = match owners {
            Owners::Keep => (
                u32::try_from(h.uid().unwrap_or(0)).unwrap_or(0),
                u32::try_from(h.gid().unwrap_or(0)).unwrap_or(0),
            ),
            Owners::Set(u, g) => (u, g),
        };
        let shown = path.display().to_string();
        let io = |e: std::io::Error| err(&shown, e);
        let nx = |e: Errno| err(&shown, e);
        let kind = h.entry_type();
        if kind.is_dir() {
            let fd = dest
                .mkdir_all(&path, Links::InRoot)
                .map_err(|e| CopyError(e.to_string()))?;
            let p = inroot::fd_path(&fd);
            chown_mode(&p, uid, gid, mode).map_err(io)?;
            dirs.push((path, h.mtime().unwrap_or(0)));
            continue;
        }
        let (parent, name) = dest
            .parent_of(&path, Links::InRoot)
            .map_err(|e| CopyError(e.to_string()))?;
        make_room(&parent, &name).map_err(nx)?;
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = openat(
                    parent.as_fd(),
                    name.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(nx)?;
                let mut f = std::fs::File::from(fd);
                std::io::copy(&mut entry, &mut f).map_err(io)?;
                nix::unistd::fchown(
                    f.as_fd(),
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(gid)),
                )
                .map_err(nx)?;
                nix::sys::stat::fchmod(f.as_fd(), mode).map_err(nx)?;
                let t = nix::sys::time::TimeSpec::new(
                    i64::try_from(h.mtime().unwrap_or(0)).unwrap_or(0),
                    0,
                );
                nix::sys::stat::futimens(f.as_fd(), &t, &t).map_err(nx)?;
            }
            tar::EntryType::Symlink => {
                let target = h
                    .link_name_bytes()
                    .map(|b| OsStr::from_bytes(&b).to_os_string())
                    .unwrap_or_default();
                symlinkat(target.as_os_str(), parent.as_fd(), name.as_os_str()).map_err(nx)?;
                chown_new(&parent, &name, uid, gid).map_err(nx)?;
            }
            tar::EntryType::Link => {
                let target = h
                    .link_name_bytes()
                    .map(|b| PathBuf::from(OsStr::from_bytes(&b)))
                    .unwrap_or_default();
                let src = open_entry(dest, &target, false)?.ok_or_else(|| {
                    CopyError(format!("{shown}: link target {} missing", target.display()))
                })?;
                linkat(
                    src.as_fd(),
                    "",
                    parent.as_fd(),
                    name.as_os_str(),
                    AtFlags::AT_EMPTY_PATH,
                )
                .map_err(nx)?;
            }
            tar::EntryType::Fifo => {
                mknodat(parent.as_fd(), name.as_os_str(), SFlag::S_IFIFO, mode, 0).map_err(nx)?;
                chown_new(&parent, &name, uid, gid).map_err(nx)?;
            }
            _ => tracing::warn!("cp: {shown}: entry type not copied"),
        }
    }
    // Directory times last: their entries changed them.
    for (path, mtime) in dirs.iter().rev() {
        if let Ok(fd) = dest.resolve(path, Links::InRoot) {
            let t = nix::sys::time::TimeSpec::new(i64::try_from(*mtime).unwrap_or(0), 0);
            if let Ok(d) = std::fs::File::open(inroot::fd_path(&fd)) {
                let _ = nix::sys::stat::futimens(d.as_fd(), &t, &t);
            }
        }
    }
    Ok(())
}

/// Owns the entry `name` just made in `parent` (a symlink itself, not its
/// target).
fn chown_new(parent: &OwnedFd, name: &OsString, uid: u32, gid: u32) -> nix::Result<()> {
    fchownat(
        parent.as_fd(),
        name.as_os_str(),
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
}

fn chown_mode(p: &str, uid: u32, gid: u32, mode: Mode) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode.bits()))
}

/// Removes a non-directory at `name` so a new entry can take its place; a
/// directory there is an error.
fn make_room(parent: &OwnedFd, name: &OsString) -> nix::Result<()> {
    match nix::sys::stat::fstatat(
        parent.as_fd(),
        name.as_os_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => Err(Errno::EISDIR),
        Ok(_) => unlinkat(parent.as_fd(), name.as_os_str(), UnlinkatFlags::NoRemoveDir),
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A directory `path` inside `root` (symlinks followed inside the root),
/// opened as a root of its own for an extraction.
pub fn dir_root(root: &Root, path: &Path) -> Result<Root> {
    let fd = root
        .resolve_existing(path, Links::InRoot)
        .map_err(|e| CopyError(e.to_string()))?
        .ok_or_else(|| CopyError(format!("{}: no such directory", path.display())))?;
    let st = fstat(fd.as_fd()).map_err(|e| err(path.display(), e))?;
    if kind_of(&st) != Kind::Dir {
        return Err(CopyError(format!("{}: not a directory", path.display())));
    }
    Root::open(Path::new(&inroot::fd_path(&fd))).map_err(|e| CopyError(e.to_string()))
}

#[cfg(test)]
#[path = "copy_tests.rs"]
mod tests;
