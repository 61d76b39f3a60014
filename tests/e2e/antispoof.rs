//! Anti-spoofing as an attacker inside a container sees it: container A
//! forges IP packets and a gratuitous ARP with container B's address. On a
//! network with the guard (the default) nothing forged reaches the host or
//! poisons its neighbour entry, while A's genuine traffic flows; on a network
//! created with `-o minirt.antispoof=false` the same attack succeeds (which
//! shows the attack is real). The guard's elements follow the containers,
//! its table follows the networks, and the heal check restores it.

use crate::common::*;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A static raw-frame sender: `spoof IFACE DSTMAC ACTION...` where ACTION is
/// `udp SRC DST PORT TEXT` (an IPv4/UDP datagram with any source address,
/// from the interface's own MAC) or `garp IP` (a gratuitous ARP request
/// claiming IP for the interface's MAC, to the broadcast address).
const SPOOF_C: &str = r#"
#include <arpa/inet.h>
#include <net/if.h>
#include <netpacket/packet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static unsigned short csum(const void *p, int n) {
    const unsigned short *w = p; unsigned long s = 0;
    for (; n > 1; n -= 2) s += *w++;
    if (n) s += *(const unsigned char *)w;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (unsigned short)~s;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: spoof IFACE DSTMAC ACTION...\n"); return 2; }
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) { perror("socket"); return 1; }
    struct ifreq ifr; memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) { perror("SIOCGIFHWADDR"); return 1; }
    unsigned char me[6], dst[6], bcast[6] = {255, 255, 255, 255, 255, 255};
    memcpy(me, ifr.ifr_hwaddr.sa_data, 6);
    if (sscanf(argv[2], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dst[0], &dst[1], &dst[2], &dst[3],
               &dst[4], &dst[5]) != 6) { fprintf(stderr, "bad MAC %s\n", argv[2]); return 2; }
    struct sockaddr_ll sll; memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET; sll.sll_ifindex = if_nametoindex(argv[1]); sll.sll_halen = 6;
    if (!sll.sll_ifindex) { perror("if_nametoindex"); return 1; }
    for (int i = 3; i < argc;) {
        unsigned char f[1514]; int n;
        memset(f, 0, sizeof f);
        memcpy(f + 6, me, 6);
        if (!strcmp(argv[i], "udp") && i + 4 < argc) {
            struct in_addr src, dip; inet_aton(argv[i + 1], &src); inet_aton(argv[i + 2], &dip);
            int port = atoi(argv[i + 3]); const char *text = argv[i + 4];
            int len = strlen(text);
            memcpy(f, dst, 6); f[12] = 0x08; f[13] = 0x00;
            unsigned char *ip = f + 14, *udp = ip + 20;
            ip[0] = 0x45; ip[2] = (20 + 8 + len) >> 8; ip[3] = (20 + 8 + len) & 255;
            ip[8] = 64; ip[9] = 17; memcpy(ip + 12, &src, 4); memcpy(ip + 16, &dip, 4);
            unsigned short c = csum(ip, 20); memcpy(ip + 10, &c, 2);
            udp[0] = 40000 >> 8; udp[1] = 40000 & 255; udp[2] = port >> 8; udp[3] = port & 255;
            udp[4] = (8 + len) >> 8; udp[5] = (8 + len) & 255;
            memcpy(udp + 8, text, len);
            n = 14 + 20 + 8 + len; i += 5;
        } else if (!strcmp(argv[i], "garp") && i + 1 < argc) {
            struct in_addr a; inet_aton(argv[i + 1], &a);
            memcpy(f, bcast, 6); f[12] = 0x08; f[13] = 0x06;
            unsigned char *arp = f + 14;
            arp[1] = 1; arp[2] = 0x08; arp[4] = 6; arp[5] = 4; arp[7] = 1; /* request */
            memcpy(arp + 8, me, 6); memcpy(arp + 14, &a, 4);
            memcpy(arp + 24, &a, 4);
            n = 14 + 28; i += 2;
            if (n < 60) n = 60;
        } else { fprintf(stderr, "bad action %s\n", argv[i]); return 2; }
        memcpy(sll.sll_addr, f, 6);
        if (sendto(fd, f, n, 0, (struct sockaddr *)&sll, sizeof sll) != n) { perror("sendto"); return 1; }
    }
    return 0;
}
"#;

/// Compiles the spoof program; the binary is `<dir>/spoof`.
fn build_spoof() -> TempDir {
    build_static_c("spoof", SPOOF_C)
}

/// A UDP socket in the test host's namespace that records every datagram;
/// stops and closes on drop.
struct Listener {
    got: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}
impl Listener {
    fn new(h: &TestHost, addr: &str) -> Listener {
        let got = Arc::new(Mutex::new(vec![]));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (path, addr) = (h.netns_path(), addr.to_string());
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let sock = UdpSocket::bind(&addr).expect("bind the listener");
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("read timeout");
            ready_tx.send(()).expect("ready");
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    g.lock().unwrap().push(text);
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("listener ready");
        Listener {
            got,
            stop,
            thread: Some(thread),
        }
    }
    fn got(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }
}
impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn table_name(h: &TestHost) -> String {
    format!("minirt_{}", h.cgroup_parent().trim_start_matches("minirt-"))
}

/// `nft list table bridge <ours>`, if the table exists.
fn guard_table(h: &TestHost) -> Option<String> {
    let o = h.in_ns("nft", &["list", "table", "bridge", &table_name(h)]);
    o.status.success().then(|| stdout(&o))
}

/// The host's neighbour entry (lladdr) for `ip`, if any.
fn neighbour(h: &TestHost, ip: &str) -> Option<String> {
    let o = cmd("ip", &["-n", &h.ns, "neigh", "show", ip]);
    let out = stdout(&o);
    let mut words = out.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_string)
}

fn bridge_of(h: &TestHost, net: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&h.ok(&["network", "inspect", net])).expect("inspect JSON");
    v[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .expect("bridge name")
        .to_string()
}

fn mac_of_bridge(h: &TestHost, bridge: &str) -> String {
    let o = h.in_ns("cat", &[&format!("/sys/class/net/{bridge}/address")]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_string()
}

/// The MAC minirt gives the container with address `ip` (02:42 + the address).
fn mac_of(ip: &str) -> String {
    let o: Vec<u8> = ip.split('.').map(|x| x.parse().unwrap()).collect();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// One network with attacker A (.10) and victim B (.11), the sender mounted in A.
struct Net {
    name: &'static str,
    gw: String,
    a: String,
    b: String,
    bridge: String,
}

fn setup(h: &TestHost, bin: &TempDir, name: &'static str, prefix: &str, opts: &[&str]) -> Net {
    let subnet = format!("{prefix}.0/24");
    let mut args = vec!["network", "create", "--subnet", &subnet];
    args.extend_from_slice(opts);
    args.push(name);
    h.ok(&args);
    let net = Net {
        name,
        gw: format!("{prefix}.1"),
        a: format!("{prefix}.10"),
        b: format!("{prefix}.11"),
        bridge: bridge_of(h, name),
    };
    let vol = format!("{}:/spoof:ro", bin.path());
    for (who, ip) in [("a", &net.a), ("b", &net.b)] {
        let cname = format!("{name}-{who}");
        h.ok(&[
            "run", "-d", "--name", &cname, "--net", name, "--ip", ip, "-v", &vol, "busybox",
            "sleep", "1000",
        ]);
    }
    net
}

fn exec(h: &TestHost, ctr: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["exec", ctr];
    all.extend_from_slice(args);
    h.minirt(&all)
}

/// The attack from A: a datagram with B's source address, a gratuitous ARP
/// claiming B's address, then a genuine datagram (its arrival shows the
/// path works and that what was sent before it had its chance to arrive).
fn attack(h: &TestHost, n: &Net, gw_mac: &str, tag: &str) {
    let ctr = format!("{}-a", n.name);
    let forged = format!("forged-{tag}");
    let genuine = format!("genuine-{tag}");
    let o = exec(
        h,
        &ctr,
        &[
            "/spoof/spoof",
            "eth0",
            gw_mac,
            "udp",
            &n.b,
            &n.gw,
            "9999",
            &forged,
            "garp",
            &n.b,
            "udp",
            &n.a,
            &n.gw,
            "9999",
            &genuine,
        ],
    );
    assert!(o.status.success(), "the sender failed: {}", stderr(&o));
}

#[test]
fn a_container_cannot_send_as_another_or_poison_the_host() {
    let h = TestHost::new();
    let bin = build_spoof();
    let guarded = setup(&h, &bin, "guarded", "10.91.0", &[]);
    let open = setup(
        &h,
        &bin,
        "open",
        "10.92.0",
        &["-o", "minirt.antispoof=false"],
    );

    // Genuine traffic works everywhere: A pings its gateway and B.
    for n in [&guarded, &open] {
        let a = format!("{}-a", n.name);
        for dst in [&n.gw, &n.b] {
            let o = exec(&h, &a, &["ping", "-c", "1", "-W", "5", dst]);
            assert!(
                o.status.success(),
                "{a} -> {dst}: {}{}",
                stdout(&o),
                stderr(&o)
            );
        }
        // The host learns B's MAC (and the entry is what the ARP attacks).
        let o = h.in_ns("busybox", &["ping", "-c", "1", "-W", "5", &n.b]);
        assert!(o.status.success(), "host -> {}: {}", n.b, stdout(&o));
        assert_eq!(
            neighbour(&h, &n.b),
            Some(mac_of(&n.b)),
            "host's entry for B"
        );
    }
    // Only the guarded network's containers have elements.
    let t = guard_table(&h).expect("the guard table exists");
    for ip in [&guarded.a, &guarded.b] {
        assert!(t.contains(&format!("{} . {ip}", mac_of(ip))), "{ip}:\n{t}");
    }
    assert!(!t.contains(&open.a) && !t.contains(&open.b), "{t}");

    // Without the guard the attack works: the forged datagram arrives and
    // the host's entry for B ends up with A's MAC.
    let l_open = Listener::new(&h, &format!("{}:9999", open.gw));
    let gw_mac = mac_of_bridge(&h, &open.bridge);
    wait_for(
        "the attack to succeed on the open network",
        Duration::from_secs(20),
        || {
            attack(&h, &open, &gw_mac, "open");
            let got = l_open.got();
            got.iter().any(|g| g == "forged-open")
                && got.iter().any(|g| g == "genuine-open")
                && neighbour(&h, &open.b) == Some(mac_of(&open.a))
        },
    );

    // With the guard: the genuine datagram arrives, the forged one does not
    // (it was sent first, on the same path), and the host keeps B's MAC.
    let l = Listener::new(&h, &format!("{}:9999", guarded.gw));
    let gw_mac = mac_of_bridge(&h, &guarded.bridge);
    attack(&h, &guarded, &gw_mac, "guarded");
    wait_for("the genuine datagram", Duration::from_secs(10), || {
        l.got().iter().any(|g| g == "genuine-guarded")
    });
    assert!(
        !l.got().iter().any(|g| g.starts_with("forged")),
        "a forged datagram reached the host: {:?}",
        l.got()
    );
    assert_eq!(
        neighbour(&h, &guarded.b),
        Some(mac_of(&guarded.b)),
        "the host's entry for B was poisoned"
    );
    // B is still reachable from the host and from A.
    let o = h.in_ns("busybox", &["ping", "-c", "1", "-W", "5", &guarded.b]);
    assert!(o.status.success(), "host -> B after the attack");
    let o = exec(&h, "guarded-a", &["ping", "-c", "1", "-W", "5", &guarded.b]);
    assert!(o.status.success(), "A -> B after the attack");
    drop(l);
    drop(l_open);

    // rm takes the container's elements, network rm of the last network the table.
    h.ok(&["rm", "-f", "guarded-a"]);
    let t = guard_table(&h).expect("the guard table exists");
    assert!(!t.contains(&guarded.a), "A's elements stayed:\n{t}");
    assert!(t.contains(&guarded.b), "B's elements went:\n{t}");
    h.ok(&["rm", "-f", "guarded-b", "open-a", "open-b"]);
    let t = guard_table(&h).expect("the table stays while networks exist");
    assert!(!t.contains("elements"), "elements left:\n{t}");
    h.ok(&["network", "rm", "guarded"]);
    assert!(guard_table(&h).is_some(), "table gone with a network left");
    h.ok(&["network", "rm", "open"]);
    assert_eq!(
        guard_table(&h),
        None,
        "the guard table outlived the networks"
    );
}

#[test]
fn the_guard_heals_and_follows_connect_and_disconnect() {
    let h = TestHost::new();
    // Without the firewall guardian (which restores the table at once on
    // its own, lan::a_flushed_ruleset_is_restored_without_any_command):
    // this is the next command's heal check.
    let ok = |args: &[&str]| -> String {
        let o = h
            .command(args)
            .env("MINIRT_NO_FWGUARD", "1")
            .output()
            .expect("run minirt");
        assert!(o.status.success(), "minirt {args:?}: {}", stderr(&o));
        stdout(&o)
    };
    ok(&["network", "create", "--subnet", "10.93.0.0/24", "one"]);
    ok(&["network", "create", "--subnet", "10.94.0.0/24", "two"]);
    ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "--net",
        "one",
        "--ip",
        "10.93.0.5",
        "busybox",
        "sleep",
        "1000",
    ]);
    let has = |needle: &str| guard_table(&h).is_some_and(|t| t.contains(needle));
    assert!(has("10.93.0.5"));

    // network connect guards the new interface; disconnect removes it.
    ok(&["network", "connect", "--ip", "10.94.0.5", "two", "c"]);
    assert!(has(&format!("{} . 10.94.0.5", mac_of("10.94.0.5"))));
    let o = h
        .command(&["exec", "c", "ping", "-c", "1", "-W", "5", "10.94.0.1"])
        .env("MINIRT_NO_FWGUARD", "1")
        .output()
        .expect("run minirt");
    assert!(o.status.success(), "c -> gateway of two: {}", stdout(&o));
    ok(&["network", "disconnect", "two", "c"]);
    assert!(!has("10.94.0.5") && has("10.93.0.5"));

    // Someone deletes the table, empties the guard chain, or adds an element
    // the store does not own: the next command puts back exactly the guard.
    let table = table_name(&h);
    let intact = guard_table(&h).expect("table");
    let damage = [
        format!("delete table bridge {table}"),
        format!("flush chain bridge {table} guard"),
        format!(
            "add element bridge {table} allow_ip {{ \"mrvintruder\" . 02:42:0a:5d:00:09 . 10.93.0.9 }}"
        ),
        format!("delete element bridge {table} ports {{ \"{}\" }}", {
            let t = guard_table(&h).unwrap();
            let start = t.find("\"mrv").expect("a port element") + 1;
            t[start..start + 15].to_string()
        }),
    ];
    for d in &damage {
        let o = h.in_ns("nft", &[d]);
        assert!(o.status.success(), "{d}: {}", stderr(&o));
        assert_ne!(guard_table(&h).as_deref(), Some(intact.as_str()), "{d}");
        ok(&["ps"]);
        let healed = guard_table(&h).expect("the table is back");
        assert_eq!(healed, intact, "after {d}");
    }
    // `network reload` rebuilds it too.
    let o = h.in_ns("nft", &[&format!("delete table bridge {table}")]);
    assert!(o.status.success());
    ok(&["network", "reload"]);
    assert!(has("10.93.0.5"));
}

#[test]
fn the_option_is_validated_and_shown() {
    let h = TestHost::new();
    let (code, err) = h.fails(&["network", "create", "-o", "minirt.antispoof=no", "bad"]);
    // Like every `network create` error (and Docker's CLI): exit 1.
    assert_eq!(code, 1);
    assert!(
        one_line(&err).contains("invalid minirt.antispoof \"no\": expected true or false"),
        "{err}"
    );
    h.ok(&["network", "create", "-o", "minirt.antispoof=false", "off"]);
    let v: serde_json::Value =
        serde_json::from_str(&h.ok(&["network", "inspect", "off"])).expect("inspect JSON");
    assert_eq!(v[0]["Options"]["minirt.antispoof"], "false");
}

/// `run` SIGKILLed right after the guard's elements went in, and after the
/// later steps: the next command removes them with the container.
#[cfg(feature = "fault-injection")]
#[test]
fn a_run_killed_after_the_guard_leaves_no_elements() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.95.0.0/24", "fnet"]);
    for point in ["after-antispoof", "after-veth", "after-network"] {
        for detach in [false, true] {
            let mut args = vec!["run"];
            if detach {
                args.push("-d");
            }
            args.extend([
                "--name",
                "victim",
                "--net",
                "fnet",
                "--ip",
                "10.95.0.7",
                "busybox",
                "sleep",
                "300",
            ]);
            let o = h
                .command(&args)
                .env("MINIRT_FAULT", point)
                .output()
                .expect("run minirt");
            assert!(!o.status.success(), "{point}: run should have died");
            // The first kill comes before any command healed since `network
            // create`: only the plugged endpoint can have made the table.
            if point == "after-antispoof" && !detach {
                assert!(guard_table(&h).is_some(), "{point}: never plugged");
            }
            assert_eq!(h.ok(&["ps", "-aq"]).trim(), "", "{point}: container left");
            let t = guard_table(&h).expect("the guard table stays with the network");
            assert!(
                !t.contains("elements"),
                "{point} (detach={detach}): elements left:\n{t}"
            );
            // The same address is guarded again for the next container.
            h.ok(&[
                "run",
                "-d",
                "--name",
                "victim",
                "--net",
                "fnet",
                "--ip",
                "10.95.0.7",
                "busybox",
                "sleep",
                "300",
            ]);
            assert!(guard_table(&h).is_some_and(|t| t.contains("10.95.0.7")));
            h.ok(&["rm", "-f", "victim"]);
        }
    }
    h.ok(&["network", "rm", "fnet"]);
    assert_eq!(guard_table(&h), None);
}
