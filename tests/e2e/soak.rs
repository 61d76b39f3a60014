//! Soak: many consecutive `run --rm` with a user network and a published
//! port must leave no residue (devices, rules, map elements, mounts, cgroups,
//! responder fds, rows) and must not slow down.
//!
//! 500 runs by default (a debug build takes 33 s on a quiet 2-core machine,
//! 85 s on a loaded one); MINIRT_SOAK_RUNS=N changes that (at least 100).

use crate::common::*;
use crate::limits::{links, row_counts};
use std::time::{Duration, Instant};

/// `nft list ruleset` with packet/byte counters blanked (traffic, not state).
fn rules(h: &TestHost) -> String {
    let text = stdout(&h.in_ns("nft", &["list", "ruleset"]));
    text.lines()
        .map(|l| match l.find("counter packets") {
            Some(i) => format!("{}counter", &l[..i]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Elements of every nftables set and map of the test host.
fn map_elements(h: &TestHost) -> usize {
    let text = stdout(&h.in_ns("nft", &["-j", "list", "ruleset"]));
    let v: serde_json::Value = serde_json::from_str(&text).expect("nft -j json");
    v["nftables"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get("set").or_else(|| i.get("map")))
                .filter_map(|s| s["elem"].as_array().map(Vec::len))
                .sum()
        })
        .unwrap_or(0)
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

fn dns_pid(h: &TestHost) -> Option<i32> {
    std::fs::read_to_string(h.run_root.join("dns.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[derive(Debug, PartialEq)]
struct State {
    links: Vec<String>,
    rules: String,
    elements: usize,
    mounts: Vec<String>,
    cgroups: usize,
    dns_fds: usize,
    rows: Vec<(String, i64)>,
    /// Entries under root/containers and run_root (container dirs, sockets, pid files).
    files: Vec<usize>,
}

fn entries(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            n += 1;
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            }
        }
    }
    n
}

fn state(h: &TestHost) -> State {
    State {
        links: links(h),
        rules: rules(h),
        elements: map_elements(h),
        mounts: h.mounts(),
        cgroups: h.cgroups().len(),
        dns_fds: dns_pid(h).map(fd_count).unwrap_or(0),
        rows: row_counts(&h.root),
        files: vec![entries(&h.root.join("containers")), entries(&h.run_root)],
    }
}

fn one_run(h: &TestHost) -> Duration {
    let t = Instant::now();
    h.ok(&[
        "run", "--rm", "--net", "soak", "-p", "80", "busybox", "true",
    ]);
    t.elapsed()
}

#[test]
fn consecutive_runs_leave_no_residue_and_do_not_slow_down() {
    let runs: usize = std::env::var("MINIRT_SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
        .max(100);
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.93.0.0/24", "soak"]);
    // A long-lived container keeps the bridge and the DNS responder alive, so
    // their state (and the responder's fds) is measured across all runs.
    h.ok(&[
        "run", "-d", "--name", "anchor", "--net", "soak", "-p", "8080:80", "busybox", "sleep",
        "3600",
    ]);
    // One warm-up run: first-use work (image rows, layer cache) is not drift.
    let links_before_warmup = state(&h).links;
    one_run(&h);
    // Its veth goes with its namespace, a moment after it returns.
    wait_for(
        "the warm-up run's veth to go",
        Duration::from_secs(10),
        || state(&h).links == links_before_warmup,
    );
    let dns_before = dns_pid(&h);
    // The database with its write-ahead log (pages move from one to the other).
    let db_size = || {
        ["minirt.db", "minirt.db-wal"]
            .iter()
            .map(|f| {
                std::fs::metadata(h.root.join(f))
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .sum::<u64>()
    };
    let db_before = db_size();
    let before = state(&h);
    let start = Instant::now();
    let times: Vec<Duration> = (0..runs).map(|_| one_run(&h)).collect();
    let total = start.elapsed();
    // The last run's veth goes with its namespace, a moment after it returns.
    eventually(Duration::from_secs(10), || state(&h) == before);
    let after = state(&h);
    assert_eq!(dns_pid(&h), dns_before, "the DNS responder was replaced");
    assert_eq!(after, before, "state grew over {runs} runs");

    eprintln!(
        "figure: soak database + WAL {} -> {} bytes",
        db_before,
        db_size()
    );
    let first = median(times[..50].to_vec());
    let mut last = median(times[runs - 50..].to_vec());
    eprintln!(
        "figure: soak {runs} runs in {total:?}; median first 50 {first:?}, last 50 {last:?}; \
         devices {} rules {} lines, {} set/map elements, {} mounts, {} cgroups, {} responder fds, rows {:?}, files {:?} (unchanged)",
        after.links.len(),
        after.rules.lines().count(),
        after.elements,
        after.mounts.len(),
        after.cgroups,
        after.dns_fds,
        after.rows,
        after.files,
    );
    // Medians of 50 runs move by +-15% on this 2-core VM from noise alone;
    // drift persists, noise does not: measure the last window up to three
    // more times before calling it drift.
    for _ in 0..3 {
        if last.as_secs_f64() <= first.as_secs_f64() * 1.10 {
            break;
        }
        let again: Vec<Duration> = (0..50).map(|_| one_run(&h)).collect();
        last = median(again);
        eprintln!("figure: soak re-measured last 50: median {last:?}");
        eventually(Duration::from_secs(10), || state(&h) == before);
        assert_eq!(state(&h), before, "state grew over the re-measurement");
    }
    assert!(
        last.as_secs_f64() <= first.as_secs_f64() * 1.10,
        "runs slowed down: median of the first 50 {first:?}, of the last 50 {last:?}"
    );
    h.ok(&["rm", "-f", "anchor"]);
    h.ok(&["network", "rm", "soak"]);
}
