//! The nftables backend (fwbackend.rs) and its glue: builds FwNetwork /
//! FwPort values from rows and applies the scripts with nft.rs
//! (port mappings go over nfnetlink, nfnl.rs, with nft.rs as the fallback),
//! serialises every firewall change of an instance behind one lock, and
//! heals the live table by structure (`nft -j` compared with `Desired`).

use super::firewall::{self, Desired, FwNetwork, FwPort, GatewayMode};
use super::fwbackend::{FwSnapshot, InUse};
use super::names;
use super::undo::Undo;
use super::{nfnl, nft, NetworkError};
use crate::store::networks::{EndpointRow, NetworkRow, PortBindingRow};
use crate::Instance;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub(crate) fn fw_network(net: &NetworkRow) -> Result<FwNetwork, NetworkError> {
    let bad = |what: &str, v: &str| {
        NetworkError::Invalid(format!(
            "network {} has a bad {what} {v:?} in the store",
            net.name
        ))
    };
    let v4 = match net.has_ipv4() {
        false => None,
        true => Some(firewall::FwV4 {
            subnet: net.subnet.parse().map_err(|_| bad("subnet", &net.subnet))?,
            gateway: net
                .gateway
                .parse()
                .map_err(|_| bad("gateway", &net.gateway))?,
        }),
    };
    let mode = match net.options.get(names::OPT_GATEWAY_MODE) {
        None => GatewayMode::Nat,
        Some(m) => GatewayMode::parse(m).ok_or_else(|| bad("gateway mode", m))?,
    };
    let trusted = match net.options.get(names::OPT_TRUSTED_IFS) {
        None => vec![],
        Some(t) => names::parse_trusted_interfaces(t)?,
    };
    let v6 = match super::bridge::addressing6(net)? {
        None => None,
        Some((subnet, gateway)) => Some(firewall::FwV6 {
            subnet,
            gateway,
            mode: match net.options.get(names::OPT_GATEWAY_MODE6) {
                None => GatewayMode::Nat,
                Some(m) => GatewayMode::parse(m).ok_or_else(|| bad("IPv6 gateway mode", m))?,
            },
        }),
    };
    Ok(FwNetwork {
        id: net.id.clone(),
        bridge: net.device.clone(),
        v4,
        internal: net.internal,
        mode,
        trusted,
        v6,
    })
}

/// Whether published ports of this network are reached directly (no DNAT).
pub(crate) fn is_routed(net: &NetworkRow) -> bool {
    net.options.get(names::OPT_GATEWAY_MODE).map(String::as_str) == Some("routed")
}

/// The same for the network's IPv6 side (`gateway_mode_ipv6=routed`).
pub(crate) fn is_routed6(net: &NetworkRow) -> bool {
    net.options
        .get(names::OPT_GATEWAY_MODE6)
        .map(String::as_str)
        == Some("routed")
}

/// The firewall's view of an endpoint's bindings: an IPv4 host address maps
/// to the container's IPv4 address, an IPv6 one to its IPv6 address, and
/// the 0.0.0.0 wildcard (`-p 8080:80`) to both when the container has IPv6
/// (Docker publishes on both families by default); [::1] has no rule (the
/// loopback proxy serves it). `routed6`: the IPv6 side
/// of the network is routed (no DNAT there).
pub(crate) fn fw_ports(
    ep: &EndpointRow,
    ports: &[PortBindingRow],
    routed: bool,
    routed6: bool,
) -> Result<Vec<FwPort>, NetworkError> {
    let mut out = vec![];
    for p in ports {
        let host_ip: IpAddr = p.host_ip.parse().map_err(|_| {
            NetworkError::Invalid(format!("bad host address {:?} in the store", p.host_ip))
        })?;
        let proto = p.proto.parse()?;
        let port = |host_ip: IpAddr, ctr_ip: IpAddr, routed: bool| FwPort {
            proto,
            host_ip,
            host_port: p.host_port,
            ctr_ip,
            ctr_port: p.container_port,
            routed,
        };
        match host_ip {
            IpAddr::V4(_) => {
                out.push(port(host_ip, ep.ip.into(), routed));
                if let (true, Some(ip6)) = (host_ip.is_unspecified(), ep.ip6) {
                    out.push(port(Ipv6Addr::UNSPECIFIED.into(), ip6.into(), routed6));
                }
            }
            // Served by the loopback proxy (`network::proxy6`), not the
            // kernel: a DNAT of ::1 to a container is dropped.
            IpAddr::V6(h) if h.is_loopback() => {}
            IpAddr::V6(_) => {
                let ip6 = ep.ip6.ok_or_else(|| {
                    NetworkError::Invalid(format!(
                        "port {} on {host_ip} needs an IPv6 address in the container",
                        p.host_port
                    ))
                })?;
                out.push(port(host_ip, ip6.into(), routed6));
            }
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------ the lock

thread_local! {
    /// The open lock file and how many guards of this thread hold it, so a
    /// locked caller may call another locked function (flock on a second
    /// open file of the same process would wait for itself).
    static HELD: RefCell<Option<(nix::fcntl::Flock<std::fs::File>, usize)>> =
        const { RefCell::new(None) };
}

/// Holds the instance's firewall lock until dropped.
pub(crate) struct FwLock(());

impl Drop for FwLock {
    fn drop(&mut self) {
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            if let Some((_, n)) = h.as_mut() {
                *n -= 1;
                if *n == 0 {
                    *h = None; // closing the file releases the flock
                }
            }
        });
    }
}

/// Serialises firewall changes of one instance across processes: taken
/// around "read the store, change the table" (and, where rows change after
/// the table, until those rows are written), so a heal never sees a binding
/// whose element is being removed, nor restores one a moment before its row
/// goes.
pub(crate) fn lock(inst: &Instance) -> Result<FwLock, NetworkError> {
    let nested = HELD.with(|h| {
        if let Some((_, n)) = h.borrow_mut().as_mut() {
            *n += 1;
            true
        } else {
            false
        }
    });
    if nested {
        return Ok(FwLock(()));
    }
    let path = inst.run_root.join("firewall.lock");
    let err = |e: std::io::Error| {
        NetworkError::Firewall(format!("firewall lock {}: {e}", path.display()))
    };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    let locked = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| err(e.into()))?;
    HELD.with(|h| *h.borrow_mut() = Some((locked, 1)));
    Ok(FwLock(()))
}

// ------------------------------------------------------------------ heal

/// The live table, normalised like `Desired`, plus what the structure check
/// needs besides: base chains' hook/type/priority/policy.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Live {
    pub state: Desired,
    pub base: BTreeMap<String, (String, String, i64, String)>,
}

/// One element or map value as `Desired` writes it. Pure.
fn norm(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) if a.len() == 2 => format!("{} : {}", norm(&a[0]), norm(&a[1])),
        Value::Object(o) => {
            if let Some(c) = o.get("concat").and_then(Value::as_array) {
                return c.iter().map(norm).collect::<Vec<_>>().join(" . ");
            }
            if let Some(p) = o.get("prefix") {
                return format!("{}/{}", norm(&p["addr"]), norm(&p["len"]));
            }
            if let Some(r) = o.get("range").and_then(Value::as_array) {
                return r.iter().map(norm).collect::<Vec<_>>().join("-");
            }
            if let Some(e) = o.get("elem") {
                return norm(&e["val"]);
            }
            for verdict in ["jump", "goto"] {
                if let Some(j) = o.get(verdict) {
                    return format!("{verdict} {}", norm(&j["target"]));
                }
            }
            v.to_string()
        }
        other => other.to_string(),
    }
}

/// The first `@set` reference inside a statement (a dnat's map).
fn set_ref(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.starts_with('@') => Some(s.clone()),
        Value::Object(o) => o.values().find_map(set_ref),
        Value::Array(a) => a.iter().find_map(set_ref),
        _ => None,
    }
}

/// A rule's verdict as `firewall::verdict_of` writes it. Pure.
fn rule_verdict(expr: &[Value]) -> String {
    let Some(Value::Object(last)) = expr.last() else {
        return String::new();
    };
    let Some((k, v)) = last.iter().next() else {
        return String::new();
    };
    match k.as_str() {
        "jump" | "goto" => format!("{k} {}", norm(&v["target"])),
        "vmap" => format!("vmap {}", norm(&v["data"])),
        "dnat" | "snat" => format!("{k} {}", set_ref(v).unwrap_or_default()),
        other => other.to_string(),
    }
}

/// Parses `nft -j list table` output. Pure.
pub(crate) fn parse_live(json: &str) -> Result<Live, NetworkError> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| NetworkError::Firewall(format!("cannot read nft's JSON listing: {e}")))?;
    let items = v["nftables"]
        .as_array()
        .ok_or_else(|| NetworkError::Firewall("nft's JSON listing has no \"nftables\"".into()))?;
    let mut live = Live::default();
    for item in items {
        if let Some(c) = item.get("chain") {
            let name = norm(&c["name"]);
            live.state.chains.entry(name.clone()).or_default();
            if let Some(hook) = c.get("hook") {
                live.base.insert(
                    name,
                    (
                        norm(&c["type"]),
                        norm(hook),
                        c["prio"].as_i64().unwrap_or(i64::MIN),
                        norm(&c["policy"]),
                    ),
                );
            }
        } else if let Some(r) = item.get("rule") {
            let expr = r["expr"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            live.state
                .chains
                .entry(norm(&r["chain"]))
                .or_default()
                .push(rule_verdict(expr));
        } else if let Some(s) = item.get("set").or_else(|| item.get("map")) {
            let elems = live.state.elements.entry(norm(&s["name"])).or_default();
            for e in s["elem"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                elems.insert(norm(e));
            }
        }
    }
    Ok(live)
}

/// Why the live table's structure (chains, base hooks, rules) differs from
/// the desired one, or None. The user's chain is the user's: only its
/// existence counts. Pure.
pub(crate) fn structure_differs(want: &Desired, live: &Live) -> Option<String> {
    let names = |d: &Desired| d.chains.keys().cloned().collect::<BTreeSet<_>>();
    if names(want) != names(&live.state) {
        let missing: Vec<_> = names(want)
            .difference(&names(&live.state))
            .cloned()
            .collect();
        let extra: Vec<_> = names(&live.state)
            .difference(&names(want))
            .cloned()
            .collect();
        return Some(format!("chains missing {missing:?}, extra {extra:?}"));
    }
    for (name, typ, hook, prio) in firewall::BASE_CHAINS {
        let want = (
            typ.to_string(),
            hook.to_string(),
            *prio,
            "accept".to_string(),
        );
        if live.base.get(*name) != Some(&want) {
            return Some(format!("base chain {name} is {:?}", live.base.get(*name)));
        }
    }
    for (chain, rules) in &want.chains {
        if chain == firewall::USER_CHAIN {
            continue;
        }
        if live.state.chains.get(chain) != Some(rules) {
            return Some(format!(
                "chain {chain} has {:?}, not {rules:?}",
                live.state.chains.get(chain)
            ));
        }
    }
    None
}

/// Elements to add and to delete so that every set holds what `want` says.
/// Pure.
#[allow(clippy::type_complexity)]
pub(crate) fn element_diff(
    want: &Desired,
    live: &Live,
) -> (Vec<(String, String)>, Vec<(String, String)>) {
    let empty = BTreeSet::new();
    let (mut add, mut del) = (vec![], vec![]);
    for (set, elems) in &want.elements {
        let have = live.state.elements.get(set).unwrap_or(&empty);
        add.extend(elems.difference(have).map(|e| (set.clone(), e.clone())));
        del.extend(have.difference(elems).map(|e| (set.clone(), e.clone())));
    }
    (add, del)
}

/// Self-healing: compares the live table with what the store says, by
/// structure, and repairs it: missing or extra elements one by one, anything
/// else (table gone, a chain flushed, deleted or added, a base chain's hook
/// or policy changed) by a rebuild; bridges that only a stale table still
/// names go too. Returns whether anything had to change. Costs one
/// `nft -j list` when all is well.
pub(crate) fn heal(
    inst: &Instance,
    snap: &FwSnapshot,
    generation: Option<u32>,
) -> Result<bool, NetworkError> {
    let _lock = lock(inst)?;
    let table = inst.nft_table();
    let (nets, ports) = (&snap.networks, &snap.ports);
    if nets.is_empty() {
        // A killed `network rm` of the last network can leave the table.
        if let Ok(true) = nft::table_exists(&table) {
            nft::delete_table(&table)?;
            return Ok(true);
        }
        return Ok(false);
    }
    let want = firewall::desired(nets, ports);
    // The last check still holds while nobody committed to nftables since
    // (the kernel's generation is the same) and the store wants the same:
    // then no `nft -j list` (a process and a parse that grow with the
    // number of containers) on every command. The generation is read before
    // the listing: a change in between makes the key stale (one needless
    // check next time), never a damaged table taken for intact. The caller
    // reads it (once for both tables).
    let marker = inst.run_root.join("firewall.checked");
    let key = generation.map(|g| check_key(&super::nftgen::host_identity(), g, &want));
    if let Some(k) = &key {
        if std::fs::read_to_string(&marker).is_ok_and(|m| m == *k) {
            return Ok(false);
        }
    }
    let live = match nft::list_table_json(&table).and_then(|j| parse_live(&j)) {
        Ok(l) => l,
        Err(_) => {
            reload_locked(inst, snap)?;
            return Ok(true);
        }
    };
    if let Some(why) = structure_differs(&want, &live) {
        tracing::info!("rebuilding firewall table {table}: {why}");
        let stale: Vec<String> = stale_bridges(&want, &live);
        reload_locked(inst, snap)?;
        if !stale.is_empty() {
            let nl = super::netlink::Netlink::open()?;
            for b in stale {
                nl.delete_link(&b)?;
            }
        }
        return Ok(true);
    }
    let (add, del) = element_diff(&want, &live);
    if add.is_empty() && del.is_empty() {
        if let Some(k) = key {
            super::nftgen::save_marker(&marker, &k);
        }
        return Ok(false);
    }
    tracing::info!("firewall table {table}: restoring {add:?}, removing {del:?}");
    nft::apply(&firewall::render_elements_fix(&table, &add, &del))?;
    Ok(true)
}

/// What makes a past "intact" verdict still valid: the host and network
/// namespace, the nftables generation and the desired state. Pure.
pub(crate) fn check_key(identity: &str, generation: u32, want: &Desired) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{want:?}").as_bytes());
    format!("{identity} gen {generation} want {}", hex::encode(digest))
}

/// Whether the live table is exactly what `snap` asks for (read only).
pub fn is_intact(inst: &Instance, snap: &FwSnapshot) -> Result<bool, NetworkError> {
    let table = inst.nft_table();
    if snap.networks.is_empty() {
        return Ok(!nft::table_exists(&table)?);
    }
    let want = firewall::desired(&snap.networks, &snap.ports);
    let Ok(live) = nft::list_table_json(&table).and_then(|j| parse_live(&j)) else {
        return Ok(false);
    };
    let (add, del) = element_diff(&want, &live);
    Ok(structure_differs(&want, &live).is_none() && add.is_empty() && del.is_empty())
}

/// Bridges the live table forwards for but the store has no network for.
fn stale_bridges(want: &Desired, live: &Live) -> Vec<String> {
    let keys = |d: &Desired| -> BTreeSet<String> {
        d.elements
            .get("fwd_iif")
            .into_iter()
            .flatten()
            .filter_map(|e| e.split(" : ").next().map(str::to_string))
            .collect()
    };
    keys(&live.state).difference(&keys(want)).cloned().collect()
}

/// Creates the instance's table, maps and base chains if missing. The undo
/// deletes the table only while `in_use` says the instance has no network
/// (asked when the undo runs, after the failed transaction rolled back), so
/// a concurrent minirt process that also uses the table never loses it.
/// Returns whether the table had to be created.
pub(crate) fn ensure_base(
    inst: &Instance,
    undo: &mut Undo,
    in_use: InUse,
) -> Result<bool, NetworkError> {
    let table = inst.nft_table();
    // Whoever makes or uses a network makes sure the guardian watches it
    // (one pid file read when it runs).
    if let Err(e) = super::guard::ensure(inst) {
        tracing::warn!("{e}");
    }
    // Fast path (every networked `run`): the table is there. A damaged
    // table is repaired by `heal`, which every other command runs.
    if let Ok(true) = nft::table_exists(&table) {
        return Ok(false);
    }
    let _lock = lock(inst)?;
    nft::apply(&firewall::render_base(&table))?;
    undo.push(format!("nftables table {table}"), move || {
        if !in_use() {
            nft::delete_table(&table).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    Ok(true)
}

/// Adds (idempotently) the network's chains and elements. The undo is only
/// registered by the caller's choice (`fresh`): re-applying the rules of a
/// network in use must never remove them on a later failure.
pub(crate) fn ensure_network(
    inst: &Instance,
    fw: &FwNetwork,
    fresh: bool,
    undo: &mut Undo,
) -> Result<(), NetworkError> {
    let table = inst.nft_table();
    nft::apply(&firewall::render_network_add(&table, fw))?;
    if fresh {
        let fw = fw.clone();
        undo.push(format!("firewall rules of {}", fw.bridge), move || {
            nft::apply(&firewall::render_network_del(&table, &fw)).map_err(|e| e.to_string())
        });
    }
    Ok(())
}

pub(crate) fn remove_network(inst: &Instance, fw: &FwNetwork) -> Result<(), NetworkError> {
    // Deletes are written as add-then-delete (idempotent); on a missing table
    // that would re-declare it without its base rules. Nothing to remove then.
    if let Ok(false) = nft::table_exists(&inst.nft_table()) {
        return Ok(());
    }
    nft::apply(&firewall::render_network_del(&inst.nft_table(), fw))
}

pub(crate) fn add_ports(
    inst: &Instance,
    fw: &[FwPort],
    what: &str,
    undo: &mut Undo,
) -> Result<(), NetworkError> {
    let table = inst.nft_table();
    let fw = fw.to_vec();
    // One nfnetlink batch (no nft process); nft stays the fallback so any
    // surprise there never costs a working port mapping.
    if let Err(e) = nfnl::add_port_elements(&table, &fw) {
        tracing::warn!("{e}; retrying with nft");
        nft::apply(&firewall::render_ports_add(&table, &fw))?;
    }
    undo.push(format!("port mappings of {what}"), move || {
        del_ports(&table, &fw).map_err(|e| e.to_string())
    });
    Ok(())
}

/// Deletes port elements over nfnetlink (absent ones are fine), else with nft.
fn del_ports(table: &str, fw: &[FwPort]) -> Result<(), NetworkError> {
    let Err(e) = nfnl::del_port_elements(table, fw) else {
        return Ok(());
    };
    // The nft script re-declares the table: never on a missing one.
    if let Ok(false) = nft::table_exists(table) {
        return Ok(());
    }
    tracing::warn!("{e}; retrying with nft");
    nft::apply(&firewall::render_ports_del(table, fw))
}

/// Removes port mappings (whatever their network's mode: the element keys
/// do not depend on it).
pub(crate) fn remove_ports(inst: &Instance, fw: &[FwPort]) -> Result<(), NetworkError> {
    del_ports(&inst.nft_table(), fw)
}

/// Rebuilds the whole table from the store: base, every network, every port
/// mapping, after the old table is deleted; the user's chain is carried
/// over. With no network left the table goes away.
pub(crate) fn reload(inst: &Instance, snap: &FwSnapshot) -> Result<(), NetworkError> {
    let _lock = lock(inst)?;
    reload_locked(inst, snap)
}

fn reload_locked(inst: &Instance, snap: &FwSnapshot) -> Result<(), NetworkError> {
    let table = inst.nft_table();
    let (nets, ports) = (&snap.networks, &snap.ports);
    if nets.is_empty() {
        return nft::delete_table(&table);
    }
    let user = nft::list_chain(&table, firewall::USER_CHAIN).ok();
    // Two batches: nft refuses verdict-map elements jumping to chains of a
    // table deleted earlier in the same batch, so the table goes first and
    // everything is rebuilt in the second (mappings pause for that moment).
    nft::delete_table(&table)?;
    // The base (maps included) must exist before a batch adds elements to
    // the interval map post_src: nft fails with ENOENT when both share a batch.
    nft::apply(&firewall::render_base(&table))?;
    let mut script = String::new();
    for n in nets {
        script += &firewall::render_network_add(&table, n);
    }
    script += &firewall::render_ports_add(&table, ports);
    nft::apply(&script)?;
    if let Some(user) = user {
        // The user's rules may name things that are gone: theirs to fix, ours
        // must stand regardless.
        if let Err(e) = nft::apply(&user) {
            tracing::warn!("restoring the rules of chain {}: {e}", firewall::USER_CHAIN);
        }
    }
    Ok(())
}

/// Removes the whole table (when the last network goes).
pub fn drop_table(inst: &Instance) -> Result<(), NetworkError> {
    nft::delete_table(&inst.nft_table())
}

/// The host address `-p` without one binds to on this network.
pub(crate) fn default_host_ip(net: &NetworkRow) -> Option<Ipv4Addr> {
    net.options
        .get(names::OPT_HOST_BINDING)
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
