//! What the LAN and a container can reach on the host (issue 10, parts 1, 2
//! and the flush window of part 1): a LAN neighbour that routes 127.0.0.1
//! and the container subnet to the test host, a container forging packets
//! to the host's 127.0.0.1, and `nft flush ruleset` while all of it runs.

use crate::common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Serves "hello-80" on 80 (published) and "hello-81" on 81 (not published).
pub const TWO_PORTS: &str = "mkdir -p /a /b && echo hello-80 > /a/index.html && \
    echo hello-81 > /b/index.html && httpd -p 81 -h /b && exec httpd -f -p 80 -h /a";

/// Rules of the instance's raw-prerouting guard chain (empty when absent).
pub fn guard_rules(h: &TestHost) -> Vec<String> {
    let o = h.in_ns("nft", &["list", "chain", "inet", &nft_table(h), "guard"]);
    if !o.status.success() {
        return vec![];
    }
    stdout(&o)
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("drop") || l.contains("accept") || l.contains("vmap"))
        .map(String::from)
        .collect()
}

#[test]
fn the_lan_reaches_only_ports_published_on_a_host_address() {
    let h = TestHost::new();
    let lan = Peer::neighbour(
        &h,
        "lan",
        "203.0.113.1/24",
        "203.0.113.2/24",
        &["127.0.0.1/32", "10.88.0.0/24"],
    );
    h.ok(&["network", "create", "--subnet", "10.88.0.0/24", "testbr"]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--net",
        "testbr",
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1:8081:80",
        "busybox",
        "sh",
        "-c",
        TWO_PORTS,
    ]);
    // Published on every address: the LAN gets it (so the path works).
    assert_eq!(lan.wait_get("http://203.0.113.1:8080/"), "hello-80\n");
    // Published on 127.0.0.1 only: the host gets it, the LAN must not.
    let o = h.in_ns(
        "curl",
        &["-sf", "--max-time", "5", "http://127.0.0.1:8081/"],
    );
    assert_eq!(stdout(&o), "hello-80\n", "the host's own 127.0.0.1 mapping");
    assert_eq!(
        lan.get("http://127.0.0.1:8081/"),
        None,
        "LAN -> 127.0.0.1 mapping"
    );
    // The container's address directly: neither the unpublished port nor
    // the published one (only the host's address is published).
    assert_eq!(
        lan.get("http://10.88.0.2:81/"),
        None,
        "LAN -> unpublished port"
    );
    assert_eq!(
        lan.get("http://10.88.0.2:80/"),
        None,
        "LAN -> container address"
    );
    // The host and the container's own network still reach it directly.
    let o = h.in_ns("curl", &["-sf", "--max-time", "5", "http://10.88.0.2:81/"]);
    assert_eq!(stdout(&o), "hello-81\n", "host -> container");
    let out = h.ok(&[
        "run",
        "--rm",
        "--net",
        "testbr",
        "busybox",
        "wget",
        "-qO-",
        "http://10.88.0.2:81/",
    ]);
    assert_eq!(out, "hello-81\n", "same network -> container");
    h.ok(&["rm", "-f", "web"]);
    h.ok(&["network", "rm", "testbr"]);
}

/// Sends UDP from inside the container's network namespace the way a
/// container with CAP_NET_RAW can (its loopback emptied, 127.0.0.1 routed via
/// the gateway): first to the host's 127.0.0.1:9999, then a marker to the
/// gateway's 9998 over the same path.
fn send_from_container(pid: i64, gateway: &str) -> std::process::Output {
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for _ in range(3):\n\
         \x20   s.sendto(b'forged', ('127.0.0.1', 9999))\n\
         s.sendto(b'marker', ('{gateway}', 9998))\n"
    );
    let ns = format!("--net=/proc/{pid}/ns/net");
    for args in [
        // Without its addresses lo no longer claims 127.0.0.0/8 locally.
        vec!["addr", "flush", "dev", "lo"],
        vec![
            "route",
            "replace",
            "127.0.0.1/32",
            "via",
            gateway,
            "dev",
            "eth0",
        ],
    ] {
        let o = Command::new("nsenter")
            .arg(&ns)
            .arg("--")
            .arg("ip")
            .args(&args)
            .output()
            .expect("nsenter ip");
        assert!(o.status.success(), "ip {args:?}: {}", stderr(&o));
    }
    Command::new("nsenter")
        .arg(&ns)
        .args(["--", "python3", "-c", &script])
        .output()
        .expect("nsenter python3")
}

#[test]
fn a_container_cannot_reach_host_services_on_loopback() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.89.0.0/24", "testbr"]);
    h.ok(&[
        "run", "-d", "--name", "victim", "--net", "testbr", "busybox", "sleep", "600",
    ]);
    // The host service on 127.0.0.1:9999, and a marker socket on every
    // address: each datagram is printed with the socket it arrived on.
    let out = h.root.parent().expect("test dir").join("udp.log");
    let log = std::fs::File::create(&out).expect("log");
    let listener = "import socket, select, sys\n\
        lo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); lo.bind(('127.0.0.1', 9999))\n\
        gw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); gw.bind(('0.0.0.0', 9998))\n\
        while True:\n\
        \x20   for s in select.select([lo, gw], [], [])[0]:\n\
        \x20       d, a = s.recvfrom(100)\n\
        \x20       print(('lo ' if s is lo else 'gw ') + d.decode(), flush=True)\n";
    let _srv = Proc(
        Command::new("nsenter")
            .arg(format!("--net={}", h.netns_path()))
            .args(["--", "python3", "-c", listener])
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 listener"),
    );
    let pid = {
        let v: serde_json::Value =
            serde_json::from_str(&h.ok(&["inspect", "victim"])).expect("inspect");
        v[0]["State"]["Pid"].as_i64().expect("pid")
    };
    let got = || std::fs::read_to_string(&out).unwrap_or_default();
    // The listener binds a moment after it starts: send until the marker
    // (sent after the forged packets, same path) arrives.
    wait_for("the marker datagram", Duration::from_secs(20), || {
        let o = send_from_container(pid, "10.89.0.1");
        assert!(o.status.success(), "sender: {}", stderr(&o));
        got().contains("gw marker")
    });
    assert!(
        !got().contains("lo forged"),
        "a container reached the host's 127.0.0.1: {}",
        got()
    );
    h.ok(&["rm", "-f", "victim"]);
    h.ok(&["network", "rm", "testbr"]);
}

#[test]
fn a_flushed_ruleset_is_restored_without_any_command() {
    let h = TestHost::new();
    let lan = Peer::neighbour(
        &h,
        "lan",
        "203.0.113.1/24",
        "203.0.113.2/24",
        &["127.0.0.1/32", "10.90.0.0/24"],
    );
    h.ok(&["network", "create", "--subnet", "10.90.0.0/24", "testbr"]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--net",
        "testbr",
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1:8081:80",
        "busybox",
        "sh",
        "-c",
        TWO_PORTS,
    ]);
    assert_eq!(lan.wait_get("http://203.0.113.1:8080/"), "hello-80\n");
    let guard = guard_rules(&h);
    assert!(
        guard
            .iter()
            .any(|r| r.contains("127.0.0.0/8") && r.ends_with("drop")),
        "{guard:?}"
    );

    // A firewall reload by someone else: everything goes...
    let o = h.in_ns("nft", &["flush", "ruleset"]);
    assert!(o.status.success(), "flush: {}", stderr(&o));
    // ...and comes back with no minirt command run meanwhile.
    wait_for("the guard to come back", Duration::from_secs(20), || {
        guard_rules(&h) == guard
    });
    assert_eq!(lan.wait_get("http://203.0.113.1:8080/"), "hello-80\n");
    assert_eq!(
        lan.get("http://127.0.0.1:8081/"),
        None,
        "LAN -> 127.0.0.1 mapping"
    );
    assert_eq!(
        lan.get("http://10.90.0.2:81/"),
        None,
        "LAN -> unpublished port"
    );

    // Tampering inside the table (a rule of the guard deleted, an element
    // added) is put right the same way, by structure.
    let table = nft_table(&h);
    let o = h.in_ns("nft", &["flush", "chain", "inet", &table, "guard"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_for("the guard to come back", Duration::from_secs(20), || {
        guard_rules(&h) == guard
    });
    let o = h.in_ns(
        "nft",
        &[
            "add",
            "element",
            "inet",
            &table,
            "pm_any_tcp",
            "{ 9090 : 10.90.0.99 . 90 }",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    h.ok(&["ps"]);
    let o = h.in_ns("nft", &["list", "map", "inet", &table, "pm_any_tcp"]);
    assert!(
        !stdout(&o).contains("9090"),
        "an element the store does not own stayed"
    );
    assert!(stdout(&o).contains("8080"), "{}", stdout(&o));

    // A stale network's chain and the bridge only minirt's table still
    // names (a `network rm` killed half-way) go at the next command.
    let o = cmd(
        "ip",
        &["-n", &h.ns, "link", "add", "mrb-stale", "type", "bridge"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for args in [
        vec!["add", "chain", "inet", &table, "nw_stale_out"],
        vec![
            "add",
            "element",
            "inet",
            &table,
            "fwd_iif",
            "{ \"mrb-stale\" : jump nw_stale_out }",
        ],
    ] {
        let o = h.in_ns("nft", &args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    h.ok(&["ps"]);
    let o = h.in_ns("nft", &["list", "table", "inet", &table]);
    assert!(!stdout(&o).contains("stale"), "{}", stdout(&o));
    let o = cmd("ip", &["-n", &h.ns, "link", "show", "mrb-stale"]);
    assert!(!o.status.success(), "the stale bridge stayed");
    assert_eq!(guard_rules(&h), guard);

    // The guardian reaped the children its heals forked (a socket closer
    // per heal): none lingers as a zombie.
    let (gpid, _, _) = guardian(&h).expect("a guardian");
    wait_for(
        "the guardian to reap its children",
        Duration::from_secs(20),
        || zombie_children(gpid).is_empty(),
    );

    // The guardian leaves with the last network.
    h.ok(&["rm", "-f", "web"]);
    h.ok(&["network", "rm", "testbr"]);
    let pid_file = h.run_root.join("fwguard.pid");
    wait_for("the guardian to leave", Duration::from_secs(20), || {
        !pid_file.exists()
    });
    assert!(
        h.in_ns("nft", &["list", "table", "inet", &table])
            .status
            .code()
            != Some(0)
    );
}

/// The pids in /proc for which `keep` holds.
fn pids_where(keep: impl Fn(i32) -> bool) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|p| keep(*p))
                .collect()
        })
        .unwrap_or_default()
}

/// The guardians of this test host: live processes running `__fwguard`
/// for its run root.
fn guardians(h: &TestHost) -> Vec<i32> {
    let run_root = h.run_root.to_string_lossy().to_string();
    pids_where(|p| {
        let c = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let c = String::from_utf8_lossy(&c);
        c.contains("__fwguard")
            && c.contains(&run_root)
            && stat_fields(p).is_some_and(|f| f[0] != "Z")
    })
}

/// Waits for the instance's guardian whose binary path ends with `bin`
/// ("" for any) and returns it.
fn wait_guardian(h: &TestHost, bin: &str) -> (i32, u64, String) {
    let mut g = None;
    wait_for("the guardian", Duration::from_secs(10), || {
        g = guardian(h).filter(|g| g.2.ends_with(bin));
        g.is_some()
    });
    g.unwrap_or_default()
}

/// One guardian per instance: the one a network brought holds its lock
/// after the process that took it has exited (the fork in between), so a
/// second `__fwguard` leaves at once instead of guarding beside it.
#[test]
fn a_second_guardian_leaves_at_once() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.93.1.0/24", "one"]);
    let (pid, _, _) = wait_guardian(&h, "");
    // As `ensure` starts one: no stdio to hold open.
    let second = h
        .command(&["__fwguard"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run __fwguard");
    assert!(second.success());
    let running = guardians(&h);
    h.ok(&["network", "rm", "one"]);
    assert_eq!(running, vec![pid], "guardians of one instance");
}

/// The fields of /proc/PID/stat after the command name (state first).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(String::from).collect())
}

/// Alive (not a zombie) and still the process that started at `start`.
fn alive(pid: i32, start: u64) -> bool {
    stat_fields(pid).is_some_and(|f| f[0] != "Z" && f[19].parse() == Ok(start))
}

/// The instance's guardian from its pid file: pid, start time, binary.
fn guardian(h: &TestHost) -> Option<(i32, u64, String)> {
    let text = std::fs::read_to_string(h.run_root.join("fwguard.pid")).ok()?;
    let mut it = text.trim_end().splitn(3, ' ');
    let pid = it.next()?.parse().ok()?;
    let start = it.next()?.parse().ok()?;
    let (pid, start) = (pid, start);
    alive(pid, start).then(|| (pid, start, it.next().unwrap_or("").to_string()))
}

fn zombie_children(pid: i32) -> Vec<i32> {
    pids_where(|c| stat_fields(c).is_some_and(|f| f[0] == "Z" && f[1] == pid.to_string()))
}

/// A bench or test that deletes its namespace but leaves its root (and so
/// its networks' rows) behind: the guardian is all that keeps the namespace,
/// and it leaves, taking the namespace (bridge included) with it.
#[test]
fn the_guardian_leaves_when_only_it_keeps_its_namespace() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.93.0.0/24", "kept"]);
    let (pid, start, _) = wait_guardian(&h, "");
    let o = cmd("ip", &["netns", "del", &h.ns]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Still there right after: the namespace's other users are gone, the
    // store (still naming the network) is not.
    assert!(h.root.join("minirt.db").exists() || h.root.exists());
    wait_for("the guardian to leave", Duration::from_secs(20), || {
        !alive(pid, start)
    });
}

/// An upgrade of the binary (a new file at the same path) makes the next
/// command replace a guardian that still runs the old one.
#[test]
fn an_upgraded_binary_replaces_the_running_guardian() {
    let bin_dir = TempDir::new("fwguard-bin");
    let h = TestHost::new();
    let bin = bin_dir.0.join("minirt");
    let install = || {
        let tmp = bin_dir.0.join("minirt.new");
        std::fs::copy(BIN, &tmp).expect("copy minirt");
        // A new file renamed over the old one, as package managers do.
        std::fs::rename(&tmp, &bin).expect("install minirt");
    };
    let with = |args: &[&str]| {
        let o = Command::new("nsenter")
            .arg(format!("--net={}", h.netns_path()))
            .arg("--")
            .arg(&bin)
            .arg("--root")
            .arg(&h.root)
            .arg("--run-root")
            .arg(&h.run_root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run minirt");
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    };
    install();
    with(&["network", "create", "--subnet", "10.94.0.0/24", "up"]);
    let (old_pid, old_start, old_id) = wait_guardian(&h, &bin.to_string_lossy());
    // The same binary: the guardian stays.
    with(&["ps"]);
    assert_eq!(guardian(&h).map(|g| g.0), Some(old_pid));
    install();
    // Any command's heal check (`ps` here) notices the new binary.
    with(&["ps"]);
    assert!(!alive(old_pid, old_start), "the old guardian still runs");
    let mut new = None;
    wait_for("the new guardian", Duration::from_secs(10), || {
        new = guardian(&h);
        new.is_some()
    });
    let (new_pid, _, new_id) = new.unwrap_or_default();
    assert_ne!(new_pid, old_pid);
    assert_ne!(new_id, old_id, "the pid file names the new binary");
    // And it guards: a flushed table comes back without a command.
    let table = nft_table(&h);
    let o = h.in_ns("nft", &["flush", "ruleset"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_for("the table to come back", Duration::from_secs(20), || {
        h.in_ns("nft", &["list", "table", "inet", &table])
            .status
            .success()
    });
}
