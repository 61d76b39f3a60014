//! The anti-spoofing table as data: the `nft` script that makes or rebuilds
//! it, the nfnetlink elements of one guard, and the listing (`nft -j`) a
//! healthy table holding exactly a set of guards has. Pure.

use super::Guard;
use crate::network::ipam;
use crate::network::nfnl::Element;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// `NFPROTO_BRIDGE`.
const FAMILY: u8 = libc::NFPROTO_BRIDGE as u8;

/// The base chain's priority: before everything else on the bridge
/// (br_netfilter's hook sits at 0).
const PRIORITY: i64 = -300;

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
pub(super) fn render_table(table: &str) -> String {
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
pub(super) fn render_guards(table: &str, verb: &str, guards: &[Guard]) -> String {
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
pub(super) fn render_rebuild(table: &str, guards: &[Guard]) -> String {
    format!("add table bridge {table}\ndelete table bridge {table}\n")
        + &render_table(table)
        + &render_guards(table, "add", guards)
}

/// The nfnetlink elements of `g` (keys register-padded, as nft sends them:
/// an ifname is IFNAMSIZ bytes, a MAC 6 + 2, an IPv4 address 4).
pub(crate) fn elements(g: &Guard) -> Vec<Element> {
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
pub(super) struct Chain {
    /// (type, hook, priority, policy) of a base chain.
    pub base: Option<(String, String, i64, String)>,
    /// Each rule's `expr`.
    pub rules: Vec<Value>,
}

/// The parts of the table the check compares: sets (key type, elements) and
/// chains. Anything else in the table (another set or chain) is kept too, so
/// it makes the comparison fail.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Listing {
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
pub(super) fn parse_listing(text: &str) -> Result<Listing, String> {
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
pub(super) fn rule_exprs() -> [(&'static str, Value); 6] {
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
pub(super) fn expected(guards: &[Guard]) -> Listing {
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
pub(super) fn is_intact(listing: &str, guards: &[Guard]) -> bool {
    parse_listing(listing).is_ok_and(|l| l == expected(guards))
}
