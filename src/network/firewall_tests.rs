//! Golden-file and property tests of the nftables ruleset rendering
//! (`firewall.rs`); its fixtures are shared with the root tests of `nft.rs`.

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
    assert!(
        s.contains("add rule inet minirt_1a2b3c4d nw_0badcafe_out oifname \"mrt-0badcafe\" accept")
    );
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
