//! Docker's container commands beyond run/stop as a user checks them:
//! `create` then `start`, `pause`/`unpause` (status, exec refused),
//! `stats --no-stream`, `diff`, `export`.

use crate::common::*;
use std::time::Duration;

#[test]
fn create_then_start_and_pause_unpause() {
    let h = TestHost::new();
    let id = h.ok(&[
        "create", "--name", "c1", "--net", "none", "busybox", "sleep", "600",
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
    // Created survives later commands (it is not a crashed run).
    assert_eq!(
        h.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]),
        "c1 Created\n"
    );
    assert_eq!(
        h.ok(&["inspect", "-f", "{{.State.Status}}", "c1"]),
        "created\n"
    );
    assert_eq!(h.ok(&["ps", "-q"]), "");
    h.ok(&["start", "c1"]);
    assert!(h
        .ok(&["ps", "--format", "{{.Names}} {{.Status}}"])
        .starts_with("c1 Up"));

    assert_eq!(h.ok(&["pause", "c1"]), "c1\n");
    let pid = h.ok(&["inspect", "-f", "{{.State.Pid}}", "c1"]);
    let st = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap();
    let state = st
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(
        matches!(state.as_str(), "D" | "S"),
        "frozen task state {state}"
    );
    assert_eq!(
        h.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "c1"]),
        "paused true\n"
    );
    let line = h.ok(&["ps", "--format", "{{.Status}}"]);
    assert!(line.trim_end().ends_with("(Paused)"), "{line}");
    assert_eq!(h.ok(&["ps", "-q", "--filter", "status=paused"]).len(), 13);
    let (code, err) = h.fails(&["exec", "c1", "true"]);
    assert_eq!(code, 1);
    assert!(err.contains("is paused"), "{err}");
    let (code, _) = h.fails(&["pause", "c1"]);
    assert_eq!(code, 1);
    assert_eq!(h.ok(&["unpause", "c1"]), "c1\n");
    assert_eq!(h.ok(&["exec", "c1", "echo", "hi"]), "hi\n");
    let (code, _) = h.fails(&["unpause", "c1"]);
    assert_eq!(code, 1);
    // A paused container still stops.
    h.ok(&["pause", "c1"]);
    h.ok(&["stop", "-t", "1", "c1"]);
    assert!(h
        .ok(&["ps", "-a", "--format", "{{.Status}}"])
        .starts_with("Exited"));
    let (code, _) = h.fails(&["pause", "nosuch"]);
    assert_eq!(code, 1);
}

#[test]
fn stats_no_stream_reads_the_cgroup() {
    let h = TestHost::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "s1",
        "--net",
        "none",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "sleep 600 & sleep 600 & wait",
    ]);
    wait_for("three processes", Duration::from_secs(10), || {
        h.ok(&["stats", "--no-stream", "--format", "{{.PIDs}}", "s1"]) == "3\n"
    });
    let out = h.ok(&["stats", "--no-stream"]);
    let mut lines = out.lines();
    let head: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        head,
        [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS"
        ]
    );
    let j: serde_json::Value =
        serde_json::from_str(&h.ok(&["stats", "--no-stream", "--format", "json", "s1"])).unwrap();
    assert_eq!(j["Name"], "s1");
    assert!(j["MemUsage"].as_str().unwrap().ends_with(" / 64MiB"), "{j}");
    assert!(j["CPUPerc"].as_str().unwrap().ends_with('%'), "{j}");
    // Streaming: a line per refresh with --format, until Ctrl-C. SIGINT at
    // its default, as at a terminal, whatever this harness inherited (a
    // background job of a non-interactive shell starts with it ignored).
    let mut streaming = h.command(&["stats", "--format", "{{.Name}} {{.PIDs}}", "s1"]);
    // SAFETY: signal(2) only, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut streaming, || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut streaming = streaming
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = streaming.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    for _ in 0..2 {
        let l = lines.recv_timeout(Duration::from_secs(20));
        assert_eq!(l.as_deref(), Ok("s1 3"));
    }
    let pid = streaming.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = streaming.wait().unwrap();
    assert!(!status.success());
    // The default table is redrawn: screen cleared, then the header.
    let mut table = h
        .command(&["stats", "s1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 19];
    std::io::Read::read_exact(table.stdout.as_mut().unwrap(), &mut first).unwrap();
    assert_eq!(&first, b"\x1b[2J\x1b[HCONTAINER ID");
    let _ = table.kill();
    let _ = table.wait();
    let (code, _) = h.fails(&["stats", "--no-stream", "nosuch"]);
    assert_eq!(code, 1);
}

#[test]
fn diff_and_export_show_the_containers_filesystem() {
    let h = TestHost::new();
    h.ok(&[
        "run", "-d", "--name", "d1", "--net", "none", "busybox", "sleep", "600",
    ]);
    h.ok(&[
        "exec",
        "d1",
        "sh",
        "-c",
        "echo x > /tmp/new && rm /etc/passwd && mkdir /newdir",
    ]);
    assert_eq!(
        h.ok(&["diff", "d1"]),
        "C /etc\nD /etc/passwd\nA /newdir\nC /tmp\nA /tmp/new\n"
    );
    let t = TempDir::new("export");
    let list = |tar: &str| -> Vec<String> {
        stdout(&cmd("tar", &["-tf", tar]))
            .lines()
            .map(String::from)
            .collect()
    };
    // Running: what is mounted over the root (/proc, /etc/hostname) stays out.
    let o = h
        .command(&["export", "d1"])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let running = format!("{}/running.tar", t.path());
    std::fs::write(&running, &o.stdout).unwrap();
    let names = list(&running);
    assert!(names.contains(&"tmp/new".to_string()), "{names:?}");
    assert!(names.contains(&"bin/busybox".to_string()));
    assert!(names.contains(&"proc/".to_string()));
    assert!(!names.iter().any(|n| n.starts_with("proc/") && n != "proc/"));
    assert!(!names.contains(&"etc/passwd".to_string()));
    // Stopped: the same files from the overlay, nothing left mounted.
    h.ok(&["stop", "-t", "0", "d1"]);
    let stopped = format!("{}/stopped.tar", t.path());
    h.ok(&["export", "-o", &stopped, "d1"]);
    assert!(list(&stopped).contains(&"tmp/new".to_string()));
    assert!(h.mounts().is_empty(), "{:?}", h.mounts());
    let (code, _) = h.fails(&["diff", "nosuch"]);
    assert_eq!(code, 1);
}

#[test]
fn update_changes_the_limits_of_a_running_and_a_stopped_container() {
    let h = TestHost::new();
    h.ok(&[
        "run", "-d", "--name", "u1", "--net", "none", "-m", "64m", "busybox", "sleep", "600",
    ]);
    let mem = || h.ok(&["stats", "--no-stream", "--format", "{{.MemUsage}}", "u1"]);
    assert!(mem().trim_end().ends_with("/ 64MiB"), "{}", mem());
    assert_eq!(
        h.ok(&[
            "update",
            "-m",
            "128m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "20",
            "u1"
        ]),
        "u1\n"
    );
    assert!(mem().trim_end().ends_with("/ 128MiB"), "{}", mem());
    assert_eq!(
        h.ok(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}",
            "u1"
        ]),
        "134217728 500000000 20\n"
    );
    // Ten more processes than allowed cannot start.
    h.ok(&["update", "--pids-limit", "3", "u1"]);
    let o = h.minirt(&[
        "exec",
        "u1",
        "sh",
        "-c",
        "sleep 5 & sleep 5 & sleep 5 & wait",
    ]);
    assert!(!o.status.success(), "a fourth process started");
    // Stopped: kept for the next start.
    h.ok(&["stop", "-t", "0", "u1"]);
    h.ok(&["update", "-m", "32m", "u1"]);
    h.ok(&["start", "u1"]);
    assert!(mem().trim_end().ends_with("/ 32MiB"), "{}", mem());
    let (code, err) = h.fails(&["update", "u1"]);
    assert_eq!(code, 125, "{err}");
    let (code, _) = h.fails(&["update", "-m", "1k", "u1"]);
    assert_eq!(code, 125);
    let (code, _) = h.fails(&["update", "-m", "64m", "nosuch"]);
    assert_eq!(code, 1);
}

#[test]
fn labels_are_shown_and_filtered() {
    let h = TestHost::new();
    h.ok(&[
        "run", "-d", "--name", "a", "--net", "none", "-l", "tier=web", "--label", "team=x",
        "busybox", "sleep", "600",
    ]);
    h.ok(&[
        "create", "--name", "b", "--net", "none", "--label", "tier=db", "busybox", "true",
    ]);
    assert_eq!(
        h.ok(&[
            "inspect",
            "-f",
            "{{.Config.Labels.tier}} {{index .Config.Labels \"team\"}}",
            "a"
        ]),
        "web x\n"
    );
    assert_eq!(
        h.ok(&[
            "ps",
            "-a",
            "--filter",
            "label=tier=web",
            "--format",
            "{{.Names}}"
        ]),
        "a\n"
    );
    assert_eq!(
        h.ok(&[
            "ps",
            "-a",
            "--filter",
            "label=tier",
            "--format",
            "{{.Names}}"
        ]),
        "b\na\n"
    );
    assert_eq!(
        h.ok(&["ps", "--filter", "name=a", "--format", "{{.Labels}}"]),
        "team=x,tier=web\n"
    );
}

#[test]
fn ulimit_and_shm_size_reach_the_container() {
    let h = TestHost::new();
    let out = h.ok(&[
        "run",
        "--rm",
        "--net",
        "none",
        "--ulimit",
        "nofile=100:200",
        "--ulimit",
        "nproc=50",
        "--shm-size",
        "128m",
        "busybox",
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn; ulimit -u; df -k /dev/shm | tail -1",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["100", "200", "50"], "{out}");
    assert_eq!(lines[3].split_whitespace().nth(1), Some("131072"), "{out}");
    for bad in [
        ["--ulimit", "bogus=1"],
        ["--ulimit", "nofile=10:5"],
        ["--shm-size", "x"],
    ] {
        let mut args = vec!["run", "--rm", "--net", "none"];
        args.extend(bad);
        args.extend(["busybox", "true"]);
        let (code, err) = h.fails(&args);
        assert_eq!(code, 125, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(h.ok(&["ps", "-aq"]), "");
}

/// `ps` reads every container's networks and ports in one query each: each
/// row must still show its own, not a neighbour's (two networks, one
/// container on both, ports on some), and the exited and paused ones theirs.
#[test]
fn ps_rows_show_their_own_ports_and_networks() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.217.1.0/24", "psone"]);
    h.ok(&["network", "create", "--subnet", "10.217.2.0/24", "pstwo"]);
    let run = |name: &str, net: &str, ip: &str, ports: &[&str]| {
        let mut args = vec!["run", "-d", "--name", name, "--net", net, "--ip", ip];
        for p in ports {
            args.extend(["-p", p]);
        }
        args.extend(["busybox", "sleep", "600"]);
        h.ok(&args);
    };
    run("a", "psone", "10.217.1.5", &["18081:80"]);
    run("b", "pstwo", "10.217.2.6", &["18083:81", "18082:80/udp"]);
    run("c", "psone", "10.217.1.7", &[]);
    h.ok(&["network", "connect", "--ip", "10.217.2.7", "pstwo", "c"]);
    run("d", "pstwo", "10.217.2.8", &["18084:84"]);
    h.ok(&["pause", "d"]);
    h.ok(&[
        "create",
        "--name",
        "e",
        "--net",
        "psone",
        "--ip",
        "10.217.1.9",
        "-p",
        "18085:85",
        "busybox",
        "true",
    ]);
    let mut rows: Vec<String> = h
        .ok(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}|{{.State}}|{{.Ports}}|{{.Networks}}|{{.NetworkAddresses}}",
        ])
        .lines()
        .map(String::from)
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            "a|running|0.0.0.0:18081->80/tcp|psone|psone=10.217.1.5",
            "b|running|0.0.0.0:18082->80/udp, 0.0.0.0:18083->81/tcp|pstwo|pstwo=10.217.2.6",
            "c|running||psone,pstwo|psone=10.217.1.7, pstwo=10.217.2.7",
            "d|paused|0.0.0.0:18084->84/tcp|pstwo|pstwo=10.217.2.8",
            "e|created|0.0.0.0:18085->85/tcp|psone|psone=10.217.1.9",
        ]
    );
    // Without -a: the running and the paused ones, no created one.
    let mut names: Vec<String> = h
        .ok(&["ps", "--format", "{{.Names}}"])
        .lines()
        .map(String::from)
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c", "d"]);
    h.ok(&["unpause", "d"]);
    h.ok(&["rm", "-f", "a", "b", "c", "d", "e"]);
    h.ok(&["network", "rm", "psone", "pstwo"]);
    assert_eq!(h.ok(&["ps", "-aq"]), "");
}
