//! Restart policies, health checks and stop signals as a Docker user sees
//! them: `--restart` brings a container back (also after its monitor was
//! killed), `stop` ends it, `ps`/`inspect` show Restarting and health, and
//! the stop signal reaches the container. Intervals are short (200 ms) so
//! the module stays quick; every wait is for a condition, bounded.

use crate::common::*;
use std::time::Duration;

fn inspect(h: &TestHost, c: &str) -> serde_json::Value {
    let out = h.ok(&["inspect", c]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

fn status(h: &TestHost, c: &str) -> String {
    h.ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={c}"),
        "--format",
        "{{.Status}}",
    ])
    .trim()
    .to_string()
}

/// Pids of this host's monitor processes (waiters, monitors started by
/// reconciliation, health checks): their command lines name its run root.
fn monitors(h: &TestHost) -> Vec<i32> {
    let run_root = std::fs::canonicalize(&h.run_root).unwrap_or(h.run_root.clone());
    let run_root = run_root.to_string_lossy().to_string();
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let internal = ["__wait", "__monitor", "__health", "__finish"]
            .iter()
            .any(|w| cmdline.contains(w));
        if internal && cmdline.contains(&run_root) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// The parent of a process (its monitor, for a container's init).
fn parent_of(pid: i64) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn kill9(pid: i32) {
    // SAFETY: a signal to a process of this test host (its container's init or monitor).
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

fn running_with_count(h: &TestHost, c: &str, count: u64, old_pid: i64) -> Option<i64> {
    let d = inspect(h, c);
    let pid = d["State"]["Pid"].as_i64().unwrap_or(0);
    (d["RestartCount"] == count && d["State"]["Status"] == "running" && pid != old_pid && pid > 0)
        .then_some(pid)
}

#[test]
fn on_failure_2_retries_exactly_twice_then_stays_exited() {
    let h = TestHost::new();
    let dir = TempDir::new("restart-runs");
    let vol = format!("{}:/data", dir.path());
    h.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--net",
        "none",
        "--restart",
        "on-failure:2",
        "-v",
        &vol,
        "busybox",
        "sh",
        "-c",
        "echo run >> /data/runs; exit 3",
    ]);
    wait_for("two restarts and rest", Duration::from_secs(20), || {
        let d = inspect(&h, "flaky");
        d["RestartCount"] == 2 && d["State"]["Status"] == "exited" && monitors(&h).is_empty()
    });
    let d = inspect(&h, "flaky");
    assert_eq!(d["State"]["ExitCode"], 3);
    assert_eq!(d["State"]["Restarting"], false);
    assert_eq!(
        d["HostConfig"]["RestartPolicy"],
        serde_json::json!({"Name": "on-failure", "MaximumRetryCount": 2})
    );
    // Nothing watches it any more, so these three runs are all there is.
    let runs = std::fs::read_to_string(dir.0.join("runs")).unwrap();
    assert_eq!(runs.lines().count(), 3, "{runs}");
    assert!(status(&h, "flaky").starts_with("Exited (3)"));
    // A clean exit is not a failure: no restart.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "clean",
        "--net",
        "none",
        "--restart",
        "on-failure",
        "busybox",
        "true",
    ]);
    wait_for("clean exit", Duration::from_secs(10), || {
        inspect(&h, "clean")["State"]["Status"] == "exited" && monitors(&h).is_empty()
    });
    assert_eq!(inspect(&h, "clean")["RestartCount"], 0);
}

#[test]
fn always_restarts_after_exits_and_after_its_monitor_is_killed() {
    let h = TestHost::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "svc",
        "--net",
        "none",
        "--restart",
        "always",
        "busybox",
        "sleep",
        "1000",
    ]);
    let pid0 = inspect(&h, "svc")["State"]["Pid"].as_i64().unwrap();

    // 1. The process dies: the monitor starts it again.
    kill9(pid0 as i32);
    let mut pid1 = 0;
    wait_for("restart 1", Duration::from_secs(20), || {
        running_with_count(&h, "svc", 1, pid0)
            .map(|p| pid1 = p)
            .is_some()
    });

    // 2. Its monitor is killed: the next command adopts the container, and
    //    the adopting monitor restarts it when it dies.
    let monitor = parent_of(pid1);
    assert!(
        monitors(&h).contains(&monitor),
        "the init's parent is its monitor"
    );
    kill9(monitor);
    wait_for("the monitor gone", Duration::from_secs(5), || {
        !alive(monitor)
    });
    h.ok(&["ps"]);
    wait_for("an adopting monitor", Duration::from_secs(10), || {
        monitors(&h).iter().any(|&m| m != monitor)
    });
    kill9(pid1 as i32);
    let mut pid2 = 0;
    wait_for("restart 2 by the adopter", Duration::from_secs(20), || {
        running_with_count(&h, "svc", 2, pid1)
            .map(|p| pid2 = p)
            .is_some()
    });

    // 3. Monitor and process both dead (as after a crash or reboot): the
    //    next command records the exit and brings it back.
    let monitor = parent_of(pid2);
    kill9(monitor);
    kill9(pid2 as i32);
    wait_for("both gone", Duration::from_secs(5), || {
        !alive(monitor) && !alive(pid2 as i32)
    });
    wait_for(
        "restart 3 by reconciliation",
        Duration::from_secs(20),
        || running_with_count(&h, "svc", 3, pid2).is_some(),
    );

    // 4. stop ends it for good.
    h.ok(&["stop", "-t", "1", "svc"]);
    wait_for("no monitor left", Duration::from_secs(10), || {
        monitors(&h).is_empty()
    });
    let d = inspect(&h, "svc");
    assert_eq!(d["State"]["Status"], "exited");
    assert_eq!(d["RestartCount"], 3);
    h.ok(&["rm", "svc"]);
}

#[test]
fn a_restart_in_back_off_shows_restarting_and_stop_or_rm_ends_it() {
    let h = TestHost::new();
    for name in ["loop1", "loop2"] {
        h.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--net",
            "none",
            "--restart",
            "unless-stopped",
            "busybox",
            "sh",
            "-c",
            "exit 1",
        ]);
    }
    // The back-off doubles from 100 ms: soon a restart waits long enough
    // to be seen (both views at once: a short one may end between them).
    wait_for(
        "Restarting in ps and inspect",
        Duration::from_secs(30),
        || {
            let d = inspect(&h, "loop1");
            d["State"]["Status"] == "restarting"
                && d["State"]["Restarting"] == true
                && d["State"]["Running"] == true
                && d["RestartCount"].as_u64().unwrap() >= 1
                && status(&h, "loop1").starts_with("Restarting (1) ")
                // Listed without -a, as Docker lists it with the running ones.
                && h.ok(&["ps", "--format", "{{.Names}}"])
                    .lines()
                    .any(|l| l == "loop1")
        },
    );

    h.ok(&["stop", "loop1"]);
    assert!(
        status(&h, "loop1").starts_with("Exited (1)"),
        "{}",
        status(&h, "loop1")
    );
    let count = inspect(&h, "loop1")["RestartCount"].clone();

    // After 6 restarts the back-off is 3.2 s: time enough for the next
    // command to meet it still restarting.
    wait_for("loop2 in a long back-off", Duration::from_secs(30), || {
        let d = inspect(&h, "loop2");
        d["State"]["Status"] == "restarting" && d["RestartCount"].as_u64().unwrap() >= 6
    });
    let (code, err) = h.fails(&["rm", "loop2"]);
    assert_eq!(code, 1);
    assert!(
        one_line(&err).contains("cannot remove a restarting container"),
        "{err}"
    );
    h.ok(&["rm", "-f", "loop2"]);
    wait_for("no monitor left", Duration::from_secs(10), || {
        monitors(&h).is_empty()
    });
    assert_eq!(
        inspect(&h, "loop1")["RestartCount"],
        count,
        "stopped for good"
    );
    assert_eq!(h.ok(&["ps", "-aq"]).lines().count(), 1);
    h.ok(&["rm", "loop1"]);
    assert!(h.cgroups().is_empty() && h.mounts().is_empty());
}

#[test]
fn bad_restart_and_health_options_are_refused() {
    let h = TestHost::new();
    for (args, want) in [
        (
            vec!["--rm", "--restart", "always"],
            "Conflicting options: --restart and --rm",
        ),
        (vec!["--restart", "on-failure:-1"], "cannot be negative"),
        (vec!["--restart", "sometimes"], "unknown policy"),
        (
            vec!["--health-cmd", "true", "--health-interval", "10"],
            "--health-interval",
        ),
        (vec!["--health-interval", "1s"], "health check command"),
        (vec!["--stop-signal", "NOPE"], "invalid signal"),
    ] {
        let mut a = vec!["run", "-d", "--net", "none"];
        a.extend(args.iter());
        a.extend(["busybox", "true"]);
        let (code, err) = h.fails(&a);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(one_line(&err).contains(want), "{args:?}: {err}");
    }
    assert_eq!(h.ok(&["ps", "-aq"]), "");
}

#[test]
fn a_health_check_goes_healthy_then_unhealthy_and_healthcheck_run_reports_it() {
    let h = TestHost::new();
    let dir = TempDir::new("health");
    std::fs::write(dir.0.join("ok"), "").unwrap();
    let vol = format!("{}:/data", dir.path());
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--net",
        "none",
        "-v",
        &vol,
        "--health-cmd",
        "test -f /data/ok || { echo no-ok-file; exit 1; }",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "--health-timeout",
        "5s",
        "busybox",
        "sleep",
        "1000",
    ]);
    let first = status(&h, "web");
    assert!(
        first.ends_with("(health: starting)") || first.ends_with("(healthy)"),
        "{first}"
    );
    wait_for("healthy", Duration::from_secs(20), || {
        status(&h, "web").ends_with("(healthy)")
    });
    let d = inspect(&h, "web");
    assert_eq!(d["State"]["Health"]["Status"], "healthy");
    assert_eq!(d["Config"]["Healthcheck"]["Test"][0], "CMD-SHELL");
    assert_eq!(d["Config"]["Healthcheck"]["Interval"], 200_000_000);

    std::fs::remove_file(dir.0.join("ok")).unwrap();
    wait_for("unhealthy", Duration::from_secs(20), || {
        status(&h, "web").ends_with("(unhealthy)")
    });
    let health = inspect(&h, "web")["State"]["Health"].clone();
    assert_eq!(health["Status"], "unhealthy");
    assert!(health["FailingStreak"].as_u64().unwrap() >= 2, "{health}");
    let log = health["Log"].as_array().unwrap();
    assert!(!log.is_empty() && log.len() <= 5, "{health}");
    let last = log.last().unwrap();
    assert_eq!(last["ExitCode"], 1);
    assert_eq!(last["Output"], "no-ok-file\n");

    // `healthcheck run`: 1 and "unhealthy" while failing, 0 once it passes.
    let o = h.minirt(&["healthcheck", "run", "web"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o).trim(), "unhealthy");
    std::fs::write(dir.0.join("ok"), "").unwrap();
    let o = h.minirt(&["healthcheck", "run", "web"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(inspect(&h, "web")["State"]["Health"]["Status"], "healthy");

    // No check defined, no such container: 125, one line.
    h.ok(&[
        "run", "-d", "--name", "plain", "--net", "none", "busybox", "sleep", "1000",
    ]);
    let (code, err) = h.fails(&["healthcheck", "run", "plain"]);
    assert_eq!(code, 125);
    assert!(one_line(&err).contains("no defined healthcheck"), "{err}");
    assert!(inspect(&h, "plain")["State"].get("Health").is_none());
    let (code, _) = h.fails(&["healthcheck", "run", "nosuch"]);
    assert_eq!(code, 125);

    h.ok(&["rm", "-f", "web", "plain"]);
    wait_for("no monitor left", Duration::from_secs(10), || {
        monitors(&h).is_empty()
    });
}

#[test]
fn stop_sends_the_stop_signal_and_honours_the_stop_timeout() {
    let h = TestHost::new();
    let dir = TempDir::new("stopsig");
    let vol = format!("{}:/data", dir.path());
    h.ok(&[
        "run",
        "-d",
        "--name",
        "trap",
        "--net",
        "none",
        "-v",
        &vol,
        "--stop-signal",
        "SIGUSR1",
        "busybox",
        "sh",
        "-c",
        "trap 'echo USR1 > /data/got; exit 0' USR1; trap 'echo TERM > /data/got; exit 0' TERM; \
         touch /data/ready; while true; do sleep 0.05; done",
    ]);
    wait_for("the trap set", Duration::from_secs(10), || {
        dir.0.join("ready").exists()
    });
    assert_eq!(inspect(&h, "trap")["Config"]["StopSignal"], "SIGUSR1");
    h.ok(&["stop", "trap"]);
    assert_eq!(
        std::fs::read_to_string(dir.0.join("got")).unwrap(),
        "USR1\n"
    );
    assert_eq!(inspect(&h, "trap")["State"]["ExitCode"], 0);

    // A container that ignores its stop signal is killed after --stop-timeout.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "--net",
        "none",
        "-v",
        &vol,
        "--stop-timeout",
        "1",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; touch /data/ready2; while true; do sleep 0.05; done",
    ]);
    wait_for("the trap set", Duration::from_secs(10), || {
        dir.0.join("ready2").exists()
    });
    assert_eq!(inspect(&h, "stubborn")["Config"]["StopTimeout"], 1);
    h.ok(&["stop", "stubborn"]);
    assert_eq!(inspect(&h, "stubborn")["State"]["ExitCode"], 137);
    h.ok(&["rm", "trap", "stubborn"]);
}
