//! Paths inside a container's root filesystem, resolved by the kernel as if
//! that root were `/` (openat2 with RESOLVE_IN_ROOT), and the descriptors
//! they resolve to. Whatever minirt makes, writes or mounts on inside a root
//! goes through here, so a symlink in an image (absolute, or `../../..`)
//! can never lead it to a path outside the root: mounts land on
//! `/proc/self/fd/N` of the descriptor, new entries are made with the `*at`
//! calls relative to a resolved parent.

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, mknodat, Mode, SFlag};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// How symlinks met on the way are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Followed, but never out of the root: an absolute target starts at the
    /// root, `..` stops at it (what Docker does for volumes and /etc files).
    InRoot,
    /// Refused: the path must be plain directories all the way (the
    /// kernel's own filesystems, /proc, /sys, /dev, are mounted only there).
    Refuse,
}

/// Why a path could not be resolved or made; the message names the path as
/// the container sees it.
#[derive(Debug, thiserror::Error)]
#[error("{path} in the container's root {why}")]
pub struct InRootError {
    path: String,
    why: String,
}

type Result<T> = std::result::Result<T, InRootError>;

/// The components of `path` with `.` dropped and `..` applied lexically,
/// stopping at the root (the destination as the user wrote it; symlinks are
/// the kernel's business afterwards). Only normal names remain.
pub fn clean(path: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// `comps` as a relative path ("." for the root itself).
fn relative(comps: &[OsString]) -> PathBuf {
    if comps.is_empty() {
        return PathBuf::from(".");
    }
    comps.iter().collect()
}

fn shown(comps: &[OsString]) -> String {
    let p: PathBuf = std::iter::once(OsStr::new("/"))
        .chain(comps.iter().map(OsString::as_os_str))
        .collect();
    format!("{:?}", p.display().to_string())
}

/// The path a mount call (or any path-taking call) can use to reach exactly
/// the object behind `fd`, whatever its name.
pub(crate) fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// A directory that stands for `/` in every lookup made through it.
pub struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Opens `dir` (a path of the caller's, trusted) as a root.
    pub fn open(dir: &Path) -> Result<Root> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| InRootError {
            path: format!("{:?}", dir.display().to_string()),
            why: format!("cannot be opened: {}", e.desc()),
        })?;
        Ok(Root { fd })
    }

    /// One openat2 of `comps` below the root. RESOLVE_NO_MAGICLINKS keeps
    /// /proc/PID/root and /proc/PID/fd/N (which point anywhere) out of every
    /// walk; EAGAIN (a concurrent rename seen during `..`) is retried.
    fn open_at(&self, comps: &[OsString], flags: OFlag, links: Links) -> nix::Result<OwnedFd> {
        let resolve = match links {
            Links::InRoot => ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            Links::Refuse => {
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS
            }
        };
        let path = relative(comps);
        let mut tries = 0;
        loop {
            let how = OpenHow::new()
                .flags(flags | OFlag::O_PATH | OFlag::O_CLOEXEC)
                .resolve(resolve);
            match openat2(self.fd.as_fd(), &path, how) {
                Err(Errno::EAGAIN) if tries < 16 => tries += 1,
                other => return other,
            }
        }
    }

    fn error(comps: &[OsString], links: Links, e: Errno) -> InRootError {
        let why = match e {
            Errno::ELOOP if links == Links::Refuse => {
                "is a symlink or passes through one: refused here".to_string()
            }
            Errno::ELOOP => "resolves through too many symlinks or a /proc magic link".to_string(),
            Errno::ENOTDIR => "is not a directory".to_string(),
            Errno::EXDEV => "points outside the root".to_string(),
            e => e.desc().to_string(),
        };
        InRootError {
            path: shown(comps),
            why,
        }
    }

    /// An O_PATH descriptor of `path` (an existing file or directory).
    pub fn resolve(&self, path: &Path, links: Links) -> Result<OwnedFd> {
        let comps = clean(path);
        self.open_at(&comps, OFlag::empty(), links)
            .map_err(|e| Self::error(&comps, links, e))
    }

    /// Like `resolve`, but Ok(None) when nothing is there.
    pub(crate) fn resolve_existing(&self, path: &Path, links: Links) -> Result<Option<OwnedFd>> {
        let comps = clean(path);
        match self.open_at(&comps, OFlag::empty(), links) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(Self::error(&comps, links, e)),
        }
    }

    /// `mkdir -p` of `path` inside the root; the directory's descriptor.
    pub(crate) fn mkdir_all(&self, path: &Path, links: Links) -> Result<OwnedFd> {
        self.mkdir_comps(&clean(path), links)
    }

    fn mkdir_comps(&self, comps: &[OsString], links: Links) -> Result<OwnedFd> {
        // Nearly always there already (the base layer has the standard
        // directories): one syscall.
        match self.open_at(comps, OFlag::O_DIRECTORY, links) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(Self::error(comps, links, e)),
        }
        let mut dir = self
            .open_at(&[], OFlag::O_DIRECTORY, links)
            .map_err(|e| Self::error(&[], links, e))?;
        for i in 0..comps.len() {
            let prefix = &comps[..=i];
            dir = match self.open_at(prefix, OFlag::O_DIRECTORY, links) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    // `dir` is the resolved parent: the name is made there
                    // and nowhere else (mkdirat never follows a last symlink).
                    match mkdirat(
                        dir.as_fd(),
                        comps[i].as_os_str(),
                        Mode::from_bits_truncate(0o755),
                    ) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(Self::error(prefix, links, e)),
                    }
                    self.open_at(prefix, OFlag::O_DIRECTORY, links)
                        .map_err(|e| match e {
                            // The name exists but leads nowhere: a dangling symlink.
                            Errno::ENOENT => InRootError {
                                path: shown(prefix),
                                why: "is a symlink to a missing path".into(),
                            },
                            e => Self::error(prefix, links, e),
                        })?
                }
                Err(e) => return Err(Self::error(prefix, links, e)),
            };
        }
        Ok(dir)
    }

    /// The descriptor of file `path`, made empty (mode 0644) when missing,
    /// with its parent directories.
    pub(crate) fn create_file(&self, path: &Path, links: Links) -> Result<OwnedFd> {
        let comps = clean(path);
        match self.open_at(&comps, OFlag::empty(), links) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(Self::error(&comps, links, e)),
        }
        let Some((name, parent)) = comps.split_last() else {
            return Err(Self::error(&comps, links, Errno::EISDIR));
        };
        let dir = self.mkdir_comps(parent, links)?;
        match mknodat(
            dir.as_fd(),
            name.as_os_str(),
            SFlag::S_IFREG,
            Mode::from_bits_truncate(0o644),
            0,
        ) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(Self::error(&comps, links, e)),
        }
        self.open_at(&comps, OFlag::empty(), links)
            .map_err(|e| match e {
                Errno::ENOENT => InRootError {
                    path: shown(&comps),
                    why: "is a symlink to a missing path".into(),
                },
                e => Self::error(&comps, links, e),
            })
    }

    /// The parent directory of `path` (made when missing) and the last name,
    /// for the `*at` calls that make an entry (mknodat, symlinkat).
    pub fn parent_of(&self, path: &Path, links: Links) -> Result<(OwnedFd, OsString)> {
        let comps = clean(path);
        let Some((name, parent)) = comps.split_last() else {
            return Err(Self::error(&comps, links, Errno::EEXIST));
        };
        Ok((self.mkdir_comps(parent, links)?, name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Where `fd` leads, as the host names it.
    fn target(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(fd_path(fd)).unwrap()
    }

    #[test]
    fn clean_applies_dots_lexically_and_stops_at_the_root() {
        let names = |p: &str| -> Vec<String> {
            clean(Path::new(p))
                .into_iter()
                .map(|s| s.into_string().unwrap())
                .collect()
        };
        assert_eq!(names("/etc/hosts"), ["etc", "hosts"]);
        assert_eq!(names("/../../x/./y/../z"), ["x", "z"]);
        assert_eq!(names("/"), Vec::<String>::new());
        assert_eq!(names("a//b/"), ["a", "b"]);
    }

    #[test]
    fn symlinks_out_of_the_root_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("hosts"), "canary").unwrap();
        symlink(&outside, root.join("abs")).unwrap();
        symlink("../../../../../../outside", root.join("etc/rel")).unwrap();
        // The same names inside the root: what the links lead to there.
        let inside = root.join(outside.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(root.join("outside")).unwrap();
        let r = Root::open(&root).unwrap();

        // Made inside, at the path the link names relative to the root.
        let d = r.mkdir_all(Path::new("/abs/sub"), Links::InRoot).unwrap();
        assert_eq!(target(&d), inside.join("sub"));
        let f = r
            .create_file(Path::new("/etc/rel/hosts"), Links::InRoot)
            .unwrap();
        assert_eq!(target(&f), root.join("outside/hosts"));
        assert_eq!(
            std::fs::read_to_string(outside.join("hosts")).unwrap(),
            "canary"
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);

        // Refused outright when links are not allowed.
        let e = r.mkdir_all(Path::new("/abs/x"), Links::Refuse).unwrap_err();
        assert!(e.to_string().contains("\"/abs/x\""), "{e}");
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(r
            .create_file(Path::new("/etc/rel/y"), Links::Refuse)
            .is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    }

    #[test]
    fn dangling_and_looping_links_and_files_in_the_way_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        symlink("a", root.join("b")).unwrap();
        symlink("b", root.join("a")).unwrap();
        std::fs::write(root.join("file"), "").unwrap();
        // Dangling inside the root: its target's parent is missing.
        symlink("/nowhere/deeper", root.join("dangling")).unwrap();
        let r = Root::open(root).unwrap();
        let e = r.mkdir_all(Path::new("/a/x"), Links::InRoot).unwrap_err();
        assert!(e.to_string().contains("too many symlinks"), "{e}");
        let e = r
            .mkdir_all(Path::new("/file/x"), Links::InRoot)
            .unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        let e = r
            .mkdir_all(Path::new("/dangling"), Links::InRoot)
            .unwrap_err();
        assert!(e.to_string().contains("missing path"), "{e}");
        assert!(!root.join("nowhere").exists());
    }

    #[test]
    fn existing_paths_resolve_in_one_step_and_missing_ones_are_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        let r = Root::open(dir.path()).unwrap();
        let p = r.mkdir_all(Path::new("/proc"), Links::Refuse).unwrap();
        assert_eq!(target(&p), dir.path().join("proc"));
        assert!(r
            .resolve_existing(Path::new("/proc/nope"), Links::InRoot)
            .unwrap()
            .is_none());
        let (parent, name) = r
            .parent_of(Path::new("/dev/net/tun"), Links::Refuse)
            .unwrap();
        assert_eq!(target(&parent), dir.path().join("dev/net"));
        assert_eq!(name, "tun");
    }
}
