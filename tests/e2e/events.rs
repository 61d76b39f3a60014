//! `minirt events` as a Docker user reads it: a follower started before a
//! container's lifecycle sees Docker's actions in order; `--since/--until`
//! windows print the past and exit; networks, volumes and images have their
//! events; a bad filter is one line and 125.

use crate::common::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `minirt events ARGS` in the background; its stdout lines as they come.
struct Follower {
    _proc: Proc,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Follower {
    fn start(h: &TestHost, args: &[&str]) -> Follower {
        let mut all = vec!["events"];
        all.extend_from_slice(args);
        let mut child = h.command(&all).stdout(Stdio::piped()).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(vec![]));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
        Follower {
            _proc: Proc(child),
            lines,
        }
    }

    /// Waits until `n` lines arrived; all lines so far.
    fn wait_lines(&self, n: usize) -> Vec<String> {
        let ok = eventually(Duration::from_secs(30), || {
            self.lines.lock().unwrap().len() >= n
        });
        let got = self.lines.lock().unwrap().clone();
        assert!(ok, "expected {n} event lines, got {got:#?}");
        got
    }
}

/// Seconds.nanoseconds since the epoch: an `--since` value of now.
fn now_arg() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

#[test]
fn a_follower_sees_a_containers_lifecycle_in_dockers_order() {
    let h = TestHost::new();
    let since = now_arg();
    let f = Follower::start(
        &h,
        &[
            "--since",
            &since,
            "--filter",
            "container=evweb",
            "--format",
            "{{.Action}}",
        ],
    );
    let script = "trap 'exit 0' TERM; sleep 600 & wait";
    h.ok(&[
        "create",
        "--name",
        "evweb",
        "--net",
        "none",
        "-l",
        "tier=front",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    h.ok(&["start", "evweb"]);
    h.ok(&["pause", "evweb"]);
    h.ok(&["unpause", "evweb"]);
    h.ok(&["exec", "evweb", "true"]);
    h.ok(&["rename", "evweb", "evweb2"]);
    h.ok(&["stop", "evweb2"]);
    h.ok(&["start", "evweb2"]);
    h.ok(&["restart", "evweb2"]);
    h.ok(&["kill", "evweb2"]);
    h.ok(&["wait", "evweb2"]);
    h.ok(&["rm", "evweb2"]);
    let want = [
        "create",
        "start",
        "pause",
        "unpause",
        "exec_create: true",
        "exec_start: true",
        "exec_die",
        "rename",
        "kill",
        "die",
        "stop",
        "start",
        "kill",
        "die",
        "stop",
        "start",
        "restart",
        "kill",
        "die",
        "destroy",
    ];
    let got = f.wait_lines(want.len());
    assert_eq!(got, want);

    // The same events in Docker's line and JSON shapes, with attributes.
    let lines = h.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        "0s",
        "--filter",
        "event=die",
    ]);
    let first = lines.lines().next().unwrap();
    assert!(
        first.contains(" container die ")
            && first.ends_with("(exitCode=0, image=busybox, name=evweb2, tier=front)"),
        "{first}"
    );
    let json = h.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        "0s",
        "--filter",
        "event=rename",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["Type"], "container");
    assert_eq!(v["status"], "rename");
    assert_eq!(v["from"], "busybox");
    assert_eq!(v["Actor"]["Attributes"]["oldName"], "/evweb");
    assert_eq!(v["Actor"]["Attributes"]["name"], "evweb2");
    assert_eq!(v["scope"], "local");
    assert!(v["timeNano"].as_i64().unwrap() / 1_000_000_000 == v["time"].as_i64().unwrap());
    // The follower printed nothing for other containers.
    h.ok(&[
        "run", "--rm", "--net", "none", "--name", "other", "busybox", "true",
    ]);
    assert_eq!(f.lines.lock().unwrap().len(), want.len());
}

#[test]
fn since_and_until_windows_print_the_past_and_exit() {
    let h = TestHost::new();
    h.ok(&[
        "run", "--rm", "--net", "none", "--name", "first", "busybox", "true",
    ]);
    // The boundary: just after the first container's last event.
    let json = h.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--format",
        "{{json .}}",
    ]);
    let last: serde_json::Value = serde_json::from_str(json.lines().last().unwrap()).unwrap();
    assert_eq!(last["Action"], "destroy");
    let t = last["timeNano"].as_i64().unwrap() + 1;
    let boundary = format!("{}.{:09}", t / 1_000_000_000, t % 1_000_000_000);
    h.ok(&[
        "run", "--rm", "--net", "none", "--name", "second", "busybox", "true",
    ]);
    let names = |since: &str, until: &str| {
        h.ok(&[
            "events",
            "--since",
            since,
            "--until",
            until,
            "--filter",
            "type=container",
            "--format",
            "{{.Actor.Attributes.name}} {{.Action}}",
        ])
    };
    let before = names("0", &boundary);
    assert_eq!(
        before,
        "first create\nfirst start\nfirst die\nfirst destroy\n"
    );
    let after = names(&boundary, "0s");
    assert_eq!(
        after,
        "second create\nsecond start\nsecond die\nsecond destroy\n"
    );
    // An RFC 3339 --until in the past, --since alone as a duration.
    assert_eq!(names("1h", "2000-01-01T00:00:00Z"), "");
    // --until in the near future: the command follows, then ends by itself.
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let until = soon.to_string();
    let o = h.minirt(&[
        "events",
        "--since",
        "1h",
        "--until",
        &until,
        "--filter",
        "event=create",
    ]);
    assert!(o.status.success());
    assert_eq!(stdout(&o).lines().count(), 2, "{}", stdout(&o));
}

#[test]
fn networks_volumes_and_images_have_events() {
    let h = TestHost::new();
    // The bundled image's load is before the window.
    h.ok(&["run", "--rm", "--net", "none", "busybox", "true"]);
    let since = now_arg();
    h.ok(&["network", "create", "evnet"]);
    h.ok(&["volume", "create", "evvol"]);
    h.ok(&["tag", "busybox", "evimg:1"]);
    h.ok(&["rmi", "evimg:1"]);
    h.ok(&["volume", "rm", "evvol"]);
    h.ok(&["network", "rm", "evnet"]);
    let ev = |filter: &str| {
        h.ok(&[
            "events",
            "--since",
            &since,
            "--until",
            "0s",
            "--filter",
            filter,
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        ])
    };
    assert_eq!(
        ev("type=network"),
        "network create evnet\nnetwork destroy evnet\n"
    );
    let vols = h.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        "0s",
        "--filter",
        "volume=evvol",
        "--format",
        "{{.Action}} {{.Actor.ID}}",
    ]);
    assert_eq!(vols, "create evvol\ndestroy evvol\n");
    let imgs = ev("type=image");
    assert!(
        imgs.starts_with("image tag evimg:1\nimage untag sha256:"),
        "{imgs}"
    );
}

#[test]
fn bad_filters_and_times_are_one_line_and_125() {
    let h = TestHost::new();
    for args in [
        &["events", "--filter", "bogus=1"][..],
        &["events", "--filter", "container"],
        &["events", "--filter", "type=car"],
        &["events", "--since", "yesterday"],
        &["events", "--until", "2026-13-01"],
        &["events", "--format", "{{.Nope"],
    ] {
        let (code, err) = h.fails(args);
        assert_eq!(code, 125, "{args:?}: {err}");
        one_line(&err);
    }
    let (_, err) = h.fails(&["events", "--filter", "bogus=1"]);
    assert_eq!(err.trim(), "minirt: invalid filter 'bogus'");
}
