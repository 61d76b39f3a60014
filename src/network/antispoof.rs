//! Anti-spoofing: a container may send only frames whose source is its own
//! endpoint: for IPv4 its MAC and its address, for ARP its MAC as both the
//! Ethernet and the ARP sender and its address as the ARP sender address.
//! Everything else entering a bridge from a guarded container port (another
//! container's address, a forged MAC, a gratuitous ARP for someone else,
//! other ethertypes, IPv6) is dropped in the bridge family's prerouting hook:
//! before the bridge learns the source MAC, forwards the frame, or hands it
//! to the host, so neither another container nor the host's neighbour table
//! can be poisoned.
//!
//! One `table bridge <Instance::nft_table>` per instance (the inet table's
//! name in another family, so two roots coexist) holds three sets with one
//! element per endpoint each, so a frame costs the same three hash lookups
//! however many containers run:
//!
//! | set         | key                                             |
//! |-------------|-------------------------------------------------|
//! | `ports`     | host veth (the guarded bridge ports)            |
//! | `allow_ip`  | host veth . MAC . IPv4 source                   |
//! | `allow_arp` | host veth . MAC . ARP sender MAC . sender IPv4  |
//! | `allow_ip6` | host veth . MAC . IPv6 source (own, link-local)  |
//!
//! A port not in `ports` (an endpoint of a network created with
//! `-o minirt.antispoof=false`, or a device that is not ours) is not looked
//! at. IPv6 from a guarded port passes only from the endpoint's own IPv6
//! address or its link-local one (EUI-64 of its MAC), so neighbour discovery
//! comes only from those; router advertisements and redirects are dropped
//! whatever their source (a container announcing itself as a router is the
//! CVE-2020-13401 class). An endpoint without IPv6 sends no IPv6 at all.
//! Not checked: the target address and link-layer option inside a
//! neighbour advertisement (nft 1.0.6 cannot match them against a set).
//!
//! Pure: the script (`render_*`), the nfnetlink elements, the wanted state
//! from store rows, and the integrity check of an `nft -j` listing. Effects:
//! `plug` / `unplug` (one nfnetlink batch each), `heal`, `rebuild`,
//! `drop_table`.

use super::nfnl::{self, Element};
use super::undo::Undo;
use super::{ipam, nft, NetworkError};
use crate::store::networks::{self as rows, EndpointRow, NetworkRow};
use crate::Instance;
use rusqlite::Connection;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The network option (`network create -o minirt.antispoof=false`) that
/// leaves a network's containers unguarded (a container that routes for
/// others must send other sources).
pub const OPTION: &str = "minirt.antispoof";

/// `NFPROTO_BRIDGE`.
const FAMILY: u8 = libc::NFPROTO_BRIDGE as u8;

/// The base chain's priority: before everything else on the bridge
/// (br_netfilter's hook sits at 0).
const PRIORITY: i64 = -300;

/// What one endpoint may send as.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Guard {
    /// The host end of the veth pair: the bridge port the frames come in on.
    pub port: String,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    /// The endpoint's IPv6 address, on a network with IPv6.
    pub ip6: Option<Ipv6Addr>,
}

impl Guard {
    /// The IPv6 sources the endpoint may use: link-local first, then its own.
    fn sources6(&self) -> Vec<Ipv6Addr> {
        match self.ip6 {
            Some(ip6) => vec![super::ipam6::link_local(self.mac), ip6],
            None => vec![],
        }
    }
}

/// Whether the network's containers are guarded (the default).
pub fn enabled(net: &NetworkRow) -> bool {
    net.driver == super::driver::DriverKind::Bridge.as_str()
        && net.options.get(OPTION).map(String::as_str) != Some("false")
}

/// The guard of an endpoint: its MAC is the one `bridge::connect` gives the
/// container's interface.
pub fn guard_of(ep: &EndpointRow) -> Guard {
    Guard {
        port: ep.host_ifname.clone(),
        mac: super::ipam6::endpoint_mac(ep.ip, ep.ip6),
        ip: ep.ip,
        ip6: ep.ip6,
    }
}

/// The guards the store asks for: None when there is no network (then there
/// is no table either), else one per endpoint of a guarded network, sorted.
pub fn wanted(nets: &[NetworkRow], eps: &[EndpointRow]) -> Option<Vec<Guard>> {
    if nets.is_empty() {
        return None;
    }
    let on: BTreeSet<&str> = nets
        .iter()
        .filter(|n| enabled(n))
        .map(|n| n.id.as_str())
        .collect();
    let mut g: Vec<Guard> = eps
        .iter()
        .filter(|e| on.contains(e.network_id.as_str()))
        .map(guard_of)
        .collect();
    g.sort();
    g.dedup();
    Some(g)
}

/// Each set's element for `g`, as `nft` lists the parts of a concatenation.
fn set_elements(g: &Guard) -> Vec<(&'static str, Vec<String>)> {
    let mac = ipam::format_mac(g.mac);
    let ip = g.ip.to_string();
    let mut v = vec![("ports", vec![g.port.clone()])];
    // An IPv6-only endpoint (0.0.0.0) may send no IPv4 and no ARP at all.
    if !g.ip.is_unspecified() {
        v.push(("allow_ip", vec![g.port.clone(), mac.clone(), ip.clone()]));
        v.push((
            "allow_arp",
            vec![g.port.clone(), mac.clone(), mac.clone(), ip],
        ));
    }
    for a in g.sources6() {
        v.push((
            "allow_ip6",
            vec![g.port.clone(), mac.clone(), a.to_string()],
        ));
    }
    v
}

const SETS: &[(&str, &[&str])] = &[
    ("ports", &["ifname"]),
    ("allow_ip", &["ifname", "ether_addr", "ipv4_addr"]),
    (
        "allow_arp",
        &["ifname", "ether_addr", "ether_addr", "ipv4_addr"],
    ),
    ("allow_ip6", &["ifname", "ether_addr", "ipv6_addr"]),
];

/// The rules, in the form `nft` lists them (the script uses the same text).
const RULES: &[(&str, &str)] = &[
    ("prerouting", "iifname @ports jump guard"),
    ("guard", "iifname . ether saddr . ip saddr @allow_ip accept"),
    (
        "guard",
        "iifname . ether saddr . arp saddr ether . arp saddr ip @allow_arp accept",
    ),
    // Before the IPv6 source check: not even from a container's own address.
    (
        "guard",
        "icmpv6 type { nd-router-advert, nd-redirect } drop",
    ),
    (
        "guard",
        "iifname . ether saddr . ip6 saddr @allow_ip6 accept",
    ),
    // No counter: its values would make every listing of the ruleset differ
    // with traffic (containers' own IPv6 chatter is dropped here too).
    ("guard", "drop"),
];

fn q(ifname: &str) -> String {
    // Interface names cannot hold '"' in practice; strip it so the script stays well formed.
    format!("\"{}\"", ifname.replace('"', ""))
}

/// The table, its sets, chains and rules. Idempotent: re-running it keeps
/// every element and changes nothing else.
pub fn render_table(table: &str) -> String {
    let mut s = format!("table bridge {table} {{\n");
    for (name, types) in SETS {
        let _ = writeln!(s, "\tset {name} {{\n\t\ttype {};\n\t}}", types.join(" . "));
    }
    let _ = writeln!(
        s,
        "\tchain prerouting {{\n\t\ttype filter hook prerouting priority {PRIORITY}; policy accept;\n\t}}"
    );
    s += "\tchain guard {\n\t}\n}\n";
    for chain in ["prerouting", "guard"] {
        let _ = writeln!(s, "flush chain bridge {table} {chain}");
    }
    for (chain, rule) in RULES {
        let _ = writeln!(s, "add rule bridge {table} {chain} {rule}");
    }
    s
}

/// `add` or `delete` lines for the guards' elements.
pub fn render_guards(table: &str, verb: &str, guards: &[Guard]) -> String {
    let mut s = String::new();
    for g in guards {
        for (set, parts) in set_elements(g) {
            let mut parts = parts;
            parts[0] = q(&parts[0]);
            let _ = writeln!(
                s,
                "{verb} element bridge {table} {set} {{ {} }}",
                parts.join(" . ")
            );
        }
    }
    s
}

/// One atomic batch that replaces the table (whatever is in it) with exactly
/// `guards`: there is no moment without the guard for anyone who keeps it.
pub fn render_rebuild(table: &str, guards: &[Guard]) -> String {
    format!("add table bridge {table}\ndelete table bridge {table}\n")
        + &render_table(table)
        + &render_guards(table, "add", guards)
}

/// The nfnetlink elements of `g` (keys register-padded, as nft sends them:
/// an ifname is IFNAMSIZ bytes, a MAC 6 + 2, an IPv4 address 4).
pub fn elements(g: &Guard) -> Vec<Element> {
    let mut ifname = g.port.as_bytes().to_vec();
    ifname.resize(16, 0);
    let mut mac = g.mac.to_vec();
    mac.resize(8, 0);
    let ip = g.ip.octets();
    let what = match g.ip6 {
        Some(ip6) => format!("{} ({} {} {ip6})", g.port, ipam::format_mac(g.mac), g.ip),
        None => format!("{} ({} {})", g.port, ipam::format_mac(g.mac), g.ip),
    };
    let el = |set: &str, parts: &[&[u8]]| Element {
        family: FAMILY,
        map: set.to_string(),
        key: parts.concat(),
        data: vec![],
        what: what.clone(),
    };
    let mut v = vec![el("ports", &[&ifname])];
    if !g.ip.is_unspecified() {
        v.push(el("allow_ip", &[&ifname, &mac, &ip]));
        v.push(el("allow_arp", &[&ifname, &mac, &mac, &ip]));
    }
    for a in g.sources6() {
        v.push(el("allow_ip6", &[&ifname, &mac, &a.octets()]));
    }
    v
}

/// A chain as the integrity check compares it.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    /// (type, hook, priority, policy) of a base chain.
    pub base: Option<(String, String, i64, String)>,
    /// Each rule's `expr`.
    pub rules: Vec<Value>,
}

/// The parts of the table the check compares: sets (key type, elements) and
/// chains. Anything else in the table (another set or chain) is kept too, so
/// it makes the comparison fail.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub sets: BTreeMap<String, (Vec<String>, BTreeSet<Vec<String>>)>,
    pub chains: BTreeMap<String, Chain>,
}

fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

/// Reads `nft -j list table bridge <table>`. Pure.
pub fn parse_listing(text: &str) -> Result<Listing, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("nft -j output: {e}"))?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("nft -j output: no nftables array")?;
    let mut l = Listing::default();
    let field = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    for item in items {
        if let Some(s) = item.get("set") {
            let typ = s
                .get("type")
                .and_then(strings)
                .ok_or("set without a type")?;
            let mut elems = BTreeSet::new();
            for e in s
                .get("elem")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let parts = match e.get("concat") {
                    Some(c) => strings(c),
                    None => strings(e),
                };
                elems.insert(parts.ok_or_else(|| format!("odd element {e}"))?);
            }
            l.sets.insert(field(s, "name"), (typ, elems));
        } else if let Some(c) = item.get("chain") {
            let base = c.get("hook").map(|_| {
                (
                    field(c, "type"),
                    field(c, "hook"),
                    c.get("prio").and_then(Value::as_i64).unwrap_or(i64::MIN),
                    field(c, "policy"),
                )
            });
            let chain = l.chains.entry(field(c, "name")).or_insert(Chain {
                base: None,
                rules: vec![],
            });
            chain.base = base;
        } else if let Some(r) = item.get("rule") {
            let expr = r.get("expr").cloned().unwrap_or(Value::Null);
            l.chains
                .entry(field(r, "chain"))
                .or_insert(Chain {
                    base: None,
                    rules: vec![],
                })
                .rules
                .push(expr);
        }
    }
    Ok(l)
}

/// The rules' `expr` as `nft -j` lists them (nft 1.0.6).
fn rule_exprs() -> [(&'static str, Value); 6] {
    let iif = json!({ "meta": { "key": "iifname" } });
    let pl = |p: &str, f: &str| json!({ "payload": { "protocol": p, "field": f } });
    [
        (
            "prerouting",
            json!([
                { "match": { "op": "==", "left": iif, "right": "@ports" } },
                { "jump": { "target": "guard" } }
            ]),
        ),
        (
            "guard",
            json!([
                { "match": { "op": "==",
                    "left": { "concat": [iif, pl("ether", "saddr"), pl("ip", "saddr")] },
                    "right": "@allow_ip" } },
                { "accept": null }
            ]),
        ),
        (
            "guard",
            json!([
                { "match": { "op": "==",
                    "left": { "concat": [iif, pl("ether", "saddr"),
                                         pl("arp", "saddr ether"), pl("arp", "saddr ip")] },
                    "right": "@allow_arp" } },
                { "accept": null }
            ]),
        ),
        (
            "guard",
            json!([
                { "match": { "op": "==", "left": pl("icmpv6", "type"),
                    "right": { "set": ["nd-router-advert", "nd-redirect"] } } },
                { "drop": null }
            ]),
        ),
        (
            "guard",
            json!([
                { "match": { "op": "==",
                    "left": { "concat": [iif, pl("ether", "saddr"), pl("ip6", "saddr")] },
                    "right": "@allow_ip6" } },
                { "accept": null }
            ]),
        ),
        ("guard", json!([{ "drop": null }])),
    ]
}

/// The listing of a healthy table holding exactly `guards`. Pure.
pub fn expected(guards: &[Guard]) -> Listing {
    let mut l = Listing::default();
    for (name, types) in SETS {
        let types = types.iter().map(|t| t.to_string()).collect();
        l.sets.insert(name.to_string(), (types, BTreeSet::new()));
    }
    for g in guards {
        for (set, parts) in set_elements(g) {
            if let Some((_, elems)) = l.sets.get_mut(set) {
                elems.insert(parts);
            }
        }
    }
    l.chains.insert(
        "prerouting".into(),
        Chain {
            base: Some((
                "filter".into(),
                "prerouting".into(),
                PRIORITY,
                "accept".into(),
            )),
            rules: vec![],
        },
    );
    l.chains.insert(
        "guard".into(),
        Chain {
            base: None,
            rules: vec![],
        },
    );
    for (chain, expr) in rule_exprs() {
        if let Some(c) = l.chains.get_mut(chain) {
            c.rules.push(expr);
        }
    }
    l
}

/// True when the table listed as `listing` (`nft -j`) holds the rules and
/// exactly the elements of `guards`: nothing missing, nothing extra. Pure.
pub fn is_intact(listing: &str, guards: &[Guard]) -> bool {
    parse_listing(listing).is_ok_and(|l| l == expected(guards))
}

/// The guards the store asks for (see `wanted`).
pub fn wanted_from(c: &Connection) -> Result<Option<Vec<Guard>>, NetworkError> {
    let nets = rows::list_networks(c)?;
    let mut eps = vec![];
    for n in &nets {
        eps.extend(
            rows::endpoints_of_network(c, &n.id)?
                .into_iter()
                .map(|e| e.0),
        );
    }
    Ok(wanted(&nets, &eps))
}

/// Replaces the table with what the store asks for, plus `extra` (an
/// endpoint being plugged that the store's reader may not see yet).
fn rebuild_with(
    inst: &Instance,
    c: &Connection,
    extra: Option<&Guard>,
) -> Result<(), NetworkError> {
    let table = inst.nft_table();
    let Some(mut guards) = wanted_from(c)? else {
        return drop_table(inst);
    };
    if let Some(g) = extra {
        if !guards.contains(g) {
            guards.push(g.clone());
        }
    }
    nft::apply(&render_rebuild(&table, &guards))
}

/// Rebuilds the table from the store (`network reload`, `heal`); without
/// networks the table goes.
pub fn rebuild(inst: &Instance, c: &Connection) -> Result<(), NetworkError> {
    rebuild_with(inst, c, None)
}

/// Makes the (empty) table when a network is made or used and it is
/// missing, so the table lives exactly as long as the instance has networks
/// (what `heal` checks). The undo deletes it only while the store holds no
/// network (`in_use`, asked when the undo runs), like `rules::ensure_base`.
pub fn ensure_table(
    inst: &Instance,
    undo: &mut Undo,
    in_use: super::fwbackend::InUse,
) -> Result<(), NetworkError> {
    let table = inst.nft_table();
    if let Ok(true) = nft::table_exists_in("bridge", &table) {
        return Ok(());
    }
    nft::apply(&render_table(&table))?;
    let inst = inst.clone();
    undo.push(format!("nftables table bridge {table}"), move || {
        if !in_use() {
            drop_table(&inst).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    Ok(())
}

/// Guards a new endpoint before its veth exists (so its first frame is
/// checked): one nfnetlink batch of its three elements, undone on failure.
/// A missing table is rebuilt from the store (`c` must be the connection
/// that sees the endpoint's row, e.g. the transaction that inserted it).
pub fn plug(
    inst: &Instance,
    c: &Connection,
    net: &NetworkRow,
    ep: &EndpointRow,
    undo: &mut Undo,
) -> Result<(), NetworkError> {
    if !enabled(net) {
        return Ok(());
    }
    let table = inst.nft_table();
    let g = guard_of(ep);
    let elems = elements(&g);
    match nfnl::add_batch(&table, &elems) {
        Ok(None) => {}
        // No table or set (first endpoint, or someone deleted it): the
        // whole table comes back, this endpoint included.
        Ok(Some((_, code))) if code == libc::ENOENT => rebuild_with(inst, c, Some(&g))?,
        Ok(Some((e, code))) => {
            return Err(NetworkError::Firewall(format!(
                "cannot guard {} against spoofing (nftables set bridge {table} {}): {}",
                e.what,
                e.map,
                std::io::Error::from_raw_os_error(code)
            )))
        }
        Err(e) => {
            tracing::warn!("{e}; retrying with nft");
            rebuild_with(inst, c, Some(&g))?;
        }
    }
    undo.push(format!("anti-spoofing elements of {}", g.port), move || {
        remove(&table, &g).map_err(|e| e.to_string())
    });
    Ok(())
}

fn remove(table: &str, g: &Guard) -> Result<(), NetworkError> {
    match nfnl::del_batch(table, &elements(g))? {
        None => Ok(()),
        Some((e, code)) => Err(NetworkError::Firewall(format!(
            "cannot remove the anti-spoofing element of {} (nftables set bridge {table} {}): {}",
            e.what,
            e.map,
            std::io::Error::from_raw_os_error(code)
        ))),
    }
}

/// Removes an endpoint's elements (absent ones, a missing table, an
/// unguarded network: all fine).
pub fn unplug(inst: &Instance, ep: &EndpointRow) -> Result<(), NetworkError> {
    remove(&inst.nft_table(), &guard_of(ep))
}

/// Removes the table (when the last network goes); absent is fine.
pub fn drop_table(inst: &Instance) -> Result<(), NetworkError> {
    let table = inst.nft_table();
    nft::apply(&format!(
        "add table bridge {table}\ndelete table bridge {table}\n"
    ))
}

/// Self-healing: when the table is missing, damaged, or holds elements the
/// store does not own (or lacks some it does), it is rebuilt from the store.
/// Returns whether it had to rebuild. Nothing at all without networks; with
/// networks one `nft -j list` (4..12 ms here, more with many elements),
/// skipped when nothing in nftables changed since the last intact check and
/// the store wants the same guards (`CheckKey`: one nfnetlink request).
pub fn heal(inst: &Instance, c: &Connection) -> Result<bool, NetworkError> {
    let Some(guards) = wanted_from(c)? else {
        return Ok(false);
    };
    let marker = inst.run_root.join("antispoof.checked");
    // Read before the listing: a change in between makes the saved key stale
    // (a needless check next time), never a damaged table taken for intact.
    let key = generation()
        .ok()
        .map(|g| check_key(&host_identity(), g, &guards));
    if let Some(k) = &key {
        if std::fs::read_to_string(&marker).is_ok_and(|m| m == *k) {
            return Ok(false);
        }
    }
    let table = inst.nft_table();
    let intact = nft::list_json("bridge", &table).is_ok_and(|l| is_intact(&l, &guards));
    if intact {
        if let Some(k) = key {
            save_marker(&marker, &k);
        }
        return Ok(false);
    }
    nft::apply(&render_rebuild(&table, &guards))?;
    Ok(true)
}

/// What makes a past check still valid: the boot and network namespace it
/// was made in, the nftables generation (the kernel bumps it at every
/// commit, anyone's, `nft flush ruleset` included) and the guards the store
/// asked for. Pure.
pub fn check_key(identity: &str, generation: u32, guards: &[Guard]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for g in guards {
        h.update(format!("{} {} {}", g.port, ipam::format_mac(g.mac), g.ip));
        if let Some(ip6) = g.ip6 {
            h.update(format!(" {ip6}"));
        }
        h.update("\n");
    }
    format!(
        "{identity} gen {generation} guards {}",
        hex::encode(h.finalize())
    )
}

/// Boot id and network namespace of the caller.
pub(crate) fn host_identity() -> String {
    use std::os::unix::fs::MetadataExt;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let ns = std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| format!("{}:{}", m.dev(), m.ino()))
        .unwrap_or_default();
    format!("boot {} netns {ns}", boot.trim())
}

pub(crate) fn save_marker(path: &std::path::Path, key: &str) {
    // Written aside and renamed: a concurrent reader sees the old or the new key.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, key).is_err() || std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

const NFT_MSG_GETGEN: u16 = (10 << 8) | 16;
const NFT_MSG_NEWGEN: u16 = (10 << 8) | 15;
const NFTA_GEN_ID: u16 = 1;

/// NFT_MSG_GETGEN, as `nft` sends it. Pure.
pub fn getgen_request(seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(20);
    m.extend_from_slice(&20u32.to_ne_bytes());
    m.extend_from_slice(&NFT_MSG_GETGEN.to_ne_bytes());
    m.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    m
}

/// The generation id of a NEWGEN reply; an error message is an error, other
/// messages None. Pure.
pub fn parse_newgen(b: &[u8]) -> Option<Result<u32, i32>> {
    let len = u32::from_ne_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let typ = u16::from_ne_bytes(b.get(4..6)?.try_into().ok()?);
    let msg = b.get(..len)?;
    if typ == libc::NLMSG_ERROR as u16 {
        let code = i32::from_ne_bytes(msg.get(16..20)?.try_into().ok()?);
        return Some(Err(-code));
    }
    if typ != NFT_MSG_NEWGEN {
        return None;
    }
    let mut a = msg.get(20..)?;
    while a.len() >= 4 {
        let alen = u16::from_ne_bytes([a[0], a[1]]) as usize;
        let atyp = u16::from_ne_bytes([a[2], a[3]]) & 0x3fff;
        if alen < 4 || alen > a.len() {
            return None;
        }
        if atyp == NFTA_GEN_ID && alen >= 8 {
            return Some(Ok(u32::from_be_bytes(a[4..8].try_into().ok()?)));
        }
        a = &a[(alen.div_ceil(4) * 4).min(a.len())..];
    }
    None
}

/// The nftables generation of the caller's network namespace.
pub(crate) fn generation() -> Result<u32, NetworkError> {
    use std::os::fd::AsRawFd;
    let fd = nfnl::open_socket()?;
    let msg = getgen_request(1);
    let err = |what: &str| {
        NetworkError::Firewall(format!(
            "nfnetlink {what}: {}",
            std::io::Error::last_os_error()
        ))
    };
    // SAFETY: the buffer is valid for its length; the kernel is the peer.
    if unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) } < 0 {
        return Err(err("send"));
    }
    let mut buf = [0u8; 512];
    let answer = loop {
        // SAFETY: recv into our own buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            break Err(err("recv"));
        }
        match parse_newgen(&buf[..n as usize]) {
            Some(Ok(g)) => break Ok(g),
            Some(Err(code)) => {
                break Err(NetworkError::Firewall(format!(
                    "nfnetlink getgen: {}",
                    std::io::Error::from_raw_os_error(code)
                )))
            }
            None => continue,
        }
    };
    // Closing waits for nf_tables' pending destruction work when a commit
    // (anyone's) was just made: 15 ms median measured right after an element
    // delete, 40 us otherwise. A child closes it for us (see nfnl::release).
    nfnl::release(fd);
    answer
}

#[cfg(test)]
#[path = "antispoof_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "antispoof_root_tests.rs"]
mod root_tests;
