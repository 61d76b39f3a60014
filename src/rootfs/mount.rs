//! The container's root filesystem. Host side: the directories of the
//! overlay of image layers plus a per-container upper dir. Child side (runs
//! in the new mount namespace): the overlay itself, the Spec's mounts and
//! devices, pivot_root, masked paths.

use super::inroot::{self, InRootError, Links, Root};
use crate::runtime::sys::Sys;
use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, Mode, SFlag};
use oci_spec::runtime::{LinuxDeviceType, Spec};
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{0}")]
    Mount(String),
}

type Result<T> = std::result::Result<T, RootfsError>;

fn fail(what: impl std::fmt::Display, e: impl std::fmt::Display) -> RootfsError {
    RootfsError::Mount(format!("{what}: {e}"))
}

/// A container's root filesystem before it is mounted: an overlay of the
/// image layers `lowers` (bottom layer first) with `upper`/`work`, at
/// `target`. `volatile` (for containers whose upper dir is thrown away at
/// exit, `--rm`) skips the syncs overlayfs does on unmount; kernels without
/// it get a plain overlay.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub target: PathBuf,
    pub volatile: bool,
}

impl Overlay {
    /// Host side: the directories the mount needs.
    pub(crate) fn make_dirs(&self) -> Result<()> {
        for d in [&self.upper, &self.work, &self.target] {
            std::fs::create_dir_all(d).map_err(|e| fail(format!("creating {}", d.display()), e))?;
        }
        if self.lowers.is_empty() {
            return Err(RootfsError::Mount("image has no layers".into()));
        }
        Ok(())
    }

    /// Mounts it, in the caller's mount namespace. The run path does this in
    /// the container's own namespace, so the host's mount table does not
    /// grow with every running container (each new mount namespace copies
    /// the whole table, and pivot_root detaches it again).
    pub fn mount(&self, sys: &impl Sys) -> Result<()> {
        // overlayfs wants the top-most lower dir first.
        let lower: Vec<String> = self
            .lowers
            .iter()
            .rev()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            self.upper.display(),
            self.work.display()
        );
        let target = &self.target;
        if self.volatile {
            let fast = format!("{data},volatile");
            let flags = MsFlags::empty();
            if sys
                .mount(
                    Some(Path::new("overlay")),
                    target,
                    Some("overlay"),
                    flags,
                    Some(fast.as_str()),
                )
                .is_ok()
            {
                return Ok(());
            }
        }
        sys.mount(
            Some(Path::new("overlay")),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| fail(format!("mounting overlay at {}", target.display()), e))
    }
}

/// Mount points every container needs, shipped in a read-only layer under
/// all image layers: `/proc`, `/sys`, `/dev` and the `/etc` files the
/// runtime binds over. Without it, an image that lacks them (busybox lacks
/// the /etc files) gets them created in each container's upper directory at
/// every start: a copy-up of /etc and new inodes on disk, per container.
/// What an image does have hides these, as any upper layer would.
pub(crate) const BASE_DIRS: &[&str] = &["proc", "sys", "dev", "etc"];
pub(crate) const BASE_FILES: &[&str] = &["etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// The base layer at `dir`, made once (built aside, then renamed into
/// place, so concurrent first runs agree).
pub(crate) fn ensure_base_layer(dir: &Path) -> Result<()> {
    if dir.join(BASE_FILES[BASE_FILES.len() - 1]).exists() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let tmp = parent.join(format!(
        ".base-layer-{}-{}",
        std::process::id(),
        crate::util::new_id().get(..8).unwrap_or("0")
    ));
    let build = || -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        for d in BASE_DIRS {
            std::fs::create_dir_all(tmp.join(d))?;
            std::fs::set_permissions(tmp.join(d), std::fs::Permissions::from_mode(0o755))?;
        }
        for f in BASE_FILES {
            std::fs::write(tmp.join(f), b"")?;
            std::fs::set_permissions(tmp.join(f), std::fs::Permissions::from_mode(0o644))?;
        }
        match std::fs::rename(&tmp, dir) {
            Ok(()) => Ok(()),
            // Another run made it first.
            Err(_) if dir.join(BASE_FILES[BASE_FILES.len() - 1]).exists() => {
                std::fs::remove_dir_all(&tmp)
            }
            Err(e) => Err(e),
        }
    };
    build().map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        fail(format!("making the base layer {}", dir.display()), e)
    })
}

/// Unmounts `target` if it is mounted (lazily, so a busy mount cannot wedge
/// teardown); a target that is not a mount point is fine.
pub fn unmount(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(fail(format!("unmounting {}", target.display()), e)),
    }
}

/// Whether a mount at `dest` of type `typ` needs plain directories all the
/// way, symlinks refused (as runc does for proc and sysfs): the kernel's own
/// filesystems, and anything in /dev, /proc or /sys. An image that makes
/// /proc a link to `/` must not get procfs over its whole root; everything
/// else (volumes, /etc files) follows links inside the root, as Docker does.
pub(crate) fn links_for(dest: &Path, typ: &str) -> Links {
    let system = matches!(
        typ,
        "proc" | "sysfs" | "devpts" | "mqueue" | "cgroup" | "cgroup2"
    );
    let cleaned: PathBuf = std::iter::once(std::ffi::OsString::from("/"))
        .chain(inroot::clean(dest))
        .collect();
    let under = |top: &str| cleaned.starts_with(top);
    if system || under("/dev") || under("/proc") || under("/sys") {
        Links::Refuse
    } else {
        Links::InRoot
    }
}

/// Splits fstab-style options into mount flags and filesystem data.
pub(crate) fn parse_options(options: &[String]) -> (MsFlags, Vec<String>, bool) {
    let mut flags = MsFlags::empty();
    let mut data = vec![];
    let mut readonly = false;
    for o in options {
        match o.as_str() {
            "ro" => readonly = true,
            "rw" => {}
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            o if propagation(o).is_some() => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, data, readonly)
}

/// How the container's root becomes the process's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootSwitch {
    /// pivot_root, then the old root detached (the default).
    Pivot,
    /// `--no-pivot` (runc's, for a root on a ramfs where pivot_root is
    /// refused): the root moved over `/` with MS_MOVE, then chroot.
    Move,
}

/// The propagation a mount option names ("rshared", "private"...), if any.
pub(crate) fn propagation(option: &str) -> Option<MsFlags> {
    let (rec, name) = match option.strip_prefix('r') {
        Some(rest) => (MsFlags::MS_REC, rest),
        None => (MsFlags::empty(), option),
    };
    let kind = match name {
        "private" => MsFlags::MS_PRIVATE,
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        _ => return None,
    };
    Some(kind | rec)
}

/// What `/` becomes in the container's mount namespace before anything is
/// mounted: `linux.rootfsPropagation` when given (private or slave: a
/// shared root would send the container's mounts to the host, and
/// pivot_root refuses it), else recursively private.
pub(crate) fn root_propagation(spec: &Spec) -> std::result::Result<MsFlags, String> {
    let asked = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
        .filter(|p| !p.is_empty());
    match asked.as_deref() {
        None => Ok(MsFlags::MS_REC | MsFlags::MS_PRIVATE),
        Some(p) => match propagation(p) {
            Some(f) if f.intersects(MsFlags::MS_PRIVATE | MsFlags::MS_SLAVE) => Ok(f),
            _ => Err(format!(
                "not implemented: linux.rootfsPropagation {p:?} (private, rprivate, slave and rslave are)"
            )),
        },
    }
}

/// Child side: everything between "a new mount namespace" and "pivot_root
/// done, /proc masked". Runs inside the container's mount namespace. Every
/// path inside the root is resolved by the kernel inside it (see inroot).
/// The order: / private, overlay, root bind, the spec's mounts (each bind's
/// read-only remount right after it), devices, /dev links, cwd, the switch
/// of root, then masked paths, read-only paths and a read-only root.
#[cfg(test)]
pub(crate) fn setup_container_rootfs(
    sys: &impl Sys,
    spec: &Spec,
    overlay: Option<&Overlay>,
    switch: RootSwitch,
) -> Result<()> {
    prepare_rootfs(sys, spec, overlay)?;
    switch_root(sys, spec, switch)
}

fn root_path(spec: &Spec) -> Result<PathBuf> {
    spec.root()
        .as_ref()
        .map(|r| r.path().clone())
        .ok_or_else(|| RootfsError::Mount("spec has no root".into()))
}

/// The first half of `setup_container_rootfs`: everything before the root
/// switch (where the OCI createRuntime and createContainer hooks run).
pub(crate) fn prepare_rootfs(sys: &impl Sys, spec: &Spec, overlay: Option<&Overlay>) -> Result<()> {
    let root_path = root_path(spec)?;

    // Nothing we mount may propagate back to the host.
    let root_prop = root_propagation(spec).map_err(RootfsError::Mount)?;
    sys.mount(None, Path::new("/"), None, root_prop, None)
        .map_err(|e| fail("making / private", e))?;
    if let Some(o) = overlay {
        o.mount(sys)?;
    }
    sys.mount(
        Some(&root_path),
        &root_path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| fail("binding the rootfs", e))?;
    // Opened after the bind: the descriptor is the top of the root's mounts.
    let root = sys.open_root(&root_path).map_err(in_root)?;

    for m in spec.mounts().as_deref().unwrap_or_default() {
        mount_one(sys, &root, m, root_prop)?;
    }
    if let Some(linux) = spec.linux() {
        for d in linux.devices().as_deref().unwrap_or_default() {
            make_device(sys, &root, d)?;
        }
    }
    let dev = root
        .mkdir_all(Path::new("/dev"), Links::Refuse)
        .map_err(in_root)?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        // An image or a spec device may have it already.
        let _ = sys.symlinkat(Path::new(target), dev.as_fd(), OsStr::new(link));
    }
    drop(dev);
    // Docker makes a missing working directory; inside the root, like the rest.
    if let Some(p) = spec.process() {
        if !p.cwd().as_os_str().is_empty() {
            root.mkdir_all(p.cwd(), Links::InRoot)
                .map_err(|e| fail("the working directory", e))?;
        }
    }
    drop(root);
    Ok(())
}

/// The second half: the root switch, then masked paths, read-only paths
/// and a read-only root.
pub(crate) fn switch_root(sys: &impl Sys, spec: &Spec, switch: RootSwitch) -> Result<()> {
    let root_path = root_path(spec)?;
    match switch {
        RootSwitch::Pivot => pivot_into(sys, &root_path)?,
        RootSwitch::Move => move_into(sys, &root_path)?,
    }

    // From here "/" is the container's root; the walks stay in it and never
    // take a /proc magic link.
    let root = sys.open_root(Path::new("/")).map_err(in_root)?;
    if let Some(linux) = spec.linux() {
        for p in linux.masked_paths().as_deref().unwrap_or_default() {
            mask_path(sys, &root, Path::new(p))?;
        }
        for p in linux.readonly_paths().as_deref().unwrap_or_default() {
            readonly_path(sys, &root, Path::new(p))?;
        }
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        readonly_root(sys, &root)?;
    }
    Ok(())
}

fn in_root(e: InRootError) -> RootfsError {
    RootfsError::Mount(e.to_string())
}

/// A device node of the spec, made with mknodat in its resolved parent
/// (never through a symlink), or the host's node bound over an empty file
/// where mknod is refused.
fn make_device(sys: &impl Sys, root: &Root, d: &oci_spec::runtime::LinuxDevice) -> Result<()> {
    let links = Links::Refuse;
    let (dir, name) = root.parent_of(d.path(), links).map_err(in_root)?;
    let kind = match d.typ() {
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    let mode = Mode::from_bits_truncate(d.file_mode().unwrap_or(0o666));
    let dev = makedev(d.major() as u64, d.minor() as u64);
    if sys
        .mknodat(dir.as_fd(), name.as_os_str(), kind, mode, dev)
        .is_ok()
    {
        // mknod honours the umask: set the mode the spec asked for, on the
        // node just made in `dir` (a node, so following it goes nowhere).
        let _ = sys.fchmodat(dir.as_fd(), name.as_os_str(), mode);
        return Ok(());
    }
    // mknod may be refused (e.g. nodev); bind the host's node instead.
    let target = root.create_file(d.path(), links).map_err(in_root)?;
    sys.mount(
        Some(d.path()),
        Path::new(&inroot::fd_path(&target)),
        None,
        MsFlags::MS_BIND,
        None,
    )
    .map_err(|e| fail(format!("device {}", d.path().display()), e))
}

/// `--read-only`: only the root mount itself turns read-only; /dev, /proc, /sys, /dev/shm and
/// the volumes are mounts of their own and keep their modes (as in Docker). The flags the
/// mount already has are kept: a remount without them would be refused if they are locked.
fn readonly_root(sys: &impl Sys, root: &Root) -> Result<()> {
    let top = root
        .resolve(Path::new("/"), Links::InRoot)
        .map_err(in_root)?;
    let current = nix::sys::statvfs::fstatvfs(&top).map_err(|e| fail("statfs /", e))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    for (vfs, ms) in [
        (nix::sys::statvfs::FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (nix::sys::statvfs::FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (nix::sys::statvfs::FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if current.flags().contains(vfs) {
            flags |= ms;
        }
    }
    sys.mount(None, Path::new("/"), None, flags, None)
        .map_err(|e| fail("remounting / read-only", e))
}

/// One mount of the spec, then the propagation its options name (runc's
/// order: the mount, its read-only remount, its propagation). A private
/// one under a recursively private `/` is what the mount is already.
fn mount_one(
    sys: &impl Sys,
    root: &Root,
    m: &oci_spec::runtime::Mount,
    root_prop: MsFlags,
) -> Result<()> {
    mount_plain(sys, root, m)?;
    let options = m.options().as_deref().unwrap_or_default();
    let Some(prop) = options.iter().rev().find_map(|o| propagation(o)) else {
        return Ok(());
    };
    let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
    if root_prop == private && (prop - MsFlags::MS_REC) == MsFlags::MS_PRIVATE {
        return Ok(());
    }
    let dest = m.destination();
    let typ = m.typ().clone().unwrap_or_default();
    let top = root.resolve(dest, links_for(dest, &typ)).map_err(in_root)?;
    sys.mount(None, Path::new(&inroot::fd_path(&top)), None, prop, None)
        .map_err(|e| fail(format!("propagation of {}", dest.display()), e))
}

fn mount_plain(sys: &impl Sys, root: &Root, m: &oci_spec::runtime::Mount) -> Result<()> {
    let dest = m.destination();
    let typ = m.typ().clone().unwrap_or_default();
    let source = m.source().clone().unwrap_or_default();
    let (mut flags, data, readonly) = parse_options(m.options().as_deref().unwrap_or_default());
    let links = links_for(dest, &typ);
    if typ == "cgroup" {
        // Resolved inside the root with no symlink on the way; the cgroup
        // mount then works on the directory's own path (it mounts a tmpfs
        // there and binds hierarchies below it, which a descriptor of the
        // covered directory cannot reach).
        let target = root.mkdir_all(dest, Links::Refuse).map_err(in_root)?;
        let host = std::fs::read_link(inroot::fd_path(&target))
            .map_err(|e| fail(format!("resolving {}", dest.display()), e))?;
        return crate::runtime::mounts::mount_cgroup(sys, &host, flags, readonly)
            .map_err(RootfsError::Mount);
    }
    let is_bind = typ == "bind" || flags.contains(MsFlags::MS_BIND);
    if is_bind {
        flags |= MsFlags::MS_BIND;
        let meta = std::fs::metadata(&source)
            .map_err(|e| fail(format!("bind source {}", source.display()), e))?;
        let target = if meta.is_dir() {
            root.mkdir_all(dest, links)
        } else {
            root.create_file(dest, links)
        }
        .map_err(in_root)?;
        sys.mount(
            Some(&source),
            Path::new(&inroot::fd_path(&target)),
            None,
            flags,
            None,
        )
        .map_err(|e| {
            fail(
                format!("bind mounting {} on {}", source.display(), dest.display()),
                e,
            )
        })?;
        if readonly {
            // `target` is what lies under the new mount: resolve again to
            // reach the mount itself.
            let top = root.resolve(dest, links).map_err(in_root)?;
            let ro = MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | (flags & !MsFlags::MS_REC);
            sys.mount(None, Path::new(&inroot::fd_path(&top)), None, ro, None)
                .map_err(|e| fail(format!("read-only {}", dest.display()), e))?;
        }
        return Ok(());
    }
    let target = root.mkdir_all(dest, links).map_err(in_root)?;
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    let data = data.join(",");
    sys.mount(
        Some(&source),
        Path::new(&inroot::fd_path(&target)),
        Some(typ.as_str()),
        flags,
        if data.is_empty() {
            None
        } else {
            Some(data.as_str())
        },
    )
    .map_err(|e| fail(format!("mounting {typ} on {}", dest.display()), e))
}

/// pivot_root(".", ".") then detach the old root: no temporary dir needed.
fn pivot_into(sys: &impl Sys, root: &Path) -> Result<()> {
    sys.chdir(root).map_err(|e| fail("chdir to rootfs", e))?;
    sys.pivot_root(Path::new("."), Path::new("."))
        .map_err(|e| fail("pivot_root", e))?;
    sys.umount2(Path::new("."), MntFlags::MNT_DETACH)
        .map_err(|e| fail("detaching the old root", e))?;
    sys.chdir(Path::new("/")).map_err(|e| fail("chdir /", e))?;
    Ok(())
}

/// The root moved over `/` and chroot into it: the host's mounts stay
/// below, reachable only by a process that escapes the chroot (the caller
/// asked for this with --no-pivot).
fn move_into(sys: &impl Sys, root: &Path) -> Result<()> {
    sys.chdir(root).map_err(|e| fail("chdir to rootfs", e))?;
    sys.mount(Some(root), Path::new("/"), None, MsFlags::MS_MOVE, None)
        .map_err(|e| fail("moving the rootfs over /", e))?;
    sys.chroot(Path::new(".")).map_err(|e| fail("chroot", e))?;
    sys.chdir(Path::new("/")).map_err(|e| fail("chdir /", e))?;
    Ok(())
}

fn mask_path(sys: &impl Sys, root: &Root, p: &Path) -> Result<()> {
    let Some(fd) = root.resolve_existing(p, Links::InRoot).map_err(in_root)? else {
        return Ok(());
    };
    let at = inroot::fd_path(&fd);
    let is_dir = std::fs::metadata(&at).map(|m| m.is_dir()).unwrap_or(false);
    let res = if is_dir {
        sys.mount(
            Some(Path::new("tmpfs")),
            Path::new(&at),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        )
    } else {
        sys.mount(
            Some(Path::new("/dev/null")),
            Path::new(&at),
            None,
            MsFlags::MS_BIND,
            None,
        )
    };
    res.map_err(|e| fail(format!("masking {}", p.display()), e))
}

fn readonly_path(sys: &impl Sys, root: &Root, p: &Path) -> Result<()> {
    let Some(fd) = root.resolve_existing(p, Links::InRoot).map_err(in_root)? else {
        return Ok(());
    };
    let at = inroot::fd_path(&fd);
    sys.mount(
        Some(Path::new(&at)),
        Path::new(&at),
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| fail(format!("binding {}", p.display()), e))?;
    // `fd` is what lies under the new bind: resolve again to reach it.
    let top = root.resolve(p, Links::InRoot).map_err(in_root)?;
    sys.mount(
        None,
        Path::new(&inroot::fd_path(&top)),
        None,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None,
    )
    .map_err(|e| fail(format!("read-only {}", p.display()), e))
}

#[cfg(test)]
#[path = "mount_tests.rs"]
mod tests;
