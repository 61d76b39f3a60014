//! Load and faults: many minirt processes at once, crashes mid-way, and the
//! state staying consistent through all of it.

use crate::common::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Starts `n` copies of minirt at once; returns their outputs.
fn at_once(
    h: &TestHost,
    n: usize,
    args: impl Fn(usize) -> Vec<String>,
) -> Vec<std::process::Output> {
    let children: Vec<_> = (0..n)
        .map(|i| {
            let a = args(i);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            h.command(&a)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn minirt")
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect()
}

#[test]
fn thirty_concurrent_runs_get_distinct_reachable_addresses_and_rm_leaves_nothing() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.89.0.0/24", "par"]);
    let start = Instant::now();
    let outs = at_once(&h, 30, |i| {
        [
            "run",
            "-d",
            "--name",
            &format!("c{i}"),
            "--net",
            "par",
            "busybox",
            "sleep",
            "300",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    });
    let elapsed = start.elapsed();
    for o in &outs {
        assert!(o.status.success(), "a concurrent run failed: {}", stderr(o));
    }
    eprintln!("figure: 30 concurrent run -d took {elapsed:?}");
    let ps = h.ok(&["ps", "--format", "json"]);
    let mut ips = HashSet::new();
    for line in ps.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let net = v["NetworkAddresses"].as_str().unwrap().to_string();
        let ip = net.strip_prefix("par=").expect("on par").to_string();
        assert!(ips.insert(ip.clone()), "duplicate address {ip}");
    }
    assert_eq!(ips.len(), 30);
    for ip in &ips {
        let o = h.in_ns("busybox", &["ping", "-c1", "-W2", ip]);
        assert!(o.status.success(), "{ip} unreachable: {}", stdout(&o));
    }
    let ids: Vec<String> = (0..30).map(|i| format!("c{i}")).collect();
    let outs = at_once(&h, 30, |i| vec!["rm".into(), "-f".into(), ids[i].clone()]);
    for o in &outs {
        assert!(o.status.success(), "a concurrent rm failed: {}", stderr(o));
    }
    assert_eq!(h.ok(&["ps", "-aq"]).trim(), "");
    h.ok(&["network", "rm", "par"]);
    // A dead container's veths go with its namespace, a moment after rm.
    wait_for("devices to go", Duration::from_secs(10), || {
        links(&h).is_empty()
    });
    assert!(h.mounts().is_empty() && h.cgroups().is_empty());
}

#[test]
fn twenty_concurrent_network_creates_get_disjoint_subnets() {
    let h = TestHost::new();
    let outs = at_once(&h, 20, |i| {
        vec!["network".into(), "create".into(), format!("n{i}")]
    });
    for o in &outs {
        assert!(
            o.status.success(),
            "a concurrent create failed: {}",
            stderr(o)
        );
    }
    let ls = h.ok(&["network", "ls", "--format", "json"]);
    let mut nets: Vec<ipnet::Ipv4Net> = vec![];
    for line in ls.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["Name"] == "bridge" {
            continue;
        }
        let n: ipnet::Ipv4Net = v["Subnet"].as_str().unwrap().parse().unwrap();
        for m in &nets {
            assert!(
                !m.contains(&n.network()) && !n.contains(&m.network()),
                "{m} overlaps {n}"
            );
        }
        nets.push(n);
    }
    assert_eq!(nets.len(), 20, "{ls}");
    let outs = at_once(&h, 20, |i| {
        vec!["network".into(), "rm".into(), format!("n{i}")]
    });
    for o in &outs {
        assert!(
            o.status.success(),
            "a concurrent network rm failed: {}",
            stderr(o)
        );
    }
    // A dead container's veths go with its namespace, a moment after rm.
    wait_for("devices to go", Duration::from_secs(10), || {
        links(&h).is_empty()
    });
}

#[test]
fn two_roots_side_by_side_under_load() {
    let a = TestHost::new();
    let b = TestHost::new();
    let run = |h: &TestHost| {
        at_once(h, 10, |i| {
            [
                "run",
                "-d",
                "--name",
                &format!("x{i}"),
                "--net",
                "none",
                "busybox",
                "sleep",
                "300",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        })
    };
    let (oa, ob) = std::thread::scope(|s| {
        let ta = s.spawn(|| run(&a));
        let tb = s.spawn(|| run(&b));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    for o in oa.iter().chain(ob.iter()) {
        assert!(o.status.success(), "{}", stderr(o));
    }
    assert_eq!(a.ok(&["ps", "-q"]).lines().count(), 10);
    assert_eq!(b.ok(&["ps", "-q"]).lines().count(), 10);
    let ids: Vec<String> = a
        .ok(&["ps", "-aq"])
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    a.ok(&args);
    assert_eq!(a.ok(&["ps", "-aq"]).trim(), "");
    assert_eq!(
        b.ok(&["ps", "-q"]).lines().count(),
        10,
        "rm in one root touched the other"
    );
    let _ = Duration::ZERO;
}

/// `run` SIGKILLed after each step of the run path: the next minirt command
/// heals the state, nothing is left, the name is reusable.
#[cfg(feature = "fault-injection")]
#[test]
fn a_run_killed_after_any_step_leaves_nothing_behind() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.90.0.0/24", "fnet"]);
    let bridge_only = links(&h);
    let points = [
        "after-create",
        "after-rootfs",
        "after-cgroup",
        "after-clone",
        "after-veth",
        "after-rules",
        "after-network",
    ];
    for detach in [false, true] {
        for point in points {
            let mut args = vec!["run"];
            if detach {
                args.push("-d");
            }
            args.extend([
                "--name", "victim", "--net", "fnet", "-p", "8080:80", "busybox", "sleep", "300",
            ]);
            let o = h
                .command(&args)
                .env("MINIRT_FAULT", point)
                .output()
                .unwrap();
            assert!(!o.status.success(), "{point}: run should have died");
            // Any command heals; ps -a is the one a user would type.
            let left = h.ok(&["ps", "-aq"]);
            assert_eq!(left.trim(), "", "{point} (detach={detach}): container left");
            assert!(
                h.mounts().is_empty(),
                "{point}: mounts left {:?}",
                h.mounts()
            );
            wait_for("cgroups to go", Duration::from_secs(10), || {
                h.cgroups().is_empty()
            });
            wait_for(
                "the container's veth to go",
                Duration::from_secs(10),
                || links(&h) == bridge_only,
            );
            let table = stdout(&h.in_ns("nft", &["list", "ruleset"]));
            assert!(
                !table.contains("8080"),
                "{point}: port mapping left:\n{table}"
            );
            let inspect = h.ok(&["network", "inspect", "fnet"]);
            let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
            assert_eq!(
                v[0]["Containers"].as_object().map(|m| m.len()),
                Some(0),
                "{point}: endpoint left"
            );
            // The name, the address and the port are free again.
            let out = h.ok(&[
                "run", "--rm", "--name", "victim", "--net", "fnet", "-p", "8080:80", "busybox",
                "echo", "ok",
            ]);
            assert_eq!(out, "ok\n", "{point}");
        }
    }
    h.ok(&["network", "rm", "fnet"]);
    wait_for("devices to go", Duration::from_secs(10), || {
        links(&h).is_empty()
    });
}

/// A SIGKILLed monitor: the container stays listed and running; stop and rm
/// still work and release everything.
#[test]
fn a_killed_monitor_leaves_a_manageable_container() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.91.0.0/24", "mnet"]);
    h.ok(&[
        "run", "-d", "--name", "m", "--net", "mnet", "-p", "8081:80", "busybox", "sleep", "300",
    ]);
    let monitor = monitor_pid(&h, "m");
    // SAFETY: kill(2) on the monitor pid minirt's own state names; it is ours.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    wait_for("monitor to die", Duration::from_secs(10), || {
        !alive(monitor)
    });
    let ps = h.ok(&["ps"]);
    assert!(
        ps.contains(" m ") || ps.trim_end().ends_with(" m") || ps.contains("   m   "),
        "{ps}"
    );
    let v: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "m"])).unwrap();
    assert_eq!(v[0]["State"]["Running"], true);
    h.ok(&["stop", "-t", "1", "m"]);
    let v: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "m"])).unwrap();
    assert_eq!(v[0]["State"]["Status"], "exited");
    assert!(h.cgroups().is_empty() && h.mounts().is_empty());
    let table = stdout(&h.in_ns("nft", &["list", "ruleset"]));
    assert!(!table.contains("8081"), "port mapping left:\n{table}");
    h.ok(&["rm", "m"]);
    h.ok(&["network", "rm", "mnet"]);
    wait_for("devices to go", Duration::from_secs(10), || {
        links(&h).is_empty()
    });
}

/// The processes `run -d` forks on its way (one per nftables change, to close
/// the nfnetlink socket off the start path) exit soon; the resident monitor
/// reaps them, so a running container leaves no zombies: its monitor's only
/// child is the container's init.
#[test]
fn a_detached_containers_monitor_keeps_no_zombie_children() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.91.1.0/24", "znet"]);
    h.ok(&[
        "run", "-d", "--name", "z", "--net", "znet", "-p", "8082:80", "busybox", "sleep", "300",
    ]);
    let monitor = monitor_pid(&h, "z");
    let v: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "z"])).unwrap();
    let init = v[0]["State"]["Pid"].as_i64().unwrap().to_string();
    let children = || {
        std::fs::read_to_string(format!("/proc/{monitor}/task/{monitor}/children"))
            .unwrap_or_default()
    };
    let done = eventually(Duration::from_secs(10), || children().trim() == init);
    let left = children();
    h.ok(&["rm", "-f", "z"]);
    h.ok(&["network", "rm", "znet"]);
    assert!(
        done,
        "the monitor's children: {left:?}, its container's init: {init}"
    );
}

/// The OFD locks on `monitors.lock` in /proc/locks: each one's start
/// offset (the byte encodes the holder's pid and start time).
fn monitor_locks(h: &TestHost) -> Vec<u64> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(h.run_root.join("monitors.lock")) else {
        return vec![];
    };
    let ino = format!(":{}", meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    locks
        .lines()
        .filter(|l| l.contains("OFDLCK"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // "1: OFDLCK ADVISORY WRITE -1 MAJ:MIN:INO START END"
            let at = f.iter().position(|x| x.ends_with(&ino))?;
            f.get(at + 1)?.parse().ok()
        })
        .collect()
}

/// A detached container's monitor shows it lives by a lock on the byte of
/// its pid and start time (what `ps` asks instead of reading /proc); the
/// lock goes with the process, and `ps` then tells a live init from a
/// dead one by /proc, as before.
#[test]
fn a_monitors_lock_lives_and_dies_with_it() {
    let h = TestHost::new();
    h.ok(&[
        "run", "-d", "--name", "l", "--net", "none", "busybox", "sleep", "300",
    ]);
    let monitor = monitor_pid(&h, "l");
    let stat = std::fs::read_to_string(format!("/proc/{monitor}/stat")).unwrap();
    let rest = stat.rsplit(')').next().unwrap();
    let start: u64 = rest.split_whitespace().nth(19).unwrap().parse().unwrap();
    let byte = start << 22 | monitor as u64;
    // The monitor locks once it waits, which may be after `run -d` returns.
    let seen = eventually(Duration::from_secs(10), || {
        monitor_locks(&h).contains(&byte)
    });
    let held = monitor_locks(&h);
    assert!(seen, "monitor {monitor} (start {start}): locks {held:?}");
    // SAFETY: kill(2) on the monitor pid minirt's own state names; it is ours.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    wait_for("monitor to die", Duration::from_secs(10), || {
        !alive(monitor)
    });
    assert!(
        !monitor_locks(&h).contains(&byte),
        "the lock outlived its monitor"
    );
    let v: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "l"])).unwrap();
    let init = v[0]["State"]["Pid"].as_i64().unwrap() as i32;
    assert!(h.ok(&["ps"]).contains("Up "), "the init lives: running");
    // SAFETY: the container's init, named by minirt's own state; ours.
    unsafe { libc::kill(init, libc::SIGKILL) };
    wait_for("init to die", Duration::from_secs(10), || !alive(init));
    let ps = h.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (255)"), "{ps}");
    h.ok(&["rm", "l"]);
    assert!(h.cgroups().is_empty() && h.mounts().is_empty());
}

/// The monitor of a container: the parent process of its init.
fn monitor_pid(h: &TestHost, name: &str) -> i32 {
    let v: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", name])).unwrap();
    let pid = v[0]["State"]["Pid"].as_i64().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit(')').next().unwrap();
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// After a reboot: processes gone, --run-root wiped, bridges and rules gone.
/// `ps -a` shows the containers exited; the next run re-creates what it needs.
#[test]
fn a_wiped_run_root_and_network_heal_on_the_next_command() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.92.0.0/24", "rnet"]);
    h.ok(&[
        "run", "-d", "--name", "r", "--net", "rnet", "-p", "8082:80", "busybox", "sleep", "300",
    ]);
    let monitor = monitor_pid(&h, "r");
    // "Reboot": kill the monitor, the container and the DNS responder, drop
    // mounts, run-root, links and the nftables table.
    // SAFETY: a signal to a process of this test host (ours, found in its cgroups or pid files).
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    let dns = std::fs::read_to_string(h.run_root.join("dns.pid")).unwrap_or_default();
    if let Ok(pid) = dns.trim().parse::<i32>() {
        // SAFETY: a signal to a process of this test host (ours, found in its cgroups or pid files).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_for("the DNS responder to die", Duration::from_secs(10), || {
            !alive(pid)
        });
    }
    for cg in h.cgroups() {
        for p in std::fs::read_to_string(cg.join("cgroup.procs"))
            .unwrap_or_default()
            .split_whitespace()
        {
            // SAFETY: a signal to a process of this test host (ours, found in its cgroups or pid files).
            unsafe { libc::kill(p.parse().unwrap(), libc::SIGKILL) };
        }
    }
    wait_for("processes to die", Duration::from_secs(10), || {
        !alive(monitor)
    });
    for m in h.mounts() {
        let _ = cmd("umount", &["-l", &m]);
    }
    std::fs::remove_dir_all(&h.run_root).unwrap();
    for l in links(&h) {
        let _ = cmd("ip", &["-n", &h.ns, "link", "del", &l]);
    }
    let _ = h.in_ns("nft", &["flush", "ruleset"]);
    let ps = h.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited"), "{ps}");
    // The next run on the network works, with its port mapping.
    h.ok(&[
        "run", "-d", "--name", "r2", "--net", "rnet", "-p", "8083:80", "busybox", "httpd", "-f",
        "-p", "80",
    ]);
    wait_for("the published port", Duration::from_secs(10), || {
        // httpd answers 404 for a missing index: an HTTP answer is the proof.
        let o = h.in_ns(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
                "http://127.0.0.1:8083/",
            ],
        );
        stdout(&o) == "404"
    });
    h.ok(&["rm", "-f", "r", "r2"]);
    h.ok(&["network", "rm", "rnet"]);
    wait_for("devices to go", Duration::from_secs(10), || {
        links(&h).is_empty()
    });
}

/// Someone flushes the ruleset: the next minirt command restores every
/// network's and port mapping's rules; `network reload` is idempotent.
#[test]
fn flushed_firewall_rules_heal_on_the_next_command() {
    let h = TestHost::new();
    // Without the firewall guardian (which restores a flushed table at once,
    // lan::a_flushed_ruleset_is_restored_without_any_command): this is the
    // next command's heal check.
    let ok = |args: &[&str]| {
        let o = h
            .command(args)
            .env("MINIRT_NO_FWGUARD", "1")
            .output()
            .expect("run minirt");
        assert!(o.status.success(), "minirt {args:?}: {}", stderr(&o));
    };
    ok(&["network", "create", "--subnet", "10.93.0.0/24", "hnet"]);
    ok(&[
        "run", "-d", "--name", "web", "--net", "hnet", "-p", "8084:80", "busybox", "httpd", "-f",
        "-p", "80",
    ]);
    let fetch = || {
        let o = h.in_ns(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
                "http://127.0.0.1:8084/",
            ],
        );
        stdout(&o)
    };
    wait_for("the published port", Duration::from_secs(10), || {
        fetch() == "404"
    });
    let before = stdout(&h.in_ns("nft", &["list", "ruleset"]));
    for breakage in [
        vec!["flush", "ruleset"],
        vec!["flush", "chain", "inet", &h_table(&h), "ports"],
    ] {
        let o = h.in_ns("nft", &breakage);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(
            fetch(),
            "000",
            "the mapping should be broken by {breakage:?}"
        );
        ok(&["ps"]);
        assert_eq!(fetch(), "404", "not healed after {breakage:?}");
    }
    let healed = stdout(&h.in_ns("nft", &["list", "ruleset"]));
    assert_eq!(
        count_lines(&before),
        count_lines(&healed),
        "before:\n{before}\nafter:\n{healed}"
    );
    ok(&["network", "reload"]);
    let once = stdout(&h.in_ns("nft", &["list", "ruleset"]));
    ok(&["network", "reload"]);
    let twice = stdout(&h.in_ns("nft", &["list", "ruleset"]));
    assert_eq!(once, twice, "reload is not idempotent");
    assert_eq!(fetch(), "404");
    ok(&["rm", "-f", "web"]);
    ok(&["network", "rm", "hnet"]);
}

fn count_lines(s: &str) -> usize {
    s.lines().filter(|l| !l.trim().is_empty()).count()
}

fn h_table(h: &TestHost) -> String {
    h.cgroup_parent().replace("minirt-", "minirt_")
}
