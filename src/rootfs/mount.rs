//! The container's root filesystem: overlay mount, pivot_root, /proc /sys /dev.

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{0}")]
    Mount(String),
}
