//! `inspect`'s document for a container, in Docker's shape (field names,
//! types, nulls), built from the store's rows: a pure builder over plain
//! data plus the thin lookup that gathers the rows.

use super::config::ContainerConfig;
use super::lifecycle;
use crate::network::{self, EndpointInfo};
use crate::store::containers::{ContainerRow, Status};
use crate::store::networks::{self as netrows, PortBindingRow};
use crate::store::Store;
use crate::{util, Instance, Result};
use serde_json::{json, Map, Value};

/// Everything the document is made of.
pub struct Facts<'a> {
    pub row: &'a ContainerRow,
    pub cfg: &'a ContainerConfig,
    /// The container's endpoints (while it has them: a stopped container's
    /// addresses are released).
    pub endpoints: &'a [EndpointInfo],
    /// Host ports bound now.
    pub bindings: &'a [PortBindingRow],
    /// Its init process is alive.
    pub running: bool,
    /// Its cgroup is frozen (`pause`).
    pub paused: bool,
    pub log_path: String,
    /// Restarts done by the policy, and whether one is pending now.
    pub restart_count: u32,
    pub restarting: bool,
    /// The recorded health (None: no health check).
    pub health: Option<super::health::HealthState>,
}

/// Go's nil slice: Docker prints `null` for an empty list in most fields.
fn list_or_null(v: &[String]) -> Value {
    if v.is_empty() {
        Value::Null
    } else {
        json!(v)
    }
}

/// `-p` specs as Docker's HostConfig.PortBindings (what was asked: the host
/// address as typed, "" for all, and the host port "" when chosen at start).
pub fn port_bindings(publish: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    for spec in publish {
        let Ok(maps) = network::portspec::parse_publish(spec) else {
            continue;
        };
        for m in maps {
            let host_ip = if m.host_ip.is_unspecified()
                && !spec.starts_with("0.0.0.0:")
                && !spec.starts_with("[::]:")
            {
                String::new()
            } else {
                m.host_ip.to_string()
            };
            let entry = json!({
                "HostIp": host_ip,
                "HostPort": m.host_port.map(|p| p.to_string()).unwrap_or_default(),
            });
            let key = format!("{}/{}", m.container_port, m.proto);
            match out.get_mut(&key) {
                Some(Value::Array(a)) => a.push(entry),
                _ => {
                    out.insert(key, json!([entry]));
                }
            }
        }
    }
    out
}

/// Bound ports as NetworkSettings.Ports: `{"80/tcp": [{"HostIp": "0.0.0.0",
/// "HostPort": "8080"}]}`.
pub(crate) fn ports_map(bindings: &[PortBindingRow]) -> Map<String, Value> {
    let mut out = Map::new();
    for b in bindings {
        let key = format!("{}/{}", b.container_port, b.proto);
        let entry = json!({"HostIp": b.host_ip, "HostPort": b.host_port.to_string()});
        match out.get_mut(&key) {
            Some(Value::Array(a)) => a.push(entry),
            _ => {
                out.insert(key, json!([entry]));
            }
        }
    }
    out
}

/// Docker's State.Status for a row.
fn status(f: &Facts) -> Status {
    match f.row.status {
        _ if f.restarting => Status::Restarting,
        Status::Running if f.running && f.paused => Status::Paused,
        Status::Running if f.running => Status::Running,
        Status::Running | Status::Exited => Status::Exited,
        _ => Status::Created,
    }
}

/// The whole document.
pub fn document(f: &Facts) -> Value {
    let (row, cfg) = (f.row, f.cfg);
    let entry_len = cfg
        .entrypoint
        .as_ref()
        .map(|e| e.len())
        .unwrap_or(0)
        .min(cfg.args.len());
    let (entrypoint, cmd) = cfg.args.split_at(entry_len);
    let mode = cfg.network.network_mode().as_str().to_string();
    let exposed: Map<String, Value> = port_bindings(&cfg.network.publish)
        .keys()
        .map(|k| (k.clone(), json!({})))
        .collect();
    let mut nets = Map::new();
    for e in f.endpoints {
        nets.insert(
            e.network_name.clone(),
            json!({
                "IPAMConfig": null,
                "Links": null,
                "Aliases": list_or_null(&cfg.network.aliases),
                "MacAddress": e.mac,
                "DriverOpts": null,
                "NetworkID": e.network_id,
                "EndpointID": e.endpoint_id,
                "Gateway": e.gateway4(),
                "IPAddress": e.ip4(),
                "IPPrefixLen": e.prefix_len,
                "IPv6Gateway": e.ip6.map(|(_, _, g)| g.to_string()).unwrap_or_default(),
                "GlobalIPv6Address": e.ip6.map(|(a, ..)| a.to_string()).unwrap_or_default(),
                "GlobalIPv6PrefixLen": e.ip6.map(|(_, p, _)| p).unwrap_or(0),
            }),
        );
    }
    // Docker fills the top-level address fields for the default network
    // only; scripts read them for any network, so minirt uses the first.
    let first = f.endpoints.first();
    let mounts: Vec<Value> = cfg
        .mounts
        .iter()
        .map(|m| {
            json!({
                "Type": "bind",
                "Source": m.source,
                "Destination": m.destination,
                "Mode": if m.readonly { "ro" } else { "" },
                "RW": !m.readonly,
                "Propagation": "rprivate",
            })
        })
        .collect();
    // Docker: a container waiting to be restarted counts as running.
    let mut state = json!({
        "Status": status(f).as_str(),
        "Running": f.running || f.restarting,
        // Docker shows a paused container as running and paused.
        "Paused": f.running && f.paused,
        "Restarting": f.restarting,
        "OOMKilled": row.oom_killed,
        "Dead": false,
        "Pid": if f.running { row.pid } else { 0 },
        "ExitCode": row.exit_code,
        "Error": "",
        "StartedAt": util::rfc3339(row.started_at),
        "FinishedAt": util::rfc3339(row.finished_at),
    });
    if let Some(h) = &f.health {
        state["Health"] = json!(h);
    }
    let mut doc = json!({
        "Id": row.id,
        "Created": util::rfc3339(row.created),
        "Path": row.command.first().cloned().unwrap_or_default(),
        "Args": row.command.iter().skip(1).collect::<Vec<_>>(),
        "State": state,
        "Image": format!("sha256:{}", row.image_id),
        "LogPath": f.log_path,
        "Name": format!("/{}", row.name),
        "RestartCount": f.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "Binds": list_or_null(&cfg.mounts.iter().map(|m| format!(
                "{}:{}{}", m.source, m.destination, if m.readonly { ":ro" } else { "" }
            )).collect::<Vec<_>>()),
            "NetworkMode": mode,
            "PortBindings": port_bindings(&cfg.network.publish),
            "RestartPolicy": {
                "Name": cfg.restart.name(),
                "MaximumRetryCount": cfg.restart.max_retries(),
            },
            "AutoRemove": cfg.auto_remove,
            "CapAdd": list_or_null(&cfg.cap_add),
            "CapDrop": list_or_null(&cfg.cap_drop),
            "Dns": cfg.network.dns,
            "DnsOptions": [],
            "DnsSearch": [],
            "ExtraHosts": list_or_null(&cfg.network.add_hosts),
            "Privileged": cfg.privileged,
            "ReadonlyRootfs": cfg.read_only,
            "SecurityOpt": match &cfg.seccomp {
                super::config::SeccompMode::Default => Value::Null,
                super::config::SeccompMode::Unconfined => json!(["seccomp=unconfined"]),
                super::config::SeccompMode::Profile(_) => json!(["seccomp=<profile>"]),
            },
            "Memory": cfg.resources.memory.unwrap_or(0),
            "NanoCpus": cfg.resources.nano_cpus.unwrap_or(0),
            "PidsLimit": cfg.resources.pids_limit,
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": cfg.hostname,
            "Domainname": "",
            "User": cfg.user,
            "AttachStdin": cfg.interactive,
            "AttachStdout": !cfg.tty || cfg.interactive,
            "AttachStderr": !cfg.tty || cfg.interactive,
            "ExposedPorts": exposed,
            "Tty": cfg.tty,
            "OpenStdin": cfg.interactive,
            "StdinOnce": false,
            "Env": cfg.env,
            "Cmd": cmd,
            "Image": cfg.image,
            "Volumes": null,
            "WorkingDir": cfg.workdir,
            "Entrypoint": if entrypoint.is_empty() { Value::Null } else { json!(entrypoint) },
            "Labels": cfg.labels,
            "StopSignal": cfg.stop_signal.as_deref().unwrap_or("SIGTERM"),
        },
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "SandboxKey": if f.running { format!("/proc/{}/ns/net", row.pid) } else { String::new() },
            "Ports": ports_map(f.bindings),
            "EndpointID": first.map(|e| e.endpoint_id.clone()).unwrap_or_default(),
            "Gateway": first.map(|e| e.gateway4()).unwrap_or_default(),
            "IPAddress": first.map(|e| e.ip4()).unwrap_or_default(),
            "IPPrefixLen": first.map(|e| e.prefix_len).unwrap_or(0),
            "IPv6Gateway": first.and_then(|e| e.ip6).map(|(_, _, g)| g.to_string()).unwrap_or_default(),
            "GlobalIPv6Address": first.and_then(|e| e.ip6).map(|(a, ..)| a.to_string()).unwrap_or_default(),
            "GlobalIPv6PrefixLen": first.and_then(|e| e.ip6).map(|(_, p, _)| p).unwrap_or(0),
            "MacAddress": first.map(|e| e.mac.clone()).unwrap_or_default(),
            "Networks": nets,
        },
    });
    if let Some(t) = cfg.stop_timeout {
        doc["Config"]["StopTimeout"] = json!(t);
    }
    if let Some(hc) = &cfg.healthcheck {
        doc["Config"]["Healthcheck"] = json!(hc);
    }
    doc
}

/// Gathers the rows of one container (by id, name or prefix) and builds its
/// document. A miss is the store's NotFound.
pub fn inspect(inst: &Instance, store: &Store, key: &str) -> Result<Value> {
    let row = crate::store::containers::lookup(store.conn(), key)?;
    let cfg = lifecycle::config_of(&row);
    let endpoints = network::container_networks(store, &row.id)?;
    let bindings = netrows::port_bindings_of_container(store.conn(), &row.id)?;
    let running = lifecycle::is_running(&row);
    let paused = running && super::pause::is_paused(inst, &row.id);
    let log_path = super::runtime::log_path(inst, &row.id)
        .to_string_lossy()
        .into_owned();
    let restart = super::restart::read(inst, &row.id);
    let restarting =
        row.status == Status::Exited && super::restart::is_restarting(inst, &row.id).is_some();
    let health = super::health::read(inst, &row.id, &cfg);
    Ok(document(&Facts {
        row: &row,
        cfg: &cfg,
        endpoints: &endpoints,
        bindings: &bindings,
        running,
        paused,
        log_path,
        restart_count: restart.count,
        restarting,
        health,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::config::BindMount;

    /// The facts of one container with no restarts and no health check.
    fn facts<'a>(
        row: &'a ContainerRow,
        cfg: &'a ContainerConfig,
        endpoints: &'a [EndpointInfo],
        bindings: &'a [PortBindingRow],
        running: bool,
    ) -> Facts<'a> {
        Facts {
            row,
            cfg,
            endpoints,
            bindings,
            running,
            paused: false,
            log_path: "/l".into(),
            restart_count: 0,
            restarting: false,
            health: None,
        }
    }

    fn row() -> ContainerRow {
        ContainerRow {
            id: "ab".repeat(32),
            name: "web".into(),
            image: "busybox".into(),
            image_id: "cd".repeat(32),
            command: vec!["httpd".into(), "-f".into()],
            config: String::new(),
            status: Status::Running,
            pid: 4242,
            pid_start: 1,
            monitor_pid: 1,
            monitor_start: 1,
            exit_code: 0,
            oom_killed: false,
            created: 1_700_000_000_000_000_000,
            started_at: 1_700_000_001_000_000_000,
            finished_at: 0,
            paused: false,
        }
    }

    fn cfg() -> ContainerConfig {
        let mut c = ContainerConfig {
            args: vec!["/bin/entry".into(), "httpd".into(), "-f".into()],
            entrypoint: Some(vec!["/bin/entry".into()]),
            mounts: vec![BindMount {
                source: "/srv".into(),
                destination: "/www".into(),
                readonly: true,
            }],
            ..Default::default()
        };
        c.network.mode = "testbr".into();
        c.network.publish = vec!["8080:80".into(), "127.0.0.1:5353:53/udp".into()];
        c
    }

    /// fd00:1::2/64 with gateway fd00:1::1.
    fn ip6() -> (std::net::Ipv6Addr, u8, std::net::Ipv6Addr) {
        (
            "fd00:1::2".parse().unwrap(),
            64,
            "fd00:1::1".parse().unwrap(),
        )
    }

    fn endpoint() -> EndpointInfo {
        EndpointInfo {
            network_name: "testbr".into(),
            network_id: "n1".into(),
            endpoint_id: "e1".into(),
            ifname: "eth0".into(),
            ip: "10.88.0.2".parse().unwrap(),
            prefix_len: 24,
            gateway: "10.88.0.1".parse().unwrap(),
            mac: "02:42:0a:58:00:02".into(),
            served_by_dns: true,
            ip6: None,
        }
    }

    fn binding(host_ip: &str, host_port: u16, port: u16, proto: &str) -> PortBindingRow {
        PortBindingRow {
            container_id: "x".into(),
            endpoint_id: "e1".into(),
            proto: proto.into(),
            host_ip: host_ip.into(),
            host_port,
            container_port: port,
        }
    }

    #[test]
    fn ipv6_fields_in_dockers_shape() {
        let mut e = endpoint();
        e.ip6 = Some(ip6());
        let (r, c, eps) = (row(), cfg(), vec![e]);
        let d = document(&facts(&r, &c, &eps, &[], true));
        let n = &d["NetworkSettings"]["Networks"]["testbr"];
        assert_eq!(n["GlobalIPv6Address"], "fd00:1::2");
        assert_eq!(n["GlobalIPv6PrefixLen"], 64);
        assert_eq!(n["IPv6Gateway"], "fd00:1::1");
        assert_eq!(d["NetworkSettings"]["GlobalIPv6Address"], "fd00:1::2");
        assert_eq!(eps[0].ps_label(), "testbr=10.88.0.2,fd00:1::2");
        let (r, c, eps) = (row(), cfg(), vec![endpoint()]);
        let d = document(&facts(&r, &c, &eps, &[], true));
        let n = &d["NetworkSettings"]["Networks"]["testbr"];
        assert_eq!(n["GlobalIPv6Address"], "");
        assert_eq!(n["GlobalIPv6PrefixLen"], 0);
    }

    #[test]
    fn ipv6_only_endpoint_has_empty_ipv4_fields() {
        let mut e = endpoint();
        e.ip = std::net::Ipv4Addr::UNSPECIFIED;
        e.gateway = std::net::Ipv4Addr::UNSPECIFIED;
        e.prefix_len = 0;
        e.ip6 = Some(ip6());
        let (r, c, eps) = (row(), cfg(), vec![e]);
        let d = document(&facts(&r, &c, &eps, &[], true));
        let n = &d["NetworkSettings"]["Networks"]["testbr"];
        assert_eq!(n["IPAddress"], "");
        assert_eq!(n["Gateway"], "");
        assert_eq!(n["IPPrefixLen"], 0);
        assert_eq!(n["GlobalIPv6Address"], "fd00:1::2");
        assert_eq!(d["NetworkSettings"]["IPAddress"], "");
        assert_eq!(eps[0].ps_label(), "testbr=fd00:1::2");
    }

    #[test]
    fn a_paused_container_is_running_and_paused() {
        let (r, c) = (row(), cfg());
        let mut f = facts(&r, &c, &[], &[], true);
        f.paused = true;
        let d = document(&f);
        assert_eq!(d["State"]["Status"], "paused");
        assert_eq!(d["State"]["Running"], true);
        assert_eq!(d["State"]["Paused"], true);
    }

    #[test]
    fn a_running_container_in_dockers_shape() {
        let (r, c, eps) = (row(), cfg(), vec![endpoint()]);
        let b = vec![
            binding("0.0.0.0", 8080, 80, "tcp"),
            binding("127.0.0.1", 5353, 53, "udp"),
        ];
        let d = document(&facts(&r, &c, &eps, &b, true));
        assert_eq!(d["State"]["Status"], "running");
        assert_eq!(d["State"]["Pid"], 4242);
        assert_eq!(d["State"]["Paused"], false);
        assert_eq!(d["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
        assert_eq!(d["Config"]["Entrypoint"], json!(["/bin/entry"]));
        assert_eq!(d["Config"]["Cmd"], json!(["httpd", "-f"]));
        assert_eq!(
            d["Config"]["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}})
        );
        assert_eq!(
            d["NetworkSettings"]["Ports"],
            json!({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
                   "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}]})
        );
        assert_eq!(
            d["HostConfig"]["PortBindings"],
            json!({"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                   "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}]})
        );
        assert_eq!(d["HostConfig"]["NetworkMode"], "testbr");
        assert_eq!(d["HostConfig"]["Binds"], json!(["/srv:/www:ro"]));
        assert_eq!(d["HostConfig"]["RestartPolicy"]["Name"], "no");
        assert_eq!(d["Mounts"][0]["RW"], false);
        assert_eq!(d["NetworkSettings"]["IPAddress"], "10.88.0.2");
        assert_eq!(d["NetworkSettings"]["MacAddress"], "02:42:0a:58:00:02");
        let n = &d["NetworkSettings"]["Networks"]["testbr"];
        assert_eq!(n["Gateway"], "10.88.0.1");
        assert_eq!(n["NetworkID"], "n1");
        assert_eq!(n["EndpointID"], "e1");
        assert_eq!(n["Aliases"], Value::Null);
        assert_eq!(d["Name"], "/web");
    }

    #[test]
    fn an_exited_container_has_no_pid_ports_or_addresses() {
        let mut r = row();
        r.status = Status::Exited;
        r.exit_code = 3;
        r.finished_at = 1_700_000_002_000_000_000;
        let mut c = cfg();
        c.entrypoint = None;
        c.args = vec!["sh".into()];
        c.network.mode = String::new();
        let d = document(&facts(&r, &c, &[], &[], false));
        assert_eq!(d["State"]["Status"], "exited");
        assert_eq!(d["State"]["Running"], false);
        assert_eq!(d["State"]["Pid"], 0);
        assert_eq!(d["State"]["ExitCode"], 3);
        assert_eq!(d["Config"]["Entrypoint"], Value::Null);
        assert_eq!(d["Config"]["Cmd"], json!(["sh"]));
        assert_eq!(d["HostConfig"]["NetworkMode"], "bridge");
        assert_eq!(d["NetworkSettings"]["Ports"], json!({}));
        assert_eq!(d["NetworkSettings"]["IPAddress"], "");
        // What was asked stays, as in Docker.
        assert_eq!(
            d["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
            "8080"
        );
    }

    #[test]
    fn restarting_state_policy_health_and_stop_settings_are_shown() {
        use crate::container::health::{HealthConfig, HealthResult, HealthState};
        use crate::container::restart::RestartPolicy;
        let mut r = row();
        r.status = Status::Exited;
        r.exit_code = 1;
        let mut c = cfg();
        c.restart = RestartPolicy::OnFailure(5);
        c.stop_signal = Some("SIGQUIT".into());
        c.stop_timeout = Some(3);
        c.healthcheck = Some(HealthConfig {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: 200_000_000,
            ..Default::default()
        });
        let health = HealthState {
            status: "unhealthy".into(),
            failing_streak: 3,
            log: vec![HealthResult {
                exit_code: 1,
                output: "no".into(),
                ..Default::default()
            }],
        };
        let d = document(&Facts {
            restart_count: 2,
            restarting: true,
            health: Some(health),
            ..facts(&r, &c, &[], &[], false)
        });
        assert_eq!(d["State"]["Status"], "restarting");
        assert_eq!(d["State"]["Restarting"], true);
        assert_eq!(
            d["State"]["Running"], true,
            "Docker counts a restarting container as running"
        );
        assert_eq!(d["State"]["Pid"], 0);
        assert_eq!(d["RestartCount"], 2);
        assert_eq!(
            d["HostConfig"]["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 5})
        );
        assert_eq!(d["State"]["Health"]["Status"], "unhealthy");
        assert_eq!(d["State"]["Health"]["FailingStreak"], 3);
        assert_eq!(d["State"]["Health"]["Log"][0]["Output"], "no");
        assert_eq!(
            d["Config"]["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "true"], "Interval": 200_000_000})
        );
        assert_eq!(d["Config"]["StopSignal"], "SIGQUIT");
        assert_eq!(d["Config"]["StopTimeout"], 3);
        let plain = document(&facts(&row(), &cfg(), &[], &[], true));
        assert!(plain["State"].get("Health").is_none());
        assert!(plain["Config"].get("Healthcheck").is_none());
        assert_eq!(plain["HostConfig"]["RestartPolicy"]["Name"], "no");
    }
}
