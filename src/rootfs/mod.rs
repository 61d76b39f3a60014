//! Images and root filesystems: the content-addressed layer store, archive
//! import (`docker save`, OCI layout, flat rootfs), and the container's
//! overlay mount, pivot_root and special filesystems.

pub mod extract;
pub mod image;
pub mod inroot;
pub mod inspect;
pub mod mount;
pub mod registry;

pub use image::{Image, ImageConfig, ImageError};
pub use mount::RootfsError;
