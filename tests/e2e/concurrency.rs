//! Many minirt processes at once on one root: parallel `run -d -p`, `rm -f`,
//! `network create`/`rm` of other networks and `ps`. Afterwards the store,
//! the devices and the nftables port-map elements are exactly what the
//! surviving containers need, and no command printed anything on stderr
//! (no "restoring firewall rules" or teardown warning).

use crate::common::{links, stderr, stdout, TestHost};
use std::collections::BTreeSet;
use std::sync::Mutex;

/// Elements of one of minirt's nftables maps, whitespace-normalised.
fn map_elements(h: &TestHost, map: &str) -> BTreeSet<String> {
    let table = h.cgroup_parent().replace('-', "_");
    let o = h.in_ns("nft", &["list", "map", "inet", &table, map]);
    let text = stdout(&o).split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(start) = text.find("elements = {") else {
        return BTreeSet::new();
    };
    let rest = &text[start + "elements = {".len()..];
    let body = rest.split('}').next().unwrap_or("");
    body.split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect()
}

/// Runs a command that must succeed silently; records what went wrong.
fn quietly(h: &TestHost, problems: &Mutex<Vec<String>>, args: &[&str]) -> String {
    let o = h.minirt(args);
    let err = stderr(&o);
    if !o.status.success() || !err.trim().is_empty() {
        problems
            .lock()
            .unwrap()
            .push(format!("minirt {args:?} ({:?}): {err}", o.status.code()));
    }
    stdout(&o)
}

const WORKERS: usize = 3;
const ROUNDS: usize = 4;

#[test]
fn parallel_runs_removals_network_changes_and_listings_leave_exactly_the_expected_state() {
    mixed(true, true);
}

/// The same without `network create`/`rm`: containers only.
#[test]
fn parallel_runs_removals_and_listings_leave_exactly_the_expected_state() {
    mixed(false, true);
}

/// Without published ports (so without the firewall's interleavings): the
/// engine's part, reconciles from `ps` and `rm` never finishing or removing
/// a container another process is starting.
#[test]
fn parallel_unpublished_runs_removals_and_listings_leave_exactly_the_expected_state() {
    mixed(false, false);
}

/// Networks created and removed beside unpublished containers.
#[test]
fn parallel_unpublished_runs_and_network_changes_leave_exactly_the_expected_state() {
    mixed(true, false);
}

fn mixed(network_changes: bool, publish: bool) {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.230.0.0/24", "shared"]);
    h.ok(&["run", "--rm", "--net", "none", "busybox", "true"]);
    let problems = Mutex::new(vec![]);
    let kept = Mutex::new(vec![]);
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let (h, problems, kept) = (&h, &problems, &kept);
            s.spawn(move || {
                for r in 0..ROUNDS {
                    let name = format!("w{w}r{r}");
                    let port = format!("{}:80", 8200 + w * 10 + r);
                    let mut args = vec!["run", "-d", "--name", &name, "--net", "shared"];
                    if publish {
                        args.extend(["-p", &port]);
                    }
                    args.extend(["busybox", "sleep", "300"]);
                    quietly(h, problems, &args);
                    // Every other container goes again at once.
                    if r % 2 == 0 {
                        quietly(h, problems, &["rm", "-f", &name]);
                    } else {
                        kept.lock().unwrap().push((name, 8200 + w * 10 + r));
                    }
                }
            });
        }
        let (h, problems) = (&h, &problems);
        s.spawn(move || {
            for k in (0..ROUNDS).filter(|_| network_changes) {
                let name = format!("other{k}");
                let subnet = format!("10.{}.0.0/24", 231 + k);
                quietly(
                    h,
                    problems,
                    &["network", "create", "--subnet", &subnet, &name],
                );
                quietly(h, problems, &["network", "rm", &name]);
            }
        });
        s.spawn(move || {
            for _ in 0..ROUNDS * 2 {
                quietly(h, problems, &["ps"]);
                quietly(h, problems, &["network", "ls"]);
            }
        });
    });
    let problems = problems.into_inner().unwrap();
    assert!(
        problems.is_empty(),
        "commands failed or warned:\n{}",
        problems.join("\n")
    );

    // The store: exactly the kept containers, all running, one network.
    let mut kept = kept.into_inner().unwrap();
    kept.sort();
    let names: BTreeSet<String> = h
        .ok(&["ps", "-a", "--format", "json"])
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["State"], "running", "{l}");
            v["Names"].as_str().unwrap().to_string()
        })
        .collect();
    let want_names: BTreeSet<String> = kept.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, want_names);
    let nets = h.ok(&["network", "ls"]);
    let nets: Vec<&str> = nets
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(nets, ["shared"]);
    // Port maps: one element per kept container, to its own address.
    let mut want_elements = BTreeSet::new();
    for (name, port) in &kept {
        let v: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", name])).unwrap();
        let ip = v[0]["NetworkSettings"]["Networks"]["shared"]["IPAddress"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no address in {v}"))
            .to_string();
        if publish {
            want_elements.insert(format!("{port} : {ip} . 80"));
        }
    }
    crate::common::wait_for(
        "the port maps to hold exactly the kept containers",
        std::time::Duration::from_secs(10),
        || map_elements(&h, "pm_any_tcp") == want_elements,
    );
    // Devices: the shared bridge and one veth per kept container (the
    // removed containers' veths go with their namespaces, a moment later).
    let shared = {
        let v: serde_json::Value =
            serde_json::from_str(&h.ok(&["network", "inspect", "shared"])).unwrap();
        v[0]["Options"]["com.docker.network.bridge.name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    crate::common::wait_for(
        "the devices to be the bridge and the kept containers' veths",
        std::time::Duration::from_secs(10),
        || {
            let l = links(&h);
            l.contains(&shared)
                && l.len() == 1 + kept.len()
                && l.iter().filter(|n| n.starts_with("mrv")).count() == kept.len()
        },
    );
    // Chains: only the shared network's (other networks left nothing).
    let table = h.cgroup_parent().replace('-', "_");
    let ruleset = stdout(&h.in_ns("nft", &["list", "table", "inet", &table]));
    let chains: Vec<&str> = ruleset
        .lines()
        .filter_map(|l| l.trim().strip_prefix("chain nw_"))
        .collect();
    // out, in, hairpin, masq and the raw-prerouting guard of one network.
    assert_eq!(chains.len(), 5, "chains of networks: {chains:?}");
    let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
    let mut args = vec!["rm", "-f"];
    args.extend(names);
    h.ok(&args);
    h.ok(&["network", "rm", "shared"]);
    crate::common::wait_for(
        "every device to go",
        std::time::Duration::from_secs(10),
        || links(&h).is_empty(),
    );
}
