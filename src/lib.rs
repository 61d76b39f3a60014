//! minirt: a daemonless container runtime with networking built in.
//! The binary (`src/main.rs`, `src/cli/`) is thin; everything it calls lives here.

pub mod cgroups;
pub mod container;
pub mod error;
pub mod fault;
pub mod instance;
pub mod intent;
pub mod network;
pub mod rootfs;
pub mod runtime;
pub mod store;
pub mod timings;
pub mod undo;
pub mod util;
pub mod validate;

pub use error::{Error, Result};
pub use instance::Instance;
