//! Starting, notifying and finding the responder process: a control socket,
//! a pid file and a lock in --run-root; effects only, the records are pure.

use super::records::Member;
use super::DnsError;
use crate::network::bridge;
use crate::network::names::DEFAULT_NETWORK;
use crate::network::DriverKind;
use crate::store::networks as rows;
use crate::store::Store;
use crate::Instance;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// How long a command waits for a fresh responder to answer.
/// A responder that does not answer a reload within this is reported.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn socket_path(inst: &Instance) -> PathBuf {
    inst.run_root.join("dns.sock")
}
pub(crate) fn pid_path(inst: &Instance) -> PathBuf {
    inst.run_root.join("dns.pid")
}
pub(crate) fn lock_path(inst: &Instance) -> PathBuf {
    inst.run_root.join("dns.lock")
}
fn log_path(inst: &Instance) -> PathBuf {
    inst.run_root.join("dns.log")
}

fn gateway6(net: &rows::NetworkRow) -> Result<Option<std::net::Ipv6Addr>, DnsError> {
    Ok(bridge::addressing6(net)
        .map_err(|e| DnsError::Network(e.to_string()))?
        .map(|(_, gw)| gw))
}

/// Where the responder serves a network's names: its IPv4 and IPv6
/// gateways; None for a network it does not serve.
fn zone(
    net: &rows::NetworkRow,
) -> Result<Option<(std::net::Ipv4Addr, Option<std::net::Ipv6Addr>)>, DnsError> {
    // The responder serves on the host's bridge address: a macvlan
    // network's gateway is a router of the LAN, not this host.
    if net.name == DEFAULT_NETWORK
        || !matches!(
            DriverKind::of(net),
            Ok(DriverKind::Bridge | DriverKind::Overlay)
        )
    {
        return Ok(None);
    }
    // 0.0.0.0 on an IPv6-only network: its zone is its IPv6 gateway.
    let gateway = bridge::addressing4(net)
        .map_err(|e| DnsError::Network(e.to_string()))?
        .map_or(std::net::Ipv4Addr::UNSPECIFIED, |(_, gw)| gw);
    Ok(Some((gateway, gateway6(net)?)))
}

/// Every container on a user-defined network, as the records need them.
pub fn members(store: &Store) -> Result<Vec<Member>, DnsError> {
    let c = store.conn();
    let mut out = vec![];
    for net in rows::list_networks(c)? {
        let Some((gateway, gw6)) = zone(&net)? else {
            continue;
        };
        for (ep, name) in rows::endpoints_of_network(c, &net.id)? {
            out.push(Member {
                gateway,
                ip: ep.ip,
                name,
                container_id: ep.container_id,
                aliases: ep.aliases,
                v6: gw6.zip(ep.ip6),
            });
        }
    }
    Ok(out)
}

/// The members one container makes: its endpoints on user-defined networks
/// (none when it is gone or on none of them). One container's rows only, so
/// the cost does not grow with the number of containers.
pub fn members_of(store: &Store, container_id: &str) -> Result<Vec<Member>, DnsError> {
    let c = store.conn();
    let Some(ctr) = rows::find_container(c, container_id)? else {
        return Ok(vec![]);
    };
    let mut out = vec![];
    for ep in rows::endpoints_of_container(c, container_id)? {
        let Some(net) = rows::find_network(c, &ep.network_id)? else {
            continue;
        };
        let Some((gateway, gw6)) = zone(&net)? else {
            continue;
        };
        out.push(Member {
            gateway,
            ip: ep.ip,
            name: ctr.name.clone(),
            container_id: ep.container_id,
            aliases: ep.aliases,
            v6: gw6.zip(ep.ip6),
        });
    }
    Ok(out)
}

/// Containers of other hosts on this host's overlay networks, as the
/// overlay agent last wrote them (`overlay-names.json` in --run-root),
/// served on this host's gateway of each network.
pub(crate) fn remote_members(inst: &Instance) -> Vec<Member> {
    crate::network::overlay::agent::read_names(inst)
        .into_iter()
        .map(|r| Member {
            gateway: r.gateway,
            ip: r.ip,
            name: r.name,
            container_id: r.container_id,
            aliases: r.aliases,
            v6: None,
        })
        .collect()
}

/// One request over the control socket; the responder's one-line reply.
fn request(inst: &Instance, what: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(socket_path(inst))?;
    s.set_read_timeout(Some(REPLY_TIMEOUT))?;
    s.set_write_timeout(Some(REPLY_TIMEOUT))?;
    s.write_all(format!("{what}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed without a reply",
        ));
    }
    Ok(line.trim().to_string())
}

fn check(reply: String) -> Result<(), DnsError> {
    match reply.as_str() {
        "ok" | "stopped" => Ok(()),
        other => Err(DnsError::Responder(
            other.strip_prefix("error ").unwrap_or(other).to_string(),
        )),
    }
}

/// Brings the responder in line with the store: told to re-read it when it
/// runs (it leaves when no member is left), started when it is needed and
/// not running (never started, or crashed). Serialized by a lock so two
/// commands never start two responders or race one that is leaving.
pub fn sync(inst: &Instance) -> Result<(), DnsError> {
    sync_request(inst, "reload")
}

/// [`sync`] after a network command's change (connect, disconnect,
/// reload): names follow it; a responder that cannot is a warning, not a
/// failed command (the change itself is done).
pub(crate) fn follow(inst: &Instance) {
    if let Err(e) = sync(inst) {
        tracing::warn!("{e}");
    }
}

/// Like [`sync`] after a change to one container's endpoints only (its
/// start or its end): a running responder re-reads that container's rows
/// instead of every member's.
pub fn sync_container(inst: &Instance, container_id: &str) -> Result<(), DnsError> {
    if container_id.is_empty() || container_id.contains(char::is_whitespace) {
        return sync(inst);
    }
    sync_request(inst, &format!("update {container_id}"))
}

fn sync_request(inst: &Instance, what: &str) -> Result<(), DnsError> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(inst))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| DnsError::Io(e.into()))?;
    match request(inst, what) {
        Ok(reply) => return check(reply),
        Err(e)
            if e.kind() == std::io::ErrorKind::TimedOut
                || e.kind() == std::io::ErrorKind::WouldBlock =>
        {
            return Err(DnsError::Responder("does not answer".into()))
        }
        Err(_) => {}
    }
    // Not running. Leftovers of a crashed one go; start one if needed.
    let _ = std::fs::remove_file(socket_path(inst));
    let _ = std::fs::remove_file(pid_path(inst));
    let store = Store::open(&inst.db_path())?;
    if members(&store)?.is_empty() && remote_members(inst).is_empty() {
        return Ok(());
    }
    drop(store);
    // `spawn` returns once the control socket listens (see run_responder),
    // so the first request is queued, never refused.
    spawn(inst)?;
    request(inst, "reload")
        .map_err(|e| DnsError::Responder(format!("did not start: {e}")))
        .and_then(check)
}

/// `minirt __dns` (see `network::service`): returns once its control
/// socket listens.
fn spawn(inst: &Instance) -> Result<(), DnsError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(inst))?;
    crate::network::service::start(inst, "__dns", log.into()).map_err(|e| {
        DnsError::Responder(format!(
            "did not start ({e}); see {}",
            log_path(inst).display()
        ))
    })
}
