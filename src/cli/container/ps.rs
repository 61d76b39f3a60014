//! `minirt ps`: the container list, Docker's columns and filters.

use super::{cli_err, store_err, template_err};
use crate::cli::CliResult;
use clap::Args;
use minirt::container::config::ListedConfig;
use minirt::container::{health, lifecycle};
use minirt::network;
use minirt::store::containers::{ContainerRow, Status};
use minirt::store::Store;
use minirt::util;
use minirt::Instance;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    pub all: bool,
    /// Only display container ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter: name, id, label, status, network, ancestor, exited (KEY=VALUE).
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Show the N last created containers (all states).
    #[arg(short = 'n', long = "last")]
    pub last: Option<usize>,
    /// Show the latest created container (all states).
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Don't truncate ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Display the size of each container's writable layer.
    #[arg(short, long)]
    pub size: bool,
    /// Add a NETWORKS column (network=address), minirt's own.
    #[arg(long)]
    pub networks: bool,
    /// Output: table, json, or a Go template ("table {{.Names}}\t{{.Status}}").
    #[arg(long)]
    pub format: Option<String>,
}

/// Bytes of files under `dir` (the writable layer), not following links.
fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

pub fn ps(inst: &Instance, a: PsArgs) -> CliResult {
    use crate::cli::format::{human_size, PsFacts, PsFilter};
    use crate::cli::template::{self, Format};
    let format = template::parse(a.format.as_deref(), true).map_err(template_err)?;
    let filter = PsFilter::parse(&a.filter).map_err(|e| cli_err(e.code, e.message))?;
    let limit = if a.latest { Some(1) } else { a.last };
    let all = a.all || limit.is_some() || filter.wants_stopped();
    let default = matches!(format, Format::Default);
    let rows = lifecycle::list_running(inst)?;
    let store = Store::open(&inst.db_path()).map_err(store_err)?;
    // One query each for every container's networks and ports, whatever
    // the number of containers (not two per row), and only when shown or
    // filtered on: the default table shows no networks.
    let need_networks = (!a.quiet && (!default || a.networks)) || filter.uses("network");
    let mut networks = if need_networks {
        network::networks_by_container(&store).map_err(store_err)?
    } else {
        HashMap::new()
    };
    let mut ports_of = if a.quiet {
        HashMap::new()
    } else {
        network::ports_by_container(&store).map_err(store_err)?
    };
    drop(store);
    let now = util::now_nanos();
    let mut docs = vec![];
    // The default table's rows, as its template would render them (see
    // `Listed::table_row`), tab-aligned at the end.
    let mut table = if default && !a.quiet {
        default_header(a.size, a.networks)
    } else {
        String::new()
    };
    let mut ids = vec![];
    for (r, running) in &rows {
        let cfg = ListedConfig::parse(&r.config);
        let state = lifecycle::status_of(inst, r, !cfg.restart.is_none(), *running);
        // Docker lists a restarting container with the running ones.
        if !(all || matches!(state, Status::Running | Status::Paused | Status::Restarting)) {
            continue;
        }
        let eps = networks.remove(&r.id).unwrap_or_default();
        let health = health::read_if(inst, &r.id, cfg.has_healthcheck()).map(|h| h.status);
        let facts = PsFacts {
            id: &r.id,
            name: &r.name,
            image: &r.image,
            image_id: &r.image_id,
            state,
            exit_code: r.exit_code,
            networks: eps
                .iter()
                .map(|e| (e.network_name.clone(), e.network_id.clone()))
                .collect(),
            labels: &cfg.labels,
            health: health.as_deref().unwrap_or("none"),
        };
        if !filter.matches(&facts) {
            continue;
        }
        if limit.is_some_and(|n| ids.len() >= n) {
            break;
        }
        let id = if a.no_trunc {
            r.id.clone()
        } else {
            r.id[..12].to_string()
        };
        if a.quiet {
            ids.push(id);
            continue;
        }
        let size = if a.size {
            human_size(dir_size(&inst.container_dir(&r.id).join("upper")))
        } else {
            "0B".to_string()
        };
        let listed = Listed {
            row: r,
            cfg: &cfg,
            id,
            state,
            health: health.as_deref(),
            ports: ports_of.remove(&r.id).unwrap_or_default(),
            eps,
            size,
            now,
            no_trunc: a.no_trunc,
        };
        if default {
            listed.table_row(&mut table, a.size, a.networks);
        } else {
            docs.push(listed.doc());
        }
        ids.push(String::new());
    }
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for id in ids {
            let _ = writeln!(out, "{id}");
        }
        return Ok(0);
    }
    let text = match format {
        Format::Json => docs.iter().map(|d| format!("{d}\n")).collect::<String>(),
        Format::Template(t) => t.render_list(&docs, PS_HEADERS).map_err(template_err)?,
        Format::Default => template::tabwrite(&table),
    };
    let _ = out.write_all(text.as_bytes());
    Ok(0)
}

/// One listed container with what `ps` read about it.
struct Listed<'a> {
    row: &'a ContainerRow,
    cfg: &'a ListedConfig,
    /// As shown (cut to 12 characters unless --no-trunc).
    id: String,
    state: Status,
    health: Option<&'a str>,
    ports: Vec<String>,
    eps: Vec<network::EndpointInfo>,
    size: String,
    now: i64,
    no_trunc: bool,
}

impl Listed<'_> {
    fn command(&self) -> String {
        if self.no_trunc {
            format!("\"{}\"", self.row.command.join(" "))
        } else {
            lifecycle::command_text(&self.row.command)
        }
    }

    fn running_for(&self) -> String {
        let secs = (self.now - self.row.created) / 1_000_000_000;
        format!("{} ago", util::human_duration(secs))
    }

    fn status(&self) -> String {
        lifecycle::status_line_with(self.row, self.state, self.now, self.health)
    }

    fn network_addresses(&self) -> String {
        let labels: Vec<String> = self.eps.iter().map(|e| e.ps_label()).collect();
        labels.join(", ")
    }

    /// The document `--format` templates and `json` see.
    fn doc(&self) -> serde_json::Value {
        use crate::cli::format::docker_time;
        let r = self.row;
        let mounts: Vec<&str> = self.cfg.mounts.iter().map(|m| m.source.as_str()).collect();
        json!({
            "ID": self.id,
            "Image": r.image,
            "Command": self.command(),
            "CreatedAt": docker_time(&util::rfc3339(r.created)),
            "RunningFor": self.running_for(),
            "Status": self.status(),
            "State": self.state.as_str(),
            "Ports": self.ports.join(", "),
            "Names": r.name,
            "Labels": self.cfg.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
            "LocalVolumes": "0",
            "Mounts": mounts.join(","),
            "Size": self.size,
            "Networks": self.eps.iter().map(|e| e.network_name.as_str()).collect::<Vec<_>>().join(","),
            "NetworkAddresses": self.network_addresses(),
        })
    }

    /// The default table's row, as [`default_template`] renders [`doc`]
    /// (before the columns are aligned), written straight into `out`: no
    /// document, no template, and only the columns shown (the template
    /// path was most of `ps`'s own time with 1000 containers).
    fn table_row(&self, out: &mut String, size: bool, networks: bool) {
        let cells = [
            self.id.as_str(),
            &self.row.image,
            &self.command(),
            &self.running_for(),
            &self.status(),
            &self.ports.join(", "),
            &self.row.name,
        ];
        out.push_str(&cells.join("\t"));
        if size {
            out.push('\t');
            out.push_str(&self.size);
        }
        if networks {
            out.push('\t');
            out.push_str(&self.network_addresses());
        }
        out.push('\n');
    }
}

/// The default table as a template: Docker's columns and order; SIZE and
/// NETWORKS only when asked for. `ps` renders it directly (see
/// [`Listed::table_row`]); this is what that must equal.
#[cfg(test)]
fn default_template(size: bool, networks: bool) -> String {
    let mut text = String::from(
        "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}",
    );
    if size {
        text.push_str("\\t{{.Size}}");
    }
    if networks {
        text.push_str("\\t{{.NetworkAddresses}}");
    }
    text
}

/// The default table's header line (before alignment).
fn default_header(size: bool, networks: bool) -> String {
    let header = |key: &str| {
        PS_HEADERS
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, h)| *h)
    };
    let mut keys = vec![
        "ID",
        "Image",
        "Command",
        "RunningFor",
        "Status",
        "Ports",
        "Names",
    ];
    if size {
        keys.push("Size");
    }
    if networks {
        keys.push("NetworkAddresses");
    }
    let cells: Vec<&str> = keys.into_iter().map(header).collect();
    format!("{}\n", cells.join("\t"))
}

/// Docker's column headers of `ps`.
const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("State", "STATE"),
    ("Ports", "PORTS"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Mounts", "MOUNTS"),
    ("Size", "SIZE"),
    ("Networks", "NETWORKS"),
    ("NetworkAddresses", "NETWORKS"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::template::{self, Format};

    fn row(n: usize, status: Status, command: &[&str]) -> ContainerRow {
        ContainerRow {
            id: format!("{n:02x}{}", "ab".repeat(31)),
            name: format!("name-{n}{}", "é".repeat(n % 3)),
            image: if n.is_multiple_of(2) {
                "busybox"
            } else {
                "registry.example/ünï:1"
            }
            .into(),
            image_id: "cd".repeat(32),
            command: command.iter().map(|s| s.to_string()).collect(),
            config: String::new(),
            status,
            pid: 10,
            pid_start: 1,
            monitor_pid: 11,
            monitor_start: 2,
            exit_code: 3,
            oom_killed: false,
            created: 1_700_000_000_000_000_000 + n as i64 * 61_000_000_000,
            started_at: 1_700_000_000_500_000_000,
            finished_at: 1_700_000_100_000_000_000,
            paused: false,
        }
    }

    fn endpoint(net: &str, last: u8, ip6: bool) -> network::EndpointInfo {
        network::EndpointInfo {
            network_name: net.into(),
            network_id: "ef".repeat(32),
            endpoint_id: "01".repeat(32),
            ifname: "eth0".into(),
            ip: std::net::Ipv4Addr::new(10, 0, 0, last),
            prefix_len: 24,
            gateway: std::net::Ipv4Addr::new(10, 0, 0, 1),
            mac: "02:42:0a:00:00:02".into(),
            served_by_dns: true,
            ip6: ip6.then(|| {
                let a: std::net::Ipv6Addr = "fd00::2".parse().unwrap();
                (a, 64, "fd00::1".parse().unwrap())
            }),
        }
    }

    /// The default table written directly is byte for byte what its
    /// template renders from the documents, for every column choice, with
    /// multi-byte text, empty and multi-valued cells, a command with a
    /// newline, and no rows at all.
    #[test]
    fn default_table_equals_its_template() {
        let cfg = ListedConfig::parse("");
        let now = 1_700_000_200_000_000_000;
        let rows = [
            (
                row(0, Status::Running, &["sleep", "100000"]),
                Status::Running,
                None,
            ),
            (
                row(
                    1,
                    Status::Running,
                    &["httpd", "-f", "-p", "80", "-h", "/www"],
                ),
                Status::Paused,
                None,
            ),
            (
                row(2, Status::Running, &["sh", "-c", "echo a\necho b"]),
                Status::Running,
                Some("healthy"),
            ),
            (row(3, Status::Exited, &["fäil"]), Status::Exited, None),
            (row(4, Status::Exited, &[]), Status::Restarting, None),
            (row(5, Status::Created, &["true"]), Status::Created, None),
        ];
        for (size, networks, no_trunc, count) in [
            (false, false, false, rows.len()),
            (true, false, true, rows.len()),
            (false, true, false, rows.len()),
            (true, true, true, rows.len()),
            (false, false, false, 0),
            (true, true, false, 0),
        ] {
            let mut docs = vec![];
            let mut table = default_header(size, networks);
            for (i, (r, state, health)) in rows.iter().take(count).enumerate() {
                let listed = Listed {
                    row: r,
                    cfg: &cfg,
                    id: if no_trunc {
                        r.id.clone()
                    } else {
                        r.id[..12].to_string()
                    },
                    state: *state,
                    health: *health,
                    ports: (0..i % 3)
                        .map(|p| format!("0.0.0.0:{}->80/tcp", 8000 + p))
                        .collect(),
                    eps: (0..i % 3)
                        .map(|e| endpoint(&format!("net{e}"), 2 + e as u8, e == 1))
                        .collect(),
                    size: format!("{i}kB"),
                    now,
                    no_trunc,
                };
                docs.push(listed.doc());
                listed.table_row(&mut table, size, networks);
            }
            let Format::Template(t) =
                template::parse(Some(&default_template(size, networks)), true).unwrap()
            else {
                panic!("not a template");
            };
            let want = t.render_list(&docs, PS_HEADERS).unwrap();
            assert_eq!(
                template::tabwrite(&table),
                want,
                "size {size} networks {networks}"
            );
        }
    }
}
