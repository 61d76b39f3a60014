//! Tests of the network, endpoint, address and port-binding rows.

use super::*;
use crate::store::Store;

fn net(id: &str, name: &str, subnet: &str, start: u32, end: u32) -> NetworkRow {
    NetworkRow {
        id: id.into(),
        name: name.into(),
        driver: "bridge".into(),
        subnet: subnet.into(),
        net_start: start,
        net_end: end,
        gateway: "10.88.0.1".into(),
        device: format!("mrb-{id}"),
        internal: false,
        mtu: 1500,
        options: BTreeMap::new(),
        created: 1,
        subnet6: String::new(),
        gateway6: String::new(),
    }
}

fn container(c: &Connection, id: &str, name: &str) {
    c.execute(
        "INSERT INTO images (id, config, layers, created) VALUES ('img', '{}', '[]', 0) \
             ON CONFLICT DO NOTHING",
        [],
    )
    .unwrap();
    c.execute(
        "INSERT INTO containers (id, name, image, image_id, command, config, status, pid, created) \
             VALUES (?1, ?2, 'busybox', 'img', '[]', '{}', 'running', 42, 0)",
        [id, name],
    )
    .unwrap();
}

fn ep(id: &str, cid: &str, nid: &str, ip: &str) -> EndpointRow {
    EndpointRow {
        id: id.into(),
        container_id: cid.into(),
        network_id: nid.into(),
        ifname: "eth0".into(),
        ip: ip.parse().unwrap(),
        mac: "02:42:0a:58:00:02".into(),
        host_ifname: format!("mrv{id}"),
        aliases: vec![],
        ip6: None,
    }
}

/// Container c1's endpoint e1 publishing 0.0.0.0:8080 -> 80/tcp.
fn binding_8080() -> PortBindingRow {
    PortBindingRow {
        container_id: "c1".into(),
        endpoint_id: "e1".into(),
        proto: "tcp".into(),
        host_ip: "0.0.0.0".into(),
        host_port: 8080,
        container_port: 80,
    }
}

#[test]
fn networks_roundtrip_lookup_and_conflicts() {
    let s = Store::open_in_memory().unwrap();
    let c = s.conn();
    let a = net("aaaa1111", "alpha", "10.88.0.0/24", 0x0a580000, 0x0a5800ff);
    insert_network(c, &a).unwrap();
    insert_network(
        c,
        &net("aaaa2222", "beta", "10.89.0.0/24", 0x0a590000, 0x0a5900ff),
    )
    .unwrap();
    assert_eq!(find_network(c, "alpha").unwrap(), Some(a.clone()));
    assert_eq!(find_network(c, "aaaa1").unwrap(), Some(a.clone()));
    let e = find_network(c, "aaaa").unwrap_err().to_string();
    assert_eq!(e, "multiple networks found with provided prefix: aaaa");
    assert_eq!(find_network(c, "aaaa1111").unwrap(), Some(a.clone()));
    assert_eq!(find_network(c, "gamma").unwrap(), None);
    let mut dup = net("bbbb", "alpha", "10.90.0.0/24", 1, 2);
    let e = insert_network(c, &dup).unwrap_err().to_string();
    assert_eq!(e, "network with name alpha already exists");
    dup.name = "other".into();
    dup.device = a.device.clone();
    let e = insert_network(c, &dup).unwrap_err().to_string();
    assert!(e.contains("bridge name"), "{e}");
    let over = overlapping_networks(c, 0x0a580080, 0x0a5900ff).unwrap();
    assert_eq!(over.len(), 2);
    assert!(overlapping_networks(c, 0x0a5a0000, 0x0a5a00ff)
        .unwrap()
        .is_empty());
    let names: Vec<String> = list_networks(c)
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert!(delete_network(c, &a.id).unwrap());
    assert!(!delete_network(c, &a.id).unwrap());
}

#[test]
fn endpoints_and_ports_are_unique_and_released_together() {
    let s = Store::open_in_memory().unwrap();
    let c = s.conn();
    insert_network(
        c,
        &net("n1", "alpha", "10.88.0.0/24", 0x0a580000, 0x0a5800ff),
    )
    .unwrap();
    container(c, "c1", "web");
    container(c, "c2", "db");
    insert_endpoint(c, &ep("e1", "c1", "n1", "10.88.0.3")).unwrap();
    insert_endpoint(c, &ep("e2", "c2", "n1", "10.88.0.2")).unwrap();
    assert_eq!(used_ips(c, "n1").unwrap(), vec![0x0a580002, 0x0a580003]);
    let e = insert_endpoint(c, &ep("e3", "c2", "n1", "10.88.0.2"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("already"), "{e}");
    let b = binding_8080();
    insert_port_binding(c, &b).unwrap();
    let e = insert_port_binding(c, &b).unwrap_err().to_string();
    assert_eq!(e, "Bind for 0.0.0.0:8080 failed: port is already allocated");
    let on: Vec<String> = endpoints_of_network(c, "n1")
        .unwrap()
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(on, ["db", "web"]);
    assert_eq!(port_bindings_of_container(c, "c1").unwrap(), vec![b]);
    assert!(delete_endpoint(c, "e1").unwrap());
    assert!(all_port_bindings(c).unwrap().is_empty());
    assert_eq!(used_ips(c, "n1").unwrap(), vec![0x0a580002]);
    assert_eq!(find_container(c, "web").unwrap().unwrap().pid, 42);
    assert!(find_container(c, "c")
        .unwrap_err()
        .to_string()
        .contains("multiple containers found with provided prefix: c"));
    assert!(find_container(c, "zzz").unwrap().is_none());
}

#[test]
fn dying_links_come_back_once_old_enough_and_are_forgotten() {
    let s = Store::open_in_memory().unwrap();
    let c = s.conn();
    add_dying_link(c, "mrvold", 100).unwrap();
    add_dying_link(c, "mrvnew", 900).unwrap();
    assert_eq!(
        dying_links_before(c, 500).unwrap(),
        vec!["mrvold".to_string()]
    );
    // Recorded again (a retried teardown): the newer time counts.
    add_dying_link(c, "mrvold", 800).unwrap();
    assert!(dying_links_before(c, 500).unwrap().is_empty());
    forget_dying_link(c, "mrvnew").unwrap();
    assert_eq!(
        dying_links_before(c, 1000).unwrap(),
        vec!["mrvold".to_string()]
    );
}

#[test]
fn ipv6_columns_round_trip_and_are_unique_per_network() {
    let s = Store::open_in_memory().unwrap();
    let c = s.conn();
    let mut n = net("n6", "six", "10.88.0.0/24", 1, 2);
    n.subnet6 = "fd00:1::/64".into();
    n.gateway6 = "fd00:1::1".into();
    insert_network(c, &n).unwrap();
    assert_eq!(find_network(c, "six").unwrap(), Some(n.clone()));
    assert_eq!(
        ipv6_subnets(c).unwrap(),
        [("six".into(), "fd00:1::/64".into())]
    );
    assert_eq!(last_ip6(c, "n6").unwrap(), 0);
    set_last_ip6(c, "n6", "fd00:1::7".parse().unwrap()).unwrap();
    assert_eq!(
        last_ip6(c, "n6").unwrap(),
        u128::from("fd00:1::7".parse::<Ipv6Addr>().unwrap())
    );
    container(c, "c1", "a");
    container(c, "c2", "b");
    container(c, "c3", "c");
    let mut e1 = ep("e1", "c1", "n6", "10.88.0.2");
    e1.ip6 = Some("fd00:1::2".parse().unwrap());
    insert_endpoint(c, &e1).unwrap();
    // Two endpoints without IPv6 do not collide.
    insert_endpoint(c, &ep("e2", "c2", "n6", "10.88.0.3")).unwrap();
    let mut e3 = ep("e3", "c3", "n6", "10.88.0.4");
    e3.ip6 = e1.ip6;
    let e = insert_endpoint(c, &e3).unwrap_err().to_string();
    assert_eq!(e, "address fd00:1::2 is already in use");
    assert_eq!(endpoints_of_container(c, "c1").unwrap(), [e1.clone()]);
    assert_eq!(used_ips6(c, "n6").unwrap(), [u128::from(e1.ip6.unwrap())]);
}

#[test]
fn ipv6_only_endpoints_have_no_ipv4_and_do_not_collide() {
    let s = Store::open_in_memory().unwrap();
    let c = s.conn();
    let mut n = net("n6", "six", "", 0, 0);
    n.gateway = String::new();
    n.subnet6 = "fd00:2::/64".into();
    n.gateway6 = "fd00:2::1".into();
    insert_network(c, &n).unwrap();
    assert!(!n.has_ipv4());
    // A v6-only network overlaps no IPv4 subnet, 0.0.0.0 included.
    assert!(overlapping_networks(c, 0, u32::MAX).unwrap().is_empty());
    container(c, "c1", "a");
    container(c, "c2", "b");
    let mut e1 = ep("e1", "c1", "n6", "0.0.0.0");
    e1.ip6 = Some("fd00:2::2".parse().unwrap());
    let mut e2 = ep("e2", "c2", "n6", "0.0.0.0");
    e2.ip6 = Some("fd00:2::3".parse().unwrap());
    insert_endpoint(c, &e1).unwrap();
    insert_endpoint(c, &e2).unwrap();
    let ip: Option<i64> = c
        .query_row("SELECT ip FROM endpoints WHERE id = 'e1'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ip, None, "no IPv4 is NULL, not 0");
    assert_eq!(endpoints_of_container(c, "c2").unwrap(), [e2.clone()]);
    assert_eq!(e2.ip4(), None);
    assert!(used_ips(c, "n6").unwrap().is_empty());
    assert_eq!(endpoints_of_network(c, "n6").unwrap().len(), 2);
}

#[test]
fn last_ip_starts_at_zero_and_follows_allocations() {
    let s = Store::open_in_memory().unwrap();
    let c = s.conn();
    insert_network(c, &net("n1", "one", "10.88.0.0/24", 1, 2)).unwrap();
    assert_eq!(last_ip(c, "n1").unwrap(), 0);
    set_last_ip(c, "n1", "10.88.0.7".parse().unwrap()).unwrap();
    assert_eq!(
        last_ip(c, "n1").unwrap(),
        u32::from(Ipv4Addr::new(10, 88, 0, 7))
    );
}

/// Every change to what the firewall is built from moves the epoch, and
/// nothing else does: a container's own row changing leaves it.
#[test]
fn the_firewall_epoch_moves_with_networks_endpoints_and_bindings_only() {
    let s = Store::open_in_memory().unwrap();
    let c = s.conn();
    let epoch = || firewall_epoch(c).unwrap();
    let last = std::cell::Cell::new(epoch());
    let moved = |what: &str| {
        let now = epoch();
        assert!(now > last.get(), "{what}: the epoch stayed at {now}");
        last.set(now);
    };
    insert_network(
        c,
        &net("n1", "alpha", "10.88.0.0/24", 0x0a580000, 0x0a5800ff),
    )
    .unwrap();
    moved("network insert");
    container(c, "c1", "web");
    assert_eq!(epoch(), last.get(), "a container row is not the firewall's");
    insert_endpoint(c, &ep("e1", "c1", "n1", "10.88.0.3")).unwrap();
    moved("endpoint insert");
    let b = binding_8080();
    insert_port_binding(c, &b).unwrap();
    moved("binding insert");
    c.execute(
        "UPDATE endpoints SET aliases = '[\"x\"]' WHERE id = 'e1'",
        [],
    )
    .unwrap();
    moved("endpoint update");
    c.execute("UPDATE port_bindings SET container_port = 81", [])
        .unwrap();
    moved("binding update");
    c.execute("UPDATE containers SET status = 'exited'", [])
        .unwrap();
    assert_eq!(
        epoch(),
        last.get(),
        "a container's status is not the firewall's"
    );
    // Deleting the container takes its endpoint and binding (cascade).
    c.execute("DELETE FROM containers WHERE id = 'c1'", [])
        .unwrap();
    moved("cascaded delete");
    assert!(all_port_bindings(c).unwrap().is_empty());
    c.execute("UPDATE networks SET internal = 1", []).unwrap();
    moved("network update");
    c.execute("DELETE FROM networks", []).unwrap();
    moved("network delete");
}
