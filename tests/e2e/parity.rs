//! Small Docker parity items: `update --restart` on a running container,
//! `ps --filter health=`.

use crate::common::*;
use std::time::Duration;

fn inspect(h: &TestHost, c: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", c])).unwrap();
    v[0].clone()
}

#[test]
fn update_restart_changes_the_policy_of_a_running_container() {
    let h = TestHost::new();
    let dir = TempDir::new("upd-restart");
    let vol = format!("{}:/data", dir.path());
    // Exits 3 each time /data/exit appears (and removes it).
    h.ok(&[
        "run",
        "-d",
        "--name",
        "job",
        "--net",
        "none",
        "-v",
        &vol,
        "busybox",
        "sh",
        "-c",
        "while [ ! -e /data/exit ]; do sleep 0.05; done; rm /data/exit; exit 3",
    ]);
    assert_eq!(
        inspect(&h, "job")["HostConfig"]["RestartPolicy"]["Name"],
        "no"
    );
    assert_eq!(
        h.ok(&["update", "--restart", "on-failure:1", "job"]),
        "job\n"
    );
    let d = inspect(&h, "job");
    assert_eq!(d["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(d["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 1);
    let pid = d["State"]["Pid"].as_i64().unwrap();

    // The next exit is restarted once, the one after is not.
    std::fs::write(dir.0.join("exit"), "").unwrap();
    wait_for("the restart", Duration::from_secs(20), || {
        let d = inspect(&h, "job");
        d["RestartCount"] == 1 && d["State"]["Running"] == true && d["State"]["Pid"] != pid
    });
    wait_for("the new run", Duration::from_secs(10), || {
        !dir.0.join("exit").exists()
    });
    std::fs::write(dir.0.join("exit"), "").unwrap();
    assert_eq!(h.ok(&["wait", "job"]), "3\n");
    wait_for("no second restart", Duration::from_secs(10), || {
        h.ok(&["ps", "-a", "--filter", "name=job", "--format", "{{.State}}"]) == "exited\n"
    });
    assert_eq!(inspect(&h, "job")["RestartCount"], 1);

    // Bad policies, and --rm containers, are refused with one line.
    let (code, err) = h.fails(&["update", "--restart", "on-failure:-1", "job"]);
    assert_eq!(code, 125);
    assert!(
        one_line(&err).contains("maximum retry count cannot be negative"),
        "{err}"
    );
    h.ok(&[
        "run", "-d", "--rm", "--name", "tmp", "--net", "none", "busybox", "sleep", "600",
    ]);
    let (code, err) = h.fails(&["update", "--restart", "always", "tmp"]);
    assert_eq!(code, 1);
    assert!(one_line(&err).contains("AutoRemove is enabled"), "{err}");
    assert_eq!(
        inspect(&h, "tmp")["HostConfig"]["RestartPolicy"]["Name"],
        "no"
    );
    h.ok(&["rm", "-f", "job", "tmp"]);
}

#[test]
fn ps_filters_by_health() {
    let h = TestHost::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "good",
        "--net",
        "none",
        "--health-cmd",
        "true",
        "--health-interval",
        "200ms",
        "busybox",
        "sleep",
        "600",
    ]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "bad",
        "--net",
        "none",
        "--health-cmd",
        "false",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "600",
    ]);
    h.ok(&[
        "run", "-d", "--name", "plain", "--net", "none", "busybox", "sleep", "600",
    ]);
    let names = |health: &str| {
        h.ok(&[
            "ps",
            "--filter",
            &format!("health={health}"),
            "--format",
            "{{.Names}}",
        ])
    };
    wait_for("good healthy", Duration::from_secs(20), || {
        names("healthy") == "good\n"
    });
    wait_for("bad unhealthy", Duration::from_secs(20), || {
        names("unhealthy") == "bad\n"
    });
    assert_eq!(names("none"), "plain\n");
    // Each change of health is an event (Docker's `health_status: ...`).
    let ev = h.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--filter",
        "event=health_status",
        "--format",
        "{{.Actor.Attributes.name}} {{.Action}}",
    ]);
    assert!(
        ev.lines().any(|l| l == "good health_status: healthy"),
        "{ev}"
    );
    assert!(
        ev.lines().any(|l| l == "bad health_status: unhealthy"),
        "{ev}"
    );
    assert_eq!(names("starting"), "");
    let (code, err) = h.fails(&["ps", "--filter", "health=sick"]);
    assert_eq!(code, 1);
    assert_eq!(
        one_line(&err),
        "minirt: Unrecognised filter value for health: sick"
    );
    h.ok(&["rm", "-f", "good", "bad", "plain"]);
}

/// `rm -f` of several `--rm` containers: the kills go out first, so some
/// monitors remove their container before `rm` reaches it; each is still
/// reported removed (Docker prints every name and exits 0).
#[test]
fn rm_force_of_auto_removed_containers_reports_each_removed() {
    let h = TestHost::new();
    let names = ["ar1", "ar2", "ar3", "ar4", "ar5"];
    for n in names {
        h.ok(&[
            "run", "-d", "--rm", "--name", n, "--net", "none", "busybox", "sleep", "600",
        ]);
    }
    let mut args = vec!["rm", "-f"];
    args.extend(names);
    let out = h.ok(&args);
    assert_eq!(out, names.map(|n| format!("{n}\n")).concat());
    wait_for("the containers to go", Duration::from_secs(10), || {
        h.ok(&["ps", "-aq"]).is_empty()
    });
}
