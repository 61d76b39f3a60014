//! End-to-end tests: drive the built `minirt` binary as a user would. Each
//! test gets its own --root, --run-root and network namespace (a throwaway
//! "test host"), cleaned up on drop even when the test fails.

mod common;
mod container;
mod dns;
mod hostile;
mod images;
mod limits;
mod network;
mod oci;
mod podman;
mod robustness;
mod security;
mod soak;
mod timings;
