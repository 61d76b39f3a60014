//! The container's root filesystem. Host side: the directories of the
//! overlay of image layers plus a per-container upper dir. Child side (runs
//! in the new mount namespace): the overlay itself, the Spec's mounts and
//! devices, pivot_root, masked paths.

use super::inroot::{self, InRootError, Links, Root};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use oci_spec::runtime::{LinuxDeviceType, Spec};
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
    pub fn make_dirs(&self) -> Result<()> {
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
    pub fn mount(&self) -> Result<()> {
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
            if mount(
                Some("overlay"),
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
        mount(
            Some("overlay"),
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
pub const BASE_DIRS: &[&str] = &["proc", "sys", "dev", "etc"];
pub const BASE_FILES: &[&str] = &["etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// The base layer at `dir`, made once (built aside, then renamed into
/// place, so concurrent first runs agree).
pub fn ensure_base_layer(dir: &Path) -> Result<()> {
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

/// Makes the directories and mounts `overlay` in the caller's namespace.
pub fn mount_overlay(overlay: &Overlay) -> Result<()> {
    overlay.make_dirs()?;
    overlay.mount()
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
pub fn links_for(dest: &Path, typ: &str) -> Links {
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
pub fn parse_options(options: &[String]) -> (MsFlags, Vec<String>, bool) {
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
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, data, readonly)
}

/// Child side: everything between "a new mount namespace" and "pivot_root
/// done, /proc masked". Runs inside the container's mount namespace. Every
/// path inside the root is resolved by the kernel inside it (see inroot).
pub fn setup_container_rootfs(spec: &Spec, overlay: Option<&Overlay>) -> Result<()> {
    let root_path = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .ok_or_else(|| RootfsError::Mount("spec has no root".into()))?;

    // Nothing we mount may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| fail("making / private", e))?;
    if let Some(o) = overlay {
        o.mount()?;
    }
    mount(
        Some(&root_path),
        &root_path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| fail("binding the rootfs", e))?;
    // Opened after the bind: the descriptor is the top of the root's mounts.
    let root = Root::open(&root_path).map_err(in_root)?;

    for m in spec.mounts().as_deref().unwrap_or_default() {
        mount_one(&root, m)?;
    }
    if let Some(linux) = spec.linux() {
        for d in linux.devices().as_deref().unwrap_or_default() {
            make_device(&root, d)?;
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
        let _ = nix::unistd::symlinkat(target, dev.as_fd(), link);
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

    pivot_into(&root_path)?;

    // From here "/" is the container's root; the walks stay in it and never
    // take a /proc magic link.
    let root = Root::open(Path::new("/")).map_err(in_root)?;
    if let Some(linux) = spec.linux() {
        for p in linux.masked_paths().as_deref().unwrap_or_default() {
            mask_path(&root, Path::new(p))?;
        }
        for p in linux.readonly_paths().as_deref().unwrap_or_default() {
            readonly_path(&root, Path::new(p))?;
        }
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        readonly_root()?;
    }
    Ok(())
}

fn in_root(e: InRootError) -> RootfsError {
    RootfsError::Mount(e.to_string())
}

/// A device node of the spec, made with mknodat in its resolved parent
/// (never through a symlink), or the host's node bound over an empty file
/// where mknod is refused.
fn make_device(root: &Root, d: &oci_spec::runtime::LinuxDevice) -> Result<()> {
    let links = Links::Refuse;
    let (dir, name) = root.parent_of(d.path(), links).map_err(in_root)?;
    let kind = match d.typ() {
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    let mode = Mode::from_bits_truncate(d.file_mode().unwrap_or(0o666));
    let dev = makedev(d.major() as u64, d.minor() as u64);
    if mknodat(dir.as_fd(), name.as_os_str(), kind, mode, dev).is_ok() {
        // mknod honours the umask: set the mode the spec asked for, on the
        // node just made in `dir` (a node, so following it goes nowhere).
        let _ = nix::sys::stat::fchmodat(
            dir.as_fd(),
            name.as_os_str(),
            mode,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        );
        return Ok(());
    }
    // mknod may be refused (e.g. nodev); bind the host's node instead.
    let target = root.create_file(d.path(), links).map_err(in_root)?;
    mount(
        Some(d.path()),
        inroot::fd_path(&target).as_str(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| fail(format!("device {}", d.path().display()), e))
}

/// `--read-only`: only the root mount itself turns read-only; /dev, /proc, /sys, /dev/shm and
/// the volumes are mounts of their own and keep their modes (as in Docker). The flags the
/// mount already has are kept: a remount without them would be refused if they are locked.
fn readonly_root() -> Result<()> {
    let current = nix::sys::statvfs::statvfs("/").map_err(|e| fail("statfs /", e))?;
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
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
        .map_err(|e| fail("remounting / read-only", e))
}

fn mount_one(root: &Root, m: &oci_spec::runtime::Mount) -> Result<()> {
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
        return crate::runtime::mounts::mount_cgroup(&host, flags, readonly)
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
        mount(
            Some(&source),
            inroot::fd_path(&target).as_str(),
            None::<&str>,
            flags,
            None::<&str>,
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
            mount(
                None::<&str>,
                inroot::fd_path(&top).as_str(),
                None::<&str>,
                ro,
                None::<&str>,
            )
            .map_err(|e| fail(format!("read-only {}", dest.display()), e))?;
        }
        return Ok(());
    }
    let target = root.mkdir_all(dest, links).map_err(in_root)?;
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    let data = data.join(",");
    mount(
        Some(&source),
        inroot::fd_path(&target).as_str(),
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
fn pivot_into(root: &Path) -> Result<()> {
    nix::unistd::chdir(root).map_err(|e| fail("chdir to rootfs", e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| fail("pivot_root", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| fail("detaching the old root", e))?;
    nix::unistd::chdir("/").map_err(|e| fail("chdir /", e))?;
    Ok(())
}

fn mask_path(root: &Root, p: &Path) -> Result<()> {
    let Some(fd) = root.resolve_existing(p, Links::InRoot).map_err(in_root)? else {
        return Ok(());
    };
    let at = inroot::fd_path(&fd);
    let is_dir = std::fs::metadata(&at).map(|m| m.is_dir()).unwrap_or(false);
    let res = if is_dir {
        mount(
            Some("tmpfs"),
            at.as_str(),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            at.as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    res.map_err(|e| fail(format!("masking {}", p.display()), e))
}

fn readonly_path(root: &Root, p: &Path) -> Result<()> {
    let Some(fd) = root.resolve_existing(p, Links::InRoot).map_err(in_root)? else {
        return Ok(());
    };
    let at = inroot::fd_path(&fd);
    mount(
        Some(at.as_str()),
        at.as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| fail(format!("binding {}", p.display()), e))?;
    // `fd` is what lies under the new bind: resolve again to reach it.
    let top = root.resolve(p, Links::InRoot).map_err(in_root)?;
    mount(
        None::<&str>,
        inroot::fd_path(&top).as_str(),
        None::<&str>,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| fail(format!("read-only {}", p.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

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
