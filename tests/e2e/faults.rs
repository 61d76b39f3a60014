//! The fault-injection matrix: every command with fault points is SIGKILLed
//! at each of them (`MINIRT_FAULT`, the `fault-injection` feature); the next
//! command must heal to exactly the state a finished or never-started
//! command leaves (no link, nft chain or element, mount, cgroup, row,
//! intent or layer temp left over), and the same name, subnet, address and
//! port must be usable at once. One TestHost per command, looping over its
//! points. `run`'s points are covered by robustness.rs.

#![cfg(feature = "fault-injection")]

use crate::common::{cmd, dir_entries, stderr, stdout, TestHost};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything a command can leave behind, as seen from outside minirt and
/// through its own listings.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    links: Vec<String>,
    ruleset: String,
    networks: Vec<String>,
    endpoints: Vec<String>,
    containers: Vec<String>,
    mounts: Vec<String>,
    cgroups: Vec<PathBuf>,
    intents: Vec<String>,
    layers: Vec<String>,
}

/// What the kernel and the files show, without running minirt (whose
/// every command heals: reading this first shows what the command before
/// it healed).
fn raw_snapshot(h: &TestHost) -> Snapshot {
    let o = cmd("ip", &["-n", &h.ns, "-o", "link", "show"]);
    let mut links: Vec<String> = stdout(&o)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n != "lo")
        .collect();
    links.sort();
    let mut mounts = h.mounts();
    mounts.sort();
    let mut cgroups = h.cgroups();
    cgroups.sort();
    Snapshot {
        links,
        ruleset: tables_sorted(&stdout(&h.in_ns("nft", &["list", "ruleset"]))),
        networks: vec![],
        endpoints: vec![],
        containers: vec![],
        mounts,
        cgroups,
        intents: dir_entries(&h.run_root.join("intents")),
        layers: dir_entries(&h.root.join("layers")),
    }
}

/// The listing with its tables in name order: `nft list ruleset` prints
/// them in the order they were made, and a heal that rebuilds one table
/// changes that order, not the state.
fn tables_sorted(listing: &str) -> String {
    let mut tables: Vec<String> = vec![];
    for line in listing.lines() {
        if line.starts_with("table ") || tables.is_empty() {
            tables.push(String::new());
        }
        if let Some(t) = tables.last_mut() {
            t.push_str(line);
            t.push('\n');
        }
    }
    tables.sort();
    tables.concat()
}

fn snapshot(h: &TestHost) -> Snapshot {
    let raw = raw_snapshot(h);
    let mut networks: Vec<String> = h
        .ok(&["network", "ls"])
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    networks.sort();
    let mut endpoints = vec![];
    for n in &networks {
        let v: serde_json::Value = serde_json::from_str(&h.ok(&["network", "inspect", n])).unwrap();
        if let Some(m) = v[0]["Containers"].as_object() {
            for (id, ep) in m {
                endpoints.push(format!("{n} {id} {}", ep["IPv4Address"]));
            }
        }
    }
    endpoints.sort();
    let mut containers: Vec<String> = h
        .ok(&["ps", "-aq"])
        .split_whitespace()
        .map(String::from)
        .collect();
    containers.sort();
    Snapshot {
        networks,
        endpoints,
        containers,
        ..raw
    }
}

fn without_listings(s: &Snapshot) -> Snapshot {
    Snapshot {
        networks: vec![],
        endpoints: vec![],
        containers: vec![],
        ..s.clone()
    }
}

/// Waits for the state to be `want` (veths of an exited container and its
/// cgroup go a moment later, by the kernel); on timeout shows what differs.
fn settles_to(h: &TestHost, want: &Snapshot, what: &str) {
    // The kernel's and the files' side first, without a minirt command
    // that would heal it itself.
    let raw_want = without_listings(want);
    let mut last = raw_snapshot(h);
    let mut ok = crate::common::eventually(Duration::from_secs(10), || {
        last = raw_snapshot(h);
        last == raw_want
    });
    if ok {
        ok = crate::common::eventually(Duration::from_secs(10), || {
            last = snapshot(h);
            last == *want
        });
    }
    if !ok {
        let mut diff = String::new();
        macro_rules! field {
            ($f:ident) => {
                if last.$f != want.$f {
                    diff += &format!(
                        "{}:\n  want {:?}\n  got  {:?}\n",
                        stringify!($f),
                        want.$f,
                        last.$f
                    );
                }
            };
        }
        field!(links);
        field!(networks);
        field!(endpoints);
        field!(containers);
        field!(mounts);
        field!(cgroups);
        field!(intents);
        field!(layers);
        if last.ruleset != want.ruleset {
            diff += &format!(
                "ruleset:\n--- want\n{}\n--- got\n{}\n",
                want.ruleset, last.ruleset
            );
        }
        panic!("{what}: the state did not heal:\n{diff}");
    }
}

/// Runs minirt armed at `point` and checks that it died there (SIGKILL):
/// a point never reached would make the rest of the check meaningless.
fn killed_at(h: &TestHost, point: &str, args: &[&str]) {
    let o = h.command(args).env("MINIRT_FAULT", point).output().unwrap();
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGKILL),
        "minirt {args:?} did not die at {point} ({:?}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
}

/// The command after a kill heals quietly: success and nothing on stderr.
fn heals_quietly(h: &TestHost, args: &[&str], point: &str) {
    let o = h.minirt(args);
    assert!(
        o.status.success() && stderr(&o).is_empty(),
        "{point}: minirt {args:?} after the kill ({:?}): {}",
        o.status.code(),
        stderr(&o)
    );
}

fn points(command: &str) -> &'static [&'static str] {
    let p = minirt::fault::points_of(command);
    assert!(!p.is_empty(), "no fault points listed for {command}");
    p
}

/// Every command with fault points has a case here (or in robustness.rs).
#[test]
fn every_command_with_fault_points_is_in_the_matrix() {
    let covered = [
        "run",
        "run -d",
        "network create",
        "network rm",
        "network connect",
        "network disconnect",
        "rm",
        "stop",
        "load",
        "import",
        "commit",
    ];
    for (command, _) in minirt::fault::POINTS {
        assert!(
            covered.contains(command),
            "{command} has fault points but no matrix case"
        );
    }
}

#[test]
fn network_create_killed_anywhere_leaves_nothing_and_the_subnet_is_free() {
    let h = TestHost::new();
    // First without any network (the kill may leave a fresh table), then
    // beside another network whose rules must survive the healing.
    for other in [false, true] {
        if other {
            h.ok(&["network", "create", "--subnet", "10.210.0.0/24", "keep"]);
        }
        for point in points("network create") {
            let before = snapshot(&h);
            let what = format!("{point} (other network: {other})");
            killed_at(
                &h,
                point,
                &[
                    "network",
                    "create",
                    "--subnet",
                    "10.211.0.0/24",
                    "-o",
                    "bridge_name=victimbr",
                    "victim",
                ],
            );
            heals_quietly(&h, &["network", "ls"], &what);
            settles_to(&h, &before, &what);
            // Same name, subnet and bridge name, at once.
            h.ok(&[
                "network",
                "create",
                "--subnet",
                "10.211.0.0/24",
                "-o",
                "bridge_name=victimbr",
                "victim",
            ]);
            h.ok(&["network", "rm", "victim"]);
            settles_to(&h, &before, &what);
        }
    }
}

#[test]
fn network_rm_killed_anywhere_is_finished_by_the_next_command() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.212.0.0/24", "keep"]);
    for point in points("network rm") {
        let before = snapshot(&h);
        h.ok(&["network", "create", "--subnet", "10.213.0.0/24", "victim"]);
        killed_at(&h, point, &["network", "rm", "victim"]);
        heals_quietly(&h, &["network", "ls"], point);
        settles_to(&h, &before, point);
        h.ok(&["network", "create", "--subnet", "10.213.0.0/24", "victim"]);
        h.ok(&["network", "rm", "victim"]);
        settles_to(&h, &before, point);
    }
}

#[test]
fn network_connect_and_disconnect_killed_anywhere_heal() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.214.0.0/24", "front"]);
    h.ok(&["network", "create", "--subnet", "10.215.0.0/24", "back"]);
    h.ok(&[
        "run", "-d", "--name", "c", "--net", "front", "-p", "8090:80", "busybox", "sleep", "300",
    ]);
    let alone = snapshot(&h);
    let connect = ["network", "connect", "--ip", "10.215.0.9", "back", "c"];
    for point in points("network connect") {
        killed_at(&h, point, &connect);
        heals_quietly(&h, &["ps"], point);
        settles_to(&h, &alone, &format!("connect {point}"));
        // The same address and interface, at once.
        h.ok(&connect);
        let ip = h.ok(&["exec", "c", "ip", "-4", "-o", "addr", "show", "eth1"]);
        assert!(ip.contains("10.215.0.9/24"), "{point}: {ip}");
        h.ok(&["network", "disconnect", "back", "c"]);
        settles_to(&h, &alone, &format!("connect {point}, then disconnect"));
    }
    for point in points("network disconnect") {
        h.ok(&connect);
        killed_at(&h, point, &["network", "disconnect", "back", "c"]);
        heals_quietly(&h, &["ps"], point);
        settles_to(&h, &alone, &format!("disconnect {point}"));
        h.ok(&connect);
        h.ok(&["network", "disconnect", "back", "c"]);
        settles_to(&h, &alone, &format!("disconnect {point}, again"));
    }
    h.ok(&["rm", "-f", "c"]);
}

#[test]
fn rm_killed_anywhere_is_finished_by_the_next_command() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.216.0.0/24", "rmnet"]);
    // The bundled image is loaded by the first run: not part of what is compared.
    h.ok(&["run", "--rm", "--net", "none", "busybox", "true"]);
    let run = [
        "run",
        "-d",
        "--name",
        "victim",
        "--net",
        "rmnet",
        "--ip",
        "10.216.0.7",
        "-p",
        "8091:80",
        "busybox",
        "sleep",
        "300",
    ];
    for point in points("rm") {
        let before = snapshot(&h);
        h.ok(&run);
        killed_at(&h, point, &["rm", "-f", "victim"]);
        heals_quietly(&h, &["ps", "-a"], point);
        settles_to(&h, &before, point);
        // Name, address and port at once.
        h.ok(&run);
        h.ok(&["rm", "-f", "victim"]);
        settles_to(&h, &before, point);
    }
}

#[test]
fn stop_killed_anywhere_leaves_a_consistent_container() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.217.0.0/24", "stopnet"]);
    h.ok(&["run", "--rm", "--net", "none", "busybox", "true"]);
    let empty = snapshot(&h);
    let run = [
        "run",
        "-d",
        "--name",
        "victim",
        "--net",
        "stopnet",
        "--ip",
        "10.217.0.7",
        "-p",
        "8092:80",
        "busybox",
        "sleep",
        "300",
    ];
    for point in points("stop") {
        h.ok(&run);
        let running = snapshot(&h);
        killed_at(&h, point, &["stop", "-t", "1", "victim"]);
        heals_quietly(&h, &["ps", "-a"], point);
        // Either still running with everything it had (the kill came
        // before the container died), or stopped with nothing but its row.
        let status = || -> String {
            let v: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "victim"])).unwrap();
            v[0]["State"]["Status"].as_str().unwrap_or("").to_string()
        };
        let mut stopped = empty.clone();
        stopped.containers = running.containers.clone();
        crate::common::eventually(Duration::from_secs(10), || {
            let s = status();
            s == "exited" || (s == "running" && snapshot(&h) == running)
        });
        match status().as_str() {
            "running" => settles_to(&h, &running, point),
            "exited" => settles_to(&h, &stopped, point),
            s => panic!("{point}: container left {s}"),
        }
        h.ok(&["stop", "-t", "1", "victim"]);
        settles_to(&h, &stopped, point);
        // It starts again with its address and port.
        h.ok(&["start", "victim"]);
        h.ok(&["rm", "-f", "victim"]);
        settles_to(&h, &empty, point);
    }
}

fn gzip_of(src: &Path, dst: &Path) {
    let o = cmd(
        "sh",
        &[
            "-c",
            &format!("gzip -c '{}' > '{}'", src.display(), dst.display()),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn load_and_import_killed_anywhere_leave_no_layer_or_temp() {
    let h = TestHost::new();
    let scratch = h.root.parent().unwrap().join("scratch");
    std::fs::create_dir_all(scratch.join("src/etc")).unwrap();
    let archive = scratch.join("busybox.tar.gz");
    gzip_of(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("images/busybox.tar"),
        &archive,
    );
    std::fs::write(scratch.join("src/etc/hello"), "hi\n").unwrap();
    let rootfs = scratch.join("rootfs.tar");
    let o = cmd(
        "tar",
        &[
            "-C",
            scratch.join("src").to_str().unwrap(),
            "-cf",
            rootfs.to_str().unwrap(),
            ".",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let before = snapshot(&h);
    let load = ["load", "-i", archive.to_str().unwrap()];
    for point in points("load") {
        killed_at(&h, point, &load);
        heals_quietly(&h, &["images"], point);
        settles_to(&h, &before, &format!("load {point}"));
        assert_eq!(h.ok(&["images", "-q"]), "", "load {point}: image left");
        h.ok(&load);
        h.ok(&["rmi", "busybox"]);
        settles_to(&h, &before, &format!("load {point}, again"));
    }
    let import = ["import", rootfs.to_str().unwrap(), "mine:v1"];
    for point in points("import") {
        killed_at(&h, point, &import);
        heals_quietly(&h, &["images"], point);
        settles_to(&h, &before, &format!("import {point}"));
        h.ok(&import);
        h.ok(&["rmi", "mine:v1"]);
        settles_to(&h, &before, &format!("import {point}, again"));
    }
}

/// The caller of `run -d` dies while its monitor is starting the container,
/// and another command reconciles at once: the monitor's hand-over and the
/// reconcile race for the row, and exactly one wins. Either the container
/// runs with everything it needs, or it is gone with nothing left; never a
/// half-made container, never a row finished under a live monitor.
#[test]
fn a_detached_start_whose_caller_dies_is_run_or_discarded_never_half_made() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.218.0.0/24", "hand"]);
    h.ok(&["run", "--rm", "--net", "none", "busybox", "true"]);
    let empty = snapshot(&h);
    let point = points("run -d")[0];
    let (mut ran, mut discarded) = (0, 0);
    for round in 0..6 {
        killed_at(
            &h,
            point,
            &[
                "run",
                "-d",
                "--name",
                "victim",
                "--net",
                "hand",
                "--ip",
                "10.218.0.7",
                "-p",
                "8093:80",
                "busybox",
                "sleep",
                "300",
            ],
        );
        // Race the monitor: reconcile right away.
        h.ok(&["ps", "-a"]);
        let state = || -> Option<String> {
            let o = h.minirt(&["inspect", "victim"]);
            if !o.status.success() {
                return None;
            }
            let v: serde_json::Value = serde_json::from_str(&stdout(&o)).ok()?;
            v[0]["State"]["Status"].as_str().map(str::to_string)
        };
        crate::common::wait_for("the start to settle", Duration::from_secs(20), || {
            state().as_deref() != Some("created")
        });
        match state().as_deref() {
            None => {
                discarded += 1;
                settles_to(&h, &empty, &format!("round {round}: discarded"));
            }
            Some("running") => {
                ran += 1;
                let s = snapshot(&h);
                assert_eq!(s.containers.len(), 1, "round {round}");
                assert_eq!(s.endpoints.len(), 1, "round {round}: {:?}", s.endpoints);
                assert!(s.ruleset.contains("8093"), "round {round}: no port mapping");
                let out = h.ok(&["exec", "victim", "ip", "-4", "-o", "addr", "show", "eth0"]);
                assert!(out.contains("10.218.0.7/24"), "round {round}: {out}");
                h.ok(&["rm", "-f", "victim"]);
                settles_to(&h, &empty, &format!("round {round}: removed"));
            }
            other => panic!("round {round}: container left {other:?}"),
        }
    }
    eprintln!("hand-over race: {ran} ran, {discarded} discarded");
}

/// A killed DNS responder is back after the next command that reads the
/// state (`ps` here), not only after the next start on a network.
#[test]
fn a_killed_dns_responder_comes_back_at_the_next_ps() {
    let h = TestHost::new();
    let resolv = h.root.with_file_name("host-resolv.conf");
    std::fs::write(&resolv, "nameserver 203.0.113.53\n").unwrap();
    let with_resolv = |args: &[&str]| {
        let o = h
            .command(args)
            .env("MINIRT_HOST_RESOLV_CONF", &resolv)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?} warned");
        stdout(&o)
    };
    with_resolv(&["network", "create", "--subnet", "10.219.0.0/24", "names"]);
    for n in ["web", "cli"] {
        with_resolv(&[
            "run", "-d", "--name", n, "--net", "names", "busybox", "sleep", "300",
        ]);
    }
    let pid_file = h.run_root.join("dns.pid");
    let pid = |what: &str| -> i32 {
        std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("{what}: no dns.pid: {e}"))
            .trim()
            .parse()
            .unwrap()
    };
    let first = pid("after run");
    // SAFETY: the responder of this test's own run root (its pid file).
    unsafe { libc::kill(first, libc::SIGKILL) };
    crate::common::wait_for("the responder to die", Duration::from_secs(5), || {
        !crate::common::alive(first)
    });
    with_resolv(&["ps"]);
    let again = pid("after ps");
    assert_ne!(again, first);
    assert!(
        crate::common::alive(again),
        "the new responder is not running"
    );
    let o = h
        .command(&["exec", "cli", "nslookup", "-type=a", "web"])
        .env("MINIRT_HOST_RESOLV_CONF", &resolv)
        .output()
        .unwrap();
    assert!(
        stdout(&o).contains("10.219.0.2"),
        "web does not resolve: {}{}",
        stdout(&o),
        stderr(&o)
    );
    with_resolv(&["rm", "-f", "web", "cli"]);
}

/// Waits for a held process to reach its hold point.
fn reached(release: &Path) {
    let mut r = release.as_os_str().to_owned();
    r.push(".reached");
    let r = PathBuf::from(r);
    crate::common::wait_for(
        "a hold point to be reached",
        Duration::from_secs(20),
        || r.exists(),
    );
}

/// The hand-over, ordered by hold points: a reconcile reads the row of a
/// starting container while its caller is dead, the monitor then takes the
/// row over and starts the container, and only then does the reconcile go
/// on. It must leave the container alone (without the conditional
/// hand-over it discarded a container that was running).
#[test]
fn a_reconcile_that_read_a_row_before_the_monitor_took_it_over_leaves_it_alone() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.222.0.0/24", "order"]);
    h.ok(&["run", "--rm", "--net", "none", "busybox", "true"]);
    let scratch = h.root.parent().unwrap().join("holds");
    std::fs::create_dir_all(&scratch).unwrap();
    let (monitor_go, reconcile_go) = (scratch.join("monitor"), scratch.join("reconcile"));
    // 1. The caller dies at once; its monitor waits before the hand-over.
    let o = h
        .command(&[
            "run", "-d", "--name", "victim", "--net", "order", "-p", "8094:80", "busybox", "sleep",
            "300",
        ])
        .env("MINIRT_FAULT", "run-detach-after-fork")
        .env("MINIRT_HOLD", "monitor-before-hand-over")
        .env("MINIRT_HOLD_RELEASE", &monitor_go)
        .output()
        .unwrap();
    assert_eq!(o.status.signal(), Some(libc::SIGKILL));
    reached(&monitor_go);
    // 2. A reconcile finds the row with a dead owner and stops right there.
    let ps = h
        .command(&["ps", "-a"])
        .env("MINIRT_HOLD", "reconcile-before-claim")
        .env("MINIRT_HOLD_RELEASE", &reconcile_go)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    reached(&reconcile_go);
    // 3. The monitor takes over and the container runs.
    std::fs::write(&monitor_go, b"").unwrap();
    let status = || -> String {
        let v: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "victim"])).unwrap();
        v[0]["State"]["Status"].as_str().unwrap_or("").to_string()
    };
    crate::common::wait_for("the container to run", Duration::from_secs(20), || {
        status() == "running"
    });
    // 4. The reconcile goes on: the row is no longer that dead owner's.
    std::fs::write(&reconcile_go, b"").unwrap();
    let out = ps.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "the reconcile warned");
    assert_eq!(
        status(),
        "running",
        "the reconcile finished a running container"
    );
    let ip = h.ok(&["exec", "victim", "ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(ip.contains("10.222.0."), "{ip}");
    assert!(
        snapshot(&h).ruleset.contains("8094"),
        "its port mapping went"
    );
    h.ok(&["rm", "-f", "victim"]);
}

/// `commit` killed after its layer is extracted or renamed into place:
/// the next command removes the layer no row claims; no image is left, the
/// container is untouched (not frozen), and the commit then works.
#[test]
fn commit_killed_anywhere_leaves_no_layer_and_the_container_as_it_was() {
    let h = TestHost::new();
    h.ok(&[
        "run",
        "--name",
        "c",
        "--net",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo x > /x",
    ]);
    h.ok(&[
        "run", "-d", "--name", "live", "--net", "none", "busybox", "sleep", "600",
    ]);
    let before = snapshot(&h);
    let images = h.ok(&["images", "-q"]);
    for point in points("commit") {
        for ctr in ["c", "live"] {
            killed_at(&h, point, &["commit", ctr, "snap:1"]);
            heals_quietly(&h, &["images"], point);
            settles_to(&h, &before, &format!("commit {ctr} {point}"));
            assert_eq!(
                h.ok(&["images", "-q"]),
                images,
                "commit {point}: image left"
            );
            assert_eq!(
                h.ok(&["inspect", "-f", "{{.State.Paused}}", "live"]),
                "false\n"
            );
            h.ok(&["commit", ctr, "snap:1"]);
            h.ok(&["rmi", "snap:1"]);
            settles_to(&h, &before, &format!("commit {ctr} {point}, again"));
        }
    }
    h.ok(&["rm", "-f", "c", "live"]);
}
