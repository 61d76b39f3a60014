//! The image store: images by config digest, tags, and a content-addressed
//! layer store (`layers/<sha256 of the uncompressed tar>/`, extracted once).
//!
//! Contract used by the run path:
//! - `resolve(inst, store, "busybox") -> Image` (the bundled busybox image is
//!   loaded on first use without any load step)
//! - `layer_dir(inst, digest) -> PathBuf` (extracted layer, read-only lower dir)
//! - `load_archive`, `import_rootfs`, `list`, `remove`
//!
//! A layer is extracted into `layers/.tmp-<pid>-<rand>` and renamed into place,
//! so a layer dir is always complete and two processes loading the same layer
//! both succeed (the second rename loses and its copy is dropped). Rows are
//! written in one transaction that first checks, under the write lock, that
//! every layer dir is still there; `remove` deletes dirs under the same lock.

use super::archive::{self, ArchiveError};
use crate::store::images as rows;
use crate::store::{Store, StoreError};
use crate::util;
use crate::Instance;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("Unable to find image '{0}' locally")]
    NotFound(String),
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error("invalid reference format: {0}")]
    InvalidReference(String),
    #[error("image id prefix {0:?} is ambiguous: it matches several images")]
    Ambiguous(String),
    #[error("conflict: unable to remove image {image:?}: it is used by container(s) {containers}")]
    InUse { image: String, containers: String },
    #[error("invalid image archive {path}: {reason}")]
    InvalidArchive { path: String, reason: String },
    #[error("{0}")]
    Layer(#[from] ArchiveError),
    #[error(
        "image {image} is damaged: layer {layer} is missing (remove the image and load it again)"
    )]
    Damaged { image: String, layer: String },
    /// The host failed us (disk full, permissions), not the input.
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Other(String),
    #[error("{0}")]
    Registry(#[from] super::registry::RegistryError),
}

type Result<T> = std::result::Result<T, ImageError>;

/// The parts of an image config that a container runs with.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageConfig {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub healthcheck: Option<crate::container::health::HealthConfig>,
}

#[derive(Debug, Clone)]
pub struct Image {
    /// sha256 hex of the image config blob.
    pub id: String,
    /// Layer digests (sha256 hex of the uncompressed tar), bottom layer first.
    pub layers: Vec<String>,
    pub config: ImageConfig,
}

/// One line of `minirt images`: a tag (or `<none>`) and its image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageSummary {
    /// sha256 hex of the image config.
    pub id: String,
    /// "busybox", or "<none>" for an untagged image.
    pub repository: String,
    /// "latest", or "<none>".
    pub tag: String,
    /// The manifest digest this repository was pulled by ("sha256:..."), or "<none>".
    pub digest: String,
    /// Nanoseconds since the epoch.
    pub created: i64,
    /// Bytes of file content in the image's layers.
    pub size: i64,
}

/// `docker save` of busybox:latest built by scripts/build-busybox-image.
static BUNDLED_BUSYBOX: &[u8] = include_bytes!("../../images/busybox.tar");
const BUNDLED_NAME: &str = "busybox:latest";
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ---------------------------------------------------------------- references

/// Docker's normalisation: "busybox" -> "busybox:latest",
/// "docker.io/library/busybox:1" -> "busybox:1", "localhost:5000/x" -> "localhost:5000/x:latest".
pub fn normalize_reference(reference: &str) -> Result<String> {
    let bad = |why: &str| ImageError::InvalidReference(format!("{why} ({reference:?})"));
    if reference.is_empty() {
        return Err(bad("empty image name"));
    }
    if reference.contains('@') {
        return Err(bad("digest references are not supported; use the image id"));
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], &reference[slash + i + 1..]),
        None => (reference, "latest"),
    };
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && !tag.starts_with(['.', '-']);
    if !tag_ok {
        return Err(bad("invalid tag"));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let mut domain = None;
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        domain = Some(parts.remove(0));
    }
    if matches!(
        domain,
        Some("docker.io" | "index.docker.io" | "registry-1.docker.io")
    ) {
        domain = None;
    }
    if domain.is_none() && parts.len() == 2 && parts[0] == "library" {
        parts.remove(0);
    }
    if let Some(d) = domain {
        if !d
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-:".contains(c))
        {
            return Err(bad("invalid registry name"));
        }
    }
    for p in &parts {
        if p.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad("repository name must be lowercase"));
        }
        let ok = !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && p.starts_with(|c: char| c.is_ascii_alphanumeric())
            && p.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err(bad("invalid repository name"));
        }
    }
    let path = parts.join("/");
    Ok(match domain {
        Some(d) => format!("{d}/{path}:{tag}"),
        None => format!("{path}:{tag}"),
    })
}

/// Splits a normalised "repo:tag" at the tag's colon.
pub fn split_tag(name: &str) -> (&str, &str) {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], &name[slash + i + 1..]),
        None => (name, "latest"),
    }
}

/// An image id or id prefix, with or without "sha256:": lowercase hex.
fn id_prefix(s: &str) -> Option<&str> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    let ok = !hex.is_empty()
        && hex.len() <= 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then_some(hex)
}

fn strip_sha(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap_or(d)
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

// ---------------------------------------------------------------- configs

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RunConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
    #[serde(default)]
    created: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    stop_signal: Option<String>,
    #[serde(default)]
    healthcheck: Option<crate::container::health::HealthConfig>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// What the store needs from an image config blob.
#[derive(Debug, PartialEq)]
pub struct ParsedConfig {
    pub config: ImageConfig,
    /// Layer diff ids (hex), bottom first.
    pub diff_ids: Vec<String>,
    /// `created`, in nanoseconds since the epoch, when present and valid.
    pub created: Option<i64>,
}

pub fn parse_config(raw: &[u8]) -> std::result::Result<ParsedConfig, String> {
    let f: ConfigFile =
        serde_json::from_slice(raw).map_err(|e| format!("bad image config: {e}"))?;
    let rc = f.config.unwrap_or_default();
    let config = ImageConfig {
        env: rc.env.unwrap_or_default(),
        entrypoint: rc.entrypoint,
        cmd: rc.cmd,
        working_dir: rc.working_dir.unwrap_or_default(),
        user: rc.user.unwrap_or_default(),
        stop_signal: rc.stop_signal.filter(|s| !s.is_empty()),
        healthcheck: rc.healthcheck,
    };
    let mut diff_ids = vec![];
    for d in f.rootfs.map(|r| r.diff_ids).unwrap_or_default() {
        let hex = d
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("unsupported layer digest {d:?}"))?;
        if !is_hex64(hex) {
            return Err(format!("bad layer digest {d:?}"));
        }
        diff_ids.push(hex.to_string());
    }
    Ok(ParsedConfig {
        config,
        diff_ids,
        created: f.created.as_deref().and_then(parse_rfc3339),
    })
}

/// "2024-01-02T03:04:05.123Z" / "+01:00" offsets -> nanoseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let digits = &frac[..n.min(9)];
        nanos = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":" =>
        {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Howard Hinnant's days_from_civil: (year, month, day) -> days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------- archive plans

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

/// Where each member of an outer archive lies, so members are read in any
/// order without unpacking the archive.
pub struct ArchiveIndex {
    members: HashMap<String, Member>,
}

enum Member {
    File {
        offset: u64,
        size: u64,
    },
    /// Symlink (target relative to the member's directory) or hardlink
    /// (target relative to the archive root), already made root-relative.
    Link(String),
}

fn member_name(raw: &[u8]) -> Option<String> {
    let p = archive::clean_entry_path(raw).ok()??;
    Some(p.to_string_lossy().into_owned())
}

impl ArchiveIndex {
    /// Reads every header (skipping the data by seeking) and checks that each
    /// member's data lies inside the file.
    pub fn read<R: Read + Seek>(r: &mut R) -> std::result::Result<ArchiveIndex, String> {
        let len = r.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
        r.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        let mut members = HashMap::new();
        let mut ar = tar::Archive::new(&mut *r);
        let entries = ar.entries_with_seek().map_err(|e| e.to_string())?;
        let mut data_end = 0;
        for e in entries {
            let e = e.map_err(|e| {
                format!(
                    "not a tar archive or damaged ({})",
                    archive::describe_tar_error(&e)
                )
            })?;
            let Some(name) = member_name(&e.path_bytes()) else {
                continue;
            };
            let (offset, size) = (e.raw_file_position(), e.size());
            if offset.checked_add(size).is_none_or(|end| end > len) {
                return Err(format!("the archive is truncated ({name} is cut short)"));
            }
            let kind = e.header().entry_type();
            let link = || e.link_name_bytes().map(|l| l.into_owned());
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    members.insert(name, Member::File { offset, size });
                }
                tar::EntryType::Symlink => {
                    if let Some(t) = link() {
                        let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
                        let joined = dir.join(std::ffi::OsStr::from_bytes(&t));
                        if let Some(target) = member_name(joined.as_os_str().as_encoded_bytes()) {
                            members.insert(name, Member::Link(target));
                        }
                    }
                }
                tar::EntryType::Link => {
                    if let Some(target) = link().and_then(|t| member_name(&t)) {
                        members.insert(name, Member::Link(target));
                    }
                }
                _ => {}
            }
            data_end = offset + size.div_ceil(512) * 512;
        }
        // A complete archive ends with two zero blocks; without them it was
        // cut at a member boundary.
        if data_end > 0 && data_end + 1024 > len {
            return Err("the archive is truncated (no end-of-archive marker)".into());
        }
        Ok(ArchiveIndex { members })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.locate(name).is_some()
    }

    fn locate(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = member_name(name.as_bytes())?;
        for _ in 0..16 {
            match self.members.get(&name)? {
                Member::File { offset, size } => return Some((*offset, *size)),
                Member::Link(t) => name = t.clone(),
            }
        }
        None
    }

    /// A reader over one member's data.
    pub fn open<'a, R: Read + Seek>(
        &self,
        r: &'a mut R,
        name: &str,
    ) -> std::result::Result<io::Take<&'a mut R>, String> {
        let (offset, size) = self
            .locate(name)
            .ok_or_else(|| format!("{name} is missing from the archive"))?;
        r.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
        Ok(r.take(size))
    }

    /// A small member (JSON) read whole.
    pub fn read_small<R: Read + Seek>(
        &self,
        r: &mut R,
        name: &str,
    ) -> std::result::Result<Vec<u8>, String> {
        let (_, size) = self
            .locate(name)
            .ok_or_else(|| format!("{name} is missing from the archive"))?;
        if size > 64 << 20 {
            return Err(format!("{name} is implausibly large ({size} bytes)"));
        }
        let mut buf = Vec::with_capacity(size as usize);
        self.open(r, name)?
            .read_to_end(&mut buf)
            .map_err(|e| e.to_string())?;
        if buf.len() as u64 != size {
            return Err(format!("the archive is truncated ({name} is cut short)"));
        }
        Ok(buf)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciManifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

fn sha256_hex(b: &[u8]) -> String {
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

fn plan_one(
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

fn plan_docker_save<R: Read + Seek>(
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

const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

fn blob_path(digest: &str) -> std::result::Result<String, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("unsupported digest {digest:?}"))?;
    if !is_hex64(hex) {
        return Err(format!("bad digest {digest:?}"));
    }
    Ok(format!("blobs/sha256/{hex}"))
}

/// A blob read whole and checked against its digest.
fn verified_blob<R: Read + Seek>(
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

fn oci_names(d: &Descriptor) -> std::result::Result<Vec<String>, String> {
    let full = d.annotations.get("io.containerd.image.name");
    let refname = d.annotations.get("org.opencontainers.image.ref.name");
    // A bare ref.name is only a tag ("latest") with no repository: untagged.
    let pick = full.or(refname.filter(|n| n.contains([':', '/'])));
    match pick {
        Some(n) => Ok(vec![normalize_reference(n).map_err(|e| e.to_string())?]),
        None => Ok(vec![]),
    }
}

fn plan_oci<R: Read + Seek>(
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

// ---------------------------------------------------------------- layer store

/// The extracted layer with this digest ("sha256:" prefix optional).
pub fn layer_dir(inst: &Instance, digest: &str) -> PathBuf {
    inst.layers_dir().join(strip_sha(digest))
}

fn temp_name(kind: &str) -> String {
    format!(".{kind}-{}-{}", std::process::id(), &util::new_id()[..12])
}

/// Removes what a crashed minirt left in the layers dir: `.tmp-PID-*` and
/// `.del-PID-*` entries whose process is gone.
fn clean_stale_temps(layers: &Path) {
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
pub fn clean_stale(inst: &Instance) {
    clean_stale_temps(&inst.layers_dir());
}

/// Rolls back a layer dir a killed load renamed into place: it goes unless
/// its row got committed (checked under the write lock, like `undo_layers`).
pub fn undo_orphan_layer(inst: &Instance, digest: &str) -> Result<()> {
    let mut store = Store::open(&inst.db_path())?;
    store.write(|tx| {
        if rows::layer_size(tx, digest)?.is_none() {
            remove_any(&layer_dir(inst, digest))
                .map_err(io_other("cannot remove", &layer_dir(inst, digest)))?;
        }
        Ok(())
    })
}

fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes a path on drop unless disarmed (temp dirs and files).
struct TempGuard(Option<PathBuf>);

impl TempGuard {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = remove_any(&p);
        }
    }
}

fn io_other(what: &str, p: &Path) -> impl FnOnce(io::Error) -> ImageError {
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
fn ensure_layer<R: Read>(
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
                None => archive::tree_size(&dir) as i64,
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
    let mut tmp = TempGuard(Some(layers.join(temp_name("tmp"))));
    fs::create_dir(tmp.path()).map_err(io_other("cannot create", tmp.path()))?;
    let started = std::time::Instant::now();
    let x = archive::extract_layer(blob, tmp.path())?;
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
            tmp.disarm();
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
fn layer_error(inst: &Instance, source: &str, e: ImageError) -> ImageError {
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
struct NewImage {
    row: rows::ImageRow,
    names: Vec<String>,
}

/// Raised inside the write transaction when a layer dir vanished (removed by
/// a concurrent `rmi` or a failed load); the caller retries.
const VANISHED: &str = "layer vanished while loading";

fn commit_images(
    inst: &Instance,
    store: &mut Store,
    layers: &[StoredLayer],
    images: &[NewImage],
) -> Result<()> {
    let now = util::now_nanos();
    store.write(|tx| {
        for l in layers {
            if !layer_dir(inst, &l.digest).is_dir() {
                return Err(ImageError::Other(format!(
                    "{VANISHED}: sha256:{}",
                    l.digest
                )));
            }
            rows::insert_layer(tx, &l.digest, l.size, now)?;
        }
        for img in images {
            rows::insert_image(tx, &img.row)?;
            for n in &img.names {
                rows::set_tag(tx, n, &img.row.id)?;
            }
        }
        Ok(())
    })
}

/// Undo for a failed load: drops the layer dirs this load created that no
/// row claims (checked under the write lock, so a concurrent load that
/// already committed keeps its layer).
fn undo_layers(inst: &Instance, store: &mut Store, layers: &[StoredLayer]) {
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

fn load_plan<R: Read + Seek>(
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
        commit_images(inst, store, layers, &images)?;
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

fn load_seekable<R: Read + Seek>(
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
    if !archive::is_gzip(&head[..n]) {
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
fn decompress(inst: &Instance, f: File, source: &str) -> Result<(TempGuard, File)> {
    let invalid = |reason: String| ImageError::InvalidArchive {
        path: source.to_string(),
        reason,
    };
    // Members are read out of order: decompress to a seekable temp file
    // (named so a crash leaves something `clean_stale_temps` removes).
    prepare_layers_dir(inst)?;
    let tmp = TempGuard(Some(inst.layers_dir().join(temp_name("tmp"))));
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
fn load_bundled(inst: &Instance, store: &mut Store) -> Result<Vec<String>> {
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
            "config": { "Env": [DEFAULT_PATH] },
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
        commit_images(inst, store, layers, std::slice::from_ref(&img))?;
        Ok(format!("sha256:{}", img.row.id))
    })
}

// ---------------------------------------------------------------- registry pulls

/// Writes a pulled image's rows in one transaction: its layers (checked to
/// be still in place, as `commit_images` does), the image, its tag and the
/// manifest digest it was pulled by.
pub(crate) fn commit_pulled(
    inst: &Instance,
    store: &mut Store,
    layers: &[StoredLayer],
    row: &rows::ImageRow,
    tag: Option<&str>,
    repo_digest: Option<(&str, &str)>,
) -> Result<()> {
    let now = util::now_nanos();
    store.write(|tx| {
        for l in layers {
            if !layer_dir(inst, &l.digest).is_dir() {
                return Err(ImageError::Other(format!(
                    "{VANISHED}: sha256:{}",
                    l.digest
                )));
            }
            rows::insert_layer(tx, &l.digest, l.size, now)?;
        }
        if rows::image(tx, &row.id)?.is_none() {
            rows::insert_image(tx, row)?;
        }
        if let Some(t) = tag {
            rows::set_tag(tx, t, &row.id)?;
        }
        if let Some((repo, digest)) = repo_digest {
            rows::set_repo_digest(tx, repo, digest, &row.id)?;
        }
        Ok(())
    })
}

/// Points the tag `target` at the image `source` names (`minirt tag`).
pub fn tag(inst: &Instance, store: &mut Store, source: &str, target: &str) -> Result<()> {
    let name = normalize_reference(target)?;
    let img =
        find(inst, store, source)?.ok_or_else(|| ImageError::NoSuchImage(source.to_string()))?;
    store.write(|tx| {
        if rows::image(tx, &img.id)?.is_none() {
            return Err(ImageError::NoSuchImage(source.to_string()));
        }
        rows::set_tag(tx, &name, &img.id)?;
        Ok(())
    })
}

/// `image prune`: removes dangling images (no tag, no repo digest), or with
/// `all` every image no container uses. Returns the removal lines and the
/// bytes of the image rows removed.
pub fn prune(inst: &Instance, store: &mut Store, all: bool) -> Result<(Vec<String>, i64)> {
    let c = store.conn();
    let tags = rows::all_tags(c)?;
    let digests = rows::all_repo_digests(c)?;
    let mut doomed = vec![];
    for img in rows::all_images(c)? {
        let named = tags.iter().any(|(_, id)| *id == img.id)
            || digests.iter().any(|(_, _, id)| *id == img.id);
        if (all || !named) && rows::containers_using(c, &img.id)?.is_empty() {
            doomed.push((img.id, img.size));
        }
    }
    let mut lines = vec![];
    let mut reclaimed = 0;
    for (id, size) in doomed {
        match remove(inst, store, &id) {
            Ok(l) => {
                reclaimed += size;
                lines.extend(l);
            }
            // Taken by a container created meanwhile: not ours to prune.
            Err(ImageError::InUse { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((lines, reclaimed))
}

/// The size of a layer already in the store, or None when it must be fetched.
pub(crate) fn present_layer(inst: &Instance, store: &Store, diff_id: &str) -> Result<Option<i64>> {
    let dir = layer_dir(inst, diff_id);
    if !dir.is_dir() {
        return Ok(None);
    }
    Ok(Some(match rows::layer_size(store.conn(), diff_id)? {
        Some(s) => s,
        None => archive::tree_size(&dir) as i64,
    }))
}

// ---------------------------------------------------------------- queries

fn to_image(row: rows::ImageRow) -> Result<Image> {
    let parsed = parse_config(row.config.as_bytes()).map_err(ImageError::Other)?;
    Ok(Image {
        id: row.id,
        layers: row.layers,
        config: parsed.config,
    })
}

/// The image id `name` refers to: a tag first, then an id or id prefix.
fn lookup_id(c: &rusqlite::Connection, name: &str) -> Result<Option<(String, Option<String>)>> {
    if name.contains('@') {
        let r = super::registry::Reference::parse(name).map_err(ImageError::Other)?;
        let digest = r.digest.as_deref().unwrap_or_default();
        let id = rows::image_id_by_digest(c, &r.familiar_repository(), digest)?;
        return Ok(id.map(|id| (id, None)));
    }
    if let Ok(tag) = normalize_reference(name) {
        if let Some(id) = rows::image_id_by_tag(c, &tag)? {
            return Ok(Some((id, Some(tag))));
        }
    }
    if let Some(prefix) = id_prefix(name) {
        let ids = rows::image_ids_with_prefix(c, prefix)?;
        match ids.len() {
            0 => {}
            1 => return Ok(ids.into_iter().next().map(|id| (id, None))),
            _ => return Err(ImageError::Ambiguous(name.to_string())),
        }
    }
    Ok(None)
}

fn find(inst: &Instance, store: &Store, name: &str) -> Result<Option<Image>> {
    let Some((id, _)) = lookup_id(store.conn(), name)? else {
        return Ok(None);
    };
    let Some(row) = rows::image(store.conn(), &id)? else {
        return Ok(None);
    };
    for l in &row.layers {
        if !layer_dir(inst, l).is_dir() {
            return Err(ImageError::Damaged {
                image: name.to_string(),
                layer: format!("sha256:{l}"),
            });
        }
    }
    Ok(Some(to_image(row)?))
}

/// The image `name` refers to: "busybox", "busybox:latest",
/// "docker.io/library/busybox:latest", an image id or a unique id prefix
/// (with or without "sha256:"). busybox:latest is loaded from the bundled
/// archive on first use.
pub fn resolve(inst: &Instance, store: &mut Store, name: &str) -> Result<Image> {
    let reference = normalize_reference(name).ok();
    let bundled = reference.as_deref() == Some(BUNDLED_NAME);
    match find(inst, store, name) {
        Ok(Some(img)) => return Ok(img),
        Ok(None) => {}
        // The bundled image heals itself: loading again re-extracts the layer.
        Err(ImageError::Damaged { .. }) if bundled => {}
        Err(e) => return Err(e),
    }
    if bundled {
        load_bundled(inst, store)?;
        if let Some(img) = find(inst, store, name)? {
            return Ok(img);
        }
    }
    Err(ImageError::NotFound(
        reference.unwrap_or_else(|| name.to_string()),
    ))
}

/// Every tag with its image, then untagged images; newest first.
pub fn list(store: &Store) -> Result<Vec<ImageSummary>> {
    let c = store.conn();
    let images = rows::all_images(c)?;
    let tags = rows::all_tags(c)?;
    let digests = rows::all_repo_digests(c)?;
    let mut out = vec![];
    for img in &images {
        let mine: Vec<&String> = tags
            .iter()
            .filter(|(_, id)| *id == img.id)
            .map(|(t, _)| t)
            .collect();
        let summary = |repository: &str, tag: &str| ImageSummary {
            id: img.id.clone(),
            repository: repository.to_string(),
            tag: tag.to_string(),
            digest: digests
                .iter()
                .find(|(r, _, id)| *id == img.id && r == repository)
                .map_or_else(|| "<none>".to_string(), |(_, d, _)| d.clone()),
            created: img.created,
            size: img.size,
        };
        if mine.is_empty() {
            match digests.iter().find(|(_, _, id)| *id == img.id) {
                Some((repo, _, _)) => out.push(summary(repo, "<none>")),
                None => out.push(summary("<none>", "<none>")),
            }
        }
        for t in mine {
            let (repo, tag) = split_tag(t);
            out.push(summary(repo, tag));
        }
    }
    Ok(out)
}

/// Removes a tag (by name) or an image with all its tags (by id), then the
/// image once no tag is left, then each of its layers no other image uses.
/// Refused while a container uses the image. Returns Docker's
/// "Untagged: ..." / "Deleted: sha256:..." lines.
pub fn remove(inst: &Instance, store: &mut Store, name: &str) -> Result<Vec<String>> {
    let layers_dir = inst.layers_dir();
    let (lines, doomed) = store.write(|tx| {
        let (id, tag) =
            lookup_id(tx, name)?.ok_or_else(|| ImageError::NoSuchImage(name.to_string()))?;
        let users = rows::containers_using(tx, &id)?;
        if !users.is_empty() {
            return Err(ImageError::InUse {
                image: name.to_string(),
                containers: users.join(", "),
            });
        }
        let mut lines = vec![];
        let untag = match tag {
            Some(t) => vec![t],
            None => rows::tags_of(tx, &id)?,
        };
        for t in untag {
            rows::delete_tag(tx, &t)?;
            lines.push(format!("Untagged: {t}"));
        }
        let mut doomed = vec![];
        if rows::tags_of(tx, &id)?.is_empty() {
            let row = rows::image(tx, &id)?;
            rows::delete_image(tx, &id)?;
            lines.push(format!("Deleted: sha256:{id}"));
            for l in row.map(|r| r.layers).unwrap_or_default() {
                if rows::layer_in_use(tx, &l)? {
                    continue;
                }
                rows::delete_layer(tx, &l)?;
                // Renamed under the write lock so a concurrent load either
                // sees the layer gone or commits before we decide.
                let dir = layer_dir(inst, &l);
                if dir.is_dir() {
                    let gone = layers_dir.join(temp_name("del"));
                    fs::rename(&dir, &gone).map_err(io_other("cannot remove layer", &dir))?;
                    doomed.push(gone);
                }
                lines.push(format!("Deleted: sha256:{l}"));
            }
        }
        Ok((lines, doomed))
    })?;
    for d in doomed {
        if let Err(e) = fs::remove_dir_all(&d) {
            tracing::warn!("cannot delete {}: {e}", d.display());
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::super::archive::testtar::{gzip, TarWriter};
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Host {
        _tmp: tempfile::TempDir,
        inst: Instance,
    }

    fn host() -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let inst = Instance::new(&tmp.path().join("root"), &tmp.path().join("run")).unwrap();
        Host { _tmp: tmp, inst }
    }

    impl Host {
        fn store(&self) -> Store {
            Store::open(&self.inst.db_path()).unwrap()
        }
        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let p = self.inst.root.parent().unwrap().join(name);
            fs::write(&p, bytes).unwrap();
            p
        }
        /// Entries of the layers dir (layer dirs and any temp leftovers).
        fn layer_entries(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(self.inst.layers_dir())
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        }
        fn count(&self, table: &str) -> i64 {
            self.store()
                .conn()
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        }
    }

    fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = TarWriter::default();
        for (p, d) in files {
            w.file(p, d);
        }
        w.finish()
    }

    fn config_for(layers: &[&[u8]], cmd: &str) -> Vec<u8> {
        let ids: Vec<String> = layers
            .iter()
            .map(|l| format!("sha256:{}", sha256_hex(l)))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "created": "2024-01-02T03:04:05Z",
            "config": {"Env": ["PATH=/bin"], "Entrypoint": null, "Cmd": [cmd], "WorkingDir": "/w", "User": "1:2"},
            "rootfs": {"type": "layers", "diff_ids": ids},
        }))
        .unwrap()
    }

    /// A `docker save` archive of images (tags, layers).
    fn docker_save(images: &[(&[&str], &[&[u8]])]) -> Vec<u8> {
        let mut w = TarWriter::default();
        let mut manifest = vec![];
        let mut written = std::collections::HashSet::new();
        for (tags, layers) in images {
            let config = config_for(layers, "sh");
            let cid = sha256_hex(&config);
            w.file(&format!("{cid}.json"), &config);
            let mut names = vec![];
            for l in *layers {
                let name = format!("{}/layer.tar", sha256_hex(l));
                if written.insert(name.clone()) {
                    w.file(&name, l);
                }
                names.push(name);
            }
            manifest.push(serde_json::json!({"Config": format!("{cid}.json"), "RepoTags": tags, "Layers": names}));
        }
        w.file(
            "manifest.json",
            serde_json::to_string(&manifest).unwrap().as_bytes(),
        );
        w.finish()
    }

    /// An OCI image layout with gzipped layers behind a multi-platform index.
    fn oci_layout(name: &str, layers: &[&[u8]]) -> (Vec<u8>, String) {
        let mut w = TarWriter::default();
        w.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        let config = config_for(layers, "oci");
        let blob = |w: &mut TarWriter, b: &[u8]| {
            let d = sha256_hex(b);
            w.file(&format!("blobs/sha256/{d}"), b);
            format!("sha256:{d}")
        };
        let cdig = blob(&mut w, &config);
        let descs: Vec<_> = layers
            .iter()
            .map(|l| {
                let gz = gzip(l);
                serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(&mut w, &gz), "size": gz.len()})
            })
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        let mdig = blob(&mut w, &manifest);
        let nested = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", "0".repeat(64)), "platform": {"os": "linux", "architecture": "arm64"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig, "platform": {"os": "linux", "architecture": "amd64"}},
            ],
        }))
        .unwrap();
        let ndig = blob(&mut w, &nested);
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": MT_OCI_INDEX, "digest": ndig,
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"},
        }]});
        w.file("index.json", index.to_string().as_bytes());
        (w.finish(), sha256_hex(&config))
    }

    #[test]
    fn references_normalise_like_docker() {
        let n = |s: &str| normalize_reference(s).map_err(|e| e.to_string());
        assert_eq!(n("busybox").unwrap(), "busybox:latest");
        assert_eq!(n("busybox:1.36").unwrap(), "busybox:1.36");
        assert_eq!(
            n("docker.io/library/busybox:latest").unwrap(),
            "busybox:latest"
        );
        assert_eq!(
            n("index.docker.io/library/busybox").unwrap(),
            "busybox:latest"
        );
        assert_eq!(n("library/busybox").unwrap(), "busybox:latest");
        assert_eq!(n("docker.io/me/app").unwrap(), "me/app:latest");
        assert_eq!(
            n("localhost:5000/app").unwrap(),
            "localhost:5000/app:latest"
        );
        assert_eq!(n("quay.io/a/b:v1").unwrap(), "quay.io/a/b:v1");
        assert!(n("BusyBox").unwrap_err().contains("lowercase"));
        assert!(n("").is_err());
        assert!(n("a:").is_err());
        assert!(n("a::b").is_err());
        assert!(n("busybox@sha256:abc").is_err());
        assert!(n("-x").is_err());
        assert_eq!(
            split_tag("localhost:5000/app:v1"),
            ("localhost:5000/app", "v1")
        );
    }

    #[test]
    fn configs_and_times_parse() {
        let p = parse_config(&config_for(&[b"x"], "sh")).unwrap();
        assert_eq!(p.config.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(p.config.entrypoint, None);
        assert_eq!(p.config.env, vec!["PATH=/bin"]);
        assert_eq!(
            (p.config.working_dir.as_str(), p.config.user.as_str()),
            ("/w", "1:2")
        );
        assert_eq!(p.diff_ids, vec![sha256_hex(b"x")]);
        assert_eq!(p.created, Some(1_704_164_645_000_000_000));
        assert!(parse_config(br#"{"rootfs":{"diff_ids":["md5:1"]}}"#).is_err());
        assert!(parse_config(b"not json").is_err());
        assert_eq!(parse_config(b"{}").unwrap().config, ImageConfig::default());
        let p = parse_config(
            br#"{"config":{"StopSignal":"SIGQUIT","Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":1000000000}}}"#,
        )
        .unwrap();
        assert_eq!(p.config.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(p.config.healthcheck.unwrap().interval, 1_000_000_000);
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.123456789Z"),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn docker_save_loads_resolves_lists_and_removes() {
        let h = host();
        let mut st = h.store();
        let base = layer(&[("bin/tool", b"base")]);
        let top = layer(&[("etc/app", b"top")]);
        let other = layer(&[("other", b"o")]);
        let arch = docker_save(&[
            (&["app:1", "docker.io/library/app:2"], &[&base, &top]),
            (&["other:latest"], &[&base, &other]),
        ]);
        let path = h.write("save.tar", &arch);
        let names = load_archive(&h.inst, &mut st, &path).unwrap();
        assert_eq!(names, vec!["app:1", "app:2", "other:latest"]);
        assert_eq!(
            h.layer_entries().len(),
            3,
            "the shared layer is stored once"
        );
        let img = resolve(&h.inst, &mut st, "app:2").unwrap();
        assert_eq!(img.layers, vec![sha256_hex(&base), sha256_hex(&top)]);
        assert_eq!(img.config.cmd, Some(vec!["sh".into()]));
        assert_eq!(
            fs::read(layer_dir(&h.inst, &img.layers[1]).join("etc/app")).unwrap(),
            b"top"
        );
        // By id, id prefix, sha256: prefix.
        assert_eq!(resolve(&h.inst, &mut st, &img.id).unwrap().id, img.id);
        assert_eq!(
            resolve(&h.inst, &mut st, &format!("sha256:{}", &img.id[..10]))
                .unwrap()
                .id,
            img.id
        );
        assert!(
            matches!(resolve(&h.inst, &mut st, "nope"), Err(ImageError::NotFound(n)) if n == "nope:latest")
        );
        let l = list(&st).unwrap();
        assert_eq!(l.len(), 3);
        assert!(l.iter().any(|s| s.repository == "app"
            && s.tag == "1"
            && s.created == 1_704_164_645_000_000_000
            && s.size == 7));
        // Loading again changes nothing.
        assert_eq!(load_archive(&h.inst, &mut st, &path).unwrap().len(), 3);
        assert_eq!(
            (h.count("images"), h.count("layers"), h.count("image_tags")),
            (2, 3, 3)
        );

        assert_eq!(
            remove(&h.inst, &mut st, "app:1").unwrap(),
            vec!["Untagged: app:1"]
        );
        assert_eq!(h.count("images"), 2, "app:2 still names the image");
        let out = remove(&h.inst, &mut st, "app:2").unwrap();
        assert_eq!(out[0], "Untagged: app:2");
        assert_eq!(out[1], format!("Deleted: sha256:{}", img.id));
        assert_eq!(out.len(), 3, "only the top layer goes: {out:?}");
        assert!(!layer_dir(&h.inst, &sha256_hex(&top)).exists());
        assert!(
            layer_dir(&h.inst, &sha256_hex(&base)).is_dir(),
            "other still uses the base layer"
        );
        let other_id = resolve(&h.inst, &mut st, "other").unwrap().id;
        remove(&h.inst, &mut st, &other_id[..8]).unwrap();
        assert_eq!(
            (h.count("images"), h.count("layers"), h.count("image_tags")),
            (0, 0, 0)
        );
        assert!(h.layer_entries().is_empty(), "{:?}", h.layer_entries());
        assert!(matches!(
            remove(&h.inst, &mut st, "app:1"),
            Err(ImageError::NoSuchImage(_))
        ));
    }

    #[test]
    fn removal_is_refused_while_a_container_uses_the_image() {
        let h = host();
        let mut st = h.store();
        let path = h.write(
            "s.tar",
            &docker_save(&[(&["app:1"], &[&layer(&[("f", b"1")])])]),
        );
        load_archive(&h.inst, &mut st, &path).unwrap();
        let id = resolve(&h.inst, &mut st, "app:1").unwrap().id;
        st.conn()
            .execute(
                "INSERT INTO containers (id, name, image, image_id, command, config, status, created)
                 VALUES ('c1', 'web', 'app:1', ?1, '[]', '{}', 'exited', 0)",
                [&id],
            )
            .unwrap();
        let e = remove(&h.inst, &mut st, "app:1").unwrap_err();
        assert!(e.to_string().contains("web"), "{e}");
        assert_eq!(h.count("image_tags"), 1);
        assert_eq!(h.layer_entries().len(), 1);
    }

    #[test]
    fn oci_layout_with_gzipped_layers_and_an_index_loads() {
        let h = host();
        let mut st = h.store();
        let l1 = layer(&[("a", b"1")]);
        let (arch, id) = oci_layout("docker.io/library/ociimg:v2", &[&l1]);
        let path = h.write("oci.tar.gz", &gzip(&arch));
        assert_eq!(
            load_archive(&h.inst, &mut st, &path).unwrap(),
            vec!["ociimg:v2"]
        );
        let img = resolve(&h.inst, &mut st, "ociimg:v2").unwrap();
        assert_eq!(img.id, id);
        assert_eq!(
            img.layers,
            vec![sha256_hex(&l1)],
            "stored by the uncompressed digest"
        );
        assert_eq!(img.config.cmd, Some(vec!["oci".into()]));
        assert_eq!(
            h.layer_entries(),
            vec![sha256_hex(&l1)],
            "the gunzipped temp copy is gone"
        );
    }

    #[test]
    fn oci_blobs_that_do_not_match_their_digest_are_refused() {
        let h = host();
        let mut st = h.store();
        let (mut arch, _) = oci_layout("bad:1", &[&layer(&[("a", b"1")])]);
        // Flip a byte inside the gzipped layer blob (the first blob after oci-layout + config).
        let gz = gzip(&layer(&[("a", b"1")]));
        let at = arch
            .windows(gz.len())
            .position(|w| w == gz.as_slice())
            .unwrap();
        arch[at + gz.len() - 3] ^= 0xff;
        let e = load_archive(&h.inst, &mut st, &h.write("bad.tar", &arch)).unwrap_err();
        assert!(matches!(e, ImageError::InvalidArchive { .. }), "{e}");
        assert_eq!((h.count("images"), h.count("layers")), (0, 0));
        assert!(h.layer_entries().is_empty(), "{:?}", h.layer_entries());
    }

    #[test]
    fn truncated_or_foreign_archives_leave_nothing() {
        let h = host();
        let mut st = h.store();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let arch = docker_save(&[(
            &["app:1"],
            &[&layer(&[("a", b"1")]), &layer(&[("big", &big)])],
        )]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("half", arch[..arch.len() / 2].to_vec()),
            ("no-end", arch[..arch.len() - 1024].to_vec()),
            ("gz-half", gzip(&arch)[..gzip(&arch).len() / 2].to_vec()),
            ("text", b"hello, I am not an archive\n".to_vec()),
            ("empty", vec![]),
        ];
        for (name, bytes) in cases {
            let e = load_archive(&h.inst, &mut st, &h.write(name, &bytes)).unwrap_err();
            let msg = e.to_string();
            assert!(
                matches!(e, ImageError::InvalidArchive { .. }),
                "{name}: {msg}"
            );
            assert!(!msg.contains('\n'), "one line: {msg}");
            assert_eq!(
                (h.count("images"), h.count("layers"), h.count("image_tags")),
                (0, 0, 0),
                "{name}"
            );
            assert!(
                h.layer_entries().is_empty(),
                "{name}: {:?}",
                h.layer_entries()
            );
        }
        // A layer whose content does not match the config's diff id: the
        // first layer was already extracted and must be undone.
        let good = layer(&[("a", b"1")]);
        let bad = layer(&[("b", b"2")]);
        let mut arch = docker_save(&[(&["app:1"], &[&good, &bad])]);
        let at = arch
            .windows(bad.len())
            .position(|w| w == bad.as_slice())
            .unwrap();
        arch[at + 512] = b'3';
        let e = load_archive(&h.inst, &mut st, &h.write("mismatch", &arch)).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        assert!(h.layer_entries().is_empty(), "{:?}", h.layer_entries());
    }

    #[test]
    fn concurrent_loads_of_the_same_layer_both_succeed() {
        let h = host();
        drop(h.store());
        let big: Vec<u8> = (0..250_000u32).map(|i| (i % 253) as u8).collect();
        let files: Vec<(String, Vec<u8>)> = (0..50)
            .map(|i| (format!("d{}/f{i}", i % 5), big[i * 1000..].to_vec()))
            .collect();
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_slice()))
            .collect();
        let path = h.write("c.tar", &docker_save(&[(&["c:1"], &[&layer(&refs)])]));
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut st = h.store();
                        barrier.wait();
                        load_archive(&h.inst, &mut st, &path)
                    })
                })
                .collect();
            for t in handles {
                assert_eq!(t.join().unwrap().unwrap(), vec!["c:1"]);
            }
        });
        assert_eq!(
            h.layer_entries().len(),
            1,
            "one layer dir, no temp leftovers: {:?}",
            h.layer_entries()
        );
        assert_eq!((h.count("images"), h.count("layers")), (1, 1));
        let mut st = h.store();
        let img = resolve(&h.inst, &mut st, "c:1").unwrap();
        assert_eq!(
            fs::read(layer_dir(&h.inst, &img.layers[0]).join("d3/f3")).unwrap(),
            &big[3000..]
        );
    }

    #[test]
    fn losing_the_rename_race_uses_the_winners_layer() {
        let h = host();
        let st = h.store();
        let l = layer(&[("f", b"mine")]);
        let winner = layer_dir(&h.inst, &sha256_hex(&l));
        fs::create_dir_all(winner.join("theirs")).unwrap();
        // No expected digest, so the layer is extracted and the rename collides.
        let got = ensure_layer(&h.inst, &st, &l[..], None, None).unwrap();
        assert_eq!(got.digest, sha256_hex(&l));
        assert!(!got.created, "the winner's dir must not be undone by us");
        assert!(winner.join("theirs").is_dir() && !winner.join("f").exists());
        assert_eq!(
            h.layer_entries(),
            vec![sha256_hex(&l)],
            "our temp copy is gone"
        );
    }

    #[test]
    fn stale_temps_of_dead_processes_are_swept() {
        let h = host();
        let mut st = h.store();
        fs::create_dir_all(h.inst.layers_dir().join(".tmp-999999999-abc/x")).unwrap();
        fs::write(h.inst.layers_dir().join(".del-999999999-abd"), b"").unwrap();
        let live = format!(".tmp-{}-abe", std::process::id());
        fs::create_dir_all(h.inst.layers_dir().join(&live)).unwrap();
        let path = h.write(
            "s.tar",
            &docker_save(&[(&["t:1"], &[&layer(&[("f", b"1")])])]),
        );
        load_archive(&h.inst, &mut st, &path).unwrap();
        assert_eq!(
            h.layer_entries(),
            vec![live, sha256_hex(&layer(&[("f", b"1")]))]
        );
    }

    #[test]
    fn flat_rootfs_imports_as_a_one_layer_image_without_a_command() {
        let h = host();
        let mut st = h.store();
        let fs_tar = layer(&[("bin/x", b"x"), ("etc/y", b"yy")]);
        let id = import_rootfs(
            &h.inst,
            &mut st,
            &h.write("rootfs.tar.gz", &gzip(&fs_tar)),
            "mine:v1",
        )
        .unwrap();
        let img = resolve(&h.inst, &mut st, "mine:v1").unwrap();
        assert_eq!(id, format!("sha256:{}", img.id));
        assert_eq!(img.layers, vec![sha256_hex(&fs_tar)]);
        assert_eq!(img.config.cmd, None);
        assert_eq!(img.config.entrypoint, None);
        assert!(img.config.env[0].starts_with("PATH="));
        assert_eq!(list(&st).unwrap()[0].size, 3);
        assert!(matches!(
            import_rootfs(&h.inst, &mut st, &h.write("r2", &fs_tar), "Bad"),
            Err(ImageError::InvalidReference(_))
        ));
        let e = import_rootfs(
            &h.inst,
            &mut st,
            &h.write("r3", &fs_tar[..fs_tar.len() - 1024]),
            "cut:1",
        )
        .unwrap_err();
        assert!(matches!(e, ImageError::InvalidArchive { .. }), "{e}");
        assert_eq!(h.layer_entries().len(), 1, "{:?}", h.layer_entries());
        assert_eq!(h.count("images"), 1);
    }

    #[test]
    fn busybox_comes_from_the_bundled_archive_on_first_use() {
        let h = host();
        let mut st = h.store();
        let img = resolve(&h.inst, &mut st, "docker.io/library/busybox").unwrap();
        assert_eq!(img.config.cmd, Some(vec!["sh".into()]));
        let root = layer_dir(&h.inst, &img.layers[0]);
        assert!(fs::metadata(root.join("bin/busybox")).unwrap().len() > 100_000);
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            PathBuf::from("busybox")
        );
        assert_eq!(
            fs::metadata(root.join("tmp")).unwrap().permissions().mode() & 0o7777,
            0o1777
        );
        assert!(fs::read_to_string(root.join("etc/passwd"))
            .unwrap()
            .contains("nobody"));
        // A damaged bundled image heals on the next resolve.
        fs::remove_dir_all(&root).unwrap();
        let again = resolve(&h.inst, &mut st, "busybox").unwrap();
        assert_eq!(again.id, img.id);
        assert!(root.join("bin/busybox").exists());
    }

    #[test]
    fn ambiguous_id_prefixes_are_refused() {
        let h = host();
        let mut st = h.store();
        for i in 0..20 {
            let arch = docker_save(&[(&[], &[&layer(&[("f", format!("{i}").as_bytes())])])]);
            load_archive(&h.inst, &mut st, &h.write("a.tar", &arch)).unwrap();
        }
        let ids: Vec<String> = list(&st).unwrap().into_iter().map(|s| s.id).collect();
        assert!(list(&st).unwrap().iter().all(|s| s.repository == "<none>"));
        // 20 ids over 16 first hex digits: two share a first digit.
        let first = ids
            .iter()
            .find(|a| ids.iter().filter(|b| b[..1] == a[..1]).count() > 1)
            .unwrap();
        assert!(matches!(
            resolve(&h.inst, &mut st, &first[..1]),
            Err(ImageError::Ambiguous(_))
        ));
    }
}
