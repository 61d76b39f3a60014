//! Container lifecycle as a user sees it: run, exec, ps, inspect, logs,
//! stop, kill, start, rm, limits, the terminal, and bad input.

use crate::common::*;
use std::time::Duration;

/// Asserts that nothing of this host's containers is left: no rows, no
/// mounts, no cgroups, no container dirs.
fn assert_clean(h: &TestHost) {
    assert_eq!(h.ok(&["ps", "-aq"]).trim(), "", "containers left");
    assert!(h.mounts().is_empty(), "mounts left: {:?}", h.mounts());
    assert!(h.cgroups().is_empty(), "cgroups left: {:?}", h.cgroups());
    let cdir = h.root.join("containers");
    let left: Vec<_> = std::fs::read_dir(&cdir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "container dirs left: {left:?}");
}

fn inspect(h: &TestHost, c: &str) -> serde_json::Value {
    let out = h.ok(&["inspect", c]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

fn wait_exited(h: &TestHost, c: &str) {
    wait_for("container to exit", Duration::from_secs(20), || {
        inspect(h, c)["State"]["Status"] == "exited"
    });
}

#[test]
fn run_rm_echo_prints_and_leaves_nothing() {
    let h = TestHost::new();
    let out = h.ok(&["run", "--rm", "--net", "none", "busybox", "echo", "hi"]);
    assert_eq!(out, "hi\n");
    assert_clean(&h);
}

#[test]
fn exit_code_env_hostname_workdir_and_user_are_applied() {
    let h = TestHost::new();
    let o = h.minirt(&[
        "run", "--rm", "--net", "none", "busybox", "sh", "-c", "exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7));
    let out = h.sh_ok(
        &[
            "-h",
            "box1",
            "-e",
            "FOO=bar",
            "-w",
            "/tmp",
            "-u",
            "65534:65534",
        ],
        "echo $(hostname) $FOO $(pwd) $(id -u):$(id -g) $HOSTNAME",
    );
    assert_eq!(out.trim(), "box1 bar /tmp 65534:65534 box1");
    assert_clean(&h);
}

#[test]
fn container_sees_its_own_pid_namespace_and_readonly_sys() {
    let h = TestHost::new();
    let out = h.ok(&[
        "run",
        "--rm",
        "--net",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo $$; ls /proc | grep -c '^[0-9]'; touch /sys/x 2>&1; cat /proc/kcore | wc -c",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "init is PID 1: {out}");
    // sh, ls, grep at most: no host process visible.
    assert!(lines[1].parse::<u32>().unwrap() <= 4, "{out}");
    assert!(lines[2].contains("Read-only file system"), "{out}");
    assert_eq!(lines[3], "0", "/proc/kcore is masked: {out}");
    // Only lo in a --net none container.
    let out = h.ok(&[
        "run",
        "--rm",
        "--net",
        "none",
        "busybox",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(out.trim(), "lo");
}

#[test]
fn capabilities_are_dropped_and_no_new_privs_is_set() {
    let h = TestHost::new();
    let out = h.ok(&[
        "run",
        "--rm",
        "--net",
        "none",
        "busybox",
        "grep",
        "-E",
        "^(CapBnd|CapEff|NoNewPrivs)",
        "/proc/self/status",
    ]);
    // Docker's default set = 0x00000000a80425fb.
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    // No CAP_SYS_ADMIN: mount is refused.
    let o = h.minirt(&[
        "run", "--rm", "--net", "none", "busybox", "mount", "-t", "tmpfs", "t", "/mnt",
    ]);
    assert_ne!(o.status.code(), Some(0));
}

#[test]
fn detached_container_exec_ps_logs_stop_start_rm() {
    let h = TestHost::new();
    let id = h.ok(&[
        "run",
        "-d",
        "--name",
        "w",
        "--net",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo started; exec sleep 100",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64);
    // exec joins the pid namespace: sleep is PID 1.
    let ps = h.ok(&["exec", "w", "ps"]);
    let pid1 = ps
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .unwrap_or("");
    assert!(pid1.contains("sleep 100"), "{ps}");
    let o = h.minirt(&["exec", "w", "sh", "-c", "exit 5"]);
    assert_eq!(o.status.code(), Some(5));
    let o = h.minirt(&["exec", "w", "nope"]);
    assert_eq!(o.status.code(), Some(127));
    // ps shows it running.
    let ps = h.ok(&["ps"]);
    assert!(
        ps.contains(&id[..12]) && ps.contains("Up ") && ps.contains(" w"),
        "{ps}"
    );
    // logs.
    wait_for("log line", Duration::from_secs(10), || {
        h.ok(&["logs", "w"]) == "started\n"
    });
    // inspect.
    let j = inspect(&h, "w");
    assert_eq!(j["Id"], id.as_str());
    assert_eq!(j["Name"], "/w");
    assert_eq!(j["State"]["Running"], true);
    assert!(j["State"]["Pid"].as_i64().unwrap() > 0);
    // stop: sleep as PID 1 ignores SIGTERM, so SIGKILL after the grace time.
    h.ok(&["stop", "-t", "1", "w"]);
    let j = inspect(&h, "w");
    assert_eq!(j["State"]["Status"], "exited");
    assert_eq!(j["State"]["ExitCode"], 137);
    assert!(h.ok(&["ps"]).lines().count() == 1);
    assert!(h.ok(&["ps", "-a"]).contains("Exited (137)"));
    assert!(h.mounts().is_empty() && h.cgroups().is_empty());
    // exec on a stopped container is a clear error.
    let (code, err) = h.fails(&["exec", "w", "true"]);
    assert_ne!(code, 0);
    assert!(one_line(&err).contains("is not running"), "{err}");
    // start again: same rootfs (the log keeps growing).
    h.ok(&["start", "w"]);
    assert_eq!(inspect(&h, "w")["State"]["Running"], true);
    wait_for("second log line", Duration::from_secs(10), || {
        h.ok(&["logs", "w"]) == "started\nstarted\n"
    });
    // rm refused while running, works with -f.
    let (_, err) = h.fails(&["rm", "w"]);
    assert!(
        one_line(&err).contains("cannot remove a running container"),
        "{err}"
    );
    h.ok(&["rm", "-f", "w"]);
    assert_clean(&h);
}

#[test]
fn kill_sends_signals_and_logs_follow_ends_with_the_container() {
    let h = TestHost::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "k",
        "--net",
        "none",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-usr1; exit 3' USR1; echo ready; while true; do sleep 0.1; done",
    ]);
    wait_for("ready", Duration::from_secs(10), || {
        h.ok(&["logs", "k"]).contains("ready")
    });
    // logs -f runs until the container exits.
    let follower = h
        .command(&["logs", "-f", "k"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    h.ok(&["kill", "-s", "USR1", "k"]);
    let out = follower.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\ngot-usr1\n");
    wait_exited(&h, "k");
    assert_eq!(inspect(&h, "k")["State"]["ExitCode"], 3);
    let (_, err) = h.fails(&["kill", "k"]);
    assert!(one_line(&err).contains("is not running"));
    h.ok(&["rm", "k"]);
    assert_clean(&h);
}

#[test]
fn memory_limit_oom_kills_with_137() {
    let h = TestHost::new();
    let o = h.minirt(&[
        "run",
        "--name",
        "oom",
        "-m",
        "32m",
        "--net",
        "none",
        "busybox",
        "sh",
        "-c",
        "v=$(dd if=/dev/zero bs=1M count=64 2>/dev/null | tr '\\0' x); echo ${#v}",
    ]);
    assert_eq!(
        o.status.code(),
        Some(137),
        "stdout {} stderr {}",
        stdout(&o),
        stderr(&o)
    );
    let j = inspect(&h, "oom");
    assert_eq!(j["State"]["OOMKilled"], true);
    assert_eq!(j["State"]["ExitCode"], 137);
    assert_eq!(j["HostConfig"]["Memory"], 32 << 20);
    h.ok(&["rm", "oom"]);
    assert_clean(&h);
}

#[test]
fn pids_limit_contains_a_fork_bomb() {
    let h = TestHost::new();
    // The loop runs in a subshell: a failed fork ends it, not the counting shell.
    let script =
        "(for i in $(seq 60); do sleep 1000 & done) 2>/dev/null; set -- /proc/[0-9]*; echo $#";
    let out = h.ok(&[
        "run",
        "--rm",
        "--pids-limit",
        "20",
        "--net",
        "none",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    let n: u32 = out.trim().parse().unwrap();
    assert!(n <= 20, "{n} processes under a limit of 20");
    // Without the limit, the same script gets all 60 sleepers: the limit did it.
    let out = h.sh_ok(&[], script);
    assert!(out.trim().parse::<u32>().unwrap() >= 60, "{out}");
    assert_clean(&h);
}

#[test]
fn cpu_quota_is_recorded_and_applied() {
    let h = TestHost::new();
    h.ok(&[
        "run", "-d", "--name", "c", "--cpus", "0.5", "--net", "none", "busybox", "sleep", "100",
    ]);
    let j = inspect(&h, "c");
    assert_eq!(j["HostConfig"]["NanoCpus"], 500_000_000i64);
    let id = j["Id"].as_str().unwrap().to_string();
    let quota = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/cpu/{}/{id}/cpu.cfs_quota_us",
        h.cgroup_parent()
    ))
    .or_else(|_| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{}/{id}/cpu.max", h.cgroup_parent()))
    })
    .unwrap();
    assert!(quota.starts_with("50000"), "{quota}");
    h.ok(&["rm", "-f", "c"]);
    assert_clean(&h);
}

#[test]
fn bind_mounts_read_write_and_read_only() {
    let h = TestHost::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in"), "from-host").unwrap();
    let rw = format!("{}:/data", dir.path().display());
    let out = h.sh_ok(&["-v", &rw], "cat /data/in; echo back > /data/out");
    assert_eq!(out, "from-host");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out")).unwrap(),
        "back\n"
    );
    let ro = format!("{}:/data:ro", dir.path().display());
    let o = h.minirt(&[
        "run",
        "--rm",
        "--net",
        "none",
        "-v",
        &ro,
        "busybox",
        "sh",
        "-c",
        "echo x > /data/out2",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(!dir.path().join("out2").exists());
    assert_clean(&h);
}

#[test]
fn interactive_terminal_under_a_pty() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let h = TestHost::new();
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = pty.slave.as_raw_fd();
    let mut cmd = h.command(&["run", "-it", "--rm", "--net", "none", "busybox", "sh"]);
    cmd.stdin(std::fs::File::from(pty.slave.try_clone().unwrap()))
        .stdout(std::fs::File::from(pty.slave.try_clone().unwrap()))
        .stderr(std::fs::File::from(pty.slave.try_clone().unwrap()));
    // SAFETY: setsid + TIOCSCTTY in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            libc::ioctl(slave, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    // Read in a thread so a hang fails the test instead of blocking it.
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let expect = |needle: &str, seen: &mut String| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !seen.contains(needle) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(b) => seen.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!("timed out waiting for {needle:?}; saw {seen:?}"),
            }
        }
    };
    master.write_all(b"echo tty-$((6*7)); tty\n").unwrap();
    expect("tty-42", &mut seen);
    expect("/dev/pts/", &mut seen);
    master.write_all(b"exit 3\n").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{seen}");
    assert_clean(&h);
}

#[test]
fn another_root_sees_none_of_the_first_ones_containers() {
    let a = TestHost::new();
    let b = TestHost::new();
    a.ok(&[
        "run", "-d", "--name", "mine", "--net", "none", "busybox", "sleep", "100",
    ]);
    assert!(a.ok(&["ps", "-q"]).trim().len() == 12);
    assert_eq!(b.ok(&["ps", "-aq"]).trim(), "");
    let (_, err) = b.fails(&["inspect", "mine"]);
    assert!(err.contains("No such container: mine"));
    // Same name in the other root is fine: names are per instance.
    b.ok(&[
        "run", "--rm", "--name", "mine", "--net", "none", "busybox", "true",
    ]);
    a.ok(&["rm", "-f", "mine"]);
    assert_clean(&a);
    assert_clean(&b);
}

#[test]
fn bad_input_is_one_clear_error_and_leaves_nothing() {
    let h = TestHost::new();
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("{}/missing:/x", dir.path().display());
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["run", "--net", "none", "nosuchimage"],
            125,
            "Unable to find image",
        ),
        (
            vec!["run", "--net", "none", "-m", "lots", "busybox", "true"],
            125,
            "invalid size",
        ),
        (
            vec!["run", "--net", "none", "--cpus", "99", "busybox", "true"],
            125,
            "CPUs",
        ),
        (
            vec!["run", "--net", "none", "busybox", "/no/such/cmd"],
            127,
            "no such file or directory",
        ),
        (
            vec!["run", "--net", "none", "busybox", "nosuchcmd"],
            127,
            "executable file not found",
        ),
        (
            vec!["run", "--net", "none", "busybox", "/etc"],
            126,
            "permission denied",
        ),
        (
            vec!["run", "--net", "none", "-v", &missing, "busybox", "true"],
            125,
            "bind source path does not exist",
        ),
        (
            vec![
                "run", "--net", "none", "--name", "bad name", "busybox", "true",
            ],
            125,
            "Invalid container name",
        ),
        (vec!["stop", "nosuch"], 1, "No such container"),
        (vec!["rm", "nosuch"], 1, "No such container"),
        (vec!["exec", "nosuch", "true"], 125, "No such container"),
        (vec!["logs", "nosuch"], 1, "No such container"),
    ];
    for (args, code, msg) in cases {
        let (got, err) = h.fails(&args);
        let line = one_line(&err);
        assert_eq!(got, code, "{args:?}: {line}");
        assert!(
            line.to_lowercase().contains(&msg.to_lowercase()),
            "{args:?}: {line}"
        );
        assert_clean(&h);
    }
    // Name taken.
    h.ok(&["run", "--name", "dup", "--net", "none", "busybox", "true"]);
    let (code, err) = h.fails(&["run", "--name", "dup", "--net", "none", "busybox", "true"]);
    assert_eq!(code, 125);
    assert!(one_line(&err).contains("is already in use"), "{err}");
    h.ok(&["rm", "dup"]);
    assert_clean(&h);
}
