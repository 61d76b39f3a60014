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

use crate::rootfs::extract::ArchiveError;
use crate::store::StoreError;
use serde::{Deserialize, Serialize};

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
static BUNDLED_BUSYBOX: &[u8] = include_bytes!("../../../images/busybox.tar");
const BUNDLED_NAME: &str = "busybox:latest";

mod api;
mod config;
mod export;
mod formats;
mod index;
mod layers;
mod load;
mod reference;
mod save;
#[cfg(test)]
mod tests;

pub use api::*;
pub(crate) use config::*;
pub(crate) use export::*;
pub use formats::*;
pub use index::*;
pub(crate) use layers::*;
pub use load::*;
pub(crate) use reference::*;
pub use save::*;
