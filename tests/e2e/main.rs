//! End-to-end tests: drive the built `minirt` binary as a user would. Each
//! test gets its own --root, --run-root and network namespace (a throwaway
//! "test host"), cleaned up on drop even when the test fails.

// A test that cannot set up panics: that is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod antispoof;
mod commands;
mod commit;
mod common;
mod concurrency;
mod container;
mod cp;
mod dns;
mod docker_cli;
mod etcd_cluster;
mod events;
mod faults;
mod fw_races;
mod gateway_modes;
mod hostile;
mod idioms;
mod images;
mod ipv6;
mod lan;
mod limits;
mod macvlan;
mod network;
mod oci;
mod overlay;
mod parity;
mod podman;
mod podman_compat;
mod podman_host;
mod refused;
mod registry;
mod registry_push;
mod registry_server;
mod restart_health;
mod robustness;
mod security;
mod soak;
mod symlinks;
mod system_df;
mod timings;
mod volumes;
