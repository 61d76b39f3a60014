//! Name resolution on user-defined networks: one responder process per minirt
//! root answers container names on each network's gateway and forwards the rest.
//!
//! - `sync(inst)`: after any change of endpoints (run, connect, disconnect,
//!   stop, rm): starts the responder when a user-defined network has a
//!   member and none runs (or it crashed), else tells it to re-read the
//!   store; `sync_container(inst, id)` when only that container changed
//!   (its start or end): the responder re-reads its rows alone; the
//!   responder leaves a while after the last member left (`MINIRT_DNS_LINGER`)
//! - `run_responder(inst)`: the hidden `minirt __dns` subcommand
//! - `host_resolv_conf()`: the host resolv.conf path (`MINIRT_HOST_RESOLV_CONF`
//!   overrides /etc/resolv.conf, for tests)
//!
//! Files in --run-root: dns.sock (control: "reload" or "update ID" -> "ok" |
//! "stopped" | "error ..."),
//! dns.pid, dns.lock (serializes starts and reloads), dns.log (its stderr).

pub mod control;
pub mod records;
pub mod server;

pub use control::{members, members_of, sync, sync_container};
pub use server::run_responder;

use std::path::PathBuf;

/// Env var naming the resolv.conf whose nameservers are "the host's" (tests).
pub(crate) const HOST_RESOLV_ENV: &str = "MINIRT_HOST_RESOLV_CONF";

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("name resolution: {0}")]
    Io(#[from] std::io::Error),
    #[error("name resolution: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("name resolution: {0}")]
    Network(String),
    #[error("name resolution: the DNS responder {0}")]
    Responder(String),
}

/// The host's resolv.conf: `$MINIRT_HOST_RESOLV_CONF` when set, else /etc/resolv.conf.
pub(crate) fn host_resolv_conf() -> PathBuf {
    std::env::var_os(HOST_RESOLV_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/resolv.conf"))
}
