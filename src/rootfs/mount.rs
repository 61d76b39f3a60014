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
mod tests {
    use super::*;
    use crate::runtime::sys::{Call, Recorder};
    use nix::errno::Errno;

    /// A bundle in a temp dir standing for the host's `/`: `rootfs/` with
    /// a few of the files masks and read-only paths name, and `data/`, a
    /// bind source.
    fn host() -> tempfile::TempDir {
        let base = tempfile::tempdir().unwrap();
        let r = base.path().join("rootfs");
        for d in ["proc/acpi", "proc/sys", "sys", "etc", "data/sub"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("proc/kcore"), b"").unwrap();
        std::fs::create_dir_all(base.path().join("data")).unwrap();
        std::fs::write(base.path().join("file"), b"x").unwrap();
        base
    }

    fn spec_at(base: &Path, json: serde_json::Value) -> Spec {
        let mut v = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": base.join("rootfs")},
            "process": {"cwd": "/", "args": ["true"], "user": {"uid": 0, "gid": 0}},
        });
        if let (Some(v), serde_json::Value::Object(more)) = (v.as_object_mut(), json) {
            v.extend(more);
        }
        serde_json::from_value(v).unwrap()
    }

    fn flags(f: MsFlags) -> String {
        let names: Vec<&str> = f
            .iter_names()
            .map(|(n, _)| n.trim_start_matches("MS_"))
            .collect();
        names.join("|")
    }

    /// One line per call, short enough to read a whole sequence in a test.
    fn line(c: &Call) -> String {
        let p = |p: &Path| p.display().to_string();
        match c {
            Call::Mount {
                source,
                target,
                fstype,
                flags: f,
                data,
            } => {
                let mut s = format!(
                    "mount {} {} {} {}",
                    source.as_deref().map(p).unwrap_or("-".into()),
                    p(target),
                    fstype.as_deref().unwrap_or("-"),
                    flags(*f)
                );
                if let Some(d) = data {
                    s += &format!(" {d}");
                }
                s
            }
            Call::Umount2 { target, .. } => format!("umount2 {}", p(target)),
            Call::PivotRoot { new_root, put_old } => {
                format!("pivot_root {} {}", p(new_root), p(put_old))
            }
            Call::Chdir(d) => format!("chdir {}", p(d)),
            Call::Chroot(d) => format!("chroot {}", p(d)),
            Call::Mknod {
                path, mode, dev, ..
            } => format!(
                "mknod {} {:o} {}:{}",
                p(path),
                mode.bits(),
                nix::sys::stat::major(*dev),
                nix::sys::stat::minor(*dev)
            ),
            Call::Chmod { path, mode } => format!("chmod {} {:o}", p(path), mode.bits()),
            Call::Symlink { target, link } => format!("symlink {} -> {}", p(link), p(target)),
            other => format!("{other:?}"),
        }
    }

    fn record(sys: &Recorder, spec: &Spec, switch: RootSwitch) -> Vec<String> {
        setup_container_rootfs(sys, spec, None, switch).unwrap();
        sys.calls()
            .iter()
            .map(line)
            // The /dev links are the same for every spec (asserted once).
            .filter(|l| !l.starts_with("symlink "))
            .collect()
    }

    const DEV_LINKS: &[&str] = &[
        "symlink /rootfs/dev/fd -> /proc/self/fd",
        "symlink /rootfs/dev/stdin -> /proc/self/fd/0",
        "symlink /rootfs/dev/stdout -> /proc/self/fd/1",
        "symlink /rootfs/dev/stderr -> /proc/self/fd/2",
        "symlink /rootfs/dev/ptmx -> pts/ptmx",
        "symlink /rootfs/dev/core -> /proc/kcore",
    ];

    #[test]
    fn default_minirt_spec_mounts_then_devices_then_pivot_then_masks() {
        let base = host();
        std::fs::write(base.path().join("hosts"), b"").unwrap();
        let etc = crate::container::spec::EtcFiles {
            hosts: base.path().join("hosts"),
            resolv_conf: base.path().join("hosts"),
            hostname: base.path().join("hosts"),
        };
        let cfg = crate::container::ContainerConfig {
            args: vec!["true".into()],
            ..Default::default()
        };
        let spec = crate::container::spec::build(
            &cfg,
            &base.path().join("rootfs"),
            Some(&etc),
            "/minirt/x",
        )
        .unwrap();
        let sys = Recorder::new(base.path());
        setup_container_rootfs(&sys, &spec, None, RootSwitch::Pivot).unwrap();
        let all: Vec<String> = sys.calls().iter().map(line).collect();
        let links: Vec<&str> = all
            .iter()
            .filter(|l| l.starts_with("symlink "))
            .map(String::as_str)
            .collect();
        assert_eq!(links, DEV_LINKS);
        let got: Vec<&str> = all
            .iter()
            .filter(|l| !l.starts_with("symlink "))
            .map(String::as_str)
            .collect();
        let want = [
            "mount - / - REC|PRIVATE",
            "mount /rootfs /rootfs - BIND|REC",
            "mount proc /rootfs/proc proc NOSUID|NODEV|NOEXEC",
            "mount tmpfs /rootfs/dev tmpfs NOSUID|STRICTATIME mode=755,size=65536k",
            "mount devpts /rootfs/dev/pts devpts NOSUID|NOEXEC newinstance,ptmxmode=0666,mode=0620,gid=5",
            "mount shm /rootfs/dev/shm tmpfs NOSUID|NODEV|NOEXEC mode=1777,size=65536k",
            "mount mqueue /rootfs/dev/mqueue mqueue NOSUID|NODEV|NOEXEC",
            "mount sysfs /rootfs/sys sysfs RDONLY|NOSUID|NODEV|NOEXEC",
            // rprivate under an rprivate `/`: no propagation call.
            "mount /hosts /rootfs/etc/hosts - BIND|REC",
            "mount /hosts /rootfs/etc/resolv.conf - BIND|REC",
            "mount /hosts /rootfs/etc/hostname - BIND|REC",
            "mknod /rootfs/dev/null 666 1:3",
            "chmod /rootfs/dev/null 666",
            "mknod /rootfs/dev/zero 666 1:5",
            "chmod /rootfs/dev/zero 666",
            "mknod /rootfs/dev/full 666 1:7",
            "chmod /rootfs/dev/full 666",
            "mknod /rootfs/dev/random 666 1:8",
            "chmod /rootfs/dev/random 666",
            "mknod /rootfs/dev/urandom 666 1:9",
            "chmod /rootfs/dev/urandom 666",
            "mknod /rootfs/dev/tty 666 5:0",
            "chmod /rootfs/dev/tty 666",
            "chdir /rootfs",
            "pivot_root . .",
            "umount2 .",
            "chdir /",
            // Masks and read-only paths after the pivot; those the root
            // lacks are skipped.
            "mount tmpfs /proc/acpi tmpfs RDONLY",
            "mount /dev/null /proc/kcore - BIND",
            "mount /proc/sys /proc/sys - BIND|REC",
            "mount - /proc/sys - RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT|BIND",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn binds_get_their_readonly_remount_and_propagation_right_after_them() {
        let base = host();
        let b = base.path();
        let spec = spec_at(
            b,
            serde_json::json!({
                "mounts": [
                    {"destination": "/data", "type": "bind", "source": b.join("data"),
                     "options": ["rbind", "rw", "rslave"]},
                    {"destination": "/ro", "type": "none", "source": b.join("data"),
                     "options": ["bind", "ro", "nosuid", "shared"]},
                    {"destination": "/etc/file", "type": "bind", "source": b.join("file"),
                     "options": ["bind", "ro"]},
                    {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                     "options": ["ro", "nodev", "size=1m", "private"]},
                ],
                "linux": {"rootfsPropagation": "rslave"},
            }),
        );
        let sys = Recorder::new(b);
        let got = record(&sys, &spec, RootSwitch::Pivot);
        assert_eq!(
            got,
            [
                "mount - / - REC|SLAVE",
                "mount /rootfs /rootfs - BIND|REC",
                "mount /data /rootfs/data - BIND|REC",
                "mount - /rootfs/data - REC|SLAVE",
                "mount /data /rootfs/ro - NOSUID|BIND",
                "mount - /rootfs/ro - RDONLY|NOSUID|REMOUNT|BIND",
                "mount - /rootfs/ro - SHARED",
                "mount /file /rootfs/etc/file - BIND",
                "mount - /rootfs/etc/file - RDONLY|REMOUNT|BIND",
                "mount tmpfs /rootfs/run tmpfs RDONLY|NODEV size=1m",
                "mount - /rootfs/run - PRIVATE",
                "chdir /rootfs",
                "pivot_root . .",
                "umount2 .",
                "chdir /",
            ]
        );
        // The file bind's target was made as a file, the others as directories.
        assert!(b.join("rootfs/etc/file").is_file());
        assert!(b.join("rootfs/ro").is_dir());
    }

    #[test]
    fn masks_and_readonly_paths_come_after_the_pivot_and_before_a_readonly_root() {
        let base = host();
        let b = base.path();
        let mut spec = spec_at(
            b,
            serde_json::json!({
                "linux": {
                    "maskedPaths": ["/proc/kcore", "/proc/acpi", "/proc/missing"],
                    "readonlyPaths": ["/proc/sys", "/proc/nothing"],
                },
            }),
        );
        if let Some(r) = spec.root_mut() {
            r.set_readonly(Some(true));
        }
        let sys = Recorder::new(b);
        let got = record(&sys, &spec, RootSwitch::Pivot);
        let after_pivot: Vec<&str> = got
            .iter()
            .skip_while(|l| *l != "chdir /")
            .skip(1)
            .map(String::as_str)
            .collect();
        let last = after_pivot.last().copied().unwrap_or_default();
        assert!(
            last.starts_with("mount - / - RDONLY") && last.ends_with("REMOUNT|BIND"),
            "{last}"
        );
        assert_eq!(
            &after_pivot[..after_pivot.len() - 1],
            [
                "mount /dev/null /proc/kcore - BIND",
                "mount tmpfs /proc/acpi tmpfs RDONLY",
                "mount /proc/sys /proc/sys - BIND|REC",
                "mount - /proc/sys - RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT|BIND",
            ]
        );
    }

    #[test]
    fn devices_are_made_in_place_or_bound_from_the_host_when_mknod_is_refused() {
        let base = host();
        let b = base.path();
        let spec = spec_at(
            b,
            serde_json::json!({
                "linux": {"devices": [
                    {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o620},
                    {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0},
                ]},
            }),
        );
        let sys = Recorder::new(b);
        let got = record(&sys, &spec, RootSwitch::Pivot);
        assert_eq!(
            got[2..6],
            [
                "mknod /rootfs/dev/fuse 620 10:229",
                "chmod /rootfs/dev/fuse 620",
                "mknod /rootfs/dev/sda 666 8:0",
                "chmod /rootfs/dev/sda 666",
            ]
        );
        let kinds: Vec<SFlag> = sys
            .calls()
            .iter()
            .filter_map(|c| match c {
                Call::Mknod { kind, .. } => Some(*kind),
                _ => None,
            })
            .collect();
        assert_eq!(kinds, [SFlag::S_IFCHR, SFlag::S_IFBLK]);

        // Where mknod is refused (a nodev mount, no CAP_MKNOD): an empty
        // file with the host's node bound over it.
        let base = host();
        let b = base.path();
        let spec = spec_at(
            b,
            serde_json::json!({
                "linux": {"devices": [
                    {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
                ]},
            }),
        );
        let sys = Recorder::new(b).failing(|c| match c {
            Call::Mknod { .. } => Some(Errno::EPERM),
            _ => None,
        });
        let got = record(&sys, &spec, RootSwitch::Pivot);
        assert_eq!(
            got[2..4],
            [
                "mknod /rootfs/dev/fuse 666 10:229",
                "mount /dev/fuse /rootfs/dev/fuse - BIND",
            ]
        );
        assert!(b.join("rootfs/dev/fuse").is_file());
    }

    #[test]
    fn no_pivot_moves_the_root_over_slash_and_chroots() {
        let base = host();
        let b = base.path();
        let spec = spec_at(
            b,
            serde_json::json!({"linux": {"maskedPaths": ["/proc/kcore"]}}),
        );
        let sys = Recorder::new(b);
        let got = record(&sys, &spec, RootSwitch::Move);
        assert_eq!(
            got,
            [
                "mount - / - REC|PRIVATE",
                "mount /rootfs /rootfs - BIND|REC",
                "chdir /rootfs",
                "mount /rootfs / - MOVE",
                "chroot .",
                "chdir /",
                // The mask lands inside the new root.
                "mount /dev/null /proc/kcore - BIND",
            ]
        );
    }

    #[test]
    fn a_failed_mount_stops_the_sequence_with_its_name() {
        let base = host();
        let b = base.path();
        let spec = spec_at(
            b,
            serde_json::json!({"mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs"},
            ]}),
        );
        let sys = Recorder::new(b).failing(|c| match c {
            Call::Mount {
                fstype: Some(t), ..
            } if t == "proc" => Some(Errno::EPERM),
            _ => None,
        });
        let e = setup_container_rootfs(&sys, &spec, None, RootSwitch::Pivot).unwrap_err();
        assert_eq!(
            e.to_string(),
            "mounting proc on /proc: EPERM: Operation not permitted"
        );
        assert!(!sys
            .calls()
            .iter()
            .any(|c| matches!(c, Call::PivotRoot { .. })));
    }

    #[test]
    fn propagation_options_and_the_root_propagation() {
        assert_eq!(
            propagation("rshared"),
            Some(MsFlags::MS_SHARED | MsFlags::MS_REC)
        );
        assert_eq!(propagation("slave"), Some(MsFlags::MS_SLAVE));
        assert_eq!(
            propagation("runbindable"),
            Some(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC)
        );
        for o in ["ro", "rw", "rbind", "relatime", "bind"] {
            assert_eq!(propagation(o), None, "{o}");
        }
        let base = host();
        let with = |p: &str| {
            spec_at(
                base.path(),
                serde_json::json!({"linux": {"rootfsPropagation": p}}),
            )
        };
        assert_eq!(root_propagation(&with("private")), Ok(MsFlags::MS_PRIVATE));
        let e = root_propagation(&with("rshared")).unwrap_err();
        assert!(
            e.starts_with("not implemented: linux.rootfsPropagation \"rshared\""),
            "{e}"
        );
    }

    #[test]
    fn base_layer_is_made_once_with_its_mount_points() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base-layer");
        ensure_base_layer(&base).unwrap();
        for d in BASE_DIRS {
            assert!(base.join(d).is_dir(), "{d}");
        }
        for f in BASE_FILES {
            assert_eq!(std::fs::read(base.join(f)).unwrap(), b"", "{f}");
        }
        // Again: nothing changes, and no build directory is left beside it.
        let before = std::fs::metadata(base.join("etc/hosts"))
            .unwrap()
            .modified()
            .unwrap();
        ensure_base_layer(&base).unwrap();
        let after = std::fs::metadata(base.join("etc/hosts"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(before, after);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("base-layer")]);
    }

    #[test]
    fn system_mount_points_refuse_links_and_volumes_follow_them_inside() {
        for (dest, typ) in [
            ("/proc", "proc"),
            ("/sys", "sysfs"),
            ("/dev", "tmpfs"),
            ("/dev/pts", "devpts"),
            ("/dev/shm", "tmpfs"),
            ("/dev/mqueue", "mqueue"),
            ("/dev/snd", "bind"),
            ("/x/../proc/sys", "bind"),
            ("/anywhere", "proc"),
        ] {
            assert_eq!(links_for(Path::new(dest), typ), Links::Refuse, "{dest}");
        }
        for (dest, typ) in [
            ("/etc/hosts", "bind"),
            ("/data", "bind"),
            ("/devices", "bind"),
            ("/run", "tmpfs"),
        ] {
            assert_eq!(links_for(Path::new(dest), typ), Links::InRoot, "{dest}");
        }
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = ["nosuid", "noexec", "mode=755", "size=65536k", "ro"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (flags, data, ro) = parse_options(&opts);
        assert!(flags.contains(MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC));
        assert_eq!(data, vec!["mode=755", "size=65536k"]);
        assert!(ro);
    }
}
