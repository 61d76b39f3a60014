//! The same commands against Debian's Podman (whose `inspect` is
//! Docker-shaped) and against minirt, in one test network namespace: the
//! keys and JSON types of the container inspect documents must agree, and so
//! must what Docker idioms print. Podman runs privately: its own storage
//! (--root/--runroot/--tmpdir), its own containers.conf (CONTAINERS_CONF:
//! cgroupfs, file events, runc (crun 1.8 refuses this host's hybrid cgroup layout), netavark with a private config dir), removed
//! again on drop.

use crate::common::*;
use crate::podman_host::Podman;
use serde_json::Value;

/// The JSON type, with Go's nil slices and maps (`null`) counting as the
/// empty list or map they stand for.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

fn compatible(a: &Value, b: &Value) -> bool {
    let (ka, kb) = (kind(a), kind(b));
    ka == kb
        || (ka == "null" && matches!(kb, "list" | "map"))
        || (kb == "null" && matches!(ka, "list" | "map"))
}

fn at<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

/// The container inspect fields the issue lists (State, Config, HostConfig,
/// Mounts, NetworkSettings), each of which both engines must have with the
/// same JSON type.
const CONTAINER_PATHS: &[&str] = &[
    "Id",
    "Created",
    "Path",
    "Args",
    "Image",
    "Name",
    "RestartCount",
    "Driver",
    "State.Status",
    "State.Running",
    "State.Paused",
    "State.Restarting",
    "State.OOMKilled",
    "State.Dead",
    "State.Pid",
    "State.ExitCode",
    "State.Error",
    "State.StartedAt",
    "State.FinishedAt",
    "Config.Hostname",
    "Config.User",
    "Config.Env",
    "Config.Cmd",
    "Config.Image",
    "Config.WorkingDir",
    // Not Config.Entrypoint: Podman 4.3 prints a string where Docker has a
    // list or null (docker_cli::inspect_has_dockers_shape checks ours).
    "Config.Labels",
    "Config.Tty",
    "Config.OpenStdin",
    "HostConfig.Binds",
    "HostConfig.NetworkMode",
    "HostConfig.PortBindings",
    "HostConfig.RestartPolicy",
    "HostConfig.RestartPolicy.Name",
    "HostConfig.RestartPolicy.MaximumRetryCount",
    "HostConfig.AutoRemove",
    "HostConfig.CapAdd",
    "HostConfig.CapDrop",
    "HostConfig.Privileged",
    "HostConfig.ReadonlyRootfs",
    "HostConfig.Memory",
    "HostConfig.NanoCpus",
    "HostConfig.Dns",
    "HostConfig.ExtraHosts",
    "Mounts",
    "NetworkSettings.Ports",
    "NetworkSettings.IPAddress",
    "NetworkSettings.Gateway",
    "NetworkSettings.MacAddress",
    "NetworkSettings.Networks",
];

/// Per network of NetworkSettings.Networks.
const ENDPOINT_KEYS: &[&str] = &[
    "IPAddress",
    "Gateway",
    "MacAddress",
    "NetworkID",
    "EndpointID",
    "Aliases",
    "IPPrefixLen",
];

fn differences(ours: &Value, theirs: &Value, paths: &[&str]) -> Vec<String> {
    let mut out = vec![];
    for p in paths {
        match (at(ours, p), at(theirs, p)) {
            (Some(a), Some(b)) if compatible(a, b) => {}
            (a, b) => out.push(format!(
                "{p}: minirt {} vs podman {}",
                a.map(kind).unwrap_or("missing"),
                b.map(kind).unwrap_or("missing")
            )),
        }
    }
    out
}

#[test]
fn container_inspect_and_idioms_agree_with_podman() {
    if cmd("podman", &["--version"]).status.code() != Some(0) {
        panic!("podman is not installed (apt-get install podman crun conmon netavark iptables)");
    }
    let h = TestHost::new();
    let p = Podman::new(&h);
    let busybox = concat!(env!("CARGO_MANIFEST_DIR"), "/images/busybox.tar");
    p.ok(&["load", "-i", busybox]);
    p.ok(&[
        "network",
        "create",
        "--disable-dns",
        "--subnet",
        "10.89.5.0/24",
        "compat",
    ]);
    h.ok(&["network", "create", "--subnet", "10.88.0.0/24", "compat"]);
    let run = [
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "compat",
        "-p",
        "8080:80",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
    ];
    p.ok(&run);
    h.ok(&run);

    // Keys and types of the whole document.
    let theirs: Value = serde_json::from_str(&p.ok(&["inspect", "web"])).unwrap();
    let ours: Value = serde_json::from_str(&h.ok(&["inspect", "web"])).unwrap();
    let mut diffs = differences(&ours[0], &theirs[0], CONTAINER_PATHS);
    let their_ep = &theirs[0]["NetworkSettings"]["Networks"]["compat"];
    let our_ep = &ours[0]["NetworkSettings"]["Networks"]["compat"];
    diffs.extend(differences(our_ep, their_ep, ENDPOINT_KEYS));
    let (our_port, their_port) = (
        &ours[0]["NetworkSettings"]["Ports"]["80/tcp"][0],
        &theirs[0]["NetworkSettings"]["Ports"]["80/tcp"][0],
    );
    diffs.extend(differences(our_port, their_port, &["HostIp", "HostPort"]));
    assert!(
        diffs.is_empty(),
        "inspect differs from Podman's:\n{}",
        diffs.join("\n")
    );

    // The same idioms print the same.
    for args in [
        vec![
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Running}} {{.Config.Cmd}}",
            "web",
        ],
        vec![
            "inspect",
            "-f",
            "{{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}",
            "web",
        ],
        // Not HostConfig.NetworkMode: Docker names the user network there
        // (as minirt does), Podman 4.3 says "bridge".
        vec!["inspect", "-f", "{{len .NetworkSettings.Networks}}", "web"],
        vec!["ps", "--format", "{{.Names}} {{.Image}}"],
        vec!["ps", "-q", "--filter", "name=nosuch"],
        vec!["port", "web", "80"],
    ] {
        let (a, b) = (h.ok(&args), p.ok(&args));
        // Podman names the loaded image by its full reference.
        let b = b.replace("localhost/busybox:latest", "busybox");
        assert_eq!(a, b, "{args:?}");
    }

    // An exited container: exit code through `wait` and inspect.
    let job = [
        "run",
        "-d",
        "--name",
        "job",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ];
    p.ok(&job);
    h.ok(&job);
    assert_eq!(h.ok(&["wait", "job"]), p.ok(&["wait", "job"]));
    let f = [
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}} {{.State.Pid}}",
        "job",
    ];
    assert_eq!(h.ok(&f), p.ok(&f));
    let theirs: Value = serde_json::from_str(&p.ok(&["inspect", "job"])).unwrap();
    let ours: Value = serde_json::from_str(&h.ok(&["inspect", "job"])).unwrap();
    // Podman leaves Networks out for --network none (Docker has "none").
    let paths: Vec<&str> = CONTAINER_PATHS
        .iter()
        .copied()
        .filter(|p| *p != "NetworkSettings.Networks")
        .collect();
    let diffs = differences(&ours[0], &theirs[0], &paths);
    assert!(
        diffs.is_empty(),
        "exited inspect differs:\n{}",
        diffs.join("\n")
    );

    // Unknown field: both refuse, minirt with Docker's 125.
    let bad = ["inspect", "-f", "{{.State.Nope}}", "web"];
    assert!(!p.run(&bad).status.success());
    assert_eq!(h.fails(&bad).0, 125);
}

/// Podman 4.3's `network inspect` is netavark's own shape, not Docker's:
/// minirt's is checked against Docker's documented keys instead.
#[test]
fn network_inspect_has_dockers_keys() {
    let h = TestHost::new();
    h.ok(&["network", "create", "--subnet", "10.88.0.0/24", "testbr"]);
    h.ok(&[
        "run", "-d", "--name", "web", "--net", "testbr", "busybox", "sleep", "300",
    ]);
    let v: Value = serde_json::from_str(&h.ok(&["network", "inspect", "testbr"])).unwrap();
    let n = &v[0];
    let docker = serde_json::json!({
        "Name": "", "Id": "", "Created": "", "Scope": "", "Driver": "", "EnableIPv6": false,
        "IPAM": {"Driver": "", "Options": {}, "Config": []}, "Internal": false,
        "Attachable": false, "Ingress": false, "Containers": {}, "Options": {}, "Labels": {},
    });
    let paths: Vec<String> = docker
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .chain(["IPAM.Driver", "IPAM.Options", "IPAM.Config"].map(String::from))
        .collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let diffs = differences(n, &docker, &paths);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let member = n["Containers"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    let diffs = differences(
        member,
        &serde_json::json!({"Name": "", "EndpointID": "", "MacAddress": "", "IPv4Address": "", "IPv6Address": ""}),
        &[
            "Name",
            "EndpointID",
            "MacAddress",
            "IPv4Address",
            "IPv6Address",
        ],
    );
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    assert_eq!(member["IPv4Address"], "10.88.0.2/24");
}

/// `volume inspect` has the keys and types of Podman's (Docker's shape),
/// and `stats --no-stream` renders Docker's template fields as Podman does.
#[test]
fn volume_inspect_and_stats_fields_agree_with_podman() {
    if cmd("podman", &["--version"]).status.code() != Some(0) {
        panic!("podman is not installed (apt-get install podman crun conmon netavark iptables)");
    }
    let h = TestHost::new();
    let p = Podman::new(&h);
    p.ok(&["volume", "create", "--label", "a=b", "compatvol"]);
    h.ok(&["volume", "create", "--label", "a=b", "compatvol"]);
    let theirs: Value = serde_json::from_str(&p.ok(&["volume", "inspect", "compatvol"])).unwrap();
    let ours: Value = serde_json::from_str(&h.ok(&["volume", "inspect", "compatvol"])).unwrap();
    let paths = [
        "Name",
        "Driver",
        "Mountpoint",
        "CreatedAt",
        "Labels",
        "Labels.a",
        "Scope",
        "Options",
    ];
    let diffs = differences(&ours[0], &theirs[0], &paths);
    let _ = p.run(&["volume", "rm", "-f", "compatvol"]);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    for (a, b) in [
        (&ours[0]["Name"], &theirs[0]["Name"]),
        (&ours[0]["Driver"], &theirs[0]["Driver"]),
        (&ours[0]["Scope"], &theirs[0]["Scope"]),
    ] {
        assert_eq!(a, b);
    }

    let busybox = concat!(env!("CARGO_MANIFEST_DIR"), "/images/busybox.tar");
    p.ok(&["load", "-i", busybox]);
    p.ok(&[
        "run",
        "-d",
        "--name",
        "st",
        "--network",
        "none",
        "busybox",
        "sleep",
        "300",
    ]);
    h.ok(&[
        "run", "-d", "--name", "st", "--net", "none", "busybox", "sleep", "300",
    ]);
    let fields =
        "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.MemPerc}}|{{.NetIO}}|{{.BlockIO}}|{{.PIDs}}";
    let shape = |line: &str| -> Vec<String> {
        line.trim()
            .split('|')
            .map(|f| {
                // Numbers vary; the shape of each field must not.
                f.chars()
                    .map(|c| {
                        if c.is_ascii_digit() || c == '.' {
                            '9'
                        } else {
                            c
                        }
                    })
                    .collect::<String>()
                    .split('9')
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join("9")
            })
            .collect()
    };
    let theirs = p.ok(&["stats", "--no-stream", "--format", fields, "st"]);
    let ours = h.ok(&["stats", "--no-stream", "--format", fields, "st"]);
    let (t, o) = (shape(&theirs), shape(&ours));
    assert_eq!(o[0], "st");
    assert_eq!(o.len(), t.len(), "{ours} vs {theirs}");
    // CPU %, MEM %, PIDS: the same shape; sizes: both "N<unit> / N<unit>".
    for i in [1, 3, 6] {
        assert_eq!(o[i], t[i], "field {i}: {ours} vs {theirs}");
    }
    for i in [2, 4, 5] {
        assert!(
            o[i].contains(" / ") && t[i].contains(" / "),
            "{ours} vs {theirs}"
        );
    }
}

/// State.Health after a check, against Podman's (Docker's shape): Status,
/// FailingStreak and Log entries with Start/End/ExitCode/Output, of the same
/// types and, for one passing check, the same values.
#[test]
fn health_state_agrees_with_podman() {
    if cmd("podman", &["--version"]).status.code() != Some(0) {
        panic!("podman is not installed (apt-get install podman crun conmon netavark iptables)");
    }
    let h = TestHost::new();
    let p = Podman::new(&h);
    let busybox = concat!(env!("CARGO_MANIFEST_DIR"), "/images/busybox.tar");
    p.ok(&["load", "-i", busybox]);
    let run = [
        "run",
        "-d",
        "--name",
        "hc",
        "--network",
        "none",
        "--health-cmd",
        "echo ok",
        "--health-interval",
        "1h",
        "busybox",
        "sleep",
        "1000",
    ];
    p.ok(&run);
    h.ok(&run);
    p.ok(&["healthcheck", "run", "hc"]);
    h.ok(&["healthcheck", "run", "hc"]);
    let theirs: Value = serde_json::from_str(&p.ok(&["inspect", "hc"])).unwrap();
    let ours: Value = serde_json::from_str(&h.ok(&["inspect", "hc"])).unwrap();
    let (ours, theirs) = (&ours[0]["State"]["Health"], &theirs[0]["State"]["Health"]);
    let mut diffs = differences(ours, theirs, &["Status", "FailingStreak", "Log"]);
    let (our_log, their_log) = (&ours["Log"][0], &theirs["Log"][0]);
    diffs.extend(differences(
        our_log,
        their_log,
        &["Start", "End", "ExitCode", "Output"],
    ));
    assert!(
        diffs.is_empty(),
        "State.Health differs from Podman's:\n{}\nminirt {ours}\npodman {theirs}",
        diffs.join("\n")
    );
    for key in ["Status", "FailingStreak"] {
        assert_eq!(ours[key], theirs[key], "{key}");
    }
    assert_eq!(our_log["ExitCode"], their_log["ExitCode"]);
    // Docker keeps the check's output as printed; Podman 4.3 trims the newline.
    assert_eq!(our_log["Output"], "ok\n");
    assert_eq!(their_log["Output"], "ok");
    let f = ["inspect", "-f", "{{.State.Health.Status}}", "hc"];
    assert_eq!(h.ok(&f), p.ok(&f));
    p.ok(&["rm", "-f", "hc"]);
    h.ok(&["rm", "-f", "hc"]);
}
