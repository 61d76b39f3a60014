//! The runtime library: an OCI bundle (config.json + rootfs) in, a container
//! out, with no knowledge of images, networks or the store. `executor` is
//! the one clone path (minirt's own `run` uses it too); `container` is the
//! OCI lifecycle (create, start, state, kill, delete, exec, pause...) over a
//! state directory; `spec` reads what a config.json asks for.

pub mod container;
pub mod executor;
pub mod features;
pub mod hooks;
pub mod mounts;
pub mod resources;
pub mod spec;
pub mod state;
pub mod sys;

pub use executor::{spawn, SpawnOptions, Spawned};
