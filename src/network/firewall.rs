//! Renders minirt's nftables ruleset (the text `nft -f` reads) from plain data:
//! base table and maps, per-network chains, and port mappings as map elements;
//! and the desired state (`Desired`) the heal check compares the live table with.
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
    pub fn parse(s: &str) -> Option<GatewayMode> {
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

/// Name of the user's chain: called first in forward, never flushed by minirt.
pub const USER_CHAIN: &str = "user";

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
pub fn collections() -> impl Iterator<Item = &'static str> {
    SETS.iter().chain(MAPS).map(|(n, _)| *n)
}

/// Base chains: name, type, hook, priority (as `nft -j` reports it), policy.
pub const BASE_CHAINS: &[(&str, &str, &str, i64)] = &[
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
pub fn render_base(table: &str) -> String {
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
pub fn chain_prefix(id: &str) -> String {
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
pub fn render_network_add(table: &str, n: &FwNetwork) -> String {
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
pub fn render_network_del(table: &str, n: &FwNetwork) -> String {
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

/// The elements of one published port: its DNAT mapping (not on routed
/// networks) and its container address . port in `pub_*`.
pub fn port_elements(p: &FwPort) -> Vec<(String, String)> {
    let proto = p.proto.to_string();
    let six = if p.ctr_ip.is_ipv6() { "6" } else { "" };
    let value = format!("{} . {}", p.ctr_ip, p.ctr_port);
    let mut v = vec![];
    if !p.routed {
        if p.host_ip.is_unspecified() {
            v.push((
                format!("pm{six}_any_{proto}"),
                format!("{} : {value}", p.host_port),
            ));
        } else {
            v.push((
                format!("pm{six}_{proto}"),
                format!("{} . {} : {value}", p.host_ip, p.host_port),
            ));
        }
    }
    v.push((format!("pub{six}_{proto}"), value));
    v
}

/// Every element of these ports, once (two mappings may publish the same
/// container port: one `pub_*` element, which a batch must delete once).
fn unique_elements(ports: &[FwPort]) -> Vec<(String, String)> {
    let mut seen = BTreeSet::new();
    ports
        .iter()
        .flat_map(port_elements)
        .filter(|e| seen.insert(e.clone()))
        .collect()
}

/// Map elements for published ports (one line each, one batch).
pub fn render_ports_add(table: &str, ports: &[FwPort]) -> String {
    let mut s = String::new();
    for (map, e) in unique_elements(ports) {
        let _ = writeln!(s, "add element inet {table} {map} {{ {e} }}");
    }
    s
}

/// Removes published ports; absent ones are not an error.
pub fn render_ports_del(table: &str, ports: &[FwPort]) -> String {
    if ports.is_empty() {
        return String::new();
    }
    let mut s = declarations(table);
    s += &render_ports_add(table, ports);
    for (map, e) in unique_elements(ports) {
        let key = e.split(" : ").next().unwrap_or(&e).to_string();
        let _ = writeln!(s, "delete element inet {table} {map} {{ {key} }}");
    }
    s
}

/// Adds and deletes single elements (what the heal check found missing or
/// extra); `del` holds keys or `key : value` texts as `Desired` has them.
pub fn render_elements_fix(
    table: &str,
    add: &[(String, String)],
    del: &[(String, String)],
) -> String {
    let mut s = String::new();
    for (map, e) in del {
        // Re-add first: the element may have gone meanwhile.
        let _ = writeln!(
            s,
            "add element inet {table} {map} {{ {} }}",
            quote_elem(map, e)
        );
        let key = e.split(" : ").next().unwrap_or(e);
        let _ = writeln!(
            s,
            "delete element inet {table} {map} {{ {} }}",
            quote_elem(map, key)
        );
    }
    for (map, e) in add {
        let _ = writeln!(
            s,
            "add element inet {table} {map} {{ {} }}",
            quote_elem(map, e)
        );
    }
    s
}

/// `Desired` keeps interface names unquoted; scripts need them quoted.
fn quote_elem(map: &str, e: &str) -> String {
    let ifname_keyed = matches!(
        map,
        "bridges" | "fwd_iif" | "fwd_oif" | "post_dnat_oif" | "guard_iif"
    );
    if !ifname_keyed {
        return e.to_string();
    }
    match e.split_once(" : ") {
        Some((k, v)) => format!("{} : {v}", q(k)),
        None => q(e),
    }
}

/// What the instance's table must hold, in the shape `nft -j list table`
/// is normalised to (see rules.rs): chain -> verdict of each rule in order,
/// set/map -> elements (`key` or `key : value`, interface names unquoted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub chains: BTreeMap<String, Vec<String>>,
    pub elements: BTreeMap<String, BTreeSet<String>>,
}

/// The verdict a rule ends with, the part of a rule the heal check compares
/// (a rule that lost its verdict, or whose drop became an accept, differs).
pub fn verdict_of(rule: &str) -> String {
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
pub fn desired(nets: &[FwNetwork], ports: &[FwPort]) -> Desired {
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
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    const T: &str = "minirt_1a2b3c4d";

    pub(crate) fn golden(name: &str, got: &str) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/network/testdata")
            .join(format!("{name}.nft"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, got).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
                path.display()
            )
        });
        assert_eq!(
            got, want,
            "{name}.nft differs; if the change is intended, rerun with UPDATE_GOLDEN=1"
        );
    }

    pub(crate) fn net_a() -> FwNetwork {
        FwNetwork {
            id: "a1b2c3d4e5f60718293a4b5c6d7e8f90".into(),
            bridge: "mrt-a1b2c3d4".into(),
            v4: Some(FwV4 {
                subnet: "10.77.0.0/24".parse().unwrap(),
                gateway: "10.77.0.1".parse().unwrap(),
            }),
            internal: false,
            mode: GatewayMode::Nat,
            trusted: vec![],
            v6: None,
        }
    }
    pub(crate) fn net_b() -> FwNetwork {
        FwNetwork {
            id: "ffee0011".into(),
            bridge: "mrt-ffee0011".into(),
            v4: Some(FwV4 {
                subnet: "10.78.0.0/24".parse().unwrap(),
                gateway: "10.78.0.1".parse().unwrap(),
            }),
            internal: false,
            mode: GatewayMode::Nat,
            trusted: vec![],
            v6: None,
        }
    }
    pub(crate) fn net_internal() -> FwNetwork {
        FwNetwork {
            id: "0badcafe".into(),
            bridge: "mrt-0badcafe".into(),
            v4: Some(FwV4 {
                subnet: "10.79.0.0/24".parse().unwrap(),
                gateway: "10.79.0.1".parse().unwrap(),
            }),
            internal: true,
            mode: GatewayMode::Nat,
            trusted: vec![],
            v6: None,
        }
    }
    pub(crate) fn ports() -> Vec<FwPort> {
        let ip = |s: &str| s.parse().unwrap();
        vec![
            FwPort {
                proto: Proto::Tcp,
                host_ip: ip("0.0.0.0"),
                host_port: 8080,
                ctr_ip: ip("10.77.0.2"),
                ctr_port: 80,
                routed: false,
            },
            FwPort {
                proto: Proto::Udp,
                host_ip: ip("0.0.0.0"),
                host_port: 5353,
                ctr_ip: ip("10.77.0.2"),
                ctr_port: 53,
                routed: false,
            },
            FwPort {
                proto: Proto::Tcp,
                host_ip: ip("198.51.100.1"),
                host_port: 8081,
                ctr_ip: ip("10.77.0.3"),
                ctr_port: 81,
                routed: false,
            },
            FwPort {
                proto: Proto::Udp,
                host_ip: ip("127.0.0.1"),
                host_port: 6000,
                ctr_ip: ip("10.77.0.3"),
                ctr_port: 60,
                routed: false,
            },
        ]
    }

    #[test]
    fn golden_base() {
        golden("base", &render_base(T));
    }

    pub(crate) fn net_dual(mode6: GatewayMode) -> FwNetwork {
        FwNetwork {
            v6: Some(FwV6 {
                subnet: "fd00:77::/64".parse().unwrap(),
                gateway: "fd00:77::1".parse().unwrap(),
                mode: mode6,
            }),
            ..net_a()
        }
    }

    pub(crate) fn ports6() -> Vec<FwPort> {
        let ip = |s: &str| s.parse().unwrap();
        let p = |host: &str, hp: u16, ctr: &str| FwPort {
            proto: Proto::Tcp,
            host_ip: ip(host),
            host_port: hp,
            ctr_ip: ip(ctr),
            ctr_port: 80,
            routed: false,
        };
        vec![
            p("::", 8080, "fd00:77::2"),
            p("::1", 8081, "fd00:77::2"),
            p("2001:db8::1", 8082, "fd00:77::3"),
        ]
    }

    #[test]
    fn golden_dual_stack_networks_and_ipv6_ports() {
        golden(
            "dual_add",
            &render_network_add(T, &net_dual(GatewayMode::Nat)),
        );
        golden(
            "dual_del",
            &render_network_del(T, &net_dual(GatewayMode::Nat)),
        );
        golden(
            "dual_routed6_add",
            &render_network_add(T, &net_dual(GatewayMode::Routed)),
        );
        let iso = FwNetwork {
            internal: true,
            mode: GatewayMode::Isolated,
            ..net_dual(GatewayMode::Isolated)
        };
        golden("dual_isolated_add", &render_network_add(T, &iso));
        golden("ports6_add", &render_ports_add(T, &ports6()));
        golden("ports6_del", &render_ports_del(T, &ports6()));
        // NAT66 only where IPv6 is not routed; the guard only where it is not.
        let d = desired(&[net_dual(GatewayMode::Nat)], &ports6());
        assert_eq!(d.elements["post_src6"].len(), 1);
        assert_eq!(d.elements["guard_dst6"].len(), 1);
        assert_eq!(d.elements["pm6_any_tcp"].len(), 1);
        assert_eq!(d.elements["pm6_tcp"].len(), 2);
        assert_eq!(d.elements["pub6_tcp"].len(), 2);
        let d = desired(&[net_dual(GatewayMode::Routed)], &[]);
        assert!(d.elements["post_src6"].is_empty());
        assert!(d.elements["guard_dst6"].is_empty());
        assert_eq!(d.elements["post_src"].len(), 1, "IPv4 still masquerades");
        // A network without IPv6 renders exactly as before.
        assert!(!render_network_add(T, &net_a()).contains("ip6"));
    }

    pub(crate) fn net_v6only(mode6: GatewayMode) -> FwNetwork {
        FwNetwork {
            v4: None,
            ..net_dual(mode6)
        }
    }

    #[test]
    fn golden_ipv6_only_networks_have_no_ipv4_parts() {
        let nat = net_v6only(GatewayMode::Nat);
        let routed = net_v6only(GatewayMode::Routed);
        let iso = FwNetwork {
            internal: true,
            ..net_v6only(GatewayMode::Isolated)
        };
        golden("v6only_add", &render_network_add(T, &nat));
        golden("v6only_del", &render_network_del(T, &nat));
        golden("v6only_routed_add", &render_network_add(T, &routed));
        golden("v6only_isolated_add", &render_network_add(T, &iso));
        for n in [&nat, &routed, &iso] {
            let text = render_network_add(T, n) + &render_network_del(T, n);
            for v4 in [
                " ip saddr",
                " ip daddr",
                "127.0.0.0/8",
                "@pub_tcp",
                "@pub_udp",
            ] {
                assert!(!text.contains(v4), "{v4} in\n{text}");
            }
            let d = desired(std::slice::from_ref(n), &ports6());
            assert!(d.elements["post_src"].is_empty());
            assert!(d.elements["guard_dst"].is_empty());
        }
        let d = desired(std::slice::from_ref(&nat), &ports6());
        assert_eq!(d.elements["post_src6"].len(), 1, "NAT66");
        assert_eq!(d.elements["guard_dst6"].len(), 1);
        // The IPv6 mode decides: a routed v6-only network lets only its
        // published ports in, and may be reached from other networks.
        let d = desired(std::slice::from_ref(&routed), &[]);
        assert!(d.elements["post_src6"].is_empty());
        assert!(d.elements["bridges"].is_empty());
        let inb = format!("{}_in", chain_prefix(&routed.id));
        assert!(d.chains[&inb].iter().any(|r| r == "drop"));
    }

    #[test]
    fn golden_one_network() {
        golden("network_add", &render_network_add(T, &net_a()));
        golden("network_del", &render_network_del(T, &net_a()));
    }

    #[test]
    fn golden_internal_network() {
        golden("internal_add", &render_network_add(T, &net_internal()));
        golden("internal_del", &render_network_del(T, &net_internal()));
    }

    #[test]
    fn golden_two_networks() {
        let s = render_network_add(T, &net_a()) + &render_network_add(T, &net_b());
        golden("two_networks_add", &s);
    }

    #[test]
    fn golden_ports() {
        golden("ports_add", &render_ports_add(T, &ports()));
        golden("ports_del", &render_ports_del(T, &ports()));
    }

    #[test]
    fn golden_gateway_modes_and_trusted_interfaces() {
        for (name, mode) in [
            ("mode_nat_unprotected", GatewayMode::NatUnprotected),
            ("mode_routed", GatewayMode::Routed),
        ] {
            let n = FwNetwork { mode, ..net_a() };
            golden(&format!("{name}_add"), &render_network_add(T, &n));
            golden(&format!("{name}_del"), &render_network_del(T, &n));
        }
        let iso = FwNetwork {
            mode: GatewayMode::Isolated,
            ..net_internal()
        };
        golden("mode_isolated_add", &render_network_add(T, &iso));
        golden("mode_isolated_del", &render_network_del(T, &iso));
        let trusted = FwNetwork {
            trusted: vec!["eth3".into(), "vxlan.1".into()],
            ..net_a()
        };
        golden("trusted_add", &render_network_add(T, &trusted));
        let routed_trusted = FwNetwork {
            mode: GatewayMode::Routed,
            ..trusted.clone()
        };
        golden(
            "routed_trusted_add",
            &render_network_add(T, &routed_trusted),
        );
        let routed: Vec<FwPort> = ports()
            .into_iter()
            .map(|p| FwPort { routed: true, ..p })
            .collect();
        golden("ports_routed_add", &render_ports_add(T, &routed));
    }

    /// The cross product moby's nftabler tests cover: internal or not ×
    /// no ports / a wildcard port / a port on one host address / a udp port
    /// × one or two networks; each golden holds the additions, then the
    /// removals in reverse order.
    #[test]
    fn golden_cross_product_of_options() {
        let ip = |s: &str| s.parse().unwrap();
        let port = |proto, host: &str, hp, ctr: &str| FwPort {
            proto,
            host_ip: ip(host),
            host_port: hp,
            ctr_ip: ip(ctr),
            ctr_port: 80,
            routed: false,
        };
        for internal in [false, true] {
            for (pname, ports) in [
                ("noports", vec![]),
                (
                    "wildcard",
                    vec![port(Proto::Tcp, "0.0.0.0", 8080, "10.77.0.2")],
                ),
                (
                    "hostip",
                    vec![port(Proto::Tcp, "198.51.100.1", 8080, "10.77.0.2")],
                ),
                ("udp", vec![port(Proto::Udp, "0.0.0.0", 5353, "10.77.0.2")]),
            ] {
                for two in [false, true] {
                    let mut nets = vec![FwNetwork {
                        internal,
                        ..net_a()
                    }];
                    let mut ports = ports.clone();
                    if two {
                        nets.push(FwNetwork {
                            internal,
                            ..net_b()
                        });
                        ports.extend(ports.clone().into_iter().map(|p| FwPort {
                            host_port: p.host_port + 1,
                            ctr_ip: ip("10.78.0.2"),
                            ..p
                        }));
                    }
                    let mut s = String::new();
                    for n in &nets {
                        s += &render_network_add(T, n);
                    }
                    s += &render_ports_add(T, &ports);
                    s += "# removal\n";
                    s += &render_ports_del(T, &ports);
                    for n in nets.iter().rev() {
                        s += &render_network_del(T, n);
                    }
                    let name = format!(
                        "cross_{}_{pname}_{}",
                        if internal { "internal" } else { "external" },
                        if two { "two" } else { "one" }
                    );
                    golden(&name, &s);
                }
            }
        }
    }

    #[test]
    fn modes_differ_where_docker_says() {
        let nat = render_network_add(T, &net_a());
        assert!(nat.contains("guard_dst { 10.77.0.0/24 : jump nw_a1b2c3d4e5f60718_guard }"));
        assert!(nat.contains("post_src"));
        let unprotected = render_network_add(
            T,
            &FwNetwork {
                mode: GatewayMode::NatUnprotected,
                ..net_a()
            },
        );
        assert!(
            !unprotected.contains("guard_dst"),
            "no guard: direct routing allowed"
        );
        assert!(unprotected.contains("post_src"), "still masquerades");
        let routed = render_network_add(
            T,
            &FwNetwork {
                mode: GatewayMode::Routed,
                ..net_a()
            },
        );
        assert!(!routed.contains("post_src"), "routed: no masquerade");
        assert!(
            !routed.contains("bridges {"),
            "routed: reachable from other networks"
        );
        assert!(routed.contains("@pub_tcp accept"));
        let p = FwPort {
            routed: true,
            ..ports()[0]
        };
        assert_eq!(
            port_elements(&p),
            vec![("pub_tcp".to_string(), "10.77.0.2 . 80".to_string())],
            "routed: no DNAT"
        );
        let d = desired(&[net_a()], &ports());
        assert!(d.chains["guard"].contains(&"drop".to_string()));
        assert_eq!(d.elements["pub_tcp"].len(), 2);
        assert!(d.chains.contains_key(USER_CHAIN));
    }

    #[test]
    fn ports_go_to_the_right_map() {
        let s = render_ports_add(T, &ports());
        assert!(s.contains("add element inet minirt_1a2b3c4d pm_any_tcp { 8080 : 10.77.0.2 . 80 }"));
        assert!(s.contains("pm_any_udp { 5353 : 10.77.0.2 . 53 }"));
        assert!(s.contains("pm_tcp { 198.51.100.1 . 8081 : 10.77.0.3 . 81 }"));
        assert!(s.contains("pm_udp { 127.0.0.1 . 6000 : 10.77.0.3 . 60 }"));
        assert_eq!(render_ports_del(T, &[]), "");
    }

    #[test]
    fn internal_network_has_no_masquerade_out() {
        let s = render_network_add(T, &net_internal());
        assert!(!s.contains("post_src"));
        assert!(!s.contains("oifname != "));
        assert!(s.contains(
            "add rule inet minirt_1a2b3c4d nw_0badcafe_out oifname \"mrt-0badcafe\" accept"
        ));
        assert!(s.contains("add rule inet minirt_1a2b3c4d nw_0badcafe_in drop"));
    }

    #[test]
    fn chain_names_are_safe_and_short() {
        let n = FwNetwork {
            id: "x;y z-0123456789abcdef0123".into(),
            ..net_a()
        };
        let s = render_network_add(T, &n);
        assert!(s.contains("nw_xyz0123456789abc_out"));
        assert!(!s.contains("x;y"));
        assert_eq!(q("a\"b"), "\"ab\"");
    }
}
