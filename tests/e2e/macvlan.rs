//! The macvlan driver (issue 14, part 2): a container on the L2 segment of a
//! host interface, reached by a host of that LAN on its own address. The
//! "LAN" is a veth pair made inside the test host's netns: `lan0` is the
//! parent, its peer lives in a second namespace standing for a LAN host.

use crate::common::Proc;
use crate::common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A LAN host namespace on a veth whose other end (`parent`) stays in the
/// test host's netns, with no address there (the parent only carries frames).
struct LanHost {
    ns: String,
}

impl LanHost {
    fn new(h: &TestHost, parent: &str, addr: &str) -> LanHost {
        let ns = format!("{}-lanhost", h.ns);
        let _ = cmd("ip", &["netns", "del", &ns]);
        let o = cmd("ip", &["netns", "add", &ns]);
        assert!(o.status.success(), "netns add: {}", stderr(&o));
        let lan = LanHost { ns };
        for args in [
            vec![
                "link", "add", parent, "netns", &h.ns, "type", "veth", "peer", "name", "eth0",
                "netns", &lan.ns,
            ],
            vec!["-n", &h.ns, "link", "set", parent, "up"],
            vec!["-n", &lan.ns, "addr", "add", addr, "dev", "eth0"],
            vec!["-n", &lan.ns, "link", "set", "eth0", "up"],
            vec!["-n", &lan.ns, "link", "set", "lo", "up"],
        ] {
            let o = cmd("ip", &args);
            assert!(o.status.success(), "ip {args:?}: {}", stderr(&o));
        }
        lan
    }

    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let mut all = vec!["netns", "exec", &self.ns, program];
        all.extend_from_slice(args);
        cmd("ip", &all)
    }
}

impl Drop for LanHost {
    fn drop(&mut self) {
        let _ = cmd("ip", &["netns", "del", &self.ns]);
    }
}

#[test]
fn a_container_and_a_lan_host_reach_each_other_and_nothing_is_left() {
    let h = TestHost::new();
    let lan = LanHost::new(&h, "lan0", "192.0.2.10/24");
    h.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan0",
        "--subnet",
        "192.0.2.0/24",
        "--gateway",
        "192.0.2.1",
        "lan",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&h.ok(&["network", "inspect", "lan"])).expect("inspect JSON");
    assert_eq!(v[0]["Driver"], "macvlan");
    assert_eq!(v[0]["Options"]["parent"], "lan0");
    assert_eq!(v[0]["Options"]["macvlan_mode"], "bridge");
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--net",
        "lan",
        "--ip",
        "192.0.2.20",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo hello-macvlan > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);

    // The LAN host reaches the container on its own address: ping and TCP.
    let o = lan.run("busybox", &["ping", "-c", "1", "-W", "5", "192.0.2.20"]);
    assert!(o.status.success(), "ping: {}{}", stdout(&o), stderr(&o));
    let mut page = String::new();
    wait_for(
        "the page from the LAN host",
        Duration::from_secs(15),
        || {
            let o = lan.run("curl", &["-sf", "--max-time", "2", "http://192.0.2.20/"]);
            page = stdout(&o);
            o.status.success()
        },
    );
    assert_eq!(page, "hello-macvlan\n");

    // The container reaches the LAN host: ping and a TCP fetch of a page
    // it serves.
    let www = TempDir::new("macvlan-www");
    std::fs::write(format!("{}/index.html", www.path()), "hello-lan\n").unwrap();
    let _httpd = Proc(
        Command::new("ip")
            .args([
                "netns", "exec", &lan.ns, "busybox", "httpd", "-f", "-p", "8000",
            ])
            .args(["-h", www.path()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = h.ok(&["exec", "web", "ping", "-c", "1", "-W", "5", "192.0.2.10"]);
    assert!(out.contains("1 packets received"), "{out}");
    let mut page = String::new();
    wait_for("the LAN host's page", Duration::from_secs(15), || {
        let o = h.minirt(&["exec", "web", "wget", "-qO-", "http://192.0.2.10:8000/"]);
        page = stdout(&o);
        o.status.success()
    });
    assert_eq!(page, "hello-lan\n");
    // Its interface is a macvlan, its default route the LAN's gateway.
    let pid = h.ok(&["inspect", "-f", "{{.State.Pid}}", "web"]);
    let o = cmd(
        "nsenter",
        &["-t", pid.trim(), "-n", "ip", "-d", "link", "show", "eth0"],
    );
    assert!(stdout(&o).contains("macvlan mode bridge"), "{}", stdout(&o));
    let out = h.ok(&["exec", "web", "ip", "route"]);
    assert!(out.contains("default via 192.0.2.1 dev eth0"), "{out}");

    // No firewall and no bridge for it; the host's devices are unchanged.
    assert_eq!(links(&h), ["lan0"]);

    h.ok(&["rm", "-f", "web"]);
    h.ok(&["network", "rm", "lan"]);
    assert_eq!(links(&h), ["lan0"]);
    assert!(h.ok(&["network", "ls", "-q"]).trim().is_empty());
    let o = h.in_ns("nft", &["list", "tables"]);
    assert!(stdout(&o).trim().is_empty(), "{}", stdout(&o));
}

#[test]
fn bad_macvlan_requests_fail_with_one_clear_line() {
    let h = TestHost::new();
    let _lan = LanHost::new(&h, "lan0", "192.0.2.10/24");
    for (args, want) in [
        (
            vec!["-d", "macvlan", "--subnet", "192.0.2.0/24", "x"],
            "the macvlan driver needs a parent interface: -o parent=IF",
        ),
        (
            vec![
                "-d",
                "macvlan",
                "-o",
                "parent=nosuch0",
                "--subnet",
                "192.0.2.0/24",
                "x",
            ],
            "parent interface nosuch0 does not exist",
        ),
        (
            vec!["-d", "macvlan", "-o", "parent=lan0", "x"],
            "the macvlan driver needs --subnet",
        ),
        (
            vec![
                "-d",
                "macvlan",
                "-o",
                "parent=lan0",
                "-o",
                "macvlan_mode=loud",
                "--subnet",
                "192.0.2.0/24",
                "x",
            ],
            "invalid macvlan_mode",
        ),
    ] {
        let mut all = vec!["network", "create"];
        all.extend(args.iter().copied());
        let (code, err) = h.fails(&all);
        // Docker's `network create` exits 1 on a refused request.
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(one_line(&err).contains(want), "{args:?}: {err}");
    }
    // Two macvlan networks on one parent: fine apart, refused overlapping.
    h.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan0",
        "--subnet",
        "192.0.2.0/25",
        "lan-a",
    ]);
    h.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan0",
        "-o",
        "macvlan_mode=private",
        "--subnet",
        "192.0.2.128/25",
        "lan-b",
    ]);
    let (code, err) = h.fails(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan0",
        "--subnet",
        "192.0.2.64/26",
        "lan-c",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        one_line(&err).contains("invalid subnet 192.0.2.64/26: it overlaps with network lan-a"),
        "{err}"
    );
    // Published ports make no sense without NAT: refused, nothing left.
    let (code, err) = h.fails(&[
        "run", "-d", "--net", "lan-a", "-p", "8080:80", "busybox", "sleep", "60",
    ]);
    assert_eq!(code, 125, "{err}");
    assert!(
        one_line(&err).contains("port publishing is not supported on macvlan network lan-a"),
        "{err}"
    );
    assert!(h.ok(&["ps", "-aq"]).trim().is_empty());
    h.ok(&["network", "rm", "lan-a", "lan-b"]);
    assert_eq!(links(&h), ["lan0"]);
}
