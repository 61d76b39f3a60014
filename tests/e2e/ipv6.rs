//! IPv6 (issue 16): dual-stack networks seen from inside the containers,
//! from each other by name, and from a fake LAN/upstream neighbour with
//! addresses from the documentation prefixes (2001:db8::/32, 203.0.113.0/24):
//! published ports over both families, NAT66 and routed IPv6, teardown.

use crate::common::Proc;
use crate::common::*;
use crate::lan::TWO_PORTS;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A neighbour namespace on a veth to the test host: 203.0.113.2 and
/// 2001:db8:66::2 (the host side has .1 and ::1 of each), its default
/// routes via the host, so it can also try to reach container subnets.
struct Lan {
    ns: String,
}

const HOST4: &str = "203.0.113.1";
const HOST6: &str = "2001:db8:66::1";
const LAN6: &str = "2001:db8:66::2";

impl Lan {
    fn new(h: &TestHost) -> Lan {
        let ns = format!("{}-lan6", h.ns);
        let _ = cmd("ip", &["netns", "del", &ns]);
        let o = cmd("ip", &["netns", "add", &ns]);
        assert!(o.status.success(), "netns add: {}", stderr(&o));
        let lan = Lan { ns };
        let run = |args: &[&str]| {
            let o = cmd("ip", args);
            assert!(o.status.success(), "ip {args:?}: {}", stderr(&o));
        };
        let (hn, ln) = (h.ns.as_str(), lan.ns.as_str());
        run(&[
            "link", "add", "vlan6", "netns", hn, "type", "veth", "peer", "name", "eth0", "netns",
            ln,
        ]);
        run(&[
            "-n",
            hn,
            "addr",
            "add",
            &format!("{HOST4}/24"),
            "dev",
            "vlan6",
        ]);
        run(&[
            "-n",
            hn,
            "addr",
            "add",
            &format!("{HOST6}/64"),
            "dev",
            "vlan6",
            "nodad",
        ]);
        run(&["-n", hn, "link", "set", "vlan6", "up"]);
        run(&["-n", ln, "addr", "add", "203.0.113.2/24", "dev", "eth0"]);
        run(&[
            "-n",
            ln,
            "addr",
            "add",
            &format!("{LAN6}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        run(&["-n", ln, "link", "set", "eth0", "up"]);
        run(&["-n", ln, "link", "set", "lo", "up"]);
        run(&["-n", ln, "route", "add", "default", "via", HOST4]);
        run(&["-n", ln, "-6", "route", "add", "default", "via", HOST6]);
        lan
    }

    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let mut all = vec!["netns", "exec", &self.ns, program];
        all.extend_from_slice(args);
        cmd("ip", &all)
    }

    /// One bounded HTTP GET (`-g`: brackets are an IPv6 literal).
    fn get(&self, url: &str) -> Option<String> {
        let o = self.run("curl", &["-sfg", "--max-time", "2", url]);
        o.status.success().then(|| stdout(&o))
    }

    fn wait_get(&self, url: &str) -> String {
        let mut page = None;
        wait_for(
            &format!("{url} from the LAN"),
            Duration::from_secs(20),
            || {
                page = self.get(url);
                page.is_some()
            },
        );
        page.unwrap_or_default()
    }

    /// An HTTP server on [::]:9000 in the LAN, with nft counters of the
    /// source addresses that reach it: what the upstream sees.
    fn server(&self, sources: &[&str]) -> Proc {
        let mut script =
            "table inet seen {\n chain input {\n  type filter hook input priority 0;\n".to_string();
        for s in sources {
            script += &format!("  ip6 saddr {s} tcp dport 9000 counter\n");
        }
        script += " }\n}\n";
        let mut c = Command::new("ip")
            .args(["netns", "exec", &self.ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft");
        use std::io::Write;
        c.stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(c.wait().unwrap().success());
        let dir = format!("/tmp/{}-www", self.ns);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/index.html"), "upstream\n").unwrap();
        let p = Proc(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.ns,
                    "busybox",
                    "httpd",
                    "-f",
                    "-p",
                    "[::]:9000",
                ])
                .args(["-h", &dir])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("httpd"),
        );
        wait_for("the upstream server", Duration::from_secs(10), || {
            self.get(&format!("http://[{LAN6}]:9000/")).is_some()
        });
        p
    }

    /// Packets counted for each source given to `server`, in order.
    fn seen(&self) -> Vec<u64> {
        let o = self.run("nft", &["list", "chain", "inet", "seen", "input"]);
        stdout(&o)
            .lines()
            .filter_map(|l| l.split("packets ").nth(1))
            .filter_map(|r| r.split_whitespace().next()?.parse().ok())
            .collect()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(format!("/tmp/{}-www", self.ns));
        let _ = cmd("ip", &["netns", "del", &self.ns]);
    }
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).expect("json")
}

/// Everything of the host namespace that names `needle` (addresses, routes,
/// nftables): empty once a network and its containers are gone.
fn leftovers(h: &TestHost, needle: &str) -> Vec<String> {
    let mut out = vec![];
    for args in [
        &["ip", "-6", "addr"][..],
        &["ip", "-6", "route"],
        &["nft", "list", "ruleset"],
    ] {
        let o = h.in_ns(args[0], &args[1..]);
        out.extend(
            stdout(&o)
                .lines()
                .filter(|l| l.contains(needle))
                .map(|l| format!("{}: {}", args.join(" "), l.trim())),
        );
    }
    out
}

/// `network create --ipv6 --subnet V6 --subnet V4 NAME`.
fn dual_stack(h: &TestHost, name: &str, subnet6: &str, subnet4: &str) {
    h.ok(&[
        "network", "create", "--ipv6", "--subnet", subnet6, "--subnet", subnet4, name,
    ]);
}

#[test]
fn dual_stack_network_names_ports_nat66_and_teardown() {
    let h = TestHost::new();
    let lan = Lan::new(&h);
    dual_stack(&h, "ds", "fd00:66::/64", "10.66.0.0/24");
    let n = json(&h.ok(&["network", "inspect", "ds"]));
    assert_eq!(n[0]["EnableIPv6"], true);
    assert_eq!(n[0]["IPAM"]["Config"][1]["Subnet"], "fd00:66::/64");
    assert_eq!(n[0]["IPAM"]["Config"][1]["Gateway"], "fd00:66::1");
    h.ok(&[
        "run", "-d", "--name", "web", "--net", "ds", "-p", "8080:80", "busybox", "sh", "-c",
        TWO_PORTS,
    ]);

    // What the container and inspect show.
    let d = json(&h.ok(&["inspect", "web"]));
    let ep = &d[0]["NetworkSettings"]["Networks"]["ds"];
    assert_eq!(ep["GlobalIPv6Address"], "fd00:66::2");
    assert_eq!(ep["GlobalIPv6PrefixLen"], 64);
    assert_eq!(ep["IPv6Gateway"], "fd00:66::1");
    assert_eq!(ep["IPAddress"], "10.66.0.2");
    let addrs = h.ok(&["exec", "web", "ip", "-6", "addr", "show", "eth0"]);
    assert!(
        addrs.contains("inet6 fd00:66::2/64 scope global"),
        "{addrs}"
    );
    assert!(addrs.contains("inet6 fe80::"), "{addrs}");
    assert!(!addrs.contains("tentative"), "DAD left on: {addrs}");
    let routes = h.ok(&["exec", "web", "ip", "-6", "route"]);
    assert!(
        routes.contains("default via fd00:66::1 dev eth0"),
        "{routes}"
    );
    let files = h.ok(&["exec", "web", "cat", "/etc/hosts", "/etc/resolv.conf"]);
    assert!(files.contains("fd00:66::2\t"), "{files}");
    assert!(files.contains("nameserver 10.66.0.1"), "{files}");
    assert!(files.contains("nameserver fd00:66::1"), "{files}");
    let v = n[0]["IPAM"]["Config"].clone();
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    let members = json(&h.ok(&["network", "inspect", "ds"]));
    let c = members[0]["Containers"].as_object().unwrap();
    assert_eq!(
        c.values().next().unwrap()["IPv6Address"],
        "fd00:66::2/64",
        "{c:?}"
    );

    // Another container reaches it by name over both families: AAAA and A
    // from the responder on either gateway, ping and TCP over IPv6.
    let out = h.ok(&[
        "run",
        "--rm",
        "--net",
        "ds",
        "busybox",
        "sh",
        "-c",
        "nslookup -type=aaaa web fd00:66::1 && nslookup -type=a web 10.66.0.1 && \
         ping -6 -c1 -W5 web && wget -qO- http://[fd00:66::2]/ && wget -qO- http://10.66.0.2/",
    ]);
    assert!(out.contains("Address: fd00:66::2"), "{out}");
    assert!(out.contains("Address: 10.66.0.2"), "{out}");
    assert!(out.contains("1 packets received"), "{out}");
    assert_eq!(out.matches("hello-80").count(), 2, "{out}");

    // The published port from the LAN over both families; an unpublished
    // container port routed at directly is not reachable.
    assert_eq!(lan.wait_get(&format!("http://{HOST4}:8080/")), "hello-80\n");
    assert_eq!(
        lan.wait_get(&format!("http://[{HOST6}]:8080/")),
        "hello-80\n"
    );
    assert_eq!(lan.get("http://[fd00:66::2]:81/"), None, "unpublished port");
    assert_eq!(
        lan.get("http://[fd00:66::2]:80/"),
        None,
        "container address"
    );

    // NAT66: the upstream sees the host's address, never the container's.
    let _srv = lan.server(&[HOST6, "fd00:66::/64"]);
    let page = h.ok(&[
        "exec",
        "web",
        "wget",
        "-qO-",
        &format!("http://[{LAN6}]:9000/"),
    ]);
    assert_eq!(page, "upstream\n");
    let seen = lan.seen();
    assert!(seen.len() == 2 && seen[0] > 0 && seen[1] == 0, "{seen:?}");

    // connect / disconnect with both families, --ip6 honoured.
    dual_stack(&h, "ds2", "fd00:67::/64", "10.67.0.0/24");
    h.ok(&["network", "connect", "--ip6", "fd00:67::99", "ds2", "web"]);
    let eth1 = h.ok(&["exec", "web", "ip", "addr", "show", "eth1"]);
    assert!(eth1.contains("inet6 fd00:67::99/64"), "{eth1}");
    assert!(eth1.contains("inet 10.67.0.2/24"), "{eth1}");
    let e = h
        .fails(&["network", "connect", "--ip6", "fd00:67::99", "ds2", "web"])
        .1;
    assert!(e.contains("already connected"), "{e}");
    h.ok(&["network", "disconnect", "ds2", "web"]);
    let o = h.minirt(&["exec", "web", "ip", "addr", "show", "eth1"]);
    assert!(!o.status.success(), "eth1 still there");

    // The default network stays IPv4.
    h.ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "600"]);
    let d = json(&h.ok(&["inspect", "plain"]));
    assert_eq!(
        d[0]["NetworkSettings"]["Networks"]["bridge"]["GlobalIPv6Address"],
        ""
    );
    let a = h.ok(&["exec", "plain", "ip", "-6", "addr", "show", "eth0"]);
    assert!(!a.contains("scope global"), "{a}");

    // Nothing left after rm and network rm: addresses, routes, rules, rows.
    h.ok(&["rm", "-f", "web"]);
    h.ok(&["network", "rm", "ds", "ds2"]);
    for needle in ["fd00:66:", "fd00:67:"] {
        let left = leftovers(&h, needle);
        assert!(left.is_empty(), "{left:#?}");
    }
    let ls = h.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!ls.contains("ds"), "{ls}");
    h.ok(&["rm", "-f", "plain"]);
}

#[test]
fn routed_ipv6_reaches_published_ports_directly_and_nothing_else() {
    let h = TestHost::new();
    let lan = Lan::new(&h);
    h.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "2001:db8:77::/64",
        "-o",
        "com.docker.network.bridge.gateway_mode_ipv6=routed",
        "direct6",
    ]);
    h.ok(&[
        "run", "-d", "--name", "web", "--net", "direct6", "-p", "8080:80", "busybox", "sh", "-c",
        TWO_PORTS,
    ]);
    // The published container port at the container's own IPv6 address.
    assert_eq!(lan.wait_get("http://[2001:db8:77::2]:80/"), "hello-80\n");
    assert_eq!(lan.get("http://[2001:db8:77::2]:81/"), None, "unpublished");
    // IPv4 keeps NAT: the published port on the host's IPv4 address.
    assert_eq!(lan.wait_get(&format!("http://{HOST4}:8080/")), "hello-80\n");
    // No NAT66: the upstream sees the container's address.
    let _srv = lan.server(&["2001:db8:77::2", HOST6]);
    let page = h.ok(&[
        "exec",
        "web",
        "wget",
        "-qO-",
        &format!("http://[{LAN6}]:9000/"),
    ]);
    assert_eq!(page, "upstream\n");
    let seen = lan.seen();
    assert!(seen.len() == 2 && seen[0] > 0 && seen[1] == 0, "{seen:?}");
}

#[test]
fn bad_ipv6_inputs_are_refused_clearly() {
    let h = TestHost::new();
    h.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd00:88::/64",
        "six",
    ]);
    h.ok(&["network", "create", "--subnet", "10.89.0.0/24", "four"]);
    // Docker's codes: `network` commands fail with 1 (a daemon error),
    // `run` and what is not implemented with 125.
    let refused = |args: &[&str], want: &str| {
        let (code, e) = h.fails(args);
        let daemon = args[0] == "network" && !want.contains("not implemented");
        assert_eq!(code, if daemon { 1 } else { 125 }, "{args:?}: {e}");
        assert!(e.contains(want), "{args:?}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    };
    let create = |extra: &[&str]| {
        let mut a = vec!["network", "create", "--ipv6"];
        a.extend_from_slice(extra);
        a.push("bad");
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let cases: &[(&[&str], &str)] = &[
        (
            &["--subnet", "fd00:88:0:0:1::/80"],
            "overlaps with network six",
        ),
        (
            &["--subnet", "fd00:99::/64", "--gateway", "fd00:98::1"],
            "not inside subnet",
        ),
        (&["--subnet", "fd00:99::/121"], "smaller than one network"),
        (&["--subnet", "fd00::/47"], "larger than one network"),
        (
            &["--ipv4=false", "--subnet", "10.90.0.0/24"],
            "the network has no IPv4",
        ),
    ];
    for (extra, want) in cases {
        let a = create(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        refused(&a, want);
    }
    refused(
        &["network", "create", "--subnet", "fd00:99::/64", "nov6"],
        "needs --ipv6",
    );
    refused(
        &["network", "create", "--ipv4=false", "nov6"],
        "--ipv4=false needs --ipv6",
    );
    // The host's IPv6 address to an IPv4-only container: the kernel cannot
    // translate between families (Docker needs its userland proxy).
    refused(
        &[
            "run",
            "--rm",
            "--net",
            "four",
            "-p",
            "[2001:db8:66::1]:8080:80",
            "busybox",
            "true",
        ],
        "needs an IPv6 address in the container",
    );
    refused(
        &[
            "run",
            "--rm",
            "--net",
            "six",
            "--ip6",
            "fd00:77::5",
            "busybox",
            "true",
        ],
        "not inside subnet",
    );
    refused(
        &[
            "run",
            "--rm",
            "--net",
            "four",
            "--ip6",
            "fd00:88::5",
            "busybox",
            "true",
        ],
        "has no IPv6",
    );
    refused(
        &[
            "run",
            "--rm",
            "--net",
            "four",
            "-p",
            "[::]:8080:80",
            "busybox",
            "true",
        ],
        "needs an IPv6 address in the container",
    );
    refused(
        &[
            "run",
            "--rm",
            "--net",
            "six",
            "-p",
            "[::1]:8080:80/udp",
            "busybox",
            "true",
        ],
        "not implemented: udp publishing on [::1]",
    );
    h.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--net",
        "six",
        "--ip6",
        "fd00:88::5",
        "busybox",
        "sleep",
        "600",
    ]);
    refused(
        &[
            "run",
            "--rm",
            "--net",
            "six",
            "--ip6",
            "fd00:88::5",
            "busybox",
            "true",
        ],
        "already in use",
    );
    // Nothing was left by the refusals: the failed runs have no rows.
    let ps = h.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(ps.trim(), "a");
    let ls = h.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!ls.contains("bad") && !ls.contains("nov6"), "{ls}");
}

#[test]
fn ipv6_only_network_names_ports_connect_and_teardown() {
    let h = TestHost::new();
    let lan = Lan::new(&h);
    h.ok(&[
        "network",
        "create",
        "--ipv4=false",
        "--ipv6",
        "--subnet",
        "fd00:76::/64",
        "v6only",
    ]);
    let n = json(&h.ok(&["network", "inspect", "v6only"]));
    assert_eq!(n[0]["EnableIPv4"], false);
    assert_eq!(n[0]["EnableIPv6"], true);
    let cfg = n[0]["IPAM"]["Config"].as_array().unwrap().clone();
    assert_eq!(cfg.len(), 1, "{cfg:?}");
    assert_eq!(cfg[0]["Subnet"], "fd00:76::/64");
    assert_eq!(cfg[0]["Gateway"], "fd00:76::1");
    let bridge = n[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    let br = stdout(&h.in_ns("ip", &["addr", "show", &bridge]));
    assert!(br.contains("inet6 fd00:76::1/64"), "{br}");
    assert!(!br.contains("inet "), "an IPv4 address on the bridge: {br}");

    h.ok(&[
        "run", "-d", "--name", "web", "--net", "v6only", "-p", "8080:80", "busybox", "sh", "-c",
        TWO_PORTS,
    ]);
    let d = json(&h.ok(&["inspect", "web"]));
    let ep = &d[0]["NetworkSettings"]["Networks"]["v6only"];
    assert_eq!(ep["IPAddress"], "");
    assert_eq!(ep["Gateway"], "");
    assert_eq!(ep["GlobalIPv6Address"], "fd00:76::2");
    assert_eq!(ep["IPv6Gateway"], "fd00:76::1");
    assert_eq!(d[0]["NetworkSettings"]["IPAddress"], "");
    // `-p 8080:80` publishes on :: only.
    let ports = &d[0]["NetworkSettings"]["Ports"]["80/tcp"];
    assert_eq!(ports[0]["HostIp"], "::", "{ports}");
    assert_eq!(ports.as_array().map(Vec::len), Some(1), "{ports}");
    let ps = json(&h.ok(&["ps", "--format", "json"]));
    assert_eq!(ps["NetworkAddresses"], "v6only=fd00:76::2");
    let members = json(&h.ok(&["network", "inspect", "v6only"]));
    let c = members[0]["Containers"].as_object().unwrap();
    let m = c.values().next().unwrap();
    assert_eq!(
        (&m["IPv4Address"], &m["IPv6Address"]),
        (&"".into(), &"fd00:76::2/64".into())
    );

    // Inside: only IPv6 (and link-local), the default route over IPv6.
    let a4 = h.ok(&["exec", "web", "ip", "-4", "addr", "show", "eth0"]);
    assert!(!a4.contains("inet "), "{a4}");
    let a6 = h.ok(&["exec", "web", "ip", "-6", "addr", "show", "eth0"]);
    assert!(a6.contains("inet6 fd00:76::2/64 scope global"), "{a6}");
    assert!(a6.contains("inet6 fe80::"), "{a6}");
    assert!(!a6.contains("tentative"), "{a6}");
    let r4 = h.ok(&["exec", "web", "ip", "-4", "route"]);
    assert_eq!(r4.trim(), "", "IPv4 routes: {r4}");
    let r6 = h.ok(&["exec", "web", "ip", "-6", "route"]);
    assert!(r6.contains("default via fd00:76::1 dev eth0"), "{r6}");
    let hosts = h.ok(&["exec", "web", "cat", "/etc/hosts"]);
    assert!(hosts.contains("fd00:76::2\t"), "{hosts}");
    assert!(!hosts.contains("0.0.0.0"), "{hosts}");
    let resolv = h.ok(&["exec", "web", "cat", "/etc/resolv.conf"]);
    let ns: Vec<&str> = resolv
        .lines()
        .filter(|l| l.starts_with("nameserver"))
        .collect();
    assert_eq!(ns, ["nameserver fd00:76::1"], "{resolv}");

    // Container to container by name over IPv6: AAAA from the responder on
    // the IPv6 gateway, no A record, ping and TCP by name.
    let out = h.ok(&[
        "run",
        "--rm",
        "--net",
        "v6only",
        "busybox",
        "sh",
        "-c",
        "nslookup -type=aaaa web && ping -6 -c1 -W5 web && wget -qO- http://web/ && \
         ! nslookup -type=a web | grep -q 'Address: [0-9]*\\.'",
    ]);
    assert!(out.contains("Address: fd00:76::2"), "{out}");
    assert!(out.contains("1 packets received"), "{out}");
    assert!(out.contains("hello-80"), "{out}");

    // The LAN reaches the published port on the host's IPv6 address only.
    assert_eq!(
        lan.wait_get(&format!("http://[{HOST6}]:8080/")),
        "hello-80\n"
    );
    assert_eq!(lan.get(&format!("http://{HOST4}:8080/")), None, "over IPv4");
    assert_eq!(lan.get("http://[fd00:76::2]:81/"), None, "unpublished port");

    // Bad input: --ip, an IPv4 host address.
    let (code, e) = h.fails(&[
        "run",
        "--rm",
        "--net",
        "v6only",
        "--ip",
        "10.76.0.5",
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125, "{e}");
    assert!(e.contains("is IPv6-only"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    let (code, e) = h.fails(&[
        "run",
        "--rm",
        "--net",
        "v6only",
        "-p",
        "127.0.0.1:8081:80",
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125, "{e}");
    assert!(
        e.contains("cannot reach a container on an IPv6-only network"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");

    // connect / disconnect: an IPv4 container gets an IPv6-only eth1.
    h.ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "600"]);
    h.ok(&["network", "connect", "v6only", "plain"]);
    let eth1 = h.ok(&["exec", "plain", "ip", "addr", "show", "eth1"]);
    // The next address after the cursor (the `run --rm` above had ::3).
    assert!(eth1.contains("inet6 fd00:76::4/64 scope global"), "{eth1}");
    assert!(!eth1.contains("inet "), "{eth1}");
    let ping = h.ok(&["exec", "plain", "ping", "-6", "-c1", "-W5", "fd00:76::2"]);
    assert!(ping.contains("1 packets received"), "{ping}");
    h.ok(&["network", "disconnect", "v6only", "plain"]);
    let o = h.minirt(&["exec", "plain", "ip", "addr", "show", "eth1"]);
    assert!(!o.status.success(), "eth1 still there");

    // Nothing left: device, addresses, routes, rules and elements, rows.
    h.ok(&["rm", "-f", "web", "plain"]);
    h.ok(&["network", "rm", "v6only"]);
    let left = leftovers(&h, "fd00:76:");
    assert!(left.is_empty(), "{left:#?}");
    assert!(
        !stdout(&h.in_ns("ip", &["link"])).contains(&bridge),
        "bridge {bridge} left"
    );
    let rules = stdout(&h.in_ns("nft", &["list", "ruleset"]));
    assert!(!rules.contains(&bridge), "{rules}");
    let ls = h.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!ls.contains("v6only"), "{ls}");
}

/// A `network create --ipv4=false` killed after its bridge and rules: the
/// next command rolls it back to nothing, next to a dual-stack network that
/// keeps its own rules.
#[test]
fn a_killed_ipv6_only_create_heals_to_nothing() {
    let h = TestHost::new();
    h.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd00:78::/64",
        "stay",
    ]);
    for point in ["net-create-after-row", "net-create-after-rules"] {
        let o = h
            .command(&[
                "network",
                "create",
                "--ipv4=false",
                "--ipv6",
                "--subnet",
                "fd00:79::/64",
                "killed",
            ])
            .env("MINIRT_FAULT", point)
            .output()
            .expect("run minirt");
        assert!(!o.status.success(), "{point}: survived");
        h.ok(&["ps"]);
        let left = leftovers(&h, "fd00:79:");
        assert!(left.is_empty(), "{point}: {left:#?}");
        let ls = h.ok(&["network", "ls", "--format", "{{.Name}}"]);
        assert!(!ls.contains("killed"), "{point}: {ls}");
        // The surviving network's IPv6 rules are intact.
        let rules = stdout(&h.in_ns("nft", &["list", "ruleset"]));
        assert!(rules.contains("fd00:78::/64"), "{point}: {rules}");
    }
    // And it can be made for real afterwards.
    h.ok(&[
        "network",
        "create",
        "--ipv4=false",
        "--ipv6",
        "--subnet",
        "fd00:79::/64",
        "killed",
    ]);
    h.ok(&["network", "rm", "killed", "stay"]);
    assert!(leftovers(&h, "fd00:7").is_empty());
}

/// The pid in a container's loopback proxy pid file (`network::proxy6`).
fn proxy_pid(h: &TestHost, name: &str, port: u16) -> i32 {
    let id = h.ok(&["inspect", "--format", "{{.Id}}", name]);
    let f = h
        .run_root
        .join("containers")
        .join(id.trim())
        .join(format!("proxy6-{port}.pid"));
    let s = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    s.split_whitespace().next().unwrap().parse().unwrap()
}

/// Something listening on the host namespace's TCP port.
fn listening(h: &TestHost, port: u16) -> String {
    stdout(&h.in_ns("ss", &["-Hltn", &format!("sport = :{port}")]))
}

#[test]
fn ipv6_loopback_published_port_goes_through_the_proxy() {
    let h = TestHost::new();
    let lan = Lan::new(&h);
    dual_stack(&h, "ds", "fd00:6a::/64", "10.106.0.0/24");
    h.ok(&["network", "create", "--subnet", "10.107.0.0/24", "four"]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--net",
        "ds",
        "-p",
        "[::1]:8080:80",
        "busybox",
        "sh",
        "-c",
        TWO_PORTS,
    ]);
    let local = |port: u16| {
        let o = h.in_ns(
            "curl",
            &["-sfg", "--max-time", "2", &format!("http://[::1]:{port}/")],
        );
        o.status.success().then(|| stdout(&o))
    };
    let mut page = None;
    wait_for("[::1]:8080 from the host", Duration::from_secs(20), || {
        page = local(8080);
        page.is_some()
    });
    assert_eq!(page.as_deref(), Some("hello-80\n"));
    // Many at once, each a full exchange.
    let pages: Vec<_> = std::thread::scope(|s| {
        let all: Vec<_> = (0..8).map(|_| s.spawn(|| local(8080))).collect();
        all.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert!(pages.iter().all(|p| p.as_deref() == Some("hello-80\n")));
    let ports = h.ok(&["port", "web"]);
    assert!(ports.contains("::1:8080"), "{ports}");
    // No kernel mapping for ::1 (it would be dropped): the proxy serves it.
    let fw = nft_table(&h);
    assert!(!fw.contains("::1 . 8080"), "{fw}");
    // Not from the LAN, on the host's address or any other.
    assert_eq!(lan.get(&format!("http://[{HOST6}]:8080/")), None);
    assert_eq!(lan.get(&format!("http://{HOST4}:8080/")), None);

    // The same [::1] port for a second container: refused, nothing left.
    let (code, e) = h.fails(&[
        "run",
        "-d",
        "--name",
        "web2",
        "--net",
        "ds",
        "-p",
        "[::1]:8080:80",
        "busybox",
        "sleep",
        "600",
    ]);
    assert_eq!(code, 125, "{e}");
    let line = one_line(&e);
    assert!(line.contains("8080"), "{line}");

    // A port some other program holds: the proxy cannot bind, the start
    // fails with the bind's error and leaves no proxy behind.
    let _holder = Proc(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &h.ns,
                "busybox",
                "httpd",
                "-f",
                "-p",
                "[::1]:8090",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nc"),
    );
    wait_for("the port holder", Duration::from_secs(10), || {
        !listening(&h, 8090).is_empty()
    });
    let (code, e) = h.fails(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--net",
        "ds",
        "-p",
        "[::1]:8090:80",
        "busybox",
        "sleep",
        "600",
    ]);
    assert_eq!(code, 125, "{e}");
    let line = one_line(&e);
    assert!(
        line.starts_with("minirt: publishing [::1]:8090: bind [::1]:8090: ")
            && line.contains("in use"),
        "{line}"
    );
    assert_eq!(listening(&h, 8090).lines().count(), 1, "only the holder");
    let all = h.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(all.trim(), "web", "nothing of busy left");

    // rm: the proxy is gone and the port free.
    let pid = proxy_pid(&h, "web", 8080);
    assert!(alive(pid));
    h.ok(&["rm", "-f", "web"]);
    assert!(!alive(pid), "proxy {pid} outlived its container");
    assert_eq!(listening(&h, 8080), "");

    // An IPv4-only container is reachable from [::1] too.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "w4",
        "--net",
        "four",
        "-p",
        "[::1]:8080:80",
        "busybox",
        "sh",
        "-c",
        TWO_PORTS,
    ]);
    let mut page = None;
    wait_for(
        "[::1]:8080 to a v4 container",
        Duration::from_secs(20),
        || {
            page = local(8080);
            page.is_some()
        },
    );
    assert_eq!(page.as_deref(), Some("hello-80\n"));
    let pid = proxy_pid(&h, "w4", 8080);
    // A stop tears the network down, the proxy with it.
    h.ok(&["stop", "-t", "1", "w4"]);
    assert!(!alive(pid), "proxy {pid} outlived its stopped container");
    h.ok(&["rm", "-f", "w4"]);

    // A container whose monitor and init were killed: the reconcile of the
    // next command finishes it, its proxy with it.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "dead",
        "--net",
        "four",
        "-p",
        "[::1]:8085:80",
        "busybox",
        "sleep",
        "600",
    ]);
    let pid = proxy_pid(&h, "dead", 8085);
    let v = json(&h.ok(&["inspect", "dead"]));
    let init = v[0]["State"]["Pid"].as_i64().unwrap() as i32;
    let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap();
    let monitor: i32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the pids minirt's own state names; they are ours.
    unsafe {
        libc::kill(monitor, libc::SIGKILL);
        libc::kill(init, libc::SIGKILL);
    }
    wait_for("monitor and init to die", Duration::from_secs(10), || {
        !alive(monitor) && !alive(init)
    });
    assert!(alive(pid), "the proxy outlives them until a reconcile");
    h.ok(&["ps", "-a"]);
    assert!(
        !alive(pid),
        "proxy {pid} of a dead container left by reconcile"
    );
    assert_eq!(listening(&h, 8085), "");
    h.ok(&["rm", "-f", "dead"]);
    h.ok(&["network", "rm", "ds", "four"]);
    assert_eq!(listening(&h, 8080), "");
    for needle in ["fd00:6a:", "10.106.", "10.107."] {
        let left = leftovers(&h, needle);
        assert!(left.is_empty(), "{left:#?}");
    }
}
