//! `minirt ps`: the container list, Docker's columns and filters.

use super::{cli_err, store_err, template_err};
use crate::cli::CliResult;
use clap::Args;
use minirt::container::lifecycle;
use minirt::network;
use minirt::store::containers::Status;
use minirt::store::Store;
use minirt::util;
use minirt::Instance;
use serde_json::json;
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
    use crate::cli::format::{docker_time, human_size, PsFacts, PsFilter};
    use crate::cli::template::{self, Format};
    let format = template::parse(a.format.as_deref(), true).map_err(template_err)?;
    let filter = PsFilter::parse(&a.filter).map_err(|e| cli_err(e.code, e.message))?;
    let limit = if a.latest { Some(1) } else { a.last };
    let all = a.all || limit.is_some() || filter.wants_stopped();
    let rows = lifecycle::list_running(inst)?;
    let store = Store::open(&inst.db_path()).map_err(store_err)?;
    // One query each for every container's networks and ports, whatever
    // the number of containers (not two per row).
    let mut networks = network::networks_by_container(&store).map_err(store_err)?;
    let mut ports_of = network::ports_by_container(&store).map_err(store_err)?;
    drop(store);
    let now = util::now_nanos();
    let mut docs = vec![];
    let mut ids = vec![];
    for (r, running) in &rows {
        let cfg = lifecycle::config_of(r);
        let state = lifecycle::status_with(inst, r, &cfg, *running);
        // Docker lists a restarting container with the running ones.
        if !(all || matches!(state, Status::Running | Status::Paused | Status::Restarting)) {
            continue;
        }
        let eps = networks.remove(&r.id).unwrap_or_default();
        let health = minirt::container::health::read(inst, &r.id, &cfg).map(|h| h.status);
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
        if limit.is_some_and(|n| docs.len() >= n) {
            break;
        }
        let id = if a.no_trunc {
            r.id.clone()
        } else {
            r.id[..12].to_string()
        };
        ids.push(id.clone());
        if a.quiet {
            docs.push(serde_json::Value::Null);
            continue;
        }
        let ports = ports_of.remove(&r.id).unwrap_or_default();
        let command = if a.no_trunc {
            format!("\"{}\"", r.command.join(" "))
        } else {
            lifecycle::command_text(&r.command)
        };
        let size = if a.size {
            human_size(dir_size(&inst.container_dir(&r.id).join("upper")))
        } else {
            "0B".to_string()
        };
        let mounts: Vec<String> = cfg.mounts.iter().map(|m| m.source.clone()).collect();
        docs.push(json!({
            "ID": id,
            "Image": r.image,
            "Command": command,
            "CreatedAt": docker_time(&util::rfc3339(r.created)),
            "RunningFor": format!("{} ago", util::human_duration((now - r.created) / 1_000_000_000)),
            "Status": lifecycle::status_line_with(r, state, now, health.as_deref()),
            "State": state.as_str(),
            "Ports": ports.join(", "),
            "Names": r.name,
            "Labels": cfg.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
            "LocalVolumes": "0",
            "Mounts": mounts.join(","),
            "Size": size,
            "Networks": eps.iter().map(|e| e.network_name.as_str()).collect::<Vec<_>>().join(","),
            "NetworkAddresses": eps.iter().map(|e| e.ps_label()).collect::<Vec<_>>().join(", "),
        }));
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
        Format::Default => {
            // Docker's columns and order; NETWORKS only when asked for.
            let mut text = String::from("table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}");
            if a.size {
                text.push_str("\\t{{.Size}}");
            }
            if a.networks {
                text.push_str("\\t{{.NetworkAddresses}}");
            }
            match template::parse(Some(&text), true).map_err(template_err)? {
                Format::Template(t) => t.render_list(&docs, PS_HEADERS).map_err(template_err)?,
                _ => String::new(),
            }
        }
    };
    let _ = out.write_all(text.as_bytes());
    Ok(0)
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
