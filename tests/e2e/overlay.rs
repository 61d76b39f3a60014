//! The overlay driver (issue 14, parts 3-5): three "hosts" (network
//! namespaces, each with its own minirt roots) joined by an underlay
//! bridge in a namespace of the test (198.51.100.0/24), and a real
//! three-member etcd cluster, one member on each host's underlay address.

use crate::common::*;
use crate::etcd_cluster::EtcdCluster;
use std::process::Output;
use std::time::Duration;

/// The underlay: a bridge in a namespace of its own, one veth per host
/// (`eth0` in the host, 198.51.100.N/24). Deleted on drop.
struct Underlay {
    ns: String,
}

impl Drop for Underlay {
    fn drop(&mut self) {
        let _ = cmd("ip", &["netns", "del", &self.ns]);
    }
}

fn ip_ok(args: &[&str]) {
    let o = cmd("ip", args);
    assert!(o.status.success(), "ip {args:?}: {}", stderr(&o));
}

pub fn underlay_addr(i: usize) -> String {
    format!("198.51.100.{}", i + 1)
}

/// Three hosts on one underlay and one etcd cluster. Dropped in order:
/// minirt's state on each host (containers, networks, the agent), then
/// the hosts, the etcd members, the underlay.
pub struct Hosts {
    pub hosts: Vec<TestHost>,
    pub etcd: EtcdCluster,
    _ul: Underlay,
}

impl Hosts {
    pub fn new(n: usize) -> Hosts {
        let hosts: Vec<TestHost> = (0..n).map(|_| TestHost::new()).collect();
        let ul = Underlay {
            ns: format!("{}-ul", hosts[0].ns),
        };
        let _ = cmd("ip", &["netns", "del", &ul.ns]);
        ip_ok(&["netns", "add", &ul.ns]);
        ip_ok(&["-n", &ul.ns, "link", "add", "br0", "type", "bridge"]);
        ip_ok(&["-n", &ul.ns, "link", "set", "br0", "up"]);
        for (i, h) in hosts.iter().enumerate() {
            let port = format!("ul{i}");
            ip_ok(&[
                "link", "add", &port, "netns", &ul.ns, "type", "veth", "peer", "name", "eth0",
                "netns", &h.ns,
            ]);
            ip_ok(&["-n", &ul.ns, "link", "set", &port, "master", "br0", "up"]);
            ip_ok(&[
                "-n",
                &h.ns,
                "addr",
                "add",
                &format!("{}/24", underlay_addr(i)),
                "dev",
                "eth0",
            ]);
            ip_ok(&["-n", &h.ns, "link", "set", "eth0", "up"]);
        }
        let at: Vec<(String, String)> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.ns.clone(), underlay_addr(i)))
            .collect();
        let etcd = EtcdCluster::start(&at);
        Hosts {
            hosts,
            etcd,
            _ul: ul,
        }
    }

    /// minirt on host `i` with the cluster store and its advertise address.
    pub fn minirt(&self, i: usize, args: &[&str]) -> Output {
        self.hosts[i]
            .command(args)
            .env("MINIRT_CLUSTER_STORE", self.etcd.store())
            .env("MINIRT_ADVERTISE_ADDR", underlay_addr(i))
            .env("MINIRT_OVERLAY_LINGER", "3")
            .output()
            .expect("run minirt")
    }

    pub fn ok(&self, i: usize, args: &[&str]) -> String {
        let o = self.minirt(i, args);
        assert!(
            o.status.success(),
            "host {i}: minirt {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            o.status.code(),
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// Must fail with one line and exit 125; the line.
    pub fn refused(&self, i: usize, args: &[&str]) -> String {
        let o = self.minirt(i, args);
        assert_eq!(
            o.status.code(),
            Some(125),
            "host {i}: minirt {args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        one_line(&stderr(&o))
    }

    pub fn agent_pid(&self, i: usize) -> Option<i32> {
        let h = &self.hosts[i];
        let pid: i32 = std::fs::read_to_string(h.run_root.join("overlay.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.contains("__overlay") && alive(pid)).then_some(pid)
    }

    /// The overlay keys left in etcd.
    pub fn keys(&self) -> Vec<String> {
        self.etcd.keys("/minirt/overlay/")
    }

    /// The container's address on its first network.
    /// A detached busybox named `name` on host `i`'s side of the overlay `ov`.
    pub fn sleeper(&self, i: usize, name: &str) {
        self.ok(
            i,
            &[
                "run", "-d", "--name", name, "--net", "ov", "busybox", "sleep", "600",
            ],
        );
    }

    pub fn ip_of(&self, i: usize, name: &str) -> String {
        self.ok(
            i,
            &[
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                name,
            ],
        )
        .trim()
        .to_string()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            let ids = self
                .minirt(i, &["ps", "-aq"])
                .stdout
                .split(|b| b.is_ascii_whitespace())
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids.iter().map(String::as_str));
                let _ = self.minirt(i, &args);
            }
            let _ = self.minirt(i, &["network", "prune", "-f"]);
        }
        for i in 0..self.hosts.len() {
            if !eventually(Duration::from_secs(5), || self.agent_pid(i).is_none()) {
                if let Some(pid) = self.agent_pid(i) {
                    // SAFETY: a signal to this test host's agent (its pid file, its cmdline).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
}

fn nft_tables(h: &TestHost) -> String {
    stdout(&h.in_ns("nft", &["list", "tables"]))
}

/// The acceptance path: create on host 1, run on hosts 1, 2, 3; ping
/// across hosts; a container on host 1 fetches a page from one on host 3;
/// each host's kernel has one VXLAN device with one route, neighbour and
/// FDB entry per remote block; after removing everything nothing is left.
#[test]
fn containers_on_three_hosts_talk_and_nothing_is_left() {
    let c = Hosts::new(3);
    let id = c.ok(0, &["network", "create", "-d", "overlay", "ov"]);
    assert_eq!(id.trim().len(), 64, "{id}");
    // Visible from every host (scope global) before any of them uses it.
    let ls = c.ok(1, &["network", "ls"]);
    assert!(ls.contains("ov") && ls.contains("overlay"), "{ls}");
    let v: serde_json::Value =
        serde_json::from_str(&c.ok(2, &["network", "inspect", "ov"])).unwrap();
    assert_eq!(v[0]["Driver"], "overlay");
    assert_eq!(v[0]["Scope"], "global");
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], "10.42.0.0/16");

    c.ok(
        2,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--net",
            "ov",
            "busybox",
            "sh",
            "-c",
            "mkdir -p /www && echo hello-overlay > /www/index.html && exec httpd -f -p 80 -h /www",
        ],
    );
    for i in 0..2 {
        c.sleeper(i, "c");
    }
    let web = c.ip_of(2, "web");
    let c1 = c.ip_of(1, "c");
    // A host's own view: the overlay's subnet, its block's gateway, its
    // containers with the overlay's prefix.
    let v: serde_json::Value =
        serde_json::from_str(&c.ok(2, &["network", "inspect", "ov"])).unwrap();
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], "10.42.0.0/16");
    let ctrs = v[0]["Containers"].as_object().unwrap();
    assert_eq!(ctrs.len(), 1);
    let a = ctrs.values().next().unwrap()["IPv4Address"]
        .as_str()
        .unwrap();
    assert_eq!(a, format!("{web}/16"));
    assert!(
        web.starts_with("10.42.") && c1.starts_with("10.42."),
        "{web} {c1}"
    );
    assert_ne!(
        web.rsplit_once('.').map(|x| x.0),
        c1.rsplit_once('.').map(|x| x.0),
        "one block per host"
    );

    // Ping across hosts, once the agents have programmed the peers.
    wait_for("host 1 -> host 2 ping", Duration::from_secs(20), || {
        c.minirt(0, &["exec", "c", "ping", "-c", "1", "-W", "1", &c1])
            .status
            .success()
    });
    let out = c.ok(1, &["exec", "c", "ping", "-c", "1", "-W", "2", &web]);
    assert!(out.contains("1 packets received"), "{out}");
    let mut page = String::new();
    wait_for(
        "the page on host 3 from host 1",
        Duration::from_secs(20),
        || {
            let o = c.minirt(0, &["exec", "c", "wget", "-qO-", &format!("http://{web}/")]);
            page = stdout(&o);
            o.status.success()
        },
    );
    assert_eq!(page, "hello-overlay\n");
    // The source address is the container's own (no masquerade inside).
    // Kernel side on host 1: one VXLAN device, learning off, MTU 1450,
    // two remote blocks.
    let h = &c.hosts[0];
    let vx: Vec<String> = links(h)
        .into_iter()
        .filter(|l| l.starts_with("mrx-"))
        .collect();
    assert_eq!(vx.len(), 1, "{:?}", links(h));
    let d = stdout(&h.in_ns("ip", &["-d", "link", "show", &vx[0]]));
    assert!(
        d.contains("nolearning") && d.contains("mtu 1450") && d.contains("dstport 4789"),
        "{d}"
    );
    let routes = stdout(&h.in_ns("ip", &["route", "show", "dev", &vx[0]]));
    assert_eq!(
        routes.lines().filter(|l| l.contains(" via ")).count(),
        2,
        "{routes}"
    );
    let fdb = stdout(&h.in_ns("bridge", &["fdb", "show", "dev", &vx[0]]));
    assert_eq!(
        fdb.lines()
            .filter(|l| l.contains("dst 198.51.100."))
            .count(),
        2,
        "{fdb}"
    );
    let tables = nft_tables(h);
    assert!(tables.contains("minirt_ovl_"), "{tables}");

    // network rm is refused while any host has endpoints, naming them.
    wait_for("endpoint records", Duration::from_secs(10), || {
        c.keys()
            .iter()
            .filter(|k| k.contains("/endpoints/"))
            .count()
            == 3
    });
    let o = c.minirt(0, &["network", "rm", "ov"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("198.51.100.1") && e.contains("198.51.100.2") && e.contains("198.51.100.3"),
        "{e}"
    );

    // Everything goes: containers, the network; then no device, table,
    // row or key is left.
    c.ok(0, &["rm", "-f", "c"]);
    c.ok(1, &["rm", "-f", "c"]);
    c.ok(2, &["rm", "-f", "web"]);
    wait_for("endpoint records gone", Duration::from_secs(15), || {
        !c.keys().iter().any(|k| k.contains("/endpoints/"))
    });
    c.ok(0, &["network", "rm", "ov"]);
    for (i, h) in c.hosts.iter().enumerate() {
        wait_for(&format!("host {i} clean"), Duration::from_secs(15), || {
            links(h) == ["eth0"] && !nft_tables(h).contains("minirt_ovl_")
        });
        assert!(!c.ok(i, &["network", "ls"]).contains("ov"));
        wait_for("the agent leaves", Duration::from_secs(10), || {
            c.agent_pid(i).is_none()
        });
    }
    assert_eq!(c.keys(), Vec::<String>::new());
}

/// Names across hosts (part 4): a container on host 1 fetches a page from
/// one on host 3 by name; the name goes when that container goes.
#[test]
fn names_resolve_across_hosts_and_go_with_their_container() {
    let c = Hosts::new(3);
    c.ok(
        0,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.77.0.0/16",
            "ov",
        ],
    );
    c.ok(
        2,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--net",
            "ov",
            "busybox",
            "sh",
            "-c",
            "mkdir -p /www && echo hello-by-name > /www/index.html && exec httpd -f -p 80 -h /www",
        ],
    );
    c.sleeper(0, "c");
    let web = c.ip_of(2, "web");
    let mut page = String::new();
    wait_for(
        "the page of web (host 3) by name from host 1",
        Duration::from_secs(20),
        || {
            let o = c.minirt(0, &["exec", "c", "wget", "-qO-", "http://web/"]);
            page = stdout(&o);
            o.status.success()
        },
    );
    assert_eq!(page, "hello-by-name\n");
    let o = c.ok(0, &["exec", "c", "nslookup", "web"]);
    assert!(o.contains(&web), "{o}");
    c.ok(2, &["rm", "-f", "web"]);
    wait_for("web forgotten on host 1", Duration::from_secs(20), || {
        let o = c.minirt(0, &["exec", "c", "nslookup", "web"]);
        !stdout(&o).contains(&web)
    });
}

/// 20 containers started at once on each host get unique addresses, and a
/// start on a host that holds its block sends no request to etcd.
#[test]
fn parallel_starts_get_unique_addresses_without_etcd_requests() {
    let c = Hosts::new(3);
    c.ok(
        0,
        &["network", "create", "-d", "overlay", "-o", "block=26", "ov"],
    );
    std::thread::scope(|s| {
        for i in 0..3 {
            for n in 0..20 {
                let c = &c;
                s.spawn(move || {
                    c.ok(
                        i,
                        &[
                            "run",
                            "-d",
                            "--name",
                            &format!("p{n}"),
                            "--net",
                            "ov",
                            "busybox",
                            "sleep",
                            "600",
                        ],
                    );
                });
            }
        }
    });
    let mut ips = vec![];
    for i in 0..3 {
        let v: serde_json::Value =
            serde_json::from_str(&c.ok(i, &["network", "inspect", "ov"])).unwrap();
        let ctrs = v[0]["Containers"].as_object().unwrap();
        assert_eq!(ctrs.len(), 20, "host {i}: {ctrs:?}");
        ips.extend(
            ctrs.values()
                .map(|e| e["IPv4Address"].as_str().unwrap().to_string()),
        );
    }
    let n = ips.len();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), n, "duplicate addresses: {ips:?}");
    // The fast path: the block is held, the start asks etcd nothing.
    let log = TempDir::new("etcd-requests");
    let file = format!("{}/n", log.path());
    let o = c.hosts[1]
        .command(&["run", "--rm", "--net", "ov", "busybox", "true"])
        .env("MINIRT_CLUSTER_STORE", c.etcd.store())
        .env("MINIRT_ADVERTISE_ADDR", underlay_addr(1))
        .env("MINIRT_ETCD_REQUESTS_LOG", &file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "0\n");
}

/// Bad input: one clear line each, and nothing left in etcd, the kernel or
/// the store. `network create` refusals exit 1 (Docker's daemon errors,
/// like the other drivers'); refusals of `run` exit 125.
#[test]
fn bad_input_is_refused_cleanly() {
    let c = Hosts::new(3);
    let h = &c.hosts[0];
    // No cluster store, no advertise address, an unreachable store.
    let (code, e) = h.fails(&["network", "create", "-d", "overlay", "x"]);
    assert_eq!(code, 1);
    assert!(one_line(&e).contains("needs a cluster store"), "{e}");
    let o = h
        .command(&["network", "create", "-d", "overlay", "x"])
        .env("MINIRT_CLUSTER_STORE", c.etcd.store())
        .output()
        .unwrap();
    assert!(
        one_line(&stderr(&o)).contains("--advertise-addr"),
        "{}",
        stderr(&o)
    );
    let o = h
        .command(&[
            "--cluster-store",
            "etcd://127.0.0.1:1",
            "--advertise-addr",
            "198.51.100.1",
            "network",
            "create",
            "-d",
            "overlay",
            "x",
        ])
        .output()
        .unwrap();
    assert!(
        one_line(&stderr(&o)).contains("cannot reach the cluster store etcd://127.0.0.1:1"),
        "{}",
        stderr(&o)
    );
    // Two hosts creating the same name at once: one wins.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            c.minirt(
                0,
                &["network", "create", "-d", "overlay", "-o", "vni=5000", "ov"],
            )
        });
        let b = s.spawn(|| {
            c.minirt(
                1,
                &[
                    "network",
                    "create",
                    "-d",
                    "overlay",
                    "--subnet",
                    "10.50.0.0/16",
                    "ov",
                ],
            )
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success() != b.status.success(), "{a:?} {b:?}");
    let lost = if a.status.success() { &b } else { &a };
    assert!(
        one_line(&stderr(lost)).contains("already exists"),
        "{}",
        stderr(lost)
    );
    let won_vni = a.status.success();
    // Overlapping subnet, VNI taken, block larger than the subnet.
    let overlap = if won_vni {
        "10.42.128.0/17"
    } else {
        "10.50.128.0/17"
    };
    for (args, want) in [
        (
            vec!["--subnet", overlap],
            "overlaps with overlay network ov",
        ),
        (
            vec!["--subnet", "10.60.0.0/20", "-o", "block=16"],
            "larger than the subnet",
        ),
        (
            vec!["--subnet", "10.61.0.0/16", "-o", "vni=bad"],
            "invalid vni",
        ),
    ] {
        let mut all = vec!["network", "create", "-d", "overlay"];
        all.extend(args.iter().copied());
        all.push("other");
        let o = c.minirt(2, &all);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(
            one_line(&stderr(&o)).contains(want),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    if won_vni {
        let o = c.minirt(
            2,
            &[
                "network",
                "create",
                "-d",
                "overlay",
                "--subnet",
                "10.62.0.0/16",
                "-o",
                "vni=5000",
                "other",
            ],
        );
        assert!(
            one_line(&stderr(&o)).contains("vni 5000 is taken by overlay network ov"),
            "{}",
            stderr(&o)
        );
    }
    // -p on an overlay network: not implemented, said so.
    let e = c.refused(
        0,
        &[
            "run", "--rm", "--net", "ov", "-p", "8080:80", "busybox", "true",
        ],
    );
    assert!(
        e.contains("not implemented: port publishing on overlay network ov"),
        "{e}"
    );
    // Only the winner's config and VNI are in etcd; no host made anything.
    let keys = c.keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[0].ends_with("/networks/ov"), "{keys:?}");
    for h in &c.hosts {
        assert_eq!(links(h), ["eth0"]);
        assert!(!nft_tables(h).contains("minirt_ovl_"));
    }
    c.ok(1, &["network", "rm", "ov"]);
    assert_eq!(c.keys(), Vec::<String>::new());
}

fn ping_ok(c: &Hosts, i: usize, ctr: &str, ip: &str) -> bool {
    c.minirt(i, &["exec", ctr, "ping", "-c", "1", "-W", "1", ip])
        .status
        .success()
}

/// Part 5: etcd compaction during the watch, the VXLAN device deleted and
/// the overlay table flushed by hand, one etcd member killed, then all of
/// them: in turn, and the overlay keeps working through each.
#[test]
fn the_overlay_survives_compaction_repairs_and_etcd_outages() {
    let mut c = Hosts::new(3);
    c.ok(0, &["network", "create", "-d", "overlay", "ov"]);
    c.ok(
        1,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.43.0.0/16",
            "ov2",
        ],
    );
    for i in 0..2 {
        c.sleeper(i, "c");
    }
    let c1 = c.ip_of(1, "c");
    wait_for("host 1 -> host 2", Duration::from_secs(20), || {
        ping_ok(&c, 0, "c", &c1)
    });

    // Compaction: the agents' watches start over from a fresh list, and a
    // block leased after it still reaches every host.
    let o = c.etcd.etcdctl(&["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rev = v[0]["Status"]["header"]["revision"].as_i64().unwrap();
    let o = c.etcd.etcdctl(&["compact", &rev.to_string(), "--physical"]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.sleeper(2, "c");
    let c2 = c.ip_of(2, "c");
    wait_for(
        "host 1 -> host 3 after compaction",
        Duration::from_secs(20),
        || ping_ok(&c, 0, "c", &c2),
    );

    // The VXLAN device deleted by hand, the overlay table flushed: restored
    // (by the agent's next round, or the next command that starts a
    // container), and the traffic flows again.
    let h = &c.hosts[0];
    let vx = links(h)
        .into_iter()
        .find(|l| l.starts_with("mrx-"))
        .unwrap();
    let table = format!("minirt_ovl_{}", nft_table(h).trim_start_matches("minirt_"));
    assert!(h.in_ns("ip", &["link", "del", &vx]).status.success());
    assert!(h
        .in_ns("nft", &["flush", "table", "inet", &table])
        .status
        .success());
    c.ok(0, &["run", "--rm", "--net", "ov", "busybox", "true"]);
    wait_for("device and table restored", Duration::from_secs(15), || {
        links(h).contains(&vx)
            && stdout(&h.in_ns("nft", &["list", "table", "inet", &table])).contains("dport 4789")
    });
    wait_for(
        "host 1 -> host 2 after repair",
        Duration::from_secs(20),
        || ping_ok(&c, 0, "c", &c1),
    );

    // One of three etcd members killed: no effect (host 3's own member).
    c.etcd.kill(2);
    c.sleeper(2, "d");
    let d2 = c.ip_of(2, "d");
    wait_for(
        "host 1 -> host 3, one member down",
        Duration::from_secs(20),
        || ping_ok(&c, 0, "c", &d2),
    );
    assert!(c.ok(2, &["network", "ls"]).contains("ov2"));

    // All members down: running containers keep talking, a new run on a
    // host that holds its block proceeds, one that would need a block
    // fails with one line.
    wait_for("host 2 -> host 3", Duration::from_secs(20), || {
        ping_ok(&c, 1, "c", &c2)
    });
    c.etcd.kill_all();
    assert!(ping_ok(&c, 0, "c", &c1));
    assert!(
        ping_ok(&c, 1, "c", &c2),
        "{}\n{}",
        std::fs::read_to_string(c.hosts[1].run_root.join("overlay.log")).unwrap_or_default(),
        stdout(&c.hosts[1].in_ns("ip", &["route"]))
    );
    c.sleeper(0, "e");
    let out = c.ok(0, &["exec", "e", "ping", "-c", "1", "-W", "2", &c1]);
    assert!(out.contains("1 packets received"), "{out}");
    let e = c.refused(2, &["run", "--rm", "--net", "ov2", "busybox", "true"]);
    assert!(e.contains("cannot reach the cluster store"), "{e}");

    // The cluster back: the agents renew their leases (or take new ones
    // and their blocks again, had they lapsed) and write what they could
    // not: the container started during the outage gets its name on the
    // other hosts.
    c.etcd.restart_all();
    let e_ip = c.ip_of(0, "e");
    wait_for(
        "the outage container's name on host 2",
        Duration::from_secs(30),
        || stdout(&c.minirt(1, &["exec", "c", "nslookup", "e"])).contains(&e_ip),
    );
    assert!(ping_ok(&c, 1, "c", &e_ip));
}

/// Part 5: a host that dies (its processes killed, its namespace deleted):
/// its endpoints, names, block and peer entries leave the others when its
/// lease ends (10 s; asserted within 30 s).
#[test]
fn a_dead_hosts_block_and_names_leave_the_others() {
    let mut c = Hosts::new(3);
    c.ok(0, &["network", "create", "-d", "overlay", "ov"]);
    c.sleeper(0, "c");
    c.sleeper(1, "c");
    c.sleeper(2, "doomed");
    let ip = c.ip_of(2, "doomed");
    wait_for(
        "the name of host 3's container on host 1",
        Duration::from_secs(20),
        || stdout(&c.minirt(0, &["exec", "c", "nslookup", "doomed"])).contains(&ip),
    );
    let vx = links(&c.hosts[0])
        .into_iter()
        .find(|l| l.starts_with("mrx-"))
        .unwrap();
    let routes = |c: &Hosts| stdout(&c.hosts[0].in_ns("ip", &["route", "show", "dev", &vx]));
    assert!(routes(&c).contains(" via "), "{}", routes(&c));
    // Host 3 dies: its agent, its containers and its etcd member killed by
    // pid, its namespace deleted.
    let dead = &c.hosts[2];
    let agent = c.agent_pid(2).expect("host 3's agent");
    // SAFETY: signals to processes of the dying test host (its pid file, its cgroups).
    unsafe { libc::kill(agent, libc::SIGKILL) };
    for cg in dead.cgroups() {
        for pid in std::fs::read_to_string(cg.join("cgroup.procs"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    c.etcd.kill(2);
    assert!(cmd("ip", &["netns", "del", &dead.ns]).status.success());
    wait_for("host 3's keys gone", Duration::from_secs(30), || {
        !c.keys()
            .iter()
            .any(|k| k.contains("198.51.100.3") || k.contains("blocks/ov/10.42.2."))
    });
    wait_for(
        "host 3's block and name gone on host 1",
        Duration::from_secs(10),
        || {
            !routes(&c).contains("10.42.2.0/24")
                && !stdout(&c.minirt(0, &["exec", "c", "nslookup", "doomed"])).contains(&ip)
        },
    );

    // Host 1's agent dies and its lease lapses: the next command starts a
    // new agent, which takes a new lease and the same block again, and
    // host 2 reaches host 1's container again.
    let c0 = c.ip_of(0, "c");
    let agent = c.agent_pid(0).expect("host 1's agent");
    // SAFETY: a signal to this test host's agent (its pid file, its cmdline).
    unsafe { libc::kill(agent, libc::SIGKILL) };
    wait_for("host 1's block lapsed", Duration::from_secs(30), || {
        !c.keys()
            .iter()
            .any(|k| k.ends_with("blocks/ov/10.42.0.0-24"))
    });
    c.ok(0, &["run", "--rm", "--net", "ov", "busybox", "true"]);
    wait_for(
        "host 1's block taken again",
        Duration::from_secs(15),
        || {
            c.keys()
                .iter()
                .any(|k| k.ends_with("blocks/ov/10.42.0.0-24"))
        },
    );
    wait_for("host 2 -> host 1 again", Duration::from_secs(20), || {
        ping_ok(&c, 1, "c", &c0)
    });
}
