//! `minirt network ...` as a user sees it: create / ls / inspect / rm /
//! prune / reload, every bad input with one clear error and nothing left.

use crate::common::*;

/// minirt's devices (bridges mrb-*/mr0-*, veths mrv*) plus `extra` names.
fn minirt_links(h: &TestHost, extra: &[&str]) -> Vec<String> {
    links(h)
        .into_iter()
        .filter(|n| {
            n.starts_with("mrb-")
                || n.starts_with("mr0-")
                || n.starts_with("mrv")
                || extra.contains(&n.as_str())
        })
        .collect()
}

/// The instance's nftables table, if it exists.
fn table(h: &TestHost) -> Option<String> {
    let o = h.in_ns("nft", &["list", "table", "inet", &nft_table(h)]);
    o.status.success().then(|| stdout(&o))
}

fn network_names(h: &TestHost) -> Vec<String> {
    h.ok(&["network", "ls", "--format", "json"])
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("ls json line")["Name"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

fn inspect(h: &TestHost, name: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&h.ok(&["network", "inspect", name])).expect("inspect JSON");
    v[0].clone()
}

fn ip_in_ns(h: &TestHost, args: &[&str]) {
    let mut all = vec!["-n", h.ns.as_str()];
    all.extend_from_slice(args);
    let o = cmd("ip", &all);
    assert!(o.status.success(), "ip {args:?}: {}", stderr(&o));
}

#[test]
fn create_ls_inspect_rm_leaves_nothing() {
    let h = TestHost::new();
    let id = h
        .ok(&["network", "create", "--subnet", "10.88.0.0/24", "testbr"])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    let bridge = format!("mrb-{}", &id[..11]);
    assert_eq!(minirt_links(&h, &[]), vec![bridge.clone()]);
    // The gateway address is on the bridge, which is up and has its MAC pinned.
    let o = cmd(
        "ip",
        &["-n", &h.ns, "-4", "-o", "addr", "show", "dev", &bridge],
    );
    assert!(stdout(&o).contains("inet 10.88.0.1/24"), "{}", stdout(&o));
    let o = h.in_ns(
        "cat",
        &[
            &format!("/sys/class/net/{bridge}/addr_assign_type"),
            &format!("/sys/class/net/{bridge}/operstate"),
        ],
    );
    let sys = stdout(&o);
    assert_eq!(
        sys.lines().next(),
        Some("3"),
        "MAC not set explicitly: {sys}"
    );
    assert!(
        table(&h).is_some_and(|t| t.contains(&bridge)),
        "no firewall rules for {bridge}"
    );

    let ls = h.ok(&["network", "ls"]);
    let mut lines = ls.lines();
    let head: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(head, ["NETWORK ID", "NAME", "DRIVER", "SUBNET", "GATEWAY"]);
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        row,
        [&id[..12], "testbr", "bridge", "10.88.0.0/24", "10.88.0.1"]
    );
    assert_eq!(h.ok(&["network", "ls", "-q"]).trim(), &id[..12]);

    let v = inspect(&h, "testbr");
    assert_eq!(v["Name"], "testbr");
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["Driver"], "bridge");
    assert_eq!(v["Internal"], false);
    assert_eq!(v["IPAM"]["Config"][0]["Subnet"], "10.88.0.0/24");
    assert_eq!(v["IPAM"]["Config"][0]["Gateway"], "10.88.0.1");
    assert_eq!(
        v["Options"]["com.docker.network.bridge.name"],
        bridge.as_str()
    );
    assert!(v["Containers"].as_object().is_some_and(|c| c.is_empty()));
    assert!(v["Created"].as_str().is_some_and(|c| c.ends_with('Z')));
    // By id prefix too.
    assert_eq!(inspect(&h, &id[..12])["Name"], "testbr");

    assert_eq!(h.ok(&["network", "rm", "testbr"]).trim(), "testbr");
    assert!(minirt_links(&h, &[]).is_empty());
    assert!(network_names(&h).is_empty());
    assert!(
        table(&h).is_none(),
        "table left after the last network went"
    );
}

#[test]
fn subnets_come_from_pools_skipping_networks_and_host_routes() {
    let h = TestHost::new();
    // A host route on 172.17.0.0/16: the default pool's first entry is taken.
    ip_in_ns(&h, &["link", "add", "dummy0", "type", "bridge"]);
    ip_in_ns(&h, &["addr", "add", "172.17.5.1/16", "dev", "dummy0"]);
    ip_in_ns(&h, &["link", "set", "dummy0", "up"]);
    h.ok(&["network", "create", "a"]);
    h.ok(&["network", "create", "b"]);
    assert_eq!(
        inspect(&h, "a")["IPAM"]["Config"][0]["Subnet"],
        "172.18.0.0/16"
    );
    assert_eq!(
        inspect(&h, "a")["IPAM"]["Config"][0]["Gateway"],
        "172.18.0.1"
    );
    assert_eq!(
        inspect(&h, "b")["IPAM"]["Config"][0]["Subnet"],
        "172.19.0.0/16"
    );
    // Explicit gateway inside the subnet is honoured.
    h.ok(&[
        "network",
        "create",
        "--subnet",
        "10.90.0.0/24",
        "--gateway",
        "10.90.0.254",
        "c",
    ]);
    assert_eq!(
        inspect(&h, "c")["IPAM"]["Config"][0]["Gateway"],
        "10.90.0.254"
    );
    let o = cmd("ip", &["-n", &h.ns, "-4", "-o", "addr"]);
    assert!(stdout(&o).contains("10.90.0.254/24"), "{}", stdout(&o));
    assert_eq!(network_names(&h), ["a", "b", "c"]);
    let out = h.ok(&["network", "prune", "-f"]);
    assert!(out.starts_with("Deleted Networks:"), "{out}");
    assert!(network_names(&h).is_empty());
    assert!(minirt_links(&h, &[]).is_empty());
    assert!(table(&h).is_none());
}

#[test]
fn options_internal_mtu_and_bridge_name() {
    let h = TestHost::new();
    h.ok(&[
        "network",
        "create",
        "--internal",
        "-o",
        "mtu=1400",
        "-o",
        "bridge_name=mybr0",
        "--subnet",
        "10.91.0.0/24",
        "inner",
    ]);
    let o = cmd("ip", &["-n", &h.ns, "-o", "link", "show", "mybr0"]);
    assert!(stdout(&o).contains("mtu 1400"), "{}", stdout(&o));
    let v = inspect(&h, "inner");
    assert_eq!(v["Internal"], true);
    assert_eq!(v["Options"]["com.docker.network.driver.mtu"], "1400");
    assert_eq!(v["Options"]["com.docker.network.bridge.name"], "mybr0");
    // An internal network gets no masquerade.
    let t = table(&h).expect("table");
    assert!(t.contains("mybr0"), "{t}");
    assert!(!t.contains("_masq"), "internal network is masqueraded: {t}");
    h.ok(&["network", "rm", "inner"]);
    assert!(minirt_links(&h, &["mybr0"]).is_empty());
}

#[test]
fn bad_inputs_fail_with_one_clear_line_and_leave_nothing() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.88.0.0/24", "testbr"]);
    ip_in_ns(&h, &["link", "add", "taken0", "type", "bridge"]);
    let before_links = minirt_links(&h, &["taken0"]);
    let long = "n".repeat(65);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--subnet", "10.99.0.0/33", "x"], "invalid subnet"),
        (vec!["--subnet", "banana", "x"], "invalid subnet"),
        (vec!["--subnet", "10.99.0.1/24", "x"], "host bits"),
        (
            vec!["--subnet", "10.88.0.0/16", "x"],
            "overlaps with network testbr",
        ),
        (
            vec!["--subnet", "10.99.0.0/24", "--gateway", "10.98.0.1", "x"],
            "not inside subnet",
        ),
        (
            vec!["--subnet", "10.99.0.0/24", "--gateway", "nope", "x"],
            "invalid gateway",
        ),
        (vec![long.as_str()], "longer than 64"),
        (vec!["bad/name"], "invalid network name"),
        (vec!["_bad"], "invalid network name"),
        (vec!["testbr"], "already exists"),
        (
            vec!["-o", "bridge_name=waytoolongname00", "x"],
            "invalid bridge name",
        ),
        (vec!["-o", "bridge_name=bad/br", "x"], "invalid bridge name"),
        (
            vec!["-o", "bridge_name=docker0", "x"],
            "reserved for Docker",
        ),
        (
            vec!["-o", "bridge_name=taken0", "x"],
            "already in use by a device",
        ),
        (vec!["-o", "mtu=12", "x"], "invalid mtu"),
        (vec!["-o", "color=red", "x"], "unknown option"),
        (
            vec!["-d", "vlan", "x"],
            "bridge, macvlan and overlay are supported",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["network", "create"];
        all.extend_from_slice(&args);
        let (code, err) = h.fails(&all);
        assert_ne!(code, 0);
        let line = one_line(&err);
        assert!(
            line.starts_with("minirt: ") && line.contains(want),
            "{args:?}: {line}"
        );
        assert_eq!(network_names(&h), ["testbr"], "{args:?} left a row");
        assert_eq!(
            minirt_links(&h, &["taken0"]),
            before_links,
            "{args:?} left a device"
        );
    }
    for args in [
        vec!["network", "rm", "nosuch"],
        vec!["network", "inspect", "nosuch"],
        vec!["network", "connect", "nosuch", "nobody"],
        vec!["network", "disconnect", "testbr", "nobody"],
    ] {
        let (code, err) = h.fails(&args);
        assert_ne!(code, 0);
        let line = one_line(&err);
        assert!(
            line.contains("nosuch") || line.contains("No such container: nobody"),
            "{args:?}: {line}"
        );
    }
    // Some names found, one not: the found ones print, the exit says failure.
    let o = h.minirt(&["network", "inspect", "testbr", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("\"testbr\""));
    assert_eq!(one_line(&stderr(&o)), "minirt: network nosuch not found");
}

#[test]
fn a_failure_midway_undoes_bridge_rules_and_row() {
    let h = TestHost::new();
    // The firewall step fails after the bridge was made: all must be undone.
    let o = h
        .command(&["network", "create", "--subnet", "10.92.0.0/24", "broken"])
        .env("MINIRT_NFT", "false")
        .output()
        .expect("run minirt");
    assert!(!o.status.success());
    let line = one_line(&stderr(&o));
    assert!(line.contains("nftables"), "{line}");
    assert!(
        minirt_links(&h, &[]).is_empty(),
        "bridge left: {:?}",
        links(&h)
    );
    assert!(network_names(&h).is_empty());
    assert!(table(&h).is_none());
}

#[test]
fn reload_recreates_missing_bridges_and_rules() {
    let h = TestHost::new();
    let id = h
        .ok(&["network", "create", "--subnet", "10.93.0.0/24", "n1"])
        .trim()
        .to_string();
    let bridge = format!("mrb-{}", &id[..11]);
    ip_in_ns(&h, &["link", "del", &bridge]);
    let o = h.in_ns("nft", &["delete", "table", "inet", &nft_table(&h)]);
    assert!(o.status.success(), "{}", stderr(&o));
    h.ok(&["network", "reload"]);
    assert_eq!(minirt_links(&h, &[]), vec![bridge.clone()]);
    let t = table(&h).expect("table re-created");
    assert!(t.contains(&bridge) && t.contains("10.93.0.0/24"), "{t}");
    h.ok(&["network", "rm", "n1"]);
    assert!(minirt_links(&h, &[]).is_empty());
}

#[test]
fn concurrent_creates_get_distinct_subnets() {
    let h = TestHost::new();
    // The database exists first: this test is about allocation races, not
    // about several processes creating the database file at once.
    h.ok(&["network", "ls"]);
    let children: Vec<_> = (0..4)
        .map(|i| {
            h.command(&["network", "create", &format!("p{i}")])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("wait").success());
    }
    let mut subnets: Vec<String> = (0..4)
        .map(|i| {
            inspect(&h, &format!("p{i}"))["IPAM"]["Config"][0]["Subnet"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 4, "{subnets:?}");
    assert_eq!(minirt_links(&h, &[]).len(), 4);
    h.ok(&["network", "prune"]);
    assert!(minirt_links(&h, &[]).is_empty());
}

// ------------------------------------------------------------------ containers on networks

const WEB: &str =
    "mkdir -p /www && echo hello-web > /www/index.html && exec httpd -f -p 80 -h /www";

/// Polls `curl` (from `ns`) until it returns a page, returns the page.
fn fetch_in(ns: &str, url: &str) -> String {
    let mut page = String::new();
    wait_for(
        &format!("{url} from {ns}"),
        std::time::Duration::from_secs(15),
        || {
            let o = cmd(
                "ip",
                &["netns", "exec", ns, "curl", "-sf", "--max-time", "2", url],
            );
            page = stdout(&o);
            o.status.success()
        },
    );
    page
}

fn container_inspect(h: &TestHost, c: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", c])).expect("inspect JSON");
    v[0].clone()
}

/// Everything network-related is gone: devices, rules, rows.
fn assert_network_state_clean(h: &TestHost) {
    // A dead container's veths go with its namespace, a moment after rm.
    wait_for("devices to go", std::time::Duration::from_secs(10), || {
        minirt_links(h, &[]).is_empty()
    });
    assert!(
        minirt_links(h, &[]).is_empty(),
        "devices left: {:?}",
        links(h)
    );
    assert!(table(h).is_none(), "nftables table left: {:?}", table(h));
    assert!(network_names(h).is_empty());
}

#[test]
fn web_on_testbr_is_served_to_lan_localhost_hairpin_and_neighbours() {
    let h = TestHost::new();
    let lan = Peer::new(&h, "lan", "203.0.113.1/24", "203.0.113.2/24");
    h.ok(&["network", "create", "--subnet", "10.88.0.0/24", "testbr"]);
    h.ok(&[
        "run", "-d", "--name", "web", "--net", "testbr", "-p", "8080:80", "busybox", "sh", "-c",
        WEB,
    ]);

    // A LAN client through the test host's address, and the host on 127.0.0.1.
    assert_eq!(fetch_in(&lan.ns, "http://203.0.113.1:8080/"), "hello-web\n");
    assert_eq!(fetch_in(&h.ns, "http://127.0.0.1:8080/"), "hello-web\n");
    // The host straight to the container.
    assert_eq!(fetch_in(&h.ns, "http://10.88.0.2/"), "hello-web\n");
    let o = lan.run(
        "curl",
        &["-s", "--max-time", "2", "http://203.0.113.1:8081/"],
    );
    assert!(!o.status.success(), "an unpublished port answered");

    let ps = h.ok(&["ps", "--networks"]);
    assert!(ps.contains("testbr=10.88.0.2"), "{ps}");
    assert!(ps.contains("0.0.0.0:8080->80/tcp"), "{ps}");
    let net = &container_inspect(&h, "web")["NetworkSettings"]["Networks"]["testbr"];
    assert_eq!(net["IPAddress"], "10.88.0.2");
    assert_eq!(net["Gateway"], "10.88.0.1");
    assert_eq!(net["IPPrefixLen"], 24);
    assert_eq!(net["MacAddress"], "02:42:0a:58:00:02");
    let ninsp = inspect(&h, "testbr");
    let members = ninsp["Containers"].as_object().cloned().unwrap_or_default();
    assert_eq!(members.len(), 1);
    let m = members.values().next().cloned().unwrap_or_default();
    assert_eq!(m["Name"], "web");
    assert_eq!(m["IPv4Address"], "10.88.0.2/24");

    // Another container on the same network: ping, TCP, and hairpin through
    // the host's address.
    let out = h.ok(&["run", "--rm", "--net", "testbr", "busybox", "sh", "-c",
        "ping -c 1 -W 5 10.88.0.2 >/dev/null && wget -qO- http://10.88.0.2/ && wget -qO- http://203.0.113.1:8080/"]);
    assert_eq!(out, "hello-web\nhello-web\n");

    // A published port is refused a second time, nothing is left of the try.
    let (code, err) = h.fails(&[
        "run", "-d", "--net", "testbr", "-p", "8080:80", "busybox", "sleep", "60",
    ]);
    assert_ne!(code, 0);
    assert!(
        one_line(&err).contains("Bind for 0.0.0.0:8080 failed: port is already allocated"),
        "{err}"
    );
    assert_eq!(h.ok(&["ps", "-aq"]).lines().count(), 1);
    // rm of a network in use names its containers.
    let (_, err) = h.fails(&["network", "rm", "testbr"]);
    assert!(one_line(&err).contains("web"), "{err}");

    h.ok(&["rm", "-f", "web"]);
    h.ok(&["network", "rm", "testbr"]);
    assert_network_state_clean(&h);
}

#[test]
fn masquerade_isolation_and_internal_networks() {
    let h = TestHost::new();
    let up = Peer::new(&h, "up", "198.51.100.1/24", "198.51.100.2/24");
    ip_in_ns(&h, &["route", "add", "default", "via", "198.51.100.2"]);
    // The upstream host answers with the address it saw (CGI REMOTE_ADDR).
    let www = h
        .root
        .parent()
        .map(|p| p.join("upstream-www"))
        .expect("test dir");
    std::fs::create_dir_all(www.join("cgi-bin")).unwrap();
    let script = www.join("cgi-bin/ip");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho $REMOTE_ADDR\n",
    )
    .unwrap();
    let o = cmd("chmod", &["755", &script.to_string_lossy()]);
    assert!(o.status.success());
    let _httpd = Proc(
        std::process::Command::new("ip")
            .args([
                "netns", "exec", &up.ns, "busybox", "httpd", "-f", "-p", "80", "-h",
            ])
            .arg(&www)
            .spawn()
            .expect("upstream httpd"),
    );
    assert!(fetch_in(&h.ns, "http://198.51.100.2/cgi-bin/ip").contains("198.51.100.1"));

    h.ok(&["network", "create", "--subnet", "10.88.0.0/24", "a"]);
    h.ok(&["network", "create", "--subnet", "10.89.0.0/24", "b"]);
    h.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.90.0.0/24",
        "inner",
    ]);
    // Masquerade: upstream sees the test host, not 10.88.0.x.
    let seen = h.ok(&[
        "run",
        "--rm",
        "--net",
        "a",
        "busybox",
        "wget",
        "-qO-",
        "http://198.51.100.2/cgi-bin/ip",
    ]);
    // busybox httpd prints v4-mapped addresses: [::ffff:198.51.100.1].
    assert!(
        seen.contains("198.51.100.1") && !seen.contains("10.88."),
        "{seen}"
    );
    // Isolation: a container on b is unreachable from a.
    h.ok(&[
        "run", "-d", "--name", "bweb", "--net", "b", "busybox", "sh", "-c", WEB,
    ]);
    assert_eq!(fetch_in(&h.ns, "http://10.89.0.2/"), "hello-web\n");
    let o = h.minirt(&[
        "run",
        "--rm",
        "--net",
        "a",
        "busybox",
        "wget",
        "-qO-",
        "-T",
        "2",
        "http://10.89.0.2/",
    ]);
    assert!(!o.status.success(), "a reached b: {}", stdout(&o));
    // Internal: no default route, upstream unreachable, own bridge fine.
    let routes = h.ok(&["run", "--rm", "--net", "inner", "busybox", "ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    let o = h.minirt(&[
        "run",
        "--rm",
        "--net",
        "inner",
        "busybox",
        "wget",
        "-qO-",
        "-T",
        "2",
        "http://198.51.100.2/cgi-bin/ip",
    ]);
    assert!(
        !o.status.success(),
        "internal reached upstream: {}",
        stdout(&o)
    );
    h.ok(&[
        "run",
        "--rm",
        "--net",
        "inner",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "5",
        "10.90.0.1",
    ]);

    h.ok(&["rm", "-f", "bweb"]);
    h.ok(&["network", "rm", "a", "b", "inner"]);
    assert_network_state_clean(&h);
}

#[test]
fn connect_and_disconnect_a_running_container() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.88.0.0/24", "a"]);
    h.ok(&["network", "create", "--subnet", "10.89.0.0/24", "b"]);
    h.ok(&[
        "run", "-d", "--name", "web", "--net", "a", "busybox", "sleep", "600",
    ]);
    h.ok(&["network", "connect", "b", "web"]);
    let addrs = h.ok(&["exec", "web", "ip", "-4", "-o", "addr"]);
    assert!(
        addrs.contains("eth0") && addrs.contains("10.88.0.2/24"),
        "{addrs}"
    );
    assert!(
        addrs.contains("eth1") && addrs.contains("10.89.0.2/24"),
        "{addrs}"
    );
    let routes = h.ok(&["exec", "web", "ip", "route"]);
    assert_eq!(routes.matches("default").count(), 1, "{routes}");
    assert!(
        routes.contains("default via 10.88.0.1 dev eth0"),
        "{routes}"
    );
    assert!(h.ok(&["ps", "--networks"]).contains("a=10.88.0.2"));
    let members = inspect(&h, "b")["Containers"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(members.len(), 1);
    // Reachable on the new network from the host.
    let o = h.in_ns("busybox", &["ping", "-c", "1", "-W", "5", "10.89.0.2"]);
    assert!(o.status.success(), "10.89.0.2 unreachable: {}", stdout(&o));
    let (code, err) = h.fails(&["network", "connect", "b", "web"]);
    assert_ne!(code, 0);
    assert_eq!(
        one_line(&err),
        "minirt: container web is already connected to network b"
    );
    let (_, err) = h.fails(&["network", "connect", "--ip", "10.89.0.2", "a", "web"]);
    assert!(one_line(&err).contains("already connected"), "{err}");

    h.ok(&["network", "disconnect", "b", "web"]);
    let links_in = h.minirt(&["exec", "web", "ip", "link", "show", "eth1"]);
    assert!(!links_in.status.success(), "eth1 still there");
    assert!(inspect(&h, "b")["Containers"]
        .as_object()
        .is_some_and(|m| m.is_empty()));
    let (_, err) = h.fails(&["network", "disconnect", "b", "web"]);
    assert_eq!(
        one_line(&err),
        "minirt: container web is not connected to network b"
    );
    // The address was released: asked for, it is free again. Unasked, the
    // allocator moves on (like Docker's) rather than reuse it at once.
    let again = h.ok(&[
        "run",
        "--rm",
        "--net",
        "b",
        "--ip",
        "10.89.0.2",
        "busybox",
        "ip",
        "-4",
        "-o",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(again.contains("10.89.0.2/24"), "{again}");
    let next = h.ok(&[
        "run", "--rm", "--net", "b", "busybox", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert!(next.contains("10.89.0.3/24"), "{next}");

    h.ok(&["rm", "-f", "web"]);
    h.ok(&["network", "prune"]);
    assert_network_state_clean(&h);
}

#[test]
fn run_refuses_bad_network_requests_and_leaves_nothing() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.88.0.0/30", "tiny"]);
    h.ok(&["network", "create", "--subnet", "10.89.0.0/24", "testbr"]);
    h.ok(&[
        "run", "-d", "--name", "one", "--net", "tiny", "busybox", "sleep", "600",
    ]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "pub",
        "--net",
        "testbr",
        "--ip",
        "10.89.0.7",
        "-p",
        "8080:80",
        "busybox",
        "sleep",
        "600",
    ]);
    let before = minirt_links(&h, &[]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--net", "tiny"], "no free address left"),
        (vec!["--net", "nosuch"], "network nosuch not found"),
        (
            vec!["--net", "testbr", "--ip", "10.99.0.5"],
            "not inside subnet",
        ),
        (
            vec!["--net", "testbr", "--ip", "10.89.0.7"],
            "already in use",
        ),
        (
            vec!["--net", "testbr", "-p", "0:80"],
            "invalid port mapping",
        ),
        (
            vec!["--net", "testbr", "-p", "70000:80"],
            "invalid port mapping",
        ),
        (
            vec!["--net", "testbr", "-p", "80:x"],
            "invalid port mapping",
        ),
        (
            vec!["--net", "testbr", "-p", "8080:81"],
            "Bind for 0.0.0.0:8080 failed: port is already allocated",
        ),
        (vec!["--net", "testbr", "--dns", "nope"], "invalid --dns"),
        (
            vec!["--net", "testbr", "--add-host", "nocolon"],
            "invalid --add-host",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(&args);
        all.extend_from_slice(&["busybox", "sleep", "60"]);
        let (code, err) = h.fails(&all);
        assert_ne!(code, 0);
        let line = one_line(&err);
        assert!(line.contains(want), "{args:?}: {line}");
        assert_eq!(
            h.ok(&["ps", "-aq"]).lines().count(),
            2,
            "{args:?} left a container"
        );
        assert_eq!(minirt_links(&h, &[]), before, "{args:?} left a device");
    }
    h.ok(&["rm", "-f", "one", "pub"]);
    h.ok(&["network", "rm", "tiny", "testbr"]);
    assert_network_state_clean(&h);
}

#[test]
fn udp_port_mapping_and_default_network() {
    let h = TestHost::new();
    let lan = Peer::new(&h, "lan", "203.0.113.1/24", "203.0.113.2/24");
    // No --net: the default network `bridge` is made on first use.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "udp",
        "-p",
        "5353:53/udp",
        "busybox",
        "sleep",
        "600",
    ]);
    let v = inspect(&h, "bridge");
    assert_eq!(v["IPAM"]["Config"][0]["Subnet"], "172.17.0.0/16");
    assert!(h.ok(&["ps"]).contains("0.0.0.0:5353->53/udp"));
    // busybox has no UDP server: a host python3 answers inside the
    // container's network namespace.
    let pid = container_inspect(&h, "udp")["State"]["Pid"]
        .as_i64()
        .expect("pid");
    let _echo = Proc(
        std::process::Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .args(["--", "python3", "-c", "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 53))\nwhile True:\n    d, a = s.recvfrom(2048)\n    s.sendto(b'pong ' + d, a)\n"])
            .spawn()
            .expect("python3 udp echo"),
    );
    let ask = "exec 3<>/dev/udp/203.0.113.1/5353; echo hello-udp >&3; timeout 2 dd bs=2048 count=1 <&3 2>/dev/null";
    let mut answer = String::new();
    wait_for("the udp answer", std::time::Duration::from_secs(15), || {
        answer = stdout(&lan.run("bash", &["-c", ask]));
        !answer.is_empty()
    });
    assert_eq!(answer, "pong hello-udp\n");
    h.ok(&["rm", "-f", "udp"]);
    // The echo server still holds the container's network namespace, so the
    // kernel keeps it and the veth: a later command deletes the veth once
    // the kernel's grace period is over.
    let veth = |h: &TestHost| minirt_links(h, &[]).iter().any(|l| l.starts_with("mrv"));
    assert!(veth(&h), "the held namespace's veth is already gone");
    wait_for(
        "a later command to delete the held veth",
        std::time::Duration::from_secs(20),
        || {
            h.ok(&["ps", "-a"]);
            !veth(&h)
        },
    );
    // `network rm bridge` is refused (a pre-defined network); prune takes it.
    h.ok(&["network", "prune", "-f"]);
    assert_network_state_clean(&h);
}

/// `MINIRT_FIREWALL=none`: minirt makes no inet table and refuses `-p`;
/// containers still get their bridge and reach each other.
#[test]
fn the_none_firewall_backend_leaves_the_host_firewall_alone() {
    let h = TestHost::new();
    let none = |args: &[&str]| {
        h.command(args)
            .env("MINIRT_FIREWALL", "none")
            .output()
            .expect("run minirt")
    };
    let o = none(&["network", "create", "--subnet", "10.88.0.0/24", "testbr"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = none(&[
        "run", "-d", "--name", "web", "--net", "testbr", "busybox", "sh", "-c", WEB,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        table(&h).is_none(),
        "an inet table was made: {:?}",
        table(&h)
    );
    let o = none(&[
        "run",
        "--rm",
        "--net",
        "testbr",
        "busybox",
        "wget",
        "-qO-",
        "http://10.88.0.2/",
    ]);
    assert_eq!(stdout(&o), "hello-web\n", "{}", stderr(&o));
    let o = none(&[
        "run", "-d", "--net", "testbr", "-p", "8080:80", "busybox", "sleep", "60",
    ]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        one_line(&stderr(&o)).contains("port publishing needs a firewall"),
        "{}",
        stderr(&o)
    );
    let o = none(&["rm", "-f", "web"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = none(&["network", "rm", "testbr"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_network_state_clean(&h);
}
