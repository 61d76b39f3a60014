//! `load` (docker-save and OCI-layout archives, possibly gzipped), the
//! bundled busybox, and `import` of a flat root filesystem.

use super::*;
use crate::rootfs::extract::{self};
use crate::store::images as rows;
use crate::store::Store;
use crate::util;
use crate::Instance;
use std::fs::{self, File};
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

pub(super) fn load_plan<R: Read + Seek>(
    inst: &Instance,
    store: &mut Store,
    idx: &ArchiveIndex,
    r: &mut R,
    plan: &[PlannedImage],
    source: &str,
) -> Result<Vec<String>> {
    with_undo(inst, store, |store, layers| {
        let mut images = vec![];
        for img in plan {
            let mut size = 0;
            for l in &img.layers {
                let blob = idx
                    .open(r, &l.member)
                    .map_err(|reason| ImageError::InvalidArchive {
                        path: source.to_string(),
                        reason,
                    })?;
                let stored = ensure_layer(
                    inst,
                    store,
                    blob,
                    Some(&l.diff_id),
                    l.blob_digest.as_deref(),
                )
                .map_err(|e| layer_error(inst, source, e))?;
                size += stored.size;
                layers.push(stored);
            }
            let created = parse_config(&img.config)
                .ok()
                .and_then(|p| p.created)
                .unwrap_or_else(util::now_nanos);
            let config =
                String::from_utf8(img.config.clone()).map_err(|_| ImageError::InvalidArchive {
                    path: source.into(),
                    reason: "image config is not UTF-8".into(),
                })?;
            images.push(NewImage {
                row: rows::ImageRow {
                    id: img.id.clone(),
                    config,
                    layers: img.layers.iter().map(|l| l.diff_id.clone()).collect(),
                    size,
                    created,
                },
                names: img.names.clone(),
            });
        }
        commit_images(inst, store, layers, &images, "load")?;
        Ok(images
            .iter()
            .flat_map(|i| {
                if i.names.is_empty() {
                    vec![format!("sha256:{}", i.row.id)]
                } else {
                    i.names.clone()
                }
            })
            .collect())
    })
}

pub(super) fn load_seekable<R: Read + Seek>(
    inst: &Instance,
    store: &mut Store,
    r: &mut R,
    source: &str,
) -> Result<Vec<String>> {
    let invalid = |reason: String| ImageError::InvalidArchive {
        path: source.to_string(),
        reason,
    };
    let idx = ArchiveIndex::read(r).map_err(invalid)?;
    let plan = plan_archive(&idx, r).map_err(invalid)?;
    load_plan(inst, store, &idx, r, &plan, source)
}

/// Loads every image of a `docker save` or OCI image-layout archive (either
/// possibly gzipped). Returns the names loaded ("sha256:<id>" for an image
/// without a name). A bad archive leaves no rows, layer dirs or temp files.
pub fn load_archive(inst: &Instance, store: &mut Store, path: &Path) -> Result<Vec<String>> {
    let source = path.display().to_string();
    let invalid = |reason: String| ImageError::InvalidArchive {
        path: source.clone(),
        reason,
    };
    let mut f = File::open(path).map_err(|e| invalid(e.to_string()))?;
    let mut head = [0u8; 2];
    let n = f.read(&mut head).map_err(|e| invalid(e.to_string()))?;
    f.seek(SeekFrom::Start(0))
        .map_err(|e| invalid(e.to_string()))?;
    if !extract::is_gzip(&head[..n]) {
        return load_seekable(inst, store, &mut f, &source);
    }
    let plain = decompress(inst, f, &source)?;
    crate::fault::point("load-after-temp");
    let (tmp, mut plain) = plain;
    let r = load_seekable(inst, store, &mut plain, &source);
    drop(tmp);
    r
}

/// Decompresses a gzipped archive into a seekable temp file in the layers
/// dir (removed with the guard; a crash leaves it to `clean_stale`).
pub(super) fn decompress(inst: &Instance, f: File, source: &str) -> Result<(TempGuard, File)> {
    let invalid = |reason: String| ImageError::InvalidArchive {
        path: source.to_string(),
        reason,
    };
    // Members are read out of order: decompress to a seekable temp file
    // (named so a crash leaves something `clean_stale_temps` removes).
    prepare_layers_dir(inst)?;
    let tmp = TempGuard::new(inst.layers_dir().join(temp_name("tmp")));
    let mut plain = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(tmp.path())
        .map_err(io_other("cannot create", tmp.path()))?;
    let mut gz = flate2::read::MultiGzDecoder::new(io::BufReader::new(f));
    // Read errors are the archive's (bad gzip), write errors the host's (full disk).
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match gz.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(invalid(format!("bad gzip data ({e})"))),
        };
        io::Write::write_all(&mut plain, &buf[..n]).map_err(|e| {
            ImageError::Io(format!(
                "cannot store image layers in {}: {e}",
                inst.layers_dir().display()
            ))
        })?;
    }
    Ok((tmp, plain))
}

/// Loads the busybox image compiled into the binary.
pub(super) fn load_bundled(inst: &Instance, store: &mut Store) -> Result<Vec<String>> {
    load_seekable(
        inst,
        store,
        &mut Cursor::new(BUNDLED_BUSYBOX),
        "(bundled busybox image)",
    )
}

/// Imports a flat root filesystem tarball (possibly gzipped) as a one-layer
/// image named `reference`. The image has a default PATH and no command.
/// Returns "sha256:<id>".
pub fn import_rootfs(
    inst: &Instance,
    store: &mut Store,
    path: &Path,
    reference: &str,
) -> Result<String> {
    let name = normalize_reference(reference)?;
    let source = path.display().to_string();
    let invalid = |reason: String| ImageError::InvalidArchive {
        path: source.clone(),
        reason,
    };
    let f = File::open(path).map_err(|e| invalid(e.to_string()))?;
    with_undo(inst, store, |store, layers| {
        let f = f.try_clone().map_err(|e| invalid(e.to_string()))?;
        let mut f = f;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| invalid(e.to_string()))?;
        let l = ensure_layer(inst, store, io::BufReader::new(f), None, None)
            .map_err(|e| layer_error(inst, &source, e))?;
        let created = util::now_nanos();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "created": util::rfc3339(created),
            "config": { "Env": [crate::util::default_path_env()] },
            "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{}", l.digest)] },
        })
        .to_string();
        let img = NewImage {
            row: rows::ImageRow {
                id: sha256_hex(config.as_bytes()),
                config,
                layers: vec![l.digest.clone()],
                size: l.size,
                created,
            },
            names: vec![name.clone()],
        };
        layers.push(l);
        commit_images(inst, store, layers, std::slice::from_ref(&img), "import")?;
        Ok(format!("sha256:{}", img.row.id))
    })
}
