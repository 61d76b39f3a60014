//! The two archive formats `load` reads, `docker save` (manifest.json) and
//! the OCI image layout (index.json, blobs), turned into a plan: every image
//! with its config and layers, validated before anything is written.

use super::*;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Seek};

/// One image an archive holds, validated before anything is written.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedImage {
    pub config: Vec<u8>,
    /// sha256 hex of `config`.
    pub id: String,
    /// Normalised names ("busybox:latest"); empty for an untagged image.
    pub names: Vec<String>,
    pub layers: Vec<PlannedLayer>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedLayer {
    /// Archive member holding the layer blob.
    pub member: String,
    /// Expected sha256 hex of the uncompressed tar.
    pub diff_id: String,
    /// Expected sha256 hex of the blob as stored (OCI descriptors give it).
    pub blob_digest: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SaveManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
pub(super) struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
pub(super) struct OciIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OciManifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

pub(crate) fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Reads the archive's manifests and configs (not the layers) into a plan.
/// `docker save` (manifest.json) wins over OCI layout when both are present.
pub fn plan_archive<R: Read + Seek>(
    idx: &ArchiveIndex,
    r: &mut R,
) -> std::result::Result<Vec<PlannedImage>, String> {
    if idx.contains("manifest.json") {
        plan_docker_save(idx, r)
    } else if idx.contains("index.json") {
        plan_oci(idx, r)
    } else {
        Err("not a docker save or OCI image archive (no manifest.json or index.json)".into())
    }
}

pub(super) fn plan_one(
    config: Vec<u8>,
    names: Vec<String>,
    members: Vec<(String, Option<String>)>,
) -> std::result::Result<PlannedImage, String> {
    let parsed = parse_config(&config)?;
    if parsed.diff_ids.len() != members.len() {
        return Err(format!(
            "the image config lists {} layers but the manifest {}",
            parsed.diff_ids.len(),
            members.len()
        ));
    }
    let layers = members
        .into_iter()
        .zip(parsed.diff_ids)
        .map(|((member, blob_digest), diff_id)| PlannedLayer {
            member,
            diff_id,
            blob_digest,
        })
        .collect();
    Ok(PlannedImage {
        id: sha256_hex(&config),
        config,
        names,
        layers,
    })
}

pub(super) fn plan_docker_save<R: Read + Seek>(
    idx: &ArchiveIndex,
    r: &mut R,
) -> std::result::Result<Vec<PlannedImage>, String> {
    let raw = idx.read_small(r, "manifest.json")?;
    let entries: Vec<SaveManifestEntry> =
        serde_json::from_slice(&raw).map_err(|e| format!("bad manifest.json: {e}"))?;
    if entries.is_empty() {
        return Err("manifest.json lists no images".into());
    }
    let mut out = vec![];
    for e in entries {
        let config = idx.read_small(r, &e.config)?;
        let names = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| normalize_reference(t).map_err(|e| e.to_string()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let members = e.layers.into_iter().map(|l| (l, None)).collect();
        out.push(plan_one(config, names, members)?);
    }
    Ok(out)
}

pub(super) const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(super) const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

pub(super) fn blob_path(digest: &str) -> std::result::Result<String, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("unsupported digest {digest:?}"))?;
    if !is_hex64(hex) {
        return Err(format!("bad digest {digest:?}"));
    }
    Ok(format!("blobs/sha256/{hex}"))
}

/// A blob read whole and checked against its digest.
pub(super) fn verified_blob<R: Read + Seek>(
    idx: &ArchiveIndex,
    r: &mut R,
    digest: &str,
) -> std::result::Result<Vec<u8>, String> {
    let b = idx.read_small(r, &blob_path(digest)?)?;
    if sha256_hex(&b) != strip_sha(digest) {
        return Err(format!("blob {digest} does not match its digest"));
    }
    Ok(b)
}

pub(super) fn oci_names(d: &Descriptor) -> std::result::Result<Vec<String>, String> {
    let full = d.annotations.get("io.containerd.image.name");
    let refname = d.annotations.get("org.opencontainers.image.ref.name");
    // A bare ref.name is only a tag ("latest") with no repository: untagged.
    let pick = full.or(refname.filter(|n| n.contains([':', '/'])));
    match pick {
        Some(n) => Ok(vec![normalize_reference(n).map_err(|e| e.to_string())?]),
        None => Ok(vec![]),
    }
}

pub(super) fn plan_oci<R: Read + Seek>(
    idx: &ArchiveIndex,
    r: &mut R,
) -> std::result::Result<Vec<PlannedImage>, String> {
    let raw = idx.read_small(r, "index.json")?;
    let index: OciIndex =
        serde_json::from_slice(&raw).map_err(|e| format!("bad index.json: {e}"))?;
    if index.manifests.is_empty() {
        return Err("index.json lists no images".into());
    }
    let mut out = vec![];
    for d in index.manifests {
        let names = oci_names(&d)?;
        let mut desc = d;
        // A multi-platform index: take the linux/amd64 manifest.
        for _ in 0..4 {
            if desc.media_type != MT_OCI_INDEX && desc.media_type != MT_DOCKER_LIST {
                break;
            }
            let nested: OciIndex = serde_json::from_slice(&verified_blob(idx, r, &desc.digest)?)
                .map_err(|e| format!("bad image index {}: {e}", desc.digest))?;
            desc = nested
                .manifests
                .into_iter()
                .find(|m| {
                    m.platform
                        .as_ref()
                        .is_none_or(|p| p.os == "linux" && p.architecture == "amd64")
                })
                .ok_or_else(|| "the image index has no linux/amd64 image".to_string())?;
        }
        let manifest: OciManifest =
            serde_json::from_slice(&verified_blob(idx, r, &desc.digest)?)
                .map_err(|e| format!("bad image manifest {}: {e}", desc.digest))?;
        let config = verified_blob(idx, r, &manifest.config.digest)?;
        let members = manifest
            .layers
            .iter()
            .map(|l| {
                Ok((
                    blob_path(&l.digest)?,
                    Some(strip_sha(&l.digest).to_string()),
                ))
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        out.push(plan_one(config, names, members)?);
    }
    Ok(out)
}
