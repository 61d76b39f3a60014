//! Tests of applying and healing the nftables ruleset: listing normalisation
//! and the comparison with the desired state.

use super::*;

#[test]
fn a_check_holds_for_the_same_generation_and_desired_state_only() {
    let mut want = Desired::default();
    let k = check_key("boot b netns 1:2", 7, &want);
    assert_eq!(k, check_key("boot b netns 1:2", 7, &want));
    assert_ne!(k, check_key("boot b netns 1:2", 8, &want));
    assert_ne!(k, check_key("boot c netns 1:2", 7, &want));
    want.elements
        .entry("fwd_iif".into())
        .or_default()
        .insert("br0 : accept".into());
    assert_ne!(k, check_key("boot b netns 1:2", 7, &want));
}

/// A listing as nft 1.0.6 prints it with -j (trimmed to what matters).
const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
      {"table": {"family": "inet", "name": "t", "handle": 1}},
      {"map": {"family": "inet", "name": "pm_tcp", "table": "t", "type": ["ipv4_addr", "inet_service"], "handle": 2, "map": ["ipv4_addr", "inet_service"],
        "elem": [[{"concat": ["127.0.0.1", 6000]}, {"concat": ["10.77.0.3", 60]}]]}},
      {"map": {"family": "inet", "name": "post_src", "table": "t", "type": "ipv4_addr", "handle": 3, "map": "verdict", "flags": ["interval"],
        "elem": [[{"prefix": {"addr": "10.77.0.0", "len": 24}}, {"jump": {"target": "nw_a_masq"}}]]}},
      {"set": {"family": "inet", "name": "bridges", "table": "t", "type": "ifname", "handle": 4, "elem": ["mrb-a"]}},
      {"chain": {"family": "inet", "table": "t", "name": "guard", "handle": 5, "type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept"}},
      {"chain": {"family": "inet", "table": "t", "name": "ports", "handle": 6}},
      {"rule": {"family": "inet", "table": "t", "chain": "guard", "handle": 7, "expr": [
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo"}}, {"accept": null}]}},
      {"rule": {"family": "inet", "table": "t", "chain": "guard", "handle": 8, "expr": [
        {"vmap": {"key": {"payload": {"protocol": "ip", "field": "daddr"}}, "data": "@guard_dst"}}]}},
      {"rule": {"family": "inet", "table": "t", "chain": "ports", "handle": 9, "expr": [
        {"dnat": {"family": "ip", "addr": {"map": {"key": {"concat": [{"payload": {"protocol": "ip", "field": "daddr"}}, {"payload": {"protocol": "tcp", "field": "dport"}}]}, "data": "@pm_tcp"}}}}]}},
      {"rule": {"family": "inet", "table": "t", "chain": "ports", "handle": 10, "expr": [
        {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"jump": {"target": "ports"}}]}}
    ]}"#;

#[test]
fn the_json_listing_is_normalised_like_desired() {
    let live = parse_live(LISTING).unwrap();
    assert_eq!(
        live.state.elements["pm_tcp"],
        BTreeSet::from(["127.0.0.1 . 6000 : 10.77.0.3 . 60".to_string()])
    );
    assert_eq!(
        live.state.elements["post_src"],
        BTreeSet::from(["10.77.0.0/24 : jump nw_a_masq".to_string()])
    );
    assert_eq!(
        live.state.elements["bridges"],
        BTreeSet::from(["mrb-a".to_string()])
    );
    assert_eq!(
        live.state.chains["guard"],
        vec!["accept", "vmap @guard_dst"]
    );
    assert_eq!(
        live.state.chains["ports"],
        vec!["dnat @pm_tcp", "jump ports"]
    );
    assert_eq!(
        live.base["guard"],
        ("filter".into(), "prerouting".into(), -300, "accept".into())
    );
    assert!(parse_live("not json").is_err());
    assert!(parse_live("{}").is_err());
}

#[test]
fn verdicts_of_rendered_rules_match_their_json_form() {
    for (text, verdict) in [
        ("iifname \"lo\" accept", "accept"),
        ("ip daddr vmap @guard_dst", "vmap @guard_dst"),
        (
            "dnat ip to ip daddr . tcp dport map @pm_tcp",
            "dnat @pm_tcp",
        ),
        ("fib daddr type local jump ports", "jump ports"),
        (
            "ip saddr { 10.0.0.0/24, 127.0.0.0/8 } masquerade",
            "masquerade",
        ),
    ] {
        assert_eq!(firewall::verdict_of(text), verdict, "{text}");
    }
}

fn net(id: &str, mode: GatewayMode) -> FwNetwork {
    FwNetwork {
        id: id.into(),
        bridge: format!("mrb-{id}"),
        v4: Some(firewall::FwV4 {
            subnet: "10.77.0.0/24".parse().unwrap(),
            gateway: "10.77.0.1".parse().unwrap(),
        }),
        internal: false,
        mode,
        trusted: vec![],
        v6: None,
    }
}

/// `Live` exactly as a faithful kernel would report `want`.
fn live_of(want: &Desired) -> Live {
    let mut base = BTreeMap::new();
    for (name, typ, hook, prio) in firewall::BASE_CHAINS {
        base.insert(
            name.to_string(),
            (
                typ.to_string(),
                hook.to_string(),
                *prio,
                "accept".to_string(),
            ),
        );
    }
    Live {
        state: want.clone(),
        base,
    }
}

#[test]
fn structure_and_element_differences_are_found_both_ways() {
    let port = FwPort {
        proto: crate::network::portspec::Proto::Tcp,
        host_ip: Ipv4Addr::UNSPECIFIED.into(),
        host_port: 8080,
        ctr_ip: "10.77.0.2".parse().unwrap(),
        ctr_port: 80,
        routed: false,
    };
    let want = firewall::desired(&[net("a", GatewayMode::Nat)], &[port]);
    let live = live_of(&want);
    assert_eq!(structure_differs(&want, &live), None);
    assert_eq!(element_diff(&want, &live), (vec![], vec![]));

    // Flushed guard chain.
    let mut l = live_of(&want);
    l.state.chains.insert("guard".into(), vec![]);
    assert!(structure_differs(&want, &l).unwrap().contains("guard"));
    // A drop turned into an accept.
    let mut l = live_of(&want);
    l.state.chains.get_mut("nw_a_guard").unwrap().pop();
    l.state
        .chains
        .get_mut("nw_a_guard")
        .unwrap()
        .push("accept".into());
    assert!(structure_differs(&want, &l).is_some());
    // A stale network's chain, and its bridge named by the table.
    let stale = firewall::desired(
        &[net("a", GatewayMode::Nat), net("b", GatewayMode::Nat)],
        &[port],
    );
    let l = live_of(&stale);
    assert!(structure_differs(&want, &l).unwrap().contains("nw_b_out"));
    assert_eq!(stale_bridges(&want, &l), vec!["mrb-b".to_string()]);
    // The policy of a base chain.
    let mut l = live_of(&want);
    l.base.get_mut("forward").unwrap().3 = "drop".into();
    assert!(structure_differs(&want, &l).unwrap().contains("forward"));
    // The user's rules are theirs.
    let mut l = live_of(&want);
    l.state.chains.insert("user".into(), vec!["drop".into()]);
    assert_eq!(structure_differs(&want, &l), None);

    // An element the store does not own goes; a missing one comes back.
    let mut l = live_of(&want);
    let pm = l.state.elements.get_mut("pm_any_tcp").unwrap();
    pm.clear();
    pm.insert("9090 : 10.77.0.9 . 90".into());
    let (add, del) = element_diff(&want, &l);
    assert_eq!(
        add,
        vec![("pm_any_tcp".into(), "8080 : 10.77.0.2 . 80".into())]
    );
    assert_eq!(
        del,
        vec![("pm_any_tcp".into(), "9090 : 10.77.0.9 . 90".into())]
    );
}
