//! The library's error: each subsystem's error rolled up, plus Docker's exit
//! code for each (125 runtime error, 126 cannot execute, 127 not found).

use crate::{cgroups, container, network, rootfs, store};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Image(#[from] rootfs::ImageError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
    #[error(transparent)]
    Network(#[from] network::NetworkError),
    #[error(transparent)]
    Container(#[from] container::ContainerError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Container(e) => e.exit_code(),
            // Docker's daemon refusal ("image is being used by ...") exits 1.
            Error::Image(rootfs::ImageError::InUse { .. }) => 1,
            _ => 125,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
