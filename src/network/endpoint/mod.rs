//! Endpoints, a container's place on a network: allocated inside the
//! container's store transaction, plugged in by attach, torn down by detach.
//!
//! By concern: `allocate` (the rows and addresses, in the container's
//! transaction), `ports` (published ports), `plug` (the drivers plug them in
//! and out, with undo), `connect` (`network connect|disconnect`),
//! `etc_files` (/etc/hosts, /etc/resolv.conf), `info` (`ps`, `inspect`),
//! `release` (the teardown of many containers at once, `rm -f`).

mod allocate;
mod connect;
mod etc_files;
mod info;
mod plug;
mod ports;
mod release;
#[cfg(test)]
mod tests;

pub use allocate::{allocate, detach_rows, prepare};
pub use connect::{connect, disconnect};
pub use etc_files::etc_files;
pub use info::{
    container_networks, container_ports, networks_by_container, ports_by_container, EndpointInfo,
};
pub use plug::{attach, collect_dying_links, detach, detach_exited};
pub use release::detach_many;
