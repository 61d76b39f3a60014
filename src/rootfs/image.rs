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
    #[error("{0}")]
    Other(String),
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
            let e = e.map_err(|e| format!("not a tar archive or damaged ({e})"))?;
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
    move |e| ImageError::Other(format!("{what}: {e}"))
}

/// A layer in the store after `ensure_layer`.
struct StoredLayer {
    digest: String,
    size: i64,
    /// True when this call renamed the dir into place (undo on failure).
    created: bool,
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
    let layers = inst.layers_dir();
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
            });
        }
    }
    let mut tmp = TempGuard(Some(layers.join(temp_name("tmp"))));
    fs::create_dir(tmp.path()).map_err(io_other("cannot create", tmp.path()))?;
    let x = archive::extract_layer(blob, tmp.path())?;
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
    match fs::rename(tmp.path(), &dir) {
        Ok(()) => {
            tmp.disarm();
            Ok(StoredLayer {
                digest: x.diff_id,
                size: x.size as i64,
                created: true,
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
            })
        }
        Err(e) => Err(io_other("cannot move layer into", &dir)(e)),
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

/// Runs `f` (which extracts layers and commits rows), undoing its layers on
/// failure and retrying when a layer vanished under it.
fn with_undo<T>(
    inst: &Instance,
    store: &mut Store,
    mut f: impl FnMut(&mut Store, &mut Vec<StoredLayer>) -> Result<T>,
) -> Result<T> {
    fs::create_dir_all(inst.layers_dir()).map_err(io_other("cannot create", &inst.layers_dir()))?;
    clean_stale_temps(&inst.layers_dir());
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
                .map_err(|e| ImageError::InvalidArchive {
                    path: source.to_string(),
                    reason: e.to_string(),
                })?;
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
    // Members are read out of order: decompress to a seekable temp file
    // (named so a crash leaves something `clean_stale_temps` removes).
    fs::create_dir_all(inst.layers_dir()).map_err(io_other("cannot create", &inst.layers_dir()))?;
    let tmp = TempGuard(Some(inst.layers_dir().join(temp_name("tmp"))));
    let mut plain = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(tmp.path())
        .map_err(io_other("cannot create", tmp.path()))?;
    let mut gz = flate2::read::MultiGzDecoder::new(io::BufReader::new(f));
    io::copy(&mut gz, &mut plain).map_err(|e| invalid(format!("bad gzip data ({e})")))?;
    load_seekable(inst, store, &mut plain, &source)
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
            .map_err(|e| invalid(e.to_string()))?;
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
            created: img.created,
            size: img.size,
        };
        if mine.is_empty() {
            out.push(summary("<none>", "<none>"));
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
