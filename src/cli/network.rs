//! `minirt network create | ls | inspect | rm | prune | connect | disconnect | reload`.

use super::output::table;
use super::{CliError, CliResult};
use clap::{Args, Subcommand};
use minirt::network::{self, manage, NetworkError};
use minirt::store::Store;
use minirt::Instance;
use std::io::Write;

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a network.
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show networks as JSON.
    Inspect(InspectArgs),
    /// Remove networks.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove all networks no container uses.
    Prune(PruneArgs),
    /// Connect a running container to a network.
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
    /// Re-apply every network's firewall rules.
    Reload,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Driver (only `bridge`).
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR form; once for IPv4 and once for IPv6 (with --ipv6).
    #[arg(long)]
    pub subnet: Vec<String>,
    /// Gateway address (default: first address of the subnet), one per family.
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Give the network IPv6 too (a /64 from the ULA pool without an IPv6 --subnet).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub ipv6: bool,
    /// IPv4 on the network (--ipv4=false with --ipv6: an IPv6-only network).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true", action = clap::ArgAction::Set)]
    pub ipv4: bool,
    /// Restrict external access to the network.
    #[arg(long)]
    pub internal: bool,
    /// Driver options: mtu=N, bridge_name=NAME.
    #[arg(short = 'o', long = "opt")]
    pub opts: Vec<String>,
    pub name: String,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate network ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output: table, json, or a Go template ("table {{.Name}}\t{{.Driver}}").
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format the output using a Go template.
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    #[arg(long)]
    pub ip: Option<String>,
    #[arg(long)]
    pub ip6: Option<String>,
    #[arg(long)]
    pub alias: Vec<String>,
    pub network: String,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct DisconnectArgs {
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

/// Network commands fail like Docker's daemon errors: exit status 1.
fn fail(e: impl std::fmt::Display) -> CliError {
    CliError {
        code: 1,
        message: e.to_string(),
    }
}

fn open_store(inst: &Instance) -> Result<Store, CliError> {
    Store::open(&inst.db_path()).map_err(fail)
}

pub fn dispatch(inst: &Instance, c: NetworkCommand) -> CliResult {
    minirt::container::lifecycle::heal_intents(inst);
    let mut store = open_store(inst)?;
    match c {
        NetworkCommand::Create(a) => create(inst, &mut store, a),
        NetworkCommand::Ls(a) => ls(&store, a),
        NetworkCommand::Inspect(a) => inspect(&store, a),
        NetworkCommand::Rm(a) => rm(inst, &mut store, a),
        NetworkCommand::Prune(_) => {
            let removed = manage::prune(inst, &mut store).map_err(fail)?;
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for n in removed {
                    println!("{n}");
                }
            }
            Ok(0)
        }
        NetworkCommand::Connect(a) => {
            network::connect(
                inst,
                &mut store,
                &a.network,
                &a.container,
                a.ip.as_deref(),
                a.ip6.as_deref(),
                &a.alias,
            )
            .map_err(fail)?;
            Ok(0)
        }
        NetworkCommand::Disconnect(a) => {
            network::disconnect(inst, &mut store, &a.network, &a.container, a.force)
                .map_err(fail)?;
            Ok(0)
        }
        NetworkCommand::Reload => {
            manage::reload(inst, &mut store).map_err(fail)?;
            Ok(0)
        }
    }
}

/// Splits repeated `--subnet` / `--gateway` values by family: at most one
/// of each.
fn by_family(
    flag: &str,
    values: Vec<String>,
) -> Result<(Option<String>, Option<String>), CliError> {
    let (v6, v4): (Vec<String>, Vec<String>) = values.into_iter().partition(|v| v.contains(':'));
    if v4.len() > 1 || v6.len() > 1 {
        return Err(CliError {
            code: 125,
            message: format!("--{flag} may be given once for IPv4 and once for IPv6"),
        });
    }
    Ok((v4.into_iter().next(), v6.into_iter().next()))
}

fn create(inst: &Instance, store: &mut Store, a: CreateArgs) -> CliResult {
    let (subnet, subnet6) = by_family("subnet", a.subnet)?;
    let (gateway, gateway6) = by_family("gateway", a.gateway)?;
    let req = manage::CreateRequest {
        name: a.name,
        driver: a.driver,
        subnet,
        gateway,
        internal: a.internal,
        options: a.opts,
        ipv6: a.ipv6,
        no_ipv4: !a.ipv4,
        subnet6,
        gateway6,
    };
    // What minirt does not build is a usage error (125), as for other commands.
    let row = manage::create(inst, store, &req).map_err(|e| {
        let mut err = fail(e);
        if err.message.starts_with("not implemented") {
            err.code = 125;
        }
        err
    })?;
    println!("{}", row.id);
    Ok(0)
}

/// Docker's column headers of `network ls`.
const LS_HEADERS: &[(&str, &str)] = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("IPv6", "IPV6"),
    ("Internal", "INTERNAL"),
    ("CreatedAt", "CREATED AT"),
    ("Labels", "LABELS"),
    ("Subnet", "SUBNET"),
    ("Gateway", "GATEWAY"),
];

fn ls(store: &Store, a: LsArgs) -> CliResult {
    use super::template::{self, Format};
    let format = template::parse(a.format.as_deref(), true).map_err(|e| CliError {
        code: 125,
        message: e,
    })?;
    let nets = manage::list(store).map_err(fail)?;
    let id_of = |id: &str| {
        if a.no_trunc {
            id.to_string()
        } else {
            short(id).to_string()
        }
    };
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for n in &nets {
            let _ = writeln!(out, "{}", id_of(&n.id));
        }
        return Ok(0);
    }
    // Like `docker network ls --format json`: these keys, string values.
    let docs: Vec<serde_json::Value> = nets
        .iter()
        .map(|n| {
            serde_json::json!({
                "ID": id_of(&n.id),
                "Name": n.name,
                "Driver": n.driver,
                "Scope": if n.driver == "overlay" { "global" } else { "local" },
                "IPv6": (!n.subnet6.is_empty()).to_string(),
                "Internal": n.internal.to_string(),
                "Labels": "",
                "CreatedAt": super::format::docker_time(&minirt::util::rfc3339(n.created)),
                "Subnet": n.subnet,
                "Gateway": n.gateway,
            })
        })
        .collect();
    let text = match format {
        Format::Json => docs.iter().map(|d| format!("{d}\n")).collect(),
        Format::Template(t) => t.render_list(&docs, LS_HEADERS).map_err(|e| CliError {
            code: 125,
            message: e,
        })?,
        Format::Default => {
            let rows: Vec<Vec<String>> = nets
                .iter()
                .map(|n| {
                    vec![
                        id_of(&n.id),
                        n.name.clone(),
                        n.driver.clone(),
                        // An IPv6-only network shows its IPv6 side.
                        if n.has_ipv4() { &n.subnet } else { &n.subnet6 }.clone(),
                        if n.has_ipv4() {
                            &n.gateway
                        } else {
                            &n.gateway6
                        }
                        .clone(),
                    ]
                })
                .collect();
            table(
                &["NETWORK ID", "NAME", "DRIVER", "SUBNET", "GATEWAY"],
                &rows,
            )
        }
    };
    let _ = out.write_all(text.as_bytes());
    Ok(0)
}

fn inspect(store: &Store, a: InspectArgs) -> CliResult {
    // A bad template is found before anything is looked up.
    super::template::parse(a.format.as_deref(), false).map_err(|e| CliError {
        code: 125,
        message: e,
    })?;
    let mut out = vec![];
    let mut failed = false;
    for key in &a.networks {
        let found = manage::find_any(store.conn(), key)
            .and_then(|n| manage::inspect_json(store.conn(), &n));
        match found {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("minirt: {e}");
                failed = true;
            }
        }
    }
    super::container::print_docs(&out, a.format.as_deref())?;
    Ok(if failed { 1 } else { 0 })
}

fn rm(inst: &Instance, store: &mut Store, a: RmArgs) -> CliResult {
    let mut failed = false;
    for key in &a.networks {
        match manage::remove(inst, store, key) {
            Ok(_) => println!("{key}"),
            Err(e) => {
                report(&e);
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn report(e: &NetworkError) {
    eprintln!("minirt: {e}");
}

/// The 12-character id Docker shows.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
