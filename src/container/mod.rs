//! Container lifecycle: run / start / exec / stop / kill / rm / ps / inspect,
//! the per-container monitor, and the parent/child protocol.

pub mod attach;
pub mod config;
pub mod copy;
pub mod exec;
pub mod finish;
pub mod health;

pub use config::{BindMount, ContainerConfig};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{0}")]
    Invalid(String),
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The command could not be executed (permission, not a binary): exit 126.
    #[error("{0}")]
    CannotExecute(String),
    /// The command was not found: exit 127.
    #[error("{0}")]
    CommandNotFound(String),
    #[error("{0}")]
    Runtime(String),
}

impl ContainerError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ContainerError::CannotExecute(_) => 126,
            ContainerError::CommandNotFound(_) => 127,
            _ => 125,
        }
    }
}
pub mod commit;
pub mod create;
pub mod diff;
pub mod events;
pub mod inspect;
pub mod lifecycle;
pub(crate) mod liveness;
pub mod logs;
pub mod monitor;
pub mod pause;
pub mod restart;
pub mod runtime;
pub mod spec;
pub mod stats;
pub mod tmpfs;
pub mod ulimit;
pub mod update;
pub mod volume;
pub mod waiter;
