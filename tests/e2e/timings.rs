//! `minirt --timings`: one line per run-path step on stderr, or appended to
//! the file MINIRT_TIMINGS names (how a detached container's monitor reports).

use crate::common::*;
use std::time::Duration;

fn steps(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            (it.next()? == "timing").then_some(())?;
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn timings_name_every_step_of_a_networked_run() {
    let h = TestHost::new();
    let o = h.minirt(&["--timings", "run", "--rm", "busybox", "true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = steps(&stderr(&o));
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    for step in [
        "image",
        "create-tx",
        "rootfs",
        "cgroup",
        "clone",
        "network",
        "release",
        "wait",
        "net-detach",
        "unmount",
        "store-update",
        "total",
    ] {
        assert!(names.contains(&step), "no {step} in {names:?}");
    }
    let total = got.iter().find(|(n, _)| n == "total").map(|(_, us)| *us);
    let network = got.iter().find(|(n, _)| n == "network").map(|(_, us)| *us);
    assert!(network > Some(0) && network < total, "{got:?}");
    // Without the flag, nothing of the kind is printed.
    let o = h.minirt(&["run", "--rm", "--net", "none", "busybox", "true"]);
    assert!(steps(&stderr(&o)).is_empty(), "{}", stderr(&o));
}

#[test]
fn a_detached_monitor_appends_its_timings_to_the_named_file() {
    let h = TestHost::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("timings.log");
    let o = h
        .command(&["run", "-d", "busybox", "true"])
        .env("MINIRT_TIMINGS", &file)
        .output()
        .expect("run minirt");
    assert!(o.status.success(), "{}", stderr(&o));
    // The monitor writes net-detach once the container has exited.
    wait_for(
        "the monitor's teardown timings",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            steps(&text).iter().any(|(n, _)| n == "net-detach")
        },
    );
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let names: Vec<String> = steps(&text).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"network".to_string()), "{names:?}");
}
