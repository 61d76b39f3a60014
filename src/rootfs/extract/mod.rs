//! Safe extraction of layer tarballs into a directory: no path may escape
//! the target (`..`, absolute paths, symlinked parents, hardlink escapes);
//! OCI / AUFS whiteouts become overlayfs whiteouts.
//!
//! Decisions:
//! - Absolute entry paths are made relative (`/etc/x` -> `etc/x`), as tar does.
//!   A `..` that climbs above the layer root refuses the whole layer.
//! - An entry whose parent is a symlink, or a hardlink whose target climbs out
//!   or lies under a symlink, refuses the whole layer: a well-formed image never
//!   needs either, and following one could write outside the layer.
//! - Symlinks are stored as they are and never followed while extracting.
//! - Block and character device nodes are skipped (logged at warn): the
//!   container gets its own /dev, and a device node under the state root would
//!   be a way into host devices. A char device 0/0 is already an overlay
//!   whiteout and is kept. FIFOs are created.
//! - Owners, modes (setuid/setgid/sticky included) and file mtimes are kept;
//!   `trusted.*` xattrs from the image are dropped (they would let an image
//!   forge overlayfs metadata), other PAX xattrs are kept.
//! - The stream may be gzip-compressed (detected by its magic bytes).

use sha2::Digest;
use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("layer entry {0:?} escapes the layer root")]
    Escape(String),
    #[error("layer entry {path:?} lies under {parent:?}, which is a symlink or not a directory")]
    BadParent { path: String, parent: String },
    #[error("layer hardlink {path:?} -> {target:?} points outside the layer, at a directory or at nothing")]
    BadHardlink { path: String, target: String },
    #[error("layer entry {path:?} has an unsupported type ({kind})")]
    Unsupported { path: String, kind: String },
    #[error("layer is truncated or not a tar archive: {0}")]
    Corrupt(String),
    #[error("cannot extract {path:?}: {source}")]
    Io { path: String, source: io::Error },
}

type Result<T> = std::result::Result<T, ArchiveError>;

mod names;
mod stream;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testtar;

pub(crate) use names::*;
pub(crate) use stream::*;

/// What extracting one layer produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// sha256 hex of the uncompressed tar stream (the layer's diff id).
    pub diff_id: String,
    /// sha256 hex of the bytes as read (the blob digest; equals `diff_id`
    /// when the layer was not compressed).
    pub blob_digest: String,
    /// Bytes of file content in the layer (what `images` reports as size).
    pub size: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Copies an entry's data into its file, telling the archive's faults
/// (read errors: Corrupt) from the host's (write errors such as a full disk: Io).
fn copy_entry(from: &mut impl Read, to: &mut File, path: &Path) -> Result<u64> {
    use std::io::Write;
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(e)),
        };
        to.write_all(&buf[..n]).map_err(io_err(path))?;
        total += n as u64;
    }
}

fn corrupt(e: io::Error) -> ArchiveError {
    ArchiveError::Corrupt(describe_tar_error(&e))
}

/// One short line for a tar reading error. The tar crate's header errors
/// quote the raw header bytes, which are garbage when the input is not tar.
pub(crate) fn describe_tar_error(e: &io::Error) -> String {
    let msg = e.to_string();
    if msg.contains("when getting") || msg.contains("checksum mismatch") {
        return "bad tar header".into();
    }
    let mut line: String = msg
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > 200 {
        let mut cut = 200;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line
}

/// Extracts a (possibly gzipped) layer tar read from `input` into `dest`, an
/// existing empty directory. Hashes the stream on the way; the caller
/// compares the result with the digests it expects.
pub fn extract_layer<R: Read>(input: R, dest: &Path) -> Result<Extracted> {
    let decoded = Decoded::new(Hashing::new(input)).map_err(corrupt)?;
    let mut archive = tar::Archive::new(Hashing::new(decoded));
    let mut x = Extractor {
        dest,
        size: 0,
        dir_times: vec![],
    };
    for entry in archive.entries().map_err(corrupt)? {
        let entry = entry.map_err(corrupt)?;
        x.entry(entry)?;
    }
    // Read the end-of-archive blocks and padding so the digest covers the
    // whole stream, as the image's diff id does.
    let mut tar_stream = archive.into_inner();
    io::copy(&mut tar_stream, &mut io::sink()).map_err(corrupt)?;
    if tar_stream.total % 512 != 0 || tar_stream.trailing_zeros < 1024 {
        return Err(ArchiveError::Corrupt(
            "the end-of-archive marker is missing".into(),
        ));
    }
    let diff_id = hex::encode(tar_stream.hash.finalize());
    let mut raw = tar_stream.inner.into_inner();
    io::copy(&mut raw, &mut io::sink()).map_err(corrupt)?;
    let blob_digest = hex::encode(raw.into_inner().hash.finalize());
    // Directory mtimes last: creating their children changed them.
    for (p, t) in x.dir_times.iter().rev() {
        if let Ok(f) = File::open(p) {
            let _ = f.set_modified(*t);
        }
    }
    Ok(Extracted {
        diff_id,
        blob_digest,
        size: x.size,
    })
}

struct Extractor<'a> {
    dest: &'a Path,
    size: u64,
    dir_times: Vec<(PathBuf, std::time::SystemTime)>,
}

impl Extractor<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = || String::from_utf8_lossy(&raw_path).into_owned();
        let kind = entry.header().entry_type();
        let Some(rel) = clean_entry_path(&raw_path)? else {
            if kind.is_dir() {
                self.apply_meta(&mut entry, self.dest, true)?;
            }
            return Ok(());
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel.file_name().unwrap_or_default();
        match classify_whiteout(name) {
            Whiteout::Opaque => {
                let dir = self.ensure_dir_chain(parent, &shown())?;
                return set_xattr(&dir, "trusted.overlay.opaque", b"y");
            }
            Whiteout::File(target) => {
                if target == "." || target == ".." || target.as_bytes().contains(&b'/') {
                    return Err(ArchiveError::Escape(shown()));
                }
                let dir = self.ensure_dir_chain(parent, &shown())?;
                let full = dir.join(target);
                remove_existing(&full)?;
                return make_whiteout(&full);
            }
            Whiteout::None => {}
        }
        let dir = self.ensure_dir_chain(parent, &shown())?;
        let full = dir.join(name);
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                let is_dir = fs::symlink_metadata(&full)
                    .map(|m| m.is_dir())
                    .unwrap_or(false);
                if !is_dir {
                    remove_existing(&full)?;
                    fs::create_dir(&full).map_err(io_err(&full))?;
                }
                self.apply_meta(&mut entry, &full, true)?;
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                remove_existing(&full)?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&full)
                    .map_err(io_err(&full))?;
                let want = entry.size();
                let got = copy_entry(&mut entry, &mut f, &full)?;
                if got != want && kind != T::GNUSparse {
                    return Err(ArchiveError::Corrupt(format!(
                        "{} is cut short ({got} of {want} bytes)",
                        shown()
                    )));
                }
                self.size += got;
                if let Ok(Some(t)) = mtime(&entry) {
                    let _ = f.set_modified(t);
                }
                drop(f);
                self.apply_meta(&mut entry, &full, false)?;
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        ArchiveError::Corrupt(format!("symlink {} has no target", shown()))
                    })?
                    .into_owned();
                remove_existing(&full)?;
                symlink(OsStr::from_bytes(&target), &full).map_err(io_err(&full))?;
                let h = entry.header();
                let (uid, gid) = owner(h)?;
                std::os::unix::fs::lchown(&full, Some(uid), Some(gid)).map_err(io_err(&full))?;
            }
            T::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                let bad = || ArchiveError::BadHardlink {
                    path: shown(),
                    target: String::from_utf8_lossy(&target_raw).into_owned(),
                };
                let target_rel = clean_entry_path(&target_raw)
                    .map_err(|_| bad())?
                    .ok_or_else(bad)?;
                let target = self.existing_non_dir(&target_rel).ok_or_else(bad)?;
                if target == full {
                    return Ok(());
                }
                remove_existing(&full)?;
                fs::hard_link(&target, &full).map_err(io_err(&full))?;
            }
            T::Char | T::Block => {
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                if kind == T::Char && major == 0 && minor == 0 {
                    remove_existing(&full)?;
                    make_whiteout(&full)?;
                } else {
                    tracing::warn!(path = %shown(), major, minor, "skipping device node in image layer");
                }
            }
            T::Fifo => {
                remove_existing(&full)?;
                nix::unistd::mkfifo(&full, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .map_err(|e| io_err(&full)(io::Error::from(e)))?;
                self.apply_meta(&mut entry, &full, false)?;
            }
            // Metadata records the tar crate did not fold into the next entry.
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {}
            other => {
                return Err(ArchiveError::Unsupported {
                    path: shown(),
                    kind: format!("{other:?}"),
                })
            }
        }
        Ok(())
    }

    /// Makes sure every component of `rel` (relative to the layer root) is a
    /// real directory, creating missing ones, and returns its full path.
    fn ensure_dir_chain(&self, rel: &Path, entry: &str) -> Result<PathBuf> {
        let mut cur = self.dest.to_path_buf();
        for c in rel.components() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(ArchiveError::BadParent {
                        path: entry.to_string(),
                        parent: cur
                            .strip_prefix(self.dest)
                            .unwrap_or(&cur)
                            .display()
                            .to_string(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&cur).map_err(io_err(&cur))?;
                    fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                        .map_err(io_err(&cur))?;
                }
                Err(e) => return Err(io_err(&cur)(e)),
            }
        }
        Ok(cur)
    }

    /// The full path of an existing non-directory at `rel`, reached through
    /// real directories only.
    fn existing_non_dir(&self, rel: &Path) -> Option<PathBuf> {
        let mut cur = self.dest.to_path_buf();
        let parent = rel.parent().unwrap_or(Path::new(""));
        for c in parent.components() {
            cur.push(c);
            if !fs::symlink_metadata(&cur).ok()?.is_dir() {
                return None;
            }
        }
        cur.push(rel.file_name()?);
        let m = fs::symlink_metadata(&cur).ok()?;
        (!m.is_dir()).then_some(cur)
    }

    /// Owner, then mode (chown clears setuid bits), then xattrs.
    fn apply_meta<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
        is_dir: bool,
    ) -> Result<()> {
        let h = entry.header();
        let (uid, gid) = owner(h)?;
        let mode = h.mode().map_err(corrupt)? & 0o7777;
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io_err(path))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))?;
        if is_dir {
            if let Ok(Some(t)) = mtime(entry) {
                self.dir_times.push((path.to_path_buf(), t));
            }
        }
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                let Ok(key) = ext.key() else { continue };
                let Some(attr) = key.strip_prefix("SCHILY.xattr.") else {
                    continue;
                };
                if attr.starts_with("trusted.") {
                    continue;
                }
                set_xattr(path, attr, ext.value_bytes())?;
            }
        }
        Ok(())
    }
}

fn owner(h: &tar::Header) -> Result<(u32, u32)> {
    let uid = h.uid().map_err(corrupt)?;
    let gid = h.gid().map_err(corrupt)?;
    let uid =
        u32::try_from(uid).map_err(|_| ArchiveError::Corrupt(format!("uid {uid} out of range")))?;
    let gid =
        u32::try_from(gid).map_err(|_| ArchiveError::Corrupt(format!("gid {gid} out of range")))?;
    Ok((uid, gid))
}

fn mtime<R: Read>(entry: &tar::Entry<'_, R>) -> io::Result<Option<std::time::SystemTime>> {
    let secs = entry.header().mtime()?;
    Ok(UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
}

/// Removes whatever is at `path` so a new entry can take its place (a later
/// tar entry wins). Never follows a symlink.
fn remove_existing(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io_err(path)),
        Ok(_) => fs::remove_file(path).map_err(io_err(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// An overlayfs whiteout: a character device 0/0.
fn make_whiteout(path: &Path) -> Result<()> {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
        .map_err(|e| io_err(path)(io::Error::from(e)))
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<()> {
    let p =
        CString::new(path.as_os_str().as_bytes()).map_err(|e| io_err(path)(io::Error::other(e)))?;
    let n = CString::new(name).map_err(|e| io_err(path)(io::Error::other(e)))?;
    // SAFETY: both strings are NUL-terminated and outlive the call; the value
    // pointer and length describe a live slice.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io_err(path)(io::Error::last_os_error()));
    }
    Ok(())
}

/// Reads an xattr without following symlinks (tests and checks).
pub(crate) fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: as in set_xattr; the buffer is writable for its full length.
    let rc = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        return None;
    }
    buf.truncate(rc as usize);
    Some(buf)
}

/// Total size in bytes of the regular files under `dir` (for a layer
/// extracted by another process whose size we did not measure).
pub fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.size();
            }
        }
    }
    total
}
