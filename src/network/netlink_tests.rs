//! Tests of the netlink calls against the kernel, in network namespaces they
//! make (root; skipped otherwise).

use super::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A process alone in a fresh network namespace, killed on drop.
struct NsProc(Child);
impl NsProc {
    fn new() -> NsProc {
        let child = Command::new("unshare")
            .args(["-n", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let p = NsProc(child);
        let me = std::fs::read_link("/proc/self/ns/net").unwrap();
        let path = format!("/proc/{}/ns/net", p.pid());
        let start = Instant::now();
        // unshare(1) execs sleep after unsharing: wait until the netns differs.
        while std::fs::read_link(&path).ok().is_none_or(|l| l == me) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "netns never appeared"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        p
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}
impl Drop for NsProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Each test's "host" is a throwaway netns too (the socket is opened
/// there), so the machine's own devices are never touched.
fn host_ns() -> (NsProc, Netlink) {
    let host = NsProc::new();
    let nl = Netlink::open_in_pid(host.pid()).unwrap();
    (host, nl)
}

fn nsenter(pid: i32, args: &[&str]) -> std::process::Output {
    Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("--")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bridge_and_veth_into_a_netns_then_ping_then_delete() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (host, nl) = host_ns();
    let ctr = NsProc::new();
    let gw: Ipv4Net = "10.77.0.1/24".parse().unwrap();
    nl.create_bridge("mrb-test0", 1400, Some(gw)).unwrap();
    let br = nl.link("mrb-test0").unwrap().unwrap();
    assert_eq!(br.mtu, 1400);
    assert!(br.up);
    let mac = [0x02, 0x42, 10, 77, 0, 2];
    nl.create_veth(
        "mrv-test0",
        "mrb-test0",
        "eth0",
        Netns::Pid(ctr.pid()),
        mac,
        1400,
    )
    .unwrap();
    let hv = nl.link("mrv-test0").unwrap().unwrap();
    assert_eq!(hv.controller, Some(br.index));
    assert_eq!(hv.mtu, 1400);
    // The bridge kept its own MAC although a port joined (pinned).
    assert_eq!(nl.link("mrb-test0").unwrap().unwrap().mac, br.mac);
    // The peer is not in the host namespace.
    assert!(nl.link("eth0").unwrap().is_none());

    let cnl = Netlink::open_in_pid(ctr.pid()).unwrap();
    cnl.configure_container_if("eth0", "10.77.0.2/24".parse().unwrap(), Some(gw.addr()))
        .unwrap();
    let eth0 = cnl.link("eth0").unwrap().unwrap();
    assert_eq!(eth0.mac, mac.to_vec());
    assert_eq!(eth0.mtu, 1400);
    let routes = cnl.ipv4_routes().unwrap();
    assert!(routes.contains(&"0.0.0.0/0".parse().unwrap()), "{routes:?}");
    assert!(
        routes.contains(&"10.77.0.0/24".parse().unwrap()),
        "{routes:?}"
    );
    assert_eq!(cnl.default_route_mtu().unwrap(), Some(1400));

    let o = nsenter(
        ctr.pid(),
        &["busybox", "ping", "-c", "1", "-W", "5", "10.77.0.1"],
    );
    assert!(
        o.status.success(),
        "ping: {} {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let o = nsenter(
        host.pid(),
        &["busybox", "ping", "-c", "1", "-W", "5", "10.77.0.2"],
    );
    assert!(
        o.status.success(),
        "ping back: {}",
        String::from_utf8_lossy(&o.stdout)
    );

    // Deleting the host end removes the pair, then the bridge.
    assert!(nl.delete_link("mrv-test0").unwrap());
    assert!(cnl.link("eth0").unwrap().is_none());
    assert!(nl.delete_link("mrb-test0").unwrap());
    assert!(!nl.delete_link("mrb-test0").unwrap());
    let left: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(left, vec!["lo".to_string()]);
}

#[test]
fn failures_are_clear_and_leave_nothing() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (_host, nl) = host_ns();
    nl.create_bridge("mrb-test1", 0, Some("10.78.0.1/24".parse().unwrap()))
        .unwrap();
    let e = nl
        .create_bridge("mrb-test1", 0, Some("10.79.0.1/24".parse().unwrap()))
        .unwrap_err();
    assert_eq!(e.errno(), Some(libc::EEXIST), "{e}");
    assert!(e.to_string().contains("mrb-test1"), "{e}");
    // A veth onto a missing bridge fails before creating anything.
    let ctr = NsProc::new();
    let e = nl
        .create_veth(
            "mrv-x",
            "nosuchbr",
            "eth0",
            Netns::Pid(ctr.pid()),
            [2, 0, 0, 0, 0, 1],
            0,
        )
        .unwrap_err();
    assert!(matches!(e, NetlinkError::NoSuchLink(_)), "{e}");
    assert!(nl.link("mrv-x").unwrap().is_none());
    assert!(nl.delete_link("mrb-test1").unwrap());
    assert!(nl.ipv4_routes().unwrap().is_empty());
    assert_eq!(nl.default_route_mtu().unwrap(), None);
}

#[test]
fn entering_a_namespace_leaves_the_thread_where_it_was() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let own = || std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let before = own();
    let ctr = NsProc::new();
    let ns = PathBuf::from(format!("/proc/{}/ns/net", ctr.pid()));
    let cnl = Netlink::open_in(&ns).unwrap();
    set_sysctl_in(&ns, "net.ipv4.ip_forward", "1").unwrap();
    assert_eq!(own(), before);
    // The socket and the sysctl were the container's, not ours.
    assert_eq!(cnl.links().unwrap().len(), 1);
    let o = nsenter(ctr.pid(), &["cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1");
    // A namespace that cannot be entered: an error, and still at home.
    let Err(e) = Netlink::open_in(Path::new("/proc/self/ns/nonexistent")) else {
        panic!("entered a namespace that does not exist");
    };
    assert!(e.to_string().contains("nonexistent"), "{e}");
    assert_eq!(own(), before);
    // A refused request does not put the next one out of step: each
    // answer is matched to its own request.
    let e = cnl
        .add_default_route("10.99.0.1".parse().unwrap())
        .unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENETUNREACH), "{e}");
    cnl.set_lo_up().unwrap();
    assert!(cnl.link("lo").unwrap().unwrap().up);
    assert!(cnl.link("nosuch0").unwrap().is_none());
    assert!(!cnl.delete_link("nosuch0").unwrap());
}
