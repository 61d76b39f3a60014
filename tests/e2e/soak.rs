//! Soak: many consecutive `run --rm` with a user network and a published
//! port must leave no residue: devices, rules, map elements, mounts,
//! cgroups, the DNS responder's fds, rows, files in the roots, and the
//! database with its write-ahead log. Whether the runs slow down is a figure
//! of `scripts/bench --only s`, not an assertion here: a timed test fails on
//! a busy machine for reasons that are not minirt's.
//!
//! 500 runs by default (a debug build takes 33 s on a quiet 2-core machine,
//! 85 s on a loaded one); MINIRT_SOAK_RUNS=N changes that (at least 100).

use crate::common::*;
use crate::limits::row_counts;
use std::time::Duration;

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

/// The event log's bound for the soak's commands: small, so the warm-up
/// fills it and the measured runs see it at its bound (pruned as it goes),
/// not growing towards the default 10 000 rows.
const EVENTS_KEEP: i64 = 64;

/// `h.ok` with the soak's event-log bound.
fn ok(h: &TestHost, args: &[&str]) {
    let o = h
        .command(args)
        .env("MINIRT_EVENTS_KEEP", EVENTS_KEEP.to_string())
        .output()
        .expect("run minirt");
    assert!(o.status.success(), "minirt {args:?}: {}", stderr(&o));
}

/// Rows in the event log.
fn event_rows(h: &TestHost) -> i64 {
    let c = rusqlite::Connection::open_with_flags(
        h.root.join("minirt.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the database");
    c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("count events")
}

fn one_run(h: &TestHost) {
    ok(
        h,
        &[
            "run", "--rm", "--net", "soak", "-p", "80", "busybox", "true",
        ],
    );
}

/// Sizes of the database file and of its write-ahead log, in bytes.
fn db_sizes(h: &TestHost) -> (u64, u64) {
    let size = |f: &str| {
        std::fs::metadata(h.root.join(f))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    (size("minirt.db"), size("minirt.db-wal"))
}

/// SQLite's page size for this database (its header, bytes 16..18).
fn page_size(h: &TestHost) -> u64 {
    let head = std::fs::read(h.root.join("minirt.db")).expect("read minirt.db");
    match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65536,
        n => u64::from(n),
    }
}

#[test]
fn consecutive_runs_leave_no_residue() {
    let runs: usize = std::env::var("MINIRT_SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
        .max(100);
    let h = TestHost::new();
    ok(
        &h,
        &["network", "create", "--subnet", "10.93.0.0/24", "soak"],
    );
    // A long-lived container keeps the bridge and the DNS responder alive, so
    // their state (and the responder's fds) is measured across all runs.
    ok(
        &h,
        &[
            "run", "-d", "--name", "anchor", "--net", "soak", "-p", "8080:80", "busybox", "sleep",
            "3600",
        ],
    );
    // Warm-up runs: first-use work (image rows, layer cache, the first pages
    // of every table and index) is not growth.
    let links_before_warmup = state(&h).links;
    for _ in 0..20 {
        one_run(&h);
    }
    // The last veth goes with its namespace, a moment after the run returns.
    wait_for(
        "the warm-up runs' veths to go",
        Duration::from_secs(10),
        || state(&h).links == links_before_warmup,
    );
    let dns_before = dns_pid(&h);
    let (db_before, wal_before) = db_sizes(&h);
    let before = state(&h);
    for _ in 0..runs {
        one_run(&h);
    }
    // The last run's veth goes with its namespace, a moment after it returns.
    eventually(Duration::from_secs(10), || state(&h) == before);
    let after = state(&h);
    assert_eq!(dns_pid(&h), dns_before, "the DNS responder was replaced");
    assert_eq!(after, before, "state grew over {runs} runs");
    // Rows come and go; their pages are reused, so the database file stays
    // within a few pages of its warm size, and the write-ahead log is
    // checkpointed (every 64 pages) instead of growing with every run.
    let (db_after, wal_after) = db_sizes(&h);
    // The runs were recorded, and the log stayed at its bound (pruned every
    // quarter of it).
    let events = event_rows(&h);
    assert!(
        (EVENTS_KEEP..=EVENTS_KEEP + EVENTS_KEEP / 4).contains(&events),
        "the event log holds {events} rows, its bound is {EVENTS_KEEP} (+{})",
        EVENTS_KEEP / 4
    );
    let page = page_size(&h);
    eprintln!(
        "figure: soak database {db_before} -> {db_after} bytes, WAL {wal_before} -> {wal_after} bytes (page {page})"
    );
    assert!(
        db_after <= db_before + 16 * page,
        "the database grew over {runs} runs: {db_before} -> {db_after} bytes"
    );
    assert!(
        wal_after <= wal_before.max(256 * page),
        "the write-ahead log grew over {runs} runs: {wal_before} -> {wal_after} bytes"
    );
    eprintln!(
        "figure: soak {runs} runs: devices {} rules {} lines, {} set/map elements, {} mounts, {} cgroups, {} responder fds, rows {:?}, files {:?} (unchanged)",
        after.links.len(),
        after.rules.lines().count(),
        after.elements,
        after.mounts.len(),
        after.cgroups,
        after.dns_fds,
        after.rows,
        after.files,
    );
    ok(&h, &["rm", "-f", "anchor"]);
    ok(&h, &["network", "rm", "soak"]);
}
