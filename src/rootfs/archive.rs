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

use sha2::{Digest, Sha256};
use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
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

/// What a layer entry's file name means to overlayfs.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// An ordinary entry.
    None,
    /// `.wh.NAME`: NAME is deleted from the layers below.
    File(&'a OsStr),
    /// `.wh..wh..opq`: the directory hides everything below it.
    Opaque,
}

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

pub fn classify_whiteout(name: &OsStr) -> Whiteout<'_> {
    let b = name.as_bytes();
    if b == OPAQUE_MARKER.as_bytes() {
        Whiteout::Opaque
    } else if b.len() > WHITEOUT_PREFIX.len() && b.starts_with(WHITEOUT_PREFIX.as_bytes()) {
        Whiteout::File(OsStr::from_bytes(&b[WHITEOUT_PREFIX.len()..]))
    } else {
        Whiteout::None
    }
}

/// Lexically cleans a tar entry path into a path relative to the layer root.
/// `None` is the root itself. `..` that climbs above the root is an error;
/// a leading `/` is dropped.
pub fn clean_entry_path(raw: &[u8]) -> Result<Option<PathBuf>> {
    let display = || String::from_utf8_lossy(raw).into_owned();
    if raw.contains(&0) {
        return Err(ArchiveError::Escape(display()));
    }
    let mut out: Vec<&OsStr> = vec![];
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Err(ArchiveError::Escape(display()));
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    if out.is_empty() {
        return Ok(None);
    }
    Ok(Some(out.iter().collect()))
}

/// Counts and hashes the bytes read through it, and remembers how many zero
/// bytes the stream ended with (a complete tar ends with two zero blocks).
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    total: u64,
    trailing_zeros: u64,
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            total: 0,
            trailing_zeros: 0,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let chunk = &buf[..n];
        self.hash.update(chunk);
        self.total += n as u64;
        match chunk.iter().rposition(|b| *b != 0) {
            Some(i) => self.trailing_zeros = (n - i - 1) as u64,
            None => self.trailing_zeros += n as u64,
        }
        Ok(n)
    }
}

/// Peeks at the stream and returns a reader of its uncompressed bytes.
enum Decoded<R: Read> {
    Plain(BufReader<R>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<R>>>),
}

impl<R: Read> Decoded<R> {
    fn new(r: R) -> io::Result<Self> {
        let mut br = BufReader::with_capacity(64 * 1024, r);
        if is_gzip(br.fill_buf()?) {
            Ok(Decoded::Gzip(Box::new(
                flate2::bufread::MultiGzDecoder::new(br),
            )))
        } else {
            Ok(Decoded::Plain(br))
        }
    }
    fn into_inner(self) -> BufReader<R> {
        match self {
            Decoded::Plain(b) => b,
            Decoded::Gzip(g) => g.into_inner(),
        }
    }
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Plain(b) => b.read(buf),
            Decoded::Gzip(g) => g.read(buf),
        }
    }
}

/// True when the bytes start with the gzip magic.
pub fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
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
pub fn describe_tar_error(e: &io::Error) -> String {
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
pub fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
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

/// Builds tar streams byte by byte, so tests can write what `tar::Builder`
/// refuses to (`..`, absolute paths, escaping links).
#[cfg(test)]
pub(crate) mod testtar {
    use tar::{EntryType, Header};

    #[derive(Default)]
    pub struct TarWriter {
        pub bytes: Vec<u8>,
    }

    impl TarWriter {
        #[allow(clippy::too_many_arguments)]
        pub fn raw(
            &mut self,
            path: &str,
            kind: EntryType,
            link: &str,
            data: &[u8],
            mode: u32,
            uid: u64,
            dev: (u32, u32),
        ) -> &mut Self {
            let mut h = Header::new_gnu();
            {
                let g = h.as_gnu_mut().unwrap();
                g.name[..path.len()].copy_from_slice(path.as_bytes());
                g.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_uid(uid);
            h.set_gid(uid);
            h.set_mtime(1_000_000);
            if kind == EntryType::Char || kind == EntryType::Block {
                h.set_device_major(dev.0).unwrap();
                h.set_device_minor(dev.1).unwrap();
            }
            h.set_cksum();
            self.bytes.extend_from_slice(h.as_bytes());
            self.bytes.extend_from_slice(data);
            let pad = (512 - data.len() % 512) % 512;
            self.bytes.extend(std::iter::repeat_n(0u8, pad));
            self
        }
        pub fn dir(&mut self, path: &str) -> &mut Self {
            self.raw(path, EntryType::Directory, "", b"", 0o755, 0, (0, 0))
        }
        pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
            self.raw(path, EntryType::Regular, "", data, 0o644, 0, (0, 0))
        }
        pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
            self.raw(path, EntryType::Symlink, target, b"", 0o777, 0, (0, 0))
        }
        pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
            self.raw(path, EntryType::Link, target, b"", 0o644, 0, (0, 0))
        }
        pub fn finish(&mut self) -> Vec<u8> {
            let mut b = std::mem::take(&mut self.bytes);
            b.extend(std::iter::repeat_n(0u8, 1024));
            b
        }
    }

    pub fn gzip(b: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testtar::{gzip, TarWriter};
    use super::*;
    use std::os::unix::fs::FileTypeExt;
    use tar::EntryType;

    /// A layer dir inside a scratch dir, so escapes would land in `outside`.
    struct Scratch {
        _tmp: tempfile::TempDir,
        outside: PathBuf,
        layer: PathBuf,
    }

    fn scratch() -> Scratch {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().to_path_buf();
        let layer = outside.join("a").join("layer");
        fs::create_dir_all(&layer).unwrap();
        Scratch {
            _tmp: tmp,
            outside,
            layer,
        }
    }

    fn extract(s: &Scratch, tar: &[u8]) -> Result<Extracted> {
        extract_layer(tar, &s.layer)
    }

    /// Every path under `dir`, relative, sorted.
    fn tree(dir: &Path) -> Vec<String> {
        let mut out = vec![];
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap().flatten() {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn entry_paths_are_cleaned_lexically() {
        let c = |s: &str| clean_entry_path(s.as_bytes());
        assert_eq!(c("a/../b").unwrap(), Some(PathBuf::from("b")));
        assert_eq!(c("/etc/passwd").unwrap(), Some(PathBuf::from("etc/passwd")));
        assert_eq!(c("./bin/sh").unwrap(), Some(PathBuf::from("bin/sh")));
        assert_eq!(c("./").unwrap(), None);
        assert_eq!(c("/").unwrap(), None);
        assert!(matches!(c("../x"), Err(ArchiveError::Escape(_))));
        assert!(matches!(c("a/../../x"), Err(ArchiveError::Escape(_))));
        assert!(matches!(c("/../x"), Err(ArchiveError::Escape(_))));
    }

    #[test]
    fn whiteout_names_are_classified() {
        assert_eq!(
            classify_whiteout(OsStr::new(".wh.foo")),
            Whiteout::File(OsStr::new("foo"))
        );
        assert_eq!(
            classify_whiteout(OsStr::new(".wh..wh..opq")),
            Whiteout::Opaque
        );
        assert_eq!(classify_whiteout(OsStr::new(".wh.")), Whiteout::None);
        assert_eq!(classify_whiteout(OsStr::new("foo")), Whiteout::None);
    }

    #[test]
    fn extracts_files_modes_owners_links_and_hashes_the_stream() {
        let s = scratch();
        let tar = TarWriter::default()
            .dir("./")
            .dir("bin/")
            .raw(
                "bin/su",
                EntryType::Regular,
                "",
                b"#!su",
                0o4755,
                1000,
                (0, 0),
            )
            .symlink("bin/sh", "/bin/busybox")
            .hardlink("bin/su2", "bin/su")
            .raw("tmp/", EntryType::Directory, "", b"", 0o1777, 0, (0, 0))
            .raw("pipe", EntryType::Fifo, "", b"", 0o600, 0, (0, 0))
            .finish();
        let x = extract(&s, &tar).unwrap();
        assert_eq!(x.diff_id, hex::encode(Sha256::digest(&tar)));
        assert_eq!(x.blob_digest, x.diff_id);
        assert_eq!(x.size, 4);
        let su = fs::metadata(s.layer.join("bin/su")).unwrap();
        assert_eq!(su.mode() & 0o7777, 0o4755, "setuid bit kept");
        assert_eq!((su.uid(), su.gid()), (1000, 1000));
        assert_eq!(
            fs::read_link(s.layer.join("bin/sh")).unwrap(),
            PathBuf::from("/bin/busybox")
        );
        assert_eq!(
            fs::metadata(s.layer.join("bin/su2")).unwrap().ino(),
            su.ino()
        );
        assert_eq!(
            fs::metadata(s.layer.join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
        assert!(fs::symlink_metadata(s.layer.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo());
        let bin = fs::metadata(s.layer.join("bin")).unwrap();
        assert_eq!(
            bin.mtime(),
            1_000_000,
            "directory mtimes restored after their children"
        );
    }

    #[test]
    fn dot_dot_escape_refuses_the_layer() {
        let s = scratch();
        let tar = TarWriter::default().file("../evil", b"x").finish();
        assert!(matches!(extract(&s, &tar), Err(ArchiveError::Escape(_))));
        let tar = TarWriter::default().file("ok/../../../evil", b"x").finish();
        assert!(matches!(extract(&s, &tar), Err(ArchiveError::Escape(_))));
        assert!(!s.outside.join("evil").exists() && !s.outside.join("a/evil").exists());
    }

    #[test]
    fn absolute_paths_land_inside_the_layer() {
        let s = scratch();
        let tar = TarWriter::default().file("/etc/abs", b"x").finish();
        extract(&s, &tar).unwrap();
        assert_eq!(fs::read(s.layer.join("etc/abs")).unwrap(), b"x");
    }

    #[test]
    fn entries_under_a_symlinked_directory_are_refused() {
        let s = scratch();
        let out = s.outside.join("target");
        fs::create_dir(&out).unwrap();
        let abs = TarWriter::default()
            .symlink("link", out.to_str().unwrap())
            .file("link/pwned", b"x")
            .finish();
        assert!(matches!(
            extract(&s, &abs),
            Err(ArchiveError::BadParent { .. })
        ));
        let s2 = scratch();
        let rel = TarWriter::default()
            .symlink("up", "..")
            .file("up/pwned", b"x")
            .finish();
        assert!(matches!(
            extract(&s2, &rel),
            Err(ArchiveError::BadParent { .. })
        ));
        // Whiteouts and opaque markers walk the same checks.
        let s3 = scratch();
        let wh = TarWriter::default()
            .symlink("up", "..")
            .file("up/.wh.layer", b"")
            .finish();
        assert!(matches!(
            extract(&s3, &wh),
            Err(ArchiveError::BadParent { .. })
        ));
        assert!(fs::read_dir(&out).unwrap().next().is_none());
        assert!(!s.outside.join("a/pwned").exists() && !s2.outside.join("a/pwned").exists());
        assert!(
            s3.outside.join("a/layer").is_dir(),
            "the whiteout did not replace the layer dir"
        );
    }

    #[test]
    fn hardlinks_that_escape_are_refused_and_symlinks_are_never_followed() {
        let s = scratch();
        fs::write(s.outside.join("secret"), b"s").unwrap();
        let up = TarWriter::default().hardlink("h", "../secret").finish();
        assert!(matches!(
            extract(&s, &up),
            Err(ArchiveError::BadHardlink { .. })
        ));
        let s = scratch();
        let via_dir = TarWriter::default()
            .symlink("d", s.outside.to_str().unwrap())
            .hardlink("h", "d/secret")
            .finish();
        assert!(matches!(
            extract(&s, &via_dir),
            Err(ArchiveError::BadHardlink { .. })
        ));
        let s = scratch();
        let missing = TarWriter::default().hardlink("h", "nothing").finish();
        assert!(matches!(
            extract(&s, &missing),
            Err(ArchiveError::BadHardlink { .. })
        ));
        // A hardlink to an absolute symlink links the symlink itself.
        let s = scratch();
        let to_sym = TarWriter::default()
            .symlink("s", s.outside.join("secret").to_str().unwrap())
            .hardlink("h", "s")
            .file("s2", b"replaced")
            .finish();
        fs::write(s.outside.join("secret"), b"s").unwrap();
        extract(&s, &to_sym).unwrap();
        assert!(fs::symlink_metadata(s.layer.join("h"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(s.outside.join("secret")).unwrap(), b"s");
        assert_eq!(fs::metadata(s.outside.join("secret")).unwrap().nlink(), 1);
    }

    #[test]
    fn a_file_over_a_symlink_replaces_the_link_not_its_target() {
        let s = scratch();
        fs::write(s.outside.join("victim"), b"orig").unwrap();
        let tar = TarWriter::default()
            .symlink("f", s.outside.join("victim").to_str().unwrap())
            .file("f", b"new")
            .finish();
        extract(&s, &tar).unwrap();
        assert_eq!(fs::read(s.outside.join("victim")).unwrap(), b"orig");
        assert_eq!(fs::read(s.layer.join("f")).unwrap(), b"new");
    }

    #[test]
    fn whiteouts_and_opaque_dirs_become_overlayfs_markers() {
        let s = scratch();
        let tar = TarWriter::default()
            .dir("etc/")
            .file("etc/.wh.motd", b"")
            .dir("var/")
            .file("var/.wh..wh..opq", b"")
            .file("var/kept", b"k")
            .finish();
        extract(&s, &tar).unwrap();
        let wh = fs::symlink_metadata(s.layer.join("etc/motd")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!s.layer.join("etc/.wh.motd").exists());
        assert_eq!(
            get_xattr(&s.layer.join("var"), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
        assert!(!s.layer.join("var/.wh..wh..opq").exists());
        assert!(s.layer.join("var/kept").exists());
        let bad = TarWriter::default().file("etc/.wh...", b"").finish();
        assert!(matches!(
            extract(&scratch(), &bad),
            Err(ArchiveError::Escape(_))
        ));
    }

    #[test]
    fn device_nodes_are_skipped_but_overlay_whiteouts_kept() {
        let s = scratch();
        let tar = TarWriter::default()
            .raw("dev/null", EntryType::Char, "", b"", 0o666, 0, (1, 3))
            .raw("dev/sda", EntryType::Block, "", b"", 0o660, 0, (8, 0))
            .raw("gone", EntryType::Char, "", b"", 0, 0, (0, 0))
            .finish();
        extract(&s, &tar).unwrap();
        assert!(!s.layer.join("dev/null").exists() && !s.layer.join("dev/sda").exists());
        assert!(fs::symlink_metadata(s.layer.join("gone"))
            .unwrap()
            .file_type()
            .is_char_device());
    }

    #[test]
    fn gzip_layers_are_detected_and_both_digests_reported() {
        let s = scratch();
        let tar = TarWriter::default().file("hello", b"world").finish();
        let gz = gzip(&tar);
        let x = extract(&s, &gz).unwrap();
        assert_eq!(x.diff_id, hex::encode(Sha256::digest(&tar)));
        assert_eq!(x.blob_digest, hex::encode(Sha256::digest(&gz)));
        assert_eq!(fs::read(s.layer.join("hello")).unwrap(), b"world");
    }

    #[test]
    fn truncated_layers_are_errors() {
        let data = vec![7u8; 4000];
        let tar = TarWriter::default()
            .file("big", &data)
            .file("next", b"n")
            .finish();
        // Cut inside the data, at a block boundary, and without the end marker.
        for cut in [1500, 2048, tar.len() - 1024] {
            let r = extract(&scratch(), &tar[..cut]);
            assert!(
                matches!(r, Err(ArchiveError::Corrupt(_))),
                "cut at {cut}: {r:?}"
            );
        }
        let gz = gzip(&tar);
        let r = extract(&scratch(), &gz[..gz.len() / 2]);
        assert!(matches!(r, Err(ArchiveError::Corrupt(_))), "{r:?}");
        let r = extract(
            &scratch(),
            b"this is not a tar archive at all, just some words",
        );
        assert!(matches!(r, Err(ArchiveError::Corrupt(_))), "{r:?}");
    }

    #[test]
    fn tree_size_counts_regular_files() {
        let s = scratch();
        extract(
            &s,
            &TarWriter::default()
                .file("a", b"123")
                .file("d/b", b"45")
                .symlink("l", "a")
                .finish(),
        )
        .unwrap();
        assert_eq!(tree_size(&s.layer), 5);
        assert_eq!(tree(&s.layer), vec!["a", "d", "d/b", "l"]);
    }
}
