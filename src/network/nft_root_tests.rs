//! Root tests of the rendered rulesets against the real kernel, each inside
//! namespaces it creates.

use super::*;
use crate::network::firewall::*;
use crate::network::portspec::Proto;
use crate::network::testns::TestNs;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

const T: &str = "minirt_feedf00d";

fn cmd(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}
fn ok(args: &[&str]) {
    let o = cmd(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A throwaway network namespace with `lo` up, deleted on drop.
struct Ns(TestNs);
impl Ns {
    fn new(role: &str) -> Ns {
        let ns = Ns(TestNs::new(&format!("fw{role}")));
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }
    fn name(&self) -> &str {
        self.0.name()
    }
    fn ip(&self, args: &[&str]) {
        let mut v = vec!["ip", "-n", self.name()];
        v.extend_from_slice(args);
        ok(&v);
    }
    fn exec(&self, args: &[&str]) -> Output {
        let mut v = vec!["ip", "netns", "exec", self.name()];
        v.extend_from_slice(args);
        cmd(&v)
    }
    fn spawn(&self, args: &[&str]) -> Proc {
        let child = Command::new("ip")
            .args(["netns", "exec", self.name()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn in netns");
        Proc(child)
    }
    fn sysctl(&self, key: &str, val: &str) {
        let o = self.exec(&["sysctl", "-qw", &format!("{key}={val}")]);
        assert!(o.status.success(), "sysctl {key}: {o:?}");
    }
    /// Runs `f` on a thread that has entered this namespace, so the nft
    /// processes it starts act on this namespace only.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.0.run(f)
    }
    /// HTTP GET from inside this namespace, bounded in time (`timeout`,
    /// because busybox 1.35 wget crashes on its own -T).
    fn fetch(&self, url: &str, secs: u32) -> Option<String> {
        let t = secs.to_string();
        let o = self.exec(&["timeout", &t, "busybox", "wget", "-q", "-O", "-", url]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

/// A process this test started; killed and reaped on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn net(id: &str, bridge: &str, subnet: &str, internal: bool) -> FwNetwork {
    FwNetwork {
        id: id.into(),
        bridge: bridge.into(),
        v4: Some(crate::network::firewall::FwV4 {
            subnet: subnet.parse().unwrap(),
            gateway: subnet.replace(".0/24", ".1").parse().unwrap(),
        }),
        internal,
        mode: GatewayMode::Nat,
        trusted: vec![],
        v6: None,
    }
}

#[test]
fn apply_list_delete_in_a_netns() {
    let ns = Ns::new("fw");
    let a = net("aaaa1111", "mrt-aaaa1111", "10.77.0.0/24", false);
    let i = net("bbbb2222", "mrt-bbbb2222", "10.79.0.0/24", true);
    let ports = [
        FwPort::test(Proto::Tcp, "0.0.0.0", 8080, "10.77.0.2", 80),
        FwPort::test(Proto::Udp, "198.51.100.1", 5353, "10.77.0.2", 53),
    ];
    ns.run(|| {
        assert!(!table_exists(T).unwrap(), "no table yet");
        // The base goes in its own batch: see render_base.
        apply(&render_base(T)).unwrap();
        assert!(table_exists(T).unwrap(), "nfnetlink probe misses the table");
        let setup =
            render_network_add(T, &a) + &render_network_add(T, &i) + &render_ports_add(T, &ports);
        apply(&setup).unwrap();
        let listed = list_table(T).unwrap();
        apply(&render_base(T)).unwrap();
        assert_eq!(
            list_table(T).unwrap(),
            listed,
            "render_base is not idempotent"
        );
        for want in [
            "8080 : 10.77.0.2 . 80",
            "198.51.100.1 . 5353 : 10.77.0.2 . 53",
            "\"mrt-aaaa1111\" : jump nw_aaaa1111_out",
            "10.77.0.0/24 : jump nw_aaaa1111_masq",
            "chain nw_bbbb2222_in",
            "fib daddr type local jump ports",
        ] {
            assert!(listed.contains(want), "missing {want:?} in:\n{listed}");
        }
        // Re-applying everything changes nothing (no duplicated rules).
        apply(&setup).unwrap();
        assert_eq!(list_table(T).unwrap(), listed);

        // Deleting twice is fine, and leaves empty maps and no network chains.
        for _ in 0..2 {
            apply(&render_ports_del(T, &ports)).unwrap();
            apply(&render_network_del(T, &a)).unwrap();
            apply(&render_network_del(T, &i)).unwrap();
        }
        let left = list_table(T).unwrap();
        assert!(!left.contains("elements"), "elements left:\n{left}");
        assert!(!left.contains("chain nw_"), "network chains left:\n{left}");
        assert!(left.contains("map pm_any_tcp"), "{left}");

        // A broken batch changes nothing and says why.
        let bad = render_ports_add(T, &ports) + "add rule inet nosuch_table c accept\n";
        let e = apply(&bad).unwrap_err().to_string();
        assert!(e.contains("Error:") && e.contains("nosuch_table"), "{e}");
        assert!(!list_table(T).unwrap().contains("elements"));

        delete_table(T).unwrap();
        assert!(list_table(T).is_err());
        delete_table(T).unwrap();
    });
}

/// After the networks and ports of the widest cross-product case are
/// added and deleted again, the kernel lists exactly the base table
/// (golden `cleaned`, the kernel's own `nft list table` output).
#[test]
fn adding_then_deleting_everything_leaves_the_base_table() {
    let ns = Ns::new("clean");
    let a = net("aaaa1111", "br0", "10.77.0.0/24", false);
    let b = net("bbbb2222", "br1", "10.78.0.0/24", true);
    let ports = [
        FwPort::test(Proto::Tcp, "0.0.0.0", 8080, "10.77.0.2", 80),
        FwPort::test(Proto::Tcp, "198.51.100.1", 8081, "10.77.0.2", 80),
        FwPort::test(Proto::Udp, "0.0.0.0", 5353, "10.78.0.2", 53),
    ];
    let (base, cleaned) = ns.run(|| {
        apply(&render_base(T)).unwrap();
        let base = list_table(T).unwrap();
        apply(
            &(render_network_add(T, &a)
                + &render_network_add(T, &b)
                + &render_ports_add(T, &ports)),
        )
        .unwrap();
        assert!(list_table(T).unwrap().contains("10.78.0.2 . 53"));
        apply(
            &(render_ports_del(T, &ports)
                + &render_network_del(T, &b)
                + &render_network_del(T, &a)),
        )
        .unwrap();
        let cleaned = list_table(T).unwrap();
        delete_table(T).unwrap();
        (base, cleaned)
    });
    assert_eq!(cleaned, base);
    crate::network::firewall::tests::golden("cleaned", &cleaned);
}

/// What `desired` says is exactly what the kernel lists back, for every
/// gateway mode, trusted interfaces and every kind of port mapping: the
/// heal check finds nothing to do on a table minirt itself built.
#[test]
fn the_live_table_normalises_to_the_desired_state() {
    use crate::network::rules::{element_diff, parse_live, structure_differs};
    let ns = Ns::new("heal");
    let mut nets = vec![];
    for (i, mode) in [
        GatewayMode::Nat,
        GatewayMode::NatUnprotected,
        GatewayMode::Routed,
        GatewayMode::Isolated,
    ]
    .into_iter()
    .enumerate()
    {
        let mut n = net(
            &format!("cafe000{i}"),
            &format!("mrt-cafe000{i}"),
            &format!("10.9{i}.0.0/24"),
            mode == GatewayMode::Isolated,
        );
        n.mode = mode;
        if i == 0 {
            n.trusted = vec!["eth3".into(), "vxlan.1".into()];
        }
        // Dual-stack: NAT66 on the first, routed IPv6 on the second,
        // and the isolated one's IPv6 side.
        if i != 2 {
            n.v6 = Some(crate::network::firewall::FwV6 {
                subnet: format!("fd00:9{i}::/64").parse().unwrap(),
                gateway: format!("fd00:9{i}::1").parse().unwrap(),
                mode: if i == 1 {
                    GatewayMode::Routed
                } else {
                    GatewayMode::Nat
                },
            });
        }
        nets.push(n);
    }
    let mut ports = vec![
        FwPort::test(Proto::Tcp, "0.0.0.0", 8080, "10.90.0.2", 80),
        FwPort::test(Proto::Udp, "127.0.0.1", 5353, "10.90.0.2", 53),
        FwPort::test(Proto::Tcp, "198.51.100.1", 8081, "10.90.0.3", 80),
        FwPort::test(Proto::Tcp, "::", 8080, "fd00:90::2", 80),
        FwPort::test(Proto::Udp, "::1", 5353, "fd00:90::2", 53),
        FwPort::test(Proto::Tcp, "2001:db8::1", 8081, "fd00:90::3", 80),
    ];
    let mut routed = FwPort::test(Proto::Tcp, "0.0.0.0", 8082, "10.92.0.2", 80);
    routed.routed = true;
    ports.push(routed);
    ns.run(|| {
        apply(&render_base(T)).unwrap();
        let mut script = String::new();
        for n in &nets {
            script += &render_network_add(T, n);
        }
        script += &render_ports_add(T, &ports);
        apply(&script).unwrap();
        let want = desired(&nets, &ports);
        let live = parse_live(&list_table_json(T).unwrap()).unwrap();
        assert_eq!(structure_differs(&want, &live), None);
        assert_eq!(element_diff(&want, &live), (vec![], vec![]));

        // Tampering is seen: a flushed chain, a deleted element.
        apply(&format!(
            "flush chain inet {T} guard\ndelete element inet {T} pm_any_tcp {{ 8080 }}\n"
        ))
        .unwrap();
        let live = parse_live(&list_table_json(T).unwrap()).unwrap();
        assert!(structure_differs(&want, &live).is_some());
        let (add, del) = element_diff(&want, &live);
        assert_eq!(
            add,
            vec![("pm_any_tcp".into(), "8080 : 10.90.0.2 . 80".into())]
        );
        assert!(del.is_empty());
        // The element fix puts it back, and removes what is not owned.
        apply(&render_base(T)).unwrap();
        let extra = vec![(
            "pm_any_tcp".to_string(),
            "9999 : 10.90.0.9 . 99".to_string(),
        )];
        apply(&render_elements_fix(T, &extra, &[])).unwrap();
        let live = parse_live(&list_table_json(T).unwrap()).unwrap();
        let (add, del) = element_diff(&want, &live);
        apply(&render_elements_fix(T, &add, &del)).unwrap();
        let live = parse_live(&list_table_json(T).unwrap()).unwrap();
        assert_eq!(structure_differs(&want, &live), None);
        assert_eq!(element_diff(&want, &live), (vec![], vec![]));
        delete_table(T).unwrap();
    });
}

/// Real packets: a LAN client, the host, and containers on two bridges.
#[test]
fn port_mapping_masquerade_and_isolation_end_to_end() {
    let host = Ns::new("h");
    let ctr = Ns::new("c");
    let lan = Ns::new("l");
    let other = Ns::new("d");

    // Host: bridge br0 10.77.0.1/24 with the container, br1 10.78.0.1/24 with `other`.
    for (br, gw, peer, peer_ip) in [
        ("br0", "10.77.0.1/24", &ctr, "10.77.0.2/24"),
        ("br1", "10.78.0.1/24", &other, "10.78.0.2/24"),
    ] {
        host.ip(&["link", "add", br, "type", "bridge"]);
        host.ip(&["addr", "add", gw, "dev", br]);
        host.ip(&["link", "set", br, "up"]);
        let hv = format!("v{br}");
        host.ip(&[
            "link",
            "add",
            &hv,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            peer.name(),
        ]);
        host.ip(&["link", "set", &hv, "master", br, "up"]);
        // With br_netfilter active the hairpin DNAT happens at bridge level
        // and goes back out the port it came in on (Docker does the same).
        host.ip(&["link", "set", &hv, "type", "bridge_slave", "hairpin", "on"]);
        peer.ip(&["addr", "add", peer_ip, "dev", "eth0"]);
        peer.ip(&["link", "set", "eth0", "up"]);
        let via = gw.split('/').next().unwrap();
        peer.ip(&["route", "add", "default", "via", via]);
    }
    // LAN client 198.51.100.2, with no route to the container subnets.
    host.ip(&[
        "link",
        "add",
        "lan0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        lan.name(),
    ]);
    host.ip(&["addr", "add", "198.51.100.1/24", "dev", "lan0"]);
    host.ip(&["link", "set", "lan0", "up"]);
    lan.ip(&["addr", "add", "198.51.100.2/24", "dev", "eth0"]);
    lan.ip(&["link", "set", "eth0", "up"]);
    // The LAN routes 10.78/24 (not 10.77/24) via the host, to try unsolicited inbound.
    lan.ip(&["route", "add", "10.78.0.0/24", "via", "198.51.100.1"]);
    host.sysctl("net.ipv4.ip_forward", "1");
    host.sysctl("net.ipv4.conf.br0.route_localnet", "1");

    let dir = tempfile::tempdir().unwrap();
    let site = |name: &str, body: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("index.html"), body).unwrap();
        d.to_string_lossy().into_owned()
    };
    let (ctr_site, lan_site, other_site) = (
        site("ctr", "hello-from-container\n"),
        site("lan", "hello-from-lan\n"),
        site("other", "hello-from-other\n"),
    );
    let _ctr_httpd = ctr.spawn(&["busybox", "httpd", "-f", "-p", "80", "-h", &ctr_site]);
    let _lan_httpd = lan.spawn(&["busybox", "httpd", "-f", "-p", "80", "-h", &lan_site]);
    let _other_httpd = other.spawn(&["busybox", "httpd", "-f", "-p", "80", "-h", &other_site]);
    wait_for("other httpd", Duration::from_secs(10), || {
        other.fetch("http://127.0.0.1:80/", 2).is_some()
    });
    wait_for("container httpd", Duration::from_secs(10), || {
        ctr.fetch("http://127.0.0.1:80/", 2).is_some()
    });
    wait_for("lan httpd", Duration::from_secs(10), || {
        lan.fetch("http://127.0.0.1:80/", 2).is_some()
    });

    let a = net("aaaa1111", "br0", "10.77.0.0/24", false);
    let b = net("bbbb2222", "br1", "10.78.0.0/24", false);
    let ports = [
        FwPort::test(Proto::Tcp, "0.0.0.0", 8080, "10.77.0.2", 80),
        FwPort::test(Proto::Tcp, "198.51.100.1", 8081, "10.77.0.2", 80),
    ];
    host.run(|| {
        apply(&render_base(T))?;
        apply(
            &(render_network_add(T, &a)
                + &render_network_add(T, &b)
                + &render_ports_add(T, &ports)),
        )
    })
    .unwrap();

    let hello = Some("hello-from-container\n".to_string());
    // From another host, from the host itself (loopback and own address), hairpin.
    assert_eq!(
        lan.fetch("http://198.51.100.1:8080/", 5),
        hello,
        "LAN -> host:8080"
    );
    assert_eq!(
        host.fetch("http://127.0.0.1:8080/", 5),
        hello,
        "host -> 127.0.0.1:8080"
    );
    assert_eq!(
        host.fetch("http://198.51.100.1:8080/", 5),
        hello,
        "host -> own addr"
    );
    assert_eq!(
        ctr.fetch("http://10.77.0.1:8080/", 5),
        hello,
        "hairpin via gateway"
    );
    assert_eq!(
        ctr.fetch("http://198.51.100.1:8080/", 5),
        hello,
        "hairpin via host addr"
    );
    // A specific host address only matches that destination.
    assert_eq!(
        lan.fetch("http://198.51.100.1:8081/", 5),
        hello,
        "LAN -> host:8081"
    );
    assert_eq!(
        host.fetch("http://127.0.0.1:8081/", 2),
        None,
        "8081 is bound to one address"
    );
    // Outbound masquerade: the LAN has no route back to 10.77/10.78.
    let lan_hello = Some("hello-from-lan\n".to_string());
    assert_eq!(
        ctr.fetch("http://198.51.100.2/", 5),
        lan_hello,
        "ctr -> LAN"
    );
    assert_eq!(
        other.fetch("http://198.51.100.2/", 5),
        lan_hello,
        "other -> LAN"
    );
    // Isolation between minirt networks.
    assert_eq!(
        other.fetch("http://10.77.0.2/", 2),
        None,
        "net b -> net a must be dropped"
    );

    // No unsolicited inbound forwarding, though the LAN has a route; the host may connect.
    assert_eq!(
        lan.fetch("http://10.78.0.2/", 2),
        None,
        "LAN -> net b unpublished"
    );
    assert!(
        host.fetch("http://10.78.0.2/", 5).is_some(),
        "host -> net b"
    );

    // Network b becomes internal: nothing beyond its bridge.
    let b_internal = FwNetwork {
        internal: true,
        ..b.clone()
    };
    host.run(|| apply(&(render_network_del(T, &b) + &render_network_add(T, &b_internal))))
        .unwrap();
    assert_eq!(
        other.fetch("http://198.51.100.2/", 2),
        None,
        "internal -> LAN"
    );
    assert_eq!(
        ctr.fetch("http://198.51.100.2/", 5),
        lan_hello,
        "a still reaches LAN"
    );
    assert_eq!(lan.fetch("http://10.78.0.2/", 2), None, "LAN -> internal");

    // Removing the mappings removes the service.
    host.run(|| apply(&render_ports_del(T, &ports))).unwrap();
    assert_eq!(
        lan.fetch("http://198.51.100.1:8080/", 2),
        None,
        "mapping removed"
    );
    host.run(|| delete_table(T)).unwrap();
}
