//! The runtime library: an OCI bundle (config.json + rootfs) in, a container
//! out, with no knowledge of images, networks or the store. `executor` is
//! the one clone path (minirt's own `run` uses it too); `container` is the
//! OCI lifecycle (create, start, state, kill, delete, exec, pause...) over a
//! state directory; `spec` reads what a config.json asks for. The child's
//! side: `init` (the container's init up to its start gate), `process`
//! (the last steps before execve, with `user`, `caps`, `lookup`), `clone`,
//! `pty`, `protocol` (the one parent/child channel), `sys` (its kernel calls).

pub mod caps;
pub mod clone;
pub mod container;
pub mod exec;
pub mod executor;
pub mod features;
pub mod hooks;
pub mod init;
pub mod lookup;
pub mod mounts;
pub mod process;
pub mod protocol;
pub mod pty;
pub mod resources;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod sys;
pub mod user;
pub mod userns;

pub use executor::{spawn, SpawnOptions, Spawned};
