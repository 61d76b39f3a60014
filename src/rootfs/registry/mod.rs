//! The distribution side of the image store: references, the registries
//! configuration, credentials, the v2 API client, and pull/push/save.
//! Nothing here runs on the `run` path when the image is present.

pub mod auth;
mod blob;
pub mod client;
pub mod config;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod reference;

pub use reference::Reference;

/// A registry failure, as one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such repository, tag or digest.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("cannot reach registry {host}: {detail}")]
    Unreachable { host: String, detail: String },
    #[error("{0}")]
    Tls(String),
    #[error("{0}")]
    Other(String),
}
