//! The content-addressed layer store: `layers/<sha256 of the uncompressed
//! tar>/`, extracted once through a temp dir renamed into place; temp guards,
//! stale-temp healing, and the one transaction that commits rows.

use super::*;
use crate::rootfs::extract::{self, ArchiveError};
use crate::store::images as rows;
use crate::store::Store;
use crate::util;
use crate::Instance;
use std::fs::{self};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The extracted layer with this digest ("sha256:" prefix optional).
pub(crate) fn layer_dir(inst: &Instance, digest: &str) -> PathBuf {
    inst.layers_dir().join(strip_sha(digest))
}

pub(crate) fn temp_name(kind: &str) -> String {
    format!(".{kind}-{}-{}", std::process::id(), &util::new_id()[..12])
}

/// Removes what a crashed minirt left in the layers dir: `.tmp-PID-*` and
/// `.del-PID-*` entries whose process is gone.
pub(super) fn clean_stale_temps(layers: &Path) {
    let Ok(rd) = fs::read_dir(layers) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix(".tmp-")
            .or_else(|| name.strip_prefix(".del-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid > 0 && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = remove_any(&e.path());
        }
    }
}

/// Healing at any command: what a killed load or rmi left in the layers
/// dir (temp files and dirs of dead processes). One read of the dir.
pub(crate) fn clean_stale(inst: &Instance) {
    clean_stale_temps(&inst.layers_dir());
}

/// Rolls back a layer dir a killed load renamed into place: it goes unless
/// its row got committed (checked under the write lock, like `undo_layers`).
pub(crate) fn undo_orphan_layer(inst: &Instance, digest: &str) -> Result<()> {
    let mut store = Store::open(&inst.db_path())?;
    store.write(|tx| {
        if rows::layer_size(tx, digest)?.is_none() {
            remove_any(&layer_dir(inst, digest))
                .map_err(io_other("cannot remove", &layer_dir(inst, digest)))?;
        }
        Ok(())
    })
}

pub(super) fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A temp dir or file removed on drop unless committed: one
/// [`crate::undo::Undo`] step with the path kept at hand.
pub(crate) struct TempGuard {
    path: PathBuf,
    undo: crate::undo::Undo,
}

impl TempGuard {
    pub(crate) fn new(path: PathBuf) -> TempGuard {
        let mut undo = crate::undo::Undo::new();
        let p = path.clone();
        undo.push(format!("temp {}", path.display()), move || {
            remove_any(&p).map_err(|e| e.to_string())
        });
        TempGuard { path, undo }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path is kept (renamed into place).
    pub(crate) fn commit(self) {
        self.undo.commit();
    }
}

pub(super) fn io_other(what: &str, p: &Path) -> impl FnOnce(io::Error) -> ImageError {
    let what = format!("{what} {}", p.display());
    move |e| ImageError::Io(format!("{what}: {e}"))
}

/// A layer in the store after `ensure_layer`.
pub(crate) struct StoredLayer {
    pub(crate) digest: String,
    pub(crate) size: i64,
    /// True when this call renamed the dir into place (undo on failure).
    pub(crate) created: bool,
    /// Held from the rename until the rows are committed (or the undo ran),
    /// so a crash in between leaves an intent that removes the dir.
    pub(crate) _intent: Option<crate::intent::Held>,
}

/// Extracts a layer blob into the store unless it is there already.
/// `expected` = (diff id, blob digest) when the archive states them.
pub(crate) fn ensure_layer<R: Read>(
    inst: &Instance,
    store: &Store,
    blob: R,
    expected_diff: Option<&str>,
    expected_blob: Option<&str>,
) -> Result<StoredLayer> {
    if let Some(d) = expected_diff {
        let dir = layer_dir(inst, d);
        if dir.is_dir() {
            let size = match rows::layer_size(store.conn(), d)? {
                Some(s) => s,
                None => extract::tree_size(&dir) as i64,
            };
            return Ok(StoredLayer {
                digest: d.to_string(),
                size,
                created: false,
                _intent: None,
            });
        }
    }
    extract_new(inst, blob, expected_diff, expected_blob)
}

/// Extracts a layer blob into a temp dir and renames it into the store.
/// Needs no store handle, so registry pulls run several at once.
pub(crate) fn extract_new<R: Read>(
    inst: &Instance,
    blob: R,
    expected_diff: Option<&str>,
    expected_blob: Option<&str>,
) -> Result<StoredLayer> {
    let layers = inst.layers_dir();
    let tmp = TempGuard::new(layers.join(temp_name("tmp")));
    fs::create_dir(tmp.path()).map_err(io_other("cannot create", tmp.path()))?;
    let started = std::time::Instant::now();
    let x = extract::extract_layer(blob, tmp.path())?;
    tracing::debug!(diff_id = %x.diff_id, bytes = x.size, elapsed = ?started.elapsed(), "extracted layer");
    if let Some(want) = expected_blob {
        if x.blob_digest != want {
            return Err(ImageError::Other(format!(
                "layer blob sha256:{want} does not match its digest"
            )));
        }
    }
    if let Some(want) = expected_diff {
        if x.diff_id != want {
            return Err(ImageError::Other(format!(
                "layer sha256:{want} does not match its digest (got sha256:{})",
                x.diff_id
            )));
        }
    }
    let dir = layer_dir(inst, &x.diff_id);
    crate::fault::point("layer-after-extract");
    let intent = crate::intent::begin(
        inst,
        &crate::intent::Intent::Layer {
            digest: x.diff_id.clone(),
        },
    )
    .map_err(io_other(
        "cannot record a new layer in",
        &crate::intent::dir(inst),
    ))?;
    match fs::rename(tmp.path(), &dir) {
        Ok(()) => {
            tmp.commit();
            crate::fault::point("layer-after-rename");
            Ok(StoredLayer {
                digest: x.diff_id,
                size: x.size as i64,
                created: true,
                _intent: Some(intent),
            })
        }
        // Another process put the same layer in place first: use theirs.
        Err(e)
            if dir.is_dir()
                && matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) =>
        {
            Ok(StoredLayer {
                digest: x.diff_id,
                size: x.size as i64,
                created: false,
                _intent: None,
            })
        }
        Err(e) => Err(io_other("cannot move layer into", &dir)(e)),
    }
}

/// Blames a failed layer on the archive, unless the host failed (a full
/// disk is not an invalid archive, and the user must be told which it is).
pub(super) fn layer_error(inst: &Instance, source: &str, e: ImageError) -> ImageError {
    match e {
        ImageError::Layer(ArchiveError::Io { source: io, .. }) => ImageError::Io(format!(
            "cannot store image layers in {}: {io}",
            inst.layers_dir().display()
        )),
        ImageError::Io(_) => e,
        e => ImageError::InvalidArchive {
            path: source.to_string(),
            reason: e.to_string(),
        },
    }
}

/// The rows of one load, written in one transaction.
pub(crate) struct NewImage {
    pub(crate) row: rows::ImageRow,
    pub(crate) names: Vec<String>,
}

/// Raised inside the write transaction when a layer dir vanished (removed by
/// a concurrent `rmi` or a failed load); the caller retries.
pub(super) const VANISHED: &str = "layer vanished while loading";

/// The rows of stored layers, in the transaction that records their image;
/// a layer whose directory went meanwhile is `VANISHED`.
pub(super) fn insert_layers(
    tx: &rusqlite::Transaction,
    inst: &Instance,
    layers: &[StoredLayer],
    now: i64,
) -> Result<()> {
    for l in layers {
        if !layer_dir(inst, &l.digest).is_dir() {
            return Err(ImageError::Other(format!(
                "{VANISHED}: sha256:{}",
                l.digest
            )));
        }
        rows::insert_layer(tx, &l.digest, l.size, now)?;
    }
    Ok(())
}

pub(crate) fn commit_images(
    inst: &Instance,
    store: &mut Store,
    layers: &[StoredLayer],
    images: &[NewImage],
    event: &str,
) -> Result<()> {
    let now = util::now_nanos();
    store.write(|tx| {
        insert_layers(tx, inst, layers, now)?;
        for img in images {
            rows::insert_image(tx, &img.row)?;
            for n in &img.names {
                rows::set_tag(tx, n, &img.row.id)?;
            }
            let id = format!("sha256:{}", img.row.id);
            if !event.is_empty() {
                crate::container::events::record(tx, "image", event, &id, &[("name", &id)]);
            }
        }
        Ok(())
    })
}

/// Undo for a failed load: drops the layer dirs this load created that no
/// row claims (checked under the write lock, so a concurrent load that
/// already committed keeps its layer).
pub(super) fn undo_layers(inst: &Instance, store: &mut Store, layers: &[StoredLayer]) {
    let created: Vec<&StoredLayer> = layers.iter().filter(|l| l.created).collect();
    if created.is_empty() {
        return;
    }
    let r: Result<()> = store.write(|tx| {
        for l in &created {
            if rows::layer_size(tx, &l.digest)?.is_none() {
                let _ = remove_any(&layer_dir(inst, &l.digest));
            }
        }
        Ok(())
    });
    if let Err(e) = r {
        tracing::warn!("cannot undo layers of a failed load: {e}");
    }
}

/// Creates the layer store, root-only: layers keep their setuid binaries,
/// which host users must not reach (overlay reads lower dirs with the
/// mounter's credentials, so containers are unaffected).
pub(crate) fn prepare_layers_dir(inst: &Instance) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = inst.layers_dir();
    fs::create_dir_all(&dir).map_err(io_other("cannot create", &dir))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .map_err(io_other("cannot protect", &dir))?;
    clean_stale_temps(&dir);
    Ok(())
}

/// Runs `f` (which extracts layers and commits rows), undoing its layers on
/// failure and retrying when a layer vanished under it.
pub(crate) fn with_undo<T>(
    inst: &Instance,
    store: &mut Store,
    mut f: impl FnMut(&mut Store, &mut Vec<StoredLayer>) -> Result<T>,
) -> Result<T> {
    prepare_layers_dir(inst)?;
    let mut attempt = 0;
    loop {
        let mut layers = vec![];
        match f(store, &mut layers) {
            Ok(v) => return Ok(v),
            Err(e) => {
                undo_layers(inst, store, &layers);
                attempt += 1;
                if attempt >= 3 || !e.to_string().starts_with(VANISHED) {
                    return Err(e);
                }
            }
        }
    }
}
