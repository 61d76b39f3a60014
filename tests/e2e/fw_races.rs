//! Firewall changes of concurrent minirt processes (issue 10, part 5): mixed
//! `rm -f`, `network rm` and `run -d -p` at once leave exactly the port-map
//! elements and chains the store owns, and print no firewall warnings.

use crate::common::*;
use std::collections::BTreeSet;

/// `pm_any_tcp` elements as "hostport : ip . port".
fn port_map(h: &TestHost) -> BTreeSet<String> {
    let o = h.in_ns(
        "nft",
        &["-j", "list", "map", "inet", &nft_table(h), "pm_any_tcp"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("nft json");
    let mut out = BTreeSet::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        for e in item["map"]["elem"].as_array().into_iter().flatten() {
            let val = &e[1]["concat"];
            out.insert(format!(
                "{} : {} . {}",
                e[0],
                val[0].as_str().unwrap_or(""),
                val[1]
            ));
        }
    }
    out
}

/// Chain names of the instance's table.
fn chains(h: &TestHost) -> Vec<String> {
    let o = h.in_ns("nft", &["-j", "list", "chains", "inet"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap_or_default();
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["chain"]["table"] == nft_table(h).as_str())
        .filter_map(|i| i["chain"]["name"].as_str().map(String::from))
        .collect()
}

fn ip_of(h: &TestHost, c: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", c])).expect("inspect");
    v[0]["NetworkSettings"]["Networks"]["n1"]["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn network_id(h: &TestHost, n: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&h.ok(&["network", "inspect", n])).expect("inspect");
    v[0]["Id"].as_str().unwrap_or_default().to_string()
}

#[test]
fn concurrent_rm_network_rm_and_run_leave_exactly_what_the_store_owns() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.94.0.0/24", "n1"]);
    for round in 0..3 {
        let gone: Vec<String> = (0..2).map(|i| format!("x{round}{i}")).collect();
        for (i, n) in gone.iter().enumerate() {
            h.ok(&[
                "network",
                "create",
                "--subnet",
                &format!("10.95.{}.0/24", round * 2 + i),
                n,
            ]);
        }
        let gone_ids: Vec<String> = gone.iter().map(|n| network_id(&h, n)).collect();
        let old: Vec<String> = (0..3).map(|i| format!("o{round}{i}")).collect();
        for (i, c) in old.iter().enumerate() {
            let p = format!("{}:80", 8100 + round * 10 + i);
            h.ok(&[
                "run", "-d", "--name", c, "--net", "n1", "-p", &p, "busybox", "sleep", "600",
            ]);
        }
        // Everything at once: two removals, two network removals, two runs.
        let mut jobs: Vec<Vec<String>> = vec![];
        for c in &old[..2] {
            jobs.push(vec!["rm".into(), "-f".into(), c.clone()]);
        }
        for n in &gone {
            jobs.push(vec!["network".into(), "rm".into(), n.clone()]);
        }
        let new: Vec<String> = (0..2).map(|i| format!("n{round}{i}")).collect();
        for (i, c) in new.iter().enumerate() {
            jobs.push(
                [
                    "run",
                    "-d",
                    "--name",
                    c,
                    "--net",
                    "n1",
                    "-p",
                    &format!("{}:80", 8200 + round * 10 + i),
                    "busybox",
                    "sleep",
                    "600",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            );
        }
        let children: Vec<_> = jobs
            .iter()
            .map(|j| {
                let args: Vec<&str> = j.iter().map(String::as_str).collect();
                (
                    j.clone(),
                    h.command(&args)
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .expect("spawn"),
                )
            })
            .collect();
        for (j, c) in children {
            let o = c.wait_with_output().expect("wait");
            assert!(o.status.success(), "{j:?}: {}", stderr(&o));
            let err = stderr(&o);
            assert!(
                !err.contains("restoring") && !err.contains("WARN"),
                "{j:?} warned: {err}"
            );
        }
        // The elements are exactly the store's bindings.
        let mut want = BTreeSet::new();
        for r in 0..=round {
            let keep = format!("o{r}2");
            want.insert(format!("{} : {} . 80", 8100 + r * 10 + 2, ip_of(&h, &keep)));
            for i in 0..2 {
                let c = format!("n{r}{i}");
                want.insert(format!("{} : {} . 80", 8200 + r * 10 + i, ip_of(&h, &c)));
            }
        }
        assert_eq!(port_map(&h), want, "round {round}");
        let left = chains(&h);
        for id in &gone_ids {
            let prefix: String = id.chars().take(16).collect();
            assert!(
                !left.iter().any(|c| c.contains(&prefix)),
                "chains of a removed network left: {left:?}"
            );
        }
    }
    let ids = h.ok(&["ps", "-aq"]);
    let mut args = vec!["rm", "-f"];
    args.extend(ids.split_whitespace());
    h.ok(&args);
    h.ok(&["network", "rm", "n1"]);
    assert!(chains(&h).is_empty(), "{:?}", chains(&h));
}
