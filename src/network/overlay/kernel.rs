//! The overlay's kernel side: the VXLAN device of a network, its peers'
//! routes, neighbour and FDB entries, and the overlay's nftables table.
//! The VXLAN device and the entries are made with iproute2 (`ip`,
//! `bridge`): they change only when a host joins or leaves, never on a
//! container's start, and the agent reads them back as JSON (`-j`) to
//! converge; the table goes in one `nft -f` batch like the bridge's.

use super::plan::{self, Peer, PeerDiff, Programmed, VXLAN_PORT};
use super::OverlayError;
use ipnet::Ipv4Net;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

fn run(program: &str, args: &[&str]) -> Result<String, OverlayError> {
    let o = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| OverlayError::Kernel(format!("cannot run {program}: {e}")))?;
    if !o.status.success() {
        return Err(OverlayError::Kernel(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn json(program: &str, args: &[&str]) -> Result<Vec<Value>, OverlayError> {
    let out = run(program, args)?;
    if out.trim().is_empty() {
        return Ok(vec![]);
    }
    serde_json::from_str::<Vec<Value>>(&out)
        .map_err(|e| OverlayError::Kernel(format!("{program} {}: {e}", args.join(" "))))
}

/// The interface holding `addr` on this host and its MTU.
pub(crate) fn underlay(addr: Ipv4Addr) -> Result<(String, u32), OverlayError> {
    for l in json("ip", &["-j", "-4", "addr", "show"])? {
        let has = l["addr_info"].as_array().is_some_and(|a| {
            a.iter()
                .any(|i| i["local"].as_str() == Some(&addr.to_string()))
        });
        if has {
            let name = l["ifname"].as_str().unwrap_or_default().to_string();
            let mtu = l["mtu"].as_u64().unwrap_or(1500) as u32;
            return Ok((name, mtu));
        }
    }
    Err(OverlayError::Invalid(format!(
        "advertise address {addr} is not an address of this host"
    )))
}

pub(crate) fn link_exists(name: &str) -> bool {
    crate::network::netlink::link_exists(name)
}

/// The network's VXLAN device: learning off (the agent programs every
/// peer), the VTEP address, up.
pub(crate) fn ensure_vxlan(
    name: &str,
    vni: u32,
    local: Ipv4Addr,
    underlay: &str,
    mtu: u32,
    mac: &str,
    vtep: Ipv4Addr,
) -> Result<bool, OverlayError> {
    if link_exists(name) {
        return Ok(false);
    }
    let (vni, port, mtu) = (vni.to_string(), VXLAN_PORT.to_string(), mtu.to_string());
    let local = local.to_string();
    let made = run(
        "ip",
        &[
            "link",
            "add",
            name,
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            &local,
            "dev",
            underlay,
            "dstport",
            &port,
            "nolearning",
        ],
    );
    match made {
        Ok(_) => {}
        // Another command made it a moment ago: theirs to configure.
        Err(_) if link_exists(name) => return Ok(false),
        Err(e) => return Err(e),
    }
    let rest = (|| {
        run(
            "ip",
            &["link", "set", name, "address", mac, "mtu", &mtu, "up"],
        )?;
        run("ip", &["addr", "add", &format!("{vtep}/32"), "dev", name])
    })();
    if let Err(e) = rest {
        let _ = run("ip", &["link", "del", name]);
        return Err(e);
    }
    Ok(true)
}

pub(crate) fn delete_link(name: &str) -> Result<(), OverlayError> {
    if link_exists(name) {
        run("ip", &["link", "del", name])?;
    }
    Ok(())
}

/// The peers' entries on `vx` as the kernel has them.
pub fn programmed(vx: &str) -> Result<Programmed, OverlayError> {
    let mut p = Programmed::default();
    for r in json("ip", &["-j", "-4", "route", "show", "dev", vx])? {
        if let Some(d) = r["dst"].as_str().and_then(|d| d.parse::<Ipv4Net>().ok()) {
            if r["gateway"].is_string() {
                p.routes.push(d);
            }
        }
    }
    for n in json("ip", &["-j", "-4", "neigh", "show", "dev", vx])? {
        if let (Some(a), Some(m)) = (
            n["dst"].as_str().and_then(|a| a.parse().ok()),
            n["lladdr"].as_str(),
        ) {
            p.neighbours.push((a, m.to_lowercase()));
        }
    }
    for f in json("bridge", &["-j", "fdb", "show", "dev", vx])? {
        if let (Some(m), Some(d)) = (
            f["mac"].as_str(),
            f["dst"].as_str().and_then(|a| a.parse().ok()),
        ) {
            p.fdb.push((m.to_lowercase(), d));
        }
    }
    Ok(p)
}

/// Applies a diff to `vx`: stale entries first, then the missing peers.
pub fn apply_peers(vx: &str, d: &PeerDiff) -> Result<(), OverlayError> {
    for r in &d.del_routes {
        let _ = run("ip", &["route", "del", &r.to_string(), "dev", vx]);
    }
    for a in &d.del_neighbours {
        let _ = run("ip", &["neigh", "del", &a.to_string(), "dev", vx]);
    }
    for (m, h) in &d.del_fdb {
        let _ = run(
            "bridge",
            &["fdb", "del", m, "dev", vx, "dst", &h.to_string()],
        );
    }
    for p in &d.add {
        add_peer(vx, p)?;
    }
    Ok(())
}

fn add_peer(vx: &str, p: &Peer) -> Result<(), OverlayError> {
    let (vtep, host) = (p.vtep.to_string(), p.host.to_string());
    run(
        "ip",
        &[
            "neigh",
            "replace",
            &vtep,
            "lladdr",
            &p.mac,
            "dev",
            vx,
            "nud",
            "permanent",
        ],
    )?;
    run(
        "bridge",
        &[
            "fdb",
            "replace",
            &p.mac,
            "dev",
            vx,
            "dst",
            &host,
            "self",
            "permanent",
        ],
    )?;
    run(
        "ip",
        &[
            "route",
            "replace",
            &p.block.to_string(),
            "via",
            &vtep,
            "dev",
            vx,
            "onlink",
        ],
    )?;
    Ok(())
}

/// Replaces the overlay's table in one batch (removes it when no network).
pub fn apply_table(
    tag: &str,
    nets: &[plan::FwOverlay],
    peers: &[Ipv4Addr],
) -> Result<(), OverlayError> {
    crate::network::nft::apply(&plan::render_table(tag, nets, peers))
        .map_err(|e| OverlayError::Kernel(e.to_string()))
}

/// Whether the overlay's table is in place with its rules (a flushed
/// table keeps its chains but loses the VXLAN filter).
pub fn table_exists(tag: &str) -> bool {
    run("nft", &["list", "table", "inet", &plan::table_name(tag)])
        .is_ok_and(|t| t.contains(&format!("udp dport {VXLAN_PORT}")))
}
