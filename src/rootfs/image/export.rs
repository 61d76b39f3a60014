//! A stored image back out as blobs, for `push` and `save`: each extracted
//! layer is written as a tar again, deterministically (names sorted, the
//! owners, modes and mtimes the layer kept, hard links as links, overlayfs
//! whiteouts and opaque markers back to `.wh.` entries), gzipped or not,
//! into a temp file in the layers dir while its digests are computed. The
//! config is the image's own with `rootfs.diff_ids` replaced by the new
//! tars' digests, so the exported image is self-consistent (its layer
//! digests differ from the source registry's; see docs/DESIGN.md).

use super::*;
use crate::rootfs::extract::{self, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::Instance;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// One layer written out as a blob file.
pub(crate) struct ExportedLayer {
    guard: TempGuard,
    /// "sha256:<hex>" of the uncompressed tar.
    pub diff_id: String,
    /// "sha256:<hex>" of the blob as written (equals `diff_id` uncompressed).
    pub digest: String,
    /// Bytes of the blob.
    pub size: u64,
}

impl ExportedLayer {
    /// The blob file (removed when this value is dropped).
    pub fn path(&self) -> &Path {
        self.guard.path()
    }
}

/// Counts and hashes what is written through it.
struct HashWriter<W> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hashing<W>(inner: W) -> HashWriter<W> {
    HashWriter {
        inner,
        hash: Sha256::new(),
        size: 0,
    }
}

/// Writes the stored layer `diff_id` as a tar blob (gzipped when `gzip`)
/// into a temp file of the layers dir.
pub(crate) fn export_layer(inst: &Instance, diff_id: &str, gzip: bool) -> Result<ExportedLayer> {
    let dir = layer_dir(inst, diff_id);
    if !dir.is_dir() {
        return Err(ImageError::Other(format!(
            "layer {diff_id} is missing from the store (remove the image and pull or load it again)"
        )));
    }
    let guard = TempGuard::new(inst.layers_dir().join(temp_name("tmp")));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(guard.path())
        .map_err(io_other("cannot create", guard.path()))?;
    let blob = hashing(io::BufWriter::with_capacity(1 << 20, file));
    let io_err = |e: io::Error| ImageError::Io(format!("cannot write layer {diff_id}: {e}"));
    let (tar_hash, blob) = if gzip {
        let gz = flate2::write::GzEncoder::new(blob, flate2::Compression::fast());
        let mut tar = hashing(gz);
        write_layer_tar(&dir, &mut tar).map_err(io_err)?;
        let blob = tar.inner.finish().map_err(io_err)?;
        (tar.hash, blob)
    } else {
        let mut tar = hashing(blob);
        write_layer_tar(&dir, &mut tar).map_err(io_err)?;
        (tar.hash.clone(), tar.inner)
    };
    let size = blob.size;
    let digest = format!("sha256:{}", hex::encode(blob.hash.finalize()));
    let diff_id_new = format!("sha256:{}", hex::encode(tar_hash.finalize()));
    blob.inner
        .into_inner()
        .map_err(|e| io_err(e.into_error()))?
        .sync_all()
        .map_err(io_err)?;
    Ok(ExportedLayer {
        guard,
        diff_id: diff_id_new,
        digest,
        size,
    })
}

/// The image config `raw` with its `rootfs.diff_ids` replaced.
pub(crate) fn config_with_diff_ids(raw: &[u8], diff_ids: &[String]) -> Result<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(raw)
        .map_err(|e| ImageError::Other(format!("the stored image config is not JSON: {e}")))?;
    let Some(obj) = v.as_object_mut() else {
        return Err(ImageError::Other(
            "the stored image config is not an object".into(),
        ));
    };
    obj.insert(
        "rootfs".into(),
        serde_json::json!({"type": "layers", "diff_ids": diff_ids}),
    );
    serde_json::to_vec(&v).map_err(|e| ImageError::Other(e.to_string()))
}

/// Every entry under `dir` (relative), each directory before its contents,
/// names compared bytewise component by component.
fn walk(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(dir.join(&rel))? {
            let e = e?;
            let p = rel.join(e.file_name());
            if e.file_type()?.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    let key = |p: &PathBuf| -> Vec<Vec<u8>> {
        p.components()
            .map(|c| c.as_os_str().as_bytes().to_vec())
            .collect()
    };
    out.sort_by_cached_key(key);
    Ok(out)
}

fn header(kind: tar::EntryType, m: &fs::Metadata, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(m.mode() & 0o7777);
    h.set_uid(m.uid().into());
    h.set_gid(m.gid().into());
    h.set_mtime(m.mtime().max(0) as u64);
    h.set_size(size);
    h
}

/// An empty regular file entry (whiteouts and opaque markers).
fn marker(m: &fs::Metadata) -> tar::Header {
    let mut h = header(tar::EntryType::Regular, m, 0);
    h.set_mode(0o644);
    h
}

/// Writes the extracted layer at `dir` as a tar stream into `w`.
pub(crate) fn write_layer_tar<W: Write>(dir: &Path, w: W) -> io::Result<()> {
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    let mut inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for rel in walk(dir)? {
        let full = dir.join(&rel);
        let m = fs::symlink_metadata(&full)?;
        let ft = m.file_type();
        if ft.is_dir() {
            let mut h = header(tar::EntryType::Directory, &m, 0);
            b.append_data(&mut h, &rel, io::empty())?;
            if extract::get_xattr(&full, "trusted.overlay.opaque").as_deref() == Some(b"y") {
                let mut h = marker(&m);
                b.append_data(&mut h, rel.join(OPAQUE_MARKER), io::empty())?;
            }
        } else if ft.is_char_device() && m.rdev() == 0 {
            let mut name = WHITEOUT_PREFIX.as_bytes().to_vec();
            name.extend_from_slice(rel.file_name().map(|n| n.as_bytes()).unwrap_or_default());
            let wh = rel
                .parent()
                .unwrap_or(Path::new(""))
                .join(OsString::from_vec(name));
            let mut h = marker(&m);
            b.append_data(&mut h, wh, io::empty())?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&full)?;
            let mut h = header(tar::EntryType::Symlink, &m, 0);
            b.append_link(&mut h, &rel, target)?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = inodes.get(&(m.dev(), m.ino())) {
                    let mut h = header(tar::EntryType::Link, &m, 0);
                    b.append_link(&mut h, &rel, first)?;
                    continue;
                }
                inodes.insert((m.dev(), m.ino()), rel.clone());
            }
            let f = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&full)?;
            let mut h = header(tar::EntryType::Regular, &m, m.len());
            b.append_data(&mut h, &rel, ReadExact::new(f, m.len()))?;
        } else if ft.is_fifo() {
            let mut h = header(tar::EntryType::Fifo, &m, 0);
            b.append_data(&mut h, &rel, io::empty())?;
        }
        // Other device nodes are never stored (the extractor skips them).
    }
    b.into_inner()?.flush()
}

/// Reads exactly `len` bytes of a file: a file that changed size under the
/// export is an error, not a corrupt tar.
struct ReadExact {
    f: File,
    left: u64,
}

impl ReadExact {
    fn new(f: File, len: u64) -> Self {
        ReadExact { f, left: len }
    }
}

impl io::Read for ReadExact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let cap = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.f.read(&mut buf[..cap])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a layer file shrank while it was exported",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::extract::testtar::TarWriter;

    /// A layer with files, a hard link, a symlink, a whiteout and an opaque
    /// dir survives extract -> export -> extract, and exporting twice gives
    /// the same bytes.
    #[test]
    fn layers_round_trip_and_export_deterministically() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = TarWriter::default();
        w.file("etc/a", b"alpha");
        w.file("etc/.wh.gone", b"");
        w.file("opq/.wh..wh..opq", b"");
        w.file("opq/kept", b"k");
        w.hardlink("etc/b", "etc/a");
        w.symlink("lnk", "/etc/a");
        let src = w.finish();
        let one = tmp.path().join("one");
        fs::create_dir(&one).unwrap();
        extract::extract_layer(&src[..], &one).unwrap();
        let mut t1 = vec![];
        write_layer_tar(&one, &mut t1).unwrap();
        let mut t2 = vec![];
        write_layer_tar(&one, &mut t2).unwrap();
        assert_eq!(t1, t2);
        let two = tmp.path().join("two");
        fs::create_dir(&two).unwrap();
        extract::extract_layer(&t1[..], &two).unwrap();
        assert_eq!(fs::read(two.join("etc/b")).unwrap(), b"alpha");
        let (a, b) = (
            fs::metadata(two.join("etc/a")).unwrap(),
            fs::metadata(two.join("etc/b")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino());
        assert_eq!(
            fs::read_link(two.join("lnk")).unwrap(),
            PathBuf::from("/etc/a")
        );
        let wh = fs::symlink_metadata(two.join("etc/gone")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        assert_eq!(
            extract::get_xattr(&two.join("opq"), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
        let mut names = vec![];
        for e in tar::Archive::new(&t1[..]).entries().unwrap() {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
        assert_eq!(
            names,
            [
                "etc",
                "etc/a",
                "etc/b",
                "etc/.wh.gone",
                "lnk",
                "opq",
                "opq/.wh..wh..opq",
                "opq/kept"
            ]
        );
    }

    #[test]
    fn configs_get_the_new_diff_ids_and_keep_the_rest() {
        let raw = br#"{"architecture":"amd64","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let out = config_with_diff_ids(raw, &["sha256:bb".into()]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["rootfs"]["diff_ids"][0], "sha256:bb");
        assert_eq!(v["config"]["Cmd"][0], "sh");
    }
}
