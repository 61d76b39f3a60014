//! Docker 28's per-network gateway modes, trusted host interfaces, the
//! default host binding, and the user's chain (issue 10, part 7), each seen
//! from a LAN neighbour that routes the container subnet to the test host.

use crate::common::*;
use crate::lan::TWO_PORTS;
use std::process::{Command, Stdio};

const MODE: &str = "com.docker.network.bridge.gateway_mode_ipv4";

fn lan(h: &TestHost, subnet: &str) -> Peer {
    Peer::neighbour(h, "lan", "203.0.113.1/24", "203.0.113.2/24", &[subnet])
}

#[test]
fn nat_unprotected_lets_the_lan_route_to_every_container_port() {
    let h = TestHost::new();
    let lan = lan(&h, "10.96.0.0/24");
    h.ok(&[
        "network",
        "create",
        "--subnet",
        "10.96.0.0/24",
        "-o",
        &format!("{MODE}=nat-unprotected"),
        "open",
    ]);
    h.ok(&[
        "run", "-d", "--name", "web", "--net", "open", "-p", "8080:80", "busybox", "sh", "-c",
        TWO_PORTS,
    ]);
    assert_eq!(lan.wait_get("http://203.0.113.1:8080/"), "hello-80\n");
    assert_eq!(lan.wait_get("http://10.96.0.2:81/"), "hello-81\n");
    let v: serde_json::Value =
        serde_json::from_str(&h.ok(&["network", "inspect", "open"])).expect("json");
    assert_eq!(v[0]["Options"][MODE], "nat-unprotected");
}

#[test]
fn routed_publishes_container_ports_directly_and_nothing_else() {
    let h = TestHost::new();
    let lan = lan(&h, "10.97.0.0/24");
    h.ok(&[
        "network",
        "create",
        "--subnet",
        "10.97.0.0/24",
        "-o",
        &format!("{MODE}=routed"),
        "direct",
    ]);
    h.ok(&[
        "run", "-d", "--name", "web", "--net", "direct", "-p", "8080:80", "busybox", "sh", "-c",
        TWO_PORTS,
    ]);
    // The published container port, at the container's own address.
    assert_eq!(lan.wait_get("http://10.97.0.2:80/"), "hello-80\n");
    // Not the unpublished one, and no host port mapping (Docker: unused).
    assert_eq!(lan.get("http://10.97.0.2:81/"), None, "unpublished port");
    assert_eq!(lan.get("http://203.0.113.1:8080/"), None, "host port");
    // Containers of another (nat) network may route to it too.
    h.ok(&["network", "create", "--subnet", "10.98.0.0/24", "other"]);
    let out = h.ok(&[
        "run",
        "--rm",
        "--net",
        "other",
        "busybox",
        "wget",
        "-qO-",
        "http://10.97.0.2/",
    ]);
    assert_eq!(out, "hello-80\n");
}

#[test]
fn isolated_needs_internal_and_cuts_the_network_off_from_the_host() {
    let h = TestHost::new();
    let (code, err) = h.fails(&[
        "network",
        "create",
        "-o",
        &format!("{MODE}=isolated"),
        "iso",
    ]);
    assert_ne!(code, 0);
    assert!(
        one_line(&err).contains("gateway_mode_ipv4=isolated needs --internal"),
        "{err}"
    );
    let (_, err) = h.fails(&["network", "create", "-o", &format!("{MODE}=open"), "iso"]);
    assert!(
        one_line(&err).contains("invalid gateway_mode_ipv4"),
        "{err}"
    );
    assert!(h.ok(&["network", "ls", "-q"]).trim().is_empty());

    // A host service on every address, so on each network's gateway too.
    let www = h.root.parent().expect("dir").join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("index.html"), "host\n").expect("index");
    let _srv = Proc(
        Command::new("nsenter")
            .arg(format!("--net={}", h.netns_path()))
            .args(["--", "busybox", "httpd", "-f", "-p", "8888", "-h"])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("httpd"),
    );
    h.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.99.0.0/24",
        "inner",
    ]);
    h.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.99.1.0/24",
        "-o",
        &format!("{MODE}=isolated"),
        "iso",
    ]);
    // Control: a plain internal network reaches the host's gateway address.
    let mut page = String::new();
    wait_for(
        "the host service from an internal network",
        std::time::Duration::from_secs(20),
        || {
            let o = h.minirt(&[
                "run",
                "--rm",
                "--net",
                "inner",
                "busybox",
                "timeout",
                "3",
                "wget",
                "-qO-",
                "http://10.99.0.1:8888/",
            ]);
            page = stdout(&o);
            o.status.success()
        },
    );
    assert_eq!(page, "host\n");
    // Isolated: not the host, but its own members.
    h.ok(&[
        "run", "-d", "--name", "peer", "--net", "iso", "busybox", "sh", "-c", TWO_PORTS,
    ]);
    let o = h.minirt(&[
        "run",
        "--rm",
        "--net",
        "iso",
        "busybox",
        "sh",
        "-c",
        "wget -qO- http://10.99.1.2/ && ! timeout 3 wget -qO- http://10.99.1.1:8888/",
    ]);
    assert!(o.status.success(), "{} {}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "hello-80\n");
    // Nor does the host reach into it.
    let o = h.in_ns("curl", &["-sf", "--max-time", "2", "http://10.99.1.2/"]);
    assert!(!o.status.success(), "host -> isolated network answered");
}

#[test]
fn trusted_interfaces_route_to_published_ports_only() {
    let h = TestHost::new();
    let lan = lan(&h, "10.100.0.0/24");
    h.ok(&[
        "network",
        "create",
        "--subnet",
        "10.100.0.0/24",
        "-o",
        "com.docker.network.bridge.trusted_host_interfaces=vlan:vnone",
        "trusted",
    ]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--net",
        "trusted",
        "-p",
        "127.0.0.1:8081:80",
        "busybox",
        "sh",
        "-c",
        TWO_PORTS,
    ]);
    // Docker's example: published on loopback, reached directly from a
    // trusted interface at the container's address, published port only.
    assert_eq!(lan.wait_get("http://10.100.0.2:80/"), "hello-80\n");
    assert_eq!(lan.get("http://10.100.0.2:81/"), None, "unpublished port");
    assert_eq!(
        lan.get("http://127.0.0.1:8081/"),
        None,
        "the loopback mapping"
    );
}

#[test]
fn host_binding_makes_plain_publishing_loopback_only() {
    let h = TestHost::new();
    let lan = lan(&h, "10.101.0.0/24");
    h.ok(&[
        "network",
        "create",
        "--subnet",
        "10.101.0.0/24",
        "-o",
        "com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
        "local",
    ]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--net",
        "local",
        "-p",
        "8080:80",
        "-p",
        "0.0.0.0:8082:80",
        "busybox",
        "sh",
        "-c",
        TWO_PORTS,
    ]);
    let ps = h.ok(&["ps"]);
    assert!(ps.contains("127.0.0.1:8080->80/tcp"), "{ps}");
    assert!(
        ps.contains("0.0.0.0:8082->80/tcp"),
        "an explicit address wins: {ps}"
    );
    assert_eq!(lan.wait_get("http://203.0.113.1:8082/"), "hello-80\n");
    assert_eq!(
        lan.get("http://203.0.113.1:8080/"),
        None,
        "LAN -> loopback-bound port"
    );
    let o = h.in_ns(
        "curl",
        &["-sf", "--max-time", "5", "http://127.0.0.1:8080/"],
    );
    assert_eq!(stdout(&o), "hello-80\n");
}

#[test]
fn the_user_chain_restricts_a_published_port_and_survives_rebuilds() {
    let h = TestHost::new();
    let lan = lan(&h, "10.102.0.0/24");
    let up = Peer::neighbour(&h, "up", "198.51.100.1/24", "198.51.100.2/24", &[]);
    h.ok(&["network", "create", "--subnet", "10.102.0.0/24", "web"]);
    h.ok(&[
        "run", "-d", "--name", "web", "--net", "web", "-p", "8080:80", "busybox", "sh", "-c",
        TWO_PORTS,
    ]);
    assert_eq!(lan.wait_get("http://203.0.113.1:8080/"), "hello-80\n");
    assert_eq!(up.wait_get("http://198.51.100.1:8080/"), "hello-80\n");
    // The README's example: port 8080 only for 198.51.100.0/24.
    let table = nft_table(&h);
    let rule =
        "ct state new meta l4proto tcp ct original proto-dst 8080 ip saddr != 198.51.100.0/24 drop";
    let mut args = vec!["add", "rule", "inet", &table, "user"];
    args.extend(rule.split(' '));
    let o = h.in_ns("nft", &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let check = |when: &str| {
        assert_eq!(
            up.wait_get("http://198.51.100.1:8080/"),
            "hello-80\n",
            "{when}"
        );
        assert_eq!(
            lan.get("http://203.0.113.1:8080/"),
            None,
            "{when}: LAN let in"
        );
    };
    check("with the rule");
    // A full rebuild keeps the user's rules, and so does everyday work.
    h.ok(&["network", "reload"]);
    check("after network reload");
    h.ok(&["run", "--rm", "--net", "web", "busybox", "true"]);
    let o = h.in_ns("nft", &["list", "chain", "inet", &table, "user"]);
    assert!(stdout(&o).contains("198.51.100.0/24"), "{}", stdout(&o));
    check("after a run");
}
