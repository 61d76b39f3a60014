//! Renders minirt's nftables ruleset (the text `nft -f` reads) from plain data:
//! base table and maps, per-network chains, and port mappings as map elements.
//!
//! Layout of the one table per instance (family `inet`, matching
//! `Instance::nft_table`: one table can later carry IPv6 rules too, and inet
//! NAT chains work on every kernel >= 5.2):
//!
//! - port mappings are elements of four maps: `pm_tcp`/`pm_udp` keyed by
//!   host address . port (a specific `-p IP:...`), `pm_any_tcp`/`pm_any_udp`
//!   keyed by port only (the 0.0.0.0 wildcard). One `dnat ... map` rule per map,
//!   so lookup cost and the cost of adding a mapping do not grow with their
//!   number. Both NAT hooks jump to `ports` only for destinations that are
//!   local addresses (`fib daddr type local`), so 127.0.0.1 and every host
//!   address work, from the host (output) and from elsewhere (prerouting).
//! - forwarding: `iifname vmap @fwd_iif` / `oifname vmap @fwd_oif` send a packet
//!   straight to the chains of the network whose bridge it uses; other traffic
//!   walks nothing.
//! - source NAT: postrouting has no input interface, so it dispatches on
//!   `ct status dnat` + `oifname` (hairpin and localhost mappings) and on the
//!   source subnet (an interval verdict map, outbound masquerade).
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
use ipnet::Ipv4Net;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// A network as the firewall needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwNetwork {
    /// Network id; chain names derive from it.
    pub id: String,
    /// Bridge interface name (what iifname/oifname match).
    pub bridge: String,
    pub subnet: Ipv4Net,
    /// Internal networks reach nothing beyond their own bridge.
    pub internal: bool,
}

/// One published port, with the host port and container address resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwPort {
    pub proto: Proto,
    /// 0.0.0.0 = every local address.
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub ctr_ip: Ipv4Addr,
    pub ctr_port: u16,
}

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
];

const BASE_CHAINS: &[(&str, &str)] = &[
    (
        "prerouting",
        "type nat hook prerouting priority dstnat; policy accept;",
    ),
    (
        "output",
        "type nat hook output priority -100; policy accept;",
    ),
    (
        "postrouting",
        "type nat hook postrouting priority srcnat; policy accept;",
    ),
    (
        "forward",
        "type filter hook forward priority filter; policy accept;",
    ),
];

/// Declarations only (table, sets, maps, chains): safe to repeat, and lets the
/// delete scripts run against a table that does not exist yet.
fn declarations(table: &str) -> String {
    let mut s = format!("table inet {table} {{\n");
    s += "\tset bridges {\n\t\ttype ifname;\n\t}\n";
    for (name, spec) in MAPS {
        let _ = writeln!(s, "\tmap {name} {{");
        for part in spec.split_inclusive(';') {
            let _ = writeln!(s, "\t\t{}", part.trim());
        }
        s += "\t}\n";
    }
    for (name, spec) in BASE_CHAINS {
        let _ = writeln!(s, "\tchain {name} {{\n\t\t{spec}\n\t}}");
    }
    s += "\tchain ports {\n\t}\n";
    s += "}\n";
    s
}

/// The table, its maps and base chains with their dispatch rules. Re-running it
/// keeps every map element and per-network chain and changes nothing else.
///
/// Apply it in its OWN batch before the other scripts: nft 1.0.6 on this kernel
/// rejects (ENOENT) an element of an interval verdict map created in the same
/// batch when the element jumps to a chain (`post_src`).
pub fn render_base(table: &str) -> String {
    let mut s = declarations(table);
    for c in ["prerouting", "output", "postrouting", "forward", "ports"] {
        let _ = writeln!(s, "flush chain inet {table} {c}");
    }
    let rules = [
        ("prerouting", "fib daddr type local jump ports"),
        ("output", "fib daddr type local jump ports"),
        ("ports", "dnat ip to ip daddr . tcp dport map @pm_tcp"),
        ("ports", "dnat ip to ip daddr . udp dport map @pm_udp"),
        ("ports", "dnat ip to tcp dport map @pm_any_tcp"),
        ("ports", "dnat ip to udp dport map @pm_any_udp"),
        ("postrouting", "ct status dnat oifname vmap @post_dnat_oif"),
        ("postrouting", "ip saddr vmap @post_src"),
        ("forward", "iifname vmap @fwd_iif"),
        ("forward", "oifname vmap @fwd_oif"),
    ];
    for (chain, r) in rules {
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

struct NetChains {
    out: String,
    inb: String,
    hairpin: String,
    masq: String,
}

fn net_chains(n: &FwNetwork) -> NetChains {
    let p = chain_prefix(&n.id);
    NetChains {
        out: format!("{p}_out"),
        inb: format!("{p}_in"),
        hairpin: format!("{p}_hairpin"),
        masq: format!("{p}_masq"),
    }
}

/// The chains and map elements of one network. Requires `render_base` to
/// have been applied in an earlier batch.
pub fn render_network_add(table: &str, n: &FwNetwork) -> String {
    let c = net_chains(n);
    let br = q(&n.bridge);
    let mut s = String::new();
    let mut chain = |name: &str, rules: &[String]| {
        let _ = writeln!(s, "add chain inet {table} {name}");
        let _ = writeln!(s, "flush chain inet {table} {name}");
        for r in rules {
            let _ = writeln!(s, "add rule inet {table} {name} {r}");
        }
    };
    // Packets coming in from this bridge.
    let out_rules: Vec<String> = if n.internal {
        vec![format!("oifname {br} accept"), "drop".into()]
    } else {
        vec![
            format!("oifname {br} accept"),
            // Isolation: never forward into another minirt network.
            "oifname @bridges drop".into(),
            "accept".into(),
        ]
    };
    chain(&c.out, &out_rules);
    // Packets going out to this bridge from elsewhere.
    let in_rules: Vec<String> = if n.internal {
        vec!["drop".into()]
    } else {
        vec![
            "ct state established,related accept".into(),
            // Published ports: the DNAT already chose this bridge's container.
            "ct status dnat accept".into(),
            "drop".into(),
        ]
    };
    chain(&c.inb, &in_rules);
    // DNATed into this bridge from its own subnet (hairpin) or from the host's
    // 127.0.0.1 (route_localnet): the reply must come back through the host.
    chain(
        &c.hairpin,
        &[format!(
            "ip saddr {{ {}, 127.0.0.0/8 }} masquerade",
            n.subnet
        )],
    );
    if !n.internal {
        chain(&c.masq, &[format!("oifname != {br} masquerade")]);
    }
    let mut el = |map: &str, e: String| {
        let _ = writeln!(s, "add element inet {table} {map} {{ {e} }}");
    };
    el("bridges", br.clone());
    el("fwd_iif", format!("{br} : jump {}", c.out));
    el("fwd_oif", format!("{br} : jump {}", c.inb));
    el("post_dnat_oif", format!("{br} : jump {}", c.hairpin));
    if !n.internal {
        el("post_src", format!("{} : jump {}", n.subnet, c.masq));
    }
    s
}

/// Removes one network's elements and chains; succeeds also when some or all
/// of them are already gone.
pub fn render_network_del(table: &str, n: &FwNetwork) -> String {
    let c = net_chains(n);
    let br = q(&n.bridge);
    let mut s = declarations(table);
    let mut elems = vec![
        ("bridges", br.clone()),
        ("fwd_iif", format!("{br} : jump {}", c.out)),
        ("fwd_oif", format!("{br} : jump {}", c.inb)),
        ("post_dnat_oif", format!("{br} : jump {}", c.hairpin)),
    ];
    if !n.internal {
        elems.push(("post_src", format!("{} : jump {}", n.subnet, c.masq)));
    }
    let mut chains = vec![c.out.clone(), c.inb.clone(), c.hairpin.clone()];
    if !n.internal {
        chains.push(c.masq.clone());
    }
    // The adds make each delete valid whatever was there before.
    for ch in &chains {
        let _ = writeln!(s, "add chain inet {table} {ch}");
    }
    for (map, e) in &elems {
        let _ = writeln!(s, "add element inet {table} {map} {{ {e} }}");
    }
    for (map, e) in &elems {
        let key = e.split(" : ").next().unwrap_or(e);
        let _ = writeln!(s, "delete element inet {table} {map} {{ {key} }}");
    }
    for ch in &chains {
        let _ = writeln!(s, "flush chain inet {table} {ch}");
        let _ = writeln!(s, "delete chain inet {table} {ch}");
    }
    s
}

fn port_element(p: &FwPort) -> (String, String, String) {
    let proto = p.proto.to_string();
    let value = format!("{} . {}", p.ctr_ip, p.ctr_port);
    if p.host_ip.is_unspecified() {
        (format!("pm_any_{proto}"), p.host_port.to_string(), value)
    } else {
        (
            format!("pm_{proto}"),
            format!("{} . {}", p.host_ip, p.host_port),
            value,
        )
    }
}

/// Map elements for published ports (one line each, one batch).
pub fn render_ports_add(table: &str, ports: &[FwPort]) -> String {
    let mut s = String::new();
    for p in ports {
        let (map, key, value) = port_element(p);
        let _ = writeln!(s, "add element inet {table} {map} {{ {key} : {value} }}");
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
    for p in ports {
        let (map, key, _) = port_element(p);
        let _ = writeln!(s, "delete element inet {table} {map} {{ {key} }}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const T: &str = "minirt_1a2b3c4d";

    fn golden(name: &str, got: &str) {
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
            subnet: "10.77.0.0/24".parse().unwrap(),
            internal: false,
        }
    }
    pub(crate) fn net_b() -> FwNetwork {
        FwNetwork {
            id: "ffee0011".into(),
            bridge: "mrt-ffee0011".into(),
            subnet: "10.78.0.0/24".parse().unwrap(),
            internal: false,
        }
    }
    pub(crate) fn net_internal() -> FwNetwork {
        FwNetwork {
            id: "0badcafe".into(),
            bridge: "mrt-0badcafe".into(),
            subnet: "10.79.0.0/24".parse().unwrap(),
            internal: true,
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
            },
            FwPort {
                proto: Proto::Udp,
                host_ip: ip("0.0.0.0"),
                host_port: 5353,
                ctr_ip: ip("10.77.0.2"),
                ctr_port: 53,
            },
            FwPort {
                proto: Proto::Tcp,
                host_ip: ip("198.51.100.1"),
                host_port: 8081,
                ctr_ip: ip("10.77.0.3"),
                ctr_port: 81,
            },
            FwPort {
                proto: Proto::Udp,
                host_ip: ip("127.0.0.1"),
                host_port: 6000,
                ctr_ip: ip("10.77.0.3"),
                ctr_port: 60,
            },
        ]
    }

    #[test]
    fn golden_base() {
        golden("base", &render_base(T));
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
