//! Unit tests of the anti-spoofing rules: the script, the nfnetlink elements,
//! the wanted state from store rows and the listing check (no root).

use super::rules::*;
use super::*;
use crate::network::firewall::tests::golden;

const T: &str = "minirt_1a2b3c4d";

pub(crate) fn guard(port: &str, ip: &str) -> Guard {
    let ip: Ipv4Addr = ip.parse().unwrap();
    Guard {
        port: port.into(),
        mac: ipam::mac_for(ip),
        ip,
        ip6: None,
    }
}

fn net(id: &str, options: &[(&str, &str)]) -> NetworkRow {
    NetworkRow {
        id: id.into(),
        name: id.into(),
        driver: "bridge".into(),
        subnet: "10.77.0.0/24".into(),
        net_start: 0,
        net_end: 0,
        gateway: "10.77.0.1".into(),
        device: format!("mrb-{id}"),
        internal: false,
        mtu: 1500,
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        created: 0,
        subnet6: String::new(),
        gateway6: String::new(),
    }
}

fn ep(id: &str, net: &str, ip: &str) -> EndpointRow {
    EndpointRow {
        id: id.into(),
        container_id: format!("c-{id}"),
        network_id: net.into(),
        ifname: "eth0".into(),
        ip: ip.parse().unwrap(),
        mac: String::new(),
        host_ifname: format!("mrv{id}"),
        aliases: vec![],
        ip6: None,
    }
}

#[test]
fn golden_table_and_elements() {
    golden("antispoof_table", &render_table(T));
    let g = [
        guard("mrv0123456789ab", "10.77.0.2"),
        guard("mrvfedcba987654", "10.77.0.3"),
    ];
    golden("antispoof_add", &render_guards(T, "add", &g));
    golden("antispoof_rebuild", &render_rebuild(T, &g));
}

#[test]
fn ipv6_endpoints_may_send_from_their_own_and_link_local_addresses() {
    let mut g = guard("mrv0123456789ab", "10.77.0.2");
    g.ip6 = Some("fd00:1::2".parse().unwrap());
    golden("antispoof_add_ipv6", &render_guards(T, "add", &[g.clone()]));
    let e = elements(&g);
    let names: Vec<&str> = e.iter().map(|e| e.map.as_str()).collect();
    assert_eq!(
        names,
        ["ports", "allow_ip", "allow_arp", "allow_ip6", "allow_ip6"]
    );
    let ifname = b"mrv0123456789ab\0".to_vec();
    let mac = [0x02, 0x42, 10, 77, 0, 2, 0, 0];
    let ll: Ipv6Addr = "fe80::42:aff:fe4d:2".parse().unwrap();
    assert_eq!(e[3].key, [&ifname[..], &mac, &ll.octets()].concat());
    let own: Ipv6Addr = "fd00:1::2".parse().unwrap();
    assert_eq!(e[4].key, [&ifname[..], &mac, &own.octets()].concat());
    // The listing of a table holding it is what the check expects.
    let l = expected(std::slice::from_ref(&g));
    assert_eq!(l.sets["allow_ip6"].1.len(), 2);
    // Without IPv6: no IPv6 element, so no IPv6 frame passes.
    let v4 = guard("mrv0123456789ab", "10.77.0.2");
    assert!(elements(&v4).iter().all(|e| e.map != "allow_ip6"));
    assert_ne!(check_key("h", 1, &[g]), check_key("h", 1, &[v4]));
}

#[test]
fn ipv6_only_endpoints_may_send_no_ipv4_nor_arp() {
    let ip6: Ipv6Addr = "fd00:1::2".parse().unwrap();
    let mut e = ep("e1", "n1", "0.0.0.0");
    e.ip6 = Some(ip6);
    let g = guard_of(&e);
    assert_eq!(g.mac, [0x02, 0x42, 0, 0, 0, 2]);
    golden(
        "antispoof_add_ipv6_only",
        &render_guards(T, "add", std::slice::from_ref(&g)),
    );
    let names: Vec<String> = elements(&g).into_iter().map(|e| e.map).collect();
    assert_eq!(names, ["ports", "allow_ip6", "allow_ip6"]);
    let l = expected(std::slice::from_ref(&g));
    assert!(l.sets["allow_ip"].1.is_empty());
    assert!(l.sets["allow_arp"].1.is_empty());
}

#[test]
fn the_script_says_what_the_listing_checks() {
    // Every rule of the script is one of the rules the check expects,
    // in the same order and chain.
    let s = render_table(T);
    let rules: Vec<&str> = s
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("add rule bridge {T} ")))
        .collect();
    let chains: Vec<&str> = rules.iter().map(|r| r.split(' ').next().unwrap()).collect();
    let want: Vec<&str> = rule_exprs().iter().map(|(c, _)| *c).collect();
    assert_eq!(chains, want);
    assert!(s.contains("priority -300; policy accept;"));
}

#[test]
fn elements_are_keyed_like_nft() {
    let g = guard("mrv0123456789ab", "10.0.0.2");
    let e = elements(&g);
    let names: Vec<&str> = e.iter().map(|e| e.map.as_str()).collect();
    assert_eq!(names, ["ports", "allow_ip", "allow_arp"]);
    let ifname = b"mrv0123456789ab\0".to_vec();
    assert_eq!(e[0].key, ifname);
    let mac = [0x02, 0x42, 10, 0, 0, 2, 0, 0];
    assert_eq!(e[1].key, [&ifname[..], &mac, &[10, 0, 0, 2]].concat());
    assert_eq!(e[2].key, [&ifname[..], &mac, &mac, &[10, 0, 0, 2]].concat());
    assert!(e.iter().all(|e| e.data.is_empty() && e.family == 7));
    assert_eq!(e[0].what, "mrv0123456789ab (02:42:0a:00:00:02 10.0.0.2)");
    // A shorter name is zero-padded to IFNAMSIZ.
    assert_eq!(
        elements(&guard("mrv1", "10.0.0.2"))[0].key,
        b"mrv1\0\0\0\0\0\0\0\0\0\0\0\0"
    );
}

/// Bytes from `strace -X raw` of nft 1.0.6 (`nft add element bridge
/// minirt_x allow_arp { "mrv0123456789ab" . 02:42:0a:00:00:02 .
/// 02:42:0a:00:00:02 . 10.0.0.2 }`), without nft's SET_ID attribute
/// (8 bytes: 112 -> 104), flags NLM_F_REQUEST | NLM_F_CREATE.
#[test]
fn arp_element_message_matches_nft() {
    let e = elements(&guard("mrv0123456789ab", "10.0.0.2")).remove(2);
    let ne16 = |v: u16| hex::encode(v.to_ne_bytes());
    let want: String = format!(
        "{len} {typ} {flags} {seq} 00000000 07000000
             0d00 0100 6d696e6972745f7800 000000
             0e00 0200 616c6c6f775f61727000 0000
             3400 0380 3000 0180 2c00 0180 2800 0100
             6d727630313233343536373839616200 02420a0000020000 02420a0000020000 0a000002",
        len = hex::encode(104u32.to_ne_bytes()),
        typ = ne16(0x0a0c),
        flags = ne16(0x401),
        seq = hex::encode(1u32.to_ne_bytes()),
    )
    .split_whitespace()
    .collect();
    assert_eq!(
        hex::encode(nfnl::setelem_message(
            nfnl::Op::Add,
            "minirt_x",
            &e,
            1,
            false
        )),
        want
    );
}

#[test]
fn wanted_follows_the_store() {
    let on = net("n1", &[]);
    let off = net("n2", &[(OPTION, "false")]);
    let explicit = net("n3", &[(OPTION, "true")]);
    assert!(enabled(&on) && !enabled(&off) && enabled(&explicit));
    assert_eq!(wanted(&[], &[]), None, "no network: no table");
    assert_eq!(wanted(std::slice::from_ref(&on), &[]), Some(vec![]));
    let eps = [
        ep("b", "n1", "10.77.0.3"),
        ep("a", "n1", "10.77.0.2"),
        ep("c", "n2", "10.78.0.2"),
        ep("d", "n3", "10.79.0.2"),
    ];
    assert_eq!(
        wanted(&[on, off, explicit], &eps),
        Some(vec![
            guard("mrva", "10.77.0.2"),
            guard("mrvb", "10.77.0.3"),
            guard("mrvd", "10.79.0.2"),
        ])
    );
}

#[test]
fn the_check_key_changes_with_everything_it_covers() {
    let g = [guard("mrv1", "10.0.0.2")];
    let k = check_key("boot x netns 1:2", 7, &g);
    assert_eq!(k, check_key("boot x netns 1:2", 7, &g));
    assert_ne!(k, check_key("boot x netns 1:3", 7, &g));
    assert_ne!(k, check_key("boot x netns 1:2", 8, &g));
    assert_ne!(k, check_key("boot x netns 1:2", 7, &[]));
    assert_ne!(
        k,
        check_key("boot x netns 1:2", 7, &[guard("mrv1", "10.0.0.3")])
    );
}

/// What nft 1.0.6 lists (`nft -j list table bridge minirt_x`) for the
/// table with one guard.
fn listing_one() -> String {
    r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
        {"table": {"family": "bridge", "name": "minirt_x", "handle": 2}},
        {"set": {"family": "bridge", "name": "ports", "table": "minirt_x", "type": "ifname", "handle": 3, "elem": ["mrv123"]}},
        {"set": {"family": "bridge", "name": "allow_ip", "table": "minirt_x", "type": ["ifname", "ether_addr", "ipv4_addr"], "handle": 4, "elem": [{"concat": ["mrv123", "02:42:0a:00:00:02", "10.0.0.2"]}]}},
        {"set": {"family": "bridge", "name": "allow_arp", "table": "minirt_x", "type": ["ifname", "ether_addr", "ether_addr", "ipv4_addr"], "handle": 5, "elem": [{"concat": ["mrv123", "02:42:0a:00:00:02", "02:42:0a:00:00:02", "10.0.0.2"]}]}},
        {"set": {"family": "bridge", "name": "allow_ip6", "table": "minirt_x", "type": ["ifname", "ether_addr", "ipv6_addr"], "handle": 7}},
        {"chain": {"family": "bridge", "table": "minirt_x", "name": "prerouting", "handle": 1, "type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept"}},
        {"chain": {"family": "bridge", "table": "minirt_x", "name": "guard", "handle": 2}},
        {"rule": {"family": "bridge", "table": "minirt_x", "chain": "prerouting", "handle": 6, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "@ports"}}, {"jump": {"target": "guard"}}]}},
        {"rule": {"family": "bridge", "table": "minirt_x", "chain": "guard", "handle": 10, "expr": [{"match": {"op": "==", "left": {"concat": [{"meta": {"key": "iifname"}}, {"payload": {"protocol": "ether", "field": "saddr"}}, {"payload": {"protocol": "ip", "field": "saddr"}}]}, "right": "@allow_ip"}}, {"accept": null}]}},
        {"rule": {"family": "bridge", "table": "minirt_x", "chain": "guard", "handle": 11, "expr": [{"match": {"op": "==", "left": {"concat": [{"meta": {"key": "iifname"}}, {"payload": {"protocol": "ether", "field": "saddr"}}, {"payload": {"protocol": "arp", "field": "saddr ether"}}, {"payload": {"protocol": "arp", "field": "saddr ip"}}]}, "right": "@allow_arp"}}, {"accept": null}]}},
        {"rule": {"family": "bridge", "table": "minirt_x", "chain": "guard", "handle": 13, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "icmpv6", "field": "type"}}, "right": {"set": ["nd-router-advert", "nd-redirect"]}}}, {"drop": null}]}},
        {"rule": {"family": "bridge", "table": "minirt_x", "chain": "guard", "handle": 14, "expr": [{"match": {"op": "==", "left": {"concat": [{"meta": {"key": "iifname"}}, {"payload": {"protocol": "ether", "field": "saddr"}}, {"payload": {"protocol": "ip6", "field": "saddr"}}]}, "right": "@allow_ip6"}}, {"accept": null}]}},
        {"rule": {"family": "bridge", "table": "minirt_x", "chain": "guard", "handle": 12, "expr": [{"drop": null}]}}]}"#
        .to_string()
}

#[test]
fn the_check_compares_structure_exactly() {
    let one = [guard("mrv123", "10.0.0.2")];
    let l = listing_one();
    assert!(is_intact(&l, &one), "{:#?}", parse_listing(&l));
    // An element the store does not own, or one it owns that is missing.
    assert!(!is_intact(&l, &[]));
    assert!(!is_intact(
        &l,
        &[guard("mrv123", "10.0.0.2"), guard("mrv456", "10.0.0.3")]
    ));
    // Same port, another address.
    assert!(!is_intact(&l, &[guard("mrv123", "10.0.0.9")]));
    // Flushed chains, a changed verdict, a changed priority, an extra
    // rule or chain, a missing set: each is damage.
    let damaged = [
        l.replace(r#"{"jump": {"target": "guard"}}"#, r#"{"accept": null}"#),
        l.replace(r#"{"drop": null}"#, r#"{"accept": null}"#),
        l.replace(r#""prio": -300"#, r#""prio": 0"#),
        l.replace(r#""policy": "accept""#, r#""policy": "drop""#),
        l.replace(
            r#"{"chain": {"family": "bridge", "table": "minirt_x", "name": "guard", "handle": 2}},"#,
            r#"{"chain": {"family": "bridge", "table": "minirt_x", "name": "guard", "handle": 2}},
                   {"chain": {"family": "bridge", "table": "minirt_x", "name": "other", "handle": 9}},"#,
        ),
        l.replace(
            r#""handle": 12, "expr": [{"drop": null}]"#,
            r#""handle": 12, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]"#,
        ),
        l.replace(r#""name": "allow_arp""#, r#""name": "allow_arq""#),
        l.replace("@allow_ip", "@allow_arp"),
    ];
    for (i, d) in damaged.iter().enumerate() {
        assert_ne!(d, &l, "case {i} changed nothing");
        assert!(!is_intact(d, &one), "case {i} passed the check");
    }
    // Rules gone (`nft flush table`), and not a listing at all.
    let kept: Vec<&str> = l.lines().filter(|x| !x.contains(r#"{"rule""#)).collect();
    let flushed = kept.join("\n").trim_end().trim_end_matches(',').to_string() + "]}";
    assert!(parse_listing(&flushed).is_ok(), "{flushed}");
    assert!(!is_intact(&flushed, &one));
    assert!(!is_intact("", &one));
    assert!(!is_intact("{}", &one));
}

#[test]
fn a_teardown_removes_no_elements_from_an_unguarded_network() {
    let e = ep("0123456789ab", "n1", "10.77.0.2");
    let guarded = endpoint_elements(&net("n1", &[]), &e);
    let names: Vec<&str> = guarded.iter().map(|e| e.map.as_str()).collect();
    assert_eq!(names, ["ports", "allow_ip", "allow_arp"]);
    // Never added, so none to remove: an absent element would abort the
    // whole batch it is in.
    let open = net("n1", &[(OPTION, "false")]);
    assert!(endpoint_elements(&open, &e).is_empty());
    // Only "false" turns it off.
    assert_eq!(
        endpoint_elements(&net("n1", &[(OPTION, "true")]), &e).len(),
        3
    );
}
