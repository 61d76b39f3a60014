//! Load and faults: many minirt processes at once, crashes mid-way, and the
//! state staying consistent through all of it.

use crate::common::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn links(h: &TestHost) -> Vec<String> {
    let o = cmd("ip", &["-n", &h.ns, "-o", "link", "show"]);
    stdout(&o)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n != "lo")
        .collect()
}

/// Starts `n` copies of minirt at once; returns their outputs.
fn at_once(h: &TestHost, n: usize, args: impl Fn(usize) -> Vec<String>) -> Vec<std::process::Output> {
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
    children.into_iter().map(|c| c.wait_with_output().expect("wait")).collect()
}

#[test]
fn thirty_concurrent_runs_get_distinct_reachable_addresses_and_rm_leaves_nothing() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.89.0.0/24", "par"]);
    let start = Instant::now();
    let outs = at_once(&h, 30, |i| {
        ["run", "-d", "--name", &format!("c{i}"), "--net", "par", "busybox", "sleep", "300"]
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
        let net = v["Networks"].as_str().unwrap().to_string();
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
    assert!(links(&h).is_empty(), "links left: {:?}", links(&h));
    assert!(h.mounts().is_empty() && h.cgroups().is_empty());
}

#[test]
fn twenty_concurrent_network_creates_get_disjoint_subnets() {
    let h = TestHost::new();
    let outs = at_once(&h, 20, |i| vec!["network".into(), "create".into(), format!("n{i}")]);
    for o in &outs {
        assert!(o.status.success(), "a concurrent create failed: {}", stderr(o));
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
            assert!(!m.contains(&n.network()) && !n.contains(&m.network()), "{m} overlaps {n}");
        }
        nets.push(n);
    }
    assert_eq!(nets.len(), 20, "{ls}");
    let outs = at_once(&h, 20, |i| vec!["network".into(), "rm".into(), format!("n{i}")]);
    for o in &outs {
        assert!(o.status.success(), "a concurrent network rm failed: {}", stderr(o));
    }
    assert!(links(&h).is_empty(), "links left: {:?}", links(&h));
}

#[test]
fn two_roots_side_by_side_under_load() {
    let a = TestHost::new();
    let b = TestHost::new();
    let run = |h: &TestHost| {
        at_once(h, 10, |i| {
            ["run", "-d", "--name", &format!("x{i}"), "--net", "none", "busybox", "sleep", "300"]
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
    let ids: Vec<String> = a.ok(&["ps", "-aq"]).split_whitespace().map(String::from).collect();
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    a.ok(&args);
    assert_eq!(a.ok(&["ps", "-aq"]).trim(), "");
    assert_eq!(b.ok(&["ps", "-q"]).lines().count(), 10, "rm in one root touched the other");
    let _ = Duration::ZERO;
}
