//! `minirt network ...` as a user sees it: create / ls / inspect / rm /
//! prune / reload, every bad input with one clear error and nothing left.

use crate::common::*;

/// Device names in the test host's netns.
fn links(h: &TestHost) -> Vec<String> {
    let o = cmd("ip", &["-n", &h.ns, "-o", "link", "show"]);
    assert!(o.status.success(), "ip link: {}", stderr(&o));
    stdout(&o)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .collect()
}

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

fn nft_table(h: &TestHost) -> String {
    format!("minirt_{}", h.cgroup_parent().trim_start_matches("minirt-"))
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

fn one_line(err: &str) -> String {
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err:?}");
    lines[0].to_string()
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
    assert!(
        !t.contains("10.91.0.0/24 : jump"),
        "internal network is masqueraded: {t}"
    );
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
        (vec!["-d", "overlay", "x"], "only bridge"),
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
