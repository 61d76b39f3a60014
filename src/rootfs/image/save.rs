//! `save`: images out as one tar stream, in `docker save`'s format
//! (manifest.json, repositories, `<config>.json`, `<diff id>/layer.tar`) or
//! as an OCI image layout (oci-layout, index.json, blobs/sha256/). Layers
//! are re-tarred by `export` (uncompressed), so the saved config names the
//! new tars; both formats load back through `load` and Podman's `load`.

use super::*;
use crate::store::images as rows;
use crate::store::Store;
use crate::Instance;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    DockerArchive,
    OciArchive,
}

impl SaveFormat {
    pub fn parse(s: &str) -> Result<SaveFormat> {
        match s {
            "docker-archive" | "docker" => Ok(SaveFormat::DockerArchive),
            "oci-archive" | "oci" => Ok(SaveFormat::OciArchive),
            f => Err(ImageError::Other(format!(
                "unknown save format {f:?} (use docker-archive or oci-archive)"
            ))),
        }
    }
}

/// One image to save: its rewritten config and the names it goes under.
struct Saved {
    config: Vec<u8>,
    config_hex: String,
    layers: Vec<String>,
    tags: Vec<String>,
}

fn hex_of(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn io_err(e: io::Error) -> ImageError {
    ImageError::Io(format!("cannot write the archive: {e}"))
}

fn append_bytes<W: Write>(b: &mut tar::Builder<W>, path: &str, data: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, path, data).map_err(io_err)
}

fn append_file<W: Write>(b: &mut tar::Builder<W>, path: &str, l: &ExportedLayer) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(l.size);
    let f = File::open(l.path()).map_err(io_err)?;
    b.append_data(&mut h, path, f).map_err(io_err)
}

/// Writes `names` (each a tag, id or id prefix) as one archive into `out`.
/// Every name is resolved before anything is written.
pub fn save<W: Write>(
    inst: &Instance,
    store: &mut Store,
    names: &[String],
    format: SaveFormat,
    out: W,
) -> Result<()> {
    let mut resolved = vec![];
    for n in names {
        let img = match resolve(inst, store, n) {
            Err(ImageError::NotFound(_)) => return Err(ImageError::NoSuchImage(n.clone())),
            r => r?,
        };
        let tag = normalize_reference(n).ok().filter(|t| {
            rows::image_id_by_tag(store.conn(), t).ok().flatten() == Some(img.id.clone())
        });
        resolved.push((img, tag));
    }
    // Each layer once, whatever number of images share it.
    let mut exported: BTreeMap<String, ExportedLayer> = BTreeMap::new();
    let mut saved: Vec<Saved> = vec![];
    for (img, tag) in resolved {
        if let Some(s) = saved.iter_mut().find(|s| s.layers == img.layers) {
            s.tags.extend(tag);
            continue;
        }
        let raw = rows::image(store.conn(), &img.id)?
            .map(|r| r.config.into_bytes())
            .ok_or_else(|| ImageError::NoSuchImage(img.id.clone()))?;
        let mut diff_ids = vec![];
        for l in &img.layers {
            if !exported.contains_key(l) {
                exported.insert(l.clone(), export_layer(inst, l, false)?);
            }
            if let Some(e) = exported.get(l) {
                diff_ids.push(e.diff_id.clone());
            }
        }
        let config = config_with_diff_ids(&raw, &diff_ids)?;
        saved.push(Saved {
            config_hex: hex_of(&config),
            config,
            layers: img.layers.clone(),
            tags: tag.into_iter().collect(),
        });
    }
    let mut b = tar::Builder::new(out);
    match format {
        SaveFormat::DockerArchive => write_docker(&mut b, &saved, &exported)?,
        SaveFormat::OciArchive => write_oci(&mut b, &saved, &exported)?,
    }
    names.iter().for_each(|n| {
        crate::container::events::record(store.conn(), "image", "save", n, &[("name", n)])
    });
    b.into_inner().map_err(io_err)?.flush().map_err(io_err)
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn write_docker<W: Write>(
    b: &mut tar::Builder<W>,
    saved: &[Saved],
    exported: &BTreeMap<String, ExportedLayer>,
) -> Result<()> {
    let mut manifest = vec![];
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut written = std::collections::HashSet::new();
    for s in saved {
        let mut paths = vec![];
        for l in &s.layers {
            let Some(e) = exported.get(l) else { continue };
            let path = format!("{}/layer.tar", hex(&e.diff_id));
            if written.insert(path.clone()) {
                append_file(b, &path, e)?;
            }
            paths.push(path);
        }
        append_bytes(b, &format!("{}.json", s.config_hex), &s.config)?;
        let top = paths
            .last()
            .map(|p| p.trim_end_matches("/layer.tar").to_string())
            .unwrap_or_default();
        for t in &s.tags {
            let (repo, tag) = split_tag(t);
            repositories
                .entry(repo.to_string())
                .or_default()
                .insert(tag.to_string(), top.clone());
        }
        manifest.push(serde_json::json!({
            "Config": format!("{}.json", s.config_hex),
            "RepoTags": if s.tags.is_empty() { serde_json::Value::Null } else { serde_json::json!(s.tags) },
            "Layers": paths,
        }));
    }
    let m = serde_json::to_vec(&manifest).map_err(|e| ImageError::Other(e.to_string()))?;
    append_bytes(b, "manifest.json", &m)?;
    if !repositories.is_empty() {
        let r = serde_json::to_vec(&repositories).map_err(|e| ImageError::Other(e.to_string()))?;
        append_bytes(b, "repositories", &r)?;
    }
    Ok(())
}

fn write_oci<W: Write>(
    b: &mut tar::Builder<W>,
    saved: &[Saved],
    exported: &BTreeMap<String, ExportedLayer>,
) -> Result<()> {
    use crate::rootfs::registry::manifest::{OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};
    append_bytes(b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut written = std::collections::HashSet::new();
    let mut index = vec![];
    for s in saved {
        let mut descs = vec![];
        for l in &s.layers {
            let Some(e) = exported.get(l) else { continue };
            let path = format!("blobs/sha256/{}", hex(&e.digest));
            if written.insert(path.clone()) {
                append_file(b, &path, e)?;
            }
            descs.push(serde_json::json!({
                "mediaType": OCI_LAYER_TAR, "digest": e.digest, "size": e.size,
            }));
        }
        let cpath = format!("blobs/sha256/{}", s.config_hex);
        if written.insert(cpath.clone()) {
            append_bytes(b, &cpath, &s.config)?;
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": format!("sha256:{}", s.config_hex), "size": s.config.len()},
            "layers": descs,
        }))
        .map_err(|e| ImageError::Other(e.to_string()))?;
        let mhex = hex_of(&manifest);
        let mpath = format!("blobs/sha256/{mhex}");
        if written.insert(mpath.clone()) {
            append_bytes(b, &mpath, &manifest)?;
        }
        let desc = |annotations: serde_json::Value| {
            serde_json::json!({
                "mediaType": OCI_MANIFEST, "digest": format!("sha256:{mhex}"),
                "size": manifest.len(), "annotations": annotations,
            })
        };
        if s.tags.is_empty() {
            index.push(desc(serde_json::json!({})));
        }
        for t in &s.tags {
            index.push(desc(serde_json::json!({
                "io.containerd.image.name": t,
                "org.opencontainers.image.ref.name": t,
            })));
        }
    }
    let idx = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": index}))
        .map_err(|e| ImageError::Other(e.to_string()))?;
    append_bytes(b, "index.json", &idx)
}
