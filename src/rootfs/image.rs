//! The image store. Contract used by the run path (owned by the images work):
//!
//! - `resolve(inst, store, "busybox") -> Image` (the bundled busybox image is
//!   loaded on first use without any load step)
//! - `layer_dir(inst, digest) -> PathBuf` (extracted layer, read-only lower dir)
//! - `load_archive`, `import_rootfs`, `list`, `remove`

use crate::store::StoreError;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("Unable to find image '{0}' locally")]
    NotFound(String),
    #[error("{0}")]
    Other(String),
}

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

// ---- PLACEHOLDER until the `images` branch lands (it owns this file) ----
pub fn resolve(
    _inst: &crate::Instance,
    _store: &mut crate::store::Store,
    name: &str,
) -> Result<Image, ImageError> {
    Err(ImageError::NotFound(name.into()))
}
pub fn layer_dir(inst: &crate::Instance, digest: &str) -> std::path::PathBuf {
    inst.layers_dir().join(digest)
}
