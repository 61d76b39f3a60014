//! The run-path contract against the real kernel, with stand-in
//! containers (`unshare -n sleep`): everything happens in a throwaway
//! network namespace joined by the test's own thread.
use super::*;
use crate::network::manage::{self, CreateRequest};
use crate::network::netlink::Netlink;
use crate::network::{ipam, NetworkError, NetworkRequest};
use crate::store::networks::{self as rows, NetworkRow};
use crate::store::Store;
use crate::Instance;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A stand-in container: a process alone in a new netns.
fn container_proc() -> Proc {
    let p = Proc(
        Command::new("unshare")
            .args(["-n", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare"),
    );
    let me = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let path = format!("/proc/{}/ns/net", p.0.id());
    wait_for("the container netns", || {
        std::fs::read_link(&path).ok().is_some_and(|l| l != me)
    });
    p
}

fn in_ctr(p: &Proc, args: &[&str]) -> std::process::Output {
    Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", p.0.id()))
        .arg("--")
        .args(args)
        .output()
        .unwrap()
}

pub(super) fn insert_container(
    store: &mut Store,
    inst: &Instance,
    id: &str,
    name: &str,
    req: &NetworkRequest,
    pid: i32,
) -> Result<(), NetworkError> {
    let inst_req = req.clone();
    let config = serde_json::json!({ "network": { "mode": req.mode } }).to_string();
    store.write(|tx| {
        tx.execute(
            "INSERT OR IGNORE INTO images (id, config, layers, created) VALUES ('img', '{}', '[]', 0)",
            [],
        )
        .map_err(crate::store::StoreError::from)?;
        tx.execute(
            "INSERT INTO containers (id, name, image, image_id, command, config, status, pid, created) \
             VALUES (?1, ?2, 'busybox', 'img', '[]', ?3, 'running', ?4, 0)",
            rusqlite::params![id, name, config, pid],
        )
        .map_err(crate::store::StoreError::from)?;
        allocate(tx, inst, id, &inst_req)
    })
}

fn links(nl: &Netlink) -> Vec<String> {
    nl.links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .filter(|n| n != "lo")
        .collect()
}

/// A store with network `n` on `subnet` (a row only, no devices).
pub(super) fn store_with(subnet: &str) -> (tempfile::TempDir, Instance, Store) {
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::new(&dir.path().join("root"), &dir.path().join("run")).unwrap();
    let store = Store::open_in_memory().unwrap();
    let net: ipnet::Ipv4Net = subnet.parse().unwrap();
    let row = NetworkRow {
        id: "n1".repeat(32),
        name: "n".into(),
        driver: "bridge".into(),
        subnet: subnet.into(),
        net_start: u32::from(net.network()),
        net_end: u32::from(net.broadcast()),
        gateway: ipam::default_gateway(net).to_string(),
        device: "mrb-test".into(),
        internal: false,
        mtu: 1500,
        options: Default::default(),
        created: 0,
        subnet6: String::new(),
        gateway6: String::new(),
    };
    rows::insert_network(store.conn(), &row).unwrap();
    (dir, inst, store)
}

pub(super) fn on_n(publish: &[&str], ip: Option<&str>) -> NetworkRequest {
    NetworkRequest {
        mode: "n".into(),
        ip: ip.map(String::from),
        publish: publish.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn allocate_attach_ports_connect_detach_on_the_real_kernel() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // Own thread, own netns: nft, sysctls and netlink all act there.
    std::thread::spawn(scenario).join().expect("scenario");
}

fn scenario() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let host = Netlink::open().unwrap();
    host.set_up("lo").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::new(&dir.path().join("root"), &dir.path().join("run")).unwrap();
    let mut store = Store::open(&inst.db_path()).unwrap();
    let create = |name: &str, subnet: &str, store: &mut Store| {
        let req = CreateRequest {
            name: name.into(),
            driver: "bridge".into(),
            subnet: Some(subnet.into()),
            ..Default::default()
        };
        manage::create(&inst, store, &req).unwrap()
    };
    let testbr = create("testbr", "10.88.0.0/24", &mut store);
    let other = create("other", "10.89.0.0/24", &mut store);

    let (p1, p2) = (container_proc(), container_proc());
    let web = NetworkRequest {
        mode: "testbr".into(),
        publish: vec!["8080:80".into(), "90/udp".into()],
        ..Default::default()
    };
    insert_container(&mut store, &inst, "c1", "web", &web, p1.0.id() as i32).unwrap();
    let client = NetworkRequest {
        mode: "testbr".into(),
        ip: Some("10.88.0.9".into()),
        ..Default::default()
    };
    insert_container(&mut store, &inst, "c2", "client", &client, p2.0.id() as i32).unwrap();

    // Clear refusals, nothing recorded for them.
    let refused = |store: &mut Store, req: NetworkRequest| {
        insert_container(store, &inst, "c3", "dup", &req, 1).unwrap_err()
    };
    let e = refused(
        &mut store,
        NetworkRequest {
            mode: "testbr".into(),
            publish: vec!["127.0.0.1:8080:81".into()],
            ..Default::default()
        },
    );
    assert_eq!(
        e.to_string(),
        "Bind for 127.0.0.1:8080 failed: port is already allocated"
    );
    let e = refused(
        &mut store,
        NetworkRequest {
            mode: "testbr".into(),
            ip: Some("10.88.0.9".into()),
            ..Default::default()
        },
    );
    assert!(e.to_string().contains("already in use"), "{e}");
    let e = refused(
        &mut store,
        NetworkRequest {
            mode: "testbr".into(),
            ip: Some("10.89.0.5".into()),
            ..Default::default()
        },
    );
    assert!(e.to_string().contains("not inside subnet"), "{e}");
    let e = refused(
        &mut store,
        NetworkRequest {
            mode: "nosuch".into(),
            ..Default::default()
        },
    );
    assert_eq!(e.to_string(), "network nosuch not found");
    assert!(rows::find_container(store.conn(), "dup").unwrap().is_none());

    attach(&inst, &mut store, "c1", p1.0.id() as i32).unwrap();
    attach(&inst, &mut store, "c2", p2.0.id() as i32).unwrap();
    let nets = container_networks(&store, "c1").unwrap();
    assert_eq!(nets.len(), 1);
    assert_eq!(nets[0].ps_label(), "testbr=10.88.0.2");
    assert_eq!(nets[0].gateway, Ipv4Addr::new(10, 88, 0, 1));
    assert_eq!(nets[0].mac, "02:42:0a:58:00:02");
    assert_eq!(nets[0].prefix_len, 24);
    let ports = container_ports(&store, "c1").unwrap();
    assert_eq!(ports, ["0.0.0.0:8080->80/tcp", "0.0.0.0:32768->90/udp"]);
    let o = in_ctr(&p1, &["ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("10.88.0.2/24"));
    let o = in_ctr(&p1, &["ip", "route"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("default via 10.88.0.1 dev eth0"));

    // Container to container, and a published port from the host's
    // 127.0.0.1 and from the other container via the host (hairpin).
    let o = in_ctr(&p2, &["busybox", "ping", "-c", "1", "-W", "5", "10.88.0.2"]);
    assert!(
        o.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from c1\n").unwrap();
    let _httpd = Proc(
        Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", p1.0.id()))
            .args(["--", "busybox", "httpd", "-f", "-p", "80", "-h"])
            .arg(&www)
            .spawn()
            .unwrap(),
    );
    let fetch = |args: &[&str]| {
        let mut ok = String::new();
        wait_for("the page", || {
            let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
            ok = String::from_utf8_lossy(&o.stdout).into_owned();
            o.status.success()
        });
        ok
    };
    assert_eq!(
        fetch(&["curl", "-sf", "--max-time", "2", "http://127.0.0.1:8080/"]),
        "hello from c1\n"
    );
    let via_host = format!("--net=/proc/{}/ns/net", p2.0.id());
    assert_eq!(
        fetch(&[
            "nsenter",
            &via_host,
            "--",
            "curl",
            "-sf",
            "--max-time",
            "2",
            "http://10.88.0.1:8080/"
        ]),
        "hello from c1\n"
    );

    // An attach that fails midway (the container already has an eth0)
    // undoes what it made: the host keeps exactly the devices it had.
    let p3 = container_proc();
    let o = in_ctr(
        &p3,
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let req3 = NetworkRequest {
        mode: "testbr".into(),
        publish: vec!["7070:70".into()],
        ..Default::default()
    };
    insert_container(&mut store, &inst, "c3", "broken", &req3, p3.0.id() as i32).unwrap();
    let before = links(&host);
    let e = attach(&inst, &mut store, "c3", p3.0.id() as i32).unwrap_err();
    assert!(e.to_string().contains("cannot create veth pair"), "{e}");
    assert_eq!(links(&host), before);
    detach(&inst, &mut store, "c3").unwrap();
    assert!(container_ports(&store, "c3").unwrap().is_empty());

    // connect / disconnect on the running container.
    let e = manage::remove(&inst, &mut store, "testbr").unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot remove network testbr: in use by containers web, client"
    );
    let ep = connect(&inst, &mut store, "other", "web", None, None, &[]).unwrap();
    assert_eq!(
        (ep.ifname.as_str(), ep.ip),
        ("eth1", Ipv4Addr::new(10, 89, 0, 2))
    );
    let e = connect(&inst, &mut store, "other", "web", None, None, &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "container web is already connected to network other"
    );
    let o = in_ctr(&p1, &["ip", "route"]);
    let routes = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        routes.contains("default via 10.88.0.1 dev eth0")
            && routes.contains("10.89.0.0/24 dev eth1"),
        "{routes}"
    );
    assert_eq!(routes.matches("default").count(), 1, "{routes}");
    disconnect(&inst, &mut store, "other", "web", false).unwrap();
    let o = in_ctr(&p1, &["ip", "link", "show", "eth1"]);
    assert!(!o.status.success(), "eth1 still there");
    let e = disconnect(&inst, &mut store, "other", "web", false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "container web is not connected to network other"
    );

    // Teardown releases everything; twice is fine.
    detach(&inst, &mut store, "c1").unwrap();
    detach(&inst, &mut store, "c2").unwrap();
    detach(&inst, &mut store, "c1").unwrap();
    assert!(rows::all_port_bindings(store.conn()).unwrap().is_empty());
    assert!(rows::used_ips(store.conn(), &testbr.id).unwrap().is_empty());
    assert_eq!(
        links(&host),
        vec![testbr.device.clone(), other.device.clone()]
    );
    let table = crate::network::nft::list_table(&inst.nft_table()).unwrap();
    assert!(
        !table.contains("10.88.0.2 . 80"),
        "port mapping left: {table}"
    );
    manage::prune(&inst, &mut store).unwrap();
    assert!(links(&host).is_empty(), "{:?}", links(&host));
    assert!(crate::network::nft::list_table(&inst.nft_table()).is_err());
}
