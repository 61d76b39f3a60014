//! Renders minirt's nftables ruleset (the text `nft -f` reads) from plain data:
//! base table and maps, per-network chains, and port mappings as map elements
//! (`firewall/ports.rs`); and the desired state (`Desired`) the heal check
//! compares the live table with.
//!
//! Layout of the one table per instance (family `inet`, matching
//! `Instance::nft_table`: one table can later carry IPv6 rules too, and inet
//! NAT chains work on every kernel >= 5.2):
//!
//! - guard (raw prerouting, before conntrack and DNAT): packets to 127.0.0.0/8
//!   that did not arrive on `lo` are dropped (a LAN neighbour routing 127.0.0.1
//!   here, a container sending to 127.0.0.1 through its gateway with
//!   route_localnet on its bridge); packets to a network's subnet that arrive
//!   on neither its bridge nor one of its trusted interfaces are dropped
//!   (`guard_dst`), so the LAN reaches containers only through published
//!   ports, whose packets still carry a host address at this point.
//! - port mappings are elements of four maps: `pm_tcp`/`pm_udp` keyed by
//!   host address . port (a specific `-p IP:...`), `pm_any_tcp`/`pm_any_udp`
//!   keyed by port only (the 0.0.0.0 wildcard). One `dnat ... map` rule per map,
//!   so lookup cost and the cost of adding a mapping do not grow with their
//!   number. Both NAT hooks jump to `ports` only for destinations that are
//!   local addresses (`fib daddr type local`). Every published container
//!   address . port is also in `pub_tcp`/`pub_udp`: what direct routing may
//!   reach (routed mode, trusted interfaces).
//! - forwarding: the user's chain `user` first (never flushed by minirt), then
//!   `iifname vmap @fwd_iif` / `oifname vmap @fwd_oif` send a packet straight
//!   to the chains of the network whose bridge it uses.
//! - source NAT: postrouting has no input interface, so it dispatches on
//!   `ct status dnat` + `oifname` (hairpin and localhost mappings) and on the
//!   source subnet (an interval verdict map, outbound masquerade).
//!
//! Gateway modes (Docker 28's `gateway_mode_ipv4`): `nat` (the default: as
//! above), `nat-unprotected` (no guard, anything may be routed in),
//! `routed` (no masquerade, no DNAT: published container ports are reached
//! at the container's own address, from anywhere, other networks included),
//! `isolated` (internal only, and the bridge reaches nothing but its subnet
//! and the DNS responder: neither the host nor its services, either way).
//!
//! Policy: a network's containers may go anywhere except into another minirt
//! network (isolation, also for published ports of another network, like
//! Docker without its userland proxy); into a network only replies and
//! published ports come; an internal network forwards nothing beyond its bridge
//! (so `-p` on it has no effect, as in Docker). The host itself may always
//! connect to containers (OUTPUT is not filtered).
//!
//! What the caller sets up for these rules to work: `net.ipv4.ip_forward=1`,
//! `route_localnet=1` on each bridge (127.0.0.1 mappings), and hairpin mode on
//! each bridge port (with br_netfilter loaded a hairpin DNAT is bridged straight
//! back out of the port it came in on).
//!
//! Every script is idempotent: declarations use `add` (no-op when present),
//! chains are flushed before their rules are re-added, and deletions are
//! preceded by the matching `add`, so deleting something absent is not an
//! error (nft 1.0.6 has no `destroy`). `nft -f` applies a script atomically.

use super::portspec::Proto;
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

mod ports;
pub use ports::{port_elements, render_elements_fix, render_ports_add, render_ports_del};

/// Docker 28's `com.docker.network.bridge.gateway_mode_ipv4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GatewayMode {
    #[default]
    Nat,
    NatUnprotected,
    Routed,
    Isolated,
}

impl GatewayMode {
    pub(crate) fn parse(s: &str) -> Option<GatewayMode> {
        Some(match s {
            "nat" => GatewayMode::Nat,
            "nat-unprotected" => GatewayMode::NatUnprotected,
            "routed" => GatewayMode::Routed,
            "isolated" => GatewayMode::Isolated,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayMode::Nat => "nat",
            GatewayMode::NatUnprotected => "nat-unprotected",
            GatewayMode::Routed => "routed",
            GatewayMode::Isolated => "isolated",
        }
    }
}

/// A network as the firewall needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwNetwork {
    /// Network id; chain names derive from it.
    pub id: String,
    /// Bridge interface name (what iifname/oifname match).
    pub bridge: String,
    /// The network's IPv4 side; None on an IPv6-only network (`--ipv4=false`).
    pub v4: Option<FwV4>,
    /// Internal networks reach nothing beyond their own bridge.
    pub internal: bool,
    pub mode: GatewayMode,
    /// Host interfaces allowed to route to published container ports directly.
    pub trusted: Vec<String>,
    /// The network's IPv6 side, when it has one.
    pub v6: Option<FwV6>,
}

/// A network's IPv4 subnet and gateway (the bridge's host address,
/// reachable from outside like any host address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwV4 {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
}

/// A dual-stack network's IPv6 subnet, gateway and gateway mode
/// (`gateway_mode_ipv6`: nat masquerades (NAT66), routed does not and lets
/// only published ports in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwV6 {
    pub subnet: Ipv6Net,
    pub gateway: Ipv6Addr,
    pub mode: GatewayMode,
}

/// One published port, with the host port and container address resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwPort {
    pub proto: Proto,
    /// 0.0.0.0 = every local IPv4 address, `::` every IPv6 one; the family
    /// is the container address's.
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub ctr_ip: IpAddr,
    pub ctr_port: u16,
    /// On a `routed` network: no DNAT, the container port is reached directly.
    pub routed: bool,
}

#[cfg(test)]
impl FwPort {
    /// A NAT-mode mapping for tests: `proto host_ip:host_port -> ctr:ctr_port`.
    pub(crate) fn test(
        proto: Proto,
        host_ip: &str,
        host_port: u16,
        ctr: &str,
        ctr_port: u16,
    ) -> Self {
        FwPort {
            proto,
            host_ip: host_ip.parse().unwrap(),
            host_port,
            ctr_ip: ctr.parse().unwrap(),
            ctr_port,
            routed: false,
        }
    }
}

/// Name of the user's chain: called first in forward, never flushed by minirt.
pub(crate) const USER_CHAIN: &str = "user";

const MAPS: &[(&str, &str)] = &[
    (
        "pm_tcp",
        "type ipv4_addr . inet_service : ipv4_addr . inet_service;",
    ),
    (
        "pm_udp",
        "type ipv4_addr . inet_service : ipv4_addr . inet_service;",
    ),
    (
        "pm_any_tcp",
        "type inet_service : ipv4_addr . inet_service;",
    ),
    (
        "pm_any_udp",
        "type inet_service : ipv4_addr . inet_service;",
    ),
    ("fwd_iif", "type ifname : verdict;"),
    ("fwd_oif", "type ifname : verdict;"),
    ("post_dnat_oif", "type ifname : verdict;"),
    ("post_src", "type ipv4_addr : verdict; flags interval;"),
    ("guard_dst", "type ipv4_addr : verdict; flags interval;"),
    ("guard_iif", "type ifname : verdict;"),
    (
        "pm6_tcp",
        "type ipv6_addr . inet_service : ipv6_addr . inet_service;",
    ),
    (
        "pm6_udp",
        "type ipv6_addr . inet_service : ipv6_addr . inet_service;",
    ),
    (
        "pm6_any_tcp",
        "type inet_service : ipv6_addr . inet_service;",
    ),
    (
        "pm6_any_udp",
        "type inet_service : ipv6_addr . inet_service;",
    ),
    ("post_src6", "type ipv6_addr : verdict; flags interval;"),
    ("guard_dst6", "type ipv6_addr : verdict; flags interval;"),
];

const SETS: &[(&str, &str)] = &[
    ("bridges", "type ifname;"),
    ("pub_tcp", "type ipv4_addr . inet_service;"),
    ("pub_udp", "type ipv4_addr . inet_service;"),
    ("pub6_tcp", "type ipv6_addr . inet_service;"),
    ("pub6_udp", "type ipv6_addr . inet_service;"),
];

/// Every set and map of the table (what the heal check compares elements of).
pub(crate) fn collections() -> impl Iterator<Item = &'static str> {
    SETS.iter().chain(MAPS).map(|(n, _)| *n)
}

/// Base chains: name, type, hook, priority (as `nft -j` reports it), policy.
pub(crate) const BASE_CHAINS: &[(&str, &str, &str, i64)] = &[
    ("guard", "filter", "prerouting", -300),
    ("prerouting", "nat", "prerouting", -100),
    ("output", "nat", "output", -100),
    ("postrouting", "nat", "postrouting", 100),
    ("forward", "filter", "forward", 0),
];

/// Rules of the base chains and `ports`, in order.
fn base_rules() -> Vec<(&'static str, &'static str)> {
    vec![
        ("guard", "iifname \"lo\" accept"),
        ("guard", "ip daddr 127.0.0.0/8 drop"),
        ("guard", "ip6 daddr ::1 drop"),
        ("guard", "iifname vmap @guard_iif"),
        ("guard", "ip daddr vmap @guard_dst"),
        ("guard", "ip6 daddr vmap @guard_dst6"),
        ("prerouting", "fib daddr type local jump ports"),
        ("output", "fib daddr type local jump ports"),
        ("ports", "dnat ip to ip daddr . tcp dport map @pm_tcp"),
        ("ports", "dnat ip to ip daddr . udp dport map @pm_udp"),
        ("ports", "dnat ip to tcp dport map @pm_any_tcp"),
        ("ports", "dnat ip to udp dport map @pm_any_udp"),
        ("ports", "dnat ip6 to ip6 daddr . tcp dport map @pm6_tcp"),
        ("ports", "dnat ip6 to ip6 daddr . udp dport map @pm6_udp"),
        ("ports", "dnat ip6 to tcp dport map @pm6_any_tcp"),
        ("ports", "dnat ip6 to udp dport map @pm6_any_udp"),
        ("postrouting", "ct status dnat oifname vmap @post_dnat_oif"),
        ("postrouting", "ip saddr vmap @post_src"),
        ("postrouting", "ip6 saddr vmap @post_src6"),
        ("forward", "jump user"),
        ("forward", "iifname vmap @fwd_iif"),
        ("forward", "oifname vmap @fwd_oif"),
    ]
}

/// Declarations only (table, sets, maps, chains): safe to repeat, and lets the
/// delete scripts run against a table that does not exist yet.
fn declarations(table: &str) -> String {
    let mut s = format!("table inet {table} {{\n");
    for (name, spec) in SETS {
        let _ = writeln!(s, "\tset {name} {{\n\t\t{spec}\n\t}}");
    }
    for (name, spec) in MAPS {
        let _ = writeln!(s, "\tmap {name} {{");
        for part in spec.split_inclusive(';') {
            let _ = writeln!(s, "\t\t{}", part.trim());
        }
        s += "\t}\n";
    }
    for (name, typ, hook, prio) in BASE_CHAINS {
        let _ = writeln!(
            s,
            "\tchain {name} {{\n\t\ttype {typ} hook {hook} priority {prio}; policy accept;\n\t}}"
        );
    }
    s += "\tchain ports {\n\t}\n";
    let _ = writeln!(s, "\tchain {USER_CHAIN} {{\n\t}}");
    s += "}\n";
    s
}

/// The table, its maps and base chains with their dispatch rules. Re-running it
/// keeps every map element, per-network chain and the user's chain.
///
/// Apply it in its OWN batch before the other scripts: nft 1.0.6 on this kernel
/// rejects (ENOENT) an element of an interval verdict map created in the same
/// batch when the element jumps to a chain (`post_src`).
pub(crate) fn render_base(table: &str) -> String {
    let mut s = declarations(table);
    for (c, ..) in BASE_CHAINS {
        let _ = writeln!(s, "flush chain inet {table} {c}");
    }
    let _ = writeln!(s, "flush chain inet {table} ports");
    for (chain, r) in base_rules() {
        let _ = writeln!(s, "add rule inet {table} {chain} {r}");
    }
    s
}

/// nft chain names from an id: keep it short and inside nft's identifier rules.
pub(crate) fn chain_prefix(id: &str) -> String {
    let clean: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    format!("nw_{clean}")
}

fn q(ifname: &str) -> String {
    // Interface names cannot hold '"' in practice; strip it so the script stays well formed.
    format!("\"{}\"", ifname.replace('"', ""))
}

/// One network's chains (name, rules) and elements (set, `key` or `key : value`).
struct NetPlan {
    chains: Vec<(String, Vec<String>)>,
    elements: Vec<(&'static str, String)>,
}

fn net_plan(n: &FwNetwork) -> NetPlan {
    let p = chain_prefix(&n.id);
    let (out, inb, hairpin, masq, guard, iso) = (
        format!("{p}_out"),
        format!("{p}_in"),
        format!("{p}_hairpin"),
        format!("{p}_masq"),
        format!("{p}_guard"),
        format!("{p}_iso"),
    );
    let br = q(&n.bridge);
    let trusted = (!n.trusted.is_empty()).then(|| {
        let t: Vec<String> = n.trusted.iter().map(|t| q(t)).collect();
        format!("{{ {} }}", t.join(", "))
    });
    // An IPv6-only network: its IPv6 gateway mode decides for the shared
    // chains, and no rule or element speaks IPv4.
    let v4 = n.v4.as_ref();
    let base_mode = match (v4, &n.v6) {
        (None, Some(v6)) => v6.mode,
        _ => n.mode,
    };
    let mode = if n.internal && base_mode != GatewayMode::Isolated {
        GatewayMode::Nat
    } else {
        base_mode
    };
    let mut chains = vec![];
    let mut elements: Vec<(&'static str, String)> = vec![];
    // Packets coming in from this bridge.
    let out_rules: Vec<String> = if n.internal {
        vec![format!("oifname {br} accept"), "drop".into()]
    } else {
        vec![
            format!("oifname {br} accept"),
            // Replies to what another network may open here (a routed
            // network's ports) go back.
            "ct state established,related accept".into(),
            // Isolation: never forward into another minirt network.
            "oifname @bridges drop".into(),
            "accept".into(),
        ]
    };
    chains.push((out.clone(), out_rules));
    // Packets going out to this bridge from elsewhere.
    let pub_ok: &[&str] = match v4 {
        Some(_) => &[
            "ip daddr . tcp dport @pub_tcp accept",
            "ip daddr . udp dport @pub_udp accept",
        ],
        None => &[],
    };
    let pub6_ok = [
        "ip6 daddr . tcp dport @pub6_tcp accept",
        "ip6 daddr . udp dport @pub6_udp accept",
    ];
    let mode6 = n.v6.as_ref().map(|v| {
        if n.internal && v.mode != GatewayMode::Isolated {
            GatewayMode::Nat
        } else {
            v.mode
        }
    });
    let in_rules: Vec<String> = if n.internal {
        vec!["drop".into()]
    } else {
        let mut r = vec!["ct state established,related accept".to_string()];
        // An IPv6 side routed while IPv4 is not: its published ports
        // directly (the IPv4 rules below never match IPv6).
        let routed6_only = mode6 == Some(GatewayMode::Routed) && mode != GatewayMode::Routed;
        if routed6_only {
            r.extend(pub6_ok.iter().map(|s| s.to_string()));
        }
        match mode {
            GatewayMode::NatUnprotected => r.push("accept".into()),
            GatewayMode::Routed => {
                r.extend(pub_ok.iter().map(|s| s.to_string()));
                if n.v6.is_some() && mode6 == Some(GatewayMode::Routed) {
                    r.extend(pub6_ok.iter().map(|s| s.to_string()));
                } else if n.v6.is_some() {
                    r.push("ct status dnat accept".into());
                }
                r.push("drop".into());
            }
            _ => {
                // Published ports: the DNAT already chose this bridge's container.
                r.push("ct status dnat accept".into());
                if let Some(t) = &trusted {
                    r.extend(pub_ok.iter().map(|s| format!("iifname {t} {s}")));
                    if n.v6.is_some() {
                        r.extend(pub6_ok.iter().map(|s| format!("iifname {t} {s}")));
                    }
                }
                r.push("drop".into());
            }
        }
        r
    };
    chains.push((inb.clone(), in_rules));
    // DNATed into this bridge from its own subnet (hairpin) or from the host's
    // 127.0.0.1 (route_localnet): the reply must come back through the host.
    let mut hairpin_rules: Vec<String> = v4
        .map(|v4| format!("ip saddr {{ {}, 127.0.0.0/8 }} masquerade", v4.subnet))
        .into_iter()
        .collect();
    if let Some(v6) = &n.v6 {
        hairpin_rules.push(format!("ip6 saddr {{ {}, ::1 }} masquerade", v6.subnet));
    }
    chains.push((hairpin.clone(), hairpin_rules));
    let masquerades = v4.is_some() && !n.internal && mode != GatewayMode::Routed;
    let masquerades6 = !n.internal && mode6.is_some_and(|m| m != GatewayMode::Routed);
    if masquerades || masquerades6 {
        chains.push((masq.clone(), vec![format!("oifname != {br} masquerade")]));
    }
    // Direct routing into the subnet from elsewhere (raw prerouting).
    let guarded = v4.is_some() && matches!(mode, GatewayMode::Nat | GatewayMode::Isolated);
    let guarded6 = matches!(mode6, Some(GatewayMode::Nat | GatewayMode::Isolated));
    if guarded || guarded6 {
        let mut r = vec![format!("iifname {br} return")];
        if let Some(t) = &trusted {
            r.push(format!("iifname {t} return"));
        }
        if let (Some(v4), true) = (v4, mode != GatewayMode::Isolated) {
            r.push(format!("ip daddr {} return", v4.gateway));
        }
        if let (Some(v6), true) = (&n.v6, mode6 != Some(GatewayMode::Isolated)) {
            r.push(format!("ip6 daddr {} return", v6.gateway));
        }
        r.push("drop".into());
        chains.push((guard.clone(), r));
    }
    if mode == GatewayMode::Isolated {
        // Only its subnet, and the host's DNS responder on the gateway (the
        // gateway keeps its address for it; Docker's resolver lives in the
        // container instead). Replies to the host are dropped too, so the
        // host cannot talk to the network either.
        let mut r = vec![];
        if let Some(v4) = v4 {
            let gw = v4.gateway;
            r.extend([
                format!("ip daddr {gw} udp dport 53 return"),
                format!("ip daddr {gw} tcp dport 53 return"),
                format!("ip daddr {gw} drop"),
                format!("ip daddr {} return", v4.subnet),
            ]);
        }
        if let Some(v6) = &n.v6 {
            let gw6 = v6.gateway;
            r.extend([
                format!("ip6 daddr {gw6} udp dport 53 return"),
                format!("ip6 daddr {gw6} tcp dport 53 return"),
                format!("ip6 daddr {gw6} drop"),
                format!("ip6 daddr {} return", v6.subnet),
                // Neighbour discovery with the bridge (link-local).
                "ip6 daddr fe80::/10 return".into(),
                "ip6 daddr ff02::/16 return".into(),
            ]);
        }
        r.push("drop".into());
        chains.push((iso.clone(), r));
    }
    // Routed networks may be reached from other networks (Docker's rule).
    if mode != GatewayMode::Routed {
        elements.push(("bridges", br.clone()));
    }
    elements.push(("fwd_iif", format!("{br} : jump {out}")));
    elements.push(("fwd_oif", format!("{br} : jump {inb}")));
    elements.push(("post_dnat_oif", format!("{br} : jump {hairpin}")));
    if let Some(v4) = v4 {
        if masquerades {
            elements.push(("post_src", format!("{} : jump {masq}", v4.subnet)));
        }
        if guarded {
            elements.push(("guard_dst", format!("{} : jump {guard}", v4.subnet)));
        }
    }
    if let Some(v6) = &n.v6 {
        if masquerades6 {
            elements.push(("post_src6", format!("{} : jump {masq}", v6.subnet)));
        }
        if guarded6 {
            elements.push(("guard_dst6", format!("{} : jump {guard}", v6.subnet)));
        }
    }
    if mode == GatewayMode::Isolated {
        elements.push(("guard_iif", format!("{br} : jump {iso}")));
    }
    NetPlan { chains, elements }
}

/// The chains and map elements of one network. Requires `render_base` to
/// have been applied in an earlier batch.
pub(crate) fn render_network_add(table: &str, n: &FwNetwork) -> String {
    let plan = net_plan(n);
    let mut s = String::new();
    for (name, rules) in &plan.chains {
        let _ = writeln!(s, "add chain inet {table} {name}");
        let _ = writeln!(s, "flush chain inet {table} {name}");
        for r in rules {
            let _ = writeln!(s, "add rule inet {table} {name} {r}");
        }
    }
    for (map, e) in &plan.elements {
        let _ = writeln!(s, "add element inet {table} {map} {{ {e} }}");
    }
    s
}

/// Removes one network's elements and chains; succeeds also when some or all
/// of them are already gone.
pub(crate) fn render_network_del(table: &str, n: &FwNetwork) -> String {
    let plan = net_plan(n);
    let mut s = declarations(table);
    // The adds make each delete valid whatever was there before.
    for (ch, _) in &plan.chains {
        let _ = writeln!(s, "add chain inet {table} {ch}");
    }
    for (map, e) in &plan.elements {
        let _ = writeln!(s, "add element inet {table} {map} {{ {e} }}");
    }
    for (map, e) in &plan.elements {
        let key = e.split(" : ").next().unwrap_or(e);
        let _ = writeln!(s, "delete element inet {table} {map} {{ {key} }}");
    }
    for (ch, _) in &plan.chains {
        let _ = writeln!(s, "flush chain inet {table} {ch}");
        let _ = writeln!(s, "delete chain inet {table} {ch}");
    }
    s
}

/// What the instance's table must hold, in the shape `nft -j list table`
/// is normalised to (see rules.rs): chain -> verdict of each rule in order,
/// set/map -> elements (`key` or `key : value`, interface names unquoted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Desired {
    pub chains: BTreeMap<String, Vec<String>>,
    pub elements: BTreeMap<String, BTreeSet<String>>,
}

/// The verdict a rule ends with, the part of a rule the heal check compares
/// (a rule that lost its verdict, or whose drop became an accept, differs).
pub(crate) fn verdict_of(rule: &str) -> String {
    let words: Vec<&str> = rule.split_whitespace().collect();
    if let Some(i) = words.iter().position(|w| *w == "vmap") {
        return format!("vmap {}", words.get(i + 1).unwrap_or(&""));
    }
    if words.first() == Some(&"dnat") {
        if let Some(i) = words.iter().position(|w| *w == "map") {
            return format!("dnat {}", words.get(i + 1).unwrap_or(&""));
        }
    }
    if let Some(i) = words.iter().position(|w| *w == "jump") {
        return format!("jump {}", words.get(i + 1).unwrap_or(&""));
    }
    words.last().map_or_else(String::new, |w| w.to_string())
}

/// The desired state of the whole table for these networks and ports. Pure.
pub(crate) fn desired(nets: &[FwNetwork], ports: &[FwPort]) -> Desired {
    let mut d = Desired::default();
    for (name, ..) in BASE_CHAINS {
        d.chains.insert(name.to_string(), vec![]);
    }
    d.chains.insert("ports".into(), vec![]);
    d.chains.insert(USER_CHAIN.into(), vec![]);
    for (chain, r) in base_rules() {
        d.chains
            .entry(chain.into())
            .or_default()
            .push(verdict_of(r));
    }
    for c in collections() {
        d.elements.insert(c.into(), BTreeSet::new());
    }
    let unquote = |s: &str| s.replace('"', "");
    for n in nets {
        let plan = net_plan(n);
        for (name, rules) in plan.chains {
            d.chains
                .insert(name, rules.iter().map(|r| verdict_of(r)).collect());
        }
        for (map, e) in plan.elements {
            d.elements
                .entry(map.into())
                .or_default()
                .insert(unquote(&e));
        }
    }
    for p in ports {
        for (map, e) in port_elements(p) {
            d.elements.entry(map).or_default().insert(e);
        }
    }
    d
}

#[cfg(test)]
#[path = "firewall_tests.rs"]
pub(crate) mod tests;
